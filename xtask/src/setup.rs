//! Installs the system packages the tests, benchmarks and demo need, so that
//! a fresh Debian machine works from one command.

use std::process::Command;

use anyhow::Result;

use crate::util::{exec, is_root};

/// Debian packages and the command each one provides (checked before installing).
const PACKAGES: &[(&str, &str)] = &[("iproute2", "ip"), ("iptables", "iptables"), ("procps", "ps")];

/// What the end-to-end tests run besides bakery: the demo's reverse proxy,
/// the TUI's real terminal, the real Prometheus the export is scraped by (its
/// package's promtool checks the chart's alerting rules in `cargo xtask
/// chart`), and the real `kubectl` the Kubernetes API double is checked with (any `kubectl`
/// on PATH will do; Debian's `kubernetes-client` when there is none).
/// Installed up front so that tests never race each other for the apt lock.
const TEST_PACKAGES: &[(&str, &str)] =
    &[("nginx", "nginx"), ("tmux", "tmux"), ("prometheus", "prometheus"), ("kubernetes-client", "kubectl")];

/// Everything `cargo xtask ci` needs on a fresh machine: the packages above
/// and oha (from crates.io; compiling it takes a few minutes, once).
pub fn ci_tools() -> Result<()> {
    if !is_root() {
        eprintln!(
            "xtask: not root: not installing test tools (nginx, tmux, prometheus, kubectl, oha); the root_* tests \
             and the kubectl tests need them"
        );
        return Ok(());
    }
    packages(PACKAGES)?;
    packages(TEST_PACKAGES)?;
    let cargo_bin = std::env::var_os("HOME").map(|home| std::path::PathBuf::from(home).join(".cargo/bin/oha"));
    if !has_command("oha") && !cargo_bin.is_some_and(|path| path.is_file()) {
        eprintln!("xtask: installing oha with `cargo install oha --locked` (a few minutes on 2 cores, once)");
        exec(crate::util::cargo(&["install", "oha", "--locked"]))?;
    }
    Ok(())
}

/// Installs those of `wanted` with apt-get when running as root (otherwise
/// says what is missing and how to get it): (package, command it provides) whose command is missing.
pub fn packages(wanted: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = wanted.iter().filter(|(_, cmd)| !has_command(cmd)).map(|(pkg, _)| *pkg).collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        anyhow::bail!(
            "missing packages {missing:?}: run `sudo apt-get install -y {}`, or run this command as root",
            missing.join(" ")
        );
    }
    eprintln!("xtask: installing {missing:?} with apt-get");
    let mut update = Command::new("apt-get");
    update.args(["update", "-qq"]);
    exec(update)?;
    let mut install = Command::new("apt-get");
    install
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive");
    exec(install)
}

/// Whether `cmd` is on PATH (or in the sbin folders root has).
pub fn has_command(cmd: &str) -> bool {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':').chain(["/usr/sbin", "/sbin"]).any(|dir| std::path::Path::new(dir).join(cmd).is_file())
}
