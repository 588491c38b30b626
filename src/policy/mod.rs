//! Bind-conflict and lookup-preference rules, as pure functions of hash-safe views.
//!
//! A policy never sees a PCB, only a [`PcbView`]: a copy of the fields that are
//! safe to read under an epoch guard (tuple, `flags2` word, credential). It has
//! no way to reach a socket, so the bug FreeBSD's PCB cache was invented to
//! fix (following another PCB's socket pointer during a bind check) cannot be
//! written here.
//!
//! The table calls the functions of this module; they dispatch on [`Policy`]
//! to `freebsd` or `linux`. Rules that both kernels share live here.

pub(crate) mod freebsd;
pub(crate) mod linux;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;

use crate::addr::{Endpoint, Family};
use crate::error::Error;
use crate::flags::{Flags, State};
use crate::pcb::Cred;
use crate::sync::{lock, Mutex};

/// Which kernel's rules the table follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Policy {
    /// FreeBSD 14/15: `in_pcbbind_avail`, `in_pcb_lport_dest`,
    /// `in_pcblookup_hash`, SO_REUSEPORT_LB groups.
    #[default]
    FreeBsd,
    /// Linux 6.18: `inet_csk_get_port`, `inet_bind_conflict`,
    /// `__inet_hash_connect`, `__inet_lookup_listener`, reuseport groups.
    Linux,
}

/// The transport protocol of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Protocol {
    /// TCP: listen, accept, TIME_WAIT.
    #[default]
    Tcp,
    /// UDP: no listen; disconnect with `connect(AF_UNSPEC)`.
    Udp,
}

/// The table's rule set: a policy for one protocol, with the policy's
/// settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rules {
    pub(crate) policy: Policy,
    pub(crate) protocol: Protocol,
    /// FreeBSD's sysctls for `connect()` to an unspecified or broadcast peer.
    pub(crate) connect_wild: ConnectWild,
}

pub(crate) use freebsd::ConnectWild;

/// What a policy may see of a PCB: copies of its hash-safe fields.
///
/// This type maintains the invariant that it holds no reference into the table
/// or to a socket: it is plain data, taken under an epoch guard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PcbView {
    pub(crate) family: Family,
    pub(crate) cred: Cred,
    pub(crate) flags: Flags,
    pub(crate) local: Endpoint,
    /// Unspecified with port 0 unless connected.
    pub(crate) remote: Endpoint,
    /// The PCB's place among those a lookup ranks equally: larger is
    /// preferred. FreeBSD: insertion order (newer first). Linux: the order of
    /// the kernel's lists (see [`insertion_seq`]).
    pub(crate) seq: u64,
    /// The place of the PCB's load-balance group among the groups of its
    /// port (FreeBSD: a group goes to the head of its bucket when created or
    /// resized; larger is newer). 0 outside a group.
    pub(crate) group_seq: u64,
}

impl PcbView {
    pub(crate) fn state(&self) -> State {
        self.flags.state()
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.remote.port != 0 || !self.remote.is_wildcard()
    }

    /// Whether the PCB takes IPv4 traffic: `Inet`, an `Inet6` PCB bound to a
    /// v4-mapped address, or an `Inet6` PCB on `::` without V6ONLY (FreeBSD
    /// `INP_IPV4`; Linux `!ipv6_only_sock`).
    pub(crate) fn takes_v4(&self) -> bool {
        match self.family {
            Family::Inet => true,
            Family::Inet6 => {
                self.local.is_v4() || (self.local.is_wildcard() && !self.flags.v6only())
            }
        }
    }

    /// Whether the PCB takes IPv6 traffic: an `Inet6` PCB bound to an IPv6
    /// address, `::` included (FreeBSD `INP_IPV6`).
    pub(crate) fn takes_v6(&self) -> bool {
        self.family == Family::Inet6 && !self.local.is_v4()
    }

    /// The PCB's local address as IPv4 traffic sees it: a dual-stack `::` is
    /// `0.0.0.0`. Only meaningful when [`takes_v4`](Self::takes_v4).
    pub(crate) fn local_v4(&self) -> Endpoint {
        if self.local.is_v4() {
            self.local
        } else {
            Endpoint {
                ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                port: self.local.port,
            }
        }
    }
}

/// Which address family a search is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Af {
    V4,
    V6,
}

impl Af {
    pub(crate) fn of(endpoint: &Endpoint) -> Af {
        if endpoint.is_v4() {
            Af::V4
        } else {
            Af::V6
        }
    }

    fn takes(self, view: &PcbView) -> bool {
        match self {
            Af::V4 => view.takes_v4(),
            Af::V6 => view.takes_v6(),
        }
    }

    fn local_of(self, view: &PcbView) -> Endpoint {
        match self {
            Af::V4 => view.local_v4(),
            Af::V6 => view.local,
        }
    }
}

/// FreeBSD `in_pcblookup_local(..., INPLOOKUP_WILDCARD)`: the best-fitting PCB
/// on `local`'s port, connected or not, where either side may be a wildcard.
///
/// Lower cost wins: +3 for a dual-stack `Inet6` PCB seen from IPv4
/// (`INP_LOOKUP_MAPPED_PCB_COST`), +1 if connected, +1 if exactly one side of
/// the address pair is a wildcard. Ties go to the newest PCB.
pub(crate) fn best_fit<T: Copy>(
    candidates: impl Iterator<Item = (PcbView, T)>,
    af: Af,
    local: &Endpoint,
) -> Option<(PcbView, T)> {
    let mut best: Option<(PcbView, T)> = None;
    let mut best_cost = match af {
        Af::V4 => 6,
        Af::V6 => 3,
    };
    for (view, item) in candidates {
        if view.local.port != local.port || !af.takes(&view) {
            continue;
        }
        let mut cost = 0;
        if af == Af::V4 && view.takes_v6() {
            cost += 3;
        }
        if view.is_connected() {
            cost += 1;
        }
        let theirs = af.local_of(&view);
        if !theirs.is_wildcard() {
            if local.is_wildcard() {
                cost += 1;
            } else if theirs.ip != local.ip {
                continue;
            }
        } else if !local.is_wildcard() {
            cost += 1;
        }
        let newer = best.is_some_and(|(b, _)| view.seq > b.seq);
        if cost < best_cost || (cost == best_cost && newer) {
            best = Some((view, item));
            best_cost = cost;
        }
    }
    best
}

/// FreeBSD `in_pcblookup_local(..., 0)`: the newest unconnected PCB bound to
/// exactly `local` (a wildcard matches only a wildcard).
pub(crate) fn exact_unconnected<T: Copy>(
    candidates: impl Iterator<Item = (PcbView, T)>,
    af: Af,
    local: &Endpoint,
) -> Option<(PcbView, T)> {
    candidates
        .filter(|(view, _)| {
            !view.is_connected()
                && view.local.port == local.port
                && af.takes(view)
                && af.local_of(view).ip == local.ip
        })
        .max_by_key(|(view, _)| view.seq)
}

/// How well an unconnected PCB fits a packet for `local`, if at all, in the
/// wildcard stage of a lookup: the greatest key wins.
pub(crate) fn wildcard_rank(
    rules: Rules,
    candidate: &PcbView,
    local: &Endpoint,
) -> Option<(u32, u64)> {
    match rules.policy {
        Policy::FreeBsd => freebsd::wildcard_rank(candidate, local),
        // Ties go to the PCB first in the kernel's lists.
        Policy::Linux => {
            linux::wildcard_rank(rules.protocol, candidate, local).map(|rank| (rank, candidate.seq))
        }
    }
}

/// Whether a wildcard-stage `rank` for a packet to `local` comes from the
/// pass over the packet's own address (Linux looks there first, then at the
/// wildcard address), where a PCB connected from that address is listed.
pub(crate) fn same_pass(rules: Rules, rank: u32, local: &Endpoint) -> bool {
    match rules.policy {
        Policy::FreeBsd => true,
        Policy::Linux => linux::specific_rank(rank, local),
    }
}

/// Whether `view` would match `local` in the wildcard stage at all (any rank).
pub(crate) fn wild_match(view: &PcbView, local: &Endpoint) -> bool {
    let af = Af::of(local);
    if view.is_connected() || view.local.port != local.port || !af.takes(view) {
        return false;
    }
    let theirs = af.local_of(view);
    theirs.is_wildcard() || theirs.ip == local.ip
}

/// Checks made before any table work on `bind()`: state, family, privilege.
/// Returns the canonical local endpoint.
pub(crate) fn check_bind(rules: Rules, me: &PcbView, local: SocketAddr) -> Result<Endpoint, Error> {
    match rules.policy {
        Policy::FreeBsd => freebsd::check_bind(rules.protocol, me, local),
        Policy::Linux => linux::check_bind(rules.protocol, me, local),
    }
}

/// The bind-conflict decision for an explicit port: `new` (already carrying
/// its local endpoint) against the other PCBs on that port, given what the
/// policy remembers about the port.
pub(crate) fn bind_conflict(
    rules: Rules,
    new: &PcbView,
    owners: &[PcbView],
    memo: PortMemo,
) -> Result<(), Error> {
    match rules.policy {
        Policy::FreeBsd => freebsd::bind_conflict(rules.protocol, new, owners),
        Policy::Linux => linux::bind_conflict(rules.protocol, new, owners, memo),
    }
}

/// What the policy remembers about the port once `new` (in its new state)
/// holds it after a successful `bind()` or `listen()`; `memo` is the memory
/// before the call.
pub(crate) fn bound(rules: Rules, new: &PcbView, memo: PortMemo) -> PortMemo {
    match rules.policy {
        Policy::FreeBsd => memo,
        Policy::Linux => linux::bound(rules.protocol, new, memo),
    }
}

/// Flag bits a successful `bind()` to `local` sets on the PCB besides the
/// address and port locks (Linux forces V6ONLY on a specific IPv6 address).
pub(crate) fn bind_sets(rules: Rules, me: &PcbView, local: &Endpoint) -> Flags {
    match rules.policy {
        Policy::FreeBsd => Flags::EMPTY,
        Policy::Linux => linux::bind_sets(me, local),
    }
}

/// Whether an ephemeral-port candidate is taken for `bind(port 0)` (or the
/// autobind of `listen()`, when `listening`).
pub(crate) fn bind_port_busy(
    rules: Rules,
    new: &PcbView,
    owners: &[PcbView],
    listening: bool,
) -> bool {
    match rules.policy {
        Policy::FreeBsd => freebsd::bind_port_busy(new, owners),
        Policy::Linux => linux::bind_port_busy(rules.protocol, new, owners, listening),
    }
}

/// The error of `bind(port 0)` when no port is left.
pub(crate) fn bind_exhausted(rules: Rules) -> Error {
    match rules.policy {
        Policy::FreeBsd => Error::AddrNotAvailable,
        Policy::Linux => Error::AddrInUse,
    }
}

/// The check at `listen()` on a bound PCB (Linux re-runs the conflict check).
pub(crate) fn listen_check(
    rules: Rules,
    me: &PcbView,
    owners: &[PcbView],
    memo: PortMemo,
) -> Result<(), Error> {
    match rules.policy {
        Policy::FreeBsd => Ok(()),
        Policy::Linux => linux::listen_check(rules.protocol, me, owners, memo),
    }
}

/// Checks made before any table work on `connect()`. Returns the canonical peer.
pub(crate) fn check_connect(
    rules: Rules,
    me: &PcbView,
    remote: SocketAddr,
) -> Result<Endpoint, Error> {
    match rules.policy {
        Policy::FreeBsd => freebsd::check_connect(rules.protocol, rules.connect_wild, me, remote),
        Policy::Linux => linux::check_connect(rules.protocol, me, remote),
    }
}

/// Whether a `bind()` that found its port taken leaves the PCB without the
/// address it may have kept from an earlier bind (Linux `__inet_bind` and
/// `__inet6_bind` store the new address before `get_port()` and reset it to
/// the wildcard when that fails).
pub(crate) fn failed_bind_forgets_address(rules: Rules) -> bool {
    rules.policy == Policy::Linux
}

/// Whether `connect()` on `me` first disconnects it, whatever the new peer
/// (FreeBSD `soconnectat`: "if connected, try to disconnect first", for a
/// protocol without `PR_CONNREQUIRED`, that is UDP).
pub(crate) fn disconnects_before_connect(rules: Rules, me: &PcbView) -> bool {
    rules.policy == Policy::FreeBsd
        && rules.protocol == Protocol::Udp
        && me.state() == State::Connected
}

/// Whether `connect()` on `me` binds a port before it looks at the peer
/// (Linux `inet_dgram_connect` for an unbound UDP socket).
pub(crate) fn binds_before_connect(rules: Rules, me: &PcbView) -> bool {
    rules.policy == Policy::Linux && rules.protocol == Protocol::Udp && me.state() == State::Closed
}

/// The error of `connect()` when that early bind finds no port: Linux
/// `inet_autobind` answers EAGAIN. (FreeBSD never binds early; its
/// `in_pcb_lport_dest` answers EADDRNOTAVAIL when the range is used up.)
pub(crate) fn connect_autobind_failed(rules: Rules) -> Error {
    match rules.policy {
        Policy::FreeBsd => Error::AddrNotAvailable,
        Policy::Linux => Error::WouldBlock,
    }
}

/// Whether connecting `new` (a connected view on a candidate ephemeral port) is
/// refused on that port. `holder` is the PCB that already has the 4-tuple.
pub(crate) fn connect_port_busy(
    rules: Rules,
    new: &PcbView,
    owners: &[PcbView],
    holder: Option<&PcbView>,
    memo: PortMemo,
) -> bool {
    match rules.policy {
        Policy::FreeBsd => holder.is_some() || owners.iter().any(|o| wild_match(o, &new.local)),
        Policy::Linux => linux::connect_port_busy(rules.protocol, new, owners, holder, memo),
    }
}

/// Whether a PCB holding the 4-tuple alone makes an unbound `connect()` pass
/// over the port, whatever the connecting PCB and the port's other owners:
/// FreeBSD (`in_pcb_lport_dest` asks `in_pcblookup_hash_locked` for the
/// 4-tuple) and Linux TCP (`__inet_check_established`). Not Linux UDP, which
/// chooses the port as `bind()` would (`inet_autobind`). The busy-port hints
/// (`crate::busy`) record only such holders.
pub(crate) fn connect_holder_busy(rules: Rules) -> bool {
    rules.policy == Policy::FreeBsd || rules.protocol == Protocol::Tcp
}

/// What `connect()` from a bound port does about `holder`, the PCB that
/// already has the 4-tuple.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TupleTaken {
    /// The holder stays; the new PCB is inserted beside it (Linux UDP).
    Share,
    /// The holder is a TIME_WAIT twin that the new connection replaces.
    Replace,
}

/// `connect()` from a bound port whose 4-tuple `holder` already has: share
/// it, replace it, or fail with the policy's error.
pub(crate) fn connect_tuple_taken(rules: Rules, holder: &PcbView) -> Result<TupleTaken, Error> {
    match rules.policy {
        Policy::FreeBsd => Err(Error::AddrInUse),
        Policy::Linux => linux::connect_tuple_taken(rules.protocol, holder),
    }
}

/// What a `connect()` that the 4-tuple check refused leaves of a bound PCB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AfterFailedConnect {
    /// Nothing changes.
    Unchanged,
    /// The PCB stays on its port, now at this address.
    Rebound(IpAddr),
    /// The PCB gives its port back; it keeps this address for a later
    /// `listen()` or `connect()` (a `bind()` replaces it).
    Released(IpAddr),
}

/// A bound PCB's `connect()` from `source` failed the 4-tuple check.
pub(crate) fn after_failed_connect(
    rules: Rules,
    me: &PcbView,
    source: IpAddr,
) -> AfterFailedConnect {
    match rules.policy {
        Policy::FreeBsd => AfterFailedConnect::Unchanged,
        Policy::Linux => linux::after_failed_connect(rules.protocol, me, source),
    }
}

/// What `disconnect()` keeps of a connected UDP PCB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Disconnect {
    pub(crate) keep_addr: bool,
    pub(crate) keep_port: bool,
}

/// `connect(AF_UNSPEC)` on a UDP PCB. Linux also runs it on a PCB that is
/// not connected: one bound to an ephemeral port gives the port back. Linux
/// TCP runs `tcp_disconnect` (see [`linux::disconnect_tcp`]).
pub(crate) fn disconnect(rules: Rules, me: &PcbView) -> Result<Disconnect, Error> {
    match (rules.policy, rules.protocol) {
        (Policy::FreeBsd, Protocol::Tcp) => Err(Error::NotSupported),
        (Policy::FreeBsd, Protocol::Udp) => freebsd::disconnect(me),
        (Policy::Linux, Protocol::Tcp) => linux::disconnect_tcp(me),
        (Policy::Linux, Protocol::Udp) => linux::disconnect(me),
    }
}

/// The source address of a `connect()` to `peer` from a PCB bound to a
/// specific address (see [`linux::bound_source`]).
pub(crate) fn bound_source(rules: Rules, me: &PcbView, peer: &Endpoint) -> IpAddr {
    match rules.policy {
        Policy::Linux => linux::bound_source(rules.protocol, me, peer),
        Policy::FreeBsd => me.local.ip,
    }
}

/// The wildcard-stage rank of a PCB of `family` connected to a packet's
/// address with any port (see [`matches_any_port`];
/// [`linux::any_port_peer_rank`]).
pub(crate) fn any_port_peer_rank(rules: Rules, local: &Endpoint, family: Family) -> u32 {
    match rules.policy {
        Policy::Linux => linux::any_port_peer_rank(local, family),
        Policy::FreeBsd => u32::MAX,
    }
}

/// Whether a lookup's walk stops at the first PCB that outranks every one
/// listed before it and asks a reuseport group with no connected member
/// (Linux `udp4_lib_lookup2`, `inet_lhash2_lookup`), rather than taking the
/// best-ranked PCB first.
pub(crate) fn group_stops_walk(rules: Rules) -> bool {
    rules.policy == Policy::Linux
}

/// Whether a `connect()` leaves the PCB a last peer that outlives the
/// connection (see [`linux::remembers_peer`]).
pub(crate) fn remembers_peer(rules: Rules, family: Family) -> bool {
    rules.policy == Policy::Linux && linux::remembers_peer(rules.protocol, family)
}

/// The wildcard-stage rank of an unconnected PCB with a last peer `last`
/// for an IPv6 packet from `source`: `None` if the peer filters it out
/// (see [`linux::last_peer_rank`]).
pub(crate) fn last_peer_rank(
    rules: Rules,
    rank: u32,
    last: &std::net::Ipv6Addr,
    source: &std::net::Ipv6Addr,
) -> Option<u32> {
    match rules.policy {
        Policy::Linux => linux::last_peer_rank(rank, last, source),
        Policy::FreeBsd => Some(rank),
    }
}

/// Whether a UDP PCB that `disconnect()` left bound goes back into its
/// load-balance group (FreeBSD), or stays out for good (Linux: a member
/// that connected was detached, and `udp_lib_rehash` detaches a member on
/// the wildcard address; nothing joins it again but a later `bind()`).
pub(crate) fn rejoins_group_on_disconnect(rules: Rules) -> bool {
    rules.policy == Policy::FreeBsd
}

/// Whether `disconnect()` of an unconnected member bound to a wildcard
/// address leaves its group (Linux `__udp_disconnect` → `udp_lib_rehash`).
pub(crate) fn wildcard_disconnect_leaves_group(rules: Rules, me: &PcbView) -> bool {
    rules.policy == Policy::Linux
        && rules.protocol == Protocol::Udp
        && !me.flags.contains(Flags::ADDR_LOCKED)
        && me.flags.contains(Flags::PORT_LOCKED)
}

/// `listen()` after the PCB was connected (Linux TCP: refused with EINVAL
/// once `get_port` has run, so a port it took stays bound).
pub(crate) fn listen_refused_after_connect(rules: Rules, flags: Flags) -> bool {
    rules.policy == Policy::Linux
        && rules.protocol == Protocol::Tcp
        && flags.contains(Flags::CONNECTED_ONCE)
}

/// The flags a PCB gains by `listen()` or `connect()` that outlive the
/// state (Linux TCP: see [`Flags::LISTENED`], [`Flags::CONNECTED_ONCE`]).
pub(crate) fn remembers(rules: Rules, state: State) -> Flags {
    if rules.policy != Policy::Linux || rules.protocol != Protocol::Tcp {
        return Flags::EMPTY;
    }
    match state {
        State::Listen => Flags::LISTENED,
        State::Connected => Flags::CONNECTED_ONCE,
        _ => Flags::EMPTY,
    }
}

/// Whether a disconnected UDP PCB enters the wildcard lists anew, as the
/// newest of its port (FreeBSD: `in_pcbdisconnect` takes it out of the hash
/// with `in_pcbremhash_locked`, and only `in_pcbinshash` puts a PCB back),
/// rather than keeping its place among equals.
pub(crate) fn disconnect_reinserts(rules: Rules) -> bool {
    rules.policy == Policy::FreeBsd
}

/// The wildcard a disconnected UDP PCB falls back to, with its port.
///
/// FreeBSD `in_pcbdisconnect` zeroes the address in the family the
/// connection used: an `Inet6` PCB that connected to a v4-mapped peer keeps
/// only `INP_IPV4` and ends on the IPv4 wildcard (`::ffff:0.0.0.0`). Linux
/// `inet_reset_saddr` clears both views: an `Inet6` PCB ends on `::`.
pub(crate) fn disconnected_wildcard(rules: Rules, family: Family, local: &Endpoint) -> Endpoint {
    let family = match rules.policy {
        Policy::FreeBsd if local.is_v4() => Family::Inet,
        _ => family,
    };
    Endpoint::unspecified(family).with_port(local.port)
}

/// The [`PcbView::seq`] of a PCB that enters its port's lists with `flags`,
/// given a table-wide counter that grows with each insertion.
pub(crate) fn insertion_seq(rules: Rules, family: Family, flags: Flags, counter: u64) -> u64 {
    match rules.policy {
        Policy::FreeBsd => counter,
        Policy::Linux => linux::insertion_seq(family, flags, counter),
    }
}

/// The [`PcbView::seq`] of a PCB that moves to another local address
/// without leaving its port (see [`linux::rehash_seq`]); elsewhere the PCB
/// keeps its place (`None`).
pub(crate) fn rehash_seq(rules: Rules, counter: u64) -> Option<u64> {
    match (rules.policy, rules.protocol) {
        (Policy::Linux, Protocol::Udp) => Some(linux::rehash_seq(counter)),
        _ => None,
    }
}

/// Whether a connected `tuple` answers packets from every port of its
/// remote address: Linux UDP connected to port 0 (`compute_score` checks
/// `inet_dport` only when it is set; `udp4_lib_lookup4` matches ports
/// exactly, so a PCB connected to the very port still comes first).
pub(crate) fn matches_any_port(rules: Rules, tuple: &crate::addr::Tuple) -> bool {
    rules.policy == Policy::Linux && rules.protocol == Protocol::Udp && tuple.remote.port == 0
}

/// Whether, of several PCBs connected over one 4-tuple, the one that
/// connected last receives (Linux UDP: `udp_lib_hash4` adds at the head of
/// the 4-tuple's list). Elsewhere a second one is refused or replaces a
/// TIME_WAIT twin.
pub(crate) fn newest_connection_first(rules: Rules) -> bool {
    rules.policy == Policy::Linux && rules.protocol == Protocol::Udp
}

/// An error `connect()` gives once the source address is chosen, through
/// the kernel's failure path ([`after_failed_connect`]).
pub(crate) fn connect_refused(rules: Rules, me: &PcbView) -> Option<Error> {
    match rules.policy {
        Policy::FreeBsd => None,
        Policy::Linux => linux::connect_refused(rules.protocol, me),
    }
}

/// Whether `listen()` inserts the PCB anew (Linux hashes a listener into
/// the listening table only at `listen()`).
pub(crate) fn inserts_at_listen(rules: Rules) -> bool {
    rules.policy == Policy::Linux && rules.protocol == Protocol::Tcp
}

/// The default ephemeral port range.
pub(crate) fn default_ephemeral(policy: Policy) -> RangeInclusive<u16> {
    match policy {
        Policy::FreeBsd => 10000..=65535,
        Policy::Linux => 32768..=60999,
    }
}

/// Whether a new `Inet6` PCB starts with V6ONLY (FreeBSD `net.inet6.ip6.v6only=1`;
/// Linux `net.ipv6.bindv6only=0`).
pub(crate) fn default_v6only(policy: Policy) -> bool {
    policy == Policy::FreeBsd
}

/// Whether the reuse option `bit` exists under `policy`.
pub(crate) fn has_option(policy: Policy, bit: Flags) -> bool {
    !(policy == Policy::Linux && bit == Flags::REUSEPORT_LB)
}

/// The identity of a reuseport / load-balance group: PCBs with equal keys on a
/// port share one group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct GroupKey {
    pub(crate) family: Family,
    pub(crate) v6only: bool,
    /// Linux groups are per owner uid; FreeBSD groups are not.
    pub(crate) uid: Option<u32>,
    pub(crate) local: Endpoint,
}

/// The group `view` belongs in, if its options ask for one.
pub(crate) fn group_key(rules: Rules, view: &PcbView) -> Option<GroupKey> {
    match rules.policy {
        Policy::FreeBsd => freebsd::group_key(view),
        Policy::Linux => linux::group_key(view),
    }
}

/// Whether a lookup that lands on a PCB with `flags` asks its group for the
/// member: FreeBSD whenever the PCB is in a group, also as a member that
/// waits for `listen()` (its group's active members take the flow); Linux
/// only while the PCB
/// also has SO_REUSEPORT set (`inet_lookup_reuseport` tests `sk_reuseport`,
/// not the group pointer), so a member that cleared the option takes the
/// packet itself when it is met first, and its mates still pick it.
pub(crate) fn consults_group(rules: Rules, flags: Flags) -> bool {
    match rules.policy {
        Policy::FreeBsd => flags.intersects(Flags::IN_GROUP | Flags::GROUP_PENDING),
        Policy::Linux => flags.in_group() && flags.reuse_port(),
    }
}

/// Linux: whether a new member `me` joins the group of `other`, or founds
/// one with it when `other` has none (`inet_reuseport_add_sock`,
/// `udp_reuseport_add_sock`). `None` under FreeBSD, whose groups go by key.
pub(crate) fn group_mate(rules: Rules, me: &PcbView, other: &PcbView) -> Option<bool> {
    match rules.policy {
        Policy::FreeBsd => None,
        Policy::Linux => Some(linux::group_mate(rules.protocol, me, other)),
    }
}

/// Whether a group's pick passes over connected members (Linux
/// `reuseport_select_sock_by_hash` skips `TCP_ESTABLISHED` sockets).
pub(crate) fn pick_skips_connected(policy: Policy) -> bool {
    policy == Policy::Linux
}

/// Whether members join at `listen()` (TCP) rather than at `bind()` (UDP).
/// FreeBSD decides membership when the PCB enters the hash
/// (`in_pcbinshash`), and `listen()` only activates a pending member
/// (`in_pcblisten`); see [`group_decided_at_bind`].
pub(crate) fn group_joins_at_listen(rules: Rules) -> bool {
    rules.protocol == Protocol::Tcp
}

/// Whether a PCB's group membership is decided when it enters the table,
/// from the options set then (FreeBSD `in_pcbinshash` calls
/// `in_pcbinslbgrouphash` only `if (so_options & SO_REUSEPORT_LB)`): a TCP
/// member waits, counted in its group, until `listen()` activates it; an
/// option set later joins nothing, and clearing it leaves nothing.
pub(crate) fn group_decided_at_bind(rules: Rules) -> bool {
    rules.policy == Policy::FreeBsd
}

/// Whether `view` joins its group as a pending member: a FreeBSD TCP PCB
/// not yet listening (`in_pcblbgroup_insert`: "If this is a TCP socket, it
/// should not be visible to lbgroup lookups until listen() has been
/// called").
pub(crate) fn joins_pending(rules: Rules, view: &PcbView) -> bool {
    group_decided_at_bind(rules) && rules.protocol == Protocol::Tcp && view.state() != State::Listen
}

/// What a group with `members` members (active and pending) and `slots`
/// slots does with one more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GroupFit {
    /// The newcomer fits.
    Join,
    /// The group is rebuilt with this many slots first (and, FreeBSD, goes
    /// to the head of its bucket: `in_pcblbgroup_resize`).
    Grow(usize),
    /// Full: the newcomer stays bound outside the group.
    Full,
}

/// The slots of a new group.
pub(crate) fn group_initial_slots(policy: Policy) -> usize {
    match policy {
        // INPCBLBGROUP_SIZMIN
        Policy::FreeBsd => 8,
        // `struct sock_reuseport` counts members in a u16.
        Policy::Linux => u16::MAX as usize,
    }
}

/// FreeBSD `in_pcbinslbgrouphash`: `il_inpcnt + il_pendcnt == il_inpsiz`
/// doubles the group up to INPCBLBGROUP_SIZMAX (256), then refuses.
pub(crate) fn group_fit(policy: Policy, members: usize, slots: usize) -> GroupFit {
    match policy {
        Policy::FreeBsd if members < slots => GroupFit::Join,
        Policy::FreeBsd if slots >= 256 => GroupFit::Full,
        Policy::FreeBsd => GroupFit::Grow(slots * 2),
        Policy::Linux if members < slots => GroupFit::Join,
        Policy::Linux => GroupFit::Full,
    }
}

/// The flags an accepted PCB takes from its listener besides its family
/// and credential.
///
/// FreeBSD `solisten_clone` copies only `SO_KEEPALIVE | SO_DONTROUTE |
/// SO_LINGER | SO_OOBINLINE | SO_NOSIGPIPE` of the listener's options: no
/// reuse option. Linux `sk_clone_lock` copies the whole socket, reuse
/// options included, but drops SOCK_BINDPORT_LOCK: the child's port is not
/// one `bind()` named, which its `disconnect()` shows.
pub(crate) fn accept_inherits(rules: Rules) -> Flags {
    let kept = Flags::V6ONLY | Flags::ADDR_LOCKED;
    match rules.policy {
        Policy::FreeBsd => kept | Flags::PORT_LOCKED,
        Policy::Linux => kept | Flags::REUSE_ANY,
    }
}

/// Which of `members` members a flow with `hash` goes to.
pub(crate) fn pick_member(policy: Policy, hash: u64, members: usize) -> usize {
    debug_assert!(members > 0);
    match policy {
        // `hash % il_inpcnt`
        Policy::FreeBsd => (hash % members as u64) as usize,
        // `reciprocal_scale(hash, num_socks)`
        Policy::Linux => (((hash as u32) as u64 * members as u64) >> 32) as usize,
    }
}

/// Checks for `accept()`: the passive open on `listener` for a packet
/// `local` ← `remote`.
pub(crate) fn check_accept(
    rules: Rules,
    listener: &PcbView,
    local: SocketAddr,
    remote: SocketAddr,
) -> Result<(Endpoint, Endpoint), Error> {
    if rules.protocol != Protocol::Tcp {
        return Err(Error::NotSupported);
    }
    if listener.state() != State::Listen {
        return Err(Error::InvalidInput);
    }
    let (local, remote) = (Endpoint::new(local), Endpoint::new(remote));
    if local.is_v4() != remote.is_v4()
        || remote.port == 0
        || remote.is_wildcard()
        || remote.ip.is_multicast()
        || local.is_wildcard()
        // Both kernels drop a SYN to a multicast destination (FreeBSD
        // `tcp_input`, Linux `tcp_v4_rcv`: not PACKET_HOST).
        || local.ip.is_multicast()
        || local.port != listener.local.port
        || !wild_match(listener, &local)
    {
        return Err(Error::InvalidInput);
    }
    Ok((local, remote))
}

/// The PCB's cred and family checked against a port below 1024.
pub(crate) fn check_privilege(cred: &Cred, port: u16) -> Result<(), Error> {
    if port != 0 && port < 1024 && !cred.privileged {
        Err(Error::PermissionDenied)
    } else {
        Ok(())
    }
}

/// What a policy remembers about one port beyond the PCBs that hold it.
///
/// Linux keeps a little history in `struct inet_bind_bucket`: after a
/// SO_REUSEPORT socket joins a port that it did not "fast-match", the bucket
/// records that socket's owner and address (`FASTREUSEPORT_STRICT`), and later
/// SO_REUSEPORT binds of the same owner on a covered address skip the conflict
/// scan. The record outlives the socket that set it, so it cannot be derived
/// from the PCBs on the port. Neither can whether the port is held by
/// `bind()`: the bucket stays so until an owner leaves while every bucket of
/// the port's addresses (`inet_bind2_bucket`) is one that an unbound
/// `connect()` made (then `inet_bind_bucket_destroy` resets it), even after
/// the socket that bound it has connected into such a bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum PortMemo {
    /// Nothing remembered: no bucket, or one that only `connect()` holds.
    #[default]
    Empty,
    /// Linux: a `bind()` or `listen()` holds the bucket
    /// (`fastreuse`/`fastreuseport` not -1), with no fast-path record.
    LinuxHeld,
    /// Linux `tb->fastreuseport == FASTREUSEPORT_STRICT` with the fast owner
    /// (the bucket is held by `bind()` too).
    LinuxStrict(linux::FastOwner),
}

impl PortMemo {
    /// Whether a `bind()` or `listen()` holds the port's bucket, so that an
    /// unbound `connect()` passes over the port (Linux).
    pub(crate) fn held_by_bind(self) -> bool {
        self != PortMemo::Empty
    }
}

/// Stripes of the per-port memory, as many as the port lock has: a writer of
/// port `p` holds `p`'s port lock, so no two writers meet on a stripe.
const MEMO_STRIPES: usize = 256;

/// Per-port [`PortMemo`]s of one table. Read and written only by writers that
/// hold the port's lock; never read by lookups.
///
/// This type maintains the invariant that it stores no [`PortMemo::Empty`]
/// entry, so its size is bounded by the ports whose memory is not empty.
pub(crate) struct PortMemos {
    /// Empty when the rules keep no memory (every call is then a no-op).
    stripes: Box<[Mutex<HashMap<u16, PortMemo>>]>,
}

impl PortMemos {
    /// The memory a table with `rules` needs: Linux TCP keeps the bind
    /// buckets' fast-reuse record, the others keep nothing.
    pub(crate) fn for_rules(rules: Rules) -> Self {
        let stripes = if rules.policy == Policy::Linux && rules.protocol == Protocol::Tcp {
            MEMO_STRIPES
        } else {
            0
        };
        Self {
            stripes: (0..stripes).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn stripe(&self, port: u16) -> Option<&Mutex<HashMap<u16, PortMemo>>> {
        self.stripes.get(port as usize % MEMO_STRIPES)
    }

    /// The memory of `port`. Call under the port's lock.
    pub(crate) fn get(&self, port: u16) -> PortMemo {
        self.stripe(port)
            .and_then(|stripe| lock(stripe).get(&port).copied())
            .unwrap_or_default()
    }

    /// Replaces the memory of `port`. Call under the port's lock.
    pub(crate) fn set(&self, port: u16, memo: PortMemo) {
        let Some(stripe) = self.stripe(port) else {
            return;
        };
        let mut map = lock(stripe);
        if memo == PortMemo::Empty {
            map.remove(&port);
        } else {
            map.insert(port, memo);
        }
    }
}

impl std::fmt::Debug for PortMemos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortMemos").finish_non_exhaustive()
    }
}
