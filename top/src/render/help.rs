//! The help overlay: every key binding and how to read the nodes view's columns.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

use super::centered;
use super::theme::Theme;
use crate::keys::BINDINGS;

const LEGEND: &[(&str, &str)] = &[
    ("CPU%(si)", "busy share of all cores, softirq part in brackets"),
    ("FREQ", "slowest core / max; T throttled, C capped,"),
    ("", "S soft temp limit, V under-voltage (now)"),
    ("SHARE", "bar: observed traffic share; │ expected share"),
    ("CONNS", "established inbound connections to pods"),
    ("▲ ✕ …", "hog flagged, agent gone, agent silent"),
];

pub(super) fn render(theme: Theme, frame: &mut Frame, area: Rect) {
    let key_width = 16;
    let mut lines = vec![Line::styled("Keys", theme.title())];
    for (keys, what) in BINDINGS {
        lines.push(Line::from(vec![Span::styled(format!("  {keys:<key_width$}"), theme.title()), Span::raw(*what)]));
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled("Columns", theme.title()));
    for (column, what) in LEGEND {
        lines.push(Line::from(vec![Span::styled(format!("  {column:<key_width$}"), theme.title()), Span::raw(*what)]));
    }
    let width = lines.iter().map(Line::width).max().unwrap_or(40) as u16 + 4;
    let popup = centered(area, width, lines.len() as u16 + 2);
    frame.render_widget(Clear, popup);
    let block = Block::new().borders(Borders::ALL).title(Span::styled(" help: any key closes ", theme.title()));
    frame.render_widget(Paragraph::new(lines).block(block), popup);
}
