//! Documented limits under load: a flooding agent is slowed to its rate limit while a normal
//! agent's acks keep arriving; a silent node turns stale after 3 intervals.

use std::time::{Duration, Instant};

use bakery_collector::limits::{MIN_BURST, RATE_MULTIPLIER};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_agent_is_slowed_to_its_limit_while_a_normal_agent_keeps_being_acked() {
    let collector = TestCollector::start().await;
    let url = collector.url();
    // Declares 1 s, so its limit is 20 batches/s after a burst of 100.
    let flood = TestAgent::connect(&url, hello("flood")).await;
    let flood_start = Instant::now();
    let flood_task = tokio::spawn(async move {
        // 100 times its declared rate, for 3 s: it offers 300 batches.
        let mut seq = 0;
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            seq += 1;
            if !flood.try_send(batch(seq)).await {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (flood, seq)
    });

    // A normal agent at 10 Hz, waiting for each ack.
    let mut normal = TestAgent::connect(&url, {
        let mut h = hello("normal");
        h.interval_ms = 100;
        h
    })
    .await;
    let mut worst = Duration::ZERO;
    for seq in 1..=25 {
        let sent = Instant::now();
        normal.send(batch(seq)).await;
        normal.wait_ack(seq).await;
        worst = worst.max(sent.elapsed());
        tokio::time::sleep(Duration::from_millis(100).saturating_sub(sent.elapsed())).await;
    }
    let (mut flood, offered) = flood_task.await.unwrap();
    let elapsed = flood_start.elapsed().as_secs_f64();
    let flood_committed = collector.node("flood").await.committed_seq;
    // the burst, the rate, and the first message (read before any token is taken)
    let allowed = MIN_BURST + RATE_MULTIPLIER * elapsed + 1.0;
    // ~100/s for 3 s; a loaded CI machine oversleeps, so ask for at least half.
    assert!(offered > 150, "the flood offered {offered} batches");
    assert!(
        (flood_committed as f64) <= allowed,
        "the flood got {flood_committed} batches through in {elapsed:.1} s; the limit allows {allowed:.0}"
    );
    assert!(flood_committed >= MIN_BURST as u64, "the burst is accepted at once: {flood_committed}");
    // Commits are every 200 ms; 2 s leaves room for a loaded machine while
    // still failing if the normal agent waited behind the whole 3 s flood.
    assert!(worst < Duration::from_secs(2), "the normal agent's slowest ack took {worst:?}");
    // The flood is delayed, not refused: its stream is still open and being acked.
    let acked = flood.wait_ack(flood_committed).await;
    assert!(acked >= flood_committed);
    collector.stop().await;
}

#[tokio::test]
async fn a_silent_node_becomes_stale_after_three_intervals() {
    let collector = TestCollector::start().await;
    let mut h = hello("quiet");
    h.interval_ms = 100;
    let mut agent = TestAgent::connect(&collector.url(), h).await;
    // The collector hears the batch after this instant, so it is stale no earlier than 300 ms on.
    let last_sent = Instant::now();
    agent.send(batch(1)).await;
    agent.wait_ack(1).await;
    let status = collector.node("quiet").await;
    if last_sent.elapsed() < Duration::from_millis(250) {
        assert!(!status.stale, "just heard from");
    }
    let c = &collector;
    eventually("stale", || async move { c.node("quiet").await.stale }).await;
    // The collector's clock has millisecond granularity: allow 2 ms of rounding.
    assert!(last_sent.elapsed() >= Duration::from_millis(298), "stale only after 3 intervals of 100 ms");
    let status = collector.node("quiet").await;
    assert!(status.connected, "stale is about silence, not the connection");
    // speaking again makes it fresh (checked only while 3 intervals have not passed again)
    let spoke = Instant::now();
    agent.send(batch(2)).await;
    agent.wait_ack(2).await;
    let status = collector.node("quiet").await;
    if spoke.elapsed() < Duration::from_millis(300) {
        assert!(!status.stale, "fresh again after a message");
    }
    collector.stop().await;
}
