//! The recent samples of every node, with counter resets corrected, so that the increase of any
//! counter over any retained span is one subtraction.
//!
//! A counter that goes down was restarted from zero (agent restart, pod restart with a new network
//! namespace): the increase across the reset is the new value, as Prometheus' `increase()` assumes.
//! Gauges of pods (established connections) are kept as a running sum with a sample count, so the mean
//! over a span is also one subtraction.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use crate::Error;
use crate::input::{
    CpuFrequency, CpuJiffies, NicBytes, NodeMemory, NodeRole, NodeSample, PodSample, PressureTotals, ThrottleFlags,
    WorkloadRef,
};

/// What does not change from one sample of a pod to the next: shared between snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PodMeta {
    pub uid: Arc<str>,
    pub name: String,
    pub namespace: String,
    pub workload: Option<WorkloadRef>,
    pub ready: bool,
    pub host_network: bool,
}

/// One pod at one sample, counters reset-corrected.
#[derive(Debug, Clone)]
pub(crate) struct PodPoint {
    pub meta: Arc<PodMeta>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub cpu_us: u64,
    raw_rx_bytes: u64,
    raw_tx_bytes: u64,
    raw_cpu_us: u64,
    /// Connections accepted, reset-corrected (cumulative).
    pub passive_opens: u64,
    raw_passive_opens: u64,
    /// Distinct client addresses at this sample, when the agent knew them.
    pub inbound_peers: Option<u32>,
    /// Sum of `established_inbound` over every sample since the pod was first seen.
    pub connections_sum: u64,
    /// Samples since the pod was first seen (the divisor of `connections_sum`).
    pub samples: u64,
    pub memory_working_set_bytes: u64,
}

/// One node at one sample, counters reset-corrected.
#[derive(Debug, Clone)]
pub(crate) struct NodePoint {
    pub timestamp_ms: i64,
    pub clock_ticks_per_second: u32,
    pub cpu: CpuJiffies,
    raw_cpu: CpuJiffies,
    /// The node's interfaces summed, each reset-corrected on its own (no name).
    pub nic: NicBytes,
    /// Each interface's raw counters, sorted by name.
    raw_nics: Vec<NicBytes>,
    pub pressure: Option<PressureTotals>,
    raw_pressure: Option<PressureTotals>,
    pub memory: NodeMemory,
    pub temperature_millicelsius: Option<i64>,
    pub cpu_frequency: Option<CpuFrequency>,
    pub throttle: Option<ThrottleFlags>,
    /// Sorted by UID, so two points join in one pass.
    pub pods: Vec<PodPoint>,
}

impl NodePoint {
    #[cfg(test)]
    pub fn pod(&self, uid: &str) -> Option<&PodPoint> {
        self.pods.binary_search_by(|p| p.meta.uid.as_ref().cmp(uid)).ok().map(|i| &self.pods[i])
    }
}

/// Pairs every pod of `later` with the same pod in `earlier` (both sorted by UID), in one pass. The UID
/// is shared between the points of one pod, so a pointer comparison settles the common case.
pub(crate) fn join<'a>(
    earlier: &'a [PodPoint],
    later: &'a [PodPoint],
) -> impl Iterator<Item = (&'a PodPoint, Option<&'a PodPoint>)> + 'a {
    let mut j = 0;
    later.iter().map(move |pod| {
        let uid = &pod.meta.uid;
        while j < earlier.len()
            && !Arc::ptr_eq(&earlier[j].meta.uid, uid)
            && earlier[j].meta.uid.as_ref() < uid.as_ref()
        {
            j += 1;
        }
        let matched = earlier.get(j).filter(|e| Arc::ptr_eq(&e.meta.uid, uid) || e.meta.uid == *uid);
        (pod, matched)
    })
}

/// The retained points of one node, oldest first.
#[derive(Debug, Clone)]
pub(crate) struct NodeSeries {
    pub role: NodeRole,
    pub points: VecDeque<NodePoint>,
}

/// A node's view of one span: the point at its start (the latest at or before `end - span`, or the
/// oldest retained one) and every point after it up to the end.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpanView<'a> {
    pub series: &'a NodeSeries,
    pub start: usize,
    pub end: usize,
}

impl<'a> SpanView<'a> {
    pub fn first(&self) -> &'a NodePoint {
        &self.series.points[self.start]
    }

    pub fn last(&self) -> &'a NodePoint {
        &self.series.points[self.end]
    }

    /// The points sampled inside the span (after its start point, up to and including its end).
    pub fn inside(&self) -> impl Iterator<Item = &'a NodePoint> + 'a {
        self.series.points.range(self.start + 1..=self.end)
    }

    pub fn seconds(&self) -> f64 {
        (self.last().timestamp_ms - self.first().timestamp_ms) as f64 / 1000.0
    }
}

/// Every node's retained points.
#[derive(Debug, Clone, Default)]
pub(crate) struct History {
    pub nodes: BTreeMap<String, NodeSeries>,
}

fn advance(previous_corrected: u64, previous_raw: u64, raw: u64) -> u64 {
    let increase = if raw >= previous_raw { raw - previous_raw } else { raw };
    previous_corrected.saturating_add(increase)
}

/// The corrected sum over interfaces: each interface's increase since the previous point (its new
/// value after a reset), so one interface restarting does not read as the node's total going back.
/// An interface that is new at this point adds nothing yet (what it carried before is unknown); one
/// that is gone adds nothing. Both lists are sorted by name.
fn advance_nics(prev: &NicBytes, prev_raw: &[NicBytes], raw: &[NicBytes]) -> NicBytes {
    let mut sum = NicBytes { name: String::new(), rx_bytes: prev.rx_bytes, tx_bytes: prev.tx_bytes };
    for interface in raw {
        let Ok(i) = prev_raw.binary_search_by(|p| p.name.cmp(&interface.name)) else { continue };
        let before = &prev_raw[i];
        sum.rx_bytes = advance(sum.rx_bytes, before.rx_bytes, interface.rx_bytes);
        sum.tx_bytes = advance(sum.tx_bytes, before.tx_bytes, interface.tx_bytes);
    }
    sum
}

fn advance_cpu(prev: &CpuJiffies, prev_raw: &CpuJiffies, raw: &CpuJiffies) -> CpuJiffies {
    // A reset of /proc/stat means a reboot: every mode restarts together, so one test decides for all.
    let reset = raw.busy() + raw.idle + raw.iowait < prev_raw.busy() + prev_raw.idle + prev_raw.iowait;
    let step =
        |p: u64, pr: u64, r: u64| if reset { p.saturating_add(r) } else { p.saturating_add(r.saturating_sub(pr)) };
    CpuJiffies {
        user: step(prev.user, prev_raw.user, raw.user),
        nice: step(prev.nice, prev_raw.nice, raw.nice),
        system: step(prev.system, prev_raw.system, raw.system),
        idle: step(prev.idle, prev_raw.idle, raw.idle),
        iowait: step(prev.iowait, prev_raw.iowait, raw.iowait),
        irq: step(prev.irq, prev_raw.irq, raw.irq),
        softirq: step(prev.softirq, prev_raw.softirq, raw.softirq),
        steal: step(prev.steal, prev_raw.steal, raw.steal),
    }
}

fn advance_pressure(prev: &PressureTotals, prev_raw: &PressureTotals, raw: &PressureTotals) -> PressureTotals {
    PressureTotals {
        cpu_some_us: advance(prev.cpu_some_us, prev_raw.cpu_some_us, raw.cpu_some_us),
        memory_some_us: advance(prev.memory_some_us, prev_raw.memory_some_us, raw.memory_some_us),
        memory_full_us: advance(prev.memory_full_us, prev_raw.memory_full_us, raw.memory_full_us),
        io_some_us: advance(prev.io_some_us, prev_raw.io_some_us, raw.io_some_us),
    }
}

fn pod_point(sample: &PodSample, previous: Option<&PodPoint>) -> PodPoint {
    let meta_matches = |meta: &PodMeta| {
        meta.name == sample.name
            && meta.namespace == sample.namespace
            && meta.workload == sample.workload
            && meta.ready == sample.ready
            && meta.host_network == sample.host_network
    };
    match previous {
        Some(prev) => PodPoint {
            meta: if meta_matches(&prev.meta) {
                Arc::clone(&prev.meta)
            } else {
                Arc::new(PodMeta {
                    uid: Arc::clone(&prev.meta.uid),
                    name: sample.name.clone(),
                    namespace: sample.namespace.clone(),
                    workload: sample.workload.clone(),
                    ready: sample.ready,
                    host_network: sample.host_network,
                })
            },
            rx_bytes: advance(prev.rx_bytes, prev.raw_rx_bytes, sample.rx_bytes),
            tx_bytes: advance(prev.tx_bytes, prev.raw_tx_bytes, sample.tx_bytes),
            cpu_us: advance(prev.cpu_us, prev.raw_cpu_us, sample.cpu_usage_us),
            raw_rx_bytes: sample.rx_bytes,
            raw_tx_bytes: sample.tx_bytes,
            raw_cpu_us: sample.cpu_usage_us,
            passive_opens: advance(prev.passive_opens, prev.raw_passive_opens, sample.passive_opens),
            raw_passive_opens: sample.passive_opens,
            inbound_peers: sample.inbound_peers,
            connections_sum: prev.connections_sum + u64::from(sample.established_inbound),
            samples: prev.samples + 1,
            memory_working_set_bytes: sample.memory_working_set_bytes,
        },
        // A pod seen for the first time starts from zero: what it did before is unknown.
        None => PodPoint {
            meta: Arc::new(PodMeta {
                uid: Arc::from(sample.uid.as_str()),
                name: sample.name.clone(),
                namespace: sample.namespace.clone(),
                workload: sample.workload.clone(),
                ready: sample.ready,
                host_network: sample.host_network,
            }),
            rx_bytes: 0,
            tx_bytes: 0,
            cpu_us: 0,
            raw_rx_bytes: sample.rx_bytes,
            raw_tx_bytes: sample.tx_bytes,
            raw_cpu_us: sample.cpu_usage_us,
            passive_opens: 0,
            raw_passive_opens: sample.passive_opens,
            inbound_peers: sample.inbound_peers,
            connections_sum: u64::from(sample.established_inbound),
            samples: 1,
            memory_working_set_bytes: sample.memory_working_set_bytes,
        },
    }
}

/// `incoming` is the sample's pods sorted by UID.
fn node_point(sample: &NodeSample, incoming: Vec<&PodSample>, previous: Option<&NodePoint>) -> NodePoint {
    let earlier: &[PodPoint] = previous.map_or(&[], |p| p.pods.as_slice());
    let mut j = 0;
    let pods = incoming
        .into_iter()
        .map(|pod| {
            while j < earlier.len() && earlier[j].meta.uid.as_ref() < pod.uid.as_str() {
                j += 1;
            }
            let prev = earlier.get(j).filter(|e| e.meta.uid.as_ref() == pod.uid.as_str());
            pod_point(pod, prev)
        })
        .collect();
    let mut raw_nics = sample.nics.clone();
    raw_nics.sort_by(|a, b| a.name.cmp(&b.name));
    let (cpu, nic, pressure) = match previous {
        Some(prev) => (
            advance_cpu(&prev.cpu, &prev.raw_cpu, &sample.cpu),
            advance_nics(&prev.nic, &prev.raw_nics, &raw_nics),
            match (prev.pressure, prev.raw_pressure, sample.pressure) {
                (Some(p), Some(pr), Some(r)) => Some(advance_pressure(&p, &pr, &r)),
                (_, _, Some(_)) => Some(PressureTotals::default()),
                _ => None,
            },
        ),
        None => (CpuJiffies::default(), NicBytes::default(), sample.pressure.map(|_| PressureTotals::default())),
    };
    NodePoint {
        timestamp_ms: sample.timestamp_ms,
        clock_ticks_per_second: sample.clock_ticks_per_second.max(1),
        cpu,
        raw_cpu: sample.cpu,
        nic,
        raw_nics,
        pressure,
        raw_pressure: sample.pressure,
        memory: sample.memory,
        temperature_millicelsius: sample.temperature_millicelsius,
        cpu_frequency: sample.cpu_frequency,
        throttle: sample.throttle,
        pods,
    }
}

impl History {
    /// Adds the nodes of one tick, forgets nodes that are absent, and drops points older than needed
    /// for `retain_ms` (the point at or before the retention start is kept: it starts the longest span).
    ///
    /// Checks the whole tick first (a node or a pod UID listed twice is an error) and changes nothing
    /// when it is malformed.
    pub fn ingest(&mut self, nodes: &[NodeSample], retain_ms: i64) -> Result<(), Error> {
        let mut names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
        names.sort_unstable();
        if let Some(pair) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::DuplicateNode(pair[0].to_string()));
        }
        let mut sorted_pods: Vec<Vec<&PodSample>> = Vec::with_capacity(nodes.len());
        for node in nodes {
            let mut pods: Vec<&PodSample> = node.pods.iter().collect();
            pods.sort_unstable_by(|a, b| a.uid.cmp(&b.uid));
            if let Some(pair) = pods.windows(2).find(|w| w[0].uid == w[1].uid) {
                return Err(Error::DuplicatePod { node: node.name.clone(), uid: pair[0].uid.clone() });
            }
            sorted_pods.push(pods);
        }
        self.nodes.retain(|name, _| names.binary_search(&name.as_str()).is_ok());
        for (sample, pods) in nodes.iter().zip(sorted_pods) {
            if !self.nodes.contains_key(&sample.name) {
                self.nodes.insert(sample.name.clone(), NodeSeries { role: sample.role, points: VecDeque::new() });
            }
            let Some(series) = self.nodes.get_mut(&sample.name) else { continue };
            series.role = sample.role;
            let previous = series.points.back();
            if previous.is_some_and(|p| p.timestamp_ms >= sample.timestamp_ms) {
                continue;
            }
            let point = node_point(sample, pods, previous);
            series.points.push_back(point);
            let newest = sample.timestamp_ms;
            while series.points.len() >= 2 && series.points[1].timestamp_ms <= newest - retain_ms {
                series.points.pop_front();
            }
        }
        Ok(())
    }

    /// The span of `span_ms` ending at the node's newest point at or before `end_ms`; `None` without
    /// two points.
    pub fn span(&self, node: &str, span_ms: i64, end_ms: i64) -> Option<SpanView<'_>> {
        let series = self.nodes.get(node)?;
        let points = &series.points;
        let after_end = points.partition_point(|p| p.timestamp_ms <= end_ms);
        let end = after_end.checked_sub(1)?;
        let start_limit = points[end].timestamp_ms - span_ms;
        let start = points.partition_point(|p| p.timestamp_ms <= start_limit).saturating_sub(1);
        (start < end).then_some(SpanView { series, start, end })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(t: i64, rx: u64, pod_rx: u64) -> NodeSample {
        NodeSample {
            name: "n".into(),
            role: NodeRole::Worker,
            timestamp_ms: t,
            clock_ticks_per_second: 100,
            cpu: CpuJiffies::default(),
            nics: vec![NicBytes::new("eth0", rx, 0)],
            memory: NodeMemory::default(),
            pressure: None,
            temperature_millicelsius: None,
            cpu_frequency: None,
            throttle: None,
            pods: vec![PodSample {
                uid: "u".into(),
                name: "p".into(),
                namespace: "ns".into(),
                workload: None,
                ready: true,
                host_network: false,
                rx_bytes: pod_rx,
                tx_bytes: 0,
                established_inbound: 2,
                passive_opens: 0,
                inbound_peers: None,
                cpu_usage_us: 0,
                memory_working_set_bytes: 0,
            }],
        }
    }

    #[test]
    fn a_counter_reset_counts_the_new_value() {
        let mut history = History::default();
        for (t, rx, pod_rx) in [(0, 1000, 500), (250, 1100, 600), (500, 30, 20), (750, 80, 70)] {
            history.ingest(&[node(t, rx, pod_rx)], 10_000).expect("well-formed");
        }
        let span = history.span("n", 10_000, 750).expect("two points");
        assert_eq!(span.last().nic.rx_bytes - span.first().nic.rx_bytes, 100 + 30 + 50);
        let pod = span.last().pod("u").expect("the pod");
        assert_eq!(pod.rx_bytes, 100 + 20 + 50);
        assert_eq!((pod.connections_sum, pod.samples), (8, 4));
    }

    #[test]
    fn one_interface_resetting_costs_only_its_own_bytes() {
        let mut history = History::default();
        let with = |t: i64, eth0: u64, eth1: u64| {
            let mut sample = node(t, 0, 0);
            sample.nics = vec![NicBytes::new("eth1", eth1, 0), NicBytes::new("eth0", eth0, 0)];
            sample
        };
        // eth1 restarts from zero at 500 ms (a driver reload) while eth0 keeps counting.
        for (t, eth0, eth1) in [(0, 50_000, 9_000), (250, 51_000, 9_500), (500, 52_000, 100), (750, 53_000, 300)] {
            history.ingest(&[with(t, eth0, eth1)], 10_000).expect("well-formed");
        }
        let span = history.span("n", 10_000, 750).expect("points");
        assert_eq!(span.last().nic.rx_bytes - span.first().nic.rx_bytes, 3_000 + 500 + 100 + 200);
    }

    #[test]
    fn span_starts_at_the_latest_point_before_its_start() {
        let mut history = History::default();
        for t in (0..=4000).step_by(250) {
            history.ingest(&[node(t, t as u64, 0)], 2_000).expect("well-formed");
        }
        let span = history.span("n", 2_000, 4_000).expect("points");
        assert_eq!((span.first().timestamp_ms, span.last().timestamp_ms), (2_000, 4_000));
        assert_eq!(span.inside().count(), 8);
        // Retention keeps exactly what the longest span needs.
        assert_eq!(history.nodes["n"].points.front().map(|p| p.timestamp_ms), Some(2_000));
    }

    #[test]
    fn duplicates_are_rejected_without_changing_anything() {
        let mut history = History::default();
        history.ingest(&[node(0, 0, 0)], 10_000).expect("well-formed");
        let mut twice = node(250, 5, 5);
        twice.pods.push(twice.pods[0].clone());
        assert!(matches!(history.ingest(&[twice], 10_000), Err(Error::DuplicatePod { .. })));
        assert!(matches!(history.ingest(&[node(250, 5, 5), node(250, 5, 5)], 10_000), Err(Error::DuplicateNode(_))));
        assert_eq!(history.nodes["n"].points.len(), 1);
    }

    #[test]
    fn stale_samples_are_ignored_and_absent_nodes_forgotten() {
        let mut history = History::default();
        history.ingest(&[node(0, 0, 0)], 10_000).expect("well-formed");
        history.ingest(&[node(0, 5, 5)], 10_000).expect("well-formed");
        assert_eq!(history.nodes["n"].points.len(), 1);
        history.ingest(&[], 10_000).expect("well-formed");
        assert!(history.nodes.is_empty());
    }
}
