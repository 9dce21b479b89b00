//! Window reports: JSON that round-trips, a text form that names the verdicts, and an SVG chart that
//! is well-formed XML holding every node's series, the expected share and the shaded window.

use std::collections::BTreeSet;

use bakery_diagnosis::{Cause, Config, WindowReport};

use crate::support::{fixture_names, load, replay};

fn report(name: &str) -> WindowReport {
    let fixture = load(name);
    let ticks = fixture.ticks().expect("valid");
    WindowReport::build(fixture.window(), &ticks, &Config::default()).expect("report builds")
}

#[test]
fn every_fixture_report_lists_exactly_its_expected_verdicts() {
    for name in fixture_names() {
        let fixture = load(&name);
        let expected: BTreeSet<(String, Cause)> =
            fixture.expect.verdicts.iter().map(|v| (v.node.clone(), v.cause)).collect();
        let report = report(&name);
        let listed: BTreeSet<(String, Cause)> =
            report.verdicts.iter().map(|r| (r.verdict.node.clone(), r.verdict.cause)).collect();
        assert_eq!(listed, expected, "{name}:\n{report}");
        for r in &report.verdicts {
            assert!((0.0..=1.0).contains(&r.verdict.confidence), "{name}");
            if fixture.expect.hog_end_s.is_some() {
                assert!(r.cleared_ms.is_some(), "{name}: the hog ends inside the replay, so its verdict clears");
            }
            assert!(!r.verdict.evidence.is_empty() && !r.verdict.next_step.is_empty(), "{name}");
        }
    }
}

#[test]
fn json_round_trips() {
    let report = report("ingress-concentration");
    let json = report.to_json().expect("serialises");
    assert_eq!(WindowReport::from_json(&json).expect("parses"), report);
    let value: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(value["verdicts"][0]["verdict"]["cause"], "ingress-concentration");
    assert_eq!(value["verdicts"][0]["verdict"]["node"], "worker-01");
    assert!(value["overall"]["summary"]["pod-traffic"]["jain"].as_f64().is_some_and(|j| j > 0.99));
}

#[test]
fn text_names_the_node_the_cause_the_evidence_and_the_next_step() {
    let text = report("keepalive-4-connection-pinning").to_string();
    for needle in [
        "master-02: connection-pinning",
        "evidence: pod-traffic-share",
        "next step: Run the load test again",
        "max/mean",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    let quiet = report("balanced-control").to_string();
    assert!(quiet.contains("No verdict"), "{quiet}");
}

#[test]
fn live_alerts_serialise_with_the_vocabulary() {
    let fixture = load("thermal-throttling");
    let evaluations = replay(&fixture.ticks().expect("valid"), &Config::default());
    let hot = evaluations.iter().find(|e| !e.verdicts.is_empty()).expect("a verdict is raised");
    let value = serde_json::to_value(&hot.verdicts).expect("serialises");
    assert_eq!(value[0]["cause"], "thermal-throttling");
    assert_eq!(value[0]["node"], "worker-02");
    assert!(value[0]["evidence"].as_array().is_some_and(|e| e.iter().any(|x| x["name"] == "temperature")));
}

#[test]
fn svg_is_well_formed_and_holds_every_series() {
    let report = report("keepalive-4-connection-pinning");
    let svg = report.to_svg();
    let doc = roxmltree::Document::parse(&svg).expect("well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert_eq!(root.tag_name().namespace(), Some("http://www.w3.org/2000/svg"));
    let class = |node: &roxmltree::Node, c: &str| node.attribute("class") == Some(c);

    let window = doc.descendants().find(|n| class(n, "window")).expect("the window is shaded");
    let width: f64 = window.attribute("width").expect("width").parse().expect("number");
    assert!(width > 100.0, "the window spans most of the chart");

    for series in &report.series {
        let group = doc
            .descendants()
            .find(|n| {
                class(n, "node")
                    && n.attribute("data-panel") == Some("share")
                    && n.attribute("data-node") == Some(series.node.as_str())
            })
            .unwrap_or_else(|| panic!("a group for {}", series.node));
        let observed_points: usize = group
            .children()
            .filter(|n| class(n, "observed"))
            .map(|n| n.attribute("points").expect("points").split_whitespace().count())
            .sum();
        assert_eq!(observed_points, series.points.iter().filter(|p| p.share.is_some()).count(), "{}", series.node);
        let expected = group.children().find(|n| class(n, "expected")).expect("an expected-share line");
        assert!(expected.attribute("stroke-dasharray").is_some());
        assert!(expected.attribute("points").is_some_and(|p| !p.is_empty()));
    }
    let markers =
        doc.descendants().filter(|n| class(n, "verdict") && n.attribute("data-panel") == Some("share")).count();
    assert_eq!(markers, report.verdicts.len());
}

#[test]
fn svg_escapes_names() {
    let mut report = report("balanced-control");
    report.window.name = "<load & \"test\">".to_string();
    report.series[0].node = "node<&>".to_string();
    let svg = report.to_svg();
    let doc = roxmltree::Document::parse(&svg).expect("still well-formed");
    assert!(doc.descendants().any(|n| n.attribute("data-node") == Some("node<&>")));
}

#[test]
fn the_chart_follows_the_windows_workload_even_when_the_warm_up_had_none() {
    // The collector learns the workload under test when the window opens; the ticks of the
    // warm-up before it carry none. The chart must still be the workload's traffic share.
    let fixture = load("ingress-concentration");
    let mut ticks = fixture.ticks().expect("valid");
    let window = fixture.window();
    assert!(ticks.iter().any(|t| t.timestamp_ms < window.start_ms), "the fixture warms up before its window");
    for tick in ticks.iter_mut().filter(|t| t.timestamp_ms < window.start_ms) {
        tick.workload = None;
    }
    let report = WindowReport::build(window, &ticks, &Config::default()).expect("report builds");
    assert_eq!(report.signal, bakery_diagnosis::Signal::PodTraffic);
    let without = WindowReport::build(
        fixture.window(),
        &fixture
            .ticks()
            .expect("valid")
            .into_iter()
            .map(|mut t| {
                t.workload = None;
                t
            })
            .collect::<Vec<_>>(),
        &Config::default(),
    )
    .expect("report builds");
    assert_eq!(without.signal, bakery_diagnosis::Signal::Cpu, "no workload at all: the nodes' CPU");
    let differs = report.series.iter().zip(&without.series).any(|(a, b)| {
        a.points
            .iter()
            .zip(&b.points)
            .any(|(p, q)| matches!((p.share, q.share), (Some(x), Some(y)) if (x - y).abs() > 0.01))
    });
    assert!(differs, "the two charts plot different signals");
}
