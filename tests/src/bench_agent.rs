//! `cargo xtask bench agent`: the agent against Debian's prometheus-node-exporter, side by side in one run.
//!
//! Setup: N live simulated pods (network namespaces, kubepods cgroups, held
//! connections) joined by veth pairs to a node (a network namespace, where
//! the benchmark then runs, as a hostNetwork DaemonSet does), a real
//! collector on the node's loopback, the agent streaming to it at a
//! fixed interval, and node_exporter scraped at the same rate. Printed: CPU
//! seconds per sample against CPU seconds per scrape, RSS of both, and
//! protobuf bytes per sample against the scrape's bytes — as ratios, because
//! absolute timings on a shared machine are noise.
//!
//! Both sides are measured over the same window after a warm-up, the way a
//! long-running agent and exporter cost: the agent's samples are those the
//! collector received in the window (Query `History`), node_exporter's the
//! scrapes made in it. The agent's warm-up CPU (process start, the first read
//! of every pod's socket tables) is printed on its own line.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bakery_agent::roots::HostRoots;
use bakery_agent::sampler::Sampler;
use bakery_lab::process::{Output, Spawn};
use bakery_lab::{free_port, pause, wait_until};
use prost::Message;
use serde::Serialize;

use crate::measure;
use crate::sim::{SimNode, SimPod};

/// What the benchmark is asked to do.
#[derive(Debug, Clone)]
pub struct AgentBench {
    /// Folder with `bakery-agent` and `bakery-collector` (a release build).
    pub bin_dir: PathBuf,
    pub pods: usize,
    /// Connections each pod's client holds open.
    pub connections_per_pod: u32,
    pub interval: Duration,
    /// The measured window.
    pub duration: Duration,
    /// Running time before the window.
    pub warmup: Duration,
}

/// One side's cost.
#[derive(Debug, Clone, Serialize)]
pub struct Cost {
    pub cpu_seconds_per_sample: f64,
    pub rss_bytes: u64,
    pub bytes_per_sample: u64,
    pub samples: u64,
}

/// The result: both sides and their ratios (agent / node_exporter).
#[derive(Debug, Clone, Serialize)]
pub struct AgentBenchResult {
    pub pods: usize,
    pub interval_seconds: f64,
    pub duration_seconds: f64,
    pub agent: Cost,
    /// Bytes of the first batch on a stream, which also declares every pod once.
    pub agent_first_batch_bytes: u64,
    /// The agent's CPU from its start to the window (not in the per-sample figure).
    pub agent_warmup_cpu_seconds: f64,
    pub warmup_seconds: f64,
    pub node_exporter: Cost,
    pub cpu_ratio: f64,
    pub rss_ratio: f64,
    pub bytes_ratio: f64,
}

/// The goals from the issue: CPU ≤ 0.1x, RSS ≤ 0.5x, bytes ≤ 0.1x of node_exporter.
pub const GOALS: (f64, f64, f64) = (0.1, 0.5, 0.1);

impl AgentBenchResult {
    pub fn meets_goals(&self) -> bool {
        self.cpu_ratio <= GOALS.0 && self.rss_ratio <= GOALS.1 && self.bytes_ratio <= GOALS.2
    }

    /// The table printed for people (and pasted into BENCHMARKS.md).
    pub fn table(&self) -> String {
        let row = |name: &str, agent: String, peer: String, ratio: f64, goal: f64| {
            format!(
                "| {name} | {agent} | {peer} | {ratio:.3}x | ≤ {goal}x {} |\n",
                if ratio <= goal { "✓" } else { "✗" }
            )
        };
        let mut out =
            String::from("| measure | bakery-agent | node_exporter | ratio | goal |\n|---|---|---|---|---|\n");
        out += &row(
            "CPU per sample / scrape",
            format!("{:.3} ms", self.agent.cpu_seconds_per_sample * 1e3),
            format!("{:.3} ms", self.node_exporter.cpu_seconds_per_sample * 1e3),
            self.cpu_ratio,
            GOALS.0,
        );
        out += &row(
            "RSS",
            format!("{:.1} MiB", self.agent.rss_bytes as f64 / 1048576.0),
            format!("{:.1} MiB", self.node_exporter.rss_bytes as f64 / 1048576.0),
            self.rss_ratio,
            GOALS.1,
        );
        out += &row(
            "bytes per sample / scrape",
            format!("{} B", self.agent.bytes_per_sample),
            format!("{} B", self.node_exporter.bytes_per_sample),
            self.bytes_ratio,
            GOALS.2,
        );
        out += &format!(
            "\n{} pods, {} samples and {} scrapes every {:.0} ms over {:.0} s after a {:.0} s warm-up; the first batch of a stream (declaring every pod) is {} B.\nThe agent's warm-up (start-up and the first read of every pod's socket tables) took {:.0} ms of CPU, not counted above.\n",
            self.pods,
            self.agent.samples,
            self.node_exporter.samples,
            self.interval_seconds * 1e3,
            self.duration_seconds,
            self.warmup_seconds,
            self.agent_first_batch_bytes,
            self.agent_warmup_cpu_seconds * 1e3,
        );
        out
    }
}

fn progress(message: &str) {
    eprintln!("bench agent: {message}");
}

fn wait_for_port(port: u16, what: &str) -> anyhow::Result<()> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let listening = || TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok();
    Ok(wait_until(&format!("{what} to listen on 127.0.0.1:{port}"), Duration::from_secs(30), listening)?)
}

/// One Prometheus scrape over plain HTTP/1.0; returns the body's size.
fn scrape(port: u16) -> anyhow::Result<u64> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = Vec::with_capacity(128 * 1024);
    stream.read_to_end(&mut response)?;
    let header_end = response.windows(4).position(|w| w == b"\r\n\r\n").context("no end of HTTP headers")? + 4;
    if !response.starts_with(b"HTTP/1.0 200") && !response.starts_with(b"HTTP/1.1 200") {
        bail!("node_exporter answered {:?}", String::from_utf8_lossy(&response[..header_end.min(64)]));
    }
    Ok((response.len() - header_end) as u64)
}

fn node_exporter_binary() -> anyhow::Result<PathBuf> {
    for candidate in ["/usr/bin/prometheus-node-exporter", "/usr/local/bin/node_exporter"] {
        if Path::new(candidate).is_file() {
            return Ok(PathBuf::from(candidate));
        }
    }
    bail!(
        "node_exporter is not installed: `apt-get install prometheus-node-exporter` (cargo xtask bench agent does it as root)"
    )
}

/// Protobuf bytes of one steady-state sample of this machine, and of the first
/// batch of a stream, measured with the agent's own encoder.
fn wire_bytes() -> (u64, u64) {
    let mut sampler = Sampler::new(HostRoots::host(), "bench-node");
    let mut refs = bakery_agent::wire::PodRefs::new();
    let mut declared = bakery_agent::wire::DeclaredPods::new();
    let mut first = bakery_agent::wire::batch(&[sampler.sample(bakery_agent::now_ms())], &mut refs);
    declared.strip_declared(&mut first);
    let mut steady = bakery_agent::wire::batch(&[sampler.sample(bakery_agent::now_ms())], &mut refs);
    declared.strip_declared(&mut steady);
    (steady.encoded_len() as u64, first.encoded_len() as u64)
}

/// Runs the benchmark. Needs root (it creates pods on real kernel objects).
pub fn run(config: &AgentBench) -> anyhow::Result<AgentBenchResult> {
    bakery_lab::require_root("bench agent");
    let (agent_bin, collector_bin, exporter_bin) = binaries(config)?;

    progress(&format!("creating {} pods with {} held connections each", config.pods, config.connections_per_pod));
    let node = SimNode::create("bench")?;
    let mut pods = Vec::with_capacity(config.pods);
    let mut clients = Vec::with_capacity(config.pods);
    for i in 0..config.pods {
        let pod = SimPod::create_on(&format!("b{i}"), &node)?;
        clients.push(pod.client(64 * 1024, config.connections_per_pod)?);
        pods.push(pod);
    }
    // Everything from here runs on the node, as a hostNetwork DaemonSet
    // does: the agent, node_exporter and the collector see its interfaces.
    node.enter()?;

    let data_dir = tempfile::tempdir()?;
    let collector_port = free_port()?;
    let mut collector = Spawn::new("the collector", &collector_bin)
        .args(["serve", "--insecure-no-auth", "--listen"])
        .arg(format!("127.0.0.1:{collector_port}"))
        .arg("--data-dir")
        .arg(data_dir.path())
        .env("BAKERY_LOG", "warn")
        .output(Output::Lines { stderr_log: None })
        .start()?;
    wait_for_port(collector_port, "the collector")?;

    let exporter_port = free_port()?;
    let exporter = Spawn::new("node_exporter", &exporter_bin)
        .arg(format!("--web.listen-address=127.0.0.1:{exporter_port}"))
        .output(Output::Null)
        .start()?;
    wait_for_port(exporter_port, "node_exporter")?;
    // The first scrape initialises collectors; it is not counted.
    scrape(exporter_port)?;

    progress(&format!(
        "agent streaming and node_exporter scraped every {:?} for {:?}",
        config.interval, config.duration
    ));
    let mut agent = Spawn::new("the agent", &agent_bin)
        .args(["--insecure-no-auth", "--node-name", "bench-node", "--collector"])
        .arg(format!("http://127.0.0.1:{collector_port}"))
        .arg("--interval")
        .arg(format!("{}ms", config.interval.as_millis()))
        .env("BAKERY_LOG", "warn")
        .start()?;
    let measured = measure_window(config, agent.pid(), exporter.pid(), collector_port, exporter_port)?;

    progress("stopping the agent and the collector");
    // Both send or commit what they hold on SIGTERM.
    agent.stop(STOP_GRACE);
    collector.stop(STOP_GRACE);
    drop(exporter);
    if measured.samples == 0 {
        bail!("the collector received no sample of the agent in the measured window");
    }
    // Measured while the pods still exist, so the sample carries them.
    let wire = wire_bytes();
    drop(clients);
    drop(pods);
    Ok(result(config, &measured, wire))
}

/// The agent and collector of `config.bin_dir`, and node_exporter.
fn binaries(config: &AgentBench) -> anyhow::Result<(PathBuf, PathBuf, PathBuf)> {
    let agent_bin = config.bin_dir.join("bakery-agent");
    let collector_bin = config.bin_dir.join("bakery-collector");
    for bin in [&agent_bin, &collector_bin] {
        if !bin.is_file() {
            bail!(
                "{} is missing: build it with `cargo build --release -p bakery-agent -p bakery-collector`",
                bin.display()
            );
        }
    }
    Ok((agent_bin, collector_bin, node_exporter_binary()?))
}

/// What the measured window saw of both sides.
struct Measured {
    /// The agent's CPU seconds before the window (start-up, the first read of every pod).
    agent_warmup_cpu: f64,
    agent_cpu: f64,
    agent_rss: u64,
    exporter_cpu: f64,
    exporter_rss: u64,
    /// The agent's samples the collector received, taken in the window.
    samples: u64,
    scrapes: u64,
    scrape_bytes: u64,
}

/// Runs both sides through the warm-up at the same rate (nothing of it counted), then measures
/// the window.
fn measure_window(
    config: &AgentBench,
    agent_pid: u32,
    exporter_pid: u32,
    collector_port: u16,
    exporter_port: u16,
) -> anyhow::Result<Measured> {
    let mut next = Instant::now();
    scrape_for(exporter_port, config.warmup, config.interval, &mut next)?;
    let window_start_ms = epoch_ms();
    let agent_cpu_before = measure::cpu_seconds(agent_pid)?;
    let exporter_cpu_before = measure::cpu_seconds(exporter_pid)?;
    // The collector keeps about 256 KiB of recent batches per node: read them
    // every few seconds so none of the window's samples is missed.
    let mut received = ReceivedSamples::default();
    let (mut scrapes, mut scrape_bytes) = (0, 0);
    let window = Instant::now();
    while window.elapsed() < config.duration {
        let part = (config.duration - window.elapsed()).min(HISTORY_POLL);
        let (part_scrapes, part_bytes) = scrape_for(exporter_port, part, config.interval, &mut next)?;
        (scrapes, scrape_bytes) = (scrapes + part_scrapes, scrape_bytes + part_bytes);
        received.poll(collector_port, "bench-node", window_start_ms)?;
    }
    let agent_cpu = measure::cpu_seconds(agent_pid)? - agent_cpu_before;
    let exporter_cpu = measure::cpu_seconds(exporter_pid)? - exporter_cpu_before;
    let window_end_ms = epoch_ms();
    let agent_rss = measure::rss(agent_pid)?.current_bytes;
    let exporter_rss = measure::rss(exporter_pid)?.current_bytes;
    received.poll(collector_port, "bench-node", window_start_ms)?;
    Ok(Measured {
        agent_warmup_cpu: agent_cpu_before,
        agent_cpu,
        agent_rss,
        exporter_cpu,
        exporter_rss,
        samples: received.taken_in(window_start_ms, window_end_ms),
        scrapes,
        scrape_bytes,
    })
}

/// Both sides' costs per sample and their ratios; `wire` is the agent's (steady sample, first
/// batch) bytes.
fn result(
    config: &AgentBench,
    measured: &Measured,
    (bytes_per_sample, first_batch_bytes): (u64, u64),
) -> AgentBenchResult {
    let agent_cost = Cost {
        cpu_seconds_per_sample: measured.agent_cpu / measured.samples as f64,
        rss_bytes: measured.agent_rss,
        bytes_per_sample,
        samples: measured.samples,
    };
    let exporter_cost = Cost {
        cpu_seconds_per_sample: measured.exporter_cpu / measured.scrapes as f64,
        rss_bytes: measured.exporter_rss,
        bytes_per_sample: measured.scrape_bytes / measured.scrapes,
        samples: measured.scrapes,
    };
    AgentBenchResult {
        pods: config.pods,
        interval_seconds: config.interval.as_secs_f64(),
        duration_seconds: config.duration.as_secs_f64(),
        cpu_ratio: agent_cost.cpu_seconds_per_sample / exporter_cost.cpu_seconds_per_sample,
        rss_ratio: agent_cost.rss_bytes as f64 / exporter_cost.rss_bytes as f64,
        bytes_ratio: agent_cost.bytes_per_sample as f64 / exporter_cost.bytes_per_sample as f64,
        agent: agent_cost,
        agent_first_batch_bytes: first_batch_bytes,
        agent_warmup_cpu_seconds: measured.agent_warmup_cpu,
        warmup_seconds: config.warmup.as_secs_f64(),
        node_exporter: exporter_cost,
    }
}

/// Scrapes node_exporter every `interval` for `duration`, keeping the rate
/// from `next`; returns the scrapes and their body bytes.
fn scrape_for(port: u16, duration: Duration, interval: Duration, next: &mut Instant) -> anyhow::Result<(u64, u64)> {
    let started = Instant::now();
    let (mut scrapes, mut bytes) = (0u64, 0u64);
    while started.elapsed() < duration {
        bytes += scrape(port)?;
        scrapes += 1;
        *next += interval;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            pause(wait);
        }
    }
    Ok((scrapes, bytes))
}

fn epoch_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// How long the agent and the collector may take to exit on SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// How often the collector's recent batches are read during the window.
const HISTORY_POLL: Duration = Duration::from_secs(5);

/// The sample timestamps of the agent's batches, by sequence number.
#[derive(Debug, Default)]
struct ReceivedSamples {
    by_seq: std::collections::BTreeMap<u64, Vec<i64>>,
}

impl ReceivedSamples {
    /// Adds the batches of `node` the running collector received since `since_ms`.
    fn poll(&mut self, port: u16, node: &str, since_ms: i64) -> anyhow::Result<()> {
        use bakery_proto::v1::HistoryRequest;
        use bakery_proto::v1::query_client::QueryClient;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let history = runtime.block_on(async {
            let mut client = QueryClient::connect(format!("http://127.0.0.1:{port}")).await?;
            let request = HistoryRequest { node_name: node.to_string(), since_ms };
            anyhow::Ok(client.history(request).await.context("Query.History")?.into_inner())
        })?;
        for batch in history.batches {
            self.by_seq.insert(batch.seq, batch.samples.iter().map(|sample| sample.timestamp_ms).collect());
        }
        Ok(())
    }

    /// Samples taken in `[from_ms, to_ms]`.
    fn taken_in(&self, from_ms: i64, to_ms: i64) -> u64 {
        self.by_seq.values().flatten().filter(|ms| (from_ms..=to_ms).contains(*ms)).count() as u64
    }
}
