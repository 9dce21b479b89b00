//! The processes the hostile tests run: `bakery-collector serve` on a fixed loopback port (so a
//! restart is the same collector coming back), `bakery-agent` on the fixture host root, and
//! `bakery-top`; each logs to a file in the test's work directory, and every wait polls a
//! condition against a deadline.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bakery_tests::binaries::built_binary;
use serde_json::Value;

/// The fixture host root the agents read: small and fast, the same every run.
pub const FIXTURE_PROC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../agent/tests/fixtures/bare/proc");

/// Long enough for a loaded 2-core machine, short enough that a hang fails the test.
pub const WAIT: Duration = Duration::from_secs(30);

/// Pauses a test thread that has no async runtime, between polls of a condition.
#[allow(clippy::disallowed_methods)]
pub fn pause(duration: Duration) {
    std::thread::sleep(duration);
}

/// Polls `condition` until it holds; fails the test after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        pause(Duration::from_millis(25));
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn sigterm(child: &Child) {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success(), "kill -TERM {}", child.id());
}

fn wait_exit(child: &mut Child, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {WAIT:?}");
        }
        pause(Duration::from_millis(20));
    }
}

/// Writes `text` to `dir/name`; the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A `bakery-collector serve` process.
pub struct Collector {
    binary: PathBuf,
    work: PathBuf,
    pub port: u16,
    pub metrics_port: u16,
    args: Vec<String>,
    child: Option<Child>,
    starts: usize,
}

impl Collector {
    /// Starts with these credential (and other) flags, `/metrics` on a loopback port of its own.
    pub fn start(work: &Path, args: &[&str]) -> Collector {
        let binary = built_binary("bakery-collector", "bakery-collector").unwrap();
        let mut collector = Collector {
            binary,
            work: work.to_path_buf(),
            port: free_port(),
            metrics_port: free_port(),
            args: args.iter().map(|a| a.to_string()).collect(),
            child: None,
            starts: 0,
        };
        collector.spawn();
        collector
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn data_dir(&self) -> PathBuf {
        self.work.join("collector-data")
    }

    /// Starts the process and waits until it listens (its --ready-file).
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "the collector is already running");
        self.starts += 1;
        let ready = self.work.join(format!("collector-ready-{}", self.starts));
        let log = std::fs::File::create(self.log_path(self.starts)).unwrap();
        let child = Command::new(&self.binary)
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--commit-interval", "100ms", "--health-listen", "127.0.0.1:0", "--no-auto-windows"])
            .args(["--metrics-listen", &format!("127.0.0.1:{}", self.metrics_port)])
            .arg("--ready-file")
            .arg(&ready)
            .args(&self.args)
            .env("BAKERY_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        wait_for("the collector to listen", WAIT, || {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("the collector exited at start ({status}):\n{}", self.log());
            }
            ready.exists()
        });
    }

    fn log_path(&self, start: usize) -> PathBuf {
        self.work.join(format!("collector-{start}.log"))
    }

    /// The log of the current (or last) start.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path(self.starts)).unwrap_or_default()
    }

    /// SIGTERM: final acks, exit 0.
    pub fn stop(&mut self) {
        let mut child = self.child.take().expect("a running collector");
        sigterm(&child);
        let status = wait_exit(&mut child, "the collector");
        assert!(status.success(), "the collector exits 0 on SIGTERM: {status}\n{}", self.log());
    }

    /// `inspect --json --verify` of the stopped store, by node name.
    pub fn inspect(&self) -> HashMap<String, Value> {
        assert!(self.child.is_none(), "inspect reads a stopped store");
        let output = Command::new(&self.binary)
            .arg("inspect")
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--json", "--verify"])
            .output()
            .unwrap();
        assert!(output.status.success(), "inspect failed: {}", String::from_utf8_lossy(&output.stderr));
        let report: Value = serde_json::from_slice(&output.stdout).unwrap();
        report["nodes"]
            .as_array()
            .expect("a nodes array")
            .iter()
            .map(|node| (node["node"].as_str().expect("a node name").to_string(), node.clone()))
            .collect()
    }

    /// `GET /metrics` with this bearer token: (HTTP status, body).
    pub fn scrape(&self, token: Option<&str>) -> (u16, String) {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).unwrap();
        let authorization = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        write!(stream, "GET /metrics HTTP/1.0\r\nHost: bakery\r\n{authorization}\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        (head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0), body.to_string())
    }

    /// The value of the Prometheus series `name{labels}` (0 when absent), scraped with `token`.
    pub fn metric(&self, token: &str, series: &str) -> f64 {
        let (code, body) = self.scrape(Some(token));
        assert_eq!(code, 200, "{body}");
        body.lines().find_map(|line| line.strip_prefix(series).and_then(|rest| rest.trim().parse().ok())).unwrap_or(0.0)
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A `bakery-agent` process streaming as `--node-name`.
pub struct Agent {
    pub node: String,
    child: Option<Child>,
    log: PathBuf,
}

/// The agent's last log line ("stopped acked_seq=.. last_seq=.. unacknowledged=..").
#[derive(Debug)]
pub struct AgentExit {
    pub acked_seq: u64,
    pub last_seq: u64,
    pub unacknowledged: u64,
}

impl Agent {
    /// Streams every 100 ms as `node` with the bearer token in `token_file`.
    pub fn start(work: &Path, node: &str, collector: &str, token_file: &Path) -> Agent {
        let binary = built_binary("bakery-agent", "bakery-agent").unwrap();
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let log = work.join(format!("agent-{node}-{}.log", STARTED.fetch_add(1, Ordering::Relaxed)));
        let child = Command::new(binary)
            .args(["--collector", collector, "--node-name", node, "--interval", "100ms"])
            .arg("--token-file")
            .arg(token_file)
            .arg("--proc-root")
            .arg(FIXTURE_PROC)
            .arg("--sys-root")
            .arg(work.join("no-sys"))
            .env("BAKERY_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Agent { node: node.to_string(), child: Some(child), log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Streams opened so far (the agent logs "stream open" at each Welcome).
    pub fn streams_opened(&self) -> usize {
        self.log().lines().filter(|line| line.contains("stream open")).count()
    }

    /// Stops a refused agent (nothing of it is expected to be stored).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM: the agent waits for its last acks and exits 0.
    pub fn stop(&mut self) -> AgentExit {
        let mut child = self.child.take().expect("a running agent");
        sigterm(&child);
        let status = wait_exit(&mut child, "the agent");
        let log = self.log();
        assert!(status.success(), "agent {} exits 0 on SIGTERM: {status}\n{log}", self.node);
        let line =
            log.lines().rev().find(|line| line.contains(" stopped ")).unwrap_or_else(|| panic!("no exit line:\n{log}"));
        AgentExit {
            acked_seq: field(line, "acked_seq"),
            last_seq: field(line, "last_seq"),
            unacknowledged: field(line, "unacknowledged"),
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `name=123` in a log line.
fn field(line: &str, name: &str) -> u64 {
    let prefix = format!("{name}=");
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(&prefix))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {line:?}"))
}

/// `bakery-top --collector URL --token-file FILE ARGS...`.
pub fn bakery_top(collector: &str, token_file: &Path, args: &[&str]) -> Output {
    let binary = built_binary("bakery-top", "bakery-top").unwrap();
    Command::new(binary)
        .args(["--collector", collector])
        .arg("--token-file")
        .arg(token_file)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

/// The store holds every sequence number 1..=last_seq of `node` exactly once, as a sample,
/// nothing is recorded as lost, and `inspect --verify` finds no hole and nothing accounted for
/// twice.
pub fn assert_complete(store: &HashMap<String, Value>, node: &str, last_seq: u64) {
    let entry = store.get(node).unwrap_or_else(|| panic!("{node} is not in the store: {store:?}"));
    let number = |key: &str| entry[key].as_u64().unwrap_or_else(|| panic!("{key} in {entry}"));
    assert_eq!(entry["gaps"].as_array().map(Vec::len), Some(0), "{node}: no gap: {entry}");
    assert_eq!(number("first_seq"), 1, "{node}: {entry}");
    assert_eq!(number("last_seq"), last_seq, "{node}: everything the agent numbered arrived: {entry}");
    assert_eq!(number("samples"), last_seq, "{node}: each sequence number stored exactly once: {entry}");
    assert_eq!(entry["unaccounted"], serde_json::json!([]), "{node}: no hole: {entry}");
    assert_eq!(entry["double_accounted"], serde_json::json!([]), "{node}: nothing twice: {entry}");
}
