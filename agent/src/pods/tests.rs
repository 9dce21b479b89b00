//! The pod scan end to end, on the fixture trees and on small trees broken on purpose.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::*;
use crate::net::Interface;
use crate::roots::HostRoots;

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
fn counted(established: u32, in_use: u32, time_wait_now: u32, opens: [u64; 4], segments: [u64; 3]) -> TcpConnections {
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

// One piece: the fixture's four pods as one expected literal, compared whole, so that a field
// that moves shows against all the others.
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
    let ages = |reading: &PodsReading| reading.pods.iter().map(|p| p.tcp.unwrap().detail_age_ms).collect::<Vec<_>>();
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
    assert_eq!(reading.pods[0].tcp.map(|tcp| (tcp.states(), tcp.detail_age_ms)), Some((TcpStates::default(), Some(0))));
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
    let mut tracker = PodTracker::with_policy(ScanPolicy { quiet_tcp_counters_refresh: refresh, ..ScanPolicy::EXACT });
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
