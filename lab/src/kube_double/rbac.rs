//! RBAC denials: the resources a state forbids, and the `403 Forbidden` Status for them. Pure.

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use super::Kind;
use super::routes::status_body;

/// Who an unauthenticated request is.
pub(super) const ANONYMOUS: &str = "system:anonymous";

/// The subresources the double serves (and so may forbid), as RBAC names them.
pub(super) const SUBRESOURCES: [&str; 1] = ["pods/portforward"];

/// What a request asks to do, as the API server's authorizer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Request<'a> {
    pub(super) verb: &'a str,
    pub(super) group: &'a str,
    pub(super) resource: &'a str,
    pub(super) subresource: Option<&'a str>,
    pub(super) namespace: Option<&'a str>,
    pub(super) name: Option<&'a str>,
}

impl Request<'_> {
    /// The resource as RBAC rules (and the state's `forbidden`) name it: `secrets`,
    /// `pods/portforward`.
    pub(super) fn rbac_resource(&self) -> String {
        match self.subresource {
            Some(sub) => format!("{}/{sub}", self.resource),
            None => self.resource.to_string(),
        }
    }

    /// The `Status` a real API server answers when RBAC denies this request.
    pub(super) fn forbidden_status(&self) -> Value {
        let rbac_resource = self.rbac_resource();
        let (verb, group) = (self.verb, self.group);
        let scope = match self.namespace {
            Some(namespace) => format!("in the namespace {namespace:?}"),
            None => "at the cluster scope".to_string(),
        };
        let why = format!("User {ANONYMOUS:?} cannot {verb} resource {rbac_resource:?} in API group {group:?} {scope}");
        let qualified = if group.is_empty() { self.resource.to_string() } else { format!("{}.{group}", self.resource) };
        let message = match self.name {
            Some(name) => format!("{qualified} {name:?} is forbidden: {why}"),
            None => format!("{qualified} is forbidden: {why}"),
        };
        let mut body = status_body(StatusCode::FORBIDDEN, "Forbidden", &message);
        let mut details = json!({"kind": self.resource});
        if let Some(name) = self.name {
            details["name"] = json!(name);
        }
        if !group.is_empty() {
            details["group"] = json!(group);
        }
        body["details"] = details;
        body
    }
}

/// The verb the authorizer checks for `method` on a path that names one object (`named`) or a
/// collection, with `?watch=true` or not.
pub(super) fn verb(method: &Method, named: bool, watch: bool) -> &'static str {
    match *method {
        Method::GET | Method::HEAD if watch => "watch",
        Method::GET | Method::HEAD if named => "get",
        Method::GET | Method::HEAD => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "unknown",
    }
}

/// A `forbidden` entry of the state that names nothing the double serves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "forbidden: {0:?} ignored: not a resource the double serves (use a plural such as \"secrets\", \
     \"tokenreviews\" or \"pods/portforward\")"
)]
pub(super) struct UnknownResource(pub(super) String);

/// The resources the state's `forbidden` entries name, and the entries that name none. The
/// double has no authentication, so every request is the anonymous user's and a forbidden
/// resource is refused whatever the verb. A subresource is its own RBAC resource, as on a real
/// server: `"pods"` does not forbid `"pods/portforward"`.
pub(super) fn forbidden_resources(entries: &[String]) -> (BTreeSet<String>, Vec<UnknownResource>) {
    let known = |entry: &str| {
        Kind::ALL.iter().any(|k| k.plural() == entry)
            || entry == super::tokenreview::PLURAL
            || SUBRESOURCES.contains(&entry)
    };
    let (mut resources, mut unknown) = (BTreeSet::new(), Vec::new());
    for entry in entries {
        if known(entry) {
            resources.insert(entry.clone());
        } else {
            unknown.push(UnknownResource(entry.clone()));
        }
    }
    (resources, unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(verb: &'a str, namespace: Option<&'a str>, name: Option<&'a str>) -> Request<'a> {
        Request { verb, group: "", resource: "secrets", subresource: None, namespace, name }
    }

    #[test]
    fn denials_read_as_a_real_servers() {
        let get = request("get", Some("bakery"), Some("bakery-read-token")).forbidden_status();
        assert_eq!(
            get["message"],
            r#"secrets "bakery-read-token" is forbidden: User "system:anonymous" cannot get resource "secrets" in API group "" in the namespace "bakery""#
        );
        assert_eq!((&get["code"], &get["reason"]), (&json!(403), &json!("Forbidden")));
        assert_eq!(get["details"], json!({"name": "bakery-read-token", "kind": "secrets"}));
        let list = request("list", None, None).forbidden_status();
        assert_eq!(
            list["message"],
            r#"secrets is forbidden: User "system:anonymous" cannot list resource "secrets" in API group "" at the cluster scope"#
        );
        let review =
            Request { group: "authentication.k8s.io", resource: "tokenreviews", ..request("create", None, None) };
        assert_eq!(
            review.forbidden_status()["message"],
            r#"tokenreviews.authentication.k8s.io is forbidden: User "system:anonymous" cannot create resource "tokenreviews" in API group "authentication.k8s.io" at the cluster scope"#
        );
        let forward = Request {
            resource: "pods",
            subresource: Some("portforward"),
            ..request("get", Some("shop"), Some("web-1"))
        };
        assert_eq!(forward.rbac_resource(), "pods/portforward");
        assert_eq!(
            forward.forbidden_status()["message"],
            r#"pods "web-1" is forbidden: User "system:anonymous" cannot get resource "pods/portforward" in API group "" in the namespace "shop""#
        );
    }

    #[test]
    fn verbs_follow_method_name_and_watch() {
        assert_eq!(verb(&Method::GET, true, false), "get");
        assert_eq!(verb(&Method::GET, false, false), "list");
        assert_eq!(verb(&Method::GET, false, true), "watch");
        assert_eq!(verb(&Method::POST, false, false), "create");
        assert_eq!(verb(&Method::DELETE, false, false), "deletecollection");
    }

    #[test]
    fn only_served_resources_may_be_forbidden() {
        let entries: Vec<String> =
            ["secrets", "pods/portforward", "tokenreviews", "secret"].into_iter().map(String::from).collect();
        let (resources, unknown) = forbidden_resources(&entries);
        assert_eq!(resources.into_iter().collect::<Vec<_>>(), ["pods/portforward", "secrets", "tokenreviews"]);
        assert_eq!(unknown, [UnknownResource("secret".into())]);
        assert!(unknown[0].to_string().starts_with(r#"forbidden: "secret" ignored"#), "{}", unknown[0]);
    }
}
