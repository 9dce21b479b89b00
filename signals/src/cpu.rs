//! CPU time from `/proc/stat`'s jiffies (`man 5 proc`): busy is every mode but idle and iowait
//! (iowait is idle time with IO outstanding), total is every mode.

use bakery_proto::v1::CpuTimes;

/// Jiffies spent working: user, nice, system, irq, softirq and steal.
pub fn busy(cpu: &CpuTimes) -> u64 {
    cpu.user
        .saturating_add(cpu.nice)
        .saturating_add(cpu.system)
        .saturating_add(cpu.irq)
        .saturating_add(cpu.softirq)
        .saturating_add(cpu.steal)
}

/// Every jiffy: busy, idle and iowait.
pub fn total(cpu: &CpuTimes) -> u64 {
    busy(cpu).saturating_add(cpu.idle).saturating_add(cpu.iowait)
}

/// Busy and softirq fractions of all CPU time between two readings; `None` when a mode went down
/// (a reboot) or no time passed.
pub fn use_between(before: &CpuTimes, after: &CpuTimes) -> Option<CpuUse> {
    let modes = |c: &CpuTimes| [c.user, c.nice, c.system, c.idle, c.iowait, c.irq, c.softirq, c.steal];
    if modes(after).iter().zip(modes(before)).any(|(a, b)| *a < b) {
        return None;
    }
    let busy = busy(after) - busy(before);
    let total = total(after) - total(before);
    (total > 0).then(|| CpuUse {
        busy: busy as f64 / total as f64,
        softirq: (after.softirq - before.softirq) as f64 / total as f64,
    })
}

/// Fractions of all CPU time, 0 to 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuUse {
    pub busy: f64,
    pub softirq: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(user: u64, idle: u64, iowait: u64, softirq: u64) -> CpuTimes {
        CpuTimes { cpu: -1, user, idle, iowait, softirq, ..CpuTimes::default() }
    }

    #[test]
    fn busy_is_every_mode_but_idle_and_iowait() {
        let all =
            CpuTimes { cpu: -1, user: 1, nice: 2, system: 4, idle: 8, iowait: 16, irq: 32, softirq: 64, steal: 128 };
        assert_eq!(busy(&all), 1 + 2 + 4 + 32 + 64 + 128);
        assert_eq!(total(&all), 255);
    }

    #[test]
    fn use_between_two_readings() {
        let cases = [
            // (before, after, busy, softirq)
            (cpu(100, 100, 0, 0), cpu(150, 150, 0, 0), Some((0.5, 0.0))),
            (cpu(0, 0, 0, 0), cpu(10, 70, 10, 10), Some((0.2, 0.1))),
            (cpu(100, 100, 0, 0), cpu(100, 100, 0, 0), None),
            (cpu(100, 100, 0, 0), cpu(50, 200, 0, 0), None),
        ];
        for (before, after, expected) in cases {
            let got = use_between(&before, &after).map(|u| (u.busy, u.softirq));
            assert_eq!(got, expected, "{before:?} -> {after:?}");
        }
    }
}
