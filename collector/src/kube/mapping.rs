//! Pure mapping from Kubernetes objects to what the diagnosis needs: a pod's identity, readiness
//! and owning workload, a node's role, and the ready endpoints per node of each workload. No IO:
//! every function takes objects and returns data, tested with hand-built objects.

use std::collections::{BTreeMap, HashMap};

use bakery_diagnosis::{NodeRole, WorkloadRef};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// What the collector knows about one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodMeta {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    /// `spec.nodeName`; empty while the pod is not scheduled.
    pub node_name: String,
    /// The `Ready` condition is `True`.
    pub ready: bool,
    pub host_network: bool,
    pub labels: BTreeMap<String, String>,
    /// The owning workload; `None` for a bare pod.
    pub workload: Option<WorkloadRef>,
}

/// The label the Deployment controller puts on a ReplicaSet's pods: the ReplicaSet is named
/// `<deployment>-<pod-template-hash>` (kubernetes/pkg/controller/deployment/sync.go).
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// Node role labels (kubeadm and k3s set `control-plane`; older clusters `master`).
pub const CONTROL_PLANE_LABELS: [&str; 2] = ["node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master"];

/// The role a node's labels give it.
pub fn node_role(node: &Node) -> NodeRole {
    let labels = node.metadata.labels.as_ref();
    if CONTROL_PLANE_LABELS.iter().any(|label| labels.is_some_and(|l| l.contains_key(*label))) {
        NodeRole::ControlPlane
    } else {
        NodeRole::Worker
    }
}

/// Whether the pod's `Ready` condition is `True` (what EndpointSlices and `kubectl get pods` use).
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .is_some_and(|conditions| conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The workload that owns `pod`, through its controller owner reference. A ReplicaSet owned by
/// a Deployment is resolved without a ReplicaSet watch: its name is the Deployment's name plus
/// `-<pod-template-hash>`, and the pod carries that hash as a label. A ReplicaSet whose name
/// does not end in the hash (created by hand) is reported as the ReplicaSet itself.
pub fn workload_of(pod: &Pod) -> Option<WorkloadRef> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let owners = pod.metadata.owner_references.as_ref()?;
    let owner = owners.iter().find(|o| o.controller == Some(true)).or_else(|| owners.first())?;
    if owner.kind == "ReplicaSet" {
        let hash = pod.metadata.labels.as_ref().and_then(|l| l.get(POD_TEMPLATE_HASH));
        if let Some(deployment) = hash.and_then(|hash| owner.name.strip_suffix(&format!("-{hash}")))
            && !deployment.is_empty()
        {
            return Some(WorkloadRef::new("Deployment", namespace, deployment));
        }
    }
    Some(WorkloadRef::new(owner.kind.clone(), namespace, owner.name.clone()))
}

/// Everything about one pod; `None` for a pod without a UID (never the case for a stored pod).
pub fn pod_meta(pod: &Pod) -> Option<PodMeta> {
    let uid = pod.metadata.uid.clone()?;
    Some(PodMeta {
        uid,
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default(),
        ready: pod_ready(pod),
        host_network: pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false),
        labels: pod.metadata.labels.clone().unwrap_or_default(),
        workload: workload_of(pod),
    })
}

/// Ready endpoints per workload and node, from the EndpointSlices: each ready endpoint whose
/// `targetRef` is a known pod counts once for that pod's workload on the endpoint's node (or the
/// pod's node when the slice leaves `nodeName` out). An endpoint is ready unless `conditions.ready`
/// is false (discovery.k8s.io/v1: "nil should be interpreted as true"). An endpoint listed in
/// several slices (one per Service) counts once.
pub fn ready_endpoints(
    slices: &[EndpointSlice],
    pods_by_uid: &HashMap<String, PodMeta>,
) -> BTreeMap<WorkloadRef, BTreeMap<String, u32>> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out: BTreeMap<WorkloadRef, BTreeMap<String, u32>> = BTreeMap::new();
    for endpoint in slices.iter().flat_map(|s| s.endpoints.iter()) {
        let ready = endpoint.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
        let Some(uid) = endpoint.target_ref.as_ref().and_then(|t| t.uid.as_ref()) else { continue };
        let Some(pod) = pods_by_uid.get(uid) else { continue };
        let Some(workload) = &pod.workload else { continue };
        if !ready || !seen.insert(uid.clone()) {
            continue;
        }
        let node = endpoint.node_name.clone().unwrap_or_else(|| pod.node_name.clone());
        if node.is_empty() {
            continue;
        }
        *out.entry(workload.clone()).or_default().entry(node).or_default() += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    fn web_pod(uid: &str, node: &str, ready: &str) -> Pod {
        pod(serde_json::json!({
            "metadata": {
                "name": format!("web-7d9f8c6b5d-{uid}"), "namespace": "shop", "uid": uid,
                "labels": {"app": "web", "pod-template-hash": "7d9f8c6b5d"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9f8c6b5d",
                                      "uid": "rs-1", "controller": true}]
            },
            "spec": {"nodeName": node, "containers": []},
            "status": {"conditions": [{"type": "Ready", "status": ready}]}
        }))
    }

    #[test]
    fn a_replica_set_pod_belongs_to_its_deployment() {
        let meta = pod_meta(&web_pod("u1", "pi-2", "True")).unwrap();
        assert_eq!(meta.workload, Some(WorkloadRef::new("Deployment", "shop", "web")));
        assert_eq!((meta.node_name.as_str(), meta.ready, meta.host_network), ("pi-2", true, false));
        assert_eq!(meta.labels.get("app").map(String::as_str), Some("web"));
    }

    #[test]
    fn owners_other_than_replica_sets_are_the_workload() {
        for kind in ["StatefulSet", "DaemonSet"] {
            let p = pod(serde_json::json!({"metadata": {"name": "db-0", "namespace": "data", "uid": "u",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": kind, "name": "db", "uid": "o", "controller": true}]}}));
            assert_eq!(workload_of(&p), Some(WorkloadRef::new(kind, "data", "db")));
        }
        let bare = pod(serde_json::json!({"metadata": {"name": "debug", "namespace": "default", "uid": "u"}}));
        assert_eq!(workload_of(&bare), None);
    }

    #[test]
    fn a_replica_set_without_the_hash_suffix_stays_a_replica_set() {
        let p = pod(serde_json::json!({"metadata": {"name": "x", "namespace": "n", "uid": "u",
            "labels": {"pod-template-hash": "abc"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "handmade", "uid": "o", "controller": true}]}}));
        assert_eq!(workload_of(&p), Some(WorkloadRef::new("ReplicaSet", "n", "handmade")));
    }

    #[test]
    fn readiness_follows_the_ready_condition() {
        assert!(pod_ready(&web_pod("u1", "n", "True")));
        assert!(!pod_ready(&web_pod("u1", "n", "False")));
        assert!(!pod_ready(&pod(serde_json::json!({"metadata": {"uid": "u"}}))), "no status yet: not ready");
    }

    #[test]
    fn roles_come_from_the_node_role_labels() {
        let node = |labels: serde_json::Value| -> Node {
            serde_json::from_value(serde_json::json!({"metadata": {"name": "n", "labels": labels}})).unwrap()
        };
        assert_eq!(
            node_role(&node(serde_json::json!({"node-role.kubernetes.io/control-plane": ""}))),
            NodeRole::ControlPlane
        );
        assert_eq!(
            node_role(&node(serde_json::json!({"node-role.kubernetes.io/master": "true"}))),
            NodeRole::ControlPlane
        );
        assert_eq!(node_role(&node(serde_json::json!({"kubernetes.io/hostname": "n"}))), NodeRole::Worker);
    }

    #[test]
    fn ready_endpoints_count_per_workload_and_node() {
        let pods: HashMap<String, PodMeta> = [("a", "pi-1"), ("b", "pi-1"), ("c", "pi-2"), ("d", "pi-3")]
            .into_iter()
            .map(|(uid, node)| (uid.to_string(), pod_meta(&web_pod(uid, node, "True")).unwrap()))
            .collect();
        let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-abcde", "namespace": "shop"},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.0.0.1"], "nodeName": "pi-1", "targetRef": {"kind": "Pod", "uid": "a"}},
                {"addresses": ["10.0.0.2"], "nodeName": "pi-1", "targetRef": {"kind": "Pod", "uid": "b"},
                 "conditions": {"ready": true}},
                {"addresses": ["10.0.0.3"], "targetRef": {"kind": "Pod", "uid": "c"}},
                {"addresses": ["10.0.0.4"], "nodeName": "pi-3", "targetRef": {"kind": "Pod", "uid": "d"},
                 "conditions": {"ready": false}},
                {"addresses": ["10.0.0.9"], "nodeName": "pi-3", "targetRef": {"kind": "Pod", "uid": "unknown"}}
            ]
        }))
        .unwrap();
        let twice = vec![slice.clone(), slice];
        let endpoints = ready_endpoints(&twice, &pods);
        let web = &endpoints[&WorkloadRef::new("Deployment", "shop", "web")];
        assert_eq!(web, &BTreeMap::from([("pi-1".to_string(), 2), ("pi-2".to_string(), 1)]));
    }
}
