//! A small synchronous rtnetlink client: the link, address and route calls
//! the built-in network and pinns make, nothing else.
//!
//! A netlink socket stays in the network namespace it was created in, so
//! `open_in` creates one on a short-lived thread that joined the pod's
//! namespace; the caller's threads never change namespace.

use ipnet::IpNet;
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute,
    LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::Path;

/// Cumulative traffic counters of one interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceCounters {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

pub struct Netlink {
    socket: Socket,
    sequence: u32,
}

impl Netlink {
    /// A socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Netlink> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Netlink {
            socket,
            sequence: 0,
        })
    }

    /// A socket in the network namespace pinned at `netns`.
    pub fn open_in(netns: &Path) -> io::Result<Netlink> {
        let ns = std::fs::File::open(netns)?;
        std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(io::Error::from)?;
                Netlink::open()
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("netlink thread panicked")))
        })
    }

    /// Sends one request and waits for its acknowledgement; returns the
    /// messages the kernel answered with before it.
    fn request(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.sequence = self.sequence.wrapping_add(1);
        let mut packet = NetlinkMessage::new(NetlinkHeader::default(), message.into());
        packet.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        packet.header.sequence_number = self.sequence;
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket.send(&buf, 0)?;
        let mut replies = Vec::new();
        let mut receive = vec![0u8; 65536];
        loop {
            let size = self.socket.recv(&mut &mut receive[..], 0)?;
            let mut offset = 0;
            while offset < size {
                let reply: NetlinkMessage<RouteNetlinkMessage> =
                    NetlinkMessage::deserialize(&receive[offset..size])
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let length = reply.header.length as usize;
                if reply.header.sequence_number == self.sequence {
                    match reply.payload {
                        NetlinkPayload::Error(e) => {
                            return match e.code {
                                None => Ok(replies),
                                Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
                            };
                        }
                        NetlinkPayload::InnerMessage(m) => replies.push(m),
                        NetlinkPayload::Done(_) => return Ok(replies),
                        _ => {}
                    }
                }
                if length == 0 {
                    break;
                }
                offset += length;
            }
        }
    }

    /// The link called `name`, if it exists.
    pub fn link(&mut self, name: &str) -> io::Result<Option<LinkMessage>> {
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        match self.request(RouteNetlinkMessage::GetLink(message), 0) {
            Ok(replies) => Ok(replies.into_iter().find_map(|r| match r {
                RouteNetlinkMessage::NewLink(link) => Some(link),
                _ => None,
            })),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every link: (index, name, master's index).
    pub fn links(&mut self) -> io::Result<Vec<(u32, String, Option<u32>)>> {
        Ok(self
            .dump_links()?
            .into_iter()
            .map(|link| {
                let mut name = String::new();
                let mut master = None;
                for attribute in &link.attributes {
                    match attribute {
                        LinkAttribute::IfName(n) => name = n.clone(),
                        LinkAttribute::Controller(m) => master = Some(*m),
                        _ => {}
                    }
                }
                (link.header.index, name, master)
            })
            .collect())
    }

    /// Every link in this namespace.
    fn dump_links(&mut self) -> io::Result<Vec<LinkMessage>> {
        let replies = self.request(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewLink(link) => Some(link),
                _ => None,
            })
            .collect())
    }

    /// Every interface's traffic counters but loopback's (a pod's network
    /// stats, read from a socket opened in its namespace).
    pub fn interface_counters(&mut self) -> io::Result<Vec<InterfaceCounters>> {
        Ok(self
            .dump_links()?
            .into_iter()
            .filter_map(|link| {
                let mut counters = InterfaceCounters::default();
                for attribute in link.attributes {
                    match attribute {
                        LinkAttribute::IfName(name) => counters.name = name,
                        LinkAttribute::Stats64(stats) => {
                            counters.rx_bytes = stats.rx_bytes;
                            counters.rx_packets = stats.rx_packets;
                            counters.rx_errors = stats.rx_errors;
                            counters.rx_dropped = stats.rx_dropped;
                            counters.tx_bytes = stats.tx_bytes;
                            counters.tx_packets = stats.tx_packets;
                            counters.tx_errors = stats.tx_errors;
                            counters.tx_dropped = stats.tx_dropped;
                        }
                        _ => {}
                    }
                }
                (counters.name != "lo").then_some(counters)
            })
            .collect())
    }

    /// The interface index of `name`, if it exists.
    pub fn link_index(&mut self, name: &str) -> io::Result<Option<u32>> {
        Ok(self.link(name)?.map(|link| link.header.index))
    }

    /// The index of the bridge (or other master) `name` is enslaved to.
    pub fn master_of(&mut self, name: &str) -> io::Result<Option<u32>> {
        Ok(self.link(name)?.and_then(|link| {
            link.attributes.iter().find_map(|a| match a {
                LinkAttribute::Controller(index) => Some(*index),
                _ => None,
            })
        }))
    }

    /// `ip link add NAME address MAC mtu MTU type bridge`; an existing link
    /// is kept.
    pub fn add_bridge(&mut self, name: &str, mtu: u32, mac: [u8; 6]) -> io::Result<u32> {
        if let Some(index) = self.link_index(name)? {
            return Ok(index);
        }
        let mut message = LinkMessage::default();
        message.attributes = vec![
            LinkAttribute::IfName(name.to_string()),
            LinkAttribute::Mtu(mtu),
            LinkAttribute::Address(mac.to_vec()),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]),
        ];
        match self.request(
            RouteNetlinkMessage::NewLink(message),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Ok(_) => {}
            // Another caller made it meanwhile.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        self.link_index(name)?
            .ok_or_else(|| io::Error::other(format!("bridge {name} vanished after creation")))
    }

    /// A veth pair: `host` here, `peer` created directly in the namespace
    /// `peer_netns` (so it never appears on the node under its name).
    pub fn add_veth(
        &mut self,
        host: &str,
        peer: &str,
        peer_netns: BorrowedFd<'_>,
        mtu: u32,
    ) -> io::Result<u32> {
        let mut peer_message = LinkMessage::default();
        peer_message.attributes = vec![
            LinkAttribute::IfName(peer.to_string()),
            LinkAttribute::Mtu(mtu),
            LinkAttribute::NetNsFd(peer_netns.as_raw_fd()),
        ];
        let mut message = LinkMessage::default();
        message.attributes = vec![
            LinkAttribute::IfName(host.to_string()),
            LinkAttribute::Mtu(mtu),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_message))),
            ]),
        ];
        self.request(
            RouteNetlinkMessage::NewLink(message),
            NLM_F_CREATE | NLM_F_EXCL,
        )?;
        self.link_index(host)?
            .ok_or_else(|| io::Error::other(format!("veth {host} vanished after creation")))
    }

    /// Sets a link up, optionally enslaving it to `bridge` as a hairpin port
    /// (so a pod can reach itself through its own host port).
    pub fn set_up(&mut self, index: u32, bridge: Option<u32>) -> io::Result<()> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        message.header.flags = LinkFlags::Up;
        message.header.change_mask = LinkFlags::Up;
        if let Some(bridge) = bridge {
            message.attributes.push(LinkAttribute::Controller(bridge));
        }
        self.request(RouteNetlinkMessage::SetLink(message), 0)?;
        if bridge.is_some() {
            let mut port = LinkMessage::default();
            port.header.index = index;
            port.attributes = vec![LinkAttribute::LinkInfo(vec![
                LinkInfo::PortKind(InfoPortKind::Bridge),
                LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
                    true,
                )])),
            ])];
            // Port options are changed through NEWLINK on the existing link;
            // SETLINK ignores them.
            self.request(RouteNetlinkMessage::NewLink(port), 0)?;
        }
        Ok(())
    }

    /// `ip addr add ADDR/PREFIX dev INDEX`; an address already there is fine.
    /// IPv6 addresses skip duplicate detection: the subnet is ours alone, and
    /// DAD would leave them unusable for a second or more.
    pub fn add_address(&mut self, index: u32, address: IpNet) -> io::Result<()> {
        let mut message = AddressMessage::default();
        message.header.index = index;
        message.header.prefix_len = address.prefix_len();
        message.header.family = family(address.addr());
        message
            .attributes
            .push(AddressAttribute::Local(address.addr()));
        message
            .attributes
            .push(AddressAttribute::Address(address.addr()));
        if address.addr().is_ipv6() {
            message
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        match self.request(
            RouteNetlinkMessage::NewAddress(message),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            other => other.map(drop),
        }
    }

    /// `ip route add default via GATEWAY dev INDEX`.
    pub fn add_default_route(&mut self, index: u32, gateway: IpAddr) -> io::Result<()> {
        let mut message = RouteMessage::default();
        message.header.address_family = family(gateway);
        message.header.table = netlink_packet_route::route::RouteHeader::RT_TABLE_MAIN;
        message.header.protocol = RouteProtocol::Boot;
        message.header.scope = RouteScope::Universe;
        message.header.kind = RouteType::Unicast;
        message.attributes = vec![
            RouteAttribute::Gateway(RouteAddress::from(gateway)),
            RouteAttribute::Oif(index),
        ];
        match self.request(
            RouteNetlinkMessage::NewRoute(message),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            other => other.map(drop),
        }
    }

    /// `ip link del NAME`; returns false when there was no such link.
    pub fn delete_link(&mut self, name: &str) -> io::Result<bool> {
        let Some(index) = self.link_index(name)? else {
            return Ok(false);
        };
        let mut message = LinkMessage::default();
        message.header.index = index;
        match self.request(RouteNetlinkMessage::DelLink(message), 0) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

fn family(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_loopback_and_not_a_missing_link() {
        let mut nl = Netlink::open().unwrap();
        assert_eq!(nl.link_index("lo").unwrap(), Some(1));
        assert_eq!(nl.link_index("crius-nope0").unwrap(), None);
        assert!(!nl.delete_link("crius-nope0").unwrap());
        let links = nl.links().unwrap();
        assert!(
            links.iter().any(|(i, name, _)| *i == 1 && name == "lo"),
            "{links:?}"
        );
        // The socket still answers single requests after a dump.
        assert_eq!(nl.link_index("lo").unwrap(), Some(1));
    }
}
