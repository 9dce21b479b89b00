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
use crate::sampler::Sample;
use crate::signal::Unavailable;
use crate::thermal::{Fan, Temperature, Thermals, VoltageAlarm};
use crate::throttle::{Throttle, ThrottleFlags};

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
