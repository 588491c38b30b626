//! `PcbTable<S>`: the public API. It composes the indexes:
//!
//! - **exact**: connected and TIME_WAIT PCBs by 4-tuple (an
//!   [`ExactIndex`](crate::raw::ExactIndex) of one-line buckets of seven
//!   signature-and-pointer slots, probed without data-dependent branches;
//!   the key is the PCB's own tuple, see `core/exact.rs`);
//! - **wildcard**: bound and listening PCBs, per local port (the unconnected
//!   lists of the [`PortTable`]);
//! - **by local port**: every PCB holding a port, what bind-conflict checks scan
//!   (both lists of the [`PortTable`]).
//!
//! The machinery (the PCB record, the shared state, the lifecycle split by
//! call) lives in `core/`; this file is the thin public face over it.

use std::fmt;
use std::net::SocketAddr;

use crossbeam_epoch::Guard;

use crate::addr::{Endpoint, Family, FlowKey, Ipv4Flow, PacketFlow};
use crate::core::{PcbInner, Shared, Unknown};
use crate::cred::Cred;
use crate::flags::{Flags, State};
use crate::pcb::{Pcb, PcbRef};
use crate::policy::{self, Af, Policy, Protocol};
use crate::raw::{check_guard, List};
use crate::sync::Arc;

/// The PCB table: the socket-demux table of a network stack.
///
/// `S` is the stack's socket type. The table is `Send + Sync`; share it with an
/// `Arc` or a reference. See the [crate docs](crate) for the concurrency
/// contract.
pub struct PcbTable<S: Send + Sync + 'static> {
    pub(crate) shared: Arc<Shared<S>>,
}

impl<S: Send + Sync + 'static> PcbTable<S> {
    /// The policy the table follows. For a table built with
    /// [`Builder::custom_policy`](crate::Builder::custom_policy), the one [`Builder::policy`](crate::Builder::policy) named (which
    /// the custom policy replaces).
    pub fn policy(&self) -> Policy {
        self.shared.rules().named
    }

    /// The protocol the table holds.
    pub fn protocol(&self) -> Protocol {
        self.shared.rules().protocol
    }

    /// Creates a PCB for `socket`, like `socket(2)`: unbound, in no index.
    /// `socket` moves into the PCB's allocation; [`Pcb::socket`] and
    /// [`PcbRef::socket`](crate::PcbRef::socket) borrow it until
    /// `time_wait()` or close, after which it is dropped through the epoch.
    /// An `Inet6` PCB starts with the policy's default V6ONLY (on for
    /// FreeBSD, off for Linux). Allocates once; takes no lock.
    pub fn attach(&self, family: Family, cred: Cred, socket: S) -> Pcb<S> {
        let v6only = family == Family::Inet6 && self.shared.rules().default_v6only();
        let flags = Flags::EMPTY
            .set(Flags::V6ONLY, v6only)
            .with_state(State::Closed);
        self.shared.count_attached();
        Pcb {
            table: self.shared.clone(),
            inner: Arc::new(PcbInner::new(family, cred, flags, socket)),
        }
    }

    /// Pins the current thread's epoch. One guard can serve any number of
    /// lookups; memory that lookups return stays valid until it is dropped, so
    /// keep guards short-lived (and never across an `.await`).
    #[inline]
    pub fn pin(&self) -> Guard {
        crossbeam_epoch::pin()
    }

    /// Packet demultiplexing: the PCB that owns a packet from `remote` to
    /// `local`.
    ///
    /// 1. the exact 4-tuple;
    /// 2. otherwise the best unconnected PCB on the local port, by the
    ///    policy's preference (a specific address before a wildcard; Linux:
    ///    IPv4 PCBs before dual-stack IPv6 ones for IPv4 packets, and only
    ///    TCP listeners; FreeBSD: load-balance groups first, the older of
    ///    two groups on one address, then the order of the kernel's
    ///    lock-free packet path, newest wildcard first, a dual-stack `::`
    ///    alike);
    /// 3. if that PCB is a member of a reuseport / load-balance group, the
    ///    group's active member for this flow (a keyed hash of the tuple);
    ///    a FreeBSD group whose members all wait for `listen()` answers
    ///    nothing, and the best PCB outside the groups is taken instead.
    ///
    /// Wait-free: no lock, no allocation, no atomic read-modify-write, no
    /// retry. An exact hit costs one probe of the exact index; a miss costs
    /// the walk of the port's unconnected PCBs and a second probe, which is
    /// what finds a PCB that moved between the two indexes while the call
    /// ran.
    ///
    /// # Panics
    ///
    /// If `guard` was pinned on another crossbeam-epoch collector than the
    /// default one (use [`PcbTable::pin`]).
    #[inline]
    pub fn lookup<'g>(
        &self,
        local: SocketAddr,
        remote: SocketAddr,
        guard: &'g Guard,
    ) -> Option<PcbRef<'g, S>> {
        // Two lookups compiled apart, so that each carries only its own
        // family's code: an IPv4 key's high words are zero, and the IPv4
        // lookup keeps its key in two registers.
        match Ipv4Flow::of_packet(&local, &remote) {
            Some(flow) => self.lookup_ipv4(flow, guard),
            None => self.lookup_not_ipv4(&local, &remote, guard),
        }
    }

    /// [`lookup`](Self::lookup) of a packet that is IPv4 on both sides.
    #[inline(never)]
    fn lookup_ipv4<'g>(&self, flow: Ipv4Flow, guard: &'g Guard) -> Option<PcbRef<'g, S>> {
        check_guard(guard, self.shared.collector);
        self.lookup_flow(flow, flow.hash(&self.shared.hasher), guard)
    }

    /// [`lookup`](Self::lookup) of any other packet.
    #[inline(never)]
    fn lookup_not_ipv4<'g>(
        &self,
        local: &SocketAddr,
        remote: &SocketAddr,
        guard: &'g Guard,
    ) -> Option<PcbRef<'g, S>> {
        check_guard(guard, self.shared.collector);
        let (key, hash) = FlowKey::of_other_packet_hashed(local, remote, &self.shared.hasher)?;
        self.lookup_flow(&key, hash, guard)
    }

    /// [`lookup`](Self::lookup) for a packet that arrived on `device`.
    ///
    /// A PCB bound to a device ([`Pcb::bind_device`]) answers only packets
    /// of that device, and in the wildcard stage it outranks a PCB bound to
    /// no device (Linux `compute_score`; a PCB on the packet's own address
    /// still comes before a wildcard one); reuseport groups form per
    /// device. A connected PCB bound to another device does not answer its
    /// flow (Linux `inet_match`). [`lookup`](Self::lookup) is a packet
    /// whose device is unknown: only PCBs bound to no device answer it, and
    /// `Device(0)` here means the same.
    ///
    /// Lock-free and allocation-free, like `lookup`, at the same cost: the
    /// device of an exact hit is compared only after its tuple matched.
    ///
    /// ```
    /// use pcbhash::{Builder, Cred, Device, Family, Policy, Protocol};
    ///
    /// let table = Builder::default()
    ///     .policy(Policy::Linux)
    ///     .protocol(Protocol::Udp)
    ///     .build::<&str>();
    /// let any = table.attach(Family::Inet, Cred::ROOT, "any device");
    /// any.bind("0.0.0.0:53".parse()?)?;
    /// let eth1 = table.attach(Family::Inet, Cred::ROOT, "eth1 only");
    /// eth1.bind_device(Some(Device(3)))?;
    /// eth1.set_reuse_addr(true)?;
    /// // A device-bound PCB and an unbound one conflict, as in Linux...
    /// assert!(eth1.bind("0.0.0.0:53".parse()?).is_err());
    /// // ...unless the unbound one shares the port.
    /// any.set_reuse_addr(true)?;
    /// eth1.bind("0.0.0.0:53".parse()?)?;
    ///
    /// let (local, remote) = ("10.0.0.1:53".parse()?, "10.0.0.2:4000".parse()?);
    /// let guard = table.pin();
    /// let on = |device| table.lookup_on(device, local, remote, &guard).and_then(|pcb| pcb.socket());
    /// assert_eq!(on(Device(3)), Some(&"eth1 only"));
    /// assert_eq!(on(Device(2)), Some(&"any device"));
    /// let unknown = table.lookup(local, remote, &guard).and_then(|pcb| pcb.socket());
    /// assert_eq!(unknown, Some(&"any device"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Panics
    ///
    /// As [`PcbTable::lookup`].
    pub fn lookup_on<'g>(
        &self,
        device: crate::cred::Device,
        local: SocketAddr,
        remote: SocketAddr,
        guard: &'g Guard,
    ) -> Option<PcbRef<'g, S>> {
        check_guard(guard, self.shared.collector);
        let (key, hash) = FlowKey::of_packet_hashed(&local, &remote, &self.shared.hasher)?;
        self.shared
            .lookup_on(&key, hash, device.0, guard)
            .map(|pcb| PcbRef::new(pcb, guard))
    }

    /// The lookup without its exact stage: the reuseport / load-balance
    /// group stage and the wildcard stage, for a packet that arrived on
    /// `device` (`None`: unknown, as [`lookup`](Self::lookup)). For TCP these
    /// stages answer with listeners, so this is what a SYN that met a
    /// TIME_WAIT PCB it may replace goes to (Linux `tcp_timewait_state_process`
    /// answering `TCP_TW_SYN`, then `inet_lookup_listener`); for UDP, the
    /// PCBs no 4-tuple holds. Lock-free and allocation-free; one walk of
    /// the port's unconnected PCBs.
    ///
    /// ```
    /// use pcbhash::{Cred, Family, PcbTable, Policy, State};
    ///
    /// let table = PcbTable::<&str>::builder().policy(Policy::Linux).build();
    /// let listener = table.attach(Family::Inet, Cred::ROOT, "listener");
    /// listener.bind("127.0.0.1:80".parse()?)?;
    /// listener.listen()?;
    /// let (server, client) = ("127.0.0.1:80".parse()?, "127.0.0.1:5000".parse()?);
    /// let conn = listener.accept(server, client, "connection")?;
    /// conn.time_wait()?;
    ///
    /// let guard = table.pin();
    /// // The 4-tuple is in TIME_WAIT: a lookup finds the twin...
    /// assert_eq!(table.lookup(server, client, &guard).map(|p| p.state()), Some(State::TimeWait));
    /// // ...and a new SYN on it goes to the listener.
    /// let found = table.lookup_listener(None, server, client, &guard).and_then(|p| p.socket());
    /// assert_eq!(found, Some(&"listener"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn lookup_listener<'g>(
        &self,
        device: Option<crate::cred::Device>,
        local: SocketAddr,
        remote: SocketAddr,
        guard: &'g Guard,
    ) -> Option<PcbRef<'g, S>> {
        check_guard(guard, self.shared.collector);
        let (key, hash) = FlowKey::of_packet_hashed(&local, &remote, &self.shared.hasher)?;
        let device = device.map_or(0, |device| device.0);
        self.shared
            .lookup_unconnected_on(&local, &key, hash, device, guard)
            .map(|pcb| PcbRef::new(pcb, guard))
    }

    /// [`lookup`](Self::lookup) for many packets under one guard, writing the
    /// answer for `packets[i]` to `out[i]`. Returns how many packets were looked
    /// up: `min(packets.len(), out.len())`.
    ///
    /// Packets go in groups of 16: all their hashes are computed and their
    /// exact-index buckets prefetched, then the PCBs those buckets point at
    /// for each packet's signature, before any of them is compared, so the memory latencies of a group
    /// overlap instead of adding up (the technique of DPDK's
    /// `rte_hash_lookup_bulk`). Lock-free and allocation-free, like `lookup`.
    ///
    /// ```
    /// # use pcbhash::{Cred, Family, PcbTable};
    /// let table: PcbTable<u32> = PcbTable::new();
    /// let listener = table.attach(Family::Inet, Cred::ROOT, 0);
    /// listener.bind("127.0.0.1:80".parse()?)?;
    /// listener.listen()?;
    /// let packets: Vec<_> = (1..=40u16)
    ///     .map(|port| ("127.0.0.1:80".parse().unwrap(), ([127, 0, 0, 2], port).into()))
    ///     .collect();
    /// let guard = table.pin();
    /// let mut owners = vec![None; packets.len()];
    /// assert_eq!(table.lookup_batch(&packets, &guard, &mut owners), 40);
    /// assert!(owners.iter().all(|owner| owner.is_some_and(|pcb| pcb.is(&listener))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Panics
    ///
    /// As [`PcbTable::lookup`].
    pub fn lookup_batch<'g>(
        &self,
        packets: &[(SocketAddr, SocketAddr)],
        guard: &'g Guard,
        out: &mut [Option<PcbRef<'g, S>>],
    ) -> usize {
        const GROUP: usize = 16;
        check_guard(guard, self.shared.collector);
        let shared = &*self.shared;
        let count = packets.len().min(out.len());
        for (packets, out) in packets[..count]
            .chunks(GROUP)
            .zip(out[..count].chunks_mut(GROUP))
        {
            let mut keys = [(None, 0u64); GROUP];
            for (key, (local, remote)) in keys.iter_mut().zip(packets) {
                if let Some((flow, hash)) = FlowKey::of_packet_hashed(local, remote, &shared.hasher)
                {
                    shared.exact.prefetch(hash, guard);
                    *key = (Some(flow), hash);
                }
            }
            for (flow, hash) in keys.iter().take(packets.len()) {
                if flow.is_some() {
                    shared.exact.prefetch_candidates(*hash, guard);
                }
            }
            for (slot, (flow, hash)) in out.iter_mut().zip(keys) {
                *slot = flow.and_then(|flow| self.lookup_flow(&flow, hash, guard));
            }
        }
        count
    }

    /// The lookup proper, for a packet's flow and its key's hash:
    /// `Shared::lookup_on` for a packet whose device is unknown, the exact
    /// hit inline (the common case, an established flow), the rest out of
    /// line so that it does not weigh on the exact hit's code.
    #[inline(always)]
    fn lookup_flow<'g>(
        &self,
        flow: impl PacketFlow,
        hash: u64,
        guard: &'g Guard,
    ) -> Option<PcbRef<'g, S>> {
        self.shared
            .lookup_on(flow, hash, Unknown, guard)
            .map(|pcb| PcbRef::new(pcb, guard))
    }

    /// FreeBSD `in_pcblookup_local()`: who holds `local` (address and port).
    ///
    /// With `wildcard`, the best fit among every PCB on the port, connected or
    /// not, where either side may be a wildcard (fewest wildcards win, then
    /// unconnected before connected, then the newest). Without, only an
    /// unconnected PCB bound to exactly `local` (a wildcard matches only a
    /// wildcard).
    ///
    /// Lock-free and allocation-free; it walks the port's PCBs.
    ///
    /// # Panics
    ///
    /// As [`PcbTable::lookup`].
    pub fn lookup_local<'g>(
        &self,
        local: SocketAddr,
        wildcard: bool,
        guard: &'g Guard,
    ) -> Option<PcbRef<'g, S>> {
        check_guard(guard, self.shared.collector);
        let local = Endpoint::new(local);
        let ports = self.shared.ports();
        let candidates = ports
            .iter(local.port, List::Unconnected, guard)
            .chain(ports.iter(local.port, List::Connected, guard))
            .map(|pcb| (pcb.view(guard), &**pcb));
        let af = Af::of(&local);
        let found = if wildcard {
            policy::best_fit(candidates, af, &local)
        } else {
            policy::exact_unconnected(candidates, af, &local)
        };
        found.map(|(_, pcb)| PcbRef::new(pcb, guard))
    }

    /// Multicast and broadcast delivery (UDP): every PCB the kernel hands a
    /// datagram from `remote` to `local` (the group or broadcast address,
    /// and the port), in the order the kernel hands it out. `device` is the
    /// interface the datagram arrived on: a PCB bound to a device
    /// ([`Pcb::bind_device`]) takes only datagrams of that device, and with
    /// `None` (device unknown) only PCBs bound to no device answer, as with
    /// [`lookup`](Self::lookup).
    ///
    /// - **Linux** (`__udp4_lib_mcast_deliver`, `__udp_is_mcast_sock` and
    ///   the IPv6 twins): every PCB on the port bound to `local`'s address
    ///   or a wildcard whose peer, if connected, is `remote` (its port
    ///   unless 0); IPv4 datagrams reach dual-stack `::` PCBs and PCBs on
    ///   v4-mapped addresses, but not V6ONLY ones; an IPv6 PCB whose
    ///   connection ended ignores other sources than its last peer. Every
    ///   member of a reuseport group receives. Order: while the port holds
    ///   at most 10 PCBs, the port's `bind()` order, newest first (an IPv6
    ///   PCB that had SO_REUSEPORT when it bound at the tail, where a later
    ///   change of the option leaves it); otherwise the PCBs on `local`'s
    ///   address, then the wildcard ones, each in the order of the kernel's
    ///   address lists. (The kernel queues the first PCB of its walk last;
    ///   the iterator yields the walk's order.)
    /// - **FreeBSD** (`udp_multi_input`, `udp6_input`): the same match
    ///   (without the last-peer rule), newest first; the walk ends after the
    ///   first receiver that has none of SO_REUSEADDR, SO_REUSEPORT and
    ///   SO_REUSEPORT_LB. The kernel's list is in the order sockets were
    ///   created, the table's in the order they entered the port: the two
    ///   agree when sockets are bound in the order they were created.
    ///
    /// A TCP table yields nothing: TCP has no multicast or broadcast.
    ///
    /// Group membership and source filters are the stack's: the table
    /// knows nothing of `IP_ADD_MEMBERSHIP`. For a multicast group, the
    /// stack filters the iterator by its own membership records (for a
    /// broadcast, it takes every PCB as it comes):
    ///
    /// ```
    /// use std::collections::HashSet;
    /// use std::net::SocketAddr;
    /// use pcbhash::{Cred, Family, PcbTable, Policy, Protocol};
    ///
    /// // The stack's socket: an id, used here to record memberships.
    /// let table = PcbTable::<u32>::builder()
    ///     .policy(Policy::Linux)
    ///     .protocol(Protocol::Udp)
    ///     .build::<u32>();
    /// let joined = table.attach(Family::Inet, Cred::ROOT, 1);
    /// let other = table.attach(Family::Inet, Cred::ROOT, 2);
    /// for pcb in [&joined, &other] {
    ///     pcb.set_reuse_addr(true)?;
    ///     pcb.bind("0.0.0.0:5353".parse()?)?;
    /// }
    /// let group: SocketAddr = "224.0.0.251:5353".parse()?;
    /// let members: HashSet<u32> = HashSet::from([1]); // socket 1 joined the group
    ///
    /// let guard = table.pin();
    /// let receivers: Vec<u32> = table
    ///     .deliver(None, group, "127.0.0.1:5353".parse()?, &guard)
    ///     .filter_map(|pcb| pcb.socket().copied())
    ///     .filter(|id| members.contains(id))
    ///     .collect();
    /// assert_eq!(receivers, [1]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// Lock-free and allocation-free. The iterator is lazy: each item costs
    /// one walk of the port's PCBs (and the first one walk more, to count
    /// them). Weakly consistent: a PCB that stays on the port, in its
    /// place, while the iterator runs is yielded exactly once if it
    /// matches.
    ///
    /// # Panics
    ///
    /// As [`PcbTable::lookup`].
    pub fn deliver<'g>(
        &'g self,
        device: Option<crate::cred::Device>,
        local: SocketAddr,
        remote: SocketAddr,
        guard: &'g Guard,
    ) -> impl Iterator<Item = PcbRef<'g, S>> + 'g {
        check_guard(guard, self.shared.collector);
        crate::core::Deliveries::new(&self.shared, device, local, remote, guard)
            .map(move |pcb| PcbRef::new(pcb, guard))
    }

    /// How many PCBs hold a port: bound, listening, connected or in TIME_WAIT.
    /// Sums a counter striped over a few cache lines (exact when no writer
    /// runs).
    pub fn len(&self) -> usize {
        self.shared.ports().len()
    }

    /// Whether no PCB holds a port.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every PCB that holds a port, port by port. Lock-free and weakly
    /// consistent: a PCB in the table for the whole walk is visited exactly
    /// once.
    pub fn iter<'g>(&'g self, guard: &'g Guard) -> impl Iterator<Item = PcbRef<'g, S>> + 'g {
        check_guard(guard, self.shared.collector);
        self.shared
            .ports()
            .iter_all(guard)
            .map(move |pcb| PcbRef::new(pcb, guard))
    }

    /// Counts by state, index sizes, the exact index's longest probe and its
    /// resizes. Walks the whole table: O(n), lock-free.
    pub fn stats(&self) -> Stats {
        let guard = crossbeam_epoch::pin();
        let shared = &*self.shared;
        let map = shared.exact.stats(&guard);
        let mut stats = Stats {
            len: shared.ports().len(),
            attached: shared.attached(),
            exact: IndexStats {
                entries: map.entries,
                buckets: map.buckets,
                longest_chain: map.reach + 1,
                displaced: map.displaced,
                resizing: map.resizing,
            },
            resizes: shared.exact.resizes(),
            ..Stats::default()
        };
        let mut last_port = None;
        let mut on_port = 0;
        for pcb in shared.ports().iter_all(&guard) {
            let view = pcb.view(&guard);
            match view.state() {
                State::Bound => stats.bound += 1,
                State::Listen => stats.listen += 1,
                State::Connected => stats.connected += 1,
                State::TimeWait => stats.time_wait += 1,
                State::Closed | State::Dropped => {}
            }
            if !view.is_connected() {
                stats.wildcard_entries += 1;
            }
            if view.flags.in_group() {
                stats.group_members += 1;
            }
            if last_port != Some(view.local.port) {
                last_port = Some(view.local.port);
                stats.ports_in_use += 1;
                on_port = 0;
            }
            on_port += 1;
            stats.most_on_one_port = stats.most_on_one_port.max(on_port);
        }
        stats
    }

    /// Pushes this thread's retired memory to the global queue and tries to
    /// free what no guard can see any more. Threads that retire memory and
    /// then go idle should call it, so their garbage does not wait for them.
    pub fn flush(&self) {
        crossbeam_epoch::pin().flush();
    }
}

impl<S: Send + Sync + 'static> fmt::Debug for PcbTable<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PcbTable")
            .field("rules", self.shared.rules())
            .field("protocol", &self.shared.rules().protocol)
            .field("len", &self.len())
            .field("ephemeral", &self.shared.ephemeral_range())
            .finish()
    }
}

/// Figures about a table; see [`PcbTable::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// PCBs holding a port ([`PcbTable::len`]).
    pub len: usize,
    /// Live [`Pcb`] handles, bound or not.
    pub attached: usize,
    /// PCBs in [`State::Bound`].
    pub bound: usize,
    /// PCBs in [`State::Listen`].
    pub listen: usize,
    /// PCBs in [`State::Connected`].
    pub connected: usize,
    /// PCBs in [`State::TimeWait`].
    pub time_wait: usize,
    /// Entries of the wildcard index (bound and listening PCBs).
    pub wildcard_entries: usize,
    /// Active members of reuseport / load-balance groups.
    pub group_members: usize,
    /// Distinct local ports in use.
    pub ports_in_use: usize,
    /// The most PCBs on one local port (the length a bind check scans).
    pub most_on_one_port: usize,
    /// The exact (4-tuple) index.
    pub exact: IndexStats,
    /// Completed resizes of the exact index.
    pub resizes: u64,
}

/// Figures about the exact index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct IndexStats {
    /// Entries.
    pub entries: usize,
    /// Buckets of the current array.
    pub buckets: usize,
    /// The most buckets (cache lines) a probe of the current array reads:
    /// one, plus the farthest any entry sits past its home bucket. The
    /// index has no chains; the name is 0.1's, when it had.
    pub longest_chain: usize,
    /// Entries of the current array that sit past their home bucket: a
    /// lookup of one reads a second bucket line.
    pub displaced: usize,
    /// Whether a resize is in progress.
    pub resizing: bool,
}
