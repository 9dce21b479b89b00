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
//! Nothing here allocates once the node's files are open and its
//! directories listed: a kept file is found by the path it is asked for
//! (the signals build theirs in a buffer kept here, [`NodeFiles::read_at`]),
//! and a directory listed again with the same entries keeps the names it
//! had. A directory not listed in a sample is forgotten at its end.
//!
//! Errors are those of `std::fs::read` and of listing a directory, so each
//! signal maps them to "absent" or "no reading" as before.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use foldhash::{HashMap, HashMapExt};

use crate::dir_entries;
use crate::kept_files::KeptFiles;
use crate::reuse::PathBuffer;
use crate::signal::{ParseError, SignalError, SignalResult};

/// Open node files and recent directory listings.
#[derive(Debug)]
pub struct NodeFiles {
    files: KeptFiles<PathBuf>,
    buffer: Vec<u8>,
    /// Where [`Self::read_at`] and [`Self::list_at`] build their paths.
    path: PathBuffer,
    /// Where a directory's entries are read.
    entries: Vec<u8>,
    listings: HashMap<PathBuf, Listing>,
    relist: Duration,
    now: Instant,
    sample: u64,
}

#[derive(Debug)]
struct Listing {
    /// Sorted UTF-8 entry names; `None` when the directory does not exist.
    names: Option<Vec<String>>,
    listed_at: Instant,
    used_in_sample: u64,
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
        Self {
            files: KeptFiles::default(),
            buffer: Vec::new(),
            path: PathBuffer::default(),
            entries: Vec::new(),
            listings: HashMap::new(),
            relist,
            now: Instant::now(),
            sample: 0,
        }
    }

    /// Starts a sample taken at `now`: files not read until
    /// [`Self::end_sample`] are closed then, and so are the listings of
    /// directories not listed.
    pub fn begin_sample(&mut self, now: Instant) {
        self.now = now;
        self.sample += 1;
        self.files.begin_sample();
    }

    pub fn end_sample(&mut self) {
        self.files.end_sample();
        let sample = self.sample;
        self.listings.retain(|_, listing| listing.used_in_sample == sample);
    }

    /// The whole file at `path`, as `std::fs::read` would give it.
    pub fn read(&mut self, path: &Path) -> io::Result<&[u8]> {
        self.files.read_file(path, || File::open(path), &mut self.buffer)?;
        Ok(&self.buffer)
    }

    /// [`Self::read`] of `base` joined with `parts`, the path built in a
    /// buffer kept between samples (see [`path_of`] for an error's path).
    pub fn read_at<S: AsRef<OsStr>>(&mut self, base: &Path, parts: &[S]) -> io::Result<&[u8]> {
        let path = self.path.build(base, parts);
        self.files.read_file(path, || File::open(path), &mut self.buffer)?;
        Ok(&self.buffer)
    }

    /// Reads the text file at `path` and parses it: absent (with
    /// `why_absent`) when it does not exist, malformed when `parse` refuses
    /// it. Bytes that are not UTF-8 are decoded lossily, so they fail as
    /// malformed content that the error shows, not as an IO error.
    pub fn read_parsed<T>(
        &mut self,
        path: &Path,
        why_absent: &'static str,
        parse: impl FnOnce(&str) -> Result<T, ParseError>,
    ) -> SignalResult<T> {
        let bytes = self.read(path).map_err(|e| SignalError::from_io(path, e, why_absent))?;
        parse(&String::from_utf8_lossy(bytes)).map_err(|e| e.at(path))
    }

    /// [`Self::read_parsed`] of `base` joined with `parts`.
    pub fn read_parsed_at<T, S: AsRef<OsStr>>(
        &mut self,
        base: &Path,
        parts: &[S],
        why_absent: &'static str,
        parse: impl FnOnce(&str) -> Result<T, ParseError>,
    ) -> SignalResult<T> {
        let bytes = self.read_at(base, parts).map_err(|e| SignalError::from_io(path_of(base, parts), e, why_absent))?;
        parse(&String::from_utf8_lossy(bytes)).map_err(|e| e.at(&path_of(base, parts)))
    }

    /// The UTF-8 names in directory `dir`, sorted; `None` when it does not
    /// exist (or is not a directory).
    pub fn list(&mut self, dir: &Path) -> io::Result<Option<&[String]>> {
        let when = (self.now, self.relist, self.sample);
        listed(&mut self.listings, &mut self.entries, dir, when)
    }

    /// [`Self::list`] of `base` joined with `parts`.
    pub fn list_at<S: AsRef<OsStr>>(&mut self, base: &Path, parts: &[S]) -> io::Result<Option<&[String]>> {
        let when = (self.now, self.relist, self.sample);
        listed(&mut self.listings, &mut self.entries, self.path.build(base, parts), when)
    }
}

/// The listing of `dir`, listed again when it is `relist` old; `when` is
/// (now, relist, sample).
fn listed<'a>(
    listings: &'a mut HashMap<PathBuf, Listing>,
    entries: &mut Vec<u8>,
    dir: &Path,
    (now, relist, sample): (Instant, Duration, u64),
) -> io::Result<Option<&'a [String]>> {
    let mut listed_now = false;
    if !listings.contains_key(dir) {
        let mut names = None;
        list_dir(dir, &mut names, entries)?;
        listings.insert(dir.to_path_buf(), Listing { names, listed_at: now, used_in_sample: sample });
        listed_now = true;
    }
    let Some(listing) = listings.get_mut(dir) else { return Ok(None) };
    if !listed_now && now.saturating_duration_since(listing.listed_at) >= relist {
        list_dir(dir, &mut listing.names, entries)?;
        listing.listed_at = now;
    }
    listing.used_in_sample = sample;
    Ok(listing.names.as_deref())
}

/// `base` joined with `parts`, for an error to name.
pub fn path_of<S: AsRef<OsStr>>(base: &Path, parts: &[S]) -> PathBuf {
    // Room for every part and its separator: one allocation.
    let length = parts.iter().fold(base.as_os_str().len(), |length, part| length + 1 + part.as_ref().len());
    let mut path = PathBuf::with_capacity(length);
    path.push(base);
    for part in parts {
        path.push(part.as_ref());
    }
    path
}

/// Lists `dir` into `names` (sorted; `None` when it does not exist),
/// keeping them as they are when its entries did not change: then nothing
/// is allocated.
fn list_dir(dir: &Path, names: &mut Option<Vec<String>>, buffer: &mut Vec<u8>) -> io::Result<()> {
    let mut count = 0;
    let mut unchanged = names.is_some();
    let listed = dir_entries::for_each_name(dir, buffer, |name| {
        let Ok(name) = std::str::from_utf8(name) else { return };
        count += 1;
        unchanged &= names.as_ref().is_some_and(|names| names.binary_search_by(|n| n.as_str().cmp(name)).is_ok());
    });
    match listed {
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => {
            *names = None;
            return Ok(());
        }
        Err(e) => return Err(e),
        Ok(()) => {}
    }
    if unchanged && names.as_ref().is_some_and(|names| names.len() == count) {
        return Ok(());
    }
    let mut fresh = Vec::with_capacity(count);
    dir_entries::for_each_name(dir, buffer, |name| {
        if let Ok(name) = std::str::from_utf8(name) {
            fresh.push(name.to_string());
        }
    })?;
    fresh.sort();
    *names = Some(fresh);
    Ok(())
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
