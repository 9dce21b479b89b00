//! The host root every reader goes through (`--proc-root`, `--sys-root`).
//!
//! Nothing in the agent opens `/proc` or `/sys` directly: a fixture tree, the
//! real host and `/host/proc` inside a pod are read the same way.

use std::path::{Path, PathBuf};

/// Where the host's procfs and sysfs are mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRoots {
    pub proc: PathBuf,
    pub sys: PathBuf,
}

impl HostRoots {
    pub fn new(proc: impl Into<PathBuf>, sys: impl Into<PathBuf>) -> Self {
        Self { proc: proc.into(), sys: sys.into() }
    }

    /// The live host: `/proc` and `/sys`.
    pub fn host() -> Self {
        Self::new("/proc", "/sys")
    }

    /// `rel` under the proc root, e.g. `proc("stat")`.
    pub fn proc(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.proc.join(rel)
    }

    /// `rel` under the sys root, e.g. `sys("class/thermal")`.
    pub fn sys(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.sys.join(rel)
    }

    /// The cgroup filesystem: `<sys-root>/fs/cgroup`.
    pub fn cgroup(&self) -> PathBuf {
        self.sys.join("fs/cgroup")
    }

    /// The network namespace of the calling thread, in the agent's own `/proc` whatever the
    /// host root: the namespace an rtnetlink socket the thread opens answers for. Not a host
    /// path; only compared with one (see [`crate::iface_kind::proc_root_is_this_namespace`]).
    pub fn own_network_namespace() -> &'static Path {
        Path::new("/proc/thread-self/ns/net")
    }
}
