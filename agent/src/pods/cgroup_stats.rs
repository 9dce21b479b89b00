//! A pod's CPU time and memory working set, from its pod-level cgroup on
//! cgroup v2 or v1.
//!
//! - v2 (`Documentation/admin-guide/cgroup-v2.rst`): `cpu.stat` line
//!   `usage_usec`, `memory.current`, `memory.stat` line `inactive_file`.
//! - v1 (`Documentation/admin-guide/cgroup-v1/cpuacct.rst`, `memory.rst`):
//!   `cpuacct.usage` in nanoseconds, `memory.usage_in_bytes`, `memory.stat`
//!   line `total_inactive_file` (the hierarchical total: the pod level has
//!   no tasks of its own, its containers are children).
//!
//! The working set is usage minus inactive file cache, as the kubelet and
//! cAdvisor compute it (cAdvisor `container/libcontainer/handler.go`,
//! `setMemoryStats`): what `kubectl top pod` shows and what eviction uses.
//! Usage is read every sample; the inactive file figure comes from
//! `memory.stat`, the costliest file of a pod scan (the kernel prints some 50
//! counters and flushes the cgroup's per-CPU statistics first), so it may be
//! reused for up to the reader's refresh interval: page cache ages over
//! seconds, and cAdvisor itself refreshes it only every housekeeping pass
//! (10 s or more).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cgroup_mounts::Hierarchy;
use crate::kept_files::KeptFiles;
use crate::pods::cgroup_path::{CgroupVersion, PodCgroup};
use crate::signal::{ParseError, SignalError};

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
    v1_cpuacct: usize,
    v1_memory: usize,
    v2: usize,
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

/// The files of a pod cgroup that are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum CgroupFile {
    CpuStat,
    CpuacctUsage,
    MemoryCurrent,
    MemoryUsageInBytes,
    MemoryStat,
}

impl CgroupFile {
    fn name(self) -> &'static str {
        match self {
            Self::CpuStat => "cpu.stat",
            Self::CpuacctUsage => "cpuacct.usage",
            Self::MemoryCurrent => "memory.current",
            Self::MemoryUsageInBytes => "memory.usage_in_bytes",
            Self::MemoryStat => "memory.stat",
        }
    }
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
        self.root.join(self.mount).join(self.relative).join(self.file.name())
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
        let relative = pod.pod_path.trim_start_matches('/');
        let (mount, cpu_file, usage_file, inactive_key) = match pod.version {
            CgroupVersion::V2 => (Hierarchy::V2, CgroupFile::CpuStat, CgroupFile::MemoryCurrent, "inactive_file"),
            CgroupVersion::V1 => {
                (Hierarchy::V1Cpuacct, CgroupFile::CpuacctUsage, CgroupFile::MemoryUsageInBytes, "total_inactive_file")
            }
        };
        let cpu = self.read_file(root, mount, id, relative, cpu_file, errors).and_then(|(at, text)| {
            let parsed = match pod.version {
                CgroupVersion::V2 => flat_keyed_value(text, "usage_usec"),
                CgroupVersion::V1 => parse_single_u64(text).map(|nanoseconds| nanoseconds / 1000),
            };
            keep(parsed.map_err(|e| e.at(&at.path())), errors)
        });
        let memory_mount = if pod.version == CgroupVersion::V1 { Hierarchy::V1Memory } else { Hierarchy::V2 };
        let memory = self.working_set(root, memory_mount, (id, &pod.pod_path), (usage_file, inactive_key), now, errors);
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
        mount: Hierarchy,
        (id, pod_path): (u32, &str),
        (usage_file, inactive_key): (CgroupFile, &str),
        now: Instant,
        errors: &mut Vec<SignalError>,
    ) -> Option<u64> {
        let relative = pod_path.trim_start_matches('/');
        let (at, text) = self.read_file(root, mount, id, relative, usage_file, errors)?;
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
                let bytes = keep(flat_keyed_value(text, inactive_key).map_err(|e| e.at(&at.path())), errors)?;
                if let Some(pod) = self.pods.get_mut(pod_path) {
                    pod.inactive = Some((bytes, now));
                }
                bytes
            }
        };
        if fresh.is_some() {
            // Not read this sample, but needed again at the next refresh.
            let index = *self.preferred(mount);
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
        let mounts = which.mount_names();
        let preferred = *self.preferred(which);
        let order = std::iter::once(preferred).chain((0..mounts.len()).filter(|&i| i != preferred));
        for index in order {
            let at = FileAt { root, mount: mounts[index], relative, file };
            match self.files.read_lazily((id, file, index), || at.path(), &mut self.buffer) {
                Ok(true) => {
                    *self.preferred(which) = index;
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

    fn preferred(&mut self, which: Hierarchy) -> &mut usize {
        match which {
            Hierarchy::V1Cpuacct => &mut self.v1_cpuacct,
            Hierarchy::V1Memory => &mut self.v1_memory,
            Hierarchy::V2 => &mut self.v2,
        }
    }
}

fn keep<T>(result: Result<T, SignalError>, errors: &mut Vec<SignalError>) -> Option<T> {
    result.map_err(|error| errors.push(error)).ok()
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::QosClass;
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
}
