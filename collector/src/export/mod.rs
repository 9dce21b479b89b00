//! Exporting what the collector holds: OTLP metrics (gRPC or http/protobuf, configured by the
//! standard `OTEL_*` variables) and `GET /metrics` in Prometheus text format, both rendered from
//! one data model ([`model`]) so names and values agree.
//!
//! Signals: every series is a metric. Load-test windows and hog verdicts are exported as gauges
//! (`bakery.window.active`, `bakery.hog.active`: 1 while open / in force) and a counter
//! (`bakery.hog.verdicts` by cause), not as OTLP logs: one pipeline reaches OTLP backends and
//! Prometheus scrapers alike, and Grafana draws annotations from a metric query (regions where
//! the series is 1). See charts/bakery/dashboards/bakery.json.
//!
//! Kubernetes and diagnosis data come in through [`hooks::ExportFeed`] (the live diagnosis,
//! [`crate::live::Diagnosis`], implements it; see `feed.rs`); without it pods are exported by UID
//! only and the diagnosis series are absent.
//!
//! Resources: each node is its own OTLP Resource (`k8s.node.name`, `host.name`,
//! `service.instance.id` = the node, `k8s.cluster.name` from `--cluster-name`); so is each pod
//! (`k8s.pod.uid`, `k8s.pod.name`, `k8s.namespace.name`, the workload's `k8s.<kind>.name`,
//! `k8s.node.name`, `k8s.cluster.name`, `service.instance.id` = the pod UID), so entity-aware
//! backends link pod series to the pod; the collector's own series (diagnosis,
//! `bakery.export.dropped`, refusals, and in [`self_metrics`] whether each node's agent reports
//! and whether commits succeed) a Resource with `service.instance.id` = `bakery-collector`.
//! `/metrics` puts `k8s.node.name`, `k8s.cluster.name` and a pod's identity on its series as
//! labels; an OTLP backend keeps resource attributes on `target_info` unless told to promote them
//! (Prometheus 3: `otlp.promote_resource_attributes`; Mimir:
//! `-distributor.otel-promote-resource-attributes`), and the dashboard expects those labels
//! (`k8s.node.name`, `k8s.cluster.name`, and for pod panels `k8s.pod.name`, `k8s.namespace.name`).
//!
//! Names, units, instruments and value types follow the semantic-conventions registry v1.44.0;
//! `semconv.rs` holds every exported metric against a table written from it.
//!
//! Configuration: the `OTEL_EXPORTER_OTLP_[METRICS_]{ENDPOINT,HEADERS,TIMEOUT,COMPRESSION}`
//! variables are read by `opentelemetry-otlp` itself (nothing is set in code, so they win);
//! `..._PROTOCOL`, `OTEL_SDK_DISABLED`, `OTEL_METRIC_EXPORT_INTERVAL`, `OTEL_METRIC_EXPORT_TIMEOUT`
//! are resolved in [`otlp::resolve_settings`], and `..._{CERTIFICATE,CLIENT_CERTIFICATE,CLIENT_KEY}`
//! in [`backend_tls`], for both transports (so is `..._TIMEOUT` for http/protobuf, whose client
//! bakery builds). Counters are the agents' raw cumulative counters with the
//! start time of the collector's pipeline: a counter that resets (reboot, pod restart) goes down,
//! which Prometheus-style backends treat as a reset.

pub mod backend_tls;
#[cfg(test)]
mod dashboard;
mod feed;
pub mod hooks;
mod http;
pub mod model;
pub mod otlp;
pub mod prometheus;
pub mod self_metrics;
#[cfg(test)]
mod semconv;
pub mod snapshot;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

pub use hooks::ExportHooks;
pub use otlp::{ExportStats, OtlpSettings, Protocol};

use crate::error::Result;
use crate::state::Shared;

/// The default `--metrics-listen` (9464: the OpenTelemetry Prometheus exporter's port; the Helm
/// chart names it `metrics`).
pub const DEFAULT_METRICS_LISTEN: &str = "0.0.0.0:9464";

/// What to export, and where.
#[derive(Debug, Clone, Default)]
pub struct ExportConfig {
    /// Serve `/metrics` here (`None`: no endpoint).
    pub metrics_listen: Option<SocketAddr>,
    /// Fail start-up when `metrics_listen` cannot be bound. Off for the default address, so a
    /// second collector on one host (or a test) still ingests, with an error in the log.
    pub metrics_listen_required: bool,
    /// Serve `/metrics` only to a read or control token (`--metrics-require-token`).
    pub metrics_require_token: bool,
    /// Export OTLP with these settings (`None`: no OTLP).
    pub otlp: Option<OtlpSettings>,
    pub hooks: ExportHooks,
}

/// The running export.
pub struct Export {
    metrics_addr: Option<SocketAddr>,
    http: Option<JoinHandle<()>>,
    otlp: Option<otlp::OtlpExport>,
    /// Resolves (with an error) once the OTLP task dropped its point source: when it ended.
    otlp_ended: Option<oneshot::Receiver<()>>,
    stats: Arc<ExportStats>,
}

/// Every resource's current points: the nodes, then the collector's own.
pub async fn current_points(shared: &Shared, hooks: &ExportHooks, stats: &ExportStats) -> Vec<model::ResourcePoints> {
    let feed = match &hooks.feed {
        Some(feed) => feed.read().await,
        None => hooks::FeedSnapshot::default(),
    };
    let now_ms = crate::now_ms();
    let nodes = snapshot::snapshot_nodes(&shared.registry, now_ms);
    let mut points = model::all_points(&nodes, hooks.cluster_name.as_deref(), &feed, stats.dropped());
    if let Some(collector) = points.iter_mut().find(|r| r.instance == model::COLLECTOR_INSTANCE) {
        collector.points.extend(model::refusal_points(&shared.auth.refusal_counts().snapshot()));
        collector.points.extend(model::ingest_refusal_points(&shared.refusals.counts().snapshot()));
        collector.points.extend(self_metrics::agent_points(&snapshot::agents_reporting(&shared.registry, now_ms)));
        let health = &shared.health;
        collector.points.extend(self_metrics::commit_points(health.last_commit_ok_unix_ms(), health.failed_commits()));
    }
    points
}

impl Export {
    /// Starts the `/metrics` endpoint and the OTLP export as configured. Runs inside the
    /// runtime (the gRPC exporter needs it). Stops serving when `shutdown` turns true; call
    /// [`Export::stop`] after ingest has stopped to send the final values.
    pub async fn start(
        config: &ExportConfig,
        feed: Option<Arc<dyn hooks::ExportFeed>>,
        shared: Arc<Shared>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Export> {
        let stats = Arc::new(ExportStats::default());
        let mut hooks = config.hooks.clone();
        if hooks.feed.is_none() {
            hooks.feed = feed;
        }
        let guard = if config.metrics_require_token {
            if !shared.auth.roles_separated() {
                return Err(crate::Error::Config(
                    "--metrics-require-token needs --read-token-file or --control-token-file: /metrics is served \
                     to read tokens"
                        .into(),
                ));
            }
            let shared = shared.clone();
            let guard: http::Guard = Arc::new(move |header, peer| shared.auth.authorize_metrics(header, peer));
            Some(guard)
        } else {
            None
        };
        let source: otlp::PointSource = {
            let stats = stats.clone();
            Arc::new(move || {
                let (shared, hooks, stats) = (shared.clone(), hooks.clone(), stats.clone());
                Box::pin(async move { current_points(&shared, &hooks, &stats).await })
            })
        };
        let (metrics_addr, http) = match config.metrics_listen {
            Some(listen) => match http::serve(listen, source.clone(), guard, shutdown).await {
                Ok((addr, task)) => {
                    let token = config.metrics_require_token;
                    tracing::info!(%addr, requires_read_token = token, "serving Prometheus /metrics");
                    if !token && !addr.ip().is_loopback() {
                        tracing::warn!(%addr, "/metrics (node and pod names, traffic) is open to anyone who reaches this address; bind it to 127.0.0.1, turn it off (--metrics-listen off) or add --metrics-require-token");
                    }
                    (Some(addr), Some(task))
                }
                Err(error) if !config.metrics_listen_required => {
                    tracing::error!(%error, "not serving /metrics (pass --metrics-listen to choose another address)");
                    (None, None)
                }
                Err(error) => return Err(error),
            },
            None => (None, None),
        };
        let (otlp, otlp_ended) = match &config.otlp {
            Some(settings) => {
                let exporter = otlp::build_exporter(settings)?;
                tracing::info!(
                    protocol = ?settings.protocol,
                    interval_ms = settings.interval.as_millis() as u64,
                    "exporting OTLP metrics (endpoint, headers, timeout, compression: OTEL_EXPORTER_OTLP_* variables)"
                );
                // The OTLP task owns its point source until it ends, however it ends (a return
                // or a panic): the source's drop is the signal that it ended.
                let (ended_tx, ended_rx) = oneshot::channel::<()>();
                let watched: otlp::PointSource = Arc::new(move || {
                    let _held_until_the_task_ends = &ended_tx;
                    source()
                });
                (Some(otlp::OtlpExport::start(settings.clone(), exporter, watched, stats.clone())), Some(ended_rx))
            }
            None => (None, None),
        };
        Ok(Export { metrics_addr, http, otlp, otlp_ended, stats })
    }

    /// Resolves when an export task ended by itself (it panicked, or the `/metrics` server
    /// failed), saying which; pending while they run. Before a shutdown, that is a fault the
    /// collector exits on. A task that ended is not watched again.
    pub async fn ended(&mut self) -> String {
        enum Ended {
            Http(bool),
            Otlp,
        }
        let Export { http, otlp_ended, .. } = self;
        let http_task = async {
            match http.as_mut() {
                Some(task) => Ended::Http(task.await.is_err_and(|join| join.is_panic())),
                None => std::future::pending().await,
            }
        };
        let otlp_task = async {
            match otlp_ended.as_mut() {
                Some(ended) => {
                    let _ = ended.await;
                    Ended::Otlp
                }
                None => std::future::pending().await,
            }
        };
        let ended = tokio::select! {
            ended = http_task => ended,
            ended = otlp_task => ended,
        };
        match ended {
            Ended::Http(panicked) => {
                self.http = None;
                if panicked { "the /metrics server task panicked" } else { "the /metrics server stopped" }.to_string()
            }
            Ended::Otlp => {
                self.otlp_ended = None;
                "the OTLP export task ended".to_string()
            }
        }
    }

    /// Where `/metrics` is served (the real port when the listen port was 0).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    pub fn stats(&self) -> &Arc<ExportStats> {
        &self.stats
    }

    /// Sends the last OTLP export and stops (the `/metrics` server stops with the collector's
    /// shutdown signal).
    pub async fn stop(self) {
        if let Some(otlp) = self.otlp {
            otlp.shutdown().await;
        }
        if let Some(http) = self.http {
            let _ = http.await;
        }
    }
}
