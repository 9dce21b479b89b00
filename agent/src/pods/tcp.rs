//! TCP sockets of one network namespace by state, from its socket tables.
//!
//! The tables: the text of `/proc/<pid>/net/tcp` and `/proc/<pid>/net/tcp6`.
//!
//! Format (kernel `net/ipv4/tcp_ipv4.c`, `tcp4_seq_show`; `tcp6` is the same
//! with 32-digit addresses): a header line, then one line per socket,
//! `sl local_address rem_address st ...`, where an address is
//! `<hex address>:<hex port>` (the port already in host order, so `0050` is
//! 80) and `st` is the hex state from `include/net/tcp_states.h`. The
//! address is printed as 32-bit words with `%08X`, each word the address's
//! bytes read as a native integer (`tcp4_seq_show` prints the `__be32`
//! `inet_rcv_saddr`, `get_tcp6_sock` in `net/ipv6/tcp_ipv6.c` the four
//! `s6_addr32` words), so `0100007F` is 127.0.0.1 on a little-endian host.

use serde::Serialize;

use crate::signal::ParseError;

/// `include/net/tcp_states.h`.
const ESTABLISHED: u8 = 0x01;
const SYN_RECV: u8 = 0x03;
const TIME_WAIT: u8 = 0x06;
const CLOSE_WAIT: u8 = 0x08;
const LISTEN: u8 = 0x0A;

/// The sockets of one namespace by state, as its tables listed them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TcpStates {
    /// ESTABLISHED whose local port is one the namespace listens on.
    pub established_inbound: u32,
    pub established_outbound: u32,
    pub listen: u32,
    pub time_wait: u32,
    pub close_wait: u32,
    /// Handshakes in progress on a listener (request sockets show as SYN_RECV).
    pub syn_recv: u32,
    /// Every other state (SYN_SENT, FIN_WAIT1/2, CLOSING, LAST_ACK, ...).
    pub other: u32,
    /// Distinct remote addresses of the `established_inbound` sockets: how
    /// many clients the namespace's listeners serve (an IPv4 client of an
    /// IPv6 listener, `::ffff:a.b.c.d`, counts as its IPv4 address).
    pub inbound_peers: u32,
}

/// Tallies the sockets of one namespace over its `tcp` and `tcp6` tables.
/// Whether an ESTABLISHED socket is inbound is only known once every
/// listening port is, so local ports and remote addresses are kept until
/// [`Self::finish`]; the buffers are reused from one namespace to the next.
#[derive(Debug, Default)]
pub struct TcpTally {
    listening_ports: Vec<u16>,
    /// Each ESTABLISHED socket's local port and remote address.
    established: Vec<(u16, PeerAddress)>,
    /// The remote addresses of the inbound ones, while counting them.
    inbound_peers: Vec<PeerAddress>,
    counts: TcpStates,
}

/// A remote address as its four IPv6 words, as the table prints them; an
/// IPv4 address is stored as its IPv4-mapped form (`::ffff:a.b.c.d`), so
/// that one client seen by an IPv4 and an IPv6 listener is one peer.
type PeerAddress = [u32; 4];

/// The third word of an IPv4-mapped address, `00 00 ff ff` (RFC 4291
/// section 2.5.5.2) read as a native integer, as the table prints it.
const MAPPED_WORD: u32 = u32::from_ne_bytes([0, 0, 0xff, 0xff]);

impl TcpTally {
    /// Adds one table (`tcp` or `tcp6` content) to the tally.
    pub fn add_table(&mut self, content: &str) -> Result<(), ParseError> {
        for line in content.lines() {
            let mut fields = line.split_ascii_whitespace();
            let (Some(slot), Some(local), Some(remote), Some(state)) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                if line.trim().is_empty() {
                    continue;
                }
                return Err(ParseError::new(format!("too few fields in the tcp line {line:?}")));
            };
            if slot == "sl" {
                continue; // the header
            }
            let local_port = port_of(local).ok_or_else(|| ParseError::new(format!("bad local address {local:?}")))?;
            let state = u8::from_str_radix(state, 16)
                .ok()
                .filter(|_| state.len() == 2)
                .ok_or_else(|| ParseError::new(format!("bad tcp state {state:?}")))?;
            match state {
                ESTABLISHED => {
                    // Only an ESTABLISHED socket's peer is counted, so only
                    // its remote address is parsed.
                    let peer =
                        peer_of(remote).ok_or_else(|| ParseError::new(format!("bad remote address {remote:?}")))?;
                    self.established.push((local_port, peer));
                }
                LISTEN => {
                    self.counts.listen += 1;
                    self.listening_ports.push(local_port);
                }
                SYN_RECV => self.counts.syn_recv += 1,
                TIME_WAIT => self.counts.time_wait += 1,
                CLOSE_WAIT => self.counts.close_wait += 1,
                _ => self.counts.other += 1,
            }
        }
        Ok(())
    }

    /// TIME_WAIT sockets in the tables added so far.
    pub fn time_wait_so_far(&self) -> u32 {
        self.counts.time_wait
    }

    /// Empties the tally without finishing it (a table failed to read).
    pub fn clear(&mut self) {
        self.counts = TcpStates::default();
        self.listening_ports.clear();
        self.established.clear();
    }

    /// The namespace's tally; the tally is empty again afterwards.
    pub fn finish(&mut self) -> TcpStates {
        let mut counts = std::mem::take(&mut self.counts);
        self.inbound_peers.clear();
        for (port, peer) in &self.established {
            if self.listening_ports.contains(port) {
                counts.established_inbound += 1;
                self.inbound_peers.push(*peer);
            } else {
                counts.established_outbound += 1;
            }
        }
        // Sorting the reused buffer counts distinct peers without a set
        // allocated per namespace.
        self.inbound_peers.sort_unstable();
        self.inbound_peers.dedup();
        counts.inbound_peers = u32::try_from(self.inbound_peers.len()).unwrap_or(u32::MAX);
        self.listening_ports.clear();
        self.established.clear();
        counts
    }
}

/// The port of `<hex address>:<hex port>`.
fn port_of(address: &str) -> Option<u16> {
    let (host, port) = address.rsplit_once(':')?;
    if host.is_empty() || port.len() != 4 {
        return None;
    }
    u16::from_str_radix(port, 16).ok()
}

/// The address of `<hex address>:<hex port>`: 8 hex digits (`tcp`) or 32
/// (`tcp6`), as [`PeerAddress`].
fn peer_of(address: &str) -> Option<PeerAddress> {
    let (host, port) = address.rsplit_once(':')?;
    if port.len() != 4 || !port.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    // Checked digit by digit: `from_str_radix` would also take a sign.
    if !host.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let word = |at: usize| host.get(at..at + 8).and_then(|digits| u32::from_str_radix(digits, 16).ok());
    match host.len() {
        8 => Some([0, 0, MAPPED_WORD, word(0)?]),
        32 => Some([word(0)?, word(8)?, word(16)?, word(24)?]),
        _ => None,
    }
}

/// Tallies whole tables at once (for tests and one-off reads).
pub fn tally(tables: &[&str]) -> Result<TcpStates, ParseError> {
    let mut tally = TcpTally::default();
    for table in tables {
        tally.add_table(table)?;
    }
    Ok(tally.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TCP_HEADER: &str =
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
    const TCP6_HEADER: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";

    fn tcp_line(slot: u32, local: &str, remote: &str, state: &str) -> String {
        format!(
            "{slot:4}: {local} {remote} {state} 00000000:00000000 00:00000000 00000000     0        0 {} 1 0000000000000000 100 0 0 10 0\n",
            1000 + slot
        )
    }

    #[test]
    fn states_are_tallied_and_inbound_is_told_from_outbound_by_the_listening_port() {
        let tcp = [
            TCP_HEADER.to_string(),
            // Listening on 0.0.0.0:80 and 127.0.0.1:9000 (0x2328).
            tcp_line(0, "00000000:0050", "00000000:0000", "0A"),
            tcp_line(1, "0100007F:2328", "00000000:0000", "0A"),
            // Two clients on port 80, one outbound to MySQL 3306 (0x0CEA).
            tcp_line(2, "0A2A0005:0050", "0B2A0005:D431", "01"),
            tcp_line(3, "0A2A0005:0050", "0B2A0005:D432", "01"),
            tcp_line(4, "0A2A0005:A1B2", "0C2A0005:0CEA", "01"),
            tcp_line(5, "0A2A0005:0050", "0B2A0005:D433", "06"),
            tcp_line(6, "0A2A0005:0050", "0B2A0005:D434", "08"),
            tcp_line(7, "0A2A0005:0050", "0B2A0005:D435", "03"),
            tcp_line(8, "0A2A0005:A1B3", "0C2A0005:0CEA", "02"),
            tcp_line(9, "0A2A0005:0050", "0B2A0005:D436", "09"),
        ]
        .concat();
        let tcp6 = [
            TCP6_HEADER.to_string(),
            // Listening on [::]:8443 (0x20FB); a v4-mapped client on it.
            tcp_line(0, "00000000000000000000000000000000:20FB", "00000000000000000000000000000000:0000", "0A"),
            tcp_line(1, "0000000000000000FFFF00000A2A0005:20FB", "0000000000000000FFFF00000B2A0005:C000", "01"),
        ]
        .concat();
        assert_eq!(
            tally(&[&tcp, &tcp6]),
            Ok(TcpStates {
                established_inbound: 3,
                established_outbound: 1,
                listen: 3,
                time_wait: 1,
                close_wait: 1,
                syn_recv: 1,
                other: 2,
                // One client, 0B2A0005, twice on port 80 and once, v4-mapped, on 8443.
                inbound_peers: 1,
            })
        );
    }

    #[test]
    fn a_listener_in_tcp6_makes_a_tcp_connection_inbound() {
        // Both tables belong to one namespace: the order they are added in
        // does not matter.
        let tcp = [TCP_HEADER.to_string(), tcp_line(0, "0A2A0005:0050", "0B2A0005:D431", "01")].concat();
        let tcp6 = [
            TCP6_HEADER.to_string(),
            tcp_line(0, "00000000000000000000000000000000:0050", "00000000000000000000000000000000:0000", "0A"),
        ]
        .concat();
        let expected = TcpStates { established_inbound: 1, listen: 1, inbound_peers: 1, ..TcpStates::default() };
        assert_eq!(tally(&[&tcp, &tcp6]), Ok(expected));
        assert_eq!(tally(&[&tcp6, &tcp]), Ok(expected));
    }

    #[test]
    fn inbound_peers_are_the_distinct_addresses_of_the_clients_of_listening_ports() {
        // As a little-endian kernel (x86_64, arm64) prints them: 10.42.0.5,
        // the bytes 0A 2A 00 05, read as a little-endian word is 0x05002A0A.
        let client_a = "05002A0A"; // 10.42.0.5
        let client_b = "06002A0A"; // 10.42.0.6
        let tcp = [
            TCP_HEADER.to_string(),
            tcp_line(0, "00000000:0050", "00000000:0000", "0A"),
            // Client A twice and client B once on port 80.
            tcp_line(1, "0A002A0A:0050", &format!("{client_a}:D431"), "01"),
            tcp_line(2, "0A002A0A:0050", &format!("{client_a}:D432"), "01"),
            tcp_line(3, "0A002A0A:0050", &format!("{client_b}:D433"), "01"),
            // Not inbound: the pod's own connection out, and a closed one.
            tcp_line(4, "0A002A0A:A1B2", "07002A0A:0CEA", "01"),
            tcp_line(5, "0A002A0A:0050", "08002A0A:D434", "06"),
        ]
        .concat();
        // fd00::1:2 is fd 00 00 00 .. 00 01 00 02: words 000000FD,
        // 00000000, 00000000, 02000100.
        let ipv6_client = "000000FD000000000000000002000100";
        let tcp6 = [
            TCP6_HEADER.to_string(),
            tcp_line(0, "00000000000000000000000000000000:01BB", "00000000000000000000000000000000:0000", "0A"),
            // A native IPv6 client twice on 443, and client A again, v4-mapped.
            tcp_line(1, "000000FD000000000000000001000100:01BB", &format!("{ipv6_client}:C000"), "01"),
            tcp_line(2, "000000FD000000000000000001000100:01BB", &format!("{ipv6_client}:C001"), "01"),
            tcp_line(
                3,
                "0000000000000000FFFF00000A002A0A:01BB",
                &format!("0000000000000000FFFF0000{client_a}:C002"),
                "01",
            ),
        ]
        .concat();
        let states = tally(&[&tcp, &tcp6]).unwrap();
        assert_eq!((states.established_inbound, states.established_outbound), (6, 1));
        assert_eq!(states.inbound_peers, 3, "10.42.0.5, 10.42.0.6 and fd00::1:2");
    }

    #[test]
    fn a_mapped_address_is_its_ipv4_address_and_others_are_not() {
        let a = peer_of("05002A0A:D431").unwrap();
        assert_eq!(peer_of("0000000000000000FFFF000005002A0A:D431"), Some(a));
        // The same 32 bits in an IPv4-compatible (::a.b.c.d) or a native
        // IPv6 address are another host.
        assert_ne!(peer_of("00000000000000000000000005002A0A:D431"), Some(a));
        assert_ne!(peer_of("000000FD00000000FFFF000005002A0A:D431"), Some(a));
        let bytes: Vec<u8> = a.iter().flat_map(|word| word.to_ne_bytes()).collect();
        assert_eq!(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(bytes).unwrap()).to_string(), "::ffff:10.42.0.5");
    }

    #[test]
    fn empty_tables_have_no_sockets() {
        assert_eq!(tally(&[TCP_HEADER, TCP6_HEADER]), Ok(TcpStates::default()));
        assert_eq!(tally(&["", ""]), Ok(TcpStates::default()));
    }

    #[test]
    fn the_tally_starts_over_after_finish() {
        let mut tally = TcpTally::default();
        tally.add_table(&tcp_line(0, "00000000:0050", "00000000:0000", "0A")).unwrap();
        tally.add_table(&tcp_line(1, "0A2A0005:0050", "0B2A0005:D431", "01")).unwrap();
        assert_eq!(tally.finish().established_inbound, 1);
        tally.add_table(&tcp_line(0, "0A2A0005:0050", "0B2A0005:D431", "01")).unwrap();
        assert_eq!(tally.finish(), TcpStates { established_outbound: 1, ..TcpStates::default() });
    }

    #[test]
    fn lines_that_are_not_sockets_are_malformed() {
        for line in [
            "   0: 00000000:0050\n",
            "   0: 00000000 00000000:0000 0A\n",
            "   0: 00000000:50 00000000:0000 0A\n",
            "   0: 00000000:ZZZZ 00000000:0000 0A\n",
            "   0: 00000000:0050 00000000:0000 A\n",
            "   0: 00000000:0050 00000000:0000 XY\n",
            // An ESTABLISHED socket's remote address is read for its peer.
            "   0: 00000000:0050 0000000:0000 01\n",
            "   0: 00000000:0050 +0000000:0000 01\n",
            "   0: 00000000:0050 0000000000000000FFFF00000A2A005:0000 01\n",
            "   0: 00000000:0050 0000000G:0000 01\n",
            "   0: 00000000:0050 00000000:000 01\n",
            "   0: 00000000:0050 00000000 01\n",
        ] {
            assert!(tally(&[line]).is_err(), "{line:?}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = tally(&[&String::from_utf8_lossy(&bytes)]);
        }

        #[test]
        fn arbitrary_remote_addresses_never_panic(
            remote in "[0-9A-Fa-f:+-]{0,40}",
            bytes in proptest::collection::vec(any::<u8>(), 0..48),
        ) {
            let listener = tcp_line(0, "00000000:0050", "00000000:0000", "0A");
            for remote in [remote, String::from_utf8_lossy(&bytes).replace(char::is_whitespace, "")] {
                let established = tcp_line(1, "0A2A0005:0050", &remote, "01");
                if let Ok(states) = tally(&[&listener, &established]) {
                    prop_assert_eq!((states.established_inbound, states.inbound_peers), (1, 1));
                }
            }
        }

        #[test]
        fn inbound_peers_count_each_client_once_over_both_tables(
            clients in proptest::collection::vec((0u8..6, any::<bool>()), 0..40),
        ) {
            // Client i is 10.42.0.i; `true`: it reaches the IPv6 listener
            // (port 443, v4-mapped), `false` the IPv4 one (port 80).
            let mut tcp = tcp_line(0, "00000000:0050", "00000000:0000", "0A");
            let mut tcp6 = tcp_line(0, "00000000000000000000000000000000:01BB", "00000000000000000000000000000000:0000", "0A");
            for (slot, (client, over_ipv6)) in (1u32..).zip(&clients) {
                let address = format!("{client:02X}002A0A");
                if *over_ipv6 {
                    tcp6 += &tcp_line(slot, "0000000000000000FFFF00000A002A0A:01BB", &format!("0000000000000000FFFF0000{address}:{slot:04X}"), "01");
                } else {
                    tcp += &tcp_line(slot, "0A002A0A:0050", &format!("{address}:{slot:04X}"), "01");
                }
            }
            let states = tally(&[&tcp, &tcp6]).unwrap();
            let distinct: std::collections::HashSet<u8> = clients.iter().map(|(client, _)| *client).collect();
            prop_assert_eq!(states.established_inbound as usize, clients.len());
            prop_assert_eq!(states.inbound_peers as usize, distinct.len());
        }

        #[test]
        fn every_socket_is_counted_once(states in proptest::collection::vec(1u8..=0x0C, 0..50)) {
            let table: String = states
                .iter()
                .enumerate()
                .map(|(i, state)| tcp_line(i as u32, &format!("0A2A0005:{:04X}", 1000 + i), "0B2A0005:D431", &format!("{state:02X}")))
                .collect();
            let counts = tally(&[&table]).unwrap();
            let total = counts.established_inbound + counts.established_outbound + counts.listen + counts.time_wait
                + counts.close_wait + counts.syn_recv + counts.other;
            prop_assert_eq!(total as usize, states.len());
            // Each socket has its own port, so no ESTABLISHED one is on a listening port.
            prop_assert_eq!(counts.established_inbound, 0);
        }
    }
}
