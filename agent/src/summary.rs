//! The human-readable form of `bakery-agent --once`.

use std::fmt::Write;

use crate::cgroup::CgroupVersion;
use crate::iface_kind::InterfaceKind;
use crate::node_cgroup::PressureFrom;
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
        let interface = sample.interfaces.iter().find(|i| i.name == iface.name);
        let kind = interface.map_or(InterfaceKind::Unspecified, |i| i.kind).name();
        let master = interface.and_then(|i| i.master.as_deref()).map(|m| format!(" in {m}")).unwrap_or_default();
        let _ = writeln!(
            out,
            "nic      {:<12} {:<11} rx {:>12.0} B/s  tx {:>12.0} B/s{master}",
            iface.name, kind, iface.rates.rx_bytes_per_second, iface.rates.tx_bytes_per_second
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{Interface, NetCounters};
    use crate::rates;

    #[test]
    fn each_nic_line_says_what_the_interface_is_and_what_it_is_enslaved_to() {
        let at = |timestamp_ms: i64, rx_bytes: u64| Sample {
            timestamp_ms,
            interfaces: vec![
                Interface {
                    name: "eth0".into(),
                    kind: InterfaceKind::Physical,
                    counters: NetCounters { rx_bytes, ..NetCounters::default() },
                    ..Interface::default()
                },
                Interface {
                    name: "veth3a1f9c2e".into(),
                    kind: InterfaceKind::PodVeth,
                    master: Some("cni0".into()),
                    ..Interface::default()
                },
                Interface { name: "eth9".into(), ..Interface::default() },
            ],
            ..Sample::default()
        };
        let after = at(1000, 5000);
        let text = render(&after, &rates::between(&at(0, 0), &after));
        let nics: Vec<&str> = text.lines().filter(|line| line.starts_with("nic")).collect();
        assert_eq!(nics.len(), 3, "{text}");
        assert!(nics[0].starts_with("nic      eth0         physical    rx         5000 B/s"), "{text}");
        assert!(nics[1].contains("veth3a1f9c2e pod veth") && nics[1].ends_with(" in cni0"), "{text}");
        assert!(nics[2].contains("eth9         unspecified"), "{text}");
    }
}
