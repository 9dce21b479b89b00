//! Files read every sample, kept open between samples and re-read from
//! offset 0.
//!
//! procfs and cgroupfs files are `seq_file`s: a read at offset 0 generates
//! the content afresh (`fs/seq_file.c`, `seq_read_iter`), so an open file
//! gives current numbers on every read. Keeping it open saves the path walk,
//! permission checks and the open and close syscalls, which cost more than
//! the read itself for small files (measured on a 2-core VM with 30 pods:
//! a pod scan without the TCP tables took 1.68 ms of CPU with files opened
//! each sample, 0.81 ms with them kept open). A file not read in a sample is
//! closed at its end, so a vanished pod's files (and the network namespace
//! an open `net/dev` pins) are let go one sample later.

use std::collections::HashMap;
use std::fs::File;
use std::hash::Hash;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::pods::discovery::process_gone;

#[derive(Debug)]
struct Kept {
    file: File,
    read_in_sample: u64,
}

/// Open files by key, with the sample each was last read in.
#[derive(Debug)]
pub struct KeptFiles<K> {
    files: HashMap<K, Kept>,
    sample: u64,
}

impl<K> Default for KeptFiles<K> {
    fn default() -> Self {
        Self { files: HashMap::new(), sample: 0 }
    }
}

impl<K: Hash + Eq> KeptFiles<K> {
    /// Starts a sample: files not read from now until [`Self::end_sample`]
    /// are closed then.
    pub fn begin_sample(&mut self) {
        self.sample += 1;
    }

    /// Closes the files this sample did not read.
    pub fn end_sample(&mut self) {
        let sample = self.sample;
        self.files.retain(|_, kept| kept.read_in_sample == sample);
    }

    /// Reads the whole file kept under `key` into `buffer`, opening `path`
    /// when none is kept. `Ok(false)` when it is gone (the file vanished, or
    /// an exiting process gave an empty read).
    pub fn read(&mut self, key: K, path: &Path, buffer: &mut Vec<u8>) -> io::Result<bool> {
        if let Some(kept) = self.files.get_mut(&key) {
            match read_whole(&kept.file, buffer) {
                Ok(length) if length > 0 => {
                    kept.read_in_sample = self.sample;
                    return Ok(true);
                }
                // The object behind it went away (a removed cgroup answers
                // ENODEV): forget the file and look at the path afresh.
                _ => {
                    self.files.remove(&key);
                }
            }
        }
        let file = match File::open(path) {
            Ok(file) => file,
            Err(error) if process_gone(&error) => return Ok(false),
            Err(error) => return Err(error),
        };
        match read_whole(&file, buffer) {
            Ok(0) => Ok(false),
            Ok(_) => {
                self.files.insert(key, Kept { file, read_in_sample: self.sample });
                Ok(true)
            }
            Err(error) if process_gone(&error) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// How many files are open.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// Reads a whole file from offset 0 with positional reads (no seek, no
/// stat), reusing `buffer`'s allocation; returns the length.
pub fn read_whole(file: &File, buffer: &mut Vec<u8>) -> io::Result<usize> {
    const CHUNK: usize = 4096;
    let mut filled = 0;
    loop {
        if buffer.len() < filled + CHUNK {
            buffer.resize(filled + CHUNK, 0);
        }
        let read = file.read_at(&mut buffer[filled..], filled as u64)?;
        if read == 0 {
            buffer.truncate(filled);
            return Ok(filled);
        }
        filled += read;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_file_shows_new_content_and_a_removed_one_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memory.current");
        std::fs::write(&path, "100\n").unwrap();
        let mut files = KeptFiles::default();
        let mut buffer = Vec::new();
        files.begin_sample();
        assert!(files.read("memory", &path, &mut buffer).unwrap());
        assert_eq!(buffer, b"100\n");
        files.end_sample();
        assert_eq!(files.len(), 1);

        // Rewritten in place (as the kernel regenerates it): read from 0.
        std::fs::write(&path, "20\n").unwrap();
        files.begin_sample();
        assert!(files.read("memory", &path, &mut buffer).unwrap());
        assert_eq!(buffer, b"20\n");
        files.end_sample();

        // Emptied and gone from its path: no longer kept.
        std::fs::write(&path, "").unwrap();
        std::fs::remove_file(&path).unwrap();
        files.begin_sample();
        assert!(!files.read("memory", &path, &mut buffer).unwrap());
        files.end_sample();
        assert!(files.is_empty());
    }

    #[test]
    fn files_not_read_in_a_sample_are_closed_at_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, "a").unwrap();
        std::fs::write(&b, "b").unwrap();
        let mut files = KeptFiles::default();
        let mut buffer = Vec::new();
        files.begin_sample();
        files.read(1, &a, &mut buffer).unwrap();
        files.read(2, &b, &mut buffer).unwrap();
        files.end_sample();
        files.begin_sample();
        files.read(2, &b, &mut buffer).unwrap();
        files.end_sample();
        assert_eq!(files.len(), 1);
    }

    #[test]
    fn a_file_larger_than_a_chunk_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tcp");
        let content: Vec<u8> = (0..10_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        let mut buffer = vec![b'x'; 20_000];
        assert_eq!(read_whole(&File::open(&path).unwrap(), &mut buffer).unwrap(), 10_000);
        assert_eq!(buffer, content);
    }
}
