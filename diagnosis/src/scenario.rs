//! Synthetic cluster series from a scenario definition: the fixtures of the scenario tests, the
//! benchmark, and demos.
//!
//! A scenario describes a cluster under load in physical terms (nodes, pods, the load generator's
//! connections, where client traffic enters, work outside pods, heat, memory) rather than in terms of
//! the causes the diagnosis should find; [`Scenario::run`] expands it into a deterministic series of
//! [`Tick`]s with raw cumulative counters, as the agents would ship them. Definitions are serde types,
//! written as TOML files under `tests/scenarios/`.
//!
//! The traffic model (field guide, section 2):
//! * with keep-alive, each serving pod gets requests in proportion to the connections pinned to it
//!   (a closed loop per connection); without, in proportion 1 each (per-request balancing), with a
//!   few in-flight connections;
//! * client bytes enter at the entry node(s). Traffic for a pod on another node is forwarded: the entry
//!   NIC carries it in and out again, and the forwarding costs softirq there;
//! * a backend pod (the database) gets work and bytes for every request; bytes between nodes cross
//!   both NICs;
//! * work outside pods (an NFS server, the control plane) adds process CPU and NIC bytes that no pod
//!   accounts for;
//! * a throttled node runs its pods' work at a lower frequency: the same requests cost more CPU.
//!
//! Noise: each rate is multiplied by `1 + jitter * u` with `u` uniform in [-1, 1), drawn from a
//! SplitMix64 generator seeded by the scenario (no system randomness: runs are reproducible).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::input::{
    CpuFrequency, CpuJiffies, NicBytes, NodeMemory, NodeRole, NodeSample, PodSample, PressureTotals, ThrottleFlags,
    Tick, WorkloadRef, WorkloadUnderTest,
};
use crate::{Error, Result};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
const MIB: f64 = 1024.0 * 1024.0;

fn default_duration() -> f64 {
    30.0
}
fn default_sample_ms() -> i64 {
    250
}
fn default_start_ms() -> i64 {
    1_790_000_000_000
}
fn default_jitter() -> f64 {
    0.03
}
fn default_cores() -> u32 {
    4
}
fn default_memory_gib() -> f64 {
    8.0
}
fn default_temperature() -> f64 {
    55.0
}
fn default_max_khz() -> u64 {
    2_400_000
}
fn default_pod_cpu() -> f64 {
    0.02
}
fn default_pod_memory_mib() -> f64 {
    120.0
}
fn default_true() -> bool {
    true
}
fn default_request_bytes() -> f64 {
    700.0
}
fn default_response_bytes() -> f64 {
    40_000.0
}
fn default_cpu_per_request() -> f64 {
    0.012
}
fn default_softirq_per_mb() -> f64 {
    0.03
}
fn forever() -> f64 {
    f64::INFINITY
}

/// A whole scenario file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    #[serde(default = "default_duration")]
    pub duration_s: f64,
    #[serde(default = "default_sample_ms")]
    pub sample_ms: i64,
    #[serde(default)]
    pub seed: u64,
    /// Epoch ms of the first sample.
    #[serde(default = "default_start_ms")]
    pub start_ms: i64,
    /// Relative amplitude of the per-sample noise.
    #[serde(default = "default_jitter")]
    pub jitter: f64,
    /// The workload under test, `Kind/namespace/name` (it drives the load model).
    #[serde(default)]
    pub workload: Option<String>,
    /// Whether the ticks carry cluster knowledge. Without it (no Kubernetes API), pods are named by
    /// their UID, workloads are unknown and no workload under test is given.
    #[serde(default = "default_true")]
    pub cluster_knowledge: bool,
    pub nodes: Vec<NodeSpec>,
    #[serde(default)]
    pub pods: Vec<PodSpec>,
    #[serde(default)]
    pub load: Option<Load>,
    /// Time-bounded changes of the load.
    #[serde(default)]
    pub phases: Vec<Phase>,
    #[serde(default)]
    pub host_work: Vec<HostWork>,
    #[serde(default)]
    pub pod_work: Vec<PodWork>,
    #[serde(default)]
    pub thermal: Vec<ThermalEvent>,
    #[serde(default)]
    pub memory_pressure: Vec<MemoryEvent>,
    #[serde(default)]
    pub expect: Expectation,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    pub name: String,
    pub role: NodeRole,
    #[serde(default = "default_cores")]
    pub cores: u32,
    #[serde(default = "default_memory_gib")]
    pub memory_gib: f64,
    /// Process CPU outside pods (k3s server and etcd on control-plane nodes); default 0.35 cores on
    /// control-plane nodes, 0.08 on workers.
    #[serde(default)]
    pub base_cpu_cores: Option<f64>,
    /// NIC bytes per second outside the workload (etcd, kubelet); default 150 kB/s on control-plane
    /// nodes, 20 kB/s on workers.
    #[serde(default)]
    pub background_nic_bps: Option<f64>,
    #[serde(default = "default_temperature")]
    pub temperature_c: f64,
    #[serde(default = "default_max_khz")]
    pub max_khz: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodSpec {
    pub name: String,
    pub node: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// `Kind/namespace/name`.
    #[serde(default)]
    pub workload: Option<String>,
    /// Idle CPU.
    #[serde(default = "default_pod_cpu")]
    pub cpu_cores: f64,
    #[serde(default = "default_pod_memory_mib")]
    pub memory_mib: f64,
    #[serde(default = "default_true")]
    pub ready: bool,
    #[serde(default)]
    pub host_network: bool,
}

fn default_namespace() -> String {
    "default".to_string()
}

/// Where client traffic enters the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Entry {
    /// At the serving pod's own node (no forwarding).
    Direct,
    /// Evenly over every node, each forwarding to pods elsewhere (BGP with ECMP, Cluster policy).
    Spread,
    /// At one node, which forwards to pods elsewhere (MetalLB L2 announcer, Cluster policy).
    Node(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Load {
    pub requests_per_s: f64,
    #[serde(default = "default_request_bytes")]
    pub request_bytes: f64,
    #[serde(default = "default_response_bytes")]
    pub response_bytes: f64,
    /// CPU seconds a serving pod spends per request at full frequency.
    #[serde(default = "default_cpu_per_request")]
    pub cpu_seconds_per_request: f64,
    /// Keep-alive connections pinned to each serving pod, in the order the pods are listed; absent:
    /// no keep-alive (per-request balancing).
    #[serde(default)]
    pub connections: Option<Vec<u32>>,
    pub entry: Entry,
    /// Softirq CPU seconds per MB forwarded by an entry node.
    #[serde(default = "default_softirq_per_mb")]
    pub softirq_seconds_per_forwarded_mb: f64,
    #[serde(default)]
    pub backend: Option<Backend>,
}

/// A pod every request also calls (the database).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    pub pod: String,
    pub cpu_seconds_per_request: f64,
    pub bytes_per_request: f64,
}

/// Overrides of the load between `from_s` and `until_s`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    pub from_s: f64,
    #[serde(default = "forever")]
    pub until_s: f64,
    #[serde(default)]
    pub requests_per_s: Option<f64>,
    #[serde(default)]
    pub connections: Option<Vec<u32>>,
    #[serde(default)]
    pub entry: Option<Entry>,
}

/// Work on a node outside every pod (kernel nfsd, the k3s server).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostWork {
    pub node: String,
    #[serde(default)]
    pub cpu_cores: f64,
    #[serde(default)]
    pub softirq_cores: f64,
    #[serde(default)]
    pub nic_rx_bps: f64,
    #[serde(default)]
    pub nic_tx_bps: f64,
    #[serde(default)]
    pub from_s: f64,
    #[serde(default = "forever")]
    pub until_s: f64,
}

/// Extra CPU burnt by one pod.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodWork {
    pub pod: String,
    pub cpu_cores: f64,
    #[serde(default)]
    pub from_s: f64,
    #[serde(default = "forever")]
    pub until_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThermalEvent {
    pub node: String,
    pub temperature_c: f64,
    pub frequency_khz: u64,
    #[serde(default)]
    pub throttled: bool,
    #[serde(default)]
    pub soft_temperature_limit: bool,
    #[serde(default)]
    pub from_s: f64,
    #[serde(default = "forever")]
    pub until_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryEvent {
    pub node: String,
    /// Fraction of time some task stalls on memory (PSI "some").
    pub stall_fraction: f64,
    /// MemAvailable / MemTotal.
    pub available_fraction: f64,
    #[serde(default)]
    pub from_s: f64,
    #[serde(default = "forever")]
    pub until_s: f64,
}

/// What the diagnosis must say about the scenario.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// Exactly these verdicts while the hog runs; none is the control case.
    #[serde(default)]
    pub verdicts: Vec<ExpectedVerdict>,
    /// The load-test window, seconds from the first sample; default the whole series.
    #[serde(default)]
    pub window: Option<WindowSpec>,
    /// When the hog starts and ends, seconds from the first sample; default the whole series.
    #[serde(default)]
    pub hog_start_s: Option<f64>,
    #[serde(default)]
    pub hog_end_s: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedVerdict {
    pub node: String,
    pub cause: crate::verdict::Cause,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    pub start_s: f64,
    pub end_s: f64,
}

/// Parses `Kind/namespace/name`.
pub fn parse_workload(text: &str) -> Result<WorkloadRef> {
    let mut parts = text.splitn(3, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(kind), Some(ns), Some(name)) if !kind.is_empty() && !ns.is_empty() && !name.is_empty() => {
            Ok(WorkloadRef::new(kind, ns, name))
        }
        _ => Err(Error::Scenario(format!("workload {text:?} is not Kind/namespace/name"))),
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny deterministic generator for the fixture noise.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1_u64 << 53) as f64
    }

    /// Uniform in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

fn active(from_s: f64, until_s: f64, t: f64) -> bool {
    t >= from_s && t < until_s
}

/// Cumulative counters of one node, in fractional units until emitted.
#[derive(Debug, Clone, Default)]
struct NodeCounters {
    user: f64,
    system: f64,
    idle: f64,
    softirq: f64,
    rx: f64,
    tx: f64,
    cpu_stall_us: f64,
    memory_stall_us: f64,
}

#[derive(Debug, Clone, Default)]
struct PodCounters {
    rx: f64,
    tx: f64,
    cpu_us: f64,
}

/// An expanded scenario: yields one [`Tick`] per sample.
#[derive(Debug, Clone)]
pub struct ScenarioRun {
    scenario: Scenario,
    workload: Option<WorkloadRef>,
    pod_workloads: Vec<Option<WorkloadRef>>,
    /// Indices of the serving pods (workload under test, in listed order).
    serving: Vec<usize>,
    node_index: BTreeMap<String, usize>,
    pod_node: Vec<usize>,
    backend_pod: Option<usize>,
    nodes: Vec<NodeCounters>,
    pods: Vec<PodCounters>,
    rng: SplitMix64,
    step: i64,
    steps: i64,
}

impl Scenario {
    /// Checks every reference (nodes, pods, connection counts) without expanding the series.
    pub fn validate(&self) -> Result<()> {
        self.clone().run().map(|_| ())
    }

    /// Expands the scenario; fails on references to unknown nodes or pods.
    pub fn run(self) -> Result<ScenarioRun> {
        if self.sample_ms <= 0 || self.duration_s.is_nan() || self.duration_s <= 0.0 {
            return Err(Error::Scenario("sample_ms and duration_s must be positive".into()));
        }
        let node_index: BTreeMap<String, usize> =
            self.nodes.iter().enumerate().map(|(i, n)| (n.name.clone(), i)).collect();
        if node_index.len() != self.nodes.len() {
            return Err(Error::Scenario("duplicate node names".into()));
        }
        let find_node =
            |name: &str| node_index.get(name).copied().ok_or_else(|| Error::Scenario(format!("unknown node {name:?}")));
        let pod_node = self.pods.iter().map(|p| find_node(&p.node)).collect::<Result<Vec<_>>>()?;
        let find_pod = |name: &str| {
            self.pods
                .iter()
                .position(|p| p.name == name)
                .ok_or_else(|| Error::Scenario(format!("unknown pod {name:?}")))
        };
        let workload = self.workload.as_deref().map(parse_workload).transpose()?;
        let pod_workloads = self
            .pods
            .iter()
            .map(|p| p.workload.as_deref().map(parse_workload).transpose())
            .collect::<Result<Vec<_>>>()?;
        let serving: Vec<usize> = (0..self.pods.len())
            .filter(|&i| workload.is_some() && pod_workloads[i] == workload && self.pods[i].ready)
            .collect();
        let check_connections = |c: &Option<Vec<u32>>| match c {
            Some(c) if c.len() != serving.len() => {
                Err(Error::Scenario(format!("{} connection counts for {} serving pods", c.len(), serving.len())))
            }
            _ => Ok(()),
        };
        let mut backend_pod = None;
        if let Some(load) = &self.load {
            check_connections(&load.connections)?;
            if let Entry::Node(n) = &load.entry {
                find_node(n)?;
            }
            if let Some(b) = &load.backend {
                backend_pod = Some(find_pod(&b.pod)?);
            }
        }
        for phase in &self.phases {
            check_connections(&phase.connections)?;
            if let Some(Entry::Node(n)) = &phase.entry {
                find_node(n)?;
            }
        }
        for w in &self.host_work {
            find_node(&w.node)?;
        }
        for w in &self.pod_work {
            find_pod(&w.pod)?;
        }
        for e in &self.thermal {
            find_node(&e.node)?;
        }
        for e in &self.memory_pressure {
            find_node(&e.node)?;
        }
        for v in &self.expect.verdicts {
            find_node(&v.node)?;
        }
        let steps = (self.duration_s * 1000.0 / self.sample_ms as f64).floor() as i64;
        let nodes = vec![NodeCounters::default(); self.nodes.len()];
        let pods = vec![PodCounters::default(); self.pods.len()];
        let rng = SplitMix64::new(self.seed);
        Ok(ScenarioRun {
            workload,
            pod_workloads,
            serving,
            node_index,
            pod_node,
            backend_pod,
            nodes,
            pods,
            rng,
            step: 0,
            steps,
            scenario: self,
        })
    }

    /// The expanded series.
    pub fn ticks(&self) -> Result<Vec<Tick>> {
        Ok(self.clone().run()?.collect())
    }

    /// The window to report on, epoch ms.
    pub fn window(&self) -> crate::report::Window {
        let spec = self.expect.window.unwrap_or(WindowSpec { start_s: 0.0, end_s: self.duration_s });
        crate::report::Window {
            name: self.name.clone(),
            start_ms: self.start_ms + (spec.start_s * 1000.0) as i64,
            end_ms: self.start_ms + (spec.end_s * 1000.0) as i64,
            automatic: false,
            workload: self.workload.as_deref().filter(|_| self.cluster_knowledge).and_then(|w| parse_workload(w).ok()),
        }
    }
}

/// What the load looks like at one instant.
struct LoadNow {
    load: Load,
    requests_per_s: f64,
    connections: Option<Vec<u32>>,
    entry: Entry,
}

impl ScenarioRun {
    fn jitter(&mut self) -> f64 {
        1.0 + self.scenario.jitter * (2.0 * self.rng.next_f64() - 1.0)
    }

    fn load_at(&self, t: f64) -> Option<LoadNow> {
        let load = self.scenario.load.as_ref()?;
        let mut now = LoadNow {
            load: load.clone(),
            requests_per_s: load.requests_per_s,
            connections: load.connections.clone(),
            entry: load.entry.clone(),
        };
        for phase in self.scenario.phases.iter().filter(|p| active(p.from_s, p.until_s, t)) {
            if let Some(r) = phase.requests_per_s {
                now.requests_per_s = r;
            }
            if let Some(c) = &phase.connections {
                now.connections = Some(c.clone());
            }
            if let Some(e) = &phase.entry {
                now.entry = e.clone();
            }
        }
        Some(now)
    }

    /// Advances every counter over one interval of `dt` seconds ending at `t`; returns the connections
    /// per pod at `t`.
    fn advance(&mut self, t: f64, dt: f64) -> Vec<u32> {
        let n_nodes = self.scenario.nodes.len();
        let mut process = vec![0.0_f64; n_nodes]; // cores of process-context work outside pods
        let mut softirq = vec![0.01_f64; n_nodes];
        let mut nic_rx = vec![0.0_f64; n_nodes];
        let mut nic_tx = vec![0.0_f64; n_nodes];
        let mut pod_cpu: Vec<f64> = self.scenario.pods.iter().map(|p| p.cpu_cores).collect();
        let mut pod_rx = vec![0.0_f64; self.scenario.pods.len()];
        let mut pod_tx = vec![0.0_f64; self.scenario.pods.len()];
        let mut connections = vec![0_u32; self.scenario.pods.len()];

        for (i, node) in self.scenario.nodes.iter().enumerate() {
            let control_plane = node.role == NodeRole::ControlPlane;
            process[i] += node.base_cpu_cores.unwrap_or(if control_plane { 0.35 } else { 0.08 });
            let background = node.background_nic_bps.unwrap_or(if control_plane { 150_000.0 } else { 20_000.0 });
            nic_rx[i] += background / 2.0;
            nic_tx[i] += background / 2.0;
        }
        // Frequency slowdown of each node: the same work takes max/current longer.
        let slowdown: Vec<f64> = self
            .scenario
            .nodes
            .iter()
            .map(|node| {
                self.scenario
                    .thermal
                    .iter()
                    .filter(|e| e.node == node.name && active(e.from_s, e.until_s, t) && e.frequency_khz > 0)
                    .map(|e| node.max_khz as f64 / e.frequency_khz as f64)
                    .fold(1.0, f64::max)
            })
            .collect();

        if let Some(now) = self.load_at(t) {
            let n_serving = self.serving.len();
            let weights: Vec<f64> = match &now.connections {
                Some(c) if c.iter().sum::<u32>() > 0 => {
                    let total = f64::from(c.iter().sum::<u32>());
                    c.iter().map(|&k| f64::from(k) / total).collect()
                }
                _ => vec![1.0 / n_serving.max(1) as f64; n_serving],
            };
            let load = &now.load;
            let entry_nodes: Vec<(usize, f64)> = match &now.entry {
                Entry::Direct => Vec::new(),
                Entry::Spread => (0..n_nodes).map(|i| (i, 1.0 / n_nodes as f64)).collect(),
                Entry::Node(name) => self.node_index.get(name).map(|&i| vec![(i, 1.0)]).unwrap_or_default(),
            };
            let serving = self.serving.clone();
            for (slot, &pod) in serving.iter().enumerate() {
                let requests = now.requests_per_s * weights[slot] * self.jitter();
                connections[pod] = match &now.connections {
                    Some(c) => c[slot],
                    // In flight without keep-alive: about 50 ms per request.
                    None => (requests * 0.05).ceil() as u32,
                };
                let home = self.pod_node[pod];
                let (bytes_in, bytes_out) = (requests * load.request_bytes, requests * load.response_bytes);
                pod_rx[pod] += bytes_in;
                pod_tx[pod] += bytes_out;
                pod_cpu[pod] += requests * load.cpu_seconds_per_request * slowdown[home];
                nic_rx[home] += bytes_in;
                nic_tx[home] += bytes_out;
                if entry_nodes.is_empty() {
                    continue;
                }
                // Client bytes of requests entering elsewhere are forwarded: in and out at the entry.
                for &(entry, fraction) in &entry_nodes {
                    if entry == home {
                        continue;
                    }
                    let forwarded = (bytes_in + bytes_out) * fraction;
                    nic_rx[entry] += forwarded;
                    nic_tx[entry] += forwarded;
                    softirq[entry] += forwarded / 1e6 * load.softirq_seconds_per_forwarded_mb;
                }
                if let Some(backend) = &load.backend
                    && let Some(db) = self.backend_pod
                {
                    let bytes = requests * backend.bytes_per_request;
                    pod_tx[db] += bytes;
                    pod_rx[pod] += bytes;
                    pod_cpu[db] += requests * backend.cpu_seconds_per_request * slowdown[self.pod_node[db]];
                    let db_home = self.pod_node[db];
                    if db_home != home {
                        nic_tx[db_home] += bytes;
                        nic_rx[home] += bytes;
                    }
                }
            }
        }
        for work in self.scenario.pod_work.iter().filter(|w| active(w.from_s, w.until_s, t)) {
            if let Some(i) = self.scenario.pods.iter().position(|p| p.name == work.pod) {
                pod_cpu[i] += work.cpu_cores;
            }
        }
        for work in self.scenario.host_work.iter().filter(|w| active(w.from_s, w.until_s, t)) {
            let i = self.node_index[&work.node];
            process[i] += work.cpu_cores;
            softirq[i] += work.softirq_cores;
            nic_rx[i] += work.nic_rx_bps;
            nic_tx[i] += work.nic_tx_bps;
        }

        // Accumulate, with noise.
        for (p, counters) in pod_cpu.iter().enumerate() {
            let j = self.jitter();
            let pod = &mut self.pods[p];
            pod.cpu_us += counters * j * dt * 1e6;
            pod.rx += pod_rx[p] * dt;
            pod.tx += pod_tx[p] * dt;
            process[self.pod_node[p]] += counters * j;
        }
        for (i, spec) in self.scenario.nodes.iter().enumerate() {
            let j = 1.0 + self.scenario.jitter * (2.0 * self.rng.next_f64() - 1.0);
            let cores = f64::from(spec.cores);
            let busy_process = (process[i] * j).min(cores);
            let busy_softirq = (softirq[i] * j).min(cores - busy_process);
            let busy = busy_process + busy_softirq;
            let counters = &mut self.nodes[i];
            counters.user += 0.7 * busy_process * dt * 100.0;
            counters.system += 0.3 * busy_process * dt * 100.0;
            counters.softirq += busy_softirq * dt * 100.0;
            counters.idle += (cores - busy).max(0.0) * dt * 100.0;
            counters.rx += nic_rx[i] * j * dt;
            counters.tx += nic_tx[i] * j * dt;
            let load = busy / cores;
            counters.cpu_stall_us += ((load - 0.8) * 2.0).clamp(0.0, 1.0) * dt * 1e6;
            let stall = self
                .scenario
                .memory_pressure
                .iter()
                .filter(|e| e.node == spec.name && active(e.from_s, e.until_s, t))
                .map(|e| e.stall_fraction)
                .fold(0.0, f64::max);
            counters.memory_stall_us += stall * dt * 1e6;
        }
        connections
    }

    fn sample(&self, t: f64, timestamp_ms: i64, connections: &[u32]) -> Tick {
        let scenario = &self.scenario;
        let mut nodes: Vec<NodeSample> = scenario
            .nodes
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let c = &self.nodes[i];
                let total = spec.memory_gib * GIB;
                let base_used = if spec.role == NodeRole::ControlPlane { 1.6 * GIB } else { 0.8 * GIB };
                let pods_used: f64 = scenario
                    .pods
                    .iter()
                    .enumerate()
                    .filter(|(p, _)| self.pod_node[*p] == i)
                    .map(|(_, p)| p.memory_mib * MIB)
                    .sum();
                let mut available = (total - base_used - pods_used).max(0.0);
                let mut temperature = spec.temperature_c;
                let mut frequency = spec.max_khz;
                let mut flags = ThrottleFlags::default();
                for e in
                    scenario.memory_pressure.iter().filter(|e| e.node == spec.name && active(e.from_s, e.until_s, t))
                {
                    available = available.min(e.available_fraction * total);
                }
                for e in scenario.thermal.iter().filter(|e| e.node == spec.name && active(e.from_s, e.until_s, t)) {
                    temperature = temperature.max(e.temperature_c);
                    frequency = frequency.min(e.frequency_khz);
                    flags.throttled |= e.throttled;
                    flags.soft_temperature_limit |= e.soft_temperature_limit;
                    flags.arm_frequency_capped |= e.frequency_khz < spec.max_khz;
                }
                NodeSample {
                    name: spec.name.clone(),
                    role: spec.role,
                    timestamp_ms,
                    clock_ticks_per_second: 100,
                    cpu: CpuJiffies {
                        user: c.user as u64,
                        system: c.system as u64,
                        idle: c.idle as u64,
                        softirq: c.softirq as u64,
                        ..CpuJiffies::default()
                    },
                    nics: vec![NicBytes::new("eth0", c.rx as u64, c.tx as u64)],
                    memory: NodeMemory { total_bytes: total as u64, available_bytes: available as u64 },
                    pressure: Some(PressureTotals {
                        cpu_some_us: c.cpu_stall_us as u64,
                        memory_some_us: c.memory_stall_us as u64,
                        memory_full_us: (c.memory_stall_us / 4.0) as u64,
                        io_some_us: 0,
                    }),
                    temperature_millicelsius: Some((temperature * 1000.0) as i64),
                    cpu_frequency: Some(CpuFrequency { current_khz: frequency, max_khz: spec.max_khz }),
                    throttle: Some(flags),
                    pods: Vec::new(),
                }
            })
            .collect();
        let known = scenario.cluster_knowledge;
        for (p, spec) in scenario.pods.iter().enumerate() {
            let counters = &self.pods[p];
            let uid = format!("uid-{}-{}", spec.namespace, spec.name);
            nodes[self.pod_node[p]].pods.push(PodSample {
                name: if known { spec.name.clone() } else { uid.clone() },
                namespace: if known { spec.namespace.clone() } else { String::new() },
                workload: if known { self.pod_workloads[p].clone() } else { None },
                uid,
                ready: spec.ready,
                host_network: spec.host_network,
                rx_bytes: counters.rx as u64,
                tx_bytes: counters.tx as u64,
                established_inbound: connections[p],
                passive_opens: 0,
                inbound_peers: None,
                cpu_usage_us: counters.cpu_us as u64,
                memory_working_set_bytes: (spec.memory_mib * MIB) as u64,
            });
        }
        let workload = self.workload.clone().filter(|_| known).map(|w| WorkloadUnderTest::from_ready_pods(w, &nodes));
        Tick { timestamp_ms, nodes, workload, window_open: false }
    }
}

impl Iterator for ScenarioRun {
    type Item = Tick;

    fn next(&mut self) -> Option<Tick> {
        if self.step > self.steps {
            return None;
        }
        let sample_ms = self.scenario.sample_ms;
        let t = (self.step * sample_ms) as f64 / 1000.0;
        // The first sample shows counters of a node that has been up for ten minutes.
        let dt = if self.step == 0 { 600.0 } else { sample_ms as f64 / 1000.0 };
        let connections = self.advance(t, dt);
        let tick = self.sample(t, self.scenario.start_ms + self.step * sample_ms, &connections);
        self.step += 1;
        Some(tick)
    }
}
