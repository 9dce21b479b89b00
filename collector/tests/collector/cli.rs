//! The collector's command line as people and the chart meet it, through the built binary: shell
//! completions and the man page name its flags; every flag has a variable named after it; a
//! collector configured from the environment alone serves; on/off variables take 1/0,
//! true/false, yes/no and on/off (`BAKERY_INSECURE_NO_AUTH=1` takes an agent without a token,
//! `=0` asks for a credential and is no contradiction of a token file), and a wrong value names
//! its variable; `inspect --file` works where `BAKERY_DATA_DIR` is set.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use bakery_collector::cli::Cli;
use bakery_lab::process::{Output as ProcessOutput, Process, Spawn};
use clap::{ArgAction, CommandFactory};

use crate::harness::{TOKEN, TestAgent, hello};

const BINARY: &str = env!("CARGO_BIN_EXE_bakery-collector");

/// One flag of the command line (not `--help`, `--version` nor a positional argument).
#[derive(Debug)]
struct Flag {
    /// The subcommand it belongs to; `None` for serve's flags without `serve`.
    subcommand: Option<String>,
    long: String,
    variable: Option<String>,
    on_off: bool,
    hidden: bool,
}

/// Every flag, the subcommands' included.
fn flags() -> Vec<Flag> {
    let command = Cli::command();
    let mut flags = Vec::new();
    let mut add = |subcommand: Option<&str>, args: &mut dyn Iterator<Item = &clap::Arg>| {
        for arg in args {
            if arg.is_positional() || matches!(arg.get_action(), ArgAction::Help | ArgAction::Version) {
                continue;
            }
            flags.push(Flag {
                subcommand: subcommand.map(str::to_string),
                long: arg.get_long().expect("every flag has a long name").to_string(),
                variable: arg.get_env().map(|v| v.to_string_lossy().into_owned()),
                on_off: matches!(arg.get_action(), ArgAction::SetTrue),
                hidden: arg.is_hide_set(),
            });
        }
    };
    add(None, &mut command.get_arguments());
    for subcommand in command.get_subcommands() {
        add(Some(subcommand.get_name()), &mut subcommand.get_arguments());
    }
    assert!(flags.iter().any(|f| f.subcommand.as_deref() == Some("inspect")), "the walk reached inspect");
    assert!(flags.len() > 60, "the walk found the flags: {flags:#?}");
    flags
}

/// `BAKERY_<FLAG>` for serve's flags, and for a subcommand's flag that serve has too (inspect's
/// --data-dir is the serving collector's); `BAKERY_<SUBCOMMAND>_<FLAG>` for the others.
fn expected_variable(flag: &Flag, serve_flags: &[String]) -> String {
    let name = flag.long.to_uppercase().replace('-', "_");
    match flag.subcommand.as_deref() {
        Some(subcommand) if subcommand != "serve" && !serve_flags.contains(&flag.long) => {
            format!("BAKERY_{}_{name}", subcommand.to_uppercase())
        }
        _ => format!("BAKERY_{name}"),
    }
}

#[test]
fn every_flag_has_a_variable_named_after_it() {
    let flags = flags();
    let serve_flags: Vec<String> = flags.iter().filter(|f| f.subcommand.is_none()).map(|f| f.long.clone()).collect();
    let wrong: Vec<String> = flags
        .iter()
        .filter(|flag| flag.variable.as_deref() != Some(expected_variable(flag, &serve_flags).as_str()))
        .map(|flag| format!("{flag:?}: expected {}", expected_variable(flag, &serve_flags)))
        .collect();
    assert!(wrong.is_empty(), "give each flag its `env = \"BAKERY_...\"`:\n{}", wrong.join("\n"));
}

/// The test runner's own variables that the collector reads, kept from it.
fn inherited_settings() -> impl Iterator<Item = String> {
    std::env::vars().map(|(name, _)| name).filter(|name| name.starts_with("BAKERY_") || name.starts_with("OTEL_"))
}

/// The built collector with `args` and `env`.
fn collector(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new("timeout");
    command.arg("30").arg(BINARY).args(args);
    for name in inherited_settings() {
        command.env_remove(name);
    }
    command.envs(env.iter().copied()).output().expect("run bakery-collector")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn completions_name_every_flag() {
    for shell in ["bash", "zsh", "fish"] {
        let output = collector(&["completions", shell], &[]);
        assert!(output.status.success(), "{shell}: {}", stderr(&output));
        let script = stdout(&output);
        for flag in flags().iter().filter(|f| !f.hidden) {
            let long = &flag.long;
            assert!(
                script.contains(&format!("--{long}")) || script.contains(&format!("-l {long}")),
                "{shell}: --{long}"
            );
        }
    }
    let zsh = stdout(&collector(&["completions", "zsh"], &[]));
    assert!(zsh.starts_with("#compdef bakery-collector"), "a zsh completion:\n{zsh}");
    for subcommand in ["serve", "inspect", "completions", "man"] {
        assert!(zsh.contains(&format!("'{subcommand}:")), "zsh completes the subcommand {subcommand}");
    }
}

#[test]
fn the_man_page_lists_serves_flags_with_their_variables_and_the_examples() {
    let output = collector(&["man"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let page = stdout(&output);
    assert!(page.contains(".TH bakery-collector 1"), "a roff page:\n{page}");
    for flag in flags().iter().filter(|f| f.subcommand.is_none() && !f.hidden) {
        // roff escapes each hyphen
        assert!(page.contains(&format!("\\-\\-{}", flag.long.replace('-', "\\-"))), "--{} in the man page", flag.long);
        let variable = flag.variable.as_deref().unwrap();
        assert!(page.contains(&format!("\\fB{variable}\\fR")), "{variable} in the man page");
    }
    assert!(page.contains("Examples:") && page.contains("inspect") && page.contains("BAKERY_LOG"), "{page}");
}

#[test]
fn a_wrong_on_off_value_names_its_variable() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    for flag in flags().iter().filter(|f| f.on_off) {
        let variable = flag.variable.as_deref().unwrap();
        let mut args: Vec<&str> = flag.subcommand.iter().map(String::as_str).collect();
        args.extend(["--data-dir", data_dir]);
        let output = collector(&args, &[(variable, "maybe")]);
        let error = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?} with {variable}=maybe: {error}");
        assert!(error.contains(&format!("{variable}=\"maybe\"")) && error.contains("1, true, yes or on"), "{error}");
    }
}

/// A collector configured from the environment alone (`env` on top), on loopback ports, without
/// Kubernetes.
fn collector_from_the_environment(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Process {
    let data_dir = dir.join("data");
    let ready = dir.join("ready");
    let _ = std::fs::remove_file(&ready);
    let mut spawn = Spawn::new("bakery-collector", BINARY).args(args).output(ProcessOutput::Log(dir.join("log")));
    for name in inherited_settings() {
        spawn = spawn.env_remove(&name);
    }
    let base = [
        ("BAKERY_LISTEN", "127.0.0.1:0"),
        ("BAKERY_HEALTH_LISTEN", "127.0.0.1:0"),
        ("BAKERY_METRICS_LISTEN", "off"),
        ("BAKERY_NO_KUBERNETES", "yes"),
        ("BAKERY_LOG", "warn"),
    ];
    for (name, value) in base.iter().chain(env) {
        spawn = spawn.env(name, value);
    }
    spawn.env("BAKERY_DATA_DIR", &data_dir).env("BAKERY_READY_FILE", &ready).start().unwrap()
}

/// The collector's gRPC URL once it serves.
async fn ready_url(dir: &Path, collector: &Process) -> String {
    let ready = dir.join("ready");
    let addr = bakery_lab::wait_for_async("the ready file", Duration::from_secs(20), || {
        let addr = std::fs::read_to_string(&ready).unwrap_or_default().trim().to_string();
        std::future::ready((!addr.is_empty()).then_some(addr))
    })
    .await;
    let addr = addr.unwrap_or_else(|error| panic!("{error}; the collector's log:\n{}", collector.log_tail(30)));
    format!("http://{addr}")
}

#[tokio::test]
async fn insecure_no_auth_on_in_the_environment_takes_an_agent_without_a_token() {
    for on in ["1", "yes", "on", "true", "TRUE"] {
        let dir = tempfile::tempdir().unwrap();
        let mut collector = collector_from_the_environment(dir.path(), &[("BAKERY_INSECURE_NO_AUTH", on)], &[]);
        let url = ready_url(dir.path(), &collector).await;
        let agent = TestAgent::try_connect(&url, None, hello("node-a")).await;
        assert!(agent.is_ok(), "BAKERY_INSECURE_NO_AUTH={on}: {:?}", agent.err());
        collector.kill();
    }
}

#[tokio::test]
async fn insecure_no_auth_off_in_the_environment_asks_for_a_credential_and_takes_a_token_file() {
    let dir = tempfile::tempdir().unwrap();
    for off in ["0", "no", "off", "false", "False", ""] {
        let mut collector = collector_from_the_environment(dir.path(), &[("BAKERY_INSECURE_NO_AUTH", off)], &[]);
        let status = collector.wait_exit(Duration::from_secs(20)).expect("the collector exits");
        assert_eq!(status.code(), Some(1), "BAKERY_INSECURE_NO_AUTH={off:?}");
        let log = collector.log_tail(5);
        assert!(log.contains("refusing to accept agents without authentication"), "{off:?}: {log}");
    }
    // Off in the environment is no contradiction of a token file on the command line.
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("{TOKEN}\n")).unwrap();
    let token_flag = ["--token-file", tokens.to_str().unwrap()];
    let mut collector = collector_from_the_environment(dir.path(), &[("BAKERY_INSECURE_NO_AUTH", "0")], &token_flag);
    let url = ready_url(dir.path(), &collector).await;
    let refused = TestAgent::try_connect(&url, None, hello("node-a")).await.err().expect("no token, no stream");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    assert!(TestAgent::try_connect(&url, Some(TOKEN), hello("node-a")).await.is_ok(), "the token streams");
    collector.kill();
    // On in the environment and a token file do contradict each other.
    let mut collector = collector_from_the_environment(dir.path(), &[("BAKERY_INSECURE_NO_AUTH", "1")], &token_flag);
    assert_eq!(collector.wait_exit(Duration::from_secs(20)).and_then(|s| s.code()), Some(1));
    assert!(
        collector.log_tail(5).contains("--insecure-no-auth contradicts the token flags"),
        "{}",
        collector.log_tail(5)
    );
}

#[test]
fn inspect_reads_a_file_where_the_data_dir_variable_is_set() {
    let dir = tempfile::tempdir().unwrap();
    bakery_collector::store::Store::open(dir.path()).unwrap().close().unwrap();
    let file = dir.path().join("bakery.redb");
    let output = collector(
        &["inspect", "--file", file.to_str().unwrap()],
        &[("BAKERY_DATA_DIR", "/nonexistent/data"), ("BAKERY_INSPECT_JSON", "yes")],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON, from BAKERY_INSPECT_JSON");
    assert_eq!(report["nodes"], serde_json::json!([]));
}
