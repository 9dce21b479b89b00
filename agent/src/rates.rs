//! Rates and utilisation between two samples, for people reading `bakery-agent --once`.
//!
//! The wire carries only raw counters; the collector computes its own rates
//! where the series are stored.

use serde::Serialize;

use crate::cpu::CpuTimes;
use crate::net::NetCounters;
use crate::sampler::Sample;

/// Share of time per mode over the interval, each in [0, 1].
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CpuUtilization {
    pub user: f64,
    pub nice: f64,
    pub system: f64,
    pub idle: f64,
    pub iowait: f64,
    pub irq: f64,
    pub softirq: f64,
    pub steal: f64,
    /// Everything but idle and iowait.
    pub busy: f64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct NetRates {
    pub rx_bytes_per_second: f64,
    pub tx_bytes_per_second: f64,
    pub rx_packets_per_second: f64,
    pub tx_packets_per_second: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CoreUtilization {
    pub cpu: u32,
    pub utilization: CpuUtilization,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InterfaceRates {
    pub name: String,
    #[serde(flatten)]
    pub rates: NetRates,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PodRates {
    pub uid: String,
    /// `None` for hostNetwork pods.
    pub network: Option<NetRates>,
    /// CPU seconds per second (1.0 = one full core).
    pub cpu_cores: Option<f64>,
}

/// What changed between two samples of the same node.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Rates {
    pub interval_seconds: f64,
    pub cpu: Option<CpuUtilization>,
    pub cpu_cores: Vec<CoreUtilization>,
    pub interfaces: Vec<InterfaceRates>,
    pub pods: Vec<PodRates>,
}

/// Rates from `before` to `after`. A counter that went down (a reset, a
/// recreated interface) gives no rate rather than a wrong one.
pub fn between(before: &Sample, after: &Sample) -> Rates {
    let interval_seconds = (after.timestamp_ms - before.timestamp_ms) as f64 / 1000.0;
    let mut rates = Rates { interval_seconds, ..Rates::default() };
    if interval_seconds <= 0.0 {
        return rates;
    }
    if let (Some(b), Some(a)) = (&before.cpu, &after.cpu) {
        rates.cpu = cpu_utilization(&b.total, &a.total);
        rates.cpu_cores = a
            .cores
            .iter()
            .filter_map(|core| {
                let old = b.cores.iter().find(|c| c.cpu == core.cpu)?;
                Some(CoreUtilization { cpu: core.cpu, utilization: cpu_utilization(&old.times, &core.times)? })
            })
            .collect();
    }
    rates.interfaces = after
        .interfaces
        .iter()
        .filter_map(|iface| {
            let old = before.interfaces.iter().find(|i| i.name == iface.name)?;
            Some(InterfaceRates {
                name: iface.name.clone(),
                rates: net_rates(&old.counters, &iface.counters, interval_seconds)?,
            })
        })
        .collect();
    rates.pods = after
        .pods
        .iter()
        .filter_map(|pod| {
            let old = before.pods.iter().find(|p| p.identity.uid == pod.identity.uid)?;
            let network = match (&old.network, &pod.network) {
                (Some(o), Some(n)) => net_rates(o, n, interval_seconds),
                _ => None,
            };
            let cpu_cores = match (old.cpu_usage_us, pod.cpu_usage_us) {
                (Some(o), Some(n)) => n.checked_sub(o).map(|d| d as f64 / 1e6 / interval_seconds),
                _ => None,
            };
            Some(PodRates { uid: pod.identity.uid.clone(), network, cpu_cores })
        })
        .collect();
    rates
}

fn cpu_utilization(before: &CpuTimes, after: &CpuTimes) -> Option<CpuUtilization> {
    let delta = |a: u64, b: u64| a.checked_sub(b);
    let user = delta(after.user, before.user)?;
    let nice = delta(after.nice, before.nice)?;
    let system = delta(after.system, before.system)?;
    let idle = delta(after.idle, before.idle)?;
    let iowait = delta(after.iowait, before.iowait)?;
    let irq = delta(after.irq, before.irq)?;
    let softirq = delta(after.softirq, before.softirq)?;
    let steal = delta(after.steal, before.steal)?;
    let total = user + nice + system + idle + iowait + irq + softirq + steal;
    if total == 0 {
        return None;
    }
    let share = |v: u64| v as f64 / total as f64;
    Some(CpuUtilization {
        user: share(user),
        nice: share(nice),
        system: share(system),
        idle: share(idle),
        iowait: share(iowait),
        irq: share(irq),
        softirq: share(softirq),
        steal: share(steal),
        busy: share(total - idle - iowait),
    })
}

fn net_rates(before: &NetCounters, after: &NetCounters, seconds: f64) -> Option<NetRates> {
    let per_second = |a: u64, b: u64| a.checked_sub(b).map(|d| d as f64 / seconds);
    Some(NetRates {
        rx_bytes_per_second: per_second(after.rx_bytes, before.rx_bytes)?,
        tx_bytes_per_second: per_second(after.tx_bytes, before.tx_bytes)?,
        rx_packets_per_second: per_second(after.rx_packets, before.rx_packets)?,
        tx_packets_per_second: per_second(after.tx_packets, before.tx_packets)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::CpuStat;
    use crate::net::Interface;

    fn sample_at(ms: i64, busy: u64, idle: u64, rx: u64) -> Sample {
        Sample {
            timestamp_ms: ms,
            cpu: Some(CpuStat { total: CpuTimes { user: busy, idle, ..CpuTimes::default() }, cores: vec![] }),
            interfaces: vec![Interface {
                name: "eth0".into(),
                counters: NetCounters { rx_bytes: rx, ..NetCounters::default() },
                ..Interface::default()
            }],
            ..Sample::default()
        }
    }

    #[test]
    fn utilisation_and_rates_come_from_deltas() {
        let rates = between(&sample_at(0, 100, 100, 1_000), &sample_at(500, 130, 170, 6_000));
        assert_eq!(rates.interval_seconds, 0.5);
        let cpu = rates.cpu.unwrap();
        assert!((cpu.busy - 0.3).abs() < 1e-9, "30 of 100 ticks were busy: {cpu:?}");
        assert_eq!(rates.interfaces[0].rates.rx_bytes_per_second, 10_000.0);
    }

    #[test]
    fn a_counter_that_went_down_gives_no_rate() {
        let rates = between(&sample_at(0, 100, 100, 9_000), &sample_at(1000, 50, 170, 1_000));
        assert_eq!(rates.cpu, None);
        assert!(rates.interfaces.is_empty());
    }

    #[test]
    fn no_time_elapsed_gives_no_rates() {
        let rates = between(&sample_at(10, 1, 1, 1), &sample_at(10, 2, 2, 2));
        assert_eq!(rates, Rates { interval_seconds: 0.0, ..Rates::default() });
    }
}
