//! Linux's rules (6.18): `inet_csk_get_port`, `inet_bind_conflict`,
//! `inet_rcv_saddr_equal`, `__inet_hash_connect`, `__inet_lookup_listener` and
//! reuseport groups.
//!
//! Devices (SO_BINDTODEVICE, scope ids), network namespaces and BPF are outside
//! the table's knowledge: every PCB is unbound from devices, in one namespace.

use std::net::SocketAddr;

use super::{check_privilege, Disconnect, GroupKey, PcbView};
use crate::addr::{Endpoint, Family};
use crate::error::Error;
use crate::flags::{Flags, State};
use crate::policy::Protocol;

/// `__inet_bind` / `__inet6_bind` checks before `get_port`.
pub(crate) fn check_bind(
    protocol: Protocol,
    me: &PcbView,
    local: SocketAddr,
) -> Result<Endpoint, Error> {
    match (me.family, local) {
        (Family::Inet, SocketAddr::V6(_)) => return Err(Error::FamilyNotSupported),
        // A `sockaddr_in` is shorter than SIN6_LEN_RFC2133.
        (Family::Inet6, SocketAddr::V4(_)) => return Err(Error::InvalidInput),
        _ => {}
    }
    let endpoint = Endpoint::new(local);
    if me.family == Family::Inet6
        && protocol == Protocol::Tcp
        && !endpoint.is_v4()
        && endpoint.ip.is_multicast()
    {
        return Err(Error::InvalidInput);
    }
    check_privilege(&me.cred, endpoint.port)?;
    if me.state() != State::Closed {
        return Err(Error::InvalidInput);
    }
    if me.family == Family::Inet6 && endpoint.is_v4() && me.flags.v6only() {
        return Err(Error::InvalidInput);
    }
    Ok(endpoint)
}

/// The address kind `inet_rcv_saddr_equal` distinguishes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// AF_INET, or AF_INET6 bound to a v4-mapped address.
    Mapped,
    /// AF_INET6 on `::`.
    Any,
    /// AF_INET6 on a specific IPv6 address.
    Specific,
}

fn kind(view: &PcbView) -> Kind {
    if view.local.is_v4() {
        Kind::Mapped
    } else if view.local.is_wildcard() {
        Kind::Any
    } else {
        Kind::Specific
    }
}

/// `sk_ipv6only`, which a specific IPv6 bind forces on.
fn v6only(view: &PcbView) -> bool {
    view.family == Family::Inet6 && (view.flags.v6only() || kind(view) == Kind::Specific)
}

/// `inet_rcv_saddr_equal(sk, sk2, match_wildcard = true)`.
fn overlap(sk: &PcbView, sk2: &PcbView) -> bool {
    match (kind(sk), kind(sk2)) {
        (Kind::Mapped, Kind::Mapped) => {
            !v6only(sk2)
                && (sk.local.ip == sk2.local.ip
                    || sk.local.is_wildcard()
                    || sk2.local.is_wildcard())
        }
        (Kind::Any, Kind::Any) => true,
        (_, Kind::Any) => !(v6only(sk2) && kind(sk) == Kind::Mapped),
        (Kind::Any, _) => !(v6only(sk) && kind(sk2) == Kind::Mapped),
        (Kind::Specific, Kind::Specific) => sk.local.ip == sk2.local.ip,
        _ => false,
    }
}

/// `inet_bind_conflict(sk, sk2, ...)` for an overlapping pair.
fn pair_conflict(sk: &PcbView, sk2: &PcbView, relax: bool, reuseport_ok: bool) -> bool {
    let time_wait = sk2.state() == State::TimeWait;
    if sk.flags.reuse_addr() && sk2.flags.reuse_addr() && sk2.state() != State::Listen {
        !relax
            || (!reuseport_ok
                && sk.flags.reuse_port()
                && sk2.flags.reuse_port()
                && (time_wait || sk.cred.uid == sk2.cred.uid))
    } else {
        !reuseport_ok
            || !sk.flags.reuse_port()
            || !sk2.flags.reuse_port()
            || (!time_wait && sk.cred.uid != sk2.cred.uid)
    }
}

fn any_conflict(new: &PcbView, owners: &[PcbView], relax: bool, reuseport_ok: bool) -> bool {
    owners
        .iter()
        .any(|old| overlap(new, old) && pair_conflict(new, old, relax, reuseport_ok))
}

/// `inet_csk_get_port` with an explicit port.
pub(crate) fn bind_conflict(
    _protocol: Protocol,
    new: &PcbView,
    owners: &[PcbView],
) -> Result<(), Error> {
    if any_conflict(new, owners, true, true) {
        Err(Error::AddrInUse)
    } else {
        Ok(())
    }
}

/// `inet_csk_find_open_port`, first pass: no sharing at all.
pub(crate) fn bind_port_busy(
    _protocol: Protocol,
    new: &PcbView,
    owners: &[PcbView],
    _listening: bool,
) -> bool {
    any_conflict(new, owners, false, false)
}

/// `inet_csk_listen_start` re-runs `get_port` with the socket in LISTEN.
pub(crate) fn listen_check(
    _protocol: Protocol,
    me: &PcbView,
    owners: &[PcbView],
) -> Result<(), Error> {
    let listening = PcbView {
        flags: me.flags.with_state(State::Listen),
        ..*me
    };
    if any_conflict(&listening, owners, true, true) {
        Err(Error::AddrInUse)
    } else {
        Ok(())
    }
}

/// `inet_stream_connect` / `tcp_v4_connect` / `tcp_v6_connect` / UDP checks.
pub(crate) fn check_connect(
    protocol: Protocol,
    me: &PcbView,
    remote: SocketAddr,
) -> Result<Endpoint, Error> {
    match me.state() {
        State::Listen | State::Connected | State::TimeWait => return Err(Error::AlreadyConnected),
        State::Dropped => return Err(Error::InvalidInput),
        State::Closed | State::Bound => {}
    }
    match (me.family, remote) {
        (Family::Inet, SocketAddr::V6(_)) => return Err(Error::FamilyNotSupported),
        (Family::Inet6, SocketAddr::V4(_)) => return Err(Error::InvalidInput),
        _ => {}
    }
    let peer = Endpoint::new(remote);
    if me.family == Family::Inet6 {
        if peer.is_v4() && v6only(me) {
            return Err(Error::NetworkUnreachable);
        }
        if me.state() == State::Bound && !peer.is_v4() && me.local.is_v4() {
            return Err(Error::InvalidInput);
        }
    }
    if protocol == Protocol::Tcp && peer.ip.is_multicast() {
        return Err(Error::NetworkUnreachable);
    }
    if peer.port == 0 || peer.is_wildcard() {
        return Err(Error::AddrNotAvailable);
    }
    Ok(peer)
}

/// `__inet_hash_connect`: a port on which any PCB was bound with `bind()`
/// (not by `connect()`) is skipped; otherwise the 4-tuple must be free.
pub(crate) fn connect_port_busy(
    _new: &PcbView,
    owners: &[PcbView],
    holder: Option<&PcbView>,
) -> bool {
    holder.is_some()
        || owners
            .iter()
            .any(|o| !o.flags.contains(Flags::CONNECT_BIND))
}

/// `__udp_disconnect`: the address is kept only if it was bound explicitly,
/// and the port only if it was.
pub(crate) fn disconnect(me: &PcbView) -> Result<Disconnect, Error> {
    Ok(Disconnect {
        keep_addr: me.flags.contains(Flags::ADDR_LOCKED),
        keep_port: me.flags.contains(Flags::PORT_LOCKED),
    })
}

/// `__inet_lookup_listener` / `__udp4_lib_lookup`: a PCB bound to the packet's
/// address before a wildcard one; among equals, AF_INET before a dual-stack
/// AF_INET6. For TCP only listeners take packets.
pub(crate) fn wildcard_rank(
    protocol: Protocol,
    candidate: &PcbView,
    local: &Endpoint,
) -> Option<u32> {
    if protocol == Protocol::Tcp && candidate.state() != State::Listen {
        return None;
    }
    if !super::wild_match(candidate, local) {
        return None;
    }
    if local.is_v4() && v6only(candidate) {
        return None;
    }
    let specific = if local.is_v4() {
        !candidate.local_v4().is_wildcard()
    } else {
        !candidate.local.is_wildcard()
    };
    let family_bonus = u32::from(candidate.family == Family::Inet);
    Some(if specific { 10 } else { 0 } + 1 + family_bonus)
}

/// `inet_reuseport_add_sock`: same family, V6ONLY, uid and exact address.
pub(crate) fn group_key(view: &PcbView) -> Option<GroupKey> {
    if !view.flags.reuse_port() {
        return None;
    }
    Some(GroupKey {
        family: view.family,
        v6only: v6only(view),
        uid: Some(view.cred.uid),
        local: view.local,
    })
}
