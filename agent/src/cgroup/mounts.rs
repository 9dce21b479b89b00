//! Where each cgroup hierarchy is mounted below the cgroup root (`<sys-root>/fs/cgroup`).
//!
//! The mount table is not part of a fixture tree (nor of `/host/sys` in a pod), so the known
//! mount names are tried in turn: [`locate`] finds a cgroup's directory by a file only its
//! hierarchy has (the node cgroup, looked for until found), and [`MountPreference`] remembers
//! which name worked, so that the pods' files, read every sample, try it first.

use std::path::{Path, PathBuf};

use crate::cgroup::CgroupVersion;
use crate::cgroup::paths;

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
    /// Every hierarchy, in the order a cgroup is looked for in them.
    pub const ALL: [Hierarchy; 3] = [Hierarchy::V1Cpuacct, Hierarchy::V1Memory, Hierarchy::V2];

    /// The names the hierarchy may be mounted under, below the cgroup root,
    /// in the order they are tried.
    pub fn mount_names(self) -> &'static [&'static str] {
        match self {
            Self::V1Cpuacct => V1_CPUACCT_MOUNTS,
            Self::V1Memory => V1_MEMORY_MOUNTS,
            Self::V2 => V2_MOUNTS,
        }
    }

    /// The hierarchy that holds the CPU accounting of a cgroup of `version`.
    pub fn cpu(version: CgroupVersion) -> Self {
        match version {
            CgroupVersion::V1 => Self::V1Cpuacct,
            CgroupVersion::V2 => Self::V2,
        }
    }

    /// The hierarchy that holds the memory accounting of a cgroup of `version`.
    pub fn memory(version: CgroupVersion) -> Self {
        match version {
            CgroupVersion::V1 => Self::V1Memory,
            CgroupVersion::V2 => Self::V2,
        }
    }

    /// A file that every cgroup of this hierarchy has and no other hierarchy's
    /// cgroups do, so that a `cpu`-only v1 mount or an empty directory is
    /// passed by.
    pub fn marker(self) -> &'static str {
        match self {
            Self::V1Cpuacct => "cpuacct.stat",
            Self::V1Memory => "memory.usage_in_bytes",
            Self::V2 => "cpu.stat",
        }
    }
}

/// The directory of cgroup `relative` (e.g. `docker/<id>`; empty for the
/// root) in `hierarchy` under the cgroup root `root`: the first mount name
/// under which `<root>/<mount>/<relative>/<marker>` exists (see
/// [`Hierarchy::marker`]).
pub fn locate(root: &Path, hierarchy: Hierarchy, relative: &str) -> Option<PathBuf> {
    let relative = paths::relative(relative);
    hierarchy
        .mount_names()
        .iter()
        .map(|mount| paths::below(root, &[mount, relative]))
        .find(|dir| dir.join(hierarchy.marker()).is_file())
}

/// The mount name of each hierarchy that held the last file found in it, by
/// index into [`Hierarchy::mount_names`]: every pod of a node is under the
/// same mounts, so the next pod tries that one first.
#[derive(Debug, Clone, Copy, Default)]
pub struct MountPreference {
    v1_cpuacct: usize,
    v1_memory: usize,
    v2: usize,
}

impl MountPreference {
    /// The index of the mount name of `hierarchy` that worked last (the first one before any did).
    pub fn preferred(&self, hierarchy: Hierarchy) -> usize {
        match hierarchy {
            Hierarchy::V1Cpuacct => self.v1_cpuacct,
            Hierarchy::V1Memory => self.v1_memory,
            Hierarchy::V2 => self.v2,
        }
    }

    /// The mount names of `hierarchy` to try, with their indices: the
    /// preferred one first, then the others in their order.
    pub fn order(&self, hierarchy: Hierarchy) -> impl Iterator<Item = (usize, &'static str)> + use<> {
        let mounts = hierarchy.mount_names();
        let preferred = self.preferred(hierarchy);
        std::iter::once(preferred)
            .chain((0..mounts.len()).filter(move |&index| index != preferred))
            .map(move |index| (index, mounts[index]))
    }

    /// Remembers that mount name `index` of `hierarchy` held a file.
    pub fn found(&mut self, hierarchy: Hierarchy, index: usize) {
        match hierarchy {
            Hierarchy::V1Cpuacct => self.v1_cpuacct = index,
            Hierarchy::V1Memory => self.v1_memory = index,
            Hierarchy::V2 => self.v2 = index,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::paths::below;

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
            let found = locate(root.path(), hierarchy, relative);
            assert_eq!(found, expected.map(|dir| below(root.path(), &[dir])), "{name}");
            // Compared as text too: `Path` equality ignores a trailing `/`, people reading it do not.
            let text = found.map(|dir| dir.display().to_string());
            assert!(text.is_none_or(|dir| !dir.ends_with('/')), "{name}");
        }
    }
}
