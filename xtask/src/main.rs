//! `cargo xtask`: the one entry point for bakery's automation (CI, demo, codegen, benchmarks, packaging).
//!
//! xtask depends on none of bakery's libraries; it drives them through cargo
//! and the built binaries, so it never pulls in their heavy dependencies.

mod bench;
mod chart;
mod ci;
mod demo;
mod dist;
mod setup;
mod tidy;
mod util;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "bakery's automation. Run `cargo xtask <command> --help` for details.")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Everything CI runs: installs what the tests need (as root), then
    /// format check, clippy (warnings are errors) and every test.
    Ci,
    /// The main demo: builds everything, then runs `bakery-demo` with these arguments (root):
    /// the five-node mini-bakery, the load, and the hog report. `cargo xtask demo -- --help`.
    Demo {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Benchmarks against a peer or baseline in the same run (see BENCHMARKS.md).
    #[command(subcommand)]
    Bench(bench::Bench),
    /// Regenerate proto/src/gen from the .proto files (no system protoc needed).
    Codegen,
    /// Lint, render, validate and test the Helm chart (charts/bakery) with the
    /// real Helm engine, in a pinned Python venv at .venv (no helm binary needed).
    Chart {
        /// First rewrite the chart README's generated parts (the values table
        /// from values.schema.json and values.yaml, the OCI install commands).
        #[arg(long)]
        write_readme: bool,
    },
    /// Build the release binaries the container image ships into
    /// target/dist/<target>/ and print their paths.
    Dist {
        /// Rust target triple to build for (default: this machine's).
        #[arg(long, value_name = "TRIPLE")]
        target: Option<String>,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Task::Ci => ci::run(),
        Task::Demo { args } => demo::run(&args),
        Task::Bench(which) => bench::run(which),
        Task::Codegen => ci::codegen(),
        Task::Chart { write_readme } => chart::run(write_readme),
        Task::Dist { target } => dist::run(target.as_deref()),
    }
}
