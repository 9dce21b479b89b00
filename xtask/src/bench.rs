//! `cargo xtask bench <name>`: benchmarks that compare bakery with a peer or a baseline in the same run.
//!
//! Absolute timings on a shared 2-core machine are noise, so every benchmark
//! prints ratios against something measured alongside it. The drivers live
//! in `bakery-tests` (`bakery-bench`) and the crates' examples; this module
//! builds and runs them.

use std::process::Command;

use anyhow::Result;
use clap::Subcommand;

use crate::util::{cargo, exec, is_root, workspace_root};

#[derive(Debug, Clone, Subcommand)]
pub enum Bench {
    /// bakery-agent against prometheus-node-exporter with 30 live pods, sampled and scraped every
    /// 250 ms (root).
    Agent {
        /// Pods that carry traffic: each pod's server answers HTTP/1.1 to a bounded load from its
        /// client (40 requests/s a pod over 3 keep-alive connections and 4 new connections a second,
        /// only between the namespaces the run makes), instead of holding idle connections; the
        /// output adds the requests served a second. The goal for CPU per sample is then 0.1x
        /// node_exporter's per scrape, against 0.05x idle. Tune it with the driver's
        /// `--requests-per-pod` and `--new-connections-per-pod`, e.g. `--busy -- --requests-per-pod 20`.
        #[arg(long)]
        busy: bool,
        /// Extra arguments for the driver, e.g. `-- --duration 60s --pods 10`
        /// (`-- --help` lists them).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Synthetic agents (30 pods each) streaming to a collector on loopback:
    /// values stored per collector CPU-second, ack latency, RSS for 100 nodes.
    Ingest {
        /// Extra arguments for the driver, e.g. `-- --nodes 100 --seconds 20 --rate 1`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// One diagnosis tick for 100 nodes with 50 pods each.
    Analysis,
    /// Five agents' backlog of a 5-minute collector outage at 4 Hz replayed beside their live
    /// samples: seconds until all is committed, live delays against a window without backlog.
    Drain {
        /// Extra arguments for the driver, e.g. `-- --outage 60s --outage-interval 50ms` (the
        /// same 1200 samples per agent in a fifth of the time; the agents, restarted, then
        /// retry within 2 s instead of 5 s).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// oha's RPS through the mini-bakery with the agents sampling (1 Hz, or `-- --interval 250ms`
    /// as while a load-test window is open) against the agents stopped (root).
    Observer {
        /// Extra arguments for `bakery-demo bench-observer`, e.g. `-- --duration 15s --rounds 5 --interval 250ms`.
        #[arg(last = true)]
        args: Vec<String>,
    },
}

pub fn run(bench: Bench) -> Result<()> {
    match bench {
        Bench::Agent { busy, args } => agent(busy, &args),
        Bench::Ingest { args } => {
            exec(cargo(&["build", "--release", "-p", "bakery-collector"]))?;
            let mut driver = cargo(&["run", "--release", "-p", "bakery-collector", "--example", "ingest_bench", "--"]);
            driver.args(&args);
            exec(driver)
        }
        Bench::Analysis => exec(cargo(&["run", "--release", "-p", "bakery-diagnosis", "--example", "bench_tick"])),
        Bench::Drain { args } => drain(&args),
        Bench::Observer { args } => crate::demo::bench_observer(&args),
    }
}

fn agent(busy: bool, args: &[String]) -> Result<()> {
    if !is_root() {
        anyhow::bail!("`cargo xtask bench agent` creates network namespaces and cgroups: run it as root");
    }
    crate::setup::packages(&[("prometheus-node-exporter", "prometheus-node-exporter")])?;
    exec(cargo(&["build", "--release", "-p", "bakery-agent", "-p", "bakery-collector"]))?;
    exec(cargo(&["build", "-p", "bakery-tests", "--bin", "bakery-bench", "--bin", "bakery-test-pod"]))?;
    let root = workspace_root();
    let mut driver = Command::new(root.join("target/debug/bakery-bench"));
    driver.current_dir(&root).arg("agent").arg("--bin-dir").arg(root.join("target/release"));
    if busy {
        driver.arg("--busy");
    }
    driver.args(args);
    exec(driver)
}

fn drain(args: &[String]) -> Result<()> {
    exec(cargo(&["build", "--release", "-p", "bakery-agent", "-p", "bakery-collector"]))?;
    exec(cargo(&["build", "-p", "bakery-tests", "--bin", "bakery-bench"]))?;
    let root = workspace_root();
    let mut driver = Command::new(root.join("target/debug/bakery-bench"));
    driver.current_dir(&root).arg("drain").arg("--bin-dir").arg(root.join("target/release")).args(args);
    exec(driver)
}
