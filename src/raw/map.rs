//! `RawMap`: a chained hash multimap with lock-free readers and incremental resize.
//!
//! # Shape
//!
//! A map points to a *bucket array*. Each bucket is one atomic pointer to the
//! head of a singly linked chain of nodes; a node holds the full 64-bit hash,
//! the key and the value. The two low bits of the head pointer are tags:
//!
//! - `LOCKED`: a writer owns the bucket. Writers take it with a compare-exchange
//!   and release it with the store that publishes their change. Readers ignore it.
//! - `MOVED`: the bucket's nodes have been copied into the next bucket array;
//!   everyone, reader or writer, continues there. The tag is permanent.
//!
//! Nodes are aligned to 64 bytes, which leaves four more bits, and an unlocked
//! head uses them to describe its chain: `SINGLE` when the chain has exactly
//! one node, and three bits of that node's hash (its *fingerprint*). A lookup
//! that finds a single node with another fingerprint is a miss without loading
//! the node: most exact-index misses (a SYN, a packet for a closed flow) then
//! cost one cache miss, the bucket's, instead of two. Writers compute the tag
//! under the bucket lock each time they publish a head; taking the lock clears
//! it, so a reader never trusts a tag while the chain is being changed.
//!
//! # Resize
//!
//! When the load passes one entry per bucket (or falls under one per eight), a
//! writer installs a *next* array of twice (half) the size. From then on every
//! write helps by migrating a chunk of buckets: it locks an old bucket, copies
//! each node into the next array, marks the old bucket `MOVED` and retires the
//! old nodes. Copies are inserted before the old bucket is marked, so a reader
//! always finds an entry in one of the two places (no false negatives), and a
//! lookup visits at most the old and the new bucket. When the last bucket has
//! moved, the map's pointer is swung to the next array and the old array is
//! retired. No step stops readers, and writers only ever wait for the one bucket
//! they need.

use crossbeam_epoch::{Atomic, Guard, Owned, Shared};

use crate::sync::{spin_loop, AtomicU64, AtomicUsize, Ordering};

const LOCKED: usize = 0b01;
const MOVED: usize = 0b10;
/// On an unlocked head: the chain is one node, whose fingerprint follows.
const SINGLE: usize = 0b100;
/// On an unlocked head with `SINGLE`: the node's [`fingerprint`].
const FINGERPRINT: usize = 0b11_1000;

/// Three bits of a hash, placed where a head's tag keeps them. The high bits:
/// the low ones pick the bucket, so within a bucket they are all alike.
#[inline]
fn fingerprint(hash: u64) -> usize {
    ((hash >> 61) as usize) << 3
}

/// How many buckets one write migrates while a resize is in progress. One
/// under loom, so that a model with a few buckets sees a migration spread over
/// several writes.
#[cfg(not(pcbhash_loom))]
const MIGRATE_CHUNK: usize = 64;
#[cfg(pcbhash_loom)]
const MIGRATE_CHUNK: usize = 1;

/// One entry. Aligned to a cache line: the allocator's 16-byte alignment
/// would split most 64-byte nodes over two lines, and a hit would then miss
/// the cache twice, once for the hash and once for the rest of the key.
#[repr(align(64))]
struct Node<K, V> {
    hash: u64,
    key: K,
    value: V,
    next: Atomic<Node<K, V>>,
}

/// One bucket array.
///
/// This type maintains the invariant that `next` is non-null whenever any bucket
/// carries the `MOVED` tag, and that a `MOVED` bucket owns no nodes.
struct Buckets<K, V> {
    heads: Box<[Atomic<Node<K, V>>]>,
    mask: usize,
    next: Atomic<Buckets<K, V>>,
    /// The next bucket index a migrating writer may claim.
    claimed: AtomicUsize,
    /// How many buckets have been migrated.
    migrated: AtomicUsize,
}

impl<K, V> Buckets<K, V> {
    fn new(len: usize) -> Self {
        debug_assert!(len.is_power_of_two());
        Self {
            heads: (0..len).map(|_| Atomic::null()).collect(),
            mask: len - 1,
            next: Atomic::null(),
            claimed: AtomicUsize::new(0),
            migrated: AtomicUsize::new(0),
        }
    }

    #[inline]
    fn bucket(&self, hash: u64) -> &Atomic<Node<K, V>> {
        &self.heads[hash as usize & self.mask]
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

/// A concurrent hash multimap from precomputed hashes and keys to values.
///
/// Readers take no lock and do no read-modify-write. Writers lock one bucket.
/// The map does not enforce key uniqueness: callers that need it check and
/// insert under a lock of their own.
pub(crate) struct RawMap<K: Send + 'static, V: Send + 'static> {
    buckets: Atomic<Buckets<K, V>>,
    len: AtomicUsize,
    min_buckets: usize,
    resizes: AtomicU64,
    /// Deliberately broken synchronisation, for the loom models' own test.
    #[cfg(pcbhash_broken)]
    broken: crate::sync::Broken,
}

/// A locked bucket and its (untagged) head.
type HeldBucket<'g, K, V> = (&'g Atomic<Node<K, V>>, Shared<'g, Node<K, V>>);

/// The result of trying to lock a bucket.
enum Locked<'g, K, V> {
    /// The bucket is ours; here is its head, untagged.
    Held(Shared<'g, Node<K, V>>),
    /// The bucket moved to the next array.
    Moved,
}

impl<K: Clone + Send + 'static, V: Clone + Send + 'static> RawMap<K, V> {
    /// A map sized for about `capacity` entries before its first resize (at
    /// least 16 buckets).
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self::with_buckets(capacity.max(16))
    }

    /// A map that starts with `buckets` buckets (rounded up to a power of two,
    /// at least one) and never shrinks below that. It grows when it holds more
    /// entries than buckets: a one-bucket map resizes on its second insert.
    pub(crate) fn with_buckets(buckets: usize) -> Self {
        let len = buckets.max(1).next_power_of_two();
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

    /// The first value whose hash is `hash` and whose key satisfies `eq`.
    ///
    /// Lock-free: acquire loads only, no allocation. Visits at most two buckets
    /// while a resize is in progress.
    #[inline]
    pub(crate) fn find<'g>(
        &self,
        hash: u64,
        guard: &'g Guard,
        mut eq: impl FnMut(&K) -> bool,
    ) -> Option<(&'g K, &'g V)> {
        let mut array = self.buckets.load(Ordering::Acquire, guard);
        loop {
            // SAFETY: bucket arrays are retired with `defer_destroy` only after the
            // map pointer stopped pointing at them, and `next` pointers are set
            // once to arrays that outlive their predecessor; `guard` keeps every
            // array loaded under it alive. The map's pointer is never null.
            let buckets = unsafe { array.deref() };
            let head = buckets.bucket(hash).load(Ordering::Acquire, guard);
            if head.tag() & MOVED != 0 {
                array = buckets.next.load(Ordering::Acquire, guard);
                continue;
            }
            if head.tag() & SINGLE != 0 && head.tag() & FINGERPRINT != fingerprint(hash) {
                return None;
            }
            let mut cursor = head;
            // SAFETY: nodes reachable from a bucket are retired with
            // `defer_destroy` only after being unlinked, so a node loaded under
            // `guard` stays valid while `guard` lives.
            while let Some(node) = unsafe { cursor.as_ref() } {
                if node.hash == hash && eq(&node.key) {
                    return Some((&node.key, &node.value));
                }
                cursor = node.next.load(Ordering::Acquire, guard);
            }
            return None;
        }
    }

    /// Starts loading the bucket of `hash` and, if its chain is not empty, the
    /// chain's first node into the cache, so that a `find` shortly after does
    /// not wait for memory. Lock-free; a hint only, it changes nothing.
    #[inline]
    pub(crate) fn prefetch(&self, hash: u64, guard: &Guard) {
        let array = self.buckets.load(Ordering::Acquire, guard);
        // SAFETY: see `find`.
        let buckets = unsafe { array.deref() };
        let bucket = buckets.bucket(hash);
        prefetch_read(bucket as *const Atomic<Node<K, V>> as *const u8);
    }

    /// The second stage of a prefetch: the first node of the bucket's chain,
    /// once the bucket itself is (likely) in the cache.
    #[inline]
    pub(crate) fn prefetch_chain(&self, hash: u64, guard: &Guard) {
        let array = self.buckets.load(Ordering::Acquire, guard);
        // SAFETY: see `find`.
        let buckets = unsafe { array.deref() };
        let head = buckets.bucket(hash).load(Ordering::Relaxed, guard);
        if head.tag() & MOVED == 0 && !head.is_null() {
            prefetch_read(head.as_raw() as *const u8);
        }
    }

    /// Inserts an entry. Takes one bucket lock; allocates one node.
    pub(crate) fn insert(&self, hash: u64, key: K, value: V, guard: &Guard) {
        let node = Owned::new(Node {
            hash,
            key,
            value,
            next: Atomic::null(),
        });
        let (bucket, head) = self.lock_for(hash, guard);
        node.next.store(head, Ordering::Relaxed);
        // Publishing the node and releasing the lock is one store.
        Self::publish(bucket, node.into_shared(guard), guard);
        let len = self.len.fetch_add(1, Ordering::Relaxed) + 1;
        self.after_write(len, guard);
    }

    /// Removes the first entry with `hash` whose key and value satisfy `pred`.
    /// Takes one bucket lock. Returns whether an entry was removed.
    pub(crate) fn remove(
        &self,
        hash: u64,
        guard: &Guard,
        mut pred: impl FnMut(&K, &V) -> bool,
    ) -> bool {
        let (bucket, head) = self.lock_for(hash, guard);
        let mut link = bucket;
        let mut cursor = head;
        // SAFETY: we hold the bucket lock, so the chain cannot change under us,
        // and every node in it is valid (see `find`).
        while let Some(node) = unsafe { cursor.as_ref() } {
            if node.hash == hash && pred(&node.key, &node.value) {
                let next = node.next.load(Ordering::Relaxed, guard);
                if std::ptr::eq(link, bucket) {
                    // Unlinking the head also releases the lock.
                    Self::publish(bucket, next, guard);
                } else {
                    link.store(next, Ordering::Release);
                    Self::publish(bucket, head, guard);
                }
                #[cfg(pcbhash_broken)]
                if self.broken.free_at_once {
                    // SAFETY: none: this deliberately unsound branch exists only
                    // in `--cfg pcbhash_broken` builds, switched on per table for
                    // the sanitizer's self-test (a reader pinned before the
                    // unlink may still stand on the node).
                    drop(unsafe { cursor.into_owned() });
                    let len = self.len.fetch_sub(1, Ordering::Relaxed) - 1;
                    self.after_write(len, guard);
                    return true;
                }
                // SAFETY: the node is unlinked and the bucket lock is released;
                // no new reader can reach it, current readers are protected by
                // the deferral. Its `next` is left intact so that a reader
                // standing on it can continue.
                unsafe { guard.defer_destroy(cursor) };
                let len = self.len.fetch_sub(1, Ordering::Relaxed) - 1;
                self.after_write(len, guard);
                return true;
            }
            link = &node.next;
            cursor = node.next.load(Ordering::Relaxed, guard);
        }
        Self::publish(bucket, head, guard);
        false
    }

    /// Figures for [`crate::Stats`]: entries, buckets, the longest chain.
    pub(crate) fn stats(&self, guard: &Guard) -> MapStats {
        let array = self.buckets.load(Ordering::Acquire, guard);
        // SAFETY: see `find`.
        let buckets = unsafe { array.deref() };
        let next = buckets.next.load(Ordering::Acquire, guard);
        let mut stats = MapStats {
            entries: self.len(),
            buckets: buckets.heads.len(),
            longest_chain: 0,
            resizing: !next.is_null(),
        };
        let mut measure = |buckets: &Buckets<K, V>| {
            for head in buckets.heads.iter() {
                let mut chain = 0;
                let mut cursor = head.load(Ordering::Acquire, guard);
                if cursor.tag() & MOVED != 0 {
                    continue;
                }
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

    /// Locks the bucket that currently owns `hash`, following moved buckets.
    fn lock_for<'g>(&self, hash: u64, guard: &'g Guard) -> HeldBucket<'g, K, V> {
        let mut array = self.buckets.load(Ordering::Acquire, guard);
        loop {
            // SAFETY: see `find`.
            let buckets = unsafe { array.deref() };
            let bucket = buckets.bucket(hash);
            match Self::lock_bucket(bucket, guard) {
                Locked::Held(head) => return (bucket, head),
                Locked::Moved => array = buckets.next.load(Ordering::Acquire, guard),
            }
        }
    }

    fn lock_bucket<'g>(bucket: &Atomic<Node<K, V>>, guard: &'g Guard) -> Locked<'g, K, V> {
        loop {
            let head = bucket.load(Ordering::Relaxed, guard);
            if head.tag() & MOVED != 0 {
                return Locked::Moved;
            }
            if head.tag() & LOCKED != 0 {
                spin_loop();
                continue;
            }
            // Locking drops the chain's tag (see `publish`).
            if bucket
                .compare_exchange_weak(
                    head,
                    head.with_tag(LOCKED),
                    Ordering::Acquire,
                    Ordering::Relaxed,
                    guard,
                )
                .is_ok()
            {
                return Locked::Held(head.with_tag(0));
            }
        }
    }

    /// Stores `head` (untagged) into a bucket this thread has locked,
    /// releasing the lock, with the tag that describes the chain: `SINGLE`
    /// and the node's fingerprint for a chain of one node, nothing otherwise.
    fn publish<'g>(bucket: &Atomic<Node<K, V>>, head: Shared<'g, Node<K, V>>, guard: &'g Guard) {
        // SAFETY: the caller holds the bucket's lock, so the chain is stable,
        // and its nodes were loaded under `guard` (see `find`).
        let tag = match unsafe { head.as_ref() } {
            Some(node) if node.next.load(Ordering::Relaxed, guard).is_null() => {
                SINGLE | fingerprint(node.hash)
            }
            _ => 0,
        };
        bucket.store(head.with_tag(tag), Ordering::Release);
    }

    /// Starts a resize when the load calls for one, and helps a running one.
    fn after_write(&self, len: usize, guard: &Guard) {
        let array = self.buckets.load(Ordering::Acquire, guard);
        // SAFETY: see `find`.
        let buckets = unsafe { array.deref() };
        let mut next = buckets.next.load(Ordering::Acquire, guard);
        if next.is_null() {
            let size = buckets.heads.len();
            let wanted = if len > size {
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
        array: Shared<'g, Buckets<K, V>>,
        next: Shared<'g, Buckets<K, V>>,
        guard: &'g Guard,
    ) {
        // SAFETY: both arrays were loaded under `guard` (see `find`); `next` is
        // non-null here.
        let (old, new) = unsafe { (array.deref(), next.deref()) };
        let total = old.heads.len();
        let start = old.claimed.fetch_add(MIGRATE_CHUNK, Ordering::Relaxed);
        if start >= total {
            return;
        }
        let end = (start + MIGRATE_CHUNK).min(total);
        #[cfg(not(pcbhash_broken))]
        let moved_first = false;
        #[cfg(pcbhash_broken)]
        let moved_first = self.broken.resize_moved_first;
        for index in start..end {
            Self::migrate_bucket(&old.heads[index], new, moved_first, guard);
        }
        let done = old.migrated.fetch_add(end - start, Ordering::AcqRel) + (end - start);
        if done == total
            && self
                .buckets
                .compare_exchange(array, next, Ordering::AcqRel, Ordering::Acquire, guard)
                .is_ok()
        {
            self.resizes.fetch_add(1, Ordering::Relaxed);
            // SAFETY: the map no longer points at the old array and every bucket
            // in it is `MOVED` (it owns no nodes); readers that still hold it are
            // protected by the deferral. Dropping `Buckets` frees only the head
            // array, never the `next` array it points to.
            unsafe { guard.defer_destroy(array) };
        }
    }

    /// Copies one old bucket into `new`, then marks it `MOVED` and retires its
    /// nodes.
    ///
    /// `moved_first` is always false outside the loom models' self-test: it
    /// marks the bucket `MOVED` *before* copying, the bug the order above
    /// prevents (a reader redirected to `new` misses entries not copied yet).
    fn migrate_bucket(
        bucket: &Atomic<Node<K, V>>,
        new: &Buckets<K, V>,
        moved_first: bool,
        guard: &Guard,
    ) {
        let head = match Self::lock_bucket(bucket, guard) {
            Locked::Held(head) => head,
            // Each bucket is claimed by exactly one migrating writer.
            Locked::Moved => return,
        };
        if moved_first {
            bucket.store(Shared::null().with_tag(MOVED), Ordering::Release);
        }
        let mut cursor = head;
        // SAFETY: we hold the old bucket's lock; its chain is stable and valid.
        while let Some(node) = unsafe { cursor.as_ref() } {
            let copy = Owned::new(Node {
                hash: node.hash,
                key: node.key.clone(),
                value: node.value.clone(),
                next: Atomic::null(),
            });
            let target = new.bucket(node.hash);
            match Self::lock_bucket(target, guard) {
                Locked::Held(target_head) => {
                    copy.next.store(target_head, Ordering::Relaxed);
                    Self::publish(target, copy.into_shared(guard), guard);
                }
                Locked::Moved => {
                    unreachable!("a bucket array resizes only after it became current")
                }
            }
            cursor = node.next.load(Ordering::Relaxed, guard);
        }
        // Every entry is reachable from `new` now; redirect readers and writers.
        bucket.store(Shared::null().with_tag(MOVED), Ordering::Release);
        let mut cursor = head;
        // SAFETY: the old chain is unreachable from the bucket; nodes are retired
        // through the epoch, and their `next` pointers stay intact for readers
        // still walking them.
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
fn prefetch_read(ptr: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` is a hint: it never faults and reads nothing the
    // program can observe, whatever the address; SSE is part of x86_64.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(ptr as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}

impl<K: Send + 'static, V: Send + 'static> Drop for RawMap<K, V> {
    fn drop(&mut self) {
        let guard = crossbeam_epoch::pin();
        let array = self.buckets.load(Ordering::Relaxed, &guard);
        let mut current = array;
        // Retire the nodes of the current array (unless moved) and of every array
        // it forwards to, then the arrays themselves.
        // SAFETY: `&mut self` means no writer is running; a reader may still hold
        // references it loaded under its own guard, so everything is deferred.
        while let Some(buckets) = unsafe { current.as_ref() } {
            for head in buckets.heads.iter() {
                let mut cursor = head.load(Ordering::Relaxed, &guard);
                if cursor.tag() & MOVED != 0 {
                    continue;
                }
                // SAFETY: as above; each node is owned by exactly one bucket.
                while let Some(node) = unsafe { cursor.as_ref() } {
                    let next = node.next.load(Ordering::Relaxed, &guard);
                    // SAFETY: the map is being dropped; no new reader can reach
                    // the node.
                    unsafe { guard.defer_destroy(cursor) };
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

impl<K: Send + 'static, V: Send + 'static> std::fmt::Debug for RawMap<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawMap")
            .field("len", &self.len.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(pcbhash_loom)))]
mod tests {
    use super::*;

    fn map() -> RawMap<u64, u64> {
        RawMap::with_capacity(16)
    }

    #[test]
    fn insert_find_remove_through_resizes() {
        let map = map();
        let guard = crossbeam_epoch::pin();
        for k in 0..5000u64 {
            map.insert(k.wrapping_mul(0x9E37_79B9_7F4A_7C15), k, k * 10, &guard);
        }
        assert_eq!(map.len(), 5000);
        assert!(map.resizes() >= 1);
        for k in 0..5000u64 {
            let found = map.find(k.wrapping_mul(0x9E37_79B9_7F4A_7C15), &guard, |key| {
                *key == k
            });
            assert_eq!(found.map(|(_, v)| *v), Some(k * 10), "key {k}");
        }
        for k in (0..5000u64).step_by(2) {
            assert!(
                map.remove(k.wrapping_mul(0x9E37_79B9_7F4A_7C15), &guard, |key, _| *key
                    == k)
            );
        }
        assert!(!map.remove(0, &guard, |key, _| *key == 0), "removed twice");
        for k in 0..5000u64 {
            let found = map.find(k.wrapping_mul(0x9E37_79B9_7F4A_7C15), &guard, |key| {
                *key == k
            });
            assert_eq!(found.is_some(), k % 2 == 1, "key {k}");
        }
        assert_eq!(map.len(), 2500);
    }

    #[test]
    fn chain_tags_follow_inserts_and_removals() {
        // Every hash lands in bucket 3; the top three bits are the fingerprint.
        let hash = |fp: u64| fp << 61 | 3;
        let map = RawMap::<u64, u64>::with_buckets(16);
        let guard = crossbeam_epoch::pin();
        let found = |fp: u64, key: u64| map.find(hash(fp), &guard, |k| *k == key).map(|(_, v)| *v);
        map.insert(hash(5), 5, 50, &guard);
        for fp in 0..8 {
            assert_eq!(found(fp, fp), (fp == 5).then_some(50), "fingerprint {fp}");
        }
        // The same fingerprint with another key: the node is compared.
        assert_eq!(found(5, 6), None);
        // Two nodes: no single-node tag, both found, misses still misses.
        map.insert(hash(2), 2, 20, &guard);
        assert_eq!(
            (found(5, 5), found(2, 2), found(7, 7)),
            (Some(50), Some(20), None)
        );
        // Back to one node, the other one: its own fingerprint is published.
        assert!(map.remove(hash(5), &guard, |k, _| *k == 5));
        assert_eq!((found(5, 5), found(2, 2)), (None, Some(20)));
        // The head removed while another node stays behind it.
        map.insert(hash(1), 1, 10, &guard);
        assert!(map.remove(hash(1), &guard, |k, _| *k == 1));
        assert_eq!((found(1, 1), found(2, 2)), (None, Some(20)));
        // A removal that finds nothing leaves the tag right.
        assert!(!map.remove(hash(4), &guard, |k, _| *k == 4));
        assert_eq!((found(2, 2), found(4, 4)), (Some(20), None));
    }

    #[test]
    fn shrinks_after_mass_removal() {
        let map = map();
        let guard = crossbeam_epoch::pin();
        for k in 0..4096u64 {
            map.insert(k, k, k, &guard);
        }
        let grown = map.stats(&guard).buckets;
        for k in 0..4090u64 {
            assert!(map.remove(k, &guard, |key, _| *key == k));
        }
        // Finish any migration in flight with a few more writes.
        for k in 10_000..10_200u64 {
            map.insert(k, k, k, &guard);
            map.remove(k, &guard, |key, _| *key == k);
        }
        let stats = map.stats(&guard);
        assert!(stats.buckets < grown, "{} !< {grown}", stats.buckets);
        for k in 4090..4096u64 {
            assert!(map.find(k, &guard, |key| *key == k).is_some());
        }
    }
}
