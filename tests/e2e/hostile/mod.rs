//! Hostile clients against the real binaries on loopback: a collector process, agent processes
//! reading a fixture host root, and `bakery-collector inspect --verify` as the judge of what was
//! stored. [`procs`] holds the processes; each module is one kind of attack.
//!
//! - [`identity`]: impostors, stolen tokens and people's tokens used beyond their role.

mod bounds;
mod identity;
mod procs;
