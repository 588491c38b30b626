//! `Retired`: a strong count that an index gave up when it unlinked a
//! value, released only through the epoch.
//!
//! A reader that found the value through the index before the unlink may
//! still hold a reference to it, so the index's count must outlive every
//! guard pinned before the unlink. The index hands that count back as a
//! `Retired` rather than deferring its release itself, so that a writer
//! which unlinks one value from several places (a close takes a PCB out of
//! its port list and the exact index, and drops its socket) releases it
//! through one deferred function instead of one per place.
//!
//! The rule that makes this sound: a deferral holding one count of a value
//! covers every count of the same value given up before it was made. The
//! value's memory stays while any count remains, and the deferral runs after
//! every guard pinned before it, so after every guard pinned before each of
//! the unlinks. [`join`](Retired::join) keeps one count and releases the
//! other at once.

use crossbeam_epoch::Guard;

use crate::sync::Arc;

/// A strong count whose release waits for the epoch (see the module docs).
/// Dropping a non-empty one defers the release under a guard of its own, so
/// no path can release it early; [`defer`](Self::defer) does the same with
/// the caller's guard.
#[must_use = "a retired count is released through the epoch: call `defer`"]
pub(crate) struct Retired<T: Send + Sync + 'static>(Option<Arc<T>>);

impl<T: Send + Sync + 'static> Retired<T> {
    /// A count given up by an unlink (or taken for a deferral of its own).
    #[inline]
    pub(crate) fn new(count: Arc<T>) -> Self {
        Self(Some(count))
    }

    /// Nothing to release: the unlink deferred its own release.
    #[inline]
    pub(crate) fn empty() -> Self {
        Self(None)
    }

    /// Keeps one count of `self` and `other`: `other`'s is released now when
    /// both are counts of one value (the one kept covers it, see the module
    /// docs); two different values are both kept, `other`'s through a
    /// deferral of its own.
    #[inline]
    pub(crate) fn join(&mut self, mut other: Retired<T>, guard: &Guard) {
        match (&self.0, other.0.take()) {
            (_, None) => {}
            (None, count) => self.0 = count,
            (Some(kept), Some(count)) if Arc::ptr_eq(kept, &count) => drop(count),
            (Some(_), count) => Retired(count).defer(guard),
        }
    }

    /// Releases the count once every guard pinned before now is gone.
    #[inline]
    pub(crate) fn defer(mut self, guard: &Guard) {
        if let Some(count) = self.0.take() {
            guard.defer(move || drop(count));
        }
    }

    /// The count itself, for a deferred function that releases it (and may
    /// do more first), if it is a count of `owner`.
    #[inline]
    pub(super) fn take_of(&mut self, owner: &Arc<T>) -> Option<Arc<T>> {
        match &self.0 {
            Some(count) if Arc::ptr_eq(count, owner) => self.0.take(),
            _ => None,
        }
    }
}

impl<T: Send + Sync + 'static> Drop for Retired<T> {
    #[inline]
    fn drop(&mut self) {
        if let Some(count) = self.0.take() {
            release_late(count);
        }
    }
}

/// The release of a retired count nobody deferred: under a guard of its own.
#[cold]
#[inline(never)]
fn release_late<T: Send + Sync + 'static>(count: Arc<T>) {
    crossbeam_epoch::pin().defer(move || drop(count));
}

impl<T: Send + Sync + 'static> std::fmt::Debug for Retired<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Retired").field(&self.0.is_some()).finish()
    }
}

#[cfg(all(test, not(pcbhash_loom)))]
mod tests {
    use super::*;

    use crate::raw::collect_until;

    #[test]
    fn join_keeps_one_count_of_one_value() {
        let value = Arc::new(7u32);
        let guard = crossbeam_epoch::pin();
        let mut kept = Retired::new(Arc::clone(&value));
        kept.join(Retired::new(Arc::clone(&value)), &guard);
        kept.join(Retired::empty(), &guard);
        // Ours, and the one kept: the joined one went at once.
        assert_eq!(Arc::strong_count(&value), 2);
        kept.defer(&guard);
        drop(guard);
        assert!(collect_until(|| Arc::strong_count(&value) == 1));
    }

    #[test]
    fn join_of_two_values_releases_both_through_the_epoch() {
        let (a, b) = (Arc::new(1u32), Arc::new(2u32));
        let guard = crossbeam_epoch::pin();
        let mut kept = Retired::empty();
        kept.join(Retired::new(Arc::clone(&a)), &guard);
        kept.join(Retired::new(Arc::clone(&b)), &guard);
        assert_eq!((Arc::strong_count(&a), Arc::strong_count(&b)), (2, 2));
        drop(kept);
        // Neither is released while the guard pinned before is held.
        assert_eq!((Arc::strong_count(&a), Arc::strong_count(&b)), (2, 2));
        drop(guard);
        assert!(collect_until(|| {
            Arc::strong_count(&a) == 1 && Arc::strong_count(&b) == 1
        }));
    }

    #[test]
    fn take_of_hands_out_only_a_count_of_the_owner() {
        let (owner, other) = (Arc::new(1u32), Arc::new(2u32));
        let guard = crossbeam_epoch::pin();
        let mut retired = Retired::new(Arc::clone(&other));
        assert!(retired.take_of(&owner).is_none());
        let count = retired.take_of(&other).expect("a count of `other`");
        assert!(Arc::ptr_eq(&count, &other));
        assert!(retired.take_of(&other).is_none());
        drop(count);
        retired.defer(&guard);
    }
}
