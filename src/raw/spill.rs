//! `SpillList`: a short list of `Arc<T>` beside an index, for the values the
//! index hands back (see `ExactIndex`'s `InsertError`), read lock-free.
//!
//! Writers copy the list, change the copy and publish it, serialised by a
//! mutex; the list they replaced is retired through the epoch. Meant to stay
//! empty: a reader pays one load of the length while it is.

use crossbeam_epoch::{Atomic, Guard, Owned};

use crate::sync::{lock, Arc, AtomicUsize, Mutex, Ordering};

/// A lock-free readable list of `Arc<T>` (see the module docs).
///
/// This type maintains the invariant that `list` is never null, and that a
/// list it pointed to is freed only through the epoch, so a reference a
/// reader took from it under a guard outlives the guard's borrow.
pub(crate) struct SpillList<T: Send + Sync + 'static> {
    list: Atomic<Vec<Arc<T>>>,
    /// The list's length: raised before a longer list is published, lowered
    /// after a shorter one is, so a reader that reads zero holds no list
    /// with an entry it should have seen.
    len: AtomicUsize,
    writer: Mutex<()>,
}

impl<T: Send + Sync + 'static> SpillList<T> {
    pub(crate) fn new() -> Self {
        Self {
            list: Atomic::new(Vec::new()),
            len: AtomicUsize::new(0),
            writer: Mutex::new(()),
        }
    }

    /// How many values the list holds.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// The first value that satisfies `pred`, as an `Arc` in the list.
    /// Lock-free: one load while the list is empty.
    #[inline]
    fn find_arc_ref<'g>(
        &self,
        guard: &'g Guard,
        mut pred: impl FnMut(&T) -> bool,
    ) -> Option<&'g Arc<T>> {
        if self.len() == 0 {
            return None;
        }
        let list = self.list.load(Ordering::Acquire, guard);
        // SAFETY: the pointer is never null, and a list is destroyed only
        // through the epoch after it was replaced (or with the index, also
        // deferred), so it outlives `guard`.
        let list = unsafe { list.deref() };
        list.iter().find(|value| pred(value))
    }

    /// The first value that satisfies `pred`. Lock-free.
    pub(crate) fn find<'g>(&self, guard: &'g Guard, pred: impl FnMut(&T) -> bool) -> Option<&'g T> {
        self.find_arc_ref(guard, pred).map(|value| &**value)
    }

    /// [`find`](Self::find), as a strong reference.
    pub(crate) fn find_arc(&self, guard: &Guard, pred: impl FnMut(&T) -> bool) -> Option<Arc<T>> {
        self.find_arc_ref(guard, pred).cloned()
    }

    /// Adds `value`. Takes the list's lock; allocates a new list.
    pub(crate) fn push(&self, value: Arc<T>, guard: &Guard) {
        let _writer = lock(&self.writer);
        // SAFETY: as in `find_arc_ref`; the lock makes this the current list.
        let mut list = unsafe { self.list.load(Ordering::Acquire, guard).deref() }.clone();
        list.push(value);
        self.len.store(list.len(), Ordering::Relaxed);
        self.publish(list, guard);
    }

    /// Removes the first value that satisfies `pred`. Takes the list's lock.
    /// Whether one was removed.
    pub(crate) fn remove(&self, guard: &Guard, mut pred: impl FnMut(&T) -> bool) -> bool {
        if self.len() == 0 {
            return false;
        }
        let _writer = lock(&self.writer);
        // SAFETY: as in `push`.
        let list = unsafe { self.list.load(Ordering::Acquire, guard).deref() };
        let Some(at) = list.iter().position(|value| pred(value)) else {
            return false;
        };
        let mut list = list.clone();
        list.remove(at);
        let len = list.len();
        self.publish(list, guard);
        self.len.store(len, Ordering::Relaxed);
        true
    }

    /// Publishes `list` and retires the one it replaces. Caller holds the
    /// writer lock.
    fn publish(&self, list: Vec<Arc<T>>, guard: &Guard) {
        let old = self.list.swap(Owned::new(list), Ordering::AcqRel, guard);
        // SAFETY: `old` is unreachable from `self` now; readers that loaded
        // it are protected by the deferral, and dropping it drops only its
        // own counts.
        unsafe { guard.defer_destroy(old) };
    }
}

impl<T: Send + Sync + 'static> Drop for SpillList<T> {
    fn drop(&mut self) {
        let guard = crossbeam_epoch::pin();
        let list = self.list.load(Ordering::Relaxed, &guard);
        // SAFETY: the list is unreachable once `self` is gone; a reader may
        // still hold a reference into it under its own guard, so it is
        // deferred.
        unsafe { guard.defer_destroy(list) };
    }
}

impl<T: Send + Sync + 'static> std::fmt::Debug for SpillList<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpillList")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}
