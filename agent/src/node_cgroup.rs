//! The node's CPU, memory and pressure from the node's own cgroup (`--node-cgroup`).
//!
//! For nodes whose `/proc` shows the whole machine: a Kubernetes node that is a container (kind,
//! k3d, LXC), or one of the demo's namespace nodes.
//!
//! `/proc/stat`, `/proc/meminfo` and `/proc/pressure` are not namespaced: in a container they are
//! the host's. The node's cgroup holds its own accounting, and this module puts it in the shape of
//! those files, so everything downstream (wire, collector, diagnosis) reads it as a node:
//!
//! - **CPU.** The host's `/proc/stat` total line stays the time base. Process-context time becomes
//!   the cgroup's: user := cgroup user (which already includes niced tasks), nice := 0,
//!   system := cgroup system; iowait, irq, softirq and steal stay the host's; idle is the rest of
//!   the host's time, so the modes still add up to wall time × cores. Sources: v2 `cpu.stat`
//!   `user_usec`/`system_usec` (converted to USER_HZ jiffies), v1 `cpuacct.stat` `user`/`system`
//!   (already USER_HZ, Documentation/admin-guide/cgroup-v1/cpuacct.rst). Per-core lines are
//!   dropped: a cgroup has no per-core split of user and system time.
//! - **Memory.** total := the smaller of the host's MemTotal and the cgroup's limit (v2
//!   `memory.max`, `max` for none; v1 `memory.limit_in_bytes`, see
//!   [`crate::cgroup::stats::V1_NO_LIMIT`]). used := usage (v2 `memory.current`, v1
//!   `memory.usage_in_bytes`) minus inactive file cache (v2 `memory.stat` `inactive_file`, v1
//!   `total_inactive_file`): the working set, as the kubelet computes it.
//!   available := total − used. free := total − usage, the memory the cgroup has not touched at
//!   all, so that available = free + inactive file cache, as MemAvailable counts reclaimable cache
//!   in. cached := the cgroup's file cache (v2 `file`, v1 `total_cache`). buffers := 0: a cgroup
//!   does not count block-device buffers apart from its file cache. Swap stays the host's.
//!   A tighter limit on an ancestor of the node cgroup is not looked for.
//! - **Pressure.** On v2 the cgroup's `cpu.pressure`, `memory.pressure` and `io.pressure` (the
//!   format of `/proc/pressure`); v1 has no per-cgroup PSI, so there the host's.
//!
//! Everything else (thermals, frequencies, NICs, conntrack, pods) is read as without the flag.
//! The v1 hierarchies are tried before v2, as for pods: on a hybrid layout the controllers, and so
//! the accounting, are on v1. The cgroup files, their parsers and the mounts are
//! [`crate::cgroup`]'s.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Serialize, Serializer};

use crate::cgroup::CgroupVersion;
use crate::cgroup::mounts::{self, Hierarchy};
use crate::cgroup::paths;
use crate::cgroup::stats::{
    CgroupCpu, CgroupFile, CgroupMemory, parse_cpu_times, parse_memory_limit, parse_memory_stat, parse_single_u64,
    working_set,
};
use crate::cpu::{self, CpuStat, CpuTimes};
use crate::memory::{self, Memory};
use crate::node_files::NodeFiles;
use crate::pressure::{self, Pressure, Resource};
use crate::roots::HostRoots;
use crate::signal::{SignalError, SignalResult};

/// The node's CPU times: the host's time base with the cgroup's process-context time (see the
/// module docs). `last_idle` is the idle figure given for the previous reading: idle never goes
/// below it.
///
/// Why that floor is needed: interrupt time charged to the cgroup is in both its `system` and the
/// host's irq and softirq columns, and the cgroup's figures are exact run times while `/proc/stat`
/// counts ticks. When the cgroup's time plus the host's interrupt time outgrows the host's total,
/// idle holds still instead of going backwards (counters stay monotonic, as the collector's rates
/// need), and the modes add up to a little more than wall time × cores until the host's idle time
/// catches up.
pub fn node_cpu(host: &CpuTimes, cgroup: CgroupCpu, last_idle: Option<u64>) -> CpuTimes {
    let accounted = [cgroup.user, cgroup.system, host.iowait, host.irq, host.softirq, host.steal]
        .iter()
        .fold(0u64, |sum, v| sum.saturating_add(*v));
    let idle = host.total_jiffies().saturating_sub(accounted).max(last_idle.unwrap_or(0));
    CpuTimes {
        user: cgroup.user,
        nice: 0,
        system: cgroup.system,
        idle,
        iowait: host.iowait,
        irq: host.irq,
        softirq: host.softirq,
        steal: host.steal,
    }
}

/// The node's memory: the cgroup's figures within the host's (see the module docs).
pub fn node_memory(host: &Memory, cgroup: CgroupMemory) -> Memory {
    let total = cgroup.limit.map_or(host.total_bytes, |limit| limit.min(host.total_bytes));
    let used = working_set(cgroup.usage, cgroup.inactive_file);
    Memory {
        total_bytes: total,
        available_bytes: total.saturating_sub(used),
        free_bytes: total.saturating_sub(cgroup.usage),
        buffers_bytes: 0,
        cached_bytes: cgroup.file,
        swap_total_bytes: host.swap_total_bytes,
        swap_free_bytes: host.swap_free_bytes,
    }
}

/// Where the node figures of a sample came from: shown by `--once` (text and JSON), so that
/// nobody takes them for the host's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeCgroupSource {
    /// As given to `--node-cgroup`, relative to the cgroup root.
    pub path: String,
    /// `"v1"` or `"v2"`; `null` while the cgroup is not found.
    #[serde(serialize_with = "version_name")]
    pub version: Option<CgroupVersion>,
    /// The directory CPU user and system time are read from.
    pub cpu_dir: Option<PathBuf>,
    /// The directory memory is read from.
    pub memory_dir: Option<PathBuf>,
    /// The cgroup's memory limit; `null` when it has none (or memory could not be read).
    pub memory_limit_bytes: Option<u64>,
    /// `"cgroup"` (v2) or `"host"` (v1 has no per-cgroup PSI); `null` while the cgroup is not found.
    pub pressure_from: Option<PressureFrom>,
}

/// Whose pressure files a sample's pressure readings are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PressureFrom {
    Cgroup,
    Host,
}

fn version_name<S: Serializer>(version: &Option<CgroupVersion>, serializer: S) -> Result<S::Ok, S::Error> {
    match version {
        Some(version) => serializer.serialize_str(version.name()),
        None => serializer.serialize_none(),
    }
}

/// One sample's node figures, each failing on its own.
#[derive(Debug)]
pub struct NodeReading {
    pub cpu: SignalResult<CpuStat>,
    pub memory: SignalResult<Memory>,
    pub pressure: SignalResult<Vec<Pressure>>,
    pub source: NodeCgroupSource,
}

/// Where the node cgroup was found.
#[derive(Debug, Clone)]
struct Located {
    version: CgroupVersion,
    /// `None` on v1 when the cgroup is in the memory hierarchy only.
    cpu: Option<PathBuf>,
    /// `None` on v1 when the cgroup is in the cpuacct hierarchy only.
    memory: Option<PathBuf>,
}

/// Why a file of a found node cgroup is missing.
const CGROUP_FILE_GONE: &str = "the node cgroup lost this file (removed, or its controller was disabled)";
const V2_MEMORY_OFF: &str = "the memory controller is not enabled for the node cgroup (see cgroup.subtree_control of \
its parent), or it is the machine's root cgroup, which has no memory.current or memory.max";
const NO_CGROUP_PSI: &str = "no pressure files in the node cgroup: kernel without PSI (CONFIG_PSI), PSI disabled at \
boot (psi=0), or turned off for this cgroup (cgroup.pressure is 0)";

/// Reads the node's figures from its cgroup, keeping between samples where the cgroup was found
/// and the last idle figure.
#[derive(Debug)]
pub struct NodeCgroup {
    /// As given, for people.
    given: String,
    /// Relative to the cgroup root, without a leading `/` (empty: the root itself).
    relative: String,
    located: Option<Located>,
    last_idle: Option<u64>,
}

impl NodeCgroup {
    /// The cgroup `path`, relative to the cgroup root (a leading `/` is allowed, as
    /// `/proc/<pid>/cgroup` writes paths; `/` is the root itself).
    pub fn new(path: &str) -> Self {
        Self { given: path.to_string(), relative: paths::relative(path).to_string(), located: None, last_idle: None }
    }

    /// Reads the node's CPU, memory and pressure. The cgroup is looked for again at the next
    /// sample when it (or one of its files) was not found.
    pub fn read(&mut self, roots: &HostRoots, files: &mut NodeFiles) -> NodeReading {
        let root = roots.cgroup();
        if self.located.is_none() {
            self.located = locate(&root, &self.relative);
        }
        let mut source = NodeCgroupSource {
            path: self.given.clone(),
            version: None,
            cpu_dir: None,
            memory_dir: None,
            memory_limit_bytes: None,
            pressure_from: None,
        };
        let Some(located) = self.located.clone() else {
            return NodeReading {
                cpu: Err(self.not_found(&root)),
                memory: Err(self.not_found(&root)),
                pressure: Err(self.not_found(&root)),
                source,
            };
        };
        let cpu = self.read_cpu(roots, files, &located);
        let memory = read_memory(roots, files, &located, &self.relative);
        let pressure = match (located.version, &located.cpu) {
            (CgroupVersion::V2, Some(dir)) => {
                source.pressure_from = Some(PressureFrom::Cgroup);
                let mut readings = Vec::with_capacity(6);
                pressure::read_files_into(files, (dir, None), Resource::cgroup_file, NO_CGROUP_PSI, &mut readings)
                    .map(|()| readings)
            }
            _ => {
                source.pressure_from = Some(PressureFrom::Host);
                pressure::read(roots, files)
            }
        };
        let lost = |error: &SignalError| !error.is_malformed();
        if cpu.as_ref().err().is_some_and(lost) || memory.as_ref().err().is_some_and(lost) {
            self.located = None;
        }
        source.version = Some(located.version);
        source.cpu_dir = located.cpu;
        source.memory_dir = located.memory;
        let memory = memory.map(|(memory, limit)| {
            source.memory_limit_bytes = limit;
            memory
        });
        NodeReading { cpu, memory, pressure, source }
    }

    fn read_cpu(&mut self, roots: &HostRoots, files: &mut NodeFiles, located: &Located) -> SignalResult<CpuStat> {
        let host = cpu::read(roots, files)?;
        let dir = located
            .cpu
            .as_deref()
            .ok_or_else(|| not_in_hierarchy(&roots.cgroup(), Hierarchy::V1Cpuacct, &self.relative, "cpuacct"))?;
        let version = located.version;
        let file = dir.join(CgroupFile::cpu_times(version).name());
        let cgroup = files.read_parsed(&file, CGROUP_FILE_GONE, |text| parse_cpu_times(text, version))?;
        let total = node_cpu(&host.total, cgroup, self.last_idle);
        self.last_idle = Some(total.idle);
        Ok(CpuStat { total, cores: Vec::new() })
    }

    /// The error for a cgroup found in no hierarchy: an IO error rather than an absent signal, so
    /// that it is logged as a warning (the flag names something that is not there).
    fn not_found(&self, root: &Path) -> SignalError {
        let tried = |hierarchy: Hierarchy| hierarchy.mount_names().iter().map(|m| format!("{m:?}")).collect::<Vec<_>>();
        let mounts = Hierarchy::ALL.map(tried).concat();
        SignalError::Io {
            path: root.join(&self.relative),
            source: io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "no node cgroup {:?} under any of the mounts {} of the cgroup root; pass --node-cgroup as \
                     /proc/<pid>/cgroup of a process on the node names its cgroup",
                    self.given,
                    mounts.join(", ")
                ),
            ),
        }
    }
}

/// The cgroup's memory within the host's, and its limit.
fn read_memory(
    roots: &HostRoots,
    files: &mut NodeFiles,
    located: &Located,
    relative: &str,
) -> SignalResult<(Memory, Option<u64>)> {
    let host = memory::read(roots, files)?;
    let dir = located
        .memory
        .as_deref()
        .ok_or_else(|| not_in_hierarchy(&roots.cgroup(), Hierarchy::V1Memory, relative, "memory"))?;
    let version = located.version;
    let why = match version {
        CgroupVersion::V1 => CGROUP_FILE_GONE,
        CgroupVersion::V2 => V2_MEMORY_OFF,
    };
    let file = |file: CgroupFile| dir.join(file.name());
    let limit =
        files.read_parsed(&file(CgroupFile::memory_limit(version)), why, |text| parse_memory_limit(text, version))?;
    let usage = files.read_parsed(&file(CgroupFile::memory_usage(version)), why, parse_single_u64)?;
    let (inactive_file, file) =
        files.read_parsed(&file(CgroupFile::MemoryStat), why, |text| parse_memory_stat(text, version))?;
    Ok((node_memory(&host, CgroupMemory { limit, usage, inactive_file, file }), limit))
}

/// A v1 node cgroup that one of the two hierarchies lacks.
fn not_in_hierarchy(root: &Path, hierarchy: Hierarchy, relative: &str, controller: &str) -> SignalError {
    let mount = hierarchy.mount_names().first().copied().unwrap_or_default();
    SignalError::Absent {
        path: root.join(mount).join(relative),
        why: format!("the node cgroup is not in the cgroup v1 {controller} hierarchy").into(),
    }
}

/// Finds the node cgroup: in the v1 cpuacct or memory hierarchy, else in v2.
fn locate(root: &Path, relative: &str) -> Option<Located> {
    let cpuacct = mounts::locate(root, Hierarchy::V1Cpuacct, relative);
    let memory = mounts::locate(root, Hierarchy::V1Memory, relative);
    if cpuacct.is_some() || memory.is_some() {
        return Some(Located { version: CgroupVersion::V1, cpu: cpuacct, memory });
    }
    let dir = mounts::locate(root, Hierarchy::V2, relative)?;
    Some(Located { version: CgroupVersion::V2, cpu: Some(dir.clone()), memory: Some(dir) })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;

    /// `/proc/stat` columns: user nice system idle iowait irq softirq steal.
    fn host(columns: [u64; 8]) -> CpuTimes {
        let [user, nice, system, idle, iowait, irq, softirq, steal] = columns;
        CpuTimes { user, nice, system, idle, iowait, irq, softirq, steal }
    }

    #[test]
    fn node_cpu_keeps_the_host_time_base_and_idle_never_goes_back() {
        let machine = host([10_000, 500, 3_000, 50_000, 200, 0, 300, 0]);
        let cases: &[(&str, CgroupCpu, Option<u64>, CpuTimes)] = &[
            (
                "the cgroup's process time; idle is the rest of the host's time",
                CgroupCpu { user: 4_000, system: 1_000 },
                None,
                host([4_000, 0, 1_000, 58_500, 200, 0, 300, 0]),
            ),
            (
                "an idle cgroup: everything but the host's interrupt and wait time is idle",
                CgroupCpu::default(),
                None,
                host([0, 0, 0, 63_500, 200, 0, 300, 0]),
            ),
            (
                "more than the host's time (softirq counted twice): idle saturates at 0",
                CgroupCpu { user: 60_000, system: 10_000 },
                None,
                host([60_000, 0, 10_000, 0, 200, 0, 300, 0]),
            ),
            (
                "below the last idle figure: idle holds still",
                CgroupCpu { user: 4_000, system: 1_000 },
                Some(60_000),
                host([4_000, 0, 1_000, 60_000, 200, 0, 300, 0]),
            ),
        ];
        for (name, cgroup, last_idle, expected) in cases {
            let node = node_cpu(&machine, *cgroup, *last_idle);
            assert_eq!(node, *expected, "{name}");
        }
        let fits = node_cpu(&machine, CgroupCpu { user: 4_000, system: 1_000 }, None);
        assert_eq!(fits.total_jiffies(), machine.total_jiffies(), "modes add up to the host's wall time x cores");
    }

    /// A host reading and a cgroup that is part of it, both after `steps` of random work.
    fn runs() -> impl Strategy<Value = Vec<([u64; 8], [u64; 2])>> {
        proptest::collection::vec((proptest::array::uniform8(0u64..500), (0u64..=100, 0u64..=100)), 1..40).prop_map(
            |steps| {
                let mut machine = [0u64; 8];
                let mut cgroup = [0u64; 2];
                steps
                    .into_iter()
                    .map(|(grow, (user_percent, system_percent))| {
                        for (mode, by) in machine.iter_mut().zip(grow) {
                            *mode += by;
                        }
                        // The cgroup gets a part of the host's user+nice and system time.
                        cgroup[0] += (grow[0] + grow[1]) * user_percent / 100;
                        cgroup[1] += grow[2] * system_percent / 100;
                        (machine, cgroup)
                    })
                    .collect()
            },
        )
    }

    proptest! {
        /// Architecture invariant: with --node-cgroup, node CPU counters stay cumulative and
        /// monotonic, and add up to the host's wall time x cores while the cgroup's time is part
        /// of the host's.
        #[test]
        fn a_cgroup_within_the_host_gives_monotonic_modes_that_add_up_to_the_host_total(steps in runs()) {
            let mut last: Option<CpuTimes> = None;
            for (columns, [cg_user, cg_system]) in steps {
                let machine = host(columns);
                let node = node_cpu(&machine, CgroupCpu { user: cg_user, system: cg_system }, last.map(|l| l.idle));
                prop_assert_eq!(node.total_jiffies(), machine.total_jiffies());
                if let Some(before) = last {
                    let modes = |t: CpuTimes| [t.user, t.nice, t.system, t.idle, t.iowait, t.irq, t.softirq, t.steal];
                    for (now, then) in modes(node).into_iter().zip(modes(before)) {
                        prop_assert!(now >= then, "{:?} after {:?}", node, before);
                    }
                }
                last = Some(node);
            }
        }

        #[test]
        fn idle_never_goes_back_even_when_the_cgroup_outgrows_the_host(
            steps in proptest::collection::vec((0u64..1000, 0u64..3000), 1..40),
        ) {
            let (mut total, mut cgroup, mut last_idle) = (0u64, 0u64, None);
            for (host_grows, cgroup_grows) in steps {
                total += host_grows;
                cgroup += cgroup_grows;
                let machine = host([0, 0, 0, total, 0, 0, 0, 0]);
                let node = node_cpu(&machine, CgroupCpu { user: cgroup, system: 0 }, last_idle);
                prop_assert!(last_idle.is_none_or(|idle| node.idle >= idle));
                last_idle = Some(node.idle);
            }
        }
    }

    fn host_memory() -> Memory {
        Memory {
            total_bytes: 8 * GIB,
            available_bytes: 6 * GIB,
            free_bytes: 4 * GIB,
            buffers_bytes: 100 * MIB,
            cached_bytes: 2 * GIB,
            swap_total_bytes: GIB,
            swap_free_bytes: 900 * MIB,
        }
    }

    #[test]
    fn node_memory_is_the_cgroup_within_the_host() {
        let swap = |m: Memory| Memory { swap_total_bytes: GIB, swap_free_bytes: 900 * MIB, ..m };
        let cases: &[(&str, CgroupMemory, Memory)] = &[
            (
                "a 2 GiB limit: total is the limit, used the working set, free what the cgroup never touched",
                CgroupMemory { limit: Some(2 * GIB), usage: 1536 * MIB, inactive_file: 256 * MIB, file: 512 * MIB },
                swap(Memory {
                    total_bytes: 2 * GIB,
                    available_bytes: 768 * MIB,
                    free_bytes: 512 * MIB,
                    buffers_bytes: 0,
                    cached_bytes: 512 * MIB,
                    ..Memory::default()
                }),
            ),
            (
                "no limit: the host's total",
                CgroupMemory { limit: None, usage: GIB, inactive_file: 0, file: 0 },
                swap(Memory {
                    total_bytes: 8 * GIB,
                    available_bytes: 7 * GIB,
                    free_bytes: 7 * GIB,
                    ..Memory::default()
                }),
            ),
            (
                "a limit above the host's memory: the host's total",
                CgroupMemory { limit: Some(64 * GIB), usage: GIB, inactive_file: 0, file: 0 },
                swap(Memory {
                    total_bytes: 8 * GIB,
                    available_bytes: 7 * GIB,
                    free_bytes: 7 * GIB,
                    ..Memory::default()
                }),
            ),
            (
                "usage over the limit (v2 lets it overshoot briefly): nothing available, never negative",
                CgroupMemory { limit: Some(GIB), usage: GIB + MIB, inactive_file: 0, file: 0 },
                swap(Memory { total_bytes: GIB, ..Memory::default() }),
            ),
        ];
        for (name, cgroup, expected) in cases {
            assert_eq!(node_memory(&host_memory(), *cgroup), *expected, "{name}");
        }
    }

    const HOST_STAT: &str = "cpu  10000 500 3000 50000 200 0 300 0 0 0\ncpu0 5000 250 1500 25000 100 0 150 0 0 0\n\
cpu1 5000 250 1500 25000 100 0 150 0 0 0\nintr 1\n";
    const HOST_MEMINFO: &str = "MemTotal: 8388608 kB\nMemFree: 4194304 kB\nMemAvailable: 6291456 kB\n\
Buffers: 102400 kB\nCached: 2097152 kB\nSwapTotal: 1048576 kB\nSwapFree: 921600 kB\n";
    const HOST_PSI: &str =
        "some avg10=1.00 avg60=1.00 avg300=1.00 total=111\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=11\n";
    const CGROUP_PSI: &str =
        "some avg10=9.00 avg60=9.00 avg300=9.00 total=999\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=99\n";

    fn write(root: &Path, relative: &str, content: &str) {
        let path = root.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    /// A host root with the host's files and nothing in the cgroup tree yet.
    fn host_tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "proc/stat", HOST_STAT);
        write(dir.path(), "proc/meminfo", HOST_MEMINFO);
        for name in ["cpu", "memory", "io"] {
            write(dir.path(), &format!("proc/pressure/{name}"), HOST_PSI);
        }
        dir
    }

    fn roots(dir: &tempfile::TempDir) -> HostRoots {
        HostRoots::new(dir.path().join("proc"), dir.path().join("sys"))
    }

    /// A v1 node cgroup: user 4000, system 1000 jiffies; 2 GiB limit, 1.5 GiB usage, 256 MiB
    /// inactive file of 512 MiB cache.
    fn write_v1(dir: &Path, cpuacct_mount: &str, relative: &str) {
        let cgroup = |mount: &str, file: &str| format!("sys/fs/cgroup/{mount}/{relative}/{file}");
        write(dir, &cgroup(cpuacct_mount, "cpuacct.stat"), "user 4000\nsystem 1000\n");
        write(dir, &cgroup("memory", "memory.limit_in_bytes"), "2147483648\n");
        write(dir, &cgroup("memory", "memory.usage_in_bytes"), "1610612736\n");
        write(dir, &cgroup("memory", "memory.stat"), "cache 0\ntotal_cache 536870912\ntotal_inactive_file 268435456\n");
    }

    /// The same figures in a v2 node cgroup, with its own pressure files.
    fn write_v2(dir: &Path, mount: &str, relative: &str) {
        let cgroup = |file: &str| format!("sys/fs/cgroup/{mount}/{relative}/{file}").replace("//", "/");
        write(dir, &cgroup("cpu.stat"), "usage_usec 50000000\nuser_usec 40000000\nsystem_usec 10000000\n");
        write(dir, &cgroup("memory.max"), "2147483648\n");
        write(dir, &cgroup("memory.current"), "1610612736\n");
        write(dir, &cgroup("memory.stat"), "file 536870912\ninactive_file 268435456\n");
        for name in ["cpu", "memory", "io"] {
            write(dir, &cgroup(&format!("{name}.pressure")), CGROUP_PSI);
        }
    }

    // One piece: the table of layouts and the checks every row goes through, so that each layout
    // is held to the same expectations.
    #[test]
    fn reads_the_node_cgroup_on_v1_and_v2_layouts() {
        type Layout = (&'static str, fn(&Path), &'static str, CgroupVersion, &'static str, &'static str, u64);
        let layouts: &[Layout] = &[
            (
                "v1, cpuacct on its own",
                |d| write_v1(d, "cpuacct", "lxc/n1"),
                "lxc/n1",
                CgroupVersion::V1,
                "cpuacct/lxc/n1",
                "memory/lxc/n1",
                111,
            ),
            (
                "v1, cpu and cpuacct co-mounted",
                |d| write_v1(d, "cpu,cpuacct", "docker/3f2a"),
                "/docker/3f2a",
                CgroupVersion::V1,
                "cpu,cpuacct/docker/3f2a",
                "memory/docker/3f2a",
                111,
            ),
            (
                "v2 at the cgroup root",
                |d| write_v2(d, "", "system.slice/docker-3f2a.scope"),
                "/system.slice/docker-3f2a.scope",
                CgroupVersion::V2,
                "system.slice/docker-3f2a.scope",
                "system.slice/docker-3f2a.scope",
                999,
            ),
            (
                "v2 on a hybrid layout",
                |d| write_v2(d, "unified", "k3d"),
                "k3d",
                CgroupVersion::V2,
                "unified/k3d",
                "unified/k3d",
                999,
            ),
            (
                "v2, the node's cgroup namespace makes it the root",
                |d| write_v2(d, "", ""),
                "/",
                CgroupVersion::V2,
                "",
                "",
                999,
            ),
        ];
        for (name, make, flag, version, cpu_dir, memory_dir, pressure_total) in layouts {
            let dir = host_tree();
            make(dir.path());
            let roots = roots(&dir);
            let reading = NodeCgroup::new(flag).read(&roots, &mut NodeFiles::new());
            let cpu = reading.cpu.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(cpu.total, host([4_000, 0, 1_000, 58_500, 200, 0, 300, 0]), "{name}");
            assert!(cpu.cores.is_empty(), "{name}: a cgroup has no per-core split");
            let memory = reading.memory.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!((memory.total_bytes, memory.available_bytes), (2 * GIB, 768 * MIB), "{name}");
            assert_eq!((memory.swap_total_bytes, memory.swap_free_bytes), (GIB, 900 * MIB), "{name}: the host's swap");
            let pressure = reading.pressure.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(pressure.len(), 6, "{name}");
            assert_eq!(
                pressure[0].total_us, *pressure_total,
                "{name}: v1 keeps the host's pressure, v2 reads the cgroup's"
            );
            let cgroup_root = roots.cgroup();
            let expected_from = if *version == CgroupVersion::V2 { PressureFrom::Cgroup } else { PressureFrom::Host };
            assert_eq!(
                reading.source,
                NodeCgroupSource {
                    path: flag.to_string(),
                    version: Some(*version),
                    cpu_dir: Some(cgroup_root.join(cpu_dir)),
                    memory_dir: Some(cgroup_root.join(memory_dir)),
                    memory_limit_bytes: Some(2 * GIB),
                    pressure_from: Some(expected_from),
                },
                "{name}"
            );
        }
    }

    #[test]
    fn a_missing_cgroup_leaves_the_node_signals_unavailable_and_is_found_once_it_appears() {
        let dir = host_tree();
        let roots = roots(&dir);
        let mut node = NodeCgroup::new("bakery-demo/master-01");
        let mut files = NodeFiles::new();
        let reading = node.read(&roots, &mut files);
        for (signal, error) in
            [("cpu", reading.cpu.err()), ("memory", reading.memory.err()), ("pressure", reading.pressure.err())]
        {
            let error = error.unwrap_or_else(|| panic!("{signal} must not come from the host's /proc"));
            let reason = error.to_string();
            assert!(!error.is_malformed(), "{signal}: {reason}");
            assert!(reason.contains("no node cgroup \"bakery-demo/master-01\""), "{signal}: {reason}");
            assert!(
                reason.contains("\"cpuacct\"") && reason.contains("\"unified\""),
                "{signal} names the mounts: {reason}"
            );
        }
        assert_eq!(reading.source.version, None);

        write_v1(dir.path(), "cpuacct", "bakery-demo/master-01");
        let reading = node.read(&roots, &mut files);
        assert_eq!(reading.cpu.unwrap().total.user, 4_000, "found at the next sample");
        assert_eq!(reading.source.version, Some(CgroupVersion::V1));
    }

    #[test]
    fn a_malformed_or_missing_cgroup_file_fails_its_signal_only() {
        let dir = host_tree();
        write_v2(dir.path(), "", "k3d");
        std::fs::write(dir.path().join("sys/fs/cgroup/k3d/cpu.stat"), "user_usec lots\nsystem_usec 1\n").unwrap();
        std::fs::remove_file(dir.path().join("sys/fs/cgroup/k3d/memory.current")).unwrap();
        let reading = NodeCgroup::new("k3d").read(&roots(&dir), &mut NodeFiles::new());
        let cpu = reading.cpu.unwrap_err();
        assert!(cpu.is_malformed() && cpu.to_string().contains("k3d/cpu.stat is malformed: user_usec"), "{cpu}");
        let memory = reading.memory.unwrap_err();
        assert!(matches!(memory, SignalError::Absent { .. }), "{memory}");
        assert!(
            memory.to_string().contains("memory.current is absent: the memory controller is not enabled"),
            "{memory}"
        );
        assert_eq!(reading.pressure.unwrap().len(), 6, "pressure still arrives");

        let dir = host_tree();
        write_v1(dir.path(), "cpuacct", "lxc/n1");
        std::fs::remove_dir_all(dir.path().join("sys/fs/cgroup/memory")).unwrap();
        let reading = NodeCgroup::new("lxc/n1").read(&roots(&dir), &mut NodeFiles::new());
        assert!(reading.cpu.is_ok());
        let memory = reading.memory.unwrap_err().to_string();
        assert!(
            memory.contains("memory/lxc/n1 is absent: the node cgroup is not in the cgroup v1 memory hierarchy"),
            "{memory}"
        );
    }

    #[test]
    fn idle_holds_still_between_samples_when_the_cgroup_outgrows_the_host() {
        let dir = host_tree();
        write_v1(dir.path(), "cpuacct", "n1");
        let roots = roots(&dir);
        let mut node = NodeCgroup::new("n1");
        let mut files = NodeFiles::new();
        let first = node.read(&roots, &mut files).cpu.unwrap().total;
        assert_eq!(first.idle, 58_500);
        // The host's clock moves 100 jiffies; the cgroup is charged 300 (interrupt time counted
        // in both its system time and the host's softirq).
        write(dir.path(), "proc/stat", "cpu  10100 500 3000 50000 200 0 300 0 0 0\n");
        write(dir.path(), "sys/fs/cgroup/cpuacct/n1/cpuacct.stat", "user 4000\nsystem 1300\n");
        let second = node.read(&roots, &mut files).cpu.unwrap().total;
        assert_eq!((second.system, second.idle), (1_300, 58_500), "idle does not go back to 58300");
    }
}
