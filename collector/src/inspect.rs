//! `bakery-collector inspect`: what a stopped collector's store holds, per node, as a table for
//! people or as JSON for scripts and the end-to-end tests; also a store file the collector
//! moved aside (`--file`).

use std::io::Write;
use std::process::ExitCode;

use crate::cli::InspectArgs;
use crate::store::{self, StoreReport};

/// Prints the report of the store in `args.data_dir`, or of `args.file`.
pub fn run(args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let mut progress = bakery_cli::Progress::stderr(if args.verify { "verifying nodes" } else { "reading nodes" });
    let mut tell = |done, total| progress.update(done, total);
    let report = match (&args.file, &args.data_dir) {
        (Some(file), _) => store::inspect_file(file, crate::now_ms(), args.verify, &mut tell),
        (None, Some(data_dir)) => store::inspect(data_dir, crate::now_ms(), args.verify, &mut tell),
        (None, None) => anyhow::bail!("inspect needs --data-dir DIR or --file FILE"),
    };
    progress.finish();
    let report = report?;
    let mut stdout = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut stdout, &report)?;
        writeln!(stdout)?;
    } else {
        write!(stdout, "{}", render(&report))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The report as a table, one line per node and one indented line per gap.
pub fn render(report: &StoreReport) -> String {
    use std::fmt::Write as _;
    if report.nodes.is_empty() {
        return "no nodes in this store yet\n".to_string();
    }
    let mut out = String::new();
    let width = report.nodes.iter().map(|n| n.node.len()).max().unwrap_or(4).max(4);
    let _ = writeln!(
        out,
        "{:width$}  {:>8}  {:>8}  {:>21}  {:>9}  {:>4}  {:>5}  {:>9}  stale",
        "node", "samples", "batches", "stored seqs", "committed", "gaps", "dups", "skew ms"
    );
    if report.unreadable_records > 0 {
        let _ = writeln!(out, "{} node records do not decode and are not listed", report.unreadable_records);
    }
    for node in &report.nodes {
        let seqs = match (node.first_seq, node.last_seq) {
            (Some(first), Some(last)) => format!("{first}..={last}"),
            _ => "-".to_string(),
        };
        let skew = node.clock_skew_ms.map_or_else(|| "-".to_string(), |s| s.to_string());
        let _ = writeln!(
            out,
            "{:width$}  {:>8}  {:>8}  {:>21}  {:>9}  {:>4}  {:>5}  {:>9}  {}",
            node.node,
            node.samples,
            node.batches,
            seqs,
            node.committed_seq,
            node.gaps.len(),
            node.duplicates_dropped,
            skew,
            if node.stale { "yes" } else { "no" }
        );
        for gap in &node.gaps {
            let _ = writeln!(out, "  gap {}..={}: {}", gap.first_seq, gap.last_seq, gap.reason);
        }
        for range in node.unaccounted.iter().flatten() {
            let _ = writeln!(out, "  UNACCOUNTED {}..={}", range.first_seq, range.last_seq);
        }
        for range in node.double_accounted.iter().flatten() {
            let _ = writeln!(out, "  DOUBLE-ACCOUNTED {}..={}", range.first_seq, range.last_seq);
        }
        for range in node.ahead.iter().flatten() {
            let _ = writeln!(
                out,
                "  ahead {}..={}: live samples stored before the replay below them finished (it resumes when the agent returns)",
                range.first_seq, range.last_seq
            );
        }
    }
    out
}
