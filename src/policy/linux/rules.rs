//! [`Linux`]: the Linux answers to each decision of [`Rules`], and the
//! history of a port's bind buckets.
//!
//! # Bind-bucket history (TCP)
//!
//! Linux keeps a port's sockets in one bind bucket (`inet_bind_bucket`) and
//! one bind2 bucket per local address (`inet_bind2_bucket`). Whether the
//! port bucket is held by `bind()` (see [`PortMemo`]) changes how an unbound
//! `connect()` treats the port, and a port forgets it only when every bind2
//! bucket left on it is one that unbound `connect()`s made. The table stores
//! that history (the port's memo and each PCB's [`Flags::CONNECT_BUCKET`]);
//! the three bucket methods below decide it, as `__inet_hash_connect`,
//! `inet_bind2_bucket_destroy` and `inet_bind_bucket_destroy` do.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;

use super::{
    after_failed_connect, any_port_peer_rank, bind_conflict, bind_port_busy, bind_sets, bound,
    bound_source, check_bind, check_connect, connect_port_busy, connect_refused,
    connect_tuple_taken, device_rank, disconnect, disconnect_tcp, group_key, group_mate,
    insertion_seq, last_peer_rank, listen_check, rehash_seq, remembers_peer, tw_reusable,
    wildcard_rank, SPECIFIC,
};
use crate::addr::{Endpoint, Family};
use crate::cred::Device;
use crate::error::Error;
use crate::flags::{Flags, State};
use crate::policy::{
    canonical_endpoint, AfterFailedConnect, DeviceBinding, Disconnect, GroupFit, GroupKey, Lookup,
    PcbView, PortMemo, PortScan, Protocol, Rules, TupleTaken, TwReuse,
};

/// Linux's rules for one protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Linux {
    pub(crate) protocol: Protocol,
    /// `net.ipv4.tcp_tw_reuse`.
    pub(crate) tw_reuse: TwReuse,
}

fn endpoint(addr: SocketAddr) -> Endpoint {
    Endpoint::new(addr)
}

fn socket(endpoint: Endpoint) -> SocketAddr {
    SocketAddr::new(endpoint.ip, endpoint.port)
}

/// TCP's [`wildcard_rank`] as [`Lookup::rank`] takes it: only listeners,
/// ties to the first in the kernel's list.
fn rank_tcp(candidate: &PcbView, local: &SocketAddr) -> Option<(u32, u64)> {
    wildcard_rank(Protocol::Tcp, candidate, &canonical_endpoint(local))
        .map(|rank| (rank, candidate.seq))
}

/// UDP's [`wildcard_rank`] as [`Lookup::rank`] takes it.
fn rank_udp(candidate: &PcbView, local: &SocketAddr) -> Option<(u32, u64)> {
    wildcard_rank(Protocol::Udp, candidate, &canonical_endpoint(local))
        .map(|rank| (rank, candidate.seq))
}

/// TCP's [`device_rank`] as [`Lookup::device`] takes it.
fn device_tcp(candidate: &PcbView, local: &SocketAddr, device: Option<Device>) -> Option<u32> {
    device_rank(Protocol::Tcp, candidate, local, device)
}

/// UDP's [`device_rank`] as [`Lookup::device`] takes it.
fn device_udp(candidate: &PcbView, local: &SocketAddr, device: Option<Device>) -> Option<u32> {
    device_rank(Protocol::Udp, candidate, local, device)
}

/// `reciprocal_scale(hash, num_socks)` (`reuseport_select_sock_by_hash`).
fn pick_member(hash: u64, members: usize) -> usize {
    (((hash as u32) as u64 * members as u64) >> 32) as usize
}

/// Whether every view of `views` has `bit`; stops at the first without.
fn all_have(views: &mut dyn Iterator<Item = PcbView>, bit: Flags) -> bool {
    for view in views {
        if !view.flags.contains(bit) {
            return false;
        }
    }
    true
}

impl Rules for Linux {
    /// `net.ipv4.ip_local_port_range`.
    fn default_ephemeral(&self) -> RangeInclusive<u16> {
        32768..=60999
    }

    /// `net.ipv6.bindv6only=0`.
    fn default_v6only(&self) -> bool {
        false
    }

    /// Linux has no SO_REUSEPORT_LB.
    fn has_option(&self, bit: Flags) -> bool {
        bit != Flags::REUSEPORT_LB
    }

    fn check_bind(&self, me: &PcbView, local: SocketAddr) -> Result<SocketAddr, Error> {
        check_bind(self.protocol, me, local).map(socket)
    }

    fn bind_sets(&self, me: &PcbView, local: SocketAddr) -> Flags {
        bind_sets(me, &endpoint(local))
    }

    fn bind_conflict(
        &self,
        new: &PcbView,
        owners: &[PcbView],
        memo: PortMemo,
    ) -> Result<(), Error> {
        bind_conflict(self.protocol, new, owners, memo)
    }

    fn bound(&self, new: &PcbView, memo: PortMemo) -> PortMemo {
        bound(self.protocol, new, memo)
    }

    /// Linux's scan does not look at whether the PCB is about to listen.
    fn bind_port_busy(&self, new: &PcbView, owners: &[PcbView], _listening: bool) -> bool {
        bind_port_busy(self.protocol, new, owners)
    }

    /// `inet_csk_find_open_port` (SO_REUSEADDR: the lower half first);
    /// `udp_lib_get_port(sk, 0)`.
    fn bind_scan(&self, me: &PcbView) -> PortScan {
        match self.protocol {
            Protocol::Tcp => PortScan::Parity {
                lower_half_first: me.flags.reuse_addr(),
            },
            Protocol::Udp => PortScan::RandomStart,
        }
    }

    /// `inet_csk_get_port` and `udp_lib_get_port`: EADDRINUSE.
    fn bind_exhausted(&self) -> Error {
        Error::AddrInUse
    }

    /// `__inet_bind` and `__inet6_bind` store the new address before
    /// `get_port()` and reset it to the wildcard when that fails.
    fn failed_bind_forgets_address(&self) -> bool {
        true
    }

    fn listen_check(&self, me: &PcbView, owners: &[PcbView], memo: PortMemo) -> Result<(), Error> {
        listen_check(self.protocol, me, owners, memo)
    }

    /// TCP: refused with EINVAL once `get_port` has run, so a port it took
    /// stays bound.
    fn listen_refused_after_connect(&self, flags: Flags) -> bool {
        self.protocol == Protocol::Tcp && flags.contains(Flags::CONNECTED_ONCE)
    }

    /// A listener is hashed into the listening table only at `listen()`.
    fn inserts_at_listen(&self) -> bool {
        self.protocol == Protocol::Tcp
    }

    /// TCP: see [`Flags::LISTENED`] and [`Flags::CONNECTED_ONCE`].
    fn remembers(&self, state: State) -> Flags {
        match (self.protocol, state) {
            (Protocol::Tcp, State::Listen) => Flags::LISTENED,
            (Protocol::Tcp, State::Connected) => Flags::CONNECTED_ONCE,
            _ => Flags::EMPTY,
        }
    }

    fn check_connect(&self, me: &PcbView, remote: SocketAddr) -> Result<SocketAddr, Error> {
        check_connect(self.protocol, me, remote).map(socket)
    }

    fn disconnects_before_connect(&self, _me: &PcbView) -> bool {
        false
    }

    /// `inet_dgram_connect` binds an unbound UDP socket first.
    fn binds_before_connect(&self, me: &PcbView) -> bool {
        self.protocol == Protocol::Udp && me.state() == State::Closed
    }

    /// `inet_autobind` answers EAGAIN.
    fn connect_autobind_failed(&self) -> Error {
        Error::WouldBlock
    }

    fn bound_source(&self, me: &PcbView, peer: SocketAddr) -> Option<IpAddr> {
        bound_source(self.protocol, me, &endpoint(peer))
    }

    fn connect_refused(&self, me: &PcbView) -> Option<Error> {
        connect_refused(self.protocol, me)
    }

    fn connect_tuple_taken(&self, holder: &PcbView) -> Result<TupleTaken, Error> {
        connect_tuple_taken(self.protocol, holder)
    }

    fn after_failed_connect(&self, me: &PcbView, source: IpAddr) -> AfterFailedConnect {
        after_failed_connect(self.protocol, me, source)
    }

    /// `__inet_hash_connect`; UDP chooses as `bind(port 0)` does.
    fn connect_scan(&self) -> PortScan {
        match self.protocol {
            Protocol::Tcp => PortScan::Perturbed,
            Protocol::Udp => PortScan::RandomStart,
        }
    }

    fn connect_port_busy(
        &self,
        new: &PcbView,
        owners: &[PcbView],
        holder: Option<&PcbView>,
        memo: PortMemo,
    ) -> bool {
        let holder = holder.filter(|holder| !tw_reusable(self.tw_reuse, holder));
        connect_port_busy(self.protocol, new, owners, holder, memo)
    }

    /// TCP asks `__inet_check_established` for the 4-tuple; UDP chooses the
    /// port as `bind()` would (`inet_autobind`).
    fn connect_holder_busy(&self) -> bool {
        self.protocol == Protocol::Tcp
    }

    fn remembers_peer(&self, family: Family) -> bool {
        remembers_peer(self.protocol, family)
    }

    /// UDP: `udp_lib_hash4` adds at the head of the 4-tuple's list.
    fn newest_connection_first(&self) -> bool {
        self.protocol == Protocol::Udp
    }

    /// `tcp_disconnect`; `__udp_disconnect`, which also runs on a PCB that
    /// is not connected.
    fn disconnect(&self, me: &PcbView) -> Result<Disconnect, Error> {
        match self.protocol {
            Protocol::Tcp => disconnect_tcp(me),
            Protocol::Udp => disconnect(me),
        }
    }

    /// `inet_reset_saddr` clears both views: an `Inet6` PCB ends on `::`.
    fn disconnected_wildcard(&self, family: Family, local: SocketAddr) -> SocketAddr {
        socket(Endpoint::unspecified(family).with_port(local.port()))
    }

    /// A disconnected PCB keeps its place (or takes the one
    /// [`rehash_seq`](Rules::rehash_seq) gives).
    fn disconnect_reinserts(&self) -> bool {
        false
    }

    /// A member that connected was detached, and `udp_lib_rehash` detaches
    /// a member on the wildcard address; nothing joins it again but a later
    /// `bind()`.
    /// UDP: `sock_bindtoindex_locked` calls `udp_v4_rehash` /
    /// `udp_v6_rehash`, and `udp_lib_rehash` detaches a group member
    /// (`reuseport_detach_sock`) even when nothing moves.
    fn bind_device_leaves_group(&self) -> bool {
        self.protocol == Protocol::Udp
    }

    /// UDP: `__udp_disconnect` sets `sk_bound_dev_if` to 0, in every state
    /// (TCP's `tcp_disconnect` leaves the device).
    fn disconnect_clears_device(&self) -> bool {
        self.protocol == Protocol::Udp
    }

    fn rejoins_group_on_disconnect(&self) -> bool {
        false
    }

    /// `__udp_disconnect` → `udp_lib_rehash`.
    fn wildcard_disconnect_leaves_group(&self, me: &PcbView) -> bool {
        self.protocol == Protocol::Udp
            && !me.flags.contains(Flags::ADDR_LOCKED)
            && me.flags.contains(Flags::PORT_LOCKED)
    }

    /// `sk_clone_lock` copies the whole socket, reuse options and
    /// `IP_BIND_ADDRESS_NO_PORT` included (and the per-socket port range,
    /// which the table copies whatever the policy), but drops
    /// SOCK_BINDPORT_LOCK: the child's port is not one `bind()` named.
    fn accept_inherits(&self) -> Flags {
        Flags::V6ONLY | Flags::ADDR_LOCKED | Flags::REUSE_ANY | Flags::BIND_NO_PORT
    }

    fn insertion_seq(&self, family: Family, flags: Flags, counter: u64) -> u64 {
        insertion_seq(family, flags, counter)
    }

    /// UDP: `udp_lib_rehash`.
    fn rehash_seq(&self, counter: u64) -> Option<u64> {
        (self.protocol == Protocol::Udp).then(|| rehash_seq(counter))
    }

    /// Two passes (the packet's address, then the wildcard); a group is
    /// asked only while its member has SO_REUSEPORT set
    /// (`inet_lookup_reuseport`), and the walk stops at the first group it
    /// meets; `reuseport_select_sock_by_hash` skips connected members.
    fn lookup(&self) -> Lookup {
        Lookup {
            rank: match self.protocol {
                Protocol::Tcp => rank_tcp,
                Protocol::Udp => rank_udp,
            },
            first_pass: SPECIFIC,
            group_bits: Flags::IN_GROUP,
            group_needs_reuseport: true,
            group_stops_walk: true,
            any_port: self.protocol == Protocol::Udp,
            pick: pick_member,
            pick_skips_connected: true,
            device: Some(match self.protocol {
                Protocol::Tcp => device_tcp,
                Protocol::Udp => device_udp,
            }),
        }
    }

    fn any_port_peer_rank(&self, local: SocketAddr, family: Family) -> u32 {
        any_port_peer_rank(&endpoint(local), family)
    }

    fn last_peer_rank(&self, rank: u32, last: &Ipv6Addr, source: &Ipv6Addr) -> Option<u32> {
        last_peer_rank(rank, last, source)
    }

    /// `sock_bindtoindex`: index 0 is no device here only as `None`
    /// (the table never takes `Device(0)` for a device).
    fn bind_device(&self, _me: &PcbView, device: Option<Device>) -> Result<DeviceBinding, Error> {
        match device {
            Some(Device(0)) => Err(Error::InvalidInput),
            device => Ok(DeviceBinding::Interface(device)),
        }
    }

    fn group_key(&self, view: &PcbView) -> Option<GroupKey> {
        group_key(view)
    }

    fn group_mate(&self, me: &PcbView, other: &PcbView) -> Option<bool> {
        Some(group_mate(self.protocol, me, other))
    }

    /// Membership follows the option at each `bind()` / `listen()`.
    fn group_decided_at_bind(&self) -> bool {
        false
    }

    fn joins_pending(&self, _view: &PcbView) -> bool {
        false
    }

    /// `struct sock_reuseport` counts members in a u16.
    fn group_initial_slots(&self) -> usize {
        u16::MAX as usize
    }

    fn group_fit(&self, members: usize, slots: usize) -> GroupFit {
        if members < slots {
            GroupFit::Join
        } else {
            GroupFit::Full
        }
    }

    /// TCP: the bind buckets' history (see the module docs).
    fn keeps_bucket_history(&self) -> bool {
        self.protocol == Protocol::Tcp
    }

    /// A new bind2 bucket is connect-only when an unbound `connect()` made
    /// it (`__inet_hash_connect`), and otherwise takes the port's state
    /// (`inet_bhash2_update_saddr` and `__inet_inherit_port` copy the port
    /// bucket's `fastreuse`); an existing one stays as it is.
    fn joins_connect_only_bucket(
        &self,
        mate: Option<&PcbView>,
        by_connect: bool,
        memo: PortMemo,
    ) -> bool {
        mate.map_or(by_connect || !memo.held_by_bind(), |mate| {
            mate.flags.contains(Flags::CONNECT_BUCKET)
        })
    }

    /// `inet_bind2_bucket_destroy`: when every PCB still in the bucket got
    /// its port from `connect()`. A TIME_WAIT PCB stays among the bucket's
    /// owners and counts as the socket it was (`sk_is_connect_bind` reads
    /// `tw_connect_bind`). Stops at the first owner that `bind()` or
    /// `listen()` put there.
    fn left_bucket_connect_only(&self, others: &mut dyn Iterator<Item = PcbView>) -> bool {
        all_have(others, Flags::CONNECT_BIND)
    }

    /// `inet_bind_bucket_destroy`: when every PCB still on the port sits in
    /// a connect-only bucket, the port forgets that `bind()` held it, and
    /// its fast-path record with it. Stops at the first PCB in a bucket held
    /// by `bind()`.
    fn port_left(&self, memo: PortMemo, others: &mut dyn Iterator<Item = PcbView>) -> PortMemo {
        if memo.held_by_bind() && all_have(others, Flags::CONNECT_BUCKET) {
            PortMemo::EMPTY
        } else {
            memo
        }
    }

    /// `__udp_is_mcast_sock` and its IPv6 twin (see `mcast.rs`).
    fn delivers_to(
        &self,
        view: &PcbView,
        last_peer: Option<&Ipv6Addr>,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> bool {
        super::mcast::delivers_to(view, last_peer, local, remote)
    }

    /// Every matching socket receives: the walk never ends early.
    fn delivery_ends_after(&self, _view: &PcbView) -> bool {
        false
    }

    fn delivery_order(
        &self,
        view: &PcbView,
        bound_seq: u64,
        local: SocketAddr,
        port_len: usize,
    ) -> (u32, u64) {
        super::mcast::delivery_order(view, bound_seq, local, port_len)
    }
}
