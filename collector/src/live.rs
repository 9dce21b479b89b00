//! Live analysis: a task that, every tick (1 s, or the window interval while a window is open),
//! turns each node's latest sample plus the cluster knowledge into a diagnosis [`Tick`], runs the
//! [`Detector`] (sliding 10 s live view, 2 s detection), keeps the live verdicts, opens and closes
//! windows (explicit or on a surge), and at a window's end builds its [`WindowReport`] and stores
//! it durably. [`node_sample`] (wire sample -> diagnosis input) is pure and tested with data.
//!
//! The clock is the collector's: a tick's time is when it runs (never before the last tick),
//! and a sample counts with its own timestamp only within [`SKEW_BUDGET_MS`] of when it arrived
//! ([`analysis_time`]); a node whose clock is off by more is re-stamped with its measured skew
//! (counted as `clock_skew`), and a sample that is not live (replayed from a spool) leaves the
//! node at its last live one. So no agent's clock, a day ahead or a year behind, can stop the
//! ticks, hold a window open or bend another node's rates.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bakery_diagnosis::{
    Config, CpuFrequency, CpuJiffies, Detector, Evaluation, NicBytes, NodeMemory, NodeRole, NodeSample, PodSample,
    PressureTotals, Relay, ThrottleFlags, Tick, Window, WindowReport, WorkloadRef, WorkloadUnderTest,
};
use bakery_proto::v1::{InterfaceKind, NetInterface, Sample};
use prost::Message;
use tokio::sync::{Mutex, watch};

use crate::error::{Error, Result};
use crate::ingest::Shared;
use crate::kube::{ClusterView, KubeMode, KubeWatch};
use crate::store::reports::{ReportStore, StoredReport};
use crate::store::{PodRecord, StoredBatch};
use crate::windows::{
    DEFAULT_WINDOW_INTERVAL_MS, IntervalOverride, OpenWindow, SurgeDetector, SurgeEvent, Traffic, UnderTest,
    total_traffic, traffic_by_workload, workload_under_test,
};

/// Memory budget of the kept ticks, in pod samples (a few hundred bytes each: about 50 MiB).
/// Over it, every second tick is dropped: a long window's report keeps its whole span at a
/// coarser step (5 nodes x 30 pods at 250 ms: 250 ms for the first ~5 minutes, then 500 ms, ...).
const MAX_KEPT_POD_SAMPLES: usize = 200_000;
/// Ticks kept before a window opens: baseline for "rose most" and detector warm-up.
const PRE_WINDOW_MS: i64 = 30_000;
/// The span over which traffic rates (surges, the busiest workload) are measured.
const RATE_SPAN_MS: i64 = 2_000;
/// A sample's own timestamp is used by the analysis only within this much of its arrival.
pub const SKEW_BUDGET_MS: i64 = 5_000;

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

/// What the live view shows now.
#[derive(Debug, Clone, Default)]
pub struct LiveSnapshot {
    pub evaluation: Option<Evaluation>,
    pub workload: Option<WorkloadRef>,
    pub window: Option<OpenWindow>,
}

#[derive(Debug)]
struct Engine {
    detector: Detector,
    ticks: VecDeque<Tick>,
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
            ticks: VecDeque::new(),
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

    pub async fn live(&self) -> LiveSnapshot {
        let engine = self.engine.lock().await;
        LiveSnapshot {
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
        let last_ms = engine.ticks.back().map(|t| t.timestamp_ms);
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
        engine.ticks.push_back(tick);
        let keep_from = match &engine.window {
            Some(window) => window.start_ms - PRE_WINDOW_MS,
            None => timestamp_ms - PRE_WINDOW_MS,
        };
        while engine.ticks.front().is_some_and(|t| t.timestamp_ms < keep_from) {
            engine.ticks.pop_front();
        }
        if kept_pod_samples(&engine.ticks) > MAX_KEPT_POD_SAMPLES {
            thin(&mut engine.ticks);
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
        let Some(earlier) = tick_before(&engine.ticks, tick.timestamp_ms - RATE_SPAN_MS) else { return };
        let now = traffic_by_workload(earlier, tick);
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
        let Some(latest) = engine.ticks.back() else { return Ok(()) };
        let Some(earlier) = tick_before(&engine.ticks, at_ms - RATE_SPAN_MS) else { return Ok(()) };
        let Some(rate) = total_traffic(earlier, latest) else { return Ok(()) };
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
        let ticks: Vec<Tick> = engine.ticks.iter().cloned().collect();
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
    engine.ticks.back().map_or(now_ms, |t| now_ms.max(t.timestamp_ms))
}

/// When the analysis places a sample, and whether that is not its own timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnalysisTime {
    pub at_ms: i64,
    /// Re-stamped with its node's measured skew: its own clock is off by more than the budget.
    pub restamped: bool,
}

/// The time the analysis gives a sample stamped `sample_ms` by its node that arrived at
/// `received_ms` (collector time), the node's clock being measured `skew_ms` behind the
/// collector's (receive minus sample time, the minimum over the last minutes): its own time
/// when that is within [`SKEW_BUDGET_MS`] of its arrival; its own time corrected by the skew
/// when that is; else `None`: the sample is not live (replayed from a spool after an outage, or
/// its clock just jumped) and the analysis does not take it.
pub fn analysis_time(received_ms: i64, sample_ms: i64, skew_ms: Option<i64>) -> Option<AnalysisTime> {
    let within = |at_ms: i64| received_ms.saturating_sub(at_ms).saturating_abs() <= SKEW_BUDGET_MS;
    if within(sample_ms) {
        return Some(AnalysisTime { at_ms: sample_ms, restamped: false });
    }
    let corrected = sample_ms.saturating_add(skew_ms?);
    within(corrected).then_some(AnalysisTime { at_ms: corrected, restamped: true })
}

fn window_reason(window: Option<&OpenWindow>) -> String {
    window.map_or_else(|| "load-test window open".to_string(), |w| format!("load-test window {} open", w.id))
}

fn kept_pod_samples(ticks: &VecDeque<Tick>) -> usize {
    ticks.iter().map(|t| t.nodes.len() + t.nodes.iter().map(|n| n.pods.len()).sum::<usize>()).sum()
}

/// Drops every second tick, keeping the newest.
fn thin(ticks: &mut VecDeque<Tick>) {
    let last = ticks.len().saturating_sub(1);
    let mut index = 0;
    ticks.retain(|_| {
        let keep = index % 2 == last % 2;
        index += 1;
        keep
    });
}

/// The newest tick at or before `at_ms`.
fn tick_before(ticks: &VecDeque<Tick>, at_ms: i64) -> Option<&Tick> {
    ticks.iter().rev().find(|t| t.timestamp_ms <= at_ms)
}

/// Per-workload traffic over the `RATE_SPAN_MS` before `start_ms`.
fn rates_before(ticks: &VecDeque<Tick>, start_ms: i64) -> BTreeMap<WorkloadRef, Traffic> {
    match (tick_before(ticks, start_ms - RATE_SPAN_MS), tick_before(ticks, start_ms)) {
        (Some(a), Some(b)) => traffic_by_workload(a, b),
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

/// A connected node's latest sample as it arrived.
struct Latest {
    name: String,
    seq: u64,
    received_ms: i64,
    skew_ms: Option<i64>,
    sample: Sample,
    pods: HashMap<u32, PodRecord>,
}

/// Every connected node's latest sample.
fn latest_samples(shared: &Shared) -> Vec<Latest> {
    let mut nodes = Vec::new();
    for node in shared.registry.all() {
        let (seq, received_ms, skew_ms, bytes, pods) = {
            let live = node.live();
            if live.connected.is_none() {
                continue;
            }
            let Some(latest) = live.latest() else { continue };
            (latest.seq, latest.received_ms, live.clock_skew_ms(), latest.bytes.clone(), live.pods.clone())
        };
        let Some(sample) = StoredBatch::decode(bytes).ok().and_then(|mut b| b.samples.pop()) else { continue };
        nodes.push(Latest { name: node.name.clone(), seq, received_ms, skew_ms, sample, pods });
    }
    nodes
}

/// Interfaces that are not the node's own wire, by name: loopback, pod veths, bridges and
/// overlays. Their bytes are pod or forwarded traffic counted elsewhere (or twice). Used only for
/// samples from agents that do not classify their interfaces ([`node_wire`]).
pub fn is_physical_interface(name: &str) -> bool {
    const VIRTUAL: [&str; 14] = [
        "lo",
        "veth",
        "cni",
        "flannel",
        "cali",
        "docker",
        "br-",
        "vxlan",
        "tunl",
        "kube-",
        "cilium",
        "lxc",
        "virbr",
        "tailscale",
    ];
    !VIRTUAL.iter().any(|prefix| name.starts_with(prefix))
}

/// The node's own wire among its interfaces, each counted once: the physical interfaces, with a
/// bond counted instead of its slaves (its counters are theirs summed); bridges, VLANs, tunnels
/// and pod veths are left out because their bytes also cross one of those. A node without any
/// physical interface is a container (kind, k3d, LXC, the demo): its wire is its veths that lead
/// to no pod. Samples whose agent did not classify any interface fall back to the names.
pub fn node_wire(interfaces: &[NetInterface]) -> Vec<&NetInterface> {
    let kind = |i: &NetInterface| InterfaceKind::try_from(i.kind).unwrap_or(InterfaceKind::Unspecified);
    if interfaces.iter().all(|i| kind(i) == InterfaceKind::Unspecified) {
        return interfaces.iter().filter(|i| is_physical_interface(&i.name)).collect();
    }
    let bonds: std::collections::HashSet<&str> =
        interfaces.iter().filter(|i| kind(i) == InterfaceKind::Bond).map(|i| i.name.as_str()).collect();
    let physical: Vec<&NetInterface> = interfaces
        .iter()
        .filter(|i| match kind(i) {
            InterfaceKind::Bond => true,
            InterfaceKind::Physical => !bonds.contains(i.master.as_str()),
            _ => false,
        })
        .collect();
    if !physical.is_empty() {
        return physical;
    }
    interfaces
        .iter()
        .filter(|i| match kind(i) {
            InterfaceKind::Veth => true,
            InterfaceKind::Unspecified => is_physical_interface(&i.name),
            _ => false,
        })
        .collect()
}

/// Whether a temperature sensor measures the CPU or SoC (`thermal_zone*/<type>` or
/// `hwmon*/<name>/temp*`, as the agent names them). A drive, Wi-Fi card or GPU at 80 C says
/// nothing about the CPU throttling, so only these count as the node's temperature.
pub fn is_cpu_sensor(sensor: &str) -> bool {
    const CPU: [&str; 8] = ["cpu", "soc", "x86_pkg_temp", "coretemp", "k10temp", "k8temp", "zenpower", "tctl"];
    let mut parts = sensor.split('/');
    let kind = parts.nth(1).unwrap_or(sensor).to_ascii_lowercase();
    CPU.iter().any(|needle| kind.contains(needle))
}

/// One agent sample as diagnosis input: node counters, and each pod with the identity the
/// collector numbered it by and what the cluster says about it (without a cluster: named by
/// UID, ready, no workload).
pub fn node_sample(
    name: &str,
    role: NodeRole,
    sample: &Sample,
    pods: &HashMap<u32, PodRecord>,
    view: &ClusterView,
) -> NodeSample {
    let cpu = sample
        .cpu_total
        .as_ref()
        .map(|c| CpuJiffies {
            user: c.user,
            nice: c.nice,
            system: c.system,
            idle: c.idle,
            iowait: c.iowait,
            irq: c.irq,
            softirq: c.softirq,
            steal: c.steal,
        })
        .unwrap_or_default();
    let nics = node_wire(&sample.interfaces)
        .into_iter()
        .filter_map(|i| i.counters.as_ref().map(|c| NicBytes::new(i.name.clone(), c.rx_bytes, c.tx_bytes)))
        .collect();
    let memory = sample
        .memory
        .as_ref()
        .map(|m| NodeMemory { total_bytes: m.total_bytes, available_bytes: m.available_bytes })
        .unwrap_or_default();
    let pressure = (!sample.pressure.is_empty()).then(|| {
        let total = |resource: &str, kind: &str| {
            sample.pressure.iter().find(|p| p.resource == resource && p.kind == kind).map_or(0, |p| p.total_us)
        };
        PressureTotals {
            cpu_some_us: total("cpu", "some"),
            memory_some_us: total("memory", "some"),
            memory_full_us: total("memory", "full"),
            io_some_us: total("io", "some"),
        }
    });
    let temperature_millicelsius =
        sample.temperatures.iter().filter(|t| is_cpu_sensor(&t.sensor)).map(|t| t.millidegrees_celsius).max();
    let cpu_frequency = (!sample.cpu_frequencies.is_empty()).then(|| CpuFrequency {
        current_khz: sample.cpu_frequencies.iter().map(|f| f.current_khz).min().unwrap_or_default(),
        max_khz: sample.cpu_frequencies.iter().map(|f| f.max_khz).max().unwrap_or_default(),
    });
    let throttle = sample.throttle.as_ref().and_then(|t| t.now.as_ref()).map(|f| ThrottleFlags {
        under_voltage: f.under_voltage,
        arm_frequency_capped: f.arm_frequency_capped,
        throttled: f.throttled,
        soft_temperature_limit: f.soft_temperature_limit,
    });
    let mut seen = std::collections::HashSet::new();
    let pods = sample
        .pods
        .iter()
        .filter_map(|pod| {
            let record = pods.get(&pod.pod_ref)?;
            if !seen.insert(record.uid.clone()) {
                return None;
            }
            let meta = view.pods_by_uid.get(&record.uid);
            let network = pod.network.unwrap_or_default();
            Some(PodSample {
                uid: record.uid.clone(),
                name: meta.map_or_else(|| record.uid.clone(), |m| m.name.clone()),
                namespace: meta.map(|m| m.namespace.clone()).unwrap_or_default(),
                workload: meta.and_then(|m| m.workload.clone()),
                ready: meta.is_none_or(|m| m.ready),
                host_network: record.host_network,
                rx_bytes: network.rx_bytes,
                tx_bytes: network.tx_bytes,
                established_inbound: pod.tcp.as_ref().map_or(0, |t| t.established_inbound),
                passive_opens: pod.tcp.as_ref().map_or(0, |t| t.passive_opens_total),
                // Known once the agent has read the pod's socket tables.
                inbound_peers: pod.tcp.as_ref().filter(|t| t.detail_age_ms.is_some()).map(|t| t.inbound_peers),
                cpu_usage_us: pod.cpu_usage_us,
                memory_working_set_bytes: pod.memory_working_set_bytes,
            })
        })
        .collect();
    NodeSample {
        name: name.to_string(),
        role,
        timestamp_ms: sample.timestamp_ms,
        clock_ticks_per_second: 100,
        cpu,
        nics,
        memory,
        pressure,
        temperature_millicelsius,
        cpu_frequency,
        throttle,
        pods,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::PodMeta;
    use bakery_proto::v1::{CpuTimes, NetCounters, NetInterface, PodSample as WirePod, TcpConnections, Temperature};

    fn counters(rx: u64, tx: u64) -> Option<NetCounters> {
        Some(NetCounters { rx_bytes: rx, tx_bytes: tx, ..NetCounters::default() })
    }

    fn sample() -> Sample {
        Sample {
            timestamp_ms: 1_000,
            cpu_total: Some(CpuTimes { cpu: -1, user: 10, softirq: 3, idle: 90, ..CpuTimes::default() }),
            interfaces: vec![
                NetInterface { name: "eth0".into(), counters: counters(1000, 500), ..NetInterface::default() },
                NetInterface { name: "lo".into(), counters: counters(7, 7), ..NetInterface::default() },
                NetInterface { name: "veth12ab".into(), counters: counters(300, 300), ..NetInterface::default() },
                NetInterface { name: "cni0".into(), counters: counters(300, 300), ..NetInterface::default() },
            ],
            temperatures: vec![
                Temperature { sensor: "thermal_zone0/cpu-thermal".into(), millidegrees_celsius: 61_000 },
                Temperature { sensor: "hwmon1/coretemp/temp2".into(), millidegrees_celsius: 82_500 },
                Temperature { sensor: "hwmon3/nvme/temp1".into(), millidegrees_celsius: 84_000 },
            ],
            pods: vec![
                WirePod {
                    pod_ref: 1,
                    network: counters(300, 300),
                    tcp: Some(TcpConnections { established_inbound: 4, ..TcpConnections::default() }),
                    cpu_usage_us: 5,
                    ..WirePod::default()
                },
                WirePod { pod_ref: 9, ..WirePod::default() },
            ],
            ..Sample::default()
        }
    }

    fn records() -> HashMap<u32, PodRecord> {
        HashMap::from([(1, PodRecord { uid: "uid-1".into(), ..PodRecord::default() })])
    }

    #[test]
    fn thinning_halves_the_ticks_and_keeps_the_newest() {
        let tick = |t: i64| Tick { timestamp_ms: t, nodes: vec![], workload: None, window_open: false };
        let mut ticks: VecDeque<Tick> = (0..5).map(tick).collect();
        thin(&mut ticks);
        assert_eq!(ticks.iter().map(|t| t.timestamp_ms).collect::<Vec<_>>(), [0, 2, 4]);
        let mut ticks: VecDeque<Tick> = (0..4).map(tick).collect();
        thin(&mut ticks);
        assert_eq!(ticks.iter().map(|t| t.timestamp_ms).collect::<Vec<_>>(), [1, 3]);
    }

    #[test]
    fn a_samples_own_time_counts_only_within_the_skew_budget_of_its_arrival() {
        let at = |at_ms, restamped| Some(AnalysisTime { at_ms, restamped });
        let now = 1_000_000_000;
        let day = 86_400_000;
        // (received, sample time, measured skew, analysis time)
        let table = [
            // a good clock, even 5 s off either way: its own time
            (now, now - 40, Some(40), at(now - 40, false)),
            (now, now + SKEW_BUDGET_MS, Some(-5_000), at(now + SKEW_BUDGET_MS, false)),
            (now, now - SKEW_BUDGET_MS, None, at(now - SKEW_BUDGET_MS, false)),
            // a clock a day ahead: re-stamped by its measured skew, near its arrival
            (now, now + day, Some(-day + 30), at(now + 30, true)),
            // ... and before any skew is measured, not taken
            (now, now + day, None, None),
            // a year behind, consistently: re-stamped
            (now, now - 365 * day, Some(365 * day - 20), at(now - 20, true)),
            // a batch replayed from a spool after a 10 minute outage, good clock: not live
            (now, now - 600_000, Some(15), None),
            // a clock that jumped a day ahead while the measured skew is still ~0: not taken
            (now, now + day, Some(10), None),
            // nothing overflows
            (i64::MAX, i64::MIN, Some(i64::MAX), None),
        ];
        for (received, sample, skew, expected) in table {
            assert_eq!(analysis_time(received, sample, skew), expected, "{received} {sample} {skew:?}");
        }
    }

    #[test]
    fn only_physical_interfaces_count_as_nic_bytes() {
        let node = node_sample("pi-1", NodeRole::Worker, &sample(), &records(), &ClusterView::default());
        assert_eq!(node.nics, [NicBytes::new("eth0", 1000, 500)]);
        assert_eq!(node.cpu.softirq, 3);
        assert_eq!(node.temperature_millicelsius, Some(82_500), "the hottest CPU sensor, not the drive");
    }

    #[test]
    fn without_a_cluster_pods_are_named_by_uid() {
        let node = node_sample("pi-1", NodeRole::Unknown, &sample(), &records(), &ClusterView::default());
        assert_eq!(node.pods.len(), 1, "a pod_ref without identity is skipped");
        let pod = &node.pods[0];
        assert_eq!((pod.name.as_str(), pod.workload.as_ref(), pod.ready), ("uid-1", None, true));
        assert_eq!((pod.rx_bytes, pod.established_inbound), (300, 4));
    }

    #[test]
    fn with_a_cluster_pods_carry_name_workload_and_readiness() {
        let web = WorkloadRef::new("Deployment", "shop", "web");
        let mut view = ClusterView::default();
        view.pods_by_uid.insert(
            "uid-1".into(),
            PodMeta {
                uid: "uid-1".into(),
                namespace: "shop".into(),
                name: "web-abc".into(),
                node_name: "pi-1".into(),
                ready: false,
                host_network: false,
                labels: Default::default(),
                workload: Some(web.clone()),
            },
        );
        let node = node_sample("pi-1", NodeRole::Worker, &sample(), &records(), &view);
        let pod = &node.pods[0];
        assert_eq!((pod.name.as_str(), pod.namespace.as_str(), pod.ready), ("web-abc", "shop", false));
        assert_eq!(pod.workload, Some(web));
    }
}
