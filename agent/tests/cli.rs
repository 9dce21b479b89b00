//! The agent's command line as people and the chart meet it, through the built binary: shell
//! completions and the man page name its flags; every flag has a variable named after it; on/off
//! variables take 1/0, true/false, yes/no and on/off (`BAKERY_INSECURE_NO_AUTH=1` streams to a
//! fake collector without a token, `=0` asks for one and lets a token file through), and a wrong
//! value names its variable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use bakery_agent::cli::Args;
use bakery_lab::process::{Output as ProcessOutput, Process, Spawn};
use clap::{ArgAction, CommandFactory};

#[path = "stream/fake_collector.rs"]
// The stream tests use the rest of the fake collector.
#[allow(dead_code)]
mod fake_collector;

use fake_collector::{FakeCollector, Server};

const AGENT: &str = env!("CARGO_BIN_EXE_bakery-agent");
const PI5: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pi5");

/// Variables that are not `BAKERY_<FLAG>`, each with the reason: (flag, variable).
const STANDARD_VARIABLES: [(&str, &str); 1] = [
    // The name the Kubernetes downward API is given in the chart and in every DaemonSet example.
    ("node-name", "NODE_NAME"),
];

/// The variables the agent reads, so that the test runner's own never reach it.
fn is_agents_variable(name: &str) -> bool {
    name.starts_with("BAKERY_") || STANDARD_VARIABLES.iter().any(|(_, variable)| *variable == name)
}

/// The built agent with `args` and `env`, and none of the test runner's own agent variables.
fn agent(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new("timeout");
    command.arg("30").arg(AGENT).args(args);
    for (name, _) in std::env::vars() {
        if is_agents_variable(&name) {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied()).output().expect("run bakery-agent")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Every flag of the command line (not `--help`, `--version` nor positional arguments):
/// (long name, variable, whether it is an on/off flag).
fn flags() -> Vec<(String, Option<String>, bool)> {
    let command = Args::command();
    let mut flags = Vec::new();
    for arg in command.get_arguments().chain(command.get_subcommands().flat_map(|c| c.get_arguments())) {
        if arg.is_positional() || matches!(arg.get_action(), ArgAction::Help | ArgAction::Version) {
            continue;
        }
        let long = arg.get_long().expect("every flag has a long name").to_string();
        let variable = arg.get_env().map(|v| v.to_string_lossy().into_owned());
        flags.push((long, variable, matches!(arg.get_action(), ArgAction::SetTrue)));
    }
    assert!(flags.len() > 20, "the walk found the flags: {flags:?}");
    flags
}

#[test]
fn every_flag_has_a_variable_named_after_it() {
    let mut wrong = Vec::new();
    for (long, variable, _) in flags() {
        let standard = STANDARD_VARIABLES.iter().find(|(flag, _)| *flag == long).map(|(_, v)| v.to_string());
        let expected = standard.unwrap_or_else(|| format!("BAKERY_{}", long.to_uppercase().replace('-', "_")));
        if variable.as_deref() != Some(expected.as_str()) {
            wrong.push(format!("--{long}: {variable:?}, expected {expected}"));
        }
    }
    assert!(wrong.is_empty(), "give each flag `env = \"BAKERY_<FLAG>\"`:\n{}", wrong.join("\n"));
}

#[test]
fn completions_name_every_flag() {
    for shell in ["bash", "zsh", "fish"] {
        let output = agent(&["completions", shell], &[]);
        assert!(output.status.success(), "{shell}: {}", stderr(&output));
        let script = stdout(&output);
        for (long, _, _) in flags() {
            assert!(
                script.contains(&format!("--{long}")) || script.contains(&format!("-l {long}")),
                "{shell}: --{long}"
            );
        }
    }
    let bash = stdout(&agent(&["completions", "bash"], &[]));
    assert!(bash.contains("complete -F") && bash.ends_with("bakery-agent\nfi\n"), "a bash completion:\n{bash}");
    let error = stderr(&agent(&["completions", "tcsh"], &[]));
    assert!(error.contains("possible values") && error.contains("zsh"), "{error}");
}

#[test]
fn the_man_page_lists_every_flag_with_its_variable_and_the_examples() {
    let output = agent(&["man"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let page = stdout(&output);
    assert!(page.contains(".TH bakery-agent 1"), "a roff page:\n{page}");
    for (long, variable, _) in flags() {
        // roff escapes each hyphen
        assert!(page.contains(&format!("\\-\\-{}", long.replace('-', "\\-"))), "--{long} in the man page");
        assert!(page.contains(&format!("\\fB{}\\fR", variable.unwrap())), "--{long}'s variable in the man page");
    }
    assert!(page.contains("Examples:") && page.contains("completions bash"), "{page}");
}

#[test]
fn a_wrong_on_off_value_names_its_variable() {
    for (long, variable, on_off) in flags() {
        if !on_off {
            continue;
        }
        let variable = variable.unwrap();
        let output = agent(&[], &[(&variable, "maybe")]);
        assert_eq!(output.status.code(), Some(2), "--{long} with {variable}=maybe: {}", stderr(&output));
        let error = stderr(&output);
        assert!(error.contains(&format!("{variable}=\"maybe\"")) && error.contains("1, true, yes or on"), "{error}");
    }
}

/// The agent on the Pi 5 fixture, configured from the environment alone (`env` on top).
fn on_the_pi5(env: &[(&str, &str)]) -> Output {
    let (proc_root, sys_root) = (format!("{PI5}/proc"), format!("{PI5}/sys"));
    let pi5 =
        [("BAKERY_PROC_ROOT", proc_root.as_str()), ("BAKERY_SYS_ROOT", &sys_root), ("BAKERY_RATE_WINDOW", "10ms")];
    agent(&[], &[&pi5, env].concat())
}

#[test]
fn once_and_json_come_from_the_environment_too() {
    for on in ["1", "true", "yes", "on", "ON"] {
        let output = on_the_pi5(&[("BAKERY_ONCE", on), ("BAKERY_JSON", on)]);
        assert!(output.status.success(), "BAKERY_ONCE={on}: {}", stderr(&output));
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
        assert_eq!(json["sample"]["node_name"], "master-02", "the Pi 5 fixture");
    }
    for off in ["0", "false", "no", "off", ""] {
        let output = on_the_pi5(&[("BAKERY_ONCE", off)]);
        assert_eq!(output.status.code(), Some(1), "BAKERY_ONCE={off} streams, without a collector");
        assert!(stderr(&output).contains("nothing to do: pass --collector URL"), "{}", stderr(&output));
    }
    let output = on_the_pi5(&[("BAKERY_JSON", "1")]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("pass --once --json"), "{}", stderr(&output));
    let summary = on_the_pi5(&[("BAKERY_ONCE", "yes"), ("BAKERY_JSON", "no")]);
    assert!(stdout(&summary).starts_with("node master-02"), "a summary for people: {}", stdout(&summary));
}

/// A streaming agent on the Pi 5 fixture, sending to `collector`, with `env` on top of a clean
/// environment.
fn streaming_agent(dir: &Path, collector: &str, args: &[&str], env: &[(&str, &str)]) -> Process {
    let mut spawn = Spawn::new("bakery-agent", AGENT)
        .args(["--proc-root", &format!("{PI5}/proc"), "--sys-root", &format!("{PI5}/sys")])
        .args(["--node-name", "cli-test", "--collector", collector, "--interval", "50ms"])
        .args(args)
        .output(ProcessOutput::Log(dir.join("agent.log")));
    for (name, _) in std::env::vars() {
        if is_agents_variable(&name) {
            spawn = spawn.env_remove(&name);
        }
    }
    for (name, value) in env {
        spawn = spawn.env(name, value);
    }
    spawn.start().unwrap()
}

/// Waits for the fake collector's first stream with a Hello and a batch; its authorization header.
async fn first_stream_authorization(server: &Server, agent: &Process) -> Option<String> {
    let collector = server.collector.clone();
    let opened = bakery_lab::wait_for_async("the agent's first stream", Duration::from_secs(20), || {
        let found = collector.with(|s| {
            s.streams.iter().find(|l| l.hello.is_some() && !l.messages.is_empty()).map(|l| l.authorization.clone())
        });
        async move { found }
    })
    .await;
    opened.unwrap_or_else(|error| panic!("{error}; the agent's log:\n{}", agent.log_tail(30)))
}

#[tokio::test]
async fn insecure_no_auth_on_in_the_environment_streams_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    for on in ["1", "yes", "on", "true"] {
        let server = Server::start(FakeCollector::default(), "127.0.0.1:0".parse().unwrap()).await;
        let mut streaming = streaming_agent(dir.path(), &server.url(), &[], &[("BAKERY_INSECURE_NO_AUTH", on)]);
        assert_eq!(first_stream_authorization(&server, &streaming).await, None, "BAKERY_INSECURE_NO_AUTH={on}");
        streaming.kill();
    }
}

#[tokio::test]
async fn insecure_no_auth_off_in_the_environment_asks_for_a_token_and_takes_a_token_file() {
    let dir = tempfile::tempdir().unwrap();
    for off in ["0", "no", "off", "false", ""] {
        let output = agent(&["--collector", "http://127.0.0.1:9"], &[("BAKERY_INSECURE_NO_AUTH", off)]);
        assert_eq!(output.status.code(), Some(1), "BAKERY_INSECURE_NO_AUTH={off:?}");
        assert!(stderr(&output).contains("pass --token-file FILE"), "{}", stderr(&output));
    }
    // Off in the environment is no contradiction of a token file.
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let server = Server::start(FakeCollector::default(), "127.0.0.1:0".parse().unwrap()).await;
    let token_flag = ["--token-file", token.to_str().unwrap()];
    let mut streaming = streaming_agent(dir.path(), &server.url(), &token_flag, &[("BAKERY_INSECURE_NO_AUTH", "0")]);
    assert_eq!(first_stream_authorization(&server, &streaming).await.as_deref(), Some("Bearer s3cret"));
    streaming.kill();
    // On in the environment and a token file on the command line do contradict each other.
    let args = [&["--collector", "http://127.0.0.1:9"], token_flag.as_slice()].concat();
    let output = agent(&args, &[("BAKERY_INSECURE_NO_AUTH", "1")]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("contradict each other"), "{}", stderr(&output));
}
