//! Where each cgroup hierarchy is mounted below the cgroup root
//! (`<sys-root>/fs/cgroup`), for the readers of cgroup files: pods'
//! accounting ([`crate::pods::cgroup_stats`]) and the node's own cgroup
//! ([`crate::node_cgroup`]).
//!
//! The mount table is not part of a fixture tree (nor of `/host/sys` in a
//! pod), so the known mount names are tried in turn and the first one under
//! which the wanted file exists is the hierarchy.

use std::path::{Path, PathBuf};

/// A hierarchy whose accounting files bakery reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hierarchy {
    /// The v1 `cpuacct` controller (`cpuacct.usage`, `cpuacct.stat`).
    V1Cpuacct,
    /// The v1 `memory` controller.
    V1Memory,
    /// The v2 unified hierarchy.
    V2,
}

/// `cpuacct` is often co-mounted with `cpu` as `cpu,cpuacct` (with `cpu`
/// and `cpuacct` symlinks to it), or mounted on its own.
const V1_CPUACCT_MOUNTS: &[&str] = &["cpuacct", "cpu,cpuacct", "cpuacct,cpu", "cpu"];
const V1_MEMORY_MOUNTS: &[&str] = &["memory"];
/// v2 is the cgroup root itself, or `unified` on a hybrid layout.
const V2_MOUNTS: &[&str] = &["", "unified"];

impl Hierarchy {
    /// The names the hierarchy may be mounted under, below the cgroup root,
    /// in the order they are tried.
    pub fn mount_names(self) -> &'static [&'static str] {
        match self {
            Self::V1Cpuacct => V1_CPUACCT_MOUNTS,
            Self::V1Memory => V1_MEMORY_MOUNTS,
            Self::V2 => V2_MOUNTS,
        }
    }
}

/// The directory of cgroup `relative` (e.g. `docker/<id>`; empty for the
/// root) in `hierarchy` under the cgroup root `root`: the first mount name
/// under which `<root>/<mount>/<relative>/<marker>` exists. The marker is a
/// file only that hierarchy has (`cpuacct.stat`, `memory.usage_in_bytes`,
/// `cpu.stat`), so a `cpu`-only v1 mount or an empty directory is passed by.
pub fn locate(root: &Path, hierarchy: Hierarchy, relative: &str, marker: &str) -> Option<PathBuf> {
    let relative = relative.trim_start_matches('/');
    hierarchy.mount_names().iter().map(|mount| below(root, &[mount, relative])).find(|dir| dir.join(marker).is_file())
}

/// `root` with the non-empty `parts` appended: joining an empty part would
/// leave a trailing `/` in paths that people read.
fn below(root: &Path, parts: &[&str]) -> PathBuf {
    let mut dir = root.to_path_buf();
    for part in parts.iter().filter(|part| !part.is_empty()) {
        dir.push(part);
    }
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(root: &Path, relative: &str) {
        let path = root.join(relative);
        std::fs::create_dir_all(path.parent().expect("a file in a directory")).expect("create the directories");
        std::fs::write(path, "").expect("write the file");
    }

    struct Case {
        name: &'static str,
        files: &'static [&'static str],
        hierarchy: Hierarchy,
        relative: &'static str,
        expected: Option<&'static str>,
    }

    #[test]
    fn the_first_mount_holding_the_marker_is_the_hierarchy() {
        let cases = [
            Case {
                name: "cpuacct on its own",
                files: &["cpuacct/lxc/n1/cpuacct.stat"],
                hierarchy: Hierarchy::V1Cpuacct,
                relative: "lxc/n1",
                expected: Some("cpuacct/lxc/n1"),
            },
            Case {
                name: "co-mounted; the `cpu` name is tried later",
                files: &["cpu,cpuacct/lxc/n1/cpuacct.stat", "cpu/lxc/n1/cpuacct.stat"],
                hierarchy: Hierarchy::V1Cpuacct,
                relative: "/lxc/n1",
                expected: Some("cpu,cpuacct/lxc/n1"),
            },
            Case {
                name: "a cpu-only v1 mount has the directory but not the marker",
                files: &["cpu/lxc/n1/cpu.shares"],
                hierarchy: Hierarchy::V1Cpuacct,
                relative: "lxc/n1",
                expected: None,
            },
            Case {
                name: "v2 at the root",
                files: &["k3d/cpu.stat"],
                hierarchy: Hierarchy::V2,
                relative: "k3d",
                expected: Some("k3d"),
            },
            Case {
                name: "v2 on a hybrid layout",
                files: &["unified/k3d/cpu.stat"],
                hierarchy: Hierarchy::V2,
                relative: "k3d",
                expected: Some("unified/k3d"),
            },
            Case {
                name: "the root cgroup itself",
                files: &["memory/memory.usage_in_bytes"],
                hierarchy: Hierarchy::V1Memory,
                relative: "/",
                expected: Some("memory"),
            },
            Case {
                name: "nothing there",
                files: &[],
                hierarchy: Hierarchy::V1Memory,
                relative: "lxc/n1",
                expected: None,
            },
        ];
        for Case { name, files, hierarchy, relative, expected } in cases {
            let root = tempfile::tempdir().expect("temp dir");
            for file in files {
                touch(root.path(), file);
            }
            let marker = match hierarchy {
                Hierarchy::V1Cpuacct => "cpuacct.stat",
                Hierarchy::V1Memory => "memory.usage_in_bytes",
                Hierarchy::V2 => "cpu.stat",
            };
            let found = locate(root.path(), hierarchy, relative, marker);
            assert_eq!(found, expected.map(|dir| below(root.path(), &[dir])), "{name}");
            // Compared as text too: `Path` equality ignores a trailing `/`, people reading it do not.
            let text = found.map(|dir| dir.display().to_string());
            assert!(text.is_none_or(|dir| !dir.ends_with('/')), "{name}");
        }
    }
}
