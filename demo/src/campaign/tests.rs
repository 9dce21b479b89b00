//! Judging runs against the truth, on made-up reports: right, false flags, misses, the truths
//! resolved from the pods' own counts, the first flag's time and the summary.

use bakery_diagnosis::report::ReportedVerdict as StoredVerdict;
use bakery_top::oha::parse_summary;

use super::generate::{Generated, generate};
use super::*;
use crate::diagnose::{ReportedVerdict, TimeToVerdict};
use crate::report::{PodCount, Timings, WindowTimes, WorkloadUnderTest};

const WORDPRESS: &str = "Deployment/wordpress/wordpress";
const START_MS: i64 = 100_000;
const END_MS: i64 = 112_000;

/// The first generated scenario under `rule` (seed 1 onwards).
fn first(rule: Rule, also: impl Fn(&Generated) -> bool) -> Generated {
    (1..2_000)
        .map(|index| generate(1, index).unwrap())
        .find(|g| g.truth.rule == rule && also(g))
        .unwrap_or_else(|| panic!("no {rule} scenario"))
}

fn held(node: &str, cause: Cause, summary: &str) -> ReportedVerdict {
    ReportedVerdict {
        node: node.into(),
        cause,
        confidence: 0.8,
        summary: summary.into(),
        evidence: Vec::new(),
        read: Vec::new(),
        next_step: String::new(),
        active_seconds: 9.0,
    }
}

/// A report of `generated`'s run: these verdicts held, and `requests`/`accepted` per web pod, in
/// placement order.
fn report(generated: &Generated, verdicts: Vec<ReportedVerdict>, counts: &[(u64, u64)]) -> Report {
    let web = &generated.scenario.served().placement;
    let pods = web
        .iter()
        .enumerate()
        .map(|(i, node)| PodCount {
            pod: format!("wordpress-{i}"),
            node: node.clone(),
            workload: "wordpress".into(),
            requests: counts.get(i).map_or(0, |c| c.0),
            accepted_connections: counts.get(i).map_or(0, |c| c.1),
        })
        .collect();
    Report {
        scenario: generated.scenario.name.clone(),
        description: String::new(),
        target: "http://198.18.0.100/".into(),
        window: WindowTimes { collector_window: "w-1".into(), start_ms: START_MS, end_ms: END_MS },
        workload: WorkloadUnderTest {
            chosen: Some(WORDPRESS.into()),
            chosen_by: "collector".into(),
            expected: WORDPRESS.into(),
        },
        verdicts,
        brief_verdicts: Vec::new(),
        expected: ResolvedExpectation::default(),
        time_to_verdict: TimeToVerdict {
            onset: None,
            from_ms: START_MS,
            first: None,
            within_seconds: 3.0,
            flagged_before_onset: Vec::new(),
        },
        matched: true,
        differences: Vec::new(),
        collector_notes: Vec::new(),
        shares: Vec::new(),
        pods,
        oha: parse_summary(r#"{"summary": {"successRate": 1.0, "total": 12.0, "requestsPerSec": 100.0}}"#).unwrap(),
        stored: Vec::new(),
        timings: Timings::default(),
    }
}

/// The collector's window report with these raises (node, cause, raised at).
fn window(raises: &[(&str, Cause, i64)]) -> WindowReport {
    let mut report: WindowReport = serde_json::from_value(serde_json::json!({
        "window": { "name": "w", "start_ms": START_MS, "end_ms": END_MS },
        "signal": "pod-traffic", "overall": null, "series": [], "verdicts": [], "changes": []
    }))
    .unwrap();
    report.verdicts = raises
        .iter()
        .map(|(node, cause, raised_ms)| {
            serde_json::from_value::<StoredVerdict>(serde_json::json!({
                "verdict": {
                    "node": node, "cause": cause, "confidence": 0.5, "since_ms": raised_ms,
                    "first_seen_ms": raised_ms, "subject": null, "summary": "", "evidence": [], "next_step": "",
                },
                "peak_confidence": 0.5, "raised_ms": raised_ms, "last_active_ms": END_MS, "cleared_ms": null,
            }))
            .unwrap()
        })
        .collect();
    report
}

#[test]
fn an_l2_ingress_run_is_right_with_its_announcer_and_wrong_with_one_more_verdict() {
    let g = first(Rule::L2Ingress, |_| true);
    let announcer = g.scenario.announcer().unwrap().to_string();
    let even = vec![(300, 300); 4];
    let ok = judge(
        &g,
        report(&g, vec![held(&announcer, Cause::IngressConcentration, "")], &even),
        &window(&[(&announcer, Cause::IngressConcentration, START_MS + 2_400)]),
    );
    assert!(ok.right, "{ok:#?}");
    assert_eq!((ok.false_flags.len(), ok.misses.len()), (0, 0));
    assert_eq!(ok.first_flag_seconds, Some(2.4));
    assert!(!ok.flagged_before_load);

    let other = g.scenario.nodes.iter().map(|n| n.name.clone()).find(|n| *n != announcer).unwrap();
    let extra = judge(
        &g,
        report(
            &g,
            vec![held(&announcer, Cause::IngressConcentration, ""), held(&other, Cause::UnattributedCpu, "")],
            &even,
        ),
        &window(&[]),
    );
    assert!(!extra.right);
    assert_eq!(extra.false_flags, [VerdictKey { node: other.clone(), cause: Cause::UnattributedCpu }]);
    assert!(extra.misses.is_empty());
    assert_eq!(extra.first_flag_seconds, None, "nothing raised in the window report");

    let missed = judge(&g, report(&g, vec![], &even), &window(&[]));
    assert_eq!(missed.misses, [VerdictKey { node: announcer, cause: Cause::IngressConcentration }]);
    assert!(!missed.right);
}

#[test]
fn another_workload_under_test_is_not_right_even_with_the_right_verdicts() {
    let g = first(Rule::Balanced, |_| true);
    let mut run = report(&g, vec![], &[(300, 300)]);
    run.workload.chosen = Some("Deployment/npm/nginx-proxy-manager".into());
    let outcome = judge(&g, run, &window(&[]));
    assert!(!outcome.right);
    assert!(outcome.differences[0].contains("under test"), "{:?}", outcome.differences);
}

#[test]
fn session_affinity_resolves_to_the_pods_that_served_and_the_announcer_when_it_forwards() {
    // The announcer holds no web pod: whichever pod is pinned, it forwards everything.
    let g = first(Rule::SessionAffinity, |g| {
        !g.scenario.served().placement.contains(&g.scenario.service.announcer.clone().unwrap())
    });
    let announcer = g.scenario.announcer().unwrap().to_string();
    let pinned = g.scenario.served().placement[0].clone();
    let mut counts = vec![(0, 0); g.scenario.served().placement.len()];
    counts[0] = (1_190, 1_190);
    let summary = "pods take 100 %; Service wordpress/wordpress has sessionAffinity: ClientIP (timeout 10800 s)";
    let verdicts =
        vec![held(&pinned, Cause::PodConcentration, summary), held(&announcer, Cause::IngressConcentration, "")];
    let outcome = judge(&g, report(&g, verdicts.clone(), &counts), &window(&[]));
    assert!(outcome.right, "{outcome:#?}");
    let mut wanted = vec![
        VerdictKey { node: pinned.clone(), cause: Cause::PodConcentration },
        VerdictKey { node: announcer.clone(), cause: Cause::IngressConcentration },
    ];
    wanted.sort();
    assert_eq!(outcome.expected, wanted);

    // The same verdicts, but the summary does not say why.
    let mut unexplained = verdicts;
    unexplained[0].summary = "pods take 100 %".into();
    let outcome = judge(&g, report(&g, unexplained, &counts), &window(&[]));
    assert!(!outcome.right);
    assert!(outcome.differences.iter().any(|d| d.contains("does not name sessionAffinity")), "{outcome:#?}");

    // Spread requests: the affinity did not pin, and the run cannot be judged.
    let spread = vec![(600, 600); g.scenario.served().placement.len()];
    let outcome = judge(&g, report(&g, vec![], &spread), &window(&[]));
    assert!(!outcome.right);
    assert!(outcome.error.as_deref().unwrap_or_default().contains("did not pin"), "{outcome:#?}");
}

#[test]
fn session_affinity_on_the_announcers_own_pod_is_only_a_pod_concentration() {
    let g = first(Rule::SessionAffinity, |g| {
        g.scenario.served().placement.contains(&g.scenario.service.announcer.clone().unwrap())
    });
    let announcer = g.scenario.announcer().unwrap().to_string();
    let web = &g.scenario.served().placement;
    let counts: Vec<(u64, u64)> = web
        .iter()
        .enumerate()
        .map(
            |(i, n)| {
                if *n == announcer && web.iter().position(|m| m == n) == Some(i) { (1_200, 1_200) } else { (0, 0) }
            },
        )
        .collect();
    let resolved = g.truth.resolve(&pod_counts(&report(&g, vec![], &counts)));
    assert_eq!(resolved.verdicts, [VerdictKey { node: announcer, cause: Cause::PodConcentration }]);
}

#[test]
fn keepalive_pinning_resolves_from_the_connections_the_pods_accepted() {
    let g = first(Rule::KeepalivePinning, |_| true);
    let c = u64::from(g.scenario.load.connections);
    let web = g.scenario.served().placement.clone();
    // Every connection on the first pod's node.
    let mut counts = vec![(0, 0); web.len()];
    counts[0] = (1_000, c);
    let resolved = g.truth.resolve(&pod_counts(&report(&g, vec![], &counts)));
    let node = &web[0];
    let on_node = web.iter().filter(|n| *n == node).count() as u64;
    let part = on_node as f64 / web.len() as f64;
    if 1.0 / part > truth::PIN_BAND.1 * truth::pin_line(on_node, web.len() as u64) {
        assert_eq!(resolved.verdicts, [VerdictKey { node: node.clone(), cause: Cause::ConnectionPinning }]);
    } else {
        assert!(resolved.verdicts.is_empty(), "{resolved:?}");
    }
    assert_eq!(resolved.unresolved, None);
    // No connection at all: nothing to judge by.
    let resolved = g.truth.resolve(&pod_counts(&report(&g, vec![], &[])));
    assert!(resolved.unresolved.is_some());
}

#[test]
fn a_condition_present_from_boot_counts_as_flagged_at_once() {
    let g = first(Rule::MemorySqueeze, |_| true);
    let node = g.truth.fixed[0].node.clone();
    let outcome = judge(
        &g,
        report(&g, vec![held(&node, Cause::MemoryPressure, "")], &[(300, 300)]),
        &window(&[(&node, Cause::MemoryPressure, START_MS - 5_000)]),
    );
    assert!(outcome.right);
    assert_eq!((outcome.first_flag_seconds, outcome.flagged_before_load), (Some(0.0), true));
    let text = table::render_tables(std::slice::from_ref(&outcome));
    assert!(text.contains("0.0*") && text.contains("raised before the load"), "{text}");
}

#[test]
fn the_summary_counts_and_takes_the_median_over_the_scenarios_that_expect_a_hog() {
    let outcome = |expected: usize, right: bool, first: Option<f64>, before: bool, false_flags: usize| Outcome {
        expected: vec![VerdictKey { node: "a".into(), cause: Cause::PodConcentration }; expected],
        right,
        first_flag_seconds: first,
        flagged_before_load: before,
        false_flags: vec![VerdictKey { node: "b".into(), cause: Cause::UnattributedCpu }; false_flags],
        ..judge_nothing(&first_generated())
    };
    let outcomes = [
        outcome(1, true, Some(2.0), false, 0),
        outcome(1, true, Some(3.0), false, 0),
        outcome(1, true, Some(0.0), true, 0),
        outcome(1, false, None, false, 0),
        outcome(0, false, None, false, 2),
    ];
    let summary = Summary::of(&outcomes);
    assert_eq!((summary.scenarios, summary.right, summary.false_flags), (5, 3, 2));
    assert_eq!((summary.expecting_a_hog, summary.flagged, summary.flagged_before_load), (4, 3, 1));
    assert_eq!(summary.median_seconds_to_first_flag, Some(2.0));
    assert_eq!(summary.median_seconds_to_first_flag_during_load, Some(2.5));
    assert!(!summary.all_right());
    let line = table::render_summary(&summary);
    assert!(line.starts_with("right 3/5, false flags 2, misses 0, median time to first flag 2.0 s"), "{line}");
}

fn first_generated() -> Generated {
    generate(1, 1).unwrap()
}

#[test]
fn the_plan_lists_every_scenario_with_its_rule_and_expectation() {
    let generated = generate::campaign(7, 8).unwrap();
    let text = table::render_plan(7, &generated);
    assert!(text.starts_with("campaign seed 7: 8 scenarios (not run)"), "{text}");
    for g in &generated {
        assert!(text.contains(&format!("rule {}: {}", g.truth.rule.number(), g.truth.why)), "{text}");
    }
}
