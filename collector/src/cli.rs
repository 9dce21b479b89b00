//! The collector's command line: `serve` (the default) and `inspect`, each flag with an env
//! fallback, and the help people read first.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::auth::Credentials;
use crate::commit::CommitConfig;
use crate::export::{DEFAULT_METRICS_LISTEN, ExportConfig, ExportHooks, Protocol};
use crate::health::DEFAULT_HEALTH_LISTEN;
use crate::kube::KubeMode;
use crate::limits::IngestLimits;
use crate::live::DiagnosisConfig;
use crate::server::{Collector, DEFAULT_LISTEN, ServeConfig, TlsFiles};

/// bakery-collector receives the bakery agents' streams, stores every sample durably in an
/// embedded database under --data-dir, acknowledges what is on disk, and serves queries.
///
/// A sample the collector acknowledged is durable; a sample never acknowledged is sent again by
/// the agent. Run `bakery-collector inspect --data-dir DIR` on a stopped collector to see, per
/// node, what is stored and every gap with its reason.
#[derive(Debug, Parser)]
#[command(
    name = "bakery-collector",
    version,
    about,
    long_about,
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Without a subcommand the collector serves, with these flags.
    #[command(flatten)]
    pub serve: ServeArgs,
}

// Parsed once at start; boxing the serve flags would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the Ingest and Query gRPC services (the default).
    Serve(ServeArgs),
    /// Print what a stopped collector's store holds, per node.
    Inspect(InspectArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address for the gRPC services (Ingest for agents, Query for clients).
    #[arg(long, env = "BAKERY_LISTEN", default_value = DEFAULT_LISTEN, value_name = "ADDR")]
    pub listen: SocketAddr,

    /// Directory of the embedded store (created if missing). One collector per directory.
    #[arg(long, env = "BAKERY_DATA_DIR", value_name = "DIR", required = true)]
    pub data_dir: Option<PathBuf>,

    // Authentication: who may stream (ingest), read and control. See `crate::auth`.
    /// The SHARED ingest token(s), one per line, for the demo, quick tests and clusters without
    /// TokenReview. It does NOT bind identity: whoever holds it may stream as ANY node (and
    /// replace that node's stream). Without --read-token-file and --control-token-file it also
    /// reads and controls (one token for everything).
    /// Token files (this one and the ones below) take one entry per line, `#` comments and blank
    /// lines ignored, and are re-read when they change: list the old and the new token while
    /// rotating.
    #[arg(long, env = "BAKERY_TOKEN_FILE", value_name = "FILE", help_heading = "Authentication")]
    pub token_file: Option<PathBuf>,

    /// Node tokens: `NODE TOKEN` per line (e.g. `pi-1 7f3c...`). A token proves its node: a
    /// stream that says Hello as another node is refused (PERMISSION_DENIED), so a stolen token
    /// of one node cannot write another's data.
    #[arg(long, env = "BAKERY_NODE_TOKEN_FILE", value_name = "FILE", help_heading = "Authentication")]
    pub node_token_file: Option<PathBuf>,

    /// Read tokens, one per line, for people and scrapers: the Query reads (bakery-top, alerts,
    /// reports) and /metrics with --metrics-require-token. Giving this or --control-token-file
    /// separates roles: agent credentials then only stream.
    #[arg(long, env = "BAKERY_READ_TOKEN_FILE", value_name = "FILE", help_heading = "Authentication")]
    pub read_token_file: Option<PathBuf>,

    /// Control tokens, one per line: read, plus changing every agent's sampling interval
    /// (SetInterval) and opening and closing load-test windows (`bakery-top window`,
    /// `bakery-top loadtest`).
    #[arg(long, env = "BAKERY_CONTROL_TOKEN_FILE", value_name = "FILE", help_heading = "Authentication")]
    pub control_token_file: Option<PathBuf>,

    /// The agents' Kubernetes ServiceAccount, NAMESPACE/NAME (the chart sets it). A bearer token
    /// that no token file lists is checked with a TokenReview (audience `bakery`) through the
    /// collector's cluster connection (RBAC: create on tokenreviews); it is accepted only for
    /// this account and proves the node its pod runs on. Agents mount a projected
    /// serviceAccountToken volume with audience `bakery`. Reviews are cached up to a minute.
    #[arg(long, env = "BAKERY_AGENT_SERVICE_ACCOUNT", value_name = "NAMESPACE/NAME", help_heading = "Authentication")]
    pub agent_service_account: Option<crate::auth::ServiceAccountRef>,

    /// Accept everyone without a credential, for every call, as any node: identity is NOT
    /// checked (plaintext on a trusted network, a lab or a test only).
    #[arg(
        long,
        env = "BAKERY_INSECURE_NO_AUTH",
        conflicts_with_all = ["token_file", "node_token_file", "read_token_file", "control_token_file", "agent_service_account"],
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new(),
        help_heading = "Authentication"
    )]
    pub insecure_no_auth: bool,

    /// Serve TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, env = "BAKERY_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The TLS private key (PEM).
    #[arg(long, env = "BAKERY_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Accept client certificates signed by this CA (mutual TLS). A certificate proves the node
    /// named by its Subject CN (or, without one, its first DNS subject alternative name) and
    /// grants ingest only; people use read and control tokens. Without any token flag a
    /// certificate is required at the handshake; with them it is optional.
    #[arg(
        long,
        env = "BAKERY_TLS_CLIENT_CA",
        value_name = "FILE",
        requires = "tls_cert",
        help_heading = "Authentication"
    )]
    pub tls_client_ca: Option<PathBuf>,

    /// Remove samples, gaps and window reports older than this (by collector receive time; a
    /// report by its window's end).
    #[arg(long, env = "BAKERY_RETENTION", default_value = "7d", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub retention: Duration,

    // Faults and bounds: --retention-size, --health-listen and the hidden test-only --fault.
    /// Keep the store file's disk use under SIZE (2GiB, 500MB, 750MiB). A full disk stops
    /// every commit and ack (the agents then keep their data in their spools), so on an SD card
    /// or a small volume set this below the free space: once the file reaches 90 % of SIZE and
    /// still grows, the oldest samples of all nodes are removed, in bounded steps, and their
    /// space is reused. The file never shrinks (redb reuses pages; it does not give them back),
    /// so lowering SIZE frees room inside the file, not on the disk. Unset: only --retention
    /// bounds the store.
    #[arg(long, env = "BAKERY_RETENTION_SIZE", value_parser = crate::store::retention::parse_size, value_name = "SIZE")]
    pub retention_size: Option<u64>,

    /// Serve GET /livez and GET /readyz (no data, no auth) at http://ADDR for the kubelet:
    /// ready while the store is open and commits succeed, live unless the committer is stuck.
    /// [default: 0.0.0.0:9465; when that port is taken the collector runs on without them]
    #[arg(long, env = "BAKERY_HEALTH_LISTEN", value_name = "ADDR")]
    pub health_listen: Option<SocketAddr>,

    /// For bakery's own tests only, refused unless BAKERY_TEST_ONLY_ALLOW_FAULTS=1 is also set:
    /// `committer-panic-after=N` makes the committer panic after N commits.
    #[arg(long, env = "BAKERY_FAULT", value_name = "FAULT", hide = true)]
    pub fault: Option<String>,

    /// Commit what arrived this often, in one transaction: longer means fewer writes (SD-card
    /// wear), shorter means faster acks.
    #[arg(long, env = "BAKERY_COMMIT_INTERVAL", default_value = "200ms", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub commit_interval: Duration,

    /// Write the bound address (useful with port 0) to this file once serving.
    #[arg(long, env = "BAKERY_READY_FILE", value_name = "FILE")]
    pub ready_file: Option<PathBuf>,

    /// Watch the cluster through this kubeconfig (its current context). Without it, the
    /// configuration is inferred: $KUBECONFIG or ~/.kube/config, else the in-cluster service
    /// account; with neither, the collector runs as with --no-kubernetes.
    // Not `env = "KUBECONFIG"`: inference reads it (also a `:`-separated list, and an empty
    // value means unset, which clap would refuse).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// Run without a cluster: pods are named by UID, workloads are unknown, node-level diagnosis
    /// still works.
    #[arg(long, env = "BAKERY_NO_KUBERNETES", action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub no_kubernetes: bool,

    /// The sampling interval agents are asked for while a load-test window is open (restored
    /// when it closes).
    #[arg(long, env = "BAKERY_WINDOW_INTERVAL", default_value = "250ms", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub window_interval: Duration,

    /// Do not open windows by themselves when traffic surges over its baseline.
    #[arg(long, env = "BAKERY_NO_AUTO_WINDOWS", action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub no_auto_windows: bool,

    /// Serve the metrics in Prometheus text format at http://ADDR/metrics; `off` (or empty)
    /// serves none. /metrics names nodes and pods: bind it to 127.0.0.1:9464 to keep it on the
    /// host, or add --metrics-require-token.
    /// [default: 0.0.0.0:9464; when that port is taken the collector runs on without /metrics]
    #[arg(long, visible_alias = "metrics", env = "BAKERY_METRICS_LISTEN", value_name = "ADDR|off", value_parser = parse_metrics_listen)]
    pub metrics_listen: Option<MetricsListen>,

    /// Serve /metrics only to `Authorization: Bearer <token>` with a read or control token
    /// (needs --read-token-file or --control-token-file); others get 401 or 403.
    #[arg(long, env = "BAKERY_METRICS_REQUIRE_TOKEN", action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub metrics_require_token: bool,

    /// Export OTLP metrics. Endpoint, headers, timeout, compression, interval and resource
    /// attributes come from the standard OTEL_EXPORTER_OTLP_*, OTEL_METRIC_EXPORT_INTERVAL,
    /// OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME variables; setting
    /// OTEL_EXPORTER_OTLP_ENDPOINT enables the export too, OTEL_SDK_DISABLED=true disables it.
    #[arg(
        long,
        env = "BAKERY_OTLP",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub otlp: bool,

    /// OTLP transport when OTEL_EXPORTER_OTLP_PROTOCOL (or its _METRICS_ variant) is unset:
    /// grpc (port 4317) or http/protobuf (port 4318, the default).
    #[arg(long, value_name = "PROTOCOL")]
    pub otlp_protocol: Option<Protocol>,

    /// The cluster's name, exported as k8s.cluster.name on every series.
    #[arg(long, env = "BAKERY_CLUSTER_NAME", value_name = "NAME")]
    pub cluster_name: Option<String>,

    // Limits: what one agent (or a client posing as many) can make the collector keep. Every
    // refusal and cut is counted on /metrics as bakery_collector_ingest_refusals_total{cause}.
    /// Most nodes kept in memory. A Hello naming one more is refused (RESOURCE_EXHAUSTED) unless
    /// Kubernetes lists that node; a node that is not connected, not listed and silent for
    /// --forget-nodes-after is forgotten from memory to make room (its data stays in the store,
    /// and it comes back as itself when its agent connects). At start, only this many nodes
    /// (the most recently seen) are read in full.
    #[arg(long, env = "BAKERY_MAX_NODES", default_value = "256", value_parser = parse_count, value_name = "N", help_heading = "Limits")]
    pub max_nodes: usize,

    /// Most pods one sample may hold and pod identities a node keeps in memory (the kubelet's
    /// default is 110 pods per node). A batch over it is refused; identities of pods gone from
    /// a node are forgotten first.
    #[arg(long, env = "BAKERY_MAX_PODS_PER_NODE", default_value = "512", value_parser = parse_count, value_name = "N", help_heading = "Limits")]
    pub max_pods_per_node: usize,

    /// Most entries kept per list of a sample (cores, frequencies, pressure lines,
    /// temperatures, fans, interfaces, unavailable signals): the rest are dropped and counted.
    /// Also the most samples a batch may hold (an agent sends one).
    #[arg(long, env = "BAKERY_MAX_SAMPLE_ENTRIES", default_value = "1024", value_parser = parse_count, value_name = "N", help_heading = "Limits")]
    pub max_sample_entries: usize,

    /// Most bytes kept of a name or path from an agent (interfaces, sensors, cgroup paths,
    /// pressure and unavailable entries, boot id, version): longer ones are cut and counted.
    /// Pod UIDs are cut at 64 bytes, QoS classes at 16; node names over 253 are refused.
    #[arg(long, env = "BAKERY_MAX_STRING_BYTES", default_value = "256", value_parser = parse_string_bytes, value_name = "BYTES", help_heading = "Limits")]
    pub max_string_bytes: usize,

    /// Most bytes of batches received and not yet committed (32MiB, 8MiB, ...). When they are
    /// reached, streams wait (the agents keep the data in their spools) until a commit frees
    /// room.
    #[arg(long, env = "BAKERY_MAX_QUEUE_BYTES", default_value = "32MiB", value_parser = parse_memory_size, value_name = "SIZE", help_heading = "Limits")]
    pub max_queue_bytes: usize,

    /// Most bytes of recent batches kept in memory for Query.History and the live analysis, all
    /// nodes together: each node keeps up to SIZE / --max-nodes (at most 256KiB, about 90
    /// samples of a node with 30 pods). A batch larger than its node's share is stored but not
    /// kept in memory.
    #[arg(long, env = "BAKERY_MAX_HISTORY_BYTES", default_value = "48MiB", value_parser = parse_memory_size, value_name = "SIZE", help_heading = "Limits")]
    pub max_history_bytes: usize,

    /// Forget a node from memory once it has not been connected, nor listed by Kubernetes, for
    /// this long (its data stays in the store; `inspect` shows it).
    #[arg(long, env = "BAKERY_FORGET_NODES_AFTER", default_value = "10m", value_parser = humantime::parse_duration, value_name = "DURATION", help_heading = "Limits")]
    pub forget_nodes_after: Duration,
}

/// A positive count.
fn parse_count(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{text:?} is not a positive whole number")),
    }
}

/// Bytes of a string cap: room for a Kubernetes name at least.
fn parse_string_bytes(text: &str) -> Result<usize, String> {
    let n = parse_count(text)?;
    if n < 64 {
        return Err(format!("{n} bytes would cut ordinary names; give at least 64"));
    }
    Ok(n)
}

/// A memory size like 32MiB, at least 1MiB.
fn parse_memory_size(text: &str) -> Result<usize, String> {
    let bytes = crate::store::retention::parse_size(text)?;
    if bytes < 1 << 20 {
        return Err(format!("{text:?} is below the minimum of 1MiB"));
    }
    Ok(usize::try_from(bytes).unwrap_or(usize::MAX))
}

#[derive(Debug, Clone, Args)]
#[command(group = clap::ArgGroup::new("store").required(true).args(["data_dir", "file"]))]
pub struct InspectArgs {
    /// The stopped collector's --data-dir.
    #[arg(long, env = "BAKERY_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// A store file instead, such as one the collector moved aside because it could not open
    /// it (`bakery.redb.corrupt-<unix time>` in the data dir).
    #[arg(long, value_name = "FILE", conflicts_with = "data_dir")]
    pub file: Option<PathBuf>,

    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,

    /// Also scan every stored key and report sequence numbers nothing accounts for
    /// ("unaccounted") or that are accounted for twice ("double_accounted"); reads the whole
    /// store.
    #[arg(long)]
    pub verify: bool,
}

const EXAMPLES: &str = "\
Examples:
  bakery-collector --data-dir /var/lib/bakery --token-file /etc/bakery/tokens
  bakery-collector --data-dir /var/lib/bakery --agent-service-account bakery/bakery-agent \
      --read-token-file /etc/bakery/read/token --control-token-file /etc/bakery/control/token
  bakery-collector --data-dir ./data --node-token-file node-tokens --metrics-listen 127.0.0.1:9464
  bakery-collector serve --listen 127.0.0.1:7431 --data-dir ./data --insecure-no-auth
  bakery-collector --data-dir ./data --tls-cert tls.crt --tls-key tls.key --tls-client-ca ca.crt
  bakery-collector inspect --data-dir ./data                  # per node: samples, seqs, gaps
  bakery-collector inspect --data-dir ./data --json --verify | jq '.nodes[].gaps'
  bakery-collector inspect --file ./data/bakery.redb.corrupt-1767225600   # a store moved aside
  curl -fsS localhost:9465/readyz                             # ready? (503 with the reason)

Limits: messages up to 4 MiB; each stream up to 20x the rate of its declared interval, the
interval taken within 50ms..1h (burst 5 s of that, at least 100 messages), beyond which the
collector reads more slowly (backpressure). A batch or gap numbered beyond what its agent could
have produced (a full spool plus 40 per second since the node was last heard) is refused and
never acknowledged. The analysis runs on the collector's clock: a sample's own time counts only
within 5 s of its arrival. See the Limits flags for the caps; every refusal and cut is counted
per cause on /metrics as bakery_collector_ingest_refusals_total{cause}.
Logs: BAKERY_LOG=debug (tracing env-filter syntax), on stderr.";

impl ServeArgs {
    /// The server configuration these flags describe.
    pub fn to_config(&self) -> anyhow::Result<ServeConfig> {
        let data_dir = self.data_dir.clone().ok_or_else(|| anyhow::anyhow!("--data-dir is required"))?;
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                Some(TlsFiles { cert: cert.clone(), key: key.clone(), client_ca: self.tls_client_ca.clone() })
            }
            _ => None,
        };
        Ok(ServeConfig {
            listen: self.listen,
            data_dir,
            token_file: self.token_file.clone(),
            insecure_no_auth: self.insecure_no_auth,
            credentials: Credentials {
                node_token_file: self.node_token_file.clone(),
                read_token_file: self.read_token_file.clone(),
                control_token_file: self.control_token_file.clone(),
                agent_service_account: self.agent_service_account.clone(),
            },
            tls,
            commit: CommitConfig {
                interval: self.commit_interval,
                retention: self.retention,
                retention_size_bytes: self.retention_size,
                panic_after_commits: test_fault(self.fault.as_deref(), |name| std::env::var(name).ok())?
                    .map(|Fault::CommitterPanicAfter(commits)| commits),
                ..CommitConfig::default()
            },
            ready_file: self.ready_file.clone(),
            diagnosis: DiagnosisConfig {
                kube: match (&self.kubeconfig, self.no_kubernetes) {
                    (_, true) => KubeMode::Disabled,
                    (Some(path), false) => KubeMode::Kubeconfig(path.clone()),
                    (None, false) => KubeMode::Infer,
                },
                window_interval_ms: interval_ms(self.window_interval)?,
                automatic_windows: !self.no_auto_windows,
                ..DiagnosisConfig::default()
            },
            export: ExportConfig {
                metrics_listen: match self.metrics_listen {
                    Some(MetricsListen::Off) => None,
                    Some(MetricsListen::At(addr)) => Some(addr),
                    None => Some(default_metrics_listen()),
                },
                metrics_listen_required: self.metrics_listen.is_some(),
                metrics_require_token: self.metrics_require_token,
                otlp: crate::export::otlp::resolve_settings(
                    &|name| std::env::var(name).ok(),
                    self.otlp,
                    self.otlp_protocol,
                )?,
                hooks: ExportHooks { cluster_name: self.cluster_name.clone(), ..ExportHooks::default() },
            },
            health_listen: Some(self.health_listen.unwrap_or_else(default_health_listen)),
            health_listen_required: self.health_listen.is_some(),
            limits: IngestLimits {
                max_nodes: self.max_nodes,
                max_pods_per_node: self.max_pods_per_node,
                max_sample_entries: self.max_sample_entries,
                max_string_bytes: self.max_string_bytes,
                max_queue_bytes: self.max_queue_bytes,
                max_history_bytes: self.max_history_bytes,
                forget_nodes_after: self.forget_nodes_after,
            },
        })
    }
}

/// A fault the tests can make happen (`--fault`, `BAKERY_FAULT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `committer-panic-after=N`: the committer panics after N commits, before their acks.
    CommitterPanicAfter(u64),
}

/// The variable that must be `1` for `--fault` to be accepted.
pub const ALLOW_FAULTS_VAR: &str = "BAKERY_TEST_ONLY_ALLOW_FAULTS";

/// Parses `--fault`, refusing it unless `BAKERY_TEST_ONLY_ALLOW_FAULTS=1` (read with `env`), so a
/// stray variable can never make a production collector fail on purpose.
pub fn test_fault(spec: Option<&str>, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Option<Fault>> {
    let Some(spec) = spec.map(str::trim).filter(|s| !s.is_empty()) else { return Ok(None) };
    if env(ALLOW_FAULTS_VAR).as_deref() != Some("1") {
        anyhow::bail!(
            "--fault / BAKERY_FAULT ({spec:?}) is for bakery's own tests and makes the collector fail on purpose; \
             it is refused unless {ALLOW_FAULTS_VAR}=1 is set as well"
        );
    }
    match spec.split_once('=') {
        Some(("committer-panic-after", n)) => match n.trim().parse::<u64>() {
            Ok(commits) if commits > 0 => Ok(Some(Fault::CommitterPanicAfter(commits))),
            _ => {
                anyhow::bail!("--fault {spec:?}: expected committer-panic-after=N with N a positive number of commits")
            }
        },
        _ => anyhow::bail!("--fault {spec:?}: the only fault is committer-panic-after=N"),
    }
}

fn default_health_listen() -> SocketAddr {
    DEFAULT_HEALTH_LISTEN.parse().expect("DEFAULT_HEALTH_LISTEN is a socket address")
}

/// `--metrics-listen`: an address, or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsListen {
    Off,
    At(SocketAddr),
}

fn parse_metrics_listen(text: &str) -> Result<MetricsListen, String> {
    match text.trim() {
        "" | "off" | "none" | "false" => Ok(MetricsListen::Off),
        addr => addr
            .parse()
            .map(MetricsListen::At)
            .map_err(|_| format!("{addr:?} is not an address (e.g. 127.0.0.1:9464, 0.0.0.0:9464) or `off`")),
    }
}

fn default_metrics_listen() -> SocketAddr {
    DEFAULT_METRICS_LISTEN.parse().expect("DEFAULT_METRICS_LISTEN is a socket address")
}

fn interval_ms(interval: Duration) -> anyhow::Result<u32> {
    let ms = u32::try_from(interval.as_millis()).unwrap_or(u32::MAX);
    if !(crate::query::MIN_INTERVAL_MS..=crate::query::MAX_INTERVAL_MS).contains(&ms) {
        anyhow::bail!(
            "--window-interval must be between {}ms (the fastest an agent samples) and 1h",
            crate::query::MIN_INTERVAL_MS
        );
    }
    Ok(ms)
}

/// Runs the collector; the binary's `main` is only this.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Some(Command::Inspect(args)) => crate::inspect::run(&args),
        Some(Command::Serve(args)) => serve(&args),
        None => serve(&cli.serve),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("bakery-collector: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BAKERY_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::env::var_os("NO_COLOR").is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn serve(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let config = args.to_config()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = runtime.block_on(async move {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let collector = Collector::start(config).await?;
        let signal = async move {
            tokio::select! {
                _ = terminate.recv() => {}
                // An error here means no Ctrl-C handler; SIGTERM still works.
                _ = tokio::signal::ctrl_c() => {}
            }
            tracing::info!("signal received");
        };
        let report = collector.run_until(signal).await?;
        if let Some(fault) = report.fault {
            anyhow::bail!("{fault}; exiting non-zero so that the collector is restarted");
        }
        Ok(if report.uncommitted == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
    });
    // A blocking store call that never returns must not keep a dying collector alive.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    result
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn serve_is_the_default_subcommand() {
        let cli = Cli::try_parse_from(["bakery-collector", "--data-dir", "/d", "--insecure-no-auth"]).unwrap();
        assert!(cli.command.is_none());
        let config = cli.serve.to_config().unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/d"));
        assert_eq!(config.listen.port(), 7431);
        assert_eq!(config.commit.interval, Duration::from_millis(200));
        assert_eq!(config.commit.retention, Duration::from_secs(7 * 24 * 3600));
        assert!(config.insecure_no_auth);
    }

    #[test]
    fn serve_subcommand_and_durations() {
        let cli = Cli::try_parse_from([
            "bakery-collector",
            "serve",
            "--data-dir",
            "/d",
            "--listen",
            "127.0.0.1:0",
            "--retention",
            "36h",
            "--commit-interval",
            "1s",
            "--token-file",
            "/t",
        ])
        .unwrap();
        let Some(Command::Serve(args)) = cli.command else { panic!("serve expected") };
        let config = args.to_config().unwrap();
        assert_eq!(config.commit.retention, Duration::from_secs(36 * 3600));
        assert_eq!(config.commit.interval, Duration::from_secs(1));
        assert_eq!(config.token_file, Some(PathBuf::from("/t")));
    }

    #[test]
    fn kubernetes_and_window_flags() {
        let parse = |args: &[&str]| {
            let cli =
                Cli::try_parse_from(["bakery-collector", "--data-dir", "/d", "--insecure-no-auth"].iter().chain(args))
                    .unwrap();
            cli.serve.to_config().unwrap().diagnosis
        };
        let defaults = parse(&["--kubeconfig", "/k"]);
        assert_eq!(defaults.kube, KubeMode::Kubeconfig(PathBuf::from("/k")));
        assert_eq!(defaults.window_interval_ms, 250);
        assert!(defaults.automatic_windows);
        let off = parse(&["--kubeconfig", "/k", "--no-kubernetes", "--window-interval", "500ms", "--no-auto-windows"]);
        assert_eq!(off.kube, KubeMode::Disabled, "--no-kubernetes wins");
        assert_eq!(parse(&[]).kube, KubeMode::Infer);
        assert_eq!(off.window_interval_ms, 500);
        assert!(!off.automatic_windows);
        let too_fast =
            Cli::try_parse_from(["bakery-collector", "--data-dir", "/d", "--window-interval", "1ms"]).unwrap();
        assert!(too_fast.serve.to_config().is_err());
    }

    #[test]
    fn inspect_needs_no_serve_flags() {
        let cli = Cli::try_parse_from(["bakery-collector", "inspect", "--data-dir", "/d", "--json"]).unwrap();
        let Some(Command::Inspect(args)) = cli.command else { panic!("inspect expected") };
        assert!(args.json);
        assert!(!args.verify);
        let cli = Cli::try_parse_from(["bakery-collector", "inspect", "--file", "/d/bakery.redb.corrupt-1"]).unwrap();
        let Some(Command::Inspect(args)) = cli.command else { panic!("inspect expected") };
        assert_eq!(args.file, Some(PathBuf::from("/d/bakery.redb.corrupt-1")));
        assert!(Cli::try_parse_from(["bakery-collector", "inspect", "--data-dir", "/d", "--file", "/f"]).is_err());
    }

    #[test]
    fn health_listen_and_retention_size() {
        let parse = |args: &[&str]| {
            let cli =
                Cli::try_parse_from(["bakery-collector", "--data-dir", "/d", "--insecure-no-auth"].iter().chain(args))
                    .unwrap();
            cli.serve.to_config().unwrap()
        };
        let defaults = parse(&[]);
        assert_eq!(defaults.health_listen, Some("0.0.0.0:9465".parse().unwrap()));
        assert!(!defaults.health_listen_required, "a taken default port does not stop the collector");
        assert_eq!(defaults.commit.retention_size_bytes, None);
        assert_eq!(defaults.commit.panic_after_commits, None);
        let set = parse(&["--health-listen", "127.0.0.1:19465", "--retention-size", "2GiB"]);
        assert_eq!(set.health_listen, Some("127.0.0.1:19465".parse().unwrap()));
        assert!(set.health_listen_required);
        assert_eq!(set.commit.retention_size_bytes, Some(2 << 30));
        let bad = Cli::try_parse_from(["bakery-collector", "--data-dir", "/d", "--retention-size", "2 parsecs"]);
        let error = bad.unwrap_err().to_string();
        assert!(error.contains("unknown unit"), "{error}");
    }

    #[test]
    fn a_fault_is_refused_unless_explicitly_allowed() {
        let allowed = |name: &str| (name == ALLOW_FAULTS_VAR).then(|| "1".to_string());
        let not_allowed = |_: &str| None;
        assert_eq!(test_fault(None, not_allowed).unwrap(), None);
        let refused = test_fault(Some("committer-panic-after=3"), not_allowed).unwrap_err().to_string();
        assert!(refused.contains("BAKERY_TEST_ONLY_ALLOW_FAULTS=1"), "{refused}");
        assert_eq!(test_fault(Some("committer-panic-after=3"), allowed).unwrap(), Some(Fault::CommitterPanicAfter(3)));
        for bad in ["committer-panic-after=0", "committer-panic-after=x", "disk-full"] {
            assert!(test_fault(Some(bad), allowed).is_err(), "{bad}");
        }
        // the flag is hidden from --help
        let help = Cli::command().render_long_help().to_string();
        assert!(!help.contains("--fault"), "{help}");
        assert!(help.contains("--retention-size") && help.contains("--health-listen"));
    }

    #[test]
    fn auth_and_metrics_flags() {
        let parse = |args: &[&str]| {
            let cli = Cli::try_parse_from(["bakery-collector", "--data-dir", "/d"].iter().chain(args))?;
            Ok::<_, clap::Error>(cli.serve.to_config().unwrap())
        };
        let config = parse(&[
            "--node-token-file",
            "/n",
            "--read-token-file",
            "/r",
            "--control-token-file",
            "/c",
            "--agent-service-account",
            "bakery/bakery-agent",
            "--metrics-listen",
            "127.0.0.1:9464",
            "--metrics-require-token",
        ])
        .unwrap();
        assert_eq!(config.credentials.node_token_file, Some(PathBuf::from("/n")));
        assert_eq!(config.credentials.read_token_file, Some(PathBuf::from("/r")));
        assert_eq!(config.credentials.control_token_file, Some(PathBuf::from("/c")));
        assert_eq!(
            config.credentials.agent_service_account.unwrap().username(),
            "system:serviceaccount:bakery:bakery-agent"
        );
        assert_eq!(config.export.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
        assert!(config.export.metrics_require_token);
        // (--metrics-listen value, listen address)
        let table: [(&str, Option<&str>); 4] =
            [("off", None), ("", None), ("0.0.0.0:19464", Some("0.0.0.0:19464")), ("[::1]:9464", Some("[::1]:9464"))];
        for (value, expected) in table {
            let export = parse(&["--insecure-no-auth", "--metrics-listen", value]).unwrap().export;
            assert_eq!(export.metrics_listen, expected.map(|a| a.parse().unwrap()), "{value:?}");
        }
        assert!(parse(&["--insecure-no-auth", "--metrics-listen", "localhost"]).is_err());
        assert!(parse(&["--agent-service-account", "bakery"]).is_err(), "NAMESPACE/NAME");
        for token_flag in ["--node-token-file", "--read-token-file", "--control-token-file", "--agent-service-account"]
        {
            assert!(parse(&["--insecure-no-auth", token_flag, "a/b"]).is_err(), "{token_flag} contradicts no-auth");
        }
        let help = Cli::command().render_long_help().to_string();
        for taught in ["does NOT bind identity", "NODE TOKEN", "Subject CN", "TokenReview", "`off`"] {
            assert!(help.contains(taught), "--help teaches {taught:?}");
        }
    }

    #[test]
    fn limit_flags_have_small_cluster_defaults_and_refuse_nonsense() {
        let parse = |args: &[&str]| {
            let cli =
                Cli::try_parse_from(["bakery-collector", "--data-dir", "/d", "--insecure-no-auth"].iter().chain(args))?;
            Ok::<_, clap::Error>(cli.serve.to_config().unwrap().limits)
        };
        assert_eq!(parse(&[]).unwrap(), IngestLimits::default());
        let defaults = IngestLimits::default();
        assert_eq!((defaults.max_nodes, defaults.max_pods_per_node), (256, 512));
        assert_eq!(defaults.forget_nodes_after, Duration::from_secs(600));
        let set = parse(&[
            "--max-nodes",
            "8",
            "--max-pods-per-node",
            "100",
            "--max-sample-entries",
            "64",
            "--max-string-bytes",
            "128",
            "--max-queue-bytes",
            "8MiB",
            "--max-history-bytes",
            "4MiB",
            "--forget-nodes-after",
            "30s",
        ])
        .unwrap();
        assert_eq!(
            set,
            IngestLimits {
                max_nodes: 8,
                max_pods_per_node: 100,
                max_sample_entries: 64,
                max_string_bytes: 128,
                max_queue_bytes: 8 << 20,
                max_history_bytes: 4 << 20,
                forget_nodes_after: Duration::from_secs(30),
            }
        );
        for bad in [
            ["--max-nodes", "0"],
            ["--max-pods-per-node", "-1"],
            ["--max-string-bytes", "8"],
            ["--max-queue-bytes", "1kB"],
            ["--max-history-bytes", "lots"],
        ] {
            assert!(parse(&bad).is_err(), "{bad:?}");
        }
        let help = Cli::command().render_long_help().to_string();
        for taught in ["Limits:", "--max-nodes", "forgotten from memory", "bakery_collector_ingest_refusals_total"] {
            assert!(help.contains(taught), "--help teaches {taught:?}");
        }
    }

    #[test]
    fn flags_that_contradict_are_refused() {
        assert!(
            Cli::try_parse_from(["bakery-collector", "--data-dir", "/d", "--token-file", "/t", "--insecure-no-auth"])
                .is_err()
        );
        assert!(Cli::try_parse_from(["bakery-collector", "--data-dir", "/d", "--tls-cert", "/c"]).is_err());
        assert!(Cli::try_parse_from(["bakery-collector", "--insecure-no-auth"]).is_err(), "--data-dir is required");
    }
}
