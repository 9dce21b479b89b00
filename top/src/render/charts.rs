//! The nodes view's lower half: each node's traffic share and CPU over time, as braille charts.

use std::collections::VecDeque;

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Borders, Chart, Dataset, GraphType, Paragraph};

use super::format::{self, UNKNOWN};
use super::theme::Theme;
use crate::app::{App, ChartPoint};
use crate::model::{AgentState, NodeView};

/// Rows the charts need at least: two borders, the time labels and axis, and four rows of plot
/// (16 braille dots, enough to tell 10 % steps apart). The nodes view draws no chart below this,
/// so the table and the detail keep their room.
pub(super) const MIN_HEIGHT: u16 = 8;

/// Columns one chart needs at least: borders, the 0–100 labels and axis, a short gutter of
/// line-end tags and 20 columns of plot. Below two of these side by side (plus the legend) the
/// charts stack, and below one they are left out.
const MIN_WIDTH: u16 = 32;

/// The time charted when no load-test window is open, and its name in the titles.
const RECENT_MS: i64 = 5 * 60_000;
const RECENT: &str = "last 5m";

/// Shortest time charted, so that a window opened a moment ago does not stretch two points
/// across the whole width.
const MIN_SPAN_MS: i64 = 10_000;

/// Columns left of the plot: the widest y label ("100") and the axis line.
const Y_LABELS: u16 = 4;

/// Braille dots between two dots of an expected-share line.
const DOT_GAP: f64 = 3.0;

/// Line-end tags, one character per node in name order; the legend says which is which. They
/// tell the lines apart where colour cannot (`NO_COLOR`, two nodes drawn over each other).
const TAGS: &[u8] = b"123456789abcdefghijklmnopqrstuvwxyz";

/// Tags shown at most on one gutter row ("1,2,3,4…"), so that many lines ending together do not
/// squeeze the plot; the legend still lists every node.
const GUTTER_TAGS: usize = 4;

/// Longest node name the legend shows in full; longer ones are cut, so the plots keep their width.
const LEGEND_NAME: usize = 20;

/// Longest load-test window name shown in a title.
const WINDOW_NAME: usize = 24;

/// The time charted: its ends (the client's clock) and how the titles name it.
struct Range {
    start_ms: i64,
    end_ms: i64,
    name: String,
}

impl Range {
    /// Over the open load-test window when there is one, else the last minutes; it ends at the
    /// data shown, so a frozen view holds the charts still.
    fn of(app: &App) -> Option<Range> {
        let end_ms = app.data.as_ref()?.taken_ms;
        if let Some(window) = app.open_window()
            && window.start_ms < end_ms
        {
            let name = cut(&window.name, WINDOW_NAME);
            let start_ms = window.start_ms.min(end_ms - MIN_SPAN_MS);
            return Some(Range { start_ms, end_ms, name: format!("window \"{name}\"") });
        }
        Some(Range { start_ms: end_ms - RECENT_MS, end_ms, name: RECENT.to_string() })
    }

    fn seconds(&self) -> f64 {
        (self.end_ms - self.start_ms) as f64 / 1000.0
    }

    fn x(&self, at_ms: i64) -> f64 {
        (at_ms - self.start_ms) as f64 / 1000.0
    }
}

/// What a chart draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Measure {
    /// Observed share, with the expected share dotted under it.
    Share,
    Cpu,
}

/// One node's lines, in chart coordinates (seconds since the range's start, percent).
struct Series {
    tag: char,
    style: Style,
    selected: bool,
    share: Vec<(f64, f64)>,
    expected: Vec<(f64, f64)>,
    cpu: Vec<(f64, f64)>,
}

/// Draws the charts and their legend into `area`, or nothing when it is too small.
pub(super) fn render(app: &App, theme: Theme, frame: &mut Frame, area: Rect) {
    let nodes = app.visible_nodes();
    let Some(range) = Range::of(app) else { return };
    if nodes.is_empty() || area.height < MIN_HEIGHT {
        return;
    }
    let name_width = nodes.iter().map(|n| n.name.chars().count()).max().unwrap_or(4).clamp(4, LEGEND_NAME) as u16;
    let [charts, legend_area] =
        Layout::horizontal([Constraint::Fill(1), Constraint::Length(legend_width(name_width))]).areas(area);
    let [share_area, cpu_area] = if charts.width >= 2 * MIN_WIDTH {
        Layout::horizontal([Constraint::Fill(1), Constraint::Fill(1)]).areas(charts)
    } else if charts.width >= MIN_WIDTH && area.height >= 2 * MIN_HEIGHT {
        Layout::vertical([Constraint::Fill(1), Constraint::Fill(1)]).areas(charts)
    } else {
        return;
    };
    // The expected share is dotted every few braille dots of the narrower plot.
    let plot_width = share_area.width.saturating_sub(2 + Y_LABELS + 3).max(1);
    let dot_step = range.seconds() * DOT_GAP / (2.0 * f64::from(plot_width));
    let selected = nodes.get(app.selected()).map(|n| n.name.as_str());
    let series: Vec<Series> = nodes.iter().map(|node| series(app, theme, node, selected, &range, dot_step)).collect();

    let share_block = Block::new()
        .borders(Borders::ALL)
        .border_style(theme.dim())
        .title(Span::styled(format!(" traffic share % · {} ", range.name), theme.title()))
        .title_bottom(Line::styled(" dotted: expected share ", theme.dim()).right_aligned());
    draw_chart(frame, theme, share_area, share_block, &range, &series, Measure::Share);
    let cpu_block = Block::new()
        .borders(Borders::ALL)
        .border_style(theme.dim())
        .title(Span::styled(format!(" CPU busy % · {} ", range.name), theme.title()));
    draw_chart(frame, theme, cpu_area, cpu_block, &range, &series, Measure::Cpu);
    frame.render_widget(legend(app, theme, &nodes, selected, name_width, legend_area.height), legend_area);
}

/// Legend columns: tag, mark, name, "obs/exp", "cpu", two borders and the spaces between.
fn legend_width(name_width: u16) -> u16 {
    2 + 1 + name_width + 1 + 7 + 1 + 4 + 2
}

/// The node's tag and colour come from its place among all nodes by name, so sorting or
/// filtering the table does not relabel the lines.
fn series(app: &App, theme: Theme, node: &NodeView, selected: Option<&str>, range: &Range, step: f64) -> Series {
    let index = app.history.keys().position(|name| *name == node.name).unwrap_or(0);
    let empty = VecDeque::new();
    let chart = app.history.get(&node.name).map_or(&empty, |h| &h.chart);
    let expected = points(chart, range, |p| p.share.map(|s| s.expected * 100.0));
    Series {
        tag: TAGS.get(index).map_or('*', |&b| char::from(b)),
        style: theme.series(index),
        selected: selected == Some(node.name.as_str()),
        share: points(chart, range, |p| p.share.map(|s| s.observed * 100.0)),
        expected: dotted(&expected, step),
        cpu: points(chart, range, |p| p.cpu_percent),
    }
}

impl Series {
    fn line(&self, measure: Measure) -> &[(f64, f64)] {
        match measure {
            Measure::Share => &self.share,
            Measure::Cpu => &self.cpu,
        }
    }
}

/// The points within the range, and the one before it so that the line enters from the left
/// edge (the chart clips it there).
fn points(chart: &VecDeque<ChartPoint>, range: &Range, value: impl Fn(&ChartPoint) -> Option<f64>) -> Vec<(f64, f64)> {
    let first = chart.partition_point(|p| p.at_ms < range.start_ms).saturating_sub(1);
    chart
        .range(first..)
        .filter(|p| p.at_ms <= range.end_ms)
        .filter_map(|p| Some((range.x(p.at_ms), value(p)?)))
        .collect()
}

/// A step line through `points` as dots every `step` seconds. The dots sit on multiples of
/// `step`, so the equal expectations of several nodes fall on the same dots.
fn dotted(points: &[(f64, f64)], step: f64) -> Vec<(f64, f64)> {
    let mut dots = Vec::new();
    if step <= 0.0 {
        return dots;
    }
    for pair in points.windows(2) {
        let (from, y) = pair[0];
        let mut x = (from.max(0.0) / step).ceil() * step;
        while x < pair[1].0 {
            dots.push((x, y));
            x += step;
        }
    }
    dots.extend(points.last().filter(|(x, _)| *x >= 0.0));
    dots
}

/// One chart in its block: the lines (the selected node's drawn last, on top), then the tag of
/// each line in a gutter right of the plot, on the row where the line ends.
fn draw_chart(
    frame: &mut Frame,
    theme: Theme,
    area: Rect,
    block: Block<'static>,
    range: &Range,
    series: &[Series],
    measure: Measure,
) {
    let inner = block.inner(area);
    frame.render_widget(block, area);
    // The time labels and the axis take the two bottom rows of the chart.
    let plot_height = inner.height.saturating_sub(2);
    let ends: Vec<(u16, &Series)> = series
        .iter()
        .filter_map(|s| s.line(measure).last().filter(|(x, _)| *x >= 0.0).map(|&(_, y)| (row_of(y, plot_height), s)))
        .collect();
    let tags = gutter(&ends, plot_height, theme);
    let gutter_width = tags.iter().map(Line::width).max().unwrap_or(0).max(1) as u16;
    let [plot, gutter_area] = Layout::horizontal([Constraint::Fill(1), Constraint::Length(gutter_width)]).areas(inner);

    let mut datasets = Vec::new();
    if measure == Measure::Share {
        for s in series {
            datasets.push(dataset(&s.expected, theme.dim(), GraphType::Scatter));
        }
    }
    let (others, chosen): (Vec<&Series>, Vec<&Series>) = series.iter().partition(|s| !s.selected);
    for s in others.into_iter().chain(chosen) {
        datasets.push(dataset(s.line(measure), s.style, GraphType::Line));
    }
    let labels = [format::clock(range.start_ms), format::clock(range.end_ms)];
    let chart = Chart::new(datasets)
        .x_axis(
            Axis::default()
                .bounds([0.0, range.seconds()])
                .labels(labels)
                .labels_alignment(Alignment::Right)
                .style(theme.dim()),
        )
        .y_axis(
            Axis::default()
                .bounds([0.0, 100.0])
                .labels(["0", "50", "100"])
                .labels_alignment(Alignment::Right)
                .style(theme.dim()),
        )
        .legend_position(None);
    frame.render_widget(chart, plot);
    let tags_area = Rect { y: plot.y, height: plot_height.min(plot.height), ..gutter_area };
    frame.render_widget(Paragraph::new(tags), tags_area);
}

fn dataset(data: &[(f64, f64)], style: Style, kind: GraphType) -> Dataset<'_> {
    Dataset::default().data(data).marker(Marker::Braille).graph_type(kind).style(style)
}

/// The plot row (0 at the top) where a value in percent is drawn, as the braille canvas rounds
/// it: four dots a row.
fn row_of(percent: f64, plot_height: u16) -> u16 {
    let dots = f64::from(plot_height) * 4.0 - 1.0;
    let dot = ((100.0 - percent.clamp(0.0, 100.0)) * dots / 100.0).round().max(0.0);
    (dot as u16 / 4).min(plot_height.saturating_sub(1))
}

/// One line per plot row with the tags of the lines that end there ("1,3" when two meet), the
/// selected node's reversed.
fn gutter(ends: &[(u16, &Series)], plot_height: u16, theme: Theme) -> Vec<Line<'static>> {
    (0..plot_height)
        .map(|row| {
            let mut spans = vec![Span::raw(" ")];
            for (i, (_, s)) in ends.iter().filter(|(r, _)| *r == row).enumerate() {
                if i == GUTTER_TAGS {
                    spans.push(Span::raw("…"));
                    break;
                }
                if i > 0 {
                    spans.push(Span::raw(","));
                }
                let style = if s.selected { s.style.patch(theme.selected()) } else { s.style };
                spans.push(Span::styled(s.tag.to_string(), style.add_modifier(Modifier::BOLD)));
            }
            if spans.len() == 1 { Line::default() } else { Line::from(spans) }
        })
        .collect()
}

/// Which tag is which node, with the latest share (observed/expected) and CPU; the table's
/// marks (▲ flagged, ✕ gone, … silent) and the selected row reversed, as in the table.
fn legend(
    app: &App,
    theme: Theme,
    nodes: &[&NodeView],
    selected: Option<&str>,
    name_width: u16,
    height: u16,
) -> Paragraph<'static> {
    let width = name_width as usize;
    let mut lines = vec![Line::styled(
        format!("  {:<w$} {:>7} {:>4}", " NODE", "obs/exp", "CPU", w = width + 1),
        theme.table_header(),
    )];
    let rows = (height as usize).saturating_sub(3);
    let shown = if nodes.len() > rows { rows.saturating_sub(1) } else { nodes.len() };
    for node in &nodes[..shown] {
        let index = app.history.keys().position(|name| *name == node.name).unwrap_or(0);
        let tag = TAGS.get(index).map_or('*', |&b| char::from(b));
        let (mark, mark_style) = match (app.is_flagged(&node.name), node.agent) {
            (true, _) => ("▲", theme.bad()),
            (false, AgentState::Gone) => ("✕", theme.dim()),
            (false, AgentState::Stale) => ("…", theme.warning()),
            (false, AgentState::Live) => (" ", Style::new()),
        };
        let share = node
            .share
            .map_or_else(|| UNKNOWN.to_string(), |s| format!("{:.0}/{:.0}%", s.observed * 100.0, s.expected * 100.0));
        let cpu = node.cpu.map_or_else(|| UNKNOWN.to_string(), |c| format::percent(c.busy_percent));
        let mut line = Line::from(vec![
            Span::styled(tag.to_string(), theme.series(index).add_modifier(Modifier::BOLD)),
            Span::raw(" "),
            Span::styled(mark, mark_style),
            Span::raw(format!("{:<width$} {share:>7} {cpu:>4}", cut(&node.name, width))),
        ]);
        if selected == Some(node.name.as_str()) {
            line = line.style(theme.selected());
        }
        lines.push(line);
    }
    if shown < nodes.len() {
        lines.push(Line::styled(format!("  +{} more (filter: /)", nodes.len() - shown), theme.dim()));
    }
    let block =
        Block::new().borders(Borders::ALL).border_style(theme.dim()).title(Span::styled(" legend ", theme.title()));
    Paragraph::new(lines).block(block)
}

/// `text` in at most `width` characters, the last one `…` when cut.
fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut short: String = text.chars().take(width.saturating_sub(1)).collect();
    short.push('…');
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_map_to_the_rows_the_braille_canvas_draws_them_on() {
        assert_eq!(row_of(100.0, 4), 0);
        assert_eq!(row_of(0.0, 4), 3);
        assert_eq!(row_of(50.0, 4), 2, "dot 7.5 rounds to 8, the first dot of row 2");
        assert_eq!(row_of(140.0, 4), 0, "clamped");
    }

    #[test]
    fn lines_ending_together_share_a_gutter_row_up_to_a_few_tags() {
        let series: Vec<Series> = "123456"
            .chars()
            .map(|tag| Series {
                tag,
                style: Style::new(),
                selected: false,
                share: Vec::new(),
                expected: Vec::new(),
                cpu: Vec::new(),
            })
            .collect();
        let ends: Vec<(u16, &Series)> = series.iter().enumerate().map(|(i, s)| (u16::from(i == 5), s)).collect();
        let rows: Vec<String> = gutter(&ends, 3, Theme::plain(false)).iter().map(ToString::to_string).collect();
        assert_eq!(rows, [" 1,2,3,4…", " 6", ""]);
    }

    #[test]
    fn long_names_are_cut_with_a_mark() {
        assert_eq!(cut("worker-0123456789", 8), "worker-…");
        assert_eq!(cut("worker-01", 9), "worker-01");
    }

    #[test]
    fn an_expected_share_is_dotted_on_a_shared_grid() {
        let dots = dotted(&[(-1.0, 33.0), (2.5, 33.0), (4.0, 50.0)], 1.0);
        assert_eq!(dots, [(0.0, 33.0), (1.0, 33.0), (2.0, 33.0), (3.0, 33.0), (4.0, 50.0)]);
    }
}
