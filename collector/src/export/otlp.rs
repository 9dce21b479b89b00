//! OTLP metrics export with `opentelemetry-otlp`: settings from the standard `OTEL_*`
//! variables (resolved here only where the crate does not: `OTEL_SDK_DISABLED`, the protocol
//! choice, the TLS files (see [`super::backend_tls`]), the interval), one SDK meter provider per
//! resource so each node and each pod is its own Resource, and a bounded queue between collecting
//! and sending so a slow or absent backend never reaches ingest.
//!
//! Why one provider per resource with a shared exporter: an SDK `MeterProvider` has exactly one
//! Resource, and the SDK's `ResourceMetrics` cannot be built by hand. Each resource's provider has
//! a `ManualReader` (shut down when its resource is no longer exported: pods come and go); one
//! task collects them all every interval and hands the batch to one sender task over a queue of
//! [`QUEUE_CAPACITY`] batches. Each metric's instrument follows its kind and value type (`u64`
//! counters, `i64` up-down counters and gauges for integral sources, `f64` otherwise). The
//! exporter itself (endpoint, headers, timeout, compression) stays configured by the
//! environment, never by code.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{AsyncInstrument, MeterProvider as _};
use opentelemetry_otlp::{MetricExporter, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{InstrumentKind, ManualReader, Pipeline, SdkMeterProvider, Temporality};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::backend_tls::BackendTlsFiles;
use super::model::{ALL, AttrValue, Kind, Number, Point, ResourcePoints};
use crate::error::{Error, Result};

/// Export batches (one per interval, every resource) that may wait for the sender.
pub const QUEUE_CAPACITY: usize = 2;
/// `OTEL_METRIC_EXPORT_INTERVAL` default (OpenTelemetry SDK environment variable spec).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// `OTEL_METRIC_EXPORT_TIMEOUT` default (same spec).
pub const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(30);
/// `OTEL_EXPORTER_OTLP_TIMEOUT` default (OTLP exporter spec): one request to the backend.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(value: &str) -> std::result::Result<Self, String> {
        match value.trim() {
            "grpc" => Ok(Protocol::Grpc),
            "http/protobuf" => Ok(Protocol::HttpProtobuf),
            other => Err(format!("OTLP protocol {other:?} is not supported: use grpc or http/protobuf")),
        }
    }
}

/// Resolved OTLP settings (what the exporter crate reads itself is not repeated here).
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpSettings {
    pub protocol: Protocol,
    pub interval: Duration,
    pub export_timeout: Duration,
    /// One request's limit, from `OTEL_EXPORTER_OTLP_[METRICS_]TIMEOUT`.
    pub request_timeout: Duration,
    /// Trust roots and client identity for an `https://` backend.
    pub tls: BackendTlsFiles,
}

fn env_pair(env: &dyn Fn(&str) -> Option<String>, metrics_var: &str, general_var: &str) -> Option<String> {
    env(metrics_var).or_else(|| env(general_var)).filter(|v| !v.trim().is_empty())
}

fn millis(env: &dyn Fn(&str) -> Option<String>, var: &str, default: Duration) -> Result<Duration> {
    millis_value(env(var), var, default)
}

fn millis_value(value: Option<String>, var: &str, default: Duration) -> Result<Duration> {
    match value.filter(|v| !v.trim().is_empty()) {
        None => Ok(default),
        Some(value) => value
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis)
            .ok_or_else(|| Error::Config(format!("{var}={value:?}: expected a positive number of milliseconds"))),
    }
}

/// Decides whether and how to export. `enabled` is `--otlp`; setting an OTLP endpoint variable
/// enables it too. `OTEL_SDK_DISABLED=true` wins over both (the crate ignores that variable).
/// The protocol comes from `OTEL_EXPORTER_OTLP_METRICS_PROTOCOL`, then
/// `OTEL_EXPORTER_OTLP_PROTOCOL`, then `--otlp-protocol`, then http/protobuf (the spec's default).
pub fn resolve_settings(
    env: &dyn Fn(&str) -> Option<String>,
    enabled: bool,
    flag_protocol: Option<Protocol>,
) -> Result<Option<OtlpSettings>> {
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    let endpoint = env_pair(env, "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT");
    if !enabled && endpoint.is_none() {
        return Ok(None);
    }
    let protocol = match env_pair(env, "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL") {
        Some(value) => value.parse().map_err(Error::Config)?,
        None => flag_protocol.unwrap_or(Protocol::HttpProtobuf),
    };
    let request_timeout = millis_value(
        env_pair(env, "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"),
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        DEFAULT_REQUEST_TIMEOUT,
    )?;
    Ok(Some(OtlpSettings {
        protocol,
        interval: millis(env, "OTEL_METRIC_EXPORT_INTERVAL", DEFAULT_INTERVAL)?,
        export_timeout: millis(env, "OTEL_METRIC_EXPORT_TIMEOUT", DEFAULT_EXPORT_TIMEOUT)?,
        request_timeout,
        tls: BackendTlsFiles::from_env(env)?,
    }))
}

/// Builds the exporter. Must run inside the tokio runtime (tonic needs its reactor).
pub fn build_exporter(settings: &OtlpSettings) -> Result<MetricExporter> {
    let built = match settings.protocol {
        Protocol::Grpc => MetricExporter::builder()
            .with_tonic()
            .with_tls_config(settings.tls.tonic_config()?)
            .with_temporality(Temporality::Cumulative)
            .build(),
        Protocol::HttpProtobuf => MetricExporter::builder()
            .with_http()
            .with_http_client(settings.tls.reqwest_client(settings.request_timeout)?)
            .with_temporality(Temporality::Cumulative)
            .build(),
    };
    built.map_err(|e| Error::Config(format!("cannot configure the OTLP exporter: {e}")))
}

/// Counters the export keeps about itself.
#[derive(Debug, Default)]
pub struct ExportStats {
    /// Resource exports (one per node and the collector, per interval) that never reached the
    /// backend: queue full, backend failed, or too slow.
    pub dropped: AtomicU64,
    /// Resource exports the backend accepted.
    pub exported: AtomicU64,
}

impl ExportStats {
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
    pub fn exported(&self) -> u64 {
        self.exported.load(Ordering::Relaxed)
    }
}

/// A `ManualReader` the provider owns and the export loop collects through.
#[derive(Debug, Clone)]
struct SharedReader(Arc<ManualReader>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline)
    }
    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

/// The points each instrument's callback observes, by catalogue index.
type SharedPoints = Arc<Mutex<Vec<Vec<Point>>>>;

/// One resource's SDK pipeline.
struct ResourcePipeline {
    provider: SdkMeterProvider,
    reader: SharedReader,
    points: SharedPoints,
}

fn key_values(attributes: &[(&'static str, AttrValue)]) -> Vec<KeyValue> {
    attributes
        .iter()
        .map(|(key, value)| match value {
            AttrValue::Str(s) => KeyValue::new(*key, s.clone()),
            AttrValue::Int(i) => KeyValue::new(*key, *i),
        })
        .collect()
}

/// `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_SERVICE_NAME` (read by the SDK's detectors), then the
/// resource's own attributes; `service.name` defaults to `bakery` when neither variable sets it.
fn resource_for(resource: &ResourcePoints) -> Resource {
    let service_named_by_env = std::env::var_os("OTEL_SERVICE_NAME").is_some()
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| v.contains("service.name="));
    let mut builder = Resource::builder();
    if !service_named_by_env {
        builder = builder.with_service_name("bakery");
    }
    builder.with_attributes(key_values(&resource.resource)).build()
}

impl ResourcePipeline {
    fn new(resource: &ResourcePoints) -> ResourcePipeline {
        let reader = SharedReader(Arc::new(ManualReader::builder().with_temporality(Temporality::Cumulative).build()));
        let provider =
            SdkMeterProvider::builder().with_resource(resource_for(resource)).with_reader(reader.clone()).build();
        let meter = provider.meter("bakery-collector");
        let points: SharedPoints = Arc::new(Mutex::new(vec![Vec::new(); ALL.len()]));
        for (index, metric) in ALL.iter().enumerate() {
            let shared = points.clone();
            // Observes this metric's points, converted to the instrument's value type.
            macro_rules! observe {
                ($t:ty) => {
                    move |observer: &dyn AsyncInstrument<$t>| {
                        let points = shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        for point in points.get(index).into_iter().flatten() {
                            observer.observe(point.value as $t, &key_values(&point.attributes));
                        }
                    }
                };
            }
            // The instruments stay registered with the provider; the handles are not needed.
            macro_rules! build {
                ($builder:ident, $t:ty) => {{
                    meter
                        .$builder(metric.name)
                        .with_unit(metric.unit)
                        .with_description(metric.description)
                        .with_callback(observe!($t))
                        .build();
                }};
            }
            match (metric.kind, metric.number) {
                (Kind::Counter, Number::Int) => build!(u64_observable_counter, u64),
                (Kind::Counter, Number::Double) => build!(f64_observable_counter, f64),
                (Kind::UpDownCounter, Number::Int) => build!(i64_observable_up_down_counter, i64),
                (Kind::UpDownCounter, Number::Double) => build!(f64_observable_up_down_counter, f64),
                (Kind::Gauge, Number::Int) => build!(i64_observable_gauge, i64),
                (Kind::Gauge, Number::Double) => build!(f64_observable_gauge, f64),
            }
        }
        ResourcePipeline { provider, reader, points }
    }

    /// Sets the points and collects them into the SDK's export form.
    fn collect(&self, resource: &ResourcePoints) -> Option<ResourceMetrics> {
        {
            let mut by_metric = self.points.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            by_metric.iter_mut().for_each(Vec::clear);
            for point in &resource.points {
                if let Some(index) = ALL.iter().position(|m| m.name == point.metric.name) {
                    by_metric[index].push(point.clone());
                }
            }
        }
        let mut metrics = ResourceMetrics::default();
        match self.reader.collect(&mut metrics) {
            Ok(()) => Some(metrics),
            Err(error) => {
                tracing::warn!(%error, instance = %resource.instance, "collecting OTLP metrics failed");
                None
            }
        }
    }
}

/// Produces the points to export (node snapshots plus the collector's own), on demand.
pub type PointSource =
    Arc<dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<ResourcePoints>> + Send>> + Send + Sync>;

/// A running OTLP export.
pub struct OtlpExport {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl OtlpExport {
    /// Starts collecting every `settings.interval` and sending. Call inside the runtime.
    pub fn start(
        settings: OtlpSettings,
        exporter: MetricExporter,
        source: PointSource,
        stats: Arc<ExportStats>,
    ) -> Self {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(settings, exporter, source, stats, stopped));
        OtlpExport { stop, task }
    }

    /// Collects and sends a last time, then shuts the exporter down.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(error) = self.task.await {
            tracing::warn!(%error, "the OTLP export task failed");
        }
    }
}

async fn run(
    settings: OtlpSettings,
    exporter: MetricExporter,
    source: PointSource,
    stats: Arc<ExportStats>,
    mut stopped: watch::Receiver<bool>,
) {
    let (queue, batches) = mpsc::channel::<Vec<(String, ResourceMetrics)>>(QUEUE_CAPACITY);
    let sender = tokio::spawn(send_batches(exporter, batches, settings.export_timeout, stats.clone()));
    let mut pipelines: HashMap<String, ResourcePipeline> = HashMap::new();
    let mut ticker = tokio::time::interval(settings.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // the first tick is immediate; the first export comes one interval in
    loop {
        let last = tokio::select! {
            _ = ticker.tick() => false,
            _ = stopped.wait_for(|stop| *stop) => true,
        };
        let resources = source().await;
        let batch: Vec<(String, ResourceMetrics)> = resources
            .iter()
            .filter_map(|resource| {
                let pipeline =
                    pipelines.entry(resource.instance.clone()).or_insert_with(|| ResourcePipeline::new(resource));
                pipeline.collect(resource).map(|metrics| (resource.instance.clone(), metrics))
            })
            .collect();
        let count = batch.len() as u64;
        // Pods come and go: a resource no longer exported takes its pipeline with it.
        pipelines.retain(|instance, pipeline| {
            let current = resources.iter().any(|r| &r.instance == instance);
            if !current {
                let _ = pipeline.provider.shutdown();
            }
            current
        });
        if last {
            // SIGTERM: wait (bounded) for room so the final values are sent.
            if tokio::time::timeout(settings.export_timeout, queue.send(batch)).await.map_or(true, |r| r.is_err()) {
                stats.dropped.fetch_add(count, Ordering::Relaxed);
            }
            break;
        }
        if queue.try_send(batch).is_err() {
            stats.dropped.fetch_add(count, Ordering::Relaxed);
            tracing::warn!(dropped = count, "OTLP export queue full (backend slow or down): dropping this interval");
        }
    }
    drop(queue);
    if let Err(error) = sender.await {
        tracing::warn!(%error, "the OTLP sender task failed");
    }
    for (_, pipeline) in pipelines {
        let _ = pipeline.provider.shutdown();
    }
}

async fn send_batches(
    exporter: MetricExporter,
    mut batches: mpsc::Receiver<Vec<(String, ResourceMetrics)>>,
    timeout: Duration,
    stats: Arc<ExportStats>,
) {
    let mut failing = false;
    while let Some(batch) = batches.recv().await {
        for (instance, metrics) in batch {
            match tokio::time::timeout(timeout, exporter.export(&metrics)).await {
                Ok(Ok(())) => {
                    stats.exported.fetch_add(1, Ordering::Relaxed);
                    if failing {
                        tracing::info!("OTLP export works again");
                        failing = false;
                    }
                }
                Ok(Err(error)) => {
                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                    if !failing {
                        tracing::warn!(%error, %instance, "OTLP export failed; counting drops until it works again");
                        failing = true;
                    }
                }
                Err(_) => {
                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                    if !failing {
                        tracing::warn!(%instance, timeout_ms = timeout.as_millis() as u64, "OTLP export timed out");
                        failing = true;
                    }
                }
            }
        }
    }
    if let Err(error) = exporter.shutdown() {
        tracing::debug!(%error, "OTLP exporter shutdown");
    }
}

/// One collection of `resource` through its own SDK pipeline, as the export sends it.
#[cfg(test)]
pub(super) fn collect_once(resource: &ResourcePoints) -> Option<ResourceMetrics> {
    let pipeline = ResourcePipeline::new(resource);
    let metrics = pipeline.collect(resource);
    let _ = pipeline.provider.shutdown();
    metrics
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn env_of(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn disabled_unless_asked_and_sdk_disabled_wins() {
        assert_eq!(resolve_settings(&env_of(&[]), false, None).unwrap(), None);
        let endpoint_only = resolve_settings(&env_of(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318")]), false, None);
        assert_eq!(endpoint_only.unwrap().unwrap().protocol, Protocol::HttpProtobuf);
        let disabled = env_of(&[("OTEL_SDK_DISABLED", "TRUE"), ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318")]);
        assert_eq!(resolve_settings(&disabled, true, Some(Protocol::Grpc)).unwrap(), None);
    }

    #[test]
    fn env_protocol_beats_the_flag_and_the_metrics_variant_beats_the_general_one() {
        let general = env_of(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]);
        assert_eq!(
            resolve_settings(&general, true, Some(Protocol::Grpc)).unwrap().unwrap().protocol,
            Protocol::HttpProtobuf
        );
        let both = env_of(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "grpc"),
        ]);
        assert_eq!(resolve_settings(&both, true, None).unwrap().unwrap().protocol, Protocol::Grpc);
        assert_eq!(
            resolve_settings(&env_of(&[]), true, Some(Protocol::Grpc)).unwrap().unwrap().protocol,
            Protocol::Grpc
        );
        assert!(resolve_settings(&env_of(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]), true, None).is_err());
    }

    #[test]
    fn interval_and_timeout_come_from_the_sdk_variables() {
        let vars = env_of(&[("OTEL_METRIC_EXPORT_INTERVAL", "250"), ("OTEL_METRIC_EXPORT_TIMEOUT", "1000")]);
        let settings = resolve_settings(&vars, true, None).unwrap().unwrap();
        assert_eq!((settings.interval, settings.export_timeout), (Duration::from_millis(250), Duration::from_secs(1)));
        assert_eq!(resolve_settings(&env_of(&[]), true, None).unwrap().unwrap().interval, DEFAULT_INTERVAL);
        assert!(resolve_settings(&env_of(&[("OTEL_METRIC_EXPORT_INTERVAL", "soon")]), true, None).is_err());
    }

    #[test]
    fn the_request_timeout_and_tls_files_come_from_the_exporter_variables() {
        let vars = env_of(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://otlp.example:4318"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/ca.pem"),
        ]);
        let settings = resolve_settings(&vars, true, None).unwrap().unwrap();
        assert_eq!(settings.request_timeout, Duration::from_millis(2500));
        assert_eq!(settings.tls.certificate, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(
            resolve_settings(&env_of(&[]), true, None).unwrap().unwrap().request_timeout,
            DEFAULT_REQUEST_TIMEOUT
        );
        assert!(resolve_settings(&env_of(&[("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "-1")]), true, None).is_err());
    }
}
