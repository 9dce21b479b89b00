//! Tidy checks that `cargo test` enforces: conventions a reviewer would
//! otherwise have to remember (module docs, no bare `#[ignore]`, shared lints,
//! the layering of crates that ARCHITECTURE.md writes down).

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use crate::util::workspace_root;

    /// Every tracked Rust source except generated code and build output.
    fn rust_sources() -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![workspace_root()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                if path.is_dir() {
                    if !matches!(name.as_str(), "target" | ".git" | ".venv" | "gen" | "fixtures" | "node_modules") {
                        stack.push(path);
                    }
                } else if name.ends_with(".rs") {
                    out.push(path);
                }
            }
        }
        out.sort();
        out
    }

    fn relative(path: &Path) -> String {
        path.strip_prefix(workspace_root()).unwrap_or(path).display().to_string()
    }

    #[test]
    fn every_module_starts_with_a_doc_line_saying_what_it_owns() {
        let missing: Vec<String> = rust_sources()
            .into_iter()
            .filter(|path| {
                let text = std::fs::read_to_string(path).unwrap();
                let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or_default();
                !first.starts_with("//!")
            })
            .map(|p| relative(&p))
            .collect();
        assert!(missing.is_empty(), "these files do not start with a `//!` line saying what they own: {missing:#?}");
    }

    #[test]
    fn no_test_is_ignored_without_a_reason() {
        let bare: Vec<String> = rust_sources()
            .into_iter()
            .filter(|path| path.file_name().is_some_and(|n| n != "tidy.rs"))
            .filter(|path| std::fs::read_to_string(path).unwrap().lines().any(|l| l.trim() == "#[ignore]"))
            .map(|p| relative(&p))
            .collect();
        assert!(bare.is_empty(), "a bare #[ignore] hides a test; give a reason and make CI run it: {bare:#?}");
    }

    /// The workspace's members (their folders), from the root manifest.
    fn members() -> Vec<String> {
        let manifest: toml::Table = read_manifest(&workspace_root().join("Cargo.toml"));
        let members = manifest["workspace"]["members"].as_array().expect("a members list");
        members.iter().map(|m| m.as_str().expect("a member folder").to_string()).collect()
    }

    fn read_manifest(path: &Path) -> toml::Table {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        text.parse().unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn every_crate_uses_the_workspace_lints() {
        let root = workspace_root();
        let members = members();
        assert!(!members.is_empty());
        for member in members {
            let text = std::fs::read_to_string(root.join(&member).join("Cargo.toml")).unwrap();
            assert!(
                text.contains("[lints]\nworkspace = true"),
                "{member}/Cargo.toml must have `[lints] workspace = true` so the shared lints apply"
            );
        }
    }

    /// ARCHITECTURE.md's "Dependency rules" as a table: each crate and the crates of bakery it may
    /// depend on. A change of layering changes both, in one commit.
    ///
    /// - `proto` owns the wire format and depends on nothing of ours; `signals` is the receiver's
    ///   meaning of the wire, over `proto`.
    /// - `agent`, `collector` and `top` depend on `proto` (and `signals`), never on each other;
    ///   only the collector feeds `diagnosis`, which depends on nothing of ours.
    /// - `lab` (kernel objects, processes, test peers) depends on nothing of ours.
    /// - `demo` uses `diagnosis`, `proto`, `top` and `lab`; nothing depends on `demo`.
    /// - `tests` may use every library except `demo`.
    /// - `xtask` uses none.
    const MAY_USE: &[(&str, &[&str])] = &[
        ("bakery-proto", &[]),
        ("bakery-signals", &["bakery-proto"]),
        ("bakery-agent", &["bakery-proto", "bakery-signals"]),
        ("bakery-collector", &["bakery-proto", "bakery-signals", "bakery-diagnosis"]),
        ("bakery-diagnosis", &[]),
        ("bakery-top", &["bakery-proto", "bakery-signals"]),
        ("bakery-lab", &[]),
        ("bakery-demo", &["bakery-diagnosis", "bakery-proto", "bakery-top", "bakery-lab"]),
        (
            "bakery-tests",
            &[
                "bakery-proto",
                "bakery-signals",
                "bakery-agent",
                "bakery-collector",
                "bakery-diagnosis",
                "bakery-top",
                "bakery-lab",
            ],
        ),
        ("xtask", &[]),
    ];

    /// What a crate's own tests may use besides (`[dev-dependencies]`): the lab, everywhere but in
    /// the lab itself; and the demo's tests read the state it publishes back through the
    /// collector's cluster watch.
    const TESTS_MAY_ALSO_USE: &[(&str, &[&str])] = &[("bakery-demo", &["bakery-collector"])];

    /// The `bakery-*` crates a manifest table (`[dependencies]`, ...) names.
    fn ours(table: Option<&toml::Value>) -> Vec<String> {
        let table = table.and_then(toml::Value::as_table);
        table.into_iter().flat_map(|t| t.keys()).filter(|name| name.starts_with("bakery-")).cloned().collect()
    }

    #[test]
    fn each_crate_depends_only_on_the_crates_the_dependency_rules_allow() {
        let root = workspace_root();
        let mut broken = Vec::new();
        let mut placed = Vec::new();
        for member in members() {
            let manifest = read_manifest(&root.join(&member).join("Cargo.toml"));
            let name = manifest["package"]["name"].as_str().expect("a package name").to_string();
            let Some((_, may_use)) = MAY_USE.iter().find(|(crate_name, _)| *crate_name == name) else {
                broken.push(format!(
                    "{name} ({member}/) is not in the dependency rules: add it to ARCHITECTURE.md and MAY_USE"
                ));
                continue;
            };
            placed.push(name.clone());
            let tests_also: &[&str] =
                TESTS_MAY_ALSO_USE.iter().find(|(crate_name, _)| *crate_name == name).map_or(&[], |(_, also)| also);
            let mut tables = vec![("dependencies", ours(manifest.get("dependencies")))];
            tables.push(("build-dependencies", ours(manifest.get("build-dependencies"))));
            tables.push(("dev-dependencies", ours(manifest.get("dev-dependencies"))));
            // Platform-specific tables ([target.'cfg(..)'.dependencies]) follow the same rules.
            for target in manifest.get("target").and_then(toml::Value::as_table).into_iter().flat_map(|t| t.values()) {
                for kind in ["dependencies", "build-dependencies", "dev-dependencies"] {
                    tables.push((kind, ours(target.get(kind))));
                }
            }
            for (kind, used) in tables {
                for dependency in used {
                    let allowed = may_use.contains(&dependency.as_str())
                        || (kind == "dev-dependencies"
                            && ((dependency == "bakery-lab" && name != "bakery-lab")
                                || tests_also.contains(&dependency.as_str())));
                    if !allowed {
                        broken.push(format!("{name} has {dependency} in [{kind}]"));
                    }
                }
            }
        }
        assert!(
            broken.is_empty(),
            "the crates' dependencies break the layering in ARCHITECTURE.md's \"Dependency rules\" \
             (change the rules, MAY_USE and the manifest together): {broken:#?}"
        );
        let unplaced: Vec<&str> =
            MAY_USE.iter().map(|(name, _)| *name).filter(|name| !placed.iter().any(|p| p == name)).collect();
        assert!(unplaced.is_empty(), "MAY_USE names crates that are not workspace members: {unplaced:?}");
    }

    #[test]
    fn the_dependency_rules_say_nothing_depends_on_the_demo() {
        let text = std::fs::read_to_string(workspace_root().join("ARCHITECTURE.md")).unwrap();
        let rules = text.split("## Dependency rules").nth(1).expect("a \"Dependency rules\" section");
        let rules = rules.split("\n## ").next().unwrap_or_default();
        for rule in ["nothing depends on `demo`", "`xtask` uses none", "`lab`"] {
            assert!(rules.contains(rule), "the dependency rules no longer say {rule:?}; MAY_USE follows them");
        }
        assert!(MAY_USE.iter().all(|(_, may_use)| !may_use.contains(&"bakery-demo")));
    }
}
