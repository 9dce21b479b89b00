//! The windows/reports view: load-test windows (open or closed, manual or automatic) and what each
//! report found, newest first.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState, Wrap};

use super::format;
use super::theme::Theme;
use super::title_block;
use crate::app::App;

pub(super) fn render(app: &App, theme: Theme, frame: &mut Frame, area: Rect) {
    let Some(windows) = app.visible_windows() else {
        let text = vec![
            Line::raw(""),
            Line::raw("  This collector does not serve load-test windows or reports yet."),
            Line::styled("  They appear here once it does (bakery-top window start / report).", theme.dim()),
        ];
        let block = title_block(Line::styled(" windows/reports ", theme.title()));
        frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: false }).block(block), area);
        return;
    };
    let header = Row::new(["ID", "NAME", "WORKLOAD", "KIND", "START", "LENGTH", "REPORT"]).style(theme.table_header());
    let rows = windows.iter().map(|w| {
        let length = match w.end_ms {
            Some(end) => Cell::from(format::elapsed(end - w.start_ms)),
            None => {
                Cell::from(Span::styled(format!("open {}", format::elapsed(app.now_ms - w.start_ms)), theme.warning()))
            }
        };
        let report = if w.verdicts.is_empty() {
            Cell::from(Span::styled(if w.end_ms.is_some() { "no hog" } else { "-" }, theme.good()))
        } else {
            Cell::from(Span::styled(w.verdicts.join("; "), theme.bad()))
        };
        Row::new(vec![
            Cell::from(w.id.clone()),
            Cell::from(w.name.clone()),
            Cell::from(w.workload.clone().unwrap_or_else(|| format::UNKNOWN.to_string())),
            Cell::from(if w.automatic { "auto" } else { "manual" }),
            Cell::from(format::clock(w.start_ms)),
            length,
            report,
        ])
    });
    let widths = [
        Constraint::Length(6),
        Constraint::Length(16),
        Constraint::Length(20),
        Constraint::Length(6),
        Constraint::Length(8),
        Constraint::Length(11),
        Constraint::Fill(1),
    ];
    let title = if windows.is_empty() {
        " no load-test windows yet: bakery-top window start ".to_string()
    } else {
        format!(" {} windows ", windows.len())
    };
    let table = Table::new(rows, widths)
        .header(header)
        .column_spacing(1)
        .row_highlight_style(theme.selected())
        .block(title_block(Line::styled(title, theme.title())));
    let mut state = TableState::default().with_selected((!windows.is_empty()).then(|| app.selected()));
    frame.render_stateful_widget(table, area, &mut state);
}
