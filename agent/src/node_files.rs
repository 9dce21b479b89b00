//! The node-level signals' files, kept open between samples, and their directories, listed now and then.
//!
//! The files: `/proc/stat`, `meminfo`, PSI, sysfs attributes. The
//! directories the signals search: thermal zones, hwmon devices, CPUs, the
//! firmware node; each is listed again only every so often.
//!
//! A streaming agent reads the same dozen or two files every sample; opening
//! each one afresh costs a path walk and two syscalls more than the read
//! itself (see [`crate::kept_files`]), and listing a sysfs directory costs
//! more than reading the attributes in it. What changes in those directories
//! (a CPU brought online, a hwmon driver loaded) is seen at the next listing.
//!
//! Errors are those of `std::fs::read` and `std::fs::read_dir`, so each
//! signal maps them to "absent" or "no reading" as before.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::kept_files::KeptFiles;
use crate::signal::{ParseError, SignalError, SignalResult};

/// Open node files and recent directory listings.
#[derive(Debug)]
pub struct NodeFiles {
    files: KeptFiles<PathBuf>,
    buffer: Vec<u8>,
    listings: HashMap<PathBuf, Listing>,
    relist: Duration,
    now: Instant,
}

#[derive(Debug)]
struct Listing {
    /// Sorted UTF-8 entry names; `None` when the directory does not exist.
    names: Option<Vec<String>>,
    listed_at: Instant,
}

impl Default for NodeFiles {
    fn default() -> Self {
        Self::new()
    }
}

impl NodeFiles {
    /// Lists every directory afresh each time: for one-off reads.
    pub fn new() -> Self {
        Self::with_relist(Duration::ZERO)
    }

    /// Reuses a directory listing for up to `relist`.
    pub fn with_relist(relist: Duration) -> Self {
        Self { files: KeptFiles::default(), buffer: Vec::new(), listings: HashMap::new(), relist, now: Instant::now() }
    }

    /// Starts a sample taken at `now`: files not read until
    /// [`Self::end_sample`] are closed then.
    pub fn begin_sample(&mut self, now: Instant) {
        self.now = now;
        self.files.begin_sample();
    }

    pub fn end_sample(&mut self) {
        self.files.end_sample();
        let (now, relist) = (self.now, self.relist);
        self.listings.retain(|_, listing| now.saturating_duration_since(listing.listed_at) < relist);
    }

    /// The whole file at `path`, as `std::fs::read` would give it.
    pub fn read(&mut self, path: &Path) -> io::Result<&[u8]> {
        self.files.read_file(path.to_path_buf(), || path.to_path_buf(), &mut self.buffer)?;
        Ok(&self.buffer)
    }

    /// Reads the text file at `path` and parses it: absent (with
    /// `why_absent`) when it does not exist, malformed when `parse` refuses
    /// it. Bytes that are not UTF-8 are decoded lossily, so they fail as
    /// malformed content that the error shows, not as an IO error.
    pub fn read_parsed<T>(
        &mut self,
        path: &Path,
        why_absent: &str,
        parse: impl FnOnce(&str) -> Result<T, ParseError>,
    ) -> SignalResult<T> {
        let bytes = self.read(path).map_err(|e| SignalError::from_io(path, e, why_absent))?;
        parse(&String::from_utf8_lossy(bytes)).map_err(|e| e.at(path))
    }

    /// The UTF-8 names in directory `dir`, sorted; `None` when it does not
    /// exist (or is not a directory).
    pub fn list(&mut self, dir: &Path) -> io::Result<Option<&[String]>> {
        let fresh = self
            .listings
            .get(dir)
            .is_some_and(|listing| self.now.saturating_duration_since(listing.listed_at) < self.relist);
        if !fresh {
            let names = list_dir(dir)?;
            self.listings.insert(dir.to_path_buf(), Listing { names, listed_at: self.now });
        }
        Ok(self.listings.get(dir).and_then(|listing| listing.names.as_deref()))
    }
}

fn list_dir(dir: &Path) -> io::Result<Option<Vec<String>>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        if let Ok(name) = entry?.file_name().into_string() {
            names.push(name);
        }
    }
    names.sort();
    Ok(Some(names))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_file_shows_its_current_content_and_a_vanished_one_the_error_a_fresh_read_gives() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stat");
        std::fs::write(&path, "cpu 1\n").unwrap();
        let mut files = NodeFiles::new();
        files.begin_sample(Instant::now());
        assert_eq!(files.read(&path).unwrap(), b"cpu 1\n");
        files.end_sample();

        std::fs::write(&path, "cpu 22\n").unwrap();
        files.begin_sample(Instant::now());
        assert_eq!(files.read(&path).unwrap(), b"cpu 22\n", "re-read through the kept file");
        std::fs::write(&path, "").unwrap();
        assert_eq!(files.read(&path).unwrap(), b"", "an empty file is empty, not missing");
        std::fs::remove_file(&path).unwrap();
        // The kept descriptor still reads the unlinked inode; a path that
        // never existed gives NotFound.
        let missing = dir.path().join("meminfo");
        assert_eq!(files.read(&missing).unwrap_err().kind(), io::ErrorKind::NotFound);
        files.end_sample();
    }

    #[test]
    fn a_listing_is_reused_until_the_relist_interval_and_a_missing_directory_is_none() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("thermal_zone0"), "").unwrap();
        let start = Instant::now();
        let mut files = NodeFiles::with_relist(Duration::from_secs(2));
        let names = |files: &mut NodeFiles, at: Duration| {
            files.begin_sample(start + at);
            let names = files.list(dir.path()).unwrap().map(<[String]>::to_vec);
            files.end_sample();
            names
        };
        assert_eq!(names(&mut files, Duration::ZERO), Some(vec!["thermal_zone0".to_string()]));
        std::fs::write(dir.path().join("thermal_zone1"), "").unwrap();
        assert_eq!(names(&mut files, Duration::from_secs(1)), Some(vec!["thermal_zone0".to_string()]));
        assert_eq!(
            names(&mut files, Duration::from_secs(2)),
            Some(vec!["thermal_zone0".to_string(), "thermal_zone1".to_string()])
        );
        let mut files = NodeFiles::new();
        files.begin_sample(start);
        assert_eq!(files.list(&dir.path().join("absent")).unwrap(), None);
        assert_eq!(files.list(&dir.path().join("thermal_zone0")).unwrap(), None, "not a directory");
    }
}
