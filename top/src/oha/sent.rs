//! What oha has sent while it runs, counted by the kernel, because oha 1.16 itself says nothing
//! until it ends: with `--no-tui` its text, JSON and CSV output and its `--db-url` rows are all
//! written after the last request (the fast `--no-tui` workers hand their results over only when
//! they stop), and its one live view, the full-screen TUI, needs a terminal on its stdout. So the
//! progress line shows the TCP data segments oha's own sockets sent (`data_segs_out` in `ss -tie`,
//! the sockets found by their inodes in /proc/PID/fd). On kept-alive HTTP/1 connections each
//! request is one segment, so their rate is oha's request rate; the line says it is a segment
//! count, and says when closing connections make it too low. Pure; the IO is in
//! [`crate::commands::loadtest`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The arguments that make `ss` list every TCP socket with its inode (`-e`) and kernel counters
/// (`-i`), numeric (`-n`), without a header (`-H`).
pub const SS_ARGS: &[&str] = &["-tieHn"];

/// One TCP socket as `ss -tieHn` lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketSegments {
    pub inode: u64,
    /// Segments carrying data that the socket sent, retransmissions included (Linux 4.6+; `ss`
    /// leaves the field out while it is zero).
    pub data_segments_out: u64,
}

/// `ss` printed something this parser does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected `ss` output on line {line}: {reason}")]
pub struct SsOutputError {
    pub line: usize,
    pub reason: String,
}

/// The inode of a /proc/PID/fd link target such as `socket:[1815750]`; none for other files.
pub fn socket_inode(link_target: &str) -> Option<u64> {
    link_target.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// Parses `ss -tieHn`: a socket starts on an unindented line (state, queues, addresses, `ino:`),
/// and its counters follow on indented lines. Sockets not yet accepted (or already orphaned) show
/// `ino:0` and belong to no process, so they are left out.
pub fn parse_ss(text: &str) -> Result<Vec<SocketSegments>, SsOutputError> {
    struct Pending {
        line: usize,
        inode: Option<u64>,
        data_segments_out: u64,
    }
    fn finish(pending: Pending, sockets: &mut Vec<SocketSegments>) -> Result<(), SsOutputError> {
        match pending.inode {
            None => {
                Err(SsOutputError { line: pending.line, reason: "a socket without `ino:` (is `-e` missing?)".into() })
            }
            Some(0) => Ok(()),
            Some(inode) => {
                sockets.push(SocketSegments { inode, data_segments_out: pending.data_segments_out });
                Ok(())
            }
        }
    }

    let mut sockets = Vec::new();
    let mut pending: Option<Pending> = None;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(char::is_whitespace) {
            if let Some(done) = pending.take() {
                finish(done, &mut sockets)?;
            }
            pending = Some(Pending { line: number, inode: None, data_segments_out: 0 });
        }
        let Some(socket) = pending.as_mut() else {
            return Err(SsOutputError { line: number, reason: "counters before any socket".into() });
        };
        for (key, value) in line.split_whitespace().filter_map(|token| token.split_once(':')) {
            let parse =
                || value.parse::<u64>().map_err(|_| SsOutputError { line: number, reason: format!("`{key}:{value}`") });
            match key {
                "ino" => socket.inode = Some(parse()?),
                "data_segs_out" => socket.data_segments_out = parse()?,
                _ => {}
            }
        }
    }
    if let Some(done) = pending {
        finish(done, &mut sockets)?;
    }
    Ok(sockets)
}

/// What the progress line says about oha's sending.
#[derive(Debug, Clone, PartialEq)]
pub enum Sending {
    Counted {
        /// Data segments oha's sockets sent since it started.
        segments: u64,
        /// Segments per second since the previous reading; none at the first.
        per_second: Option<f64>,
        /// One of oha's sockets closed since the previous reading: what it sent after that reading
        /// (or at all, if it opened after it) is missed.
        rate_undercounted: bool,
        /// A socket closed at some point, so the total misses something.
        total_undercounted: bool,
    },
    /// The kernel's counters could not be read, and why.
    Unavailable(String),
}

impl Sending {
    /// The progress line's part, for example `oha ~2076 req/s, ~6210 sent (tcp segments)`.
    pub fn text(&self) -> String {
        match self {
            Sending::Unavailable(reason) => format!("oha req/s n/a: {reason}"),
            Sending::Counted { segments, per_second, rate_undercounted, total_undercounted } => {
                let about = |undercounted: bool| if undercounted { ">=" } else { "~" };
                let mut text = String::from("oha ");
                if let Some(rate) = per_second {
                    text.push_str(&format!("{}{rate:.0} req/s, ", about(*rate_undercounted)));
                }
                text.push_str(&format!("{}{segments} sent (tcp segments", about(*total_undercounted)));
                if *rate_undercounted || *total_undercounted {
                    text.push_str("; lower bound: connections closed");
                }
                text.push(')');
                text
            }
        }
    }
}

/// The running count of oha's segments across readings. Time is an argument (the elapsed time of
/// each reading), so the whole count is a pure function of the readings.
#[derive(Debug, Default)]
pub struct SentCount {
    /// Each of oha's sockets seen so far, with its latest counter; kept after the socket closes.
    latest: BTreeMap<u64, u64>,
    /// oha's sockets at the previous reading.
    open: BTreeSet<u64>,
    previous: Option<(Duration, u64)>,
    ever_undercounted: bool,
}

impl SentCount {
    /// Takes one reading: `own` are the inodes of oha's open sockets, `listed` every socket `ss`
    /// listed (oha's and anybody else's), `elapsed` the time since oha started.
    pub fn record(&mut self, elapsed: Duration, own: &BTreeSet<u64>, listed: &[SocketSegments]) -> Sending {
        for socket in listed.iter().filter(|s| own.contains(&s.inode)) {
            let latest = self.latest.entry(socket.inode).or_default();
            *latest = (*latest).max(socket.data_segments_out);
        }
        // Any socket of oha's gone since the last reading, even one `ss` never showed: a connection
        // that opens and closes between two readings is never counted at all.
        let closed = self.open.difference(own).next().is_some();
        self.open = own.clone();
        self.ever_undercounted |= closed;
        let segments = self.latest.values().sum();
        let per_second = self.previous.and_then(|earlier| per_second(earlier, (elapsed, segments)));
        self.previous = Some((elapsed, segments));
        Sending::Counted { segments, per_second, rate_undercounted: closed, total_undercounted: self.ever_undercounted }
    }
}

/// The rate between two (elapsed, count) readings; none when no time passed between them.
pub fn per_second(earlier: (Duration, u64), later: (Duration, u64)) -> Option<f64> {
    let seconds = later.0.checked_sub(earlier.0)?.as_secs_f64();
    (seconds > 0.0).then(|| later.1.saturating_sub(earlier.1) as f64 / seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real `ss -tieHn` output on the machine that runs the tests, while oha loaded a Python server
    // on 127.0.0.1: with keep-alive (oha's sockets are 1815750 and 1815313, the server's the
    // other two), with HTTP/1.0 over IPv6 (a new connection per request), and with HTTP/1.0 while
    // the server's side of two connections still waited in its accept queue (`ino:0`).
    const KEEPALIVE: &str = include_str!("../../tests/fixtures/ss/oha-keepalive-ipv4.txt");
    const HTTP1_0_IPV6: &str = include_str!("../../tests/fixtures/ss/http1.0-ipv6.txt");
    const ACCEPT_QUEUE: &str = include_str!("../../tests/fixtures/ss/http1.0-accept-queue.txt");

    fn socket(inode: u64, data_segments_out: u64) -> SocketSegments {
        SocketSegments { inode, data_segments_out }
    }

    fn inodes(list: &[u64]) -> BTreeSet<u64> {
        list.iter().copied().collect()
    }

    #[test]
    fn real_ss_output_parses_into_inodes_and_data_segments() {
        let cases: [(&str, Vec<SocketSegments>); 3] = [
            (KEEPALIVE, vec![socket(1815750, 29), socket(1815313, 28), socket(1815751, 57), socket(1815314, 55)]),
            // A socket that sent no data yet has no `data_segs_out` at all.
            (HTTP1_0_IPV6, vec![socket(1818570, 1), socket(1818571, 0), socket(1817275, 1), socket(1818569, 1)]),
            (ACCEPT_QUEUE, vec![socket(1828200, 1), socket(1828201, 1)]),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_ss(text).unwrap(), expected, "{text}");
        }
        assert_eq!(parse_ss("").unwrap(), vec![], "no TCP sockets at all");
    }

    #[test]
    fn output_the_parser_does_not_know_is_a_clear_error() {
        let cases = [
            ("ESTAB 0 0 127.0.0.1:1 127.0.0.1:2 sk:1\n\t data_segs_out:3\n", 1, "without `ino:`"),
            ("ESTAB 0 0 127.0.0.1:1 127.0.0.1:2 ino:7\n\t data_segs_out:many\n", 2, "`data_segs_out:many`"),
            ("\t data_segs_out:3\n", 1, "counters before any socket"),
            ("ESTAB 0 0 a:1 b:2 ino:7\nESTAB 0 0 a:1 b:2 ino:x\n", 2, "`ino:x`"),
        ];
        for (text, line, reason) in cases {
            let error = parse_ss(text).unwrap_err();
            assert_eq!(error.line, line, "{text}");
            assert!(error.to_string().contains(reason), "{error} for {text}");
        }
    }

    #[test]
    fn socket_inodes_come_from_fd_link_targets() {
        assert_eq!(socket_inode("socket:[1815750]"), Some(1815750));
        assert_eq!(socket_inode("anon_inode:[eventfd]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
        assert_eq!(socket_inode("socket:[]"), None);
    }

    #[test]
    fn only_oha_s_own_sockets_count_and_the_rate_is_per_interval() {
        let listed = parse_ss(KEEPALIVE).unwrap();
        let own = inodes(&[1815750, 1815313]);
        let mut count = SentCount::default();
        let first = count.record(Duration::from_millis(1000), &own, &listed);
        assert_eq!(
            first,
            Sending::Counted { segments: 57, per_second: None, rate_undercounted: false, total_undercounted: false },
            "29 + 28 from oha's two sockets; the server's 57 + 55 are not oha's"
        );
        let later = [socket(1815750, 229), socket(1815313, 128), socket(1815751, 999)];
        let second = count.record(Duration::from_millis(1500), &own, &later);
        assert_eq!(
            second,
            Sending::Counted {
                segments: 357,
                per_second: Some(600.0),
                rate_undercounted: false,
                total_undercounted: false
            },
            "300 more segments in half a second"
        );
        assert_eq!(second.text(), "oha ~600 req/s, ~357 sent (tcp segments)");
        assert_eq!(first.text(), "oha ~57 sent (tcp segments)");
    }

    #[test]
    fn a_closed_socket_keeps_its_count_and_marks_the_figures_as_lower_bounds() {
        let mut count = SentCount::default();
        count.record(Duration::from_secs(1), &inodes(&[1, 2]), &[socket(1, 10), socket(2, 10)]);
        // Socket 2 closed (its last segments are lost with it); socket 3 is new.
        let reading = count.record(Duration::from_secs(2), &inodes(&[1, 3]), &[socket(1, 20), socket(3, 5)]);
        assert_eq!(
            reading,
            Sending::Counted {
                segments: 35,
                per_second: Some(15.0),
                rate_undercounted: true,
                total_undercounted: true
            }
        );
        assert_eq!(reading.text(), "oha >=15 req/s, >=35 sent (tcp segments; lower bound: connections closed)");
        let steady = count.record(Duration::from_secs(3), &inodes(&[1, 3]), &[socket(1, 30), socket(3, 15)]);
        assert_eq!(
            steady.text(),
            "oha ~20 req/s, >=55 sent (tcp segments; lower bound: connections closed)",
            "this interval's rate is whole again, the total still misses what socket 2 sent"
        );
    }

    #[test]
    fn connections_that_close_between_readings_are_never_counted_and_the_line_says_so() {
        // A server that closes every connection (HTTP/1.0): the socket in oha's fd table was gone
        // by the time `ss` listed the next one, which oha had not in its table yet.
        let mut count = SentCount::default();
        count.record(Duration::from_secs(1), &inodes(&[7]), &[socket(8, 1)]);
        let reading = count.record(Duration::from_secs(2), &inodes(&[9]), &[socket(10, 1)]);
        assert_eq!(
            reading,
            Sending::Counted { segments: 0, per_second: Some(0.0), rate_undercounted: true, total_undercounted: true }
        );
        assert_eq!(reading.text(), "oha >=0 req/s, >=0 sent (tcp segments; lower bound: connections closed)");
    }

    #[test]
    fn a_socket_of_oha_s_that_ss_does_not_list_yet_is_not_a_closed_one() {
        let mut count = SentCount::default();
        count.record(Duration::from_secs(1), &inodes(&[1, 2]), &[socket(1, 4)]);
        let reading = count.record(Duration::from_secs(2), &inodes(&[1, 2]), &[socket(1, 6), socket(2, 3)]);
        assert_eq!(
            reading,
            Sending::Counted {
                segments: 9,
                per_second: Some(5.0),
                rate_undercounted: false,
                total_undercounted: false
            }
        );
    }

    #[test]
    fn rates_need_time_to_pass() {
        assert_eq!(per_second((Duration::from_secs(1), 10), (Duration::from_secs(3), 50)), Some(20.0));
        assert_eq!(per_second((Duration::from_secs(1), 10), (Duration::from_secs(1), 50)), None);
        assert_eq!(per_second((Duration::from_secs(2), 10), (Duration::from_secs(1), 50)), None);
        assert_eq!(Sending::Unavailable("cannot run ss".into()).text(), "oha req/s n/a: cannot run ss");
    }
}
