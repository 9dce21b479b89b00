//! What the store does about damage, so that the collector serves again instead of
//! crash-looping: a file redb cannot open is renamed `<file>.corrupt-<unix seconds>` (kept for
//! `inspect --file` and for people) and a fresh store is started; a node record that does not
//! decode is rebuilt from the node's rows.
//!
//! Only damage is moved aside. An I/O error (a failing disk, a permission, a full disk) or a
//! store held by another process is an error as before: moving the file would not help, and
//! the data in it is fine.

use std::path::{Path, PathBuf};

use redb::ReadableTable;

use super::{LoadLimits, LoadedNode, NodeRecord, STORE_FILE, Store, node_range, row_bytes};
use crate::error::{Error, Result};

/// A store file that could not be opened, and where it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovedAside {
    /// The file's new name, next to where it was.
    pub path: PathBuf,
    /// Why it could not be opened.
    pub reason: String,
}

/// An open store and what opening it found.
pub struct Opened {
    pub store: Store,
    pub nodes: Vec<LoadedNode>,
    /// Set when the file could not be opened and a fresh store was started.
    pub moved_aside: Option<MovedAside>,
}

impl Store {
    /// Opens the store in `data_dir` and loads it; when the file is damaged (not a redb file, a
    /// corrupt header, cut short, or redb panics reading it), renames it aside, logs where it
    /// went, and starts a fresh store. Other failures are returned.
    pub fn open_or_move_aside(data_dir: &Path) -> Result<Opened> {
        Store::open_or_move_aside_with(data_dir, &LoadLimits::UNBOUNDED)
    }

    /// [`Store::open_or_move_aside`], loading within `limits` ([`Store::load_with`]).
    pub fn open_or_move_aside_with(data_dir: &Path, limits: &LoadLimits) -> Result<Opened> {
        let reason = match open_and_load(data_dir, limits) {
            Ok((store, nodes)) => return Ok(Opened { store, nodes, moved_aside: None }),
            Err(Failure::Error(error)) if is_damage(&error) => error.to_string(),
            Err(Failure::Error(error)) => return Err(error),
            Err(Failure::Panic(message)) => format!("reading it panicked: {message}"),
        };
        let file = data_dir.join(STORE_FILE);
        let aside = aside_path(&file, crate::now_ms() / 1000);
        std::fs::rename(&file, &aside).map_err(|source| Error::Io {
            action: "cannot move the unreadable store aside from",
            path: file.clone(),
            source,
        })?;
        tracing::error!(
            store = %file.display(),
            moved_to = %aside.display(),
            %reason,
            "THE STORE FILE COULD NOT BE OPENED: it was moved aside and a fresh store started. Samples in it \
             are not served; `bakery-collector inspect --file <moved file>` reads what it can"
        );
        let (store, nodes) = match open_and_load(data_dir, limits) {
            Ok(opened) => opened,
            Err(Failure::Error(error)) => return Err(error),
            Err(Failure::Panic(message)) => {
                return Err(Error::Config(format!("a fresh store at {} panicked: {message}", file.display())));
            }
        };
        Ok(Opened { store, nodes, moved_aside: Some(MovedAside { path: aside, reason }) })
    }
}

enum Failure {
    Error(Error),
    Panic(String),
}

fn open_and_load(data_dir: &Path, limits: &LoadLimits) -> std::result::Result<(Store, Vec<LoadedNode>), Failure> {
    // redb may panic on some damage rather than return an error; the store's state dies with
    // the closure, so nothing half-open is used afterwards.
    let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<_> {
        let mut store = Store::open(data_dir)?;
        let nodes = store.load_with(limits)?;
        Ok((store, nodes))
    }));
    match attempt {
        Ok(result) => result.map_err(Failure::Error),
        Err(panic) => Err(Failure::Panic(panic_message(panic.as_ref()))),
    }
}

/// The text of a caught panic.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// True when `error` says the file's content is damaged (as opposed to the disk failing, the
/// file being in use, or a permission).
pub fn is_damage(error: &Error) -> bool {
    use redb::{DatabaseError, StorageError};
    let io_damage = |io: &std::io::Error| {
        // redb reports a file that is not a redb file as InvalidData, and one cut short inside
        // its header as UnexpectedEof.
        matches!(io.kind(), std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof)
    };
    match error {
        Error::OpenStore { source: DatabaseError::Storage(StorageError::Corrupted(_)), .. } => true,
        Error::OpenStore { source: DatabaseError::Storage(StorageError::Io(io)), .. } => io_damage(io),
        Error::Store(redb::Error::Corrupted(_)) => true,
        Error::Store(redb::Error::Io(io)) => io_damage(io),
        Error::Store(redb::Error::TableTypeMismatch { .. } | redb::Error::TypeDefinitionChanged { .. }) => true,
        _ => false,
    }
}

/// `<file>.corrupt-<unix seconds>`, with `-2`, `-3`, ... when that name is taken.
pub fn aside_path(file: &Path, unix_seconds: i64) -> PathBuf {
    let base = format!("{}.corrupt-{unix_seconds}", file.display());
    let mut candidate = PathBuf::from(&base);
    let mut n = 2u32;
    while candidate.exists() {
        candidate = PathBuf::from(format!("{base}-{n}"));
        n = n.saturating_add(1);
    }
    candidate
}

/// The highest node id any row uses (0 in an empty store).
pub(super) fn highest_node_id(
    samples: &impl ReadableTable<(u32, u64), (i64, u32, &'static [u8])>,
    gaps: &impl ReadableTable<(u32, u64), (u64, i64, &'static str)>,
    pods: &impl ReadableTable<(u32, u32), &'static [u8]>,
) -> Result<u32> {
    let mut highest = 0;
    if let Some((key, _)) = samples.last()? {
        highest = highest.max(key.value().0);
    }
    if let Some((key, _)) = gaps.last()? {
        highest = highest.max(key.value().0);
    }
    if let Some((key, _)) = pods.last()? {
        highest = highest.max(key.value().0);
    }
    Ok(highest)
}

/// A node record rebuilt from the node's rows: counts and bytes from its samples, the retained
/// start from its oldest row, and as committed everything from there that the rows cover without
/// a hole (or through `handled_through`, if further). Rows above a hole are live samples handled
/// ahead of a replay that had not reached them: counting them as committed would tell the agent
/// its backlog below them had arrived. The live fields come back with the commit that rebuilds it.
pub(super) fn rebuild_record(
    samples: &impl ReadableTable<(u32, u64), (i64, u32, &'static [u8])>,
    gaps: &impl ReadableTable<(u32, u64), (u64, i64, &'static str)>,
    node_id: u32,
    handled_through: u64,
) -> Result<NodeRecord> {
    let mut record = NodeRecord { node_id, stored_bytes: Some(0), ..NodeRecord::default() };
    let mut covered: Vec<(u64, u64)> = Vec::new();
    for row in samples.range(node_range(node_id))? {
        let (key, value) = row?;
        let seq = key.value().1;
        let (_, sample_count, bytes) = value.value();
        covered.push((seq, seq));
        record.batches = record.batches.saturating_add(1);
        record.samples = record.samples.saturating_add(u64::from(sample_count));
        record.stored_bytes = Some(record.stored_bytes.unwrap_or(0).saturating_add(row_bytes(bytes.len())));
    }
    for row in gaps.range(node_range(node_id))? {
        let (key, value) = row?;
        let (gap_last, _, _) = value.value();
        covered.push((key.value().1, gap_last));
    }
    covered.sort_unstable();
    let first_seq = covered.first().map(|(first, _)| *first);
    let mut contiguous_through = first_seq.map_or(0, |first| first.saturating_sub(1));
    for (first, last) in covered {
        if first > contiguous_through.saturating_add(1) {
            break;
        }
        contiguous_through = contiguous_through.max(last);
    }
    record.committed_seq = contiguous_through.max(handled_through);
    record.retained_from_seq = first_seq.unwrap_or_else(|| record.committed_seq.saturating_add(1)).max(1);
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_aside_name_says_when_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(STORE_FILE);
        let first = aside_path(&file, 1_700_000_000);
        assert_eq!(first, dir.path().join("bakery.redb.corrupt-1700000000"));
        std::fs::write(&first, b"x").unwrap();
        assert_eq!(aside_path(&file, 1_700_000_000), dir.path().join("bakery.redb.corrupt-1700000000-2"));
    }

    #[test]
    fn only_damage_counts_as_damage() {
        let path = PathBuf::from("/d/bakery.redb");
        let open = |source| Error::OpenStore { path: path.clone(), source };
        let storage = |e| redb::DatabaseError::Storage(e);
        let io = |kind| redb::StorageError::Io(std::io::Error::from(kind));
        assert!(is_damage(&open(storage(redb::StorageError::Corrupted("bad".into())))));
        assert!(is_damage(&open(storage(io(std::io::ErrorKind::InvalidData)))));
        assert!(is_damage(&open(storage(io(std::io::ErrorKind::UnexpectedEof)))));
        // a failing or full disk, a permission, a second collector: not the file's fault
        assert!(!is_damage(&open(storage(io(std::io::ErrorKind::PermissionDenied)))));
        assert!(!is_damage(&open(storage(io(std::io::ErrorKind::StorageFull)))));
        assert!(!is_damage(&Error::StoreInUse { path: path.clone() }));
        assert!(!is_damage(&Error::Store(redb::Error::Io(std::io::Error::other("EIO")))));
    }
}
