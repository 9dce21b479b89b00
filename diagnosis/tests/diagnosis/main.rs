//! Integration tests of the diagnosis core: one test binary, one module per concern.

mod charts;
mod fixtures;
mod guards;
mod inputs;
mod noise_model;
mod properties;
mod reports;
mod support;
mod timing;
mod topologies;
