//! Pods on this node: what a pod scan reads and what it returns.
//!
//! Pods are found from `/proc/<pid>/cgroup` and measured from their network
//! namespace (`/proc/<pid>/net/*`, or the node's ends of their veth pairs)
//! and their pod cgroup. This file holds what a scan may reuse
//! ([`ScanPolicy`]) and what it returns ([`PodsReading`], [`Pod`]); the
//! scan itself is [`PodTracker`].
//!
//! Submodules: [`tracker`] (the scan across samples: the `/proc` walk and
//! when it is made), [`discovery`] (the walk itself: pid to pod, each
//! process's cgroup read once), [`measure`] (reading a known pod's network,
//! TCP, CPU and memory), [`veth`] (pod traffic from the node's ends of its
//! veth pairs), [`tcp_counters`] (the cheap per-namespace TCP counters),
//! [`tcp_refresh`] (which namespaces' socket tables are read this sample),
//! [`tcp`] (sockets by state, from the socket tables). Which pod a cgroup
//! path names and a cgroup's CPU and memory files are [`crate::cgroup`]'s.

pub mod discovery;
pub mod measure;
pub mod tcp;
pub mod tcp_counters;
pub mod tcp_refresh;
pub mod tracker;
pub mod veth;

#[cfg(test)]
mod tests;

use std::time::Duration;

use serde::Serialize;

use crate::net::NetCounters;
use crate::signal::SignalError;

pub use crate::cgroup::paths::QosClass;
pub use measure::sum_without_loopback;
use tcp::TcpStates;
use tcp_counters::TcpCounters;
pub use tracker::PodTracker;

/// How many namespaces' socket tables the streaming agent reads per sample
/// at most (`--tcp-table-reads-per-sample`). Measured with
/// `bakery-measure-pods` on a 2-core VM whose TCP established hash has
/// 262144 buckets, 30 pods, CPU of one pod scan: with connections held,
/// 2.2 ms (0.5 ms of it the counter files; no table is read), against
/// 207 ms when every table was read every sample. With every pod opening a
/// connection every 80 ms (100 ms samples): 233 ms before, 121 ms reading
/// every changed namespace (one table each), 7.8 ms with 1 read per sample,
/// 12 ms with 2, 19.5 ms with 4. 2 bounds that cost while a pod whose
/// connections keep changing gets a fresh tally every (changing pods / 2)
/// samples; quiet pods cost no table read at all.
pub const DEFAULT_TCP_TABLE_READS_PER_SAMPLE: u32 = 2;

/// How many socket tables already read the streaming agent reads again per
/// second at most, node-wide (`--tcp-table-rereads-per-second`). Measured
/// with `cargo xtask bench agent --busy` (30 pods under load, 250 ms, a
/// 262144-bucket hash): the walks of the TCP hash were 70 % of the agent's
/// CPU when every busy pod was re-read every 5 s (6 a second). 2 a second
/// bounds the walks to about 7 ms of CPU a second there (a Pi 5 with 8 GiB
/// has a quarter of those buckets), while a node with up to 10 busy pods
/// keeps the 5 s of `--tcp-table-min-age`; with 30, each tally is at most
/// 15 s old.
pub const DEFAULT_TCP_TABLE_REREADS_PER_SECOND: u32 = 2;

/// How much of a pod scan is redone every sample, and how much may be
/// reused for a while. The counters the collector turns into rates (network,
/// TCP, CPU, memory usage) are read every sample whatever the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanPolicy {
    /// Most network namespaces whose TCP socket tables are read per sample
    /// (see [`tcp_refresh`]).
    pub tcp_table_reads_per_sample: u32,
    /// Longest time between two walks of `/proc` for new and exited
    /// processes. Between walks the pods and their network namespaces are
    /// the last walk's: a new pod appears, and a pod whose processes all
    /// exited disappears, within this time. Zero: walk every sample.
    pub process_rescan: Duration,
    /// Longest a pod's inactive file figure (`memory.stat`) is reused in its
    /// working set; see [`crate::cgroup::stats`]. Zero: read every sample.
    pub memory_stat_refresh: Duration,
    /// Shortest time between two reads of one namespace's socket tables
    /// (see [`tcp_refresh`]); zero: whenever its counters moved.
    pub tcp_table_min_age: Duration,
    /// Most re-reads of socket tables per second, node-wide (first reads
    /// not counted); `u32::MAX`: no limit.
    pub tcp_table_rereads_per_second: u32,
    /// Longest a network namespace whose interfaces moved no packet since
    /// its TCP counters were read keeps them instead of reading `net/snmp`
    /// and `net/sockstat{,6}` again (see [`measure`]). Zero: read every
    /// sample.
    pub quiet_tcp_counters_refresh: Duration,
}

impl ScanPolicy {
    /// Everything read afresh on every scan: for one-off reads (`--once`).
    pub const EXACT: ScanPolicy = ScanPolicy {
        tcp_table_reads_per_sample: u32::MAX,
        process_rescan: Duration::ZERO,
        memory_stat_refresh: Duration::ZERO,
        tcp_table_min_age: Duration::ZERO,
        tcp_table_rereads_per_second: u32::MAX,
        quiet_tcp_counters_refresh: Duration::ZERO,
    };

    /// The streaming agent's defaults.
    pub const STREAMING: ScanPolicy = ScanPolicy {
        tcp_table_reads_per_sample: DEFAULT_TCP_TABLE_READS_PER_SAMPLE,
        process_rescan: Duration::from_secs(2),
        memory_stat_refresh: Duration::from_secs(2),
        tcp_table_min_age: Duration::from_secs(5),
        tcp_table_rereads_per_second: DEFAULT_TCP_TABLE_REREADS_PER_SECOND,
        quiet_tcp_counters_refresh: Duration::from_secs(2),
    };
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

/// TCP of the pod's network namespace (IPv4 and IPv6).
///
/// Two kinds of figures: the sockets by state (`established_inbound` to
/// `other`) and `inbound_peers` come from the socket tables, which are
/// expensive to read and so are re-read only when the counters show a
/// change, within a budget per sample: they describe the namespace as it
/// was `detail_age_ms` ago.
/// The others come from the namespace's counters and are read every sample.
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
    /// Distinct remote addresses of the `established_inbound` sockets (an
    /// IPv4-mapped IPv6 address counts as its IPv4 address); from the same
    /// reading of the tables as the by-state figures.
    pub inbound_peers: u32,
    /// How long ago the by-state figures above were last known to describe
    /// the namespace, milliseconds: 0 when its tables were read this sample
    /// or its counters have not moved since they were. `None` until the
    /// tables are first read (the figures above are then 0).
    pub detail_age_ms: Option<u64>,
    /// ESTABLISHED + CLOSE_WAIT now (`CurrEstab`, RFC 1213 tcpCurrEstab).
    pub established: u32,
    /// TCP sockets in use now, IPv4 and IPv6, in any state but TIME_WAIT
    /// and pending handshakes (sockstat `inuse`).
    pub in_use: u32,
    /// Time-wait sockets now (sockstat `tw`: TIME_WAIT, and closed
    /// FIN_WAIT2 sockets the kernel keeps as time-wait sockets).
    pub time_wait_now: u32,
    /// Connections opened by the pod (`connect()`), cumulative.
    pub active_opens_total: u64,
    /// Connections the pod accepted, cumulative.
    pub passive_opens_total: u64,
    /// Handshakes that failed, cumulative.
    pub attempt_fails_total: u64,
    /// Established connections reset, cumulative.
    pub estab_resets_total: u64,
    /// Segments received, sent and retransmitted, cumulative.
    pub in_segments_total: u64,
    pub out_segments_total: u64,
    pub retransmitted_segments_total: u64,
}

impl TcpConnections {
    /// This sample's `counters`, with the last tally and its age if any.
    pub fn new(counters: &TcpCounters, tally: Option<(TcpStates, u64)>) -> Self {
        let gauge = |value: u64| u32::try_from(value).unwrap_or(u32::MAX);
        let (states, detail_age_ms) = match tally {
            Some((states, age_ms)) => (states, Some(age_ms)),
            None => (TcpStates::default(), None),
        };
        let TcpStates {
            established_inbound,
            established_outbound,
            listen,
            time_wait,
            close_wait,
            syn_recv,
            other,
            inbound_peers,
        } = states;
        Self {
            established_inbound,
            established_outbound,
            listen,
            time_wait,
            close_wait,
            syn_recv,
            other,
            inbound_peers,
            detail_age_ms,
            established: gauge(counters.curr_estab),
            in_use: gauge(counters.in_use_v4.saturating_add(counters.in_use_v6)),
            time_wait_now: gauge(counters.time_wait),
            active_opens_total: counters.active_opens,
            passive_opens_total: counters.passive_opens,
            attempt_fails_total: counters.attempt_fails,
            estab_resets_total: counters.estab_resets,
            in_segments_total: counters.in_segs,
            out_segments_total: counters.out_segs,
            retransmitted_segments_total: counters.retrans_segs,
        }
    }

    /// The by-state figures, as the tables listed them.
    pub fn states(&self) -> TcpStates {
        TcpStates {
            established_inbound: self.established_inbound,
            established_outbound: self.established_outbound,
            listen: self.listen,
            time_wait: self.time_wait,
            close_wait: self.close_wait,
            syn_recv: self.syn_recv,
            other: self.other,
            inbound_peers: self.inbound_peers,
        }
    }
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

/// A placeholder for a slot about to be filled (see [`crate::reuse::Refill`]).
impl Default for Pod {
    fn default() -> Self {
        Self {
            identity: PodIdentity {
                uid: String::new(),
                qos_class: QosClass::BestEffort,
                cgroup_path: String::new(),
                host_network: false,
            },
            network: None,
            tcp: None,
            cpu_usage_us: None,
            memory_working_set_bytes: None,
            process_count: 0,
        }
    }
}

/// Everything one pod scan found, with the malformed files it met on the
/// way (counted as errors; the other pods are still reported).
#[derive(Debug, Default)]
pub struct PodsReading {
    pub pods: Vec<Pod>,
    pub errors: Vec<SignalError>,
    /// Network namespaces whose socket tables were read in this scan.
    pub tcp_table_reads: u32,
    /// Pods whose traffic came from the node's ends of their veth pairs
    /// (the others' from their own `net/dev`).
    pub network_from_node_veths: u32,
}
