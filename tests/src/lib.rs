//! The harness bakery's end-to-end tests share on top of `bakery_lab`: the real binaries as
//! processes, simulated pods and nodes (the lab's namespaces and cgroups, with the agent's QoS
//! classes), the agent and backlog-drain benchmarks, process measurements, and what a stopped
//! collector stored sample by sample.

pub mod bench_agent;
pub mod bench_drain;
pub use bakery_lab::measure;
pub mod procs;
pub mod sim;
pub mod stored;
