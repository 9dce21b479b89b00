//! The agent's command line: its flags, `--once`, streaming until SIGTERM/SIGINT, and the
//! `completions` and `man` subcommands.
//!
//! Every flag has an env fallback (`BAKERY_<FLAG>`, but `NODE_NAME`); on/off flags read theirs
//! with [`EnvBool`]. `--once` is the mode people run first; `--collector` streams to the
//! collector on a single-threaded runtime.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bakery_cli::EnvBool;
use clap::{ArgAction, CommandFactory, Parser, Subcommand};
use serde::Serialize;

use crate::node_cgroup::NodeCgroup;
use crate::pods::ScanPolicy;
use crate::rates::{self, Rates};
use crate::roots::HostRoots;
use crate::sampler::{Sample, Sampler};
use crate::spool::{self, SpoolConfig};
use crate::stream::{self, Auth, StreamConfig, TlsFiles};

/// bakery-agent samples a node's CPU, memory, pressure, thermals, network and
/// pods from /proc and /sys, and streams them to bakery-collector.
///
/// Start with `bakery-agent --once` to see what it reads on this node, or
/// `bakery-agent --once --json` for the same as JSON. In a pod, point it at
/// the host's filesystems: `--proc-root /host/proc --sys-root /host/sys`.
#[derive(Debug, Parser)]
#[command(
    name = "bakery-agent",
    version,
    about,
    long_about,
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Where the host's procfs is mounted. Every /proc read goes through it.
    #[arg(long, env = "BAKERY_PROC_ROOT", default_value = "/proc", value_name = "DIR")]
    pub proc_root: PathBuf,

    /// Where the host's sysfs is mounted (cgroups are read under <DIR>/fs/cgroup).
    #[arg(long, env = "BAKERY_SYS_ROOT", default_value = "/sys", value_name = "DIR")]
    pub sys_root: PathBuf,

    /// Read the node's CPU, memory and pressure from this cgroup instead of
    /// the machine's /proc: for nodes that are containers (kind, k3d, LXC).
    ///
    /// /proc/stat, /proc/meminfo and /proc/pressure are not namespaced: in a
    /// container they show the whole host, so every such node would look the
    /// same. PATH is relative to the cgroup root (<sys-root>/fs/cgroup; on
    /// cgroup v1, to the cpuacct and memory mounts below it), as
    /// /proc/<pid>/cgroup of a process on the node names its cgroup, e.g.
    /// /docker/<id> or /lxc.payload.node1; / when a cgroup namespace makes the
    /// node's own cgroup the root (kind and k3d on cgroup v2).
    ///
    /// What changes: CPU user and system time are the cgroup's (its user time
    /// includes niced tasks, so nice is 0), idle is the rest of the host's time, so the modes still add up to wall
    /// time x cores; per-core CPU lines are left out (a cgroup has no per-core
    /// split). Memory total is the cgroup's limit where that is below the
    /// host's, used is the cgroup's usage minus its inactive file cache, and
    /// available is the rest. On cgroup v2, pressure is the cgroup's
    /// (cpu.pressure, memory.pressure, io.pressure).
    ///
    /// What stays the host's: the CPU time base, iowait, irq, softirq and
    /// steal; swap; pressure on cgroup v1; thermals, frequencies, NICs and
    /// conntrack. Pods are found as without it. --once names the cgroup the
    /// figures came from.
    #[arg(long, env = "BAKERY_NODE_CGROUP", value_name = "PATH", value_parser = parse_node_cgroup)]
    pub node_cgroup: Option<String>,

    /// This node's name as Kubernetes knows it. Defaults to the host name
    /// read from <proc-root>/sys/kernel/hostname.
    #[arg(long, env = "NODE_NAME", value_name = "NAME")]
    pub node_name: Option<String>,

    /// Take one sample, print it and exit. Two readings are taken
    /// --rate-window apart so that rates and utilisation can be shown.
    #[arg(long, env = "BAKERY_ONCE", action = ArgAction::SetTrue, value_parser = EnvBool)]
    pub once: bool,

    /// With --once: print JSON instead of a summary for people.
    // Not `requires = "once"`: clap counts a variable set to 0 as given.
    #[arg(long, env = "BAKERY_JSON", action = ArgAction::SetTrue, value_parser = EnvBool)]
    pub json: bool,

    /// With --once: time between the two readings that rates come from.
    #[arg(long, env = "BAKERY_RATE_WINDOW", default_value = "500ms", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub rate_window: Duration,

    /// Stream samples to this bakery-collector, e.g. http://bakery-collector:7431
    /// (https://... with --tls-ca). The agent then samples every --interval
    /// and streams until SIGTERM or SIGINT. --once ignores it.
    #[arg(long, env = "BAKERY_COLLECTOR", value_name = "URL", help_heading = "Streaming")]
    pub collector: Option<String>,

    /// Time between samples while streaming (50ms to 1h). The collector may
    /// change it while running, e.g. to sample faster during a load test.
    #[arg(long, env = "BAKERY_INTERVAL", default_value = "1s", value_parser = parse_interval, value_name = "DURATION", help_heading = "Streaming")]
    pub interval: Duration,

    /// File holding the bearer token the collector accepts (the file's
    /// content, surrounding whitespace ignored). Read again on every
    /// reconnect, so a rotated token takes effect without a restart. In
    /// Kubernetes the chart mounts a projected service-account token here
    /// (a `serviceAccountToken` volume, audience `bakery`, one hour), which
    /// the kubelet rotates in place; the collector checks it with a
    /// TokenReview and it proves this pod's node, so the agent can stream
    /// only as that node. A node token (listed in the collector's
    /// --node-token-file) binds a node too; the collector's shared token
    /// (its --token-file) does not.
    // Not `conflicts_with = "insecure_no_auth"`: clap counts BAKERY_INSECURE_NO_AUTH=0 as given;
    // `stream_config` refuses the two together.
    #[arg(long, env = "BAKERY_TOKEN_FILE", value_name = "FILE", help_heading = "Streaming")]
    pub token_file: Option<PathBuf>,

    /// Send no token. Only for a collector that also runs with
    /// --insecure-no-auth (a lab or a test): anyone who reaches it can then
    /// write data as any node.
    #[arg(
        long,
        env = "BAKERY_INSECURE_NO_AUTH",
        action = ArgAction::SetTrue,
        value_parser = EnvBool,
        help_heading = "Streaming"
    )]
    pub insecure_no_auth: bool,

    /// PEM bundle of the CA that signed the collector's certificate. Needed
    /// for https:// collector URLs.
    #[arg(long, env = "BAKERY_TLS_CA", value_name = "FILE", help_heading = "Streaming")]
    pub tls_ca: Option<PathBuf>,

    /// PEM certificate the agent presents for mutual TLS (with --tls-key and
    /// --tls-ca), when the collector runs with --tls-client-ca. It proves the
    /// node in its Subject CN (or, without one, its first DNS name): that must
    /// be this agent's --node-name.
    #[arg(long, env = "BAKERY_TLS_CERT", value_name = "FILE", requires_all = ["tls_key", "tls_ca"], help_heading = "Streaming")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "BAKERY_TLS_KEY", value_name = "FILE", requires = "tls_cert", help_heading = "Streaming")]
    pub tls_key: Option<PathBuf>,

    /// Also keep samples the collector has not acknowledged yet in this
    /// directory, so they survive an agent restart (kill -9 included) and
    /// are sent when the collector is back. Without it they are kept in
    /// memory only. Give each agent its own directory (a hostPath on the node).
    #[arg(long, env = "BAKERY_SPOOL_DIR", value_name = "DIR", help_heading = "Streaming")]
    pub spool_dir: Option<PathBuf>,

    /// How long a stopping agent (SIGTERM, Ctrl-C) keeps its stream open for
    /// the collector to acknowledge what it holds; past it, what is still
    /// unacknowledged stays in the --spool-dir for the next start, or is lost
    /// with a memory spool (the exit line says how many). Keep it under the
    /// pod's termination grace period (30 s in the chart).
    #[arg(long, env = "BAKERY_FLUSH_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration, value_name = "DURATION", help_heading = "Streaming")]
    pub flush_timeout: Duration,

    /// Most pod network namespaces whose TCP socket tables (/proc/<pid>/net/tcp
    /// and tcp6) are read per sample, stalest first; the others keep their
    /// last by-state tally and report its age. Each read walks the node-wide
    /// TCP hash once per table (1.7 ms of CPU with 262144 buckets; the kernel sizes
    /// the hash by RAM). A namespace whose TCP counters (net/snmp,
    /// net/sockstat) did not move is not read again. Default: 2 while
    /// streaming, every table with --once.
    #[arg(long, env = "BAKERY_TCP_TABLE_READS_PER_SAMPLE", value_name = "N")]
    pub tcp_table_reads_per_sample: Option<u32>,

    /// Shortest time between two reads of one pod's TCP socket tables while
    /// streaming. A pod under load moves its TCP counters every sample; its
    /// by-state tally (inbound and outbound established, listening,
    /// time-wait, ...) is then re-read at most this often and reports its age
    /// meanwhile, while its counters (established now, opens, resets) stay
    /// live every sample. Without it, an agent under load spent most of its
    /// CPU walking the TCP hash. A new pod's first tally is not delayed.
    /// 0s: whenever the counters moved (within the per-sample budget). --once
    /// reads every table.
    #[arg(long, env = "BAKERY_TCP_TABLE_MIN_AGE", default_value = "5s", value_parser = humantime::parse_duration, value_name = "DURATION", help_heading = "Streaming")]
    pub tcp_table_min_age: Duration,

    /// Most re-reads of pod TCP socket tables per second, node-wide, while
    /// streaming: with more busy pods than this rate times
    /// --tcp-table-min-age, the rate paces them, stalest first, and each
    /// pod's tally is at most (busy pods / rate) seconds old, which it
    /// reports. Each re-read walks the node-wide TCP hash. A new pod's first
    /// read is not counted.
    #[arg(long, env = "BAKERY_TCP_TABLE_REREADS_PER_SECOND", default_value_t = crate::pods::DEFAULT_TCP_TABLE_REREADS_PER_SECOND, value_name = "N", help_heading = "Streaming")]
    pub tcp_table_rereads_per_second: u32,

    /// Longest time between two walks of /proc for pod processes that started
    /// or exited. A new pod shows up, and a deleted one disappears, within this
    /// time; each pod's counters are still read every sample. A walk lists
    /// every process on the node, the largest fixed cost of a sample on a busy
    /// node. 0s: walk every sample. --once always walks.
    #[arg(long, env = "BAKERY_PROCESS_RESCAN_INTERVAL", default_value = "2s", value_parser = humantime::parse_duration, value_name = "DURATION", help_heading = "Streaming")]
    pub process_rescan_interval: Duration,

    /// Longest a pod's inactive page cache figure (memory.stat) is reused in
    /// its working set; memory usage itself is read every sample. memory.stat
    /// is the costliest pod file (the kernel flushes per-CPU statistics and
    /// prints about 50 counters), and page cache ages over seconds (cAdvisor
    /// refreshes it every 10 s or more). 0s: every sample. --once reads it
    /// afresh.
    #[arg(long, env = "BAKERY_MEMORY_STAT_REFRESH", default_value = "2s", value_parser = humantime::parse_duration, value_name = "DURATION", help_heading = "Streaming")]
    pub memory_stat_refresh: Duration,

    /// Longest a pod network namespace that moved no packet keeps its last TCP
    /// counters (net/snmp, net/sockstat) instead of reading them again. Those
    /// counters move only with a segment, so an idle pod's figures stay exact;
    /// what changes without one (a TIME_WAIT socket expiring, a new listener, a
    /// connect timing out) shows up within this time. Idle pods then cost one
    /// small file (net/dev) per sample. 0s: every sample. --once reads afresh.
    #[arg(long, env = "BAKERY_QUIET_TCP_REFRESH", default_value = "2s", value_parser = humantime::parse_duration, value_name = "DURATION", help_heading = "Streaming")]
    pub quiet_tcp_refresh: Duration,

    /// Most the spool may hold, in memory or on disk: 64MiB keeps 4 to 9
    /// hours of samples at 1s. When full, the oldest samples are dropped
    /// and the collector records the dropped range as a gap. Accepts
    /// 65536, 512KiB, 64MiB, 1GiB (or kB, MB, GB).
    #[arg(long, env = "BAKERY_SPOOL_MAX_BYTES", default_value = "64MiB", value_parser = parse_bytes, value_name = "BYTES", help_heading = "Streaming")]
    pub spool_max_bytes: u64,
}

/// What the agent does besides sampling.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout.
    Man,
}

const EXAMPLES: &str = "\
Examples:
  bakery-agent --once                      # what this node looks like now
  bakery-agent --once --json | jq .rates   # utilisation and byte rates
  bakery-agent --once --proc-root tests/fixtures/pi5/proc --sys-root tests/fixtures/pi5/sys
  bakery-agent --collector http://bakery-collector:7431 --token-file /var/run/bakery/token \\
      --spool-dir /var/lib/bakery-agent/spool   # stream, surviving restarts
  bakery-agent --collector http://127.0.0.1:7431 --insecure-no-auth --interval 250ms   # a lab
  BAKERY_INSECURE_NO_AUTH=1 bakery-agent --collector http://127.0.0.1:7431   # the same
  bakery-agent completions bash > /etc/bash_completion.d/bakery-agent
  bakery-agent man | man -l -

Environment: every flag has a variable, shown as [env: ...] above: BAKERY_<FLAG> (--spool-dir is
BAKERY_SPOOL_DIR), but --node-name reads NODE_NAME, as the Kubernetes downward API sets it. On/off
flags take 1, true, yes or on, and 0, false, no or off (or empty) from theirs. A flag given on the
command line wins over its variable. Logs: BAKERY_LOG=debug (tracing env-filter syntax), on stderr,
in colour unless NO_COLOR is set.";

/// Parses `--interval`: a humantime duration within the bounds the
/// collector's SetInterval is also held to.
fn parse_interval(text: &str) -> Result<Duration, String> {
    let interval = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if !(stream::MIN_INTERVAL..=stream::MAX_INTERVAL).contains(&interval) {
        return Err(format!(
            "{text} is outside {} to {}",
            humantime::format_duration(stream::MIN_INTERVAL),
            humantime::format_duration(stream::MAX_INTERVAL)
        ));
    }
    Ok(interval)
}

/// Parses `--node-cgroup`: a cgroup below the cgroup root, so `..` is
/// refused (it would read another tree than the one the flag names).
fn parse_node_cgroup(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("an empty cgroup path; pass / for the cgroup root itself".to_string());
    }
    if text.split('/').any(|segment| segment == "..") {
        return Err(format!("{text:?} leaves the cgroup root; pass a path below it, e.g. /docker/<id>"));
    }
    Ok(text.to_string())
}

/// Smallest `--spool-max-bytes`: a few samples.
const MIN_SPOOL_BYTES: u64 = 16 * 1024;

/// Parses a byte size: a plain number of bytes, or a number with a unit
/// (KiB, MiB, GiB powers of 1024; kB, MB, GB powers of 1000).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed.find(|c: char| !c.is_ascii_digit()).unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    let number: u64 = digits.parse().map_err(|_| format!("{text:?} is not a size such as 64MiB or 1048576"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => return Err(format!("unknown unit {other:?} in {text:?}; use KiB, MiB, GiB, kB, MB or GB")),
    };
    let bytes = number.checked_mul(factor).ok_or_else(|| format!("{text:?} is too large"))?;
    if bytes < MIN_SPOOL_BYTES {
        return Err(format!("{text:?} is below the minimum of {MIN_SPOOL_BYTES} bytes (16KiB)"));
    }
    Ok(bytes)
}

/// What `--once --json` prints: the second reading and the rates since the first.
#[derive(Debug, Serialize)]
pub struct OnceOutput {
    pub sample: Sample,
    pub rates: Rates,
}

/// Runs the agent; the binary's `main` is only this.
pub fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(command) = &args.command {
        return print_generated(command);
    }
    bakery_cli::init_logs();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bakery-agent: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `completions` and `man`: generated from the flags, printed to stdout.
fn print_generated(command: &Command) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match command {
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Args::command(), "bakery-agent", &mut stdout);
        }
        Command::Man => {
            if let Err(error) = clap_mangen::Man::new(Args::command()).render(&mut stdout) {
                eprintln!("bakery-agent: cannot write the man page: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

fn run(args: Args) -> anyhow::Result<()> {
    if args.json && !args.once {
        anyhow::bail!("--json (BAKERY_JSON) prints the --once sample as JSON: pass --once --json");
    }
    let roots = HostRoots::new(&args.proc_root, &args.sys_root);
    let node_name = match &args.node_name {
        Some(name) => name.clone(),
        None => crate::node_name_from(&roots)?,
    };
    if !args.once {
        return stream_forever(&args, roots, node_name);
    }
    let policy = ScanPolicy {
        tcp_table_reads_per_sample: args.tcp_table_reads_per_sample.unwrap_or(u32::MAX),
        ..ScanPolicy::EXACT
    };
    let output = once(sampler(&args, roots, node_name, policy), args.rate_window);
    let mut stdout = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut stdout, &output)?;
        writeln!(stdout)?;
    } else {
        write!(stdout, "{}", crate::summary::render(&output.sample, &output.rates))?;
    }
    Ok(())
}

/// The sampler the flags describe.
fn sampler(args: &Args, roots: HostRoots, node_name: String, policy: ScanPolicy) -> Sampler {
    let sampler = Sampler::new(roots, node_name).with_scan_policy(policy);
    match &args.node_cgroup {
        Some(path) => sampler.with_node_cgroup(NodeCgroup::new(path)),
        None => sampler,
    }
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

/// What to stream where, from the flags; errors tell the user what to pass.
pub fn stream_config(args: &Args, node_name: String, boot_id: String) -> anyhow::Result<StreamConfig> {
    let Some(collector) = &args.collector else {
        anyhow::bail!(
            "nothing to do: pass --collector URL (or BAKERY_COLLECTOR) to stream to bakery-collector, \
             e.g. --collector http://bakery-collector:7431 --token-file /var/run/bakery/token, \
             or --once to print one sample and exit"
        );
    };
    let auth = match (&args.token_file, args.insecure_no_auth) {
        (Some(path), false) => Auth::TokenFile(path.clone()),
        (None, true) => Auth::None,
        (None, false) => anyhow::bail!(
            "pass --token-file FILE (or BAKERY_TOKEN_FILE) with the bearer token the collector accepts, \
             or --insecure-no-auth if the collector runs without tokens"
        ),
        (Some(_), true) => anyhow::bail!("--token-file and --insecure-no-auth contradict each other; pass one"),
    };
    let tls = args
        .tls_ca
        .as_ref()
        .map(|ca| TlsFiles { ca: ca.clone(), client_identity: args.tls_cert.clone().zip(args.tls_key.clone()) });
    Ok(StreamConfig {
        boot_id,
        interval: args.interval,
        tls,
        spool: SpoolConfig {
            dir: args.spool_dir.clone(),
            max_bytes: args.spool_max_bytes,
            fsync_interval: spool::DEFAULT_FSYNC_INTERVAL,
        },
        flush_timeout: args.flush_timeout,
        ..StreamConfig::new(collector.clone(), node_name, auth)
    })
}

/// `/proc/sys/kernel/random/boot_id` under the proc root: sequence numbers
/// are reported with it, so the collector can tell a reboot.
fn boot_id(roots: &HostRoots) -> String {
    let path = roots.proc("sys/kernel/random/boot_id");
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().to_string(),
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "no boot id; the Hello carries an empty one");
            String::new()
        }
    }
}

/// Streams until SIGTERM or SIGINT, then flushes and returns.
fn stream_forever(args: &Args, roots: HostRoots, node_name: String) -> anyhow::Result<()> {
    let config = stream_config(args, node_name, boot_id(&roots))?;
    // One thread: the agent shares a Pi with the workloads it watches, and
    // sampling plus one gRPC stream never need more.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let summary = runtime.block_on(async {
        let shutdown = shutdown_signal()?;
        tracing::info!(
            collector = %config.collector,
            node = %config.node_name,
            interval = %humantime::format_duration(config.interval),
            spool = %config.spool.dir.as_ref().map_or_else(|| "memory".to_string(), |d| d.display().to_string()),
            spool_max_bytes = config.spool.max_bytes,
            "streaming"
        );
        let policy = ScanPolicy {
            tcp_table_reads_per_sample: args
                .tcp_table_reads_per_sample
                .unwrap_or(ScanPolicy::STREAMING.tcp_table_reads_per_sample),
            process_rescan: args.process_rescan_interval,
            memory_stat_refresh: args.memory_stat_refresh,
            tcp_table_min_age: args.tcp_table_min_age,
            tcp_table_rereads_per_second: args.tcp_table_rereads_per_second,
            quiet_tcp_counters_refresh: args.quiet_tcp_refresh,
        };
        let sampler = sampler(args, roots, config.node_name.clone(), policy);
        anyhow::Ok(stream::run(config, sampler, shutdown).await?)
    })?;
    tracing::info!(
        acked_seq = summary.acked_seq,
        last_seq = summary.last_seq,
        unacknowledged = summary.unacknowledged,
        kept_on_disk = summary.spool_on_disk,
        "stopped"
    );
    Ok(())
}

/// Completes on the first SIGTERM (Kubernetes stopping the pod) or SIGINT.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(flags: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("bakery-agent").chain(flags.iter().copied())).unwrap()
    }

    fn config_error(flags: &[&str]) -> String {
        stream_config(&args(flags), "n".into(), String::new()).unwrap_err().to_string()
    }

    #[test]
    fn without_collector_or_once_the_error_says_what_to_pass() {
        let error = config_error(&[]);
        assert!(error.contains("--collector URL") && error.contains("--once"), "{error}");
    }

    #[test]
    fn streaming_needs_a_token_or_an_explicit_insecure_flag() {
        let error = config_error(&["--collector", "http://c:7431"]);
        assert!(error.contains("--token-file") && error.contains("--insecure-no-auth"), "{error}");
        let both = config_error(&["--collector", "http://c:1", "--token-file", "t", "--insecure-no-auth"]);
        assert!(both.contains("contradict each other"), "{both}");
        let config = stream_config(&args(&["--collector", "http://c:1", "--insecure-no-auth"]), "n".into(), "b".into());
        assert_eq!(config.unwrap().auth, Auth::None);
    }

    #[test]
    fn streaming_flags_reach_the_config() {
        let flags = [
            "--collector",
            "https://collector:7431",
            "--token-file",
            "/run/token",
            "--interval",
            "250ms",
            "--tls-ca",
            "/ca.pem",
            "--tls-cert",
            "/agent.pem",
            "--tls-key",
            "/agent.key",
            "--spool-dir",
            "/var/lib/spool",
            "--spool-max-bytes",
            "1MiB",
        ];
        let config = stream_config(&args(&flags), "master-02".into(), "boot".into()).unwrap();
        assert_eq!(config.collector, "https://collector:7431");
        assert_eq!((config.node_name.as_str(), config.boot_id.as_str()), ("master-02", "boot"));
        assert_eq!(config.auth, Auth::TokenFile("/run/token".into()));
        assert_eq!(config.interval, Duration::from_millis(250));
        let tls = config.tls.unwrap();
        assert_eq!(tls.ca, PathBuf::from("/ca.pem"));
        assert_eq!(tls.client_identity, Some(("/agent.pem".into(), "/agent.key".into())));
        assert_eq!(config.spool.dir, Some("/var/lib/spool".into()));
        assert_eq!(config.spool.max_bytes, 1 << 20);
    }

    #[test]
    fn defaults_are_one_second_and_a_64_mib_memory_spool() {
        let config = stream_config(&args(&["--collector", "http://c:1", "--insecure-no-auth"]), "n".into(), "".into());
        let config = config.unwrap();
        assert_eq!(config.interval, Duration::from_secs(1));
        assert_eq!(config.spool.max_bytes, 64 << 20);
        assert_eq!(config.spool.dir, None);
    }

    #[test]
    fn a_client_certificate_needs_its_key_and_a_ca() {
        assert!(Args::try_parse_from(["a", "--tls-cert", "c.pem"]).is_err());
        assert!(Args::try_parse_from(["a", "--tls-cert", "c.pem", "--tls-key", "k.pem"]).is_err());
        assert!(Args::try_parse_from(["a", "--tls-key", "k.pem"]).is_err());
    }

    #[test]
    fn json_goes_with_once() {
        let error = run(args(&["--json"])).unwrap_err().to_string();
        assert!(error.contains("--once --json"), "{error}");
    }

    #[test]
    fn intervals_outside_the_bounds_are_refused() {
        assert_eq!(parse_interval("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_interval("10ms").is_err());
        assert!(parse_interval("2h").is_err());
        assert!(parse_interval("soon").is_err());
    }

    #[test]
    fn a_node_cgroup_must_stay_below_the_cgroup_root() {
        for (flag, expected) in [
            ("/docker/3f2a", Some("/docker/3f2a")),
            ("bakery-demo/master-01", Some("bakery-demo/master-01")),
            ("/", Some("/")),
            ("lxc.payload.node1", Some("lxc.payload.node1")),
            ("", None),
            ("../escape", None),
            ("/docker/../../etc", None),
        ] {
            let parsed = Args::try_parse_from(["a", "--once", "--node-cgroup", flag]).map(|a| a.node_cgroup);
            assert_eq!(parsed.ok().flatten().as_deref(), expected, "{flag:?}");
        }
        assert_eq!(args(&["--once"]).node_cgroup, None, "the host's /proc without the flag");
    }

    #[test]
    fn byte_sizes_read_like_people_write_them() {
        for (text, bytes) in [
            ("65536", 65_536),
            ("64MiB", 64 << 20),
            ("64 MiB", 64 << 20),
            ("512KiB", 512 << 10),
            ("1GiB", 1 << 30),
            ("20kB", 20_000),
            ("5MB", 5_000_000),
        ] {
            assert_eq!(parse_bytes(text), Ok(bytes), "{text}");
        }
        for bad in ["", "MiB", "12 parsecs", "-5", "1KiB", "99999999999999999999GiB"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }
}
