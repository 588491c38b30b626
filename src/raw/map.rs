//! `RawMap`: a hash multimap with lock-free readers, the first entry of each
//! bucket stored inline in the bucket array, and incremental resize.
//!
//! # Shape
//!
//! A map points to a *bucket array*. Each bucket is one 64-byte cache line:
//!
//! - a *meta* word: the bucket's lock and state bits, a version, and the low
//!   32 bits of the inline entry's hash (its *tag*);
//! - one *inline entry*: the key as plain words, and the value;
//! - the head of an *overflow chain* of nodes (one per further entry, each
//!   64-byte aligned), for buckets that hold more than one entry.
//!
//! A lookup that hits the inline entry touches one cache line; with the
//! table at its usual load most hits do. Only a bucket's second and later
//! entries cost a node, and a bucket with no overflow answers a miss from its
//! own line too.
//!
//! # Readers
//!
//! Readers take no lock and write nothing. The inline entry can be rewritten
//! while a reader copies it out, so a reader validates its copy the way a
//! sequence lock does: it loads the meta word, copies the words, and checks
//! that the meta word is unchanged (a writer's lock bit aside). Every change
//! of the inline entry or of the chain's shape that a reader could misread
//! first moves the version on, and a writer in the middle of rewriting the
//! entry marks it `DIRTY`: a reader then skips the inline entry and walks the
//! chain, which stays intact throughout. A reader never waits for a writer,
//! preempted or not: it retries only when a writer finished a change to the
//! same bucket while it was reading, so lookups are lock-free.
//!
//! Values are `Arc`s, held in the map as raw pointers (one strong count per
//! entry). A removed entry's count is dropped through the epoch, and removed
//! nodes are retired through it, so whatever a reader reached under a guard
//! stays valid until that guard is dropped.
//!
//! # Resize
//!
//! When the load passes one entry per bucket (or falls under one per eight), a
//! writer installs a *next* array of twice (half) the size. From then on every
//! write helps by migrating a chunk of buckets: it locks an old bucket, copies
//! each entry into the next array, marks the old bucket `MOVED` and retires the
//! old nodes. Copies are inserted before the old bucket is marked, so a reader
//! always finds an entry in one of the two places (no false negatives), and a
//! lookup visits at most the old and the new bucket. When the last bucket has
//! moved, the map's pointer is swung to the next array and the old array is
//! retired. No step stops readers, and writers only ever wait for the one bucket
//! they need.

use std::ptr::NonNull;

use crossbeam_epoch::{Atomic, Guard, Owned, Shared};

use crate::sync::{fence, spin_loop, Arc, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

/// How many 64-bit words an inline key takes.
pub(crate) const KEY_WORDS: usize = 5;

/// A key the map keeps inline in its bucket array, as plain words.
///
/// A reader copies the words out while a writer may be rewriting them and
/// checks only afterwards that they were stable, so `from_words` is called on
/// torn copies too: it must accept any words and must not panic.
pub(crate) trait InlineKey: Copy + Send + Sync + 'static {
    /// The key as words.
    fn to_words(&self) -> [u64; KEY_WORDS];
    /// The key the words of [`to_words`](Self::to_words) came from (for any
    /// other words, some key).
    fn from_words(words: [u64; KEY_WORDS]) -> Self;
}

/// Meta bit: a writer owns the bucket. Writers take it with a compare-exchange
/// and release it with a store. Readers ignore it.
const LOCKED: u64 = 1 << 0;
/// Meta bit: the bucket's entries have been copied into the next bucket array;
/// everyone, reader or writer, continues there. Permanent.
const MOVED: u64 = 1 << 1;
/// Meta bit: the inline entry holds an entry. A bucket with overflow nodes
/// always has its inline entry full.
const FULL: u64 = 1 << 2;
/// Meta bit: a writer is rewriting the inline entry; its words mean nothing.
const DIRTY: u64 = 1 << 3;
/// The version field of the meta word: bits 8 to 31.
const VERSION_SHIFT: u32 = 8;
const VERSION_MASK: u64 = ((1 << 24) - 1) << VERSION_SHIFT;
/// The inline entry's tag: bits 32 to 63.
const TAG_SHIFT: u32 = 32;

/// The part of a hash the map keeps: the low 32 bits, which also pick the
/// bucket (arrays have at most 2³² buckets).
#[inline]
fn tag(hash: u64) -> u32 {
    hash as u32
}

#[inline]
fn tag_of(meta: u64) -> u32 {
    (meta >> TAG_SHIFT) as u32
}

/// `meta` with the version moved on by one (wrapping within its field).
#[inline]
fn bumped(meta: u64) -> u64 {
    (meta & !VERSION_MASK) | (meta.wrapping_add(1 << VERSION_SHIFT) & VERSION_MASK)
}

/// The bit a tag sets in the *chain summary*: the tag bits of a bucket's
/// overflow head pointer (nodes are 64-byte aligned, which leaves six). A
/// bucket's summary has the bit of every overflow node's tag set, and maybe
/// others: a lookup whose bit is clear skips the chain, so a miss usually
/// costs the bucket's line alone. Tag bits 26 to 31 lie above the bucket
/// index of any array under 2²⁶ buckets.
#[inline]
fn summary_bit(tag: u32) -> usize {
    1 << ((tag >> 26) % 6)
}

/// How many buckets one write migrates while a resize is in progress. One
/// under loom, so that a model with a few buckets sees a migration spread over
/// several writes.
#[cfg(not(pcbhash_loom))]
const MIGRATE_CHUNK: usize = 64;
#[cfg(pcbhash_loom)]
const MIGRATE_CHUNK: usize = 1;

/// One strong count of an `Arc<T>`, kept as the pointer `Arc::into_raw` gave.
struct ValuePtr<T>(NonNull<T>);

impl<T> Clone for ValuePtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for ValuePtr<T> {}

// SAFETY: a `ValuePtr<T>` stands for an `Arc<T>`, which may be sent and
// shared between threads when `T` is `Send + Sync`.
unsafe impl<T: Send + Sync> Send for ValuePtr<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for ValuePtr<T> {}

/// An overflow entry: a bucket's second and later entries. Aligned to a cache
/// line, so that reading one costs one line.
#[repr(align(64))]
struct Node<K, T> {
    tag: u32,
    key: K,
    value: ValuePtr<T>,
    next: Atomic<Node<K, T>>,
}

/// One bucket: one cache line (see the module docs).
#[repr(C, align(64))]
struct Bucket<K, T> {
    meta: AtomicU64,
    key: [AtomicU64; KEY_WORDS],
    value: AtomicPtr<T>,
    next: Atomic<Node<K, T>>,
}

#[cfg(not(pcbhash_loom))]
static_assertions::const_assert_eq!(std::mem::size_of::<Bucket<[u64; KEY_WORDS], u8>>(), 64);

impl<K: InlineKey, T> Bucket<K, T> {
    fn empty() -> Self {
        Self {
            meta: AtomicU64::new(0),
            key: std::array::from_fn(|_| AtomicU64::new(0)),
            value: AtomicPtr::new(std::ptr::null_mut()),
            next: Atomic::null(),
        }
    }

    /// A copy of the inline key. Racy unless the bucket is locked: validate
    /// it with [`unchanged`](Self::unchanged).
    #[inline]
    fn read_key(&self) -> K {
        K::from_words(std::array::from_fn(|i| self.key[i].load(Ordering::Relaxed)))
    }

    /// Whether the meta word still reads `seen`, the lock bit aside. Call it
    /// after the reads it validates, behind an acquire fence or load.
    #[inline]
    fn unchanged(&self, seen: u64) -> bool {
        self.meta.load(Ordering::Relaxed) | LOCKED == seen | LOCKED
    }

    /// Writes an entry into the inline slot of this bucket, which the caller
    /// has locked (`meta` is its meta word), and returns the new meta word
    /// (still locked). The version moves on twice: once with `DIRTY` before
    /// the words change, so that a reader whose copy mixes old and new words
    /// sees a changed version, and once when the entry is whole.
    fn fill(&self, meta: u64, tag: u32, key: &K, value: ValuePtr<T>) -> u64 {
        let dirty = bumped(meta) | DIRTY;
        // Release: a reader that sees `DIRTY` skips the slot and walks the
        // chain, so it must also see the chain as it was before this rewrite.
        self.meta.store(dirty, Ordering::Release);
        // Orders the store above before the word stores below, for any reader
        // whose acquire fence follows a load of one of those words.
        fence(Ordering::Release);
        for (word, bits) in self.key.iter().zip(key.to_words()) {
            // Only the words that differ: a replacement under the same key
            // (a passive open over TIME_WAIT) then rewrites the value alone.
            if word.load(Ordering::Relaxed) != bits {
                word.store(bits, Ordering::Relaxed);
            }
        }
        self.value.store(value.0.as_ptr(), Ordering::Relaxed);
        let full = (bumped(dirty) & !(DIRTY | (u64::from(u32::MAX) << TAG_SHIFT)))
            | FULL
            | (u64::from(tag) << TAG_SHIFT);
        self.meta.store(full, Ordering::Release);
        full
    }

    /// Releases the lock of a bucket whose meta word is `meta`.
    #[inline]
    fn unlock(&self, meta: u64) {
        self.meta.store(meta & !LOCKED, Ordering::Release);
    }
}

/// One bucket array.
///
/// This type maintains the invariant that `next` is non-null whenever any bucket
/// carries the `MOVED` tag, and that a `MOVED` bucket owns no entries.
struct Buckets<K, T> {
    slots: Box<[Bucket<K, T>]>,
    mask: usize,
    next: Atomic<Buckets<K, T>>,
    /// The next bucket index a migrating writer may claim.
    claimed: AtomicUsize,
    /// How many buckets have been migrated.
    migrated: AtomicUsize,
}

impl<K: InlineKey, T> Buckets<K, T> {
    fn new(len: usize) -> Self {
        debug_assert!(len.is_power_of_two() && len <= 1 << 32);
        Self {
            slots: (0..len).map(|_| Bucket::empty()).collect(),
            mask: len - 1,
            next: Atomic::null(),
            claimed: AtomicUsize::new(0),
            migrated: AtomicUsize::new(0),
        }
    }

    #[inline]
    fn bucket(&self, tag: u32) -> &Bucket<K, T> {
        &self.slots[tag as usize & self.mask]
    }
}

/// Figures about one map, for [`crate::Stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct MapStats {
    pub(crate) entries: usize,
    pub(crate) buckets: usize,
    pub(crate) longest_chain: usize,
    pub(crate) resizing: bool,
}

/// A concurrent hash multimap from precomputed hashes and keys to `Arc`s.
///
/// Readers take no lock and do no read-modify-write. Writers lock one bucket.
/// The map does not enforce key uniqueness: callers that need it check and
/// insert under a lock of their own.
pub(crate) struct RawMap<K: InlineKey, T: Send + Sync + 'static> {
    buckets: Atomic<Buckets<K, T>>,
    len: AtomicUsize,
    min_buckets: usize,
    resizes: AtomicU64,
    /// Deliberately broken synchronisation, for the loom models' own test.
    #[cfg(pcbhash_broken)]
    broken: crate::sync::Broken,
}

/// The result of trying to lock a bucket.
enum Locked {
    /// The bucket is ours; here is its meta word (with `LOCKED`).
    Held(u64),
    /// The bucket moved to the next array.
    Moved,
}

impl<K: InlineKey, T: Send + Sync + 'static> RawMap<K, T> {
    /// A map sized for about `capacity` entries before its first resize (at
    /// least 16 buckets).
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self::with_buckets(capacity.max(16))
    }

    /// A map that starts with `buckets` buckets (rounded up to a power of two,
    /// at least one, at most 2³²) and never shrinks below that. It grows when
    /// it holds more entries than buckets: a one-bucket map resizes on its
    /// second insert.
    pub(crate) fn with_buckets(buckets: usize) -> Self {
        let len = buckets.clamp(1, 1 << 32).next_power_of_two();
        Self {
            buckets: Atomic::new(Buckets::new(len)),
            len: AtomicUsize::new(0),
            min_buckets: len,
            resizes: AtomicU64::new(0),
            #[cfg(pcbhash_broken)]
            broken: crate::sync::Broken::default(),
        }
    }

    /// Turns on deliberately broken synchronisation (see `sync::Broken`).
    #[cfg(pcbhash_broken)]
    pub(crate) fn set_broken(&mut self, broken: crate::sync::Broken) {
        self.broken = broken;
    }

    /// Number of entries. One relaxed load.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// How many resizes have completed.
    pub(crate) fn resizes(&self) -> u64 {
        self.resizes.load(Ordering::Relaxed)
    }

    /// The value of the first entry whose hash is `hash` and whose key
    /// satisfies `eq`.
    ///
    /// Lock-free: loads only, no allocation, never waits for a writer. Visits
    /// at most two buckets while a resize is in progress. `eq` may also be
    /// called on keys of entries that are being rewritten; their answer is
    /// discarded.
    #[inline(always)]
    pub(crate) fn find<'g>(
        &self,
        hash: u64,
        guard: &'g Guard,
        mut eq: impl FnMut(&K) -> bool,
    ) -> Option<&'g T> {
        let tag = tag(hash);
        let mut array = self.buckets.load(Ordering::Acquire, guard);
        'array: loop {
            // SAFETY: bucket arrays are retired with `defer_destroy` only after the
            // map pointer stopped pointing at them, and `next` pointers are set
            // once to arrays that outlive their predecessor; `guard` keeps every
            // array loaded under it alive. The map's pointer is never null.
            let buckets = unsafe { array.deref() };
            let bucket = buckets.bucket(tag);
            'read: loop {
                let seen = bucket.meta.load(Ordering::Acquire);
                if seen & MOVED != 0 {
                    array = buckets.next.load(Ordering::Acquire, guard);
                    continue 'array;
                }
                if seen & (FULL | DIRTY) == FULL && tag_of(seen) == tag {
                    let key = bucket.read_key();
                    let value = bucket.value.load(Ordering::Relaxed);
                    // Pairs with the release fence of `Bucket::fill`: if any
                    // word came from a rewrite, the check sees its version.
                    fence(Ordering::Acquire);
                    if !bucket.unchanged(seen) {
                        continue 'read;
                    }
                    if eq(&key) {
                        // SAFETY: the entry was in the map after `guard` was
                        // pinned (the version check says the words were), and
                        // its strong count is dropped only through the epoch
                        // after it left; so the value outlives `guard`.
                        return Some(unsafe { &*value });
                    }
                }
                let mut cursor = bucket.next.load(Ordering::Acquire, guard);
                if cursor.tag() & summary_bit(tag) == 0 {
                    cursor = Shared::null();
                }
                // SAFETY: nodes reachable from a bucket are retired with
                // `defer_destroy` only after being unlinked, so a node loaded
                // under `guard` stays valid while `guard` lives; its value too
                // (see above).
                while let Some(node) = unsafe { cursor.as_ref() } {
                    if node.tag == tag && eq(&node.key) {
                        // SAFETY: as above.
                        return Some(unsafe { node.value.0.as_ref() });
                    }
                    cursor = node.next.load(Ordering::Acquire, guard);
                }
                // A writer that moved the chain's first entry into the inline
                // slot after `seen` may have unlinked it before the walk: the
                // acquire loads of the walk make its new version visible here.
                if !bucket.unchanged(seen) {
                    continue 'read;
                }
                return None;
            }
        }
    }

    /// [`find`](Self::find), handing out a strong reference.
    pub(crate) fn find_arc(
        &self,
        hash: u64,
        guard: &Guard,
        eq: impl FnMut(&K) -> bool,
    ) -> Option<Arc<T>> {
        let value: *const T = self.find(hash, guard, eq)?;
        // SAFETY: `value` is a pointer `Arc::into_raw` gave, and the map's own
        // strong count on it is dropped only through the epoch, after `guard`
        // (see `find`).
        Some(unsafe { super::clone_arc(value) })
    }

    /// Starts loading the bucket of `hash` into the cache, so that a `find`
    /// shortly after does not wait for memory. Lock-free; a hint only, it
    /// changes nothing.
    #[inline]
    pub(crate) fn prefetch(&self, hash: u64, guard: &Guard) {
        let array = self.buckets.load(Ordering::Acquire, guard);
        // SAFETY: see `find`.
        let buckets = unsafe { array.deref() };
        let bucket = buckets.bucket(tag(hash));
        prefetch_read(bucket as *const Bucket<K, T> as *const u8);
    }

    /// The second stage of a prefetch: the first overflow node of the bucket,
    /// once the bucket itself is (likely) in the cache, unless the inline
    /// entry is the one wanted.
    #[inline]
    pub(crate) fn prefetch_chain(&self, hash: u64, guard: &Guard) {
        let array = self.buckets.load(Ordering::Acquire, guard);
        // SAFETY: see `find`.
        let buckets = unsafe { array.deref() };
        let bucket = buckets.bucket(tag(hash));
        let meta = bucket.meta.load(Ordering::Relaxed);
        if meta & MOVED == 0 && tag_of(meta) != tag(hash) {
            let first = bucket.next.load(Ordering::Relaxed, guard);
            if first.tag() & summary_bit(tag(hash)) != 0 {
                prefetch_read(first.as_raw() as *const u8);
            }
        }
    }

    /// Inserts an entry. Takes one bucket lock; allocates a node only when
    /// the bucket's inline entry is taken.
    pub(crate) fn insert(&self, hash: u64, key: K, value: Arc<T>, guard: &Guard) {
        let value =
            ValuePtr(NonNull::new(Arc::into_raw(value).cast_mut()).expect("an Arc is never null"));
        let (bucket, meta) = self.lock_for(tag(hash), guard);
        Self::put(bucket, meta, tag(hash), &key, value, guard);
        let len = self.len.fetch_add(1, Ordering::Relaxed) + 1;
        self.after_write(len, guard);
    }

    /// Adds an entry to `bucket`, which the caller has locked (`meta` is its
    /// meta word), and unlocks it.
    fn put(bucket: &Bucket<K, T>, meta: u64, tag: u32, key: &K, value: ValuePtr<T>, guard: &Guard) {
        if meta & FULL == 0 {
            let full = bucket.fill(meta, tag, key, value);
            bucket.unlock(full);
            return;
        }
        let node = Owned::new(Node {
            tag,
            key: *key,
            value,
            next: Atomic::null(),
        });
        let head = bucket.next.load(Ordering::Relaxed, guard);
        node.next.store(head.with_tag(0), Ordering::Relaxed);
        let summary = head.tag() | summary_bit(tag);
        bucket
            .next
            .store(node.into_shared(guard).with_tag(summary), Ordering::Release);
        bucket.unlock(meta);
    }

    /// Removes the first entry with `hash` whose key and value satisfy `pred`.
    /// Takes one bucket lock. Returns whether an entry was removed.
    pub(crate) fn remove(
        &self,
        hash: u64,
        guard: &Guard,
        mut pred: impl FnMut(&K, &T) -> bool,
    ) -> bool {
        let tag = tag(hash);
        let (bucket, meta) = self.lock_for(tag, guard);
        if meta & FULL != 0 && tag_of(meta) == tag {
            // The bucket is locked: the inline entry cannot change under us.
            let key = bucket.read_key();
            let value = bucket.value.load(Ordering::Relaxed);
            // SAFETY: the inline entry of a full bucket holds a live value.
            if pred(&key, unsafe { &*value }) {
                let first = bucket.next.load(Ordering::Relaxed, guard).with_tag(0);
                // SAFETY: the bucket is locked, so its chain is stable, and its
                // nodes are valid under `guard` (see `find`).
                match unsafe { first.as_ref() } {
                    // Emptying the slot writes no words: a new version is
                    // enough for readers that copied the old ones.
                    None => bucket.unlock(bumped(meta) & !FULL),
                    Some(node) => {
                        // The first overflow entry moves into the slot, then
                        // its node is unlinked; in between it is in both.
                        let full = bucket.fill(meta, node.tag, &node.key, node.value);
                        Self::set_chain(bucket, node.next.load(Ordering::Relaxed, guard), guard);
                        bucket.unlock(full);
                        // SAFETY: the node is unlinked and its value now
                        // belongs to the slot; readers standing on it are
                        // protected by the deferral, and its `next` is intact.
                        unsafe { guard.defer_destroy(first) };
                    }
                }
                // SAFETY: `value` left the map above.
                unsafe { self.retire_value(value, guard) };
                self.after_remove(guard);
                return true;
            }
        }
        let mut link = &bucket.next;
        let mut cursor = link.load(Ordering::Relaxed, guard).with_tag(0);
        // SAFETY: as above.
        while let Some(node) = unsafe { cursor.as_ref() } {
            // SAFETY: a linked node holds a live value.
            if node.tag == tag && pred(&node.key, unsafe { node.value.0.as_ref() }) {
                let next = node.next.load(Ordering::Relaxed, guard);
                if std::ptr::eq(link, &bucket.next) {
                    Self::set_chain(bucket, next, guard);
                } else {
                    // The summary keeps the node's bit: a superset is enough.
                    link.store(next, Ordering::Release);
                }
                bucket.unlock(meta);
                let value = node.value.0.as_ptr();
                // SAFETY: the node is unlinked and the bucket unlocked; no new
                // reader can reach it (see above). In broken builds it may be
                // freed at once instead.
                unsafe { self.retire_node(cursor, guard) };
                // SAFETY: `value` left the map above.
                unsafe { self.retire_value(value, guard) };
                self.after_remove(guard);
                return true;
            }
            link = &node.next;
            cursor = node.next.load(Ordering::Relaxed, guard);
        }
        bucket.unlock(meta);
        false
    }

    /// Makes `head` the overflow chain of a bucket this thread has locked,
    /// with the chain's summary.
    fn set_chain<'g>(bucket: &Bucket<K, T>, head: Shared<'g, Node<K, T>>, guard: &'g Guard) {
        let mut summary = 0;
        let mut cursor = head;
        // SAFETY: the chain is reachable from a locked bucket (or about to
        // be), so it is stable and valid under the caller's guard.
        while let Some(node) = unsafe { cursor.as_ref() } {
            summary |= summary_bit(node.tag);
            cursor = node.next.load(Ordering::Relaxed, guard);
        }
        bucket.next.store(head.with_tag(summary), Ordering::Release);
    }

    fn after_remove(&self, guard: &Guard) {
        let len = self.len.fetch_sub(1, Ordering::Relaxed) - 1;
        self.after_write(len, guard);
    }

    /// Drops the map's strong count on `value` once no reader can see it.
    ///
    /// # Safety
    ///
    /// `value` left the map (no bucket or linked node holds it), and its count
    /// is retired only once.
    unsafe fn retire_value(&self, value: *mut T, guard: &Guard) {
        let value = ValuePtr(NonNull::new(value).expect("a map entry holds a value"));
        #[cfg(pcbhash_broken)]
        if self.broken.free_at_once {
            // SAFETY: none: this deliberately unsound branch exists only in
            // `--cfg pcbhash_broken` builds, switched on per table for the
            // sanitizer's self-test.
            drop(unsafe { Arc::from_raw(value.0.as_ptr()) });
            return;
        }
        // SAFETY: by the caller's contract, the count is the map's and is
        // dropped once, after every guard that could have seen it.
        unsafe { guard.defer_unchecked(move || drop(Arc::from_raw(value.0.as_ptr()))) };
    }

    /// Frees an unlinked node once no reader can stand on it.
    ///
    /// # Safety
    ///
    /// `node` is unlinked from every bucket and retired only once.
    unsafe fn retire_node(&self, node: Shared<'_, Node<K, T>>, guard: &Guard) {
        #[cfg(pcbhash_broken)]
        if self.broken.free_at_once {
            // SAFETY: none: deliberately unsound (see `retire_value`); a reader
            // pinned before the unlink may still stand on the node.
            drop(unsafe { node.into_owned() });
            return;
        }
        // SAFETY: by the caller's contract.
        unsafe { guard.defer_destroy(node) };
    }

    /// Figures for [`crate::Stats`]: entries, buckets, the longest chain.
    pub(crate) fn stats(&self, guard: &Guard) -> MapStats {
        let array = self.buckets.load(Ordering::Acquire, guard);
        // SAFETY: see `find`.
        let buckets = unsafe { array.deref() };
        let next = buckets.next.load(Ordering::Acquire, guard);
        let mut stats = MapStats {
            entries: self.len(),
            buckets: buckets.slots.len(),
            longest_chain: 0,
            resizing: !next.is_null(),
        };
        let mut measure = |buckets: &Buckets<K, T>| {
            for bucket in buckets.slots.iter() {
                let meta = bucket.meta.load(Ordering::Acquire);
                if meta & MOVED != 0 {
                    continue;
                }
                let mut chain = usize::from(meta & FULL != 0);
                let mut cursor = bucket.next.load(Ordering::Acquire, guard);
                // SAFETY: see `find`.
                while let Some(node) = unsafe { cursor.as_ref() } {
                    chain += 1;
                    cursor = node.next.load(Ordering::Acquire, guard);
                }
                stats.longest_chain = stats.longest_chain.max(chain);
            }
        };
        measure(buckets);
        // SAFETY: a non-null `next` is valid under `guard` (see `find`).
        if let Some(newer) = unsafe { next.as_ref() } {
            measure(newer);
        }
        stats
    }

    /// Locks the bucket that currently owns `tag`, following moved buckets.
    fn lock_for<'g>(&self, tag: u32, guard: &'g Guard) -> (&'g Bucket<K, T>, u64) {
        let mut array = self.buckets.load(Ordering::Acquire, guard);
        loop {
            // SAFETY: see `find`.
            let buckets = unsafe { array.deref() };
            let bucket = buckets.bucket(tag);
            match Self::lock_bucket(bucket) {
                Locked::Held(meta) => return (bucket, meta),
                Locked::Moved => array = buckets.next.load(Ordering::Acquire, guard),
            }
        }
    }

    fn lock_bucket(bucket: &Bucket<K, T>) -> Locked {
        loop {
            let meta = bucket.meta.load(Ordering::Relaxed);
            if meta & MOVED != 0 {
                return Locked::Moved;
            }
            if meta & LOCKED != 0 {
                spin_loop();
                continue;
            }
            if bucket
                .meta
                .compare_exchange_weak(meta, meta | LOCKED, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Locked::Held(meta | LOCKED);
            }
        }
    }

    /// Starts a resize when the load calls for one, and helps a running one.
    fn after_write(&self, len: usize, guard: &Guard) {
        let array = self.buckets.load(Ordering::Acquire, guard);
        // SAFETY: see `find`.
        let buckets = unsafe { array.deref() };
        let mut next = buckets.next.load(Ordering::Acquire, guard);
        if next.is_null() {
            let size = buckets.slots.len();
            let wanted = if len > size && size < 1 << 32 {
                size * 2
            } else if len < size / 8 && size > self.min_buckets {
                size / 2
            } else {
                return;
            };
            match buckets.next.compare_exchange(
                Shared::null(),
                Owned::new(Buckets::new(wanted)),
                Ordering::AcqRel,
                Ordering::Acquire,
                guard,
            ) {
                Ok(installed) => next = installed,
                Err(lost) => next = lost.current,
            }
        }
        self.migrate_chunk(array, next, guard);
    }

    /// Migrates up to [`MIGRATE_CHUNK`] buckets of `array` into `next`, and
    /// completes the resize if they were the last.
    fn migrate_chunk<'g>(
        &self,
        array: Shared<'g, Buckets<K, T>>,
        next: Shared<'g, Buckets<K, T>>,
        guard: &'g Guard,
    ) {
        // SAFETY: both arrays were loaded under `guard` (see `find`); `next` is
        // non-null here.
        let (old, new) = unsafe { (array.deref(), next.deref()) };
        let total = old.slots.len();
        let start = old.claimed.fetch_add(MIGRATE_CHUNK, Ordering::Relaxed);
        if start >= total {
            return;
        }
        let end = (start + MIGRATE_CHUNK).min(total);
        #[cfg(not(pcbhash_broken))]
        let moved_first = false;
        #[cfg(pcbhash_broken)]
        let moved_first = self.broken.resize_moved_first;
        for bucket in &old.slots[start..end] {
            Self::migrate_bucket(bucket, new, moved_first, guard);
        }
        let done = old.migrated.fetch_add(end - start, Ordering::AcqRel) + (end - start);
        if done == total
            && self
                .buckets
                .compare_exchange(array, next, Ordering::AcqRel, Ordering::Acquire, guard)
                .is_ok()
        {
            self.resizes.fetch_add(1, Ordering::Relaxed);
            #[cfg(pcbhash_broken)]
            if self.broken.free_at_once {
                // SAFETY: none: deliberately unsound (see `retire_value`); a
                // reader that loaded the old array may still read it.
                drop(unsafe { array.into_owned() });
                return;
            }
            // SAFETY: the map no longer points at the old array and every bucket
            // in it is `MOVED` (it owns no entries); readers that still hold it
            // are protected by the deferral. Dropping `Buckets` frees only the
            // bucket array: no value, no node, never the `next` array.
            unsafe { guard.defer_destroy(array) };
        }
    }

    /// Copies one old bucket's entries into `new`, then marks it `MOVED` and
    /// retires its nodes. The values change owner without a count changing.
    ///
    /// `moved_first` is always false outside the loom models' self-test: it
    /// marks the bucket `MOVED` *before* copying, the bug the order above
    /// prevents (a reader redirected to `new` misses entries not copied yet).
    fn migrate_bucket(
        bucket: &Bucket<K, T>,
        new: &Buckets<K, T>,
        moved_first: bool,
        guard: &Guard,
    ) {
        let meta = match Self::lock_bucket(bucket) {
            Locked::Held(meta) => meta,
            // Each bucket is claimed by exactly one migrating writer.
            Locked::Moved => return,
        };
        let moved = bumped(meta) & !(LOCKED | FULL | DIRTY) | MOVED;
        if moved_first {
            bucket.meta.store(moved, Ordering::Release);
        }
        let copy = |tag: u32, key: &K, value: ValuePtr<T>| {
            let target = new.bucket(tag);
            match Self::lock_bucket(target) {
                Locked::Held(target_meta) => Self::put(target, target_meta, tag, key, value, guard),
                Locked::Moved => {
                    unreachable!("a bucket array resizes only after it became current")
                }
            }
        };
        if meta & FULL != 0 {
            let value = NonNull::new(bucket.value.load(Ordering::Relaxed))
                .expect("a full bucket holds a value");
            copy(tag_of(meta), &bucket.read_key(), ValuePtr(value));
        }
        let head = bucket.next.load(Ordering::Relaxed, guard).with_tag(0);
        let mut cursor = head;
        // SAFETY: we hold the old bucket's lock; its chain is stable and valid.
        while let Some(node) = unsafe { cursor.as_ref() } {
            copy(node.tag, &node.key, node.value);
            cursor = node.next.load(Ordering::Relaxed, guard);
        }
        // Every entry is reachable from `new` now; redirect readers and writers.
        bucket.meta.store(moved, Ordering::Release);
        let mut cursor = head;
        // SAFETY: the old chain is unreachable from the bucket; nodes are retired
        // through the epoch, and their `next` pointers stay intact for readers
        // still walking them. Their values now belong to `new`.
        while let Some(node) = unsafe { cursor.as_ref() } {
            let next = node.next.load(Ordering::Relaxed, guard);
            // SAFETY: as above; each node is retired exactly once.
            unsafe { guard.defer_destroy(cursor) };
            cursor = next;
        }
    }
}

/// A software prefetch of the cache line at `ptr` (a no-op off x86_64).
#[inline(always)]
pub(super) fn prefetch_read(ptr: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` is a hint: it never faults and reads nothing the
    // program can observe, whatever the address; SSE is part of x86_64.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(ptr as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}

impl<K: InlineKey, T: Send + Sync + 'static> Drop for RawMap<K, T> {
    fn drop(&mut self) {
        let guard = crossbeam_epoch::pin();
        let mut current = self.buckets.load(Ordering::Relaxed, &guard);
        // Retire the entries of the current array (unless moved) and of every
        // array it forwards to, then the arrays themselves.
        // SAFETY: `&mut self` means no writer is running; a reader may still hold
        // references it loaded under its own guard, so everything is deferred.
        while let Some(buckets) = unsafe { current.as_ref() } {
            for bucket in buckets.slots.iter() {
                let meta = bucket.meta.load(Ordering::Relaxed);
                if meta & MOVED != 0 {
                    continue;
                }
                if meta & FULL != 0 {
                    // SAFETY: the map is being dropped; the slot's count is
                    // the map's and is retired once.
                    unsafe { self.retire_value(bucket.value.load(Ordering::Relaxed), &guard) };
                }
                let mut cursor = bucket.next.load(Ordering::Relaxed, &guard).with_tag(0);
                // SAFETY: as above; each node is owned by exactly one bucket.
                while let Some(node) = unsafe { cursor.as_ref() } {
                    let next = node.next.load(Ordering::Relaxed, &guard);
                    // SAFETY: as above.
                    unsafe {
                        self.retire_value(node.value.0.as_ptr(), &guard);
                        guard.defer_destroy(cursor);
                    }
                    cursor = next;
                }
            }
            let next = buckets.next.load(Ordering::Relaxed, &guard);
            // SAFETY: the array is unreachable once the map is gone.
            unsafe { guard.defer_destroy(current) };
            current = next;
        }
    }
}

impl<K: InlineKey, T: Send + Sync + 'static> std::fmt::Debug for RawMap<K, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawMap")
            .field("len", &self.len.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(pcbhash_loom)))]
mod tests {
    use super::*;

    impl InlineKey for u64 {
        fn to_words(&self) -> [u64; KEY_WORDS] {
            [*self, !*self, 0, 0, 0]
        }

        fn from_words(words: [u64; KEY_WORDS]) -> Self {
            words[0]
        }
    }

    fn map() -> RawMap<u64, u64> {
        RawMap::with_capacity(16)
    }

    fn spread(k: u64) -> u64 {
        k.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    #[test]
    fn insert_find_remove_through_resizes() {
        let map = map();
        let guard = crossbeam_epoch::pin();
        for k in 0..5000u64 {
            map.insert(spread(k), k, Arc::new(k * 10), &guard);
        }
        assert_eq!(map.len(), 5000);
        assert!(map.resizes() >= 1);
        for k in 0..5000u64 {
            let found = map.find(spread(k), &guard, |key| *key == k);
            assert_eq!(found.copied(), Some(k * 10), "key {k}");
        }
        for k in (0..5000u64).step_by(2) {
            assert!(map.remove(spread(k), &guard, |key, _| *key == k));
        }
        assert!(!map.remove(0, &guard, |key, _| *key == 0), "removed twice");
        for k in 0..5000u64 {
            let found = map.find(spread(k), &guard, |key| *key == k);
            assert_eq!(found.is_some(), k % 2 == 1, "key {k}");
        }
        assert_eq!(map.len(), 2500);
    }

    #[test]
    fn inline_entry_and_overflow_chain_follow_inserts_and_removals() {
        // Every hash lands in bucket 3 of 16; the tags differ above the mask.
        let hash = |k: u64| k << 8 | 3;
        let map = RawMap::<u64, u64>::with_buckets(16);
        let guard = crossbeam_epoch::pin();
        let found = |k: u64| map.find(hash(k), &guard, |key| *key == k).copied();
        let chain = || map.stats(&guard).longest_chain;
        map.insert(hash(1), 1, Arc::new(10), &guard);
        assert_eq!((found(1), found(2), chain()), (Some(10), None, 1));
        // The same tag with another key: the key decides.
        assert_eq!(map.find(hash(1), &guard, |key| *key == 9), None);
        map.insert(hash(2), 2, Arc::new(20), &guard);
        map.insert(hash(3), 3, Arc::new(30), &guard);
        assert_eq!(
            (found(1), found(2), found(3), chain()),
            (Some(10), Some(20), Some(30), 3)
        );
        // Removing the inline entry moves the chain's first entry into it.
        assert!(map.remove(hash(1), &guard, |key, _| *key == 1));
        assert_eq!(
            (found(1), found(2), found(3), chain()),
            (None, Some(20), Some(30), 2)
        );
        // Removing from the chain.
        map.insert(hash(4), 4, Arc::new(40), &guard);
        assert!(map.remove(hash(2), &guard, |key, _| *key == 2));
        assert_eq!(
            (found(2), found(3), found(4), chain()),
            (None, Some(30), Some(40), 2)
        );
        // A removal that finds nothing changes nothing.
        assert!(!map.remove(hash(5), &guard, |key, _| *key == 5));
        assert!(!map.remove(hash(3), &guard, |_, value| *value == 31));
        assert_eq!((found(3), found(4), chain()), (Some(30), Some(40), 2));
        // Down to empty, and the slot is reused.
        assert!(map.remove(hash(3), &guard, |key, _| *key == 3));
        assert!(map.remove(hash(4), &guard, |key, _| *key == 4));
        assert_eq!((found(3), found(4), chain(), map.len()), (None, None, 0, 0));
        map.insert(hash(6), 6, Arc::new(60), &guard);
        assert_eq!((found(6), chain()), (Some(60), 1));
    }

    #[test]
    fn chain_summary_lets_lookups_skip_only_absent_tags() {
        // Bucket 3 of 16; tags whose summary bits differ (bits 26 and up).
        let hash = |k: u64| k << 26 | 3;
        let map = RawMap::<u64, u64>::with_buckets(16);
        let guard = crossbeam_epoch::pin();
        let found = |k: u64| map.find(hash(k), &guard, |key| *key == k).copied();
        for k in 0..4 {
            map.insert(hash(k), k, Arc::new(k * 10), &guard);
        }
        // 0 is inline; 3, 2, 1 in the chain, newest first.
        assert_eq!(
            (found(0), found(1), found(2), found(3), found(4)),
            (Some(0), Some(10), Some(20), Some(30), None)
        );
        // An interior node, then the head: the others stay reachable.
        assert!(map.remove(hash(2), &guard, |key, _| *key == 2));
        assert!(map.remove(hash(3), &guard, |key, _| *key == 3));
        assert_eq!((found(1), found(2), found(3)), (Some(10), None, None));
        // The inline entry: the last chain entry moves in.
        assert!(map.remove(hash(0), &guard, |key, _| *key == 0));
        assert_eq!(
            (found(0), found(1), map.stats(&guard).longest_chain),
            (None, Some(10), 1)
        );
        map.insert(hash(5), 5, Arc::new(50), &guard);
        assert_eq!((found(1), found(5)), (Some(10), Some(50)));
    }

    #[test]
    fn every_value_is_released_once() {
        let values: Vec<Arc<u64>> = (0..3000).map(Arc::new).collect();
        {
            let map = map();
            let guard = crossbeam_epoch::pin();
            for (k, value) in values.iter().enumerate() {
                map.insert(spread(k as u64), k as u64, value.clone(), &guard);
            }
            for k in (0..3000u64).step_by(3) {
                assert!(map.remove(spread(k), &guard, |key, _| *key == k));
            }
            let held = map
                .find_arc(spread(1), &guard, |key| *key == 1)
                .expect("key 1 is in the map");
            assert!(Arc::ptr_eq(&held, &values[1]));
        }
        // Deferred drops run as the epoch advances, which other tests of this
        // binary may hold up for a while by staying pinned.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while values.iter().any(|value| Arc::strong_count(value) > 1)
            && std::time::Instant::now() < deadline
        {
            crossbeam_epoch::pin().flush();
            std::thread::yield_now();
        }
        for (k, value) in values.iter().enumerate() {
            assert_eq!(Arc::strong_count(value), 1, "value {k}");
        }
    }

    #[test]
    fn shrinks_after_mass_removal() {
        let map = map();
        let guard = crossbeam_epoch::pin();
        for k in 0..4096u64 {
            map.insert(k, k, Arc::new(k), &guard);
        }
        let grown = map.stats(&guard).buckets;
        for k in 0..4090u64 {
            assert!(map.remove(k, &guard, |key, _| *key == k));
        }
        // Finish any migration in flight with a few more writes.
        for k in 10_000..10_200u64 {
            map.insert(k, k, Arc::new(k), &guard);
            map.remove(k, &guard, |key, _| *key == k);
        }
        let stats = map.stats(&guard);
        assert!(stats.buckets < grown, "{} !< {grown}", stats.buckets);
        for k in 4090..4096u64 {
            assert!(map.find(k, &guard, |key| *key == k).is_some());
        }
    }
}

#[cfg(all(test, pcbhash_loom))]
mod loom_tests {
    use super::*;

    impl InlineKey for u64 {
        fn to_words(&self) -> [u64; KEY_WORDS] {
            [*self, 0, 0, 0, 0]
        }

        fn from_words(words: [u64; KEY_WORDS]) -> Self {
            words[0]
        }
    }

    /// A map holding key 1 (value 10) in the inline slot of bucket 7; a
    /// writer thread runs `write` while the model's thread looks key 1 up,
    /// and `check` judges what it found.
    fn race(write: fn(&RawMap<u64, u64>, &Guard), check: fn(Option<u64>) -> bool) {
        loom::model(move || {
            let map = Arc::new(RawMap::<u64, u64>::with_buckets(16));
            map.insert(7, 1, Arc::new(10), &crossbeam_epoch::pin());
            let writer = {
                let map = map.clone();
                loom::thread::spawn(move || write(&map, &crossbeam_epoch::pin()))
            };
            let guard = crossbeam_epoch::pin();
            let found = map.find(7, &guard, |k| *k == 1).copied();
            assert!(check(found), "found {found:?}");
            drop(guard);
            writer.join().unwrap();
        });
    }

    /// The entry is replaced by another under the same key (inserted into
    /// the chain, then moved into the slot): a lookup always finds one.
    #[test]
    fn replace_inline_entry_vs_find() {
        race(
            |map, guard| {
                map.insert(7, 1, Arc::new(20), guard);
                assert!(map.remove(7, guard, |_, v| *v == 10));
            },
            |found| matches!(found, Some(10 | 20)),
        );
    }

    /// The inline slot is emptied and refilled with another key while a
    /// lookup copies it: the lookup finds the old entry or nothing, never the
    /// new entry under the old key.
    #[test]
    fn reuse_inline_slot_vs_find() {
        race(
            |map, guard| {
                assert!(map.remove(7, guard, |k, _| *k == 1));
                map.insert(7, 2, Arc::new(20), guard);
            },
            |found| matches!(found, None | Some(10)),
        );
    }
}
