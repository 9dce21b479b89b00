//! Starting and stopping a collector: serves `/livez` and `/readyz`, opens the store (moving a
//! damaged file aside), starts the committer and the gRPC server (Ingest + Query, optional
//! TLS/mTLS), and on shutdown stops accepting, lets every stream finish its last commit and
//! final ack, then closes the store.
//!
//! Supervision: the committer, the live analysis, the export, report retention and the gRPC
//! server run as tasks. One that ends while no shutdown was asked for (a panic, an error) is a
//! fault: it is logged, readiness and liveness fail, the collector goes through the shutdown
//! steps that still make sense (without a committer, nothing more is committed or
//! acknowledged, so the connections are closed at once), and [`ShutdownReport::fault`] says
//! why, so the binary exits non-zero and Kubernetes restarts it. A pod that looks healthy but
//! never acknowledges again is the failure this rules out.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bakery_proto::received::ingest_server::IngestServer;
use bakery_proto::v1::query_server::QueryServer;
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinError, JoinHandle};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::auth::{AuthSettings, Authenticator, Credentials, TokenReviewer};
use crate::commit::{self, CommitConfig, CommitStats, CommitterExit};
use crate::error::{Error, Result};
use crate::export::{Export, ExportConfig, ExportStats};
use crate::health::{FATAL_PREFIX, Health};
use crate::ingest::{IngestService, MAX_MESSAGE_BYTES};
use crate::kube::KubeWatch;
use crate::limits::IngestLimits;
use crate::live::{Diagnosis, DiagnosisConfig};
use crate::nodes::{Registry, RegistryLimits};
use crate::query::QueryService;
use crate::state::Shared;
use crate::store::window_reports::ReportStore;
use crate::store::{LoadLimits, MovedAside, Opened, Store};

/// The default listen address (`--listen`); 7431 is bakery's gRPC port.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:7431";

/// Commit-queue capacity in messages: small, so a flood meets backpressure quickly and memory
/// stays bounded (each entry holds one encoded batch, a few KiB).
pub const QUEUE_CAPACITY: usize = 1024;

/// How long the shutdown waits for connections to close after the final acks.
const SERVER_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub token_file: Option<PathBuf>,
    pub insecure_no_auth: bool,
    /// Node, read and control tokens and the agents' service account (see [`crate::auth`]).
    pub credentials: Credentials,
    pub tls: Option<TlsFiles>,
    pub commit: CommitConfig,
    /// Written with the bound address once the collector accepts connections.
    pub ready_file: Option<PathBuf>,
    /// Cluster knowledge, windows and live analysis.
    pub diagnosis: DiagnosisConfig,
    /// `/metrics` and OTLP export (off by default here; the CLI turns `/metrics` on).
    pub export: ExportConfig,
    /// Serve `/livez` and `/readyz` here (off by default here; the CLI turns them on).
    pub health_listen: Option<SocketAddr>,
    /// Fail start-up when `health_listen` cannot be bound (off for the default address, like
    /// `/metrics`).
    pub health_listen_required: bool,
    /// The caps on what agents send and what the collector keeps of it.
    pub limits: IngestLimits,
}

/// PEM files for TLS; with `client_ca`, clients must present a certificate it signed (mTLS).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

impl ServeConfig {
    /// A configuration with the defaults for everything but the data dir.
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        ServeConfig {
            listen,
            data_dir,
            token_file: None,
            insecure_no_auth: false,
            credentials: Credentials::default(),
            tls: None,
            commit: CommitConfig::default(),
            ready_file: None,
            diagnosis: DiagnosisConfig::default(),
            export: ExportConfig::default(),
            health_listen: None,
            health_listen_required: false,
            limits: IngestLimits::default(),
        }
    }
}

/// How a collector ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Messages received but not committed (never acknowledged; the agents send them again).
    pub uncommitted: usize,
    /// Set when the collector stopped by itself because a task died: which, and how.
    pub fault: Option<String>,
}

/// A running collector.
pub struct Collector {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<Result<ShutdownReport>>,
    shared: Arc<Shared>,
    stats: Arc<CommitStats>,
    diagnosis: Arc<Diagnosis>,
    metrics_addr: Option<SocketAddr>,
    export_stats: Arc<ExportStats>,
    health: Arc<Health>,
    health_addr: Option<SocketAddr>,
    moved_aside: Option<MovedAside>,
}

impl Collector {
    /// Opens the store and starts serving. Fails when the store or the configuration is
    /// unusable, or the address cannot be bound.
    pub async fn start(config: ServeConfig) -> Result<Collector> {
        let auth = Authenticator::new(&auth_settings(&config))?;
        let tls = config.tls.as_ref().map(|files| tls_config(files, auth.accepts_bearer_tokens())).transpose()?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        // The probes answer from the start (not ready while the store opens), so a slow open
        // after a crash is not mistaken for a dead process.
        let health = Arc::new(Health::for_commit_interval(config.commit.interval));
        let (health_addr, health_task) = match config.health_listen {
            Some(listen) => match crate::health::serve(listen, health.clone(), shutdown_rx.clone()).await {
                Ok((addr, task)) => {
                    tracing::info!(%addr, "serving /livez and /readyz");
                    (Some(addr), Some(task))
                }
                Err(error) if !config.health_listen_required => {
                    tracing::error!(%error, "not serving /livez and /readyz (pass --health-listen to choose another address)");
                    (None, None)
                }
                Err(error) => return Err(error),
            },
            None => (None, None),
        };
        let started =
            Self::start_serving(config, auth, tls, shutdown_tx.clone(), shutdown_rx, health, health_addr).await;
        if started.is_err() {
            // Stop the probes' server with the failed start.
            let _ = shutdown_tx.send(true);
            if let Some(task) = health_task {
                let _ = task.await;
            }
        }
        started
    }

    /// Opens the store and the report store, starts the cluster watch, the export, the gRPC
    /// server, the analysis, the committer and report retention, then their supervisor.
    async fn start_serving(
        config: ServeConfig,
        auth: Authenticator,
        tls: Option<ServerTlsConfig>,
        shutdown_tx: watch::Sender<bool>,
        shutdown_rx: watch::Receiver<bool>,
        health: Arc<Health>,
        health_addr: Option<SocketAddr>,
    ) -> Result<Collector> {
        let registry_limits = RegistryLimits::from_ingest(&config.limits);
        let (opened, stats) = open_store(&config, registry_limits, &health).await?;
        let (store, loaded, moved_aside) = (opened.store, opened.nodes, opened.moved_aside);
        let node_count = loaded.len();
        let reports_dir = config.data_dir.clone();
        let reports = tokio::task::spawn_blocking(move || ReportStore::open(&reports_dir))
            .await
            .map_err(|e| Error::Config(format!("opening the report store panicked: {e}")))??;
        let kube = KubeWatch::start(&config.diagnosis.kube).await?;
        // The agents' service-account tokens are reviewed with the watch's client.
        auth.attach_token_reviewer(kube.as_ref().map(|k| Arc::new(k.token_reviewer()) as Arc<dyn TokenReviewer>))?;

        let (queue_tx, queue_rx) = mpsc::channel(QUEUE_CAPACITY);
        let registry = Registry::from_loaded(loaded, registry_limits);
        let (nodes_in_memory, nodes_dormant) = (registry.len(), registry.dormant_len());
        let shared =
            Arc::new(Shared::new(registry, auth, queue_tx, shutdown_rx.clone(), health.clone(), config.limits.clone()));
        let diagnosis = Arc::new(Diagnosis::new(shared.clone(), config.diagnosis.clone(), kube, reports.clone())?);

        let (incoming, local_addr) = bind(config.listen).await?;
        let export_feed: Arc<dyn crate::export::hooks::ExportFeed> = diagnosis.clone();
        let export = Export::start(&config.export, Some(export_feed), shared.clone(), shutdown_rx.clone()).await?;
        let (metrics_addr, export_stats) = (export.metrics_addr(), export.stats().clone());

        let server = serve_grpc(tls, incoming, &shared, &diagnosis, shutdown_rx.clone())?;
        let analysis = tokio::spawn(diagnosis.clone().run(shutdown_rx.clone()));
        let committer = tokio::spawn(commit::run(
            store,
            queue_rx,
            config.commit.clone(),
            stats.clone(),
            health.clone(),
            shutdown_rx.clone(),
        ));
        let report_retention =
            tokio::spawn(expire_reports(reports, config.commit.retention, config.commit.retention_check, shutdown_rx));

        if let Some(ready_file) = &config.ready_file {
            write_ready_file(ready_file, local_addr)?;
        }
        log_listening(&config, local_addr, node_count, nodes_in_memory, nodes_dormant);

        let tasks = Tasks {
            server: Some(server),
            analysis: Some(analysis),
            committer: Some(committer),
            report_retention: Some(report_retention),
            export,
        };
        let task = tokio::spawn(supervise(tasks, shared.clone(), health.clone(), shutdown_tx.clone()));
        Ok(Collector {
            local_addr,
            shutdown: shutdown_tx,
            task,
            shared,
            stats,
            diagnosis,
            metrics_addr,
            export_stats,
            health,
            health_addr,
            moved_aside,
        })
    }

    /// The address the collector listens on (the real port when `--listen` used port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The shared node state (for tests and embedding).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The live analysis: cluster knowledge, windows, verdicts and reports.
    pub fn diagnosis(&self) -> &Arc<Diagnosis> {
        &self.diagnosis
    }

    /// Where `/metrics` is served, when it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The export's counters (OTLP exports sent and dropped).
    pub fn export_stats(&self) -> &Arc<ExportStats> {
        &self.export_stats
    }

    /// The committer's counters.
    pub fn stats(&self) -> &Arc<CommitStats> {
        &self.stats
    }

    /// What `/livez` and `/readyz` answer from.
    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// Where `/livez` and `/readyz` are served, when they are.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health_addr
    }

    /// The damaged store file moved aside at start, if there was one.
    pub fn moved_aside(&self) -> Option<&MovedAside> {
        self.moved_aside.as_ref()
    }

    /// Begins a graceful shutdown (what SIGTERM does).
    pub fn begin_shutdown(&self) {
        self.health.stopping("a shutdown was asked for");
        let _ = self.shutdown.send(true);
    }

    /// Waits until the collector has stopped: after [`Collector::begin_shutdown`], or by
    /// itself when a task died (see [`ShutdownReport::fault`]).
    pub async fn wait(self) -> Result<ShutdownReport> {
        self.task.await.map_err(|e| Error::Config(format!("the collector task panicked: {e}")))?
    }

    /// Serves until `stop` completes (a signal), then shuts down gracefully; or until a task
    /// dies, then returns the report with its fault.
    pub async fn run_until(mut self, stop: impl std::future::Future<Output = ()>) -> Result<ShutdownReport> {
        tokio::select! {
            () = stop => {
                self.begin_shutdown();
                self.wait().await
            }
            ended = &mut self.task => ended.map_err(|e| Error::Config(format!("the collector task panicked: {e}")))?,
        }
    }

    /// Shuts down gracefully and waits.
    pub async fn stop(self) -> Result<ShutdownReport> {
        self.begin_shutdown();
        self.wait().await
    }
}

/// The start-up line: where the collector listens, what the store held and the main settings.
fn log_listening(
    config: &ServeConfig,
    local_addr: SocketAddr,
    node_count: usize,
    nodes_in_memory: usize,
    nodes_dormant: usize,
) {
    tracing::info!(
        %local_addr,
        data_dir = %config.data_dir.display(),
        known_nodes = node_count,
        nodes_in_memory,
        nodes_dormant,
        max_nodes = config.limits.max_nodes,
        tls = config.tls.is_some(),
        commit_interval_ms = config.commit.interval.as_millis() as u64,
        retention = %humantime::format_duration(config.commit.retention),
        retention_size_bytes = config.commit.retention_size_bytes,
        "collector listening"
    );
}

/// Opens the sample store in `config.data_dir`, moving a damaged file aside. At start only the
/// nodes that fit in memory are read in full (pods, newest batch): a store full of junk nodes
/// costs one record each, not a crash loop. The store is then open for readiness.
async fn open_store(
    config: &ServeConfig,
    registry_limits: RegistryLimits,
    health: &Health,
) -> Result<(Opened, Arc<CommitStats>)> {
    let data_dir = config.data_dir.clone();
    let load_limits = LoadLimits {
        full_nodes: registry_limits.max_nodes,
        pods_per_node: config.limits.max_pods_per_node,
        latest_batch_bytes: registry_limits.history_bytes_per_node,
    };
    let opened = tokio::task::spawn_blocking(move || Store::open_or_move_aside_with(&data_dir, &load_limits))
        .await
        .map_err(|e| Error::Config(format!("opening the store panicked: {e}")))??;
    let stats = Arc::new(CommitStats::default());
    stats.stores_moved_aside.store(u64::from(opened.moved_aside.is_some()), Ordering::Relaxed);
    stats.corrupt_rows.store(opened.store.corrupt_rows(), Ordering::Relaxed);
    if opened.store.corrupt_rows() > 0 {
        tracing::error!(
            rows = opened.store.corrupt_rows(),
            "the store holds rows that do not decode: they were skipped (see the lines above)"
        );
    }
    health.set_store_open(true);
    Ok((opened, stats))
}

/// Listens for gRPC on `listen`; returns the incoming connections and the bound address.
async fn bind(listen: SocketAddr) -> Result<(TcpIncoming, SocketAddr)> {
    let (listener, local_addr) = listen_on(listen, "cannot listen on").await?;
    Ok((TcpIncoming::from(listener).with_nodelay(Some(true)), local_addr))
}

/// Binds `listen` (port 0 picks a free one) and returns the listener with the address it got;
/// `cannot` says what failed ("cannot listen for /metrics on"), the address follows it.
pub(crate) async fn listen_on(
    listen: SocketAddr,
    cannot: &'static str,
) -> Result<(tokio::net::TcpListener, SocketAddr)> {
    let at = || PathBuf::from(listen.to_string());
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|source| Error::Io {
        action: cannot,
        path: at(),
        source,
    })?;
    let local = listener.local_addr().map_err(|source| Error::Io {
        action: "cannot read the bound address of",
        path: at(),
        source,
    })?;
    Ok((listener, local))
}

/// Serves Ingest and Query on `incoming` until the shutdown signal.
fn serve_grpc(
    tls: Option<ServerTlsConfig>,
    incoming: TcpIncoming,
    shared: &Arc<Shared>,
    diagnosis: &Arc<Diagnosis>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<JoinHandle<std::result::Result<(), tonic::transport::Error>>> {
    let mut builder = Server::builder()
        // Notice dead agents (a pulled cable) so `connected` and stale are right.
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)));
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    let ingest = IngestServer::new(IngestService::new(shared.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let query = QueryServer::new(QueryService::with_diagnosis(shared.clone(), diagnosis.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        // Answers are not held to what an agent may send: a window's report or the pods of a
        // large cluster can be larger.
        .max_encoding_message_size(64 * 1024 * 1024);
    Ok(tokio::spawn(builder.add_service(ingest).add_service(query).serve_with_incoming_shutdown(
        incoming,
        async move {
            let _ = shutdown.wait_for(|down| *down).await;
        },
    )))
}

/// The collector's tasks, each taken once it has been awaited.
struct Tasks {
    server: Option<JoinHandle<std::result::Result<(), tonic::transport::Error>>>,
    analysis: Option<JoinHandle<()>>,
    committer: Option<JoinHandle<CommitterExit<Store>>>,
    report_retention: Option<JoinHandle<()>>,
    export: Export,
}

/// What ended the wait for a shutdown.
enum Ended {
    /// A shutdown was asked for.
    Requested,
    Server(std::result::Result<std::result::Result<(), tonic::transport::Error>, JoinError>),
    Analysis(std::result::Result<(), JoinError>),
    Committer(std::result::Result<CommitterExit<Store>, JoinError>),
    ReportRetention(std::result::Result<(), JoinError>),
    Export(String),
}

async fn join<T>(task: &mut Option<JoinHandle<T>>) -> std::result::Result<T, JoinError> {
    match task.as_mut() {
        Some(task) => task.await,
        None => std::future::pending().await,
    }
}

/// How a task that ended by itself ended, for the log and the exit.
fn describe_end<T>(task: &str, result: &std::result::Result<T, JoinError>) -> String {
    match result {
        Err(join) if join.is_panic() => format!("the {task} task panicked"),
        Err(_) => format!("the {task} task was cancelled"),
        Ok(_) => format!("the {task} task ended unexpectedly"),
    }
}

/// Waits for a shutdown or for a task to end by itself, then stops everything in order. See
/// the module's documentation for the rules.
async fn supervise(
    mut tasks: Tasks,
    shared: Arc<Shared>,
    health: Arc<Health>,
    shutdown: watch::Sender<bool>,
) -> Result<ShutdownReport> {
    let mut down = shutdown.subscribe();
    let ended = tokio::select! {
        biased;
        _ = down.wait_for(|down| *down) => Ended::Requested,
        result = join(&mut tasks.committer) => Ended::Committer(result),
        result = join(&mut tasks.server) => Ended::Server(result),
        result = join(&mut tasks.analysis) => Ended::Analysis(result),
        result = join(&mut tasks.report_retention) => Ended::ReportRetention(result),
        why = tasks.export.ended() => Ended::Export(why),
    };
    // A task that ended once the shutdown had begun ended because of it (the gRPC server and
    // `/metrics` stop on the signal), whichever branch the select saw first.
    let requested = *down.borrow();
    let FirstEnd { fault, server_error, committer_exit } = first_end(&mut tasks, ended, requested);
    if let Some(fault) = &fault {
        tracing::error!(
            %fault,
            "a task of the collector died: shutting down and exiting non-zero so that it is restarted"
        );
        health.stopping(&format!("{FATAL_PREFIX}{fault}"));
    } else if server_error.is_some() {
        health.stopping("the gRPC server stopped");
    }
    let _ = shutdown.send(true);
    tracing::info!("shutting down: no new connections; committing what was received");
    shared.close_queue();
    let (uncommitted, fault) = stop_in_order(&mut tasks, committer_exit, fault).await?;
    // After the last commit: the final OTLP export carries the last values.
    tasks.export.stop().await;
    tracing::info!(uncommitted, fault = fault.as_deref(), "collector stopped");
    if let Some(error) = server_error {
        return Err(Error::Transport(error));
    }
    Ok(ShutdownReport { uncommitted, fault })
}

/// What the first task to end (or the shutdown request) leaves the supervisor with.
struct FirstEnd {
    /// Why the collector is faulty, when a task died.
    fault: Option<String>,
    /// The gRPC server's own error (a bind or serve error), returned as the collector's.
    server_error: Option<tonic::transport::Error>,
    /// The committer's exit, when it is the task that ended.
    committer_exit: Option<CommitterExit<Store>>,
}

/// Whether the task that ended is a fault: it ended while no shutdown was asked for, or failed
/// (a panic) even after one. Its handle leaves `tasks`, so it is not awaited again.
fn first_end(tasks: &mut Tasks, ended: Ended, requested: bool) -> FirstEnd {
    let mut first = FirstEnd { fault: None, server_error: None, committer_exit: None };
    first.fault = match ended {
        Ended::Requested => None,
        Ended::Committer(result) => {
            tasks.committer = None;
            let why = describe_end("committer", &result);
            first.committer_exit = result.ok();
            Some(why).filter(|_| !requested || first.committer_exit.is_none())
        }
        Ended::Server(result) => {
            tasks.server = None;
            match result {
                // Bind and serve errors are errors of the collector, as before.
                Ok(Err(error)) => {
                    tracing::error!(%error, "the gRPC server stopped unexpectedly");
                    first.server_error = Some(error);
                    None
                }
                other => Some(describe_end("gRPC server", &other)).filter(|_| !requested || other.is_err()),
            }
        }
        Ended::Analysis(result) => {
            tasks.analysis = None;
            Some(describe_end("live analysis", &result)).filter(|_| !requested || result.is_err())
        }
        Ended::ReportRetention(result) => {
            tasks.report_retention = None;
            Some(describe_end("report retention", &result)).filter(|_| !requested || result.is_err())
        }
        Ended::Export(why) => Some(why).filter(|_| !requested),
    };
    first
}

/// Stops the remaining tasks in order: the live analysis (it stores the report of a window
/// still open) and report retention, the committer (its last commits), the gRPC server (drained
/// while final acks can still come, else closed at once), then the store. Returns the work left
/// uncommitted and the fault, a committer that fails now included.
async fn stop_in_order(
    tasks: &mut Tasks,
    mut committer_exit: Option<CommitterExit<Store>>,
    mut fault: Option<String>,
) -> Result<(usize, Option<String>)> {
    if let Some(analysis) = tasks.analysis.take()
        && let Err(error) = analysis.await
    {
        tracing::warn!(%error, "the live analysis task failed");
    }
    if let Some(retention) = tasks.report_retention.take()
        && let Err(error) = retention.await
    {
        tracing::warn!(%error, "the report retention task failed");
    }
    if let Some(committer) = tasks.committer.take() {
        match committer.await {
            Ok(exit) => committer_exit = Some(exit),
            Err(error) => {
                tracing::error!(%error, "the committer failed during the shutdown");
                fault.get_or_insert_with(|| describe_end("committer", &Err::<(), _>(error)));
            }
        }
    }
    if let Some(mut server) = tasks.server.take() {
        if committer_exit.is_none() {
            // Nothing more can be committed, so no final ack can come: close the connections
            // now, and the agents reconnect to the restarted collector.
            server.abort();
        } else if tokio::time::timeout(SERVER_DRAIN_TIMEOUT, &mut server).await.is_err() {
            tracing::warn!("some connections did not close in time; closing them");
            server.abort();
        }
    }
    let uncommitted = match committer_exit {
        Some(exit) => {
            let uncommitted = exit.uncommitted;
            let store = exit.store;
            tokio::task::spawn_blocking(move || store.close())
                .await
                .map_err(|e| Error::Config(format!("closing the store panicked: {e}")))??;
            uncommitted
        }
        None => 0,
    };
    Ok((uncommitted, fault))
}

/// Removes window reports older than `retention` (by their window's end), every `every`; the
/// first check comes 10 s after the start, like the samples' retention.
async fn expire_reports(
    reports: ReportStore,
    retention: Duration,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut next = tokio::time::Instant::now() + Duration::from_secs(10).min(every);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = shutdown.wait_for(|down| *down) => return,
        }
        next = tokio::time::Instant::now() + every;
        let cutoff_ms = crate::now_ms().saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
        let store = reports.clone();
        match tokio::task::spawn_blocking(move || store.expire(cutoff_ms)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(removed)) => tracing::info!(removed, "retention removed old window reports"),
            Ok(Err(error)) => tracing::warn!(%error, "report retention failed; trying again later"),
            Err(join) => std::panic::resume_unwind(join.into_panic()),
        }
    }
}

fn auth_settings(config: &ServeConfig) -> AuthSettings {
    AuthSettings {
        shared_token_file: config.token_file.clone(),
        credentials: config.credentials.clone(),
        client_certificates: config.tls.as_ref().is_some_and(|tls| tls.client_ca.is_some()),
        insecure_no_auth: config.insecure_no_auth,
    }
}

fn read_pem(path: &Path, what: &'static str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io { action: what, path: path.to_path_buf(), source })
}

/// With `tokens_too`, a client certificate is optional at the handshake (people come with
/// tokens, and the call is authenticated by whichever they present); else it is required.
fn tls_config(files: &TlsFiles, tokens_too: bool) -> Result<ServerTlsConfig> {
    let cert = read_pem(&files.cert, "cannot read the TLS certificate")?;
    let key = read_pem(&files.key, "cannot read the TLS key")?;
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
    if let Some(ca) = &files.client_ca {
        tls = tls
            .client_ca_root(Certificate::from_pem(read_pem(ca, "cannot read the client CA")?))
            .client_auth_optional(tokens_too);
    }
    Ok(tls)
}

/// Writes the address atomically (temp file + rename), so a reader never sees half of it.
fn write_ready_file(path: &Path, addr: SocketAddr) -> Result<()> {
    let io = |source| Error::Io { action: "cannot write the ready file", path: path.to_path_buf(), source };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{addr}\n")).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}
