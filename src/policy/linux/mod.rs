//! Linux's rules, as Linux 6.18 applies them: `__inet_bind` / `__inet6_bind`,
//! `inet_csk_get_port`, `inet_bind_conflict`, `inet_csk_find_open_port`,
//! `__inet_hash_connect`, `__inet_lookup_listener`, reuseport groups, and for
//! UDP `udp_lib_get_port` (in [`udp`]).
//!
//! # TCP bind conflicts
//!
//! `inet_csk_get_port` decides in two steps:
//!
//! 1. **The fast path.** The port's bind bucket remembers the last
//!    SO_REUSEPORT socket that joined it without matching its record
//!    (`FASTREUSEPORT_STRICT`, [`FastOwner`]). A new SO_REUSEPORT socket of the
//!    same owner whose address that record covers skips the conflict scan
//!    altogether, even where the scan would have found a conflict (for
//!    instance with a socket that shares the port through SO_REUSEADDR only,
//!    or one that has cleared SO_REUSEPORT since). Any socket without
//!    SO_REUSEPORT that joins clears the record. The record lives in the
//!    table's per-port memory ([`PortMemo`]), because it outlives the socket
//!    that set it. (`FASTREUSEPORT_ANY` and `fastreuse > 0` are never reached
//!    in 6.18: the bucket already holds the new socket's bind2 bucket when
//!    `inet_csk_update_fastreuse` tests it for emptiness.)
//! 2. **The scan** (`inet_csk_bind_conflict`). A socket on a specific address
//!    looks at the owners of its own bind2 bucket and of the wildcard buckets
//!    (`inet_bhash2_addr_any_conflict`), skipping V6ONLY owners when it is
//!    IPv4 or v4-mapped. A wildcard socket looks at every owner whose address
//!    overlaps (`inet_rcv_saddr_equal`). Each overlapping pair goes through
//!    `inet_bind_conflict`: SO_REUSEADDR on both sides shares unless the other
//!    side listens; SO_REUSEPORT on both sides shares when the owners are
//!    equal or the other side is in TIME_WAIT.
//!
//! `listen()` runs `get_port` again with the socket already in LISTEN, so two
//! SO_REUSEADDR sockets may bind the same address but only one may listen.
//! `bind(port 0)` (and the autobind of `listen()`) accepts only ports where no
//! owner overlaps at all.
//!
//! # connect()
//!
//! An unbound socket gets a port from `__inet_hash_connect`: a port is skipped
//! if its bucket is held by `bind()` (not connect-only; the bucket's history
//! decides, see [`PortMemo`]) or the 4-tuple is taken. A bound socket only needs a free 4-tuple; a TIME_WAIT
//! twin holding it gives way (`tcp_twsk_unique` with TCP timestamps, the Linux
//! default). An unbound socket never takes over a TIME_WAIT twin: that is
//! Linux with `tcp_tw_reuse=0`, or within `tcp_tw_reuse_delay` of the twin's
//! birth; the table has no clock.
//!
//! Devices (SO_BINDTODEVICE, scope ids), network namespaces, BPF and
//! `IP_BIND_ADDRESS_NO_PORT` are outside the table's knowledge: every PCB is
//! unbound from devices, in one namespace.

mod mcast;
mod rules;
pub(super) mod saddr;
#[cfg(test)]
mod tests;
mod udp;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::decisions::Memo;
use super::{
    check_privilege, AfterFailedConnect, Disconnect, GroupKey, PcbView, PortMemo, TupleTaken,
};
use crate::addr::{Endpoint, Family};
use crate::cred::Device;
use crate::error::Error;
use crate::flags::{Flags, State};
use crate::policy::{Protocol, TwReuse};
use saddr::{inet_rcv_saddr_equal, ipv6_only_sock, FastOwner, Sk};

pub(crate) use rules::Linux;

/// `__inet_bind` / `__inet6_bind` checks before `get_port`, in the kernel's
/// order: family, multicast (TCP over IPv6), privilege, double bind, then a
/// v4-mapped address on a V6ONLY socket.
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
    if needs_scope(&endpoint) && me.device == 0 {
        // `__inet6_bind`: "binding to link-local address requires an
        // interface" (SO_BINDTODEVICE gives it one). Whether the address is
        // on that device is the stack's to check, as for any address.
        return Err(Error::InvalidInput);
    }
    Ok(endpoint)
}

/// `__ipv6_addr_needs_scope_id`: a link-local unicast address (`fe80::/10`),
/// or a multicast address of interface-local or link-local scope. Such an
/// address means nothing without a device.
fn needs_scope(endpoint: &Endpoint) -> bool {
    let std::net::IpAddr::V6(ip) = endpoint.ip else {
        return false;
    };
    let first = ip.segments()[0];
    let link_local = first & 0xffc0 == 0xfe80;
    let scoped_multicast = first & 0xff00 == 0xff00 && matches!(first & 0x000f, 1 | 2);
    link_local || scoped_multicast
}

/// `__inet6_bind`: a specific (not v4-mapped) IPv6 address makes the socket
/// V6ONLY (`sk->sk_ipv6only = 1`); any address but `::` locks it
/// (`SOCK_BINDADDR_LOCK`), `::ffff:0.0.0.0` included, although connect()
/// still chooses a source for that one. Any address but a wildcard sets the
/// IPv4 source address (`inet_saddr`; see [`Flags::SOURCE_BOUND`]).
pub(crate) fn bind_sets(me: &PcbView, local: &Endpoint) -> Flags {
    let source = if local.is_wildcard() {
        Flags::EMPTY
    } else {
        Flags::SOURCE_BOUND
    };
    source
        | match me.family {
            Family::Inet6 if !local.is_v4() && !local.is_wildcard() => Flags::V6ONLY,
            Family::Inet6 if local.is_v4() && local.is_wildcard() => Flags::ADDR_LOCKED,
            _ => Flags::EMPTY,
        }
}

/// `inet_bind_conflict(sk, sk2, ...)` for a pair whose addresses overlap.
fn pair_conflict(sk: &PcbView, sk2: &PcbView, relax: bool, reuseport_ok: bool) -> bool {
    if !devices_overlap(sk, sk2) {
        return false;
    }
    let time_wait = sk2.state() == State::TimeWait;
    let same_owner = time_wait || sk.cred.uid == sk2.cred.uid;
    let both_reuseport = sk.flags.reuse_port() && sk2.flags.reuse_port();
    if sk.flags.reuse_addr() && sk2.flags.reuse_addr() && sk2.state() != State::Listen {
        !relax || (!reuseport_ok && both_reuseport && same_owner)
    } else {
        !reuseport_ok || !both_reuseport || !same_owner
    }
}

/// `inet_csk_bind_conflict` (with `inet_bhash2_addr_any_conflict` for a
/// specific address): whether any owner conflicts with `new`.
fn scan_conflict(new: &PcbView, others: &[PcbView], relax: bool, reuseport_ok: bool) -> bool {
    let sk = Sk::of(new);
    if sk.is_specific() {
        others.iter().any(|owner| {
            let theirs = Sk::of(owner);
            (sk.same_bucket(&theirs) || sk.checks_wildcard_bucket_of(&theirs))
                && !(theirs.ipv6only && sk.is_v4())
                && pair_conflict(new, owner, relax, reuseport_ok)
        })
    } else {
        others.iter().any(|owner| {
            pair_conflict(new, owner, relax, reuseport_ok)
                && inet_rcv_saddr_equal(&sk, &Sk::of(owner), true)
        })
    }
}

/// The port's fast-path record as the kernel holds it; the memory forgets
/// it when the bucket returns to the connect-only state (see [`PortMemo`]).
fn fast_record(memo: PortMemo) -> Option<FastOwner> {
    match memo {
        PortMemo(Memo::Strict(owner)) => Some(owner),
        _ => None,
    }
}

/// `sk_reuseport_match()`.
fn reuseport_match(record: Option<FastOwner>, new: &PcbView) -> bool {
    record.is_some_and(|fast| {
        new.flags.reuse_port() && fast.uid == new.cred.uid && fast.covers(&Sk::of(new))
    })
}

/// `inet_csk_get_port(sk, port)` for a given port: fast path, then scan.
fn get_port_conflict(new: &PcbView, others: &[PcbView], memo: PortMemo) -> bool {
    if reuseport_match(fast_record(memo), new) {
        return false;
    }
    scan_conflict(new, others, true, true)
}

/// `inet_csk_get_port` / `udp_lib_get_port` with an explicit port.
pub(crate) fn bind_conflict(
    protocol: Protocol,
    new: &PcbView,
    owners: &[PcbView],
    memo: PortMemo,
) -> Result<(), Error> {
    let conflict = match protocol {
        Protocol::Tcp => get_port_conflict(new, owners, memo),
        Protocol::Udp => udp::bind_conflict(new, owners),
    };
    if conflict {
        Err(Error::AddrInUse)
    } else {
        Ok(())
    }
}

/// `inet_csk_update_fastreuse()` after `new` joined the port (by `bind()`,
/// or by `listen()` when `new` is listening): a SO_REUSEPORT socket that the
/// record does not cover becomes the record; any other socket clears it. Either
/// way the bucket is now held by `bind()`.
pub(crate) fn bound(protocol: Protocol, new: &PcbView, memo: PortMemo) -> PortMemo {
    if protocol != Protocol::Tcp {
        return PortMemo::EMPTY;
    }
    if !new.flags.reuse_port() {
        return PortMemo(Memo::Held);
    }
    let record = fast_record(memo);
    if reuseport_match(record, new) {
        return memo;
    }
    PortMemo(Memo::Strict(FastOwner {
        uid: new.cred.uid,
        sk: Sk::of(new),
    }))
}

/// `inet_csk_find_open_port` (first pass: no sharing at all; the
/// `ip_autobind_reuse` pass is off by default) / `udp_lib_get_port(sk, 0)`.
pub(crate) fn bind_port_busy(protocol: Protocol, new: &PcbView, owners: &[PcbView]) -> bool {
    match protocol {
        Protocol::Tcp => scan_conflict(new, owners, false, false),
        Protocol::Udp => udp::port_busy(new, owners),
    }
}

/// `inet_csk_listen_start` re-runs `get_port` with the socket in LISTEN.
pub(crate) fn listen_check(
    protocol: Protocol,
    me: &PcbView,
    owners: &[PcbView],
    memo: PortMemo,
) -> Result<(), Error> {
    if protocol != Protocol::Tcp {
        return Err(Error::NotSupported);
    }
    let listening = PcbView {
        flags: me.flags.with_state(State::Listen),
        ..*me
    };
    if get_port_conflict(&listening, owners, memo) {
        Err(Error::AddrInUse)
    } else {
        Ok(())
    }
}

/// `inet_stream_connect` + `tcp_v4_connect` / `tcp_v6_connect`, and
/// `ip4_datagram_connect` / `ip6_datagram_connect` for UDP: the checks made
/// before a port is chosen.
pub(crate) fn check_connect(
    protocol: Protocol,
    me: &PcbView,
    remote: SocketAddr,
) -> Result<Endpoint, Error> {
    match (me.state(), protocol) {
        (State::Listen | State::Connected | State::TimeWait, Protocol::Tcp) => {
            return Err(Error::AlreadyConnected)
        }
        (State::Listen | State::TimeWait, Protocol::Udp) => return Err(Error::InvalidInput),
        (State::Dropped, _) => return Err(Error::InvalidInput),
        // UDP may connect again to another peer.
        (State::Closed | State::Bound, _) | (State::Connected, Protocol::Udp) => {}
    }
    match (me.family, remote, protocol) {
        (Family::Inet, SocketAddr::V6(_), _) => return Err(Error::FamilyNotSupported),
        // `__ip6_datagram_connect` takes a `sockaddr_in` as IPv4, unless V6ONLY.
        (Family::Inet6, SocketAddr::V4(_), Protocol::Udp) if ipv6_only_sock(me) => {
            return Err(Error::FamilyNotSupported)
        }
        // TCP: a `sockaddr_in` is shorter than SIN6_LEN_RFC2133.
        (Family::Inet6, SocketAddr::V4(_), Protocol::Tcp) => return Err(Error::InvalidInput),
        _ => {}
    }
    let peer = local_host_for_unspecified(me, Endpoint::new(remote));
    // `tcp_v6_connect` / `__ip6_datagram_connect`: a v4-mapped peer is
    // refused to a V6ONLY socket before the IPv4 connect is tried.
    if me.family == Family::Inet6 && peer.is_v4() && ipv6_only_sock(me) {
        return Err(Error::NetworkUnreachable);
    }
    if me.family == Family::Inet6 && peer.is_v4() && is_refused_source(&me.local.ip) {
        // `__inet6_bind` makes a v4-mapped address the IPv4 source
        // (`inet_saddr`) whatever its type, where `__inet_bind` leaves a
        // multicast or broadcast one out ("use device"); the route lookup
        // of `ip4_datagram_connect` / `tcp_v4_connect` then refuses a
        // multicast or limited-broadcast source before it looks at the peer.
        return Err(Error::InvalidInput);
    }
    if protocol == Protocol::Tcp && peer.ip.is_multicast() {
        return Err(Error::NetworkUnreachable);
    }
    if needs_scope(&peer) && me.device == 0 {
        // `tcp_v6_connect` / `ip6_datagram_connect`: "connect to link-local
        // address requires an interface"; with one, the route decides (the
        // source-address selector here).
        return Err(Error::InvalidInput);
    }
    // `ip6_dst_lookup_tail`: a v4-mapped source cannot reach an IPv6 peer.
    if me.family == Family::Inet6 && !peer.is_v4() && me.local.is_v4() {
        return Err(Error::FamilyNotSupported);
    }
    // Port 0 is a peer like any other: UDP is then connected to "this
    // address, any port" (`compute_score` checks `inet_dport` only when it
    // is set), and a TCP SYN goes out (the refusal is the peer's).
    Ok(peer)
}

/// A source address `ip_route_output_key_hash_rcu` refuses with EINVAL:
/// multicast, or the limited broadcast. (A source that is no local address,
/// such as the broadcast address of `lo`, fails there too, with
/// ENETUNREACH; which addresses are local is the stack's to know.)
fn is_refused_source(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_multicast() || v4.is_broadcast(),
        IpAddr::V6(_) => false,
    }
}

/// The source address of a `connect()` to `peer` from a socket bound to a
/// specific address. TCP `Inet6` to a v4-mapped peer: `tcp_v6_connect`
/// hands over to `tcp_v4_connect`, which sets the socket's receive address
/// from its IPv4 source (`sk_rcv_saddr_set(sk, inet->inet_saddr)`, which
/// also writes `sk_v6_rcv_saddr` in v4-mapped form) before anything can
/// fail; for a socket that `bind()` put on a specific IPv6 address that
/// source is `LOOPBACK4_IPV6` (see [`Flags::SOURCE_BOUND`]), so it is then
/// on `::ffff:127.0.0.6`, and stays there after a failure
/// (`inet_bhash2_reset_saddr` spares a locked address). A socket whose IPv6
/// address came from an earlier `connect()` (kept by a disconnect because
/// an accepted child inherits its listener's `SOCK_BINDADDR_LOCK`) has no
/// IPv4 source, and `tcp_v4_connect` chooses one by routing: `None`, the
/// stack's source-address selector decides. UDP keeps the IPv6 address
/// (`__ip4_datagram_connect` only fills an unset one).
pub(crate) fn bound_source(protocol: Protocol, me: &PcbView, peer: &Endpoint) -> Option<IpAddr> {
    let mapped_from_v6 = me.family == Family::Inet6 && peer.is_v4() && !me.local.is_v4();
    if protocol == Protocol::Tcp && mapped_from_v6 {
        // `tcp_v4_connect` routes from `inet_saddr` when it is set, and
        // chooses a source otherwise.
        me.flags
            .contains(Flags::SOURCE_BOUND)
            .then_some(IpAddr::V4(LOOPBACK4_IPV6))
    } else {
        Some(me.local.ip)
    }
}

/// The peer a `connect()` to an unspecified address reaches: the local host.
///
/// - IPv4 (also `::ffff:0.0.0.0`): `ip_route_connect` routes a zero
///   destination to the socket's IPv4 source address (`inet_saddr`), and
///   without one to `127.0.0.1` (`ip_route_output_key_hash_rcu`); the
///   socket's peer is that address. An `Inet6` socket that `bind()` put on
///   a specific IPv6 address has `LOOPBACK4_IPV6` (`127.0.0.6`) there
///   (`__inet6_bind`); one that got its IPv6 address from `connect()` has
///   none.
/// - `::`: `tcp_v6_connect` and `__ip6_datagram_connect` take it for
///   `::ffff:127.0.0.1` when the socket is bound to a v4-mapped address
///   (`::ffff:0.0.0.0` included), and for `::1` otherwise.
///
/// Any other peer is returned as it is.
pub(crate) fn local_host_for_unspecified(me: &PcbView, peer: Endpoint) -> Endpoint {
    if !peer.is_wildcard() {
        return peer;
    }
    let ip = match peer.ip {
        IpAddr::V4(_) if me.local.is_wildcard() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V4(_) if me.local.is_v4() => me.local.ip,
        IpAddr::V4(_) if me.flags.contains(Flags::SOURCE_BOUND) => IpAddr::V4(LOOPBACK4_IPV6),
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(_) if me.local.is_v4() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
    };
    Endpoint { ip, ..peer }
}

/// Whether `connect()` fails once the source address is chosen: a TCP
/// socket that has listened never connects again, even after `disconnect()`
/// stopped it listening. The running 6.18 kernel answers EINVAL through
/// `tcp_v4_connect`'s failure path, with its traces (see
/// [`after_failed_connect`]): no port is taken, a port `bind()` chose is
/// given back, and a source chosen for a locked wildcard stays.
pub(crate) fn connect_refused(protocol: Protocol, me: &PcbView) -> Option<Error> {
    (protocol == Protocol::Tcp && me.flags.contains(Flags::LISTENED)).then_some(Error::InvalidInput)
}

/// Whether an unbound `connect()` must pass over a candidate port.
///
/// TCP (`__inet_hash_connect`): a port whose bucket `bind()` or `listen()`
/// holds is skipped (its `fastreuse`/`fastreuseport` is not `-1`; `memo`
/// keeps that history), whatever the addresses; otherwise the 4-tuple must be
/// free. UDP
/// (`inet_autobind`): the port is chosen as `bind(port 0)` on the wildcard
/// address would choose it.
pub(crate) fn connect_port_busy(
    protocol: Protocol,
    new: &PcbView,
    owners: &[PcbView],
    holder: Option<&PcbView>,
    memo: PortMemo,
) -> bool {
    match protocol {
        Protocol::Tcp => holder.is_some() || memo.held_by_bind(),
        Protocol::Udp => {
            let unbound = PcbView {
                local: Endpoint::unspecified(new.family).with_port(new.local.port),
                ..*new
            };
            udp::port_busy(&unbound, owners)
        }
    }
}

/// `tcp_twsk_unique` for an unbound `connect()` (`twp` set): a TIME_WAIT
/// `holder` gives way when the stack marked it reusable (timestamps seen,
/// `tcp_tw_reuse_delay` passed: [`Flags::TW_REUSABLE`]) and `tcp_tw_reuse`
/// allows it; with 2, only for loopback traffic: a loopback address at
/// either end (v4-mapped too) or the loopback device (`LOOPBACK_IFINDEX`,
/// 1).
pub(crate) fn tw_reusable(mode: TwReuse, holder: &PcbView) -> bool {
    if holder.state() != State::TimeWait || !holder.flags.contains(Flags::TW_REUSABLE) {
        return false;
    }
    match mode {
        TwReuse::On => true,
        TwReuse::Loopback => {
            let loopback = |ip: IpAddr| ip.to_canonical().is_loopback();
            holder.device == 1 || loopback(holder.local.ip) || loopback(holder.remote.ip)
        }
        _ => false,
    }
}

/// `__inet_check_established` for a bound TCP socket: a TIME_WAIT twin gives
/// way, anything else is `EADDRNOTAVAIL`. UDP never checks the 4-tuple.
pub(crate) fn connect_tuple_taken(
    protocol: Protocol,
    holder: &PcbView,
) -> Result<TupleTaken, Error> {
    match protocol {
        Protocol::Udp => Ok(TupleTaken::Share),
        Protocol::Tcp if holder.state() == State::TimeWait => Ok(TupleTaken::Replace),
        Protocol::Tcp => Err(Error::AddrNotAvailable),
    }
}

/// The failure path of `tcp_v4_connect` / `tcp_v6_connect` after
/// `inet_hash_connect` refused the 4-tuple: `tcp_set_state(TCP_CLOSE)` gives
/// back a port that `bind()` chose (no `SOCK_BINDPORT_LOCK`), and
/// `inet_bhash2_reset_saddr` forgets the source address set for the connect
/// only if the address was not locked: a locked one keeps it, which is the
/// source chosen for `::ffff:0.0.0.0`, or `::ffff:127.0.0.6` for a specific
/// IPv6 address and a v4-mapped peer (see [`bound_source`]).
pub(crate) fn after_failed_connect(
    protocol: Protocol,
    me: &PcbView,
    source: std::net::IpAddr,
) -> AfterFailedConnect {
    if protocol != Protocol::Tcp {
        return AfterFailedConnect::Unchanged;
    }
    let ip = if me.flags.contains(Flags::ADDR_LOCKED) {
        source
    } else {
        me.local.ip
    };
    if !me.flags.contains(Flags::PORT_LOCKED) {
        AfterFailedConnect::Released(ip)
    } else if ip != me.local.ip {
        AfterFailedConnect::Rebound(ip)
    } else {
        AfterFailedConnect::Unchanged
    }
}

/// Whether a `connect()` leaves the PCB a last peer ([`Flags::LAST_PEER`]):
/// on an `Inet6` UDP socket, `ip6_datagram_connect` stores the peer (an
/// IPv4 one v4-mapped) in `sk_v6_daddr`, and `__udp_disconnect` resets
/// `inet_daddr` and `inet_dport` but not `sk_v6_daddr`. The running 6.18
/// kernel keeps it across a `disconnect()` that gives the port back and a
/// new autobind too; only another `connect()` replaces it.
pub(crate) fn remembers_peer(protocol: Protocol, family: Family) -> bool {
    protocol == Protocol::Udp && family == Family::Inet6
}

/// IPv6 `compute_score` on a socket that is not connected but has a last
/// peer (see [`remembers_peer`]): `!ipv6_addr_any(&sk->sk_v6_daddr)`, so a
/// datagram whose source is another address (every IPv6 source, after a
/// v4-mapped peer) does not match, and one from that address scores a
/// point more than a socket without a peer. `rank` is the socket's
/// [`wildcard_rank`] for an IPv6 packet.
pub(crate) fn last_peer_rank(rank: u32, last: &Ipv6Addr, source: &Ipv6Addr) -> Option<u32> {
    (last == source).then_some(rank + 1)
}

/// `LOOPBACK4_IPV6`: the IPv4 source address `__inet6_bind` gives a socket
/// on a specific IPv6 address.
const LOOPBACK4_IPV6: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 6);

/// `__udp_disconnect`: the address is kept only if it was bound explicitly,
/// and the port only if it was.
pub(crate) fn disconnect(me: &PcbView) -> Result<Disconnect, Error> {
    Ok(Disconnect {
        keep_addr: me.flags.contains(Flags::ADDR_LOCKED),
        keep_port: me.flags.contains(Flags::PORT_LOCKED),
    })
}

/// `tcp_disconnect` (`connect(AF_UNSPEC)` on TCP), as 6.18 answers it:
///
/// - a connected PCB is aborted (the stack sends the RST); `tcp_set_state(
///   TCP_CLOSE)` gives back a port that `bind()` was not given
///   (`SOCK_BINDPORT_LOCK`; an accepted PCB never has it, `sk_clone_lock`
///   clears it), and the address goes back to the wildcard unless `bind()`
///   named it. It may `connect()` again, but `listen()` is refused from now
///   on (see [`Flags::CONNECTED_ONCE`]);
/// - a listener stops listening, with the same rule for its port; it may
///   `listen()` again, but never `connect()` (see [`Flags::LISTENED`]);
/// - a PCB that is neither is left as it is.
pub(crate) fn disconnect_tcp(me: &PcbView) -> Result<Disconnect, Error> {
    match me.state() {
        State::TimeWait | State::Dropped => Err(Error::InvalidInput),
        _ => Ok(Disconnect {
            keep_addr: me.flags.contains(Flags::ADDR_LOCKED),
            keep_port: me.flags.contains(Flags::PORT_LOCKED),
        }),
    }
}

/// `inet_reuseport_add_sock` / `udp_reuseport_add_sock`: the new member
/// `me` joins (or founds a group with) the first socket `other` on its
/// port, in the port's list order, that has SO_REUSEPORT set *now*, the same
/// family, V6ONLY and owner, and exactly the same local address; for TCP it
/// must listen. Neither side's history counts: a socket that set the option
/// after `bind()` is pulled into a group here, and so is a UDP socket that
/// left its group by connecting (its address still matches).
pub(crate) fn group_mate(protocol: Protocol, me: &PcbView, other: &PcbView) -> bool {
    if protocol == Protocol::Tcp && other.state() != State::Listen {
        return false;
    }
    other.flags.reuse_port() && group_key(other) == group_key(me)
}

/// `__inet_lookup_listener` / `__udp4_lib_lookup`: a PCB bound to the packet's
/// address (the first pass) before a wildcard one (the second pass); within a
/// pass, AF_INET scores one more than AF_INET6 (`compute_score`). For TCP only
/// listeners take packets in this stage.
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
    if local.is_v4() && ipv6_only_sock(candidate) {
        return None;
    }
    let specific = if local.is_v4() {
        !candidate.local_v4().is_wildcard()
    } else {
        !candidate.local.is_wildcard()
    };
    let family_bonus = u32::from(candidate.family == Family::Inet);
    Some(if specific { SPECIFIC } else { 0 } + 1 + family_bonus)
}

/// The rank, among [`wildcard_rank`]s, of a UDP socket connected to the
/// packet's address with port 0 (it is on a specific address, so in the
/// first pass), before its device points. IPv4 `compute_score` gives a set
/// `inet_daddr` four points, as many as a device earns (see
/// [`device_rank`]): an unconnected socket on the packet's device ties with
/// it, and the list order decides. IPv6 gives a set `sk_v6_daddr` one, as
/// much as an unconnected socket gets for its device or for a last peer
/// that is the packet's source (see [`last_peer_rank`]). Between two such
/// sockets, IPv4 gives `AF_INET` one point more than `AF_INET6`.
pub(crate) fn any_port_peer_rank(local: &Endpoint, family: Family) -> u32 {
    let specific = SPECIFIC + 1;
    if local.is_v4() {
        specific + u32::from(family == Family::Inet) + 4
    } else {
        specific + 1
    }
}

/// The rank bonus of a PCB bound to the packet's own address.
pub(crate) const SPECIFIC: u32 = 10;

/// The middle of the `seq` space: head insertions count up from it, tail
/// insertions count down.
const LIST_MIDDLE: u64 = 1 << 62;

/// `__inet_hash` (listeners, at `listen()`) and `udp_lib_get_port` (both of
/// its lists, at bind): an AF_INET6 SO_REUSEPORT socket goes to the
/// tail of its list, any other socket to the head. A lookup takes the first
/// socket of the best score in list order, so among equals the newest head
/// insertion wins, and without one the oldest tail insertion. The `seq`
/// encodes that order (larger is earlier in the list).
pub(crate) fn insertion_seq(family: Family, flags: Flags, counter: u64) -> u64 {
    if family == Family::Inet6 && flags.reuse_port() {
        LIST_MIDDLE - counter
    } else {
        LIST_MIDDLE + counter
    }
}

/// `udp_lib_rehash`: a UDP socket whose address changes (a `connect()` from
/// a wildcard address, or the `disconnect()` that follows it) goes to the
/// head of its new list, whatever its family and options.
pub(crate) fn rehash_seq(counter: u64) -> u64 {
    LIST_MIDDLE + counter
}

/// `inet_reuseport_add_sock` / `udp_reuseport_add_sock`: same family, V6ONLY,
/// owner and exact address.
pub(crate) fn group_key(view: &PcbView) -> Option<GroupKey> {
    if !view.flags.reuse_port() {
        return None;
    }
    Some(GroupKey {
        family: view.family,
        v6only: ipv6_only_sock(view),
        uid: Some(view.cred.uid),
        local: view.local,
        device: view.device,
    })
}

/// `inet_bind_conflict` / `udp_lib_lport_inuse`: two PCBs can only
/// conflict when their devices overlap, that is when one of them is bound
/// to no device or both to the same one
/// (`!sk->sk_bound_dev_if || !sk2->sk_bound_dev_if || equal`).
pub(crate) fn devices_overlap(a: &PcbView, b: &PcbView) -> bool {
    a.device == 0 || b.device == 0 || a.device == b.device
}

/// The device part of `compute_score` for a `candidate` bound to a device
/// and a packet to `local` that arrived on `device`: a PCB bound to
/// another device (or a packet whose device is unknown) does not match
/// (`inet_bound_dev_eq`, without VRF); one bound to the packet's device
/// scores more than an unbound one: 4 points for IPv4 UDP (`udp.c`), 1 for
/// TCP (`inet_hashtables.c`: `sk_bound_dev_if ? 2 : 1`) and IPv6 UDP.
pub(crate) fn device_rank(
    protocol: Protocol,
    candidate: &PcbView,
    local: &SocketAddr,
    device: Option<Device>,
) -> Option<u32> {
    match candidate.device() {
        None => Some(0),
        Some(bound) if Some(bound) == device => {
            Some(if protocol == Protocol::Udp && local.is_ipv4() {
                4
            } else {
                1
            })
        }
        Some(_) => None,
    }
}
