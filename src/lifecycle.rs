//! The PCB lifecycle: options, bind, listen, connect, accept, disconnect,
//! TIME_WAIT and close.
//!
//! Lock order: the PCB's owner lock, then one port lock, then (leaf locks)
//! the PCB's port-entry cell and exact-index buckets. Every check that can fail
//! runs before the first change, so a failing call changes nothing, except
//! where the Linux kernel itself leaves traces of a failed call, which
//! the Linux policy reproduces: a UDP `connect()` keeps the port it bound
//! before checking the peer (`inet_dgram_connect`), a TCP `connect()` refused
//! by the 4-tuple check gives back a port that `bind()` chose or keeps its
//! source address (`tcp_v4_connect`'s failure path), and a `bind()` that
//! finds its port taken forgets an address kept from an earlier bind
//! (`__inet_bind`). The FreeBSD policy has one such trace: a UDP `connect()`
//! on a connected PCB disconnects it first (`soconnectat`), and the
//! disconnect stands when the new peer is refused.
//!
//! Every change to which index holds a PCB happens under its port's lock; so
//! does every state change that another PCB's conflict check reads.

use std::net::{IpAddr, SocketAddr};

use crossbeam_epoch::Guard;

use crate::addr::{Endpoint, Family, Tuple};
use crate::error::Error;
use crate::flags::{Flags, State};
use crate::pcb::{Pcb, PcbInner};
use crate::policy::{canonical, check_accept, AfterFailedConnect, PcbView, Protocol, TupleTaken};
use crate::raw::{List, PortLock};
use crate::sync::{lock, Arc, Ordering};
use crate::table::{Flow, Shared};

impl<S: Send + Sync + 'static> Shared<S> {
    /// `setsockopt` of one of the cached bits.
    pub(crate) fn set_option(
        &self,
        inner: &Arc<PcbInner<S>>,
        bit: Flags,
        on: bool,
    ) -> Result<(), Error> {
        let _owner = inner.lock_owner();
        if !self.rules.has_option(bit) {
            return Err(Error::OptionNotAvailable);
        }
        let state = inner.state();
        if bit == Flags::V6ONLY {
            if inner.family != Family::Inet6 {
                return Err(Error::OptionNotAvailable);
            }
            if state != State::Closed {
                return Err(Error::InvalidInput);
            }
        }
        if matches!(state, State::TimeWait | State::Dropped) {
            return Err(Error::InvalidInput);
        }
        if !state.is_in_table() {
            inner.flags.update(|flags| flags.set(bit, on));
            return Ok(());
        }
        let guard = crossbeam_epoch::pin();
        // Under the port's lock: the other PCBs' conflict checks read the
        // bit. Neither kernel takes a PCB out of its group when the option is
        // cleared: FreeBSD only in `in_pcbremhash_locked`, and Linux's
        // `sk_setsockopt` only sets `sk_reuseport`.
        let _held = self.ports.lock(inner.tuple(&guard).local.port);
        inner.flags.update(|flags| flags.set(bit, on));
        Ok(())
    }

    /// `bind(2)`.
    pub(crate) fn bind(
        &self,
        inner: &Arc<PcbInner<S>>,
        local: SocketAddr,
    ) -> Result<SocketAddr, Error> {
        let _owner = inner.lock_owner();
        let guard = crossbeam_epoch::pin();
        let me = inner.view(&guard);
        let local = Endpoint::new(self.rules.check_bind(&me, local)?);
        // The address bound now replaces any source address an earlier
        // bind() left.
        let me = PcbView {
            flags: me.flags.without(Flags::SOURCE_BOUND),
            ..me
        };
        let mut pinned = Flags::EMPTY;
        if !local.is_wildcard() {
            pinned = pinned | Flags::ADDR_LOCKED;
        }
        if local.port != 0 {
            pinned = pinned | Flags::PORT_LOCKED;
        }
        pinned = pinned | self.rules.bind_sets(&me, canonical(local));
        let (bound, held) = match self.bind_locked(inner, &me, local, pinned, State::Bound, &guard)
        {
            Ok(bound) => bound,
            Err(error) => {
                let unbound = Tuple::unbound(inner.family);
                if self.rules.failed_bind_forgets_address() && me.local != unbound.local {
                    // The PCB is not in the table: nothing else sees it.
                    inner.set_tuple(unbound);
                    inner
                        .flags
                        .update(|flags| flags.without(Flags::SOURCE_BOUND));
                }
                return Err(error);
            }
        };
        if !self.group_joins_at_listen() || self.rules.group_decided_at_bind() {
            self.join_group(&held, inner, &guard);
        } else if self.rules.group_key(&inner.view(&guard)).is_some() {
            inner.flags.update(|flags| flags | Flags::GROUP_PENDING);
        }
        Ok(bound.to_socket(inner.family))
    }

    /// Binds `inner` to `local` (port 0: an ephemeral port) in `state`, and
    /// returns the bound endpoint with its port's lock still held.
    fn bind_locked(
        &self,
        inner: &Arc<PcbInner<S>>,
        me: &PcbView,
        local: Endpoint,
        pinned: Flags,
        state: State,
        guard: &Guard,
    ) -> Result<(Endpoint, PortLock<'_>), Error> {
        let mut new = PcbView {
            local,
            flags: (me.flags | pinned).with_state(state),
            ..*me
        };
        if local.port != 0 {
            let held = self.ports.lock(local.port);
            let owners = self.owners(local.port, inner, guard);
            let memo = self.memos.get(local.port);
            self.rules.bind_conflict(&new, &owners, memo)?;
            self.link_unconnected(&held, inner, local, new.flags, guard);
            self.bind_bucket(&local, guard);
            self.memos.set(local.port, self.rules.bound(&new, memo));
            return Ok((local, held));
        }
        let listening = state == State::Listen;
        let scan = self.rules.bind_scan(me);
        for (_, port) in self.ephemeral.scan(scan, 0) {
            new.local = local.with_port(port);
            let held = self.ports.lock(port);
            let owners = self.owners(port, inner, guard);
            if self.rules.bind_port_busy(&new, &owners, listening) {
                continue;
            }
            self.ephemeral.found(scan, 0, port, 0);
            self.link_unconnected(&held, inner, new.local, new.flags, guard);
            self.bind_bucket(&new.local, guard);
            let memo = self.memos.get(port);
            self.memos.set(port, self.rules.bound(&new, memo));
            return Ok((new.local, held));
        }
        Err(self.rules.bind_exhausted())
    }

    /// Publishes `inner`, new on its port, as unconnected on `local`: tuple,
    /// place among the port's PCBs, flags, then the wildcard list (whose
    /// release store makes the rest visible).
    fn link_unconnected(
        &self,
        held: &PortLock<'_>,
        inner: &Arc<PcbInner<S>>,
        local: Endpoint,
        flags: Flags,
        guard: &Guard,
    ) {
        self.readdress(held, inner, local, flags, true);
        self.link_wildcard(held, inner, guard);
    }

    /// Links `inner` into its port's wildcard list, as it is now.
    fn link_wildcard(&self, held: &PortLock<'_>, inner: &Arc<PcbInner<S>>, guard: &Guard) {
        let entry = self
            .ports
            .insert(held, List::Unconnected, inner.clone(), guard);
        *lock(&inner.port_entry) = Some(entry);
    }

    /// Moves the connected `inner` out of the exact index to the wildcard
    /// list, as unconnected on `local` with `flags` (`fresh`: with a new
    /// place among its port's PCBs). `before` is its tuple, `was` its flags
    /// read under the port's lock. The wildcard node is linked while the
    /// tuple still says connected, then the tuple changes, then the exact
    /// entry goes (see `PcbTable::lookup_slow`). Caller holds the port's
    /// lock.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn disconnect_move(
        &self,
        held: &PortLock<'_>,
        inner: &Arc<PcbInner<S>>,
        before: &Tuple,
        was: Flags,
        local: Endpoint,
        flags: Flags,
        fresh: bool,
        guard: &Guard,
    ) {
        held.moving();
        self.relist_unconnected(held, inner, guard);
        self.readdress(held, inner, local, flags, fresh);
        self.move_step("disconnect: tuple published");
        self.unlink_exact_was(inner, before, was, guard);
    }

    /// Moves `inner`, still connected and in the exact index, from its
    /// port's connected list to the wildcard list: the new node is linked
    /// before the old one goes, and the caller unlinks the exact entry after
    /// (see `PcbTable::lookup_slow`). Caller holds the port's lock.
    fn relist_unconnected(&self, held: &PortLock<'_>, inner: &Arc<PcbInner<S>>, guard: &Guard) {
        let old = lock(&inner.port_entry).take();
        self.link_wildcard(held, inner, guard);
        self.move_step("disconnect: wildcard linked");
        if let Some(old) = old {
            self.ports.remove(held, old, guard);
        }
    }

    /// Keeps `peer` as the last peer of `inner` where the policy remembers
    /// one (see [`Rules::remembers_peer`](crate::policy::Rules::remembers_peer)),
    /// and returns the flag that says so. The address is published before the flag, and a lookup reads it
    /// only once the flag is set.
    fn remember_peer(&self, inner: &PcbInner<S>, peer: &Endpoint, guard: &Guard) -> Flags {
        if !self.rules.remembers_peer(inner.family) {
            return Flags::EMPTY;
        }
        let last = match peer.ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        if inner.last_peer.load(guard) != Some(&last) {
            inner.last_peer.replace(Some(last), guard);
        }
        Flags::LAST_PEER
    }

    /// Gives `inner`, unconnected, the address `local` and `flags` (and with
    /// `fresh` a new place among the PCBs of its port), without moving it
    /// between indexes: a PCB already in the wildcard list keeps its node
    /// there, so a lookup's walk meets it with the old tuple or the new one,
    /// never neither. Caller holds the port's lock.
    pub(crate) fn readdress(
        &self,
        held: &PortLock<'_>,
        inner: &Arc<PcbInner<S>>,
        local: Endpoint,
        flags: Flags,
        fresh: bool,
    ) {
        inner.set_tuple(Tuple::bound(local));
        if fresh {
            self.stamp_seq(held, inner, flags);
        }
        inner.flags.update(|_| flags);
    }

    /// Gives `inner` its place among the PCBs of its port (`PcbView::seq`),
    /// as the policy orders an insertion with `flags`, from the port's own
    /// counter (sequence numbers order PCBs of one port only).
    fn stamp_seq(&self, held: &PortLock<'_>, inner: &PcbInner<S>, flags: Flags) {
        let counter = held.next_seq();
        inner.seq.store(
            self.rules.insertion_seq(inner.family, flags, counter),
            Ordering::Relaxed,
        );
        inner.bound_seq.store(counter, Ordering::Relaxed);
    }

    /// `inner` moved to another address of its port: it takes the place the
    /// policy gives such a move (Linux UDP: the head of its new list).
    /// Caller holds the port's lock.
    fn restamp_seq(&self, held: &PortLock<'_>, inner: &PcbInner<S>) {
        let counter = held.next_seq();
        if let Some(seq) = self.rules.rehash_seq(counter) {
            inner.seq.store(seq, Ordering::Relaxed);
        }
    }

    /// Publishes `inner` as connected on `flow`'s tuple: tuple, flags, the
    /// exact index, then the port's connected list.
    fn link_connected(
        &self,
        held: &PortLock<'_>,
        inner: &Arc<PcbInner<S>>,
        flow: &Flow,
        flags: Flags,
        fresh: bool,
        guard: &Guard,
    ) {
        if !fresh {
            // From the wildcard list: a move.
            held.moving();
        }
        let tuple = flow.tuple;
        if inner.tuple(guard) != tuple {
            inner.set_tuple(tuple);
        }
        if fresh {
            self.stamp_seq(held, inner, flags);
        }
        let remembered = self.rules.remembers(State::Connected);
        let peer = self.remember_peer(inner, &tuple.remote, guard);
        inner
            .flags
            .update(|_| flags.with_state(State::Connected) | remembered | peer);
        if !fresh {
            self.move_step("connect: tuple published");
        }
        self.exact_link(held, flow, inner, guard);
        if !fresh {
            self.move_step("connect: exact linked");
        }
        let entry = self
            .ports
            .insert(held, List::Connected, inner.clone(), guard);
        let old = lock(&inner.port_entry).replace(entry);
        if let Some(old) = old {
            // A move from the wildcard list: the new place is linked first.
            self.ports.remove(held, old, guard);
        }
    }

    /// Removes `inner` from every index and its group. Caller holds the
    /// port's lock.
    fn unlink(&self, held: &PortLock<'_>, inner: &Arc<PcbInner<S>>, guard: &Guard) {
        if self.detach(held, inner, guard) {
            let local = inner.tuple(guard).local;
            self.left_bucket(&local, None, guard);
            self.left_port(local.port, None, guard);
        }
    }

    /// [`unlink`](Self::unlink) without telling the port's memory; whether
    /// `inner` was on the port.
    fn detach(&self, held: &PortLock<'_>, inner: &Arc<PcbInner<S>>, guard: &Guard) -> bool {
        self.leave_group(held, inner, guard);
        let entry = lock(&inner.port_entry).take();
        if let Some(entry) = entry {
            let list = entry.list();
            self.ports.remove(held, entry, guard);
            if list == List::Connected {
                self.unlink_exact(inner, &inner.tuple(guard), guard);
            }
            return true;
        }
        false
    }

    /// Removes `inner`'s entry for `tuple` from the exact index, and first
    /// the port's bit from the destination's busy-port hint. Caller holds the
    /// port's lock.
    fn unlink_exact(&self, inner: &Arc<PcbInner<S>>, tuple: &Tuple, guard: &Guard) {
        self.unlink_exact_was(inner, tuple, inner.flags.load(), guard);
    }

    /// [`unlink_exact`](Self::unlink_exact), with `was` the flags that tell
    /// whether `inner` held the entry.
    fn unlink_exact_was(&self, inner: &Arc<PcbInner<S>>, tuple: &Tuple, was: Flags, guard: &Guard) {
        self.busy.unmark(
            || self.destination_hash(tuple.local.ip, &tuple.remote),
            tuple.local.ip,
            tuple.local.port,
            &tuple.remote,
        );
        self.exact_unlink(inner, &self.flow(tuple), was, guard);
    }

    /// `listen(2)`.
    pub(crate) fn listen(&self, inner: &Arc<PcbInner<S>>) -> Result<(), Error> {
        let _owner = inner.lock_owner();
        if self.rules.protocol != Protocol::Tcp {
            return Err(Error::NotSupported);
        }
        let guard = crossbeam_epoch::pin();
        let me = inner.view(&guard);
        let held = match me.state() {
            State::Listen => return Ok(()),
            State::Connected | State::TimeWait | State::Dropped => return Err(Error::InvalidInput),
            State::Closed => {
                // The address a failed connect() left (Linux), or the wildcard.
                let any = me.local.with_port(0);
                self.bind_locked(inner, &me, any, Flags::EMPTY, State::Listen, &guard)?
                    .1
            }
            State::Bound => {
                let held = self.ports.lock(me.local.port);
                let owners = self.owners(me.local.port, inner, &guard);
                let memo = self.memos.get(me.local.port);
                self.rules.listen_check(&me, &owners, memo)?;
                let listening = PcbView {
                    flags: me.flags.with_state(State::Listen),
                    ..me
                };
                self.memos
                    .set(me.local.port, self.rules.bound(&listening, memo));
                held
            }
        };
        if self.rules.listen_refused_after_connect(me.flags) {
            // `get_port` ran and a port it took stays, but the socket does
            // not listen.
            inner.flags.set_state(State::Bound);
            return Err(Error::InvalidInput);
        }
        let remembered = self.rules.remembers(State::Listen);
        let flags = inner
            .flags
            .update(|flags| flags.with_state(State::Listen) | remembered);
        if self.rules.inserts_at_listen() {
            self.stamp_seq(&held, inner, flags);
        }
        if self.rules.group_decided_at_bind() && me.state() == State::Bound {
            self.activate_member(inner, &guard);
        } else {
            self.join_group(&held, inner, &guard);
        }
        Ok(())
    }

    /// `connect(2)`.
    pub(crate) fn connect(
        &self,
        inner: &Arc<PcbInner<S>>,
        remote: SocketAddr,
    ) -> Result<SocketAddr, Error> {
        let _owner = inner.lock_owner();
        let guard = crossbeam_epoch::pin();
        let mut me = inner.view(&guard);
        if self.rules.binds_before_connect(&me) {
            // Linux `inet_dgram_connect`: the port comes first, even if the
            // checks below then fail.
            let local = me.local.with_port(0);
            match self.bind_locked(inner, &me, local, Flags::EMPTY, State::Bound, &guard) {
                Ok((_, held)) => self.join_group_if_bound_member(&held, inner, &guard),
                Err(_) => return Err(self.rules.connect_autobind_failed()),
            }
            me = inner.view(&guard);
        }
        if self.rules.disconnects_before_connect(&me) {
            // FreeBSD `soconnectat`: disconnected first, whatever the peer.
            self.disconnect_locked(inner, &me, &guard)?;
            me = inner.view(&guard);
        }
        let peer = Endpoint::new(self.rules.check_connect(&me, remote)?);
        if me.state() == State::Connected {
            // Connecting again (Linux UDP): same local address and port.
            return Ok(self.reconnect(inner, &me, peer, &guard));
        }
        let bound = if me.local.is_wildcard() {
            None
        } else {
            self.rules.bound_source(&me, canonical(peer))
        };
        let source = match bound {
            Some(source) => source,
            None => (self.source_address)(peer.to_socket(inner.family).ip())
                .map(|ip| ip.to_canonical())
                .filter(|ip| ip.is_ipv4() == peer.is_v4())
                .ok_or(Error::NetworkUnreachable)?,
        };
        if let Some(error) = self.rules.connect_refused(&me) {
            self.refuse_connect(inner, &me, source, &guard);
            return Err(error);
        }
        if me.state() == State::Bound {
            let tuple = Tuple {
                local: Endpoint {
                    ip: source,
                    port: me.local.port,
                },
                remote: peer,
            };
            let held = self.ports.lock(me.local.port);
            let flow = self.flow(&tuple);
            let holder = self.exact_holder_arc(&flow, &guard);
            let replace = match &holder {
                Some(pcb) => match self.rules.connect_tuple_taken(&pcb.view(&guard)) {
                    Ok(replace) => replace,
                    Err(error) => {
                        self.connect_failed(&held, inner, &me, source, &guard);
                        return Err(error);
                    }
                },
                None => TupleTaken::Share,
            };
            if let Some(group) = inner.group.load(&guard) {
                group.set_has_conns();
            }
            self.leave_group(&held, inner, &guard);
            let flags = inner.flags.load();
            self.link_connected(&held, inner, &flow, flags, false, &guard);
            if tuple.local != me.local {
                self.restamp_seq(&held, inner);
                self.join_bucket(inner, &tuple.local, false, &guard);
                self.left_bucket(&me.local, None, &guard);
            }
            if let (TupleTaken::Replace, Some(old)) = (replace, holder) {
                // A TIME_WAIT twin gives way to the new connection.
                self.unlink(&held, &old, &guard);
                old.detach_socket(&guard);
                old.flags.set_state(State::Dropped);
            }
            return Ok(tuple.local.to_socket(inner.family));
        }
        let flow = self.destination_hash(source, &peer);
        let scan = self.rules.connect_scan();
        let mut candidates = self.ephemeral.scan(scan, flow);
        let flags = me.flags | Flags::CONNECT_BIND;
        // Ports whose 4-tuple the destination already holds (see `busy`):
        // the scan passes over them without the full check, which would
        // reject them anyway.
        let hinted = self.rules.connect_holder_busy();
        let mut hint = if hinted {
            self.busy.get(flow, source, &peer)
        } else {
            None
        };
        let mut taken = 0;
        loop {
            if let Some(hint) = &hint {
                candidates.skip_marked(&**hint);
            }
            let Some((attempt, port)) = candidates.next() else {
                break;
            };
            let tuple = Tuple {
                local: Endpoint { ip: source, port },
                remote: peer,
            };
            let new = PcbView {
                local: tuple.local,
                remote: peer,
                flags: flags.with_state(State::Connected),
                ..me
            };
            let held = self.ports.lock(port);
            let owners = self.owners(port, inner, &guard);
            let exact = self.flow(&tuple);
            let holder = self
                .exact_holder(&exact, &guard)
                .map(|pcb| pcb.view(&guard));
            let memo = self.memos.get(port);
            if self
                .rules
                .connect_port_busy(&new, &owners, holder.as_ref(), memo)
            {
                if hinted && holder.is_some() {
                    taken += 1;
                    if hint.is_none() && taken >= self.busy.install_after() {
                        hint = Some(self.busy.install(flow, source, &peer));
                    }
                    if let Some(hint) = &hint {
                        hint.mark(port);
                    }
                }
                continue;
            }
            debug_assert!(!hinted || holder.is_none(), "a holder makes the port busy");
            self.ephemeral.found(scan, flow, port, attempt);
            self.link_connected(&held, inner, &exact, flags, true, &guard);
            self.join_bucket(inner, &tuple.local, true, &guard);
            if let Some(hint) = &hint {
                // `inner` now holds the 4-tuple, under the port's lock.
                hint.mark(port);
            }
            return Ok(tuple.local.to_socket(inner.family));
        }
        // No port: the same failure path as a refused 4-tuple.
        self.refuse_connect(inner, &me, source, &guard);
        Err(Error::AddrNotAvailable)
    }

    /// The keyed hash of a destination (source address, peer): the RFC 6056
    /// flow hash of Linux `connect()`, and the busy-port hints' key.
    fn destination_hash(&self, source: std::net::IpAddr, peer: &Endpoint) -> u64 {
        self.tuple_hash(&Tuple {
            local: Endpoint {
                ip: source,
                port: 0,
            },
            remote: *peer,
        })
    }

    /// A connected PCB connects to another peer (Linux UDP): the exact index
    /// gets the new 4-tuple before it loses the old one.
    fn reconnect(
        &self,
        inner: &Arc<PcbInner<S>>,
        me: &PcbView,
        peer: Endpoint,
        guard: &Guard,
    ) -> SocketAddr {
        let tuple = Tuple {
            local: me.local,
            remote: peer,
        };
        if peer != me.remote {
            let held = self.ports.lock(me.local.port);
            held.moving();
            // Whether `inner` held the old 4-tuple's entry, read under the
            // port's lock; the bits start afresh for the new one.
            let was = inner.flags.load();
            let before = Tuple {
                local: me.local,
                remote: me.remote,
            };
            // The exact index files a PCB under one tuple at a time, the one
            // it shows: the PCB waits out the change in the wildcard list,
            // where a lookup's walk takes it for the tuple it shows (see
            // `PcbTable::lookup_slow`), as a connect from bound does.
            self.relist_unconnected(&held, inner, guard);
            self.unlink_exact_was(inner, &before, was, guard);
            self.move_step("reconnect: old exact unlinked");
            let flags = inner.flags.load();
            self.link_connected(&held, inner, &self.flow(&tuple), flags, false, guard);
        }
        tuple.local.to_socket(inner.family)
    }

    /// What a `connect()` refused by the 4-tuple check leaves of the bound
    /// PCB `me` (Linux: it may move to the source address, or lose its port).
    /// Caller holds the port's lock.
    fn connect_failed(
        &self,
        held: &PortLock<'_>,
        inner: &Arc<PcbInner<S>>,
        me: &PcbView,
        source: std::net::IpAddr,
        guard: &Guard,
    ) {
        match self.rules.after_failed_connect(me, source) {
            AfterFailedConnect::Unchanged => {}
            AfterFailedConnect::Rebound(ip) => {
                let local = Endpoint { ip, ..me.local };
                // The PCB keeps its node in the wildcard list.
                self.readdress(held, inner, local, me.flags, false);
                self.join_bucket(inner, &local, false, guard);
                self.left_bucket(&me.local, None, guard);
            }
            AfterFailedConnect::Released(ip) => {
                let kept = PcbView {
                    local: Endpoint { ip, ..me.local },
                    ..*me
                };
                let keep_addr = me.flags.contains(Flags::ADDR_LOCKED);
                self.release_port(held, inner, &kept, keep_addr, guard);
            }
        }
    }

    /// The traces of a `connect()` the policy refuses after choosing
    /// `source` (see [`connect_failed`](Self::connect_failed)); a PCB out of
    /// the table may keep the source as its address.
    fn refuse_connect(
        &self,
        inner: &Arc<PcbInner<S>>,
        me: &PcbView,
        source: std::net::IpAddr,
        guard: &Guard,
    ) {
        if me.state() == State::Bound {
            let held = self.ports.lock(me.local.port);
            self.connect_failed(&held, inner, me, source, guard);
            return;
        }
        if let AfterFailedConnect::Released(ip) = self.rules.after_failed_connect(me, source) {
            if ip != me.local.ip {
                // Not in the table: nothing else sees it.
                inner.set_tuple(Tuple::bound(Endpoint { ip, port: 0 }));
            }
        }
    }

    /// The passive open on `listener`. A failure hands `socket` back.
    pub(crate) fn accept(
        self: &Arc<Self>,
        listener: &Pcb<S>,
        local: SocketAddr,
        remote: SocketAddr,
        socket: S,
    ) -> Result<Pcb<S>, (Error, S)> {
        let parent = &listener.inner;
        let _owner = parent.lock_owner();
        let guard = crossbeam_epoch::pin();
        let view = parent.view(&guard);
        let (local, remote) = match check_accept(self.rules.protocol, &view, local, remote) {
            Ok(checked) => checked,
            Err(error) => return Err((error, socket)),
        };
        let tuple = Tuple { local, remote };
        let held = self.ports.lock(local.port);
        let flow = self.flow(&tuple);
        let holder = self.exact_holder_arc(&flow, &guard);
        if holder
            .as_ref()
            .is_some_and(|pcb| pcb.state() != State::TimeWait)
        {
            return Err((Error::AddrInUse, socket));
        }
        let inherited = view.flags & self.rules.accept_inherits();
        let child = Arc::new(PcbInner::with_tuple(
            view.family,
            view.cred,
            inherited,
            socket,
            tuple,
        ));
        self.link_connected(&held, &child, &flow, inherited, true, &guard);
        if let Some(old) = holder {
            // The kernel kills the TIME_WAIT twin when the SYN arrives, before
            // the child exists.
            self.detach(&held, &old, &guard);
            self.left_bucket(&local, Some(&child), &guard);
            self.left_port(local.port, Some(&child), &guard);
            old.detach_socket(&guard);
            old.flags.set_state(State::Dropped);
        }
        self.join_bucket(&child, &tuple.local, false, &guard);
        self.attached.add(1);
        Ok(Pcb {
            table: self.clone(),
            inner: child,
        })
    }

    /// `connect(AF_UNSPEC)` on UDP.
    pub(crate) fn disconnect(&self, inner: &Arc<PcbInner<S>>) -> Result<(), Error> {
        let _owner = inner.lock_owner();
        let guard = crossbeam_epoch::pin();
        self.disconnect_locked(inner, &inner.view(&guard), &guard)
    }

    /// [`disconnect`](Self::disconnect) of `me`, under the owner lock.
    fn disconnect_locked(
        &self,
        inner: &Arc<PcbInner<S>>,
        me: &PcbView,
        guard: &Guard,
    ) -> Result<(), Error> {
        let me = *me;
        let keep = self.rules.disconnect(&me)?;
        if self.rules.protocol == Protocol::Tcp {
            self.abort(inner, &me, keep, guard);
            return Ok(());
        }
        // Linux `__udp_disconnect` also runs on a bound, unconnected socket:
        // an address bind() did not name goes back to the wildcard, and a
        // port bind() did not name is released.
        let connected = me.state() == State::Connected;
        if !connected && me.state() != State::Bound {
            return Ok(());
        }
        if !connected && !keep.keep_port {
            let held = self.ports.lock(me.local.port);
            self.release_port(&held, inner, &me, keep.keep_addr, guard);
            return Ok(());
        }
        let local = if keep.keep_addr {
            me.local
        } else {
            self.disconnected_local(inner.family, &me.local)
        };
        if !connected && local == me.local {
            if me.flags.in_group() && self.rules.wildcard_disconnect_leaves_group(&me) {
                let held = self.ports.lock(me.local.port);
                self.leave_group(&held, inner, guard);
            }
            return Ok(());
        }
        let held = self.ports.lock(me.local.port);
        if keep.keep_port {
            let mut flags = me
                .flags
                .without(Flags::CONNECT_BIND)
                .with_state(State::Bound);
            if !keep.keep_addr {
                flags = flags.without(Flags::SOURCE_BOUND);
            }
            if !connected {
                // The group is keyed by address: join again after the move.
                self.leave_group(&held, inner, guard);
            }
            if local != me.local {
                self.restamp_seq(&held, inner);
            }
            // Whether it holds the exact entry, read under the port's lock
            // (another PCB's connect may have shadowed it since `me`).
            let was = inner.flags.load();
            let fresh = connected && self.rules.disconnect_reinserts();
            if connected {
                let before = Tuple {
                    local: me.local,
                    remote: me.remote,
                };
                self.disconnect_move(&held, inner, &before, was, local, flags, fresh, guard);
            } else {
                // A bound PCB keeps its node in the wildcard list.
                self.readdress(&held, inner, local, flags, fresh);
            }
            if self.rules.rejoins_group_on_disconnect() {
                self.join_group_if_bound_member(&held, inner, guard);
            }
        } else {
            self.release_port(&held, inner, &me, keep.keep_addr, guard);
        }
        Ok(())
    }

    /// Takes `inner` out of the table, back to `Closed`; an address bound
    /// explicitly stays for a later `connect()` or `listen()` when
    /// `keep_addr` (Linux keeps it while SOCK_BINDADDR_LOCK is set). Caller
    /// holds the port's lock.
    pub(crate) fn release_port(
        &self,
        held: &PortLock<'_>,
        inner: &Arc<PcbInner<S>>,
        me: &PcbView,
        keep_addr: bool,
        guard: &Guard,
    ) {
        self.unlink(held, inner, guard);
        let ip = if keep_addr {
            me.local.ip
        } else {
            Endpoint::unspecified(inner.family).ip
        };
        inner.set_tuple(Tuple::bound(Endpoint { ip, port: 0 }));
        inner.flags.update(|flags| {
            let mut flags = flags
                .without(Flags::CONNECT_BIND | Flags::PORT_LOCKED)
                .with_state(State::Closed);
            if !keep_addr {
                flags = flags.without(Flags::ADDR_LOCKED | Flags::SOURCE_BOUND);
            }
            flags
        });
    }

    /// TIME_WAIT: detach the socket, keep the tuple.
    pub(crate) fn time_wait(&self, inner: &Arc<PcbInner<S>>) -> Result<(), Error> {
        let _owner = inner.lock_owner();
        if self.rules.protocol != Protocol::Tcp || inner.state() != State::Connected {
            return Err(Error::InvalidInput);
        }
        let guard = crossbeam_epoch::pin();
        let local = inner.tuple(&guard).local;
        let _held = self.ports.lock(local.port);
        // The socket goes first: whoever sees the new state sees no socket.
        inner.detach_socket(&guard);
        inner.flags.set_state(State::TimeWait);
        // The full socket leaves its port; the TIME_WAIT one stays.
        self.left_bucket(&local, None, &guard);
        self.left_port(local.port, None, &guard);
        Ok(())
    }

    /// Close (also the `Drop` of `Pcb`).
    pub(crate) fn close(&self, inner: &Arc<PcbInner<S>>) {
        let _owner = inner.lock_owner();
        self.attached.add(-1);
        let guard = crossbeam_epoch::pin();
        if inner.state().is_in_table() {
            let held = self.ports.lock(inner.tuple(&guard).local.port);
            // Re-read under the lock: an accept may have replaced this PCB
            // (TIME_WAIT) in the meantime.
            if inner.state().is_in_table() {
                self.unlink(&held, inner, &guard);
            }
        }
        inner.detach_socket(&guard);
        inner.flags.set_state(State::Dropped);
    }
}
