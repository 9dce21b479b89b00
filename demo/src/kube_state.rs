//! The cluster as the Kubernetes API would show it: Nodes (with role labels), Pods (UID, name,
//! namespace, node, readiness, owner), ReplicaSets, Services and EndpointSlices (ready endpoints
//! with their node), as JSON objects in the API's own shape. The API test double
//! (`bakery-fake-apiserver --state FILE`) serves them with list and watch; the collector maps the
//! agents' pod UIDs through them. Pure. The keys are the double's (`tests/src/kube_double.rs`):
//! `nodes`, `pods`, `endpointslices`, `replicasets`; `services` is extra, for people reading the
//! file.

use serde_json::{Value, json};

use crate::plan::{Plan, PodPlan, role_label};
use crate::scenario::{Role, WorkloadKind};

/// The state file's content.
pub fn state(plan: &Plan) -> Value {
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
        let served = workload.name == plan.scenario.service.workload;
        let mut spec = json!({
            "type": if served { "LoadBalancer" } else { "ClusterIP" },
            "clusterIP": service.cluster_ip.to_string(),
            "selector": { "app": workload.name },
            "ports": [ { "name": "tcp", "port": service.port, "targetPort": service.port, "protocol": "TCP" } ],
            "sessionAffinity": "None",
        });
        let mut status = json!({});
        if served {
            let scenario = &plan.scenario.service;
            spec["externalTrafficPolicy"] = json!(format!("{:?}", scenario.external_traffic_policy));
            spec["sessionAffinity"] = json!(match scenario.session_affinity {
                crate::scenario::SessionAffinity::None => "None",
                crate::scenario::SessionAffinity::ClientIp => "ClientIP",
            });
            status = json!({ "loadBalancer": { "ingress": [ { "ip": plan.load_balancer_ip.to_string() } ] } });
        }
        services.push(json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": { "name": workload.name, "namespace": workload.namespace, "uid": owner_uid(plan, index, 2) },
            "spec": spec,
            "status": status,
        }));
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
    json!({
        "nodes": nodes,
        "pods": pods,
        "replicasets": replica_sets,
        "services": services,
        "endpointslices": slices,
    })
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
}
