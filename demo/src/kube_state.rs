//! The cluster as the Kubernetes API would show it, as JSON objects in the API's own shape: Nodes
//! (with role labels), Pods (UID, name, namespace, node, readiness, owner), ReplicaSets, Services,
//! EndpointSlices (ready endpoints with their node), and MetalLB's objects. The API test double
//! (`bakery-fake-apiserver --state FILE`) serves them with list and watch; the collector maps the
//! agents' pod UIDs through them and reads the Service's entry from them. Pure.
//!
//! The state file's keys are the double's (`lab/src/kube_double/state.rs`): `nodes`, `pods`,
//! `replicasets`, `services`, `endpointslices`, MetalLB's `ipaddresspools`, `l2advertisements`,
//! `bgpadvertisements`, `servicel2statuses`, `servicebgpstatuses`, and `apis`, the API groups
//! installed beyond Kubernetes' own (`metallb.io/v1beta1` when MetalLB's CRDs are; a client asking
//! for an absent group's objects gets 404).
//!
//! # Services
//!
//! Every workload has a Service named after it, selecting `app: <workload>`, with its ClusterIP
//! (`clusterIP` and `clusterIPs`, single-stack IPv4) and `internalTrafficPolicy: Cluster`, as the
//! API server defaults it. The scenario's `[service]` is `type: LoadBalancer` on the workload it
//! names (the web workload, or the in-cluster proxy in front of it): a `nodePort` on its port,
//! `externalTrafficPolicy`, `sessionAffinity` (with `sessionAffinityConfig.clientIP.timeoutSeconds`
//! 10800, the API server's default, for ClientIP), a `healthCheckNodePort` with Local policy, and
//! the LoadBalancer IP in `status.loadBalancer.ingress`.
//!
//! # MetalLB (0.14 and later)
//!
//! With `metallb` (the default), the objects MetalLB's users and speakers write, in namespace
//! `metallb-system` (field names from MetalLB's `api/v1beta1`, names and labels from its speaker's
//! `internal/k8s/controllers`):
//! * an `IPAddressPool` holding the LoadBalancer IP, and the Service annotated
//!   `metallb.io/ip-allocated-from-pool` with its name, as MetalLB's controller does;
//! * `entry = "l2"`: an `L2Advertisement` of the pool on `eth0`, and one `ServiceL2Status` written by
//!   the announcer's speaker: `status.node` is the announcer, `status.interfaces` the advertised
//!   interface;
//! * `entry = "every-node"`: a `BGPAdvertisement` of the pool, and one `ServiceBGPStatus` per node
//!   that announces the IP: every node with Cluster policy, only the nodes with a ready endpoint with
//!   Local (MetalLB's speakers withdraw the announcement elsewhere); `status.peers` names the BGP
//!   peer, the router.
//!
//! The speakers name their status objects `l2-` / `bgp-` and a generated suffix (`GenerateName`) and
//! label them `metallb.io/node`, `metallb.io/service-name` and `metallb.io/service-namespace`. In a
//! real cluster a status object is also owned by the speaker pod that wrote it; the demo runs no
//! speaker pods, so it has no owner reference.

use serde_json::{Value, json};

use crate::kube_proxy::AFFINITY_TIMEOUT_SECONDS;
use crate::plan::{NODE_NIC, NodePlan, Plan, PodPlan, ServicePlan, role_label, suffix};
use crate::scenario::{Entry, Role, SessionAffinity, TrafficPolicy, WorkloadKind};

/// The state file's content.
pub fn state(plan: &Plan) -> Value {
    // One piece: the whole state file as the API double serves it: nodes, pods, then per workload its ReplicaSet,
    // Service and EndpointSlice, from the same lists of pods.
    let nodes: Vec<Value> = plan
        .nodes
        .iter()
        .map(|node| {
            let mut labels = serde_json::Map::new();
            labels.insert("kubernetes.io/hostname".into(), json!(node.name));
            labels.insert("kubernetes.io/os".into(), json!("linux"));
            labels.insert("kubernetes.io/arch".into(), json!("arm64"));
            labels.insert(format!("node-role.kubernetes.io/{}", role_label(node.role)), json!("true"));
            if node.role == Role::ControlPlane {
                // K3s servers carry both labels.
                labels.insert("node-role.kubernetes.io/master".into(), json!("true"));
                labels.insert("node-role.kubernetes.io/etcd".into(), json!("true"));
            }
            json!({
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": { "name": node.name, "uid": node_uid(plan, node.index), "labels": labels },
                "status": {
                    "addresses": [
                        { "type": "InternalIP", "address": node.address.to_string() },
                        { "type": "Hostname", "address": node.name },
                    ],
                    "conditions": [ { "type": "Ready", "status": "True" } ],
                },
            })
        })
        .collect();
    let pods: Vec<Value> = plan.pods.iter().map(|pod| pod_object(plan, pod)).collect();
    let mut replica_sets = Vec::new();
    let mut services = Vec::new();
    let mut slices = Vec::new();
    for (index, workload) in plan.scenario.workloads.iter().enumerate() {
        let pods: Vec<&PodPlan> = plan.pods_of(&workload.name).collect();
        if let Some(rs) = pods.first().and_then(|p| p.replica_set.clone()) {
            replica_sets.push(json!({
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "name": rs,
                    "namespace": workload.namespace,
                    "uid": owner_uid(plan, index, 1),
                    "labels": { "app": workload.name },
                    "ownerReferences": [ {
                        "apiVersion": "apps/v1", "kind": "Deployment", "name": workload.name,
                        "uid": owner_uid(plan, index, 0), "controller": true,
                    } ],
                },
                "spec": { "replicas": pods.len() },
            }));
        }
        let Some(service) = plan.service(&workload.name) else { continue };
        services.push(service_object(plan, index, service));
        let endpoints: Vec<Value> = pods
            .iter()
            .map(|pod| {
                json!({
                    "addresses": [ pod.address.to_string() ],
                    "conditions": { "ready": true, "serving": true, "terminating": false },
                    "nodeName": pod.node,
                    "targetRef": { "kind": "Pod", "name": pod.name, "namespace": pod.namespace, "uid": pod.uid },
                })
            })
            .collect();
        slices.push(json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": format!("{}-{}", workload.name, &owner_uid(plan, index, 3)[..5]),
                "namespace": workload.namespace,
                "labels": { "kubernetes.io/service-name": workload.name, "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io" },
                "ownerReferences": [ { "apiVersion": "v1", "kind": "Service", "name": workload.name, "uid": owner_uid(plan, index, 2), "controller": true } ],
            },
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": [ { "name": "tcp", "port": service.port, "protocol": "TCP" } ],
        }));
    }
    let mut state = json!({
        "nodes": nodes,
        "pods": pods,
        "replicasets": replica_sets,
        "services": services,
        "endpointslices": slices,
        "apis": [],
    });
    if plan.scenario.service.metallb
        && let (Some(object), Some(map)) = (metallb(plan), state.as_object_mut())
    {
        map.extend(object);
        map.insert("apis".into(), json!([METALLB_API]));
    }
    state
}

/// MetalLB's API group and version.
pub const METALLB_API: &str = "metallb.io/v1beta1";
/// Where MetalLB runs and keeps its objects.
pub const METALLB_NAMESPACE: &str = "metallb-system";
/// The address pool holding the LoadBalancer IP.
pub const POOL: &str = "bakery-pool";
/// The BGP peer MetalLB's speakers announce to: the LAN's router (here the proxy's and client's
/// routing tables).
pub const BGP_PEER: &str = "router";

/// A Service as the API serves it: see the module docs.
fn service_object(plan: &Plan, index: usize, service: &ServicePlan) -> Value {
    let scenario = &plan.scenario.service;
    let mut port = json!({ "name": "http", "protocol": "TCP", "port": service.port, "targetPort": service.port });
    if let Some(node_port) = service.node_port {
        port["nodePort"] = json!(node_port);
    }
    let ip = service.cluster_ip.to_string();
    let mut spec = json!({
        "type": if service.load_balancer { "LoadBalancer" } else { "ClusterIP" },
        "clusterIP": ip,
        "clusterIPs": [ ip ],
        "ipFamilies": [ "IPv4" ],
        "ipFamilyPolicy": "SingleStack",
        "selector": { "app": service.workload },
        "ports": [ port ],
        "sessionAffinity": "None",
        "internalTrafficPolicy": "Cluster",
    });
    let mut metadata = json!({
        "name": service.workload,
        "namespace": service.namespace,
        "uid": owner_uid(plan, index, 2),
        "labels": { "app": service.workload },
    });
    let mut status = json!({ "loadBalancer": {} });
    if service.load_balancer {
        spec["externalTrafficPolicy"] = json!(match scenario.external_traffic_policy {
            TrafficPolicy::Cluster => "Cluster",
            TrafficPolicy::Local => "Local",
        });
        spec["allocateLoadBalancerNodePorts"] = json!(true);
        if let Some(health) = service.health_check_node_port {
            spec["healthCheckNodePort"] = json!(health);
        }
        if scenario.session_affinity == SessionAffinity::ClientIp {
            spec["sessionAffinity"] = json!("ClientIP");
            spec["sessionAffinityConfig"] = json!({ "clientIP": { "timeoutSeconds": AFFINITY_TIMEOUT_SECONDS } });
        }
        // `ipMode: VIP`: the API server's default for an address that packets are addressed to.
        status =
            json!({ "loadBalancer": { "ingress": [ { "ip": plan.load_balancer_ip.to_string(), "ipMode": "VIP" } ] } });
        if scenario.metallb {
            metadata["annotations"] = json!({ "metallb.io/ip-allocated-from-pool": POOL });
        }
    }
    json!({ "apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec, "status": status })
}

/// MetalLB's objects for the LoadBalancer Service, by state-file key; `None` without one.
fn metallb(plan: &Plan) -> Option<serde_json::Map<String, Value>> {
    // One piece: MetalLB's objects for one Service (address pool, advertisement, a status per announcer), built with
    // one helper and referring to each other by name.
    let service = plan.load_balancer()?;
    let object = |kind: &str, name: String, uid: String, body: (&str, Value)| {
        let mut object = json!({
            "apiVersion": METALLB_API,
            "kind": kind,
            "metadata": { "name": name, "namespace": METALLB_NAMESPACE, "uid": uid },
        });
        object[body.0] = body.1;
        object
    };
    let status_object = |kind: &str, prefix: &str, node: &NodePlan, status: Value| {
        let mut object = object(
            kind,
            format!("{prefix}{}", suffix((u64::from(plan.run_id) << 8) ^ (node.index as u64) ^ 0xe7a1, 5)),
            metallb_uid(plan, 0x10 + node.index),
            ("status", status),
        );
        let metadata = &mut object["metadata"];
        metadata["generateName"] = json!(prefix);
        metadata["labels"] = json!({
            "metallb.io/node": node.name,
            "metallb.io/service-name": service.workload,
            "metallb.io/service-namespace": service.namespace,
        });
        object["spec"] = json!({});
        object
    };
    let pool = object(
        "IPAddressPool",
        POOL.into(),
        metallb_uid(plan, 0),
        (
            "spec",
            json!({ "addresses": [ format!("{}/32", plan.load_balancer_ip) ], "autoAssign": true, "avoidBuggyIPs": false }),
        ),
    );
    let mut objects = serde_json::Map::new();
    objects.insert("ipaddresspools".into(), json!([pool]));
    let (mut l2_advertisements, mut l2_statuses, mut bgp_advertisements, mut bgp_statuses) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    match plan.scenario.service.entry {
        Entry::L2 => {
            l2_advertisements.push(object(
                "L2Advertisement",
                "bakery-l2".into(),
                metallb_uid(plan, 1),
                ("spec", json!({ "ipAddressPools": [POOL], "interfaces": [NODE_NIC] })),
            ));
            // One speaker answers ARP for the IP, and only it writes a status.
            for node in plan.entry_nodes() {
                l2_statuses.push(status_object(
                    "ServiceL2Status",
                    "l2-",
                    node,
                    json!({
                        "node": node.name,
                        "serviceName": service.workload,
                        "serviceNamespace": service.namespace,
                        "interfaces": [ { "name": NODE_NIC } ],
                    }),
                ));
            }
        }
        Entry::EveryNode => {
            bgp_advertisements.push(object(
                "BGPAdvertisement",
                "bakery-bgp".into(),
                metallb_uid(plan, 2),
                ("spec", json!({ "ipAddressPools": [POOL], "aggregationLength": 32, "aggregationLengthV6": 128 })),
            ));
            for node in plan.entry_nodes() {
                bgp_statuses.push(status_object(
                    "ServiceBGPStatus",
                    "bgp-",
                    node,
                    json!({
                        "node": node.name,
                        "serviceName": service.workload,
                        "serviceNamespace": service.namespace,
                        "peers": [ BGP_PEER ],
                    }),
                ));
            }
        }
    }
    objects.insert("l2advertisements".into(), json!(l2_advertisements));
    objects.insert("servicel2statuses".into(), json!(l2_statuses));
    objects.insert("bgpadvertisements".into(), json!(bgp_advertisements));
    objects.insert("servicebgpstatuses".into(), json!(bgp_statuses));
    Some(objects)
}

fn pod_object(plan: &Plan, pod: &PodPlan) -> Value {
    let workload_index = plan.scenario.workloads.iter().position(|w| w.name == pod.workload).unwrap_or(0);
    let owner = match (&pod.replica_set, pod.kind) {
        (Some(rs), _) => {
            json!({ "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs, "uid": owner_uid(plan, workload_index, 1), "controller": true })
        }
        (None, kind) => {
            json!({ "apiVersion": "apps/v1", "kind": kind_name(kind), "name": pod.workload, "uid": owner_uid(plan, workload_index, 0), "controller": true })
        }
    };
    let mut labels = serde_json::Map::new();
    labels.insert("app".into(), json!(pod.workload));
    if let Some(hash) = pod.replica_set.as_deref().and_then(|rs| rs.strip_prefix(&format!("{}-", pod.workload))) {
        // The Deployment controller labels its pods with the ReplicaSet's template hash; clients
        // (and the collector) find the Deployment by cutting it off the ReplicaSet's name.
        labels.insert("pod-template-hash".into(), json!(hash));
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod.name,
            "namespace": pod.namespace,
            "uid": pod.uid,
            "labels": labels,
            "ownerReferences": [ owner ],
        },
        "spec": { "nodeName": pod.node, "containers": [ { "name": pod.workload, "image": format!("bakery-demo/{}", pod.workload) } ] },
        "status": {
            "phase": "Running",
            "podIP": pod.address.to_string(),
            "qosClass": "BestEffort",
            "conditions": [ { "type": "Ready", "status": "True" }, { "type": "ContainersReady", "status": "True" } ],
        },
    })
}

fn kind_name(kind: WorkloadKind) -> &'static str {
    kind.name()
}

fn node_uid(plan: &Plan, index: usize) -> String {
    format!("{:08x}-bd01-4000-8000-{index:012x}", plan.run_id)
}

/// UIDs of a workload's objects: 0 the workload, 1 its ReplicaSet, 2 its Service, 3 its slice.
fn owner_uid(plan: &Plan, workload: usize, object: u8) -> String {
    format!("{:08x}-bd02-4{object:03x}-8000-{workload:012x}", plan.run_id)
}

/// UIDs of MetalLB's objects: 0 the pool, 1 and 2 the advertisements, 0x10 + k node k's status.
fn metallb_uid(plan: &Plan, object: usize) -> String {
    format!("{:08x}-bd03-4000-8000-{object:012x}", plan.run_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    fn state_of(name: &str) -> (Plan, Value) {
        let plan = Plan::new(Scenario::shipped(name).unwrap(), 0xabc);
        let state = state(&plan);
        (plan, state)
    }

    #[test]
    fn nodes_carry_their_role_labels() {
        let (_, state) = state_of("l2-ingress");
        let nodes = state["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), 5);
        assert_eq!(nodes[0]["metadata"]["labels"]["node-role.kubernetes.io/control-plane"], "true");
        assert_eq!(nodes[3]["metadata"]["labels"]["node-role.kubernetes.io/worker"], "true");
        assert!(nodes[3]["metadata"]["labels"].get("node-role.kubernetes.io/control-plane").is_none());
        assert_eq!(nodes[1]["status"]["addresses"][0]["address"], "198.18.0.12");
    }

    #[test]
    fn pods_name_their_node_owner_and_readiness() {
        let (plan, state) = state_of("l2-ingress");
        let pods = state["pods"].as_array().unwrap();
        assert_eq!(pods.len(), plan.pods.len());
        let first = &pods[0];
        assert_eq!(first["metadata"]["uid"], plan.pods[0].uid.as_str());
        assert_eq!(first["spec"]["nodeName"], "master-02");
        assert_eq!(first["metadata"]["ownerReferences"][0]["kind"], "ReplicaSet");
        let rs_name = first["metadata"]["ownerReferences"][0]["name"].as_str().unwrap();
        let hash = first["metadata"]["labels"]["pod-template-hash"].as_str().unwrap();
        assert_eq!(rs_name, format!("wordpress-{hash}"), "the Deployment is the ReplicaSet name less the hash");
        assert_eq!(first["status"]["conditions"][0]["type"], "Ready");
        let mysql = pods.iter().find(|p| p["metadata"]["name"] == "mysql-0").unwrap();
        assert_eq!(mysql["metadata"]["ownerReferences"][0]["kind"], "StatefulSet");
        let rs = &state["replicasets"][0];
        assert_eq!(rs["metadata"]["ownerReferences"][0]["kind"], "Deployment");
        assert_eq!(rs["metadata"]["ownerReferences"][0]["name"], "wordpress");
    }

    #[test]
    fn endpoint_slices_list_every_ready_endpoint_with_its_node() {
        let (_, state) = state_of("uneven-placement");
        let slices = state["endpointslices"].as_array().unwrap();
        let wordpress =
            slices.iter().find(|s| s["metadata"]["labels"]["kubernetes.io/service-name"] == "wordpress").unwrap();
        let nodes: Vec<&str> =
            wordpress["endpoints"].as_array().unwrap().iter().map(|e| e["nodeName"].as_str().unwrap()).collect();
        assert_eq!(nodes, ["worker-01", "worker-01", "master-03"]);
        assert!(wordpress["endpoints"].as_array().unwrap().iter().all(|e| e["conditions"]["ready"] == true));
        let services = state["services"].as_array().unwrap();
        let lb = services.iter().find(|s| s["spec"]["type"] == "LoadBalancer").unwrap();
        assert_eq!(lb["status"]["loadBalancer"]["ingress"][0]["ip"], "198.18.0.100");
        assert_eq!(lb["spec"]["externalTrafficPolicy"], "Cluster");
    }

    fn service<'a>(state: &'a Value, name: &str) -> &'a Value {
        state["services"].as_array().unwrap().iter().find(|s| s["metadata"]["name"] == name).unwrap()
    }

    fn items<'a>(state: &'a Value, key: &str) -> &'a [Value] {
        state[key].as_array().unwrap_or_else(|| panic!("no {key} in the state")).as_slice()
    }

    #[test]
    fn services_carry_every_field_the_api_server_sets() {
        let (plan, state) = state_of("l2-ingress");
        let wordpress = service(&state, "wordpress");
        let spec = &wordpress["spec"];
        assert_eq!(spec["type"], "LoadBalancer");
        let cluster_ip = plan.service("wordpress").unwrap().cluster_ip.to_string();
        assert_eq!((&spec["clusterIP"], &spec["clusterIPs"]), (&json!(cluster_ip), &json!([cluster_ip])));
        assert_eq!(spec["internalTrafficPolicy"], "Cluster");
        assert_eq!(spec["externalTrafficPolicy"], "Cluster");
        assert_eq!(spec["sessionAffinity"], "None");
        assert!(spec.get("sessionAffinityConfig").is_none() && spec.get("healthCheckNodePort").is_none());
        assert_eq!(spec["selector"], json!({ "app": "wordpress" }));
        let port = &spec["ports"][0];
        assert_eq!((&port["port"], &port["targetPort"], &port["protocol"]), (&json!(80), &json!(80), &json!("TCP")));
        assert_eq!(port["nodePort"], json!(plan.load_balancer().unwrap().node_port.unwrap()));
        assert_eq!(wordpress["status"]["loadBalancer"]["ingress"], json!([{ "ip": "198.18.0.100", "ipMode": "VIP" }]));
        assert_eq!(wordpress["metadata"]["annotations"]["metallb.io/ip-allocated-from-pool"], POOL);

        let mysql = service(&state, "mysql");
        assert_eq!(mysql["spec"]["type"], "ClusterIP");
        assert_eq!(mysql["spec"]["internalTrafficPolicy"], "Cluster");
        assert!(mysql["spec"].get("externalTrafficPolicy").is_none(), "only for NodePort and LoadBalancer Services");
        assert!(mysql["spec"]["ports"][0].get("nodePort").is_none());
        assert_eq!(mysql["status"], json!({ "loadBalancer": {} }));
    }

    #[test]
    fn client_ip_affinity_and_local_policy_show_their_settings() {
        let (_, state) = state_of("session-affinity");
        let spec = &service(&state, "wordpress")["spec"];
        assert_eq!(spec["sessionAffinity"], "ClientIP");
        assert_eq!(spec["sessionAffinityConfig"], json!({ "clientIP": { "timeoutSeconds": 10800 } }));
        let (plan, state) = state_of("local-policy");
        let spec = &service(&state, "wordpress")["spec"];
        assert_eq!(spec["externalTrafficPolicy"], "Local");
        assert_eq!(spec["healthCheckNodePort"], json!(plan.load_balancer().unwrap().health_check_node_port.unwrap()));
    }

    #[test]
    fn an_l2_service_has_one_status_naming_its_announcer() {
        let (plan, state) = state_of("l2-ingress");
        assert_eq!(state["apis"], json!(["metallb.io/v1beta1"]));
        let pools = items(&state, "ipaddresspools");
        assert_eq!(pools.len(), 1);
        assert_eq!(pools[0]["spec"]["addresses"], json!(["198.18.0.100/32"]));
        assert_eq!(pools[0]["metadata"]["namespace"], "metallb-system");
        let advertisements = items(&state, "l2advertisements");
        assert_eq!(advertisements.len(), 1);
        assert_eq!(advertisements[0]["spec"], json!({ "ipAddressPools": [POOL], "interfaces": ["eth0"] }));
        let statuses = items(&state, "servicel2statuses");
        assert_eq!(statuses.len(), 1);
        let status = &statuses[0];
        assert_eq!(status["apiVersion"], "metallb.io/v1beta1");
        assert_eq!(status["kind"], "ServiceL2Status");
        let metadata = &status["metadata"];
        assert_eq!(metadata["namespace"], "metallb-system");
        assert_eq!(metadata["generateName"], "l2-");
        let name = metadata["name"].as_str().unwrap();
        assert!(name.starts_with("l2-") && name.len() == 8, "{name}");
        assert_eq!(
            metadata["labels"],
            json!({ "metallb.io/node": "master-02", "metallb.io/service-name": "wordpress", "metallb.io/service-namespace": "wordpress" })
        );
        assert_eq!(
            status["status"],
            json!({ "node": "master-02", "serviceName": "wordpress", "serviceNamespace": "wordpress", "interfaces": [{ "name": "eth0" }] })
        );
        assert!(items(&state, "servicebgpstatuses").is_empty() && items(&state, "bgpadvertisements").is_empty());
        assert_eq!(plan.scenario.announcer(), Some("master-02"));
    }

    #[test]
    fn bgp_statuses_name_every_announcing_node() {
        let (_, state) = state_of("balanced");
        let nodes = |state: &Value| -> Vec<String> {
            items(state, "servicebgpstatuses")
                .iter()
                .map(|s| {
                    assert_eq!(s["metadata"]["labels"]["metallb.io/node"], s["status"]["node"]);
                    assert!(s["metadata"]["name"].as_str().unwrap().starts_with("bgp-"));
                    assert_eq!(s["status"]["peers"], json!([BGP_PEER]));
                    s["status"]["node"].as_str().unwrap().to_string()
                })
                .collect()
        };
        assert_eq!(
            nodes(&state),
            ["master-01", "master-02", "master-03", "worker-01", "worker-02"],
            "Cluster: every node"
        );
        let names: std::collections::BTreeSet<&str> =
            items(&state, "servicebgpstatuses").iter().map(|s| s["metadata"]["name"].as_str().unwrap()).collect();
        assert_eq!(names.len(), 5, "generated names differ");
        assert_eq!(items(&state, "bgpadvertisements").len(), 1);
        assert!(items(&state, "servicel2statuses").is_empty());
        // Local: MetalLB announces only from nodes with a ready endpoint.
        let (_, local) = state_of("keepalive-pinning");
        assert_eq!(nodes(&local), ["master-02", "worker-01", "worker-02"]);
    }

    #[test]
    fn behind_an_in_cluster_proxy_the_load_balancer_service_selects_the_proxy() {
        let (plan, state) = state_of("in-cluster-proxy");
        let relay = plan.scenario.relay().unwrap();
        let proxy = service(&state, &relay.name);
        assert_eq!(proxy["spec"]["type"], "LoadBalancer");
        assert_eq!(proxy["spec"]["selector"], json!({ "app": relay.name }));
        assert_eq!(service(&state, "wordpress")["spec"]["type"], "ClusterIP");
        let status = &items(&state, "servicel2statuses")[0]["status"];
        assert_eq!(status["serviceName"], json!(relay.name));
        assert_eq!(status["serviceNamespace"], json!(relay.namespace));
        // The proxy's pods are pods of a Deployment, as any workload's, with their own slice.
        let slices = items(&state, "endpointslices");
        assert!(slices.iter().any(|s| s["metadata"]["labels"]["kubernetes.io/service-name"] == json!(relay.name)));
        let pods = items(&state, "pods");
        let proxy_pod = pods.iter().find(|p| p["metadata"]["labels"]["app"] == json!(relay.name)).unwrap();
        assert_eq!(proxy_pod["metadata"]["ownerReferences"][0]["kind"], "ReplicaSet");
    }

    #[test]
    fn without_metallb_nothing_says_who_announces() {
        let text = crate::scenario::SHIPPED
            .iter()
            .find(|(name, _)| *name == "l2-ingress")
            .unwrap()
            .1
            .replace("announcer = \"master-02\"", "announcer = \"master-02\"\nmetallb = false");
        let plan = Plan::new(Scenario::parse(&text).unwrap(), 1);
        let state = state(&plan);
        assert_eq!(state["apis"], json!([]), "MetalLB's CRDs are not installed");
        for key in
            ["ipaddresspools", "l2advertisements", "bgpadvertisements", "servicel2statuses", "servicebgpstatuses"]
        {
            assert!(state.get(key).is_none(), "{key}");
        }
        let wordpress = service(&state, "wordpress");
        assert!(wordpress["metadata"].get("annotations").is_none());
        assert_eq!(
            wordpress["status"]["loadBalancer"]["ingress"][0]["ip"], "198.18.0.100",
            "the address is still assigned"
        );
    }
}
