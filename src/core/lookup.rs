//! The lookup's stages after an exact miss: the walks of a port's
//! unconnected PCBs (the wildcard stage and the groups met there), PCBs
//! connected to a packet's address with any port, and the re-reads that
//! keep a lookup from missing a PCB that moves while it runs.

use std::net::{Ipv6Addr, SocketAddr};

use crossbeam_epoch::Guard;

use super::arrival::{Arrival, Unknown};
use super::pcb::PcbInner;
use super::shared::Shared;
use crate::addr::{Endpoint, FlowKey, PacketFlow, Tuple};
use crate::cred::Device;
use crate::flags::Flags;
use crate::policy::{canonical, PcbView};
use crate::raw::{List, PastHome};
use crate::sync::Ordering;

impl<S: Send + Sync + 'static> Shared<S> {
    /// The PCB connected to the packet's remote address with any port
    /// (see [`Lookup::any_port`](policy::Lookup::any_port)), with its rank among the wildcard
    /// ranks. Of several (Linux UDP lists them all in the address's list,
    /// where `compute_score` ranks them), the best-ranked, then the first
    /// listed. Lock-free: one load while there are none, one more exact
    /// probe otherwise, and a walk of the port's connected PCBs if that
    /// one has others waiting behind it. The load is inline, the rest out
    /// of line: a lookup after an exact miss asks twice, and almost every
    /// table has no such PCB.
    #[inline(always)]
    fn any_port_peer<'g, D: Arrival>(
        &self,
        key: &FlowKey,
        local: &Endpoint,
        device: D,
        guard: &'g Guard,
    ) -> Option<(u32, &'g PcbInner<S>)> {
        if self.any_port_peers.load(Ordering::Relaxed) == 0 {
            return None;
        }
        self.find_any_port_peer(key, local, device, guard)
    }

    /// [`any_port_peer`](Self::any_port_peer) when the table has PCBs
    /// connected to an address with any port.
    #[inline(never)]
    fn find_any_port_peer<'g, D: Arrival>(
        &self,
        key: &FlowKey,
        local: &Endpoint,
        device: D,
        guard: &'g Guard,
    ) -> Option<(u32, &'g PcbInner<S>)> {
        let key = key.any_remote_port();
        let holder = self
            .exact
            .find_on(key.hash(&self.hasher), &key, device, guard)?;
        let packet = canonical(*local);
        let rank = |pcb: &PcbInner<S>| self.any_port_rank(pcb, &packet, device, guard);
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
            if FlowKey::of_tuple(&tuple) == key
                && pcb.answers(device.index())
                && order > (best.0, best.1)
            {
                best = (order.0, order.1, &**pcb);
            }
        }
        Some((best.0, best.2))
    }

    /// Whether an unconnected PCB on the packet's own address (the first
    /// pass) ranks above `rank` for a packet from `source` to `local`.
    fn outranked<D: Arrival>(
        &self,
        rank: u32,
        local: &Endpoint,
        source: &Ipv6Addr,
        device: D,
        guard: &Guard,
    ) -> bool {
        let packet = canonical(*local);
        self.ports
            .iter(local.port, List::Unconnected, guard)
            .any(|pcb| {
                let view = pcb.view(guard);
                self.wildcard_rank(pcb, &view, &packet, source, device, guard)
                    .is_some_and(|(other, _)| other > rank && self.rules.lookup.same_pass(other))
            })
    }

    /// The wildcard-stage rank of `pcb`, connected to a packet's remote
    /// address with any port, for a packet to `packet` (canonical) that
    /// arrived on `device`: the policy's rank and the PCB's device points.
    pub(super) fn any_port_rank<D: Arrival>(
        &self,
        pcb: &PcbInner<S>,
        packet: &SocketAddr,
        device: D,
        guard: &Guard,
    ) -> u32 {
        let rank = self.rules.any_port_peer_rank(*packet, pcb.family());
        let view = pcb.view(guard);
        let points = match (view.device, self.rules.lookup.device) {
            (0, _) | (_, None) => 0,
            (_, Some(points)) => points(&view, packet, Some(Device(device.index()))).unwrap_or(0),
        };
        rank.saturating_add(points)
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
    fn walk_before<'g, D: Arrival>(
        &self,
        limit: &PcbInner<S>,
        pass: bool,
        arrived: Arrived<'_, D>,
        hash: u64,
        guard: &'g Guard,
    ) -> Before<'g, S> {
        let Arrived {
            local,
            source,
            key,
            device,
        } = arrived;
        let after = limit.seq.load(Ordering::Relaxed);
        let packet = canonical(*local);
        // The first socket listed before `limit` that outranks `floor`.
        let first_above = |floor: u32| {
            let mut first: Option<(u32, u64, &'g PcbInner<S>)> = None;
            for pcb in self.ports.iter(local.port, List::Unconnected, guard) {
                let view = pcb.view(guard);
                let Some((rank, _)) =
                    self.wildcard_rank(pcb, &view, &packet, source, device, guard)
                else {
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
                        let pick = self.pick_member(group, local, key, device.index(), hash, guard);
                        if let Some(member) = pick {
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
    /// the answer (see `Shared::lookup_slow`); one connecting to the
    /// flow's remote address with any port (Linux UDP) is the answer unless
    /// the walk meets an exact one after it. Without, such PCBs are passed
    /// over, and group membership is not looked at either: the stage that
    /// follows a group with no member that takes flows.
    fn best_wildcard<'g, D: Arrival>(
        &self,
        local: &Endpoint,
        source: &Ipv6Addr,
        flow: Option<&FlowKey>,
        device: D,
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
                if !pcb.answers(device.index()) {
                    continue;
                }
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
            let Some(key) = self.wildcard_rank(pcb, &view, &packet, source, device, guard) else {
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
    /// [`Flags::LAST_PEER`]), and for a PCB bound to a device, the
    /// policy's device points for a packet that arrived on `device` (0:
    /// unknown); where FIBs scope lookups, `device` is the packet's FIB and
    /// a PCB of another FIB does not answer.
    #[inline]
    fn wildcard_rank<D: Arrival>(
        &self,
        pcb: &PcbInner<S>,
        view: &PcbView,
        packet: &SocketAddr,
        source: &Ipv6Addr,
        device: D,
        guard: &Guard,
    ) -> Option<(u32, u64)> {
        let (mut rank, seq) = (self.rules.lookup.rank)(view, packet)?;
        if self.rules.fib_scoped && view.fib != device.index() {
            // FreeBSD with `bind_all_fibs` off: only the packet's FIB (0
            // when the lookup names none) answers.
            return None;
        }
        if view.device != 0 {
            // A packet whose device is unknown is answered only by PCBs
            // bound to no device, whatever the policy.
            let device = device.index();
            if device == 0 {
                return None;
            }
            let points = self.rules.lookup.device?;
            rank += points(view, packet, Some(Device(device)))?;
        }
        if packet.is_ipv4() || !view.flags.contains(Flags::LAST_PEER) {
            return Some((rank, seq));
        }
        let last = pcb.last_peer(guard)?;
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

    /// The lookup of a packet with `flow` (its key hashed to `hash`) that
    /// arrived on `device` ([`Unknown`], or an index, 0 for unknown): the
    /// exact stage, where a PCB bound to another device is passed over once
    /// its tuple matched, then [`lookup_slow`](Self::lookup_slow).
    /// Lock-free; allocation-free.
    ///
    /// Inline, and without a call on an exact hit in the home bucket: every
    /// rarer case (displaced and spilled entries, a home that moved, an
    /// exact miss) goes through one out-of-line call, which builds the key
    /// again from `flow`, so that the hit path stores no key for the call
    /// (an IPv4 flow is two registers).
    #[inline(always)]
    pub(crate) fn lookup_on<'g, F: PacketFlow, D: Arrival>(
        &self,
        flow: F,
        hash: u64,
        device: D,
        guard: &'g Guard,
    ) -> Option<&'g PcbInner<S>> {
        match self.exact.find_home(hash, &flow.key(), device, guard) {
            Ok(pcb) => Some(pcb),
            Err(past) => self.lookup_past_home(flow, hash, device, past, guard),
        }
    }

    /// [`lookup_on`](Self::lookup_on) after the home bucket held no match:
    /// the rest of the exact stage, then the stages after an exact miss.
    #[cold]
    #[inline(never)]
    fn lookup_past_home<'g, F: PacketFlow, D: Arrival>(
        &self,
        flow: F,
        hash: u64,
        device: D,
        past: PastHome<'g>,
        guard: &'g Guard,
    ) -> Option<&'g PcbInner<S>> {
        let key = &flow.key();
        if let Some(pcb) = self.exact.find_past_home(hash, key, device, past, guard) {
            return Some(pcb);
        }
        match device.index() {
            0 => self.lookup_slow(key, hash, Unknown, guard),
            _ => self.lookup_slow(key, hash, device, guard),
        }
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
    ///
    /// # Devices
    ///
    /// For a packet that arrived on `device` (0: unknown), a PCB bound to
    /// another device does not answer, and one bound to `device` ranks as
    /// the policy says.
    ///
    /// Inline: its one caller, [`lookup_past_home`](Self::lookup_past_home),
    /// is out of line already.
    #[inline(always)]
    fn lookup_slow<'g, D: Arrival>(
        &self,
        key: &FlowKey,
        hash: u64,
        device: D,
        guard: &'g Guard,
    ) -> Option<&'g PcbInner<S>> {
        let ports = &self.ports;
        let port = key.local_port();
        let seen = ports.moves(port);
        self.move_step("lookup: first probe missed");
        let answer = self.slow_pass(key, hash, device, guard);
        #[cfg(pcbhash_broken)]
        if self.broken.ignore_moves {
            return answer;
        }
        // Read after the first probe, the count vouches for the walk and the
        // second probe only when no move was under way.
        if seen % 2 == 0 && !ports.moved_since(port, seen) {
            return answer;
        }
        self.lookup_again(key, hash, device, guard)
    }

    /// [`lookup_slow`](Self::lookup_slow) when a move began or ended while
    /// it ran, or was under way before its first probe: every read again,
    /// the move count first, until a pass sees it unchanged. Out of line, so
    /// that the common case carries no loop.
    #[cold]
    #[inline(never)]
    fn lookup_again<'g, D: Arrival>(
        &self,
        key: &FlowKey,
        hash: u64,
        device: D,
        guard: &'g Guard,
    ) -> Option<&'g PcbInner<S>> {
        let ports = &self.ports;
        let port = key.local_port();
        loop {
            let seen = ports.moves(port);
            if let Some(pcb) = self.exact.find_on(hash, key, device, guard) {
                return Some(pcb);
            }
            let answer = self.slow_pass(key, hash, device, guard);
            if !ports.moved_since(port, seen) {
                return answer;
            }
        }
    }

    /// One pass of [`lookup_slow`](Self::lookup_slow): the stages after the
    /// first probe, the second probe included.
    fn slow_pass<'g, D: Arrival>(
        &self,
        key: &FlowKey,
        hash: u64,
        device: D,
        guard: &'g Guard,
    ) -> Option<&'g PcbInner<S>> {
        let shared = self;
        let local = key.local();
        let source = key.remote_ip();
        let arrived = Arrived {
            local: &local,
            source: &source,
            key,
            device,
        };
        // The peer connected to the packet's address with any port outranks
        // every unconnected PCB but one with that address as its last peer
        // (IPv6), which takes the packet if listed before it; a group listed
        // before it may take the packet too.
        // An unconnected PCB on the packet's address that scores more than
        // the peer takes the packet wherever it is listed (an AF_INET PCB on
        // the packet's device over an AF_INET6 peer): then the peer is
        // passed over, and the wildcard stage finds that PCB.
        let peer = |(rank, peer): (u32, &'g PcbInner<S>)| {
            if shared.outranked(rank, &local, &source, device, guard) {
                return None;
            }
            let pcb = match shared.walk_before(peer, true, arrived, hash, guard) {
                Before::Group(member) => member,
                Before::Last(Some((before, pcb))) if before >= rank => pcb,
                Before::Last(_) => peer,
            };
            Some(pcb)
        };
        if let Some(taken) = shared
            .any_port_peer(key, &local, device, guard)
            .and_then(peer)
        {
            return Some(taken);
        }
        let (connecting, best) =
            match shared.best_wildcard(&local, &source, Some(key), device, guard) {
                Wildcard::Connecting(pcb) => return Some(pcb),
                Wildcard::ConnectingAnyPort(pcb) => {
                    let rank = shared.any_port_rank(pcb, &canonical(local), device, guard);
                    (Some((rank, pcb)), None)
                }
                Wildcard::Best(best) => (None, best),
            };
        let pcb = shared.settle(best, arrived, hash, guard);
        shared.move_step("lookup: walk done");
        #[cfg(pcbhash_broken)]
        if shared.broken.one_exact_probe {
            return connecting.and_then(peer).or(pcb);
        }
        if let Some(exact) = shared.exact.find_on(hash, key, device, guard) {
            return Some(exact);
        }
        connecting
            .or_else(|| shared.any_port_peer(key, &local, device, guard))
            .and_then(peer)
            .or(pcb)
    }
}

impl<S: Send + Sync + 'static> Shared<S> {
    /// The unconnected stages alone (the group stage and the wildcard
    /// stage), for a packet to `local` with `key` (`hash`) that arrived on
    /// `device`: what Linux's `inet_lookup_listener` gives a SYN that met a
    /// TIME_WAIT twin it may replace. One walk; lock-free. `device` 0:
    /// unknown.
    pub(crate) fn lookup_unconnected_on<'g>(
        &self,
        local: &SocketAddr,
        key: &FlowKey,
        hash: u64,
        device: u32,
        guard: &'g Guard,
    ) -> Option<&'g PcbInner<S>> {
        match device {
            0 => self.unconnected_stages(local, key, hash, Unknown, guard),
            device => self.unconnected_stages(local, key, hash, device, guard),
        }
    }

    /// [`lookup_unconnected_on`](Self::lookup_unconnected_on), compiled per
    /// kind of arrival.
    fn unconnected_stages<'g, D: Arrival>(
        &self,
        local: &SocketAddr,
        key: &FlowKey,
        hash: u64,
        device: D,
        guard: &'g Guard,
    ) -> Option<&'g PcbInner<S>> {
        let local = Endpoint::new(*local);
        let source = key.remote_ip();
        let arrived = Arrived {
            local: &local,
            source: &source,
            key,
            device,
        };
        match self.best_wildcard(&local, &source, None, device, guard) {
            Wildcard::Best(best) => self.settle(best, arrived, hash, guard),
            Wildcard::Connecting(_) | Wildcard::ConnectingAnyPort(_) => None,
        }
    }

    /// The wildcard stage's answer from its best candidate: the member of a
    /// group listed before it that takes the flow, or the member of its own
    /// group, or itself.
    fn settle<'g, D: Arrival>(
        &self,
        best: Option<Best<'g, S>>,
        arrived: Arrived<'_, D>,
        hash: u64,
        guard: &'g Guard,
    ) -> Option<&'g PcbInner<S>> {
        let Arrived {
            local,
            source,
            key,
            device,
        } = arrived;
        let ahead = best
            .as_ref()
            .filter(|best| best.group_before)
            .and_then(
                |best| match self.walk_before(best.pcb, best.pass, arrived, hash, guard) {
                    Before::Group(member) => Some(member),
                    Before::Last(_) => None,
                },
            );
        let best = best.map(|best| best.pcb);
        let group = best
            .filter(|pcb| ahead.is_none() && self.rules.lookup.consults_group(pcb.flags.load()))
            .and_then(|pcb| pcb.group.load(guard));
        let Some(group) = group else {
            return ahead.or(best);
        };
        match self.pick_member(group, local, key, device.index(), hash, guard) {
            Some(member) => Some(member),
            // No member takes flows (FreeBSD: all pending; Linux: all
            // connected): the group stage ends with nothing, and the
            // wildcard stage follows.
            None => self.best_wildcard(local, source, None, device, guard).pcb(),
        }
    }
}

/// What the walks know of a packet: its local address, its source
/// (v4-mapped if IPv4), its flow key and the device it arrived on.
#[derive(Clone, Copy)]
struct Arrived<'a, D> {
    local: &'a Endpoint,
    source: &'a Ipv6Addr,
    key: &'a FlowKey,
    device: D,
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
