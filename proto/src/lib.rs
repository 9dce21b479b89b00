//! The wire format between bakery's agent, collector and clients, and nothing else.
//!
//! The Rust code under `src/gen/` is generated from `proto/bakery/v1/*.proto`
//! and committed, so no `protoc` is needed to build. `tests/codegen.rs`
//! regenerates it and fails when the committed copy is stale; run
//! `cargo xtask codegen` to refresh it.

pub mod codec;

/// Version 1 of the schema.
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    include!("gen/bakery.v1.rs");
}

/// The collector's ingest server: `v1`'s `Ingest` service, each `AgentMessage` received with
/// the bytes it was decoded from ([`codec::Received`]).
pub mod received {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    include!("gen/bakery.v1.Ingest.rs");
}

/// Path of the `.proto` sources, relative to this crate, for tooling.
pub const PROTO_FILES: &[&str] = &["proto/bakery/v1/bakery.proto"];
