//! The campaign's generator: random, valid scenarios for the mini-bakery from one seed, pure and
//! deterministic (scenario `i` of seed `s` is the same on any machine and in a campaign of any
//! length).
//!
//! Each scenario first draws the cause it injects (none or one of seven), then a cluster for it:
//! nodes with names and roles, WordPress's replicas and MySQL placed at random, the entry, the
//! policy, the affinity, what is in front, oha's keep-alive and connections, the node-level extra.
//! The draft is written as TOML and read back with [`Scenario::parse`] (so it is a scenario a user
//! could write), and [`Truth::of`] must state its truth under the injected cause's rule; anything
//! else, a share near a boundary for instance, is drawn again from the same stream.

use std::collections::BTreeMap;
use std::time::Duration;

use bakery_diagnosis::Cause;
use serde::Serialize;

use super::truth::{self, AfterRun, Rule, Truth};
use crate::scenario::{
    App, BurnStart, Entry, Expectation, ExpectedNode, ExpectedVerdict, Extras, LoadSpec, NodeSpec, PinnedMarker,
    ProxyKind, ProxySpec, Role, Scenario, ServiceSpec, SessionAffinity, ThermalOverlay, TrafficPolicy, WorkloadKind,
    WorkloadSpec,
};
use crate::{Error, Result};

/// How long oha runs in every campaign scenario.
pub const LOAD: Duration = Duration::from_secs(12);
/// oha's rate, requests per second over all connections (the shipped scenarios' rate).
pub const RATE: u32 = 100;
/// Nodes per scenario.
pub const NODES: std::ops::RangeInclusive<usize> = 2..=9;
/// WordPress replicas per scenario.
pub const WEB_REPLICAS: std::ops::RangeInclusive<usize> = 1..=4;
/// oha's connections when nothing asks for many or few.
const CONNECTIONS: std::ops::RangeInclusive<u32> = 8..=64;
/// oha's keep-alive connections when they reach the entry or the pods and must spread evenly.
const MANY: std::ops::RangeInclusive<u32> = truth::MANY_CONNECTIONS..=64;
/// Draws per scenario before giving up (a draw is rejected only when a share lands near a
/// boundary or the cause needs more than the cluster drawn; a few tries are the rule).
const ATTEMPTS: usize = 10_000;

pub const WEB: &str = "wordpress";
pub const DATABASE: &str = "mysql";
pub const PROXY: &str = "nginx-proxy-manager";

/// One generated scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// 1-based position in the campaign.
    pub index: usize,
    pub seed: u64,
    pub scenario: Scenario,
    pub truth: Truth,
}

/// A small deterministic generator (SplitMix64): the campaign must not change with a library's
/// version.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        // `mix` adds the increment before it finalises: together, one SplitMix64 step.
        let state = self.0;
        self.0 = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        crate::plan::mix(state)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n.max(1) as u128) >> 64) as usize
    }

    pub fn range(&mut self, range: std::ops::RangeInclusive<usize>) -> usize {
        range.start() + self.below(range.end() - range.start() + 1)
    }

    pub fn range_u32(&mut self, range: std::ops::RangeInclusive<u32>) -> u32 {
        let width = (range.end() - range.start()) as usize + 1;
        range.start() + u32::try_from(self.below(width)).unwrap_or(0)
    }

    pub fn coin(&mut self) -> bool {
        self.below(2) == 1
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

/// Scenarios `1..=count` of the campaign with `seed`.
pub fn campaign(seed: u64, count: usize) -> Result<Vec<Generated>> {
    (1..=count).map(|index| generate(seed, index)).collect()
}

/// Scenario `index` (1-based) of the campaign with `seed`.
pub fn generate(seed: u64, index: usize) -> Result<Generated> {
    let mut rng = Rng::new(crate::plan::mix(seed ^ crate::plan::mix(index as u64)));
    let rule = *rng.pick(&Rule::ALL);
    let name = format!("campaign-{seed}-{index:02}");
    for _ in 0..ATTEMPTS {
        let draft = Draft::draw(&mut rng, rule);
        let Some(scenario) = draft.scenario(&name, seed, index) else { continue };
        match Truth::of(&scenario) {
            Ok(truth) if truth.rule == rule => {
                let scenario = with_expectation(scenario, &truth);
                // Written as a user would write it, and read back through every check.
                let text = toml::to_string(&scenario)
                    .map_err(|source| Error::ScenarioText { name: name.to_string(), source })?;
                let scenario = Scenario::parse(&text)?;
                return Ok(Generated { index, seed, scenario, truth });
            }
            _ => continue,
        }
    }
    Err(Error::Scenario(format!("{name}: no valid {rule} scenario in {ATTEMPTS} draws")))
}

/// Where the load enters from: what is in front of the Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Front {
    /// The outside nginx, one new upstream connection per request.
    Nginx,
    /// oha straight at the LoadBalancer IP.
    Direct,
    /// Nginx Proxy Manager in the cluster, on this node, behind the Service.
    InCluster(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeExtra {
    Burner,
    Hot,
    MemoryHog,
}

/// A scenario as drawn, by node index.
#[derive(Debug, Clone)]
struct Draft {
    nodes: Vec<(String, Role)>,
    web: Vec<usize>,
    database: usize,
    front: Front,
    entry: Entry,
    announcer: Option<usize>,
    policy: TrafficPolicy,
    affinity: SessionAffinity,
    keepalive: bool,
    connections: u32,
    extra: Option<(usize, NodeExtra)>,
}

impl Draft {
    fn draw(rng: &mut Rng, rule: Rule) -> Self {
        let nodes = draw_nodes(rng);
        let n = nodes.len();
        let replicas = rng.range(WEB_REPLICAS);
        let mut draft = Draft {
            web: (0..replicas).map(|_| rng.below(n)).collect(),
            database: rng.below(n),
            front: match rng.below(3) {
                0 => Front::Nginx,
                1 => Front::Direct,
                _ => Front::InCluster(rng.below(n)),
            },
            entry: Entry::EveryNode,
            announcer: None,
            policy: TrafficPolicy::Cluster,
            affinity: SessionAffinity::None,
            keepalive: rng.coin(),
            connections: rng.range_u32(CONNECTIONS),
            extra: None,
            nodes,
        };
        match rule {
            Rule::Balanced => draft.balanced(rng),
            Rule::NoisyNeighbour | Rule::HotNode | Rule::MemorySqueeze => {
                draft.balanced(rng);
                let extra = match rule {
                    Rule::NoisyNeighbour => NodeExtra::Burner,
                    Rule::HotNode => NodeExtra::Hot,
                    _ => NodeExtra::MemoryHog,
                };
                draft.extra = Some((rng.below(n), extra));
            }
            Rule::L2Ingress => {
                draft.entry = Entry::L2;
                draft.announcer = Some(match draft.front {
                    // Anywhere but the proxy's node: that node holds every entry endpoint.
                    Front::InCluster(proxy) => (proxy + 1 + rng.below(n - 1)) % n,
                    _ => rng.below(n),
                });
                draft.spread_evenly(rng);
            }
            Rule::LocalPolicy => {
                if matches!(draft.front, Front::InCluster(_)) {
                    draft.front = if rng.coin() { Front::Nginx } else { Front::Direct };
                }
                draft.at_least_two_replicas(rng);
                draft.entry = Entry::L2;
                draft.policy = TrafficPolicy::Local;
                draft.announcer = Some(*rng.pick(&draft.web));
                draft.spread_evenly(rng);
            }
            Rule::SessionAffinity => {
                draft.front = Front::Nginx;
                draft.at_least_two_replicas(rng);
                draft.entry = Entry::L2;
                draft.announcer = Some(rng.below(n));
                draft.affinity = SessionAffinity::ClientIp;
            }
            Rule::KeepalivePinning => {
                draft.front = Front::Direct;
                draft.at_least_two_replicas(rng);
                draft.keepalive = true;
                let mut endpoints = BTreeMap::new();
                for node in &draft.web {
                    *endpoints.entry(draft.nodes[*node].0.clone()).or_insert(0u32) += 1;
                }
                let clear: Vec<u32> =
                    truth::FEW_CONNECTIONS.filter(|c| truth::pinning_band_clear(&endpoints, *c)).collect();
                // A placement with no clear count, or on one node only (nothing could pin), is drawn
                // again (`scenario` refuses no connections).
                draft.connections = if clear.is_empty() || endpoints.len() < 2 { 0 } else { *rng.pick(&clear) };
            }
        }
        draft
    }

    /// Rule 1's entry and policy: every node with Cluster, every node with Local over nodes
    /// holding the same number of endpoints, or layer 2 with the announcer holding them all.
    fn balanced(&mut self, rng: &mut Rng) {
        let n = self.nodes.len();
        match rng.below(3) {
            0 => {}
            1 => {
                self.policy = TrafficPolicy::Local;
                if !matches!(self.front, Front::InCluster(_)) {
                    // m nodes with k replicas each, at most four replicas.
                    let (m, k) = *rng.pick(&[(1, 1), (2, 1), (3, 1), (4, 1), (1, 2), (2, 2), (1, 3), (1, 4)]);
                    let mut order: Vec<usize> = (0..n).collect();
                    rng.shuffle(&mut order);
                    self.web = order.iter().take(m).flat_map(|node| std::iter::repeat_n(*node, k)).collect();
                }
            }
            _ => {
                self.entry = Entry::L2;
                self.policy = if rng.coin() { TrafficPolicy::Cluster } else { TrafficPolicy::Local };
                let holder = match self.front {
                    Front::InCluster(proxy) => proxy,
                    _ => {
                        let holder = rng.below(n);
                        self.web = vec![holder; self.web.len()];
                        holder
                    }
                };
                self.announcer = Some(holder);
            }
        }
        self.spread_evenly(rng);
    }

    /// oha's keep-alive connections that reach the pods, or cross an every-node entry, are many.
    fn spread_evenly(&mut self, rng: &mut Rng) {
        let crosses_entry = matches!(self.front, Front::InCluster(_)) && self.entry == Entry::EveryNode;
        if self.keepalive && (self.front == Front::Direct || crosses_entry) {
            self.connections = rng.range_u32(MANY);
        }
    }

    fn at_least_two_replicas(&mut self, rng: &mut Rng) {
        let n = self.nodes.len();
        while self.web.len() < 2 {
            self.web.push(rng.below(n));
        }
    }

    fn name(&self, node: usize) -> String {
        self.nodes[node].0.clone()
    }

    /// Node `i` as a scenario node, with the extra it carries (a burner, a hot board, a memory hog).
    fn node(&self, i: usize, name: &str, role: Role) -> NodeSpec {
        let extra = self.extra.filter(|(node, _)| *node == i).map(|(_, extra)| extra);
        NodeSpec {
            name: name.to_string(),
            role,
            // The shipped memory-squeeze's node: 1 GiB, 944 MiB held outside the pods.
            memory_mib: (extra == Some(NodeExtra::MemoryHog)).then_some(1024),
            extras: match extra {
                None => Extras::default(),
                // The shipped nfs-neighbour's burner.
                Some(NodeExtra::Burner) => {
                    Extras { burn_cores: 1.0, burn_starts: BurnStart::WithLoad, ..Extras::default() }
                }
                // The shipped hot-node's board.
                Some(NodeExtra::Hot) => Extras {
                    thermal: Some(ThermalOverlay {
                        temperature_celsius: 84.0,
                        current_mhz: 1500,
                        max_mhz: 2400,
                        throttled: "0x50005".into(),
                        start_s: None,
                    }),
                    ..Extras::default()
                },
                Some(NodeExtra::MemoryHog) => Extras { memory_hog_mib: 944, ..Extras::default() },
            },
        }
    }

    fn scenario(&self, name: &str, seed: u64, index: usize) -> Option<Scenario> {
        if self.connections == 0 {
            return None;
        }
        let nodes = self.nodes.iter().enumerate().map(|(i, (name, role))| self.node(i, name, *role)).collect();
        let workload = |name: &str, kind, app, placement: Vec<String>| WorkloadSpec {
            name: name.into(),
            namespace: if app == App::Proxy { "npm".into() } else { WEB.into() },
            kind,
            app,
            placement,
            cpu_ms: 4.0,
            response_bytes: 50_000,
            database: None,
            queries_per_request: 4,
            query_wait_ms: 0.0,
            port: None,
            upstream: None,
            upstream_keepalive: false,
        };
        // The shipped scenarios' WordPress and MySQL.
        let web = WorkloadSpec {
            database: Some(DATABASE.into()),
            ..workload(WEB, WorkloadKind::Deployment, App::Web, self.web.iter().map(|n| self.name(*n)).collect())
        };
        let database = WorkloadSpec {
            cpu_ms: 0.3,
            response_bytes: 1024,
            query_wait_ms: 25.0,
            ..workload(DATABASE, WorkloadKind::StatefulSet, App::Database, vec![self.name(self.database)])
        };
        let mut workloads = vec![web, database];
        if let Front::InCluster(node) = self.front {
            workloads.push(WorkloadSpec {
                upstream: Some(WEB.into()),
                ..workload(PROXY, WorkloadKind::Deployment, App::Proxy, vec![self.name(node)])
            });
        }
        let scenario = Scenario {
            name: name.to_string(),
            description: String::new(),
            verdict_within_s: None,
            expect: Expectation::none(),
            nodes,
            workloads,
            service: ServiceSpec {
                workload: if matches!(self.front, Front::InCluster(_)) { PROXY } else { WEB }.into(),
                entry: self.entry,
                announcer: self.announcer.map(|a| self.name(a)),
                external_traffic_policy: self.policy,
                session_affinity: self.affinity,
                metallb: true,
                failover: None,
            },
            proxy: ProxySpec {
                kind: if self.front == Front::Nginx { ProxyKind::Nginx } else { ProxyKind::None },
                upstream_keepalive: false,
            },
            load: LoadSpec {
                duration: LOAD,
                connections: self.connections,
                rate: Some(RATE),
                keepalive: self.keepalive,
            },
        };
        let description = format!("campaign seed {seed} #{index}: {}", Dimensions::of(&scenario).line());
        Some(Scenario { description, ..scenario })
    }
}

/// Node names in the styles small clusters use. Every name is a DNS label of at most 12
/// characters (the node's LAN interface is `l-<node>`), never `pinned`.
const PASTRIES: &[&str] = &[
    "brioche",
    "baguette",
    "croissant",
    "ciabatta",
    "focaccia",
    "pretzel",
    "bagel",
    "muffin",
    "scone",
    "strudel",
    "danish",
    "sourdough",
    "challah",
    "panettone",
    "kouign-amann",
];

/// 2 to 9 nodes, 1 to 3 of them control-plane, with distinct names in one of six styles.
fn draw_nodes(rng: &mut Rng) -> Vec<(String, Role)> {
    let n = rng.range(NODES);
    let control_planes = rng.range(1..=n.min(3));
    let role = |i: usize| if i < control_planes { Role::ControlPlane } else { Role::Worker };
    let style = rng.below(6);
    let first = rng.range(1..=3);
    let mut pastries: Vec<&str> = PASTRIES.to_vec();
    rng.shuffle(&mut pastries);
    let mut nodes: Vec<(String, Role)> = (0..n)
        .map(|i| {
            let worker = i - control_planes.min(i);
            let name = match style {
                // The reference cluster.
                0 if i < control_planes => format!("master-{:02}", i + 1),
                0 => format!("worker-{:02}", worker + 1),
                // Boards numbered in the rack.
                1 => format!("rpi-{:02}", first + i),
                // K3s servers and agents.
                2 if i < control_planes => format!("k3s-server-{}", i + 1),
                2 => format!("k3s-agent-{}", worker + 1),
                3 => format!("pi5-{}", char::from(b'a' + i as u8)),
                4 => pastries[i].to_string(),
                _ if i < control_planes => format!("cp-{}", i + 1),
                _ => format!("node-{}", worker + first),
            };
            (name, role(i))
        })
        .collect();
    if rng.coin() {
        rng.shuffle(&mut nodes);
    }
    nodes
}

/// `expect` as the plain demo reads it, for a scenario written out and run with
/// `bakery-demo --scenario-file`: the truth's fixed verdicts, `pinned` for what the run decides.
/// The campaign itself judges by [`Truth::resolve`], which also knows whether the announcer of
/// rule 4 forwards (it does when the affinity pinned a pod on another node; written here only when
/// the announcer has no web pod, so that it surely does).
fn with_expectation(scenario: Scenario, truth: &Truth) -> Scenario {
    let named = |node: &str, cause| ExpectedVerdict { node: ExpectedNode::Named(node.into()), cause };
    let pinned = |cause| ExpectedVerdict { node: ExpectedNode::Pinned(PinnedMarker::Pinned), cause };
    let mut verdicts: Vec<ExpectedVerdict> = truth.fixed.iter().map(|k| named(&k.node, k.cause)).collect();
    match &truth.after_run {
        None => {}
        Some(AfterRun::Affinity { announcer }) => {
            verdicts.push(pinned(Cause::PodConcentration));
            if !scenario.served().placement.contains(announcer) {
                verdicts.push(named(announcer, Cause::IngressConcentration));
            }
        }
        Some(AfterRun::Pinning { .. }) => verdicts.push(pinned(Cause::ConnectionPinning)),
    }
    Scenario { expect: Expectation { verdicts }, ..scenario }
}

/// A scenario's dimensions, as the table shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dimensions {
    pub nodes: usize,
    pub control_planes: usize,
    /// The node of each WordPress replica.
    pub web: Vec<String>,
    pub database: String,
    /// `every node`, or `L2 <announcer>`.
    pub entry: String,
    pub policy: String,
    pub affinity: String,
    /// `nginx` (outside, no upstream keep-alive), `none` (oha straight at the LoadBalancer IP) or
    /// `NPM <node>` (Nginx Proxy Manager in the cluster).
    pub proxy: String,
    pub keepalive: bool,
    pub connections: u32,
    pub rate: Option<u32>,
    pub seconds: u64,
}

impl Dimensions {
    pub fn of(scenario: &Scenario) -> Self {
        let service = &scenario.service;
        Dimensions {
            nodes: scenario.nodes.len(),
            control_planes: scenario.nodes.iter().filter(|n| n.role == Role::ControlPlane).count(),
            web: scenario.served().placement.clone(),
            database: scenario
                .workloads
                .iter()
                .find(|w| w.app == App::Database)
                .and_then(|w| w.placement.first().cloned())
                .unwrap_or_default(),
            entry: match scenario.announcer() {
                Some(announcer) => format!("L2 {announcer}"),
                None => "every node".into(),
            },
            policy: format!("{:?}", service.external_traffic_policy),
            affinity: match service.session_affinity {
                SessionAffinity::None => "None".into(),
                SessionAffinity::ClientIp => "ClientIP".into(),
            },
            proxy: match (scenario.relay(), scenario.proxy.kind) {
                (Some(relay), _) => format!("NPM {}", relay.placement.join(",")),
                (None, ProxyKind::Nginx) => "nginx".into(),
                (None, ProxyKind::None) => "none".into(),
            },
            keepalive: scenario.load.keepalive,
            connections: scenario.load.connections,
            rate: scenario.load.rate,
            seconds: scenario.load.duration.as_secs(),
        }
    }

    /// oha's part, short: `ka 50` or `no-ka 20`.
    pub fn oha(&self) -> String {
        format!("{} {}", if self.keepalive { "ka" } else { "no-ka" }, self.connections)
    }

    /// One line for people.
    pub fn line(&self) -> String {
        format!(
            "{} nodes ({} control-plane), WordPress x{} on {}, MySQL on {}, entry {}, {}, affinity {}, \
             proxy {}, oha {} connections{} at {} req/s for {} s",
            self.nodes,
            self.control_planes,
            self.web.len(),
            self.web.join(" "),
            self.database,
            self.entry,
            self.policy,
            self.affinity,
            self.proxy,
            self.connections,
            if self.keepalive { " (keep-alive)" } else { " (no keep-alive)" },
            self.rate.map_or("max".into(), |r| r.to_string()),
            self.seconds
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn many(seeds: std::ops::Range<u64>, per_seed: usize) -> Vec<Generated> {
        seeds.flat_map(|seed| campaign(seed, per_seed).unwrap()).collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_scenarios_and_an_index_does_not_depend_on_the_count() {
        let a = campaign(7, 12).unwrap();
        let b = campaign(7, 12).unwrap();
        assert_eq!(a, b);
        assert_eq!(campaign(7, 5).unwrap(), a[..5], "scenario i is the same in a shorter campaign");
        let other = campaign(8, 12).unwrap();
        assert_ne!(a, other, "another seed, other scenarios");
        // Pinned, so that a published campaign can be re-run: seed 7's first scenario.
        assert_eq!(a[0].scenario.name, "campaign-7-01");
    }

    #[test]
    fn every_generated_scenario_is_valid_and_reads_back_the_same() {
        for generated in many(0..300, 3) {
            let text = toml::to_string(&generated.scenario).unwrap();
            let again = Scenario::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert_eq!(again, generated.scenario);
            let truth = Truth::of(&generated.scenario).unwrap();
            assert_eq!(truth, generated.truth, "the truth is a function of the scenario");
            for node in &generated.scenario.nodes {
                assert!(node.name.len() <= 12 && node.name != "pinned", "{}", node.name);
            }
            let names: BTreeSet<&str> = generated.scenario.nodes.iter().map(|n| n.name.as_str()).collect();
            assert_eq!(names.len(), generated.scenario.nodes.len(), "distinct names");
            let load = &generated.scenario.load;
            assert_eq!((load.duration, load.rate), (LOAD, Some(RATE)));
        }
    }

    #[test]
    fn every_dimension_is_exercised_over_a_few_hundred_seeds() {
        let all = many(0..300, 1);
        let dims: Vec<Dimensions> = all.iter().map(|g| Dimensions::of(&g.scenario)).collect();
        let set = |f: &dyn Fn(&Dimensions) -> String| dims.iter().map(f).collect::<BTreeSet<String>>();
        let numbers: BTreeSet<usize> = dims.iter().map(|d| d.nodes).collect();
        assert_eq!(numbers, NODES.collect(), "2 to 9 nodes");
        let control: BTreeSet<usize> = dims.iter().map(|d| d.control_planes).collect();
        assert_eq!(control, BTreeSet::from([1, 2, 3]));
        let replicas: BTreeSet<usize> = dims.iter().map(|d| d.web.len()).collect();
        assert_eq!(replicas, WEB_REPLICAS.collect(), "1 to 4 WordPress replicas");
        assert!(
            dims.iter().any(|d| d.web.iter().collect::<BTreeSet<_>>().len() < d.web.len()),
            "two replicas on one node"
        );
        assert!(dims.iter().any(|d| d.web.contains(&d.database)), "MySQL beside WordPress");
        assert!(dims.iter().any(|d| !d.web.contains(&d.database)), "MySQL on a node of its own");
        let entries = set(&|d| d.entry.split(' ').next().unwrap_or_default().to_string());
        assert_eq!(entries, BTreeSet::from(["L2".to_string(), "every".to_string()]));
        assert_eq!(set(&|d| d.policy.clone()), BTreeSet::from(["Cluster".into(), "Local".into()]));
        assert_eq!(set(&|d| d.affinity.clone()), BTreeSet::from(["ClientIP".into(), "None".into()]));
        let proxies = set(&|d| d.proxy.split(' ').next().unwrap_or_default().to_string());
        assert_eq!(proxies, BTreeSet::from(["NPM".into(), "nginx".into(), "none".into()]));
        assert_eq!(set(&|d| d.keepalive.to_string()), BTreeSet::from(["false".into(), "true".into()]));
        let connections: BTreeSet<u32> = dims.iter().map(|d| d.connections).collect();
        assert!(connections.contains(&2) || connections.contains(&3) || connections.contains(&4), "few");
        assert!(connections.iter().any(|c| *c >= 40) && connections.iter().any(|c| (8..40).contains(c)));
        let rules: BTreeSet<Rule> = all.iter().map(|g| g.truth.rule).collect();
        assert_eq!(rules, Rule::ALL.into_iter().collect(), "every cause, and none");
        // The node-level causes land on nodes with and without WordPress.
        let node_level =
            |g: &&Generated| matches!(g.truth.rule, Rule::NoisyNeighbour | Rule::HotNode | Rule::MemorySqueeze);
        let on_web = |g: &Generated| g.scenario.served().placement.contains(&g.truth.fixed[0].node);
        assert!(all.iter().filter(node_level).any(on_web));
        assert!(all.iter().filter(node_level).any(|g| !on_web(g)));
        // Every naming style appears.
        let styles: BTreeSet<String> = all
            .iter()
            .flat_map(|g| g.scenario.nodes.iter().map(|n| n.name.split('-').next().unwrap_or_default().to_string()))
            .collect();
        for style in ["master", "worker", "rpi", "k3s", "pi5", "cp", "node"] {
            assert!(styles.contains(style), "{style} in {styles:?}");
        }
        assert!(PASTRIES.iter().any(|p| styles.contains(*p)), "{styles:?}");
    }

    #[test]
    fn each_rule_builds_what_it_says() {
        for generated in many(0..200, 2) {
            let s = &generated.scenario;
            let truth = &generated.truth;
            let web = &s.served().placement;
            let share = |node: &str, placement: &[String]| {
                placement.iter().filter(|p| *p == node).count() as f64 / placement.len() as f64
            };
            match truth.rule {
                Rule::Balanced => assert!(truth.fixed.is_empty() && truth.after_run.is_none()),
                Rule::L2Ingress => {
                    let announcer = s.announcer().unwrap();
                    assert!(share(announcer, &s.entry_workload().placement) <= 2.0 / 3.0);
                    assert_eq!(
                        truth.fixed,
                        [crate::diagnose::VerdictKey { node: announcer.into(), cause: Cause::IngressConcentration }]
                    );
                }
                Rule::LocalPolicy => {
                    let announcer = s.announcer().unwrap();
                    let part = share(announcer, web);
                    assert!(part > 0.0 && part <= 0.5, "{part}");
                    assert_eq!(s.service.external_traffic_policy, TrafficPolicy::Local);
                }
                Rule::SessionAffinity => {
                    assert_eq!(s.proxy.kind, ProxyKind::Nginx);
                    assert!(web.iter().all(|n| share(n, web) <= 0.5));
                    assert!(s.description.contains("affinity ClientIP"));
                }
                Rule::KeepalivePinning => {
                    assert!(truth::FEW_CONNECTIONS.contains(&s.load.connections) && s.load.keepalive);
                    assert_eq!((s.proxy.kind, s.service.entry), (ProxyKind::None, Entry::EveryNode));
                }
                Rule::NoisyNeighbour | Rule::HotNode | Rule::MemorySqueeze => assert_eq!(truth.fixed.len(), 1),
            }
        }
    }

    #[test]
    fn pinning_counts_keep_clear_of_the_band() {
        let endpoints = |counts: &[u32]| -> BTreeMap<String, u32> {
            counts.iter().enumerate().map(|(i, c)| (format!("n{i}"), *c)).collect()
        };
        // Three pods, one per node: 2 connections give 1.5x or 3x; 3 give 2.0x (in the band).
        assert!(truth::pinning_band_clear(&endpoints(&[1, 1, 1]), 2));
        assert!(!truth::pinning_band_clear(&endpoints(&[1, 1, 1]), 3));
        // 4 of them: 3 on one node is 2.25x, clear.
        assert!(truth::pinning_band_clear(&endpoints(&[1, 1, 1]), 4));
        // Two nodes with one pod each (pinned line 1.5x): 2 connections give 1x or 2x, clear; 3 give
        // 1.33x and 4 give 1.5x, at the line.
        assert!(truth::pinning_band_clear(&endpoints(&[1, 1]), 2));
        assert!(!truth::pinning_band_clear(&endpoints(&[1, 1]), 3));
        assert!(!truth::pinning_band_clear(&endpoints(&[1, 1]), 4));
        // Two pods on one node, one on another: both of 2 connections on the first is all of the
        // traffic where two thirds are its part (1.5x, past its line of 1.25x): pinned, clear.
        assert!(truth::pinning_band_clear(&endpoints(&[2, 1]), 2));
    }
}
