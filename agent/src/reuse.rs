//! Refilling what a sample holds in place, so that a steady-state sample allocates nothing.
//!
//! A streaming agent reads the same files and reports the same things
//! sample after sample: the same interfaces, sensors and pods, under the
//! same names. [`Refill`] overwrites a `Vec`'s elements in order instead of
//! building a new one, so an element's own buffers (a name's `String`) are
//! kept when the next sample has an element at the same place; [`set_str`]
//! overwrites a `String` keeping its buffer; [`PathBuffer`] builds a path
//! in a buffer kept between samples, and [`decimal`] names a pid's
//! directory without a `String`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// Fills a `Vec` from its start, overwriting the elements already there
/// (their buffers kept) and adding default ones past them; when dropped,
/// the elements not reached this time are removed.
#[derive(Debug)]
pub struct Refill<'a, T> {
    vec: &'a mut Vec<T>,
    len: usize,
}

impl<'a, T: Default> Refill<'a, T> {
    pub fn new(vec: &'a mut Vec<T>) -> Self {
        Self { vec, len: 0 }
    }

    /// The next element to fill: last sample's element at this place, or a
    /// new default one. Every field must be set.
    pub fn next_slot(&mut self) -> &mut T {
        if self.len == self.vec.len() {
            self.vec.push(T::default());
        }
        let slot = &mut self.vec[self.len];
        self.len += 1;
        slot
    }

    /// Removes the element filled last (it turned out not to belong).
    pub fn undo_last(&mut self) {
        self.len = self.len.saturating_sub(1);
    }
}

impl<T> Drop for Refill<'_, T> {
    fn drop(&mut self) {
        self.vec.truncate(self.len);
    }
}

/// Sets `target` to `text`, keeping its buffer (no allocation unless
/// `text` is longer than any value it held).
pub fn set_str(target: &mut String, text: &str) {
    if target != text {
        target.clear();
        target.push_str(text);
    }
}

/// `text` in the buffer `target` held, taken out of it (left empty, which
/// allocates nothing): for a message written as a whole literal over the
/// one that held the buffer.
pub fn reused(target: &mut String, text: &str) -> String {
    set_str(target, text);
    std::mem::take(target)
}

/// Sets `target` to `text` (or to nothing), keeping the buffer it holds
/// when both are something.
pub fn set_option_str(target: &mut Option<String>, text: Option<&str>) {
    match (target.as_mut(), text) {
        (Some(held), Some(text)) => set_str(held, text),
        (_, None) => *target = None,
        (None, Some(text)) => *target = Some(text.to_string()),
    }
}

/// A path built in a buffer kept between samples.
#[derive(Debug, Default)]
pub struct PathBuffer(PathBuf);

impl PathBuffer {
    /// `base` joined with each of `parts` (relative paths).
    pub fn build<S: AsRef<OsStr>>(&mut self, base: &Path, parts: &[S]) -> &Path {
        let path = &mut self.0;
        path.as_mut_os_string().clear();
        path.push(base);
        for part in parts {
            path.push(part.as_ref());
        }
        path
    }

    /// The path built last.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

/// `number` in decimal, written into `digits` (a pid's directory name
/// without a `String`).
pub fn decimal(number: u32, digits: &mut [u8; 10]) -> &str {
    let mut start = digits.len();
    let mut rest = number;
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    std::str::from_utf8(&digits[start..]).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refill_keeps_the_elements_it_reaches_and_drops_the_rest() {
        let mut names = vec!["eth0".to_string(), "wlan0".to_string(), "lo".to_string()];
        let kept = names[0].as_ptr();
        {
            let mut refill = Refill::new(&mut names);
            set_str(refill.next_slot(), "eth0");
            set_str(refill.next_slot(), "cni0");
        }
        assert_eq!(names, ["eth0", "cni0"]);
        assert_eq!(names[0].as_ptr(), kept, "the same buffer");
        {
            let mut refill = Refill::new(&mut names);
            for name in ["a", "b", "c"] {
                set_str(refill.next_slot(), name);
            }
            set_str(refill.next_slot(), "d");
            refill.undo_last();
        }
        assert_eq!(names, ["a", "b", "c"]);
    }

    #[test]
    fn numbers_are_written_in_decimal() {
        let mut digits = [0; 10];
        for number in [0, 7, 10, 4_194_304, u32::MAX] {
            assert_eq!(decimal(number, &mut digits), number.to_string());
        }
    }

    #[test]
    fn a_path_buffer_joins_its_parts_below_the_base() {
        let mut buffer = PathBuffer::default();
        assert_eq!(buffer.build(Path::new("/proc"), &["1234", "net/dev"]), Path::new("/proc/1234/net/dev"));
        assert_eq!(buffer.build(Path::new("/sys"), &["class"]), Path::new("/sys/class"));
        assert_eq!(buffer.path(), Path::new("/sys/class"));
    }
}
