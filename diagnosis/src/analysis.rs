//! Observed shares over one span: for every node and signal the value, the observed share, the share
//! normalised by the node's expected share, and per signal the max/mean and Jain's index.
//!
//! # Expected share and peers
//!
//! A node's expected share is its share of the workload's ready endpoints, `q = e / E`: a node is
//! compared with its expected share, not with 1/n, since placement is rarely even. The nodes that
//! hold endpoints are the *serving nodes*; they are the peer group of every comparison:
//!
//! * share signals (bytes, connections, CPU) are summed over the serving nodes only, and a node's
//!   normalised share is `value / (max(e, 1) * R)` with `R = sum / E`, the load per endpoint. For a
//!   serving node that is `observed share / q`; a node without endpoints is measured in "endpoints' worth
//!   of load" (its expected workload load is zero, so any load it carries is compared with one endpoint);
//! * level signals (temperature, frequency, stall fractions) are normalised by the serving nodes' mean;
//! * max/mean and Jain's index are taken over the serving nodes' normalised values.
//!
//! A node without endpoints never enters a sum, a mean or a median, so adding, removing or renaming such
//! a node cannot change any other node's figures (property-tested). Without a workload (no cluster
//! knowledge) every node is a serving node with one endpoint, and only node-level causes are diagnosed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::entry::EntryModel;
use crate::history::{History, NodePoint, PodMeta, SpanView, join};
use crate::input::{NodeRole, ThrottleFlags, WorkloadRef, WorkloadUnderTest};
use crate::stats::{jain_index, max_over_mean, median, ordered_sum};

/// A per-node signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Signal {
    /// Bytes received by the workload's pods on the node, per second.
    PodRx,
    /// Bytes sent by the workload's pods, per second.
    PodTx,
    /// Pod rx + tx: the traffic-skew flag is raised on this.
    PodTraffic,
    /// Mean established inbound connections to the workload's pods.
    Connections,
    /// CPU of the workload's pods, cores.
    PodCpu,
    /// Bytes received on the physical NICs, per second.
    NicRx,
    NicTx,
    /// NIC rx + tx.
    Nic,
    /// NIC bytes forwarded for pods elsewhere: in each direction, NIC bytes minus every non-hostNetwork
    /// pod's bytes; twice the smaller direction, because a forwarded byte goes in and out again while
    /// a node's own one-way traffic (NFS, host processes) does not. The ingress flag is raised on
    /// this.
    ForwardedNic,
    /// Busy CPU including irq and softirq, cores.
    Cpu,
    /// irq + softirq, cores (packet forwarding, NAT, conntrack).
    Softirq,
    /// Process-context CPU (user, nice, system) not accounted to any pod, cores.
    UnattributedCpu,
    /// Growth of used memory (MemTotal - MemAvailable), bytes per second.
    MemoryGrowth,
    /// Used memory as a fraction of MemTotal, at the end of the span.
    MemoryUsed,
    /// Fraction of the span in which some task stalled on CPU (PSI).
    CpuPressure,
    /// Fraction of the span in which some task stalled on memory (PSI).
    MemoryPressure,
    /// Fraction of the span in which some task stalled on IO (PSI).
    IoPressure,
    /// Hottest temperature in the span, degrees Celsius.
    Temperature,
    /// Mean current/maximum CPU frequency over the span.
    Frequency,
    /// Fraction of samples with a thermal throttle bit set (throttled, soft limit, frequency capped).
    Throttled,
}

/// How a signal is compared across nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignalKind {
    /// Additive load of the workload's pods: expected to follow the endpoint share.
    WorkloadShare,
    /// Additive load of the node: expected to follow the endpoint share among serving nodes.
    NodeShare,
    /// An intensive level: compared with the serving nodes' mean.
    Level,
}

impl Signal {
    pub const ALL: [Signal; 20] = [
        Signal::PodRx,
        Signal::PodTx,
        Signal::PodTraffic,
        Signal::Connections,
        Signal::PodCpu,
        Signal::NicRx,
        Signal::NicTx,
        Signal::Nic,
        Signal::ForwardedNic,
        Signal::Cpu,
        Signal::Softirq,
        Signal::UnattributedCpu,
        Signal::MemoryGrowth,
        Signal::MemoryUsed,
        Signal::CpuPressure,
        Signal::MemoryPressure,
        Signal::IoPressure,
        Signal::Temperature,
        Signal::Frequency,
        Signal::Throttled,
    ];

    pub fn kind(self) -> SignalKind {
        match self {
            Self::PodRx | Self::PodTx | Self::PodTraffic | Self::Connections | Self::PodCpu => {
                SignalKind::WorkloadShare
            }
            Self::NicRx
            | Self::NicTx
            | Self::Nic
            | Self::ForwardedNic
            | Self::Cpu
            | Self::Softirq
            | Self::UnattributedCpu
            | Self::MemoryGrowth => SignalKind::NodeShare,
            Self::MemoryUsed
            | Self::CpuPressure
            | Self::MemoryPressure
            | Self::IoPressure
            | Self::Temperature
            | Self::Frequency
            | Self::Throttled => SignalKind::Level,
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            Self::PodRx
            | Self::PodTx
            | Self::PodTraffic
            | Self::NicRx
            | Self::NicTx
            | Self::Nic
            | Self::ForwardedNic
            | Self::MemoryGrowth => "B/s",
            Self::Connections => "conns",
            Self::PodCpu | Self::Cpu | Self::Softirq | Self::UnattributedCpu => "cores",
            Self::Temperature => "C",
            Self::MemoryUsed
            | Self::CpuPressure
            | Self::MemoryPressure
            | Self::IoPressure
            | Self::Frequency
            | Self::Throttled => "fraction",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::PodRx => "pod-rx",
            Self::PodTx => "pod-tx",
            Self::PodTraffic => "pod-traffic",
            Self::Connections => "connections",
            Self::PodCpu => "pod-cpu",
            Self::NicRx => "nic-rx",
            Self::NicTx => "nic-tx",
            Self::Nic => "nic",
            Self::ForwardedNic => "forwarded-nic",
            Self::Cpu => "cpu",
            Self::Softirq => "softirq",
            Self::UnattributedCpu => "unattributed-cpu",
            Self::MemoryGrowth => "memory-growth",
            Self::MemoryUsed => "memory-used",
            Self::CpuPressure => "cpu-pressure",
            Self::MemoryPressure => "memory-pressure",
            Self::IoPressure => "io-pressure",
            Self::Temperature => "temperature",
            Self::Frequency => "frequency",
            Self::Throttled => "throttled",
        }
    }
}

/// One node's value of one signal.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SignalValue {
    /// In [`Signal::unit`].
    pub value: f64,
    /// Fraction of the serving nodes' total (share signals only).
    pub share: Option<f64>,
    /// Share / expected share (share signals), or value / serving nodes' mean (levels).
    pub normalised: Option<f64>,
}

/// One pod's figures over the span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodFigures {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub workload: Option<WorkloadRef>,
    /// rx + tx bytes per second (0 for hostNetwork pods, whose counters are the node's).
    pub traffic_bps: f64,
    pub connections: f64,
    pub cpu_cores: f64,
    pub memory_working_set_bytes: u64,
    /// Fraction of the workload's traffic (workload pods only).
    pub traffic_share: Option<f64>,
    /// Connections it accepted in the span.
    #[serde(default)]
    pub accepted: f64,
    /// Distinct client addresses of its inbound connections at the end of the span, when known.
    #[serde(default)]
    pub inbound_peers: Option<u32>,
    #[serde(default)]
    pub host_network: bool,
    #[serde(default)]
    pub ready: bool,
}

/// One node over the span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeAnalysis {
    pub node: String,
    pub role: NodeRole,
    /// Ready endpoints of the workload on this node (1 for every node without a workload).
    pub endpoints: u32,
    /// e / E; 0 for a node without endpoints.
    pub expected_share: f64,
    pub span_seconds: f64,
    pub signals: BTreeMap<Signal, SignalValue>,
    /// Throttle bits seen at any sample of the span.
    pub throttle_seen: ThrottleFlags,
    /// The workload's pods on this node.
    pub workload_pods: Vec<PodFigures>,
    /// Pods of other workloads at or above the hot-pod exit threshold, hottest first.
    pub busy_other_pods: Vec<PodFigures>,
    /// CPU of the hottest pod of another workload, cores (0 without one).
    pub hottest_other_pod_cores: f64,
    /// Balancing decisions that placed the workload's connections on this node's pods, counted as
    /// [`Analysis::decisions`] counts them.
    #[serde(default)]
    pub decisions: f64,
    /// Connections the workload's pods here accepted in the span.
    #[serde(default)]
    pub accepted: f64,
}

impl NodeAnalysis {
    pub fn value(&self, signal: Signal) -> Option<f64> {
        self.signals.get(&signal).map(|s| s.value)
    }

    pub fn share(&self, signal: Signal) -> Option<f64> {
        self.signals.get(&signal).and_then(|s| s.share)
    }

    pub fn normalised(&self, signal: Signal) -> Option<f64> {
        self.signals.get(&signal).and_then(|s| s.normalised)
    }

    pub fn is_serving(&self) -> bool {
        self.expected_share > 0.0
    }
}

/// One signal across the serving nodes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SignalSummary {
    /// Sum over the serving nodes (share signals) or their mean (levels).
    pub total: f64,
    /// Max/mean of the serving nodes' normalised values.
    pub max_over_mean: Option<f64>,
    /// Jain's index of the serving nodes' normalised values.
    pub jain: Option<f64>,
    /// Serving nodes with a value.
    pub nodes: usize,
}

/// Every node and signal over one span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub from_ms: i64,
    pub to_ms: i64,
    pub workload: Option<WorkloadRef>,
    /// Ready endpoints on the nodes present.
    pub total_endpoints: u32,
    pub serving_nodes: u32,
    /// Mean established inbound connections to the workload's pods, all nodes.
    pub connections: f64,
    /// Sorted by node name.
    pub nodes: Vec<NodeAnalysis>,
    pub summary: BTreeMap<Signal, SignalSummary>,
    /// For each DaemonSet with a busy pod: its pods' CPU per serving node (the hot-pod peer group).
    pub daemon_set_cpu: BTreeMap<String, BTreeMap<String, f64>>,
    /// The balancing decisions behind the workload's spread over the span. While keep-alive
    /// connections carry the load (the pods accepted fewer connections in the span than they held),
    /// the connections held on average, each placed once (connection-seconds, as the bytes they
    /// carry); once connections are short-lived, the connections accepted in the span, each placed
    /// by kube-proxy on its own. Node figures are counted the same way, so a node's count and the
    /// total compare like with like, also while connections are being replaced.
    #[serde(default)]
    pub decisions: f64,
    /// Connections the workload's pods accepted in the span.
    #[serde(default)]
    pub accepted: f64,
    /// The balancing decisions of the client connections at the entry nodes: the relay's decisions
    /// when an in-cluster proxy sits between the Service and the workload, else [`Self::decisions`].
    #[serde(default)]
    pub entry_decisions: f64,
    /// How client traffic enters, when a workload is under test.
    #[serde(default)]
    pub entry: Option<EntryModel>,
    /// Ready endpoints that got almost nothing while their siblings were busy.
    #[serde(default)]
    pub starved: Vec<StarvedPod>,
    /// Causes that cannot be judged in this span, each with why.
    #[serde(default)]
    pub unavailable: Vec<String>,
}

/// A ready endpoint that the balancing passed over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StarvedPod {
    pub pod: String,
    pub node: String,
    /// Its share of the workload's traffic.
    pub share: f64,
    /// The share one endpoint should carry (1 / ready endpoints).
    pub expected: f64,
}

impl Analysis {
    pub fn node(&self, name: &str) -> Option<&NodeAnalysis> {
        self.index_of(name).map(|i| &self.nodes[i])
    }

    /// Position of a node in [`Analysis::nodes`] (sorted by name).
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.binary_search_by(|n| n.node.as_str().cmp(name)).ok()
    }
}

/// Raw per-node values before normalisation.
struct Raw {
    node: String,
    role: NodeRole,
    endpoints: u32,
    seconds: f64,
    values: BTreeMap<Signal, f64>,
    throttle_seen: ThrottleFlags,
    workload_pods: Vec<PodFigures>,
    busy_other_pods: Vec<PodFigures>,
    hottest_other_pod_cores: f64,
    /// Every DaemonSet pod on the node, with its CPU.
    daemon_set_pods: Vec<(Arc<PodMeta>, f64)>,
    /// Connections the workload's pods here accepted in the span.
    accepted: f64,
    /// Connections the relay's pods here accepted in the span and held on average (an in-cluster
    /// proxy between the Service and the workload): the client connections the entry nodes placed.
    relay_accepted: u64,
    relay_held: f64,
}

/// Balancing decisions from connections accepted in a span and held on average over it (see
/// [`Analysis::decisions`]).
fn decisions(accepted: f64, held: f64) -> f64 {
    if accepted > held { accepted } else { held }
}

fn per_second(increase: u64, seconds: f64) -> f64 {
    increase as f64 / seconds
}

fn raw_figures(
    name: &str,
    view: SpanView<'_>,
    endpoints: u32,
    workload: Option<&WorkloadRef>,
    relay: Option<&WorkloadRef>,
    config: &Config,
) -> Raw {
    // One piece: one pass over the span's pods classifies each pod once (workload under test, relay, DaemonSet,
    // other) and every pod sum below (workload, all pods, unattributed CPU, forwarded bytes) comes from that same
    // pass, so they add up exactly.
    let first = view.first();
    let last = view.last();
    let seconds = view.seconds();
    let hz = f64::from(last.clock_ticks_per_second);
    let cores = |jiffies: u64| jiffies as f64 / hz / seconds;
    let mut values = BTreeMap::new();

    let busy = cores(last.cpu.busy().saturating_sub(first.cpu.busy()));
    let interrupts = cores(last.cpu.interrupts().saturating_sub(first.cpu.interrupts()));
    let process = cores(last.cpu.process().saturating_sub(first.cpu.process()));
    values.insert(Signal::Cpu, busy);
    values.insert(Signal::Softirq, interrupts);
    let nic_rx = per_second(last.nic.rx_bytes.saturating_sub(first.nic.rx_bytes), seconds);
    let nic_tx = per_second(last.nic.tx_bytes.saturating_sub(first.nic.tx_bytes), seconds);
    values.insert(Signal::NicRx, nic_rx);
    values.insert(Signal::NicTx, nic_tx);
    values.insert(Signal::Nic, nic_rx + nic_tx);

    // Pods: increases against the span's first point; a pod born inside the span counts from zero.
    let mut workload_pods = Vec::new();
    let mut busy_other_pods = Vec::new();
    let mut daemon_set_pods = Vec::new();
    // CPU and bytes are summed as integers: exact, whatever order the pods come in.
    let mut all_pods_cpu_us = 0_u64;
    let (mut w_rx, mut w_tx, mut w_cpu_us, mut w_conns, mut w_accepted) = (0_u64, 0_u64, 0_u64, Vec::new(), 0_u64);
    let (mut all_pods_rx, mut all_pods_tx) = (0_u64, 0_u64);
    let mut hottest_other_pod_cores = 0.0_f64;
    let (mut relay_accepted, mut relay_held) = (0_u64, 0.0_f64);
    for (pod, before) in join(&first.pods, &last.pods) {
        let rx = pod.rx_bytes - before.map_or(0, |b| b.rx_bytes.min(pod.rx_bytes));
        let tx = pod.tx_bytes - before.map_or(0, |b| b.tx_bytes.min(pod.tx_bytes));
        let cpu_us = pod.cpu_us - before.map_or(0, |b| b.cpu_us.min(pod.cpu_us));
        let cpu = cpu_us as f64 / 1e6 / seconds;
        let (sum, samples) = match before {
            Some(b) => (pod.connections_sum - b.connections_sum, pod.samples - b.samples),
            None => (pod.connections_sum, pod.samples),
        };
        let connections = if samples == 0 { 0.0 } else { sum as f64 / samples as f64 };
        let accepted = pod.passive_opens - before.map_or(0, |b| b.passive_opens.min(pod.passive_opens));
        all_pods_cpu_us += cpu_us;
        let (rx, tx) = if pod.meta.host_network { (0, 0) } else { (rx, tx) };
        all_pods_rx += rx;
        all_pods_tx += tx;
        let figures = || PodFigures {
            uid: pod.meta.uid.to_string(),
            name: pod.meta.name.clone(),
            namespace: pod.meta.namespace.clone(),
            workload: pod.meta.workload.clone(),
            traffic_bps: per_second(rx + tx, seconds),
            connections,
            cpu_cores: cpu,
            memory_working_set_bytes: pod.memory_working_set_bytes,
            traffic_share: None,
            accepted: accepted as f64,
            inbound_peers: pod.inbound_peers,
            host_network: pod.meta.host_network,
            ready: pod.meta.ready,
        };
        let of_workload = workload.is_some() && pod.meta.workload.as_ref() == workload;
        if relay.is_some() && pod.meta.workload.as_ref() == relay {
            relay_accepted += accepted;
            relay_held += connections;
        }
        if of_workload {
            w_rx += rx;
            w_tx += tx;
            w_cpu_us += cpu_us;
            w_conns.push(connections);
            w_accepted += accepted;
            workload_pods.push(figures());
        } else {
            if pod.meta.workload.as_ref().is_some_and(WorkloadRef::is_daemon_set) {
                daemon_set_pods.push((Arc::clone(&pod.meta), cpu));
            }
            hottest_other_pod_cores = hottest_other_pod_cores.max(cpu);
            if cpu >= config.hot_pod.exit_cores {
                busy_other_pods.push(figures());
            }
        }
    }
    workload_pods.sort_by(|a, b| a.uid.cmp(&b.uid));
    busy_other_pods.sort_by(|a, b| b.cpu_cores.total_cmp(&a.cpu_cores).then_with(|| a.uid.cmp(&b.uid)));
    if workload.is_some() {
        values.insert(Signal::PodRx, per_second(w_rx, seconds));
        values.insert(Signal::PodTx, per_second(w_tx, seconds));
        values.insert(Signal::PodTraffic, per_second(w_rx + w_tx, seconds));
        values.insert(Signal::Connections, ordered_sum(w_conns));
        values.insert(Signal::PodCpu, w_cpu_us as f64 / 1e6 / seconds);
    }
    values.insert(Signal::UnattributedCpu, (process - all_pods_cpu_us as f64 / 1e6 / seconds).max(0.0));
    // A forwarded byte crosses the NIC twice, once in and once out: what the pods do not account for
    // in each direction, the smaller of the two, twice. Traffic of the node's own that flows one way
    // (an NFS client reading, an NFS server sending) is then not taken for forwarding.
    let unaccounted_rx = last.nic.rx_bytes.saturating_sub(first.nic.rx_bytes).saturating_sub(all_pods_rx);
    let unaccounted_tx = last.nic.tx_bytes.saturating_sub(first.nic.tx_bytes).saturating_sub(all_pods_tx);
    values.insert(Signal::ForwardedNic, per_second(2 * unaccounted_rx.min(unaccounted_tx), seconds));

    memory_values(first, last, seconds, &mut values);

    let throttle_seen = thermal_values(&view, &mut values);
    Raw {
        node: name.to_string(),
        role: view.series.role,
        endpoints,
        seconds,
        values,
        throttle_seen,
        workload_pods,
        busy_other_pods,
        hottest_other_pod_cores,
        daemon_set_pods,
        accepted: w_accepted as f64,
        relay_accepted,
        relay_held,
    }
}

/// Memory over the span: growth of used memory, the share used at its end, and the pressure stalls.
fn memory_values(first: &NodePoint, last: &NodePoint, seconds: f64, values: &mut BTreeMap<Signal, f64>) {
    let used_growth = (last.memory.used_bytes() as f64 - first.memory.used_bytes() as f64) / seconds;
    values.insert(Signal::MemoryGrowth, used_growth.max(0.0));
    if last.memory.total_bytes > 0 {
        values.insert(Signal::MemoryUsed, last.memory.used_bytes() as f64 / last.memory.total_bytes as f64);
    }
    if let (Some(a), Some(b)) = (first.pressure, last.pressure) {
        let stall = |us: u64| (us as f64 / 1e6 / seconds).clamp(0.0, 1.0);
        values.insert(Signal::CpuPressure, stall(b.cpu_some_us.saturating_sub(a.cpu_some_us)));
        values.insert(Signal::MemoryPressure, stall(b.memory_some_us.saturating_sub(a.memory_some_us)));
        values.insert(Signal::IoPressure, stall(b.io_some_us.saturating_sub(a.io_some_us)));
    }
}

/// Thermals over the samples inside the span: the hottest temperature, the mean frequency against
/// the maximum, the fraction of samples throttled; returns every throttle flag seen.
fn thermal_values(view: &SpanView<'_>, values: &mut BTreeMap<Signal, f64>) -> ThrottleFlags {
    let mut hottest: Option<i64> = None;
    let (mut freq_sum, mut freq_n) = (0.0, 0_u32);
    let (mut throttled_n, mut throttle_known) = (0_u32, 0_u32);
    let mut throttle_seen = ThrottleFlags::default();
    for point in view.inside() {
        if let Some(t) = point.temperature_millicelsius {
            hottest = Some(hottest.map_or(t, |h| h.max(t)));
        }
        if let Some(f) = point.cpu_frequency.filter(|f| f.max_khz > 0) {
            freq_sum += f.current_khz as f64 / f.max_khz as f64;
            freq_n += 1;
        }
        if let Some(flags) = point.throttle {
            throttle_known += 1;
            if flags.throttled || flags.soft_temperature_limit || flags.arm_frequency_capped {
                throttled_n += 1;
            }
            throttle_seen.under_voltage |= flags.under_voltage;
            throttle_seen.arm_frequency_capped |= flags.arm_frequency_capped;
            throttle_seen.throttled |= flags.throttled;
            throttle_seen.soft_temperature_limit |= flags.soft_temperature_limit;
        }
    }
    if let Some(t) = hottest {
        values.insert(Signal::Temperature, t as f64 / 1000.0);
    }
    if freq_n > 0 {
        values.insert(Signal::Frequency, freq_sum / f64::from(freq_n));
    }
    if throttle_known > 0 {
        values.insert(Signal::Throttled, f64::from(throttled_n) / f64::from(throttle_known));
    }
    throttle_seen
}

/// Per signal, the serving nodes' reference: their total (share signals) or their mean (levels).
fn references(serving: &[&Raw]) -> BTreeMap<Signal, f64> {
    let mut reference: BTreeMap<Signal, f64> = BTreeMap::new();
    for signal in Signal::ALL {
        let present: Vec<f64> = serving.iter().filter_map(|r| r.values.get(&signal).copied()).collect();
        if present.is_empty() {
            continue;
        }
        let total = ordered_sum(present.iter().copied());
        let reference_value = match signal.kind() {
            SignalKind::Level => total / present.len() as f64,
            SignalKind::WorkloadShare | SignalKind::NodeShare => total,
        };
        reference.insert(signal, reference_value);
    }
    reference
}

/// CPU of each busy DaemonSet on each serving node, for DaemonSets with a busy pod somewhere.
fn daemon_set_cpu(raws: &[Raw], serving: &[&Raw]) -> BTreeMap<String, BTreeMap<String, f64>> {
    let mut daemon_set_cpu: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    let busy_daemon_sets: BTreeSet<String> = raws
        .iter()
        .flat_map(|r| r.busy_other_pods.iter())
        .filter_map(|p| p.workload.as_ref().filter(|w| w.is_daemon_set()).map(|w| w.to_string()))
        .collect();
    for raw in serving.iter().filter(|_| !busy_daemon_sets.is_empty()) {
        for (meta, cpu) in &raw.daemon_set_pods {
            let Some(ds) = meta.workload.as_ref().map(ToString::to_string).filter(|ds| busy_daemon_sets.contains(ds))
            else {
                continue;
            };
            *daemon_set_cpu.entry(ds).or_default().entry(raw.node.clone()).or_default() += cpu;
        }
    }
    daemon_set_cpu
}

/// One node's figures against the references: each signal's share and normalised value, each
/// workload pod's share of the workload's traffic. Decisions are filled in once all nodes are known.
fn node_analysis(
    raw: Raw,
    reference: &BTreeMap<Signal, f64>,
    total_endpoints: u32,
    workload_traffic: f64,
) -> NodeAnalysis {
    let weight = f64::from(raw.endpoints.max(1));
    let expected_share = if total_endpoints == 0 { 0.0 } else { f64::from(raw.endpoints) / f64::from(total_endpoints) };
    let signals = raw
        .values
        .iter()
        .map(|(&signal, &value)| {
            let reference_value = reference.get(&signal).copied().unwrap_or(0.0);
            let (share, normalised) = match signal.kind() {
                SignalKind::Level => (None, (reference_value > 0.0).then(|| value / reference_value)),
                SignalKind::WorkloadShare | SignalKind::NodeShare => {
                    if reference_value > 0.0 && total_endpoints > 0 {
                        let per_endpoint = reference_value / f64::from(total_endpoints);
                        (Some(value / reference_value), Some(value / (weight * per_endpoint)))
                    } else {
                        (None, None)
                    }
                }
            };
            (signal, SignalValue { value, share, normalised })
        })
        .collect();
    let mut workload_pods = raw.workload_pods;
    for pod in &mut workload_pods {
        pod.traffic_share = (workload_traffic > 0.0).then(|| pod.traffic_bps / workload_traffic);
    }
    NodeAnalysis {
        node: raw.node,
        role: raw.role,
        endpoints: raw.endpoints,
        expected_share,
        span_seconds: raw.seconds,
        signals,
        throttle_seen: raw.throttle_seen,
        workload_pods,
        busy_other_pods: raw.busy_other_pods,
        hottest_other_pod_cores: raw.hottest_other_pod_cores,
        decisions: 0.0,
        accepted: raw.accepted,
    }
}

/// Per signal over the serving nodes: the reference total, max/mean and Jain's index of the
/// normalised values.
fn summaries(nodes: &[NodeAnalysis], reference: &BTreeMap<Signal, f64>) -> BTreeMap<Signal, SignalSummary> {
    Signal::ALL
        .iter()
        .filter_map(|&signal| {
            let total = *reference.get(&signal)?;
            let normalised: Vec<f64> =
                nodes.iter().filter(|n| n.is_serving()).filter_map(|n| n.normalised(signal)).collect();
            Some((
                signal,
                SignalSummary {
                    total,
                    max_over_mean: max_over_mean(&normalised),
                    jain: jain_index(&normalised),
                    nodes: normalised.len(),
                },
            ))
        })
        .collect()
}

/// Analyses the span of `span_ms` ending at `end_ms` (each node's newest sample at or before it).
/// Nodes with fewer than two samples are left out.
pub(crate) fn analyse(
    history: &History,
    workload: Option<&WorkloadUnderTest>,
    end_ms: i64,
    span_ms: i64,
    config: &Config,
) -> Analysis {
    let workload_ref = workload.map(|w| &w.workload);
    let relay_ref = workload.and_then(|w| w.relay.as_ref()).map(|r| &r.workload);
    let raws: Vec<Raw> = history
        .nodes
        .keys()
        .filter_map(|name| {
            let view = history.span(name, span_ms, end_ms)?;
            let endpoints = workload.map_or(1, |w| w.endpoints_on(name));
            Some(raw_figures(name, view, endpoints, workload_ref, relay_ref, config))
        })
        .filter(|raw| raw.seconds > 0.0)
        .collect();
    let serving: Vec<&Raw> = raws.iter().filter(|r| r.endpoints > 0).collect();
    let total_endpoints: u32 = serving.iter().map(|r| r.endpoints).sum();

    let reference = references(&serving);
    let workload_traffic = reference.get(&Signal::PodTraffic).copied().unwrap_or(0.0);

    let daemon_set_cpu = daemon_set_cpu(&raws, &serving);

    let relay_accepted: u64 = raws.iter().map(|r| r.relay_accepted).sum();
    let relay_held = ordered_sum(raws.iter().map(|r| r.relay_held));
    let mut nodes: Vec<NodeAnalysis> =
        raws.into_iter().map(|raw| node_analysis(raw, &reference, total_endpoints, workload_traffic)).collect();
    nodes.sort_by(|a, b| a.node.cmp(&b.node));

    let summary = summaries(&nodes, &reference);
    let connections = ordered_sum(nodes.iter().filter_map(|n| n.value(Signal::Connections)));
    let accepted = ordered_sum(nodes.iter().filter(|n| n.is_serving()).map(|n| n.accepted));
    let decisions = decisions(accepted, connections);
    let short_lived = accepted > connections;
    for node in &mut nodes {
        node.decisions = if short_lived { node.accepted } else { node.value(Signal::Connections).unwrap_or(0.0) };
    }
    let entry_decisions =
        if relay_ref.is_some() { self::decisions(relay_accepted as f64, relay_held) } else { decisions };
    let present: BTreeSet<&str> = nodes.iter().map(|n| n.node.as_str()).collect();
    let entry = workload.map(|w| EntryModel::build(w, &present));
    let starved = starved_pods(&nodes, total_endpoints, workload_traffic, config);
    let mut unavailable = Vec::new();
    if let Some(w) = workload_ref
        && nodes.iter().flat_map(|n| &n.workload_pods).any(|p| p.host_network)
    {
        unavailable.push(format!(
            "traffic causes (pod-concentration, connection-pinning, ingress-concentration): pods of {w} use \
             hostNetwork, so their bytes are the node's and cannot be told apart"
        ));
    }
    let from_ms = end_ms - span_ms;
    Analysis {
        from_ms,
        to_ms: end_ms,
        workload: workload_ref.cloned(),
        total_endpoints,
        serving_nodes: u32::try_from(nodes.iter().filter(|n| n.is_serving()).count()).unwrap_or(u32::MAX),
        connections,
        nodes,
        summary,
        daemon_set_cpu,
        decisions,
        accepted,
        entry_decisions,
        entry,
        starved,
        unavailable,
    }
}

/// Ready endpoints of the workload that carry less than `starved_fraction` of one endpoint's share
/// while the workload is busy and some sibling carries at least its share.
fn starved_pods(nodes: &[NodeAnalysis], total_endpoints: u32, traffic: f64, config: &Config) -> Vec<StarvedPod> {
    if total_endpoints < 2 || traffic < config.traffic.min_workload_bps {
        return Vec::new();
    }
    let expected = 1.0 / f64::from(total_endpoints);
    let pods = nodes.iter().flat_map(|n| n.workload_pods.iter().map(move |p| (n, p)));
    let busiest = pods.clone().filter_map(|(_, p)| p.traffic_share).fold(0.0, f64::max);
    if busiest < expected {
        return Vec::new();
    }
    pods.filter(|(n, p)| n.is_serving() && p.ready && !p.host_network)
        .filter_map(|(n, p)| {
            let share = p.traffic_share?;
            (share < config.traffic.starved_fraction * expected).then(|| StarvedPod {
                pod: if p.namespace.is_empty() { p.name.clone() } else { format!("{}/{}", p.namespace, p.name) },
                node: n.node.clone(),
                share,
                expected,
            })
        })
        .collect()
}

/// The median of a DaemonSet's pod CPU on the serving nodes other than `node`.
pub(crate) fn daemon_set_peer_median(analysis: &Analysis, daemon_set: &str, node: &str) -> Option<f64> {
    let per_node = analysis.daemon_set_cpu.get(daemon_set)?;
    median(per_node.iter().filter(|(n, _)| n.as_str() != node).map(|(_, &cpu)| cpu))
}
