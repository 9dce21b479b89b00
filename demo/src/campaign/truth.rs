//! The campaign's ground truth: the verdicts that follow from what a scenario builds, stated
//! physically (who holds the endpoints, who takes the traffic in, how connections are balanced,
//! what runs outside the pods), never from the diagnosis crate's model.
//!
//! [`Truth::of`] reads a scenario and either states its truth or says why it would be ambiguous
//! (a quantity near a boundary, or a configuration the rules do not cover): the generator then
//! draws again. Two truths are only known after the run, from the web pods' own counts
//! ([`Truth::resolve`]): which pod ClientIP affinity pinned (rule 4) and where few keep-alive
//! connections landed (rule 5). The rules are in the [campaign](super) module's docs.

use std::collections::BTreeMap;
use std::fmt;

use bakery_diagnosis::Cause;
use serde::Serialize;

use crate::diagnose::VerdictKey;
use crate::scenario::{BurnStart, Entry, ProxyKind, Scenario, SessionAffinity, TrafficPolicy};

/// Keep-alive connections at least this many spread over the endpoints like per-request ones do
/// (chance moves a node's count by a few connections, not by multiples of its share).
pub const MANY_CONNECTIONS: u32 = 40;

/// The keep-alive connection counts of rule 5: so few that where they land is the hog.
pub const FEW_CONNECTIONS: std::ops::RangeInclusive<u32> = 2..=4;

/// Where a node's connections over its expected part, k / (c q), make it pinned: halfway from its
/// part to all of the connections, and at most twice its part. A node expected to carry two thirds
/// of the traffic is pinned when it carries all of it (1.5x); one expected to carry a third, at
/// twice that. Within 0.85 to 1.1 times the line a count is neither clearly pinned nor clearly not.
pub const PIN_BAND: (f64, f64) = (0.85, 1.1);

/// The pinned line of a node holding `w` of `t` endpoints: min(2, (1 + q) / 2q) with q = w / t.
pub fn pin_line(w: u64, t: u64) -> f64 {
    2.0_f64.min((t + w) as f64 / (2 * w.max(1)) as f64)
}

/// "(Nearly) all" requests of a pinned affinity: a node's pods served at least this part.
pub const NEARLY_ALL: f64 = 0.9;

/// A burner outside the pods of at least this many cores, from the load's start, is a noisy
/// neighbour (the shipped `nfs-neighbour` burns one).
pub const BURN_CORES: f64 = 1.0;

/// A board at least this hot (Celsius), running under its maximum frequency with the firmware's
/// "throttled now" bit set, is throttling (a Pi 5 throttles between 80 and 85 C).
pub const HOT_CELSIUS: f64 = 80.0;

/// The firmware's `get_throttled` bit for "throttled now".
const THROTTLED_NOW: u32 = 1 << 2;

/// A process outside the pods holding at least this part of the node's memory squeezes it.
pub const SQUEEZED: f64 = 0.9;

/// Which of the campaign's rules a scenario falls under (the cause the generator injected).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// Rule 1: no cause.
    Balanced,
    /// Rule 2.
    L2Ingress,
    /// Rule 3.
    LocalPolicy,
    /// Rule 4.
    SessionAffinity,
    /// Rule 5.
    KeepalivePinning,
    /// Rule 6, a burner outside the pods.
    NoisyNeighbour,
    /// Rule 6, a thermal overlay.
    HotNode,
    /// Rule 6, a memory hog.
    MemorySqueeze,
}

impl Rule {
    pub const ALL: [Rule; 8] = [
        Rule::Balanced,
        Rule::L2Ingress,
        Rule::LocalPolicy,
        Rule::SessionAffinity,
        Rule::KeepalivePinning,
        Rule::NoisyNeighbour,
        Rule::HotNode,
        Rule::MemorySqueeze,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Rule::Balanced => "none",
            Rule::L2Ingress => "l2-ingress",
            Rule::LocalPolicy => "local-policy",
            Rule::SessionAffinity => "session-affinity",
            Rule::KeepalivePinning => "keepalive-pinning",
            Rule::NoisyNeighbour => "noisy-neighbour",
            Rule::HotNode => "hot-node",
            Rule::MemorySqueeze => "memory-squeeze",
        }
    }

    /// The rule's number in the campaign's docs.
    pub fn number(self) -> u8 {
        match self {
            Rule::Balanced => 1,
            Rule::L2Ingress => 2,
            Rule::LocalPolicy => 3,
            Rule::SessionAffinity => 4,
            Rule::KeepalivePinning => 5,
            Rule::NoisyNeighbour | Rule::HotNode | Rule::MemorySqueeze => 6,
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How the connections of one hop are balanced: kube-proxy and the router's ECMP hash decide per
/// connection, so what matters is how many there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spread {
    /// A new connection per request (a proxy without upstream keep-alive, oha without keep-alive).
    PerRequest,
    /// This many keep-alive connections carry the whole load.
    KeepAlive(u32),
}

impl Spread {
    /// Whether chance alone spreads these connections close to the expected shares.
    pub fn even(self) -> bool {
        match self {
            Spread::PerRequest => true,
            Spread::KeepAlive(c) => c >= MANY_CONNECTIONS,
        }
    }
}

impl fmt::Display for Spread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Spread::PerRequest => f.write_str("a new connection per request"),
            Spread::KeepAlive(c) => write!(f, "{c} keep-alive connections"),
        }
    }
}

/// What is only known once the load has run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AfterRun {
    /// Rule 4: the node whose pods served (nearly) all requests has the pod concentration; the
    /// announcer forwards everything it takes in when that node is another.
    Affinity { announcer: String },
    /// Rule 5: each node with its expected share of the web endpoints (endpoints on it, all
    /// endpoints); a node whose pods accepted connections beyond its pinned line ([`pin_line`]) is
    /// pinned.
    Pinning { endpoints: BTreeMap<String, u32>, total: u32 },
}

/// The ground truth of one scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Truth {
    pub rule: Rule,
    /// The verdicts known before the run.
    pub fixed: Vec<VerdictKey>,
    /// What the run decides.
    pub after_run: Option<AfterRun>,
    /// The physical statement the verdicts follow from, for people.
    pub why: String,
}

/// What a node's web pods counted during the load, by themselves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PodCounts {
    pub requests: u64,
    pub accepted: u64,
}

/// The truth of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Resolved {
    /// Exactly these verdicts (sorted); none for "no hog".
    pub verdicts: Vec<VerdictKey>,
    /// How the run decided what it decided.
    pub notes: Vec<String>,
    /// Why the run left the truth undecided (the premise of its rule did not hold), if it did.
    pub unresolved: Option<String>,
}

fn key(node: &str, cause: Cause) -> VerdictKey {
    VerdictKey { node: node.to_string(), cause }
}

/// Endpoints per node of a workload's placement.
fn per_node(placement: &[String]) -> BTreeMap<String, u32> {
    let mut counts = BTreeMap::new();
    for node in placement {
        *counts.entry(node.clone()).or_insert(0) += 1;
    }
    counts
}

/// `k` of `c` connections on a node holding `w` of `t` endpoints: their ratio to its part, and the
/// low and high ends of the ambiguous band around its pinned line.
fn pin_ratio(k: u64, c: u64, w: u64, t: u64) -> (f64, f64, f64) {
    let ratio = (k * t) as f64 / (c.max(1) * w.max(1)) as f64;
    let line = pin_line(w, t);
    (ratio, PIN_BAND.0 * line, PIN_BAND.1 * line)
}

/// Whether `c` keep-alive connections over `endpoints` (per node) can land a node's count inside
/// the pinning band, for any count `k` from 1 to `c`.
pub fn pinning_band_clear(endpoints: &BTreeMap<String, u32>, c: u32) -> bool {
    let total: u32 = endpoints.values().sum();
    endpoints.values().filter(|w| **w > 0).all(|w| {
        (1..=c).all(|k| {
            let (ratio, low, high) = pin_ratio(u64::from(k), u64::from(c), u64::from(*w), u64::from(total));
            ratio < low || ratio > high
        })
    })
}

impl Truth {
    /// The truth of `scenario`, or why it would be ambiguous.
    pub fn of(scenario: &Scenario) -> Result<Truth, String> {
        let nodes = node_causes(scenario)?;
        let traffic = traffic(scenario)?;
        match (traffic.rule, nodes.as_slice()) {
            (_, [_, _, ..]) => Err("more than one cause outside the pods".into()),
            (Rule::Balanced, []) => Ok(traffic),
            (Rule::Balanced, [(rule, verdict, why)]) => Ok(Truth {
                rule: *rule,
                fixed: vec![verdict.clone()],
                after_run: None,
                why: format!("{why}; otherwise {}", traffic.why),
            }),
            (_, []) => Ok(traffic),
            (_, [_]) => Err("a traffic cause and a cause outside the pods at once".into()),
        }
    }

    /// The verdicts this run must hold, from the web pods' own counts per node (`counts`).
    pub fn resolve(&self, counts: &BTreeMap<String, PodCounts>) -> Resolved {
        let mut resolved = Resolved { verdicts: self.fixed.clone(), ..Resolved::default() };
        match &self.after_run {
            None => {}
            Some(AfterRun::Affinity { announcer }) => {
                let total: u64 = counts.values().map(|c| c.requests).sum();
                let spread: Vec<String> = counts.iter().map(|(n, c)| format!("{n} {}", c.requests)).collect();
                let pinned = counts
                    .iter()
                    .find(|(_, c)| total > 0 && c.requests as f64 >= NEARLY_ALL * total as f64)
                    .map(|(node, _)| node.clone());
                match pinned {
                    Some(node) => {
                        resolved
                            .notes
                            .push(format!("affinity pinned {node}: requests served per node {}", spread.join(", ")));
                        resolved.verdicts.push(key(&node, Cause::PodConcentration));
                        if &node != announcer {
                            resolved.verdicts.push(key(announcer, Cause::IngressConcentration));
                        }
                    }
                    None => {
                        resolved.unresolved = Some(format!(
                            "no node's pods served {:.0} % of the requests (requests per node: {}): the affinity \
                             did not pin",
                            NEARLY_ALL * 100.0,
                            spread.join(", ")
                        ));
                    }
                }
            }
            Some(AfterRun::Pinning { endpoints, total: endpoint_total }) => {
                let accepted: u64 = counts.values().map(|c| c.accepted).sum();
                let spread: Vec<String> = counts.iter().map(|(n, c)| format!("{n} {}", c.accepted)).collect();
                if accepted == 0 {
                    resolved.unresolved = Some("the web pods accepted no connection during the load".into());
                }
                for (node, w) in endpoints.iter().filter(|(_, w)| **w > 0) {
                    let k = counts.get(node).map_or(0, |c| c.accepted);
                    let (ratio, low, high) = pin_ratio(k, accepted, u64::from(*w), u64::from(*endpoint_total));
                    let shown = ratio;
                    if accepted > 0 && ratio >= low && ratio <= high {
                        resolved.unresolved = Some(format!(
                            "{node} accepted {k} of {accepted} connections, {shown:.2}x its part: inside the band \
                             {low:.2}-{high:.2} around its pinned line"
                        ));
                    } else if accepted > 0 && ratio > high {
                        resolved.verdicts.push(key(node, Cause::ConnectionPinning));
                        resolved
                            .notes
                            .push(format!("{node} accepted {k} of {accepted} connections, {shown:.2}x its part"));
                    }
                }
                resolved.notes.push(format!("connections accepted per node: {}", spread.join(", ")));
            }
        }
        resolved.verdicts.sort();
        resolved.verdicts.dedup();
        resolved
    }
}

/// The causes outside the pods (rule 6), each with its verdict and statement.
fn node_causes(scenario: &Scenario) -> Result<Vec<(Rule, VerdictKey, String)>, String> {
    let mut causes = Vec::new();
    for node in &scenario.nodes {
        let extras = &node.extras;
        let name = &node.name;
        if extras.burn_cores > 0.0 {
            if extras.burn_cores < BURN_CORES || extras.burn_starts != BurnStart::WithLoad {
                return Err(format!("{name}'s burner is under {BURN_CORES} core or starts at boot"));
            }
            causes.push((
                Rule::NoisyNeighbour,
                key(name, Cause::UnattributedCpu),
                format!("{name} burns {} core(s) outside its pods from the load's start", extras.burn_cores),
            ));
        }
        if let Some(thermal) = &extras.thermal {
            let throttled = crate::scenario::parse_hex(&thermal.throttled).unwrap_or(0);
            if thermal.temperature_celsius < HOT_CELSIUS
                || thermal.current_mhz >= thermal.max_mhz
                || throttled & THROTTLED_NOW == 0
            {
                return Err(format!("{name}'s thermals are neither cool nor clearly throttling"));
            }
            causes.push((
                Rule::HotNode,
                key(name, Cause::ThermalThrottling),
                format!(
                    "{name} is at {} C, capped at {} of {} MHz, throttled ({})",
                    thermal.temperature_celsius, thermal.current_mhz, thermal.max_mhz, thermal.throttled
                ),
            ));
        }
        if extras.memory_hog_mib > 0 {
            let Some(memory) = node.memory_mib else {
                return Err(format!("{name} holds memory without a memory size of its own"));
            };
            if (extras.memory_hog_mib as f64) < SQUEEZED * memory as f64 {
                return Err(format!("{name}'s memory hog holds less than {:.0} % of it", SQUEEZED * 100.0));
            }
            causes.push((
                Rule::MemorySqueeze,
                key(name, Cause::MemoryPressure),
                format!("a process outside {name}'s pods holds {} of its {memory} MiB", extras.memory_hog_mib),
            ));
        }
    }
    Ok(causes)
}

/// The connections that cross the entry (the router's ECMP hash spreads them over every-node
/// entries), and those that reach the web pods (kube-proxy picks an endpoint for each).
fn spreads(scenario: &Scenario) -> Result<(Spread, Spread), String> {
    let oha = if scenario.load.keepalive { Spread::KeepAlive(scenario.load.connections) } else { Spread::PerRequest };
    let entry = match scenario.proxy.kind {
        ProxyKind::Nginx if scenario.proxy.upstream_keepalive => {
            return Err("nginx's upstream keep-alive pool: how many connections is nginx's choice".into());
        }
        ProxyKind::Nginx => Spread::PerRequest,
        ProxyKind::None => oha,
    };
    let pods = match scenario.relay() {
        Some(relay) if relay.upstream_keepalive => {
            return Err("the in-cluster proxy's upstream keep-alive pool: how many connections is its choice".into());
        }
        Some(_) => Spread::PerRequest,
        None => entry,
    };
    Ok((entry, pods))
}

/// Rules 1 to 5: what the Service, the entry and the connections do with the traffic.
fn traffic(scenario: &Scenario) -> Result<Truth, String> {
    let service = &scenario.service;
    let (entry_spread, pod_spread) = spreads(scenario)?;
    if service.session_affinity == SessionAffinity::ClientIp {
        return session_affinity(scenario);
    }
    if let Spread::KeepAlive(c) = pod_spread
        && !pod_spread.even()
    {
        return keepalive_pinning(scenario, c);
    }
    if !pod_spread.even() || (service.entry == Entry::EveryNode && !entry_spread.even()) {
        return Err("connections too few to spread evenly outside rule 5".into());
    }
    let spread = format!("{pod_spread} to the pods");
    match (service.entry, scenario.announcer()) {
        (Entry::L2, Some(announcer)) => layer_two(scenario, announcer, &spread),
        (Entry::L2, None) => Err("layer 2 without an announcer".into()),
        (Entry::EveryNode, _) => every_node(scenario, &spread),
    }
}

/// A truth with fixed verdicts and nothing to settle after the run.
fn fixed(rule: Rule, fixed: Vec<VerdictKey>, why: String) -> Result<Truth, String> {
    Ok(Truth { rule, fixed, after_run: None, why })
}

/// Rule 4: ClientIP affinity behind the outside nginx pins one endpoint; which one is settled after the run.
fn session_affinity(scenario: &Scenario) -> Result<Truth, String> {
    let service = &scenario.service;
    let web = per_node(&scenario.served().placement);
    let web_total: u32 = web.values().sum();
    let Some(announcer) = scenario.announcer() else {
        return Err("ClientIP affinity with several entries: each entry's kube-proxy pins its own pod".into());
    };
    if scenario.proxy.kind != ProxyKind::Nginx
        || scenario.relay().is_some()
        || service.external_traffic_policy != TrafficPolicy::Cluster
    {
        return Err("ClientIP affinity outside rule 4 (behind the outside nginx, Cluster policy)".into());
    }
    if web_total < 2 || web.values().any(|w| 2 * w > web_total) {
        return Err("ClientIP affinity with a node holding more than half of the web endpoints".into());
    }
    Ok(Truth {
        rule: Rule::SessionAffinity,
        fixed: Vec::new(),
        after_run: Some(AfterRun::Affinity { announcer: announcer.to_string() }),
        why: format!(
            "one client address (the outside nginx) enters at {announcer} alone, where ClientIP affinity pins \
             one of {web_total} web endpoints, no node holding more than half of them"
        ),
    })
}

/// Rule 5: a few keep-alive connections, each balanced once; which nodes they pin is settled after the run.
fn keepalive_pinning(scenario: &Scenario, c: u32) -> Result<Truth, String> {
    let service = &scenario.service;
    let web = per_node(&scenario.served().placement);
    let web_total: u32 = web.values().sum();
    if !FEW_CONNECTIONS.contains(&c)
        || scenario.relay().is_some()
        || service.entry != Entry::EveryNode
        || service.external_traffic_policy != TrafficPolicy::Cluster
    {
        return Err(format!("{c} keep-alive connections outside rule 5"));
    }
    if !pinning_band_clear(&web, c) {
        return Err(format!("{c} keep-alive connections could land a node near its pinned line"));
    }
    Ok(Truth {
        rule: Rule::KeepalivePinning,
        fixed: Vec::new(),
        after_run: Some(AfterRun::Pinning { endpoints: web.clone(), total: web_total }),
        why: format!(
            "{c} keep-alive connections over {web_total} web endpoints, each balanced once (ECMP, then kube-proxy \
             over every endpoint): a node whose pods hold at least halfway from their part to all of them (at most \
             twice their part) is pinned"
        ),
    })
}

/// Rules 1 to 3 with one layer-2 announcer: balanced, ingress through the announcer, or Local pods on it.
fn layer_two(scenario: &Scenario, announcer: &str, spread: &str) -> Result<Truth, String> {
    let web = per_node(&scenario.served().placement);
    let web_total: u32 = web.values().sum();
    let entry_endpoints = per_node(&scenario.entry_workload().placement);
    let entry_total: u32 = entry_endpoints.values().sum();
    let entry_workload = &scenario.entry_workload().name;
    let held = entry_endpoints.get(announcer).copied().unwrap_or(0);
    if held == entry_total {
        return fixed(
            Rule::Balanced,
            Vec::new(),
            format!("the layer-2 announcer {announcer} holds every {entry_workload} endpoint; {spread}"),
        );
    }
    match scenario.service.external_traffic_policy {
        TrafficPolicy::Cluster if 3 * held <= 2 * entry_total => fixed(
            Rule::L2Ingress,
            vec![key(announcer, Cause::IngressConcentration)],
            format!(
                "every connection enters at the layer-2 announcer {announcer}, which holds {held} of \
                 {entry_total} {entry_workload} endpoints, so it forwards {:.0} % of what it takes in to \
                 other nodes (Cluster policy); {spread}",
                100.0 * f64::from(entry_total - held) / f64::from(entry_total)
            ),
        ),
        TrafficPolicy::Cluster => {
            Err(format!("the announcer holds {held} of {entry_total} entry endpoints: between 2/3 and all of them"))
        }
        TrafficPolicy::Local => {
            let local = web.get(announcer).copied().unwrap_or(0);
            if scenario.relay().is_some() || local == 0 || 2 * local > web_total {
                return Err(format!("Local policy with the announcer holding {local} of {web_total} web endpoints"));
            }
            fixed(
                Rule::LocalPolicy,
                vec![key(announcer, Cause::PodConcentration)],
                format!(
                    "every connection enters at the layer-2 announcer {announcer}, whose {local} of \
                     {web_total} web endpoints serve it all (Local policy): at least twice their part"
                ),
            )
        }
    }
}

/// Rule 1 with every node an entry (ECMP): balanced under Cluster, and under Local when entries hold alike.
fn every_node(scenario: &Scenario, spread: &str) -> Result<Truth, String> {
    let entry_endpoints = per_node(&scenario.entry_workload().placement);
    let entry_workload = &scenario.entry_workload().name;
    match scenario.service.external_traffic_policy {
        TrafficPolicy::Cluster => fixed(
            Rule::Balanced,
            Vec::new(),
            format!("every node is an entry (ECMP) and forwards to every endpoint (Cluster policy); {spread}"),
        ),
        TrafficPolicy::Local => {
            let mut counts = entry_endpoints.values();
            let first = counts.next().copied().unwrap_or(0);
            if counts.any(|c| *c != first) {
                return Err("Local policy over entries holding different numbers of endpoints".into());
            }
            fixed(
                Rule::Balanced,
                Vec::new(),
                format!(
                    "the nodes with {entry_workload} endpoints are the entries (ECMP) and each holds {first} \
                     (Local policy); {spread}"
                ),
            )
        }
    }
}
