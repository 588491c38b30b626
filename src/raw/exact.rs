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
//! The index stores no keys: the caller's predicate on `&T` decides what
//! matches, as Linux's established hash (`__inet_lookup_established` compares
//! the socket's own fields) and DPDK's `rte_hash` with the key in the entry
//! do. The value (the PCB) holds its key inline, and the PCB record is the
//! second cache line a lookup touches; the bucket is the first.
//!
//! ## Why this shape
//!
//! Compared with the index it is meant to replace ([`RawMap`](super::RawMap):
//! one inline entry per bucket and an overflow chain), the aim is a probe
//! without data-dependent branches. A lookup loads the seven slots of the home
//! bucket, compares their tags with the one it wants and builds a bit mask of
//! candidates without branching; with 12-bit signatures a false candidate
//! turns up in about one lookup in 600, so the only branch whose direction
//! depends on the data ("did the home bucket hold it?") nearly always goes the
//! same way. hashbrown's SSE2 group probe works the same way over control
//! bytes, but keeps keys inline; DPDK's cuckoo hash compares 16-bit signatures
//! of a bucket at once too, but its second (alternative) bucket is a random
//! line, which a miss must always read. Here a miss reads one line unless the
//! home bucket's meta says entries spilled over.
//!
//! ## Displacement
//!
//! An insert takes the first empty slot of its home bucket, else of the next
//! bucket, and so on up to [`MAX_REACH`] buckets on (linear probing by whole
//! lines). The home bucket's meta counts its displaced entries and keeps the
//! *reach*, the farthest distance any of them may sit at (an upper bound: it
//! drops to zero only when the count does). A lookup whose home bucket holds
//! no candidate reads the following `reach` buckets, and only them; at the
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
//! with a compare-exchange; readers ignore it). Slots are shared by up to
//! `MAX_REACH + 1` homes, so an empty slot is claimed with a compare-exchange
//! from zero, and a non-empty slot is written (cleared) only by whoever holds
//! the lock of the home its tag names. A writer holds one lock at a time,
//! except migration (below), which holds an old bucket's lock while it takes
//! locks in the next array: locks are always taken old array first, so no
//! two writers wait for each other in a cycle.
//!
//! An insert at a distance first moves the home's count and reach on, then
//! claims the slot; the claim is the insert's linearization point, and a
//! reader that sees the slot also sees a reach that covers it. A removal
//! clears the slot, then lowers the count.
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
//! array and the old one is retired through the epoch; no entry is allocated
//! or freed by a migration. A lookup visits at most the old and the new
//! bucket, and never waits.
//!
//! If a home's entries do not all fit the next array's window (only many
//! entries under one hash could cause it), the copies made are taken back and
//! the home stays in the old array, which is then never retired: the index
//! stays correct and stops resizing.

use std::marker::PhantomData;

use crossbeam_epoch::{Atomic, Guard, Owned, Shared};
use crossbeam_utils::CachePadded;

use super::map::prefetch_read;
use crate::sync::{spin_loop, Arc, AtomicU64, AtomicUsize, Ordering};

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

/// Slots per bucket: seven, beside the meta word. Two under loom, so that the
/// models fill buckets and displace entries in a few steps.
#[cfg(not(pcbhash_loom))]
const SLOTS: usize = 7;
#[cfg(pcbhash_loom)]
const SLOTS: usize = 2;

/// The average number of entries per bucket above which the index grows:
/// four per seven slots (57% of the slots), one per two slots under loom.
pub(crate) const MAX_LOAD: usize = SLOTS * 4 / 7;

/// The farthest an entry sits from its home bucket.
pub(crate) const MAX_REACH: usize = 14;

/// Counter stripes of the entry count.
#[cfg(not(pcbhash_loom))]
const STRIPES: usize = 64;
#[cfg(pcbhash_loom)]
const STRIPES: usize = 2;

/// How many homes one write migrates while a resize is in progress.
#[cfg(not(pcbhash_loom))]
const MIGRATE_CHUNK: usize = 64;
#[cfg(pcbhash_loom)]
const MIGRATE_CHUNK: usize = 1;

/// Meta bit: a writer owns the bucket (as a home) and may change the home's
/// entries and counts.
const LOCKED: u64 = 1 << 0;
/// Meta bit: the home's entries are in the next array. Permanent.
const MOVED: u64 = 1 << 1;
/// Meta field: the reach (bits 8 to 11).
const REACH_SHIFT: u32 = 8;
const REACH_MASK: u64 = 0xF << REACH_SHIFT;
/// Meta field: how many of the home's entries are displaced (bits 16 to 31).
const DISPLACED_SHIFT: u32 = 16;
const DISPLACED_MASK: u64 = 0xFFFF << DISPLACED_SHIFT;

/// Slot layout (see the module docs).
const ADDRESS_BITS: u32 = 48;
const ADDRESS_MASK: u64 = (1 << ADDRESS_BITS) - 1;
const ALIGN_BITS: u32 = 4;

/// The 12-bit signature of a hash.
#[inline(always)]
fn signature(hash: u64) -> u64 {
    hash >> 52
}

/// The tag (top 16 bits) of an entry with signature `sig` at `distance` from
/// home. Never zero.
#[inline(always)]
fn tag(sig: u64, distance: usize) -> u64 {
    sig << 4 | (distance as u64 + 1)
}

/// The value address a slot word holds.
#[inline(always)]
fn address<T>(word: u64) -> *const T {
    ((word & ADDRESS_MASK) << ALIGN_BITS) as usize as *const T
}

/// The address bits of `value` in a slot, or `None` if it does not fit.
#[inline]
fn address_bits<T>(value: *const T) -> Option<u64> {
    let addr = value as usize as u64;
    debug_assert_eq!(
        addr & ((1 << ALIGN_BITS) - 1),
        0,
        "values are 16-byte aligned"
    );
    let bits = addr >> ALIGN_BITS;
    (bits & !ADDRESS_MASK == 0 && bits != 0).then_some(bits)
}

#[inline(always)]
fn reach(meta: u64) -> usize {
    ((meta & REACH_MASK) >> REACH_SHIFT) as usize
}

#[inline(always)]
fn displaced(meta: u64) -> u64 {
    (meta & DISPLACED_MASK) >> DISPLACED_SHIFT
}

/// `meta` with one more displaced entry, at `distance`.
#[inline]
fn with_displaced(meta: u64, distance: usize) -> u64 {
    let reach = reach(meta).max(distance) as u64;
    (meta & !(REACH_MASK | DISPLACED_MASK))
        | reach << REACH_SHIFT
        | (displaced(meta) + 1) << DISPLACED_SHIFT
}

/// `meta` with one displaced entry fewer; the reach drops with the last one.
#[inline]
fn without_displaced(meta: u64) -> u64 {
    let count = displaced(meta) - 1;
    let rest = (meta & !DISPLACED_MASK) | count << DISPLACED_SHIFT;
    if count == 0 {
        rest & !REACH_MASK
    } else {
        rest
    }
}

/// Which counter stripe a hash counts on.
#[inline]
fn stripe(hash: u64) -> usize {
    (hash >> 32) as usize % STRIPES
}

/// One bucket: one cache line.
#[repr(C, align(64))]
struct Bucket {
    meta: AtomicU64,
    slots: [AtomicU64; SLOTS],
}

#[cfg(not(pcbhash_loom))]
static_assertions::const_assert_eq!(std::mem::size_of::<Bucket>(), 64);

impl Bucket {
    /// The mask of slots whose tag is `want`: bit `i` for slot `i`. No branch
    /// on the slots' contents.
    #[inline(always)]
    fn candidates(&self, want: u64) -> u32 {
        let high = want << ADDRESS_BITS;
        let mut mask = 0;
        for slot in self.slots.iter().rev() {
            // A slot matches when its top 16 bits are `want`, that is when
            // nothing above the address bits survives the exclusive or.
            mask = mask << 1 | u32::from(slot.load(Ordering::Relaxed) ^ high <= ADDRESS_MASK);
        }
        mask
    }

    /// The value of candidate slot `i`, if the slot still has tag `want`.
    ///
    /// # Safety
    ///
    /// `i < SLOTS`.
    #[inline(always)]
    unsafe fn candidate<T>(&self, i: usize, want: u64) -> Option<*const T> {
        // SAFETY: `i < SLOTS` by the caller's contract.
        let slot = unsafe { self.slots.get_unchecked(i) };
        // Acquire: pairs with the claiming compare-exchange, so the value
        // behind the address is seen initialised. Loaded again rather than
        // kept from the scan: the slot may have been emptied or reused since,
        // which the tag check catches (a reused slot with the same tag holds
        // an entry of the same home and signature: the predicate decides).
        let word = slot.load(Ordering::Acquire);
        (word >> ADDRESS_BITS == want).then(|| address::<T>(word))
    }

    /// Releases the lock of a bucket whose meta word is `meta`.
    #[inline]
    fn unlock(&self, meta: u64) {
        self.meta.store(meta & !LOCKED, Ordering::Release);
    }

    /// Locks the bucket as a home, unless its entries moved to the next array.
    fn lock(&self) -> Option<u64> {
        loop {
            let meta = self.meta.load(Ordering::Relaxed);
            if meta & MOVED != 0 {
                return None;
            }
            if meta & LOCKED == 0
                && self
                    .meta
                    .compare_exchange_weak(
                        meta,
                        meta | LOCKED,
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_ok()
            {
                return Some(meta | LOCKED);
            }
            spin_loop();
        }
    }
}

/// The counters of a resize, on their own line: readers never touch them.
#[derive(Default)]
struct Resize {
    /// Set by the one writer that allocates the next array.
    allocating: AtomicUsize,
    /// The next home a migrating writer may claim.
    claimed: AtomicUsize,
    /// How many homes have moved.
    migrated: AtomicUsize,
}

/// One bucket array.
///
/// This type maintains the invariant that `next` is non-null whenever any
/// home is `MOVED`, and that a `MOVED` home owns no entries (its slots, left
/// in place, are stale copies).
struct Buckets {
    buckets: Box<[Bucket]>,
    mask: usize,
    next: Atomic<Buckets>,
    resize: CachePadded<Resize>,
}

impl Buckets {
    /// An empty array of `len` buckets (a power of two).
    fn new(len: usize) -> Self {
        debug_assert!(len.is_power_of_two() && len <= 1 << 32);
        Self {
            buckets: zeroed(len),
            mask: len - 1,
            next: Atomic::null(),
            resize: CachePadded::new(Resize::default()),
        }
    }

    /// Bucket `index`, modulo the array's length.
    #[inline(always)]
    fn bucket(&self, index: usize) -> &Bucket {
        // SAFETY: `mask` is the length minus one and the length a power of two,
        // so the masked index is in bounds.
        unsafe { self.buckets.get_unchecked(index & self.mask) }
    }

    #[inline(always)]
    fn home(&self, hash: u64) -> usize {
        hash as usize & self.mask
    }

    /// Calls `f(bucket index, slot, word)` for each entry of home `home`, whose
    /// meta word is `meta`. The caller holds the home's lock, or has `&mut`
    /// access to the index.
    fn entries_of(&self, home: usize, meta: u64, mut f: impl FnMut(usize, &AtomicU64, u64)) {
        for distance in 0..=reach(meta) {
            let index = (home + distance) & self.mask;
            let want = tag(0, distance);
            for slot in self.bucket(index).slots.iter() {
                let word = slot.load(Ordering::Acquire);
                // The distance field alone: the signature does not matter here.
                if word != 0 && (word >> ADDRESS_BITS) & 0xF == want {
                    f(index, slot, word);
                }
            }
        }
    }

    /// Puts the slot word `bits` (an address) with signature `sig` into the
    /// window of `home`, which the caller has locked (`meta` is its meta
    /// word). Returns the home's new meta word (still locked), or `None` if
    /// the window is full (the meta word is then as it was).
    fn place(&self, home: usize, meta: u64, sig: u64, bits: u64) -> Option<u64> {
        let home_bucket = self.bucket(home);
        let mut current = meta;
        for distance in 0..=MAX_REACH {
            let word = tag(sig, distance) << ADDRESS_BITS | bits;
            for slot in self.bucket(home + distance).slots.iter() {
                if slot.load(Ordering::Relaxed) != 0 {
                    continue;
                }
                if distance > 0 {
                    // Reserve before claiming: a reader that sees the slot sees
                    // a reach that covers it.
                    let reserved = with_displaced(meta, distance);
                    if reserved != current {
                        home_bucket.meta.store(reserved, Ordering::Release);
                        current = reserved;
                    }
                }
                // Release: publishes the value's contents with its address.
                if slot
                    .compare_exchange(0, word, Ordering::Release, Ordering::Relaxed)
                    .is_ok()
                {
                    return Some(current);
                }
            }
        }
        if current != meta {
            home_bucket.meta.store(meta, Ordering::Release);
        }
        None
    }

    /// Clears the first entry of `home` (locked by the caller, `meta` its meta
    /// word) with signature `sig` whose value satisfies `pred`. Returns the
    /// home's new meta word and the entry's word.
    fn take<T>(
        &self,
        home: usize,
        meta: u64,
        sig: u64,
        mut pred: impl FnMut(&T) -> bool,
    ) -> Option<(u64, u64)> {
        for distance in 0..=reach(meta) {
            let want = tag(sig, distance);
            for slot in self.bucket(home + distance).slots.iter() {
                let word = slot.load(Ordering::Acquire);
                if word >> ADDRESS_BITS != want {
                    continue;
                }
                // SAFETY: the slot carries this home's tag, and only the
                // home's lock holder (us) clears such a slot, so it holds a
                // live entry whose strong count is the index's.
                if pred(unsafe { &*address::<T>(word) }) {
                    slot.store(0, Ordering::Release);
                    let meta = if distance > 0 {
                        let lowered = without_displaced(meta);
                        self.bucket(home).meta.store(lowered, Ordering::Release);
                        lowered
                    } else {
                        meta
                    };
                    return Some((meta, word));
                }
            }
        }
        None
    }
}

/// A zeroed array of `len` buckets: all homes unlocked and unmoved, all slots
/// empty.
#[cfg(not(pcbhash_loom))]
fn zeroed(len: usize) -> Box<[Bucket]> {
    let layout = std::alloc::Layout::array::<Bucket>(len).expect("at most 2^32 buckets");
    // SAFETY: the layout has a non-zero size (`len >= 1`, 64-byte buckets).
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<Bucket>();
    if ptr.is_null() {
        std::alloc::handle_alloc_error(layout);
    }
    // SAFETY: the allocation has the layout a `Box<[Bucket]>` of `len` frees
    // with, and all-zero bytes are a valid `Bucket` (atomics holding zero).
    unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)) }
}

/// Under loom atomics are not plain words: build them.
#[cfg(pcbhash_loom)]
fn zeroed(len: usize) -> Box<[Bucket]> {
    (0..len)
        .map(|_| Bucket {
            meta: AtomicU64::new(0),
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
        })
        .collect()
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
            _values: PhantomData,
        }
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

    /// The first value inserted under `hash` that satisfies `pred`.
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
        let sig = signature(hash);
        let mut array = self.array.load(Ordering::Acquire, guard);
        loop {
            // SAFETY: arrays are retired with `defer_destroy` only after the
            // index stopped pointing at them, and a `next` array outlives its
            // predecessor; `guard` keeps every array loaded under it alive. The
            // index's pointer is never null, nor is `next` of a moved home.
            let buckets = unsafe { array.deref() };
            let home = buckets.home(hash);
            let bucket = buckets.bucket(home);
            let meta = bucket.meta.load(Ordering::Acquire);
            if meta & MOVED != 0 {
                array = buckets.next.load(Ordering::Acquire, guard);
                continue;
            }
            // The home bucket, then (rarely) the buckets its entries spilled
            // into, out of line.
            if let Some(value) = Self::probe(bucket, tag(sig, 0), guard, &mut pred) {
                return Some(value);
            }
            if meta & REACH_MASK == 0 {
                return None;
            }
            return Self::find_displaced(buckets, home, reach(meta), sig, guard, pred);
        }
    }

    /// The value of the first slot of `bucket` with tag `want` that satisfies
    /// `pred`.
    #[inline(always)]
    fn probe<'g>(
        bucket: &Bucket,
        want: u64,
        _guard: &'g Guard,
        pred: &mut impl FnMut(&T) -> bool,
    ) -> Option<&'g T> {
        let mut mask = bucket.candidates(want);
        while mask != 0 {
            let i = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            // SAFETY: `candidates` sets only the low `SLOTS` bits.
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
            Self::probe(
                buckets.bucket(home + distance),
                tag(sig, distance),
                guard,
                &mut pred,
            )
        })
    }

    /// [`find`](Self::find), handing out a strong reference.
    pub(crate) fn find_arc(
        &self,
        hash: u64,
        guard: &Guard,
        pred: impl FnMut(&T) -> bool,
    ) -> Option<Arc<T>> {
        let value: *const T = self.find(hash, guard, pred)?;
        // SAFETY: `value` came from `Arc::into_raw`, and the index's strong
        // count on it is dropped only through the epoch, after `guard` (see
        // `find`): the count is at least one here.
        unsafe {
            Arc::increment_strong_count(value);
            Some(Arc::from_raw(value))
        }
    }

    /// Starts loading the home bucket of `hash` into the cache. A hint only:
    /// lock-free, changes nothing.
    #[inline]
    pub(crate) fn prefetch(&self, hash: u64, guard: &Guard) {
        let array = self.array.load(Ordering::Acquire, guard);
        // SAFETY: see `find`.
        let buckets = unsafe { array.deref() };
        prefetch_read(buckets.bucket(buckets.home(hash)) as *const Bucket as *const u8);
    }

    /// Inserts `value` under `hash`. Takes the home bucket's lock; allocates
    /// nothing, except the next array when this insert starts a resize.
    ///
    /// # Errors
    ///
    /// Hands `value` back if its address does not fit a slot, or if the
    /// home's window is full (see [`InsertError`]); the index is unchanged.
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

    /// Removes the first entry under `hash` whose value satisfies `pred`, and
    /// drops its strong count through the epoch. Takes the home bucket's lock.
    /// Returns whether an entry was removed.
    pub(crate) fn remove(&self, hash: u64, guard: &Guard, pred: impl FnMut(&T) -> bool) -> bool {
        let (buckets, home, meta) = self.lock_home(hash, guard);
        let Some((meta, word)) = buckets.take(home, meta, signature(hash), pred) else {
            buckets.bucket(home).unlock(meta);
            return false;
        };
        buckets.bucket(home).unlock(meta);
        let value = address::<T>(word);
        // SAFETY: the slot was cleared, so the index no longer holds `value`,
        // and only this call took it; the count is the index's.
        unsafe { guard.defer_unchecked(move || drop(Arc::from_raw(value))) };
        let count = self.stripes[stripe(hash)]
            .fetch_sub(1, Ordering::Relaxed)
            .wrapping_sub(1);
        self.after_write(count, guard);
        true
    }

    /// Figures about the index (walks the current array).
    pub(crate) fn stats(&self, guard: &Guard) -> ExactStats {
        let array = self.array.load(Ordering::Acquire, guard);
        // SAFETY: see `find`.
        let buckets = unsafe { array.deref() };
        let mut stats = ExactStats {
            entries: self.len(),
            buckets: buckets.buckets.len(),
            resizing: !buckets.next.load(Ordering::Acquire, guard).is_null(),
            ..ExactStats::default()
        };
        for bucket in buckets.buckets.iter() {
            let meta = bucket.meta.load(Ordering::Acquire);
            if meta & MOVED == 0 {
                stats.displaced += displaced(meta) as usize;
                stats.reach = stats.reach.max(reach(meta));
            }
        }
        stats
    }

    /// Locks the home bucket of `hash` in the array that owns it.
    fn lock_home<'g>(&self, hash: u64, guard: &'g Guard) -> (&'g Buckets, usize, u64) {
        let mut array = self.array.load(Ordering::Acquire, guard);
        loop {
            // SAFETY: see `find`.
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
            // SAFETY: see `find`.
            let buckets = unsafe { array.deref() };
            let home = buckets.home(hash);
            let next = buckets.next.load(Ordering::Acquire, guard);
            match buckets.bucket(home).lock() {
                // Reloaded: `next` may have been read before the resize began.
                None => array = buckets.next.load(Ordering::Acquire, guard),
                Some(meta) => {
                    // SAFETY: a non-null `next` is valid under `guard` (see `find`).
                    let Some(new) = (unsafe { next.as_ref() }) else {
                        return (buckets, home, meta);
                    };
                    if !Self::migrate_locked(buckets, home, meta, new) {
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

    /// Starts a resize when the load calls for one, and helps a running one.
    /// `count` is this write's stripe after the write.
    fn after_write(&self, count: usize, guard: &Guard) {
        let array = self.array.load(Ordering::Acquire, guard);
        // SAFETY: see `find`.
        let buckets = unsafe { array.deref() };
        let mut next = buckets.next.load(Ordering::Acquire, guard);
        if next.is_null() {
            let size = buckets.buckets.len();
            let grow_at = size * MAX_LOAD.max(1);
            let shrink_at = grow_at / 8;
            let estimate = (count as isize).max(0) as usize * STRIPES;
            let wanted = if estimate > grow_at && size < 1 << 32 && self.len() > grow_at {
                size * 2
            } else if estimate < shrink_at && size > self.min_buckets && self.len() < shrink_at {
                size / 2
            } else {
                return;
            };
            if buckets
                .resize
                .allocating
                .compare_exchange(0, 1, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
            {
                // Another writer is allocating: go on without waiting for it.
                return;
            }
            next = Self::install_next(buckets, wanted, guard);
        }
        self.migrate_chunk(array, next, guard);
    }

    /// Allocates a zeroed array of `len` buckets, holding no lock, and makes
    /// it the next array of `buckets` unless another writer installed one
    /// first. Returns the next array.
    fn install_next<'g>(buckets: &Buckets, len: usize, guard: &'g Guard) -> Shared<'g, Buckets> {
        match buckets.next.compare_exchange(
            Shared::null(),
            Owned::new(Buckets::new(len)),
            Ordering::AcqRel,
            Ordering::Acquire,
            guard,
        ) {
            Ok(installed) => installed,
            // Ours is freed here: it was never shared.
            Err(lost) => lost.current,
        }
    }

    /// Called by an insert whose window is full: if the index holds more than
    /// its load allows, starts a resize (even if another writer, perhaps
    /// preempted, claimed the allocation) and migrates every home of the
    /// current array that is not moved yet, waiting for the lock of a home a
    /// preempted writer holds. Returns whether the insert should try again:
    /// false when the index is not overloaded (the window is full of entries
    /// under one hash) or a home does not fit the next array.
    #[cold]
    fn make_room(&self, guard: &Guard) -> bool {
        let array = self.array.load(Ordering::Acquire, guard);
        // SAFETY: see `find`.
        let old = unsafe { array.deref() };
        let mut next = old.next.load(Ordering::Acquire, guard);
        if next.is_null() {
            let size = old.buckets.len();
            if self.len() <= size * MAX_LOAD.max(1) || size >= 1 << 32 {
                return false;
            }
            next = Self::install_next(old, size * 2, guard);
        }
        // SAFETY: non-null, loaded under `guard` (see `find`).
        let new = unsafe { next.deref() };
        let mut all_fit = true;
        for home in 0..old.buckets.len() {
            if let Some(meta) = old.bucket(home).lock() {
                if Self::migrate_locked(old, home, meta, new) {
                    self.count_migrated(array, next, 1, guard);
                } else {
                    all_fit = false;
                }
            }
        }
        all_fit
    }

    /// Migrates up to [`MIGRATE_CHUNK`] homes of `array` into `next`.
    fn migrate_chunk<'g>(
        &self,
        array: Shared<'g, Buckets>,
        next: Shared<'g, Buckets>,
        guard: &'g Guard,
    ) {
        // SAFETY: both were loaded under `guard` (see `find`); `next` is
        // non-null here.
        let (old, new) = unsafe { (array.deref(), next.deref()) };
        let total = old.buckets.len();
        let start = old
            .resize
            .claimed
            .fetch_add(MIGRATE_CHUNK, Ordering::Relaxed);
        if start >= total {
            return;
        }
        let end = (start + MIGRATE_CHUNK).min(total);
        let moved = (start..end)
            .filter(|&home| {
                // A home an insert migrated already is counted by that insert.
                old.bucket(home)
                    .lock()
                    .is_some_and(|meta| Self::migrate_locked(old, home, meta, new))
            })
            .count();
        self.count_migrated(array, next, moved, guard);
    }

    /// Adds `moved` homes to the migration of `array` into `next`, and
    /// completes the resize if they were the last.
    fn count_migrated<'g>(
        &self,
        array: Shared<'g, Buckets>,
        next: Shared<'g, Buckets>,
        moved: usize,
        guard: &'g Guard,
    ) {
        // SAFETY: see `migrate_chunk`.
        let old = unsafe { array.deref() };
        let done = old.resize.migrated.fetch_add(moved, Ordering::AcqRel) + moved;
        if moved > 0
            && done == old.buckets.len()
            && self
                .array
                .compare_exchange(array, next, Ordering::AcqRel, Ordering::Acquire, guard)
                .is_ok()
        {
            self.resizes.fetch_add(1, Ordering::Relaxed);
            // SAFETY: the index no longer points at the old array and every
            // home in it is `MOVED` (it owns no entries); readers that still
            // hold it are protected by the deferral. Dropping `Buckets` frees
            // the bucket array alone: no value, never the `next` array.
            unsafe { guard.defer_destroy(array) };
        }
    }

    /// Copies the entries of `home` in `old`, which the caller has locked
    /// (`meta` is its meta word), into `new`, then marks the home `MOVED` in
    /// the store that unlocks it. The values change owner without a count
    /// changing. Returns false if an entry did not fit `new`: the copies are
    /// then taken back, and the home stays in `old`, unlocked.
    fn migrate_locked(old: &Buckets, home: usize, meta: u64, new: &Buckets) -> bool {
        let bucket = old.bucket(home);
        let mut copied = 0;
        let mut fits = true;
        old.entries_of(home, meta, |_, _, word| {
            if fits {
                fits = Self::copy_entry(new, word);
                copied += usize::from(fits);
            }
        });
        if !fits {
            let mut undo = copied;
            old.entries_of(home, meta, |_, _, word| {
                if undo > 0 {
                    undo -= 1;
                    Self::uncopy_entry(new, word);
                }
            });
            bucket.unlock(meta);
            return false;
        }
        // Every entry is in `new`: redirect readers and writers, and unlock.
        bucket
            .meta
            .store((meta & !LOCKED) | MOVED, Ordering::Release);
        true
    }

    /// Puts the entry of slot word `word` into `new`, under its own hash.
    fn copy_entry(new: &Buckets, word: u64) -> bool {
        // SAFETY: the caller holds the lock of the entry's old home, so the
        // entry is live and its count is the index's.
        let hash = unsafe { &*address::<T>(word) }.exact_hash();
        let home = new.home(hash);
        // `new` is not resizing while its predecessor is: its homes never move.
        let Some(meta) = new.bucket(home).lock() else {
            return false;
        };
        let placed = new.place(home, meta, signature(hash), word & ADDRESS_MASK);
        new.bucket(home).unlock(placed.unwrap_or(meta));
        placed.is_some()
    }

    /// Takes back a copy [`copy_entry`](Self::copy_entry) made.
    fn uncopy_entry(new: &Buckets, word: u64) {
        // SAFETY: as in `copy_entry`.
        let hash = unsafe { &*address::<T>(word) }.exact_hash();
        let home = new.home(hash);
        if let Some(meta) = new.bucket(home).lock() {
            let target = address::<T>(word);
            let meta = new
                .take(home, meta, signature(hash), |value: &T| {
                    std::ptr::eq(value, target)
                })
                .map_or(meta, |(meta, _)| meta);
            new.bucket(home).unlock(meta);
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

#[cfg(all(test, not(pcbhash_loom)))]
mod tests {
    use super::*;

    /// A test value: its key, and the hash it is filed under.
    #[repr(align(16))]
    #[derive(Debug)]
    struct Item {
        key: u64,
        hash: u64,
    }

    impl ExactEntry for Item {
        fn exact_hash(&self) -> u64 {
            self.hash
        }
    }

    fn spread(k: u64) -> u64 {
        k.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    fn item(key: u64, hash: u64) -> Arc<Item> {
        Arc::new(Item { key, hash })
    }

    fn insert(index: &ExactIndex<Item>, key: u64, hash: u64, guard: &Guard) {
        if let Err(error) = index.insert(hash, item(key, hash), guard) {
            panic!(
                "insert of {key} failed: {error:?} ({:?})",
                index.stats(guard)
            );
        }
    }

    fn found(index: &ExactIndex<Item>, key: u64, hash: u64, guard: &Guard) -> bool {
        index
            .find(hash, guard, |item| item.key == key)
            .map(|item| item.key)
            == Some(key)
    }

    /// Waits until the deferred drops of the epoch have run, within a bound:
    /// other tests of this binary may stay pinned for a while.
    fn collect_until(done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !done() && std::time::Instant::now() < deadline {
            crossbeam_epoch::pin().flush();
            std::thread::yield_now();
        }
    }

    #[test]
    fn slot_words_round_trip_and_reject_high_addresses() {
        let value = item(1, 2);
        let bits = address_bits(Arc::as_ptr(&value)).expect("a heap address fits");
        let word = tag(0xABC, 3) << ADDRESS_BITS | bits;
        assert_eq!(address::<Item>(word), Arc::as_ptr(&value));
        assert_eq!(word >> 52, 0xABC);
        assert_eq!((word >> ADDRESS_BITS) & 0xF, 4);
        assert_eq!(address_bits((1u64 << 52) as usize as *const Item), None);
        assert_eq!(
            address_bits(((1u64 << 52) - 16) as usize as *const Item),
            Some((1 << 48) - 1)
        );
        assert_eq!(address_bits(std::ptr::null::<Item>()), None);
    }

    #[test]
    fn insert_find_remove_through_resizes() {
        let index = ExactIndex::<Item>::with_buckets(1);
        let guard = crossbeam_epoch::pin();
        for k in 0..20_000u64 {
            insert(&index, k, spread(k), &guard);
        }
        assert_eq!(index.len(), 20_000);
        let grown = index.stats(&guard);
        assert!(index.resizes() >= 10, "{} resizes", index.resizes());
        assert!(grown.buckets >= 20_000 / MAX_LOAD, "{grown:?}");
        for k in 0..20_000u64 {
            assert!(found(&index, k, spread(k), &guard), "key {k}");
        }
        assert!(!found(&index, 20_000, spread(20_000), &guard));
        for k in (0..20_000u64).step_by(2) {
            assert!(
                index.remove(spread(k), &guard, |item| item.key == k),
                "key {k}"
            );
        }
        assert!(
            !index.remove(spread(0), &guard, |item| item.key == 0),
            "removed twice"
        );
        for k in 0..20_000u64 {
            assert_eq!(found(&index, k, spread(k), &guard), k % 2 == 1, "key {k}");
        }
        assert_eq!(index.len(), 10_000);
        // Down to a few entries: the index shrinks, migrating as it goes.
        for k in (1..19_990u64).step_by(2) {
            assert!(
                index.remove(spread(k), &guard, |item| item.key == k),
                "key {k}"
            );
        }
        for k in 30_000..30_500u64 {
            insert(&index, k, spread(k), &guard);
            assert!(index.remove(spread(k), &guard, |item| item.key == k));
        }
        let shrunk = index.stats(&guard);
        assert!(shrunk.buckets < grown.buckets, "{shrunk:?} after {grown:?}");
        for k in (19_991..20_000u64).step_by(2) {
            assert!(found(&index, k, spread(k), &guard), "key {k}");
        }
        assert_eq!(index.len(), 5);
    }

    #[test]
    fn with_capacity_holds_that_many_without_resizing() {
        let index = ExactIndex::<Item>::with_capacity(10_000);
        let guard = crossbeam_epoch::pin();
        for k in 0..10_000u64 {
            insert(&index, k, spread(k), &guard);
        }
        assert_eq!(index.resizes(), 0);
        let stats = index.stats(&guard);
        assert!(!stats.resizing);
        assert!(stats.displaced < 10_000 / 10, "{stats:?}");
        for k in 0..10_000u64 {
            // A hint: it changes nothing the lookup sees.
            index.prefetch(spread(k), &guard);
            assert!(found(&index, k, spread(k), &guard), "key {k}");
        }
    }

    #[test]
    fn every_value_is_released_once() {
        let values: Vec<Arc<Item>> = (0..3000).map(|k| item(k, spread(k))).collect();
        {
            let index = ExactIndex::<Item>::with_buckets(1);
            let guard = crossbeam_epoch::pin();
            for value in &values {
                assert!(index.insert(value.hash, value.clone(), &guard).is_ok());
            }
            for k in (0..3000u64).step_by(3) {
                assert!(index.remove(spread(k), &guard, |item| item.key == k));
            }
            let held = index
                .find_arc(spread(1), &guard, |item| item.key == 1)
                .expect("key 1 is in the index");
            assert!(Arc::ptr_eq(&held, &values[1]));
            assert!(index.resizes() > 0);
        }
        collect_until(|| values.iter().all(|value| Arc::strong_count(value) == 1));
        for (k, value) in values.iter().enumerate() {
            assert_eq!(Arc::strong_count(value), 1, "value {k}");
        }
    }

    /// Hashes whose home is bucket 3 of 16 and whose signatures differ.
    fn at_home_3(k: u64) -> u64 {
        k << 52 | 3
    }

    #[test]
    fn full_home_displaces_into_the_next_buckets() {
        let index = ExactIndex::<Item>::with_buckets(16);
        let guard = crossbeam_epoch::pin();
        for k in 0..SLOTS as u64 {
            insert(&index, k, at_home_3(k), &guard);
        }
        assert_eq!(
            (index.stats(&guard).displaced, index.stats(&guard).reach),
            (0, 0)
        );
        // Two more spill into bucket 4, and one that lives at home in bucket 4
        // lands beside them.
        insert(&index, 100, at_home_3(100), &guard);
        insert(&index, 101, at_home_3(101), &guard);
        insert(&index, 200, 200 << 52 | 4, &guard);
        let stats = index.stats(&guard);
        assert_eq!((stats.displaced, stats.reach), (2, 1));
        for k in (0..SLOTS as u64).chain([100, 101]) {
            assert!(found(&index, k, at_home_3(k), &guard), "key {k}");
        }
        assert!(found(&index, 200, 200 << 52 | 4, &guard));
        // Bucket 4's own lookup does not see home 3's entries, even with
        // their signature.
        assert!(index.find(100 << 52 | 4, &guard, |_| true).is_none());
        // Fill bucket 4 so that the next spill goes two buckets on.
        for k in 201..(200 + SLOTS as u64 - 2) {
            insert(&index, k, k << 52 | 4, &guard);
        }
        insert(&index, 102, at_home_3(102), &guard);
        let stats = index.stats(&guard);
        assert_eq!((stats.displaced, stats.reach), (3, 2));
        assert!(found(&index, 102, at_home_3(102), &guard));
        // A home slot freed is reused before any neighbour.
        assert!(index.remove(at_home_3(0), &guard, |item| item.key == 0));
        insert(&index, 103, at_home_3(103), &guard);
        assert_eq!(index.stats(&guard).displaced, 3);
        // Removing the displaced entries brings the count, then the reach, down.
        for k in [100, 101] {
            assert!(index.remove(at_home_3(k), &guard, |item| item.key == k));
        }
        assert_eq!(
            (index.stats(&guard).displaced, index.stats(&guard).reach),
            (1, 2)
        );
        assert!(index.remove(at_home_3(102), &guard, |item| item.key == 102));
        assert_eq!(
            (index.stats(&guard).displaced, index.stats(&guard).reach),
            (0, 0)
        );
        for k in (1..SLOTS as u64).chain([103]) {
            assert!(found(&index, k, at_home_3(k), &guard), "key {k}");
        }
        assert!(!found(&index, 100, at_home_3(100), &guard));
    }

    #[test]
    fn equal_signatures_are_told_apart_by_the_predicate() {
        // One hash for all: same home, same signature.
        let hash = 0xABC0_0000_0000_0005;
        let index = ExactIndex::<Item>::with_buckets(64);
        let guard = crossbeam_epoch::pin();
        let keys = 0..(3 * SLOTS as u64);
        for k in keys.clone() {
            insert(&index, k, hash, &guard);
        }
        for k in keys.clone() {
            assert!(found(&index, k, hash, &guard), "key {k}");
        }
        assert!(!found(&index, 99, hash, &guard));
        // Another signature at the same home is no candidate.
        assert!(index.find(hash ^ 1 << 60, &guard, |_| true).is_none());
        assert!(index.remove(hash, &guard, |item| item.key == 4));
        assert!(!found(&index, 4, hash, &guard));
        for k in keys.filter(|&k| k != 4) {
            assert!(found(&index, k, hash, &guard), "key {k}");
        }
    }

    #[test]
    fn a_full_window_hands_the_value_back() {
        let hash = 0x1230_0000_0000_0007;
        let index = ExactIndex::<Item>::with_buckets(1 << 12);
        let guard = crossbeam_epoch::pin();
        let window = SLOTS * (MAX_REACH + 1);
        for k in 0..window as u64 {
            insert(&index, k, hash, &guard);
        }
        let extra = item(999, hash);
        match index.insert(hash, extra.clone(), &guard) {
            Err(error @ InsertError::Full(_)) => assert!(Arc::ptr_eq(&error.into_value(), &extra)),
            other => panic!("{other:?}"),
        }
        assert_eq!(Arc::strong_count(&extra), 1);
        assert_eq!(index.len(), window);
        assert_eq!(index.stats(&guard).reach, MAX_REACH);
        // After a removal the window has room again.
        assert!(index.remove(hash, &guard, |item| item.key == 3));
        assert!(index.insert(hash, extra, &guard).is_ok());
        assert!(found(&index, 999, hash, &guard));
    }

    #[test]
    fn a_migration_that_does_not_fit_is_taken_back() {
        // Two old homes (3 and 19 of 32) whose entries all go to home 3 of a
        // 16-bucket array, more than its window holds.
        let old = Buckets::new(32);
        let new = Buckets::new(16);
        let window = SLOTS * (MAX_REACH + 1);
        let values: Vec<Arc<Item>> = (0..window as u64 + 2)
            .map(|k| item(k, if k < 4 { 19 } else { 3 }))
            .collect();
        for value in &values {
            let home = old.home(value.hash);
            let meta = old.bucket(home).lock().expect("not moved");
            let bits = address_bits(Arc::as_ptr(value)).expect("fits");
            let meta = old.place(home, meta, 0, bits).expect("room");
            old.bucket(home).unlock(meta);
        }
        let migrate = |home: usize| {
            let meta = old.bucket(home).lock().expect("not moved");
            ExactIndex::<Item>::migrate_locked(&old, home, meta, &new)
        };
        assert!(migrate(19));
        assert!(!migrate(3));
        // Home 3 stays in the old array, unlocked; the new array holds the
        // four entries of old home 19 only.
        let meta = old.bucket(3).meta.load(Ordering::Relaxed);
        assert_eq!(meta & (MOVED | LOCKED), 0);
        assert_ne!(old.bucket(19).meta.load(Ordering::Relaxed) & MOVED, 0);
        let mut in_new = Vec::new();
        new.entries_of(
            3,
            new.bucket(3).meta.load(Ordering::Relaxed),
            |_, _, word| {
                // SAFETY: `values` keeps every value alive.
                in_new.push(unsafe { &*address::<Item>(word) }.key);
            },
        );
        in_new.sort_unstable();
        assert_eq!(in_new, [0, 1, 2, 3]);
        assert_eq!(displaced(new.bucket(3).meta.load(Ordering::Relaxed)), 0);
    }

    #[test]
    fn lookups_never_miss_entries_present_throughout_writes_and_resizes() {
        use std::sync::atomic::AtomicBool;
        const STABLE: u64 = 2000;
        let index = Arc::new(ExactIndex::<Item>::with_buckets(1));
        {
            let guard = crossbeam_epoch::pin();
            for k in 0..STABLE {
                insert(&index, k, spread(k), &guard);
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..2u64)
            .map(|t| {
                let index = index.clone();
                std::thread::spawn(move || {
                    // Churn far more entries than the stable ones, so that the
                    // index grows and shrinks under the readers.
                    for round in 0..6u64 {
                        let keys =
                            (0..20_000u64).map(|i| 1_000_000 * (t + 1) + round * 100_000 + i);
                        for k in keys.clone() {
                            insert(&index, k, spread(k), &crossbeam_epoch::pin());
                        }
                        for k in keys {
                            let guard = crossbeam_epoch::pin();
                            assert!(index.remove(spread(k), &guard, |item| item.key == k));
                        }
                    }
                })
            })
            .collect();
        let reader = {
            let (index, stop) = (index.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut lookups = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let guard = crossbeam_epoch::pin();
                    for k in 0..STABLE {
                        assert!(found(&index, k, spread(k), &guard), "missed key {k}");
                    }
                    lookups += STABLE;
                }
                lookups
            })
        };
        for writer in writers {
            writer.join().expect("writer");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let lookups = reader.join().expect("reader");
        assert!(lookups >= STABLE);
        assert!(index.resizes() >= 2, "{} resizes", index.resizes());
        assert_eq!(index.len(), STABLE as usize);
    }
}

#[cfg(all(test, pcbhash_loom))]
mod loom_tests {
    use super::*;

    /// A model value: its key, and the hash it is filed under.
    #[repr(align(16))]
    struct Item {
        key: u64,
        hash: u64,
    }

    impl ExactEntry for Item {
        fn exact_hash(&self) -> u64 {
            self.hash
        }
    }

    /// The hash of key `key` with home bucket `home`: the key is the signature.
    fn hash(key: u64, home: u64) -> u64 {
        key << 52 | home
    }

    fn insert(index: &ExactIndex<Item>, key: u64, home: u64, guard: &Guard) {
        let hash = hash(key, home);
        assert!(index
            .insert(hash, Arc::new(Item { key, hash }), guard)
            .is_ok());
    }

    fn remove(index: &ExactIndex<Item>, key: u64, home: u64, guard: &Guard) {
        assert!(index.remove(hash(key, home), guard, |item| item.key == key));
    }

    /// An index of `buckets` buckets holding `(key, home)` pairs `before`; a
    /// writer thread runs `write` while the model's thread looks up each of
    /// `present` (which the writer leaves in place) and must find them all.
    fn race(
        buckets: usize,
        before: &'static [(u64, u64)],
        write: fn(&ExactIndex<Item>, &Guard),
        present: &'static [(u64, u64)],
    ) {
        loom::model(move || {
            let index = Arc::new(ExactIndex::<Item>::with_buckets(buckets));
            let guard = crossbeam_epoch::pin();
            for &(key, home) in before {
                insert(&index, key, home, &guard);
            }
            drop(guard);
            let writer = {
                let index = index.clone();
                loom::thread::spawn(move || write(&index, &crossbeam_epoch::pin()))
            };
            let guard = crossbeam_epoch::pin();
            for &(key, home) in present {
                let found = index.find(hash(key, home), &guard, |item| item.key == key);
                assert_eq!(found.map(|item| item.key), Some(key), "missed key {key}");
            }
            drop(guard);
            writer.join().unwrap();
        });
    }

    /// An insert into the same home: the entry already there stays visible,
    /// and the new one, if seen, is whole.
    #[test]
    fn insert_vs_find() {
        race(
            2,
            &[(1, 0)],
            |index, guard| {
                insert(index, 2, 0, guard);
                let found = index.find(hash(2, 0), guard, |item| item.key == 2);
                assert_eq!(found.map(|item| item.hash), Some(hash(2, 0)));
            },
            &[(1, 0)],
        );
    }

    /// A removal from the same bucket, then the slot's reuse by another
    /// entry: the entry that stays is always found.
    #[test]
    fn remove_vs_find() {
        race(
            2,
            &[(1, 0), (2, 0)],
            |index, guard| {
                remove(index, 2, 0, guard);
                insert(index, 3, 0, guard);
            },
            &[(1, 0)],
        );
    }

    /// Home bucket 0 is full and key 3 lives displaced in bucket 1. The
    /// writer displaces another entry of the home, then empties a home slot
    /// and removes the newcomer (the home's count goes up and down): key 3
    /// and the home entry that stays are always found.
    #[test]
    fn displacement_vs_find() {
        race(
            4,
            &[(1, 0), (2, 0), (3, 0)],
            |index, guard| {
                insert(index, 4, 0, guard);
                remove(index, 1, 0, guard);
                remove(index, 4, 0, guard);
            },
            &[(3, 0), (2, 0)],
        );
    }

    /// The writer's insert pushes the index over its load: it allocates the
    /// next array and migrates one home; its removal migrates the other and
    /// completes the resize. Entries present throughout are always found,
    /// whether the lookup starts in the old array, crosses over, or starts in
    /// the new one.
    #[test]
    fn resize_migration_vs_find() {
        race(
            2,
            &[(1, 0), (2, 1)],
            |index, guard| {
                insert(index, 3, 0, guard);
                assert!(index.stats(guard).resizing && index.resizes() == 0);
                remove(index, 3, 0, guard);
                assert_eq!(index.resizes(), 1);
            },
            &[(1, 0), (2, 1)],
        );
    }
}

/// A harness for valgrind's callgrind (run it under
/// `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*measure_*'`
/// with `--ignored`): one million 40-byte keys, looked up in a shuffled order
/// in this index, in `RawMap` and in `hashbrown::HashMap`, with one hasher.
#[cfg(all(test, not(pcbhash_loom)))]
mod measure {
    use std::hint::black_box;

    use super::*;
    use crate::raw::{InlineKey, RawMap, KEY_WORDS};

    #[derive(Clone, Copy, Debug, Eq)]
    struct Key([u64; KEY_WORDS]);

    /// As derived: the words.
    impl std::hash::Hash for Key {
        fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
            self.0.hash(state);
        }
    }

    /// Word by word without branches, as a table compares flow keys (the
    /// derived equality calls `bcmp`). All three maps use it.
    impl PartialEq for Key {
        #[inline(always)]
        fn eq(&self, other: &Self) -> bool {
            let (a, b) = (&self.0, &other.0);
            (a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) | (a[4] ^ b[4]) == 0
        }
    }

    impl InlineKey for Key {
        fn to_words(&self) -> [u64; KEY_WORDS] {
            self.0
        }

        fn from_words(words: [u64; KEY_WORDS]) -> Self {
            Self(words)
        }
    }

    /// A PCB stand-in: the key inline, one line.
    #[repr(align(64))]
    struct Pcb {
        key: Key,
        hash: u64,
    }

    impl ExactEntry for Pcb {
        fn exact_hash(&self) -> u64 {
            self.hash
        }
    }

    type Hashbrown = hashbrown::HashMap<Key, Arc<Pcb>, ahash::RandomState>;

    #[inline(never)]
    fn measure_exact(
        index: &ExactIndex<Pcb>,
        keys: &[Key],
        state: &ahash::RandomState,
        guard: &Guard,
    ) -> usize {
        let mut hits = 0;
        for key in keys {
            let hash = state.hash_one(key);
            hits +=
                usize::from(black_box(index.find(hash, guard, |pcb| pcb.key == *key)).is_some());
        }
        hits
    }

    #[inline(never)]
    fn measure_exact_read(
        index: &ExactIndex<Pcb>,
        keys: &[Key],
        state: &ahash::RandomState,
        guard: &Guard,
    ) -> u64 {
        let mut sum = 0;
        for key in keys {
            let hash = state.hash_one(key);
            if let Some(pcb) = index.find(hash, guard, |pcb| pcb.key == *key) {
                sum += black_box(pcb).hash;
            }
        }
        sum
    }

    #[inline(never)]
    fn measure_rawmap(
        map: &RawMap<Key, Pcb>,
        keys: &[Key],
        state: &ahash::RandomState,
        guard: &Guard,
    ) -> usize {
        let mut hits = 0;
        for key in keys {
            let hash = state.hash_one(key);
            hits += usize::from(black_box(map.find(hash, guard, |k| k == key)).is_some());
        }
        hits
    }

    #[inline(never)]
    fn measure_rawmap_read(
        map: &RawMap<Key, Pcb>,
        keys: &[Key],
        state: &ahash::RandomState,
        guard: &Guard,
    ) -> u64 {
        let mut sum = 0;
        for key in keys {
            let hash = state.hash_one(key);
            if let Some(pcb) = map.find(hash, guard, |k| k == key) {
                sum += black_box(pcb).hash;
            }
        }
        sum
    }

    #[inline(never)]
    fn measure_hashbrown(map: &Hashbrown, keys: &[Key]) -> usize {
        keys.iter()
            .map(|key| usize::from(black_box(map.get(key)).is_some()))
            .sum()
    }

    #[inline(never)]
    fn measure_hashbrown_read(map: &Hashbrown, keys: &[Key]) -> u64 {
        keys.iter()
            .filter_map(|key| map.get(key))
            .map(|pcb| black_box(pcb).hash)
            .sum()
    }

    #[test]
    #[ignore = "a callgrind harness, slow in a debug build"]
    fn callgrind_exact_hit() {
        let n: usize = std::env::var("EXACT_MEASURE_N")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(1_000_000);
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut keys: Vec<Key> = (0..n)
            .map(|_| Key(std::array::from_fn(|_| next())))
            .collect();
        let state = ahash::RandomState::with_seeds(1, 2, 3, 4);
        let index = ExactIndex::<Pcb>::with_capacity(n);
        let raw = RawMap::<Key, Pcb>::with_capacity(n);
        let mut brown = Hashbrown::with_capacity_and_hasher(n, state.clone());
        let guard = crossbeam_epoch::pin();
        for key in &keys {
            let hash = state.hash_one(key);
            let pcb = Arc::new(Pcb { key: *key, hash });
            assert!(index.insert(hash, pcb.clone(), &guard).is_ok());
            raw.insert(hash, *key, pcb.clone(), &guard);
            brown.insert(*key, pcb);
        }
        for i in (1..n).rev() {
            keys.swap(i, next() as usize % (i + 1));
        }
        assert_eq!(measure_exact(&index, &keys, &state, &guard), n);
        assert_ne!(measure_exact_read(&index, &keys, &state, &guard), 0);
        assert_eq!(measure_rawmap(&raw, &keys, &state, &guard), n);
        assert_ne!(measure_rawmap_read(&raw, &keys, &state, &guard), 0);
        assert_eq!(measure_hashbrown(&brown, &keys), n);
        assert_ne!(measure_hashbrown_read(&brown, &keys), 0);
        println!("{:?} resizes {}", index.stats(&guard), index.resizes());
    }
}
