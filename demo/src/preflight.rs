//! Before anything is built: root, and the tools the cluster is made with. Missing Debian packages
//! (iproute2, iptables, nginx, util-linux's unshare, procps' sysctl) are installed with apt-get, and
//! oha with `cargo install oha --locked`, so a fresh machine needs one command. Errors say plainly
//! what is missing and how to get it.

use std::process::{Command, Stdio};

use bakery_lab::command::find_command;

/// Fails with what to do when not root.
pub fn require_root() -> Result<(), String> {
    if bakery_lab::is_root() {
        return Ok(());
    }
    Err("the demo builds network namespaces, veth pairs, cgroups and iptables rules inside its own \
         namespaces, which needs root. Run it as root, e.g. `sudo -E env PATH=$PATH cargo xtask demo` \
         or `sudo target/debug/bakery-demo`. Nothing is configured in the root network namespace, and \
         everything is removed on exit."
        .to_string())
}

/// Debian packages and a command each provides.
fn packages(needs_nginx: bool) -> Vec<(&'static str, &'static str)> {
    let mut wanted =
        vec![("iproute2", "ip"), ("iptables", "iptables-restore"), ("util-linux", "unshare"), ("procps", "sysctl")];
    if needs_nginx {
        wanted.push(("nginx", "nginx"));
    }
    wanted
}

/// Makes sure every tool is there, installing what is missing when `install`.
pub fn tools(needs_nginx: bool, install: bool) -> Result<(), String> {
    let missing: Vec<&str> = packages(needs_nginx)
        .into_iter()
        .filter(|(_, command)| find_command(command).is_none())
        .map(|(p, _)| p)
        .collect();
    if !missing.is_empty() {
        if !install {
            return Err(format!("missing packages: run `apt-get install -y {}`", missing.join(" ")));
        }
        eprintln!("bakery-demo: installing {} with apt-get", missing.join(", "));
        run_visible(Command::new("apt-get").args(["update", "-qq"]))?;
        let mut command = Command::new("apt-get");
        command
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive");
        run_visible(&mut command)?;
    }
    if crate::oha::locate().is_none() {
        if !install {
            return Err("oha is missing: run `cargo install oha --locked`".to_string());
        }
        eprintln!("bakery-demo: installing oha with `cargo install oha --locked` (a few minutes, once)");
        let cargo = std::env::var("CARGO").ok().or_else(|| find_command("cargo").map(|p| p.display().to_string()));
        let cargo = cargo
            .or_else(|| std::env::var("HOME").ok().map(|h| format!("{h}/.cargo/bin/cargo")))
            .ok_or("oha is missing and cargo was not found: install Rust, then `cargo install oha --locked`")?;
        run_visible(Command::new(cargo).args(["install", "oha", "--locked"]))?;
        if crate::oha::locate().is_none() {
            return Err("oha was installed but is not on PATH nor in ~/.cargo/bin".to_string());
        }
    }
    Ok(())
}

/// Runs a command with its output on the terminal (its own progress), failing with its status.
fn run_visible(command: &mut Command) -> Result<(), String> {
    // Their output goes to stderr, so `--json` keeps stdout clean.
    let status = command
        .stdin(Stdio::null())
        .stdout(std::io::stderr())
        .status()
        .map_err(|e| format!("cannot run {:?}: {e}", command.get_program()))?;
    if status.success() { Ok(()) } else { Err(format!("{:?} failed with {status}", command.get_program())) }
}
