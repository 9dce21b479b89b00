//! bakery-top: the live view of a bakery cluster, and its one-shot text and JSON output.
//!
//! Layout: [`model`] is what is shown; [`source`] fetches it (the collector over gRPC, or a fake);
//! [`app`] is the state with no IO; [`keys`] maps keys to state changes; [`render`] draws an
//! [`app::App`] into a frame; [`snapshot`] prints `--once` text and JSON; [`tui`] runs the loop in
//! a real terminal; [`cli`] is the command line, with [`config`] (the config file) below it, and
//! [`cluster`] reaches the collector through a kubeconfig context.

pub mod app;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod error;
pub mod keys;
pub mod made_up;
pub mod model;
pub mod oha;
pub mod render;
pub mod snapshot;
pub mod source;
pub mod tui;

pub use error::{Error, Result};

pub use bakery_signals::time::now_ms;
