//! Export end to end, with real components: the built collector, configured only by the
//! standard OTEL_* variables, exports OTLP to a real OpenTelemetry collector (rotel, from PyPI)
//! over gRPC and HTTP; a real Prometheus scrapes `/metrics`; the backend goes away and comes back
//! while agents keep sending; headers reach the receiver. The known value is a pod's received
//! bytes that a test agent sent in through the ingest API.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bakery_lab::process::{Output, Process, Spawn};
use bakery_lab::rotel::{ReceivedResource, Rotel};
use bakery_lab::{free_port, wait_for_async, wait_until_async};
use bakery_proto::v1::agent_message::Kind as AgentKind;
use bakery_proto::v1::{AgentMessage, Batch, NetCounters, PodSample};

use crate::harness::*;

const BINARY: &str = env!("CARGO_BIN_EXE_bakery-collector");
const NODE: &str = "node-export";
const POD_UID: &str = "uid-known";
/// The known value: bytes the test pod received, as the agent measured them.
const KNOWN_RX_BYTES: u64 = 987_654_321;
/// Long enough for a loaded CI machine (exports run every 200 ms in these tests).
const EXPORT_WAIT: Duration = Duration::from_secs(30);
/// How long one GET of `/metrics` or of Prometheus's API may take.
const GET_TIMEOUT: Duration = Duration::from_secs(10);

/// A real OpenTelemetry collector on `grpc` and `http`, listening on both.
async fn start_rotel(dir: &Path, grpc: u16, http: u16) -> Rotel {
    Rotel::start_on_async(dir, grpc, http).await.unwrap_or_else(|error| panic!("rotel: {}", bakery_lab::chain(&error)))
}

/// The body `GET path` answers with a 200, `None` for anything else (not up yet, an error).
pub(crate) async fn body_of_200(addr: SocketAddr, path: &str) -> Option<String> {
    bakery_lab::http::get(addr, path, GET_TIMEOUT).await.ok()?.ok()
}

/// Panics with `error` when a wait ended without its condition.
fn waited(result: bakery_lab::Result<()>) {
    if let Err(error) = result {
        panic!("{error}");
    }
}

/// A received value with its metric's unit, its resource's attributes and its own.
type Found = (f64, String, Vec<(String, String)>, Vec<(String, String)>);

/// The known pod's received bytes as exported for `node`, with the metric's unit, the pod's own
/// resource (each pod is one: `k8s.pod.uid` and `k8s.node.name` on the resource) and the point's
/// attributes.
fn known_value(resources: &[ReceivedResource], node: &str) -> Option<Found> {
    resources.iter().rev().find_map(|resource| {
        let metric = resource.metric("k8s.pod.network.io").filter(|_| {
            resource.attribute("k8s.node.name") == Some(node) && resource.attribute("k8s.pod.uid") == Some(POD_UID)
        })?;
        let point = metric.points.iter().find(|p| p.attribute("network.io.direction") == Some("receive"))?;
        Some((point.value?, metric.unit.clone(), resource.attributes.clone(), point.attributes.clone()))
    })
}

/// The node's own resource (not one of its pods') with its CPU times.
fn node_resource<'a>(resources: &'a [ReceivedResource], node: &str) -> Option<&'a ReceivedResource> {
    resources.iter().rev().find(|r| {
        r.attribute("k8s.node.name") == Some(node)
            && r.attribute("k8s.pod.uid").is_none()
            && r.metric("system.cpu.time").is_some()
    })
}

/// The collector binary, configured by `env` (every other OTEL_* variable removed); also the
/// alerting rules' test's.
pub(crate) struct RunningCollector {
    process: Process,
    pub(crate) url: String,
    pub(crate) metrics: SocketAddr,
    log: PathBuf,
}

impl RunningCollector {
    pub(crate) async fn start(dir: &Path, env: &[(&str, String)], extra: &[&str]) -> RunningCollector {
        let ready = dir.join("ready");
        let log = dir.join("collector.log");
        let metrics: SocketAddr = format!("127.0.0.1:{}", free_port().unwrap()).parse().unwrap();
        let mut spawn = Spawn::new("the collector", BINARY)
            .args(["serve", "--listen", "127.0.0.1:0", "--insecure-no-auth", "--no-kubernetes"])
            .args(["--cluster-name", "bakery-test", "--metrics-listen", &metrics.to_string()])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--ready-file")
            .arg(&ready)
            .args(extra)
            .env("BAKERY_LOG", "info")
            .output(Output::Log(log.clone()));
        for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("OTEL_")) {
            spawn = spawn.env_remove(&name);
        }
        for (name, value) in env {
            spawn = spawn.env(name, value);
        }
        let process = spawn.start().expect("the collector binary starts");
        let addr = wait_for_async("the collector's ready file", Duration::from_secs(20), || {
            let addr = std::fs::read_to_string(&ready).unwrap_or_default().trim().to_string();
            std::future::ready((!addr.is_empty()).then_some(addr))
        })
        .await
        .unwrap_or_else(|error| panic!("{error}"));
        RunningCollector { process, url: format!("http://{addr}"), metrics, log }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) fn assert_alive(&mut self) {
        assert!(self.process.try_status().is_none(), "the collector exited:\n{}", self.log());
        assert!(!self.log().contains("panicked"), "the collector panicked:\n{}", self.log());
    }

    /// Waits until `/metrics` counts a dropped export.
    async fn wait_for_dropped_exports(&self) {
        waited(
            wait_for_async("bakery_export_dropped_total > 0 on /metrics", EXPORT_WAIT, || async {
                let text = body_of_200(self.metrics, "/metrics").await.unwrap_or_default();
                scraped_value(&text, "bakery_export_dropped_total", &[])
                    .is_some_and(|dropped| dropped > 0.0)
                    .then_some(())
            })
            .await,
        );
    }
}

/// A batch whose sample reports the known pod with `rx_bytes` received.
fn pod_batch(seq: u64, rx_bytes: u64) -> AgentMessage {
    let mut sample = sample(bakery_collector::now_ms());
    sample.pods = vec![PodSample {
        pod_ref: 1,
        network: Some(NetCounters { rx_bytes, tx_bytes: 4242, ..Default::default() }),
        cpu_usage_us: 2_000_000,
        memory_working_set_bytes: 1 << 20,
        ..Default::default()
    }];
    let new_pods = if seq == 1 { vec![pod(1, POD_UID)] } else { vec![] };
    AgentMessage { kind: Some(AgentKind::Batch(Batch { seq, new_pods, samples: vec![sample] })) }
}

/// Keeps the agent streaming `rx_bytes` every 250 ms, as a live agent does (a node silent for 3
/// intervals is stale and its samples are no longer exported). Aborted when dropped.
struct Heartbeat(tokio::task::JoinHandle<()>);

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn keep_sending(agent: TestAgent, next_seq: u64, rx_bytes: u64) -> Heartbeat {
    Heartbeat(tokio::spawn(async move {
        for seq in next_seq.. {
            if !agent.try_send(pod_batch(seq, rx_bytes)).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }))
}

fn otlp_env(endpoint: String, protocol: &str) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_string()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "200".into()),
        ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=ci".into()),
    ]
}

/// Sends the known value, then asserts rotel received it with its name, unit and resource.
async fn assert_rotel_receives_the_known_value(rotel: &Rotel, collector: &RunningCollector) {
    let mut agent = TestAgent::connect(&collector.url, hello(NODE)).await;
    agent.send(pod_batch(1, KNOWN_RX_BYTES)).await;
    agent.wait_ack(1).await;
    let _heartbeat = keep_sending(agent, 2, KNOWN_RX_BYTES);
    waited(
        wait_until_async("rotel to receive the pod's bytes", EXPORT_WAIT, || {
            // The node's and the pod's resources are separate exports: wait for both.
            let received = rotel.received();
            known_value(&received, NODE).is_some() && node_resource(&received, NODE).is_some()
        })
        .await,
    );
    let received = rotel.received();
    let (value, unit, pod_resource, point) = known_value(&received, NODE).unwrap();
    assert_eq!(value, KNOWN_RX_BYTES as f64);
    assert_eq!(unit, "By");
    // The pod's own resource, as rotel prints it (without Kubernetes the pod is known by UID).
    for (key, expected) in [
        ("k8s.pod.uid", POD_UID),
        ("k8s.node.name", NODE),
        ("service.instance.id", POD_UID),
        ("k8s.cluster.name", "bakery-test"),
        ("service.name", "bakery"),
        ("deployment.environment.name", "ci"),
    ] {
        assert!(
            pod_resource.contains(&(key.to_string(), expected.to_string())),
            "{key}={expected} in {pod_resource:?}"
        );
    }
    assert!(!pod_resource.iter().any(|(key, _)| key == "host.name"), "a pod is not a host: {pod_resource:?}");
    assert!(!point.iter().any(|(key, _)| key.starts_with("k8s.")), "the identity is the resource's: {point:?}");
    let node = node_resource(&received, NODE).unwrap();
    for (key, expected) in [
        ("k8s.node.name", NODE),
        ("host.name", NODE),
        ("service.instance.id", NODE),
        ("k8s.cluster.name", "bakery-test"),
        ("service.name", "bakery"),
        ("deployment.environment.name", "ci"),
    ] {
        assert_eq!(node.attribute(key), Some(expected), "{key} in {:?}", node.attributes);
    }
    assert!(node.metric("k8s.pod.network.io").is_none(), "pod series are on the pod's resource, not the node's");
    let pod = received
        .iter()
        .rev()
        .find(|r| r.attribute("k8s.pod.uid") == Some(POD_UID) && r.metric("k8s.pod.cpu.time").is_some())
        .unwrap();
    let metric = |name: &str| node.metric(name).or_else(|| pod.metric(name));
    let cpu = metric("system.cpu.time").expect("system.cpu.time exported");
    assert_eq!((cpu.unit.as_str(), cpu.data_type.as_str()), ("s", "Sum"));
    // The harness sample: user 100 jiffies = 1 s.
    assert!(cpu.points.iter().any(|p| p.attribute("cpu.mode") == Some("user") && p.value == Some(1.0)), "{cpu:?}");
    let pod_cpu = metric("k8s.pod.cpu.time").expect("k8s.pod.cpu.time exported");
    assert_eq!(pod_cpu.unit, "s");
    assert_eq!(pod_cpu.points.iter().find_map(|p| p.value), Some(2.0));
    let working_set = metric("k8s.pod.memory.working_set").expect("k8s.pod.memory.working_set exported");
    assert_eq!((working_set.unit.as_str(), working_set.data_type.as_str()), ("By", "Sum"), "an UpDownCounter");
    assert_eq!(working_set.points.iter().find_map(|p| p.value), Some(f64::from(1u32 << 20)));
}

#[tokio::test(flavor = "multi_thread")]
async fn otlp_grpc_reaches_a_real_collector_with_names_units_resources_and_the_known_value() {
    let dir = tempfile::tempdir().unwrap();
    let rotel = start_rotel(dir.path(), free_port().unwrap(), free_port().unwrap()).await;
    // The protocol and endpoint come from the environment only.
    let env = otlp_env(format!("http://127.0.0.1:{}", rotel.grpc), "grpc");
    let mut collector = RunningCollector::start(dir.path(), &env, &[]).await;
    assert_rotel_receives_the_known_value(&rotel, &collector).await;
    collector.assert_alive();
}

#[tokio::test(flavor = "multi_thread")]
async fn otlp_http_protobuf_from_the_environment_beats_the_flag_and_reaches_a_real_collector() {
    let dir = tempfile::tempdir().unwrap();
    let rotel = start_rotel(dir.path(), free_port().unwrap(), free_port().unwrap()).await;
    let env = otlp_env(format!("http://127.0.0.1:{}", rotel.http), "http/protobuf");
    // --otlp-protocol is only the fallback: with grpc winning, nothing would arrive over HTTP.
    let mut collector = RunningCollector::start(dir.path(), &env, &["--otlp", "--otlp-protocol", "grpc"]).await;
    assert_rotel_receives_the_known_value(&rotel, &collector).await;
    collector.assert_alive();
}

/// Headers and the metrics-specific endpoint, as received by an HTTP endpoint that records them.
#[tokio::test(flavor = "multi_thread")]
async fn otlp_headers_and_the_metrics_endpoint_variable_reach_the_receiver() {
    type Seen = Arc<Mutex<Vec<(String, axum::http::HeaderMap)>>>;
    let seen: Seen = Arc::default();
    let recorder = {
        let seen = seen.clone();
        axum::Router::new().fallback(move |uri: axum::http::Uri, headers: axum::http::HeaderMap| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push((uri.path().to_string(), headers));
                // An empty body is an empty ExportMetricsServiceResponse: full success.
                ([(axum::http::header::CONTENT_TYPE, "application/x-protobuf")], Vec::<u8>::new())
            }
        })
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move { axum::serve(listener, recorder).await });

    let dir = tempfile::tempdir().unwrap();
    let env = vec![
        ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", format!("http://127.0.0.1:{port}/otlp/v1/metrics")),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9/unused".to_string()),
        ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf".to_string()),
        ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Basic%20YmFrZXJ5OnNlY3JldA==,x-scope-orgid=bakery".to_string()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "200".to_string()),
    ];
    let mut collector = RunningCollector::start(dir.path(), &env, &[]).await;
    waited(wait_until_async("an OTLP request at the recorder", EXPORT_WAIT, || !seen.lock().unwrap().is_empty()).await);
    let (path, headers) = seen.lock().unwrap()[0].clone();
    assert_eq!(path, "/otlp/v1/metrics", "the _METRICS_ endpoint is used as it is");
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    assert_eq!(header("authorization").as_deref(), Some("Basic YmFrZXJ5OnNlY3JldA=="));
    assert_eq!(header("x-scope-orgid").as_deref(), Some("bakery"));
    assert_eq!(header("content-type").as_deref(), Some("application/x-protobuf"));
    collector.assert_alive();
    server.abort();
}

/// The value of the first sample of `name` whose line contains every `needle`.
fn scraped_value(text: &str, name: &str, needles: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .find(|l| needles.iter().all(|n| l.contains(n)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_that_goes_away_never_slows_ingest_drops_are_counted_and_export_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http) = (free_port().unwrap(), free_port().unwrap());
    let rotel = start_rotel(dir.path(), grpc, http).await;
    let mut env = otlp_env(format!("http://127.0.0.1:{grpc}"), "grpc");
    env.push(("OTEL_EXPORTER_OTLP_TIMEOUT", "300".into()));
    env.push(("OTEL_METRIC_EXPORT_TIMEOUT", "500".into()));
    let mut collector = RunningCollector::start(dir.path(), &env, &[]).await;
    let mut agent = TestAgent::connect(&collector.url, hello(NODE)).await;
    // Streams as a live agent does until the first export arrives (a silent node goes stale).
    let deadline = Instant::now() + EXPORT_WAIT;
    let mut next = 1;
    while known_value(&rotel.received(), NODE).is_none() {
        assert!(Instant::now() < deadline, "no first export within {EXPORT_WAIT:?}");
        agent.send(pod_batch(next, 1)).await;
        next += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    agent.wait_ack(next - 1).await;

    const BURST: u64 = 200;
    // Baseline: the time to ingest and acknowledge a burst with the backend up.
    let started = Instant::now();
    for seq in next..next + BURST {
        agent.send(pod_batch(seq, seq)).await;
    }
    agent.wait_ack(next + BURST - 1).await;
    let with_backend = started.elapsed();

    drop(rotel);
    let started = Instant::now();
    for seq in next + BURST..next + 2 * BURST {
        agent.send(pod_batch(seq, seq)).await;
    }
    agent.wait_ack(next + 2 * BURST - 1).await;
    let without_backend = started.elapsed();
    assert!(
        without_backend < with_backend * 3 + Duration::from_secs(1),
        "ingest slowed down without the backend: {without_backend:?} vs {with_backend:?} with it"
    );
    collector.wait_for_dropped_exports().await;
    collector.assert_alive();

    // The backend comes back on the same address: the newest value arrives.
    let rotel = start_rotel(dir.path(), grpc, http).await;
    let last = next + 2 * BURST;
    agent.send(pod_batch(last, KNOWN_RX_BYTES)).await;
    agent.wait_ack(last).await;
    let _heartbeat = keep_sending(agent, last + 1, KNOWN_RX_BYTES);
    waited(
        wait_until_async("export to resume with the newest value", EXPORT_WAIT, || {
            known_value(&rotel.received(), NODE).map(|(v, ..)| v) == Some(KNOWN_RX_BYTES as f64)
        })
        .await,
    );
    collector.assert_alive();
}

/// Installs Debian's prometheus when it is missing (needs root), once.
pub(crate) fn prometheus_binary() -> PathBuf {
    let installed = PathBuf::from("/usr/bin/prometheus");
    if installed.is_file() {
        return installed;
    }
    assert!(
        running_as_root(),
        "root_* test: Prometheus is not installed and installing it (apt-get install prometheus) needs root; \
         run as root or skip with `cargo test -- --skip root_`"
    );
    eprintln!("export tests: installing Debian's prometheus with apt-get (once)");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "prometheus"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        let _ = Command::new("apt-get").arg("update").status();
        assert!(install(), "apt-get install prometheus failed");
    }
    installed
}

#[tokio::test(flavor = "multi_thread")]
async fn root_a_real_prometheus_scrapes_the_known_value_under_the_translated_name() {
    let prometheus = prometheus_binary();
    let dir = tempfile::tempdir().unwrap();
    let mut collector = RunningCollector::start(dir.path(), &[], &[]).await;
    let mut agent = TestAgent::connect(&collector.url, hello(NODE)).await;
    agent.send(pod_batch(1, KNOWN_RX_BYTES)).await;
    agent.wait_ack(1).await;
    let _heartbeat = keep_sending(agent, 2, KNOWN_RX_BYTES);

    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: bakery\n    static_configs:\n      - targets: ['{}']\n",
            collector.metrics
        ),
    )
    .unwrap();
    let web: SocketAddr = format!("127.0.0.1:{}", free_port().unwrap()).parse().unwrap();
    let _prometheus = Spawn::new("prometheus", prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
        .arg(format!("--web.listen-address={web}"))
        .output(Output::Log(dir.path().join("prometheus.log")))
        .start()
        .expect("prometheus starts");
    let query = "/api/v1/query?query=k8s_pod_network_io_bytes_total%7Bk8s_pod_uid%3D%22uid-known%22%2Cnetwork_io_direction%3D%22receive%22%2Ck8s_node_name%3D%22node-export%22%2Ck8s_cluster_name%3D%22bakery-test%22%7D";
    let ask = move || async move {
        let body = body_of_200(web, query).await;
        body.and_then(|body| serde_json::from_str::<serde_json::Value>(&body).ok()).unwrap_or_default()
    };
    let scraped = wait_for_async("Prometheus to scrape the pod's bytes", Duration::from_secs(60), || async {
        let answer = ask().await;
        answer["data"]["result"].as_array().is_some_and(|r| !r.is_empty()).then_some(answer)
    })
    .await;
    let answer = match scraped {
        Ok(answer) => answer,
        Err(error) => panic!("{error}: {}", ask().await),
    };
    let value = answer["data"]["result"][0]["value"][1].as_str().map(str::to_string);
    assert_eq!(value.as_deref(), Some("987654321"), "{answer}");
    collector.assert_alive();
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_sends_the_last_values_before_the_collector_exits() {
    let dir = tempfile::tempdir().unwrap();
    let rotel = start_rotel(dir.path(), free_port().unwrap(), free_port().unwrap()).await;
    let mut env = otlp_env(format!("http://127.0.0.1:{}", rotel.grpc), "grpc");
    // No periodic export happens during the test: only the one made on SIGTERM.
    env.retain(|(name, _)| *name != "OTEL_METRIC_EXPORT_INTERVAL");
    env.push(("OTEL_METRIC_EXPORT_INTERVAL", "600000".into()));
    let mut collector = RunningCollector::start(dir.path(), &env, &[]).await;
    let mut agent = TestAgent::connect(&collector.url, hello(NODE)).await;
    agent.send(pod_batch(1, KNOWN_RX_BYTES)).await;
    agent.wait_ack(1).await;
    assert!(known_value(&rotel.received(), NODE).is_none(), "nothing exported before the interval");

    let pid = collector.process.pid().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    drop(agent);
    let exited = wait_for_async("the collector to exit after SIGTERM", Duration::from_secs(30), || {
        std::future::ready(collector.process.try_status())
    })
    .await;
    let status = match exited {
        Ok(status) => status,
        Err(error) => panic!("{error}:\n{}", collector.log()),
    };
    assert!(status.success(), "exit status {status}:\n{}", collector.log());
    waited(
        wait_until_async("rotel to print the final export", Duration::from_secs(10), || {
            known_value(&rotel.received(), NODE).map(|(v, ..)| v) == Some(KNOWN_RX_BYTES as f64)
        })
        .await,
    );
}

/// nginx (Debian's, as a real TLS terminator) in front of rotel: one port for OTLP/HTTP, one
/// for OTLP/gRPC over HTTP/2, both serving the test CA's certificate for `localhost` and
/// requiring a client certificate that CA signed.
struct TlsFront {
    process: Process,
    http: u16,
    grpc: u16,
}

impl TlsFront {
    async fn start(dir: &Path, pki: &crate::tls::Pki, rotel: &Rotel) -> TlsFront {
        let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"].into_iter().map(PathBuf::from).find(|p| p.is_file());
        let nginx =
            nginx.expect("nginx is needed as the TLS front of this test: apt-get install nginx (cargo xtask ci does)");
        let prefix = dir.join("nginx");
        std::fs::create_dir_all(&prefix).unwrap();
        let certificate = crate::tls::write(&prefix, "server.crt", &pki.server.0);
        let key = crate::tls::write(&prefix, "server.key", &pki.server.1);
        let ca = crate::tls::write(&prefix, "ca.crt", &pki.ca_pem);
        let (http, grpc) = (free_port().unwrap(), free_port().unwrap());
        // One process (no master), so killing it leaves no worker behind. Bodies stay in memory,
        // and as root nginx keeps root, so nothing has to be written where `nobody` may not.
        let user = if running_as_root() { "user root;" } else { "" };
        let config = format!(
            "{user}
master_process off;
daemon off;
pid {prefix}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_buffer_size 8m;
    client_max_body_size 8m;
    ssl_certificate {certificate};
    ssl_certificate_key {key};
    ssl_client_certificate {ca};
    ssl_verify_client on;
    server {{
        listen 127.0.0.1:{http} ssl;
        location / {{ proxy_pass http://127.0.0.1:{rotel_http}; }}
    }}
    server {{
        listen 127.0.0.1:{grpc} ssl http2;
        location / {{ grpc_pass grpc://127.0.0.1:{rotel_grpc}; }}
    }}
}}
",
            prefix = prefix.display(),
            certificate = certificate.display(),
            key = key.display(),
            ca = ca.display(),
            rotel_http = rotel.http,
            rotel_grpc = rotel.grpc,
        );
        let config_path = crate::tls::write(&prefix, "nginx.conf", &config);
        let error_log = prefix.join("error.log");
        let process = Spawn::new("nginx", nginx)
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&config_path)
            .arg("-e")
            .arg(&error_log)
            .output(Output::Null)
            .start()
            .expect("nginx starts");
        let mut front = TlsFront { process, http, grpc };
        let listening = wait_for_async("nginx to listen", Duration::from_secs(20), || {
            if let Some(status) = front.process.try_status() {
                panic!("nginx exited ({status}):\n{}", std::fs::read_to_string(&error_log).unwrap_or_default());
            }
            async move {
                let accepts = |port| tokio::net::TcpStream::connect(("127.0.0.1", port));
                (accepts(http).await.is_ok() && accepts(grpc).await.is_ok()).then_some(())
            }
        })
        .await;
        waited(listening);
        front
    }
}

/// The TLS variables for a backend that wants the test CA's client certificate.
fn tls_env(dir: &Path, pki: &crate::tls::Pki, endpoint: String, protocol: &str) -> Vec<(&'static str, String)> {
    let ca = crate::tls::write(dir, "backend-ca.crt", &pki.ca_pem);
    let client_certificate = crate::tls::write(dir, "client.crt", &pki.client.0);
    let client_key = crate::tls::write(dir, "client.key", &pki.client.1);
    let mut env = otlp_env(endpoint, protocol);
    env.push(("OTEL_EXPORTER_OTLP_CERTIFICATE", ca.display().to_string()));
    env.push(("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", client_certificate.display().to_string()));
    env.push(("OTEL_EXPORTER_OTLP_CLIENT_KEY", client_key.display().to_string()));
    env
}

#[tokio::test(flavor = "multi_thread")]
async fn otlp_over_https_with_a_private_ca_and_a_client_certificate_reaches_the_backend_on_both_transports() {
    let pki = crate::tls::make_pki();
    let dir = tempfile::tempdir().unwrap();
    let rotel = start_rotel(dir.path(), free_port().unwrap(), free_port().unwrap()).await;
    let front = TlsFront::start(dir.path(), &pki, &rotel).await;
    for (protocol, port) in [("http/protobuf", front.http), ("grpc", front.grpc)] {
        let run = dir.path().join(protocol.replace('/', "-"));
        std::fs::create_dir_all(&run).unwrap();
        let env = tls_env(&run, &pki, format!("https://localhost:{port}"), protocol);
        let mut collector = RunningCollector::start(&run, &env, &[]).await;
        assert_rotel_receives_the_known_value(&rotel, &collector).await;
        collector.assert_alive();
        drop(collector);
        // The next transport must bring its own export: forget what this one delivered.
        rotel.forget_received().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_certificate_from_an_unknown_ca_is_refused_and_counted_as_dropped() {
    let pki = crate::tls::make_pki();
    let dir = tempfile::tempdir().unwrap();
    let rotel = start_rotel(dir.path(), free_port().unwrap(), free_port().unwrap()).await;
    let front = TlsFront::start(dir.path(), &pki, &rotel).await;
    // The collector trusts only the public roots: the test CA's server certificate must fail.
    let mut env = tls_env(dir.path(), &pki, format!("https://localhost:{}", front.http), "http/protobuf");
    env.retain(|(name, _)| *name != "OTEL_EXPORTER_OTLP_CERTIFICATE");
    let mut collector = RunningCollector::start(dir.path(), &env, &[]).await;
    let mut agent = TestAgent::connect(&collector.url, hello(NODE)).await;
    agent.send(pod_batch(1, KNOWN_RX_BYTES)).await;
    agent.wait_ack(1).await;
    let _heartbeat = keep_sending(agent, 2, KNOWN_RX_BYTES);
    collector.wait_for_dropped_exports().await;
    assert!(known_value(&rotel.received(), NODE).is_none(), "nothing may reach a backend that failed verification");
    collector.assert_alive();
}
