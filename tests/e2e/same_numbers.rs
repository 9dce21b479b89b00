//! Grafana and bakery-top show the same numbers for a node: one hand-made sample pair, sent to an
//! in-process collector, read back through `/metrics` with the dashboard's own filters (what
//! Grafana plots) and through bakery-top's gRPC source (what the TUI shows). Memory used and the
//! node's NIC traffic must match each other and the figures worked out by hand below.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use bakery_collector::{Collector, ServeConfig};
use bakery_proto::v1::agent_message::Kind;
use bakery_proto::v1::ingest_client::IngestClient;
use bakery_proto::v1::{AgentMessage, Batch, Hello, InterfaceKind, Memory, NetCounters, NetInterface, Sample};
use bakery_top::source::{GrpcConfig, GrpcSource, Source};
use tokio::sync::mpsc;

const NODE: &str = "same-numbers";
const WAIT: Duration = Duration::from_secs(20);

// /proc/meminfo of the node. MemAvailable is not MemFree + Buffers + Cached, so a "used" of
// total - free - buffers - cached (4.3 GB) would differ from total - available (3 GB).
const MEM_TOTAL: u64 = 8_000_000_000;
const MEM_AVAILABLE: u64 = 5_000_000_000;
const MEM_FREE: u64 = 1_000_000_000;
const MEM_BUFFERS: u64 = 200_000_000;
const MEM_CACHED: u64 = 2_500_000_000;
/// MemTotal - MemAvailable.
const USED_BY_HAND: u64 = 3_000_000_000;

/// The second sample is taken this long after the first.
const STEP_MS: i64 = 1_000;
/// The node's one NIC, eth0, over the step: received and sent. The pod's veth and the CNI
/// bridge carry the same pod traffic again (and lo its own), and must not be counted.
const ETH0_RX: (u64, u64) = (10_000_000, 10_750_000);
const ETH0_TX: (u64, u64) = (4_000_000, 4_250_000);
const WIRE_RX_PER_STEP_BY_HAND: u64 = 750_000;
const WIRE_TX_PER_STEP_BY_HAND: u64 = 250_000;

fn nic(name: &str, kind: InterfaceKind, master: &str, rx_bytes: u64, tx_bytes: u64) -> NetInterface {
    NetInterface {
        name: name.into(),
        counters: Some(NetCounters { rx_bytes, tx_bytes, ..NetCounters::default() }),
        kind: kind as i32,
        master: master.into(),
    }
}

/// The node's sample at `step` (0 or 1).
fn sample(timestamp_ms: i64, step: usize) -> Sample {
    let pick = |pair: (u64, u64)| if step == 0 { pair.0 } else { pair.1 };
    let pod = (pick((2_000_000, 2_500_000)), pick((9_000_000, 9_600_000)));
    Sample {
        timestamp_ms,
        memory: Some(Memory {
            total_bytes: MEM_TOTAL,
            available_bytes: MEM_AVAILABLE,
            free_bytes: MEM_FREE,
            buffers_bytes: MEM_BUFFERS,
            cached_bytes: MEM_CACHED,
            ..Memory::default()
        }),
        interfaces: vec![
            nic("lo", InterfaceKind::Loopback, "", pick((5_000, 5_100)), pick((5_000, 5_100))),
            nic("eth0", InterfaceKind::Physical, "", pick(ETH0_RX), pick(ETH0_TX)),
            nic("cni0", InterfaceKind::Bridge, "", pod.0, pod.1),
            nic("veth3a1f9c2e", InterfaceKind::PodVeth, "cni0", pod.1, pod.0),
            // A Docker-style bridge and a VPN tunnel: neither is the node's wire, and neither
            // name says so to a name filter.
            nic("br0", InterfaceKind::Bridge, "", pod.0, pod.1),
            nic("tailscale0", InterfaceKind::Tunnel, "", pick((70_000, 90_000)), pick((30_000, 50_000))),
        ],
        ..Sample::default()
    }
}

/// The samples of `name` in a Prometheus exposition: their labels and value.
fn series(text: &str, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    text.lines()
        .filter_map(|line| line.strip_prefix(name)?.strip_prefix('{'))
        .filter_map(|rest| {
            let (labels, value) = rest.rsplit_once("} ")?;
            let labels = labels
                .split("\",")
                .filter_map(|pair| {
                    let (key, value) = pair.split_once("=\"")?;
                    Some((key.to_string(), value.trim_end_matches('"').to_string()))
                })
                .collect();
            Some((labels, value.parse().ok()?))
        })
        .collect()
}

/// The interface names the dashboard's network panel leaves out: its
/// `network_interface_name!~"..."` matcher, an alternation of names and `prefix.*` patterns
/// (none when the panel sums every series of the node).
fn dashboard_excluded_interfaces() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/bakery/dashboards/bakery.json");
    let dashboard = std::fs::read_to_string(path).expect("the dashboard");
    let marker = "network_interface_name!~\\\"";
    let expr = dashboard
        .lines()
        .find(|l| l.contains("rate(system_network_io_bytes_total"))
        .expect("the dashboard's NIC panel");
    let Some(start) = expr.find(marker).map(|at| at + marker.len()) else { return Vec::new() };
    let regex = &expr[start..start + expr[start..].find("\\\"").expect("the matcher's end")];
    let patterns: Vec<String> = regex.split('|').map(str::to_string).collect();
    for pattern in &patterns {
        let literal = pattern.strip_suffix(".*").unwrap_or(pattern);
        assert!(
            literal.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "the dashboard's interface matcher {regex:?} is more than names and prefixes; teach this test"
        );
    }
    patterns
}

/// Whether PromQL's fully anchored `pattern` (a name or `prefix.*`) matches `name`.
fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix(".*") {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    }
}

/// What Grafana reads from one scrape: the node's memory used (`system_memory_state="used"`) and
/// its NIC bytes received and sent, summed over the interfaces the dashboard keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Scraped {
    memory_used: f64,
    rx: f64,
    tx: f64,
}

fn grafana_view(text: &str, excluded: &[String]) -> Option<Scraped> {
    let on_node = |labels: &BTreeMap<String, String>| labels.get("k8s_node_name").map(String::as_str) == Some(NODE);
    let memory_used = series(text, "system_memory_usage_bytes")
        .into_iter()
        .find(|(labels, _)| on_node(labels) && labels.get("system_memory_state").map(String::as_str) == Some("used"))?
        .1;
    let (mut rx, mut tx) = (0.0, 0.0);
    for (labels, value) in series(text, "system_network_io_bytes_total") {
        let interface = labels.get("network_interface_name").cloned().unwrap_or_default();
        if !on_node(&labels) || excluded.iter().any(|pattern| matches(pattern, &interface)) {
            continue;
        }
        match labels.get("network_io_direction").map(String::as_str) {
            Some("receive") => rx += value,
            Some("transmit") => tx += value,
            _ => {}
        }
    }
    Some(Scraped { memory_used, rx, tx })
}

/// Scrapes until Grafana's view shows `rx` received bytes on the node's wire.
async fn scrape_until(metrics: SocketAddr, excluded: &[String], rx: u64) -> Scraped {
    let scrape = || async move {
        let response = bakery_lab::http::get(metrics, "/metrics", WAIT).await;
        response.ok().and_then(|response| response.ok()).unwrap_or_default()
    };
    let what = format!("{rx} bytes received on /metrics");
    let scraped = bakery_lab::wait_for_async(&what, WAIT, || async {
        grafana_view(&scrape().await, excluded).filter(|view| view.rx == rx as f64)
    })
    .await;
    match scraped {
        Ok(view) => view,
        Err(error) => panic!("{error}:\n{}", scrape().await),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_and_bakery_top_show_the_same_memory_used_and_nic_bytes() {
    let excluded = dashboard_excluded_interfaces();
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServeConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().join("data"));
    config.insecure_no_auth = true;
    config.export.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    config.export.metrics_listen_required = true;
    let collector = Collector::start(config).await.unwrap();
    let url = format!("http://{}", collector.local_addr());
    let metrics = collector.metrics_addr().expect("/metrics listens");

    // A scripted agent. Its declared interval keeps the node fresh for the whole test.
    let (tx, rx) = mpsc::channel(8);
    let hello = Hello {
        node_name: NODE.into(),
        interval_ms: 5_000,
        clock_ticks_per_second: 100,
        stream_id: "same-numbers".into(),
        ..Default::default()
    };
    tx.send(AgentMessage { kind: Some(Kind::Hello(hello)) }).await.unwrap();
    let mut client = IngestClient::connect(url.clone()).await.unwrap();
    let _responses = client.stream(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap();
    let t0 = bakery_collector::now_ms();
    let send = |seq: u64| {
        let batch =
            Batch { seq, new_pods: vec![], samples: vec![sample(t0 + (seq as i64 - 1) * STEP_MS, seq as usize - 1)] };
        AgentMessage { kind: Some(Kind::Batch(batch)) }
    };

    tx.send(send(1)).await.unwrap();
    let first = scrape_until(metrics, &excluded, ETH0_RX.0).await;
    tx.send(send(2)).await.unwrap();
    let second = scrape_until(metrics, &excluded, ETH0_RX.1).await;

    // bakery-top's own source: the latest sample, the earlier one from the collector's history.
    let mut top = GrpcSource::new(GrpcConfig::plain(url)).unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let node = loop {
        let snapshot = top.snapshot().await.unwrap();
        if let Some(node) = snapshot.nodes.into_iter().find(|n| n.name == NODE && n.nic.is_some()) {
            break node;
        }
        assert!(tokio::time::Instant::now() < deadline, "bakery-top shows no NIC rates for {NODE}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let top_memory = node.memory.expect("bakery-top shows memory");
    let top_nic = node.nic.expect("bakery-top shows NIC rates");

    // Memory used: MemTotal - MemAvailable on both.
    assert_eq!(second.memory_used, USED_BY_HAND as f64, "Grafana's memory used");
    assert_eq!(top_memory.used_bytes, USED_BY_HAND, "bakery-top's memory used");
    assert_eq!(top_memory.total_bytes, MEM_TOTAL);

    // NIC bytes: eth0 alone, as a counter on /metrics and as its increase over the step, which
    // bakery-top shows per second (the step is one second).
    assert_eq!((second.rx, second.tx), (ETH0_RX.1 as f64, ETH0_TX.1 as f64), "Grafana's wire bytes");
    let grafana_step = (second.rx - first.rx, second.tx - first.tx);
    assert_eq!(grafana_step, (WIRE_RX_PER_STEP_BY_HAND as f64, WIRE_TX_PER_STEP_BY_HAND as f64), "Grafana's increase");
    let seconds = STEP_MS as f64 / 1000.0;
    let top_step = (top_nic.rx_bytes_per_second * seconds, top_nic.tx_bytes_per_second * seconds);
    assert_eq!(top_step, grafana_step, "bakery-top's wire bytes over the step");

    collector.stop().await.unwrap();
}
