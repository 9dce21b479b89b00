//! From the report the collector stored for the load-test window (its verdicts and its analysis
//! of the whole window) to the demo's verdict lines and per-node shares, and whether the verdicts
//! are the ones the scenario expects. Pure: the diagnosis itself is the collector's.

use std::collections::BTreeMap;

use bakery_diagnosis::{Cause, Signal, WindowReport, WorkloadRef, WorkloadUnderTest};
use serde::{Deserialize, Serialize};

use crate::plan::Plan;
use crate::scenario::{Expectation, ExpectedNode};

/// The workload under test: the Service's workload, its ready endpoints per node.
pub fn workload_under_test(plan: &Plan) -> WorkloadUnderTest {
    let served = plan.scenario.served();
    let mut ready_endpoints = BTreeMap::new();
    for pod in plan.endpoints() {
        *ready_endpoints.entry(pod.node.clone()).or_insert(0u32) += 1;
    }
    WorkloadUnderTest { workload: workload_ref(plan, &served.name), ready_endpoints, service: None, relay: None }
}

fn workload_ref(plan: &Plan, name: &str) -> WorkloadRef {
    let spec = plan.scenario.workload(name);
    WorkloadRef::new(
        spec.map_or("Deployment", |w| w.kind.name()),
        spec.map_or("default", |w| w.namespace.as_str()),
        name,
    )
}

/// One verdict as the demo reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportedVerdict {
    pub node: String,
    pub cause: Cause,
    pub confidence: f64,
    pub summary: String,
    pub next_step: String,
    /// Seconds the verdict was active inside the window.
    pub active_seconds: f64,
}

/// The verdicts of a window report that were active for at least `min_active_ms` inside the
/// window: a verdict that flickers for a second while the load ramps up is not the diagnosis.
pub fn window_verdicts(report: &WindowReport, min_active_ms: i64) -> Vec<ReportedVerdict> {
    let mut verdicts: Vec<ReportedVerdict> = report
        .verdicts
        .iter()
        .map(|v| {
            let end = v.cleared_ms.unwrap_or(v.last_active_ms).min(report.window.end_ms);
            let start = v.raised_ms.max(report.window.start_ms);
            ReportedVerdict {
                node: v.verdict.node.clone(),
                cause: v.verdict.cause,
                confidence: v.peak_confidence,
                summary: v.verdict.summary.clone(),
                next_step: v.verdict.next_step.clone(),
                active_seconds: (end - start).max(0) as f64 / 1000.0,
            }
        })
        .filter(|v| v.active_seconds * 1000.0 >= min_active_ms as f64)
        .collect();
    // One line per node and cause, the longest-lived first.
    verdicts.sort_by(|a, b| b.active_seconds.total_cmp(&a.active_seconds));
    let mut seen = std::collections::BTreeSet::new();
    verdicts.retain(|v| seen.insert((v.node.clone(), v.cause)));
    verdicts
}

/// One node's share of the load over the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeShare {
    pub node: String,
    pub role: String,
    /// Its share of the web workload's ready endpoints.
    pub expected_share: f64,
    /// Its web pods' share of the workload's pod traffic (bytes), from the agents.
    pub pod_traffic_share: Option<f64>,
    /// Its NIC's share of all nodes' NIC bytes, from the agents.
    pub nic_share: Option<f64>,
    pub nic_bytes_per_second: Option<f64>,
    /// NIC bytes its own pods do not account for (traffic forwarded for pods elsewhere).
    pub forwarded_bytes_per_second: Option<f64>,
    /// Mean established inbound connections to its web pods.
    pub connections: Option<f64>,
    pub pod_cpu_cores: Option<f64>,
    /// Requests its web pods answered, counted by the pods themselves.
    pub requests: u64,
    /// Connections its web pods accepted, counted by the pods themselves.
    pub accepted_connections: u64,
}

/// Per-node shares from the window's overall analysis and the pods' own counts.
pub fn node_shares(plan: &Plan, report: &WindowReport, pod_counts: &BTreeMap<String, (u64, u64)>) -> Vec<NodeShare> {
    let workload = workload_under_test(plan);
    let total_endpoints = workload.total_endpoints().max(1) as f64;
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
                expected_share: f64::from(workload.endpoints_on(&node.name)) / total_endpoints,
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

/// What the scenario expected, resolved for this run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedExpectation {
    /// `None`: no hog.
    pub hog: Option<(String, Cause)>,
    /// How a `pinned` node was resolved, for the report.
    pub note: Option<String>,
}

/// Resolves `expect` for this run. `pinned` needs the web pods' accepted connections during the
/// load, per node: the node holding at least twice its expected share of them is the one the
/// connections pinned to; when none does, the spread was too even to be a hog.
pub fn resolve(
    expect: &Expectation,
    plan: &Plan,
    load_connections_per_node: &BTreeMap<String, u64>,
) -> ResolvedExpectation {
    match expect {
        Expectation::NoHog(_) => ResolvedExpectation { hog: None, note: None },
        Expectation::Hog { node: ExpectedNode::Named(node), cause } => {
            ResolvedExpectation { hog: Some((node.clone(), *cause)), note: None }
        }
        Expectation::Hog { node: ExpectedNode::Pinned(_), cause } => {
            let workload = workload_under_test(plan);
            let total: u64 = load_connections_per_node.values().sum();
            let total_endpoints = workload.total_endpoints().max(1) as f64;
            let spread: Vec<String> = load_connections_per_node.iter().map(|(node, n)| format!("{node} {n}")).collect();
            let pinned = load_connections_per_node
                .iter()
                .filter(|(_, n)| total > 0 && **n > 0)
                .map(|(node, n)| {
                    let expected = f64::from(workload.endpoints_on(node)) / total_endpoints;
                    let share = *n as f64 / total as f64;
                    (node, if expected > 0.0 { share / expected } else { f64::INFINITY })
                })
                .filter(|(_, ratio)| *ratio >= 2.0)
                .max_by(|a, b| a.1.total_cmp(&b.1));
            match pinned {
                Some((node, ratio)) => ResolvedExpectation {
                    hog: Some((node.clone(), *cause)),
                    note: Some(format!(
                        "connections pinned this run: {} ({node} holds {ratio:.2}x its expected share)",
                        spread.join(", ")
                    )),
                },
                None => ResolvedExpectation {
                    hog: None,
                    note: Some(format!(
                        "connections spread this run: {}; no node holds twice its share, so no hog is expected (run again to re-roll)",
                        spread.join(", ")
                    )),
                },
            }
        }
    }
}

/// Whether the verdicts match: the expected (node, cause) is among them and every verdict is about
/// that node; or, with no hog expected, there is no verdict.
pub fn matches(expected: &ResolvedExpectation, verdicts: &[ReportedVerdict]) -> bool {
    match &expected.hog {
        None => verdicts.is_empty(),
        Some((node, cause)) => {
            verdicts.iter().any(|v| &v.node == node && v.cause == *cause) && verdicts.iter().all(|v| &v.node == node)
        }
    }
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
            next_step: String::new(),
            active_seconds: 5.0,
        }
    }

    #[test]
    fn expectations_match_only_the_named_node() {
        let expected = ResolvedExpectation { hog: Some(("master-02".into(), Cause::IngressConcentration)), note: None };
        assert!(matches(&expected, &[verdict("master-02", Cause::IngressConcentration)]));
        assert!(!matches(&expected, &[verdict("master-01", Cause::IngressConcentration)]));
        assert!(!matches(&expected, &[]));
        assert!(!matches(
            &expected,
            &[verdict("master-02", Cause::IngressConcentration), verdict("worker-01", Cause::ConnectionPinning)]
        ));
        let none = ResolvedExpectation { hog: None, note: None };
        assert!(matches(&none, &[]));
        assert!(!matches(&none, &[verdict("worker-01", Cause::PodConcentration)]));
    }

    #[test]
    fn pinned_resolves_to_the_node_holding_twice_its_share_of_connections() {
        let plan = plan("keepalive-pinning");
        let spread = |a, b, c| {
            BTreeMap::from([("master-02".to_string(), a), ("worker-01".to_string(), b), ("worker-02".to_string(), c)])
        };
        let resolved = resolve(&plan.scenario.expect, &plan, &spread(3, 1, 0));
        assert_eq!(resolved.hog, Some(("master-02".to_string(), Cause::ConnectionPinning)));
        let resolved = resolve(&plan.scenario.expect, &plan, &spread(0, 0, 4));
        assert_eq!(resolved.hog, Some(("worker-02".to_string(), Cause::ConnectionPinning)));
        for even in [spread(2, 1, 1), spread(2, 2, 0)] {
            let resolved = resolve(&plan.scenario.expect, &plan, &even);
            assert_eq!(resolved.hog, None, "{even:?}");
            assert!(resolved.note.unwrap().contains("re-roll"));
        }
    }
}
