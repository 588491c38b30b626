//! Packets on the wire: an IP packet read from the TUN device becomes a
//! [`Segment`] or a [`Datagram`], and the stack's answers become IP packets
//! again. Parsing and building are `etherparse`'s; nothing here keeps state.

use std::net::{IpAddr, SocketAddr};

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

/// The hop limit (TTL) of every packet the stack sends.
const HOP_LIMIT: u8 = 64;

/// The receive window the stack advertises (no window scaling).
pub const WINDOW: u16 = 65_535;

/// TCP control bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Control {
    /// SYN.
    pub syn: bool,
    /// ACK (the acknowledgment number is meaningful).
    pub ack: bool,
    /// FIN.
    pub fin: bool,
    /// RST.
    pub rst: bool,
}

/// A TCP segment, addressed from the stack's point of view: `local` is the
/// stack's end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// The stack's end.
    pub local: SocketAddr,
    /// The peer's end.
    pub remote: SocketAddr,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// Control bits.
    pub control: Control,
    /// Payload.
    pub payload: Vec<u8>,
}

impl Segment {
    /// The sequence space the segment occupies: payload, SYN and FIN.
    pub fn len(&self) -> u32 {
        self.payload.len() as u32 + u32::from(self.control.syn) + u32::from(self.control.fin)
    }
}

/// A UDP datagram, addressed from the stack's point of view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// The stack's end (a unicast or a broadcast address).
    pub local: SocketAddr,
    /// The peer's end.
    pub remote: SocketAddr,
    /// Payload.
    pub payload: Vec<u8>,
}

/// What one packet read from the device is.
#[derive(Debug, PartialEq, Eq)]
pub enum Packet {
    /// TCP.
    Tcp(Segment),
    /// UDP.
    Udp(Datagram),
    /// Anything else the kernel sends down the device (ICMPv6 router
    /// solicitations, MLD reports, ...): not the stack's business.
    Other,
    /// Not a well-formed IP packet.
    Malformed,
}

/// Reads one IP packet (the TUN device gives no link header).
pub fn parse(bytes: &[u8]) -> Packet {
    let Ok(sliced) = SlicedPacket::from_ip(bytes) else {
        return Packet::Malformed;
    };
    let (src, dst): (IpAddr, IpAddr) = match &sliced.net {
        Some(NetSlice::Ipv4(ip)) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        Some(NetSlice::Ipv6(ip)) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        _ => return Packet::Other,
    };
    match &sliced.transport {
        Some(TransportSlice::Tcp(tcp)) => Packet::Tcp(Segment {
            local: SocketAddr::new(dst, tcp.destination_port()),
            remote: SocketAddr::new(src, tcp.source_port()),
            seq: tcp.sequence_number(),
            ack: tcp.acknowledgment_number(),
            control: Control {
                syn: tcp.syn(),
                ack: tcp.ack(),
                fin: tcp.fin(),
                rst: tcp.rst(),
            },
            payload: tcp.payload().to_vec(),
        }),
        Some(TransportSlice::Udp(udp)) => Packet::Udp(Datagram {
            local: SocketAddr::new(dst, udp.destination_port()),
            remote: SocketAddr::new(src, udp.source_port()),
            payload: udp.payload().to_vec(),
        }),
        _ => Packet::Other,
    }
}

/// The IP header of a packet from `from` to `to`, or `None` if the two are
/// of different families.
fn ip_builder(
    from: IpAddr,
    to: IpAddr,
) -> Option<etherparse::PacketBuilderStep<etherparse::IpHeaders>> {
    match (from, to) {
        (IpAddr::V4(f), IpAddr::V4(t)) => {
            Some(PacketBuilder::ipv4(f.octets(), t.octets(), HOP_LIMIT))
        }
        (IpAddr::V6(f), IpAddr::V6(t)) => {
            Some(PacketBuilder::ipv6(f.octets(), t.octets(), HOP_LIMIT))
        }
        _ => None,
    }
}

/// The IP packet that carries `segment` from the stack to the peer.
pub fn build_tcp(segment: &Segment) -> Option<Vec<u8>> {
    let ip = ip_builder(segment.local.ip(), segment.remote.ip())?;
    let mut tcp = ip.tcp(
        segment.local.port(),
        segment.remote.port(),
        segment.seq,
        WINDOW,
    );
    let Control { syn, ack, fin, rst } = segment.control;
    if syn {
        tcp = tcp.syn();
    }
    if ack {
        tcp = tcp.ack(segment.ack);
    }
    if fin {
        tcp = tcp.fin();
    }
    if rst {
        tcp = tcp.rst();
    }
    if !segment.payload.is_empty() {
        tcp = tcp.psh();
    }
    let mut out = Vec::with_capacity(tcp.size(segment.payload.len()));
    tcp.write(&mut out, &segment.payload).ok()?;
    Some(out)
}

/// The IP packet that carries `datagram` from the stack to the peer.
pub fn build_udp(datagram: &Datagram) -> Option<Vec<u8>> {
    let udp = ip_builder(datagram.local.ip(), datagram.remote.ip())?
        .udp(datagram.local.port(), datagram.remote.port());
    let mut out = Vec::with_capacity(udp.size(datagram.payload.len()));
    udp.write(&mut out, &datagram.payload).ok()?;
    Some(out)
}
