//! Starting and stopping a collector: opens the store, starts the committer and the gRPC server
//! (Ingest + Query, optional TLS/mTLS), and on shutdown stops accepting, lets every stream
//! finish its last commit and final ack, then closes the store.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bakery_proto::v1::ingest_server::IngestServer;
use bakery_proto::v1::query_server::QueryServer;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::auth::{AuthMode, Authenticator, TokenFile};
use crate::commit::{self, CommitConfig, CommitStats};
use crate::error::{Error, Result};
use crate::export::{Export, ExportConfig, ExportStats};
use crate::ingest::{IngestService, MAX_MESSAGE_BYTES, Shared};
use crate::kube::KubeWatch;
use crate::live::{Diagnosis, DiagnosisConfig};
use crate::nodes::Registry;
use crate::query::QueryService;
use crate::store::Store;
use crate::store::reports::ReportStore;

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
    pub tls: Option<TlsFiles>,
    pub commit: CommitConfig,
    /// Written with the bound address once the collector accepts connections.
    pub ready_file: Option<PathBuf>,
    /// Cluster knowledge, windows and live analysis (issue 4).
    pub diagnosis: DiagnosisConfig,
    /// `/metrics` and OTLP export (off by default here; the CLI turns `/metrics` on).
    pub export: ExportConfig,
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
            tls: None,
            commit: CommitConfig::default(),
            ready_file: None,
            diagnosis: DiagnosisConfig::default(),
            export: ExportConfig::default(),
        }
    }
}

/// How a collector ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Messages received but not committed (never acknowledged; the agents send them again).
    pub uncommitted: usize,
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
}

impl Collector {
    /// Opens the store and starts serving. Fails when the store or the configuration is
    /// unusable, or the address cannot be bound.
    pub async fn start(config: ServeConfig) -> Result<Collector> {
        let auth = Authenticator::new(auth_mode(&config)?);
        let tls = config.tls.as_ref().map(tls_config).transpose()?;
        let data_dir = config.data_dir.clone();
        let (store, loaded) = tokio::task::spawn_blocking(move || -> Result<_> {
            let mut store = Store::open(&data_dir)?;
            let loaded = store.load()?;
            Ok((store, loaded))
        })
        .await
        .map_err(|e| Error::Config(format!("opening the store panicked: {e}")))??;
        let node_count = loaded.len();
        let reports_dir = config.data_dir.clone();
        let reports = tokio::task::spawn_blocking(move || ReportStore::open(&reports_dir))
            .await
            .map_err(|e| Error::Config(format!("opening the report store panicked: {e}")))??;
        let kube = KubeWatch::start(&config.diagnosis.kube).await?;

        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (queue_tx, queue_rx) = mpsc::channel(QUEUE_CAPACITY);
        let shared = Arc::new(Shared::new(Registry::from_loaded(loaded), auth, queue_tx, shutdown_rx.clone()));
        let stats = Arc::new(CommitStats::default());
        let diagnosis = Arc::new(Diagnosis::new(shared.clone(), config.diagnosis.clone(), kube, reports)?);

        let listener = tokio::net::TcpListener::bind(config.listen).await.map_err(|source| Error::Io {
            action: "cannot listen on",
            path: PathBuf::from(config.listen.to_string()),
            source,
        })?;
        let local_addr = listener.local_addr().map_err(|source| Error::Io {
            action: "cannot read the bound address of",
            path: PathBuf::from(config.listen.to_string()),
            source,
        })?;
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let export_feed: Arc<dyn crate::export::hooks::ExportFeed> = diagnosis.clone();
        let export = Export::start(&config.export, Some(export_feed), shared.clone(), shutdown_rx.clone()).await?;
        let (metrics_addr, export_stats) = (export.metrics_addr(), export.stats().clone());

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
            // History responses can be large: 2 minutes of samples.
            .max_encoding_message_size(64 * 1024 * 1024);
        let mut server_shutdown = shutdown_rx.clone();
        let server = tokio::spawn(builder.add_service(ingest).add_service(query).serve_with_incoming_shutdown(
            incoming,
            async move {
                let _ = server_shutdown.wait_for(|down| *down).await;
            },
        ));
        let analysis = tokio::spawn(diagnosis.clone().run(shutdown_rx.clone()));
        let committer = tokio::spawn(commit::run(store, queue_rx, config.commit.clone(), stats.clone(), shutdown_rx));

        if let Some(ready_file) = &config.ready_file {
            write_ready_file(ready_file, local_addr)?;
        }
        tracing::info!(
            %local_addr,
            data_dir = %config.data_dir.display(),
            known_nodes = node_count,
            tls = config.tls.is_some(),
            commit_interval_ms = config.commit.interval.as_millis() as u64,
            retention = %humantime::format_duration(config.commit.retention),
            "collector listening"
        );

        let task_shared = shared.clone();
        let task_shutdown = shutdown_tx.clone();
        let task = tokio::spawn(async move {
            let mut server = server;
            let mut down = task_shutdown.subscribe();
            let server_done = tokio::select! {
                _ = down.wait_for(|down| *down) => None,
                result = &mut server => Some(result),
            };
            if let Some(result) = &server_done {
                // The server stopped on its own: an error; shut the rest down cleanly.
                tracing::error!(?result, "the gRPC server stopped unexpectedly");
                let _ = task_shutdown.send(true);
            }
            tracing::info!("shutting down: no new connections; committing what was received");
            task_shared.close_queue();
            // The analysis stores the report of a window still open.
            if let Err(error) = analysis.await {
                tracing::warn!(%error, "the live analysis task failed");
            }
            let exit = committer.await.map_err(|e| Error::Config(format!("the committer panicked: {e}")))?;
            if server_done.is_none() && tokio::time::timeout(SERVER_DRAIN_TIMEOUT, &mut server).await.is_err() {
                tracing::warn!("some connections did not close in time; closing them");
                server.abort();
            }
            let store = exit.store;
            tokio::task::spawn_blocking(move || store.close())
                .await
                .map_err(|e| Error::Config(format!("closing the store panicked: {e}")))??;
            // After the last commit: the final OTLP export carries the last values.
            export.stop().await;
            tracing::info!(uncommitted = exit.uncommitted, "collector stopped");
            if let Some(Ok(Err(error))) = server_done {
                return Err(Error::Transport(error));
            }
            Ok(ShutdownReport { uncommitted: exit.uncommitted })
        });
        Ok(Collector { local_addr, shutdown: shutdown_tx, task, shared, stats, diagnosis, metrics_addr, export_stats })
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

    /// Begins a graceful shutdown (what SIGTERM does).
    pub fn begin_shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Waits until the collector has stopped.
    pub async fn wait(self) -> Result<ShutdownReport> {
        self.task.await.map_err(|e| Error::Config(format!("the collector task panicked: {e}")))?
    }

    /// Shuts down gracefully and waits.
    pub async fn stop(self) -> Result<ShutdownReport> {
        self.begin_shutdown();
        self.wait().await
    }
}

fn auth_mode(config: &ServeConfig) -> Result<AuthMode> {
    let mutual_tls = config.tls.as_ref().is_some_and(|tls| tls.client_ca.is_some());
    match (&config.token_file, config.insecure_no_auth) {
        (Some(_), true) => Err(Error::Config("--token-file and --insecure-no-auth contradict each other".into())),
        (Some(path), false) => Ok(AuthMode::Tokens(TokenFile::load(path)?)),
        (None, true) => {
            tracing::warn!("--insecure-no-auth: accepting every agent without a token");
            Ok(AuthMode::Insecure)
        }
        (None, false) if mutual_tls => Ok(AuthMode::MutualTls),
        (None, false) => Err(Error::Config(
            "refusing to accept agents without authentication: pass --token-file FILE (one token per line), \
             or --tls-client-ca FILE for mutual TLS, or --insecure-no-auth on a trusted network"
                .into(),
        )),
    }
}

fn read_pem(path: &Path, what: &'static str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io { action: what, path: path.to_path_buf(), source })
}

fn tls_config(files: &TlsFiles) -> Result<ServerTlsConfig> {
    let cert = read_pem(&files.cert, "cannot read the TLS certificate")?;
    let key = read_pem(&files.key, "cannot read the TLS key")?;
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
    if let Some(ca) = &files.client_ca {
        tls = tls.client_ca_root(Certificate::from_pem(read_pem(ca, "cannot read the client CA")?));
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
