//! The moves of a PCB between the indexes, all under its port's lock: linking
//! it unconnected (the wildcard list) or connected (the exact index), moving
//! it back, unlinking it, and its place among the PCBs of its port.
//!
//! Every move links the new place before it unlinks the old one, so that a
//! lookup racing the move finds the PCB (see `PcbTable::lookup`'s proof).

use std::net::IpAddr;

use crossbeam_epoch::Guard;

use super::pcb::PcbInner;
use super::shared::{Flow, Shared};
use crate::addr::{Endpoint, Tuple};
use crate::flags::{Flags, State};
use crate::raw::{List, PortLock, Retired};
use crate::sync::{Arc, Ordering};

impl<S: Send + Sync + 'static> Shared<S> {
    /// Publishes `inner`, new on its port, as unconnected on `local`: tuple,
    /// place among the port's PCBs, flags, then the wildcard list (whose
    /// release store makes the rest visible).
    pub(super) fn link_unconnected(
        &self,
        held: &PortLock<'_>,
        inner: &Arc<PcbInner<S>>,
        local: Endpoint,
        flags: Flags,
        guard: &Guard,
    ) {
        self.readdress(held, inner, local, flags, true);
        self.ports.insert(held, List::Unconnected, inner, guard);
    }

    /// Moves the connected `inner` out of the exact index to the wildcard
    /// list, as unconnected on `local` with `flags` (`fresh`: with a new
    /// place among its port's PCBs). `before` is its tuple, `was` its flags
    /// read under the port's lock. The wildcard node is linked while the
    /// tuple still says connected, then the tuple changes, then the exact
    /// entry goes (see `Shared::lookup_slow`). Caller holds the port's
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
        self.unlink_exact_was(held, inner, before, was, guard)
            .defer(guard);
    }

    /// Moves `inner`, still connected and in the exact index, from its
    /// port's connected list to the wildcard list: the new node is linked
    /// before the old one goes, and the caller unlinks the exact entry after
    /// (see `Shared::lookup_slow`). Caller holds the port's lock.
    pub(super) fn relist_unconnected(
        &self,
        held: &PortLock<'_>,
        inner: &Arc<PcbInner<S>>,
        guard: &Guard,
    ) {
        self.ports.relist(
            held,
            List::Unconnected,
            inner,
            || self.move_step("disconnect: wildcard linked"),
            guard,
        );
    }

    /// Keeps `peer` as the last peer of `inner` where the policy remembers
    /// one (see [`Rules::remembers_peer`](crate::policy::Rules::remembers_peer)),
    /// and returns the flag that says so. The address is published before the flag, and a lookup reads it
    /// only once the flag is set.
    pub(super) fn remember_peer(
        &self,
        inner: &PcbInner<S>,
        peer: &Endpoint,
        guard: &Guard,
    ) -> Flags {
        if !self.rules.remembers_peer(inner.family()) {
            return Flags::EMPTY;
        }
        let last = match peer.ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        inner.set_last_peer(last, guard);
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
    pub(super) fn stamp_seq(&self, held: &PortLock<'_>, inner: &PcbInner<S>, flags: Flags) {
        let counter = held.next_seq();
        let place = self.rules.insertion_seq(inner.family(), flags, counter);
        inner.seq.store(place, Ordering::Relaxed);
        // The port's list keeps this place: a later move of the address
        // (`restamp_seq`) or a change of options does not reorder it.
        inner.bound_seq.store(place, Ordering::Relaxed);
    }

    /// `inner` moved to another address of its port: it takes the place the
    /// policy gives such a move (Linux UDP: the head of its new list).
    /// Caller holds the port's lock.
    pub(super) fn restamp_seq(&self, held: &PortLock<'_>, inner: &PcbInner<S>) {
        let counter = held.next_seq();
        if let Some(seq) = self.rules.rehash_seq(counter) {
            inner.seq.store(seq, Ordering::Relaxed);
        }
    }

    /// Publishes `inner` as connected on `flow`'s tuple: tuple, flags, the
    /// exact index, then the port's connected list.
    pub(super) fn link_connected(
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
        // From the wildcard list, a move: the new place is linked first.
        self.ports
            .relist(held, List::Connected, inner, || {}, guard);
    }

    /// Removes `inner` from every index and its group. Caller holds the
    /// port's lock. Returns the indexes' counts of `inner`, joined into one
    /// for the caller to release through the epoch.
    pub(super) fn unlink(
        &self,
        held: &PortLock<'_>,
        inner: &Arc<PcbInner<S>>,
        guard: &Guard,
    ) -> Retired<PcbInner<S>> {
        let Some(retired) = self.detach(held, inner, guard) else {
            return Retired::empty();
        };
        let local = inner.tuple(guard).local;
        self.left_bucket(held, &local, None, guard);
        self.left_port(held, local.port, None, guard);
        retired
    }

    /// [`unlink`](Self::unlink) without telling the port's memory; `None`
    /// if `inner` was not on the port.
    pub(super) fn detach(
        &self,
        held: &PortLock<'_>,
        inner: &Arc<PcbInner<S>>,
        guard: &Guard,
    ) -> Option<Retired<PcbInner<S>>> {
        self.leave_group(held, inner, guard);
        let (list, mut retired) = self.ports.remove(held, inner, guard)?;
        if list == List::Connected {
            let exact = self.unlink_exact(held, inner, &inner.tuple(guard), guard);
            retired.join(exact, guard);
        }
        Some(retired)
    }

    /// Removes `inner`'s entry for `tuple` from the exact index, and first
    /// the port's bit from the destination's busy-port hint. Caller holds the
    /// port's lock. Returns the index's count of `inner`, to release through
    /// the epoch.
    pub(super) fn unlink_exact(
        &self,
        held: &PortLock<'_>,
        inner: &Arc<PcbInner<S>>,
        tuple: &Tuple,
        guard: &Guard,
    ) -> Retired<PcbInner<S>> {
        self.unlink_exact_was(held, inner, tuple, inner.flags.load(), guard)
    }

    /// [`unlink_exact`](Self::unlink_exact), with `was` the flags that tell
    /// whether `inner` held the entry.
    pub(super) fn unlink_exact_was(
        &self,
        held: &PortLock<'_>,
        inner: &Arc<PcbInner<S>>,
        tuple: &Tuple,
        was: Flags,
        guard: &Guard,
    ) -> Retired<PcbInner<S>> {
        self.busy.unmark(
            || self.destination_hash(tuple.local.ip, &tuple.remote),
            tuple.local.ip,
            tuple.local.port,
            &tuple.remote,
        );
        self.exact_unlink(held, inner, &self.flow(tuple), was, guard)
    }
}
