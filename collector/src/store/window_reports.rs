//! Durable load-test window reports (the diagnosis' output; the store's own summary is
//! `summary.rs`): `reports.redb` next to the sample store, one row per closed window
//! (id -> JSON of [`StoredReport`]). A file of its own so the analysis task is its only writer
//! and the sample committer's single-writer model stays untouched; every write is one
//! transaction with `Durability::Immediate`, like the sample store.
//!
//! Reports expire with the samples' `--retention` ([`ReportStore::expire`], by the window's
//! end). A file redb cannot open is moved aside like the sample store's, and a row that does
//! not decode is skipped and counted when listing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bakery_diagnosis::WindowReport;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The report store's file name inside `--data-dir`.
pub const REPORTS_FILE: &str = "reports.redb";

const REPORTS: TableDefinition<&str, &[u8]> = TableDefinition::new("reports");
/// id -> JSON of [`WindowSummary`]: what listing the windows needs, without the per-tick series
/// (bakery-top lists the windows at every refresh).
const SUMMARIES: TableDefinition<&str, &[u8]> = TableDefinition::new("window_summaries");

/// A stored window without its series: id, window and the verdicts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowSummary {
    pub id: String,
    pub window: bakery_diagnosis::Window,
    pub verdicts: Vec<bakery_diagnosis::Verdict>,
}

impl WindowSummary {
    pub fn of(stored: &StoredReport) -> WindowSummary {
        WindowSummary {
            id: stored.id.clone(),
            window: stored.report.window.clone(),
            verdicts: stored.report.verdicts.iter().map(|v| v.verdict.clone()).collect(),
        }
    }
}

/// One closed window and its report, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredReport {
    /// `w-<start ms>`: unique per collector, sorts by start time.
    pub id: String,
    pub report: WindowReport,
}

/// The report table; cheap to clone (one shared database handle).
#[derive(Debug, Clone)]
pub struct ReportStore {
    db: Arc<Database>,
    path: PathBuf,
    unreadable_rows: Arc<AtomicU64>,
}

impl ReportStore {
    /// Opens (or creates) `reports.redb` in `data_dir`; a file redb cannot open is renamed
    /// `reports.redb.corrupt-<unix seconds>` and a fresh one created.
    pub fn open(data_dir: &Path) -> Result<ReportStore> {
        std::fs::create_dir_all(data_dir).map_err(|source| Error::Io {
            action: "cannot create the data dir",
            path: data_dir.to_path_buf(),
            source,
        })?;
        let path = data_dir.join(REPORTS_FILE);
        let db = match Self::open_file(&path) {
            Err(error) if super::recovery::is_damage(&error) => {
                let aside = super::recovery::aside_path(&path, crate::now_ms() / 1000);
                std::fs::rename(&path, &aside).map_err(|source| Error::Io {
                    action: "cannot move the unreadable report store aside from",
                    path: path.clone(),
                    source,
                })?;
                tracing::error!(
                    store = %path.display(),
                    moved_to = %aside.display(),
                    %error,
                    "THE REPORT STORE COULD NOT BE OPENED: it was moved aside and a fresh one started"
                );
                Self::open_file(&path)?
            }
            other => other?,
        };
        Ok(ReportStore { db: Arc::new(db), path, unreadable_rows: Arc::default() })
    }

    fn open_file(path: &Path) -> Result<Database> {
        let db = Database::create(path).map_err(|source| match source {
            redb::DatabaseError::DatabaseAlreadyOpen => Error::StoreInUse { path: path.to_path_buf() },
            source => Error::OpenStore { path: path.to_path_buf(), source },
        })?;
        let txn = db.begin_write().map_err(redb::Error::from)?;
        txn.open_table(REPORTS).map_err(redb::Error::from)?;
        txn.open_table(SUMMARIES).map_err(redb::Error::from)?;
        txn.commit().map_err(redb::Error::from)?;
        Ok(db)
    }

    /// Rows skipped because they did not decode, since the store was opened.
    pub fn unreadable_rows(&self) -> u64 {
        self.unreadable_rows.load(Ordering::Relaxed)
    }

    fn skip(&self, id: &str, what: &str, error: &dyn std::fmt::Display) {
        self.unreadable_rows.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%id, %error, "skipping a stored window {what} that does not decode");
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stores `report` durably (fsync before returning).
    pub fn put(&self, report: &StoredReport) -> Result<()> {
        let serialise = |e: serde_json::Error| Error::Config(format!("a report does not serialise: {e}"));
        let json = serde_json::to_vec(report).map_err(serialise)?;
        let summary = serde_json::to_vec(&WindowSummary::of(report)).map_err(serialise)?;
        let mut txn = self.db.begin_write().map_err(redb::Error::from)?;
        txn.set_durability(Durability::Immediate).map_err(redb::Error::from)?;
        {
            let mut table = txn.open_table(REPORTS).map_err(redb::Error::from)?;
            table.insert(report.id.as_str(), json.as_slice()).map_err(redb::Error::from)?;
            let mut summaries = txn.open_table(SUMMARIES).map_err(redb::Error::from)?;
            summaries.insert(report.id.as_str(), summary.as_slice()).map_err(redb::Error::from)?;
        }
        txn.commit().map_err(redb::Error::from)?;
        Ok(())
    }

    pub fn get(&self, id: &str) -> Result<Option<StoredReport>> {
        let txn = self.db.begin_read().map_err(redb::Error::from)?;
        let table = txn.open_table(REPORTS).map_err(redb::Error::from)?;
        let Some(value) = table.get(id).map_err(redb::Error::from)? else { return Ok(None) };
        decode(value.value()).map(Some)
    }

    /// Every stored report that decodes, newest window first.
    pub fn all(&self) -> Result<Vec<StoredReport>> {
        let txn = self.db.begin_read().map_err(redb::Error::from)?;
        let table = txn.open_table(REPORTS).map_err(redb::Error::from)?;
        let mut reports = Vec::new();
        for row in table.iter().map_err(redb::Error::from)? {
            let (id, value) = row.map_err(redb::Error::from)?;
            match decode(value.value()) {
                Ok(report) => reports.push(report),
                Err(error) => self.skip(id.value(), "report", &error),
            }
        }
        reports.sort_by(|a, b| (b.report.window.start_ms, &b.id).cmp(&(a.report.window.start_ms, &a.id)));
        Ok(reports)
    }

    /// Removes the reports of windows that ended before `cutoff_ms` (a row whose summary does
    /// not decode goes by the start time in its id, `w-<ms>`); returns how many.
    pub fn expire(&self, cutoff_ms: i64) -> Result<u64> {
        let expired: Vec<String> = {
            let txn = self.db.begin_read().map_err(redb::Error::from)?;
            let table = txn.open_table(SUMMARIES).map_err(redb::Error::from)?;
            let mut expired = Vec::new();
            for row in table.iter().map_err(redb::Error::from)? {
                let (id, value) = row.map_err(redb::Error::from)?;
                let id = id.value();
                let ended_ms = match serde_json::from_slice::<WindowSummary>(value.value()) {
                    Ok(summary) => Some(summary.window.end_ms),
                    Err(_) => id.strip_prefix("w-").and_then(|ms| ms.parse::<i64>().ok()),
                };
                if ended_ms.is_some_and(|ended| ended < cutoff_ms) {
                    expired.push(id.to_string());
                }
            }
            expired
        };
        if expired.is_empty() {
            return Ok(0);
        }
        let mut txn = self.db.begin_write().map_err(redb::Error::from)?;
        txn.set_durability(Durability::Immediate).map_err(redb::Error::from)?;
        {
            let mut reports = txn.open_table(REPORTS).map_err(redb::Error::from)?;
            let mut summaries = txn.open_table(SUMMARIES).map_err(redb::Error::from)?;
            for id in &expired {
                reports.remove(id.as_str()).map_err(redb::Error::from)?;
                summaries.remove(id.as_str()).map_err(redb::Error::from)?;
            }
        }
        txn.commit().map_err(redb::Error::from)?;
        Ok(expired.len() as u64)
    }
}

impl ReportStore {
    /// Every stored window without its series, newest first.
    pub fn summaries(&self) -> Result<Vec<WindowSummary>> {
        let txn = self.db.begin_read().map_err(redb::Error::from)?;
        let table = txn.open_table(SUMMARIES).map_err(redb::Error::from)?;
        let mut summaries: Vec<WindowSummary> = Vec::new();
        for row in table.iter().map_err(redb::Error::from)? {
            let (id, value) = row.map_err(redb::Error::from)?;
            match serde_json::from_slice(value.value()) {
                Ok(summary) => summaries.push(summary),
                Err(error) => self.skip(id.value(), "summary", &error),
            }
        }
        summaries.sort_by(|a, b| (b.window.start_ms, &b.id).cmp(&(a.window.start_ms, &a.id)));
        Ok(summaries)
    }

    /// The newest stored report.
    pub fn newest(&self) -> Result<Option<StoredReport>> {
        match self.summaries()?.first() {
            Some(summary) => self.get(&summary.id),
            None => Ok(None),
        }
    }
}

fn decode(bytes: &[u8]) -> Result<StoredReport> {
    serde_json::from_slice(bytes).map_err(|e| Error::Config(format!("a stored report does not decode: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bakery_diagnosis::{Config, Window};

    fn report(id: &str, start_ms: i64) -> StoredReport {
        let window = Window { name: id.into(), start_ms, end_ms: start_ms + 1000, automatic: false, workload: None };
        StoredReport { id: id.into(), report: WindowReport::build(window, [], &Config::default()).unwrap() }
    }

    #[test]
    fn reports_survive_a_reopen_and_list_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = ReportStore::open(dir.path()).unwrap();
            store.put(&report("w-1000", 1000)).unwrap();
            store.put(&report("w-5000", 5000)).unwrap();
        }
        let store = ReportStore::open(dir.path()).unwrap();
        let ids: Vec<String> = store.all().unwrap().into_iter().map(|r| r.id).collect();
        assert_eq!(ids, ["w-5000", "w-1000"]);
        assert_eq!(store.get("w-1000").unwrap(), Some(report("w-1000", 1000)));
        assert_eq!(store.get("nope").unwrap(), None);
        let summaries: Vec<String> = store.summaries().unwrap().into_iter().map(|s| s.id).collect();
        assert_eq!(summaries, ["w-5000", "w-1000"]);
        assert_eq!(store.newest().unwrap().map(|r| r.id).as_deref(), Some("w-5000"));
    }

    #[test]
    fn reports_expire_by_the_end_of_their_window() {
        let dir = tempfile::tempdir().unwrap();
        let store = ReportStore::open(dir.path()).unwrap();
        store.put(&report("w-1000", 1000)).unwrap(); // ends at 2000
        store.put(&report("w-5000", 5000)).unwrap(); // ends at 6000
        assert_eq!(store.expire(2000).unwrap(), 0, "a window ending at the cutoff stays");
        assert_eq!(store.expire(2001).unwrap(), 1);
        let ids: Vec<String> = store.all().unwrap().into_iter().map(|r| r.id).collect();
        assert_eq!(ids, ["w-5000"]);
        assert_eq!(store.get("w-1000").unwrap(), None, "the report goes with its summary");
        assert_eq!(store.expire(i64::MAX).unwrap(), 1);
        assert!(store.summaries().unwrap().is_empty());
    }

    #[test]
    fn a_row_that_does_not_decode_is_skipped_counted_and_still_expires() {
        let dir = tempfile::tempdir().unwrap();
        let store = ReportStore::open(dir.path()).unwrap();
        store.put(&report("w-5000", 5000)).unwrap();
        {
            let txn = store.db.begin_write().unwrap();
            txn.open_table(REPORTS).unwrap().insert("w-1000", b"not json".as_slice()).unwrap();
            txn.open_table(SUMMARIES).unwrap().insert("w-1000", b"{".as_slice()).unwrap();
            txn.commit().unwrap();
        }
        let ids: Vec<String> = store.all().unwrap().into_iter().map(|r| r.id).collect();
        assert_eq!(ids, ["w-5000"], "the readable report is listed");
        assert_eq!(store.summaries().unwrap().len(), 1);
        assert_eq!(store.unreadable_rows(), 2);
        // its id says it started at 1000: expired by a later cutoff like any other
        assert_eq!(store.expire(3000).unwrap(), 1);
        assert_eq!(store.summaries().unwrap().len(), 1);
    }

    #[test]
    fn a_report_file_that_is_not_a_redb_file_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(REPORTS_FILE), vec![0x55u8; 10_000]).unwrap();
        let store = ReportStore::open(dir.path()).unwrap();
        assert!(store.all().unwrap().is_empty());
        let moved: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("reports.redb.corrupt-"))
            .collect();
        assert_eq!(moved.len(), 1, "the damaged file is kept, renamed");
        assert_eq!(std::fs::read(dir.path().join(&moved[0])).unwrap(), vec![0x55u8; 10_000]);
    }
}
