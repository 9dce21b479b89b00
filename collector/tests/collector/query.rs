//! The Query service: node status, SetInterval delivery (and repetition on reconnect),
//! history, and that queries need a token too.

use bakery_proto::v1::query_client::QueryClient;
use bakery_proto::v1::{HistoryRequest, NodesRequest, SetIntervalRequest};
use tonic::Code;

use crate::harness::*;

#[tokio::test]
async fn nodes_reports_the_latest_sample_and_the_agent_fields() {
    let collector = TestCollector::start().await;
    let mut agent = TestAgent::connect(&collector.url(), hello("node-a")).await;
    agent.send(batch_with_pods(1, vec![pod(3, "uid-web")], &[3])).await;
    agent.wait_ack(1).await;
    let status = collector.node("node-a").await;
    assert!(status.connected);
    assert!(!status.stale);
    assert_eq!(status.committed_seq, 1);
    assert_eq!((status.interval_ms, status.boot_id.as_str(), status.agent_version.as_str()), (1000, "boot-a", "test"));
    let latest = status.latest.expect("a latest sample");
    assert_eq!(latest.pods.len(), 1);
    assert_eq!(status.pods.len(), 1);
    assert_eq!(status.pods[0].pod_ref, latest.pods[0].pod_ref, "pods resolve the latest sample's refs");
    assert_eq!(status.pods[0].uid, "uid-web");
    assert!(status.last_seen_ms > 0 && status.last_sample_ms > 0);
    collector.stop().await;
}

#[tokio::test]
async fn set_interval_reaches_the_agent_and_is_repeated_when_it_reconnects() {
    let collector = TestCollector::start().await;
    let mut query = QueryClient::new(channel(&collector.url()).await);
    let mut agent = TestAgent::connect(&collector.url(), hello("node-a")).await;
    let request =
        SetIntervalRequest { node_name: "node-a".into(), interval_ms: 250, reason: "load test w-1 open".into() };
    let delivered = query.set_interval(authorized(request.clone(), Some(TOKEN))).await.unwrap().into_inner();
    assert!(delivered.delivered);
    agent.send(batch(1)).await;
    agent.wait_ack(1).await;
    if agent.set_intervals.is_empty() {
        // it may come after the ack
        match agent.next().await {
            Ok(Some(bakery_proto::v1::CollectorMessage {
                kind: Some(bakery_proto::v1::collector_message::Kind::SetInterval(set)),
            })) => agent.set_intervals.push(set.interval_ms),
            other => panic!("expected SetInterval, got {other:?}"),
        }
    }
    assert_eq!(agent.set_intervals, [250]);
    assert_eq!(collector.node("node-a").await.interval_ms, 250);
    drop(agent.close());

    // The agent restarts with its default interval: the collector asks again.
    let mut agent = TestAgent::connect(&collector.url(), hello("node-a")).await;
    agent.send(batch(2)).await;
    agent.wait_ack(2).await;
    if agent.set_intervals.is_empty() {
        panic!("SetInterval comes right after the Welcome, before any ack");
    }
    assert_eq!(agent.set_intervals, [250]);

    let unknown = SetIntervalRequest { node_name: "nope".into(), interval_ms: 250, reason: String::new() };
    let status = query.set_interval(authorized(unknown, Some(TOKEN))).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let too_fast = SetIntervalRequest { node_name: "node-a".into(), interval_ms: 1, reason: String::new() };
    let status = query.set_interval(authorized(too_fast, Some(TOKEN))).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    collector.stop().await;
}

#[tokio::test]
async fn history_returns_recent_batches_oldest_first() {
    let collector = TestCollector::start().await;
    let mut agent = TestAgent::connect(&collector.url(), hello("node-a")).await;
    for seq in 1..=4 {
        agent.send(batch(seq)).await;
    }
    agent.wait_ack(4).await;
    let mut query = QueryClient::new(channel(&collector.url()).await);
    let history = query
        .history(authorized(HistoryRequest { node_name: "node-a".into(), since_ms: 0 }, Some(TOKEN)))
        .await
        .unwrap()
        .into_inner();
    let seqs: Vec<u64> = history.batches.iter().map(|b| b.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    assert!(history.batches.iter().all(|b| b.samples.len() == 1 && b.received_ms > 0));
    let later = query
        .history(authorized(
            HistoryRequest { node_name: "node-a".into(), since_ms: bakery_collector::now_ms() + 60_000 },
            Some(TOKEN),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(later.batches.is_empty());
    collector.stop().await;
}

#[tokio::test]
async fn queries_need_a_token_too() {
    let collector = TestCollector::start().await;
    let mut query = QueryClient::new(channel(&collector.url()).await);
    let status = query.nodes(authorized(NodesRequest {}, None)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = query.nodes(authorized(NodesRequest {}, Some("wrong"))).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(query.nodes(authorized(NodesRequest {}, Some(TOKEN))).await.is_ok());
    collector.stop().await;
}

#[tokio::test]
async fn insecure_no_auth_accepts_agents_without_a_token() {
    let collector = TestCollector::start_with(|config| {
        config.token_file = None;
        config.insecure_no_auth = true;
    })
    .await;
    let mut agent = TestAgent::try_connect(&collector.url(), None, hello("node-a")).await.expect("accepted");
    agent.send(batch(1)).await;
    agent.wait_ack(1).await;
    collector.stop().await;
}

#[tokio::test]
async fn a_collector_without_any_authentication_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = bakery_collector::ServeConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().join("data"));
    let error = bakery_collector::Collector::start(config).await.err().expect("refused").to_string();
    assert!(error.contains("--insecure-no-auth"), "{error}");
}
