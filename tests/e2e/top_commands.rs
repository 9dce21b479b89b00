//! `bakery-top alerts`, `window start|stop` and `report` against an in-process collector fed by a
//! scripted agent stream: a node at 85 C with the firmware's soft limit set becomes a live alert,
//! and the window's stored report carries it, as JSON and as an SVG chart.

use std::time::Duration;

use bakery_collector::{Collector, ServeConfig};
use bakery_proto::v1::agent_message::Kind;
use bakery_proto::v1::ingest_client::IngestClient;
use bakery_proto::v1::{AgentMessage, Batch, CpuTimes, Hello, Memory, Sample, Temperature, Throttle, ThrottleFlags};
use bakery_top::cli::{Command, ConnectionArgs, WindowAction, run_command_async};
use serde_json::Value;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(15);

/// A node at 85 C with the firmware's soft limit set: the diagnosis flags it (thermal-throttling).
pub(crate) fn hot_sample(timestamp_ms: i64) -> Sample {
    let flags = ThrottleFlags { soft_temperature_limit: true, arm_frequency_capped: true, ..Default::default() };
    Sample {
        timestamp_ms,
        cpu_total: Some(CpuTimes { cpu: -1, user: 100, idle: 1000, ..Default::default() }),
        memory: Some(Memory { total_bytes: 8 << 30, available_bytes: 6 << 30, ..Default::default() }),
        temperatures: vec![Temperature { sensor: "cpu-thermal".into(), millidegrees_celsius: 85_000 }],
        throttle: Some(Throttle { raw: 0xC, now: Some(flags), since_boot: Some(flags) }),
        ..Default::default()
    }
}

async fn run(connection: &ConnectionArgs, command: Command) -> String {
    let mut out = Vec::new();
    run_command_async(command, connection, &mut out).await.unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_window_and_report_through_bakery_top() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServeConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().join("data"));
    config.insecure_no_auth = true;
    config.diagnosis.automatic_windows = false;
    config.diagnosis.tick = Duration::from_millis(50);
    let collector = Collector::start(config).await.unwrap();
    let url = format!("http://{}", collector.local_addr());
    let connection = ConnectionArgs::plain(url.clone());

    // A scripted agent: hello, then one hot sample per 250 ms of sample time.
    let (tx, rx) = mpsc::channel(64);
    let hello = Hello {
        node_name: "pi-hot".into(),
        interval_ms: 1000,
        clock_ticks_per_second: 100,
        stream_id: "e2e".into(),
        ..Default::default()
    };
    tx.send(AgentMessage { kind: Some(Kind::Hello(hello)) }).await.unwrap();
    let mut client = IngestClient::connect(url.clone()).await.unwrap();
    let _responses = client.stream(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap();
    let t0 = bakery_collector::now_ms();
    let mut seq = 0u64;
    let send = |seq: u64| {
        let tx = tx.clone();
        async move {
            let batch = Batch { seq, new_pods: vec![], samples: vec![hot_sample(t0 + seq as i64 * 250)] };
            tx.send(AgentMessage { kind: Some(Kind::Batch(batch)) }).await.unwrap();
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
    };

    let deadline = tokio::time::Instant::now() + WAIT;
    let alerts: Value = loop {
        seq += 1;
        send(seq).await;
        let json: Value = serde_json::from_str(&run(&connection, Command::Alerts { json: true }).await).unwrap();
        if json["alerts"].as_array().is_some_and(|a| a.iter().any(|v| v["cause"] == "thermal-throttling")) {
            break json;
        }
        assert!(tokio::time::Instant::now() < deadline, "no thermal alert: {json}");
    };
    let alert = alerts["alerts"].as_array().unwrap().iter().find(|v| v["cause"] == "thermal-throttling").unwrap();
    assert_eq!(alert["node"], "pi-hot");
    assert!(alert["next_step"].as_str().is_some_and(|s| !s.is_empty()));
    let text = run(&connection, Command::Alerts { json: false }).await;
    assert!(text.contains("pi-hot: thermal-throttling"), "{text}");

    let started =
        run(&connection, Command::Window { action: WindowAction::Start { name: Some("e2e".into()), workload: None } })
            .await;
    assert!(started.contains("\"e2e\" open"), "{started}");
    for _ in 0..12 {
        seq += 1;
        send(seq).await;
    }
    let stopped = run(&connection, Command::Window { action: WindowAction::Stop }).await;
    assert!(stopped.contains("pi-hot: thermal-throttling"), "{stopped}");
    let id = stopped.lines().last().unwrap().trim_start_matches("report: bakery-top report ").to_string();

    let report: Value =
        serde_json::from_str(&run(&connection, Command::Report { id: Some(id.clone()), json: true, svg: None }).await)
            .unwrap();
    assert_eq!(report["window"]["name"], "e2e");
    let causes: Vec<&Value> = report["verdicts"].as_array().unwrap().iter().map(|v| &v["verdict"]["cause"]).collect();
    assert!(causes.iter().any(|c| *c == "thermal-throttling"), "{report}");
    let svg = dir.path().join("e2e.svg");
    let wrote = run(&connection, Command::Report { id: None, json: false, svg: Some(svg.clone()) }).await;
    assert!(wrote.starts_with("wrote "), "{wrote}");
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
    let text = run(&connection, Command::Report { id: Some(id.clone()), json: false, svg: None }).await;
    assert!(text.starts_with(&format!("window {id} \"e2e\"")), "{text}");

    drop(tx);
    collector.stop().await.unwrap();
}

/// bakery-top keeps its own copy of the diagnosis' causes (it reads verdicts off the wire and does
/// not depend on the diagnosis): every cause the diagnosis can name is one bakery-top knows, under
/// the same spelling, so none is shown as an unknown word.
#[test]
fn bakery_top_knows_every_cause_the_diagnosis_names() {
    for cause in bakery_diagnosis::Cause::ALL {
        let wire = cause.to_string();
        let known = bakery_top::model::Cause::from_wire(&wire);
        assert!(!matches!(known, bakery_top::model::Cause::Other(_)), "bakery-top does not know {wire}");
        assert_eq!(known.to_string(), wire);
    }
}
