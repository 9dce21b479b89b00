//! The workspace's built binaries (`bakery-agent`, `bakery-test-pod`), found
//! next to the running test executable and brought up to date with cargo
//! once per test run, so a test never runs a stale binary.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use anyhow::{Context, bail};

/// Binaries already built by this test process.
static BUILT: Mutex<Option<HashSet<(String, String)>>> = Mutex::new(None);

/// `target/<profile>/<bin>`, built with `cargo build -p <package> --bin <bin>`
/// the first time a test of this process asks for it.
///
pub fn built_binary(package: &str, bin: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the test executable")?;
    // A test executable lives in target/<profile>/deps/, a binary such as
    // bakery-bench in target/<profile>/ itself.
    let exe_dir = exe.parent().with_context(|| format!("{} has no parent directory", exe.display()))?;
    let profile_dir = if exe_dir.file_name().is_some_and(|name| name == "deps") {
        exe_dir.parent().with_context(|| format!("{} has no target/<profile> above it", exe.display()))?
    } else {
        exe_dir
    }
    .to_path_buf();
    let path = profile_dir.join(bin);
    let mut built = BUILT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let built = built.get_or_insert_with(HashSet::new);
    // `cargo test` builds a package's own binaries before its integration
    // tests run, so those are fresh already.
    let fresh_from_cargo_test = package == env!("CARGO_PKG_NAME") && path.is_file();
    if !fresh_from_cargo_test && built.insert((package.to_string(), bin.to_string())) {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut command = Command::new(cargo);
        command.args(["build", "--quiet", "-p", package, "--bin", bin]).current_dir(env!("CARGO_MANIFEST_DIR"));
        match profile_dir.file_name().and_then(|name| name.to_str()) {
            Some("debug") | None => {}
            Some(profile) => {
                command.args(["--profile", profile]);
            }
        }
        let output = command.output().with_context(|| format!("running cargo to build {bin}"))?;
        if !output.status.success() {
            built.remove(&(package.to_string(), bin.to_string()));
            bail!("cargo build -p {package} --bin {bin} failed:\n{}", String::from_utf8_lossy(&output.stderr));
        }
    }
    if !path.is_file() {
        bail!("{} is missing after building it", path.display());
    }
    Ok(path)
}
