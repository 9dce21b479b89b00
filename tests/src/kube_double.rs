//! A Kubernetes API server test double that speaks the real HTTP protocol, so the real `kube`
//! client (the collector's watchers) and the real `kubectl` run against it: discovery, lists with
//! a resourceVersion, GET of one object, label and field selectors, server-side Tables, and
//! `?watch=true&resourceVersion=N` streams of JSON WatchEvents (ADDED, MODIFIED, DELETED, and
//! BOOKMARK when `allowWatchBookmarks=true`), with `410 Gone` (an `ERROR` event carrying a
//! `Status` with code 410, as the real API server sends when the resourceVersion is too old) to
//! force a relist, and TokenReviews of the tokens the state lists ([`tokenreview`]). Plain HTTP,
//! no authentication, read-only besides TokenReview (any other method: 405).
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
//! | anything else | `404` with a `NotFound` Status ("the server could not find the requested resource") |
//!
//! | kind | prefix | plural | scope | short names |
//! |---|---|---|---|---|
//! | Namespace | `/api/v1` | `namespaces` | cluster | `ns` |
//! | Node | `/api/v1` | `nodes` | cluster | `no` |
//! | Pod | `/api/v1` | `pods` | namespaced | `po` |
//! | Service | `/api/v1` | `services` | namespaced | `svc` |
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
//! `status.phase`; others: `400`, as a real server). A watch with a selector sees an object that
//! starts or stops matching as ADDED or DELETED. A watch without a resourceVersion (or `0`) first
//! gets every current object as ADDED, then the changes. `Accept: ...;as=Table;...` (what
//! `kubectl get` sends) gets a `meta.k8s.io/v1` Table, also for watch events ([`tables`]).
//!
//! Control endpoint: `POST /bakery/expire` forgets the event history and ends every open watch
//! with a 410 ERROR event; clients relist (what happens on a real cluster after etcd compaction).
//!
//! # The state file (`bakery-fake-apiserver --state FILE`)
//!
//! One JSON object: `"apis"` (the CRDs installed: `"metallb.io/v1beta1"` for all of MetalLB's, or
//! their names, `"servicel2statuses.metallb.io"`) and one array of Kubernetes objects per kind, keyed by the kind's plural
//! (`namespaces`, `nodes`, `pods`, `services`, `endpointslices`, `replicasets`, `servicel2statuses`,
//! `servicebgpstatuses`, `l2advertisements`, `bgpadvertisements`, `ipaddresspools`), each in its
//! ordinary API JSON (what `kubectl get -o json` prints for one item), and `"tokenreviews"`: the
//! tokens the cluster issued, each with its audiences and the user a review answers
//! ([`tokenreview`] shows one). `apiVersion`, `kind`,
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
//!     "status": {"conditions": [{"type": "Ready", "status": "True"}]}
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
//! non-object `metadata`, `spec` or `status`) is skipped with a line on stderr, and so are the
//! objects of a CRD kind whose API the state does not install (one line for all of them); the
//! rest is served.

mod selectors;
pub mod tables;
pub mod tokenreview;

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State as AxumState};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use selectors::{FieldSelector, LabelSelector};
use tables::Include;

/// How often an idle watch gets a BOOKMARK (when it asked for them).
const BOOKMARK_EVERY: Duration = Duration::from_secs(1);

/// MetalLB's API group-version (its CRDs), the one installable API the double knows.
pub const METALLB_API: &str = "metallb.io/v1beta1";

/// The namespaces every cluster has.
const DEFAULT_NAMESPACES: [&str; 4] = ["default", "kube-node-lease", "kube-public", "kube-system"];

/// What a real server answers for a path it does not serve (an API group that is not installed).
const NOT_FOUND_MESSAGE: &str = "the server could not find the requested resource";

/// A kind the double serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Namespace,
    Node,
    Pod,
    Service,
    EndpointSlice,
    ReplicaSet,
    ServiceL2Status,
    ServiceBGPStatus,
    L2Advertisement,
    BGPAdvertisement,
    IPAddressPool,
}

impl Kind {
    pub const ALL: [Kind; 11] = [
        Kind::Namespace,
        Kind::Node,
        Kind::Pod,
        Kind::Service,
        Kind::EndpointSlice,
        Kind::ReplicaSet,
        Kind::ServiceL2Status,
        Kind::ServiceBGPStatus,
        Kind::L2Advertisement,
        Kind::BGPAdvertisement,
        Kind::IPAddressPool,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::Node => "Node",
            Kind::Pod => "Pod",
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::ReplicaSet => "ReplicaSet",
            Kind::ServiceL2Status => "ServiceL2Status",
            Kind::ServiceBGPStatus => "ServiceBGPStatus",
            Kind::L2Advertisement => "L2Advertisement",
            Kind::BGPAdvertisement => "BGPAdvertisement",
            Kind::IPAddressPool => "IPAddressPool",
        }
    }

    /// The API group (empty for the core group).
    pub fn group(self) -> &'static str {
        match self {
            Kind::Namespace | Kind::Node | Kind::Pod | Kind::Service => "",
            Kind::EndpointSlice => "discovery.k8s.io",
            Kind::ReplicaSet => "apps",
            _ => "metallb.io",
        }
    }

    pub fn version(self) -> &'static str {
        if self.group() == "metallb.io" { "v1beta1" } else { "v1" }
    }

    pub fn api_version(self) -> &'static str {
        match self.group() {
            "" => "v1",
            "discovery.k8s.io" => "discovery.k8s.io/v1",
            "apps" => "apps/v1",
            _ => METALLB_API,
        }
    }

    /// The resource name in paths, and the key of the kind's array in the state file.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Namespace => "namespaces",
            Kind::Node => "nodes",
            Kind::Pod => "pods",
            Kind::Service => "services",
            Kind::EndpointSlice => "endpointslices",
            Kind::ReplicaSet => "replicasets",
            Kind::ServiceL2Status => "servicel2statuses",
            Kind::ServiceBGPStatus => "servicebgpstatuses",
            Kind::L2Advertisement => "l2advertisements",
            Kind::BGPAdvertisement => "bgpadvertisements",
            Kind::IPAddressPool => "ipaddresspools",
        }
    }

    pub fn namespaced(self) -> bool {
        !matches!(self, Kind::Namespace | Kind::Node)
    }

    pub fn short_names(self) -> &'static [&'static str] {
        match self {
            Kind::Namespace => &["ns"],
            Kind::Node => &["no"],
            Kind::Pod => &["po"],
            Kind::Service => &["svc"],
            Kind::ReplicaSet => &["rs"],
            _ => &[],
        }
    }

    /// `kubectl get all` lists the kinds in category `all`.
    fn categories(self) -> &'static [&'static str] {
        match self {
            Kind::Pod | Kind::Service | Kind::ReplicaSet => &["all"],
            _ => &[],
        }
    }

    /// The CRD API that must be installed for the kind to be served; `None` for built-in kinds.
    pub fn crd_api(self) -> Option<&'static str> {
        (self.group() == "metallb.io").then_some(METALLB_API)
    }

    /// The name of its CRD (`servicel2statuses.metallb.io`); `None` for built-in kinds.
    pub fn crd_name(self) -> Option<String> {
        self.crd_api().map(|_| format!("{}.{}", self.plural(), self.group()))
    }

    /// The collection in every namespace, e.g. `/api/v1/pods`.
    pub fn path(self) -> String {
        match self.group() {
            "" => format!("/api/v1/{}", self.plural()),
            _ => format!("/apis/{}/{}", self.api_version(), self.plural()),
        }
    }

    /// The key of its array in the state file.
    pub fn state_key(self) -> &'static str {
        self.plural()
    }

    /// What `fieldSelector` may name (the real server's field label conversions).
    fn selectable_fields(self) -> &'static [&'static str] {
        match self {
            Kind::Pod => &["metadata.name", "metadata.namespace", "spec.nodeName", "status.phase"],
            _ => &["metadata.name", "metadata.namespace"],
        }
    }

    fn find(group: &str, version: &str, plural: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.group() == group && k.version() == version && k.plural() == plural)
    }
}

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
    pub endpointslices: Vec<Value>,
    pub replicasets: Vec<Value>,
    pub servicel2statuses: Vec<Value>,
    pub servicebgpstatuses: Vec<Value>,
    pub l2advertisements: Vec<Value>,
    pub bgpadvertisements: Vec<Value>,
    pub ipaddresspools: Vec<Value>,
    /// Tokens the cluster issued, for TokenReview ([`tokenreview::IssuedToken`]).
    pub tokenreviews: Vec<Value>,
}

impl ClusterState {
    pub fn parse(text: &str) -> serde_json::Result<ClusterState> {
        serde_json::from_str(text)
    }

    /// The top-level keys of a state file that the double does not know (ignored when served).
    pub fn unknown_keys(text: &str) -> Vec<String> {
        let known =
            |key: &str| key == "apis" || key == "tokenreviews" || Kind::ALL.iter().any(|k| k.state_key() == key);
        serde_json::from_str::<serde_json::Map<String, Value>>(text)
            .map(|map| map.keys().filter(|k| !known(k)).cloned().collect())
            .unwrap_or_default()
    }

    fn of(&self, kind: Kind) -> &[Value] {
        match kind {
            Kind::Namespace => &self.namespaces,
            Kind::Node => &self.nodes,
            Kind::Pod => &self.pods,
            Kind::Service => &self.services,
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

type ObjectKey = (Kind, String, String);

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
        let app =
            Router::new().route("/bakery/expire", post(expire_handler)).fallback(handle).with_state(shared.clone());
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
                            problems.push(format!(
                                "{}: {}/{} appears more than once; the last one is served",
                                kind.state_key(),
                                key.1,
                                key.2
                            ));
                        }
                    }
                    Err(why) => problems.push(format!("{}[{index}] skipped: {why}", kind.state_key())),
                }
            }
        }
        // A real cluster has these namespaces, and every object is in an existing one (kubectl
        // looks the namespace up when an object is not found, to say which is missing).
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
        if !not_installed.is_empty() {
            problems.push(format!(
                "{} ignored: their CRD is not installed (add \"apis\": [\"{METALLB_API}\"] to serve them)",
                not_installed.join(", ")
            ));
        }

        let mut tokens = Vec::new();
        for (index, entry) in state.tokenreviews.iter().enumerate() {
            match tokenreview::IssuedToken::parse(entry) {
                Ok(token) => tokens.push(token),
                Err(why) => problems.push(format!("tokenreviews[{index}] skipped: {why}")),
            }
        }

        let mut inner = self.shared.lock();
        inner.crds = crds;
        inner.tokens = tokens;
        let gone: Vec<ObjectKey> = inner.objects.keys().filter(|k| !wanted.contains_key(*k)).cloned().collect();
        for key in gone {
            if let Some(object) = inner.objects.remove(&key) {
                let rv = next_rv(&mut inner);
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
            let rv = next_rv(&mut inner);
            let object = with_rv(object, rv);
            inner.objects.insert(key.clone(), object.clone());
            inner.events.push(Event { rv, kind: key.0, kind_of_change: change, object, previous });
        }
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

/// The object as the API server would store it, or why it would refuse it.
fn normalise(kind: Kind, object: Value) -> Result<Value, String> {
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
    Ok(Value::Object(map))
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
    #[serde(rename = "labelSelector")]
    label_selector: Option<String>,
    #[serde(rename = "fieldSelector")]
    field_selector: Option<String>,
    #[serde(rename = "includeObject")]
    include_object: Option<String>,
}

fn is_true(value: &Option<String>) -> bool {
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
        [plural] => (None, plural, None),
        ["namespaces", ns, plural] => (Some(ns), plural, None),
        ["namespaces", ns, plural, name] => (Some(ns), plural, Some(name)),
        [plural, name] => (None, plural, Some(name)),
        _ => return Route::Unknown,
    };
    Route::Objects { group, version, namespace, plural, name }
}

async fn handle(
    AxumState(shared): AxumState<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    query: Result<Query<ListParams>, QueryRejection>,
    body: Bytes,
) -> Response {
    if uri.path().trim_end_matches('/') == tokenreview::PATH {
        if method != Method::POST {
            let message = format!("{method} is not allowed on tokenreviews: they are only created (POST)");
            return status_response(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", &message);
        }
        let (code, answer) = {
            let mut inner = shared.lock();
            inner.reviews += 1;
            tokenreview::review(&inner.tokens, &body)
        };
        return json_response(code, &answer);
    }
    if method != Method::GET {
        let message = format!("the fake API server is read-only: {method} is not served");
        return status_response(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", &message);
    }
    let params = match query {
        Ok(Query(params)) => params,
        Err(rejection) => return status_response(StatusCode::BAD_REQUEST, "BadRequest", &rejection.body_text()),
    };
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
    match route(uri.path()) {
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
        Route::Resources(tokenreview::GROUP, tokenreview::VERSION) => json_response(
            StatusCode::OK,
            &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": tokenreview::GROUP_VERSION,
                    "resources": [tokenreview::api_resource()]}),
        ),
        Route::Resources(group, version) => {
            let kinds: Vec<Kind> =
                served.iter().copied().filter(|k| k.group() == group && k.version() == version).collect();
            if kinds.is_empty() {
                return not_found();
            }
            let group_version = kinds[0].api_version();
            let resources: Vec<Value> = kinds.iter().map(|k| api_resource(*k)).collect();
            json_response(
                StatusCode::OK,
                &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
                        "resources": resources}),
            )
        }
        Route::Objects { group, version, namespace, plural, name } => {
            let Some(kind) = Kind::find(group, version, plural).filter(|k| served.contains(k)) else {
                return not_found();
            };
            // Namespaced kinds are named inside a namespace only; cluster kinds never are.
            if (namespace.is_some() && !kind.namespaced())
                || (name.is_some() && namespace.is_none() && kind.namespaced())
            {
                return not_found();
            }
            match name {
                Some(name) => get_object(&shared, kind, namespace.unwrap_or_default(), name, table),
                None => match Filter::new(kind, namespace, &params) {
                    Ok(filter) if is_true(&params.watch) => watch_response(shared, &params, kind, filter, table),
                    Ok(filter) => list_response(&shared, kind, &filter, table),
                    Err(message) => status_response(StatusCode::BAD_REQUEST, "BadRequest", &message),
                },
            }
        }
        Route::Unknown => not_found(),
    }
}

fn version_info() -> Value {
    json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0", "gitCommit": "bakery-fake-apiserver",
           "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24.0",
           "compiler": "gc", "platform": "linux/amd64"})
}

/// The served API groups (not the core group), each with its one version, in a stable order.
fn served_group_versions(served: &[Kind]) -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for kind in served.iter().filter(|k| !k.group().is_empty()) {
        if !out.contains(&(kind.group(), kind.version())) {
            out.push((kind.group(), kind.version()));
        }
    }
    out
}

fn api_group(group: &str, version: &str) -> Value {
    let group_version = json!({"groupVersion": format!("{group}/{version}"), "version": version});
    json!({"name": group, "versions": [group_version], "preferredVersion": group_version})
}

fn api_resource(kind: Kind) -> Value {
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

/// Which objects of a collection a list or watch selects.
#[derive(Debug, Clone)]
struct Filter {
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    fn new(kind: Kind, namespace: Option<&str>, params: &ListParams) -> Result<Filter, String> {
        let labels = LabelSelector::parse(params.label_selector.as_deref().unwrap_or_default())
            .map_err(|e| format!("unable to parse requirement: {e}"))?;
        let fields =
            FieldSelector::parse(params.field_selector.as_deref().unwrap_or_default(), kind.selectable_fields())?;
        Ok(Filter { namespace: namespace.map(str::to_string), labels, fields })
    }

    fn matches(&self, object: &Value) -> bool {
        let metadata = &object["metadata"];
        self.namespace.as_deref().is_none_or(|ns| metadata["namespace"].as_str() == Some(ns))
            && self.labels.matches(metadata["labels"].as_object())
            && self.fields.matches(object)
    }

    /// How `event` reads through this filter: an object that starts matching is ADDED, one that
    /// stops matching is DELETED (what the real server's filtered watch sends).
    fn event<'a>(&self, event: &'a Event) -> Option<(&'static str, &'a Value)> {
        let now = self.matches(&event.object);
        if event.kind_of_change == "MODIFIED" {
            let before = event.previous.as_ref().is_some_and(|p| self.matches(p));
            return match (before, now) {
                (true, true) => Some(("MODIFIED", &event.object)),
                (false, true) => Some(("ADDED", &event.object)),
                (true, false) => Some(("DELETED", &event.object)),
                (false, false) => None,
            };
        }
        now.then_some((event.kind_of_change, &event.object))
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
        None => {
            let resource = if kind.group().is_empty() {
                kind.plural().to_string()
            } else {
                format!("{}.{}", kind.plural(), kind.group())
            };
            let mut body = status_body(StatusCode::NOT_FOUND, "NotFound", &format!("{resource} \"{name}\" not found"));
            body["details"] = json!({"name": name, "group": kind.group(), "kind": kind.plural()});
            json_response(StatusCode::NOT_FOUND, &body)
        }
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn status_body(code: StatusCode, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "details": {}, "code": code.as_u16()})
}

fn status_response(code: StatusCode, reason: &str, message: &str) -> Response {
    json_response(code, &status_body(code, reason, message))
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

/// One watch event's line: the object, or a one-row Table when the client asked for Tables.
fn object_event(kind: Kind, kind_of_change: &str, object: &Value, rv: u64, table: Option<Include>) -> Bytes {
    match table {
        Some(include) => event_line(kind_of_change, &tables::table(kind, &[object], rv, include, SystemTime::now())),
        None => event_line(kind_of_change, object),
    }
}

fn watch_response(shared: Shared, params: &ListParams, kind: Kind, filter: Filter, table: Option<Include>) -> Response {
    let from_rv: u64 = params.resource_version.as_deref().and_then(|rv| rv.parse().ok()).unwrap_or(0);
    let bookmarks = is_true(&params.allow_watch_bookmarks);
    let timeout = Duration::from_secs(params.timeout_seconds.unwrap_or(290).clamp(1, 3600));
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changed = shared.changed.subscribe();
        let mut expired = shared.expired.subscribe();
        expired.mark_unchanged();
        // No resourceVersion (or 0) means "the current state, then changes": every object that
        // matches arrives first as ADDED, as from a real server.
        let mut sent_through = from_rv;
        if from_rv == 0 {
            let (current, rv) = {
                let inner = shared.lock();
                let current: Vec<Value> = inner
                    .objects
                    .iter()
                    .filter(|(k, v)| k.0 == kind && filter.matches(v))
                    .map(|(_, v)| v.clone())
                    .collect();
                (current, inner.rv)
            };
            for object in current {
                if tx.send(Ok(object_event(kind, "ADDED", &object, rv, table))).await.is_err() {
                    return;
                }
            }
            sent_through = rv;
        }
        loop {
            let (pending, too_old, rv, served) = {
                let inner = shared.lock();
                let too_old = sent_through + 1 < inner.oldest_watchable_rv;
                let pending: Vec<Event> =
                    inner.events.iter().filter(|e| e.kind == kind && e.rv > sent_through).cloned().collect();
                (pending, too_old, inner.rv, inner.serves(kind))
            };
            if too_old {
                let message = format!("too old resource version: {sent_through} ({rv})");
                let _ = tx.send(Ok(event_line("ERROR", &gone_status(&message)))).await;
                return;
            }
            for event in &pending {
                sent_through = event.rv;
                if let Some((change, object)) = filter.event(event)
                    && tx.send(Ok(object_event(kind, change, object, event.rv, table))).await.is_err()
                {
                    return;
                }
            }
            if !served {
                // The API was removed (its CRD deleted): the server ends the watch, and the
                // client's next request gets 404.
                return;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn changes_become_added_modified_and_deleted_events_with_rising_versions() {
        runtime().block_on(async {
            let double = KubeDouble::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
            let pod = |node: &str| json!({"metadata": {"name": "p", "namespace": "n", "uid": "u"}, "spec": {"nodeName": node}});
            double.set_state(&ClusterState { pods: vec![pod("a")], ..ClusterState::default() });
            let after_first = double.shared.lock().events.len();
            double.set_state(&ClusterState { pods: vec![pod("a")], ..ClusterState::default() });
            assert_eq!(double.shared.lock().events.len(), after_first, "an unchanged state adds nothing");
            double.set_state(&ClusterState { pods: vec![pod("b")], ..ClusterState::default() });
            double.set_state(&ClusterState::default());
            let inner = double.shared.lock();
            let namespaces: Vec<&str> = inner
                .events
                .iter()
                .filter(|e| e.kind == Kind::Namespace && e.kind_of_change == "ADDED")
                .map(|e| e.object["metadata"]["name"].as_str().unwrap())
                .collect();
            assert_eq!(namespaces, ["default", "kube-node-lease", "kube-public", "kube-system", "n"], "the pod's namespace exists");
            let pod_events: Vec<&Event> = inner.events.iter().filter(|e| e.kind == Kind::Pod).collect();
            let changes: Vec<&str> = pod_events.iter().map(|e| e.kind_of_change).collect();
            assert_eq!(changes, ["ADDED", "MODIFIED", "DELETED"]);
            assert!(pod_events.windows(2).all(|w| w[0].rv < w[1].rv), "versions rise");
            assert!(inner.events.windows(2).all(|w| w[0].rv < w[1].rv), "versions rise");
            assert_eq!(pod_events[1].object["metadata"]["resourceVersion"], pod_events[1].rv.to_string());
            assert_eq!(pod_events[1].object["kind"], "Pod");
            let created = &pod_events[0].object["metadata"]["creationTimestamp"];
            assert!(created.as_str().is_some_and(|t| humantime::parse_rfc3339(t).is_ok()), "{created}");
            assert_eq!(&pod_events[1].object["metadata"]["creationTimestamp"], created, "kept across changes");
        });
    }

    /// Sends a raw HTTP/1.1 GET and returns what arrives until `done` holds or 5 s pass.
    async fn get_until(addr: SocketAddr, path: &str, done: impl Fn(&str) -> bool) -> String {
        request(addr, path, "application/json", done).await
    }

    async fn request(addr: SocketAddr, path: &str, accept: &str, done: impl Fn(&str) -> bool) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: fake\r\nAccept: {accept}\r\nConnection: close\r\n\r\n");
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

    /// GET `path` (a complete, non-streaming answer): the status code and the JSON body.
    async fn get_json(addr: SocketAddr, path: &str, accept: &str) -> (u16, Value) {
        let text = request(addr, path, accept, |_| false).await;
        let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap();
        let body = text.split_once("\r\n\r\n").map(|(_, body)| body).unwrap();
        (code, serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}")))
    }

    async fn get(addr: SocketAddr, path: &str) -> (u16, Value) {
        get_json(addr, path, "application/json").await
    }

    fn names(list: &Value) -> Vec<&str> {
        list["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap()).collect()
    }

    #[test]
    fn a_watch_streams_events_then_bookmarks_and_an_old_version_gets_410() {
        runtime().block_on(async {
            let double = KubeDouble::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
            let node = |name: &str| json!({"metadata": {"name": name}});
            double.set_state(&ClusterState { nodes: vec![node("pi-1")], ..ClusterState::default() });
            let seen = double.resource_version();
            double.set_state(&ClusterState { nodes: vec![node("pi-1"), node("pi-2")], ..ClusterState::default() });
            let addr = double.addr();
            let watch = format!("/api/v1/nodes?watch=true&resourceVersion={seen}&allowWatchBookmarks=true");
            let text = get_until(addr, &watch, |t| t.contains("BOOKMARK")).await;
            assert!(text.contains(r#""type":"ADDED""#) && text.contains(r#""name":"pi-2""#), "{text}");
            assert!(!text.contains(r#""name":"pi-1""#), "pi-1 is at version {seen}, already seen: {text}");
            assert!(text.contains(&format!(r#""resourceVersion":"{}""#, seen + 1)), "{text}");

            let text = get_until(addr, "/api/v1/nodes?watch=true", |t| t.contains("pi-1") && t.contains("pi-2")).await;
            assert!(
                text.contains(r#""type":"ADDED""#),
                "a watch without a version starts with the current objects: {text}"
            );

            double.expire_watches();
            let text = get_until(addr, &watch, |t| t.contains("ERROR")).await;
            assert!(text.contains(r#""code":410"#), "{text}");
            let (code, list) = get(addr, "/api/v1/nodes").await;
            let newest = json!((seen + 1).to_string());
            assert_eq!(
                (code, list["kind"].as_str(), &list["metadata"]["resourceVersion"]),
                (200, Some("NodeList"), &newest)
            );
        });
    }

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
        assert_eq!(route("/healthz"), Route::Unknown);
    }

    fn shop_state() -> ClusterState {
        let pod = |name: &str, ns: &str, app: &str, node: &str| json!({"metadata": {"name": name, "namespace": ns, "labels": {"app": app}}, "spec": {"nodeName": node}});
        ClusterState {
            nodes: vec![json!({"metadata": {"name": "pi-1"}})],
            pods: vec![
                pod("web-1", "shop", "web", "pi-1"),
                pod("web-2", "shop", "web", "pi-2"),
                pod("db-0", "data", "db", "pi-2"),
            ],
            services: vec![json!({"metadata": {"name": "web", "namespace": "shop"}, "spec": {"type": "LoadBalancer"}})],
            servicel2statuses: vec![json!({"metadata": {"name": "l2-x", "namespace": "metallb-system"},
                                           "status": {"node": "pi-1", "serviceName": "web", "serviceNamespace": "shop"}})],
            ..ClusterState::default()
        }
    }

    #[test]
    fn namespaced_lists_single_objects_and_selectors_answer_as_a_real_server() {
        runtime().block_on(async {
            let double = KubeDouble::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
            double.set_state(&shop_state());
            let addr = double.addr();
            assert_eq!(names(&get(addr, "/api/v1/pods").await.1), ["db-0", "web-1", "web-2"]);
            assert_eq!(names(&get(addr, "/api/v1/namespaces/shop/pods").await.1), ["web-1", "web-2"]);
            assert_eq!(names(&get(addr, "/api/v1/pods?labelSelector=app%3Ddb").await.1), ["db-0"]);
            assert_eq!(names(&get(addr, "/api/v1/pods?labelSelector=app+in+%28web%29").await.1), ["web-1", "web-2"]);
            assert_eq!(names(&get(addr, "/api/v1/pods?fieldSelector=spec.nodeName%3Dpi-2").await.1), ["db-0", "web-2"]);
            assert_eq!(
                names(&get(addr, "/api/v1/namespaces/shop/pods?fieldSelector=metadata.name%3Dweb-2").await.1),
                ["web-2"]
            );
            let (code, status) = get(addr, "/api/v1/pods?fieldSelector=spec.restartPolicy%3DAlways").await;
            assert_eq!((code, status["reason"].as_str()), (400, Some("BadRequest")), "{status}");

            let (code, svc) = get(addr, "/api/v1/namespaces/shop/services/web").await;
            assert_eq!(
                (code, svc["kind"].as_str(), svc["spec"]["type"].as_str()),
                (200, Some("Service"), Some("LoadBalancer"))
            );
            let (code, status) = get(addr, "/api/v1/namespaces/shop/services/nope").await;
            assert_eq!((code, status["message"].as_str()), (404, Some(r#"services "nope" not found"#)));
            assert_eq!(get(addr, "/api/v1/nodes/pi-1").await.0, 200);
            assert_eq!(get(addr, "/api/v1/namespaces/shop/nodes").await.0, 404, "nodes are not namespaced");

            // The state does not install MetalLB: its objects are ignored and its paths are 404.
            for path in [
                "/apis/metallb.io/v1beta1/servicel2statuses",
                "/apis/metallb.io/v1beta1/namespaces/metallb-system/servicel2statuses",
                "/apis/metallb.io/v1beta1",
                "/apis/metallb.io",
            ] {
                let (code, status) = get(addr, path).await;
                assert_eq!(
                    (code, status["kind"].as_str(), status["reason"].as_str()),
                    (404, Some("Status"), Some("NotFound")),
                    "{path}"
                );
            }
            let groups = get(addr, "/apis").await.1;
            let group_names: Vec<&str> =
                groups["groups"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap()).collect();
            assert_eq!(group_names, ["discovery.k8s.io", "apps", "authentication.k8s.io"]);

            let problems = double.set_state(&ClusterState { apis: vec![METALLB_API.into()], ..shop_state() });
            assert!(problems.is_empty(), "{problems:?}");
            let statuses = get(addr, "/apis/metallb.io/v1beta1/namespaces/metallb-system/servicel2statuses").await.1;
            assert_eq!((statuses["kind"].as_str(), names(&statuses)), (Some("ServiceL2StatusList"), vec!["l2-x"]));
            let groups = get(addr, "/apis").await.1;
            assert_eq!(groups["groups"][2]["preferredVersion"]["groupVersion"], "metallb.io/v1beta1");
            let resources = get(addr, "/apis/metallb.io/v1beta1").await.1;
            let plurals: Vec<&str> =
                resources["resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
            assert_eq!(
                plurals,
                ["servicel2statuses", "servicebgpstatuses", "l2advertisements", "bgpadvertisements", "ipaddresspools"]
            );
            let core = get(addr, "/api/v1").await.1;
            let services = core["resources"].as_array().unwrap().iter().find(|r| r["name"] == "services").unwrap();
            assert_eq!((&services["shortNames"], &services["namespaced"]), (&json!(["svc"]), &json!(true)));
        });
    }

    #[test]
    fn crds_installed_one_by_one_serve_only_their_kinds() {
        runtime().block_on(async {
            let double = KubeDouble::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
            let apis = vec!["servicel2statuses.metallb.io".into(), "l2advertisements.metallb.io".into()];
            let problems = double.set_state(&ClusterState { apis, ..shop_state() });
            assert!(problems.is_empty(), "{problems:?}");
            let addr = double.addr();
            assert_eq!(get(addr, "/apis/metallb.io/v1beta1/servicel2statuses").await.0, 200);
            assert_eq!(get(addr, "/apis/metallb.io/v1beta1/servicebgpstatuses").await.0, 404);
            let resources = get(addr, "/apis/metallb.io/v1beta1").await.1;
            let plurals: Vec<&str> =
                resources["resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
            assert_eq!(plurals, ["servicel2statuses", "l2advertisements"]);
            let problems = double.set_state(&ClusterState { apis: vec!["metallb.io/v2".into()], ..shop_state() });
            assert!(problems[0].contains("unknown API \"metallb.io/v2\""), "{problems:?}");
        });
    }

    #[test]
    fn tables_are_served_to_clients_that_ask_for_them() {
        runtime().block_on(async {
            let double = KubeDouble::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
            double.set_state(&shop_state());
            let accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
            let (code, table) = get_json(double.addr(), "/api/v1/namespaces/shop/pods", accept).await;
            assert_eq!((code, table["kind"].as_str()), (200, Some("Table")));
            assert_eq!(table["rows"].as_array().unwrap().len(), 2);
            assert_eq!(table["rows"][0]["cells"][0], "web-1");
            assert_eq!(table["rows"][0]["object"]["kind"], "PartialObjectMetadata");
            let (_, table) = get_json(double.addr(), "/api/v1/namespaces/shop/pods?includeObject=Object", accept).await;
            assert_eq!(table["rows"][0]["object"]["kind"], "Pod");
            let text = request(double.addr(), "/api/v1/pods?watch=true", accept, |t| {
                t.matches(r#""kind":"Table""#).count() >= 3
            })
            .await;
            let events: Vec<Value> = text.lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
            assert_eq!(events.len(), 3, "{text}");
            assert!(
                events.iter().all(|e| e["type"] == "ADDED" && e["object"]["rows"].as_array().unwrap().len() == 1),
                "{text}"
            );
        });
    }

    /// POSTs `body` to `path`: the status code and the JSON answer.
    async fn post(addr: SocketAddr, path: &str, body: &str) -> (u16, Value) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: fake\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut text = String::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut text)).await.unwrap().unwrap();
        let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap();
        let body = text.split_once("\r\n\r\n").map(|(_, body)| body).unwrap();
        (code, serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}")))
    }

    #[test]
    fn token_reviews_are_discovered_created_and_answered_from_the_state() {
        runtime().block_on(async {
            let double = KubeDouble::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
            let issued = json!({"token": "agent-pi-1", "audiences": ["bakery"],
                                "user": {"username": "system:serviceaccount:bakery:bakery-agent",
                                         "groups": ["system:serviceaccounts"],
                                         "extra": {"authentication.kubernetes.io/pod-uid": ["uid-1"]}}});
            let problems = double.set_state(&ClusterState {
                tokenreviews: vec![issued, json!({"token": "nameless", "user": {}})],
                ..shop_state()
            });
            assert!(
                problems.contains(&"tokenreviews[1] skipped: user.username is not a string".to_string()),
                "{problems:?}"
            );
            let addr = double.addr();
            let groups = get(addr, "/apis").await.1;
            assert!(
                groups["groups"].as_array().unwrap().iter().any(|g| g["name"] == "authentication.k8s.io"),
                "{groups}"
            );
            assert_eq!(get(addr, "/apis/authentication.k8s.io").await.0, 200);
            let resources = get(addr, "/apis/authentication.k8s.io/v1").await.1;
            assert_eq!(resources["resources"], json!([tokenreview::api_resource()]));
            assert_eq!(resources["resources"][0]["verbs"], json!(["create"]));

            let review = |token: &str| {
                json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                       "spec": {"token": token, "audiences": ["bakery"]}})
                .to_string()
            };
            let (code, answer) = post(addr, tokenreview::PATH, &review("agent-pi-1")).await;
            assert_eq!((code, &answer["status"]["authenticated"]), (201, &json!(true)), "{answer}");
            assert_eq!(answer["status"]["user"]["extra"]["authentication.kubernetes.io/pod-uid"], json!(["uid-1"]));
            let (code, answer) = post(addr, tokenreview::PATH, &review("stolen?")).await;
            assert_eq!(code, 201);
            assert!(answer["status"]["error"].as_str().unwrap().contains("invalid bearer token"), "{answer}");
            assert_eq!(double.token_reviews_served(), 2);
            // listed nowhere, created only
            assert_eq!(get(addr, tokenreview::PATH).await.0, 405);
            assert_eq!(post(addr, "/api/v1/pods", "{}").await.0, 405, "the rest stays read-only");
        });
    }

    #[test]
    fn a_filtered_watch_sees_objects_enter_and_leave_its_selection() {
        runtime().block_on(async {
            let double = KubeDouble::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
            double.set_state(&shop_state());
            let rv = double.resource_version();
            let mut moved = shop_state();
            moved.pods[0]["metadata"]["labels"]["app"] = json!("old");
            moved.pods[2]["metadata"]["labels"]["app"] = json!("web");
            double.set_state(&moved);
            let path = format!("/api/v1/pods?watch=true&resourceVersion={rv}&labelSelector=app%3Dweb");
            let text = get_until(double.addr(), &path, |t| t.contains("DELETED") && t.contains("ADDED")).await;
            assert!(text.contains(r#""type":"DELETED""#) && text.contains("web-1"), "web-1 left the selection: {text}");
            assert!(text.contains(r#""type":"ADDED""#) && text.contains("db-0"), "db-0 entered it: {text}");
        });
    }

    #[test]
    fn removing_an_api_ends_its_watches_and_its_paths_answer_404() {
        runtime().block_on(async {
            let double = KubeDouble::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
            double.set_state(&ClusterState { apis: vec![METALLB_API.into()], ..shop_state() });
            let addr = double.addr();
            let rv = double.resource_version();
            let path = format!("/apis/metallb.io/v1beta1/servicel2statuses?watch=true&resourceVersion={rv}");
            let watch = tokio::spawn(async move { get_until(addr, &path, |_| false).await });
            tokio::time::sleep(Duration::from_millis(100)).await;
            let problems = double.set_state(&shop_state());
            assert_eq!(problems.len(), 1, "one line for the ignored objects: {problems:?}");
            assert!(problems[0].contains("1 servicel2statuses ignored"), "{problems:?}");
            let text = tokio::time::timeout(Duration::from_secs(5), watch).await.expect("the watch ends").unwrap();
            assert!(text.contains(r#""type":"DELETED""#), "{text}");
            assert_eq!(get(addr, "/apis/metallb.io/v1beta1/servicel2statuses").await.0, 404);
        });
    }

    #[test]
    fn objects_a_server_would_refuse_are_skipped_with_a_reason_and_the_rest_is_served() {
        runtime().block_on(async {
            let double = KubeDouble::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
            let state = ClusterState {
                apis: vec!["example.com/v1".into()],
                pods: vec![
                    json!("web-1"),
                    json!({"metadata": {"namespace": "shop"}}),
                    json!({"kind": "Service", "metadata": {"name": "x"}}),
                    json!({"metadata": {"name": "y", "labels": {"n": 1}}}),
                    json!({"metadata": {"name": "z"}, "spec": []}),
                    json!({"metadata": {"name": "ok"}}),
                ],
                ..ClusterState::default()
            };
            let problems = double.set_state(&state);
            assert_eq!(problems.len(), 6, "{problems:#?}");
            assert!(problems[0].contains("example.com/v1"));
            assert!(problems[1].contains("pods[0] skipped: not a JSON object"), "{problems:#?}");
            assert!(problems[2].contains("no metadata.name"), "{problems:#?}");
            let (_, pods) = get(double.addr(), "/api/v1/pods").await;
            assert_eq!(names(&pods), ["ok"]);
            assert_eq!(pods["items"][0]["metadata"]["namespace"], "default");
            assert_eq!(ClusterState::unknown_keys(r#"{"pods": [], "deployments": [], "apis": []}"#), ["deployments"]);
        });
    }
}
