//! The mini-bakery, end to end (root): every shipped scenario built as a cluster of namespaces
//! (five nodes in most, two or three in the small ones), loaded with real oha through real nginx
//! and kube-proxy-style iptables, and diagnosed by bakery.
//!
//! Each scenario test checks, in one run of at most a minute:
//! - the collector chose the Service's web workload for the window on its own, and the verdicts are
//!   exactly the scenario's (nodes and causes, or no hog); the per-node shares show why;
//! - per-pod bytes as bakery reports them (agent -> collector) agree within 2 % with the kernel's
//!   own count at the other end of the pod's cable (the host-side veth, read here with `ip -s`);
//! - the collector stored every sample (`inspect --verify`: no gap, nothing unaccounted);
//! - afterwards nothing of the demo remains (namespaces, cgroups, run directories), and nothing
//!   was ever configured in the root network namespace (addresses, routes, iptables).
//!
//! The in-cluster proxy test also runs `bakery-top loadtest -- oha ...` from the client's namespace
//! without naming a workload, as a user would, and reads the report it prints.
//!
//! One more runs l2-ingress with `--otlp-endpoint` pointing at a real OTLP receiver (rotel) on
//! this machine's loopback: the verdict arrives there as `bakery.hog.active`, for the node and
//! cause the demo names, beside the node's own resource.
//!
//! The mid-run scenarios (a burner, a hot board, an L2 failover, each 6 s into the load) run for
//! their own load and check, besides, that nothing was flagged before the onset and that the first
//! live verdict naming the hog came within the scenario's bound of it (3 s); each prints the
//! seconds it measured.
//!
//! A last test SIGKILLs a running demo: its processes must die with it, and the next run must
//! remove what it left and still work.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bakery_demo::cluster::{ClusterOptions, leftovers};
use bakery_demo::diagnose::{NodeShare, ReportedVerdict, VerdictKey};
use bakery_demo::oha::ok_responses;
use bakery_demo::otlp::{self, Export};
use bakery_demo::report::Report;
use bakery_demo::run::{Demo, Options};
use bakery_demo::scenario::Scenario;
use bakery_diagnosis::Cause;
use bakery_diagnosis::svg::read;
use bakery_lab::rotel::{ReceivedPoint, ReceivedResource, Rotel};
use bakery_lab::{pause, require_root, wait_for, wait_until};

use crate::one_cluster::{ONE_CLUSTER, binaries};

/// Load duration per scenario test: long enough for the diagnosis to settle (it flags after
/// ~3 s), short enough for a scenario to stay well within a minute.
const LOAD: Duration = Duration::from_secs(12);

/// What the root network namespace looks like: addresses, routes and iptables rules.
fn root_namespace_state() -> String {
    let run = |program: &str, args: &[&str]| {
        let output = Command::new(program).args(args).output().unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let rules = run("iptables-save", &[]);
    // Counters change with unrelated traffic; the rules themselves must not.
    let rules: Vec<&str> = rules.lines().filter(|l| !l.starts_with('#') && !l.starts_with(':')).collect();
    format!("{}\n{}\n{}", run("ip", &["-4", "-o", "addr"]), run("ip", &["-4", "route"]), rules.join("\n"))
}

fn share<'a>(report: &'a Report, node: &str) -> &'a NodeShare {
    report.shares.iter().find(|s| s.node == node).unwrap_or_else(|| panic!("no share for {node}: {report:#?}"))
}

/// The verdicts of a report as (node, cause), sorted.
fn verdict_keys(report: &Report) -> Vec<(String, Cause)> {
    let mut keys: Vec<(String, Cause)> = report.verdicts.iter().map(|v| (v.node.clone(), v.cause)).collect();
    keys.sort();
    keys
}

/// The verdict about `node` for `cause`.
fn verdict<'a>(report: &'a Report, node: &str, cause: Cause) -> &'a ReportedVerdict {
    report
        .verdicts
        .iter()
        .find(|v| v.node == node && v.cause == cause)
        .unwrap_or_else(|| panic!("no {node} {cause} verdict: {report:#?}"))
}

/// Runs a shipped scenario that expects one hog: the only verdict names `node` and `cause`, with
/// `evidence` in its summary.
fn run_expecting_hog(name: &str, node: &str, cause: Cause, evidence: &str) -> Report {
    let report = run_scenario(name);
    assert!(report.matched, "{report:#?}");
    assert_eq!(verdict_keys(&report), [(node.to_string(), cause)], "{report:#?}");
    let verdict = verdict(&report, node, cause);
    assert!(verdict.summary.contains(evidence), "{}", verdict.summary);
    report
}

/// The share of the requests each node's web pods answered, by the pods' own counts.
fn request_share(report: &Report, node: &str) -> f64 {
    let total: u64 = report.shares.iter().map(|s| s.requests).sum();
    share(report, node).requests as f64 / total.max(1) as f64
}

/// The WordPress pods (one each on master-02, worker-01 and worker-02) carry a third of the
/// traffic each: whatever the verdict, it is not about the pods' share.
fn assert_web_pods_share_evenly(report: &Report) {
    for node in ["master-02", "worker-01", "worker-02"] {
        let pods = share(report, node).pod_traffic_share.unwrap();
        assert!((pods - 1.0 / 3.0).abs() < 0.1, "{node} pods carry {pods}");
    }
}

/// Bakery's per-pod byte counts against the host-side veth's, once every node has sampled after
/// the load stopped (the counters are then still).
fn assert_pod_bytes_agree(demo: &Demo) {
    // The agents stamp their samples with the wall clock.
    let settle = bakery_signals::time::now_ms() + 1_500;
    let deadline = Instant::now() + Duration::from_secs(10);
    for pod in &demo.plan().pods {
        let left = deadline.saturating_duration_since(Instant::now());
        let (agent_rx, agent_tx) = wait_for(&format!("a sample of {} after the load", pod.name), left, || {
            match demo.pod_bytes_from_collector(pod).unwrap() {
                Some((rx, tx, sampled_ms)) if sampled_ms >= settle => Some((rx, tx)),
                _ => None,
            }
        })
        .unwrap();
        let (veth_rx, veth_tx) = demo.cluster.host_veth_bytes(pod).unwrap();
        // What the pod sends, its node's end of the cable receives, and the other way round.
        for (what, bakery, kernel) in [("received", agent_rx, veth_tx), ("sent", agent_tx, veth_rx)] {
            let difference = bakery.abs_diff(kernel) as f64 / kernel.max(1) as f64;
            eprintln!(
                "{}: {what} {bakery} bytes per bakery, {kernel} per the veth ({:.3} %)",
                pod.name,
                100.0 * difference
            );
            assert!(difference <= 0.02, "{} {what}: bakery {bakery} vs veth {kernel} bytes", pod.name);
        }
    }
}

/// Runs a shipped scenario end to end and returns its report after the cleanup checks.
fn run_scenario(name: &str) -> Report {
    run_scenario_with(name, ClusterOptions::default(), |_| {})
}

/// [`run_scenario`] with `cluster` options; `after_load` looks at the running demo once the load
/// is over.
fn run_scenario_with(name: &str, cluster: ClusterOptions, after_load: impl FnOnce(&Demo)) -> Report {
    run_scenario_with_options(name, Options { cluster, ..Options::default() }, after_load)
}

/// [`run_scenario`] writing the window report as `bakery-demo --report FILE` does; returns the
/// report and the chart the collector served, FILE with .svg.
fn run_scenario_writing_its_chart(name: &str) -> (Report, String) {
    let directory = tempfile::tempdir().unwrap();
    let file = directory.path().join(format!("{name}.json"));
    let options = Options { window_report_file: Some(file.clone()), ..Options::default() };
    let report = run_scenario_with_options(name, options, |_| {});
    (report, std::fs::read_to_string(file.with_extension("svg")).unwrap())
}

/// [`run_scenario`] with `options` (the load lasts [`LOAD`] unless they say).
fn run_scenario_with_options(name: &str, options: Options, after_load: impl FnOnce(&Demo)) -> Report {
    let _one = ONE_CLUSTER.lock().unwrap_or_else(|p| p.into_inner());
    let binaries = binaries();
    let before = root_namespace_state();
    let started = Instant::now();
    let scenario = Scenario::shipped(name).unwrap();
    let nodes = scenario.nodes.len();
    let options = Options { duration: Some(options.duration.unwrap_or(LOAD)), ..options };
    let mut demo = Demo::start(scenario, binaries, options).unwrap();
    let outcome = demo.run_load().unwrap();
    assert_pod_bytes_agree(&demo);
    after_load(&demo);
    let report = demo.finish(outcome.report).unwrap();
    eprintln!("{}", bakery_demo::report::render(&report));
    assert!(started.elapsed() < Duration::from_secs(60), "{name} took {:?}", started.elapsed());

    assert_eq!(report.stored.len(), nodes, "every node's samples are stored: {:?}", report.stored);
    for node in &report.stored {
        assert!(node.samples >= 10, "{node:?}");
        assert_eq!((node.gaps, node.unaccounted), (0, 0), "no sample lost: {node:?}");
    }
    let oha = &report.oha;
    assert!(ok_responses(oha) as f64 >= 0.95 * oha.requests as f64, "the pods answered: {oha:?}");
    assert!(leftovers().is_empty(), "left behind: {:?}", leftovers());
    assert_eq!(root_namespace_state(), before, "nothing is configured in the root network namespace");
    // The window was opened without a workload: the collector chose one, and it is the workload
    // the Service's traffic is for.
    assert_eq!(report.workload.chosen_by, "collector");
    assert_eq!(report.workload.chosen.as_deref(), Some(report.workload.expected.as_str()), "{:#?}", report.workload);
    report
}

/// The chart the collector served shows why `announcer` is an ingress hog, read from the SVG alone
/// (coordinates and axis labels): while its verdict is active, its NIC-share line lies above its
/// expected share, and the line of each of `peers` (nodes with a web pod) near or below its own.
fn assert_chart_shows_the_announcer_s_nic_share(svg: &str, announcer: &str, peers: &[&str]) {
    let chart = read::read(svg).unwrap_or_else(|e| panic!("{e}:\n{svg}"));
    let nic = chart.panel("nic-share").unwrap_or_else(|| panic!("no NIC-share panel in:\n{svg}"));
    let span =
        chart.verdict(announcer, "ingress-concentration").unwrap_or_else(|| panic!("no active span: {chart:#?}"));
    let gap = |node: &str| nic.gap(node, span.from_s, span.to_s).unwrap_or_else(|| panic!("no {node} lines: {nic:#?}"));
    let entry = gap(announcer);
    eprintln!("{announcer} NIC share against its expected share over {span:?}: {entry:?}");
    // The collector ticks every 250 ms while the window is open: a verdict active for most of the
    // load spans dozens of ticks.
    assert!(entry.points >= 8, "{span:?}: {entry:?}");
    assert!(entry.above * 10 >= entry.points * 9 && entry.mean > 0.15, "{announcer} lies above: {entry:?}");
    for peer in peers {
        let theirs = gap(peer);
        assert!(theirs.mean < 0.05, "{peer} lies near or below its expected share: {theirs:?}");
    }
}

/// Runs a shipped scenario whose hog comes on mid-run, for the scenario's own load (its onset and
/// the time to hold the verdict fit in it, not in [`LOAD`]): the only verdict names `node` and
/// `cause`, nothing was raised before the onset, and the first live verdict naming the hog came
/// within the scenario's bound of it. The pods share the requests throughout.
fn run_mid_run(name: &str, node: &str, cause: Cause) -> Report {
    let scenario = Scenario::shipped(name).unwrap();
    let start_s = scenario.onset_s().expect("a mid-run scenario");
    let options = Options { duration: Some(scenario.load.duration), ..Options::default() };
    let report = run_scenario_with_options(name, options, |_| {});
    let time = &report.time_to_verdict;
    let onset = time.onset.as_ref().unwrap_or_else(|| panic!("the hog came on: {report:#?}"));
    let first = time.first.as_ref().unwrap_or_else(|| panic!("a verdict was raised: {report:#?}"));
    eprintln!(
        "{name}: onset {:.2} s into the load (switched on in {:.3} s); {} raised {:.2} s after it (bound {} s)",
        onset.into_load_seconds, onset.took_seconds, first.verdict, first.seconds, time.within_seconds
    );
    assert_eq!(time.flagged_before_onset, [], "no flag before the onset: {report:#?}");
    assert!(!first.raised_before, "{first:?}");
    assert_eq!(first.verdict, VerdictKey { node: node.into(), cause });
    assert!(first.seconds <= time.within_seconds, "{:.2} s over the bound: {report:#?}", first.seconds);
    assert!((onset.into_load_seconds - start_s).abs() < 0.5, "on time: {onset:?}");
    assert!(report.matched, "{report:#?}");
    assert_eq!(verdict_keys(&report), [(node.to_string(), cause)], "{report:#?}");
    assert_web_pods_share_evenly(&report);
    report
}

#[test]
fn root_demo_l2_failover_midrun_names_the_new_announcer_from_the_failover() {
    require_root("root_demo_l2_failover_midrun_names_the_new_announcer_from_the_failover");
    let report = run_mid_run("l2-failover-midrun", "master-02", Cause::IngressConcentration);
    // The collector read the failover from MetalLB's status, not only from the bytes.
    let verdict = verdict(&report, "master-02", Cause::IngressConcentration);
    assert!(verdict.read.iter().any(|r| r.contains("announcer master-02")), "{verdict:#?}");
    // Every connection entered at worker-02 before the failover, at master-02 after it.
    for node in ["master-02", "worker-02"] {
        assert!(share(&report, node).nic_share.unwrap() > 0.2, "{:#?}", report.shares);
    }
}

#[test]
fn root_demo_burner_midrun_names_the_node_from_the_burner_s_start() {
    require_root("root_demo_burner_midrun_names_the_node_from_the_burner_s_start");
    let report = run_mid_run("burner-midrun", "master-02", Cause::UnattributedCpu);
    assert!(verdict(&report, "master-02", Cause::UnattributedCpu).summary.contains("outside every pod"));
}

#[test]
fn root_demo_thermal_midrun_names_the_node_once_it_turns_hot() {
    require_root("root_demo_thermal_midrun_names_the_node_once_it_turns_hot");
    let report = run_mid_run("thermal-midrun", "worker-01", Cause::ThermalThrottling);
    assert!(verdict(&report, "worker-01", Cause::ThermalThrottling).summary.contains("84.0 C"));
}

#[test]
fn root_demo_l2_ingress_names_the_announcer_and_ingress_concentration() {
    require_root("root_demo_l2_ingress_names_the_announcer_and_ingress_concentration");
    let (report, svg) = run_scenario_writing_its_chart("l2-ingress");
    assert!(report.matched, "{report:#?}");
    assert_eq!(verdict_keys(&report), [("master-02".to_string(), Cause::IngressConcentration)]);
    // The fingerprint: the announcer's NIC carries the most, the pods are balanced.
    let announcer = share(&report, "master-02");
    assert!(report.shares.iter().all(|s| s.nic_share <= announcer.nic_share), "{:#?}", report.shares);
    assert!(announcer.nic_share.unwrap() > 0.5, "{announcer:?}");
    assert_web_pods_share_evenly(&report);
    // And the chart shows it.
    assert_chart_shows_the_announcer_s_nic_share(&svg, "master-02", &["worker-01", "worker-02"]);
}

#[test]
fn root_demo_local_policy_names_the_entry_nodes_pod() {
    require_root("root_demo_local_policy_names_the_entry_nodes_pod");
    let report = run_scenario("local-policy");
    assert!(report.matched, "{report:#?}");
    assert_eq!(verdict_keys(&report), [("master-02".to_string(), Cause::PodConcentration)]);
    assert!(share(&report, "master-02").pod_traffic_share.unwrap() > 0.95, "{:#?}", report.shares);
    assert_eq!(share(&report, "worker-01").requests + share(&report, "worker-02").requests, 0);
}

#[test]
fn root_demo_keepalive_pinning_follows_the_connections() {
    require_root("root_demo_keepalive_pinning_follows_the_connections");
    let report = run_scenario("keepalive-pinning");
    assert!(report.matched, "{report:#?}");
    let accepted: u64 = report.shares.iter().map(|s| s.accepted_connections).sum();
    assert_eq!(accepted, 4, "oha's 4 keep-alive connections, each balanced once: {:#?}", report.shares);
    match report.expected.verdicts.as_slice() {
        [pinned] => {
            assert_eq!(pinned.cause, Cause::ConnectionPinning);
            assert!(share(&report, &pinned.node).accepted_connections >= 3, "{:#?}", report.shares);
        }
        [] => assert!(report.shares.iter().all(|s| s.accepted_connections <= 2), "{:#?}", report.shares),
        more => panic!("one pinned node at most: {more:?}"),
    }
}

#[test]
fn root_demo_balanced_reports_no_hog() {
    require_root("root_demo_balanced_reports_no_hog");
    let report = run_scenario("balanced");
    assert!(report.matched, "{report:#?}");
    assert!(report.verdicts.is_empty());
    assert_web_pods_share_evenly(&report);
}

#[test]
fn root_demo_uneven_placement_is_not_a_hog() {
    require_root("root_demo_uneven_placement_is_not_a_hog");
    let report = run_scenario("uneven-placement");
    assert!(report.matched, "{report:#?}");
    assert!(report.verdicts.is_empty());
    let worker = share(&report, "worker-01");
    assert!((worker.expected_share - 2.0 / 3.0).abs() < 1e-9);
    assert!((worker.pod_traffic_share.unwrap() - 2.0 / 3.0).abs() < 0.1, "{worker:?}");
}

#[test]
fn root_demo_hot_node_is_named_for_its_thermals() {
    require_root("root_demo_hot_node_is_named_for_its_thermals");
    run_expecting_hog("hot-node", "worker-01", Cause::ThermalThrottling, "84.0 C");
}

#[test]
fn root_demo_nfs_neighbour_names_the_node_burning_cpu_outside_its_pods() {
    require_root("root_demo_nfs_neighbour_names_the_node_burning_cpu_outside_its_pods");
    let report = run_expecting_hog("nfs-neighbour", "master-02", Cause::UnattributedCpu, "outside every pod");
    // Not a traffic hog: the pods share the requests as in `balanced`.
    assert_web_pods_share_evenly(&report);
}

#[test]
fn root_demo_memory_squeeze_names_the_node_short_of_memory() {
    require_root("root_demo_memory_squeeze_names_the_node_short_of_memory");
    // 1024 MiB with 944 held outside the pods: about 7 % available, below the 10 % threshold.
    let report = run_expecting_hog("memory-squeeze", "worker-02", Cause::MemoryPressure, "of memory available");
    assert_web_pods_share_evenly(&report);
}

#[test]
fn root_demo_balanced_2_node_reports_no_hog() {
    require_root("root_demo_balanced_2_node_reports_no_hog");
    let report = run_scenario("balanced-2-node");
    assert!(report.matched, "{report:#?}");
    assert!(report.verdicts.is_empty(), "{report:#?}");
    // The one WordPress pod answered everything; worker-01, an entry without it, forwarded its
    // half of the connections there.
    let master = share(&report, "master-01");
    assert_eq!(master.expected_share, 1.0);
    assert_eq!(request_share(&report, "master-01"), 1.0, "{:#?}", report.shares);
    let worker = share(&report, "worker-01");
    assert!(worker.forwarded_bytes_per_second.unwrap() > 0.0, "{worker:?}");
}

#[test]
fn root_demo_balanced_3_node_reports_no_hog_on_the_database_node() {
    require_root("root_demo_balanced_3_node_reports_no_hog_on_the_database_node");
    let report = run_scenario("balanced-3-node");
    assert!(report.matched, "{report:#?}");
    assert!(report.verdicts.is_empty(), "{report:#?}");
    // The two WordPress pods split the requests, by their own counts; master-01 serves none.
    for node in ["worker-01", "worker-02"] {
        let requests = request_share(&report, node);
        assert!((requests - 0.5).abs() < 0.1, "{node} answered {requests} of the requests");
    }
    assert_eq!(share(&report, "master-01").requests, 0);
}

#[test]
fn root_demo_session_affinity_pins_one_pod_behind_the_announcer() {
    require_root("root_demo_session_affinity_pins_one_pod_behind_the_announcer");
    let report = run_scenario("session-affinity");
    // One WordPress pod answered every request of the load, by the pods' own counts: the one
    // kube-proxy picked for the proxy's address.
    let serving: Vec<&NodeShare> = report.shares.iter().filter(|s| s.requests > 0).collect();
    assert_eq!(serving.len(), 1, "{:#?}", report.shares);
    let pinned = serving[0].node.clone();
    let mut expected = vec![
        VerdictKey { node: "master-03".into(), cause: Cause::IngressConcentration },
        VerdictKey { node: pinned.clone(), cause: Cause::PodConcentration },
    ];
    expected.sort();
    assert_eq!(report.expected.verdicts, expected, "pinned resolves to the serving pod's node");
    assert!(report.matched, "{report:#?}");
    let concentration = verdict(&report, &pinned, Cause::PodConcentration);
    let named = |text: &str| text.contains("sessionAffinity: ClientIP");
    assert!(
        named(&concentration.summary) || concentration.evidence.iter().any(|e| named(e)),
        "the verdict names the Service's affinity: {concentration:#?}"
    );
}

/// Runs `bakery-top loadtest -- oha ...` in the client's namespace against the cluster, without
/// naming a workload; returns what it printed and the report JSON it wrote.
fn loadtest_without_a_workload(demo: &Demo) -> (String, serde_json::Value) {
    let binaries = &demo.cluster.binaries;
    let top = binaries.top.as_ref().expect("bakery-top is built").display().to_string();
    let oha = binaries.oha.as_ref().expect("oha is installed").display().to_string();
    let report_file = demo.cluster.run_dir.join("loadtest.json");
    let mut command = vec![top, "--collector".into(), demo.plan().collector_url(), "loadtest".into()];
    command.extend(["--name".into(), "e2e-in-cluster-proxy".into(), "--report".into()]);
    command.push(report_file.display().to_string());
    command.extend(["--".into(), oha]);
    command.extend(["-z", "8s", "-c", "20", "-q", "100"].map(String::from));
    command.push(demo.cluster.target_url());
    let mut loadtest = demo.cluster.spawn_in_client("bakery-top-loadtest", command).unwrap();
    let status = loadtest.wait_exit(Duration::from_secs(40)).expect("bakery-top loadtest ends within 40 s");
    loadtest.wait_for_output_end(Duration::from_secs(5)).unwrap();
    let printed = loadtest.lines().join("\n");
    eprintln!("bakery-top loadtest printed:\n{printed}");
    assert!(status.success(), "bakery-top loadtest failed ({status}):\n{printed}");
    let json = std::fs::read_to_string(&report_file).unwrap();
    (printed, serde_json::from_str(&json).unwrap())
}

#[test]
fn root_demo_in_cluster_proxy_is_about_wordpress_behind_the_proxy() {
    require_root("root_demo_in_cluster_proxy_is_about_wordpress_behind_the_proxy");
    let mut loadtest = None;
    let report = run_scenario_with("in-cluster-proxy", ClusterOptions::default(), |demo| {
        loadtest = Some(loadtest_without_a_workload(demo));
    });
    // The collector followed the Service to Nginx Proxy Manager and NPM to WordPress.
    assert_eq!(report.workload.chosen.as_deref(), Some("Deployment/wordpress/wordpress"), "{:#?}", report.workload);
    assert!(report.matched, "{report:#?}");
    assert_eq!(verdict_keys(&report), [("master-02".to_string(), Cause::IngressConcentration)]);
    // NPM relays each request on a new connection, so kube-proxy spreads them over the pods.
    assert_web_pods_share_evenly(&report);

    // A user's own load test, naming no workload, is about WordPress too.
    let (printed, json) = loadtest.unwrap();
    assert_eq!(
        json["window"]["workload"],
        serde_json::json!({ "kind": "Deployment", "namespace": "wordpress", "name": "wordpress" }),
        "{printed}"
    );
    assert!(printed.contains(", workload Deployment/wordpress/wordpress"), "{printed}");
}

/// The newest `bakery.hog.active` point rotel received for `node` and `cause` (their OTLP
/// spelling), with the resource it came in.
fn exported_verdict(
    received: &[ReceivedResource],
    node: &str,
    cause: &str,
) -> Option<(ReceivedResource, ReceivedPoint)> {
    received.iter().rev().find_map(|resource| {
        let point =
            resource.metric("bakery.hog.active")?.points.iter().rev().find(|p| {
                p.attribute("k8s.node.name") == Some(node) && p.attribute("bakery.hog.cause") == Some(cause)
            })?;
        Some((resource.clone(), point.clone()))
    })
}

#[test]
fn root_demo_l2_ingress_verdict_reaches_an_otlp_receiver() {
    require_root("root_demo_l2_ingress_verdict_reaches_an_otlp_receiver");
    let work = tempfile::tempdir().unwrap();
    let rotel = Rotel::start(work.path()).unwrap();
    // As a user gives it: a receiver on this machine's loopback, which the demo's isolated
    // collector reaches through the demo's relay.
    let export = Export::parse(&format!("http://127.0.0.1:{}", rotel.grpc), Some(otlp::Protocol::Grpc)).unwrap();
    let cluster = ClusterOptions { otlp: Some(export), ..ClusterOptions::default() };
    let (node, cause) = ("master-02", "ingress-concentration");
    let mut exported = None;
    let report = run_scenario_with("l2-ingress", cluster, |_demo| {
        // The collector exports every second while the verdict is in force; rotel prints what it
        // receives as it arrives.
        let what = format!("a {node} {cause} verdict to reach rotel after the load's end");
        let found = wait_for(&what, Duration::from_secs(20), || exported_verdict(&rotel.received(), node, cause));
        exported = Some(found.unwrap());
    });
    assert!(report.matched, "{report:#?}");
    assert_eq!(verdict_keys(&report), [(node.to_string(), Cause::IngressConcentration)]);

    let (resource, point) = exported.unwrap();
    assert_eq!(point.value, Some(1.0), "{point:?}");
    for (key, expected) in [("k8s.namespace.name", "wordpress"), ("bakery.workload.name", "wordpress")] {
        assert_eq!(point.attribute(key), Some(expected), "{key} on {point:?}");
    }
    let received = rotel.received();
    let hog = resource.metric("bakery.hog.active").unwrap();
    assert_eq!((hog.unit.as_str(), hog.data_type.as_str()), ("{verdict}", "Gauge"));
    // Verdicts are the collector's own series; the node they name has its own resource.
    for (key, expected) in [
        ("service.name", "bakery"),
        ("service.instance.id", "bakery-collector"),
        ("k8s.cluster.name", otlp::CLUSTER_NAME),
    ] {
        assert_eq!(
            resource.attribute(key),
            Some(expected),
            "{key} on the verdict's resource {:?}",
            resource.attributes
        );
    }
    // A node's first export can precede its first sample: look for one with its series.
    let node_resource = received
        .iter()
        .rev()
        .find(|r| r.attribute("k8s.node.name") == Some(node) && r.metric("system.cpu.time").is_some())
        .unwrap_or_else(|| panic!("no resource for {node} with its own series reached rotel"));
    for (key, expected) in [
        ("host.name", node),
        ("service.instance.id", node),
        ("service.name", "bakery"),
        ("k8s.cluster.name", otlp::CLUSTER_NAME),
    ] {
        assert_eq!(
            node_resource.attribute(key),
            Some(expected),
            "{key} on {node}'s resource {:?}",
            node_resource.attributes
        );
    }
}

/// Processes still running in any of the demo's namespaces.
fn processes_in_demo_namespaces() -> Vec<String> {
    let mut found = Vec::new();
    for netns in bakery_lab::cleanup::demo_netns() {
        for pid in bakery_lab::netns::pids(&netns).unwrap_or_default() {
            found.push(format!("{pid} in {netns}"));
        }
    }
    found
}

#[test]
fn root_demo_cleans_up_after_a_sigkilled_run() {
    require_root("root_demo_cleans_up_after_a_sigkilled_run");
    let _one = ONE_CLUSTER.lock().unwrap_or_else(|p| p.into_inner());
    let binaries = binaries();
    let mut killed = Command::new(&binaries.demo)
        .args(["--scenario", "balanced", "--no-tui", "--duration", "30s"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill it in the middle of the load, with everything running.
    let stderr = killed.stderr.take().unwrap();
    let lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let mut seen = Vec::new();
    for line in lines {
        let line = line.unwrap();
        seen.push(line.clone());
        if line.contains("window open") {
            break;
        }
        assert!(seen.len() < 200, "the demo never started its load: {seen:#?}");
    }
    // Two seconds into the load, with everything running.
    pause(Duration::from_secs(2));
    assert!(!processes_in_demo_namespaces().is_empty(), "the cluster runs before the kill");
    killed.kill().unwrap();
    killed.wait().unwrap();

    // Every node's keeper sees its stdin close and takes its PID namespace down with it.
    wait_until("the demo's processes to die with it", Duration::from_secs(15), || {
        processes_in_demo_namespaces().is_empty()
    })
    .unwrap_or_else(|e| panic!("{e}: still running {:?}", processes_in_demo_namespaces()));
    assert!(!leftovers().is_empty(), "a SIGKILLed run leaves its namespaces (the next run removes them)");

    // The next run removes them first and works.
    let scenario = Scenario::shipped("uneven-placement").unwrap();
    // This run is about the cleanup, not the diagnosis: no warm-up for it.
    let options = Options { duration: Some(Duration::from_secs(5)), warm_up: Duration::ZERO, ..Options::default() };
    let report = bakery_demo::run::run(scenario, binaries, options).unwrap();
    assert!(ok_responses(&report.oha) > 0, "{report:#?}");
    assert!(report.stored.iter().all(|n| n.gaps == 0 && n.samples > 0), "{:?}", report.stored);
    assert!(leftovers().is_empty(), "left behind: {:?}", leftovers());
    assert!(processes_in_demo_namespaces().is_empty());
}
