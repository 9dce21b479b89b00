//! Window report charts show each verdict's evidence, read back from the SVG alone through `svg::read`.

use std::collections::BTreeSet;

use bakery_diagnosis::svg::read::{self, Chart, Gap};
use bakery_diagnosis::{Cause, Config, Reading, WindowReport};

use crate::support::{fixture_names, load};

fn report(name: &str) -> WindowReport {
    let fixture = load(name);
    let ticks = fixture.ticks().expect("valid");
    WindowReport::build(fixture.window(), &ticks, &Config::default()).expect("report builds")
}

fn chart(svg: &str) -> Chart {
    read::read(svg).unwrap_or_else(|e| panic!("{e}\n{svg}"))
}

/// `node`'s NIC-share line against its expected line over the active span of `entry`'s
/// ingress-concentration verdict, as the chart draws them.
fn nic_gap(chart: &Chart, entry: &str, node: &str) -> Gap {
    let nic = chart.panel("nic-share").expect("a NIC-share panel");
    assert_eq!(nic.causes, ["ingress-concentration"]);
    assert!(nic.title.contains("NIC bytes") && nic.title.contains("share"), "{}", nic.title);
    let span = chart.verdict(entry, "ingress-concentration").expect("the verdict's active span");
    assert!(span.to_s - span.from_s > 5.0, "{span:?}");
    // Read off the axis labels, each of the three serving nodes expects a third.
    let expected = nic.line(node, "expected").and_then(|l| l.at((span.from_s + span.to_s) / 2.0));
    assert!(expected.is_some_and(|e| (e - 1.0 / 3.0).abs() < 0.01), "{node} expects {expected:?}");
    nic.gap(node, span.from_s, span.to_s).unwrap_or_else(|| panic!("{node} has NIC-share lines in the span"))
}

#[test]
fn the_entry_node_s_nic_share_lies_above_its_expected_share_while_the_verdict_is_active() {
    let svg = report("ingress-concentration").to_svg();
    roxmltree::Document::parse(&svg).expect("well-formed XML");
    let chart = chart(&svg);
    let entry = nic_gap(&chart, "worker-01", "worker-01");
    // 250 ms ticks over a span of more than 5 s.
    assert!(entry.points >= 20, "{entry:?}");
    assert_eq!(entry.above, entry.points, "every point of the entry node lies above its expected share: {entry:?}");
    assert!(entry.mean > 0.2, "well above, not by a hair: {entry:?}");
    for peer in ["worker-02", "master-02"] {
        let gap = nic_gap(&chart, "worker-01", peer);
        assert!(gap.mean < 0.02 && gap.max < 0.1, "{peer} lies near or below its expected share: {gap:?}");
    }
    // The bytes it forwards for the other nodes' pods: the entry node's line is the highest.
    let forwarded = chart.panel("forwarded-nic").expect("a forwarded-bytes panel");
    assert!(forwarded.title.contains("(B/s)"), "{}", forwarded.title);
    let span = chart.verdict("worker-01", "ingress-concentration").expect("span");
    let mean = |node: &str| {
        let line = forwarded.line(node, "observed").unwrap_or_else(|| panic!("{node}'s forwarded bytes"));
        let inside: Vec<f64> =
            line.points().filter(|(t, _)| (span.from_s..=span.to_s).contains(t)).map(|p| p.1).collect();
        inside.iter().sum::<f64>() / inside.len().max(1) as f64
    };
    let entry_forwarded = mean("worker-01");
    assert!(entry_forwarded > 1e6, "MB/s forwarded, read off the axis labels: {entry_forwarded}");
    for peer in ["master-01", "master-02", "master-03", "worker-02"] {
        assert!(mean(peer) < entry_forwarded / 5.0, "{peer}: {} against {entry_forwarded}", mean(peer));
    }
}

#[test]
fn the_nic_check_tells_the_entry_node_from_a_peer() {
    // The same chart with worker-01's and worker-02's lines swapped: the check must notice.
    let svg = report("ingress-concentration").to_svg();
    let swapped: Vec<String> = svg
        .lines()
        .map(|line| {
            if line.starts_with("<polyline") {
                line.replace(r#"data-node="worker-01""#, "@")
                    .replace(r#"data-node="worker-02""#, r#"data-node="worker-01""#)
                    .replace('@', r#"data-node="worker-02""#)
            } else {
                line.to_string()
            }
        })
        .collect();
    let chart = chart(&swapped.join("\n"));
    let entry = nic_gap(&chart, "worker-01", "worker-01");
    assert!(entry.above < entry.points && entry.mean < 0.0, "{entry:?}");
}

#[test]
fn a_balanced_window_has_no_evidence_panels() {
    let report = report("balanced-control");
    let chart = chart(&report.to_svg());
    let names: Vec<&str> = chart.panels.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["share"]);
    assert!(chart.verdicts.is_empty());
    // Nothing kept for panels that are not drawn.
    assert!(report.series.iter().flat_map(|s| &s.points).all(|p| p.readings.is_empty()));
    assert!(!report.to_json().expect("serialises").contains("readings"));
}

#[test]
fn an_unattributed_cpu_window_shows_the_flagged_node_highest_outside_pods() {
    let chart = chart(&report("unattributed-cpu").to_svg());
    let names: Vec<&str> = chart.panels.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["share", "unattributed-cpu"]);
    let panel = chart.panel("unattributed-cpu").expect("the CPU-outside-pods panel");
    assert!(panel.title.contains("CPU outside pods (cores)"), "{}", panel.title);
    let span = chart.verdict("master-03", "unattributed-cpu").expect("the verdict's active span");
    let flagged = panel.line("master-03", "observed").expect("master-03's line");
    let inside: Vec<(f64, f64)> = flagged.points().filter(|(t, _)| (span.from_s..=span.to_s).contains(t)).collect();
    assert!(inside.len() >= 20, "{span:?}");
    let peers: Vec<_> = panel.lines.iter().filter(|l| l.node != "master-03").collect();
    assert_eq!(peers.len(), 4, "every other node is drawn");
    // The verdict stays active for its exit hysteresis after the work stops: most of the span, not all
    // of it, shows the node above its peers.
    let clear_lead = inside.iter().filter(|&&(t, cores)| peers.iter().all(|p| cores > p.at(t).unwrap_or(0.0) + 0.3));
    assert!(clear_lead.count() * 10 >= inside.len() * 8, "master-03 leads by 0.3 cores over 80 % of the span");
    let mean = |points: Vec<f64>| points.iter().sum::<f64>() / points.len().max(1) as f64;
    let flagged_mean = mean(inside.iter().map(|p| p.1).collect());
    for peer in &peers {
        let theirs = mean(inside.iter().filter_map(|&(t, _)| peer.at(t)).collect());
        assert!(flagged_mean > theirs + 0.5, "master-03 {flagged_mean:.2} cores on average, {} {theirs:.2}", peer.node);
    }
}

#[test]
fn every_fixture_chart_has_one_panel_per_reading_its_causes_cite() {
    for name in fixture_names() {
        let report = report(&name);
        let svg = report.to_svg();
        let document = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{name}: {e}"));
        for element in document.descendants().filter(|n| n.is_element()) {
            assert!(element.attribute("class").is_some(), "{name}: <{}> without a class", element.tag_name().name());
        }
        for polyline in document.descendants().filter(|n| n.has_tag_name("polyline")) {
            for attribute in ["data-node", "data-panel", "data-signal"] {
                assert!(polyline.attribute(attribute).is_some(), "{name}: a line without {attribute}");
            }
        }
        let chart = chart(&svg);
        let causes: BTreeSet<Cause> = report.verdicts.iter().map(|r| r.verdict.cause).collect();
        let mut expected = vec!["share".to_string()];
        for reading in causes.iter().flat_map(|&c| Reading::cited_by(c)) {
            if !expected.contains(&reading.name().to_string()) {
                expected.push(reading.name().to_string());
            }
        }
        let names: Vec<String> = chart.panels.iter().map(|p| p.name.clone()).collect();
        assert_eq!(names, expected, "{name}");
        for panel in chart.panels.iter().skip(1) {
            assert_eq!(panel.lines.iter().filter(|l| l.class == "observed").count(), report.series.len(), "{name}");
        }
        for r in &report.verdicts {
            let span = chart.verdict(&r.verdict.node, r.verdict.cause.name());
            assert!(span.is_some_and(|s| s.to_s > s.from_s), "{name}: {} {}", r.verdict.node, r.verdict.cause);
        }
    }
}

#[test]
fn reports_stored_without_readings_still_load_and_chart() {
    let report = report("ingress-concentration");
    let mut value: serde_json::Value = serde_json::from_str(&report.to_json().expect("serialises")).expect("JSON");
    let mut stripped = 0;
    for series in value["series"].as_array_mut().expect("series") {
        for point in series["points"].as_array_mut().expect("points") {
            stripped += usize::from(point.as_object_mut().expect("a point").remove("readings").is_some());
        }
    }
    assert!(stripped > 100, "the report kept readings to strip: {stripped}");
    let old = WindowReport::from_json(&value.to_string()).expect("a report without readings loads");
    assert!(old.series.iter().flat_map(|s| &s.points).all(|p| p.readings.is_empty()));
    assert_eq!(old.verdicts, report.verdicts);
    // Its chart still draws the verdict's panels, saying that the figures are missing.
    let svg = old.to_svg();
    let chart = chart(&svg);
    let nic = chart.panel("nic-share").expect("the panel of the verdict's cause");
    assert!(nic.lines.iter().all(|l| l.class == "expected"), "no observed line without readings");
    assert!(svg.contains("not recorded in this report"));
}

#[test]
fn readings_round_trip_and_keep_only_what_the_verdicts_cite() {
    let report = report("ingress-concentration");
    let json = report.to_json().expect("serialises");
    assert_eq!(WindowReport::from_json(&json).expect("parses"), report);
    let kept: BTreeSet<Reading> =
        report.series.iter().flat_map(|s| &s.points).flat_map(|p| p.readings.keys()).copied().collect();
    assert_eq!(kept, BTreeSet::from([Reading::NicShare, Reading::ForwardedNic]));
}

#[test]
fn the_chart_reads_back_the_report_s_figures() {
    // The reader against the numbers the chart was drawn from: times and values through the axis
    // labels land within a pixel's worth.
    let report = report("announcer-with-nfs-7-node");
    let chart = chart(&report.to_svg());
    let start_ms = report.window.start_ms;
    let mut compared = 0;
    for reading in [Reading::NicShare, Reading::ForwardedNic, Reading::UnattributedCpu] {
        let panel = chart.panel(reading.name()).unwrap_or_else(|| panic!("a {} panel", reading.name()));
        let range = report
            .series
            .iter()
            .flat_map(|s| &s.points)
            .filter_map(|p| p.readings.get(&reading))
            .fold(0.0_f64, |m, &v| m.max(v));
        for series in &report.series {
            let line = panel.line(&series.node, "observed").expect("a line per node");
            let drawn: Vec<(f64, f64)> = line.points().collect();
            let kept: Vec<(f64, f64)> = series
                .points
                .iter()
                .filter_map(|p| Some(((p.t_ms - start_ms) as f64 / 1000.0, *p.readings.get(&reading)?)))
                .collect();
            assert_eq!(drawn.len(), kept.len(), "{} {}", reading.name(), series.node);
            for ((t, v), (t_kept, v_kept)) in drawn.into_iter().zip(kept) {
                assert!((t - t_kept).abs() < 0.05, "{} at {t_kept}: read {t}", series.node);
                assert!(
                    (v - v_kept).abs() <= 0.01 * range,
                    "{} {} at {t_kept}: read {v}, kept {v_kept}",
                    reading.name(),
                    series.node
                );
                compared += 1;
            }
        }
    }
    assert!(compared > 1000, "{compared}");
}
