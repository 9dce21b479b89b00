//! `cargo xtask ci`: what CI runs, and `codegen`.

use std::time::Instant;

use anyhow::Result;

use crate::util::{cargo, exec, is_root};

/// The end-to-end tests mostly wait on processes, sockets and timers, so they
/// run with more threads than the machine has cores; each one bounds its own
/// time, and tests that need the CPU to themselves serialise on a lock.
const E2E_TEST_THREADS: &str = "4";

/// The demo's root tests each build the whole cluster of namespaces (one fits on
/// a machine) and bound their own time, so they run one at a time, in a step of
/// their own: nothing else competes for the CPU while a cluster runs.
const DEMO_TEST_THREADS: &str = "1";

pub fn run() -> Result<()> {
    crate::setup::ci_tools()?;
    let mut failed = Vec::new();
    let mut step = |name: &str, result: Result<()>| {
        if let Err(error) = result {
            eprintln!("xtask: {name} failed: {error:#}");
            failed.push(name.to_string());
        }
    };
    let started = Instant::now();
    step("rustfmt", exec(cargo(&["fmt", "--all", "--check"])));
    step("clippy", exec(cargo(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])));
    let skip_root: &[&str] = if is_root() {
        &[]
    } else {
        eprintln!("xtask: not root: skipping the root_* tests (network namespaces, cgroups); CI runs them as root");
        &["--skip", "root_"]
    };
    let mut unit = cargo(&[
        "test",
        "--workspace",
        "--exclude",
        "bakery-tests",
        "--exclude",
        "bakery-demo",
        "--no-fail-fast",
        "--",
    ]);
    unit.args(skip_root);
    step("crate tests", exec(unit));
    let mut demo = cargo(&["test", "-p", "bakery-demo", "--no-fail-fast", "--", "--test-threads", DEMO_TEST_THREADS]);
    demo.args(skip_root);
    step("demo tests", exec(demo));
    let mut e2e = cargo(&["test", "-p", "bakery-tests", "--no-fail-fast", "--", "--test-threads", E2E_TEST_THREADS]);
    e2e.args(skip_root);
    step("end-to-end tests", exec(e2e));
    step("chart", crate::chart::run());
    eprintln!("xtask: ci took {} s", started.elapsed().as_secs());
    if !failed.is_empty() {
        anyhow::bail!("failed: {}", failed.join(", "));
    }
    Ok(())
}

/// Regenerates the committed proto code by running its staleness test in bless mode.
pub fn codegen() -> Result<()> {
    let mut cmd = cargo(&["test", "-p", "bakery-proto", "--test", "codegen"]);
    cmd.env("BAKERY_BLESS", "1");
    exec(cmd)
}
