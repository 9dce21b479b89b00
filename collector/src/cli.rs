//! The collector's command line: `serve` (the default) and `inspect`, each flag with an env
//! fallback, and the help people read first.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::commit::CommitConfig;
use crate::export::{DEFAULT_METRICS_LISTEN, ExportConfig, ExportHooks, Protocol};
use crate::kube::KubeMode;
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

    /// Accepted bearer tokens, one per line (# comments, blank lines ignored). Re-read when it
    /// changes, so list the old and the new token while rotating.
    #[arg(long, env = "BAKERY_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Accept agents and clients without a token (plaintext on a trusted network only).
    #[arg(
        long,
        env = "BAKERY_INSECURE_NO_AUTH",
        conflicts_with = "token_file",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub insecure_no_auth: bool,

    /// Serve TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, env = "BAKERY_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The TLS private key (PEM).
    #[arg(long, env = "BAKERY_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Require client certificates signed by this CA (mutual TLS); with it, no token is needed.
    #[arg(long, env = "BAKERY_TLS_CLIENT_CA", value_name = "FILE", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// Remove samples and gaps older than this (by collector receive time).
    #[arg(long, env = "BAKERY_RETENTION", default_value = "7d", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub retention: Duration,

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

    /// Serve the metrics in Prometheus text format at http://ADDR/metrics.
    /// [default: 0.0.0.0:9464; when that port is taken the collector runs on without /metrics]
    #[arg(long, visible_alias = "metrics", env = "BAKERY_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,

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
}

#[derive(Debug, Clone, Args)]
pub struct InspectArgs {
    /// The stopped collector's --data-dir.
    #[arg(long, env = "BAKERY_DATA_DIR", value_name = "DIR")]
    pub data_dir: PathBuf,

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
  bakery-collector serve --listen 127.0.0.1:7431 --data-dir ./data --insecure-no-auth
  bakery-collector --data-dir ./data --tls-cert tls.crt --tls-key tls.key --tls-client-ca ca.crt
  bakery-collector inspect --data-dir ./data                  # per node: samples, seqs, gaps
  bakery-collector inspect --data-dir ./data --json --verify | jq '.nodes[].gaps'

Limits: messages up to 4 MiB; each stream up to 20x its declared rate (burst 5 s of that,
at least 100 messages), beyond which the collector reads more slowly (backpressure).
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
            tls,
            commit: CommitConfig {
                interval: self.commit_interval,
                retention: self.retention,
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
                metrics_listen: Some(self.metrics_listen.unwrap_or_else(default_metrics_listen)),
                metrics_listen_required: self.metrics_listen.is_some(),
                otlp: crate::export::otlp::resolve_settings(
                    &|name| std::env::var(name).ok(),
                    self.otlp,
                    self.otlp_protocol,
                )?,
                hooks: ExportHooks { cluster_name: self.cluster_name.clone(), ..ExportHooks::default() },
            },
        })
    }
}

fn default_metrics_listen() -> SocketAddr {
    DEFAULT_METRICS_LISTEN.parse().expect("DEFAULT_METRICS_LISTEN is a socket address")
}

fn interval_ms(interval: Duration) -> anyhow::Result<u32> {
    let ms = u32::try_from(interval.as_millis()).unwrap_or(u32::MAX);
    if !(crate::query::MIN_INTERVAL_MS..=crate::query::MAX_INTERVAL_MS).contains(&ms) {
        anyhow::bail!("--window-interval must be between 10ms and 1h");
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
    runtime.block_on(async move {
        let collector = Collector::start(config).await?;
        wait_for_signal().await?;
        tracing::info!("signal received");
        let report = collector.stop().await?;
        Ok(if report.uncommitted == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
    })
}

/// Waits for SIGTERM (Kubernetes stopping the pod) or SIGINT (Ctrl-C).
async fn wait_for_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => {}
        result = tokio::signal::ctrl_c() => result?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
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
