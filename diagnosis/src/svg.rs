//! The SVG chart of a window report. On top, each node's observed share over time (solid) against its
//! expected share (dashed, same colour); below it, one panel per figure that the evidence of a raised
//! cause cites (NIC share and forwarded bytes for ingress concentration, CPU outside pods, temperature
//! and frequency, ...), each with its own value axis and unit, all on one time axis with the window
//! shaded, a marker where each verdict was raised and, in its cause's panels, its active span.
//!
//! Written by hand with `std::fmt`: the chart is a few hundred elements of a dozen kinds, and an SVG crate
//! would add a dependency for string formatting. Every element carries a class, and `data-panel`,
//! `data-node`, `data-signal`, `data-cause` or `data-axis` where they apply, so that tests and stylesheets
//! can find it; [`read`] reads a chart back into numbers through its own axis labels.

mod panel;
pub mod read;
mod scale;

use std::fmt::Write as _;

use crate::report::WindowReport;
use panel::Frame;
use scale::TimeScale;

const WIDTH: f64 = 900.0;
/// Left of the plots: room for the value ticks' labels.
const LEFT: f64 = 70.0;
/// Right of the plots: room for the nodes' names at their lines' ends.
const PLOT_RIGHT: f64 = 760.0;
/// Between the title row of one panel and the bottom of the one above.
const PANEL_GAP: f64 = 14.0;
/// Above each plot area: the panel's title.
const TITLE_ROW: f64 = 22.0;
/// Below the last plot: the time ticks' labels and the axis caption.
const BOTTOM: f64 = 46.0;

/// Tableau 10: distinguishable colours, also for the common colour blindnesses.
const PALETTE: [&str; 10] =
    ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];

/// The colour of the `i`th node (nodes sorted by name), the same in every panel.
fn colour(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

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

/// Renders the chart as a standalone SVG document.
pub fn render(report: &WindowReport) -> String {
    let panels = panel::panels(report);
    let time = TimeScale::of(report, LEFT, PLOT_RIGHT);
    let mut legend = String::new();
    let legend_bottom = write_legend(&mut legend, report, 44.0);
    let mut frames = Vec::with_capacity(panels.len());
    let mut y = legend_bottom + TITLE_ROW;
    for panel in &panels {
        frames.push(Frame { top: y, bottom: y + panel.height() });
        y += panel.height() + PANEL_GAP + TITLE_ROW;
    }
    let plots_bottom = frames.last().map_or(y, |f| f.bottom);
    let height = plots_bottom + BOTTOM;

    let mut svg = String::new();
    let evidence = if panels.len() > 1 { ", and what each verdict rests on" } else { "" };
    let title = format!("bakery window {}: share of {} per node{evidence}", report.window.name, report.signal.name());
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="window-report" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<title class="chart-title">{}</title>"#, escape(&title));
    let _ =
        writeln!(svg, r##"<rect class="background" x="0" y="0" width="{WIDTH}" height="{height}" fill="#ffffff"/>"##);
    let _ = writeln!(
        svg,
        r##"<text class="heading" x="{LEFT}" y="24" font-size="14" fill="#222">{}</text>"##,
        escape(&title)
    );
    svg.push_str(&legend);
    for (panel, frame) in panels.iter().zip(&frames) {
        panel::write(&mut svg, report, panel, frame, &time);
    }
    write_time_axis(&mut svg, &time, plots_bottom);
    svg.push_str("</svg>\n");
    svg
}

/// One row (wrapped when full) naming each node by its colour, then the line styles; returns the
/// bottom of the last row.
fn write_legend(svg: &mut String, report: &WindowReport, top: f64) -> f64 {
    const ROW: f64 = 18.0;
    let _ = writeln!(svg, r#"<g class="legend">"#);
    let (mut x, mut y) = (LEFT, top);
    let mut place = |width: f64| {
        if x + width > WIDTH - 10.0 && x > LEFT {
            (x, y) = (LEFT, y + ROW);
        }
        let at = (x, y);
        x += width + 16.0;
        at
    };
    for (i, series) in report.series.iter().enumerate() {
        let node = escape(&series.node);
        let (lx, ly) = place(26.0 + series.node.chars().count() as f64 * 7.0);
        let _ = writeln!(
            svg,
            r##"<line class="legend-swatch" data-node="{node}" x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{}" stroke-width="3"/><text class="legend-label" data-node="{node}" x="{:.1}" y="{:.1}" fill="#222">{node}</text>"##,
            lx + 20.0,
            colour(i),
            lx + 26.0,
            ly + 4.0
        );
    }
    let keys = [
        ("observed", r##"stroke="#444" stroke-width="2""##, "observed"),
        ("expected", r##"stroke="#444" stroke-width="1.5" stroke-dasharray="6 3""##, "expected share"),
        ("verdict", r##"stroke="#d62728" stroke-dasharray="2 3""##, "verdict raised"),
    ];
    let verdicts = !report.verdicts.is_empty();
    for (key, style, text) in keys.into_iter().filter(|k| verdicts || k.0 != "verdict") {
        let (lx, ly) = place(26.0 + text.len() as f64 * 7.0);
        let _ = writeln!(
            svg,
            r##"<line class="legend-key" data-signal="{key}" x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" {style}/><text class="legend-label" x="{:.1}" y="{:.1}" fill="#444">{text}</text>"##,
            lx + 20.0,
            lx + 26.0,
            ly + 4.0
        );
    }
    let areas = [("window", "#9ecae1", "0.3", "window"), ("verdict-span", "#d62728", "0.08", "verdict active")];
    for (key, fill, opacity, text) in areas.into_iter().filter(|a| verdicts || a.0 != "verdict-span") {
        let (lx, ly) = place(26.0 + text.len() as f64 * 7.0);
        let _ = writeln!(
            svg,
            r##"<rect class="legend-key" data-signal="{key}" x="{lx:.1}" y="{:.1}" width="20" height="10" fill="{fill}" fill-opacity="{opacity}"/><text class="legend-label" x="{:.1}" y="{:.1}" fill="#444">{text}</text>"##,
            ly - 5.0,
            lx + 26.0,
            ly + 4.0
        );
    }
    let _ = writeln!(svg, "</g>");
    y + ROW / 2.0
}

/// The time ticks under the last panel (the panels above share them through their grid lines).
fn write_time_axis(svg: &mut String, time: &TimeScale, bottom: f64) {
    let _ = writeln!(svg, r#"<g class="time-axis">"#);
    for (t_ms, label) in time.ticks() {
        let x = time.x(t_ms);
        let _ = writeln!(
            svg,
            r##"<g class="tick" data-axis="x"><line class="tick-mark" x1="{x:.1}" y1="{bottom:.1}" x2="{x:.1}" y2="{:.1}" stroke="#444"/><text class="tick-label" x="{x:.1}" y="{:.1}" text-anchor="middle" fill="#444">{label}</text></g>"##,
            bottom + 4.0,
            bottom + 18.0
        );
    }
    let _ = writeln!(
        svg,
        r##"<text class="axis-caption" x="{:.1}" y="{:.1}" text-anchor="middle" fill="#444">seconds from window start</text>"##,
        (LEFT + PLOT_RIGHT) / 2.0,
        bottom + 38.0
    );
    let _ = writeln!(svg, "</g>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape(r#"a<b>&"c"'"#), "a&lt;b&gt;&amp;&quot;c&quot;&apos;");
    }
}
