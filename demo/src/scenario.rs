//! Scenario files: what a user writes to mirror their cluster (nodes, workloads and their placement,
//! the Service, the proxy, the load, per-node extras) and the verdict bakery should reach.
//!
//! Scenarios are TOML (serde), one per file under `demo/scenarios/`. The shipped ones are compiled in,
//! so `bakery-demo --scenario NAME` works from any directory; `--scenario-file PATH` reads a user's.
//! [`Scenario::parse`] checks every cross-reference (placements name existing nodes, the Service names
//! an existing web workload, ...) so a mistake is reported before anything is built.

use std::collections::BTreeSet;
use std::time::Duration;

use bakery_diagnosis::Cause;
use serde::{Deserialize, Serialize};

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
];

/// The scenario run when none is named: the field guide's story (master-02 takes the traffic).
pub const DEFAULT_SCENARIO: &str = "l2-ingress";

/// A simulated cluster under load, and what bakery should conclude.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// What bakery should conclude: `"none"` (no hog) or `{ node, cause }`.
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
    /// MiB held by a process outside every pod; 0 for none.
    #[serde(default)]
    pub memory_hog_mib: u64,
    /// Thermals the node's agent reads from a sysfs overlay instead of the machine's `/sys`.
    #[serde(default)]
    pub thermal: Option<ThermalOverlay>,
}

/// What a hot Raspberry Pi 5 shows in sysfs (field guide, section 3).
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
    /// Port the pods listen on (80 for web, 3306 for a database when not given).
    #[serde(default)]
    pub port: Option<u16>,
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
            App::Web => 80,
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

/// The LoadBalancer Service in front of the web workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub workload: String,
    pub entry: Entry,
    /// With `entry = "l2"`: the node whose speaker announces the IP.
    #[serde(default)]
    pub announcer: Option<String>,
    #[serde(default = "default_policy")]
    pub external_traffic_policy: TrafficPolicy,
    #[serde(default = "default_affinity")]
    pub session_affinity: SessionAffinity,
}

fn default_policy() -> TrafficPolicy {
    TrafficPolicy::Cluster
}
fn default_affinity() -> SessionAffinity {
    SessionAffinity::None
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

/// The verdict a scenario expects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Expectation {
    /// `expect = "none"`: no node is a hog.
    NoHog(NoHog),
    /// `[expect] node = "master-02", cause = "ingress-concentration"`.
    Hog { node: ExpectedNode, cause: Cause },
}

/// The word `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoHog {
    None,
}

/// Which node the verdict should name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ExpectedNode {
    /// Whichever node this run's keep-alive connections pinned to: kube-proxy picks an endpoint per
    /// connection at random, so with few connections the hog re-rolls every run. Resolved after the
    /// run from the web pods' own connection counts: the node holding at least twice its expected
    /// share of the connections, or no hog when none does.
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
        let scenario: Scenario = toml::from_str(text).map_err(|e| Error::Scenario(e.to_string()))?;
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

    /// The web workload behind the Service.
    pub fn served(&self) -> &WorkloadSpec {
        // validate() checked that it exists.
        self.workload(&self.service.workload).unwrap_or(&self.workloads[0])
    }

    /// The announcer of an L2 Service (master-02 when not named).
    pub fn announcer(&self) -> Option<&str> {
        match self.service.entry {
            Entry::L2 => Some(self.service.announcer.as_deref().unwrap_or("master-02")),
            Entry::EveryNode => None,
        }
    }

    /// Nodes that carry client traffic in: the L2 announcer, or with every-node entry each node the
    /// router spreads connections over. With `externalTrafficPolicy: Local`, MetalLB BGP announces
    /// the IP only from nodes with a local endpoint, so only those are entries.
    pub fn entry_nodes(&self) -> Vec<&str> {
        match self.announcer() {
            Some(announcer) => vec![announcer],
            None => {
                let served = self.served();
                self.nodes
                    .iter()
                    .map(|n| n.name.as_str())
                    .filter(|n| {
                        self.service.external_traffic_policy == TrafficPolicy::Cluster
                            || served.placement.iter().any(|p| p == n)
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
        if self.nodes.is_empty() || self.nodes.len() > 20 {
            return fail(format!("{} nodes; use 1 to 20", self.nodes.len()));
        }
        let mut names = BTreeSet::new();
        for node in &self.nodes {
            if !is_dns_label(&node.name) || node.name.len() > 12 {
                return fail(format!("node name {:?}: use up to 12 lowercase letters, digits or dashes", node.name));
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
                (App::Database, Some(_)) => {
                    return fail(format!("database workload {:?} cannot query another database", workload.name));
                }
                _ => {}
            }
        }
        if pods > 40 {
            return fail(format!("{pods} pods; at most 40"));
        }
        match self.workload(&self.service.workload) {
            Some(w) if w.app == App::Web => {}
            _ => return fail(format!("the Service's workload {:?} is not a web workload", self.service.workload)),
        }
        if let Some(announcer) = self.announcer()
            && !names.contains(announcer)
        {
            return fail(format!("the announcer {announcer:?} is not a node"));
        }
        if self.service.entry == Entry::EveryNode && self.service.announcer.is_some() {
            return fail("an announcer only makes sense with entry = \"l2\"".into());
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
        if let Expectation::Hog { node: ExpectedNode::Named(node), .. } = &self.expect
            && !names.contains(node.as_str())
        {
            return fail(format!("the expected node {node:?} is not a node"));
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
        assert_eq!(scenario.expect, Expectation::NoHog(NoHog::None));
        assert_eq!(scenario.proxy, ProxySpec { kind: ProxyKind::Nginx, upstream_keepalive: false });
        assert_eq!(scenario.load.duration, Duration::from_secs(30));
        assert_eq!(scenario.load.connections, 50);
        assert!(scenario.load.keepalive);
        let web = scenario.served();
        assert_eq!((web.cpu_ms, web.response_bytes, web.port()), (4.0, 50_000, 80));
        assert_eq!(scenario.service.external_traffic_policy, TrafficPolicy::Cluster);
        assert_eq!(scenario.entry_nodes(), vec!["a", "b"]);
    }

    #[test]
    fn expectations_read_as_written() {
        let hog = MINIMAL.replace("expect = \"none\"", "expect = { node = \"b\", cause = \"ingress-concentration\" }");
        let scenario = Scenario::parse(&hog).unwrap();
        assert_eq!(
            scenario.expect,
            Expectation::Hog { node: ExpectedNode::Named("b".into()), cause: Cause::IngressConcentration }
        );
        let pinned =
            MINIMAL.replace("expect = \"none\"", "expect = { node = \"pinned\", cause = \"connection-pinning\" }");
        let scenario = Scenario::parse(&pinned).unwrap();
        assert_eq!(
            scenario.expect,
            Expectation::Hog { node: ExpectedNode::Pinned(PinnedMarker::Pinned), cause: Cause::ConnectionPinning }
        );
    }

    #[test]
    fn mistakes_are_named_before_anything_is_built() {
        let cases = [
            (MINIMAL.replace("placement = [\"a\", \"b\"]", "placement = [\"a\", \"c\"]"), "unknown node \"c\""),
            (MINIMAL.replace("entry = \"every-node\"", "entry = \"l2\"\nannouncer = \"z\""), "announcer \"z\""),
            (MINIMAL.replace("workload = \"web\"", "workload = \"db\""), "not a web workload"),
            (MINIMAL.replace("expect = \"none\"", "expect = { node = \"q\", cause = \"memory-pressure\" }"), "\"q\""),
            (MINIMAL.replace("expect = \"none\"", "expect = \"maybe\""), "expect"),
            (MINIMAL.replace("name = \"b\"", "name = \"a\""), "listed twice"),
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
        ];
        for (text, expected) in cases {
            let error = Scenario::parse(&text).unwrap_err().to_string();
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
    fn an_l2_service_defaults_to_master_02_as_announcer() {
        let text =
            MINIMAL.replace("entry = \"every-node\"", "entry = \"l2\"").replace("name = \"b\"", "name = \"master-02\"");
        let text = text.replace("placement = [\"a\", \"b\"]", "placement = [\"a\", \"master-02\"]");
        let scenario = Scenario::parse(&text).unwrap();
        assert_eq!(scenario.announcer(), Some("master-02"));
        assert_eq!(scenario.entry_nodes(), vec!["master-02"]);
    }

    #[test]
    fn hex_words_with_or_without_prefix() {
        assert_eq!(parse_hex("0x50005"), Some(0x50005));
        assert_eq!(parse_hex("50005"), Some(0x50005));
        assert_eq!(parse_hex("hot"), None);
    }
}
