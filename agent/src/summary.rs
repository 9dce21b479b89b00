//! The human-readable form of `bakery-agent --once`.

use std::fmt::Write;

use crate::node_cgroup::PressureFrom;
use crate::pods::cgroup_path::CgroupVersion;
use crate::rates::Rates;
use crate::sampler::Sample;

/// A short plain-text summary of a sample and its rates.
pub fn render(sample: &Sample, rates: &Rates) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "node {} ({} s between readings)", sample.node_name, rates.interval_seconds);
    if let Some(source) = &sample.node_cgroup {
        let version = source.version.map_or("not found", CgroupVersion::name);
        let pressure = match source.pressure_from {
            Some(PressureFrom::Cgroup) => "the cgroup's",
            Some(PressureFrom::Host) => "the host's",
            None => "none",
        };
        let _ = writeln!(
            out,
            "node     cgroup {} ({version}): cpu user/system and memory are the cgroup's, pressure {pressure}",
            source.path
        );
    }
    if let Some(cpu) = &rates.cpu {
        // A node cgroup has no per-core split: say so rather than "0 cores".
        let cores = match sample.cpu.as_ref().map_or(0, |c| c.cores.len()) {
            0 => "no per-core figures".to_string(),
            n => format!("{n} cores"),
        };
        let _ = writeln!(out, "cpu      {:5.1}% busy ({:.1}% softirq), {cores}", cpu.busy * 100.0, cpu.softirq * 100.0);
    }
    if let Some(mem) = &sample.memory {
        let _ = writeln!(out, "memory   {} MiB available of {} MiB", mem.available_bytes >> 20, mem.total_bytes >> 20);
    }
    for temp in &sample.thermals.temperatures {
        let _ = writeln!(out, "temp     {} {:.1} C", temp.sensor, temp.millidegrees_celsius as f64 / 1000.0);
    }
    if let Some(throttle) = &sample.throttle {
        let _ = writeln!(
            out,
            "throttle raw {:#x} now {:?} since boot {:?}",
            throttle.raw, throttle.now, throttle.since_boot
        );
    }
    for iface in &rates.interfaces {
        let _ = writeln!(
            out,
            "nic      {:<12} rx {:>12.0} B/s  tx {:>12.0} B/s",
            iface.name, iface.rates.rx_bytes_per_second, iface.rates.tx_bytes_per_second
        );
    }
    let _ = writeln!(out, "pods     {}", sample.pods.len());
    for pod in &sample.pods {
        let tcp = pod.tcp.map(|t| format!("{} in / {} out established", t.established_inbound, t.established_outbound));
        let _ = writeln!(
            out,
            "  {} {:?}{} {}",
            pod.identity.uid,
            pod.identity.qos_class,
            if pod.identity.host_network { " hostNetwork" } else { "" },
            tcp.unwrap_or_default()
        );
    }
    for missing in &sample.unavailable {
        let _ = writeln!(out, "unavailable {}: {}", missing.signal, missing.reason);
    }
    out
}
