//! `SocketSlot`: the PCB's reference to the stack's socket.
//!
//! The slot is an [`ArcSlot`] (an `ArcSwapOption`, or its loom stand-in): `get`
//! clones the `Arc` through arc-swap's fast path. Emptying the slot (TIME_WAIT, close) does not drop the old `Arc`
//! at once: the drop is deferred through the epoch, so a reference obtained
//! with [`SocketSlot::get_ref`] under a guard stays valid until that guard is
//! gone, with no reference count taken on the read path.

use crossbeam_epoch::Guard;

use crate::sync::{Arc, ArcSlot};

/// See the module docs.
///
/// This type maintains the invariant that an `Arc` leaves the slot only through
/// `clear` (which defers its drop through the epoch) or when the slot is
/// dropped, so a socket reachable from the slot when a guard was pinned stays
/// alive until that guard is dropped.
pub(crate) struct SocketSlot<S: Send + Sync + 'static>(ArcSlot<S>);

impl<S: Send + Sync + 'static> SocketSlot<S> {
    pub(crate) fn new(socket: Arc<S>) -> Self {
        Self(ArcSlot::new(Some(socket)))
    }

    /// The socket, with a new reference count.
    #[inline]
    pub(crate) fn get(&self) -> Option<Arc<S>> {
        self.0.load()
    }

    /// The socket, borrowed for as long as `guard` lives. No reference count.
    #[inline]
    pub(crate) fn get_ref<'g>(&'g self, guard: &'g Guard) -> Option<&'g S> {
        let _ = guard;
        let ptr = self.0.as_ptr()?;
        // SAFETY: the `Arc` behind `ptr` was in the slot while `guard` was
        // pinned (we just loaded it). It leaves the slot only through `clear`,
        // which defers its drop until every guard pinned before the removal is
        // gone, or when the slot is dropped, which cannot happen while `self`
        // is borrowed for `'g`. So the socket outlives `'g`.
        Some(unsafe { &*ptr })
    }

    /// Empties the slot; the socket is released once no guard can see it.
    pub(crate) fn clear(&self, guard: &Guard) {
        if let Some(old) = self.0.swap(None) {
            guard.defer(move || drop(old));
        }
    }
}

impl<S: Send + Sync + 'static> std::fmt::Debug for SocketSlot<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SocketSlot")
            .field(&self.0.load().is_some())
            .finish()
    }
}
