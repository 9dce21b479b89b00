//! Root-only: a full disk (a small tmpfs under the data dir). Commits fail with a clear error,
//! nothing is acknowledged, `/readyz` says not ready (and why) while `/livez` stays live, every
//! agent keeps being served, and once space is back everything held is committed and
//! acknowledged and the collector is ready again.

use std::path::{Path, PathBuf};
use std::process::Command;

use bakery_proto::v1::agent_message::Kind as AgentKind;
use bakery_proto::v1::{AgentMessage, Batch, Unavailable};

use bakery_lab::require_root;

use crate::harness::*;

/// A tmpfs mounted for the test, unmounted on drop (also when the test fails).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "bakery-test", path.to_str().unwrap()])
            .status()
            .expect("mount runs");
        assert!(status.success(), "mounting a tmpfs on {}", path.display());
        Tmpfs(path.to_path_buf())
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}"), self.0.to_str().unwrap()])
            .status()
            .expect("mount runs");
        assert!(status.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A batch of about 64 KiB, so a few hundred fill a small disk.
fn heavy_batch(seq: u64) -> AgentMessage {
    let mut sample = sample(bakery_collector::now_ms());
    sample.unavailable = vec![Unavailable { signal: "filler".into(), reason: format!("{seq:x}").repeat(16 * 1024) }];
    AgentMessage { kind: Some(AgentKind::Batch(Batch { seq, new_pods: vec![], samples: vec![sample] })) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_a_full_disk_stops_acks_keeps_serving_and_recovers() {
    require_root("root_a_full_disk_stops_acks_keeps_serving_and_recovers");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let disk = Tmpfs::mount(&data, "4m");
    let collector = TestCollector::start_in(dir, |config| {
        config.data_dir = data.clone();
        // The heavy batches carry their bulk in one long string: let it through uncut.
        config.limits.max_string_bytes = 1 << 20;
    })
    .await;
    let mut agent = TestAgent::connect(&collector.url(), hello("node-a")).await;
    let (status, body) = collector.probe("/readyz").await;
    assert_eq!(status, 200, "ready before the disk fills: {body}");

    // Fill the disk: send until acks stop coming.
    let mut seq = 0;
    let mut stuck_at = None;
    while seq < 400 {
        seq += 1;
        agent.send(heavy_batch(seq)).await;
        // wait briefly for the ack; a full disk shows as no ack
        if tokio::time::timeout(std::time::Duration::from_millis(800), agent.wait_ack(seq)).await.is_err() {
            stuck_at = Some(seq);
            break;
        }
    }
    let stuck_at = stuck_at.expect("a 4 MiB disk fills before 400 batches of 64 KiB");
    let acked_before = agent.acked;
    assert!(acked_before < stuck_at);
    eventually("failed commits are counted", || async {
        collector.collector.as_ref().unwrap().stats().failed_commits.load(std::sync::atomic::Ordering::Relaxed) >= 2
    })
    .await;
    assert_eq!(agent.acked, acked_before, "nothing is acknowledged while the disk is full");
    let (status, body) = collector.probe("/readyz").await;
    assert_eq!(status, 503, "not ready while commits fail: {body}");
    assert!(body.contains("commits fail"), "the body says why: {body}");
    let (status, body) = collector.probe("/livez").await;
    assert_eq!(status, 200, "a full disk is no reason to restart the collector: {body}");

    // The collector keeps serving: queries answer and another agent is welcomed.
    assert_eq!(collector.node("node-a").await.committed_seq, acked_before);
    let other = TestAgent::connect(&collector.url(), hello("node-b")).await;
    assert_eq!(other.welcome.committed_seq, 0);

    // Space comes back: everything held is committed and acknowledged, in order.
    disk.resize("256m");
    assert_eq!(agent.wait_ack(stuck_at).await, stuck_at);
    eventually("ready again", || async { collector.probe("/readyz").await.0 == 200 }).await;
    drop(other);
    let (_dir, report) = collector.stop_and_inspect().await;
    let node = node_report(&report, "node-a");
    assert_eq!((node.batches, node.last_seq, node.committed_seq), (stuck_at, Some(stuck_at), stuck_at));
    assert_eq!(node.unaccounted, Some(vec![]));
    drop(disk);
}
