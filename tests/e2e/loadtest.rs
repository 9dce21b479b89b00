//! `bakery-top loadtest` with real oha against an HTTP server on 127.0.0.1: the report holds
//! oha's numbers (the RPS is oha's own), the progress shows a live request rate that agrees with
//! them, a missing oha is a clear error with the install command,
//! Ctrl-C in the middle still closes the window, another command gets its window without a
//! summary, and `--fail-on-hog` exits 3 on a flagged node. Also the live collector + agent
//! harness the tmux test shares: real `bakery-collector` and `bakery-agent` processes, killed on
//! drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bakery_lab::binaries::built_binary;
use bakery_lab::process::{Output, Process, Spawn};
use bakery_lab::{free_port, wait_until};
use bakery_proto::v1::WindowsRequest;
use bakery_proto::v1::query_client::QueryClient;
use nix::sys::signal::Signal;
use serde_json::Value;

const FIXTURE_PROC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../agent/tests/fixtures/bare/proc");
const FIXTURE_SYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../agent/tests/fixtures/bare/sys");

/// A real `bakery-collector` (no auth, no Kubernetes, its own data dir) on a fixed loopback port,
/// so a restart is the same collector coming back, fed by a real `bakery-agent` reading the
/// agent's bare fixture tree every 250 ms.
pub(crate) struct LiveCollector {
    pub work: tempfile::TempDir,
    pub port: u16,
    collector: Option<Process>,
    _agent: Option<Process>,
    starts: usize,
}

impl LiveCollector {
    pub(crate) fn start() -> Self {
        let work = tempfile::tempdir().unwrap();
        let port = free_port().unwrap();
        let mut live = Self { work, port, collector: None, _agent: None, starts: 0 };
        live.spawn_collector();
        let agent = built_binary("bakery-agent", "bakery-agent").unwrap();
        let child = Spawn::new("the agent", agent)
            .args(["--collector", &live.url(), "--insecure-no-auth", "--interval", "250ms"])
            .args(["--proc-root", FIXTURE_PROC, "--sys-root", FIXTURE_SYS])
            .arg("--spool-dir")
            .arg(live.work.path().join("spool"))
            .output(Output::Log(live.work.path().join("agent.log")))
            .start()
            .unwrap();
        live._agent = Some(child);
        live
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the collector and waits for its --ready-file.
    pub(crate) fn spawn_collector(&mut self) {
        assert!(self.collector.is_none(), "the collector already runs");
        self.starts += 1;
        let binary = built_binary("bakery-collector", "bakery-collector").unwrap();
        let ready = self.work.path().join(format!("ready-{}", self.starts));
        let log_path = self.work.path().join(format!("collector-{}.log", self.starts));
        let child = Spawn::new("the collector", binary)
            .args(["--insecure-no-auth", "--no-kubernetes", "--no-auto-windows"])
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .arg("--data-dir")
            .arg(self.work.path().join("data"))
            .arg("--ready-file")
            .arg(&ready)
            .output(Output::Log(log_path.clone()))
            .start()
            .unwrap();
        self.collector = Some(child);
        wait_until("the collector's ready file", Duration::from_secs(30), || ready.exists())
            .unwrap_or_else(|e| panic!("{e}\n{}", std::fs::read_to_string(&log_path).unwrap_or_default()));
    }

    /// SIGKILL: the collector goes away at once.
    pub(crate) fn kill_collector(&mut self) {
        self.collector.take().expect("a running collector").kill();
    }

    pub(crate) fn agent_log(&self) -> String {
        std::fs::read_to_string(self.work.path().join("agent.log")).unwrap_or_default()
    }

    /// The collector's windows (`Query.Windows`).
    pub(crate) fn windows(&self) -> Vec<bakery_proto::v1::Window> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let mut client = QueryClient::connect(self.url()).await.unwrap();
            client.windows(WindowsRequest {}).await.unwrap().into_inner().windows
        })
    }
}

/// A tiny HTTP server on 127.0.0.1 (axum on its own runtime thread) for oha to load.
struct HttpServer {
    addr: std::net::SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpServer {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = axum::Router::new().route("/", axum::routing::get(|| async { "fresh bread\n" }));
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        Self { addr, shutdown: Some(shutdown), thread: Some(thread) }
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// oha on PATH or in ~/.cargo/bin; installed with `cargo install oha --locked` when missing.
fn oha() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("oha")).find(|p| p.is_file()))
        .unwrap_or_default();
    let cargo_bin = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/oha"));
    if let Some(found) = on_path.or_else(|| cargo_bin.clone().filter(|p| p.is_file())) {
        return found;
    }
    eprintln!("oha is not installed: running `cargo install oha --locked` (several minutes on 2 cores)...");
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["install", "oha", "--locked"])
        .status()
        .expect("cannot run cargo install oha --locked");
    assert!(status.success(), "`cargo install oha --locked` failed ({status}); install oha to run this test");
    cargo_bin.filter(|p| p.is_file()).expect("oha installed into ~/.cargo/bin")
}

/// PATH with oha's directory in front, so `bakery-top loadtest -- oha ...` finds it.
fn path_with(dir: &Path) -> std::ffi::OsString {
    let mut dirs = vec![dir.to_path_buf()];
    dirs.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()));
    std::env::join_paths(dirs).unwrap()
}

fn bakery_top() -> PathBuf {
    built_binary("bakery-top", "bakery-top").unwrap()
}

/// What one progress line says oha sent: the rate since the line before (none on the first) and
/// the count so far, from `oha ~2076 req/s, ~6210 sent (tcp segments)`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct LiveSent {
    per_second: Option<f64>,
    sent: u64,
}

fn live_sent(stderr: &str) -> Vec<LiveSent> {
    let figure = |token: &str| token.trim_start_matches(['~', '>', '=']).to_string();
    stderr
        .lines()
        .filter(|line| line.starts_with("loadtest "))
        .filter_map(|line| {
            let tokens: Vec<&str> = line.split_once("  oha ")?.1.split_whitespace().collect();
            let after = |word: &str| tokens.windows(2).find(|pair| pair[1] == word).map(|pair| figure(pair[0]));
            Some(LiveSent {
                per_second: after("req/s,").map(|n| n.parse().unwrap()),
                sent: after("sent").unwrap_or_else(|| panic!("no count in {line}")).parse().unwrap(),
            })
        })
        .collect()
}

#[test]
fn loadtest_with_oha_merges_oha_s_own_numbers_into_the_window_report() {
    let oha = oha();
    let live = LiveCollector::start();
    let server = HttpServer::start();
    let report_file = live.work.path().join("run.json");
    let own = live.work.path().join("oha-own.json");
    let output = Command::new(bakery_top())
        .env("PATH", path_with(oha.parent().unwrap()))
        .args(["--collector", &live.url(), "loadtest", "--name", "e2e-oha", "--report"])
        .arg(&report_file)
        .args(["--", "oha", "-z", "3s", "-c", "4", "-o"])
        .arg(&own)
        .arg(server.url())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "loadtest failed ({}):\n{stdout}\n{stderr}", output.status);

    // oha's own output, read without bakery-top's parser.
    let own: Value = serde_json::from_str(&std::fs::read_to_string(&own).unwrap()).unwrap();
    let own_rps = own["summary"]["requestsPerSec"].as_f64().unwrap();
    let own_requests: u64 = own["statusCodeDistribution"]
        .as_object()
        .unwrap()
        .values()
        .chain(own["errorDistribution"].as_object().unwrap().values())
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert!(own_requests > 100, "oha made some requests: {own}");

    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report_file).unwrap()).unwrap();
    assert_eq!(report["window"]["name"], "e2e-oha", "{report}");
    let merged = &report["loadtest"]["oha"];
    // The same number, up to the last bit of a decimal round trip through JSON.
    let merged_rps = merged["requests_per_second"].as_f64().unwrap();
    assert!((merged_rps - own_rps).abs() <= own_rps * 1e-12, "the RPS is oha's own: {merged_rps} vs {own_rps}");
    assert_eq!(merged["requests"].as_u64().unwrap(), own_requests);
    assert_eq!(merged["status_codes"]["200"], own["statusCodeDistribution"]["200"]);
    let p99_ms = own["latencyPercentiles"]["p99"].as_f64().unwrap() * 1000.0;
    assert!((merged["latency_p99_ms"].as_f64().unwrap() - p99_ms).abs() < 1e-9);
    assert_eq!(report["loadtest"]["exit_code"], 0);

    // The printed report: the window's, then oha's summary with the same RPS.
    assert!(stdout.starts_with("window w-"), "{stdout}");
    assert!(stdout.contains(&format!("oha: {own_requests} requests in ")), "{stdout}");
    assert!(stdout.contains(&format!(", {own_rps:.1} req/s, ")), "{stdout}");
    assert!(stdout.contains("(exit 0)"), "{stdout}");
    // Progress at least once a second: a 3 s run prints 0s, 1s and 2s lines.
    for second in 0..3 {
        assert!(stderr.contains(&format!("loadtest {second}s / 3s")), "{stderr}");
    }
    // Each of them says what oha sent so far, and from the second on at what rate. The count is
    // oha's TCP data segments: one per request on these kept-alive HTTP/1 connections, so it never
    // runs ahead of the requests oha reports at the end (those in flight at the deadline are in
    // its count, as aborted), give or take one per connection.
    let progress = live_sent(&stderr);
    assert!(progress.len() >= 3, "a live count on every progress line: {progress:?}\n{stderr}");
    assert!(progress.windows(2).all(|pair| pair[0].sent <= pair[1].sent), "the count only grows: {progress:?}");
    let last = progress.last().unwrap().sent;
    assert!(last <= own_requests + 4, "no more sent than oha made: {last} vs {own_requests}\n{stderr}");
    assert!(last >= own_requests / 4, "most requests were counted while running: {last} of {own_requests}\n{stderr}");
    // The rate is a 1 s window of a moving load on a shared 2-core machine, oha's a 3 s average:
    // the busiest second agrees with oha's figure within a factor of 4 either way.
    let busiest = progress.iter().filter_map(|l| l.per_second).reduce(f64::max);
    let busiest = busiest.unwrap_or_else(|| panic!("a live rate while oha ran:\n{stderr}"));
    assert!(
        busiest >= own_rps / 4.0 && busiest <= own_rps * 4.0,
        "the live rate {busiest:.0} req/s is not near oha's {own_rps:.0} req/s:\n{stderr}"
    );
    assert!(!stdout.contains('\x1b') && !stderr.contains('\x1b'), "no escape codes into a pipe");

    let windows = live.windows();
    let window = windows.iter().find(|w| w.name == "e2e-oha").expect("the window is stored");
    assert!(window.end_ms > window.start_ms, "the window is closed: {window:?}");
}

#[test]
fn loadtest_with_another_command_gets_a_window_and_report_without_a_summary() {
    let live = LiveCollector::start();
    let svg = live.work.path().join("run.svg");
    let output = Command::new(bakery_top())
        .args(["--collector", &live.url(), "loadtest", "--name", "e2e-sh", "--report"])
        .arg(&svg)
        .args(["--", "sh", "-c", "echo loading; sleep 2; exit 4"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "a failed command fails the run:\n{stdout}");
    // A command that runs past a second shows progress like oha does, without a request rate.
    assert!(stderr.contains("loadtest 1s"), "progress for any command: {stderr}");
    assert!(!stderr.contains("req/s") && !stderr.contains("  oha "), "no request rate for another command: {stderr}");
    assert!(stdout.contains("loading\n"), "the command's own output is shown: {stdout}");
    assert!(stdout.contains("window w-") && stdout.contains("\"e2e-sh\""), "{stdout}");
    assert!(stdout.contains("(failed: exit 4)"), "{stdout}");
    assert!(!stdout.contains("oha:"), "no oha summary for another command: {stdout}");
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
    assert!(live.windows().iter().any(|w| w.name == "e2e-sh" && w.end_ms > 0));
}

#[test]
fn loadtest_without_oha_on_path_says_how_to_install_it() {
    let empty = tempfile::tempdir().unwrap();
    let output = Command::new(bakery_top())
        .env("PATH", empty.path())
        // Nothing listens here: the check comes before any window is opened.
        .args(["--collector", "http://127.0.0.1:9", "loadtest", "--", "oha", "-z", "1s", "http://127.0.0.1:9/"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("oha is not installed"), "{stderr}");
    assert!(stderr.contains("cargo install oha --locked"), "{stderr}");
}

#[test]
fn ctrl_c_in_the_middle_stops_oha_and_still_closes_the_window() {
    let oha = oha();
    let live = LiveCollector::start();
    let server = HttpServer::start();
    let stderr_log = live.work.path().join("bakery-top.log");
    let mut top = Spawn::new("bakery-top loadtest", bakery_top())
        .env("PATH", path_with(oha.parent().unwrap()))
        .args(["--collector", &live.url(), "loadtest", "--name", "e2e-ctrl-c"])
        .args(["--", "oha", "-z", "60s", "-c", "2", &server.url()])
        .output(Output::Lines { stderr_log: Some(stderr_log.clone()) })
        .start()
        .unwrap();
    let stderr = || std::fs::read_to_string(&stderr_log).unwrap_or_default();
    wait_until("two seconds of load", Duration::from_secs(30), || stderr().contains("loadtest 2s / 60s"))
        .unwrap_or_else(|e| panic!("{e}\n{}", stderr()));
    let open = live.windows();
    assert!(open.iter().any(|w| w.name == "e2e-ctrl-c" && w.end_ms == 0), "open while running: {open:?}");

    top.signal(Signal::SIGINT);
    let exit = top.wait_exit(Duration::from_secs(30)).expect("bakery-top exits within 30 s of SIGINT");
    top.wait_for_output_end(Duration::from_secs(5)).unwrap();
    let printed = top.lines().join("\n");
    let stderr = stderr();
    assert_eq!(exit.code(), Some(130), "Ctrl-C exits 130:\n{printed}\n{stderr}");
    assert!(printed.contains("(interrupted by Ctrl-C)"), "{printed}\n{stderr}");
    assert!(printed.contains(" req/s, "), "oha still reports what it did before the Ctrl-C:\n{printed}");

    let windows = live.windows();
    let window = windows.iter().find(|w| w.name == "e2e-ctrl-c").expect("the window is stored");
    assert!(window.end_ms > 0, "the window is closed after Ctrl-C: {window:?}\n{}", live.agent_log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_on_hog_exits_3_when_the_window_flags_a_node() {
    use bakery_collector::{Collector, ServeConfig};
    use bakery_proto::v1::agent_message::Kind;
    use bakery_proto::v1::ingest_client::IngestClient;
    use bakery_proto::v1::{AgentMessage, Batch, Hello};

    use crate::top_commands::hot_sample;

    let dir = tempfile::tempdir().unwrap();
    let mut config = ServeConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().join("data"));
    config.insecure_no_auth = true;
    config.diagnosis.automatic_windows = false;
    config.diagnosis.tick = Duration::from_millis(50);
    let collector = Collector::start(config).await.unwrap();
    let url = format!("http://{}", collector.local_addr());

    // A scripted agent sending a hot sample every 100 ms for as long as the test runs.
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let hello = Hello {
        node_name: "pi-hot".into(),
        interval_ms: 250,
        clock_ticks_per_second: 100,
        stream_id: "e2e-loadtest".into(),
        ..Default::default()
    };
    tx.send(AgentMessage { kind: Some(Kind::Hello(hello)) }).await.unwrap();
    let mut client = IngestClient::connect(url.clone()).await.unwrap();
    let _responses = client.stream(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap();
    let feeder = tokio::spawn(async move {
        for seq in 1u64.. {
            let batch = Batch { seq, new_pods: vec![], samples: vec![hot_sample(bakery_collector::now_ms())] };
            if tx.send(AgentMessage { kind: Some(Kind::Batch(batch)) }).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });

    let run = |fail_on_hog: bool| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            let mut command = Command::new(bakery_top());
            command.args(["--collector", &url, "loadtest", "--name", "hot"]);
            if fail_on_hog {
                command.arg("--fail-on-hog");
            }
            command.args(["--", "sh", "-c", "sleep 3"]).output().unwrap()
        })
    };
    let flagged = run(true).await.unwrap();
    let stdout = String::from_utf8_lossy(&flagged.stdout);
    assert!(stdout.contains("thermal-throttling"), "the window's report names the verdict:\n{stdout}");
    assert_eq!(flagged.status.code(), Some(3), "--fail-on-hog exits 3:\n{stdout}");
    let tolerated = run(false).await.unwrap();
    assert_eq!(tolerated.status.code(), Some(0), "without --fail-on-hog a verdict is only reported");

    feeder.abort();
    collector.stop().await.unwrap();
}
