//! The stream client against a fake collector in the same process.
//!
//! The fake collector is a tonic Ingest server on 127.0.0.1:0
//! ([`fake_collector`]). Acknowledgements trim the spool, a broken
//! stream is resumed without loss or duplicates, SetInterval changes the
//! sampling rate, the token file is re-read on every reconnect, pods are
//! declared once per stream, and a full spool reports its loss as a gap.
//! Dead collectors: one that stops acknowledging is left after the ack
//! timeout, one that goes silent without closing (a frozen proxy in between)
//! is noticed by keep-alive within a second, and reconnects during the first
//! part of an outage stay under the outage cap.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bakery_agent::net::{Interface, NetCounters};
use bakery_agent::pods::{Pod, PodIdentity, QosClass};
use bakery_agent::sampler::Sample;
use bakery_agent::spool::SpoolConfig;
use bakery_agent::stream::{Auth, Backoff, RunSummary, StreamConfig, StreamStatus, TlsFiles, run_with_status};
use bakery_proto::v1 as pb;
use pb::agent_message::Kind;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

#[path = "stream/fake_collector.rs"]
mod fake_collector;

use fake_collector::{FakeCollector, Server, Store};

// ---------------------------------------------------------------- agent side

fn pod(n: u32) -> Pod {
    Pod {
        identity: PodIdentity {
            uid: format!("00000000-0000-4000-8000-00000000000{n}"),
            qos_class: QosClass::BestEffort,
            cgroup_path: format!("/kubepods/besteffort/pod{n}"),
            host_network: false,
        },
        network: Some(NetCounters { rx_bytes: 100 * u64::from(n), ..NetCounters::default() }),
        tcp: None,
        cpu_usage_us: Some(1_000),
        memory_working_set_bytes: Some(2_000),
        process_count: 1,
    }
}

/// A synthetic node with two pods; the timestamp doubles as the sample's identity.
fn synthetic(node: &str) -> impl FnMut(i64) -> Sample + Send + 'static {
    let node = node.to_string();
    let mut counter = 0i64;
    move |_now| {
        counter += 1;
        Sample {
            node_name: node.clone(),
            timestamp_ms: counter,
            interfaces: vec![Interface {
                name: "eth0".into(),
                counters: NetCounters::default(),
                ..Interface::default()
            }],
            pods: vec![pod(1), pod(2)],
            ..Sample::default()
        }
    }
}

fn config(url: &str, interval_ms: u64) -> StreamConfig {
    StreamConfig {
        interval: Duration::from_millis(interval_ms),
        backoff: Backoff {
            base: Duration::from_millis(10),
            cap: Duration::from_millis(100),
            healthy_after: Duration::from_secs(5),
            ..Backoff::default()
        },
        flush_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(5),
        boot_id: "boot-1".into(),
        ..StreamConfig::new(url, "worker-01", Auth::None)
    }
}

struct Agent {
    status: watch::Receiver<StreamStatus>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<RunSummary>,
}

impl Agent {
    fn start(config: StreamConfig, source: impl FnMut(i64) -> Sample + Send + 'static) -> Self {
        let (status_tx, status) = watch::channel(StreamStatus::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            run_with_status(config, source, shutdown, status_tx).await.unwrap()
        });
        Self { status, stop: Some(stop), task }
    }

    async fn stop(mut self) -> RunSummary {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), &mut self.task).await.expect("the agent stops").unwrap()
    }

    fn status(&self) -> StreamStatus {
        self.status.borrow().clone()
    }
}

/// Waits for `condition`, failing the test after `seconds`.
async fn wait_until(what: &str, seconds: u64, condition: impl FnMut() -> bool) {
    if let Err(error) = bakery_lab::wait_until_async(what, Duration::from_secs(seconds), condition).await {
        panic!("{error}");
    }
}

fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], bakery_lab::free_port().expect("a free loopback port")))
}

fn assert_every_seq_once(store: &Store, through: u64) {
    assert!(store.violations.is_empty(), "contract violations: {:?}", store.violations);
    let mut covered: Vec<u64> = store.samples.keys().copied().collect();
    for gap in &store.gaps {
        covered.extend(gap.first_seq..=gap.last_seq);
    }
    covered.sort_unstable();
    let expected: Vec<u64> = (1..=through).collect();
    assert_eq!(covered, expected, "every sequence number exactly once");
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn acknowledgements_trim_the_spool_and_shutdown_flushes() {
    let server = Server::start(FakeCollector::default(), "127.0.0.1:0".parse().unwrap()).await;
    let agent = Agent::start(config(&server.url(), 10), synthetic("worker-01"));
    wait_until("20 samples are committed", 10, || server.collector.with(|s| s.committed >= 20)).await;
    wait_until("the agent saw the acks", 10, || agent.status().spool.acked_seq >= 20).await;
    let status = agent.status();
    assert!(status.connected);
    assert!(status.spool.entries <= 3, "acknowledged entries left the spool: {:?}", status.spool);

    let summary = agent.stop().await;
    assert_eq!(summary.unacknowledged, 0, "shutdown waits for the last acks: {summary:?}");
    assert_eq!(summary.acked_seq, summary.last_seq);
    server.collector.with(|s| {
        assert_every_seq_once(s, summary.last_seq);
        assert_eq!(s.duplicates, 0);
        let hello = s.streams[0].hello.as_ref().unwrap();
        assert_eq!((hello.node_name.as_str(), hello.boot_id.as_str()), ("worker-01", "boot-1"));
        assert_eq!((hello.interval_ms, hello.clock_ticks_per_second, hello.oldest_spooled_seq), (10, 100, 1));
        assert!(hello.capabilities.contains(&"pods".to_string()));
        assert_eq!(hello.agent_version, env!("CARGO_PKG_VERSION"));
        assert_eq!(hello.stream_id.len(), 32);
        assert_eq!(s.streams[0].authorization, None, "--insecure-no-auth sends no token");
    });
}

#[tokio::test]
async fn a_broken_stream_resumes_after_the_committed_seq_without_loss_or_duplicates() {
    let collector = FakeCollector::default();
    // The collector commits, then crashes before acking, three times.
    collector.with(|s| {
        s.behaviour.break_after = Some(7);
        s.behaviour.breaks_left = 3;
        s.behaviour.commit_before_break = true;
    });
    let server = Server::start(collector.clone(), "127.0.0.1:0".parse().unwrap()).await;
    let agent = Agent::start(config(&server.url(), 10), synthetic("worker-01"));
    wait_until("three breaks and 40 more samples", 20, || {
        collector.with(|s| s.streams.len() >= 4 && s.committed >= 40)
    })
    .await;
    let summary = agent.stop().await;
    collector.with(|s| {
        assert_every_seq_once(s, summary.last_seq);
        for (i, stream) in s.streams.iter().enumerate().skip(1) {
            let Some(Kind::Batch(first)) = stream.messages.first() else { panic!("stream {i} sent nothing") };
            assert_eq!(first.seq, 7 * i as u64 + 1, "stream {i} resumes right after Welcome.committed_seq");
        }
    });
    assert_eq!(summary.unacknowledged, 0);
}

#[tokio::test]
async fn batches_the_collector_lost_are_sent_again() {
    let collector = FakeCollector::default();
    // Nothing is committed on the first stream: its batches are lost with it.
    collector.with(|s| {
        s.behaviour.commits = false;
        s.behaviour.break_after = Some(5);
        s.behaviour.breaks_left = 1;
        s.behaviour.commit_before_break = false;
    });
    let server = Server::start(collector.clone(), "127.0.0.1:0".parse().unwrap()).await;
    let agent = Agent::start(config(&server.url(), 10), synthetic("worker-01"));
    wait_until("the first stream broke", 10, || collector.with(|s| s.streams.len() >= 2)).await;
    collector.with(|s| s.behaviour.commits = true);
    wait_until("20 samples are committed", 10, || collector.with(|s| s.committed >= 20)).await;
    let summary = agent.stop().await;
    collector.with(|s| {
        let first_stream: Vec<u64> = s.streams[0]
            .messages
            .iter()
            .filter_map(|k| if let Kind::Batch(b) = k { Some(b.seq) } else { None })
            .collect();
        assert_eq!(first_stream[..4], [1, 2, 3, 4]);
        assert_eq!(s.streams[1].hello.as_ref().unwrap().oldest_spooled_seq, 1, "nothing was acknowledged");
        let Some(Kind::Batch(resent)) = s.streams[1].messages.first() else { panic!("nothing resent") };
        assert_eq!(resent.seq, 1, "the unacknowledged batches go again, from the first");
        assert_every_seq_once(s, summary.last_seq);
    });
}

#[tokio::test]
async fn set_interval_changes_the_sampling_interval_and_the_next_hello_reports_it() {
    let collector = FakeCollector::default();
    collector.with(|s| s.behaviour.set_interval_ms = Some(50));
    let server = Server::start(collector.clone(), "127.0.0.1:0".parse().unwrap()).await;
    // Sampling every 10 minutes: only the collector's SetInterval can make samples flow.
    let agent = Agent::start(config(&server.url(), 600_000), synthetic("worker-01"));
    wait_until("the agent switched to 50 ms", 10, || agent.status().interval == Duration::from_millis(50)).await;
    let started = tokio::time::Instant::now();
    wait_until("10 samples arrived at the new interval", 10, || collector.with(|s| s.committed >= 11)).await;
    assert!(started.elapsed() >= Duration::from_millis(400), "10 intervals of 50 ms take at least ~0.5 s");

    // A new stream reports the interval in force.
    collector.with(|s| {
        s.behaviour.set_interval_ms = None;
        s.behaviour.break_after = Some(1);
        s.behaviour.breaks_left = 1;
    });
    wait_until("the agent reconnected", 10, || {
        collector.with(|s| s.streams.len() >= 2 && s.streams[1].hello.is_some())
    })
    .await;
    collector.with(|s| assert_eq!(s.streams[1].hello.as_ref().unwrap().interval_ms, 50));
    agent.stop().await;
}

#[tokio::test]
async fn the_token_file_is_read_again_on_every_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "first-token\n").unwrap();
    let collector = FakeCollector::default();
    collector.with(|s| s.behaviour.tokens = Some(vec!["first-token".into()]));
    let server = Server::start(collector.clone(), "127.0.0.1:0".parse().unwrap()).await;
    let agent = Agent::start(
        StreamConfig { auth: Auth::TokenFile(token_file.clone()), ..config(&server.url(), 20) },
        synthetic("worker-01"),
    );
    wait_until("connected with the first token", 10, || collector.with(|s| s.committed >= 3)).await;

    // Rotation: the collector accepts only the new token, the file changes,
    // and the stream breaks.
    collector.with(|s| {
        s.behaviour.tokens = Some(vec!["second-token".into()]);
        s.behaviour.break_after = Some(1);
        s.behaviour.breaks_left = 1;
    });
    wait_until("the old token was refused", 10, || collector.with(|s| s.refused >= 1)).await;
    wait_until("the agent explains the refusal", 10, || {
        agent.status().last_error.unwrap_or_default().contains("refused the token (UNAUTHENTICATED")
    })
    .await;
    std::fs::write(&token_file, "second-token").unwrap();
    wait_until("connected with the new token", 10, || {
        collector.with(|s| {
            s.streams.last().and_then(|st| st.authorization.clone()).as_deref() == Some("Bearer second-token")
        })
    })
    .await;
    let before = collector.with(|s| s.committed);
    wait_until("samples flow again", 10, || collector.with(|s| s.committed >= before + 3)).await;
    let summary = agent.stop().await;
    collector.with(|s| {
        assert_eq!(s.streams[0].authorization.as_deref(), Some("Bearer first-token"));
        assert_every_seq_once(s, summary.last_seq);
    });
}

#[tokio::test]
async fn pods_are_declared_once_per_stream_and_again_on_a_new_one() {
    let collector = FakeCollector::default();
    collector.with(|s| {
        s.behaviour.break_after = Some(4);
        s.behaviour.breaks_left = 1;
    });
    let server = Server::start(collector.clone(), "127.0.0.1:0".parse().unwrap()).await;
    let agent = Agent::start(config(&server.url(), 10), synthetic("worker-01"));
    wait_until("two streams carried batches", 10, || {
        collector.with(|s| s.streams.len() >= 2 && s.streams[1].messages.len() >= 3)
    })
    .await;
    agent.stop().await;
    collector.with(|s| {
        assert!(s.violations.is_empty(), "{:?}", s.violations);
        for stream in &s.streams[..2] {
            let declared: Vec<usize> = stream
                .messages
                .iter()
                .filter_map(|k| if let Kind::Batch(b) = k { Some(b.new_pods.len()) } else { None })
                .collect();
            assert_eq!(declared[0], 2, "the first batch of a stream declares both pods");
            assert!(declared[1..].iter().all(|n| *n == 0), "later batches do not repeat them: {declared:?}");
        }
    });
}

#[tokio::test]
async fn a_full_spool_reports_exactly_the_dropped_range_as_a_gap() {
    let addr = free_addr();
    // Samples are ~200 bytes encoded: 4 KiB hold about 15.
    let limit = 4096;
    let agent = Agent::start(
        StreamConfig {
            spool: SpoolConfig { max_bytes: limit, ..SpoolConfig::default() },
            ..config(&format!("http://{addr}"), 5)
        },
        synthetic("worker-01"),
    );
    wait_until("the spool overflowed a few times", 10, || agent.status().spool.overflow_dropped >= 30).await;
    let collector = FakeCollector::default();
    let _server = Server::start(collector.clone(), addr).await;
    wait_until("the agent caught up", 10, || {
        let status = agent.status();
        status.connected && status.spool.acked_seq + 2 >= status.spool.next_seq
    })
    .await;
    let summary = agent.stop().await;
    collector.with(|s| {
        assert_every_seq_once(s, summary.last_seq);
        let gap = &s.gaps[0];
        assert_eq!(gap.first_seq, 1);
        let dropped = gap.last_seq;
        assert_eq!(gap.reason, format!("spool overflow: {dropped} samples dropped, limit {limit} bytes"));
        // The samples right after the gap are the oldest kept ones, intact.
        assert_eq!(s.samples.get(&(dropped + 1)), Some(&(dropped as i64 + 1)));
    });
}

#[tokio::test]
async fn a_disk_spool_carries_unacknowledged_samples_across_an_agent_restart() {
    let dir = tempfile::tempdir().unwrap();
    let collector = FakeCollector::default();
    collector.with(|s| s.behaviour.commits = false);
    let server = Server::start(collector.clone(), "127.0.0.1:0".parse().unwrap()).await;
    let with_disk = |flush_ms| StreamConfig {
        spool: SpoolConfig { dir: Some(dir.path().to_path_buf()), ..SpoolConfig::default() },
        flush_timeout: Duration::from_millis(flush_ms),
        ..config(&server.url(), 10)
    };
    let agent = Agent::start(with_disk(50), synthetic("worker-01"));
    wait_until("10 samples were sent", 10, || {
        collector.with(|s| s.streams.iter().map(|st| st.messages.len()).sum::<usize>() >= 10)
    })
    .await;
    let first_run = agent.stop().await;
    assert!(first_run.spool_on_disk && first_run.unacknowledged >= 10, "{first_run:?}");
    assert!(spool_files(dir.path()) > 0);

    collector.with(|s| s.behaviour.commits = true);
    let mut second_source = synthetic("worker-01");
    // The second run's samples are told apart by their timestamps.
    let agent = Agent::start(with_disk(5000), move |now| {
        let mut sample = second_source(now);
        sample.timestamp_ms += 1_000_000;
        sample
    });
    wait_until("the second run's samples arrive too", 10, || {
        collector.with(|s| s.samples.values().filter(|t| **t > 1_000_000).count() >= 5)
    })
    .await;
    let second_run = agent.stop().await;
    collector.with(|s| {
        assert_every_seq_once(s, second_run.last_seq);
        assert_eq!(s.samples[&1], 1, "the first run's first sample came from the disk spool");
        assert_eq!(s.samples[&(first_run.last_seq + 1)], 1_000_001, "numbering continued after the restart");
        assert_eq!(s.streams.last().unwrap().hello.as_ref().unwrap().oldest_spooled_seq, 1);
    });
    assert_eq!(second_run.unacknowledged, 0);
}

fn spool_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "seg"))
        .count()
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, in PEM.
struct Pki {
    ca: String,
    server: (String, String),
    client: (String, String),
}

fn make_pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names).unwrap().signed_by(&key, &ca).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    Pki { ca: ca.pem(), server: leaf(vec!["127.0.0.1".into()]), client: leaf(vec!["worker-01.agent".into()]) }
}

#[tokio::test]
async fn mutual_tls_streams_with_a_client_certificate_and_fails_without_one() {
    let pki = make_pki();
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(&pki.server.0, &pki.server.1))
        .client_ca_root(Certificate::from_pem(&pki.ca));
    let collector = FakeCollector::default();
    let server = Server::start_with_tls(collector.clone(), "127.0.0.1:0".parse().unwrap(), Some(tls)).await;
    let url = format!("https://{}", server.addr);
    let ca = file("ca.pem", &pki.ca);

    let without_identity = Agent::start(
        StreamConfig { tls: Some(TlsFiles { ca: ca.clone(), client_identity: None }), ..config(&url, 10) },
        synthetic("a"),
    );
    wait_until("the agent without a certificate failed", 10, || without_identity.status().last_error.is_some()).await;
    without_identity.stop().await;
    assert_eq!(collector.with(|s| s.streams.len()), 0, "mTLS let no stream through without a client certificate");

    let identity = Some((file("agent.pem", &pki.client.0), file("agent.key", &pki.client.1)));
    let agent = Agent::start(
        StreamConfig { tls: Some(TlsFiles { ca, client_identity: identity }), ..config(&url, 10) },
        synthetic("a"),
    );
    wait_until("samples arrive over mTLS", 10, || collector.with(|s| s.committed >= 5)).await;
    let summary = agent.stop().await;
    collector.with(|s| assert_every_seq_once(s, summary.last_seq));
}

// ---------------------------------------------------------------- dead collectors

#[tokio::test]
async fn a_collector_that_stops_acknowledging_is_left_for_a_new_stream_after_the_ack_timeout() {
    let collector = FakeCollector::default();
    let server = Server::start(collector.clone(), "127.0.0.1:0".parse().unwrap()).await;
    let ack_timeout = Duration::from_millis(300);
    let agent = Agent::start(StreamConfig { ack_timeout, ..config(&server.url(), 10) }, synthetic("worker-01"));
    wait_until("acks flow", 10, || collector.with(|s| s.committed >= 5)).await;
    // The collector keeps reading but stops committing (a hung committer, a full disk).
    let stalled_at = tokio::time::Instant::now();
    collector.with(|s| s.behaviour.commits = false);
    wait_until("the agent gave up on the stream", 10, || collector.with(|s| s.streams.len() >= 2)).await;
    let gave_up = collector.with(|s| s.streams[1].opened_at.duration_since(stalled_at));
    // The wait began with the first batch left unacknowledged, which may have been sent up to
    // one sampling interval (10 ms) before the stall.
    assert!(gave_up + Duration::from_millis(20) >= ack_timeout, "not before the timeout: {gave_up:?}");
    assert!(gave_up < ack_timeout + Duration::from_secs(1), "soon after it: {gave_up:?}");
    let reason = agent.status().last_error.unwrap_or_default();
    assert!(reason.contains("no ack for 300 ms"), "the agent says why: {reason}");
    // Still no acks: the next stream waits twice as long before giving up.
    wait_until("a third stream", 10, || collector.with(|s| s.streams.len() >= 3)).await;
    let (second, third) = collector.with(|s| (s.streams[1].opened_at, s.streams[2].opened_at));
    assert!(third.duration_since(second) >= 2 * ack_timeout, "backed off: {:?}", third.duration_since(second));
    // Commits come back: nothing was lost or stored twice.
    collector.with(|s| s.behaviour.commits = true);
    let before = collector.with(|s| s.committed);
    wait_until("samples flow again", 10, || collector.with(|s| s.committed >= before + 5)).await;
    let summary = agent.stop().await;
    collector.with(|s| assert_every_seq_once(s, summary.last_seq));
    assert_eq!(summary.unacknowledged, 0);
}

/// A TCP proxy that can freeze the connections it carries: they stay open but nothing goes
/// through any more, as with a collector whose node froze or lost power (no FIN, no RST).
/// Connections accepted after a freeze go through.
struct FreezingProxy {
    addr: SocketAddr,
    frozen_below: Arc<std::sync::atomic::AtomicUsize>,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    task: JoinHandle<()>,
}

impl FreezingProxy {
    async fn start(upstream: SocketAddr) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let frozen_below = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (frozen, count) = (frozen_below.clone(), accepted.clone());
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let id = count.fetch_add(1, Ordering::SeqCst);
                let Ok(outbound) = tokio::net::TcpStream::connect(upstream).await else { continue };
                let (in_read, in_write) = inbound.into_split();
                let (out_read, out_write) = outbound.into_split();
                tokio::spawn(pipe(in_read, out_write, id, frozen.clone()));
                tokio::spawn(pipe(out_read, in_write, id, frozen.clone()));
            }
        });
        Self { addr, frozen_below, accepted, task }
    }

    /// Freezes every connection accepted so far.
    fn freeze(&self) {
        use std::sync::atomic::Ordering;
        self.frozen_below.store(self.accepted.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for FreezingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies until the connection is frozen; then reads and drops everything, holding both ends
/// open, so neither side learns anything from the socket.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    id: usize,
    frozen_below: Arc<std::sync::atomic::AtomicUsize>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let Ok(n) = from.read(&mut buffer).await else { return };
        if n == 0 {
            let _ = to.shutdown().await;
            return;
        }
        if id < frozen_below.load(std::sync::atomic::Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn a_collector_that_goes_silent_without_closing_is_noticed_within_a_second() {
    let collector = FakeCollector::default();
    let server = Server::start(collector.clone(), "127.0.0.1:0".parse().unwrap()).await;
    let proxy = FreezingProxy::start(server.addr).await;
    // Only keep-alive can tell here: the ack timeout is far away.
    let agent = Agent::start(
        StreamConfig { ack_timeout: Duration::from_secs(60), ..config(&proxy.url(), 50) },
        synthetic("worker-01"),
    );
    wait_until("acks flow", 10, || collector.with(|s| s.committed >= 5)).await;
    let reconnects = agent.status().reconnects;
    let frozen_at = tokio::time::Instant::now();
    proxy.freeze();
    // A counter, not `connected`: the agent may be streaming again before a poll sees it down.
    wait_until("the agent noticed", 10, || agent.status().reconnects > reconnects).await;
    let noticed = frozen_at.elapsed();
    // 300 ms without a frame, then a ping unanswered for 700 ms: about a second.
    assert!(noticed <= Duration::from_millis(1_500), "noticed after {noticed:?}");
    let reason = agent.status().last_error.unwrap_or_default();
    wait_until("a new stream through the proxy", 10, || collector.with(|s| s.streams.len() >= 2)).await;
    let before = collector.with(|s| s.committed);
    wait_until("samples flow again", 10, || collector.with(|s| s.committed >= before + 5)).await;
    let summary = agent.stop().await;
    collector.with(|s| assert_every_seq_once(s, summary.last_seq));
    eprintln!("a silent collector was noticed after {noticed:?}: {reason}");
}

#[tokio::test]
async fn reconnects_in_the_first_part_of_an_outage_stay_under_the_outage_cap() {
    // Nothing listens: every attempt fails at once. With a 150 ms outage cap for the first
    // second, then the ordinary 2 s cap, the delays show which part of the outage they are in.
    let addr = free_addr();
    let backoff = Backoff {
        base: Duration::from_millis(20),
        cap: Duration::from_secs(2),
        healthy_after: Duration::from_secs(5),
        outage_cap: Duration::from_millis(150),
        outage_cap_for: Duration::from_secs(1),
    };
    let agent = Agent::start(StreamConfig { backoff, ..config(&format!("http://{addr}"), 1000) }, synthetic("w"));
    let started = tokio::time::Instant::now();
    let mut status = agent.status.clone();
    let mut early = Vec::new();
    let mut late = Vec::new();
    let deadline = started + Duration::from_secs(20);
    while late.len() < 4 {
        tokio::time::timeout_at(deadline, status.changed()).await.expect("reconnect attempts").unwrap();
        let Some(delay) = status.borrow_and_update().last_retry_delay else { continue };
        // Attempts are measured from the agent's start (its outage began then), give or take
        // a few ms: only clear cases count.
        match started.elapsed() {
            age if age < Duration::from_millis(900) => early.push(delay),
            age if age > Duration::from_millis(1_100) => late.push(delay),
            _ => {}
        }
    }
    assert!(early.len() >= 5, "many quick attempts at first: {early:?}");
    assert!(early.iter().all(|d| *d <= Duration::from_millis(150)), "capped at first: {early:?}");
    assert!(late.iter().any(|d| *d > Duration::from_millis(150)), "the ordinary cap afterwards: {late:?}");
    agent.stop().await;
}
