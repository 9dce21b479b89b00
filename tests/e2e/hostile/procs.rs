//! What the hostile tests run besides the shared processes of `bakery_tests::procs` (re-exported
//! here): `bakery-top` against the collector, and credential files in the test's work directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bakery_lab::binaries::built_binary;
pub use bakery_lab::wait_until;
pub use bakery_tests::procs::*;

/// Writes `text` to `dir/name`; the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `bakery-top --collector URL --token-file FILE ARGS...`.
pub fn bakery_top(collector: &str, token_file: &Path, args: &[&str]) -> Output {
    let binary = built_binary("bakery-top", "bakery-top").unwrap();
    Command::new(binary)
        .args(["--collector", collector])
        .arg("--token-file")
        .arg(token_file)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}
