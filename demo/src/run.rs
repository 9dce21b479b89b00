//! One demo run, step by step: build the cluster and start bakery ([`Demo::start`]), open a
//! load-test window and run oha through it ([`Demo::run_load`]), then stop bakery, read what the
//! collector stored and take everything down ([`Demo::finish`]). The CLI runs the three in a row;
//! the acceptance tests look at the cluster between them.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bakery_diagnosis::{Config, Detector, NodeSample, Signal, Window, WindowReport};
use bakery_proto::v1::PodIdentity;

use crate::cluster::{Binaries, Cluster, ClusterOptions};
use crate::control::ControlLink;
use crate::diagnose::{self, ReportedVerdict};
use crate::plan::{Plan, PodPlan};
use crate::report::{AnalysedBy, PodCount, Report, StoredNode, Timings, WindowTimes};
use crate::scenario::{App, Scenario};
use crate::stand_ins::{WebStats, read_stats};
use crate::{Error, Result, interrupt, oha};

/// The agents' interval while a window is open (issue 4).
pub const WINDOW_INTERVAL: Duration = Duration::from_millis(250);
/// The agents' interval otherwise.
pub const IDLE_INTERVAL: Duration = Duration::from_secs(1);
/// Samples before the window that warm the detector up.
const WARM_UP_MS: i64 = 5_000;
/// A verdict must hold this long inside the window to be the diagnosis.
const MIN_ACTIVE_MS: i64 = 3_000;

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
    pub cluster: ClusterOptions,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            duration: None,
            progress: true,
            tui: false,
            window_report_file: None,
            cluster: ClusterOptions::default(),
        }
    }
}

/// Stops early when the user asked to.
fn check_interrupt() -> Result<()> {
    match interrupt::raised() {
        Some(why) => Err(Error::Io(format!("{why}: cleaning up"))),
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
    pub window_report: Option<WindowReport>,
}

impl Demo {
    /// Builds the cluster for `scenario` and starts bakery on it; returns once every agent has
    /// delivered a sample and the whole request path answers.
    pub fn start(mut scenario: Scenario, binaries: Binaries, options: Options) -> Result<Self> {
        let started = Instant::now();
        if let Some(duration) = options.duration {
            scenario.load.duration = duration;
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
        let link = ControlLink::new(
            &format!("{}/{}", crate::host::NETNS_DIR, cluster.plan.control.netns),
            &cluster.plan.collector_url(),
        )?;
        let mut demo =
            Self { link, cluster, options, started, timings: Timings::default(), pods_before_load: BTreeMap::new() };
        if demo.cluster.agents_running() {
            demo.progress("waiting for every agent's first sample");
            demo.wait_for_agents()?;
        }
        demo.probe()?;
        demo.timings.setup_seconds = started.elapsed().as_secs_f64();
        Ok(demo)
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
                return Err(Error::Io(format!(
                    "no sample from the agents of {missing:?} after 30 s (logs in {})",
                    self.cluster.run_dir.join("logs").display()
                )));
            }
            interrupt::wait(Duration::from_millis(100)).map_err(|why| Error::Io(why.into()))?;
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
            interrupt::wait(Duration::from_millis(250)).map_err(|why| Error::Io(why.into()))?;
        }
        Err(Error::Io(format!("{url} does not answer from the client namespace: {last}")))
    }

    fn web_stats(&self) -> BTreeMap<String, WebStats> {
        self.plan()
            .pods
            .iter()
            .filter(|p| p.app == App::Web)
            .map(|p| (p.name.clone(), read_stats(&self.cluster.stats_file(p)).unwrap_or_default()))
            .collect()
    }

    /// Opens a window, runs oha through the cluster, closes the window and diagnoses it.
    pub fn run_load(&mut self) -> Result<LoadOutcome> {
        let (oha_path, json_flag) = self.oha()?;
        let load = self.plan().scenario.load.clone();
        let url = self.cluster.target_url();
        let nodes = self.node_names();
        let agents = self.cluster.agents_running();

        // The pods write their counters every 200 ms: let the probe's request reach the files
        // before the counts the load is measured against are taken.
        interrupt::wait(Duration::from_millis(500)).map_err(|why| Error::Io(why.into()))?;
        self.pods_before_load = self.web_stats();
        let mut collector_window = None;
        if agents {
            collector_window = self.open_collector_window();
            if collector_window.is_none() {
                self.link.set_interval(&nodes, WINDOW_INTERVAL, "bakery-demo load-test window open")?;
            }
        }
        let window_start = now_ms();
        let load_started = Instant::now();
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
        let mut live = (agents && top.is_none()).then(|| LiveView::new(self.plan()));
        let mut next_report = Instant::now() + Duration::from_secs(2);
        let result = self.run_oha(&oha_path, json_flag, &load, &url, || {
            if let Some(live) = live.as_mut()
                && Instant::now() >= next_report
            {
                next_report += Duration::from_secs(2);
                if let Some(line) = live.update(&self.link, window_start, load_started.elapsed()) {
                    self.progress(&line);
                }
            }
        });
        let window_end = now_ms();
        self.timings.load_seconds = load_started.elapsed().as_secs_f64();
        let summary = match result {
            Ok(summary) => Some(summary),
            Err(error) => {
                if let Some(mut top) = top.take() {
                    top.stop(Duration::from_secs(2));
                }
                return Err(error);
            }
        };
        let analysis_started = Instant::now();
        let pods_after = self.web_stats();
        let (window_report, analysed_by, cross_check) = if agents {
            // Wait for every node's first sample after the window, then close it.
            self.wait_for_samples_after(window_end)?;
            let local = self.diagnose(window_start, window_end);
            match collector_window {
                Some(_) => {
                    let report = self.close_collector_window()?;
                    let cross_check = local.ok().map(|l| diagnose::window_verdicts(&l, MIN_ACTIVE_MS));
                    (Some(report), AnalysedBy::Collector, cross_check)
                }
                None => {
                    self.link.set_interval(&nodes, IDLE_INTERVAL, "bakery-demo load-test window closed")?;
                    (Some(local?), AnalysedBy::DemoFromCollectorData, None)
                }
            }
        } else {
            (None, AnalysedBy::DemoFromCollectorData, None)
        };
        if let (Some(path), Some(window_report)) = (&self.options.window_report_file, &window_report) {
            let json = window_report.to_json().map_err(|e| Error::Io(e.to_string()))?;
            std::fs::write(path, json).map_err(|e| Error::Io(format!("writing {}: {e}", path.display())))?;
            std::fs::write(path.with_extension("svg"), window_report.to_svg())
                .map_err(|e| Error::Io(format!("writing the chart: {e}")))?;
        }
        let mut report = self.report(window_start, window_end, window_report.as_ref(), summary, &pods_after);
        report.analysed_by = analysed_by;
        report.cross_check = cross_check;
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

    /// Opens the window on the collector when it runs the diagnosis and knows the cluster from
    /// the Kubernetes API (the pods' workloads and endpoints); `None` otherwise, and the demo
    /// diagnoses from the collector's samples itself.
    fn open_collector_window(&self) -> Option<String> {
        let uids: Vec<&str> = self.plan().pods.iter().map(|p| p.uid.as_str()).collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.link.pods() {
                Ok(pods) if pods.kubernetes => {
                    let known =
                        uids.iter().all(|uid| pods.pods.iter().any(|p| p.uid == *uid && !p.workload_name.is_empty()));
                    if known {
                        break;
                    }
                }
                // No diagnosis in this collector build, or no cluster behind it.
                Ok(_) | Err(_) if Instant::now() >= deadline => return None,
                Err(e) if e.to_string().contains("nimplemented") => return None,
                _ => {}
            }
            if Instant::now() >= deadline || interrupt::wait(Duration::from_millis(200)).is_err() {
                return None;
            }
        }
        let served = self.plan().scenario.served();
        let name = format!("bakery-demo-{}", self.plan().scenario.name);
        match self.link.start_window(&name, &format!("{}/{}", served.namespace, served.name)) {
            Ok(window) => {
                self.progress(&format!("the collector opened window {}", window.id));
                Some(window.id)
            }
            Err(e) => {
                self.progress(&format!(
                    "the collector did not open a window ({e}); the demo diagnoses from its samples"
                ));
                None
            }
        }
    }

    /// Closes the collector's window and reads its report.
    fn close_collector_window(&self) -> Result<WindowReport> {
        let window = self.link.stop_window()?;
        let response = self.link.report(&window.id)?;
        WindowReport::from_json(&response.json)
            .map_err(|e| Error::Io(format!("the collector's report {}: {e}", window.id)))
    }

    /// Runs oha once in the client station and returns its summary; `tick` runs every 200 ms
    /// meanwhile. Bounded: oha stops itself after the load's duration, and is killed 20 s later.
    pub fn run_oha(
        &self,
        oha_path: &std::path::Path,
        json_flag: oha::JsonFlag,
        load: &crate::scenario::LoadSpec,
        url: &str,
        mut tick: impl FnMut(),
    ) -> Result<oha::Summary> {
        let mut command = vec![oha_path.display().to_string()];
        command.extend(oha::args(load, url, json_flag));
        let mut oha_proc = self.cluster.spawn_in_client("oha", command)?;
        let deadline = Instant::now() + load.duration + Duration::from_secs(20);
        while oha_proc.running() {
            if let Err(why) = interrupt::wait(Duration::from_millis(200)) {
                oha_proc.stop(Duration::from_secs(1));
                return Err(Error::Io(format!("{why}: cleaning up")));
            }
            if Instant::now() >= deadline {
                oha_proc.stop(Duration::from_secs(1));
                return Err(Error::Io("oha did not finish in time".into()));
            }
            tick();
        }
        oha_proc.wait_exit(Duration::from_secs(5));
        let output = oha_proc.lines().join("\n");
        oha::Summary::parse(&output).map_err(|e| oha_proc.with_log(e))
    }

    /// oha's path and how it prints JSON.
    pub fn oha(&self) -> Result<(std::path::PathBuf, oha::JsonFlag)> {
        let oha_path = self
            .cluster
            .binaries
            .oha
            .clone()
            .ok_or_else(|| Error::Io("oha is not installed (cargo install oha --locked)".into()))?;
        let help = std::process::Command::new(&oha_path)
            .arg("--help")
            .output()
            .map_err(|e| Error::Io(format!("running oha: {e}")))?;
        Ok((oha_path, oha::JsonFlag::from_help(&String::from_utf8_lossy(&help.stdout))))
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
            interrupt::wait(Duration::from_millis(100)).map_err(|why| Error::Io(why.into()))?;
        }
    }

    /// Every node's samples since `since_ms`, converted for the diagnosis, in time order.
    fn samples_since(&self, since_ms: i64) -> Result<BTreeMap<String, Vec<NodeSample>>> {
        fetch_samples(&self.link, self.plan(), since_ms)
    }

    fn diagnose(&self, window_start: i64, window_end: i64) -> Result<WindowReport> {
        let samples = self.samples_since(window_start - WARM_UP_MS - 2_000)?;
        let workload = diagnose::workload_under_test(self.plan());
        let ticks = diagnose::ticks(
            &samples,
            &workload,
            window_start - WARM_UP_MS,
            window_end,
            WINDOW_INTERVAL.as_millis() as i64,
        );
        let window = Window {
            name: format!("bakery-demo {}", self.plan().scenario.name),
            start_ms: window_start,
            end_ms: window_end,
            automatic: false,
            workload: Some(workload.workload.clone()),
        };
        WindowReport::build(window, &ticks, &Config::default()).map_err(|e| Error::Io(format!("diagnosis: {e}")))
    }

    fn report(
        &self,
        window_start: i64,
        window_end: i64,
        window_report: Option<&WindowReport>,
        oha: Option<oha::Summary>,
        pods_after: &BTreeMap<String, WebStats>,
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
        let verdicts: Vec<ReportedVerdict> =
            window_report.map(|r| diagnose::window_verdicts(r, MIN_ACTIVE_MS)).unwrap_or_default();
        let shares = match window_report {
            Some(r) => diagnose::node_shares(plan, r, &counts),
            None => Vec::new(),
        };
        let matched = window_report.is_some() && diagnose::matches(&expected, &verdicts);
        Report {
            scenario: plan.scenario.name.clone(),
            description: plan.scenario.description.clone(),
            target: self.cluster.target_url(),
            analysed_by: AnalysedBy::DemoFromCollectorData,
            cross_check: None,
            window: WindowTimes { start_ms: window_start, end_ms: window_end },
            verdicts,
            expected,
            matched,
            shares,
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
        report.stored = inspect(&self.cluster.binaries.collector, &self.cluster.data_dir())?;
        self.progress("removing namespaces, cgroups and processes");
        let problems = self.cluster.teardown();
        report.timings.teardown_seconds = started.elapsed().as_secs_f64();
        if !problems.is_empty() {
            return Err(Error::Io(format!("cleanup incomplete: {}", problems.join("; "))));
        }
        Ok(report)
    }
}

/// Every node's samples since `since_ms` from the collector's history, converted for the diagnosis.
pub fn fetch_samples(link: &ControlLink, plan: &Plan, since_ms: i64) -> Result<BTreeMap<String, Vec<NodeSample>>> {
    let mut all = BTreeMap::new();
    for node in &plan.nodes {
        let history = match link.history(&node.name, since_ms) {
            Ok(history) => history,
            Err(_) => continue,
        };
        let identities: HashMap<u32, PodIdentity> = history.pods.iter().map(|p| (p.pod_ref, p.clone())).collect();
        let mut samples: Vec<NodeSample> = history
            .batches
            .iter()
            .flat_map(|b| b.samples.iter())
            .map(|s| diagnose::node_sample(plan, &node.name, s, &identities))
            .collect();
        samples.sort_by_key(|s| s.timestamp_ms);
        samples.dedup_by_key(|s| s.timestamp_ms);
        all.insert(node.name.clone(), samples);
    }
    Ok(all)
}

/// Live shares and verdicts during the load, for the progress lines of `--no-tui`.
#[derive(Debug)]
struct LiveView {
    plan: Plan,
    detector: Detector,
    last_tick_ms: Option<i64>,
    raised: std::collections::BTreeSet<(String, bakery_diagnosis::Cause)>,
}

impl LiveView {
    fn new(plan: &Plan) -> Self {
        Self {
            plan: plan.clone(),
            detector: Detector::new(Config::default()).expect("the default diagnosis configuration is valid"),
            last_tick_ms: None,
            raised: Default::default(),
        }
    }

    /// Feeds the samples since the last update; returns a line for people.
    fn update(&mut self, link: &ControlLink, window_start: i64, elapsed: Duration) -> Option<String> {
        let from = self.last_tick_ms.map_or(window_start - WARM_UP_MS, |t| t + WINDOW_INTERVAL.as_millis() as i64);
        let samples = fetch_samples(link, &self.plan, from - 12_000).ok()?;
        let workload = diagnose::workload_under_test(&self.plan);
        let newest = samples.values().filter_map(|s| s.last()).map(|s| s.timestamp_ms).min()?;
        let ticks = diagnose::ticks(&samples, &workload, from, newest, WINDOW_INTERVAL.as_millis() as i64);
        let mut evaluation = None;
        for tick in &ticks {
            evaluation = self.detector.observe(tick).ok().or(evaluation);
            self.last_tick_ms = Some(tick.timestamp_ms);
        }
        let evaluation = evaluation?;
        let shares: Vec<String> = evaluation
            .live
            .nodes
            .iter()
            .filter(|n| n.is_serving())
            .map(|n| {
                format!(
                    "{} {}",
                    n.node,
                    n.share(Signal::PodTraffic).map_or("-".into(), |s| format!("{:.0}%", s * 100.0))
                )
            })
            .collect();
        let nic_total: f64 = evaluation.live.nodes.iter().filter_map(|n| n.value(Signal::Nic)).sum();
        let busiest_nic = evaluation
            .live
            .nodes
            .iter()
            .filter_map(|n| Some((n.node.clone(), n.value(Signal::Nic)?)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .filter(|_| nic_total > 0.0)
            .map(|(node, nic)| format!("; busiest NIC {node} {:.0}%", 100.0 * nic / nic_total))
            .unwrap_or_default();
        let mut line = format!("{:>3.0} s: pod traffic {}{busiest_nic}", elapsed.as_secs_f64(), shares.join(", "));
        for verdict in &evaluation.verdicts {
            if self.raised.insert((verdict.node.clone(), verdict.cause)) {
                line.push_str(&format!(
                    "\n           verdict raised: {} - {}: {}",
                    verdict.node, verdict.cause, verdict.summary
                ));
            }
        }
        Some(line)
    }
}

/// Wall clock, Unix epoch milliseconds (the agents stamp samples with it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}

/// `bakery-collector inspect --json --verify` on a stopped collector's store.
pub fn inspect(collector: &std::path::Path, data_dir: &std::path::Path) -> Result<Vec<StoredNode>> {
    let data = data_dir.display().to_string();
    let output = crate::host::run(
        &collector.display().to_string(),
        &["inspect", "--data-dir", &data, "--json", "--verify"],
        None,
    )?;
    let value: serde_json::Value =
        serde_json::from_str(&output).map_err(|e| Error::Io(format!("inspect --json: {e}")))?;
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
