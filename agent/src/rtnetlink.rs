//! A synchronous rtnetlink socket in the agent's network namespace: link dumps and namespace ids.
//!
//! They are behind the pods' veth mapping ([`crate::pods::veth`]) and the
//! node's interface kinds ([`crate::iface_kind`]).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
use netlink_sys::protocols::NETLINK_ROUTE;
use netlink_sys::{Socket, SocketAddr};

/// An rtnetlink socket in the network namespace of the thread that opened
/// it (a socket stays in the namespace it was made in): the agent's.
pub struct Rtnetlink {
    socket: Socket,
    sequence: u32,
    buffer: Vec<u8>,
}

impl std::fmt::Debug for Rtnetlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rtnetlink").field("sequence", &self.sequence).finish_non_exhaustive()
    }
}

impl Rtnetlink {
    pub fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Self { socket, sequence: 0, buffer: vec![0; 64 * 1024] })
    }

    /// Every link of the namespace.
    pub fn links(&mut self) -> io::Result<Vec<LinkMessage>> {
        let replies = self.request(RouteNetlinkMessage::GetLink(LinkMessage::default()), NLM_F_REQUEST | NLM_F_DUMP)?;
        Ok(replies
            .into_iter()
            .filter_map(|reply| match reply {
                RouteNetlinkMessage::NewLink(link) => Some(link),
                _ => None,
            })
            .collect())
    }

    /// The id the agent's namespace gives the namespace at `ns_net` (a
    /// `/proc/<pid>/ns/net`); `None` when it has none (no link of the
    /// agent's namespace has a peer there).
    pub fn namespace_id(&mut self, ns_net: &Path) -> io::Result<Option<i32>> {
        let namespace = File::open(ns_net)?;
        let fd = u32::try_from(namespace.as_raw_fd()).map_err(|_| io::Error::other("negative file descriptor"))?;
        let mut message = NsidMessage::default();
        message.attributes.push(NsidAttribute::Fd(fd));
        let replies = self.request(RouteNetlinkMessage::GetNsId(message), NLM_F_REQUEST)?;
        for reply in replies {
            if let RouteNetlinkMessage::NewNsId(reply) = reply {
                for attribute in reply.attributes {
                    if let NsidAttribute::Id(id) = attribute {
                        // NETNSA_NSID_NOT_ASSIGNED
                        return Ok((id >= 0).then_some(id));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Sends `message` and collects the replies: one, or a dump's parts up
    /// to its end.
    fn request(&mut self, message: RouteNetlinkMessage, flags: u16) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.sequence = self.sequence.wrapping_add(1);
        let mut packet = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(message));
        packet.header.flags = flags;
        packet.header.sequence_number = self.sequence;
        packet.finalize();
        let mut request = vec![0; packet.buffer_len()];
        packet.serialize(&mut request);
        self.socket.send(&request, 0)?;

        let dump = flags & NLM_F_DUMP != 0;
        let mut replies = Vec::new();
        loop {
            let size = self.socket.recv(&mut &mut self.buffer[..], 0)?;
            let mut offset = 0;
            while offset < size {
                let reply: NetlinkMessage<RouteNetlinkMessage> =
                    NetlinkMessage::deserialize(&self.buffer[offset..size])
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let length = reply.header.length as usize;
                let ours = reply.header.sequence_number == self.sequence;
                match reply.payload {
                    _ if !ours => {}
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::Error(error) => match error.code {
                        None => return Ok(replies),
                        Some(code) => return Err(io::Error::from_raw_os_error(-code.get())),
                    },
                    NetlinkPayload::InnerMessage(inner) => {
                        replies.push(inner);
                        if !dump {
                            return Ok(replies);
                        }
                    }
                    _ => {}
                }
                if length == 0 {
                    break;
                }
                offset += length;
            }
        }
    }
}
