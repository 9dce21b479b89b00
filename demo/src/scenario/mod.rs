//! Scenario files: what a user writes to mirror their cluster (nodes, workloads and their placement,
//! the Service, the proxy, the load, per-node extras) and the verdict bakery should reach.
//!
//! Scenarios are TOML (serde), one per file under `demo/scenarios/`. The shipped ones are compiled in,
//! so `bakery-demo --scenario NAME` works from any directory; `--scenario-file PATH` reads a user's.
//! [`Scenario::parse`] checks every cross-reference (placements name existing nodes, the Service names
//! an existing web workload or an in-cluster proxy in front of one, an L2 Service names its announcer,
//! ...) so a mistake is reported before anything is built.
//!
//! `expect` is the whole set of verdicts the load-test window must hold: `"none"`, one
//! `{ node, cause }`, or a list of them. A node written `pinned` is resolved after the run from the
//! web pods' own connection counts ([`crate::diagnose::resolve`]).
//!
//! # A hog that comes on mid-run
//!
//! A hog is on from the load's start unless it says when it comes on, in seconds into the load:
//! a burner's `burn_start_s` (in `extras`), a thermal overlay's `start_s` (the board is cool until
//! then: 50 C, at its maximum frequency, no throttle bit), or an L2 Service's
//! `failover = { announcer = "NODE", start_s = S }` (the named node's speaker takes the address
//! over from `announcer`, as MetalLB moves it when a speaker restarts). Until then the cluster is
//! balanced, so a verdict raised before the onset is a false flag and fails the match. A scenario
//! has one onset: its mid-run hogs start together, and no other hog is on from the start; the
//! onset lies inside the load, early enough for the verdict to be raised within
//! `verdict_within_s` and held for the 3 s a verdict needs to count.
//!
//! `verdict_within_s` (default 3) bounds the seconds from the hog's onset (the load's start for a
//! hog on from the start) to the first live verdict naming an expected node and cause
//! ([`crate::diagnose::first_flag`]); beyond it the run does not match.
//!
//! The types and the accessors the plan uses are here; `validate` checks a parsed
//! scenario, `expect` reads and writes `expect`, `tests` covers the format.
//!
//! A scenario is a cluster the demo builds, not a diagnosis fixture (`diagnosis/tests/fixtures/`,
//! simulated series for the diagnosis's own tests). Where the two say the same thing they use the
//! same key (`[[nodes]]` `name` and `role`, `expect` with `{ node, cause }`, `every-node` entry,
//! `temperature_celsius`, `namespace`, `response_bytes`); `bakery_diagnosis::fixture` lists where
//! they differ and why.

mod expect;
#[cfg(test)]
mod tests;
mod validate;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use self::expect::{Expectation, ExpectedNode, ExpectedVerdict, PinnedMarker};
use crate::{Error, Result};

/// The scenarios shipped with bakery, by name (the file name without `.toml`).
pub const SHIPPED: &[(&str, &str)] = &[
    ("l2-ingress", include_str!("../../scenarios/l2-ingress.toml")),
    ("local-policy", include_str!("../../scenarios/local-policy.toml")),
    ("keepalive-pinning", include_str!("../../scenarios/keepalive-pinning.toml")),
    ("balanced", include_str!("../../scenarios/balanced.toml")),
    ("uneven-placement", include_str!("../../scenarios/uneven-placement.toml")),
    ("hot-node", include_str!("../../scenarios/hot-node.toml")),
    ("nfs-neighbour", include_str!("../../scenarios/nfs-neighbour.toml")),
    ("memory-squeeze", include_str!("../../scenarios/memory-squeeze.toml")),
    ("balanced-2-node", include_str!("../../scenarios/balanced-2-node.toml")),
    ("balanced-3-node", include_str!("../../scenarios/balanced-3-node.toml")),
    ("session-affinity", include_str!("../../scenarios/session-affinity.toml")),
    ("in-cluster-proxy", include_str!("../../scenarios/in-cluster-proxy.toml")),
    ("l2-failover-midrun", include_str!("../../scenarios/l2-failover-midrun.toml")),
    ("burner-midrun", include_str!("../../scenarios/burner-midrun.toml")),
    ("thermal-midrun", include_str!("../../scenarios/thermal-midrun.toml")),
];

/// Nodes a scenario may have: the plan gives node k the LAN address .(11 + k) and the pod CIDR
/// 198.19.(k + 1).0/24, and one machine runs them all.
pub const MAX_NODES: usize = 12;

/// The scenario run when none is named: the reference cluster's story (master-02 takes the traffic).
pub const DEFAULT_SCENARIO: &str = "l2-ingress";

/// Seconds from the hog's onset to the first verdict naming it when a scenario states no bound.
pub const DEFAULT_VERDICT_WITHIN_S: f64 = 3.0;

/// A simulated cluster under load, and what bakery should conclude.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Seconds from the hog's onset (the load's start for a hog on from the start) to the first
    /// verdict naming an expected node and cause; absent: [`DEFAULT_VERDICT_WITHIN_S`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict_within_s: Option<f64>,
    /// What bakery should conclude: `"none"` (no hog), `{ node, cause }`, or a list of those.
    pub expect: Expectation,
    pub nodes: Vec<NodeSpec>,
    pub workloads: Vec<WorkloadSpec>,
    pub service: ServiceSpec,
    #[serde(default)]
    pub proxy: ProxySpec,
    #[serde(default)]
    pub load: LoadSpec,
}

/// A node and what runs on it besides pods.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    pub name: String,
    pub role: Role,
    /// The node's memory, MiB: the demo sets it as the memory limit of the node's cgroup, which its
    /// agent reads as the node's MemTotal (`--node-cgroup`). Absent: no limit, the machine's memory.
    #[serde(default)]
    pub memory_mib: Option<u64>,
    #[serde(default)]
    pub extras: Extras,
}

/// Memory a node needs besides the memory hog, MiB: its agent, its pods' stand-ins and its keeper
/// took 8 MiB together on a node with one WordPress pod (scenario `memory-squeeze`), so this leaves
/// room for more pods and for page cache. A hog that leaves less gets the node's processes
/// OOM-killed inside its memory limit instead of showing memory pressure.
pub const NODE_MEMORY_RESERVE_MIB: u64 = 48;

/// The smallest `memory_mib`: the reserve and a hog of the same size.
pub const MIN_NODE_MEMORY_MIB: u64 = 2 * NODE_MEMORY_RESERVE_MIB;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    ControlPlane,
    Worker,
}

/// Work on a node outside its pods.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extras {
    /// Cores of CPU burned by a process outside every pod (a stand-in for an NFS server or a noisy
    /// neighbour); 0 for none.
    #[serde(default)]
    pub burn_cores: f64,
    /// When the burner starts: with the load (the default: an NFS server works when the web pods
    /// are loaded, and the node's own baseline before the window stays clean) or at boot.
    #[serde(default)]
    pub burn_starts: BurnStart,
    /// Seconds into the load at which the burner starts, for a hog that comes on mid-run; absent:
    /// as `burn_starts` says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burn_start_s: Option<f64>,
    /// MiB held by a process outside every pod; 0 for none.
    #[serde(default)]
    pub memory_hog_mib: u64,
    /// Thermals the node's agent reads from a sysfs overlay instead of the machine's `/sys`.
    #[serde(default)]
    pub thermal: Option<ThermalOverlay>,
}

/// When a node's CPU burner starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BurnStart {
    /// Right before the load generator, once the load-test window is open.
    #[default]
    WithLoad,
    /// With the node, before bakery starts.
    AtBoot,
}

/// What a hot Raspberry Pi 5 shows in sysfs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThermalOverlay {
    /// `thermal_zone0/temp` of the `cpu-thermal` zone, degrees Celsius.
    pub temperature_celsius: f64,
    /// `scaling_cur_freq` of every core, MHz.
    pub current_mhz: u64,
    /// `cpuinfo_max_freq`, MHz (2400 on a Pi 5).
    #[serde(default = "default_max_mhz")]
    pub max_mhz: u64,
    /// The firmware's `get_throttled` word in hex, e.g. `"0x50005"` (bit 2 throttled now, bit 3 soft
    /// temperature limit; bits 16-19 the same since boot).
    #[serde(default)]
    pub throttled: String,
    /// Seconds into the load at which the board turns hot; until then the overlay shows a cool
    /// board ([`crate::sysfs::cool`]). Absent: hot from boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_s: Option<f64>,
}

fn default_max_mhz() -> u64 {
    2400
}

/// What a workload's pods run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum App {
    /// An HTTP server standing in for WordPress: each request burns CPU, asks the database, and
    /// returns a page.
    Web,
    /// A TCP service standing in for MySQL: each query is a small round trip.
    Database,
    /// An in-cluster reverse proxy, as Nginx Proxy Manager runs in the reference cluster: Debian's
    /// nginx in the pod, relaying every request to its `upstream` web workload's ClusterIP.
    Proxy,
}

/// The Kubernetes kind that owns the pods (through a ReplicaSet for a Deployment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
}

impl WorkloadKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Deployment => "Deployment",
            Self::StatefulSet => "StatefulSet",
        }
    }
}

/// A workload and where each of its replicas runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    pub name: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    pub kind: WorkloadKind,
    pub app: App,
    /// The node of each replica, in order: `["master-01", "worker-01", "worker-01"]` is three
    /// replicas, two of them on worker-01.
    pub placement: Vec<String>,
    /// CPU each request (web) or query (database) burns, milliseconds of CPU time.
    #[serde(default = "default_cpu_ms")]
    pub cpu_ms: f64,
    /// Bytes of each response: the page (web) or the result set (database).
    #[serde(default = "default_response_bytes")]
    pub response_bytes: u64,
    /// Web: the database workload each request queries.
    #[serde(default)]
    pub database: Option<String>,
    /// Web: queries per request (one connection per request, as PHP's mysqli opens).
    #[serde(default = "default_queries")]
    pub queries_per_request: u32,
    /// Database: wall time each query waits (disk, locks), milliseconds.
    #[serde(default)]
    pub query_wait_ms: f64,
    /// Port the pods listen on (80 for web and proxy, 3306 for a database when not given).
    #[serde(default)]
    pub port: Option<u16>,
    /// Proxy: the web workload it relays every request to, through that workload's ClusterIP.
    #[serde(default)]
    pub upstream: Option<String>,
    /// Proxy: keep upstream connections open and reuse them (nginx `keepalive`); Nginx Proxy
    /// Manager's default is off, one new upstream connection per request.
    #[serde(default)]
    pub upstream_keepalive: bool,
}

fn default_namespace() -> String {
    "default".to_string()
}
fn default_cpu_ms() -> f64 {
    4.0
}
fn default_response_bytes() -> u64 {
    50_000
}
fn default_queries() -> u32 {
    4
}

impl WorkloadSpec {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.app {
            App::Web | App::Proxy => 80,
            App::Database => 3306,
        })
    }
}

/// How client traffic reaches the Service's LoadBalancer IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Entry {
    /// MetalLB L2: one speaker (the announcer) answers ARP for the IP; all traffic enters there.
    L2,
    /// Every node is an entry (MetalLB BGP with ECMP at the router): the router spreads connections.
    EveryNode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrafficPolicy {
    /// Any node forwards to any ready endpoint (source NAT to the entry node).
    Cluster,
    /// The entry node serves only from its own endpoints (the client address is kept).
    Local,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionAffinity {
    None,
    /// The same client address goes to the same endpoint for `timeoutSeconds` (10800 by default).
    #[serde(rename = "ClientIP")]
    ClientIp,
}

/// The LoadBalancer Service: in front of the web workload, or of an in-cluster proxy that relays to
/// it (the web workload then has a ClusterIP Service of its own, as every workload does).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// The workload the Service selects: a web workload, or a proxy workload.
    pub workload: String,
    pub entry: Entry,
    /// With `entry = "l2"` (required there): the node whose MetalLB speaker answers ARP for the IP.
    #[serde(default)]
    pub announcer: Option<String>,
    #[serde(default = "default_policy")]
    pub external_traffic_policy: TrafficPolicy,
    #[serde(default = "default_affinity")]
    pub session_affinity: SessionAffinity,
    /// MetalLB's CRDs are installed and its objects published (the default). `false`: the address
    /// is announced (the same way) by something that records nothing in the Kubernetes API, such as
    /// kube-vip in ARP mode or a static route, so the API does not say which node takes it in.
    #[serde(default = "default_metallb")]
    pub metallb: bool,
    /// With `entry = "l2"`: another node's speaker takes the address over mid-run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<Failover>,
}

/// An L2 failover: from `start_s` seconds into the load, `announcer` answers ARP for the address
/// instead of the Service's first announcer (and writes MetalLB's status saying so).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Failover {
    pub announcer: String,
    pub start_s: f64,
}

fn default_policy() -> TrafficPolicy {
    TrafficPolicy::Cluster
}
fn default_affinity() -> SessionAffinity {
    SessionAffinity::None
}
fn default_metallb() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProxyKind {
    /// A real nginx in its own namespace, as Nginx Proxy Manager is.
    Nginx,
    /// The load generator goes straight at the LoadBalancer IP.
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySpec {
    #[serde(default = "default_proxy")]
    pub kind: ProxyKind,
    /// Keep upstream connections open and reuse them (nginx `keepalive`); NPM's default is off: one
    /// new upstream connection per request.
    #[serde(default)]
    pub upstream_keepalive: bool,
}

fn default_proxy() -> ProxyKind {
    ProxyKind::Nginx
}

impl Default for ProxySpec {
    fn default() -> Self {
        Self { kind: ProxyKind::Nginx, upstream_keepalive: false }
    }
}

/// What oha does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadSpec {
    /// How long oha runs, e.g. `"30s"`.
    #[serde(default = "default_duration", with = "humantime_serde_compat")]
    pub duration: Duration,
    /// oha `-c`.
    #[serde(default = "default_connections")]
    pub connections: u32,
    /// oha `-q`, requests per second over all connections; absent = as fast as possible.
    #[serde(default)]
    pub rate: Option<u32>,
    /// Reuse connections (oha's default); false = `--disable-keepalive`.
    #[serde(default = "default_keepalive")]
    pub keepalive: bool,
}

fn default_duration() -> Duration {
    Duration::from_secs(30)
}
fn default_connections() -> u32 {
    50
}
fn default_keepalive() -> bool {
    true
}

impl Default for LoadSpec {
    fn default() -> Self {
        Self { duration: default_duration(), connections: default_connections(), rate: None, keepalive: true }
    }
}

/// Durations written the way people write them (`"30s"`, `"1m 30s"`).
mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&humantime::format_duration(*duration).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

impl Scenario {
    /// Reads a scenario and checks its cross-references.
    pub fn parse(text: &str) -> Result<Self> {
        let scenario: Scenario = toml::from_str(text).map_err(|source| Error::ScenarioSyntax { source })?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// A shipped scenario by name.
    pub fn shipped(name: &str) -> Result<Self> {
        let (_, text) = SHIPPED.iter().find(|(shipped, _)| *shipped == name).ok_or_else(|| {
            let names: Vec<&str> = SHIPPED.iter().map(|(n, _)| *n).collect();
            Error::Scenario(format!("no shipped scenario {name:?}; choose one of {}", names.join(", ")))
        })?;
        Self::parse(text)
    }

    pub fn node(&self, name: &str) -> Option<&NodeSpec> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn workload(&self, name: &str) -> Option<&WorkloadSpec> {
        self.workloads.iter().find(|w| w.name == name)
    }

    /// The workload the LoadBalancer Service selects: the web workload, or the in-cluster proxy in
    /// front of it.
    pub fn entry_workload(&self) -> &WorkloadSpec {
        // validate() checked that it exists.
        self.workload(&self.service.workload).unwrap_or(&self.workloads[0])
    }

    /// The in-cluster proxy the Service selects, when it selects one.
    pub fn relay(&self) -> Option<&WorkloadSpec> {
        Some(self.entry_workload()).filter(|w| w.app == App::Proxy)
    }

    /// The web workload the load is for: the one behind the Service, directly or through the
    /// in-cluster proxy. The load-test window is about this workload.
    pub fn served(&self) -> &WorkloadSpec {
        let entry = self.entry_workload();
        match (entry.app, &entry.upstream) {
            // validate() checked that a proxy's upstream is a web workload.
            (App::Proxy, Some(upstream)) => self.workload(upstream).unwrap_or(entry),
            _ => entry,
        }
    }

    /// The bound on the seconds from the hog's onset to the first verdict naming it.
    pub fn verdict_within_s(&self) -> f64 {
        self.verdict_within_s.unwrap_or(DEFAULT_VERDICT_WITHIN_S)
    }

    /// Every mid-run start the scenario writes, seconds into the load, with what starts then
    /// (`"worker-01's burner"`); validate() checks that they agree.
    pub fn mid_run_starts(&self) -> Vec<(f64, String)> {
        let mut starts = Vec::new();
        for node in &self.nodes {
            if let Some(start) = node.extras.burn_start_s {
                starts.push((start, format!("{}'s burner", node.name)));
            }
            if let Some(start) = node.extras.thermal.as_ref().and_then(|t| t.start_s) {
                starts.push((start, format!("{}'s thermal overlay", node.name)));
            }
        }
        if let Some(failover) = &self.service.failover {
            starts.push((failover.start_s, format!("the failover to {}", failover.announcer)));
        }
        starts
    }

    /// When the hog comes on, seconds into the load; `None` when every hog is on from the start.
    pub fn onset_s(&self) -> Option<f64> {
        self.mid_run_starts().first().map(|(start, _)| *start)
    }

    /// The announcer of an L2 Service.
    pub fn announcer(&self) -> Option<&str> {
        match self.service.entry {
            Entry::L2 => self.service.announcer.as_deref(),
            Entry::EveryNode => None,
        }
    }

    /// Nodes that carry client traffic in: the L2 announcer, or with every-node entry each node the
    /// router spreads connections over. With `externalTrafficPolicy: Local`, MetalLB BGP announces
    /// the IP only from nodes with a ready endpoint of the Service, so only those are entries.
    pub fn entry_nodes(&self) -> Vec<&str> {
        match self.service.entry {
            Entry::L2 => self.announcer().into_iter().collect(),
            Entry::EveryNode => {
                let entry = self.entry_workload();
                self.nodes
                    .iter()
                    .map(|n| n.name.as_str())
                    .filter(|n| {
                        self.service.external_traffic_policy == TrafficPolicy::Cluster
                            || entry.placement.iter().any(|p| p == n)
                    })
                    .collect()
            }
        }
    }
}

/// A hex word with or without `0x`.
pub fn parse_hex(text: &str) -> Option<u32> {
    let digits = text.trim().trim_start_matches("0x").trim_start_matches("0X");
    u32::from_str_radix(digits, 16).ok()
}
