//! A Kubernetes API server test double that speaks the real list/watch HTTP protocol, so the
//! real `kube` client (the collector's watchers) runs against it: lists with a resourceVersion,
//! `?watch=true&resourceVersion=N` streams of JSON WatchEvents (ADDED, MODIFIED, DELETED, and
//! BOOKMARK when `allowWatchBookmarks=true`), and `410 Gone` (an `ERROR` event carrying a
//! `Status` with code 410, as the real API server sends when the resourceVersion is too old) to
//! force a relist. Plain HTTP, no authentication.
//!
//! Served collections (cluster-wide only, what bakery's collector watches):
//!
//! | path | kind |
//! |---|---|
//! | `/api/v1/nodes` | Node |
//! | `/api/v1/pods` | Pod |
//! | `/apis/discovery.k8s.io/v1/endpointslices` | EndpointSlice |
//! | `/apis/apps/v1/replicasets` | ReplicaSet |
//!
//! Control endpoint: `POST /bakery/expire` forgets the event history and ends every open watch
//! with a 410 ERROR event; clients relist (what happens on a real cluster after etcd compaction).
//!
//! # The state file (`bakery-fake-apiserver --state FILE`)
//!
//! One JSON object with up to four arrays of Kubernetes objects in their ordinary API JSON
//! (what `kubectl get -o json` prints for one item); `apiVersion`, `kind` and
//! `metadata.resourceVersion` may be left out (the double fills them in), and a missing
//! `metadata.uid` is derived from kind/namespace/name:
//!
//! ```json
//! {
//!   "nodes": [{"metadata": {"name": "pi-1", "labels": {"node-role.kubernetes.io/control-plane": ""}}}],
//!   "pods": [{
//!     "metadata": {"name": "web-7d9f8c6b5d-x2x9q", "namespace": "shop", "uid": "6f1c...",
//!                  "labels": {"app": "web", "pod-template-hash": "7d9f8c6b5d"},
//!                  "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
//!                                       "name": "web-7d9f8c6b5d", "uid": "rs-1", "controller": true}]},
//!     "spec": {"nodeName": "pi-2", "containers": []},
//!     "status": {"conditions": [{"type": "Ready", "status": "True"}]}
//!   }],
//!   "endpointslices": [{
//!     "metadata": {"name": "web-abcde", "namespace": "shop", "labels": {"kubernetes.io/service-name": "web"}},
//!     "addressType": "IPv4",
//!     "endpoints": [{"addresses": ["10.42.1.7"], "nodeName": "pi-2", "conditions": {"ready": true},
//!                    "targetRef": {"kind": "Pod", "namespace": "shop", "name": "web-7d9f8c6b5d-x2x9q", "uid": "6f1c..."}}]
//!   }],
//!   "replicasets": []
//! }
//! ```
//!
//! The file is re-read when its contents change; the difference to the previous state becomes
//! watch events (a new object ADDED, a changed one MODIFIED, a missing one DELETED), each with
//! the next resourceVersion. Write it atomically (write a temp file, then rename) so a half-written
//! file is never read; an unparsable file is reported on stderr and ignored until it changes.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State as AxumState};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// How often an idle watch gets a BOOKMARK (when it asked for them).
const BOOKMARK_EVERY: Duration = Duration::from_secs(1);

/// A kind the double serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Node,
    Pod,
    EndpointSlice,
    ReplicaSet,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Node, Kind::Pod, Kind::EndpointSlice, Kind::ReplicaSet];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Node => "Node",
            Kind::Pod => "Pod",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::ReplicaSet => "ReplicaSet",
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Node | Kind::Pod => "v1",
            Kind::EndpointSlice => "discovery.k8s.io/v1",
            Kind::ReplicaSet => "apps/v1",
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            Kind::Node => "/api/v1/nodes",
            Kind::Pod => "/api/v1/pods",
            Kind::EndpointSlice => "/apis/discovery.k8s.io/v1/endpointslices",
            Kind::ReplicaSet => "/apis/apps/v1/replicasets",
        }
    }

    /// The key of its array in the state file.
    pub fn state_key(self) -> &'static str {
        match self {
            Kind::Node => "nodes",
            Kind::Pod => "pods",
            Kind::EndpointSlice => "endpointslices",
            Kind::ReplicaSet => "replicasets",
        }
    }
}

/// The cluster as the state file describes it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ClusterState {
    #[serde(default)]
    pub nodes: Vec<Value>,
    #[serde(default)]
    pub pods: Vec<Value>,
    #[serde(default)]
    pub endpointslices: Vec<Value>,
    #[serde(default)]
    pub replicasets: Vec<Value>,
}

impl ClusterState {
    pub fn parse(text: &str) -> serde_json::Result<ClusterState> {
        serde_json::from_str(text)
    }

    fn of(&self, kind: Kind) -> &[Value] {
        match kind {
            Kind::Node => &self.nodes,
            Kind::Pod => &self.pods,
            Kind::EndpointSlice => &self.endpointslices,
            Kind::ReplicaSet => &self.replicasets,
        }
    }
}

type ObjectKey = (Kind, String, String);

#[derive(Debug, Clone)]
struct Event {
    rv: u64,
    kind: Kind,
    kind_of_change: &'static str,
    object: Value,
}

#[derive(Debug, Default)]
struct Inner {
    rv: u64,
    objects: BTreeMap<ObjectKey, Value>,
    events: Vec<Event>,
    /// Watches from a resourceVersion older than this get 410 Gone.
    oldest_watchable_rv: u64,
    /// Lists served per kind (a relist after 410 shows up here).
    lists: BTreeMap<Kind, u64>,
}

/// The shared server state.
#[derive(Debug, Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    /// The newest resourceVersion: watches wake on it.
    changed: watch::Sender<u64>,
    /// Bumped by [`KubeDouble::expire_watches`]: every open watch ends with 410.
    expired: watch::Sender<u64>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A running double; stops when dropped.
#[derive(Debug)]
pub struct KubeDouble {
    addr: SocketAddr,
    shared: Shared,
    task: JoinHandle<()>,
}

impl Drop for KubeDouble {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl KubeDouble {
    /// Serves on `listen` (port 0: one the OS picks).
    pub async fn start(listen: SocketAddr) -> std::io::Result<KubeDouble> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let shared = Shared {
            inner: Arc::new(Mutex::new(Inner { rv: 1, ..Inner::default() })),
            changed: watch::channel(1).0,
            expired: watch::channel(0).0,
        };
        let mut router = Router::new().route("/bakery/expire", post(expire_handler));
        for kind in Kind::ALL {
            router = router.route(
                kind.path(),
                get(move |state: AxumState<Shared>, query: Query<ListParams>| collection(state, query, kind)),
            );
        }
        let app = router.fallback(not_found).with_state(shared.clone());
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                eprintln!("bakery-fake-apiserver: {error}");
            }
        });
        Ok(KubeDouble { addr, shared, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig that points at this double (plain HTTP, no credentials).
    pub fn kubeconfig(&self) -> String {
        kubeconfig_for(&self.url())
    }

    /// The newest resourceVersion handed out.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().rv
    }

    /// How many lists of `kind` were served: every watcher lists once at start and again after
    /// each 410.
    pub fn lists_served(&self, kind: Kind) -> u64 {
        self.shared.lock().lists.get(&kind).copied().unwrap_or(0)
    }

    /// Makes the cluster look like `state`: the difference becomes watch events.
    pub fn set_state(&self, state: &ClusterState) {
        let mut inner = self.shared.lock();
        let mut wanted: BTreeMap<ObjectKey, Value> = BTreeMap::new();
        for kind in Kind::ALL {
            for object in state.of(kind) {
                let object = normalise(kind, object.clone());
                wanted.insert(key_of(kind, &object), object);
            }
        }
        let gone: Vec<ObjectKey> = inner.objects.keys().filter(|k| !wanted.contains_key(*k)).cloned().collect();
        for key in gone {
            if let Some(object) = inner.objects.remove(&key) {
                let rv = next_rv(&mut inner);
                let object = with_rv(object, rv);
                inner.events.push(Event { rv, kind: key.0, kind_of_change: "DELETED", object });
            }
        }
        for (key, object) in wanted {
            let change = match inner.objects.get(&key) {
                None => "ADDED",
                Some(old) if without_rv(old) != without_rv(&object) => "MODIFIED",
                Some(_) => continue,
            };
            let rv = next_rv(&mut inner);
            let object = with_rv(object, rv);
            inner.objects.insert(key.clone(), object.clone());
            inner.events.push(Event { rv, kind: key.0, kind_of_change: change, object });
        }
        let rv = inner.rv;
        drop(inner);
        self.shared.changed.send_replace(rv);
    }

    /// Forgets the event history and ends every open watch with `410 Gone`, so every client
    /// relists (what a real API server does after etcd compacted the history it watched from).
    pub fn expire_watches(&self) {
        expire(&self.shared);
    }
}

fn expire(shared: &Shared) {
    {
        let mut inner = shared.lock();
        inner.events.clear();
        inner.oldest_watchable_rv = inner.rv + 1;
    }
    shared.expired.send_modify(|generation| *generation += 1);
}

/// A kubeconfig for a plain-HTTP server at `url`.
pub fn kubeconfig_for(url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: bakery-fake\n  cluster:\n    server: {url}\n\
         contexts:\n- name: bakery-fake\n  context:\n    cluster: bakery-fake\n    user: bakery-fake\n\
         current-context: bakery-fake\nusers:\n- name: bakery-fake\n  user: {{}}\n"
    )
}

/// Re-reads `path` whenever its contents change and applies it to `double`, until the task is
/// dropped. Reads it once before returning, so the first list already has the file's state.
pub async fn follow_state_file(double: Arc<KubeDouble>, path: PathBuf) -> JoinHandle<()> {
    let mut last = apply_file(&double, &path, None);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            last = apply_file(&double, &path, last);
        }
    })
}

fn apply_file(double: &KubeDouble, path: &Path, last: Option<String>) -> Option<String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => {
            if last.is_some() {
                eprintln!("bakery-fake-apiserver: cannot read {}: {error}", path.display());
            }
            return last;
        }
    };
    if last.as_deref() == Some(text.as_str()) {
        return last;
    }
    match ClusterState::parse(&text) {
        Ok(state) => double.set_state(&state),
        Err(error) => eprintln!("bakery-fake-apiserver: {} is not a valid state file: {error}", path.display()),
    }
    Some(text)
}

fn next_rv(inner: &mut Inner) -> u64 {
    inner.rv += 1;
    inner.rv
}

fn normalise(kind: Kind, mut object: Value) -> Value {
    if let Some(map) = object.as_object_mut() {
        map.insert("apiVersion".into(), json!(kind.api_version()));
        map.insert("kind".into(), json!(kind.name()));
        let metadata = map.entry("metadata").or_insert_with(|| json!({}));
        if let Some(metadata) = metadata.as_object_mut() {
            if !metadata.contains_key("uid") {
                let namespace = metadata.get("namespace").and_then(Value::as_str).unwrap_or_default();
                let name = metadata.get("name").and_then(Value::as_str).unwrap_or_default();
                metadata.insert("uid".into(), json!(format!("{}-{namespace}-{name}", kind.state_key())));
            }
            metadata.remove("resourceVersion");
        }
    }
    object
}

fn key_of(kind: Kind, object: &Value) -> ObjectKey {
    let metadata = &object["metadata"];
    let text = |field: &str| metadata[field].as_str().unwrap_or_default().to_string();
    (kind, text("namespace"), text("name"))
}

fn with_rv(mut object: Value, rv: u64) -> Value {
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.insert("resourceVersion".into(), json!(rv.to_string()));
    }
    object
}

fn without_rv(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("resourceVersion");
    }
    object
}

/// The query parameters of list and watch requests that matter here (others are ignored).
#[derive(Debug, Default, Deserialize)]
struct ListParams {
    watch: Option<String>,
    #[serde(rename = "resourceVersion")]
    resource_version: Option<String>,
    #[serde(rename = "allowWatchBookmarks")]
    allow_watch_bookmarks: Option<String>,
    #[serde(rename = "timeoutSeconds")]
    timeout_seconds: Option<u64>,
}

fn is_true(value: &Option<String>) -> bool {
    matches!(value.as_deref(), Some("true" | "1"))
}

async fn collection(AxumState(shared): AxumState<Shared>, Query(params): Query<ListParams>, kind: Kind) -> Response {
    if is_true(&params.watch) { watch_response(shared, params, kind) } else { list_response(&shared, kind) }
}

fn list_response(shared: &Shared, kind: Kind) -> Response {
    let mut inner = shared.lock();
    *inner.lists.entry(kind).or_default() += 1;
    let items: Vec<&Value> = inner.objects.iter().filter(|(k, _)| k.0 == kind).map(|(_, v)| v).collect();
    let body = json!({
        "apiVersion": kind.api_version(),
        "kind": format!("{}List", kind.name()),
        "metadata": {"resourceVersion": inner.rv.to_string()},
        "items": items,
    });
    json_response(StatusCode::OK, &body)
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn gone_status(message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": "Expired", "code": 410})
}

fn event_line(kind_of_change: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": kind_of_change, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

fn watch_response(shared: Shared, params: ListParams, kind: Kind) -> Response {
    let from_rv: u64 = params.resource_version.as_deref().and_then(|rv| rv.parse().ok()).unwrap_or(0);
    let bookmarks = is_true(&params.allow_watch_bookmarks);
    let timeout = Duration::from_secs(params.timeout_seconds.unwrap_or(290).clamp(1, 3600));
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changed = shared.changed.subscribe();
        let mut expired = shared.expired.subscribe();
        expired.mark_unchanged();
        // resourceVersion 0 (or none) means "from now on" here; the real server would first send
        // the current objects as ADDED, which the kube watcher never asks for (it lists first).
        let mut sent_through = if from_rv == 0 { shared.lock().rv } else { from_rv };
        loop {
            let (pending, too_old, rv) = {
                let inner = shared.lock();
                let too_old = sent_through != 0 && sent_through + 1 < inner.oldest_watchable_rv;
                let pending: Vec<Event> =
                    inner.events.iter().filter(|e| e.kind == kind && e.rv > sent_through).cloned().collect();
                (pending, too_old, inner.rv)
            };
            if too_old {
                let message = format!("too old resource version: {sent_through} ({rv})");
                let _ = tx.send(Ok(event_line("ERROR", &gone_status(&message)))).await;
                return;
            }
            for event in pending {
                sent_through = event.rv;
                if tx.send(Ok(event_line(event.kind_of_change, &event.object))).await.is_err() {
                    return;
                }
            }
            tokio::select! {
                _ = changed.changed() => {}
                _ = expired.changed() => {
                    let message = format!("too old resource version: {sent_through}");
                    let _ = tx.send(Ok(event_line("ERROR", &gone_status(&message)))).await;
                    return;
                }
                _ = tokio::time::sleep(BOOKMARK_EVERY), if bookmarks => {
                    let rv = shared.lock().rv;
                    let object = json!({"kind": kind.name(), "apiVersion": kind.api_version(),
                                        "metadata": {"resourceVersion": rv.to_string()}});
                    if tx.send(Ok(event_line("BOOKMARK", &object))).await.is_err() {
                        return;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn expire_handler(AxumState(shared): AxumState<Shared>) -> Response {
    expire(&shared);
    json_response(StatusCode::OK, &json!({"expired": true}))
}

async fn not_found() -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "the fake API server does not serve this path", "reason": "NotFound", "code": 404}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_become_added_modified_and_deleted_events_with_rising_versions() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let double = KubeDouble::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
            let pod = |node: &str| json!({"metadata": {"name": "p", "namespace": "n", "uid": "u"}, "spec": {"nodeName": node}});
            double.set_state(&ClusterState { pods: vec![pod("a")], ..ClusterState::default() });
            double.set_state(&ClusterState { pods: vec![pod("a")], ..ClusterState::default() });
            double.set_state(&ClusterState { pods: vec![pod("b")], ..ClusterState::default() });
            double.set_state(&ClusterState::default());
            let inner = double.shared.lock();
            let changes: Vec<(&str, u64)> = inner.events.iter().map(|e| (e.kind_of_change, e.rv)).collect();
            assert_eq!(changes, [("ADDED", 2), ("MODIFIED", 3), ("DELETED", 4)], "an unchanged state adds nothing");
            assert_eq!(inner.events[1].object["metadata"]["resourceVersion"], "3");
            assert_eq!(inner.events[1].object["kind"], "Pod");
        });
    }

    /// Sends a raw HTTP/1.1 GET and returns what arrives until `done` holds or 5 s pass.
    async fn get_until(addr: SocketAddr, path: &str, done: impl Fn(&str) -> bool) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: fake\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut received = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut buffer = [0u8; 4096];
        while !done(&String::from_utf8_lossy(&received)) {
            let read = tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await.expect("in time").unwrap();
            if read == 0 {
                break;
            }
            received.extend_from_slice(&buffer[..read]);
        }
        String::from_utf8_lossy(&received).into_owned()
    }

    #[test]
    fn a_watch_streams_events_then_bookmarks_and_an_old_version_gets_410() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let double = KubeDouble::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
            let node = |name: &str| json!({"metadata": {"name": name}});
            double.set_state(&ClusterState { nodes: vec![node("pi-1")], ..ClusterState::default() });
            double.set_state(&ClusterState { nodes: vec![node("pi-1"), node("pi-2")], ..ClusterState::default() });
            let addr = double.addr();
            let watch = "/api/v1/nodes?watch=true&resourceVersion=2&allowWatchBookmarks=true";
            let text = get_until(addr, watch, |t| t.contains("BOOKMARK")).await;
            assert!(text.contains(r#""type":"ADDED""#) && text.contains(r#""name":"pi-2""#), "{text}");
            assert!(!text.contains(r#""name":"pi-1""#), "pi-1 is at version 2, already seen: {text}");
            assert!(text.contains(r#""resourceVersion":"3""#), "{text}");

            double.expire_watches();
            let text = get_until(addr, "/api/v1/nodes?watch=true&resourceVersion=2", |t| t.contains("ERROR")).await;
            assert!(text.contains(r#""code":410"#), "{text}");
            let list = get_until(addr, "/api/v1/nodes", |t| t.contains("NodeList")).await;
            assert!(list.contains(r#""resourceVersion":"3""#), "{list}");
        });
    }
}
