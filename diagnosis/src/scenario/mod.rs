//! Synthetic cluster series from a scenario definition: the fixtures of the scenario tests, the
//! properties, the benchmark, and demos.
//!
//! A scenario describes a cluster under load in physical terms (nodes, pods, the Service and how the
//! cluster declares its entry, the load generator's connections, work outside pods, heat, memory)
//! rather than in terms of the causes the diagnosis should find; [`Scenario::run`] expands it into a
//! deterministic series of [`crate::Tick`]s with raw cumulative counters, as the agents would ship them.
//! Definitions are serde types, written as TOML files under `tests/scenarios/`.
//!
//! The traffic is simulated request by request (`simulate`), not split by weights: each client
//! connection picks its entry node (the layer-2 announcer, or one of the ECMP next hops at random) and
//! kube-proxy picks its endpoint at random among those the policy allows (or the one a client address
//! is pinned to under session affinity); with keep-alive the connection keeps both for the run and
//! sends a random number of requests per sample, without it every request is a new connection. So
//! the spread a diagnosis sees is the spread of random placement and random arrivals, which the
//! diagnosis' own noise model must cope with, not assume. Keep-alive connections may also be placed
//! by hand (`connections = [3, 1, 0]`) when a fixture needs one particular spread.
//!
//! Around the requests:
//! * client bytes enter at the entry node. Traffic for a pod on another node is forwarded: the entry
//!   NIC carries it in and out again, and the forwarding costs softirq there;
//! * a backend pod (the database) gets work and bytes for every request; bytes between nodes cross
//!   both NICs;
//! * work outside pods (an NFS server, the control plane) adds process CPU and NIC bytes that no pod
//!   accounts for;
//! * a throttled node runs its pods' work at a lower frequency: the same requests cost more CPU.
//!
//! Noise: node CPU and NIC rates are multiplied by `1 + jitter * u` with `u` uniform in [-1, 1), and
//! requests arrive as Poisson counts, all drawn from a SplitMix64 generator seeded by the scenario (no
//! system randomness: runs are reproducible).

mod simulate;

use serde::{Deserialize, Serialize};

use crate::input::{Announcement, NodeRole, ServiceEntry, WorkloadRef};
use crate::{Error, Result};

pub use simulate::ScenarioRun;

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
    /// The Service the load enters through, as the cluster declares it (in the ticks when there is
    /// cluster knowledge). It also sets the physics: the announcement says where connections enter
    /// (unless the load names an entry), the policy which endpoints an entry may use, and affinity
    /// pins each client address to one endpoint.
    #[serde(default)]
    pub service: Option<ServiceEntry>,
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
    /// Over every node, each connection at one picked at random (BGP with ECMP), each forwarding
    /// to pods elsewhere under the Cluster policy.
    Spread,
    /// At one node, which forwards to pods elsewhere (MetalLB L2 announcer, Cluster policy).
    Node(String),
}

/// The load generator's connections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Connections {
    /// This many keep-alive connections, each placed by kube-proxy at random.
    Count(u32),
    /// Keep-alive connections placed by hand: this many on each serving pod, in the order the pods
    /// are listed.
    Placed(Vec<u32>),
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
    /// Keep-alive connections; absent: no keep-alive, every request is a connection of its own.
    #[serde(default)]
    pub connections: Option<Connections>,
    /// Where connections enter; absent: where the Service's announcement says (every node without
    /// one).
    #[serde(default)]
    pub entry: Option<Entry>,
    /// Softirq CPU seconds per MB forwarded by an entry node.
    #[serde(default = "default_softirq_per_mb")]
    pub softirq_seconds_per_forwarded_mb: f64,
    #[serde(default)]
    pub backend: Option<Backend>,
    /// Under session affinity: the pod every entry's affinity picked first (else each entry picks
    /// one at random).
    #[serde(default)]
    pub affinity_pod: Option<String>,
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
    pub connections: Option<Connections>,
    #[serde(default)]
    pub entry: Option<Entry>,
    /// The Service's announcement while the phase lasts (MetalLB moved the address, for example).
    #[serde(default)]
    pub announcement: Option<Announcement>,
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

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.next_f64().max(f64::MIN_POSITIVE);
        let v = self.next_f64();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// A Poisson count with mean `mean`: Knuth's product of uniforms for small means, the normal
    /// approximation (rounded, at least 0) from 30 on, where it is within a percent.
    pub fn poisson(&mut self, mean: f64) -> u64 {
        if mean.is_nan() || mean <= 0.0 {
            return 0;
        }
        if mean >= 30.0 {
            return (mean + mean.sqrt() * self.normal()).round().max(0.0) as u64;
        }
        let limit = (-mean).exp();
        let mut product = self.next_f64();
        let mut count = 0;
        while product > limit {
            product *= self.next_f64();
            count += 1;
        }
        count
    }
}
