//! oha, the HTTP load generator `bakery-top loadtest` wraps: which flags the installed version
//! spells how (from its `--help`), the command line to run it without its TUI and with JSON
//! output, its `-z` duration, and its JSON summary; [`sent`] counts what it sends while it runs.
//! All pure; the IO is in [`crate::commands::loadtest`].

pub mod sent;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How to install oha, quoted in the error when it is missing.
pub const INSTALL_COMMAND: &str = "cargo install oha --locked";

/// How the installed oha asks for JSON output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonFlag {
    /// `--output-format json` (oha 1.9 and later).
    OutputFormat,
    /// `-j` / `--json` (before 1.9).
    ShortJ,
}

/// The flags of the installed oha that `loadtest` relies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OhaFlags {
    pub json: JsonFlag,
    /// `--no-tui` exists.
    pub no_tui: bool,
    /// `-o, --output FILE` exists, so the JSON can go to a file instead of stdout.
    pub output_file: bool,
}

/// Reads the flag spellings from `oha --help`.
pub fn flags_from_help(help: &str) -> OhaFlags {
    let json = if help.contains("--output-format") { JsonFlag::OutputFormat } else { JsonFlag::ShortJ };
    OhaFlags {
        json,
        no_tui: help.contains("--no-tui"),
        output_file: help.contains("--output ") || help.contains("-o,"),
    }
}

/// Whether the command's program is oha (`oha` or a path ending in `/oha`).
pub fn is_oha(program: &OsStr) -> bool {
    Path::new(program).file_name().is_some_and(|name| name == "oha")
}

fn has_flag(args: &[OsString], short: &str, long: &str) -> bool {
    args.iter().any(|a| {
        let a = a.to_string_lossy();
        a == short || a == long || a.starts_with(&format!("{long}=")) || (short.len() == 2 && a.starts_with(short))
    })
}

/// The value of `-o FILE` / `--output FILE` the user gave, if any.
pub fn user_output_file(args: &[OsString]) -> Option<PathBuf> {
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let text = arg.to_string_lossy();
        if text == "-o" || text == "--output" {
            return iter.next().map(PathBuf::from);
        }
        if let Some(value) = text.strip_prefix("--output=") {
            return Some(PathBuf::from(value));
        }
        if let Some(value) = text.strip_prefix("-o").filter(|v| !v.is_empty()) {
            return Some(PathBuf::from(value));
        }
    }
    None
}

/// The `-z` duration the user gave (`-z 30s`, `-z30s`), if any.
pub fn duration_arg(args: &[OsString]) -> Option<Duration> {
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let text = arg.to_string_lossy();
        let value = if text == "-z" {
            iter.next().map(|v| v.to_string_lossy().into_owned())
        } else {
            text.strip_prefix("-z").filter(|v| !v.is_empty()).map(str::to_owned)
        };
        if let Some(value) = value {
            return humantime::parse_duration(&value).ok();
        }
    }
    None
}

/// Where oha's JSON ends up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonDestination {
    File(PathBuf),
    Stdout,
}

/// oha's arguments (without the program) so that it runs without its TUI and prints JSON: the
/// flags the user left out are put in front of theirs. The JSON goes to the user's `-o` file, else
/// to `temp_file` when this oha has `-o`, else to stdout.
pub fn arguments(user: &[OsString], flags: OhaFlags, temp_file: &Path) -> (Vec<OsString>, JsonDestination) {
    let mut args: Vec<OsString> = Vec::new();
    if flags.no_tui && !has_flag(user, "--no-tui", "--no-tui") {
        args.push("--no-tui".into());
    }
    match flags.json {
        JsonFlag::OutputFormat if !has_flag(user, "--output-format", "--output-format") => {
            args.extend(["--output-format".into(), "json".into()]);
        }
        JsonFlag::ShortJ if !has_flag(user, "-j", "--json") => args.push("-j".into()),
        _ => {}
    }
    let destination = match user_output_file(user) {
        Some(path) => JsonDestination::File(path),
        None if flags.output_file => {
            args.extend(["-o".into(), temp_file.as_os_str().to_owned()]);
            JsonDestination::File(temp_file.to_path_buf())
        }
        None => JsonDestination::Stdout,
    };
    args.extend(user.iter().cloned());
    (args, destination)
}

/// The part of oha's JSON the report shows. Durations in oha's JSON are seconds; here latencies
/// are milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OhaSummary {
    pub requests_per_second: f64,
    /// Wall time of the run, seconds.
    pub total_seconds: f64,
    /// oha counts every HTTP response (5xx too) as a success; only transport errors are failures.
    pub success_rate: Option<f64>,
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub status_codes: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    /// Responses plus errors: oha's JSON has no request count, so it is summed from
    /// `statusCodeDistribution` and `errorDistribution`.
    pub requests: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawReport {
    summary: RawSummary,
    #[serde(default)]
    latency_percentiles: BTreeMap<String, Option<f64>>,
    #[serde(default)]
    status_code_distribution: BTreeMap<String, u64>,
    #[serde(default)]
    error_distribution: BTreeMap<String, u64>,
}

// oha writes NaN as null (an empty run has no average), hence the Options.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSummary {
    success_rate: Option<f64>,
    total: Option<f64>,
    requests_per_sec: Option<f64>,
}

/// Parses oha's JSON output (the 1.9+ shape with `metrics`, and the older one without).
pub fn parse_summary(json: &str) -> Result<OhaSummary, serde_json::Error> {
    let raw: RawReport = serde_json::from_str(json)?;
    let percentile_ms = |key: &str| raw.latency_percentiles.get(key).copied().flatten().map(|s| s * 1000.0);
    let requests = raw.status_code_distribution.values().sum::<u64>() + raw.error_distribution.values().sum::<u64>();
    Ok(OhaSummary {
        requests_per_second: raw.summary.requests_per_sec.unwrap_or(0.0),
        total_seconds: raw.summary.total.unwrap_or(0.0),
        success_rate: raw.summary.success_rate,
        latency_p50_ms: percentile_ms("p50"),
        latency_p95_ms: percentile_ms("p95"),
        latency_p99_ms: percentile_ms("p99"),
        status_codes: raw.status_code_distribution,
        errors: raw.error_distribution,
        requests,
    })
}

fn format_ms(ms: Option<f64>) -> String {
    ms.map_or_else(|| "-".into(), |ms| format!("{ms:.2} ms"))
}

/// The summary as the text report's `oha` section.
pub fn summary_text(summary: &OhaSummary) -> String {
    let success = summary.success_rate.map_or_else(|| "-".into(), |r| format!("{:.1}%", r * 100.0));
    let mut text = format!(
        "oha: {} requests in {:.2} s, {:.1} req/s, success {success}\n",
        summary.requests, summary.total_seconds, summary.requests_per_second
    );
    text.push_str(&format!(
        "  latency p50 {}, p95 {}, p99 {}\n",
        format_ms(summary.latency_p50_ms),
        format_ms(summary.latency_p95_ms),
        format_ms(summary.latency_p99_ms)
    ));
    let codes: Vec<String> = summary.status_codes.iter().map(|(code, n)| format!("{code} x{n}")).collect();
    text.push_str(&format!("  status codes: {}\n", if codes.is_empty() { "none".into() } else { codes.join(", ") }));
    let errors: Vec<String> = summary.errors.iter().map(|(error, n)| format!("{error} x{n}")).collect();
    text.push_str(&format!("  errors: {}\n", if errors.is_empty() { "none".into() } else { errors.join(", ") }));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const OHA_1_16: &str = include_str!("../tests/fixtures/oha/oha-1.16.json");
    const OHA_OLD: &str = include_str!("../tests/fixtures/oha/oha-1.4-json-flag.json");

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn a_real_oha_1_16_report_parses_with_the_summed_request_count() {
        let summary = parse_summary(OHA_1_16).unwrap();
        assert_eq!(summary.requests_per_second, 448.5159369324859);
        assert_eq!(summary.requests, 447 + 2, "200 x447 plus 2 deadline errors");
        assert_eq!(summary.status_codes, BTreeMap::from([("200".to_string(), 447)]));
        assert_eq!(summary.errors, BTreeMap::from([("aborted due to deadline".to_string(), 2)]));
        assert!((summary.latency_p50_ms.unwrap() - 3.1468).abs() < 1e-9);
        assert!((summary.latency_p95_ms.unwrap() - 11.373582).abs() < 1e-9);
        assert!((summary.latency_p99_ms.unwrap() - 24.482485).abs() < 1e-9);
        assert_eq!(summary.success_rate, Some(1.0));
    }

    #[test]
    fn the_older_shape_without_metrics_parses_and_counts_5xx_and_errors() {
        let summary = parse_summary(OHA_OLD).unwrap();
        assert_eq!(summary.requests, 24873 + 400 + 8);
        assert_eq!(summary.requests_per_second, 2527.3008);
        assert!((summary.latency_p99_ms.unwrap() - 82.041).abs() < 1e-9);
        let text = summary_text(&summary);
        assert!(text.starts_with("oha: 25281 requests in 10.00 s, 2527.3 req/s, success 100.0%\n"), "{text}");
        assert!(text.contains("  latency p50 15.53 ms, p95 48.88 ms, p99 82.04 ms\n"), "{text}");
        assert!(text.contains("status codes: 200 x24873, 503 x400\n"), "{text}");
        assert!(text.contains("errors: connection closed before message completed x8\n"), "{text}");
    }

    #[test]
    fn an_empty_run_with_nulls_still_parses() {
        let json = r#"{"summary":{"successRate":null,"total":0.5,"slowest":null,"requestsPerSec":0.0},
            "latencyPercentiles":{"p50":null},"statusCodeDistribution":{},
            "errorDistribution":{"connection refused":3}}"#;
        let summary = parse_summary(json).unwrap();
        assert_eq!(summary.requests, 3);
        assert_eq!(summary.latency_p50_ms, None);
        assert!(summary_text(&summary).contains("latency p50 -, p95 -, p99 -"));
        assert!(parse_summary("Summary:\n  Success rate: 100%").is_err(), "oha's text output is not JSON");
    }

    #[test]
    fn flag_spellings_come_from_the_help_text() {
        let new = "      --no-tui\n  -o, --output <OUTPUT>\n      --output-format <OUTPUT_FORMAT>\n";
        assert_eq!(flags_from_help(new), OhaFlags { json: JsonFlag::OutputFormat, no_tui: true, output_file: true });
        let old = "  -j, --json  Print results as JSON\n      --no-tui  No realtime tui\n";
        assert_eq!(flags_from_help(old), OhaFlags { json: JsonFlag::ShortJ, no_tui: true, output_file: false });
    }

    #[test]
    fn arguments_add_only_what_the_user_left_out() {
        let new = OhaFlags { json: JsonFlag::OutputFormat, no_tui: true, output_file: true };
        let temp = Path::new("out/x.json");
        let (args, dest) = arguments(&os(&["-z", "5s", "http://h/"]), new, temp);
        assert_eq!(args, os(&["--no-tui", "--output-format", "json", "-o", "out/x.json", "-z", "5s", "http://h/"]));
        assert_eq!(dest, JsonDestination::File(temp.into()));

        let (args, dest) = arguments(&os(&["--no-tui", "-o", "mine.json", "http://h/"]), new, temp);
        assert_eq!(args, os(&["--output-format", "json", "--no-tui", "-o", "mine.json", "http://h/"]));
        assert_eq!(dest, JsonDestination::File("mine.json".into()));

        let old = OhaFlags { json: JsonFlag::ShortJ, no_tui: true, output_file: false };
        let (args, dest) = arguments(&os(&["http://h/"]), old, temp);
        assert_eq!(args, os(&["--no-tui", "-j", "http://h/"]));
        assert_eq!(dest, JsonDestination::Stdout);
    }

    #[test]
    fn duration_and_program() {
        assert_eq!(duration_arg(&os(&["-c", "4", "-z", "30s", "u"])), Some(Duration::from_secs(30)));
        assert_eq!(duration_arg(&os(&["-z2m", "u"])), Some(Duration::from_secs(120)));
        assert_eq!(duration_arg(&os(&["-n", "100", "u"])), None);
        assert!(is_oha(OsStr::new("oha")));
        assert!(is_oha(OsStr::new("/usr/local/bin/oha")));
        assert!(!is_oha(OsStr::new("wrk")));
    }
}
