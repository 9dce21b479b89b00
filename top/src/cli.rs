//! The command line: the live view (the default), `--once [--json]`, `completions` and `man`. The
//! connection flags are global, so later subcommands (`loadtest`, `window`, `report`, `alerts`)
//! share them.
//!
//! Every flag has an env fallback, named by one rule. A top-level flag's is `BAKERY_<FLAG>`
//! (`--token-file`: `BAKERY_TOKEN_FILE`), as in bakery-agent and bakery-collector, so a variable
//! such as `BAKERY_COLLECTOR` means the same to all three. A subcommand's flag spelled like a
//! top-level flag means the same thing there and shares its variable: `alerts --json` and
//! `report --json` read `BAKERY_JSON`, JSON instead of text whatever the command. Every other
//! subcommand flag's is `BAKERY_<SUBCOMMAND>_<FLAG>`, SUBCOMMAND being the subcommand's path
//! (`report --svg`: `BAKERY_REPORT_SVG`; `window start --name`: `BAKERY_WINDOW_START_NAME`;
//! `loadtest --fail-on-hog`: `BAKERY_LOADTEST_FAIL_ON_HOG`). On/off flags read theirs with
//! [`EnvBool`]. `NO_COLOR` is honoured below `--color` (`BAKERY_COLOR`): see [`use_color`].

use std::ffi::{OsStr, OsString};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use bakery_cli::EnvBool;
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::app::App;
use crate::cluster::ClusterArgs;
use crate::config::TopConfig;
use crate::made_up::MadeUpSource;
use crate::model::{AgentState, Snapshot};
use crate::render::theme::Palette;
use crate::source::{GrpcConfig, GrpcSource, Source};

/// Where the collector listens unless told otherwise (its default `--listen`).
pub const DEFAULT_COLLECTOR: &str = "http://127.0.0.1:7431";

/// Shortest `--refresh`: faster only loads the collector.
pub const MIN_REFRESH: Duration = Duration::from_millis(100);

/// Longest `--once` waits for a second sample when the first answer has no rates yet.
const ONCE_RATE_WAIT: Duration = Duration::from_secs(5);

/// bakery-top shows, live, which node of a small Kubernetes cluster takes more than its share of
/// a workload's traffic, and why: per node CPU (with softirq), memory, temperature and throttling,
/// NIC rates, the traffic share against the expected share, and inbound connections; per pod what
/// it does and where it runs; and the hog verdicts with their evidence and next step.
///
/// When stdout is not a terminal (a pipe, a file, CI), it prints one snapshot as plain text and
/// exits, as with --once.
#[derive(Debug, Parser)]
#[command(name = "bakery-top", version, about, long_about, after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub connection: ConnectionArgs,

    #[command(flatten)]
    pub view: ViewArgs,
}

/// How to reach the collector; shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct ConnectionArgs {
    /// The collector's gRPC address.
    #[arg(long, env = "BAKERY_COLLECTOR", default_value = DEFAULT_COLLECTOR, value_name = "URL", global = true)]
    pub collector: String,

    /// A file holding the bearer token (the first line that is not blank or a # comment), sent as
    /// `authorization: Bearer <token>`. Re-read at every reconnect.
    #[arg(long, env = "BAKERY_TOKEN_FILE", value_name = "FILE", global = true)]
    pub token_file: Option<PathBuf>,

    /// PEM CA certificate that signed the collector's certificate; needed for https:// URLs.
    #[arg(long, env = "BAKERY_TLS_CA", value_name = "FILE", global = true)]
    pub tls_ca: Option<PathBuf>,

    /// PEM certificate to present when the collector requires mutual TLS (with --tls-key).
    #[arg(long, env = "BAKERY_TLS_CERT", value_name = "FILE", requires = "tls_key", global = true)]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "BAKERY_TLS_KEY", value_name = "FILE", requires = "tls_cert", global = true)]
    pub tls_key: Option<PathBuf>,

    /// Reach the collector through this kubeconfig context instead of --collector: find the
    /// release's collector Service, port-forward to its ready pod through the Kubernetes API (as
    /// `kubectl port-forward` does), and read the read token and CA from the release's Secrets
    /// (--token-file and --tls-ca win). Without NAME: the current context.
    #[arg(long, env = "BAKERY_CONTEXT", value_name = "NAME", num_args = 0..=1, default_missing_value = "", global = true)]
    pub context: Option<String>,

    /// The kubeconfig for --context (default: KUBECONFIG, then ~/.kube/config, as kubectl).
    #[arg(long, env = "BAKERY_KUBECONFIG", value_name = "FILE", global = true)]
    pub kubeconfig: Option<PathBuf>,

    /// With --context, look for the release only in this namespace (default: every namespace, or
    /// the context's when listing every namespace is not allowed).
    #[arg(long, short = 'n', env = "BAKERY_NAMESPACE", value_name = "NAMESPACE", global = true)]
    pub namespace: Option<String>,

    /// With --context, the Helm release (needed only when several are installed).
    #[arg(long, env = "BAKERY_RELEASE", value_name = "NAME", global = true)]
    pub release: Option<String>,

    /// The config file (default: $XDG_CONFIG_HOME/bakery/top.toml, or ~/.config/bakery/top.toml).
    /// It holds any of collector, context, kubeconfig, namespace, release, token-file, tls-ca and
    /// color, and a [colors] table; the command line and the environment win over it.
    #[arg(long, env = "BAKERY_CONFIG", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
}

impl ConnectionArgs {
    /// Flags that reach the collector at `url` with nothing else set.
    pub fn plain(url: impl Into<String>) -> ConnectionArgs {
        ConnectionArgs {
            collector: url.into(),
            token_file: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            context: None,
            kubeconfig: None,
            namespace: None,
            release: None,
            config: None,
        }
    }

    /// The collector as the flags name it (without --context).
    pub fn grpc_config(&self) -> GrpcConfig {
        GrpcConfig {
            url: self.collector.clone(),
            token_file: self.token_file.clone(),
            tls_ca: self.tls_ca.clone(),
            tls_identity: self.tls_cert.clone().zip(self.tls_key.clone()),
            ..GrpcConfig::default()
        }
    }

    /// The collector: through the cluster with --context, else as the flags name it.
    pub async fn reach(&self) -> anyhow::Result<GrpcConfig> {
        let Some(context) = &self.context else { return Ok(self.grpc_config()) };
        let args = ClusterArgs {
            kubeconfig: self.kubeconfig.clone(),
            context: context.clone(),
            namespace: self.namespace.clone(),
            release: self.release.clone(),
        };
        let what =
            if context.is_empty() { "the current context".to_string() } else { format!("the context {context}") };
        crate::cluster::reach(&args, &self.grpc_config())
            .await
            .with_context(|| format!("cannot reach the collector through {what}"))
    }
}

#[derive(Debug, Clone, Args)]
pub struct ViewArgs {
    /// How often to ask the collector for new data.
    #[arg(long, env = "BAKERY_REFRESH", default_value = "1s", value_parser = parse_refresh, value_name = "DURATION")]
    pub refresh: Duration,

    /// Colours in the live view. `auto` uses them on a terminal unless NO_COLOR is set.
    #[arg(long, env = "BAKERY_COLOR", value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: ColorChoice,

    /// Print one snapshot and exit (the default when stdout is not a terminal).
    #[arg(long, env = "BAKERY_ONCE", action = ArgAction::SetTrue, value_parser = EnvBool)]
    pub once: bool,

    /// Print the snapshot as JSON (implies --once). `alerts` and `report` read the same variable.
    #[arg(long, env = "BAKERY_JSON", action = ArgAction::SetTrue, value_parser = EnvBool)]
    pub json: bool,

    /// Colours by meaning, from the config file's [colors] table.
    #[arg(skip)]
    pub palette: Palette,

    /// Show made-up snapshots instead of asking a collector, for trying the keys and views: five
    /// nodes (master-01..03, worker-01..02), WordPress and MySQL, calm for 20 s and then master-02
    /// taking the traffic. Not the `bakery-demo` mini-bakery, which runs a real cluster.
    #[arg(long, env = "BAKERY_DEMO", action = ArgAction::SetTrue, value_parser = EnvBool)]
    pub demo: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout.
    Man,
    /// Print the live hog verdicts: node, cause, evidence, confidence, next step.
    Alerts {
        /// Print JSON.
        #[arg(long, env = "BAKERY_JSON", action = ArgAction::SetTrue, value_parser = EnvBool)]
        json: bool,
    },
    /// Print a stored load-test window report (the newest without ID).
    Report {
        /// The window id (`w-...`, from `window stop` or the Windows view).
        id: Option<String>,
        /// Print the report as JSON.
        // Not `conflicts_with = "svg"`: clap counts BAKERY_JSON as given, even =0; `parse_from`
        // settles the two (`keep_json_over_svg`).
        #[arg(long, env = "BAKERY_JSON", action = ArgAction::SetTrue, value_parser = EnvBool)]
        json: bool,
        /// Write the SVG chart (per-node share over time, the window shaded, expected share as a
        /// line) to FILE. Wins over BAKERY_JSON; not to be given with --json.
        #[arg(long, env = "BAKERY_REPORT_SVG", value_name = "FILE")]
        svg: Option<PathBuf>,
    },
    /// Run a load command inside a window and print the window's report (oha's summary merged in).
    Loadtest(crate::commands::loadtest::LoadtestArgs),
    /// Open or close a load-test window (agents sample faster while it is open).
    Window {
        #[command(subcommand)]
        action: WindowAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum WindowAction {
    /// Open a window now.
    Start {
        /// A name for the report (default: window-<start time>).
        #[arg(long, env = "BAKERY_WINDOW_START_NAME")]
        name: Option<String>,
        /// The workload under test, NAMESPACE/NAME (default: the one whose traffic rose most).
        #[arg(long, env = "BAKERY_WINDOW_START_WORKLOAD", value_name = "NS/NAME")]
        workload: Option<String>,
    },
    /// Close the open window and store its report.
    Stop,
}

const EXAMPLES: &str = "\
Examples:
  bakery-top                                      # live view of the collector on 127.0.0.1:7431
  bakery-top --collector http://collector.bakery:7431 --token-file ~/.config/bakery/token
  bakery-top --collector https://collector.bakery:7431 --tls-ca ca.crt --token-file token
  bakery-top --once                               # one snapshot as text
  bakery-top --json | jq '.nodes[] | {name, share}'
  bakery-top --demo                               # made-up data, to try the keys
  BAKERY_DEMO=1 BAKERY_JSON=yes bakery-top        # the same as --demo --json
  bakery-top completions bash > /etc/bash_completion.d/bakery-top
  bakery-top window start --name run-1 --workload shop/web   # agents sample at 250 ms
  bakery-top window stop                          # stores the report
  bakery-top report --svg run-1.svg               # the newest report's chart
  bakery-top alerts --json                        # live verdicts
  bakery-top loadtest --report run.json --fail-on-hog -- oha -z 30s http://shop.local/

Keys in the live view: q quit, ? help, / filter, s sort, f freeze, Tab or 1-3 views, Enter a node's pods.
Environment: every flag has a variable, shown as [env: ...] above and in each subcommand's --help:
BAKERY_<FLAG> (--token-file is BAKERY_TOKEN_FILE). A subcommand's flag spelled like one above shares
its variable (alerts --json and report --json read BAKERY_JSON); the others are
BAKERY_<SUBCOMMAND>_<FLAG> (BAKERY_REPORT_SVG, BAKERY_WINDOW_START_NAME, BAKERY_LOADTEST_FAIL_ON_HOG).
On/off flags take 1, true, yes or on, and 0, false, no or off (or empty) from theirs. A flag given on
the command line wins over its variable. NO_COLOR turns colours off, unless --color (BAKERY_COLOR)
says always.";

fn parse_refresh(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration < MIN_REFRESH {
        return Err(format!("must be at least {}", humantime::format_duration(MIN_REFRESH)));
    }
    Ok(duration)
}

/// Whether the live view uses colours: `--color` first, then NO_COLOR (set and not empty, as
/// no-color.org defines it), then whether stdout is a terminal.
pub fn use_color(choice: ColorChoice, no_color: Option<&OsStr>, stdout_is_terminal: bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => stdout_is_terminal && no_color.is_none_or(|v| v.is_empty()),
    }
}

/// Whether to print one snapshot instead of running the live view.
pub fn prints_once(view: &ViewArgs, stdout_is_terminal: bool) -> bool {
    view.once || view.json || !stdout_is_terminal
}

/// Parses the command line, runs it, and reports a failure on stderr.
pub fn main() -> ExitCode {
    let cli = parse_from(std::env::args_os()).unwrap_or_else(|error| error.exit());
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("bakery-top: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Parses `args` (the program's name first) and the variables, as [`Parser::try_parse_from`] does,
/// and settles `report --json` against `--svg` ([`keep_json_over_svg`]).
pub fn parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = Cli::command().try_get_matches_from(args)?;
    let mut cli = Cli::from_arg_matches(&matches).map_err(|error| error.format(&mut Cli::command()))?;
    settle_report_format(&mut cli, &matches)?;
    let file = config_file(&cli.connection)
        .map_err(|error| Cli::command().error(clap::error::ErrorKind::InvalidValue, bakery_cli::error_chain(&error)))?;
    settle_config(&mut cli, &matches, file.unwrap_or_default())?;
    Ok(cli)
}

/// The config file `--config` names, or the one at the default place if it exists.
fn config_file(connection: &ConnectionArgs) -> Result<Option<TopConfig>, crate::config::ConfigError> {
    match &connection.config {
        Some(path) => crate::config::load(path, true),
        None => match crate::config::default_path(std::env::var_os("XDG_CONFIG_HOME"), std::env::var_os("HOME")) {
            Some(path) => crate::config::load(&path, false),
            None => Ok(None),
        },
    }
}

/// Fills what neither the command line nor the environment set from the config file, and keeps
/// one of --collector and --context: the one from the higher place (command line, environment,
/// file); from the same place they contradict each other.
fn settle_config(cli: &mut Cli, matches: &ArgMatches, file: TopConfig) -> Result<(), clap::Error> {
    let rank = |id: &str| match matches.value_source(id) {
        Some(ValueSource::CommandLine) => 3,
        Some(ValueSource::EnvVariable) => 2,
        _ => 0,
    };
    fn fill<T>(slot: &mut Option<T>, given: u8, value: Option<T>) {
        if given == 0 && value.is_some() {
            *slot = value;
        }
    }
    let connection = &mut cli.connection;
    fill(&mut connection.token_file, rank("token_file"), file.token_file);
    fill(&mut connection.tls_ca, rank("tls_ca"), file.tls_ca);
    fill(&mut connection.kubeconfig, rank("kubeconfig"), file.kubeconfig);
    fill(&mut connection.namespace, rank("namespace"), file.namespace);
    fill(&mut connection.release, rank("release"), file.release);
    if rank("color") == 0
        && let Some(color) = file.color
    {
        cli.view.color = color;
    }
    cli.view.palette = file.colors;
    let collector_rank = rank("collector").max(u8::from(file.collector.is_some()));
    let context_rank = rank("context").max(u8::from(file.context.is_some()));
    if rank("collector") == 0
        && let Some(collector) = file.collector
    {
        connection.collector = collector;
    }
    fill(&mut connection.context, rank("context"), file.context);
    match collector_rank.cmp(&context_rank) {
        std::cmp::Ordering::Greater => connection.context = None,
        std::cmp::Ordering::Equal if collector_rank > 0 => {
            let place =
                ["", "in the config file", "in the environment", "on the command line"][usize::from(collector_rank)];
            let message = format!("--collector and --context were both given {place}: give one");
            return Err(Cli::command().error(clap::error::ErrorKind::ArgumentConflict, message));
        }
        _ => {}
    }
    Ok(())
}

/// Keeps one of `report --json` and `--svg FILE` when both are set.
fn settle_report_format(cli: &mut Cli, matches: &ArgMatches) -> Result<(), clap::Error> {
    let (Some(Command::Report { json, svg, .. }), Some(("report", report))) = (&mut cli.command, matches.subcommand())
    else {
        return Ok(());
    };
    let (Some(json_source), Some(svg_source)) = (report.value_source("json"), report.value_source("svg")) else {
        return Ok(());
    };
    if !*json || svg.is_none() {
        return Ok(());
    }
    if keep_json_over_svg(json_source, svg_source)? {
        *svg = None;
    } else {
        *json = false;
    }
    Ok(())
}

/// Whether `report` prints JSON (true) or writes the SVG chart (false) when --json and --svg FILE
/// are both set, from where each came. Both on the command line contradict each other. Otherwise
/// the command line wins over the environment, and of two variables `BAKERY_REPORT_SVG` wins over
/// `BAKERY_JSON`, which asks every command for JSON.
fn keep_json_over_svg(json: ValueSource, svg: ValueSource) -> Result<bool, clap::Error> {
    match (json == ValueSource::CommandLine, svg == ValueSource::CommandLine) {
        (true, true) => {
            let mut command = Cli::command();
            command.build();
            let mut report = command.find_subcommand("report").cloned().unwrap_or_else(Cli::command);
            let message = "--json and --svg <FILE> cannot be used together: give one";
            Err(report.error(clap::error::ErrorKind::ArgumentConflict, message))
        }
        (json_given, _) => Ok(json_given),
    }
}

/// Runs a parsed command line.
pub fn run(mut cli: Cli) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    match cli.command.take() {
        Some(Command::Completions { shell }) => {
            clap_complete::generate(shell, &mut Cli::command(), "bakery-top", &mut stdout);
            return Ok(ExitCode::SUCCESS);
        }
        Some(Command::Man) => {
            clap_mangen::Man::new(Cli::command()).render(&mut stdout).context("cannot write the man page")?;
            return Ok(ExitCode::SUCCESS);
        }
        None => {}
        Some(Command::Loadtest(args)) => {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start tokio")?;
            return runtime.block_on(async {
                crate::commands::loadtest::run(args, cli.connection.reach().await?, &mut stdout).await
            });
        }
        Some(command) => return run_command(command, &cli.connection, &mut stdout),
    }
    let terminal = std::io::stdout().is_terminal();
    // One runtime for the whole view: a --context tunnel's forwards run on it.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start tokio")?;
    if cli.view.demo {
        return runtime.block_on(view(&cli, MadeUpSource::default(), terminal));
    }
    runtime.block_on(async {
        let source = GrpcSource::new(cli.connection.reach().await?)?;
        view(&cli, source, terminal).await
    })
}

/// Runs `alerts`, `report` or `window` against the collector, printing to `out`.
pub fn run_command(command: Command, connection: &ConnectionArgs, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start tokio")?;
    runtime.block_on(run_command_async(command, connection, out))?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// [`run_command`] inside a runtime the caller owns.
pub async fn run_command_async(
    command: Command,
    connection: &ConnectionArgs,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    use crate::commands::{alerts, report, window};
    let config = connection.reach().await?;
    match command {
        Command::Alerts { json } => alerts::run(config, json, out).await,
        Command::Report { id, json, svg } => {
            let format = match (json, svg) {
                (_, Some(path)) => report::ReportFormat::Svg(path),
                (true, None) => report::ReportFormat::Json,
                (false, None) => report::ReportFormat::Text,
            };
            report::run(config, id, format, out).await
        }
        Command::Window { action: WindowAction::Start { name, workload } } => {
            window::start(config, name, workload, out).await
        }
        Command::Window { action: WindowAction::Stop } => window::stop(config, out).await,
        // The exit code (a flagged hog) is for the command line; here the report is what counts.
        Command::Loadtest(args) => crate::commands::loadtest::run(args, config, out).await.map(drop),
        Command::Completions { .. } | Command::Man => Ok(()),
    }
}

async fn view(cli: &Cli, mut source: impl Source + 'static, terminal: bool) -> anyhow::Result<ExitCode> {
    if prints_once(&cli.view, terminal) {
        let snapshot = once(&mut source).await?;
        let mut stdout = std::io::stdout().lock();
        if cli.view.json {
            crate::snapshot::write_json(&mut stdout, &source.describe(), &snapshot)?;
        } else {
            crate::snapshot::write_text(&mut stdout, &source.describe(), &snapshot)?;
        }
        stdout.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    let color = use_color(cli.view.color, std::env::var_os("NO_COLOR").as_deref(), terminal);
    let mut app = App::new(source.describe(), cli.view.refresh, color, crate::now_ms());
    app.palette = cli.view.palette;
    crate::tui::run(app, source).await?;
    Ok(ExitCode::SUCCESS)
}

/// One snapshot with rates: when a live node has none yet (the collector had only one sample of
/// it), ask again once its next sample is due.
async fn once(source: &mut impl Source) -> anyhow::Result<Snapshot> {
    let mut snapshot = source.snapshot().await.with_context(|| format!("no snapshot from {}", source.describe()))?;
    let deadline = tokio::time::Instant::now() + ONCE_RATE_WAIT;
    while lacks_rates(&snapshot) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        match source.snapshot().await {
            Ok(next) => snapshot = next,
            // Keep what we have: gauges without rates beat no answer.
            Err(_) => break,
        }
    }
    Ok(snapshot)
}

fn lacks_rates(snapshot: &Snapshot) -> bool {
    snapshot.nodes.iter().any(|n| n.agent == AgentState::Live && n.cpu.is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("bakery-top").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_color_and_the_color_flag() {
        let set = Some(OsStr::new("1"));
        assert!(!use_color(ColorChoice::Auto, set, true), "NO_COLOR=1 turns colours off");
        assert!(use_color(ColorChoice::Auto, Some(OsStr::new("")), true), "an empty NO_COLOR is unset");
        assert!(use_color(ColorChoice::Always, set, false), "--color always wins over NO_COLOR");
        assert!(!use_color(ColorChoice::Never, None, true));
        assert!(!use_color(ColorChoice::Auto, None, false), "no colours into a pipe");
    }

    #[test]
    fn piped_output_or_json_means_one_snapshot() {
        assert!(!prints_once(&parse(&[]).view, true));
        assert!(prints_once(&parse(&[]).view, false));
        assert!(prints_once(&parse(&["--json"]).view, true));
        assert!(prints_once(&parse(&["--once"]).view, true));
    }

    #[test]
    fn refresh_takes_a_human_duration_with_a_floor() {
        assert_eq!(parse(&["--refresh", "250ms"]).view.refresh, Duration::from_millis(250));
        let error = Cli::try_parse_from(["bakery-top", "--refresh", "10ms"]).unwrap_err().to_string();
        assert!(error.contains("at least 100ms"), "{error}");
    }

    #[test]
    fn report_keeps_json_or_svg_by_where_each_came_from() {
        use ValueSource::{CommandLine, EnvVariable};
        assert!(keep_json_over_svg(CommandLine, CommandLine).is_err(), "both flags contradict each other");
        assert!(keep_json_over_svg(CommandLine, EnvVariable).unwrap(), "--json wins over BAKERY_REPORT_SVG");
        assert!(!keep_json_over_svg(EnvVariable, CommandLine).unwrap(), "--svg wins over BAKERY_JSON");
        assert!(!keep_json_over_svg(EnvVariable, EnvVariable).unwrap(), "BAKERY_REPORT_SVG over BAKERY_JSON");
        let error = parse_from(["bakery-top", "report", "--json", "--svg", "c.svg"]).unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::ArgumentConflict);
        let report = |args: &[&str]| match parse_from([&["bakery-top", "report"], args].concat()).unwrap().command {
            Some(Command::Report { json, svg, .. }) => (json, svg),
            other => panic!("{other:?}"),
        };
        assert_eq!(report(&["--json"]), (true, None));
        assert_eq!(report(&["--svg", "c.svg"]), (false, Some(PathBuf::from("c.svg"))));
    }

    /// Parses `args` with `file` as the config file, as `parse_from` does with the file it finds.
    fn parse_with_file(args: &[&str], file: &str) -> Result<Cli, clap::Error> {
        let matches = Cli::command().try_get_matches_from(std::iter::once("bakery-top").chain(args.iter().copied()))?;
        let mut cli = Cli::from_arg_matches(&matches)?;
        settle_config(&mut cli, &matches, crate::config::parse(file).unwrap())?;
        Ok(cli)
    }

    #[test]
    fn the_config_file_fills_only_what_the_command_line_leaves_unset() {
        let file = "collector = \"http://from-file:1\"\nrelease = \"prod\"\ncolor = \"never\"\n\
                    token-file = \"/etc/bakery/read-token\"\n";
        let cli = parse_with_file(&[], file).unwrap();
        assert_eq!(cli.connection.collector, "http://from-file:1");
        assert_eq!(cli.connection.release.as_deref(), Some("prod"));
        assert_eq!(cli.view.color, ColorChoice::Never);
        assert_eq!(cli.connection.token_file, Some(PathBuf::from("/etc/bakery/read-token")));
        let cli =
            parse_with_file(&["--collector", "http://flag:2", "--color", "always", "--token-file", "t"], file).unwrap();
        assert_eq!(cli.connection.collector, "http://flag:2", "the command line wins");
        assert_eq!(cli.view.color, ColorChoice::Always);
        assert_eq!(cli.connection.token_file, Some(PathBuf::from("t")));
    }

    #[test]
    fn collector_and_context_keep_the_one_from_the_higher_place() {
        let context_file = "context = \"pi\"\n";
        let cli = parse_with_file(&[], context_file).unwrap();
        assert_eq!(cli.connection.context.as_deref(), Some("pi"), "the file's context is used");
        let cli = parse_with_file(&["--collector", "http://c:1"], context_file).unwrap();
        assert_eq!(cli.connection.context, None, "--collector on the command line wins over the file's context");
        let cli = parse_with_file(&["--context"], "collector = \"http://c:1\"\n").unwrap();
        assert_eq!(cli.connection.context.as_deref(), Some(""), "--context alone: the current context");
        let cli = parse_with_file(&["--context", "lab", "--namespace", "bakery"], "").unwrap();
        assert_eq!(
            (cli.connection.context.as_deref(), cli.connection.namespace.as_deref()),
            (Some("lab"), Some("bakery"))
        );
        let error = parse_with_file(&["--collector", "http://c:1", "--context", "pi"], "").unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::ArgumentConflict);
        assert!(error.to_string().contains("both given on the command line"), "{error}");
        let error = parse_with_file(&[], "collector = \"http://c:1\"\ncontext = \"pi\"\n").unwrap_err();
        assert!(error.to_string().contains("in the config file"), "{error}");
    }

    #[test]
    fn connection_flags_work_before_and_after_a_subcommand() {
        let cli = parse(&["completions", "bash", "--collector", "http://c:1"]);
        assert_eq!(cli.connection.collector, "http://c:1");
    }
}
