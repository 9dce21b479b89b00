//! Bounds with the real binaries: a client holding the shared ingest token (which lets it write
//! any node) attacks a collector while two honest agents stream at 10 Hz. Each attack is refused
//! or cut, counted on /metrics under `bakery_collector_ingest_refusals_total{cause}`, the honest
//! agents' data is complete in the store (`inspect --verify`), and the collector's peak RSS
//! (VmHWM of its process) stays under 150 MiB: sequence poisoning, 500 made-up node names with a
//! ~1 MB batch each (and a restart over what they left in the store), huge strings,
//! `interval_ms = 1`, everything sent as replayed backlog, and samples dated a day ahead while a
//! load-test window is open. The attacker is the generated tonic client of `bakery-proto`.

use std::path::Path;
use std::time::{Duration, Instant};

use bakery_proto::v1::agent_message::Kind as AgentKind;
use bakery_proto::v1::collector_message::Kind as CollectorKind;
use bakery_proto::v1::ingest_client::IngestClient;
use bakery_proto::v1::query_client::QueryClient;
use bakery_proto::v1::{
    AgentMessage, Batch, CollectorMessage, CpuTimes, Gap, Hello, LiveRequest, NetCounters, NetInterface, NodeStatus,
    NodesRequest, PodIdentity, PodSample, Replay, Sample, SetIntervalRequest, StartWindowRequest, StopWindowRequest,
    Temperature, Window, replay,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Request, Status, Streaming};

use super::procs::*;

const SHARED: &str = "bounds-shared-token";
const READ: &str = "bounds-read-token";
const CONTROL: &str = "bounds-control-token";
/// The collector's peak resident memory through each test stays under this.
const RSS_LIMIT_KIB: u64 = 150 * 1024;

/// The shared ingest token (in `shared-token`, which the honest agents use too), a read and a
/// control token; the collector's flags.
fn shared_token_setup(work: &Path, extra: &[&str]) -> Vec<String> {
    write(work, "shared-token", &format!("{SHARED}\n"));
    let read = write(work, "read-token", &format!("{READ}\n"));
    let control = write(work, "control-token", &format!("{CONTROL}\n"));
    let mut flags = vec![
        format!("--token-file={}", work.join("shared-token").display()),
        format!("--read-token-file={}", read.display()),
        format!("--control-token-file={}", control.display()),
    ];
    flags.extend(extra.iter().map(|f| f.to_string()));
    flags
}

fn args(owned: &[String]) -> Vec<&str> {
    owned.iter().map(String::as_str).collect()
}

/// The refusals of `cause` on /metrics.
fn refused(collector: &Collector, cause: &str) -> f64 {
    collector.metric(READ, &format!("bakery_collector_ingest_refusals_total{{cause=\"{cause}\"}}"))
}

/// The pid of the `bakery-collector serve` listening on `port`, from /proc.
fn collector_pid(port: u16) -> u32 {
    let listen = format!("127.0.0.1:{port}");
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let argv: Vec<String> = cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        if argv.first().is_some_and(|a| a.ends_with("bakery-collector")) && argv.contains(&listen) {
            return pid;
        }
    }
    panic!("no bakery-collector process listens on {listen}");
}

/// `VmRSS` and `VmHWM` (the peak) of `pid`, KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{key} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Checks the collector's peak RSS so far, and prints it (for `--nocapture` readers).
fn assert_rss_under_limit(port: u16, when: &str) -> u64 {
    let (rss, peak) = rss_kib(collector_pid(port));
    eprintln!("collector RSS {when}: {:.1} MiB, peak {:.1} MiB", rss as f64 / 1024.0, peak as f64 / 1024.0);
    assert!(peak < RSS_LIMIT_KIB, "the collector's RSS peaked at {peak} KiB {when} (limit {RSS_LIMIT_KIB} KiB)");
    peak
}

/// The attacker: the generated tonic clients on a runtime of their own.
struct Attacker {
    runtime: tokio::runtime::Runtime,
    url: String,
}

/// One attacking stream.
struct Stream {
    tx: mpsc::Sender<AgentMessage>,
    rx: Streaming<CollectorMessage>,
    /// The Welcome's committed seq, then the highest ack.
    acked: u64,
}

fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

fn hello(node: &str) -> Hello {
    Hello {
        node_name: node.to_string(),
        agent_version: "attacker".into(),
        interval_ms: 1000,
        stream_id: format!("attacker-{node}"),
        ..Hello::default()
    }
}

fn batch(seq: u64, samples: Vec<Sample>) -> AgentMessage {
    AgentMessage { kind: Some(AgentKind::Batch(Batch { seq, new_pods: vec![], samples })) }
}

fn sample(timestamp_ms: i64) -> Sample {
    Sample {
        timestamp_ms,
        cpu_total: Some(CpuTimes { cpu: -1, user: 100, system: 50, idle: 1000, ..CpuTimes::default() }),
        ..Sample::default()
    }
}

impl Attacker {
    fn new(url: &str) -> Attacker {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        Attacker { runtime, url: url.to_string() }
    }

    async fn channel(url: &str) -> Channel {
        Channel::from_shared(url.to_string()).unwrap().connect().await.unwrap()
    }

    /// Says `hello` with the shared token: the stream after its Welcome, or the refusal.
    async fn open(channel: Channel, hello: Hello) -> Result<Stream, Status> {
        let (tx, rx) = mpsc::channel(64);
        tx.send(AgentMessage { kind: Some(AgentKind::Hello(hello)) }).await.unwrap();
        let mut rx = IngestClient::new(channel).stream(with_token(ReceiverStream::new(rx), SHARED)).await?.into_inner();
        match tokio::time::timeout(WAIT, rx.message()).await.expect("an answer to the Hello")? {
            Some(CollectorMessage { kind: Some(CollectorKind::Welcome(welcome)) }) => {
                Ok(Stream { tx, rx, acked: welcome.committed_seq })
            }
            other => panic!("expected a Welcome, got {other:?}"),
        }
    }

    fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    fn nodes(&self) -> Vec<NodeStatus> {
        self.block_on(async {
            let mut query = QueryClient::new(Self::channel(&self.url).await);
            query.nodes(with_token(NodesRequest {}, READ)).await.unwrap().into_inner().nodes
        })
    }

    fn node(&self, name: &str) -> Option<NodeStatus> {
        self.nodes().into_iter().find(|n| n.node_name == name)
    }
}

impl Stream {
    /// Sends `message`, then reads until everything through `seq` is acknowledged or the
    /// stream ends with an error: `Ok(acked)` or the error.
    async fn send_until_acked(&mut self, message: AgentMessage, seq: u64) -> Result<u64, Status> {
        if self.tx.send(message).await.is_err() {
            // The collector ended the stream; its status follows.
        }
        while self.acked < seq {
            match tokio::time::timeout(WAIT, self.rx.message()).await.expect("an ack or an error in time")? {
                Some(CollectorMessage { kind: Some(CollectorKind::Ack(ack)) }) => self.acked = ack.committed_seq,
                Some(_) => {}
                None => return Err(Status::unknown("the stream ended without an error")),
            }
        }
        Ok(self.acked)
    }
}

/// Two honest agents streaming every 100 ms with the shared token, and their collector.
fn honest_cluster(work: &Path, extra: &[&str]) -> (Collector, [Agent; 2]) {
    let flags = shared_token_setup(work, extra);
    let collector = Collector::start(work, &args(&flags));
    let token = work.join("shared-token");
    let agents = [
        Agent::with_token(work, "honest-a", &collector.url(), &token),
        Agent::with_token(work, "honest-b", &collector.url(), &token),
    ];
    wait_until("both honest agents to stream", WAIT, || agents.iter().all(|a| a.streams_opened() >= 1)).unwrap();
    (collector, agents)
}

/// Lets the honest agents stream a second at least (10 samples), stops them and the collector;
/// every sample each agent numbered is stored once.
fn assert_honest_data_complete(
    mut collector: Collector,
    agents: [Agent; 2],
    attacker: &Attacker,
) -> std::collections::HashMap<String, serde_json::Value> {
    wait_until("10 samples of each honest agent", WAIT, || {
        agents.iter().all(|agent| attacker.node(&agent.node).is_some_and(|n| n.committed_seq >= 10))
    })
    .unwrap();
    let exits: Vec<(String, AgentExit)> = agents
        .into_iter()
        .map(|mut agent| {
            let exit = agent.stop();
            (agent.node.clone(), exit)
        })
        .collect();
    for (node, exit) in &exits {
        assert_eq!((exit.unacknowledged, exit.acked_seq), (0, exit.last_seq), "{node}: {exit:?}");
        assert!(exit.last_seq >= 10, "{node} streamed through the test: {exit:?}");
    }
    collector.stop();
    let store = collector.inspect();
    for (node, exit) in &exits {
        assert_complete(&store, node, exit.last_seq);
    }
    store
}

#[test]
fn the_collectors_interval_bounds_are_the_agents() {
    // One number on both sides: SetInterval never asks an agent for what it would clamp.
    let agent_min = u32::try_from(bakery_agent::stream::MIN_INTERVAL.as_millis()).unwrap();
    let agent_max = u32::try_from(bakery_agent::stream::MAX_INTERVAL.as_millis()).unwrap();
    assert_eq!(bakery_collector::liveness::MIN_INTERVAL_MS, agent_min);
    assert_eq!(bakery_collector::liveness::MAX_INTERVAL_MS, agent_max);
    assert_eq!(bakery_collector::query::MIN_INTERVAL_MS, agent_min);
}

#[test]
fn sequence_poisoning_is_refused_and_the_real_agents_data_stays_complete() {
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let (collector, agents) = honest_cluster(work, &[]);
    let attacker = Attacker::new(&collector.url());
    wait_until("honest-a to have data committed", WAIT, || {
        attacker.node("honest-a").is_some_and(|n| n.committed_seq >= 5)
    })
    .unwrap();

    // The attacker says Hello as honest-a (the shared token allows it, and takes the stream
    // over) and sends a batch numbered 2^64 - 1, then a gap that reaches as far.
    for poison in [batch(u64::MAX, vec![sample(bakery_collector::now_ms())]), {
        let gap = Gap { first_seq: 1, last_seq: u64::MAX - 1, reason: "spool overflow".into() };
        AgentMessage { kind: Some(AgentKind::Gap(gap)) }
    }] {
        let status = attacker.block_on(async {
            // When the real agent takes its stream back before the poison is read (ABORTED),
            // the attacker tries again.
            for _ in 0..20 {
                let channel = Attacker::channel(&collector.url()).await;
                let mut stream = Attacker::open(channel, hello("honest-a")).await.unwrap();
                let before = stream.acked;
                let refusal = stream.send_until_acked(poison.clone(), u64::MAX - 1).await.unwrap_err();
                assert_eq!(stream.acked, before, "nothing of it was acknowledged");
                if refusal.code() != Code::Aborted {
                    return refusal;
                }
            }
            panic!("the real agent took its stream back before every one of 20 attempts");
        });
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        assert!(status.message().contains("beyond what this agent could have produced"), "{status:?}");
        assert!(status.message().contains("the limit is"), "the refusal names the limit: {status:?}");
    }
    wait_until("two refusals on /metrics", WAIT, || refused(&collector, "seq_beyond_bound") >= 2.0).unwrap();
    let committed = attacker.node("honest-a").unwrap().committed_seq;
    assert!(committed < 1_000_000, "the committed seq was never moved by the poison: {committed}");

    // honest-a's stream was taken over; it reconnects and keeps streaming, losing nothing.
    let honest = &agents[0];
    wait_until("honest-a to stream again", WAIT, || honest.streams_opened() >= 2).unwrap();
    wait_until("honest-a to get further", WAIT, || {
        attacker.node("honest-a").is_some_and(|n| n.committed_seq > committed + 10)
    })
    .unwrap();
    assert_rss_under_limit(collector.port, "after the poisoning");
    assert_honest_data_complete(collector, agents, &attacker);
}

/// A batch of `samples` Pi-like samples of 30 pods each (about 1.1 KB apiece).
fn heavy_batch(samples: usize) -> AgentMessage {
    let now = bakery_collector::now_ms();
    let counters = |i: u64| NetCounters {
        rx_bytes: i * 1500,
        rx_packets: i,
        tx_bytes: i * 900,
        tx_packets: i,
        ..NetCounters::default()
    };
    let samples = (0..samples)
        .map(|s| {
            let mut sample = sample(now - 1_000 + s as i64);
            sample.cpu_cores = (0..4).map(|cpu| CpuTimes { cpu, user: 10, idle: 90, ..CpuTimes::default() }).collect();
            sample.interfaces = ["eth0", "cni0", "flannel.1", "lo"]
                .iter()
                .enumerate()
                .map(|(i, name)| NetInterface {
                    name: (*name).into(),
                    counters: Some(counters(i as u64 * 1000)),
                    ..NetInterface::default()
                })
                .collect();
            sample.temperatures =
                vec![Temperature { sensor: "thermal_zone0/cpu-thermal".into(), millidegrees_celsius: 55_000 }];
            sample.pods = (1..=30)
                .map(|r| PodSample {
                    pod_ref: r,
                    network: Some(counters(u64::from(r) * 10)),
                    cpu_usage_us: 1_000_000,
                    memory_working_set_bytes: 50 << 20,
                    process_count: 4,
                    ..PodSample::default()
                })
                .collect();
            sample
        })
        .collect();
    let pods = (1..=30)
        .map(|r| PodIdentity {
            pod_ref: r,
            uid: format!("00000000-0000-0000-0000-{r:012}"),
            qos_class: "burstable".into(),
            cgroup_path: format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{r}.slice"),
            host_network: false,
        })
        .collect();
    AgentMessage { kind: Some(AgentKind::Batch(Batch { seq: 1, new_pods: pods, samples })) }
}

#[test]
fn five_hundred_made_up_nodes_are_capped_and_a_restart_over_them_is_cheap_and_forgets_them() {
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let (mut collector, agents) = honest_cluster(work, &[]);
    let attacker = Attacker::new(&collector.url());
    let message = heavy_batch(900);
    let Some(AgentKind::Batch(heavy)) = &message.kind else { unreachable!() };
    let heavy_bytes = prost::Message::encoded_len(heavy);
    assert!((900_000..1_500_000).contains(&heavy_bytes), "a ~1 MB batch: {heavy_bytes}");

    // 500 names, 16 at a time, each with one ~1 MB batch. The first 254 (with the two honest
    // nodes, --max-nodes 256) are admitted: their batch is stored and acknowledged, kept neither
    // in the node's memory nor in the stream's (the stream is closed after it). The other 246
    // are refused at their Hello.
    let (admitted, refusals) = made_up_nodes_each_send(&attacker, &collector.url(), 500, &message);
    let odd: Vec<&Status> = refusals
        .iter()
        .filter(|s| s.code() != Code::ResourceExhausted || !s.message().contains("--max-nodes"))
        .collect();
    assert!(odd.is_empty(), "refused for another reason than --max-nodes: {odd:?}");
    assert_eq!(admitted, 254, "--max-nodes 256, two of them honest");
    assert_eq!(refusals.len(), 246);
    wait_until("every admitted made-up node's batch committed", WAIT, || {
        attacker.nodes().iter().filter(|n| n.node_name.starts_with("fake-") && n.committed_seq == 1).count() == 254
    })
    .unwrap();
    wait_until("the refusals on /metrics", WAIT, || refused(&collector, "node_cap") >= 246.0).unwrap();
    assert_eq!(refused(&collector, "batch_not_kept"), 254.0, "each ~1 MB batch is stored, not kept in memory");
    assert_eq!(refused(&collector, "large_message"), 254.0, "nor in its stream's buffer");
    assert_eq!(attacker.nodes().len(), 256);
    assert_rss_under_limit(collector.port, "with 256 nodes, 254 of them made up with a ~1 MB batch each");
    let [mut a, mut b] = agents;
    for agent in [&mut a, &mut b] {
        let exit = agent.stop();
        assert_eq!((exit.unacknowledged, exit.acked_seq), (0, exit.last_seq), "{}: {exit:?}", agent.node);
    }
    collector.stop();

    // A new collector on the same store (256 nodes, 254 newest batches of ~1 MB), forgetting
    // idle nodes after 1 s: at start it reads in full only what fits in memory, the made-up
    // nodes (not connected, not in a cluster) are forgotten, and the honest agents go on.
    let second = work.join("second");
    std::fs::create_dir_all(&second).unwrap();
    std::os::unix::fs::symlink(work.join("collector-data"), second.join("collector-data")).unwrap();
    let flags = shared_token_setup(work, &["--forget-nodes-after=1s"]);
    let collector = Collector::start(&second, &args(&flags));
    assert_rss_under_limit(collector.port, "right after a start over the made-up nodes");
    let attacker = Attacker::new(&collector.url());
    let token = work.join("shared-token");
    let agents = [
        Agent::with_token(work, "honest-a", &collector.url(), &token),
        Agent::with_token(work, "honest-b", &collector.url(), &token),
    ];
    wait_until("the made-up nodes to be forgotten", WAIT, || {
        let names: Vec<String> = attacker.nodes().into_iter().map(|n| n.node_name).collect();
        names == ["honest-a", "honest-b"]
    })
    .unwrap();
    assert_rss_under_limit(collector.port, "after the made-up nodes were forgotten");
    let store = assert_honest_data_complete(collector, agents, &attacker);
    let fakes = store.keys().filter(|name| name.starts_with("fake-")).count();
    assert_eq!(fakes, 254, "the admitted made-up nodes stay in the store, the refused ones left nothing");
}

/// `count` made-up node names, 16 at a time over 8 connections, each sending `message` (one
/// large batch numbered 1): how many were admitted (their stream then closed after the batch),
/// and the refusals of the others at their Hello.
fn made_up_nodes_each_send(
    attacker: &Attacker,
    url: &str,
    count: usize,
    message: &AgentMessage,
) -> (usize, Vec<Status>) {
    attacker.block_on(async {
        let channels: Vec<Channel> = open_channels(url, 8).await;
        let (mut admitted, mut refusals) = (0, Vec::new());
        for chunk in (0..count).collect::<Vec<usize>>().chunks(16) {
            let attempts = chunk.iter().map(|i| {
                let (channel, message) = (channels[i % channels.len()].clone(), message.clone());
                async move {
                    let mut stream = Attacker::open(channel, hello(&format!("fake-{i:03}"))).await?;
                    // The stream is closed once the large batch is handled: after its ack, or
                    // before it when the commit takes longer than the collector waits for it (a
                    // loaded disk; an agent then sends it again and is told it is committed).
                    let closed = match stream.send_until_acked(message, 1).await {
                        Ok(acked) => {
                            assert_eq!(acked, 1);
                            stream.send_until_acked(batch(2, vec![]), 2).await.unwrap_err()
                        }
                        Err(status) => status,
                    };
                    assert_eq!(closed.code(), Code::ResourceExhausted, "{closed:?}");
                    Ok::<(), Status>(())
                }
            });
            for outcome in join_all(attempts).await {
                match outcome {
                    Ok(()) => admitted += 1,
                    Err(status) => refusals.push(status),
                }
            }
        }
        (admitted, refusals)
    })
}

async fn open_channels(url: &str, n: usize) -> Vec<Channel> {
    let mut channels = Vec::with_capacity(n);
    for _ in 0..n {
        channels.push(Attacker::channel(url).await);
    }
    channels
}

/// Runs `futures` concurrently on the current task, results in order.
async fn join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut results: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, result) in pinned.iter_mut().zip(results.iter_mut()) {
            if result.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(output) => *result = Some(output),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await;
    results.into_iter().map(|r| r.expect("every future finished")).collect()
}

#[test]
fn huge_strings_are_cut_and_counted_and_a_huge_node_name_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let (collector, agents) = honest_cluster(work, &[]);
    let attacker = Attacker::new(&collector.url());
    let url = collector.url();
    attacker.block_on(async {
        // 3.5 MB of names in one message, just under the 4 MiB limit.
        let mut sample = sample(bakery_collector::now_ms());
        sample.interfaces = (0..32)
            .map(|i| NetInterface { name: format!("{i}{}", "x".repeat(100_000)), ..NetInterface::default() })
            .collect();
        sample.temperatures = vec![Temperature { sensor: "t".repeat(300_000), millidegrees_celsius: 1 }];
        sample.pods = vec![PodSample { pod_ref: 1, ..PodSample::default() }];
        let identity = PodIdentity {
            pod_ref: 1,
            uid: "u".repeat(100_000),
            qos_class: "q".repeat(50_000),
            cgroup_path: "/".repeat(50_000),
            host_network: false,
        };
        let message = AgentMessage {
            kind: Some(AgentKind::Batch(Batch { seq: 1, new_pods: vec![identity], samples: vec![sample] })),
        };
        let mut stream = Attacker::open(Attacker::channel(&url).await, hello("strings")).await.unwrap();
        assert_eq!(stream.send_until_acked(message, 1).await.unwrap(), 1, "kept, cut");
        let mut long = hello("n");
        long.node_name = "n".repeat(1_000_000);
        let refusal =
            Attacker::open(Attacker::channel(&url).await, long).await.err().expect("a 1 MB node name is refused");
        assert_eq!(refusal.code(), Code::InvalidArgument, "{}", &refusal.message()[..200.min(refusal.message().len())]);
    });
    let status = attacker.node("strings").unwrap();
    let latest = status.latest.unwrap();
    assert_eq!(latest.interfaces.len(), 32);
    assert!(latest.interfaces.iter().all(|i| i.name.len() == 256), "names cut at --max-string-bytes");
    assert_eq!(latest.temperatures[0].sensor.len(), 256);
    let pod = &status.pods[0];
    assert_eq!((pod.uid.len(), pod.qos_class.len(), pod.cgroup_path.len()), (64, 16, 256));
    wait_until("the cuts on /metrics", WAIT, || refused(&collector, "string_truncated") >= 36.0).unwrap();
    assert_eq!(refused(&collector, "invalid_hello"), 1.0);
    assert!(attacker.nodes().iter().all(|n| n.node_name.len() < 300), "the long name left no node");
    assert_rss_under_limit(collector.port, "after the huge strings");
    assert_honest_data_complete(collector, agents, &attacker);
}

#[test]
fn a_declared_interval_of_1_ms_is_held_to_the_flood_limit_of_50_ms() {
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let (collector, agents) = honest_cluster(work, &[]);
    let attacker = Attacker::new(&collector.url());
    let url = collector.url();
    // 50 ms: 400 a second after a burst of 2,000 (20x of 1 ms would be 20,000 a second with a
    // burst of 100,000). Offer 800 more than the burst, as fast as the stream takes them.
    let (rate, burst) = (400.0, 2_000.0);
    let total = 2_800u64;
    let start = Instant::now();
    let stream = attacker.block_on(async {
        let mut flood = hello("flood");
        flood.interval_ms = 1;
        let stream = Attacker::open(Attacker::channel(&url).await, flood).await.unwrap();
        for seq in 1..=total {
            stream.tx.send(batch(seq, vec![sample(bakery_collector::now_ms())])).await.unwrap();
        }
        stream
    });
    // Never more than the burst, the rate and one message read before any token is taken (a slow
    // machine only lowers what got through); slowed, not refused: all of it is committed, and no
    // sooner than the rate allows.
    let mut through = 0;
    wait_until("every offered batch committed", WAIT, || {
        through = attacker.node("flood").map_or(0, |n| n.committed_seq);
        let allowed = burst + rate * start.elapsed().as_secs_f64() + 1.0;
        assert!((through as f64) <= allowed, "{through} of {total} batches; 50 ms allows {allowed:.0}");
        through == total
    })
    .unwrap();
    let elapsed = start.elapsed().as_secs_f64();
    let least = (total as f64 - burst - 1.0) / rate;
    assert!(elapsed >= least, "{total} batches committed in {elapsed:.2} s; 400/s after the burst needs {least:.2} s");
    drop(stream);
    // SetInterval never goes below what an agent samples at.
    let refusal = attacker.block_on(async {
        let mut query = QueryClient::new(Attacker::channel(&url).await);
        let ask = |interval_ms| SetIntervalRequest { node_name: "honest-a".into(), interval_ms, reason: "test".into() };
        let refusal = query.set_interval(with_token(ask(49), CONTROL)).await.unwrap_err();
        assert!(query.set_interval(with_token(ask(100), CONTROL)).await.unwrap().into_inner().delivered);
        refusal
    });
    assert_eq!(refusal.code(), Code::InvalidArgument, "{refusal:?}");
    assert_rss_under_limit(collector.port, "after the flood");
    assert_honest_data_complete(collector, agents, &attacker);
}

/// `message`'s batch as a `Replay` numbered from `seq`, of a backlog said to end at `through`.
fn as_replay(message: AgentMessage, seq: u64, through: u64) -> AgentMessage {
    let Some(AgentKind::Batch(batch)) = message.kind else { panic!("a batch") };
    let batch = Batch { seq, ..batch };
    AgentMessage {
        kind: Some(AgentKind::Replay(Replay { through_seq: through, kind: Some(replay::Kind::Batch(batch)) })),
    }
}

#[test]
fn a_peer_that_calls_everything_replay_is_held_to_the_replay_budget() {
    use bakery_collector::limits::{REPLAY_BURST_BYTES, REPLAY_BYTES_PER_SECOND, replay_cost};
    use prost::Message;
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let (collector, agents) = honest_cluster(work, &[]);
    let attacker = Attacker::new(&collector.url());
    let url = collector.url();
    // Replays of 90 heavy samples (about 100 KB, under a stream's buffer), offered as fast as
    // the stream takes them: the burst's worth and 2 s of the rate beyond it, of a backlog said
    // to end far beyond them (so it never ends, and every live message goes ahead of it: one
    // after every tenth replay, within the flood limit's burst).
    let per_message = 90u64;
    let cost = replay_cost(as_replay(heavy_batch(90), 1, 1).encoded_len(), 90);
    let messages = ((REPLAY_BURST_BYTES + 2.0 * REPLAY_BYTES_PER_SECOND) / cost).ceil() as u64;
    let total = messages * per_message;
    let through = 1 << 20;
    let start = Instant::now();
    let stream = attacker.block_on(async {
        let stream = Attacker::open(Attacker::channel(&url).await, hello("replayer")).await.unwrap();
        for i in 0..messages {
            stream.tx.send(as_replay(heavy_batch(90), 1 + i * per_message, through)).await.unwrap();
            if i % 10 == 9 {
                stream.tx.send(batch(through + i, vec![sample(bakery_collector::now_ms())])).await.unwrap();
            }
        }
        stream
    });
    // Never more than the burst, the rate and one message read before it is paid for (a slow
    // machine only lowers what got through); slowed, not refused: all of it is committed, and
    // no sooner than the rate allows.
    let sample_cost = cost / per_message as f64;
    let mut through_now = 0;
    wait_until("every replayed sample committed", WAIT, || {
        through_now = attacker.node("replayer").map_or(0, |n| n.committed_seq);
        let allowed =
            (REPLAY_BURST_BYTES + REPLAY_BYTES_PER_SECOND * start.elapsed().as_secs_f64() + cost) / sample_cost;
        assert!((through_now as f64) <= allowed, "{through_now} of {total} samples; the budget allows {allowed:.0}");
        through_now == total
    })
    .unwrap();
    let elapsed = start.elapsed().as_secs_f64();
    let least = (messages as f64 * cost - REPLAY_BURST_BYTES - cost) / REPLAY_BYTES_PER_SECOND;
    eprintln!(
        "{total} replayed samples in {messages} messages committed after {elapsed:.2} s (the budget: {least:.2} s)"
    );
    assert!(elapsed >= least, "{total} samples committed in {elapsed:.2} s; the replay budget needs {least:.2} s");
    drop(stream);
    assert_eq!(refused(&collector, "invalid_message"), 0.0, "slowed, never refused");
    assert_rss_under_limit(collector.port, "after the replay flood");
    assert_honest_data_complete(collector, agents, &attacker);
}

#[test]
fn samples_dated_a_day_ahead_do_not_freeze_the_live_view_and_a_window_closes() {
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let (collector, agents) = honest_cluster(work, &[]);
    let attacker = Attacker::new(&collector.url());
    let url = collector.url();
    let day = 86_400_000;
    let live = |attacker: &Attacker| {
        attacker.block_on(async {
            let mut query = QueryClient::new(Attacker::channel(&url).await);
            query.live(with_token(LiveRequest {}, READ)).await.unwrap().into_inner().evaluated_ms
        })
    };
    let window: Window = attacker.block_on(async {
        let mut query = QueryClient::new(Attacker::channel(&url).await);
        let request = StartWindowRequest { name: "under-attack".into(), workload: String::new() };
        query.start_window(with_token(request, CONTROL)).await.unwrap().into_inner().window.unwrap()
    });
    // A node whose clock is a day ahead streams for 3 s.
    attacker.block_on(async {
        let mut stream = Attacker::open(Attacker::channel(&url).await, hello("ahead")).await.unwrap();
        for seq in 1..=12 {
            stream.send_until_acked(batch(seq, vec![sample(bakery_collector::now_ms() + day)]), seq).await.unwrap();
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    // The live view keeps evaluating, on the collector's clock.
    let first = live(&attacker);
    wait_until("the live view to move on", WAIT, || live(&attacker) > first).unwrap();
    let now = bakery_collector::now_ms();
    let evaluated = live(&attacker);
    assert!((now - 5_000..=now + 1_000).contains(&evaluated), "evaluated at {evaluated}, now {now}");
    let stopped: Window = attacker.block_on(async {
        let mut query = QueryClient::new(Attacker::channel(&url).await);
        query.stop_window(with_token(StopWindowRequest {}, CONTROL)).await.unwrap().into_inner().window.unwrap()
    });
    let now = bakery_collector::now_ms();
    assert_eq!(stopped.id, window.id);
    assert!((now - 5_000..=now).contains(&stopped.end_ms), "the window closed now, not a day ahead: {stopped:?}");
    let skew = attacker.node("ahead").unwrap().clock_skew_ms;
    assert!((-day - 5_000..=-day + 5_000).contains(&skew), "the skew is visible in Nodes: {skew}");
    wait_until("the re-stamped samples on /metrics", WAIT, || refused(&collector, "clock_skew") >= 1.0).unwrap();
    // The honest agents were asked for 250 ms during the window and given their 100 ms back.
    wait_until("the honest agents' interval to come back", WAIT, || {
        attacker.nodes().iter().filter(|n| n.node_name.starts_with("honest")).all(|n| n.interval_ms == 100)
    })
    .unwrap();
    assert_rss_under_limit(collector.port, "after the future timestamps");
    let store = assert_honest_data_complete(collector, agents, &attacker);
    assert_eq!(store["ahead"]["samples"].as_u64(), Some(12), "every sample stored, whatever its clock");
}
