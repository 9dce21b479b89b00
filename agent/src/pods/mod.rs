//! Pods on this node: found from `/proc/<pid>/cgroup`, measured from their
//! network namespace (`/proc/<pid>/net/*`) and their pod cgroup.
//!
//! Submodules: [`cgroup_path`] (which pod a process is in), [`discovery`]
//! (the `/proc` scan and pid cache), [`tcp`] (sockets by state, from the
//! socket tables), [`tcp_counters`] (the cheap per-namespace TCP counters),
//! [`tcp_refresh`] (which namespaces' socket tables are read this sample),
//! [`cgroup_stats`] (pod CPU and memory), [`veth`] (pod traffic from the
//! node's ends of its veth pairs); this file measures each pod, with
//! the files it reads every sample kept open ([`crate::kept_files`]).

pub mod cgroup_path;
pub mod cgroup_stats;
pub mod discovery;
pub mod tcp;
pub mod tcp_counters;
pub mod tcp_refresh;
pub mod veth;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::net::{Interface, NetCounters};
use crate::roots::HostRoots;
use crate::signal::SignalError;

use crate::kept_files::KeptFiles;
use cgroup_stats::CgroupReader;
use discovery::{PidCache, process_gone, read_proc_file};
use tcp::{TcpStates, TcpTally};
use tcp_counters::TcpCounters;
use tcp_refresh::TableRefresh;
use veth::VethPeers;

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
    /// working set; see [`cgroup_stats`]. Zero: read every sample.
    pub memory_stat_refresh: Duration,
    /// Shortest time between two reads of one namespace's socket tables
    /// (see [`tcp_refresh`]); zero: whenever its counters moved.
    pub tcp_table_min_age: Duration,
    /// Longest a network namespace whose interfaces moved no packet since
    /// its TCP counters were read keeps them instead of reading `net/snmp`
    /// and `net/sockstat{,6}` again (see [`Measure::network`]). Zero: read
    /// every sample.
    pub quiet_tcp_counters_refresh: Duration,
}

impl ScanPolicy {
    /// Everything read afresh on every scan: for one-off reads (`--once`).
    pub const EXACT: ScanPolicy = ScanPolicy {
        tcp_table_reads_per_sample: u32::MAX,
        process_rescan: Duration::ZERO,
        memory_stat_refresh: Duration::ZERO,
        tcp_table_min_age: Duration::ZERO,
        quiet_tcp_counters_refresh: Duration::ZERO,
    };

    /// The streaming agent's defaults.
    pub const STREAMING: ScanPolicy = ScanPolicy {
        tcp_table_reads_per_sample: DEFAULT_TCP_TABLE_READS_PER_SAMPLE,
        process_rescan: Duration::from_secs(2),
        memory_stat_refresh: Duration::from_secs(2),
        tcp_table_min_age: Duration::from_secs(5),
        quiet_tcp_counters_refresh: Duration::from_secs(2),
    };
}

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

/// Keeps what does not change between samples (which pid belongs to which
/// pod), so a sample reads each process's cgroup file only once per life;
/// keeps the files read every sample open, and the buffers they are read
/// into; keeps each namespace's last TCP tally.
#[derive(Debug)]
pub struct PodTracker {
    pids: PidCache,
    measure: Measure,
    process_rescan: Duration,
    /// The node's own network namespace (that of pid 1), as of the last walk.
    host_namespace: Option<u64>,
}

impl Default for PodTracker {
    fn default() -> Self {
        Self::new()
    }
}

/// Reads one pod's network namespace and cgroup, reusing its buffers.
#[derive(Debug)]
struct Measure {
    cgroups: CgroupReader,
    /// A namespace's files, by its inode.
    files: KeptFiles<(u64, NamespaceFile)>,
    /// The network namespace of each pod process read since the last walk
    /// (`None`: not allowed to look), so `ns/net` is read once per walk.
    namespace_of: HashMap<u32, Option<u64>>,
    buffer: Vec<u8>,
    /// `net/sockstat6`, read into its own buffer while `buffer` holds sockstat.
    buffer6: Vec<u8>,
    /// `net/snmp`, likewise.
    snmp_buffer: Vec<u8>,
    tcp: TcpTally,
    /// This sample's readings by network namespace, so pods sharing a
    /// namespace are read once.
    namespaces: HashMap<NamespaceKey, NamespaceReading>,
    tables: TableRefresh<NamespaceKey>,
    tcp_table_reads_per_sample: u32,
    tcp_table_min_age: Duration,
    veths: VethPeers,
    /// Namespaces read from their veth peers this sample.
    from_veths: u32,
    /// Each namespace's TCP counters as last read, reused while it is quiet.
    last_counters: HashMap<NamespaceKey, CountersRead>,
    quiet_tcp_counters_refresh: Duration,
    sample: u64,
}

/// A namespace's TCP counters as last read, with the packets its interfaces
/// (loopback included) had moved then.
#[derive(Debug, Clone, Copy)]
struct CountersRead {
    counters: TcpCounters,
    packets: u64,
    read_at: Instant,
    used_in_sample: u64,
}

/// A network namespace across samples: its inode, or, when the agent may
/// not read `/proc/<pid>/ns/net`, the process it is read through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum NamespaceKey {
    Inode(u64),
    Process(u32),
}

impl NamespaceKey {
    fn inode(self) -> Option<u64> {
        match self {
            Self::Inode(inode) => Some(inode),
            Self::Process(_) => None,
        }
    }
}

/// The files of a network namespace the agent reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum NamespaceFile {
    Dev,
    Snmp,
    Sockstat,
    Sockstat6,
    Tcp,
    Tcp6,
}

impl NamespaceFile {
    fn under_process(self) -> &'static str {
        match self {
            Self::Dev => "net/dev",
            Self::Snmp => "net/snmp",
            Self::Sockstat => "net/sockstat",
            Self::Sockstat6 => "net/sockstat6",
            Self::Tcp => "net/tcp",
            Self::Tcp6 => "net/tcp6",
        }
    }
}

/// What one network namespace showed this sample.
#[derive(Debug, Clone)]
struct NamespaceReading {
    network: Option<NetCounters>,
    /// `None` when the counters could not be read (the error is listed):
    /// the pod then has no TCP figures this sample.
    tcp_counters: Option<TcpCounters>,
    /// `/proc/<pid>` of the process it was read through, for the tables.
    process: PathBuf,
}

/// What reading a pod's network through one of its processes gave.
enum Network {
    /// The process exited meanwhile: try another process of the pod.
    ProcessGone,
    /// The pod shares the node's namespace (hostNetwork).
    Host,
    Own(NamespaceKey),
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
            measure: Measure {
                cgroups: CgroupReader::with_inactive_refresh(policy.memory_stat_refresh),
                files: KeptFiles::default(),
                namespace_of: HashMap::new(),
                buffer: Vec::new(),
                buffer6: Vec::new(),
                snmp_buffer: Vec::new(),
                tcp: TcpTally::default(),
                namespaces: HashMap::new(),
                tables: TableRefresh::default(),
                tcp_table_reads_per_sample: policy.tcp_table_reads_per_sample,
                tcp_table_min_age: policy.tcp_table_min_age,
                veths: VethPeers::default(),
                from_veths: 0,
                last_counters: HashMap::new(),
                quiet_tcp_counters_refresh: policy.quiet_tcp_counters_refresh,
                sample: 0,
            },
            process_rescan: policy.process_rescan,
            host_namespace: None,
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
        let mut errors = Vec::new();
        // An interface came or went: most likely a pod's veth, made with
        // its sandbox (whose processes are already there) or gone with it.
        // Walk now, so that the mapping and the interface kinds include it.
        let names_changed = node_interfaces.is_some_and(|interfaces| self.measure.veths.names_changed(interfaces));
        if names_changed {
            self.pids.walk_next_scan();
        }
        if self.pids.scan_if_due(&roots.proc, now, self.process_rescan, &mut errors)? {
            self.host_namespace = namespace_inode(&roots.proc("1/ns/net"));
            // A walk is when exited processes are noticed: look again.
            self.measure.namespace_of.clear();
            // rtnetlink answers for the agent's own namespace, and so does
            // `<proc-root>/net/dev` (it is `self/net/dev`) on a real procfs.
            // On a fixture tree a pod's `ns/net` cannot be opened, so no pod
            // is mapped and each is read from its own files.
            match node_interfaces {
                Some(interfaces) => self.refresh_veths(&roots.proc, interfaces, names_changed, now, &mut errors),
                None => self.measure.veths.forget(),
            }
        }
        let node_interfaces = veth::by_name(node_interfaces.unwrap_or_default());
        let cgroup_root = roots.cgroup();
        let host_namespace = self.host_namespace;
        self.measure.begin_sample();

        let mut pods = Vec::new();
        let mut pod_namespaces = Vec::new();
        let mut pods_gone = false;
        for (cgroup, pids) in self.pids.pods() {
            // Any live process of the pod shows the pod's namespace; `None`
            // inside for a pod in the node's namespace.
            let network = pids.iter().find_map(|&pid| {
                match self.measure.network(&roots.proc, pid, host_namespace, &node_interfaces, now, &mut errors) {
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
            let usage = self.measure.cgroups.read(&cgroup_root, cgroup, now, &mut errors);
            pods.push(Pod {
                identity: PodIdentity {
                    uid: cgroup.uid.clone(),
                    qos_class: cgroup.qos_class,
                    cgroup_path: cgroup.pod_path.clone(),
                    host_network: namespace.is_none(),
                },
                network: namespace.and_then(|key| self.measure.namespaces.get(&key)).and_then(|ns| ns.network),
                tcp: None,
                cpu_usage_us: usage.cpu_usage_us,
                memory_working_set_bytes: usage.memory_working_set_bytes,
                process_count: u32::try_from(pids.len()).unwrap_or(u32::MAX),
            });
            pod_namespaces.push(namespace);
        }
        if pods_gone {
            self.pids.walk_next_scan();
        }
        let tcp_table_reads = self.measure.refresh_tables(now, &mut errors);
        for (pod, namespace) in pods.iter_mut().zip(pod_namespaces) {
            pod.tcp = namespace.and_then(|key| self.measure.tcp_connections(key, now));
        }
        self.measure.end_sample();
        let network_from_node_veths = self.measure.from_veths;
        Ok(PodsReading { pods, errors, tcp_table_reads, network_from_node_veths })
    }
}

impl PodTracker {
    /// The node's interfaces classified from the last rtnetlink link dump
    /// (see [`veth`] and [`crate::iface_kind`]); `None` before one, when it
    /// failed, or without the node's interfaces.
    pub fn link_kinds(&self) -> Option<&crate::iface_kind::LinkKinds> {
        self.measure.veths.link_kinds()
    }

    /// Maps every pod namespace to its veth peers on the node, keeping only
    /// namespaces whose every interface but loopback is such a veth. The
    /// mapping of the last walk is kept while the pods' namespaces are the
    /// same (see [`veth::REMAP_INTERVAL`]) and no node interface came or
    /// went: a link dump and a file per pod, every walk, were a tenth of an
    /// idle agent's CPU.
    fn refresh_veths(
        &mut self,
        proc_root: &Path,
        node_interfaces: &[Interface],
        names_changed: bool,
        now: Instant,
        errors: &mut Vec<SignalError>,
    ) {
        let mut namespaces = Vec::new();
        let mut every_pod_listed = true;
        for (_, pids) in self.pids.pods() {
            let Some(&pid) = pids.first() else { continue };
            let process = proc_root.join(pid.to_string());
            let Some(inode) = self.measure.namespace_inode(&process, pid) else {
                every_pod_listed = false;
                continue;
            };
            if Some(inode) != self.host_namespace {
                namespaces.push((inode, process));
            }
        }
        let mut inodes: Vec<u64> = namespaces.iter().map(|(inode, _)| *inode).collect();
        inodes.sort_unstable();
        inodes.dedup();
        if !names_changed && self.measure.veths.is_current_for(&inodes, now) {
            return;
        }
        let measure = &mut self.measure;
        let links: Vec<(u64, PathBuf)> =
            namespaces.iter().map(|(inode, process)| (*inode, process.join("ns/net"))).collect();
        let namespaces_to_map = links.iter().map(|(inode, path)| (*inode, path.as_path()));
        if let Err(source) = measure.veths.refresh(namespaces_to_map, every_pod_listed, node_interfaces, now) {
            let path = PathBuf::from("rtnetlink (RTM_GETLINK, RTM_GETNSID)");
            // An answer that does not parse is malformed input, counted.
            errors.push(match source.kind() {
                io::ErrorKind::InvalidData => SignalError::malformed(path, source.to_string()),
                _ => SignalError::Io { path, source },
            });
            measure.veths.forget();
            return;
        }
        for (inode, process) in &namespaces {
            let Some(peers) = measure.veths.of(*inode).map(<[String]>::len) else { continue };
            let own = read_proc_file(&process.join("net/dev"), &mut measure.buffer).ok().and_then(|_| {
                let interfaces = crate::net::parse_net_dev(measure.buffer.as_slice()).ok()?;
                Some(interfaces.iter().filter(|interface| interface.name != "lo").count())
            });
            if own != Some(peers) {
                measure.veths.drop_namespace(*inode);
            }
        }
    }
}

impl Measure {
    /// The network namespace of `pid` (`None`: not allowed to look, or the
    /// process exited), read once per walk.
    fn namespace_inode(&mut self, process: &Path, pid: u32) -> Option<u64> {
        if let Some(&known) = self.namespace_of.get(&pid) {
            return known;
        }
        let inode = std::fs::read_link(process.join("ns/net")).ok().as_deref().and_then(parse_namespace_link);
        self.namespace_of.insert(pid, inode);
        inode
    }

    fn begin_sample(&mut self) {
        self.sample += 1;
        self.from_veths = 0;
        self.namespaces.clear();
        self.files.begin_sample();
        self.cgroups.begin_sample();
        self.tables.begin_sample();
    }

    fn end_sample(&mut self) {
        let sample = self.sample;
        self.last_counters.retain(|_, read| read.used_in_sample == sample);
        self.files.end_sample();
        self.cgroups.end_sample();
        self.tables.end_sample();
    }

    /// Reads one file of the namespace `namespace` through `process` into
    /// `buffer`, kept open when the namespace is known. `Ok(false)` when it
    /// is gone.
    fn read_namespace_file(
        files: &mut KeptFiles<(u64, NamespaceFile)>,
        namespace: Option<u64>,
        process: &Path,
        file: NamespaceFile,
        buffer: &mut Vec<u8>,
    ) -> (PathBuf, io::Result<bool>) {
        let path = process.join(file.under_process());
        let read = match namespace {
            Some(inode) => files.read((inode, file), &path, buffer),
            None => read_proc_file(&path, buffer),
        };
        (path, read)
    }

    /// Reads the network namespace `pid` is in, or recalls it when another
    /// pod already read the same namespace this sample.
    ///
    /// `net/dev` is read every sample. The TCP counters are read again only
    /// when the namespace's interfaces, loopback included, moved a packet
    /// since they were last read, or when that read is older than the quiet
    /// refresh: every counter of `net/snmp` and most of `net/sockstat` move
    /// only with a segment sent or received, so a quiet namespace's figures
    /// are still exact. What moves without a packet is seen at the next
    /// refresh: a TIME_WAIT socket expiring, a socket bound or listened on,
    /// and a connect or retransmission that gives up after its last timeout.
    /// Idle pods, most of a node's, then cost one small file each.
    fn network(
        &mut self,
        proc_root: &Path,
        pid: u32,
        host: Option<u64>,
        node_interfaces: &HashMap<&str, &NetCounters>,
        now: Instant,
        errors: &mut Vec<SignalError>,
    ) -> Network {
        let process = proc_root.join(pid.to_string());
        let inode = match self.namespace_of.get(&pid) {
            Some(&known) => known,
            None => {
                let inode = match std::fs::read_link(process.join("ns/net")) {
                    Ok(link) => parse_namespace_link(&link),
                    Err(error) if process_gone(&error) => return Network::ProcessGone,
                    // Not allowed to look (an agent without CAP_SYS_PTRACE): the
                    // counters can still be read, only not deduplicated.
                    Err(_) => None,
                };
                self.namespace_of.insert(pid, inode);
                inode
            }
        };
        if inode.is_some() && inode == host {
            return Network::Host;
        }
        let key = inode.map_or(NamespaceKey::Process(pid), NamespaceKey::Inode);
        if self.namespaces.contains_key(&key) {
            return Network::Own(key);
        }

        let from_veths = inode.and_then(|inode| veth::pod_counters(node_interfaces, self.veths.of(inode)?));
        let (network, packets) = match from_veths {
            // Loopback is not in the node's counters: a pod talking only to
            // itself is seen by the quiet refresh.
            Some(counters) => {
                self.from_veths += 1;
                (Some(counters), Some(counters.rx_packets.wrapping_add(counters.tx_packets)))
            }
            None => {
                let (path, read) =
                    Self::read_namespace_file(&mut self.files, inode, &process, NamespaceFile::Dev, &mut self.buffer);
                let interfaces = match read {
                    Ok(false) => return Network::ProcessGone,
                    Ok(true) => match crate::net::parse_net_dev(self.buffer.as_slice()) {
                        Ok(interfaces) => Some(interfaces),
                        Err(error) => {
                            errors.push(error.at(&path));
                            None
                        }
                    },
                    Err(error) => {
                        errors.push(SignalError::Io { path, source: error });
                        None
                    }
                };
                (interfaces.as_deref().map(sum_without_loopback), interfaces.as_deref().map(packets_moved))
            }
        };
        let tcp_counters = match self.quiet_counters(key, packets, now) {
            Some(counters) => Some(counters),
            None => match self.tcp_counters(inode, &process) {
                Ok(counters) => {
                    if let Some(packets) = packets {
                        let read = CountersRead { counters, packets, read_at: now, used_in_sample: self.sample };
                        self.last_counters.insert(key, read);
                    }
                    Some(counters)
                }
                Err(error) => {
                    errors.push(error);
                    None
                }
            },
        };
        self.namespaces.insert(key, NamespaceReading { network, tcp_counters, process });
        Network::Own(key)
    }

    /// The namespace's last TCP counters, if it moved no packet since they
    /// were read and they are younger than the quiet refresh.
    fn quiet_counters(&mut self, key: NamespaceKey, packets: Option<u64>, now: Instant) -> Option<TcpCounters> {
        let refresh = self.quiet_tcp_counters_refresh;
        let last = self.last_counters.get_mut(&key)?;
        let quiet = packets == Some(last.packets) && now.saturating_duration_since(last.read_at) < refresh;
        if !quiet {
            return None;
        }
        last.used_in_sample = self.sample;
        if let NamespaceKey::Inode(inode) = key {
            for file in [NamespaceFile::Snmp, NamespaceFile::Sockstat, NamespaceFile::Sockstat6] {
                self.files.keep(&(inode, file));
            }
        }
        Some(last.counters)
    }

    /// Reads `net/snmp`, `net/sockstat` and `net/sockstat6` (missing
    /// without IPv6). Every kernel with `net/dev` has the first two, so one
    /// missing means the process exited since `net/dev` was read (or a
    /// fixture lacks it): [`SignalError::Absent`], and the pod is reported
    /// without TCP figures this sample.
    fn tcp_counters(&mut self, inode: Option<u64>, process: &Path) -> Result<TcpCounters, SignalError> {
        let mut read = |file, buffer: &mut Vec<u8>| {
            let (path, read) = Self::read_namespace_file(&mut self.files, inode, process, file, buffer);
            read.map_err(|source| SignalError::Io { path: path.clone(), source }).map(|present| (path, present))
        };
        let (snmp_path, snmp_present) = read(NamespaceFile::Snmp, &mut self.snmp_buffer)?;
        let (sockstat_path, sockstat_present) = read(NamespaceFile::Sockstat, &mut self.buffer)?;
        for (path, present) in [(&snmp_path, snmp_present), (&sockstat_path, sockstat_present)] {
            if !present {
                let why = "the process exited, or the kernel keeps no TCP counters";
                return Err(SignalError::Absent { path: path.clone(), why: why.into() });
            }
        }
        // Missing without IPv6; gone with the process is told by the others.
        let (_, sockstat6_present) = read(NamespaceFile::Sockstat6, &mut self.buffer6)?;
        // The kernel writes ASCII; a byte that is not is a malformed file.
        let snmp =
            std::str::from_utf8(&self.snmp_buffer).map_err(|_| SignalError::malformed(&snmp_path, "not UTF-8 text"))?;
        let sockstat =
            std::str::from_utf8(&self.buffer).map_err(|_| SignalError::malformed(&sockstat_path, "not UTF-8 text"))?;
        let counters = tcp_counters::parse_snmp_tcp(snmp).map_err(|error| error.at(&snmp_path))?;
        let (in_use_v4, time_wait) =
            tcp_counters::parse_sockstat_tcp(sockstat).map_err(|error| error.at(&sockstat_path))?;
        let in_use_v6 = if sockstat6_present {
            let path = process.join(NamespaceFile::Sockstat6.under_process());
            let text =
                std::str::from_utf8(&self.buffer6).map_err(|_| SignalError::malformed(&path, "not UTF-8 text"))?;
            tcp_counters::parse_sockstat6_tcp(text).map_err(|error| error.at(&path))?
        } else {
            0
        };
        Ok(TcpCounters { in_use_v4, in_use_v6, time_wait, ..counters })
    }

    /// Reads the socket tables of the namespaces that are due, within the
    /// budget; returns how many namespaces had a table read.
    fn refresh_tables(&mut self, now: Instant, errors: &mut Vec<SignalError>) -> u32 {
        for (key, reading) in &self.namespaces {
            if let Some(counters) = &reading.tcp_counters {
                self.tables.observe(*key, counters.signature(), now);
                // A namespace whose counters show both tables empty (no
                // socket in use, none in time-wait) has its tally for free:
                // it takes nothing from the budget.
                if !counters.ipv4_table_may_list_sockets() && !counters.ipv6_table_may_list_sockets(0) {
                    self.tables.record(*key, counters.signature(), TcpStates::default(), now);
                }
            }
        }
        let mut reads = 0;
        for key in self.tables.due(self.tcp_table_reads_per_sample, now, self.tcp_table_min_age) {
            let Some(reading) = self.namespaces.get(&key) else { continue };
            let Some(counters) = reading.tcp_counters else { continue };
            let process = reading.process.clone();
            reads += 1;
            self.tables.tried(key, now);
            match self.tally_tables(key.inode(), &process, &counters) {
                Ok(Some(states)) => self.tables.record(key, counters.signature(), states, now),
                // The process exited after its counters were read: its pod
                // keeps its last tally (if any) and the next sample tries again.
                Ok(None) => {}
                Err(error) => errors.push(error),
            }
        }
        reads
    }

    /// Tallies `net/tcp` and `net/tcp6`, skipping a table the counters show
    /// to be empty; `Ok(None)` when the process exited meanwhile.
    ///
    /// These are the expensive reads: the kernel walks every bucket of the
    /// TCP established hash for each table (`established_get_first` in
    /// `net/ipv4/tcp_ipv4.c`), and that table is shared by all namespaces
    /// unless `net.ipv4.tcp_child_ehash_entries` gave new ones their own.
    /// Measured: 3.4 ms per table with 262144 buckets (a 24 GB VM), 42 µs
    /// in a namespace with its own 1024 buckets.
    fn tally_tables(
        &mut self,
        inode: Option<u64>,
        process: &Path,
        counters: &TcpCounters,
    ) -> Result<Option<TcpStates>, SignalError> {
        self.tcp.clear();
        if counters.ipv4_table_may_list_sockets() && !self.add_tcp_table(inode, process, NamespaceFile::Tcp)? {
            return Ok(None);
        }
        // tcp6 is missing when IPv6 is disabled (`ipv6.disable=1`): then
        // tcp is the whole story.
        if counters.ipv6_table_may_list_sockets(u64::from(self.tcp.time_wait_so_far())) {
            self.add_tcp_table(inode, process, NamespaceFile::Tcp6)?;
        }
        Ok(Some(self.tcp.finish()))
    }

    /// Adds one table to the tally; `Ok(false)` when the table is gone.
    fn add_tcp_table(&mut self, inode: Option<u64>, process: &Path, file: NamespaceFile) -> Result<bool, SignalError> {
        let (path, read) = Self::read_namespace_file(&mut self.files, inode, process, file, &mut self.buffer);
        match read {
            Ok(true) => {
                let text =
                    std::str::from_utf8(&self.buffer).map_err(|_| SignalError::malformed(&path, "not UTF-8 text"))?;
                self.tcp.add_table(text).map(|()| true).map_err(|error| error.at(&path))
            }
            Ok(false) => Ok(false),
            Err(error) => Err(SignalError::Io { path, source: error }),
        }
    }

    /// The pod's TCP figures: this sample's counters and the last tally.
    fn tcp_connections(&self, key: NamespaceKey, now: Instant) -> Option<TcpConnections> {
        let counters = self.namespaces.get(&key)?.tcp_counters?;
        Some(TcpConnections::new(&counters, self.tables.tally(key, now)))
    }
}

/// The inode of a `net:[4026531840]` namespace link.
fn parse_namespace_link(link: &Path) -> Option<u64> {
    link.to_str()?.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

fn namespace_inode(link: &Path) -> Option<u64> {
    std::fs::read_link(link).ok().as_deref().and_then(parse_namespace_link)
}

/// Packets sent and received on every interface, loopback included: every
/// TCP segment of the namespace moves one of these.
fn packets_moved(interfaces: &[Interface]) -> u64 {
    interfaces.iter().fold(0u64, |sum, interface| {
        sum.wrapping_add(interface.counters.rx_packets).wrapping_add(interface.counters.tx_packets)
    })
}

/// The pod's traffic: every interface but loopback (which never leaves the
/// pod), wrapping like the kernel's own counters.
pub fn sum_without_loopback(interfaces: &[Interface]) -> NetCounters {
    interfaces.iter().filter(|interface| interface.name != "lo").fold(NetCounters::default(), |sum, interface| {
        let c = &interface.counters;
        NetCounters {
            rx_bytes: sum.rx_bytes.wrapping_add(c.rx_bytes),
            rx_packets: sum.rx_packets.wrapping_add(c.rx_packets),
            rx_errors: sum.rx_errors.wrapping_add(c.rx_errors),
            rx_dropped: sum.rx_dropped.wrapping_add(c.rx_dropped),
            tx_bytes: sum.tx_bytes.wrapping_add(c.tx_bytes),
            tx_packets: sum.tx_packets.wrapping_add(c.tx_packets),
            tx_errors: sum.tx_errors.wrapping_add(c.tx_errors),
            tx_dropped: sum.tx_dropped.wrapping_add(c.tx_dropped),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// Everything afresh every scan, with at most `budget` table reads.
    fn budgeted(budget: u32) -> PodTracker {
        PodTracker::with_policy(ScanPolicy { tcp_table_reads_per_sample: budget, ..ScanPolicy::EXACT })
    }

    fn fixture(name: &str) -> HostRoots {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
        HostRoots::new(dir.join("proc"), dir.join("sys"))
    }

    fn counters(rx_bytes: u64, rx_packets: u64, tx_bytes: u64, tx_packets: u64) -> Option<NetCounters> {
        Some(NetCounters { rx_bytes, rx_packets, tx_bytes, tx_packets, ..NetCounters::default() })
    }

    /// A fixture namespace's counters (`opens`: active, passive, failed,
    /// reset; `segments`: in, out, retransmitted), with a tally of nothing
    /// read this sample (the caller sets the by-state fields).
    fn counted(
        established: u32,
        in_use: u32,
        time_wait_now: u32,
        opens: [u64; 4],
        segments: [u64; 3],
    ) -> TcpConnections {
        let [active_opens_total, passive_opens_total, attempt_fails_total, estab_resets_total] = opens;
        let [in_segments_total, out_segments_total, retransmitted_segments_total] = segments;
        TcpConnections {
            detail_age_ms: Some(0),
            established,
            in_use,
            time_wait_now,
            active_opens_total,
            passive_opens_total,
            attempt_fails_total,
            estab_resets_total,
            in_segments_total,
            out_segments_total,
            retransmitted_segments_total,
            ..TcpConnections::default()
        }
    }

    fn identity(uid: &str, qos_class: QosClass, cgroup_path: &str, host_network: bool) -> PodIdentity {
        PodIdentity { uid: uid.into(), qos_class, cgroup_path: cgroup_path.into(), host_network }
    }

    #[test]
    fn the_pi5_fixture_has_its_four_pods_measured() {
        let reading = PodTracker::new().read(&fixture("pi5")).unwrap();
        assert!(reading.errors.is_empty(), "{:?}", reading.errors);
        let expected = vec![
            // WordPress: pause + two apache2 processes; listens on [::]:80
            // (tcp6, v4-mapped clients), talks to MySQL from tcp.
            Pod {
                identity: identity(
                    "3f6c2a91-8e4b-4d7a-b5c1-9a0e7d2f4b68",
                    QosClass::Burstable,
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod3f6c2a91_8e4b_4d7a_b5c1_9a0e7d2f4b68.slice",
                    false,
                ),
                network: counters(20_112_334_876, 12_998_112, 9_123_987_123, 11_233_870),
                // CurrEstab 7 = 6 ESTABLISHED + 1 CLOSE_WAIT, as the tables list.
                tcp: Some(TcpConnections {
                    established_inbound: 5,
                    established_outbound: 1,
                    listen: 1,
                    time_wait: 2,
                    close_wait: 1,
                    syn_recv: 0,
                    other: 0,
                    // The five inbound sockets come from 3 clients (tcp6, v4-mapped).
                    inbound_peers: 3,
                    detail_age_ms: Some(0),
                    established: 7,
                    in_use: 8,
                    time_wait_now: 2,
                    active_opens_total: 18_234,
                    passive_opens_total: 1_204_331,
                    attempt_fails_total: 12,
                    estab_resets_total: 341,
                    in_segments_total: 12_998_112,
                    out_segments_total: 11_233_870,
                    retransmitted_segments_total: 2211,
                }),
                cpu_usage_us: Some(48_211_044_517),
                memory_working_set_bytes: Some(431_718_400 - 67_108_864),
                process_count: 3,
            },
            // MetalLB speaker: hostNetwork, so no network of its own.
            Pod {
                identity: identity(
                    "5c7e9a1b-3f2d-4b8e-9c6a-1d4f7b2e8a50",
                    QosClass::Burstable,
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod5c7e9a1b_3f2d_4b8e_9c6a_1d4f7b2e8a50.slice",
                    true,
                ),
                network: None,
                tcp: None,
                cpu_usage_us: Some(312_044_517),
                memory_working_set_bytes: Some(41_943_040 - 4_194_304),
                process_count: 1,
            },
            // MySQL: Guaranteed (no QoS slice).
            Pod {
                identity: identity(
                    "9b1d4e27-c0a5-4f38-8e6d-2a7f5c9b1e03",
                    QosClass::Guaranteed,
                    "/kubepods.slice/kubepods-pod9b1d4e27_c0a5_4f38_8e6d_2a7f5c9b1e03.slice",
                    false,
                ),
                network: counters(19_877_120_334, 12_654_331, 8_712_330_981, 10_988_231),
                // The pending handshake is in no counter; the tables show it.
                tcp: Some(TcpConnections {
                    established_inbound: 2,
                    // WordPress and one other client.
                    inbound_peers: 2,
                    listen: 2,
                    syn_recv: 1,
                    ..counted(2, 4, 0, [0, 18_230, 3, 7], [12_654_331, 10_988_231, 912])
                }),
                cpu_usage_us: Some(9_120_331_876),
                memory_working_set_bytes: Some(612_368_384 - 83_886_080),
                process_count: 1,
            },
            Pod {
                identity: identity(
                    "e4a8c1f6-2d9b-4e7c-a3f0-6b5d8e1c7a29",
                    QosClass::BestEffort,
                    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pode4a8c1f6_2d9b_4e7c_a3f0_6b5d8e1c7a29.slice",
                    false,
                ),
                network: counters(88_123_412, 398_712, 31_220_987, 412_331),
                // Nothing in use: known empty without reading the tables.
                tcp: Some(counted(0, 0, 0, [4, 0, 0, 0], [398_712, 412_331, 0])),
                cpu_usage_us: Some(1_204_331),
                memory_working_set_bytes: Some(1_048_576 - 262_144),
                process_count: 1,
            },
        ];
        assert_eq!(reading.pods, expected);
    }

    #[test]
    fn the_cgroup_v1_fixture_has_its_three_pods_measured() {
        let reading = PodTracker::new().read(&fixture("cgroup-v1")).unwrap();
        assert!(reading.errors.is_empty(), "{:?}", reading.errors);
        let expected = vec![
            Pod {
                identity: identity(
                    "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
                    QosClass::Burstable,
                    "/kubepods/burstable/poda1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
                    false,
                ),
                network: counters(9_120_331_876, 9_877_231, 7_812_334_412, 9_120_331),
                tcp: Some(TcpConnections {
                    established_inbound: 2,
                    // Both from one client (two source ports).
                    inbound_peers: 1,
                    listen: 2,
                    time_wait: 1,
                    other: 1,
                    ..counted(2, 5, 1, [912, 88_123, 1, 9], [9_877_231, 9_120_331, 120])
                }),
                // cpuacct.usage is in nanoseconds.
                cpu_usage_us: Some(7_120_334_876),
                memory_working_set_bytes: Some(157_286_400 - 41_943_040),
                process_count: 2,
            },
            Pod {
                identity: identity(
                    "b7c8d9e0-f1a2-4b3c-9d4e-5f6a7b8c9d0e",
                    QosClass::BestEffort,
                    "/kubepods/besteffort/podb7c8d9e0-f1a2-4b3c-9d4e-5f6a7b8c9d0e",
                    false,
                ),
                network: counters(123_412_331, 88_123, 2_211_334, 21_033),
                tcp: Some(TcpConnections {
                    established_outbound: 1,
                    ..counted(1, 1, 0, [2113, 0, 0, 0], [88_123, 21_033, 4])
                }),
                cpu_usage_us: Some(912_334_871),
                memory_working_set_bytes: Some(20_971_520 - 2_097_152),
                process_count: 1,
            },
            Pod {
                identity: identity(
                    "c0d1e2f3-a4b5-4c6d-8e7f-9a0b1c2d3e4f",
                    QosClass::Guaranteed,
                    "/kubepods/podc0d1e2f3-a4b5-4c6d-8e7f-9a0b1c2d3e4f",
                    true,
                ),
                network: None,
                tcp: None,
                cpu_usage_us: Some(55_123_412),
                memory_working_set_bytes: Some(33_554_432 - 524_288),
                process_count: 1,
            },
        ];
        assert_eq!(reading.pods, expected);
    }

    /// A small tree to break in ways the fixtures are not broken.
    struct Tree {
        dir: tempfile::TempDir,
    }

    const NET_DEV: &str = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n  eth0:    5000      50    0    0    0     0          0         0     7000      70    0    0    0     0       0          0\n";
    const TCP_HEADER: &str =
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
    const LISTEN_80: &str = "   0: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0\n";
    const INBOUND_80: &str = "   1: 0A000002:0050 0A000001:C000 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1\n";

    const OUTBOUND: &str = "   2: 0A000002:D000 0A000009:0CEA 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 20 4 30 10 -1\n";

    /// `net/snmp` and `net/sockstat` for these counts.
    fn snmp((curr_estab, active_opens, passive_opens): (u64, u64, u64)) -> String {
        format!(
            "Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors\n\
             Tcp: 1 200 120000 -1 {active_opens} {passive_opens} 0 0 {curr_estab} 10 10 0 0 0 0\n"
        )
    }

    fn sockstat(in_use: u64, time_wait: u64) -> String {
        format!("sockets: used 3\nTCP: inuse {in_use} orphan 0 tw {time_wait} alloc 3 mem 1\n")
    }

    impl Tree {
        fn new() -> Self {
            let tree = Self { dir: tempfile::tempdir().unwrap() };
            tree.link("proc/1/ns/net", "net:[4026531840]");
            tree
        }

        fn path(&self, rel: &str) -> PathBuf {
            self.dir.path().join(rel)
        }

        fn write(&self, rel: &str, content: &str) {
            let path = self.path(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }

        fn link(&self, rel: &str, target: &str) {
            let path = self.path(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(target, path).unwrap();
        }

        /// A process of pod `uid` in network namespace `inode`, with its
        /// network files: a server listening on port 80.
        fn process(&self, pid: u32, uid: &str, inode: u64) {
            self.process_without_network(pid, uid, inode);
            self.write(&format!("proc/{pid}/net/dev"), NET_DEV);
            self.sockets(pid, &[LISTEN_80], (0, 0, 0), 1);
            self.write(&format!("proc/{pid}/net/tcp6"), "");
            self.write(&format!("proc/{pid}/net/sockstat6"), "TCP6: inuse 0\n");
        }

        /// Sets the IPv4 sockets of `pid`'s namespace: the table lines, the
        /// counters `(CurrEstab, ActiveOpens, PassiveOpens)` and the sockets
        /// in use.
        fn sockets(&self, pid: u32, lines: &[&str], counters: (u64, u64, u64), in_use: u64) {
            self.write(&format!("proc/{pid}/net/tcp"), &[TCP_HEADER].iter().chain(lines).copied().collect::<String>());
            self.write(&format!("proc/{pid}/net/snmp"), &snmp(counters));
            self.write(&format!("proc/{pid}/net/sockstat"), &sockstat(in_use, 0));
        }

        fn process_without_network(&self, pid: u32, uid: &str, inode: u64) {
            self.write(&format!("proc/{pid}/cgroup"), &format!("0::/kubepods/besteffort/pod{uid}/c{pid}\n"));
            self.link(&format!("proc/{pid}/ns/net"), &format!("net:[{inode}]"));
        }

        fn roots(&self) -> HostRoots {
            HostRoots::new(self.path("proc"), self.path("sys"))
        }
    }

    #[test]
    fn a_malformed_tcp_table_is_an_error_and_the_other_pods_still_arrive() {
        let tree = Tree::new();
        tree.process(10, "aa", 1001);
        tree.process(20, "bb", 1002);
        tree.write("proc/20/net/tcp", "   0: garbage\n");
        let mut tracker = PodTracker::new();
        let reading = tracker.read(&tree.roots()).unwrap();
        assert_eq!(reading.errors.len(), 1, "{:?}", reading.errors);
        assert!(reading.errors[0].is_malformed() && reading.errors[0].to_string().contains("20/net/tcp"));
        let ages: Vec<_> =
            reading.pods.iter().map(|p| (p.identity.uid.as_str(), p.tcp.map(|tcp| tcp.detail_age_ms))).collect();
        // The broken table leaves the pod without a tally, not without its
        // counters or its interface counters.
        assert_eq!(ages, [("aa", Some(Some(0))), ("bb", Some(None))]);
        assert_eq!(reading.pods[1].tcp.map(|tcp| tcp.in_use), Some(1));
        assert_eq!(reading.pods[1].network, counters(5000, 50, 7000, 70));
        // Still due: tried again next sample.
        let reading = tracker.read(&tree.roots()).unwrap();
        assert_eq!((reading.errors.len(), reading.tcp_table_reads), (1, 1), "{:?}", reading.errors);
    }

    #[test]
    fn malformed_counters_are_an_error_and_leave_the_pod_without_tcp_figures() {
        let tree = Tree::new();
        tree.process(10, "aa", 1001);
        tree.write("proc/10/net/snmp", "Tcp: CurrEstab\nTcp: lots\n");
        let reading = PodTracker::new().read(&tree.roots()).unwrap();
        assert_eq!(reading.errors.len(), 1, "{:?}", reading.errors);
        assert!(reading.errors[0].is_malformed() && reading.errors[0].to_string().contains("10/net/snmp"));
        assert_eq!(reading.pods[0].tcp, None);
        assert_eq!(reading.pods[0].network, counters(5000, 50, 7000, 70));
    }

    #[test]
    fn tables_are_read_again_only_when_the_counters_move() {
        let tree = Tree::new();
        tree.process(10, "aa", 1001);
        let mut tracker = PodTracker::new();
        let first = tracker.read(&tree.roots()).unwrap();
        assert_eq!(first.tcp_table_reads, 1);
        let tally = |reading: &PodsReading| reading.pods[0].tcp.map(|tcp| (tcp.established_inbound, tcp.detail_age_ms));
        assert_eq!(tally(&first), Some((0, Some(0))));

        // A connection shows in the table, but the counters say nothing
        // moved (a table can only be ahead of its counters in a test): not
        // read, and the tally is still taken as current.
        tree.write("proc/10/net/tcp", &[TCP_HEADER, LISTEN_80, INBOUND_80].concat());
        let quiet = tracker.read(&tree.roots()).unwrap();
        assert_eq!((quiet.tcp_table_reads, tally(&quiet)), (0, Some((0, Some(0)))));

        // One accepted, established connection: read again.
        tree.sockets(10, &[LISTEN_80, INBOUND_80], (1, 0, 1), 2);
        let moved = tracker.read(&tree.roots()).unwrap();
        assert_eq!((moved.tcp_table_reads, tally(&moved)), (1, Some((1, Some(0)))));
        assert_eq!(moved.pods[0].tcp.map(|tcp| (tcp.established, tcp.passive_opens_total)), Some((1, 1)));
    }

    #[test]
    fn one_close_and_one_open_in_a_sample_are_seen() {
        let tree = Tree::new();
        tree.process(10, "aa", 1001);
        tree.sockets(10, &[LISTEN_80, INBOUND_80], (1, 0, 1), 2);
        let mut tracker = PodTracker::new();
        tracker.read(&tree.roots()).unwrap();
        // The client closed, and the pod connected out: CurrEstab and inuse
        // are where they were; only ActiveOpens tells.
        tree.sockets(10, &[LISTEN_80, OUTBOUND], (1, 1, 1), 2);
        let reading = tracker.read(&tree.roots()).unwrap();
        assert_eq!(reading.tcp_table_reads, 1);
        let tcp = reading.pods[0].tcp.unwrap();
        assert_eq!((tcp.established_inbound, tcp.established_outbound), (0, 1));
    }

    #[test]
    fn the_budget_reads_new_pods_first_and_shows_how_old_each_tally_is() {
        let tree = Tree::new();
        for (pid, uid) in [(10, "aa"), (20, "bb"), (30, "cc")] {
            tree.process(pid, uid, 1000 + u64::from(pid));
        }
        let start = Instant::now();
        let at = |seconds: u64| start + std::time::Duration::from_secs(seconds);
        let ages =
            |reading: &PodsReading| reading.pods.iter().map(|p| p.tcp.unwrap().detail_age_ms).collect::<Vec<_>>();
        let mut tracker = budgeted(2);

        let reading = tracker.read_at(&tree.roots(), at(1)).unwrap();
        assert_eq!(reading.tcp_table_reads, 2);
        assert_eq!(ages(&reading), [Some(0), Some(0), None], "the third pod waits for the next sample");
        let unread = reading.pods[2].tcp.unwrap();
        assert_eq!((unread.listen, unread.in_use), (0, 1), "no made-up tally; the counters are there");

        // Pod aa gets a connection; cc, never read, still goes first.
        tree.sockets(10, &[LISTEN_80, INBOUND_80], (1, 0, 1), 2);
        let reading = tracker.read_at(&tree.roots(), at(2)).unwrap();
        assert_eq!(ages(&reading), [Some(0), Some(0), Some(0)]);
        assert_eq!(reading.pods[0].tcp.unwrap().established_inbound, 1, "budget left for the changed pod");

        let mut tracker = budgeted(0);
        tree.sockets(10, &[LISTEN_80], (0, 0, 1), 1);
        let reading = tracker.read_at(&tree.roots(), at(3)).unwrap();
        assert_eq!(ages(&reading), [None, None, None], "budget 0: counters only");
    }

    #[test]
    fn a_stale_tally_reports_its_age_until_read_again() {
        let tree = Tree::new();
        tree.process(10, "aa", 1001);
        tree.process(20, "bb", 1002);
        let start = Instant::now();
        let at = |millis: u64| start + std::time::Duration::from_millis(millis);
        let mut tracker = budgeted(1);
        tracker.read_at(&tree.roots(), at(0)).unwrap();
        tracker.read_at(&tree.roots(), at(1000)).unwrap();
        // Both pods change; one read per sample.
        tree.sockets(10, &[LISTEN_80, INBOUND_80], (1, 0, 1), 2);
        tree.sockets(20, &[LISTEN_80, INBOUND_80], (1, 0, 1), 2);
        let reading = tracker.read_at(&tree.roots(), at(1500)).unwrap();
        let tallies = |reading: &PodsReading| {
            let tally = |t: TcpConnections| (t.established_inbound, t.inbound_peers, t.detail_age_ms);
            reading.pods.iter().map(|p| p.tcp.map(tally)).collect::<Vec<_>>()
        };
        // aa was read first (both were current at 1000 ms; then by key). The
        // client count is as old as the rest of the tally.
        assert_eq!(tallies(&reading), [Some((1, 1, Some(0))), Some((0, 0, Some(500)))]);
        let reading = tracker.read_at(&tree.roots(), at(2500)).unwrap();
        assert_eq!(tallies(&reading), [Some((1, 1, Some(0))), Some((1, 1, Some(0)))]);
    }

    #[test]
    fn a_namespace_with_nothing_in_use_has_its_tables_skipped() {
        let tree = Tree::new();
        tree.process(10, "aa", 1001);
        tree.write("proc/10/net/sockstat", &sockstat(0, 0));
        // Had they been read, these would be errors.
        tree.write("proc/10/net/tcp", "garbage\n");
        tree.write("proc/10/net/tcp6", "garbage\n");
        let reading = PodTracker::new().read(&tree.roots()).unwrap();
        assert!(reading.errors.is_empty(), "{:?}", reading.errors);
        assert_eq!(reading.tcp_table_reads, 0);
        assert_eq!(
            reading.pods[0].tcp.map(|tcp| (tcp.states(), tcp.detail_age_ms)),
            Some((TcpStates::default(), Some(0)))
        );
    }

    #[test]
    fn the_ipv6_table_is_skipped_when_the_counters_rule_ipv6_sockets_out() {
        let tree = Tree::new();
        tree.process(10, "aa", 1001);
        tree.write("proc/10/net/tcp6", "garbage\n");
        let reading = PodTracker::new().read(&tree.roots()).unwrap();
        assert!(reading.errors.is_empty(), "{:?}", reading.errors);
        assert_eq!(reading.pods[0].tcp.map(|tcp| tcp.listen), Some(1));
        // One IPv6 socket in use: now it is read (and found broken).
        tree.write("proc/10/net/sockstat6", "TCP6: inuse 1\n");
        let reading = PodTracker::new().read(&tree.roots()).unwrap();
        assert!(reading.errors.iter().any(|e| e.to_string().contains("10/net/tcp6")), "{:?}", reading.errors);
    }

    #[test]
    fn a_process_that_exits_mid_read_is_skipped_quietly_for_a_live_one() {
        let tree = Tree::new();
        // pid 10 vanished after the scan listed it: its directory is empty.
        std::fs::create_dir_all(tree.path("proc/10")).unwrap();
        tree.write("proc/10/cgroup", "0::/kubepods/besteffort/podaa/c10\n");
        tree.process(11, "aa", 1001);
        let reading = PodTracker::new().read(&tree.roots()).unwrap();
        assert!(reading.errors.is_empty(), "{:?}", reading.errors);
        assert_eq!(reading.pods.len(), 1);
        assert_eq!(reading.pods[0].network, counters(5000, 50, 7000, 70));
        assert_eq!(reading.pods[0].tcp.map(|t| t.listen), Some(1));
        assert_eq!(reading.pods[0].process_count, 2);
    }

    #[test]
    fn pods_sharing_a_namespace_read_it_once() {
        let tree = Tree::new();
        tree.process(10, "aa", 1001);
        // No network files: only the namespace already read can answer.
        tree.process_without_network(20, "bb", 1001);
        let reading = PodTracker::new().read(&tree.roots()).unwrap();
        assert!(reading.errors.is_empty(), "{:?}", reading.errors);
        assert_eq!(reading.pods.len(), 2);
        assert_eq!(reading.pods[1].network, reading.pods[0].network);
        assert_eq!(reading.pods[1].tcp, reading.pods[0].tcp);
    }

    #[test]
    fn a_pod_whose_processes_are_gone_is_no_longer_reported() {
        let tree = Tree::new();
        tree.process(10, "aa", 1001);
        tree.process(20, "bb", 1002);
        let mut tracker = PodTracker::new();
        assert_eq!(tracker.read(&tree.roots()).unwrap().pods.len(), 2);
        std::fs::remove_dir_all(tree.path("proc/20")).unwrap();
        let pods = tracker.read(&tree.roots()).unwrap().pods;
        assert_eq!(pods.iter().map(|p| p.identity.uid.as_str()).collect::<Vec<_>>(), ["aa"]);
    }

    #[test]
    fn while_streaming_pods_come_and_go_at_the_next_walk_and_counters_move_every_sample() {
        let tree = Tree::new();
        tree.process(10, "aa", 1001);
        let mut tracker = PodTracker::with_policy(ScanPolicy::STREAMING);
        let start = Instant::now();
        let uids = |tracker: &mut PodTracker, at: Duration| -> Vec<String> {
            let reading = tracker.read_at(&tree.roots(), start + at).unwrap();
            reading.pods.iter().map(|p| p.identity.uid.clone()).collect()
        };
        assert_eq!(uids(&mut tracker, Duration::ZERO), ["aa"]);
        tree.process(20, "bb", 1002);
        assert_eq!(uids(&mut tracker, Duration::from_secs(1)), ["aa"], "no walk before the rescan interval");
        assert_eq!(uids(&mut tracker, ScanPolicy::STREAMING.process_rescan), ["aa", "bb"]);

        // Counters are read every sample, walk or not.
        tree.write("proc/10/net/dev", &NET_DEV.replace(" 5000 ", " 777 "));
        let reading = tracker.read_at(&tree.roots(), start + Duration::from_millis(2100)).unwrap();
        assert_eq!(reading.pods[0].network.map(|n| n.rx_bytes), Some(777));

        std::fs::remove_dir_all(tree.path("proc/20")).unwrap();
        assert_eq!(uids(&mut tracker, Duration::from_secs(4)), ["aa"], "gone at the next walk");
    }

    #[test]
    fn a_node_interface_coming_or_going_makes_the_next_scan_walk_at_once() {
        let tree = Tree::new();
        tree.process(10, "aa", 1001);
        let mut tracker = PodTracker::with_policy(ScanPolicy::STREAMING);
        let start = Instant::now();
        let node = |names: &[&str]| -> Vec<Interface> {
            names.iter().map(|name| Interface { name: name.to_string(), ..Interface::default() }).collect()
        };
        let mut uids = |names: &[&str], millis: u64| -> Vec<String> {
            let interfaces = node(names);
            let at = start + Duration::from_millis(millis);
            let reading = tracker.read_with_node(&tree.roots(), Some(&interfaces), at).unwrap();
            reading.pods.iter().map(|p| p.identity.uid.clone()).collect()
        };
        assert_eq!(uids(&["lo", "eth0"], 0), ["aa"]);
        // A pod's sandbox and its veth on the node.
        tree.process(20, "bb", 1002);
        assert_eq!(uids(&["eth0", "lo"], 1000), ["aa"], "the same interfaces (in another order): no walk yet");
        assert_eq!(uids(&["lo", "eth0", "veth1"], 1100), ["aa", "bb"], "a new interface: walked at once");
        std::fs::remove_dir_all(tree.path("proc/20")).unwrap();
        assert_eq!(uids(&["lo", "eth0"], 1200), ["aa"], "gone with its interface");
    }

    #[test]
    fn a_namespace_that_moved_no_packet_keeps_its_tcp_counters_until_the_quiet_refresh() {
        let tree = Tree::new();
        tree.process(10, "aa", 1001);
        let refresh = Duration::from_secs(2);
        let mut tracker =
            PodTracker::with_policy(ScanPolicy { quiet_tcp_counters_refresh: refresh, ..ScanPolicy::EXACT });
        let start = Instant::now();
        let time_wait = |tracker: &mut PodTracker, at: Duration| {
            let reading = tracker.read_at(&tree.roots(), start + at).unwrap();
            reading.pods[0].tcp.expect("TCP figures").time_wait_now
        };
        assert_eq!(time_wait(&mut tracker, Duration::ZERO), 0);

        // A closed connection leaves a TIME_WAIT socket: that took packets.
        tree.write("proc/10/net/sockstat", &sockstat(1, 1));
        tree.write("proc/10/net/dev", &NET_DEV.replace(" 5000      50 ", " 5060      51 "));
        assert_eq!(time_wait(&mut tracker, Duration::from_millis(500)), 1, "packets moved: counters read");

        // The socket expires 60 s later with no packet: seen at the refresh, 2 s
        // after the last read.
        tree.write("proc/10/net/sockstat", &sockstat(1, 0));
        assert_eq!(time_wait(&mut tracker, Duration::from_millis(1000)), 1, "quiet: the last counters are kept");
        assert_eq!(time_wait(&mut tracker, Duration::from_millis(2600)), 0, "the refresh is due: read again");

        // Without the policy every sample reads them.
        let mut exact = PodTracker::new();
        tree.write("proc/10/net/sockstat", &sockstat(1, 3));
        assert_eq!(time_wait(&mut exact, Duration::from_millis(2700)), 3);
        tree.write("proc/10/net/sockstat", &sockstat(1, 4));
        assert_eq!(time_wait(&mut exact, Duration::from_millis(2800)), 4);
    }

    #[test]
    fn a_missing_proc_root_fails_the_read() {
        let roots = HostRoots::new("/nonexistent/bakery/proc", "/nonexistent/bakery/sys");
        assert!(matches!(PodTracker::new().read(&roots), Err(SignalError::Absent { .. })));
    }

    #[test]
    fn namespace_links_give_their_inode() {
        assert_eq!(parse_namespace_link(Path::new("net:[4026531840]")), Some(4_026_531_840));
        assert_eq!(parse_namespace_link(Path::new("mnt:[4026531840]")), None);
        assert_eq!(parse_namespace_link(Path::new("net:[x]")), None);
    }

    #[test]
    fn loopback_is_left_out_of_a_pods_traffic() {
        let interface = |name: &str, rx_bytes| Interface {
            name: name.into(),
            counters: NetCounters { rx_bytes, tx_bytes: rx_bytes * 2, ..NetCounters::default() },
            ..Interface::default()
        };
        let sum = sum_without_loopback(&[interface("lo", 1000), interface("eth0", 10), interface("net1", 5)]);
        assert_eq!((sum.rx_bytes, sum.tx_bytes), (15, 30));
    }
}
