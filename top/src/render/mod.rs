//! Drawing an [`App`] into a frame: `render(&App, &mut Frame)` reads state and never changes it.
//! The screen is a header (source, connection, freeze), the view tabs, the alert banner, the view
//! itself, and a footer with the keys; help is an overlay.

mod charts;
pub mod format;
mod help;
mod nodes;
mod pods;
pub mod theme;
mod windows;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use crate::app::{App, Connection, Mode, View};
use crate::model::Alert;
use theme::Theme;

/// Alerts shown in the banner at most; the rest are counted.
const BANNER_ALERTS: usize = 3;

/// Draws the whole screen.
pub fn render(app: &App, frame: &mut Frame) {
    let theme = Theme { color: app.color, palette: app.palette };
    let area = frame.area();
    let banner = banner_lines(app, theme, area.width.saturating_sub(2) as usize);
    let banner_height = if banner.is_empty() { 0 } else { banner.len() as u16 + 2 };
    let [header, tabs, banner_area, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(banner_height),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(area);
    frame.render_widget(Paragraph::new(header_line(app, theme)), header);
    frame.render_widget(Paragraph::new(tabs_line(app, theme)), tabs);
    if !banner.is_empty() {
        let count = app.alerts().len();
        let title = format!(" ▲ {count} hog{} flagged ", if count == 1 { "" } else { "s" });
        let block = Block::new()
            .borders(Borders::ALL)
            .border_style(theme.alert_banner())
            .title(Span::styled(title, theme.bad()));
        frame.render_widget(Paragraph::new(banner).block(block), banner_area);
    }
    match app.view {
        View::Nodes => nodes::render(app, theme, frame, body),
        View::Pods => pods::render(app, theme, frame, body),
        View::Windows => windows::render(app, theme, frame, body),
    }
    frame.render_widget(Paragraph::new(footer_line(app, theme)), footer);
    if app.mode == Mode::Help {
        help::render(theme, frame, area);
    }
}

fn header_line(app: &App, theme: Theme) -> Line<'static> {
    let mut spans = vec![Span::styled(" bakery-top ", theme.title()), Span::raw(" ")];
    match &app.connection {
        Connection::Connecting { since_ms } => spans
            .push(Span::styled(format!("connecting… ({})", format::elapsed(app.now_ms - since_ms)), theme.warning())),
        Connection::Connected { .. } => spans.push(Span::styled("● connected", theme.good())),
        Connection::Disconnected { since_ms, .. } => {
            spans.push(Span::styled(
                format!(
                    "✕ disconnected since {} UTC ({}), reconnecting",
                    format::clock(*since_ms),
                    format::elapsed(app.now_ms - since_ms)
                ),
                theme.bad(),
            ));
            if let Some(received) = app.data_received_ms {
                spans.push(Span::raw(format!(" · last data {} UTC", format::clock(received))));
            }
        }
    }
    if app.frozen {
        spans.push(Span::raw("  "));
        let held = if app.pending.is_some() { " (newer data held)" } else { "" };
        spans.push(Span::styled(
            format!(" FROZEN{held} "),
            theme.bad().add_modifier(ratatui::style::Modifier::REVERSED),
        ));
    }
    spans.push(Span::styled(
        format!("  {} · every {}", app.source, humantime::format_duration(app.refresh)),
        theme.dim(),
    ));
    if let Connection::Disconnected { reason, .. } = &app.connection {
        spans.push(Span::styled(format!(" · {reason}"), theme.dim()));
    }
    Line::from(spans)
}

fn tabs_line(app: &App, theme: Theme) -> Line<'static> {
    let mut spans = vec![Span::raw(" ")];
    for view in View::ALL {
        let text = format!(" {} {} ", view.index() + 1, view.title());
        let style = if view == app.view { theme.active_tab() } else { Style::new() };
        spans.push(Span::styled(text, style));
        spans.push(Span::raw(" "));
    }
    spans.push(Span::styled(format!("  sort: {}", app.sort(app.view).label()), theme.dim()));
    if let (View::Pods, Some(node)) = (app.view, &app.pods_of_node) {
        spans.push(Span::styled(format!("  pods on {node} (Esc: all)"), theme.warning()));
    }
    if !app.filter.is_empty() || app.mode == Mode::Filter {
        spans.push(Span::styled(format!("  filter: {}", app.filter), theme.warning()));
    }
    Line::from(spans)
}

fn footer_line(app: &App, theme: Theme) -> Line<'static> {
    if app.mode == Mode::Filter {
        return Line::from(vec![
            Span::styled(format!(" /{}▏", app.filter), theme.warning()),
            Span::styled("  Enter keep · Esc clear", theme.dim()),
        ]);
    }
    let keys = [
        ("q", "quit"),
        ("?", "help"),
        ("/", "filter"),
        ("s", "sort"),
        ("f", "freeze"),
        ("Tab", "view"),
        ("Enter", "node's pods"),
    ];
    let mut spans = vec![Span::raw(" ")];
    for (key, what) in keys {
        spans.push(Span::styled(key, theme.title()));
        spans.push(Span::styled(format!(" {what}  "), theme.dim()));
    }
    Line::from(spans)
}

/// The banner: per alert, the node, cause and confidence with the evidence, then the next step,
/// word-wrapped to `width`.
fn banner_lines(app: &App, theme: Theme, width: usize) -> Vec<Line<'static>> {
    let alerts = app.alerts();
    let mut lines = Vec::new();
    for alert in alerts.iter().take(BANNER_ALERTS) {
        lines.extend(alert_lines(alert, theme, width));
    }
    if alerts.len() > BANNER_ALERTS {
        lines.push(Line::styled(
            format!("… and {} more (bakery-top alerts)", alerts.len() - BANNER_ALERTS),
            theme.dim(),
        ));
    }
    lines
}

fn alert_lines(alert: &Alert, theme: Theme, width: usize) -> Vec<Line<'static>> {
    let head = format!("{} {} ({:.0}%):", alert.node, alert.cause, alert.confidence * 100.0);
    let mut lines = Vec::new();
    // Two columns go to the "▲ " mark in front of the first line and the indent of the others.
    let inner = width.saturating_sub(2);
    for (i, text) in wrap(&format!("{head} {}", alert.evidence), inner).into_iter().enumerate() {
        if i == 0
            && let Some(rest) = text.strip_prefix(&head)
        {
            lines.push(Line::from(vec![Span::styled(format!("▲ {head}"), theme.bad()), Span::raw(rest.to_string())]));
        } else {
            lines.push(Line::raw(format!("  {text}")));
        }
    }
    for text in wrap(&format!("next: {}", alert.next_step), inner) {
        lines.push(Line::styled(format!("  {text}"), theme.warning()));
    }
    lines
}

/// Greedy word wrap on spaces; a word longer than `width` is cut.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(8);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let needed =
            if line.is_empty() { word.chars().count() } else { line.chars().count() + 1 + word.chars().count() };
        if needed > width && !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
        while line.chars().count() > width {
            let cut: String = line.chars().take(width).collect();
            let rest: String = line.chars().skip(width).collect();
            lines.push(cut);
            line = rest;
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// A column a table may show, with its width and how much it matters when space is short.
#[derive(Debug, Clone, Copy)]
struct Column {
    header: &'static str,
    width: u16,
    /// 0 is kept first; higher numbers are dropped first.
    priority: u8,
    /// Takes the width left over (at least `width`).
    fill: bool,
}

/// The columns that fit in `width` (keeping the most important), in their display order.
fn fit_columns(columns: &[Column], width: u16) -> Vec<usize> {
    let mut by_priority: Vec<usize> = (0..columns.len()).collect();
    by_priority.sort_by_key(|&i| (columns[i].priority, i));
    let mut kept = Vec::new();
    let mut used = 0u16;
    for index in by_priority {
        let needed = columns[index].width + u16::from(!kept.is_empty());
        if used + needed <= width {
            used += needed;
            kept.push(index);
        }
    }
    kept.sort_unstable();
    kept
}

fn constraints(columns: &[Column], kept: &[usize]) -> Vec<Constraint> {
    kept.iter()
        .map(
            |&i| if columns[i].fill { Constraint::Min(columns[i].width) } else { Constraint::Length(columns[i].width) },
        )
        .collect()
}

/// The line above a table: what is shown, and how.
fn title_block(title: Line<'static>) -> Block<'static> {
    Block::new().borders(Borders::TOP).title(title)
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect { x: area.x + (area.width - width) / 2, y: area.y + (area.height - height) / 2, width, height }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_breaks_on_spaces_and_cuts_long_words() {
        assert_eq!(wrap("pod traffic 2.6x its expected share", 16), ["pod traffic 2.6x", "its expected", "share"]);
        assert_eq!(wrap("abcdefghijkl", 8), ["abcdefgh", "ijkl"]);
    }

    #[test]
    fn narrow_tables_drop_the_least_important_columns() {
        let column = |header, width, priority| Column { header, width, priority, fill: false };
        let columns = [column("NODE", 10, 0), column("ROLE", 13, 5), column("CPU", 8, 1), column("SHARE", 18, 1)];
        assert_eq!(fit_columns(&columns, 80), [0, 1, 2, 3]);
        assert_eq!(fit_columns(&columns, 40), [0, 2, 3]);
        assert_eq!(fit_columns(&columns, 12), [0]);
    }
}
