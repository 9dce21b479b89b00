//! From what the agents streamed to bakery's verdict, and whether it is the one the scenario
//! expects.
//!
//! Until the collector runs the diagnosis itself (load-test windows, issue 4), the demo does what
//! the collector will do: it reads every node's samples of the window from the collector's Query
//! service (`History`), converts them to the diagnosis input (pure, below), names the pods and the
//! workload under test from its own plan (what the collector will learn from the Kubernetes API),
//! and replays the window through [`bakery_diagnosis::WindowReport::build`]. The numbers are the
//! agents' own, through the collector: nothing here is simulated.

use std::collections::{BTreeMap, HashMap};

use bakery_diagnosis::{
    Cause, CpuFrequency, CpuJiffies, NicBytes, NodeMemory, NodeRole, NodeSample, PodSample, PressureTotals, Signal,
    ThrottleFlags, Tick, WindowReport, WorkloadRef, WorkloadUnderTest,
};
use bakery_proto::v1::{PodIdentity, Sample};
use serde::{Deserialize, Serialize};

use crate::plan::{Plan, PodPlan};
use crate::scenario::{Expectation, ExpectedNode, Role};

/// Interfaces that are not a node's NIC: loopback and what container networking creates. Their
/// bytes are counted on the physical interface already or never left the node.
const VIRTUAL_INTERFACE_PREFIXES: &[&str] = &[
    "lo", "veth", "cni", "flannel", "cali", "cilium", "lxc", "vxlan", "tunl", "docker", "br-", "virbr", "kube-",
    "weave", "genev", "tap", "dummy",
];

pub fn is_physical_interface(name: &str) -> bool {
    !VIRTUAL_INTERFACE_PREFIXES.iter().any(|prefix| name.starts_with(prefix))
}

/// The workload under test: the Service's workload, its ready endpoints per node.
pub fn workload_under_test(plan: &Plan) -> WorkloadUnderTest {
    let served = plan.scenario.served();
    let mut ready_endpoints = BTreeMap::new();
    for pod in plan.endpoints() {
        *ready_endpoints.entry(pod.node.clone()).or_insert(0u32) += 1;
    }
    WorkloadUnderTest { workload: workload_ref(plan, &served.name), ready_endpoints }
}

fn workload_ref(plan: &Plan, name: &str) -> WorkloadRef {
    let spec = plan.scenario.workload(name);
    WorkloadRef::new(
        spec.map_or("Deployment", |w| w.kind.name()),
        spec.map_or("default", |w| w.namespace.as_str()),
        name,
    )
}

/// One agent sample as the diagnosis reads it. `identities` resolves the sample's pod references
/// (the collector's pod ids) to UIDs; the plan names the pods.
pub fn node_sample(plan: &Plan, node: &str, sample: &Sample, identities: &HashMap<u32, PodIdentity>) -> NodeSample {
    let role = match plan.scenario.node(node).map(|n| n.role) {
        Some(Role::ControlPlane) => NodeRole::ControlPlane,
        Some(Role::Worker) => NodeRole::Worker,
        None => NodeRole::Unknown,
    };
    let cpu = sample
        .cpu_total
        .as_ref()
        .map(|c| CpuJiffies {
            user: c.user,
            nice: c.nice,
            system: c.system,
            idle: c.idle,
            iowait: c.iowait,
            irq: c.irq,
            softirq: c.softirq,
            steal: c.steal,
        })
        .unwrap_or_default();
    let mut nic = NicBytes::default();
    for interface in sample.interfaces.iter().filter(|i| is_physical_interface(&i.name)) {
        if let Some(counters) = &interface.counters {
            nic.rx_bytes += counters.rx_bytes;
            nic.tx_bytes += counters.tx_bytes;
        }
    }
    let memory = sample
        .memory
        .as_ref()
        .map(|m| NodeMemory { total_bytes: m.total_bytes, available_bytes: m.available_bytes })
        .unwrap_or_default();
    let pressure = (!sample.pressure.is_empty()).then(|| {
        let mut totals = PressureTotals::default();
        for p in &sample.pressure {
            match (p.resource.as_str(), p.kind.as_str()) {
                ("cpu", "some") => totals.cpu_some_us = p.total_us,
                ("memory", "some") => totals.memory_some_us = p.total_us,
                ("memory", "full") => totals.memory_full_us = p.total_us,
                ("io", "some") => totals.io_some_us = p.total_us,
                _ => {}
            }
        }
        totals
    });
    let temperature_millicelsius = sample.temperatures.iter().map(|t| t.millidegrees_celsius).max();
    let cpu_frequency = sample.cpu_frequencies.iter().map(|f| f.current_khz).min().map(|current_khz| CpuFrequency {
        current_khz,
        max_khz: sample.cpu_frequencies.iter().map(|f| f.max_khz).max().unwrap_or(current_khz),
    });
    let throttle = sample.throttle.as_ref().and_then(|t| t.now.as_ref()).map(|now| ThrottleFlags {
        under_voltage: now.under_voltage,
        arm_frequency_capped: now.arm_frequency_capped,
        throttled: now.throttled,
        soft_temperature_limit: now.soft_temperature_limit,
    });
    let by_uid: HashMap<&str, &PodPlan> = plan.pods.iter().map(|p| (p.uid.as_str(), p)).collect();
    let pods = sample
        .pods
        .iter()
        .filter_map(|pod| {
            let identity = identities.get(&pod.pod_ref)?;
            let planned = by_uid.get(identity.uid.as_str());
            let network = pod.network.unwrap_or_default();
            Some(PodSample {
                uid: identity.uid.clone(),
                name: planned.map_or_else(|| identity.uid.clone(), |p| p.name.clone()),
                namespace: planned.map(|p| p.namespace.clone()).unwrap_or_default(),
                workload: planned.map(|p| workload_ref(plan, &p.workload)),
                ready: planned.is_some(),
                host_network: identity.host_network,
                rx_bytes: network.rx_bytes,
                tx_bytes: network.tx_bytes,
                established_inbound: pod.tcp.map(|t| t.established_inbound).unwrap_or_default(),
                cpu_usage_us: pod.cpu_usage_us,
                memory_working_set_bytes: pod.memory_working_set_bytes,
            })
        })
        .collect();
    NodeSample {
        name: node.to_string(),
        role,
        timestamp_ms: sample.timestamp_ms,
        clock_ticks_per_second: 100,
        cpu,
        nic,
        memory,
        pressure,
        temperature_millicelsius,
        cpu_frequency,
        throttle,
        pods,
    }
}

/// Evaluation ticks every `step_ms` from `from_ms` to `to_ms`: at each, every node's latest sample
/// taken at or before it (a node with none yet is left out). `samples` per node, in time order.
pub fn ticks(
    samples: &BTreeMap<String, Vec<NodeSample>>,
    workload: &WorkloadUnderTest,
    from_ms: i64,
    to_ms: i64,
    step_ms: i64,
) -> Vec<Tick> {
    let mut ticks = Vec::new();
    let mut cursor: BTreeMap<&str, usize> = BTreeMap::new();
    let mut t = from_ms;
    while t <= to_ms {
        let mut nodes = Vec::new();
        for (name, series) in samples {
            let next = cursor.entry(name).or_insert(0);
            while *next < series.len() && series[*next].timestamp_ms <= t {
                *next += 1;
            }
            if *next > 0 {
                nodes.push(series[*next - 1].clone());
            }
        }
        if !nodes.is_empty() {
            ticks.push(Tick { timestamp_ms: t, nodes, workload: Some(workload.clone()) });
        }
        t += step_ms.max(1);
    }
    ticks
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
    use bakery_proto::v1::{CpuTimes, Memory, NetCounters, NetInterface, PodSample as WirePod, TcpConnections};

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
    fn only_the_physical_nic_counts() {
        for name in ["eth0", "ens18", "wlan0", "end0"] {
            assert!(is_physical_interface(name), "{name}");
        }
        for name in ["lo", "veth1a2b3c4d", "cni0", "flannel.1", "cali0"] {
            assert!(!is_physical_interface(name), "{name}");
        }
    }

    #[test]
    fn a_sample_becomes_a_node_sample_with_named_pods() {
        let plan = plan("l2-ingress");
        let pod = plan.endpoints()[0];
        let sample = Sample {
            timestamp_ms: 1_000,
            cpu_total: Some(CpuTimes { cpu: -1, user: 10, system: 5, idle: 100, softirq: 3, ..Default::default() }),
            memory: Some(Memory { total_bytes: 8 << 30, available_bytes: 6 << 30, ..Default::default() }),
            interfaces: vec![
                NetInterface {
                    name: "lo".into(),
                    counters: Some(NetCounters { rx_bytes: 999, tx_bytes: 999, ..Default::default() }),
                },
                NetInterface {
                    name: "eth0".into(),
                    counters: Some(NetCounters { rx_bytes: 100, tx_bytes: 200, ..Default::default() }),
                },
                NetInterface {
                    name: pod.host_veth.clone(),
                    counters: Some(NetCounters { rx_bytes: 7, tx_bytes: 7, ..Default::default() }),
                },
            ],
            pods: vec![WirePod {
                pod_ref: 3,
                network: Some(NetCounters { rx_bytes: 40, tx_bytes: 4000, ..Default::default() }),
                tcp: Some(TcpConnections { established_inbound: 6, ..Default::default() }),
                cpu_usage_us: 1234,
                memory_working_set_bytes: 55,
                process_count: 1,
            }],
            ..Default::default()
        };
        let identities = HashMap::from([(3, PodIdentity { pod_ref: 3, uid: pod.uid.clone(), ..Default::default() })]);
        let node = node_sample(&plan, "master-02", &sample, &identities);
        assert_eq!(node.role, NodeRole::ControlPlane);
        assert_eq!(node.nic, NicBytes { rx_bytes: 100, tx_bytes: 200 });
        assert_eq!((node.cpu.user, node.cpu.softirq), (10, 3));
        assert_eq!(node.memory.available_bytes, 6 << 30);
        let pod_sample = &node.pods[0];
        assert_eq!(pod_sample.name, pod.name);
        assert_eq!(pod_sample.workload, Some(WorkloadRef::new("Deployment", "wordpress", "wordpress")));
        assert_eq!((pod_sample.rx_bytes, pod_sample.tx_bytes, pod_sample.established_inbound), (40, 4000, 6));
        assert!(pod_sample.ready);
    }

    #[test]
    fn ticks_hold_each_nodes_latest_sample() {
        let plan = plan("balanced");
        let sample =
            |t| node_sample(&plan, "master-01", &Sample { timestamp_ms: t, ..Default::default() }, &HashMap::new());
        let other =
            |t| node_sample(&plan, "worker-01", &Sample { timestamp_ms: t, ..Default::default() }, &HashMap::new());
        let samples = BTreeMap::from([
            ("master-01".to_string(), vec![sample(100), sample(350), sample(600)]),
            ("worker-01".to_string(), vec![other(300)]),
        ]);
        let ticks = ticks(&samples, &workload_under_test(&plan), 250, 750, 250);
        let seen: Vec<Vec<(String, i64)>> =
            ticks.iter().map(|t| t.nodes.iter().map(|n| (n.name.clone(), n.timestamp_ms)).collect()).collect();
        assert_eq!(
            seen,
            vec![
                vec![("master-01".to_string(), 100)],
                vec![("master-01".to_string(), 350), ("worker-01".to_string(), 300)],
                vec![("master-01".to_string(), 600), ("worker-01".to_string(), 300)],
            ]
        );
        assert_eq!(ticks[0].workload.as_ref().unwrap().ready_endpoints.len(), 3);
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
