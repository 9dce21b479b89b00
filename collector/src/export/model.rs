//! The export's one data model: the catalogue of exported metrics (names, UCUM units and kinds
//! per the OpenTelemetry semantic conventions v1.44.0, `bakery.` where none exists; held against
//! the registry by `semconv.rs`) and the pure
//! conversion of node snapshots, pod metadata and the diagnosis view into points. OTLP and
//! `/metrics` both render these points, so the two never disagree.

use std::collections::HashMap;

use bakery_proto::v1::{CpuTimes, NetCounters, Sample, ThrottleFlags};
use bakery_signals::counter::increase_unless_reset;
use bakery_signals::cpu;

use super::hooks::{DiagnosisView, FeedSnapshot, PodMeta};
use crate::store::PodRecord;

/// How a metric aggregates; decides the OTLP instrument and the Prometheus type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A cumulative monotonic sum (Prometheus `counter`, `_total`).
    Counter,
    /// A cumulative non-monotonic sum (semantic conventions use it for usages).
    UpDownCounter,
    Gauge,
}

/// The value type of a metric's points: integers where the source is integral (bytes, packets,
/// errors, counts), as the semantic conventions' `metric_value_type` says; OTLP sends `as_int`
/// for these, `as_double` for the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Number {
    Int,
    Double,
}

/// One exported metric.
#[derive(Debug, PartialEq, Eq)]
pub struct MetricSpec {
    pub name: &'static str,
    /// UCUM (`s`, `By`, `Cel`, `Hz`, `1`, or a `{annotation}` for counts).
    pub unit: &'static str,
    pub description: &'static str,
    pub kind: Kind,
    pub number: Number,
}

macro_rules! metrics {
    ($($id:ident = $name:literal, $unit:literal, $kind:ident, $number:ident, $desc:literal;)*) => {
        $(pub const $id: MetricSpec =
            MetricSpec { name: $name, unit: $unit, description: $desc, kind: Kind::$kind, number: Number::$number };)*
        /// Every metric the collector exports.
        pub const ALL: &[&MetricSpec] = &[$(&$id),*];
    };
}

// Semantic conventions v1.44.0 (model/system, model/k8s, model/hardware of the registry):
// https://opentelemetry.io/docs/specs/semconv/system/system-metrics/, .../k8s-metrics/ and
// .../hardware/ (hw.temperature, hw.cpu.speed). `Int` where the registry's `metric_value_type`
// is int (the source is integral), `Double` otherwise; bakery's own counts are `Int` too.
metrics! {
    SYSTEM_CPU_TIME = "system.cpu.time", "s", Counter, Double, "CPU time per logical CPU and mode (from /proc/stat jiffies)";
    SYSTEM_CPU_UTILIZATION = "system.cpu.utilization", "1", Gauge, Double, "Share of CPU time per mode between the last two samples, whole node";
    SYSTEM_CPU_FREQUENCY = "system.cpu.frequency", "Hz", Gauge, Int, "Current frequency per logical CPU (scaling_cur_freq)";
    HW_CPU_SPEED = "hw.cpu.speed", "Hz", Gauge, Int, "Current CPU speed per logical CPU";
    HW_CPU_SPEED_LIMIT = "hw.cpu.speed.limit", "Hz", Gauge, Int, "Maximum CPU speed per logical CPU (cpuinfo_max_freq)";
    SYSTEM_MEMORY_USAGE = "system.memory.usage", "By", UpDownCounter, Int, "Memory in use per state (/proc/meminfo)";
    SYSTEM_MEMORY_LIMIT = "system.memory.limit", "By", UpDownCounter, Int, "Total memory (MemTotal)";
    SYSTEM_MEMORY_LINUX_AVAILABLE = "system.memory.linux.available", "By", UpDownCounter, Int, "MemAvailable";
    SYSTEM_NETWORK_IO = "system.network.io", "By", Counter, Int, "Bytes per interface of the node's wire and direction";
    SYSTEM_NETWORK_PACKET_COUNT = "system.network.packet.count", "{packet}", Counter, Int, "Packets per interface and direction";
    SYSTEM_NETWORK_PACKET_DROPPED = "system.network.packet.dropped", "{packet}", Counter, Int, "Dropped packets per interface and direction";
    SYSTEM_NETWORK_ERRORS = "system.network.errors", "{error}", Counter, Int, "Errors per interface and direction";
    HW_TEMPERATURE = "hw.temperature", "Cel", Gauge, Double, "Temperature per sensor";
    BAKERY_PRESSURE_STALL_TIME = "bakery.pressure.stall.time", "s", Counter, Double, "PSI total stall time per resource and kind (/proc/pressure)";
    BAKERY_PRESSURE_AVG10 = "bakery.pressure.avg10", "1", Gauge, Double, "PSI 10 s average share of time stalled per resource and kind";
    BAKERY_THROTTLE_FLAG = "bakery.throttle.flag", "{flag}", Gauge, Int, "Raspberry Pi get_throttled flags: 1 when set, now or since boot";
    BAKERY_CONNTRACK_ENTRIES = "bakery.conntrack.entries", "{entry}", UpDownCounter, Int, "nf_conntrack_count";
    BAKERY_CONNTRACK_LIMIT = "bakery.conntrack.limit", "{entry}", UpDownCounter, Int, "nf_conntrack_max";
    K8S_POD_NETWORK_IO = "k8s.pod.network.io", "By", Counter, Int, "Bytes through the pod's interfaces (lo excluded) per direction";
    K8S_POD_NETWORK_ERRORS = "k8s.pod.network.errors", "{error}", Counter, Int, "Errors on the pod's interfaces per direction";
    K8S_POD_CPU_TIME = "k8s.pod.cpu.time", "s", Counter, Double, "CPU time of the pod cgroup";
    K8S_POD_MEMORY_WORKING_SET = "k8s.pod.memory.working_set", "By", UpDownCounter, Int, "Pod memory usage minus inactive_file";
    BAKERY_POD_TCP_CONNECTIONS = "bakery.pod.tcp.connections", "{connection}", UpDownCounter, Int, "TCP sockets in the pod's network namespace per state (network.connection.state), established ones also by direction";
    BAKERY_TRAFFIC_SHARE_OBSERVED = "bakery.traffic.share.observed", "1", Gauge, Double, "The node's observed share of the workload's traffic";
    BAKERY_TRAFFIC_SHARE_EXPECTED = "bakery.traffic.share.expected", "1", Gauge, Double, "The node's expected share (its ready endpoints / all ready endpoints)";
    BAKERY_IMBALANCE_SCORE = "bakery.imbalance.score", "1", Gauge, Double, "How uneven the workload's traffic is against the expected shares";
    BAKERY_HOG_ACTIVE = "bakery.hog.active", "{verdict}", Gauge, Int, "1 while a hog verdict is in force, by node and cause";
    BAKERY_HOG_VERDICTS = "bakery.hog.verdicts", "{verdict}", Gauge, Int, "Hog verdicts in force, by cause";
    BAKERY_WINDOW_ACTIVE = "bakery.window.active", "{window}", Gauge, Int, "1 while a load-test window is open";
    BAKERY_EXPORT_DROPPED = "bakery.export.dropped", "{export}", Counter, Int, "OTLP exports dropped: queue full, backend down or too slow";
    BAKERY_COLLECTOR_AUTH_REFUSALS = "bakery.collector.auth.refusals", "{refusal}", Counter, Int, "Calls the collector refused, by cause (no or unknown credential, service-account token rejected or unreviewable, missing role, wrong node)";
    BAKERY_COLLECTOR_INGEST_REFUSALS = "bakery.collector.ingest.refusals", "{refusal}", Counter, Int, "What ingest refused or cut, by cause (sequence beyond what the agent could have produced, node, pod or sample caps, strings and entries cut, batches too large to keep in memory and the streams closed after them, samples re-stamped for clock skew, invalid input)";
    BAKERY_AGENT_REPORTING = "bakery.agent.reporting", "{agent}", Gauge, Int, "1 while the node's agent reports (a sample within 3 of its intervals), 0 while it is silent or never reported; for every node Kubernetes lists (without Kubernetes, every node the collector holds)";
    BAKERY_COLLECTOR_COMMIT_LAST_SUCCESS = "bakery.collector.commit.last_success.timestamp", "s", Gauge, Double, "When (Unix epoch seconds) a commit to the store last succeeded or found nothing to commit";
    BAKERY_COLLECTOR_COMMIT_FAILURES = "bakery.collector.commit.failures", "{commit}", Counter, Int, "Commits to the store that failed (a full disk); nothing is acknowledged meanwhile";
}

/// An attribute value (OTLP keeps the type; Prometheus renders both as text).
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Str(String),
    Int(i64),
}

impl std::fmt::Display for AttrValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttrValue::Str(s) => f.write_str(s),
            AttrValue::Int(i) => write!(f, "{i}"),
        }
    }
}

pub type Attributes = Vec<(&'static str, AttrValue)>;

/// One value of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub metric: &'static MetricSpec,
    pub attributes: Attributes,
    pub value: f64,
}

/// The points of one OTLP resource (a node, a pod, or the collector itself).
#[derive(Debug, Clone, PartialEq)]
pub struct ResourcePoints {
    /// Identifies the resource (`service.instance.id`), unique among the exported resources.
    pub instance: String,
    pub resource: Attributes,
    pub points: Vec<Point>,
}

/// What the export reads about one node.
#[derive(Debug, Clone, Default)]
pub struct NodeSnapshot {
    pub name: String,
    pub latest: Option<Sample>,
    /// The sample before `latest`, for utilization.
    pub previous: Option<Sample>,
    /// Collector pod id -> identity (the samples' `pod_ref` are these ids).
    pub pods: HashMap<u32, PodRecord>,
    /// USER_HZ: CPU times are in these ticks.
    pub clock_ticks_per_second: u32,
}

/// USER_HZ on every Linux architecture bakery runs on (arm64, x86_64): the kernel's
/// `USER_HZ` is fixed at 100 for the ABI whatever `CONFIG_HZ` is (include/asm-generic/param.h).
pub const DEFAULT_CLOCK_TICKS: u32 = 100;

/// The instance id of the collector's own resource (diagnosis and self-metrics).
pub const COLLECTOR_INSTANCE: &str = "bakery-collector";

fn s(value: impl Into<String>) -> AttrValue {
    AttrValue::Str(value.into())
}

/// Every resource's points: each node followed by its pods (one resource each), then the
/// collector's own.
pub fn all_points(
    nodes: &[NodeSnapshot],
    cluster_name: Option<&str>,
    feed: &FeedSnapshot,
    dropped_exports: u64,
) -> Vec<ResourcePoints> {
    let mut out = Vec::new();
    for node in nodes {
        out.push(node_points(node, cluster_name));
        out.extend(pod_resources(node, cluster_name, &feed.pods));
    }
    out.push(collector_points(cluster_name, &feed.diagnosis, dropped_exports));
    out
}

/// The collector's refusal counts as `bakery.collector.auth.refusals` points, one per `cause`
/// (zeros included, so a rate starts at the first export).
pub fn refusal_points(counts: &[(&'static str, u64)]) -> Vec<Point> {
    counts
        .iter()
        .map(|(cause, count)| Point {
            metric: &BAKERY_COLLECTOR_AUTH_REFUSALS,
            attributes: vec![("cause", s(*cause))],
            value: *count as f64,
        })
        .collect()
}

/// Ingest's refusal and cut counts as `bakery.collector.ingest.refusals` points, one per
/// `cause` (zeros included).
pub fn ingest_refusal_points(counts: &[(&'static str, u64)]) -> Vec<Point> {
    counts
        .iter()
        .map(|(cause, count)| Point {
            metric: &BAKERY_COLLECTOR_INGEST_REFUSALS,
            attributes: vec![("cause", s(*cause))],
            value: *count as f64,
        })
        .collect()
}

/// A node's resource and points (its pods are their own resources: [`pod_resources`]).
pub fn node_points(node: &NodeSnapshot, cluster_name: Option<&str>) -> ResourcePoints {
    let mut resource: Attributes =
        vec![("k8s.node.name", s(&node.name)), ("host.name", s(&node.name)), ("service.instance.id", s(&node.name))];
    if let Some(cluster) = cluster_name {
        resource.push(("k8s.cluster.name", s(cluster)));
    }
    let mut points = Vec::new();
    if let Some(sample) = &node.latest {
        let ticks =
            f64::from(if node.clock_ticks_per_second == 0 { DEFAULT_CLOCK_TICKS } else { node.clock_ticks_per_second });
        cpu_points(sample, ticks, &mut points);
        if let (Some(previous), Some(total)) = (node.previous.as_ref().and_then(|p| p.cpu_total), sample.cpu_total) {
            utilization_points(&previous, &total, &mut points);
        }
        memory_points(sample, &mut points);
        net_points(sample, &mut points);
        hardware_points(sample, &mut points);
    }
    ResourcePoints { instance: node.name.clone(), resource, points }
}

/// One resource per pod of the node's latest sample: the pod's identity ([`pod_attributes`]),
/// the node it runs on and the cluster, with `service.instance.id` = the pod UID (unique among
/// the exported resources, and what a Prometheus OTLP endpoint turns into `instance`), so
/// entity-aware backends link the series to the pod.
pub fn pod_resources(
    node: &NodeSnapshot,
    cluster_name: Option<&str>,
    pods: &HashMap<String, PodMeta>,
) -> Vec<ResourcePoints> {
    let Some(sample) = &node.latest else { return Vec::new() };
    let mut out = Vec::new();
    for pod in &sample.pods {
        let Some(record) = node.pods.get(&pod.pod_ref) else { continue };
        let mut resource = pod_attributes(record, pods.get(&record.uid));
        resource.push(("k8s.node.name", s(&node.name)));
        if let Some(cluster) = cluster_name {
            resource.push(("k8s.cluster.name", s(cluster)));
        }
        resource.push(("service.instance.id", s(&record.uid)));
        let mut points = Vec::new();
        pod_points(pod, &mut points);
        out.push(ResourcePoints { instance: record.uid.clone(), resource, points });
    }
    out
}

/// Reads one mode's jiffies.
type ModeReader = fn(&CpuTimes) -> u64;

/// `cpu.mode` values of the conventions, with the /proc/stat column each reads.
const CPU_MODES: [(&str, ModeReader); 8] = [
    ("user", |c| c.user),
    ("nice", |c| c.nice),
    ("system", |c| c.system),
    ("idle", |c| c.idle),
    ("iowait", |c| c.iowait),
    ("interrupt", |c| c.irq),
    ("softirq", |c| c.softirq),
    ("steal", |c| c.steal),
];

fn cpu_points(sample: &Sample, ticks: f64, points: &mut Vec<Point>) {
    // Per logical CPU as the conventions ask; the node total only when cores are missing.
    let cores: Vec<&CpuTimes> =
        if sample.cpu_cores.is_empty() { sample.cpu_total.iter().collect() } else { sample.cpu_cores.iter().collect() };
    for times in cores {
        for (mode, read) in CPU_MODES {
            let mut attributes = vec![("cpu.mode", s(mode))];
            if times.cpu >= 0 {
                attributes.push(("cpu.logical_number", AttrValue::Int(i64::from(times.cpu))));
            }
            points.push(Point { metric: &SYSTEM_CPU_TIME, attributes, value: read(times) as f64 / ticks });
        }
    }
}

fn utilization_points(previous: &CpuTimes, latest: &CpuTimes, points: &mut Vec<Point>) {
    // A decrease is a reset (reboot): no utilization from this pair.
    let elapsed = increase_unless_reset(cpu::total(previous), cpu::total(latest)).filter(|t| *t > 0);
    let Some(elapsed) = elapsed else { return };
    for (mode, read) in CPU_MODES {
        let Some(delta) = increase_unless_reset(read(previous), read(latest)) else { return };
        points.push(Point {
            metric: &SYSTEM_CPU_UTILIZATION,
            attributes: vec![("cpu.mode", s(mode))],
            value: delta as f64 / elapsed as f64,
        });
    }
}

fn memory_points(sample: &Sample, points: &mut Vec<Point>) {
    let Some(memory) = &sample.memory else { return };
    // MemTotal - MemAvailable: what bakery-top shows, and the conventions' `used`.
    let used = bakery_signals::memory::used_bytes(memory);
    for (state, value) in [
        ("used", used),
        ("free", memory.free_bytes),
        ("buffers", memory.buffers_bytes),
        ("cached", memory.cached_bytes),
    ] {
        points.push(Point {
            metric: &SYSTEM_MEMORY_USAGE,
            attributes: vec![("system.memory.state", s(state))],
            value: value as f64,
        });
    }
    points.push(Point { metric: &SYSTEM_MEMORY_LIMIT, attributes: vec![], value: memory.total_bytes as f64 });
    points.push(Point {
        metric: &SYSTEM_MEMORY_LINUX_AVAILABLE,
        attributes: vec![],
        value: memory.available_bytes as f64,
    });
}

/// (metric, receive value, transmit value) for one set of counters.
fn net_values(counters: &NetCounters) -> [(&'static MetricSpec, u64, u64); 4] {
    [
        (&SYSTEM_NETWORK_IO, counters.rx_bytes, counters.tx_bytes),
        (&SYSTEM_NETWORK_PACKET_COUNT, counters.rx_packets, counters.tx_packets),
        (&SYSTEM_NETWORK_PACKET_DROPPED, counters.rx_dropped, counters.tx_dropped),
        (&SYSTEM_NETWORK_ERRORS, counters.rx_errors, counters.tx_errors),
    ]
}

/// The node's wire only (`bakery_signals::nic::node_wire`: physical NICs, a bond once): the
/// bytes that leave the node, counted as the diagnosis and bakery-top count them, so a panel
/// summing the series shows what they show. Pods' traffic is `k8s.pod.network.io`.
fn net_points(sample: &Sample, points: &mut Vec<Point>) {
    for interface in bakery_signals::nic::node_wire(&sample.interfaces) {
        let Some(counters) = &interface.counters else { continue };
        for (metric, rx, tx) in net_values(counters) {
            // The registry (v1.44.0) names the interface `system.device` on this one metric.
            let interface_key = if std::ptr::eq(metric, &SYSTEM_NETWORK_PACKET_COUNT) {
                "system.device"
            } else {
                "network.interface.name"
            };
            for (direction, value) in [("receive", rx), ("transmit", tx)] {
                points.push(Point {
                    metric,
                    attributes: vec![(interface_key, s(&interface.name)), ("network.io.direction", s(direction))],
                    value: value as f64,
                });
            }
        }
    }
    if let Some(conntrack) = &sample.conntrack {
        points.push(Point { metric: &BAKERY_CONNTRACK_ENTRIES, attributes: vec![], value: conntrack.count as f64 });
        points.push(Point { metric: &BAKERY_CONNTRACK_LIMIT, attributes: vec![], value: conntrack.max as f64 });
    }
}

fn hardware_points(sample: &Sample, points: &mut Vec<Point>) {
    for frequency in &sample.cpu_frequencies {
        let cpu = || vec![("cpu.logical_number", AttrValue::Int(i64::from(frequency.cpu)))];
        let hw = || vec![("hw.id", s(format!("cpu{}", frequency.cpu)))];
        let current = frequency.current_khz as f64 * 1000.0;
        points.push(Point { metric: &SYSTEM_CPU_FREQUENCY, attributes: cpu(), value: current });
        points.push(Point { metric: &HW_CPU_SPEED, attributes: hw(), value: current });
        if frequency.max_khz > 0 {
            // cpuinfo_max_freq: the `max` limit (`hw.limit_type`).
            let mut attributes = hw();
            attributes.push(("hw.limit_type", s("max")));
            points.push(Point { metric: &HW_CPU_SPEED_LIMIT, attributes, value: frequency.max_khz as f64 * 1000.0 });
        }
    }
    for temperature in &sample.temperatures {
        points.push(Point {
            metric: &HW_TEMPERATURE,
            attributes: vec![("hw.id", s(&temperature.sensor))],
            value: temperature.millidegrees_celsius as f64 / 1000.0,
        });
    }
    for pressure in &sample.pressure {
        let attributes =
            || vec![("bakery.pressure.resource", s(&pressure.resource)), ("bakery.pressure.kind", s(&pressure.kind))];
        points.push(Point {
            metric: &BAKERY_PRESSURE_STALL_TIME,
            attributes: attributes(),
            value: pressure.total_us as f64 / 1e6,
        });
        // avg10 is a percentage in /proc/pressure (Documentation/accounting/psi.rst).
        points.push(Point {
            metric: &BAKERY_PRESSURE_AVG10,
            attributes: attributes(),
            value: f64::from(pressure.avg10) / 100.0,
        });
    }
    if let Some(throttle) = &sample.throttle {
        for (scope, flags) in [("now", throttle.now), ("since_boot", throttle.since_boot)] {
            let Some(flags) = flags else { continue };
            throttle_points(scope, &flags, points);
        }
    }
}

fn throttle_points(scope: &'static str, flags: &ThrottleFlags, points: &mut Vec<Point>) {
    for (flag, set) in [
        ("under_voltage", flags.under_voltage),
        ("arm_frequency_capped", flags.arm_frequency_capped),
        ("throttled", flags.throttled),
        ("soft_temperature_limit", flags.soft_temperature_limit),
    ] {
        points.push(Point {
            metric: &BAKERY_THROTTLE_FLAG,
            attributes: vec![("bakery.throttle.flag", s(flag)), ("bakery.throttle.scope", s(scope))],
            value: if set { 1.0 } else { 0.0 },
        });
    }
}

/// `k8s.pod.*` identity attributes, with the workload when known.
pub fn pod_attributes(record: &PodRecord, meta: Option<&PodMeta>) -> Attributes {
    let mut attributes = vec![("k8s.pod.uid", s(&record.uid))];
    if let Some(meta) = meta {
        attributes.push(("k8s.pod.name", s(&meta.name)));
        attributes.push(("k8s.namespace.name", s(&meta.namespace)));
        if let Some(workload) = &meta.workload {
            // The conventions name the workload by its kind; the generic pair lets one query
            // cover every kind.
            let by_kind = match workload.kind.as_str() {
                "Deployment" => Some("k8s.deployment.name"),
                "StatefulSet" => Some("k8s.statefulset.name"),
                "DaemonSet" => Some("k8s.daemonset.name"),
                "ReplicaSet" => Some("k8s.replicaset.name"),
                "Job" => Some("k8s.job.name"),
                "CronJob" => Some("k8s.cronjob.name"),
                _ => None,
            };
            if let Some(key) = by_kind {
                attributes.push((key, s(&workload.name)));
            }
            attributes.push(("bakery.workload.kind", s(&workload.kind)));
            attributes.push(("bakery.workload.name", s(&workload.name)));
        }
    }
    attributes
}

/// A pod's points; its identity is its resource's ([`pod_resources`]).
fn pod_points(pod: &bakery_proto::v1::PodSample, points: &mut Vec<Point>) {
    if let Some(network) = &pod.network {
        for (direction, bytes, errors) in
            [("receive", network.rx_bytes, network.rx_errors), ("transmit", network.tx_bytes, network.tx_errors)]
        {
            let attributes = vec![("network.io.direction", s(direction))];
            points.push(Point { metric: &K8S_POD_NETWORK_IO, attributes: attributes.clone(), value: bytes as f64 });
            points.push(Point { metric: &K8S_POD_NETWORK_ERRORS, attributes, value: errors as f64 });
        }
    }
    points.push(Point { metric: &K8S_POD_CPU_TIME, attributes: vec![], value: pod.cpu_usage_us as f64 / 1e6 });
    points.push(Point {
        metric: &K8S_POD_MEMORY_WORKING_SET,
        attributes: vec![],
        value: pod.memory_working_set_bytes as f64,
    });
    if let Some(tcp) = &pod.tcp {
        // `network.connection.state` values; ESTABLISHED also by direction (inbound: on a port
        // the pod listens on). The agent's `other` (every remaining state) has no value of the
        // conventions and is not exported.
        for (state, direction, count) in [
            ("established", Some("inbound"), tcp.established_inbound),
            ("established", Some("outbound"), tcp.established_outbound),
            ("listen", None, tcp.listen),
            ("time_wait", None, tcp.time_wait),
            ("close_wait", None, tcp.close_wait),
            ("syn_received", None, tcp.syn_recv),
        ] {
            let mut attributes = vec![("network.connection.state", s(state))];
            if let Some(direction) = direction {
                attributes.push(("bakery.connection.direction", s(direction)));
            }
            points.push(Point { metric: &BAKERY_POD_TCP_CONNECTIONS, attributes, value: f64::from(count) });
        }
    }
}

/// The collector's own resource: diagnosis series and self-metrics.
pub fn collector_points(cluster_name: Option<&str>, diagnosis: &DiagnosisView, dropped_exports: u64) -> ResourcePoints {
    let mut resource: Attributes = vec![("service.instance.id", s(COLLECTOR_INSTANCE))];
    if let Some(cluster) = cluster_name {
        resource.push(("k8s.cluster.name", s(cluster)));
    }
    let workload =
        |namespace: &str, name: &str| vec![("k8s.namespace.name", s(namespace)), ("bakery.workload.name", s(name))];
    let mut points = vec![Point { metric: &BAKERY_EXPORT_DROPPED, attributes: vec![], value: dropped_exports as f64 }];
    for share in &diagnosis.shares {
        let mut attributes = workload(&share.namespace, &share.workload);
        attributes.push(("k8s.node.name", s(&share.node)));
        points.push(Point {
            metric: &BAKERY_TRAFFIC_SHARE_OBSERVED,
            attributes: attributes.clone(),
            value: share.observed,
        });
        points.push(Point { metric: &BAKERY_TRAFFIC_SHARE_EXPECTED, attributes, value: share.expected });
    }
    for imbalance in &diagnosis.imbalance {
        points.push(Point {
            metric: &BAKERY_IMBALANCE_SCORE,
            attributes: workload(&imbalance.namespace, &imbalance.workload),
            value: imbalance.score,
        });
    }
    for hog in &diagnosis.active_hogs {
        let mut attributes = workload(&hog.namespace, &hog.workload);
        attributes.push(("k8s.node.name", s(&hog.node)));
        attributes.push(("bakery.hog.cause", s(&hog.cause)));
        points.push(Point { metric: &BAKERY_HOG_ACTIVE, attributes, value: 1.0 });
    }
    for (cause, count) in &diagnosis.verdicts_by_cause {
        points.push(Point {
            metric: &BAKERY_HOG_VERDICTS,
            attributes: vec![("bakery.hog.cause", s(cause))],
            value: *count as f64,
        });
    }
    for window in &diagnosis.open_windows {
        points.push(Point {
            metric: &BAKERY_WINDOW_ACTIVE,
            attributes: vec![("bakery.window.id", s(&window.id)), ("bakery.window.name", s(&window.name))],
            value: 1.0,
        });
    }
    ResourcePoints { instance: COLLECTOR_INSTANCE.to_string(), resource, points }
}

#[cfg(test)]
pub(crate) mod tests {
    use bakery_proto::v1::{
        Conntrack, CpuFrequency, Memory, NetInterface, PodSample, Pressure, TcpConnections, Temperature, Throttle,
    };

    use super::*;
    use crate::export::hooks::{HogView, ImbalanceView, ShareView, WindowView, Workload};
    use crate::export::self_metrics::AgentReporting;

    fn known_pods() -> HashMap<String, PodMeta> {
        let meta = PodMeta {
            name: "wordpress-7d9c-abcde".into(),
            namespace: "blog".into(),
            workload: Some(Workload { kind: "Deployment".into(), name: "wordpress".into() }),
        };
        HashMap::from([("uid-web".to_string(), meta)])
    }

    const CLUSTER: Option<&str> = Some("bakery");

    fn cpu(cpu: i32, user: u64, idle: u64) -> CpuTimes {
        CpuTimes { cpu, user, system: 10, idle, softirq: 5, ..Default::default() }
    }

    /// A sample with every signal the agent sends.
    fn full_sample(user: u64, idle: u64) -> Sample {
        let counters =
            NetCounters { rx_bytes: 123_456_789, tx_bytes: 1000, rx_packets: 7, tx_errors: 2, ..Default::default() };
        Sample {
            timestamp_ms: 1,
            cpu_total: Some(cpu(-1, user, idle)),
            cpu_cores: vec![cpu(0, user, idle), cpu(1, 150, 50)],
            memory: Some(Memory {
                total_bytes: 8000,
                available_bytes: 5000,
                free_bytes: 3000,
                buffers_bytes: 500,
                cached_bytes: 1500,
                ..Default::default()
            }),
            pressure: vec![Pressure {
                resource: "cpu".into(),
                kind: "some".into(),
                avg10: 12.5,
                total_us: 2_500_000,
                ..Default::default()
            }],
            temperatures: vec![Temperature {
                sensor: "thermal_zone0/cpu-thermal".into(),
                millidegrees_celsius: 81_250,
            }],
            cpu_frequencies: vec![CpuFrequency { cpu: 0, current_khz: 1_500_000, max_khz: 2_400_000 }],
            throttle: Some(Throttle {
                raw: 0x4,
                now: Some(ThrottleFlags { throttled: true, ..Default::default() }),
                since_boot: Some(ThrottleFlags::default()),
            }),
            interfaces: vec![NetInterface { name: "eth0".into(), counters: Some(counters), ..NetInterface::default() }],
            conntrack: Some(Conntrack { count: 42, max: 65536 }),
            pods: vec![PodSample {
                pod_ref: 3,
                network: Some(counters),
                tcp: Some(TcpConnections { established_inbound: 9, ..Default::default() }),
                cpu_usage_us: 1_500_000,
                memory_working_set_bytes: 64 << 20,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn snapshot() -> NodeSnapshot {
        let pod = PodRecord { uid: "uid-web".into(), qos_class: "burstable".into(), ..Default::default() };
        NodeSnapshot {
            name: "master-02".into(),
            latest: Some(full_sample(300, 700)),
            previous: Some(full_sample(200, 600)),
            pods: HashMap::from([(3, pod)]),
            clock_ticks_per_second: 100,
        }
    }

    fn find<'a>(points: &'a [Point], metric: &MetricSpec, attrs: &[(&str, &str)]) -> Vec<&'a Point> {
        points
            .iter()
            .filter(|p| p.metric.name == metric.name)
            .filter(|p| attrs.iter().all(|(k, v)| p.attributes.iter().any(|(pk, pv)| pk == k && pv.to_string() == *v)))
            .collect()
    }

    fn value(points: &[Point], metric: &MetricSpec, attrs: &[(&str, &str)]) -> f64 {
        let found = find(points, metric, attrs);
        assert_eq!(found.len(), 1, "{} {attrs:?}: {found:?}", metric.name);
        found[0].value
    }

    #[test]
    fn a_node_is_one_resource_with_its_identity() {
        let node = node_points(&snapshot(), CLUSTER);
        let resource: Vec<(&str, String)> = node.resource.iter().map(|(k, v)| (*k, v.to_string())).collect();
        for (key, expected) in [
            ("k8s.node.name", "master-02"),
            ("host.name", "master-02"),
            ("service.instance.id", "master-02"),
            ("k8s.cluster.name", "bakery"),
        ] {
            assert!(resource.contains(&(key, expected.to_string())), "{key} in {resource:?}");
        }
    }

    #[test]
    fn counters_are_converted_to_their_units() {
        let points = node_points(&snapshot(), CLUSTER).points;
        assert_eq!(value(&points, &SYSTEM_CPU_TIME, &[("cpu.mode", "user"), ("cpu.logical_number", "0")]), 3.0);
        assert_eq!(value(&points, &SYSTEM_CPU_TIME, &[("cpu.mode", "softirq"), ("cpu.logical_number", "1")]), 0.05);
        assert_eq!(value(&points, &SYSTEM_MEMORY_USAGE, &[("system.memory.state", "used")]), 3000.0);
        assert_eq!(
            value(
                &points,
                &SYSTEM_NETWORK_IO,
                &[("network.interface.name", "eth0"), ("network.io.direction", "receive")]
            ),
            123_456_789.0
        );
        assert_eq!(value(&points, &HW_TEMPERATURE, &[]), 81.25);
        assert_eq!(value(&points, &SYSTEM_CPU_FREQUENCY, &[]), 1.5e9);
        assert_eq!(value(&points, &HW_CPU_SPEED_LIMIT, &[]), 2.4e9);
        assert_eq!(value(&points, &BAKERY_PRESSURE_STALL_TIME, &[]), 2.5);
        assert_eq!(value(&points, &BAKERY_PRESSURE_AVG10, &[]), 0.125);
        assert_eq!(
            value(
                &points,
                &BAKERY_THROTTLE_FLAG,
                &[("bakery.throttle.flag", "throttled"), ("bakery.throttle.scope", "now")]
            ),
            1.0
        );
        assert_eq!(
            value(
                &points,
                &BAKERY_THROTTLE_FLAG,
                &[("bakery.throttle.flag", "throttled"), ("bakery.throttle.scope", "since_boot")]
            ),
            0.0
        );
        assert_eq!(value(&points, &BAKERY_CONNTRACK_ENTRIES, &[]), 42.0);
    }

    #[test]
    fn memory_used_is_total_minus_available_not_total_minus_free_and_cache() {
        let mut node = snapshot();
        let memory = Memory {
            total_bytes: 8000,
            available_bytes: 6000,
            free_bytes: 1000,
            buffers_bytes: 500,
            cached_bytes: 1500,
            ..Default::default()
        };
        node.latest.as_mut().expect("a sample").memory = Some(memory);
        let points = node_points(&node, CLUSTER).points;
        // MemTotal - MemAvailable; total - free - buffers - cached would say 5000.
        assert_eq!(value(&points, &SYSTEM_MEMORY_USAGE, &[("system.memory.state", "used")]), 2000.0);
        assert_eq!(value(&points, &SYSTEM_MEMORY_LINUX_AVAILABLE, &[]), 6000.0);
    }

    #[test]
    fn utilization_is_the_share_of_time_between_the_last_two_samples() {
        let points = node_points(&snapshot(), CLUSTER).points;
        // user +100, idle +100 of 200 jiffies.
        assert_eq!(value(&points, &SYSTEM_CPU_UTILIZATION, &[("cpu.mode", "user")]), 0.5);
        assert_eq!(value(&points, &SYSTEM_CPU_UTILIZATION, &[("cpu.mode", "softirq")]), 0.0);
        let mut rebooted = snapshot();
        rebooted.previous = Some(full_sample(9000, 9000));
        let points = node_points(&rebooted, CLUSTER).points;
        assert!(find(&points, &SYSTEM_CPU_UTILIZATION, &[]).is_empty(), "a counter reset yields no utilization");
    }

    #[test]
    fn each_pod_is_its_own_resource_with_its_identity_and_node() {
        let pods = pod_resources(&snapshot(), CLUSTER, &known_pods());
        assert_eq!(pods.len(), 1);
        let pod = &pods[0];
        assert_eq!(pod.instance, "uid-web");
        let resource: Vec<(&str, String)> = pod.resource.iter().map(|(k, v)| (*k, v.to_string())).collect();
        for (key, expected) in [
            ("k8s.pod.uid", "uid-web"),
            ("k8s.pod.name", "wordpress-7d9c-abcde"),
            ("k8s.namespace.name", "blog"),
            ("k8s.deployment.name", "wordpress"),
            ("bakery.workload.name", "wordpress"),
            ("k8s.node.name", "master-02"),
            ("k8s.cluster.name", "bakery"),
            ("service.instance.id", "uid-web"),
        ] {
            assert!(resource.contains(&(key, expected.to_string())), "{key} in {resource:?}");
        }
        let points = &pod.points;
        assert_eq!(value(points, &K8S_POD_NETWORK_IO, &[("network.io.direction", "receive")]), 123_456_789.0);
        assert_eq!(value(points, &K8S_POD_CPU_TIME, &[]), 1.5);
        let established = [("network.connection.state", "established"), ("bakery.connection.direction", "inbound")];
        assert_eq!(value(points, &BAKERY_POD_TCP_CONNECTIONS, &established), 9.0);
        assert!(
            points.iter().all(|p| p.attributes.iter().all(|(k, _)| !k.starts_with("k8s."))),
            "the pod's identity is on its resource, not on its points: {points:?}"
        );
        let node = node_points(&snapshot(), CLUSTER);
        assert!(node.points.iter().all(|p| !p.metric.name.starts_with("k8s.pod.")), "no pod series on the node");
        let unknown = pod_resources(&snapshot(), CLUSTER, &HashMap::new());
        assert!(unknown[0].resource.iter().any(|(k, v)| *k == "k8s.pod.uid" && v.to_string() == "uid-web"));
        assert!(!unknown[0].resource.iter().any(|(k, _)| *k == "k8s.pod.name"), "no name without Kubernetes");
    }

    /// One node with every signal, a known pod and a diagnosis with every kind of series.
    pub(crate) fn example_resources() -> Vec<ResourcePoints> {
        let diagnosis = DiagnosisView {
            shares: vec![ShareView {
                node: "master-02".into(),
                namespace: "blog".into(),
                workload: "wordpress".into(),
                observed: 0.6,
                expected: 0.33,
            }],
            imbalance: vec![ImbalanceView { namespace: "blog".into(), workload: "wordpress".into(), score: 1.8 }],
            active_hogs: vec![HogView {
                node: "master-02".into(),
                namespace: "blog".into(),
                workload: "wordpress".into(),
                cause: "metallb_l2_announcer".into(),
            }],
            verdicts_by_cause: vec![("metallb_l2_announcer".into(), 2)],
            open_windows: vec![WindowView { id: "w-1".into(), name: "oha".into(), started_ms: 1 }],
        };
        let feed = FeedSnapshot { pods: known_pods(), diagnosis };
        let mut resources = all_points(&[snapshot()], CLUSTER, &feed, 3);
        let collector = resources.last_mut().expect("the collector's resource");
        collector.points.extend(refusal_points(&[("wrong_node", 2), ("missing_role", 0)]));
        collector.points.extend(ingest_refusal_points(&[("seq_beyond_bound", 1), ("node_cap", 0)]));
        let agents = [("master-02", true), ("worker-01", false)];
        collector.points.extend(super::super::self_metrics::agent_points(
            &agents.map(|(node, reporting)| AgentReporting { node: node.into(), reporting }),
        ));
        collector.points.extend(super::super::self_metrics::commit_points(Some(1_790_000_000_500), 1));
        resources
    }

    #[test]
    fn every_catalogued_metric_is_produced_by_a_full_sample_and_a_diagnosis() {
        let resources = example_resources();
        for metric in ALL {
            assert!(
                resources.iter().flat_map(|r| &r.points).any(|p| p.metric.name == metric.name),
                "{} is catalogued but never produced",
                metric.name
            );
        }
        let instances: Vec<&str> = resources.iter().map(|r| r.instance.as_str()).collect();
        assert_eq!(instances, ["master-02", "uid-web", COLLECTOR_INSTANCE], "a node, its pod, the collector");
        let collector = &resources[2];
        assert_eq!(value(&collector.points, &BAKERY_EXPORT_DROPPED, &[]), 3.0);
        assert_eq!(value(&collector.points, &BAKERY_COLLECTOR_AUTH_REFUSALS, &[("cause", "wrong_node")]), 2.0);
        assert_eq!(value(&collector.points, &BAKERY_COLLECTOR_INGEST_REFUSALS, &[("cause", "seq_beyond_bound")]), 1.0);
        assert_eq!(
            value(
                &collector.points,
                &BAKERY_HOG_ACTIVE,
                &[("bakery.hog.cause", "metallb_l2_announcer"), ("k8s.node.name", "master-02")]
            ),
            1.0
        );
    }
}
