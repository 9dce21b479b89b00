//! `bakery-top window start [--name N] [--workload NS/NAME]` and `bakery-top window stop`:
//! open and close a load-test window on the collector (`Query.StartWindow` / `StopWindow`).

use std::io::Write;

use bakery_proto::v1::{StartWindowRequest, StopWindowRequest, Window};

use crate::commands::{call, connect, format_time};
use crate::source::GrpcConfig;

/// What `start` prints.
pub fn started_text(window: &Window) -> String {
    let workload =
        if window.workload.is_empty() { "inferred from traffic".to_string() } else { window.workload.clone() };
    format!(
        "window {} \"{}\" open since {} (workload: {workload}); agents sample faster until `bakery-top window stop`\n",
        window.id,
        window.name,
        format_time(window.start_ms)
    )
}

/// What `stop` prints.
pub fn stopped_text(window: &Window) -> String {
    let mut text = format!(
        "window {} \"{}\" closed: {} .. {}, {} verdict(s)\n",
        window.id,
        window.name,
        format_time(window.start_ms),
        format_time(window.end_ms),
        window.verdicts.len()
    );
    for verdict in &window.verdicts {
        text.push_str(&format!("  {}: {} (confidence {:.2})\n", verdict.node_name, verdict.cause, verdict.confidence));
    }
    text.push_str(&format!("report: bakery-top report {}\n", window.id));
    text
}

pub async fn start(
    config: GrpcConfig,
    name: Option<String>,
    workload: Option<String>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let url = config.url.clone();
    let (mut client, timeout) = connect(config).await?;
    let request = StartWindowRequest { name: name.unwrap_or_default(), workload: workload.unwrap_or_default() };
    let window = call(timeout, &url, client.start_window(request)).await?.window.unwrap_or_default();
    write!(out, "{}", started_text(&window))?;
    Ok(())
}

pub async fn stop(config: GrpcConfig, out: &mut impl Write) -> anyhow::Result<()> {
    let url = config.url.clone();
    let (mut client, timeout) = connect(config).await?;
    // Building and storing the report replays the window: allow more than a plain call.
    let window = call(timeout * 10, &url, client.stop_window(StopWindowRequest {})).await?.window.unwrap_or_default();
    write!(out, "{}", stopped_text(&window))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bakery_proto::v1::Verdict;

    #[test]
    fn stop_lists_the_verdicts_and_how_to_read_the_report() {
        let window = Window {
            id: "w-5".into(),
            name: "run".into(),
            start_ms: 1_764_070_927_000,
            end_ms: 1_764_070_987_000,
            verdicts: vec![Verdict {
                node_name: "pi-1".into(),
                cause: "ingress-concentration".into(),
                confidence: 0.9,
                ..Verdict::default()
            }],
            ..Window::default()
        };
        let text = stopped_text(&window);
        assert!(text.contains("  pi-1: ingress-concentration (confidence 0.90)\n"), "{text}");
        assert!(text.ends_with("report: bakery-top report w-5\n"), "{text}");
        assert!(started_text(&window).contains("(workload: inferred from traffic)"));
    }
}
