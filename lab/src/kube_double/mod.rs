//! A Kubernetes API server test double that speaks the real HTTP protocol, so the real `kube`
//! client (the collector's watchers) and the real `kubectl` run against it: discovery, lists with
//! a resourceVersion, GET of one object, label and field selectors, server-side Tables, and
//! `?watch=true&resourceVersion=N` streams of JSON WatchEvents (ADDED, MODIFIED, DELETED, and
//! BOOKMARK when `allowWatchBookmarks=true`), with `410 Gone` (an `ERROR` event carrying a
//! `Status` with code 410, as the real API server sends when the resourceVersion is too old) to
//! force a relist, TokenReviews of the tokens the state lists ([`tokenreview`]), RBAC denials of
//! the resources the state forbids, and port-forward to a pod's ports over a WebSocket. Plain
//! HTTP, no authentication (every request is `system:anonymous`'s), read-only besides TokenReview
//! and port-forward (any other method: 405).
//!
//! # Served paths
//!
//! | path | answer |
//! |---|---|
//! | `/version` | version info (`v1.33.0`) |
//! | `/api`, `/apis` | `APIVersions`, `APIGroupList` (plain discovery; a client asking for aggregated discovery gets these too, and falls back as it does with any server without it) |
//! | `/api/v1`, `/apis/{group}`, `/apis/{group}/{version}` | `APIResourceList` / `APIGroup` of the served kinds, with short names (`svc`, `po`, ...) |
//! | `{prefix}/{plural}` | list or watch of the kind in every namespace |
//! | `{prefix}/namespaces/{ns}/{plural}` | list or watch in one namespace (namespaced kinds) |
//! | `{prefix}/{plural}/{name}`, `{prefix}/namespaces/{ns}/{plural}/{name}` | one object, or `404` with a `NotFound` Status |
//! | `POST /apis/authentication.k8s.io/v1/tokenreviews` | `201` with the TokenReview's `status` ([`tokenreview`]); other methods `405` |
//! | `GET /api/v1/namespaces/{ns}/pods/{name}/portforward?ports=P[,Q...]` | WebSocket upgrade to `v4.channel.k8s.io`, each port forwarded over TCP to the pod's IP (see Port-forward); other methods `405` |
//! | a resource in the state's `"forbidden"` | `403` with a `Forbidden` Status, whatever the verb (see RBAC denials) |
//! | anything else | `404` with a `NotFound` Status ("the server could not find the requested resource") |
//!
//! | kind | prefix | plural | scope | short names |
//! |---|---|---|---|---|
//! | Namespace | `/api/v1` | `namespaces` | cluster | `ns` |
//! | Node | `/api/v1` | `nodes` | cluster | `no` |
//! | Pod | `/api/v1` | `pods` | namespaced | `po` |
//! | Service | `/api/v1` | `services` | namespaced | `svc` |
//! | Secret | `/api/v1` | `secrets` | namespaced | |
//! | EndpointSlice | `/apis/discovery.k8s.io/v1` | `endpointslices` | namespaced | |
//! | ReplicaSet | `/apis/apps/v1` | `replicasets` | namespaced | `rs` |
//! | ServiceL2Status | `/apis/metallb.io/v1beta1` | `servicel2statuses` | namespaced | |
//! | ServiceBGPStatus | `/apis/metallb.io/v1beta1` | `servicebgpstatuses` | namespaced | |
//! | L2Advertisement | `/apis/metallb.io/v1beta1` | `l2advertisements` | namespaced | |
//! | BGPAdvertisement | `/apis/metallb.io/v1beta1` | `bgpadvertisements` | namespaced | |
//! | IPAddressPool | `/apis/metallb.io/v1beta1` | `ipaddresspools` | namespaced | |
//! | TokenReview | `/apis/authentication.k8s.io/v1` | `tokenreviews` | cluster (create only) | |
//!
//! MetalLB's kinds are custom resources: they are served only while the state installs their
//! CRDs (`"apis": ["metallb.io/v1beta1"]` for all of them, or CRD names such as
//! `"servicel2statuses.metallb.io"` one by one, as an older MetalLB without some kinds). Without
//! them every `/apis/metallb.io/...` path answers `404` and discovery does not list the group,
//! exactly as a cluster without MetalLB's CRDs; removing a CRD ends open watches of its kind, and
//! the next request gets the 404.
//!
//! Lists and watches take `labelSelector` (`=`, `==`, `!=`, `in`, `notin`, `KEY`, `!KEY`) and
//! `fieldSelector` (`metadata.name`, `metadata.namespace`; for pods also `spec.nodeName` and
//! `status.phase`; for secrets also `type`; others: `400`, as a real server). A watch with a selector sees an object that
//! starts or stops matching as ADDED or DELETED. A watch without a resourceVersion (or `0`) first
//! gets every current object as ADDED, then the changes. `Accept: ...;as=Table;...` (what
//! `kubectl get` sends) gets a `meta.k8s.io/v1` Table, also for watch events ([`tables`]).
//!
//! # RBAC denials
//!
//! `"forbidden": ["secrets", "pods/portforward", "tokenreviews"]` denies every request on those
//! resources (plurals of the served kinds, `tokenreviews`, or the subresource
//! `pods/portforward`) with the `403` a real API server sends, reason `Forbidden`, e.g.
//! `secrets "bakery-read-token" is forbidden: User "system:anonymous" cannot get resource
//! "secrets" in API group "" in the namespace "bakery"` (verb `get`, `list`, `watch`, `create`...
//! as the request is; the name only when the path names one object; `at the cluster scope`
//! without a namespace). As on a real server the denial comes before the lookup (a missing object
//! is 403 too), and a subresource is its own resource: `"pods"` leaves port-forward allowed.
//!
//! # Port-forward
//!
//! What the real `kube` client's `Api::<Pod>::portforward` speaks: a WebSocket answered with
//! subprotocol `v4.channel.k8s.io` (a client offering none gets the same framing). Port number `i`
//! of `ports` uses data channel `2i` and error channel `2i+1`; every binary frame starts with its
//! channel byte. The double first sends, on both channels of each port, the port as a
//! little-endian u16, then connects to the pod's `status.podIP` (or `status.podIPs[0].ip`) at that
//! port over TCP (a test gives the pod IP `127.0.0.1` and a port where its own process listens)
//! and copies bytes both ways. A refused connection writes the kubelet's message on the error
//! channel (`error forwarding port 7431 to pod <uid>, uid : failed to connect to localhost:7431
//! inside namespace "<uid>": connection refused`). When every pod connection has ended the
//! WebSocket closes; when the client closes, the pod connections close.
//! [`KubeDouble::port_forwards_served`] counts the connections made. Refused before the upgrade:
//! a missing pod (`404 NotFound`), a pod whose `status.phase` is not `Running` (`400`, `unable to
//! forward port because pod is not running. Current status=Pending`), a running pod without an
//! IP, a missing or malformed `ports`, and a request that is no WebSocket upgrade or offers only
//! other subprotocols (all `400 BadRequest`). `kubectl port-forward` tunnels SPDY through its
//! WebSocket, which the double does not speak.
//!
//! Control endpoint: `POST /bakery/expire` forgets the event history and ends every open watch
//! with a 410 ERROR event; clients relist (what happens on a real cluster after etcd compaction).
//!
//! # The state file (`bakery-fake-apiserver --state FILE`)
//!
//! One JSON object: `"apis"` (the CRDs installed: `"metallb.io/v1beta1"` for all of MetalLB's, or
//! their names, `"servicel2statuses.metallb.io"`) and one array of Kubernetes objects per kind, keyed by the kind's plural
//! (`namespaces`, `nodes`, `pods`, `services`, `secrets`, `endpointslices`, `replicasets`,
//! `servicel2statuses`, `servicebgpstatuses`, `l2advertisements`, `bgpadvertisements`,
//! `ipaddresspools`), each in its ordinary API JSON (what `kubectl get -o json` prints for one
//! item), `"tokenreviews"`: the tokens the cluster issued, each with its audiences and the user a
//! review answers ([`tokenreview`] shows one), and `"forbidden"`: the resources every request is
//! denied (see RBAC denials). A Secret's `data` is base64, as in the API; plain text may go in
//! `stringData`, which the double encodes into `data` (its keys win) as the API server does, and a
//! Secret without a `type` is `Opaque`. `apiVersion`, `kind`,
//! `metadata.resourceVersion` and `metadata.creationTimestamp` may be left out (the double fills
//! them in; an object keeps its creation time while it exists), a missing `metadata.uid` is
//! derived from kind/namespace/name, and a namespaced object without a namespace is in `default`.
//! Every namespace an object is in exists (as do `default`, `kube-system`, `kube-public` and
//! `kube-node-lease`); list a namespace only to give it labels:
//!
//! ```json
//! {
//!   "apis": ["metallb.io/v1beta1"],
//!   "nodes": [{"metadata": {"name": "pi-1", "labels": {"node-role.kubernetes.io/control-plane": ""}}}],
//!   "pods": [{
//!     "metadata": {"name": "web-7d9f8c6b5d-x2x9q", "namespace": "shop", "uid": "6f1c...",
//!                  "labels": {"app": "web", "pod-template-hash": "7d9f8c6b5d"},
//!                  "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
//!                                       "name": "web-7d9f8c6b5d", "uid": "rs-1", "controller": true}]},
//!     "spec": {"nodeName": "pi-2", "containers": []},
//!     "status": {"phase": "Running", "podIP": "10.42.1.7", "conditions": [{"type": "Ready", "status": "True"}]}
//!   }],
//!   "services": [{
//!     "metadata": {"name": "web", "namespace": "shop"},
//!     "spec": {"type": "LoadBalancer", "selector": {"app": "web"}, "externalTrafficPolicy": "Local",
//!              "ports": [{"port": 80, "protocol": "TCP"}]},
//!     "status": {"loadBalancer": {"ingress": [{"ip": "192.168.1.240"}]}}
//!   }],
//!   "endpointslices": [{
//!     "metadata": {"name": "web-abcde", "namespace": "shop", "labels": {"kubernetes.io/service-name": "web"}},
//!     "addressType": "IPv4",
//!     "endpoints": [{"addresses": ["10.42.1.7"], "nodeName": "pi-2", "conditions": {"ready": true},
//!                    "targetRef": {"kind": "Pod", "namespace": "shop", "name": "web-7d9f8c6b5d-x2x9q", "uid": "6f1c..."}}]
//!   }],
//!   "replicasets": [],
//!   "secrets": [{
//!     "metadata": {"name": "bakery-read-token", "namespace": "bakery"},
//!     "type": "kubernetes.io/service-account-token", "stringData": {"token": "eyJhbGciOi..."}
//!   }],
//!   "forbidden": ["secrets"],
//!   "servicel2statuses": [{
//!     "metadata": {"name": "l2-x7k2p", "namespace": "metallb-system"},
//!     "status": {"node": "pi-3", "serviceName": "web", "serviceNamespace": "shop"}
//!   }]
//! }
//! ```
//!
//! The file is re-read when its contents change; the difference to the previous state becomes
//! watch events (a new object ADDED, a changed one MODIFIED, a missing one DELETED), each with
//! the next resourceVersion. Write it atomically (write a temp file, then rename) so a half-written
//! file is never read; an unparsable file is reported on stderr and ignored until it changes. An
//! object the API server would refuse (not a JSON object, no `metadata.name`, another `kind`,
//! non-object `metadata`, `spec` or `status`, a Secret whose `data` is not base64) is skipped
//! with a line on stderr, and so are the objects of a CRD kind whose API the state does not
//! install (one line for all of them) and `forbidden` entries naming no served resource; the rest
//! is served.

#[cfg(test)]
mod client_tests;
mod discovery;
mod kinds;
mod portforward;
mod rbac;
mod routes;
mod secrets;
mod selectors;
mod state;
pub mod tables;
#[cfg(test)]
mod tests;
pub mod tokenreview;
mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::watch as channel;
use tokio::task::JoinHandle;

pub use kinds::{Kind, METALLB_API};
pub use selectors::{FieldSelector, LabelSelector};
pub use state::ClusterState;
use state::{ObjectKey, key_of, normalise, with_rv, without_rv};

/// The namespaces every cluster has.
const DEFAULT_NAMESPACES: [&str; 4] = ["default", "kube-node-lease", "kube-public", "kube-system"];
#[derive(Debug, Clone)]
struct Event {
    rv: u64,
    kind: Kind,
    kind_of_change: &'static str,
    object: Value,
    /// The object before a MODIFIED change (a filtered watch turns it into ADDED or DELETED when
    /// the object starts or stops matching).
    previous: Option<Value>,
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
    /// The kinds whose CRDs are installed.
    crds: BTreeSet<Kind>,
    /// Tokens a TokenReview authenticates.
    tokens: Vec<tokenreview::IssuedToken>,
    /// TokenReviews answered.
    reviews: u64,
    /// The RBAC resources every request is denied (`secrets`, `pods/portforward`).
    forbidden: BTreeSet<String>,
    /// Connections port-forwards opened to pods.
    port_forwards: u64,
}

impl Inner {
    fn serves(&self, kind: Kind) -> bool {
        kind.crd_api().is_none() || self.crds.contains(&kind)
    }
}

/// The shared server state.
#[derive(Debug, Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    /// The newest resourceVersion: watches wake on it.
    changed: channel::Sender<u64>,
    /// Bumped by [`KubeDouble::expire_watches`]: every open watch ends with 410.
    expired: channel::Sender<u64>,
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
            changed: channel::channel(1).0,
            expired: channel::channel(0).0,
        };
        let app = Router::new()
            .route("/bakery/expire", post(watch::expire_handler))
            .fallback(routes::handle)
            .with_state(shared.clone());
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

    /// How many TokenReviews were answered.
    pub fn token_reviews_served(&self) -> u64 {
        self.shared.lock().reviews
    }

    /// How many connections port-forwards opened to pods: one per port of a forward whose pod
    /// side accepted (a refused port is not counted).
    pub fn port_forwards_served(&self) -> u64 {
        self.shared.lock().port_forwards
    }

    /// How many lists of `kind` were served: every watcher lists once at start and again after
    /// each 410.
    pub fn lists_served(&self, kind: Kind) -> u64 {
        self.shared.lock().lists.get(&kind).copied().unwrap_or(0)
    }

    /// Makes the cluster look like `state`: the difference becomes watch events. Objects the
    /// double cannot serve are skipped; what was skipped and why is printed on stderr and
    /// returned, one line per problem.
    pub fn set_state(&self, state: &ClusterState) -> Vec<String> {
        let mut problems = Vec::new();
        let crds = installed_kinds(state, &mut problems);
        let mut wanted = wanted_objects(state, &crds, &mut problems);
        add_namespaces(&mut wanted);
        let mut tokens = Vec::new();
        for (index, entry) in state.tokenreviews.iter().enumerate() {
            match tokenreview::IssuedToken::parse(entry) {
                Ok(token) => tokens.push(token),
                Err(why) => problems.push(format!("tokenreviews[{index}] skipped: {why}")),
            }
        }
        let (forbidden, unknown) = rbac::forbidden_resources(&state.forbidden);
        problems.extend(unknown.iter().map(ToString::to_string));

        let mut inner = self.shared.lock();
        inner.crds = crds;
        inner.tokens = tokens;
        inner.forbidden = forbidden;
        record_changes(&mut inner, wanted);
        let rv = inner.rv;
        drop(inner);
        // Also wakes watches when only the installed APIs changed: a watch of a kind no longer
        // served ends.
        self.shared.changed.send_replace(rv);
        for problem in &problems {
            eprintln!("bakery-fake-apiserver: {problem}");
        }
        problems
    }

    /// Forgets the event history and ends every open watch with `410 Gone`, so every client
    /// relists (what a real API server does after etcd compacted the history it watched from).
    pub fn expire_watches(&self) {
        expire(&self.shared);
    }
}
/// The kinds whose CRDs `state.apis` installs; an unknown API is a problem.
fn installed_kinds(state: &ClusterState, problems: &mut Vec<String>) -> BTreeSet<Kind> {
    let mut crds = BTreeSet::new();
    for api in &state.apis {
        let kinds: Vec<Kind> = Kind::ALL
            .into_iter()
            .filter(|k| k.crd_api() == Some(api.as_str()) || k.crd_name().as_deref() == Some(api.as_str()))
            .collect();
        if kinds.is_empty() {
            problems.push(format!(
                "unknown API {api:?} in \"apis\" ignored (the double knows {METALLB_API} and its CRDs by name, \
                 such as servicel2statuses.metallb.io)"
            ));
        }
        crds.extend(kinds);
    }
    crds
}

/// The objects of `state` the double serves, as the API server stores them: objects of kinds
/// whose CRD is not installed, duplicates and objects that do not normalise are problems.
fn wanted_objects(
    state: &ClusterState,
    crds: &BTreeSet<Kind>,
    problems: &mut Vec<String>,
) -> BTreeMap<ObjectKey, Value> {
    let mut wanted: BTreeMap<ObjectKey, Value> = BTreeMap::new();
    let mut not_installed = Vec::new();
    for kind in Kind::ALL {
        let objects = state.of(kind);
        if kind.crd_api().is_some() && !crds.contains(&kind) {
            if !objects.is_empty() {
                not_installed.push(format!("{} {}", objects.len(), kind.state_key()));
            }
            continue;
        }
        for (index, object) in objects.iter().enumerate() {
            match normalise(kind, object.clone()) {
                Ok(object) => {
                    let key = key_of(kind, &object);
                    if wanted.insert(key.clone(), object).is_some() {
                        let (state_key, namespace, name) = (kind.state_key(), &key.1, &key.2);
                        problems.push(format!(
                            "{state_key}: {namespace}/{name} appears more than once; the last one is served"
                        ));
                    }
                }
                Err(why) => problems.push(format!("{}[{index}] skipped: {why}", kind.state_key())),
            }
        }
    }
    if !not_installed.is_empty() {
        problems.push(format!(
            "{} ignored: their CRD is not installed (add \"apis\": [\"{METALLB_API}\"] to serve them)",
            not_installed.join(", ")
        ));
    }
    wanted
}

/// A real cluster has the default namespaces, and every object is in an existing one (kubectl
/// looks the namespace up when an object is not found, to say which is missing).
fn add_namespaces(wanted: &mut BTreeMap<ObjectKey, Value>) {
    let used: BTreeSet<String> = wanted
        .keys()
        .map(|k| k.1.clone())
        .filter(|ns| !ns.is_empty())
        .chain(DEFAULT_NAMESPACES.iter().map(|ns| ns.to_string()))
        .collect();
    for namespace in used {
        let key = (Kind::Namespace, String::new(), namespace.clone());
        if let std::collections::btree_map::Entry::Vacant(entry) = wanted.entry(key) {
            let object = json!({"metadata": {"name": namespace}, "spec": {"finalizers": ["kubernetes"]},
                                "status": {"phase": "Active"}});
            if let Ok(object) = normalise(Kind::Namespace, object) {
                entry.insert(object);
            }
        }
    }
}

/// Makes the served objects `wanted`, each difference a watch event with its own
/// resourceVersion: DELETED for what went, ADDED for what is new, MODIFIED for what changed.
fn record_changes(inner: &mut Inner, wanted: BTreeMap<ObjectKey, Value>) {
    let gone: Vec<ObjectKey> = inner.objects.keys().filter(|k| !wanted.contains_key(*k)).cloned().collect();
    for key in gone {
        if let Some(object) = inner.objects.remove(&key) {
            let rv = next_rv(inner);
            let object = with_rv(object, rv);
            inner.events.push(Event { rv, kind: key.0, kind_of_change: "DELETED", object, previous: None });
        }
    }
    let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    for (key, mut object) in wanted {
        let old = inner.objects.get(&key);
        let created = old.and_then(|o| o["metadata"]["creationTimestamp"].as_str()).unwrap_or(&now);
        if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.entry("creationTimestamp").or_insert_with(|| json!(created));
        }
        let change = match old {
            None => "ADDED",
            Some(old) if without_rv(old) != object => "MODIFIED",
            Some(_) => continue,
        };
        let previous = old.cloned();
        let rv = next_rv(inner);
        let object = with_rv(object, rv);
        inner.objects.insert(key.clone(), object.clone());
        inner.events.push(Event { rv, kind: key.0, kind_of_change: change, object, previous });
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
        Ok(state) => {
            let unknown = ClusterState::unknown_keys(&text);
            if !unknown.is_empty() {
                eprintln!("bakery-fake-apiserver: {}: unknown keys {unknown:?} ignored", path.display());
            }
            double.set_state(&state);
        }
        Err(error) => eprintln!("bakery-fake-apiserver: {} is not a valid state file: {error}", path.display()),
    }
    Some(text)
}

fn next_rv(inner: &mut Inner) -> u64 {
    inner.rv += 1;
    inner.rv
}
