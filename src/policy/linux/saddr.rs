//! How Linux compares the local addresses of two sockets on one port.
//!
//! The kernel keeps three facts about a socket's local address, and every
//! bind-conflict rule reads them:
//!
//! - `sk_v6_rcv_saddr`, the IPv6 address of an AF_INET6 socket (v4-mapped
//!   for IPv4). The bind2 buckets (`bhash2`) are keyed by it, with an AF_INET
//!   socket's address in its v4-mapped form, so `127.0.0.1` and
//!   `::ffff:127.0.0.1` share a bucket;
//! - `sk_rcv_saddr`, the IPv4 address: `0.0.0.0` for `::`, and the placeholder
//!   `127.0.0.6` (`LOOPBACK4_IPV6`) for a specific IPv6 address;
//! - `ipv6_only_sock()`: IPV6_V6ONLY, which `bind()` forces on for a specific
//!   IPv6 address, and which a TIME_WAIT socket keeps (`inet_twsk_alloc`
//!   clears `tw_ipv6only`, but `tcp_time_wait` copies it back for IPv6).
//!
//! The predicates below follow `ipv4_rcv_saddr_equal`, `ipv6_rcv_saddr_equal`,
//! `inet_rcv_saddr_equal`, `inet_use_hash2_on_bind` and
//! `inet_bind2_bucket_match_addr_any` of `net/ipv4/inet_connection_sock.c`
//! and `net/ipv4/inet_hashtables.c`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::addr::Family;
use crate::policy::PcbView;

/// `LOOPBACK4_IPV6`: the `sk_rcv_saddr` of an AF_INET6 socket on a specific
/// IPv6 address, chosen so that it never equals a real IPv4 destination.
const LOOPBACK4_IPV6: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 6);

/// The kernel's view of a socket's local address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Sk {
    pub(crate) family: Family,
    /// `sk_v6_rcv_saddr`, v4-mapped for IPv4; also the key of the socket's
    /// bind2 bucket.
    pub(crate) v6: Ipv6Addr,
    /// `sk_rcv_saddr`.
    pub(crate) v4: Ipv4Addr,
    /// `ipv6_only_sock()`.
    pub(crate) ipv6only: bool,
}

impl Sk {
    pub(crate) fn of(view: &PcbView) -> Sk {
        let (v6, v4) = match view.local.ip {
            IpAddr::V4(a) => (a.to_ipv6_mapped(), a),
            IpAddr::V6(a) if a.is_unspecified() => (a, Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(a) => (a, LOOPBACK4_IPV6),
        };
        Sk {
            family: view.family,
            v6,
            v4,
            ipv6only: ipv6_only_sock(view),
        }
    }

    /// `inet6_rcv_saddr()`: the IPv6 address of an AF_INET6 socket; none for
    /// AF_INET, which the IPv6 comparison treats as v4-mapped.
    fn inet6_rcv_saddr(&self) -> Option<Ipv6Addr> {
        (self.family == Family::Inet6).then_some(self.v6)
    }

    /// Whether the socket's bind2 bucket is v4-mapped (AF_INET, or AF_INET6 on
    /// `::ffff:a.b.c.d`, `::ffff:0.0.0.0` included).
    pub(crate) fn is_v4(&self) -> bool {
        addr_type(&self.v6) == AddrType::Mapped
    }

    /// `inet_use_hash2_on_bind()`: whether the socket counts as bound to a
    /// specific address. `::ffff:0.0.0.0` counts as a wildcard, like `0.0.0.0`.
    pub(crate) fn is_specific(&self) -> bool {
        match (self.family, addr_type(&self.v6)) {
            (Family::Inet6, AddrType::Any) => false,
            (Family::Inet6, AddrType::Other) => true,
            _ => !self.v4.is_unspecified(),
        }
    }

    /// `inet_bind2_bucket_match_addr_any(tb2, sk)` for the bucket of `owner`:
    /// whether a specific-address socket `self` must also check the owners of
    /// that wildcard bucket. `::` buckets always; `0.0.0.0` and
    /// `::ffff:0.0.0.0` buckets only for an IPv4 or v4-mapped socket.
    pub(crate) fn checks_wildcard_bucket_of(&self, owner: &Sk) -> bool {
        match addr_type(&owner.v6) {
            AddrType::Any => true,
            AddrType::Other => false,
            AddrType::Mapped => self.is_v4() && owner.v4.is_unspecified(),
        }
    }

    /// Whether `owner` sits in the same bind2 bucket (the same address, with
    /// `a.b.c.d` and `::ffff:a.b.c.d` equal).
    pub(crate) fn same_bucket(&self, owner: &Sk) -> bool {
        self.v6 == owner.v6
    }
}

/// `ipv6_only_sock()`: IPV6_V6ONLY of an AF_INET6 socket (the table sets it
/// on a bind to a specific IPv6 address, as the kernel does), TIME_WAIT
/// included.
pub(crate) fn ipv6_only_sock(view: &PcbView) -> bool {
    view.family == Family::Inet6 && view.flags.v6only()
}

/// The three address types the comparisons tell apart (`ipv6_addr_type()`
/// reduced to what they test).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AddrType {
    /// `::`.
    Any,
    /// `::ffff:a.b.c.d`.
    Mapped,
    /// Any other IPv6 address.
    Other,
}

fn addr_type(addr: &Ipv6Addr) -> AddrType {
    if addr.is_unspecified() {
        AddrType::Any
    } else if addr.to_ipv4_mapped().is_some() {
        AddrType::Mapped
    } else {
        AddrType::Other
    }
}

/// `ipv4_rcv_saddr_equal()`. A wildcard side matches anything only if its
/// `match_*_wildcard` flag allows; a V6ONLY `sk2` never matches.
pub(crate) fn ipv4_rcv_saddr_equal(
    sk1: Ipv4Addr,
    sk2: Ipv4Addr,
    sk2_ipv6only: bool,
    match_sk1_wildcard: bool,
    match_sk2_wildcard: bool,
) -> bool {
    if sk2_ipv6only {
        return false;
    }
    sk1 == sk2
        || (match_sk1_wildcard && sk1.is_unspecified())
        || (match_sk2_wildcard && sk2.is_unspecified())
}

/// `ipv6_rcv_saddr_equal()`. `sk2_v6` is `None` for an AF_INET `sk2`.
#[allow(clippy::too_many_arguments)] // the kernel function's own parameter list
pub(crate) fn ipv6_rcv_saddr_equal(
    sk1_v6: Ipv6Addr,
    sk2_v6: Option<Ipv6Addr>,
    sk1_v4: Ipv4Addr,
    sk2_v4: Ipv4Addr,
    sk1_ipv6only: bool,
    sk2_ipv6only: bool,
    match_sk1_wildcard: bool,
    match_sk2_wildcard: bool,
) -> bool {
    let type1 = addr_type(&sk1_v6);
    let type2 = sk2_v6.map_or(AddrType::Mapped, |a| addr_type(&a));
    if type1 == AddrType::Mapped && type2 == AddrType::Mapped {
        return ipv4_rcv_saddr_equal(
            sk1_v4,
            sk2_v4,
            sk2_ipv6only,
            match_sk1_wildcard,
            match_sk2_wildcard,
        );
    }
    if type1 == AddrType::Any && type2 == AddrType::Any {
        return true;
    }
    if type2 == AddrType::Any && match_sk2_wildcard && !(sk2_ipv6only && type1 == AddrType::Mapped)
    {
        return true;
    }
    if type1 == AddrType::Any && match_sk1_wildcard && !(sk1_ipv6only && type2 == AddrType::Mapped)
    {
        return true;
    }
    sk2_v6 == Some(sk1_v6)
}

/// `inet_rcv_saddr_equal(sk, sk2, match_wildcard)`: whether the local
/// addresses of `sk` and `sk2` overlap, seen from `sk`.
pub(crate) fn inet_rcv_saddr_equal(sk: &Sk, sk2: &Sk, match_wildcard: bool) -> bool {
    match sk.family {
        Family::Inet6 => ipv6_rcv_saddr_equal(
            sk.v6,
            sk2.inet6_rcv_saddr(),
            sk.v4,
            sk2.v4,
            sk.ipv6only,
            sk2.ipv6only,
            match_wildcard,
            match_wildcard,
        ),
        Family::Inet => {
            ipv4_rcv_saddr_equal(sk.v4, sk2.v4, sk2.ipv6only, match_wildcard, match_wildcard)
        }
    }
}

/// The address and owner a Linux bind bucket remembers in
/// `FASTREUSEPORT_STRICT` state (`fastuid`, `fast_rcv_saddr`,
/// `fast_v6_rcv_saddr`, `fast_sk_family`, `fast_ipv6_only`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FastOwner {
    pub(crate) uid: u32,
    pub(crate) sk: Sk,
}

impl FastOwner {
    /// The address test of `sk_reuseport_match()`: the fast address covers
    /// `sk`'s (a wildcard fast address covers any address it overlaps; a
    /// wildcard `sk` is covered only by an equal wildcard).
    pub(crate) fn covers(&self, sk: &Sk) -> bool {
        let fast = &self.sk;
        match fast.family {
            Family::Inet6 => ipv6_rcv_saddr_equal(
                fast.v6,
                sk.inet6_rcv_saddr(),
                fast.v4,
                sk.v4,
                fast.ipv6only,
                sk.ipv6only,
                true,
                false,
            ),
            Family::Inet => ipv4_rcv_saddr_equal(fast.v4, sk.v4, sk.ipv6only, true, false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sk(family: Family, addr: &str, ipv6only: bool) -> Sk {
        let ip: IpAddr = addr.parse().unwrap();
        let (v6, v4) = match ip.to_canonical() {
            IpAddr::V4(a) => (a.to_ipv6_mapped(), a),
            IpAddr::V6(a) if a.is_unspecified() => (a, Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(a) => (a, LOOPBACK4_IPV6),
        };
        Sk {
            family,
            v6,
            v4,
            ipv6only,
        }
    }

    #[test]
    fn the_ipv4_wildcard_overlaps_a_connected_ipv6_socket_but_the_mapped_wildcard_does_not() {
        // An AF_INET6 connection on ::1 without V6ONLY: its rcv_saddr is the
        // 127.0.0.6 placeholder, which the IPv4 wildcard matches.
        let conn = sk(Family::Inet6, "::1", false);
        assert!(inet_rcv_saddr_equal(
            &sk(Family::Inet, "0.0.0.0", false),
            &conn,
            true
        ));
        assert!(!inet_rcv_saddr_equal(
            &sk(Family::Inet6, "::ffff:0.0.0.0", false),
            &conn,
            true
        ));
        // Bound to ::1 explicitly, the kernel forces V6ONLY: no overlap.
        let bound = sk(Family::Inet6, "::1", true);
        assert!(!inet_rcv_saddr_equal(
            &sk(Family::Inet, "0.0.0.0", false),
            &bound,
            true
        ));
    }

    #[test]
    fn two_any_addresses_overlap_whatever_their_v6only() {
        let only = sk(Family::Inet6, "::", true);
        let dual = sk(Family::Inet6, "::", false);
        assert!(inet_rcv_saddr_equal(&only, &dual, true));
        assert!(inet_rcv_saddr_equal(&dual, &only, true));
        assert!(inet_rcv_saddr_equal(&only, &only, false));
        // A V6ONLY :: does not reach IPv4 sockets, in either direction.
        let v4 = sk(Family::Inet, "127.0.0.1", false);
        assert!(!inet_rcv_saddr_equal(&only, &v4, true));
        assert!(!inet_rcv_saddr_equal(&v4, &only, true));
    }

    #[test]
    fn mapped_wildcard_counts_as_a_wildcard_for_the_bucket_choice() {
        assert!(!sk(Family::Inet6, "::ffff:0.0.0.0", false).is_specific());
        assert!(!sk(Family::Inet6, "::", true).is_specific());
        assert!(sk(Family::Inet6, "::ffff:127.0.0.1", false).is_specific());
        assert!(sk(Family::Inet6, "::1", true).is_specific());
        let mapped_any = sk(Family::Inet6, "::ffff:0.0.0.0", false);
        assert!(sk(Family::Inet, "127.0.0.1", false).checks_wildcard_bucket_of(&mapped_any));
        assert!(!sk(Family::Inet6, "::1", true).checks_wildcard_bucket_of(&mapped_any));
        assert!(
            sk(Family::Inet6, "::1", true).checks_wildcard_bucket_of(&sk(
                Family::Inet6,
                "::",
                true
            ))
        );
    }

    #[test]
    fn a_strict_fast_owner_covers_from_its_side_only() {
        let fast = FastOwner {
            uid: 0,
            sk: sk(Family::Inet, "0.0.0.0", false),
        };
        assert!(fast.covers(&sk(Family::Inet, "127.0.0.1", false)));
        let fast = FastOwner {
            uid: 0,
            sk: sk(Family::Inet, "127.0.0.1", false),
        };
        assert!(!fast.covers(&sk(Family::Inet, "0.0.0.0", false)));
        assert!(fast.covers(&sk(Family::Inet6, "::ffff:127.0.0.1", false)));
    }
}
