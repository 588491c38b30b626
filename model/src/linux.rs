//! Linux 6.18 rules, read from `net/ipv4/af_inet.c`, `net/ipv6/af_inet6.c`,
//! `inet_connection_sock.c` (`inet_csk_get_port`, `inet_bind_conflict`,
//! `inet_rcv_saddr_equal`, `inet_csk_find_open_port`), `inet_hashtables.c`
//! (`__inet_hash_connect`, `__inet_lookup_listener`,
//! `inet_reuseport_add_sock`) and `udp.c` (`udp_lib_lport_inuse`,
//! `udp_lib_get_port`, `__udp_disconnect`, `udp4_lib_lookup2`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use pcbhash::{Error, State};

use crate::addrs::{canonical, shown, Ep, V4_ANY, V6_ANY};
use crate::freebsd::source_for;
use crate::model::{choose, Expect, MResult, Model, ModelError, Rec};

/// `ipv6_only_sock()`: V6ONLY, or forced by a bind to a specific IPv6
/// address.
fn v6only(r: &Rec) -> bool {
    r.inet6 && (r.v6only || r.forced_v6only)
}

/// `inet_rcv_saddr` of an IPv6 socket: `::` gives 0, a mapped address its
/// IPv4 address, a specific IPv6 address `LOOPBACK4_IPV6`.
fn v4_view(r: &Rec) -> Ipv4Addr {
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
fn overlap(sk: &Rec, sk2: &Rec) -> bool {
    if !sk.inet6 {
        if v6only(sk2) {
            return false;
        }
        let (a, b) = (v4_view(sk), v4_view(sk2));
        return a == b || a.is_unspecified() || b.is_unspecified();
    }
    let t1 = kind6(sk);
    let t2 = if sk2.inet6 { kind6(sk2) } else { Kind::Mapped };
    if t1 == Kind::Mapped && t2 == Kind::Mapped {
        if v6only(sk2) {
            return false;
        }
        let (a, b) = (v4_view(sk), v4_view(sk2));
        return a == b || a.is_unspecified() || b.is_unspecified();
    }
    if t1 == Kind::Any && t2 == Kind::Any {
        return true;
    }
    if t2 == Kind::Any && !(v6only(sk2) && t1 == Kind::Mapped) {
        return true;
    }
    if t1 == Kind::Any && !(v6only(sk) && t2 == Kind::Mapped) {
        return true;
    }
    sk2.inet6 && t1 == Kind::Specific && t2 == Kind::Specific && sk.local.0 == sk2.local.0
}

/// The other PCBs holding `port`, newest first.
fn owners(m: &Model, me: usize, port: u16) -> Vec<usize> {
    let mut v: Vec<usize> = m
        .live()
        .filter(|&(i, r)| i != me && r.local.1 == port)
        .map(|(i, _)| i)
        .collect();
    v.sort_by_key(|&i| std::cmp::Reverse(m.recs[i].seq));
    v
}

/// `inet_bind_conflict()` with relax and reuseport_ok (explicit bind and the
/// re-check at listen()).
fn tcp_pair_conflict(n: &Rec, e: &Rec) -> bool {
    if n.ra && e.ra && e.state != State::Listen {
        return false;
    }
    !(n.rp && e.rp && (e.state == State::TimeWait || n.cred.uid == e.cred.uid))
}

fn tcp_explicit_conflict(m: &Model, id: usize, n: &Rec, port: u16) -> bool {
    owners(m, id, port).into_iter().any(|e| {
        let e = &m.recs[e];
        overlap(n, e) && tcp_pair_conflict(n, e)
    })
}

/// `udp_lib_get_port()` with a port (explicit bind), as the running kernel
/// decides it: the port's list is walked in order, and the first socket that
/// overlaps (and does not share by SO_REUSEADDR on both) decides. One that
/// would not share refuses the bind; the socket whose reuseport group the new
/// one would join (neither with SO_REUSEADDR) lets it through; any other
/// SO_REUSEPORT sharer is passed over.
fn udp_explicit_conflict(m: &Model, id: usize, n: &Rec, port: u16) -> bool {
    let mut list = owners(m, id, port);
    list.sort_by_key(|&i| m.recs[i].lpos);
    for e in list {
        let e = &m.recs[e];
        if (e.ra && n.ra) || !overlap(n, e) {
            continue;
        }
        if !(e.rp && n.rp && e.cred.uid == n.cred.uid) {
            return true;
        }
        let mate = e.inet6 == n.inet6 && v6only(e) == v6only(n) && e.local.0 == n.local.0;
        if mate && !e.ra && !n.ra {
            return false;
        }
    }
    false
}

/// `udp_lib_lport_inuse()` with a bitmap (autobind): every eligible owner but a
/// SO_REUSEPORT pair of one uid marks the port.
fn udp_autobind_busy(m: &Model, id: usize, n: &Rec, port: u16) -> bool {
    owners(m, id, port).into_iter().any(|e| {
        let e = &m.recs[e];
        let shares_port = e.rp && n.rp && e.cred.uid == n.cred.uid;
        let both_reuse = e.ra && n.ra;
        !both_reuse && overlap(n, e) && !shares_port
    })
}

/// `inet_csk_find_open_port()`: the classes of ports in the order they are
/// tried. Without SO_REUSEADDR: the ports at an odd offset from the range
/// start, then the even ones. With it: the lower half first, then the upper.
fn bind_classes(m: &Model, ra: bool) -> Vec<Vec<u16>> {
    let (low, high) = (u32::from(m.range.0), u32::from(m.range.1) + 1);
    let parity = |lo: u32, hi: u32| -> Vec<Vec<u16>> {
        let odd = (lo..hi)
            .filter(|p| (p - lo) % 2 == 1)
            .map(|p| p as u16)
            .collect();
        let even = (lo..hi)
            .filter(|p| (p - lo) % 2 == 0)
            .map(|p| p as u16)
            .collect();
        vec![odd, even]
    };
    if ra && high - low >= 4 {
        let half = low + (((high - low) >> 2) << 1);
        let mut v = parity(low, half);
        v.extend(parity(half, high));
        v
    } else {
        parity(low, high)
    }
}

/// The first class with a free port.
fn pick_from_classes(
    classes: Vec<Vec<u16>>,
    free: impl Fn(u16) -> bool,
    pick: Option<u16>,
    what: &str,
    exhausted: Error,
) -> MResult<u16> {
    for class in classes {
        let ok: Vec<u16> = class.into_iter().filter(|&p| free(p)).collect();
        if !ok.is_empty() {
            return choose(&ok, pick, what);
        }
    }
    Err(exhausted.into())
}

fn tcp_autobind(m: &Model, id: usize, n: &Rec, pick: Option<u16>) -> MResult<u16> {
    pick_from_classes(
        bind_classes(m, n.ra),
        |p| {
            owners(m, id, p)
                .into_iter()
                .all(|e| !overlap(n, &m.recs[e]))
        },
        pick,
        "Linux inet_csk_find_open_port",
        Error::AddrInUse,
    )
}

fn udp_autobind(
    m: &Model,
    id: usize,
    n: &Rec,
    pick: Option<u16>,
    exhausted: Error,
) -> MResult<u16> {
    let free: Vec<u16> = m
        .range_ports()
        .filter(|&p| !udp_autobind_busy(m, id, n, p))
        .collect();
    if free.is_empty() {
        return Err(exhausted.into());
    }
    choose(&free, pick, "Linux udp_lib_get_port")
}

/// Inserts into the listener (TCP) or hash2 (UDP) list: SO_REUSEPORT IPv6
/// sockets at the tail, the rest at the head; and joins a reuseport group.
fn hash_in(m: &mut Model, id: usize) {
    let r = m.recs[id].clone();
    if r.rp && r.inet6 {
        m.ltail += 1;
        m.recs[id].lpos = m.ltail;
    } else {
        m.lhead -= 1;
        m.recs[id].lpos = m.lhead;
    }
    if !r.rp {
        return;
    }
    let tcp = m.tcp();
    let mut peers: Vec<usize> = m
        .live()
        .filter(|&(i, e)| {
            i != id
                && (!tcp || e.state == State::Listen)
                && e.inet6 == r.inet6
                && v6only(e) == v6only(&r)
                && e.rp
                && e.cred.uid == r.cred.uid
                && e.local == r.local
        })
        .map(|(i, _)| i)
        .collect();
    // TCP: the listening list; UDP: the port's list, newest bind first.
    if tcp {
        peers.sort_by_key(|&i| m.recs[i].lpos);
    } else {
        peers.sort_by_key(|&i| std::cmp::Reverse(m.recs[i].seq));
    }
    let gid = match peers.first() {
        Some(&p) => match m.recs[p].lgroup {
            Some(g) => g,
            None => {
                let g = m.tick();
                m.recs[p].lgroup = Some(g);
                g
            }
        },
        None => m.tick(),
    };
    m.recs[id].lgroup = Some(gid);
}

pub(crate) fn bind(
    m: &mut Model,
    id: usize,
    addr: SocketAddr,
    pick: Option<u16>,
) -> MResult<SocketAddr> {
    let ep = m.check_family(id, addr)?;
    let mut n = m.recs[id].clone();
    let mapped = addr.is_ipv6() && ep.0.is_ipv4();
    if addr.is_ipv6() && !mapped && ep.0.is_multicast() && m.tcp() {
        return Err(Error::InvalidInput.into());
    }
    if ep.1 != 0 && ep.1 < 1024 && !n.cred.privileged {
        return Err(Error::PermissionDenied.into());
    }
    if n.state != State::Closed || n.local.1 != 0 {
        return Err(Error::InvalidInput.into());
    }
    // `ipv6_only_sock()`: also V6ONLY that an earlier bind to a specific
    // IPv6 address forced and a disconnect kept.
    if mapped && v6only(&n) {
        return Err(Error::InvalidInput.into());
    }
    // `__inet6_bind`: a link-local address needs a bound device.
    if needs_scope(ep.0) {
        return Err(Error::InvalidInput.into());
    }
    n.local = (ep.0, 0);
    // __inet6_bind(): `sk->sk_ipv6only = 1` for a specific IPv6 address; the
    // flag is the IPV6_V6ONLY option itself, so only setsockopt clears it (a
    // failed get_port() restores the value it had before).
    n.forced_v6only |= n.inet6 && ep.0.is_ipv6() && !ep.0.is_unspecified();
    let port = if ep.1 != 0 {
        let conflict = if m.tcp() {
            tcp_explicit_conflict(m, id, &n, ep.1)
        } else {
            udp_explicit_conflict(m, id, &n, ep.1)
        };
        if conflict {
            forget_address(m, id);
            return Err(Error::AddrInUse.into());
        }
        ep.1
    } else if m.tcp() {
        tcp_autobind(m, id, &n, pick).inspect_err(|_| forget_address(m, id))?
    } else {
        udp_autobind(m, id, &n, pick, Error::AddrInUse).inspect_err(|_| forget_address(m, id))?
    };
    // __inet6_bind() sets SOCK_BINDADDR_LOCK for any address type but ANY:
    // `::ffff:0.0.0.0` is MAPPED, so it counts as named. `sk_userlocks` is
    // only ever or-ed: an earlier named bind keeps it set.
    n.addr_locked |= !ep.0.is_unspecified() || mapped;
    n.source_bound = !ep.0.is_unspecified();
    n.port_locked = ep.1 != 0;
    n.connect_bind = false;
    m.recs[id] = n;
    m.enter(id, (ep.0, port), State::Bound);
    if m.tcp() {
        bucket_bound(m, id);
    } else {
        hash_in(m, id);
    }
    Ok(shown(m.recs[id].local, m.recs[id].inet6))
}

/// The live records at `local`: one Linux bind2 bucket.
fn bucket_mates(m: &Model, local: Ep) -> Vec<usize> {
    m.live()
        .filter(|(_, r)| r.local == local)
        .map(|(i, _)| i)
        .collect()
}

/// A TCP bind() or listen() put `id` on its address and port: that bucket is
/// held by bind() now, for every record in it, and so is the port.
fn bucket_bound(m: &mut Model, id: usize) {
    let local = m.recs[id].local;
    for i in bucket_mates(m, local) {
        m.recs[i].connect_bucket = false;
    }
    m.bind_held.insert(local.1);
}

/// `id` arrived at its address and port without bind(): it shares the
/// bucket already there, or starts one: connect-only when an unbound
/// connect() made it (`__inet_hash_connect`), otherwise as the port's bucket
/// is (`inet_bhash2_update_saddr`, `__inet_inherit_port`).
pub(crate) fn bucket_joined(m: &mut Model, id: usize, by_connect: bool) {
    let local = m.recs[id].local;
    let new_bucket = by_connect || !m.bind_held.contains(&local.1);
    let mate = bucket_mates(m, local).into_iter().find(|&i| i != id);
    m.recs[id].connect_bucket = mate.map_or(new_bucket, |i| m.recs[i].connect_bucket);
}

/// A TCP record left the bucket at `local` (closed, TIME_WAIT, or moved):
/// when every record still in it got its port from connect(), the bucket is
/// connect-only again (`inet_bind2_bucket_destroy`). A TIME_WAIT record is
/// still an owner, as the socket it was (`tw_connect_bind`).
pub(crate) fn bucket_left(m: &mut Model, local: Ep) {
    let mates = bucket_mates(m, local);
    if mates.iter().all(|&i| m.recs[i].connect_bind) {
        for i in mates {
            m.recs[i].connect_bucket = true;
        }
    }
}

/// A TCP record left `port`, or went to TIME_WAIT (`inet_put_port`): when
/// every record still on the port sits in a connect-only bucket, the port's
/// bucket forgets that bind() held it (`inet_bind_bucket_destroy`).
pub(crate) fn port_left(m: &mut Model, port: u16) {
    if m.live()
        .filter(|(_, r)| r.local.1 == port)
        .all(|(_, r)| r.connect_bucket)
    {
        m.bind_held.remove(&port);
    }
}

/// A bind() whose get_port() failed: `__inet_bind` / `__inet6_bind` stored
/// the new address first and now reset it to the wildcard
/// (`inet_reset_saddr`), also over an address that a disconnect had kept.
/// The locks (`sk_userlocks`) stay.
fn forget_address(m: &mut Model, id: usize) {
    let r = &mut m.recs[id];
    r.local.0 = if r.inet6 { V6_ANY } else { V4_ANY };
    r.source_bound = false;
}

pub(crate) fn listen(m: &mut Model, id: usize, pick: Option<u16>) -> MResult<()> {
    let mut n = m.recs[id].clone();
    match n.state {
        State::Listen => return Ok(()),
        State::Closed => {
            n.state = State::Listen;
            let port = tcp_autobind(m, id, &n, pick)?;
            let local = (n.local.0, port);
            m.enter(id, local, State::Listen);
            bucket_bound(m, id);
        }
        State::Bound => {
            n.state = State::Listen;
            if tcp_explicit_conflict(m, id, &n, n.local.1) {
                return Err(Error::AddrInUse.into());
            }
            m.recs[id].state = State::Listen;
        }
        _ => return Err(Error::InvalidInput.into()),
    }
    if n.connected_once {
        // The port get_port() took stays; the socket does not listen.
        m.recs[id].state = State::Bound;
        return Err(Error::InvalidInput.into());
    }
    m.recs[id].listened = true;
    hash_in(m, id);
    Ok(())
}

pub(crate) fn connect(
    m: &mut Model,
    id: usize,
    peer: SocketAddr,
    pick: Option<u16>,
) -> MResult<SocketAddr> {
    let mut n = m.recs[id].clone();
    let tcp = m.tcp();
    if !tcp && n.state == State::Closed {
        // inet_dgram_connect(): an unbound socket gets its port from
        // inet_autobind() before the protocol looks at the peer, and keeps
        // it if the connect then fails.
        let mut w = n.clone();
        w.local = (n.local.0, 0);
        // No free port: `inet_autobind()` says EAGAIN.
        let port = udp_autobind(m, id, &w, pick, Error::WouldBlock)?;
        m.enter(id, (n.local.0, port), State::Bound);
        hash_in(m, id);
        n = m.recs[id].clone();
    }
    match n.state {
        State::Connected | State::TimeWait | State::Listen if tcp => {
            return Err(Error::AlreadyConnected.into())
        }
        State::Dropped => return Err(Error::InvalidInput.into()),
        // A connected UDP socket may connect again, to a new peer, from the
        // same address and port.
        _ => {}
    }
    // __ip6_datagram_connect(): a UDP AF_INET6 socket given a sockaddr_in
    // connects over IPv4 (EAFNOSUPPORT if V6ONLY); TCP answers EINVAL.
    let peer = match peer {
        SocketAddr::V4(v4) if !tcp && n.inet6 => {
            if v6only(&n) {
                return Err(Error::FamilyNotSupported.into());
            }
            SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
        }
        other => other,
    };
    crate::model::family_check(n.inet6, peer)?;
    // `::` is the local host (tcp_v6_connect, __ip6_datagram_connect):
    // `::ffff:127.0.0.1` from a socket on a v4-mapped address, `::1` otherwise.
    let peer = match peer {
        SocketAddr::V6(v6) if v6.ip().is_unspecified() => {
            let to: IpAddr = if n.local.0.is_ipv4() {
                Ipv4Addr::LOCALHOST.to_ipv6_mapped().into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            };
            SocketAddr::new(to, v6.port())
        }
        other => other,
    };
    let mut rep = canonical(peer);
    let mapped = peer.is_ipv6() && rep.0.is_ipv4();
    if mapped && v6only(&n) {
        return Err(Error::NetworkUnreachable.into());
    }
    if n.inet6 && n.state == State::Bound && n.local.0.is_ipv4() && !rep.0.is_ipv4() {
        // Bound to a v4-mapped address (::ffff:0.0.0.0 too), connecting to an
        // IPv6 peer: `ip6_dst_lookup_tail` answers EAFNOSUPPORT once a route
        // is found; without a route (any peer but ::1 here) routing fails
        // first, which the table cannot know.
        return Err(if rep.0.is_loopback() {
            Error::FamilyNotSupported.into()
        } else {
            ModelError::AnyError
        });
    }
    let has_addr = !n.local.0.is_unspecified();
    // A UDP AF_INET6 socket on an IPv6 address that is not V6ONLY (the
    // address came from connect(), or V6ONLY was cleared after a disconnect
    // kept a bound one) may connect to an IPv4 peer: the kernel keeps the
    // local address and port as they are (checked on the running kernel:
    // `::1` stays the local address toward `::ffff:127.0.0.1`).
    let keeps_v6_source = !tcp && has_addr && !n.local.0.is_ipv4() && rep.0.is_ipv4();
    if has_addr && n.local.0.is_ipv4() != rep.0.is_ipv4() && !keeps_v6_source {
        // A mapped local address toward an IPv6 peer, or the reverse: the
        // kernel fails these on routing; any error will do.
        return Err(ModelError::AnyError);
    }
    if rep.0 == V4_ANY {
        // ip_route_connect(): a zero destination is the IPv4 source address
        // (`inet_saddr`), or 127.0.0.1 without one. An AF_INET6 socket bound
        // to a specific IPv6 address has LOOPBACK4_IPV6 there.
        rep.0 = match n.local.0 {
            IpAddr::V4(v4) if !v4.is_unspecified() => n.local.0,
            IpAddr::V6(v6) if !v6.is_unspecified() && n.source_bound => {
                IpAddr::V4(Ipv4Addr::new(127, 0, 0, 6))
            }
            _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
        };
    }
    if tcp && rep.0.is_multicast() {
        return Err(Error::NetworkUnreachable.into());
    }
    // `tcp_v6_connect` / `ip6_datagram_connect`: a link-local peer needs a
    // bound device.
    if needs_scope(rep.0) {
        return Err(Error::InvalidInput.into());
    }
    // Port 0 is a peer like any other (UDP: any port of the address).
    if rep.0.is_unspecified() {
        return Err(Error::AddrNotAvailable.into());
    }

    let laddr = if has_addr {
        n.local.0
    } else {
        source_for(rep.0).ok_or(Error::NetworkUnreachable)?
    };
    let bound = n.local.1 != 0 && n.state != State::Closed;
    if tcp && n.listened {
        // EINVAL through tcp_v4_connect's failure path: a source chosen for
        // a locked wildcard stays; a port bind() chose goes back.
        let keeps_source = n.addr_locked && n.local.0.is_unspecified();
        if !bound {
            if keeps_source {
                m.recs[id].local.0 = laddr;
            }
            return Err(Error::InvalidInput.into());
        }
        if keeps_source || !n.port_locked {
            return Err(ModelError::Known(
                "Linux TCP connect() after listen(): the failure path's traces",
            ));
        }
        return Err(Error::InvalidInput.into());
    }
    if tcp {
        let port = if bound {
            if m.live().any(|(_, r)| {
                r.connected() && r.local == (laddr, n.local.1) && r.remote == Some(rep)
            }) {
                return Err(Error::AddrNotAvailable.into());
            }
            n.local.1
        } else {
            // __inet_hash_connect(): a port is usable when every PCB on it got
            // its port from connect() and the 4-tuple is free; ports of the
            // range start's parity first.
            let low = m.range.0;
            let classes: Vec<Vec<u16>> = vec![
                m.range_ports().filter(|p| (p - low) % 2 == 0).collect(),
                m.range_ports().filter(|p| (p - low) % 2 == 1).collect(),
            ];
            let free = |p: u16| {
                !m.bind_held.contains(&p)
                    && !m.live().any(|(_, r)| {
                        r.connected() && r.local == (laddr, p) && r.remote == Some(rep)
                    })
            };
            pick_from_classes(
                classes,
                free,
                pick,
                "Linux __inet_hash_connect",
                Error::AddrNotAvailable,
            )?
        };
        if bound {
            let r = &mut m.recs[id];
            let before = r.local;
            r.local = (laddr, port);
            r.state = State::Connected;
            if before != (laddr, port) {
                bucket_joined(m, id, false);
                bucket_left(m, before);
            }
        } else {
            m.recs[id].connect_bind = true;
            m.enter(id, (laddr, port), State::Connected);
            bucket_joined(m, id, true);
        }
    } else {
        // The port came from the autobind above, or from bind().
        let r = &mut m.recs[id];
        r.local = (laddr, n.local.1);
        r.state = State::Connected;
    }
    let moved = m.recs[id].local.0 != n.local.0 && n.state != State::Closed;
    let now = m.tick();
    let r = &mut m.recs[id];
    r.remote = Some(rep);
    r.connected_at = now;
    // `sk_v6_daddr` outlives the connection (see the table's LAST_PEER).
    if !tcp && n.inet6 {
        r.last_peer = Some(rep.0);
    }
    if tcp {
        r.connected_once = true;
    } else {
        // `udp_lib_hash4` / `udp_lib_rehash`: a member that connects leaves
        // its group for good.
        r.lgroup = None;
        if moved {
            rehashed(m, id);
        }
    }
    Ok(shown(m.recs[id].local, n.inet6))
}

/// `udp_lib_rehash`: the socket moved to another address of its port and
/// went to the head of the new list.
fn rehashed(m: &mut Model, id: usize) {
    m.lhead -= 1;
    m.recs[id].lpos = m.lhead;
}

/// `__ipv6_addr_needs_scope_id`: link-local unicast (`fe80::/10`), or
/// multicast of interface-local or link-local scope.
fn needs_scope(ip: IpAddr) -> bool {
    let IpAddr::V6(ip) = ip else {
        return false;
    };
    let first = ip.segments()[0];
    first & 0xffc0 == 0xfe80 || (first & 0xff00 == 0xff00 && matches!(first & 0xf, 1 | 2))
}

/// `tcp_disconnect`: a connection is aborted and a listener stops; a port
/// that bind() did not name goes back, an address it did not name goes back
/// to the wildcard.
pub(crate) fn disconnect_tcp(m: &mut Model, id: usize) -> MResult<()> {
    let n = m.recs[id].clone();
    match n.state {
        State::TimeWait | State::Dropped => return Err(Error::InvalidInput.into()),
        State::Listen | State::Connected => {}
        _ => return Ok(()),
    }
    let any = if n.inet6 { V6_ANY } else { V4_ANY };
    m.recs[id].lgroup = None;
    if !n.port_locked {
        // `remove` tells the buckets about the old local endpoint first.
        m.remove(id, State::Closed);
        let r = &mut m.recs[id];
        r.remote = None;
        r.connect_bind = false;
        if !n.addr_locked {
            r.local.0 = any;
        }
        r.local.1 = 0;
        return Ok(());
    }
    let old = n.local;
    let r = &mut m.recs[id];
    r.remote = None;
    r.connect_bind = false;
    r.state = State::Bound;
    if !n.addr_locked {
        r.local.0 = any;
    }
    if m.recs[id].local != old {
        bucket_joined(m, id, false);
        bucket_left(m, old);
    }
    Ok(())
}

pub(crate) fn disconnect(m: &mut Model, id: usize) -> MResult<()> {
    // __udp_disconnect(): also on an unconnected socket.
    let n = m.recs[id].clone();
    if !n.in_table() {
        return Ok(());
    }
    let any = if n.inet6 { V6_ANY } else { V4_ANY };
    let r = &mut m.recs[id];
    r.remote = None;
    if !n.addr_locked {
        r.local.0 = any;
        r.source_bound = false;
        // `udp_lib_rehash` detaches a member even when its list stays.
        r.lgroup = None;
    }
    if n.port_locked {
        r.state = State::Bound;
        if m.recs[id].local != n.local {
            rehashed(m, id);
        }
    } else {
        // `sk->sk_prot->unhash(sk); inet->inet_sport = 0`: the port goes
        // back, but an address bind() named stays on the portless socket,
        // with its lock and any V6ONLY it forced; the next autobind
        // (inet_autobind() from inet_dgram_connect()) happens there.
        r.local.1 = 0;
        m.remove(id, State::Closed);
    }
    Ok(())
}

/// The listener (TCP) / unconnected socket (UDP) stage: the specific
/// address's list, then the wildcard's; in each, the first socket (in list
/// order) with the highest score, or its reuseport group. A UDP socket
/// connected to the source's address with port 0 is in the specific
/// address's list: for IPv4 it outscores every unconnected socket, for
/// IPv6 it ties with one whose last peer is the source.
pub(crate) fn lookup_wild(m: &Model, l: Ep, r: Ep) -> Expect {
    let tcp = m.tcp();
    let v4 = l.0.is_ipv4();
    let source = r.0;
    let mut cands: Vec<usize> = m
        .live()
        .filter(|(_, r)| {
            r.local.1 == l.1
                && if tcp {
                    r.state == State::Listen
                } else {
                    r.state == State::Bound || (r.connected() && r.remote == Some((source, 0)))
                }
        })
        .map(|(i, _)| i)
        .collect();
    cands.sort_by_key(|&i| m.recs[i].lpos);
    let score = |r: &Rec, pass_addr: IpAddr| -> i32 {
        if v4 {
            let IpAddr::V4(want) = pass_addr else {
                return -1;
            };
            if v6only(r) || v4_view(r) != want {
                return -1;
            }
            if r.connected() {
                // `inet_daddr`: four points more, and AF_INET one more.
                if r.inet6 {
                    5
                } else {
                    6
                }
            } else if r.inet6 {
                1
            } else {
                2
            }
        } else if r.inet6 && r.local.0 == pass_addr {
            // IPv6 `compute_score`: a last peer filters and scores.
            match r.last_peer {
                None => 1,
                Some(peer) if peer == source => 2,
                Some(_) => -1,
            }
        } else {
            -1
        }
    };
    let any = if v4 { V4_ANY } else { V6_ANY };
    for pass in [l.0, any] {
        let mut best = 0;
        let mut result: Option<Expect> = None;
        for &i in &cands {
            let r = &m.recs[i];
            let s = score(r, pass);
            if s <= best {
                continue;
            }
            best = s;
            if r.rp {
                if let Some(g) = r.lgroup {
                    let members: Vec<usize> = m
                        .live()
                        .filter(|(_, x)| x.lgroup == Some(g))
                        .map(|(j, _)| j)
                        .collect();
                    let unconnected: Vec<usize> = members
                        .iter()
                        .copied()
                        .filter(|&j| !m.recs[j].connected())
                        .collect();
                    if !unconnected.is_empty() {
                        let e = if unconnected.len() == 1 {
                            Expect::One(unconnected[0])
                        } else {
                            Expect::AnyOf(unconnected.clone())
                        };
                        if unconnected.len() == members.len() {
                            return e;
                        }
                        result = Some(e);
                        continue;
                    }
                }
            }
            result = Some(Expect::One(i));
        }
        if let Some(e) = result {
            return e;
        }
        if l.0 == any {
            break;
        }
    }
    Expect::None
}
