//! Several PCBs connected over one 4-tuple (Linux UDP with SO_REUSEADDR or
//! SO_REUSEPORT): the exact index files one of them, the one that connected
//! last, as `udp_lib_hash4` puts it at the head of the 4-tuple's list. The
//! others are marked [`Flags::SHADOWED`] and wait on the port's connected
//! list; when the holder leaves, the newest of them takes its place.

use crossbeam_epoch::Guard;

use super::pcb::PcbInner;
use super::shared::{Flow, Shared};
use crate::flags::Flags;
use crate::raw::{List, PortLock, Retired};
use crate::sync::{Arc, Ordering};

impl<S: Send + Sync + 'static> Shared<S> {
    /// Files `inner`, which has just connected, under `flow`; a PCB that
    /// held the entry steps behind it where the policy says so. The new
    /// entry is linked before the old one goes, so a lookup always finds
    /// one of them. Caller holds the port's lock.
    pub(crate) fn exact_link(
        &self,
        held: &PortLock<'_>,
        flow: &Flow,
        inner: &Arc<PcbInner<S>>,
        guard: &Guard,
    ) {
        let counter = held.next_seq();
        inner.connect_seq.store(counter, Ordering::Relaxed);
        let before = if self.rules.newest_connection_first() {
            self.exact_holder_arc(flow, guard)
                .filter(|old| !Arc::ptr_eq(old, inner))
        } else {
            None
        };
        if before.is_some() {
            // The holder's entry gives way to the new one: a move.
            held.moving();
        }
        self.exact_insert(held, flow, inner, guard);
        if let Some(old) = before {
            if let Some(retired) = self.exact_remove(flow, &old, guard) {
                // `old` stays on its port's list, which keeps its own count:
                // this one is released alone.
                retired.defer(guard);
            }
            old.flags.update(|flags| flags | Flags::SHADOWED);
            inner.flags.update(|flags| flags | Flags::SHADOWING);
        }
    }

    /// Takes `inner`'s entry for `flow` out of the exact index, if it has
    /// one (`was`: its flags then), and lets the newest PCB waiting behind
    /// it in. The successor is filed before `inner`'s entry goes, so a
    /// lookup of the 4-tuple always finds one of them. Caller holds the
    /// port's lock. Returns the index's count of `inner`, to release through
    /// the epoch (empty when it had no entry).
    pub(crate) fn exact_unlink(
        &self,
        held: &PortLock<'_>,
        inner: &Arc<PcbInner<S>>,
        flow: &Flow,
        was: Flags,
        guard: &Guard,
    ) -> Retired<PcbInner<S>> {
        inner
            .flags
            .update(|flags| flags.without(Flags::SHADOWED | Flags::SHADOWING));
        if was.contains(Flags::SHADOWED) {
            return Retired::empty();
        }
        if was.contains(Flags::SHADOWING) {
            self.file_successor(held, inner, flow, guard);
        }
        let removed = self.exact_remove(flow, inner, guard);
        debug_assert!(removed.is_some(), "a connected PCB is in the exact index");
        removed.unwrap_or_else(Retired::empty)
    }

    /// Files the newest PCB waiting behind `inner` on `flow` in the exact
    /// index, beside `inner`'s entry. Caller holds the port's lock.
    fn file_successor(
        &self,
        held: &PortLock<'_>,
        inner: &Arc<PcbInner<S>>,
        flow: &Flow,
        guard: &Guard,
    ) {
        debug_assert_eq!(held.port(), flow.tuple.local.port);
        let tuple = &flow.tuple;
        let mut waiting = self
            .ports
            .iter(tuple.local.port, List::Connected, guard)
            .filter(|pcb| {
                !Arc::ptr_eq(pcb, inner)
                    && pcb.flags.load().contains(Flags::SHADOWED)
                    && pcb.tuple(guard) == *tuple
            });
        let Some(mut newest) = waiting.next() else {
            return;
        };
        let mut more = false;
        for pcb in waiting {
            more = true;
            let seq = |p: &PcbInner<S>| p.connect_seq.load(Ordering::Relaxed);
            if seq(pcb) > seq(newest) {
                newest = pcb;
            }
        }
        self.exact_insert(held, flow, newest, guard);
        newest
            .flags
            .update(|flags| flags.without(Flags::SHADOWED).set(Flags::SHADOWING, more));
    }
}
