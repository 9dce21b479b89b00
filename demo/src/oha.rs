//! oha, the load generator: finding or installing it, its command line, and its JSON summary.
//!
//! oha prints JSON with `--output-format json` since 1.9 and with `-j` before (field guide,
//! section 4); the flag is chosen from the installed binary's `--help`. Its JSON has no request
//! count: it is the sum of the status-code and error distributions. Any HTTP response counts as a
//! success, 5xx too, so the status codes are kept.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::scenario::LoadSpec;
use crate::{Error, Result};

/// How the installed oha is asked for JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonFlag {
    /// `--output-format json` (oha 1.9 and later).
    OutputFormat,
    /// `-j` (older oha).
    Short,
}

impl JsonFlag {
    /// From the text of `oha --help`.
    pub fn from_help(help: &str) -> Self {
        if help.contains("--output-format") { Self::OutputFormat } else { Self::Short }
    }

    fn args(self) -> &'static [&'static str] {
        match self {
            Self::OutputFormat => &["--output-format", "json"],
            Self::Short => &["-j"],
        }
    }
}

/// oha's arguments for a scenario's load against `url`. `-w` is left out on purpose: at the deadline
/// oha aborts the requests in flight, so the run ends on time.
pub fn args(load: &LoadSpec, url: &str, json: JsonFlag) -> Vec<String> {
    let mut args = vec![
        "--no-tui".to_string(),
        "-z".to_string(),
        format!("{}ms", load.duration.as_millis()),
        "-c".to_string(),
        load.connections.to_string(),
    ];
    if let Some(rate) = load.rate {
        args.extend(["-q".to_string(), rate.to_string()]);
    }
    if !load.keepalive {
        args.push("--disable-keepalive".to_string());
    }
    // A request never waits longer than the whole run.
    args.extend(["-t".to_string(), format!("{}ms", load.duration.as_millis().max(1000))]);
    args.extend(json.args().iter().map(|a| a.to_string()));
    args.push(url.to_string());
    args
}

/// Where oha is: on PATH, or where `cargo install` puts it.
pub fn locate() -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let mut candidates: Vec<PathBuf> =
        path.split(':').filter(|d| !d.is_empty()).map(|d| Path::new(d).join("oha")).collect();
    if let Some(cargo_home) = std::env::var_os("CARGO_HOME") {
        candidates.push(Path::new(&cargo_home).join("bin/oha"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(Path::new(&home).join(".cargo/bin/oha"));
    }
    candidates.push(PathBuf::from("/root/.cargo/bin/oha"));
    candidates.into_iter().find(|p| p.is_file())
}

/// What the report keeps of oha's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub requests: u64,
    pub success_rate: f64,
    pub requests_per_second: f64,
    pub duration_seconds: f64,
    pub average_latency_ms: f64,
    pub p50_latency_ms: Option<f64>,
    pub p99_latency_ms: Option<f64>,
    pub slowest_ms: f64,
    pub total_bytes: u64,
    pub bytes_per_request: Option<u64>,
    pub status_codes: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawOutput {
    summary: RawSummary,
    #[serde(default)]
    latency_percentiles: BTreeMap<String, Option<f64>>,
    #[serde(default)]
    status_code_distribution: BTreeMap<String, u64>,
    #[serde(default)]
    error_distribution: BTreeMap<String, u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSummary {
    success_rate: Option<f64>,
    total: f64,
    slowest: Option<f64>,
    average: Option<f64>,
    requests_per_sec: f64,
    #[serde(default)]
    total_data: u64,
    size_per_request: Option<u64>,
}

impl Summary {
    /// Parses oha's JSON output.
    pub fn parse(json: &str) -> Result<Self> {
        let raw: RawOutput = serde_json::from_str(json).map_err(|e| Error::Oha(format!("unreadable JSON: {e}")))?;
        let ms = |seconds: Option<f64>| seconds.map(|s| s * 1000.0);
        let requests =
            raw.status_code_distribution.values().sum::<u64>() + raw.error_distribution.values().sum::<u64>();
        Ok(Self {
            requests,
            success_rate: raw.summary.success_rate.unwrap_or(0.0),
            requests_per_second: raw.summary.requests_per_sec,
            duration_seconds: raw.summary.total,
            average_latency_ms: ms(raw.summary.average).unwrap_or(0.0),
            p50_latency_ms: ms(raw.latency_percentiles.get("p50").copied().flatten()),
            p99_latency_ms: ms(raw.latency_percentiles.get("p99").copied().flatten()),
            slowest_ms: ms(raw.summary.slowest).unwrap_or(0.0),
            total_bytes: raw.summary.total_data,
            bytes_per_request: raw.summary.size_per_request,
            status_codes: raw.status_code_distribution,
            errors: raw.error_distribution,
        })
    }

    /// Requests answered with a 2xx status.
    pub fn ok_responses(&self) -> u64 {
        self.status_codes.iter().filter(|(code, _)| code.starts_with('2')).map(|(_, n)| n).sum()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Trimmed from oha 1.16 `--output-format json`.
    const OUTPUT: &str = r#"{
      "summary": {"successRate": 1.0, "total": 1.003265523, "slowest": 0.00896801, "fastest": 0.001549464,
                  "average": 0.0022266845500000004, "requestsPerSec": 20.93164722456031, "totalData": 111180,
                  "sizePerRequest": 5559, "sizePerSec": 110818.12087745787},
      "metrics": {"success_rate": 1.0},
      "latencyPercentiles": {"p10": 0.001571498, "p50": 0.001745655, "p99": 0.00896801},
      "rps": {},
      "statusCodeDistribution": {"200": 20},
      "errorDistribution": {"aborted due to deadline": 1}
    }"#;

    #[test]
    fn the_summary_counts_every_request_and_keeps_the_status_codes() {
        let summary = Summary::parse(OUTPUT).unwrap();
        assert_eq!(summary.requests, 21);
        assert_eq!(summary.ok_responses(), 20);
        assert!((summary.requests_per_second - 20.93).abs() < 0.01);
        assert!((summary.p50_latency_ms.unwrap() - 1.745655).abs() < 1e-9);
        assert_eq!(summary.bytes_per_request, Some(5559));
        assert_eq!(summary.errors["aborted due to deadline"], 1);
    }

    #[test]
    fn an_empty_run_still_parses() {
        let json = r#"{"summary": {"successRate": null, "total": 1.0, "slowest": null, "fastest": null,
            "average": null, "requestsPerSec": 0.0, "totalData": 0, "sizePerRequest": null, "sizePerSec": 0.0},
            "latencyPercentiles": {"p50": null}, "statusCodeDistribution": {}, "errorDistribution": {"connection refused": 7}}"#;
        let summary = Summary::parse(json).unwrap();
        assert_eq!((summary.requests, summary.ok_responses()), (7, 0));
        assert_eq!(summary.p50_latency_ms, None);
    }

    #[test]
    fn garbage_is_an_error_that_says_so() {
        assert!(Summary::parse("Error: connection refused").unwrap_err().to_string().contains("unreadable JSON"));
    }

    #[test]
    fn the_json_flag_follows_the_installed_version() {
        assert_eq!(JsonFlag::from_help("  --output-format <OUTPUT_FORMAT>"), JsonFlag::OutputFormat);
        assert_eq!(JsonFlag::from_help("  -j, --json  Print results as JSON"), JsonFlag::Short);
    }

    #[test]
    fn the_load_becomes_oha_flags() {
        let load = LoadSpec { duration: Duration::from_secs(12), connections: 4, rate: Some(90), keepalive: false };
        let args = args(&load, "http://198.18.0.100/", JsonFlag::OutputFormat);
        assert_eq!(
            args,
            [
                "--no-tui",
                "-z",
                "12000ms",
                "-c",
                "4",
                "-q",
                "90",
                "--disable-keepalive",
                "-t",
                "12000ms",
                "--output-format",
                "json",
                "http://198.18.0.100/"
            ]
        );
        let keepalive = LoadSpec { rate: None, keepalive: true, ..load };
        let args = super::args(&keepalive, "http://x/", JsonFlag::Short);
        assert!(!args.contains(&"-q".to_string()) && !args.contains(&"--disable-keepalive".to_string()));
        assert!(args.contains(&"-j".to_string()));
    }
}
