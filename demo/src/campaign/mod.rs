//! `bakery-demo campaign`: random valid scenarios from a seed, each run on the cluster of
//! namespaces exactly as the demo runs one, and bakery's verdicts checked against the generator's
//! own ground truth.
//!
//! # What is drawn
//!
//! [`generate`] draws, per scenario, the cause it injects (none or one of seven, evenly) and then a
//! cluster for it: 2 to 9 nodes with distinct realistic names (`master-01`, `rpi-04`,
//! `k3s-agent-2`, `pi5-c`, `brioche`, `node-3`: DNS labels of at most 12 characters, never
//! `pinned`) and 1 to 3 control-plane nodes, the rest workers; WordPress (a Deployment) with 1 to 4
//! replicas placed at random (two on one node allowed) and MySQL (a StatefulSet) on a random node,
//! at the shipped scenarios' small costs; the entry (every node, as MetalLB BGP with ECMP, or layer
//! 2 with a named announcer), `externalTrafficPolicy` Cluster or Local, `sessionAffinity` None or
//! ClientIP; what is in front (the outside nginx without upstream keep-alive, nothing (oha straight
//! at the LoadBalancer IP), or Nginx Proxy Manager in the cluster on a random node); oha's
//! keep-alive and connections; a 12 s load at 100 requests per second. The node-level extras copy
//! the shipped scenarios (`nfs-neighbour`'s one-core burner from the load's start, `hot-node`'s
//! 84 C board capped at 1.5 GHz with throttle bits 0x50005, `memory-squeeze`'s 944 MiB held of
//! 1 GiB). Scenario `i` of seed `s` depends on nothing else.
//!
//! # The ground truth
//!
//! The expected verdicts come from what the generator built, stated physically ([`truth`]); the
//! diagnosis crate is used for the names of the causes only. A scenario whose truth would sit near
//! a boundary is drawn again: that is part of being valid. Two hops decide how even the traffic
//! is: the connections that cross the entry (the router's ECMP hash picks an entry node per
//! connection) and those that reach the web pods (kube-proxy picks an endpoint per connection).
//! A hop spreads evenly when it opens a new connection per request (a proxy without upstream
//! keep-alive, or oha without keep-alive) or carries at least 40 keep-alive connections.
//!
//! 1. **Balanced (no cause).** Every-node entry with the Cluster policy (any placement: uneven
//!    placement is the expected share, not a hog); or layer 2 with the announcer holding every
//!    endpoint of the Service (the web pods, or the in-cluster proxy's pod); or the Local policy
//!    with every-node entry and every node with endpoints holding the same number. No affinity,
//!    and both hops spread evenly (the entry hop only matters with every-node entry). Truth: no
//!    verdict.
//! 2. **l2-ingress.** Layer 2, Cluster policy, an announcer A holding at most 2/3 of the Service's
//!    endpoints (so it forwards at least a third of what it takes in to other nodes); shares
//!    strictly between 2/3 and 1 are drawn again. Pods reached evenly. Truth: {(A,
//!    ingress-concentration)}.
//! 3. **local-policy.** Layer 2, Local policy, no in-cluster proxy, an announcer A holding at least
//!    one web endpoint and at most half of them (its pods then take everything: at least twice
//!    their share); shares between 1/2 and 1 are drawn again. Truth: {(A, pod-concentration)}.
//! 4. **session-affinity.** Layer 2, Cluster policy, `sessionAffinity: ClientIP`, behind the
//!    outside nginx (one client address), no node holding more than half of the web endpoints.
//!    The single entry pins one endpoint. Resolved after the run from the web pods' own request
//!    counts: {(P, pod-concentration)} where P is the node whose pods served at least 90 % of the
//!    requests, plus {(A, ingress-concentration)} when P is not the announcer A (A then forwards
//!    everything it takes in). The pod-concentration verdict's summary must name
//!    `sessionAffinity: ClientIP`. No such P leaves the run unresolved (not right).
//! 5. **keepalive-pinning.** Nothing in front, oha with keep-alive and c of 2 to 4 connections,
//!    every-node entry, Cluster policy, no affinity, web endpoints on at least two nodes; c is
//!    chosen so that for every node i and every count k (1 to c) of connections on its pods, k /
//!    (c q_i) (q_i: node i's share of the web endpoints) is never within 0.85 to 1.1 times the
//!    node's pinned line, min(2, (1 + q_i) / 2 q_i): halfway from its part to all of the
//!    connections, at most twice its part (a material concentration; the same line the
//!    diagnosis reports pinning at, a definition rather than a statistical model). Resolved after
//!    the run from the pods' own accepted-connection counts: every node past its line has
//!    connection-pinning; none, no verdict. A count inside the band (oha reconnected) leaves the
//!    run unresolved.
//! 6. **noisy-neighbour, hot-node, memory-squeeze** on a random node X (with or without pods),
//!    the rest as rule 1: {(X, unattributed-cpu)}, {(X, thermal-throttling)}, {(X,
//!    memory-pressure)}.
//!
//! Anything else (ClientIP affinity elsewhere, 5 to 39 keep-alive connections on a hop that
//! decides, a traffic cause and a node cause together) is not generated.
//!
//! # A run, and what is right
//!
//! Each scenario runs through [`run::Demo`] as the CLI runs one (start, load, finish). Right means
//! what the demo's MATCH means, against this truth: the collector put the Service's web workload
//! under test, and the verdicts it held for at least 3 s of the window are exactly the expected
//! set; shorter ones are listed apart and count neither way. A verdict held that is not expected
//! is a false flag; an expected one not held is a miss. The time to the first flag is the demo's
//! time to the verdict ([`diagnose::first_flag`]) from the window's start (the load's) to the raise
//! of the first expected verdict, 0 when it was already raised (a condition present from boot,
//! such as a memory hog). It is reported, not judged: the demo's bound on it is the scenario's
//! `verdict_within_s`, which generated scenarios leave at its default.

pub mod command;
pub mod generate;
pub mod table;
pub mod truth;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use bakery_diagnosis::{Cause, WindowReport};
use serde::Serialize;

use crate::binaries::Binaries;
use crate::cluster::ClusterOptions;
use crate::diagnose::{self, ResolvedExpectation, VerdictKey};
use crate::report::Report;
use crate::run::{self, Demo, Options};
use generate::{Dimensions, Generated};
use truth::{PodCounts, Rule};

/// A verdict bakery held for less than the minimum.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BriefVerdict {
    pub node: String,
    pub cause: Cause,
    pub seconds: f64,
}

/// One scenario of the campaign, run and judged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// 1-based position in the campaign.
    pub index: usize,
    pub scenario: String,
    pub dimensions: Dimensions,
    /// The rule (the injected cause) and the node it was injected on, for node-level causes.
    pub rule: Rule,
    pub injected_on: Option<String>,
    /// The physical statement the expected verdicts follow from.
    pub truth: String,
    pub expected: Vec<VerdictKey>,
    /// Verdicts held for at least 3 s of the window.
    pub held: Vec<VerdictKey>,
    /// Verdicts held for less.
    pub brief: Vec<BriefVerdict>,
    pub right: bool,
    pub false_flags: Vec<VerdictKey>,
    pub misses: Vec<VerdictKey>,
    /// Seconds from the load's start to the raise of the first expected verdict (0 when raised
    /// before); `None` when none was raised or none was expected.
    pub first_flag_seconds: Option<f64>,
    /// The first expected verdict was raised before the load started.
    pub flagged_before_load: bool,
    /// Why it is not right, one line each.
    pub differences: Vec<String>,
    /// How the run resolved the truth (rules 4 and 5).
    pub notes: Vec<String>,
    /// The run could not be judged: the demo failed, or the truth's premise did not hold.
    pub error: Option<String>,
    /// Wall time of the whole run, seconds.
    pub seconds: f64,
    /// The scenario as TOML (for `bakery-demo --scenario-file`).
    pub scenario_toml: String,
    /// The demo's full report.
    pub report: Option<Report>,
}

/// Runs one generated scenario on the cluster of namespaces (start, load, finish) and judges it.
/// `demo_progress` shows the demo's own progress lines on stderr.
pub fn run_one(generated: &Generated, binaries: Binaries, demo_progress: bool) -> Outcome {
    let started = Instant::now();
    let options = Options {
        duration: None,
        progress: demo_progress,
        tui: false,
        window_report_file: None,
        workload: None,
        warm_up: run::warm_up(),
        cluster: ClusterOptions::default(),
    };
    let result = Demo::start(generated.scenario.clone(), binaries, options).and_then(|mut demo| {
        let outcome = demo.run_load()?;
        let report = demo.finish(outcome.report)?;
        Ok((report, outcome.window_report))
    });
    let mut outcome = match result {
        Ok((report, window_report)) => judge(generated, report, &window_report),
        Err(error) => {
            let mut outcome = judge_nothing(generated);
            outcome.error = Some(bakery_lab::chain(&error));
            outcome
        }
    };
    outcome.seconds = started.elapsed().as_secs_f64();
    outcome
}

/// An outcome with what is known before the run.
fn judge_nothing(generated: &Generated) -> Outcome {
    let truth = &generated.truth;
    Outcome {
        index: generated.index,
        scenario: generated.scenario.name.clone(),
        dimensions: Dimensions::of(&generated.scenario),
        rule: truth.rule,
        injected_on: match truth.rule {
            Rule::NoisyNeighbour | Rule::HotNode | Rule::MemorySqueeze => truth.fixed.first().map(|k| k.node.clone()),
            _ => None,
        },
        truth: truth.why.clone(),
        expected: truth.fixed.clone(),
        held: Vec::new(),
        brief: Vec::new(),
        right: false,
        false_flags: Vec::new(),
        misses: Vec::new(),
        first_flag_seconds: None,
        flagged_before_load: false,
        differences: Vec::new(),
        notes: Vec::new(),
        error: None,
        seconds: 0.0,
        scenario_toml: toml::to_string(&generated.scenario).unwrap_or_default(),
        report: None,
    }
}

/// The web pods' own counts during the load, per node.
pub fn pod_counts(report: &Report) -> BTreeMap<String, PodCounts> {
    let mut counts: BTreeMap<String, PodCounts> = BTreeMap::new();
    for pod in &report.pods {
        let node = counts.entry(pod.node.clone()).or_default();
        node.requests += pod.requests;
        node.accepted += pod.accepted_connections;
    }
    counts
}

/// Judges a run: the truth resolved from the pods' own counts, against the verdicts held.
pub fn judge(generated: &Generated, report: Report, window_report: &WindowReport) -> Outcome {
    let mut outcome = judge_nothing(generated);
    let resolved = generated.truth.resolve(&pod_counts(&report));
    outcome.expected = resolved.verdicts.clone();
    outcome.notes = resolved.notes.clone();
    outcome.error = resolved.unresolved.clone();
    let expected = ResolvedExpectation { verdicts: resolved.verdicts.clone(), notes: resolved.notes };
    let mut differences = diagnose::differences(
        &expected,
        &report.verdicts,
        report.workload.chosen.as_deref(),
        &report.workload.expected,
    );
    let held: BTreeSet<VerdictKey> =
        report.verdicts.iter().map(|v| VerdictKey { node: v.node.clone(), cause: v.cause }).collect();
    let wanted: BTreeSet<VerdictKey> = expected.verdicts.iter().cloned().collect();
    if generated.truth.rule == Rule::SessionAffinity {
        for verdict in report.verdicts.iter().filter(|v| v.cause == Cause::PodConcentration) {
            if !verdict.summary.contains("sessionAffinity: ClientIP") {
                differences.push(format!(
                    "{}'s pod-concentration verdict does not name sessionAffinity: ClientIP: {}",
                    verdict.node, verdict.summary
                ));
            }
        }
    }
    outcome.false_flags = held.difference(&wanted).cloned().collect();
    outcome.misses = wanted.difference(&held).cloned().collect();
    outcome.held = held.into_iter().collect();
    outcome.brief = report
        .brief_verdicts
        .iter()
        .map(|v| BriefVerdict { node: v.node.clone(), cause: v.cause, seconds: v.active_seconds })
        .collect();
    // The demo's own definition, from the load's start: no generated hog comes on mid-run.
    if let Some(first) = diagnose::first_flag(window_report, &expected.verdicts, report.window.start_ms) {
        outcome.flagged_before_load = first.raised_before;
        outcome.first_flag_seconds = Some(first.seconds);
    }
    outcome.right = outcome.error.is_none() && differences.is_empty();
    outcome.differences = differences;
    outcome.report = Some(report);
    outcome
}

/// The campaign's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub scenarios: usize,
    pub right: usize,
    /// Verdicts held that were not expected, over all scenarios.
    pub false_flags: usize,
    /// Expected verdicts not held, over all scenarios.
    pub misses: usize,
    /// Scenarios that could not be judged (the demo failed, or the truth's premise did not hold).
    pub errors: usize,
    /// Scenarios whose truth holds a verdict.
    pub expecting_a_hog: usize,
    /// Of those, how many raised an expected verdict at all.
    pub flagged: usize,
    /// Of those, how many had it raised before the load started (counted as 0 s).
    pub flagged_before_load: usize,
    /// Median seconds from the load's start to the first expected verdict, over the scenarios that
    /// expect a hog and raised one.
    pub median_seconds_to_first_flag: Option<f64>,
    /// The same without the ones raised before the load.
    pub median_seconds_to_first_flag_during_load: Option<f64>,
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    Some(if values.len() % 2 == 1 { values[middle] } else { (values[middle - 1] + values[middle]) / 2.0 })
}

impl Summary {
    pub fn of(outcomes: &[Outcome]) -> Self {
        let expecting: Vec<&Outcome> = outcomes.iter().filter(|o| !o.expected.is_empty()).collect();
        let times = |during_load_only: bool| {
            median(
                expecting
                    .iter()
                    .filter(|o| !(during_load_only && o.flagged_before_load))
                    .filter_map(|o| o.first_flag_seconds)
                    .collect(),
            )
        };
        Summary {
            scenarios: outcomes.len(),
            right: outcomes.iter().filter(|o| o.right).count(),
            false_flags: outcomes.iter().map(|o| o.false_flags.len()).sum(),
            misses: outcomes.iter().map(|o| o.misses.len()).sum(),
            errors: outcomes.iter().filter(|o| o.error.is_some()).count(),
            expecting_a_hog: expecting.len(),
            flagged: expecting.iter().filter(|o| o.first_flag_seconds.is_some()).count(),
            flagged_before_load: expecting.iter().filter(|o| o.flagged_before_load).count(),
            median_seconds_to_first_flag: times(false),
            median_seconds_to_first_flag_during_load: times(true),
        }
    }

    /// Every scenario right.
    pub fn all_right(&self) -> bool {
        self.scenarios > 0 && self.right == self.scenarios
    }
}

#[cfg(test)]
mod tests;
