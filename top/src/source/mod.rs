//! Where snapshots come from: the [`Source`] trait, the collector over gRPC ([`grpc`]) and a
//! scripted fake for tests ([`fake`]). [`derive`] turns raw cumulative samples into rates.

pub mod derive;
pub mod fake;
pub mod grpc;

use std::future::Future;

use crate::error::Result;
use crate::model::Snapshot;

pub use fake::FakeSource;
pub use grpc::{GrpcConfig, GrpcSource};

/// Something that can be asked for the cluster as it is now.
pub trait Source: Send {
    /// Where the data comes from, for the header ("http://127.0.0.1:7431").
    fn describe(&self) -> String;

    /// The latest snapshot. An error means "disconnected": the caller keeps the last data and asks
    /// again later; the source reconnects by itself on the next call.
    fn snapshot(&mut self) -> impl Future<Output = Result<Snapshot>> + Send;
}
