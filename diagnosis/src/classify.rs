//! Per node and per family of causes: is the condition above its enter threshold, below its exit
//! threshold, and which cause explains it; and for a raised verdict, the evidence, confidence and next
//! step.
//!
//! Families (each has its own hysteresis state in [`crate::detector`]):
//!
//! | family | value | enter | exit | causes |
//! |---|---|---|---|---|
//! | traffic | normalised pod traffic `s` | `s >= T(c, q)` ([`crate::noise`]) | `s < X` | connection-pinning, pod-concentration |
//! | ingress | NIC bytes its pods do not account for, `f` (x the workload's pod traffic), and `f` over the next node's | `f >= 0.5` and `>= 2x` any other node | `f < 0.3` or `< 1.5x` | ingress-concentration |
//! | unattributed | unattributed cores `u` minus the serving peers' median | `>= 0.5` cores and `u >= 2 x` median | `< 0.3` cores | unattributed-cpu |
//! | hot pod | CPU of the hottest pod of another workload | `>= 0.5` cores | `< 0.35` cores | colocated-hot-pod |
//! | thermal | temperature, frequency, throttle bits | soft limit bit, or `>= 80 C` and capped | no soft limit and `< 77 C` | thermal-throttling |
//! | memory | PSI memory stall fraction, MemAvailable | stall `>= 10 %` or available `<= 10 %` | stall `< 5 %` and available `> 15 %` | memory-pressure |
//!
//! Traffic causes: the flagged skew *follows the connections* when the connection excess covers most of
//! the traffic excess, `(k - 1) >= 0.7 (s - 1)` (k: the node's normalised connection count). Then
//! * follows, and the node's connection count is below the binomial bound `m` (chance could have
//!   placed them so): `connection-pinning`, the skew is what random pinning of keep-alive connections
//!   produces (fingerprint 0.8 when the node carries nearly everything, >= 80 %: with so few
//!   connections affinity cannot be excluded yet; 1 otherwise);
//! * anything else is `pod-concentration`: connections beyond chance mean placement was decided
//!   (session affinity, `externalTrafficPolicy: Local`); fingerprint 1 when the node carries nearly
//!   everything, 0.7 when connections are beyond chance but the node does not take nearly all, 0.5 when
//!   the connection counts do not explain the traffic at all.
//!
//! Ingress (NIC skew without pod skew) is measured on the NIC bytes that the node's own pods do not
//! account for: an entry node forwards every request for pods elsewhere in and out again, so it alone
//! carries such bytes in proportion to the workload's traffic. With ingress spread over nodes
//! (BGP/ECMP) every node forwards a little and none dominates.
//!
//! Ingress is judged only when the workload's pod bytes are at least a fifth of the serving nodes' NIC
//! bytes; otherwise NIC bytes are dominated by other traffic (an idle cluster's etcd). Unattributed CPU that is itself flagged
//! takes precedence over ingress on the same node: an NFS server's NIC skew is explained by the
//! server's work (see [`crate::detector`]).
//!
//! Confidence = `level x fingerprint`. `level` rises linearly from 0.3 at the exit threshold through 0.6
//! at the enter threshold to 0.9 one enter-exit gap above it; `fingerprint` is 1 when every mark of the
//! cause's fingerprint is present and lower when one is missing (stated per cause below).

use crate::analysis::{Analysis, NodeAnalysis, PodFigures, Signal, daemon_set_peer_median};
use crate::config::Config;
use crate::noise::{TrafficBand, traffic_band};
use crate::stats::median_of_sorted_without;
use crate::verdict::{Cause, Evidence, format_number};

/// A family of causes sharing one hysteresis state per node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Family {
    Traffic,
    Ingress,
    Unattributed,
    HotPod,
    Thermal,
    Memory,
}

/// One family's condition on one node at one evaluation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Assessment {
    pub enter: bool,
    pub exit: bool,
    pub cause: Cause,
}

/// What a raised verdict reports.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Explanation {
    pub confidence: f64,
    pub subject: Option<String>,
    pub summary: String,
    pub evidence: Vec<Evidence>,
    pub next_step: String,
}

/// Values ranked once per evaluation, so that each node's "peers without me" statistic costs O(1)
/// instead of a pass over every node.
struct Ranked {
    sorted: Vec<f64>,
    /// Position in `sorted` of each node (by index in `Analysis::nodes`), if it is a member.
    rank: Vec<Option<usize>>,
}

impl Ranked {
    fn new(len: usize, members: impl Iterator<Item = (usize, f64)>) -> Self {
        let mut pairs: Vec<(usize, f64)> = members.collect();
        pairs.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        let mut rank = vec![None; len];
        for (position, (index, _)) in pairs.iter().enumerate() {
            rank[*index] = Some(position);
        }
        Self { sorted: pairs.into_iter().map(|(_, v)| v).collect(), rank }
    }

    /// Median of the members other than node `index`.
    fn median_without(&self, index: usize) -> Option<f64> {
        median_of_sorted_without(&self.sorted, self.rank.get(index).copied().flatten())
    }
}

/// Per-evaluation peer references (see [`crate::analysis`] for who the peers are).
pub(crate) struct Peers {
    /// Unattributed CPU of the serving nodes.
    unattributed: Ranked,
    /// Hottest pod of another workload, every node (used without a workload under test).
    hottest_pod: Ranked,
    /// The two largest forwarded-byte rates over all nodes, with their node index.
    forwarded_top: [(f64, Option<usize>); 2],
}

impl Peers {
    pub fn new(analysis: &Analysis) -> Self {
        let n = analysis.nodes.len();
        let nodes = analysis.nodes.iter().enumerate();
        let unattributed = Ranked::new(
            n,
            nodes
                .clone()
                .filter(|(_, a)| a.is_serving())
                .filter_map(|(i, a)| Some((i, a.value(Signal::UnattributedCpu)?))),
        );
        let hottest_pod = Ranked::new(n, nodes.clone().map(|(i, a)| (i, a.hottest_other_pod_cores)));
        let mut forwarded_top = [(0.0, None); 2];
        for (i, a) in nodes {
            let Some(f) = a.value(Signal::ForwardedNic) else { continue };
            if forwarded_top[0].1.is_none() || f > forwarded_top[0].0 {
                forwarded_top[1] = forwarded_top[0];
                forwarded_top[0] = (f, Some(i));
            } else if forwarded_top[1].1.is_none() || f > forwarded_top[1].0 {
                forwarded_top[1] = (f, Some(i));
            }
        }
        Self { unattributed, hottest_pod, forwarded_top }
    }

    /// The largest forwarded-byte rate of the nodes other than `index` (0 without any).
    fn largest_other_forwarded(&self, index: usize) -> f64 {
        let [first, second] = self.forwarded_top;
        if first.1 == Some(index) { second.0 } else { first.0 }
    }
}

/// 0.3 at the exit threshold, 0.6 at the enter threshold, 0.9 one gap above it.
fn level(value: f64, enter: f64, exit: f64) -> f64 {
    let gap = enter - exit;
    if gap <= 0.0 {
        return if value >= enter { 0.9 } else { 0.3 };
    }
    0.3 + 0.3 * ((value - exit) / gap).clamp(0.0, 2.0)
}

fn pct(fraction: f64) -> String {
    if fraction.abs() < 0.1 { format!("{:.1} %", fraction * 100.0) } else { format!("{:.0} %", fraction * 100.0) }
}

/// Everything the traffic family decides on.
struct TrafficFacts<'a> {
    normalised: f64,
    share: f64,
    connection_normalised: Option<f64>,
    node_connections: f64,
    band: TrafficBand,
    follows: bool,
    beyond_chance: bool,
    nearly_all: bool,
    top_pod: Option<&'a PodFigures>,
}

fn traffic_facts<'a>(analysis: &Analysis, node: &'a NodeAnalysis, config: &Config) -> Option<TrafficFacts<'a>> {
    if analysis.workload.is_none() || !node.is_serving() || analysis.serving_nodes < 2 {
        return None;
    }
    let normalised = node.normalised(Signal::PodTraffic)?;
    let share = node.share(Signal::PodTraffic)?;
    let total_connections = analysis.connections.round().max(0.0) as u32;
    let band = traffic_band(
        total_connections,
        node.endpoints,
        analysis.total_endpoints,
        analysis.serving_nodes,
        &config.traffic,
    );
    let connection_normalised = node.normalised(Signal::Connections).filter(|_| total_connections >= 1);
    let node_connections = node.value(Signal::Connections).unwrap_or(0.0);
    let follows = connection_normalised.is_some_and(|k| k - 1.0 >= config.traffic.explained * (normalised - 1.0));
    let beyond_chance = band.noise_count.is_some_and(|m| node_connections.round() >= f64::from(m));
    let top_pod = node.workload_pods.iter().max_by(|a, b| a.traffic_bps.total_cmp(&b.traffic_bps));
    Some(TrafficFacts {
        normalised,
        share,
        connection_normalised,
        node_connections,
        band,
        follows,
        beyond_chance,
        nearly_all: share >= config.traffic.nearly_all,
        top_pod,
    })
}

impl TrafficFacts<'_> {
    /// Pinning when the connections explain the skew and chance could have placed them so; anything
    /// else is placement that is not random (affinity, Local policy) or traffic the connections do not
    /// explain.
    fn cause(&self) -> Cause {
        if self.follows && !self.beyond_chance { Cause::ConnectionPinning } else { Cause::PodConcentration }
    }
}

struct IngressFacts {
    /// Forwarded bytes / the workload's pod traffic.
    forwarded: f64,
    /// Forwarded bytes / the largest other node's forwarded bytes (infinite when no other forwards).
    dominance: f64,
    nic: Option<f64>,
    pod: f64,
    softirq: Option<f64>,
    workload_fraction: f64,
}

fn ingress_facts(analysis: &Analysis, peers: &Peers, index: usize) -> Option<IngressFacts> {
    analysis.workload.as_ref()?;
    let node = analysis.nodes.get(index)?;
    let nic_total = analysis.summary.get(&Signal::Nic)?.total;
    let pod_total = analysis.summary.get(&Signal::PodTraffic)?.total;
    if nic_total <= 0.0 || pod_total <= 0.0 {
        return None;
    }
    let forwarded = node.value(Signal::ForwardedNic)?;
    let largest_other = peers.largest_other_forwarded(index);
    Some(IngressFacts {
        forwarded: forwarded / pod_total,
        dominance: if largest_other > 0.0 { forwarded / largest_other } else { f64::INFINITY },
        nic: node.normalised(Signal::Nic),
        pod: node.normalised(Signal::PodTraffic).unwrap_or(0.0),
        softirq: node.normalised(Signal::Softirq),
        workload_fraction: pod_total / nic_total,
    })
}

struct UnattributedFacts {
    cores: f64,
    peer_median: f64,
    excess: f64,
}

fn unattributed_facts(node: &NodeAnalysis, peers: &Peers, index: usize) -> Option<UnattributedFacts> {
    let cores = node.value(Signal::UnattributedCpu)?;
    let peer_median = peers.unattributed.median_without(index).unwrap_or(0.0);
    Some(UnattributedFacts { cores, peer_median, excess: cores - peer_median })
}

/// The hottest pod of another workload that counts, with the peer median it was compared against.
///
/// A DaemonSet pod counts only when it outburns its siblings on the serving nodes (a DaemonSet busy
/// everywhere makes no node a hog). Without a workload under test every pod is "another workload's",
/// so a pod counts only when it outburns the hottest pod of the other nodes likewise: the serving
/// replicas, equally busy everywhere, are then not reported.
fn hot_pod<'a>(
    analysis: &'a Analysis,
    peers: &Peers,
    index: usize,
    config: &Config,
) -> Option<(&'a PodFigures, Option<f64>)> {
    let ratio = config.hot_pod.daemon_set_ratio;
    let node = analysis.nodes.get(index)?;
    if analysis.workload.is_none() {
        let pod = node.busy_other_pods.first()?;
        let peers = peers.hottest_pod.median_without(index);
        return match peers {
            Some(m) if pod.cpu_cores < ratio * m => None,
            _ => Some((pod, peers)),
        };
    }
    node.busy_other_pods.iter().find_map(|pod| match pod.workload.as_ref().filter(|w| w.is_daemon_set()) {
        Some(ds) => {
            let peers = daemon_set_peer_median(analysis, &ds.to_string(), &node.node);
            match peers {
                Some(m) if pod.cpu_cores < ratio * m => None,
                _ => Some((pod, peers)),
            }
        }
        None => Some((pod, None)),
    })
}

fn pod_label(pod: &PodFigures) -> String {
    match &pod.workload {
        Some(w) => format!("{}/{} ({w})", pod.namespace, pod.name),
        None if pod.namespace.is_empty() => pod.name.clone(),
        None => format!("{}/{}", pod.namespace, pod.name),
    }
}

/// Assesses one family on node `index` of `analysis`; `None` when the family does not apply (treated
/// as "below exit").
pub(crate) fn assess(
    analysis: &Analysis,
    peers: &Peers,
    index: usize,
    family: Family,
    config: &Config,
) -> Option<Assessment> {
    let node = analysis.nodes.get(index)?;
    match family {
        Family::Traffic => {
            let facts = traffic_facts(analysis, node, config)?;
            Some(Assessment {
                enter: facts.normalised >= facts.band.enter,
                exit: facts.normalised < facts.band.exit,
                cause: facts.cause(),
            })
        }
        Family::Ingress => {
            let t = &config.ingress;
            let facts = ingress_facts(analysis, peers, index)?;
            let gated = facts.workload_fraction >= t.min_workload_fraction;
            Some(Assessment {
                enter: gated && facts.forwarded >= t.enter_forwarded && facts.dominance >= t.dominance,
                exit: !gated || facts.forwarded < t.exit_forwarded || facts.dominance < t.exit_dominance,
                cause: Cause::IngressConcentration,
            })
        }
        Family::Unattributed => {
            let t = &config.unattributed;
            let facts = unattributed_facts(node, peers, index)?;
            Some(Assessment {
                enter: facts.excess >= t.enter_excess_cores && facts.cores >= t.min_ratio * facts.peer_median,
                exit: facts.excess < t.exit_excess_cores,
                cause: Cause::UnattributedCpu,
            })
        }
        Family::HotPod => {
            let t = &config.hot_pod;
            let cpu = hot_pod(analysis, peers, index, config).map_or(0.0, |(pod, _)| pod.cpu_cores);
            Some(Assessment { enter: cpu >= t.enter_cores, exit: cpu < t.exit_cores, cause: Cause::ColocatedHotPod })
        }
        Family::Thermal => {
            let t = &config.thermal;
            let temperature = node.value(Signal::Temperature);
            let throttled = node.value(Signal::Throttled).unwrap_or(0.0) > 0.0;
            let capped = throttled || node.value(Signal::Frequency).is_some_and(|f| f <= t.capped_ratio);
            let soft_limit = node.throttle_seen.soft_temperature_limit;
            let hot = temperature.is_some_and(|c| c >= t.enter_celsius);
            Some(Assessment {
                enter: soft_limit || (hot && capped),
                exit: !soft_limit && temperature.is_none_or(|c| c < t.exit_celsius),
                cause: Cause::ThermalThrottling,
            })
        }
        Family::Memory => {
            let t = &config.memory;
            let stall = node.value(Signal::MemoryPressure);
            let available = node.value(Signal::MemoryUsed).map(|used| 1.0 - used);
            Some(Assessment {
                enter: stall.is_some_and(|s| s >= t.enter_stall) || available.is_some_and(|a| a <= t.enter_available),
                exit: stall.is_none_or(|s| s < t.exit_stall) && available.is_none_or(|a| a > t.exit_available),
                cause: Cause::MemoryPressure,
            })
        }
    }
}

const PINNING_NEXT: &str = "Run the load test again with `oha --disable-keepalive` (or with far more connections \
than endpoints, e.g. -c 200): if the skew vanishes or moves to another node, it was keep-alive pinning. kube-proxy \
balances connections, not requests; for an even spread use many connections, or a per-request (L7) balancer in front.";

const CONCENTRATION_NEXT: &str = "Check the Service (`kubectl get svc -o yaml`): `sessionAffinity: ClientIP` sends \
every request from one source IP (all of them, behind a proxy) to one pod, and `externalTrafficPolicy: Local` sends \
everything to the entry node's pods. Set sessionAffinity: None, or use the Cluster policy, or run a replica on every \
node that can announce the IP.";

const INGRESS_NEXT: &str = "All ingress enters this node and is forwarded from there: with MetalLB in L2 mode one \
speaker answers ARP for the service IP (`kubectl describe svc` and the speaker's events show which). Use BGP mode so \
ECMP spreads ingress over nodes, or set externalTrafficPolicy: Local with a replica on each announcing node.";

const UNATTRIBUTED_NEXT: &str = "Find the work outside pods on this node: kernel nfsd threads (an NFS server) or the \
k3s server and etcd (`top -H` or `ps -eo pid,comm,%cpu --sort=-%cpu` on the node). Move the NFS server off the \
serving nodes, or keep the workload off control-plane nodes (taint them).";

const THERMAL_NEXT: &str = "Cool the board: the Pi 5 throttles between 80 and 85 C. Fit an active cooler or improve \
case airflow, and confirm with `vcgencmd measure_temp` and `vcgencmd get_throttled`.";

const MEMORY_NEXT: &str = "Lower memory use on this node (fewer PHP/worker processes, memory limits on the hot \
pods), move pods away, or add memory or zram; `cat /proc/pressure/memory` shows the stalls live.";

/// Evidence, confidence and next step of a raised verdict on node `index` (called only for raised
/// verdicts).
pub(crate) fn explain(analysis: &Analysis, peers: &Peers, index: usize, cause: Cause, config: &Config) -> Explanation {
    let Some(node) = analysis.nodes.get(index) else {
        return Explanation {
            confidence: 0.0,
            subject: None,
            summary: "the node has no figures in this span".to_string(),
            evidence: Vec::new(),
            next_step: String::new(),
        };
    };
    let name = &node.node;
    match cause {
        Cause::ConnectionPinning | Cause::PodConcentration => {
            let Some(f) = traffic_facts(analysis, node, config) else {
                return Explanation {
                    confidence: 0.3,
                    subject: None,
                    summary: format!("{name} no longer serves the workload"),
                    evidence: Vec::new(),
                    next_step: String::new(),
                };
            };
            let mut evidence = vec![
                Evidence::new("pod-traffic-share", f.share, "share"),
                Evidence::new("expected-share", f.band.expected_share, "share"),
                Evidence::new("pod-traffic-normalised", f.normalised, "x expected"),
                Evidence::new("enter-threshold", f.band.enter, "x expected"),
                Evidence::new("node-connections", f.node_connections, "conns"),
                Evidence::new("connections", analysis.connections, "conns"),
            ];
            if let Some(k) = f.connection_normalised {
                evidence.push(Evidence::new("connections-normalised", k, "x expected"));
            }
            if let Some(b) = f.band.noise_bound {
                evidence.push(Evidence::new("random-spread-bound", b, "x expected"));
            }
            if let Some(top) = f.top_pod.and_then(|p| p.traffic_share) {
                evidence.push(Evidence::new("top-pod-share", top, "share"));
            }
            let level = level(f.normalised, f.band.enter, f.band.exit);
            let c = f.band.connections;
            if cause == Cause::ConnectionPinning {
                let (fingerprint, caveat) = if f.nearly_all {
                    (0.8, " With so few connections, session affinity or a Local policy cannot be excluded yet.")
                } else {
                    (1.0, "")
                };
                Explanation {
                    confidence: level * fingerprint,
                    subject: None,
                    summary: format!(
                        "{name} carries {} of the workload's traffic against an expected {} ({:.2}x), and its \
                         pods hold {:.0} of the {c} keep-alive connections: traffic follows connections pinned \
                         at connect time.{caveat}",
                        pct(f.share),
                        pct(f.band.expected_share),
                        f.normalised,
                        f.node_connections,
                    ),
                    evidence,
                    next_step: PINNING_NEXT.to_string(),
                }
            } else {
                let fingerprint = match (f.nearly_all, f.follows) {
                    (true, _) => 1.0,
                    (false, true) => 0.7,
                    (false, false) => 0.5,
                };
                let how = match (f.follows, f.band.noise_count) {
                    (true, Some(m)) => format!(
                        "its pods hold {:.0} of {c} connections where chance places at most {}",
                        f.node_connections,
                        m - 1
                    ),
                    _ => "the connection counts do not explain it".to_string(),
                };
                Explanation {
                    confidence: level * fingerprint,
                    subject: f.top_pod.map(pod_label),
                    summary: format!(
                        "{name}'s pods take {} of the workload's traffic against an expected {} ({:.2}x); {how}.",
                        pct(f.share),
                        pct(f.band.expected_share),
                        f.normalised,
                    ),
                    evidence,
                    next_step: CONCENTRATION_NEXT.to_string(),
                }
            }
        }
        Cause::IngressConcentration => {
            let t = &config.ingress;
            let Some(f) = ingress_facts(analysis, peers, index) else {
                return Explanation {
                    confidence: 0.3,
                    subject: None,
                    summary: format!("{name}: the workload carries no traffic now"),
                    evidence: Vec::new(),
                    next_step: INGRESS_NEXT.to_string(),
                };
            };
            let mut evidence = vec![
                Evidence::new("forwarded-fraction", f.forwarded, "x workload traffic"),
                Evidence::new("forwarded-dominance", f.dominance.min(1e6), "x next node"),
                Evidence::new("forwarded-bytes", node.value(Signal::ForwardedNic).unwrap_or(0.0), "B/s"),
                Evidence::new("pod-traffic-normalised", f.pod, "x expected"),
                Evidence::new("expected-share", node.expected_share, "share"),
            ];
            if let Some(n) = f.nic {
                evidence.push(Evidence::new("nic-normalised", n, "x expected"));
            }
            if let Some(s) = f.softirq {
                evidence.push(Evidence::new("softirq-normalised", s, "x expected"));
            }
            // The announcer's NAT and conntrack work shows as softirq: the last mark of the fingerprint.
            let fingerprint = if f.softirq.is_some_and(|s| s >= 1.25) { 1.0 } else { 0.8 };
            Explanation {
                confidence: level(f.forwarded, t.enter_forwarded, t.exit_forwarded) * fingerprint,
                subject: None,
                summary: format!(
                    "{name}'s NICs carry {} of the workload's traffic beyond what its own pods send and receive \
                     ({} as much as any other node) while its pods carry {:.2}x their expected share: traffic \
                     enters here and is forwarded to the other nodes{}.",
                    pct(f.forwarded),
                    if f.dominance.is_finite() { format!("{:.1}x", f.dominance) } else { "far more".to_string() },
                    f.pod,
                    f.softirq.map_or(String::new(), |s| format!(" (softirq {s:.2}x expected)"))
                ),
                evidence,
                next_step: INGRESS_NEXT.to_string(),
            }
        }
        Cause::UnattributedCpu => {
            let t = &config.unattributed;
            let f = unattributed_facts(node, peers, index).unwrap_or(UnattributedFacts {
                cores: 0.0,
                peer_median: 0.0,
                excess: 0.0,
            });
            let nic = node.normalised(Signal::Nic);
            let mut evidence = vec![
                Evidence::new("unattributed-cpu", f.cores, "cores"),
                Evidence::new("peer-median", f.peer_median, "cores"),
                Evidence::new("excess", f.excess, "cores"),
                Evidence::new("cpu", node.value(Signal::Cpu).unwrap_or(0.0), "cores"),
            ];
            if let Some(n) = nic {
                evidence.push(Evidence::new("nic-normalised", n, "x expected"));
            }
            Explanation {
                confidence: level(f.excess, t.enter_excess_cores, t.exit_excess_cores),
                subject: None,
                summary: format!(
                    "{name} spends {} cores in processes outside every pod, {} more than the serving nodes' median \
                     of {}.",
                    format_number(f.cores),
                    format_number(f.excess),
                    format_number(f.peer_median)
                ),
                evidence,
                next_step: UNATTRIBUTED_NEXT.to_string(),
            }
        }
        Cause::ColocatedHotPod => {
            let t = &config.hot_pod;
            let found = hot_pod(analysis, peers, index, config);
            let cpu = found.map_or(0.0, |(p, _)| p.cpu_cores);
            let mut evidence = vec![
                Evidence::new("pod-cpu", cpu, "cores"),
                Evidence::new("node-cpu", node.value(Signal::Cpu).unwrap_or(0.0), "cores"),
            ];
            if let Some(n) = node.normalised(Signal::Cpu) {
                evidence.push(Evidence::new("node-cpu-normalised", n, "x expected"));
            }
            if let Some(m) = found.and_then(|(_, m)| m) {
                evidence.push(Evidence::new("peer-median", m, "cores"));
            }
            let label = found.map(|(p, _)| pod_label(p));
            Explanation {
                confidence: level(cpu, t.enter_cores, t.exit_cores),
                subject: label.clone(),
                summary: format!(
                    "{} burns {} cores on {name}, {}.",
                    label.as_deref().unwrap_or("a pod of another workload"),
                    format_number(cpu),
                    if analysis.workload.is_some() {
                        "next to the workload under test"
                    } else {
                        "far more than the hottest pod of the other nodes"
                    }
                ),
                evidence,
                next_step: format!(
                    "Move {} to another node (nodeAffinity or podAntiAffinity) or cap it with CPU limits; if it is \
                     the database, more web replicas will not raise the ceiling.",
                    label.as_deref().unwrap_or("the pod")
                ),
            }
        }
        Cause::ThermalThrottling => {
            let temperature = node.value(Signal::Temperature);
            let frequency = node.value(Signal::Frequency);
            let seen = node.throttle_seen;
            let mut evidence = Vec::new();
            if let Some(c) = temperature {
                evidence.push(Evidence::new("temperature", c, "C"));
            }
            if let Some(f) = frequency {
                evidence.push(Evidence::new("frequency-ratio", f, "fraction"));
            }
            if let Some(t) = node.value(Signal::Throttled) {
                evidence.push(Evidence::new("throttled-samples", t, "fraction"));
            }
            if let Some(n) = node.normalised(Signal::Cpu) {
                evidence.push(Evidence::new("node-cpu-normalised", n, "x expected"));
            }
            let bits = seen.throttled || seen.soft_temperature_limit || seen.arm_frequency_capped;
            let hot = temperature.is_some_and(|c| c >= config.thermal.enter_celsius);
            let confidence = match (bits, hot) {
                (true, true) => 0.9,
                (true, false) | (false, true) => 0.7,
                (false, false) => 0.4,
            };
            Explanation {
                confidence,
                subject: None,
                summary: format!(
                    "{name} runs at {} with the CPU at {} of its maximum frequency{}.",
                    temperature.map_or("an unknown temperature".to_string(), |c| format!("{c:.1} C")),
                    frequency.map_or("an unknown fraction".to_string(), pct),
                    if bits { " and the firmware reports throttling" } else { "" }
                ),
                evidence,
                next_step: THERMAL_NEXT.to_string(),
            }
        }
        Cause::MemoryPressure => {
            let t = &config.memory;
            let stall = node.value(Signal::MemoryPressure);
            let available = node.value(Signal::MemoryUsed).map(|u| 1.0 - u);
            let mut evidence = Vec::new();
            if let Some(s) = stall {
                evidence.push(Evidence::new("memory-stall", s, "fraction"));
            }
            if let Some(a) = available {
                evidence.push(Evidence::new("memory-available", a, "fraction"));
            }
            if let Some(g) = node.value(Signal::MemoryGrowth) {
                evidence.push(Evidence::new("memory-growth", g, "B/s"));
            }
            let stalled = stall.is_some_and(|s| s >= t.enter_stall);
            let low = available.is_some_and(|a| a <= t.enter_available);
            Explanation {
                confidence: if stalled && low { 0.9 } else { 0.7 },
                subject: None,
                summary: format!(
                    "Tasks on {name} stall on memory {} of the time with {} of memory available.",
                    stall.map_or("an unknown part".to_string(), pct),
                    available.map_or("an unknown part".to_string(), pct)
                ),
                evidence,
                next_step: MEMORY_NEXT.to_string(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_rises_through_the_thresholds() {
        assert!((level(1.5, 2.0, 1.5) - 0.3).abs() < 1e-12);
        assert!((level(2.0, 2.0, 1.5) - 0.6).abs() < 1e-12);
        assert!((level(2.5, 2.0, 1.5) - 0.9).abs() < 1e-12);
        assert!((level(9.0, 2.0, 1.5) - 0.9).abs() < 1e-12);
    }
}
