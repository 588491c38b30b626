//! How Linux sees a socket's local address: the IPv4 view of an IPv6
//! socket, `ipv6_only_sock()`, the overlap test of `inet_rcv_saddr_equal()`,
//! the other owners of a port, and the addresses that need a scope.

use std::net::{IpAddr, Ipv4Addr};

use crate::state::{Model, Rec};

/// `ipv6_only_sock()`: V6ONLY, or forced by a bind to a specific IPv6
/// address.
pub(super) fn v6only(r: &Rec) -> bool {
    r.inet6 && (r.v6only || r.forced_v6only)
}

/// `inet_rcv_saddr` of an IPv6 socket: `::` gives 0, a mapped address its
/// IPv4 address, a specific IPv6 address `LOOPBACK4_IPV6`.
pub(super) fn v4_view(r: &Rec) -> Ipv4Addr {
    match r.local.0 {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) if v6.is_unspecified() => Ipv4Addr::UNSPECIFIED,
        IpAddr::V6(_) => Ipv4Addr::new(127, 0, 0, 6),
    }
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Kind {
    Mapped,
    Any,
    Specific,
}

fn kind6(r: &Rec) -> Kind {
    match r.local.0 {
        IpAddr::V4(_) => Kind::Mapped,
        IpAddr::V6(v6) if v6.is_unspecified() => Kind::Any,
        IpAddr::V6(_) => Kind::Specific,
    }
}

/// `inet_rcv_saddr_equal(sk, sk2, match_wildcard = true)`.
pub(super) fn overlap(sk: &Rec, sk2: &Rec) -> bool {
    rcv_saddr_equal(sk, sk2, true)
}

/// `ipv4_rcv_saddr_equal()` / `ipv6_rcv_saddr_equal()` of `sk1`'s and
/// `sk2`'s addresses, `sk1`'s wildcard matching always and `sk2`'s only
/// with `match_sk2_wildcard`.
pub(super) fn rcv_saddr_equal(sk1: &Rec, sk2: &Rec, match_sk2_wildcard: bool) -> bool {
    let v4_equal = |sk1: &Rec, sk2: &Rec| {
        if v6only(sk2) {
            return false;
        }
        let (a, b) = (v4_view(sk1), v4_view(sk2));
        a == b || a.is_unspecified() || (match_sk2_wildcard && b.is_unspecified())
    };
    if !sk1.inet6 {
        return v4_equal(sk1, sk2);
    }
    let t1 = kind6(sk1);
    let t2 = if sk2.inet6 { kind6(sk2) } else { Kind::Mapped };
    if t1 == Kind::Mapped && t2 == Kind::Mapped {
        return v4_equal(sk1, sk2);
    }
    if t1 == Kind::Any && t2 == Kind::Any {
        return true;
    }
    if t2 == Kind::Any && match_sk2_wildcard && !(v6only(sk2) && t1 == Kind::Mapped) {
        return true;
    }
    if t1 == Kind::Any && !(v6only(sk1) && t2 == Kind::Mapped) {
        return true;
    }
    sk2.inet6 && t1 == Kind::Specific && t2 == Kind::Specific && sk1.local.0 == sk2.local.0
}

/// Whether two records contend for a port: their devices overlap (one of
/// them is bound to no device, or both to the same one: the test
/// `inet_bind_conflict` and `udp_lib_lport_inuse` make before anything
/// else) and so do their addresses.
pub(super) fn contends(sk: &Rec, sk2: &Rec) -> bool {
    (sk.device == 0 || sk2.device == 0 || sk.device == sk2.device) && overlap(sk, sk2)
}

/// The other PCBs holding `port`, newest first.
pub(super) fn owners(m: &Model, me: usize, port: u16) -> Vec<usize> {
    let mut v: Vec<usize> = m
        .live()
        .filter(|&(i, r)| i != me && r.local.1 == port)
        .map(|(i, _)| i)
        .collect();
    v.sort_by_key(|&i| std::cmp::Reverse(m.recs[i].seq));
    v
}

/// `__ipv6_addr_needs_scope_id`: link-local unicast (`fe80::/10`), or
/// multicast of interface-local or link-local scope.
pub(super) fn needs_scope(ip: IpAddr) -> bool {
    let IpAddr::V6(ip) = ip else {
        return false;
    };
    let first = ip.segments()[0];
    first & 0xffc0 == 0xfe80 || (first & 0xff00 == 0xff00 && matches!(first & 0xf, 1 | 2))
}
