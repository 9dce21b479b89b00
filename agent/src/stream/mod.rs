//! The stream client: samples into the [`Spool`] and ships it to the collector over one gRPC stream.
//!
//! Samples go into the spool at the current interval; the spool goes to the
//! collector over one long-lived stream (`bakery.v1.Ingest/Stream`),
//! reconnecting with backoff when it breaks.
//!
//! Per stream (the stream contract at the top of
//! `proto/proto/bakery/v1/bakery.proto`): metadata `authorization: Bearer
//! <token>` (the token file is re-read on every connect, so it can be
//! rotated), a Hello, the collector's Welcome, then batches and gaps in
//! sequence order starting after `Welcome.committed_seq` (bakery.proto,
//! contract points 1 and 3). An Ack trims the spool (point 4); a SetInterval
//! changes the sampling interval (point 10). Sampling never waits for the
//! network: while disconnected, samples pile up in the spool (point 8).
//! After an outage, what the spool holds goes as `Replay` messages of
//! several samples each when the collector takes them, while each new
//! sample goes out as soon as it is taken, ahead of the backlog (point 8).
//!
//! A dead collector is noticed within a second: HTTP/2 pings go out after
//! 300 ms without a frame from the collector and the connection is dropped
//! when one is not answered within 700 ms (a killed process, a pulled cable,
//! a frozen node); and a collector that takes batches but stops acknowledging
//! them ([`AckWatch`]: no ack for a few commit intervals while batches are
//! outstanding) is treated as dead too. Reconnects back off with full jitter,
//! capped at 2 s during the first minute of an outage so that an agent is back
//! within 2 s of a restarted collector, and at 5 s after it, so that a backlog
//! reaches a collector back from a long outage within seconds ([`Backoff`]).
//! Each lost stream is logged with its reason.
//!
//! [`run`] is the library entry point; it is generic over a
//! [`SampleSource`] so that tests and benchmarks can run many synthetic
//! agents in one process.
//!
//! This file holds the configuration, [`run`] and the sampling loop;
//! `session` one stream and the reconnect loop, `connect` the connection
//! (token, TLS, keep-alive), `timing` the backoff and ack-watch rules,
//! `outbox` the two queues a stream sends from (live first), `replay` the
//! backlog's lane and its window of unacknowledged bytes.

mod codec;
mod connect;
mod outbox;
mod replay;
mod session;
mod timing;

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::sampler::{Sample, Sampler};
use crate::spool::{Spool, SpoolConfig, SpoolError, SpoolStats};
use crate::wire::{self, PodRefs};

pub use connect::read_token;
pub use replay::{REPLAY_MESSAGE_BYTES, REPLAY_WINDOW_BYTES};
pub use timing::{AckWatch, Backoff};

/// Default `--interval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// Bounds on an interval the collector may ask for with SetInterval: faster
/// than 50 ms costs a Pi more CPU than it tells; slower than an hour makes
/// "stale after 3 intervals" meaningless.
pub const MIN_INTERVAL: Duration = Duration::from_millis(50);
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);

/// USER_HZ, the unit of `/proc/stat`: fixed at 100 for user space on every
/// architecture bakery runs on (include/asm-generic/param.h), whatever the
/// kernel's internal HZ.
pub const USER_HZ: u32 = 100;

/// HTTP/2 keep-alive: a ping after this long without a frame from the
/// collector (acks come every commit interval, so a live stream rarely
/// needs one) ...
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_millis(300);
/// ... and the connection is dropped when the ping is not answered within
/// this: a dead collector is noticed within a second.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_millis(700);

/// The shortest wait for an ack while batches are outstanding (ten of the
/// collector's default 200 ms commit intervals); [`AckWatch`] lengthens it
/// for a collector that commits less often.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// Produces one sample of a node, stamped with the given Unix epoch
/// milliseconds. The [`Sampler`] reads a host root; tests use closures.
pub trait SampleSource: Send {
    fn sample(&mut self, timestamp_ms: i64) -> Sample;

    /// Writes the next sample over `sample`; a source that can reuse its buffers does.
    fn sample_into(&mut self, sample: &mut Sample, timestamp_ms: i64) {
        *sample = self.sample(timestamp_ms);
    }
}

impl SampleSource for Sampler {
    fn sample(&mut self, timestamp_ms: i64) -> Sample {
        Sampler::sample(self, timestamp_ms)
    }

    fn sample_into(&mut self, sample: &mut Sample, timestamp_ms: i64) {
        Sampler::sample_into(self, sample, timestamp_ms);
    }
}

impl<F: FnMut(i64) -> Sample + Send> SampleSource for F {
    fn sample(&mut self, timestamp_ms: i64) -> Sample {
        self(timestamp_ms)
    }
}

/// How the agent proves who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// A bearer token read from this file on every connect.
    TokenFile(PathBuf),
    /// No token (`--insecure-no-auth`): only for a collector that accepts any stream.
    None,
}

/// TLS towards the collector (`https://` URLs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM bundle of the CA that signed the collector's certificate.
    pub ca: PathBuf,
    /// PEM certificate and key of the agent, for mTLS.
    pub client_identity: Option<(PathBuf, PathBuf)>,
}

/// Everything [`run`] needs.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// `http://host:port` or `https://host:port`.
    pub collector: String,
    pub node_name: String,
    /// `/proc/sys/kernel/random/boot_id` of the node.
    pub boot_id: String,
    pub interval: Duration,
    pub auth: Auth,
    pub tls: Option<TlsFiles>,
    pub spool: SpoolConfig,
    pub backoff: Backoff,
    /// Signals this agent samples (the Hello's capabilities).
    pub capabilities: Vec<String>,
    pub clock_ticks_per_second: u32,
    /// On shutdown, how long to wait for the collector to acknowledge what
    /// is still in flight.
    pub flush_timeout: Duration,
    /// How long connecting and waiting for the Welcome may take.
    pub connect_timeout: Duration,
    /// HTTP/2 pings: sent after this long without a frame from the
    /// collector, and the connection dropped when one is not answered
    /// within `keepalive_timeout`.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    /// The shortest wait for an ack while batches are outstanding (see
    /// [`AckWatch`]).
    pub ack_timeout: Duration,
}

impl StreamConfig {
    /// Defaults for everything but where to send and who we are.
    pub fn new(collector: impl Into<String>, node_name: impl Into<String>, auth: Auth) -> Self {
        Self {
            collector: collector.into(),
            node_name: node_name.into(),
            boot_id: String::new(),
            interval: DEFAULT_INTERVAL,
            auth,
            tls: None,
            spool: SpoolConfig::default(),
            backoff: Backoff::default(),
            capabilities: crate::sampler::SIGNALS.iter().map(|s| s.to_string()).collect(),
            clock_ticks_per_second: USER_HZ,
            flush_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            keepalive_interval: DEFAULT_KEEPALIVE_INTERVAL,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            ack_timeout: DEFAULT_ACK_TIMEOUT,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("--collector {url:?}: {reason}")]
    Collector { url: String, reason: String },
    #[error("cannot read {path}: {source}")]
    ReadFile { path: PathBuf, source: std::io::Error },
    #[error("the token file {path}: {reason}")]
    BadTokenFile { path: PathBuf, reason: bakery_signals::token::TokenFileError },
    #[error("the token in {0} is not a valid header value (printable ASCII only)")]
    InvalidToken(PathBuf),
    #[error("TLS setup: {0}")]
    Tls(String),
}

/// What the agent is doing, for logs, tests and benchmarks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamStatus {
    /// A Welcome arrived on the current stream.
    pub connected: bool,
    /// Streams that got as far as a Welcome.
    pub welcomes: u64,
    /// When the latest Welcome arrived.
    pub last_welcome_at: Option<Instant>,
    /// The last number of the backlog the current stream replays as `Replay`
    /// messages (0: none, or a collector that takes none).
    pub replay_through: u64,
    /// The sampling interval in force.
    pub interval: Duration,
    pub spool: SpoolStats,
    /// Why the latest stream or connection attempt ended.
    pub last_error: Option<String>,
    /// Reconnect attempts since the agent started.
    pub reconnects: u64,
    /// The delay before the latest reconnect attempt.
    pub last_retry_delay: Option<Duration>,
}

/// How a [`run`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    pub acked_seq: u64,
    pub last_seq: u64,
    /// Entries the collector never acknowledged: kept on disk with a disk
    /// spool, lost with a memory spool.
    pub unacknowledged: usize,
    pub spool_on_disk: bool,
}

/// Samples with `source` and streams to the collector until `shutdown`
/// completes; then flushes what can be flushed (waiting up to
/// `flush_timeout` for acknowledgements) and returns.
pub async fn run<S: SampleSource>(
    config: StreamConfig,
    source: S,
    shutdown: impl Future<Output = ()>,
) -> Result<RunSummary, StreamError> {
    let (status, _) = watch::channel(StreamStatus::default());
    run_with_status(config, source, shutdown, status).await
}

/// [`run`], publishing its progress to `status`.
pub async fn run_with_status<S: SampleSource>(
    config: StreamConfig,
    source: S,
    shutdown: impl Future<Output = ()>,
    status: watch::Sender<StreamStatus>,
) -> Result<RunSummary, StreamError> {
    validate(&config)?;
    let mut spool = Spool::open(&config.spool)?;
    let mut refs = PodRefs::new();
    let now = crate::now_ms();
    for identity in spool.take_replayed_pods() {
        refs.adopt(&identity, now);
    }
    let last_seq = spool.last_seq();
    status.send_modify(|s| {
        s.interval = config.interval;
        s.spool = spool.stats();
    });
    let shared = Shared { spool: Mutex::new(spool), last_seq: watch::channel(last_seq).0, status };
    let (interval_tx, interval_rx) = watch::channel(config.interval);
    let (stop_tx, stop_rx) = watch::channel(false);

    let sampling = sample_loop(source, refs, &shared, interval_rx, stop_rx.clone());
    let streaming = session::connection_loop(&config, &shared, &interval_tx, stop_rx);
    let stopper = async {
        shutdown.await;
        tracing::info!("shutting down: flushing the spool");
        stop_tx.send_replace(true);
    };
    tokio::join!(sampling, streaming, stopper);

    let mut spool = shared.lock_spool();
    if let Err(error) = spool.sync() {
        tracing::warn!(%error, "could not sync the disk spool at exit");
    }
    let stats = spool.stats();
    if stats.entries > 0 && !spool.is_on_disk() {
        tracing::warn!(
            unacknowledged = stats.entries,
            "exiting with samples the collector has not acknowledged; without --spool-dir they are lost"
        );
    }
    Ok(RunSummary {
        acked_seq: spool.acked_seq(),
        last_seq: spool.last_seq(),
        unacknowledged: stats.entries,
        spool_on_disk: spool.is_on_disk(),
    })
}

/// Fails fast on settings that can never work (a typo in a path or URL),
/// before the agent starts retrying forever.
fn validate(config: &StreamConfig) -> Result<(), StreamError> {
    let bad = |reason: &str| StreamError::Collector { url: config.collector.clone(), reason: reason.to_string() };
    let uri: tonic::codegen::http::Uri = config.collector.parse().map_err(|e| bad(&format!("not a URL: {e}")))?;
    match (uri.scheme_str(), &config.tls) {
        (Some("http"), None) | (Some("https"), Some(_)) => {}
        (Some("https"), None) => {
            return Err(bad("https needs --tls-ca (the CA that signed the collector's certificate)"));
        }
        (Some("http"), Some(_)) => return Err(bad("TLS options were given but the URL is http://; use https://")),
        _ => return Err(bad("expected http://HOST:PORT or https://HOST:PORT")),
    }
    if uri.host().is_none() {
        return Err(bad("no host"));
    }
    if let Auth::TokenFile(path) = &config.auth {
        read_token(path)?;
    }
    if let Some(tls) = &config.tls {
        connect::tls_config(tls)?;
    }
    Ok(())
}

/// State the sampling loop and the stream share (one task, no lock held
/// across an await).
struct Shared {
    spool: Mutex<Spool>,
    /// The last sequence number spooled: wakes the sender.
    last_seq: watch::Sender<u64>,
    status: watch::Sender<StreamStatus>,
}

impl Shared {
    fn lock_spool(&self) -> MutexGuard<'_, Spool> {
        // A panic while holding the lock leaves the spool consistent enough
        // to keep shipping: every mutation completes before it returns.
        self.spool.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish_spool(&self, stats: SpoolStats) {
        self.status.send_if_modified(|s| {
            let changed = s.spool != stats;
            s.spool = stats;
            changed
        });
    }
}

async fn sample_loop<S: SampleSource>(
    mut source: S,
    mut refs: PodRefs,
    shared: &Shared,
    mut interval_rx: watch::Receiver<Duration>,
    mut stop_rx: watch::Receiver<bool>,
) {
    let mut next = Instant::now();
    // One `Sample` and one batch kept across ticks: the sampler and the batch
    // write over the last ones instead of allocating anew.
    let mut sample = Sample::default();
    let mut batch = wire::BatchBuffer::new();
    loop {
        tokio::select! {
            _ = stop_rx.wait_for(|stop| *stop) => return,
            changed = interval_rx.changed() => {
                if changed.is_err() {
                    return;
                }
                // The new interval counts from now: a switch to 250 ms during a
                // load test takes effect at once, not after the old 10 s tick.
                let interval = *interval_rx.borrow_and_update();
                next = Instant::now() + interval;
                continue;
            }
            _ = tokio::time::sleep_until(next) => {}
        }
        source.sample_into(&mut sample, crate::now_ms());
        batch.fill(&sample, &mut refs);
        let payload = batch.encode();
        let (seq, stats) = {
            let mut spool = shared.lock_spool();
            (spool.push_encoded(payload), spool.stats())
        };
        shared.last_seq.send_replace(seq);
        shared.publish_spool(stats);
        let interval = *interval_rx.borrow();
        next += interval;
        let now = Instant::now();
        if next < now {
            // Slow sampling (or a suspended process) skips ticks instead of
            // sampling in a burst to catch up.
            next = now + interval;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_the_trimmed_file_and_an_empty_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\n").unwrap();
        assert_eq!(read_token(&path).unwrap(), "s3cret");
        std::fs::write(&path, "  \n").unwrap();
        assert!(matches!(read_token(&path), Err(StreamError::BadTokenFile { .. })));
        // A rotation file: the first token is sent (the collector accepts both meanwhile).
        std::fs::write(&path, "# rotated\nnew-token\nold-token\n").unwrap();
        assert_eq!(read_token(&path).unwrap(), "new-token");
        assert!(matches!(read_token(&dir.path().join("missing")), Err(StreamError::ReadFile { .. })));
    }

    #[test]
    fn impossible_settings_fail_before_any_retrying() {
        let config = |url: &str| StreamConfig::new(url, "n", Auth::None);
        assert!(validate(&config("http://127.0.0.1:7431")).is_ok());
        for url in ["127.0.0.1:7431", "ftp://x:1", "https://collector:7431", "http://"] {
            assert!(validate(&config(url)).is_err(), "{url}");
        }
        let with_tls = StreamConfig {
            tls: Some(TlsFiles { ca: "/nonexistent/ca.pem".into(), client_identity: None }),
            ..config("https://collector:7431")
        };
        assert!(matches!(validate(&with_tls), Err(StreamError::ReadFile { .. })));
        let missing_token = StreamConfig::new("http://c:1", "n", Auth::TokenFile("/nonexistent/token".into()));
        assert!(matches!(validate(&missing_token), Err(StreamError::ReadFile { .. })));
    }
}
