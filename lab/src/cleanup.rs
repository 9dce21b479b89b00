//! Who owns which names on the machine, and removing what a killed run left behind.
//!
//! - The demo (one at a time, under its run lock): network namespaces named [`DEMO_PREFIX`]`*`,
//!   the cgroup tree [`DEMO_CGROUP`], and run directories `bkd-run-*` in the temp folder. All of
//!   them are a killed demo's when the next demo starts.
//! - The tests (many processes at once, each with parallel tests): network namespaces
//!   `bkt<pid>-<n>-<name>-<role>` and kubepods pod cgroups whose UID starts with the owner's pid
//!   in hex and carries [`TEST_UID_MARK`]. Only those of a dead owner are leftovers.

use std::path::{Path, PathBuf};

use crate::cgroup::CgroupLayout;
use crate::{Error, Result, netns};

/// The start of every name the demo gives a namespace or a run directory.
pub const DEMO_PREFIX: &str = "bkd-";
/// The cgroup (in every hierarchy) that holds all of the demo's cgroups.
pub const DEMO_CGROUP: &str = "bakery-demo";
/// The start of every namespace name the tests make, followed by the owner's pid.
pub const TEST_PREFIX: &str = "bkt";
/// The middle groups of every pod UID the tests make; the first group is the owner's pid in hex.
pub const TEST_UID_MARK: &str = "-0bac-4e57-";
/// The QoS levels of the kubepods hierarchy (the cgroupfs driver's layout), where test pods live.
const KUBEPODS_LEVELS: [&str; 3] = ["kubepods", "kubepods/burstable", "kubepods/besteffort"];

/// The demo's namespaces on the machine, sorted.
pub fn demo_netns() -> Vec<String> {
    netns::names().into_iter().filter(|name| name.starts_with(DEMO_PREFIX)).collect()
}

/// The prefix of a demo run directory's name in the temp folder.
pub fn demo_run_dir_prefix() -> String {
    format!("{DEMO_PREFIX}run-")
}

/// The run directories of earlier demos, in the temp folder.
pub fn demo_run_dirs() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return Vec::new() };
    let prefix = demo_run_dir_prefix();
    entries.flatten().filter(|e| e.file_name().to_string_lossy().starts_with(&prefix)).map(|e| e.path()).collect()
}

/// What of the demo exists on the machine: namespaces, cgroups, run directories.
pub fn demo_leftovers() -> Vec<String> {
    let mut found: Vec<String> = demo_netns().into_iter().map(|n| format!("network namespace {n}")).collect();
    if let Ok(layout) = CgroupLayout::detect() {
        found.extend(
            layout.dirs(DEMO_CGROUP).into_iter().filter(|d| d.exists()).map(|d| format!("cgroup {}", d.display())),
        );
    }
    found.extend(demo_run_dirs().into_iter().map(|d| format!("run directory {}", d.display())));
    found
}

/// Removes everything of the demo on the machine (call it holding the demo's run lock): its
/// processes (through the namespaces and cgroups they are in), namespaces, cgroups and run
/// directories. Returns what it removed, or every step that failed.
pub fn remove_demo_leftovers(layout: &CgroupLayout) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let mut problems = Vec::new();
    let names = demo_netns();
    // Processes first, in every namespace, so that none holds another namespace or a cgroup.
    for name in &names {
        for pid in netns::pids(name).unwrap_or_default() {
            crate::process::signal(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
    for name in names {
        match netns::remove(&name) {
            Ok(()) => removed.push(format!("network namespace {name}")),
            Err(error) => problems.push(error),
        }
    }
    let cgroups: Vec<PathBuf> = layout.dirs(DEMO_CGROUP).into_iter().filter(|d| d.exists()).collect();
    match layout.remove(DEMO_CGROUP) {
        Ok(()) => removed.extend(cgroups.iter().map(|d| format!("cgroups {}", d.display()))),
        Err(error) => problems.push(error),
    }
    for dir in demo_run_dirs() {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => removed.push(format!("run directory {}", dir.display())),
            Err(source) => problems.push(Error::File { action: "removing", path: dir, source }),
        }
    }
    if problems.is_empty() { Ok(removed) } else { Err(Error::Several { problems }) }
}

/// The name of test namespace number `n` of this process: `bkt<pid>-<n>-<name>-<role>`.
pub fn test_netns_name(n: u32, name: &str, role: &str) -> String {
    format!("{TEST_PREFIX}{}-{n}-{name}-{role}", std::process::id())
}

/// The UID of test pod number `n` of this process: the pid in hex, [`TEST_UID_MARK`], then `n`
/// and `nanos` so that runs of the same pid differ (a UUID's shape, as the kubelet's).
pub fn test_pod_uid(n: u32, nanos: u128) -> String {
    format!("{:08x}{TEST_UID_MARK}{:04x}-{:012x}", std::process::id(), 0x8000 | (n & 0x0fff), nanos & 0xffff_ffff_ffff)
}

/// The pid that made a test namespace, from its name.
fn netns_owner(name: &str) -> Option<u32> {
    name.strip_prefix(TEST_PREFIX)?.split('-').next()?.parse().ok()
}

/// The pid that made a test pod, from its cgroup's name (`pod<uid>`).
fn pod_owner(cgroup_name: &str) -> Option<u32> {
    let uid = cgroup_name.strip_prefix("pod").filter(|uid| uid.get(8..19) == Some(TEST_UID_MARK))?;
    u32::from_str_radix(uid.get(..8)?, 16).ok()
}

/// True for a pid other than this process's that `/proc` no longer lists.
fn dead(owner: u32) -> bool {
    owner != std::process::id() && !Path::new(&format!("/proc/{owner}")).exists()
}

/// Removes the test namespaces and pod cgroups whose owner has died (a killed test run's);
/// a live owner's are left to it. Returns what it removed, or every step that failed.
pub fn remove_test_leftovers() -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let mut problems = Vec::new();
    for name in netns::names().into_iter().filter(|name| netns_owner(name).is_some_and(dead)) {
        match netns::remove(&name) {
            Ok(()) => removed.push(format!("network namespace {name}")),
            Err(error) => problems.push(error),
        }
    }
    if let Ok(layout) = CgroupLayout::detect() {
        for hierarchy in layout.hierarchies() {
            for level in KUBEPODS_LEVELS {
                let Ok(entries) = std::fs::read_dir(hierarchy.join(level)) else { continue };
                for entry in entries.flatten() {
                    if !pod_owner(&entry.file_name().to_string_lossy()).is_some_and(dead) {
                        continue;
                    }
                    match crate::cgroup::remove_tree(&entry.path()) {
                        Ok(()) => removed.push(format!("cgroup {}", entry.path().display())),
                        Err(error) => problems.push(error),
                    }
                }
            }
        }
    }
    if problems.is_empty() { Ok(removed) } else { Err(Error::Several { problems }) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_names_carry_their_owner() {
        let me = std::process::id();
        assert_eq!(netns_owner(&test_netns_name(3, "discovery", "pod")), Some(me));
        let uid = test_pod_uid(5, 0xabcdef);
        assert_eq!(uid.len(), 36, "a UUID's length: {uid}");
        assert_eq!(pod_owner(&format!("pod{uid}")), Some(me));
        assert!(!dead(me), "this process's names are never leftovers");
    }

    #[test]
    fn other_names_are_not_the_tests() {
        for name in ["bkd-n-master-01", "bktx-1-a-pod", "cni-1234"] {
            assert_eq!(netns_owner(name), None, "{name}");
        }
        for name in ["pod6f1c0000-1111-2222-3333-444455556666", "besteffort", "pod"] {
            assert_eq!(pod_owner(name), None, "{name}");
        }
    }

    #[test]
    fn a_pid_that_proc_does_not_list_is_dead() {
        // Above the kernel's largest pid (2^22).
        assert!(dead(5_000_000));
    }
}
