//! The pods view: which pod runs on which node, like `kubectl get pods -o wide`, with the pod's
//! traffic, inbound connections, CPU and memory. Enter on a node shows only that node's pods.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Row, Table, TableState};

use super::format::{self, UNKNOWN};
use super::theme::Theme;
use super::{Column, constraints, fit_columns, title_block};
use crate::app::App;
use crate::model::PodView;

pub(super) fn render(app: &App, theme: Theme, frame: &mut Frame, area: Rect) {
    let pods = app.visible_pods();
    let longest =
        |f: fn(&PodView) -> usize, header: &str| pods.iter().map(|p| f(p)).max().unwrap_or(0).max(header.len()) as u16;
    let columns = [
        Column {
            header: "NAMESPACE",
            width: longest(|p| p.namespace.chars().count(), "NAMESPACE"),
            priority: 4,
            fill: false,
        },
        Column { header: "NAME", width: longest(|p| p.name.chars().count(), "NAME").min(48), priority: 0, fill: false },
        Column { header: "READY", width: 5, priority: 6, fill: false },
        Column { header: "NODE", width: longest(|p| p.node.chars().count(), "NODE"), priority: 1, fill: false },
        Column {
            header: "WORKLOAD",
            width: longest(|p| p.workload.as_deref().map_or(1, |w| short_workload(w).chars().count()), "WORKLOAD"),
            priority: 7,
            fill: false,
        },
        Column { header: "NET rx/tx", width: 10, priority: 2, fill: false },
        Column { header: "CONNS", width: 5, priority: 2, fill: false },
        Column { header: "CPU", width: 5, priority: 3, fill: false },
        Column { header: "MEM", width: 5, priority: 5, fill: false },
    ];
    let kept = fit_columns(&columns, area.width);
    let header = Row::new(kept.iter().map(|&i| Cell::from(columns[i].header))).style(theme.table_header());
    let rows = pods.iter().map(|pod| {
        let cells = pod_cells(app, theme, pod);
        Row::new(kept.iter().map(|&i| cells[i].clone()))
    });
    let total = app.data.as_ref().map_or(0, |d| d.pods.len());
    let scope = match &app.pods_of_node {
        Some(node) => format!(" {} of {total} pods, on {node} ", pods.len()),
        None if pods.len() == total => format!(" {total} pods "),
        None => format!(" {} of {total} pods ", pods.len()),
    };
    let mut title = vec![Span::styled(scope, theme.title())];
    if pods.iter().any(|p| p.namespace.is_empty()) {
        title.push(Span::styled("· no cluster knowledge: pods named by UID ", theme.dim()));
    }
    let table = Table::new(rows, constraints(&columns, &kept))
        .header(header)
        .column_spacing(1)
        .row_highlight_style(theme.selected())
        .block(title_block(Line::from(title)));
    let mut state = TableState::default().with_selected((!pods.is_empty()).then(|| app.selected()));
    frame.render_stateful_widget(table, area, &mut state);
    if pods.is_empty() && app.data.is_some() {
        let why = if total > 0 {
            "  no pod matches (Esc clears the filter or leaves the node)"
        } else {
            "  no pods reported: the agents found no kubepods cgroup on their nodes"
        };
        let note = Rect { y: area.y + 2, height: area.height.saturating_sub(2).min(1), ..area };
        frame.render_widget(ratatui::widgets::Paragraph::new(Span::styled(why, theme.dim())), note);
    }
}

fn pod_cells(app: &App, theme: Theme, pod: &PodView) -> Vec<Cell<'static>> {
    let dash = || Cell::from(Span::styled(UNKNOWN, theme.dim()));
    let namespace = if pod.namespace.is_empty() { dash() } else { Cell::from(pod.namespace.clone()) };
    let ready = match pod.ready {
        Some(true) => Cell::from("1/1"),
        Some(false) => Cell::from(Span::styled("0/1", theme.warning())),
        None => dash(),
    };
    let node_style = if app.is_flagged(&pod.node) { theme.bad() } else { ratatui::style::Style::new() };
    let node = Cell::from(Span::styled(pod.node.clone(), node_style));
    let workload = pod.workload.as_deref().map_or_else(dash, |w| Cell::from(short_workload(w)));
    let network = match (pod.host_network, pod.network) {
        (true, _) => Cell::from(Span::styled("host", theme.dim())),
        (false, Some(n)) => {
            Cell::from(format!("{}/{}", format::rate(n.rx_bytes_per_second), format::rate(n.tx_bytes_per_second)))
        }
        (false, None) => dash(),
    };
    let connections = pod.inbound_connections.map_or_else(dash, |c| Cell::from(format!("{c:>5}")));
    let cpu = pod.cpu_cores.map_or_else(dash, |c| Cell::from(format!("{c:>5.2}")));
    let memory = pod.memory_working_set_bytes.map_or_else(dash, |m| Cell::from(format!("{:>5}", format::size(m))));
    vec![namespace, Cell::from(pod.name.clone()), ready, node, workload, network, connections, cpu, memory]
}

/// "Deployment/wordpress" as kubectl's short names spell it ("deploy/wordpress"), to save width.
fn short_workload(workload: &str) -> String {
    let Some((kind, name)) = workload.split_once('/') else { return workload.to_string() };
    let short = match kind {
        "Deployment" => "deploy",
        "StatefulSet" => "sts",
        "DaemonSet" => "ds",
        "ReplicaSet" => "rs",
        "Job" => "job",
        "CronJob" => "cj",
        other => other,
    };
    format!("{short}/{name}")
}
