//! Made-up snapshots of a five-node cluster (master-01..03, worker-01..02, WordPress behind NPM,
//! MySQL on a master): calm, and with master-02 taking the traffic through connection
//! pinning. Used by the snapshot tests and by `bakery-top --demo`, so the views can be seen and
//! tested without a cluster. Deterministic: frame `i` is always the same.

use crate::error::Result;
use crate::model::{
    AgentState, Alert, Cause, CpuUse, Frequency, MemoryUse, NodeView, PodView, Rates, Role, Share, ShareBasis,
    Snapshot, ThrottleMark, WindowSummary,
};
use crate::source::Source;

/// The made-up clock starts here (2026-09-21 14:13:20 UTC), so rendered times never change.
pub const START_MS: i64 = 1_790_000_000_000;

/// The workload under test.
pub const WORKLOAD: &str = "default/wordpress";

/// Frames per second of made-up time.
const FRAME_MS: i64 = 1_000;

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// A small deterministic wiggle in [-1, 1] so sparklines move.
fn wiggle(frame: u32, salt: u32) -> f64 {
    let x = frame.wrapping_mul(2_654_435_761).wrapping_add(salt.wrapping_mul(40_503)) % 1000;
    x as f64 / 500.0 - 1.0
}

struct NodeSpec {
    name: &'static str,
    role: Role,
    /// Ready WordPress endpoints on the node.
    endpoints: u32,
    base_cpu: f64,
}

const NODES: [NodeSpec; 5] = [
    NodeSpec { name: "master-01", role: Role::ControlPlane, endpoints: 0, base_cpu: 22.0 },
    NodeSpec { name: "master-02", role: Role::ControlPlane, endpoints: 1, base_cpu: 30.0 },
    NodeSpec { name: "master-03", role: Role::ControlPlane, endpoints: 0, base_cpu: 26.0 },
    NodeSpec { name: "worker-01", role: Role::Worker, endpoints: 1, base_cpu: 28.0 },
    NodeSpec { name: "worker-02", role: Role::Worker, endpoints: 1, base_cpu: 27.0 },
];

/// The cluster at frame `frame`; with `hog`, master-02's WordPress pod holds most keep-alive
/// connections and takes most of the traffic.
pub fn bakery(frame: u32, hog: bool) -> Snapshot {
    // One piece: one made-up snapshot, every node, pod and alert in one literal so the numbers can be checked against
    // each other.
    let taken_ms = START_MS + i64::from(frame) * FRAME_MS;
    let total_endpoints: u32 = NODES.iter().map(|n| n.endpoints).sum();
    // Bytes per second of WordPress traffic per endpoint node (rx + tx), ~60 req/s of pages.
    let observed = |name: &str| -> f64 {
        match (hog, name) {
            (false, _) => 1.0 / 3.0,
            (true, "master-02") => 0.72,
            (true, _) => 0.14,
        }
    };
    let total_traffic = 6_000_000.0;
    let mut nodes = Vec::new();
    let mut pods = Vec::new();
    for (index, spec) in NODES.iter().enumerate() {
        let salt = index as u32;
        let hot = hog && spec.name == "master-02";
        let share = if spec.endpoints > 0 { observed(spec.name) } else { 0.0 };
        let traffic = share * total_traffic;
        let cpu = if hot { 91.0 + 4.0 * wiggle(frame, salt) } else { spec.base_cpu + 6.0 * wiggle(frame, salt) };
        let softirq = if hot { 14.0 } else { 3.0 + wiggle(frame, salt + 7).abs() };
        let temperature = if hot { 81.4 } else { 52.0 + 3.0 * wiggle(frame, salt + 3) };
        let connections = if spec.endpoints == 0 {
            0
        } else if hog {
            if hot { 36 } else { 7 }
        } else {
            [17, 16, 17][index % 3]
        };
        nodes.push(NodeView {
            name: spec.name.to_string(),
            role: spec.role,
            agent: AgentState::Live,
            sample_ms: taken_ms - 120,
            cpu: Some(CpuUse { busy_percent: cpu, softirq_percent: softirq }),
            memory: Some(MemoryUse {
                used_bytes: if hot { 6 * GIB + 700 * MIB } else { 2 * GIB + (index as u64) * 300 * MIB },
                total_bytes: 8 * GIB,
            }),
            temperature_celsius: Some(temperature),
            frequency: Some(Frequency { current_khz: if hot { 1_500_000 } else { 2_400_000 }, max_khz: 2_400_000 }),
            throttle: ThrottleMark { throttled: hot, soft_temperature_limit: hot, ..ThrottleMark::default() },
            nic: Some(Rates {
                rx_bytes_per_second: 200_000.0 + traffic * 0.2,
                tx_bytes_per_second: 300_000.0 + traffic * 0.8,
            }),
            share: Some(Share { observed: share, expected: f64::from(spec.endpoints) / f64::from(total_endpoints) }),
            inbound_connections: Some(connections),
        });
        if spec.endpoints > 0 {
            let suffix = ["x2k9p", "h7f4q", "m3z8t", "c5v1n", "b8d2w"][index];
            pods.push(PodView {
                name: format!("wordpress-6d8f7c9b5-{suffix}"),
                namespace: "default".into(),
                uid: format!("3f2a-{suffix}"),
                node: spec.name.into(),
                workload: Some("Deployment/wordpress".into()),
                ready: Some(true),
                host_network: false,
                network: Some(Rates { rx_bytes_per_second: traffic * 0.1, tx_bytes_per_second: traffic * 0.9 }),
                inbound_connections: Some(connections),
                cpu_cores: Some(if hot { 2.9 } else { 0.6 + 0.1 * wiggle(frame, salt) }),
                memory_working_set_bytes: Some(if hot { 1_400 * MIB } else { 310 * MIB }),
            });
        }
    }
    pods.push(PodView {
        name: "mysql-0".into(),
        namespace: "default".into(),
        uid: "9c1e-mysql".into(),
        node: "master-03".into(),
        workload: Some("StatefulSet/mysql".into()),
        ready: Some(true),
        host_network: false,
        network: Some(Rates { rx_bytes_per_second: 400_000.0, tx_bytes_per_second: 1_200_000.0 }),
        inbound_connections: Some(24),
        cpu_cores: Some(0.8),
        memory_working_set_bytes: Some(900 * MIB),
    });
    pods.push(PodView {
        name: "nginx-proxy-manager-5b7d9-q4k2s".into(),
        namespace: "proxy".into(),
        uid: "71aa-npm".into(),
        node: "master-01".into(),
        workload: Some("Deployment/nginx-proxy-manager".into()),
        ready: Some(true),
        host_network: false,
        network: Some(Rates { rx_bytes_per_second: 6_100_000.0, tx_bytes_per_second: 6_300_000.0 }),
        inbound_connections: Some(50),
        cpu_cores: Some(0.4),
        memory_working_set_bytes: Some(180 * MIB),
    });
    for (spec, suffix) in NODES.iter().zip(["k2x9z", "p8m4r", "d3q7v", "t6w1b", "n9c5h"]) {
        pods.push(PodView {
            name: format!("speaker-{suffix}"),
            namespace: "metallb-system".into(),
            uid: format!("55b0-speaker-{}", spec.name),
            node: spec.name.into(),
            workload: Some("DaemonSet/speaker".into()),
            ready: Some(true),
            host_network: true,
            network: None,
            inbound_connections: None,
            cpu_cores: Some(0.01),
            memory_working_set_bytes: Some(24 * MIB),
        });
    }
    pods.sort_by(|a, b| (&a.node, &a.namespace, &a.name).cmp(&(&b.node, &b.namespace, &b.name)));
    let alerts = if hog { vec![pinning_alert(taken_ms - 45_000)] } else { Vec::new() };
    Snapshot {
        taken_ms,
        nodes,
        pods,
        share_basis: ShareBasis::Workload { name: WORKLOAD.into() },
        alerts: Some(alerts),
        windows: Some(windows(taken_ms, hog)),
    }
}

/// The verdict the diagnosis gives for keep-alive connections pinned to master-02's pod.
pub fn pinning_alert(since_ms: i64) -> Alert {
    Alert {
        node: "master-02".into(),
        cause: Cause::ConnectionPinning,
        evidence: "pod traffic 2.2x its expected share (72% vs 33%) for 45s; its pod holds 36 of 50 \
                   keep-alive connections (p99 of a random spread: 26)"
            .into(),
        confidence: 0.86,
        next_step: "rerun with `oha --disable-keepalive`: if the skew goes, balance per request \
                    (an upstream pool in the proxy) instead of per connection"
            .into(),
        since_ms,
    }
}

fn windows(now_ms: i64, hog: bool) -> Vec<WindowSummary> {
    let mut windows = vec![WindowSummary {
        id: "w-11".into(),
        name: "baseline".into(),
        workload: Some(WORKLOAD.into()),
        automatic: false,
        start_ms: START_MS - 3_600_000,
        end_ms: Some(START_MS - 3_540_000),
        verdicts: Vec::new(),
    }];
    if hog {
        windows.push(WindowSummary {
            id: "w-12".into(),
            name: "oha -c 50 -z 60s".into(),
            workload: Some(WORKLOAD.into()),
            automatic: true,
            start_ms: now_ms - 50_000,
            end_ms: None,
            verdicts: vec!["master-02 connection-pinning".into()],
        });
    }
    windows
}

/// `--demo`: calm for 20 frames, then the hog, for ever.
#[derive(Debug, Clone, Default)]
pub struct MadeUpSource {
    frame: u32,
}

/// Frames before the hog starts in [`MadeUpSource`].
pub const CALM_FRAMES: u32 = 20;

impl Source for MadeUpSource {
    fn describe(&self) -> String {
        "demo (made-up data)".to_string()
    }

    async fn snapshot(&mut self) -> Result<Snapshot> {
        let frame = self.frame;
        self.frame = self.frame.wrapping_add(1);
        Ok(bakery(frame, frame >= CALM_FRAMES))
    }
}
