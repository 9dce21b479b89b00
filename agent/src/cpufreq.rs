//! Per-core CPU frequency, current and maximum, from cpufreq in sysfs.

use serde::Serialize;

use crate::roots::HostRoots;
use crate::signal::SignalResult;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CpuFrequency {
    pub cpu: u32,
    pub current_khz: u64,
    pub max_khz: u64,
}

/// Reads `<sys-root>/devices/system/cpu/cpu*/cpufreq`; absent without cpufreq.
pub fn read(_roots: &HostRoots) -> SignalResult<Vec<CpuFrequency>> {
    Err(crate::signal::ParseError::new("not implemented yet").at(std::path::Path::new("cpufreq")))
}
