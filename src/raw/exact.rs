//! `ExactIndex`: the exact (4-tuple) index, a hash multimap of `Arc<T>` whose
//! buckets hold one-word slots of signature and pointer, and whose keys live
//! in the values.
//!
//! # Shape
//!
//! An index points to a *bucket array*. Each bucket is one 64-byte cache line:
//! a *meta* word and seven *slots*. A slot is one `AtomicU64`:
//!
//! ```text
//!  63         52 51   48 47                              0
//! +-------------+-------+---------------------------------+
//! | signature   | dist+1|  address of the value >> 4      |
//! +-------------+-------+---------------------------------+
//! ```
//!
//! - the *signature* is the top 12 bits of the entry's hash (the bucket index
//!   comes from the low bits, so the two are independent);
//! - *dist* is how many buckets past its *home* bucket (`hash & mask`) the
//!   entry lives, 0 to [`MAX_REACH`]; stored plus one, so that a slot's top 16
//!   bits (its *tag*) are never zero;
//! - the address of an `Arc<T>`'s value, which is 16-byte aligned
//!   (`align_of::<T>() >= 16` is a compile-time assertion), so its low four
//!   bits are implied and 48 bits hold any address below 2⁵². An insert whose
//!   value lies higher returns it ([`InsertError::Address`]).
//!
//! An all-zero slot is empty (a value's address is never zero), so a zeroed
//! allocation is an empty array.
//!
//! The meta word belongs to the bucket as a *home* (the bucket the low bits
//! of a hash pick), and only the holder of its lock writes it:
//!
//! ```text
//!  63     56 55     48      ...      15      8 7   6 5     2   1       0
//! +---------+---------+-------------+---------+-----+-------+-----+--------+
//! | filter 6| filter 5|     ...     | filter 0|     | reach |MOVED| LOCKED |
//! +---------+---------+-------------+---------+-----+-------+-----+--------+
//! ```
//!
//! - *filter i* is the low byte of the signature of the entry in slot `i`
//!   (never zero: 0 reads as 1) when that entry has this bucket as its home,
//!   and zero otherwise (an empty slot, or an entry displaced here from
//!   another home);
//! - *reach* is the farthest distance at which an entry of this home lives
//!   (below);
//! - `LOCKED` and `MOVED` serve writers and resizes (below).
//!
//! The index stores no keys: the caller's predicate on `&T` decides what
//! matches, as Linux's established hash (`__inet_lookup_established` compares
//! the socket's own fields) and DPDK's `rte_hash` with the key in the entry
//! do. The value (the PCB) holds its key inline, and the PCB record is the
//! second cache line a lookup touches; the bucket is the first.
//!
//! ## Why this shape
//!
//! Compared with the index it replaced (one inline entry per bucket and an
//! overflow chain, whose hits were a third of the time in the chain), the
//! aim is a probe
//! without data-dependent branches. A lookup loads the home bucket's meta
//! word and compares its seven filter bytes with the one it wants at once
//! (SWAR: a few arithmetic operations on the word, as hashbrown's generic
//! group does on control bytes), which gives a bit mask of candidate slots
//! without branching. For each candidate it loads the slot and checks the
//! full tag, then calls the predicate. An entry of another signature passes
//! the filter in about one lookup in a hundred at the usual loads, and costs one
//! more load from the line already in the cache; the only branch whose
//! direction depends on the data ("did the home bucket hold it?") nearly
//! always goes the same way. Comparing the seven slot tags themselves is as
//! branch-free but costs about 30 instructions more per lookup; it is what
//! the rare lookups past the home bucket do.
//!
//! hashbrown keeps keys beside its control bytes, which would put the PCB's
//! key in the index; DPDK's cuckoo hash compares 16-bit signatures of a
//! bucket at once too, but its alternative bucket is a random line, which a
//! miss must always read. Here a miss reads one line unless the home bucket's
//! reach says entries spilled over.
//!
//! ## Displacement
//!
//! An insert takes the first empty slot of its home bucket, else of the next
//! bucket, and so on up to [`MAX_REACH`] buckets on (linear probing by whole
//! lines). The home bucket's meta keeps the *reach*, the farthest distance any
//! of its entries sits at; a removal of a displaced entry recomputes it from
//! the window. A lookup whose home bucket holds no match reads the following
//! `reach` buckets, and only them; at the
//! index's loads (at most four entries per seven slots, see
//! [`MAX_LOAD`]) about 2% of entries are displaced, almost all by one bucket.
//!
//! Entries never move within an array: a removal does not pull a displaced
//! entry home. A reader scans home first and neighbours after, so a move
//! toward home could slip past it; without moves, an entry present throughout
//! a lookup is always where the lookup looks.
//!
//! The distance in the tag makes slots self-describing: in bucket `b`, a slot
//! with distance `d` belongs to home `b - d`. A lookup for home `h` reading
//! bucket `h + d` wants tag `(signature, d)`, so entries of other homes are no
//! candidates, and a writer finds the entries of one home without hashing
//! them again.
//!
//! # Writers
//!
//! A writer locks its home bucket (the `LOCKED` bit of the meta word, taken
//! with a compare-exchange; readers ignore it) and is then the only writer of
//! that meta word. Slots are shared by up to `MAX_REACH + 1` homes, so an
//! empty slot is claimed with a compare-exchange from zero, and a non-empty
//! slot is written (cleared) only by whoever holds the lock of the home its
//! tag names. A writer holds one lock at a time,
//! except migration (below), which holds an old bucket's lock while it takes
//! locks in the next array: locks are always taken old array first, so no
//! two writers wait for each other in a cycle.
//!
//! An insert at home claims the slot, then sets its filter byte (the
//! insert's linearization point: a reader that sees the byte finds the slot
//! filled); an insert at a distance first extends the home's reach, then
//! claims the slot (its linearization point: a reader that sees the slot also
//! sees a reach that covers it). A removal at home clears the filter byte,
//! then the slot (after which another home may claim the slot, with no byte
//! of this home left to point at it); a removal at a distance clears the
//! slot, then lowers the reach.
//!
//! Values are `Arc`s, held as one strong count per entry. A removed entry's
//! count is dropped through the epoch, so whatever a reader loaded under a
//! guard stays valid until the guard is dropped.
//!
//! ## Length
//!
//! The entry count is striped over [`STRIPES`] cache-padded counters, picked
//! by hash bits 32 to 37, so writers of different buckets rarely share a
//! counter line. [`len`](ExactIndex::len) sums the stripes (exact when no
//! write runs at the same time). A write decides on a resize from its own
//! stripe times the number of stripes, and sums all stripes only when that
//! estimate crosses a threshold.
//!
//! # Resize
//!
//! Past [`MAX_LOAD`] entries per bucket on average (or under an eighth of it,
//! down to the starting size) the writer that noticed allocates a *next* array
//! of twice (half) the size, zeroed, outside every bucket lock; one writer
//! allocates, the others go on without waiting. From then on each write
//! migrates a chunk of homes: it locks an old home bucket, copies each of the
//! home's entries into the next array (rehashing it with
//! [`ExactEntry::exact_hash`]), then marks the old home `MOVED` in the same
//! store that unlocks it. Readers and writers that find their home `MOVED` go
//! on in the next array. The old slots are left as they are: a reader that
//! read the home's meta before the mark still finds every entry it could
//! have. When every home has moved, the index's pointer swings to the next
//! array and the old one is retired through the epoch, which hands it to the
//! index's graveyard once no reader holds it; the next write frees it, so
//! that a lookup never pays for unmapping an array (see `graveyard`). No
//! entry is allocated or freed by a migration. A lookup visits at most the old and the new
//! bucket, and never waits.
//!
//! An insert whose home has not moved yet migrates that home first and
//! inserts into the next array: the old array's slots still hold the stale
//! copies of moved homes, so filling it further could leave no room. An
//! insert that finds its window full while the index holds more than its
//! load allows (because the writer that should have allocated or migrated was
//! preempted, say) starts the resize itself if need be, migrates every home
//! left, waiting for the lock of a home a preempted writer holds, and tries
//! again. It hands its value back ([`InsertError::Full`]) only when the index
//! is within its load, that is when the window is full of entries under one
//! hash. Readers are never held up by any of this.
//!
//! If a home's entries do not all fit the next array's window (again only
//! many entries under one hash could cause it), the copies made are taken
//! back and the home stays in the old array, which is then never retired: the
//! index stays correct and stops resizing.
//!
//! # Cost
//!
//! A lookup reads the index's array pointer and header, the home bucket's
//! line and, for each candidate, the value's line (the predicate reads the
//! key there); in about 2% of hits also the next bucket's line. Simulated
//! with callgrind on one million entries whose value is one line holding a
//! 40-byte key (the ignored test in `measure.rs`): 103 instructions, 0.035
//! mispredicted branches and 1.95 last-level misses per hit, hashing
//! included; hashbrown's `get` with the same hasher and keys, 111, 0.004 and
//! 1.97. An insert or a removal takes one bucket lock and one relaxed
//! read-modify-write of a counter stripe.

use std::marker::PhantomData;

use crossbeam_epoch::{Atomic, Guard};
use crossbeam_utils::CachePadded;

use super::{prefetch_read, Retired};
use crate::sync::{Arc, AtomicU64, AtomicUsize, Ordering};

mod bucket;
mod graveyard;
mod resize;

use bucket::*;

/// A value the exact index can hold: it knows the hash it was inserted under.
///
/// The index keeps no keys and no hashes, so a resize asks each value for its
/// hash again. Linux's `struct sock_common` keeps `skc_hash` for the same
/// reason.
pub(crate) trait ExactEntry: Send + Sync + 'static {
    /// The `hash` the value was (or will be) inserted under. It must not change
    /// while the value is in the index; if it does, the value may be lost to
    /// lookups after a resize (never freed early).
    fn exact_hash(&self) -> u64;
}

/// Counter stripes of the entry count. One under loom: the estimate a
/// write decides a resize from is then the count itself, so a model of a
/// few connections resizes when it says, whatever their hashes' stripes.
#[cfg(not(pcbhash_loom))]
const STRIPES: usize = 64;
#[cfg(pcbhash_loom)]
const STRIPES: usize = 1;
static_assertions::const_assert!(STRIPES.is_power_of_two());

/// How many homes one write migrates while a resize is in progress.
#[cfg(not(pcbhash_loom))]
const MIGRATE_CHUNK: usize = 64;
#[cfg(pcbhash_loom)]
const MIGRATE_CHUNK: usize = 1;

/// Which counter stripe a hash counts on.
#[inline]
fn stripe(hash: u64) -> usize {
    // A mask, not `%`: `STRIPES` is a power of two (one under loom).
    (hash >> 32) as usize & (STRIPES - 1)
}

/// Why an insert handed its value back.
#[derive(Debug)]
pub(crate) enum InsertError<T> {
    /// The value's address does not fit a slot (at or above 2⁵²; no
    /// mainstream 64-bit platform hands out such addresses by default).
    Address(Arc<T>),
    /// Every slot within [`MAX_REACH`] buckets of the home is taken: only
    /// many entries under one hash can cause it.
    Full(Arc<T>),
}

impl<T> InsertError<T> {
    /// The value the insert handed back.
    pub(crate) fn into_value(self) -> Arc<T> {
        match self {
            Self::Address(value) | Self::Full(value) => value,
        }
    }
}

/// Figures about one index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ExactStats {
    pub(crate) entries: usize,
    pub(crate) buckets: usize,
    /// Entries of the current array that live past their home bucket.
    pub(crate) displaced: usize,
    /// The largest reach of any home of the current array.
    pub(crate) reach: usize,
    pub(crate) resizing: bool,
}

/// Where [`ExactIndex::find_home`] left off: the array whose home bucket
/// held no match (or had moved), which [`ExactIndex::find_past_home`]
/// takes up. Valid for the guard of the probe.
#[derive(Clone, Copy)]
pub(crate) struct PastHome<'g> {
    buckets: &'g Buckets,
}

/// A concurrent hash multimap from precomputed hashes to `Arc<T>`, matched by
/// a predicate on `T` (see the module docs).
///
/// Readers take no lock, do no read-modify-write and never wait. Writers lock
/// one home bucket. The index does not enforce uniqueness: callers that need
/// it check and insert under a lock of their own.
pub(crate) struct ExactIndex<T: ExactEntry> {
    array: Atomic<Buckets>,
    stripes: Box<[CachePadded<AtomicUsize>]>,
    min_buckets: usize,
    resizes: AtomicU64,
    /// Retired arrays, freed by the next write (see `graveyard`).
    graveyard: Arc<graveyard::Graveyard>,
    /// Deliberately broken synchronisation, for the loom models' own test.
    #[cfg(pcbhash_broken)]
    broken: crate::sync::Broken,
    /// The index owns one strong count of each value.
    _values: PhantomData<Arc<T>>,
}

impl<T: ExactEntry> ExactIndex<T> {
    /// An index sized for `capacity` entries before its first resize.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self::with_buckets(capacity.div_ceil(MAX_LOAD.max(1)))
    }

    /// An index that starts with `buckets` buckets (rounded up to a power of
    /// two, at least one, at most 2³²) and never shrinks below that.
    pub(crate) fn with_buckets(buckets: usize) -> Self {
        // Values must leave the low four bits of their address free.
        const {
            assert!(
                std::mem::align_of::<T>() >= 1 << ALIGN_BITS,
                "ExactIndex values must be 16-byte aligned"
            )
        };
        let len = buckets.clamp(1, 1 << 32).next_power_of_two();
        Self {
            array: Atomic::new(Buckets::new(len)),
            stripes: (0..STRIPES)
                .map(|_| CachePadded::new(AtomicUsize::new(0)))
                .collect(),
            min_buckets: len,
            resizes: AtomicU64::new(0),
            graveyard: Arc::new(graveyard::Graveyard::new()),
            #[cfg(pcbhash_broken)]
            broken: crate::sync::Broken::default(),
            _values: PhantomData,
        }
    }

    /// Turns on deliberately broken synchronisation (see `sync::Broken`).
    #[cfg(pcbhash_broken)]
    pub(crate) fn set_broken(&mut self, broken: crate::sync::Broken) {
        self.broken = broken;
    }

    /// Whether this index frees what it retires at once (a deliberately
    /// unsound build for the sanitizer's self-test; false otherwise).
    #[inline(always)]
    fn frees_at_once(&self) -> bool {
        #[cfg(pcbhash_broken)]
        return self.broken.free_at_once;
        #[cfg(not(pcbhash_broken))]
        return false;
    }

    /// The number of entries: the sum of the counter stripes, exact when no
    /// write runs at the same time. Reads [`STRIPES`] cache lines.
    pub(crate) fn len(&self) -> usize {
        let sum = self.stripes.iter().fold(0usize, |sum, stripe| {
            sum.wrapping_add(stripe.load(Ordering::Relaxed))
        });
        // A stripe read before an insert and another after its removal can
        // make a racing sum dip below zero.
        (sum as isize).max(0) as usize
    }

    /// How many resizes have completed.
    pub(crate) fn resizes(&self) -> u64 {
        self.resizes.load(Ordering::Relaxed)
    }

    /// A value inserted under `hash` that satisfies `pred`: of several, the
    /// first in probe order (the home bucket's slots in order, then the
    /// displaced entries by distance), which is not the order of insertion
    /// (an insert takes the first free slot).
    ///
    /// Lock-free and wait-free with respect to writers: loads only, no
    /// allocation. Reads the home bucket's line, the lines of displaced
    /// entries when the home holds no candidate and its meta says some
    /// spilled, and during a resize the home in the next array. `pred` sees
    /// only values whose 12-bit signature and home match `hash`; it must
    /// accept only values inserted under `hash`.
    #[inline(always)]
    pub(crate) fn find<'g>(
        &self,
        hash: u64,
        guard: &'g Guard,
        mut pred: impl FnMut(&T) -> bool,
    ) -> Option<&'g T> {
        match self.find_home(hash, guard, &mut pred) {
            Ok(value) => Some(value),
            Err(past) if self.past_home(hash, past) == 0 => None,
            Err(past) => self.find_past_home(hash, past, guard, pred),
        }
    }

    /// The first half of [`find`](Self::find), the common case: the home
    /// bucket of the current array. A value found there, or where the probe
    /// left off, for [`find_past_home`](Self::find_past_home) to finish.
    /// Branch-free apart from the candidate loop, and with no call, so that
    /// a caller that keeps the second half out of line makes no call on a
    /// hit.
    #[inline(always)]
    pub(crate) fn find_home<'g>(
        &self,
        hash: u64,
        guard: &'g Guard,
        pred: &mut impl FnMut(&T) -> bool,
    ) -> Result<&'g T, PastHome<'g>> {
        let sig = signature(hash);
        let array = self.array.load(Ordering::Acquire, guard);
        // SAFETY: epoch retirement (see `raw`): loaded under `guard`; the
        // index's pointer is never null.
        let buckets = unsafe { array.deref() };
        let bucket = buckets.bucket(buckets.home(hash));
        let meta = bucket.meta.load(Ordering::Acquire);
        let past = PastHome { buckets };
        if meta & MOVED != 0 {
            // The slots of a moved home are stale copies: the second half
            // follows the home to the next array.
            return Err(past);
        }
        let mask = home_candidates(meta, filter(sig));
        match Self::probe(bucket, mask, slot_of, tag(sig, 0), guard, pred) {
            Some(value) => Ok(value),
            None => Err(past),
        }
    }

    /// Zero when the home bucket where `past` left off says nothing lies
    /// beyond it (no entry of the home displaced, the home not moved): then
    /// [`find_past_home`](Self::find_past_home) would find nothing, and a
    /// caller folds this word with its own tests into one branch. One load
    /// from the home's line, which the probe read.
    #[inline(always)]
    pub(crate) fn past_home(&self, hash: u64, past: PastHome<'_>) -> u64 {
        let buckets = past.buckets;
        buckets
            .bucket(buckets.home(hash))
            .meta
            .load(Ordering::Acquire)
            & (MOVED | REACH_MASK)
    }

    /// The second half of [`find`](Self::find), after the home bucket of
    /// `past` held no match: the buckets its entries spilled into, or, if
    /// the home has moved, the whole probe in the next array.
    ///
    /// The home's meta word is read again here. That is as good as the
    /// first read: an entry displaced from this home keeps the home's reach
    /// at or above its distance for as long as it is there (an insert
    /// extends the reach before it claims the slot, a removal lowers it
    /// after it cleared the slot), and a home marked moved in between has
    /// every entry it had in the next array, which this then probes whole.
    /// [`past_home`](Self::past_home) tells, with one load, whether this
    /// has anything to read.
    #[inline]
    pub(crate) fn find_past_home<'g>(
        &self,
        hash: u64,
        past: PastHome<'g>,
        guard: &'g Guard,
        pred: impl FnMut(&T) -> bool,
    ) -> Option<&'g T> {
        let buckets = past.buckets;
        let home = buckets.home(hash);
        let meta = buckets.bucket(home).meta.load(Ordering::Acquire);
        if meta & MOVED != 0 {
            // SAFETY: epoch retirement and links outlive the unlink (see
            // `raw`): `buckets` was reached under `guard`, and `next` of a
            // moved home is never null.
            let next = unsafe { buckets.next.load(Ordering::Acquire, guard).deref() };
            return Self::find_in(next, hash, guard, pred);
        }
        // The home itself was probed already.
        if meta & REACH_MASK == 0 {
            return None;
        }
        Self::find_displaced(buckets, home, reach(meta), signature(hash), guard, pred)
    }

    /// The whole probe in `buckets` (a next array reached from a moved
    /// home), following the home further while it has moved there too.
    #[cold]
    #[inline(never)]
    fn find_in<'g>(
        mut buckets: &'g Buckets,
        hash: u64,
        guard: &'g Guard,
        mut pred: impl FnMut(&T) -> bool,
    ) -> Option<&'g T> {
        let sig = signature(hash);
        loop {
            let home = buckets.home(hash);
            let bucket = buckets.bucket(home);
            let meta = bucket.meta.load(Ordering::Acquire);
            if meta & MOVED != 0 {
                // SAFETY: epoch retirement and links outlive the unlink (see
                // `raw`): reached under `guard`; `next` of a moved home is
                // never null.
                buckets = unsafe { buckets.next.load(Ordering::Acquire, guard).deref() };
                continue;
            }
            let mask = home_candidates(meta, filter(sig));
            let value = Self::probe(bucket, mask, slot_of, tag(sig, 0), guard, &mut pred);
            if value.is_some() || meta & REACH_MASK == 0 {
                return value;
            }
            return Self::find_displaced(buckets, home, reach(meta), sig, guard, pred);
        }
    }

    /// The value of the first candidate slot of `bucket` that still has tag
    /// `want` and satisfies `pred`. `slot(mask)` names the slot of the lowest
    /// bit of `mask`, and is below `SLOTS` for every bit `mask` has.
    #[inline(always)]
    fn probe<'g>(
        bucket: &Bucket,
        mut mask: u64,
        slot: impl Fn(u64) -> usize,
        want: u64,
        _guard: &'g Guard,
        pred: &mut impl FnMut(&T) -> bool,
    ) -> Option<&'g T> {
        while mask != 0 {
            let i = slot(mask);
            mask &= mask - 1;
            // SAFETY: `i < SLOTS` by this function's contract.
            let Some(value) = (unsafe { bucket.candidate::<T>(i, want) }) else {
                continue;
            };
            // SAFETY: the bucket was reached under `_guard`, and the word was
            // in a slot after it was pinned; a value's strong count is dropped
            // only through the epoch after its slot was cleared (and an old
            // array's stale copies are cleared never, their values retired
            // from the next array the same way), so it outlives the guard.
            let value = unsafe { &*value };
            if pred(value) {
                return Some(value);
            }
        }
        None
    }

    /// The displaced part of [`find`](Self::find): buckets 1 to `reach` past
    /// `home`.
    #[inline(never)]
    fn find_displaced<'g>(
        buckets: &Buckets,
        home: usize,
        reach: usize,
        sig: u64,
        guard: &'g Guard,
        mut pred: impl FnMut(&T) -> bool,
    ) -> Option<&'g T> {
        (1..=reach).find_map(|distance| {
            let bucket = buckets.bucket(home + distance);
            let want = tag(sig, distance);
            let mask = u64::from(bucket.candidates(want));
            Self::probe(
                bucket,
                mask,
                |mask| mask.trailing_zeros() as usize,
                want,
                guard,
                &mut pred,
            )
        })
    }

    /// [`find`](Self::find), handing out a strong reference.
    #[inline]
    pub(crate) fn find_arc(
        &self,
        hash: u64,
        guard: &Guard,
        pred: impl FnMut(&T) -> bool,
    ) -> Option<Arc<T>> {
        let value: *const T = self.find(hash, guard, pred)?;
        // SAFETY: `value` came from `Arc::into_raw`, and the index's strong
        // count on it is dropped only through the epoch, after `guard` (see
        // `find`).
        Some(unsafe { super::clone_arc(value) })
    }

    /// Starts loading the home bucket of `hash` into the cache. A hint only:
    /// lock-free, changes nothing.
    #[inline]
    pub(crate) fn prefetch(&self, hash: u64, guard: &Guard) {
        let array = self.array.load(Ordering::Acquire, guard);
        // SAFETY: epoch retirement (see `raw`): loaded under `guard`; the
        // index's pointer is never null.
        let buckets = unsafe { array.deref() };
        prefetch_read(buckets.bucket(buckets.home(hash)));
    }

    /// The second stage of a prefetch, once the home bucket is (likely) in
    /// the cache: starts loading the value of each home slot whose filter
    /// byte and tag match `hash`, the line the predicate of a `find` reads.
    /// A hint only: lock-free, changes nothing, and a stale address is
    /// harmless (a prefetch never faults).
    #[inline]
    pub(crate) fn prefetch_values(&self, hash: u64, guard: &Guard) {
        let array = self.array.load(Ordering::Acquire, guard);
        // SAFETY: epoch retirement (see `raw`): loaded under `guard`; the
        // index's pointer is never null.
        let buckets = unsafe { array.deref() };
        let bucket = buckets.bucket(buckets.home(hash));
        let sig = signature(hash);
        let mut mask = home_candidates(bucket.meta.load(Ordering::Relaxed), filter(sig));
        while mask != 0 {
            let i = slot_of(mask);
            mask &= mask - 1;
            // SAFETY: `slot_of` names a slot below `SLOTS` for every bit of
            // a `home_candidates` mask.
            if let Some(value) = unsafe { bucket.candidate::<T>(i, tag(sig, 0)) } {
                prefetch_read(value);
            }
        }
    }

    /// Inserts `value` under `hash`. Takes the home bucket's lock; allocates
    /// nothing, except the next array when this insert starts a resize.
    ///
    /// # Errors
    ///
    /// Hands `value` back if its address does not fit a slot, or if the
    /// home's window is full (see [`InsertError`]); the index is unchanged.
    #[inline]
    pub(crate) fn insert(
        &self,
        hash: u64,
        value: Arc<T>,
        guard: &Guard,
    ) -> Result<(), InsertError<T>> {
        let Some(bits) = address_bits(Arc::as_ptr(&value)) else {
            return Err(InsertError::Address(value));
        };
        loop {
            let (buckets, home, meta) = self.lock_home_for_insert(hash, guard);
            if let Some(meta) = buckets.place(home, meta, signature(hash), bits) {
                buckets.bucket(home).unlock(meta);
                break;
            }
            buckets.bucket(home).unlock(meta);
            if !self.make_room(guard) {
                return Err(InsertError::Full(value));
            }
        }
        // The slot holds the index's strong count now.
        let _ = Arc::into_raw(value);
        let count = self.stripes[stripe(hash)].fetch_add(1, Ordering::Relaxed) + 1;
        self.after_write(count, guard);
        Ok(())
    }

    /// Removes the first entry under `hash` whose value satisfies `pred`.
    /// Takes the home bucket's lock. Returns the index's count of the
    /// removed value, for the caller to release through the epoch, or
    /// `None` if no entry matched.
    #[inline]
    pub(crate) fn remove(
        &self,
        hash: u64,
        guard: &Guard,
        pred: impl FnMut(&T) -> bool,
    ) -> Option<Retired<T>> {
        let (buckets, home, meta) = self.lock_home(hash, guard);
        let Some((meta, word)) = buckets.take(home, meta, signature(hash), pred) else {
            buckets.bucket(home).unlock(meta);
            return None;
        };
        buckets.bucket(home).unlock(meta);
        let value = address::<T>(word);
        // SAFETY: the slot was cleared, so the index no longer holds `value`,
        // and only this call took it; the count is the index's, and the
        // caller releases it through the epoch (`Retired`).
        let count = unsafe { Arc::from_raw(value) };
        let retired = if self.frees_at_once() {
            // Deliberately unsound, only in `--cfg pcbhash_broken` builds,
            // switched on per table for the sanitizer's self-test: the count
            // goes at once.
            drop(count);
            Retired::empty()
        } else {
            Retired::new(count)
        };
        let count = self.stripes[stripe(hash)]
            .fetch_sub(1, Ordering::Relaxed)
            .wrapping_sub(1);
        self.after_write(count, guard);
        Some(retired)
    }

    /// For the tests: [`remove`](Self::remove), with the count released
    /// through the epoch. Whether an entry was removed.
    #[cfg(test)]
    fn remove_deferred(&self, hash: u64, guard: &Guard, pred: impl FnMut(&T) -> bool) -> bool {
        self.remove(hash, guard, pred)
            .map(|retired| retired.defer(guard))
            .is_some()
    }

    /// Figures about the index (walks the current array; exact when no write
    /// runs at the same time).
    pub(crate) fn stats(&self, guard: &Guard) -> ExactStats {
        let array = self.array.load(Ordering::Acquire, guard);
        // SAFETY: epoch retirement (see `raw`): loaded under `guard`; the
        // index's pointer is never null.
        let buckets = unsafe { array.deref() };
        let mut stats = ExactStats {
            entries: self.len(),
            buckets: buckets.buckets.len(),
            resizing: !buckets.next.load(Ordering::Acquire, guard).is_null(),
            ..ExactStats::default()
        };
        for home in 0..buckets.buckets.len() {
            let meta = buckets.bucket(home).meta.load(Ordering::Acquire);
            if meta & MOVED == 0 {
                buckets.entries_of(home, meta, |distance, _, _| {
                    stats.displaced += usize::from(distance > 0);
                });
                stats.reach = stats.reach.max(reach(meta));
            }
        }
        stats
    }

    /// Locks the home bucket of `hash` in the array that owns it.
    fn lock_home<'g>(&self, hash: u64, guard: &'g Guard) -> (&'g Buckets, usize, u64) {
        let mut array = self.array.load(Ordering::Acquire, guard);
        loop {
            // SAFETY: epoch retirement and links outlive the unlink (see
            // `raw`): loaded under `guard`, from the index (never null) or
            // from a non-null `next`.
            let buckets = unsafe { array.deref() };
            let home = buckets.home(hash);
            match buckets.bucket(home).lock() {
                Some(meta) => return (buckets, home, meta),
                None => array = buckets.next.load(Ordering::Acquire, guard),
            }
        }
    }

    /// Locks the home bucket of `hash` for an insert. While a resize is in
    /// progress, the home is migrated first (unless it does not fit), so that
    /// inserts fill the next array and not the old one, whose slots still
    /// hold the stale copies of moved homes.
    fn lock_home_for_insert<'g>(&self, hash: u64, guard: &'g Guard) -> (&'g Buckets, usize, u64) {
        let mut array = self.array.load(Ordering::Acquire, guard);
        loop {
            // SAFETY: epoch retirement and links outlive the unlink (see
            // `raw`): loaded under `guard`, from the index (never null) or
            // from a non-null `next`.
            let buckets = unsafe { array.deref() };
            let home = buckets.home(hash);
            let next = buckets.next.load(Ordering::Acquire, guard);
            match buckets.bucket(home).lock() {
                // Reloaded: `next` may have been read before the resize began.
                None => array = buckets.next.load(Ordering::Acquire, guard),
                Some(meta) => {
                    // SAFETY: links outlive the unlink (see `raw`): a `next`
                    // loaded under `guard` is retired only after its array.
                    let Some(new) = (unsafe { next.as_ref() }) else {
                        return (buckets, home, meta);
                    };
                    if !self.migrate_locked(buckets, home, meta, new) {
                        // The home stays here; lock it again.
                        match buckets.bucket(home).lock() {
                            Some(meta) => return (buckets, home, meta),
                            None => continue,
                        }
                    }
                    self.count_migrated(array, next, 1, guard);
                    array = next;
                }
            }
        }
    }
}

impl<T: ExactEntry> Drop for ExactIndex<T> {
    fn drop(&mut self) {
        let guard = crossbeam_epoch::pin();
        let mut current = self.array.load(Ordering::Relaxed, &guard);
        // SAFETY: `&mut self` means no writer runs; a reader may still hold
        // references loaded under its own guard, so everything is deferred.
        while let Some(buckets) = unsafe { current.as_ref() } {
            for home in 0..buckets.buckets.len() {
                let meta = buckets.bucket(home).meta.load(Ordering::Relaxed);
                if meta & MOVED != 0 {
                    continue;
                }
                buckets.entries_of(home, meta, |_, _, word| {
                    let value = address::<T>(word);
                    // SAFETY: each live entry belongs to exactly one unmoved
                    // home of one array, and its count is the index's.
                    unsafe { guard.defer_unchecked(move || drop(Arc::from_raw(value))) };
                });
            }
            let next = buckets.next.load(Ordering::Relaxed, &guard);
            // SAFETY: the array is unreachable once the index is gone.
            unsafe { guard.defer_destroy(current) };
            current = next;
        }
    }
}

impl<T: ExactEntry> std::fmt::Debug for ExactIndex<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExactIndex")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

// The value type of the unit tests and the loom models.
#[cfg(test)]
mod item;

#[cfg(all(test, not(pcbhash_loom)))]
mod tests;

#[cfg(all(test, pcbhash_loom))]
mod loom_tests;

// A callgrind harness (an ignored test): see the file.
#[cfg(all(test, not(pcbhash_loom)))]
mod measure;
