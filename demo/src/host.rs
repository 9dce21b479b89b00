//! The machine the cluster is built on: running `ip` and `iptables-restore`, the cgroup layout,
//! processes, the run lock, and removing what a killed earlier run left behind. Everything the demo
//! makes carries [`PREFIX`] (namespaces, temp directories) or lives under [`CGROUP_DIR`] (cgroups),
//! which is how leftovers are found.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::plan::{CGROUP_DIR, PREFIX};
use crate::{Error, Result};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
pub const NETNS_DIR: &str = "/run/netns";
/// The lock that keeps two demos from building the same namespaces at once.
pub const LOCK_FILE: &str = "/run/bakery-demo.lock";

/// Runs `program args`, feeding `stdin` if given; fails with its stderr.
pub fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let mut command = Command::new(program);
    command.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = command.spawn().map_err(|e| Error::Io(format!("cannot run {program}: {e}")))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).map_err(|e| Error::Io(format!("writing to {program}: {e}")))?;
    }
    let output = child.wait_with_output().map_err(|e| Error::Io(format!("waiting for {program}: {e}")))?;
    if !output.status.success() {
        return Err(Error::Io(format!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `ip <args>`.
pub fn ip(args: &[&str]) -> Result<String> {
    run("ip", args, None)
}

/// Runs a program inside a network namespace (`ip netns exec`).
pub fn in_netns(netns: &str, program: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let mut full = vec!["netns", "exec", netns, program];
    full.extend_from_slice(args);
    run("ip", &full, stdin)
}

/// Sets a sysctl inside a network namespace (the `net.*` ones are per namespace).
pub fn sysctl(netns: &str, key: &str, value: &str) -> Result<()> {
    in_netns(netns, "sysctl", &["-qw", &format!("{key}={value}")], None).map(drop)
}

/// Whether a command is on PATH or in root's sbin folders.
pub fn has_command(command: &str) -> bool {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':').chain(["/usr/sbin", "/sbin", "/usr/bin"]).any(|dir| Path::new(dir).join(command).is_file())
}

/// True when the effective user is root (the second uid of `/proc/self/status`).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(2)).map(|u| u == "0")
        })
        .unwrap_or(false)
}

/// Where pod and node cgroups go on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupLayout {
    /// cgroup v1: the cpuacct and memory controller hierarchies (what the agent reads pods from).
    V1 { hierarchies: Vec<PathBuf> },
    /// cgroup v2: the unified hierarchy.
    V2 { root: PathBuf },
}

impl CgroupLayout {
    pub fn detect() -> Result<Self> {
        let root = Path::new(CGROUP_ROOT);
        let cpuacct = ["cpuacct", "cpu,cpuacct", "cpuacct,cpu"]
            .iter()
            .map(|name| root.join(name))
            .find(|dir| dir.join("cpuacct.usage").is_file());
        let memory = Some(root.join("memory")).filter(|dir| dir.join("memory.usage_in_bytes").is_file());
        if let (Some(cpuacct), Some(memory)) = (cpuacct, memory) {
            return Ok(Self::V1 { hierarchies: vec![cpuacct, memory] });
        }
        if root.join("cgroup.controllers").is_file() {
            return Ok(Self::V2 { root: root.to_path_buf() });
        }
        Err(Error::Io(format!("no cgroup v1 cpuacct and memory controllers and no cgroup v2 under {CGROUP_ROOT}")))
    }

    pub fn hierarchies(&self) -> Vec<PathBuf> {
        match self {
            Self::V1 { hierarchies } => hierarchies.clone(),
            Self::V2 { root } => vec![root.clone()],
        }
    }

    /// The directories of the cgroup `relative` in every hierarchy.
    pub fn dirs(&self, relative: &str) -> Vec<PathBuf> {
        self.hierarchies().into_iter().map(|h| h.join(relative)).collect()
    }

    /// Creates `relative` in every hierarchy, with (on v2) the cpu and memory controllers enabled
    /// down to it.
    pub fn create(&self, relative: &str) -> Result<()> {
        for hierarchy in self.hierarchies() {
            let dir = hierarchy.join(relative);
            std::fs::create_dir_all(&dir).map_err(|e| Error::Io(format!("creating cgroup {}: {e}", dir.display())))?;
            if let Self::V2 { .. } = self {
                let mut levels: Vec<&Path> =
                    dir.ancestors().skip(1).take_while(|l| l.starts_with(&hierarchy)).collect();
                levels.reverse();
                for level in levels {
                    // Best effort: usage is accounted without it; only memory.current would be missing.
                    let _ = std::fs::write(level.join("cgroup.subtree_control"), "+cpu +memory");
                }
            }
        }
        Ok(())
    }

    /// Limits the memory of the cgroup `relative` (made by [`Self::create`]) to `bytes`: v1
    /// `memory.limit_in_bytes` in the memory hierarchy, v2 `memory.max`. Set before any process
    /// joins, so nothing is reclaimed or killed by setting it.
    pub fn set_memory_limit(&self, relative: &str, bytes: u64) -> Result<()> {
        let file = match self {
            Self::V1 { .. } => "memory.limit_in_bytes",
            Self::V2 { .. } => "memory.max",
        };
        let limit =
            self.dirs(relative).into_iter().map(|dir| dir.join(file)).find(|path| path.is_file()).ok_or_else(|| {
                Error::Io(format!("no {file} for cgroup {relative}: is the memory controller enabled?"))
            })?;
        std::fs::write(&limit, bytes.to_string()).map_err(|e| Error::Io(format!("writing {}: {e}", limit.display())))
    }

    /// Kills every process in the demo's cgroup tree and removes it, deepest first.
    pub fn remove_tree(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for hierarchy in self.hierarchies() {
            let top = hierarchy.join(CGROUP_DIR);
            if top.is_dir()
                && let Err(e) = remove_cgroup_tree(&top)
            {
                problems.push(e.to_string());
            }
        }
        problems
    }
}

fn remove_cgroup_tree(dir: &Path) -> Result<()> {
    let children: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect())
        .unwrap_or_default();
    for child in children {
        remove_cgroup_tree(&child)?;
    }
    let procs = dir.join("cgroup.procs");
    let pids = std::fs::read_to_string(&procs).unwrap_or_default();
    for pid in pids.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let emptied = wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&procs).map(|p| p.trim().is_empty()).unwrap_or(true)
    });
    if !emptied {
        return Err(Error::Io(format!("{} did not empty", dir.display())));
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::Io(format!("removing cgroup {}: {e}", dir.display())))
        }
        _ => Ok(()),
    }
}

/// Polls a kernel state that sends no notification (a killed process leaving a cgroup or a
/// namespace) until `condition` holds, at most `timeout`; false when it never did.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !condition() {
        if Instant::now() >= deadline {
            return false;
        }
        pause(Duration::from_millis(10));
    }
    true
}

/// A short pause in a polling loop of the orchestrating thread (which runs no async runtime).
#[allow(clippy::disallowed_methods)]
pub fn pause(duration: Duration) {
    std::thread::sleep(duration);
}

/// Sends `signal` to `pid`, ignoring a process that is already gone.
pub fn signal(pid: u32, signal: Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), signal);
    }
}

/// The pids whose parent is `parent`, from `/proc/<pid>/stat`.
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| parent_of(*pid) == Some(parent))
        .collect()
}

/// The parent pid: the 4th field of `/proc/<pid>/stat`, after the command in parentheses.
pub fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_parent(&stat)
}

fn parse_parent(stat: &str) -> Option<u32> {
    let after_command = &stat[stat.rfind(')')? + 1..];
    after_command.split_whitespace().nth(1)?.parse().ok()
}

/// Network namespaces whose names carry the demo's prefix.
pub fn demo_netns() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else { return Vec::new() };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(PREFIX))
        .collect();
    names.sort();
    names
}

/// Kills every process in the namespace, then deletes it (its interfaces, addresses, routes and
/// iptables rules go with it).
pub fn remove_netns(netns: &str) -> Result<()> {
    if let Ok(pids) = ip(&["netns", "pids", netns]) {
        for pid in pids.split_whitespace().filter_map(|p| p.parse::<u32>().ok()) {
            signal(pid, Signal::SIGKILL);
        }
    }
    ip(&["netns", "del", netns]).map(drop)
}

/// The run directories of earlier runs, in the temp folder.
pub fn demo_run_dirs() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return Vec::new() };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&format!("{PREFIX}run-")))
        .map(|e| e.path())
        .collect()
}

/// Removes everything an earlier, killed run left behind: its processes (through the namespaces
/// and cgroups they are in), namespaces, cgroups and run directories. Returns what it removed.
pub fn remove_leftovers(layout: &CgroupLayout) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let mut problems = Vec::new();
    // Processes first, in every namespace, so none holds another namespace or cgroup.
    for netns in demo_netns() {
        if let Ok(pids) = ip(&["netns", "pids", &netns]) {
            for pid in pids.split_whitespace().filter_map(|p| p.parse::<u32>().ok()) {
                signal(pid, Signal::SIGKILL);
            }
        }
    }
    for netns in demo_netns() {
        match remove_netns(&netns) {
            Ok(()) => removed.push(format!("network namespace {netns}")),
            Err(e) => problems.push(e.to_string()),
        }
    }
    for hierarchy in layout.hierarchies() {
        if hierarchy.join(CGROUP_DIR).exists() {
            removed.push(format!("cgroups {}", hierarchy.join(CGROUP_DIR).display()));
        }
    }
    problems.extend(layout.remove_tree());
    for dir in demo_run_dirs() {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => removed.push(format!("run directory {}", dir.display())),
            Err(e) => problems.push(format!("removing {}: {e}", dir.display())),
        }
    }
    if problems.is_empty() { Ok(removed) } else { Err(Error::Io(problems.join("; "))) }
}

/// Holds the run lock for the life of the value.
#[derive(Debug)]
pub struct RunLock {
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl RunLock {
    /// Takes the lock, or says which process holds it.
    pub fn acquire() -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(LOCK_FILE)
            .map_err(|e| Error::Io(format!("opening {LOCK_FILE}: {e}")))?;
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(mut lock) => {
                let _ = lock.set_len(0);
                let _ = writeln!(lock, "{}", std::process::id());
                Ok(Self { _lock: lock })
            }
            Err((_, _)) => {
                let holder = std::fs::read_to_string(LOCK_FILE).unwrap_or_default();
                Err(Error::Io(format!(
                    "another bakery-demo is running (pid {}); only one cluster fits on a machine",
                    holder.trim()
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parent_pid_survives_odd_command_names() {
        assert_eq!(parse_parent("42 (bash) S 7 42 42 0 -1"), Some(7));
        assert_eq!(parse_parent("42 (a) b (c) R 9 42"), Some(9));
        assert_eq!(parse_parent("garbage"), None);
    }

    #[test]
    fn this_process_is_a_child_of_its_parent() {
        let me = std::process::id();
        let parent = parent_of(me).unwrap();
        assert!(children_of(parent).contains(&me));
    }
}
