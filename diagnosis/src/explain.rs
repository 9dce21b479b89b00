//! The words of a raised verdict: its evidence, confidence, summary and next step, one function per
//! cause, from the facts [`crate::classify`] decided on. Next steps are specific to what was read
//! from the cluster (the Service, the MetalLB announcer) and say what that was.
//!
//! Confidence = `level x fingerprint`. `level` rises linearly from 0.3 at the exit threshold through
//! 0.6 at the enter threshold to 0.9 one enter-exit gap above it; `fingerprint` is 1 when every mark
//! of the cause's fingerprint is present and lower when one is missing (stated per cause below).

use crate::analysis::{NodeAnalysis, PodFigures, Signal};
use crate::classify::{
    Context, IngressFacts, TrafficFacts, UnattributedFacts, hot_pod, ingress_facts, traffic_facts, unattributed_facts,
};
use crate::input::{Announcement, TrafficPolicy};
use crate::verdict::{Cause, Evidence, Remedy, format_number};

/// What a raised verdict reports.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Explanation {
    pub confidence: f64,
    pub subject: Option<String>,
    pub summary: String,
    pub evidence: Vec<Evidence>,
    pub next_step: String,
    pub remedy: Remedy,
    pub read: Vec<String>,
}

impl Explanation {
    fn gone(summary: String) -> Self {
        Self {
            confidence: 0.3,
            subject: None,
            summary,
            evidence: Vec::new(),
            next_step: String::new(),
            remedy: Remedy::Investigate,
            read: Vec::new(),
        }
    }
}

/// 0.3 at the exit threshold, 0.6 at the enter threshold, 0.9 one gap above it.
pub(crate) fn level(value: f64, enter: f64, exit: f64) -> f64 {
    let gap = enter - exit;
    if gap <= 0.0 {
        return if value >= enter { 0.9 } else { 0.3 };
    }
    0.3 + 0.3 * ((value - exit) / gap).clamp(0.0, 2.0)
}

fn pct(fraction: f64) -> String {
    if fraction.abs() < 0.1 { format!("{:.1} %", fraction * 100.0) } else { format!("{:.0} %", fraction * 100.0) }
}

fn pod_label(pod: &PodFigures) -> String {
    match &pod.workload {
        Some(w) => format!("{}/{} ({w})", pod.namespace, pod.name),
        None if pod.namespace.is_empty() => pod.name.clone(),
        None => format!("{}/{}", pod.namespace, pod.name),
    }
}

/// Evidence, confidence and next step of a raised verdict on node `index`.
pub(crate) fn explain(ctx: &Context<'_>, index: usize, cause: Cause) -> Explanation {
    let Some(node) = ctx.node(index) else {
        return Explanation::gone("the node has no figures in this span".to_string());
    };
    match cause {
        Cause::ConnectionPinning | Cause::PodConcentration => match traffic_facts(ctx, node) {
            Some(facts) if cause == Cause::ConnectionPinning => pinning(ctx, node, &facts),
            Some(facts) => concentration(ctx, node, &facts),
            None => Explanation::gone(format!("{} no longer serves the workload", node.node)),
        },
        Cause::IngressConcentration => match ingress_facts(ctx, index) {
            Some(facts) => ingress(ctx, node, &facts),
            None => Explanation::gone(format!("{}: the workload carries no traffic now", node.node)),
        },
        Cause::UnattributedCpu => unattributed(ctx, node, unattributed_facts(ctx, index)),
        Cause::ColocatedHotPod => hot(ctx, node, index),
        Cause::ThermalThrottling => thermal(ctx, node),
        Cause::MemoryPressure => memory(ctx, node),
    }
}

/// The evidence both traffic causes show, and the starved endpoints.
fn traffic_evidence(ctx: &Context<'_>, facts: &TrafficFacts<'_>) -> Vec<Evidence> {
    let analysis = ctx.analysis;
    let mut evidence = vec![
        Evidence::new("pod-traffic-share", facts.share, "share"),
        Evidence::new("expected-share", facts.band.expected_share, "share"),
        Evidence::new("pod-traffic-normalised", facts.normalised, "x expected"),
        Evidence::new("enter-threshold", facts.band.enter, "x expected"),
        Evidence::new("node-decisions", facts.node_decisions, "conns"),
        Evidence::new("decisions", analysis.decisions, "conns"),
        Evidence::new("node-connections", facts.node_connections, "conns"),
        Evidence::new("connections", analysis.connections, "conns"),
    ];
    if let Some(k) = facts.decisions_normalised {
        evidence.push(Evidence::new("decisions-normalised", k, "x expected"));
    }
    if let Some(b) = facts.band.noise_bound {
        evidence.push(Evidence::new("random-spread-bound", b, "x expected"));
    }
    if let Some(top) = facts.top_pod.and_then(|p| p.traffic_share) {
        evidence.push(Evidence::new("top-pod-share", top, "share"));
    }
    if !analysis.starved.is_empty() {
        evidence.push(Evidence::new("starved-endpoints", analysis.starved.len() as f64, "pods"));
    }
    evidence
}

/// " Starved: pod on node (0.4 % against 33 %), ..." or nothing.
fn starved_sentence(ctx: &Context<'_>) -> String {
    let starved = &ctx.analysis.starved;
    if starved.is_empty() {
        return String::new();
    }
    let list: Vec<String> = starved
        .iter()
        .map(|s| format!("{} on {} ({} against {})", s.pod, s.node, pct(s.share), pct(s.expected)))
        .collect();
    format!(" Ready endpoints starved meanwhile: {}.", list.join(", "))
}

fn read_lines(ctx: &Context<'_>) -> Vec<String> {
    ctx.analysis.entry.as_ref().map(|m| m.read()).unwrap_or_default()
}

/// `connection-pinning`. Fingerprint 0.8 when the node carries nearly everything (with so few
/// connections affinity or a Local policy cannot be excluded yet), 1 otherwise.
fn pinning(ctx: &Context<'_>, node: &NodeAnalysis, facts: &TrafficFacts<'_>) -> Explanation {
    let (fingerprint, caveat) = if facts.nearly_all {
        (0.8, " With so few connections, session affinity or a Local policy cannot be excluded yet.")
    } else {
        (1.0, "")
    };
    let decisions = ctx.analysis.decisions;
    Explanation {
        confidence: level(facts.normalised, facts.band.enter, facts.band.exit) * fingerprint,
        subject: None,
        summary: format!(
            "{} carries {} of the workload's traffic against an expected {} ({:.2}x), and its pods hold {:.0} of \
             the {:.0} connections kube-proxy placed: traffic follows connections pinned at connect time.{caveat}{}",
            node.node,
            pct(facts.share),
            pct(facts.band.expected_share),
            facts.normalised,
            facts.node_decisions,
            decisions,
            starved_sentence(ctx),
        ),
        evidence: traffic_evidence(ctx, facts),
        next_step: "Run the load test again with `oha --disable-keepalive` (or with far more connections than \
                    endpoints, e.g. -c 200): if the skew vanishes or moves to another node, it was keep-alive \
                    pinning. kube-proxy balances connections, not requests; for an even spread turn keep-alive off \
                    between the client (or the proxy) and the Service, or use many connections."
            .to_string(),
        remedy: Remedy::SpreadConnections,
        read: read_lines(ctx),
    }
}

/// `pod-concentration`. Fingerprint 1 when the Service declares why (affinity, a Local policy) or the
/// node carries nearly everything, 0.7 when decisions are beyond chance without a declared reason,
/// 0.5 when the decisions do not explain the traffic at all.
fn concentration(ctx: &Context<'_>, node: &NodeAnalysis, facts: &TrafficFacts<'_>) -> Explanation {
    // One piece: the summary, evidence, confidence and next step of `pod-concentration` read the same facts
    // (affinity, policy, decisions, client addresses) and must agree with each other.
    let analysis = ctx.analysis;
    let name = &node.node;
    let mut evidence = traffic_evidence(ctx, facts);
    let model = analysis.entry.as_ref();
    let service = model.and_then(|m| m.service.as_ref());
    let share = format!(
        "{name}'s pods take {} of the workload's traffic against an expected {} ({:.2}x)",
        pct(facts.share),
        pct(facts.band.expected_share),
        facts.normalised
    );
    let (how, fingerprint, next_step, remedy) = if let Some((svc, affinity)) = ctx.affinity() {
        let peers = analysis.nodes.iter().flat_map(|n| &n.workload_pods).filter_map(|p| p.inbound_peers).max();
        evidence.push(Evidence::new("session-affinity-timeout", f64::from(affinity.timeout_seconds), "s"));
        if let Some(p) = peers {
            evidence.push(Evidence::new("client-addresses", f64::from(p), "addresses"));
        }
        let addresses = peers.map_or(String::new(), |p| {
            format!(
                "; the pods see {p} client address{} (after any source NAT), so {} decide{} the placement",
                if p == 1 { "" } else { "es" },
                if p == 1 { "that one address" } else { "those addresses" },
                if p == 1 { "s" } else { "" }
            )
        });
        (
            format!(
                "Service {svc} has sessionAffinity: ClientIP (timeout {} s): kube-proxy sends every connection from \
                 a client address to the endpoint it first chose, behind a proxy that is every request{addresses}",
                affinity.timeout_seconds
            ),
            1.0,
            format!(
                "Set `sessionAffinity: None` on Service {svc} (affinity pins a client address, and behind a reverse \
                 proxy all requests share one); keep sessions in a shared store (the database or Redis) instead."
            ),
            Remedy::DropSessionAffinity { service: svc.to_string() },
        )
    } else if let Some(service) = service.filter(|s| s.external_traffic_policy == TrafficPolicy::Local) {
        let svc = service.service.clone();
        match &service.announcement {
            Announcement::L2 { node: announcer, source } => (
                format!(
                    "Service {svc} has externalTrafficPolicy: Local and MetalLB announces it in layer 2 mode from \
                     {announcer} ({source}): every client connection enters at {announcer} and only its own pods \
                     may serve it"
                ),
                1.0,
                format!(
                    "Announce Service {svc}'s address over BGP (a BGPAdvertisement) so that every node with a replica \
                     announces it and the router spreads connections over them, or set externalTrafficPolicy: Cluster \
                     (then {announcer} forwards)."
                ),
                Remedy::SpreadEntry { service: svc },
            ),
            _ => (
                format!(
                    "Service {svc} has externalTrafficPolicy: Local: each entry node serves only from its own pods, so \
                     a node's pods take its entry part, not their share of the endpoints"
                ),
                0.9,
                format!(
                    "Place the replicas evenly over the nodes that announce Service {svc} (one per node), or set \
                     externalTrafficPolicy: Cluster."
                ),
                Remedy::PlaceReplica {
                    workload: analysis.workload.as_ref().map(ToString::to_string).unwrap_or_default(),
                    node: least_served_node(ctx).unwrap_or_default(),
                    from: Some(name.clone()),
                },
            ),
        }
    } else {
        let fingerprint = match (facts.nearly_all, facts.follows) {
            (true, _) => 1.0,
            (false, true) => 0.7,
            (false, false) => 0.5,
        };
        let how = match (facts.follows, facts.band.noise_count) {
            (true, Some(m)) => format!(
                "its pods got {:.0} of {:.0} connections where chance places at most {}, and the Service read \
                 declares neither session affinity nor a Local policy",
                facts.node_decisions,
                analysis.decisions,
                m - 1
            ),
            _ => "the connection counts do not explain it".to_string(),
        };
        (
            how,
            fingerprint,
            "Check the Service (`kubectl get svc -o yaml`): `sessionAffinity: ClientIP` sends every request from one \
             source IP (all of them, behind a proxy) to one pod, and `externalTrafficPolicy: Local` sends everything to \
             the entry node's pods. Also check the pods' readiness and any mesh or proxy that picks endpoints itself."
                .to_string(),
            Remedy::Investigate,
        )
    };
    Explanation {
        confidence: level(facts.normalised, facts.band.enter, facts.band.exit) * fingerprint,
        subject: facts.top_pod.map(pod_label),
        summary: format!("{share}; {how}.{}", starved_sentence(ctx)),
        evidence,
        next_step,
        remedy,
        read: read_lines(ctx),
    }
}

/// The serving node whose pods carry the least traffic per endpoint (where a moved replica helps).
fn least_served_node(ctx: &Context<'_>) -> Option<String> {
    ctx.analysis
        .nodes
        .iter()
        .filter(|n| n.is_serving())
        .filter_map(|n| Some((n, n.normalised(Signal::PodTraffic)?)))
        .min_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.node.cmp(&b.0.node)))
        .map(|(n, _)| n.node.clone())
}

/// `ingress-concentration`. Fingerprint: softirq above its share (the forwarding's NAT and conntrack
/// work) 1, else 0.8; times 1 when the cluster declares this node the sole entry, 0.9 when nothing
/// is declared, 0.7 when the declared entry is another node.
fn ingress(ctx: &Context<'_>, node: &NodeAnalysis, facts: &IngressFacts) -> Explanation {
    let t = &ctx.config.ingress;
    let name = &node.node;
    let common = facts.common();
    let mut evidence = vec![
        Evidence::new("forwarded-fraction", facts.forwarded(), "x workload traffic"),
        Evidence::new("forwarded-bytes", common.forwarded_bps, "B/s"),
        Evidence::new("pod-traffic-normalised", common.pod, "x expected"),
        Evidence::new("expected-share", node.expected_share, "share"),
    ];
    if let Some(n) = common.nic {
        evidence.push(Evidence::new("nic-normalised", n, "x expected"));
    }
    if let Some(s) = common.softirq {
        evidence.push(Evidence::new("softirq-normalised", s, "x expected"));
    }
    let softirq_mark = if common.softirq.is_some_and(|s| s >= 1.25) { 1.0 } else { 0.8 };
    let softirq = common.softirq.map_or(String::new(), |s| format!(" (softirq {s:.2}x expected)"));
    let model = ctx.analysis.entry.as_ref();
    let service = model.and_then(|m| m.service.as_ref());
    match facts {
        IngressFacts::RunnerUp { forwarded, dominance, .. } => {
            evidence.push(Evidence::new("forwarded-dominance", dominance.min(1e6), "x next node"));
            Explanation {
                confidence: level(*forwarded, t.enter_forwarded, t.exit_forwarded) * softirq_mark,
                subject: None,
                summary: format!(
                    "{name}'s NICs carry {} of the workload's traffic beyond what its own pods send and receive ({} as \
                     much as any other node) while its pods carry {:.2}x their expected share: traffic enters here and \
                     is forwarded to the other nodes{softirq}. No Service was read for the workload, so this compares \
                     {name} with the next node rather than with how the cluster declares its entry.",
                    pct(*forwarded),
                    if dominance.is_finite() { format!("{dominance:.1}x") } else { "far more".to_string() },
                    common.pod,
                ),
                evidence,
                next_step: "All ingress enters this node and is forwarded from there: with MetalLB in L2 mode one \
                            speaker answers ARP for the service IP (`kubectl get servicel2statuses -n metallb-system` \
                            shows which). Use BGP mode so ECMP spreads ingress over nodes, or set \
                            externalTrafficPolicy: Local with a replica on each announcing node."
                    .to_string(),
                remedy: Remedy::Investigate,
                read: read_lines(ctx),
            }
        }
        IngressFacts::Model { forwarded, entry, fair, normalised, band, declared, .. } => {
            evidence.extend([
                Evidence::new("entry-part", *entry, "share"),
                Evidence::new("fair-entry-part", *fair, "share"),
                Evidence::new("entry-normalised", *normalised, "x fair"),
                Evidence::new("enter-threshold", band.enter, "x fair"),
                Evidence::new("entry-decisions", ctx.analysis.entry_decisions, "conns"),
            ]);
            if let Some(d) = declared {
                evidence.push(Evidence::new("declared-entry-part", *d, "share"));
            }
            let svc = service.map_or_else(String::new, |s| s.service.clone());
            let candidates = model.map_or(0, |m| m.candidates());
            let measured = format!(
                "{name} takes in about {} of the client connections (its fair part with even entry over {candidates} \
                 node{}: {}, {:.1}x) and forwards {} of the workload's traffic to pods on other nodes{softirq}",
                pct(*entry),
                if candidates == 1 { "" } else { "s" },
                pct(*fair),
                normalised,
                pct(*forwarded),
            );
            let (why, declared_mark, next_step, remedy) = declared_entry(service.map(|s| &s.announcement), &svc, name);
            Explanation {
                confidence: level(*normalised, band.enter, band.exit) * softirq_mark * declared_mark,
                subject: None,
                summary: format!("{measured}; {why}."),
                evidence,
                next_step,
                remedy,
                read: read_lines(ctx),
            }
        }
    }
}

/// What the cluster declares about the entry of Service `svc` as it bears on `name` taking the
/// traffic in: why (for the summary), its mark on the confidence, the next step and the remedy.
fn declared_entry(announcement: Option<&Announcement>, svc: &str, name: &str) -> (String, f64, String, Remedy) {
    match announcement {
        Some(Announcement::L2 { node: announcer, source }) if announcer == name => (
            format!(
                "MetalLB announces Service {svc} in layer 2 mode from {name} ({source}), so every client connection enters here"
            ),
            1.0,
            format!(
                "Announce Service {svc}'s address over BGP (a BGPAdvertisement for its pool) so the router \
                 spreads client connections over every node (ECMP); or set externalTrafficPolicy: Local on \
                 {svc} with a replica on each node that may announce it, so {name} serves what it takes in."
            ),
            Remedy::SpreadEntry { service: svc.to_string() },
        ),
        Some(Announcement::L2 { node: announcer, source }) => (
            format!("although MetalLB names {announcer} as the layer-2 announcer ({source})"),
            0.7,
            format!(
                "Find out why client traffic enters at {name} rather than at {announcer}: a stale ARP entry at \
                 the router or clients, another Service on the same address, or clients aimed at {name}'s own \
                 address (`kubectl get servicel2statuses -n metallb-system`)."
            ),
            Remedy::Investigate,
        ),
        Some(Announcement::Bgp { nodes, source }) => (
            format!(
                "although {} node{} announce{} Service {svc} over BGP ({source})",
                nodes.len(),
                if nodes.len() == 1 { "" } else { "s" },
                if nodes.len() == 1 { "s" } else { "" }
            ),
            0.8,
            format!(
                "Check that the router spreads connections over every BGP next hop of Service {svc}'s \
                 address: multipath (ECMP) enabled, and hashing on ports (layer 4), not only addresses, \
                 since a proxy in front sends from one address."
            ),
            Remedy::Investigate,
        ),
        Some(Announcement::EveryNode { source }) => (
            format!("although every node can take Service {svc}'s traffic ({source})"),
            0.8,
            format!(
                "Clients reach Service {svc} through {name}'s address: spread them over every node's address \
                 (DNS or the proxy's upstream list), or give the Service a load-balanced address (MetalLB in \
                 BGP mode)."
            ),
            Remedy::SpreadEntry { service: svc.to_string() },
        ),
        Some(Announcement::Unknown { reason }) => unknown_entry(svc, name, reason),
        None => unknown_entry(svc, name, "no Service read"),
    }
}

/// The ingress explanation when the cluster does not say who announces the Service.
fn unknown_entry(svc: &str, name: &str, reason: &str) -> (String, f64, String, Remedy) {
    (
        format!("the cluster does not say who announces Service {svc} ({reason})"),
        0.9,
        format!(
            "Find which node answers for Service {svc}'s address (with MetalLB in L2 mode, `kubectl get \
             servicel2statuses -n metallb-system`; otherwise the router or the DNS name clients use): if {name} takes \
             every connection, spread the entry (MetalLB BGP with ECMP) or set externalTrafficPolicy: Local with a \
             replica on each announcing node."
        ),
        Remedy::Investigate,
    )
}

/// `unattributed-cpu`.
fn unattributed(ctx: &Context<'_>, node: &NodeAnalysis, facts: Option<UnattributedFacts>) -> Explanation {
    let t = &ctx.config.unattributed;
    let f = facts.unwrap_or(UnattributedFacts { cores: 0.0, peer_median: 0.0, excess: 0.0, baseline: None });
    let mut evidence = vec![
        Evidence::new("unattributed-cpu", f.cores, "cores"),
        Evidence::new("peer-median", f.peer_median, "cores"),
        Evidence::new("excess", f.excess, "cores"),
        Evidence::new("cpu", node.value(Signal::Cpu).unwrap_or(0.0), "cores"),
    ];
    if let Some(b) = f.baseline {
        evidence.push(Evidence::new("own-baseline", b, "cores"));
    }
    if let Some(n) = node.normalised(Signal::Nic) {
        evidence.push(Evidence::new("nic-normalised", n, "x expected"));
    }
    let baseline = f.baseline.map_or(String::new(), |b| {
        format!(" and {} above its own baseline of {}", format_number(f.cores - b), format_number(b))
    });
    Explanation {
        confidence: level(f.excess, t.enter_excess_cores, t.exit_excess_cores),
        subject: None,
        summary: format!(
            "{} spends {} cores in processes outside every pod, {} more than the serving nodes' median of {}{baseline}.",
            node.node,
            format_number(f.cores),
            format_number(f.excess),
            format_number(f.peer_median)
        ),
        evidence,
        next_step:
            "Find the work outside pods on this node: kernel nfsd threads (an NFS server) or the k3s server and \
                    etcd (`top -H` or `ps -eo pid,comm,%cpu --sort=-%cpu` on the node). Move the NFS server off the \
                    serving nodes, or keep the workload off control-plane nodes (taint them)."
                .to_string(),
        remedy: Remedy::StopHostWork { node: node.node.clone() },
        read: Vec::new(),
    }
}

/// `colocated-hot-pod`.
fn hot(ctx: &Context<'_>, node: &NodeAnalysis, index: usize) -> Explanation {
    let t = &ctx.config.hot_pod;
    let found = hot_pod(ctx, index);
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
    let pod =
        found.map(|(p, _)| if p.namespace.is_empty() { p.name.clone() } else { format!("{}/{}", p.namespace, p.name) });
    Explanation {
        confidence: level(cpu, t.enter_cores, t.exit_cores),
        subject: label.clone(),
        summary: format!(
            "{} burns {} cores on {}, {}.",
            label.as_deref().unwrap_or("a pod of another workload"),
            format_number(cpu),
            node.node,
            if ctx.analysis.workload.is_some() {
                "next to the workload under test"
            } else {
                "far more than the hottest pod of the other nodes"
            }
        ),
        evidence,
        next_step: format!(
            "Move {} to another node (nodeAffinity or podAntiAffinity) or cap it with CPU limits; if it is the database, \
             more web replicas will not raise the ceiling.",
            label.as_deref().unwrap_or("the pod")
        ),
        remedy: Remedy::MovePod { pod: pod.unwrap_or_default(), node: node.node.clone() },
        read: Vec::new(),
    }
}

/// `thermal-throttling`: confidence 0.9 with throttle bits and heat, 0.7 with one of them.
fn thermal(ctx: &Context<'_>, node: &NodeAnalysis) -> Explanation {
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
    let hot = temperature.is_some_and(|c| c >= ctx.config.thermal.enter_celsius);
    let confidence = match (bits, hot) {
        (true, true) => 0.9,
        (true, false) | (false, true) => 0.7,
        (false, false) => 0.4,
    };
    Explanation {
        confidence,
        subject: None,
        summary: format!(
            "{} runs at {} with the CPU at {} of its maximum frequency{}.",
            node.node,
            temperature.map_or("an unknown temperature".to_string(), |c| format!("{c:.1} C")),
            frequency.map_or("an unknown fraction".to_string(), pct),
            if bits { " and the firmware reports throttling" } else { "" }
        ),
        evidence,
        next_step: "Cool the board: the Pi 5 throttles between 80 and 85 C. Fit an active cooler or improve case \
                    airflow, and confirm with `vcgencmd measure_temp` and `vcgencmd get_throttled`."
            .to_string(),
        remedy: Remedy::Cool { node: node.node.clone() },
        read: Vec::new(),
    }
}

/// `memory-pressure`: confidence 0.9 with both stalls and low memory, 0.7 with one.
fn memory(ctx: &Context<'_>, node: &NodeAnalysis) -> Explanation {
    let t = &ctx.config.memory;
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
            "Tasks on {} stall on memory {} of the time with {} of memory available.",
            node.node,
            stall.map_or("an unknown part".to_string(), pct),
            available.map_or("an unknown part".to_string(), pct)
        ),
        evidence,
        next_step: "Lower memory use on this node (fewer PHP/worker processes, memory limits on the hot pods), move \
                    pods away, or add memory or zram; `cat /proc/pressure/memory` shows the stalls live."
            .to_string(),
        remedy: Remedy::RelieveMemory { node: node.node.clone() },
        read: Vec::new(),
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
