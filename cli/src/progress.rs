//! A one-line progress count on stderr for work that takes longer than a second, drawn only on a terminal and erased when done.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Work shorter than this shows no progress at all: a line that flashes is noise.
pub const GRACE: Duration = Duration::from_secs(1);

/// Redraws at most this often, so counting fast does not cost more than the work.
pub const REDRAW: Duration = Duration::from_millis(100);

/// `label done/total (pct %)` on one line, redrawn in place.
#[derive(Debug)]
pub struct Progress<W: Write> {
    out: W,
    enabled: bool,
    label: String,
    started: Instant,
    last_drawn: Option<Instant>,
}

impl Progress<std::io::Stderr> {
    /// On stderr when it is a terminal; silent in pipes, files and CI logs.
    pub fn stderr(label: impl Into<String>) -> Self {
        let stderr = std::io::stderr();
        let enabled = stderr.is_terminal();
        Progress::new(stderr, enabled, label, Instant::now())
    }
}

impl<W: Write> Progress<W> {
    pub fn new(out: W, enabled: bool, label: impl Into<String>, started: Instant) -> Self {
        Progress { out, enabled, label: label.into(), started, last_drawn: None }
    }

    /// `done` of `total` at `now`: drawn once the grace has passed, then every [`REDRAW`].
    pub fn update_at(&mut self, done: u64, total: u64, now: Instant) {
        let due = now.duration_since(self.started) >= GRACE
            && self.last_drawn.is_none_or(|last| now.duration_since(last) >= REDRAW);
        if !self.enabled || !due {
            return;
        }
        let percent = done.saturating_mul(100).checked_div(total).unwrap_or(100);
        // A lost progress line is not worth failing the work for.
        let _ = write!(self.out, "\r\x1b[2K{} {done}/{total} ({percent} %)", self.label);
        let _ = self.out.flush();
        self.last_drawn = Some(now);
    }

    /// [`Self::update_at`] now.
    pub fn update(&mut self, done: u64, total: u64) {
        self.update_at(done, total, Instant::now());
    }

    /// Erases the line if one was drawn, so what follows starts on a clean line.
    pub fn finish(&mut self) {
        if self.last_drawn.take().is_some() {
            let _ = write!(self.out, "\r\x1b[2K");
            let _ = self.out.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_in_the_first_second_then_a_line_redrawn_in_place_and_erased() {
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut progress = Progress::new(&mut out, true, "verifying nodes", t0);
        progress.update_at(1, 4, t0 + Duration::from_millis(900));
        progress.update_at(2, 4, t0 + Duration::from_millis(1000));
        progress.update_at(3, 4, t0 + Duration::from_millis(1050));
        progress.update_at(3, 4, t0 + Duration::from_millis(1100));
        progress.finish();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, "\r\x1b[2Kverifying nodes 2/4 (50 %)\r\x1b[2Kverifying nodes 3/4 (75 %)\r\x1b[2K");
    }

    #[test]
    fn off_the_terminal_or_when_quick_it_writes_nothing() {
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut off = Progress::new(&mut out, false, "x", t0);
        off.update_at(1, 2, t0 + Duration::from_secs(5));
        off.finish();
        let mut quick = Progress::new(&mut out, true, "x", t0);
        quick.update_at(1, 2, t0 + Duration::from_millis(10));
        quick.finish();
        assert!(out.is_empty());
    }
}
