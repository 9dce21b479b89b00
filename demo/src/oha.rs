//! oha in the demo: where the binary is (also where `cargo install` put it when sudo dropped PATH),
//! a scenario's load as oha's flags, and the 2xx count the report shows. The flags that depend on
//! the installed oha's version (JSON output, no TUI) and the parsing of its JSON summary are
//! bakery-top's ([`bakery_top::oha`]), shared with `bakery-top loadtest`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use bakery_top::oha::OhaSummary;

use crate::scenario::LoadSpec;

/// oha's flags for a scenario's load against `url`; [`bakery_top::oha::arguments`] adds the
/// version-dependent ones. `-w` is left out on purpose: at the deadline oha aborts the requests in
/// flight, so the run ends on time.
pub fn load_args(load: &LoadSpec, url: &str) -> Vec<OsString> {
    let mut args = vec!["-z".to_string(), format!("{}ms", load.duration.as_millis())];
    args.extend(["-c".to_string(), load.connections.to_string()]);
    if let Some(rate) = load.rate {
        args.extend(["-q".to_string(), rate.to_string()]);
    }
    if !load.keepalive {
        args.push("--disable-keepalive".to_string());
    }
    // A request never waits longer than the whole run.
    args.extend(["-t".to_string(), format!("{}ms", load.duration.as_millis().max(1000))]);
    args.push(url.to_string());
    args.into_iter().map(OsString::from).collect()
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

/// Requests answered with a 2xx status (oha counts any HTTP response, 5xx too, as a success).
pub fn ok_responses(summary: &OhaSummary) -> u64 {
    summary.status_codes.iter().filter(|(code, _)| code.starts_with('2')).map(|(_, n)| n).sum()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bakery_top::oha::{JsonFlag, OhaFlags, arguments, parse_summary};

    use super::*;

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn the_load_becomes_oha_flags() {
        let load = LoadSpec { duration: Duration::from_secs(12), connections: 4, rate: Some(90), keepalive: false };
        let args = load_args(&load, "http://198.18.0.100/");
        assert_eq!(
            strings(&args),
            ["-z", "12000ms", "-c", "4", "-q", "90", "--disable-keepalive", "-t", "12000ms", "http://198.18.0.100/"]
        );
        let keepalive = LoadSpec { rate: None, keepalive: true, ..load };
        let args = strings(&load_args(&keepalive, "http://x/"));
        assert!(!args.contains(&"-q".to_string()) && !args.contains(&"--disable-keepalive".to_string()));
    }

    #[test]
    fn an_old_oha_gets_its_json_flag_and_prints_json_on_stdout() {
        let load = LoadSpec { duration: Duration::from_secs(5), connections: 2, rate: None, keepalive: true };
        let old = OhaFlags { json: JsonFlag::ShortJ, no_tui: true, output_file: false };
        let (args, destination) = arguments(&load_args(&load, "http://x/"), old, Path::new("/run/oha.json"));
        assert_eq!(strings(&args)[..2], ["--no-tui", "-j"]);
        assert_eq!(strings(&args).last().map(String::as_str), Some("http://x/"), "the URL stays last");
        assert_eq!(destination, bakery_top::oha::JsonDestination::Stdout);
    }

    #[test]
    fn only_2xx_answers_count_as_ok() {
        let json = r#"{"summary": {"successRate": 1.0, "total": 1.0, "requestsPerSec": 21.0},
            "statusCodeDistribution": {"200": 18, "204": 1, "503": 2}, "errorDistribution": {"aborted due to deadline": 1}}"#;
        let summary = parse_summary(json).unwrap();
        assert_eq!((summary.requests, ok_responses(&summary)), (22, 19));
    }
}
