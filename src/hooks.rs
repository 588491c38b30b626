//! The stack's hooks into two choices the table makes on its own: which
//! ephemeral port a socket gets ([`Builder::port_filter`]) and which member
//! of a reuseport / load-balance group takes a packet
//! ([`Builder::group_selector`]).
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
use crate::builder::Builder;
use crate::cred::Device;
use crate::policy::{canonical, Protocol};

/// An ephemeral-port candidate, as the [port filter](Builder::port_filter)
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
/// [group selector](Builder::group_selector) sees it.
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

/// The stack's port filter; see [`Builder::port_filter`].
pub(crate) type PortFilter = dyn Fn(&PortCandidate) -> bool + Send + Sync;

/// The stack's group selector; see [`Builder::group_selector`].
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

impl Builder {
    /// A filter over ephemeral-port candidates: `filter` returns `false` to
    /// refuse a port. A per-core stack keeps only the ports whose replies
    /// its NIC hashes to the connecting core's receive queue, as Seastar's
    /// `tcp::connect` (with `hash2cpu`) and F-Stack's `ff_rss_check` (in
    /// `in_pcb_lport_dest`) do. Default: none, every port is a candidate.
    ///
    /// **Where it runs.** For every candidate of every ephemeral-port scan:
    /// `connect()` from an unbound or wildcard-bound socket (the candidate
    /// carries the peer), and the implicit binds that take a port without
    /// one: `bind(port 0)`, `listen()` on an unbound socket, and Linux UDP
    /// `connect()`, which binds first (`remote` is `None` for those). A
    /// port named explicitly (`bind` with a port, `accept`) is never
    /// filtered, nor is the port `connect()` keeps from an earlier bind.
    ///
    /// **Refused is busy.** A refused candidate is passed over as a port in
    /// use is: the scan goes on in the kernel's order, and when every
    /// candidate is refused or busy the call fails as on a full range, with
    /// the kernel's error for it (`connect`: [`Error::AddrNotAvailable`];
    /// `bind`, `listen` and the UDP implicit bind: the policy's error for
    /// an exhausted range).
    ///
    /// **Contract.** The filter runs on the calling thread, inside the
    /// call, with the socket's own lock held and possibly the lock of a
    /// port: it must be cheap, must not block, and must not call into the
    /// table. Its answer must depend only on the candidate (a pure
    /// function): toward a crowded destination, the table remembers refused
    /// ports in its busy-port bitmaps and scans past them a word of 64 at a
    /// time, so that a filter accepting one port in sixteen keeps connect's
    /// cost flat as the range fills.
    ///
    /// Costs one call of `filter` per candidate that the busy-port bitmaps
    /// do not skip; no allocation.
    ///
    /// [`Error::AddrNotAvailable`]: crate::Error::AddrNotAvailable
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use pcbhash::{Builder, Cred, Family, PortCandidate, Policy};
    ///
    /// // The receive queue of a reply, 4 queues (a stand-in for the NIC's
    /// // Toeplitz hash); this core serves queue 2.
    /// fn queue(local: SocketAddr, peer: SocketAddr) -> u16 {
    ///     (local.port() ^ peer.port()) % 4
    /// }
    /// const MINE: u16 = 2;
    ///
    /// let table = Builder::new()
    ///     .policy(Policy::Linux)
    ///     .port_filter(|c: &PortCandidate| c.remote.is_none_or(|peer| queue(c.local, peer) == MINE))
    ///     .build::<()>();
    /// let peer = "127.0.0.1:80".parse()?;
    /// let mut conns = Vec::new();
    /// for _ in 0..8 {
    ///     let pcb = table.attach(Family::Inet, Cred::ROOT, ());
    ///     let local = pcb.connect(peer)?;
    ///     assert_eq!(queue(local, peer), MINE);
    ///     conns.push(pcb);
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn port_filter<F>(mut self, filter: F) -> Self
    where
        F: Fn(&PortCandidate) -> bool + Send + Sync + 'static,
    {
        self.hooks.port_filter = Some(Box::new(filter));
        self
    }

    /// A chooser of the reuseport / load-balance group member that takes a
    /// packet (what a Linux `SO_ATTACH_REUSEPORT_CBPF` / `_EBPF` program
    /// does): `select` returns the member's index, or `None` to let the
    /// table pick by its keyed hash of the 4-tuple, as without a selector.
    /// Default: none.
    ///
    /// **Where it runs.** In [`PcbTable::lookup`], [`PcbTable::lookup_on`]
    /// and [`PcbTable::lookup_batch`], each time the lookup reaches a group
    /// that has a member taking packets (after the exact stage missed); not
    /// for connected flows, and not in [`PcbTable::deliver`], which hands
    /// out every receiver. The selector's choice stands, as Linux's
    /// `run_bpf_filter` takes `socks[index]` without a second look.
    ///
    /// **Out of range.** An index at or past
    /// [`members()`](GroupPacket::members) is no choice: the table falls
    /// back to its keyed hash (Linux `reuseport_select_sock`: "invalid bpf
    /// result: fall back to hash usage"). It never panics.
    ///
    /// **Contract.** The selector runs on the looking-up thread, inside a
    /// lock-free lookup: it must be cheap, must not block, and must not
    /// call into the table. A lookup with no selector set pays nothing for
    /// the option but one test of it, in the group stage only.
    ///
    /// **SO_INCOMING_CPU.** Linux prefers, among the members the hash walk
    /// visits, the first whose `SO_INCOMING_CPU` is the receiving CPU
    /// (`reuseport_select_sock_by_hash`). A stack says the same with a
    /// selector that reads its own socket type through
    /// [`GroupPacket::socket`] and returns the member whose recorded CPU is
    /// the current one, or `None` for the keyed hash: see the example.
    ///
    /// [`PcbTable::lookup`]: crate::PcbTable::lookup
    /// [`PcbTable::lookup_on`]: crate::PcbTable::lookup_on
    /// [`PcbTable::lookup_batch`]: crate::PcbTable::lookup_batch
    /// [`PcbTable::deliver`]: crate::PcbTable::deliver
    ///
    /// ```
    /// use std::cell::Cell;
    /// use pcbhash::{Builder, Cred, Family, Policy};
    ///
    /// // The stack's socket: the CPU its owner runs on (SO_INCOMING_CPU).
    /// struct Socket { cpu: usize }
    /// thread_local!(static CPU: Cell<usize> = const { Cell::new(0) });
    ///
    /// let table = Builder::new()
    ///     .policy(Policy::Linux)
    ///     .group_selector(|packet| {
    ///         let here = CPU.with(Cell::get);
    ///         (0..packet.members()).find(|&i| {
    ///             packet.socket::<Socket>(i).is_some_and(|s| s.cpu == here)
    ///         })
    ///     })
    ///     .build::<Socket>();
    /// let listeners: Vec<_> = (0..4)
    ///     .map(|cpu| {
    ///         let pcb = table.attach(Family::Inet, Cred::ROOT, Socket { cpu });
    ///         pcb.set_reuse_port(true)?;
    ///         pcb.bind("127.0.0.1:8080".parse()?)?;
    ///         pcb.listen()?;
    ///         Ok(pcb)
    ///     })
    ///     .collect::<Result<_, Box<dyn std::error::Error>>>()?;
    ///
    /// let guard = table.pin();
    /// let local = "127.0.0.1:8080".parse()?;
    /// for cpu in 0..4 {
    ///     CPU.with(|c| c.set(cpu));
    ///     let remote = format!("127.0.0.1:{}", 40000 + cpu).parse()?;
    ///     let found = table.lookup(local, remote, &guard).and_then(|pcb| pcb.socket());
    ///     assert_eq!(found.map(|s| s.cpu), Some(cpu));
    /// }
    /// # drop(listeners);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn group_selector<F>(mut self, select: F) -> Self
    where
        F: Fn(&GroupPacket<'_>) -> Option<usize> + Send + Sync + 'static,
    {
        self.hooks.group_selector = Some(Box::new(select));
        self
    }
}
