//! FreeBSD 14/15 rules, read from `sys/netinet/in_pcb.c`,
//! `sys/netinet6/in6_pcb.c` and `tcp_usrreq.c`: `in_pcbbind_avail`,
//! `in6_pcbbind_avail`, `in_pcblookup_local`, `in_pcb_lport_dest`,
//! `in_pcbconnect`, `in_pcblookup_hash_locked`, `in_pcbinslbgrouphash`.

use std::net::{IpAddr, SocketAddr};

use pcbhash::{Error, State};

use crate::addrs::{canonical, shown, Ep, V4_ANY, V6_ANY};
use crate::state::{choose, family_check, source_for, Expect, Group, MResult, Model, Rec};

/// The order of the wildcard hash chain (`_in_pcbinshash_wild` and
/// `_in6_pcbinshash_wild`, no jails): PCBs with a specific local address at
/// the head, newest first; then unbound PCBs, each inserted before the first
/// unbound entry (newest first); unbound IPv4-mapped PCBs of IPv6 sockets are
/// appended at the tail (oldest first).
fn chain_key(r: &Rec) -> (u8, i64) {
    let seq = r.seq as i64;
    if !r.is_wild() {
        (0, -seq)
    } else if r.inet6 && r.local.0.is_ipv4() {
        (2, seq)
    } else {
        (1, -seq)
    }
}

fn first_in_chain<'a>(it: impl Iterator<Item = (usize, &'a Rec)>) -> Option<usize> {
    it.min_by_key(|(_, r)| chain_key(r)).map(|(i, _)| i)
}

/// The reuse options as `so_options` bits.
const RA: u8 = 1;
const RP: u8 = 2;
const LB: u8 = 4;

fn so_options(r: &Rec) -> u8 {
    (if r.ra { RA } else { 0 }) | (if r.rp { RP } else { 0 }) | (if r.lb { LB } else { 0 })
}

/// The cost `in_pcblookup_local(..., INPLOOKUP_WILDCARD)` gives `r` for
/// `laddr`, seen from IPv4 when `v4`, or `None` if it does not fit: +3 for a
/// dual-stack PCB seen from IPv4 (`INP_LOOKUP_MAPPED_PCB_COST`), +1 if
/// connected, +1 if exactly one side is a wildcard.
fn fit_cost(r: &Rec, laddr: IpAddr, v4: bool) -> Option<u32> {
    let mut cost = 0;
    if v4 && r.takes_v6() {
        cost += 3;
    }
    if r.connected() {
        cost += 1;
    }
    let own = if v4 { r.v4_laddr() } else { r.local.0 };
    if !own.is_unspecified() {
        if laddr.is_unspecified() {
            cost += 1;
        } else if own != laddr {
            return None;
        }
    } else if !laddr.is_unspecified() {
        cost += 1;
    }
    Some(cost)
}

/// The PCBs on `lport` that `laddr`'s family can see (`INP_IPV4` or `INP_IPV6`).
fn on_port(m: &Model, laddr: IpAddr, lport: u16) -> impl Iterator<Item = (usize, &Rec)> {
    let v4 = laddr.is_ipv4();
    let freebsd = m.freebsd();
    m.live().filter(move |(_, r)| {
        r.local.1 == lport
            && if v4 {
                r.takes_v4_for(freebsd)
            } else {
                r.takes_v6()
            }
    })
}

/// Every candidate `in_pcblookup_local()` could return, before ties are
/// broken: the unconnected PCBs on exactly `laddr`, or the best-fitting ones.
fn local_candidates(
    m: &Model,
    laddr: IpAddr,
    lport: u16,
    wildcard: bool,
) -> Vec<(u32, &Rec, usize)> {
    let v4 = laddr.is_ipv4();
    let fits = on_port(m, laddr, lport).filter_map(|(i, r)| {
        if wildcard {
            fit_cost(r, laddr, v4).map(|cost| (cost, r, i))
        } else {
            let own = if v4 { r.v4_laddr() } else { r.local.0 };
            (r.unconnected_in_table() && own == laddr).then_some((0, r, i))
        }
    });
    let all: Vec<_> = fits.collect();
    let best = all.iter().map(|(cost, _, _)| *cost).min();
    all.into_iter()
        .filter(|(cost, _, _)| Some(*cost) == best)
        .collect()
}

/// `in_pcblookup_local()` (IPv4 when `laddr` is): ties go to the wild chain's
/// order (exact mode) or to the newest PCB (best fit).
pub(crate) fn local_v4(m: &Model, laddr: IpAddr, lport: u16, wildcard: bool) -> Option<usize> {
    local_pick(m, laddr, lport, wildcard)
}

/// `in6_pcblookup_local()`: the same over PCBs with `INP_IPV6`, without the
/// mapped cost.
pub(crate) fn local_v6(m: &Model, laddr: IpAddr, lport: u16, wildcard: bool) -> Option<usize> {
    local_pick(m, laddr, lport, wildcard)
}

fn local_pick(m: &Model, laddr: IpAddr, lport: u16, wildcard: bool) -> Option<usize> {
    let ties = local_candidates(m, laddr, lport, wildcard);
    if wildcard {
        ties.into_iter()
            .max_by_key(|(_, r, _)| r.seq)
            .map(|(_, _, i)| i)
    } else {
        first_in_chain(ties.into_iter().map(|(_, r, i)| (i, r)))
    }
}

/// Every PCB tied for `lookup_local`'s answer, for rule sets that do not fix
/// the order of ties.
pub(crate) fn lookup_local_ties(m: &Model, local: Ep, wildcard: bool) -> Vec<usize> {
    local_candidates(m, local.0, local.1, wildcard)
        .into_iter()
        .map(|(_, _, i)| i)
        .collect()
}

pub(crate) fn lookup_local(m: &Model, local: Ep, wildcard: bool) -> Expect {
    let found = if local.0.is_ipv4() {
        local_v4(m, local.0, local.1, wildcard)
    } else {
        local_v6(m, local.0, local.1, wildcard)
    };
    found.map_or(Expect::None, Expect::One)
}

/// The reuse mask `in_pcbbind_avail` tests against the other PCB's options.
fn reuse_mask(n: &Rec, multicast: bool) -> u8 {
    let mut mask = if n.rp { RP } else { 0 } | if n.lb { LB } else { 0 };
    if multicast {
        if n.ra || n.rp {
            mask |= RA | RP;
        }
        if n.ra || n.lb {
            mask |= RA | LB;
        }
    }
    mask
}

fn uid_conflict(m: &Model, n: &Rec, t: Option<usize>) -> bool {
    t.is_some_and(|t| {
        let t = &m.recs[t];
        (!m.tcp() || !t.connected()) && t.cred.uid != n.cred.uid
    })
}

/// `in_pcbbind_avail()`, IPv4 (§4.4 of the notes).
fn avail_v4(m: &Model, n: &Rec, laddr: IpAddr, lport: u16) -> MResult<()> {
    let mc = laddr.is_multicast();
    if !mc && !n.cred.privileged && uid_conflict(m, n, local_v4(m, laddr, lport, true)) {
        return Err(Error::AddrInUse.into());
    }
    let wild = so_options(n) == 0;
    if let Some(t) = local_v4(m, laddr, lport, wild) {
        let t = &m.recs[t];
        if reuse_mask(n, mc) & so_options(t) == 0 {
            let waived =
                laddr.is_unspecified() && t.v4_laddr().is_unspecified() && n.inet6 && t.inet6;
            if !waived {
                return Err(Error::AddrInUse.into());
            }
        }
    }
    Ok(())
}

/// `in6_pcbbind_avail()` (§4.5 of the notes).
fn avail_v6(m: &Model, n: &Rec, laddr: IpAddr, lport: u16) -> MResult<()> {
    let mc = laddr.is_multicast();
    let dual = !n.v6only && laddr == V6_ANY;
    if !mc && !n.cred.privileged {
        if uid_conflict(m, n, local_v6(m, laddr, lport, true)) {
            return Err(Error::AddrInUse.into());
        }
        if dual && uid_conflict(m, n, local_v4(m, V4_ANY, lport, true)) {
            return Err(Error::AddrInUse.into());
        }
    }
    let wild = so_options(n) == 0;
    let mask = reuse_mask(n, mc);
    if let Some(t) = local_v6(m, laddr, lport, wild) {
        if mask & so_options(&m.recs[t]) == 0 {
            return Err(Error::AddrInUse.into());
        }
    }
    if dual {
        if let Some(t) = local_v4(m, V4_ANY, lport, wild) {
            let t = &m.recs[t];
            if mask & so_options(t) == 0 && (!t.v4_laddr().is_unspecified() || t.inet6) {
                return Err(Error::AddrInUse.into());
            }
        }
    }
    Ok(())
}

/// Whether `port` is taken for a bind(port 0) of `n` on `laddr`
/// (`in_pcb_lport_dest` without a foreign address).
fn bind_port_busy(m: &Model, n: &Rec, laddr: IpAddr, port: u16) -> bool {
    let wild = so_options(n) == 0;
    if laddr.is_ipv4() {
        local_v4(m, laddr, port, wild).is_some()
    } else {
        local_v6(m, laddr, port, wild).is_some()
            || (laddr == V6_ANY && !n.v6only && local_v4(m, V4_ANY, port, wild).is_some())
    }
}

fn ephemeral_for_bind(m: &Model, n: &Rec, laddr: IpAddr, pick: Option<u16>) -> MResult<u16> {
    let free: Vec<u16> = m
        .range_ports()
        .filter(|&p| !bind_port_busy(m, n, laddr, p))
        .collect();
    if free.is_empty() {
        return Err(Error::AddrNotAvailable.into());
    }
    choose(&free, pick, "FreeBSD in_pcb_lport")
}

/// The sockaddr's family: `tcp_usr_*` / `tcp6_usr_*` check `sa_family`
/// first (EAFNOSUPPORT); for UDP an IPv6 socket given a `sockaddr_in` fails
/// the length check (EINVAL).
fn family(m: &Model, inet6: bool, addr: SocketAddr) -> MResult<()> {
    if m.tcp() && inet6 != addr.is_ipv6() {
        return Err(Error::FamilyNotSupported.into());
    }
    family_check(inet6, addr)
}

pub(crate) fn bind(
    m: &mut Model,
    id: usize,
    addr: SocketAddr,
    pick: Option<u16>,
) -> MResult<SocketAddr> {
    let n = m.recs[id].clone();
    family(m, n.inet6, addr)?;
    let ep = canonical(addr);
    // tcp6_usr_bind takes a v4-mapped address as IPv4 only without V6ONLY;
    // with it, in6_pcbbind_avail finds no interface with that address.
    let mapped_v6only = addr.is_ipv6() && ep.0.is_ipv4() && n.v6only;
    // tcp_usr_bind / tcp6_usr_bind: no multicast for TCP.
    if m.tcp() && ep.0.is_multicast() && !mapped_v6only {
        return Err(Error::FamilyNotSupported.into());
    }
    if n.state != State::Closed {
        return Err(Error::InvalidInput.into());
    }
    if mapped_v6only {
        return Err(Error::AddrNotAvailable.into());
    }
    if ep.1 != 0 && ep.1 < 1024 && !n.cred.privileged {
        return Err(Error::PermissionDenied.into());
    }
    let port = if ep.1 != 0 {
        if ep.0.is_ipv4() {
            avail_v4(m, &n, ep.0, ep.1)?;
        } else {
            avail_v6(m, &n, ep.0, ep.1)?;
        }
        ep.1
    } else {
        ephemeral_for_bind(m, &n, ep.0, pick)?
    };
    m.enter(id, (ep.0, port), State::Bound);
    join_group(m, id);
    Ok(shown(m.recs[id].local, n.inet6))
}

pub(crate) fn listen(m: &mut Model, id: usize, pick: Option<u16>) -> MResult<()> {
    let n = m.recs[id].clone();
    match n.state {
        State::Listen => return Ok(()),
        State::Bound => {}
        State::Closed => {
            let any = if n.inet6 { V6_ANY } else { V4_ANY };
            let port = ephemeral_for_bind(m, &n, any, pick)?;
            m.enter(id, (any, port), State::Bound);
            join_group(m, id);
        }
        _ => return Err(Error::InvalidInput.into()),
    }
    m.recs[id].state = State::Listen;
    // in_pcblisten(): a pending load-balance member becomes active; a PCB
    // that was not a member when it entered the hash joins nothing.
    m.recs[id].pending = false;
    Ok(())
}

pub(crate) fn connect(
    m: &mut Model,
    id: usize,
    peer: SocketAddr,
    pick: Option<u16>,
) -> MResult<SocketAddr> {
    // soconnectat(): a connected UDP socket is disconnected first, whatever
    // comes next.
    if !m.tcp() && m.recs[id].state == State::Connected {
        disconnect(m, id)?;
    }
    let n = m.recs[id].clone();
    match n.state {
        State::Connected | State::TimeWait => return Err(Error::AlreadyConnected.into()),
        State::Dropped => return Err(Error::InvalidInput.into()),
        State::Closed | State::Bound | State::Listen => {}
    }
    family(m, n.inet6, peer)?;
    let mut rep = canonical(peer);
    let mapped = peer.is_ipv6() && rep.0.is_ipv4();
    let broadcast = rep.0 == IpAddr::V4(std::net::Ipv4Addr::BROADCAST);
    // tcp_usr_connect: multicast, then INADDR_BROADCAST (EACCES);
    // tcp6_usr_connect: an IPv6 multicast peer, then SOLISTENING, then the
    // mapped checks.
    if m.tcp() && !mapped && rep.0.is_multicast() {
        return Err(Error::FamilyNotSupported.into());
    }
    if m.tcp() && !n.inet6 && broadcast {
        return Err(Error::PermissionDenied.into());
    }
    if n.state == State::Listen {
        return Err(Error::NotSupported.into());
    }
    if mapped && n.v6only {
        return Err(Error::InvalidInput.into());
    }
    // A bound PCB whose vflag lacks the peer's family (INP_IPV4 / INP_IPV6).
    if n.state == State::Bound
        && !(if rep.0.is_ipv4() {
            n.takes_v4()
        } else {
            n.takes_v6()
        })
    {
        return Err(Error::FamilyNotSupported.into());
    }
    if m.tcp() && mapped && rep.0.is_multicast() {
        return Err(Error::FamilyNotSupported.into());
    }
    if m.tcp() && mapped && broadcast {
        return Err(Error::PermissionDenied.into());
    }
    if m.tcp() && n.lb {
        return Err(Error::NotSupported.into());
    }
    if rep.1 == 0 {
        return Err(Error::AddrNotAvailable.into());
    }
    // in_pcbconnect(): 0.0.0.0 and 255.255.255.255 need
    // net.inet.ip.connect_inaddr_wild (off); in6_pcbladdr(): :: is ::1 under
    // net.inet6.ip6.connect_in6addr_wild (on).
    if rep.0 == V4_ANY || broadcast {
        return Err(Error::NetworkUnreachable.into());
    }
    if rep.0 == V6_ANY {
        rep.0 = IpAddr::V6(std::net::Ipv6Addr::LOCALHOST);
    }
    let laddr = if n.state == State::Bound && !n.is_wild() {
        n.local.0
    } else {
        source_for(rep.0).ok_or(Error::NetworkUnreachable)?
    };
    let port = if n.state == State::Closed {
        // in_pcb_lport_dest(..., INPLOOKUP_WILDCARD): a port is taken when a
        // packet from the peer to (laddr, port) would find any PCB.
        let free: Vec<u16> = m
            .range_ports()
            .filter(|&p| lookup_hit(m, (laddr, p), rep).is_none())
            .collect();
        if free.is_empty() {
            return Err(Error::AddrNotAvailable.into());
        }
        choose(&free, pick, "FreeBSD in_pcb_lport_dest")?
    } else {
        let port = n.local.1;
        if m.live()
            .any(|(_, r)| r.connected() && r.local == (laddr, port) && r.remote == Some(rep))
        {
            return Err(Error::AddrInUse.into());
        }
        port
    };
    if n.state == State::Closed {
        m.enter(id, (laddr, port), State::Connected);
    } else {
        leave_group(m, id);
        let r = &mut m.recs[id];
        r.local = (laddr, port);
        r.state = State::Connected;
    }
    m.recs[id].remote = Some(rep);
    Ok(shown(m.recs[id].local, n.inet6))
}

pub(crate) fn disconnect(m: &mut Model, id: usize) -> MResult<()> {
    let n = m.recs[id].clone();
    if n.state != State::Connected {
        return Err(Error::NotConnected.into());
    }
    // in_pcbdisconnect(): the local address is zeroed, the port kept, and
    // the PCB leaves the hash (in_pcbremhash_locked); it comes back through
    // in_pcbinshash, as the newest PCB of its port.
    let any = if n.local.0.is_ipv4() { V4_ANY } else { V6_ANY };
    leave_group(m, id);
    let seq = m.tick();
    let r = &mut m.recs[id];
    r.remote = None;
    r.local = (any, n.local.1);
    r.state = State::Bound;
    r.seq = seq;
    join_group(m, id);
    Ok(())
}

/// `in_pcbinslbgrouphash()`.
pub(crate) fn join_group(m: &mut Model, id: usize) {
    let r = m.recs[id].clone();
    if !r.lb || !r.in_table() || r.group.is_some() {
        return;
    }
    // A connected UDP PCB only receives from its peer (so_reuseport_lb_test
    // connect_udp).
    if !m.tcp() && r.connected() {
        return;
    }
    // "Don't allow IPv4 mapped INET6 wild socket."
    if r.inet6 && r.takes_v4() && r.v4_laddr().is_unspecified() {
        return;
    }
    let members = |m: &Model, gid: u64| {
        m.recs
            .iter()
            .filter(|x| x.group == Some(gid) && x.in_table())
            .count()
    };
    let found = m
        .groups
        .iter()
        .position(|g| g.inet6 == r.inet6 && g.laddr == r.local.0 && g.lport == r.local.1);
    let gid = match found {
        None => {
            let id_ = m.next_group;
            m.next_group += 1;
            let pos = -(m.tick() as i64);
            m.groups.push(Group {
                id: id_,
                inet6: r.inet6,
                laddr: r.local.0,
                lport: r.local.1,
                pos,
                size: 8,
            });
            id_
        }
        Some(g) => {
            let gid = m.groups[g].id;
            if members(m, gid) == m.groups[g].size {
                if m.groups[g].size >= 256 {
                    return;
                }
                // in_pcblbgroup_resize(): the new group goes to the head.
                m.groups[g].size *= 2;
                m.groups[g].pos = -(m.tick() as i64);
            }
            gid
        }
    };
    let pending = m.tcp() && r.state != State::Listen;
    let x = &mut m.recs[id];
    x.group = Some(gid);
    x.pending = pending;
}

/// Takes a record out of the table, and out of its load-balance group
/// (`in_pcbremhash_locked`).
pub(crate) fn remove(m: &mut Model, id: usize, state: State) {
    leave_group(m, id);
    m.recs[id].state = state;
}

/// `in_pcbremlbgrouphash()`: the group is freed with its last member.
///
/// FreeBSD frees it only when the last *active* member leaves with nothing
/// pending; a pending member leaving last leaves an empty group behind in
/// the bucket for good (a leak that would also shadow a wildcard group). The
/// model does not ask the table to copy that.
pub(crate) fn leave_group(m: &mut Model, id: usize) {
    let Some(gid) = m.recs[id].group.take() else {
        return;
    };
    m.recs[id].pending = false;
    if !m.recs.iter().any(|x| x.group == Some(gid)) {
        m.groups.retain(|g| g.id != gid);
    }
}

/// What `in_pcblookup_hash_locked(..., INPLOOKUP_WILDCARD)` finds past the
/// exact stage, or any hit including it.
fn lookup_hit(m: &Model, l: Ep, r: Ep) -> Option<()> {
    let exact = m
        .live()
        .any(|(_, p)| p.connected() && p.local == l && p.remote == Some(r));
    if exact || lookup_wild(m, l, r) != Expect::None {
        Some(())
    } else {
        None
    }
}

pub(crate) fn lookup_wild(m: &Model, l: Ep, _r: Ep) -> Expect {
    let v4 = l.0.is_ipv4();
    // in_pcblookup_lbgroup(): an exact group before a wildcard one; among
    // equals the last in the bucket (every group "lb_match"es without NUMA
    // domains and FIBs). An empty group ends the stage with nothing.
    let any = if v4 { V4_ANY } else { V6_ANY };
    let pick_group = |laddr: IpAddr| {
        m.groups
            .iter()
            .filter(|g| g.lport == l.1 && g.laddr == laddr)
            .max_by_key(|g| g.pos)
    };
    if let Some(g) = pick_group(l.0).or_else(|| pick_group(any)) {
        let members: Vec<usize> = m
            .live()
            .filter(|(_, r)| r.group == Some(g.id) && !r.pending)
            .map(|(i, _)| i)
            .collect();
        if let Some(group) = Expect::of(members) {
            return group;
        }
    }
    // in_pcblookup_hash_wild_locked(): a specific address, then IPv4
    // wildcards, then IPv6 sockets' wildcards (for IPv4 packets). Among equals
    // the first in the chain, as the lock-free path returns it.
    let rank = |r: &Rec| -> Option<u8> {
        if !r.unconnected_in_table() || r.local.1 != l.1 {
            return None;
        }
        if v4 {
            if !r.takes_v4() {
                return None;
            }
            // in_pcblookup_wild_match(): a wildcard PCB is a WILD match
            // before its address is compared (so also for a packet to
            // 0.0.0.0).
            // The packet path (in_pcblookup_hash_wild_smr) takes the first
            // match in the chain: a dual-stack :: ranks with 0.0.0.0 (it is
            // inserted by _in6_pcbinshash_wild before the first unbound
            // entry); only the v4-mapped wildcard sits at the tail.
            let own = r.v4_laddr();
            if own.is_unspecified() {
                Some(if r.inet6 && r.local.0.is_ipv4() { 1 } else { 2 })
            } else if own == l.0 {
                Some(3)
            } else {
                None
            }
        } else {
            if !r.takes_v6() {
                return None;
            }
            if r.local.0.is_unspecified() {
                Some(2)
            } else if r.local.0 == l.0 {
                Some(3)
            } else {
                None
            }
        }
    };
    let top = m.live().filter_map(|(_, r)| rank(r)).max();
    let Some(top) = top else {
        return Expect::None;
    };
    first_in_chain(m.live().filter(|(_, r)| rank(r) == Some(top))).map_or(Expect::None, Expect::One)
}
