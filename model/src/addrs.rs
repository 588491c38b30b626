//! The small address and port space the operations draw from. It is small on
//! purpose: with a handful of addresses and ports, binds collide, wildcards
//! overlap specific addresses, and the ephemeral range runs out.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::ops::RangeInclusive;

/// The addresses: wildcards, loopback, a second local address, multicast, a
/// non-local peer, and their IPv6 and v4-mapped forms.
pub const ADDRS: [&str; 14] = [
    "0.0.0.0",
    "127.0.0.1",
    "127.0.0.2",
    "224.0.0.1",
    "10.0.0.1",
    "::",
    "::1",
    "::ffff:127.0.0.1",
    "::ffff:0.0.0.0",
    "::ffff:127.0.0.2",
    "ff02::1",
    "2001:db8::1",
    "::ffff:224.0.0.1",
    "::ffff:10.0.0.1",
];

/// The ports: 0 (ephemeral / invalid peer), a privileged one, two fixed ones
/// and the whole ephemeral range.
pub const PORTS: [u16; 8] = [0, 80, 7000, 7001, 40000, 40001, 40002, 40003];

/// The devices: none (the packet's device unknown), two interfaces (FIBs
/// 1 and 2 under FreeBSD), index 0 (refused by Linux, the default FIB under
/// FreeBSD) and 256 (a device under Linux, past the FIBs FreeBSD keeps).
pub const DEVICES: [Option<u32>; 5] = [None, Some(1), Some(2), Some(0), Some(256)];

/// The device selected by `index`.
pub fn device(index: u8) -> Option<pcbhash::Device> {
    DEVICES[usize::from(index) % DEVICES.len()].map(pcbhash::Device)
}

/// The ends of the per-PCB port ranges: 0 (the table's end under Linux,
/// refused by FreeBSD), a privileged port, ports outside the table's range
/// on both sides, and the ends and middle of the table's range.
pub const RANGE_ENDS: [u16; 8] = [0, 80, 7000, 40000, 40001, 40002, 40003, 50000];

/// The range selected by two indices of [`RANGE_ENDS`], or `None` to unset.
pub fn port_range(first: u8, last: u8, unset: bool) -> Option<RangeInclusive<u16>> {
    let end = |i: u8| RANGE_ENDS[usize::from(i) % RANGE_ENDS.len()];
    (!unset).then(|| end(first)..=end(last))
}

/// The ephemeral range every table and model of the harness uses: four ports,
/// so exhaustion is common.
pub fn ephemeral_range() -> RangeInclusive<u16> {
    40000..=40003
}

fn ip(index: u8) -> IpAddr {
    ADDRS[usize::from(index) % ADDRS.len()]
        .parse()
        .expect("a valid address literal")
}

/// The port selected by `index`.
pub fn port(index: u8) -> u16 {
    PORTS[usize::from(index) % PORTS.len()]
}

/// The socket address selected by `addr` and `port_index`, as a socket of
/// that family would pass it: IPv4 as `SocketAddr::V4`, the rest as `V6`.
pub fn local_addr(addr: u8, port_index: u8) -> SocketAddr {
    to_socket(ip(addr), port(port_index))
}

/// Like [`local_addr`]; the remote side of a packet or a connect.
pub fn remote_addr(addr: u8, port_index: u8) -> SocketAddr {
    to_socket(ip(addr), port(port_index))
}

fn to_socket(ip: IpAddr, port: u16) -> SocketAddr {
    match ip {
        IpAddr::V4(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
        IpAddr::V6(v6) => SocketAddr::V6(SocketAddrV6::new(v6, port, 0, 0)),
    }
}

/// An endpoint in canonical form: v4-mapped addresses as IPv4.
pub(crate) type Ep = (IpAddr, u16);

pub(crate) fn canonical(addr: SocketAddr) -> Ep {
    (addr.ip().to_canonical(), addr.port())
}

/// The address as a PCB of `inet6` family shows it (mapped form for IPv4).
pub(crate) fn shown(ep: Ep, inet6: bool) -> SocketAddr {
    match (inet6, ep.0) {
        (true, IpAddr::V4(v4)) => {
            SocketAddr::V6(SocketAddrV6::new(v4.to_ipv6_mapped(), ep.1, 0, 0))
        }
        (_, ip) => to_socket(ip, ep.1),
    }
}

pub(crate) const V4_ANY: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
pub(crate) const V6_ANY: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
