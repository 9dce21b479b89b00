//! CPU time per mode from `/proc/stat`, for the node and for each core.

use std::io::BufRead;

use serde::Serialize;

use crate::roots::HostRoots;
use crate::signal::{ParseError, SignalResult};

/// Cumulative jiffies (USER_HZ ticks) per mode since boot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CpuTimes {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
}

/// One logical CPU's times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CoreTimes {
    pub cpu: u32,
    pub times: CpuTimes,
}

/// The `cpu` line and every `cpuN` line of `/proc/stat`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CpuStat {
    pub total: CpuTimes,
    pub cores: Vec<CoreTimes>,
}

/// Parses `/proc/stat`.
pub fn parse_stat(_reader: impl BufRead) -> Result<CpuStat, ParseError> {
    Err(ParseError::new("not implemented yet"))
}

/// Reads `<proc-root>/stat`.
pub fn read(_roots: &HostRoots) -> SignalResult<CpuStat> {
    Err(ParseError::new("not implemented yet").at(std::path::Path::new("stat")))
}
