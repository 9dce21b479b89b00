//! `cargo xtask bench drain`: the backlog of a collector outage replayed beside live samples, against the same agents without a backlog, side by side in one run.
//!
//! Setup: a release collector on loopback and N release agents (the Pi 5 fixture as host
//! root, each with its own disk spool, as the chart deploys them) sampling every `interval`.
//! First the agents stream through a warm-up and a window without backlog; then the collector
//! stops cleanly (everything acknowledged) for the outage, while each agent spools what it
//! samples; then it comes back on the same data directory and port. Printed: the seconds from
//! the collector listening again until every node's committed sequence number (Query `Nodes`,
//! read every 20 ms) covers its backlog, and the delays of the live samples taken while the
//! backlogs drained against those of the window without backlog, twice: until the sample is in
//! the collector (the receive time stored with its row: from then on Query shows it, and the
//! row goes in the next commit), and until it is acknowledged as committed (the committed
//! sequence number, contiguous, covers it).
//!
//! Time may be compressed: with `outage_interval` below `interval` the agents sample that much
//! faster while the collector is away and are restarted on their spools at `interval` just
//! before it returns, so the backlog holds at least as many samples (`outage /
//! outage_interval`) in less wall time. One thing then differs: restarted agents see a young
//! outage and retry within 2 s instead of 5 s, so the seconds until all is committed come out
//! up to 3 s lower than after a real outage of that length (the default).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bakery_lab::process::{Output, Process, Spawn};
use bakery_lab::{free_port, pause, wait_until};
use bakery_proto::v1::NodesRequest;
use bakery_proto::v1::query_client::QueryClient;
use serde::Serialize;

use crate::stored::stored_samples;

/// The host root the agents read: a Pi 5 with its pods, the same every run.
pub const PI5_FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../agent/tests/fixtures/pi5");

/// What the benchmark is asked to do.
#[derive(Debug, Clone)]
pub struct DrainBench {
    /// Folder with `bakery-agent` and `bakery-collector` (a release build).
    pub bin_dir: PathBuf,
    pub agents: usize,
    pub interval: Duration,
    /// How long the collector is away.
    pub outage: Duration,
    /// The agents' interval while it is away (`interval` unless time is compressed).
    pub outage_interval: Duration,
    /// Running time before the window without backlog.
    pub warmup: Duration,
    /// The window without backlog.
    pub window: Duration,
    /// The collector's `--commit-interval`.
    pub commit_interval: Duration,
}

/// Delays of live samples, ms.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Delays {
    pub samples: usize,
    pub median_ms: f64,
    pub p95_ms: f64,
    pub max_ms: f64,
}

/// The live samples of one side: how long after it was taken each was in the collector (shown
/// by Query, its row queued for the next commit), and acknowledged as committed (the committed
/// sequence number, contiguous, covering it).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Live {
    pub received: Delays,
    pub acknowledged: Delays,
}

/// The result: the drain, and both sides' live delays.
#[derive(Debug, Clone, Serialize)]
pub struct DrainBenchResult {
    pub agents: usize,
    pub interval_seconds: f64,
    pub outage_seconds: f64,
    pub outage_interval_seconds: f64,
    pub commit_interval_seconds: f64,
    /// Samples spooled by the agent with the smallest and the largest backlog.
    pub backlog_samples_min: u64,
    pub backlog_samples_max: u64,
    /// Stored bytes per sample.
    pub bytes_per_sample: u64,
    /// From the collector listening again until each node's backlog was committed, seconds.
    pub drain_seconds_by_node: Vec<f64>,
    pub drain_seconds: f64,
    /// The live samples taken while the backlogs drained.
    pub live_during_drain: Live,
    /// The live samples of the window without backlog.
    pub live_without_backlog: Live,
    pub window_seconds: f64,
    /// `inspect --verify`: every number each agent took stored once, committed, no gap.
    pub complete: bool,
}

/// The goals: every spooled sample committed within 10 s of the collector's return, for
/// backlogs of at least 1200 samples (5 minutes at 4 Hz)...
pub const DRAIN_GOAL_SECONDS: f64 = 10.0;
pub const BACKLOG_GOAL_SAMPLES: u64 = 1200;
/// ... and live samples not delayed by it: in the collector, the drain's p95 within this of
/// the p95 without backlog (the noise of a shared machine).
pub const LIVE_GOAL_EXTRA_MS: f64 = 100.0;

impl DrainBenchResult {
    fn live_ok(&self) -> bool {
        self.live_during_drain.received.p95_ms <= self.live_without_backlog.received.p95_ms + LIVE_GOAL_EXTRA_MS
    }

    pub fn meets_goals(&self) -> bool {
        self.complete
            && self.backlog_samples_min >= BACKLOG_GOAL_SAMPLES
            && self.drain_seconds <= DRAIN_GOAL_SECONDS
            && self.live_ok()
    }

    /// The table printed for people (and pasted into BENCHMARKS.md).
    pub fn table(&self) -> String {
        let mark = |ok: bool| if ok { "✓" } else { "✗" };
        let (drain, quiet) = (&self.live_during_drain, &self.live_without_backlog);
        let row = |name: &str, during: &Delays, without: &Delays, goal: String| {
            format!(
                "| {name} | {:.0} / {:.0} / {:.0} ms | {:.0} / {:.0} / {:.0} ms | {:+.0} ms | {goal} |\n",
                during.median_ms,
                during.p95_ms,
                during.max_ms,
                without.median_ms,
                without.p95_ms,
                without.max_ms,
                during.p95_ms - without.p95_ms
            )
        };
        let mut out = String::from("| measure | during the drain | without backlog | p95 difference | goal |\n");
        out += "|---|---|---|---|---|\n";
        out += &format!(
            "| every spooled sample committed | {:.2} s after the collector's return | — | — | ≤ {DRAIN_GOAL_SECONDS:.0} s {} |\n",
            self.drain_seconds,
            mark(self.drain_seconds <= DRAIN_GOAL_SECONDS)
        );
        let goal = format!("p95 ≤ +{LIVE_GOAL_EXTRA_MS:.0} ms {}", mark(self.live_ok()));
        out += &row("live sample in the collector, median / p95 / max", &drain.received, &quiet.received, goal);
        out +=
            &row("live sample acknowledged, median / p95 / max", &drain.acknowledged, &quiet.acknowledged, "—".into());
        out += &self.summary();
        out
    }

    /// The lines under the table.
    fn summary(&self) -> String {
        let mark = |ok: bool| if ok { "✓" } else { "✗" };
        let away = if self.outage_interval_seconds < self.interval_seconds {
            format!(
                "sampling every {:.0} ms meanwhile, then restarted on their spools",
                self.outage_interval_seconds * 1e3
            )
        } else {
            "sampling on meanwhile".to_string()
        };
        format!(
            "\n{} agents every {:.0} ms; the collector away {:.0} s ({away}): {} to {} samples spooled per agent (goal ≥ {BACKLOG_GOAL_SAMPLES} {}), {} B per sample stored; commits every {:.0} ms.\nEach node's backlog committed {} s after the collector's return. Live samples: {} taken while the backlogs drained, {} in the {:.0} s without backlog; a live sample is in the collector (Query shows it, its row goes in the next commit) when received, and acknowledged once everything before it is committed. Every number stored once, committed, no gap: {}.\n",
            self.agents,
            self.interval_seconds * 1e3,
            self.outage_seconds,
            self.backlog_samples_min,
            self.backlog_samples_max,
            mark(self.backlog_samples_min >= BACKLOG_GOAL_SAMPLES),
            self.bytes_per_sample,
            self.commit_interval_seconds * 1e3,
            self.drain_seconds_by_node.iter().map(|s| format!("{s:.2}")).collect::<Vec<_>>().join(", "),
            self.live_during_drain.received.samples,
            self.live_without_backlog.received.samples,
            self.window_seconds,
            if self.complete { "yes" } else { "NO" },
        )
    }
}

fn progress(message: &str) {
    eprintln!("bench drain: {message}");
}

fn epoch_ms() -> i64 {
    bakery_collector::now_ms()
}

/// How long the agents and the collector may take to exit on SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// The processes of one run and where they keep their files.
struct Run {
    config: DrainBench,
    work: tempfile::TempDir,
    port: u16,
    collector: Option<Process>,
    collector_starts: usize,
    agents: Vec<Option<Process>>,
    agent_starts: usize,
}

/// One agent's backlog after the outage, from its "stream open" line.
#[derive(Debug, Clone, Copy)]
struct Backlog {
    committed: u64,
    /// The last number it had spooled when the collector welcomed it back.
    last_seq: u64,
}

impl Run {
    fn new(config: &DrainBench) -> anyhow::Result<Self> {
        let agents = (0..config.agents).map(|_| None).collect();
        let work = tempfile::tempdir()?;
        Ok(Run {
            config: config.clone(),
            work,
            port: free_port()?,
            collector: None,
            collector_starts: 0,
            agents,
            agent_starts: 0,
        })
    }

    fn node(i: usize) -> String {
        format!("drain-{:02}", i + 1)
    }

    fn data_dir(&self) -> PathBuf {
        self.work.path().join("collector-data")
    }

    fn agent_log(&self, i: usize) -> PathBuf {
        self.work.path().join(format!("agent-{i}.log"))
    }

    /// Starts the collector and waits until it listens; the moment it did.
    fn start_collector(&mut self) -> anyhow::Result<(Instant, i64)> {
        self.collector_starts += 1;
        let ready = self.work.path().join(format!("ready-{}", self.collector_starts));
        let commit_interval = format!("{}ms", self.config.commit_interval.as_millis());
        let process = Spawn::new("the collector", self.config.bin_dir.join("bakery-collector"))
            .args(["serve", "--insecure-no-auth", "--no-auto-windows", "--metrics-listen", "off"])
            .args(["--health-listen", "127.0.0.1:0", "--commit-interval", &commit_interval])
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--ready-file")
            .arg(&ready)
            .env("BAKERY_LOG", "warn")
            .output(Output::Log(self.work.path().join(format!("collector-{}.log", self.collector_starts))))
            .start()?;
        self.collector = Some(process);
        let mut listening = None;
        wait_until("the collector to listen", Duration::from_secs(30), || {
            listening = ready.exists().then(|| (Instant::now(), epoch_ms()));
            listening.is_some()
        })?;
        listening.context("the collector's ready file")
    }

    fn stop_collector(&mut self) -> anyhow::Result<()> {
        let mut collector = self.collector.take().context("no collector running")?;
        if !collector.stop(STOP_GRACE) {
            bail!("the collector did not exit on SIGTERM within {STOP_GRACE:?}");
        }
        Ok(())
    }

    /// Starts agent `i` sampling every `interval` on its spool.
    fn start_agent(&mut self, i: usize, interval: Duration) -> anyhow::Result<()> {
        self.agent_starts += 1;
        let fixture = Path::new(PI5_FIXTURE);
        let process = Spawn::new(&format!("the agent of {}", Self::node(i)), self.config.bin_dir.join("bakery-agent"))
            .args(["--insecure-no-auth", "--node-name", &Self::node(i), "--collector"])
            .arg(format!("http://127.0.0.1:{}", self.port))
            .arg("--proc-root")
            .arg(fixture.join("proc"))
            .arg("--sys-root")
            .arg(fixture.join("sys"))
            .arg("--interval")
            .arg(format!("{}ms", interval.as_millis()))
            .arg("--spool-dir")
            .arg(self.work.path().join(format!("spool-{i}")))
            .env("BAKERY_LOG", "info")
            .env("NO_COLOR", "1")
            .output(Output::Log(self.agent_log(i)))
            .start()?;
        self.agents[i] = Some(process);
        Ok(())
    }

    /// SIGTERM to every agent: each flushes what the collector can still take, then exits.
    fn stop_agents(&mut self) -> anyhow::Result<()> {
        for (i, agent) in self.agents.iter_mut().enumerate() {
            if let Some(mut agent) = agent.take()
                && !agent.stop(STOP_GRACE)
            {
                bail!("the agent of {} did not exit on SIGTERM within {STOP_GRACE:?}", Self::node(i));
            }
        }
        Ok(())
    }

    /// The "stream open" lines agent `i` logged so far (its log is appended to across starts).
    fn stream_opens(&self, i: usize) -> Vec<String> {
        let log = std::fs::read_to_string(self.agent_log(i)).unwrap_or_default();
        log.lines().filter(|line| line.contains("stream open")).map(str::to_string).collect()
    }

    /// The last number agent `i` took, from its exit line.
    fn last_seq(&self, i: usize) -> anyhow::Result<u64> {
        let log = std::fs::read_to_string(self.agent_log(i))?;
        let line = log.lines().rev().find(|line| line.contains(" stopped ")).context("no exit line in an agent log")?;
        field(line, "last_seq")
    }
}

/// `name=123` in a log line.
fn field(line: &str, name: &str) -> anyhow::Result<u64> {
    let prefix = format!("{name}=");
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(&prefix))
        .and_then(|value| value.parse().ok())
        .with_context(|| format!("no {name} in {line:?}"))
}

/// How often Query `Nodes` is read for the committed sequence numbers.
const COMMIT_POLL: Duration = Duration::from_millis(20);

/// What the committed sequence number of each node was when, read through Query `Nodes`: when
/// each sample was acknowledged as committed.
struct CommitWatch {
    runtime: tokio::runtime::Runtime,
    client: Option<QueryClient<tonic::transport::Channel>>,
    port: u16,
    /// Per agent: (Unix epoch ms, committed seq), each a rise.
    rises: Vec<Vec<(i64, u64)>>,
}

impl CommitWatch {
    fn new(port: u16, agents: usize) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        Ok(CommitWatch { runtime, client: None, port, rises: vec![Vec::new(); agents] })
    }

    /// Reads every node's committed sequence number once; each node's, by agent.
    fn poll(&mut self) -> anyhow::Result<Vec<u64>> {
        let client = match &mut self.client {
            Some(client) => client,
            None => {
                let url = format!("http://127.0.0.1:{}", self.port);
                self.client.insert(self.runtime.block_on(QueryClient::connect(url))?)
            }
        };
        let nodes = self.runtime.block_on(client.nodes(NodesRequest {}))?.into_inner().nodes;
        let now = epoch_ms();
        let mut committed = Vec::with_capacity(self.rises.len());
        for (i, rises) in self.rises.iter_mut().enumerate() {
            let seq = nodes.iter().find(|n| n.node_name == Run::node(i)).map_or(0, |n| n.committed_seq);
            if rises.last().is_none_or(|(_, last)| seq > *last) {
                rises.push((now, seq));
            }
            committed.push(seq);
        }
        Ok(committed)
    }

    /// Polls for `duration`.
    fn watch_for(&mut self, duration: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + duration;
        while Instant::now() < until {
            self.poll()?;
            pause(COMMIT_POLL);
        }
        Ok(())
    }

    /// A new collector process: a new connection.
    fn reconnect(&mut self) {
        self.client = None;
    }

    /// When agent `i`'s sample `seq` was first seen acknowledged.
    fn acknowledged_at(&self, i: usize, seq: u64) -> Option<i64> {
        self.rises[i].iter().find(|(_, committed)| *committed >= seq).map(|(at, _)| *at)
    }
}

/// Runs the benchmark.
pub fn run(config: &DrainBench) -> anyhow::Result<DrainBenchResult> {
    for bin in ["bakery-agent", "bakery-collector"] {
        if !config.bin_dir.join(bin).is_file() {
            bail!(
                "{bin} is missing in {}: `cargo build --release -p bakery-agent -p bakery-collector`",
                config.bin_dir.display()
            );
        }
    }
    let mut run = Run::new(config)?;
    let mut watch = CommitWatch::new(run.port, config.agents)?;
    run.start_collector()?;
    for i in 0..config.agents {
        run.start_agent(i, config.interval)?;
    }
    progress(&format!(
        "{} agents every {:?}: warm-up {:?}, then {:?} without backlog",
        config.agents, config.interval, config.warmup, config.window
    ));
    pause(config.warmup);
    let window = (epoch_ms(), epoch_ms() + config.window.as_millis() as i64);
    watch.watch_for(config.window + Duration::from_secs(1))?;

    let opens_before = outage(&mut run)?;
    let (returned, returned_ms) = run.start_collector()?;
    watch.reconnect();
    progress("the collector is back; waiting for every backlog to be committed");
    let drained = wait_for_drain(&run, &mut watch, returned, &opens_before)?;
    let slowest = drained.iter().map(|(seconds, _)| *seconds).fold(0.0, f64::max);
    let drain = (returned_ms, returned_ms + (slowest * 1e3) as i64);
    // The live samples taken during the drain are all in and acknowledged by then.
    watch.watch_for(Duration::from_secs(3))?;
    run.stop_agents()?;
    run.stop_collector()?;
    progress("reading the store");
    measure(&run, &watch, window, drain, drained)
}

/// The agents' start-up and restarts cost a few samples of the compressed outage: it lasts
/// this much longer, so the backlog is at least `outage / outage_interval`.
const COMPRESSED_SLACK: Duration = Duration::from_secs(2);

/// Stops the collector for the outage (time compressed when asked), restarts the agents at
/// their interval when they sampled faster meanwhile, and returns each agent's count of
/// "stream open" lines so far (the next one is its return).
fn outage(run: &mut Run) -> anyhow::Result<Vec<usize>> {
    let config = run.config.clone();
    progress(&format!("the collector stops for {:?}", config.outage));
    run.stop_collector()?;
    let compressed = config.outage_interval < config.interval;
    if compressed {
        run.stop_agents()?;
        for i in 0..config.agents {
            run.start_agent(i, config.outage_interval)?;
        }
        pause(config.outage + COMPRESSED_SLACK);
        run.stop_agents()?;
        for i in 0..config.agents {
            run.start_agent(i, config.interval)?;
        }
    } else {
        pause(config.outage);
    }
    Ok((0..config.agents).map(|i| run.stream_opens(i).len()).collect())
}

/// Polls Query `Nodes` until every node's committed sequence number covers the backlog its
/// agent had when welcomed back; each node's seconds from `returned`, and its backlog.
fn wait_for_drain(
    run: &Run,
    watch: &mut CommitWatch,
    returned: Instant,
    opens_before: &[usize],
) -> anyhow::Result<Vec<(f64, Backlog)>> {
    let mut backlogs: Vec<Option<Backlog>> = vec![None; opens_before.len()];
    let mut drained: Vec<Option<f64>> = vec![None; opens_before.len()];
    while drained.iter().any(Option::is_none) {
        if returned.elapsed() > Duration::from_secs(300) {
            bail!("the backlogs were not committed within 300 s: {drained:?}");
        }
        for (i, backlog) in backlogs.iter_mut().enumerate() {
            if backlog.is_none()
                && let Some(line) = run.stream_opens(i).get(opens_before[i])
            {
                *backlog =
                    Some(Backlog { committed: field(line, "committed_seq")?, last_seq: field(line, "last_seq")? });
            }
        }
        let committed = watch.poll()?;
        let seconds = returned.elapsed().as_secs_f64();
        for (i, done) in drained.iter_mut().enumerate() {
            if done.is_none() && backlogs[i].is_some_and(|b| committed[i] >= b.last_seq) {
                *done = Some(seconds);
            }
        }
        pause(COMMIT_POLL);
    }
    Ok(drained.into_iter().zip(backlogs).filter_map(|(d, b)| Some((d?, b?))).collect())
}

/// Reads the stopped store: both sides' live delays, the backlogs' sizes and completeness.
fn measure(
    run: &Run,
    watch: &CommitWatch,
    window: (i64, i64),
    drain: (i64, i64),
    drained: Vec<(f64, Backlog)>,
) -> anyhow::Result<DrainBenchResult> {
    let config = &run.config;
    let (mut quiet, mut during) = ((Vec::new(), Vec::new()), (Vec::new(), Vec::new()));
    let (mut bytes, mut rows) = (0u64, 0u64);
    for (i, (_, backlog)) in drained.iter().enumerate() {
        for sample in stored_samples(&run.data_dir(), &Run::node(i))? {
            let side = if (window.0..=window.1).contains(&sample.sample_ms) {
                &mut quiet
            } else if sample.seq > backlog.last_seq && (drain.0..=drain.1).contains(&sample.sample_ms) {
                &mut during
            } else {
                continue;
            };
            side.0.push((sample.received_ms - sample.sample_ms) as f64);
            if let Some(at) = watch.acknowledged_at(i, sample.seq) {
                side.1.push((at - sample.sample_ms) as f64);
            }
            bytes += sample.row_bytes as u64;
            rows += 1;
        }
    }
    let live = |(received, acknowledged): (Vec<f64>, Vec<f64>)| Live {
        received: delays(received),
        acknowledged: delays(acknowledged),
    };
    let spooled: Vec<u64> = drained.iter().map(|(_, b)| b.last_seq - b.committed).collect();
    let drain_seconds_by_node: Vec<f64> = drained.iter().map(|(s, _)| *s).collect();
    Ok(DrainBenchResult {
        agents: config.agents,
        interval_seconds: config.interval.as_secs_f64(),
        outage_seconds: config.outage.as_secs_f64(),
        outage_interval_seconds: config.outage_interval.as_secs_f64(),
        commit_interval_seconds: config.commit_interval.as_secs_f64(),
        backlog_samples_min: spooled.iter().copied().min().unwrap_or(0),
        backlog_samples_max: spooled.iter().copied().max().unwrap_or(0),
        bytes_per_sample: bytes / rows.max(1),
        drain_seconds: drain_seconds_by_node.iter().copied().fold(0.0, f64::max),
        drain_seconds_by_node,
        live_during_drain: live(during),
        live_without_backlog: live(quiet),
        window_seconds: config.window.as_secs_f64(),
        complete: complete(run)?,
    })
}

/// The median, 95th percentile and largest of `delays`.
fn delays(mut delays: Vec<f64>) -> Delays {
    if delays.is_empty() {
        return Delays::default();
    }
    delays.sort_by(f64::total_cmp);
    let at = |q: f64| delays[((delays.len() - 1) as f64 * q).round() as usize];
    Delays { samples: delays.len(), median_ms: at(0.5), p95_ms: at(0.95), max_ms: at(1.0) }
}

/// `inspect --json --verify`: every number each agent took is stored once and committed, and no
/// gap was recorded.
fn complete(run: &Run) -> anyhow::Result<bool> {
    let output = std::process::Command::new(run.config.bin_dir.join("bakery-collector"))
        .args(["inspect", "--json", "--verify", "--data-dir"])
        .arg(run.data_dir())
        .output()?;
    if !output.status.success() {
        bail!("inspect failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let nodes = report["nodes"].as_array().context("inspect's nodes")?;
    for i in 0..run.config.agents {
        let last_seq = run.last_seq(i)?;
        let Some(node) = nodes.iter().find(|n| n["node"] == Run::node(i).as_str()) else { return Ok(false) };
        let whole = node["samples"] == last_seq
            && node["committed_seq"] == last_seq
            && node["gaps"].as_array().is_some_and(Vec::is_empty)
            && node["unaccounted"] == serde_json::json!([])
            && node["double_accounted"] == serde_json::json!([]);
        if !whole {
            eprintln!("bench drain: {} is not complete (last seq {last_seq}): {node}", Run::node(i));
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_are_summarised_by_rank() {
        let summary = delays((1..=100).map(f64::from).collect());
        assert_eq!((summary.samples, summary.median_ms, summary.p95_ms, summary.max_ms), (100, 51.0, 95.0, 100.0));
        assert_eq!(delays(Vec::new()).samples, 0);
    }

    #[test]
    fn a_log_field_is_read_by_its_name() {
        let line = "INFO stream open committed_seq=12 last_seq=1212 replay_through=1212";
        assert_eq!(field(line, "last_seq").unwrap(), 1212);
        assert!(field(line, "nothing").is_err());
    }
}
