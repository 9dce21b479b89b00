//! What every signal module shares: how a read can fail, and how failures are reported.
//!
//! A failure is listed in the sample, counted, and logged once per cause.
//!
//! A signal module exposes a pure parser over `impl BufRead` (or over already
//! read strings) and a `read(&HostRoots)` that does the IO and returns
//! [`SignalResult`]. The [`crate::sampler::Sampler`] turns a failure into an
//! [`Unavailable`] entry; it never aborts the sample.

use std::collections::HashSet;
use std::io::{self, BufRead};
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Why a signal could not be read this time.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    /// The source does not exist on this node (no PSI, no thermal zones, no
    /// conntrack module). Expected; listed as unavailable, not an error.
    #[error("{path} is absent: {why}")]
    Absent { path: PathBuf, why: String },
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
    pub fn from_io(path: &Path, source: io::Error, why_absent: &str) -> Self {
        if source.kind() == io::ErrorKind::NotFound {
            Self::Absent { path: path.to_path_buf(), why: why_absent.to_string() }
        } else {
            Self::Io { path: path.to_path_buf(), source }
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
pub fn read_to_string(path: &Path, why_absent: &str) -> SignalResult<String> {
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unavailable {
    pub signal: String,
    pub reason: String,
}

/// Remembers which (signal, reason) pairs were already logged, so a missing
/// signal is logged once per agent run instead of once per sample.
#[derive(Debug, Default)]
pub struct LogOnce {
    seen: HashSet<(String, String)>,
}

impl LogOnce {
    /// True the first time this pair is seen.
    pub fn first_time(&mut self, signal: &str, reason: &str) -> bool {
        self.seen.insert((signal.to_string(), reason.to_string()))
    }
}

/// A parser's input read line by line into one reused buffer, the lines
/// numbered from 1 for error messages.
pub struct Lines<R> {
    reader: R,
    line: Vec<u8>,
    number: usize,
}

impl<R: BufRead> Lines<R> {
    /// `capacity`: about the longest line expected, so that the buffer rarely grows.
    pub fn new(reader: R, capacity: usize) -> Self {
        Self { reader, line: Vec::with_capacity(capacity), number: 0 }
    }

    /// The next line (with its newline, if it has one) and its number;
    /// `None` at the end of the input.
    pub fn next_line(&mut self) -> Result<Option<(usize, &[u8])>, ParseError> {
        self.line.clear();
        let read = self
            .reader
            .read_until(b'\n', &mut self.line)
            .map_err(|e| ParseError::new(format!("reading line {}: {e}", self.number + 1)))?;
        if read == 0 {
            return Ok(None);
        }
        self.number += 1;
        Ok(Some((self.number, &self.line)))
    }

    /// How many lines were read.
    pub fn count(&self) -> usize {
        self.number
    }
}
