//! The built binary: SIGTERM flushes, acknowledges and exits 0; a committer that dies takes
//! the process down, non-zero, and a restart has every acknowledged sample; `inspect --json`
//! reads the stopped store; start-up refuses unusable configurations (and a test-only fault
//! without its switch) with a clear message.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::*;

const BINARY: &str = env!("CARGO_BIN_EXE_bakery-collector");

/// Kills the collector process if the test fails before it exits.
struct ChildGuard(Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn_collector(data_dir: &Path, ready_file: &Path, extra: &[&str]) -> ChildGuard {
    spawn_collector_with(data_dir, ready_file, extra, &[], Stdio::inherit())
}

fn spawn_collector_with(
    data_dir: &Path,
    ready_file: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
    stderr: Stdio,
) -> ChildGuard {
    let child = Command::new(BINARY)
        .args(["serve", "--listen", "127.0.0.1:0", "--insecure-no-auth", "--data-dir"])
        .arg(data_dir)
        .arg("--ready-file")
        .arg(ready_file)
        .args(extra)
        .env("BAKERY_LOG", "warn")
        .env_remove("BAKERY_FAULT")
        .env_remove("BAKERY_TEST_ONLY_ALLOW_FAULTS")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("the collector binary starts");
    ChildGuard(Some(child))
}

async fn wait_ready(ready_file: &Path) -> String {
    let mut addr = String::new();
    eventually("the ready file", || {
        addr = std::fs::read_to_string(ready_file).unwrap_or_default().trim().to_string();
        let ready = !addr.is_empty();
        async move { ready }
    })
    .await;
    format!("http://{addr}")
}

async fn wait_exit(guard: &mut ChildGuard) -> std::process::ExitStatus {
    wait_exit_within(guard, Duration::from_secs(30)).await
}

async fn wait_exit_within(guard: &mut ChildGuard, limit: Duration) -> std::process::ExitStatus {
    let child = guard.0.as_mut().expect("a child");
    let exited = bakery_lab::wait_for_async("the collector to exit", limit, || {
        std::future::ready(child.try_wait().expect("try_wait"))
    })
    .await;
    let status = exited.unwrap_or_else(|_| panic!("the collector did not exit within {limit:?}"));
    guard.0 = None;
    status
}

/// The seq of node-a's newest batch in the collector's in-memory history (0 for none).
async fn newest_in_history(url: &str) -> u64 {
    let mut query = bakery_proto::v1::query_client::QueryClient::new(channel(url).await);
    let request = bakery_proto::v1::HistoryRequest { node_name: "node-a".into(), since_ms: 0 };
    query.history(request).await.ok().and_then(|r| r.into_inner().batches.last().map(|b| b.seq)).unwrap_or(0)
}

fn inspect_json(data_dir: &Path) -> serde_json::Value {
    let output = Command::new(BINARY)
        .args(["inspect", "--json", "--verify", "--data-dir"])
        .arg(data_dir)
        .output()
        .expect("inspect runs");
    assert!(output.status.success(), "inspect failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("inspect prints JSON")
}

#[tokio::test]
async fn sigterm_commits_what_was_received_sends_final_acks_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir: PathBuf = dir.path().join("data");
    let ready = dir.path().join("ready");
    // A long commit interval: at SIGTERM the last batches are received but not yet committed,
    // so only the shutdown flush can commit and acknowledge them.
    let mut child = spawn_collector(&data_dir, &ready, &["--commit-interval", "30s"]);
    let url = wait_ready(&ready).await;
    let mut agent = TestAgent::try_connect(&url, None, hello("node-a")).await.expect("connected");
    for seq in 1..=10 {
        agent.send(batch(seq)).await;
    }
    // Wait until all ten are received (a stream is handled in order, so the tenth is the newest
    // in the in-memory history) ...
    let history_url = url.clone();
    eventually("all ten received", move || {
        let url = history_url.clone();
        async move { newest_in_history(&url).await == 10 }
    })
    .await;
    // ... but not committed: the 30 s interval has not passed.
    assert_eq!(agent.acked, 0, "nothing committed before the signal");

    let pid = child.0.as_ref().unwrap().id().to_string();
    let kill = Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
    assert!(kill.success());

    // The final ack covers everything, then the stream ends with UNAVAILABLE.
    assert_eq!(agent.wait_ack(10).await, 10);
    let status = agent.expect_error().await;
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    let exit = wait_exit(&mut child).await;
    assert_eq!(exit.code(), Some(0), "a clean shutdown exits 0");

    let report = inspect_json(&data_dir);
    let node = &report["nodes"][0];
    assert_eq!(node["node"], "node-a");
    assert_eq!(node["batches"], 10);
    assert_eq!(node["first_seq"], 1);
    assert_eq!(node["last_seq"], 10);
    assert_eq!(node["committed_seq"], 10);
    assert_eq!(node["gaps"], serde_json::json!([]));
    assert_eq!(node["unaccounted"], serde_json::json!([]));
}

#[test]
fn inspect_prints_a_table_for_people() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = bakery_collector::store::Store::open(dir.path()).unwrap();
        store.close().unwrap();
    }
    let output = Command::new(BINARY).args(["inspect", "--data-dir"]).arg(dir.path()).output().unwrap();
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout), "no nodes in this store yet\n");
}

#[test]
fn start_up_refuses_unusable_configurations_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let output = Command::new(BINARY)
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(args)
            .output()
            .unwrap();
        (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let (code, stderr) = run(&[]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("refusing to accept agents without authentication"), "{stderr}");
    let (code, stderr) = run(&["--token-file", "/nonexistent/tokens"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("cannot read the token file /nonexistent/tokens"), "{stderr}");
    let (code, stderr) =
        run(&["--insecure-no-auth", "--tls-cert", "/nonexistent/crt", "--tls-key", "/nonexistent/key"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("cannot read the TLS certificate"), "{stderr}");
    // a store held by another collector
    let _held = bakery_collector::store::Store::open(&dir.path().join("data")).unwrap();
    let (code, stderr) = run(&["--insecure-no-auth"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("in use by another process"), "{stderr}");
}

#[tokio::test]
async fn kill_9_loses_nothing_that_was_acknowledged_and_the_agent_resumes_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir: PathBuf = dir.path().join("data");
    let ready = dir.path().join("ready");
    let mut child = spawn_collector(&data_dir, &ready, &["--commit-interval", "20ms"]);
    let url = wait_ready(&ready).await;
    let mut agent = TestAgent::try_connect(&url, None, hello("node-a")).await.expect("connected");
    // Stream without waiting, so the kill lands with batches in flight.
    for seq in 1..=40 {
        agent.send(batch(seq)).await;
    }
    agent.wait_ack(10).await;
    let pid = child.0.as_ref().unwrap().id().to_string();
    assert!(Command::new("kill").args(["-KILL", &pid]).status().unwrap().success());
    let exit = wait_exit(&mut child).await;
    assert_eq!(exit.code(), None, "killed by a signal");
    // Anything acked after the ones we waited for still counts: drain what arrived.
    while let Ok(Some(message)) = agent.next().await {
        if let Some(bakery_proto::v1::collector_message::Kind::Ack(ack)) = message.kind {
            agent.acked = ack.committed_seq;
        }
    }
    let acked = agent.acked;

    // The crashed store opens for inspect (quick-repair state is in every commit) and holds
    // every acknowledged batch.
    let report = inspect_json(&data_dir);
    let committed = report["nodes"][0]["committed_seq"].as_u64().unwrap();
    assert!(committed >= acked, "committed {committed} < acked {acked}");
    assert_eq!(report["nodes"][0]["unaccounted"], serde_json::json!([]));

    // Restart on the same store; the agent resumes after what is committed and resends the rest.
    std::fs::remove_file(&ready).unwrap();
    let mut child = spawn_collector(&data_dir, &ready, &["--commit-interval", "20ms"]);
    let url = wait_ready(&ready).await;
    let mut agent = TestAgent::try_connect(&url, None, hello("node-a")).await.expect("reconnected");
    assert_eq!(agent.welcome.committed_seq, committed);
    for seq in committed + 1..=50 {
        agent.send(batch(seq)).await;
    }
    agent.wait_ack(50).await;
    let pid = child.0.as_ref().unwrap().id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    assert_eq!(wait_exit(&mut child).await.code(), Some(0));
    let report = inspect_json(&data_dir);
    let node = &report["nodes"][0];
    assert_eq!((node["batches"].as_u64(), node["last_seq"].as_u64()), (Some(50), Some(50)));
    assert_eq!(node["gaps"], serde_json::json!([]), "every seq exactly once, no gap");
    assert_eq!(node["unaccounted"], serde_json::json!([]));
    assert_eq!(node["double_accounted"], serde_json::json!([]));
}

#[tokio::test]
async fn a_committer_that_panics_ends_the_process_non_zero_and_a_restart_keeps_every_acknowledged_sample() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir: PathBuf = dir.path().join("data");
    let ready = dir.path().join("ready");
    let log = dir.path().join("collector.log");
    let fault = [("BAKERY_FAULT", "committer-panic-after=5"), ("BAKERY_TEST_ONLY_ALLOW_FAULTS", "1")];
    let stderr = Stdio::from(std::fs::File::create(&log).unwrap());
    let mut child = spawn_collector_with(&data_dir, &ready, &["--commit-interval", "20ms"], &fault, stderr);
    let url = wait_ready(&ready).await;
    let mut agent = TestAgent::try_connect(&url, None, hello("node-a")).await.expect("connected");
    // Stream at 200 Hz until the fifth commit, after which the committer panics before its
    // acks; then the process must end by itself, soon.
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let mut seq = 0;
    let panicked_at = loop {
        if read_log().contains("injected fault committer-panic-after=5") {
            break tokio::time::Instant::now();
        }
        assert!(seq < 1_000, "the fault never fired:\n{}", read_log());
        seq += 1;
        let _ = agent.try_send(batch(seq)).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let exit = wait_exit_within(&mut child, Duration::from_secs(10)).await;
    let took = panicked_at.elapsed();
    let log_text = read_log();
    assert_eq!(exit.code(), Some(1), "exits non-zero by itself (not killed): {exit}\n{log_text}");
    assert!(log_text.contains("the committer task panicked"), "the log says why:\n{log_text}");
    assert!(took < Duration::from_secs(5), "exited {took:?} after the panic");
    eprintln!("the collector exited {took:?} after the committer panicked");
    // Whatever was acknowledged before the end.
    while let Ok(Some(message)) = agent.next().await {
        if let Some(bakery_proto::v1::collector_message::Kind::Ack(ack)) = message.kind {
            agent.acked = ack.committed_seq;
        }
    }
    let acked = agent.acked;
    let report = inspect_json(&data_dir);
    let committed = report["nodes"][0]["committed_seq"].as_u64().unwrap();
    assert!(committed >= acked, "committed {committed} >= acked {acked}: nothing acknowledged is lost");
    assert!(committed > acked, "the last commit ({committed}) was never acknowledged ({acked})");

    // Kubernetes restarts it (without the fault): the agent resumes after what is committed.
    std::fs::remove_file(&ready).unwrap();
    let mut child = spawn_collector(&data_dir, &ready, &["--commit-interval", "20ms"]);
    let url = wait_ready(&ready).await;
    let mut agent = TestAgent::try_connect(&url, None, hello("node-a")).await.expect("reconnected");
    assert_eq!(agent.welcome.committed_seq, committed);
    let last = seq + 10;
    for seq in committed + 1..=last {
        agent.send(batch(seq)).await;
    }
    agent.wait_ack(last).await;
    let pid = child.0.as_ref().unwrap().id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    assert_eq!(wait_exit(&mut child).await.code(), Some(0));
    let report = inspect_json(&data_dir);
    let node = &report["nodes"][0];
    assert_eq!((node["batches"].as_u64(), node["last_seq"].as_u64()), (Some(last), Some(last)));
    assert_eq!(node["gaps"], serde_json::json!([]), "every seq exactly once, no gap");
    assert_eq!(node["unaccounted"], serde_json::json!([]));
}

#[test]
fn a_test_only_fault_is_refused_without_its_switch() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BINARY)
        .args(["--listen", "127.0.0.1:0", "--insecure-no-auth", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("BAKERY_FAULT", "committer-panic-after=1")
        .env_remove("BAKERY_TEST_ONLY_ALLOW_FAULTS")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("refused unless BAKERY_TEST_ONLY_ALLOW_FAULTS=1"), "{stderr}");
    assert!(!dir.path().join("data").exists(), "refused before anything was opened");
}
