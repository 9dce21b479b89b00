//! The command line's variables: every flag, the subcommands' included, has one named by the rule
//! in `bakery_top::cli` and shown in its `--help`; on/off variables turn `--demo`, `--once` and
//! `--json` on as the flags do (the same output from made-up data, no collector needed), and a
//! wrong value names its variable; `BAKERY_JSON` does not contradict `report --svg FILE`.

use std::process::Output;

use bakery_top::cli::Cli;
use clap::{ArgAction, CommandFactory};

use crate::once::bakery_top_with;

/// One flag: the subcommands it sits under, its long name, its variable, whether it is on/off.
#[derive(Debug)]
struct Flag {
    path: Vec<String>,
    long: String,
    variable: Option<String>,
    on_off: bool,
}

/// Every flag of `command` and of its subcommands, below `path` (not `--help`, `--version` nor
/// positional arguments).
fn walk(command: &clap::Command, path: &[String], flags: &mut Vec<Flag>) {
    for arg in command.get_arguments() {
        if arg.is_positional() || matches!(arg.get_action(), ArgAction::Help | ArgAction::Version) {
            continue;
        }
        flags.push(Flag {
            path: path.to_vec(),
            long: arg.get_long().expect("every flag has a long name").to_string(),
            variable: arg.get_env().map(|v| v.to_string_lossy().into_owned()),
            on_off: matches!(arg.get_action(), ArgAction::SetTrue),
        });
    }
    for subcommand in command.get_subcommands() {
        let below = [path, &[subcommand.get_name().to_string()]].concat();
        walk(subcommand, &below, flags);
    }
}

fn flags() -> Vec<Flag> {
    let mut flags = Vec::new();
    walk(&Cli::command(), &[], &mut flags);
    for (path, long) in [("", "refresh"), ("report", "svg"), ("window start", "name"), ("loadtest", "fail-on-hog")] {
        assert!(flags.iter().any(|f| f.path.join(" ") == path && f.long == long), "the walk found {path} --{long}");
    }
    flags
}

fn upper(text: &str) -> String {
    text.to_uppercase().replace('-', "_")
}

/// The rule: `BAKERY_<FLAG>` at the top and for a subcommand's flag spelled like a top-level one,
/// `BAKERY_<SUBCOMMAND>_<FLAG>` (the subcommand's path) for the others.
fn expected_variable(flag: &Flag, top_level: &[String]) -> String {
    if flag.path.is_empty() || top_level.contains(&flag.long) {
        format!("BAKERY_{}", upper(&flag.long))
    } else {
        format!("BAKERY_{}_{}", upper(&flag.path.join("_")), upper(&flag.long))
    }
}

#[test]
fn every_flag_has_a_variable_named_by_the_rule() {
    let flags = flags();
    let top_level: Vec<String> = flags.iter().filter(|f| f.path.is_empty()).map(|f| f.long.clone()).collect();
    let mut wrong = Vec::new();
    for flag in &flags {
        let expected = expected_variable(flag, &top_level);
        if flag.variable.as_deref() != Some(expected.as_str()) {
            wrong.push(format!("{} --{}: {:?}, expected {expected}", flag.path.join(" "), flag.long, flag.variable));
        }
    }
    assert!(wrong.is_empty(), "give each flag its variable (the rule is in bakery_top::cli):\n{}", wrong.join("\n"));
    let json: Vec<String> = flags.iter().filter(|f| f.long == "json").map(|f| f.path.join(" ")).collect();
    assert_eq!(json, ["", "alerts", "report"], "--json everywhere reads BAKERY_JSON");
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn each_help_shows_its_flags_variables() {
    let flags = flags();
    let mut paths: Vec<&Vec<String>> = flags.iter().map(|f| &f.path).collect();
    paths.dedup();
    for path in paths {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let output = bakery_top_with(&args, &[]);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        // Unwrapped: a long description pushes `[env:` and its variable onto two lines.
        let help = stdout(&output).split_whitespace().collect::<Vec<_>>().join(" ");
        for flag in flags.iter().filter(|f| &f.path == path) {
            let variable = flag.variable.as_deref().unwrap_or("no variable");
            assert!(
                help.contains(&format!("[env: {variable}")),
                "{args:?} shows --{}'s {variable}:\n{help}",
                flag.long
            );
        }
    }
}

#[test]
fn on_off_variables_give_what_the_flags_give() {
    let by_flags = bakery_top_with(&["--demo", "--json"], &[]);
    assert!(by_flags.status.success(), "{}", stderr(&by_flags));
    serde_json::from_slice::<serde_json::Value>(&by_flags.stdout).expect("JSON from --demo --json");
    for on in ["1", "true", "yes", "on", "YES"] {
        let by_variables = bakery_top_with(&[], &[("BAKERY_DEMO", on), ("BAKERY_JSON", on)]);
        assert!(by_variables.status.success(), "BAKERY_DEMO={on} BAKERY_JSON={on}: {}", stderr(&by_variables));
        assert_eq!(stdout(&by_variables), stdout(&by_flags), "BAKERY_DEMO={on} BAKERY_JSON={on}");
    }
    let text = bakery_top_with(&["--demo", "--once"], &[]);
    assert!(text.status.success() && stdout(&text).contains("master-02"), "{}", stderr(&text));
    let by_variables = bakery_top_with(&[], &[("BAKERY_DEMO", "1"), ("BAKERY_ONCE", "1"), ("BAKERY_JSON", "0")]);
    assert_eq!(stdout(&by_variables), stdout(&text), "BAKERY_ONCE=1 BAKERY_JSON=0: the text snapshot");
    for off in ["0", "false", "no", "off", ""] {
        let output = bakery_top_with(&["--demo", "--once"], &[("BAKERY_JSON", off)]);
        assert_eq!(stdout(&output), stdout(&text), "BAKERY_JSON={off:?} leaves --json off");
    }
}

#[test]
fn a_wrong_on_off_value_names_its_variable() {
    let flags = flags();
    let on_off: Vec<&Flag> = flags.iter().filter(|f| f.on_off).collect();
    assert!(on_off.len() >= 6, "--once, --json (three times), --demo, --fail-on-hog: {on_off:?}");
    for flag in on_off {
        let variable = flag.variable.as_deref().expect("a variable");
        let mut args: Vec<&str> = flag.path.iter().map(String::as_str).collect();
        if flag.path == ["loadtest"] {
            args.extend(["--", "true"]);
        }
        let output = bakery_top_with(&args, &[(variable, "maybe")]);
        assert_eq!(output.status.code(), Some(2), "{args:?} with {variable}=maybe: {}", stderr(&output));
        let error = stderr(&output);
        assert!(
            error.contains(&format!("{variable}=\"maybe\""))
                && error.contains(&format!("--{}", flag.long))
                && error.contains("1, true, yes or on"),
            "{error}"
        );
        assert!(output.stdout.is_empty());
    }
}

#[test]
fn report_json_and_svg_contradict_each_other_on_the_command_line_only() {
    let output = bakery_top_with(&["report", "--json", "--svg", "chart.svg"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--json and --svg <FILE> cannot be used together"), "{}", stderr(&output));
    // BAKERY_JSON asks every command for JSON; --svg FILE wins over it, and the report is asked for.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let collector = format!("http://127.0.0.1:{port}");
    for env in [[("BAKERY_JSON", "1")], [("BAKERY_JSON", "0")]] {
        let output = bakery_top_with(&["report", "--svg", "chart.svg", "--collector", &collector], &env);
        assert_eq!(output.status.code(), Some(1), "{env:?}: {}", stderr(&output));
        assert!(stderr(&output).contains("cannot connect to the collector"), "{env:?}: {}", stderr(&output));
    }
}
