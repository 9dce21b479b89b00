//! Wire samples as diagnosis input: each connected node's latest sample ([`latest_samples`]),
//! placed on the collector's clock ([`analysis_time`]) and converted to a [`NodeSample`]
//! ([`node_sample`]: the node's own wire and CPU sensors as `bakery_signals` defines them, pods
//! named from the cluster view). Pure but for reading the registry, and tested with data.

use std::collections::HashMap;

use bakery_diagnosis::{
    CpuFrequency, CpuJiffies, NicBytes, NodeMemory, NodeRole, NodeSample, PodSample, PressureTotals, ThrottleFlags,
};
use bakery_proto::v1::Sample;
use prost::Message;

use crate::kube::ClusterView;
use crate::state::Shared;
use crate::store::{PodRecord, StoredBatch};

/// A sample's own timestamp is used by the analysis only within this much of its arrival.
pub const SKEW_BUDGET_MS: i64 = 5_000;

/// When the analysis places a sample, and whether that is not its own timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnalysisTime {
    pub at_ms: i64,
    /// Re-stamped with its node's measured skew: its own clock is off by more than the budget.
    pub restamped: bool,
}

/// The time the analysis gives a sample stamped `sample_ms` by its node that arrived at
/// `received_ms` (collector time), the node's clock being measured `skew_ms` behind the
/// collector's (receive minus sample time, the minimum over the last minutes): its own time
/// when that is within [`SKEW_BUDGET_MS`] of its arrival; its own time corrected by the skew
/// when that is; else `None`: the sample is not live (replayed from a spool after an outage, or
/// its clock just jumped) and the analysis does not take it.
pub fn analysis_time(received_ms: i64, sample_ms: i64, skew_ms: Option<i64>) -> Option<AnalysisTime> {
    let within = |at_ms: i64| received_ms.saturating_sub(at_ms).saturating_abs() <= SKEW_BUDGET_MS;
    if within(sample_ms) {
        return Some(AnalysisTime { at_ms: sample_ms, restamped: false });
    }
    let corrected = sample_ms.saturating_add(skew_ms?);
    within(corrected).then_some(AnalysisTime { at_ms: corrected, restamped: true })
}

/// A connected node's latest sample as it arrived.
pub(super) struct Latest {
    pub(super) name: String,
    pub(super) seq: u64,
    pub(super) received_ms: i64,
    pub(super) skew_ms: Option<i64>,
    pub(super) sample: Sample,
    pub(super) pods: HashMap<u32, PodRecord>,
}

/// Every connected node's latest sample.
pub(super) fn latest_samples(shared: &Shared) -> Vec<Latest> {
    let mut nodes = Vec::new();
    for node in shared.registry.all() {
        let (seq, received_ms, skew_ms, bytes, pods) = {
            let live = node.live();
            if live.connected.is_none() {
                continue;
            }
            let Some(latest) = live.latest() else { continue };
            (latest.seq, latest.received_ms, live.clock_skew_ms(), latest.bytes.clone(), live.pods.clone())
        };
        let Some(sample) = StoredBatch::decode(bytes).ok().and_then(|mut b| b.samples.pop()) else { continue };
        nodes.push(Latest { name: node.name.clone(), seq, received_ms, skew_ms, sample, pods });
    }
    nodes
}

/// One agent sample as diagnosis input: node counters, and each pod with the identity the
/// collector numbered it by and what the cluster says about it (without a cluster: named by
/// UID, ready, no workload).
pub fn node_sample(
    name: &str,
    role: NodeRole,
    sample: &Sample,
    pods: &HashMap<u32, PodRecord>,
    view: &ClusterView,
) -> NodeSample {
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
    let nics = bakery_signals::nic::node_wire(&sample.interfaces)
        .into_iter()
        .filter_map(|i| i.counters.as_ref().map(|c| NicBytes::new(i.name.clone(), c.rx_bytes, c.tx_bytes)))
        .collect();
    let memory = sample
        .memory
        .as_ref()
        .map(|m| NodeMemory { total_bytes: m.total_bytes, available_bytes: m.available_bytes })
        .unwrap_or_default();
    let pressure = (!sample.pressure.is_empty()).then(|| {
        let total = |resource: &str, kind: &str| {
            sample.pressure.iter().find(|p| p.resource == resource && p.kind == kind).map_or(0, |p| p.total_us)
        };
        PressureTotals {
            cpu_some_us: total("cpu", "some"),
            memory_some_us: total("memory", "some"),
            memory_full_us: total("memory", "full"),
            io_some_us: total("io", "some"),
        }
    });
    let temperature_millicelsius = bakery_signals::thermal::hottest_cpu(&sample.temperatures);
    let cpu_frequency = (!sample.cpu_frequencies.is_empty()).then(|| CpuFrequency {
        current_khz: sample.cpu_frequencies.iter().map(|f| f.current_khz).min().unwrap_or_default(),
        max_khz: sample.cpu_frequencies.iter().map(|f| f.max_khz).max().unwrap_or_default(),
    });
    let throttle = sample.throttle.as_ref().and_then(|t| t.now.as_ref()).map(|f| ThrottleFlags {
        under_voltage: f.under_voltage,
        arm_frequency_capped: f.arm_frequency_capped,
        throttled: f.throttled,
        soft_temperature_limit: f.soft_temperature_limit,
    });
    let pods = pod_samples(sample, pods, view);
    NodeSample {
        name: name.to_string(),
        role,
        timestamp_ms: sample.timestamp_ms,
        clock_ticks_per_second: 100,
        cpu,
        nics,
        memory,
        pressure,
        temperature_millicelsius,
        cpu_frequency,
        throttle,
        pods,
    }
}

/// The sample's pods that have an identity, each once (by UID), named and placed in their
/// workload by the cluster view when it knows them.
fn pod_samples(sample: &Sample, pods: &HashMap<u32, PodRecord>, view: &ClusterView) -> Vec<PodSample> {
    let mut seen = std::collections::HashSet::new();
    sample
        .pods
        .iter()
        .filter_map(|pod| {
            let record = pods.get(&pod.pod_ref)?;
            if !seen.insert(record.uid.clone()) {
                return None;
            }
            let meta = view.pods_by_uid.get(&record.uid);
            let network = pod.network.unwrap_or_default();
            Some(PodSample {
                uid: record.uid.clone(),
                name: meta.map_or_else(|| record.uid.clone(), |m| m.name.clone()),
                namespace: meta.map(|m| m.namespace.clone()).unwrap_or_default(),
                workload: meta.and_then(|m| m.workload.clone()),
                ready: meta.is_none_or(|m| m.ready),
                host_network: record.host_network,
                rx_bytes: network.rx_bytes,
                tx_bytes: network.tx_bytes,
                established_inbound: pod.tcp.as_ref().map_or(0, |t| t.established_inbound),
                passive_opens: pod.tcp.as_ref().map_or(0, |t| t.passive_opens_total),
                // Known once the agent has read the pod's socket tables.
                inbound_peers: pod.tcp.as_ref().filter(|t| t.detail_age_ms.is_some()).map(|t| t.inbound_peers),
                cpu_usage_us: pod.cpu_usage_us,
                memory_working_set_bytes: pod.memory_working_set_bytes,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::PodMeta;
    use bakery_diagnosis::WorkloadRef;
    use bakery_proto::v1::{CpuTimes, NetCounters, NetInterface, PodSample as WirePod, TcpConnections, Temperature};

    fn counters(rx: u64, tx: u64) -> Option<NetCounters> {
        Some(NetCounters { rx_bytes: rx, tx_bytes: tx, ..NetCounters::default() })
    }

    fn sample() -> Sample {
        Sample {
            timestamp_ms: 1_000,
            cpu_total: Some(CpuTimes { cpu: -1, user: 10, softirq: 3, idle: 90, ..CpuTimes::default() }),
            interfaces: vec![
                NetInterface { name: "eth0".into(), counters: counters(1000, 500), ..NetInterface::default() },
                NetInterface { name: "lo".into(), counters: counters(7, 7), ..NetInterface::default() },
                NetInterface { name: "veth12ab".into(), counters: counters(300, 300), ..NetInterface::default() },
                NetInterface { name: "cni0".into(), counters: counters(300, 300), ..NetInterface::default() },
            ],
            temperatures: vec![
                Temperature { sensor: "thermal_zone0/cpu-thermal".into(), millidegrees_celsius: 61_000 },
                Temperature { sensor: "hwmon1/coretemp/temp2".into(), millidegrees_celsius: 82_500 },
                Temperature { sensor: "hwmon3/nvme/temp1".into(), millidegrees_celsius: 84_000 },
            ],
            pods: vec![
                WirePod {
                    pod_ref: 1,
                    network: counters(300, 300),
                    tcp: Some(TcpConnections { established_inbound: 4, ..TcpConnections::default() }),
                    cpu_usage_us: 5,
                    ..WirePod::default()
                },
                WirePod { pod_ref: 9, ..WirePod::default() },
            ],
            ..Sample::default()
        }
    }

    fn records() -> HashMap<u32, PodRecord> {
        HashMap::from([(1, PodRecord { uid: "uid-1".into(), ..PodRecord::default() })])
    }

    #[test]
    fn a_samples_own_time_counts_only_within_the_skew_budget_of_its_arrival() {
        let at = |at_ms, restamped| Some(AnalysisTime { at_ms, restamped });
        let now = 1_000_000_000;
        let day = 86_400_000;
        // (received, sample time, measured skew, analysis time)
        let table = [
            // a good clock, even 5 s off either way: its own time
            (now, now - 40, Some(40), at(now - 40, false)),
            (now, now + SKEW_BUDGET_MS, Some(-5_000), at(now + SKEW_BUDGET_MS, false)),
            (now, now - SKEW_BUDGET_MS, None, at(now - SKEW_BUDGET_MS, false)),
            // a clock a day ahead: re-stamped by its measured skew, near its arrival
            (now, now + day, Some(-day + 30), at(now + 30, true)),
            // ... and before any skew is measured, not taken
            (now, now + day, None, None),
            // a year behind, consistently: re-stamped
            (now, now - 365 * day, Some(365 * day - 20), at(now - 20, true)),
            // a batch replayed from a spool after a 10 minute outage, good clock: not live
            (now, now - 600_000, Some(15), None),
            // a clock that jumped a day ahead while the measured skew is still ~0: not taken
            (now, now + day, Some(10), None),
            // nothing overflows
            (i64::MAX, i64::MIN, Some(i64::MAX), None),
        ];
        for (received, sample, skew, expected) in table {
            assert_eq!(analysis_time(received, sample, skew), expected, "{received} {sample} {skew:?}");
        }
    }

    #[test]
    fn only_physical_interfaces_count_as_nic_bytes() {
        let node = node_sample("pi-1", NodeRole::Worker, &sample(), &records(), &ClusterView::default());
        assert_eq!(node.nics, [NicBytes::new("eth0", 1000, 500)]);
        assert_eq!(node.cpu.softirq, 3);
        assert_eq!(node.temperature_millicelsius, Some(82_500), "the hottest CPU sensor, not the drive");
    }

    #[test]
    fn without_a_cluster_pods_are_named_by_uid() {
        let node = node_sample("pi-1", NodeRole::Unknown, &sample(), &records(), &ClusterView::default());
        assert_eq!(node.pods.len(), 1, "a pod_ref without identity is skipped");
        let pod = &node.pods[0];
        assert_eq!((pod.name.as_str(), pod.workload.as_ref(), pod.ready), ("uid-1", None, true));
        assert_eq!((pod.rx_bytes, pod.established_inbound), (300, 4));
    }

    #[test]
    fn with_a_cluster_pods_carry_name_workload_and_readiness() {
        let web = WorkloadRef::new("Deployment", "shop", "web");
        let mut view = ClusterView::default();
        view.pods_by_uid.insert(
            "uid-1".into(),
            PodMeta {
                uid: "uid-1".into(),
                namespace: "shop".into(),
                name: "web-abc".into(),
                node_name: "pi-1".into(),
                ready: false,
                host_network: false,
                labels: Default::default(),
                workload: Some(web.clone()),
            },
        );
        let node = node_sample("pi-1", NodeRole::Worker, &sample(), &records(), &view);
        let pod = &node.pods[0];
        assert_eq!((pod.name.as_str(), pod.namespace.as_str(), pod.ready), ("web-abc", "shop", false));
        assert_eq!(pod.workload, Some(web));
    }
}
