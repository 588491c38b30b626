//! FreeBSD's rules: `in_pcbbind_avail`, `in6_pcbbind_avail`, `in_pcb_lport_dest`,
//! `in_pcblookup_hash` and SO_REUSEPORT_LB groups (FreeBSD 14/15).
//!
//! Jails are outside the table's knowledge: every PCB is in the same prison,
//! which is the case the kernel's tests exercise by default. FIBs are in
//! `fib.rs`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;

use super::{
    best_fit, canonical_endpoint, check_privilege, exact_unconnected, wild_match, Af,
    AfterFailedConnect, DeviceBinding, Disconnect, GroupFit, GroupKey, Lookup, PcbView, PortMemo,
    PortRange, PortScan, Rules, TupleTaken,
};
use crate::addr::{Endpoint, Family};
use crate::cred::Device;
use crate::error::Error;
use crate::flags::{Flags, State};
use crate::policy::Protocol;

mod fib;
mod multi;

pub(crate) use fib::Fibs;

/// FreeBSD's rules for one protocol, with its `connect()` sysctls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FreeBsd {
    pub(crate) protocol: Protocol,
    pub(crate) connect_wild: ConnectWild,
    /// `net.inet.tcp.bind_all_fibs` / `net.inet.udp.bind_all_fibs` (see
    /// `fib.rs`).
    pub(crate) bind_all_fibs: bool,
}

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
    fibs: Fibs,
    af: Af,
    local: &Endpoint,
) -> Option<&'a PcbView> {
    let candidates = owners
        .iter()
        .filter(|view| fibs.shares(new, view))
        .map(|view| (*view, view));
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
///
/// `fibs` scopes the reuse check (`in6_pcblookup_local(..., fib,
/// lookupflags, cred)`); the other-owner check and the IPv4 half of a
/// dual-stack `::` pass `RT_ALL_FIBS`.
pub(crate) fn bind_conflict(
    protocol: Protocol,
    fibs: Fibs,
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
        if let Some(t) = lookup_local(new, owners, fibs, Af::V4, &local) {
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
    if let Some(t) = lookup_local(new, owners, fibs, Af::V6, &local) {
        if !shares_with(t) {
            return Err(Error::AddrInUse);
        }
    }
    if dual {
        if let Some(t) = lookup_local(new, owners, Fibs::ALL, Af::V4, &v4_any) {
            // A plain IPv4 PCB on 0.0.0.0 does not block a dual-stack `::`.
            if !shares_with(t) && (!t.local_v4().is_wildcard() || t.family == Family::Inet6) {
                return Err(Error::AddrInUse);
            }
        }
    }
    Ok(())
}

/// `in_pcb_lport_dest` without a peer: a candidate port is taken when
/// `in_pcblookup_local` (in the binder's mode, over every FIB:
/// `RT_ALL_FIBS`) finds anything on it.
pub(crate) fn bind_port_busy(new: &PcbView, owners: &[PcbView]) -> bool {
    let local = new.local;
    let all = Fibs::ALL;
    if local.is_v4() {
        return lookup_local(new, owners, all, Af::V4, &local).is_some();
    }
    lookup_local(new, owners, all, Af::V6, &local).is_some()
        || (new.takes_v4() && lookup_local(new, owners, all, Af::V4, &new.local_v4()).is_some())
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
    if !wild_match(candidate, local) {
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
/// With `bind_all_fibs` off, a group is per FIB (`il_fibnum`).
pub(crate) fn group_key(view: &PcbView, fibs: Fibs) -> Option<GroupKey> {
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
        device: fibs.group_of(view),
    })
}

/// [`wildcard_rank`] as [`Lookup::rank`] takes it.
fn rank(candidate: &PcbView, local: &SocketAddr) -> Option<(u32, u64)> {
    wildcard_rank(candidate, &canonical_endpoint(local))
}

/// `hash % il_inpcnt` (`in_pcblookup_lbgroup`).
fn pick_member(hash: u64, members: usize) -> usize {
    (hash % members as u64) as usize
}

/// `INPCBLBGROUP_SIZMIN`.
const GROUP_SLOTS_MIN: usize = 8;

/// `INPCBLBGROUP_SIZMAX`.
const GROUP_SLOTS_MAX: usize = 256;

impl FreeBsd {
    /// What the FIBs scope, as `bind_all_fibs` says.
    fn fibs(&self) -> Fibs {
        Fibs {
            scoped: !self.bind_all_fibs,
        }
    }
}

impl Rules for FreeBsd {
    /// `net.inet.ip.portrange.first` and `.last`.
    fn default_ephemeral(&self) -> RangeInclusive<u16> {
        10000..=65535
    }

    /// `net.inet6.ip6.v6only=1`.
    fn default_v6only(&self) -> bool {
        true
    }

    /// Every option but Linux's `IP_BIND_ADDRESS_NO_PORT`.
    fn has_option(&self, bit: Flags) -> bool {
        bit != Flags::BIND_NO_PORT
    }

    fn check_bind(&self, me: &PcbView, local: SocketAddr) -> Result<SocketAddr, Error> {
        check_bind(self.protocol, me, local).map(|local| SocketAddr::new(local.ip, local.port))
    }

    fn bind_sets(&self, _me: &PcbView, _local: SocketAddr) -> Flags {
        Flags::EMPTY
    }

    fn bind_conflict(
        &self,
        new: &PcbView,
        owners: &[PcbView],
        _memo: PortMemo,
    ) -> Result<(), Error> {
        bind_conflict(self.protocol, self.fibs(), new, owners)
    }

    /// FreeBSD remembers nothing of a port beyond its PCBs.
    fn bound(&self, _new: &PcbView, memo: PortMemo) -> PortMemo {
        memo
    }

    fn bind_port_busy(&self, new: &PcbView, owners: &[PcbView], _listening: bool) -> bool {
        bind_port_busy(new, owners)
    }

    fn bind_scan(&self, _me: &PcbView) -> PortScan {
        PortScan::Rover
    }

    /// `IP_PORTRANGE` names a range; any range of real ports stands for it
    /// here (ends in either order, as `in_pcb_lport_dest` scans both ways).
    fn check_port_range(&self, range: RangeInclusive<u16>) -> Result<(u16, u16), Error> {
        let (first, last) = range.into_inner();
        if first == 0 || last == 0 {
            return Err(Error::InvalidInput);
        }
        Ok((first, last))
    }

    /// `in_pcb_lport_dest`: the PCB's range replaces the table's, and
    /// `IP_PORTRANGE_LOW` (a range below `IPPORT_RESERVED`) needs
    /// `PRIV_NETINET_RESERVEDPORT` (`priv_check_cred`: EPERM).
    fn port_range(
        &self,
        me: &PcbView,
        table: PortRange,
        own: Option<(u16, u16)>,
    ) -> Result<PortRange, Error> {
        let Some((first, last)) = own else {
            return Ok(table);
        };
        if check_privilege(&me.cred, first.min(last)).is_err() {
            return Err(Error::NotPermitted);
        }
        Ok(PortRange {
            first,
            last,
            own: true,
        })
    }

    /// `in_pcb_lport_dest`: EADDRNOTAVAIL when the range is used up.
    fn bind_exhausted(&self) -> Error {
        Error::AddrNotAvailable
    }

    fn failed_bind_forgets_address(&self) -> bool {
        false
    }

    /// `in_pcblisten` checks nothing more.
    fn listen_check(
        &self,
        _me: &PcbView,
        _owners: &[PcbView],
        _memo: PortMemo,
    ) -> Result<(), Error> {
        Ok(())
    }

    fn listen_refused_after_connect(&self, _flags: Flags) -> bool {
        false
    }

    /// A listener keeps the place it took at `bind()`.
    fn inserts_at_listen(&self) -> bool {
        false
    }

    fn remembers(&self, _state: State) -> Flags {
        Flags::EMPTY
    }

    fn check_connect(&self, me: &PcbView, remote: SocketAddr) -> Result<SocketAddr, Error> {
        check_connect(self.protocol, self.connect_wild, me, remote)
            .map(|peer| SocketAddr::new(peer.ip, peer.port))
    }

    /// `soconnectat`: "if connected, try to disconnect first", for a
    /// protocol without `PR_CONNREQUIRED`, that is UDP.
    fn disconnects_before_connect(&self, me: &PcbView) -> bool {
        self.protocol == Protocol::Udp && me.state() == State::Connected
    }

    fn binds_before_connect(&self, _me: &PcbView) -> bool {
        false
    }

    /// Never reached: FreeBSD binds no port before `connect()` looks at the
    /// peer; `in_pcb_lport_dest` answers EADDRNOTAVAIL when the range is
    /// used up.
    fn connect_autobind_failed(&self) -> Error {
        Error::AddrNotAvailable
    }

    fn bound_source(&self, me: &PcbView, _peer: SocketAddr) -> Option<IpAddr> {
        Some(me.local.ip)
    }

    fn connect_refused(&self, _me: &PcbView) -> Option<Error> {
        None
    }

    /// `in_pcbconnect_setup`: a taken 4-tuple is EADDRINUSE.
    fn connect_tuple_taken(&self, _holder: &PcbView) -> Result<TupleTaken, Error> {
        Err(Error::AddrInUse)
    }

    fn after_failed_connect(&self, _me: &PcbView, _source: IpAddr) -> AfterFailedConnect {
        AfterFailedConnect::Unchanged
    }

    fn connect_scan(&self) -> PortScan {
        PortScan::Rover
    }

    /// `in_pcb_lport_dest` with a peer: the port is taken when the 4-tuple
    /// is (`in_pcblookup_hash_locked`), or when an unconnected PCB would take
    /// the connection's packets.
    fn connect_port_busy(
        &self,
        new: &PcbView,
        owners: &[PcbView],
        holder: Option<&PcbView>,
        _memo: PortMemo,
    ) -> bool {
        holder.is_some() || owners.iter().any(|o| wild_match(o, &new.local))
    }

    fn connect_holder_busy(&self) -> bool {
        true
    }

    fn remembers_peer(&self, _family: Family) -> bool {
        false
    }

    fn newest_connection_first(&self) -> bool {
        false
    }

    /// TCP has no `connect(AF_UNSPEC)`; UDP: `udp_disconnect`.
    fn disconnect(&self, me: &PcbView) -> Result<Disconnect, Error> {
        match self.protocol {
            Protocol::Tcp => Err(Error::NotSupported),
            Protocol::Udp => disconnect(me),
        }
    }

    /// `in_pcbdisconnect` zeroes the address in the family the connection
    /// used: an `Inet6` PCB that connected to a v4-mapped peer keeps only
    /// `INP_IPV4` and ends on the IPv4 wildcard (`::ffff:0.0.0.0`).
    fn disconnected_wildcard(&self, family: Family, local: SocketAddr) -> SocketAddr {
        let family = if local.is_ipv4() {
            Family::Inet
        } else {
            family
        };
        let wildcard = Endpoint::unspecified(family);
        SocketAddr::new(wildcard.ip, local.port())
    }

    /// `in_pcbdisconnect` takes the PCB out of the hash with
    /// `in_pcbremhash_locked`, and only `in_pcbinshash` puts it back.
    fn disconnect_reinserts(&self) -> bool {
        true
    }

    fn rejoins_group_on_disconnect(&self) -> bool {
        true
    }

    fn wildcard_disconnect_leaves_group(&self, _me: &PcbView) -> bool {
        false
    }

    /// `solisten_clone` copies only `SO_KEEPALIVE | SO_DONTROUTE |
    /// SO_LINGER | SO_OOBINLINE | SO_NOSIGPIPE` of the listener's options:
    /// no reuse option.
    fn accept_inherits(&self) -> Flags {
        Flags::V6ONLY | Flags::ADDR_LOCKED | Flags::PORT_LOCKED
    }

    /// Insertion order: newer first.
    fn insertion_seq(&self, _family: Family, _flags: Flags, counter: u64) -> u64 {
        counter
    }

    fn rehash_seq(&self, _counter: u64) -> Option<u64> {
        None
    }

    /// One pass ranked by [`wildcard_rank`]; a member, active or pending,
    /// asks its group (its active members take the flow).
    fn lookup(&self) -> Lookup {
        Lookup {
            rank,
            first_pass: 0,
            group_bits: Flags::IN_GROUP | Flags::GROUP_PENDING,
            group_needs_reuseport: false,
            group_stops_walk: false,
            any_port: false,
            pick: pick_member,
            pick_skips_connected: false,
            device: None,
        }
    }

    /// Never asked: no FreeBSD PCB answers for any port.
    fn any_port_peer_rank(&self, _local: SocketAddr, _family: Family) -> u32 {
        u32::MAX
    }

    /// Never asked: no FreeBSD PCB keeps a last peer.
    fn last_peer_rank(&self, rank: u32, _last: &Ipv6Addr, _source: &Ipv6Addr) -> Option<u32> {
        Some(rank)
    }

    fn group_key(&self, view: &PcbView) -> Option<GroupKey> {
        group_key(view, self.fibs())
    }

    fn bind_device(&self, me: &PcbView, device: Option<Device>) -> Result<DeviceBinding, Error> {
        self.fibs().set_fib(me, device).map(DeviceBinding::Fib)
    }

    fn fib_scopes_lookups(&self) -> bool {
        self.fibs().scoped
    }

    /// Groups go by key.
    fn group_mate(&self, _me: &PcbView, _other: &PcbView) -> Option<bool> {
        None
    }

    /// `in_pcbinshash` calls `in_pcbinslbgrouphash` only `if (so_options &
    /// SO_REUSEPORT_LB)`: an option set later joins nothing, and clearing it
    /// leaves nothing.
    fn group_decided_at_bind(&self) -> bool {
        true
    }

    /// `in_pcblbgroup_insert`: a TCP member is not visible to lookups until
    /// `listen()`.
    fn joins_pending(&self, view: &PcbView) -> bool {
        self.protocol == Protocol::Tcp && view.state() != State::Listen
    }

    fn group_initial_slots(&self) -> usize {
        GROUP_SLOTS_MIN
    }

    /// `in_pcbinslbgrouphash`: `il_inpcnt + il_pendcnt == il_inpsiz`
    /// doubles the group up to `INPCBLBGROUP_SIZMAX`, then refuses.
    fn group_fit(&self, members: usize, slots: usize) -> GroupFit {
        if members < slots {
            GroupFit::Join
        } else if slots >= GROUP_SLOTS_MAX {
            GroupFit::Full
        } else {
            GroupFit::Grow(slots * 2)
        }
    }

    fn keeps_bucket_history(&self) -> bool {
        false
    }

    fn joins_connect_only_bucket(
        &self,
        _mate: Option<&PcbView>,
        _by_connect: bool,
        _memo: PortMemo,
    ) -> bool {
        false
    }

    fn left_bucket_connect_only(&self, _others: &mut dyn Iterator<Item = PcbView>) -> bool {
        false
    }

    fn port_left(&self, memo: PortMemo, _others: &mut dyn Iterator<Item = PcbView>) -> PortMemo {
        memo
    }

    /// `udp_multi_input`'s match (see `multi.rs`).
    fn delivers_to(
        &self,
        view: &PcbView,
        _last_peer: Option<&Ipv6Addr>,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> bool {
        multi::delivers_to(view, local, remote)
    }

    /// A receiver without SO_REUSEADDR, SO_REUSEPORT or SO_REUSEPORT_LB
    /// ends the walk.
    fn delivery_ends_after(&self, view: &PcbView) -> bool {
        multi::delivery_ends_after(view)
    }

    /// `ipi_listhead`: newest first.
    fn delivery_order(
        &self,
        view: &PcbView,
        _bound_seq: u64,
        _local: SocketAddr,
        _port_len: usize,
    ) -> (u32, u64) {
        (0, view.seq)
    }
}

#[cfg(test)]
mod tests;
