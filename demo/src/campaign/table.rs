//! The campaign's table for people (dimensions, then verdicts, then the summary line and the
//! details of every scenario that went wrong) and its JSON for machines.

use std::fmt::Write;

use serde::Serialize;

use super::generate::{Dimensions, Generated};
use super::truth::{AfterRun, Rule};
use super::{Outcome, Summary};
use crate::diagnose::VerdictKey;

/// Columns padded to their widest cell, two spaces apart; no colour, so `NO_COLOR` has nothing to
/// turn off and the table pastes as it is.
pub fn grid(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(i) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, cell)| format!("{cell:<width$}", width = widths.get(i).copied().unwrap_or(0)))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// `node cause, node cause`, or `-`.
pub fn verdicts(keys: &[VerdictKey]) -> String {
    if keys.is_empty() {
        "-".into()
    } else {
        keys.iter().map(|k| format!("{} {}", k.node, k.cause)).collect::<Vec<_>>().join(", ")
    }
}

fn injected(rule: Rule, on: Option<&str>) -> String {
    match on {
        Some(node) => format!("{rule} on {node}"),
        None => rule.to_string(),
    }
}

fn dimension_cells(index: usize, d: &Dimensions) -> Vec<String> {
    vec![
        index.to_string(),
        format!("{} ({} cp)", d.nodes, d.control_planes),
        d.web.join(" "),
        d.database.clone(),
        d.entry.clone(),
        d.policy.clone(),
        d.affinity.clone(),
        d.proxy.clone(),
        d.oha(),
    ]
}

const DIMENSION_HEADERS: [&str; 10] =
    ["#", "nodes", "WordPress on", "MySQL on", "entry", "policy", "affinity", "proxy", "oha", "injected"];

/// The expected verdicts before the run: rules 4 and 5 are decided by it.
fn expected_before_the_run(generated: &Generated) -> String {
    let fixed = verdicts(&generated.truth.fixed);
    match &generated.truth.after_run {
        None => fixed,
        Some(AfterRun::Affinity { announcer }) => {
            format!("P pod-concentration (+ {announcer} ingress-concentration if P is not {announcer})")
        }
        Some(AfterRun::Pinning { .. }) => "connection-pinning past the pinned line (or none)".into(),
    }
}

/// `--dry-run`: the scenarios and what each must get, without running them.
pub fn render_plan(seed: u64, generated: &[Generated]) -> String {
    let mut out = format!("campaign seed {seed}: {} scenarios (not run)\n\n", generated.len());
    let mut headers = DIMENSION_HEADERS.to_vec();
    headers.push("expected");
    let rows: Vec<Vec<String>> = generated
        .iter()
        .map(|g| {
            let mut row = dimension_cells(g.index, &super::generate::Dimensions::of(&g.scenario));
            let on = match g.truth.rule {
                Rule::NoisyNeighbour | Rule::HotNode | Rule::MemorySqueeze => {
                    g.truth.fixed.first().map(|k| k.node.as_str())
                }
                _ => None,
            };
            row.push(injected(g.truth.rule, on));
            row.push(expected_before_the_run(g));
            row
        })
        .collect();
    out.push_str(&grid(&headers, &rows));
    out.push('\n');
    for g in generated {
        let _ = writeln!(out, "{:>2}  rule {}: {}", g.index, g.truth.rule.number(), g.truth.why);
    }
    out
}

/// The first flag's seconds, `0.0*` when it was raised before the load.
fn first_flag(outcome: &Outcome) -> String {
    match (outcome.first_flag_seconds, outcome.flagged_before_load) {
        (Some(_), true) => "0.0*".into(),
        (Some(seconds), false) => format!("{seconds:.1}"),
        (None, _) => "-".into(),
    }
}

/// The two tables (dimensions, then verdicts) for the outcomes so far.
pub fn render_tables(outcomes: &[Outcome]) -> String {
    let dimensions: Vec<Vec<String>> = outcomes
        .iter()
        .map(|o| {
            let mut row = dimension_cells(o.index, &o.dimensions);
            row.push(injected(o.rule, o.injected_on.as_deref()));
            row
        })
        .collect();
    let results: Vec<Vec<String>> = outcomes
        .iter()
        .map(|o| {
            let brief: Vec<String> =
                o.brief.iter().map(|b| format!("{} {} {:.1} s", b.node, b.cause, b.seconds)).collect();
            vec![
                o.index.to_string(),
                verdicts(&o.expected),
                verdicts(&o.held),
                if brief.is_empty() { "-".into() } else { brief.join(", ") },
                match (&o.error, o.right) {
                    (Some(_), _) => "ERROR".into(),
                    (None, true) => "yes".into(),
                    (None, false) => "NO".into(),
                },
                o.false_flags.len().to_string(),
                o.misses.len().to_string(),
                first_flag(o),
                format!("{:.0}", o.seconds),
            ]
        })
        .collect();
    let mut out = grid(&DIMENSION_HEADERS, &dimensions);
    out.push('\n');
    out.push_str(&grid(
        &[
            "#",
            "expected",
            "held >= 3 s",
            "brief (not counted)",
            "right",
            "false flags",
            "misses",
            "first flag s",
            "run s",
        ],
        &results,
    ));
    if outcomes.iter().any(|o| o.flagged_before_load) {
        out.push_str("* raised before the load started (a condition present from boot): counted as 0 s\n");
    }
    out
}

/// The summary line.
pub fn render_summary(summary: &Summary) -> String {
    let seconds = |s: Option<f64>| s.map_or("-".to_string(), |s| format!("{s:.1} s"));
    let mut line = format!(
        "right {}/{}, false flags {}, misses {}, median time to first flag {} (over {} of the {} scenarios that \
         expect a hog",
        summary.right,
        summary.scenarios,
        summary.false_flags,
        summary.misses,
        seconds(summary.median_seconds_to_first_flag),
        summary.flagged,
        summary.expecting_a_hog,
    );
    if summary.flagged_before_load > 0 {
        let _ = write!(
            line,
            "; {} raised before the load, without them {}",
            summary.flagged_before_load,
            seconds(summary.median_seconds_to_first_flag_during_load)
        );
    }
    line.push(')');
    if summary.errors > 0 {
        let _ = write!(line, ", {} could not be judged", summary.errors);
    }
    line.push('\n');
    line
}

/// What went wrong in each scenario that is not right: the rule, the truth, the differences and
/// the demo's own report (verdict lines and per-node figures).
pub fn render_wrong(outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    for o in outcomes.iter().filter(|o| !o.right) {
        let _ = writeln!(
            out,
            "\n#{} {} ({}, rule {}): {}",
            o.index,
            o.scenario,
            injected(o.rule, o.injected_on.as_deref()),
            o.rule.number(),
            if o.error.is_some() { "could not be judged" } else { "WRONG" }
        );
        let _ = writeln!(out, "  truth: {}", o.truth);
        if let Some(error) = &o.error {
            let _ = writeln!(out, "  error: {error}");
        }
        for difference in &o.differences {
            let _ = writeln!(out, "  {difference}");
        }
        for note in &o.notes {
            let _ = writeln!(out, "  ({note})");
        }
        if let Some(report) = &o.report {
            for line in crate::report::render(report).lines() {
                let _ = writeln!(out, "  | {line}");
            }
        }
    }
    out
}

/// Everything the campaign did, for `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignJson<'a> {
    pub seed: u64,
    pub count: usize,
    /// Set when one scenario was run (`--only`).
    pub only: Option<usize>,
    pub started: String,
    pub machine: String,
    pub interrupted: bool,
    pub summary: Summary,
    pub outcomes: &'a [Outcome],
}

/// One planned scenario, for `--dry-run --json`.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedJson {
    pub index: usize,
    pub scenario: String,
    pub dimensions: Dimensions,
    pub truth: super::truth::Truth,
    pub scenario_toml: String,
}

impl PlannedJson {
    pub fn of(generated: &Generated) -> Self {
        PlannedJson {
            index: generated.index,
            scenario: generated.scenario.name.clone(),
            dimensions: Dimensions::of(&generated.scenario),
            truth: generated.truth.clone(),
            scenario_toml: toml::to_string(&generated.scenario).unwrap_or_default(),
        }
    }
}

/// This machine, for the record: CPU model, cores, memory and kernel.
pub fn machine() -> String {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown CPU".to_string(), |m| m.trim().to_string());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory_gib = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    format!(
        "{model}, {cores} cores, {memory_gib:.0} GiB, Linux {}, {}",
        read("/proc/sys/kernel/osrelease").trim(),
        std::env::consts::ARCH
    )
}
