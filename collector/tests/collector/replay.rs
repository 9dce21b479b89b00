//! Replayed backlog beside live samples against an in-process collector: the Welcome offers
//! `ReplayLimits`, a `Replay` of several samples is stored one row per sequence number, live
//! samples interleaved with it are stored and shown at once while acks stay contiguous, and
//! a replay out of its lane's order is refused.

use bakery_collector::ingest::REASON_MISSING;
use bakery_proto::v1::agent_message::Kind as AgentKind;
use bakery_proto::v1::collector_message::Kind as CollectorKind;
use bakery_proto::v1::{AgentMessage, Batch, CollectorMessage, Gap, PodSample, Replay, replay};
use tonic::Code;

use crate::harness::*;

/// A `Replay` of the backlog through `through`: samples stamped `stamps`, numbered from `seq`.
fn replayed(through: u64, seq: u64, stamps: &[i64]) -> AgentMessage {
    let samples = stamps.iter().map(|stamp| sample(*stamp)).collect();
    let batch = Batch { seq, new_pods: vec![], samples };
    AgentMessage {
        kind: Some(AgentKind::Replay(Replay { through_seq: through, kind: Some(replay::Kind::Batch(batch)) })),
    }
}

fn replayed_gap(through: u64, first_seq: u64, last_seq: u64) -> AgentMessage {
    let gap = Gap { first_seq, last_seq, reason: "spool overflow: 2 samples dropped, limit 1024 bytes".into() };
    AgentMessage { kind: Some(AgentKind::Replay(Replay { through_seq: through, kind: Some(replay::Kind::Gap(gap)) })) }
}

/// Reads what the collector sends for a while: the highest ack seen.
async fn acks_for(agent: &mut TestAgent, millis: u64) -> u64 {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(millis);
    while let Ok(message) = tokio::time::timeout_at(deadline, agent.next()).await {
        if let Ok(Some(CollectorMessage { kind: Some(CollectorKind::Ack(ack)) })) = message {
            agent.acked = agent.acked.max(ack.committed_seq);
        }
    }
    agent.acked
}

#[tokio::test]
async fn live_samples_between_replays_are_stored_and_shown_at_once_and_acked_when_the_backlog_is() {
    let collector = TestCollector::start().await;
    let mut agent = TestAgent::connect(&collector.url(), hello("node-a")).await;
    let limits = agent.welcome.replay.expect("the Welcome offers ReplayLimits");
    assert_eq!((limits.max_samples, limits.max_pods), (1024, 512), "the caps of --max-sample-entries and pods");
    assert!(limits.max_message_bytes > 0 && limits.max_message_bytes as usize <= 4 << 20, "{limits:?}");

    // The backlog is 1..=10: four samples, a gap, four samples; live 11 and 12 come between.
    agent.send(replayed(10, 1, &[1_001, 1_002, 1_003, 1_004])).await;
    agent.wait_ack(4).await;
    let now = bakery_collector::now_ms();
    agent.send(batch_at(11, now)).await;
    agent.send(batch_at(12, now + 1)).await;
    eventually("live 12 is the latest sample shown", || async {
        collector.node("node-a").await.latest.is_some_and(|s| s.timestamp_ms == now + 1)
    })
    .await;
    assert_eq!(acks_for(&mut agent, 300).await, 4, "nothing past the backlog's progress is acknowledged");
    assert_eq!(collector.node("node-a").await.committed_seq, 4);

    agent.send(replayed_gap(10, 5, 6)).await;
    agent.send(replayed(10, 7, &[1_007, 1_008, 1_009, 1_010])).await;
    assert_eq!(agent.wait_ack(12).await, 12, "the backlog's end joins the live samples ahead of it");
    let status = collector.node("node-a").await;
    assert_eq!(status.latest.map(|s| s.timestamp_ms), Some(now + 1), "an older replayed sample is not the latest");
    agent.send(batch(13)).await;
    agent.wait_ack(13).await;

    let (_dir, report) = collector.stop_and_inspect().await;
    let node = node_report(&report, "node-a");
    assert_eq!((node.samples, node.batches, node.committed_seq), (11, 11, 13), "one row per sample");
    assert_eq!(node.gaps.len(), 1);
    assert_eq!((node.gaps[0].first_seq, node.gaps[0].last_seq), (5, 6));
    assert_eq!(node.unaccounted, Some(vec![]));
    assert_eq!(node.double_accounted, Some(vec![]));
}

#[tokio::test]
async fn a_replay_over_a_resend_drops_what_is_stored_sample_by_sample_and_a_hole_after_it_is_missing() {
    let collector = TestCollector::start().await;
    let mut agent = TestAgent::connect(&collector.url(), hello("node-a")).await;
    for seq in 1..=3 {
        agent.send(batch(seq)).await;
    }
    agent.wait_ack(3).await;
    drop(agent.close());

    // As after a crash before the ack: the backlog starts at 2 again and ends at 6; the first
    // live sample is 9 (7 and 8 were lost before the disk spool wrote them).
    let mut agent = TestAgent::connect(&collector.url(), hello("node-a")).await;
    agent.send(replayed(6, 2, &[2, 3, 4, 5])).await;
    agent.send(batch(9)).await;
    agent.send(replayed(6, 6, &[6])).await;
    assert_eq!(agent.wait_ack(9).await, 9);
    let status = collector.node("node-a").await;
    assert_eq!(status.duplicates_dropped, 2, "2 and 3 were stored already");

    let (_dir, report) = collector.stop_and_inspect().await;
    let node = node_report(&report, "node-a");
    assert_eq!((node.samples, node.committed_seq), (7, 9));
    let gaps: Vec<(u64, u64, &str)> = node.gaps.iter().map(|g| (g.first_seq, g.last_seq, g.reason.as_str())).collect();
    assert_eq!(gaps, [(7, 8, REASON_MISSING)]);
    assert_eq!((node.unaccounted.clone(), node.double_accounted.clone()), (Some(vec![]), Some(vec![])));
}

#[tokio::test]
async fn a_replayed_batch_declares_pods_for_its_samples_as_live_batches_would() {
    let collector = TestCollector::start().await;
    let mut agent = TestAgent::connect(&collector.url(), hello("node-a")).await;
    let mut samples = vec![sample(1), sample(2)];
    samples[0].pods = vec![PodSample { pod_ref: 7, ..PodSample::default() }];
    samples[1].pods =
        vec![PodSample { pod_ref: 7, ..PodSample::default() }, PodSample { pod_ref: 8, ..PodSample::default() }];
    let batch = Batch { seq: 1, new_pods: vec![pod(7, "uid-7"), pod(8, "uid-8")], samples };
    let replay = Replay { through_seq: 2, kind: Some(replay::Kind::Batch(batch)) };
    agent.send(AgentMessage { kind: Some(AgentKind::Replay(replay)) }).await;
    agent.wait_ack(2).await;
    // the next live sample references both without declaring them again
    agent.send(batch_with_pods(3, vec![], &[7, 8])).await;
    agent.wait_ack(3).await;
    let (_dir, report) = collector.stop_and_inspect().await;
    assert_eq!(node_report(&report, "node-a").pods, 2);
}

#[tokio::test]
async fn a_replay_out_of_its_lanes_order_ends_the_stream() {
    let collector = TestCollector::start().await;
    let cases: [(&str, Vec<AgentMessage>, &str); 4] = [
        ("after-live", vec![batch(1), replayed(5, 2, &[2])], "a Replay after live messages"),
        ("other-end", vec![replayed(5, 1, &[1]), replayed(6, 2, &[2])], "whose backlog ends at 5"),
        ("beyond", vec![replayed(5, 4, &[4, 5, 6])], "beyond the end of its backlog"),
        ("back", vec![replayed(5, 3, &[3]), replayed(5, 2, &[2])], "must increase"),
    ];
    for (node, messages, expected) in cases {
        let mut agent = TestAgent::connect(&collector.url(), hello(node)).await;
        for message in messages {
            agent.send(message).await;
        }
        let status = agent.expect_error().await;
        assert_eq!(status.code(), Code::InvalidArgument, "{node}: {status:?}");
        assert!(status.message().contains(expected), "{node}: {status:?}");
    }
    // a live sample must come above the backlog's end
    let mut agent = TestAgent::connect(&collector.url(), hello("under")).await;
    agent.send(replayed(5, 1, &[1])).await;
    agent.send(batch(4)).await;
    let status = agent.expect_error().await;
    assert!(status.message().contains("sequence number 4 after 5"), "{status:?}");
    collector.stop().await;
}

#[tokio::test]
async fn a_replay_is_refused_whole_not_stored_in_part() {
    let collector = TestCollector::start().await;
    let mut agent = TestAgent::connect(&collector.url(), hello("node-a")).await;
    let mut samples = vec![sample(1), sample(2), sample(3)];
    samples[2].pods = vec![PodSample { pod_ref: 9, ..PodSample::default() }];
    let batch = Batch { seq: 1, new_pods: vec![], samples };
    let replay = Replay { through_seq: 3, kind: Some(replay::Kind::Batch(batch)) };
    agent.send(AgentMessage { kind: Some(AgentKind::Replay(replay)) }).await;
    let status = agent.expect_error().await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("pod_ref 9 was never declared"), "{status:?}");
    assert_eq!(agent.acked, 0, "nothing of it was acknowledged");
    let (_dir, report) = collector.stop_and_inspect().await;
    let node = node_report(&report, "node-a");
    assert_eq!((node.batches, node.committed_seq), (0, 0), "nothing of it was stored");
}
