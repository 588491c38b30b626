//! `SocketSlot`: the PCB's reference to the stack's socket.
//!
//! The slot is one atomic pointer: null, or the pointer `Arc::into_raw` gave
//! for the strong count the slot owns. Reading it is one acquire load, with
//! no reference count and no write ([`SocketSlot::get_ref`]); emptying it
//! (TIME_WAIT, close) is one swap, and the old `Arc` is dropped through the
//! epoch, so a reference obtained under a guard stays valid until that guard
//! is gone.

use crossbeam_epoch::Guard;

use crate::sync::{Arc, AtomicPtr, Ordering};

/// See the module docs.
///
/// This type maintains the invariant that the pointer is null or owns one
/// strong count of an `Arc<S>`, and that the count leaves the slot only
/// through `clear` (which defers its drop through the epoch) or when the slot
/// is dropped; so a socket reachable from the slot when a guard was pinned
/// stays alive until that guard is dropped.
pub(crate) struct SocketSlot<S: Send + Sync + 'static>(AtomicPtr<S>);

impl<S: Send + Sync + 'static> SocketSlot<S> {
    pub(crate) fn new(socket: Arc<S>) -> Self {
        Self(AtomicPtr::new(Arc::into_raw(socket).cast_mut()))
    }

    /// The socket, with a new reference count.
    #[inline]
    pub(crate) fn get(&self) -> Option<Arc<S>> {
        let guard = crossbeam_epoch::pin();
        let socket = self.get_ref(&guard)?;
        // SAFETY: `socket` is the value of an `Arc` whose strong count the
        // slot held after `guard` was pinned, and that count is dropped only
        // through the epoch, after `guard`: the count is at least one here.
        unsafe {
            Arc::increment_strong_count(socket);
            Some(Arc::from_raw(socket))
        }
    }

    /// The socket, borrowed for as long as `guard` lives. No reference count.
    #[inline]
    pub(crate) fn get_ref<'g>(&'g self, guard: &'g Guard) -> Option<&'g S> {
        let _ = guard;
        let ptr = self.0.load(Ordering::Acquire);
        // SAFETY: a non-null pointer owns a strong count (see the type's
        // invariant) that was in the slot while `guard` was pinned (we just
        // loaded it). It leaves the slot only through `clear`, which defers its
        // drop until every guard pinned before the removal is gone, or when the
        // slot is dropped, which cannot happen while `self` is borrowed for
        // `'g`. So the socket outlives `'g`.
        unsafe { ptr.as_ref() }
    }

    /// Empties the slot; the socket is released once no guard can see it.
    pub(crate) fn clear(&self, guard: &Guard) {
        let old = self.0.swap(std::ptr::null_mut(), Ordering::AcqRel);
        if !old.is_null() {
            // SAFETY: the non-null pointer owned one strong count, which the
            // swap took out of the slot: no one else can take it again.
            let old = unsafe { Arc::from_raw(old) };
            guard.defer(move || drop(old));
        }
    }
}

impl<S: Send + Sync + 'static> Drop for SocketSlot<S> {
    fn drop(&mut self) {
        let ptr = self.0.swap(std::ptr::null_mut(), Ordering::Relaxed);
        if !ptr.is_null() {
            // SAFETY: `&mut self`: the slot's own strong count, taken once.
            drop(unsafe { Arc::from_raw(ptr) });
        }
    }
}

impl<S: Send + Sync + 'static> std::fmt::Debug for SocketSlot<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SocketSlot")
            .field(&!self.0.load(Ordering::Acquire).is_null())
            .finish()
    }
}
