//! The harness bakery's end-to-end tests share on top of `bakery_lab`: simulated pods and nodes
//! (the lab's namespaces and cgroups, with the agent's QoS classes), the agent benchmark, and
//! process measurements.

pub mod bench_agent;
pub mod measure;
pub mod sim;

/// Where `tests/e2e/hostile/` still finds the lab's modules; that code is being finished elsewhere
/// and moves onto `bakery_lab` next, and then these go.
pub use bakery_lab::{binaries, kube_double};
