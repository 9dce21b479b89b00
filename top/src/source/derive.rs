//! From the collector's raw, cumulative samples to a [`Snapshot`] of rates: pure functions over
//! wire types (the gRPC edge), tested with data. Counters are cumulative, so every rate needs two
//! samples of the same node; a counter that went down restarted (agent, pod or node restart), and
//! that interval yields no rate rather than a huge or negative one.

use std::collections::BTreeMap;

use bakery_proto::v1::{
    CpuTimes, LiveResponse, NetCounters, NodeStatus, PodIdentity, PodsResponse, Sample, WindowsResponse,
};

use crate::model::{
    AgentState, Alert, Cause, CpuUse, Frequency, MemoryUse, NodeView, PodView, Rates, Role, Share, ShareBasis,
    Snapshot, ThrottleMark, WindowSummary,
};

/// The two most recent distinct samples of one node: rates come from the pair.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SamplePair {
    pub previous: Option<Sample>,
    pub latest: Option<Sample>,
}

impl SamplePair {
    /// Takes `sample` as the latest when it is newer than the one held; a re-sent latest sample
    /// (the collector answers with the same one until the next arrives) changes nothing.
    pub fn push(&mut self, sample: Sample) {
        match &self.latest {
            Some(latest) if sample.timestamp_ms <= latest.timestamp_ms => {}
            _ => self.previous = self.latest.replace(sample),
        }
    }

    /// Seeds the earlier sample from history when there is none yet, so the first view has rates.
    pub fn seed_previous(&mut self, sample: Sample) {
        let older = self.latest.as_ref().is_some_and(|latest| sample.timestamp_ms < latest.timestamp_ms);
        if self.previous.is_none() && older {
            self.previous = Some(sample);
        }
    }
}

/// Builds the snapshot from every node's status and its sample pair (keyed by node name).
pub fn snapshot(statuses: &[NodeStatus], pairs: &BTreeMap<String, SamplePair>, taken_ms: i64) -> Snapshot {
    let mut nodes = Vec::with_capacity(statuses.len());
    let mut pods = Vec::new();
    let mut pod_traffic: Vec<Option<f64>> = Vec::with_capacity(statuses.len());
    for status in statuses {
        let pair = pairs.get(&status.node_name);
        let latest = pair.and_then(|p| p.latest.as_ref()).or(status.latest.as_ref());
        let previous = pair.and_then(|p| p.previous.as_ref());
        let node_pods = latest.map(|l| pod_views(&status.node_name, &status.pods, l, previous)).unwrap_or_default();
        pod_traffic.push(pod_traffic_rate(&node_pods));
        nodes.push(node_view(status, latest, previous, &node_pods));
        pods.extend(node_pods);
    }
    apply_even_shares(&mut nodes, &pod_traffic);
    pods.sort_by(|a, b| (&a.node, &a.namespace, &a.name).cmp(&(&b.node, &b.namespace, &b.name)));
    Snapshot { taken_ms, nodes, pods, share_basis: ShareBasis::AllPods, alerts: None, windows: None }
}

fn node_view(status: &NodeStatus, latest: Option<&Sample>, previous: Option<&Sample>, pods: &[PodView]) -> NodeView {
    let agent = if !status.connected {
        AgentState::Gone
    } else if status.stale {
        AgentState::Stale
    } else {
        AgentState::Live
    };
    let mut view = NodeView {
        name: status.node_name.clone(),
        role: role_from_wire(&status.role),
        agent,
        sample_ms: status.last_sample_ms,
        ..NodeView::default()
    };
    let Some(latest) = latest else { return view };
    view.sample_ms = latest.timestamp_ms;
    view.memory = latest
        .memory
        .as_ref()
        .filter(|m| m.total_bytes > 0)
        .map(|m| MemoryUse { used_bytes: bakery_signals::memory::used_bytes(m), total_bytes: m.total_bytes });
    view.temperature_celsius =
        latest.temperatures.iter().map(|t| t.millidegrees_celsius).max().map(|milli| milli as f64 / 1000.0);
    view.frequency = frequency(latest);
    view.throttle = throttle_mark(latest);
    view.inbound_connections = inbound_connections(pods);
    if let Some(previous) = previous {
        view.cpu = match (&previous.cpu_total, &latest.cpu_total) {
            (Some(before), Some(after)) => cpu_use(before, after),
            _ => None,
        };
        view.nic = seconds_between(previous, latest)
            .and_then(|seconds| net_rates(&physical_nic_total(previous), &physical_nic_total(latest), seconds));
    }
    view
}

/// Busy and softirq share of all CPU time between two `/proc/stat` "cpu" lines, in percent
/// (`bakery_signals::cpu`).
pub fn cpu_use(before: &CpuTimes, after: &CpuTimes) -> Option<CpuUse> {
    bakery_signals::cpu::use_between(before, after)
        .map(|u| CpuUse { busy_percent: u.busy * 100.0, softirq_percent: u.softirq * 100.0 })
}

/// The node's own wire, summed (`bakery_signals::nic`).
fn physical_nic_total(sample: &Sample) -> NetCounters {
    let (rx_bytes, tx_bytes) = bakery_signals::nic::wire_bytes(&sample.interfaces);
    NetCounters { rx_bytes, tx_bytes, ..NetCounters::default() }
}

fn seconds_between(previous: &Sample, latest: &Sample) -> Option<f64> {
    let millis = latest.timestamp_ms.checked_sub(previous.timestamp_ms)?;
    (millis > 0).then(|| millis as f64 / 1000.0)
}

/// Byte rates between two cumulative readings; `None` after a reset (a counter went down).
pub fn net_rates(before: &NetCounters, after: &NetCounters, seconds: f64) -> Option<Rates> {
    let rx = after.rx_bytes.checked_sub(before.rx_bytes)?;
    let tx = after.tx_bytes.checked_sub(before.tx_bytes)?;
    Some(Rates { rx_bytes_per_second: rx as f64 / seconds, tx_bytes_per_second: tx as f64 / seconds })
}

fn frequency(sample: &Sample) -> Option<Frequency> {
    let current_khz = sample.cpu_frequencies.iter().map(|f| f.current_khz).min()?;
    let max_khz = sample.cpu_frequencies.iter().map(|f| f.max_khz).max()?;
    Some(Frequency { current_khz, max_khz })
}

fn throttle_mark(sample: &Sample) -> ThrottleMark {
    let now = sample.throttle.as_ref().and_then(|t| t.now.as_ref());
    ThrottleMark {
        throttled: now.is_some_and(|n| n.throttled),
        frequency_capped: now.is_some_and(|n| n.arm_frequency_capped),
        soft_temperature_limit: now.is_some_and(|n| n.soft_temperature_limit),
        under_voltage: now.is_some_and(|n| n.under_voltage) || sample.voltage_alarms.iter().any(|a| a.active),
    }
}

fn pod_views(node: &str, identities: &[PodIdentity], latest: &Sample, previous: Option<&Sample>) -> Vec<PodView> {
    let identity: BTreeMap<u32, &PodIdentity> = identities.iter().map(|p| (p.pod_ref, p)).collect();
    let seconds = previous.and_then(|p| seconds_between(p, latest));
    latest
        .pods
        .iter()
        .map(|pod| {
            let id = identity.get(&pod.pod_ref);
            let uid = id.map_or_else(|| format!("pod-ref-{}", pod.pod_ref), |i| i.uid.clone());
            let host_network = id.is_some_and(|i| i.host_network);
            let before = previous.and_then(|p| p.pods.iter().find(|b| b.pod_ref == pod.pod_ref));
            let network = match (before, seconds, host_network) {
                (Some(before), Some(seconds), false) => match (&before.network, &pod.network) {
                    (Some(b), Some(a)) => net_rates(b, a, seconds),
                    _ => None,
                },
                _ => None,
            };
            let cpu_cores = match (before, seconds) {
                (Some(before), Some(seconds)) => pod
                    .cpu_usage_us
                    .checked_sub(before.cpu_usage_us)
                    .map(|micros| micros as f64 / 1_000_000.0 / seconds),
                _ => None,
            };
            PodView {
                // Without cluster knowledge a pod is known by its UID only.
                name: uid.clone(),
                namespace: String::new(),
                uid,
                node: node.to_string(),
                workload: None,
                ready: None,
                host_network,
                network,
                inbound_connections: (!host_network)
                    .then(|| pod.tcp.as_ref().map(|t| u64::from(t.established_inbound)))
                    .flatten(),
                cpu_cores,
                memory_working_set_bytes: Some(pod.memory_working_set_bytes),
            }
        })
        .collect()
}

fn inbound_connections(pods: &[PodView]) -> Option<u64> {
    let counted: Vec<u64> = pods.iter().filter_map(|p| p.inbound_connections).collect();
    (!counted.is_empty()).then(|| counted.iter().sum())
}

/// Bytes per second through the node's pods (rx + tx), or `None` when no pod has a rate yet.
fn pod_traffic_rate(pods: &[PodView]) -> Option<f64> {
    let rates: Vec<f64> = pods.iter().filter_map(|p| p.network.map(|n| n.total())).collect();
    (!rates.is_empty()).then(|| rates.iter().sum())
}

/// Without a workload, each node's share of all pod traffic against an even split over the nodes.
/// The role the collector reports ("control-plane", "worker"; empty without cluster knowledge).
pub fn role_from_wire(role: &str) -> Role {
    match role {
        "control-plane" => Role::ControlPlane,
        "worker" => Role::Worker,
        _ => Role::Unknown,
    }
}

/// Adds what the collector's diagnosis knows to a snapshot built from `Query.Nodes`: pod names,
/// namespaces, workloads and readiness (`Query.Pods`); the workload under test, each node's share
/// against its expected share, and the live verdicts (`Query.Live`); the windows
/// (`Query.Windows`). Each part is optional: an older collector leaves the snapshot as it was.
pub fn apply_diagnosis(
    snapshot: &mut Snapshot,
    pods: Option<&PodsResponse>,
    live: Option<&LiveResponse>,
    windows: Option<&WindowsResponse>,
) {
    if let Some(pods) = pods {
        let by_uid: BTreeMap<&str, _> = pods.pods.iter().map(|p| (p.uid.as_str(), p)).collect();
        for view in &mut snapshot.pods {
            let Some(info) = by_uid.get(view.uid.as_str()) else { continue };
            if pods.kubernetes {
                view.name = info.name.clone();
                view.namespace = info.namespace.clone();
                view.ready = Some(info.ready);
                view.workload =
                    (!info.workload_kind.is_empty()).then(|| format!("{}/{}", info.workload_kind, info.workload_name));
            }
        }
        snapshot.pods.sort_by(|a, b| (&a.node, &a.namespace, &a.name).cmp(&(&b.node, &b.namespace, &b.name)));
    }
    if let Some(live) = live {
        if !live.workload.is_empty() {
            // "Kind/namespace/name" on the wire; the view names it "namespace/name".
            let name = live.workload.split_once('/').map_or(live.workload.as_str(), |(_, rest)| rest);
            snapshot.share_basis = ShareBasis::Workload { name: name.to_string() };
            for node in &mut snapshot.nodes {
                node.share = live
                    .shares
                    .iter()
                    .find(|s| s.node_name == node.name)
                    .and_then(|s| s.observed.map(|observed| Share { observed, expected: s.expected }));
            }
        }
        snapshot.alerts = Some(
            live.verdicts
                .iter()
                .map(|v| Alert {
                    node: v.node_name.clone(),
                    cause: Cause::from_wire(&v.cause),
                    evidence: v.evidence.join("; "),
                    confidence: v.confidence,
                    next_step: v.next_step.clone(),
                    since_ms: v.since_ms,
                })
                .collect(),
        );
    }
    if let Some(windows) = windows {
        snapshot.windows = Some(
            windows
                .windows
                .iter()
                .map(|w| WindowSummary {
                    id: w.id.clone(),
                    name: w.name.clone(),
                    workload: (!w.workload.is_empty()).then(|| w.workload.clone()),
                    automatic: w.automatic,
                    start_ms: w.start_ms,
                    end_ms: (w.end_ms > 0).then_some(w.end_ms),
                    verdicts: w.verdicts.iter().map(|v| format!("{} {}", v.node_name, v.cause)).collect(),
                })
                .collect(),
        );
    }
}

fn apply_even_shares(nodes: &mut [NodeView], pod_traffic: &[Option<f64>]) {
    let total: f64 = pod_traffic.iter().flatten().sum();
    if total <= 0.0 || nodes.is_empty() {
        return;
    }
    let expected = 1.0 / nodes.len() as f64;
    for (node, traffic) in nodes.iter_mut().zip(pod_traffic) {
        node.share = Some(Share { observed: traffic.unwrap_or(0.0) / total, expected });
    }
}

#[cfg(test)]
mod tests {
    use bakery_proto::v1::{
        CpuFrequency, Memory, NetInterface, PodSample, TcpConnections, Temperature, Throttle, ThrottleFlags,
    };

    use super::*;

    fn cpu(user: u64, idle: u64, softirq: u64) -> CpuTimes {
        CpuTimes { cpu: -1, user, idle, softirq, ..CpuTimes::default() }
    }

    fn nic(name: &str, rx: u64, tx: u64) -> NetInterface {
        NetInterface {
            name: name.into(),
            counters: Some(NetCounters { rx_bytes: rx, tx_bytes: tx, ..NetCounters::default() }),
            ..NetInterface::default()
        }
    }

    fn pod(pod_ref: u32, rx: u64, cpu_us: u64, inbound: u32) -> PodSample {
        PodSample {
            pod_ref,
            network: Some(NetCounters { rx_bytes: rx, ..NetCounters::default() }),
            tcp: Some(TcpConnections { established_inbound: inbound, ..TcpConnections::default() }),
            cpu_usage_us: cpu_us,
            memory_working_set_bytes: 50 << 20,
            process_count: 1,
        }
    }

    fn sample(timestamp_ms: i64, user: u64, rx: u64, pods: Vec<PodSample>) -> Sample {
        Sample {
            timestamp_ms,
            cpu_total: Some(cpu(user, timestamp_ms as u64 / 10, user / 10)),
            interfaces: vec![nic("lo", rx * 7, rx * 7), nic("eth0", rx, rx / 2), nic("veth1", rx * 3, 0)],
            pods,
            ..Sample::default()
        }
    }

    fn status(name: &str, latest: Sample) -> NodeStatus {
        NodeStatus {
            node_name: name.into(),
            connected: true,
            pods: vec![
                PodIdentity { pod_ref: 1, uid: format!("{name}-uid-1"), ..PodIdentity::default() },
                PodIdentity { pod_ref: 2, uid: format!("{name}-uid-2"), host_network: true, ..PodIdentity::default() },
            ],
            last_sample_ms: latest.timestamp_ms,
            latest: Some(latest),
            ..NodeStatus::default()
        }
    }

    #[test]
    fn the_diagnosis_names_pods_sets_shares_and_lists_verdicts() {
        use bakery_proto::v1::{NodeShare, PodInfo, Verdict, Window};
        let mut statuses = vec![status("pi-1", sample(1000, 0, 0, vec![])), status("pi-2", sample(1000, 0, 0, vec![]))];
        statuses[0].role = "control-plane".into();
        let mut snapshot = snapshot(&statuses, &BTreeMap::new(), 5);
        assert_eq!(snapshot.nodes[0].role, Role::ControlPlane);
        assert_eq!(snapshot.nodes[1].role, Role::Unknown);
        snapshot.pods.push(PodView { uid: "u1".into(), name: "u1".into(), node: "pi-1".into(), ..PodView::default() });
        let pods = PodsResponse {
            pods: vec![PodInfo {
                uid: "u1".into(),
                namespace: "shop".into(),
                name: "web-abc".into(),
                ready: true,
                workload_kind: "Deployment".into(),
                workload_name: "web".into(),
                ..PodInfo::default()
            }],
            kubernetes: true,
        };
        let live = LiveResponse {
            workload: "Deployment/shop/web".into(),
            shares: vec![NodeShare {
                node_name: "pi-1".into(),
                observed: Some(0.8),
                expected: 0.5,
                role: String::new(),
            }],
            verdicts: vec![Verdict {
                node_name: "pi-1".into(),
                cause: "ingress-concentration".into(),
                evidence: vec!["a".into(), "b".into()],
                ..Verdict::default()
            }],
            evaluated_ms: 5,
            notes: vec![],
        };
        let windows = WindowsResponse {
            windows: vec![Window { id: "w-1".into(), name: "run".into(), start_ms: 1, end_ms: 0, ..Window::default() }],
        };
        apply_diagnosis(&mut snapshot, Some(&pods), Some(&live), Some(&windows));
        let pod = snapshot.pods.iter().find(|p| p.uid == "u1").unwrap();
        assert_eq!(
            (pod.name.as_str(), pod.ready, pod.workload.as_deref()),
            ("web-abc", Some(true), Some("Deployment/web"))
        );
        assert_eq!(snapshot.share_basis, ShareBasis::Workload { name: "shop/web".into() });
        assert_eq!(snapshot.nodes[0].share, Some(Share { observed: 0.8, expected: 0.5 }));
        assert_eq!(snapshot.nodes[1].share, None, "no live figure for pi-2");
        let alerts = snapshot.alerts.unwrap();
        assert_eq!((alerts[0].cause.clone(), alerts[0].evidence.as_str()), (Cause::IngressConcentration, "a; b"));
        assert_eq!(snapshot.windows.unwrap()[0].end_ms, None, "an open window");
    }

    #[test]
    fn cpu_use_counts_every_mode_but_idle_and_iowait() {
        let before = CpuTimes { user: 100, system: 50, idle: 800, iowait: 50, softirq: 0, ..CpuTimes::default() };
        let after = CpuTimes { user: 160, system: 70, idle: 880, iowait: 70, softirq: 20, ..CpuTimes::default() };
        // busy 60 + 20 + 20 = 100 of 200.
        assert_eq!(cpu_use(&before, &after), Some(CpuUse { busy_percent: 50.0, softirq_percent: 10.0 }));
    }

    #[test]
    fn a_counter_that_went_down_gives_no_rate() {
        let before = cpu(500, 500, 10);
        let after = cpu(100, 900, 20);
        assert_eq!(cpu_use(&before, &after), None);
        let a = NetCounters { rx_bytes: 1000, ..NetCounters::default() };
        let b = NetCounters { rx_bytes: 10, ..NetCounters::default() };
        assert_eq!(net_rates(&a, &b, 1.0), None);
    }

    #[test]
    fn sample_pair_keeps_the_two_latest_distinct_samples() {
        let mut pair = SamplePair::default();
        pair.push(sample(1000, 0, 0, vec![]));
        pair.push(sample(1000, 0, 0, vec![]));
        assert_eq!(pair.previous, None, "a re-sent sample is not a new one");
        pair.push(sample(2000, 0, 0, vec![]));
        pair.push(sample(1500, 0, 0, vec![]));
        assert_eq!(pair.previous.as_ref().map(|s| s.timestamp_ms), Some(1000));
        assert_eq!(pair.latest.as_ref().map(|s| s.timestamp_ms), Some(2000));
        pair.seed_previous(sample(500, 0, 0, vec![]));
        assert_eq!(pair.previous.as_ref().map(|s| s.timestamp_ms), Some(1000), "history never replaces a pair");
    }

    #[test]
    fn rates_come_from_the_two_samples_of_each_node() {
        let mut pairs = BTreeMap::new();
        let mut statuses = Vec::new();
        for (name, pod_rx) in [("master-01", 1_000_000u64), ("master-02", 3_000_000)] {
            let before = sample(10_000, 100, 1_000, vec![pod(1, 0, 0, 4), pod(2, 0, 0, 99)]);
            let after = sample(12_000, 300, 2_001_000, vec![pod(1, pod_rx, 500_000, 6), pod(2, 5, 0, 99)]);
            let mut pair = SamplePair::default();
            pair.push(before);
            pair.push(after.clone());
            pairs.insert(name.to_string(), pair);
            statuses.push(status(name, after));
        }
        let snap = snapshot(&statuses, &pairs, 99);
        let node = &snap.nodes[1];
        assert_eq!(node.name, "master-02");
        // user +200 and softirq +20 jiffies are busy; idle +200: 220 of 420.
        let cpu = node.cpu.expect("cpu");
        assert!((cpu.busy_percent - 220.0 / 420.0 * 100.0).abs() < 1e-9, "{cpu:?}");
        assert!((cpu.softirq_percent - 20.0 / 420.0 * 100.0).abs() < 1e-9, "{cpu:?}");
        // Only eth0: 2,000,000 bytes in 2 s.
        assert_eq!(node.nic, Some(Rates { rx_bytes_per_second: 1_000_000.0, tx_bytes_per_second: 500_000.0 }));
        // The hostNetwork pod's 99 connections are the node's, not a pod's.
        assert_eq!(node.inbound_connections, Some(6));
        // Pod traffic 0.5 MB/s vs 1.5 MB/s: 25 % and 75 % against an even 50 %.
        assert_eq!(snap.nodes[0].share, Some(Share { observed: 0.25, expected: 0.5 }));
        assert_eq!(node.share, Some(Share { observed: 0.75, expected: 0.5 }));
        let hot_pod = snap.pods.iter().find(|p| p.uid == "master-02-uid-1").expect("pod");
        assert_eq!(hot_pod.cpu_cores, Some(0.25));
        assert_eq!(hot_pod.network.map(|n| n.rx_bytes_per_second), Some(1_500_000.0));
        let host_pod = snap.pods.iter().find(|p| p.uid == "master-02-uid-2").expect("pod");
        assert!(host_pod.host_network && host_pod.network.is_none() && host_pod.inbound_connections.is_none());
    }

    #[test]
    fn a_first_sample_shows_gauges_but_no_rates() {
        let mut latest = sample(5_000, 10, 10, vec![pod(1, 10, 10, 3)]);
        latest.memory = Some(Memory { total_bytes: 8 << 30, available_bytes: 6 << 30, ..Memory::default() });
        latest.temperatures = vec![
            Temperature { sensor: "thermal_zone0/cpu-thermal".into(), millidegrees_celsius: 81_250 },
            Temperature { sensor: "hwmon2/rp1_adc/temp1".into(), millidegrees_celsius: 40_000 },
        ];
        latest.cpu_frequencies = vec![
            CpuFrequency { cpu: 0, current_khz: 1_500_000, max_khz: 2_400_000 },
            CpuFrequency { cpu: 1, current_khz: 2_400_000, max_khz: 2_400_000 },
        ];
        latest.throttle = Some(Throttle {
            raw: 0x4,
            now: Some(ThrottleFlags { throttled: true, ..ThrottleFlags::default() }),
            since_boot: None,
        });
        let snap = snapshot(&[status("worker-01", latest)], &BTreeMap::new(), 0);
        let node = &snap.nodes[0];
        assert_eq!(node.cpu, None);
        assert_eq!(node.nic, None);
        assert_eq!(node.share, None);
        assert_eq!(node.memory, Some(MemoryUse { used_bytes: 2 << 30, total_bytes: 8 << 30 }));
        assert_eq!(node.temperature_celsius, Some(81.25));
        assert_eq!(node.frequency, Some(Frequency { current_khz: 1_500_000, max_khz: 2_400_000 }));
        assert!(node.throttle.throttled && node.throttle.any());
        assert_eq!(node.inbound_connections, Some(3));
    }

    #[test]
    fn a_disconnected_or_silent_agent_is_marked() {
        let mut gone = status("a", sample(1, 0, 0, vec![]));
        gone.connected = false;
        let mut stale = status("b", sample(1, 0, 0, vec![]));
        stale.stale = true;
        let snap = snapshot(&[gone, stale], &BTreeMap::new(), 0);
        assert_eq!(snap.nodes[0].agent, AgentState::Gone);
        assert_eq!(snap.nodes[1].agent, AgentState::Stale);
    }
}
