//! The `/proc` walk: which processes are in which pod.
//!
//! A process's pod never changes during its life (the kubelet creates a
//! container's cgroup before starting it), so `/proc/<pid>/cgroup` is read
//! once per pid and the answer kept until the pid disappears from `/proc`.
//! When the walk is made is [`crate::pods::tracker`]'s.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use foldhash::HashMap;

use crate::cgroup::paths::{PodCgroup, parse_pod_cgroup};
use crate::dir_entries;
use crate::kept_files::read_proc_file;
use crate::reuse::{PathBuffer, decimal};
use crate::signal::SignalError;

#[derive(Debug)]
struct CachedPid {
    pod: Option<Arc<PodCgroup>>,
    seen_in_scan: u64,
}

/// pid → pod, kept between scans.
#[derive(Debug, Default)]
pub struct PidCache {
    pids: HashMap<u32, CachedPid>,
    scan: u64,
    buffer: Vec<u8>,
    /// Where `/proc`'s entries are read (see [`dir_entries`]).
    entries: Vec<u8>,
    /// A pid's directory, built for reading its cgroup file.
    path: PathBuffer,
    /// This scan's pod processes, sorted by pod UID then pid.
    members: Vec<(Arc<PodCgroup>, u32)>,
    /// The pids of `members`, in the same order, lent out by [`Self::pods`].
    member_pids: Vec<u32>,
    last_walk: Option<Instant>,
    walk_next_scan: bool,
}

impl PidCache {
    /// Walks `<proc-root>` ([`Self::scan`]) when the last walk is `rescan`
    /// old or more, or one was asked for; otherwise keeps the last walk's
    /// pods. Returns whether it walked.
    pub fn scan_if_due(
        &mut self,
        proc_root: &Path,
        now: Instant,
        rescan: Duration,
        errors: &mut Vec<SignalError>,
    ) -> Result<bool, SignalError> {
        let due =
            self.walk_next_scan || self.last_walk.is_none_or(|last| now.saturating_duration_since(last) >= rescan);
        if due {
            self.scan(proc_root, errors)?;
            self.last_walk = Some(now);
            self.walk_next_scan = false;
        }
        Ok(due)
    }

    /// Makes the next [`Self::scan_if_due`] walk, whatever the time: a pod's
    /// processes were found gone.
    pub fn walk_next_scan(&mut self) {
        self.walk_next_scan = true;
    }

    /// Lists `<proc-root>`, reads the cgroup file of pids not seen before,
    /// forgets pids that are gone. Fails only when `<proc-root>` itself
    /// cannot be listed; a malformed cgroup file is pushed to `errors` (once:
    /// the pid is then remembered as not in a pod).
    pub fn scan(&mut self, proc_root: &Path, errors: &mut Vec<SignalError>) -> Result<(), SignalError> {
        self.scan += 1;
        let scan = self.scan;
        self.members.clear();
        let Self { pids, buffer, entries, path, members, .. } = self;
        let listed = dir_entries::for_each_name(proc_root, entries, |name| {
            let Some(pid) = std::str::from_utf8(name).ok().and_then(|name| name.parse::<u32>().ok()) else { return };
            let cached = match pids.get_mut(&pid) {
                Some(cached) => cached,
                None => {
                    let Some(pod) = read_pod(proc_root, pid, (&mut *path, &mut *buffer), errors) else { return };
                    pids.entry(pid).or_insert(CachedPid { pod, seen_in_scan: scan })
                }
            };
            cached.seen_in_scan = scan;
            if let Some(pod) = &cached.pod {
                members.push((Arc::clone(pod), pid));
            }
        });
        listed.map_err(|e| SignalError::from_io(proc_root, e, "no procfs at the proc root"))?;
        self.pids.retain(|_, cached| cached.seen_in_scan == scan);
        self.members.sort_unstable_by(|(a, a_pid), (b, b_pid)| a.uid.cmp(&b.uid).then(a_pid.cmp(b_pid)));
        self.member_pids.clear();
        self.member_pids.extend(self.members.iter().map(|(_, pid)| *pid));
        Ok(())
    }

    /// The pods of the last scan, each with its pids (ascending), by UID.
    pub fn pods(&self) -> impl Iterator<Item = (&PodCgroup, &[u32])> + '_ {
        let mut start = 0;
        self.members.chunk_by(|(a, _), (b, _)| a.uid == b.uid).map(move |group| {
            let pids = &self.member_pids[start..start + group.len()];
            start += group.len();
            (group[0].0.as_ref(), pids)
        })
    }

    /// How many pids are remembered (pods or not).
    pub fn len(&self) -> usize {
        self.pids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pids.is_empty()
    }
}

/// The pod of one process: `Some(None)` for a process outside pods (or one
/// whose cgroup file could not be understood), `None` for one that is gone.
fn read_pod(
    proc_root: &Path,
    pid: u32,
    (path, buffer): (&mut PathBuffer, &mut Vec<u8>),
    errors: &mut Vec<SignalError>,
) -> Option<Option<Arc<PodCgroup>>> {
    let mut digits = [0; 10];
    let path = path.build(proc_root, &[decimal(pid, &mut digits), "cgroup"]);
    match read_proc_file(path, buffer) {
        // Cgroup names are bytes; a non-UTF-8 one is not a kubepods name.
        Ok(true) => match parse_pod_cgroup(&String::from_utf8_lossy(buffer)) {
            Ok(pod) => Some(pod.map(Arc::new)),
            Err(error) => {
                errors.push(error.at(path));
                Some(None)
            }
        },
        Ok(false) => None,
        Err(error) => {
            errors.push(SignalError::Io { path: path.to_path_buf(), source: error });
            Some(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, content: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    fn uids_and_pids(cache: &PidCache) -> Vec<(String, Vec<u32>)> {
        cache.pods().map(|(pod, pids)| (pod.uid.clone(), pids.to_vec())).collect()
    }

    #[test]
    fn pids_are_grouped_by_pod_and_forgotten_when_gone() {
        let proc = tempfile::tempdir().unwrap();
        write(proc.path(), "10/cgroup", "0::/kubepods/besteffort/podbb/c1\n");
        write(proc.path(), "11/cgroup", "0::/kubepods/besteffort/podbb/c2\n");
        write(proc.path(), "12/cgroup", "0::/kubepods/podaa/c3\n");
        write(proc.path(), "13/cgroup", "0::/system.slice/k3s.service\n");
        write(proc.path(), "self/cgroup", "0::/kubepods/podcc/c4\n");
        write(proc.path(), "stat", "cpu 0 0 0 0\n");
        let mut cache = PidCache::default();
        let mut errors = Vec::new();
        cache.scan(proc.path(), &mut errors).unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(uids_and_pids(&cache), vec![("aa".into(), vec![12]), ("bb".into(), vec![10, 11])]);
        assert_eq!(cache.len(), 4);

        std::fs::remove_dir_all(proc.path().join("11")).unwrap();
        std::fs::remove_dir_all(proc.path().join("12")).unwrap();
        cache.scan(proc.path(), &mut errors).unwrap();
        assert_eq!(uids_and_pids(&cache), vec![("bb".into(), vec![10])]);
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn a_known_pid_is_not_read_again() {
        let proc = tempfile::tempdir().unwrap();
        write(proc.path(), "10/cgroup", "0::/kubepods/besteffort/podbb/c1\n");
        let mut cache = PidCache::default();
        let mut errors = Vec::new();
        cache.scan(proc.path(), &mut errors).unwrap();
        // Had the file been read again, the pod would have changed.
        write(proc.path(), "10/cgroup", "0::/kubepods/besteffort/podee/c1\n");
        cache.scan(proc.path(), &mut errors).unwrap();
        assert_eq!(uids_and_pids(&cache), vec![("bb".into(), vec![10])]);
    }

    #[test]
    fn a_malformed_cgroup_file_is_reported_once_and_an_exited_process_not_at_all() {
        let proc = tempfile::tempdir().unwrap();
        write(proc.path(), "10/cgroup", "nonsense\n");
        write(proc.path(), "11/cgroup", "");
        std::fs::create_dir_all(proc.path().join("12")).unwrap();
        write(proc.path(), "13/cgroup", "0::/kubepods/podaa/c3\n");
        let mut cache = PidCache::default();
        let mut errors = Vec::new();
        cache.scan(proc.path(), &mut errors).unwrap();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].is_malformed() && errors[0].to_string().contains("10/cgroup"), "{}", errors[0]);
        assert_eq!(uids_and_pids(&cache), vec![("aa".into(), vec![13])]);
        cache.scan(proc.path(), &mut errors).unwrap();
        assert_eq!(errors.len(), 1, "{errors:?}");
    }

    #[test]
    fn a_missing_proc_root_is_absent() {
        let mut cache = PidCache::default();
        let error = cache.scan(Path::new("/nonexistent/bakery/proc"), &mut Vec::new()).unwrap_err();
        assert!(matches!(error, SignalError::Absent { .. }), "{error}");
    }

    #[test]
    fn between_walks_the_last_walk_is_kept_unless_a_walk_is_asked_for() {
        let proc = tempfile::tempdir().unwrap();
        write(proc.path(), "10/cgroup", "0::/kubepods/besteffort/podbb/c1\n");
        let mut cache = PidCache::default();
        let mut errors = Vec::new();
        let start = Instant::now();
        let rescan = Duration::from_secs(2);
        assert!(cache.scan_if_due(proc.path(), start, rescan, &mut errors).unwrap());
        write(proc.path(), "11/cgroup", "0::/kubepods/podaa/c2\n");
        assert!(!cache.scan_if_due(proc.path(), start + Duration::from_secs(1), rescan, &mut errors).unwrap());
        assert_eq!(uids_and_pids(&cache), vec![("bb".into(), vec![10])]);
        assert!(cache.scan_if_due(proc.path(), start + rescan, rescan, &mut errors).unwrap());
        assert_eq!(uids_and_pids(&cache), vec![("aa".into(), vec![11]), ("bb".into(), vec![10])]);

        std::fs::remove_dir_all(proc.path().join("10")).unwrap();
        cache.walk_next_scan();
        assert!(cache.scan_if_due(proc.path(), start + rescan, rescan, &mut errors).unwrap());
        assert_eq!(uids_and_pids(&cache), vec![("aa".into(), vec![11])]);
        assert!(errors.is_empty(), "{errors:?}");
    }
}
