//! From captured bytes to what the socket layer needs: protocol, the two
//! endpoints and the TCP flags, through `etherparse`'s lax slicer.
//!
//! The lax slicer accepts packets cut short by the capture's snapshot length
//! (common in tcpdump's test files) as long as the headers needed here are
//! whole. Every packet ends up in exactly one class:
//!
//! - **parsed**: a TCP or UDP [`Segment`]; or a packet with sound headers that
//!   is not for a socket: non-IP (ARP, LLC, ...), another IP protocol (ICMP,
//!   GRE, ...), a non-first IP fragment (a stack would reassemble first), or
//!   a segment with port 0 or an address no endpoint may have (a stack drops
//!   it before the lookup);
//! - **unparseable**: a link, IP or TCP/UDP header that is cut short or
//!   malformed, or a link type this reader does not know.
//!
//! Checksums are not verified: captures taken on the sending host carry
//! offloaded (unfilled) checksums.

use std::net::{IpAddr, SocketAddr};

use etherparse::err::Layer;
use etherparse::{EtherType, LaxNetSlice, LaxSlicedPacket, TransportSlice};

use crate::capture::Link;

/// The transport protocol of a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// The TCP flags the socket layer acts on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpFlags {
    /// SYN.
    pub syn: bool,
    /// ACK.
    pub ack: bool,
    /// FIN.
    pub fin: bool,
    /// RST.
    pub rst: bool,
}

/// A TCP or UDP packet, as the demux sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// TCP or UDP.
    pub proto: Proto,
    /// The sender.
    pub src: SocketAddr,
    /// The receiver.
    pub dst: SocketAddr,
    /// The TCP flags (all clear for UDP).
    pub flags: TcpFlags,
}

/// A packet that parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// TCP or UDP.
    Segment(Segment),
    /// Not IP.
    NonIp,
    /// IP, but neither TCP nor UDP.
    OtherIp,
    /// An IP fragment: a stack reassembles the datagram before the lookup.
    Fragment,
    /// TCP or UDP with port 0, an address no endpoint may have, or an IPv4
    /// address (v4-mapped) facing an IPv6 one.
    BadEndpoint,
}

/// Why a packet did not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unparseable {
    /// The link-layer header (or VLAN tag) is cut short or malformed.
    Link,
    /// The IP header (or an IPv6 extension header) is.
    Ip,
    /// The TCP or UDP header is.
    Transport,
    /// The link type is not one this reader knows.
    UnsupportedLink,
}

/// Parses one captured packet. Never panics, whatever the bytes.
pub fn parse(link: Link, data: &[u8]) -> Result<Parsed, Unparseable> {
    let sliced = match link {
        Link::Ethernet => LaxSlicedPacket::from_ethernet(data).map_err(|_| Unparseable::Link)?,
        Link::RawIp => LaxSlicedPacket::from_ip(data).map_err(|_| Unparseable::Ip)?,
        Link::Loopback => {
            let ip = data.get(4..).ok_or(Unparseable::Link)?;
            LaxSlicedPacket::from_ip(ip).map_err(|_| Unparseable::Ip)?
        }
        Link::LinuxSll => cooked(data, 16, 14)?,
        Link::LinuxSll2 => cooked(data, 20, 0)?,
        Link::Unsupported(_) => return Err(Unparseable::UnsupportedLink),
    };
    classify(&sliced)
}

/// A Linux cooked header of `len` bytes with the protocol (an EtherType for
/// IP and VLAN) at `proto_at`.
fn cooked(data: &[u8], len: usize, proto_at: usize) -> Result<LaxSlicedPacket<'_>, Unparseable> {
    let proto = data.get(proto_at..proto_at + 2).ok_or(Unparseable::Link)?;
    let payload = data.get(len..).ok_or(Unparseable::Link)?;
    let ether_type = EtherType(u16::from_be_bytes([proto[0], proto[1]]));
    Ok(LaxSlicedPacket::from_ether_type(ether_type, payload))
}

fn classify(sliced: &LaxSlicedPacket<'_>) -> Result<Parsed, Unparseable> {
    let (src, dst, fragmented) = match &sliced.net {
        Some(LaxNetSlice::Ipv4(ip)) => {
            let header = ip.header();
            (
                IpAddr::from(header.source_addr()),
                IpAddr::from(header.destination_addr()),
                ip.payload().fragmented,
            )
        }
        Some(LaxNetSlice::Ipv6(ip)) => {
            let header = ip.header();
            (
                IpAddr::from(header.source_addr()),
                IpAddr::from(header.destination_addr()),
                ip.payload().fragmented,
            )
        }
        Some(LaxNetSlice::Arp(_)) => return Ok(Parsed::NonIp),
        None => {
            return match &sliced.stop_err {
                Some((_, layer)) => Err(unparseable_at(*layer)),
                None => Ok(Parsed::NonIp),
            }
        }
    };
    let (proto, src_port, dst_port, flags) = match &sliced.transport {
        Some(TransportSlice::Tcp(tcp)) => {
            let flags = TcpFlags {
                syn: tcp.syn(),
                ack: tcp.ack(),
                fin: tcp.fin(),
                rst: tcp.rst(),
            };
            (Proto::Tcp, tcp.source_port(), tcp.destination_port(), flags)
        }
        Some(TransportSlice::Udp(udp)) => (
            Proto::Udp,
            udp.source_port(),
            udp.destination_port(),
            TcpFlags::default(),
        ),
        Some(TransportSlice::Icmpv4(_) | TransportSlice::Icmpv6(_)) => return Ok(Parsed::OtherIp),
        None => {
            return match &sliced.stop_err {
                Some((_, layer)) => Err(unparseable_at(*layer)),
                None if fragmented => Ok(Parsed::Fragment),
                None => Ok(Parsed::OtherIp),
            }
        }
    };
    // v4-mapped IPv6 addresses are IPv4 to the table.
    let (src, dst) = (src.to_canonical(), dst.to_canonical());
    let segment = Segment {
        proto,
        src: SocketAddr::new(src, src_port),
        dst: SocketAddr::new(dst, dst_port),
        flags,
    };
    if !sound_endpoints(&segment) {
        return Ok(Parsed::BadEndpoint);
    }
    Ok(Parsed::Segment(segment))
}

/// The class of a header error at `layer`.
fn unparseable_at(layer: Layer) -> Unparseable {
    match layer {
        Layer::LinuxSllHeader
        | Layer::Ethernet2Header
        | Layer::EtherPayload
        | Layer::VlanHeader
        | Layer::Arp => Unparseable::Link,
        Layer::TcpHeader | Layer::UdpHeader | Layer::UdpPayload => Unparseable::Transport,
        _ => Unparseable::Ip,
    }
}

/// What `tcp_input` / `udp_input` check before a lookup: ports are not 0, the
/// source is a unicast address, and a TCP destination is unicast too (UDP may
/// go to a broadcast or multicast group). Both ends are of one family.
fn sound_endpoints(segment: &Segment) -> bool {
    let unicast = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast()),
        IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast()),
    };
    let udp_dhcp_client = segment.proto == Proto::Udp && segment.src.ip().is_unspecified();
    segment.src.port() != 0
        && segment.dst.port() != 0
        && (unicast(segment.src.ip()) || udp_dhcp_client)
        && (segment.proto == Proto::Udp || unicast(segment.dst.ip()))
        && !segment.dst.ip().is_unspecified()
        && segment.src.is_ipv4() == segment.dst.is_ipv4()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_never_panics() {
        let links = [
            Link::Ethernet,
            Link::RawIp,
            Link::LinuxSll,
            Link::LinuxSll2,
            Link::Loopback,
            Link::Unsupported(999),
        ];
        let mut bytes = [0u8; 80];
        for round in 0..2000u64 {
            let mut h = round.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            for byte in bytes.iter_mut() {
                h = crate::rng::mix(h);
                *byte = h as u8;
            }
            // Make some of them look like IPv4 / IPv6 to get past the first check.
            if round % 3 == 0 {
                bytes[0] = 0x45;
            } else if round % 3 == 1 {
                bytes[0] = 0x60;
            }
            let len = (round % 81) as usize;
            for link in links {
                let _ = parse(link, &bytes[..len]);
            }
        }
    }

    #[test]
    fn empty_packets_are_unparseable() {
        assert_eq!(parse(Link::Ethernet, &[]), Err(Unparseable::Link));
        assert_eq!(parse(Link::RawIp, &[]), Err(Unparseable::Ip));
        assert_eq!(parse(Link::LinuxSll, &[0; 10]), Err(Unparseable::Link));
        assert_eq!(
            parse(Link::Unsupported(147), &[0; 64]),
            Err(Unparseable::UnsupportedLink)
        );
    }
}
