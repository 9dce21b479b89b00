//! Reading procfs and cgroupfs files whole: kept open and re-read at offset 0, or read once.
//!
//! [`KeptFiles`] holds the files read every sample; [`read_proc_file`] reads
//! one once. Either way a file of a process that exited reads as gone
//! ([`process_gone`]), not as an error.
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

use std::borrow::Borrow;
use std::fs::File;
use std::hash::Hash;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use foldhash::{HashMap, HashMapExt};

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
    pub fn read<Q>(&mut self, key: &Q, path: &Path, buffer: &mut Vec<u8>) -> io::Result<bool>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.read_lazily(key, || path.to_path_buf(), buffer)
    }

    /// [`Self::read`], building the path only when the file must be opened.
    pub fn read_lazily<Q>(&mut self, key: &Q, path: impl FnOnce() -> PathBuf, buffer: &mut Vec<u8>) -> io::Result<bool>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        match self.read_file(key, || File::open(path()), buffer) {
            Ok(length) => Ok(length > 0),
            Err(error) if process_gone(&error) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Reads the whole file kept under `key` into `buffer` and returns its
    /// length, opening it with `open` when none is kept (or the kept one
    /// fails). Errors and empty reads are those of opening and reading it
    /// afresh. The key is copied only when a file is opened, so a kept file
    /// is found and read without an allocation.
    pub fn read_file<Q>(
        &mut self,
        key: &Q,
        open: impl FnOnce() -> io::Result<File>,
        buffer: &mut Vec<u8>,
    ) -> io::Result<usize>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if let Some(kept) = self.files.get_mut(key) {
            match read_whole(&kept.file, buffer) {
                Ok(length) if length > 0 => {
                    kept.read_in_sample = self.sample;
                    return Ok(length);
                }
                // The object behind it went away (a removed cgroup answers
                // ENODEV): forget the file and look at the path afresh.
                _ => {
                    self.files.remove(key);
                }
            }
        }
        let file = open()?;
        let length = read_whole(&file, buffer)?;
        if length > 0 {
            self.files.insert(key.to_owned(), Kept { file, read_in_sample: self.sample });
        }
        Ok(length)
    }

    /// Keeps the file under `key` (if open) past this sample without reading
    /// it, for a file that is read only now and then but read again soon.
    pub fn keep<Q>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(kept) = self.files.get_mut(key) {
            kept.read_in_sample = self.sample;
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

/// `ESRCH` from `include/uapi/asm-generic/errno-base.h`: procfs answers it
/// for a process that exited after its directory was opened.
const ESRCH: i32 = 3;

/// Whether an IO error only means the process has gone (exited between
/// listing `/proc` and reading its files): not worth reporting.
pub fn process_gone(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::NotFound || error.raw_os_error() == Some(ESRCH)
}

/// Reads a whole procfs file once (not kept) into `buffer`. `Ok(false)` when
/// the process has gone: the file vanished, or an exiting process gave an
/// empty read.
pub fn read_proc_file(path: &Path, buffer: &mut Vec<u8>) -> io::Result<bool> {
    buffer.clear();
    let read = File::open(path).and_then(|file| read_whole(&file, buffer));
    match read {
        Ok(0) => Ok(false),
        Ok(_) => Ok(true),
        Err(error) if process_gone(&error) => Ok(false),
        Err(error) => Err(error),
    }
}

/// The longest record of the `seq_file`s read here: a line of `net/tcp6` is
/// under 200 bytes, of `net/dev` under 250.
const MAX_RECORD_BYTES: usize = 512;

/// Reads a whole file from offset 0 with positional reads (no seek, no
/// stat), reusing `buffer`'s allocation; returns the length.
///
/// A read that returns less than a chunk minus the longest record has
/// reached the end, so the usual last read (the one that returns 0) is
/// skipped: for a regular file a short read is the end; a `seq_file` read
/// (`seq_read_iter`) stops short of the buffer only at the end or when the
/// next record does not fit in the rest of its page-sized buffer, and every
/// record of the files read here is a line of at most [`MAX_RECORD_BYTES`],
/// or the whole file (`single_open`); a sysfs attribute is at most one page,
/// returned whole. That halves the syscalls of a sample, and for
/// `net/tcp{,6}` it saves a walk of the kernel's whole TCP hash: the read
/// that finds the end starts the walk over (`tcp_seq_start` cannot resume
/// past the last bucket), as costly as the read of the table itself.
pub fn read_whole(file: &File, buffer: &mut Vec<u8>) -> io::Result<usize> {
    const CHUNK: usize = 4096;
    let mut filled = 0;
    loop {
        if buffer.len() < filled + CHUNK {
            buffer.resize(filled + CHUNK, 0);
        }
        let requested = buffer.len() - filled;
        let read = file.read_at(&mut buffer[filled..], filled as u64)?;
        filled += read;
        if read == 0 || read < requested.min(CHUNK) - MAX_RECORD_BYTES {
            buffer.truncate(filled);
            return Ok(filled);
        }
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
        let mut files = KeptFiles::<String>::default();
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
        files.read(&1, &a, &mut buffer).unwrap();
        files.read(&2, &b, &mut buffer).unwrap();
        files.end_sample();
        files.begin_sample();
        files.read(&2, &b, &mut buffer).unwrap();
        files.end_sample();
        assert_eq!(files.len(), 1);

        // A file kept without being read stays open.
        files.begin_sample();
        files.keep(&2);
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

    /// The early end must hold for the kernel's files too: multi-record
    /// seq_files that span several pages, and single-record ones.
    #[test]
    fn kernel_files_read_whole_match_a_plain_read() {
        for path in ["/proc/self/mountinfo", "/proc/self/status", "/proc/meminfo", "/proc/self/net/snmp"] {
            let mut buffer = Vec::new();
            let file = File::open(path).unwrap();
            let length = read_whole(&file, &mut buffer).unwrap();
            let plain = std::fs::read(path).unwrap();
            assert_eq!(length, buffer.len());
            // The files move between two reads; their shape does not.
            assert_eq!(buffer.split(|b| *b == b'\n').count(), plain.split(|b| *b == b'\n').count(), "{path}");
        }
        // Megabytes of short records that do not move between two reads.
        let mut buffer = Vec::new();
        let file = File::open("/proc/kallsyms").expect("/proc/kallsyms (a kernel built with CONFIG_KALLSYMS)");
        read_whole(&file, &mut buffer).unwrap();
        let plain = std::fs::read("/proc/kallsyms").unwrap();
        assert!(plain.len() > 64 * 1024, "{} bytes", plain.len());
        assert!(buffer == plain, "{} bytes against {}", buffer.len(), plain.len());
    }

    /// `net/tcp` lists 27 sockets a page: whatever the last page holds, every listener is read.
    #[test]
    fn a_tcp_table_of_several_pages_is_read_whole_however_full_its_last_page() {
        let mut listeners = Vec::new();
        let mut buffer = Vec::new();
        for _ in 0..90 {
            listeners.push(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
            let file = File::open("/proc/self/net/tcp").unwrap();
            read_whole(&file, &mut buffer).unwrap();
            let text = String::from_utf8_lossy(&buffer);
            for listener in &listeners {
                let port = format!("0100007F:{:04X} 00000000:0000 0A", listener.local_addr().unwrap().port());
                assert!(text.contains(&port), "listener {port} missing with {} listeners", listeners.len());
            }
        }
    }
}
