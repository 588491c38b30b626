//! `connect(2)` and `connect(AF_UNSPEC)`: `tcp_v4_connect` /
//! `tcp_v6_connect` with `__inet_hash_connect`, `inet_dgram_connect` /
//! `ip6_datagram_connect`, `tcp_disconnect` and `__udp_disconnect`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use pcbhash::{Error, State};

use super::buckets::{bucket_joined, bucket_left, remove};
use super::get_port::{pick_from_classes, udp_autobind};
use super::lists::{hash_in, rehashed};
use super::sock::{needs_scope, v6only};
use crate::addrs::{canonical, shown, V4_ANY, V6_ANY};
use crate::ops::TwReuseSel;
use crate::state::{family_check, source_for, MResult, Model, ModelError};

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
    family_check(n.inet6, peer)?;
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
    if n.inet6 && n.local.0.is_ipv4() && !rep.0.is_ipv4() {
        // Bound to a v4-mapped address (::ffff:0.0.0.0 too), connecting to an
        // IPv6 peer: `ip6_dst_lookup_tail` answers EAFNOSUPPORT once a route
        // is found; without a route (any peer but ::1 here) routing fails
        // first, which the table cannot know. Also where a disconnect took
        // the port and left the address bind() named, and before the
        // refusal of a socket that has listened (checked on the running
        // kernel: bind ::ffff:0.0.0.0, listen, disconnect, connect [::1]:80
        // is EAFNOSUPPORT).
        return Err(if rep.0.is_loopback() {
            Error::FamilyNotSupported.into()
        } else {
            ModelError::AnyError
        });
    }
    // `__inet6_bind` makes a v4-mapped address the IPv4 source whatever its
    // type (`__inet_bind` leaves multicast and broadcast out); the route
    // lookup refuses a multicast or limited-broadcast source with EINVAL,
    // before the peer (checked on the running kernel, TCP and UDP).
    if n.inet6
        && rep.0.is_ipv4()
        && matches!(n.local.0, IpAddr::V4(v4) if v4.is_multicast() || v4.is_broadcast())
    {
        return Err(Error::InvalidInput.into());
    }
    let has_addr = !n.local.0.is_unspecified();
    // A UDP AF_INET6 socket on an IPv6 address that is not V6ONLY (the
    // address came from connect(), or V6ONLY was cleared after a disconnect
    // kept a bound one) may connect to an IPv4 peer: the kernel keeps the
    // local address and port as they are (checked on the running kernel:
    // `::1` stays the local address toward `::ffff:127.0.0.1`).
    let keeps_v6_source = !tcp && has_addr && !n.local.0.is_ipv4() && rep.0.is_ipv4();
    // A TCP one whose IPv6 address came from connect() (an accepted child
    // keeps it over a disconnect: it inherits the listener's address lock)
    // has no IPv4 source: `tcp_v4_connect` routes one (checked on the
    // running kernel: `::ffff:127.0.0.1` toward `::ffff:127.0.0.2`).
    let routes_v4_source =
        tcp && has_addr && !n.source_bound && !n.local.0.is_ipv4() && rep.0.is_ipv4();
    if has_addr && n.local.0.is_ipv4() != rep.0.is_ipv4() && !keeps_v6_source && !routes_v4_source {
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
    if needs_scope(rep.0) && n.device == 0 {
        return Err(Error::InvalidInput.into());
    }
    // Port 0 is a peer like any other (UDP: any port of the address).
    if rep.0.is_unspecified() {
        return Err(Error::AddrNotAvailable.into());
    }

    let laddr = if has_addr && !routes_v4_source {
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
        // `__inet_check_established` compares the 4-tuple with `inet_match`
        // on the new socket's device: an established twin bound to no
        // device, or to that one, holds it (one bound to another device
        // does not). A TIME_WAIT twin gives way to a bound socket: with
        // `twp` NULL, `tcp_twsk_unique` asks only for the timestamps a
        // connection sees by default, whatever `tcp_tw_reuse` says.
        let port = if bound {
            let twins: Vec<usize> = m
                .live()
                .filter(|(_, r)| {
                    r.connected()
                        && r.local == (laddr, n.local.1)
                        && r.remote == Some(rep)
                        && r.answers(n.device)
                })
                .map(|(i, _)| i)
                .collect();
            if twins.iter().any(|&t| m.recs[t].state != State::TimeWait) {
                failed_after_source(m, id, laddr);
                return Err(Error::AddrNotAvailable.into());
            }
            for t in twins {
                m.remove(t, State::Dropped);
            }
            n.local.1
        } else {
            // __inet_hash_connect(): a port is usable when every PCB on it got
            // its port from connect() and the 4-tuple is free; ports of the
            // range start's parity first.
            // With IP_LOCAL_PORT_RANGE set, every port in turn (step 1).
            let (low, high, own) = m.scan_range(&n)?;
            let classes: Vec<Vec<u16>> = if own {
                vec![(low..=high).collect()]
            } else {
                vec![
                    (low..=high).filter(|p| (p - low) % 2 == 0).collect(),
                    (low..=high).filter(|p| (p - low) % 2 == 1).collect(),
                ]
            };
            let twins = |m: &Model, p: u16| -> Vec<usize> {
                m.live()
                    .filter(|(_, r)| {
                        r.connected()
                            && r.local == (laddr, p)
                            && r.remote == Some(rep)
                            && r.answers(n.device)
                    })
                    .map(|(i, _)| i)
                    .collect()
            };
            let free = |p: u16| {
                !m.bind_held.contains(&p) && twins(m, p).into_iter().all(|t| reusable_twin(m, t))
            };
            let port = pick_from_classes(
                classes,
                free,
                pick,
                "Linux __inet_hash_connect",
                Error::AddrNotAvailable,
            )?;
            // `tcp_twsk_unique` accepted the twin: the new socket takes its
            // 4-tuple and the twin goes.
            for t in twins(m, port) {
                m.remove(t, State::Dropped);
            }
            port
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
    // A UDP socket that connects again to the peer it has, from the same
    // address, keeps its place among the sockets on that 4-tuple
    // (`udp_lib_rehash` moves it only when its hash changes; checked on the
    // running kernel: of two sockets connected to one peer, the later keeps
    // the datagrams after the earlier connects again).
    let same_tuple =
        n.state == State::Connected && n.remote == Some(rep) && m.recs[id].local == n.local && !tcp;
    let now = m.tick();
    let r = &mut m.recs[id];
    r.remote = Some(rep);
    if !same_tuple {
        r.connected_at = now;
    }
    // `sk_v6_daddr` outlives the connection (see the table's LAST_PEER).
    if !tcp && n.inet6 {
        r.last_peer = Some(rep.0);
    }
    if tcp {
        r.connected_once = true;
    } else {
        // `__ip4_datagram_connect` marks the group (`reuseport_has_conns_set`),
        // then `udp_lib_hash4` / `udp_lib_rehash` take the member out of it
        // for good.
        if let Some(group) = r.lgroup.take() {
            m.group_conns.insert(group);
        }
        if moved {
            rehashed(m, id);
        }
    }
    Ok(shown(m.recs[id].local, n.inet6))
}

/// `tcp_v4_connect`'s failure path after the source address was set
/// (`inet_bhash2_update_saddr`), for a bound record that found its 4-tuple
/// taken: `tcp_set_state(sk, TCP_CLOSE)` gives back a port bind() did not
/// name (`inet_put_port`), and `inet_bhash2_reset_saddr` an address it did
/// not name; a wildcard it named keeps the source `laddr`.
fn failed_after_source(m: &mut Model, id: usize, laddr: IpAddr) {
    let n = m.recs[id].clone();
    let ip = if n.addr_locked { laddr } else { n.local.0 };
    if !n.port_locked {
        remove(m, id, State::Closed);
        m.recs[id].local = (ip, 0);
    } else if ip != n.local.0 {
        m.recs[id].local.0 = ip;
        bucket_joined(m, id, false);
        bucket_left(m, n.local);
    }
}

/// `tcp_twsk_unique`, as far as the table decides it: a TIME_WAIT twin
/// the stack marked reusable, under `tcp_tw_reuse` 1, or 2 with a loopback
/// address at either end (`::ffff:127.0.0.0/104` too) or bound to the
/// loopback device (index 1 here).
fn reusable_twin(m: &Model, id: usize) -> bool {
    let r = &m.recs[id];
    let loopback =
        || r.local.0.is_loopback() || r.remote.is_some_and(|p| p.0.is_loopback()) || r.device == 1;
    r.state == State::TimeWait
        && r.tw_reusable
        && match m.tw_reuse {
            TwReuseSel::Off => false,
            TwReuseSel::On => true,
            TwReuseSel::Loopback => loopback(),
        }
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
        remove(m, id, State::Closed);
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
    // __udp_disconnect(): also on an unconnected socket, which it unbinds
    // from its device too (`sk->sk_bound_dev_if = 0`).
    m.recs[id].device = 0;
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
        remove(m, id, State::Closed);
    }
    Ok(())
}
