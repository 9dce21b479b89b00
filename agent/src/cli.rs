//! The agent's command line: flags (each with an env fallback) and the
//! `--once` mode people run first.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use serde::Serialize;

use crate::rates::{self, Rates};
use crate::roots::HostRoots;
use crate::sampler::{Sample, Sampler};

/// bakery-agent samples a node's CPU, memory, pressure, thermals, network and
/// pods from /proc and /sys, and streams them to bakery-collector.
///
/// Start with `bakery-agent --once` to see what it reads on this node, or
/// `bakery-agent --once --json` for the same as JSON. In a pod, point it at
/// the host's filesystems: `--proc-root /host/proc --sys-root /host/sys`.
#[derive(Debug, Parser)]
#[command(name = "bakery-agent", version, about, long_about, after_help = EXAMPLES)]
pub struct Args {
    /// Where the host's procfs is mounted. Every /proc read goes through it.
    #[arg(long, env = "BAKERY_PROC_ROOT", default_value = "/proc", value_name = "DIR")]
    pub proc_root: PathBuf,

    /// Where the host's sysfs is mounted (cgroups are read under <DIR>/fs/cgroup).
    #[arg(long, env = "BAKERY_SYS_ROOT", default_value = "/sys", value_name = "DIR")]
    pub sys_root: PathBuf,

    /// This node's name as Kubernetes knows it. Defaults to the host name
    /// read from <proc-root>/sys/kernel/hostname.
    #[arg(long, env = "NODE_NAME", value_name = "NAME")]
    pub node_name: Option<String>,

    /// Take one sample, print it and exit. Two readings are taken
    /// --rate-window apart so that rates and utilisation can be shown.
    #[arg(long)]
    pub once: bool,

    /// With --once: print JSON instead of a summary for people.
    #[arg(long, requires = "once")]
    pub json: bool,

    /// With --once: time between the two readings that rates come from.
    #[arg(long, env = "BAKERY_RATE_WINDOW", default_value = "500ms", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub rate_window: Duration,
}

const EXAMPLES: &str = "\
Examples:
  bakery-agent --once                      # what this node looks like now
  bakery-agent --once --json | jq .rates   # utilisation and byte rates
  bakery-agent --once --proc-root tests/fixtures/pi5/proc --sys-root tests/fixtures/pi5/sys";

/// What `--once --json` prints: the second reading and the rates since the first.
#[derive(Debug, Serialize)]
pub struct OnceOutput {
    pub sample: Sample,
    pub rates: Rates,
}

/// Runs the agent; the binary's `main` is only this.
pub fn main() -> ExitCode {
    let args = Args::parse();
    init_tracing();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bakery-agent: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BAKERY_LOG").unwrap_or_else(|_| "info".into());
    // Logs go to stderr so that `--once --json` output stays clean on stdout.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::env::var_os("NO_COLOR").is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn run(args: Args) -> anyhow::Result<()> {
    let roots = HostRoots::new(&args.proc_root, &args.sys_root);
    let node_name = match &args.node_name {
        Some(name) => name.clone(),
        None => crate::node_name_from(&roots)?,
    };
    if !args.once {
        anyhow::bail!("streaming to a collector is not available in this build; run with --once to print one sample");
    }
    let output = once(Sampler::new(roots, node_name), args.rate_window);
    let mut stdout = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut stdout, &output)?;
        writeln!(stdout)?;
    } else {
        write!(stdout, "{}", crate::summary::render(&output.sample, &output.rates))?;
    }
    Ok(())
}

/// Two readings `window` apart, and the rates between them.
pub fn once(mut sampler: Sampler, window: Duration) -> OnceOutput {
    let first = sampler.sample(crate::now_ms());
    // A plain sleep is right here: --once is a one-shot CLI with no runtime.
    #[allow(clippy::disallowed_methods)]
    std::thread::sleep(window);
    let second = sampler.sample(crate::now_ms());
    let rates = rates::between(&first, &second);
    OnceOutput { sample: second, rates }
}
