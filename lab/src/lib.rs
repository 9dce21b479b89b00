//! bakery-lab: what bakery's demo and end-to-end tests build on one machine, each written once.
//!
//! - Kernel objects: network namespaces and veth pairs ([`netns`]), `ip`, `iptables-restore` and
//!   `sysctl` with their output collected ([`command`]), cgroups in the hierarchies this machine
//!   mounts ([`cgroup`]).
//! - Processes: children with their output collected, killed on drop ([`process`]); the
//!   workspace's binaries built fresh ([`binaries`]).
//! - Waiting: a condition polled against a deadline, on the calling thread or on a tokio runtime,
//!   free loopback ports, root ([`wait`]).
//! - Measuring: a process's CPU seconds and resident memory from `/proc/<pid>` ([`measure`]), for
//!   benchmarks.
//! - Asking: an HTTP GET of a loopback endpoint, its status and body within a timeout ([`http`]).
//! - Repeating: a seeded generator whose numbers are the same on every run ([`random`]).
//! - Names: who owns which namespaces and cgroups on the machine, and removing what a killed run
//!   left behind ([`cleanup`]).
//! - Test peers: the Kubernetes API double ([`kube_double`], also the `bakery-fake-apiserver`
//!   binary) and a real OTLP receiver ([`rotel`]).
//!
//! It depends on none of bakery's crates, so any crate's tests may use it.
#![forbid(unsafe_code)]

pub mod binaries;
pub mod cgroup;
pub mod cleanup;
pub mod command;
mod error;
pub mod http;
pub mod kube_double;
pub mod measure;
pub mod netns;
pub mod process;
pub mod random;
pub mod rotel;
pub mod wait;

pub use error::{Error, chain};
pub use wait::{free_port, is_root, pause, require_root, wait_for, wait_for_async, wait_until, wait_until_async};

pub type Result<T, E = Error> = std::result::Result<T, E>;
