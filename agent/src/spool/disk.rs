//! The disk spool's append-only segment log: segment files, their replay, appends, syncs and deletion.
//!
//! An append-only log of segment files `<dir>/<id>.seg` (ids grow) of
//! [`record`](crate::spool::record)s; every segment starts with a
//! checkpoint. Replaying the segments in order rebuilds the spool; a torn or
//! corrupt record ends the replay of its segment. A segment is deleted as a
//! whole once nothing in it is still unacknowledged, so the log never
//! rewrites a file. A lock file keeps a second agent out of the directory.
//!
//! Records are appended with one `write` each (no user-space buffer), so an
//! agent crash loses nothing: the data is in the kernel's page cache.
//! `fdatasync` runs at most once per `fsync_interval`, and only after new
//! writes (see the SD-card notes in [`crate::spool`]).

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bakery_proto::v1 as pb;

use crate::spool::record::{OwnedRecord, RECORD_HEADER_BYTES, Record, decode_records, encode_record};
use crate::spool::{SpoolConfig, SpoolError};

/// How often a repeated disk problem is logged.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// What the segments on disk held when the spool was opened.
#[derive(Debug, Default)]
pub(super) struct Replay {
    /// (segment, body offset, record) in log order; batches without their pods.
    pub(super) records: Vec<(u64, u64, OwnedRecord)>,
    pub(super) problems: Vec<String>,
    /// The latest identity of every pod the replayed batches mention, by
    /// UID: one copy each, however many batches repeat it.
    pub(super) pods: HashMap<String, pb::PodIdentity>,
}

#[derive(Debug, Clone, Copy, Default)]
struct SegmentInfo {
    bytes: u64,
    /// Entries of the spool held in this segment.
    live: usize,
}

/// The segment files of a disk spool.
#[derive(Debug)]
pub(super) struct DiskLog {
    dir: PathBuf,
    /// Held for the spool's lifetime: an advisory lock against a second agent.
    _lock: File,
    pub(super) active_id: u64,
    active: Option<File>,
    segments: BTreeMap<u64, SegmentInfo>,
    segment_bytes: u64,
    fsync_interval: Duration,
    last_sync: Instant,
    dirty: bool,
    reader: Option<(u64, File)>,
    last_warning: Option<Instant>,
    /// The spool's (next sequence number, acknowledged one). Every segment
    /// starts with them, so that deleting older segments never loses them.
    pub(super) checkpoint: (u64, u64),
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016}.seg"))
}

impl DiskLog {
    pub(super) fn open(dir: &Path, config: &SpoolConfig) -> Result<(Self, Replay), SpoolError> {
        std::fs::create_dir_all(dir).map_err(|e| SpoolError::io(dir, e))?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| SpoolError::io(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(SpoolError::InUse(dir.to_path_buf())),
            Err(std::fs::TryLockError::Error(e)) => return Err(SpoolError::io(&lock_path, e)),
        }
        let mut ids = Vec::new();
        for item in std::fs::read_dir(dir).map_err(|e| SpoolError::io(dir, e))? {
            let item = item.map_err(|e| SpoolError::io(dir, e))?;
            let name = item.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".seg")).and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            ids.push(id);
        }
        ids.sort_unstable();
        let mut replay = Replay::default();
        let mut segments = BTreeMap::new();
        for id in &ids {
            let path = segment_path(dir, *id);
            let bytes = std::fs::read(&path).map_err(|e| SpoolError::io(&path, e))?;
            let (records, problem) = decode_records(&bytes);
            if let Some(problem) = problem {
                replay.problems.push(format!("{}: {problem}", path.display()));
            }
            for (offset, mut record) in records {
                if let OwnedRecord::Batch { pods, .. } = &mut record {
                    for identity in std::mem::take(pods) {
                        replay.pods.insert(identity.uid.clone(), identity);
                    }
                }
                replay.records.push((*id, offset, record));
            }
            segments.insert(*id, SegmentInfo { bytes: bytes.len() as u64, live: 0 });
        }
        let log = Self {
            dir: dir.to_path_buf(),
            _lock: lock,
            active_id: ids.last().copied().unwrap_or(0),
            active: None,
            segments,
            segment_bytes: config.segment_bytes(),
            fsync_interval: config.fsync_interval,
            last_sync: Instant::now(),
            dirty: false,
            reader: None,
            last_warning: None,
            checkpoint: (1, 0),
        };
        Ok((log, replay))
    }

    pub(super) fn total_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.bytes).sum()
    }

    pub(super) fn hold(&mut self, segment: u64) {
        if let Some(info) = self.segments.get_mut(&segment) {
            info.live += 1;
        }
    }

    pub(super) fn release(&mut self, segment: u64) {
        if let Some(info) = self.segments.get_mut(&segment) {
            info.live = info.live.saturating_sub(1);
        }
    }

    /// Starts a new active segment (the old one is synced first, so a
    /// finished segment is durable as a whole).
    pub(super) fn rotate(&mut self) {
        if let Some(old) = &self.active
            && self.dirty
            && let Err(error) = old.sync_data()
        {
            self.warn_write_failed(&error);
        }
        let id = self.active_id + 1;
        let path = segment_path(&self.dir, id);
        match OpenOptions::new().create_new(true).append(true).open(&path) {
            Ok(file) => {
                self.active = Some(file);
                self.active_id = id;
                self.segments.insert(id, SegmentInfo::default());
                self.dirty = false;
                // The new file's directory entry must survive a power loss too.
                if let Ok(dir) = File::open(&self.dir) {
                    let _ = dir.sync_all();
                }
                self.append_checkpoint();
            }
            Err(error) => self.warn_write_failed(&error),
        }
    }

    /// Appends one record with a single `write`; returns (segment, body offset).
    pub(super) fn append(&mut self, record: &Record<'_>) -> io::Result<(u64, u64)> {
        let framed = encode_record(record);
        let active_bytes = self.segments.get(&self.active_id).map_or(0, |s| s.bytes);
        if self.active.is_none() || (active_bytes > 0 && active_bytes + framed.len() as u64 > self.segment_bytes) {
            self.rotate();
        }
        let id = self.active_id;
        let file = self.active.as_mut().ok_or_else(|| io::Error::other("no writable spool segment"))?;
        let start = self.segments.get(&id).map_or(0, |s| s.bytes);
        if let Err(error) = file.write_all(&framed) {
            // Cut a partial write off so that later records stay readable.
            if file.set_len(start).is_err() {
                self.active = None;
            }
            return Err(error);
        }
        self.dirty = true;
        if let Some(info) = self.segments.get_mut(&id) {
            info.bytes += framed.len() as u64;
        }
        Ok((id, start + RECORD_HEADER_BYTES as u64))
    }

    pub(super) fn append_checkpoint(&mut self) {
        let (next_seq, acked) = self.checkpoint;
        if let Err(error) = self.append(&Record::Checkpoint { next_seq, acked }) {
            self.warn_write_failed(&error);
        }
    }

    pub(super) fn read(&mut self, segment: u64, offset: u64, len: u32) -> io::Result<Vec<u8>> {
        if self.reader.as_ref().map(|(id, _)| *id) != Some(segment) {
            self.reader = Some((segment, File::open(segment_path(&self.dir, segment))?));
        }
        let (_, file) = self.reader.as_mut().ok_or_else(|| io::Error::other("no reader"))?;
        file.seek(SeekFrom::Start(offset))?;
        let mut payload = vec![0; len as usize];
        file.read_exact(&mut payload)?;
        Ok(payload)
    }

    /// Deletes every segment, except the active one, that holds nothing
    /// unacknowledged any more.
    pub(super) fn delete_dead_segments(&mut self) {
        let dead: Vec<u64> = self
            .segments
            .iter()
            .filter(|(id, info)| **id != self.active_id && info.live == 0)
            .map(|(id, _)| *id)
            .collect();
        for id in dead {
            let path = segment_path(&self.dir, id);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => {
                    self.warn_write_failed(&error);
                    continue;
                }
            }
            self.segments.remove(&id);
            if self.reader.as_ref().map(|(r, _)| *r) == Some(id) {
                self.reader = None;
            }
        }
    }

    pub(super) fn maybe_sync(&mut self) {
        if self.dirty
            && self.last_sync.elapsed() >= self.fsync_interval
            && let Err(error) = self.sync()
        {
            self.warn_write_failed(&error);
        }
    }

    pub(super) fn sync(&mut self) -> io::Result<()> {
        if let Some(file) = &self.active
            && self.dirty
        {
            file.sync_data()?;
        }
        self.dirty = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    pub(super) fn warn_write_failed(&mut self, error: &io::Error) {
        if self.last_warning.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            self.last_warning = Some(Instant::now());
            tracing::warn!(
                dir = %self.dir.display(),
                %error,
                "cannot write the disk spool; unacknowledged samples are kept in memory meanwhile"
            );
        }
    }
}
