//! The edge between the agent's domain types and the wire: converts a
//! [`Sample`] into `bakery_proto::v1` messages, numbers pods (`pod_ref`) and
//! decides which pod identities a stream still has to be told about.
//!
//! Two rules from the stream contract (point 4) shape this module:
//! - every spooled [`pb::Batch`] is self-contained: its `new_pods` lists every
//!   identity its samples reference, so it can be sent on any stream, also
//!   after an agent restart replays it from the disk spool;
//! - on one stream an identity is declared once: [`DeclaredPods`] strips the
//!   identities the current stream already knows just before sending.

use std::collections::{HashMap, HashSet};

use bakery_proto::v1 as pb;

use crate::conntrack::Conntrack;
use crate::cpu::{CoreTimes, CpuStat, CpuTimes};
use crate::cpufreq::CpuFrequency;
use crate::iface_kind::InterfaceKind;
use crate::memory::Memory;
use crate::net::{Interface, NetCounters};
use crate::pods::{Pod, PodIdentity, QosClass, TcpConnections};
use crate::pressure::{Pressure, Resource, Stall};
use crate::sampler::Sample;
use crate::signal::Unavailable;
use crate::thermal::{Fan, Temperature, Thermals, VoltageAlarm};
use crate::throttle::{Throttle, ThrottleFlags};

/// `CpuTimes.cpu` of the node total on the wire (cores use their number).
pub const CPU_TOTAL: i32 = -1;

/// A pod not seen for this long is forgotten by [`PodRefs`], so a node with
/// many short-lived pods (CronJobs) does not grow the table forever. Pod UIDs
/// are never reused by Kubernetes, and numbers are never handed out twice, so
/// forgetting cannot make two pods share a number.
pub const FORGET_POD_AFTER_MS: i64 = 60 * 60 * 1000;

/// Numbers pods: one stable `pod_ref` per pod UID for as long as the agent
/// runs and keeps seeing the pod.
#[derive(Debug, Default)]
pub struct PodRefs {
    by_uid: HashMap<String, KnownPod>,
    next_ref: u32,
    batches_since_prune: u32,
}

#[derive(Debug)]
struct KnownPod {
    pod_ref: u32,
    last_seen_ms: i64,
}

impl PodRefs {
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of the pod with this UID, assigning the next free one to a
    /// pod seen for the first time.
    pub fn pod_ref(&mut self, uid: &str, seen_at_ms: i64) -> u32 {
        if let Some(known) = self.by_uid.get_mut(uid) {
            known.last_seen_ms = known.last_seen_ms.max(seen_at_ms);
            return known.pod_ref;
        }
        let pod_ref = self.next_ref;
        self.next_ref = self.next_ref.wrapping_add(1);
        self.by_uid.insert(uid.to_string(), KnownPod { pod_ref, last_seen_ms: seen_at_ms });
        pod_ref
    }

    /// Adopts a numbering found in the disk spool after a restart, so that
    /// replayed batches and new ones agree on every pod's number.
    pub fn adopt(&mut self, identity: &pb::PodIdentity, seen_at_ms: i64) {
        if self.by_uid.contains_key(&identity.uid) {
            return;
        }
        self.next_ref = self.next_ref.max(identity.pod_ref.saturating_add(1));
        self.by_uid.insert(identity.uid.clone(), KnownPod { pod_ref: identity.pod_ref, last_seen_ms: seen_at_ms });
    }

    /// How many pods are currently numbered.
    pub fn len(&self) -> usize {
        self.by_uid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_uid.is_empty()
    }

    /// Forgets pods unseen for [`FORGET_POD_AFTER_MS`] before `now_ms`.
    pub fn forget_stale(&mut self, now_ms: i64) {
        self.by_uid.retain(|_, known| now_ms.saturating_sub(known.last_seen_ms) < FORGET_POD_AFTER_MS);
    }

    /// Checks for stale pods every few hundred batches: cheap enough to call
    /// once per batch.
    fn maybe_forget_stale(&mut self, now_ms: i64) {
        self.batches_since_prune += 1;
        if self.batches_since_prune >= 256 {
            self.batches_since_prune = 0;
            self.forget_stale(now_ms);
        }
    }
}

/// A self-contained batch (sequence number still 0: the spool assigns it)
/// holding `samples`, with every pod identity they reference in `new_pods`.
pub fn batch(samples: &[Sample], refs: &mut PodRefs) -> pb::Batch {
    let mut new_pods = Vec::new();
    let mut listed = HashSet::new();
    let mut wire_samples = Vec::with_capacity(samples.len());
    for sample in samples {
        for pod in &sample.pods {
            let pod_ref = refs.pod_ref(&pod.identity.uid, sample.timestamp_ms);
            if listed.insert(pod_ref) {
                new_pods.push(pod_identity(pod_ref, &pod.identity));
            }
        }
        wire_samples.push(sample_to_wire(sample, refs));
    }
    if let Some(last) = samples.last() {
        refs.maybe_forget_stale(last.timestamp_ms);
    }
    pb::Batch { seq: 0, new_pods, samples: wire_samples }
}

/// The identities one stream has been told about, so each is declared once
/// per stream (contract point 4). A new stream starts with a new, empty set.
#[derive(Debug, Default)]
pub struct DeclaredPods {
    by_ref: HashMap<u32, pb::PodIdentity>,
}

/// Past this many declared pods the set is cleared: redeclaring is allowed
/// and costs only bytes, while the set must not grow for months on a node
/// with pod churn.
const MAX_DECLARED_PODS: usize = 4096;

impl DeclaredPods {
    pub fn new() -> Self {
        Self::default()
    }

    /// Removes from `batch.new_pods` the identities this stream already
    /// knows, and remembers the others as declared. An identity that differs
    /// from the one declared under the same number is kept (and replaces it).
    pub fn strip_declared(&mut self, batch: &mut pb::Batch) {
        if self.by_ref.len() > MAX_DECLARED_PODS {
            self.by_ref.clear();
        }
        batch.new_pods.retain(|identity| {
            if self.by_ref.get(&identity.pod_ref) == Some(identity) {
                false
            } else {
                self.by_ref.insert(identity.pod_ref, identity.clone());
                true
            }
        });
    }

    pub fn len(&self) -> usize {
        self.by_ref.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_ref.is_empty()
    }
}

/// One sample on the wire. Pods are referenced by number; their identities
/// travel in the batch (see [`batch`]). The node name is not repeated: the
/// stream's Hello carries it.
pub fn sample_to_wire(sample: &Sample, refs: &mut PodRefs) -> pb::Sample {
    // Destructured so that a field added to the domain type fails to compile
    // here until it is mapped (or deliberately left off the wire).
    let Sample {
        node_name: _,
        timestamp_ms,
        cpu,
        memory,
        pressure,
        // For people reading `--once`: the figures themselves are the
        // node's either way, and the collector needs no more.
        node_cgroup: _,
        thermals,
        cpu_frequencies,
        throttle,
        interfaces,
        conntrack,
        pods,
        unavailable,
        parse_errors_total,
    } = sample;
    let Thermals { temperatures, fans, voltage_alarms } = thermals;
    pb::Sample {
        timestamp_ms: *timestamp_ms,
        cpu_total: cpu.as_ref().map(|stat| cpu_times(CPU_TOTAL, &stat.total)),
        cpu_cores: cpu.as_ref().map(cpu_cores).unwrap_or_default(),
        memory: memory.as_ref().map(memory_to_wire),
        pressure: pressure.iter().map(pressure_to_wire).collect(),
        temperatures: temperatures.iter().map(temperature).collect(),
        fans: fans.iter().map(fan).collect(),
        cpu_frequencies: cpu_frequencies.iter().map(cpu_frequency).collect(),
        throttle: throttle.as_ref().map(throttle_to_wire),
        interfaces: interfaces.iter().map(interface).collect(),
        conntrack: conntrack.as_ref().map(conntrack_to_wire),
        pods: pods.iter().map(|pod| pod_sample(refs.pod_ref(&pod.identity.uid, *timestamp_ms), pod)).collect(),
        unavailable: unavailable.iter().map(unavailable_to_wire).collect(),
        parse_errors_total: *parse_errors_total,
        voltage_alarms: voltage_alarms.iter().map(voltage_alarm).collect(),
    }
}

fn cpu_cores(stat: &CpuStat) -> Vec<pb::CpuTimes> {
    let CpuStat { total: _, cores } = stat;
    cores.iter().map(|CoreTimes { cpu, times }| cpu_times(i32::try_from(*cpu).unwrap_or(i32::MAX), times)).collect()
}

fn cpu_times(cpu: i32, times: &CpuTimes) -> pb::CpuTimes {
    let CpuTimes { user, nice, system, idle, iowait, irq, softirq, steal } = *times;
    pb::CpuTimes { cpu, user, nice, system, idle, iowait, irq, softirq, steal }
}

fn memory_to_wire(memory: &Memory) -> pb::Memory {
    let Memory {
        total_bytes,
        available_bytes,
        free_bytes,
        buffers_bytes,
        cached_bytes,
        swap_total_bytes,
        swap_free_bytes,
    } = *memory;
    pb::Memory {
        total_bytes,
        available_bytes,
        free_bytes,
        buffers_bytes,
        cached_bytes,
        swap_total_bytes,
        swap_free_bytes,
    }
}

/// The resource names of `/proc/pressure/<resource>` (kernel
/// Documentation/accounting/psi.rst), as the proto documents them.
pub fn resource_name(resource: Resource) -> &'static str {
    match resource {
        Resource::Cpu => "cpu",
        Resource::Memory => "memory",
        Resource::Io => "io",
    }
}

/// "some" or "full", the first word of a PSI line.
pub fn stall_name(stall: Stall) -> &'static str {
    match stall {
        Stall::Some => "some",
        Stall::Full => "full",
    }
}

fn pressure_to_wire(pressure: &Pressure) -> pb::Pressure {
    let Pressure { resource, stall, avg10, avg60, avg300, total_us } = *pressure;
    pb::Pressure {
        resource: resource_name(resource).to_string(),
        kind: stall_name(stall).to_string(),
        avg10,
        avg60,
        avg300,
        total_us,
    }
}

fn temperature(temperature: &Temperature) -> pb::Temperature {
    let Temperature { sensor, millidegrees_celsius } = temperature;
    pb::Temperature { sensor: sensor.clone(), millidegrees_celsius: *millidegrees_celsius }
}

fn fan(fan: &Fan) -> pb::Fan {
    let Fan { sensor, rpm } = fan;
    pb::Fan { sensor: sensor.clone(), rpm: *rpm }
}

fn voltage_alarm(alarm: &VoltageAlarm) -> pb::VoltageAlarm {
    let VoltageAlarm { sensor, active } = alarm;
    pb::VoltageAlarm { sensor: sensor.clone(), active: *active }
}

fn cpu_frequency(frequency: &CpuFrequency) -> pb::CpuFrequency {
    let CpuFrequency { cpu, current_khz, max_khz } = *frequency;
    pb::CpuFrequency { cpu, current_khz, max_khz }
}

fn throttle_to_wire(throttle: &Throttle) -> pb::Throttle {
    let Throttle { raw, now, since_boot } = *throttle;
    pb::Throttle { raw, now: Some(throttle_flags(now)), since_boot: Some(throttle_flags(since_boot)) }
}

fn throttle_flags(flags: ThrottleFlags) -> pb::ThrottleFlags {
    let ThrottleFlags { under_voltage, arm_frequency_capped, throttled, soft_temperature_limit } = flags;
    pb::ThrottleFlags { under_voltage, arm_frequency_capped, throttled, soft_temperature_limit }
}

fn interface(interface: &Interface) -> pb::NetInterface {
    let Interface { name, kind, master, counters } = interface;
    pb::NetInterface {
        name: name.clone(),
        counters: Some(net_counters(counters)),
        kind: interface_kind(*kind).into(),
        master: master.as_deref().unwrap_or_default().to_string(),
    }
}

/// The wire's name for each kind (the proto documents them).
pub fn interface_kind(kind: InterfaceKind) -> pb::InterfaceKind {
    match kind {
        InterfaceKind::Unspecified => pb::InterfaceKind::Unspecified,
        InterfaceKind::Physical => pb::InterfaceKind::Physical,
        InterfaceKind::Bond => pb::InterfaceKind::Bond,
        InterfaceKind::Bridge => pb::InterfaceKind::Bridge,
        InterfaceKind::Stacked => pb::InterfaceKind::Stacked,
        InterfaceKind::Loopback => pb::InterfaceKind::Loopback,
        InterfaceKind::PodVeth => pb::InterfaceKind::PodVeth,
        InterfaceKind::Veth => pb::InterfaceKind::Veth,
        InterfaceKind::Tunnel => pb::InterfaceKind::Tunnel,
        InterfaceKind::Virtual => pb::InterfaceKind::Virtual,
    }
}

fn net_counters(counters: &NetCounters) -> pb::NetCounters {
    let NetCounters { rx_bytes, rx_packets, rx_errors, rx_dropped, tx_bytes, tx_packets, tx_errors, tx_dropped } =
        *counters;
    pb::NetCounters { rx_bytes, rx_packets, rx_errors, rx_dropped, tx_bytes, tx_packets, tx_errors, tx_dropped }
}

fn conntrack_to_wire(conntrack: &Conntrack) -> pb::Conntrack {
    let Conntrack { count, max } = *conntrack;
    pb::Conntrack { count, max }
}

/// The QoS class names the proto documents (lowercase, as in the kubepods
/// cgroup levels).
pub fn qos_class_name(qos: QosClass) -> &'static str {
    match qos {
        QosClass::Guaranteed => "guaranteed",
        QosClass::Burstable => "burstable",
        QosClass::BestEffort => "besteffort",
    }
}

/// A pod's identity under its number.
pub fn pod_identity(pod_ref: u32, identity: &PodIdentity) -> pb::PodIdentity {
    let PodIdentity { uid, qos_class, cgroup_path, host_network } = identity;
    pb::PodIdentity {
        pod_ref,
        uid: uid.clone(),
        qos_class: qos_class_name(*qos_class).to_string(),
        cgroup_path: cgroup_path.clone(),
        host_network: *host_network,
    }
}

/// One pod's reading. The proto (v1) has no presence for the cgroup
/// figures, so an unreadable CPU time or working set goes out as 0, which a
/// receiver must read as "unknown" (a pod cgroup that exists has used some
/// CPU time and memory).
fn pod_sample(pod_ref: u32, pod: &Pod) -> pb::PodSample {
    let Pod { identity: _, network, tcp, cpu_usage_us, memory_working_set_bytes, process_count } = pod;
    pb::PodSample {
        pod_ref,
        network: network.as_ref().map(net_counters),
        tcp: tcp.as_ref().map(tcp_connections),
        cpu_usage_us: cpu_usage_us.unwrap_or(0),
        memory_working_set_bytes: memory_working_set_bytes.unwrap_or(0),
        process_count: *process_count,
    }
}

fn tcp_connections(tcp: &TcpConnections) -> pb::TcpConnections {
    let TcpConnections {
        established_inbound,
        established_outbound,
        listen,
        time_wait,
        close_wait,
        syn_recv,
        other,
        inbound_peers,
        detail_age_ms,
        established,
        in_use,
        time_wait_now,
        active_opens_total,
        passive_opens_total,
        attempt_fails_total,
        estab_resets_total,
        in_segments_total,
        out_segments_total,
        retransmitted_segments_total,
    } = *tcp;
    pb::TcpConnections {
        established_inbound,
        established_outbound,
        listen,
        time_wait,
        close_wait,
        syn_recv,
        other,
        detail_age_ms,
        established,
        in_use,
        time_wait_now,
        active_opens_total,
        passive_opens_total,
        attempt_fails_total,
        estab_resets_total,
        in_segments_total,
        out_segments_total,
        retransmitted_segments_total,
        inbound_peers,
    }
}

fn unavailable_to_wire(unavailable: &Unavailable) -> pb::Unavailable {
    let Unavailable { signal, reason } = unavailable;
    pb::Unavailable { signal: signal.clone(), reason: reason.clone() }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    /// A sample with a distinct, non-default value in every field, so that
    /// a field dropped or swapped by the conversion shows in the round trip.
    fn full_sample() -> Sample {
        let times = |base: u64| CpuTimes {
            user: base + 1,
            nice: base + 2,
            system: base + 3,
            idle: base + 4,
            iowait: base + 5,
            irq: base + 6,
            softirq: base + 7,
            steal: base + 8,
        };
        let counters = |base: u64| NetCounters {
            rx_bytes: base + 1,
            rx_packets: base + 2,
            rx_errors: base + 3,
            rx_dropped: base + 4,
            tx_bytes: base + 5,
            tx_packets: base + 6,
            tx_errors: base + 7,
            tx_dropped: base + 8,
        };
        Sample {
            node_name: "master-02".to_string(),
            timestamp_ms: 1_767_225_600_123,
            cpu: Some(CpuStat {
                total: times(1000),
                cores: vec![CoreTimes { cpu: 0, times: times(100) }, CoreTimes { cpu: 3, times: times(300) }],
            }),
            memory: Some(Memory {
                total_bytes: 8_000_000_000,
                available_bytes: 5_000_000_000,
                free_bytes: 1_000_000_000,
                buffers_bytes: 100_000_000,
                cached_bytes: 2_000_000_000,
                swap_total_bytes: 512_000_000,
                swap_free_bytes: 256_000_000,
            }),
            // Not on the wire: see sample_to_wire.
            node_cgroup: None,
            pressure: vec![
                Pressure {
                    resource: Resource::Cpu,
                    stall: Stall::Some,
                    avg10: 1.5,
                    avg60: 2.25,
                    avg300: 3.0,
                    total_us: 123_456,
                },
                Pressure {
                    resource: Resource::Memory,
                    stall: Stall::Full,
                    avg10: 0.5,
                    avg60: 0.25,
                    avg300: 0.125,
                    total_us: 789,
                },
                Pressure {
                    resource: Resource::Io,
                    stall: Stall::Some,
                    avg10: 9.0,
                    avg60: 8.0,
                    avg300: 7.0,
                    total_us: 42,
                },
            ],
            thermals: Thermals {
                temperatures: vec![
                    Temperature { sensor: "thermal_zone0/cpu-thermal".into(), millidegrees_celsius: 81_250 },
                    Temperature { sensor: "hwmon0/cold/temp1".into(), millidegrees_celsius: -5_000 },
                ],
                fans: vec![Fan { sensor: "hwmon2/pwmfan/fan1".into(), rpm: 3_100 }],
                voltage_alarms: vec![VoltageAlarm { sensor: "hwmon1/rpi_volt/in0_lcrit_alarm".into(), active: true }],
            },
            cpu_frequencies: vec![CpuFrequency { cpu: 2, current_khz: 1_500_000, max_khz: 2_400_000 }],
            throttle: Some(Throttle {
                raw: 0x5_0005,
                now: ThrottleFlags {
                    under_voltage: true,
                    arm_frequency_capped: false,
                    throttled: true,
                    soft_temperature_limit: false,
                },
                since_boot: ThrottleFlags {
                    under_voltage: false,
                    arm_frequency_capped: true,
                    throttled: false,
                    soft_temperature_limit: true,
                },
            }),
            interfaces: vec![
                Interface {
                    name: "eth0".into(),
                    kind: InterfaceKind::Physical,
                    master: Some("bond0".into()),
                    counters: counters(10_000),
                },
                Interface { name: "bond0".into(), kind: InterfaceKind::Bond, master: None, counters: counters(20_000) },
            ],
            conntrack: Some(Conntrack { count: 1_234, max: 65_536 }),
            pods: vec![
                Pod {
                    identity: PodIdentity {
                        uid: "8a7c4d5e-0000-4000-8000-000000000001".into(),
                        qos_class: QosClass::Burstable,
                        cgroup_path: "/kubepods/burstable/pod8a7c4d5e-0000-4000-8000-000000000001".into(),
                        host_network: false,
                    },
                    network: Some(counters(500)),
                    tcp: Some(TcpConnections {
                        established_inbound: 11,
                        established_outbound: 12,
                        listen: 13,
                        time_wait: 14,
                        close_wait: 15,
                        syn_recv: 16,
                        other: 17,
                        inbound_peers: 29,
                        detail_age_ms: Some(18),
                        established: 19,
                        in_use: 20,
                        time_wait_now: 21,
                        active_opens_total: 22,
                        passive_opens_total: 23,
                        attempt_fails_total: 24,
                        estab_resets_total: 25,
                        in_segments_total: 26,
                        out_segments_total: 27,
                        retransmitted_segments_total: 28,
                    }),
                    cpu_usage_us: Some(9_876_543),
                    memory_working_set_bytes: Some(123_000_000),
                    process_count: 4,
                },
                Pod {
                    identity: PodIdentity {
                        uid: "8a7c4d5e-0000-4000-8000-000000000002".into(),
                        qos_class: QosClass::Guaranteed,
                        cgroup_path: "/kubepods/pod8a7c4d5e-0000-4000-8000-000000000002".into(),
                        host_network: true,
                    },
                    network: None,
                    tcp: None,
                    cpu_usage_us: Some(5),
                    memory_working_set_bytes: Some(6),
                    process_count: 1,
                },
            ],
            unavailable: vec![Unavailable { signal: "conntrack".into(), reason: "module not loaded".into() }],
            parse_errors_total: 3,
        }
    }

    fn resource_from_name(name: &str) -> Resource {
        match name {
            "cpu" => Resource::Cpu,
            "memory" => Resource::Memory,
            "io" => Resource::Io,
            other => panic!("unknown resource {other}"),
        }
    }

    fn qos_from_name(name: &str) -> QosClass {
        match name {
            "guaranteed" => QosClass::Guaranteed,
            "burstable" => QosClass::Burstable,
            "besteffort" => QosClass::BestEffort,
            other => panic!("unknown qos {other}"),
        }
    }

    fn times_back(t: &pb::CpuTimes) -> CpuTimes {
        CpuTimes {
            user: t.user,
            nice: t.nice,
            system: t.system,
            idle: t.idle,
            iowait: t.iowait,
            irq: t.irq,
            softirq: t.softirq,
            steal: t.steal,
        }
    }

    fn counters_back(c: &pb::NetCounters) -> NetCounters {
        NetCounters {
            rx_bytes: c.rx_bytes,
            rx_packets: c.rx_packets,
            rx_errors: c.rx_errors,
            rx_dropped: c.rx_dropped,
            tx_bytes: c.tx_bytes,
            tx_packets: c.tx_packets,
            tx_errors: c.tx_errors,
            tx_dropped: c.tx_dropped,
        }
    }

    /// Written out, not derived from [`interface_kind`], so that a kind
    /// mapped to the wrong variant fails the round trip.
    fn kind_back(kind: pb::InterfaceKind) -> InterfaceKind {
        match kind {
            pb::InterfaceKind::Unspecified => InterfaceKind::Unspecified,
            pb::InterfaceKind::Physical => InterfaceKind::Physical,
            pb::InterfaceKind::Bond => InterfaceKind::Bond,
            pb::InterfaceKind::Bridge => InterfaceKind::Bridge,
            pb::InterfaceKind::Stacked => InterfaceKind::Stacked,
            pb::InterfaceKind::Loopback => InterfaceKind::Loopback,
            pb::InterfaceKind::PodVeth => InterfaceKind::PodVeth,
            pb::InterfaceKind::Veth => InterfaceKind::Veth,
            pb::InterfaceKind::Tunnel => InterfaceKind::Tunnel,
            pb::InterfaceKind::Virtual => InterfaceKind::Virtual,
        }
    }

    fn flags_back(f: &pb::ThrottleFlags) -> ThrottleFlags {
        ThrottleFlags {
            under_voltage: f.under_voltage,
            arm_frequency_capped: f.arm_frequency_capped,
            throttled: f.throttled,
            soft_temperature_limit: f.soft_temperature_limit,
        }
    }

    /// The inverse of [`sample_to_wire`], as a receiver would decode it: the
    /// round trip through it proves every field reaches the wire intact.
    fn sample_back(node_name: &str, s: &pb::Sample, identities: &HashMap<u32, pb::PodIdentity>) -> Sample {
        Sample {
            node_name: node_name.to_string(),
            timestamp_ms: s.timestamp_ms,
            cpu: s.cpu_total.as_ref().map(|total| {
                assert_eq!(total.cpu, CPU_TOTAL);
                CpuStat {
                    total: times_back(total),
                    cores: s
                        .cpu_cores
                        .iter()
                        .map(|c| CoreTimes { cpu: u32::try_from(c.cpu).unwrap(), times: times_back(c) })
                        .collect(),
                }
            }),
            memory: s.memory.as_ref().map(|m| Memory {
                total_bytes: m.total_bytes,
                available_bytes: m.available_bytes,
                free_bytes: m.free_bytes,
                buffers_bytes: m.buffers_bytes,
                cached_bytes: m.cached_bytes,
                swap_total_bytes: m.swap_total_bytes,
                swap_free_bytes: m.swap_free_bytes,
            }),
            node_cgroup: None,
            pressure: s
                .pressure
                .iter()
                .map(|p| Pressure {
                    resource: resource_from_name(&p.resource),
                    stall: if p.kind == "full" { Stall::Full } else { Stall::Some },
                    avg10: p.avg10,
                    avg60: p.avg60,
                    avg300: p.avg300,
                    total_us: p.total_us,
                })
                .collect(),
            thermals: Thermals {
                temperatures: s
                    .temperatures
                    .iter()
                    .map(|t| Temperature { sensor: t.sensor.clone(), millidegrees_celsius: t.millidegrees_celsius })
                    .collect(),
                fans: s.fans.iter().map(|f| Fan { sensor: f.sensor.clone(), rpm: f.rpm }).collect(),
                voltage_alarms: s
                    .voltage_alarms
                    .iter()
                    .map(|v| VoltageAlarm { sensor: v.sensor.clone(), active: v.active })
                    .collect(),
            },
            cpu_frequencies: s
                .cpu_frequencies
                .iter()
                .map(|f| CpuFrequency { cpu: f.cpu, current_khz: f.current_khz, max_khz: f.max_khz })
                .collect(),
            throttle: s.throttle.as_ref().map(|t| Throttle {
                raw: t.raw,
                now: flags_back(t.now.as_ref().unwrap()),
                since_boot: flags_back(t.since_boot.as_ref().unwrap()),
            }),
            interfaces: s
                .interfaces
                .iter()
                .map(|i| Interface {
                    name: i.name.clone(),
                    kind: kind_back(i.kind()),
                    master: Some(i.master.as_str()).filter(|master| !master.is_empty()).map(Into::into),
                    counters: counters_back(i.counters.as_ref().unwrap()),
                })
                .collect(),
            conntrack: s.conntrack.as_ref().map(|c| Conntrack { count: c.count, max: c.max }),
            pods: s
                .pods
                .iter()
                .map(|p| {
                    let id = &identities[&p.pod_ref];
                    Pod {
                        identity: PodIdentity {
                            uid: id.uid.clone(),
                            qos_class: qos_from_name(&id.qos_class),
                            cgroup_path: id.cgroup_path.clone(),
                            host_network: id.host_network,
                        },
                        network: p.network.as_ref().map(counters_back),
                        tcp: p.tcp.as_ref().map(|t| TcpConnections {
                            established_inbound: t.established_inbound,
                            established_outbound: t.established_outbound,
                            listen: t.listen,
                            time_wait: t.time_wait,
                            close_wait: t.close_wait,
                            syn_recv: t.syn_recv,
                            other: t.other,
                            inbound_peers: t.inbound_peers,
                            detail_age_ms: t.detail_age_ms,
                            established: t.established,
                            in_use: t.in_use,
                            time_wait_now: t.time_wait_now,
                            active_opens_total: t.active_opens_total,
                            passive_opens_total: t.passive_opens_total,
                            attempt_fails_total: t.attempt_fails_total,
                            estab_resets_total: t.estab_resets_total,
                            in_segments_total: t.in_segments_total,
                            out_segments_total: t.out_segments_total,
                            retransmitted_segments_total: t.retransmitted_segments_total,
                        }),
                        cpu_usage_us: Some(p.cpu_usage_us),
                        memory_working_set_bytes: Some(p.memory_working_set_bytes),
                        process_count: p.process_count,
                    }
                })
                .collect(),
            unavailable: s
                .unavailable
                .iter()
                .map(|u| Unavailable { signal: u.signal.clone(), reason: u.reason.clone() })
                .collect(),
            parse_errors_total: s.parse_errors_total,
        }
    }

    #[test]
    fn a_full_sample_survives_the_round_trip_through_the_encoded_wire_form() {
        let sample = full_sample();
        let mut refs = PodRefs::new();
        let wire = batch(std::slice::from_ref(&sample), &mut refs);
        let decoded = pb::Batch::decode(wire.encode_to_vec().as_slice()).unwrap();
        let identities: HashMap<u32, pb::PodIdentity> =
            decoded.new_pods.iter().map(|id| (id.pod_ref, id.clone())).collect();
        assert_eq!(decoded.samples.len(), 1);
        assert_eq!(sample_back("master-02", &decoded.samples[0], &identities), sample);
    }

    #[test]
    fn fields_land_where_the_proto_documents_them() {
        let mut refs = PodRefs::new();
        let wire = sample_to_wire(&full_sample(), &mut refs);
        let total = wire.cpu_total.as_ref().unwrap();
        assert_eq!((total.cpu, total.user, total.steal), (-1, 1001, 1008));
        assert_eq!(wire.cpu_cores.iter().map(|c| c.cpu).collect::<Vec<_>>(), [0, 3]);
        assert_eq!(wire.cpu_cores[1].idle, 304);
        let kinds: Vec<(&str, &str)> = wire.pressure.iter().map(|p| (p.resource.as_str(), p.kind.as_str())).collect();
        assert_eq!(kinds, [("cpu", "some"), ("memory", "full"), ("io", "some")]);
        assert_eq!(wire.temperatures[1].millidegrees_celsius, -5_000);
        assert_eq!(wire.fans[0].rpm, 3_100);
        assert!(wire.voltage_alarms[0].active);
        let throttle = wire.throttle.as_ref().unwrap();
        assert_eq!(throttle.raw, 0x5_0005);
        assert!(throttle.now.as_ref().unwrap().under_voltage);
        assert!(throttle.since_boot.as_ref().unwrap().soft_temperature_limit);
        assert_eq!(wire.interfaces[0].counters.as_ref().unwrap().tx_dropped, 10_008);
        let kinds: Vec<(i32, &str)> = wire.interfaces.iter().map(|i| (i.kind, i.master.as_str())).collect();
        // INTERFACE_KIND_PHYSICAL = 1, INTERFACE_KIND_BOND = 2; no master is "".
        assert_eq!(kinds, [(1, "bond0"), (2, "")]);
        assert_eq!(wire.conntrack, Some(pb::Conntrack { count: 1_234, max: 65_536 }));
        assert_eq!(wire.pods[0].tcp.as_ref().unwrap().syn_recv, 16);
        assert_eq!(wire.pods[0].tcp.as_ref().unwrap().inbound_peers, 29);
        assert_eq!(wire.pods[0].cpu_usage_us, 9_876_543);
        assert_eq!(wire.pods[1].network, None, "a hostNetwork pod has no network of its own");
        assert_eq!(wire.unavailable[0].signal, "conntrack");
        assert_eq!(wire.parse_errors_total, 3);
    }

    #[test]
    fn each_interface_kind_has_the_number_the_proto_gives_it() {
        let numbers = [
            (InterfaceKind::Unspecified, 0),
            (InterfaceKind::Physical, 1),
            (InterfaceKind::Bond, 2),
            (InterfaceKind::Bridge, 3),
            (InterfaceKind::Stacked, 4),
            (InterfaceKind::Loopback, 5),
            (InterfaceKind::PodVeth, 6),
            (InterfaceKind::Veth, 7),
            (InterfaceKind::Tunnel, 8),
            (InterfaceKind::Virtual, 9),
        ];
        for (kind, number) in numbers {
            assert_eq!(interface_kind(kind) as i32, number, "{kind:?}");
        }
    }

    #[test]
    fn an_unknown_pod_cgroup_figure_is_sent_as_zero() {
        let mut sample = full_sample();
        sample.pods[0].cpu_usage_us = None;
        sample.pods[0].memory_working_set_bytes = None;
        let wire = sample_to_wire(&sample, &mut PodRefs::new());
        assert_eq!((wire.pods[0].cpu_usage_us, wire.pods[0].memory_working_set_bytes), (0, 0));
    }

    #[test]
    fn a_sample_without_signals_has_no_empty_messages() {
        let wire = sample_to_wire(&Sample { timestamp_ms: 7, ..Sample::default() }, &mut PodRefs::new());
        assert_eq!(wire, pb::Sample { timestamp_ms: 7, ..pb::Sample::default() });
    }

    #[test]
    fn every_batch_lists_the_identities_it_references_once_with_stable_numbers() {
        let mut refs = PodRefs::new();
        let sample = full_sample();
        let first = batch(&[sample.clone(), sample.clone()], &mut refs);
        let second = batch(std::slice::from_ref(&sample), &mut refs);
        assert_eq!(first.new_pods.len(), 2, "each pod once, although two samples reference it");
        assert_eq!(first.new_pods, second.new_pods, "the same pods keep the same numbers in later batches");
        let first_refs: Vec<u32> = first.samples[0].pods.iter().map(|p| p.pod_ref).collect();
        assert_eq!(first_refs, [first.new_pods[0].pod_ref, first.new_pods[1].pod_ref]);
        assert_ne!(first.new_pods[0].pod_ref, first.new_pods[1].pod_ref);
        assert_eq!(first.new_pods[0].qos_class, "burstable");
        assert!(first.new_pods[1].host_network);
    }

    #[test]
    fn the_stream_strips_identities_it_already_declared_and_a_new_stream_declares_again() {
        let mut refs = PodRefs::new();
        let sample = full_sample();
        let mut declared = DeclaredPods::new();
        let mut first = batch(std::slice::from_ref(&sample), &mut refs);
        declared.strip_declared(&mut first);
        assert_eq!(first.new_pods.len(), 2);
        let mut second = batch(std::slice::from_ref(&sample), &mut refs);
        declared.strip_declared(&mut second);
        assert!(second.new_pods.is_empty(), "already declared on this stream");

        let mut on_new_stream = batch(std::slice::from_ref(&sample), &mut refs);
        DeclaredPods::new().strip_declared(&mut on_new_stream);
        assert_eq!(on_new_stream.new_pods.len(), 2, "a resumed stream is told again");
    }

    #[test]
    fn a_different_identity_under_a_declared_number_is_declared_again() {
        let mut declared = DeclaredPods::new();
        let identity = |uid: &str| pb::PodIdentity { pod_ref: 1, uid: uid.into(), ..pb::PodIdentity::default() };
        let mut first = pb::Batch { new_pods: vec![identity("a")], ..pb::Batch::default() };
        declared.strip_declared(&mut first);
        let mut second = pb::Batch { new_pods: vec![identity("b")], ..pb::Batch::default() };
        declared.strip_declared(&mut second);
        assert_eq!(second.new_pods, [identity("b")]);
    }

    #[test]
    fn adopted_numbers_are_kept_and_new_pods_get_higher_ones() {
        let mut refs = PodRefs::new();
        refs.adopt(&pb::PodIdentity { pod_ref: 7, uid: "old".into(), ..pb::PodIdentity::default() }, 0);
        assert_eq!(refs.pod_ref("old", 1), 7);
        assert_eq!(refs.pod_ref("new", 1), 8);
    }

    #[test]
    fn pods_unseen_for_an_hour_are_forgotten_and_never_share_a_number() {
        let mut refs = PodRefs::new();
        let gone = refs.pod_ref("gone", 0);
        let kept = refs.pod_ref("kept", 0);
        refs.pod_ref("kept", FORGET_POD_AFTER_MS);
        refs.forget_stale(FORGET_POD_AFTER_MS + 1);
        assert_eq!(refs.len(), 1);
        assert_eq!(refs.pod_ref("kept", FORGET_POD_AFTER_MS + 2), kept);
        let back = refs.pod_ref("gone", FORGET_POD_AFTER_MS + 2);
        assert!(back != gone && back != kept, "a forgotten pod gets a fresh number");
    }
}
