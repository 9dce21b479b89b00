//! `cargo xtask demo`: the README's first command.
//!
//! Until the simulated five-node cluster exists (issue 8), the demo builds
//! the agent and samples this machine once, which is what a person runs first.

use anyhow::Result;

use crate::util::{cargo, exec};

pub fn run() -> Result<()> {
    exec(cargo(&["build", "--quiet", "-p", "bakery-agent"]))?;
    let agent = crate::util::workspace_root().join("target/debug/bakery-agent");
    let mut once = std::process::Command::new(agent);
    once.arg("--once");
    exec(once)
}
