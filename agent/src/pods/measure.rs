//! Reading a known pod's counters: network, TCP, and its cgroup's CPU and memory.
//!
//! A pod's network is its namespace's: from the node's ends of its veth
//! pairs when the last walk mapped them ([`crate::pods::veth`]), else from
//! its own `net/dev`, read through any live process of the pod; pods sharing
//! a namespace read it once. Its TCP counters (`net/snmp`,
//! `net/sockstat{,6}`, see [`crate::pods::tcp_counters`]) are read every
//! sample unless the namespace moved no packet; its socket tables
//! (`net/tcp{,6}`, see [`crate::pods::tcp`]) only when those counters moved,
//! within a budget per sample ([`crate::pods::tcp_refresh`]). Its cgroup's
//! CPU and memory come from [`crate::cgroup::stats::CgroupReader`]. The
//! files read every sample stay open ([`crate::kept_files`]).

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use foldhash::{HashMap, HashMapExt};

use crate::cgroup::paths::PodCgroup;
use crate::cgroup::stats::{CgroupReader, PodUsage};
use crate::iface_kind::LinkKinds;
use crate::kept_files::{KeptFiles, process_gone, read_proc_file};
use crate::net::{Interface, NetCounters};
use crate::pods::tcp::{TcpStates, TcpTally};
use crate::pods::tcp_counters::{self, TcpCounters};
use crate::pods::tcp_refresh::TableRefresh;
use crate::pods::veth::{self, VethPeers};
use crate::pods::{ScanPolicy, TcpConnections};
use crate::reuse::{PathBuffer, decimal};
use crate::roots::HostRoots;
use crate::signal::SignalError;

/// Reads known pods' network namespaces and cgroups, reusing its buffers.
#[derive(Debug)]
pub(super) struct Measure {
    cgroups: CgroupReader,
    /// The node's own network namespace (that of pid 1), as of the last walk.
    host_namespace: Option<u64>,
    /// A namespace's files, by its inode.
    files: KeptFiles<(u64, NamespaceFile)>,
    /// The directory of the process a namespace is read through.
    process: PathBuffer,
    /// Any other path built to be read (`ns/net`, a file of a namespace
    /// whose inode is unknown).
    path: PathBuffer,
    /// A namespace's `net/dev`, parsed into the same list every time.
    interfaces: Vec<Interface>,
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
pub(super) enum NamespaceKey {
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
    /// The file below `process` (`/proc/<pid>`), for an error to name.
    fn path(self, process: &Path) -> PathBuf {
        process.join(self.under_process())
    }

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
    /// The process it was read through (`/proc/<pid>`), for the tables.
    pid: u32,
}

/// What reading a pod's network through one of its processes gave.
pub(super) enum Network {
    /// The process exited meanwhile: try another process of the pod.
    ProcessGone,
    /// The pod shares the node's namespace (hostNetwork).
    Host,
    Own(NamespaceKey),
}

impl Measure {
    pub(super) fn new(policy: &ScanPolicy) -> Self {
        Self {
            cgroups: CgroupReader::with_inactive_refresh(policy.memory_stat_refresh),
            host_namespace: None,
            files: KeptFiles::default(),
            process: PathBuffer::default(),
            path: PathBuffer::default(),
            interfaces: Vec::new(),
            namespace_of: HashMap::new(),
            buffer: Vec::new(),
            buffer6: Vec::new(),
            snmp_buffer: Vec::new(),
            tcp: TcpTally::default(),
            namespaces: HashMap::new(),
            tables: TableRefresh::with_rereads_per_second(policy.tcp_table_rereads_per_second),
            tcp_table_reads_per_sample: policy.tcp_table_reads_per_sample,
            tcp_table_min_age: policy.tcp_table_min_age,
            veths: VethPeers::default(),
            from_veths: 0,
            last_counters: HashMap::new(),
            quiet_tcp_counters_refresh: policy.quiet_tcp_counters_refresh,
            sample: 0,
        }
    }

    /// Whether the node's interfaces are not those of the last veth mapping
    /// tried: one came or went (see [`VethPeers::names_changed`]).
    pub(super) fn names_changed(&self, node_interfaces: &[Interface]) -> bool {
        self.veths.names_changed(node_interfaces)
    }

    /// The node's interfaces classified from the last rtnetlink link dump.
    pub(super) fn link_kinds(&self) -> Option<&LinkKinds> {
        self.veths.link_kinds()
    }

    /// How many namespaces were read from their veth peers this sample.
    pub(super) fn namespaces_read_from_veths(&self) -> u32 {
        self.from_veths
    }

    /// The traffic of namespace `key` as read this sample.
    pub(super) fn network_of(&self, key: NamespaceKey) -> Option<NetCounters> {
        self.namespaces.get(&key).and_then(|ns| ns.network)
    }

    /// The CPU and memory of the pod cgroup `cgroup` under the cgroup root.
    pub(super) fn cgroup(
        &mut self,
        cgroup_root: &Path,
        cgroup: &PodCgroup,
        now: Instant,
        errors: &mut Vec<SignalError>,
    ) -> PodUsage {
        self.cgroups.read(cgroup_root, cgroup, now, errors)
    }

    /// After a walk of `/proc` (when exited processes are noticed): looks
    /// again at which namespace the node and each process are in, and maps
    /// the pods' namespaces (one process of each pod in `pod_pids`) to their
    /// veth peers among `node_interfaces` (the node's `net/dev`; `None`:
    /// every pod is read from its own files).
    pub(super) fn after_walk(
        &mut self,
        roots: &HostRoots,
        pod_pids: &[u32],
        node_interfaces: Option<&[Interface]>,
        names_changed: bool,
        now: Instant,
        errors: &mut Vec<SignalError>,
    ) {
        self.host_namespace = read_namespace_link(self.path.build(&roots.proc, &["1/ns/net"])).ok().flatten();
        self.namespace_of.clear();
        // rtnetlink answers for the agent's own namespace, and so does
        // `<proc-root>/net/dev` (it is `self/net/dev`) on a real procfs.
        // On a fixture tree a pod's `ns/net` cannot be opened, so no pod
        // is mapped and each is read from its own files.
        match node_interfaces {
            Some(interfaces) => self.refresh_veths(&roots.proc, pod_pids, interfaces, names_changed, now, errors),
            None => self.veths.forget(),
        }
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
        pod_pids: &[u32],
        node_interfaces: &[Interface],
        names_changed: bool,
        now: Instant,
        errors: &mut Vec<SignalError>,
    ) {
        let mut namespaces = Vec::new();
        let mut every_pod_listed = true;
        for &pid in pod_pids {
            let Some(inode) = self.namespace_inode(proc_root, pid) else {
                every_pod_listed = false;
                continue;
            };
            if Some(inode) != self.host_namespace {
                namespaces.push((inode, pid));
            }
        }
        let mut inodes: Vec<u64> = namespaces.iter().map(|(inode, _)| *inode).collect();
        inodes.sort_unstable();
        inodes.dedup();
        if !names_changed && self.veths.is_current_for(&inodes, now) {
            return;
        }
        let measure = self;
        let process = |pid: u32| proc_root.join(pid.to_string());
        let links: Vec<(u64, PathBuf)> =
            namespaces.iter().map(|(inode, pid)| (*inode, process(*pid).join("ns/net"))).collect();
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
        for (inode, pid) in &namespaces {
            let Some(peers) = measure.veths.of(*inode).map(<[String]>::len) else { continue };
            let own = read_proc_file(&process(*pid).join("net/dev"), &mut measure.buffer).ok().and_then(|_| {
                let interfaces = crate::net::parse_net_dev(measure.buffer.as_slice()).ok()?;
                Some(interfaces.iter().filter(|interface| interface.name != "lo").count())
            });
            if own != Some(peers) {
                measure.veths.drop_namespace(*inode);
            }
        }
    }

    /// The network namespace of `pid` (`None`: not allowed to look, or the
    /// process exited), read once per walk.
    fn namespace_inode(&mut self, proc_root: &Path, pid: u32) -> Option<u64> {
        self.namespace_of_process(proc_root, pid).unwrap_or_else(|_| {
            self.namespace_of.insert(pid, None);
            None
        })
    }

    /// The network namespace of `pid`, read once per walk: `Ok(None)` when
    /// the agent may not look (without CAP_SYS_PTRACE: the counters can
    /// still be read, only not deduplicated), an error when the process has
    /// gone (not remembered).
    fn namespace_of_process(&mut self, proc_root: &Path, pid: u32) -> io::Result<Option<u64>> {
        if let Some(&known) = self.namespace_of.get(&pid) {
            return Ok(known);
        }
        let mut digits = [0; 10];
        let inode = match read_namespace_link(self.path.build(proc_root, &[decimal(pid, &mut digits), "ns/net"])) {
            Ok(inode) => inode,
            Err(error) if process_gone(&error) => return Err(error),
            Err(_) => None,
        };
        self.namespace_of.insert(pid, inode);
        Ok(inode)
    }

    pub(super) fn begin_sample(&mut self) {
        self.sample += 1;
        self.from_veths = 0;
        self.namespaces.clear();
        self.files.begin_sample();
        self.cgroups.begin_sample();
        self.tables.begin_sample();
    }

    pub(super) fn end_sample(&mut self) {
        let sample = self.sample;
        self.last_counters.retain(|_, read| read.used_in_sample == sample);
        self.files.end_sample();
        self.cgroups.end_sample();
        self.tables.end_sample();
    }

    /// Reads one file of the namespace `namespace` through `process` into
    /// `buffer`, kept open when the namespace is known (else its path is
    /// built in `path`). `Ok(false)` when it is gone.
    fn read_namespace_file(
        (files, path): (&mut KeptFiles<(u64, NamespaceFile)>, &mut PathBuffer),
        namespace: Option<u64>,
        process: &Path,
        file: NamespaceFile,
        buffer: &mut Vec<u8>,
    ) -> io::Result<bool> {
        match namespace {
            Some(inode) => files.read_lazily(&(inode, file), || file.path(process), buffer),
            None => read_proc_file(path.build(process, &[file.under_process()]), buffer),
        }
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
    pub(super) fn network(
        &mut self,
        proc_root: &Path,
        pid: u32,
        node_interfaces: &[Interface],
        now: Instant,
        errors: &mut Vec<SignalError>,
    ) -> Network {
        // Built in a buffer kept between samples, lent out for this call.
        let mut process = std::mem::take(&mut self.process);
        let mut digits = [0; 10];
        let path = process.build(proc_root, &[decimal(pid, &mut digits)]);
        let network = self.network_through(proc_root, (path, pid), node_interfaces, now, errors);
        self.process = process;
        network
    }

    /// [`Self::network`], through the process `pid` whose directory is `process`.
    fn network_through(
        &mut self,
        proc_root: &Path,
        (process, pid): (&Path, u32),
        node_interfaces: &[Interface],
        now: Instant,
        errors: &mut Vec<SignalError>,
    ) -> Network {
        let Ok(inode) = self.namespace_of_process(proc_root, pid) else {
            return Network::ProcessGone;
        };
        if inode.is_some() && inode == self.host_namespace {
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
                let dev = NamespaceFile::Dev;
                let files = (&mut self.files, &mut self.path);
                let read = Self::read_namespace_file(files, inode, process, dev, &mut self.buffer);
                let interfaces = match read {
                    Ok(false) => return Network::ProcessGone,
                    Ok(true) => match crate::net::parse_net_dev_into(self.buffer.as_slice(), &mut self.interfaces) {
                        Ok(()) => Some(self.interfaces.as_slice()),
                        Err(error) => {
                            errors.push(error.at(&dev.path(process)));
                            None
                        }
                    },
                    Err(error) => {
                        errors.push(SignalError::Io { path: dev.path(process), source: error });
                        None
                    }
                };
                (interfaces.map(sum_without_loopback), interfaces.map(packets_moved))
            }
        };
        let tcp_counters = match self.quiet_counters(key, packets, now) {
            Some(counters) => Some(counters),
            None => match self.tcp_counters(inode, process) {
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
        self.namespaces.insert(key, NamespaceReading { network, tcp_counters, pid });
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
        use NamespaceFile::{Snmp, Sockstat, Sockstat6};
        let (files, path) = (&mut self.files, &mut self.path);
        let mut read = |file: NamespaceFile, buffer: &mut Vec<u8>| {
            Self::read_namespace_file((&mut *files, &mut *path), inode, process, file, buffer)
                .map_err(|source| SignalError::Io { path: file.path(process), source })
        };
        let snmp_present = read(Snmp, &mut self.snmp_buffer)?;
        let sockstat_present = read(Sockstat, &mut self.buffer)?;
        for (file, present) in [(Snmp, snmp_present), (Sockstat, sockstat_present)] {
            if !present {
                let why = "the process exited, or the kernel keeps no TCP counters";
                return Err(SignalError::Absent { path: file.path(process), why: why.into() });
            }
        }
        // Missing without IPv6; gone with the process is told by the others.
        let sockstat6_present = read(Sockstat6, &mut self.buffer6)?;
        // The kernel writes ASCII; a byte that is not is a malformed file.
        let text = |file: NamespaceFile, bytes| {
            std::str::from_utf8(bytes).map_err(|_| SignalError::malformed(file.path(process), "not UTF-8 text"))
        };
        let counters =
            tcp_counters::parse_snmp_tcp(text(Snmp, &self.snmp_buffer)?).map_err(|e| e.at(&Snmp.path(process)))?;
        let (in_use_v4, time_wait) = tcp_counters::parse_sockstat_tcp(text(Sockstat, &self.buffer)?)
            .map_err(|e| e.at(&Sockstat.path(process)))?;
        let in_use_v6 = if sockstat6_present {
            tcp_counters::parse_sockstat6_tcp(text(Sockstat6, &self.buffer6)?)
                .map_err(|e| e.at(&Sockstat6.path(process)))?
        } else {
            0
        };
        Ok(TcpCounters { in_use_v4, in_use_v6, time_wait, ..counters })
    }

    /// Reads the socket tables of the namespaces that are due, within the
    /// budget; returns how many namespaces had a table read.
    pub(super) fn refresh_tables(&mut self, proc_root: &Path, now: Instant, errors: &mut Vec<SignalError>) -> u32 {
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
            let pid = reading.pid;
            reads += 1;
            self.tables.tried(key, now);
            let mut process = std::mem::take(&mut self.process);
            let mut digits = [0; 10];
            let tally =
                self.tally_tables(key.inode(), process.build(proc_root, &[decimal(pid, &mut digits)]), &counters);
            self.process = process;
            match tally {
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
    /// Measured: 1.7 ms per walk with 262144 buckets (a 24 GB VM; 3.4 ms a
    /// table when the read that finds the end walked again), 42 µs
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
        let read = Self::read_namespace_file((&mut self.files, &mut self.path), inode, process, file, &mut self.buffer);
        match read {
            Ok(true) => {
                let text = std::str::from_utf8(&self.buffer)
                    .map_err(|_| SignalError::malformed(file.path(process), "not UTF-8 text"))?;
                self.tcp.add_table(text).map(|()| true).map_err(|error| error.at(&file.path(process)))
            }
            Ok(false) => Ok(false),
            Err(error) => Err(SignalError::Io { path: file.path(process), source: error }),
        }
    }

    /// The pod's TCP figures: this sample's counters and the last tally.
    pub(super) fn tcp_connections(&self, key: NamespaceKey, now: Instant) -> Option<TcpConnections> {
        let counters = self.namespaces.get(&key)?.tcp_counters?;
        Some(TcpConnections::new(&counters, self.tables.tally(key, now)))
    }
}

/// The inode of a `net:[4026531840]` namespace link.
fn parse_namespace_link(link: &Path) -> Option<u64> {
    link.to_str()?.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// The network namespace a `ns/net` link leads to (`None`: a link to
/// something else), read into a buffer on the stack: the link is
/// `net:[<inode>]`, a few bytes.
fn read_namespace_link(link: &Path) -> io::Result<Option<u64>> {
    let mut target = [0u8; 64];
    let length = rustix::fs::readlinkat_raw(rustix::fs::CWD, link, &mut target[..])?;
    let target = target.get(..length).unwrap_or_default();
    Ok(std::str::from_utf8(target).ok().and_then(|text| parse_namespace_link(Path::new(text))))
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
    interfaces
        .iter()
        .filter(|interface| interface.name != "lo")
        .fold(NetCounters::default(), |sum, interface| sum.wrapping_add(&interface.counters))
}

#[cfg(test)]
mod tests {
    use super::*;

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
