//! The report of one load-test window: per-node share over time against the expected share, the
//! figures behind each verdict over time, the figures over the whole window, and every verdict raised
//! during it. JSON through serde, text through `Display`, an SVG chart through [`crate::svg`].
//!
//! A report is built by replaying the window's ticks (plus whatever came before it, as warm-up, and
//! after it) through a fresh [`Detector`]: the same ticks always give the same report.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::analysis::{Analysis, NodeAnalysis, Signal, analyse};
use crate::config::Config;
use crate::detector::Detector;
use crate::history::History;
use crate::input::{Tick, WorkloadRef};
use crate::reading::Reading;
use crate::verdict::{Cause, ChangeKind, Verdict, VerdictChange, format_number};
use crate::{Error, Result};

/// A load-test window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub name: String,
    pub start_ms: i64,
    pub end_ms: i64,
    /// Opened automatically on a traffic surge rather than by `bakery-top window start`.
    #[serde(default)]
    pub automatic: bool,
    #[serde(default)]
    pub workload: Option<WorkloadRef>,
}

/// One node's charted share at one tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharePoint {
    pub t_ms: i64,
    /// Observed share of the charted signal over the detection span; `None` before there is data.
    pub share: Option<f64>,
    /// Expected share at that tick.
    pub expected: f64,
    /// The figures the window's verdicts cite ([`Reading::cited_by`]), over the same span: only
    /// those, so a window without a verdict keeps none; reports stored before they were kept have
    /// none either.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub readings: BTreeMap<Reading, f64>,
}

/// One node's share over time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeSeries {
    pub node: String,
    pub points: Vec<SharePoint>,
}

/// A verdict raised during the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportedVerdict {
    /// The verdict at the middle of its active time inside the window: the steady state, away from the
    /// ramps at its start and end (its evidence is from that tick).
    pub verdict: Verdict,
    /// The highest confidence it reached inside the window.
    pub peak_confidence: f64,
    pub raised_ms: i64,
    pub last_active_ms: i64,
    /// When it cleared, if it did before the replay ended.
    pub cleared_ms: Option<i64>,
}

/// Everything bakery reports about one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowReport {
    pub window: Window,
    /// The charted signal: pod traffic with a workload under test, node CPU without one.
    pub signal: Signal,
    /// Shares and statistics over the whole window; `None` without two samples inside it.
    pub overall: Option<Analysis>,
    /// Per node, sorted by name.
    pub series: Vec<NodeSeries>,
    /// Sorted by raise time, then node and cause.
    pub verdicts: Vec<ReportedVerdict>,
    /// Every raise and clear seen during the replay.
    pub changes: Vec<VerdictChange>,
    /// What the collector could not read and what the diagnosis assumed instead (for example
    /// "MetalLB is not installed").
    #[serde(default)]
    pub notes: Vec<String>,
}

impl WindowReport {
    /// Replays `ticks` (in time order; ticks before the window warm the detector up) and reports on
    /// `window`.
    pub fn build<'a>(window: Window, ticks: impl IntoIterator<Item = &'a Tick>, config: &Config) -> Result<Self> {
        // One piece: a single replay of the ticks collects the verdicts, the changes and every node's share and
        // readings series together, so they come from the same evaluations.
        if window.end_ms <= window.start_ms {
            return Err(Error::EmptyWindow { start_ms: window.start_ms, end_ms: window.end_ms });
        }
        let mut detector = Detector::new(config.clone())?;
        let mut window_history = History::default();
        let retain_ms = window.end_ms - window.start_ms + config.detect_span_ms;
        let mut series: BTreeMap<String, Vec<SharePoint>> = BTreeMap::new();
        let mut active_snapshots: BTreeMap<(String, Cause), Vec<Verdict>> = BTreeMap::new();
        let mut last_seen: BTreeMap<(String, Cause), i64> = BTreeMap::new();
        let mut cleared: BTreeMap<(String, Cause), i64> = BTreeMap::new();
        let mut changes = Vec::new();
        let mut window_workload = None;
        // Both candidates are kept per point, because which one is charted depends on whether
        // the window (not the warm-up before it) had a workload under test.
        let mut cpu_shares: BTreeMap<String, Vec<Option<f64>>> = BTreeMap::new();
        for tick in ticks {
            let evaluation = detector.observe(tick)?;
            if tick.timestamp_ms <= window.end_ms {
                window_history.ingest(&tick.nodes, retain_ms)?;
                if tick.timestamp_ms >= window.start_ms {
                    window_workload = tick.workload.clone();
                }
            }
            let total_endpoints: u64 = match &tick.workload {
                Some(w) => tick.nodes.iter().map(|n| u64::from(w.endpoints_on(&n.name))).sum(),
                None => tick.nodes.len() as u64,
            };
            for node in &tick.nodes {
                let endpoints = tick.workload.as_ref().map_or(1, |w| w.endpoints_on(&node.name));
                let expected = if total_endpoints == 0 { 0.0 } else { f64::from(endpoints) / total_endpoints as f64 };
                let figures = evaluation.detection.node(&node.name);
                series.entry(node.name.clone()).or_default().push(SharePoint {
                    t_ms: tick.timestamp_ms,
                    share: figures.and_then(|n| n.share(Signal::PodTraffic)),
                    expected,
                    readings: figures.map(readings).unwrap_or_default(),
                });
                cpu_shares.entry(node.name.clone()).or_default().push(figures.and_then(|n| n.share(Signal::Cpu)));
            }
            changes.extend(evaluation.changes.iter().cloned());
            for change in evaluation.changes.iter().filter(|c| c.change == ChangeKind::Cleared) {
                cleared.insert((change.node.clone(), change.cause), change.at_ms);
            }
            if !(window.start_ms..=window.end_ms).contains(&tick.timestamp_ms) {
                continue;
            }
            for verdict in &evaluation.verdicts {
                last_seen.insert((verdict.node.clone(), verdict.cause), tick.timestamp_ms);
            }
            for verdict in evaluation.verdicts {
                active_snapshots.entry((verdict.node.clone(), verdict.cause)).or_default().push(verdict);
            }
        }
        let mut reported: Vec<ReportedVerdict> = active_snapshots
            .into_iter()
            .filter_map(|(key, mut snapshots)| {
                let peak_confidence = snapshots.iter().map(|v| v.confidence).fold(0.0, f64::max);
                let raised_ms = snapshots.first()?.since_ms;
                let middle = snapshots.len() / 2;
                let verdict = snapshots.swap_remove(middle);
                let last_active_ms = *last_seen.get(&key)?;
                let cleared_ms = cleared.get(&key).copied().filter(|&t| t > last_active_ms);
                Some(ReportedVerdict { verdict, peak_confidence, raised_ms, last_active_ms, cleared_ms })
            })
            .collect();
        let overall = {
            let analysis = analyse(
                &window_history,
                window_workload.as_ref(),
                window.end_ms,
                window.end_ms - window.start_ms,
                config,
            );
            (!analysis.nodes.is_empty()).then_some(analysis)
        };
        reported.sort_by(|a, b| {
            a.raised_ms
                .cmp(&b.raised_ms)
                .then(a.verdict.node.cmp(&b.verdict.node))
                .then(a.verdict.cause.cmp(&b.verdict.cause))
        });
        keep_cited(&mut series, &reported);
        let signal = if window_workload.is_some() { Signal::PodTraffic } else { Signal::Cpu };
        if signal == Signal::Cpu {
            for (node, points) in &mut series {
                for (point, share) in points.iter_mut().zip(cpu_shares.remove(node).unwrap_or_default()) {
                    point.share = share;
                }
            }
        }
        Ok(Self {
            window,
            signal,
            overall,
            series: series.into_iter().map(|(node, points)| NodeSeries { node, points }).collect(),
            verdicts: reported,
            changes,
            notes: Vec::new(),
        })
    }

    /// The report with the collector's notes on what it could not read.
    pub fn with_notes(mut self, notes: Vec<String>) -> Self {
        self.notes = notes;
        self
    }

    pub fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }

    pub fn from_json(text: &str) -> serde_json::Result<Self> {
        serde_json::from_str(text)
    }

    /// The SVG chart of this report.
    pub fn to_svg(&self) -> String {
        crate::svg::render(self)
    }

    fn seconds_into(&self, t_ms: i64) -> String {
        format!("{:+.2} s", (t_ms - self.window.start_ms) as f64 / 1000.0)
    }
}

/// Every reading of one node's figures.
fn readings(node: &NodeAnalysis) -> BTreeMap<Reading, f64> {
    Reading::ALL.into_iter().filter_map(|r| Some((r, r.of(node)?))).collect()
}

/// Drops the readings no reported verdict cites, so that a report carries the evidence of its
/// verdicts and nothing more.
fn keep_cited(series: &mut BTreeMap<String, Vec<SharePoint>>, reported: &[ReportedVerdict]) {
    let cited: BTreeSet<Reading> = reported.iter().flat_map(|r| Reading::cited_by(r.verdict.cause)).copied().collect();
    for point in series.values_mut().flatten() {
        point.readings.retain(|reading, _| cited.contains(reading));
    }
}

fn cell(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_string(), format_number)
}

impl fmt::Display for WindowReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One piece: the text report top to bottom, in the order a reader sees it.
        let w = &self.window;
        writeln!(
            f,
            "Window \"{}\" ({}), {:.1} s{}",
            w.name,
            if w.automatic { "automatic" } else { "manual" },
            (w.end_ms - w.start_ms) as f64 / 1000.0,
            w.workload.as_ref().map_or(String::new(), |wl| format!(", workload {wl}"))
        )?;
        match &self.overall {
            None => writeln!(f, "No node had two samples inside the window.")?,
            Some(overall) => {
                writeln!(f, "Over the whole window ({} = {}):", self.signal.name(), self.signal.unit())?;
                writeln!(
                    f,
                    "  {:<14} {:<13} {:>9} {:>8} {:>8} {:>10} {:>8} {:>8} {:>8} {:>7}",
                    "node",
                    "role",
                    "endpoints",
                    "expected",
                    "observed",
                    "normalised",
                    "conns",
                    "nic x",
                    "cpu",
                    "temp C"
                )?;
                for node in &overall.nodes {
                    writeln!(
                        f,
                        "  {:<14} {:<13} {:>9} {:>8} {:>8} {:>10} {:>8} {:>8} {:>8} {:>7}",
                        node.node,
                        node.role.to_string(),
                        node.endpoints,
                        format_number(node.expected_share),
                        cell(node.share(self.signal)),
                        cell(node.normalised(self.signal)),
                        cell(node.value(Signal::Connections)),
                        cell(node.normalised(Signal::Nic)),
                        cell(node.value(Signal::Cpu)),
                        cell(node.value(Signal::Temperature)),
                    )?;
                }
                for signal in [self.signal, Signal::Connections, Signal::Nic, Signal::Cpu, Signal::UnattributedCpu] {
                    if let Some(s) = overall.summary.get(&signal) {
                        writeln!(
                            f,
                            "  {:<17} max/mean {:>6}  jain {:>6}  over {} serving nodes",
                            signal.name(),
                            cell(s.max_over_mean),
                            cell(s.jain),
                            s.nodes
                        )?;
                    }
                }
            }
        }
        if let Some(overall) = &self.overall {
            if let Some(entry) = &overall.entry {
                writeln!(f, "Entry model (read from the cluster):")?;
                for line in entry.read() {
                    writeln!(f, "  {line}")?;
                }
            }
            for starved in &overall.starved {
                writeln!(
                    f,
                    "Starved: {} on {} carried {} of the traffic against {} for one endpoint.",
                    starved.pod,
                    starved.node,
                    format_number(starved.share),
                    format_number(starved.expected)
                )?;
            }
            for unavailable in &overall.unavailable {
                writeln!(f, "Unavailable: {unavailable}")?;
            }
        }
        for note in &self.notes {
            writeln!(f, "Note: {note}")?;
        }
        if self.verdicts.is_empty() {
            write!(f, "No verdict: no node took more than its share beyond noise.")?;
        } else {
            writeln!(f, "Verdicts:")?;
            for (i, r) in self.verdicts.iter().enumerate() {
                let cleared =
                    r.cleared_ms.map_or("still active".to_string(), |t| format!("cleared {}", self.seconds_into(t)));
                writeln!(
                    f,
                    "- raised {}, {cleared}, peak confidence {:.2}",
                    self.seconds_into(r.raised_ms),
                    r.peak_confidence
                )?;
                write!(f, "  {}", r.verdict.to_string().replace('\n', "\n  "))?;
                if i + 1 < self.verdicts.len() {
                    writeln!(f)?;
                }
            }
        }
        Ok(())
    }
}
