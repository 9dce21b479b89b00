//! The cluster a state file describes ([`ClusterState`]), and each object as the API server
//! stores it: kind, apiVersion, namespace and uid filled in, or why it would be refused.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Kind, secrets};

/// The cluster as the state file describes it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ClusterState {
    /// The CRDs installed: `"metallb.io/v1beta1"` (all of MetalLB's) or CRD names
    /// (`"servicel2statuses.metallb.io"`).
    pub apis: Vec<String>,
    /// Namespaces with labels or annotations; every namespace an object uses exists anyway.
    pub namespaces: Vec<Value>,
    pub nodes: Vec<Value>,
    pub pods: Vec<Value>,
    pub services: Vec<Value>,
    /// Secrets: `data` in base64, or plain text in `stringData` (merged into `data`, as the API
    /// server does); `type` defaults to `Opaque`.
    pub secrets: Vec<Value>,
    pub endpointslices: Vec<Value>,
    pub replicasets: Vec<Value>,
    pub servicel2statuses: Vec<Value>,
    pub servicebgpstatuses: Vec<Value>,
    pub l2advertisements: Vec<Value>,
    pub bgpadvertisements: Vec<Value>,
    pub ipaddresspools: Vec<Value>,
    /// Tokens the cluster issued, for TokenReview ([`super::tokenreview::IssuedToken`]).
    pub tokenreviews: Vec<Value>,
    /// Resources anonymous requests may not touch: plurals (`"secrets"`), `"tokenreviews"` or
    /// `"pods/portforward"`; every request on one answers `403 Forbidden` ([`super::rbac`]).
    pub forbidden: Vec<String>,
}

impl ClusterState {
    pub fn parse(text: &str) -> serde_json::Result<ClusterState> {
        serde_json::from_str(text)
    }

    /// The top-level keys of a state file that the double does not know (ignored when served).
    pub fn unknown_keys(text: &str) -> Vec<String> {
        let known = |key: &str| {
            ["apis", "tokenreviews", "forbidden"].contains(&key) || Kind::ALL.iter().any(|k| k.state_key() == key)
        };
        serde_json::from_str::<serde_json::Map<String, Value>>(text)
            .map(|map| map.keys().filter(|k| !known(k)).cloned().collect())
            .unwrap_or_default()
    }

    pub(super) fn of(&self, kind: Kind) -> &[Value] {
        match kind {
            Kind::Namespace => &self.namespaces,
            Kind::Node => &self.nodes,
            Kind::Pod => &self.pods,
            Kind::Service => &self.services,
            Kind::Secret => &self.secrets,
            Kind::EndpointSlice => &self.endpointslices,
            Kind::ReplicaSet => &self.replicasets,
            Kind::ServiceL2Status => &self.servicel2statuses,
            Kind::ServiceBGPStatus => &self.servicebgpstatuses,
            Kind::L2Advertisement => &self.l2advertisements,
            Kind::BGPAdvertisement => &self.bgpadvertisements,
            Kind::IPAddressPool => &self.ipaddresspools,
        }
    }
}

/// An object's kind, namespace (empty for cluster-scoped kinds) and name.
pub(super) type ObjectKey = (Kind, String, String);

/// The object as the API server would store it, or why it would refuse it.
pub(super) fn normalise(kind: Kind, object: Value) -> Result<Value, String> {
    let Value::Object(mut map) = object else { return Err("not a JSON object".into()) };
    for (field, expected) in [("kind", kind.name()), ("apiVersion", kind.api_version())] {
        if let Some(given) = map.get(field)
            && given != expected
        {
            return Err(format!("{field} is {given}, not {expected:?}"));
        }
    }
    for field in ["spec", "status"] {
        if map.get(field).is_some_and(|v| !v.is_object()) {
            return Err(format!("{field} is not an object"));
        }
    }
    map.insert("apiVersion".into(), json!(kind.api_version()));
    map.insert("kind".into(), json!(kind.name()));
    let metadata = map.entry("metadata").or_insert_with(|| json!({}));
    let Some(metadata) = metadata.as_object_mut() else { return Err("metadata is not an object".into()) };
    let name = match metadata.get("name") {
        Some(Value::String(name)) if !name.is_empty() => name.clone(),
        _ => return Err("no metadata.name".into()),
    };
    if let Some(labels) = metadata.get("labels")
        && !labels.as_object().is_some_and(|l| l.values().all(Value::is_string))
    {
        return Err(format!("{name}: metadata.labels must map strings to strings"));
    }
    if kind.namespaced() {
        match metadata.get("namespace") {
            None => {
                metadata.insert("namespace".into(), json!("default"));
            }
            Some(Value::String(ns)) if !ns.is_empty() => {}
            Some(_) => return Err(format!("{name}: metadata.namespace is not a name")),
        }
    } else {
        metadata.remove("namespace");
    }
    if !metadata.contains_key("uid") {
        let namespace = metadata.get("namespace").and_then(Value::as_str).unwrap_or_default();
        metadata.insert("uid".into(), json!(format!("{}-{namespace}-{name}", kind.state_key())));
    }
    metadata.remove("resourceVersion");
    if kind == Kind::Secret {
        secrets::normalise(&mut map).map_err(|why| format!("{name}: {why}"))?;
    }
    Ok(Value::Object(map))
}

pub(super) fn key_of(kind: Kind, object: &Value) -> ObjectKey {
    let metadata = &object["metadata"];
    let text = |field: &str| metadata[field].as_str().unwrap_or_default().to_string();
    (kind, text("namespace"), text("name"))
}

pub(super) fn with_rv(mut object: Value, rv: u64) -> Value {
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.insert("resourceVersion".into(), json!(rv.to_string()));
    }
    object
}

pub(super) fn without_rv(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("resourceVersion");
    }
    object
}
