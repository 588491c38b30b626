//! The stack's hooks into two choices the table makes on its own: which
//! ephemeral port a socket gets ([`Builder::port_filter`](crate::Builder::port_filter)) and which member
//! of a reuseport / load-balance group takes a packet
//! ([`Builder::group_selector`](crate::Builder::group_selector)).
//!
//! Both exist for per-core stacks (DPDK, AF_XDP), where the NIC spreads
//! packets over receive queues by a hash of the 4-tuple and each queue is
//! served by one core: the port filter keeps only ports whose replies land
//! on the connecting core's queue, and the group selector sends a packet to
//! the listener of the core that received it.

use std::any::Any;
use std::fmt;
use std::net::SocketAddr;

use crate::addr::Endpoint;
use crate::cred::Device;
use crate::policy::{canonical, Protocol};

/// An ephemeral-port candidate, as the [port filter](crate::Builder::port_filter)
/// sees it: the local endpoint the socket would get, the peer when the port
/// is chosen for a 4-tuple, and the table's protocol.
///
/// Addresses are as on the wire: an IPv4 flow of a dual-stack `Inet6`
/// socket shows IPv4 addresses, not v4-mapped ones.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortCandidate {
    /// The local address and candidate port. The address is the wildcard
    /// when an unbound socket takes a port for `bind()` or `listen()`.
    pub local: SocketAddr,
    /// The peer, when `connect()` picks the port for a 4-tuple; `None` when
    /// the port is chosen by `bind(port 0)`, by `listen()` on an unbound
    /// socket, or by the implicit bind a Linux UDP `connect()` does first
    /// (`inet_dgram_connect` binds before it looks at the peer).
    pub remote: Option<SocketAddr>,
    /// The table's protocol.
    pub protocol: Protocol,
}

impl PortCandidate {
    pub(crate) fn new(local: Endpoint, remote: Option<Endpoint>, protocol: Protocol) -> Self {
        Self {
            local: canonical(local),
            remote: remote.map(canonical),
            protocol,
        }
    }
}

/// A packet that a reuseport / load-balance group is about to take, as the
/// [group selector](crate::Builder::group_selector) sees it.
///
/// Members are numbered `0..members()` in the group's own order: the order
/// they joined, where a member that leaves hands its number to the last one
/// (a swap-remove, as both kernels' arrays do). The number of a given
/// socket can thus change whenever the group does; a selector that wants a
/// particular socket finds it with [`socket`](Self::socket).
#[non_exhaustive]
pub struct GroupPacket<'a> {
    /// The packet's destination, as on the wire (IPv4 not v4-mapped).
    pub local: SocketAddr,
    /// The packet's source, as on the wire.
    pub remote: SocketAddr,
    /// The device the packet arrived on ([`PcbTable::lookup_on`]), `None`
    /// for [`PcbTable::lookup`].
    ///
    /// [`PcbTable::lookup_on`]: crate::PcbTable::lookup_on
    /// [`PcbTable::lookup`]: crate::PcbTable::lookup
    pub device: Option<Device>,
    /// The keyed hash of the packet's 4-tuple that the table picks a member
    /// with when the selector declines (stable for a flow while the table
    /// lives).
    pub hash: u64,
    members: &'a dyn Members<'a>,
}

impl<'a> GroupPacket<'a> {
    pub(crate) fn new(
        local: Endpoint,
        remote: Endpoint,
        device: Option<Device>,
        hash: u64,
        members: &'a dyn Members<'a>,
    ) -> Self {
        Self {
            local: canonical(local),
            remote: canonical(remote),
            device,
            hash,
            members,
        }
    }

    /// How many members take packets (at least one).
    pub fn members(&self) -> usize {
        self.members.count()
    }

    /// The socket of member `index`, if the table's socket type is `T`, the
    /// index is in range and the member's socket is still attached. Reading
    /// it takes no lock (as [`PcbRef::socket`](crate::PcbRef::socket)).
    pub fn socket<T: 'static>(&self, index: usize) -> Option<&'a T> {
        self.members.socket(index)?.downcast_ref()
    }
}

impl fmt::Debug for GroupPacket<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupPacket")
            .field("local", &self.local)
            .field("remote", &self.remote)
            .field("device", &self.device)
            .field("hash", &self.hash)
            .field("members", &self.members())
            .finish()
    }
}

/// The members of a group, as a [`GroupPacket`] reads them.
pub(crate) trait Members<'a> {
    /// How many members take packets.
    fn count(&self) -> usize;
    /// The socket of member `index`, if attached.
    fn socket(&self, index: usize) -> Option<&'a dyn Any>;
}

/// The stack's port filter; see [`Builder::port_filter`](crate::Builder::port_filter).
pub(crate) type PortFilter = dyn Fn(&PortCandidate) -> bool + Send + Sync;

/// The stack's group selector; see [`Builder::group_selector`](crate::Builder::group_selector).
pub(crate) type GroupSelector = dyn Fn(&GroupPacket<'_>) -> Option<usize> + Send + Sync;

/// The hooks a table was built with.
#[derive(Default)]
pub(crate) struct Hooks {
    pub(crate) port_filter: Option<Box<PortFilter>>,
    pub(crate) group_selector: Option<Box<GroupSelector>>,
}

impl Hooks {
    /// Whether the port filter refuses the candidate `make` builds (never,
    /// without a filter; `make` then does not run).
    #[inline]
    pub(crate) fn refuses(&self, make: impl FnOnce() -> PortCandidate) -> bool {
        match &self.port_filter {
            Some(filter) => !filter(&make()),
            None => false,
        }
    }
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let custom = |set: bool| set.then_some("custom");
        f.debug_struct("Hooks")
            .field("port_filter", &custom(self.port_filter.is_some()))
            .field("group_selector", &custom(self.group_selector.is_some()))
            .finish()
    }
}
