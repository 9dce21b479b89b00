//! `cargo xtask ci`: what CI runs, and `codegen`.

use anyhow::Result;

use crate::util::{cargo, exec, is_root};

pub fn run() -> Result<()> {
    crate::setup::system_packages()?;
    exec(cargo(&["fmt", "--all", "--check"]))?;
    exec(cargo(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    let mut test = cargo(&["test", "--workspace", "--no-fail-fast"]);
    if !is_root() {
        eprintln!("xtask: not root: skipping the root_* tests (network namespaces, cgroups); CI runs them as root");
        test.args(["--", "--skip", "root_"]);
    }
    exec(test)?;
    crate::chart::run()?;
    Ok(())
}

/// Regenerates the committed proto code by running its staleness test in bless mode.
pub fn codegen() -> Result<()> {
    let mut cmd = cargo(&["test", "-p", "bakery-proto", "--test", "codegen"]);
    cmd.env("BAKERY_BLESS", "1");
    exec(cmd)
}
