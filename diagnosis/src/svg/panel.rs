//! One panel of the chart: its title and value axis, the window, the verdicts it explains, and a line per node.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::scale::{AxisStyle, TimeScale, ValueAxis};
use super::{LEFT, PLOT_RIGHT, colour, escape};
use crate::reading::Reading;
use crate::report::{NodeSeries, ReportedVerdict, SharePoint, WindowReport};
use crate::verdict::Cause;

/// Height of the share panel's plot area.
const SHARE_HEIGHT: f64 = 240.0;
/// Height of an evidence panel's plot area: room for the end labels of nine nodes.
const EVIDENCE_HEIGHT: f64 = 130.0;
const VERDICT_RED: &str = "#d62728";

/// What a panel plots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// Each node's share of the report's charted signal against its expected share.
    Share,
    Reading(Reading),
}

/// A panel of the chart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Panel {
    pub source: Source,
    /// The causes whose verdicts it shows the evidence of; none for the share panel, which marks where
    /// every verdict was raised.
    pub causes: Vec<Cause>,
}

/// Where a panel's plot area is, top to bottom.
pub(super) struct Frame {
    pub top: f64,
    pub bottom: f64,
}

impl Panel {
    /// Its `data-panel` name.
    pub fn name(&self) -> &'static str {
        match self.source {
            Source::Share => "share",
            Source::Reading(reading) => reading.name(),
        }
    }

    pub fn height(&self) -> f64 {
        if self.source == Source::Share { SHARE_HEIGHT } else { EVIDENCE_HEIGHT }
    }

    /// Its lines' `data-signal` name.
    fn signal(&self, report: &WindowReport) -> &'static str {
        match self.source {
            Source::Share => report.signal.name(),
            Source::Reading(reading) => reading.name(),
        }
    }

    fn value(&self, point: &SharePoint) -> Option<f64> {
        match self.source {
            Source::Share => point.share,
            Source::Reading(reading) => point.readings.get(&reading).copied(),
        }
        .filter(|v| v.is_finite())
    }

    /// Shares are drawn against the expected share.
    fn has_expected(&self) -> bool {
        matches!(self.source, Source::Share | Source::Reading(Reading::NicShare))
    }

    fn style(&self) -> AxisStyle {
        match self.source {
            Source::Share | Source::Reading(Reading::NicShare | Reading::Frequency | Reading::MemoryUsed) => {
                AxisStyle::Fraction
            }
            Source::Reading(Reading::Temperature) => AxisStyle::AroundData,
            Source::Reading(_) => AxisStyle::FromZero,
        }
    }

    /// What it shows, with the unit.
    fn title(&self, report: &WindowReport) -> String {
        let what = match self.source {
            Source::Share => {
                return format!("share of {} per node (solid: observed, dashed: expected share)", report.signal.name());
            }
            Source::Reading(Reading::NicShare) => {
                "NIC bytes as a share of the serving nodes' total (dashed: expected share)"
            }
            Source::Reading(Reading::ForwardedNic) => "NIC bytes forwarded for pods on other nodes (B/s)",
            Source::Reading(Reading::Connections) => "connections held by the workload's pods (conns)",
            Source::Reading(Reading::UnattributedCpu) => "CPU outside pods (cores)",
            Source::Reading(Reading::HottestOtherPodCpu) => "CPU of the hottest pod of another workload (cores)",
            Source::Reading(Reading::Temperature) => "hottest CPU temperature (°C)",
            Source::Reading(Reading::Frequency) => "CPU frequency (fraction of its maximum)",
            Source::Reading(Reading::MemoryUsed) => "memory used (fraction of the total)",
            Source::Reading(Reading::MemoryPressure) => "time some task stalled on memory (fraction, PSI)",
        };
        let causes: Vec<&str> = self.causes.iter().map(|c| c.name()).collect();
        format!("{}: {what}", causes.join(", "))
    }

    /// The verdicts it marks.
    fn verdicts<'a>(&self, report: &'a WindowReport) -> impl Iterator<Item = &'a ReportedVerdict> {
        let all = self.source == Source::Share;
        let causes = self.causes.clone();
        report.verdicts.iter().filter(move |r| all || causes.contains(&r.verdict.cause))
    }
}

/// The share panel, then one panel per reading that a raised cause cites, in the order of the causes.
pub(super) fn panels(report: &WindowReport) -> Vec<Panel> {
    let mut panels = vec![Panel { source: Source::Share, causes: Vec::new() }];
    let raised: BTreeSet<Cause> = report.verdicts.iter().map(|r| r.verdict.cause).collect();
    for cause in raised {
        for &reading in Reading::cited_by(cause) {
            match panels.iter_mut().find(|p| p.source == Source::Reading(reading)) {
                Some(panel) => panel.causes.push(cause),
                None => panels.push(Panel { source: Source::Reading(reading), causes: vec![cause] }),
            }
        }
    }
    panels
}

/// Writes `panel` into `frame`, on the chart's time axis.
pub(super) fn write(svg: &mut String, report: &WindowReport, panel: &Panel, frame: &Frame, time: &TimeScale) {
    let values = report
        .series
        .iter()
        .flat_map(|s| s.points.iter())
        .flat_map(|p| [panel.value(p), panel.has_expected().then_some(p.expected)].into_iter().flatten());
    // The verdicts' labels stack from the top of the plot.
    let headroom = 6.0 + 13.0 * panel.verdicts(report).count() as f64;
    let axis = ValueAxis::fit(values, panel.style(), (frame.top, frame.bottom), headroom);
    let causes: Vec<&str> = panel.causes.iter().map(|c| c.name()).collect();
    let cause_attribute =
        if causes.is_empty() { String::new() } else { format!(r#" data-cause="{}""#, causes.join(" ")) };
    let _ = writeln!(svg, r#"<g class="panel" data-panel="{}"{cause_attribute}>"#, panel.name());
    write_frame(svg, report, panel, frame, time, &axis);
    write_verdicts(svg, report, panel, frame, time);
    for (i, series) in report.series.iter().enumerate() {
        write_series(svg, report, panel, (i, series), time, &axis);
    }
    write_end_labels(svg, report, panel, frame, &axis);
    if !report.series.iter().flat_map(|s| &s.points).any(|p| panel.value(p).is_some()) {
        let _ = writeln!(
            svg,
            r##"<text class="no-data" data-panel="{}" x="{:.1}" y="{:.1}" text-anchor="middle" fill="#666">not recorded in this report</text>"##,
            panel.name(),
            (LEFT + PLOT_RIGHT) / 2.0,
            (frame.top + frame.bottom) / 2.0
        );
    }
    svg.push_str("</g>\n");
}

/// Title, window, grid, value ticks and axis lines.
fn write_frame(
    svg: &mut String,
    report: &WindowReport,
    panel: &Panel,
    frame: &Frame,
    time: &TimeScale,
    axis: &ValueAxis,
) {
    let (name, top, bottom) = (panel.name(), frame.top, frame.bottom);
    let _ = writeln!(
        svg,
        r##"<text class="panel-title" data-panel="{name}" x="{LEFT}" y="{:.1}" font-size="13" fill="#222">{}</text>"##,
        top - 8.0,
        escape(&panel.title(report))
    );
    let (wx0, wx1) = (time.x(report.window.start_ms), time.x(report.window.end_ms));
    let _ = writeln!(
        svg,
        r##"<rect class="window" data-panel="{name}" x="{wx0:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="#9ecae1" fill-opacity="0.3"><title class="tooltip">window {}</title></rect>"##,
        (wx1 - wx0).max(0.0),
        bottom - top,
        escape(&report.window.name)
    );
    for (t_ms, _) in time.ticks() {
        let x = time.x(t_ms);
        let _ = writeln!(
            svg,
            r##"<line class="grid" data-axis="x" data-panel="{name}" x1="{x:.1}" y1="{top:.1}" x2="{x:.1}" y2="{bottom:.1}" stroke="#000" stroke-opacity="0.08"/>"##
        );
    }
    for (value, label) in axis.ticks() {
        let y = axis.y(value);
        let _ = writeln!(
            svg,
            r##"<g class="tick" data-axis="y" data-panel="{name}"><line class="tick-mark" x1="{:.1}" y1="{y:.1}" x2="{LEFT}" y2="{y:.1}" stroke="#444"/><line class="grid" x1="{LEFT}" y1="{y:.1}" x2="{PLOT_RIGHT}" y2="{y:.1}" stroke="#000" stroke-opacity="0.08"/><text class="tick-label" x="{:.1}" y="{:.1}" text-anchor="end" fill="#444">{label}</text></g>"##,
            LEFT - 4.0,
            LEFT - 6.0,
            y + 4.0
        );
    }
    let _ = writeln!(
        svg,
        r##"<path class="axis" data-panel="{name}" d="M{LEFT},{top:.1} V{bottom:.1} H{PLOT_RIGHT}" fill="none" stroke="#444"/>"##
    );
}

/// A marker where each verdict was raised, labelled; in an evidence panel also its active span, from the
/// raise to the clear (or its last active tick).
fn write_verdicts(svg: &mut String, report: &WindowReport, panel: &Panel, frame: &Frame, time: &TimeScale) {
    let (name, top, bottom) = (panel.name(), frame.top, frame.bottom);
    for (k, reported) in panel.verdicts(report).enumerate() {
        let verdict = &reported.verdict;
        let attributes =
            format!(r#"data-panel="{name}" data-node="{}" data-cause="{}""#, escape(&verdict.node), verdict.cause);
        let x = time.x(reported.raised_ms);
        if panel.source != Source::Share {
            let end = time.x(reported.cleared_ms.unwrap_or(reported.last_active_ms));
            let _ = writeln!(
                svg,
                r#"<rect class="verdict-span" {attributes} x="{x:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="{VERDICT_RED}" fill-opacity="0.08"/>"#,
                (end - x).max(0.0),
                bottom - top
            );
        }
        let tooltip = format!(
            "{} on {} (confidence {})",
            verdict.cause,
            verdict.node,
            crate::verdict::format_number(verdict.confidence)
        );
        let _ = writeln!(
            svg,
            r#"<line class="verdict" {attributes} x1="{x:.1}" y1="{top:.1}" x2="{x:.1}" y2="{bottom:.1}" stroke="{VERDICT_RED}" stroke-dasharray="2 3"><title class="tooltip">{}</title></line>"#,
            escape(&tooltip)
        );
        // Labels stack down so that verdicts raised together stay legible, and turn left at the right edge.
        let label = format!("{} {}", verdict.node, verdict.cause);
        let width = label.chars().count() as f64 * 6.2;
        let (label_x, anchor) = if x + 3.0 + width > PLOT_RIGHT { (x - 3.0, "end") } else { (x + 3.0, "start") };
        let _ = writeln!(
            svg,
            r##"<text class="verdict-label" {attributes} x="{label_x:.1}" y="{:.1}" text-anchor="{anchor}" fill="{VERDICT_RED}" font-size="11" stroke="#fff" stroke-width="3" paint-order="stroke">{}</text>"##,
            top + 12.0 + k as f64 * 13.0,
            escape(&label)
        );
    }
}

/// One node's line (split where it has no figure), and its expected share dashed in the same colour.
fn write_series(
    svg: &mut String,
    report: &WindowReport,
    panel: &Panel,
    (i, series): (usize, &NodeSeries),
    time: &TimeScale,
    axis: &ValueAxis,
) {
    let colour = colour(i);
    let attributes = format!(
        r#"data-node="{}" data-panel="{}" data-signal="{}""#,
        escape(&series.node),
        panel.name(),
        panel.signal(report)
    );
    let _ = writeln!(svg, r#"<g class="node" {attributes}>"#);
    for segment in segments(series, |p| panel.value(p), time, axis) {
        let _ = writeln!(
            svg,
            r#"<polyline class="observed" {attributes} points="{segment}" fill="none" stroke="{colour}" stroke-width="2"/>"#
        );
    }
    if panel.has_expected() {
        let nodes = report.series.len().max(1);
        let _ = writeln!(
            svg,
            r#"<polyline class="expected" {attributes} points="{}" fill="none" stroke="{colour}" stroke-width="1.5" stroke-dasharray="8 {}" stroke-dashoffset="{}"/>"#,
            expected_points(series, time, axis),
            // Nodes with the same expected share overlap: offset the dashes so every colour shows.
            8 * nodes - 4,
            8 * i
        );
    }
    svg.push_str("</g>\n");
}

/// Polyline point lists of a node's values, split where there is no value.
fn segments(
    series: &NodeSeries,
    value: impl Fn(&SharePoint) -> Option<f64>,
    time: &TimeScale,
    axis: &ValueAxis,
) -> Vec<String> {
    let mut segments = Vec::new();
    let mut current = String::new();
    for point in &series.points {
        match value(point) {
            Some(v) => {
                if !current.is_empty() {
                    current.push(' ');
                }
                let _ = write!(current, "{:.1},{:.1}", time.x(point.t_ms), axis.y(v));
            }
            None if !current.is_empty() => segments.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        segments.push(current);
    }
    segments
}

/// The expected share as a step line (it changes only when endpoints change).
fn expected_points(series: &NodeSeries, time: &TimeScale, axis: &ValueAxis) -> String {
    let mut points: Vec<String> = Vec::new();
    let mut previous: Option<f64> = None;
    for point in &series.points {
        if let Some(p) = previous
            && p != point.expected
        {
            points.push(format!("{:.1},{:.1}", time.x(point.t_ms), axis.y(p)));
        }
        points.push(format!("{:.1},{:.1}", time.x(point.t_ms), axis.y(point.expected)));
        previous = Some(point.expected);
    }
    points.join(" ")
}

/// Each node's name right of the plot, level with its line's last value, so that a line is named
/// without telling colours apart; names that would overlap are pushed apart.
fn write_end_labels(svg: &mut String, report: &WindowReport, panel: &Panel, frame: &Frame, axis: &ValueAxis) {
    const GAP: f64 = 12.0;
    let mut labels: Vec<(f64, usize)> = report
        .series
        .iter()
        .enumerate()
        .filter_map(|(i, s)| Some((axis.y(s.points.iter().rev().find_map(|p| panel.value(p))?), i)))
        .collect();
    labels.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let positions = spread(&labels.iter().map(|l| l.0).collect::<Vec<_>>(), frame.top + 4.0, frame.bottom, GAP);
    let names: Vec<&str> = report.series.iter().map(|s| s.node.as_str()).collect();
    let short = short_names(&names);
    for ((_, i), y) in labels.iter().zip(positions) {
        let node = escape(names[*i]);
        let _ = writeln!(
            svg,
            r##"<g class="end-label" data-node="{node}" data-panel="{}"><title class="tooltip">{node}</title><line class="end-swatch" x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{}" stroke-width="3"/><text class="end-label-text" x="{:.1}" y="{:.1}" fill="#333" font-size="11">{}</text></g>"##,
            panel.name(),
            PLOT_RIGHT + 6.0,
            PLOT_RIGHT + 16.0,
            colour(*i),
            PLOT_RIGHT + 20.0,
            y + 4.0,
            escape(&short[*i])
        );
    }
}

/// Node names as they fit right of the plots (about 18 characters): the host part before the first
/// dot when that still tells the nodes apart (cloud nodes share their domain), and a long one's start
/// and end around an ellipsis (numbered nodes differ at the end).
fn short_names(names: &[&str]) -> Vec<String> {
    const MAX: usize = 18;
    let hosts: Vec<&str> = names.iter().map(|n| n.split('.').next().unwrap_or(n)).collect();
    let distinct: BTreeSet<&&str> = hosts.iter().collect();
    let base = if distinct.len() == names.len() { hosts } else { names.to_vec() };
    base.iter()
        .map(|name| {
            let chars: Vec<char> = name.chars().collect();
            if chars.len() <= MAX {
                return name.to_string();
            }
            let head: String = chars[..MAX / 2 - 1].iter().collect();
            let tail: String = chars[chars.len() - MAX / 2..].iter().collect();
            format!("{head}…{tail}")
        })
        .collect()
}

/// Positions for labels wanted at `wanted` (ascending): at least `gap` apart, within `top..=bottom`
/// as far as they fit.
fn spread(wanted: &[f64], top: f64, bottom: f64, gap: f64) -> Vec<f64> {
    let mut placed: Vec<f64> = Vec::with_capacity(wanted.len());
    for &y in wanted {
        let floor = placed.last().map_or(top, |&last| last + gap);
        placed.push(y.max(floor));
    }
    // Pushed past the bottom: move the tail back up, keeping the gaps.
    let mut ceiling = bottom;
    for y in placed.iter_mut().rev() {
        *y = y.min(ceiling);
        ceiling = *y - gap;
    }
    placed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_node_names_are_shortened_to_what_tells_them_apart() {
        let cloud = ["ip-10-0-1-23.eu-west-1.compute.internal", "ip-10-0-1-24.eu-west-1.compute.internal"];
        assert_eq!(short_names(&cloud), ["ip-10-0-1-23", "ip-10-0-1-24"]);
        assert_eq!(short_names(&["node.1", "node.2"]), ["node.1", "node.2"]);
        assert_eq!(short_names(&["a-very-long-cluster-worker-01"]), ["a-very-l…worker-01"]);
        assert_eq!(short_names(&["rpi-01"]), ["rpi-01"]);
    }

    #[test]
    fn labels_keep_their_gap_inside_the_plot() {
        assert_eq!(spread(&[50.0, 50.0, 50.0], 0.0, 100.0, 10.0), [50.0, 60.0, 70.0]);
        assert_eq!(spread(&[95.0, 100.0, 100.0], 0.0, 100.0, 10.0), [80.0, 90.0, 100.0]);
        assert_eq!(spread(&[-20.0, 30.0], 0.0, 100.0, 10.0), [0.0, 30.0]);
    }
}
