//! The chart's alerting rules (charts/bakery/rules/bakery-alerts.yaml) in a real Prometheus
//! (Debian's) that scrapes a live collector, so the rules are shown to read series the collector
//! really serves under the names and labels it really gives them, not only the synthetic series
//! of their promtool unit tests; and the dashboard's queries in the same Prometheus.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bakery_lab::process::{Output, Spawn};
use bakery_lab::{free_port, wait_for_async};
use bakery_proto::v1::agent_message::Kind as AgentKind;
use bakery_proto::v1::{
    AgentMessage, Batch, Conntrack, CpuFrequency, CpuTimes, InterfaceKind, Memory, NetCounters, NetInterface,
    PodSample, Pressure, Sample, TcpConnections, Temperature, Throttle, ThrottleFlags,
};

use crate::export::{RunningCollector, body_of_200, prometheus_binary};
use crate::harness::*;

const RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/bakery/rules/bakery-alerts.yaml");
const DASHBOARD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/bakery/dashboards/bakery.json");
/// The whole wait for the alerts, within the test's one-minute budget.
const ALERT_WAIT: Duration = Duration::from_secs(40);
/// The wait for the dashboard's queries, once the alerts are active (their rate windows are full).
const DASHBOARD_WAIT: Duration = Duration::from_secs(10);

/// A node too hot: 85 °C on its CPU sensor, the firmware's soft limit, frequency capped and
/// throttled, and 60 000 of 65 536 conntrack entries (92 %).
const HOT: &str = "hot-pi";
/// A node under-voltage (and throttled for it), cool, its conntrack table nearly empty.
const WEAK: &str = "weak-pi";
/// A node whose agent said one batch and then nothing.
const SILENT: &str = "silent-pi";

/// Which nodes each alert must be active for (pending or firing: its expression returned those
/// series); "-" is an alert without a node (the collector's own).
const ACTIVE: &[(&str, &[&str])] = &[
    ("BakeryHogVerdict", &[HOT]),
    ("BakeryNodeUnderVoltage", &[WEAK]),
    ("BakeryNodeThermalThrottling", &[HOT]),
    ("BakeryNodeHot", &[HOT]),
    ("BakeryConntrackNearlyFull", &[HOT]),
    ("BakeryAgentNotReporting", &[SILENT]),
    ("BakeryExportDropping", &["-"]),
    ("BakeryCollectorNotCommitting", &[]),
];

fn pi_sample(seq: u64, hot: bool, under_voltage: bool) -> Sample {
    let flags =
        ThrottleFlags { under_voltage, arm_frequency_capped: hot, throttled: true, soft_temperature_limit: hot };
    // get_throttled: bits 0-3 now, 16-19 since boot.
    let bits = u32::from(under_voltage) | u32::from(hot) << 1 | 1 << 2 | u32::from(hot) << 3;
    let mut sample = sample(bakery_collector::now_ms());
    sample.throttle = Some(Throttle { raw: bits | bits << 16, now: Some(flags), since_boot: Some(flags) });
    sample.temperatures = vec![Temperature {
        sensor: "thermal_zone0/cpu-thermal".into(),
        millidegrees_celsius: if hot { 85_000 } else { 55_000 },
    }];
    sample.conntrack = Some(Conntrack { count: if hot { 60_000 } else { 1_000 }, max: 65_536 });
    // What the dashboard shows besides, counters growing as a live node's do.
    sample.cpu_total = Some(CpuTimes {
        cpu: -1,
        user: 100 * seq,
        system: 50 * seq,
        idle: 400 * seq,
        softirq: 5 * seq,
        ..Default::default()
    });
    sample.memory =
        Some(Memory { total_bytes: 8 << 30, available_bytes: 6 << 30, free_bytes: 5 << 30, ..Default::default() });
    sample.pressure =
        vec![Pressure { resource: "cpu".into(), kind: "some".into(), total_us: 1000 * seq, ..Default::default() }];
    sample.cpu_frequencies =
        vec![CpuFrequency { cpu: 0, current_khz: if hot { 1_000_000 } else { 1_800_000 }, max_khz: 1_800_000 }];
    let counters = NetCounters { rx_bytes: 1000 * seq, tx_bytes: 500 * seq, ..Default::default() };
    sample.interfaces = vec![NetInterface {
        name: "eth0".into(),
        counters: Some(counters),
        kind: InterfaceKind::Physical.into(),
        master: String::new(),
    }];
    sample.pods = vec![PodSample {
        pod_ref: 1,
        network: Some(counters),
        tcp: Some(TcpConnections { established_inbound: 3, ..Default::default() }),
        cpu_usage_us: 100_000 * seq,
        memory_working_set_bytes: 1 << 20,
        process_count: 1,
    }];
    sample
}

fn pi_batch(seq: u64, hot: bool, under_voltage: bool) -> AgentMessage {
    AgentMessage {
        kind: Some(AgentKind::Batch(Batch {
            seq,
            new_pods: if seq == 1 { vec![pod(1, &format!("pod-{hot}-{under_voltage}"))] } else { vec![] },
            samples: vec![pi_sample(seq, hot, under_voltage)],
        })),
    }
}

/// An agent streaming every 250 ms, as a live one does; stops when dropped.
struct Streaming(tokio::task::JoinHandle<()>);

impl Drop for Streaming {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn stream_pi(url: &str, node: &str, hot: bool, under_voltage: bool) -> Streaming {
    let agent = TestAgent::connect(url, hello(node)).await;
    Streaming(tokio::spawn(async move {
        for seq in 1.. {
            if !agent.try_send(pi_batch(seq, hot, under_voltage)).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }))
}

/// `text` for a URL's query string.
fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn prometheus_api(web: SocketAddr, path: &str) -> serde_json::Value {
    let body = body_of_200(web, path).await;
    body.and_then(|body| serde_json::from_str(&body).ok()).unwrap_or_default()
}

/// Each alerting rule Prometheus evaluates: (name, health, state, the k8s_node_name of each of
/// its alerts, "-" for none).
fn rule_states(rules: &serde_json::Value) -> Vec<(String, String, String, Vec<String>)> {
    let groups = rules["data"]["groups"].as_array().cloned().unwrap_or_default();
    let text = |value: &serde_json::Value| value.as_str().unwrap_or_default().to_string();
    groups
        .iter()
        .flat_map(|group| group["rules"].as_array().cloned().unwrap_or_default())
        .map(|rule| {
            let alerts = rule["alerts"].as_array().cloned().unwrap_or_default();
            let mut nodes: Vec<String> =
                alerts.iter().map(|a| a["labels"]["k8s_node_name"].as_str().unwrap_or("-").to_string()).collect();
            nodes.sort();
            (text(&rule["name"]), text(&rule["health"]), text(&rule["state"]), nodes)
        })
        .collect()
}

/// Every panel target's and annotation's query of the dashboard, its Grafana variables replaced
/// as Grafana does for "All" (`.*`, the variables' allValue) and a 1 s scrape ($__rate_interval
/// is at least four scrape intervals: 5s covers it).
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(DASHBOARD).expect("the chart's dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut out = Vec::new();
    // A collapsed row holds its panels itself.
    let top = dashboard["panels"].as_array().into_iter().flatten();
    let panels = top.flat_map(|panel| std::iter::once(panel).chain(panel["panels"].as_array().into_iter().flatten()));
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or_default();
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.extend(target["expr"].as_str().map(|e| (title.to_string(), e.to_string())));
        }
    }
    for annotation in dashboard["annotations"]["list"].as_array().into_iter().flatten() {
        let name = annotation["name"].as_str().unwrap_or_default();
        out.extend(annotation["expr"].as_str().map(|e| (format!("annotation {name}"), e.to_string())));
    }
    for (_, expr) in &mut out {
        for (variable, value) in
            [("$__rate_interval", "5s"), ("$__interval", "1s"), ("$cluster", ".*"), ("$node", ".*"), ("$pod", ".*")]
        {
            *expr = expr.replace(variable, value);
        }
        assert!(!expr.contains('$'), "a Grafana variable left in {expr}");
    }
    out
}

/// Panels (by title) that cannot have data here, and why. Shares and the imbalance score are per
/// workload, and workloads come from the Kubernetes watch, which this test has none of; a load-test
/// window is opened through the Query service, which `windows.rs` tests.
const NO_DATA_HERE: &[&str] = &[
    "Share of the workload's traffic: observed vs expected",
    "Imbalance score (max/mean of normalised shares)",
    "annotation Load-test windows",
];

/// The dashboard's queries that return no series: (panel title, query and answer).
async fn empty_dashboard_queries(web: SocketAddr, queries: &[(String, String)]) -> Vec<(String, String)> {
    let mut empty = Vec::new();
    for (title, expr) in queries {
        let answer = prometheus_api(web, &format!("/api/v1/query?query={}", percent_encoded(expr))).await;
        if answer["data"]["result"].as_array().is_none_or(|r| r.is_empty()) {
            empty.push((title.clone(), format!("{expr} ({answer})")));
        }
    }
    empty
}

fn write_config(dir: &Path, metrics: SocketAddr) -> std::path::PathBuf {
    let config = dir.join("prometheus.yml");
    let rules = Path::new(RULES).canonicalize().expect("the chart's rule file");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - '{}'\nscrape_configs:\n  - job_name: bakery\n    static_configs:\n      - targets: ['{metrics}']\n",
            rules.display()
        ),
    )
    .unwrap();
    config
}

/// What it shows: Prometheus 2.42 loads the rule file and evaluates every rule without an error;
/// against a live collector fed a hot and throttled node, an under-voltage node and a silent
/// agent, and exporting OTLP to an address where nothing listens, each of seven alerts becomes
/// pending or firing (its expression, thresholds included, returned series) for exactly the
/// node it is about, and for no other. The eighth, BakeryCollectorNotCommitting, stays inactive
/// because the collector commits (a full disk is `root.rs`'s business); its expression without
/// its threshold returns the collector's series, seconds old. What it does not show: that the
/// `for` durations and the annotations come out right (the promtool unit tests do), nor a hog
/// verdict of another cause than thermal throttling (the only one a node can raise without
/// Kubernetes).
///
/// Then each query of the dashboard (charts/bakery/dashboards/bakery.json: every panel target
/// and annotation, its variables set to "All" and `$__rate_interval` to 5 s) returns at least one
/// series from that Prometheus, node and pod panels included (the agents also send memory, PSI,
/// CPU frequency, a NIC and one pod each); exactly the panels of `NO_DATA_HERE` stay empty, for
/// the reason given there, and the failure lists every empty query at once.
#[tokio::test(flavor = "multi_thread")]
async fn root_each_alert_expression_selects_the_series_of_a_live_collector_in_a_real_prometheus() {
    let prometheus = prometheus_binary();
    let dir = tempfile::tempdir().unwrap();
    let nobody_listens = format!("http://127.0.0.1:{}", free_port().unwrap());
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", nobody_listens),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_string()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "200".to_string()),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "300".to_string()),
    ];
    let mut collector = RunningCollector::start(dir.path(), &env, &[]).await;
    let _hot = stream_pi(&collector.url, HOT, true, false).await;
    let _weak = stream_pi(&collector.url, WEAK, false, true).await;
    let mut silent = TestAgent::connect(&collector.url, hello(SILENT)).await;
    silent.send(pi_batch(1, false, false)).await;
    silent.wait_ack(1).await;

    let web: SocketAddr = format!("127.0.0.1:{}", free_port().unwrap()).parse().unwrap();
    let _prometheus = Spawn::new("prometheus", prometheus)
        .arg(format!("--config.file={}", write_config(dir.path(), collector.metrics).display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
        .arg(format!("--web.listen-address={web}"))
        .output(Output::Log(dir.path().join("prometheus.log")))
        .start()
        .expect("prometheus starts");

    assert_each_alert_as_expected(web, &dir.path().join("prometheus.log")).await;
    assert_each_dashboard_query_returns_series(web).await;
    collector.assert_alive();
}

/// Each alert of `ACTIVE` pending or firing for exactly its nodes, every rule healthy, and the
/// commit alert's series present and young.
async fn assert_each_alert_as_expected(web: SocketAddr, prometheus_log: &std::path::Path) {
    let mut expected: Vec<(String, Vec<String>)> =
        ACTIVE.iter().map(|(name, nodes)| (name.to_string(), nodes.iter().map(|n| n.to_string()).collect())).collect();
    expected.sort();
    let active = |states: &[(String, String, String, Vec<String>)]| -> Vec<(String, Vec<String>)> {
        let mut active: Vec<_> = states.iter().map(|(name, _, _, nodes)| (name.clone(), nodes.clone())).collect();
        active.sort();
        active
    };
    let reached = wait_for_async("each alert active for its node in Prometheus", ALERT_WAIT, || async {
        let states = rule_states(&prometheus_api(web, "/api/v1/rules").await);
        (active(&states) == expected).then_some(states)
    })
    .await;
    let states = match reached {
        Ok(states) => states,
        Err(error) => {
            let rules = prometheus_api(web, "/api/v1/rules").await;
            let log = std::fs::read_to_string(prometheus_log).unwrap_or_default();
            panic!("{error}\nexpected {expected:?}\ngot {:?}\nprometheus log:\n{log}", rule_states(&rules));
        }
    };
    for (name, health, state, _) in &states {
        assert_eq!(health, "ok", "{name} evaluates without an error: {states:?}");
        let quiet = name == "BakeryCollectorNotCommitting";
        assert_eq!(state == "inactive", quiet, "{name} is {state}");
    }

    // The one alert the collector cannot be made to raise here: its series is there, and young.
    let query = format!(
        "/api/v1/query?query={}",
        percent_encoded(
            "time() - bakery_collector_commit_last_success_timestamp_seconds{k8s_cluster_name=\"bakery-test\"}"
        )
    );
    let answer = prometheus_api(web, &query).await;
    let age: Option<f64> = answer["data"]["result"][0]["value"][1].as_str().and_then(|v| v.parse().ok());
    assert!(age.is_some_and(|age| age < 10.0), "the last good commit is seconds old: {answer}");
}

/// Each dashboard query returns series, but for exactly the panels of `NO_DATA_HERE`.
async fn assert_each_dashboard_query_returns_series(web: SocketAddr) {
    let queries = dashboard_queries();
    assert!(queries.len() >= 20, "the dashboard has its queries: {queries:?}");
    // Exactly the allow-listed panels are empty: a listed one showing data must leave the list.
    let mut allowed: Vec<String> = NO_DATA_HERE.iter().map(|title| title.to_string()).collect();
    allowed.sort();
    let empty_panels = |empty: &[(String, String)]| {
        let mut titles: Vec<String> = empty.iter().map(|(title, _)| title.clone()).collect();
        titles.dedup();
        titles.sort();
        titles.dedup();
        titles
    };
    let waited = wait_for_async("each dashboard query to return series", DASHBOARD_WAIT, || async {
        let empty = empty_dashboard_queries(web, &queries).await;
        (empty_panels(&empty) == allowed).then_some(())
    })
    .await;
    if waited.is_err() {
        let empty = empty_dashboard_queries(web, &queries).await;
        let listed: Vec<String> = empty.iter().map(|(title, query)| format!("{title}: {query}")).collect();
        panic!("dashboard queries without series (allowed: {allowed:?}):\n{}", listed.join("\n"));
    }
}
