//! `cargo xtask ci`: what CI runs, and `codegen`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::util::{cargo, exec, is_root, workspace_root};

/// The end-to-end tests mostly wait on processes, sockets and timers, so they
/// run with more threads than the machine has cores; each one bounds its own
/// time, and tests that need the CPU to themselves serialise on a lock.
const E2E_TEST_THREADS: &str = "4";

/// The demo's root tests each build the whole cluster of namespaces (one fits on
/// a machine, its names are fixed) and bound their own time, so they run one at a
/// time, beside the end-to-end tests.
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
    // The demo's tests and the end-to-end tests run side by side, as they did when they were one
    // test binary: both mostly wait on processes, sockets and timers. Both are built first so
    // that neither waits on the other's build; the demo's output goes to a log printed when it
    // ends, so that the two do not interleave.
    step("test builds", exec(cargo(&["test", "-p", "bakery-demo", "-p", "bakery-tests", "--no-run"])));
    let mut demo = cargo(&["test", "-p", "bakery-demo", "--no-fail-fast", "--", "--test-threads", DEMO_TEST_THREADS]);
    demo.args(skip_root);
    let demo_log = workspace_root().join("target").join("ci-demo-tests.log");
    let demo = spawn_logged(demo, &demo_log);
    let mut e2e = cargo(&["test", "-p", "bakery-tests", "--no-fail-fast", "--", "--test-threads", E2E_TEST_THREADS]);
    e2e.args(skip_root);
    step("end-to-end tests", exec(e2e));
    step("demo tests", demo.and_then(|child| wait_logged(child, &demo_log)));
    step("chart", crate::chart::run(false));
    eprintln!("xtask: ci took {} s", started.elapsed().as_secs());
    if !failed.is_empty() {
        anyhow::bail!("failed: {}", failed.join(", "));
    }
    Ok(())
}

/// Starts `cmd` with its output (stdout and stderr) going to `log`.
fn spawn_logged(mut cmd: Command, log: &Path) -> Result<Child> {
    eprintln!("xtask: running {cmd:?} (output to {} until it ends)", log.display());
    let file = std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let err = file.try_clone().with_context(|| format!("cannot reopen {}", log.display()))?;
    cmd.stdout(Stdio::from(file)).stderr(Stdio::from(err));
    cmd.spawn().with_context(|| format!("could not start {cmd:?}"))
}

/// Waits for a child started by [`spawn_logged`], prints its log, and fails with its status.
fn wait_logged(mut child: Child, log: &Path) -> Result<()> {
    let status = child.wait().context("cannot wait for the demo's tests")?;
    let output = std::fs::read_to_string(log).unwrap_or_else(|e| format!("(cannot read {}: {e})\n", log.display()));
    eprintln!("xtask: the demo's tests ({}):\n{output}", log.display());
    if !status.success() {
        bail!("the demo's tests failed with {status}");
    }
    Ok(())
}

/// Regenerates the committed proto code by running its staleness test in bless mode.
pub fn codegen() -> Result<()> {
    let mut cmd = cargo(&["test", "-p", "bakery-proto", "--test", "codegen"]);
    cmd.env("BAKERY_BLESS", "1");
    exec(cmd)
}
