//! `bind(2)` and `listen(2)`: `__inet_bind` / `__inet6_bind` and
//! `inet_listen`, with the port checks of `get_port()` and the re-check of
//! `inet_csk_listen_start`.

use std::net::SocketAddr;

use pcbhash::{Error, State};

use super::buckets::{bucket_bound, fast_match, fast_update};
use super::get_port::{tcp_autobind, tcp_explicit_conflict, udp_autobind, udp_explicit_conflict};
use super::lists::hash_in;
use super::sock::{needs_scope, v6only};
use crate::addrs::{shown, V4_ANY, V6_ANY};
use crate::state::{MResult, Model};

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
    // `__inet6_bind`: a link-local address needs a bound device (whether
    // the device exists and has the address is the stack's to check).
    if needs_scope(ep.0) && n.device == 0 {
        return Err(Error::InvalidInput.into());
    }
    n.local = (ep.0, 0);
    // __inet6_bind(): `sk->sk_ipv6only = 1` for a specific IPv6 address; the
    // flag is the IPV6_V6ONLY option itself, so only setsockopt clears it (a
    // failed get_port() restores the value it had before).
    n.forced_v6only |= n.inet6 && ep.0.is_ipv6() && !ep.0.is_unspecified();
    if ep.1 == 0 && n.no_port {
        // IP_BIND_ADDRESS_NO_PORT: `__inet_bind` stores the address and
        // skips get_port(); the socket stays unhashed with `inet_num` 0, so
        // bind() may come again, and connect() / listen() pick the port.
        n.addr_locked |= !ep.0.is_unspecified() || mapped;
        n.source_bound = !ep.0.is_unspecified();
        m.recs[id] = n;
        return Ok(shown((ep.0, 0), m.recs[id].inet6));
    }
    let port = if ep.1 != 0 {
        let conflict = if m.tcp() {
            !fast_match(m, &n, ep.1) && tcp_explicit_conflict(m, id, &n, ep.1)
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
        fast_update(m, id);
    } else {
        hash_in(m, id);
    }
    Ok(shown(m.recs[id].local, m.recs[id].inet6))
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
            fast_update(m, id);
        }
        State::Bound => {
            n.state = State::Listen;
            if !fast_match(m, &n, n.local.1) && tcp_explicit_conflict(m, id, &n, n.local.1) {
                return Err(Error::AddrInUse.into());
            }
            m.recs[id].state = State::Listen;
            fast_update(m, id);
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
