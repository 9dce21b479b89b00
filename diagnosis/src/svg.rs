//! The SVG chart of a window report: each node's observed share over time (solid), its expected share
//! (dashed, same colour), the window shaded, and a marker where each verdict was raised.
//!
//! Written by hand with `std::fmt`: the chart is a few dozen elements, and an SVG crate would add a
//! dependency for string formatting. Every element carries a class (and `data-node` for a node's
//! series) so that tests and stylesheets can find it.

use std::fmt::Write as _;

use crate::report::{NodeSeries, WindowReport};
use crate::verdict::format_number;

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 180.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;

/// Tableau 10: distinguishable colours, also for the common colour blindnesses.
const PALETTE: [&str; 10] =
    ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];

/// Escapes text for XML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Maps time and share to chart coordinates.
struct Scale {
    t0: i64,
    t1: i64,
    y_max: f64,
}

impl Scale {
    fn x(&self, t_ms: i64) -> f64 {
        let span = (self.t1 - self.t0).max(1) as f64;
        LEFT + (t_ms - self.t0) as f64 / span * (WIDTH - LEFT - RIGHT)
    }

    fn y(&self, share: f64) -> f64 {
        TOP + (1.0 - share / self.y_max) * (HEIGHT - TOP - BOTTOM)
    }
}

fn scale_for(report: &WindowReport) -> Scale {
    let times = report.series.iter().flat_map(|s| s.points.iter().map(|p| p.t_ms));
    let t0 = times.clone().min().unwrap_or(report.window.start_ms).min(report.window.start_ms);
    let t1 = times.max().unwrap_or(report.window.end_ms).max(report.window.end_ms);
    let highest = report
        .series
        .iter()
        .flat_map(|s| s.points.iter().flat_map(|p| [p.share.unwrap_or(0.0), p.expected]))
        .fold(1.0_f64, f64::max);
    Scale { t0, t1, y_max: (highest * 4.0).ceil() / 4.0 }
}

/// Polyline point lists of the observed share, split where there is no data.
fn observed_segments(series: &NodeSeries, scale: &Scale) -> Vec<String> {
    let mut segments = Vec::new();
    let mut current = String::new();
    for point in &series.points {
        match point.share {
            Some(share) => {
                if !current.is_empty() {
                    current.push(' ');
                }
                let _ = write!(current, "{:.1},{:.1}", scale.x(point.t_ms), scale.y(share));
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
fn expected_points(series: &NodeSeries, scale: &Scale) -> String {
    let mut points: Vec<String> = Vec::new();
    let mut previous: Option<f64> = None;
    for point in &series.points {
        if let Some(p) = previous
            && p != point.expected
        {
            points.push(format!("{:.1},{:.1}", scale.x(point.t_ms), scale.y(p)));
        }
        points.push(format!("{:.1},{:.1}", scale.x(point.t_ms), scale.y(point.expected)));
        previous = Some(point.expected);
    }
    points.join(" ")
}

/// The axes, with share ticks every 0.25 and time ticks relative to the window start.
fn write_axes(svg: &mut String, report: &WindowReport, scale: &Scale) {
    let (x_axis_y, plot_right) = (HEIGHT - BOTTOM, WIDTH - RIGHT);
    let _ = writeln!(svg, r##"<g class="axes" stroke="#444" fill="#444">"##);
    let _ = writeln!(svg, r#"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{x_axis_y}"/>"#);
    let _ = writeln!(svg, r#"<line x1="{LEFT}" y1="{x_axis_y}" x2="{plot_right}" y2="{x_axis_y}"/>"#);
    let mut share_tick = 0.0;
    while share_tick <= scale.y_max + 1e-9 {
        let y = scale.y(share_tick);
        let _ = writeln!(
            svg,
            r#"<line x1="{:.1}" y1="{y:.1}" x2="{LEFT}" y2="{y:.1}"/><text x="{:.1}" y="{:.1}" text-anchor="end" stroke="none">{share_tick:.2}</text>"#,
            LEFT - 4.0,
            LEFT - 6.0,
            y + 4.0
        );
        share_tick += 0.25;
    }
    let seconds = (scale.t1 - scale.t0) as f64 / 1000.0;
    let step_s = [1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0]
        .into_iter()
        .find(|s| seconds / s <= 10.0)
        .unwrap_or(1200.0);
    let first = ((scale.t0 - report.window.start_ms) as f64 / 1000.0 / step_s).ceil() as i64;
    let last = ((scale.t1 - report.window.start_ms) as f64 / 1000.0 / step_s).floor() as i64;
    for i in first..=last {
        let at_s = i as f64 * step_s;
        let x = scale.x(report.window.start_ms + (at_s * 1000.0) as i64);
        let _ = writeln!(
            svg,
            r#"<line x1="{x:.1}" y1="{x_axis_y}" x2="{x:.1}" y2="{:.1}"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" stroke="none">{at_s:+.0} s</text>"#,
            x_axis_y + 4.0,
            x_axis_y + 18.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" stroke="none">seconds from window start</text>"#,
        (LEFT + plot_right) / 2.0,
        HEIGHT - 8.0
    );
    let _ = writeln!(svg, "</g>");
}

/// Renders the chart as a standalone SVG document.
pub fn render(report: &WindowReport) -> String {
    // One piece: the SVG is written in paint order (window, axes, one group per node, legend, verdict markers) with
    // the same scale throughout.
    let scale = scale_for(report);
    let mut svg = String::new();
    let title = format!("bakery window {}: share of {} per node", report.window.name, report.signal.name());
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, "<title>{}</title>", escape(&title));
    let _ =
        writeln!(svg, r##"<rect class="background" x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>"##);
    let _ = writeln!(
        svg,
        r##"<text class="heading" x="{LEFT}" y="24" font-size="14" fill="#222">{}</text>"##,
        escape(&title)
    );

    // The window, shaded.
    let (wx0, wx1) = (scale.x(report.window.start_ms), scale.x(report.window.end_ms));
    let _ = writeln!(
        svg,
        r##"<rect class="window" x="{wx0:.1}" y="{TOP}" width="{:.1}" height="{:.1}" fill="#9ecae1" fill-opacity="0.3"><title>window {}</title></rect>"##,
        (wx1 - wx0).max(0.0),
        HEIGHT - TOP - BOTTOM,
        escape(&report.window.name)
    );

    write_axes(&mut svg, report, &scale);
    let (x_axis_y, plot_right) = (HEIGHT - BOTTOM, WIDTH - RIGHT);

    // One group per node: observed share (solid) and expected share (dashed).
    for (i, series) in report.series.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let node = escape(&series.node);
        let _ = writeln!(svg, r#"<g class="node" data-node="{node}">"#);
        for segment in observed_segments(series, &scale) {
            let _ = writeln!(
                svg,
                r#"<polyline class="observed" data-node="{node}" points="{segment}" fill="none" stroke="{colour}" stroke-width="2"/>"#
            );
        }
        let _ = writeln!(
            svg,
            r#"<polyline class="expected" data-node="{node}" points="{}" fill="none" stroke="{colour}" stroke-width="1.5" stroke-dasharray="8 {}" stroke-dashoffset="{}"/>"#,
            expected_points(series, &scale),
            // Nodes with the same expected share overlap: offset the dashes so every colour shows.
            8 * report.series.len().max(1) - 4,
            8 * i
        );
        let legend_y = TOP + 10.0 + i as f64 * 18.0;
        let legend_x = plot_right + 16.0;
        let _ = writeln!(
            svg,
            r#"<line class="legend" x1="{legend_x:.1}" y1="{legend_y:.1}" x2="{:.1}" y2="{legend_y:.1}" stroke="{colour}" stroke-width="2"/><text x="{:.1}" y="{:.1}">{node}</text>"#,
            legend_x + 20.0,
            legend_x + 26.0,
            legend_y + 4.0
        );
        let _ = writeln!(svg, "</g>");
    }
    let key_y = TOP + 16.0 + report.series.len() as f64 * 18.0;
    for (line, text) in ["solid: observed", "dashed: expected"].iter().enumerate() {
        let _ = writeln!(
            svg,
            r##"<text class="legend-note" x="{:.1}" y="{:.1}" fill="#444">{text}</text>"##,
            plot_right + 16.0,
            key_y + line as f64 * 16.0
        );
    }

    // Verdict markers.
    let _ = writeln!(svg, r#"<g class="verdicts">"#);
    for reported in &report.verdicts {
        let x = scale.x(reported.raised_ms);
        let verdict = &reported.verdict;
        let label = format!("{} on {} (confidence {})", verdict.cause, verdict.node, format_number(verdict.confidence));
        let _ = writeln!(
            svg,
            r##"<line class="verdict" x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{x_axis_y}" stroke="#d62728" stroke-dasharray="2 3"><title>{}</title></line><text x="{:.1}" y="{:.1}" fill="#d62728" font-size="11">{}</text>"##,
            escape(&label),
            x + 3.0,
            TOP + 12.0,
            escape(&format!("{} {}", verdict.node, verdict.cause))
        );
    }
    let _ = writeln!(svg, "</g>");
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape(r#"a<b>&"c"'"#), "a&lt;b&gt;&amp;&quot;c&quot;&apos;");
    }
}
