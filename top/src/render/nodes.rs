//! The nodes view: one row per node (role, CPU with softirq, memory, temperature, frequency with
//! the throttle mark, NIC rates, the traffic share bar against the expected share, inbound
//! connections, a CPU sparkline), then the selected node's sparklines and the per-node charts
//! (`charts.rs`) when there is room: the table comes first, then the detail, then the charts.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState};

use super::format::{self, UNKNOWN};
use super::theme::Theme;
use super::{Column, charts, constraints, fit_columns, title_block};
use crate::app::App;
use crate::model::{AgentState, NodeView};

/// Cells of the share bar (the percentages follow it), and a shorter bar below [`WIDE`] columns
/// so that memory still fits on an 80-column terminal.
const SHARE_BAR: usize = 10;
const SHARE_BAR_NARROW: usize = 6;
const WIDE: u16 = 100;

/// Normalised share (observed / expected) from which the share is a warning, then bad. The
/// diagnosis decides what is a hog; these only colour the bar.
const SHARE_WARNING: f64 = 1.3;
const SHARE_BAD: f64 = 1.6;

/// Lines of the selected node's detail.
const DETAIL_HEIGHT: u16 = 4;

pub(super) fn render(app: &App, theme: Theme, frame: &mut Frame, area: Rect) {
    let nodes = app.visible_nodes();
    let total = app.data.as_ref().map_or(0, |d| d.nodes.len());
    let table_height = nodes.len() as u16 + 2;
    // The detail goes right under the table (one blank line between) when it fits.
    let show_detail = !nodes.is_empty() && area.height > table_height + DETAIL_HEIGHT;
    let [table_area, _, detail_area, rest] = if show_detail {
        Layout::vertical([
            Constraint::Length(table_height),
            Constraint::Length(1),
            Constraint::Length(DETAIL_HEIGHT),
            Constraint::Fill(1),
        ])
        .areas(area)
    } else {
        Layout::vertical([Constraint::Fill(1), Constraint::Length(0), Constraint::Length(0), Constraint::Length(0)])
            .areas(area)
    };
    let bar = if area.width >= WIDE { SHARE_BAR } else { SHARE_BAR_NARROW };

    let name_width = nodes.iter().map(|n| n.name.chars().count()).max().unwrap_or(4).max(4) as u16 + 2;
    let columns = [
        Column { header: "NODE", width: name_width, priority: 0, fill: false },
        Column { header: "ROLE", width: 13, priority: 7, fill: false },
        Column { header: "CPU%(si)", width: 8, priority: 1, fill: false },
        Column { header: "MEM", width: 8, priority: 6, fill: false },
        Column { header: "TEMP", width: 5, priority: 4, fill: false },
        Column { header: "FREQ", width: 10, priority: 4, fill: false },
        Column { header: "NIC rx/tx", width: 11, priority: 2, fill: false },
        Column { header: "SHARE obs/exp", width: bar as u16 + 8, priority: 1, fill: false },
        Column { header: "CONNS", width: 5, priority: 3, fill: false },
        Column { header: "CPU HISTORY", width: 11, priority: 8, fill: true },
    ];
    let kept = fit_columns(&columns, table_area.width);
    let history_width = history_width(&columns, &kept, table_area.width);

    let header = Row::new(kept.iter().map(|&i| Cell::from(columns[i].header))).style(theme.table_header());
    let rows = nodes.iter().map(|node| {
        let cells = node_cells(app, theme, node, bar, history_width);
        Row::new(kept.iter().map(|&i| cells[i].clone()))
    });
    let table = Table::new(rows, constraints(&columns, &kept))
        .header(header)
        .column_spacing(1)
        .row_highlight_style(theme.selected())
        .block(title_block(title(app, theme, nodes.len(), total)));
    let mut state = TableState::default().with_selected((!nodes.is_empty()).then(|| app.selected()));
    frame.render_stateful_widget(table, table_area, &mut state);

    if show_detail && let Some(node) = nodes.get(app.selected()) {
        frame.render_widget(detail(app, theme, node, detail_area.width), detail_area);
    }
    // One blank line between the detail and the charts, as between the table and the detail.
    if show_detail && rest.height > charts::MIN_HEIGHT {
        let [_, charts_area] = Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(rest);
        charts::render(app, theme, frame, charts_area);
    }
}

fn title(app: &App, theme: Theme, shown: usize, total: usize) -> Line<'static> {
    let Some(data) = &app.data else {
        return Line::styled(" waiting for the first answer from the collector… ", theme.dim());
    };
    let count = if shown == total { format!(" {total} nodes ") } else { format!(" {shown} of {total} nodes ") };
    let verdicts = match &data.alerts {
        None => Span::styled("· verdicts: not served by this collector ", theme.dim()),
        Some(alerts) if alerts.is_empty() => Span::styled("· no hog flagged ", theme.good()),
        Some(_) => Span::styled("· hog flagged, see above ", theme.bad()),
    };
    Line::from(vec![
        Span::styled(count, theme.title()),
        Span::styled(format!("· share: {} ", data.share_basis), theme.dim()),
        verdicts,
    ])
}

/// Width of the sparkline column: what is left after the fixed columns.
fn history_width(columns: &[Column], kept: &[usize], width: u16) -> usize {
    let fixed: u16 = kept.iter().filter(|&&i| !columns[i].fill).map(|&i| columns[i].width + 1).sum();
    width.saturating_sub(fixed) as usize
}

/// Every column's cell for `node`, in [`render`]'s column order.
fn node_cells(app: &App, theme: Theme, node: &NodeView, bar: usize, history_width: usize) -> Vec<Cell<'static>> {
    let flagged = app.is_flagged(&node.name);
    let (mark, name_style) = match (flagged, node.agent) {
        (true, _) => ("▲", theme.bad()),
        (false, AgentState::Gone) => ("✕", theme.dim()),
        (false, AgentState::Stale) => ("…", theme.warning()),
        (false, AgentState::Live) => (" ", Style::new()),
    };
    let name = Cell::from(Span::styled(format!("{mark}{}", node.name), name_style));
    let role = Cell::from(node.role.as_str());
    let cpu = match node.cpu {
        Some(cpu) => Cell::from(Span::styled(
            format!("{:>3.0} ({:.0})", cpu.busy_percent, cpu.softirq_percent),
            theme.level(cpu.busy_percent, 70.0, 90.0),
        )),
        None => unknown(theme),
    };
    let memory = match node.memory {
        Some(m) => {
            Cell::from(Span::styled(format::memory(m.used_bytes, m.total_bytes), theme.level(m.percent(), 80.0, 90.0)))
        }
        None => unknown(theme),
    };
    // The Pi 5 firmware throttles between 80 and 85 °C (Raspberry Pi documentation, "Frequency
    // management and thermal control").
    let temperature = match node.temperature_celsius {
        Some(t) => Cell::from(Span::styled(format!("{t:.0}°C"), theme.level(t, 70.0, 80.0))),
        None => unknown(theme),
    };
    let letters = format::throttle_letters(&node.throttle);
    let frequency = match node.frequency {
        Some(f) => {
            let style = if node.throttle.any() { theme.bad() } else { Style::new() };
            let text =
                if letters.is_empty() { format::frequency(&f) } else { format!("{} {letters}", format::frequency(&f)) };
            Cell::from(Span::styled(text, style))
        }
        None if !letters.is_empty() => Cell::from(Span::styled(letters, theme.bad())),
        None => unknown(theme),
    };
    let nic = match node.nic {
        Some(n) => {
            Cell::from(format!("{}/{}", format::rate(n.rx_bytes_per_second), format::rate(n.tx_bytes_per_second)))
        }
        None => unknown(theme),
    };
    let share = match node.share {
        Some(share) => {
            let style = theme.level(share.normalised().unwrap_or(0.0), SHARE_WARNING, SHARE_BAD);
            Cell::from(Line::from(vec![
                Span::styled(format::share_bar(&share, bar), style),
                Span::raw(format!(" {:>2.0}/{:.0}%", share.observed * 100.0, share.expected * 100.0)),
            ]))
        }
        None => unknown(theme),
    };
    let connections = match node.inbound_connections {
        Some(c) => Cell::from(format!("{c:>5}")),
        None => unknown(theme),
    };
    let history = app
        .history
        .get(&node.name)
        .map_or_else(String::new, |h| format::sparkline(h.cpu_percent.iter(), history_width, Some(100.0)));
    let history = Cell::from(Span::styled(history, theme.good()));
    vec![name, role, cpu, memory, temperature, frequency, nic, share, connections, history]
}

fn unknown(theme: Theme) -> Cell<'static> {
    Cell::from(Span::styled(UNKNOWN, theme.dim()))
}

/// The selected node: its sparklines over the kept history, with the latest values.
fn detail(app: &App, theme: Theme, node: &NodeView, width: u16) -> Paragraph<'static> {
    let history = app.history.get(&node.name).cloned().unwrap_or_default();
    let label_width = 18;
    let spark_width = (width as usize).saturating_sub(label_width + 2);
    let row = |label: String, values: &std::collections::VecDeque<f64>, max: Option<f64>| {
        Line::from(vec![
            Span::styled(format!("  {label:<label_width$}"), theme.dim()),
            Span::styled(format::sparkline(values.iter(), spark_width, max), theme.good()),
        ])
    };
    let cpu = node.cpu.map_or_else(|| UNKNOWN.to_string(), |c| format!("{:.0}%", c.busy_percent));
    let nic = node.nic.map_or_else(|| UNKNOWN.to_string(), |n| format!("{}B/s", format::rate(n.total())));
    let share = node.share.map_or_else(|| UNKNOWN.to_string(), |s| format!("{:.0}%", s.observed * 100.0));
    let agent = match node.agent {
        AgentState::Live => "agent live",
        AgentState::Stale => "agent silent",
        AgentState::Gone => "agent disconnected",
    };
    Paragraph::new(vec![
        Line::from(vec![
            Span::styled(format!(" {} ", node.name), theme.title()),
            Span::styled(
                format!(
                    "{} · {agent} · sample {} UTC · Enter: its pods",
                    node.role.as_str(),
                    format::clock(node.sample_ms)
                ),
                theme.dim(),
            ),
        ]),
        row(format!("cpu {cpu}"), &history.cpu_percent, Some(100.0)),
        row(format!("nic {nic}"), &history.nic_bytes_per_second, None),
        row(format!("share {share}"), &history.share, Some(1.0)),
    ])
}
