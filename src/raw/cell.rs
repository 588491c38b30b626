//! `EpochCell`: a value that readers load lock-free and writers replace.

use crossbeam_epoch::{Atomic, Guard, Owned};

use crate::sync::Ordering;

/// A heap value published through an atomic pointer.
///
/// This type maintains the invariant that its pointer is never null and that
/// every value it ever pointed to is freed only after no guard that could have
/// loaded it remains: replaced values are retired with `defer_destroy`, and the
/// last value is freed when the cell itself is dropped (by which time no borrow
/// of the cell, and so no reference obtained from [`EpochCell::load`], exists).
pub(crate) struct EpochCell<T: Send + 'static> {
    ptr: Atomic<T>,
}

impl<T: Send + 'static> EpochCell<T> {
    pub(crate) fn new(value: T) -> Self {
        Self {
            ptr: Atomic::new(value),
        }
    }

    /// The current value. Lock-free: one acquire load.
    #[inline]
    pub(crate) fn load<'g>(&'g self, guard: &'g Guard) -> &'g T {
        let shared = self.ptr.load(Ordering::Acquire, guard);
        // SAFETY: the pointer is never null (set from an `Owned` in `new` and
        // `replace`), and a value is destroyed only after it was swapped out and
        // every guard pinned before the swap is gone (`defer_destroy` below), or
        // when the cell is dropped, which cannot happen while `self` is borrowed
        // for `'g`.
        unsafe { shared.deref() }
    }

    /// Publishes `value` and retires the previous one through the epoch.
    pub(crate) fn replace(&self, value: T, guard: &Guard) {
        let old = self.ptr.swap(Owned::new(value), Ordering::AcqRel, guard);
        // SAFETY: `old` is no longer reachable from the cell, so no reader pinned
        // after this point can load it; readers pinned before are protected by
        // the deferral. `T: Send` lets another thread run the destructor.
        unsafe { guard.defer_destroy(old) };
    }
}

impl<T: Send + 'static> Drop for EpochCell<T> {
    /// Frees the last value at once, without pinning.
    ///
    /// Pinning here would be wrong as well as slow: cells are dropped with
    /// their owners (PCBs, groups), and owners are often dropped by a deferred
    /// function that the epoch runs while a thread's epoch state is being torn
    /// down, where the collector may no longer be reachable (under loom it is
    /// not, and the model aborts).
    fn drop(&mut self) {
        // SAFETY: the `unprotected` guard is only used to read our own pointer,
        // which `&mut self` makes exclusive; nothing is deferred through it.
        let last = self
            .ptr
            .load(Ordering::Relaxed, unsafe { crossbeam_epoch::unprotected() });
        // SAFETY: the pointer is never null and `&mut self` proves that no
        // borrow of the cell exists, so no `&'g T` from `load` is alive (it
        // borrows the cell for `'g`). Every reader reaches a cell through an
        // owner kept alive by its guard (a PCB or group held by an `Arc` in an
        // epoch-protected node, value or handle), so once the owner is dropped
        // no reader can load this pointer any more: it is ours to free.
        drop(unsafe { last.into_owned() });
    }
}

impl<T: Send + 'static + std::fmt::Debug> std::fmt::Debug for EpochCell<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let guard = crossbeam_epoch::pin();
        f.debug_tuple("EpochCell").field(self.load(&guard)).finish()
    }
}

/// An optional heap value published through an atomic pointer: like
/// [`EpochCell`], but null stands for `None`, so an empty cell costs no
/// allocation.
///
/// This type maintains the invariant that every value it ever pointed to is
/// freed only after no guard that could have loaded it remains.
pub(crate) struct EpochOption<T: Send + 'static> {
    ptr: Atomic<T>,
}

impl<T: Send + 'static> EpochOption<T> {
    pub(crate) fn none() -> Self {
        Self {
            ptr: Atomic::null(),
        }
    }

    /// The current value. Lock-free: one acquire load.
    #[inline]
    pub(crate) fn load<'g>(&'g self, guard: &'g Guard) -> Option<&'g T> {
        let shared = self.ptr.load(Ordering::Acquire, guard);
        // SAFETY: as in `EpochCell::load`: non-null values are retired through
        // the epoch once swapped out, and the cell outlives `'g`.
        unsafe { shared.as_ref() }
    }

    /// Publishes `value` (or empties the cell) and retires the previous value
    /// through the epoch.
    pub(crate) fn replace(&self, value: Option<T>, guard: &Guard) {
        let new = match value {
            Some(value) => Owned::new(value).into_shared(guard),
            None => crossbeam_epoch::Shared::null(),
        };
        let old = self.ptr.swap(new, Ordering::AcqRel, guard);
        if !old.is_null() {
            // SAFETY: epoch retirement (see `raw`): unreachable from the cell
            // now, so no new reader starts from it.
            unsafe { guard.defer_destroy(old) };
        }
    }
}

impl<T: Send + 'static> Drop for EpochOption<T> {
    /// Frees the last value at once, without pinning, for the reasons given on
    /// `EpochCell`'s `Drop`.
    fn drop(&mut self) {
        // SAFETY: the `unprotected` guard only reads our own pointer, which
        // `&mut self` makes exclusive; nothing is deferred through it.
        let last = self
            .ptr
            .load(Ordering::Relaxed, unsafe { crossbeam_epoch::unprotected() });
        if !last.is_null() {
            // SAFETY: as in `EpochCell::drop`: no borrow of the cell is alive,
            // and no reader can reach the cell once its owner is dropped.
            drop(unsafe { last.into_owned() });
        }
    }
}

impl<T: Send + 'static + std::fmt::Debug> std::fmt::Debug for EpochOption<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let guard = crossbeam_epoch::pin();
        f.debug_tuple("EpochOption")
            .field(&self.load(&guard))
            .finish()
    }
}
