//! One request's answer: the path's route, RBAC denials ([`super::rbac`]), the read-only rule,
//! TokenReview, port-forward ([`super::portforward`]), discovery, a list or a GET of one object (a
//! watch is handed to [`super::watch`]), and the `Status` bodies of refusals.

use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Query, State as AxumState};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::discovery::{api_group, api_resource, served_group_versions, version_info};
use super::selectors::Filter;
use super::tables::{self, Include};
use super::watch::watch_response;
use super::{Kind, Shared, portforward, rbac, tokenreview};

/// What a real server answers for a path it does not serve (an API group that is not installed).
const NOT_FOUND_MESSAGE: &str = "the server could not find the requested resource";

/// The query parameters of list and watch requests that matter here (others are ignored).
#[derive(Debug, Default, Deserialize)]
pub(super) struct ListParams {
    pub(super) watch: Option<String>,
    #[serde(rename = "resourceVersion")]
    pub(super) resource_version: Option<String>,
    #[serde(rename = "allowWatchBookmarks")]
    pub(super) allow_watch_bookmarks: Option<String>,
    #[serde(rename = "timeoutSeconds")]
    pub(super) timeout_seconds: Option<u64>,
    #[serde(rename = "labelSelector")]
    pub(super) label_selector: Option<String>,
    #[serde(rename = "fieldSelector")]
    pub(super) field_selector: Option<String>,
    #[serde(rename = "includeObject")]
    pub(super) include_object: Option<String>,
}

pub(super) fn is_true(value: &Option<String>) -> bool {
    matches!(value.as_deref(), Some("true" | "1"))
}

/// What a request path names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route<'a> {
    Version,
    CoreVersions,
    Groups,
    Group(&'a str),
    /// `/api/v1` (group "") or `/apis/{group}/{version}`.
    Resources(&'a str, &'a str),
    Objects {
        group: &'a str,
        version: &'a str,
        namespace: Option<&'a str>,
        plural: &'a str,
        name: Option<&'a str>,
    },
    /// `/api/v1/namespaces/{ns}/pods/{name}/portforward`.
    PortForward {
        namespace: &'a str,
        name: &'a str,
    },
    Unknown,
}

fn route(path: &str) -> Route<'_> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["version"] => Route::Version,
        ["api"] => Route::CoreVersions,
        ["api", "v1"] => Route::Resources("", "v1"),
        ["api", "v1", rest @ ..] => objects("", "v1", rest),
        ["apis"] => Route::Groups,
        ["apis", group] => Route::Group(group),
        ["apis", group, version] => Route::Resources(group, version),
        ["apis", group, version, rest @ ..] => objects(group, version, rest),
        _ => Route::Unknown,
    }
}

/// The part of a path after the group-version prefix.
fn objects<'a>(group: &'a str, version: &'a str, rest: &[&'a str]) -> Route<'a> {
    let (namespace, plural, name) = match *rest {
        ["namespaces", namespace, "pods", name, portforward::SUBRESOURCE] if group.is_empty() => {
            return Route::PortForward { namespace, name };
        }
        [plural] => (None, plural, None),
        ["namespaces", ns, plural] => (Some(ns), plural, None),
        ["namespaces", ns, plural, name] => (Some(ns), plural, Some(name)),
        [plural, name] => (None, plural, Some(name)),
        _ => return Route::Unknown,
    };
    Route::Objects { group, version, namespace, plural, name }
}

pub(super) async fn handle(
    AxumState(shared): AxumState<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    query: Result<Query<ListParams>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    body: Bytes,
) -> Response {
    let route = route(uri.path());
    // Authorization comes before the resource is looked up, as on a real server: a forbidden
    // resource answers 403 even where it would answer 404 or 405.
    let watch = query.as_ref().is_ok_and(|Query(params)| is_true(&params.watch));
    if let Some(denied) = denial(&shared, &route, &method, watch) {
        return json_response(StatusCode::FORBIDDEN, &denied);
    }
    if uri.path().trim_end_matches('/') == tokenreview::PATH {
        return token_review(&shared, &method, &body);
    }
    if method != Method::GET {
        let message = format!("the fake API server is read-only: {method} is not served");
        return status_response(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", &message);
    }
    let params = match query {
        Ok(Query(params)) => params,
        Err(rejection) => return status_response(StatusCode::BAD_REQUEST, "BadRequest", &rejection.body_text()),
    };
    match route {
        Route::PortForward { namespace, name } => portforward::response(shared, namespace, name, &uri, upgrade),
        route => read(&shared, route, &headers, &params),
    }
}

/// The `Status` of an RBAC denial when the state forbids what `route` names.
fn denial(shared: &Shared, route: &Route<'_>, method: &Method, watch: bool) -> Option<Value> {
    let request = match *route {
        Route::Objects { group, namespace, plural, name, .. } => rbac::Request {
            verb: rbac::verb(method, name.is_some(), watch),
            group,
            resource: plural,
            subresource: None,
            namespace,
            name,
        },
        Route::PortForward { namespace, name } => rbac::Request {
            verb: rbac::verb(method, true, false),
            group: "",
            resource: "pods",
            subresource: Some(portforward::SUBRESOURCE),
            namespace: Some(namespace),
            name: Some(name),
        },
        _ => return None,
    };
    shared.lock().forbidden.contains(&request.rbac_resource()).then(|| request.forbidden_status())
}

/// A GET that reads: discovery, or a list, watch or GET of served objects.
fn read(shared: &Shared, route: Route<'_>, headers: &HeaderMap, params: &ListParams) -> Response {
    let table = headers
        .get_all(header::ACCEPT)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.contains("as=Table")))
        .then(|| Include::parse(params.include_object.as_deref()));
    let served: Vec<Kind> = {
        let inner = shared.lock();
        Kind::ALL.into_iter().filter(|k| inner.serves(*k)).collect()
    };
    let mut group_versions = served_group_versions(&served);
    // TokenReview is built in: always served, though it has no objects to list.
    group_versions.push((tokenreview::GROUP, tokenreview::VERSION));
    let not_found = || status_response(StatusCode::NOT_FOUND, "NotFound", NOT_FOUND_MESSAGE);
    match route {
        Route::Version => json_response(StatusCode::OK, &version_info()),
        Route::CoreVersions => {
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
            json_response(
                StatusCode::OK,
                &json!({"kind": "APIVersions", "versions": ["v1"],
                        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}]}),
            )
        }
        Route::Groups => {
            let groups: Vec<Value> = group_versions.iter().map(|(g, v)| api_group(g, v)).collect();
            json_response(StatusCode::OK, &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
        }
        Route::Group(group) => match group_versions.iter().find(|(g, _)| *g == group) {
            Some((g, v)) => {
                let mut body = api_group(g, v);
                body["kind"] = json!("APIGroup");
                body["apiVersion"] = json!("v1");
                json_response(StatusCode::OK, &body)
            }
            None => not_found(),
        },
        Route::Resources(group, version) => resource_list(&served, group, version).unwrap_or_else(not_found),
        Route::Objects { group, version, namespace, plural, name } => {
            let Some(kind) = Kind::find(group, version, plural).filter(|k| served.contains(k)) else {
                return not_found();
            };
            objects_response(shared.clone(), kind, namespace, name, params, table)
        }
        Route::PortForward { .. } | Route::Unknown => not_found(),
    }
}

/// The `APIResourceList` of a group-version, `None` when nothing in it is served.
fn resource_list(served: &[Kind], group: &str, version: &str) -> Option<Response> {
    let (group_version, resources) = if (group, version) == (tokenreview::GROUP, tokenreview::VERSION) {
        (tokenreview::GROUP_VERSION, vec![tokenreview::api_resource()])
    } else {
        let kinds: Vec<Kind> =
            served.iter().copied().filter(|k| k.group() == group && k.version() == version).collect();
        (kinds.first()?.api_version(), kinds.iter().map(|k| api_resource(*k)).collect())
    };
    Some(json_response(
        StatusCode::OK,
        &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
                "resources": resources}),
    ))
}

/// A TokenReview: only created (POST), and counted.
fn token_review(shared: &Shared, method: &Method, body: &Bytes) -> Response {
    if method != Method::POST {
        let message = format!("{method} is not allowed on tokenreviews: they are only created (POST)");
        return status_response(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", &message);
    }
    let (code, answer) = {
        let mut inner = shared.lock();
        inner.reviews += 1;
        tokenreview::review(&inner.tokens, body)
    };
    json_response(code, &answer)
}

/// One object of a served `kind` (GET by name), or a list or a watch of them.
fn objects_response(
    shared: Shared,
    kind: Kind,
    namespace: Option<&str>,
    name: Option<&str>,
    params: &ListParams,
    table: Option<Include>,
) -> Response {
    // Namespaced kinds are named inside a namespace only; cluster kinds never are.
    if (namespace.is_some() && !kind.namespaced()) || (name.is_some() && namespace.is_none() && kind.namespaced()) {
        return status_response(StatusCode::NOT_FOUND, "NotFound", NOT_FOUND_MESSAGE);
    }
    match name {
        Some(name) => get_object(&shared, kind, namespace.unwrap_or_default(), name, table),
        None => match Filter::new(kind, namespace, params) {
            Ok(filter) if is_true(&params.watch) => watch_response(shared, params, kind, filter, table),
            Ok(filter) => list_response(&shared, kind, &filter, table),
            Err(message) => status_response(StatusCode::BAD_REQUEST, "BadRequest", &message),
        },
    }
}

fn list_response(shared: &Shared, kind: Kind, filter: &Filter, table: Option<Include>) -> Response {
    let mut inner = shared.lock();
    *inner.lists.entry(kind).or_default() += 1;
    let items: Vec<&Value> =
        inner.objects.iter().filter(|(k, v)| k.0 == kind && filter.matches(v)).map(|(_, v)| v).collect();
    let body = match table {
        Some(include) => tables::table(kind, &items, inner.rv, include, SystemTime::now()),
        None => json!({
            "apiVersion": kind.api_version(),
            "kind": format!("{}List", kind.name()),
            "metadata": {"resourceVersion": inner.rv.to_string()},
            "items": items,
        }),
    };
    json_response(StatusCode::OK, &body)
}

fn get_object(shared: &Shared, kind: Kind, namespace: &str, name: &str, table: Option<Include>) -> Response {
    let inner = shared.lock();
    match inner.objects.get(&(kind, namespace.to_string(), name.to_string())) {
        Some(object) => match table {
            Some(include) => {
                json_response(StatusCode::OK, &tables::table(kind, &[object], inner.rv, include, SystemTime::now()))
            }
            None => json_response(StatusCode::OK, object),
        },
        None => object_not_found(kind, name),
    }
}

/// The `404 NotFound` Status for an object of `kind` that does not exist.
pub(super) fn object_not_found(kind: Kind, name: &str) -> Response {
    let resource =
        if kind.group().is_empty() { kind.plural().to_string() } else { format!("{}.{}", kind.plural(), kind.group()) };
    let mut body = status_body(StatusCode::NOT_FOUND, "NotFound", &format!("{resource} \"{name}\" not found"));
    body["details"] = json!({"name": name, "group": kind.group(), "kind": kind.plural()});
    json_response(StatusCode::NOT_FOUND, &body)
}

pub(super) fn json_response(status: StatusCode, body: &Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

pub(super) fn status_body(code: StatusCode, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "details": {}, "code": code.as_u16()})
}

pub(super) fn status_response(code: StatusCode, reason: &str, message: &str) -> Response {
    json_response(code, &status_body(code, reason, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_collections_namespaces_and_objects() {
        assert_eq!(
            route("/api/v1/pods"),
            Route::Objects { group: "", version: "v1", namespace: None, plural: "pods", name: None }
        );
        assert_eq!(
            route("/apis/metallb.io/v1beta1/namespaces/metallb-system/servicel2statuses/l2-x"),
            Route::Objects {
                group: "metallb.io",
                version: "v1beta1",
                namespace: Some("metallb-system"),
                plural: "servicel2statuses",
                name: Some("l2-x")
            }
        );
        assert_eq!(
            route("/api/v1/nodes/pi-1"),
            Route::Objects { group: "", version: "v1", namespace: None, plural: "nodes", name: Some("pi-1") }
        );
        assert_eq!(route("/apis/apps/v1"), Route::Resources("apps", "v1"));
        assert_eq!(
            (route("/api"), route("/apis"), route("/version")),
            (Route::CoreVersions, Route::Groups, Route::Version)
        );
        assert_eq!(route("/api/v1/namespaces/shop/pods/web/log"), Route::Unknown);
        assert_eq!(
            route("/api/v1/namespaces/shop/pods/web/portforward"),
            Route::PortForward { namespace: "shop", name: "web" }
        );
        assert_eq!(route("/apis/apps/v1/namespaces/shop/pods/web/portforward"), Route::Unknown);
        assert_eq!(route("/healthz"), Route::Unknown);
    }
}
