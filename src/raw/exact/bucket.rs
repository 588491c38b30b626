//! The bucket layer of the exact index: the slot word, the bucket line and
//! the bucket array, with the operations a writer performs on one home's
//! window while it holds the home's lock (see the parent module's docs).

use crossbeam_epoch::Atomic;
use crossbeam_utils::CachePadded;

use crate::sync::{spin_loop, AtomicU64, AtomicUsize, Ordering};

/// Slots per bucket: seven, beside the meta word. Two under loom, so that the
/// models fill buckets and displace entries in a few steps.
#[cfg(not(pcbhash_loom))]
pub(super) const SLOTS: usize = 7;
#[cfg(pcbhash_loom)]
pub(super) const SLOTS: usize = 2;

/// The average number of entries per bucket above which the index grows:
/// four per seven slots (57% of the slots), one per two slots under loom.
pub(crate) const MAX_LOAD: usize = SLOTS * 4 / 7;

/// The farthest an entry sits from its home bucket.
pub(crate) const MAX_REACH: usize = 14;

/// Meta bit: a writer owns the bucket (as a home) and may change the home's
/// entries, its reach and its filter bytes. Only the holder writes the meta
/// word.
pub(super) const LOCKED: u64 = 1 << 0;
/// Meta bit: the home's entries are in the next array. Permanent.
pub(super) const MOVED: u64 = 1 << 1;
/// Meta field: the reach (bits 2 to 5).
const REACH_SHIFT: u32 = 2;
pub(super) const REACH_MASK: u64 = 0xF << REACH_SHIFT;

/// Meta bytes 1 to `SLOTS`: the *filter byte* of each slot, non-zero while
/// the slot holds an entry of this home (distance 0), zero otherwise. Bit 0
/// of each of those bytes.
const FILTER_LOW: u64 = filter_lanes();
/// Bit 7 of each filter byte.
const FILTER_HIGH: u64 = FILTER_LOW << 7;

const fn filter_lanes() -> u64 {
    let mut lanes = 0;
    let mut i = 0;
    while i < SLOTS {
        lanes |= 1 << filter_shift(i);
        i += 1;
    }
    lanes
}

/// Where slot `i`'s filter byte sits in the meta word.
#[inline(always)]
const fn filter_shift(i: usize) -> u32 {
    8 * (i as u32 + 1)
}

/// The filter byte of an entry with signature `sig`: its low eight bits, never
/// zero.
#[inline(always)]
pub(super) fn filter(sig: u64) -> u64 {
    let byte = sig & 0xFF;
    byte | u64::from(byte == 0)
}

/// The home entries of a bucket that may have filter byte `filter`: bit 7 of
/// slot `i`'s byte is set for each (see [`slot_of`]). Branch-free, on the meta
/// word alone (SWAR: a byte of the exclusive or is zero where the filter
/// matches). A byte just above a match may show up as well; the caller checks
/// each candidate's slot word, so that costs a look, never an answer.
#[inline(always)]
pub(super) fn home_candidates(meta: u64, filter: u64) -> u64 {
    let x = meta ^ filter.wrapping_mul(FILTER_LOW);
    x.wrapping_sub(FILTER_LOW) & !x & FILTER_HIGH
}

/// The slot whose filter byte holds the lowest bit of a candidate mask.
#[inline(always)]
pub(super) fn slot_of(mask: u64) -> usize {
    (mask.trailing_zeros() / 8) as usize - 1
}

/// Slot layout (see the parent module's docs).
pub(super) const ADDRESS_BITS: u32 = 48;
pub(super) const ADDRESS_MASK: u64 = (1 << ADDRESS_BITS) - 1;
pub(super) const ALIGN_BITS: u32 = 4;

/// The 12-bit signature of a hash.
#[inline(always)]
pub(super) fn signature(hash: u64) -> u64 {
    hash >> 52
}

/// The tag (top 16 bits) of an entry with signature `sig` at `distance` from
/// home. Never zero.
#[inline(always)]
pub(super) fn tag(sig: u64, distance: usize) -> u64 {
    sig << 4 | (distance as u64 + 1)
}

/// The value address a slot word holds.
#[inline(always)]
pub(super) fn address<T>(word: u64) -> *const T {
    ((word & ADDRESS_MASK) << ALIGN_BITS) as usize as *const T
}

/// The address bits of `value` in a slot, or `None` if it does not fit.
#[inline]
pub(super) fn address_bits<T>(value: *const T) -> Option<u64> {
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
pub(super) fn reach(meta: u64) -> usize {
    ((meta & REACH_MASK) >> REACH_SHIFT) as usize
}

/// `meta` with reach `reach`.
#[inline]
fn with_reach(meta: u64, reach: usize) -> u64 {
    (meta & !REACH_MASK) | (reach as u64) << REACH_SHIFT
}

/// One bucket: one cache line.
#[repr(C, align(64))]
pub(super) struct Bucket {
    pub(super) meta: AtomicU64,
    pub(super) slots: [AtomicU64; SLOTS],
}

#[cfg(not(pcbhash_loom))]
static_assertions::const_assert_eq!(std::mem::size_of::<Bucket>(), 64);

impl Bucket {
    /// The mask of slots whose tag is `want`: bit `i` for slot `i`. No branch
    /// on the slots' contents.
    #[inline(always)]
    pub(super) fn candidates(&self, want: u64) -> u32 {
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
    pub(super) unsafe fn candidate<T>(&self, i: usize, want: u64) -> Option<*const T> {
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
    pub(super) fn unlock(&self, meta: u64) {
        self.meta.store(meta & !LOCKED, Ordering::Release);
    }

    /// Locks the bucket as a home, unless its entries moved to the next array.
    pub(super) fn lock(&self) -> Option<u64> {
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
pub(super) struct Resize {
    /// Set by the one writer that allocates the next array.
    pub(super) allocating: AtomicUsize,
    /// The next home a migrating writer may claim.
    pub(super) claimed: AtomicUsize,
    /// How many homes have moved.
    pub(super) migrated: AtomicUsize,
}

/// One bucket array.
///
/// This type maintains the invariant that `next` is non-null whenever any
/// home is `MOVED`, and that a `MOVED` home owns no entries (its slots, left
/// in place, are stale copies).
pub(super) struct Buckets {
    pub(super) buckets: Box<[Bucket]>,
    pub(super) mask: usize,
    pub(super) next: Atomic<Buckets>,
    pub(super) resize: CachePadded<Resize>,
}

impl Buckets {
    /// An empty array of `len` buckets (a power of two).
    pub(super) fn new(len: usize) -> Self {
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
    pub(super) fn bucket(&self, index: usize) -> &Bucket {
        // SAFETY: `mask` is the length minus one and the length a power of two,
        // so the masked index is in bounds.
        unsafe { self.buckets.get_unchecked(index & self.mask) }
    }

    #[inline(always)]
    pub(super) fn home(&self, hash: u64) -> usize {
        hash as usize & self.mask
    }

    /// Calls `f(distance, slot, word)` for each entry of home `home`, whose
    /// meta word is `meta`. The caller holds the home's lock, or has `&mut`
    /// access to the index.
    pub(super) fn entries_of(
        &self,
        home: usize,
        meta: u64,
        mut f: impl FnMut(usize, &AtomicU64, u64),
    ) {
        for distance in 0..=reach(meta) {
            let index = (home + distance) & self.mask;
            let want = tag(0, distance);
            for slot in self.bucket(index).slots.iter() {
                let word = slot.load(Ordering::Acquire);
                // The distance field alone: the signature does not matter here.
                if word != 0 && (word >> ADDRESS_BITS) & 0xF == want {
                    f(distance, slot, word);
                }
            }
        }
    }

    /// Puts the slot word `bits` (an address) with signature `sig` into the
    /// window of `home`, which the caller has locked (`meta` is its meta
    /// word). Returns the home's new meta word (still locked), or `None` if
    /// the window is full (the meta word is then as it was).
    pub(super) fn place(&self, home: usize, meta: u64, sig: u64, bits: u64) -> Option<u64> {
        let home_bucket = self.bucket(home);
        let mut current = meta;
        for distance in 0..=MAX_REACH {
            let word = tag(sig, distance) << ADDRESS_BITS | bits;
            for (i, slot) in self.bucket(home + distance).slots.iter().enumerate() {
                if slot.load(Ordering::Relaxed) != 0 {
                    continue;
                }
                if distance > reach(current) {
                    // Reserve before claiming: a reader that sees the slot sees
                    // a reach that covers it.
                    current = with_reach(current, distance);
                    home_bucket.meta.store(current, Ordering::Release);
                }
                // Release: publishes the value's contents with its address.
                if slot
                    .compare_exchange(0, word, Ordering::Release, Ordering::Relaxed)
                    .is_ok()
                {
                    if distance == 0 {
                        // The claim first, then the filter byte: a reader that
                        // sees the byte finds the slot filled.
                        current =
                            (current & !(0xFF << filter_shift(i))) | filter(sig) << filter_shift(i);
                        home_bucket.meta.store(current, Ordering::Release);
                    }
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
    pub(super) fn take<T>(
        &self,
        home: usize,
        meta: u64,
        sig: u64,
        mut pred: impl FnMut(&T) -> bool,
    ) -> Option<(u64, u64)> {
        let home_bucket = self.bucket(home);
        for distance in 0..=reach(meta) {
            let want = tag(sig, distance);
            for (i, slot) in self.bucket(home + distance).slots.iter().enumerate() {
                let word = slot.load(Ordering::Acquire);
                if word >> ADDRESS_BITS != want {
                    continue;
                }
                // SAFETY: the slot carries this home's tag, and only the
                // home's lock holder (us) clears such a slot, so it holds a
                // live entry whose strong count is the index's.
                if !pred(unsafe { &*address::<T>(word) }) {
                    continue;
                }
                let meta = if distance == 0 {
                    // The filter byte first, then the slot: once the slot is
                    // free another home may claim it, and its entry has no
                    // byte.
                    let cleared = meta & !(0xFF << filter_shift(i));
                    home_bucket.meta.store(cleared, Ordering::Release);
                    slot.store(0, Ordering::Release);
                    cleared
                } else {
                    slot.store(0, Ordering::Release);
                    // The reach shrinks to the farthest entry left.
                    let lowered = with_reach(meta, self.farthest(home, reach(meta)));
                    if lowered != meta {
                        home_bucket.meta.store(lowered, Ordering::Release);
                    }
                    lowered
                };
                return Some((meta, word));
            }
        }
        None
    }

    /// The distance of the farthest displaced entry of `home` (locked by the
    /// caller), looking no farther than `reach`; zero if there is none.
    fn farthest(&self, home: usize, reach: usize) -> usize {
        (1..=reach)
            .rev()
            .find(|&distance| {
                self.bucket(home + distance).slots.iter().any(|slot| {
                    let word = slot.load(Ordering::Relaxed);
                    word != 0 && (word >> ADDRESS_BITS) & 0xF == tag(0, distance)
                })
            })
            .unwrap_or(0)
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
