//! bakery-collector: receives the agents' streams, stores every batch durably in an embedded
//! database (redb), acknowledges what is committed, and answers queries.
//!
//! Data flow: [`ingest`] (one task per agent stream: wire -> store rows, sequence checks) ->
//! bounded queue -> [`commit`] (the one writer: one durable transaction per interval) ->
//! [`store`] (redb tables) -> committed watch -> acks. [`state`] is what ingest writes and the
//! readers share; [`query`] reads the in-memory [`nodes`] state; [`inspect`] reads a stopped
//! store. [`health`] serves `/livez` and `/readyz`; the [`server`] supervises the tasks and exits
//! on one that dies.
//!
//! Diagnosis: [`kube`] watches Pods, Nodes and EndpointSlices (one watch each for the
//! cluster); [`live`] turns the latest samples plus that knowledge into diagnosis ticks, keeps the
//! live verdicts and stores each window's report ([`store::window_reports`]); [`windows`] decides when a
//! window opens (explicitly or on a surge), which workload is under test, and the faster sampling.

pub mod auth;
pub mod cli;
pub mod commit;
pub mod error;
pub mod export;
pub mod health;
pub mod ingest;
pub mod inspect;
pub mod kube;
pub mod limits;
pub mod live;
pub mod liveness;
pub mod nodes;
pub mod query;
pub mod ratelog;
pub mod server;
pub mod state;
pub mod store;
pub mod windows;

pub use error::{Error, Result};
pub use server::{Collector, ServeConfig, ShutdownReport, TlsFiles};

/// Wall clock, Unix epoch milliseconds (the one clock every bakery receiver reads).
pub use bakery_signals::time::now_ms;
