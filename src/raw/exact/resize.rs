//! Resizing the exact index: a write that crosses the load threshold
//! allocates the next array (zeroed, holding no lock), and every write then
//! migrates a chunk of homes into it until none is left; the old array is
//! retired by the writer that finished the migration, and freed by a later
//! write once no reader holds it (`graveyard`). See the parent
//! module's docs ("Resize") for the protocol and why lookups stay correct
//! during it.

use crossbeam_epoch::{Guard, Owned, Shared};

use super::bucket::*;
use super::*;
use crate::sync::Ordering;

impl<T: ExactEntry> ExactIndex<T> {
    /// Starts a resize when the load calls for one, and helps a running one.
    /// `count` is this write's stripe after the write. Inline: most writes
    /// leave here after three loads and a comparison.
    #[inline]
    pub(super) fn after_write(&self, count: usize, guard: &Guard) {
        self.graveyard.free();
        let array = self.array.load(Ordering::Acquire, guard);
        // SAFETY: epoch retirement (see `raw`): loaded under `guard`; the
        // index's pointer is never null.
        let buckets = unsafe { array.deref() };
        let next = buckets.next.load(Ordering::Acquire, guard);
        if !next.is_null() {
            self.migrate_chunk(array, next, guard);
            return;
        }
        let size = buckets.buckets.len();
        let grow_at = size * MAX_LOAD.max(1);
        let estimate = (count as isize).max(0) as usize * STRIPES;
        if estimate > grow_at || (estimate < grow_at / 8 && size > self.min_buckets) {
            self.resize_if_loaded(array, estimate, guard);
        }
    }

    /// [`after_write`](Self::after_write) past a threshold by the
    /// estimate: starts a resize if the whole count agrees, then migrates
    /// the first chunk.
    #[cold]
    #[inline(never)]
    fn resize_if_loaded<'g>(&self, array: Shared<'g, Buckets>, estimate: usize, guard: &'g Guard) {
        // SAFETY: as in `after_write`, which loaded it under `guard`.
        let buckets = unsafe { array.deref() };
        let size = buckets.buckets.len();
        let grow_at = size * MAX_LOAD.max(1);
        let shrink_at = grow_at / 8;
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
        let next = Self::install_next(buckets, wanted, guard);
        self.migrate_chunk(array, next, guard);
    }

    /// Allocates a zeroed array of `len` buckets, holding no lock, and makes
    /// it the next array of `buckets` unless another writer installed one
    /// first. Returns the next array.
    pub(super) fn install_next<'g>(
        buckets: &Buckets,
        len: usize,
        guard: &'g Guard,
    ) -> Shared<'g, Buckets> {
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
    pub(super) fn make_room(&self, guard: &Guard) -> bool {
        let array = self.array.load(Ordering::Acquire, guard);
        // SAFETY: epoch retirement (see `raw`): loaded under `guard`; the
        // index's pointer is never null.
        let old = unsafe { array.deref() };
        let mut next = old.next.load(Ordering::Acquire, guard);
        if next.is_null() {
            let size = old.buckets.len();
            if self.len() <= size * MAX_LOAD.max(1) || size >= 1 << 32 {
                return false;
            }
            next = Self::install_next(old, size * 2, guard);
        }
        // SAFETY: links outlive the unlink (see `raw`): non-null here, and
        // loaded under `guard` from an array loaded under it.
        let new = unsafe { next.deref() };
        let mut all_fit = true;
        for home in 0..old.buckets.len() {
            if let Some(meta) = old.bucket(home).lock() {
                if self.migrate_locked(old, home, meta, new) {
                    self.count_migrated(array, next, 1, guard);
                } else {
                    all_fit = false;
                }
            }
        }
        all_fit
    }

    /// Migrates up to [`MIGRATE_CHUNK`] homes of `array` into `next`.
    pub(super) fn migrate_chunk<'g>(
        &self,
        array: Shared<'g, Buckets>,
        next: Shared<'g, Buckets>,
        guard: &'g Guard,
    ) {
        // SAFETY: epoch retirement and links outlive the unlink (see `raw`):
        // both were loaded under `guard`, `next` from `array`; `next` is
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
                    .is_some_and(|meta| self.migrate_locked(old, home, meta, new))
            })
            .count();
        self.count_migrated(array, next, moved, guard);
    }

    /// Adds `moved` homes to the migration of `array` into `next`, and
    /// completes the resize if they were the last.
    pub(super) fn count_migrated<'g>(
        &self,
        array: Shared<'g, Buckets>,
        next: Shared<'g, Buckets>,
        moved: usize,
        guard: &'g Guard,
    ) {
        // SAFETY: epoch retirement (see `raw`): `array` was loaded under
        // `guard` by the caller, and is never null.
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
            if self.frees_at_once() {
                // SAFETY: none: deliberately unsound (see `remove`); a reader
                // that loaded the old array may still read it.
                drop(unsafe { array.into_owned() });
                return;
            }
            // The epoch hands the array to the graveyard once no reader
            // holds it; the next write frees it (see `graveyard`).
            let graveyard = self.graveyard.clone();
            let retired = array.as_raw() as usize;
            // SAFETY: the index no longer points at the old array and every
            // home in it is `MOVED` (it owns no entries); readers that still
            // hold it are protected by the deferral, after which this is the
            // only pointer to it. Dropping `Buckets` frees the bucket array
            // alone: no value, never the `next` array.
            unsafe {
                guard.defer_unchecked(move || {
                    graveyard.bury(*Owned::from_raw(retired as *mut Buckets).into_box());
                });
            }
        }
    }

    /// Copies the entries of `home` in `old`, which the caller has locked
    /// (`meta` is its meta word), into `new`, then marks the home `MOVED` in
    /// the store that unlocks it. The values change owner without a count
    /// changing. Returns false if an entry did not fit `new`: the copies are
    /// then taken back, and the home stays in `old`, unlocked.
    ///
    /// In the loom models' self-test (`resize-moved-first`), the home is
    /// marked `MOVED` *before* its entries are copied: the bug this order
    /// prevents, a reader sent on to `new` before the entries are there.
    pub(super) fn migrate_locked(
        &self,
        old: &Buckets,
        home: usize,
        meta: u64,
        new: &Buckets,
    ) -> bool {
        let bucket = old.bucket(home);
        #[cfg(pcbhash_broken)]
        if self.broken.resize_moved_first {
            bucket.meta.store(meta | MOVED, Ordering::Release);
        }
        #[cfg(not(pcbhash_broken))]
        let _ = self;
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
    pub(super) fn copy_entry(new: &Buckets, word: u64) -> bool {
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
    pub(super) fn uncopy_entry(new: &Buckets, word: u64) {
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
