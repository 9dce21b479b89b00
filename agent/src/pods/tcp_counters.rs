//! The TCP counters of one network namespace, and the signature that says its sockets may have moved.
//!
//! From the text of `/proc/<pid>/net/snmp` (the `Tcp:` lines),
//! `net/sockstat` (the `TCP:` line) and `net/sockstat6` (the `TCP6:` line).
//! The signature tells whether its sockets may have changed state since the
//! socket tables were last read.
//!
//! These files are cheap (measured on a 2-core VM: snmp 12 µs, sockstat
//! 3.6 µs, sockstat6 2.4 µs per read, against 1.7 ms for `net/tcp`, which
//! walks the node-wide established hash): the kernel prints per-namespace
//! counters (`net/ipv4/proc.c`, `snmp_seq_show_tcp_udp`, `sockstat_seq_show`;
//! `net/ipv6/proc.c`, `sockstat6_seq_show`) instead of walking sockets.
//!
//! Formats: `net/snmp` has pairs of lines per protocol, names then values
//! (`Tcp: RtoAlgorithm ... CurrEstab ...` / `Tcp: 1 200 ... 8 ...`);
//! `net/sockstat` has `TCP: inuse 5 orphan 0 tw 34 alloc 5 mem 84`, name
//! and value pairs; `net/sockstat6` has `TCP6: inuse 0`.

use crate::signal::ParseError;

/// The namespace's TCP counters in one sample.
///
/// Per namespace: every field here is kept per network namespace by the
/// kernel (`net->mib.tcp_statistics`, `sock_prot_inuse_get(net, ..)`,
/// `net->ipv4.tcp_death_row`). The `orphan`, `alloc` and `mem` figures of
/// sockstat are node-wide (`tcp_orphan_count_sum`, `proto_sockets_allocated`)
/// and are left out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpCounters {
    /// `CurrEstab`: sockets in ESTABLISHED or CLOSE_WAIT now (RFC 1213
    /// tcpCurrEstab; kernels before 6.10 without the stable backport of
    /// "tcp: count CLOSE-WAIT sockets for TCP_MIB_CURRESTAB" count
    /// ESTABLISHED only).
    pub curr_estab: u64,
    /// `ActiveOpens`: connections started by `connect()` (CLOSED to
    /// SYN_SENT), cumulative.
    pub active_opens: u64,
    /// `PassiveOpens`: connections accepted (a handshake on a listener
    /// completed), cumulative.
    pub passive_opens: u64,
    /// `AttemptFails`: handshakes that failed (SYN_SENT or SYN_RECV to
    /// CLOSED, SYN_RECV reset), cumulative.
    pub attempt_fails: u64,
    /// `EstabResets`: ESTABLISHED or CLOSE_WAIT connections reset, cumulative.
    pub estab_resets: u64,
    /// `InSegs`, `OutSegs`, `RetransSegs`: segments, cumulative.
    pub in_segs: u64,
    pub out_segs: u64,
    pub retrans_segs: u64,
    /// sockstat `TCP: inuse`: full IPv4 TCP sockets hashed in the namespace
    /// (listening, connecting, established, closing), TIME_WAIT and
    /// handshakes in progress excluded.
    pub in_use_v4: u64,
    /// sockstat6 `TCP6: inuse`: the same for IPv6 sockets (v4-mapped
    /// connections of an IPv6 listener included); 0 without IPv6.
    pub in_use_v6: u64,
    /// sockstat `TCP: tw`: time-wait sockets of both families (TIME_WAIT,
    /// and closed FIN_WAIT2 ones the kernel keeps as time-wait sockets).
    pub time_wait: u64,
}

/// The counters whose movement shows that the sockets-by-state tally may
/// have changed. Equal signatures mean no socket was opened, accepted,
/// failed, reset, established, closed by the application, unhashed,
/// listened on, or put in or out of TIME_WAIT, except in the cases listed
/// under "Blind spots".
///
/// Why each member:
/// - `active_opens`, `passive_opens`: every new connection, in either
///   direction. Monotonic, so an open is seen even when a close in the same
///   interval cancels it in every gauge (one close and one open keep
///   `curr_estab` and `in_use` where they were).
/// - `curr_estab`: ESTABLISHED or CLOSE_WAIT entered or left: a connect or
///   handshake completing, the application closing an established socket
///   (to FIN_WAIT1) or one its peer closed (CLOSE_WAIT to LAST_ACK).
/// - `attempt_fails`, `estab_resets`: monotonic failures, seen even when a
///   gauge movement in the same interval cancels theirs.
/// - `in_use_v4`, `in_use_v6`: `listen()` and closing a listener (no snmp
///   counter moves), closing sockets leaving the hash (LAST_ACK, FIN_WAIT2
///   and CLOSING to CLOSED or TIME_WAIT). Per family, so a listener moved
///   from one family to the other is seen.
/// - `time_wait`: TIME_WAIT entered, and left after 60 s
///   (`TCP_TIMEWAIT_LEN`), which nothing else shows.
///
/// Left out: the segment counters (they move with any traffic, and would
/// re-read every busy namespace each sample with no state change).
///
/// Blind spots (the tally keeps the old figures until something in the
/// signature moves):
/// - ESTABLISHED to CLOSE_WAIT (the peer closed first) on kernels where
///   CurrEstab counts CLOSE_WAIT: the socket stays in `established_*` until
///   the application closes it (which moves `curr_estab`);
/// - a handshake arriving on a listener (SYN_RECV, a request socket, in no
///   counter) is seen when it completes or is reset, not while pending, nor
///   when it times out (a SYN flood stays unseen);
/// - a time-wait socket going from the FIN_WAIT2 to the TIME_WAIT substate
///   (`other` to `time_wait`);
/// - movements that cancel in every member within one sample interval: a
///   listener closed and another opened (the `listen` count is right, but
///   existing connections may be on a port no longer listened on, so the
///   inbound and outbound split may be off), or a pending connect
///   completing while an established socket starts closing (again only the
///   inbound and outbound split).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSignature {
    curr_estab: u64,
    active_opens: u64,
    passive_opens: u64,
    attempt_fails: u64,
    estab_resets: u64,
    in_use_v4: u64,
    in_use_v6: u64,
    time_wait: u64,
}

impl TcpCounters {
    /// Combines the three files; `sockstat6` is `None` without IPv6
    /// (`ipv6.disable=1`: the file does not exist).
    pub fn parse(snmp: &str, sockstat: &str, sockstat6: Option<&str>) -> Result<Self, ParseError> {
        let tcp = parse_snmp_tcp(snmp)?;
        let (in_use_v4, time_wait) = parse_sockstat_tcp(sockstat)?;
        let in_use_v6 = sockstat6.map(parse_sockstat6_tcp).transpose()?.unwrap_or(0);
        Ok(Self { in_use_v4, in_use_v6, time_wait, ..tcp })
    }

    pub fn signature(&self) -> TcpSignature {
        TcpSignature {
            curr_estab: self.curr_estab,
            active_opens: self.active_opens,
            passive_opens: self.passive_opens,
            attempt_fails: self.attempt_fails,
            estab_resets: self.estab_resets,
            in_use_v4: self.in_use_v4,
            in_use_v6: self.in_use_v6,
            time_wait: self.time_wait,
        }
    }

    /// Whether `net/tcp` can list anything. Empty when no IPv4 socket is in
    /// use and no time-wait socket exists: a pending handshake (the one
    /// kind of entry in neither count) needs a listener of its family,
    /// which is in use.
    pub fn ipv4_table_may_list_sockets(&self) -> bool {
        self.in_use_v4 > 0 || self.time_wait > 0
    }

    /// Whether `net/tcp6` can list anything, once `net/tcp` showed
    /// `ipv4_time_wait` TIME_WAIT sockets: the time-wait count covers both
    /// families, so any it has beyond those may be IPv6 ones.
    pub fn ipv6_table_may_list_sockets(&self, ipv4_time_wait: u64) -> bool {
        self.in_use_v6 > 0 || self.time_wait > ipv4_time_wait
    }
}

/// The `Tcp:` counters of `net/snmp` (the sockstat fields left at 0).
pub fn parse_snmp_tcp(text: &str) -> Result<TcpCounters, ParseError> {
    let mut tcp_lines = text.lines().filter_map(|line| line.strip_prefix("Tcp:"));
    let (Some(names), Some(values)) = (tcp_lines.next(), tcp_lines.next()) else {
        return Err(ParseError::new("no Tcp: names and values lines"));
    };
    // Walked as words rather than collected, so that a parse allocates nothing.
    let (name_count, value_count) = (names.split_ascii_whitespace().count(), values.split_ascii_whitespace().count());
    if name_count != value_count {
        return Err(ParseError::new(format!("{name_count} Tcp: names but {value_count} values")));
    }
    let field = |wanted: &str| -> Result<u64, ParseError> {
        let (_, value) = names
            .split_ascii_whitespace()
            .zip(values.split_ascii_whitespace())
            .find(|(name, _)| *name == wanted)
            .ok_or_else(|| ParseError::new(format!("no Tcp: {wanted}")))?;
        value.parse().map_err(|_| ParseError::new(format!("Tcp: {wanted} is {value:?}, not a counter")))
    };
    Ok(TcpCounters {
        curr_estab: field("CurrEstab")?,
        active_opens: field("ActiveOpens")?,
        passive_opens: field("PassiveOpens")?,
        attempt_fails: field("AttemptFails")?,
        estab_resets: field("EstabResets")?,
        in_segs: field("InSegs")?,
        out_segs: field("OutSegs")?,
        retrans_segs: field("RetransSegs")?,
        ..TcpCounters::default()
    })
}

/// `(inuse, tw)` of the `TCP:` line of `net/sockstat`.
pub fn parse_sockstat_tcp(text: &str) -> Result<(u64, u64), ParseError> {
    let line = protocol_line(text, "TCP:")?;
    Ok((named_value(line, "TCP:", "inuse")?, named_value(line, "TCP:", "tw")?))
}

/// `inuse` of the `TCP6:` line of `net/sockstat6`.
pub fn parse_sockstat6_tcp(text: &str) -> Result<u64, ParseError> {
    named_value(protocol_line(text, "TCP6:")?, "TCP6:", "inuse")
}

/// What follows `prefix` on the line starting with it.
fn protocol_line<'a>(text: &'a str, prefix: &str) -> Result<&'a str, ParseError> {
    text.lines().find_map(|line| line.strip_prefix(prefix)).ok_or_else(|| ParseError::new(format!("no {prefix} line")))
}

/// The value after `name` in `name value name value ...`.
fn named_value(pairs: &str, prefix: &str, name: &str) -> Result<u64, ParseError> {
    let mut words = pairs.split_ascii_whitespace();
    let mut found = None;
    while let (Some(key), Some(value)) = (words.next(), words.next()) {
        if key == name {
            found = Some(value);
            break;
        }
    }
    let value = found.ok_or_else(|| ParseError::new(format!("no {name} on the {prefix} line")))?;
    value.parse().map_err(|_| ParseError::new(format!("{prefix} {name} is {value:?}, not a count")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `/proc/net/snmp` of a 6.18 kernel.
    const SNMP: &str = "\
Ip: Forwarding DefaultTTL InReceives InHdrErrors InAddrErrors ForwDatagrams InUnknownProtos InDiscards InDelivers OutRequests OutDiscards OutNoRoutes ReasmTimeout ReasmReqds ReasmOKs ReasmFails FragOKs FragFails FragCreates OutTransmits
Ip: 2 64 192424 0 0 0 0 0 192424 181218 0 0 0 0 0 0 0 0 0 181218
Icmp: InMsgs InErrors InCsumErrors InDestUnreachs InTimeExcds InParmProbs InSrcQuenchs InRedirects InEchos InEchoReps InTimestamps InTimestampReps InAddrMasks InAddrMaskReps OutMsgs OutErrors OutRateLimitGlobal OutRateLimitHost OutDestUnreachs OutTimeExcds OutParmProbs OutSrcQuenchs OutRedirects OutEchos OutEchoReps OutTimestamps OutTimestampReps OutAddrMasks OutAddrMaskReps
Icmp: 1 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
IcmpMsg: InType3
IcmpMsg: 1
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors
Tcp: 1 200 120000 -1 3335 2965 260 665 8 192204 179595 1538 0 945 0
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 219 0 0 220 0 0 0 0 0
UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
UdpLite: 0 0 0 0 0 0 0 0 0
";
    const SOCKSTAT: &str = "sockets: used 31\nTCP: inuse 5 orphan 0 tw 34 alloc 5 mem 84\nUDP: inuse 0 mem 0\nUDPLITE: inuse 0\nRAW: inuse 0\nFRAG: inuse 0 memory 0\n";
    const SOCKSTAT6: &str = "TCP6: inuse 2\nUDP6: inuse 0\nUDPLITE6: inuse 0\nRAW6: inuse 0\nFRAG6: inuse 0 memory 0\n";

    #[test]
    fn a_kernels_files_give_the_namespace_counters() {
        assert_eq!(
            TcpCounters::parse(SNMP, SOCKSTAT, Some(SOCKSTAT6)),
            Ok(TcpCounters {
                curr_estab: 8,
                active_opens: 3335,
                passive_opens: 2965,
                attempt_fails: 260,
                estab_resets: 665,
                in_segs: 192_204,
                out_segs: 179_595,
                retrans_segs: 1538,
                in_use_v4: 5,
                in_use_v6: 2,
                time_wait: 34,
            })
        );
    }

    #[test]
    fn without_ipv6_nothing_is_in_use_there() {
        assert_eq!(TcpCounters::parse(SNMP, SOCKSTAT, None).map(|c| c.in_use_v6), Ok(0));
    }

    #[test]
    fn snmp_columns_are_found_by_name_in_any_order() {
        // An older or newer kernel may add, drop or move columns.
        let snmp = "Tcp: CurrEstab RetransSegs OutSegs InSegs EstabResets AttemptFails PassiveOpens ActiveOpens\n\
                    Tcp: 1 2 3 4 5 6 7 8\n";
        let counters = parse_snmp_tcp(snmp).unwrap();
        assert_eq!((counters.curr_estab, counters.retrans_segs, counters.in_segs, counters.active_opens), (1, 2, 4, 8));
    }

    #[test]
    fn malformed_counter_files_are_errors() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("", SOCKSTAT, None),
            ("Tcp: ActiveOpens\n", SOCKSTAT, None),
            ("Tcp: ActiveOpens CurrEstab\nTcp: 1\n", SOCKSTAT, None),
            // A needed column missing.
            ("Tcp: ActiveOpens\nTcp: 1\n", SOCKSTAT, None),
            (&SNMP.replace(" 3335 ", " x "), SOCKSTAT, None),
            (SNMP, "TCP: inuse 5\n", None),
            (SNMP, "UDP: inuse 0 mem 0\n", None),
            (SNMP, "TCP: inuse -1 orphan 0 tw 3\n", None),
            (SNMP, SOCKSTAT, Some("UDP6: inuse 0\n")),
            (SNMP, SOCKSTAT, Some("TCP6: inuse\n")),
        ];
        for (snmp, sockstat, sockstat6) in cases {
            assert!(TcpCounters::parse(snmp, sockstat, *sockstat6).is_err(), "{snmp:?} {sockstat:?} {sockstat6:?}");
        }
    }

    #[test]
    fn traffic_alone_leaves_the_signature_as_it_was() {
        let before = TcpCounters::parse(SNMP, SOCKSTAT, Some(SOCKSTAT6)).unwrap();
        let busier = TcpCounters { in_segs: 1 << 40, out_segs: 1 << 41, retrans_segs: 99, ..before };
        assert_eq!(busier.signature(), before.signature());
    }

    #[test]
    fn every_state_changing_counter_moves_the_signature() {
        let before = TcpCounters::parse(SNMP, SOCKSTAT, Some(SOCKSTAT6)).unwrap();
        let moved = [
            TcpCounters { curr_estab: before.curr_estab - 1, ..before },
            // One open and one close: the gauges are back where they were.
            TcpCounters { active_opens: before.active_opens + 1, ..before },
            TcpCounters { passive_opens: before.passive_opens + 1, ..before },
            TcpCounters { attempt_fails: before.attempt_fails + 1, ..before },
            TcpCounters { estab_resets: before.estab_resets + 1, ..before },
            // A listener moved from IPv4 to IPv6.
            TcpCounters { in_use_v4: before.in_use_v4 - 1, in_use_v6: before.in_use_v6 + 1, ..before },
            TcpCounters { time_wait: before.time_wait - 1, ..before },
        ];
        for counters in moved {
            assert_ne!(counters.signature(), before.signature(), "{counters:?}");
        }
    }

    #[test]
    fn tables_that_cannot_list_a_socket_are_known_empty() {
        let quiet = TcpCounters::default();
        assert!(!quiet.ipv4_table_may_list_sockets());
        assert!(!quiet.ipv6_table_may_list_sockets(0));
        let ipv4_server = TcpCounters { in_use_v4: 3, time_wait: 2, ..quiet };
        assert!(ipv4_server.ipv4_table_may_list_sockets());
        // Both time-wait sockets were in the IPv4 table: none can be IPv6.
        assert!(!ipv4_server.ipv6_table_may_list_sockets(2));
        assert!(ipv4_server.ipv6_table_may_list_sockets(1));
        // Time-wait sockets alone may be of either family.
        let closing = TcpCounters { time_wait: 1, ..quiet };
        assert!(closing.ipv4_table_may_list_sockets());
        assert!(closing.ipv6_table_may_list_sockets(0));
        let ipv6_server = TcpCounters { in_use_v6: 1, ..quiet };
        assert!(!ipv6_server.ipv4_table_may_list_sockets());
        assert!(ipv6_server.ipv6_table_may_list_sockets(0));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            snmp in proptest::collection::vec(any::<u8>(), 0..300),
            sockstat in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let snmp = String::from_utf8_lossy(&snmp);
            let sockstat = String::from_utf8_lossy(&sockstat);
            let _ = TcpCounters::parse(&snmp, &sockstat, Some(&sockstat));
        }

        #[test]
        fn mangled_kernel_files_never_panic(cut in 0usize..2000, byte in any::<u8>()) {
            // Truncated or with one byte changed, as a racing or odd kernel might give.
            let mut snmp = SNMP.as_bytes().to_vec();
            let at = cut % snmp.len();
            snmp[at] = byte;
            let snmp = String::from_utf8_lossy(&snmp);
            let _ = TcpCounters::parse(&snmp, &SOCKSTAT[..cut % SOCKSTAT.len()], Some(&SOCKSTAT6[..cut % SOCKSTAT6.len()]));
        }

        #[test]
        fn written_counters_read_back(values in proptest::array::uniform11(any::<u64>())) {
            let [curr_estab, active_opens, passive_opens, attempt_fails, estab_resets, in_segs, out_segs, retrans_segs, in_use_v4, in_use_v6, time_wait] = values;
            let snmp = format!(
                "Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors\n\
                 Tcp: 1 200 120000 -1 {active_opens} {passive_opens} {attempt_fails} {estab_resets} {curr_estab} {in_segs} {out_segs} {retrans_segs} 0 0 0\n"
            );
            let sockstat = format!("sockets: used 1\nTCP: inuse {in_use_v4} orphan 0 tw {time_wait} alloc 1 mem 1\n");
            let sockstat6 = format!("TCP6: inuse {in_use_v6}\n");
            prop_assert_eq!(
                TcpCounters::parse(&snmp, &sockstat, Some(&sockstat6)),
                Ok(TcpCounters { curr_estab, active_opens, passive_opens, attempt_fails, estab_resets, in_segs, out_segs, retrans_segs, in_use_v4, in_use_v6, time_wait })
            );
        }
    }
}
