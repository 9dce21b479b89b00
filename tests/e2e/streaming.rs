//! Issue 3 ("Nothing lost") across processes: real `bakery-agent` and
//! `bakery-collector` binaries on loopback, the collector SIGKILLed and
//! restarted on the same data directory and port, and `bakery-collector
//! inspect --json` as the judge of what was stored.
//!
//! - five agents at 4 Hz while the collector is SIGKILLed 10 times at random
//!   moments (seeded, 1-6 s apart): every agent is streaming again within 2 s
//!   of each restart, by the collector's own log, and nothing is lost or
//!   stored twice;
//! - a 5-minute collector outage at 1 Hz with a disk spool, the agent itself
//!   SIGKILLed and restarted in the middle of it;
//! - a spool overflow: exactly the dropped range is stored as a gap;
//! - 200 agents in this process (the library entry point) reconnecting
//!   after a collector restart, spread by jitter.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bakery_agent::sampler::Sample;
use bakery_lab::binaries::built_binary;
use bakery_lab::process::{Output, Process, Spawn};
use bakery_lab::{free_port, pause, wait_until};
use nix::sys::signal::Signal;
use serde_json::Value;

/// The fixture host root the agents read: small and fast, the same every run.
const FIXTURE_PROC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../agent/tests/fixtures/bare/proc");

/// Paces a schedule (kill at 8 s, 19 s, ...).
fn pause_until(instant: Instant) {
    pause(instant.saturating_duration_since(Instant::now()));
}

/// A `bakery-collector serve` process on a fixed loopback port and data
/// directory, so a restart is the same collector coming back.
struct Collector {
    binary: PathBuf,
    work: PathBuf,
    port: u16,
    child: Option<Process>,
    starts: usize,
}

impl Collector {
    fn start(work: &Path) -> Self {
        let began = Instant::now();
        let binary = built_binary("bakery-collector", "bakery-collector").unwrap();
        eprintln!("bakery-collector built or found in {:?}", began.elapsed());
        let mut collector =
            Self { binary, work: work.to_path_buf(), port: free_port().unwrap(), child: None, starts: 0 };
        collector.spawn();
        collector
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn data_dir(&self) -> PathBuf {
        self.work.join("collector-data")
    }

    /// Starts the process and waits until it listens (its --ready-file).
    fn spawn(&mut self) {
        assert!(self.child.is_none(), "the collector is already running");
        self.starts += 1;
        let ready = self.work.join(format!("collector-ready-{}", self.starts));
        let log = self.work.join(format!("collector-{}.log", self.starts));
        let child = Spawn::new("the collector", &self.binary)
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--insecure-no-auth")
            .args(["--commit-interval", "100ms"])
            .arg("--ready-file")
            .arg(&ready)
            .env("BAKERY_LOG", "info")
            .output(Output::Log(log))
            .start()
            .unwrap();
        self.child = Some(child);
        let began = Instant::now();
        wait_until("the collector to listen", Duration::from_secs(30), || {
            if let Some(status) = self.child.as_mut().and_then(Process::try_status) {
                panic!("the collector exited at start ({status}):\n{}", self.log(self.starts));
            }
            ready.exists()
        })
        .unwrap();
        eprintln!("collector start {} listening after {:?}", self.starts, began.elapsed());
    }

    /// SIGKILL: no flush, no final acks.
    fn kill9(&mut self) {
        self.child.take().expect("a running collector").kill();
    }

    /// SIGTERM: flush, final acks, exit 0.
    fn stop(&mut self) {
        let mut child = self.child.take().expect("a running collector");
        child.signal(Signal::SIGTERM);
        let status = child.wait_exit(Duration::from_secs(30)).expect("the collector exits within 30 s of SIGTERM");
        assert!(status.success(), "the collector exits 0 on SIGTERM: {status}\n{}", self.log(self.starts));
    }

    fn log(&self, start: usize) -> String {
        std::fs::read_to_string(self.work.join(format!("collector-{start}.log"))).unwrap_or_default()
    }

    /// `inspect --json` of the stopped store, by node name.
    fn inspect(&self) -> HashMap<String, Value> {
        assert!(self.child.is_none(), "inspect reads a stopped store");
        let output = Command::new(&self.binary)
            .arg("inspect")
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--json", "--verify"])
            .output()
            .unwrap();
        assert!(output.status.success(), "inspect failed: {}", String::from_utf8_lossy(&output.stderr));
        let report: Value = serde_json::from_slice(&output.stdout).unwrap();
        report["nodes"]
            .as_array()
            .expect("a nodes array")
            .iter()
            .map(|node| (node["node"].as_str().expect("a node name").to_string(), node.clone()))
            .collect()
    }
}

/// A `bakery-agent` process streaming to the collector.
struct Agent {
    node: String,
    child: Option<Process>,
    log: PathBuf,
}

/// The agent's last log line ("stopped acked_seq=.. last_seq=.. unacknowledged=..").
#[derive(Debug)]
struct AgentExit {
    acked_seq: u64,
    last_seq: u64,
    unacknowledged: u64,
}

impl Agent {
    fn start(work: &Path, node: &str, collector: &str, extra: &[&str]) -> Self {
        let binary = built_binary("bakery-agent", "bakery-agent").unwrap();
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let log = work.join(format!("agent-{node}-{}.log", STARTED.fetch_add(1, Ordering::Relaxed)));
        let child = Spawn::new(&format!("the agent of {node}"), binary)
            .args(["--collector", collector, "--insecure-no-auth", "--node-name", node])
            .arg("--proc-root")
            .arg(FIXTURE_PROC)
            .arg("--sys-root")
            .arg(work.join("no-sys"))
            .args(extra)
            .env("BAKERY_LOG", "info")
            .env("NO_COLOR", "1")
            .output(Output::Log(log.clone()))
            .start()
            .unwrap();
        Self { node: node.to_string(), child: Some(child), log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Streams opened so far (the agent logs "stream open" at each Welcome).
    fn streams_opened(&self) -> usize {
        self.log().lines().filter(|line| line.contains("stream open")).count()
    }

    fn kill9(&mut self) {
        self.child.take().expect("a running agent").kill();
    }

    /// SIGTERM: the agent flushes (waits for the last acks) and exits 0.
    fn stop(&mut self) -> AgentExit {
        let mut child = self.child.take().expect("a running agent");
        child.signal(Signal::SIGTERM);
        let status = child.wait_exit(Duration::from_secs(30)).expect("the agent exits within 30 s of SIGTERM");
        let log = self.log();
        assert!(status.success(), "agent {} exits 0 on SIGTERM: {status}\n{log}", self.node);
        let line =
            log.lines().rev().find(|line| line.contains(" stopped ")).unwrap_or_else(|| panic!("no exit line:\n{log}"));
        AgentExit {
            acked_seq: field(line, "acked_seq"),
            last_seq: field(line, "last_seq"),
            unacknowledged: field(line, "unacknowledged"),
        }
    }
}

/// `name=123` in a log line.
fn field(line: &str, name: &str) -> u64 {
    let prefix = format!("{name}=");
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(&prefix))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {line:?}"))
}

fn u64_of(node: &Value, key: &str) -> u64 {
    node[key].as_u64().unwrap_or_else(|| panic!("{key} in {node}"))
}

/// The store holds every sequence number 1..=last_seq of `node` exactly
/// once, as a sample, nothing is recorded as lost, and `inspect --verify`
/// finds no hole and nothing accounted for twice.
fn assert_complete(store: &HashMap<String, Value>, node: &str, last_seq: u64) {
    let entry = store.get(node).unwrap_or_else(|| panic!("{node} is not in the store: {store:?}"));
    assert_eq!(entry["gaps"].as_array().map(Vec::len), Some(0), "{node}: no gap: {entry}");
    assert_eq!(u64_of(entry, "first_seq"), 1, "{node}: {entry}");
    assert_eq!(u64_of(entry, "last_seq"), last_seq, "{node}: everything the agent numbered arrived: {entry}");
    assert_eq!(u64_of(entry, "committed_seq"), last_seq, "{node}: {entry}");
    assert_eq!(u64_of(entry, "samples"), last_seq, "{node}: each sequence number stored exactly once: {entry}");
    assert_eq!(entry["unaccounted"], serde_json::json!([]), "{node}: no hole: {entry}");
    assert_eq!(entry["double_accounted"], serde_json::json!([]), "{node}: nothing twice: {entry}");
}

/// A small seeded generator (xorshift64): the kill schedule is the same on
/// every run with the same seed.
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in `[low, high]` milliseconds.
    fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(low + self.next() % (high - low + 1))
    }
}

/// The time stamp that starts a line of the collector's log (RFC 3339, UTC).
fn log_time(line: &str) -> Option<std::time::SystemTime> {
    humantime::parse_rfc3339_weak(line.split_whitespace().next()?).ok()
}

/// From collector start `start`'s log: how long after it began listening each
/// node's agent connected (its first "agent connected" line), by the
/// collector's own clock.
fn resume_times(collector: &Collector, start: usize) -> HashMap<String, Duration> {
    let log = collector.log(start);
    let Some(listening) = log.lines().find(|l| l.contains("collector listening")).and_then(log_time) else {
        return HashMap::new();
    };
    let mut resumed = HashMap::new();
    for line in log.lines().filter(|l| l.contains("agent connected")) {
        let node = line.split_whitespace().find_map(|w| w.strip_prefix("node=")).map(str::to_string);
        if let (Some(node), Some(at)) = (node, log_time(line)) {
            resumed.entry(node).or_insert_with(|| at.duration_since(listening).unwrap_or_default());
        }
    }
    resumed
}

#[test]
fn five_agents_at_4_hz_resume_within_2_s_of_each_of_10_random_sigkills_and_lose_nothing() {
    const AGENTS: usize = 5;
    const KILLS: usize = 10;
    let seed = 0x5eed_0fba_6e00_u64;
    let mut rng = Xorshift(seed);
    let began = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let mut collector = Collector::start(work.path());
    let url = collector.url();
    let nodes: Vec<String> = (1..=AGENTS).map(|i| format!("node-{i:02}")).collect();
    let mut agents: Vec<Agent> =
        nodes.iter().map(|n| Agent::start(work.path(), n, &url, &["--interval", "250ms"])).collect();
    wait_until("every agent to stream", Duration::from_secs(30), || resume_times(&collector, 1).len() == AGENTS)
        .unwrap();

    let mut worst = Duration::ZERO;
    let mut all_resumes = Vec::new();
    for kill in 1..=KILLS {
        // A random moment: 1 to 6 s after every agent was streaming again.
        let gap = rng.millis(1_000, 6_000);
        pause(gap);
        collector.kill9();
        collector.spawn();
        let start = collector.starts;
        wait_until("every agent to resume", Duration::from_secs(10), || {
            resume_times(&collector, start).len() == AGENTS
        })
        .unwrap();
        let resumed = resume_times(&collector, start);
        let slowest = resumed.values().max().copied().unwrap_or_default();
        eprintln!(
            "kill {kill} after {gap:?}: slowest agent back {slowest:?} after the collector listened: {resumed:?}"
        );
        for (node, after) in &resumed {
            assert!(
                *after <= Duration::from_secs(2),
                "kill {kill} (seed {seed:#x}): {node} resumed {after:?} after the collector listened\n{}",
                collector.log(start)
            );
        }
        worst = worst.max(slowest);
        all_resumes.extend(resumed.into_values());
    }
    // Some samples after the last restart, then everyone stops cleanly.
    pause(Duration::from_secs(1));
    let exits: Vec<(String, AgentExit)> = agents.iter_mut().map(|a| (a.node.clone(), a.stop())).collect();
    collector.stop();

    let store = collector.inspect();
    for (node, exit) in &exits {
        assert_eq!(exit.unacknowledged, 0, "{node} flushed on SIGTERM: {exit:?}");
        assert_eq!(exit.acked_seq, exit.last_seq, "{node}: {exit:?}");
        assert_complete(&store, node, exit.last_seq);
    }
    all_resumes.sort();
    eprintln!(
        "{KILLS} SIGKILLs, {AGENTS} agents: resumed in median {:?}, worst {worst:?}; test took {:?}",
        all_resumes[all_resumes.len() / 2],
        began.elapsed()
    );
}

#[test]
fn a_five_minute_outage_at_1_hz_is_delivered_from_the_disk_spool_across_an_agent_sigkill() {
    let work = tempfile::tempdir().unwrap();
    let spool = work.path().join("spool");
    let spool_flag = ["--spool-dir", spool.to_str().unwrap(), "--interval", "1s"];
    let mut collector = Collector::start(work.path());
    let url = collector.url();
    let mut agent = Agent::start(work.path(), "worker-01", &url, &spool_flag);
    wait_until("the agent to stream", Duration::from_secs(30), || agent.streams_opened() >= 1).unwrap();
    pause(Duration::from_secs(3));

    collector.kill9();
    let outage = Instant::now();
    pause_until(outage + Duration::from_secs(150));
    // The agent dies in the middle of the outage and comes back on the same spool.
    agent.kill9();
    let mut agent = Agent::start(work.path(), "worker-01", &url, &spool_flag);
    pause_until(outage + Duration::from_secs(305));
    collector.spawn();
    wait_until("the agent to resume", Duration::from_secs(60), || agent.streams_opened() >= 1).unwrap();

    let log = agent.log();
    let open = log.lines().find(|line| line.contains("stream open")).unwrap();
    let backlog = field(open, "last_seq") - field(open, "committed_seq");
    assert!(backlog >= 300, "the spool covered the 5-minute outage: {backlog} samples waiting\n{open}");
    // The collector drains a backlog at its documented per-stream rate (a
    // burst, then 20x the declared rate): ~15 s for 300 samples at 1 Hz.
    wait_until("the backlog to be acknowledged", Duration::from_secs(120), || {
        agent.log().contains("backlog delivered")
    })
    .unwrap();
    let exit = agent.stop();
    assert_eq!(exit.unacknowledged, 0, "{exit:?}");
    collector.stop();
    assert_complete(&collector.inspect(), "worker-01", exit.last_seq);
}

#[test]
fn a_spool_overflow_is_stored_as_exactly_the_dropped_range_with_its_reason() {
    let work = tempfile::tempdir().unwrap();
    let spool = work.path().join("spool");
    let limit = 16 * 1024;
    let flags = ["--spool-dir", spool.to_str().unwrap(), "--spool-max-bytes", "16KiB", "--interval", "50ms"];
    let mut collector = Collector::start(work.path());
    let url = collector.url();
    let mut agent = Agent::start(work.path(), "worker-02", &url, &flags);
    wait_until("the agent to stream", Duration::from_secs(30), || agent.streams_opened() >= 1).unwrap();
    pause(Duration::from_secs(1));
    // A clean stop acknowledges everything received: the spool starts the outage empty.
    collector.stop();
    let overflows = || agent.log().lines().filter(|line| line.contains("spool full")).count();
    wait_until("the spool to overflow several times", Duration::from_secs(60), || overflows() >= 4).unwrap();
    collector.spawn();
    wait_until("the agent to resume", Duration::from_secs(30), || agent.streams_opened() >= 2).unwrap();
    pause(Duration::from_secs(1));
    let exit = agent.stop();
    assert_eq!(exit.unacknowledged, 0, "{exit:?}");
    collector.stop();

    // What the agent says it dropped: overflows merge into one range that
    // grows. Drops logged after the collector returned may include batches
    // already delivered (sent, not yet acknowledged): those are stored, so
    // the gap ends somewhere in that last stretch, never before what was
    // dropped during the outage.
    let log = agent.log();
    let mut streams = 0;
    let mut during_outage = Vec::new();
    let mut after = Vec::new();
    for line in log.lines() {
        if line.contains("stream open") {
            streams += 1;
        } else if line.contains("spool full") {
            let range = (field(line, "first_seq"), field(line, "last_seq"));
            if streams < 2 { during_outage.push(range) } else { after.push(range) }
        }
    }
    let first = during_outage[0].0;
    assert!(
        during_outage.iter().chain(&after).all(|(f, _)| *f == first),
        "one growing range: {during_outage:?} {after:?}"
    );
    let dropped_while_down = during_outage.iter().map(|(_, l)| *l).max().unwrap();
    let dropped_at_most = after.iter().map(|(_, l)| *l).max().unwrap_or(dropped_while_down);

    let store = collector.inspect();
    let node = &store["worker-02"];
    let gaps = node["gaps"].as_array().unwrap();
    assert_eq!(gaps.len(), 1, "{node}");
    let (gap_first, gap_last) = (u64_of(&gaps[0], "first_seq"), u64_of(&gaps[0], "last_seq"));
    assert_eq!(gap_first, first, "the gap starts at the first dropped sample: {node}");
    assert!(
        (dropped_while_down..=dropped_at_most).contains(&gap_last),
        "the gap covers what was dropped during the outage ({first}..={dropped_while_down}) and no more than \
         was dropped in all ({dropped_at_most}): {node}"
    );
    let count = gap_last - gap_first + 1;
    assert_eq!(gaps[0]["reason"], format!("spool overflow: {count} samples dropped, limit {limit} bytes"));
    assert_eq!(u64_of(node, "samples"), exit.last_seq - count, "every sample outside the gap is stored: {node}");
    assert_eq!(u64_of(node, "committed_seq"), exit.last_seq, "{node}");
}

/// A synthetic node: 5 pods, the timestamp of the wall clock.
fn synthetic_node(name: String) -> impl FnMut(i64) -> Sample + Send + 'static {
    use bakery_agent::net::NetCounters;
    use bakery_agent::pods::{Pod, PodIdentity, QosClass};
    let pods: Vec<Pod> = (0..5)
        .map(|i| Pod {
            identity: PodIdentity {
                uid: format!("{name}-pod-{i}"),
                qos_class: QosClass::Burstable,
                cgroup_path: format!("/kubepods/burstable/pod{name}-{i}"),
                host_network: false,
            },
            network: Some(NetCounters::default()),
            tcp: None,
            cpu_usage_us: Some(0),
            memory_working_set_bytes: Some(0),
            process_count: 1,
        })
        .collect();
    move |now| Sample { node_name: name.clone(), timestamp_ms: now, pods: pods.clone(), ..Sample::default() }
}

#[test]
fn two_hundred_agents_in_one_process_reconnect_spread_out_and_lose_nothing() {
    use bakery_agent::stream::{Auth, StreamConfig, StreamStatus, run_with_status};
    use tokio::sync::watch;

    const AGENTS: usize = 200;
    let work = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let collector = Collector::start(work.path());
        let url = collector.url();
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut agents = Vec::new();
        for i in 0..AGENTS {
            let node = format!("synthetic-{i:03}");
            let config = StreamConfig::new(url.clone(), node.clone(), Auth::None);
            let (status_tx, status_rx) = watch::channel(StreamStatus::default());
            let mut stop = stop_rx.clone();
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            let task = tokio::spawn(run_with_status(config, synthetic_node(node.clone()), shutdown, status_tx));
            agents.push((node, status_rx, task));
        }
        let all = |agents: &[(String, watch::Receiver<StreamStatus>, _)], f: &dyn Fn(&StreamStatus) -> bool| {
            agents.iter().all(|(_, status, _)| f(&status.borrow()))
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !all(&agents, &|s| s.connected && s.spool.acked_seq >= 2) {
            assert!(tokio::time::Instant::now() < deadline, "not every agent connected within 60 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // SIGKILL and restart; the agents keep running meanwhile.
        let restarted_at = tokio::time::Instant::now();
        let collector = tokio::task::spawn_blocking(move || {
            let mut collector = collector;
            collector.kill9();
            collector.spawn();
            collector
        })
        .await
        .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        while !all(&agents, &|s| s.connected && s.welcomes >= 2) {
            assert!(tokio::time::Instant::now() < deadline, "not every agent reconnected within 90 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut reconnects: Vec<Duration> = agents
            .iter()
            .map(|(_, status, _)| status.borrow().last_welcome_at.expect("a welcome").duration_since(restarted_at))
            .collect();
        reconnects.sort();
        let spread = reconnects[AGENTS - 1] - reconnects[0];
        // Without jitter all 200 would come back within a few milliseconds of
        // each other; with full jitter over a 250 ms first window, about a
        // tenth land in any 25 ms.
        let window = Duration::from_millis(25);
        let busiest = reconnects
            .iter()
            .map(|start| reconnects.iter().filter(|t| **t >= *start && **t < *start + window).count())
            .max()
            .unwrap();
        eprintln!(
            "{AGENTS} agents reconnected between {:?} and {:?} after the kill (spread {spread:?}); at most {busiest} within {window:?}",
            reconnects[0],
            reconnects[AGENTS - 1]
        );
        assert!(spread >= Duration::from_millis(150), "jitter spreads the reconnects: {reconnects:?}");
        assert!(busiest <= AGENTS / 2, "no thundering herd: {busiest} of {AGENTS} within {window:?}");

        tokio::time::sleep(Duration::from_secs(2)).await;
        stop_tx.send_replace(true);
        let mut last_seqs = Vec::new();
        for (node, _, task) in agents {
            let summary = tokio::time::timeout(Duration::from_secs(60), task).await.expect("the agent stops").unwrap().unwrap();
            assert_eq!(summary.unacknowledged, 0, "{node} flushed: {summary:?}");
            last_seqs.push((node, summary.last_seq));
        }
        let collector = tokio::task::spawn_blocking(move || {
            let mut collector = collector;
            collector.stop();
            collector
        })
        .await
        .unwrap();
        let store = collector.inspect();
        assert_eq!(store.len(), AGENTS);
        for (node, last_seq) in &last_seqs {
            assert_complete(&store, node, *last_seq);
        }
    });
}
