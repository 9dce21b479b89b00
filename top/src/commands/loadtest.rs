//! `bakery-top loadtest [--workload NS/NAME] [--name N] [--report FILE] [--fail-on-hog] -- <command...>`:
//! opens a window, runs the load command (showing elapsed time, traffic and live node shares at
//! least once a second), closes the window and prints its report. When the command is oha, it is
//! run without its TUI and with JSON output, its summary joins the report, and the progress line
//! also shows its request rate as the TCP segments its sockets send (oha prints nothing before it
//! ends: see [`crate::oha::sent`]). Ctrl-C is passed on to the command, and the window is closed
//! all the same.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bakery_proto::v1::{ReportRequest, StartWindowRequest, StopWindowRequest, Window};
use clap::{ArgAction, Args};
use serde::Serialize;

use crate::commands::report::to_text;
use crate::commands::{call, connect};
use crate::model::Snapshot;
use crate::oha::sent::{self, Sending, SentCount, SocketSegments};
use crate::oha::{self, JsonDestination, OhaSummary};
use crate::source::{GrpcConfig, GrpcSource, Source};
use bakery_cli::EnvBool;

/// The exit code with `--fail-on-hog` when the window flagged a hog, for CI pipelines.
pub const HOG_EXIT_CODE: u8 = 3;
/// The exit code after Ctrl-C (128 + SIGINT, as shells report it).
pub const INTERRUPTED_EXIT_CODE: u8 = 130;

/// How often the progress line is refreshed.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// How often the command is checked for having exited.
const POLL_EVERY: Duration = Duration::from_millis(100);
/// Longest wait for the collector's snapshot behind one progress line.
const PROGRESS_SNAPSHOT_TIMEOUT: Duration = Duration::from_millis(800);

/// `loadtest`'s flags, each with a `BAKERY_LOADTEST_<FLAG>` variable (the rule is in [`crate::cli`]).
#[derive(Debug, Clone, Args)]
pub struct LoadtestArgs {
    /// The workload under test, NAMESPACE/NAME (default: the one whose traffic rose most).
    #[arg(long, env = "BAKERY_LOADTEST_WORKLOAD", value_name = "NS/NAME")]
    pub workload: Option<String>,
    /// A name for the window's report (default: window-<start time>).
    #[arg(long, env = "BAKERY_LOADTEST_NAME")]
    pub name: Option<String>,
    /// Also write the report to FILE: JSON for *.json, the SVG chart for *.svg.
    #[arg(long, env = "BAKERY_LOADTEST_REPORT", value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Exit with code 3 when the window flagged a hog (any verdict).
    #[arg(long, env = "BAKERY_LOADTEST_FAIL_ON_HOG", action = ArgAction::SetTrue, value_parser = EnvBool)]
    pub fail_on_hog: bool,
    /// The load command, after `--` (oha gets --no-tui and JSON output added).
    #[arg(required = true, last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// What `--report FILE` writes, from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFile {
    Json,
    Svg,
}

pub fn report_file_kind(path: &Path) -> anyhow::Result<ReportFile> {
    match path.extension().and_then(OsStr::to_str).map(str::to_ascii_lowercase).as_deref() {
        Some("json") => Ok(ReportFile::Json),
        Some("svg") => Ok(ReportFile::Svg),
        _ => bail!("--report {}: the file name must end in .json or .svg", path.display()),
    }
}

/// Finds `program` the way a shell would: a path is taken as is, a bare name is searched on PATH.
pub fn find_program(program: &OsStr, path_var: Option<&OsStr>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    let as_path = Path::new(program);
    if as_path.components().count() > 1 {
        return executable(as_path).then(|| as_path.to_path_buf());
    }
    std::env::split_paths(path_var?).map(|dir| dir.join(program)).find(|p| executable(p))
}

/// The error for a missing oha, with the install command.
pub fn missing_oha_message() -> String {
    format!("oha is not installed (not found on PATH); install it with `{}`", oha::INSTALL_COMMAND)
}

/// One progress line: elapsed against the `-z` duration, what oha sent (for oha), the nodes' NIC
/// traffic, live shares.
pub fn progress_line(
    elapsed: Duration,
    duration: Option<Duration>,
    sending: Option<&Sending>,
    snapshot: Option<&Snapshot>,
) -> String {
    let mut line = match duration {
        Some(total) => format!("loadtest {}s / {}s", elapsed.as_secs(), total.as_secs()),
        None => format!("loadtest {}s", elapsed.as_secs()),
    };
    if let Some(sending) = sending {
        line.push_str("  ");
        line.push_str(&sending.text());
    }
    let Some(snapshot) = snapshot else {
        line.push_str("  collector: no data");
        return line;
    };
    let (rx, tx) = snapshot
        .nodes
        .iter()
        .filter_map(|n| n.nic)
        .fold((0.0, 0.0), |(rx, tx), r| (rx + r.rx_bytes_per_second, tx + r.tx_bytes_per_second));
    line.push_str(&format!("  nic rx {:.1} MB/s tx {:.1} MB/s", rx / 1e6, tx / 1e6));
    let shares: Vec<String> = snapshot
        .nodes
        .iter()
        .filter_map(|n| {
            n.share.map(|s| format!("{} {:.0}% (exp {:.0}%)", n.name, s.observed * 100.0, s.expected * 100.0))
        })
        .collect();
    if !shares.is_empty() {
        line.push_str("  shares: ");
        line.push_str(&shares.join(", "));
    }
    if let Some(alerts) = snapshot.alerts.as_ref().filter(|a| !a.is_empty()) {
        line.push_str(&format!("  alerts: {}", alerts.len()));
    }
    line
}

/// What the run added to the window's report.
#[derive(Debug, Clone, Serialize)]
pub struct LoadtestOutcome {
    pub command: Vec<String>,
    /// The command's exit code (none when a signal ended it).
    pub exit_code: Option<i32>,
    /// Ctrl-C stopped the command.
    pub interrupted: bool,
    /// oha's summary; none for other commands, or when oha's JSON could not be read.
    pub oha: Option<OhaSummary>,
    /// Why oha's JSON could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oha_error: Option<String>,
}

/// The collector's report JSON with a `loadtest` member holding the outcome.
pub fn merged_json(collector_json: &str, outcome: &LoadtestOutcome) -> anyhow::Result<String> {
    let mut value: serde_json::Value = if collector_json.trim().is_empty() {
        serde_json::json!({})
    } else {
        serde_json::from_str(collector_json).context("the collector's report JSON does not parse")?
    };
    let loadtest = serde_json::to_value(outcome)?;
    match value.as_object_mut() {
        Some(object) => {
            object.insert("loadtest".into(), loadtest);
        }
        None => value = serde_json::json!({ "report": value, "loadtest": loadtest }),
    }
    Ok(serde_json::to_string_pretty(&value)?)
}

/// The text after the window's report: the command's end and oha's summary.
pub fn outcome_text(outcome: &LoadtestOutcome) -> String {
    let mut text = format!("command: {}", outcome.command.join(" "));
    match (outcome.interrupted, outcome.exit_code) {
        (true, _) => text.push_str(" (interrupted by Ctrl-C)\n"),
        (false, Some(0)) => text.push_str(" (exit 0)\n"),
        (false, Some(code)) => text.push_str(&format!(" (failed: exit {code})\n")),
        (false, None) => text.push_str(" (ended by a signal)\n"),
    }
    if let Some(summary) = &outcome.oha {
        text.push_str(&oha::summary_text(summary));
    }
    if let Some(error) = &outcome.oha_error {
        text.push_str(&format!("oha: no summary ({error})\n"));
    }
    text
}

/// The exit code: a flagged hog with `--fail-on-hog` first, then Ctrl-C, then the command's failure.
pub fn exit_code(outcome: &LoadtestOutcome, hog_flagged: bool, fail_on_hog: bool) -> u8 {
    if fail_on_hog && hog_flagged {
        HOG_EXIT_CODE
    } else if outcome.interrupted {
        INTERRUPTED_EXIT_CODE
    } else if outcome.exit_code == Some(0) {
        0
    } else {
        1
    }
}

/// How oha is run, decided before the window opens.
struct OhaPlan {
    destination: JsonDestination,
    temp_file: Option<PathBuf>,
}

/// Runs `loadtest`, printing the report to `out` and progress to stderr.
pub async fn run(args: LoadtestArgs, config: GrpcConfig, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    // One piece: the steps of `loadtest` in order (work out oha's flags, open the window, run the command, close the
    // window whatever happened, print), each needing what the one before found.
    let report_kind = args.report.as_deref().map(report_file_kind).transpose()?;
    let Some((program, user_args)) = args.command.split_first() else {
        bail!("no command to run: give it after `--`, for example `bakery-top loadtest -- oha -z 30s http://...`");
    };
    let mut command_args: Vec<OsString> = user_args.to_vec();
    let mut plan = None;
    let mut duration = None;
    if oha::is_oha(program) {
        let path = find_program(program, std::env::var_os("PATH").as_deref()).with_context(missing_oha_message)?;
        let help = std::process::Command::new(&path)
            .arg("--help")
            .output()
            .with_context(|| format!("cannot run {} --help", path.display()))?;
        let flags = oha::flags_from_help(&String::from_utf8_lossy(&help.stdout));
        let temp =
            std::env::temp_dir().join(format!("bakery-loadtest-{}-{}.json", std::process::id(), crate::now_ms()));
        let (oha_args, destination) = oha::arguments(user_args, flags, &temp);
        duration = oha::duration_arg(user_args);
        let temp_file = (destination == JsonDestination::File(temp.clone())).then_some(temp);
        command_args = oha_args;
        plan = Some(OhaPlan { destination, temp_file });
    }

    let url = config.url.clone();
    let (mut client, timeout) = connect(config.clone()).await?;
    let request =
        StartWindowRequest { name: args.name.unwrap_or_default(), workload: args.workload.unwrap_or_default() };
    let window = call(timeout, &url, client.start_window(request)).await?.window.unwrap_or_default();
    eprintln!("bakery-top: window {} \"{}\" open; running {}", window.id, window.name, program.to_string_lossy());

    let captures_stdout = plan.as_ref().is_some_and(|p| p.destination == JsonDestination::Stdout);
    let mut child_command = std::process::Command::new(program);
    child_command.args(&command_args).stdin(Stdio::null());
    if captures_stdout {
        child_command.stdout(Stdio::piped());
    }
    // Its own process group: a terminal's Ctrl-C reaches only bakery-top, which passes it on once
    // (oha stops at the first SIGINT and still prints its summary).
    std::os::unix::process::CommandExt::process_group(&mut child_command, 0);
    let run_result = match child_command.spawn() {
        Ok(child) => supervise(child, duration, plan.is_some(), &config).await,
        Err(error) => Err(anyhow::anyhow!("cannot start {}: {error}", program.to_string_lossy())),
    };

    // The window closes whatever happened to the command.
    let stopped = call(timeout * 10, &url, client.stop_window(StopWindowRequest {})).await;
    let (status, interrupted, stdout_text) = run_result?;
    let stopped: Window = stopped?.window.unwrap_or_default();

    let (oha_summary, oha_error) = match &plan {
        None => (None, None),
        Some(plan) => {
            let json = match &plan.destination {
                JsonDestination::Stdout => Ok(stdout_text.unwrap_or_default()),
                JsonDestination::File(path) => {
                    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
                }
            };
            if let Some(temp) = &plan.temp_file {
                let _ = std::fs::remove_file(temp);
            }
            match json.and_then(|j| oha::parse_summary(&j).map_err(|e| format!("its JSON does not parse: {e}"))) {
                Ok(summary) => (Some(summary), None),
                Err(error) => (None, Some(error)),
            }
        }
    };
    let outcome = LoadtestOutcome {
        command: std::iter::once(program).chain(&command_args).map(|a| a.to_string_lossy().into_owned()).collect(),
        exit_code: status.code(),
        interrupted,
        oha: oha_summary,
        oha_error,
    };

    let report = call(timeout, &url, client.report(ReportRequest { id: stopped.id.clone() })).await?;
    write!(out, "{}", to_text(&report))?;
    write!(out, "{}", outcome_text(&outcome))?;
    if let (Some(path), Some(kind)) = (&args.report, report_kind) {
        let contents = match kind {
            ReportFile::Json => merged_json(&report.json, &outcome)?,
            ReportFile::Svg => report.svg.clone(),
        };
        std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))?;
        writeln!(out, "wrote {}", path.display())?;
    }
    out.flush()?;
    Ok(ExitCode::from(exit_code(&outcome, !stopped.verdicts.is_empty(), args.fail_on_hog)))
}

type Supervised = (std::process::ExitStatus, bool, Option<String>);

/// oha's open sockets (their inodes, from /proc/PID/fd) and every TCP socket `ss` lists, read now.
fn read_sockets(pid: u32) -> Result<(BTreeSet<u64>, Vec<SocketSegments>), String> {
    let fd_dir = PathBuf::from(format!("/proc/{pid}/fd"));
    let entries = std::fs::read_dir(&fd_dir).map_err(|e| format!("cannot list {}: {e}", fd_dir.display()))?;
    let own = entries
        .filter_map(Result::ok)
        .filter_map(|entry| std::fs::read_link(entry.path()).ok())
        .filter_map(|target| sent::socket_inode(&target.to_string_lossy()))
        .collect();
    let output = match std::process::Command::new("ss").args(sent::SS_ARGS).stdin(Stdio::null()).output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err("ss (iproute2) is not installed".into()),
        Err(e) => return Err(format!("cannot run ss: {e}")),
    };
    if !output.status.success() {
        return Err(format!("ss failed: {}", String::from_utf8_lossy(&output.stderr).trim()));
    }
    let listed = sent::parse_ss(&String::from_utf8_lossy(&output.stdout)).map_err(|e| e.to_string())?;
    Ok((own, listed))
}

/// Waits for the command, printing progress and passing Ctrl-C (and SIGTERM) on to it. For oha,
/// the progress also counts what its sockets sent.
async fn supervise(
    mut child: std::process::Child,
    duration: Option<Duration>,
    is_oha: bool,
    config: &GrpcConfig,
) -> anyhow::Result<Supervised> {
    // One piece: one select loop over the child, the progress ticks and the signals; the arms share the child and the
    // progress state.
    use nix::sys::signal::Signal;
    use tokio::signal::unix::{SignalKind, signal};
    let stdout_reader = child.stdout.take().map(|mut stdout| {
        std::thread::spawn(move || {
            let mut text = String::new();
            stdout.read_to_string(&mut text).map(|_| text)
        })
    });
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut source = GrpcSource::new(config.clone()).ok();
    let terminal = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut next_progress = started;
    let mut interrupted = false;
    let mut sent_count = is_oha.then(SentCount::default);
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let status = loop {
        if let Some(status) = child.try_wait().context("cannot wait for the command")? {
            break status;
        }
        if Instant::now() >= next_progress {
            next_progress += PROGRESS_EVERY;
            let snapshot = match source.as_mut() {
                Some(source) => {
                    tokio::time::timeout(PROGRESS_SNAPSHOT_TIMEOUT, source.snapshot()).await.ok().and_then(Result::ok)
                }
                None => None,
            };
            let sending = match sent_count.as_mut() {
                Some(count) => {
                    let child_pid = child.id();
                    let reading = tokio::task::spawn_blocking(move || read_sockets(child_pid))
                        .await
                        .unwrap_or_else(|e| Err(format!("the reader of oha's sockets failed: {e}")));
                    Some(match reading {
                        Ok((own, listed)) => count.record(started.elapsed(), &own, &listed),
                        Err(reason) => Sending::Unavailable(reason),
                    })
                }
                None => None,
            };
            let line = progress_line(started.elapsed(), duration, sending.as_ref(), snapshot.as_ref());
            if terminal {
                eprint!("\r\x1b[2K{line}");
            } else {
                eprintln!("{line}");
            }
        }
        tokio::select! {
            _ = interrupt.recv() => {
                // A second Ctrl-C ends a command that ignored the first.
                let signal = if interrupted { Signal::SIGKILL } else { Signal::SIGINT };
                interrupted = true;
                let _ = nix::sys::signal::kill(pid, signal);
            }
            _ = terminate.recv() => {
                interrupted = true;
                let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
            }
            _ = tokio::time::sleep(POLL_EVERY) => {}
        }
    };
    if terminal {
        eprintln!();
    }
    let stdout_text = match stdout_reader {
        Some(handle) => Some(
            handle
                .join()
                .map_err(|_| anyhow::anyhow!("the reader of the command's output panicked"))?
                .context("cannot read the command's output")?,
        ),
        None => None,
    };
    Ok((status, interrupted, stdout_text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NodeView, Rates, Share};

    fn outcome(exit_code: Option<i32>, interrupted: bool) -> LoadtestOutcome {
        LoadtestOutcome {
            command: vec!["wrk".into(), "-d5s".into()],
            exit_code,
            interrupted,
            oha: None,
            oha_error: None,
        }
    }

    #[test]
    fn the_report_file_kind_follows_the_extension() {
        assert_eq!(report_file_kind(Path::new("run.json")).unwrap(), ReportFile::Json);
        assert_eq!(report_file_kind(Path::new("out/run.SVG")).unwrap(), ReportFile::Svg);
        let error = report_file_kind(Path::new("run.txt")).unwrap_err().to_string();
        assert!(error.contains(".json or .svg"), "{error}");
    }

    #[test]
    fn a_missing_program_is_not_found_and_the_message_says_how_to_install_oha() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(find_program(OsStr::new("oha"), Some(dir.path().as_os_str())), None);
        assert!(find_program(OsStr::new("sh"), Some(OsStr::new("/usr/bin:/bin"))).is_some());
        assert!(missing_oha_message().contains("cargo install oha --locked"));
    }

    #[test]
    fn exit_codes_put_a_flagged_hog_first() {
        assert_eq!(exit_code(&outcome(Some(0), false), true, true), HOG_EXIT_CODE);
        assert_eq!(exit_code(&outcome(Some(0), false), true, false), 0, "a hog fails only with --fail-on-hog");
        assert_eq!(exit_code(&outcome(None, true), false, true), INTERRUPTED_EXIT_CODE);
        assert_eq!(exit_code(&outcome(Some(2), false), false, false), 1);
    }

    #[test]
    fn progress_shows_elapsed_against_duration_traffic_and_shares() {
        let node = |name: &str, observed: f64| NodeView {
            name: name.into(),
            nic: Some(Rates { rx_bytes_per_second: 2e6, tx_bytes_per_second: 1e6 }),
            share: Some(Share { observed, expected: 0.5 }),
            ..NodeView::default()
        };
        let snapshot = Snapshot { nodes: vec![node("pi-1", 0.7), node("pi-2", 0.3)], ..Snapshot::default() };
        let line = progress_line(Duration::from_millis(3400), Some(Duration::from_secs(30)), None, Some(&snapshot));
        assert_eq!(
            line,
            "loadtest 3s / 30s  nic rx 4.0 MB/s tx 2.0 MB/s  shares: pi-1 70% (exp 50%), pi-2 30% (exp 50%)"
        );
        assert_eq!(progress_line(Duration::from_secs(1), None, None, None), "loadtest 1s  collector: no data");
    }

    #[test]
    fn progress_for_oha_shows_its_request_rate_before_the_traffic() {
        let sending = Sending::Counted {
            segments: 6210,
            per_second: Some(2076.4),
            rate_undercounted: false,
            total_undercounted: false,
        };
        let snapshot = Snapshot::default();
        assert_eq!(
            progress_line(Duration::from_secs(3), Some(Duration::from_secs(30)), Some(&sending), Some(&snapshot)),
            "loadtest 3s / 30s  oha ~2076 req/s, ~6210 sent (tcp segments)  nic rx 0.0 MB/s tx 0.0 MB/s"
        );
        let unavailable = Sending::Unavailable("ss (iproute2) is not installed".into());
        assert_eq!(
            progress_line(Duration::from_secs(1), None, Some(&unavailable), None),
            "loadtest 1s  oha req/s n/a: ss (iproute2) is not installed  collector: no data"
        );
    }

    #[test]
    fn the_json_report_gains_a_loadtest_member() {
        let json = merged_json(r#"{"window":{"id":"w-1"}}"#, &outcome(Some(0), false)).unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["window"]["id"], "w-1");
        assert_eq!(value["loadtest"]["command"][0], "wrk");
        assert_eq!(value["loadtest"]["exit_code"], 0);
        assert!(value["loadtest"]["oha"].is_null(), "no summary for a command that is not oha");
        assert_eq!(outcome_text(&outcome(None, true)), "command: wrk -d5s (interrupted by Ctrl-C)\n");
    }
}
