//! The cgroup layout the pods and the node cgroup share: mounts, paths, and CPU and memory files.
//!
//! - [`mounts`]: where each hierarchy is mounted below the cgroup root (`<sys-root>/fs/cgroup`).
//! - [`paths`]: which pod cgroup a process is in (`/proc/<pid>/cgroup`), and a cgroup's
//!   directory below the root.
//! - [`stats`]: the files that hold a cgroup's CPU and memory on v1 and v2, their parsers, and
//!   the pods' reader of them.
//!
//! Readers: the pods ([`crate::pods`]) and the node's own cgroup ([`crate::node_cgroup`]).

pub mod mounts;
pub mod paths;
pub mod stats;

/// The cgroup version a cgroup path came from, which says where its accounting files live and
/// how they are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CgroupVersion {
    /// A v1 controller hierarchy (`N:controllers:/path`, N > 0).
    V1,
    /// The v2 unified hierarchy (`0::/path`).
    V2,
}

impl CgroupVersion {
    /// `v1` or `v2`, as people write it.
    pub fn name(self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::V2 => "v2",
        }
    }
}
