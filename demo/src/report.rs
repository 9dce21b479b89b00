//! The demo's final report: the workload the collector put under test, the verdicts (node and cause;
//! brief ones apart) and per-node shares from the report the collector stored for the load-test
//! window, whether they are what the scenario expected, how long the collector took to name the
//! hog from its onset, oha's summary, per-pod counts and what the collector stored. JSON (`--json`) through serde, text for people through [`render`].

use std::fmt::Write;

use bakery_top::oha::OhaSummary;
use serde::{Deserialize, Serialize};

use crate::diagnose::{MIN_ACTIVE_MS, NodeShare, ReportedVerdict, ResolvedExpectation, TimeToVerdict};
use crate::oha::ok_responses;

/// One pod, counted by itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodCount {
    pub pod: String,
    pub node: String,
    pub workload: String,
    /// Requests answered during the load.
    pub requests: u64,
    /// Connections accepted during the load.
    pub accepted_connections: u64,
}

/// What the collector stored, per node (`bakery-collector inspect --json --verify`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredNode {
    pub node: String,
    pub samples: u64,
    pub gaps: usize,
    /// Sequence numbers neither stored nor recorded as a gap (always 0 unless something is lost).
    pub unaccounted: usize,
}

/// The load-test window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowTimes {
    /// The collector's id of the window, whose stored report the verdicts come from.
    pub collector_window: String,
    /// When the load started and ended, by the demo's clock.
    pub start_ms: i64,
    pub end_ms: i64,
}

/// How long each phase took, seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub setup_seconds: f64,
    pub load_seconds: f64,
    pub analysis_seconds: f64,
    pub teardown_seconds: f64,
}

/// The workload the window was about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadUnderTest {
    /// As the collector's report names it (`Kind/namespace/name`); `None` when it put none under
    /// test.
    pub chosen: Option<String>,
    /// Who chose it: `collector` (inferred from the cluster and the traffic), or `named` when the
    /// run gave it (`--workload`).
    pub chosen_by: String,
    /// The Service's web workload, which the window should be about.
    pub expected: String,
}

/// Everything the demo reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub scenario: String,
    pub description: String,
    pub target: String,
    pub window: WindowTimes,
    pub workload: WorkloadUnderTest,
    /// Verdicts active for at least 3 s of the window, longest first: the diagnosis.
    pub verdicts: Vec<ReportedVerdict>,
    /// Verdicts active for less: shown, not counted.
    pub brief_verdicts: Vec<ReportedVerdict>,
    pub expected: ResolvedExpectation,
    /// Seconds from the hog's onset (the load's start for a hog on from the start) to the first
    /// expected verdict the collector raised, against the scenario's bound.
    pub time_to_verdict: TimeToVerdict,
    /// Whether the workload, the verdicts and the time to the first of them are what the scenario
    /// expected (the exit code says the same).
    pub matched: bool,
    /// Why not, one line each; empty on a match.
    pub differences: Vec<String>,
    /// What the collector could not read and assumed instead (its report's notes).
    pub collector_notes: Vec<String>,
    pub shares: Vec<NodeShare>,
    pub pods: Vec<PodCount>,
    pub oha: OhaSummary,
    /// Filled once the collector has stopped.
    pub stored: Vec<StoredNode>,
    pub timings: Timings,
}

fn percent(share: Option<f64>) -> String {
    share.map_or_else(|| "-".to_string(), |s| format!("{:.0} %", s * 100.0))
}

fn rate(bytes_per_second: Option<f64>) -> String {
    match bytes_per_second {
        None => "-".to_string(),
        Some(b) if b >= 1e6 => format!("{:.1} MB/s", b / 1e6),
        Some(b) => format!("{:.0} kB/s", b / 1e3),
    }
}

/// The report for people.
pub fn render(report: &Report) -> String {
    // One piece: the text report top to bottom, in the order a reader sees it.
    let mut out = String::new();
    let _ = writeln!(out, "scenario {}: {}", report.scenario, report.description);
    let oha = &report.oha;
    let _ = writeln!(
        out,
        "load: oha against {} for {:.0} s: {} requests, {:.1} req/s, p50 {}, p99 {}, {} answered 2xx",
        report.target,
        oha.total_seconds,
        oha.requests,
        oha.requests_per_second,
        oha.latency_p50_ms.map_or("-".into(), |m| format!("{m:.0} ms")),
        oha.latency_p99_ms.map_or("-".into(), |m| format!("{m:.0} ms")),
        if oha.requests == 0 {
            "none".to_string()
        } else {
            format!("{:.1} %", 100.0 * ok_responses(oha) as f64 / oha.requests as f64)
        },
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<11} {:<14} {:>8} {:>11} {:>6} {:>11} {:>11} {:>6} {:>9}",
        "node", "role", "expected", "pod traffic", "NIC", "NIC rate", "forwarded", "conns", "requests"
    );
    for share in &report.shares {
        let _ = writeln!(
            out,
            "{:<11} {:<14} {:>8} {:>11} {:>6} {:>11} {:>11} {:>6} {:>9}",
            share.node,
            share.role,
            percent(Some(share.expected_share)),
            percent(share.pod_traffic_share),
            percent(share.nic_share),
            rate(share.nic_bytes_per_second),
            rate(share.forwarded_bytes_per_second),
            share.connections.map_or("-".into(), |c| format!("{c:.1}")),
            share.requests,
        );
    }
    let _ = writeln!(out);
    let workload = &report.workload;
    let _ = writeln!(
        out,
        "workload under test: {} ({} by the {}{})",
        workload.chosen.as_deref().unwrap_or("none"),
        if workload.chosen_by == "named" { "named" } else { "chosen" },
        if workload.chosen_by == "named" { "run" } else { "collector" },
        if workload.chosen.as_deref() == Some(workload.expected.as_str()) {
            "; the Service's web workload".to_string()
        } else {
            format!("; expected {}", workload.expected)
        }
    );
    if report.verdicts.is_empty() {
        let _ = writeln!(out, "verdict: no node takes more than its share");
    }
    for verdict in &report.verdicts {
        let _ = writeln!(
            out,
            "verdict: {} - {} (confidence {:.2}, active {:.0} s of the window)",
            verdict.node, verdict.cause, verdict.confidence, verdict.active_seconds
        );
        let _ = writeln!(out, "  {}", verdict.summary);
        for read in &verdict.read {
            let _ = writeln!(out, "  read: {read}");
        }
        let _ = writeln!(out, "  next: {}", verdict.next_step);
    }
    if !report.brief_verdicts.is_empty() {
        let brief: Vec<String> = report
            .brief_verdicts
            .iter()
            .map(|v| format!("{} - {} ({:.1} s)", v.node, v.cause, v.active_seconds))
            .collect();
        let _ = writeln!(
            out,
            "brief verdicts (active under {} s, not counted): {}",
            MIN_ACTIVE_MS / 1000,
            brief.join(", ")
        );
    }
    let _ =
        writeln!(out, "diagnosed by the collector: its report of load-test window {}", report.window.collector_window);
    for note in &report.collector_notes {
        let _ = writeln!(out, "  note: {note}");
    }
    let expected = if report.expected.verdicts.is_empty() {
        "no hog".to_string()
    } else {
        report.expected.verdicts.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    };
    for line in time_to_verdict_lines(&report.time_to_verdict, !report.expected.verdicts.is_empty()) {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out, "expected: {expected} -> {}", if report.matched { "MATCH" } else { "MISMATCH" });
    for difference in &report.differences {
        let _ = writeln!(out, "  {difference}");
    }
    for note in &report.expected.notes {
        let _ = writeln!(out, "  ({note})");
    }
    if !report.stored.is_empty() {
        let samples: u64 = report.stored.iter().map(|s| s.samples).sum();
        let gaps: usize = report.stored.iter().map(|s| s.gaps + s.unaccounted).sum();
        let _ = writeln!(
            out,
            "stored: {samples} samples from {} nodes, {}",
            report.stored.len(),
            if gaps == 0 { "no gaps".to_string() } else { format!("{gaps} gaps") }
        );
    }
    let t = &report.timings;
    let _ = writeln!(
        out,
        "took: setup {:.1} s, load {:.1} s, analysis {:.1} s, teardown {:.1} s",
        t.setup_seconds, t.load_seconds, t.analysis_seconds, t.teardown_seconds
    );
    out
}

/// The hog's onset, if it came on mid-run, and the time to the first expected verdict (when one is
/// `expecting`).
fn time_to_verdict_lines(time: &TimeToVerdict, expecting: bool) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(onset) = &time.onset {
        lines.push(format!("hog onset: {:.1} s into the load, {}", onset.into_load_seconds, onset.hog));
    }
    let bound = format!("(bound {} s)", time.within_seconds);
    lines.push(match &time.first {
        Some(first) if first.raised_before && time.onset.is_none() => format!(
            "time to verdict: 0 s, {} was raised before the load's start (present from boot) {bound}",
            first.verdict
        ),
        Some(first) if first.raised_before => {
            format!("time to verdict: {} was raised before the hog's onset {bound}", first.verdict)
        }
        Some(first) => {
            format!("time to verdict: {:.1} s from {} to {} {bound}", first.seconds, time.reference(), first.verdict)
        }
        None if expecting => "time to verdict: - (no expected verdict raised)".to_string(),
        None => "time to verdict: - (no hog expected)".to_string(),
    });
    lines
}

#[cfg(test)]
mod tests {
    use bakery_diagnosis::Cause;
    use bakery_top::oha::parse_summary;

    use super::*;
    use crate::diagnose::{FirstFlag, VerdictKey};
    use crate::onset::OnsetTime;

    const OHA: &str = r#"{"summary": {"successRate": 1.0, "total": 12.01, "requestsPerSec": 83.4},
        "latencyPercentiles": {"p50": 0.0112, "p99": 0.0409},
        "statusCodeDistribution": {"200": 995, "502": 5}, "errorDistribution": {"aborted due to deadline": 2}}"#;

    fn report() -> Report {
        Report {
            scenario: "l2-ingress".into(),
            description: "MetalLB L2".into(),
            target: "http://198.18.0.3/".into(),
            window: WindowTimes { collector_window: "w-1764070927000".into(), start_ms: 0, end_ms: 30_000 },
            workload: WorkloadUnderTest {
                chosen: Some("Deployment/wordpress/wordpress".into()),
                chosen_by: "collector".into(),
                expected: "Deployment/wordpress/wordpress".into(),
            },
            verdicts: vec![ReportedVerdict {
                node: "master-02".into(),
                cause: Cause::IngressConcentration,
                confidence: 0.84,
                summary: "master-02 forwards 1.3x the workload's traffic".into(),
                evidence: vec!["nic-share = 1.30 x expected".into()],
                read: vec!["ServiceL2Status metallb-system/l2-x7k2p: layer-2 announcer master-02".into()],
                next_step: "spread the entry".into(),
                active_seconds: 27.0,
            }],
            brief_verdicts: vec![ReportedVerdict {
                node: "worker-01".into(),
                cause: Cause::PodConcentration,
                confidence: 0.3,
                summary: "worker-01 flickered".into(),
                evidence: Vec::new(),
                read: Vec::new(),
                next_step: String::new(),
                active_seconds: 1.5,
            }],
            expected: ResolvedExpectation {
                verdicts: vec![VerdictKey { node: "master-02".into(), cause: Cause::IngressConcentration }],
                notes: Vec::new(),
            },
            time_to_verdict: TimeToVerdict {
                onset: None,
                from_ms: 0,
                first: Some(FirstFlag {
                    verdict: VerdictKey { node: "master-02".into(), cause: Cause::IngressConcentration },
                    seconds: 0.8,
                    raised_before: false,
                }),
                within_seconds: 3.0,
                flagged_before_onset: Vec::new(),
            },
            matched: true,
            differences: Vec::new(),
            collector_notes: vec!["MetalLB is not installed".into()],
            shares: vec![NodeShare {
                node: "master-02".into(),
                role: "control-plane".into(),
                expected_share: 1.0 / 3.0,
                pod_traffic_share: Some(0.34),
                nic_share: Some(0.47),
                nic_bytes_per_second: Some(15.2e6),
                forwarded_bytes_per_second: Some(9.9e6),
                connections: Some(2.5),
                pod_cpu_cores: Some(0.2),
                requests: 1002,
                accepted_connections: 1002,
            }],
            pods: Vec::new(),
            oha: parse_summary(OHA).unwrap(),
            stored: vec![StoredNode { node: "master-02".into(), samples: 90, gaps: 0, unaccounted: 0 }],
            timings: Timings::default(),
        }
    }

    #[test]
    fn the_text_names_the_node_the_cause_and_the_match() {
        let text = render(&report());
        assert!(text.contains("verdict: master-02 - ingress-concentration (confidence 0.84"), "{text}");
        assert!(text.contains("expected: master-02 - ingress-concentration -> MATCH"), "{text}");
        assert!(text.contains("master-02   control-plane      33 %        34 %   47 %   15.2 MB/s"), "{text}");
        assert!(text.contains("stored: 90 samples from 1 nodes, no gaps"), "{text}");
        assert!(
            text.contains("for 12 s: 1002 requests, 83.4 req/s, p50 11 ms, p99 41 ms, 99.3 % answered 2xx"),
            "{text}"
        );
        assert!(text.contains("diagnosed by the collector: its report of load-test window w-1764070927000"), "{text}");
        assert!(
            text.contains(
                "workload under test: Deployment/wordpress/wordpress (chosen by the collector; the Service's web workload)"
            ),
            "{text}"
        );
        assert!(
            text.contains("brief verdicts (active under 3 s, not counted): worker-01 - pod-concentration (1.5 s)"),
            "{text}"
        );
        assert!(!text.contains("verdict: worker-01"), "a brief verdict is not the diagnosis: {text}");
        assert!(
            text.contains("\n  read: ServiceL2Status metallb-system/l2-x7k2p: layer-2 announcer master-02\n"),
            "{text}"
        );
        assert!(text.contains("\n  note: MetalLB is not installed\n"), "{text}");
    }

    #[test]
    fn the_time_to_the_verdict_runs_from_the_load_or_the_hog_s_onset() {
        let mut report = report();
        let text = render(&report);
        assert!(
            text.contains(
                "time to verdict: 0.8 s from the load's start to master-02 - ingress-concentration (bound 3 s)\nexpected:"
            ),
            "{text}"
        );
        report.time_to_verdict.onset = Some(OnsetTime {
            hog: "the L2 announcer moves from worker-02 to master-02".into(),
            at_ms: 6_040,
            into_load_seconds: 6.04,
            took_seconds: 0.02,
        });
        report.time_to_verdict.first.as_mut().unwrap().seconds = 1.26;
        let text = render(&report);
        assert!(
            text.contains(
                "hog onset: 6.0 s into the load, the L2 announcer moves from worker-02 to master-02\n\
                 time to verdict: 1.3 s from the hog's onset to master-02 - ingress-concentration (bound 3 s)"
            ),
            "{text}"
        );
        report.time_to_verdict.first.as_mut().unwrap().raised_before = true;
        assert!(render(&report).contains("master-02 - ingress-concentration was raised before the hog's onset"));
        report.time_to_verdict.onset = None;
        assert!(render(&report).contains("time to verdict: 0 s, master-02 - ingress-concentration was raised before the load's start (present from boot)"));
        report.time_to_verdict.first = None;
        assert!(render(&report).contains("time to verdict: - (no expected verdict raised)"));
        report.expected.verdicts.clear();
        assert!(render(&report).contains("time to verdict: - (no hog expected)"));
    }

    #[test]
    fn a_mismatch_says_why() {
        let mut report = report();
        report.workload.chosen = Some("Deployment/npm/nginx-proxy-manager".into());
        report.matched = false;
        report.differences =
            vec!["the collector put Deployment/npm/nginx-proxy-manager under test, not the Service's ...".into()];
        let text = render(&report);
        assert!(
            text.contains("expected: master-02 - ingress-concentration -> MISMATCH\n  the collector put"),
            "{text}"
        );
        assert!(text.contains("(chosen by the collector; expected Deployment/wordpress/wordpress)"), "{text}");
    }

    #[test]
    fn json_carries_the_verdicts_with_node_and_cause() {
        let json = serde_json::to_value(report()).unwrap();
        assert_eq!(json["verdicts"][0]["node"], "master-02");
        assert_eq!(json["verdicts"][0]["cause"], "ingress-concentration");
        assert_eq!(json["matched"], true);
        assert_eq!(json["workload"]["chosen"], "Deployment/wordpress/wordpress");
        assert_eq!(json["brief_verdicts"][0]["node"], "worker-01");
        assert_eq!(json["expected"]["verdicts"][0]["cause"], "ingress-concentration");
        assert_eq!(json["window"]["collector_window"], "w-1764070927000");
        assert_eq!(json["oha"]["requests"], 1002);
        assert_eq!(json["time_to_verdict"]["first"]["seconds"], 0.8);
        assert_eq!(json["time_to_verdict"]["first"]["verdict"]["node"], "master-02");
        assert_eq!(json["time_to_verdict"]["within_seconds"], 3.0);
        assert_eq!(json["time_to_verdict"]["onset"], serde_json::Value::Null);
    }
}
