//! The harness bakery's end-to-end tests share on top of `bakery_lab`: the real binaries as
//! processes, simulated pods and nodes (the lab's namespaces and cgroups, with the agent's QoS
//! classes), the agent benchmark, and process measurements.

pub mod bench_agent;
pub mod measure;
pub mod procs;
pub mod sim;
