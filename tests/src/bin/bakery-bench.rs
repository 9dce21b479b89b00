//! `bakery-bench`: the benchmark drivers behind `cargo xtask bench` (thin over `bakery_tests::bench_*`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "bakery's benchmark drivers; run them through `cargo xtask bench <name>`")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// The agent against prometheus-node-exporter, with live simulated pods (needs root).
    Agent {
        /// Folder holding release builds of bakery-agent and bakery-collector.
        #[arg(long, default_value = "target/release")]
        bin_dir: PathBuf,
        #[arg(long, default_value_t = 30)]
        pods: usize,
        #[arg(long, default_value_t = 3)]
        connections_per_pod: u32,
        #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
        interval: Duration,
        /// The measured window, after the warm-up.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Running time before the measured window (start-up, the first reads
        /// of every pod's TCP tables, node_exporter's first scrapes); its agent
        /// CPU is reported on its own line.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        warmup: Duration,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    match Cli::parse().bench {
        Bench::Agent { bin_dir, pods, connections_per_pod, interval, duration, warmup, json } => {
            let config = bakery_tests::bench_agent::AgentBench {
                bin_dir,
                pods,
                connections_per_pod,
                interval,
                duration,
                warmup,
            };
            match bakery_tests::bench_agent::run(&config) {
                Ok(result) => {
                    if json {
                        println!("{}", serde_json::to_string_pretty(&result).unwrap_or_default());
                    } else {
                        print!("{}", result.table());
                    }
                    if result.meets_goals() { ExitCode::SUCCESS } else { ExitCode::from(2) }
                }
                Err(error) => {
                    eprintln!("bench agent: {error:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
