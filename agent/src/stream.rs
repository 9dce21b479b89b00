//! The stream client: samples into the [`Spool`] at the current interval and
//! ships the spool to the collector over one long-lived gRPC stream
//! (`bakery.v1.Ingest/Stream`), reconnecting with backoff when it breaks.
//!
//! Per stream (see the stream contract): metadata `authorization: Bearer
//! <token>` (the token file is re-read on every connect, so it can be
//! rotated), a Hello, the collector's Welcome, then batches and gaps in
//! sequence order starting after `Welcome.committed_seq`. An Ack trims the
//! spool; a SetInterval changes the sampling interval. Sampling never waits
//! for the network: while disconnected, samples pile up in the spool.
//!
//! A dead collector is noticed within a second: HTTP/2 pings go out after
//! 300 ms without a frame from the collector and the connection is dropped
//! when one is not answered within 700 ms (a killed process, a pulled cable,
//! a frozen node); and a collector that takes batches but stops acknowledging
//! them ([`AckWatch`]: no ack for a few commit intervals while batches are
//! outstanding) is treated as dead too. Reconnects back off with full jitter,
//! capped at 2 s during the first minute of an outage so that an agent is back
//! within 2 s of a restarted collector ([`Backoff`]). Each lost stream is
//! logged with its reason.
//!
//! [`run`] is the library entry point; it is generic over a
//! [`SampleSource`] so that tests and benchmarks can run many synthetic
//! agents in one process.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bakery_proto::v1 as pb;
use bakery_proto::v1::ingest_client::IngestClient;
use pb::agent_message::Kind;
use pb::collector_message::Kind as CollectorKind;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::sampler::{Sample, Sampler};
use crate::spool::{Spool, SpoolConfig, SpoolError, SpoolStats};
use crate::wire::{self, DeclaredPods, PodRefs};

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

/// A backlog at least this long (in samples) is logged when delivered.
const BACKLOG_WORTH_LOGGING: u64 = 10;

/// Messages queued for the HTTP/2 stream at most; beyond that the sender
/// waits, so a slow collector slows the sending (the spool holds the rest).
const OUTBOX: usize = 32;

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
}

impl SampleSource for Sampler {
    fn sample(&mut self, timestamp_ms: i64) -> Sample {
        Sampler::sample(self, timestamp_ms)
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

/// Reconnect timing: exponential backoff with full jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Upper bound of the first delay.
    pub base: Duration,
    /// The delay never exceeds this.
    pub cap: Duration,
    /// A stream that stayed up this long resets the backoff (so does one that
    /// got an ack: the collector was working).
    pub healthy_after: Duration,
    /// During the first `outage_cap_for` of an outage the delay never exceeds
    /// this: a collector restarting (a crash, an upgrade) is back within
    /// seconds, and every agent should be streaming again within 2 s of it.
    pub outage_cap: Duration,
    pub outage_cap_for: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(250),
            cap: Duration::from_secs(30),
            healthy_after: Duration::from_secs(30),
            outage_cap: Duration::from_secs(2),
            outage_cap_for: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The delay before reconnect attempt `attempt` (0 for the first after a
    /// loss) in an outage that began `outage_age` ago: uniform in
    /// `[0, ceiling]` ("full jitter", AWS Architecture Blog, "Exponential
    /// Backoff And Jitter"). Drawing from the whole range spreads 200 agents
    /// that lost the same collector over the window instead of having them
    /// return in lockstep.
    pub fn delay(&self, attempt: u32, outage_age: Duration, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(attempt, outage_age);
        Duration::from_nanos(rng.random_range(0..=ceiling.as_nanos().min(u64::MAX as u128) as u64))
    }

    /// `min(cap, base * 2^attempt)`, and at most `outage_cap` during the
    /// first `outage_cap_for` of the outage.
    pub fn ceiling(&self, attempt: u32, outage_age: Duration) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        let cap = if outage_age < self.outage_cap_for { self.cap.min(self.outage_cap) } else { self.cap };
        self.base.saturating_mul(factor).min(cap)
    }
}

/// Watches for acks while batches are outstanding: a collector that takes
/// batches and stops acknowledging them (a hung committer, a stuck disk) is
/// treated as dead and the stream reconnected, instead of waiting on it for
/// ever. Pure over the instants it is given.
///
/// The timeout is the longer of the configured floor and 4x the slowest
/// recent wait for an ack, which follows the collector's commit interval (an
/// ack comes after each commit): 2 s for the default 200 ms, 20 s for a
/// collector committing every 5 s. Until a first ack has shown how fast the
/// collector commits, it is at least 10 s. While a collector takes batches
/// and never acks (a full disk: it keeps serving but commits nothing), each
/// stream that ends this way doubles the timeout, up to 10 minutes, so
/// reconnecting does not become a loop; an ack resets it.
#[derive(Debug, Clone)]
pub struct AckWatch {
    floor: Duration,
    /// The slowest recent wait for an ack, decaying by a tenth per ack; none
    /// before the first ack.
    slowest: Option<Duration>,
    /// Since when an ack is awaited: the first send after the last ack.
    waiting_since: Option<Instant>,
    /// Streams in a row that ended on this timeout without an ack.
    strikes: u32,
}

/// The [`AckWatch`] timeout before any ack was seen.
const UNLEARNED_ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest [`AckWatch`] timeout.
const ACK_TIMEOUT_CEILING: Duration = Duration::from_secs(600);

impl AckWatch {
    pub fn new(floor: Duration) -> Self {
        Self { floor, slowest: None, waiting_since: None, strikes: 0 }
    }

    /// A new stream: nothing sent on it yet.
    pub fn new_stream(&mut self) {
        self.waiting_since = None;
    }

    /// A batch or gap went out at `now`.
    pub fn sent(&mut self, now: Instant) {
        self.waiting_since.get_or_insert(now);
    }

    /// An ack arrived at `now`; `outstanding` says whether sent batches are
    /// still unacknowledged.
    pub fn acked(&mut self, now: Instant, outstanding: bool) {
        if let Some(since) = self.waiting_since {
            let waited = now.saturating_duration_since(since);
            self.slowest = Some(waited.max(self.slowest.unwrap_or_default().mul_f64(0.9)));
        }
        self.waiting_since = outstanding.then_some(now);
        self.strikes = 0;
    }

    /// How long to wait for an ack now.
    pub fn timeout(&self) -> Duration {
        let base = match self.slowest {
            Some(slowest) => self.floor.max(slowest.saturating_mul(4)),
            None => self.floor.max(UNLEARNED_ACK_TIMEOUT),
        };
        base.saturating_mul(1u32.checked_shl(self.strikes.min(16)).unwrap_or(u32::MAX))
            .min(ACK_TIMEOUT_CEILING.max(self.floor))
    }

    /// When the collector counts as dead if no ack comes (none while nothing
    /// is outstanding).
    pub fn deadline(&self) -> Option<Instant> {
        self.waiting_since.map(|since| since + self.timeout())
    }

    /// The deadline passed: the stream is given up.
    pub fn expired(&mut self) {
        self.strikes = self.strikes.saturating_add(1);
        self.waiting_since = None;
    }
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
    let streaming = connection_loop(&config, &shared, &interval_tx, stop_rx);
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
        tls_config(tls)?;
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
        let sample = source.sample(crate::now_ms());
        let batch = wire::batch(std::slice::from_ref(&sample), &mut refs);
        let (seq, stats) = {
            let mut spool = shared.lock_spool();
            (spool.push(batch), spool.stats())
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

/// How a stream ended.
enum SessionEnd {
    /// Shutdown was asked for and the flush is over.
    Shutdown,
    /// The stream broke (or never opened).
    Lost {
        reason: String,
        /// When a Welcome arrived on it, if one did: the outage begins with its loss.
        welcomed_at: Option<Instant>,
        /// An ack arrived on it: the collector was working.
        acked: bool,
    },
}

async fn connection_loop(
    config: &StreamConfig,
    shared: &Shared,
    interval_tx: &watch::Sender<Duration>,
    mut stop_rx: watch::Receiver<bool>,
) {
    let mut rng = StdRng::from_os_rng();
    let mut attempt: u32 = 0;
    let mut acks = AckWatch::new(config.ack_timeout);
    // The agent starting counts as the start of an outage: the collector may
    // be starting too.
    let mut outage_since = Instant::now();
    loop {
        if *stop_rx.borrow() {
            return;
        }
        let reason = match session(config, shared, interval_tx, &mut acks, stop_rx.clone()).await {
            SessionEnd::Shutdown => return,
            SessionEnd::Lost { reason, welcomed_at, acked } => {
                if let Some(welcomed_at) = welcomed_at {
                    let now = Instant::now();
                    let up_for = now.saturating_duration_since(welcomed_at);
                    if acked || up_for >= config.backoff.healthy_after {
                        attempt = 0;
                    }
                    outage_since = now;
                    tracing::warn!(
                        collector = %config.collector,
                        up_for_ms = up_for.as_millis() as u64,
                        %reason,
                        "lost the stream to the collector; reconnecting (samples stay in the spool)"
                    );
                }
                reason
            }
        };
        let outage = outage_since.elapsed();
        let delay = config.backoff.delay(attempt, outage, &mut rng);
        attempt = attempt.saturating_add(1);
        // A long outage logs its first attempts and then every tenth, not
        // one line per retry for hours.
        if attempt <= 3 || attempt.is_multiple_of(10) {
            tracing::warn!(
                collector = %config.collector,
                retry_in_ms = delay.as_millis() as u64,
                attempt,
                outage_ms = outage.as_millis() as u64,
                %reason,
                "no stream to the collector; samples stay in the spool"
            );
        } else {
            tracing::debug!(retry_in_ms = delay.as_millis() as u64, attempt, %reason, "reconnect failed");
        }
        shared.status.send_modify(|s| {
            s.connected = false;
            s.last_error = Some(reason);
            s.reconnects += 1;
            s.last_retry_delay = Some(delay);
        });
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop_rx.wait_for(|stop| *stop) => return,
        }
    }
}

/// Reads the bearer token: the file's first token line (`bakery_signals::token`), so a file that
/// lists a new and an old token during a rotation works for the agent as it does for the
/// collector, and a projected service-account token (one line) is the whole file.
pub fn read_token(path: &Path) -> Result<String, StreamError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| StreamError::ReadFile { path: path.to_path_buf(), source })?;
    let token = bakery_signals::token::client_token(&text)
        .map_err(|reason| StreamError::BadTokenFile { path: path.to_path_buf(), reason })?;
    Ok(token.to_string())
}

fn read_file(path: &Path) -> Result<Vec<u8>, StreamError> {
    std::fs::read(path).map_err(|source| StreamError::ReadFile { path: path.to_path_buf(), source })
}

fn tls_config(tls: &TlsFiles) -> Result<ClientTlsConfig, StreamError> {
    let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read_file(&tls.ca)?));
    if let Some((cert, key)) = &tls.client_identity {
        config = config.identity(Identity::from_pem(read_file(cert)?, read_file(key)?));
    }
    Ok(config)
}

/// A fresh connection; certificates are re-read each time, like the token.
async fn connect(config: &StreamConfig) -> Result<Channel, String> {
    let mut endpoint = Endpoint::from_shared(config.collector.clone())
        .map_err(|e| e.to_string())?
        .connect_timeout(config.connect_timeout)
        .tcp_keepalive(Some(Duration::from_secs(30)))
        // HTTP/2 pings find a collector that vanished without a FIN (a
        // killed node, power loss, a cable pulled) within a second, even
        // when nothing is sent. hyper pings only after `interval` without a
        // frame from the collector, so a live stream (an ack per commit)
        // costs next to nothing.
        .http2_keep_alive_interval(config.keepalive_interval)
        .keep_alive_timeout(config.keepalive_timeout)
        .keep_alive_while_idle(true);
    if let Some(tls) = &config.tls {
        let tls = tls_config(tls).map_err(|e| e.to_string())?;
        endpoint = endpoint.tls_config(tls).map_err(|e| format!("TLS: {e}"))?;
    }
    endpoint.connect().await.map_err(|e| format!("cannot connect to {}: {}", config.collector, error_chain(&e)))
}

/// An error with its causes, which tonic keeps in `source()`.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // hyper and tonic repeat a cause's text in its wrapper.
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn describe_status(status: &tonic::Status) -> String {
    match status.code() {
        tonic::Code::Unauthenticated => format!(
            "the collector refused the token (UNAUTHENTICATED: {}); check --token-file against the collector's token file",
            status.message()
        ),
        code => {
            // The transport's cause ("keep-alive timed out", "connection reset") is in the
            // source chain, not in the message.
            let mut text = format!("{code:?}: {}", status.message());
            let mut source = std::error::Error::source(status);
            while let Some(cause) = source {
                let cause_text = cause.to_string();
                if !text.contains(&cause_text) {
                    text.push_str(": ");
                    text.push_str(&cause_text);
                }
                source = cause.source();
            }
            text
        }
    }
}

fn stream_id(rng: &mut impl Rng) -> String {
    format!("{:016x}{:016x}", rng.random::<u64>(), rng.random::<u64>())
}

/// One stream, from connecting to its end.
async fn session(
    config: &StreamConfig,
    shared: &Shared,
    interval_tx: &watch::Sender<Duration>,
    acks: &mut AckWatch,
    mut stop_rx: watch::Receiver<bool>,
) -> SessionEnd {
    let lost = |reason: String| SessionEnd::Lost { reason, welcomed_at: None, acked: false };
    let mut request_metadata = tonic::metadata::MetadataMap::new();
    if let Auth::TokenFile(path) = &config.auth {
        let token = match read_token(path) {
            Ok(token) => token,
            Err(error) => return lost(error.to_string()),
        };
        match format!("Bearer {token}").parse() {
            Ok(value) => {
                request_metadata.insert("authorization", value);
            }
            Err(_) => return lost(StreamError::InvalidToken(path.clone()).to_string()),
        }
    }
    let channel = tokio::select! {
        channel = connect(config) => match channel {
            Ok(channel) => channel,
            Err(reason) => return lost(reason),
        },
        _ = stop_rx.wait_for(|stop| *stop) => return SessionEnd::Shutdown,
    };
    let mut client = IngestClient::new(channel);
    let (outbox, outbox_rx) = mpsc::channel::<pb::AgentMessage>(OUTBOX);
    let hello = pb::Hello {
        node_name: config.node_name.clone(),
        boot_id: config.boot_id.clone(),
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        capabilities: config.capabilities.clone(),
        interval_ms: u32::try_from(interval_tx.borrow().as_millis()).unwrap_or(u32::MAX),
        clock_ticks_per_second: config.clock_ticks_per_second,
        oldest_spooled_seq: shared.lock_spool().oldest_seq(),
        stream_id: stream_id(&mut rand::rng()),
    };
    // The outbox is empty, so this cannot wait.
    if outbox.send(pb::AgentMessage { kind: Some(Kind::Hello(hello)) }).await.is_err() {
        return lost("the request stream closed before the Hello".to_string());
    }
    let mut request = tonic::Request::new(ReceiverStream::new(outbox_rx));
    *request.metadata_mut() = request_metadata;

    let welcome = async {
        let mut inbound = client.stream(request).await.map_err(|s| describe_status(&s))?.into_inner();
        match inbound.next().await {
            Some(Ok(pb::CollectorMessage { kind: Some(CollectorKind::Welcome(welcome)) })) => Ok((inbound, welcome)),
            Some(Ok(other)) => Err(format!("protocol error: expected a Welcome first, got {other:?}")),
            Some(Err(status)) => Err(describe_status(&status)),
            None => Err("the collector closed the stream before its Welcome".to_string()),
        }
    };
    let (mut inbound, welcome) = tokio::select! {
        result = tokio::time::timeout(config.connect_timeout, welcome) => match result {
            Ok(Ok(pair)) => pair,
            Ok(Err(reason)) => return lost(reason),
            Err(_) => return lost(format!("no Welcome within {:?}", config.connect_timeout)),
        },
        _ = stop_rx.wait_for(|stop| *stop) => return SessionEnd::Shutdown,
    };
    let welcomed_at = Instant::now();
    let committed = welcome.committed_seq;
    let stats = {
        let mut spool = shared.lock_spool();
        spool.welcome(committed);
        spool.stats()
    };
    tracing::info!(
        collector = %config.collector,
        committed_seq = committed,
        resend_from = committed + 1,
        last_seq = stats.next_seq - 1,
        collector_version = %welcome.collector_version,
        "stream open"
    );
    shared.status.send_modify(|s| {
        s.connected = true;
        s.welcomes += 1;
        s.last_welcome_at = Some(welcomed_at);
        s.spool = stats;
    });

    let mut sent_through = committed;
    // A backlog worth mentioning (after an outage) is logged when delivered,
    // so an operator (and the acceptance tests) can see the catch-up end.
    let backlog_through = stats.next_seq - 1;
    let backlog = backlog_through.saturating_sub(committed);
    let mut backlog_pending = backlog >= BACKLOG_WORTH_LOGGING;
    let mut declared = DeclaredPods::new();
    let mut new_data = shared.last_seq.subscribe();
    let mut flush_deadline: Option<Instant> = None;
    acks.new_stream();
    let mut acked = false;
    let ended = |reason: String, acked: bool| SessionEnd::Lost { reason, welcomed_at: Some(welcomed_at), acked };
    loop {
        new_data.borrow_and_update();
        let (pending, drained) = {
            let spool = shared.lock_spool();
            (spool.last_seq() > sent_through, spool.is_empty())
        };
        if flush_deadline.is_some() && drained {
            tracing::info!("every sample was acknowledged; closing the stream");
            close_gracefully(outbox, inbound, shared, interval_tx, sent_through).await;
            return SessionEnd::Shutdown;
        }
        let stopping = flush_deadline.is_some();
        tokio::select! {
            biased;
            message = inbound.next() => match message {
                Some(Ok(message)) => {
                    let is_ack = matches!(message.kind, Some(CollectorKind::Ack(_)));
                    handle_collector_message(message, shared, interval_tx, &mut sent_through);
                    if is_ack {
                        acked = true;
                        let outstanding = shared.lock_spool().acked_seq() < sent_through;
                        acks.acked(Instant::now(), outstanding);
                    }
                    if backlog_pending && shared.lock_spool().acked_seq() >= backlog_through {
                        backlog_pending = false;
                        tracing::info!(
                            samples = backlog,
                            through_seq = backlog_through,
                            seconds = welcomed_at.elapsed().as_secs_f64(),
                            "backlog delivered: the collector acknowledged everything spooled before this stream"
                        );
                    }
                }
                Some(Err(status)) => return ended(describe_status(&status), acked),
                None => return ended("the collector closed the stream".to_string(), acked),
            },
            permit = outbox.reserve(), if pending => {
                let Ok(permit) = permit else {
                    return ended("the request stream closed".to_string(), acked);
                };
                let next = shared.lock_spool().next_after(sent_through);
                let Some(mut kind) = next else {
                    // Nothing is held past `sent_through` (acknowledged
                    // meanwhile): there is nothing to send up to the last number.
                    sent_through = shared.lock_spool().last_seq();
                    continue;
                };
                match &mut kind {
                    Kind::Batch(batch) => {
                        declared.strip_declared(batch);
                        sent_through = batch.seq;
                    }
                    Kind::Gap(gap) => sent_through = gap.last_seq,
                    Kind::Hello(_) => {}
                }
                permit.send(pb::AgentMessage { kind: Some(kind) });
                acks.sent(Instant::now());
            },
            changed = new_data.changed(), if !pending => {
                if changed.is_err() {
                    return SessionEnd::Shutdown;
                }
            },
            _ = stop_rx.wait_for(|stop| *stop), if !stopping => {
                flush_deadline = Some(Instant::now() + config.flush_timeout);
            },
            _ = sleep_until_or_never(flush_deadline) => {
                let left = shared.lock_spool().stats().entries;
                tracing::warn!(unacknowledged = left, "flush timed out; closing the stream");
                return SessionEnd::Shutdown;
            },
            _ = sleep_until_or_never(acks.deadline()), if !stopping => {
                let waited = acks.timeout();
                acks.expired();
                let outstanding = sent_through.saturating_sub(shared.lock_spool().acked_seq());
                return ended(
                    format!(
                        "no ack for {} ms while {outstanding} sequence numbers were outstanding: \
                         treating the collector as dead (next wait {} ms)",
                        waited.as_millis(),
                        acks.timeout().as_millis()
                    ),
                    acked,
                );
            },
        }
    }
}

/// Half-closes the request stream and lets the collector end its side, so
/// that it sees a clean end of stream rather than a reset connection.
async fn close_gracefully(
    outbox: mpsc::Sender<pb::AgentMessage>,
    mut inbound: tonic::codec::Streaming<pb::CollectorMessage>,
    shared: &Shared,
    interval_tx: &watch::Sender<Duration>,
    mut sent_through: u64,
) {
    drop(outbox);
    let drain = async {
        while let Some(Ok(message)) = inbound.next().await {
            handle_collector_message(message, shared, interval_tx, &mut sent_through);
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

async fn sleep_until_or_never(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn handle_collector_message(
    message: pb::CollectorMessage,
    shared: &Shared,
    interval_tx: &watch::Sender<Duration>,
    sent_through: &mut u64,
) {
    match message.kind {
        Some(CollectorKind::Ack(ack)) => {
            let stats = {
                let mut spool = shared.lock_spool();
                spool.ack(ack.committed_seq);
                spool.stats()
            };
            // An ack past what this stream sent (an older stream of this node
            // delivered it): no need to send those again.
            *sent_through = (*sent_through).max(ack.committed_seq);
            shared.publish_spool(stats);
        }
        Some(CollectorKind::SetInterval(set)) => {
            let asked = Duration::from_millis(u64::from(set.interval_ms));
            let interval = asked.clamp(MIN_INTERVAL, MAX_INTERVAL);
            tracing::info!(
                interval_ms = interval.as_millis() as u64,
                asked_ms = set.interval_ms,
                reason = %set.reason,
                "the collector changed the sampling interval"
            );
            interval_tx.send_replace(interval);
            shared.status.send_modify(|s| s.interval = interval);
        }
        Some(CollectorKind::Welcome(_)) => tracing::warn!("ignoring a second Welcome on the same stream"),
        None => tracing::warn!("ignoring an empty message from the collector"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A "random" source that always returns the same bits, to pin the ends
    /// of the range.
    struct Constant(u64);

    impl rand::RngCore for Constant {
        fn next_u32(&mut self) -> u32 {
            self.0 as u32
        }
        fn next_u64(&mut self) -> u64 {
            self.0
        }
        fn fill_bytes(&mut self, dst: &mut [u8]) {
            dst.fill(self.0 as u8);
        }
    }

    /// An outage older than the first minute: the plain exponential cap.
    const LONG_OUTAGE: Duration = Duration::from_secs(120);

    #[test]
    fn backoff_stays_within_the_doubling_ceiling_and_the_cap() {
        let backoff = Backoff::default();
        let mut rng = StdRng::seed_from_u64(7);
        for attempt in 0..40 {
            let ceiling = backoff.ceiling(attempt, LONG_OUTAGE);
            assert!(ceiling <= backoff.cap);
            for _ in 0..200 {
                assert!(backoff.delay(attempt, LONG_OUTAGE, &mut rng) <= ceiling, "attempt {attempt}");
            }
        }
        assert_eq!(backoff.ceiling(0, LONG_OUTAGE), Duration::from_millis(250));
        assert_eq!(backoff.ceiling(3, LONG_OUTAGE), Duration::from_secs(2));
        assert_eq!(backoff.ceiling(7, LONG_OUTAGE), Duration::from_secs(30), "250 ms * 128 = 32 s, capped");
        assert_eq!(backoff.ceiling(u32::MAX, LONG_OUTAGE), Duration::from_secs(30));
    }

    #[test]
    fn during_the_first_minute_of_an_outage_no_delay_exceeds_2_s() {
        let backoff = Backoff::default();
        let mut rng = StdRng::seed_from_u64(11);
        for attempt in 0..40 {
            for age_s in [0, 1, 30, 59] {
                let age = Duration::from_secs(age_s);
                assert!(backoff.ceiling(attempt, age) <= Duration::from_secs(2), "attempt {attempt} at {age_s} s");
                assert!(backoff.delay(attempt, age, &mut rng) <= Duration::from_secs(2));
            }
        }
        assert_eq!(
            backoff.ceiling(2, Duration::ZERO),
            Duration::from_secs(1),
            "the doubling still applies below the cap"
        );
        // then the usual cap
        assert_eq!(backoff.ceiling(10, Duration::from_secs(60)), Duration::from_secs(30));
    }

    #[test]
    fn backoff_uses_the_whole_range_down_to_zero() {
        let backoff = Backoff::default();
        assert_eq!(backoff.delay(5, LONG_OUTAGE, &mut Constant(0)), Duration::ZERO);
        assert_eq!(backoff.delay(5, LONG_OUTAGE, &mut Constant(u64::MAX)), backoff.ceiling(5, LONG_OUTAGE));
        // Full jitter: 1000 draws at attempt 4 (ceiling 4 s) cover the range evenly.
        let mut rng = StdRng::seed_from_u64(1);
        let draws: Vec<Duration> = (0..1000).map(|_| backoff.delay(4, LONG_OUTAGE, &mut rng)).collect();
        let below_half = draws.iter().filter(|d| **d < Duration::from_secs(2)).count();
        assert!((400..600).contains(&below_half), "{below_half} of 1000 below half the ceiling");
        assert!(draws.iter().any(|d| *d < Duration::from_millis(200)));
        assert!(draws.iter().any(|d| *d > Duration::from_millis(3800)));
    }

    #[test]
    fn the_ack_watch_waits_only_while_batches_are_outstanding() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut watch = AckWatch::new(Duration::from_secs(2));
        assert_eq!(watch.deadline(), None, "nothing sent, nothing awaited");
        watch.sent(ms(0));
        watch.sent(ms(100)); // a second batch does not move the deadline
        assert_eq!(watch.deadline(), Some(ms(10_000)), "10 s until an ack shows how fast the collector commits");
        // an ack for everything: nothing outstanding
        watch.acked(ms(200), false);
        assert_eq!(watch.deadline(), None);
        // an ack for part: the wait starts again from it
        watch.sent(ms(300));
        watch.acked(ms(500), true);
        assert_eq!(watch.deadline(), Some(ms(2_500)));
    }

    #[test]
    fn the_ack_timeout_follows_a_slow_collector_and_backs_off_on_one_that_never_acks() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let mut watch = AckWatch::new(Duration::from_secs(2));
        // a collector that commits every 5 s: acks come 5 s after a send
        for n in 0..3 {
            watch.sent(s(10 * n));
            watch.acked(s(10 * n + 5), false);
        }
        assert_eq!(watch.timeout(), Duration::from_secs(20), "4x the slowest wait for an ack");
        // a collector that takes batches and never acks: each stream ending on the
        // timeout doubles the next one, up to 10 minutes
        let mut timeouts = Vec::new();
        for _ in 0..7 {
            watch.new_stream();
            watch.sent(s(100));
            timeouts.push(watch.deadline().unwrap().duration_since(s(100)).as_secs());
            watch.expired();
        }
        assert_eq!(timeouts, [20, 40, 80, 160, 320, 600, 600]);
        // one ack and it is back to normal
        watch.sent(s(200));
        watch.acked(s(201), false);
        assert!(watch.timeout() <= Duration::from_secs(20));
        // the slow waits are forgotten as fast acks come in
        for n in 0..60 {
            watch.sent(s(300 + n));
            watch.acked(s(300 + n) + Duration::from_millis(200), false);
        }
        assert_eq!(watch.timeout(), Duration::from_secs(2), "back to the floor");
    }

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
