//! Committer tests with a store double that fails on demand: nothing is acknowledged while
//! commits fail (and readiness says so), the work is kept and retried, and the queue is
//! bounded; and with a real store, that `--retention-size` keeps the file in bounds.

use std::sync::Mutex;

use super::*;
use crate::nodes::Registry;
use crate::store::{BatchRow, CommitSet, ExpireOutcome, StoreSize};

#[derive(Default, Debug)]
struct FakeState {
    fail: bool,
    commits: Vec<CommitSet>,
    attempts: u32,
    reopens: u32,
    expire_cutoffs: Vec<i64>,
}

#[derive(Clone, Default, Debug)]
struct FakeStore(Arc<Mutex<FakeState>>);

impl Durable for FakeStore {
    fn commit(&mut self, set: &CommitSet) -> Result<()> {
        let mut state = self.0.lock().unwrap();
        state.attempts += 1;
        if state.fail {
            return Err(crate::Error::Store(redb::Error::Io(std::io::Error::from(std::io::ErrorKind::StorageFull))));
        }
        state.commits.push(set.clone());
        Ok(())
    }
    fn expire(&mut self, cutoff_ms: i64, _budget: u64) -> Result<ExpireOutcome> {
        let mut state = self.0.lock().unwrap();
        state.expire_cutoffs.push(cutoff_ms);
        // the first call finds a backlog larger than one step
        Ok(ExpireOutcome { batches: 10, gaps: 0, bytes: 0, more: state.expire_cutoffs.len() == 1 })
    }
    fn trim_oldest(&mut self, _bytes: u64, _budget: u64) -> Result<ExpireOutcome> {
        Ok(ExpireOutcome::default())
    }
    fn size(&mut self) -> Result<StoreSize> {
        Ok(StoreSize::default())
    }
    fn reopen(&mut self) -> Result<()> {
        self.0.lock().unwrap().reopens += 1;
        Ok(())
    }
    fn is_open(&self) -> bool {
        true
    }
    fn corrupt_rows(&self) -> u64 {
        0
    }
}

fn health() -> Arc<Health> {
    Arc::new(Health::new(Duration::from_secs(60), Duration::from_secs(60)))
}

fn config() -> CommitConfig {
    CommitConfig {
        interval: Duration::from_millis(10),
        max_retry_delay: Duration::from_millis(40),
        final_flush_timeout: Duration::from_millis(300),
        ..CommitConfig::default()
    }
}

fn item(node: &Arc<Node>, seq: u64) -> QueueItem {
    QueueItem {
        node: node.clone(),
        pods: Vec::new(),
        gaps: Vec::new(),
        batch: Some(BatchRow {
            node_id: node.id,
            seq,
            received_ms: 0,
            sample_count: 1,
            bytes: prost::bytes::Bytes::from_static(b"x"),
        }),
        handled_through: seq,
    }
}

/// Waits until `done` holds, failing after 5 s.
async fn eventually(what: &str, done: impl FnMut() -> bool) {
    if let Err(error) = bakery_lab::wait_until_async(what, Duration::from_secs(5), done).await {
        panic!("{error}");
    }
}

#[tokio::test]
async fn commits_gathered_items_in_one_transaction_then_marks_them_committed() {
    let registry = Registry::default();
    let a = registry.get_or_create("a");
    let b = registry.get_or_create("b");
    let store = FakeStore::default();
    let (tx, rx) = mpsc::channel(64);
    let (_down_tx, down) = watch::channel(false);
    let committer = tokio::spawn(run(store.clone(), rx, config(), Arc::default(), health(), down));
    for seq in 1..=3 {
        tx.send(item(&a, seq)).await.unwrap();
    }
    tx.send(item(&b, 1)).await.unwrap();
    eventually("a committed through 3", || a.committed_seq() == 3 && b.committed_seq() == 1).await;
    drop(tx);
    let exit = committer.await.unwrap();
    assert_eq!(exit.uncommitted, 0);
    let state = store.0.lock().unwrap();
    let batches: usize = state.commits.iter().map(|c| c.batches.len()).sum();
    assert_eq!(batches, 4);
    for commit in &state.commits {
        let mut ids: Vec<u32> = commit.nodes.iter().map(|n| n.node_id).collect();
        ids.dedup();
        assert_eq!(ids.len(), commit.nodes.len(), "one node update per node and commit");
    }
}

#[tokio::test]
async fn nothing_is_acknowledged_while_the_store_fails_and_everything_once_it_recovers() {
    let registry = Registry::default();
    let a = registry.get_or_create("a");
    let store = FakeStore::default();
    store.0.lock().unwrap().fail = true;
    let stats = Arc::new(CommitStats::default());
    let health = health();
    health.set_store_open(true);
    let (tx, rx) = mpsc::channel(64);
    let (_down_tx, down) = watch::channel(false);
    let committer = tokio::spawn(run(store.clone(), rx, config(), stats.clone(), health.clone(), down));
    for seq in 1..=5 {
        tx.send(item(&a, seq)).await.unwrap();
    }
    eventually("three failed attempts", || store.0.lock().unwrap().attempts >= 3).await;
    assert_eq!(a.committed_seq(), 0, "a failed commit must not be acknowledged");
    let why = health.readiness().expect_err("not ready while commits fail");
    assert!(why.contains("commits fail"), "{why}");
    assert!(store.0.lock().unwrap().reopens >= 1, "an I/O error reopens the store");
    store.0.lock().unwrap().fail = false;
    eventually("committed after recovery", || a.committed_seq() == 5).await;
    assert!(stats.failed_commits.load(Ordering::Relaxed) >= 3);
    assert_eq!(health.readiness().map(|_| ()), Ok(()), "ready again once a commit succeeded");
    drop(tx);
    committer.await.unwrap();
    let state = store.0.lock().unwrap();
    let seqs: Vec<u64> = state.commits.iter().flat_map(|c| c.batches.iter().map(|b| b.seq)).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5], "kept in order, none lost, none twice");
}

#[tokio::test]
async fn while_the_store_fails_the_pending_work_is_bounded_and_the_queue_fills() {
    let registry = Registry::default();
    let a = registry.get_or_create("a");
    let store = FakeStore::default();
    store.0.lock().unwrap().fail = true;
    let (tx, rx) = mpsc::channel(4);
    let (_down_tx, down) = watch::channel(false);
    let config = CommitConfig { max_pending_items: 8, ..config() };
    let committer = tokio::spawn(run(store.clone(), rx, config, Arc::default(), health(), down));
    let mut accepted = 0u64;
    let deadline = Instant::now() + Duration::from_secs(5);
    // Offer far more than the bounds; the queue must start refusing.
    loop {
        match tx.try_send(item(&a, accepted + 1)) {
            Ok(()) => accepted += 1,
            Err(mpsc::error::TrySendError::Full(_)) if accepted >= 12 => break,
            Err(_) => {}
        }
        assert!(Instant::now() < deadline && accepted <= 12, "the queue never filled: {accepted} accepted");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(tx.try_send(item(&a, accepted + 1)).is_err(), "8 pending + 4 queued is the bound");
    store.0.lock().unwrap().fail = false;
    eventually("everything committed", || a.committed_seq() == 12).await;
    drop(tx);
    committer.await.unwrap();
}

#[tokio::test]
async fn shutdown_flushes_what_was_queued() {
    let registry = Registry::default();
    let a = registry.get_or_create("a");
    let store = FakeStore::default();
    let (tx, rx) = mpsc::channel(64);
    let (down_tx, down) = watch::channel(false);
    // A long interval: only the shutdown makes this commit happen quickly.
    let config = CommitConfig { interval: Duration::from_secs(3600), ..config() };
    let committer = tokio::spawn(run(store.clone(), rx, config, Arc::default(), health(), down));
    // The first tick of an interval fires at once; let it pass before queueing.
    tokio::time::sleep(Duration::from_millis(20)).await;
    tx.send(item(&a, 1)).await.unwrap();
    tx.send(item(&a, 2)).await.unwrap();
    down_tx.send(true).unwrap();
    drop(tx);
    let exit = tokio::time::timeout(Duration::from_secs(5), committer).await.expect("flushed in time").unwrap();
    assert_eq!(exit.uncommitted, 0);
    assert_eq!(a.committed_seq(), 2);
}

#[tokio::test]
async fn shutdown_gives_up_on_a_store_that_keeps_failing_and_reports_it() {
    let registry = Registry::default();
    let a = registry.get_or_create("a");
    let store = FakeStore::default();
    store.0.lock().unwrap().fail = true;
    let (tx, rx) = mpsc::channel(64);
    let (down_tx, down) = watch::channel(false);
    let committer = tokio::spawn(run(store.clone(), rx, config(), Arc::default(), health(), down));
    tx.send(item(&a, 1)).await.unwrap();
    down_tx.send(true).unwrap();
    drop(tx);
    let exit = tokio::time::timeout(Duration::from_secs(5), committer).await.expect("gave up in time").unwrap();
    assert_eq!(exit.uncommitted, 1);
    assert_eq!(a.committed_seq(), 0);
}

#[tokio::test]
async fn retention_runs_periodically_and_continues_a_backlog_at_once() {
    let store = FakeStore::default();
    let (tx, rx) = mpsc::channel(4);
    let (_down_tx, down) = watch::channel(false);
    let retention = Duration::from_secs(3600);
    let config = CommitConfig { retention, retention_check: Duration::from_millis(300), ..config() };
    let started_ms = crate::now_ms();
    let committer = tokio::spawn(run(store.clone(), rx, config, Arc::default(), health(), down));
    // first step after one check period; the backlog's second step follows within a tick
    eventually("two retention steps", || store.0.lock().unwrap().expire_cutoffs.len() >= 2).await;
    let elapsed = Instant::now();
    let cutoffs = store.0.lock().unwrap().expire_cutoffs.clone();
    assert_eq!(cutoffs.len(), 2, "the third waits for the next check period");
    let expected = started_ms - retention.as_millis() as i64;
    assert!(
        cutoffs.iter().all(|&c| (expected..expected + 5_000).contains(&c)),
        "cutoff = now - retention: {cutoffs:?}"
    );
    eventually("a third step one period later", || store.0.lock().unwrap().expire_cutoffs.len() >= 3).await;
    assert!(elapsed.elapsed() >= Duration::from_millis(250));
    drop(tx);
    committer.await.unwrap();
}

#[test]
fn retry_delays_grow_to_the_cap() {
    let interval = Duration::from_millis(200);
    let max = Duration::from_secs(5);
    let delays: Vec<u128> = (1..=6).map(|f| retry_delay(interval, f, max).as_millis()).collect();
    assert_eq!(delays, [400, 800, 1600, 3200, 5000, 5000]);
}

#[tokio::test]
async fn the_injected_fault_panics_after_the_commit_and_before_its_ack() {
    let registry = Registry::default();
    let a = registry.get_or_create("a");
    let store = FakeStore::default();
    let (tx, rx) = mpsc::channel(64);
    let (_down_tx, down) = watch::channel(false);
    let config = CommitConfig { panic_after_commits: Some(2), ..config() };
    let committer = tokio::spawn(run(store.clone(), rx, config, Arc::default(), health(), down));
    tx.send(item(&a, 1)).await.unwrap();
    eventually("the first commit is acknowledged", || a.committed_seq() == 1).await;
    tx.send(item(&a, 2)).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), committer).await.expect("the committer ends");
    let panic = ended.expect_err("the committer panicked");
    assert!(panic.is_panic());
    assert_eq!(store.0.lock().unwrap().commits.len(), 2, "the second commit happened");
    assert_eq!(a.committed_seq(), 1, "but was never acknowledged");
}

/// The real store under `--retention-size`: about 2.4 KB per batch, like a node with 30 pods.
#[tokio::test]
async fn retention_by_size_keeps_the_file_near_its_limit_and_removes_the_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::Store::open(dir.path()).unwrap();
    let path = store.path().to_path_buf();
    let registry = Registry::default();
    let nodes = [registry.get_or_create("a"), registry.get_or_create("b")];
    let limit: u64 = 4 << 20;
    let config = CommitConfig {
        interval: Duration::from_millis(5),
        retention_size_bytes: Some(limit),
        size_check: Duration::from_millis(1),
        retention_budget: 400,
        ..config()
    };
    let stats = Arc::new(CommitStats::default());
    let (tx, rx) = mpsc::channel(64);
    let (down_tx, down) = watch::channel(false);
    let committer = tokio::spawn(run(store, rx, config, stats.clone(), health(), down));
    let payload = prost::bytes::Bytes::from(vec![0x42u8; 2400]);
    let batches: u64 = 4000; // 19 MB of payload with both nodes: more than four times the limit
    let base_ms = crate::now_ms();
    for seq in 1..=batches {
        for node in &nodes {
            let mut item = item(node, seq);
            if let Some(batch) = item.batch.as_mut() {
                batch.bytes = payload.clone();
                batch.received_ms = base_ms + i64::try_from(seq).unwrap();
            }
            tx.send(item).await.unwrap();
        }
        if seq % 50 == 0 {
            // let the size checks run between commits, as they would at a real pace
            eventually("caught up", || nodes.iter().all(|n| n.committed_seq() == seq)).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    eventually("everything committed", || nodes.iter().all(|n| n.committed_seq() == batches)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    down_tx.send(true).unwrap();
    drop(tx);
    let exit = committer.await.unwrap();
    assert!(stats.trimmed_batches.load(Ordering::Relaxed) > 0, "the limit was reached");
    let disk = std::fs::metadata(&path).map(|m| std::os::unix::fs::MetadataExt::blocks(&m) * 512).unwrap();
    // The check follows the file, so it may overshoot by what arrives between two checks
    // (here 100 rows, 6 % of the limit).
    assert!(disk <= limit + limit / 8, "the file takes {disk} bytes on disk, the limit is {limit}");
    let mut store = exit.store;
    let report = store.report(crate::now_ms(), true).unwrap();
    for node in &report.nodes {
        assert_eq!(node.last_seq, Some(batches), "{}: the newest samples are kept", node.node);
        let first = node.first_seq.unwrap();
        assert!(first > batches / 2, "{}: the oldest went first (first kept {first})", node.node);
        assert_eq!(node.retained_from_seq, first, "{}", node.node);
        assert_eq!(node.batches, batches - first + 1, "{}: counts follow the removals", node.node);
        assert_eq!(node.unaccounted, Some(vec![]), "{}", node.node);
    }
    // Both nodes lose about as much: the oldest of all nodes go first.
    let firsts: Vec<u64> = report.nodes.iter().map(|n| n.first_seq.unwrap()).collect();
    assert!(firsts[0].abs_diff(firsts[1]) <= 1, "{firsts:?}");
}
