//! The live analysis task: every tick (1 s, or the window interval while a window is open) it
//! turns each node's latest sample plus the cluster knowledge into a diagnosis [`Tick`], runs the
//! [`Detector`] (sliding 10 s live view, 2 s detection), keeps the live verdicts, opens and closes
//! windows (explicit or on a surge), and at a window's end builds its [`WindowReport`] and stores
//! it durably. [`convert`] turns wire samples into diagnosis input.
//!
//! The clock is the collector's: a tick's time is when it runs (never before the last tick),
//! and a sample counts with its own timestamp only within [`SKEW_BUDGET_MS`] of when it arrived
//! ([`analysis_time`]); a node whose clock is off by more is re-stamped with its measured skew
//! (counted as `clock_skew`), and a sample that is not live (replayed from a spool) leaves the
//! node at its last live one. So no agent's clock, a day ahead or a year behind, can stop the
//! ticks, hold a window open or bend another node's rates.

pub mod convert;
mod kept;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bakery_diagnosis::{
    Config, Detector, Evaluation, NodeSample, Relay, Tick, Window, WindowReport, WorkloadRef, WorkloadUnderTest,
};
use tokio::sync::{Mutex, watch};

pub use convert::{AnalysisTime, SKEW_BUDGET_MS, analysis_time, node_sample};
use convert::{Latest, latest_samples};
use kept::KeptTicks;

use crate::error::{Error, Result};
use crate::kube::{ClusterView, KubeMode, KubeWatch};
use crate::state::Shared;
use crate::store::window_reports::{ReportStore, StoredReport};
use crate::windows::{
    DEFAULT_WINDOW_INTERVAL_MS, IntervalOverride, OpenWindow, SurgeDetector, SurgeEvent, Traffic, UnderTest,
    total_traffic, traffic_by_workload, workload_under_test,
};

/// Memory budget of the kept ticks, in pod samples (64 bytes each as `kept.rs` keeps them, the
/// strings once: about 13 MiB).
/// Over it, every second tick is dropped: a long window's report keeps its whole span at a
/// coarser step (5 nodes x 30 pods at 250 ms: 250 ms for the first ~5 minutes, then 500 ms, ...).
const MAX_KEPT_POD_SAMPLES: usize = 200_000;
/// Ticks kept before a window opens: baseline for "rose most" and detector warm-up.
const PRE_WINDOW_MS: i64 = 30_000;
/// The span over which traffic rates (surges, the busiest workload) are measured.
const RATE_SPAN_MS: i64 = 2_000;

/// How the analysis runs (collector flags).
#[derive(Debug, Clone)]
pub struct DiagnosisConfig {
    pub kube: KubeMode,
    /// `--window-interval`.
    pub window_interval_ms: u32,
    /// Open windows on traffic surges (`--no-auto-windows` turns it off).
    pub automatic_windows: bool,
    /// Evaluation period outside windows.
    pub tick: Duration,
    pub detector: Config,
}

impl Default for DiagnosisConfig {
    fn default() -> Self {
        DiagnosisConfig {
            kube: KubeMode::Disabled,
            window_interval_ms: DEFAULT_WINDOW_INTERVAL_MS,
            automatic_windows: true,
            tick: Duration::from_secs(1),
            detector: Config::default(),
        }
    }
}

/// What the live analysis shows now: the latest evaluation, the workload under test and the open
/// window. Named for the analysis so that it is not taken for a node's live state
/// ([`crate::nodes::LiveState`]: its latest sample and history).
#[derive(Debug, Clone, Default)]
pub struct AnalysisView {
    pub evaluation: Option<Evaluation>,
    pub workload: Option<WorkloadRef>,
    pub window: Option<OpenWindow>,
}

#[derive(Debug)]
struct Engine {
    detector: Detector,
    ticks: KeptTicks,
    evaluation: Option<Evaluation>,
    workload: Option<UnderTest>,
    window: Option<OpenWindow>,
    overrides: IntervalOverride,
    surge: SurgeDetector,
    /// The sequence number of each connected node's latest batch at the last tick.
    seen: HashMap<String, u64>,
    /// Each node's last live sample as the analysis took it, with the seq of its batch.
    fed: HashMap<String, (u64, NodeSample)>,
}

/// The analysis state shared by the task and the `Query` handlers.
#[derive(Debug)]
pub struct Diagnosis {
    shared: Arc<Shared>,
    config: DiagnosisConfig,
    kube: Option<KubeWatch>,
    reports: ReportStore,
    engine: Mutex<Engine>,
}

impl Diagnosis {
    pub fn new(
        shared: Arc<Shared>,
        config: DiagnosisConfig,
        kube: Option<KubeWatch>,
        reports: ReportStore,
    ) -> Result<Diagnosis> {
        let detector = Detector::new(config.detector.clone()).map_err(|e| Error::Config(e.to_string()))?;
        let engine = Engine {
            detector,
            ticks: KeptTicks::default(),
            evaluation: None,
            workload: None,
            window: None,
            overrides: IntervalOverride::default(),
            surge: SurgeDetector::default(),
            seen: HashMap::new(),
            fed: HashMap::new(),
        };
        Ok(Diagnosis { shared, config, kube, reports, engine: Mutex::new(engine) })
    }

    /// True when the collector watches a cluster.
    pub fn has_kubernetes(&self) -> bool {
        self.kube.is_some()
    }

    /// The cluster as the watches see it now (empty without a cluster).
    pub fn cluster(&self) -> ClusterView {
        self.kube.as_ref().map(KubeWatch::view).unwrap_or_default()
    }

    pub fn reports(&self) -> &ReportStore {
        &self.reports
    }

    pub async fn live(&self) -> AnalysisView {
        let engine = self.engine.lock().await;
        AnalysisView {
            evaluation: engine.evaluation.clone(),
            workload: engine.workload.as_ref().map(|w| w.workload.clone()),
            window: engine.window.clone(),
        }
    }

    /// Evaluates once now.
    pub async fn step(&self) -> Result<()> {
        let view = self.cluster();
        let now_ms = crate::now_ms();
        // Kubernetes' nodes stay in memory; nodes nobody streams for are forgotten after a while.
        self.shared.registry.set_cluster_nodes(view.roles.keys());
        self.shared.registry.forget_idle(now_ms);
        let latest = latest_samples(&self.shared);
        let mut engine = self.engine.lock().await;
        if latest.is_empty() {
            // No agent connected: nothing is live, so no verdict is either.
            engine.evaluation = None;
            engine.seen.clear();
            engine.fed.clear();
            return Ok(());
        }
        let new_data =
            latest.len() != engine.seen.len() || latest.iter().any(|l| engine.seen.get(&l.name) != Some(&l.seq));
        // Without new data only an open window needs ticks (to see traffic calm and close).
        if !new_data && engine.window.is_none() {
            return Ok(());
        }
        let last_ms = engine.ticks.newest_ms();
        let timestamp_ms = last_ms.map_or(now_ms, |last| now_ms.max(last));
        let nodes = self.live_nodes(&mut engine, latest, &view);
        if nodes.is_empty() {
            return Ok(()); // no node has a live sample yet
        }
        let mut tick = Tick { timestamp_ms, nodes, workload: None, window_open: engine.window.is_some() };
        self.choose_workload(&mut engine, &tick, &view);
        tick.workload = engine.workload.as_ref().map(|w| under_test(w, &tick, &view));
        let evaluation = engine.detector.observe(&tick).map_err(|e| Error::Config(format!("diagnosis: {e}")))?;
        engine.evaluation = Some(evaluation);
        engine.ticks.push(tick);
        let keep_from = match &engine.window {
            Some(window) => window.start_ms - PRE_WINDOW_MS,
            None => timestamp_ms - PRE_WINDOW_MS,
        };
        engine.ticks.drop_before(keep_from);
        if engine.ticks.pod_samples() > MAX_KEPT_POD_SAMPLES {
            engine.ticks.thin();
        }
        if engine.window.is_some() {
            let reason = window_reason(engine.window.as_ref());
            engine.overrides.apply(&self.shared.registry, self.config.window_interval_ms, &reason);
        }
        self.watch_for_surges(&mut engine, timestamp_ms).await
    }

    /// Each connected node's sample for this tick, at its analysis time ([`analysis_time`]): the
    /// latest one when it is live, else the node's last live one (which the detector's history
    /// does not take twice). Counts the samples re-stamped for their node's clock skew.
    fn live_nodes(&self, engine: &mut Engine, latest: Vec<Latest>, view: &ClusterView) -> Vec<NodeSample> {
        engine.seen = latest.iter().map(|l| (l.name.clone(), l.seq)).collect();
        let seen = &engine.seen;
        engine.fed.retain(|name, _| seen.contains_key(name));
        let mut nodes = Vec::with_capacity(latest.len());
        let mut restamped = 0u64;
        for node in latest {
            let fresh = engine.fed.get(&node.name).is_none_or(|(seq, _)| *seq != node.seq);
            match analysis_time(node.received_ms, node.sample.timestamp_ms, node.skew_ms) {
                Some(stamp) => {
                    if stamp.restamped && fresh {
                        restamped += 1;
                    }
                    let mut sample = node_sample(&node.name, view.role(&node.name), &node.sample, &node.pods, view);
                    sample.timestamp_ms = stamp.at_ms;
                    engine.fed.insert(node.name, (node.seq, sample.clone()));
                    nodes.push(sample);
                }
                None => {
                    if let Some((_, last_live)) = engine.fed.get(&node.name) {
                        nodes.push(last_live.clone());
                    }
                }
            }
        }
        self.shared.refusals.count(crate::ingest::IngestRefusal::ClockSkew, restamped);
        nodes
    }

    /// The workload under test: the window's (given, or inferred once traffic shows which rose
    /// most behind an entry Service, through any in-cluster proxy), else the one behind an entry
    /// Service with the most traffic now (kept until another has twice as much).
    fn choose_workload(&self, engine: &mut Engine, tick: &Tick, view: &ClusterView) {
        let Some(earlier) = engine.ticks.before(tick.timestamp_ms - RATE_SPAN_MS) else { return };
        let now = traffic_by_workload(&earlier, tick);
        let entries = entry_workloads(view);
        if let Some(window) = &mut engine.window {
            if !window.workload_given && tick.timestamp_ms - window.start_ms >= RATE_SPAN_MS {
                let before = rates_before(&engine.ticks, window.start_ms);
                if let Some(choice) = workload_under_test(&before, &now, &entries) {
                    window.workload = Some(choice.workload);
                    window.relay = choice.relay;
                }
            }
            if let Some(workload) = window.workload.clone() {
                engine.workload = Some(UnderTest { workload, relay: window.relay.clone() });
                return;
            }
        }
        let Some(busiest) = workload_under_test(&BTreeMap::new(), &now, &entries) else { return };
        let rate = |w: &WorkloadRef| now.get(w).map_or(0.0, |t| t.total());
        let current = engine.workload.as_ref().map_or(0.0, |w| rate(&w.workload));
        if engine.workload.is_none() || rate(&busiest.workload) > 2.0 * current {
            engine.workload = Some(busiest);
        }
    }

    async fn watch_for_surges(&self, engine: &mut Engine, at_ms: i64) -> Result<()> {
        if !self.config.automatic_windows {
            return Ok(());
        }
        let Some(earlier) = engine.ticks.before(at_ms - RATE_SPAN_MS) else { return Ok(()) };
        let Some(latest) = engine.ticks.newest() else { return Ok(()) };
        let Some(rate) = total_traffic(&earlier, latest) else { return Ok(()) };
        match engine.surge.observe(at_ms, rate) {
            Some(SurgeEvent::Started) if engine.window.is_none() => {
                let window = OpenWindow::new(None, None, true, at_ms);
                tracing::info!(window = %window.id, rate_bps = rate, "traffic surge: automatic window opened");
                self.open(engine, window);
            }
            Some(SurgeEvent::Ended) if engine.window.as_ref().is_some_and(|w| w.automatic) => {
                tracing::info!("traffic calmed: automatic window closed");
                self.close(engine, at_ms).await?;
            }
            _ => {}
        }
        Ok(())
    }

    fn open(&self, engine: &mut Engine, window: OpenWindow) {
        let reason = window_reason(Some(&window));
        engine.window = Some(window);
        engine.overrides.apply(&self.shared.registry, self.config.window_interval_ms, &reason);
    }

    async fn close(&self, engine: &mut Engine, now_ms: i64) -> Result<Option<StoredReport>> {
        let Some(window) = engine.window.take() else { return Ok(None) };
        engine.overrides.restore(&self.shared.registry, &format!("load-test window {} closed", window.id));
        let end_ms = now_ms.max(window.start_ms + 1);
        let spec = Window {
            name: window.name.clone(),
            start_ms: window.start_ms,
            end_ms,
            automatic: window.automatic,
            workload: window.workload.clone(),
        };
        let ticks: Vec<Tick> = engine.ticks.all();
        let config = self.config.detector.clone();
        let notes = self.cluster().notes;
        let reports = self.reports.clone();
        let id = window.id.clone();
        let stored = tokio::task::spawn_blocking(move || -> Result<StoredReport> {
            let report =
                WindowReport::build(spec, &ticks, &config).map_err(|e| Error::Config(e.to_string()))?.with_notes(notes);
            let stored = StoredReport { id, report };
            reports.put(&stored)?;
            Ok(stored)
        })
        .await
        .map_err(|e| Error::Config(format!("building a report panicked: {e}")))??;
        tracing::info!(window = %stored.id, verdicts = stored.report.verdicts.len(), "window report stored");
        Ok(Some(stored))
    }

    /// Opens an explicit window now (sample time of the newest tick, else the wall clock).
    /// `workload` is `namespace/name` (or `Kind/namespace/name`).
    pub async fn start_window(&self, name: Option<String>, workload: Option<&str>) -> Result<OpenWindow> {
        let workload = match workload.map(str::trim).filter(|w| !w.is_empty()) {
            None => None,
            Some(text) => Some(self.resolve_workload(text)?),
        };
        let mut engine = self.engine.lock().await;
        if let Some(open) = &engine.window {
            return Err(Error::Config(format!("window {} ({}) is already open; stop it first", open.id, open.name)));
        }
        let start_ms = collector_time(&engine);
        let window = OpenWindow::new(name, workload, false, start_ms);
        if let Some(workload) = window.workload.clone() {
            engine.workload = Some(UnderTest { workload, relay: None });
        }
        tracing::info!(window = %window.id, name = %window.name, "window opened");
        self.open(&mut engine, window.clone());
        Ok(window)
    }

    /// Closes the open window and stores its report; `None` when no window was open.
    pub async fn stop_window(&self) -> Result<Option<StoredReport>> {
        let mut engine = self.engine.lock().await;
        let now_ms = collector_time(&engine);
        self.close(&mut engine, now_ms).await
    }

    fn resolve_workload(&self, text: &str) -> Result<WorkloadRef> {
        let parts: Vec<&str> = text.split('/').collect();
        match parts.as_slice() {
            [kind, namespace, name] => Ok(WorkloadRef::new(*kind, *namespace, *name)),
            [namespace, name] => Ok(self
                .cluster()
                .find_workload(namespace, name)
                .unwrap_or_else(|| WorkloadRef::new("Deployment", *namespace, *name))),
            _ => Err(Error::Config(format!("workload {text:?} is not NAMESPACE/NAME"))),
        }
    }

    /// Evaluates every `config.tick` (the window interval while a window is open) until shutdown.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            let window_open = self.engine.lock().await.window.is_some();
            let period = if window_open {
                Duration::from_millis(u64::from(self.config.window_interval_ms)).min(self.config.tick)
            } else {
                self.config.tick
            };
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = shutdown.wait_for(|down| *down) => break,
            }
            if let Err(error) = self.step().await {
                tracing::warn!(%error, "live analysis step failed");
            }
        }
        // A window open at shutdown still gets its report.
        let mut engine = self.engine.lock().await;
        let now_ms = collector_time(&engine);
        if let Err(error) = self.close(&mut engine, now_ms).await {
            tracing::warn!(%error, "the open window's report could not be stored at shutdown");
        }
    }
}

/// The collector's clock, never before the last tick (ticks never go back).
fn collector_time(engine: &Engine) -> i64 {
    let now_ms = crate::now_ms();
    engine.ticks.newest_ms().map_or(now_ms, |t| now_ms.max(t))
}

fn window_reason(window: Option<&OpenWindow>) -> String {
    window.map_or_else(|| "load-test window open".to_string(), |w| format!("load-test window {} open", w.id))
}

/// Per-workload traffic over the `RATE_SPAN_MS` before `start_ms`.
fn rates_before(ticks: &KeptTicks, start_ms: i64) -> BTreeMap<WorkloadRef, Traffic> {
    match (ticks.before(start_ms - RATE_SPAN_MS), ticks.before(start_ms)) {
        (Some(a), Some(b)) => traffic_by_workload(&a, &b),
        _ => BTreeMap::new(),
    }
}

/// The workloads a load test can come in through: those a LoadBalancer or NodePort Service selects.
fn entry_workloads(view: &ClusterView) -> BTreeSet<WorkloadRef> {
    view.services
        .iter()
        .filter(|(_, services)| services.iter().any(|s| s.service_type.is_entry()))
        .map(|(w, _)| w.clone())
        .collect()
}

/// A workload's ready endpoints per node from its EndpointSlices, else from its ready pods.
fn endpoints_of(workload: &WorkloadRef, tick: &Tick, view: &ClusterView) -> BTreeMap<String, u32> {
    match view.endpoints.get(workload) {
        Some(endpoints) => endpoints.clone(),
        None => WorkloadUnderTest::from_ready_pods(workload.clone(), &tick.nodes).ready_endpoints,
    }
}

/// The workload under test with its endpoints, the Service the load enters through (the relay's
/// when an in-cluster proxy sits in front) and the relay.
fn under_test(choice: &UnderTest, tick: &Tick, view: &ClusterView) -> WorkloadUnderTest {
    let entry = choice.relay.as_ref().unwrap_or(&choice.workload);
    WorkloadUnderTest {
        workload: choice.workload.clone(),
        ready_endpoints: endpoints_of(&choice.workload, tick, view),
        service: view.entry_service(entry).cloned(),
        relay: choice
            .relay
            .as_ref()
            .map(|r| Relay { workload: r.clone(), ready_endpoints: endpoints_of(r, tick, view) }),
    }
}
