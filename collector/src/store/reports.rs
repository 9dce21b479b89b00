//! Durable window reports: `reports.redb` next to the sample store, one row per closed window
//! (id -> JSON of [`StoredReport`]). A file of its own so the analysis task is its only writer
//! and the sample committer's single-writer model stays untouched; every write is one
//! transaction with `Durability::Immediate`, like the sample store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

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
}

impl ReportStore {
    pub fn open(data_dir: &Path) -> Result<ReportStore> {
        std::fs::create_dir_all(data_dir).map_err(|source| Error::Io {
            action: "cannot create the data dir",
            path: data_dir.to_path_buf(),
            source,
        })?;
        let path = data_dir.join(REPORTS_FILE);
        let db = Database::create(&path).map_err(|source| match source {
            redb::DatabaseError::DatabaseAlreadyOpen => Error::StoreInUse { path: path.clone() },
            source => Error::OpenStore { path: path.clone(), source },
        })?;
        let txn = db.begin_write().map_err(redb::Error::from)?;
        txn.open_table(REPORTS).map_err(redb::Error::from)?;
        txn.open_table(SUMMARIES).map_err(redb::Error::from)?;
        txn.commit().map_err(redb::Error::from)?;
        Ok(ReportStore { db: Arc::new(db), path })
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

    /// Every stored report, newest window first.
    pub fn all(&self) -> Result<Vec<StoredReport>> {
        let txn = self.db.begin_read().map_err(redb::Error::from)?;
        let table = txn.open_table(REPORTS).map_err(redb::Error::from)?;
        let mut reports = Vec::new();
        for row in table.iter().map_err(redb::Error::from)? {
            let (_, value) = row.map_err(redb::Error::from)?;
            reports.push(decode(value.value())?);
        }
        reports.sort_by(|a, b| (b.report.window.start_ms, &b.id).cmp(&(a.report.window.start_ms, &a.id)));
        Ok(reports)
    }
}

impl ReportStore {
    /// Every stored window without its series, newest first.
    pub fn summaries(&self) -> Result<Vec<WindowSummary>> {
        let txn = self.db.begin_read().map_err(redb::Error::from)?;
        let table = txn.open_table(SUMMARIES).map_err(redb::Error::from)?;
        let mut summaries: Vec<WindowSummary> = Vec::new();
        for row in table.iter().map_err(redb::Error::from)? {
            let (_, value) = row.map_err(redb::Error::from)?;
            summaries.push(
                serde_json::from_slice(value.value())
                    .map_err(|e| Error::Config(format!("a stored window summary does not decode: {e}")))?,
            );
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
}
