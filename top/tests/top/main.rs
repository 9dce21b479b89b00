//! bakery-top's integration tests, one binary with a module per concern (link time stays low).
// Test helpers outside #[test] fns may unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod charts;
mod cli;
mod fake_collector;
mod grpc_source;
mod keys;
mod once;
mod views;
