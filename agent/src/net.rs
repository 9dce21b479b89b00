//! Network interface counters from `/proc/net/dev`, for the node and (via
//! `/proc/<pid>/net/dev`) for a pod's network namespace.

use std::io::BufRead;

use serde::Serialize;

use crate::roots::HostRoots;
use crate::signal::{ParseError, SignalResult};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NetCounters {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Interface {
    pub name: String,
    pub counters: NetCounters,
}

/// Parses a `net/dev` file, every interface including `lo`.
pub fn parse_net_dev(_reader: impl BufRead) -> Result<Vec<Interface>, ParseError> {
    Err(ParseError::new("not implemented yet"))
}

/// Reads the node's interfaces from `<proc-root>/net/dev` (the agent's own
/// network namespace, which is the host's under hostNetwork).
pub fn read(_roots: &HostRoots) -> SignalResult<Vec<Interface>> {
    Err(ParseError::new("not implemented yet").at(std::path::Path::new("net/dev")))
}
