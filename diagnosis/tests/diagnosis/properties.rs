//! Property tests over random clusters under load (random placement, connections, entry,
//! load and hog): renaming or reordering nodes (and pods) changes nothing; scaling all traffic by k
//! changes no verdict; adding an idle node without endpoints changes no verdict.

use std::collections::BTreeMap;

use bakery_diagnosis::fixture::{
    Connections, Entry, Expectation, Fixture, HostWork, Load, MemoryEvent, NodeSpec, Phase, PodSpec, PodWork,
    SplitMix64, ThermalEvent,
};
use bakery_diagnosis::{
    Cause, Config, CpuFrequency, CpuJiffies, Evaluation, NicBytes, NodeMemory, NodeRole, NodeSample, PodSample,
    PressureTotals, ThrottleFlags, Tick, WorkloadRef,
};
use proptest::prelude::*;

use crate::support::replay;

const NODES: [&str; 5] = ["master-01", "master-02", "master-03", "worker-01", "worker-02"];
const WORDPRESS: &str = "Deployment/wordpress/wordpress";

/// The knobs of a random cluster under load.
#[derive(Debug, Clone)]
struct Params {
    placement: Vec<usize>,
    connections: Option<Vec<u32>>,
    entry: u8,
    entry_node: usize,
    requests_per_s: f64,
    hog: u8,
    hog_node: usize,
    hog_size: f64,
    mysql_node: usize,
    seed: u64,
}

fn params() -> impl Strategy<Value = Params> {
    (
        prop::collection::vec(0_usize..5, 2..=5),
        any::<bool>(),
        prop::collection::vec(0_u32..40, 5),
        0_u8..3,
        0_usize..5,
        5.0_f64..150.0,
        0_u8..7,
        0_usize..5,
        0.0_f64..1.0,
        0_usize..5,
        any::<u64>(),
    )
        .prop_map(
            |(
                placement,
                keepalive,
                conns,
                entry,
                entry_node,
                requests_per_s,
                hog,
                hog_node,
                hog_size,
                mysql_node,
                seed,
            )| {
                let connections = keepalive.then(|| conns[..placement.len()].to_vec());
                Params {
                    placement,
                    connections,
                    entry,
                    entry_node,
                    requests_per_s,
                    hog,
                    hog_node,
                    hog_size,
                    mysql_node,
                    seed,
                }
            },
        )
}

fn pod(name: &str, namespace: &str, node: usize, workload: Option<&str>, cpu_cores: f64) -> PodSpec {
    PodSpec {
        name: name.to_string(),
        node: NODES[node].to_string(),
        namespace: namespace.to_string(),
        workload: workload.map(str::to_string),
        cpu_cores,
        memory_mib: 150.0,
        ready: true,
        host_network: false,
    }
}

fn fixture(p: &Params) -> Fixture {
    // One piece: the fixture literal built from `Params`, every field in one place, as a fixture file would list
    // them.
    let nodes = NODES
        .iter()
        .map(|name| NodeSpec {
            name: name.to_string(),
            role: if name.starts_with("master") { NodeRole::ControlPlane } else { NodeRole::Worker },
            cores: 4,
            memory_gib: 8.0,
            base_cpu_cores: None,
            background_nic_bps: None,
            temperature_celsius: 55.0,
            max_khz: 2_400_000,
        })
        .collect();
    let mut pods: Vec<PodSpec> = p
        .placement
        .iter()
        .enumerate()
        .map(|(i, &n)| pod(&format!("wordpress-{i}"), "wordpress", n, Some(WORDPRESS), 0.02))
        .collect();
    pods.push(pod("mysql-0", "wordpress", p.mysql_node, Some("StatefulSet/wordpress/mysql"), 0.05));
    for (n, name) in NODES.iter().enumerate() {
        pods.push(pod(&format!("bakery-agent-{name}"), "bakery", n, Some("DaemonSet/bakery/bakery-agent"), 0.03));
    }
    let entry = match p.entry {
        0 => Entry::Direct,
        1 => Entry::EveryNode,
        _ => Entry::Node(NODES[p.entry_node].to_string()),
    };
    let hog_node = NODES[p.hog_node].to_string();
    let (from_s, until_s) = (4.0, 9.0);
    let mut s = Fixture {
        name: "random".to_string(),
        description: format!("{p:?}"),
        duration_s: 12.0,
        sample_ms: 250,
        seed: p.seed,
        start_ms: 1_790_000_000_000,
        jitter: 0.03,
        workload: Some(WORDPRESS.to_string()),
        cluster_knowledge: true,
        service: None,
        nodes,
        pods,
        load: Some(Load {
            requests_per_s: p.requests_per_s,
            request_bytes: 600.0,
            response_bytes: 45_000.0,
            cpu_seconds_per_request: 0.02,
            connections: p.connections.clone().map(Connections::Placed),
            entry: Some(entry),
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
    };
    match p.hog {
        1 => s.host_work.push(HostWork {
            node: hog_node,
            cpu_cores: 1.5 * p.hog_size,
            softirq_cores: 0.0,
            nic_rx_bps: 0.0,
            nic_tx_bps: 8e6 * p.hog_size,
            from_s,
            until_s,
        }),
        2 => s.pod_work.push(PodWork { pod: "mysql-0".to_string(), cpu_cores: 1.6 * p.hog_size, from_s, until_s }),
        3 => s.thermal.push(ThermalEvent {
            node: hog_node,
            temperature_celsius: 70.0 + 20.0 * p.hog_size,
            frequency_khz: 1_500_000,
            throttled: p.hog_size > 0.5,
            soft_temperature_limit: p.hog_size > 0.6,
            from_s,
            until_s,
        }),
        4 => s.memory_pressure.push(MemoryEvent {
            node: hog_node,
            stall_fraction: 0.4 * p.hog_size,
            available_fraction: 0.3 - 0.27 * p.hog_size,
            from_s,
            until_s,
        }),
        5 => {
            let mut rng = SplitMix64::new(p.seed);
            let connections = p.placement.iter().map(|_| rng.below(40) as u32).collect();
            s.phases.push(Phase {
                from_s,
                until_s,
                requests_per_s: None,
                connections: Some(Connections::Placed(connections)),
                entry: None,
                announcement: None,
            });
        }
        6 => s.phases.push(Phase {
            from_s,
            until_s,
            requests_per_s: None,
            connections: None,
            entry: Some(Entry::Node(hog_node)),
            announcement: None,
        }),
        _ => {}
    }
    s
}

/// What a tick's verdicts say, with node names mapped through `names`.
type Said = Vec<(String, Cause, i64, i64, u64, Vec<(String, u64)>)>;

fn said(evaluations: &[Evaluation], names: &BTreeMap<String, String>) -> Vec<Said> {
    evaluations
        .iter()
        .map(|e| {
            let mut out: Said = e
                .verdicts
                .iter()
                .map(|v| {
                    let evidence = v.evidence.iter().map(|x| (x.name.clone(), x.value.to_bits())).collect();
                    (
                        names.get(&v.node).cloned().unwrap_or_else(|| v.node.clone()),
                        v.cause,
                        v.since_ms,
                        v.first_seen_ms,
                        v.confidence.to_bits(),
                        evidence,
                    )
                })
                .collect();
            out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
            out
        })
        .collect()
}

/// The verdicts alone (node, cause, since), per tick.
fn verdicts(evaluations: &[Evaluation]) -> Vec<Vec<(String, Cause, i64)>> {
    evaluations.iter().map(|e| e.verdicts.iter().map(|v| (v.node.clone(), v.cause, v.since_ms)).collect()).collect()
}

fn rename(ticks: &[Tick], names: &BTreeMap<String, String>) -> Vec<Tick> {
    ticks
        .iter()
        .map(|t| {
            let mut t = t.clone();
            for node in &mut t.nodes {
                node.name = names[&node.name].clone();
            }
            if let Some(w) = &mut t.workload {
                w.ready_endpoints = w.ready_endpoints.iter().map(|(n, &e)| (names[n].clone(), e)).collect();
            }
            t
        })
        .collect()
}

fn shuffle<T>(items: &mut [T], rng: &mut SplitMix64) {
    for i in (1..items.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

/// Every tick lists its nodes, and every node its pods, in a fresh random order.
fn reorder(ticks: &[Tick], seed: u64) -> Vec<Tick> {
    let mut rng = SplitMix64::new(seed);
    ticks
        .iter()
        .map(|t| {
            let mut t = t.clone();
            shuffle(&mut t.nodes, &mut rng);
            for node in &mut t.nodes {
                shuffle(&mut node.pods, &mut rng);
            }
            t
        })
        .collect()
}

/// Multiplies every byte counter (pods and NICs) by `k`.
fn scale(ticks: &[Tick], k: u64) -> Vec<Tick> {
    ticks
        .iter()
        .map(|t| {
            let mut t = t.clone();
            for node in &mut t.nodes {
                for nic in &mut node.nics {
                    nic.rx_bytes *= k;
                    nic.tx_bytes *= k;
                }
                for pod in &mut node.pods {
                    pod.rx_bytes *= k;
                    pod.tx_bytes *= k;
                }
            }
            t
        })
        .collect()
}

/// Adds a freshly joined, idle worker (no endpoints; a DaemonSet pod, background traffic) at `at`.
fn add_idle_node(ticks: &[Tick], at: usize) -> Vec<Tick> {
    ticks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut t = t.clone();
            let n = i as u64 + 1;
            let idle = NodeSample {
                name: "worker-03".to_string(),
                role: NodeRole::Worker,
                timestamp_ms: t.timestamp_ms,
                clock_ticks_per_second: 100,
                cpu: CpuJiffies { user: 3 * n, system: 2 * n, idle: 95 * n, softirq: n / 4, ..CpuJiffies::default() },
                nics: vec![NicBytes::new("eth0", 600 * n, 400 * n)],
                memory: NodeMemory { total_bytes: 8 << 30, available_bytes: 7 << 30 },
                pressure: Some(PressureTotals::default()),
                temperature_millicelsius: Some(45_000),
                cpu_frequency: Some(CpuFrequency { current_khz: 1_500_000, max_khz: 2_400_000 }),
                throttle: Some(ThrottleFlags::default()),
                pods: vec![PodSample {
                    uid: "uid-bakery-agent-worker-03".to_string(),
                    name: "bakery-agent-worker-03".to_string(),
                    namespace: "bakery".to_string(),
                    workload: Some(WorkloadRef::new("DaemonSet", "bakery", "bakery-agent")),
                    ready: true,
                    host_network: false,
                    rx_bytes: 100 * n,
                    tx_bytes: 100 * n,
                    established_inbound: 0,
                    passive_opens: 0,
                    inbound_peers: None,
                    cpu_usage_us: 5_000 * n,
                    memory_working_set_bytes: 40 << 20,
                }],
            };
            t.nodes.insert(at.min(t.nodes.len()), idle);
            t
        })
        .collect()
}

fn ticks_of(p: &Params) -> Vec<Tick> {
    fixture(p).ticks().expect("random fixtures are valid")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn renaming_and_reordering_nodes_changes_nothing(p in params(), order_seed in any::<u64>(), name_seed in any::<u64>()) {
        let ticks = ticks_of(&p);
        let config = Config::default();
        let original = replay(&ticks, &config);
        // A bijection onto names that sort differently from the originals.
        let mut targets: Vec<String> = ["zeta", "alpha", "node-7", "Pi-B", "kappa"].iter().map(|s| s.to_string()).collect();
        shuffle(&mut targets, &mut SplitMix64::new(name_seed));
        let names: BTreeMap<String, String> = NODES.iter().map(|n| n.to_string()).zip(targets).collect();
        let back: BTreeMap<String, String> = names.iter().map(|(a, b)| (b.clone(), a.clone())).collect();
        let transformed = replay(&reorder(&rename(&ticks, &names), order_seed), &config);
        prop_assert_eq!(said(&transformed, &back), said(&original, &BTreeMap::new()));
        let changes = |evaluations: &[Evaluation], map: &BTreeMap<String, String>| -> Vec<(String, Cause, i64)> {
            let mut out: Vec<_> = evaluations
                .iter()
                .flat_map(|e| e.changes.iter().map(|c| (map.get(&c.node).cloned().unwrap_or_else(|| c.node.clone()), c.cause, c.at_ms)))
                .collect();
            out.sort();
            out
        };
        prop_assert_eq!(changes(&transformed, &back), changes(&original, &BTreeMap::new()));
    }

    #[test]
    fn scaling_all_traffic_changes_no_verdict(p in params(), k in 2_u64..1000) {
        let ticks = ticks_of(&p);
        let config = Config::default();
        let original = replay(&ticks, &config);
        let scaled = replay(&scale(&ticks, k), &config);
        prop_assert_eq!(verdicts(&scaled), verdicts(&original));
        for (a, b) in scaled.iter().zip(&original) {
            for (x, y) in a.verdicts.iter().zip(&b.verdicts) {
                prop_assert!((x.confidence - y.confidence).abs() < 1e-9, "{} vs {}", x.confidence, y.confidence);
            }
        }
    }

    #[test]
    fn adding_an_idle_node_without_endpoints_changes_no_verdict(p in params(), at in 0_usize..6) {
        let ticks = ticks_of(&p);
        let config = Config::default();
        let original = replay(&ticks, &config);
        let with_idle = replay(&add_idle_node(&ticks, at), &config);
        let strip = |evaluations: &[Evaluation]| -> Vec<Vec<(String, Cause, i64, u64)>> {
            evaluations.iter().map(|e| e.verdicts.iter().map(|v| (v.node.clone(), v.cause, v.since_ms, v.confidence.to_bits())).collect()).collect()
        };
        prop_assert_eq!(strip(&with_idle), strip(&original));
    }
}

#[test]
fn random_clusters_do_raise_verdicts() {
    // The properties above are only worth something if the random clusters raise verdicts at all:
    // check that the generator's hogs produce every cause family at least once over a fixed sweep.
    let mut seen = std::collections::BTreeSet::new();
    let mut rng = SplitMix64::new(42);
    for i in 0..120_u64 {
        let placement: Vec<usize> = (0..3).map(|_| rng.below(5) as usize).collect();
        let p = Params {
            connections: (i % 2 == 0).then(|| placement.iter().map(|_| rng.below(40) as u32).collect()),
            placement,
            entry: (i % 3) as u8,
            entry_node: rng.below(5) as usize,
            requests_per_s: 20.0 + rng.next_f64() * 100.0,
            hog: (i % 7) as u8,
            hog_node: rng.below(5) as usize,
            hog_size: 0.5 + rng.next_f64() / 2.0,
            mysql_node: rng.below(5) as usize,
            seed: i,
        };
        for e in replay(&ticks_of(&p), &Config::default()) {
            seen.extend(e.verdicts.iter().map(|v| v.cause));
        }
    }
    assert_eq!(seen, Cause::ALL.into_iter().collect(), "every cause appears in the random sweep");
}
