//! Nothing lost across processes: real `bakery-agent` and
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
//!   after a collector restart, spread by jitter;
//! - three agents in this process draining a 30-second backlog at 20 Hz
//!   after a collector outage: their live samples go ahead of it, and
//!   everything is stored once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bakery_agent::sampler::Sample;
use bakery_agent::stream::{Auth, RunSummary, StreamConfig, StreamError, StreamStatus, run_with_status};
use bakery_lab::random::Xorshift;
use bakery_lab::{pause, wait_until};
use bakery_tests::procs::{Agent, AgentExit, Collector, assert_complete, field, number};
use tokio::sync::watch;

/// Paces a schedule (kill at 8 s, 19 s, ...).
fn pause_until(instant: Instant) {
    pause(instant.saturating_duration_since(Instant::now()));
}

/// The time stamp that starts a line of the collector's log (RFC 3339, UTC).
fn log_time(line: &str) -> Option<std::time::SystemTime> {
    humantime::parse_rfc3339_weak(line.split_whitespace().next()?).ok()
}

/// From collector start `start`'s log: how long after it began listening each
/// node's agent connected (its first "agent connected" line), by the
/// collector's own clock.
fn resume_times(collector: &Collector, start: usize) -> HashMap<String, Duration> {
    let log = collector.log_of(start);
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
    // Seeded: the kill schedule is the same on every run.
    let mut rng = Xorshift::new(seed);
    let began = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let mut collector = Collector::start(work.path(), &["--insecure-no-auth"]);
    let url = collector.url();
    let nodes: Vec<String> = (1..=AGENTS).map(|i| format!("node-{i:02}")).collect();
    let mut agents: Vec<Agent> = nodes
        .iter()
        .map(|n| Agent::start(work.path(), n, &url, &["--insecure-no-auth", "--interval", "250ms"]))
        .collect();
    wait_until("every agent to stream", Duration::from_secs(30), || resume_times(&collector, 1).len() == AGENTS)
        .unwrap();

    let mut worst = Duration::ZERO;
    let mut all_resumes = Vec::new();
    for kill in 1..=KILLS {
        // A random moment: 1 to 6 s after every agent was streaming again.
        let gap = Duration::from_millis(rng.between(1_000, 6_000));
        pause(gap);
        collector.kill9();
        collector.spawn();
        let start = collector.starts();
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
                collector.log_of(start)
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
    let spool_flag = ["--insecure-no-auth", "--spool-dir", spool.to_str().unwrap(), "--interval", "1s"];
    let mut collector = Collector::start(work.path(), &["--insecure-no-auth"]);
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
    // The backlog goes as Replay messages of many samples, paced by acks:
    // 300 samples at 1 Hz take a few commits.
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
    let flags = [
        "--insecure-no-auth",
        "--spool-dir",
        spool.to_str().unwrap(),
        "--spool-max-bytes",
        "16KiB",
        "--interval",
        "50ms",
    ];
    let mut collector = Collector::start(work.path(), &["--insecure-no-auth"]);
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
    let (gap_first, gap_last) = (number(&gaps[0], "first_seq"), number(&gaps[0], "last_seq"));
    assert_eq!(gap_first, first, "the gap starts at the first dropped sample: {node}");
    assert!(
        (dropped_while_down..=dropped_at_most).contains(&gap_last),
        "the gap covers what was dropped during the outage ({first}..={dropped_while_down}) and no more than \
         was dropped in all ({dropped_at_most}): {node}"
    );
    let count = gap_last - gap_first + 1;
    assert_eq!(gaps[0]["reason"], format!("spool overflow: {count} samples dropped, limit {limit} bytes"));
    assert_eq!(number(node, "samples"), exit.last_seq - count, "every sample outside the gap is stored: {node}");
    assert_eq!(number(node, "committed_seq"), exit.last_seq, "{node}");
}

/// A synthetic node: `pods` pods, the timestamp of the wall clock.
fn synthetic_node(name: String, pods: usize) -> impl FnMut(i64) -> Sample + Send + 'static {
    use bakery_agent::net::NetCounters;
    use bakery_agent::pods::{Pod, PodIdentity, QosClass};
    let pods: Vec<Pod> = (0..pods)
        .map(|i| Pod {
            identity: PodIdentity {
                uid: format!("{name}-pod-{i}"),
                qos_class: QosClass::Burstable,
                cgroup_path: format!("/kubepods/burstable/pod{name}-{i}"),
                host_network: false,
            },
            network: Some(NetCounters {
                rx_bytes: 1 << 40,
                tx_bytes: 1 << 41,
                rx_packets: 1 << 30,
                ..NetCounters::default()
            }),
            tcp: None,
            cpu_usage_us: Some(0),
            memory_working_set_bytes: Some(0),
            process_count: 1,
        })
        .collect();
    move |now| Sample { node_name: name.clone(), timestamp_ms: now, pods: pods.clone(), ..Sample::default() }
}

/// An agent running in this process: its node, its progress, and its task.
struct InProcessAgent {
    node: String,
    status: watch::Receiver<StreamStatus>,
    task: tokio::task::JoinHandle<Result<RunSummary, StreamError>>,
}

/// Starts `count` synthetic agents of 5 pods streaming every second to `url` until `stop` turns true.
fn start_in_process_agents(url: &str, count: usize, stop: &watch::Receiver<bool>) -> Vec<InProcessAgent> {
    start_synthetic_agents(url, count, (Duration::from_secs(1), 5), stop)
}

/// Starts `count` synthetic agents, each sampling `pods` pods every `interval`, streaming to `url`
/// until `stop` turns true.
fn start_synthetic_agents(
    url: &str,
    count: usize,
    (interval, pods): (Duration, usize),
    stop: &watch::Receiver<bool>,
) -> Vec<InProcessAgent> {
    (0..count)
        .map(|i| {
            let node = format!("synthetic-{i:03}");
            let config = StreamConfig { interval, ..StreamConfig::new(url, node.clone(), Auth::None) };
            let (status_tx, status) = watch::channel(StreamStatus::default());
            let mut stop = stop.clone();
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            let task = tokio::spawn(run_with_status(config, synthetic_node(node.clone(), pods), shutdown, status_tx));
            InProcessAgent { node, status, task }
        })
        .collect()
}

/// Waits until every agent's status satisfies `condition`, at most `timeout`.
async fn until_every_agent(
    agents: &[InProcessAgent],
    what: &str,
    timeout: Duration,
    condition: impl Fn(&StreamStatus) -> bool,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !agents.iter().all(|agent| condition(&agent.status.borrow())) {
        assert!(tokio::time::Instant::now() < deadline, "not every agent {what} within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts that the agents' reconnects after `restarted_at` are spread out: without jitter all
/// would come back within a few milliseconds of each other; with full jitter over a 250 ms first
/// window, about a tenth choose a delay within any 25 ms. The herd is judged on the delays the
/// agents chose, not on when their Welcomes came back: a collector short of CPU right after its
/// start answers a queue of Hellos at once, however spread their arrival was.
fn assert_reconnects_spread_out(agents: &[InProcessAgent], restarted_at: tokio::time::Instant) {
    let mut reconnects: Vec<Duration> = agents
        .iter()
        .map(|agent| agent.status.borrow().last_welcome_at.expect("a welcome").duration_since(restarted_at))
        .collect();
    reconnects.sort();
    let (first, last) = (reconnects[0], reconnects[reconnects.len() - 1]);
    let spread = last - first;
    let mut delays: Vec<Duration> =
        agents.iter().map(|agent| agent.status.borrow().last_retry_delay.expect("a retry after the kill")).collect();
    delays.sort();
    let window = Duration::from_millis(25);
    let busiest = delays
        .iter()
        .map(|start| delays.iter().filter(|d| **d >= *start && **d < *start + window).count())
        .max()
        .unwrap();
    let count = agents.len();
    eprintln!(
        "{count} agents reconnected between {first:?} and {last:?} after the kill (spread {spread:?}); their retry \
         delays ran from {:?} to {:?}, at most {busiest} within {window:?}",
        delays[0],
        delays[count - 1]
    );
    assert!(spread >= Duration::from_millis(150), "jitter spreads the reconnects: {reconnects:?}");
    assert!(
        busiest <= count / 2,
        "no thundering herd: {busiest} of {count} retry delays within {window:?}: {delays:?}"
    );
}

/// Stops the agents (they flush first); each node's last sequence number.
async fn stop_in_process_agents(agents: Vec<InProcessAgent>, stop: &watch::Sender<bool>) -> Vec<(String, u64)> {
    stop.send_replace(true);
    let mut last_seqs = Vec::new();
    for InProcessAgent { node, task, .. } in agents {
        let summary =
            tokio::time::timeout(Duration::from_secs(60), task).await.expect("the agent stops").unwrap().unwrap();
        assert_eq!(summary.unacknowledged, 0, "{node} flushed: {summary:?}");
        last_seqs.push((node, summary.last_seq));
    }
    last_seqs
}

/// Runs `step` on the collector off the async runtime (it waits on the process).
async fn with_collector(collector: Collector, step: fn(&mut Collector)) -> Collector {
    tokio::task::spawn_blocking(move || {
        let mut collector = collector;
        step(&mut collector);
        collector
    })
    .await
    .unwrap()
}

#[test]
fn two_hundred_agents_in_one_process_reconnect_spread_out_and_lose_nothing() {
    const AGENTS: usize = 200;
    let work = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let collector = Collector::start(work.path(), &["--insecure-no-auth"]);
        let (stop_tx, stop_rx) = watch::channel(false);
        let agents = start_in_process_agents(&collector.url(), AGENTS, &stop_rx);
        until_every_agent(&agents, "connected", Duration::from_secs(60), |s| s.connected && s.spool.acked_seq >= 2)
            .await;

        // SIGKILL and restart; the agents keep running meanwhile.
        let restarted_at = tokio::time::Instant::now();
        let collector = with_collector(collector, |c| {
            c.kill9();
            c.spawn();
        })
        .await;
        until_every_agent(&agents, "reconnected", Duration::from_secs(90), |s| s.connected && s.welcomes >= 2).await;
        assert_reconnects_spread_out(&agents, restarted_at);

        tokio::time::sleep(Duration::from_secs(2)).await;
        let last_seqs = stop_in_process_agents(agents, &stop_tx).await;
        let collector = with_collector(collector, Collector::stop).await;
        let store = collector.inspect();
        assert_eq!(store.len(), AGENTS);
        for (node, last_seq) in &last_seqs {
            assert_complete(&store, node, *last_seq);
        }
    });
}

/// How one node's backlog and live samples reached the collector, from its stored rows.
#[derive(Debug)]
struct Drain {
    /// When the collector took in the last sample of the backlog, Unix epoch ms.
    backlog_received_ms: i64,
    /// Receive minus sample time of each live sample taken before that, ms, in sequence order,
    /// with when it was received.
    live: Vec<(u64, i64, i64)>,
}

fn drain_of(rows: &[bakery_tests::stored::StoredSample], through: u64) -> Drain {
    let backlog_received_ms = rows.iter().filter(|r| r.seq <= through).map(|r| r.received_ms).max().unwrap();
    let live = rows
        .iter()
        .filter(|r| r.seq > through && r.sample_ms <= backlog_received_ms)
        .map(|r| (r.seq, r.received_ms, r.received_ms - r.sample_ms))
        .collect();
    Drain { backlog_received_ms, live }
}

#[test]
fn a_backlog_drains_while_live_samples_go_ahead_of_it_and_nothing_is_lost() {
    const AGENTS: usize = 3;
    // 20 Hz for 30 s of outage with 100 pods a sample: 600 samples of about 5 KB each, several
    // times what an agent keeps unacknowledged, so the drain takes several commits.
    let (interval, pods, outage) = (Duration::from_millis(50), 100, Duration::from_secs(30));
    let work = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (collector, drained) = runtime.block_on(async {
        let collector = Collector::start(work.path(), &["--insecure-no-auth"]);
        let (stop_tx, stop_rx) = watch::channel(false);
        let agents = start_synthetic_agents(&collector.url(), AGENTS, (interval, pods), &stop_rx);
        until_every_agent(&agents, "connected", Duration::from_secs(60), |s| s.connected && s.spool.acked_seq >= 2)
            .await;
        // A clean stop acknowledges everything: the backlog is what the outage spools.
        let collector = with_collector(collector, Collector::stop).await;
        tokio::time::sleep(outage).await;
        let collector = with_collector(collector, Collector::spawn).await;
        until_every_agent(&agents, "welcomed back with a backlog", Duration::from_secs(60), |s| {
            s.welcomes >= 2 && s.replay_through > 0
        })
        .await;
        let through: Vec<u64> = agents.iter().map(|a| a.status.borrow().replay_through).collect();
        // Generous: the goal is 10 s for five agents' five minutes at 4 Hz.
        until_every_agent(&agents, "done with the backlog", Duration::from_secs(60), |s| {
            s.spool.acked_seq >= s.replay_through
        })
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let last_seqs = stop_in_process_agents(agents, &stop_tx).await;
        let collector = with_collector(collector, Collector::stop).await;
        (collector, last_seqs.into_iter().zip(through).collect::<Vec<_>>())
    });

    let store = collector.inspect();
    for ((node, last_seq), through) in &drained {
        assert_complete(&store, node, *last_seq);
        let rows = collector.stored_samples(node);
        let drain = drain_of(&rows, *through);
        eprintln!(
            "{node}: backlog through {through}, {} live samples taken while it drained, received {:?} ms after \
             they were taken",
            drain.live.len(),
            drain.live.iter().map(|(_, _, delay)| *delay).collect::<Vec<_>>()
        );
        let spooled = outage.as_millis() as u64 / interval.as_millis() as u64;
        assert!(*through >= spooled / 2, "{node}: the backlog covers the outage: through {through}");
        // Live samples went ahead: the first one was in before the backlog's last.
        let (first_live, first_received, _) = *drain.live.first().unwrap_or_else(|| panic!("{node}: {drain:?}"));
        assert_eq!(first_live, through + 1, "{node}: the first live sample follows the backlog");
        assert!(
            first_received < drain.backlog_received_ms,
            "{node}: live samples went ahead of the backlog: {drain:?}"
        );
        // ... in order, and none waited for the backlog (10 s: far beyond a busy machine's stall).
        assert!(drain.live.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1), "{node}: in order: {drain:?}");
        assert!(drain.live.iter().all(|(_, _, delay)| *delay < 10_000), "{node}: {drain:?}");
    }
}
