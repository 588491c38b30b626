//! FreeBSD's rules: `in_pcbbind_avail`, `in6_pcbbind_avail`, `in_pcb_lport_dest`,
//! `in_pcblookup_hash` and SO_REUSEPORT_LB groups (FreeBSD 14/15).
//!
//! Jails and FIBs are outside the table's knowledge: every PCB is in the same
//! prison and FIB, which is the case the kernel's tests exercise by default.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{best_fit, check_privilege, exact_unconnected, Af, Disconnect, GroupKey, PcbView};
use crate::addr::{Endpoint, Family};
use crate::error::Error;
use crate::flags::{Flags, State};
use crate::policy::Protocol;

/// FreeBSD's `connect(2)` to an unspecified or broadcast peer, as the
/// sysctls `net.inet.ip.connect_inaddr_wild` and
/// `net.inet6.ip6.connect_in6addr_wild` set it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConnectWild {
    /// `in_pcbconnect`: `0.0.0.0` and `255.255.255.255` are ENETUNREACH
    /// unless this is on (FreeBSD 15: off).
    pub(crate) inaddr: bool,
    /// `in6_pcbladdr`: `::` becomes `::1` when this is on (the default), and
    /// is ENETUNREACH otherwise.
    pub(crate) in6addr: bool,
}

impl Default for ConnectWild {
    fn default() -> Self {
        Self {
            inaddr: false,
            in6addr: true,
        }
    }
}

/// `tcp_usr_bind` / `tcp6_usr_bind` / `in_pcbbind` / `in6_pcbbind_avail`
/// checks before the conflict scan.
pub(crate) fn check_bind(
    protocol: Protocol,
    me: &PcbView,
    local: SocketAddr,
) -> Result<Endpoint, Error> {
    check_family(protocol, me, local)?;
    let endpoint = Endpoint::new(local);
    // `tcp6_usr_bind` takes a v4-mapped address as IPv4 only without
    // V6ONLY; with it, `in6_pcbbind_avail` looks the mapped address up
    // among the interfaces' (IPv6) addresses and finds none.
    let mapped_v6only = me.family == Family::Inet6 && endpoint.is_v4() && me.flags.v6only();
    if protocol == Protocol::Tcp && endpoint.ip.is_multicast() && !mapped_v6only {
        return Err(Error::FamilyNotSupported);
    }
    // `in_pcbbind`: "already bound" is EINVAL, as is any use after drop.
    if me.state() != State::Closed {
        return Err(Error::InvalidInput);
    }
    if mapped_v6only {
        return Err(Error::AddrNotAvailable);
    }
    check_privilege(&me.cred, endpoint.port)?;
    Ok(endpoint)
}

/// The sockaddr's family against the socket's.
///
/// `tcp_usr_bind` / `tcp_usr_connect` and `tcp6_usr_bind` /
/// `tcp6_usr_connect` check `sa_family` before `sa_len`: the wrong family is
/// EAFNOSUPPORT either way. For UDP, a `sockaddr_in` given to an IPv6 socket
/// fails the length check first (EINVAL).
fn check_family(protocol: Protocol, me: &PcbView, addr: SocketAddr) -> Result<(), Error> {
    match (me.family, addr, protocol) {
        (Family::Inet, SocketAddr::V4(_), _) | (Family::Inet6, SocketAddr::V6(_), _) => Ok(()),
        (Family::Inet6, SocketAddr::V4(_), Protocol::Udp) => Err(Error::InvalidInput),
        _ => Err(Error::FamilyNotSupported),
    }
}

/// The reuse bits that let `new` share with another PCB:
/// `(reuseport | reuseport_lb)` of `in_pcbbind_avail`, widened for multicast.
fn sharing_bits(new: &PcbView) -> Flags {
    let options = new.flags & Flags::REUSE_ANY;
    if new.local.ip.is_multicast() {
        let mut bits = Flags::EMPTY;
        if options.intersects(Flags::REUSEADDR | Flags::REUSEPORT) {
            bits = bits | Flags::REUSEADDR | Flags::REUSEPORT;
        }
        if options.intersects(Flags::REUSEADDR | Flags::REUSEPORT_LB) {
            bits = bits | Flags::REUSEADDR | Flags::REUSEPORT_LB;
        }
        bits
    } else {
        options & (Flags::REUSEPORT | Flags::REUSEPORT_LB)
    }
}

/// `in_pcblookup_local` in the mode `in_pcbbind_setup` picks: best fit
/// (`INPLOOKUP_WILDCARD`) when the binder set no reuse option, exact
/// unconnected match otherwise.
fn lookup_local<'a>(
    new: &PcbView,
    owners: &'a [PcbView],
    af: Af,
    local: &Endpoint,
) -> Option<&'a PcbView> {
    let candidates = owners.iter().map(|view| (*view, view));
    if new.flags.intersects(Flags::REUSE_ANY) {
        exact_unconnected(candidates, af, local).map(|(_, view)| view)
    } else {
        best_fit(candidates, af, local).map(|(_, view)| view)
    }
}

/// Row 3 of the decision table: an unprivileged binder may not share a port
/// with a PCB of another uid, whatever the options, except (for TCP) a
/// connected one with its own unique 4-tuple.
fn other_owner(
    protocol: Protocol,
    new: &PcbView,
    owners: &[PcbView],
    af: Af,
    local: &Endpoint,
) -> Result<(), Error> {
    let found = best_fit(owners.iter().map(|view| (*view, ())), af, local);
    match found {
        Some((t, ()))
            if (protocol != Protocol::Tcp || !t.is_connected()) && t.cred.uid != new.cred.uid =>
        {
            Err(Error::AddrInUse)
        }
        _ => Ok(()),
    }
}

/// FreeBSD `in_pcbbind_avail` (IPv4, and `Inet6` PCBs binding a v4-mapped
/// address) and `in6_pcbbind_avail` (IPv6).
pub(crate) fn bind_conflict(
    protocol: Protocol,
    new: &PcbView,
    owners: &[PcbView],
) -> Result<(), Error> {
    let local = new.local;
    if local.port == 0 {
        return Ok(());
    }
    let multicast = local.ip.is_multicast();
    let sharing = sharing_bits(new);
    let shares_with = |t: &PcbView| t.flags.intersects(sharing);
    if local.is_v4() {
        if !multicast && !new.cred.privileged {
            other_owner(protocol, new, owners, Af::V4, &local)?;
        }
        if let Some(t) = lookup_local(new, owners, Af::V4, &local) {
            // Two `Inet6` PCBs on the v4 wildcard do not conflict here; the
            // IPv6 check settles them.
            let waived = local.is_wildcard()
                && t.local_v4().is_wildcard()
                && new.family == Family::Inet6
                && t.family == Family::Inet6;
            if !shares_with(t) && !waived {
                return Err(Error::AddrInUse);
            }
        }
        return Ok(());
    }
    let dual = local.is_wildcard() && !new.flags.v6only();
    let v4_any = new.local_v4();
    if !multicast && !new.cred.privileged {
        other_owner(protocol, new, owners, Af::V6, &local)?;
        if dual {
            other_owner(protocol, new, owners, Af::V4, &v4_any)?;
        }
    }
    if let Some(t) = lookup_local(new, owners, Af::V6, &local) {
        if !shares_with(t) {
            return Err(Error::AddrInUse);
        }
    }
    if dual {
        if let Some(t) = lookup_local(new, owners, Af::V4, &v4_any) {
            // A plain IPv4 PCB on 0.0.0.0 does not block a dual-stack `::`.
            if !shares_with(t) && (!t.local_v4().is_wildcard() || t.family == Family::Inet6) {
                return Err(Error::AddrInUse);
            }
        }
    }
    Ok(())
}

/// `in_pcb_lport_dest` without a peer: a candidate port is taken when
/// `in_pcblookup_local` (in the binder's mode) finds anything on it.
pub(crate) fn bind_port_busy(new: &PcbView, owners: &[PcbView]) -> bool {
    let local = new.local;
    if local.is_v4() {
        return lookup_local(new, owners, Af::V4, &local).is_some();
    }
    lookup_local(new, owners, Af::V6, &local).is_some()
        || (new.takes_v4() && lookup_local(new, owners, Af::V4, &new.local_v4()).is_some())
}

/// `soconnectat`, `tcp_usr_connect` / `tcp6_usr_connect` / `udp_connect`
/// and `in_pcbconnect` / `in6_pcbladdr` checks, in the kernel's order.
/// Returns the peer the PCB connects to: an unspecified peer may stand for
/// a local address (see [`unspecified_peer`]).
pub(crate) fn check_connect(
    protocol: Protocol,
    wild: ConnectWild,
    me: &PcbView,
    remote: SocketAddr,
) -> Result<Endpoint, Error> {
    // `soconnectat`: a connected TCP socket is EISCONN before the protocol
    // looks at anything (a UDP one was disconnected before this call).
    match me.state() {
        State::Connected | State::TimeWait => return Err(Error::AlreadyConnected),
        State::Dropped => return Err(Error::InvalidInput),
        State::Closed | State::Bound | State::Listen => {}
    }
    check_family(protocol, me, remote)?;
    let peer = Endpoint::new(remote);
    let mapped = me.family == Family::Inet6 && peer.is_v4();
    if protocol == Protocol::Tcp {
        // `tcp_usr_connect`: "Must disallow TCP ``connections'' to multicast
        // addresses", then the limited broadcast address is EACCES;
        // `tcp6_usr_connect` checks an IPv6 multicast peer there, and the
        // mapped ones after SOLISTENING.
        if !mapped && peer.ip.is_multicast() {
            return Err(Error::FamilyNotSupported);
        }
        if me.family == Family::Inet && is_limited_broadcast(&peer.ip) {
            return Err(Error::PermissionDenied);
        }
    }
    if me.state() == State::Listen {
        return Err(Error::NotSupported);
    }
    if me.family == Family::Inet6 {
        if mapped && me.flags.v6only() {
            return Err(Error::InvalidInput);
        }
        let bound = me.state() == State::Bound;
        if bound && ((mapped && !me.takes_v4()) || (!mapped && !me.takes_v6())) {
            return Err(Error::FamilyNotSupported);
        }
        if protocol == Protocol::Tcp && mapped {
            if peer.ip.is_multicast() {
                return Err(Error::FamilyNotSupported);
            }
            if is_limited_broadcast(&peer.ip) {
                return Err(Error::PermissionDenied);
            }
        }
    }
    if protocol == Protocol::Tcp && me.flags.reuse_port_lb() {
        // so_reuseport_lb_test: connect_not_bound / connect_bound.
        return Err(Error::NotSupported);
    }
    if peer.port == 0 {
        return Err(Error::AddrNotAvailable);
    }
    unspecified_peer(wild, peer)
}

/// `INADDR_BROADCAST`.
fn is_limited_broadcast(ip: &IpAddr) -> bool {
    *ip == IpAddr::V4(Ipv4Addr::BROADCAST)
}

/// The peer `connect()` uses for `peer`.
///
/// - IPv4 (`in_pcbconnect`): `0.0.0.0` and `255.255.255.255` are
///   ENETUNREACH unless `net.inet.ip.connect_inaddr_wild` is on; then
///   `0.0.0.0` stands for the host's first IPv4 address, which the table,
///   knowing no interfaces, takes to be `127.0.0.1` (a host whose loopback
///   came up first), and the broadcast address stays itself (the loopback
///   interface does not broadcast).
/// - IPv6 (`in6_pcbladdr`): `::` is `::1` while
///   `net.inet6.ip6.connect_in6addr_wild` is on, ENETUNREACH otherwise.
pub(crate) fn unspecified_peer(wild: ConnectWild, peer: Endpoint) -> Result<Endpoint, Error> {
    let ip = match peer.ip {
        IpAddr::V4(v4) if v4.is_unspecified() || v4 == Ipv4Addr::BROADCAST => {
            if !wild.inaddr {
                return Err(Error::NetworkUnreachable);
            }
            if v4.is_unspecified() {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            } else {
                peer.ip
            }
        }
        IpAddr::V6(v6) if v6.is_unspecified() => {
            if !wild.in6addr {
                return Err(Error::NetworkUnreachable);
            }
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        }
        ip => ip,
    };
    Ok(Endpoint { ip, ..peer })
}

/// `udp_disconnect` / `in_pcbdisconnect`: the local address goes back to the
/// wildcard, the port stays.
pub(crate) fn disconnect(me: &PcbView) -> Result<Disconnect, Error> {
    if me.state() != State::Connected {
        return Err(Error::NotConnected);
    }
    Ok(Disconnect {
        keep_addr: false,
        keep_port: true,
    })
}

/// `in_pcblookup_lbgroup`, then `in_pcblookup_hash_wild_smr`, the packet
/// path: the greatest key wins.
///
/// 1. A member (active or pending) of a load-balance group: a group on the
///    packet's address before a wildcard one; among equals the group last
///    in its bucket, which is the oldest: groups go in at the head when
///    created or resized (`in_pcblbgroup_alloc` callers,
///    `in_pcblbgroup_resize`), and the lookup keeps the last group that
///    `in_pcblookup_lb_match`es, which every group does for a packet
///    without a NUMA domain and a lookup over all FIBs.
/// 2. Then the first match in the wildcard chain (`_in_pcbinshash_wild`,
///    `_in6_pcbinshash_wild`): PCBs bound to the packet's address, newest
///    first; then wildcard PCBs, newest first, an `Inet` PCB on `0.0.0.0`
///    and a dual-stack `::` alike (the `INP_IPV6` one is inserted by the
///    IPv6 rule, before the first unbound entry); last the `Inet6` PCBs
///    bound to the v4-mapped wildcard, which the IPv4 rule appends at the
///    tail (oldest first).
///
/// The locked path (`in_pcblookup_hash_wild_locked`) would rank a
/// dual-stack `::` below `0.0.0.0`; packets take the lock-free path, which
/// falls back to the locked one only when a PCB changes under it.
pub(crate) fn wildcard_rank(candidate: &PcbView, local: &Endpoint) -> Option<(u32, u64)> {
    if !super::wild_match(candidate, local) {
        return None;
    }
    let exact = if local.is_v4() {
        !candidate.local_v4().is_wildcard()
    } else {
        !candidate.local.is_wildcard()
    };
    let grouped = candidate
        .flags
        .intersects(Flags::IN_GROUP | Flags::GROUP_PENDING);
    let oldest_first = |seq: u64| u64::MAX - seq;
    let key = if grouped {
        (
            if exact { 12 } else { 10 },
            oldest_first(candidate.group_seq),
        )
    } else if exact {
        (6, candidate.seq)
    } else if candidate.family == Family::Inet6 && candidate.local.is_v4() {
        (2, oldest_first(candidate.seq))
    } else {
        (4, candidate.seq)
    };
    Some(key)
}

/// `in_pcbinslbgrouphash`: SO_REUSEPORT_LB PCBs with the same address, port
/// and family share a group; a dual-stack `::` PCB joins none.
pub(crate) fn group_key(view: &PcbView) -> Option<GroupKey> {
    if !view.flags.reuse_port_lb() {
        return None;
    }
    if view.family == Family::Inet6 && view.local.is_wildcard() && view.takes_v4() {
        return None;
    }
    Some(GroupKey {
        family: view.family,
        v6only: false,
        uid: None,
        local: view.local,
    })
}

#[cfg(test)]
mod tests {
    //! Rows of the `in_pcbbind_avail` decision table, run on views alone.
    use super::*;
    use crate::pcb::Cred;

    fn view(family: Family, local: &str, flags: Flags, uid: u32, seq: u64) -> PcbView {
        let addr: SocketAddr = local.parse().unwrap();
        let local = Endpoint::new(addr);
        PcbView {
            family,
            cred: Cred {
                uid,
                privileged: uid == 0,
            },
            flags: flags.with_state(State::Bound),
            local,
            remote: Endpoint::unspecified(family),
            seq,
            group_seq: 0,
        }
    }

    fn connected(mut v: PcbView, peer: &str) -> PcbView {
        v.remote = Endpoint::new(peer.parse().unwrap());
        v.flags = v.flags.with_state(State::Connected);
        v
    }

    use Family::{Inet, Inet6};
    const NONE: Flags = Flags::EMPTY;
    const RA: Flags = Flags::REUSEADDR;
    const RP: Flags = Flags::REUSEPORT;
    const LB: Flags = Flags::REUSEPORT_LB;
    const V6: Flags = Flags::V6ONLY;

    #[test]
    fn decision_table_rows() {
        let tcp = Protocol::Tcp;
        let udp = Protocol::Udp;
        // (protocol, existing, new, expected)
        let rows: Vec<(Protocol, PcbView, PcbView, Result<(), Error>)> = vec![
            // 4a: no options, any overlap blocks.
            (
                tcp,
                view(Inet, "0.0.0.0:80", NONE, 0, 1),
                view(Inet, "127.0.0.1:80", NONE, 0, 2),
                Err(Error::AddrInUse),
            ),
            (
                tcp,
                view(Inet, "127.0.0.1:80", NONE, 0, 1),
                view(Inet, "127.0.0.2:80", NONE, 0, 2),
                Ok(()),
            ),
            (
                tcp,
                connected(view(Inet, "127.0.0.1:80", NONE, 0, 1), "127.0.0.9:5"),
                view(Inet, "127.0.0.1:80", NONE, 0, 2),
                Err(Error::AddrInUse),
            ),
            // SO_REUSEADDR only: connected PCBs and wildcard/specific pairs no longer block...
            (
                tcp,
                connected(view(Inet, "127.0.0.1:80", NONE, 0, 1), "127.0.0.9:5"),
                view(Inet, "127.0.0.1:80", RA, 0, 2),
                Ok(()),
            ),
            (
                tcp,
                view(Inet, "0.0.0.0:80", NONE, 0, 1),
                view(Inet, "127.0.0.1:80", RA, 0, 2),
                Ok(()),
            ),
            // ...but an unconnected PCB on the same address does, whatever its options.
            (
                tcp,
                view(Inet, "127.0.0.1:80", RA, 0, 1),
                view(Inet, "127.0.0.1:80", RA, 0, 2),
                Err(Error::AddrInUse),
            ),
            // SO_REUSEPORT and SO_REUSEPORT_LB each need the same option on the other side.
            (
                tcp,
                view(Inet, "127.0.0.1:80", RP, 0, 1),
                view(Inet, "127.0.0.1:80", RP, 0, 2),
                Ok(()),
            ),
            (
                tcp,
                view(Inet, "127.0.0.1:80", LB, 0, 1),
                view(Inet, "127.0.0.1:80", RP, 0, 2),
                Err(Error::AddrInUse),
            ),
            (
                tcp,
                view(Inet, "127.0.0.1:80", LB, 0, 1),
                view(Inet, "127.0.0.1:80", LB, 0, 2),
                Ok(()),
            ),
            // 3: another uid, unprivileged binder: refused whatever the options.
            (
                tcp,
                view(Inet, "127.0.0.1:80", RP, 1000, 1),
                view(Inet, "127.0.0.1:80", RP, 1001, 2),
                Err(Error::AddrInUse),
            ),
            (
                tcp,
                view(Inet, "127.0.0.1:80", RP, 1000, 1),
                view(Inet, "127.0.0.1:80", RP, 1000, 2),
                Ok(()),
            ),
            // ...except a connected TCP PCB, which has its own 4-tuple.
            (
                tcp,
                connected(view(Inet, "127.0.0.1:80", NONE, 1000, 1), "127.0.0.9:5"),
                view(Inet, "127.0.0.1:80", RA, 1001, 2),
                Ok(()),
            ),
            (
                udp,
                connected(view(Inet, "127.0.0.1:80", NONE, 1000, 1), "127.0.0.9:5"),
                view(Inet, "127.0.0.1:80", RA, 1001, 2),
                Err(Error::AddrInUse),
            ),
            // Dual stack: plain 0.0.0.0 does not block a dual-stack ::, the reverse does.
            (
                tcp,
                view(Inet, "0.0.0.0:80", NONE, 0, 1),
                view(Inet6, "[::]:80", NONE, 0, 2),
                Ok(()),
            ),
            (
                tcp,
                view(Inet6, "[::]:80", NONE, 0, 1),
                view(Inet, "0.0.0.0:80", NONE, 0, 2),
                Err(Error::AddrInUse),
            ),
            (
                tcp,
                view(Inet6, "[::]:80", V6, 0, 1),
                view(Inet, "0.0.0.0:80", NONE, 0, 2),
                Ok(()),
            ),
            (
                tcp,
                view(Inet6, "[::]:80", V6, 0, 1),
                view(Inet6, "[::]:80", V6, 0, 2),
                Err(Error::AddrInUse),
            ),
            (
                tcp,
                view(Inet6, "[::1]:80", NONE, 0, 1),
                view(Inet, "127.0.0.1:80", NONE, 0, 2),
                Ok(()),
            ),
            // Multicast: SO_REUSEADDR shares with any reuse option.
            (
                udp,
                view(Inet, "224.0.0.1:80", RP, 0, 1),
                view(Inet, "224.0.0.1:80", RA, 0, 2),
                Ok(()),
            ),
            (
                udp,
                view(Inet, "224.0.0.1:80", NONE, 0, 1),
                view(Inet, "224.0.0.1:80", RA, 0, 2),
                Err(Error::AddrInUse),
            ),
        ];
        for (index, (protocol, existing, new, expected)) in rows.into_iter().enumerate() {
            assert_eq!(
                bind_conflict(protocol, &new, &[existing]),
                expected,
                "row {index}: {existing:?} then {new:?}"
            );
        }
    }

    #[test]
    fn lookup_rank_follows_the_lock_free_wildcard_chain() {
        let local = Endpoint::new("127.0.0.1:80".parse().unwrap());
        let grouped = |mut v: PcbView, group_seq: u64| {
            v.flags = v.flags | Flags::IN_GROUP;
            v.group_seq = group_seq;
            v
        };
        // From the best down: the older of two groups on the packet's
        // address, the newer one, a wildcard group, a bound PCB, the newer
        // then the older wildcard PCB (an `Inet` `0.0.0.0` and a dual-stack
        // `::` alike), then the v4-mapped wildcards, oldest first.
        let order = [
            grouped(view(Inet, "127.0.0.1:80", LB, 0, 1), 5),
            grouped(view(Inet6, "[::ffff:127.0.0.1]:80", LB, 0, 2), 9),
            grouped(view(Inet, "0.0.0.0:80", LB, 0, 3), 4),
            view(Inet, "127.0.0.1:80", NONE, 0, 4),
            view(Inet6, "[::]:80", NONE, 0, 6),
            view(Inet, "0.0.0.0:80", NONE, 0, 5),
            view(Inet6, "[::ffff:0.0.0.0]:80", NONE, 0, 7),
            view(Inet6, "[::ffff:0.0.0.0]:80", NONE, 0, 8),
        ];
        let keys: Vec<(u32, u64)> = order
            .iter()
            .map(|v| wildcard_rank(v, &local).expect("a match"))
            .collect();
        assert!(
            keys.windows(2).all(|w| w[0] > w[1]),
            "keys must fall in this order: {keys:?}"
        );
        let other = view(Inet, "127.0.0.2:80", NONE, 0, 9);
        assert_eq!(wildcard_rank(&other, &local), None);
    }
}
