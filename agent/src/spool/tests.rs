//! The spool through its facade: numbering, acknowledgements, overflow gaps, restarts and damage on disk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pb::agent_message::Kind;

use super::memory::ENTRY_OVERHEAD_BYTES;
use super::record::encode_record;
use super::*;

/// A batch whose single sample is `size` bytes of pod data, with a
/// timestamp that identifies it.
pub(super) fn batch(stamp: i64, size: usize) -> pb::Batch {
    pb::Batch {
        seq: 0,
        new_pods: vec![pb::PodIdentity { pod_ref: 3, uid: format!("uid-{stamp}"), ..Default::default() }],
        samples: vec![pb::Sample {
            timestamp_ms: stamp,
            unavailable: vec![pb::Unavailable { signal: "x".repeat(size), reason: String::new() }],
            ..Default::default()
        }],
    }
}

/// Everything the spool would send after `from`, in order.
fn drain(spool: &mut Spool, from: u64) -> Vec<Kind> {
    let mut out = Vec::new();
    let mut cursor = from;
    while let Some(kind) = spool.next_after(cursor) {
        cursor = match &kind {
            Kind::Batch(b) => b.seq,
            Kind::Gap(g) => g.last_seq,
            Kind::Hello(_) | Kind::Replay(_) => unreachable!(),
        };
        out.push(kind);
    }
    out
}

/// (seq, timestamp) of batches and (first, last, reason) of gaps, readable in asserts.
#[derive(Debug, PartialEq)]
enum Seen {
    B(u64, i64),
    G(u64, u64, String),
}

fn seen(kinds: &[Kind]) -> Vec<Seen> {
    kinds
        .iter()
        .map(|k| match k {
            Kind::Batch(b) => Seen::B(b.seq, b.samples[0].timestamp_ms),
            Kind::Gap(g) => Seen::G(g.first_seq, g.last_seq, g.reason.clone()),
            Kind::Hello(_) | Kind::Replay(_) => unreachable!(),
        })
        .collect()
}

/// A disk spool that leaves fsync to rotation: what these tests replay
/// comes from the page cache, as after `kill -9`.
fn disk_config(dir: &Path, max_bytes: u64) -> SpoolConfig {
    SpoolConfig { dir: Some(dir.to_path_buf()), max_bytes, fsync_interval: Duration::from_secs(3600) }
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    files.sort();
    files
}

#[test]
fn a_disk_spools_last_batch_comes_from_memory_and_the_others_from_the_disk_with_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(&disk_config(dir.path(), 1 << 20)).unwrap();
    spool.push(batch(1, 10));
    spool.push(batch(2, 10));
    let bytes = |stamp| pb::Batch { seq: 0, ..batch(stamp, 10) }.encode_to_vec();
    // The last one pushed is kept in memory: no read from the disk.
    let Some(Pending::Batch { seq: 2, payload: Cow::Borrowed(last) }) = spool.pending_after(1) else {
        panic!("the last batch, borrowed")
    };
    assert_eq!(last, bytes(2));
    // An older one is read back from its segment.
    let Some(Pending::Batch { seq: 1, payload: Cow::Owned(first) }) = spool.pending_after(0) else {
        panic!("the first batch, read back")
    };
    assert_eq!(first, bytes(1));
    let expected = |stamp, seq| Some(pb::agent_message::Kind::Batch(pb::Batch { seq, ..batch(stamp, 10) }));
    assert_eq!(spool.next_after(1), expected(2, 2), "decoded for a replay");
}

#[test]
fn a_held_batch_that_does_not_parse_is_sent_as_an_unreadable_gap() {
    let mut spool = Spool::in_memory(1 << 20);
    spool.push_encoded(&[0xff, 0xff, 0xff]);
    let Some(Kind::Gap(gap)) = spool.next_after(0) else { panic!("a gap") };
    assert_eq!((gap.first_seq, gap.last_seq), (1, 1));
    assert!(gap.reason.contains("unreadable"), "{}", gap.reason);
}

#[test]
fn batches_get_growing_numbers_and_leave_only_when_acknowledged() {
    let mut spool = Spool::in_memory(DEFAULT_MAX_BYTES);
    for stamp in 1..=4 {
        assert_eq!(spool.push(batch(stamp * 10, 10)), stamp as u64);
    }
    assert_eq!(seen(&drain(&mut spool, 0)), [Seen::B(1, 10), Seen::B(2, 20), Seen::B(3, 30), Seen::B(4, 40)]);
    assert_eq!(seen(&drain(&mut spool, 2)), [Seen::B(3, 30), Seen::B(4, 40)], "resume after what was sent");
    spool.ack(2);
    assert_eq!(spool.oldest_seq(), 3);
    assert_eq!(seen(&drain(&mut spool, 0)), [Seen::B(3, 30), Seen::B(4, 40)], "acknowledged entries are gone");
    spool.ack(1);
    assert_eq!(spool.acked_seq(), 2, "an older ack changes nothing");
    spool.ack(4);
    assert!(spool.is_empty());
    assert_eq!((spool.oldest_seq(), spool.last_seq()), (5, 4));
    assert_eq!(spool.bytes(), 0);
}

#[test]
fn a_batch_keeps_its_pods_and_samples_through_the_spool() {
    let mut spool = Spool::in_memory(DEFAULT_MAX_BYTES);
    let original = batch(7, 100);
    spool.push(pb::Batch { seq: 99, ..original.clone() });
    let Some(Kind::Batch(sent)) = spool.next_after(0) else { panic!("expected a batch") };
    assert_eq!(sent, pb::Batch { seq: 1, ..original }, "the spool's number replaces the caller's");
}

#[test]
fn overflow_drops_the_oldest_and_reports_the_range_as_one_gap_in_order() {
    let per_entry = batch(0, 1000).encoded_len() as u64 + ENTRY_OVERHEAD_BYTES;
    let limit = per_entry * 5 + 10;
    let mut spool = Spool::in_memory(limit);
    for stamp in 1..=8 {
        spool.push(batch(stamp, 1000));
        assert!(spool.bytes() <= limit, "the limit holds after every push");
    }
    // 8 batches, room for 5 minus the gap's own bookkeeping: 1..=4 went.
    let reason = format!("spool overflow: 4 samples dropped, limit {limit} bytes");
    assert_eq!(
        seen(&drain(&mut spool, 0)),
        [Seen::G(1, 4, reason), Seen::B(5, 5), Seen::B(6, 6), Seen::B(7, 7), Seen::B(8, 8)]
    );
    assert_eq!(spool.stats().overflow_dropped, 4);
}

#[test]
fn a_gap_is_cut_to_what_the_collector_does_not_have_yet() {
    let per_entry = batch(0, 1000).encoded_len() as u64 + ENTRY_OVERHEAD_BYTES;
    let limit = per_entry * 3 + 10;
    let mut spool = Spool::in_memory(limit);
    for stamp in 1..=6 {
        spool.push(batch(stamp, 1000));
    }
    let all = seen(&drain(&mut spool, 0));
    let Seen::G(1, last, _) = all[0] else { panic!("expected a leading gap, got {all:?}") };
    // Batches 1 and 2 reached the collector before they were dropped.
    let after_two = seen(&drain(&mut spool, 2));
    let reason = format!("spool overflow: {} samples dropped, limit {limit} bytes", last - 2);
    assert_eq!(after_two[0], Seen::G(3, last, reason));
    spool.ack(2);
    assert!(matches!(&seen(&drain(&mut spool, 0))[0], Seen::G(3, l, _) if *l == last), "ack trims the gap");
}

#[test]
fn consecutive_overflows_merge_into_one_gap() {
    let per_entry = batch(0, 1000).encoded_len() as u64 + ENTRY_OVERHEAD_BYTES;
    let mut spool = Spool::in_memory(per_entry * 2 + 10);
    for stamp in 1..=20 {
        spool.push(batch(stamp, 1000));
    }
    let all = seen(&drain(&mut spool, 0));
    assert_eq!(all.len(), 2, "{all:?}");
    let limit = per_entry * 2 + 10;
    assert_eq!(all[0], Seen::G(1, 19, format!("spool overflow: 19 samples dropped, limit {limit} bytes")));
    assert_eq!(all[1], Seen::B(20, 20));
}

#[test]
fn numbers_handed_out_before_the_first_welcome_move_after_what_the_collector_has() {
    let mut spool = Spool::in_memory(DEFAULT_MAX_BYTES);
    spool.push(batch(1, 10));
    spool.push(batch(2, 10));
    spool.welcome(41);
    assert_eq!(seen(&drain(&mut spool, 41)), [Seen::B(42, 1), Seen::B(43, 2)]);
    assert_eq!(spool.push(batch(3, 10)), 44);
    spool.ack(44);
    spool.welcome(0);
    assert_eq!(spool.push(batch(4, 10)), 45, "after the first welcome numbers never move back");
}

#[test]
fn after_a_restart_committed_entries_of_the_earlier_run_go_and_new_numbers_stay() {
    let dir = tempfile::tempdir().unwrap();
    let config = disk_config(dir.path(), DEFAULT_MAX_BYTES);
    {
        let mut spool = Spool::open(&config).unwrap();
        for stamp in 1..=3 {
            spool.push(batch(stamp, 10));
        }
    }
    let mut spool = Spool::open(&config).unwrap();
    spool.push(batch(4, 10));
    // The earlier run sent 1 and 2 but was killed before their ack arrived.
    spool.welcome(2);
    assert_eq!(seen(&drain(&mut spool, 2)), [Seen::B(3, 3), Seen::B(4, 4)]);
}

#[test]
fn the_disk_spool_survives_a_restart_with_its_numbers_and_payloads() {
    let dir = tempfile::tempdir().unwrap();
    let config = disk_config(dir.path(), DEFAULT_MAX_BYTES);
    {
        let mut spool = Spool::open(&config).unwrap();
        for stamp in 1..=5 {
            spool.push(batch(stamp, 100));
        }
        spool.ack(2);
        // Dropped without sync, as after kill -9: the page cache has it.
    }
    let mut spool = Spool::open(&config).unwrap();
    assert!(spool.is_on_disk());
    assert_eq!(spool.acked_seq(), 2);
    assert_eq!(seen(&drain(&mut spool, 0)), [Seen::B(3, 3), Seen::B(4, 4), Seen::B(5, 5)]);
    assert_eq!(spool.push(batch(6, 100)), 6, "numbering continues after the restart");
    let pods: Vec<String> = spool.take_replayed_pods().into_iter().map(|p| p.uid).collect();
    assert!(pods.contains(&"uid-5".to_string()), "replayed pod identities are offered for adoption: {pods:?}");
}

#[test]
fn the_next_number_survives_even_when_everything_was_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let config = disk_config(dir.path(), 64 * 1024);
    {
        let mut spool = Spool::open(&config).unwrap();
        for stamp in 1..=50 {
            let seq = spool.push(batch(stamp, 500));
            spool.ack(seq);
        }
    }
    assert_eq!(segment_files(dir.path()).len(), 1, "fully acknowledged segments are deleted");
    let mut spool = Spool::open(&config).unwrap();
    assert!(spool.is_empty());
    assert_eq!(spool.push(batch(51, 10)), 51);
}

#[test]
fn acknowledged_segments_are_deleted_whole_and_the_rest_stay() {
    let dir = tempfile::tempdir().unwrap();
    let config = disk_config(dir.path(), 64 * 1024); // 4 KiB segments
    let mut spool = Spool::open(&config).unwrap();
    for stamp in 1..=40 {
        spool.push(batch(stamp, 1000));
    }
    let before = segment_files(dir.path()).len();
    assert!(before >= 8, "about 4 batches per 4 KiB segment: {before}");
    spool.ack(20);
    let after = segment_files(dir.path()).len();
    assert!(after < before && after >= 4, "segments of 1..=20 went, the rest stayed: {before} -> {after}");
    drop(spool);
    let mut spool = Spool::open(&config).unwrap();
    assert_eq!(drain(&mut spool, 0).len(), 20);
    assert_eq!(spool.oldest_seq(), 21);
}

#[test]
fn a_torn_last_record_is_ignored_and_the_rest_replays() {
    let dir = tempfile::tempdir().unwrap();
    let config = disk_config(dir.path(), DEFAULT_MAX_BYTES);
    {
        let mut spool = Spool::open(&config).unwrap();
        for stamp in 1..=3 {
            spool.push(batch(stamp, 100));
        }
    }
    let last = segment_files(dir.path()).pop().unwrap();
    let full = std::fs::read(&last).unwrap();
    let torn_record = encode_record(&Record::Batch { seq: 4, payload: &batch(4, 100).encode_to_vec() });
    for cut in [1, 7, 8, 20, torn_record.len() - 1] {
        let mut bytes = full.clone();
        bytes.extend_from_slice(&torn_record[..cut]);
        std::fs::write(&last, &bytes).unwrap();
        let mut spool = Spool::open(&config).unwrap();
        assert_eq!(seen(&drain(&mut spool, 0)), [Seen::B(1, 1), Seen::B(2, 2), Seen::B(3, 3)], "cut at {cut}");
        assert_eq!(spool.last_seq(), 3);
        drop(spool);
        // Reopening created a new active segment; keep only the torn one for the next cut.
        for file in segment_files(dir.path()) {
            if file != last {
                std::fs::remove_file(file).unwrap();
            }
        }
    }
}

#[test]
fn a_corrupt_record_in_the_middle_becomes_an_unreadable_gap() {
    let dir = tempfile::tempdir().unwrap();
    let config = disk_config(dir.path(), DEFAULT_MAX_BYTES);
    {
        let mut spool = Spool::open(&config).unwrap();
        for stamp in 1..=3 {
            spool.push(batch(stamp, 100));
        }
        // A later segment holds 4 and 5.
        spool.disk.as_mut().unwrap().rotate();
        spool.push(batch(4, 100));
        spool.push(batch(5, 100));
    }
    let files = segment_files(dir.path());
    let first = &files[0];
    let mut bytes = std::fs::read(first).unwrap();
    let flip = bytes.len() - 150; // inside the record of batch 2
    bytes[flip] ^= 0xff;
    std::fs::write(first, &bytes).unwrap();
    let mut spool = Spool::open(&config).unwrap();
    let all = seen(&drain(&mut spool, 0));
    assert_eq!(all.len(), 4, "{all:?}");
    assert_eq!(all[0], Seen::B(1, 1));
    let Seen::G(2, 3, reason) = &all[1] else { panic!("expected the unreadable range 2..=3: {all:?}") };
    assert!(reason.starts_with("spool unreadable: 2 samples"), "{reason}");
    assert_eq!(&all[2..], [Seen::B(4, 4), Seen::B(5, 5)]);
    drop(spool);
    let mut spool = Spool::open(&config).unwrap();
    assert_eq!(seen(&drain(&mut spool, 0)).len(), 4, "the unreadable gap itself was persisted");
}

#[test]
fn the_disk_spool_stays_within_its_limit_and_its_gap_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let limit = 64 * 1024;
    let config = disk_config(dir.path(), limit);
    {
        let mut spool = Spool::open(&config).unwrap();
        for stamp in 1..=200 {
            spool.push(batch(stamp, 1000));
            let on_disk: u64 = segment_files(dir.path()).iter().map(|f| f.metadata().unwrap().len()).sum();
            assert!(on_disk <= limit, "{on_disk} bytes on disk after push {stamp}");
        }
    }
    let mut spool = Spool::open(&config).unwrap();
    let all = seen(&drain(&mut spool, 0));
    let Seen::G(1, last_dropped, reason) = &all[0] else { panic!("expected a leading gap: {:?}", &all[..2]) };
    assert_eq!(reason, &format!("spool overflow: {last_dropped} samples dropped, limit {limit} bytes"));
    let batches: Vec<u64> = all[1..].iter().map(|s| if let Seen::B(seq, _) = s { *seq } else { 0 }).collect();
    let expected: Vec<u64> = (last_dropped + 1..=200).collect();
    assert_eq!(batches, expected, "everything after the gap is there, in order, exactly once");
    assert!(batches.len() > 40, "most of the limit holds data: {} batches kept", batches.len());
}

#[test]
fn a_renumbering_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = disk_config(dir.path(), DEFAULT_MAX_BYTES);
    {
        let mut spool = Spool::open(&config).unwrap();
        spool.push(batch(1, 10));
        spool.push(batch(2, 10));
        spool.welcome(100);
    }
    let mut spool = Spool::open(&config).unwrap();
    assert_eq!(seen(&drain(&mut spool, 0)), [Seen::B(101, 1), Seen::B(102, 2)]);
    assert_eq!(spool.push(batch(3, 10)), 103);
}

#[test]
fn two_agents_cannot_share_a_spool_directory() {
    let dir = tempfile::tempdir().unwrap();
    let config = disk_config(dir.path(), DEFAULT_MAX_BYTES);
    let _first = Spool::open(&config).unwrap();
    assert!(matches!(Spool::open(&config), Err(SpoolError::InUse(_))));
}

mod model {
    //! Random pushes, acks, welcomes and restarts against a small disk
    //! spool: every number is accounted for exactly once, in order.
    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Push(usize),
        Ack(u64),
        Restart,
        Welcome(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (10usize..3000).prop_map(Op::Push),
            2 => (0u64..8).prop_map(Op::Ack),
            1 => Just(Op::Restart),
            1 => (0u64..4).prop_map(Op::Welcome),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
        #[test]
        fn every_number_is_a_batch_or_in_a_gap_exactly_once(ops in proptest::collection::vec(op(), 1..120)) {
            let dir = tempfile::tempdir().unwrap();
            let limit = 32 * 1024;
            let config = disk_config(dir.path(), limit);
            let mut spool = Spool::open(&config).unwrap();
            // The payload each pushed number carried, by number.
            let mut pushed: BTreeMap<u64, i64> = BTreeMap::new();
            let mut stamp = 0;
            for op in ops {
                match op {
                    Op::Push(size) => {
                        stamp += 1;
                        let seq = spool.push(batch(stamp, size));
                        pushed.insert(seq, stamp);
                        prop_assert!(spool.bytes() <= limit + 4096, "{} bytes", spool.bytes());
                    }
                    // Acks only come after this run's first Welcome.
                    Op::Ack(_) if spool.provisional_from.is_some() => {}
                    Op::Ack(ahead) => {
                        let target = (spool.acked_seq() + ahead).min(spool.last_seq());
                        spool.ack(target);
                    }
                    Op::Welcome(ahead) => {
                        // The collector committed what was acked, and maybe a little more
                        // that was sent (never numbers this run has not sent yet).
                        let sendable = spool.provisional_from.map_or(spool.last_seq(), |from| from - 1);
                        let target = (spool.acked_seq() + ahead).min(sendable).max(spool.acked_seq());
                        spool.welcome(target);
                    }
                    Op::Restart => {
                        drop(spool);
                        spool = Spool::open(&config).unwrap();
                    }
                }
                let acked = spool.acked_seq();
                let mut expected = acked + 1;
                for kind in drain(&mut spool, acked) {
                    match kind {
                        Kind::Batch(b) => {
                            prop_assert_eq!(b.seq, expected);
                            prop_assert_eq!(Some(&b.samples[0].timestamp_ms), pushed.get(&b.seq), "payload of {}", b.seq);
                            expected += 1;
                        }
                        Kind::Gap(g) => {
                            prop_assert_eq!(g.first_seq, expected);
                            prop_assert!(g.reason.starts_with("spool overflow"), "{}", g.reason);
                            expected = g.last_seq + 1;
                        }
                        Kind::Hello(_) | Kind::Replay(_) => unreachable!(),
                    }
                }
                prop_assert_eq!(expected, spool.last_seq() + 1, "every number up to the last one is covered");
            }
        }
    }
}
