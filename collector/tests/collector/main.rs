//! The collector's integration tests, in one test binary: gRPC against an in-process collector
//! on 127.0.0.1:0, the built binary for signals, faults and `inspect`, its command line (flags,
//! variables, completions, man page), damaged stores, and root-only full-disk tests.

// Helpers outside #[test] functions are test code too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod alert_rules;
mod binary;
mod bounds;
mod cli;
mod export;
mod faults;
mod harness;
mod identity;
mod ingest;
mod limits;
mod query;
mod replay;
mod root;
mod tls;
mod windows;
