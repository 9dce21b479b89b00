//! `bakery-top report [ID] [--json | --svg FILE]`: a stored window report (`Query.Report`; the
//! newest without an ID) as text, as the collector's JSON, or its SVG chart written to a file.

use std::io::Write;
use std::path::Path;

use bakery_proto::v1::{ReportRequest, ReportResponse, WindowsRequest};

use crate::commands::{call, connect, format_time};
use crate::source::GrpcConfig;

/// How the report is printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportFormat {
    Text,
    Json,
    Svg(std::path::PathBuf),
}

/// The text form: a header with the window, then the collector's text report.
pub fn to_text(response: &ReportResponse) -> String {
    let mut text = String::new();
    if let Some(window) = &response.window {
        text.push_str(&format!(
            "window {} \"{}\"{}: {} .. {}\n",
            window.id,
            window.name,
            if window.automatic { " (automatic)" } else { "" },
            format_time(window.start_ms),
            format_time(window.end_ms)
        ));
    }
    text.push_str(&response.text);
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// Asks the collector and prints (or writes the SVG).
pub async fn run(
    config: GrpcConfig,
    id: Option<String>,
    format: ReportFormat,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let url = config.url.clone();
    let (mut client, timeout) = connect(config).await?;
    let request = ReportRequest { id: id.unwrap_or_default() };
    let response = match call(timeout, &url, client.report(request.clone())).await {
        Ok(response) => response,
        Err(crate::Error::Status { code: tonic::Code::NotFound, message }) => {
            let windows = call(timeout, &url, client.windows(WindowsRequest {})).await?.windows;
            let ids: Vec<String> = windows.iter().filter(|w| w.end_ms > 0).map(|w| w.id.clone()).collect();
            anyhow::bail!("{message}; stored reports: {}", if ids.is_empty() { "none".into() } else { ids.join(", ") });
        }
        Err(error) => return Err(error.into()),
    };
    match format {
        ReportFormat::Json => writeln!(out, "{}", response.json)?,
        ReportFormat::Text => write!(out, "{}", to_text(&response))?,
        ReportFormat::Svg(path) => write_svg(&path, &response.svg, out)?,
    }
    Ok(())
}

fn write_svg(path: &Path, svg: &str, out: &mut impl Write) -> anyhow::Result<()> {
    std::fs::write(path, svg).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    writeln!(out, "wrote {}", path.display())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bakery_proto::v1::Window;

    #[test]
    fn text_heads_the_report_with_its_window() {
        let response = ReportResponse {
            window: Some(Window {
                id: "w-1".into(),
                name: "run 3".into(),
                automatic: true,
                start_ms: 1_764_070_927_000,
                end_ms: 1_764_070_987_000,
                ..Window::default()
            }),
            text: "no verdicts".into(),
            ..ReportResponse::default()
        };
        assert_eq!(
            to_text(&response),
            "window w-1 \"run 3\" (automatic): 2025-11-25 11:42:07 UTC .. 2025-11-25 11:43:07 UTC\nno verdicts\n"
        );
    }
}
