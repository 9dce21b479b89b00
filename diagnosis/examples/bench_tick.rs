//! Benchmark of one analysis tick (goal: at most 5 ms, BENCHMARKS.md): 100 nodes with 50 pods each, 250 ms
//! samples. Fills the 10 s history first, then times `Detector::observe` alone (the synthetic cluster
//! is generated outside the timed region) and prints the median and p99.
//!
//! `cargo run --release -p bakery-diagnosis --example bench_tick [-- --nodes 100 --pods 50 --ticks 400 --verbose]`
//!
//! The last line is machine-readable for `cargo xtask bench analysis`:
//! `bench_tick nodes=100 pods_per_node=50 ticks=400 median_us=... p99_us=... max_us=... goal_us=5000`.

use std::time::Instant;

use bakery_diagnosis::fixture::{Connections, Entry, Expectation, Fixture, Load, NodeSpec, PodSpec, SplitMix64};
use bakery_diagnosis::{Config, Detector, NodeRole};

/// The budget of one tick at this size (the goal BENCHMARKS.md reports against).
const GOAL_US: u128 = 5_000;

fn cluster(nodes: usize, pods_per_node: usize, ticks: usize) -> Fixture {
    let mut rng = SplitMix64::new(2026);
    let node_specs: Vec<NodeSpec> = (0..nodes)
        .map(|i| NodeSpec {
            name: format!("node-{i:03}"),
            role: if i < 3 { NodeRole::ControlPlane } else { NodeRole::Worker },
            cores: 4,
            memory_gib: 8.0,
            base_cpu_cores: None,
            background_nic_bps: None,
            temperature_celsius: 50.0 + (i % 10) as f64,
            max_khz: 2_400_000,
        })
        .collect();
    let mut pods = Vec::with_capacity(nodes * pods_per_node);
    for (i, node) in node_specs.iter().enumerate() {
        for j in 0..pods_per_node {
            // One replica of the workload under test per node, two DaemonSets, the rest spread over
            // twenty other Deployments.
            let (name, workload) = match j {
                0 => (format!("web-{i:03}"), "Deployment/shop/web".to_string()),
                1 => (format!("agent-{i:03}"), "DaemonSet/bakery/bakery-agent".to_string()),
                2 => (format!("speaker-{i:03}"), "DaemonSet/metallb-system/speaker".to_string()),
                _ => (format!("app-{i:03}-{j:02}"), format!("Deployment/apps/app-{}", (i * pods_per_node + j) % 20)),
            };
            pods.push(PodSpec {
                name,
                node: node.name.clone(),
                namespace: "bench".to_string(),
                workload: Some(workload),
                cpu_cores: 0.01 + rng.next_f64() * 0.05,
                memory_mib: 20.0 + rng.next_f64() * 80.0,
                ready: true,
                host_network: false,
            });
        }
    }
    Fixture {
        name: "bench".to_string(),
        description: format!("{nodes} nodes x {pods_per_node} pods"),
        duration_s: ticks as f64 * 0.25,
        sample_ms: 250,
        seed: 1,
        start_ms: 1_790_000_000_000,
        jitter: 0.03,
        workload: Some("Deployment/shop/web".to_string()),
        cluster_knowledge: true,
        service: None,
        nodes: node_specs,
        pods,
        load: Some(Load {
            requests_per_s: 3_000.0,
            request_bytes: 600.0,
            response_bytes: 45_000.0,
            cpu_seconds_per_request: 0.01,
            // 400 keep-alive connections, placed at random over the replicas as kube-proxy does.
            connections: Some(Connections::Count(400)),
            entry: Some(Entry::EveryNode),
            softirq_seconds_per_forwarded_mb: 0.03,
            backend: None,
            affinity_pod: None,
        }),
        phases: Vec::new(),
        host_work: Vec::new(),
        pod_work: Vec::new(),
        thermal: Vec::new(),
        memory_pressure: Vec::new(),
        expect: Expectation::default(),
    }
}

fn flag(args: &[String], name: &str, default: usize) -> Result<usize, String> {
    match args.iter().position(|a| a == name) {
        Some(i) => args.get(i + 1).ok_or(format!("{name} needs a value"))?.parse().map_err(|e| format!("{name}: {e}")),
        None => Ok(default),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let nodes = flag(&args, "--nodes", 100)?;
    let pods_per_node = flag(&args, "--pods", 50)?;
    let measured = flag(&args, "--ticks", 400)?;
    let config = Config::default();
    // Warm-up: enough ticks to fill the longest span, so every timed tick works on a full history.
    let warmup = (config.live_span_ms / 250) as usize + 4;
    let mut run = cluster(nodes, pods_per_node, warmup + measured).run()?;
    let mut detector = Detector::new(config)?;
    for tick in run.by_ref().take(warmup) {
        detector.observe(&tick)?;
    }
    let mut times_us: Vec<u128> = Vec::with_capacity(measured);
    let mut verdicts = 0;
    let mut last = None;
    for tick in run.take(measured) {
        let start = Instant::now();
        let evaluation = detector.observe(&tick)?;
        times_us.push(start.elapsed().as_micros());
        verdicts += evaluation.verdicts.len();
        last = Some(evaluation);
    }
    if args.iter().any(|a| a == "--verbose") {
        for verdict in last.iter().flat_map(|e| &e.verdicts) {
            println!("{verdict}");
        }
    }
    if times_us.is_empty() {
        return Err("no tick measured".into());
    }
    times_us.sort_unstable();
    let pick = |q: f64| times_us[((times_us.len() - 1) as f64 * q).round() as usize];
    let (median, p99, max) = (pick(0.5), pick(0.99), times_us[times_us.len() - 1]);
    let mean = times_us.iter().sum::<u128>() / times_us.len() as u128;
    println!(
        "one analysis tick, {nodes} nodes x {pods_per_node} pods, {} ticks after {warmup} warm-up ticks:",
        times_us.len()
    );
    println!(
        "  median {:.3} ms, p99 {:.3} ms, max {:.3} ms, mean {:.3} ms (goal <= {} ms); {verdicts} verdicts seen",
        median as f64 / 1000.0,
        p99 as f64 / 1000.0,
        max as f64 / 1000.0,
        mean as f64 / 1000.0,
        GOAL_US / 1000
    );
    println!(
        "bench_tick nodes={nodes} pods_per_node={pods_per_node} ticks={} median_us={median} p99_us={p99} max_us={max} goal_us={GOAL_US}",
        times_us.len()
    );
    Ok(())
}
