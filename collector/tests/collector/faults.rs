//! Faults the collector survives in process: a store file that is garbage or cut short is moved
//! aside and the collector serves again; a row that does not decode is skipped and the intact
//! data is served; the health endpoint answers the kubelet; a dying export task stops the
//! collector with a fault instead of leaving it half alive.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bakery_collector::export::hooks::{ExportFeed, FeedSnapshot};
use bakery_collector::store::STORE_FILE;

use crate::harness::*;

/// Streams `seqs` for `node` (timestamps 1000 * seq) and waits for their acks.
async fn stream(collector: &TestCollector, node: &str, seqs: std::ops::RangeInclusive<u64>) -> TestAgent {
    let mut agent = TestAgent::connect(&collector.url(), hello(node)).await;
    let last = *seqs.end();
    for seq in seqs {
        agent.send(batch_at(seq, 1_000 * seq as i64)).await;
    }
    agent.wait_ack(last).await;
    agent
}

fn store_file(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("data").join(STORE_FILE)
}

fn moved_aside(data: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("bakery.redb.corrupt-"))
        .collect()
}

/// Starts on the damaged store in `dir`; checks it was moved aside and the collector serves:
/// a new agent is welcomed at 0, streams, and what it sent is stored.
async fn serves_again_after_moving_aside(dir: tempfile::TempDir, damaged: &[u8]) {
    let collector = TestCollector::start_in(dir, |_| {}).await;
    let data = collector.dir.path().join("data");
    let moved = moved_aside(&data);
    assert_eq!(moved.len(), 1, "the damaged file was moved aside, not deleted");
    assert_eq!(std::fs::read(&moved[0]).unwrap(), damaged, "and kept as it was");
    let inner = collector.collector.as_ref().unwrap();
    assert_eq!(inner.moved_aside().map(|m| m.path.clone()), Some(moved[0].clone()));
    assert_eq!(inner.stats().stores_moved_aside.load(Ordering::Relaxed), 1);
    eventually("ready", || async { collector.probe("/readyz").await.0 == 200 }).await;

    let agent = stream(&collector, "node-a", 1..=5).await;
    assert_eq!(agent.welcome.committed_seq, 0, "a fresh store knows nothing");
    drop(agent);
    let (_dir, report) = collector.stop_and_inspect().await;
    let node = node_report(&report, "node-a");
    assert_eq!((node.batches, node.committed_seq), (5, 5));
    assert_eq!(node.unaccounted, Some(vec![]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_overwritten_with_garbage_is_moved_aside_and_the_collector_serves_again() {
    let collector = TestCollector::start().await;
    drop(stream(&collector, "node-a", 1..=5).await);
    let dir = collector.stop().await;
    let garbage = vec![0xa5u8; 256 * 1024];
    std::fs::write(store_file(&dir), &garbage).unwrap();
    serves_again_after_moving_aside(dir, &garbage).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_store_is_moved_aside_and_the_collector_serves_again() {
    let collector = TestCollector::start().await;
    drop(stream(&collector, "node-a", 1..=200).await);
    let dir = collector.stop().await;
    let file = store_file(&dir);
    let whole = std::fs::read(&file).unwrap();
    let half = whole[..whole.len() / 2].to_vec();
    std::fs::write(&file, &half).unwrap();
    serves_again_after_moving_aside(dir, &half).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_row_is_skipped_counted_and_the_intact_data_is_served() {
    let collector = TestCollector::start().await;
    drop(stream(&collector, "node-a", 1..=10).await);
    drop(stream(&collector, "node-b", 1..=10).await);
    let dir = collector.stop().await;
    {
        // Damage as a bad sector or a buggy writer would leave it, written with redb itself:
        // node-a's record and node-b's newest batch no longer decode.
        let garbage: &[u8] = &[0x0f, 0xff, 0xff, 0xff];
        let db = redb::Database::create(store_file(&dir)).unwrap();
        let txn = db.begin_write().unwrap();
        let nodes: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("nodes");
        let samples: redb::TableDefinition<(u32, u64), (i64, u32, &[u8])> = redb::TableDefinition::new("samples");
        txn.open_table(nodes).unwrap().insert("node-a", garbage).unwrap();
        let node_b_id = 2;
        txn.open_table(samples).unwrap().insert((node_b_id, 10), (10_000i64, 1u32, garbage)).unwrap();
        txn.commit().unwrap();
    }
    let collector = TestCollector::start_in(dir, |_| {}).await;
    assert!(
        collector.collector.as_ref().unwrap().moved_aside().is_none(),
        "one bad row is no reason to move the store"
    );
    assert_eq!(collector.collector.as_ref().unwrap().stats().corrupt_rows.load(Ordering::Relaxed), 2);
    eventually("ready", || async { collector.probe("/readyz").await.0 == 200 }).await;

    // node-b: its record is intact, its latest sample is the newest batch that decodes
    let b = collector.node("node-b").await;
    assert_eq!(b.committed_seq, 10);
    assert_eq!(b.latest.as_ref().map(|s| s.timestamp_ms), Some(9_000));
    let agent_b = stream(&collector, "node-b", 11..=12).await;
    assert_eq!(agent_b.welcome.committed_seq, 10, "node-b resumes where it was");
    // node-a: its record is gone, so its agent is asked for everything it still holds
    let agent_a = stream(&collector, "node-a", 1..=12).await;
    assert_eq!(agent_a.welcome.committed_seq, 0);
    drop((agent_a, agent_b));
    let (_dir, report) = collector.stop_and_inspect().await;
    let b = node_report(&report, "node-b");
    assert_eq!((b.batches, b.committed_seq, b.unaccounted.clone()), (12, 12, Some(vec![])));
    let a = node_report(&report, "node-a");
    assert_eq!((a.batches, a.committed_seq, a.unaccounted.clone()), (12, 12, Some(vec![])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_endpoint_answers_livez_and_readyz_and_nothing_else() {
    let collector = TestCollector::start().await;
    eventually("ready", || async { collector.probe("/readyz").await.0 == 200 }).await;
    let (status, body) = collector.probe("/readyz").await;
    assert_eq!((status, body.as_str()), (200, "ready: the store is open and commits succeed\n"));
    assert_eq!(collector.probe("/livez").await, (200, "live\n".to_string()));
    assert_eq!(collector.probe("/metrics").await.0, 404, "no data here");
    let inner = collector.collector.as_ref().unwrap();
    let addr = inner.health_addr().unwrap();
    inner.begin_shutdown();
    // not ready as soon as the shutdown begins, so the Service stops sending new streams
    let answer = bakery_lab::http::get(addr, "/readyz", WAIT).await.ok();
    assert!(answer.as_ref().is_none_or(|response| response.status == 503), "{answer:?}");
    let collector = collector.collector.unwrap();
    let report = tokio::time::timeout(WAIT, collector.wait()).await.unwrap().unwrap();
    assert_eq!(report.fault, None, "a requested shutdown is no fault");
}

/// An export feed that panics on its `n`-th read, as a bug in the export path would.
struct PanickingFeed {
    reads: AtomicUsize,
    panic_at: usize,
}

impl ExportFeed for PanickingFeed {
    fn read(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = FeedSnapshot> + Send + '_>> {
        Box::pin(async move {
            let read = self.reads.fetch_add(1, Ordering::Relaxed) + 1;
            assert!(read < self.panic_at, "injected: the export feed fails on read {read}");
            FeedSnapshot::default()
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_task_that_dies_stops_the_collector_with_a_fault() {
    let collector = TestCollector::start_with(|config| {
        config.export.hooks.feed = Some(Arc::new(PanickingFeed { reads: AtomicUsize::new(0), panic_at: 3 }));
        config.export.otlp = Some(bakery_collector::export::OtlpSettings {
            protocol: bakery_collector::export::Protocol::HttpProtobuf,
            interval: Duration::from_millis(100),
            export_timeout: Duration::from_millis(200),
            request_timeout: Duration::from_millis(200),
            tls: Default::default(),
        });
    })
    .await;
    let mut agent = TestAgent::connect(&collector.url(), hello("node-a")).await;
    agent.send(batch(1)).await;
    agent.wait_ack(1).await;
    let health = collector.collector.as_ref().unwrap().health().clone();
    let inner = collector.collector.unwrap();
    let report = tokio::time::timeout(WAIT, inner.wait()).await.expect("stopped by itself").expect("a report");
    assert_eq!(report.fault.as_deref(), Some("the OTLP export task ended"));
    assert_eq!(report.uncommitted, 0, "the committer was fine: everything received was committed");
    assert!(health.liveness().unwrap_err().contains("the OTLP export task ended"));
    assert!(health.readiness().is_err());
    // the stream got its final ack and was closed
    let status = agent.expect_error().await;
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(agent.acked, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requested_shutdown_with_metrics_served_is_no_fault() {
    for _ in 0..20 {
        let collector = TestCollector::start_with(|config| {
            config.export.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
            config.export.metrics_listen_required = true;
        })
        .await;
        let inner = collector.collector.unwrap();
        let report = tokio::time::timeout(WAIT, inner.stop()).await.unwrap().unwrap();
        assert_eq!(report.fault, None);
    }
}
