//! The whole export chain on real kernel objects: bytes pushed through a simulated pod are
//! measured by the real agent, streamed to the real collector, exported over OTLP/gRPC to a
//! real OpenTelemetry collector (rotel) and served on `/metrics`, and all of them agree.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use bakery_lab::binaries::built_binary;
use bakery_lab::process::{Output, Spawn};
use bakery_lab::rotel::Rotel;
use bakery_lab::{free_port, pause, require_root, wait_for};
use bakery_tests::sim::{STEP_TIMEOUT, SimPod};

const SENT_BYTES: u64 = 3_000_000;
const NODE: &str = "e2e-export";

/// The pod's received bytes on `/metrics`.
fn scraped_rx(port: u16, uid: &str) -> Option<u64> {
    let metrics = SocketAddr::from(([127, 0, 0, 1], port));
    let text = bakery_lab::http::get_blocking(metrics, "/metrics", Duration::from_secs(5)).ok()?.ok()?;
    let line = text.lines().find(|l| {
        l.starts_with("k8s_pod_network_io_bytes_total{")
            && l.contains(&format!("k8s_pod_uid=\"{uid}\""))
            && l.contains("network_io_direction=\"receive\"")
    })?;
    line.rsplit(' ').next()?.parse().ok()
}

/// The pod's received bytes in rotel's last print of `k8s.pod.network.io` for the pod.
fn rotel_rx(rotel: &Rotel, uid: &str) -> Option<u64> {
    let received = rotel.received();
    // Each pod is its own OTLP resource: the pod's uid is on the resource, the direction on the point.
    let points = received
        .iter()
        .filter(|resource| resource.attribute("k8s.pod.uid") == Some(uid))
        .filter_map(|resource| resource.metric("k8s.pod.network.io"))
        .flat_map(|m| &m.points);
    let mut value = None;
    for point in points {
        if point.attribute("network.io.direction") == Some("receive") {
            value = point.value.or(value);
        }
    }
    value.map(|v| v as u64)
}

#[test]
fn root_bytes_pushed_through_a_pod_reach_rotel_and_metrics_as_the_agent_measured_them() {
    require_root("root_bytes_pushed_through_a_pod_reach_rotel_and_metrics_as_the_agent_measured_them");
    let work = tempfile::tempdir().unwrap();
    let (metrics, listen) = (free_port().unwrap(), free_port().unwrap());
    let rotel = Rotel::start(work.path()).expect("rotel starts and listens");
    let grpc = rotel.grpc;

    let ready = work.path().join("ready");
    let _collector = Spawn::new("the collector", built_binary("bakery-collector", "bakery-collector").unwrap())
        .args(["serve", "--insecure-no-auth", "--no-kubernetes", "--cluster-name", "e2e"])
        .args(["--listen", &format!("127.0.0.1:{listen}"), "--metrics-listen", &format!("127.0.0.1:{metrics}")])
        .arg("--data-dir")
        .arg(work.path().join("data"))
        .arg("--ready-file")
        .arg(&ready)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://127.0.0.1:{grpc}"))
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .env("OTEL_METRIC_EXPORT_INTERVAL", "300")
        .env("BAKERY_LOG", "warn")
        .output(Output::Log(work.path().join("collector.log")))
        .start()
        .unwrap();
    wait_for("the collector to listen", Duration::from_secs(30), || ready.exists().then_some(())).unwrap();

    let pod = SimPod::create("export").unwrap();
    let _agent = Spawn::new("the agent", built_binary("bakery-agent", "bakery-agent").unwrap())
        .args(["--collector", &format!("http://127.0.0.1:{listen}"), "--insecure-no-auth"])
        .args(["--node-name", NODE, "--interval", "250ms"])
        .env("BAKERY_LOG", "warn")
        .output(Output::Log(work.path().join("agent.log")))
        .start()
        .unwrap();
    let client = pod.client(SENT_BYTES, 0).unwrap();
    pod.wait_for_server("the bytes", STEP_TIMEOUT, |server| server.bytes_received >= SENT_BYTES).unwrap();
    drop(client);

    // The counter settles once the connection is closed; then every path shows the same value.
    let mut last = None;
    let settled = wait_for("the pod's bytes to settle on /metrics", Duration::from_secs(60), || {
        let now = scraped_rx(metrics, pod.uid()).filter(|rx| *rx >= SENT_BYTES);
        let settled = now.is_some() && now == last;
        last = now;
        // Readings 0.9 s apart: the counter has settled when two agree.
        pause(Duration::from_millis(900));
        settled.then_some(now).flatten()
    })
    .unwrap();
    // A late packet (the FIN's ACK) can still move the counter after it looked settled, and
    // a loaded machine delays the export: wait until rotel and /metrics show the same value.
    let settled = wait_for("rotel to receive the value /metrics shows", Duration::from_secs(90), || {
        let scraped = scraped_rx(metrics, pod.uid()).filter(|rx| *rx >= settled)?;
        (rotel_rx(&rotel, pod.uid()) == Some(scraped)).then_some(scraped)
    })
    .unwrap();
    let agent = built_binary("bakery-agent", "bakery-agent").unwrap();
    let output = Command::new(agent).args(["--once", "--json", "--node-name", NODE]).output().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let measured = json["sample"]["pods"]
        .as_array()
        .and_then(|pods| pods.iter().find(|p| p["identity"]["uid"] == pod.uid()))
        .and_then(|p| p["network"]["rx_bytes"].as_u64())
        .expect("the agent measures the pod");
    // Nothing but stray neighbour discovery may cross the idle veth since.
    assert!(
        measured >= settled && measured - settled <= 4096,
        "the agent measures {measured} bytes, the export says {settled}"
    );
}
