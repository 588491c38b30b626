//! `bind(2)` and `listen(2)`: the conflict checks of `in_pcbbind_avail()`
//! and `in6_pcbbind_avail()`, the ephemeral port of a bind, and
//! `in_pcblisten()`.

use std::net::{IpAddr, SocketAddr};

use pcbhash::{Error, State};

use super::groups::join_group;
use super::local::{local_v4, local_v6};
use crate::addrs::{canonical, shown, V4_ANY, V6_ANY};
use crate::state::{choose, family_check, MResult, Model, Rec};

/// The reuse options as `so_options` bits.
const RA: u8 = 1;
const RP: u8 = 2;
const LB: u8 = 4;

fn so_options(r: &Rec) -> u8 {
    (if r.ra { RA } else { 0 }) | (if r.rp { RP } else { 0 }) | (if r.lb { LB } else { 0 })
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

/// The FIB the reuse check of `in_pcbbind_avail` / `in6_pcbbind_avail`
/// searches: the PCB's own with `INPBIND_FIB` (`bind_all_fibs` off),
/// `RT_ALL_FIBS` otherwise. The other-owner check, the IPv4 half of a
/// dual-stack `::` and the ephemeral port search every FIB.
fn own_fib(m: &Model, n: &Rec) -> Option<u32> {
    m.fibs_scoped.then_some(n.device)
}

/// `in_pcbbind_avail()`, IPv4 (§4.4 of the notes).
fn avail_v4(m: &Model, n: &Rec, laddr: IpAddr, lport: u16) -> MResult<()> {
    let mc = laddr.is_multicast();
    if !mc && !n.cred.privileged && uid_conflict(m, n, local_v4(m, laddr, lport, true, None)) {
        return Err(Error::AddrInUse.into());
    }
    let wild = so_options(n) == 0;
    if let Some(t) = local_v4(m, laddr, lport, wild, own_fib(m, n)) {
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
        if uid_conflict(m, n, local_v6(m, laddr, lport, true, None)) {
            return Err(Error::AddrInUse.into());
        }
        if dual && uid_conflict(m, n, local_v4(m, V4_ANY, lport, true, None)) {
            return Err(Error::AddrInUse.into());
        }
    }
    let wild = so_options(n) == 0;
    let mask = reuse_mask(n, mc);
    if let Some(t) = local_v6(m, laddr, lport, wild, own_fib(m, n)) {
        if mask & so_options(&m.recs[t]) == 0 {
            return Err(Error::AddrInUse.into());
        }
    }
    if dual {
        if let Some(t) = local_v4(m, V4_ANY, lport, wild, None) {
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
        local_v4(m, laddr, port, wild, None).is_some()
    } else {
        local_v6(m, laddr, port, wild, None).is_some()
            || (laddr == V6_ANY && !n.v6only && local_v4(m, V4_ANY, port, wild, None).is_some())
    }
}

fn ephemeral_for_bind(m: &Model, n: &Rec, laddr: IpAddr, pick: Option<u16>) -> MResult<u16> {
    let free: Vec<u16> = m
        .range_ports(n)?
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
pub(super) fn family(m: &Model, inet6: bool, addr: SocketAddr) -> MResult<()> {
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
