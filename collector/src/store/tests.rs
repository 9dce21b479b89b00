//! Store tests: round trips, durability across reopen, retention, and the inspect report, all
//! on real redb files in temporary directories.

use prost::Message;
use prost::bytes::Bytes;

use super::report::{Accounting, account};
use super::*;

fn sample(timestamp_ms: i64, pod_ids: &[u32]) -> bakery_proto::v1::Sample {
    bakery_proto::v1::Sample {
        timestamp_ms,
        pods: pod_ids.iter().map(|&id| bakery_proto::v1::PodSample { pod_ref: id, ..Default::default() }).collect(),
        ..Default::default()
    }
}

fn batch(node_id: u32, seq: u64, received_ms: i64, samples: usize) -> BatchRow {
    let stored = StoredBatch { samples: (0..samples).map(|i| sample(received_ms - i as i64, &[1])).collect() };
    BatchRow { node_id, seq, received_ms, sample_count: samples as u32, bytes: Bytes::from(stored.encode_to_vec()) }
}

fn gap(node_id: u32, first_seq: u64, last_seq: u64, recorded_ms: i64, reason: &str) -> GapRow {
    GapRow { node_id, first_seq, last_seq, recorded_ms, reason: reason.to_string() }
}

fn node(name: &str, node_id: u32, handled_through: u64, last_seen_ms: i64) -> NodeUpdate {
    NodeUpdate {
        name: name.to_string(),
        node_id,
        handled_through,
        live: NodeLive {
            last_seen_ms,
            last_sample_ms: last_seen_ms - 5,
            clock_skew_ms: Some(5),
            duplicates_dropped: 2,
            invalid_seqs: 1,
            interval_ms: 1000,
            boot_id: "boot-1".into(),
            agent_version: "0.1.0".into(),
        },
    }
}

fn pod(node_id: u32, pod_id: u32, uid: &str) -> PodRow {
    PodRow {
        node_id,
        pod_id,
        pod: PodRecord {
            uid: uid.into(),
            qos_class: "burstable".into(),
            cgroup_path: format!("kubepods.slice/pod{uid}"),
            host_network: false,
        },
    }
}

/// master-02: seqs 1..=3 stored, 4..=6 a spool-overflow gap, 7 stored; worker-01: 1..=2.
fn two_nodes() -> CommitSet {
    CommitSet {
        nodes: vec![node("master-02", 1, 7, 10_000), node("worker-01", 2, 2, 10_000)],
        pods: vec![pod(1, 1, "uid-a"), pod(1, 2, "uid-b"), pod(2, 1, "uid-c")],
        batches: vec![
            batch(1, 1, 1_000, 1),
            batch(1, 2, 2_000, 1),
            batch(1, 3, 3_000, 2),
            batch(1, 7, 7_000, 1),
            batch(2, 1, 1_000, 1),
            batch(2, 2, 2_000, 1),
        ],
        gaps: vec![gap(1, 4, 6, 7_000, "spool overflow: 3 samples dropped, limit 1024 bytes")],
    }
}

#[test]
fn a_commit_round_trips_through_load() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    store.commit(&two_nodes()).unwrap();
    let loaded = store.load().unwrap();
    assert_eq!(loaded.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["master-02", "worker-01"]);
    let master = &loaded[0];
    assert_eq!(master.record.node_id, 1);
    assert_eq!(master.record.committed_seq, 7);
    assert_eq!(master.record.batches, 4);
    assert_eq!(master.record.samples, 5);
    assert_eq!(master.record.clock_skew_ms, Some(5));
    assert_eq!(master.record.boot_id, "boot-1");
    assert_eq!(
        master.pods.iter().map(|(id, p)| (*id, p.uid.as_str())).collect::<Vec<_>>(),
        [(1, "uid-a"), (2, "uid-b")]
    );
    let latest = master.latest.as_ref().unwrap();
    assert_eq!((latest.seq, latest.received_ms), (7, 7_000));
    let decoded = StoredBatch::decode(latest.bytes.as_ref()).unwrap();
    assert_eq!(decoded.samples.len(), 1);
    assert_eq!(decoded.samples[0].pods[0].pod_ref, 1);
    assert_eq!(store.batches(1, 2..=3).unwrap().iter().map(|(seq, ..)| *seq).collect::<Vec<_>>(), [2, 3]);
}

#[test]
fn committed_data_survives_closing_and_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = Store::open(dir.path()).unwrap();
        store.commit(&two_nodes()).unwrap();
        // dropped without close(), as a crash after commit would leave it
    }
    let mut store = Store::open(dir.path()).unwrap();
    let loaded = store.load().unwrap();
    assert_eq!(loaded.len(), 2);
    assert_eq!(loaded[0].record.committed_seq, 7);
    assert_eq!(store.batches(1, 1..=u64::MAX).unwrap().len(), 4);
}

#[test]
fn a_second_open_of_the_same_store_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Store::open(dir.path()).unwrap();
    let error = Store::open(dir.path()).err().expect("the store is locked");
    assert!(matches!(error, Error::StoreInUse { .. }), "{error}");
    assert!(error.to_string().contains("in use by another process"), "{error}");
}

#[test]
fn committing_the_same_batch_again_counts_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let set = two_nodes();
    store.commit(&set).unwrap();
    store.commit(&set).unwrap();
    let report = store.report(10_000, true).unwrap();
    assert_eq!(report.nodes[0].batches, 4);
    assert_eq!(report.nodes[0].samples, 5);
    assert_eq!(report.nodes[0].unaccounted, Some(vec![]));
}

#[test]
fn committed_seq_never_goes_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    store.commit(&two_nodes()).unwrap();
    // a hello-only commit (handled_through 0) must not reset the committed seq
    store.commit(&CommitSet { nodes: vec![node("master-02", 1, 0, 11_000)], ..CommitSet::default() }).unwrap();
    let loaded = store.load().unwrap();
    assert_eq!(loaded[0].record.committed_seq, 7);
    assert_eq!(loaded[0].record.last_seen_ms, 11_000);
}

#[test]
fn retention_removes_old_rows_in_bounded_steps() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    store.commit(&two_nodes()).unwrap();
    // budget 2: only master-02's seqs 1 and 2 go in the first step
    let first = store.expire(3_500, 2).unwrap();
    assert_eq!(first, ExpireOutcome { batches: 2, gaps: 0, more: true });
    let second = store.expire(3_500, 100).unwrap();
    // master-02 seq 3; worker-01 seqs 1, 2
    assert_eq!(second, ExpireOutcome { batches: 3, gaps: 0, more: false });
    let report = store.report(10_000, true).unwrap();
    let master = &report.nodes[0];
    assert_eq!((master.first_seq, master.last_seq, master.batches, master.samples), (Some(7), Some(7), 1, 1));
    // the gap was recorded at 7_000, after the cutoff: kept, and still accounts for 4..=6
    assert_eq!(master.gaps.len(), 1);
    assert_eq!(master.retained_from_seq, 4);
    assert_eq!(master.unaccounted, Some(vec![]));
    let worker = &report.nodes[1];
    assert_eq!((worker.first_seq, worker.batches, worker.retained_from_seq), (None, 0, 3));
    assert_eq!(worker.committed_seq, 2, "retention never changes what was committed");
    // everything expires, gaps included
    assert_eq!(store.expire(100_000, 100).unwrap(), ExpireOutcome { batches: 1, gaps: 1, more: false });
    let report = store.report(10_000, true).unwrap();
    assert!(report.nodes[0].gaps.is_empty());
    assert_eq!(report.nodes[0].retained_from_seq, 8);
    assert_eq!(report.nodes[0].unaccounted, Some(vec![]));
}

#[test]
fn inspect_reports_a_stopped_store() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = Store::open(dir.path()).unwrap();
        store.commit(&two_nodes()).unwrap();
        store.close().unwrap();
    }
    let report = inspect(dir.path(), 10_500, true).unwrap();
    let json = serde_json::to_value(&report).unwrap();
    let expected = serde_json::json!({"nodes": [
        {
            "node": "master-02", "samples": 5, "batches": 4, "first_seq": 1, "last_seq": 7,
            "committed_seq": 7, "retained_from_seq": 1,
            "gaps": [{"first_seq": 4, "last_seq": 6, "reason": "spool overflow: 3 samples dropped, limit 1024 bytes", "recorded_ms": 7000}],
            "duplicates_dropped": 2, "invalid_seqs": 1, "clock_skew_ms": 5, "last_sample_ms": 9995,
            "last_seen_ms": 10000, "interval_ms": 1000, "stale": false, "boot_id": "boot-1",
            "agent_version": "0.1.0", "pods": 2, "unaccounted": [], "double_accounted": []
        },
        {
            "node": "worker-01", "samples": 2, "batches": 2, "first_seq": 1, "last_seq": 2,
            "committed_seq": 2, "retained_from_seq": 1, "gaps": [],
            "duplicates_dropped": 2, "invalid_seqs": 1, "clock_skew_ms": 5, "last_sample_ms": 9995,
            "last_seen_ms": 10000, "interval_ms": 1000, "stale": false, "boot_id": "boot-1",
            "agent_version": "0.1.0", "pods": 1, "unaccounted": [], "double_accounted": []
        }
    ]});
    assert_eq!(json, expected);
    // three intervals later the nodes are stale; without --verify the scan fields are absent
    let later = serde_json::to_value(inspect(dir.path(), 13_000, false).unwrap()).unwrap();
    assert_eq!(later["nodes"][0]["stale"], true);
    assert!(later["nodes"][0].get("unaccounted").is_none());
}

#[test]
fn inspect_refuses_a_missing_store_and_a_running_one() {
    let dir = tempfile::tempdir().unwrap();
    let error = inspect(dir.path(), 0, false).unwrap_err().to_string();
    assert!(error.contains("no bakery store"), "{error}");
    let _running = Store::open(dir.path()).unwrap();
    let error = inspect(dir.path(), 0, false).unwrap_err();
    assert!(matches!(error, Error::StoreInUse { .. }), "{error}");
}

#[test]
fn inspect_verify_finds_holes_the_committed_seq_does_not_explain() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = Store::open(dir.path()).unwrap();
        let mut set = two_nodes();
        set.gaps.clear(); // 4..=6 now unaccounted below committed 7
        store.commit(&set).unwrap();
    }
    let report = inspect(dir.path(), 10_000, true).unwrap();
    assert_eq!(report.nodes[0].unaccounted, Some(vec![SeqRange { first_seq: 4, last_seq: 6 }]));
}

#[test]
fn accounting_of_sequence_numbers() {
    let r = |first_seq, last_seq| SeqRange { first_seq, last_seq };
    // (from, through, stored, gaps, expected)
    type Case = (u64, u64, Vec<u64>, Vec<SeqRange>, Accounting);
    let cases: Vec<Case> = vec![
        // everything stored
        (1, 3, vec![1, 2, 3], vec![], Accounting::default()),
        // nothing yet
        (1, 0, vec![], vec![], Accounting::default()),
        // a gap fills the hole
        (1, 5, vec![1, 5], vec![r(2, 4)], Accounting::default()),
        // a hole in the middle and one at the end
        (1, 6, vec![1, 3], vec![], Accounting { unaccounted: vec![r(2, 2), r(4, 6)], double_accounted: vec![] }),
        // stored and also in a gap
        (1, 3, vec![1, 2, 3], vec![r(2, 2)], Accounting { unaccounted: vec![], double_accounted: vec![r(2, 2)] }),
        // stored beyond committed
        (1, 2, vec![1, 2, 3], vec![], Accounting { unaccounted: vec![], double_accounted: vec![r(3, 3)] }),
        // retention: everything below `from` is ignored
        (10, 12, vec![3, 10, 11, 12], vec![r(1, 2)], Accounting::default()),
        // a gap straddling `from`
        (5, 7, vec![7], vec![r(3, 6)], Accounting::default()),
    ];
    for (from, through, stored, gaps, expected) in cases {
        assert_eq!(account(from, through, &stored, &gaps), expected, "from {from} through {through} stored {stored:?}");
    }
}
