//! Node memory from `/proc/meminfo`.

use std::io::BufRead;

use serde::Serialize;

use crate::roots::HostRoots;
use crate::signal::{ParseError, SignalResult};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Memory {
    pub total_bytes: u64,
    pub available_bytes: u64,
    pub free_bytes: u64,
    pub buffers_bytes: u64,
    pub cached_bytes: u64,
    pub swap_total_bytes: u64,
    pub swap_free_bytes: u64,
}

/// Parses `/proc/meminfo` (values are in KiB there; these are bytes).
pub fn parse_meminfo(_reader: impl BufRead) -> Result<Memory, ParseError> {
    Err(ParseError::new("not implemented yet"))
}

/// Reads `<proc-root>/meminfo`.
pub fn read(_roots: &HostRoots) -> SignalResult<Memory> {
    Err(ParseError::new("not implemented yet").at(std::path::Path::new("meminfo")))
}
