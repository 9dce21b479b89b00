//! Temperatures, fans and under-voltage alarms from thermal zones and hwmon.

use serde::Serialize;

use crate::roots::HostRoots;
use crate::signal::SignalResult;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Temperature {
    /// `thermal_zone0/cpu-thermal` or `hwmon1/rp1_adc/temp1`.
    pub sensor: String,
    pub millidegrees_celsius: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fan {
    pub sensor: String,
    pub rpm: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VoltageAlarm {
    pub sensor: String,
    pub active: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Thermals {
    pub temperatures: Vec<Temperature>,
    pub fans: Vec<Fan>,
    pub voltage_alarms: Vec<VoltageAlarm>,
}

/// Reads every thermal zone and hwmon device; absent when the node has neither.
pub fn read(_roots: &HostRoots) -> SignalResult<Thermals> {
    Err(crate::signal::ParseError::new("not implemented yet").at(std::path::Path::new("class/thermal")))
}
