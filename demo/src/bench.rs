//! `bakery-demo bench-observer`: what watching costs. oha's requests per second through the
//! cluster with every node's agent sampling at `--interval` (1 s; 250 ms is the rate agents keep
//! while a load-test window is open), against the same load with the agents stopped,
//! in the same cluster and the same run. Rounds alternate (with, without, without, with, ...) so a
//! drift of the machine over the run falls on both sides alike. The load runs as fast as it can
//! (no rate limit), so throughput is what the machine can do and any CPU the agents take shows up.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::cli::{ScenarioArgs, prepare};
use crate::run::{Demo, Options};
use crate::{Error, Result, interrupt};

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub scenario: ScenarioArgs,
    /// Rounds per side (each side runs this many loads of --duration, default 10s).
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// The agents' sampling interval on the "with" side: 1s as between tests, 250ms as while a
    /// load-test window is open.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub interval: Duration,
    /// oha connections: enough that the machine's CPU, not the requests' latency, limits the
    /// throughput, so CPU the agents take shows up as requests lost.
    #[arg(long, default_value_t = 100)]
    pub connections: u32,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// One load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Round {
    pub agents: bool,
    pub requests_per_second: f64,
    pub requests: u64,
    /// CPU the agents used during the load, all together, as a share of one core (percent).
    #[serde(default)]
    pub agents_cpu_percent: f64,
    /// CPU the collector used during the load, percent of one core: it receives, stores and
    /// acknowledges what the agents send, so it is part of what watching costs.
    #[serde(default)]
    pub collector_cpu_percent: f64,
}

/// CPU seconds of a set of processes and their descendants (an agent runs as its launcher's
/// child in the node's PID namespace), read at the start and at the end of a round.
struct CpuMeter {
    pids: Vec<u32>,
    start_s: f64,
}

impl CpuMeter {
    fn start(roots: Vec<u32>) -> Self {
        let mut pids = roots;
        let mut next = 0;
        while next < pids.len() {
            pids.extend(bakery_lab::process::children_of(pids[next]));
            next += 1;
        }
        let start_s = Self::total(&pids);
        Self { pids, start_s }
    }

    /// All processes' utime + stime; a process that exited counts nothing more.
    fn total(pids: &[u32]) -> f64 {
        pids.iter().filter_map(|pid| bakery_lab::measure::cpu_seconds(*pid).ok()).sum()
    }

    /// Percent of one core over `elapsed_s`.
    fn percent(&self, elapsed_s: f64) -> f64 {
        if elapsed_s <= 0.0 {
            return 0.0;
        }
        100.0 * (Self::total(&self.pids) - self.start_s).max(0.0) / elapsed_s
    }
}

/// The benchmark's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObserverBench {
    pub scenario: String,
    pub seconds_per_round: f64,
    /// The agents' sampling interval on the "with" side, ms.
    pub agent_interval_ms: u64,
    pub connections: u32,
    pub rounds: Vec<Round>,
    pub rps_with_agents: f64,
    pub rps_without_agents: f64,
    /// (without - with) / without, percent; the goal is below 0.5 % with agents at 250 ms.
    pub rps_lost_percent: f64,
    /// The loss within each adjacent (with, without) pair of rounds, percent, and their median.
    pub paired_lost_percent: Vec<f64>,
    pub median_paired_lost_percent: f64,
    /// Standard deviation of the rounds on each side, req/s.
    pub rps_spread_with_agents: f64,
    pub rps_spread_without_agents: f64,
}

/// Which side each round is on: with, without, without, with, with, without, ...
pub fn schedule(rounds_per_side: u32) -> Vec<bool> {
    (0..rounds_per_side * 2).map(|i| (i % 4 == 0) || (i % 4 == 3)).collect()
}

/// Standard deviation of one side's rounds (the noise the loss must be read against).
pub fn spread(rounds: &[Round], agents: bool) -> f64 {
    let side: Vec<f64> = rounds.iter().filter(|r| r.agents == agents).map(|r| r.requests_per_second).collect();
    if side.len() < 2 {
        return 0.0;
    }
    let mean = side.iter().sum::<f64>() / side.len() as f64;
    (side.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (side.len() - 1) as f64).sqrt()
}

/// The loss within each adjacent pair of rounds (one with, one without agents), percent, and
/// their median: a drift of the machine's other load over the run (other builds on a shared
/// machine) cancels within a pair far better than between the sides' means.
pub fn paired_losses(rounds: &[Round]) -> (Vec<f64>, f64) {
    let mut losses: Vec<f64> = rounds
        .chunks(2)
        .filter_map(|pair| match pair {
            [a, b] if a.agents != b.agents => {
                let (with, without) = if a.agents { (a, b) } else { (b, a) };
                (without.requests_per_second > 0.0).then(|| {
                    100.0 * (without.requests_per_second - with.requests_per_second) / without.requests_per_second
                })
            }
            _ => None,
        })
        .collect();
    let in_order = losses.clone();
    losses.sort_by(f64::total_cmp);
    let median = match losses.len() {
        0 => 0.0,
        n if n % 2 == 1 => losses[n / 2],
        n => (losses[n / 2 - 1] + losses[n / 2]) / 2.0,
    };
    (in_order, median)
}

/// Means of each side and the relative loss.
pub fn summarise(rounds: &[Round]) -> (f64, f64, f64) {
    let mean = |agents: bool| {
        let side: Vec<f64> = rounds.iter().filter(|r| r.agents == agents).map(|r| r.requests_per_second).collect();
        if side.is_empty() { 0.0 } else { side.iter().sum::<f64>() / side.len() as f64 }
    };
    let (with, without) = (mean(true), mean(false));
    let lost = if without > 0.0 { 100.0 * (without - with) / without } else { 0.0 };
    (with, without, lost)
}

pub fn run(args: &BenchArgs) -> Result<ObserverBench> {
    let (mut scenario, binaries) = prepare(&args.scenario).map_err(Error::Preflight)?;
    interrupt::install().map_err(|source| Error::Start { what: "listening for Ctrl-C", source })?;
    let duration = args.scenario.duration.unwrap_or(Duration::from_secs(10));
    scenario.load.duration = duration;
    scenario.load.rate = None;
    scenario.load.connections = args.connections;
    // No diagnosis here: oha's rate is measured, so bakery need not learn the idle cluster first.
    let mut options = Options { duration: Some(duration), warm_up: Duration::ZERO, ..Options::default() };
    options.cluster.agent_interval = args.interval;
    let mut demo = Demo::start(scenario, binaries, options)?;
    let (oha_path, oha_flags) = demo.oha()?;
    let load = demo.plan().scenario.load.clone();
    let url = demo.cluster.target_url();
    let mut rounds = Vec::new();
    for (i, agents) in schedule(args.rounds).into_iter().enumerate() {
        if agents && !demo.cluster.agents_running() {
            demo.cluster.start_agents(args.interval)?;
        }
        if !agents && demo.cluster.agents_running() {
            demo.cluster.stop_agents();
        }
        // Let start-up or shutdown settle before measuring.
        interrupt::wait(Duration::from_secs(2)).map_err(Error::Interrupted)?;
        let (agent_pids, collector_pid) = demo.cluster.bakery_pids();
        let (agents_cpu, collector_cpu) =
            (CpuMeter::start(agent_pids), CpuMeter::start(collector_pid.into_iter().collect()));
        let started = std::time::Instant::now();
        let summary = demo.run_oha(&oha_path, oha_flags, &load, &url, || {})?;
        let elapsed_s = started.elapsed().as_secs_f64();
        let (agents_cpu_percent, collector_cpu_percent) =
            (agents_cpu.percent(elapsed_s), collector_cpu.percent(elapsed_s));
        let side =
            if agents { format!("every {}", humantime::format_duration(args.interval)) } else { "stopped".into() };
        eprintln!(
            "bakery-demo bench: round {}/{} agents {side}: {:.1} req/s (agents {agents_cpu_percent:.1} % of a core, collector {collector_cpu_percent:.1} %)",
            i + 1,
            args.rounds * 2,
            summary.requests_per_second
        );
        rounds.push(Round {
            agents,
            requests_per_second: summary.requests_per_second,
            requests: summary.requests,
            agents_cpu_percent,
            collector_cpu_percent,
        });
    }
    let (with, without, lost) = summarise(&rounds);
    let (paired, median_paired) = paired_losses(&rounds);
    let result = ObserverBench {
        scenario: demo.plan().scenario.name.clone(),
        seconds_per_round: duration.as_secs_f64(),
        agent_interval_ms: args.interval.as_millis() as u64,
        connections: load.connections,
        rounds: rounds.clone(),
        rps_with_agents: with,
        rps_without_agents: without,
        rps_lost_percent: lost,
        paired_lost_percent: paired,
        median_paired_lost_percent: median_paired,
        rps_spread_with_agents: spread(&rounds, true),
        rps_spread_without_agents: spread(&rounds, false),
    };
    demo.cluster.teardown();
    Ok(result)
}

pub fn main(args: BenchArgs) -> ExitCode {
    match run(&args) {
        Ok(result) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&result).unwrap_or_default());
            } else {
                println!(
                    "observer cost ({}, {} connections, {} x {:.0} s per side): {:.1} req/s (sd {:.1}) with agents every {}, {:.1} req/s (sd {:.1}) without: {:.2} % lost; median of paired rounds {:.2} % (goal < 0.5 %)",
                    result.scenario,
                    result.connections,
                    args.rounds,
                    result.seconds_per_round,
                    result.rps_with_agents,
                    result.rps_spread_with_agents,
                    humantime::format_duration(args.interval),
                    result.rps_without_agents,
                    result.rps_spread_without_agents,
                    result.rps_lost_percent,
                    result.median_paired_lost_percent
                );
                let mean = |cpu: fn(&Round) -> f64, agents: bool| {
                    let side: Vec<f64> = result.rounds.iter().filter(|r| r.agents == agents).map(cpu).collect();
                    side.iter().sum::<f64>() / side.len().max(1) as f64
                };
                println!(
                    "CPU during the loads, percent of one core: agents {:.1} together, collector {:.1} with agents; collector {:.1} without",
                    mean(|r| r.agents_cpu_percent, true),
                    mean(|r| r.collector_cpu_percent, true),
                    mean(|r| r.collector_cpu_percent, false),
                );
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("bakery-demo bench-observer: {}", bakery_lab::chain(&error));
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_alternate_so_drift_falls_on_both_sides() {
        assert_eq!(schedule(2), [true, false, false, true]);
        assert_eq!(schedule(3), [true, false, false, true, true, false]);
        for n in 1..6 {
            let s = schedule(n);
            assert_eq!(s.iter().filter(|a| **a).count() as u32, n);
        }
    }

    #[test]
    fn paired_losses_cancel_a_drift() {
        let round = |agents, rps| Round { agents, requests_per_second: rps, ..Round::default() };
        // The machine slows down by half between the pairs; within each pair agents cost 2 %.
        let rounds = [round(true, 98.0), round(false, 100.0), round(false, 50.0), round(true, 49.0)];
        let (losses, median) = paired_losses(&rounds);
        assert_eq!(losses.len(), 2);
        assert!(losses.iter().all(|l| (l - 2.0).abs() < 1e-9), "{losses:?}");
        assert!((median - 2.0).abs() < 1e-9);
    }

    #[test]
    fn loss_is_relative_to_the_agents_stopped() {
        let round = |agents, rps| Round { agents, requests_per_second: rps, ..Round::default() };
        let (with, without, lost) =
            summarise(&[round(true, 99.0), round(false, 100.0), round(false, 102.0), round(true, 101.0)]);
        assert_eq!((with, without), (100.0, 101.0));
        assert!((lost - 100.0 / 101.0).abs() < 1e-9);
    }
}
