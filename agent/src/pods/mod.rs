//! Pods on this node: found from `/proc/<pid>/cgroup`, measured from their
//! network namespace (`/proc/<pid>/net/*`) and their pod cgroup.
//!
//! Submodules: [`cgroup_path`] (which pod a process is in), [`discovery`]
//! (the `/proc` scan and pid cache), [`tcp`] (sockets by state),
//! [`cgroup_stats`] (pod CPU and memory), [`kept_files`] (files kept open
//! between samples); this file measures each pod.

pub mod cgroup_path;
pub mod cgroup_stats;
pub mod discovery;
pub mod kept_files;
pub mod tcp;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::net::{Interface, NetCounters};
use crate::roots::HostRoots;
use crate::signal::SignalError;

use cgroup_stats::CgroupReader;
use discovery::{PidCache, process_gone, read_proc_file};
use kept_files::KeptFiles;
use tcp::TcpTally;

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
/// pod), so a sample reads each process's cgroup file only once per life;
/// keeps the files read every sample open, and the buffers they are read
/// into.
#[derive(Debug, Default)]
pub struct PodTracker {
    pids: PidCache,
    measure: Measure,
}

/// Reads one pod's network namespace and cgroup, reusing its buffers.
#[derive(Debug, Default)]
struct Measure {
    cgroups: CgroupReader,
    /// A namespace's files, by its inode.
    files: KeptFiles<(u64, NamespaceFile)>,
    buffer: Vec<u8>,
    tcp: TcpTally,
    /// This sample's readings by network namespace inode, so pods sharing a
    /// namespace are read once.
    namespaces: HashMap<u64, NamespaceReading>,
}

/// The files of a network namespace the agent reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum NamespaceFile {
    Dev,
    Tcp,
    Tcp6,
}

impl NamespaceFile {
    fn under_process(self) -> &'static str {
        match self {
            Self::Dev => "net/dev",
            Self::Tcp => "net/tcp",
            Self::Tcp6 => "net/tcp6",
        }
    }
}

/// What one network namespace showed this sample.
#[derive(Debug, Clone, Copy, Default)]
struct NamespaceReading {
    network: Option<NetCounters>,
    tcp: Option<TcpConnections>,
}

/// What reading a pod's network through one of its processes gave.
enum Network {
    /// The process exited meanwhile: try another process of the pod.
    ProcessGone,
    /// The pod shares the node's namespace (hostNetwork).
    Host,
    Own(NamespaceReading),
}

impl PodTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Scans `<proc-root>` for pod processes and measures each pod.
    ///
    /// Fails only when `<proc-root>` cannot be listed. Processes exiting
    /// meanwhile are skipped quietly; malformed files are listed in
    /// [`PodsReading::errors`] and the other pods are still reported.
    pub fn read(&mut self, roots: &HostRoots) -> Result<PodsReading, SignalError> {
        let mut errors = Vec::new();
        self.pids.scan(&roots.proc, &mut errors)?;
        let cgroup_root = roots.cgroup();
        let host_namespace = namespace_inode(&roots.proc("1/ns/net"));
        self.measure.begin_sample();

        let mut pods = Vec::new();
        for (cgroup, pids) in self.pids.pods() {
            // Any live process of the pod shows the pod's namespace; `None`
            // inside for a pod in the node's namespace.
            let network = pids.iter().find_map(|&pid| {
                match self.measure.network(&roots.proc, pid, host_namespace, &mut errors) {
                    Network::ProcessGone => None,
                    Network::Host => Some(None),
                    Network::Own(reading) => Some(Some(reading)),
                }
            });
            // Every process exited since the scan: the pod is going away.
            let Some(own_network) = network else { continue };
            let host_network = own_network.is_none();
            let reading = own_network.unwrap_or_default();
            let usage = self.measure.cgroups.read(&cgroup_root, cgroup, &mut errors);
            pods.push(Pod {
                identity: PodIdentity {
                    uid: cgroup.uid.clone(),
                    qos_class: cgroup.qos_class,
                    cgroup_path: cgroup.pod_path.clone(),
                    host_network,
                },
                network: reading.network,
                tcp: reading.tcp,
                cpu_usage_us: usage.cpu_usage_us,
                memory_working_set_bytes: usage.memory_working_set_bytes,
                process_count: u32::try_from(pids.len()).unwrap_or(u32::MAX),
            });
        }
        self.measure.end_sample();
        Ok(PodsReading { pods, errors })
    }
}

impl Measure {
    fn begin_sample(&mut self) {
        self.namespaces.clear();
        self.files.begin_sample();
        self.cgroups.begin_sample();
    }

    fn end_sample(&mut self) {
        self.files.end_sample();
        self.cgroups.end_sample();
    }

    /// Reads one file of the namespace `namespace` through `process`, kept
    /// open when the namespace is known. `Ok(false)` when it is gone.
    fn read_namespace_file(
        &mut self,
        namespace: Option<u64>,
        process: &Path,
        file: NamespaceFile,
    ) -> (PathBuf, io::Result<bool>) {
        let path = process.join(file.under_process());
        let read = match namespace {
            Some(inode) => self.files.read((inode, file), &path, &mut self.buffer),
            None => read_proc_file(&path, &mut self.buffer),
        };
        (path, read)
    }

    /// Reads the network namespace `pid` is in, or recalls it when another
    /// pod already read the same namespace this sample.
    fn network(&mut self, proc_root: &Path, pid: u32, host: Option<u64>, errors: &mut Vec<SignalError>) -> Network {
        let process = proc_root.join(pid.to_string());
        let namespace = match std::fs::read_link(process.join("ns/net")) {
            Ok(link) => parse_namespace_link(&link),
            Err(error) if process_gone(&error) => return Network::ProcessGone,
            // Not allowed to look (an agent without CAP_SYS_PTRACE): the
            // counters can still be read, only not deduplicated.
            Err(_) => None,
        };
        if namespace.is_some() && namespace == host {
            return Network::Host;
        }
        if let Some(reading) = namespace.and_then(|inode| self.namespaces.get(&inode)) {
            return Network::Own(*reading);
        }

        let (path, read) = self.read_namespace_file(namespace, &process, NamespaceFile::Dev);
        let network = match read {
            Ok(false) => return Network::ProcessGone,
            Ok(true) => match crate::net::parse_net_dev(self.buffer.as_slice()) {
                Ok(interfaces) => Some(sum_without_loopback(&interfaces)),
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
        let tcp = self.tcp_connections(namespace, &process, errors);
        let reading = NamespaceReading { network, tcp };
        if let Some(inode) = namespace {
            self.namespaces.insert(inode, reading);
        }
        Network::Own(reading)
    }

    /// Tallies `net/tcp` and `net/tcp6`; `None` when the process exited
    /// meanwhile or a table is malformed.
    ///
    /// These are the expensive reads: the kernel walks every bucket of the
    /// TCP established hash for each table (`established_get_first` in
    /// `net/ipv4/tcp_ipv4.c`), and that table is shared by all namespaces
    /// unless `net.ipv4.tcp_child_ehash_entries` gave new ones their own.
    /// Measured: 3.4 ms per table with 262144 buckets (a 24 GB VM), 42 µs
    /// in a namespace with its own 1024 buckets.
    fn tcp_connections(
        &mut self,
        namespace: Option<u64>,
        process: &Path,
        errors: &mut Vec<SignalError>,
    ) -> Option<TcpConnections> {
        let tallied = self.add_tcp_table(namespace, process, NamespaceFile::Tcp).and_then(|present| {
            // tcp6 is missing when IPv6 is disabled (`ipv6.disable=1`): then
            // tcp is the whole story.
            if present { self.add_tcp_table(namespace, process, NamespaceFile::Tcp6).map(|_| true) } else { Ok(false) }
        });
        let counts = self.tcp.finish();
        match tallied {
            Ok(true) => Some(counts),
            Ok(false) => None,
            Err(error) => {
                errors.push(error);
                None
            }
        }
    }

    /// `Ok(false)` when the table is gone.
    fn add_tcp_table(
        &mut self,
        namespace: Option<u64>,
        process: &Path,
        file: NamespaceFile,
    ) -> Result<bool, SignalError> {
        let (path, read) = self.read_namespace_file(namespace, process, file);
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
}

/// The inode of a `net:[4026531840]` namespace link.
fn parse_namespace_link(link: &Path) -> Option<u64> {
    link.to_str()?.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

fn namespace_inode(link: &Path) -> Option<u64> {
    std::fs::read_link(link).ok().as_deref().and_then(parse_namespace_link)
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

    fn fixture(name: &str) -> HostRoots {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
        HostRoots::new(dir.join("proc"), dir.join("sys"))
    }

    fn counters(rx_bytes: u64, rx_packets: u64, tx_bytes: u64, tx_packets: u64) -> Option<NetCounters> {
        Some(NetCounters { rx_bytes, rx_packets, tx_bytes, tx_packets, ..NetCounters::default() })
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
                tcp: Some(TcpConnections {
                    established_inbound: 5,
                    established_outbound: 1,
                    listen: 1,
                    time_wait: 2,
                    close_wait: 1,
                    syn_recv: 0,
                    other: 0,
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
                tcp: Some(TcpConnections {
                    established_inbound: 2,
                    listen: 2,
                    syn_recv: 1,
                    ..TcpConnections::default()
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
                tcp: Some(TcpConnections::default()),
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
                    listen: 2,
                    time_wait: 1,
                    other: 1,
                    ..TcpConnections::default()
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
                tcp: Some(TcpConnections { established_outbound: 1, ..TcpConnections::default() }),
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
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0\n";

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
        /// network files.
        fn process(&self, pid: u32, uid: &str, inode: u64) {
            self.process_without_network(pid, uid, inode);
            self.write(&format!("proc/{pid}/net/dev"), NET_DEV);
            self.write(&format!("proc/{pid}/net/tcp"), TCP);
            self.write(&format!("proc/{pid}/net/tcp6"), "");
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
        let reading = PodTracker::new().read(&tree.roots()).unwrap();
        assert_eq!(reading.errors.len(), 1, "{:?}", reading.errors);
        assert!(reading.errors[0].is_malformed() && reading.errors[0].to_string().contains("20/net/tcp"));
        let uids: Vec<_> = reading.pods.iter().map(|p| (p.identity.uid.as_str(), p.tcp.is_some())).collect();
        assert_eq!(uids, [("aa", true), ("bb", false)]);
        // The broken table does not take the pod's interface counters with it.
        assert_eq!(reading.pods[1].network, counters(5000, 50, 7000, 70));
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
        };
        let sum = sum_without_loopback(&[interface("lo", 1000), interface("eth0", 10), interface("net1", 5)]);
        assert_eq!((sum.rx_bytes, sum.tx_bytes), (15, 30));
    }
}
