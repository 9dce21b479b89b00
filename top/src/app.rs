//! The TUI's state and nothing else (no IO, no clock): what is shown, the view, filter, sort,
//! selection, freeze, the connection status and the short history behind the sparklines and the
//! charts. Time comes in as arguments, so every state change is a plain, testable function call.

use std::cmp::Ordering;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::model::{Alert, NodeView, PodView, Share, Snapshot, WindowSummary};

/// Points kept per node for the sparklines.
pub const HISTORY_POINTS: usize = 120;

/// Time-stamped points kept per node for the charts: 15 minutes at one point a second, so the
/// last-minutes view (5 min) and a usual load-test window (`oha -z 60s` up to 10 min) fit, while
/// a node costs under 50 kB. More would not sharpen the picture: each chart on a 140-column
/// terminal is about 100 braille dots across.
pub const CHART_POINTS: usize = 900;

/// Least time between two chart points. A refresh faster than this (down to 100 ms) would
/// otherwise shrink the time the ring covers; a little under a second so that a 1 s refresh with
/// some jitter keeps every sample.
pub const CHART_SPACING_MS: i64 = 950;

/// The three views, in Tab order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum View {
    #[default]
    Nodes,
    Pods,
    Windows,
}

impl View {
    pub const ALL: [View; 3] = [View::Nodes, View::Pods, View::Windows];

    pub fn title(self) -> &'static str {
        match self {
            View::Nodes => "Nodes",
            View::Pods => "Pods",
            View::Windows => "Windows/Reports",
        }
    }

    pub fn index(self) -> usize {
        match self {
            View::Nodes => 0,
            View::Pods => 1,
            View::Windows => 2,
        }
    }

    fn from_index(index: usize) -> View {
        View::ALL[index % View::ALL.len()]
    }
}

/// What keys do right now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    #[default]
    Normal,
    /// The help overlay is open.
    Help,
    /// Typing the filter.
    Filter,
}

/// Sort orders `s` cycles through. Measurements sort biggest first (like top); names ascending.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SortKey {
    #[default]
    Name,
    Cpu,
    Share,
    Traffic,
    Memory,
    Connections,
    Node,
    Start,
}

impl SortKey {
    pub fn label(self) -> &'static str {
        match self {
            SortKey::Name => "name",
            SortKey::Cpu => "cpu",
            SortKey::Share => "share",
            SortKey::Traffic => "traffic",
            SortKey::Memory => "memory",
            SortKey::Connections => "connections",
            SortKey::Node => "node",
            SortKey::Start => "newest",
        }
    }

    /// The orders that make sense in `view`, in cycle order.
    pub fn cycle(view: View) -> &'static [SortKey] {
        match view {
            View::Nodes => {
                &[SortKey::Name, SortKey::Share, SortKey::Cpu, SortKey::Traffic, SortKey::Memory, SortKey::Connections]
            }
            View::Pods => {
                &[SortKey::Node, SortKey::Name, SortKey::Traffic, SortKey::Cpu, SortKey::Memory, SortKey::Connections]
            }
            View::Windows => &[SortKey::Start, SortKey::Name],
        }
    }
}

/// The link to the collector as the user should understand it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    /// No answer yet.
    Connecting {
        since_ms: i64,
    },
    Connected {
        since_ms: i64,
    },
    /// The last call failed; the data shown is the last received.
    Disconnected {
        since_ms: i64,
        reason: String,
    },
}

/// Recent values of one node, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeHistory {
    pub cpu_percent: VecDeque<f64>,
    pub nic_bytes_per_second: VecDeque<f64>,
    pub share: VecDeque<f64>,
    /// What the charts draw: a ring of at most [`CHART_POINTS`], at least [`CHART_SPACING_MS`]
    /// apart.
    pub chart: VecDeque<ChartPoint>,
}

/// One node at one snapshot, as the charts draw it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChartPoint {
    /// The snapshot's time (the client's clock, like [`Snapshot::taken_ms`]).
    pub at_ms: i64,
    /// Observed and expected share of the traffic.
    pub share: Option<Share>,
    pub cpu_percent: Option<f64>,
}

impl NodeHistory {
    fn push(&mut self, node: &NodeView, at_ms: i64) {
        push_bounded(&mut self.cpu_percent, node.cpu.map(|c| c.busy_percent));
        push_bounded(&mut self.nic_bytes_per_second, node.nic.map(|n| n.total()));
        push_bounded(&mut self.share, node.share.map(|s| s.observed));
        if self.chart.back().is_some_and(|last| at_ms - last.at_ms < CHART_SPACING_MS) {
            return;
        }
        if self.chart.len() == CHART_POINTS {
            self.chart.pop_front();
        }
        self.chart.push_back(ChartPoint { at_ms, share: node.share, cpu_percent: node.cpu.map(|c| c.busy_percent) });
    }
}

fn push_bounded(series: &mut VecDeque<f64>, value: Option<f64>) {
    let Some(value) = value else { return };
    if series.len() == HISTORY_POINTS {
        series.pop_front();
    }
    series.push_back(value);
}

/// Everything the screen shows.
#[derive(Debug, Clone)]
pub struct App {
    /// Where the data comes from ("http://127.0.0.1:7431").
    pub source: String,
    pub refresh: Duration,
    /// Colours allowed (`--color`, `NO_COLOR`); without them the views use only bold and reverse.
    pub color: bool,
    /// The user's colours by meaning (the config file's `[colors]`), where colours are allowed.
    pub palette: crate::render::theme::Palette,
    /// The clock at the last event, Unix epoch ms; rendering reads it for "… ago" texts.
    pub now_ms: i64,
    pub connection: Connection,
    /// The data shown; kept when the collector goes away.
    pub data: Option<Snapshot>,
    /// Data that arrived while frozen, shown on unfreeze.
    pub pending: Option<Snapshot>,
    /// When the data shown arrived (client clock).
    pub data_received_ms: Option<i64>,
    pub history: BTreeMap<String, NodeHistory>,
    pub view: View,
    pub mode: Mode,
    pub filter: String,
    sorts: [SortKey; 3],
    selected: [usize; 3],
    pub frozen: bool,
    /// Enter on a node: the pods view shows only that node's pods.
    pub pods_of_node: Option<String>,
    pub quit: bool,
}

impl App {
    pub fn new(source: impl Into<String>, refresh: Duration, color: bool, now_ms: i64) -> App {
        App {
            source: source.into(),
            refresh,
            color,
            palette: crate::render::theme::Palette::default(),
            now_ms,
            connection: Connection::Connecting { since_ms: now_ms },
            data: None,
            pending: None,
            data_received_ms: None,
            history: BTreeMap::new(),
            view: View::Nodes,
            mode: Mode::Normal,
            filter: String::new(),
            sorts: [SortKey::cycle(View::Nodes)[0], SortKey::cycle(View::Pods)[0], SortKey::cycle(View::Windows)[0]],
            selected: [0; 3],
            frozen: false,
            pods_of_node: None,
            quit: false,
        }
    }

    /// The clock moved on (a timer tick): only "since" texts change.
    pub fn tick(&mut self, now_ms: i64) {
        self.now_ms = now_ms;
    }

    /// A snapshot arrived. While frozen it is held back, not shown.
    pub fn on_snapshot(&mut self, snapshot: Snapshot, now_ms: i64) {
        self.now_ms = now_ms;
        if !matches!(self.connection, Connection::Connected { .. }) {
            self.connection = Connection::Connected { since_ms: now_ms };
        }
        if self.frozen {
            self.pending = Some(snapshot);
        } else {
            self.show(snapshot, now_ms);
        }
    }

    /// The source failed: say so, keep the last data.
    pub fn on_source_error(&mut self, reason: impl Into<String>, now_ms: i64) {
        self.now_ms = now_ms;
        let since_ms = match self.connection {
            Connection::Disconnected { since_ms, .. } => since_ms,
            _ => now_ms,
        };
        self.connection = Connection::Disconnected { since_ms, reason: reason.into() };
    }

    fn show(&mut self, snapshot: Snapshot, now_ms: i64) {
        let known: Vec<&str> = snapshot.nodes.iter().map(|n| n.name.as_str()).collect();
        self.history.retain(|name, _| known.contains(&name.as_str()));
        for node in &snapshot.nodes {
            self.history.entry(node.name.clone()).or_default().push(node, snapshot.taken_ms);
        }
        self.data = Some(snapshot);
        self.data_received_ms = Some(now_ms);
        self.clamp_selection();
    }

    pub fn toggle_freeze(&mut self) {
        self.frozen = !self.frozen;
        if !self.frozen
            && let Some(pending) = self.pending.take()
        {
            let now = self.now_ms;
            self.show(pending, now);
        }
    }

    pub fn set_view(&mut self, view: View) {
        self.view = view;
        self.clamp_selection();
    }

    pub fn next_view(&mut self) {
        self.set_view(View::from_index(self.view.index() + 1));
    }

    pub fn previous_view(&mut self) {
        self.set_view(View::from_index(self.view.index() + View::ALL.len() - 1));
    }

    pub fn sort(&self, view: View) -> SortKey {
        self.sorts[view.index()]
    }

    pub fn cycle_sort(&mut self) {
        let cycle = SortKey::cycle(self.view);
        let current = self.sort(self.view);
        let position = cycle.iter().position(|k| *k == current).unwrap_or(0);
        self.sorts[self.view.index()] = cycle[(position + 1) % cycle.len()];
    }

    pub fn selected(&self) -> usize {
        self.selected[self.view.index()]
    }

    /// Moves the selection by `delta` rows, within the rows shown.
    pub fn move_selection(&mut self, delta: isize) {
        let rows = self.row_count();
        let slot = &mut self.selected[self.view.index()];
        *slot = if rows == 0 { 0 } else { slot.saturating_add_signed(delta).min(rows - 1) };
    }

    pub fn select_first(&mut self) {
        self.selected[self.view.index()] = 0;
    }

    pub fn select_last(&mut self) {
        self.selected[self.view.index()] = self.row_count().saturating_sub(1);
    }

    fn clamp_selection(&mut self) {
        for view in View::ALL {
            let rows = self.row_count_of(view);
            let slot = &mut self.selected[view.index()];
            *slot = (*slot).min(rows.saturating_sub(1));
        }
    }

    /// Enter: from a node to its pods.
    pub fn drill_down(&mut self) {
        if self.view != View::Nodes {
            return;
        }
        let Some(name) = self.visible_nodes().get(self.selected()).map(|n| n.name.clone()) else { return };
        self.pods_of_node = Some(name);
        self.filter.clear();
        self.selected[View::Pods.index()] = 0;
        self.set_view(View::Pods);
    }

    /// Esc: leave the drill-down, then clear the filter.
    pub fn back(&mut self) {
        if self.pods_of_node.take().is_some() {
            if self.view == View::Pods {
                self.set_view(View::Nodes);
            }
        } else {
            self.filter.clear();
        }
        self.clamp_selection();
    }

    pub fn set_filter(&mut self, filter: String) {
        self.filter = filter;
        self.clamp_selection();
    }

    /// The load-test window open now (the latest opened when several are), if any.
    pub fn open_window(&self) -> Option<&WindowSummary> {
        let windows = self.data.as_ref()?.windows.as_ref()?;
        windows.iter().filter(|w| w.end_ms.is_none()).max_by_key(|w| w.start_ms)
    }

    pub fn alerts(&self) -> &[Alert] {
        self.data.as_ref().and_then(|d| d.alerts.as_deref()).unwrap_or_default()
    }

    /// True when the node has a live verdict.
    pub fn is_flagged(&self, node: &str) -> bool {
        self.alerts().iter().any(|a| a.node == node)
    }

    fn matches_filter(&self, fields: &[&str]) -> bool {
        let needle = self.filter.to_lowercase();
        needle.is_empty() || fields.iter().any(|field| field.to_lowercase().contains(&needle))
    }

    /// The nodes shown, filtered and sorted.
    pub fn visible_nodes(&self) -> Vec<&NodeView> {
        let Some(data) = &self.data else { return Vec::new() };
        let mut nodes: Vec<&NodeView> =
            data.nodes.iter().filter(|n| self.matches_filter(&[&n.name, n.role.as_str()])).collect();
        let key = self.sort(View::Nodes);
        nodes.sort_by(|a, b| {
            let by = match key {
                SortKey::Cpu => descending(a.cpu.map(|c| c.busy_percent), b.cpu.map(|c| c.busy_percent)),
                SortKey::Share => {
                    descending(a.share.and_then(|s| s.normalised()), b.share.and_then(|s| s.normalised()))
                }
                SortKey::Traffic => descending(a.nic.map(|n| n.total()), b.nic.map(|n| n.total())),
                SortKey::Memory => descending(a.memory.map(|m| m.percent()), b.memory.map(|m| m.percent())),
                SortKey::Connections => {
                    descending(a.inbound_connections.map(|c| c as f64), b.inbound_connections.map(|c| c as f64))
                }
                _ => Ordering::Equal,
            };
            by.then_with(|| a.name.cmp(&b.name))
        });
        nodes
    }

    /// The pods shown: the drilled-into node's, filtered and sorted.
    pub fn visible_pods(&self) -> Vec<&PodView> {
        let Some(data) = &self.data else { return Vec::new() };
        let mut pods: Vec<&PodView> = data
            .pods
            .iter()
            .filter(|p| self.pods_of_node.as_ref().is_none_or(|node| &p.node == node))
            .filter(|p| {
                self.matches_filter(&[&p.name, &p.namespace, &p.node, p.workload.as_deref().unwrap_or_default()])
            })
            .collect();
        let key = self.sort(View::Pods);
        pods.sort_by(|a, b| {
            let by = match key {
                SortKey::Node => a.node.cmp(&b.node),
                SortKey::Traffic => descending(a.network.map(|n| n.total()), b.network.map(|n| n.total())),
                SortKey::Cpu => descending(a.cpu_cores, b.cpu_cores),
                SortKey::Memory => descending(
                    a.memory_working_set_bytes.map(|m| m as f64),
                    b.memory_working_set_bytes.map(|m| m as f64),
                ),
                SortKey::Connections => {
                    descending(a.inbound_connections.map(|c| c as f64), b.inbound_connections.map(|c| c as f64))
                }
                _ => Ordering::Equal,
            };
            by.then_with(|| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)))
        });
        pods
    }

    /// The windows shown, or `None` when the collector does not serve them.
    pub fn visible_windows(&self) -> Option<Vec<&WindowSummary>> {
        let windows = self.data.as_ref()?.windows.as_ref()?;
        let mut shown: Vec<&WindowSummary> = windows
            .iter()
            .filter(|w| self.matches_filter(&[&w.id, &w.name, w.workload.as_deref().unwrap_or_default()]))
            .collect();
        match self.sort(View::Windows) {
            SortKey::Name => shown.sort_by(|a, b| a.name.cmp(&b.name)),
            _ => shown.sort_by_key(|w| std::cmp::Reverse(w.start_ms)),
        }
        Some(shown)
    }

    fn row_count_of(&self, view: View) -> usize {
        match view {
            View::Nodes => self.visible_nodes().len(),
            View::Pods => self.visible_pods().len(),
            View::Windows => self.visible_windows().map_or(0, |w| w.len()),
        }
    }

    pub fn row_count(&self) -> usize {
        self.row_count_of(self.view)
    }
}

/// Biggest first; unknown values last.
fn descending(a: Option<f64>, b: Option<f64>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => b.total_cmp(&a),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::CpuUse;

    fn node(name: &str, cpu: f64, observed: f64) -> NodeView {
        NodeView {
            name: name.into(),
            cpu: Some(CpuUse { busy_percent: cpu, softirq_percent: 0.0 }),
            share: Some(Share { observed, expected: 1.0 / 3.0 }),
            ..NodeView::default()
        }
    }

    fn snapshot(taken_ms: i64) -> Snapshot {
        Snapshot {
            taken_ms,
            nodes: vec![node("b", 10.0, 0.2), node("a", 90.0, 0.6), node("c", 50.0, 0.2)],
            ..Snapshot::default()
        }
    }

    #[test]
    fn a_lost_collector_keeps_the_last_data_and_the_first_loss_time() {
        let mut app = App::new("fake", Duration::from_secs(1), false, 0);
        app.on_snapshot(snapshot(1), 1_000);
        app.on_source_error("refused", 2_000);
        app.on_source_error("refused again", 3_000);
        assert_eq!(app.connection, Connection::Disconnected { since_ms: 2_000, reason: "refused again".into() });
        assert_eq!(app.data.as_ref().map(|d| d.taken_ms), Some(1));
        app.on_snapshot(snapshot(2), 4_000);
        assert_eq!(app.connection, Connection::Connected { since_ms: 4_000 });
    }

    #[test]
    fn frozen_holds_new_data_back_until_unfrozen() {
        let mut app = App::new("fake", Duration::from_secs(1), false, 0);
        app.on_snapshot(snapshot(1), 1_000);
        app.toggle_freeze();
        app.on_snapshot(snapshot(2), 2_000);
        assert_eq!(app.data.as_ref().map(|d| d.taken_ms), Some(1));
        assert_eq!(app.history["a"].cpu_percent.len(), 1);
        app.toggle_freeze();
        assert_eq!(app.data.as_ref().map(|d| d.taken_ms), Some(2));
        assert_eq!(app.history["a"].cpu_percent.len(), 2);
    }

    #[test]
    fn history_is_bounded() {
        let mut app = App::new("fake", Duration::from_secs(1), false, 0);
        for i in 0..HISTORY_POINTS as i64 + 10 {
            app.on_snapshot(snapshot(i), i);
        }
        assert_eq!(app.history["a"].cpu_percent.len(), HISTORY_POINTS);
    }

    #[test]
    fn the_chart_ring_is_bounded_thinned_frozen_with_the_view_and_drops_nodes_that_left() {
        let mut app = App::new("fake", Duration::from_secs(1), false, 0);
        for i in 0..CHART_POINTS as i64 + 10 {
            app.on_snapshot(snapshot(i * 1_000), i * 1_000);
        }
        let chart = &app.history["a"].chart;
        assert_eq!(chart.len(), CHART_POINTS);
        assert_eq!(chart.front().map(|p| p.at_ms), Some(10_000), "the oldest points went first");
        // A fast refresh adds a chart point only once a spacing has passed.
        let last = (CHART_POINTS as i64 + 9) * 1_000;
        app.on_snapshot(snapshot(last + 100), last + 100);
        assert_eq!(app.history["a"].chart.back().map(|p| p.at_ms), Some(last));
        app.toggle_freeze();
        app.on_snapshot(snapshot(last + 5_000), last + 5_000);
        assert_eq!(app.history["a"].chart.back().map(|p| p.at_ms), Some(last), "frozen: the charts hold still");
        app.toggle_freeze();
        assert_eq!(app.history["a"].chart.back().map(|p| p.at_ms), Some(last + 5_000));
        let mut fewer = snapshot(last + 6_000);
        fewer.nodes.retain(|n| n.name != "b");
        app.on_snapshot(fewer, last + 6_000);
        assert!(!app.history.contains_key("b"), "a node that left drops out");
    }

    #[test]
    fn sorting_by_share_puts_the_hog_first_and_unknowns_last() {
        let mut app = App::new("fake", Duration::from_secs(1), false, 0);
        let mut data = snapshot(1);
        data.nodes.push(NodeView { name: "new".into(), ..NodeView::default() });
        app.on_snapshot(data, 1);
        let names = |app: &App| app.visible_nodes().iter().map(|n| n.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&app), ["a", "b", "c", "new"]);
        app.cycle_sort();
        assert_eq!(app.sort(View::Nodes), SortKey::Share);
        assert_eq!(names(&app), ["a", "b", "c", "new"]);
        app.cycle_sort();
        assert_eq!(app.sort(View::Nodes), SortKey::Cpu);
        assert_eq!(names(&app), ["a", "c", "b", "new"]);
    }
}
