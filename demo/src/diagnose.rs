//! From the report the collector stored for the load-test window (its verdicts, its analysis of the
//! whole window and the workload it put under test) to the demo's verdict lines and per-node shares,
//! and whether the run matches the scenario's expectation. Pure: the diagnosis itself is the
//! collector's.
//!
//! MATCH is strict: the collector chose the Service's web workload, and the set of (node, cause)
//! verdicts active for at least [`MIN_ACTIVE_MS`] of the window is exactly the expected set. Shorter
//! verdicts are reported apart and do not count either way. What the demo expects is worked out
//! from the plan and from the web pods' own counts, never from the diagnosis crate's model.
//!
//! MATCH also bounds the time to the verdict ([`TimeToVerdict`]): the first expected verdict is
//! raised within the scenario's `verdict_within_s` of the hog's onset (the load's start for a hog
//! on from the start), and with a hog that comes on mid-run no verdict is raised before it.

use std::collections::{BTreeMap, BTreeSet};

use bakery_diagnosis::report::ReportedVerdict as StoredVerdict;
use bakery_diagnosis::{Cause, Signal, WindowReport};
use serde::{Deserialize, Serialize};

use crate::onset::OnsetTime;
use crate::plan::Plan;
use crate::scenario::{Expectation, ExpectedNode};

/// A verdict must hold this long inside the window to be the diagnosis: the detector raises one
/// after 3 consecutive evaluations, so this is one that was raised and stayed for as long again.
pub const MIN_ACTIVE_MS: i64 = 3_000;

/// A node holding at least this multiple of its expected share of the connections is the one they
/// pinned to.
pub const PINNED_RATIO: f64 = 2.0;

/// The web workload's ready endpoints per node, as the plan places them (every pod is ready once the
/// demo starts the load).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endpoints(BTreeMap<String, u32>);

impl Endpoints {
    pub fn of(plan: &Plan) -> Self {
        let mut endpoints = BTreeMap::new();
        for pod in plan.endpoints() {
            *endpoints.entry(pod.node.clone()).or_insert(0u32) += 1;
        }
        Self(endpoints)
    }

    pub fn on(&self, node: &str) -> u32 {
        self.0.get(node).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u32 {
        self.0.values().sum()
    }

    /// A node's expected share of the load: its endpoints over all.
    pub fn share(&self, node: &str) -> f64 {
        f64::from(self.on(node)) / f64::from(self.total().max(1))
    }
}

/// The web workload the load is for, as the collector names workloads (`Kind/namespace/name`).
pub fn expected_workload(plan: &Plan) -> String {
    let served = plan.scenario.served();
    format!("{}/{}/{}", served.kind.name(), served.namespace, served.name)
}

/// One verdict as the demo reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportedVerdict {
    pub node: String,
    pub cause: Cause,
    pub confidence: f64,
    pub summary: String,
    /// The verdict's evidence, one `name = value unit` each.
    #[serde(default)]
    pub evidence: Vec<String>,
    /// What the verdict rests on, as the collector read it from the cluster (the Service, the
    /// MetalLB status naming the announcer, ...), one line each.
    #[serde(default)]
    pub read: Vec<String>,
    pub next_step: String,
    /// Seconds the verdict was active inside the window (over all the times it was raised).
    pub active_seconds: f64,
}

/// A window's verdicts, split at [`MIN_ACTIVE_MS`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowVerdicts {
    /// Active for at least the minimum: the diagnosis. Longest first.
    pub counted: Vec<ReportedVerdict>,
    /// Active for less (a flicker while the load ramps up, say): reported, never counted.
    pub brief: Vec<ReportedVerdict>,
}

/// The verdicts of a window report, one per (node, cause) with the time it was active inside the
/// window summed over its raises, the longest-lived raise's words, and the highest confidence;
/// split into those active for at least `min_active_ms` and the rest.
pub fn window_verdicts(report: &WindowReport, min_active_ms: i64) -> WindowVerdicts {
    let mut by_key: BTreeMap<(String, Cause), (i64, i64, ReportedVerdict)> = BTreeMap::new();
    for v in &report.verdicts {
        let end = v.cleared_ms.unwrap_or(v.last_active_ms).min(report.window.end_ms);
        let start = v.raised_ms.max(report.window.start_ms);
        let active_ms = (end - start).max(0);
        let verdict = ReportedVerdict {
            node: v.verdict.node.clone(),
            cause: v.verdict.cause,
            confidence: v.peak_confidence,
            summary: v.verdict.summary.clone(),
            evidence: v.verdict.evidence.iter().map(ToString::to_string).collect(),
            read: v.verdict.read.clone(),
            next_step: v.verdict.next_step.clone(),
            active_seconds: 0.0,
        };
        let entry = by_key.entry((verdict.node.clone(), verdict.cause)).or_insert((0, -1, verdict.clone()));
        entry.0 += active_ms;
        let peak = entry.2.confidence.max(verdict.confidence);
        if active_ms > entry.1 {
            entry.1 = active_ms;
            entry.2 = verdict;
        }
        entry.2.confidence = peak;
    }
    let mut all: Vec<ReportedVerdict> = by_key
        .into_values()
        .map(|(total_ms, _, mut verdict)| {
            verdict.active_seconds = total_ms as f64 / 1000.0;
            verdict
        })
        .collect();
    all.sort_by(|a, b| b.active_seconds.total_cmp(&a.active_seconds));
    let (counted, brief) = all.into_iter().partition(|v| v.active_seconds * 1000.0 >= min_active_ms as f64);
    WindowVerdicts { counted, brief }
}

/// The first raise of an expected verdict, measured from a reference time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FirstFlag {
    /// The verdict raised first.
    pub verdict: VerdictKey,
    /// Seconds from the reference to its raise; 0 when it was raised before.
    pub seconds: f64,
    /// It was raised before the reference (and still active when the window opened, or raised
    /// inside it).
    pub raised_before: bool,
}

/// The time to the first flag, one definition for the demo's report and the campaign: from
/// `from_ms` (the hog's onset; the load's start, which opens the window, for a hog on from the
/// start) to the raise of the first of `keys` among the collector's verdicts as its window report
/// records them (raised inside the window, or earlier and still active when it opened; their
/// times are the collector's live evaluations, on this machine's clock). A raise before `from_ms`
/// counts as 0 s and says so: a condition present from boot when `from_ms` is the load's start, a
/// false early flag when it is a mid-run onset. `None` when none of `keys` was raised.
pub fn first_flag(report: &WindowReport, keys: &[VerdictKey], from_ms: i64) -> Option<FirstFlag> {
    let first = report
        .verdicts
        .iter()
        .filter(|v| keys.iter().any(|k| k.node == v.verdict.node && k.cause == v.verdict.cause))
        .filter(|v| in_window(report, v))
        .min_by_key(|v| v.raised_ms)?;
    let seconds = (first.raised_ms - from_ms) as f64 / 1000.0;
    Some(FirstFlag {
        verdict: VerdictKey { node: first.verdict.node.clone(), cause: first.verdict.cause },
        seconds: seconds.max(0.0),
        raised_before: seconds < 0.0,
    })
}

/// Whether a stored verdict was active inside the window: still active when it opened, or raised
/// before it closed.
fn in_window(report: &WindowReport, verdict: &StoredVerdict) -> bool {
    verdict.cleared_ms.unwrap_or(verdict.last_active_ms) >= report.window.start_ms
        && verdict.raised_ms <= report.window.end_ms
}

/// Verdicts of any node and cause raised before `onset_ms` and active inside the window: with a
/// hog that comes on mid-run, flags raised while the cluster was still balanced.
pub fn raised_before(report: &WindowReport, onset_ms: i64) -> Vec<VerdictKey> {
    let keys: BTreeSet<VerdictKey> = report
        .verdicts
        .iter()
        .filter(|v| v.raised_ms < onset_ms && in_window(report, v))
        .map(|v| VerdictKey { node: v.verdict.node.clone(), cause: v.verdict.cause })
        .collect();
    keys.into_iter().collect()
}

/// How long the collector took to name the hog, against the scenario's bound.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimeToVerdict {
    /// The hog that came on mid-run; `None` when the hog, if any, is on from the load's start.
    pub onset: Option<OnsetTime>,
    /// What the time runs from (ms, this machine's clock): the onset, or the load's start.
    pub from_ms: i64,
    /// The first expected verdict raised ([`first_flag`]); `None` when none was expected or raised.
    pub first: Option<FirstFlag>,
    /// The scenario's bound (`verdict_within_s`), seconds.
    pub within_seconds: f64,
    /// With a mid-run onset, the verdicts raised before it ([`raised_before`]); each is a false flag.
    pub flagged_before_onset: Vec<VerdictKey>,
}

impl TimeToVerdict {
    /// The time to the first of `expected` in `report`, from `onset` or else from `load_start_ms`.
    pub fn of(
        report: &WindowReport,
        expected: &[VerdictKey],
        load_start_ms: i64,
        onset: Option<OnsetTime>,
        within_seconds: f64,
    ) -> Self {
        let from_ms = onset.as_ref().map_or(load_start_ms, |o| o.at_ms);
        let flagged_before_onset = if onset.is_some() { raised_before(report, from_ms) } else { Vec::new() };
        Self { first: first_flag(report, expected, from_ms), onset, from_ms, within_seconds, flagged_before_onset }
    }

    /// Seconds to the first expected verdict.
    pub fn seconds(&self) -> Option<f64> {
        self.first.as_ref().map(|f| f.seconds)
    }

    /// What the time runs from, for people.
    pub fn reference(&self) -> &'static str {
        if self.onset.is_some() { "the hog's onset" } else { "the load's start" }
    }

    /// Why the timing does not match, one line each: a flag before a mid-run onset, or the first
    /// expected verdict raised later than the bound.
    pub fn differences(&self) -> Vec<String> {
        let mut differences: Vec<String> =
            self.flagged_before_onset.iter().map(|k| format!("raised before the hog's onset: {k}")).collect();
        if let Some(first) = self.first.as_ref().filter(|f| f.seconds > self.within_seconds) {
            differences.push(format!(
                "{} raised {:.1} s after {}, beyond the scenario's {} s (verdict_within_s)",
                first.verdict,
                first.seconds,
                self.reference(),
                self.within_seconds
            ));
        }
        differences
    }
}

/// One node's share of the load over the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeShare {
    pub node: String,
    pub role: String,
    /// Its share of the web workload's ready endpoints.
    pub expected_share: f64,
    /// Its share of the pod traffic of the workload the collector put under test, from the agents.
    pub pod_traffic_share: Option<f64>,
    /// Its NIC's share of all nodes' NIC bytes, from the agents.
    pub nic_share: Option<f64>,
    pub nic_bytes_per_second: Option<f64>,
    /// NIC bytes its own pods do not account for (traffic forwarded for pods elsewhere).
    pub forwarded_bytes_per_second: Option<f64>,
    /// Mean established inbound connections to the pods under test.
    pub connections: Option<f64>,
    pub pod_cpu_cores: Option<f64>,
    /// Requests its web pods answered, counted by the pods themselves.
    pub requests: u64,
    /// Connections its web pods accepted, counted by the pods themselves.
    pub accepted_connections: u64,
}

/// Per-node shares from the window's overall analysis and the web pods' own counts
/// (`pod_counts`: requests and accepted connections per pod name).
pub fn node_shares(plan: &Plan, report: &WindowReport, pod_counts: &BTreeMap<String, (u64, u64)>) -> Vec<NodeShare> {
    let endpoints = Endpoints::of(plan);
    let overall = report.overall.as_ref();
    let nic_total: f64 = overall.map(|a| a.nodes.iter().filter_map(|n| n.value(Signal::Nic)).sum()).unwrap_or(0.0);
    plan.nodes
        .iter()
        .map(|node| {
            let analysis = overall.and_then(|a| a.node(&node.name));
            let nic = analysis.and_then(|a| a.value(Signal::Nic));
            let pod_traffic_share = analysis.and_then(|a| {
                let total: f64 = overall?.nodes.iter().filter_map(|n| n.value(Signal::PodTraffic)).sum();
                (total > 0.0).then(|| a.value(Signal::PodTraffic).unwrap_or(0.0) / total)
            });
            let (requests, accepted) = plan
                .endpoints()
                .iter()
                .filter(|p| p.node == node.name)
                .filter_map(|p| pod_counts.get(&p.name))
                .fold((0, 0), |(r, a), (requests, accepted)| (r + requests, a + accepted));
            NodeShare {
                node: node.name.clone(),
                role: crate::plan::role_label(node.role).to_string(),
                expected_share: endpoints.share(&node.name),
                pod_traffic_share,
                nic_share: nic.filter(|_| nic_total > 0.0).map(|n| n / nic_total),
                nic_bytes_per_second: nic,
                forwarded_bytes_per_second: analysis.and_then(|a| a.value(Signal::ForwardedNic)),
                connections: analysis.and_then(|a| a.value(Signal::Connections)),
                pod_cpu_cores: analysis.and_then(|a| a.value(Signal::PodCpu)),
                requests,
                accepted_connections: accepted,
            }
        })
        .collect()
}

/// A verdict by what identifies it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VerdictKey {
    pub node: String,
    pub cause: Cause,
}

impl std::fmt::Display for VerdictKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} - {}", self.node, self.cause)
    }
}

/// What the scenario expected, resolved for this run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedExpectation {
    /// Exactly these verdicts; none for "no hog".
    pub verdicts: Vec<VerdictKey>,
    /// How a `pinned` node was resolved, for the report.
    pub notes: Vec<String>,
}

/// Resolves `expect` for this run. `pinned` needs the web pods' accepted connections during the
/// load, per node: the node holding at least [`PINNED_RATIO`] times its expected share of them is
/// the one the connections pinned to; when none does, the spread was too even to be a hog and
/// the `pinned` verdicts are not expected.
pub fn resolve(
    expect: &Expectation,
    plan: &Plan,
    load_connections_per_node: &BTreeMap<String, u64>,
) -> ResolvedExpectation {
    let mut resolved = ResolvedExpectation::default();
    let mut pinned_node = None;
    if expect.verdicts.iter().any(|v| matches!(v.node, ExpectedNode::Pinned(_))) {
        let endpoints = Endpoints::of(plan);
        let total: u64 = load_connections_per_node.values().sum();
        let spread: Vec<String> = load_connections_per_node.iter().map(|(node, n)| format!("{node} {n}")).collect();
        let pinned = load_connections_per_node
            .iter()
            .filter(|(_, n)| total > 0 && **n > 0)
            .map(|(node, n)| {
                let expected = endpoints.share(node);
                let share = *n as f64 / total as f64;
                (node, if expected > 0.0 { share / expected } else { f64::INFINITY })
            })
            .filter(|(_, ratio)| *ratio >= PINNED_RATIO)
            .max_by(|a, b| a.1.total_cmp(&b.1));
        resolved.notes.push(match pinned {
            Some((node, ratio)) => format!(
                "connections pinned this run: {} ({node} holds {ratio:.2}x its expected share)",
                spread.join(", ")
            ),
            None => format!(
                "connections spread this run: {}; no node holds twice its share, so no pinned hog is expected (run again to re-roll)",
                spread.join(", ")
            ),
        });
        pinned_node = pinned.map(|(node, _)| node.clone());
    }
    let mut verdicts = BTreeSet::new();
    for expected in &expect.verdicts {
        let node = match &expected.node {
            ExpectedNode::Named(node) => Some(node.clone()),
            ExpectedNode::Pinned(_) => pinned_node.clone(),
        };
        if let Some(node) = node {
            verdicts.insert(VerdictKey { node, cause: expected.cause });
        }
    }
    resolved.verdicts = verdicts.into_iter().collect();
    resolved
}

/// Why a run does not match, one line each; empty when it matches: the collector put
/// `expected_workload` under test (`chosen`), and the counted verdicts are exactly the expected set.
pub fn differences(
    expected: &ResolvedExpectation,
    counted: &[ReportedVerdict],
    chosen: Option<&str>,
    expected_workload: &str,
) -> Vec<String> {
    let mut differences = Vec::new();
    match chosen {
        Some(chosen) if chosen == expected_workload => {}
        Some(chosen) => {
            differences.push(format!("the collector put {chosen} under test, not the Service's {expected_workload}"))
        }
        None => differences.push(format!("the collector put no workload under test (expected {expected_workload})")),
    }
    let wanted: BTreeSet<&VerdictKey> = expected.verdicts.iter().collect();
    let got: BTreeSet<VerdictKey> =
        counted.iter().map(|v| VerdictKey { node: v.node.clone(), cause: v.cause }).collect();
    for missing in wanted.iter().filter(|k| !got.contains(**k)) {
        differences.push(format!("missing: {missing}"));
    }
    for extra in got.iter().filter(|k| !wanted.contains(k)) {
        differences.push(format!("not expected: {extra}"));
    }
    differences
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    fn plan(name: &str) -> Plan {
        Plan::new(Scenario::shipped(name).unwrap(), 5)
    }

    fn verdict(node: &str, cause: Cause) -> ReportedVerdict {
        ReportedVerdict {
            node: node.into(),
            cause,
            confidence: 0.8,
            summary: String::new(),
            evidence: Vec::new(),
            read: Vec::new(),
            next_step: String::new(),
            active_seconds: 5.0,
        }
    }

    fn key(node: &str, cause: Cause) -> VerdictKey {
        VerdictKey { node: node.into(), cause }
    }

    const WORDPRESS: &str = "Deployment/wordpress/wordpress";

    #[test]
    fn a_match_is_exactly_the_expected_set_and_the_expected_workload() {
        let expected =
            ResolvedExpectation { verdicts: vec![key("master-02", Cause::IngressConcentration)], notes: vec![] };
        let matches = |verdicts: &[ReportedVerdict], chosen: Option<&str>| {
            differences(&expected, verdicts, chosen, WORDPRESS).is_empty()
        };
        let right = [verdict("master-02", Cause::IngressConcentration)];
        assert!(matches(&right, Some(WORDPRESS)));
        assert!(!matches(&right, Some("Deployment/npm/nginx-proxy-manager")), "another workload under test");
        assert!(!matches(&right, None));
        assert!(!matches(&[verdict("master-01", Cause::IngressConcentration)], Some(WORDPRESS)));
        assert!(!matches(&[], Some(WORDPRESS)));
        let extra = [verdict("master-02", Cause::IngressConcentration), verdict("master-02", Cause::UnattributedCpu)];
        assert_eq!(
            differences(&expected, &extra, Some(WORDPRESS), WORDPRESS),
            ["not expected: master-02 - unattributed-cpu"],
            "another cause on the same node is a mismatch too"
        );
        let none = ResolvedExpectation::default();
        assert!(differences(&none, &[], Some(WORDPRESS), WORDPRESS).is_empty());
        assert_eq!(
            differences(&none, &[verdict("worker-01", Cause::PodConcentration)], Some(WORDPRESS), WORDPRESS),
            ["not expected: worker-01 - pod-concentration"]
        );
        let two = ResolvedExpectation {
            verdicts: vec![key("master-03", Cause::IngressConcentration), key("worker-01", Cause::PodConcentration)],
            notes: vec![],
        };
        let both = [verdict("worker-01", Cause::PodConcentration), verdict("master-03", Cause::IngressConcentration)];
        assert!(differences(&two, &both, Some(WORDPRESS), WORDPRESS).is_empty(), "order does not matter");
        assert_eq!(
            differences(&two, &both[..1], Some(WORDPRESS), WORDPRESS),
            ["missing: master-03 - ingress-concentration"]
        );
    }

    #[test]
    fn pinned_resolves_to_the_node_holding_twice_its_share_of_connections() {
        let plan = plan("keepalive-pinning");
        let spread = |a, b, c| {
            BTreeMap::from([("master-02".to_string(), a), ("worker-01".to_string(), b), ("worker-02".to_string(), c)])
        };
        let resolved = resolve(&plan.scenario.expect, &plan, &spread(3, 1, 0));
        assert_eq!(resolved.verdicts, [key("master-02", Cause::ConnectionPinning)]);
        let resolved = resolve(&plan.scenario.expect, &plan, &spread(0, 0, 4));
        assert_eq!(resolved.verdicts, [key("worker-02", Cause::ConnectionPinning)]);
        for even in [spread(2, 1, 1), spread(2, 2, 0)] {
            let resolved = resolve(&plan.scenario.expect, &plan, &even);
            assert_eq!(resolved.verdicts, [], "{even:?}");
            assert!(resolved.notes[0].contains("re-roll"));
        }
    }

    #[test]
    fn pinned_and_named_verdicts_resolve_together() {
        let plan = plan("session-affinity");
        let announcer = plan.scenario.announcer().unwrap().to_string();
        let web: Vec<String> = plan.endpoints().iter().map(|p| p.node.clone()).collect();
        let mut connections: BTreeMap<String, u64> = web.iter().map(|n| (n.clone(), 0)).collect();
        connections.insert(web[1].clone(), 1_200);
        let resolved = resolve(&plan.scenario.expect, &plan, &connections);
        let mut wanted = vec![key(&announcer, Cause::IngressConcentration), key(&web[1], Cause::PodConcentration)];
        wanted.sort();
        assert_eq!(resolved.verdicts, wanted);
    }

    /// A verdict as the collector stores it, read from its JSON so that fields the diagnosis adds
    /// take their defaults.
    fn stored(node: &str, cause: Cause, raised_ms: i64, cleared_ms: Option<i64>) -> StoredVerdict {
        serde_json::from_value(serde_json::json!({
            "verdict": {
                "node": node, "cause": cause, "confidence": 0.5, "since_ms": raised_ms, "first_seen_ms": raised_ms,
                "subject": null, "summary": format!("{node} {cause} from {raised_ms}"), "evidence": [], "next_step": "",
            },
            "peak_confidence": 0.5,
            "raised_ms": raised_ms,
            "last_active_ms": cleared_ms.unwrap_or(30_000),
            "cleared_ms": cleared_ms,
        }))
        .unwrap()
    }

    #[test]
    fn short_verdicts_are_kept_apart_and_raises_of_one_verdict_add_up() {
        let mut report: WindowReport = serde_json::from_value(serde_json::json!({
            "window": { "name": "w", "start_ms": 10_000, "end_ms": 22_000 },
            "signal": "pod-traffic", "overall": null, "series": [], "verdicts": [], "changes": []
        }))
        .unwrap();
        report.verdicts = vec![
            // Raised before the window: only its time inside counts (12 s).
            stored("master-02", Cause::IngressConcentration, 5_000, None),
            // A flicker while the load ramps up.
            stored("worker-01", Cause::PodConcentration, 11_000, Some(12_500)),
            // Raised twice for 2 s: 4 s in all.
            stored("worker-02", Cause::UnattributedCpu, 12_000, Some(14_000)),
            stored("worker-02", Cause::UnattributedCpu, 18_000, Some(20_000)),
        ];
        let verdicts = window_verdicts(&report, MIN_ACTIVE_MS);
        let counted: Vec<(&str, f64)> = verdicts.counted.iter().map(|v| (v.node.as_str(), v.active_seconds)).collect();
        assert_eq!(counted, [("master-02", 12.0), ("worker-02", 4.0)]);
        let brief: Vec<(&str, f64)> = verdicts.brief.iter().map(|v| (v.node.as_str(), v.active_seconds)).collect();
        assert_eq!(brief, [("worker-01", 1.5)]);
    }

    /// A window report from 10 s to 26 s holding `verdicts`.
    fn window(verdicts: Vec<StoredVerdict>) -> WindowReport {
        let mut report: WindowReport = serde_json::from_value(serde_json::json!({
            "window": { "name": "w", "start_ms": 10_000, "end_ms": 26_000 },
            "signal": "pod-traffic", "overall": null, "series": [], "verdicts": [], "changes": []
        }))
        .unwrap();
        report.verdicts = verdicts;
        report
    }

    fn onset(at_ms: i64) -> OnsetTime {
        OnsetTime {
            hog: "worker-01's burner".into(),
            at_ms,
            into_load_seconds: (at_ms - 10_000) as f64 / 1e3,
            took_seconds: 0.0,
        }
    }

    #[test]
    fn the_time_to_the_verdict_runs_from_the_load_s_start_or_the_hog_s_onset() {
        let hog = [key("worker-01", Cause::UnattributedCpu)];
        let report = window(vec![
            stored("master-01", Cause::PodConcentration, 11_000, Some(11_500)),
            stored("worker-01", Cause::UnattributedCpu, 18_700, None),
        ]);
        // On from the start: from the load's start, whatever else was raised.
        let time = TimeToVerdict::of(&report, &hog, 10_000, None, 3.0);
        let first = time.first.clone().unwrap();
        assert_eq!((first.verdict.clone(), first.seconds, first.raised_before), (hog[0].clone(), 8.7, false));
        assert_eq!(time.reference(), "the load's start");
        assert_eq!(
            time.differences(),
            [
                "worker-01 - unattributed-cpu raised 8.7 s after the load's start, beyond the scenario's 3 s (verdict_within_s)"
            ]
        );
        // Mid-run: from the onset, and the flicker before it is a false flag.
        let time = TimeToVerdict::of(&report, &hog, 10_000, Some(onset(16_000)), 3.0);
        assert_eq!(time.seconds(), Some(2.7));
        assert_eq!(time.flagged_before_onset, [key("master-01", Cause::PodConcentration)]);
        assert_eq!(time.differences(), ["raised before the hog's onset: master-01 - pod-concentration"]);
        let clean = window(vec![stored("worker-01", Cause::UnattributedCpu, 18_700, None)]);
        assert!(TimeToVerdict::of(&clean, &hog, 10_000, Some(onset(16_000)), 3.0).differences().is_empty());
        // Nothing expected, or nothing raised: no time, and nothing to say about it.
        assert_eq!(TimeToVerdict::of(&clean, &[], 10_000, None, 3.0).first, None);
        assert!(TimeToVerdict::of(&window(vec![]), &hog, 10_000, None, 3.0).differences().is_empty());
    }

    #[test]
    fn a_raise_before_the_reference_counts_as_zero_and_says_so() {
        let hot = [key("worker-01", Cause::ThermalThrottling)];
        // Hot from boot: raised before the window, still active in it.
        let report = window(vec![stored("worker-01", Cause::ThermalThrottling, 4_000, None)]);
        let first = first_flag(&report, &hot, 10_000).unwrap();
        assert_eq!((first.seconds, first.raised_before), (0.0, true));
        assert!(TimeToVerdict::of(&report, &hot, 10_000, None, 3.0).differences().is_empty(), "within the bound");
        // The same raise before a mid-run onset is an early flag.
        let time = TimeToVerdict::of(&report, &hot, 10_000, Some(onset(16_000)), 3.0);
        assert_eq!(time.differences(), ["raised before the hog's onset: worker-01 - thermal-throttling"]);
        // A raise that cleared before the window opened is not in it.
        let gone = window(vec![stored("worker-01", Cause::ThermalThrottling, 4_000, Some(6_000))]);
        assert_eq!(first_flag(&gone, &hot, 10_000), None);
        assert_eq!(raised_before(&gone, 16_000), []);
    }
}
