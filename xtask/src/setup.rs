//! Installs the system packages the tests, benchmarks and demo need, so that
//! a fresh Debian machine works from one command.

use std::process::Command;

use anyhow::Result;

use crate::util::{exec, is_root};

/// Debian packages and the command each one provides (checked before installing).
const PACKAGES: &[(&str, &str)] = &[("iproute2", "ip"), ("iptables", "iptables"), ("procps", "ps")];

/// Installs missing packages with apt-get when running as root; otherwise
/// says what is missing and how to get it.
pub fn system_packages() -> Result<()> {
    packages(PACKAGES)
}

/// Installs those of `wanted` (package, command it provides) whose command is missing.
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
