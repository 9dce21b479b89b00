//! `bakery-bench`: the benchmark drivers behind `cargo xtask bench` (thin over `bakery_tests::bench_*`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(about = "bakery's benchmark drivers; run them through `cargo xtask bench <name>`")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// The agent against prometheus-node-exporter, with live simulated pods (needs root).
    Agent(AgentArgs),
    /// A collector outage's backlog replayed beside live samples, against the same agents
    /// without a backlog.
    Drain {
        /// Folder holding release builds of bakery-agent and bakery-collector.
        #[arg(long, default_value = "target/release")]
        bin_dir: PathBuf,
        #[arg(long, default_value_t = 5)]
        agents: usize,
        #[arg(long, default_value = "250ms", value_parser = humantime::parse_duration)]
        interval: Duration,
        /// How long the collector is away.
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        outage: Duration,
        /// The agents' interval while the collector is away: below --interval it compresses
        /// time (the same backlog in less wall time; the agents are restarted on their spools
        /// at --interval before the collector returns, so they retry within 2 s rather than
        /// the 5 s of a real long outage). Default: --interval.
        #[arg(long, value_parser = humantime::parse_duration)]
        outage_interval: Option<Duration>,
        /// Running time before the window without backlog.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        warmup: Duration,
        /// The window without backlog.
        #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
        window: Duration,
        /// The collector's --commit-interval (its default).
        #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
        commit_interval: Duration,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct AgentArgs {
    /// Folder holding release builds of bakery-agent and bakery-collector.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    #[arg(long, default_value_t = 30)]
    pods: usize,
    /// Connections each pod's client holds open; with --busy, the keep-alive connections that
    /// carry its load.
    #[arg(long, default_value_t = 3)]
    connections_per_pod: u32,
    /// How often the agent samples and node_exporter is scraped.
    #[arg(long, default_value = "250ms", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// The measured window, after the warm-up.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Running time before the measured window (start-up, the first reads
    /// of every pod's TCP tables, node_exporter's first scrapes); its agent
    /// CPU is reported on its own line.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Pods that carry traffic instead of idle connections: each pod's server answers HTTP/1.1
    /// (`bakery-test-pod http`) to a bounded load from its client in the node's namespace
    /// (`bakery-test-pod load`), through the warm-up and the window. Each pod's TCP counters then move
    /// every sample and its socket tables change, which is what a node under a load test costs
    /// the agent. The output adds the requests the pods answered a second.
    #[arg(long)]
    busy: bool,
    /// With --busy: requests a second to each pod, those on new connections included.
    #[arg(long, default_value_t = 40, requires = "busy")]
    requests_per_pod: u32,
    /// With --busy: new connections a second to each pod, one request each, closed by the pod
    /// (which keeps the TIME_WAIT); the other requests go over --connections-per-pod.
    #[arg(long, default_value_t = 4, requires = "busy")]
    new_connections_per_pod: u32,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

fn agent(args: AgentArgs) -> ExitCode {
    let busy = args.busy.then_some(bakery_tests::bench_agent::Busy {
        requests_per_pod: args.requests_per_pod,
        new_connections_per_pod: args.new_connections_per_pod,
    });
    let config = bakery_tests::bench_agent::AgentBench {
        bin_dir: args.bin_dir,
        pods: args.pods,
        connections_per_pod: args.connections_per_pod,
        interval: args.interval,
        duration: args.duration,
        warmup: args.warmup,
        busy,
    };
    match bakery_tests::bench_agent::run(&config) {
        Ok(result) => report(&result, args.json, result.table(), result.meets_goals()),
        Err(error) => {
            eprintln!("bench agent: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    match Cli::parse().bench {
        Bench::Agent(args) => agent(args),
        Bench::Drain { bin_dir, agents, interval, outage, outage_interval, warmup, window, commit_interval, json } => {
            let config = bakery_tests::bench_drain::DrainBench {
                bin_dir,
                agents,
                interval,
                outage,
                outage_interval: outage_interval.unwrap_or(interval),
                warmup,
                window,
                commit_interval,
            };
            match bakery_tests::bench_drain::run(&config) {
                Ok(result) => report(&result, json, result.table(), result.meets_goals()),
                Err(error) => {
                    eprintln!("bench drain: {error:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Prints a result as JSON or as its table; exit code 2 when it misses its goals.
fn report(result: &impl serde::Serialize, json: bool, table: String, meets_goals: bool) -> ExitCode {
    if json {
        println!("{}", serde_json::to_string_pretty(result).unwrap_or_default());
    } else {
        print!("{table}");
    }
    if meets_goals { ExitCode::SUCCESS } else { ExitCode::from(2) }
}
