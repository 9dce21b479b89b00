//! bakery-agent: samples one node through a host root and ships raw counters to the collector.
//!
//! Counters stay cumulative; rates are the receiver's.
//!
//! One module per signal (`cpu`, `memory`, `pressure`, `thermal`, `cpufreq`,
//! `throttle`, `net`, `conntrack`, `pods`), each a pure parser plus a
//! `read(&HostRoots, &mut NodeFiles)` ([`node_files`] keeps their files open
//! between samples); [`sampler`] assembles them into a [`sampler::Sample`].
//! With `--node-cgroup`, [`node_cgroup`] reads the node's CPU, memory and
//! pressure from its cgroup instead (nodes that are containers); the cgroup
//! layout it shares with the pods is [`cgroup`]'s. [`iface_kind`] says what
//! each of the node's interfaces is; [`wire`], [`spool`] and [`stream`] ship
//! the samples. A streaming agent writes each sample over the last one
//! ([`sampler::Sampler::sample_into`], [`wire::BatchBuffer`]) with the
//! helpers of [`reuse`], and lists directories through [`dir_entries`], so
//! that a steady-state sample allocates next to nothing
//! (`tests/allocations.rs` counts it).

pub mod cgroup;
pub mod cli;
pub mod conntrack;
pub mod cpu;
pub mod cpufreq;
pub mod dir_entries;
pub mod iface_kind;
pub mod kept_files;
pub mod memory;
pub mod net;
pub mod node_cgroup;
pub mod node_files;
pub mod pods;
pub mod pressure;
pub mod rates;
pub mod reuse;
pub mod roots;
pub mod rtnetlink;
pub mod sampler;
pub mod signal;
pub mod spool;
pub mod stream;
pub mod summary;
pub mod thermal;
pub mod throttle;
pub mod wire;

use roots::HostRoots;

/// The host name from `<proc-root>/sys/kernel/hostname`, so a fixture tree
/// names its own node.
pub fn node_name_from(roots: &HostRoots) -> anyhow::Result<String> {
    let path = roots.proc("sys/kernel/hostname");
    let name = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("cannot read the host name from {}: {e}; pass --node-name", path.display()))?;
    Ok(name.trim().to_string())
}

pub use bakery_signals::time::now_ms;
