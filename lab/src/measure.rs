//! What benchmarks measure of a running process: CPU seconds and resident memory, read from `/proc/<pid>`.
//!
//! Benchmarks compare bakery with a peer in the same run (ratios), never
//! against fixed wall-clock limits; these readings are the raw material.

use std::path::Path;

use anyhow::{Context, bail};

/// USER_HZ: `/proc/<pid>/stat` counts CPU time in these ticks. It is 100 on
/// every Linux architecture bakery targets (the kernel ABI fixes it for
/// userspace regardless of CONFIG_HZ).
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// CPU time a process has used (user + system), seconds.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("process {pid} is gone"))?;
    parse_cpu_ticks(&stat).map(|ticks| ticks as f64 / CLOCK_TICKS_PER_SECOND)
}

/// utime + stime from the text of `/proc/<pid>/stat`.
pub fn parse_cpu_ticks(stat: &str) -> anyhow::Result<u64> {
    // utime and stime are fields 14 and 15 (proc(5)), the 12th and 13th after the name.
    let fields: Vec<&str> = crate::process::stat_fields(stat).context("no ')' in /proc/<pid>/stat")?.collect();
    if fields.len() < 13 {
        bail!("/proc/<pid>/stat has {} fields after the name, expected at least 13", fields.len());
    }
    let utime: u64 = fields[11].parse().context("utime")?;
    let stime: u64 = fields[12].parse().context("stime")?;
    Ok(utime + stime)
}

/// Resident memory now and at its peak, bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rss {
    pub current_bytes: u64,
    pub peak_bytes: u64,
}

/// Reads `VmRSS` and `VmHWM` of a process.
pub fn rss(pid: u32) -> anyhow::Result<Rss> {
    let status = std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("status"))
        .with_context(|| format!("process {pid} is gone"))?;
    parse_rss(&status)
}

/// `VmRSS` and `VmHWM` from the text of `/proc/<pid>/status`.
pub fn parse_rss(status: &str) -> anyhow::Result<Rss> {
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = status.lines().find(|l| l.starts_with(name)).with_context(|| format!("no {name} line"))?;
        let kib: u64 = line.split_whitespace().nth(1).context("no value")?.parse().context("not a number")?;
        Ok(kib * 1024)
    };
    Ok(Rss { current_bytes: field("VmRSS:")?, peak_bytes: field("VmHWM:")? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_survive_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 500 0 0 0 731 269 0 0 20 0 1 0 100 0 0";
        assert_eq!(parse_cpu_ticks(stat).unwrap(), 1000);
    }

    #[test]
    fn a_truncated_stat_is_an_error() {
        assert!(parse_cpu_ticks("42 (x) S 1 2 3").is_err());
    }

    #[test]
    fn rss_is_read_in_bytes() {
        let status = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(parse_rss(status).unwrap(), Rss { current_bytes: 1024 * 1024, peak_bytes: 2048 * 1024 });
    }

    #[test]
    fn this_process_can_be_measured() {
        let me = std::process::id();
        assert!(rss(me).unwrap().current_bytes > 0);
        assert!(cpu_seconds(me).unwrap() >= 0.0);
    }
}
