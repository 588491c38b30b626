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
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;

use crossbeam_epoch::Guard;

use crate::addr::{loopback_source, Endpoint, Family, FlowKey};
use crate::busy::{self, BusyHints};
use crate::core::{ExactPcbs, PcbInner, Shared, SourceAddress};
use crate::cred::Cred;
use crate::flags::{Flags, State};
use crate::hooks::Hooks;
use crate::pcb::{Pcb, PcbRef};
use crate::policy::{
    self, Af, ConnectWild, KernelOptions, Policy, Protocol, RuleSet, Rules, TwReuse,
};
use crate::ports::Ephemeral;
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

impl<S: Send + Sync + 'static> Default for PcbTable<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Send + Sync + 'static> PcbTable<S> {
    /// A TCP table with the FreeBSD policy and a random hash seed.
    pub fn new() -> Self {
        Builder::default().build()
    }

    /// A builder for other policies, protocols, ranges and seeds.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The policy the table follows. For a table built with
    /// [`Builder::custom_policy`], the one [`Builder::policy`] named (which
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
    pub fn lookup<'g>(
        &self,
        local: SocketAddr,
        remote: SocketAddr,
        guard: &'g Guard,
    ) -> Option<PcbRef<'g, S>> {
        check_guard(guard, self.shared.collector);
        let (key, hash) = FlowKey::of_packet_hashed(&local, &remote, &self.shared.hasher)?;
        self.lookup_flow(&local, &key, hash, guard)
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
            .lookup_on(&local, &key, hash, device.0, guard)
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
            for ((slot, (flow, hash)), (local, _)) in out.iter_mut().zip(keys).zip(packets) {
                *slot = flow.and_then(|flow| self.lookup_flow(local, &flow, hash, guard));
            }
        }
        count
    }

    /// The lookup proper, for a packet's destination, its flow key and the
    /// key's hash: the exact stage inline (the common case, an established
    /// flow), the rest out of line so that it does not weigh on the exact
    /// hit's code.
    #[inline(always)]
    fn lookup_flow<'g>(
        &self,
        local: &SocketAddr,
        key: &FlowKey,
        hash: u64,
        guard: &'g Guard,
    ) -> Option<PcbRef<'g, S>> {
        if let Some(pcb) = self.shared.exact.find(hash, key, guard) {
            return Some(PcbRef::new(pcb, guard));
        }
        self.lookup_slow(local, key, hash, guard)
    }

    /// The lookup after an exact miss: [`Shared::lookup_slow`].
    #[inline(always)]
    fn lookup_slow<'g>(
        &self,
        local: &SocketAddr,
        key: &FlowKey,
        hash: u64,
        guard: &'g Guard,
    ) -> Option<PcbRef<'g, S>> {
        self.shared
            .lookup_slow(local, key, hash, guard)
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
    ///   SO_REUSEPORT PCB at the tail); otherwise the PCBs on `local`'s
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

/// Builds a [`PcbTable`] with another policy, protocol, port range or seed.
///
/// ```
/// use pcbhash::{PcbTable, Policy, Protocol};
/// let table: PcbTable<()> = PcbTable::<()>::builder()
///     .policy(Policy::Linux)
///     .protocol(Protocol::Udp)
///     .ephemeral_ports(40000..=40999)
///     .seed(42)
///     .build();
/// assert_eq!(table.policy(), Policy::Linux);
/// ```
pub struct Builder {
    policy: Policy,
    custom: Option<std::sync::Arc<dyn Rules>>,
    pub(crate) hooks: Hooks,
    protocol: Protocol,
    ephemeral: Option<RangeInclusive<u16>>,
    seed: Option<u64>,
    capacity: usize,
    exact_buckets: Option<usize>,
    randomized_ports: bool,
    connect_wild: ConnectWild,
    bind_all_fibs: bool,
    tw_reuse: TwReuse,
    source_address: Option<Box<SourceAddress>>,
    #[cfg(test)]
    busy_hints_after: usize,
    #[cfg(pcbhash_broken)]
    broken: crate::sync::Broken,
    #[cfg(pcbhash_loom)]
    move_step: Option<crate::sync::MoveStepHook>,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            policy: Policy::default(),
            custom: None,
            hooks: Hooks::default(),
            protocol: Protocol::Tcp,
            ephemeral: None,
            seed: None,
            capacity: 1024,
            exact_buckets: None,
            randomized_ports: true,
            connect_wild: ConnectWild::default(),
            tw_reuse: TwReuse::default(),
            bind_all_fibs: true,
            source_address: None,
            #[cfg(test)]
            busy_hints_after: busy::INSTALL_AFTER,
            #[cfg(pcbhash_broken)]
            broken: crate::sync::Broken::default(),
            #[cfg(pcbhash_loom)]
            move_step: None,
        }
    }
}

impl Builder {
    /// The defaults: FreeBSD, TCP, the policy's port range, a random seed.
    /// The same as [`PcbTable::builder`], without naming the socket type.
    pub fn new() -> Self {
        Self::default()
    }

    /// The kernel whose rules to follow. Default: FreeBSD.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// A policy of your own in place of the kernel's: `rules` answers every
    /// decision (see [`policy::Rules`], and its stability note). It serves
    /// the protocol that [`protocol`](Self::protocol) names; the FreeBSD
    /// settings ([`connect_inaddr_wild`](Self::connect_inaddr_wild),
    /// [`connect_in6addr_wild`](Self::connect_in6addr_wild)) do not apply to
    /// it, and [`PcbTable::policy`] still reports the built-in policy
    /// [`policy`](Self::policy) named.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use pcbhash::policy::{self, Rules};
    /// use pcbhash::{Builder, Policy, Protocol};
    ///
    /// // A policy that wraps a built-in one would forward every method; here,
    /// // the built-in Linux rules stand in for a custom object.
    /// let rules: Arc<dyn Rules> = policy::builtin(Policy::Linux, Protocol::Udp);
    /// let table: pcbhash::PcbTable<()> = Builder::new()
    ///     .protocol(Protocol::Udp)
    ///     .custom_policy(rules)
    ///     .build();
    /// assert_eq!(table.protocol(), Protocol::Udp);
    /// ```
    pub fn custom_policy(mut self, rules: std::sync::Arc<dyn Rules>) -> Self {
        self.custom = Some(rules);
        self
    }

    /// TCP or UDP. Default: TCP.
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// The ephemeral port range, inclusive. Default: the policy's
    /// (10000–65535 for FreeBSD, 32768–60999 for Linux).
    pub fn ephemeral_ports(mut self, range: RangeInclusive<u16>) -> Self {
        self.ephemeral = Some(range);
        self
    }

    /// A fixed seed for the hash keys and the port generator, for
    /// reproducible tests. Default: random per table.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Expected number of connected PCBs; the exact index starts that large
    /// and grows (incrementally) past it.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// For tests and model checking: the exact index starts with `buckets`
    /// buckets (rounded up to a power of two, at least one) instead of the
    /// number [`capacity`](Self::capacity) gives, and never shrinks below
    /// that. It grows once it holds more than four connections per bucket
    /// (one per bucket in the loom models, whose buckets have two slots), so
    /// with one bucket the fifth connection (the second under loom) triggers
    /// a resize. Overrides `capacity`.
    #[doc(hidden)]
    pub fn exact_buckets(mut self, buckets: usize) -> Self {
        self.exact_buckets = Some(buckets);
        self
    }

    /// For the loom models' self-test only (compiled with
    /// `--cfg pcbhash_broken`): a table with one piece of its synchronisation
    /// deliberately removed. `variant` is `"resize-moved-first"`,
    /// `"one-exact-probe"`, `"skip-connecting"`, `"ignore-moves"`,
    /// `"no-port-lock"` or `"free-at-once"` (the last one is memory-unsafe on purpose, for a
    /// sanitizer to catch).
    ///
    /// # Panics
    ///
    /// On an unknown variant.
    #[cfg(pcbhash_broken)]
    #[doc(hidden)]
    pub fn broken(mut self, variant: &str) -> Self {
        self.broken = crate::sync::Broken::named(variant);
        self
    }

    /// For the loom models only (compiled with `--cfg pcbhash_loom`): `hook`
    /// is called with the name of each step that a move between the wildcard
    /// list and the exact index passes, with the port's lock held, so that a
    /// model can park the writer in the middle of the move. The steps are
    /// `"connect: tuple published"` (the PCB is still in the wildcard list
    /// only), `"connect: exact linked"` (in both places),
    /// `"disconnect: wildcard linked"` (in both places, its tuple still the
    /// connected one) and `"disconnect: tuple published"` (in both places,
    /// its tuple the unconnected one, which its exact entry no longer
    /// matches); a Linux UDP reconnect to another peer passes
    /// `"disconnect: wildcard linked"`, `"reconnect: old exact unlinked"`
    /// (in the wildcard list only, its tuple still the old one), then the
    /// two connect steps.
    #[cfg(pcbhash_loom)]
    #[doc(hidden)]
    pub fn on_move_step<F>(mut self, hook: F) -> Self
    where
        F: Fn(&'static str) + Send + Sync + 'static,
    {
        self.move_step = Some(Arc::new(hook));
        self
    }

    /// For the crate's tests: a `connect()` scan installs a busy-port hint
    /// after meeting `ports` ports taken by its destination (`usize::MAX`:
    /// never).
    #[cfg(test)]
    pub(crate) fn busy_hints_after(mut self, ports: usize) -> Self {
        self.busy_hints_after = ports;
        self
    }

    /// Whether FreeBSD ephemeral scans start at a random port
    /// (`net.inet.ip.portrange.randomized`, default on) or after the last port
    /// handed out.
    pub fn randomized_ports(mut self, on: bool) -> Self {
        self.randomized_ports = on;
        self
    }

    /// FreeBSD `net.inet.ip.connect_inaddr_wild`: whether `connect()` to
    /// `0.0.0.0` or `255.255.255.255` goes ahead. Off (FreeBSD 15's default):
    /// both give `NetworkUnreachable`. On (FreeBSD 14's behaviour): `0.0.0.0`
    /// stands for the host's first IPv4 address, which the table takes to be
    /// `127.0.0.1`, and `255.255.255.255` stays itself (TCP refuses it with
    /// `PermissionDenied` either way). Ignored by [`Policy::Linux`].
    ///
    /// ```
    /// use pcbhash::{Cred, Error, Family, PcbTable};
    /// let strict: PcbTable<()> = PcbTable::new();
    /// let pcb = strict.attach(Family::Inet, Cred::ROOT, ());
    /// assert_eq!(pcb.connect("0.0.0.0:80".parse()?), Err(Error::NetworkUnreachable));
    ///
    /// let wild: PcbTable<()> = PcbTable::<()>::builder().connect_inaddr_wild(true).build();
    /// let pcb = wild.attach(Family::Inet, Cred::ROOT, ());
    /// pcb.connect("0.0.0.0:80".parse()?)?;
    /// assert_eq!(pcb.peer_addr(), Some("127.0.0.1:80".parse()?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn connect_inaddr_wild(mut self, on: bool) -> Self {
        self.connect_wild.inaddr = on;
        self
    }

    /// FreeBSD `net.inet6.ip6.connect_in6addr_wild`: whether `connect()` to
    /// `::` goes to `::1`. On (FreeBSD 15's default); off, it gives
    /// `NetworkUnreachable`. Ignored by [`Policy::Linux`].
    ///
    /// ```
    /// use pcbhash::{Cred, Error, Family, PcbTable};
    /// let table: PcbTable<()> = PcbTable::new();
    /// let pcb = table.attach(Family::Inet6, Cred::ROOT, ());
    /// pcb.connect("[::]:80".parse()?)?;
    /// assert_eq!(pcb.peer_addr(), Some("[::1]:80".parse()?));
    ///
    /// let strict: PcbTable<()> = PcbTable::<()>::builder().connect_in6addr_wild(false).build();
    /// let pcb = strict.attach(Family::Inet6, Cred::ROOT, ());
    /// assert_eq!(pcb.connect("[::]:80".parse()?), Err(Error::NetworkUnreachable));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn connect_in6addr_wild(mut self, on: bool) -> Self {
        self.connect_wild.in6addr = on;
        self
    }

    /// FreeBSD `net.inet.tcp.bind_all_fibs` (or `net.inet.udp.bind_all_fibs`
    /// for a UDP table): whether a PCB's FIB
    /// ([`Pcb::bind_device`] under `Policy::FreeBsd`, `SO_SETFIB`) leaves
    /// binds and lookups unscoped. On (FreeBSD 15's default): FIBs change
    /// nothing here. Off: `bind()` conflicts only with PCBs of its own FIB
    /// (`in6_pcbbind_avail` passes the PCB's `inc_fibnum` to
    /// `in6_pcblookup_local`; the other-owner check and the IPv4 half of a
    /// dual-stack `::` still look at every FIB, `RT_ALL_FIBS`), load-balance
    /// groups form per FIB, and the wildcard stage of a lookup answers only
    /// with PCBs of the packet's FIB (`in6_pcblookup_wild_match`: `if (fib
    /// != RT_ALL_FIBS && inp->inp_inc.inc_fibnum != fib)`):
    /// [`PcbTable::lookup_on`] names the FIB, and [`PcbTable::lookup`] is a
    /// packet of FIB 0. Connected PCBs answer their flow from any FIB
    /// (`in6_pcblookup_hash_exact` takes no FIB), and ephemeral ports are
    /// picked over all FIBs (`in_pcb_lport_dest`). Ignored by
    /// [`Policy::Linux`].
    ///
    /// ```
    /// use pcbhash::{Builder, Cred, Device, Error, Family, Protocol};
    ///
    /// let table = Builder::default().protocol(Protocol::Udp).bind_all_fibs(false).build::<&str>();
    /// let fib0 = table.attach(Family::Inet, Cred::ROOT, "fib 0");
    /// fib0.bind("0.0.0.0:53".parse()?)?;
    /// let fib1 = table.attach(Family::Inet, Cred::ROOT, "fib 1");
    /// fib1.bind_device(Some(Device(1)))?;
    /// // Another FIB: no conflict, and no SO_REUSEPORT needed.
    /// fib1.bind("0.0.0.0:53".parse()?)?;
    /// // Bound while FIBs scope binds, the FIB stays (EISCONN).
    /// assert_eq!(fib1.bind_device(Some(Device(2))), Err(Error::AlreadyConnected));
    ///
    /// let (local, remote) = ("127.0.0.1:53".parse()?, "127.0.0.1:4000".parse()?);
    /// let guard = table.pin();
    /// let on = |fib| table.lookup_on(fib, local, remote, &guard).and_then(|pcb| pcb.socket());
    /// assert_eq!(on(Device(1)), Some(&"fib 1"));
    /// assert_eq!(on(Device(2)), None);
    /// let default_fib = table.lookup(local, remote, &guard).and_then(|pcb| pcb.socket());
    /// assert_eq!(default_fib, Some(&"fib 0"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn bind_all_fibs(mut self, on: bool) -> Self {
        self.bind_all_fibs = on;
        self
    }

    /// Linux `net.ipv4.tcp_tw_reuse` ([`TwReuse`], default
    /// [`TwReuse::Off`]): whether an unbound `connect()` may take over the
    /// 4-tuple of a TIME_WAIT PCB that the stack marked reusable with
    /// [`Pcb::allow_tw_reuse`]. The kernel's own default is
    /// [`TwReuse::Loopback`]; a table changes nothing until the stack
    /// marks PCBs, since only the stack knows whether the connection used
    /// timestamps and when `tcp_tw_reuse_delay` has passed. Ignored by
    /// [`Policy::FreeBsd`].
    ///
    /// ```
    /// use pcbhash::policy::TwReuse;
    /// use pcbhash::{Cred, Family, PcbTable, Policy};
    ///
    /// let table = PcbTable::<()>::builder()
    ///     .policy(Policy::Linux)
    ///     .ephemeral_ports(40000..=40000)
    ///     .tcp_tw_reuse(TwReuse::Loopback)
    ///     .build();
    /// let (server, client) = ("127.0.0.1:80".parse()?, "127.0.0.1:40000".parse()?);
    /// let first = table.attach(Family::Inet, Cred::user(1000), ());
    /// assert_eq!(first.connect(server)?, client);
    /// first.time_wait()?;
    ///
    /// // The only port's 4-tuple is in TIME_WAIT...
    /// let second = table.attach(Family::Inet, Cred::user(1000), ());
    /// assert!(second.connect(server).is_err());
    /// // ...until the stack says the timestamps allow reuse.
    /// first.allow_tw_reuse()?;
    /// let third = table.attach(Family::Inet, Cred::user(1000), ());
    /// assert_eq!(third.connect(server)?, client);
    /// assert_eq!(first.state(), pcbhash::State::Dropped);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn tcp_tw_reuse(mut self, mode: TwReuse) -> Self {
        self.tw_reuse = mode;
        self
    }

    /// The stack's routing decision: the local address `connect()` uses for a
    /// peer when the PCB is unbound or bound to a wildcard. The selector sees
    /// the peer as the PCB's family shows it (v4-mapped for an `Inet6` PCB),
    /// after an unspecified peer became the local host (Linux). `None` makes
    /// `connect()` fail with `NetworkUnreachable`. The default knows only
    /// loopback: `127.0.0.0/8` → `127.0.0.1`, `::1` → `::1`,
    /// `::ffff:127.x.y.z` → `::ffff:127.0.0.1`.
    pub fn source_address<F>(mut self, select: F) -> Self
    where
        F: Fn(IpAddr) -> Option<IpAddr> + Send + Sync + 'static,
    {
        self.source_address = Some(Box::new(select));
        self
    }

    /// The table.
    pub fn build<S: Send + Sync + 'static>(self) -> PcbTable<S> {
        let (hasher, port_seed) = match self.seed {
            Some(seed) => (
                ahash::RandomState::with_seeds(
                    seed,
                    seed ^ 0x243F_6A88_85A3_08D3,
                    seed ^ 0x1319_8A2E_0370_7344,
                    seed ^ 0xA409_3822_299F_31D0,
                ),
                seed,
            ),
            None => {
                let hasher = ahash::RandomState::new();
                let port_seed = ahash::RandomState::new().hash_one(0x5EED_u64);
                (hasher, port_seed)
            }
        };
        let options = KernelOptions {
            connect_wild: self.connect_wild,
            bind_all_fibs: self.bind_all_fibs,
            tw_reuse: self.tw_reuse,
        };
        let rules = RuleSet::new(self.policy, self.protocol, options, self.custom);
        let range = self.ephemeral.unwrap_or_else(|| rules.default_ephemeral());
        let mut shared = Shared::new(
            rules,
            hasher,
            ExactPcbs::new(self.capacity, self.exact_buckets),
            Ephemeral::new(range, port_seed, self.randomized_ports),
            BusyHints::new({
                #[cfg(test)]
                let after = self.busy_hints_after;
                #[cfg(not(test))]
                let after = busy::INSTALL_AFTER;
                after
            }),
            self.source_address
                .unwrap_or_else(|| Box::new(loopback_source)),
        );
        shared.hooks = self.hooks;
        #[cfg(pcbhash_loom)]
        {
            shared.move_step = self.move_step;
        }
        #[cfg(pcbhash_broken)]
        shared.set_broken(self.broken);
        PcbTable {
            shared: Arc::new(shared),
        }
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("policy", &self.policy)
            .field("custom", &self.custom)
            .field("hooks", &self.hooks)
            .field("protocol", &self.protocol)
            .field("ephemeral", &self.ephemeral)
            .field("seed", &self.seed)
            .field("capacity", &self.capacity)
            .field("exact_buckets", &self.exact_buckets)
            .field("randomized_ports", &self.randomized_ports)
            .field("connect_wild", &self.connect_wild)
            .field("bind_all_fibs", &self.bind_all_fibs)
            .field(
                "source_address",
                &self.source_address.as_ref().map(|_| "custom"),
            )
            .finish()
    }
}
