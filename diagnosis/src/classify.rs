//! Per node and family of causes: is the condition above its enter threshold, below its exit
//! threshold, and which cause explains it. The facts each family decides on are computed here and
//! shared with `explain`, which turns a raised verdict's facts into words.
//!
//! Families (each has its own hysteresis state in [`crate::detector`]):
//!
//! | family | value | enter | exit | causes |
//! |---|---|---|---|---|
//! | traffic | normalised pod traffic `s` | `s >= T(d, q)` ([`crate::noise`]) | `s < X` | connection-pinning, pod-concentration |
//! | ingress | the node's entry part `e` (from its forwarded bytes) over its fair part `f` | `e / f >= T(d, f)` and forwarded `>= 0.5x` the workload's traffic | `< X` or `< 0.3x` | ingress-concentration |
//! | unattributed | unattributed cores `u` over the serving peers' median and over the node's own baseline (learnt for 4 s at least) | `>= 0.5` cores above both and `u >= 2 x` median | `< 0.3` cores above either | unattributed-cpu |
//! | hot pod | CPU of the hottest pod of another workload | `>= 0.5` cores | `< 0.35` cores | colocated-hot-pod |
//! | thermal | temperature, frequency, throttle bits | soft limit bit, or `>= 80 C` and capped | no soft limit and `< 77 C` | thermal-throttling |
//! | memory | PSI memory stall fraction, MemAvailable | stall `>= 10 %` or available `<= 10 %` | stall `< 5 %` and available `> 15 %` | memory-pressure |
//!
//! `d` is the number of balancing decisions behind the spread ([`crate::Analysis::decisions`]):
//! connections accepted in the span plus connections held. Traffic and ingress are judged only once
//! the workload carries `min_workload_bps`, and not at all when its pods use hostNetwork (their bytes
//! are the node's).
//!
//! Traffic causes: the flagged skew *follows the decisions* when the node's excess of decisions covers
//! most of its traffic excess, `(k - 1) >= 0.7 (s - 1)` (k: the node's normalised decision count).
//! * A Service with `sessionAffinity: ClientIP` decided the placement: `pod-concentration`.
//! * Follows, and the node's decision count is below the binomial bound `m` (chance could have placed
//!   them so): `connection-pinning`, what random pinning of keep-alive connections produces.
//! * Anything else is `pod-concentration`: decisions beyond chance mean placement was decided (a Local
//!   policy sending every connection to the entry node's pods), or the traffic does not follow them.
//!
//! Ingress, with a Service read ([`crate::entry`]): the node's entry part is estimated from the NIC
//! bytes its own pods do not account for, `e = forwarded / (2 (1 - s) x traffic)` (s: the node's
//! share of the traffic, so that what enters and stays is not expected to leave), and compared with
//! its fair part `f` (even entry over the nodes that may announce), with the same binomial band as
//! the pod traffic over the entry decisions (each client connection picks its entry node). The
//! concentration must also be one the cluster declares (the layer-2 announcer) or beyond what
//! chance gives: ECMP hashing a handful of connections lands unevenly by itself. A node
//! below its fair part is never flagged, however it compares with a runner-up: with every node an
//! entry, a node without endpoints forwards twice what a node with one does, by construction.
//! Without a Service, today's rule: forwarded bytes `>= 0.5x` the workload's traffic and `>= 2x` any
//! other node's. Ingress is judged only when the workload's pod bytes are at least a fifth of the
//! serving nodes' NIC bytes (otherwise an idle cluster's etcd dominates them).
//!
//! Unattributed CPU that is itself flagged takes precedence over ingress on the same node (an NFS
//! server's NIC bytes are not forwarding), unless the cluster declares that node the sole entry (the
//! layer-2 announcer): then both are reported.

use std::collections::BTreeMap;

use crate::analysis::{Analysis, NodeAnalysis, PodFigures, Signal, daemon_set_peer_median};
use crate::config::Config;
use crate::input::{SessionAffinity, TrafficPolicy};
use crate::noise::{TrafficBand, traffic_band};
use crate::stats::median_of_sorted_without;
use crate::verdict::Cause;

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

    /// Largest of the members other than node `index`.
    fn max_without(&self, index: usize) -> Option<f64> {
        let skip = self.rank.get(index).copied().flatten();
        let last = self.sorted.len().checked_sub(1)?;
        if skip == Some(last) { last.checked_sub(1).map(|i| self.sorted[i]) } else { Some(self.sorted[last]) }
    }
}

/// One evaluation's analysis with what every node is compared with: the peer references (see
/// [`crate::analysis`] for who the peers are) and each node's own baseline.
pub(crate) struct Context<'a> {
    pub analysis: &'a Analysis,
    pub config: &'a Config,
    /// Each node's own unattributed-CPU baseline, where it has learnt long enough.
    pub baselines: &'a BTreeMap<String, f64>,
    /// Unattributed CPU of the serving nodes.
    unattributed: Ranked,
    /// Hottest pod of another workload, every node (used without a workload under test).
    hottest_pod: Ranked,
    /// The two largest forwarded-byte rates over all nodes, with their node index.
    forwarded_top: [(f64, Option<usize>); 2],
}

impl<'a> Context<'a> {
    pub fn new(analysis: &'a Analysis, config: &'a Config, baselines: &'a BTreeMap<String, f64>) -> Self {
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
        Self { analysis, config, baselines, unattributed, hottest_pod, forwarded_top }
    }

    pub fn node(&self, index: usize) -> Option<&'a NodeAnalysis> {
        self.analysis.nodes.get(index)
    }

    /// The largest forwarded-byte rate of the nodes other than `index` (0 without any).
    fn largest_other_forwarded(&self, index: usize) -> f64 {
        let [first, second] = self.forwarded_top;
        if first.1 == Some(index) { second.0 } else { first.0 }
    }

    /// The workload's pod traffic, when traffic causes can be judged at all: a workload under test,
    /// none of its pods on hostNetwork, at least the floor of traffic, and a full detection span of
    /// history (a shorter span holds too few requests for the spread to mean anything; a collector
    /// that just started waits that long).
    fn judgeable_traffic(&self) -> Option<f64> {
        self.analysis.workload.as_ref()?;
        let full = self.config.detect_span_ms as f64 / 1000.0 * 0.9;
        if self.analysis.nodes.iter().any(|n| n.is_serving() && n.span_seconds < full) {
            return None;
        }
        if self.analysis.nodes.iter().flat_map(|n| &n.workload_pods).any(|p| p.host_network) {
            return None;
        }
        let traffic = self.analysis.summary.get(&Signal::PodTraffic)?.total;
        (traffic >= self.config.traffic.min_workload_bps).then_some(traffic)
    }

    /// `sessionAffinity: ClientIP` of the Service the workload is reached through, with its name.
    pub fn affinity(&self) -> Option<(&'a str, SessionAffinity)> {
        let service = self.analysis.entry.as_ref()?.service.as_ref()?;
        Some((service.service.as_str(), service.session_affinity?))
    }
}

/// Everything the traffic family decides on.
pub(crate) struct TrafficFacts<'a> {
    pub normalised: f64,
    pub share: f64,
    /// The node's decisions over its expected share of them.
    pub decisions_normalised: Option<f64>,
    pub node_decisions: f64,
    pub node_connections: f64,
    pub band: TrafficBand,
    pub follows: bool,
    pub beyond_chance: bool,
    pub nearly_all: bool,
    pub top_pod: Option<&'a PodFigures>,
}

pub(crate) fn traffic_facts<'a>(ctx: &Context<'a>, node: &'a NodeAnalysis) -> Option<TrafficFacts<'a>> {
    let analysis = ctx.analysis;
    if !node.is_serving() || analysis.serving_nodes < 2 {
        return None;
    }
    ctx.judgeable_traffic()?;
    let config = ctx.config;
    let normalised = node.normalised(Signal::PodTraffic)?;
    let share = node.share(Signal::PodTraffic)?;
    let decisions = analysis.decisions.round().max(0.0) as u32;
    let band =
        traffic_band(decisions, node.endpoints, analysis.total_endpoints, analysis.serving_nodes, &config.traffic);
    let decisions_normalised = (analysis.decisions >= 1.0 && band.expected_share > 0.0)
        .then(|| node.decisions / (analysis.decisions * band.expected_share));
    let follows = decisions_normalised.is_some_and(|k| k - 1.0 >= config.traffic.explained * (normalised - 1.0));
    let beyond_chance = band.noise_count.is_some_and(|m| node.decisions.round() >= f64::from(m));
    let top_pod = node.workload_pods.iter().max_by(|a, b| a.traffic_bps.total_cmp(&b.traffic_bps));
    Some(TrafficFacts {
        normalised,
        share,
        decisions_normalised,
        node_decisions: node.decisions,
        node_connections: node.value(Signal::Connections).unwrap_or(0.0),
        band,
        follows,
        beyond_chance,
        nearly_all: share >= config.traffic.nearly_all,
        top_pod,
    })
}

impl TrafficFacts<'_> {
    /// Affinity decided the placement; otherwise pinning when the decisions explain the skew and
    /// chance could have placed them so; anything else is placement that is not random (a Local
    /// policy) or traffic the decisions do not explain.
    pub fn cause(&self, affinity: bool) -> Cause {
        if !affinity && self.follows && !self.beyond_chance {
            Cause::ConnectionPinning
        } else {
            Cause::PodConcentration
        }
    }
}

/// What the ingress family decides on.
pub(crate) enum IngressFacts {
    /// With a Service read: the node's entry part against its fair part.
    Model {
        /// Forwarded bytes / the workload's pod traffic.
        forwarded: f64,
        /// The node's entry part, estimated from its forwarded bytes.
        entry: f64,
        /// Its fair part.
        fair: f64,
        /// `entry / fair`.
        normalised: f64,
        band: TrafficBand,
        /// Its part as the cluster declares it, when it does.
        declared: Option<f64>,
        /// Its entry count is beyond what random picks of the entry decisions give (ECMP hashing a
        /// few connections lands unevenly by chance, as kube-proxy does over endpoints).
        beyond_chance: bool,
        common: IngressCommon,
    },
    /// Without a Service: the node's forwarded bytes against the next node's.
    RunnerUp {
        forwarded: f64,
        /// Forwarded bytes / the largest other node's forwarded bytes (infinite when no other forwards).
        dominance: f64,
        common: IngressCommon,
    },
}

/// Figures both ingress rules report.
pub(crate) struct IngressCommon {
    pub forwarded_bps: f64,
    pub nic: Option<f64>,
    pub pod: f64,
    pub softirq: Option<f64>,
    /// The workload's pod bytes / the serving nodes' NIC bytes.
    pub workload_fraction: f64,
}

impl IngressFacts {
    pub fn common(&self) -> &IngressCommon {
        match self {
            Self::Model { common, .. } | Self::RunnerUp { common, .. } => common,
        }
    }

    pub fn forwarded(&self) -> f64 {
        match self {
            Self::Model { forwarded, .. } | Self::RunnerUp { forwarded, .. } => *forwarded,
        }
    }
}

pub(crate) fn ingress_facts(ctx: &Context<'_>, index: usize) -> Option<IngressFacts> {
    let analysis = ctx.analysis;
    let traffic = ctx.judgeable_traffic()?;
    let node = ctx.node(index)?;
    let nic_total = analysis.summary.get(&Signal::Nic)?.total;
    if nic_total <= 0.0 {
        return None;
    }
    let forwarded_bps = node.value(Signal::ForwardedNic)?;
    let common = IngressCommon {
        forwarded_bps,
        nic: node.normalised(Signal::Nic),
        pod: node.normalised(Signal::PodTraffic).unwrap_or(0.0),
        softirq: node.normalised(Signal::Softirq),
        workload_fraction: traffic / nic_total,
    };
    let forwarded = forwarded_bps / traffic;
    let model = analysis.entry.as_ref().filter(|m| m.service.is_some());
    let Some(model) = model else {
        let largest_other = ctx.largest_other_forwarded(index);
        let dominance = if largest_other > 0.0 { forwarded_bps / largest_other } else { f64::INFINITY };
        return Some(IngressFacts::RunnerUp { forwarded, dominance, common });
    };
    // Under a Local policy no node forwards; what a node's pods do not account for is not ingress.
    if model.policy() == TrafficPolicy::Local {
        return None;
    }
    // The part of what enters here that leaves for another node: with the connections' endpoints
    // picked independently of their entry (Cluster policy), one minus the node's observed share of
    // the traffic (the endpoint share when a relay sits in between, whose shares are not measured
    // here). The observed share keeps the estimate right when the pods' spread is itself skewed.
    let leaves = match (&model.relay, node.share(Signal::PodTraffic)) {
        (None, Some(share)) => Some(1.0 - share.clamp(0.0, 1.0)),
        _ => model.forwarded_part(&node.node),
    }
    .filter(|&p| p > 0.05)?;
    let fair = model.fair_part(&node.node);
    if fair <= 0.0 {
        return None;
    }
    let entry = forwarded / (2.0 * leaves);
    let candidates = u32::try_from(model.candidates()).unwrap_or(u32::MAX);
    let decisions = analysis.entry_decisions.round().max(0.0) as u32;
    let band = traffic_band(decisions, 1, candidates, candidates, &ctx.config.traffic);
    let beyond_chance = band.noise_count.is_some_and(|m| (entry * f64::from(decisions)).round() >= f64::from(m));
    Some(IngressFacts::Model {
        forwarded,
        entry,
        fair,
        normalised: entry / fair,
        band,
        declared: model.declared_part(&node.node),
        beyond_chance,
        common,
    })
}

pub(crate) struct UnattributedFacts {
    pub cores: f64,
    pub peer_median: f64,
    pub excess: f64,
    /// The node's own baseline, when it has learnt one.
    pub baseline: Option<f64>,
}

pub(crate) fn unattributed_facts(ctx: &Context<'_>, index: usize) -> Option<UnattributedFacts> {
    let node = ctx.node(index)?;
    let cores = node.value(Signal::UnattributedCpu)?;
    let peer_median = ctx.unattributed.median_without(index).unwrap_or(0.0);
    let baseline = ctx.baselines.get(&node.node).copied();
    Some(UnattributedFacts { cores, peer_median, excess: cores - peer_median, baseline })
}

/// The hottest pod of another workload that counts, with the peer median it was compared against.
///
/// A DaemonSet pod counts only when it outburns its siblings on the serving nodes (a DaemonSet busy
/// everywhere makes no node a hog). Without a workload under test every pod is "another workload's",
/// so a pod counts only when it outburns the hottest pod of every other node likewise: the serving
/// replicas, about equally busy wherever they run, are then not reported.
pub(crate) fn hot_pod<'a>(ctx: &Context<'a>, index: usize) -> Option<(&'a PodFigures, Option<f64>)> {
    let analysis = ctx.analysis;
    let ratio = ctx.config.hot_pod.daemon_set_ratio;
    let node = ctx.node(index)?;
    if analysis.workload.is_none() {
        let pod = node.busy_other_pods.first()?;
        let peers = ctx.hottest_pod.max_without(index);
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

/// Assesses one family on node `index`; `None` when the family does not apply (treated as "below
/// exit").
pub(crate) fn assess(ctx: &Context<'_>, index: usize, family: Family) -> Option<Assessment> {
    // One piece: one match over the families, each arm the enter/exit rule of one family side by side with the
    // others, as DIAGNOSIS.md lists them.
    let node = ctx.node(index)?;
    let config = ctx.config;
    // Rates over less than a full detection span (a node that just joined, a collector that just
    // started) hold too little to judge on; levels (heat, memory) are judged at once.
    let full = config.detect_span_ms as f64 / 1000.0 * 0.9;
    if matches!(family, Family::Traffic | Family::Ingress | Family::Unattributed | Family::HotPod)
        && node.span_seconds < full
    {
        return None;
    }
    match family {
        Family::Traffic => {
            let facts = traffic_facts(ctx, node)?;
            Some(Assessment {
                enter: facts.normalised >= facts.band.enter,
                exit: facts.normalised < facts.band.exit,
                cause: facts.cause(ctx.affinity().is_some()),
            })
        }
        Family::Ingress => {
            let t = &config.ingress;
            let facts = ingress_facts(ctx, index)?;
            let gated = facts.common().workload_fraction >= t.min_workload_fraction;
            let forwarded = facts.forwarded();
            let (enter, exit) = match &facts {
                IngressFacts::Model { normalised, band, declared, fair, beyond_chance, .. } => {
                    // A concentration the cluster declares (the layer-2 announcer) needs no statistics;
                    // otherwise only one beyond chance counts.
                    let declared_more = declared.is_some_and(|d| d >= fair * config.traffic.floor);
                    let explained = declared_more || *beyond_chance;
                    (
                        explained && *normalised >= band.enter && forwarded >= t.enter_forwarded,
                        !explained || *normalised < band.exit,
                    )
                }
                IngressFacts::RunnerUp { dominance, .. } => {
                    (*dominance >= t.dominance && forwarded >= t.enter_forwarded, *dominance < t.exit_dominance)
                }
            };
            Some(Assessment {
                enter: gated && enter,
                exit: !gated || exit || forwarded < t.exit_forwarded,
                cause: Cause::IngressConcentration,
            })
        }
        Family::Unattributed => {
            let t = &config.unattributed;
            let facts = unattributed_facts(ctx, index)?;
            // Without a learnt baseline nothing is raised: a server's control plane next to idle
            // workers looks like a hog to the peers alone.
            let over_baseline = facts.baseline.map(|b| facts.cores - b);
            Some(Assessment {
                enter: facts.excess >= t.enter_excess_cores
                    && facts.cores >= t.min_ratio * facts.peer_median
                    && over_baseline.is_some_and(|o| o >= t.enter_excess_cores),
                exit: facts.excess < t.exit_excess_cores || over_baseline.is_some_and(|o| o < t.exit_excess_cores),
                cause: Cause::UnattributedCpu,
            })
        }
        Family::HotPod => {
            let t = &config.hot_pod;
            let cpu = hot_pod(ctx, index).map_or(0.0, |(pod, _)| pod.cpu_cores);
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
