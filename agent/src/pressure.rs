//! Pressure stall information from `/proc/pressure/{cpu,memory,io}`.

use std::io::BufRead;

use serde::Serialize;

use crate::roots::HostRoots;
use crate::signal::{ParseError, SignalResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    Cpu,
    Memory,
    Io,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stall {
    /// Some tasks stalled.
    Some,
    /// All non-idle tasks stalled at once.
    Full,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Pressure {
    pub resource: Resource,
    pub stall: Stall,
    pub avg10: f32,
    pub avg60: f32,
    pub avg300: f32,
    /// Cumulative stall time, microseconds.
    pub total_us: u64,
}

/// Parses one pressure file ("some ..." and, except for cpu on old kernels, "full ...").
pub fn parse_pressure(_resource: Resource, _reader: impl BufRead) -> Result<Vec<Pressure>, ParseError> {
    Err(ParseError::new("not implemented yet"))
}

/// Reads all three pressure files; absent when the kernel has no PSI.
pub fn read(_roots: &HostRoots) -> SignalResult<Vec<Pressure>> {
    Err(ParseError::new("not implemented yet").at(std::path::Path::new("pressure")))
}
