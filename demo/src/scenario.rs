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

use std::collections::BTreeSet;
use std::time::Duration;

use bakery_diagnosis::Cause;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Error, Result};

/// The scenarios shipped with bakery, by name (the file name without `.toml`).
pub const SHIPPED: &[(&str, &str)] = &[
    ("l2-ingress", include_str!("../scenarios/l2-ingress.toml")),
    ("local-policy", include_str!("../scenarios/local-policy.toml")),
    ("keepalive-pinning", include_str!("../scenarios/keepalive-pinning.toml")),
    ("balanced", include_str!("../scenarios/balanced.toml")),
    ("uneven-placement", include_str!("../scenarios/uneven-placement.toml")),
    ("hot-node", include_str!("../scenarios/hot-node.toml")),
    ("nfs-neighbour", include_str!("../scenarios/nfs-neighbour.toml")),
    ("memory-squeeze", include_str!("../scenarios/memory-squeeze.toml")),
    ("balanced-2-node", include_str!("../scenarios/balanced-2-node.toml")),
    ("balanced-3-node", include_str!("../scenarios/balanced-3-node.toml")),
    ("session-affinity", include_str!("../scenarios/session-affinity.toml")),
    ("in-cluster-proxy", include_str!("../scenarios/in-cluster-proxy.toml")),
];

/// Nodes a scenario may have: the plan gives node k the LAN address .(11 + k) and the pod CIDR
/// 198.19.(k + 1).0/24, and one machine runs them all.
pub const MAX_NODES: usize = 12;

/// The scenario run when none is named: the reference cluster's story (master-02 takes the traffic).
pub const DEFAULT_SCENARIO: &str = "l2-ingress";

/// A simulated cluster under load, and what bakery should conclude.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
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

/// The verdicts a scenario expects: exactly this set of (node, cause) pairs, active for a meaningful
/// part of the load-test window; empty for "no node is a hog". Written `expect = "none"`,
/// `expect = { node = "master-02", cause = "ingress-concentration" }`, or a list of such tables.
#[derive(Debug, Clone, PartialEq)]
pub struct Expectation {
    pub verdicts: Vec<ExpectedVerdict>,
}

/// One expected verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedVerdict {
    pub node: ExpectedNode,
    pub cause: Cause,
}

impl Expectation {
    /// No hog.
    pub fn none() -> Self {
        Self { verdicts: Vec::new() }
    }
}

impl Serialize for Expectation {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.verdicts.as_slice() {
            [] => serializer.serialize_str("none"),
            [one] => one.serialize(serializer),
            several => several.serialize(serializer),
        }
    }
}

/// Read through a JSON value so that each way of writing it gets its own error message (serde's
/// untagged enums only say that nothing matched).
impl<'de> Deserialize<'de> for Expectation {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        const FORMS: &str =
            "write expect = \"none\", expect = { node = \"NODE\", cause = \"CAUSE\" }, or a list of such tables";
        let one = |value: serde_json::Value| serde_json::from_value::<ExpectedVerdict>(value).map_err(D::Error::custom);
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::String(word) if word == "none" => Ok(Self::none()),
            serde_json::Value::Array(items) if items.is_empty() => {
                Err(D::Error::custom("expect = [] names no verdict: write expect = \"none\" for no hog"))
            }
            serde_json::Value::Array(items) => {
                Ok(Self { verdicts: items.into_iter().map(one).collect::<Result<_, _>>()? })
            }
            value @ serde_json::Value::Object(_) => Ok(Self { verdicts: vec![one(value)?] }),
            other => Err(D::Error::custom(format!("expect = {other}: {FORMS}"))),
        }
    }
}

/// Which node a verdict should name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ExpectedNode {
    /// Whichever node this run's connections pinned to (kube-proxy picks an endpoint per connection
    /// at random, so with few connections the hog re-rolls every run; with ClientIP affinity the
    /// first connection's pick holds for every later one). Resolved after the run from the web
    /// pods' own accepted-connection counts: the node holding at least twice its expected share of
    /// them, or no hog when none does.
    Pinned(PinnedMarker),
    Named(String),
}

/// The word `pinned`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PinnedMarker {
    Pinned,
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

    fn validate(&self) -> Result<()> {
        let fail = |what: String| Err(Error::Scenario(format!("scenario {:?}: {what}", self.name)));
        if !is_dns_label(&self.name) {
            return fail("the name must be lowercase letters, digits and dashes".into());
        }
        if self.nodes.is_empty() || self.nodes.len() > MAX_NODES {
            return fail(format!("{} nodes; use 1 to {MAX_NODES}", self.nodes.len()));
        }
        let mut names = BTreeSet::new();
        for node in &self.nodes {
            // The node's end of its LAN cable is `l-<node>`: interface names hold 15 bytes.
            if !is_dns_label(&node.name) || node.name.len() > 12 {
                return fail(format!("node name {:?}: use up to 12 lowercase letters, digits or dashes", node.name));
            }
            if node.name == "pinned" {
                return fail(
                    "a node cannot be called \"pinned\": in expect, that word means the node the connections pinned to"
                        .into(),
                );
            }
            if !names.insert(node.name.as_str()) {
                return fail(format!("node {:?} is listed twice", node.name));
            }
            let extras = &node.extras;
            if !(0.0..=8.0).contains(&extras.burn_cores) {
                return fail(format!("{}: burn_cores {} is outside 0 to 8", node.name, extras.burn_cores));
            }
            if extras.memory_hog_mib > 16 * 1024 {
                return fail(format!("{}: memory_hog_mib above 16384", node.name));
            }
            if let Some(memory) = node.memory_mib {
                if !(MIN_NODE_MEMORY_MIB..=1 << 20).contains(&memory) {
                    return fail(format!(
                        "{}: memory_mib {memory} is outside {MIN_NODE_MEMORY_MIB} to 1048576 (1 TiB)",
                        node.name
                    ));
                }
                if extras.memory_hog_mib + NODE_MEMORY_RESERVE_MIB > memory {
                    return fail(format!(
                        "{}: memory_hog_mib {} leaves less than {NODE_MEMORY_RESERVE_MIB} MiB of memory_mib {memory} for \
                         the node's agent and pods; the kernel would kill them within the node's memory limit",
                        node.name, extras.memory_hog_mib
                    ));
                }
            }
            if let Some(thermal) = &extras.thermal {
                if !thermal.throttled.is_empty() && parse_hex(&thermal.throttled).is_none() {
                    return fail(format!("{}: throttled {:?} is not hex like 0x50005", node.name, thermal.throttled));
                }
                if thermal.current_mhz == 0 || thermal.max_mhz == 0 {
                    return fail(format!("{}: frequencies must be positive", node.name));
                }
            }
        }
        let mut workload_names = BTreeSet::new();
        let mut chain_ids = BTreeSet::new();
        let mut pods = 0;
        for workload in &self.workloads {
            if !is_dns_label(&workload.name) || workload.name.len() > 20 || !is_dns_label(&workload.namespace) {
                return fail(format!(
                    "workload {:?}/{:?}: use lowercase DNS labels",
                    workload.namespace, workload.name
                ));
            }
            if !workload_names.insert(workload.name.as_str()) {
                return fail(format!("workload {:?} is listed twice", workload.name));
            }
            if !chain_ids.insert(crate::kube_proxy::chain_id(&workload.name)) {
                return fail(format!(
                    "workload {:?}: its first 12 letters and digits are another workload's, and kube-proxy's chains \
                     are named by them",
                    workload.name
                ));
            }
            if workload.placement.is_empty() {
                return fail(format!("workload {:?} has no replica", workload.name));
            }
            if let Some(missing) = workload.placement.iter().find(|n| !names.contains(n.as_str())) {
                return fail(format!("workload {:?} places a replica on unknown node {missing:?}", workload.name));
            }
            if !(0.0..=1000.0).contains(&workload.cpu_ms) || !(0.0..=10_000.0).contains(&workload.query_wait_ms) {
                return fail(format!("workload {:?}: cpu_ms or query_wait_ms out of range", workload.name));
            }
            if workload.response_bytes == 0 || workload.response_bytes > 16 << 20 {
                return fail(format!("workload {:?}: response_bytes must be 1 to 16 MiB", workload.name));
            }
            pods += workload.placement.len();
            match (workload.app, &workload.database) {
                (App::Web, Some(database)) => match self.workload(database) {
                    Some(db) if db.app == App::Database => {}
                    _ => {
                        return fail(format!(
                            "workload {:?} queries {database:?}, not a database workload",
                            workload.name
                        ));
                    }
                },
                (App::Database | App::Proxy, Some(_)) => {
                    return fail(format!("only a web workload queries a database; {:?} cannot", workload.name));
                }
                _ => {}
            }
            match (workload.app, &workload.upstream) {
                (App::Proxy, None) => {
                    return fail(format!(
                        "proxy workload {:?} needs an upstream: the web workload it relays to",
                        workload.name
                    ));
                }
                (App::Proxy, Some(upstream)) => match self.workload(upstream) {
                    Some(web) if web.app == App::Web => {}
                    _ => {
                        return fail(format!(
                            "proxy workload {:?} relays to {upstream:?}, which is not a web workload",
                            workload.name
                        ));
                    }
                },
                (_, Some(_)) => {
                    return fail(format!("only a proxy workload has an upstream; {:?} is not one", workload.name));
                }
                (_, None) if workload.upstream_keepalive => {
                    return fail(format!("upstream_keepalive is for proxy workloads; {:?} is not one", workload.name));
                }
                _ => {}
            }
            if workload.app == App::Proxy && workload.name != self.service.workload {
                return fail(format!(
                    "proxy workload {:?} is not behind the Service: set [service] workload = {:?}",
                    workload.name, workload.name
                ));
            }
        }
        if pods > 40 {
            return fail(format!("{pods} pods; at most 40"));
        }
        match self.workload(&self.service.workload) {
            Some(w) if w.app != App::Database => {}
            _ => {
                return fail(format!(
                    "the Service's workload {:?} is not a web or proxy workload",
                    self.service.workload
                ));
            }
        }
        match (self.service.entry, &self.service.announcer) {
            (Entry::L2, None) => {
                return fail(
                    "entry = \"l2\" needs its announcer: the node whose MetalLB speaker answers ARP for the IP \
                     (announcer = \"NODE\" under [service])"
                        .into(),
                );
            }
            (Entry::L2, Some(announcer)) if !names.contains(announcer.as_str()) => {
                return fail(format!("the announcer {announcer:?} is not a node"));
            }
            (Entry::L2, Some(announcer))
                if self.service.external_traffic_policy == TrafficPolicy::Local
                    && !self.entry_workload().placement.contains(announcer) =>
            {
                return fail(format!(
                    "with externalTrafficPolicy Local, MetalLB announces the IP only from a node with a ready \
                     endpoint of the Service, and the announcer {announcer:?} has no {:?} pod",
                    self.service.workload
                ));
            }
            (Entry::EveryNode, Some(_)) => {
                return fail("an announcer only makes sense with entry = \"l2\"".into());
            }
            _ => {}
        }
        let load = &self.load;
        if load.duration < Duration::from_secs(1) || load.duration > Duration::from_secs(3600) {
            return fail("the load duration must be 1 s to 1 h".into());
        }
        if load.connections == 0 || load.connections > 1000 {
            return fail("connections must be 1 to 1000".into());
        }
        if load.rate == Some(0) {
            return fail("rate must be positive (leave it out for as fast as possible)".into());
        }
        let mut expected = BTreeSet::new();
        for verdict in &self.expect.verdicts {
            if let ExpectedNode::Named(node) = &verdict.node
                && !names.contains(node.as_str())
            {
                return fail(format!("the expected node {node:?} is not a node"));
            }
            let node = match &verdict.node {
                ExpectedNode::Named(node) => node.as_str(),
                ExpectedNode::Pinned(_) => "pinned",
            };
            if !expected.insert((node, verdict.cause)) {
                return fail(format!("expect lists {node} {} twice", verdict.cause));
            }
        }
        Ok(())
    }
}

/// A hex word with or without `0x`.
pub fn parse_hex(text: &str) -> Option<u32> {
    let digits = text.trim().trim_start_matches("0x").trim_start_matches("0X");
    u32::from_str_radix(digits, 16).ok()
}

/// RFC 1123 label: lowercase letters, digits and dashes, not starting or ending with a dash.
fn is_dns_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        name = "mini"
        expect = "none"
        [[nodes]]
        name = "a"
        role = "control-plane"
        [[nodes]]
        name = "b"
        role = "worker"
        [[workloads]]
        name = "web"
        kind = "Deployment"
        app = "web"
        placement = ["a", "b"]
        [service]
        workload = "web"
        entry = "every-node"
    "#;

    #[test]
    fn every_shipped_scenario_parses() {
        for (name, text) in SHIPPED {
            let scenario = Scenario::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(scenario.name, *name, "the file name is the scenario name");
        }
        assert!(SHIPPED.iter().any(|(name, _)| *name == DEFAULT_SCENARIO));
    }

    #[test]
    fn every_file_in_the_scenarios_folder_is_shipped() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter_map(|n| n.strip_suffix(".toml").map(str::to_string))
            .collect();
        files.sort();
        let mut shipped: Vec<String> = SHIPPED.iter().map(|(n, _)| n.to_string()).collect();
        shipped.sort();
        assert_eq!(files, shipped);
    }

    #[test]
    fn defaults_fill_what_a_file_leaves_out() {
        let scenario = Scenario::parse(MINIMAL).unwrap();
        assert_eq!(scenario.expect, Expectation::none());
        assert_eq!(scenario.proxy, ProxySpec { kind: ProxyKind::Nginx, upstream_keepalive: false });
        assert_eq!(scenario.load.duration, Duration::from_secs(30));
        assert_eq!(scenario.load.connections, 50);
        assert!(scenario.load.keepalive);
        let web = scenario.served();
        assert_eq!((web.cpu_ms, web.response_bytes, web.port()), (4.0, 50_000, 80));
        assert_eq!(scenario.service.external_traffic_policy, TrafficPolicy::Cluster);
        assert!(scenario.service.metallb, "MetalLB is installed unless the scenario says otherwise");
        assert_eq!(scenario.entry_nodes(), vec!["a", "b"]);
        assert_eq!(scenario.relay(), None);
        let burner =
            Scenario::parse(&MINIMAL.replace("role = \"worker\"", "role = \"worker\"\nextras = { burn_cores = 1.0 }"))
                .unwrap();
        assert_eq!(
            burner.node("b").unwrap().extras.burn_starts,
            BurnStart::WithLoad,
            "the burner starts with the load"
        );
        let at_boot = MINIMAL.replace(
            "role = \"worker\"",
            "role = \"worker\"\nextras = { burn_cores = 1.0, burn_starts = \"at-boot\" }",
        );
        assert_eq!(Scenario::parse(&at_boot).unwrap().node("b").unwrap().extras.burn_starts, BurnStart::AtBoot);
    }

    fn expected(node: &str, cause: Cause) -> ExpectedVerdict {
        let node = if node == "pinned" {
            ExpectedNode::Pinned(PinnedMarker::Pinned)
        } else {
            ExpectedNode::Named(node.into())
        };
        ExpectedVerdict { node, cause }
    }

    #[test]
    fn expectations_read_as_written() {
        let hog = MINIMAL.replace("expect = \"none\"", "expect = { node = \"b\", cause = \"ingress-concentration\" }");
        let scenario = Scenario::parse(&hog).unwrap();
        assert_eq!(scenario.expect.verdicts, [expected("b", Cause::IngressConcentration)]);
        let pinned =
            MINIMAL.replace("expect = \"none\"", "expect = { node = \"pinned\", cause = \"connection-pinning\" }");
        let scenario = Scenario::parse(&pinned).unwrap();
        assert_eq!(scenario.expect.verdicts, [expected("pinned", Cause::ConnectionPinning)]);
        let several = MINIMAL.replace(
            "expect = \"none\"",
            "expect = [{ node = \"a\", cause = \"ingress-concentration\" }, { node = \"pinned\", cause = \"pod-concentration\" }]",
        );
        let scenario = Scenario::parse(&several).unwrap();
        assert_eq!(
            scenario.expect.verdicts,
            [expected("a", Cause::IngressConcentration), expected("pinned", Cause::PodConcentration)]
        );
        // Written back the way it was read.
        for text in [MINIMAL.to_string(), hog, several] {
            let scenario = Scenario::parse(&text).unwrap();
            let again = Scenario::parse(&toml::to_string(&scenario).unwrap()).unwrap();
            assert_eq!(again, scenario);
        }
    }

    #[test]
    fn mistakes_are_named_before_anything_is_built() {
        let l2 = |rest: &str| MINIMAL.replace("entry = \"every-node\"", &format!("entry = \"l2\"{rest}"));
        let with_proxy = |proxy: &str| {
            format!(
                "{}\n[[workloads]]\nname = \"npm\"\nkind = \"Deployment\"\n{proxy}\nplacement = [\"b\"]\n",
                MINIMAL.replace("workload = \"web\"", "workload = \"npm\"")
            )
        };
        let thirteen_nodes: String =
            (1..=13).map(|i| format!("[[nodes]]\nname = \"n{i}\"\nrole = \"worker\"\n")).collect();
        let cases = [
            (MINIMAL.replace("placement = [\"a\", \"b\"]", "placement = [\"a\", \"c\"]"), "unknown node \"c\""),
            (l2("\nannouncer = \"z\""), "announcer \"z\""),
            (l2(""), "entry = \"l2\" needs its announcer"),
            (
                l2("\nannouncer = \"a\"\nexternal_traffic_policy = \"Local\"")
                    .replace("placement = [\"a\", \"b\"]", "placement = [\"b\"]"),
                "the announcer \"a\" has no \"web\" pod",
            ),
            (MINIMAL.replace("entry = \"every-node\"", "entry = \"every-node\"\nannouncer = \"a\""), "only makes sense"),
            (MINIMAL.replace("workload = \"web\"", "workload = \"db\""), "not a web or proxy workload"),
            (MINIMAL.replace("expect = \"none\"", "expect = { node = \"q\", cause = \"memory-pressure\" }"), "\"q\""),
            (MINIMAL.replace("expect = \"none\"", "expect = \"maybe\""), "expect = \"maybe\": write expect = \"none\""),
            (MINIMAL.replace("expect = \"none\"", "expect = []"), "write expect = \"none\" for no hog"),
            (
                MINIMAL.replace("expect = \"none\"", "expect = { node = \"a\", cause = \"too-much\" }"),
                "unknown variant `too-much`",
            ),
            (
                MINIMAL.replace(
                    "expect = \"none\"",
                    "expect = [{ node = \"a\", cause = \"pod-concentration\" }, { node = \"a\", cause = \"pod-concentration\" }]",
                ),
                "expect lists a pod-concentration twice",
            ),
            (MINIMAL.replace("name = \"b\"", "name = \"a\""), "listed twice"),
            (MINIMAL.replace("name = \"b\"", "name = \"pinned\"").replace("\"b\"]", "\"pinned\"]"), "cannot be called"),
            (MINIMAL.replace("name = \"b\"", "name = \"worker-node-01\""), "up to 12"),
            (format!("{MINIMAL}\n[load]\nduration = \"soon\""), "duration"),
            (format!("{MINIMAL}\n[load]\nrate = 0"), "rate"),
            (MINIMAL.replace("app = \"web\"", "app = \"web\"\ndatabase = \"web\""), "not a database"),
            (MINIMAL.replace("role = \"worker\"", "role = \"worker\"\nextras = { burn_cores = 99.0 }"), "burn_cores"),
            (MINIMAL.replace("role = \"worker\"", "role = \"worker\"\nmemory_mib = 32"), "memory_mib 32 is outside"),
            (
                MINIMAL.replace(
                    "role = \"worker\"",
                    "role = \"worker\"\nmemory_mib = 512\nextras = { memory_hog_mib = 480 }",
                ),
                "memory_hog_mib 480 leaves less than 48 MiB of memory_mib 512",
            ),
            (format!("{MINIMAL}\n{thirteen_nodes}"), "15 nodes; use 1 to 12"),
            (with_proxy("app = \"proxy\""), "needs an upstream"),
            (with_proxy("app = \"proxy\"\nupstream = \"npm\""), "relays to \"npm\", which is not a web workload"),
            (with_proxy("app = \"web\"\nupstream = \"web\""), "only a proxy workload has an upstream"),
            (with_proxy("app = \"web\"\nupstream_keepalive = true"), "upstream_keepalive is for proxy workloads"),
            (with_proxy("app = \"proxy\"\nupstream = \"web\"\ndatabase = \"web\""), "only a web workload queries"),
            (
                with_proxy("app = \"proxy\"\nupstream = \"web\"").replace("workload = \"npm\"", "workload = \"web\""),
                "proxy workload \"npm\" is not behind the Service",
            ),
            (
                format!("{MINIMAL}\n[[workloads]]\nname = \"web-2\"\nkind = \"Deployment\"\napp = \"web\"\nplacement = [\"a\"]\n")
                    .replace("name = \"web\"", "name = \"w-e-b2\"")
                    .replace("workload = \"web\"", "workload = \"w-e-b2\""),
                "kube-proxy's chains",
            ),
        ];
        for (text, expected) in cases {
            let error = bakery_lab::chain(&Scenario::parse(&text).unwrap_err());
            assert!(error.contains(expected), "expected {expected:?} in {error:?}");
        }
    }

    #[test]
    fn a_node_memory_holds_its_hog_and_the_reserve_and_defaults_to_no_limit() {
        let scenario = Scenario::parse(MINIMAL).unwrap();
        assert_eq!(scenario.node("b").unwrap().memory_mib, None, "no limit: the machine's memory");
        let squeezed = MINIMAL
            .replace("role = \"worker\"", "role = \"worker\"\nmemory_mib = 512\nextras = { memory_hog_mib = 464 }");
        let scenario = Scenario::parse(&squeezed).unwrap();
        let node = scenario.node("b").unwrap();
        assert_eq!((node.memory_mib, node.extras.memory_hog_mib), (Some(512), 464));
    }

    #[test]
    fn an_l2_service_enters_at_its_named_announcer_only() {
        let text = MINIMAL.replace("entry = \"every-node\"", "entry = \"l2\"\nannouncer = \"b\"");
        let scenario = Scenario::parse(&text).unwrap();
        assert_eq!(scenario.announcer(), Some("b"));
        assert_eq!(scenario.entry_nodes(), vec!["b"]);
    }

    #[test]
    fn a_service_in_front_of_a_proxy_serves_the_proxys_upstream() {
        let text = format!(
            "{}\n[[workloads]]\nname = \"npm\"\nkind = \"Deployment\"\napp = \"proxy\"\nupstream = \"web\"\nplacement = [\"b\"]\n",
            MINIMAL
                .replace("workload = \"web\"", "workload = \"npm\"")
                .replace("entry = \"every-node\"", "entry = \"every-node\"\nexternal_traffic_policy = \"Local\"")
        );
        let scenario = Scenario::parse(&text).unwrap();
        assert_eq!(scenario.entry_workload().name, "npm");
        assert_eq!(scenario.relay().map(|w| w.name.as_str()), Some("npm"));
        assert_eq!(scenario.served().name, "web", "the load is for the web workload behind the proxy");
        assert_eq!(scenario.entry_workload().port(), 80);
        assert!(!scenario.entry_workload().upstream_keepalive, "one upstream connection per request by default");
        assert_eq!(scenario.entry_nodes(), vec!["b"], "Local: MetalLB announces only where the proxy runs");
    }

    #[test]
    fn one_to_twelve_nodes_are_accepted() {
        let nodes = |n: usize| -> String {
            (1..=n).map(|i| format!("[[nodes]]\nname = \"worker-{i:02}\"\nrole = \"worker\"\n")).collect()
        };
        for n in [1, MAX_NODES] {
            let text = format!(
                "name = \"n{n}\"\nexpect = \"none\"\n{}[[workloads]]\nname = \"web\"\nkind = \"Deployment\"\napp = \"web\"\nplacement = [\"worker-01\", \"worker-01\"]\n[service]\nworkload = \"web\"\nentry = \"l2\"\nannouncer = \"worker-{n:02}\"\n",
                nodes(n)
            );
            let scenario = Scenario::parse(&text).unwrap_or_else(|e| panic!("{n} nodes: {e}"));
            assert_eq!(scenario.nodes.len(), n);
        }
    }

    #[test]
    fn hex_words_with_or_without_prefix() {
        assert_eq!(parse_hex("0x50005"), Some(0x50005));
        assert_eq!(parse_hex("50005"), Some(0x50005));
        assert_eq!(parse_hex("hot"), None);
    }
}
