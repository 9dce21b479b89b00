//! A cgroup's CPU and memory: the files that hold them on v1 and v2, their parsers, the pods' reader.
//!
//! - v2 (`Documentation/admin-guide/cgroup-v2.rst`): `cpu.stat` lines
//!   `usage_usec`, `user_usec`, `system_usec`; `memory.current`, `memory.max`
//!   (`max` for no limit), `memory.stat` lines `inactive_file` and `file`.
//! - v1 (`Documentation/admin-guide/cgroup-v1/cpuacct.rst`, `memory.rst`):
//!   `cpuacct.usage` in nanoseconds, `cpuacct.stat` (`user`, `system`, in
//!   USER_HZ), `memory.usage_in_bytes`, `memory.limit_in_bytes`, `memory.stat`
//!   lines `total_inactive_file` and `total_cache` (the hierarchical totals: a
//!   pod level or a node cgroup has no tasks of its own, its memory is in its
//!   children).
//!
//! The working set is usage minus inactive file cache, as the kubelet and
//! cAdvisor compute it (cAdvisor `container/libcontainer/handler.go`,
//! `setMemoryStats`): what `kubectl top pod` shows and what eviction uses.
//!
//! [`CgroupReader`] reads pods' cgroups every sample. Usage is read every
//! sample; the inactive file figure comes from `memory.stat`, the costliest
//! file of a pod scan (the kernel prints some 50 counters and flushes the
//! cgroup's per-CPU statistics first), so it may be reused for up to the
//! reader's refresh interval: page cache ages over seconds, and cAdvisor
//! itself refreshes it only every housekeeping pass (10 s or more).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use foldhash::HashMap;

use crate::cgroup::CgroupVersion;
use crate::cgroup::mounts::{Hierarchy, MountPreference};
use crate::cgroup::paths::{self, PodCgroup};
use crate::kept_files::KeptFiles;
use crate::signal::{ParseError, SignalError};
use crate::stream::USER_HZ;

/// The files of a cgroup that are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CgroupFile {
    CpuStat,
    CpuacctUsage,
    CpuacctStat,
    MemoryCurrent,
    MemoryUsageInBytes,
    MemoryMax,
    MemoryLimitInBytes,
    MemoryStat,
}

impl CgroupFile {
    pub fn name(self) -> &'static str {
        match self {
            Self::CpuStat => "cpu.stat",
            Self::CpuacctUsage => "cpuacct.usage",
            Self::CpuacctStat => "cpuacct.stat",
            Self::MemoryCurrent => "memory.current",
            Self::MemoryUsageInBytes => "memory.usage_in_bytes",
            Self::MemoryMax => "memory.max",
            Self::MemoryLimitInBytes => "memory.limit_in_bytes",
            Self::MemoryStat => "memory.stat",
        }
    }

    /// The file with the cgroup's total CPU time (see [`parse_cpu_usage_us`]).
    pub fn cpu_usage(version: CgroupVersion) -> Self {
        match version {
            CgroupVersion::V1 => Self::CpuacctUsage,
            CgroupVersion::V2 => Self::CpuStat,
        }
    }

    /// The file with the cgroup's user and system time (see [`parse_cpu_times`]).
    pub fn cpu_times(version: CgroupVersion) -> Self {
        match version {
            CgroupVersion::V1 => Self::CpuacctStat,
            CgroupVersion::V2 => Self::CpuStat,
        }
    }

    /// The file with the memory charged to the cgroup, file cache included.
    pub fn memory_usage(version: CgroupVersion) -> Self {
        match version {
            CgroupVersion::V1 => Self::MemoryUsageInBytes,
            CgroupVersion::V2 => Self::MemoryCurrent,
        }
    }

    /// The file with the cgroup's memory limit (see [`parse_memory_limit`]).
    pub fn memory_limit(version: CgroupVersion) -> Self {
        match version {
            CgroupVersion::V1 => Self::MemoryLimitInBytes,
            CgroupVersion::V2 => Self::MemoryMax,
        }
    }
}

/// The cgroup's own process-context CPU time since it was created, USER_HZ jiffies. `system`
/// includes the irq and softirq time the kernel charged to the cgroup's tasks
/// (kernel/sched/cpuacct.c `cpuacct_stats_show`; cgroup v2 adds it to `system_usec` likewise).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupCpu {
    pub user: u64,
    pub system: u64,
}

/// The cgroup's memory figures, bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupMemory {
    /// `None`: no limit.
    pub limit: Option<u64>,
    pub usage: u64,
    pub inactive_file: u64,
    /// All file cache (page cache and tmpfs) charged to the cgroup.
    pub file: u64,
}

/// The smallest `memory.limit_in_bytes` that means "no limit" on v1. The kernel prints its page
/// counter's maximum in bytes, `LONG_MAX` rounded down to a whole page (`PAGE_COUNTER_MAX` in
/// include/linux/page_counter.h, times `PAGE_SIZE` in mm/memcontrol-v1.c `mem_cgroup_read_u64`):
/// 9223372036854771712 with 4 KiB pages, a little less with a Pi 5's 16 KiB or with 64 KiB pages.
/// Rounded down to 64 KiB, this covers every page size.
pub const V1_NO_LIMIT: u64 = (i64::MAX as u64) & !0xffff;

/// Usage minus inactive file cache; never below zero (the two files are
/// read at slightly different times).
pub fn working_set(usage_bytes: u64, inactive_file_bytes: u64) -> u64 {
    usage_bytes.saturating_sub(inactive_file_bytes)
}

/// A file holding one unsigned integer (`memory.current`, `cpuacct.usage`).
pub fn parse_single_u64(text: &str) -> Result<u64, ParseError> {
    crate::signal::parse_u64(text)
}

/// The value of `key` in a flat keyed file (`key value` lines, as
/// `cpu.stat` and `memory.stat` are).
pub fn flat_keyed_value(text: &str, key: &str) -> Result<u64, ParseError> {
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        if fields.next() == Some(key) {
            let value = fields.next().unwrap_or_default();
            return value.parse().map_err(|_| ParseError::new(format!("{key} is not a number: {line:?}")));
        }
    }
    Err(ParseError::new(format!("no {key} line")))
}

/// The cgroup's total CPU time in microseconds, from [`CgroupFile::cpu_usage`]:
/// v2 `cpu.stat` `usage_usec`, v1 `cpuacct.usage` (nanoseconds).
pub fn parse_cpu_usage_us(text: &str, version: CgroupVersion) -> Result<u64, ParseError> {
    match version {
        CgroupVersion::V2 => flat_keyed_value(text, "usage_usec"),
        CgroupVersion::V1 => parse_single_u64(text).map(|nanoseconds| nanoseconds / 1000),
    }
}

/// v1 `cpuacct.stat`: `user <jiffies>` and `system <jiffies>`, in USER_HZ.
pub fn parse_cpuacct_stat(text: &str) -> Result<CgroupCpu, ParseError> {
    Ok(CgroupCpu { user: flat_keyed_value(text, "user")?, system: flat_keyed_value(text, "system")? })
}

/// v2 `cpu.stat`: `user_usec` and `system_usec`, converted to USER_HZ jiffies. Truncating keeps a
/// growing counter from ever shrinking.
pub fn parse_cpu_stat(text: &str) -> Result<CgroupCpu, ParseError> {
    let jiffies = |usec: u64| (u128::from(usec) * u128::from(USER_HZ) / 1_000_000) as u64;
    Ok(CgroupCpu {
        user: jiffies(flat_keyed_value(text, "user_usec")?),
        system: jiffies(flat_keyed_value(text, "system_usec")?),
    })
}

/// The cgroup's user and system time from [`CgroupFile::cpu_times`].
pub fn parse_cpu_times(text: &str, version: CgroupVersion) -> Result<CgroupCpu, ParseError> {
    match version {
        CgroupVersion::V1 => parse_cpuacct_stat(text),
        CgroupVersion::V2 => parse_cpu_stat(text),
    }
}

/// v2 `memory.max`: bytes, or `max` for no limit.
pub fn parse_memory_max(text: &str) -> Result<Option<u64>, ParseError> {
    match text.trim() {
        "max" => Ok(None),
        _ => crate::signal::parse_u64(text).map(Some),
    }
}

/// v1 `memory.limit_in_bytes`: bytes, or at least [`V1_NO_LIMIT`] for no limit.
pub fn parse_limit_in_bytes(text: &str) -> Result<Option<u64>, ParseError> {
    let bytes = crate::signal::parse_u64(text)?;
    Ok((bytes < V1_NO_LIMIT).then_some(bytes))
}

/// The cgroup's memory limit from [`CgroupFile::memory_limit`]; `None`: no limit.
pub fn parse_memory_limit(text: &str, version: CgroupVersion) -> Result<Option<u64>, ParseError> {
    match version {
        CgroupVersion::V1 => parse_limit_in_bytes(text),
        CgroupVersion::V2 => parse_memory_max(text),
    }
}

/// `memory.stat`: the inactive file cache. On v1 the hierarchical total
/// (`total_inactive_file`): `inactive_file` counts only the cgroup's own tasks.
pub fn parse_inactive_file(text: &str, version: CgroupVersion) -> Result<u64, ParseError> {
    let key = match version {
        CgroupVersion::V1 => "total_inactive_file",
        CgroupVersion::V2 => "inactive_file",
    };
    flat_keyed_value(text, key)
}

/// `memory.stat`: (inactive file cache, all file cache). On v1 the hierarchical totals
/// (`total_*`): the node cgroup's memory is in its children (pods, system processes).
pub fn parse_memory_stat(text: &str, version: CgroupVersion) -> Result<(u64, u64), ParseError> {
    let file = match version {
        CgroupVersion::V1 => "total_cache",
        CgroupVersion::V2 => "file",
    };
    Ok((parse_inactive_file(text, version)?, flat_keyed_value(text, file)?))
}

/// One pod's accounting; `None` where a file is missing or malformed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PodUsage {
    pub cpu_usage_us: Option<u64>,
    pub memory_working_set_bytes: Option<u64>,
}

/// Reads pod cgroups, keeping their files open between samples and
/// remembering which mount name worked so the next pods try it first.
#[derive(Debug, Default)]
pub struct CgroupReader {
    /// Open files by (pod id, file, mount name index): small keys, so a
    /// kept file is found without building or hashing its path.
    files: KeptFiles<(u32, CgroupFile, usize)>,
    buffer: Vec<u8>,
    mounts: MountPreference,
    /// Longest a pod's inactive file figure is reused (zero: read every time).
    inactive_refresh: Duration,
    /// The pods read recently, by pod cgroup path.
    pods: HashMap<String, PodState>,
    next_id: u32,
    sample: u64,
}

#[derive(Debug, Clone, Copy)]
struct PodState {
    id: u32,
    /// The last inactive file figure, and when it was read.
    inactive: Option<(u64, Instant)>,
    used_in_sample: u64,
}

/// Where a file that was read lives, to name it in an error.
struct FileAt<'a> {
    root: &'a Path,
    mount: &'static str,
    relative: &'a str,
    file: CgroupFile,
}

impl FileAt<'_> {
    fn path(&self) -> PathBuf {
        paths::below(self.root, &[self.mount, self.relative]).join(self.file.name())
    }
}

impl CgroupReader {
    /// A reader that reuses a pod's `memory.stat` figure for up to `refresh`.
    pub fn with_inactive_refresh(refresh: Duration) -> Self {
        Self { inactive_refresh: refresh, ..Self::default() }
    }

    /// Starts a sample; see [`KeptFiles::begin_sample`].
    pub fn begin_sample(&mut self) {
        self.sample += 1;
        self.files.begin_sample();
    }

    /// Ends a sample, closing the files (and forgetting the figures) of pods
    /// that were not read.
    pub fn end_sample(&mut self) {
        self.files.end_sample();
        let sample = self.sample;
        self.pods.retain(|_, pod| pod.used_in_sample == sample);
    }

    /// Reads one pod's CPU and memory under the cgroup root `root` at `now`.
    /// Missing files (a pod being torn down) give `None` quietly; malformed
    /// ones are pushed to `errors`.
    pub fn read(&mut self, root: &Path, pod: &PodCgroup, now: Instant, errors: &mut Vec<SignalError>) -> PodUsage {
        let id = self.pod_id(&pod.pod_path);
        let version = pod.version;
        let relative = paths::relative(&pod.pod_path);
        let cpu_file = CgroupFile::cpu_usage(version);
        let cpu = self
            .read_file(root, Hierarchy::cpu(version), id, relative, cpu_file, errors)
            .and_then(|(at, text)| keep(parse_cpu_usage_us(text, version).map_err(|e| e.at(&at.path())), errors));
        let memory = self.working_set(root, (id, &pod.pod_path), version, now, errors);
        PodUsage { cpu_usage_us: cpu, memory_working_set_bytes: memory }
    }

    /// The pod's small id, marking it read in this sample.
    fn pod_id(&mut self, pod_path: &str) -> u32 {
        let sample = self.sample;
        if let Some(state) = self.pods.get_mut(pod_path) {
            state.used_in_sample = sample;
            return state.id;
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.pods.insert(pod_path.to_string(), PodState { id, inactive: None, used_in_sample: sample });
        id
    }

    /// Usage (read now) minus the inactive file figure (read now, or reused
    /// while younger than the refresh interval).
    fn working_set(
        &mut self,
        root: &Path,
        (id, pod_path): (u32, &str),
        version: CgroupVersion,
        now: Instant,
        errors: &mut Vec<SignalError>,
    ) -> Option<u64> {
        let mount = Hierarchy::memory(version);
        let relative = paths::relative(pod_path);
        let (at, text) = self.read_file(root, mount, id, relative, CgroupFile::memory_usage(version), errors)?;
        let usage = keep(parse_single_u64(text).map_err(|e| e.at(&at.path())), errors)?;
        let refresh = self.inactive_refresh;
        let fresh = self
            .pods
            .get(pod_path)
            .and_then(|pod| pod.inactive)
            .filter(|&(_, read_at)| now.saturating_duration_since(read_at) < refresh)
            .map(|(bytes, _)| bytes);
        let inactive = match fresh {
            Some(bytes) => bytes,
            None => {
                let (at, text) = self.read_file(root, mount, id, relative, CgroupFile::MemoryStat, errors)?;
                let bytes = keep(parse_inactive_file(text, version).map_err(|e| e.at(&at.path())), errors)?;
                if let Some(pod) = self.pods.get_mut(pod_path) {
                    pod.inactive = Some((bytes, now));
                }
                bytes
            }
        };
        if fresh.is_some() {
            // Not read this sample, but needed again at the next refresh.
            let index = self.mounts.preferred(mount);
            self.files.keep(&(id, CgroupFile::MemoryStat, index));
        }
        Some(working_set(usage, inactive))
    }

    /// Reads `<root>/<mount>/<relative>/<file>` for the first mount name
    /// under which it exists, trying the one that worked last time first.
    fn read_file<'a>(
        &mut self,
        root: &'a Path,
        which: Hierarchy,
        id: u32,
        relative: &'a str,
        file: CgroupFile,
        errors: &mut Vec<SignalError>,
    ) -> Option<(FileAt<'a>, &str)> {
        for (index, mount) in self.mounts.order(which) {
            let at = FileAt { root, mount, relative, file };
            match self.files.read_lazily(&(id, file, index), || at.path(), &mut self.buffer) {
                Ok(true) => {
                    self.mounts.found(which, index);
                    return match std::str::from_utf8(&self.buffer) {
                        Ok(text) => Some((at, text)),
                        Err(_) => {
                            errors.push(SignalError::malformed(at.path(), "not UTF-8 text"));
                            None
                        }
                    };
                }
                Ok(false) => continue,
                Err(error) => {
                    errors.push(SignalError::Io { path: at.path(), source: error });
                    return None;
                }
            }
        }
        None
    }
}

fn keep<T>(result: Result<T, SignalError>, errors: &mut Vec<SignalError>) -> Option<T> {
    result.map_err(|error| errors.push(error)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::paths::QosClass;
    use crate::cpu::mutation::mutated;
    use proptest::prelude::*;

    const CPU_STAT_V2: &str = "usage_usec 123456789\nuser_usec 100000000\nsystem_usec 23456789\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n";
    const MEMORY_STAT_V2: &str =
        "anon 50331648\nfile 83886080\nkernel 4194304\nactive_file 16777216\ninactive_file 67108864\n";
    const MEMORY_STAT_V1: &str = "cache 83886080\nrss 50331648\ninactive_file 0\nhierarchical_memory_limit 9223372036854771712\ntotal_cache 83886080\ntotal_rss 50331648\ntotal_inactive_file 67108864\n";

    #[test]
    fn flat_keyed_files_give_the_named_value() {
        let cases: &[(&str, &str, Result<u64, ()>)] = &[
            (CPU_STAT_V2, "usage_usec", Ok(123_456_789)),
            (MEMORY_STAT_V2, "inactive_file", Ok(67_108_864)),
            // v1 has both `inactive_file` (own tasks) and the hierarchical total.
            (MEMORY_STAT_V1, "total_inactive_file", Ok(67_108_864)),
            (MEMORY_STAT_V1, "inactive_file", Ok(0)),
            // A key that only prefixes another key does not match it.
            ("inactive_file_extra 5\ninactive_file 7\n", "inactive_file", Ok(7)),
            ("usage_usec\n", "usage_usec", Err(())),
            ("usage_usec -3\n", "usage_usec", Err(())),
            ("user_usec 5\n", "usage_usec", Err(())),
            ("", "usage_usec", Err(())),
        ];
        for (text, key, expected) in cases {
            assert_eq!(flat_keyed_value(text, key).map_err(|_| ()), *expected, "{key} in {text:?}");
        }
    }

    #[test]
    fn the_working_set_is_usage_minus_inactive_file_and_never_negative() {
        assert_eq!(working_set(134_217_728, 67_108_864), 67_108_864);
        assert_eq!(working_set(1000, 1000), 0);
        assert_eq!(working_set(1000, 5000), 0);
    }

    fn write(root: &Path, rel: &str, content: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    fn pod(path: &str, version: CgroupVersion) -> PodCgroup {
        PodCgroup { uid: "u".into(), qos_class: QosClass::BestEffort, pod_path: path.into(), version }
    }

    #[test]
    fn v2_usage_is_read_from_the_root_or_from_unified_on_a_hybrid_layout() {
        for mount in ["", "unified/"] {
            let root = tempfile::tempdir().unwrap();
            write(root.path(), &format!("{mount}kubepods/besteffort/podu/cpu.stat"), CPU_STAT_V2);
            write(root.path(), &format!("{mount}kubepods/besteffort/podu/memory.current"), "134217728\n");
            write(root.path(), &format!("{mount}kubepods/besteffort/podu/memory.stat"), MEMORY_STAT_V2);
            let mut errors = Vec::new();
            let usage = CgroupReader::default().read(
                root.path(),
                &pod("/kubepods/besteffort/podu", CgroupVersion::V2),
                Instant::now(),
                &mut errors,
            );
            assert_eq!(usage, PodUsage { cpu_usage_us: Some(123_456_789), memory_working_set_bytes: Some(67_108_864) });
            assert!(errors.is_empty(), "{errors:?}");
        }
    }

    #[test]
    fn v1_usage_is_found_under_each_known_cpuacct_mount_name() {
        for mount in ["cpuacct", "cpu,cpuacct", "cpuacct,cpu"] {
            let root = tempfile::tempdir().unwrap();
            write(root.path(), &format!("{mount}/kubepods/podu/cpuacct.usage"), "5000000123\n");
            write(root.path(), "memory/kubepods/podu/memory.usage_in_bytes", "134217728\n");
            write(root.path(), "memory/kubepods/podu/memory.stat", MEMORY_STAT_V1);
            let mut errors = Vec::new();
            let usage = CgroupReader::default().read(
                root.path(),
                &pod("/kubepods/podu", CgroupVersion::V1),
                Instant::now(),
                &mut errors,
            );
            // Nanoseconds become microseconds.
            assert_eq!(usage, PodUsage { cpu_usage_us: Some(5_000_000), memory_working_set_bytes: Some(67_108_864) });
            assert!(errors.is_empty(), "{errors:?}");
        }
    }

    #[test]
    fn a_vanished_pod_cgroup_is_quietly_absent_and_a_malformed_file_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        let mut reader = CgroupReader::default();
        let mut errors = Vec::new();
        assert_eq!(
            reader.read(root.path(), &pod("/kubepods/podgone", CgroupVersion::V2), Instant::now(), &mut errors),
            PodUsage::default()
        );
        assert!(errors.is_empty(), "{errors:?}");

        write(root.path(), "kubepods/podbad/cpu.stat", "usage_usec lots\n");
        write(root.path(), "kubepods/podbad/memory.current", "134217728\n");
        write(root.path(), "kubepods/podbad/memory.stat", MEMORY_STAT_V2);
        let usage = reader.read(root.path(), &pod("/kubepods/podbad", CgroupVersion::V2), Instant::now(), &mut errors);
        assert_eq!(usage, PodUsage { cpu_usage_us: None, memory_working_set_bytes: Some(67_108_864) });
        assert_eq!(errors.len(), 1);
        assert!(errors[0].is_malformed() && errors[0].to_string().contains("cpu.stat"), "{}", errors[0]);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let text = String::from_utf8_lossy(&bytes);
            let _ = flat_keyed_value(&text, "usage_usec");
            let _ = parse_single_u64(&text);
        }
    }

    #[test]
    fn the_inactive_file_figure_is_reused_until_it_is_older_than_the_refresh() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "kubepods/podm/cpu.stat", "usage_usec 1\n");
        write(root.path(), "kubepods/podm/memory.current", "1000\n");
        write(root.path(), "kubepods/podm/memory.stat", "inactive_file 100\n");
        let pod = pod("/kubepods/podm", CgroupVersion::V2);
        let mut reader = CgroupReader::with_inactive_refresh(Duration::from_secs(2));
        let mut errors = Vec::new();
        let start = Instant::now();
        let mut sample = |reader: &mut CgroupReader, at: Duration| {
            reader.begin_sample();
            let usage = reader.read(root.path(), &pod, start + at, &mut errors);
            reader.end_sample();
            usage.memory_working_set_bytes
        };
        assert_eq!(sample(&mut reader, Duration::ZERO), Some(900));
        write(root.path(), "kubepods/podm/memory.current", "1500\n");
        write(root.path(), "kubepods/podm/memory.stat", "inactive_file 400\n");
        // Usage is always current; the inactive figure is the one read at 0 s.
        assert_eq!(sample(&mut reader, Duration::from_millis(1900)), Some(1400));
        assert_eq!(sample(&mut reader, Duration::from_secs(2)), Some(1100));
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn without_a_refresh_interval_memory_stat_is_read_every_time() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "kubepods/podm/memory.current", "1000\n");
        write(root.path(), "kubepods/podm/memory.stat", "inactive_file 100\n");
        let pod = pod("/kubepods/podm", CgroupVersion::V2);
        let mut reader = CgroupReader::default();
        let now = Instant::now();
        assert_eq!(reader.read(root.path(), &pod, now, &mut Vec::new()).memory_working_set_bytes, Some(900));
        write(root.path(), "kubepods/podm/memory.stat", "inactive_file 300\n");
        assert_eq!(reader.read(root.path(), &pod, now, &mut Vec::new()).memory_working_set_bytes, Some(700));
    }

    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;

    /// A Docker container's `cpu.stat` on kernel 6.18 (cgroup v2).
    const KERNEL_CPU_STAT_V2: &str = "\
usage_usec 7254912345
user_usec 5012345678
system_usec 2242566667
nice_usec 0
core_sched.force_idle_usec 0
nr_periods 0
nr_throttled 0
throttled_usec 0
nr_bursts 0
burst_usec 0
";

    /// `cpuacct.stat` of a v1 cgroup, kernel 6.18.
    const KERNEL_CPUACCT_STAT_V1: &str = "user 119972\nsystem 11140\n";

    /// `memory.stat` of a v1 cgroup with children, kernel 6.18 (trimmed).
    const KERNEL_MEMORY_STAT_V1: &str = "\
cache 19984384
rss 2752512
shmem 10465280
inactive_file 344064
active_file 9175040
hierarchical_memory_limit 9223372036854771712
total_cache 8015015936
total_rss 6504448
total_inactive_anon 3567616
total_active_anon 24576
total_inactive_file 5232840704
total_active_file 2771709952
";

    /// `memory.stat` of a v2 cgroup, kernel 6.18 (trimmed).
    const KERNEL_MEMORY_STAT_V2: &str = "\
anon 6504448
file 536870912
kernel 4194304
shmem 10465280
inactive_anon 3567616
active_anon 24576
inactive_file 268435456
active_file 268435456
";

    #[test]
    fn parsers_read_real_files_and_name_what_is_wrong() {
        assert_eq!(parse_cpuacct_stat(KERNEL_CPUACCT_STAT_V1), Ok(CgroupCpu { user: 119_972, system: 11_140 }));
        // Microseconds to USER_HZ (100 per second) jiffies, truncated.
        assert_eq!(parse_cpu_stat(KERNEL_CPU_STAT_V2), Ok(CgroupCpu { user: 501_234, system: 224_256 }));
        assert_eq!(parse_memory_stat(KERNEL_MEMORY_STAT_V1, CgroupVersion::V1), Ok((5_232_840_704, 8_015_015_936)));
        assert_eq!(parse_memory_stat(KERNEL_MEMORY_STAT_V2, CgroupVersion::V2), Ok((268_435_456, 536_870_912)));
        type LimitParser = fn(&str) -> Result<Option<u64>, ParseError>;
        let limits: &[(&str, LimitParser, &str, Option<u64>)] = &[
            ("v2 without a limit", parse_memory_max, "max\n", None),
            ("v2 with 512 MiB", parse_memory_max, "536870912\n", Some(512 * MIB)),
            ("v1 without a limit, 4 KiB pages", parse_limit_in_bytes, "9223372036854771712\n", None),
            ("v1 without a limit, 16 KiB pages", parse_limit_in_bytes, "9223372036854759424\n", None),
            ("v1 without a limit, 64 KiB pages", parse_limit_in_bytes, "9223372036854710272\n", None),
            ("v1 with 2 GiB", parse_limit_in_bytes, "2147483648\n", Some(2 * GIB)),
        ];
        for (name, parse, text, expected) in limits {
            assert_eq!(parse(text), Ok(*expected), "{name}");
        }

        let refused: &[(&str, Result<(), ParseError>, &str)] = &[
            ("v1 stat without system", parse_cpuacct_stat("user 5\n").map(drop), "no system line"),
            ("v1 stat with a word", parse_cpuacct_stat("user x\nsystem 1\n").map(drop), "user is not a number"),
            ("v2 stat without user", parse_cpu_stat("usage_usec 5\nsystem_usec 1\n").map(drop), "no user_usec line"),
            ("a negative limit", parse_memory_max("-1\n").map(drop), "expected an unsigned integer"),
            ("a limit in words", parse_limit_in_bytes("lots\n").map(drop), "expected an unsigned integer"),
            (
                "v1 memory.stat is not v2's",
                parse_memory_stat(KERNEL_MEMORY_STAT_V2, CgroupVersion::V1).map(drop),
                "no total_",
            ),
        ];
        for (name, result, message) in refused {
            match result {
                Err(error) => assert!(error.0.contains(message), "{name}: {:?} does not mention {message:?}", error.0),
                Ok(()) => panic!("{name}: parsed"),
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_cpu_and_memory_parsers(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse_cpuacct_stat(&text);
            let _ = parse_cpu_stat(&text);
            let _ = parse_memory_max(&text);
            let _ = parse_limit_in_bytes(&text);
            let _ = parse_memory_stat(&text, CgroupVersion::V1);
            let _ = parse_memory_stat(&text, CgroupVersion::V2);
        }

        #[test]
        fn mutated_real_files_never_panic(
            cpu in mutated(KERNEL_CPU_STAT_V2.as_bytes()),
            memory in mutated(KERNEL_MEMORY_STAT_V1.as_bytes()),
        ) {
            if let Ok(cgroup) = parse_cpu_stat(&String::from_utf8_lossy(&cpu)) {
                prop_assert!(cgroup.user <= u64::MAX / 10_000);
            }
            let _ = parse_memory_stat(&String::from_utf8_lossy(&memory), CgroupVersion::V1);
        }
    }
}
