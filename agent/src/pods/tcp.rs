//! TCP sockets of one network namespace by state, from the text of
//! `/proc/<pid>/net/tcp` and `/proc/<pid>/net/tcp6`.
//!
//! Format (kernel `net/ipv4/tcp_ipv4.c`, `tcp4_seq_show`; `tcp6` is the same
//! with 32-digit addresses): a header line, then one line per socket,
//! `sl local_address rem_address st ...`, where an address is
//! `<hex address>:<hex port>` (the port already in host order, so `0050` is
//! 80) and `st` is the hex state from `include/net/tcp_states.h`.

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
}

/// Tallies the sockets of one namespace over its `tcp` and `tcp6` tables.
/// Whether an ESTABLISHED socket is inbound is only known once every
/// listening port is, so local ports are kept until [`Self::finish`]; the
/// buffers are reused from one namespace to the next.
#[derive(Debug, Default)]
pub struct TcpTally {
    listening_ports: Vec<u16>,
    established_local_ports: Vec<u16>,
    counts: TcpStates,
}

impl TcpTally {
    /// Adds one table (`tcp` or `tcp6` content) to the tally.
    pub fn add_table(&mut self, content: &str) -> Result<(), ParseError> {
        for line in content.lines() {
            let mut fields = line.split_ascii_whitespace();
            let (Some(slot), Some(local), Some(_remote), Some(state)) =
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
                ESTABLISHED => self.established_local_ports.push(local_port),
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
        self.established_local_ports.clear();
    }

    /// The namespace's tally; the tally is empty again afterwards.
    pub fn finish(&mut self) -> TcpStates {
        let mut counts = std::mem::take(&mut self.counts);
        for port in &self.established_local_ports {
            if self.listening_ports.contains(port) {
                counts.established_inbound += 1;
            } else {
                counts.established_outbound += 1;
            }
        }
        self.listening_ports.clear();
        self.established_local_ports.clear();
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
        let expected = TcpStates { established_inbound: 1, listen: 1, ..TcpStates::default() };
        assert_eq!(tally(&[&tcp, &tcp6]), Ok(expected));
        assert_eq!(tally(&[&tcp6, &tcp]), Ok(expected));
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
