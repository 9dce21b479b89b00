//! Connection-tracking table usage (`nf_conntrack_count` and `_max`).

use serde::Serialize;

use crate::roots::HostRoots;
use crate::signal::SignalResult;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Conntrack {
    pub count: u64,
    pub max: u64,
}

/// Reads `<proc-root>/sys/net/netfilter/nf_conntrack_{count,max}`; absent
/// when the conntrack module is not loaded.
pub fn read(_roots: &HostRoots) -> SignalResult<Conntrack> {
    Err(crate::signal::ParseError::new("not implemented yet").at(std::path::Path::new("nf_conntrack_count")))
}
