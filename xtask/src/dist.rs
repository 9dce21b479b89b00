//! `cargo xtask dist`: builds the release binaries the container image ships,
//! into `target/dist/<target-triple>/`, and names the one list of them.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util::{cargo, exec, workspace_root};

/// The binaries in the image, defined once. The Dockerfile copies exactly
/// these and the chart runs only these (both checked by tests below), so a
/// renamed binary breaks `cargo test`, not the image or a cluster.
pub const BINARIES: &[&str] = &["bakery-agent", "bakery-collector"];

/// Builds [`BINARIES`] for `target` (default: this machine) with the release
/// profile and `--locked`, copies them to `target/dist/<triple>/` and prints
/// each path on stdout, one per line.
pub fn run(target: Option<&str>) -> Result<()> {
    let triple = match target {
        Some(triple) => triple.to_string(),
        None => host_triple()?,
    };
    let mut build = cargo(&["build", "--release", "--locked", "--target", &triple]);
    for binary in BINARIES {
        build.args(["--bin", binary]);
    }
    exec(build)?;

    let target_dir = target_dir();
    let dist = target_dir.join("dist").join(&triple);
    std::fs::create_dir_all(&dist).with_context(|| format!("creating {}", dist.display()))?;
    for binary in BINARIES {
        let built = target_dir.join(&triple).join("release").join(binary);
        let shipped = dist.join(binary);
        std::fs::copy(&built, &shipped)
            .with_context(|| format!("copying {} to {}", built.display(), shipped.display()))?;
        println!("{}", shipped.display());
    }
    Ok(())
}

/// Cargo's target directory: $CARGO_TARGET_DIR, else `<workspace>/target`.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

fn host_triple() -> Result<String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let output = Command::new(&rustc).arg("-vV").output().with_context(|| format!("could not run {rustc} -vV"))?;
    if !output.status.success() {
        bail!("{rustc} -vV failed with {}", output.status);
    }
    let text = String::from_utf8_lossy(&output.stdout);
    parse_host_triple(&text).map(str::to_string).with_context(|| format!("no `host:` line in `{rustc} -vV`: {text}"))
}

/// The `host:` line of `rustc -vV`.
fn parse_host_triple(rustc_vv: &str) -> Option<&str> {
    rustc_vv.lines().find_map(|line| line.strip_prefix("host:")).map(str::trim).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// One Dockerfile instruction: its keyword (upper case) and the rest, with
    /// line continuations joined and comment lines dropped.
    #[derive(Debug, PartialEq, Eq)]
    struct Instruction {
        keyword: String,
        arguments: String,
    }

    /// Splits a Dockerfile into instructions (Dockerfile reference: a `\` at the
    /// end of a line continues it; lines starting with `#` are comments, also
    /// inside a continued instruction).
    fn instructions(dockerfile: &str) -> Vec<Instruction> {
        let mut out = Vec::new();
        let mut current = String::new();
        for line in dockerfile.lines() {
            let trimmed = line.trim();
            if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
                continue;
            }
            match trimmed.strip_suffix('\\') {
                Some(continued) => {
                    current.push_str(continued);
                    current.push(' ');
                }
                None => {
                    current.push_str(trimmed);
                    let text = std::mem::take(&mut current);
                    let (keyword, arguments) = text.split_once(char::is_whitespace).unwrap_or((&text, ""));
                    out.push(Instruction { keyword: keyword.to_uppercase(), arguments: arguments.trim().to_string() });
                }
            }
        }
        out
    }

    /// What the final image stage COPYs from another stage: (source file names,
    /// destination) per instruction.
    fn final_stage_copies(dockerfile: &str) -> Vec<(Vec<String>, String)> {
        let all = instructions(dockerfile);
        let last_from = all.iter().rposition(|i| i.keyword == "FROM").unwrap_or(0);
        all[last_from..]
            .iter()
            .filter(|i| i.keyword == "COPY")
            .filter_map(|i| {
                let words: Vec<&str> = i.arguments.split_whitespace().collect();
                if !words.iter().any(|w| w.starts_with("--from=")) {
                    return None;
                }
                let paths: Vec<&str> = words.into_iter().filter(|w| !w.starts_with("--")).collect();
                let (destination, sources) = paths.split_last()?;
                let names = sources.iter().map(|s| s.rsplit('/').next().unwrap_or(s).to_string()).collect();
                Some((names, destination.to_string()))
            })
            .collect()
    }

    fn read(relative: &str) -> String {
        let path = workspace_root().join(relative);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
    }

    #[test]
    fn the_image_copies_exactly_the_binaries_dist_builds() {
        let copies = final_stage_copies(&read("Dockerfile"));
        let copied: Vec<String> = copies.iter().flat_map(|(names, _)| names.clone()).collect();
        let mut expected: Vec<String> = BINARIES.iter().map(|b| b.to_string()).collect();
        let mut actual = copied.clone();
        expected.sort();
        actual.sort();
        assert_eq!(
            actual, expected,
            "the Dockerfile's final stage must COPY --from the build stage exactly dist::BINARIES (each once)"
        );
        for (_, destination) in &copies {
            assert_eq!(destination, "/usr/local/bin/", "binaries go to /usr/local/bin/, where the chart runs them");
        }
    }

    #[test]
    fn the_image_builds_its_binaries_with_xtask_dist() {
        let build_steps: Vec<Instruction> =
            instructions(&read("Dockerfile")).into_iter().filter(|i| i.keyword == "RUN").collect();
        assert!(
            build_steps.iter().any(|i| i.arguments.contains("cargo xtask dist --target")),
            "the build stage must run `cargo xtask dist`, so the image gets what BINARIES lists"
        );
    }

    #[test]
    fn the_chart_runs_only_binaries_the_image_has() {
        let templates = workspace_root().join("charts/bakery/templates");
        let mut used = BTreeSet::new();
        for entry in std::fs::read_dir(&templates).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
            for (index, prefix) in text.match_indices("/usr/local/bin/") {
                let rest = &text[index + prefix.len()..];
                let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
                used.insert(name);
            }
        }
        let shipped: BTreeSet<String> = BINARIES.iter().map(|b| b.to_string()).collect();
        assert_eq!(used, shipped, "charts/bakery/templates must run exactly the binaries in dist::BINARIES");
    }

    #[test]
    fn no_jemalloc_unless_built_for_16k_pages() {
        // jemalloc fixes its page size when it is built (4 KiB on the usual
        // builders) and aborts at start on a kernel with larger pages, such as
        // the Pi 5's (Raspberry Pi OS's kernel_2712 uses 16 KiB pages); the
        // image uses the system allocator. Bringing jemalloc in needs
        // JEMALLOC_SYS_WITH_LG_PAGE=16.
        let lock = read("Cargo.lock");
        let has_jemalloc = lock.lines().any(|l| l.starts_with("name = ") && l.contains("jemalloc"));
        if has_jemalloc {
            assert!(
                read("Dockerfile").contains("JEMALLOC_SYS_WITH_LG_PAGE=16"),
                "jemalloc is in Cargo.lock: the Dockerfile must build it with JEMALLOC_SYS_WITH_LG_PAGE=16"
            );
        }
    }

    #[test]
    fn dockerfile_instructions_join_continuations_and_skip_comments() {
        let text = "# syntax=docker/dockerfile:1\nFROM a AS build\nRUN one \\\n    # a comment inside\n    two\n\ncopy --from=build /out/x /out/y /usr/local/bin/\n";
        assert_eq!(
            instructions(text),
            vec![
                Instruction { keyword: "FROM".into(), arguments: "a AS build".into() },
                Instruction { keyword: "RUN".into(), arguments: "one  two".into() },
                Instruction { keyword: "COPY".into(), arguments: "--from=build /out/x /out/y /usr/local/bin/".into() },
            ]
        );
    }

    #[test]
    fn only_the_final_stage_copies_from_other_stages_count() {
        let text = "FROM rust AS build\nCOPY . .\nCOPY --from=other /x /y/\nFROM scratch\nCOPY --from=build \\\n  /out/a \\\n  /out/b /usr/local/bin/\nCOPY LICENSE /\n";
        assert_eq!(final_stage_copies(text), vec![(vec!["a".to_string(), "b".to_string()], "/usr/local/bin/".into())]);
    }

    #[test]
    fn host_triple_comes_from_rustc_vv() {
        let text = "rustc 1.95.0 (abc 2026-05-01)\nbinary: rustc\nhost: aarch64-unknown-linux-gnu\nrelease: 1.95.0\n";
        assert_eq!(parse_host_triple(text), Some("aarch64-unknown-linux-gnu"));
        assert_eq!(parse_host_triple("binary: rustc\n"), None);
    }
}
