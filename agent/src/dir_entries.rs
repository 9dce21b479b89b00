//! A directory's entry names without an allocation per entry: `getdents64` into a buffer kept by the caller.
//!
//! `std::fs::read_dir` copies every entry's name into a new `CString`, and
//! `DirEntry::file_name` into a new `OsString`: two allocations per entry,
//! hundreds per walk of `/proc` on a node. The names here are lent from the
//! caller's buffer instead.

use std::io;
use std::path::Path;

use rustix::fs::{Mode, OFlags, RawDir};

/// Room for a few dozen entries per `getdents64` call; any single entry
/// (at most 255 bytes of name) fits.
const BUFFER_BYTES: usize = 16 * 1024;

/// Calls `each` with the name of every entry of `dir` but `.` and `..`, in
/// the order the kernel lists them. `buffer` is reused between calls.
pub fn for_each_name(dir: &Path, buffer: &mut Vec<u8>, mut each: impl FnMut(&[u8])) -> io::Result<()> {
    let fd = rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    buffer.clear();
    buffer.reserve(BUFFER_BYTES);
    let mut entries = RawDir::new(&fd, buffer.spare_capacity_mut());
    while let Some(entry) = entries.next() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            each(name);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_is_named_once_and_a_missing_directory_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let mut expected: Vec<String> = (0..300).map(|i| format!("entry-{i:0>200}")).collect();
        for name in &expected {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let mut names = Vec::new();
        let mut buffer = Vec::new();
        for_each_name(dir.path(), &mut buffer, |name| names.push(String::from_utf8(name.to_vec()).unwrap())).unwrap();
        names.sort();
        expected.sort();
        assert_eq!(names, expected);

        let missing = for_each_name(&dir.path().join("absent"), &mut buffer, |_| {}).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        let file = for_each_name(&dir.path().join(&expected[0]), &mut buffer, |_| {}).unwrap_err();
        assert_eq!(file.kind(), io::ErrorKind::NotADirectory);
    }
}
