//! The table's exact index: connected and TIME_WAIT PCBs by 4-tuple.
//!
//! An [`ExactIndex`] of PCBs, filed under the keyed hash of their tuple. The
//! index keeps no keys: a probe's predicate is [`PcbInner::is_flow`], which
//! compares the packet's key with the tuple the PCB itself exposes, and a
//! resize files each PCB again under the hash it keeps
//! ([`PcbInner::exact_hash`]). Two rules follow, and the lifecycle keeps
//! them:
//!
//! - a PCB is in the index under one hash at a time, the hash of the tuple it
//!   had when it was inserted, written before the insert;
//! - while it is in the index its tuple stays that tuple, except in the last
//!   steps of a move out (disconnect, a Linux UDP reconnect), where the
//!   wildcard list already holds it (see `Shared::lookup_slow`).
//!
//! A hit reads the home bucket's line, the PCB's line and, while the tuple is
//! published through an epoch cell of its own, the tuple's line: the
//! predicate's one accessor is where an inline tuple will be read instead.
//!
//! Several entries under one 4-tuple exist only inside one writer's
//! critical section (a Linux UDP holder giving way to a newer one, a
//! TIME_WAIT twin replaced by `accept`): the new entry is filed before the
//! old one goes, and a probe in between may return either, which is the
//! state before or after the change.
//!
//! # Spill
//!
//! The index hands a PCB back when its address does not fit a slot (not on
//! any mainstream 64-bit platform) or when every slot within reach of its
//! home is taken while the index is within its load (only many entries under
//! one hash could do that, and the keyed hash makes it a matter of chance
//! far below one in a lifetime). The kernels' chained hashes never refuse an
//! insert, so neither does the table: such a PCB goes to the *spill*, a list
//! published through the epoch and read only by probes that missed in the
//! index, after one load of its length finds it non-empty.

use crossbeam_epoch::Guard;

use super::arrival::Arrival;
use super::pcb::PcbInner;
use crate::addr::FlowKey;
use crate::raw::{ExactEntry, ExactIndex, ExactStats, PastHome, PortLock, Retired, SpillList};
use crate::sync::{Arc, Ordering};

impl<S: Send + Sync + 'static> ExactEntry for PcbInner<S> {
    #[inline]
    fn exact_hash(&self) -> u64 {
        self.exact_hash.load(Ordering::Relaxed)
    }
}

/// The exact index of a table, with its spill (see the module docs).
pub(crate) struct ExactPcbs<S: Send + Sync + 'static> {
    index: ExactIndex<PcbInner<S>>,
    /// PCBs the index handed back; almost always empty.
    spill: SpillList<PcbInner<S>>,
    /// For the crate's tests: every insert goes to the spill.
    #[cfg(test)]
    spill_all: bool,
}

impl<S: Send + Sync + 'static> ExactPcbs<S> {
    /// An index of `buckets` buckets if given, else sized for `capacity`.
    pub(crate) fn new(capacity: usize, buckets: Option<usize>) -> Self {
        Self {
            index: match buckets {
                Some(buckets) => ExactIndex::with_buckets(buckets),
                None => ExactIndex::with_capacity(capacity),
            },
            spill: SpillList::new(),
            #[cfg(test)]
            spill_all: false,
        }
    }

    /// For the crate's tests: sends every insert to the spill.
    #[cfg(all(test, not(pcbhash_loom)))]
    pub(crate) fn spill_all(&mut self) {
        self.spill_all = true;
    }

    /// Turns on deliberately broken synchronisation (see `sync::Broken`).
    #[cfg(pcbhash_broken)]
    pub(crate) fn set_broken(&mut self, broken: crate::sync::Broken) {
        self.index.set_broken(broken);
    }

    /// The PCB whose tuple is `key` (filed under `hash`, the key's hash)
    /// and that answers a packet that arrived on `device` ([`Unknown`](super::Unknown)
    /// or an index, 0 for unknown): a PCB bound to another device is passed
    /// over, after its tuple matched. Generic over the arrival so that for
    /// an unknown device the test is one comparison with a constant.
    /// Lock-free, never waits: the home bucket, and the PCB lines of its
    /// candidates; on a miss, one load more.
    #[inline(always)]
    pub(crate) fn find_on<'g, D: Arrival>(
        &self,
        hash: u64,
        key: &FlowKey,
        device: D,
        guard: &'g Guard,
    ) -> Option<&'g PcbInner<S>> {
        match self.find_home(hash, key, device, guard) {
            Ok(pcb) => Some(pcb),
            Err(past) => self.find_past_home(hash, key, device, past, guard),
        }
    }

    /// The common case of [`find_on`](Self::find_on): the home bucket
    /// alone, with no call. On a miss, where the probe left off, for
    /// [`find_past_home`](Self::find_past_home).
    #[inline(always)]
    pub(crate) fn find_home<'g, D: Arrival>(
        &self,
        hash: u64,
        key: &FlowKey,
        device: D,
        guard: &'g Guard,
    ) -> Result<&'g PcbInner<S>, PastHome<'g>> {
        self.index.find_home(hash, guard, &mut |pcb: &PcbInner<S>| {
            pcb.is_flow(key, guard) && pcb.answers(device.index())
        })
    }

    /// The rest of [`find_on`](Self::find_on) after
    /// [`find_home`](Self::find_home) missed: the displaced entries, then
    /// the spill.
    #[inline(always)]
    pub(crate) fn find_past_home<'g, D: Arrival>(
        &self,
        hash: u64,
        key: &FlowKey,
        device: D,
        past: PastHome<'g>,
        guard: &'g Guard,
    ) -> Option<&'g PcbInner<S>> {
        // The common miss in one test: nothing past the home, and the
        // spill empty.
        if self.index.past_home(hash, past) | self.spill.len() as u64 == 0 {
            return None;
        }
        self.find_past_home_slow(hash, key, device, past, guard)
    }

    /// [`find_past_home`](Self::find_past_home) when the home's entries
    /// spilled over or moved, or the spill holds PCBs.
    #[inline(never)]
    fn find_past_home_slow<'g, D: Arrival>(
        &self,
        hash: u64,
        key: &FlowKey,
        device: D,
        past: PastHome<'g>,
        guard: &'g Guard,
    ) -> Option<&'g PcbInner<S>> {
        let found = self.index.find_past_home(hash, past, guard, |pcb| {
            pcb.is_flow(key, guard) && pcb.answers(device.index())
        });
        match found {
            Some(pcb) => Some(pcb),
            None if self.spill.len() == 0 => None,
            None => self.find_spilled(hash, key, Some(device.index()), guard),
        }
    }

    /// The spill list's PCB for `key` that answers `device` (`None`: any
    /// device).
    #[inline(never)]
    fn find_spilled<'g>(
        &self,
        hash: u64,
        key: &FlowKey,
        device: Option<u32>,
        guard: &'g Guard,
    ) -> Option<&'g PcbInner<S>> {
        self.spill.find(guard, |pcb| {
            pcb.exact_hash() == hash
                && pcb.is_flow(key, guard)
                && device.is_none_or(|device| pcb.answers(device))
        })
    }

    /// The PCB whose tuple is `key`, whatever its device, as a strong
    /// reference.
    pub(crate) fn find_arc(
        &self,
        hash: u64,
        key: &FlowKey,
        guard: &Guard,
    ) -> Option<Arc<PcbInner<S>>> {
        self.find_arc_where(hash, key, guard, |_| true)
    }

    /// The PCB whose tuple is `key` and that answers `device` (0: none),
    /// as a strong reference: who holds the 4-tuple for a PCB bound to
    /// `device`.
    pub(crate) fn find_arc_on(
        &self,
        hash: u64,
        key: &FlowKey,
        device: u32,
        guard: &Guard,
    ) -> Option<Arc<PcbInner<S>>> {
        self.find_arc_where(hash, key, guard, |pcb| pcb.answers(device))
    }

    /// The PCB whose tuple is `key` and that passes `also`, as a strong
    /// reference.
    fn find_arc_where(
        &self,
        hash: u64,
        key: &FlowKey,
        guard: &Guard,
        also: impl Fn(&PcbInner<S>) -> bool,
    ) -> Option<Arc<PcbInner<S>>> {
        self.index
            .find_arc(hash, guard, |pcb| pcb.is_flow(key, guard) && also(pcb))
            .or_else(|| {
                self.spill.find_arc(guard, |pcb| {
                    pcb.exact_hash() == hash && pcb.is_flow(key, guard) && also(pcb)
                })
            })
    }

    /// Starts loading the home bucket of `hash`. A hint only.
    #[inline]
    pub(crate) fn prefetch(&self, hash: u64, guard: &Guard) {
        self.index.prefetch(hash, guard);
    }

    /// Starts loading the PCB lines a probe for `hash` will compare, once
    /// its home bucket is (likely) in the cache. A hint only.
    #[inline]
    pub(crate) fn prefetch_candidates(&self, hash: u64, guard: &Guard) {
        self.index.prefetch_values(hash, guard);
    }

    /// Files `pcb`, whose tuple hashes to `hash`, under `hash`. Takes one
    /// bucket lock (or the spill's lock). `_held` is the port's lock.
    pub(crate) fn insert(
        &self,
        _held: &PortLock<'_>,
        hash: u64,
        pcb: &Arc<PcbInner<S>>,
        guard: &Guard,
    ) {
        pcb.exact_hash.store(hash, Ordering::Relaxed);
        #[cfg(test)]
        if self.spill_all {
            self.spill.push(pcb.clone(), guard);
            return;
        }
        if let Err(refused) = self.index.insert(hash, pcb.clone(), guard) {
            self.spill.push(refused.into_value(), guard);
        }
    }

    /// Removes `pcb`'s entry under `hash`. Takes one bucket lock. Returns
    /// the index's count of it, for the caller to release through the epoch
    /// (empty for an entry of the spill, which releases its own), or `None`
    /// if there was no entry.
    pub(crate) fn remove(
        &self,
        hash: u64,
        pcb: &PcbInner<S>,
        guard: &Guard,
    ) -> Option<Retired<PcbInner<S>>> {
        let is_pcb = |held: &PcbInner<S>| std::ptr::eq(held, pcb);
        self.index
            .remove(hash, guard, is_pcb)
            .or_else(|| self.spill.remove(guard, is_pcb).then(Retired::empty))
    }

    /// Figures about the index; `entries` counts the spill too.
    pub(crate) fn stats(&self, guard: &Guard) -> ExactStats {
        let mut stats = self.index.stats(guard);
        stats.entries += self.spill.len();
        stats
    }

    /// How many resizes have completed.
    pub(crate) fn resizes(&self) -> u64 {
        self.index.resizes()
    }
}
