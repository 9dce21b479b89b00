//! The stream protocol against an in-process collector: hello/welcome/ack, resume, duplicates,
//! regressions, gaps, bad input, replacement, pods, restart durability.

use bakery_collector::ingest::{REASON_LOST_BEFORE_SPOOLING, REASON_MISSING};
use bakery_proto::v1::{AgentMessage, Batch, Sample, Unavailable};
use tonic::Code;

use crate::harness::*;

#[tokio::test]
async fn hello_gets_a_welcome_and_batches_get_acked_once_committed() {
    let collector = TestCollector::start().await;
    let mut agent = TestAgent::connect(&collector.url(), hello("node-a")).await;
    assert_eq!(agent.welcome.committed_seq, 0, "a new node has nothing committed");
    for seq in 1..=3 {
        agent.send(batch(seq)).await;
    }
    assert_eq!(agent.wait_ack(3).await, 3);
    let (_dir, report) = collector.stop_and_inspect().await;
    let node = node_report(&report, "node-a");
    assert_eq!((node.batches, node.samples, node.first_seq, node.last_seq), (3, 3, Some(1), Some(3)));
    assert_eq!(node.committed_seq, 3);
    assert!(node.gaps.is_empty());
    assert_eq!(node.unaccounted, Some(vec![]));
}

#[tokio::test]
async fn a_resumed_stream_learns_the_committed_seq_and_duplicates_are_dropped_but_acked() {
    let collector = TestCollector::start().await;
    let mut agent = TestAgent::connect(&collector.url(), hello("node-a")).await;
    for seq in 1..=5 {
        agent.send(batch(seq)).await;
    }
    agent.wait_ack(5).await;
    drop(agent.close());

    // The agent reconnects and, as after a crash before it saw the ack, resends 4 and 5.
    let mut agent = TestAgent::connect(&collector.url(), hello("node-a")).await;
    assert_eq!(agent.welcome.committed_seq, 5);
    agent.send(batch(4)).await;
    agent.send(batch(5)).await;
    agent.send(batch(6)).await;
    agent.wait_ack(6).await;
    let status = collector.node("node-a").await;
    assert_eq!(status.duplicates_dropped, 2);
    assert_eq!(status.committed_seq, 6);
    let (_dir, report) = collector.stop_and_inspect().await;
    let node = node_report(&report, "node-a");
    assert_eq!((node.batches, node.last_seq, node.duplicates_dropped), (6, Some(6), 2));
    assert_eq!(node.unaccounted, Some(vec![]));
    assert_eq!(node.double_accounted, Some(vec![]));
}

#[tokio::test]
async fn a_duplicate_alone_is_still_acknowledged() {
    let collector = TestCollector::start().await;
    let mut agent = TestAgent::connect(&collector.url(), hello("node-a")).await;
    agent.send(batch(1)).await;
    agent.wait_ack(1).await;
    drop(agent.close());
    let mut agent = TestAgent::connect(&collector.url(), hello("node-a")).await;
    agent.acked = 0; // forget the Welcome: the ack must come for the resend itself
    agent.send(batch(1)).await;
    assert_eq!(agent.wait_ack(1).await, 1);
    collector.stop().await;
}

#[tokio::test]
async fn a_regressing_seq_closes_only_that_stream() {
    let collector = TestCollector::start().await;
    let mut bad = TestAgent::connect(&collector.url(), hello("bad")).await;
    let mut good = TestAgent::connect(&collector.url(), hello("good")).await;
    bad.send(batch(5)).await;
    bad.send(batch(3)).await;
    let status = bad.expect_error().await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("must increase"), "{status:?}");
    // the other agent is still served
    good.send(batch(1)).await;
    good.send(batch(2)).await;
    good.wait_ack(2).await;
    assert_eq!(collector.node("bad").await.invalid_seqs, 1);
    let (_dir, report) = collector.stop_and_inspect().await;
    let bad = node_report(&report, "bad");
    assert_eq!(bad.invalid_seqs, 1);
    assert_eq!(bad.last_seq, Some(5), "3 was refused");
    assert_eq!(bad.gaps[0].reason, REASON_MISSING, "1..=4 never arrived");
}

#[tokio::test]
async fn a_jump_forward_is_recorded_as_a_gap_and_a_declared_gap_keeps_its_reason() {
    let collector = TestCollector::start().await;
    let mut agent = TestAgent::connect(&collector.url(), hello("node-a")).await;
    agent.send(batch(1)).await;
    agent.send(batch(2)).await;
    agent.send(batch(5)).await; // 3..=4 silently skipped
    agent.send(gap(6, 9, "spool overflow: 4 samples dropped, limit 1024 bytes")).await;
    agent.send(batch(10)).await;
    assert_eq!(agent.wait_ack(10).await, 10, "a gap's range counts as handled");
    let (_dir, report) = collector.stop_and_inspect().await;
    let node = node_report(&report, "node-a");
    let gaps: Vec<(u64, u64, &str)> = node.gaps.iter().map(|g| (g.first_seq, g.last_seq, g.reason.as_str())).collect();
    assert_eq!(gaps, [(3, 4, REASON_MISSING), (6, 9, "spool overflow: 4 samples dropped, limit 1024 bytes")]);
    assert_eq!((node.batches, node.committed_seq), (4, 10));
    assert_eq!(node.unaccounted, Some(vec![]));
}

#[tokio::test]
async fn a_spool_that_starts_after_the_committed_seq_is_recorded_as_lost_before_spooling() {
    let collector = TestCollector::start().await;
    let mut agent = TestAgent::connect(&collector.url(), hello("node-a")).await;
    agent.send(batch(1)).await;
    agent.wait_ack(1).await;
    drop(agent.close());
    let mut resumed = hello("node-a");
    resumed.oldest_spooled_seq = 8;
    let mut agent = TestAgent::connect(&collector.url(), resumed).await;
    agent.send(batch(8)).await;
    agent.wait_ack(8).await;
    let (_dir, report) = collector.stop_and_inspect().await;
    let node = node_report(&report, "node-a");
    assert_eq!(node.gaps.len(), 1);
    assert_eq!((node.gaps[0].first_seq, node.gaps[0].last_seq), (2, 7));
    assert_eq!(node.gaps[0].reason, REASON_LOST_BEFORE_SPOOLING);
}

#[tokio::test]
async fn the_first_message_must_be_a_hello() {
    let collector = TestCollector::start().await;
    let mut client = bakery_proto::v1::ingest_client::IngestClient::new(channel(&collector.url()).await);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(batch(1)).await.unwrap();
    let mut responses = client
        .stream(authorized(tokio_stream::wrappers::ReceiverStream::new(rx), Some(TOKEN)))
        .await
        .expect("the call is accepted")
        .into_inner();
    let status = tokio::time::timeout(WAIT, responses.message()).await.unwrap().expect_err("an error");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("must be a Hello"), "{status:?}");
    collector.stop().await;
}

#[tokio::test]
async fn missing_and_wrong_tokens_are_unauthenticated_and_others_are_unaffected() {
    let collector = TestCollector::start().await;
    let mut good = TestAgent::connect(&collector.url(), hello("good")).await;
    for token in [None, Some("wrong-token")] {
        let status = TestAgent::try_connect(&collector.url(), token, hello("intruder")).await.err().expect("refused");
        assert_eq!(status.code(), Code::Unauthenticated, "token {token:?}: {status:?}");
    }
    good.send(batch(1)).await;
    good.wait_ack(1).await;
    assert!(collector.nodes().await.iter().all(|n| n.node_name != "intruder"), "a refused agent leaves no trace");
    collector.stop().await;
}

#[tokio::test]
async fn an_undeclared_pod_ref_is_invalid_input() {
    let collector = TestCollector::start().await;
    let mut agent = TestAgent::connect(&collector.url(), hello("node-a")).await;
    agent.send(batch_with_pods(1, vec![pod(1, "uid-1")], &[1])).await;
    agent.send(batch_with_pods(2, vec![], &[1, 2])).await;
    let status = agent.expect_error().await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("pod_ref 2 was never declared"), "{status:?}");
    assert_eq!(agent.acked, 1, "the valid batch before it was committed");
    let (_dir, report) = collector.stop_and_inspect().await;
    assert_eq!(node_report(&report, "node-a").last_seq, Some(1));
}

#[tokio::test]
async fn pods_keep_their_collector_id_across_streams_with_other_refs() {
    let collector = TestCollector::start().await;
    let mut agent = TestAgent::connect(&collector.url(), hello("node-a")).await;
    agent.send(batch_with_pods(1, vec![pod(1, "uid-web"), pod(2, "uid-db")], &[1, 2])).await;
    agent.wait_ack(1).await;
    drop(agent.close());
    // A new stream numbers the same pods differently.
    let mut agent = TestAgent::connect(&collector.url(), hello("node-a")).await;
    agent.send(batch_with_pods(2, vec![pod(7, "uid-db"), pod(9, "uid-web")], &[9, 7])).await;
    agent.wait_ack(2).await;
    let mut query = bakery_proto::v1::query_client::QueryClient::new(channel(&collector.url()).await);
    let history = query
        .history(authorized(bakery_proto::v1::HistoryRequest { node_name: "node-a".into(), since_ms: 0 }, Some(TOKEN)))
        .await
        .unwrap()
        .into_inner();
    let uid_of = |id: u32| history.pods.iter().find(|p| p.pod_ref == id).map(|p| p.uid.clone()).unwrap();
    let first: Vec<String> = history.batches[0].samples[0].pods.iter().map(|p| uid_of(p.pod_ref)).collect();
    let second: Vec<String> = history.batches[1].samples[0].pods.iter().map(|p| uid_of(p.pod_ref)).collect();
    assert_eq!(first, ["uid-web", "uid-db"]);
    assert_eq!(second, ["uid-web", "uid-db"], "refs 9 and 7 are the same pods as 1 and 2");
    assert_eq!(history.pods.len(), 2, "two pods, not four");
    let (_dir, report) = collector.stop_and_inspect().await;
    assert_eq!(node_report(&report, "node-a").pods, 2);
}

#[tokio::test]
async fn garbage_bytes_end_only_that_stream() {
    use bakery_proto::v1::CollectorMessage;
    use prost::Message;
    use prost::bytes::BufMut;
    use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

    /// Sends raw bytes as gRPC messages (valid framing, junk payload).
    #[derive(Default)]
    struct RawCodec;
    struct RawEncoder;
    struct CollectorDecoder;
    impl Encoder for RawEncoder {
        type Item = Vec<u8>;
        type Error = tonic::Status;
        fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
            dst.put_slice(&item);
            Ok(())
        }
    }
    impl Decoder for CollectorDecoder {
        type Item = CollectorMessage;
        type Error = tonic::Status;
        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<CollectorMessage>, Self::Error> {
            CollectorMessage::decode(src).map(Some).map_err(|e| tonic::Status::internal(e.to_string()))
        }
    }
    impl Codec for RawCodec {
        type Encode = Vec<u8>;
        type Decode = CollectorMessage;
        type Encoder = RawEncoder;
        type Decoder = CollectorDecoder;
        fn encoder(&mut self) -> RawEncoder {
            RawEncoder
        }
        fn decoder(&mut self) -> CollectorDecoder {
            CollectorDecoder
        }
    }

    let collector = TestCollector::start().await;
    let mut good = TestAgent::connect(&collector.url(), hello("good")).await;
    for (name, first_payload) in [
        // a valid hello, then junk: field 15 with the reserved wire type 7
        ("after hello", None),
        // junk as the very first message
        ("first", Some(vec![0xff_u8; 32])),
    ] {
        let mut grpc = tonic::client::Grpc::new(channel(&collector.url()).await);
        grpc.ready().await.unwrap();
        let hello_bytes =
            AgentMessage { kind: Some(bakery_proto::v1::agent_message::Kind::Hello(hello("garbage"))) }.encode_to_vec();
        let messages: Vec<Vec<u8>> = match first_payload {
            None => vec![hello_bytes, vec![0x7f, 0xff, 0xff, 0xff, 0x0f, 0x01]],
            Some(junk) => vec![junk],
        };
        let request = authorized(tokio_stream::iter(messages), Some(TOKEN));
        let path = tonic::codegen::http::uri::PathAndQuery::from_static("/bakery.v1.Ingest/Stream");
        let mut responses = grpc.streaming(request, path, RawCodec).await.expect("the call is accepted").into_inner();
        let status = loop {
            match tokio::time::timeout(WAIT, responses.message()).await.expect("an answer in time") {
                Ok(Some(_welcome)) => continue,
                Ok(None) => panic!("{name}: the stream ended without an error"),
                Err(status) => break status,
            }
        };
        assert_eq!(status.code(), Code::InvalidArgument, "{name}: {status:?}");
        assert!(status.message().contains("does not decode"), "{name}: {status:?}");
    }
    good.send(batch(1)).await;
    good.wait_ack(1).await;
    collector.stop().await;
}

#[tokio::test]
async fn an_oversized_message_ends_only_that_stream() {
    let collector = TestCollector::start().await;
    let mut good = TestAgent::connect(&collector.url(), hello("good")).await;
    let mut big = TestAgent::connect(&collector.url(), hello("big")).await;
    let huge = Sample {
        timestamp_ms: bakery_collector::now_ms(),
        unavailable: vec![Unavailable { signal: "cpu".into(), reason: "x".repeat(5 * 1024 * 1024) }],
        ..Default::default()
    };
    big.send(AgentMessage {
        kind: Some(bakery_proto::v1::agent_message::Kind::Batch(Batch {
            seq: 1,
            new_pods: vec![],
            samples: vec![huge],
        })),
    })
    .await;
    let status = big.expect_error().await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    good.send(batch(1)).await;
    good.wait_ack(1).await;
    let (_dir, report) = collector.stop_and_inspect().await;
    assert_eq!(node_report(&report, "big").batches, 0);
}

#[tokio::test]
async fn far_future_and_far_past_timestamps_are_stored_and_the_skew_is_reported() {
    let collector = TestCollector::start().await;
    let day = 86_400_000;
    let mut ahead = TestAgent::connect(&collector.url(), hello("clock-ahead")).await;
    let mut behind = TestAgent::connect(&collector.url(), hello("clock-behind")).await;
    ahead.send(batch_at(1, bakery_collector::now_ms() + day)).await;
    behind.send(batch_at(1, bakery_collector::now_ms() - 365 * day)).await;
    ahead.wait_ack(1).await;
    behind.wait_ack(1).await;
    let skew_ahead = collector.node("clock-ahead").await.clock_skew_ms;
    let skew_behind = collector.node("clock-behind").await.clock_skew_ms;
    // receive time >= the moment the sample was stamped, so the skew is at
    // least -day, and at most a few seconds more on a loaded machine.
    assert!((-day..=-day + 5_000).contains(&skew_ahead), "receive - sample of a clock a day ahead: {skew_ahead}");
    assert!((365 * day..365 * day + 5_000).contains(&skew_behind), "a year behind: {skew_behind}");
    let (_dir, report) = collector.stop_and_inspect().await;
    let ahead = node_report(&report, "clock-ahead");
    assert_eq!(ahead.batches, 1, "never dropped for skew");
    assert!((-day..=-day + 5_000).contains(&ahead.clock_skew_ms.unwrap()));
    assert!(node_report(&report, "clock-behind").clock_skew_ms.unwrap() >= 365 * day);
}

#[tokio::test]
async fn a_second_stream_for_a_node_replaces_the_first_without_losing_acked_data() {
    let collector = TestCollector::start().await;
    let mut old = TestAgent::connect(&collector.url(), hello("node-a")).await;
    for seq in 1..=3 {
        old.send(batch(seq)).await;
    }
    old.wait_ack(3).await;
    let mut new = TestAgent::connect(&collector.url(), hello("node-a")).await;
    assert_eq!(new.welcome.committed_seq, 3);
    let status = old.expect_error().await;
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    assert!(status.message().contains("newer stream"), "{status:?}");
    for seq in 4..=5 {
        new.send(batch(seq)).await;
    }
    new.wait_ack(5).await;
    assert!(collector.node("node-a").await.connected);
    let (_dir, report) = collector.stop_and_inspect().await;
    let node = node_report(&report, "node-a");
    assert_eq!((node.batches, node.last_seq), (5, Some(5)));
    assert!(node.gaps.is_empty());
}

#[tokio::test]
async fn committed_data_survives_a_restart_and_the_agent_resumes_after_it() {
    let collector = TestCollector::start().await;
    let mut agent = TestAgent::connect(&collector.url(), hello("node-a")).await;
    agent.send(batch_with_pods(1, vec![pod(1, "uid-web")], &[1])).await;
    agent.send(batch(2)).await;
    agent.wait_ack(2).await;
    drop(agent.close());
    let dir = collector.stop().await;

    let collector = TestCollector::start_in(dir, |_| {}).await;
    let before = collector.node("node-a").await;
    assert_eq!(before.committed_seq, 2);
    assert!(!before.connected);
    assert_eq!(before.pods.len(), 0, "the latest sample (seq 2) has no pods");
    let mut agent = TestAgent::connect(&collector.url(), hello("node-a")).await;
    assert_eq!(agent.welcome.committed_seq, 2);
    // the pod keeps its id after the restart
    agent.send(batch_with_pods(3, vec![pod(4, "uid-web"), pod(5, "uid-new")], &[4, 5])).await;
    agent.wait_ack(3).await;
    let status = collector.node("node-a").await;
    let ids: Vec<(u32, String)> = status.pods.iter().map(|p| (p.pod_ref, p.uid.clone())).collect();
    assert_eq!(ids, [(1, "uid-web".to_string()), (2, "uid-new".to_string())]);
    let (_dir, report) = collector.stop_and_inspect().await;
    let node = node_report(&report, "node-a");
    assert_eq!((node.batches, node.pods), (3, 2));
    assert_eq!(node.unaccounted, Some(vec![]));
}
