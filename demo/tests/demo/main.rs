//! The demo's integration tests, one binary with a module per area. Tests named `root_*` build the
//! cluster of namespaces: they need root, fail with a clear message without it (skip them with
//! `cargo test -- --skip root_`), and take turns on one cluster ([`one_cluster::ONE_CLUSTER`]).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod campaign;
mod kube_state;
mod one_cluster;
mod scenarios;
