//! The workspace's binaries (`bakery-agent`, `bakery-fake-apiserver`, ...), found next to the
//! running executable and brought up to date with cargo once per process, so that a test never
//! runs a stale binary.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use crate::{Error, Result};

/// Binaries this process has built already.
static BUILT: Mutex<Option<HashSet<(String, String)>>> = Mutex::new(None);

/// `target/<profile>/<bin>`, built with `cargo build -p <package> --bin <bin>` the first time
/// this process asks for it.
pub fn built_binary(package: &str, bin: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(|source| Error::File {
        action: "locating",
        path: "/proc/self/exe".into(),
        source,
    })?;
    // A test executable lives in target/<profile>/deps/, a binary in target/<profile>/ itself.
    let exe_dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    let profile_dir = if exe_dir.file_name().is_some_and(|name| name == "deps") {
        exe_dir.parent().map(PathBuf::from).unwrap_or_default()
    } else {
        exe_dir
    };
    let path = profile_dir.join(bin);
    let mut built = BUILT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let built = built.get_or_insert_with(HashSet::new);
    // `cargo test` builds a package's own binaries before its integration tests run (and says
    // which package runs in CARGO_PKG_NAME), so those are fresh already.
    let fresh_from_cargo_test =
        std::env::var("CARGO_PKG_NAME").is_ok_and(|running| running == package) && path.is_file();
    if !fresh_from_cargo_test && built.insert((package.to_string(), bin.to_string())) {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut command = Command::new(&cargo);
        // Any directory of the workspace will do; this crate's is one.
        command.args(["build", "--quiet", "-p", package, "--bin", bin]).current_dir(env!("CARGO_MANIFEST_DIR"));
        match profile_dir.file_name().and_then(|name| name.to_str()) {
            Some("debug") | None => {}
            Some(profile) => {
                command.args(["--profile", profile]);
            }
        }
        let output = command
            .output()
            .map_err(|source| Error::Spawn { program: cargo.to_string_lossy().into_owned(), source })?;
        if !output.status.success() {
            built.remove(&(package.to_string(), bin.to_string()));
            return Err(Error::Build {
                package: package.to_string(),
                bin: bin.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
    }
    if !path.is_file() {
        return Err(Error::File {
            action: "finding the built binary",
            path,
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    Ok(path)
}
