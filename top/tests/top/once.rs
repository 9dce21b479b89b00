//! The binary's non-interactive output: piped stdout gets one snapshot as plain text or JSON with
//! no escape codes, from `--demo` (made-up data) and from a stand-in collector; plus completions and
//! the man page.

use std::process::{Command, Output};

use crate::fake_collector::FakeCollector;

const ESC: u8 = 0x1b;

/// Runs bakery-top with stdout and stderr piped (not a terminal), bounded by coreutils `timeout`
/// so a hang fails the test instead of blocking it, and with `env` but none of the test runner's
/// own `BAKERY_*` variables or `NO_COLOR`.
pub fn bakery_top_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new("timeout");
    command.arg("30").arg(env!("CARGO_BIN_EXE_bakery-top")).args(args);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("BAKERY_") || name == "NO_COLOR" {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied()).output().expect("run bakery-top")
}

fn bakery_top(args: &[&str]) -> Output {
    bakery_top_with(args, &[])
}

fn assert_plain(output: &Output) {
    assert!(output.status.success(), "bakery-top failed: {}", String::from_utf8_lossy(&output.stderr));
    assert!(
        !output.stdout.contains(&ESC),
        "escape codes in piped output:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn piped_output_is_one_plain_text_snapshot_without_escape_codes() {
    // No --once: stdout is a pipe, so bakery-top prints once and exits.
    let output = bakery_top(&["--demo", "--color", "always"]);
    assert_plain(&output);
    let text = String::from_utf8(output.stdout).unwrap();
    let header = text.lines().find(|l| l.starts_with("NODE")).expect("a node table");
    for column in ["ROLE", "CPU%", "SOFTIRQ%", "MEM", "TEMP", "FREQ", "RX/s", "TX/s", "SHARE", "EXPECTED", "CONNS"] {
        assert!(header.contains(column), "{column} missing in {header}");
    }
    assert!(text.lines().any(|l| l.starts_with("master-02") && l.contains("control-plane")), "{text}");
    assert!(text.contains("NAMESPACE") && text.contains("mysql-0"), "the pods table follows");
}

#[test]
fn json_output_is_one_document_without_escape_codes() {
    let output = bakery_top(&["--demo", "--json"]);
    assert_plain(&output);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["source"], "demo (made-up data)");
    assert_eq!(json["nodes"].as_array().unwrap().len(), 5);
    assert_eq!(json["share_basis"]["name"], "default/wordpress");
    assert_eq!(json["alerts"].as_array().map(Vec::len), Some(0), "the demo starts calm");
}

#[tokio::test]
async fn once_against_a_collector_with_a_token() {
    let collector = FakeCollector::start(Some("s3cret")).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let url = collector.url();
    let token_arg = token.display().to_string();
    let output =
        tokio::task::spawn_blocking(move || bakery_top(&["--collector", &url, "--token-file", &token_arg, "--json"]))
            .await
            .unwrap();
    assert_plain(&output);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let node = &json["nodes"][0];
    assert_eq!(node["name"], "pi-1");
    assert_eq!(node["cpu"]["busy_percent"], 50.0);
    assert_eq!(node["nic"]["rx_bytes_per_second"], 1_000_000.0);
    assert_eq!(json["alerts"], serde_json::Value::Null, "no alerts RPC yet: null, not an empty list");

    let text = tokio::task::spawn_blocking({
        let url = collector.url();
        move || bakery_top(&["--collector", &url, "--token-file", &token.display().to_string(), "--once"])
    })
    .await
    .unwrap();
    assert_plain(&text);
    assert!(String::from_utf8_lossy(&text.stdout).contains("pi-1"));
    collector.stop().await;
}

#[test]
fn an_unreachable_collector_fails_with_a_clear_message() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let output = bakery_top(&["--collector", &format!("http://127.0.0.1:{port}"), "--once"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot connect to the collector at http://127.0.0.1:"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
fn completions_and_man_page() {
    let bash = bakery_top(&["completions", "bash"]);
    assert_plain(&bash);
    assert!(String::from_utf8_lossy(&bash.stdout).contains("--collector"));
    let man = bakery_top(&["man"]);
    assert!(man.status.success());
    let page = String::from_utf8_lossy(&man.stdout);
    assert!(page.contains(".TH bakery-top") && page.contains("NO_COLOR"), "{page}");
}
