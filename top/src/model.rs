//! The TUI's own data model: one [`Snapshot`] of the cluster as bakery-top shows it (rates, not
//! counters), independent of where it came from. Sources convert wire types into it at the edge;
//! the state, the views and the `--once` output read only this.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The cluster at one instant, as bakery-top shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// When the source took it, Unix epoch milliseconds (the client's clock).
    pub taken_ms: i64,
    /// One entry per node the collector knows, in the collector's order.
    pub nodes: Vec<NodeView>,
    /// Every pod the nodes reported.
    pub pods: Vec<PodView>,
    /// What the traffic share column measures.
    pub share_basis: ShareBasis,
    /// Live verdicts; `None` when the collector does not serve them (no `Query.Alerts` yet).
    pub alerts: Option<Vec<Alert>>,
    /// Load-test windows and their reports; `None` when the collector does not serve them.
    pub windows: Option<Vec<WindowSummary>>,
}

/// The role a node carries in the cluster (Kubernetes `node-role.kubernetes.io/*` labels).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    ControlPlane,
    Worker,
    /// The collector does not know (no cluster access, or no role field on the wire yet).
    #[default]
    Unknown,
}

impl Role {
    /// The word shown in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ControlPlane => "control-plane",
            Role::Worker => "worker",
            Role::Unknown => "-",
        }
    }
}

/// How the agent of a node is doing, as the collector sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AgentState {
    /// Streaming and on time.
    #[default]
    Live,
    /// Connected but silent for 3 intervals or more.
    Stale,
    /// No stream: the numbers are the last ones received.
    Gone,
}

/// One row of the nodes view. Every measurement is optional: an agent may lack the signal (no
/// thermal zone in a VM), or it is the first sample and no rate can be computed yet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    pub name: String,
    pub role: Role,
    pub agent: AgentState,
    /// Timestamp of the node's latest sample, Unix epoch ms (the node's clock).
    pub sample_ms: i64,
    /// Busy share of all cores over the last interval, in percent, and the softirq part of it
    /// (packet forwarding, NAT and conntrack land in softirq).
    pub cpu: Option<CpuUse>,
    pub memory: Option<MemoryUse>,
    /// The hottest sensor, degrees Celsius.
    pub temperature_celsius: Option<f64>,
    pub frequency: Option<Frequency>,
    pub throttle: ThrottleMark,
    /// Bytes per second through the node's physical interfaces (not `lo`, veths, bridges, tunnels).
    pub nic: Option<Rates>,
    /// This node's share of the traffic, against the share it should take.
    pub share: Option<Share>,
    /// ESTABLISHED inbound TCP connections to the pods on this node (hostNetwork pods excluded:
    /// their sockets are the node's).
    pub inbound_connections: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuUse {
    pub busy_percent: f64,
    pub softirq_percent: f64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryUse {
    /// MemTotal - MemAvailable (`man 5 proc`, /proc/meminfo).
    pub used_bytes: u64,
    pub total_bytes: u64,
}

impl MemoryUse {
    pub fn percent(&self) -> f64 {
        if self.total_bytes == 0 { 0.0 } else { self.used_bytes as f64 * 100.0 / self.total_bytes as f64 }
    }
}

/// The slowest core's current frequency against the hardware maximum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frequency {
    pub current_khz: u64,
    pub max_khz: u64,
}

/// The Raspberry Pi firmware's `get_throttled` "now" bits that matter to a reader. All false where
/// the node has no such file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThrottleMark {
    /// Bit 2: throttled now.
    pub throttled: bool,
    /// Bit 1: ARM frequency capped now.
    pub frequency_capped: bool,
    /// Bit 3: soft temperature limit active now.
    pub soft_temperature_limit: bool,
    /// Bit 0 (or an hwmon `in0_lcrit_alarm`): under-voltage now.
    pub under_voltage: bool,
}

impl ThrottleMark {
    pub fn any(&self) -> bool {
        self.throttled || self.frequency_capped || self.soft_temperature_limit || self.under_voltage
    }
}

/// Receive and transmit bytes per second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Rates {
    pub rx_bytes_per_second: f64,
    pub tx_bytes_per_second: f64,
}

impl Rates {
    pub fn total(&self) -> f64 {
        self.rx_bytes_per_second + self.tx_bytes_per_second
    }
}

/// A node's observed share of the traffic and its expected share, both in [0, 1].
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Share {
    pub observed: f64,
    pub expected: f64,
}

impl Share {
    /// Observed over expected: 1.0 is a fair share, 2.0 twice it.
    pub fn normalised(&self) -> Option<f64> {
        (self.expected > 0.0).then(|| self.observed / self.expected)
    }
}

/// What the share column compares.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ShareBasis {
    /// The workload under test ("namespace/name"): observed share of its pods' traffic, expected
    /// share = the node's share of its ready endpoints (as the diagnosis computes it, DIAGNOSIS.md).
    Workload { name: String },
    /// No workload known: each node's share of all pod traffic against an even split, the way the
    /// diagnosis treats every node as a peer without cluster knowledge.
    #[default]
    AllPods,
}

impl fmt::Display for ShareBasis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShareBasis::Workload { name } => write!(f, "workload {name}"),
            ShareBasis::AllPods => f.write_str("all pod traffic, even split expected"),
        }
    }
}

/// One row of the pods view, like `kubectl get pods -o wide` plus what the pod does.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodView {
    /// The pod's name, or its UID while the collector has no cluster knowledge.
    pub name: String,
    /// Empty when unknown.
    pub namespace: String,
    pub uid: String,
    pub node: String,
    /// The owning workload ("Deployment/wordpress"); `None` when unknown.
    pub workload: Option<String>,
    /// `None` when unknown.
    pub ready: Option<bool>,
    pub host_network: bool,
    /// `None` for hostNetwork pods (their counters are the node's) and before a second sample.
    pub network: Option<Rates>,
    pub inbound_connections: Option<u64>,
    /// CPU cores in use (1.0 = one full core).
    pub cpu_cores: Option<f64>,
    pub memory_working_set_bytes: Option<u64>,
}

/// The diagnosis vocabulary (`bakery_diagnosis::Cause`). A cause this build does not know is kept as text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cause {
    IngressConcentration,
    PodConcentration,
    ConnectionPinning,
    UnattributedCpu,
    ColocatedHotPod,
    ThermalThrottling,
    MemoryPressure,
    #[serde(untagged)]
    Other(String),
}

impl Cause {
    /// Parses the wire spelling; unknown words become [`Cause::Other`].
    pub fn from_wire(word: &str) -> Cause {
        match word {
            "ingress-concentration" => Cause::IngressConcentration,
            "pod-concentration" => Cause::PodConcentration,
            "connection-pinning" => Cause::ConnectionPinning,
            "unattributed-cpu" => Cause::UnattributedCpu,
            "colocated-hot-pod" => Cause::ColocatedHotPod,
            "thermal-throttling" => Cause::ThermalThrottling,
            "memory-pressure" => Cause::MemoryPressure,
            other => Cause::Other(other.to_string()),
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Cause::IngressConcentration => "ingress-concentration",
            Cause::PodConcentration => "pod-concentration",
            Cause::ConnectionPinning => "connection-pinning",
            Cause::UnattributedCpu => "unattributed-cpu",
            Cause::ColocatedHotPod => "colocated-hot-pod",
            Cause::ThermalThrottling => "thermal-throttling",
            Cause::MemoryPressure => "memory-pressure",
            Cause::Other(word) => word,
        })
    }
}

/// One live verdict: which node, why, the numbers behind it, and what to do next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub node: String,
    pub cause: Cause,
    /// The numbers, in words ("pod rx 2.6x its expected share; 31 of 50 connections").
    pub evidence: String,
    /// In [0, 1].
    pub confidence: f64,
    pub next_step: String,
    /// When the verdict was first raised, Unix epoch ms.
    pub since_ms: i64,
}

/// A load-test window and, once closed, its report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowSummary {
    pub id: String,
    pub name: String,
    /// "namespace/name" of the workload under test, when known or inferred.
    pub workload: Option<String>,
    /// Opened automatically on a traffic surge rather than by `window start`.
    pub automatic: bool,
    pub start_ms: i64,
    /// `None` while open.
    pub end_ms: Option<i64>,
    /// The verdicts of the report ("master-02 connection-pinning"); empty when no hog was flagged.
    pub verdicts: Vec<String>,
}
