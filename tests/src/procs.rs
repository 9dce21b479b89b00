//! The real binaries as processes for the end-to-end tests: `bakery-collector serve` on a fixed
//! loopback port and data directory (so a restart is the same collector coming back), with
//! `inspect --json --verify` as the judge of what it stored, and `bakery-agent` on the fixture
//! host root. Each logs to a file in the test's work directory.

// Called only from tests: a failure here is the calling test's failure, with its message.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bakery_lab::binaries::built_binary;
use bakery_lab::process::{Output, Process, Spawn};
use bakery_lab::{free_port, wait_until};
use nix::sys::signal::Signal;
use serde_json::Value;

/// The fixture host root the agents read: small and fast, the same every run.
pub const FIXTURE_PROC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../agent/tests/fixtures/bare/proc");

/// Long enough for a loaded 2-core machine, short enough that a hang fails the test.
pub const WAIT: Duration = Duration::from_secs(30);

/// A `bakery-collector serve` process: commits every 100 ms, no automatic windows, health on a
/// port of the kernel's choosing and `/metrics` on a loopback port of its own.
pub struct Collector {
    binary: PathBuf,
    work: PathBuf,
    pub port: u16,
    pub metrics_port: u16,
    args: Vec<String>,
    child: Option<Process>,
    starts: usize,
}

impl Collector {
    /// Starts with these credential (and other) flags, and waits until it listens.
    pub fn start(work: &Path, args: &[&str]) -> Collector {
        let binary = built_binary("bakery-collector", "bakery-collector").unwrap();
        let mut collector = Collector {
            binary,
            work: work.to_path_buf(),
            port: free_port().unwrap(),
            metrics_port: free_port().unwrap(),
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

    /// How many times the process was started.
    pub fn starts(&self) -> usize {
        self.starts
    }

    /// Starts the process and waits until it listens (its --ready-file).
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "the collector is already running");
        self.starts += 1;
        let ready = self.work.join(format!("collector-ready-{}", self.starts));
        let child = Spawn::new("the collector", &self.binary)
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
            .output(Output::Log(self.log_path(self.starts)))
            .start()
            .unwrap();
        self.child = Some(child);
        wait_until("the collector to listen", WAIT, || {
            if let Some(status) = self.child.as_mut().and_then(Process::try_status) {
                panic!("the collector exited at start ({status}):\n{}", self.log());
            }
            ready.exists()
        })
        .unwrap();
    }

    fn log_path(&self, start: usize) -> PathBuf {
        self.work.join(format!("collector-{start}.log"))
    }

    /// The log of the current (or last) start.
    pub fn log(&self) -> String {
        self.log_of(self.starts)
    }

    /// The log of start `start` (the first is 1).
    pub fn log_of(&self, start: usize) -> String {
        std::fs::read_to_string(self.log_path(start)).unwrap_or_default()
    }

    /// SIGKILL: no flush, no final acks.
    pub fn kill9(&mut self) {
        self.child.take().expect("a running collector").kill();
    }

    /// SIGTERM: final acks, exit 0.
    pub fn stop(&mut self) {
        let mut child = self.child.take().expect("a running collector");
        child.signal(Signal::SIGTERM);
        let status = child.wait_exit(WAIT).unwrap_or_else(|| panic!("the collector did not exit within {WAIT:?}"));
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

    /// Every sample of `node` in the stopped store, by sequence number, with when the collector
    /// received it and when it was taken.
    pub fn stored_samples(&self, node: &str) -> Vec<crate::stored::StoredSample> {
        assert!(self.child.is_none(), "the store is read stopped");
        crate::stored::stored_samples(&self.data_dir(), node).unwrap()
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

/// A `bakery-agent` process streaming as its node on the fixture host root; killed when dropped.
pub struct Agent {
    pub node: String,
    child: Option<Process>,
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
    /// Streams as `node` to `collector` with these further flags (credentials, interval, spool).
    pub fn start(work: &Path, node: &str, collector: &str, args: &[&str]) -> Agent {
        let binary = built_binary("bakery-agent", "bakery-agent").unwrap();
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let log = work.join(format!("agent-{node}-{}.log", STARTED.fetch_add(1, Ordering::Relaxed)));
        let child = Spawn::new(&format!("the agent of {node}"), binary)
            .args(["--collector", collector, "--node-name", node])
            .arg("--proc-root")
            .arg(FIXTURE_PROC)
            .arg("--sys-root")
            .arg(work.join("no-sys"))
            .args(args)
            .env("BAKERY_LOG", "info")
            .env("NO_COLOR", "1")
            // Tests judge completeness when the agent exits: on two loaded cores the last ack can
            // take longer than the 5 s a stopping agent waits by default (`stop` waits for WAIT).
            .env("BAKERY_FLUSH_TIMEOUT", "20s")
            .output(Output::Log(log.clone()))
            .start()
            .unwrap();
        Agent { node: node.to_string(), child: Some(child), log }
    }

    /// Streams every 100 ms as `node` with the bearer token in `token_file`.
    pub fn with_token(work: &Path, node: &str, collector: &str, token_file: &Path) -> Agent {
        let token_file = token_file.to_str().expect("a UTF-8 path");
        Agent::start(work, node, collector, &["--interval", "100ms", "--token-file", token_file])
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Streams opened so far (the agent logs "stream open" at each Welcome).
    pub fn streams_opened(&self) -> usize {
        self.log().lines().filter(|line| line.contains("stream open")).count()
    }

    /// SIGKILL (nothing when it has already stopped).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
    }

    /// SIGTERM: the agent flushes (waits for its last acks) and exits 0.
    pub fn stop(&mut self) -> AgentExit {
        let mut child = self.child.take().expect("a running agent");
        child.signal(Signal::SIGTERM);
        let status = child.wait_exit(WAIT).unwrap_or_else(|| panic!("the agent did not exit within {WAIT:?}"));
        let log = self.log();
        assert!(status.success(), "agent {} exits 0 on SIGTERM: {status}\n{log}", self.node);
        let line =
            log.lines().rev().find(|line| line.contains(" stopped ")).unwrap_or_else(|| panic!("no exit line:\n{log}"));
        if field(line, "unacknowledged") > 0 {
            eprintln!("agent {} stopped with samples unacknowledged; its log:\n{log}", self.node);
        }
        AgentExit {
            acked_seq: field(line, "acked_seq"),
            last_seq: field(line, "last_seq"),
            unacknowledged: field(line, "unacknowledged"),
        }
    }
}

/// `name=123` in a log line.
pub fn field(line: &str, name: &str) -> u64 {
    let prefix = format!("{name}=");
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(&prefix))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {line:?}"))
}

/// A number of an `inspect --json` entry.
pub fn number(entry: &Value, key: &str) -> u64 {
    entry[key].as_u64().unwrap_or_else(|| panic!("{key} in {entry}"))
}

/// The store holds every sequence number 1..=last_seq of `node` exactly once, as a sample, all
/// committed, nothing is recorded as lost, and `inspect --verify` finds no hole, nothing
/// accounted for twice and nothing stored ahead of an unfinished replay.
pub fn assert_complete(store: &HashMap<String, Value>, node: &str, last_seq: u64) {
    let entry = store.get(node).unwrap_or_else(|| panic!("{node} is not in the store: {store:?}"));
    assert_eq!(entry["gaps"].as_array().map(Vec::len), Some(0), "{node}: no gap: {entry}");
    assert_eq!(number(entry, "first_seq"), 1, "{node}: {entry}");
    assert_eq!(number(entry, "last_seq"), last_seq, "{node}: everything the agent numbered arrived: {entry}");
    assert_eq!(number(entry, "committed_seq"), last_seq, "{node}: {entry}");
    assert_eq!(number(entry, "samples"), last_seq, "{node}: each sequence number stored exactly once: {entry}");
    assert_eq!(entry["unaccounted"], serde_json::json!([]), "{node}: no hole: {entry}");
    assert_eq!(entry["double_accounted"], serde_json::json!([]), "{node}: nothing twice: {entry}");
    assert_eq!(entry["ahead"], serde_json::json!([]), "{node}: no replay left unfinished: {entry}");
}
