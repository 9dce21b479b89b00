//! What the export needs from the parts of the collector that know Kubernetes and run the
//! diagnosis: pod names and workloads by UID, and the current shares, hog verdicts and
//! load-test windows. Small traits, so those parts plug in without the export depending on them.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A pod as Kubernetes names it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodMeta {
    pub name: String,
    pub namespace: String,
    /// The controller that owns the pod, when known (a ReplicaSet is reported as its
    /// Deployment).
    pub workload: Option<Workload>,
}

/// A workload: `kind` as Kubernetes spells it ("Deployment", "StatefulSet", "DaemonSet", ...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Workload {
    pub kind: String,
    pub name: String,
}

/// What the export reads from Kubernetes and the diagnosis, once per export or scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeedSnapshot {
    /// Pods by UID (the agents only know UIDs and cgroups).
    pub pods: HashMap<String, PodMeta>,
    pub diagnosis: DiagnosisView,
}

/// The source of [`FeedSnapshot`]s (the live diagnosis implements it).
pub trait ExportFeed: Send + Sync {
    fn read(&self) -> Pin<Box<dyn Future<Output = FeedSnapshot> + Send + '_>>;
}

/// What the live diagnosis currently says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DiagnosisView {
    /// Each node's share of a workload's traffic, observed and expected.
    pub shares: Vec<ShareView>,
    /// Per workload, how uneven the traffic is against the expected shares.
    pub imbalance: Vec<ImbalanceView>,
    /// Hog verdicts in force now.
    pub active_hogs: Vec<HogView>,
    /// Verdicts in force now, by cause.
    pub verdicts_by_cause: Vec<(String, u64)>,
    /// Load-test windows open now.
    pub open_windows: Vec<WindowView>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShareView {
    pub node: String,
    pub namespace: String,
    pub workload: String,
    /// Fractions in 0..=1.
    pub observed: f64,
    pub expected: f64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImbalanceView {
    pub namespace: String,
    pub workload: String,
    pub score: f64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct HogView {
    pub node: String,
    pub namespace: String,
    pub workload: String,
    /// The cause as the diagnosis names it, e.g. "ingress-concentration", "thermal-throttling".
    pub cause: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowView {
    pub id: String,
    pub name: String,
    pub started_ms: i64,
}

/// The optional source of Kubernetes and diagnosis data; without it pods are exported by UID
/// only and the diagnosis series are absent.
#[derive(Clone, Default)]
pub struct ExportHooks {
    pub feed: Option<Arc<dyn ExportFeed>>,
    /// `--cluster-name`: `k8s.cluster.name` on every resource when set.
    pub cluster_name: Option<String>,
}

impl std::fmt::Debug for ExportHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportHooks")
            .field("feed", &self.feed.is_some())
            .field("cluster_name", &self.cluster_name)
            .finish()
    }
}
