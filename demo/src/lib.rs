//! bakery-demo: the mini-bakery, a five-node cluster made of kernel namespaces on one machine, with
//! real processes, real packets, real kube-proxy-style iptables load balancing, a real nginx and real
//! oha, and bakery finding the node that takes more than its share.
#![forbid(unsafe_code)]

pub mod bench;
pub mod cli;
pub mod cluster;
pub mod control;
pub mod diagnose;
pub mod host;
pub mod interrupt;
pub mod kube_proxy;
pub mod kube_state;
pub mod launch;
pub mod nginx;
pub mod oha;
pub mod plan;
pub mod preflight;
pub mod report;
pub mod run;
pub mod scenario;
pub mod stand_ins;
pub mod sysfs;

/// What can go wrong in the demo's library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid scenario: {0}")]
    Scenario(String),
    #[error("oha: {0}")]
    Oha(String),
    #[error("{0}")]
    Io(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
