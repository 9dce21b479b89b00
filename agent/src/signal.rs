//! What every signal module shares: how a read can fail, and how failures are reported.
//!
//! A failure is listed in the sample, counted, and logged once per cause.
//!
//! A signal module exposes a pure parser over `impl BufRead` (or over already
//! read strings) and a `read(&HostRoots)` that does the IO and returns
//! [`SignalResult`]. The [`crate::sampler::Sampler`] turns a failure into an
//! [`Unavailable`] entry; it never aborts the sample.

use std::borrow::Cow;
use std::io::{self, BufRead};
use std::path::{Path, PathBuf};

use foldhash::{HashMap, HashSet};

use serde::Serialize;

/// Why a signal could not be read this time.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    /// The source does not exist on this node (no PSI, no thermal zones, no
    /// conntrack module). Expected; listed as unavailable, not an error.
    #[error("{path} is absent: {why}")]
    Absent { path: PathBuf, why: Cow<'static, str> },
    /// The file exists but its content does not parse: a counted error.
    #[error("{path} is malformed: {message}")]
    Malformed { path: PathBuf, message: String },
    /// Any other IO failure (permission denied, ...).
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

pub type SignalResult<T> = Result<T, SignalError>;

impl SignalError {
    pub fn malformed(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Malformed { path: path.into(), message: message.into() }
    }

    /// Classifies an IO error on `path`: a missing file is [`Self::Absent`].
    pub fn from_io(path: impl Into<PathBuf>, source: io::Error, why_absent: &'static str) -> Self {
        if source.kind() == io::ErrorKind::NotFound {
            Self::Absent { path: path.into(), why: Cow::Borrowed(why_absent) }
        } else {
            Self::Io { path: path.into(), source }
        }
    }

    pub fn is_malformed(&self) -> bool {
        matches!(self, Self::Malformed { .. })
    }
}

/// A parse failure inside a pure parser, before the path is known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

impl ParseError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    /// Attaches the file the bytes came from.
    pub fn at(self, path: &Path) -> SignalError {
        SignalError::malformed(path, self.0)
    }
}

/// Reads a whole file that is expected to exist when the signal exists.
pub fn read_to_string(path: &Path, why_absent: &'static str) -> SignalResult<String> {
    std::fs::read_to_string(path).map_err(|e| SignalError::from_io(path, e, why_absent))
}

/// Parses one unsigned integer file such as `temp` or `scaling_cur_freq`.
pub fn parse_u64(text: &str) -> Result<u64, ParseError> {
    let trimmed = text.trim();
    trimmed.parse().map_err(|_| ParseError::new(format!("expected an unsigned integer, found {trimmed:?}")))
}

/// Parses one signed integer file (hwmon and thermal temperatures can be negative).
pub fn parse_i64(text: &str) -> Result<i64, ParseError> {
    let trimmed = text.trim();
    trimmed.parse().map_err(|_| ParseError::new(format!("expected an integer, found {trimmed:?}")))
}

/// A signal the sample could not include, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Unavailable {
    pub signal: String,
    pub reason: String,
}

/// Remembers which (signal, reason) pairs were already logged, so a missing
/// signal is logged once per agent run instead of once per sample.
#[derive(Debug, Default)]
pub struct LogOnce {
    /// Reasons by signal: looked up without building the pair, so that a
    /// cause met every sample costs no allocation after its first time.
    seen: HashMap<String, HashSet<String>>,
}

impl LogOnce {
    /// True the first time this pair is seen.
    pub fn first_time(&mut self, signal: &str, reason: &str) -> bool {
        if self.seen.get(signal).is_some_and(|reasons| reasons.contains(reason)) {
            return false;
        }
        self.seen.entry(signal.to_string()).or_default().insert(reason.to_string())
    }
}

/// A parser's input line by line, the lines numbered from 1 for error
/// messages. A line that the reader holds whole (always, for a byte slice)
/// is lent from the reader's buffer; only one that crosses the end of that
/// buffer is copied, so parsing read bytes allocates nothing.
pub struct Lines<R> {
    reader: R,
    /// A line copied out of the reader: it crossed the end of its buffer.
    line: Vec<u8>,
    /// About the longest line expected, reserved when one is copied.
    capacity: usize,
    /// Bytes of the line last lent, consumed at the next call.
    lent: usize,
    number: usize,
}

impl<R: BufRead> Lines<R> {
    /// `capacity`: about the longest line expected, reserved only when a
    /// line has to be copied.
    pub fn new(reader: R, capacity: usize) -> Self {
        Self { reader, line: Vec::new(), capacity, lent: 0, number: 0 }
    }

    /// The next line (with its newline, if it has one) and its number;
    /// `None` at the end of the input.
    pub fn next_line(&mut self) -> Result<Option<(usize, &[u8])>, ParseError> {
        let reading = |e: std::io::Error, number: usize| ParseError::new(format!("reading line {}: {e}", number + 1));
        self.reader.consume(std::mem::take(&mut self.lent));
        let held = self.reader.fill_buf().map_err(|e| reading(e, self.number))?;
        if held.is_empty() {
            return Ok(None);
        }
        self.number += 1;
        if let Some(newline) = held.iter().position(|&b| b == b'\n') {
            self.lent = newline + 1;
            // The same buffer again: `fill_buf` reads nothing while it holds bytes.
            let held = self.reader.fill_buf().map_err(|e| reading(e, self.number - 1))?;
            return Ok(Some((self.number, &held[..self.lent])));
        }
        self.line.clear();
        self.line.reserve(self.capacity);
        self.reader.read_until(b'\n', &mut self.line).map_err(|e| reading(e, self.number - 1))?;
        Ok(Some((self.number, &self.line)))
    }

    /// How many lines were read.
    pub fn count(&self) -> usize {
        self.number
    }
}

#[cfg(test)]
mod tests {
    use std::io::BufReader;

    use super::*;

    #[test]
    fn lines_are_the_same_whether_lent_or_copied_across_the_readers_buffer() {
        let text = "cpu  1 2 3 4\ncpu0 5 6 7 8\n\nintr 1 2 3 4 5 6 7 8 9 10 11 12\nlast line without newline";
        let expected: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
        for capacity in [1, 3, 8, 13, 4096] {
            let mut lines = Lines::new(BufReader::with_capacity(capacity, text.as_bytes()), 16);
            let mut read = Vec::new();
            while let Some((number, line)) = lines.next_line().unwrap() {
                assert_eq!(number, read.len() + 1);
                read.push(String::from_utf8(line.to_vec()).unwrap());
            }
            assert_eq!(read, expected, "a buffer of {capacity} bytes");
            assert_eq!(lines.count(), expected.len());
        }
        let mut lines = Lines::new(text.as_bytes(), 16);
        assert_eq!(lines.next_line().unwrap(), Some((1, &b"cpu  1 2 3 4\n"[..])));
    }
}
