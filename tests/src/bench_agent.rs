//! `cargo xtask bench agent`: the agent against Debian's prometheus-node-exporter, side by side in one run.
//!
//! Setup: N live simulated pods (network namespaces, kubepods cgroups, held
//! connections; or, busy, each answering HTTP to a bounded load from its
//! client: `Busy`) joined by veth pairs to a node (a network namespace, where
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
//! of every pod's socket tables) is printed on its own line. Busy, the pods'
//! servers count the requests they answered in the window, so the output shows
//! that they were busy; a pod left at less than half its asked rate fails the
//! run, since its figures would not be those of a busy node.
//!
//! Ctrl-C, SIGTERM and SIGHUP end a run through its error path, so every pod,
//! namespace, cgroup and process it made is removed on the way out.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bakery_agent::roots::HostRoots;
use bakery_agent::sampler::Sampler;
use bakery_lab::process::{Output, Spawn};
use bakery_lab::{free_port, pause, wait_until};
use prost::Message;
use serde::Serialize;

use crate::measure;
use crate::sim::{PodLoad, Server, SimNode, SimPod, SimProcess};

/// What the benchmark is asked to do.
#[derive(Debug, Clone)]
pub struct AgentBench {
    /// Folder with `bakery-agent` and `bakery-collector` (a release build).
    pub bin_dir: PathBuf,
    pub pods: usize,
    /// Connections each pod's client holds open (busy: the load's keep-alive connections).
    pub connections_per_pod: u32,
    pub interval: Duration,
    /// The measured window.
    pub duration: Duration,
    /// Running time before the window.
    pub warmup: Duration,
    /// Pods that carry traffic; `None`: pods that hold idle connections.
    pub busy: Option<Busy>,
}

/// The traffic each pod carries in a busy run, from its client (the node's namespace).
#[derive(Debug, Clone, Copy)]
pub struct Busy {
    /// Requests a second to each pod, those on new connections included.
    pub requests_per_pod: u32,
    /// New connections a second to each pod, one request each.
    pub new_connections_per_pod: u32,
}

/// One side's cost.
#[derive(Debug, Clone, Serialize)]
pub struct Cost {
    pub cpu_seconds_per_sample: f64,
    pub rss_bytes: u64,
    pub bytes_per_sample: u64,
    pub samples: u64,
}

/// What the pods of a busy run answered in the measured window.
#[derive(Debug, Clone, Serialize)]
pub struct BusyResult {
    /// The load asked of each pod (requests a second, keep-alive connections, new connections a
    /// second).
    pub requests_per_pod: u32,
    pub keep_alive_connections: u32,
    pub new_connections_per_pod: u32,
    /// Requests all pods answered, a second.
    pub requests_per_second: f64,
    pub slowest_pod_requests_per_second: f64,
}

/// The result: both sides and their ratios (agent / node_exporter).
#[derive(Debug, Clone, Serialize)]
pub struct AgentBenchResult {
    /// `idle` or `busy`.
    pub mode: &'static str,
    pub pods: usize,
    pub connections_per_pod: u32,
    /// Busy runs only: the load and what the pods answered.
    pub busy: Option<BusyResult>,
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

/// The goals, agent / node_exporter. CPU per sample: pods that carry traffic move their TCP
/// counters every sample and their socket tables are read again, so their goal is looser than idle
/// pods'.
pub const CPU_GOAL_BUSY: f64 = 0.1;
pub const CPU_GOAL_IDLE: f64 = 0.05;
pub const RSS_GOAL: f64 = 0.5;
pub const BYTES_GOAL: f64 = 0.1;

impl AgentBenchResult {
    pub fn cpu_goal(&self) -> f64 {
        if self.busy.is_some() { CPU_GOAL_BUSY } else { CPU_GOAL_IDLE }
    }

    pub fn meets_goals(&self) -> bool {
        self.cpu_ratio <= self.cpu_goal() && self.rss_ratio <= RSS_GOAL && self.bytes_ratio <= BYTES_GOAL
    }

    /// What the pods did, above the table.
    fn mode_line(&self) -> String {
        match &self.busy {
            Some(busy) => format!(
                "Busy: each of the {} pods answers HTTP/1.1 to a load of {} requests/s from its client \
                 ({} keep-alive connections, {} new connections/s).\n\n",
                self.pods, busy.requests_per_pod, busy.keep_alive_connections, busy.new_connections_per_pod
            ),
            None => format!(
                "Idle: each of the {} pods holds {} connections that carry no traffic.\n\n",
                self.pods, self.connections_per_pod
            ),
        }
    }

    /// The table printed for people (and pasted into BENCHMARKS.md).
    pub fn table(&self) -> String {
        let row = |name: &str, agent: String, peer: String, ratio: f64, goal: f64| {
            format!(
                "| {name} | {agent} | {peer} | {ratio:.3}x | ≤ {goal}x {} |\n",
                if ratio <= goal { "✓" } else { "✗" }
            )
        };
        let mut out = self.mode_line();
        out += "| measure | bakery-agent | node_exporter | ratio | goal |\n|---|---|---|---|---|\n";
        out += &row(
            "CPU per sample / scrape",
            format!("{:.3} ms", self.agent.cpu_seconds_per_sample * 1e3),
            format!("{:.3} ms", self.node_exporter.cpu_seconds_per_sample * 1e3),
            self.cpu_ratio,
            self.cpu_goal(),
        );
        out += &row(
            "RSS",
            format!("{:.1} MiB", self.agent.rss_bytes as f64 / 1048576.0),
            format!("{:.1} MiB", self.node_exporter.rss_bytes as f64 / 1048576.0),
            self.rss_ratio,
            RSS_GOAL,
        );
        out += &row(
            "bytes per sample / scrape",
            format!("{} B", self.agent.bytes_per_sample),
            format!("{} B", self.node_exporter.bytes_per_sample),
            self.bytes_ratio,
            BYTES_GOAL,
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
        if let Some(busy) = &self.busy {
            out += &format!(
                "The pods answered {:.0} requests/s in the window ({:.1}/s a pod on average, the slowest {:.1}/s).\n",
                busy.requests_per_second,
                busy.requests_per_second / self.pods as f64,
                busy.slowest_pod_requests_per_second,
            );
        }
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
    watch_signals()?;
    // A Ctrl-C at a terminal also reaches the children, so the error may be theirs.
    measure_both(config).map_err(|error| {
        if STOP_ASKED.load(Ordering::Relaxed) {
            error.context("interrupted; what the run made is removed")
        } else {
            error
        }
    })
}

/// The run itself: the pods, the collector, node_exporter, the loads and the agent, measured.
fn measure_both(config: &AgentBench) -> anyhow::Result<AgentBenchResult> {
    let (agent_bin, collector_bin, exporter_bin) = binaries(config)?;

    let node = SimNode::create("bench")?;
    let (mut pods, clients) = create_pods(config, &node)?;
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
    let loads = start_loads(config, &pods)?;

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
    let measured = measure_window(config, (agent.pid(), exporter.pid()), (collector_port, exporter_port), &mut pods)?;

    progress("stopping the agent and the collector");
    // Both send or commit what they hold on SIGTERM.
    agent.stop(STOP_GRACE);
    collector.stop(STOP_GRACE);
    drop(exporter);
    if measured.samples == 0 {
        bail!("the collector received no sample of the agent in the measured window");
    }
    // Measured while the pods still exist (and carry their load), so the sample carries them.
    let wire = wire_bytes();
    drop(loads);
    drop(clients);
    drop(pods);
    let result = result(config, &measured, wire);
    if let Some(busy) = &result.busy
        && busy.slowest_pod_requests_per_second < f64::from(busy.requests_per_pod) / 2.0
    {
        bail!(
            "a pod answered only {:.1} of the {} requests/s asked in the window, so the pods were not busy \
             (is the machine overloaded?)",
            busy.slowest_pod_requests_per_second,
            busy.requests_per_pod
        );
    }
    Ok(result)
}

/// The pods on `node`. Idle, each with a client that holds its connections; busy, each serving
/// HTTP for a load that [`start_loads`] starts later.
fn create_pods(config: &AgentBench, node: &SimNode) -> anyhow::Result<(Vec<SimPod>, Vec<SimProcess>)> {
    let server = match config.busy {
        Some(busy) => {
            progress(&format!(
                "creating {} pods serving HTTP, for {} requests/s each ({} keep-alive connections, {} new connections/s)",
                config.pods, busy.requests_per_pod, config.connections_per_pod, busy.new_connections_per_pod
            ));
            Server::Http
        }
        None => {
            progress(&format!(
                "creating {} pods with {} held connections each",
                config.pods, config.connections_per_pod
            ));
            Server::Hold
        }
    };
    let mut pods = Vec::with_capacity(config.pods);
    let mut clients = Vec::with_capacity(config.pods);
    for i in 0..config.pods {
        stop_if_asked()?;
        let pod = SimPod::create_serving_on(&format!("b{i}"), node, server)?;
        if config.busy.is_none() {
            clients.push(pod.client(64 * 1024, config.connections_per_pod)?);
        }
        pods.push(pod);
    }
    Ok((pods, clients))
}

/// Busy, each pod's load, from its client (the node's namespace), bounded to outlast the warm-up
/// and the window by [`LOAD_SLACK`]; none when idle.
fn start_loads(config: &AgentBench, pods: &[SimPod]) -> anyhow::Result<Vec<SimProcess>> {
    let Some(busy) = config.busy else { return Ok(Vec::new()) };
    let load = PodLoad {
        requests_per_second: busy.requests_per_pod,
        keep_alive_connections: config.connections_per_pod,
        new_connections_per_second: busy.new_connections_per_pod,
        duration: config.warmup + config.duration + LOAD_SLACK,
    };
    progress(&format!("starting the pods' loads, each bounded to {:?}", load.duration));
    pods.iter()
        .map(|pod| {
            stop_if_asked()?;
            pod.load(&load)
        })
        .collect()
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
    /// Busy: the requests each pod answered in the window, and the seconds between the counts.
    served: Option<(Vec<u64>, f64)>,
}

/// The requests each pod has answered so far, and when they were counted.
fn count_requests(pods: &mut [SimPod]) -> anyhow::Result<(Vec<u64>, Instant)> {
    let counts = pods.iter_mut().map(SimPod::requests_served).collect::<anyhow::Result<_>>()?;
    Ok((counts, Instant::now()))
}

/// Runs both sides through the warm-up at the same rate (nothing of it counted), then measures
/// the window.
fn measure_window(
    config: &AgentBench,
    (agent_pid, exporter_pid): (u32, u32),
    (collector_port, exporter_port): (u16, u16),
    pods: &mut [SimPod],
) -> anyhow::Result<Measured> {
    let mut next = Instant::now();
    scrape_for(exporter_port, config.warmup, config.interval, &mut next)?;
    let served_before = if config.busy.is_some() { Some(count_requests(pods)?) } else { None };
    let window_start_ms = epoch_ms();
    let agent_cpu_before = measure::cpu_seconds(agent_pid)?;
    let exporter_cpu_before = measure::cpu_seconds(exporter_pid)?;
    // The collector keeps a node's newest 8 batches (2 s at 4 Hz): read them
    // every second, or every 4 intervals when faster, so none of the window's samples is missed.
    let poll = HISTORY_POLL.min(config.interval * 4);
    let mut received = ReceivedSamples::default();
    let (mut scrapes, mut scrape_bytes) = (0, 0);
    let window = Instant::now();
    while window.elapsed() < config.duration {
        let part = (config.duration - window.elapsed()).min(poll);
        let (part_scrapes, part_bytes) = scrape_for(exporter_port, part, config.interval, &mut next)?;
        (scrapes, scrape_bytes) = (scrapes + part_scrapes, scrape_bytes + part_bytes);
        received.poll(collector_port, "bench-node", window_start_ms)?;
    }
    let agent_cpu = measure::cpu_seconds(agent_pid)? - agent_cpu_before;
    let exporter_cpu = measure::cpu_seconds(exporter_pid)? - exporter_cpu_before;
    let window_end_ms = epoch_ms();
    let served = match served_before {
        Some((before, counted)) => {
            let (after, recounted) = count_requests(pods)?;
            let answered = after.iter().zip(&before).map(|(after, before)| after.saturating_sub(*before)).collect();
            Some((answered, (recounted - counted).as_secs_f64()))
        }
        None => None,
    };
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
        served,
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
    let busy = config.busy.zip(measured.served.as_ref()).map(|(busy, (answered, seconds))| BusyResult {
        requests_per_pod: busy.requests_per_pod,
        keep_alive_connections: config.connections_per_pod,
        new_connections_per_pod: busy.new_connections_per_pod,
        requests_per_second: answered.iter().sum::<u64>() as f64 / seconds,
        slowest_pod_requests_per_second: answered.iter().min().copied().unwrap_or_default() as f64 / seconds,
    });
    AgentBenchResult {
        mode: if busy.is_some() { "busy" } else { "idle" },
        pods: config.pods,
        connections_per_pod: config.connections_per_pod,
        busy,
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
        stop_if_asked()?;
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

/// How often the collector's recent batches are read during the window, at most.
const HISTORY_POLL: Duration = Duration::from_secs(1);

/// How long the pods' loads outlast the warm-up and the window: the agent's start before them,
/// the counts and reads after them, and the wire bytes measured with the pods still loaded.
const LOAD_SLACK: Duration = Duration::from_secs(60);

/// Raised by Ctrl-C, SIGTERM or SIGHUP (see [`watch_signals`]).
static STOP_ASKED: AtomicBool = AtomicBool::new(false);

/// Fails once a signal asked the run to stop, so that it ends through its error path.
fn stop_if_asked() -> anyhow::Result<()> {
    if STOP_ASKED.load(Ordering::Relaxed) {
        bail!("a signal asked the run to stop");
    }
    Ok(())
}

/// From now on the first Ctrl-C, SIGTERM or SIGHUP raises [`STOP_ASKED`] instead of killing this
/// process, whose `Drop`s then remove the pods, their namespaces, cgroups and processes (a killed
/// run leaves them to the next run's clean-up); a second one exits at once. Tokio's handlers, so
/// no unsafe code; they are registered before any child starts, which then starts with the
/// default handling.
fn watch_signals() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (mut int, mut term, mut hup) = runtime.block_on(async {
        anyhow::Ok((signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?, signal(SignalKind::hangup())?))
    })?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        runtime.block_on(async {
            loop {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                    _ = hup.recv() => {}
                }
                if STOP_ASKED.swap(true, Ordering::Relaxed) {
                    std::process::exit(130);
                }
                progress("stopping: asked by a signal (again to exit at once, leaving the rest to the next run)");
            }
        })
    })?;
    Ok(())
}

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
