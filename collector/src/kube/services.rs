//! Pure mapping from Services, their EndpointSlices, pods, Nodes and MetalLB's objects to how
//! each Service lets client traffic in, as the cluster declares it ([`ServiceEntry`]): type,
//! traffic policies, session affinity, load-balancer addresses, which nodes announce the address
//! (MetalLB's `ServiceL2Status` / `ServiceBGPStatus`, K3s ServiceLB's DaemonSet, or every node for
//! a NodePort) and which nodes may (the advertisements' node selectors). No IO: tested with
//! hand-built objects.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bakery_diagnosis::{Announcement, ServiceEntry, ServiceType, SessionAffinity, TrafficPolicy, WorkloadRef};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::DynamicObject;

use super::mapping::PodMeta;

/// The label the EndpointSlice controller puts on a Service's slices (discovery.k8s.io/v1).
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// `sessionAffinityConfig.clientIP.timeoutSeconds` when the Service leaves it out (core/v1).
pub const DEFAULT_AFFINITY_TIMEOUT_SECONDS: u32 = 10_800;

/// K3s ServiceLB labels its `svclb-*` DaemonSet pods with the Service they serve
/// (`svccontroller.k3s.cattle.io/svcname` and `.../svcnamespace`, k3s
/// `pkg/cloudprovider/servicelb.go`).
pub const SVCLB_NAME_LABEL: &str = "svccontroller.k3s.cattle.io/svcname";
pub const SVCLB_NAMESPACE_LABEL: &str = "svccontroller.k3s.cattle.io/svcnamespace";

/// MetalLB's controller annotates a Service with the IPAddressPool its address came from
/// (`metallb.io/...`; before 0.14 `metallb.universe.tf/...`, still written for compatibility).
pub const POOL_ANNOTATIONS: [&str; 2] =
    ["metallb.io/ip-allocated-from-pool", "metallb.universe.tf/ip-allocated-from-pool"];

/// The labels MetalLB's speaker puts on its status objects besides `status.serviceName` and
/// `status.serviceNamespace` (MetalLB `internal/k8s/controllers`).
const METALLB_SERVICE_NAME_LABEL: &str = "metallb.io/service-name";
const METALLB_SERVICE_NAMESPACE_LABEL: &str = "metallb.io/service-namespace";

/// What the collector knows of MetalLB.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum MetalLb {
    /// Not looked at yet (the collector just started).
    #[default]
    Pending,
    /// Every MetalLB kind the collector reads answers 404: no MetalLB CRDs.
    NotInstalled,
    /// The API refused or failed to answer (for example 403: the RBAC lacks metallb.io).
    Unreadable(String),
    /// Installed (at least one of its kinds is served), with its objects.
    Installed(MetalLbObjects),
}

/// MetalLB's objects (`metallb.io/v1beta1`), as the API returns them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetalLbObjects {
    pub l2_statuses: Vec<DynamicObject>,
    pub bgp_statuses: Vec<DynamicObject>,
    pub l2_advertisements: Vec<DynamicObject>,
    pub bgp_advertisements: Vec<DynamicObject>,
    /// The kinds (plurals, e.g. `servicebgpstatuses`) this MetalLB does not serve: the status
    /// kinds are recent (ServiceL2Status came with MetalLB 0.14.4, ServiceBGPStatus with 0.15.0).
    pub missing: BTreeSet<String>,
}

/// The plurals of MetalLB's status kinds.
pub const L2_STATUSES: &str = "servicel2statuses";
pub const BGP_STATUSES: &str = "servicebgpstatuses";

/// Everything the Service entries are computed from.
#[derive(Debug, Clone, Copy)]
pub struct ServiceInputs<'a> {
    pub services: &'a [Service],
    pub slices: &'a [EndpointSlice],
    pub pods_by_uid: &'a HashMap<String, PodMeta>,
    pub nodes: &'a [Node],
    pub metallb: &'a MetalLb,
}

/// Workload -> the Services that select its pods, each with its declared entry. A Service is
/// listed under every workload it selects: the workloads of the pods its EndpointSlices name
/// (label `kubernetes.io/service-name`, any readiness), and of the pods its `spec.selector`
/// matches (a pod not yet in a slice). A Service that selects no known pod is not listed.
pub fn service_entries(inputs: &ServiceInputs<'_>) -> BTreeMap<WorkloadRef, Vec<ServiceEntry>> {
    let mut out: BTreeMap<WorkloadRef, Vec<ServiceEntry>> = BTreeMap::new();
    for service in inputs.services {
        let workloads = selected_workloads(service, inputs.slices, inputs.pods_by_uid);
        if workloads.is_empty() {
            continue;
        }
        let entry = service_entry(service, inputs);
        for workload in workloads {
            out.entry(workload).or_default().push(entry.clone());
        }
    }
    for entries in out.values_mut() {
        entries.sort_by(|a, b| a.service.cmp(&b.service));
    }
    out
}

/// The note a report carries about MetalLB, when what it says about entry nodes is limited.
pub fn metallb_note(metallb: &MetalLb) -> Option<String> {
    match metallb {
        MetalLb::Pending => None,
        MetalLb::Installed(objects) if objects.missing.is_empty() => None,
        MetalLb::Installed(objects) => Some(format!(
            "MetalLB serves no {} (ServiceL2Status came with MetalLB 0.14.4, ServiceBGPStatus with 0.15.0): the \
             nodes it announces through them are unknown",
            objects.missing.iter().map(|kind| format!("{kind}.metallb.io")).collect::<Vec<_>>().join(", ")
        )),
        MetalLb::NotInstalled => Some(NOT_INSTALLED_NOTE.to_string()),
        MetalLb::Unreadable(why) => Some(format!(
            "MetalLB's objects could not be read ({why}); entry nodes of LoadBalancer Services are unknown"
        )),
    }
}

/// What the collector logs (once) and notes when MetalLB's CRDs answer 404.
pub const NOT_INSTALLED_NOTE: &str = "MetalLB is not installed (servicel2statuses.metallb.io: 404); entry nodes of LoadBalancer Services \
     are unknown unless K3s ServiceLB holds their address";

fn service_key(service: &Service) -> (&str, &str) {
    (service.metadata.namespace.as_deref().unwrap_or_default(), service.metadata.name.as_deref().unwrap_or_default())
}

fn selected_workloads(
    service: &Service,
    slices: &[EndpointSlice],
    pods_by_uid: &HashMap<String, PodMeta>,
) -> BTreeSet<WorkloadRef> {
    let (namespace, name) = service_key(service);
    let mut out = BTreeSet::new();
    let own_slices = slices.iter().filter(|slice| {
        slice.metadata.namespace.as_deref() == Some(namespace)
            && slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)).map(String::as_str) == Some(name)
    });
    for endpoint in own_slices.flat_map(|s| s.endpoints.iter()) {
        let uid = endpoint.target_ref.as_ref().and_then(|t| t.uid.as_ref());
        if let Some(workload) = uid.and_then(|uid| pods_by_uid.get(uid)).and_then(|p| p.workload.clone()) {
            out.insert(workload);
        }
    }
    // An empty selector selects nothing (a Service without a selector has manual endpoints).
    if let Some(selector) = service.spec.as_ref().and_then(|s| s.selector.as_ref()).filter(|s| !s.is_empty()) {
        for pod in pods_by_uid.values().filter(|p| p.namespace == namespace) {
            if selector.iter().all(|(k, v)| pod.labels.get(k) == Some(v))
                && let Some(workload) = &pod.workload
            {
                out.insert(workload.clone());
            }
        }
    }
    out
}

/// One Service's declared entry.
pub fn service_entry(service: &Service, inputs: &ServiceInputs<'_>) -> ServiceEntry {
    let (namespace, name) = service_key(service);
    let spec = service.spec.as_ref();
    let service_type = match spec.and_then(|s| s.type_.as_deref()) {
        Some("NodePort") => ServiceType::NodePort,
        Some("LoadBalancer") => ServiceType::LoadBalancer,
        Some("ExternalName") => ServiceType::ExternalName,
        _ => ServiceType::ClusterIP,
    };
    let policy = |value: Option<&String>| match value.map(String::as_str) {
        Some("Local") => TrafficPolicy::Local,
        _ => TrafficPolicy::Cluster,
    };
    let session_affinity = (spec.and_then(|s| s.session_affinity.as_deref()) == Some("ClientIP")).then(|| {
        let timeout = spec
            .and_then(|s| s.session_affinity_config.as_ref())
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u32::try_from(t).ok())
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT_SECONDS);
        SessionAffinity { timeout_seconds: timeout }
    });
    let load_balancer_ips = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|ingress| ingress.iter().filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone())).collect())
        .unwrap_or_default();
    let (announcement, eligible_nodes) = announcement(service, service_type, inputs);
    ServiceEntry {
        service: format!("{namespace}/{name}"),
        service_type,
        external_traffic_policy: policy(spec.and_then(|s| s.external_traffic_policy.as_ref())),
        internal_traffic_policy: policy(spec.and_then(|s| s.internal_traffic_policy.as_ref())),
        session_affinity,
        load_balancer_ips,
        announcement,
        eligible_nodes,
    }
}

fn announcement(
    service: &Service,
    service_type: ServiceType,
    inputs: &ServiceInputs<'_>,
) -> (Announcement, Option<BTreeSet<String>>) {
    if let MetalLb::Installed(metallb) = inputs.metallb {
        let l2 = statuses_naming(&metallb.l2_statuses, service);
        // During a handover two speakers may briefly both have a status; the newest one is the
        // node that answers now (ties: the first name).
        if let Some(newest) = l2
            .iter()
            .max_by(|a, b| (&a.0.metadata.creation_timestamp, &b.1).cmp(&(&b.0.metadata.creation_timestamp, &a.1)))
        {
            let announcement =
                Announcement::L2 { node: newest.2.clone(), source: format!("ServiceL2Status {}", newest.1) };
            return (announcement, eligible_nodes(&metallb.l2_advertisements, service, inputs.nodes));
        }
        let bgp = statuses_naming(&metallb.bgp_statuses, service);
        if !bgp.is_empty() {
            let names: BTreeSet<&str> = bgp.iter().map(|(_, name, _)| name.as_str()).collect();
            let announcement = Announcement::Bgp {
                nodes: bgp.iter().map(|(_, _, node)| node.clone()).collect(),
                source: format!("ServiceBGPStatus {}", names.into_iter().collect::<Vec<_>>().join(", ")),
            };
            return (announcement, eligible_nodes(&metallb.bgp_advertisements, service, inputs.nodes));
        }
    }
    let unknown = |reason: String| (Announcement::Unknown { reason }, None);
    match service_type {
        ServiceType::NodePort => (Announcement::EveryNode { source: "Service type NodePort".into() }, None),
        ServiceType::LoadBalancer => {
            if let Some((daemon_set, nodes)) = servicelb(service, inputs.pods_by_uid) {
                let all: BTreeSet<String> = inputs.nodes.iter().filter_map(|n| n.metadata.name.clone()).collect();
                let eligible = (!all.is_empty() && !all.is_subset(&nodes)).then_some(nodes);
                return (Announcement::EveryNode { source: format!("K3s ServiceLB DaemonSet {daemon_set}") }, eligible);
            }
            unknown(match inputs.metallb {
                MetalLb::Installed(objects) => status_missing_reason(objects).into(),
                MetalLb::NotInstalled => "MetalLB is not installed and no K3s ServiceLB pods hold the address".into(),
                MetalLb::Unreadable(why) => {
                    format!("MetalLB's objects could not be read ({why}) and no K3s ServiceLB pods hold the address")
                }
                MetalLb::Pending => "MetalLB's objects are not read yet".into(),
            })
        }
        ServiceType::ClusterIP => unknown("type ClusterIP: reached from inside the cluster only".into()),
        ServiceType::ExternalName => {
            unknown("type ExternalName: a DNS alias, not served by the cluster's nodes".into())
        }
    }
}

/// Why no MetalLB status names a Service, given which status kinds this MetalLB serves.
fn status_missing_reason(objects: &MetalLbObjects) -> &'static str {
    match (objects.missing.contains(L2_STATUSES), objects.missing.contains(BGP_STATUSES)) {
        (false, false) => "no ServiceL2Status or ServiceBGPStatus names the Service yet",
        (false, true) => {
            "no ServiceL2Status names the Service, and this MetalLB (older than 0.15.0) publishes no ServiceBGPStatus"
        }
        (true, false) => "no ServiceBGPStatus names the Service, and this MetalLB publishes no ServiceL2Status",
        (true, true) => "this MetalLB (older than 0.14.4) publishes no ServiceL2Status or ServiceBGPStatus",
    }
}

/// The status objects that name `service` and a node: (object, `namespace/name`, node).
fn statuses_naming<'a>(statuses: &'a [DynamicObject], service: &Service) -> Vec<(&'a DynamicObject, String, String)> {
    let (namespace, name) = service_key(service);
    statuses
        .iter()
        .filter_map(|object| {
            let status = &object.data["status"];
            let label = |key: &str| object.metadata.labels.as_ref().and_then(|l| l.get(key)).map(String::as_str);
            let field = |key: &str, label_key: &str| {
                status[key].as_str().filter(|s| !s.is_empty()).or_else(|| label(label_key))
            };
            let names_it = field("serviceName", METALLB_SERVICE_NAME_LABEL) == Some(name)
                && field("serviceNamespace", METALLB_SERVICE_NAMESPACE_LABEL) == Some(namespace);
            let node = status["node"].as_str().filter(|n| !n.is_empty())?;
            let object_name = format!(
                "{}/{}",
                object.metadata.namespace.as_deref().unwrap_or_default(),
                object.metadata.name.as_deref().unwrap_or_default()
            );
            names_it.then(|| (object, object_name, node.to_string()))
        })
        .collect()
}

/// K3s ServiceLB's DaemonSet for `service` (`namespace/name`) and the nodes where its pods are
/// ready, when any is. Its pods carry the Service's name and namespace as labels; a DaemonSet
/// named as ServiceLB names it (`svclb-` + the name cut to 48 characters + `-` + the first 8
/// characters of the Service's UID) is recognised without them.
fn servicelb(service: &Service, pods_by_uid: &HashMap<String, PodMeta>) -> Option<(String, BTreeSet<String>)> {
    let (namespace, name) = service_key(service);
    let generated = service.metadata.uid.as_deref().and_then(|uid| uid.get(..8)).map(|uid| {
        let mut short = name.get(..48).unwrap_or(name);
        short = short.trim_end_matches('-');
        format!("svclb-{short}-{uid}")
    });
    let mut daemon_set = None;
    let mut nodes = BTreeSet::new();
    for pod in pods_by_uid.values() {
        let Some(workload) = pod.workload.as_ref().filter(|w| w.is_daemon_set() && w.name.starts_with("svclb-")) else {
            continue;
        };
        let labelled = pod.labels.get(SVCLB_NAME_LABEL).map(String::as_str) == Some(name)
            && pod.labels.get(SVCLB_NAMESPACE_LABEL).map_or(pod.namespace == namespace, |ns| ns == namespace);
        if !labelled && generated.as_deref() != Some(workload.name.as_str()) {
            continue;
        }
        if pod.ready && !pod.node_name.is_empty() {
            nodes.insert(pod.node_name.clone());
            daemon_set.get_or_insert_with(|| format!("{}/{}", workload.namespace, workload.name));
        }
    }
    daemon_set.map(|d| (d, nodes))
}

/// The nodes the advertisements that apply to `service` let announce it: the union of the nodes
/// their `nodeSelectors` select; `None` when one of them has no node selector (every node may),
/// or when none applies (nothing restricts the nodes).
fn eligible_nodes(advertisements: &[DynamicObject], service: &Service, nodes: &[Node]) -> Option<BTreeSet<String>> {
    let annotations = service.metadata.annotations.as_ref();
    let pool = POOL_ANNOTATIONS.iter().find_map(|key| annotations.and_then(|a| a.get(*key)));
    let service_labels = service.metadata.labels.clone().unwrap_or_default();
    let mut eligible = BTreeSet::new();
    let mut any = false;
    for advertisement in advertisements {
        let spec = &advertisement.data["spec"];
        if !advertises_pool(spec, pool.map(String::as_str)) {
            continue;
        }
        let service_selectors = selectors(&spec["serviceSelectors"]);
        if !service_selectors.is_empty() && !service_selectors.iter().any(|s| selects(s, &service_labels)) {
            continue;
        }
        any = true;
        let node_selectors = selectors(&spec["nodeSelectors"]);
        if node_selectors.is_empty() {
            return None;
        }
        for node in nodes {
            let labels = node.metadata.labels.clone().unwrap_or_default();
            if node_selectors.iter().any(|s| selects(s, &labels))
                && let Some(name) = &node.metadata.name
            {
                eligible.insert(name.clone());
            }
        }
    }
    any.then_some(eligible)
}

/// Whether an advertisement (`spec`) covers the pool the Service's address came from. With
/// neither `ipAddressPools` nor `ipAddressPoolSelectors` it covers every pool (MetalLB's rule). A
/// pool selector cannot be evaluated without the pools' labels, which the collector does not
/// watch: it is taken to cover the pool, so eligible nodes err on the side of more nodes. An
/// unknown pool (no annotation) is taken to be covered too.
fn advertises_pool(spec: &serde_json::Value, pool: Option<&str>) -> bool {
    let pools: Vec<&str> =
        spec["ipAddressPools"].as_array().map(|a| a.iter().filter_map(|v| v.as_str()).collect()).unwrap_or_default();
    let has_pool_selectors = spec["ipAddressPoolSelectors"].as_array().is_some_and(|a| !a.is_empty());
    match pool {
        None => true,
        Some(_) if pools.is_empty() && !has_pool_selectors => true,
        Some(pool) => pools.contains(&pool) || has_pool_selectors,
    }
}

/// The label selectors in a JSON array (absent: none). A selector that does not parse selects
/// nothing (the API server would have refused it).
fn selectors(value: &serde_json::Value) -> Vec<LabelSelector> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| serde_json::from_value(item.clone()).unwrap_or_else(|_| nothing_selector()))
                .collect()
        })
        .unwrap_or_default()
}

fn nothing_selector() -> LabelSelector {
    LabelSelector {
        match_expressions: Some(vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement {
            key: String::new(),
            operator: "Invalid".into(),
            values: None,
        }]),
        match_labels: None,
    }
}

/// Whether `selector` selects an object with `labels` (metav1.LabelSelector: every `matchLabels`
/// pair and every `matchExpressions` requirement must hold; an empty selector selects
/// everything). `In` needs the label with one of the values, `NotIn` its absence or another
/// value, `Exists` / `DoesNotExist` its presence / absence; an unknown operator selects nothing.
pub fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let pairs = selector.match_labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    let expressions = selector.match_expressions.iter().flatten().all(|requirement| {
        let value = labels.get(&requirement.key);
        let values = requirement.values.as_deref().unwrap_or_default();
        match requirement.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => !value.is_some_and(|v| values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    pairs && expressions
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::kube::mapping::pod_meta;

    fn from<T: serde::de::DeserializeOwned>(value: Value) -> T {
        serde_json::from_value(value).unwrap()
    }

    fn labels(value: Value) -> BTreeMap<String, String> {
        from(value)
    }

    fn web_service(spec: Value) -> Service {
        from(json!({"metadata": {"name": "web", "namespace": "shop", "uid": "0d2b6c4e-aaaa-bbbb"}, "spec": spec}))
    }

    fn pod(uid: &str, namespace: &str, name: &str, owner: (&str, &str), labels: Value, node: &str) -> PodMeta {
        pod_meta(&from(json!({
            "metadata": {"name": name, "namespace": namespace, "uid": uid, "labels": labels,
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": owner.0, "name": owner.1, "uid": "o", "controller": true}]},
            "spec": {"nodeName": node, "containers": []},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}
        })))
        .unwrap()
    }

    fn web_pods() -> HashMap<String, PodMeta> {
        let web = |uid: &str, node: &str| {
            pod(
                uid,
                "shop",
                &format!("web-6b7c9d8f5-{uid}"),
                ("ReplicaSet", "web-6b7c9d8f5"),
                json!({"app": "web", "pod-template-hash": "6b7c9d8f5"}),
                node,
            )
        };
        [web("a", "pi-1"), web("b", "pi-2")].into_iter().map(|p| (p.uid.clone(), p)).collect()
    }

    fn nodes() -> Vec<Node> {
        ["pi-1", "pi-2", "pi-3"]
            .iter()
            .map(|name| {
                let role =
                    if *name == "pi-1" { json!({"node-role.kubernetes.io/control-plane": "true"}) } else { json!({}) };
                let mut labels = json!({"kubernetes.io/hostname": name});
                labels.as_object_mut().unwrap().extend(role.as_object().unwrap().clone());
                from(json!({"metadata": {"name": name, "labels": labels}}))
            })
            .collect()
    }

    fn status(kind: &str, name: &str, node: &str, service: (&str, &str)) -> DynamicObject {
        from(json!({"apiVersion": "metallb.io/v1beta1", "kind": kind,
                    "metadata": {"name": name, "namespace": "metallb-system"},
                    "status": {"node": node, "serviceName": service.1, "serviceNamespace": service.0}}))
    }

    fn advertisement(kind: &str, spec: Value) -> DynamicObject {
        from(json!({"apiVersion": "metallb.io/v1beta1", "kind": kind,
                    "metadata": {"name": "adv", "namespace": "metallb-system"}, "spec": spec}))
    }

    fn entries(
        services: &[Service],
        pods: &HashMap<String, PodMeta>,
        metallb: &MetalLb,
    ) -> BTreeMap<WorkloadRef, Vec<ServiceEntry>> {
        let nodes = nodes();
        service_entries(&ServiceInputs { services, slices: &[], pods_by_uid: pods, nodes: &nodes, metallb })
    }

    fn web() -> WorkloadRef {
        WorkloadRef::new("Deployment", "shop", "web")
    }

    fn lb_service() -> Service {
        web_service(json!({"type": "LoadBalancer", "selector": {"app": "web"}, "externalTrafficPolicy": "Local",
                           "sessionAffinity": "ClientIP"}))
    }

    #[test]
    fn the_service_fields_come_through_with_kubernetes_defaults() {
        let mut service = web_service(json!({
            "type": "LoadBalancer", "selector": {"app": "web"},
            "externalTrafficPolicy": "Local", "internalTrafficPolicy": "Cluster",
            "sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}}
        }));
        service.status =
            Some(from(json!({"loadBalancer": {"ingress": [{"ip": "192.168.1.240"}, {"hostname": "web.lan"}]}})));
        let all = entries(&[service], &web_pods(), &MetalLb::Pending);
        let entry = &all[&web()][0];
        assert_eq!(entry.service, "shop/web");
        assert_eq!(entry.service_type, ServiceType::LoadBalancer);
        assert_eq!(
            (entry.external_traffic_policy, entry.internal_traffic_policy),
            (TrafficPolicy::Local, TrafficPolicy::Cluster)
        );
        assert_eq!(entry.session_affinity, Some(SessionAffinity { timeout_seconds: 600 }));
        assert_eq!(entry.load_balancer_ips, ["192.168.1.240", "web.lan"]);

        let plain = web_service(json!({"selector": {"app": "web"}, "sessionAffinity": "ClientIP"}));
        let entry = &entries(&[plain], &web_pods(), &MetalLb::Pending)[&web()][0];
        assert_eq!(entry.service_type, ServiceType::ClusterIP, "no type: ClusterIP");
        assert_eq!(
            (entry.external_traffic_policy, entry.internal_traffic_policy),
            (TrafficPolicy::Cluster, TrafficPolicy::Cluster)
        );
        assert_eq!(entry.session_affinity, Some(SessionAffinity { timeout_seconds: 10_800 }), "the default timeout");
        assert_eq!(
            entry.announcement,
            Announcement::Unknown { reason: "type ClusterIP: reached from inside the cluster only".into() }
        );
        let none = web_service(json!({"selector": {"app": "web"}, "sessionAffinity": "None"}));
        assert_eq!(entries(&[none], &web_pods(), &MetalLb::Pending)[&web()][0].session_affinity, None);
    }

    #[test]
    fn a_service_is_listed_under_every_workload_its_slices_and_selector_reach() {
        let mut pods = web_pods();
        let api = pod("c", "shop", "api-0", ("StatefulSet", "api"), json!({"app": "api"}), "pi-3");
        let other_namespace = pod("d", "lab", "web-x", ("ReplicaSet", "web-x"), json!({"app": "web"}), "pi-3");
        pods.insert(api.uid.clone(), api);
        pods.insert(other_namespace.uid.clone(), other_namespace);
        // `web` selects app=web; its slice also names the api pod (endpoints set by hand).
        let slice: EndpointSlice = from(json!({
            "metadata": {"name": "web-x1", "namespace": "shop", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.42.0.9"], "conditions": {"ready": false}, "targetRef": {"kind": "Pod", "uid": "c"}}]
        }));
        let unselected = from::<Service>(
            json!({"metadata": {"name": "db", "namespace": "shop"}, "spec": {"selector": {"app": "db"}}}),
        );
        let services = [lb_service(), unselected];
        let nodes = nodes();
        let all = service_entries(&ServiceInputs {
            services: &services,
            slices: &[slice],
            pods_by_uid: &pods,
            nodes: &nodes,
            metallb: &MetalLb::Pending,
        });
        let keys: Vec<&WorkloadRef> = all.keys().collect();
        assert_eq!(
            keys,
            [&web(), &WorkloadRef::new("StatefulSet", "shop", "api")],
            "not lab's pod, not the unselected db"
        );
        assert!(all.values().all(|entries| entries.len() == 1 && entries[0].service == "shop/web"));
    }

    #[test]
    fn a_service_l2_status_names_the_announcing_node_and_its_object() {
        let metallb = MetalLb::Installed(MetalLbObjects {
            l2_statuses: vec![
                status("ServiceL2Status", "l2-other", "pi-1", ("shop", "api")),
                status("ServiceL2Status", "l2-x7k2p", "pi-3", ("shop", "web")),
            ],
            l2_advertisements: vec![advertisement("L2Advertisement", json!({"ipAddressPools": ["lan"]}))],
            ..MetalLbObjects::default()
        });
        let entry = &entries(&[lb_service()], &web_pods(), &metallb)[&web()][0];
        assert_eq!(
            entry.announcement,
            Announcement::L2 { node: "pi-3".into(), source: "ServiceL2Status metallb-system/l2-x7k2p".into() }
        );
        assert_eq!(entry.eligible_nodes, None, "an advertisement without node selectors lets every node announce");

        // A handover: the new speaker's status appears before the old one is deleted.
        let stamped = |name: &str, node: &str, created: &str| {
            let mut s = status("ServiceL2Status", name, node, ("shop", "web"));
            s.metadata.creation_timestamp = Some(from(json!(created)));
            s
        };
        let metallb = MetalLb::Installed(MetalLbObjects {
            l2_statuses: vec![
                stamped("l2-new", "pi-1", "2026-01-01T10:00:05Z"),
                stamped("l2-old", "pi-3", "2026-01-01T09:00:00Z"),
            ],
            ..MetalLbObjects::default()
        });
        let entry = &entries(&[lb_service()], &web_pods(), &metallb)[&web()][0];
        assert_eq!(
            entry.announcement,
            Announcement::L2 { node: "pi-1".into(), source: "ServiceL2Status metallb-system/l2-new".into() }
        );
    }

    #[test]
    fn service_bgp_statuses_name_every_announcing_node() {
        let metallb = MetalLb::Installed(MetalLbObjects {
            bgp_statuses: vec![
                status("ServiceBGPStatus", "bgp-b", "pi-3", ("shop", "web")),
                status("ServiceBGPStatus", "bgp-a", "pi-2", ("shop", "web")),
                status("ServiceBGPStatus", "bgp-c", "pi-1", ("lab", "web")),
            ],
            bgp_advertisements: vec![advertisement(
                "BGPAdvertisement",
                json!({
                    "nodeSelectors": [{"matchExpressions": [{"key": "node-role.kubernetes.io/control-plane", "operator": "DoesNotExist"}]}]
                }),
            )],
            ..MetalLbObjects::default()
        });
        let entry = &entries(&[lb_service()], &web_pods(), &metallb)[&web()][0];
        assert_eq!(
            entry.announcement,
            Announcement::Bgp {
                nodes: BTreeSet::from(["pi-2".into(), "pi-3".into()]),
                source: "ServiceBGPStatus metallb-system/bgp-a, metallb-system/bgp-b".into()
            }
        );
        assert_eq!(entry.eligible_nodes, Some(BTreeSet::from(["pi-2".into(), "pi-3".into()])));
    }

    #[test]
    fn without_a_status_the_reason_says_what_is_missing() {
        let reason = |metallb: &MetalLb| entries(&[lb_service()], &web_pods(), metallb)[&web()][0].announcement.clone();
        assert_eq!(
            reason(&MetalLb::NotInstalled),
            Announcement::Unknown {
                reason: "MetalLB is not installed and no K3s ServiceLB pods hold the address".into()
            }
        );
        assert_eq!(
            reason(&MetalLb::Installed(MetalLbObjects::default())),
            Announcement::Unknown { reason: "no ServiceL2Status or ServiceBGPStatus names the Service yet".into() }
        );
        assert!(
            matches!(reason(&MetalLb::Unreadable("403 Forbidden".into())), Announcement::Unknown { reason } if reason.contains("403 Forbidden"))
        );
        let node_port = web_service(json!({"type": "NodePort", "selector": {"app": "web"}}));
        assert_eq!(
            entries(&[node_port], &web_pods(), &MetalLb::NotInstalled)[&web()][0].announcement,
            Announcement::EveryNode { source: "Service type NodePort".into() }
        );
        assert_eq!(metallb_note(&MetalLb::NotInstalled).as_deref(), Some(NOT_INSTALLED_NOTE));
        assert_eq!(metallb_note(&MetalLb::Installed(MetalLbObjects::default())), None);

        // MetalLB 0.14.x: ServiceL2Status exists, ServiceBGPStatus does not yet.
        let older = MetalLb::Installed(MetalLbObjects {
            missing: BTreeSet::from([BGP_STATUSES.to_string()]),
            ..MetalLbObjects::default()
        });
        assert!(
            matches!(reason(&older), Announcement::Unknown { reason } if reason.contains("publishes no ServiceBGPStatus"))
        );
        let note = metallb_note(&older).unwrap();
        assert!(note.contains("servicebgpstatuses.metallb.io") && note.contains("0.15.0"), "{note}");
    }

    #[test]
    fn k3s_servicelb_pods_make_every_node_with_one_an_entry() {
        let mut pods = web_pods();
        let svclb = |uid: &str, node: &str, labels: Value| {
            pod(
                uid,
                "kube-system",
                &format!("svclb-web-0d2b6c4e-{uid}"),
                ("DaemonSet", "svclb-web-0d2b6c4e"),
                labels,
                node,
            )
        };
        let labels = json!({"app": "svclb-web-0d2b6c4e", SVCLB_NAME_LABEL: "web", SVCLB_NAMESPACE_LABEL: "shop"});
        for p in [svclb("s1", "pi-1", labels.clone()), svclb("s2", "pi-2", labels.clone()), svclb("s3", "pi-3", labels)]
        {
            pods.insert(p.uid.clone(), p);
        }
        let entry = &entries(&[lb_service()], &pods, &MetalLb::NotInstalled)[&web()][0];
        assert_eq!(
            entry.announcement,
            Announcement::EveryNode { source: "K3s ServiceLB DaemonSet kube-system/svclb-web-0d2b6c4e".into() }
        );
        assert_eq!(entry.eligible_nodes, None, "a pod on every node");

        // Only two nodes carry ServiceLB pods (`svccontroller.k3s.cattle.io/enablelb`), and the
        // pods lack the labels: recognised by the DaemonSet's generated name.
        pods.retain(|uid, _| uid != "s3");
        for uid in ["s1", "s2"] {
            pods.get_mut(uid).unwrap().labels.clear();
        }
        let entry = &entries(&[lb_service()], &pods, &MetalLb::NotInstalled)[&web()][0];
        assert!(matches!(&entry.announcement, Announcement::EveryNode { .. }), "{entry:?}");
        assert_eq!(entry.eligible_nodes, Some(BTreeSet::from(["pi-1".into(), "pi-2".into()])));

        // Another Service's ServiceLB pods are not this one's.
        let other = json!({SVCLB_NAME_LABEL: "api", SVCLB_NAMESPACE_LABEL: "shop"});
        let mut pods = web_pods();
        let p = pod("s9", "kube-system", "svclb-api-1234abcd-x", ("DaemonSet", "svclb-api-1234abcd"), other, "pi-1");
        pods.insert(p.uid.clone(), p);
        assert!(matches!(
            entries(&[lb_service()], &pods, &MetalLb::NotInstalled)[&web()][0].announcement,
            Announcement::Unknown { .. }
        ));
    }

    #[test]
    fn eligible_nodes_follow_the_advertisements_that_cover_the_services_pool() {
        let mut service = lb_service();
        service.metadata.annotations = Some(BTreeMap::from([(POOL_ANNOTATIONS[0].to_string(), "lan".to_string())]));
        let select = |node: &str| json!({"matchLabels": {"kubernetes.io/hostname": node}});
        let metallb = MetalLb::Installed(MetalLbObjects {
            l2_statuses: vec![status("ServiceL2Status", "l2-x", "pi-2", ("shop", "web"))],
            l2_advertisements: vec![
                advertisement("L2Advertisement", json!({"ipAddressPools": ["lan"], "nodeSelectors": [select("pi-2")]})),
                advertisement("L2Advertisement", json!({"nodeSelectors": [select("pi-3")]})),
                // Another pool's advertisement does not let pi-1 announce this address.
                advertisement("L2Advertisement", json!({"ipAddressPools": ["dmz"], "nodeSelectors": [select("pi-1")]})),
                // Nor does one that selects other Services.
                advertisement(
                    "L2Advertisement",
                    json!({"serviceSelectors": [{"matchLabels": {"tier": "edge"}}],
                                                         "nodeSelectors": [select("pi-1")]}),
                ),
            ],
            ..MetalLbObjects::default()
        });
        let entry = &entries(&[service], &web_pods(), &metallb)[&web()][0];
        assert_eq!(entry.eligible_nodes, Some(BTreeSet::from(["pi-2".into(), "pi-3".into()])));
    }

    #[test]
    fn label_selectors_evaluate_match_labels_and_every_operator() {
        let node = labels(json!({"kubernetes.io/hostname": "pi-2", "zone": "rack-a", "gpu": ""}));
        let selector = |value: Value| -> LabelSelector { from(value) };
        let selected = |value: Value| selects(&selector(value), &node);
        assert!(selected(json!({})), "an empty selector selects everything");
        assert!(selected(json!({"matchLabels": {"zone": "rack-a"}})));
        assert!(!selected(json!({"matchLabels": {"zone": "rack-a", "kubernetes.io/hostname": "pi-3"}})));
        let expression = |key: &str, operator: &str, values: Value| json!({"matchExpressions": [{"key": key, "operator": operator, "values": values}]});
        assert!(selected(expression("zone", "In", json!(["rack-a", "rack-b"]))));
        assert!(!selected(expression("zone", "In", json!(["rack-b"]))));
        assert!(!selected(expression("absent", "In", json!(["x"]))));
        assert!(selected(expression("zone", "NotIn", json!(["rack-b"]))));
        assert!(selected(expression("absent", "NotIn", json!(["x"]))), "NotIn selects nodes without the label");
        assert!(!selected(expression("zone", "NotIn", json!(["rack-a"]))));
        assert!(
            selected(expression("gpu", "Exists", json!(null)))
                && !selected(expression("absent", "Exists", json!(null)))
        );
        assert!(
            selected(expression("absent", "DoesNotExist", json!(null)))
                && !selected(expression("gpu", "DoesNotExist", json!(null)))
        );
        assert!(!selected(expression("zone", "Gt", json!(["1"]))), "an unknown operator selects nothing");
        assert!(
            !selected(
                json!({"matchLabels": {"zone": "rack-a"}, "matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]})
            ),
            "all must hold"
        );
        let broken = selectors(&json!([{"matchLabels": "zone"}]));
        assert!(!selects(&broken[0], &node), "a selector that does not parse selects nothing");
    }
}
