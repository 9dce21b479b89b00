//! `bakery-top --once`: one snapshot as plain text (aligned tables, no escape codes) or JSON, for
//! pipes, scripts and CI logs.

use std::io::Write;

use serde::Serialize;

use crate::model::{Snapshot, WindowSummary};
use crate::render::format::{self, UNKNOWN};

/// The JSON document `--once --json` prints.
#[derive(Debug, Serialize)]
pub struct OnceOutput<'a> {
    /// Where the snapshot came from.
    pub source: &'a str,
    #[serde(flatten)]
    pub snapshot: &'a Snapshot,
}

/// Writes `snapshot` as one JSON document and a newline.
pub fn write_json(out: &mut impl Write, source: &str, snapshot: &Snapshot) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, &OnceOutput { source, snapshot })?;
    writeln!(out)
}

/// Writes `snapshot` as plain text: a heading, the nodes, the alerts, the pods and the windows.
pub fn write_text(out: &mut impl Write, source: &str, snapshot: &Snapshot) -> std::io::Result<()> {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(snapshot.taken_ms.max(0) as u64);
    writeln!(out, "bakery-top snapshot of {source} at {}", humantime::format_rfc3339_seconds(time))?;
    writeln!(out, "share: {}", snapshot.share_basis)?;
    writeln!(out)?;
    write_table(out, &node_rows(snapshot))?;
    writeln!(out)?;
    match &snapshot.alerts {
        None => writeln!(out, "alerts: not served by this collector")?,
        Some(alerts) if alerts.is_empty() => writeln!(out, "alerts: no hog flagged")?,
        Some(alerts) => {
            writeln!(out, "alerts:")?;
            for alert in alerts {
                writeln!(
                    out,
                    "  {} {} ({:.0}%): {}",
                    alert.node,
                    alert.cause,
                    alert.confidence * 100.0,
                    alert.evidence
                )?;
                writeln!(out, "    next: {}", alert.next_step)?;
            }
        }
    }
    writeln!(out)?;
    write_table(out, &pod_rows(snapshot))?;
    if let Some(windows) = &snapshot.windows {
        writeln!(out)?;
        write_table(out, &window_rows(windows))?;
    }
    Ok(())
}

fn or_unknown<T>(value: Option<T>, show: impl FnOnce(T) -> String) -> String {
    value.map_or_else(|| UNKNOWN.to_string(), show)
}

fn node_rows(snapshot: &Snapshot) -> Vec<Vec<String>> {
    let header = ["NODE", "ROLE", "AGENT", "CPU%", "SOFTIRQ%", "MEM", "TEMP", "FREQ", "THROTTLE", "RX/s", "TX/s"];
    let header = header.into_iter().chain(["SHARE", "EXPECTED", "CONNS"]).map(str::to_string).collect();
    let mut rows = vec![header];
    for node in &snapshot.nodes {
        let letters = format::throttle_letters(&node.throttle);
        rows.push(vec![
            node.name.clone(),
            node.role.as_str().to_string(),
            format!("{:?}", node.agent).to_lowercase(),
            or_unknown(node.cpu, |c| format!("{:.0}", c.busy_percent)),
            or_unknown(node.cpu, |c| format!("{:.0}", c.softirq_percent)),
            or_unknown(node.memory, |m| format::memory(m.used_bytes, m.total_bytes)),
            or_unknown(node.temperature_celsius, |t| format!("{t:.0}C")),
            or_unknown(node.frequency, |f| format::frequency(&f)),
            if letters.is_empty() { UNKNOWN.to_string() } else { letters },
            or_unknown(node.nic, |n| format::rate(n.rx_bytes_per_second)),
            or_unknown(node.nic, |n| format::rate(n.tx_bytes_per_second)),
            or_unknown(node.share, |s| format::percent(s.observed * 100.0)),
            or_unknown(node.share, |s| format::percent(s.expected * 100.0)),
            or_unknown(node.inbound_connections, |c| c.to_string()),
        ]);
    }
    rows
}

fn pod_rows(snapshot: &Snapshot) -> Vec<Vec<String>> {
    let header = ["NAMESPACE", "NAME", "READY", "NODE", "WORKLOAD", "RX/s", "TX/s", "CONNS", "CPU", "MEM"];
    let mut rows = vec![header.into_iter().map(str::to_string).collect()];
    for pod in &snapshot.pods {
        let network = |pick: fn(&crate::model::Rates) -> f64| {
            if pod.host_network { "host".to_string() } else { or_unknown(pod.network, |n| format::rate(pick(&n))) }
        };
        rows.push(vec![
            if pod.namespace.is_empty() { UNKNOWN.to_string() } else { pod.namespace.clone() },
            pod.name.clone(),
            or_unknown(pod.ready, |r| if r { "1/1".into() } else { "0/1".into() }),
            pod.node.clone(),
            pod.workload.clone().unwrap_or_else(|| UNKNOWN.to_string()),
            network(|n| n.rx_bytes_per_second),
            network(|n| n.tx_bytes_per_second),
            or_unknown(pod.inbound_connections, |c| c.to_string()),
            or_unknown(pod.cpu_cores, |c| format!("{c:.2}")),
            or_unknown(pod.memory_working_set_bytes, format::size),
        ]);
    }
    rows
}

fn window_rows(windows: &[WindowSummary]) -> Vec<Vec<String>> {
    let header = ["WINDOW", "NAME", "WORKLOAD", "KIND", "START", "END", "REPORT"];
    let mut rows = vec![header.into_iter().map(str::to_string).collect()];
    for w in windows {
        rows.push(vec![
            w.id.clone(),
            w.name.clone(),
            w.workload.clone().unwrap_or_else(|| UNKNOWN.to_string()),
            if w.automatic { "auto" } else { "manual" }.to_string(),
            format::clock(w.start_ms),
            w.end_ms.map_or_else(|| "open".to_string(), format::clock),
            if w.verdicts.is_empty() { "no hog".to_string() } else { w.verdicts.join("; ") },
        ]);
    }
    rows
}

/// Left-aligned columns two spaces apart; no trailing spaces.
fn write_table(out: &mut impl Write, rows: &[Vec<String>]) -> std::io::Result<()> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', width.saturating_sub(cell.chars().count()) + 2));
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Cause, NodeView};

    #[test]
    fn json_round_trips_and_spells_causes_as_the_diagnosis_vocabulary() {
        let mut snapshot = crate::made_up::bakery(30, true);
        if let Some(alerts) = snapshot.alerts.as_mut() {
            let mut unknown = alerts[0].clone();
            unknown.cause = Cause::Other("a-cause-from-a-newer-collector".into());
            alerts.push(unknown);
        }
        let mut out = Vec::new();
        write_json(&mut out, "demo", &snapshot).unwrap();
        let document: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(document["alerts"][0]["cause"], "connection-pinning");
        assert_eq!(document["alerts"][1]["cause"], "a-cause-from-a-newer-collector");
        // Reads back (floats aside, which JSON text may round in the last digit).
        let back: Snapshot = serde_json::from_value(document).unwrap();
        let causes = |s: &Snapshot| s.alerts.iter().flatten().map(|a| a.cause.clone()).collect::<Vec<_>>();
        assert_eq!(causes(&back), causes(&snapshot));
        assert_eq!((&back.windows, &back.share_basis), (&snapshot.windows, &snapshot.share_basis));
        assert_eq!(
            back.nodes.iter().map(|n| &n.name).collect::<Vec<_>>(),
            ["master-01", "master-02", "master-03", "worker-01", "worker-02"]
        );
    }

    #[test]
    fn text_shows_a_dash_for_what_is_unknown_and_no_trailing_spaces() {
        let snapshot =
            Snapshot { nodes: vec![NodeView { name: "pi-1".into(), ..NodeView::default() }], ..Snapshot::default() };
        let mut out = Vec::new();
        write_text(&mut out, "test", &snapshot).unwrap();
        let text = String::from_utf8(out).unwrap();
        let row = text.lines().find(|l| l.starts_with("pi-1")).unwrap();
        assert_eq!(
            row.split_whitespace().collect::<Vec<_>>(),
            ["pi-1", "-", "live", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-"]
        );
        assert!(text.lines().all(|l| !l.ends_with(' ')), "{text}");
        assert!(text.contains("alerts: not served by this collector"));
    }
}
