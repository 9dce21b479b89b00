//! `cargo xtask demo`: the README's first command. Builds the binaries the mini-bakery runs
//! (bakery-demo, bakery-agent, bakery-collector, bakery-top and the Kubernetes API double from
//! bakery-lab), then
//! runs `bakery-demo` with the same arguments: it installs what is missing (apt packages, oha),
//! builds the scenario's cluster in namespaces, runs the load and reports the hog. Subcommands go
//! through the same way: `cargo xtask demo campaign --count 30 --seed 7` runs
//! `bakery-demo campaign --count 30 --seed 7` (random scenarios against their ground truth).
//!
//! `cargo xtask bench observer` (wired in `bench.rs`) goes through [`bench_observer`]: the same
//! cluster with release binaries, oha's requests per second with the agents sampling (at 1 Hz, or
//! at `--interval`) against the agents stopped.

use std::path::Path;
use std::process::Command;

use anyhow::Result;

use crate::util::{cargo, exec, is_root, workspace_root};

/// The packages and binaries the demo runs, in one `cargo build`.
const BUILD: &[&str] = &[
    "-p",
    "bakery-demo",
    "-p",
    "bakery-agent",
    "-p",
    "bakery-collector",
    "-p",
    "bakery-top",
    "-p",
    "bakery-lab",
    "--bin",
    "bakery-demo",
    "--bin",
    "bakery-agent",
    "--bin",
    "bakery-collector",
    "--bin",
    "bakery-top",
    "--bin",
    "bakery-fake-apiserver",
];

fn build(release: bool) -> Result<()> {
    let mut args = vec!["build"];
    if release {
        args.push("--release");
    }
    args.extend_from_slice(BUILD);
    exec(cargo(&args))
}

fn demo_binary(profile: &str) -> std::path::PathBuf {
    workspace_root().join("target").join(profile).join("bakery-demo")
}

fn run_demo(binary: &Path, args: &[String]) -> Result<()> {
    let mut demo = Command::new(binary);
    demo.current_dir(workspace_root()).args(args);
    eprintln!("xtask: running {demo:?}");
    let status = demo.status()?;
    // The demo's exit code says whether the verdict matched (0), did not (1), or the demo could
    // not run (2): pass it on.
    match status.code() {
        Some(0) => Ok(()),
        Some(code) => std::process::exit(code),
        None => anyhow::bail!("bakery-demo was killed ({status})"),
    }
}

/// `cargo xtask demo [ARGS]`: builds, then runs `bakery-demo ARGS`.
pub fn run(args: &[String]) -> Result<()> {
    if !is_root() {
        eprintln!(
            "xtask: the demo builds network namespaces, cgroups and iptables rules and needs root; \
             building now, then bakery-demo will say how to run it"
        );
    }
    build(false)?;
    run_demo(&demo_binary("debug"), args)
}

/// `cargo xtask bench observer [ARGS]`: builds in release, then runs `bakery-demo bench-observer ARGS`.
pub fn bench_observer(args: &[String]) -> Result<()> {
    if !is_root() {
        anyhow::bail!("`cargo xtask bench observer` builds the simulated cluster: run it as root");
    }
    build(true)?;
    let mut full = vec!["bench-observer".to_string()];
    full.extend_from_slice(args);
    run_demo(&demo_binary("release"), &full)
}
