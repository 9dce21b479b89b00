//! Load-test windows and the live analysis through the Query service: a window asks every agent
//! to sample faster and gives the interval back when it closes, its report is stored and read back
//! (also after a restart), and a hot, throttled node shows up as a live alert.

use std::time::Duration;

use bakery_proto::v1::collector_message::Kind as CollectorKind;
use bakery_proto::v1::query_client::QueryClient;
use bakery_proto::v1::{
    AgentMessage, AlertsRequest, Batch, CollectorMessage, ReportRequest, Sample, StartWindowRequest, StopWindowRequest,
    Temperature, Throttle, ThrottleFlags, WindowsRequest,
};
use tonic::Code;

use crate::harness::*;

async fn start() -> TestCollector {
    TestCollector::start_with(|config| {
        config.diagnosis.automatic_windows = false;
        config.diagnosis.tick = Duration::from_millis(50);
    })
    .await
}

/// Reads collector messages until a SetInterval arrives; returns its interval.
pub(crate) async fn next_set_interval(agent: &mut TestAgent) -> u32 {
    loop {
        match agent.next().await {
            Ok(Some(CollectorMessage { kind: Some(CollectorKind::SetInterval(set)) })) => return set.interval_ms,
            Ok(Some(CollectorMessage { kind: Some(CollectorKind::Ack(ack)) })) => agent.acked = ack.committed_seq,
            other => panic!("waiting for SetInterval, got {other:?}"),
        }
    }
}

/// A batch of one sample at `timestamp_ms`; `hot` adds 85 C and the firmware's soft-limit bit.
fn sample_batch(seq: u64, timestamp_ms: i64, hot: bool) -> AgentMessage {
    let mut sample: Sample = sample(timestamp_ms);
    if let Some(cpu) = &mut sample.cpu_total {
        cpu.user += seq * 20;
        cpu.idle += seq * 5;
    }
    if hot {
        sample.temperatures = vec![Temperature { sensor: "cpu-thermal".into(), millidegrees_celsius: 85_000 }];
        let flags = ThrottleFlags { soft_temperature_limit: true, arm_frequency_capped: true, ..Default::default() };
        sample.throttle = Some(Throttle { raw: 0xC, now: Some(flags), since_boot: Some(flags) });
    }
    AgentMessage {
        kind: Some(bakery_proto::v1::agent_message::Kind::Batch(Batch {
            seq,
            new_pods: vec![],
            samples: vec![sample],
        })),
    }
}

#[tokio::test]
async fn a_window_speeds_every_agent_up_and_gives_the_interval_back() {
    let collector = start().await;
    let mut query = QueryClient::new(channel(&collector.url()).await);
    let mut agent = TestAgent::connect(&collector.url(), hello("node-a")).await;
    let t0 = bakery_collector::now_ms();
    for seq in 1..=4 {
        agent.send(sample_batch(seq, t0 + seq as i64 * 250, false)).await;
    }
    agent.wait_ack(4).await;

    let request = StartWindowRequest { name: "run-1".into(), workload: String::new() };
    let started = query.start_window(authorized(request, Some(TOKEN))).await.unwrap().into_inner().window.unwrap();
    assert_eq!((started.name.as_str(), started.end_ms, started.automatic), ("run-1", 0, false));
    assert_eq!(next_set_interval(&mut agent).await, 250);
    assert_eq!(collector.node("node-a").await.interval_ms, 250);
    let again = StartWindowRequest::default();
    let refused = query.start_window(authorized(again, Some(TOKEN))).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "one window at a time");

    for seq in 5..=12 {
        agent.send(sample_batch(seq, t0 + seq as i64 * 250, false)).await;
    }
    agent.wait_ack(12).await;
    eventually("the window covers the new samples", || async {
        let windows = QueryClient::new(channel(&collector.url()).await)
            .windows(authorized(WindowsRequest {}, Some(TOKEN)))
            .await
            .unwrap()
            .into_inner()
            .windows;
        windows.first().is_some_and(|w| w.id == started.id && w.end_ms == 0)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await; // let the analysis take the last samples
    let stopped =
        query.stop_window(authorized(StopWindowRequest {}, Some(TOKEN))).await.unwrap().into_inner().window.unwrap();
    assert_eq!(stopped.id, started.id);
    assert!(stopped.end_ms > stopped.start_ms, "{stopped:?}");
    assert_eq!(next_set_interval(&mut agent).await, 1000, "the agent's own interval comes back");
    assert_eq!(collector.node("node-a").await.interval_ms, 1000);
    let nothing_open = query.stop_window(authorized(StopWindowRequest {}, Some(TOKEN))).await.unwrap_err();
    assert_eq!(nothing_open.code(), Code::FailedPrecondition);

    let report = query.report(authorized(ReportRequest { id: String::new() }, Some(TOKEN))).await.unwrap().into_inner();
    assert_eq!(report.window.unwrap().id, started.id, "an empty id is the newest report");
    let json: serde_json::Value = serde_json::from_str(&report.json).unwrap();
    assert_eq!(json["window"]["name"], "run-1");
    assert!(json["series"][0]["points"].as_array().is_some_and(|p| !p.is_empty()), "{json}");
    assert!(report.svg.starts_with("<svg"), "{}", &report.svg[..40.min(report.svg.len())]);
    collector.stop().await;
}

#[tokio::test]
async fn a_report_is_read_back_after_a_restart() {
    let collector = start().await;
    let mut query = QueryClient::new(channel(&collector.url()).await);
    let mut agent = TestAgent::connect(&collector.url(), hello("node-a")).await;
    let t0 = bakery_collector::now_ms();
    agent.send(sample_batch(1, t0, false)).await;
    agent.wait_ack(1).await;
    let window = query
        .start_window(authorized(
            StartWindowRequest { name: "before-restart".into(), ..Default::default() },
            Some(TOKEN),
        ))
        .await
        .unwrap()
        .into_inner()
        .window
        .unwrap();
    for seq in 2..=6 {
        agent.send(sample_batch(seq, t0 + seq as i64 * 250, false)).await;
    }
    agent.wait_ack(6).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    query.stop_window(authorized(StopWindowRequest {}, Some(TOKEN))).await.unwrap();
    let before = query.report(authorized(ReportRequest { id: window.id.clone() }, Some(TOKEN))).await.unwrap();
    drop(agent.close());
    let dir = collector.stop().await;

    let collector = TestCollector::start_in(dir, |config| config.diagnosis.automatic_windows = false).await;
    let mut query = QueryClient::new(channel(&collector.url()).await);
    let after = query.report(authorized(ReportRequest { id: window.id.clone() }, Some(TOKEN))).await.unwrap();
    assert_eq!(after.get_ref().json, before.get_ref().json, "the stored report reads back bit for bit");
    let windows = query.windows(authorized(WindowsRequest {}, Some(TOKEN))).await.unwrap().into_inner().windows;
    assert_eq!(windows.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(), ["before-restart"]);
    let missing = query.report(authorized(ReportRequest { id: "w-1".into() }, Some(TOKEN))).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    collector.stop().await;
}

#[tokio::test]
async fn a_throttled_node_is_a_live_alert() {
    let collector = start().await;
    let mut query = QueryClient::new(channel(&collector.url()).await);
    let mut agent = TestAgent::connect(&collector.url(), hello("node-hot")).await;
    let t0 = bakery_collector::now_ms();
    let mut seq = 0;
    let mut alerts: Vec<bakery_proto::v1::Verdict> = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !alerts.iter().any(|a| a.cause == "thermal-throttling") {
        assert!(tokio::time::Instant::now() < deadline, "no alert for a node at 85 C with the soft limit set");
        seq += 1;
        agent.send(sample_batch(seq, t0 + seq as i64 * 250, true)).await;
        agent.wait_ack(seq).await;
        tokio::time::sleep(Duration::from_millis(60)).await;
        alerts = query.alerts(authorized(AlertsRequest {}, Some(TOKEN))).await.unwrap().into_inner().verdicts;
    }
    let alert = alerts.iter().find(|a| a.cause == "thermal-throttling").unwrap();
    assert_eq!(alert.node_name, "node-hot");
    assert!(!alert.next_step.is_empty() && !alert.evidence.is_empty(), "{alert:?}");
    collector.stop().await;
}

pub(crate) fn nic_batch(seq: u64, timestamp_ms: i64, eth0_bytes: u64) -> AgentMessage {
    let mut sample: Sample = sample(timestamp_ms);
    sample.interfaces = vec![bakery_proto::v1::NetInterface {
        name: "eth0".into(),
        counters: Some(bakery_proto::v1::NetCounters { rx_bytes: eth0_bytes, ..Default::default() }),
        ..Default::default()
    }];
    AgentMessage {
        kind: Some(bakery_proto::v1::agent_message::Kind::Batch(Batch {
            seq,
            new_pods: vec![],
            samples: vec![sample],
        })),
    }
}

/// Plays NIC traffic in real time (the analysis runs on the collector's clock), one sample per
/// 100 ms stamped now, at `rate(elapsed)` bytes per second, until `done` says so (checked with
/// the open and closed windows after each sample); fails after `limit`.
pub(crate) async fn play_traffic(
    collector: &TestCollector,
    agent: &mut TestAgent,
    first_seq: u64,
    limit: Duration,
    rate: impl Fn(Duration) -> u64,
    mut done: impl FnMut(&[bakery_proto::v1::Window]) -> bool,
) -> u64 {
    let mut query = QueryClient::new(channel(&collector.url()).await);
    let start = std::time::Instant::now();
    let (mut bytes, mut seq, mut last) = (0u64, first_seq, start);
    loop {
        assert!(start.elapsed() < limit, "still waiting after {limit:?}");
        let now = std::time::Instant::now();
        bytes += rate(start.elapsed()) * (now - last).as_millis() as u64 / 1000;
        last = now;
        agent.send(nic_batch(seq, bakery_collector::now_ms(), bytes)).await;
        agent.wait_ack(seq).await;
        let windows = query.windows(authorized(WindowsRequest {}, Some(TOKEN))).await.unwrap().into_inner().windows;
        if done(&windows) {
            return seq;
        }
        seq += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traffic_surge_opens_an_automatic_window_that_closes_when_traffic_calms() {
    let collector = TestCollector::start_with(|config| config.diagnosis.tick = Duration::from_millis(20)).await;
    let mut agent = TestAgent::connect(&collector.url(), hello("node-a")).await;
    let t0 = bakery_collector::now_ms();
    // 2 s at 200 kB/s, 4 s at 5 MB/s, then 200 kB/s until the window has closed.
    let surge = |elapsed: Duration| {
        if (Duration::from_secs(2)..Duration::from_secs(6)).contains(&elapsed) { 5_000_000 } else { 200_000 }
    };
    let mut opened: Option<bakery_proto::v1::Window> = None;
    let mut closed = None;
    play_traffic(&collector, &mut agent, 1, Duration::from_secs(40), surge, |windows| {
        match (windows.first(), &opened) {
            (Some(w), None) if w.automatic && w.end_ms == 0 => opened = Some(w.clone()),
            (Some(w), Some(open)) if w.id == open.id && w.end_ms > 0 => closed = Some(w.clone()),
            _ => {}
        }
        closed.is_some()
    })
    .await;
    let (opened, closed) = (opened.expect("a window opened during the surge"), closed.unwrap());
    assert!(closed.automatic, "{closed:?}");
    // it opened during the surge (entered after 2 s above) and closed 10 s after it calmed
    assert!((t0 + 2_000..t0 + 8_000).contains(&opened.start_ms), "{opened:?} (t0 {t0})");
    assert!(closed.end_ms >= t0 + 6_000 + 10_000, "{closed:?} (t0 {t0})");
    while agent.set_intervals.len() < 2 {
        let interval = next_set_interval(&mut agent).await;
        agent.set_intervals.push(interval);
    }
    assert_eq!(agent.set_intervals, [250, 1000], "faster during the window, back afterwards");
    collector.stop().await;
}
