//! The input domain: what the collector hands the analysis at every evaluation tick.
//!
//! Counters are raw and cumulative, exactly as the agents ship them (style note: "counters are shipped
//! raw and cumulative; rates and resets are computed where the series are stored"). The analysis keeps
//! the recent history itself, corrects resets (a counter that goes down restarted from zero: an agent
//! or a pod restarted) and computes increases over its spans. Gauges (connections, memory, temperature,
//! frequency, throttle flags) are the value at the sample time.
//!
//! Pods are nested in the node that sampled them: they share the node's sample timestamp, so a node's
//! pod counters and node counters always cover the same interval.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

/// One evaluation tick: the latest sample of every node, plus the workload under test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tick {
    /// Evaluation time, Unix epoch milliseconds. Hysteresis and reports use this clock; it must not go
    /// backwards. (It is a sample timestamp chosen by the caller, never the wall clock read here.)
    pub timestamp_ms: i64,
    /// Every node's latest sample. A node absent from a tick is gone: its verdicts clear.
    pub nodes: Vec<NodeSample>,
    /// The workload under test and its ready endpoints; `None` without cluster knowledge, in which case
    /// only node-level causes are diagnosed and every node is a peer.
    #[serde(default)]
    pub workload: Option<WorkloadUnderTest>,
    /// A load-test window is open at this tick. A node's own baseline (unattributed CPU) learns only
    /// outside windows, so that the load under test never becomes its own reference.
    #[serde(default)]
    pub window_open: bool,
}

/// The role a node carries in the cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeRole {
    ControlPlane,
    Worker,
    #[default]
    Unknown,
}

impl fmt::Display for NodeRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ControlPlane => "control-plane",
            Self::Worker => "worker",
            Self::Unknown => "unknown",
        })
    }
}

/// One node's sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeSample {
    pub name: String,
    #[serde(default)]
    pub role: NodeRole,
    /// When the agent took this sample (Unix epoch ms). Rates use the node's own timestamps, so nodes
    /// sampled at slightly different instants still compare fairly. A sample not newer than the node's
    /// previous one is ignored (the collector may re-send the latest sample).
    pub timestamp_ms: i64,
    /// USER_HZ, the unit of `/proc/stat` (100 on Linux unless the kernel was built otherwise).
    #[serde(default = "default_clock_ticks")]
    pub clock_ticks_per_second: u32,
    /// `/proc/stat` "cpu" line: jiffies per mode summed over all cores, cumulative.
    pub cpu: CpuJiffies,
    /// The node's own wire: its physical interfaces (a bond instead of its slaves; on a node that is a
    /// container, its uplink), each cumulative. Not `lo`, pod veths, bridges, VLANs or tunnels, whose
    /// bytes cross the wire too. Each interface is reset-corrected on its own before they are summed,
    /// so one interface restarting from zero does not look like the whole node resetting.
    pub nics: Vec<NicBytes>,
    /// `/proc/meminfo` MemTotal and MemAvailable (gauges).
    pub memory: NodeMemory,
    /// `/proc/pressure/*` cumulative stall totals; `None` on kernels without PSI.
    #[serde(default)]
    pub pressure: Option<PressureTotals>,
    /// Hottest thermal zone, millidegrees Celsius (`thermal_zone*/temp`).
    #[serde(default)]
    pub temperature_millicelsius: Option<i64>,
    /// Lowest current frequency over cores and the hardware maximum (`scaling_cur_freq`,
    /// `cpuinfo_max_freq`, kHz).
    #[serde(default)]
    pub cpu_frequency: Option<CpuFrequency>,
    /// The Raspberry Pi firmware's `get_throttled` "now" bits; `None` where the file does not exist.
    #[serde(default)]
    pub throttle: Option<ThrottleFlags>,
    /// The pods running on this node, sampled with it.
    #[serde(default)]
    pub pods: Vec<PodSample>,
}

fn default_clock_ticks() -> u32 {
    100
}

/// Jiffies per CPU mode (`man 5 proc`, /proc/stat), cumulative.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CpuJiffies {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
}

impl CpuJiffies {
    /// Time spent working: every mode but idle and iowait (iowait is idle time with IO outstanding).
    pub fn busy(&self) -> u64 {
        self.user + self.nice + self.system + self.irq + self.softirq + self.steal
    }

    /// Time spent in process context (user, nice, system): what a cgroup's CPU usage can account for.
    pub fn process(&self) -> u64 {
        self.user + self.nice + self.system
    }

    /// Interrupt handling (hard and soft IRQ): packet forwarding, NAT and conntrack land here.
    pub fn interrupts(&self) -> u64 {
        self.irq + self.softirq
    }
}

/// Bytes through one of the node's own interfaces, cumulative.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicBytes {
    #[serde(default)]
    pub name: String,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

impl NicBytes {
    pub fn new(name: impl Into<String>, rx_bytes: u64, tx_bytes: u64) -> Self {
        Self { name: name.into(), rx_bytes, tx_bytes }
    }
}

/// Memory gauges from `/proc/meminfo`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMemory {
    pub total_bytes: u64,
    pub available_bytes: u64,
}

impl NodeMemory {
    /// The node's working set: what is in use and cannot be reclaimed cheaply.
    pub fn used_bytes(&self) -> u64 {
        self.total_bytes.saturating_sub(self.available_bytes)
    }
}

/// Cumulative stall time, the `total=` field of `/proc/pressure/{cpu,memory,io}` (microseconds,
/// Documentation/accounting/psi.rst). Totals rather than the avg10 gauge, so the stall fraction of any
/// span can be computed without the kernel's 10 s smoothing lag.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PressureTotals {
    pub cpu_some_us: u64,
    pub memory_some_us: u64,
    pub memory_full_us: u64,
    pub io_some_us: u64,
}

/// Current and maximum CPU frequency, kHz.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuFrequency {
    pub current_khz: u64,
    pub max_khz: u64,
}

/// The "now" bits of the Pi firmware's `get_throttled` word (bit 0 under-voltage, 1 arm frequency
/// capped, 2 throttled, 3 soft temperature limit; raspberrypi/documentation, `vcgencmd get_throttled`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ThrottleFlags {
    pub under_voltage: bool,
    pub arm_frequency_capped: bool,
    pub throttled: bool,
    pub soft_temperature_limit: bool,
}

impl ThrottleFlags {
    pub fn any(&self) -> bool {
        self.under_voltage || self.arm_frequency_capped || self.throttled || self.soft_temperature_limit
    }
}

/// A workload: the owner of a pod (a Deployment through its ReplicaSet, a StatefulSet, a DaemonSet).
#[derive(Debug, Clone, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WorkloadRef {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl PartialEq for WorkloadRef {
    /// Name first: it differs most often, so unequal references are told apart without comparing the
    /// (usually equal) kinds. The analysis compares every pod's workload at every tick.
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.namespace == other.namespace && self.kind == other.kind
    }
}

impl WorkloadRef {
    pub fn new(kind: impl Into<String>, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self { kind: kind.into(), namespace: namespace.into(), name: name.into() }
    }

    /// A DaemonSet runs one pod per node: its load is the same everywhere by construction.
    pub fn is_daemon_set(&self) -> bool {
        self.kind == "DaemonSet"
    }
}

impl fmt::Display for WorkloadRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
    }
}

/// One pod's sample. Counters cumulative, from the pod's own network namespace and cgroup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodSample {
    pub uid: String,
    /// The pod name, or its UID without cluster knowledge.
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    /// The owning workload; `None` when unknown.
    #[serde(default)]
    pub workload: Option<WorkloadRef>,
    #[serde(default)]
    pub ready: bool,
    /// A hostNetwork pod sees the node's interfaces: its byte counters are the node's and are not
    /// counted as pod traffic.
    #[serde(default)]
    pub host_network: bool,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Established TCP connections on a listening port of the pod (gauge).
    #[serde(default)]
    pub established_inbound: u32,
    /// Connections the pod accepted, cumulative (`net/snmp` Tcp PassiveOpens of its namespace): with
    /// short-lived connections each one is a balancing decision of its own.
    #[serde(default)]
    pub passive_opens: u64,
    /// Distinct remote addresses of its established inbound connections, when known: how many client
    /// addresses reach it (after any source NAT on the way).
    #[serde(default)]
    pub inbound_peers: Option<u32>,
    /// Cumulative CPU time of the pod cgroup, microseconds (`cpu.stat` usage_usec).
    pub cpu_usage_us: u64,
    #[serde(default)]
    pub memory_working_set_bytes: u64,
}

/// The workload under test and where its ready endpoints are (from its EndpointSlices).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadUnderTest {
    pub workload: WorkloadRef,
    /// Ready endpoints per node name. Nodes absent or at zero host no endpoint.
    pub ready_endpoints: BTreeMap<String, u32>,
    /// The Service the load enters through and how the cluster declares its entry; `None` when no
    /// Service is known (no cluster knowledge, or none selects the workload): ingress is then judged
    /// without an entry model (see [`crate::entry`]).
    #[serde(default)]
    pub service: Option<ServiceEntry>,
    /// When `service` selects another workload that relays to this one (an in-cluster reverse proxy
    /// such as Nginx Proxy Manager): that workload, and its ready endpoints per node, which are where
    /// the entry nodes forward client traffic to.
    #[serde(default)]
    pub relay: Option<Relay>,
}

/// A workload between the entry Service and the workload under test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relay {
    pub workload: WorkloadRef,
    pub ready_endpoints: BTreeMap<String, u32>,
}

/// How a Service lets client traffic in, as the cluster declares it: the Service's own fields and,
/// with MetalLB, the status objects its speakers write. Read from the API, never inferred from
/// traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEntry {
    /// `namespace/name` of the Service.
    pub service: String,
    pub service_type: ServiceType,
    /// `spec.externalTrafficPolicy`: with `Local` an entry node serves only from its own endpoints.
    #[serde(default)]
    pub external_traffic_policy: TrafficPolicy,
    /// `spec.internalTrafficPolicy` (traffic from inside the cluster, such as an in-cluster proxy).
    #[serde(default)]
    pub internal_traffic_policy: TrafficPolicy,
    /// `spec.sessionAffinity: ClientIP` with `sessionAffinityConfig.clientIP.timeoutSeconds`;
    /// `None` for `sessionAffinity: None`.
    #[serde(default)]
    pub session_affinity: Option<SessionAffinity>,
    /// `status.loadBalancer.ingress[].ip` (and hostnames).
    #[serde(default)]
    pub load_balancer_ips: Vec<String>,
    /// Which nodes announce the Service's address, and from what object that was read.
    pub announcement: Announcement,
    /// The nodes allowed to announce (the advertisements' `nodeSelectors` evaluated against the
    /// nodes' labels); `None` when every node may.
    #[serde(default)]
    pub eligible_nodes: Option<BTreeSet<String>>,
}

/// `spec.type` of a Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ServiceType {
    ClusterIP,
    NodePort,
    LoadBalancer,
    ExternalName,
}

impl ServiceType {
    /// Client traffic from outside the cluster enters through this Service's own address or ports.
    pub fn is_entry(self) -> bool {
        matches!(self, Self::NodePort | Self::LoadBalancer)
    }
}

/// `externalTrafficPolicy` / `internalTrafficPolicy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TrafficPolicy {
    /// Any node forwards to any ready endpoint (source-NATed to the entry node).
    #[default]
    Cluster,
    /// A node serves only from its own ready endpoints (client address kept).
    Local,
}

/// `sessionAffinity: ClientIP`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionAffinity {
    /// `sessionAffinityConfig.clientIP.timeoutSeconds` (10800 when not set).
    pub timeout_seconds: u32,
}

/// Which nodes take the Service's client traffic in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "kebab-case")]
pub enum Announcement {
    /// MetalLB layer 2: one node answers ARP (NDP) for the address, so every client connection
    /// enters there. `source` names the object it was read from, e.g. `ServiceL2Status
    /// metallb-system/l2-x7k2p`.
    L2 { node: String, source: String },
    /// MetalLB BGP: these nodes announce the address and the router spreads connections over them
    /// (ECMP). `source` names the ServiceBGPStatus objects it was read from.
    Bgp { nodes: BTreeSet<String>, source: String },
    /// Every node takes client traffic on the Service's ports: a NodePort Service, or K3s ServiceLB
    /// (klipper-lb) whose pods hold the ports on every node.
    EveryNode { source: String },
    /// The Service is known but not who announces it (MetalLB not installed, or no status yet).
    Unknown { reason: String },
}

impl Announcement {
    /// The nodes this announcement names (none for every-node or unknown).
    pub fn nodes(&self) -> BTreeSet<String> {
        match self {
            Self::L2 { node, .. } => BTreeSet::from([node.clone()]),
            Self::Bgp { nodes, .. } => nodes.clone(),
            Self::EveryNode { .. } | Self::Unknown { .. } => BTreeSet::new(),
        }
    }
}

impl WorkloadUnderTest {
    /// Derives the endpoints from the pods' readiness, for callers without EndpointSlices: every ready
    /// pod of the workload is one endpoint on its node.
    pub fn from_ready_pods(workload: WorkloadRef, nodes: &[NodeSample]) -> Self {
        let mut ready_endpoints = BTreeMap::new();
        for node in nodes {
            let ready = node.pods.iter().filter(|p| p.ready && p.workload.as_ref() == Some(&workload)).count();
            if ready > 0 {
                ready_endpoints.insert(node.name.clone(), u32::try_from(ready).unwrap_or(u32::MAX));
            }
        }
        Self { workload, ready_endpoints, service: None, relay: None }
    }

    pub fn endpoints_on(&self, node: &str) -> u32 {
        self.ready_endpoints.get(node).copied().unwrap_or(0)
    }

    pub fn total_endpoints(&self) -> u64 {
        self.ready_endpoints.values().map(|&e| u64::from(e)).sum()
    }
}
