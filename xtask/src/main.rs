//! `cargo xtask`: the one entry point for bakery's automation (CI, codegen, benchmarks, packaging).
//!
//! xtask depends on none of bakery's libraries; it drives them through cargo
//! and the built binaries, so it never needs their heavy dependencies.

use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "bakery's automation. Run `cargo xtask <command> --help` for details.")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Everything CI runs: format, clippy (warnings are errors), and every test.
    Ci,
    /// Regenerate proto/src/gen from the .proto files (no system protoc needed).
    Codegen,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Task::Ci => ci(),
        Task::Codegen => codegen(),
    }
}

fn cargo(args: &[&str]) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(args);
    cmd
}

fn run(mut cmd: Command) -> Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd.status().with_context(|| format!("could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn ci() -> Result<()> {
    run(cargo(&["fmt", "--all", "--check"]))?;
    run(cargo(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    run(cargo(&["test", "--workspace", "--no-fail-fast"]))?;
    Ok(())
}

fn codegen() -> Result<()> {
    let mut cmd = cargo(&["test", "-p", "bakery-proto", "--test", "codegen"]);
    cmd.env("BAKERY_BLESS", "1");
    run(cmd)
}
