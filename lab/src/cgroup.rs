//! Making and removing cgroups where this machine mounts the hierarchies that account CPU and
//! memory: cgroup v1's `cpuacct` and `memory` controllers, else the v2 unified hierarchy.
//!
//! The hierarchies are found in `/proc/self/mountinfo`, the kernel's own list of this process's
//! mounts (each cgroup v1 mount names its controllers in its super options), not by trying mount
//! names. The agent tries names instead (`agent/src/cgroup/mounts.rs`) because it reads fixture
//! trees and a host's `/sys` mounted in a pod, where no mount table describes them; the lab only
//! makes cgroups on the machine it runs on, so it asks the kernel and keeps no list of names
//! that could drift from the agent's. A cgroup the lab makes where the agent's names do not
//! reach fails the agent's tests, which is what they are for.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::{Error, Result, process, wait_until};

/// How long killed processes may take to leave a cgroup before its removal fails.
const EMPTY_TIMEOUT: Duration = Duration::from_secs(10);

/// Where cgroups go on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupLayout {
    /// cgroup v1: the `cpuacct` and `memory` controllers' hierarchies (what the agent reads a
    /// pod's CPU and memory from on v1).
    V1 { cpuacct: PathBuf, memory: PathBuf },
    /// cgroup v2: the unified hierarchy.
    V2 { root: PathBuf },
}

/// One line of `/proc/<pid>/mountinfo`: `ID PARENT MAJOR:MINOR ROOT MOUNT_POINT OPTIONS
/// [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS`, where a cgroup v1 mount's super options name its
/// controllers.
#[derive(Debug, PartialEq, Eq)]
struct Mount {
    mount_point: PathBuf,
    fs_type: String,
    super_options: Vec<String>,
}

fn parse_mount(line: &str) -> Option<Mount> {
    let (before, after) = line.split_once(" - ")?;
    let mount_point = before.split(' ').nth(4)?;
    let mut after = after.split(' ');
    let fs_type = after.next()?.to_string();
    let super_options = after.nth(1).unwrap_or_default().split(',').map(str::to_string).collect();
    Some(Mount { mount_point: PathBuf::from(unescape(mount_point)), fs_type, super_options })
}

/// The kernel writes a space, tab, newline or backslash in a mount point as `\` and three octal
/// digits.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal =
            bytes.get(i + 1..i + 4).filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal.and_then(|digits| u8::from_str_radix(std::str::from_utf8(digits).ok()?, 8).ok()) {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl CgroupLayout {
    /// This machine's layout, from `/proc/self/mountinfo`.
    pub fn detect() -> Result<Self> {
        let path = PathBuf::from("/proc/self/mountinfo");
        let text = std::fs::read_to_string(&path).map_err(|source| Error::File { action: "reading", path, source })?;
        Self::from_mountinfo(&text).ok_or(Error::NoCgroups)
    }

    /// The layout a mount table describes: v1 when both the `cpuacct` and `memory` controllers
    /// are mounted (also on a hybrid layout, where v2 holds no controller), else v2.
    pub fn from_mountinfo(text: &str) -> Option<Self> {
        let mounts: Vec<Mount> = text.lines().filter_map(parse_mount).collect();
        let v1 = |controller: &str| {
            mounts
                .iter()
                .find(|m| m.fs_type == "cgroup" && m.super_options.iter().any(|o| o == controller))
                .map(|m| m.mount_point.clone())
        };
        if let (Some(cpuacct), Some(memory)) = (v1("cpuacct"), v1("memory")) {
            return Some(Self::V1 { cpuacct, memory });
        }
        mounts.iter().find(|m| m.fs_type == "cgroup2").map(|m| Self::V2 { root: m.mount_point.clone() })
    }

    /// The hierarchies a cgroup is made in.
    pub fn hierarchies(&self) -> Vec<PathBuf> {
        match self {
            Self::V1 { cpuacct, memory } => vec![cpuacct.clone(), memory.clone()],
            Self::V2 { root } => vec![root.clone()],
        }
    }

    /// The directories of cgroup `relative` (e.g. `kubepods/besteffort/pod<uid>`), one per
    /// hierarchy.
    pub fn dirs(&self, relative: &str) -> Vec<PathBuf> {
        self.hierarchies().into_iter().map(|hierarchy| hierarchy.join(relative)).collect()
    }

    /// Makes cgroup `relative` (and the levels above it) in every hierarchy; on v2 the cpu and
    /// memory controllers are enabled on every level above it, so that it has their files.
    pub fn create(&self, relative: &str) -> Result<()> {
        for hierarchy in self.hierarchies() {
            let dir = hierarchy.join(relative);
            std::fs::create_dir_all(&dir).map_err(|source| Error::File {
                action: "creating cgroup",
                path: dir.clone(),
                source,
            })?;
            if let Self::V2 { .. } = self {
                let mut levels: Vec<&Path> =
                    dir.ancestors().skip(1).take_while(|level| level.starts_with(&hierarchy)).collect();
                levels.reverse();
                for level in levels {
                    // Best effort: CPU time is accounted without it; only `memory.current` and
                    // the like would be missing.
                    let _ = std::fs::write(level.join("cgroup.subtree_control"), "+cpu +memory");
                }
            }
        }
        Ok(())
    }

    /// Limits the memory of cgroup `relative` (made by [`Self::create`]) to `bytes`: v1
    /// `memory.limit_in_bytes`, v2 `memory.max`. Set it before any process joins, so that nothing
    /// is reclaimed or killed by setting it.
    pub fn set_memory_limit(&self, relative: &str, bytes: u64) -> Result<()> {
        let file = match self {
            Self::V1 { .. } => "memory.limit_in_bytes",
            Self::V2 { .. } => "memory.max",
        };
        let limit = self
            .dirs(relative)
            .into_iter()
            .map(|dir| dir.join(file))
            .find(|path| path.is_file())
            .ok_or_else(|| Error::NoControllerFile { relative: relative.to_string(), file })?;
        std::fs::write(&limit, bytes.to_string()).map_err(|source| Error::File {
            action: "writing",
            path: limit,
            source,
        })
    }

    /// Moves process `pid` into cgroup `relative` in every hierarchy.
    pub fn join(&self, relative: &str, pid: u32) -> Result<()> {
        for dir in self.dirs(relative) {
            let procs = dir.join("cgroup.procs");
            std::fs::write(&procs, pid.to_string()).map_err(|source| Error::File {
                action: "moving a process into",
                path: procs,
                source,
            })?;
        }
        Ok(())
    }

    /// Removes cgroup `relative` and every cgroup below it in every hierarchy, deepest first,
    /// killing their processes; a cgroup that is not there is no error.
    pub fn remove(&self, relative: &str) -> Result<()> {
        let mut problems = Vec::new();
        for dir in self.dirs(relative) {
            if let Err(error) = remove_tree(&dir) {
                problems.push(error);
            }
        }
        match problems.len() {
            0 => Ok(()),
            1 => Err(problems.remove(0)),
            _ => Err(Error::Several { problems }),
        }
    }
}

/// Removes the cgroup directory `dir` and its children, deepest first: each one's processes are
/// killed, and it is removed once the kernel says it is empty.
pub fn remove_tree(dir: &Path) -> Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    let children: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect())
        .unwrap_or_default();
    for child in children {
        remove_tree(&child)?;
    }
    let procs = dir.join("cgroup.procs");
    let pids = std::fs::read_to_string(&procs).unwrap_or_default();
    for pid in pids.split_whitespace().filter_map(|pid| pid.parse().ok()) {
        process::signal(pid, Signal::SIGKILL);
    }
    wait_until(&format!("cgroup {} to empty", dir.display()), EMPTY_TIMEOUT, || {
        std::fs::read_to_string(&procs).map(|pids| pids.trim().is_empty()).unwrap_or(true)
    })?;
    match std::fs::remove_dir(dir) {
        Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::File { action: "removing cgroup", path: dir.to_path_buf(), source })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hybrid layout as systemd mounts it (the demo was built on one).
    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn each_layout_is_read_from_the_mount_table() {
        let v1 = |cpuacct: &str, memory: &str| CgroupLayout::V1 { cpuacct: cpuacct.into(), memory: memory.into() };
        let cases = [
            ("hybrid: v1 holds the controllers", HYBRID, Some(v1("/sys/fs/cgroup/cpuacct", "/sys/fs/cgroup/memory"))),
            (
                "cpu and cpuacct co-mounted, with optional fields",
                "25 24 0:22 / /sys/fs/cgroup/cpu,cpuacct rw shared:9 - cgroup cgroup rw,cpu,cpuacct\n\
                 26 24 0:23 / /sys/fs/cgroup/memory rw shared:10 - cgroup cgroup rw,memory\n",
                Some(v1("/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/memory")),
            ),
            (
                "unified only",
                "30 24 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n",
                Some(CgroupLayout::V2 { root: "/sys/fs/cgroup".into() }),
            ),
            (
                "v1 without memory falls back to v2",
                "33 31 0:30 / /sys/fs/cgroup/cpuacct rw - cgroup cgroup rw,cpuacct\n\
                 41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n",
                Some(CgroupLayout::V2 { root: "/sys/fs/cgroup/unified".into() }),
            ),
            ("a mount point with a space", "1 0 0:1 / /mnt/cg\\0402 rw - cgroup2 none rw\n", {
                Some(CgroupLayout::V2 { root: "/mnt/cg 2".into() })
            }),
            ("no cgroup at all", "22 1 0:21 / /proc rw - proc proc rw\n", None),
        ];
        for (name, text, expected) in cases {
            assert_eq!(CgroupLayout::from_mountinfo(text), expected, "{name}");
        }
    }

    #[test]
    fn a_malformed_line_is_passed_by() {
        let text = format!("garbage\n1 2 3\n{HYBRID}- -\n");
        assert!(matches!(CgroupLayout::from_mountinfo(&text), Some(CgroupLayout::V1 { .. })));
    }

    #[test]
    fn this_machine_has_a_layout() {
        let layout = CgroupLayout::detect().unwrap();
        assert!(layout.hierarchies().iter().all(|h| h.is_dir()), "{layout:?}");
    }
}
