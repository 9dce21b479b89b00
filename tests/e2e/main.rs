//! bakery's end-to-end tests, one binary with a module per area (link time
//! stays low). Tests named `root_*` need root and fail with a clear message
//! without it; skip them with `cargo test -- --skip root_`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod export;
mod host_readings;
mod hostile;
mod kube;
mod kube_services;
mod loadtest;
mod pod_discovery;
mod same_numbers;
mod streaming;
mod top_commands;
mod top_context;
mod tui_tmux;
