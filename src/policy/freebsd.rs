//! FreeBSD's rules: `in_pcbbind_avail`, `in6_pcbbind_avail`, `in_pcb_lport_dest`,
//! `in_pcblookup_hash` and SO_REUSEPORT_LB groups (FreeBSD 14/15).
//!
//! Jails and FIBs are outside the table's knowledge: every PCB is in the same
//! prison and FIB, which is the case the kernel's tests exercise by default.

use std::net::SocketAddr;

use super::{best_fit, check_privilege, exact_unconnected, Af, Disconnect, GroupKey, PcbView};
use crate::addr::{Endpoint, Family};
use crate::error::Error;
use crate::flags::{Flags, State};
use crate::policy::Protocol;

/// `tcp_usr_bind` / `tcp6_usr_bind` / `in_pcbbind` checks before the conflict scan.
pub(crate) fn check_bind(
    protocol: Protocol,
    me: &PcbView,
    local: SocketAddr,
) -> Result<Endpoint, Error> {
    check_family(me, local)?;
    let endpoint = Endpoint::new(local);
    if me.family == Family::Inet6 && endpoint.is_v4() && me.flags.v6only() {
        return Err(Error::InvalidInput);
    }
    if protocol == Protocol::Tcp && endpoint.ip.is_multicast() {
        return Err(Error::FamilyNotSupported);
    }
    // `in_pcbbind`: "already bound" is EINVAL, as is any use after drop.
    if me.state() != State::Closed {
        return Err(Error::InvalidInput);
    }
    check_privilege(&me.cred, endpoint.port)?;
    Ok(endpoint)
}

/// `tcp6_usr_bind` / `tcp6_usr_connect` (and the UDP twins) check the
/// sockaddr's length before its family: a `sockaddr_in` given to an IPv6
/// socket is EINVAL. `tcp_usr_bind` / `tcp_usr_connect` check the family of
/// what an IPv4 socket is given: EAFNOSUPPORT.
fn check_family(me: &PcbView, addr: SocketAddr) -> Result<(), Error> {
    match (me.family, addr) {
        (Family::Inet, SocketAddr::V4(_)) | (Family::Inet6, SocketAddr::V6(_)) => Ok(()),
        (Family::Inet6, SocketAddr::V4(_)) => Err(Error::InvalidInput),
        (Family::Inet, SocketAddr::V6(_)) => Err(Error::FamilyNotSupported),
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

/// `tcp_usr_connect` / `udp_connect` and `in_pcbconnect_setup` checks.
pub(crate) fn check_connect(
    protocol: Protocol,
    me: &PcbView,
    remote: SocketAddr,
) -> Result<Endpoint, Error> {
    // `soconnectat` judges the socket's state before the protocol looks at
    // the address; `tcp_usr_connect` checks the address before the PCB.
    match me.state() {
        State::Listen => return Err(Error::NotSupported),
        State::Connected | State::TimeWait => return Err(Error::AlreadyConnected),
        State::Dropped => return Err(Error::InvalidInput),
        State::Closed | State::Bound => {}
    }
    check_family(me, remote)?;
    let peer = Endpoint::new(remote);
    if me.family == Family::Inet6 {
        if peer.is_v4() && me.flags.v6only() {
            return Err(Error::InvalidInput);
        }
        let bound = me.state() == State::Bound;
        if bound && ((peer.is_v4() && !me.takes_v4()) || (!peer.is_v4() && !me.takes_v6())) {
            return Err(Error::FamilyNotSupported);
        }
    }
    if protocol == Protocol::Tcp && peer.ip.is_multicast() {
        return Err(Error::FamilyNotSupported);
    }
    if protocol == Protocol::Tcp && me.flags.reuse_port_lb() {
        // so_reuseport_lb_test: connect_not_bound / connect_bound.
        return Err(Error::NotSupported);
    }
    if peer.port == 0 || peer.is_wildcard() {
        return Err(Error::AddrNotAvailable);
    }
    Ok(peer)
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

/// `in_pcblookup_lbgroup` then `in_pcblookup_hash_wild_*`: load-balance groups
/// first (specific address before wildcard), then bound PCBs with the packet's
/// address, then wildcard PCBs, then dual-stack `::` PCBs for IPv4 packets.
pub(crate) fn wildcard_rank(candidate: &PcbView, local: &Endpoint) -> Option<u32> {
    if !super::wild_match(candidate, local) {
        return None;
    }
    let exact = if local.is_v4() {
        !candidate.local_v4().is_wildcard()
    } else {
        !candidate.local.is_wildcard()
    };
    let rank = if candidate.flags.in_group() {
        if exact {
            12
        } else {
            10
        }
    } else if exact && candidate.flags.contains(Flags::GROUP_PENDING) {
        // A group on the packet's own address whose members all wait for
        // listen() still wins over a wildcard group: in_pcblookup_lbgroup()
        // picks it, finds no active member and returns nothing, and the
        // wildcard hash then finds the bound PCB with the packet's address.
        11
    } else if exact {
        6
    } else if local.is_v4() && candidate.family == Family::Inet6 {
        2
    } else {
        4
    };
    Some(rank)
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
    fn lookup_rank_prefers_groups_then_exact_then_wildcard_then_dual_stack() {
        let local = Endpoint::new("127.0.0.1:80".parse().unwrap());
        let exact = view(Inet, "127.0.0.1:80", NONE, 0, 1);
        let wild = view(Inet, "0.0.0.0:80", NONE, 0, 2);
        let dual = view(Inet6, "[::]:80", NONE, 0, 3);
        let mut grouped = view(Inet, "0.0.0.0:80", LB, 0, 4);
        grouped.flags = grouped.flags | Flags::IN_GROUP;
        let other = view(Inet, "127.0.0.2:80", NONE, 0, 5);
        let mut grouped_exact = view(Inet, "127.0.0.1:80", LB, 0, 6);
        grouped_exact.flags = grouped_exact.flags | Flags::IN_GROUP;
        // A member of a group on the packet's address that waits for
        // listen(): its (empty) group still shadows the wildcard group.
        let mut pending_exact = view(Inet, "127.0.0.1:80", LB, 0, 7);
        pending_exact.flags = pending_exact.flags | Flags::GROUP_PENDING;
        let order = [grouped_exact, pending_exact, grouped, exact, wild, dual];
        let ranks: Vec<u32> = order
            .iter()
            .map(|v| wildcard_rank(v, &local).expect("a match"))
            .collect();
        assert!(
            ranks.windows(2).all(|w| w[0] > w[1]),
            "ranks must fall in this order: {ranks:?}"
        );
        assert_eq!(wildcard_rank(&other, &local), None);
    }
}
