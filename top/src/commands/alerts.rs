//! `bakery-top alerts [--json]`: the live hog verdicts (`Query.Alerts`), one block per verdict
//! with its cause, confidence, evidence and next step.

use std::io::Write;

use bakery_proto::v1::{AlertsRequest, AlertsResponse, Verdict};
use serde_json::{Value, json};

use crate::commands::{call, connect, format_time};
use crate::source::GrpcConfig;

/// A verdict as JSON (the same field names as the report's verdicts).
pub fn verdict_json(verdict: &Verdict) -> Value {
    json!({
        "node": verdict.node_name,
        "cause": verdict.cause,
        "confidence": verdict.confidence,
        "since_ms": verdict.since_ms,
        "subject": (!verdict.subject.is_empty()).then_some(&verdict.subject),
        "summary": verdict.summary,
        "evidence": verdict.evidence,
        "next_step": verdict.next_step,
        "remedy": (!verdict.remedy.is_empty()).then_some(&verdict.remedy),
        "read": verdict.read,
    })
}

/// `--json`: `{"evaluated_ms": .., "alerts": [..]}`.
pub fn to_json(response: &AlertsResponse) -> Value {
    json!({
        "evaluated_ms": response.evaluated_ms,
        "alerts": response.verdicts.iter().map(verdict_json).collect::<Vec<_>>(),
    })
}

/// One verdict as text.
pub fn verdict_text(verdict: &Verdict) -> String {
    let mut text = format!("{}: {} (confidence {:.2})", verdict.node_name, verdict.cause, verdict.confidence);
    if !verdict.subject.is_empty() {
        text.push_str(&format!(" [{}]", verdict.subject));
    }
    text.push_str(&format!("\n  since: {}", format_time(verdict.since_ms)));
    if !verdict.summary.is_empty() {
        text.push_str(&format!("\n  why: {}", verdict.summary));
    }
    if !verdict.evidence.is_empty() {
        text.push_str(&format!("\n  evidence: {}", verdict.evidence.join("; ")));
    }
    if !verdict.read.is_empty() {
        text.push_str(&format!("\n  read: {}", verdict.read.join("; ")));
    }
    text.push_str(&format!("\n  next step: {}", verdict.next_step));
    text
}

/// The text form: every verdict, or a line saying there is none.
pub fn to_text(response: &AlertsResponse) -> String {
    if response.verdicts.is_empty() {
        return format!("no live alerts (evaluated {})\n", format_time(response.evaluated_ms));
    }
    let blocks: Vec<String> = response.verdicts.iter().map(verdict_text).collect();
    format!("{}\n", blocks.join("\n\n"))
}

/// Asks the collector and prints.
pub async fn run(config: GrpcConfig, json: bool, out: &mut impl Write) -> anyhow::Result<()> {
    let url = config.url.clone();
    let (mut client, timeout) = connect(config).await?;
    let response = call(timeout, &url, client.alerts(AlertsRequest {})).await?;
    if json {
        serde_json::to_writer_pretty(&mut *out, &to_json(&response))?;
        writeln!(out)?;
    } else {
        write!(out, "{}", to_text(&response))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict() -> Verdict {
        Verdict {
            node_name: "pi-2".into(),
            cause: "connection-pinning".into(),
            evidence: vec!["pod traffic share=2.25x expected".into(), "connections=3 of 4".into()],
            confidence: 0.72,
            next_step: "rerun with oha --disable-keepalive".into(),
            since_ms: 1_764_070_927_000,
            summary: "pod traffic follows the connection counts".into(),
            subject: String::new(),
            remedy: "spread-connections".into(),
            read: vec!["Service shop/web: type LoadBalancer".into()],
        }
    }

    #[test]
    fn text_shows_cause_evidence_and_next_step() {
        let text = to_text(&AlertsResponse { verdicts: vec![verdict()], evaluated_ms: 1 });
        assert_eq!(
            text,
            "pi-2: connection-pinning (confidence 0.72)\n  since: 2025-11-25 11:42:07 UTC\n  \
             why: pod traffic follows the connection counts\n  \
             evidence: pod traffic share=2.25x expected; connections=3 of 4\n  \
             read: Service shop/web: type LoadBalancer\n  \
             next step: rerun with oha --disable-keepalive\n"
        );
        assert!(to_text(&AlertsResponse::default()).starts_with("no live alerts"));
    }

    #[test]
    fn json_names_the_fields() {
        let value = to_json(&AlertsResponse { verdicts: vec![verdict()], evaluated_ms: 7 });
        assert_eq!(value["evaluated_ms"], 7);
        assert_eq!(value["alerts"][0]["cause"], "connection-pinning");
        assert_eq!(value["alerts"][0]["subject"], Value::Null);
        assert_eq!(value["alerts"][0]["evidence"][1], "connections=3 of 4");
        assert_eq!(value["alerts"][0]["remedy"], "spread-connections");
        assert_eq!(value["alerts"][0]["read"][0], "Service shop/web: type LoadBalancer");
    }
}
