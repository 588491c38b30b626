//! `PcbTable<S>`: the public API. It composes the indexes:
//!
//! - **exact**: connected and TIME_WAIT PCBs by 4-tuple (an
//!   [`ExactIndex`](crate::raw::ExactIndex) of one-line buckets of seven
//!   signature-and-pointer slots, probed without data-dependent branches;
//!   the key is the PCB's own tuple, see `exact.rs`);
//! - **wildcard**: bound and listening PCBs, per local port (the unconnected
//!   lists of the [`PortTable`]);
//! - **by local port**: every PCB holding a port, what bind-conflict checks scan
//!   (both lists of the [`PortTable`]).
//!
//! The lifecycle (bind, listen, connect, ...) lives in `lifecycle.rs`.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;

use crossbeam_epoch::{Collector, Guard};

use crate::addr::{loopback_source, Endpoint, Family, FlowKey, Tuple};
use crate::buckets::PortMemos;
use crate::busy::{self, BusyHints};
use crate::counter::Counter;
use crate::cred::Cred;
use crate::exact::ExactPcbs;
use crate::flags::{Flags, State};
use crate::pcb::{Pcb, PcbInner, PcbRef};
use crate::policy::{self, canonical, Af, ConnectWild, PcbView, Policy, Protocol, RuleSet, Rules};
use crate::ports::Ephemeral;
use crate::raw::{check_guard, default_guard_collector, List, PortTable};
use crate::sync::{Arc, AtomicUsize, Ordering};

/// The stack's source-address selector; see [`Builder::source_address`].
pub(crate) type SourceAddress = dyn Fn(IpAddr) -> Option<IpAddr> + Send + Sync;

/// Everything a table and its PCB handles share.
pub(crate) struct Shared<S: Send + Sync + 'static> {
    pub(crate) rules: RuleSet,
    pub(crate) hasher: ahash::RandomState,
    /// The collector of the guards lookups take (crossbeam-epoch's default).
    pub(crate) collector: &'static Collector,
    pub(crate) exact: ExactPcbs<S>,
    pub(crate) ports: PortTable<Arc<PcbInner<S>>>,
    pub(crate) ephemeral: Ephemeral,
    /// What the policy remembers about each port (see `buckets.rs`).
    pub(crate) memos: PortMemos,
    /// Ports known to hold a connection to a crowded destination.
    pub(crate) busy: BusyHints,
    pub(crate) source_address: Box<SourceAddress>,
    /// Live `Pcb` handles, counted on each thread's own line.
    pub(crate) attached: Counter,
    /// How many PCBs the exact index holds for "this address, any port"
    /// (Linux UDP connected to port 0); while there are none, a lookup
    /// does not look for them.
    pub(crate) any_port_peers: AtomicUsize,
    /// Deliberately broken synchronisation of the lookup, for the loom
    /// models' own test.
    #[cfg(pcbhash_broken)]
    pub(crate) broken: crate::sync::Broken,
    /// Under loom: called at each named step in the middle of a move.
    #[cfg(pcbhash_loom)]
    pub(crate) move_step: Option<crate::sync::MoveStepHook>,
}

impl<S: Send + Sync + 'static> Shared<S> {
    /// A step in the middle of a move between indexes, named for the loom
    /// models, which can park the writer there (nothing in other builds).
    #[inline(always)]
    pub(crate) fn move_step(&self, step: &'static str) {
        #[cfg(pcbhash_loom)]
        if let Some(hook) = &self.move_step {
            hook(step);
        }
        #[cfg(not(pcbhash_loom))]
        let _ = step;
    }

    /// The keyed hash of a 4-tuple: the exact index's hash and the hash that
    /// picks a group member.
    #[inline]
    pub(crate) fn tuple_hash(&self, tuple: &Tuple) -> u64 {
        self.flow(tuple).hash
    }

    /// The exact-index key of `tuple` and its hash: computed once per call
    /// of the lifecycle, and handed to every exact-index operation of it.
    #[inline]
    pub(crate) fn flow(&self, tuple: &Tuple) -> Flow {
        let key = FlowKey::of_tuple(tuple);
        Flow {
            tuple: *tuple,
            key,
            hash: key.hash(&self.hasher),
        }
    }

    /// Inserts `pcb`, whose tuple is `flow`'s, into the exact index. Takes
    /// one bucket lock.
    pub(crate) fn exact_insert(&self, flow: &Flow, pcb: &Arc<PcbInner<S>>, guard: &Guard) {
        debug_assert!(
            pcb.is_flow(&flow.key, guard),
            "a PCB is filed under its own tuple"
        );
        if self.rules.lookup.matches_any_port(&flow.tuple) {
            self.any_port_peers.fetch_add(1, Ordering::Relaxed);
        }
        self.exact.insert(flow.hash, pcb, guard);
    }

    /// Removes `pcb`'s entry for `flow` from the exact index. Takes one
    /// bucket lock. Whether there was one.
    pub(crate) fn exact_remove(&self, flow: &Flow, pcb: &Arc<PcbInner<S>>, guard: &Guard) -> bool {
        let removed = self.exact.remove(flow.hash, pcb, guard);
        if removed && self.rules.lookup.matches_any_port(&flow.tuple) {
            self.any_port_peers.fetch_sub(1, Ordering::Relaxed);
        }
        removed
    }

    /// The PCB connected to the packet's remote address with any port
    /// (see [`Lookup::any_port`](policy::Lookup::any_port)), with its rank among the wildcard
    /// ranks. Of several (Linux UDP lists them all in the address's list,
    /// where `compute_score` ranks them), the best-ranked, then the first
    /// listed. Lock-free: one load while there are none, one more exact
    /// probe otherwise, and a walk of the port's connected PCBs if that
    /// one has others waiting behind it.
    fn any_port_peer<'g>(
        &self,
        key: &FlowKey,
        local: &Endpoint,
        guard: &'g Guard,
    ) -> Option<(u32, &'g PcbInner<S>)> {
        if self.any_port_peers.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let key = key.any_remote_port();
        let holder = self.exact.find(key.hash(&self.hasher), &key, guard)?;
        let packet = canonical(*local);
        let rank = |pcb: &PcbInner<S>| self.rules.any_port_peer_rank(packet, pcb.family);
        if !holder.flags.load().contains(Flags::SHADOWING) {
            return Some((rank(holder), holder));
        }
        let mut best = (rank(holder), holder.seq.load(Ordering::Relaxed), holder);
        for pcb in self.ports.iter(local.port, List::Connected, guard) {
            let view = pcb.view(guard);
            let tuple = Tuple {
                local: view.local,
                remote: view.remote,
            };
            let order = (rank(pcb), view.seq);
            if FlowKey::of_tuple(&tuple) == key && order > (best.0, best.1) {
                best = (order.0, order.1, &**pcb);
            }
        }
        Some((best.0, best.2))
    }

    /// Views of every PCB on `port` but `me`. Call under the port's lock for a
    /// stable answer.
    pub(crate) fn owners(&self, port: u16, me: &PcbInner<S>, guard: &Guard) -> Vec<PcbView> {
        self.ports
            .iter(port, List::Unconnected, guard)
            .chain(self.ports.iter(port, List::Connected, guard))
            .filter(|pcb| !std::ptr::eq(&***pcb, me))
            .map(|pcb| pcb.view(guard))
            .collect()
    }

    /// The PCB holding `flow` in the exact index.
    pub(crate) fn exact_holder<'g>(
        &self,
        flow: &Flow,
        guard: &'g Guard,
    ) -> Option<&'g PcbInner<S>> {
        self.exact.find(flow.hash, &flow.key, guard)
    }

    /// [`exact_holder`](Self::exact_holder), as a strong reference.
    pub(crate) fn exact_holder_arc(&self, flow: &Flow, guard: &Guard) -> Option<Arc<PcbInner<S>>> {
        self.exact.find_arc(flow.hash, &flow.key, guard)
    }

    /// Linux (`udp4_lib_lookup2`, `inet_lhash2_lookup`): the kernel walks
    /// the address's list and keeps the first socket that outranks every
    /// one before it, but stops at such a socket that asks a reuseport
    /// group that no member ever connected from, and that group's pick
    /// takes the packet, even if a better-ranked socket follows. This is
    /// that walk over the PCBs listed before `limit`, the PCB the ranking
    /// chose (the best-ranked unconnected one, of the pass `pass` says, or
    /// one connected to the packet's address with any port). Lock-free;
    /// allocation-free.
    fn walk_before<'g>(
        &self,
        limit: &PcbInner<S>,
        pass: bool,
        local: &Endpoint,
        source: &Ipv6Addr,
        hash: u64,
        guard: &'g Guard,
    ) -> Before<'g, S> {
        let after = limit.seq.load(Ordering::Relaxed);
        let packet = canonical(*local);
        // The first socket listed before `limit` that outranks `floor`.
        let first_above = |floor: u32| {
            let mut first: Option<(u32, u64, &'g PcbInner<S>)> = None;
            for pcb in self.ports.iter(local.port, List::Unconnected, guard) {
                let view = pcb.view(guard);
                let Some((rank, _)) = self.wildcard_rank(pcb, &view, &packet, source, guard) else {
                    continue;
                };
                let listed_before = view.seq > after;
                let same_pass = self.rules.lookup.same_pass(rank) == pass;
                let earlier = first.is_none_or(|(_, seq, _)| view.seq > seq);
                if listed_before && same_pass && rank > floor && earlier {
                    first = Some((rank, view.seq, &**pcb));
                }
            }
            first
        };
        let mut last = None;
        let mut floor = 0;
        while let Some((rank, _, pcb)) = first_above(floor) {
            let flags = pcb.flags.load();
            if self.rules.lookup.consults_group(flags) {
                if let Some(group) = pcb.group.load(guard) {
                    if !group.has_conns() {
                        if let Some(member) = group.pick(&self.rules.lookup, hash, guard) {
                            return Before::Group(member);
                        }
                    }
                }
            }
            last = Some((rank, pcb));
            floor = rank;
        }
        Before::Last(last)
    }

    /// The wildcard stage of a lookup: the best-ranked unconnected PCB on the
    /// packet's local port. Lock-free; allocation-free.
    ///
    /// With `flow`, a PCB met in the wildcard list whose tuple already says
    /// connected to exactly that flow is a `connect()` caught between
    /// publishing its tuple and linking itself into the exact index; it is
    /// the answer (see `PcbTable::lookup_slow`); one connecting to the
    /// flow's remote address with any port (Linux UDP) is the answer unless
    /// the walk meets an exact one after it. Without, such PCBs are passed
    /// over, and group membership is not looked at either: the stage that
    /// follows a group with no member that takes flows.
    fn best_wildcard<'g>(
        &self,
        local: &Endpoint,
        source: &Ipv6Addr,
        flow: Option<&FlowKey>,
        guard: &'g Guard,
    ) -> Wildcard<'g, S> {
        let mut best: Option<((u32, u64), u64, &'g PcbInner<S>)> = None;
        let mut peer = None;
        // The place of the first-listed candidate that may ask a group.
        let mut first_grouped = None;
        let packet = canonical(*local);
        for pcb in self.ports.iter(local.port, List::Unconnected, guard) {
            let mut view = pcb.view(guard);
            if view.is_connected() {
                match flow.map(|flow| self.connecting_to(&view, flow)) {
                    Some(Connecting::Exact) => return Wildcard::Connecting(pcb),
                    Some(Connecting::AnyPort) => peer = Some(pcb),
                    _ => {}
                }
                continue;
            }
            if flow.is_none() {
                view.flags = view.flags.without(Flags::IN_GROUP | Flags::GROUP_PENDING);
            }
            let Some(key) = self.wildcard_rank(pcb, &view, &packet, source, guard) else {
                continue;
            };
            if self.rules.lookup.consults_group(view.flags) {
                first_grouped = first_grouped.max(Some(view.seq));
            }
            if best.is_none_or(|(k, _, _)| key > k) {
                best = Some((key, view.seq, pcb));
            }
        }
        match peer {
            Some(peer) => Wildcard::ConnectingAnyPort(peer),
            None => Wildcard::Best(best.map(|((rank, _), seq, pcb)| Best {
                pcb,
                pass: self.rules.lookup.same_pass(rank),
                group_before: self.rules.lookup.group_stops_walk && first_grouped > Some(seq),
            })),
        }
    }

    /// The wildcard-stage rank of `pcb`, seen as `view`, for a packet from
    /// `source` (v4-mapped if IPv4) to `packet` (canonical): the policy's
    /// rank, then the PCB's last peer for an IPv6 packet (see
    /// [`Flags::LAST_PEER`]).
    #[inline]
    fn wildcard_rank(
        &self,
        pcb: &PcbInner<S>,
        view: &PcbView,
        packet: &SocketAddr,
        source: &Ipv6Addr,
        guard: &Guard,
    ) -> Option<(u32, u64)> {
        let (rank, seq) = (self.rules.lookup.rank)(view, packet)?;
        if packet.is_ipv4() || !view.flags.contains(Flags::LAST_PEER) {
            return Some((rank, seq));
        }
        let last = pcb.last_peer.load(guard)?;
        self.rules
            .last_peer_rank(rank, last, source)
            .map(|rank| (rank, seq))
    }

    /// Whether `view`, a PCB met in the wildcard list with a connected tuple,
    /// is connecting to exactly `flow`, or to its remote address with any
    /// port (see [`Lookup::any_port`](policy::Lookup::any_port)).
    #[inline]
    fn connecting_to(&self, view: &PcbView, flow: &FlowKey) -> Connecting {
        #[cfg(pcbhash_broken)]
        if self.broken.skip_connecting {
            return Connecting::No;
        }
        let tuple = Tuple {
            local: view.local,
            remote: view.remote,
        };
        let key = FlowKey::of_tuple(&tuple);
        if key == *flow {
            Connecting::Exact
        } else if self.rules.lookup.matches_any_port(&tuple) && key == flow.any_remote_port() {
            Connecting::AnyPort
        } else {
            Connecting::No
        }
    }
}

/// How a PCB met in the middle of `connect()` relates to a looked-up flow.
enum Connecting {
    /// Its tuple is the flow.
    Exact,
    /// Its tuple is the flow's remote address with any port.
    AnyPort,
    /// Neither.
    No,
}

/// A 4-tuple with its exact-index key and the key's hash.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Flow {
    pub(crate) tuple: Tuple,
    key: FlowKey,
    hash: u64,
}

/// What the wildcard walk of a lookup found.
enum Wildcard<'g, S: Send + Sync + 'static> {
    /// A PCB half-way through `connect()` to the packet's exact flow.
    Connecting(&'g PcbInner<S>),
    /// A PCB half-way through `connect()` to the packet's remote address
    /// with any port, and none to the exact flow.
    ConnectingAnyPort(&'g PcbInner<S>),
    /// The best-ranked unconnected PCB, if any matched.
    Best(Option<Best<'g, S>>),
}

/// What the kernel's walk met before a PCB (see `Shared::walk_before`).
enum Before<'g, S: Send + Sync + 'static> {
    /// A group that takes the packet: its pick.
    Group(&'g PcbInner<S>),
    /// The last socket that outranked every one before it, with its rank.
    Last(Option<(u32, &'g PcbInner<S>)>),
}

/// The best-ranked unconnected PCB of a wildcard walk.
struct Best<'g, S: Send + Sync + 'static> {
    pcb: &'g PcbInner<S>,
    /// Whether its rank is of the pass over the packet's own address.
    pass: bool,
    /// Whether a PCB that may ask a group is listed before it (see
    /// `Shared::walk_before`).
    group_before: bool,
}

impl<'g, S: Send + Sync + 'static> Wildcard<'g, S> {
    /// The PCB found, whichever way.
    fn pcb(self) -> Option<&'g PcbInner<S>> {
        match self {
            Wildcard::Connecting(pcb) | Wildcard::ConnectingAnyPort(pcb) => Some(pcb),
            Wildcard::Best(best) => best.map(|best| best.pcb),
        }
    }
}

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
        self.shared.rules.named
    }

    /// The protocol the table holds.
    pub fn protocol(&self) -> Protocol {
        self.shared.rules.protocol
    }

    /// Creates a PCB for `socket`, like `socket(2)`: unbound, in no index.
    /// `socket` moves into the PCB's allocation; [`Pcb::socket`] and
    /// [`PcbRef::socket`](crate::PcbRef::socket) borrow it until
    /// `time_wait()` or close, after which it is dropped through the epoch.
    /// An `Inet6` PCB starts with the policy's default V6ONLY (on for
    /// FreeBSD, off for Linux). Allocates once; takes no lock.
    pub fn attach(&self, family: Family, cred: Cred, socket: S) -> Pcb<S> {
        let v6only = family == Family::Inet6 && self.shared.rules.default_v6only();
        let flags = Flags::EMPTY
            .set(Flags::V6ONLY, v6only)
            .with_state(State::Closed);
        self.shared.attached.add(1);
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

    /// The lookup after an exact miss: the wildcard and group stages, then
    /// the exact index once more. It never waits: a writer
    /// preempted in the middle of a move holds no lookup up.
    ///
    /// # Why there are no false negatives
    ///
    /// Take a PCB that matches the flow for the whole lookup. If it stays in
    /// one place, the probe or the walk of that place finds it. Otherwise it
    /// moves, under its port's lock, between the wildcard list and the exact
    /// index, and every move links the new place before it unlinks the old
    /// one. (A PCB that changes address without changing index, as Linux's
    /// disconnect of a bound UDP socket or a failed connect's rebinding do,
    /// keeps its node in the list: the walk meets it with the old tuple or
    /// the new, and both match.) There are two kinds of move:
    ///
    /// - **exact → wildcard** (disconnect): the steps are: the wildcard node
    ///   is linked, the tuple still the connected one (1), the tuple becomes
    ///   the unconnected one (2), the exact entry goes (3). The exact index
    ///   keeps no keys: its probe compares the flow with the tuple the PCB
    ///   shows, so the entry stops matching at (2). If the first probe
    ///   misses the PCB, it read the tuple after (2) or the bucket after
    ///   (3), and both come after (1): the walk starts later and meets the
    ///   new node, with the connected tuple ([`Wildcard::Connecting`]) or
    ///   the unconnected one, which it ranks.
    /// - **wildcard → exact** (connect of a bound PCB): the steps are: the
    ///   tuple becomes the connected one (1), the exact index links it (2),
    ///   the wildcard node is unlinked (3). The walk reads the node before
    ///   (1), where the PCB matches with its bound rank, or between (1) and
    ///   (3), where its tuple says connected and [`Wildcard::Connecting`]
    ///   takes it when that tuple is the flow, or it reads the list after
    ///   (3) and misses the node; then the walk saw the unlink, which comes
    ///   after (2), and the second probe finds the PCB. A writer parked at
    ///   any step leaves the PCB where one of the three reads finds it.
    ///
    /// The other moves keep to the same rule:
    ///
    /// - **shadow successor** (Linux UDP, several PCBs connected over one
    ///   4-tuple): a new holder's entry, or the successor of a holder that
    ///   leaves, is filed under the same key before the old holder's entry
    ///   is removed. A probe that misses both saw the removal, which comes
    ///   after the filing, so the second probe finds the new one.
    /// - **TCP disconnect** (`connect(AF_UNSPEC)`, abort): a connection
    ///   moves exact → wildcard as above, the wildcard node linked before
    ///   the exact entry goes; a listener that changes address stays in the
    ///   wildcard list with its node and only its tuple changes.
    /// - **reconnect** (Linux UDP, a connected PCB connecting to another
    ///   peer): the exact index files a PCB under one tuple at a time, so
    ///   the PCB goes exact → wildcard with its old tuple (its wildcard node
    ///   linked, then its exact entry removed), then wildcard → exact as a
    ///   connect does. Throughout, the walk takes it for whichever tuple it
    ///   shows.
    /// - **connected to any port** (Linux UDP connected to port 0): the
    ///   exact index files such a PCB under the flow's remote address with
    ///   port 0, probed after each probe of the flow itself; the walk takes
    ///   a PCB met mid-`connect()` to that key unless it meets one to the
    ///   exact flow, and the second pair of probes comes after the walk, so
    ///   the three cases above hold for it with "the flow" read as that key.
    ///
    /// The rank among wildcard candidates holds too: the moving PCB is taken
    /// either at the rank its view shows when the walk meets it, or as an
    /// exact match, which outranks every wildcard candidate, so a worse-ranked
    /// PCB never wins because the better one was moving. And every PCB
    /// returned matched when it was read: the exact index's probe compares
    /// the tuple the PCB shows, and the walk ranks the view it read.
    ///
    /// # A PCB that moves twice
    ///
    /// The three reads cover one move. A lookup that runs long (its thread
    /// preempted) can overlap two moves of the PCB it looks for, a connect
    /// and a disconnect say, and miss it in all three. Each move marks its
    /// port's stripe (the move count is odd from the move's first step to
    /// its release of the lock), and the lookup reads that count after its
    /// first probe. If the count was even and is unchanged after the second
    /// probe, no move began or ended in between: the PCB stayed in one place
    /// for the walk and the second probe, and one of them read it. Otherwise
    /// it reads everything again, the count first: an unchanged count then
    /// means at most one move, under way throughout, which the three reads
    /// cover. A lookup reads again only after a writer began or finished a
    /// move, so a writer preempted mid-move holds no lookup up (the count
    /// stays as it is), and lookups stay lock-free.
    #[inline(never)]
    fn lookup_slow<'g>(
        &self,
        local: &SocketAddr,
        key: &FlowKey,
        hash: u64,
        guard: &'g Guard,
    ) -> Option<PcbRef<'g, S>> {
        let ports = &self.shared.ports;
        let port = local.port();
        let seen = ports.moves(port);
        self.shared.move_step("lookup: first probe missed");
        let answer = self.slow_pass(local, key, hash, guard);
        #[cfg(pcbhash_broken)]
        if self.shared.broken.ignore_moves {
            return answer;
        }
        // Read after the first probe, the count vouches for the walk and the
        // second probe only when no move was under way.
        if seen % 2 == 0 && !ports.moved_since(port, seen) {
            return answer;
        }
        self.lookup_again(local, key, hash, guard)
    }

    /// [`lookup_slow`](Self::lookup_slow) when a move began or ended while
    /// it ran, or was under way before its first probe: every read again,
    /// the move count first, until a pass sees it unchanged. Out of line, so
    /// that the common case carries no loop.
    #[cold]
    #[inline(never)]
    fn lookup_again<'g>(
        &self,
        local: &SocketAddr,
        key: &FlowKey,
        hash: u64,
        guard: &'g Guard,
    ) -> Option<PcbRef<'g, S>> {
        let ports = &self.shared.ports;
        let port = local.port();
        loop {
            let seen = ports.moves(port);
            if let Some(pcb) = self.shared.exact.find(hash, key, guard) {
                return Some(PcbRef::new(pcb, guard));
            }
            let answer = self.slow_pass(local, key, hash, guard);
            if !ports.moved_since(port, seen) {
                return answer;
            }
        }
    }

    /// One pass of [`lookup_slow`](Self::lookup_slow): the stages after the
    /// first probe, the second probe included.
    fn slow_pass<'g>(
        &self,
        local: &SocketAddr,
        key: &FlowKey,
        hash: u64,
        guard: &'g Guard,
    ) -> Option<PcbRef<'g, S>> {
        let shared = &*self.shared;
        let local = Endpoint::new(*local);
        let source = key.remote_ip();
        // The peer connected to the packet's address with any port outranks
        // every unconnected PCB but one with that address as its last peer
        // (IPv6), which takes the packet if listed before it; a group listed
        // before it may take the packet too.
        let peer = |(rank, peer): (u32, &'g PcbInner<S>)| {
            let pcb = match shared.walk_before(peer, true, &local, &source, hash, guard) {
                Before::Group(member) => member,
                Before::Last(Some((before, pcb))) if before >= rank => pcb,
                Before::Last(_) => peer,
            };
            Some(PcbRef::new(pcb, guard))
        };
        if let Some(found) = shared.any_port_peer(key, &local, guard) {
            return peer(found);
        }
        let (connecting, best) = match shared.best_wildcard(&local, &source, Some(key), guard) {
            Wildcard::Connecting(pcb) => return Some(PcbRef::new(pcb, guard)),
            Wildcard::ConnectingAnyPort(pcb) => {
                let rank = shared
                    .rules
                    .any_port_peer_rank(canonical(local), pcb.family);
                (Some((rank, pcb)), None)
            }
            Wildcard::Best(best) => (None, best),
        };
        let ahead = best
            .as_ref()
            .filter(|best| best.group_before)
            .and_then(|best| {
                match shared.walk_before(best.pcb, best.pass, &local, &source, hash, guard) {
                    Before::Group(member) => Some(member),
                    Before::Last(_) => None,
                }
            });
        let best = best.map(|best| best.pcb);
        let mut pcb = ahead.or(best);
        let group = best
            .filter(|pcb| ahead.is_none() && shared.rules.lookup.consults_group(pcb.flags.load()))
            .and_then(|pcb| pcb.group.load(guard));
        if let Some(group) = group {
            match group.pick(&shared.rules.lookup, hash, guard) {
                Some(member) => pcb = Some(member),
                // No member takes flows (FreeBSD: all pending; Linux: all
                // connected): the group stage ends with nothing, and the
                // wildcard stage follows.
                None => pcb = shared.best_wildcard(&local, &source, None, guard).pcb(),
            }
        }
        shared.move_step("lookup: walk done");
        #[cfg(pcbhash_broken)]
        if shared.broken.one_exact_probe {
            return match connecting {
                Some(found) => peer(found),
                None => pcb.map(|pcb| PcbRef::new(pcb, guard)),
            };
        }
        if let Some(exact) = shared.exact.find(hash, key, guard) {
            return Some(PcbRef::new(exact, guard));
        }
        if let Some(found) = connecting.or_else(|| shared.any_port_peer(key, &local, guard)) {
            return peer(found);
        }
        pcb.map(|pcb| PcbRef::new(pcb, guard))
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
        let ports = &self.shared.ports;
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

    /// How many PCBs hold a port: bound, listening, connected or in TIME_WAIT.
    /// Sums a counter striped over a few cache lines (exact when no writer
    /// runs).
    pub fn len(&self) -> usize {
        self.shared.ports.len()
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
            .ports
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
            len: shared.ports.len(),
            attached: shared.attached.get(),
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
        for pcb in shared.ports.iter_all(&guard) {
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
            .field("rules", &self.shared.rules)
            .field("protocol", &self.shared.rules.protocol)
            .field("len", &self.len())
            .field("ephemeral", &self.shared.ephemeral.range())
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
    protocol: Protocol,
    ephemeral: Option<RangeInclusive<u16>>,
    seed: Option<u64>,
    capacity: usize,
    exact_buckets: Option<usize>,
    randomized_ports: bool,
    connect_wild: ConnectWild,
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
            protocol: Protocol::Tcp,
            ephemeral: None,
            seed: None,
            capacity: 1024,
            exact_buckets: None,
            randomized_ports: true,
            connect_wild: ConnectWild::default(),
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
        let rules = RuleSet::new(self.policy, self.protocol, self.connect_wild, self.custom);
        let range = self.ephemeral.unwrap_or_else(|| rules.default_ephemeral());
        let memos = PortMemos::for_rules(&rules);
        #[cfg_attr(not(pcbhash_broken), allow(unused_mut))]
        let mut shared = Shared {
            rules,
            hasher,
            collector: default_guard_collector(),
            exact: ExactPcbs::new(self.capacity, self.exact_buckets),
            ports: PortTable::new(),
            ephemeral: Ephemeral::new(range, port_seed, self.randomized_ports),
            memos,
            busy: BusyHints::new({
                #[cfg(test)]
                let after = self.busy_hints_after;
                #[cfg(not(test))]
                let after = busy::INSTALL_AFTER;
                after
            }),
            source_address: self
                .source_address
                .unwrap_or_else(|| Box::new(loopback_source)),
            attached: Counter::new(),
            any_port_peers: AtomicUsize::new(0),
            #[cfg(pcbhash_broken)]
            broken: self.broken,
            #[cfg(pcbhash_loom)]
            move_step: self.move_step,
        };
        #[cfg(pcbhash_broken)]
        {
            shared.exact.set_broken(self.broken);
            shared.ports.set_broken(self.broken);
        }
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
            .field("protocol", &self.protocol)
            .field("ephemeral", &self.ephemeral)
            .field("seed", &self.seed)
            .field("capacity", &self.capacity)
            .field("exact_buckets", &self.exact_buckets)
            .field("randomized_ports", &self.randomized_ports)
            .field("connect_wild", &self.connect_wild)
            .field(
                "source_address",
                &self.source_address.as_ref().map(|_| "custom"),
            )
            .finish()
    }
}
