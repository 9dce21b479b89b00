//! The pod scan across samples: the pods' processes as of the last `/proc` walk, and when to walk again.
//!
//! [`PodTracker`] keeps what does not change between samples: which pid
//! belongs to which pod ([`crate::pods::discovery`] reads each process's
//! cgroup file once per life), the files read every sample and each
//! namespace's last TCP tally ([`crate::pods::measure`]). The walk of `/proc`
//! for new and exited processes happens every
//! [`ScanPolicy::process_rescan`], when a pod's processes are all found gone,
//! and when a node interface came or went; every sample in between measures
//! the pods of the last walk.

use std::time::{Duration, Instant};

use crate::iface_kind::LinkKinds;
use crate::net::Interface;
use crate::pods::discovery::PidCache;
use crate::pods::measure::{Measure, NamespaceKey, Network};
use crate::pods::{PodIdentity, PodsReading, ScanPolicy};
use crate::reuse::{PathBuffer, Refill, set_str};
use crate::roots::HostRoots;
use crate::signal::SignalError;

/// Finds the pods on the node and measures them, keeping between samples
/// what need not be read again (see the module docs).
#[derive(Debug)]
pub struct PodTracker {
    pids: PidCache,
    measure: Measure,
    process_rescan: Duration,
    /// The namespace each pod of this sample was read in, in pod order.
    pod_namespaces: Vec<Option<NamespaceKey>>,
    /// `<sys-root>/fs/cgroup`, built in a buffer kept between samples.
    cgroup_root: PathBuffer,
}

impl Default for PodTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl PodTracker {
    /// A tracker that reads everything afresh on every scan
    /// ([`ScanPolicy::EXACT`]): for one-off reads.
    pub fn new() -> Self {
        Self::with_policy(ScanPolicy::EXACT)
    }

    pub fn with_policy(policy: ScanPolicy) -> Self {
        Self {
            pids: PidCache::default(),
            measure: Measure::new(&policy),
            process_rescan: policy.process_rescan,
            pod_namespaces: Vec::new(),
            cgroup_root: PathBuffer::default(),
        }
    }

    /// Scans `<proc-root>` for pod processes and measures each pod.
    ///
    /// Fails only when `<proc-root>` cannot be listed. Processes exiting
    /// meanwhile are skipped quietly; malformed files are listed in
    /// [`PodsReading::errors`] and the other pods are still reported.
    pub fn read(&mut self, roots: &HostRoots) -> Result<PodsReading, SignalError> {
        self.read_at(roots, Instant::now())
    }

    /// [`Self::read`], with the time the tallies' ages are counted from.
    pub fn read_at(&mut self, roots: &HostRoots, now: Instant) -> Result<PodsReading, SignalError> {
        self.read_with_node(roots, None, now)
    }

    /// [`Self::read_at`], given this sample's node interfaces (from the
    /// node's `net/dev`): a pod joined to the node by veth pairs then has
    /// its traffic from the node's ends of them (see [`veth`]) instead of
    /// from a read of its own `net/dev`.
    pub fn read_with_node(
        &mut self,
        roots: &HostRoots,
        node_interfaces: Option<&[Interface]>,
        now: Instant,
    ) -> Result<PodsReading, SignalError> {
        let mut reading = PodsReading::default();
        self.read_into(roots, node_interfaces, now, &mut reading)?;
        Ok(reading)
    }

    /// [`Self::read_with_node`] into `reading`: its pods are overwritten in
    /// place, so that the same pods as last sample cost no allocation (their
    /// identities' strings are kept). On an error its pods are last
    /// sample's.
    pub fn read_into(
        &mut self,
        roots: &HostRoots,
        node_interfaces: Option<&[Interface]>,
        now: Instant,
        reading: &mut PodsReading,
    ) -> Result<(), SignalError> {
        reading.errors.clear();
        self.walk_if_due(roots, node_interfaces, now, &mut reading.errors)?;
        self.measure.begin_sample();
        self.measure_pods(roots, node_interfaces.unwrap_or_default(), now, reading);
        // The socket tables are read once every namespace of the sample has
        // shown its counters, so that the budget goes where they moved.
        reading.tcp_table_reads = self.measure.refresh_tables(&roots.proc, now, &mut reading.errors);
        for (pod, namespace) in reading.pods.iter_mut().zip(&self.pod_namespaces) {
            pod.tcp = namespace.and_then(|key| self.measure.tcp_connections(key, now));
        }
        self.measure.end_sample();
        reading.network_from_node_veths = self.measure.namespaces_read_from_veths();
        Ok(())
    }

    /// The node's interfaces classified from the last rtnetlink link dump
    /// (see [`veth`] and [`crate::iface_kind`]); `None` before one, when it
    /// failed, or without the node's interfaces.
    pub fn link_kinds(&self) -> Option<&LinkKinds> {
        self.measure.link_kinds()
    }

    /// Walks `/proc` when the policy says it is due, or at once when a node
    /// interface came or went.
    fn walk_if_due(
        &mut self,
        roots: &HostRoots,
        node_interfaces: Option<&[Interface]>,
        now: Instant,
        errors: &mut Vec<SignalError>,
    ) -> Result<(), SignalError> {
        // An interface came or went: most likely a pod's veth, made with
        // its sandbox (whose processes are already there) or gone with it.
        // Walk now, so that the mapping and the interface kinds include it.
        let names_changed = node_interfaces.is_some_and(|interfaces| self.measure.names_changed(interfaces));
        if names_changed {
            self.pids.walk_next_scan();
        }
        if self.pids.scan_if_due(&roots.proc, now, self.process_rescan, errors)? {
            let pod_pids: Vec<u32> = self.pids.pods().filter_map(|(_, pids)| pids.first().copied()).collect();
            self.measure.after_walk(roots, &pod_pids, node_interfaces, names_changed, now, errors);
        }
        Ok(())
    }

    /// Each pod of the last walk with its network, CPU and memory (its TCP
    /// figures come once every namespace is read) into `reading.pods`, and
    /// the namespace it was read in (`None`: the node's) into
    /// `pod_namespaces`. A pod whose processes all exited since the walk is
    /// left out, and the next scan walks again.
    fn measure_pods(
        &mut self,
        roots: &HostRoots,
        node_interfaces: &[Interface],
        now: Instant,
        reading: &mut PodsReading,
    ) {
        let cgroup_root = self.cgroup_root.build(&roots.sys, &["fs/cgroup"]);
        let errors = &mut reading.errors;
        let mut pods = Refill::new(&mut reading.pods);
        self.pod_namespaces.clear();
        let mut pods_gone = false;
        for (cgroup, pids) in self.pids.pods() {
            // Any live process of the pod shows the pod's namespace; `None`
            // inside for a pod in the node's namespace.
            let network = pids.iter().find_map(|&pid| {
                match self.measure.network(&roots.proc, pid, node_interfaces, now, errors) {
                    Network::ProcessGone => None,
                    Network::Host => Some(None),
                    Network::Own(key) => Some(Some(key)),
                }
            });
            // Every process exited since the walk: the pod is going away,
            // and the next scan walks again to see what else changed.
            let Some(namespace) = network else {
                pods_gone = true;
                continue;
            };
            let usage = self.measure.cgroup(cgroup_root, cgroup, now, errors);
            let pod = pods.next_slot();
            let PodIdentity { uid, qos_class, cgroup_path, host_network } = &mut pod.identity;
            set_str(uid, &cgroup.uid);
            *qos_class = cgroup.qos_class;
            set_str(cgroup_path, &cgroup.pod_path);
            *host_network = namespace.is_none();
            pod.network = namespace.and_then(|key| self.measure.network_of(key));
            pod.tcp = None;
            pod.cpu_usage_us = usage.cpu_usage_us;
            pod.memory_working_set_bytes = usage.memory_working_set_bytes;
            pod.process_count = u32::try_from(pids.len()).unwrap_or(u32::MAX);
            self.pod_namespaces.push(namespace);
        }
        if pods_gone {
            self.pids.walk_next_scan();
        }
    }
}
