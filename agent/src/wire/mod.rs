//! The edge between the agent's domain types and the wire: a [`Sample`] into `bakery_proto::v1`.
//!
//! Two rules of the schema (`proto/proto/bakery/v1/bakery.proto`: a pod's
//! identity is declared once per stream, `Batch.new_pods` holds the pods first
//! referenced on this stream by this batch) shape this module:
//! - every spooled [`pb::Batch`] is self-contained: its `new_pods` lists every
//!   identity its samples reference, so it can be sent on any stream, also
//!   after an agent restart replays it from the disk spool;
//! - on one stream an identity is declared once: [`DeclaredPods`] strips the
//!   identities the current stream already knows just before sending.
//!
//! The pods' numbers and what a stream was told are `pods`'s.

mod buffer;
mod encoded;
mod pods;

#[cfg(test)]
mod tests;

use std::collections::HashSet;

use bakery_proto::v1 as pb;

use crate::conntrack::Conntrack;
use crate::cpu::{CoreTimes, CpuStat, CpuTimes};
use crate::cpufreq::CpuFrequency;
use crate::iface_kind::InterfaceKind;
use crate::memory::Memory;
use crate::net::{Interface, NetCounters};
use crate::pods::{Pod, PodIdentity, QosClass, TcpConnections};
use crate::pressure::{Pressure, Resource, Stall};
use crate::reuse::{Refill, reused};
use crate::sampler::Sample;
use crate::signal::Unavailable;
use crate::thermal::{Fan, Temperature, Thermals, VoltageAlarm};
use crate::throttle::{Throttle, ThrottleFlags};

pub use buffer::BatchBuffer;
pub use encoded::write_batch_message;
pub use pods::{DeclaredPods, FORGET_POD_AFTER_MS, PodRefs};

/// `CpuTimes.cpu` of the node total on the wire (cores use their number).
pub const CPU_TOTAL: i32 = -1;

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

/// One sample on the wire. Pods are referenced by number; their identities
/// travel in the batch (see [`batch`]). The node name is not repeated: the
/// stream's Hello carries it.
pub fn sample_to_wire(sample: &Sample, refs: &mut PodRefs) -> pb::Sample {
    let mut wire = pb::Sample::default();
    write_sample(sample, refs, &mut wire);
    wire
}

/// [`sample_to_wire`] over `wire`, overwriting last sample's figures in
/// place: lists keep their elements and strings their buffers, so the same
/// interfaces, sensors and pods as last time cost no allocation.
// Destructured on both sides so that a field added to either type fails to
// compile here until it is mapped (or deliberately left off the wire); the
// messages below are written as whole literals for the same reason.
pub fn write_sample(sample: &Sample, refs: &mut PodRefs, wire: &mut pb::Sample) {
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
    let pb::Sample {
        timestamp_ms: wire_timestamp_ms,
        cpu_total,
        cpu_cores: wire_cpu_cores,
        memory: wire_memory,
        pressure: wire_pressure,
        temperatures: wire_temperatures,
        fans: wire_fans,
        cpu_frequencies: wire_cpu_frequencies,
        throttle: wire_throttle,
        interfaces: wire_interfaces,
        conntrack: wire_conntrack,
        pods: wire_pods,
        unavailable: wire_unavailable,
        parse_errors_total: wire_parse_errors_total,
        voltage_alarms: wire_voltage_alarms,
    } = wire;
    *wire_timestamp_ms = *timestamp_ms;
    *cpu_total = cpu.as_ref().map(|stat| cpu_times(CPU_TOTAL, &stat.total));
    wire_cpu_cores.clear();
    if let Some(stat) = cpu {
        wire_cpu_cores.extend(cpu_cores(stat));
    }
    *wire_memory = memory.as_ref().map(memory_to_wire);
    refill(wire_pressure, pressure, write_pressure);
    refill(wire_temperatures, temperatures, write_temperature);
    refill(wire_fans, fans, write_fan);
    wire_cpu_frequencies.clear();
    wire_cpu_frequencies.extend(cpu_frequencies.iter().map(cpu_frequency));
    *wire_throttle = throttle.as_ref().map(throttle_to_wire);
    refill(wire_interfaces, interfaces, write_interface);
    *wire_conntrack = conntrack.as_ref().map(conntrack_to_wire);
    wire_pods.clear();
    wire_pods.extend(pods.iter().map(|pod| pod_sample(refs.pod_ref(&pod.identity.uid, *timestamp_ms), pod)));
    refill(wire_unavailable, unavailable, write_unavailable);
    *wire_parse_errors_total = *parse_errors_total;
    refill(wire_voltage_alarms, voltage_alarms, write_voltage_alarm);
}

/// Writes `from` over `to` element by element with `write`, keeping the
/// elements `to` already holds (see [`Refill`]).
fn refill<F, T: Default>(to: &mut Vec<T>, from: &[F], write: impl Fn(&mut T, &F)) {
    let mut to = Refill::new(to);
    for item in from {
        write(to.next_slot(), item);
    }
}

fn cpu_cores(stat: &CpuStat) -> impl Iterator<Item = pb::CpuTimes> + '_ {
    let CpuStat { total: _, cores } = stat;
    cores.iter().map(|CoreTimes { cpu, times }| cpu_times(i32::try_from(*cpu).unwrap_or(i32::MAX), times))
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

fn write_pressure(wire: &mut pb::Pressure, pressure: &Pressure) {
    let Pressure { resource, stall, avg10, avg60, avg300, total_us } = *pressure;
    *wire = pb::Pressure {
        resource: reused(&mut wire.resource, resource_name(resource)),
        kind: reused(&mut wire.kind, stall_name(stall)),
        avg10,
        avg60,
        avg300,
        total_us,
    };
}

fn write_temperature(wire: &mut pb::Temperature, temperature: &Temperature) {
    let Temperature { sensor, millidegrees_celsius } = temperature;
    *wire = pb::Temperature { sensor: reused(&mut wire.sensor, sensor), millidegrees_celsius: *millidegrees_celsius };
}

fn write_fan(wire: &mut pb::Fan, fan: &Fan) {
    let Fan { sensor, rpm } = fan;
    *wire = pb::Fan { sensor: reused(&mut wire.sensor, sensor), rpm: *rpm };
}

fn write_voltage_alarm(wire: &mut pb::VoltageAlarm, alarm: &VoltageAlarm) {
    let VoltageAlarm { sensor, active } = alarm;
    *wire = pb::VoltageAlarm { sensor: reused(&mut wire.sensor, sensor), active: *active };
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

fn write_interface(wire: &mut pb::NetInterface, interface: &Interface) {
    let Interface { name, kind, master, counters } = interface;
    *wire = pb::NetInterface {
        name: reused(&mut wire.name, name),
        counters: Some(net_counters(counters)),
        kind: interface_kind(*kind).into(),
        master: reused(&mut wire.master, master.as_deref().unwrap_or_default()),
    };
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
    let mut wire = pb::PodIdentity::default();
    write_pod_identity(&mut wire, pod_ref, identity);
    wire
}

/// [`pod_identity`] over `wire`, its strings kept.
pub fn write_pod_identity(wire: &mut pb::PodIdentity, pod_ref: u32, identity: &PodIdentity) {
    let PodIdentity { uid, qos_class, cgroup_path, host_network } = identity;
    *wire = pb::PodIdentity {
        pod_ref,
        uid: reused(&mut wire.uid, uid),
        qos_class: reused(&mut wire.qos_class, qos_class_name(*qos_class)),
        cgroup_path: reused(&mut wire.cgroup_path, cgroup_path),
        host_network: *host_network,
    };
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

fn write_unavailable(wire: &mut pb::Unavailable, unavailable: &Unavailable) {
    let Unavailable { signal, reason } = unavailable;
    *wire = pb::Unavailable { signal: reused(&mut wire.signal, signal), reason: reused(&mut wire.reason, reason) };
}
