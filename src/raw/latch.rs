//! `TupleLatch`: a PCB's 4-tuple stored inline, which readers copy without
//! waiting for a writer and without a lock.
//!
//! The tuple is kept twice, as plain atomic words, with a sequence counter
//! (the shape of Linux's `seqcount_latch`). A reader loads the counter, copies
//! the copy the counter points to (`seq & 1`), and loads the counter again:
//! if it did not move, the words were not written meanwhile and form one
//! tuple; if it moved, a writer finished a step in the meantime and the
//! reader copies again, from the copy the new counter points to. A writer
//! bumps the counter (readers turn to the other copy), rewrites the copy they
//! left, bumps it again (readers turn back) and rewrites the other one. At
//! every moment one copy is whole and the counter points to it, so a writer
//! preempted halfway through stalls no reader: a reader retries only when a
//! writer made progress while it was copying.
//!
//! Every word is an atomic, so a reader that overlaps a writer reads stale or
//! mixed words, never undefined ones, and throws them away. No allocation,
//! no epoch: a change costs two counter stores and ten word stores.

use std::mem::offset_of;

use crate::addr::TupleWords;
use crate::sync::{fence, AtomicU32, AtomicU64, Ordering};

/// See the module docs.
///
/// This type maintains the invariant that, between calls of
/// [`store`](Self::store), the counter is even and both copies hold the last
/// value stored; during one, the copy `seq & 1` holds a whole value (the old
/// one, then the new one). Writers must be serialised by the caller (a PCB's
/// tuple is written only under its owner lock); two writers at once would
/// give readers a mixed value, though still no undefined behaviour.
///
/// `repr(C)`, in this order, so that what a reader of the first copy reads
/// (the counter, the ports, the owner's word and the first copy's
/// addresses) is the first 48 bytes: one cache line when the latch starts
/// on one, and the copy readers use while no store runs. The owner's
/// `middle` value comes next, before the second copy (see
/// [`middle`](Self::middle)).
// Under loom the table uses `LockedTuple`; the latch serves its own models.
#[cfg_attr(pcbhash_loom, allow(dead_code))]
#[repr(C)]
pub(crate) struct TupleLatch<M> {
    seq: AtomicU32,
    ports: [AtomicU32; 2],
    /// The owner's word: see [`TupleLatch::word`].
    word: AtomicU32,
    first: [AtomicU64; 4],
    middle: M,
    second: [AtomicU64; 4],
}

#[cfg_attr(pcbhash_loom, allow(dead_code))]
impl<M> TupleLatch<M> {
    pub(crate) fn new(value: TupleWords, middle: M) -> Self {
        let copy = || value.addrs.map(AtomicU64::new);
        Self {
            seq: AtomicU32::new(0),
            ports: [AtomicU32::new(value.ports), AtomicU32::new(value.ports)],
            word: AtomicU32::new(0),
            first: copy(),
            middle,
            second: copy(),
        }
    }

    /// The owner's value stored between the two copies. Readers read the
    /// first copy except while a store runs, so what the owner reads right
    /// after the tuple (a PCB's socket) sits right after it, on the same
    /// cache line as often as the line allows, and the second copy after
    /// that. The latch never touches it.
    #[inline]
    pub(crate) fn middle(&self) -> &M {
        &self.middle
    }

    /// The addresses of copy `copy` (0 or 1): one address computation, as
    /// indexing an array of the two would be, not a select.
    #[inline(always)]
    fn addrs(&self, copy: usize) -> &[AtomicU64; 4] {
        const { assert!(offset_of!(Self, second) > offset_of!(Self, first)) };
        let apart = offset_of!(Self, second) - offset_of!(Self, first);
        debug_assert!(copy < 2);
        let offset = offset_of!(Self, first) + (copy & 1) * apart;
        // SAFETY: `copy & 1` is 0 or 1, so this is the address of `first`
        // or of `second`, both fields of `self` (the pointer is derived from
        // all of `self`), of the same type, valid for as long as `self` is
        // borrowed.
        unsafe {
            &*std::ptr::from_ref(self)
                .cast::<u8>()
                .add(offset)
                .cast::<[AtomicU64; 4]>()
        }
    }

    /// A 32-bit word of the owner's, kept where the latch would have
    /// padding, on the line a reader of the tuple reads anyway. The latch
    /// does not order it with the tuple: its owner loads and stores it as
    /// any atomic. (A PCB keeps its device there, which an exact hit
    /// checks after the tuple.)
    #[inline]
    pub(crate) fn word(&self) -> &AtomicU32 {
        &self.word
    }

    /// The current value. Lock-free and wait-free with respect to a stalled
    /// writer: it copies again only if a writer completed a step while it
    /// was copying.
    #[inline]
    pub(crate) fn load(&self) -> TupleWords {
        loop {
            let seq = self.seq.load(Ordering::Acquire);
            let copy = (seq & 1) as usize;
            let addrs = self.addrs(copy);
            let value = TupleWords {
                addrs: [
                    addrs[0].load(Ordering::Relaxed),
                    addrs[1].load(Ordering::Relaxed),
                    addrs[2].load(Ordering::Relaxed),
                    addrs[3].load(Ordering::Relaxed),
                ],
                ports: self.ports[copy].load(Ordering::Relaxed),
            };
            // Orders the copy before the re-check: had any word come from a
            // store after the writer's bump, the re-check sees that bump.
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == seq {
                return value;
            }
        }
    }

    /// Whether the current value is `value`: [`load`](Self::load)`() ==
    /// value`, with the words compared where they lie instead of copied
    /// out (an exact hit's test, which then keeps fewer registers).
    /// Validated by the counter as `load` is: an answer from words that a
    /// store overlapped is thrown away, so a torn copy never matches.
    #[inline(always)]
    pub(crate) fn holds(&self, value: &TupleWords) -> bool {
        loop {
            let seq = self.seq.load(Ordering::Acquire);
            let differ = self.differs(seq, value);
            // As in `load`: the words before the re-check.
            fence(Ordering::Acquire);
            let moved = self.seq.load(Ordering::Relaxed) ^ seq;
            // One test for the common answer, a match read whole: the
            // difference and the counter's change folded into one word.
            if differ | u64::from(moved) == 0 {
                return true;
            }
            if moved == 0 {
                return false;
            }
            // A store overlapped the reading: read again.
        }
    }

    /// The words of copy `seq & 1` exclusive-or `value`'s, folded into one
    /// word: zero exactly when they are equal.
    #[inline(always)]
    fn differs(&self, seq: u32, value: &TupleWords) -> u64 {
        let copy = (seq & 1) as usize;
        let addrs = self.addrs(copy);
        (addrs[0].load(Ordering::Relaxed) ^ value.addrs[0])
            | (addrs[1].load(Ordering::Relaxed) ^ value.addrs[1])
            | (addrs[2].load(Ordering::Relaxed) ^ value.addrs[2])
            | (addrs[3].load(Ordering::Relaxed) ^ value.addrs[3])
            | u64::from(self.ports[copy].load(Ordering::Relaxed) ^ value.ports)
    }

    /// Replaces the value. Callers serialise their stores (see the type).
    pub(crate) fn store(&self, value: TupleWords) {
        self.store_stepping(value, || {});
    }

    /// [`store`](Self::store), calling `step` after each counter bump and
    /// each word written, so that a model can park the writer anywhere.
    fn store_stepping(&self, value: TupleWords, mut step: impl FnMut()) {
        let seq = self.seq.load(Ordering::Relaxed);
        for half in 0..2u32 {
            let bumped = seq.wrapping_add(half + 1);
            // Release: the copy readers turn to was completed before this.
            self.seq.store(bumped, Ordering::Release);
            // Orders the bump before the word stores below: a reader that
            // loads one of them sees the bump when it re-checks.
            fence(Ordering::Release);
            step();
            let left = (seq.wrapping_add(half) & 1) as usize;
            for (word, new) in self.addrs(left).iter().zip(value.addrs) {
                word.store(new, Ordering::Relaxed);
                step();
            }
            self.ports[left].store(value.ports, Ordering::Relaxed);
            step();
        }
    }
}

/// What a PCB stores its tuple in: the [`TupleLatch`]; under loom, a
/// [`LockedTuple`] instead.
#[cfg(not(pcbhash_loom))]
pub(crate) type TupleCell<M> = TupleLatch<M>;
/// What a PCB stores its tuple in: the [`TupleLatch`]; under loom, a
/// [`LockedTuple`] instead.
#[cfg(pcbhash_loom)]
pub(crate) type TupleCell<M> = LockedTuple<M>;

/// The tuple behind a loom mutex: what the table-level models use in place
/// of the [`TupleLatch`], as they use a mutex in place of arc-swap. Both are
/// linearizable registers of a whole tuple (a latch's store takes effect at
/// its second counter bump, a load at the counter load it validated), so
/// the table's models see the same behaviours. The latch's own
/// interleavings are explored by its own models below: in a table model,
/// each of a reader's relaxed word loads racing a writer's ten word stores
/// may return any of several values, and those choices multiply with every
/// other step of the model beyond what a run can explore.
#[cfg(pcbhash_loom)]
pub(crate) struct LockedTuple<M>(crate::sync::Mutex<TupleWords>, AtomicU32, M);

#[cfg(pcbhash_loom)]
impl<M> LockedTuple<M> {
    pub(crate) fn new(value: TupleWords, middle: M) -> Self {
        Self(crate::sync::Mutex::new(value), AtomicU32::new(0), middle)
    }

    /// As [`TupleLatch::middle`].
    pub(crate) fn middle(&self) -> &M {
        &self.2
    }

    pub(crate) fn load(&self) -> TupleWords {
        *crate::sync::lock(&self.0)
    }

    pub(crate) fn store(&self, value: TupleWords) {
        *crate::sync::lock(&self.0) = value;
    }

    /// As [`TupleLatch::holds`].
    pub(crate) fn holds(&self, value: &TupleWords) -> bool {
        *crate::sync::lock(&self.0) == *value
    }

    /// As [`TupleLatch::word`].
    pub(crate) fn word(&self) -> &AtomicU32 {
        &self.1
    }
}

impl<M> std::fmt::Debug for TupleLatch<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TupleLatch").field(&self.load()).finish()
    }
}

#[cfg(all(test, not(pcbhash_loom)))]
mod tests {
    use super::*;

    fn words(n: u64) -> TupleWords {
        TupleWords {
            addrs: [n, n + 1, n + 2, n + 3],
            ports: n as u32,
        }
    }

    #[test]
    fn a_store_is_seen_by_the_next_load() {
        let latch = TupleLatch::new(words(1), ());
        assert_eq!(latch.load(), words(1));
        for n in 2..6 {
            latch.store(words(n));
            assert_eq!(latch.load(), words(n));
        }
    }

    /// Halfway through a store, the counter points to a whole copy: the old
    /// value until the first copy is rewritten, then the new one.
    #[test]
    fn a_load_during_a_store_sees_a_whole_value() {
        let latch = TupleLatch::new(words(10), ());
        let mut seen = Vec::new();
        // A reader on the writer's own thread: had it to wait for the
        // writer, it would never return.
        latch.store_stepping(words(20), || seen.push(latch.load()));
        assert_eq!(seen.len(), 12);
        assert!(seen.iter().all(|&v| v == words(10) || v == words(20)));
        // The old value until the first copy is whole again, then the new.
        let switch = seen.iter().position(|&v| v == words(20)).unwrap();
        assert!(seen[switch..].iter().all(|&v| v == words(20)));
        assert!(switch > 0);
        assert_eq!(latch.load(), words(20));
    }

    #[test]
    fn holds_compares_every_word_with_the_current_value() {
        let latch = TupleLatch::new(words(1), ());
        assert!(latch.holds(&words(1)));
        assert!(!latch.holds(&words(2)));
        for i in 0..4 {
            let mut other = words(1);
            other.addrs[i] ^= 1 << 40;
            assert!(!latch.holds(&other), "address word {i}");
        }
        let mut other = words(1);
        other.ports ^= 1 << 20;
        assert!(!latch.holds(&other), "ports");
        latch.store(words(2));
        assert!(latch.holds(&words(2)));
        assert!(!latch.holds(&words(1)));
    }

    /// Halfway through a store, `holds` answers for one whole value: the
    /// old one or the new one, never both nor neither.
    #[test]
    fn holds_during_a_store_answers_for_a_whole_value() {
        let latch = TupleLatch::new(words(10), ());
        let mut seen = Vec::new();
        latch.store_stepping(words(20), || {
            seen.push((latch.holds(&words(10)), latch.holds(&words(20))));
        });
        assert_eq!(seen.len(), 12);
        assert!(seen.iter().all(|&(old, new)| old != new), "{seen:?}");
        let switch = seen.iter().position(|&(_, new)| new).unwrap();
        assert!(seen[switch..].iter().all(|&(_, new)| new));
    }

    #[test]
    fn concurrent_loads_are_never_torn() {
        let latch = std::sync::Arc::new(TupleLatch::new(words(0), ()));
        let writer = {
            let latch = latch.clone();
            std::thread::spawn(move || {
                for n in 1..20_000 {
                    latch.store(words(n * 10));
                }
            })
        };
        let mut last = 0;
        while !writer.is_finished() {
            let value = latch.load();
            let n = value.addrs[0];
            assert_eq!(value, words(n), "a torn tuple");
            assert!(n >= last, "went back from {last} to {n}");
            last = n;
        }
        writer.join().unwrap();
    }
}

#[cfg(all(test, pcbhash_loom))]
mod loom_tests {
    use super::*;

    use crate::sync::{Arc, AtomicBool};

    fn words(n: u64) -> TupleWords {
        TupleWords {
            addrs: [n; 4],
            ports: n as u32,
        }
    }

    /// A load is whole, and a later load never goes back to the old value.
    #[test]
    fn loads_are_whole_and_ordered() {
        loom::model(|| {
            let latch = Arc::new(TupleLatch::new(words(1), ()));
            let writer = {
                let latch = latch.clone();
                loom::thread::spawn(move || latch.store(words(2)))
            };
            let first = latch.load();
            let second = latch.load();
            for value in [first, second] {
                assert_eq!(value, words(value.addrs[0]), "torn: {value:?}");
            }
            assert!(first.addrs[0] <= second.addrs[0]);
            writer.join().unwrap();
        });
    }

    /// The writer parks after `park_at` steps of its store and stays there
    /// until the reader has finished: the reader's load must complete (a
    /// reader that waited for the writer would never return, and loom
    /// reports the endless loop) with the old value or the new one, whole.
    #[test]
    fn a_load_completes_while_the_writer_is_parked() {
        for park_at in 0..12 {
            loom::model(move || {
                let latch = Arc::new(TupleLatch::new(words(1), ()));
                let parked = Arc::new(AtomicBool::new(false));
                let released = Arc::new(AtomicBool::new(false));
                let writer = {
                    let (latch, parked, released) =
                        (latch.clone(), parked.clone(), released.clone());
                    loom::thread::spawn(move || {
                        let mut steps = 0;
                        latch.store_stepping(words(2), || {
                            if steps == park_at {
                                parked.store(true, Ordering::Release);
                                while !released.load(Ordering::Acquire) {
                                    loom::thread::yield_now();
                                }
                            }
                            steps += 1;
                        });
                    })
                };
                while !parked.load(Ordering::Acquire) {
                    loom::thread::yield_now();
                }
                let value = latch.load();
                assert!(value == words(1) || value == words(2), "torn: {value:?}");
                // The in-place compare answers for one whole value too.
                let (old, new) = (latch.holds(&words(1)), latch.holds(&words(2)));
                assert!(old != new, "holds: old {old}, new {new}");
                released.store(true, Ordering::Release);
                writer.join().unwrap();
                assert_eq!(latch.load(), words(2));
            });
        }
    }
}
