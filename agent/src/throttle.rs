//! Raspberry Pi firmware throttling (`get_throttled`), decoded into named flags.

use serde::Serialize;

use crate::roots::HostRoots;
use crate::signal::SignalResult;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ThrottleFlags {
    pub under_voltage: bool,
    pub arm_frequency_capped: bool,
    pub throttled: bool,
    pub soft_temperature_limit: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Throttle {
    pub raw: u32,
    pub now: ThrottleFlags,
    pub since_boot: ThrottleFlags,
}

/// Reads the firmware's `get_throttled`; absent on anything but a Pi.
pub fn read(_roots: &HostRoots) -> SignalResult<Throttle> {
    Err(crate::signal::ParseError::new("not implemented yet").at(std::path::Path::new("get_throttled")))
}
