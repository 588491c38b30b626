//! Endpoints and tuples: IPv4/IPv6 normalisation, v4-mapped addresses, wildcards.
//!
//! Inside the table every address is *canonical*: an IPv4-mapped IPv6 address
//! (`::ffff:a.b.c.d`) is stored as the IPv4 address `a.b.c.d`, so that an
//! `Inet6` PCB bound to a mapped address and an IPv4 packet meet on the same
//! key. The PCB's [`Family`] remembers how to show the address back to its
//! owner (`getsockname` on an `AF_INET6` socket shows the mapped form).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// The address family of a PCB, fixed at attach like `socket(2)`'s domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// `AF_INET`: IPv4 only.
    Inet,
    /// `AF_INET6`: IPv6, and IPv4 through v4-mapped addresses unless V6ONLY.
    Inet6,
}

/// An address and port in canonical form (v4-mapped addresses as IPv4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Endpoint {
    pub(crate) ip: IpAddr,
    pub(crate) port: u16,
}

impl Endpoint {
    /// The canonical form of `addr`: flow label and scope dropped, v4-mapped
    /// addresses turned into IPv4.
    #[inline]
    pub(crate) fn new(addr: SocketAddr) -> Self {
        Self {
            ip: addr.ip().to_canonical(),
            port: addr.port(),
        }
    }

    /// The unspecified endpoint of `family`: `0.0.0.0:0` or `[::]:0`.
    pub(crate) fn unspecified(family: Family) -> Self {
        let ip = match family {
            Family::Inet => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Family::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        Self { ip, port: 0 }
    }

    /// Whether the address is the wildcard (`0.0.0.0`, `::` or `::ffff:0.0.0.0`).
    #[inline]
    pub(crate) fn is_wildcard(&self) -> bool {
        self.ip.is_unspecified()
    }

    /// Whether the address is IPv4 (after canonicalisation).
    #[inline]
    pub(crate) fn is_v4(&self) -> bool {
        self.ip.is_ipv4()
    }

    /// The same endpoint with another port.
    pub(crate) fn with_port(self, port: u16) -> Self {
        Self { port, ..self }
    }

    /// The address as its owner sees it: IPv4 for an `Inet` PCB, IPv6 (mapped
    /// for IPv4) for an `Inet6` PCB.
    pub(crate) fn to_socket(self, family: Family) -> SocketAddr {
        match (family, self.ip) {
            (Family::Inet6, IpAddr::V4(v4)) => {
                SocketAddr::V6(SocketAddrV6::new(v4.to_ipv6_mapped(), self.port, 0, 0))
            }
            (Family::Inet6, IpAddr::V6(v6)) => {
                SocketAddr::V6(SocketAddrV6::new(v6, self.port, 0, 0))
            }
            (Family::Inet, IpAddr::V4(v4)) => SocketAddr::V4(SocketAddrV4::new(v4, self.port)),
            // An `Inet` PCB never holds an IPv6 address; show it as is.
            (Family::Inet, IpAddr::V6(v6)) => {
                SocketAddr::V6(SocketAddrV6::new(v6, self.port, 0, 0))
            }
        }
    }
}

/// A PCB's local and remote endpoints. `remote` is unspecified with port 0
/// while the PCB is not connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tuple {
    pub(crate) local: Endpoint,
    pub(crate) remote: Endpoint,
}

/// The exact index's key hash: the two ports in one word, then both IPv4
/// addresses in one word (or each IPv6 address in one `u128`), so a keyed
/// hasher runs two or three rounds instead of one per field and discriminant.
/// Equal tuples hash equally: every field is fed in, and canonical addresses
/// have one representation each.
impl std::hash::Hash for Tuple {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u32(u32::from(self.local.port) << 16 | u32::from(self.remote.port));
        match (self.local.ip, self.remote.ip) {
            (IpAddr::V4(local), IpAddr::V4(remote)) => {
                state.write_u64(u64::from(local.to_bits()) << 32 | u64::from(remote.to_bits()));
            }
            (local, remote) => {
                state.write_u128(bits(local));
                state.write_u128(bits(remote));
            }
        }
    }
}

/// An address as one integer; IPv4 addresses are tagged so that they never
/// collide with the IPv6 addresses of the same value.
#[inline]
fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_bits()) | 1 << 127,
        IpAddr::V6(v6) => v6.to_bits(),
    }
}

impl Tuple {
    /// The tuple of a PCB that is not bound yet.
    pub(crate) fn unbound(family: Family) -> Self {
        Self {
            local: Endpoint::unspecified(family),
            remote: Endpoint::unspecified(family),
        }
    }

    /// A bound, unconnected tuple.
    pub(crate) fn bound(local: Endpoint) -> Self {
        let family = if local.is_v4() {
            Family::Inet
        } else {
            Family::Inet6
        };
        Self {
            local,
            remote: Endpoint::unspecified(family),
        }
    }

    /// Whether the tuple names a peer.
    #[inline]
    pub(crate) fn is_connected(&self) -> bool {
        self.remote.port != 0
    }
}

/// The default source-address selection: loopback only, as Linux picks it.
///
/// `127.0.0.0/8` gives `127.0.0.1`, `::1` gives `::1`, `::ffff:127.x.y.z` gives
/// `::ffff:127.0.0.1`; anything else gives `None`.
pub(crate) fn loopback_source(peer: IpAddr) -> Option<IpAddr> {
    match peer {
        IpAddr::V4(v4) if v4.is_loopback() => Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        IpAddr::V6(v6) if v6.is_loopback() => Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) if v4.is_loopback() => Some(IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped())),
            _ => None,
        },
        IpAddr::V4(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_addresses_are_canonical_ipv4() {
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:80".parse().unwrap();
        let plain: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert_eq!(Endpoint::new(mapped), Endpoint::new(plain));
        assert_eq!(Endpoint::new(mapped).to_socket(Family::Inet6), mapped);
        assert_eq!(Endpoint::new(plain).to_socket(Family::Inet), plain);
        let any_mapped: SocketAddr = "[::ffff:0.0.0.0]:1".parse().unwrap();
        assert!(Endpoint::new(any_mapped).is_wildcard());
        assert!(Endpoint::new(any_mapped).is_v4());
    }

    #[test]
    fn default_source_address_knows_only_loopback() {
        let cases = [
            ("127.3.4.5", Some("127.0.0.1")),
            ("::1", Some("::1")),
            ("::ffff:127.9.9.9", Some("::ffff:127.0.0.1")),
            ("10.0.0.1", None),
            ("2001:db8::1", None),
            ("::ffff:10.0.0.1", None),
        ];
        for (peer, source) in cases {
            let got = loopback_source(peer.parse().unwrap());
            assert_eq!(got, source.map(|s| s.parse().unwrap()), "{peer}");
        }
    }
}
