//! The watches: one `kube::runtime::watcher` per kind for the whole cluster, each feeding a
//! reflector store. The watcher relists by itself when its resourceVersion is too old (410 Gone)
//! and backs off on errors, so the stores converge on the cluster's state without help.
//!
//! MetalLB's kinds are custom resources that may not exist: a watcher on a missing kind would
//! fail with 404 and warn forever under its backoff. So each is probed first (a `list` with
//! `limit=1`), watched only once the probe succeeds, and dropped again on a 404 or 403 (CRD
//! removed, access revoked); while it is absent the probe runs every
//! [`WatchOptions::metallb_probe_every`]. What is installed is logged once per change, never per
//! probe.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::kube::api::{ApiResource, DynamicObject, ListParams};
use ::kube::runtime::reflector::{self, Store};
use ::kube::runtime::{WatchStreamExt, watcher};
use ::kube::{Api, Client};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use tokio::task::JoinHandle;

use super::mapping::{node_role, pod_meta, ready_endpoints};
use super::services::{self, MetalLb, ServiceInputs};
use super::{ClusterView, KubeMode};
use crate::error::{Error, Result};

/// How the watches behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchOptions {
    /// How often to look again for MetalLB's CRDs while they are absent or unreadable (it may be
    /// installed later). One `list` with `limit=1` per look.
    pub metallb_probe_every: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        Self { metallb_probe_every: Duration::from_secs(60) }
    }
}

/// The running watches and their stores; the tasks stop when this is dropped.
#[derive(Debug)]
pub struct KubeWatch {
    pods: Store<Pod>,
    nodes: Store<Node>,
    slices: Store<EndpointSlice>,
    services: Store<Service>,
    metallb: Arc<Mutex<MetalLbWatch>>,
    tasks: Vec<JoinHandle<()>>,
    /// The same client and pod store, for TokenReviews of the agents' tokens.
    reviewer: super::tokenreview::KubeTokenReviewer,
}

impl Drop for KubeWatch {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl KubeWatch {
    /// Connects as `mode` says and starts the watches. `Ok(None)` when there is no cluster to
    /// talk to (disabled, or nothing to infer a configuration from).
    pub async fn start(mode: &KubeMode) -> Result<Option<KubeWatch>> {
        KubeWatch::start_with(mode, WatchOptions::default()).await
    }

    /// [`KubeWatch::start`] with these options.
    pub async fn start_with(mode: &KubeMode, options: WatchOptions) -> Result<Option<KubeWatch>> {
        let config = match mode {
            KubeMode::Disabled => return Ok(None),
            KubeMode::Kubeconfig(path) => {
                let kubeconfig = ::kube::config::Kubeconfig::read_from(path)
                    .map_err(|e| Error::Config(format!("cannot read the kubeconfig {}: {e}", path.display())))?;
                ::kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
                    .await
                    .map_err(|e| Error::Config(format!("unusable kubeconfig {}: {e}", path.display())))?
            }
            KubeMode::Infer => match ::kube::Config::infer().await {
                Ok(config) => config,
                Err(error) => {
                    tracing::warn!(%error, "no Kubernetes configuration found; running without cluster knowledge");
                    return Ok(None);
                }
            },
        };
        tracing::info!(
            cluster = %config.cluster_url,
            "watching pods, nodes, services and endpointslices, and MetalLB's status when it is installed"
        );
        let client = Client::try_from(config).map_err(|e| Error::Config(format!("cannot build a client: {e}")))?;
        Ok(Some(KubeWatch::with_options(client, options)))
    }

    /// Starts the watches on `client` with the default options.
    pub fn with_client(client: Client) -> KubeWatch {
        KubeWatch::with_options(client, WatchOptions::default())
    }

    /// Starts the watches on `client`.
    pub fn with_options(client: Client, options: WatchOptions) -> KubeWatch {
        let (pods, pods_task) = spawn_reflector(Api::<Pod>::all(client.clone()));
        let (nodes, nodes_task) = spawn_reflector(Api::<Node>::all(client.clone()));
        let (slices, slices_task) = spawn_reflector(Api::<EndpointSlice>::all(client.clone()));
        let (services, services_task) = spawn_reflector(Api::<Service>::all(client.clone()));
        let metallb = Arc::new(Mutex::new(MetalLbWatch::new()));
        let mut tasks = vec![pods_task, nodes_task, slices_task, services_task];
        for index in 0..METALLB_KINDS.len() {
            let follow = follow_metallb_kind(client.clone(), index, metallb.clone(), options.metallb_probe_every);
            tasks.push(tokio::spawn(follow));
        }
        let reviewer = super::tokenreview::KubeTokenReviewer::new(client, pods.clone());
        KubeWatch { pods, nodes, slices, services, metallb, tasks, reviewer }
    }

    /// Reviews service-account tokens with this watch's client and finds their pods in its pod
    /// store.
    pub fn token_reviewer(&self) -> super::tokenreview::KubeTokenReviewer {
        self.reviewer.clone()
    }

    /// One look at the stores, mapped.
    pub fn view(&self) -> ClusterView {
        let pods_by_uid: HashMap<_, _> =
            self.pods.state().iter().filter_map(|pod| pod_meta(pod)).map(|meta| (meta.uid.clone(), meta)).collect();
        let nodes: Vec<Node> = self.nodes.state().iter().map(|n| (**n).clone()).collect();
        let roles =
            nodes.iter().filter_map(|node| node.metadata.name.clone().map(|name| (name, node_role(node)))).collect();
        let slices: Vec<EndpointSlice> = self.slices.state().iter().map(|s| (**s).clone()).collect();
        let endpoints = ready_endpoints(&slices, &pods_by_uid);
        let service_objects: Vec<Service> = self.services.state().iter().map(|s| (**s).clone()).collect();
        let metallb = lock(&self.metallb).snapshot();
        let services = services::service_entries(&ServiceInputs {
            services: &service_objects,
            slices: &slices,
            pods_by_uid: &pods_by_uid,
            nodes: &nodes,
            metallb: &metallb,
        });
        let notes = services::metallb_note(&metallb).into_iter().collect();
        ClusterView { pods_by_uid, roles, endpoints, services, notes }
    }
}

fn spawn_reflector<K>(api: Api<K>) -> (Store<K>, JoinHandle<()>)
where
    K: ::kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store::<K>();
    let kind = K::kind(&()).into_owned();
    // Bookmarks keep the resourceVersion fresh on quiet clusters, so a reconnect rarely relists.
    let config = watcher::Config::default();
    let stream = reflector::reflector(writer, watcher(api, config)).default_backoff();
    let task = tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            if let Err(error) = event {
                tracing::warn!(kind = %kind, %error, "watch failed; retrying with backoff");
            }
        }
    });
    (reader, task)
}

/// MetalLB's kinds the collector reads (`metallb.io/v1beta1`), by the kind and plural of their
/// CRDs. The status kinds are recent: ServiceL2Status came with MetalLB 0.14.4, ServiceBGPStatus
/// with 0.15.0, so a cluster may serve some of the four and not the others.
const METALLB_KINDS: [(&str, &str); 4] = [
    ("ServiceL2Status", services::L2_STATUSES),
    ("ServiceBGPStatus", services::BGP_STATUSES),
    ("L2Advertisement", "l2advertisements"),
    ("BGPAdvertisement", "bgpadvertisements"),
];

fn metallb_resource((kind, plural): (&str, &str)) -> ApiResource {
    let gvk = ::kube::core::GroupVersionKind::gvk("metallb.io", "v1beta1", kind);
    ApiResource::from_gvk_with_plural(&gvk, plural)
}

/// Where the watch of one MetalLB kind stands.
#[derive(Debug)]
enum KindPhase {
    /// Not looked at yet.
    Pending,
    /// The API answers 404 for it: its CRD is not installed.
    Absent,
    /// The API refused (403 or another error status): why.
    Unreadable(String),
    /// The API did not answer (connection, timeout): why.
    Unreachable(String),
    Watching(Store<DynamicObject>),
}

/// The four MetalLB kinds' phases (in [`METALLB_KINDS`] order), and what was last logged about
/// them.
#[derive(Debug)]
struct MetalLbWatch {
    kinds: [KindPhase; 4],
    last_said: Option<String>,
}

impl MetalLbWatch {
    fn new() -> MetalLbWatch {
        MetalLbWatch { kinds: std::array::from_fn(|_| KindPhase::Pending), last_said: None }
    }

    fn snapshot(&self) -> MetalLb {
        if self.kinds.iter().any(|k| matches!(k, KindPhase::Pending)) {
            return MetalLb::Pending;
        }
        if self.kinds.iter().all(|k| matches!(k, KindPhase::Absent)) {
            return MetalLb::NotInstalled;
        }
        if let Some(why) = self.kinds.iter().find_map(|k| match k {
            KindPhase::Unreadable(why) | KindPhase::Unreachable(why) => Some(why.clone()),
            _ => None,
        }) {
            return MetalLb::Unreadable(why);
        }
        let objects = |index: usize| match &self.kinds[index] {
            KindPhase::Watching(store) => store.state().iter().map(|o| (**o).clone()).collect(),
            _ => Vec::new(),
        };
        let missing = METALLB_KINDS
            .iter()
            .zip(&self.kinds)
            .filter(|(_, phase)| matches!(phase, KindPhase::Absent))
            .map(|((_, plural), _)| plural.to_string())
            .collect();
        MetalLb::Installed(services::MetalLbObjects {
            l2_statuses: objects(0),
            bgp_statuses: objects(1),
            l2_advertisements: objects(2),
            bgp_advertisements: objects(3),
            missing,
        })
    }

    /// What to log about the four kinds together (`None` until each has been looked at), and
    /// whether it is a warning. It depends only on which kinds are served, never on objects.
    fn summary(&self) -> Option<(String, bool)> {
        let plurals = |wanted: fn(&KindPhase) -> bool| -> Vec<&str> {
            METALLB_KINDS.iter().zip(&self.kinds).filter(|(_, p)| wanted(p)).map(|((_, plural), _)| *plural).collect()
        };
        if self.kinds.iter().any(|k| matches!(k, KindPhase::Pending)) {
            return None;
        }
        if let Some(why) = self.kinds.iter().find_map(|k| match k {
            KindPhase::Unreachable(why) => Some(why.as_str()),
            _ => None,
        }) {
            return Some((format!("cannot look for MetalLB ({why}); retrying"), true));
        }
        if let Some(why) = self.kinds.iter().find_map(|k| match k {
            KindPhase::Unreadable(why) => Some(why.as_str()),
            _ => None,
        }) {
            return Some((
                format!(
                    "cannot read MetalLB's objects ({why}); grant get, list and watch on metallb.io servicel2statuses, \
                     servicebgpstatuses, l2advertisements and bgpadvertisements; entry nodes of LoadBalancer \
                     Services are unknown"
                ),
                true,
            ));
        }
        let watching = plurals(|p| matches!(p, KindPhase::Watching(_)));
        let absent = plurals(|p| matches!(p, KindPhase::Absent));
        Some(match (watching.is_empty(), absent.is_empty()) {
            (true, _) => (services::NOT_INSTALLED_NOTE.to_string(), false),
            (false, true) => {
                (format!("MetalLB is installed: watching {} (metallb.io/v1beta1)", watching.join(", ")), false)
            }
            (false, false) => (
                format!(
                    "MetalLB is installed without {} (an older MetalLB): watching {} (metallb.io/v1beta1)",
                    absent.join(", "),
                    watching.join(", ")
                ),
                false,
            ),
        })
    }

    /// Sets one kind's phase and logs the summary when it changed: once per change of what is
    /// installed, never per probe.
    fn set(&mut self, index: usize, phase: KindPhase) {
        self.kinds[index] = phase;
        if let Some((summary, warn)) = self.summary()
            && self.last_said.as_ref() != Some(&summary)
        {
            if warn {
                tracing::warn!("{summary}");
            } else {
                tracing::info!("{summary}");
            }
            self.last_said = Some(summary);
        }
    }
}

fn lock(watch: &Mutex<MetalLbWatch>) -> std::sync::MutexGuard<'_, MetalLbWatch> {
    watch.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Follows one MetalLB kind: probes it (a `list` with `limit=1`), watches it into a fresh store
/// once the probe succeeds, and goes back to probing when the watch gets 404 or 403 (CRD
/// deleted, access revoked). A kind that is absent or refused is probed again every
/// `probe_every`; one that does not answer, sooner (1 s, doubling), as the other watchers retry.
async fn follow_metallb_kind(client: Client, index: usize, watch: Arc<Mutex<MetalLbWatch>>, probe_every: Duration) {
    let kind = METALLB_KINDS[index];
    let resource = metallb_resource(kind);
    let api: Api<DynamicObject> = Api::all_with(client, &resource);
    let mut retry = Duration::from_secs(1);
    loop {
        let wait = match api.list(&ListParams::default().limit(1)).await {
            Ok(_) => {
                retry = Duration::from_secs(1);
                let started = tokio::time::Instant::now();
                let writer = reflector::store::Writer::<DynamicObject>::new(resource.clone());
                lock(&watch).set(index, KindPhase::Watching(writer.as_reader()));
                let code = watch_until_gone(api.clone(), writer, kind).await;
                let why = format!("{}.metallb.io: {code}", kind.1);
                lock(&watch).set(index, if code == 404 { KindPhase::Absent } else { KindPhase::Unreadable(why) });
                // A watch that the API ends at once while its list works would otherwise turn
                // into a tight loop.
                if started.elapsed() < probe_every { probe_every } else { Duration::ZERO }
            }
            Err(::kube::Error::Api(status)) if status.code == 404 => {
                lock(&watch).set(index, KindPhase::Absent);
                probe_every
            }
            Err(::kube::Error::Api(status)) => {
                let why = format!("{}.metallb.io: {} {}", kind.1, status.code, status.message);
                lock(&watch).set(index, KindPhase::Unreadable(why));
                probe_every
            }
            Err(error) => {
                let why = format!("{}.metallb.io: {error}", kind.1);
                lock(&watch).set(index, KindPhase::Unreachable(why));
                let wait = retry;
                retry = (retry * 2).min(probe_every);
                wait
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// Runs a watcher into `writer` until the API answers 403 or 404 for the kind; that code.
async fn watch_until_gone(
    api: Api<DynamicObject>,
    writer: reflector::store::Writer<DynamicObject>,
    kind: (&str, &str),
) -> u16 {
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
    futures::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        let Err(error) = event else { continue };
        match api_code(&error) {
            Some(code @ (403 | 404)) => return code,
            _ => tracing::warn!(kind = kind.0, %error, "watch failed; retrying with backoff"),
        }
    }
    // The watcher's stream does not end; if it did, the kind is looked at again.
    404
}

/// The HTTP status of an API error inside a watcher error.
fn api_code(error: &watcher::Error) -> Option<u16> {
    match error {
        watcher::Error::InitialListFailed(::kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(::kube::Error::Api(status))
        | watcher::Error::WatchFailed(::kube::Error::Api(status)) => Some(status.code),
        watcher::Error::WatchError(status) => Some(status.code),
        _ => None,
    }
}
