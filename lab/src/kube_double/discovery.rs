//! Discovery: what `/version`, `/api`, `/apis` and a group-version's resource list answer, from
//! the kinds served right now.

use serde_json::{Value, json};

use super::Kind;

pub(super) fn version_info() -> Value {
    json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0", "gitCommit": "bakery-fake-apiserver",
           "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24.0",
           "compiler": "gc", "platform": "linux/amd64"})
}

/// The served API groups (not the core group), each with its one version, in a stable order.
pub(super) fn served_group_versions(served: &[Kind]) -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for kind in served.iter().filter(|k| !k.group().is_empty()) {
        if !out.contains(&(kind.group(), kind.version())) {
            out.push((kind.group(), kind.version()));
        }
    }
    out
}

pub(super) fn api_group(group: &str, version: &str) -> Value {
    let group_version = json!({"groupVersion": format!("{group}/{version}"), "version": version});
    json!({"name": group, "versions": [group_version], "preferredVersion": group_version})
}

pub(super) fn api_resource(kind: Kind) -> Value {
    let mut resource = json!({
        "name": kind.plural(),
        "singularName": kind.name().to_ascii_lowercase(),
        "namespaced": kind.namespaced(),
        "kind": kind.name(),
        "verbs": ["get", "list", "watch"],
    });
    if !kind.short_names().is_empty() {
        resource["shortNames"] = json!(kind.short_names());
    }
    if !kind.categories().is_empty() {
        resource["categories"] = json!(kind.categories());
    }
    resource
}
