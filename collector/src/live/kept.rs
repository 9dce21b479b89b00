//! The ticks the analysis keeps (30 s before a window, and the window's span) in a compact
//! form: each pod's figures, with its identity (UID, name, namespace, workload) shared between
//! ticks, expanded back into [`Tick`]s only when read.
//!
//! A full tick of 100 nodes with 30 pods each holds 3,000 `PodSample`s of about 200 bytes plus
//! two or more strings each; kept for 30 s that was the largest part of the collector's memory.
//! Here a pod costs 64 bytes per tick and its strings once while any kept tick names it. The
//! newest tick stays whole: every step reads it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bakery_diagnosis::{PodSample, Tick, WorkloadRef};

/// What does not change between a pod's samples; shared by every kept tick that saw it so.
#[derive(Debug, PartialEq)]
struct PodLabel {
    uid: String,
    name: String,
    namespace: String,
    workload: Option<WorkloadRef>,
    host_network: bool,
}

/// A pod's figures in one tick.
#[derive(Debug)]
struct KeptPod {
    label: Arc<PodLabel>,
    ready: bool,
    established_inbound: u32,
    inbound_peers: Option<u32>,
    rx_bytes: u64,
    tx_bytes: u64,
    passive_opens: u64,
    cpu_usage_us: u64,
    memory_working_set_bytes: u64,
}

/// A tick without its pods (its nodes' `pods` empty), and each node's pods compactly.
#[derive(Debug)]
struct KeptTick {
    tick: Tick,
    pods: Vec<Vec<KeptPod>>,
}

/// The kept ticks, oldest first; the newest whole.
#[derive(Debug, Default)]
pub(super) struct KeptTicks {
    older: VecDeque<KeptTick>,
    newest: Option<Tick>,
    /// Each pod's label as last seen, by UID; pruned of labels no kept tick holds.
    labels: HashMap<String, Arc<PodLabel>>,
}

impl KeptTicks {
    pub(super) fn push(&mut self, tick: Tick) {
        if let Some(previous) = self.newest.replace(tick) {
            let kept = self.compact(previous);
            self.older.push_back(kept);
        }
    }

    pub(super) fn newest(&self) -> Option<&Tick> {
        self.newest.as_ref()
    }

    pub(super) fn newest_ms(&self) -> Option<i64> {
        self.newest.as_ref().map(|t| t.timestamp_ms)
    }

    /// Drops the ticks before `keep_from_ms` (never the newest).
    pub(super) fn drop_before(&mut self, keep_from_ms: i64) {
        let before = self.older.len();
        while self.older.front().is_some_and(|t| t.tick.timestamp_ms < keep_from_ms) {
            self.older.pop_front();
        }
        if self.older.len() != before {
            self.prune_labels();
        }
    }

    /// Node and pod samples held, as the memory budget counts them.
    pub(super) fn pod_samples(&self) -> usize {
        let older: usize =
            self.older.iter().map(|t| t.tick.nodes.len() + t.pods.iter().map(Vec::len).sum::<usize>()).sum();
        older + self.newest.as_ref().map_or(0, |t| t.nodes.len() + t.nodes.iter().map(|n| n.pods.len()).sum::<usize>())
    }

    /// Drops every second tick, keeping the newest.
    pub(super) fn thin(&mut self) {
        // The newest counts as the last of the sequence: the older tick right before it goes.
        let count = self.older.len() + usize::from(self.newest.is_some());
        let last = count.saturating_sub(1);
        let mut index = 0;
        self.older.retain(|_| {
            let keep = index % 2 == last % 2;
            index += 1;
            keep
        });
        self.prune_labels();
    }

    /// The newest tick at or before `at_ms`, whole.
    pub(super) fn before(&self, at_ms: i64) -> Option<Tick> {
        if let Some(newest) = self.newest.as_ref().filter(|t| t.timestamp_ms <= at_ms) {
            return Some(newest.clone());
        }
        self.older.iter().rev().find(|t| t.tick.timestamp_ms <= at_ms).map(expand)
    }

    /// Every kept tick, whole, oldest first.
    pub(super) fn all(&self) -> Vec<Tick> {
        self.older.iter().map(expand).chain(self.newest.iter().cloned()).collect()
    }

    fn compact(&mut self, mut tick: Tick) -> KeptTick {
        let mut pods = Vec::with_capacity(tick.nodes.len());
        for node in &mut tick.nodes {
            // Into a new vector of its own size: `collect` would reuse the larger `PodSample`
            // allocation in place and keep all of it.
            let samples = std::mem::take(&mut node.pods);
            let mut kept = Vec::with_capacity(samples.len());
            kept.extend(samples.into_iter().map(|pod| self.kept_pod(pod)));
            pods.push(kept);
        }
        KeptTick { tick, pods }
    }

    fn kept_pod(&mut self, pod: PodSample) -> KeptPod {
        let label = PodLabel {
            uid: pod.uid,
            name: pod.name,
            namespace: pod.namespace,
            workload: pod.workload,
            host_network: pod.host_network,
        };
        let label = match self.labels.get(&label.uid) {
            Some(known) if **known == label => known.clone(),
            _ => {
                let label = Arc::new(label);
                self.labels.insert(label.uid.clone(), label.clone());
                label
            }
        };
        KeptPod {
            label,
            ready: pod.ready,
            established_inbound: pod.established_inbound,
            inbound_peers: pod.inbound_peers,
            rx_bytes: pod.rx_bytes,
            tx_bytes: pod.tx_bytes,
            passive_opens: pod.passive_opens,
            cpu_usage_us: pod.cpu_usage_us,
            memory_working_set_bytes: pod.memory_working_set_bytes,
        }
    }

    /// Forgets the labels only this map holds.
    fn prune_labels(&mut self) {
        self.labels.retain(|_, label| Arc::strong_count(label) > 1);
    }
}

fn expand(kept: &KeptTick) -> Tick {
    let mut tick = kept.tick.clone();
    for (node, pods) in tick.nodes.iter_mut().zip(&kept.pods) {
        node.pods = pods.iter().map(pod_sample).collect();
    }
    tick
}

fn pod_sample(pod: &KeptPod) -> PodSample {
    let label = &*pod.label;
    PodSample {
        uid: label.uid.clone(),
        name: label.name.clone(),
        namespace: label.namespace.clone(),
        workload: label.workload.clone(),
        ready: pod.ready,
        host_network: label.host_network,
        rx_bytes: pod.rx_bytes,
        tx_bytes: pod.tx_bytes,
        established_inbound: pod.established_inbound,
        passive_opens: pod.passive_opens,
        inbound_peers: pod.inbound_peers,
        cpu_usage_us: pod.cpu_usage_us,
        memory_working_set_bytes: pod.memory_working_set_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bakery_diagnosis::{CpuJiffies, NodeMemory, NodeRole, NodeSample};

    /// A node's sample without its pods.
    fn bare(node: &NodeSample) -> NodeSample {
        NodeSample { pods: Vec::new(), ..node.clone() }
    }

    fn pod(uid: &str, rx: u64, workload: Option<WorkloadRef>) -> PodSample {
        PodSample {
            uid: uid.into(),
            name: format!("{uid}-name"),
            namespace: "ns".into(),
            workload,
            ready: rx.is_multiple_of(2),
            host_network: false,
            rx_bytes: rx,
            tx_bytes: rx * 2,
            established_inbound: 3,
            passive_opens: rx + 7,
            inbound_peers: Some(2),
            cpu_usage_us: rx * 5,
            memory_working_set_bytes: 1 << 20,
        }
    }

    fn tick(at_ms: i64, workload: &str) -> Tick {
        let node = |name: &str, pods: Vec<PodSample>| NodeSample {
            name: name.into(),
            role: NodeRole::Worker,
            timestamp_ms: at_ms,
            clock_ticks_per_second: 100,
            cpu: CpuJiffies::default(),
            nics: Vec::new(),
            memory: NodeMemory::default(),
            pressure: None,
            temperature_millicelsius: None,
            cpu_frequency: None,
            throttle: None,
            pods,
        };
        let web = Some(WorkloadRef::new("Deployment", "ns", workload));
        let rx = at_ms as u64;
        Tick {
            timestamp_ms: at_ms,
            nodes: vec![node("a", vec![pod("p1", rx, web.clone()), pod("p2", rx + 1, None)]), node("b", vec![])],
            workload: None,
            window_open: false,
        }
    }

    #[test]
    fn every_tick_reads_back_as_it_was_pushed() {
        let mut kept = KeptTicks::default();
        // the workload of p1 changes at 3000: its label changes, older ticks keep the old one
        let pushed: Vec<Tick> = (0..6).map(|i| tick(i * 1000, if i < 3 { "web" } else { "api" })).collect();
        for tick in &pushed {
            kept.push(tick.clone());
        }
        assert_eq!(kept.all(), pushed);
        assert_eq!(kept.newest(), pushed.last());
        assert_eq!(kept.before(2500).as_ref(), Some(&pushed[2]));
        assert_eq!(kept.before(9000).as_ref(), Some(&pushed[5]));
        assert_eq!(kept.before(-1), None);
        assert_eq!(kept.pod_samples(), 6 * 4);
        assert_eq!(bare(&kept.all()[0].nodes[0]), bare(&pushed[0].nodes[0]));
        kept.drop_before(2000);
        assert_eq!(kept.all(), pushed[2..]);
        kept.thin();
        assert_eq!(kept.all().iter().map(|t| t.timestamp_ms).collect::<Vec<_>>(), [3000, 5000]);
        assert_eq!(kept.labels.len(), 2, "only the labels kept ticks hold: p1 as api, p2");
        kept.drop_before(i64::MAX);
        assert_eq!(kept.all(), pushed[5..], "the newest stays");
        assert_eq!(kept.newest_ms(), Some(5000));
    }
}
