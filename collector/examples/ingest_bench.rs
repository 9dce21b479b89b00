//! Ingest benchmark: synthetic agents (each with 30 pods) stream to a `bakery-collector`
//! process on loopback; prints the values stored durably per collector CPU-second, the p50/p99
//! acknowledgement latency and the collector's RSS, peak and steady (`cargo xtask bench ingest`;
//! BENCHMARKS.md).
//!
//! Build the collector in release first, then run this (also in release):
//!   cargo build --release -p bakery-collector
//!   cargo run --release -p bakery-collector --example ingest_bench -- --nodes 100 --seconds 20
//!
//! The agents run in this process; the collector's CPU time and RSS are read from
//! /proc/<pid>/stat and /proc/<pid>/status, so the load generator's own CPU is not counted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bakery_lab::measure;
use bakery_proto::v1::agent_message::Kind as AgentKind;
use bakery_proto::v1::collector_message::Kind as CollectorKind;
use bakery_proto::v1::ingest_client::IngestClient;
use bakery_proto::v1::*;
use tokio::sync::{Mutex, mpsc};
use tokio_stream::wrappers::ReceiverStream;

struct Options {
    nodes: usize,
    pods: usize,
    seconds: u64,
    /// Unacknowledged batches an agent may have in flight.
    window: u64,
    /// Batches per second per agent; 0 = as fast as the acks allow.
    rate: f64,
    collector_bin: PathBuf,
}

fn options() -> Options {
    let mut options = Options {
        nodes: 100,
        pods: 30,
        seconds: 20,
        window: 16,
        rate: 0.0,
        collector_bin: std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("bakery-collector"),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value = pair.get(1).expect("every flag takes a value");
        match pair[0].as_str() {
            "--nodes" => options.nodes = value.parse().unwrap(),
            "--pods" => options.pods = value.parse().unwrap(),
            "--seconds" => options.seconds = value.parse().unwrap(),
            "--window" => options.window = value.parse().unwrap(),
            "--rate" => options.rate = value.parse().unwrap(),
            "--collector-bin" => options.collector_bin = value.into(),
            other => panic!("unknown flag {other}"),
        }
    }
    options
}

/// A Pi-5-like sample: 4 cores, 6 pressure lines, 4 interfaces, `pods` pods with network and
/// TCP counters. Returns it with the number of values (numeric fields) it carries.
///
/// One piece: a struct literal of the wire sample, its shape visible at a glance.
fn sample(timestamp_ms: i64, pods: usize, tick: u64) -> (Sample, u64) {
    let cpu = |cpu: i32| CpuTimes {
        cpu,
        user: 1000 + tick,
        nice: 3,
        system: 500 + tick,
        idle: 90_000 + tick * 3,
        iowait: 10,
        irq: 1,
        softirq: 20 + tick,
        steal: 0,
    };
    let net = |base: u64| NetCounters {
        rx_bytes: base * 1500 + tick * 1000,
        rx_packets: base + tick,
        rx_errors: 0,
        rx_dropped: 1,
        tx_bytes: base * 900 + tick * 800,
        tx_packets: base + tick,
        tx_errors: 0,
        tx_dropped: 0,
    };
    let sample = Sample {
        timestamp_ms,
        cpu_total: Some(cpu(-1)),
        cpu_cores: (0..4).map(cpu).collect(),
        memory: Some(Memory {
            total_bytes: 8 << 30,
            available_bytes: 5 << 30,
            free_bytes: 3 << 30,
            buffers_bytes: 1 << 20,
            cached_bytes: 1 << 30,
            swap_total_bytes: 0,
            swap_free_bytes: 0,
        }),
        pressure: ["cpu", "memory", "io"]
            .iter()
            .flat_map(|r| {
                ["some", "full"].iter().map(move |k| Pressure {
                    resource: r.to_string(),
                    kind: k.to_string(),
                    avg10: 1.5,
                    avg60: 1.2,
                    avg300: 0.9,
                    total_us: 123_456 + tick,
                })
            })
            .collect(),
        temperatures: vec![Temperature { sensor: "thermal_zone0/cpu-thermal".into(), millidegrees_celsius: 55_000 }],
        cpu_frequencies: (0..4).map(|c| CpuFrequency { cpu: c, current_khz: 2_400_000, max_khz: 2_400_000 }).collect(),
        interfaces: ["eth0", "cni0", "flannel.1", "lo"]
            .iter()
            .enumerate()
            .map(|(i, name)| NetInterface {
                name: name.to_string(),
                counters: Some(net(i as u64 * 1000)),
                ..NetInterface::default()
            })
            .collect(),
        conntrack: Some(Conntrack { count: 300, max: 65536 }),
        pods: (0..pods)
            .map(|p| PodSample {
                pod_ref: p as u32 + 1,
                network: Some(net(p as u64 * 10)),
                tcp: Some(TcpConnections {
                    established_inbound: 3,
                    established_outbound: 2,
                    listen: 1,
                    ..Default::default()
                }),
                cpu_usage_us: 1_000_000 + tick * 1000,
                memory_working_set_bytes: 50 << 20,
                process_count: 4,
            })
            .collect(),
        ..Default::default()
    };
    // cpu 5x8, memory 7, pressure 6x4, temperature 1, freq 4x2, interfaces 4x8, conntrack 2,
    // per pod: network 8 + tcp 7 + cpu, memory, processes 3
    let values = 40 + 7 + 24 + 1 + 8 + 32 + 2 + pods as u64 * 18;
    (sample, values)
}

/// Bytes the process caused to be written to storage (proc(5) /proc/pid/io write_bytes).
fn write_bytes(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    io.lines().find_map(|l| l.strip_prefix("write_bytes: ")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// The `ENV` lines of the workspace's Dockerfile, which the collector runs with in its image
/// (`MALLOC_ARENA_MAX`): the bench measures the collector as it is deployed.
fn image_environment() -> Vec<(String, String)> {
    let dockerfile = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Dockerfile");
    let text = std::fs::read_to_string(&dockerfile).unwrap_or_else(|e| panic!("{}: {e}", dockerfile.display()));
    text.lines()
        .filter_map(|line| line.strip_prefix("ENV "))
        .filter_map(|pair| pair.trim().split_once('='))
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

/// One piece: the benchmark's script from start to report (collector, agents, measurement,
/// printout), read top to bottom like the table it prints.
#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let options = options();
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let mut child = Command::new(&options.collector_bin)
        .args(["--listen", "127.0.0.1:0", "--insecure-no-auth", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--ready-file")
        .arg(&ready)
        .env("BAKERY_LOG", "warn")
        .envs(image_environment())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", options.collector_bin.display()));
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(10);
    let addr = loop {
        if let Ok(addr) = std::fs::read_to_string(&ready) {
            break addr.trim().to_string();
        }
        assert!(Instant::now() < deadline, "the collector did not become ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let url = format!("http://{addr}");

    let values_acked = Arc::new(AtomicU64::new(0));
    let batches_acked = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let stop_at = Instant::now() + Duration::from_secs(options.seconds);
    let warmup_until = Instant::now() + Duration::from_secs(2);
    let mut agents = Vec::new();
    for n in 0..options.nodes {
        let url = url.clone();
        let (values_acked, batches_acked, latencies) = (values_acked.clone(), batches_acked.clone(), latencies.clone());
        let pods = options.pods;
        let window = options.window;
        let rate = options.rate;
        agents.push(tokio::spawn(async move {
            let channel = tonic::transport::Channel::from_shared(url).unwrap().connect().await.unwrap();
            let mut client = IngestClient::new(channel);
            let (tx, rx) = mpsc::channel(64);
            let hello = Hello {
                node_name: format!("bench-{n:03}"),
                interval_ms: 10, // lifts the per-stream rate limit (2000 batches/s)
                stream_id: format!("bench-{n}"),
                ..Default::default()
            };
            tx.send(AgentMessage { kind: Some(AgentKind::Hello(hello)) }).await.unwrap();
            let mut responses = client.stream(ReceiverStream::new(rx)).await.unwrap().into_inner();
            let _welcome = responses.message().await.unwrap();
            let identities: Vec<PodIdentity> = (0..pods)
                .map(|p| PodIdentity {
                    pod_ref: p as u32 + 1,
                    uid: format!("{n}-{p}-uid"),
                    qos_class: "burstable".into(),
                    cgroup_path: format!("kubepods.slice/pod{n}-{p}"),
                    host_network: false,
                })
                .collect();
            let mut sent_at: std::collections::VecDeque<(u64, Instant, u64)> = Default::default();
            let mut seq = 0u64;
            let mut acked = 0u64;
            let mut local_latencies = Vec::new();
            let started = Instant::now();
            let mut payload = 0u64;
            while Instant::now() < stop_at {
                // with --rate, only as many batches as the rate allows so far
                let allowed = if rate > 0.0 { (started.elapsed().as_secs_f64() * rate) as u64 + 1 } else { u64::MAX };
                while seq < acked + window && seq < allowed {
                    seq += 1;
                    let (sample, values) = sample(bakery_collector::now_ms(), pods, seq);
                    let new_pods = if seq == 1 { identities.clone() } else { Vec::new() };
                    let batch = Batch { seq, new_pods, samples: vec![sample] };
                    payload += prost::Message::encoded_len(&batch) as u64;
                    tx.send(AgentMessage { kind: Some(AgentKind::Batch(batch)) }).await.unwrap();
                    sent_at.push_back((seq, Instant::now(), values));
                }
                let next = if rate > 0.0 && seq >= allowed {
                    // wait for an ack or the next send time, whichever comes first
                    match tokio::time::timeout(Duration::from_secs_f64(1.0 / rate), responses.message()).await {
                        Ok(message) => message,
                        Err(_) => continue,
                    }
                } else {
                    responses.message().await
                };
                match next {
                    Ok(Some(CollectorMessage { kind: Some(CollectorKind::Ack(ack)) })) => {
                        acked = ack.committed_seq;
                        let now = Instant::now();
                        while sent_at.front().is_some_and(|(s, ..)| *s <= acked) {
                            let (_, at, values) = sent_at.pop_front().unwrap();
                            values_acked.fetch_add(values, Ordering::Relaxed);
                            batches_acked.fetch_add(1, Ordering::Relaxed);
                            if at > warmup_until {
                                local_latencies.push(now - at);
                            }
                        }
                    }
                    Ok(Some(_)) => {}
                    other => panic!("agent {n}: {other:?}"),
                }
            }
            latencies.lock().await.extend(local_latencies);
            payload
        }));
    }
    // Measure from the end of the warm-up (connections made, pods declared).
    tokio::time::sleep_until(warmup_until.into()).await;
    let (cpu_start, values_start, measured_start, written_start) =
        (measure::cpu_seconds(pid).unwrap(), values_acked.load(Ordering::Relaxed), Instant::now(), write_bytes(pid));
    // The collector's RSS every second while the agents run: the goal is about the whole run,
    // and what the analysis keeps (30 s of ticks) and the per-node history fill over time.
    let rss_samples = tokio::spawn(async move {
        let mut samples = Vec::new();
        while Instant::now() < stop_at {
            samples.push(measure::rss(pid).unwrap().current_bytes / 1024);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        samples
    });
    let mut payload = 0;
    for agent in agents {
        payload += agent.await.unwrap();
    }
    let rss_samples = rss_samples.await.unwrap();
    let written = write_bytes(pid) - written_start;
    let (cpu_end, values_end, wall) =
        (measure::cpu_seconds(pid).unwrap(), values_acked.load(Ordering::Relaxed), measured_start.elapsed());
    let memory = measure::rss(pid).unwrap();
    let (rss_kib, hwm_kib) = (memory.current_bytes / 1024, memory.peak_bytes / 1024);
    let collector_cpu_s = cpu_end - cpu_start;
    let values = values_end - values_start;
    let mut latencies = latencies.lock().await.clone();
    latencies.sort();
    let pct = |p: f64| latencies.get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)));
    let store_bytes = std::fs::metadata(dir.path().join("data/bakery.redb")).map(|m| m.len()).unwrap_or(0);

    Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    let exit = child.wait().unwrap();

    println!("nodes: {}  pods per node: {}  window: {}", options.nodes, options.pods, options.window);
    println!("measured: {:.1} s wall, collector CPU {:.2} s", wall.as_secs_f64(), collector_cpu_s);
    println!("batches acked: {}", batches_acked.load(Ordering::Relaxed));
    println!("values stored durably: {values} ({:.0}/s wall)", values as f64 / wall.as_secs_f64());
    println!("values per collector CPU-second: {:.0}", values as f64 / collector_cpu_s.max(0.001));
    println!(
        "ack latency p50: {:?}  p99: {:?}",
        pct(0.50).copied().unwrap_or_default(),
        pct(0.99).copied().unwrap_or_default()
    );
    let mib = |kib: u64| kib as f64 / 1024.0;
    // Steady: the mean over the last quarter of the measured seconds.
    let tail = &rss_samples[rss_samples.len() - (rss_samples.len() / 4).max(1).min(rss_samples.len())..];
    let steady = if tail.is_empty() { rss_kib } else { tail.iter().sum::<u64>() / tail.len() as u64 };
    println!(
        "collector RSS: peak {:.1} MiB, steady {:.1} MiB (mean of the last {} s), at end {:.1} MiB",
        mib(hwm_kib),
        mib(steady),
        tail.len(),
        mib(rss_kib)
    );
    let timeline: Vec<String> = rss_samples.iter().step_by(2).map(|kib| format!("{:.0}", mib(*kib))).collect();
    println!("collector RSS every 2 s (MiB): {}", timeline.join(" "));
    println!("store file: {:.1} MiB", store_bytes as f64 / (1024.0 * 1024.0));
    println!(
        "written to storage while measured: {:.1} MiB for {:.1} MiB of batches sent in the whole run",
        written as f64 / (1024.0 * 1024.0),
        payload as f64 / (1024.0 * 1024.0)
    );
    println!("collector exit: {exit}");
}
