//! `connect(2)` (`in_pcbconnect`, `in_pcb_lport_dest`) and the disconnect
//! of a datagram socket (`in_pcbdisconnect`).

use std::net::{IpAddr, SocketAddr};

use pcbhash::{Error, State};

use super::bind::family;
use super::groups::{join_group, leave_group};
use super::lookup::lookup_hit;
use crate::addrs::{canonical, shown, V4_ANY, V6_ANY};
use crate::state::{choose, source_for, MResult, Model};

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
            .range_ports(&n)?
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
