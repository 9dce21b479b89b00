//! The `bakery-demo` command line: the demo itself (the default), `list`, `cleanup`,
//! `bench-observer`, `campaign`, and the hidden subcommands the demo runs inside the cluster
//! (`enter`, `keeper`, the stand-ins and the probe).
//!
//! Exit codes: 0 the verdict matched the scenario's expectation, 1 it did not, 2 the demo could
//! not run (not root, a missing tool, a failure while building, Ctrl-C).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::binaries::Binaries;
use crate::launch::EnterSpec;
use crate::lock::RunLock;
use crate::report::render;
use crate::run::Options;
use crate::scenario::{DEFAULT_SCENARIO, ProxyKind, SHIPPED, Scenario};
use crate::{bench, interrupt, otlp, preflight, run, stand_ins};

/// bakery-demo builds the Bakery on this machine: the scenario's nodes (five in most: master-01..03,
/// worker-01..02) made of network, PID and mount namespaces, WordPress and MySQL stand-ins in
/// kubepods cgroups, a LoadBalancer IP with kube-proxy's iptables rules, nginx in front (or in the
/// cluster, as Nginx Proxy Manager), and oha as the load. Then it runs bakery (one agent per node,
/// the collector), opens a load-test window, lets the collector choose the workload under test and
/// reports which node takes more than its share and why.
///
/// It needs root (namespaces, veth pairs, cgroups, iptables inside its own namespaces). Nothing is
/// configured in the root network namespace; every address is in 198.18.0.0/15; everything is
/// removed on exit, on error and on Ctrl-C, and whatever a killed run left is removed first.
#[derive(Debug, Parser)]
#[command(name = "bakery-demo", version, about, long_about, after_help = EXAMPLES, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ScenarioArgs {
    /// A shipped scenario (see `bakery-demo list`).
    #[arg(long, value_name = "NAME", conflicts_with = "scenario_file")]
    pub scenario: Option<String>,
    /// Your own scenario file (TOML; see demo/scenarios/ for the format).
    #[arg(long, value_name = "PATH")]
    pub scenario_file: Option<PathBuf>,
    /// How long oha runs, instead of the scenario's duration (e.g. 15s).
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub duration: Option<Duration>,
    /// Where bakery-agent, bakery-collector and bakery-top are (default: beside this binary).
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
    /// Fail instead of installing missing tools (apt packages, oha).
    #[arg(long)]
    pub no_install: bool,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub scenario: ScenarioArgs,
    /// Print progress and the final report instead of showing bakery-top.
    #[arg(long)]
    pub no_tui: bool,
    /// Print the final report as JSON on stdout (implies --no-tui).
    #[arg(long)]
    pub json: bool,
    /// Also write the window's diagnosis report (JSON) to FILE, and its chart to FILE with .svg.
    #[arg(long, value_name = "FILE")]
    pub window_report: Option<PathBuf>,
    /// Name the load-test window's workload (NAMESPACE/NAME) instead of letting the collector
    /// choose it, for debugging the diagnosis apart from that choice. The verdict still matches
    /// only when it is the Service's web workload.
    #[arg(long, value_name = "NS/NAME")]
    pub workload: Option<String>,
    #[command(flatten)]
    pub otlp: OtlpArgs,
}

/// OTLP export of the demo's collector (the verdicts as `bakery.hog.active`, the shares, every
/// node's and pod's series), to a receiver on this machine or beyond.
#[derive(Debug, Clone, Args)]
pub struct OtlpArgs {
    /// Export the collector's metrics, the verdicts among them (bakery.hog.active), over OTLP to
    /// URL: a plain-text receiver, http://HOST:PORT[/PATH].
    ///
    /// For example http://127.0.0.1:4317 with --otlp-protocol grpc for an OpenTelemetry
    /// Collector's gRPC port. The collector lives in the demo's isolated control namespace; the
    /// demo relays its connections to URL from this machine. The other standard variables reach
    /// the collector as they are (OTEL_EXPORTER_OTLP_HEADERS, _COMPRESSION, _TIMEOUT,
    /// OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME); OTEL_METRIC_EXPORT_INTERVAL defaults to
    /// 1000 ms here, and every series carries k8s.cluster.name=bakery-demo unless
    /// BAKERY_CLUSTER_NAME is set. sudo drops the environment: give variables after it (sudo
    /// OTEL_EXPORTER_OTLP_HEADERS=... bakery-demo ...).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// The OTLP transport to --otlp-endpoint: grpc or http/protobuf (the collector's default when
    /// unset).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_PROTOCOL", value_name = "PROTOCOL")]
    pub otlp_protocol: Option<otlp::Protocol>,
}

impl OtlpArgs {
    /// The export the flags ask for, or why it cannot be done. `metrics_endpoint` is
    /// OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: the demo relays one endpoint, given as
    /// --otlp-endpoint, so that one is refused rather than silently ignored.
    pub fn export(&self, metrics_endpoint: Option<String>) -> Result<Option<otlp::Export>, String> {
        if metrics_endpoint.is_some() {
            return Err("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT is set, but the demo relays one endpoint: \
                        give it as --otlp-endpoint (or OTEL_EXPORTER_OTLP_ENDPOINT) and unset the other"
                .into());
        }
        self.otlp_endpoint
            .as_deref()
            .map(|endpoint| otlp::Export::parse(endpoint, self.otlp_protocol))
            .transpose()
            .map_err(|e| bakery_lab::chain(&e))
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the demo (the default).
    Run(RunArgs),
    /// List the shipped scenarios.
    List,
    /// Remove what a killed run left behind (namespaces, cgroups, run directories).
    Cleanup,
    /// oha's requests per second with the agents sampling at 1 Hz against the agents stopped, in
    /// the same cluster, alternating.
    BenchObserver(bench::BenchArgs),
    /// Random clusters nobody tuned the diagnosis for: N valid scenarios generated from a seed,
    /// each run as the demo runs one, and bakery's verdicts checked against the generator's own
    /// ground truth; a table of right, false flags, misses and time to the first flag.
    #[command(after_help = crate::campaign::command::EXAMPLES)]
    Campaign(crate::campaign::command::CampaignArgs),
    #[command(hide = true)]
    Enter(EnterArgs),
    #[command(hide = true)]
    Keeper,
    #[command(hide = true)]
    Web(WebArgs),
    #[command(hide = true)]
    Database(DatabaseArgs),
    #[command(hide = true)]
    Burn {
        #[arg(long)]
        cores: f64,
    },
    #[command(hide = true)]
    Hog {
        #[arg(long)]
        mib: u64,
    },
    #[command(hide = true)]
    Probe { url: String },
}

#[derive(Debug, Args)]
pub struct EnterArgs {
    #[arg(long)]
    keeper: Option<u32>,
    #[arg(long)]
    netns: Option<String>,
    #[arg(long)]
    cgroup: Vec<PathBuf>,
    #[arg(long)]
    exec: bool,
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct WebArgs {
    #[arg(long)]
    listen: SocketAddr,
    #[arg(long)]
    cpu_ms: f64,
    #[arg(long)]
    response_bytes: usize,
    #[arg(long)]
    database: Option<SocketAddr>,
    #[arg(long, default_value_t = 0)]
    queries: u32,
    #[arg(long)]
    pod_name: String,
    #[arg(long)]
    stats: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DatabaseArgs {
    #[arg(long)]
    listen: SocketAddr,
    #[arg(long)]
    cpu_ms: f64,
    #[arg(long)]
    wait_ms: f64,
    #[arg(long)]
    response_bytes: usize,
}

const EXAMPLES: &str = "\
Examples:
  sudo bakery-demo                                   # the l2-ingress scenario with bakery-top
  sudo bakery-demo --scenario local-policy --no-tui  # progress lines and the report
  sudo bakery-demo --scenario keepalive-pinning --json | jq .verdicts
  sudo bakery-demo --scenario-file my-cluster.toml --duration 60s
  sudo bakery-demo --scenario in-cluster-proxy --no-tui --workload wordpress/wordpress
                                                     # name the workload instead of the collector
  sudo bakery-demo --no-tui --otlp-endpoint http://127.0.0.1:4317 --otlp-protocol grpc
                                                     # the verdict to your OTLP receiver
  sudo bakery-demo campaign --count 30 --seed 7      # 30 random clusters against their truth
  sudo bakery-demo cleanup                           # after a killed run
  cargo xtask demo --scenario balanced               # builds everything first

Exit codes: 0 the verdict matched the scenario's expectation (exactly the expected verdicts active for 3 s
or more, about the Service's web workload, the first raised within the scenario's verdict_within_s (3 s)
of the hog's onset and none before it), 1 it did not, 2 the demo could not run.";

fn millis(ms: f64) -> Duration {
    Duration::from_secs_f64(ms.max(0.0) / 1000.0)
}

/// Runs the command line; the binary's `main` is only this.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Enter(args)) => crate::launch::enter(&EnterSpec {
            keeper: args.keeper,
            netns: args.netns,
            cgroups: args.cgroup,
            exec: args.exec,
            command: args.command,
        }),
        Some(Command::Keeper) => crate::launch::keeper(),
        Some(Command::Web(args)) => {
            let config = stand_ins::WebConfig {
                listen: args.listen,
                cpu: millis(args.cpu_ms),
                response_bytes: args.response_bytes,
                database: args.database,
                queries: args.queries,
                pod_name: args.pod_name,
                stats: args.stats,
            };
            exit_on_error("web", stand_ins::serve_web(config))
        }
        Some(Command::Database(args)) => {
            let config = stand_ins::DatabaseConfig {
                listen: args.listen,
                cpu: millis(args.cpu_ms),
                wait: millis(args.wait_ms),
                response_bytes: args.response_bytes,
            };
            exit_on_error("database", stand_ins::serve_database(config))
        }
        Some(Command::Burn { cores }) => stand_ins::burn_forever(cores),
        Some(Command::Hog { mib }) => stand_ins::hog_forever(mib),
        Some(Command::Probe { url }) => probe(&url),
        Some(Command::List) => {
            for (name, text) in SHIPPED {
                let description =
                    Scenario::parse(text).map(|s| s.description).unwrap_or_else(|e| bakery_lab::chain(&e));
                println!("{name:<18} {description}");
            }
            ExitCode::SUCCESS
        }
        Some(Command::Cleanup) => cleanup(),
        Some(Command::BenchObserver(args)) => bench::main(args),
        Some(Command::Campaign(args)) => crate::campaign::command::main(args),
        Some(Command::Run(args)) => run_demo(args),
        None => run_demo(cli.run),
    }
}

fn exit_on_error(what: &str, result: std::io::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bakery-demo {what}: {error}");
            ExitCode::FAILURE
        }
    }
}

fn probe(url: &str) -> ExitCode {
    let address = url
        .strip_prefix("http://")
        .map(|rest| rest.split('/').next().unwrap_or_default())
        .map(|host| if host.contains(':') { host.to_string() } else { format!("{host}:80") })
        .and_then(|host| host.parse::<SocketAddr>().ok());
    let Some(address) = address else {
        println!("cannot read {url}: use http://IP[:PORT]/");
        return ExitCode::FAILURE;
    };
    match stand_ins::probe(address, "/", Duration::from_secs(5)) {
        Ok((status, bytes)) => {
            println!("status {status} body {bytes} bytes");
            if status == 200 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(error) => {
            println!("{url}: {error}");
            ExitCode::FAILURE
        }
    }
}

fn cleanup() -> ExitCode {
    if let Err(message) = preflight::require_root() {
        eprintln!("bakery-demo: {message}");
        return ExitCode::from(2);
    }
    let removed = RunLock::acquire().and_then(|_lock| {
        let layout = bakery_lab::cgroup::CgroupLayout::detect()?;
        Ok(bakery_lab::cleanup::remove_demo_leftovers(&layout)?)
    });
    match removed {
        Ok(removed) if removed.is_empty() => {
            println!("nothing to clean up");
            ExitCode::SUCCESS
        }
        Ok(removed) => {
            for item in removed {
                println!("removed {item}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("bakery-demo cleanup: {}", bakery_lab::chain(&error));
            ExitCode::from(2)
        }
    }
}

/// Reads the scenario the flags name.
pub fn load_scenario(args: &ScenarioArgs) -> crate::Result<Scenario> {
    match (&args.scenario, &args.scenario_file) {
        (_, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|source| crate::Error::File {
                action: "reading the scenario",
                path: path.clone(),
                source,
            })?;
            Scenario::parse(&text)
        }
        (Some(name), None) => Scenario::shipped(name),
        (None, None) => Scenario::shipped(DEFAULT_SCENARIO),
    }
}

/// Scenario, root, tools and binaries, or a message that says what to do.
pub fn prepare(args: &ScenarioArgs) -> Result<(Scenario, Binaries), String> {
    let scenario = load_scenario(args).map_err(|e| bakery_lab::chain(&e))?;
    preflight::require_root()?;
    let needs_nginx = scenario.proxy.kind == ProxyKind::Nginx;
    preflight::tools(needs_nginx, !args.no_install)?;
    let binaries = Binaries::find(args.bin_dir.as_deref()).map_err(|e| bakery_lab::chain(&e))?;
    Ok((scenario, binaries))
}

fn run_demo(args: RunArgs) -> ExitCode {
    let prepared = args
        .otlp
        .export(std::env::var("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT").ok())
        .and_then(|export| Ok((export, prepare(&args.scenario)?)));
    let (otlp, (scenario, binaries)) = match prepared {
        Ok(prepared) => prepared,
        Err(message) => {
            eprintln!("bakery-demo: {message}");
            return ExitCode::from(2);
        }
    };
    if let Err(error) = interrupt::install() {
        eprintln!("bakery-demo: {error}");
        return ExitCode::from(2);
    }
    let terminal =
        std::io::IsTerminal::is_terminal(&std::io::stdout()) && std::io::IsTerminal::is_terminal(&std::io::stdin());
    let tui = !args.no_tui && !args.json && terminal && binaries.top.is_some();
    let options = Options {
        duration: args.scenario.duration,
        progress: true,
        tui,
        window_report_file: args.window_report.clone(),
        workload: args.workload.clone(),
        warm_up: run::warm_up(),
        cluster: crate::cluster::ClusterOptions { otlp, ..Default::default() },
    };
    match run::run(scenario, binaries, options) {
        Ok(report) => {
            if args.json {
                match serde_json::to_string_pretty(&report) {
                    Ok(json) => println!("{json}"),
                    Err(error) => {
                        eprintln!("bakery-demo: {error}");
                        return ExitCode::from(2);
                    }
                }
            } else {
                print!("\n{}", render(&report));
            }
            if report.matched { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(error) => {
            eprintln!("bakery-demo: {}", bakery_lab::chain(&error));
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_demo_is_the_default_command() {
        let cli =
            Cli::try_parse_from(["bakery-demo", "--scenario", "balanced", "--no-tui", "--duration", "12s"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.run.scenario.scenario.as_deref(), Some("balanced"));
        assert_eq!(cli.run.scenario.duration, Some(Duration::from_secs(12)));
        assert_eq!(cli.run.workload, None, "the collector chooses the workload unless one is named");
        let named = Cli::try_parse_from(["bakery-demo", "--workload", "wordpress/wordpress"]).unwrap();
        assert_eq!(named.run.workload.as_deref(), Some("wordpress/wordpress"));
        assert!(Cli::try_parse_from(["bakery-demo", "--scenario", "a", "--scenario-file", "b"]).is_err());
    }

    #[test]
    fn enter_takes_the_command_after_a_double_dash() {
        let cli = Cli::try_parse_from([
            "bakery-demo",
            "enter",
            "--keeper",
            "7",
            "--cgroup",
            "/a",
            "--cgroup",
            "/b",
            "--",
            "ls",
            "-l",
        ])
        .unwrap();
        let Some(Command::Enter(args)) = cli.command else { panic!("enter expected") };
        assert_eq!(args.keeper, Some(7));
        assert_eq!(args.cgroup.len(), 2);
        assert_eq!(args.command, ["ls", "-l"]);
    }

    #[test]
    fn the_otlp_flags_become_an_export_and_bad_ones_a_message() {
        let cli =
            Cli::try_parse_from(["bakery-demo", "--otlp-endpoint", "http://127.0.0.1:4317", "--otlp-protocol", "grpc"])
                .unwrap();
        let export = cli.run.otlp.export(None).unwrap().unwrap();
        assert_eq!((export.target.as_str(), export.protocol), ("127.0.0.1:4317", Some(otlp::Protocol::Grpc)));
        let message = cli.run.otlp.export(Some("http://elsewhere:4318/v1/metrics".into())).unwrap_err();
        assert!(message.contains("--otlp-endpoint"), "{message}");
        let https = Cli::try_parse_from(["bakery-demo", "--otlp-endpoint", "https://otel.example:4317"]).unwrap();
        assert!(https.run.otlp.export(None).unwrap_err().contains("https is not relayed"));
        assert!(
            Cli::try_parse_from(["bakery-demo", "--otlp-endpoint", "http://h:1", "--otlp-protocol", "http/json"])
                .is_err()
        );
    }

    #[test]
    fn scenarios_load_by_name_or_default() {
        let args = |name: Option<&str>| ScenarioArgs {
            scenario: name.map(str::to_string),
            scenario_file: None,
            duration: None,
            bin_dir: None,
            no_install: true,
        };
        assert_eq!(load_scenario(&args(None)).unwrap().name, DEFAULT_SCENARIO);
        assert_eq!(load_scenario(&args(Some("balanced"))).unwrap().name, "balanced");
        assert!(load_scenario(&args(Some("nope"))).unwrap_err().to_string().contains("choose one of"));
    }
}
