//! The collector's command line: `serve` (the default), `inspect`, `completions` and `man`, each
//! flag with an env fallback (`BAKERY_<FLAG>`; on/off flags read theirs with [`EnvBool`]), and the
//! help people read first.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bakery_cli::EnvBool;
use clap::{ArgAction, Args, CommandFactory, Parser, Subcommand};

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
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout.
    Man,
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
    /// checked (plaintext on a trusted network, a lab or a test only). Refused together with a
    /// token flag.
    // Not `conflicts_with_all` the token flags: clap counts BAKERY_INSECURE_NO_AUTH=0 as given.
    // The authenticator refuses the two together at start.
    #[arg(
        long,
        env = "BAKERY_INSECURE_NO_AUTH",
        action = ArgAction::SetTrue,
        value_parser = EnvBool,
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
    #[arg(long, env = "BAKERY_KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// Run without a cluster: pods are named by UID, workloads are unknown, node-level diagnosis
    /// still works.
    #[arg(long, env = "BAKERY_NO_KUBERNETES", action = ArgAction::SetTrue, value_parser = EnvBool)]
    pub no_kubernetes: bool,

    /// The sampling interval agents are asked for while a load-test window is open (restored
    /// when it closes).
    #[arg(long, env = "BAKERY_WINDOW_INTERVAL", default_value = "250ms", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub window_interval: Duration,

    /// Do not open windows by themselves when traffic surges over its baseline.
    #[arg(long, env = "BAKERY_NO_AUTO_WINDOWS", action = ArgAction::SetTrue, value_parser = EnvBool)]
    pub no_auto_windows: bool,

    /// Serve the metrics in Prometheus text format at http://ADDR/metrics; `off` (or empty)
    /// serves none. /metrics names nodes and pods: bind it to 127.0.0.1:9464 to keep it on the
    /// host, or add --metrics-require-token.
    /// [default: 0.0.0.0:9464; when that port is taken the collector runs on without /metrics]
    #[arg(long, visible_alias = "metrics", env = "BAKERY_METRICS_LISTEN", value_name = "ADDR|off", value_parser = parse_metrics_listen)]
    pub metrics_listen: Option<MetricsListen>,

    /// Serve /metrics only to `Authorization: Bearer <token>` with a read or control token
    /// (needs --read-token-file or --control-token-file); others get 401 or 403.
    #[arg(long, env = "BAKERY_METRICS_REQUIRE_TOKEN", action = ArgAction::SetTrue, value_parser = EnvBool)]
    pub metrics_require_token: bool,

    /// Export OTLP metrics. Endpoint, headers, timeout, compression, interval and resource
    /// attributes come from the standard OTEL_EXPORTER_OTLP_*, OTEL_METRIC_EXPORT_INTERVAL,
    /// OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME variables; setting
    /// OTEL_EXPORTER_OTLP_ENDPOINT enables the export too, OTEL_SDK_DISABLED=true disables it.
    #[arg(long, env = "BAKERY_OTLP", action = ArgAction::SetTrue, value_parser = EnvBool)]
    pub otlp: bool,

    /// OTLP transport when OTEL_EXPORTER_OTLP_PROTOCOL (or its _METRICS_ variant) is unset:
    /// grpc (port 4317) or http/protobuf (port 4318, the default).
    #[arg(long, env = "BAKERY_OTLP_PROTOCOL", value_name = "PROTOCOL")]
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

    /// Most bytes of recent batches kept in memory for Query.History and the export, all nodes
    /// together: each node keeps up to SIZE / --max-nodes, and at most its newest 8 batches,
    /// 30 s and 64KiB (the rest is in the store). A batch larger than its node's share is stored
    /// but not kept in memory.
    #[arg(long, env = "BAKERY_MAX_HISTORY_BYTES", default_value = "16MiB", value_parser = parse_memory_size, value_name = "SIZE", help_heading = "Limits")]
    pub max_history_bytes: usize,

    /// Largest agent message a stream's read buffer is kept for (192KiB holds a replay of about
    /// 80 samples of a node with 30 pods). A larger message, up to 4MiB, is handled and
    /// acknowledged, then its stream is closed to free the buffer (the agent reconnects); the
    /// collector also tells agents to keep each Replay under it.
    #[arg(long, env = "BAKERY_MAX_MESSAGE_BYTES", default_value = "192KiB", value_parser = parse_message_bytes, value_name = "SIZE", help_heading = "Limits")]
    pub max_message_bytes: usize,

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
    parse_size_within(text, 1 << 20, u64::MAX, "at least 1MiB")
}

/// A message size from 64KiB (the largest Hello) to the 4MiB any message may have.
fn parse_message_bytes(text: &str) -> Result<usize, String> {
    let (min, max) = (crate::ingest::MAX_HELLO_BYTES as u64, crate::ingest::MAX_MESSAGE_BYTES as u64);
    parse_size_within(text, min, max, "from 64KiB (a Hello may take that) to 4MiB (any message at most)")
}

/// A size like 192KiB within `min..=max`; `range` says the bounds in the error.
fn parse_size_within(text: &str, min: u64, max: u64, range: &str) -> Result<usize, String> {
    let bytes = crate::store::retention::parse_size(text)?;
    if !(min..=max).contains(&bytes) {
        return Err(format!("{text:?} is outside the range allowed: {range}"));
    }
    Ok(usize::try_from(bytes).unwrap_or(usize::MAX))
}

// `multiple(true)` and no `conflicts_with`: clap counts BAKERY_DATA_DIR, which a collector's
// environment may hold, as given, and `--file` must still work there.
#[derive(Debug, Clone, Args)]
#[command(group = clap::ArgGroup::new("store").required(true).multiple(true).args(["data_dir", "file"]))]
pub struct InspectArgs {
    /// The stopped collector's --data-dir.
    #[arg(long, env = "BAKERY_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// A store file instead, such as one the collector moved aside because it could not open
    /// it (`bakery.redb.corrupt-<unix time>` in the data dir). Wins over --data-dir.
    #[arg(long, env = "BAKERY_INSPECT_FILE", value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// Print JSON instead of a table.
    #[arg(long, env = "BAKERY_INSPECT_JSON", action = ArgAction::SetTrue, value_parser = EnvBool)]
    pub json: bool,

    /// Also scan every stored key and report sequence numbers nothing accounts for
    /// ("unaccounted") or that are accounted for twice ("double_accounted"), and live samples
    /// stored above the committed number while a replay was unfinished ("ahead"); reads the
    /// whole store.
    #[arg(long, env = "BAKERY_INSPECT_VERIFY", action = ArgAction::SetTrue, value_parser = EnvBool)]
    pub verify: bool,
}

const EXAMPLES: &str = "\
Examples:
  bakery-collector --data-dir /var/lib/bakery --token-file /etc/bakery/tokens
  bakery-collector --data-dir /var/lib/bakery --agent-service-account bakery/bakery-agent \\
      --read-token-file /etc/bakery/read/token --control-token-file /etc/bakery/control/token
  bakery-collector --data-dir ./data --node-token-file node-tokens --metrics-listen 127.0.0.1:9464
  bakery-collector serve --listen 127.0.0.1:7431 --data-dir ./data --insecure-no-auth
  bakery-collector --data-dir ./data --tls-cert tls.crt --tls-key tls.key --tls-client-ca ca.crt
  bakery-collector inspect --data-dir ./data                  # per node: samples, seqs, gaps
  bakery-collector inspect --data-dir ./data --json --verify | jq '.nodes[].gaps'
  bakery-collector inspect --file ./data/bakery.redb.corrupt-1767225600   # a store moved aside
  curl -fsS localhost:9465/readyz                             # ready? (503 with the reason)
  BAKERY_INSECURE_NO_AUTH=1 bakery-collector --data-dir ./data  # flags from the environment
  bakery-collector completions zsh > ~/.zfunc/_bakery-collector
  bakery-collector man | man -l -

Limits: messages up to 4 MiB; each stream up to 20x the rate of its declared interval, the
interval taken within 50ms..1h (burst 5 s of that, at least 100 messages), beyond which the
collector reads more slowly (backpressure). A batch or gap numbered beyond what its agent could
have produced (a full spool plus 40 per second since the node was last heard) is refused and
never acknowledged. The analysis runs on the collector's clock: a sample's own time counts only
within 5 s of its arrival. See the Limits flags for the caps; every refusal and cut is counted
per cause on /metrics as bakery_collector_ingest_refusals_total{cause}.

Environment: every flag has a variable, shown as [env: ...] in --help: BAKERY_<FLAG> (--data-dir is
BAKERY_DATA_DIR; inspect's own flags are BAKERY_INSPECT_<FLAG>). On/off flags take 1, true, yes or
on, and 0, false, no or off (or empty) from theirs. A flag given on the command line wins over its
variable; OTLP also reads the standard OTEL_* variables (see --otlp). Logs: BAKERY_LOG=debug
(tracing env-filter syntax), on stderr, in colour unless NO_COLOR is set.";

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
                max_message_bytes: self.max_message_bytes,
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
    bakery_cli::init_logs();
    let result = match cli.command {
        Some(Command::Inspect(args)) => crate::inspect::run(&args),
        Some(Command::Serve(args)) => serve(&args),
        Some(Command::Completions { shell }) => {
            clap_complete::generate(shell, &mut Cli::command(), "bakery-collector", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Man) => man(),
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

fn man() -> anyhow::Result<ExitCode> {
    let page = clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout().lock());
    page.map_err(|error| anyhow::anyhow!("cannot write the man page: {error}"))?;
    Ok(ExitCode::SUCCESS)
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
mod tests;
