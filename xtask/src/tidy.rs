//! Tidy checks that `cargo test` enforces: conventions a reviewer would
//! otherwise have to remember (module docs, no bare `#[ignore]`, shared lints).

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

    #[test]
    fn every_crate_uses_the_workspace_lints() {
        let root = workspace_root();
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        let members_line = manifest.lines().find(|l| l.starts_with("members")).expect("a members line");
        let members: Vec<&str> = members_line.split('"').skip(1).step_by(2).collect();
        assert!(!members.is_empty());
        for member in members {
            let text = std::fs::read_to_string(root.join(member).join("Cargo.toml")).unwrap();
            assert!(
                text.contains("[lints]\nworkspace = true"),
                "{member}/Cargo.toml must have `[lints] workspace = true` so the shared lints apply"
            );
        }
    }
}
