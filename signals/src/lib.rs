//! bakery-signals: the receiver-side meaning of the wire, written once for every receiver (the
//! collector's analysis, its export and its auth, bakery-top, the agent's own token reading).
//!
//! The wire carries raw cumulative counters and raw readings (`bakery.proto`); what they mean is
//! decided here: which interfaces are the node's own wire ([`nic`]), how much a counter grew
//! ([`counter`]), how busy the CPU was ([`cpu`]), how much memory is used ([`memory`]), which
//! temperature sensors are the CPU's ([`thermal`]), how token files read ([`token`]), and the wall
//! clock ([`time`]). Pure functions over proto types, each with a table test; only [`time`] reads
//! a clock.
#![forbid(unsafe_code)]

pub mod counter;
pub mod cpu;
pub mod memory;
pub mod nic;
pub mod thermal;
pub mod time;
pub mod token;
