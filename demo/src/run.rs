//! One demo run, step by step: build the cluster and start bakery ([`Demo::start`]), open a
//! load-test window and run oha through it ([`Demo::run_load`]), then stop bakery, read what the
//! collector stored and take everything down ([`Demo::finish`]). The CLI runs the three in a row;
//! the root tests (`tests/demo/`) look at the cluster between them.
//!
//! A hog that comes on mid-run ([`crate::onset`]) is switched on from the load's loop at its time;
//! the report gives the seconds from then to the first expected verdict.
//!
//! Before the window, bakery watches the idle cluster for [`warm_up`]: a collector in a real cluster
//! has watched it for hours, and the diagnosis learns each node's own baseline outside windows.
//!
//! The window is opened without naming a workload: the collector chooses the workload under test
//! itself, as it does for a user's `bakery-top loadtest`, and the report says which it chose
//! (MATCH requires the Service's web workload). `Options::workload` names one instead, for
//! debugging.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bakery_diagnosis::WindowReport;
use bakery_proto::v1::{LiveResponse, ReportResponse};
use bakery_signals::time::now_ms;
use bakery_top::oha::{JsonDestination, OhaFlags, OhaSummary, flags_from_help, parse_summary};

use crate::binaries::Binaries;
use crate::cluster::{Cluster, ClusterOptions};
use crate::control::ControlLink;
use crate::diagnose::{self, TimeToVerdict};
use crate::launch::with_log;
use crate::onset::{Onset, OnsetTime, Pending};
use crate::plan::{Plan, PodPlan};
use crate::report::{PodCount, Report, StoredNode, Timings, WindowTimes, WorkloadUnderTest};
use crate::scenario::{App, Scenario};
use crate::stand_ins::{WebStats, read_stats};
use crate::{Error, Result, interrupt, oha, otlp};

/// How long bakery watches the idle cluster before the load-test window opens. The diagnosis
/// compares a node's CPU outside its pods with that node's own baseline, which it learns outside
/// windows, over full detection spans, for a minimum time (the collector runs with the diagnosis's
/// default configuration); a second more covers the phase of the collector's 1 s evaluations. The
/// verdict such a baseline allows comes a detection span into the window at the earliest, by which
/// time the baseline has learnt long enough even if the agents' 1 s samples fell late.
pub fn warm_up() -> Duration {
    let config = bakery_diagnosis::Config::default();
    let learning_ms = config.detect_span_ms.saturating_add(config.unattributed.baseline_min_ms);
    Duration::from_millis(u64::try_from(learning_ms).unwrap_or(0)) + Duration::from_secs(1)
}

/// How a run is done.
#[derive(Debug, Clone)]
pub struct Options {
    /// Replaces the scenario's load duration (the tests use shorter runs).
    pub duration: Option<Duration>,
    /// Print progress lines on stderr.
    pub progress: bool,
    /// Show bakery-top in this terminal during the load.
    pub tui: bool,
    /// Write the window report (bakery-diagnosis JSON) here.
    pub window_report_file: Option<std::path::PathBuf>,
    /// Name the window's workload (`namespace/name`) instead of letting the collector choose it.
    pub workload: Option<String>,
    /// How long bakery watches the idle cluster before the window ([`warm_up`] by default).
    pub warm_up: Duration,
    pub cluster: ClusterOptions,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            duration: None,
            progress: true,
            tui: false,
            window_report_file: None,
            workload: None,
            warm_up: warm_up(),
            cluster: ClusterOptions::default(),
        }
    }
}

/// Stops early when the user asked to.
fn check_interrupt() -> Result<()> {
    match interrupt::raised() {
        Some(why) => Err(Error::Interrupted(why)),
        None => Ok(()),
    }
}

/// A running demo: the cluster, the link to the collector, and what the run has measured.
#[derive(Debug)]
pub struct Demo {
    /// Declared first so it drops first: the collector's shutdown waits for its connection.
    pub link: ControlLink,
    pub cluster: Cluster,
    options: Options,
    started: Instant,
    timings: Timings,
    pods_before_load: BTreeMap<String, WebStats>,
}

/// What the load left to report before the collector stops.
#[derive(Debug)]
pub struct LoadOutcome {
    pub report: Report,
    pub window_report: WindowReport,
}

impl Demo {
    /// Builds the cluster for `scenario` and starts bakery on it; returns once every agent has
    /// delivered a sample and the whole request path answers.
    pub fn start(mut scenario: Scenario, binaries: Binaries, options: Options) -> Result<Self> {
        let started = Instant::now();
        if let Some(duration) = options.duration {
            scenario.load.duration = duration;
            // A shorter load may end before a mid-run hog's onset.
            scenario.validate()?;
        }
        let run_id = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ d.as_secs() as u32)
            .unwrap_or(1);
        let plan = Plan::new(scenario, run_id);
        let progress = |message: &str| {
            if options.progress {
                eprintln!("bakery-demo: [{:5.1} s] {message}", started.elapsed().as_secs_f64());
            }
        };
        let cluster = Cluster::build(plan, binaries, &options.cluster, &progress)?;
        check_interrupt()?;
        let link = ControlLink::new(&cluster.plan.control.netns, &cluster.plan.collector_url())?;
        let mut demo =
            Self { link, cluster, options, started, timings: Timings::default(), pods_before_load: BTreeMap::new() };
        let agents = demo.cluster.agents_running();
        if agents {
            demo.progress("waiting for every agent's first sample");
            demo.wait_for_agents()?;
        }
        let agents_ready_ms = now_ms();
        demo.probe()?;
        if agents {
            demo.watch_idle(agents_ready_ms)?;
        }
        demo.timings.setup_seconds = started.elapsed().as_secs_f64();
        Ok(demo)
    }

    /// Waits until every node has been sampled for `options.warm_up` since `from_ms`, by the
    /// samples' own timestamps.
    fn watch_idle(&self, from_ms: i64) -> Result<()> {
        let warm_up = self.options.warm_up;
        if warm_up.is_zero() {
            return Ok(());
        }
        self.progress(&format!(
            "bakery watches the idle cluster for {} (the diagnosis learns each node's own baseline)",
            humantime::format_duration(warm_up)
        ));
        let until_ms = from_ms.saturating_add(i64::try_from(warm_up.as_millis()).unwrap_or(i64::MAX));
        let deadline = Instant::now() + warm_up + Duration::from_secs(10);
        loop {
            let nodes = self.link.nodes()?;
            if nodes.iter().all(|n| n.last_sample_ms >= until_ms) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let behind: Vec<&str> =
                    nodes.iter().filter(|n| n.last_sample_ms < until_ms).map(|n| n.node_name.as_str()).collect();
                return Err(Error::Stalled(format!(
                    "no recent sample from {behind:?} {} s after the agents started (logs in {})",
                    (warm_up + Duration::from_secs(10)).as_secs(),
                    self.cluster.run_dir.join("logs").display()
                )));
            }
            interrupt::wait(Duration::from_millis(200)).map_err(Error::Interrupted)?;
        }
    }

    pub fn plan(&self) -> &Plan {
        &self.cluster.plan
    }

    fn progress(&self, message: &str) {
        if self.options.progress {
            eprintln!("bakery-demo: [{:5.1} s] {message}", self.started.elapsed().as_secs_f64());
        }
    }

    fn node_names(&self) -> Vec<String> {
        self.plan().nodes.iter().map(|n| n.name.clone()).collect()
    }

    fn wait_for_agents(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let wanted = self.node_names();
        loop {
            check_interrupt()?;
            let nodes = self.link.nodes().unwrap_or_default();
            let ready: Vec<&str> =
                nodes.iter().filter(|n| n.connected && n.latest.is_some()).map(|n| n.node_name.as_str()).collect();
            if wanted.iter().all(|w| ready.contains(&w.as_str())) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let missing: Vec<&String> = wanted.iter().filter(|w| !ready.contains(&w.as_str())).collect();
                return Err(Error::Stalled(format!(
                    "no sample from the agents of {missing:?} after 30 s (logs in {})",
                    self.cluster.run_dir.join("logs").display()
                )));
            }
            interrupt::wait(Duration::from_millis(100)).map_err(Error::Interrupted)?;
        }
    }

    /// One request through the whole path (proxy, LoadBalancer IP, kube-proxy, a pod, the
    /// database) from the client station, so a broken path fails here with a clear message.
    fn probe(&self) -> Result<()> {
        let url = self.cluster.target_url();
        let command = vec![self.cluster.binaries.demo.display().to_string(), "probe".into(), url.clone()];
        let mut last = String::new();
        for _ in 0..20 {
            let mut probe = self.cluster.spawn_in_client("probe", command.clone())?;
            let status = probe.wait_exit(Duration::from_secs(10));
            if status.is_some_and(|s| s.success()) {
                return Ok(());
            }
            last = probe.lines().join(" ");
            interrupt::wait(Duration::from_millis(250)).map_err(Error::Interrupted)?;
        }
        Err(Error::Stalled(format!("{url} does not answer from the client namespace: {last}")))
    }

    fn web_stats(&self) -> BTreeMap<String, WebStats> {
        self.plan()
            .pods
            .iter()
            .filter(|p| p.app == App::Web)
            .map(|p| (p.name.clone(), read_stats(&self.cluster.stats_file(p)).unwrap_or_default()))
            .collect()
    }

    /// Opens a load-test window on the collector, runs oha through the cluster, closes the window
    /// and reads the report the collector stored for it.
    pub fn run_load(&mut self) -> Result<LoadOutcome> {
        // One piece: the window's life in order (open it, start the extras, run oha with live lines or bakery-top,
        // wait for the last samples, close it, read the report), each timestamp taken at its own moment.
        if !self.cluster.agents_running() {
            return Err(Error::Stalled("the load-test window needs the agents running, and they are stopped".into()));
        }
        if self.cluster.binaries.apiserver.is_none() {
            return Err(Error::Missing {
                what: "bakery-fake-apiserver".into(),
                how: "the collector learns the pods' workloads and endpoints from it (build it with \
                      `cargo build -p bakery-lab --bin bakery-fake-apiserver`, or run `cargo xtask demo`)"
                    .into(),
            });
        }
        let (oha_path, oha_flags) = self.oha()?;
        let load = self.plan().scenario.load.clone();
        let url = self.cluster.target_url();

        // The pods write their counters every 200 ms: let the probe's request reach the files
        // before the counts the load is measured against are taken.
        interrupt::wait(Duration::from_millis(500)).map_err(Error::Interrupted)?;
        self.pods_before_load = self.web_stats();
        let window_id = self.open_collector_window()?;
        let window_start = now_ms();
        let started_extras = self.cluster.start_load_extras()?;
        if !started_extras.is_empty() {
            self.progress(&format!("started with the load: {}", started_extras.join(", ")));
        }
        let load_started = Instant::now();
        let mut onset = Onset::of(&self.plan().scenario).map(|onset| Pending::new(onset, window_start));
        self.progress(&format!(
            "window open; oha against {url} for {} ({} connections{}{})",
            humantime::format_duration(load.duration),
            load.connections,
            load.rate.map_or(String::new(), |r| format!(", {r} req/s")),
            if load.keepalive { "" } else { ", no keep-alive" }
        ));
        let mut top = None;
        if self.options.tui
            && let Some(top_binary) = self.cluster.binaries.top.clone()
        {
            let command = vec![
                top_binary.display().to_string(),
                "--collector".into(),
                self.plan().collector_url(),
                "--refresh".into(),
                "500ms".into(),
            ];
            self.progress(&format!(
                "bakery-top shows the cluster live while the load runs ({}); press q in it when you have seen enough, and the report follows",
                humantime::format_duration(load.duration)
            ));
            top = Some(self.cluster.spawn_in_control_on_terminal("bakery-top", command)?);
        }
        let mut live = top.is_none().then(LiveLines::default);
        let mut next_line = Instant::now() + Duration::from_secs(2);
        let result = self.run_oha(&oha_path, oha_flags, &load, &url, || {
            if let Some(line) = onset.as_mut().and_then(|pending| pending.poll(&self.cluster)) {
                self.progress(&line);
            }
            if let Some(live) = live.as_mut()
                && Instant::now() >= next_line
            {
                next_line += Duration::from_secs(2);
                if let Ok(response) = self.link.live()
                    && let Some(line) = live.line(&response, load_started.elapsed())
                {
                    self.progress(&line);
                }
            }
        });
        let window_end = now_ms();
        self.timings.load_seconds = load_started.elapsed().as_secs_f64();
        let onset = onset.map(|pending| {
            let (time, started) = pending.finish();
            self.cluster.keep_extras(started);
            time
        });
        let summary = match result.and_then(|summary| Ok((summary, onset.transpose()?))) {
            Ok(summary) => summary,
            Err(error) => {
                if let Some(mut top) = top.take() {
                    top.stop(Duration::from_secs(2));
                }
                return Err(error);
            }
        };
        let analysis_started = Instant::now();
        let pods_after = self.web_stats();
        // The window covers the whole load: every node samples once more before it closes.
        self.wait_for_samples_after(window_end)?;
        let (stored, window_report) = self.close_collector_window()?;
        if let Some(path) = &self.options.window_report_file {
            // As the collector serves them (`bakery-top report --json` / `--svg` print the same).
            std::fs::write(path, &stored.json).map_err(|source| Error::File {
                action: "writing",
                path: path.clone(),
                source,
            })?;
            let chart = path.with_extension("svg");
            std::fs::write(&chart, &stored.svg).map_err(|source| Error::File {
                action: "writing",
                path: chart,
                source,
            })?;
        }
        let times = WindowTimes { collector_window: window_id, start_ms: window_start, end_ms: window_end };
        let (summary, onset) = summary;
        let mut report = self.report(times, &window_report, summary, &pods_after, onset);
        self.timings.analysis_seconds = analysis_started.elapsed().as_secs_f64();
        report.timings = self.timings.clone();
        if let Some(mut top) = top {
            // bakery-top stays until the user quits it (q), so the last view can be read.
            while top.running() {
                if interrupt::wait(Duration::from_millis(200)).is_err() {
                    top.stop(Duration::from_secs(2));
                    break;
                }
            }
        }
        Ok(LoadOutcome { report, window_report })
    }

    /// Opens the window on the collector once it knows every pod of the plan, with its workload,
    /// from the Kubernetes API double; returns the window's id.
    fn open_collector_window(&self) -> Result<String> {
        let uids: Vec<&str> = self.plan().pods.iter().map(|p| p.uid.as_str()).collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let known = self.link.pods().is_ok_and(|pods| {
                pods.kubernetes
                    && uids.iter().all(|uid| pods.pods.iter().any(|p| p.uid == *uid && !p.workload_name.is_empty()))
            });
            if known {
                break;
            }
            if Instant::now() >= deadline {
                return Err(Error::Stalled(format!(
                    "the collector does not know the demo's pods from the Kubernetes API double after 10 s (logs in {})",
                    self.cluster.run_dir.join("logs").display()
                )));
            }
            interrupt::wait(Duration::from_millis(200)).map_err(Error::Interrupted)?;
        }
        let name = format!("bakery-demo-{}", self.plan().scenario.name);
        // An empty workload lets the collector choose.
        let workload = self.options.workload.clone().unwrap_or_default();
        let window = self.link.start_window(&name, &workload)?;
        self.progress(&format!(
            "the collector opened window {} ({})",
            window.id,
            if workload.is_empty() {
                "it chooses the workload under test".to_string()
            } else {
                format!("workload {workload}")
            }
        ));
        Ok(window.id)
    }

    /// Closes the collector's window and reads the report it stored, as served and parsed.
    fn close_collector_window(&self) -> Result<(ReportResponse, WindowReport)> {
        let window = self.link.stop_window()?;
        let response = self.link.report(&window.id)?;
        let report = WindowReport::from_json(&response.json)
            .map_err(|source| Error::Json { what: format!("the collector's report {}", window.id), source })?;
        Ok((response, report))
    }

    /// Runs oha once in the client station and returns its summary; `tick` runs every 200 ms
    /// meanwhile. Bounded: oha stops itself after the load's duration, and is killed 20 s later.
    pub fn run_oha(
        &self,
        oha_path: &std::path::Path,
        oha_flags: OhaFlags,
        load: &crate::scenario::LoadSpec,
        url: &str,
        mut tick: impl FnMut(),
    ) -> Result<OhaSummary> {
        let json_file = self.cluster.run_dir.join("oha.json");
        // A failed run must not be read as the previous run's summary.
        let _ = std::fs::remove_file(&json_file);
        let (args, destination) = bakery_top::oha::arguments(&oha::load_args(load, url), oha_flags, &json_file);
        let mut command = vec![oha_path.display().to_string()];
        command.extend(args.iter().map(|a| a.to_string_lossy().into_owned()));
        let mut oha_proc = self.cluster.spawn_in_client("oha", command)?;
        let deadline = Instant::now() + load.duration + Duration::from_secs(20);
        while oha_proc.running() {
            if let Err(why) = interrupt::wait(Duration::from_millis(200)) {
                oha_proc.stop(Duration::from_secs(1));
                return Err(Error::Interrupted(why));
            }
            if Instant::now() >= deadline {
                oha_proc.stop(Duration::from_secs(1));
                return Err(Error::Stalled(format!(
                    "oha did not finish within {} s",
                    (load.duration + Duration::from_secs(20)).as_secs()
                )));
            }
            tick();
        }
        oha_proc.wait_exit(Duration::from_secs(5));
        let json = match destination {
            JsonDestination::File(path) => std::fs::read_to_string(&path).map_err(|source| {
                with_log(&oha_proc, Error::File { action: "reading oha's JSON summary", path: path.clone(), source })
            })?,
            JsonDestination::Stdout => oha_proc.lines().join("\n"),
        };
        parse_summary(&json)
            .map_err(|source| with_log(&oha_proc, Error::Json { what: "oha's JSON summary".into(), source }))
    }

    /// oha's path and the flags the installed version spells.
    pub fn oha(&self) -> Result<(std::path::PathBuf, OhaFlags)> {
        let oha_path = self
            .cluster
            .binaries
            .oha
            .clone()
            .ok_or_else(|| Error::Missing { what: "oha".into(), how: bakery_top::oha::INSTALL_COMMAND.into() })?;
        let help = std::process::Command::new(&oha_path)
            .arg("--help")
            .output()
            .map_err(|source| bakery_lab::Error::Spawn { program: oha_path.display().to_string(), source })?;
        Ok((oha_path, flags_from_help(&String::from_utf8_lossy(&help.stdout))))
    }

    fn wait_for_samples_after(&self, t_ms: i64) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let nodes = self.link.nodes()?;
            if nodes.iter().all(|n| n.last_sample_ms >= t_ms) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Ok(());
            }
            interrupt::wait(Duration::from_millis(100)).map_err(Error::Interrupted)?;
        }
    }

    fn report(
        &self,
        window: WindowTimes,
        window_report: &WindowReport,
        oha: OhaSummary,
        pods_after: &BTreeMap<String, WebStats>,
        onset: Option<OnsetTime>,
    ) -> Report {
        let plan = self.plan();
        let mut counts = BTreeMap::new();
        let mut pods = Vec::new();
        for pod in plan.pods.iter().filter(|p| p.app == App::Web) {
            let before = self.pods_before_load.get(&pod.name).copied().unwrap_or_default();
            let after = pods_after.get(&pod.name).copied().unwrap_or_default();
            let requests = after.requests.saturating_sub(before.requests);
            let accepted = after.accepted.saturating_sub(before.accepted);
            counts.insert(pod.name.clone(), (requests, accepted));
            pods.push(PodCount {
                pod: pod.name.clone(),
                node: pod.node.clone(),
                workload: pod.workload.clone(),
                requests,
                accepted_connections: accepted,
            });
        }
        let mut connections_per_node: BTreeMap<String, u64> = BTreeMap::new();
        for pod in plan.endpoints() {
            *connections_per_node.entry(pod.node.clone()).or_default() += counts.get(&pod.name).map_or(0, |c| c.1);
        }
        let expected = diagnose::resolve(&plan.scenario.expect, plan, &connections_per_node);
        let verdicts = diagnose::window_verdicts(window_report, diagnose::MIN_ACTIVE_MS);
        let workload = WorkloadUnderTest {
            chosen: window_report.window.workload.as_ref().map(ToString::to_string),
            chosen_by: if self.options.workload.is_some() { "named" } else { "collector" }.to_string(),
            expected: diagnose::expected_workload(plan),
        };
        let mut differences =
            diagnose::differences(&expected, &verdicts.counted, workload.chosen.as_deref(), &workload.expected);
        let within = plan.scenario.verdict_within_s();
        let time_to_verdict = TimeToVerdict::of(window_report, &expected.verdicts, window.start_ms, onset, within);
        differences.extend(time_to_verdict.differences());
        Report {
            scenario: plan.scenario.name.clone(),
            description: plan.scenario.description.clone(),
            target: self.cluster.target_url(),
            window,
            workload,
            verdicts: verdicts.counted,
            brief_verdicts: verdicts.brief,
            expected,
            time_to_verdict,
            matched: differences.is_empty(),
            differences,
            collector_notes: window_report.notes.clone(),
            shares: diagnose::node_shares(plan, window_report, &counts),
            pods,
            oha,
            stored: Vec::new(),
            timings: Timings::default(),
        }
    }

    /// The collector's view of one pod's cumulative bytes (rx, tx) in its node's latest sample.
    pub fn pod_bytes_from_collector(&self, pod: &PodPlan) -> Result<Option<(u64, u64, i64)>> {
        let nodes = self.link.nodes()?;
        let Some(node) = nodes.iter().find(|n| n.node_name == pod.node) else { return Ok(None) };
        let Some(identity) = node.pods.iter().find(|p| p.uid == pod.uid) else { return Ok(None) };
        let Some(latest) = &node.latest else { return Ok(None) };
        Ok(latest
            .pods
            .iter()
            .find(|p| p.pod_ref == identity.pod_ref)
            .and_then(|p| p.network)
            .map(|n| (n.rx_bytes, n.tx_bytes, latest.timestamp_ms)))
    }

    /// Stops the agents and the collector, reads what the collector stored, takes the cluster down.
    pub fn finish(mut self, mut report: Report) -> Result<Report> {
        let started = Instant::now();
        self.progress("stopping the agents and the collector");
        let agents_clean = self.cluster.stop_agents();
        self.link.disconnect();
        let collector_clean = self.cluster.stop_collector();
        self.progress(&format!(
            "agents {}, collector {}",
            if agents_clean { "stopped" } else { "killed after 10 s" },
            if collector_clean { "stopped" } else { "killed after 15 s" }
        ));
        if let (Some(stats), Some(export)) = (self.cluster.stop_otlp_relay(), &self.options.cluster.otlp) {
            self.progress(&otlp::describe(export, &stats));
        }
        report.stored = inspect(&self.cluster.binaries.collector, &self.cluster.data_dir())?;
        self.progress("removing namespaces, cgroups and processes");
        let problems = self.cluster.teardown();
        report.timings.teardown_seconds = started.elapsed().as_secs_f64();
        if !problems.is_empty() {
            return Err(Error::Cleanup { problems });
        }
        Ok(report)
    }
}

/// The progress lines of `--no-tui` during the load, from the collector's live view (`Live`):
/// each serving node's share of the workload's traffic, and each verdict once, when raised.
#[derive(Debug, Default)]
struct LiveLines {
    raised: BTreeSet<(String, String)>,
}

impl LiveLines {
    /// A line for people, or `None` before the collector's first evaluation.
    fn line(&mut self, live: &LiveResponse, elapsed: Duration) -> Option<String> {
        if live.evaluated_ms == 0 {
            return None;
        }
        let shares: Vec<String> = live
            .shares
            .iter()
            .filter(|share| share.expected > 0.0)
            .map(|share| {
                let observed = share.observed.map_or("-".into(), |s| format!("{:.0}%", s * 100.0));
                format!("{} {observed}", share.node_name)
            })
            .collect();
        let mut line = format!("{:>3.0} s: pod traffic {}", elapsed.as_secs_f64(), shares.join(", "));
        for verdict in &live.verdicts {
            if self.raised.insert((verdict.node_name.clone(), verdict.cause.clone())) {
                line.push_str(&format!(
                    "\n           verdict raised: {} - {}: {}",
                    verdict.node_name, verdict.cause, verdict.summary
                ));
            }
        }
        Some(line)
    }
}

/// `bakery-collector inspect --json --verify` on a stopped collector's store.
pub fn inspect(collector: &std::path::Path, data_dir: &std::path::Path) -> Result<Vec<StoredNode>> {
    let data = data_dir.display().to_string();
    let output = bakery_lab::command::run(
        &collector.display().to_string(),
        &["inspect", "--data-dir", &data, "--json", "--verify"],
        None,
    )?;
    let value: serde_json::Value = serde_json::from_str(&output)
        .map_err(|source| Error::Json { what: "bakery-collector inspect --json".into(), source })?;
    let nodes = value["nodes"].as_array().cloned().unwrap_or_default();
    Ok(nodes
        .iter()
        .map(|n| StoredNode {
            node: n["node"].as_str().unwrap_or_default().to_string(),
            samples: n["samples"].as_u64().unwrap_or_default(),
            gaps: n["gaps"].as_array().map_or(0, Vec::len),
            unaccounted: n["unaccounted"].as_array().map_or(0, Vec::len),
        })
        .collect())
}

/// Runs the whole demo: start, load, finish.
pub fn run(scenario: Scenario, binaries: Binaries, options: Options) -> Result<Report> {
    let mut demo = Demo::start(scenario, binaries, options)?;
    let outcome = demo.run_load()?;
    demo.finish(outcome.report)
}

#[cfg(test)]
mod tests {
    use bakery_proto::v1::{NodeShare, Verdict};

    use super::*;

    fn share(node: &str, observed: Option<f64>, expected: f64) -> NodeShare {
        NodeShare { node_name: node.into(), observed, expected, role: String::new() }
    }

    #[test]
    fn live_lines_show_the_serving_nodes_and_each_verdict_once() {
        let mut lines = LiveLines::default();
        let mut live = LiveResponse {
            workload: "Deployment/wordpress/wordpress".into(),
            shares: vec![
                share("master-01", None, 0.0),
                share("master-02", Some(0.34), 1.0 / 3.0),
                share("worker-01", None, 1.0 / 3.0),
            ],
            verdicts: Vec::new(),
            evaluated_ms: 0,
            notes: Vec::new(),
        };
        assert_eq!(lines.line(&live, Duration::from_secs(2)), None, "nothing before the first evaluation");
        live.evaluated_ms = 1_000;
        assert_eq!(lines.line(&live, Duration::from_secs(4)).unwrap(), "  4 s: pod traffic master-02 34%, worker-01 -");
        live.verdicts.push(Verdict {
            node_name: "master-02".into(),
            cause: "ingress-concentration".into(),
            summary: "master-02 forwards 1.9x".into(),
            ..Verdict::default()
        });
        let raised = lines.line(&live, Duration::from_secs(6)).unwrap();
        assert!(
            raised.ends_with("\n           verdict raised: master-02 - ingress-concentration: master-02 forwards 1.9x"),
            "{raised}"
        );
        assert!(!lines.line(&live, Duration::from_secs(8)).unwrap().contains("verdict raised"), "only once");
    }
}
