//! `SocketCell`: the stack's socket, stored inside the PCB's own allocation.
//!
//! The cell is the socket value itself and a *present* bit. Reading it is one
//! acquire load of the bit and no reference count ([`SocketCell::get`]).
//! Detaching it (TIME_WAIT, close) clears the bit at once, so every later
//! read gives `None`, and drops the value in place through the epoch
//! ([`SocketCell::detach`]): the deferred function holds a strong count of
//! the cell's owner, so a `&S` handed out under a guard pinned before the
//! detach stays valid (value and memory) until that guard is dropped.

use std::cell::UnsafeCell;
use std::mem::{size_of, ManuallyDrop};

use crossbeam_epoch::Guard;

use super::Retired;
use crate::sync::{Arc, AtomicBool, Ordering};

/// See the module docs.
///
/// This type maintains the invariants that
///
/// - the value is initialised while `present` is true, and `present` goes
///   from true to false only once, in [`detach`](Self::detach), whose swap
///   makes the caller the only one to drop the value;
/// - a detached value is dropped only by a function deferred through the
///   epoch after the swap, which also keeps the cell's owner (and so the
///   cell's memory) alive until it has run;
/// - a cell still holding its socket when it is dropped was never detached,
///   and the crate detaches every socket before the last handle on its owner
///   can go (`Pcb`'s `Drop` closes the PCB), so no guard can hold a reference
///   into such a cell; it drops the value at once.
///
/// So a reference [`get`](Self::get) returned under a guard stays valid as
/// long as that guard, even if the caller's borrow of the cell ends sooner.
///
/// `repr(C)`: the present bit comes right before the socket's first bytes,
/// so that checking it and reading the socket's first field usually touch
/// one cache line, not two.
#[repr(C)]
pub(crate) struct SocketCell<S> {
    present: AtomicBool,
    socket: UnsafeCell<ManuallyDrop<S>>,
}

// SAFETY: a shared `&SocketCell<S>` hands out `&S` to any thread (`S: Sync`)
// and may drop the value on another thread, through the epoch (`S: Send`).
// The value is never written after `new`, so sharing it races with nothing
// but its deferred drop, which the epoch orders after every reader.
unsafe impl<S: Send + Sync> Sync for SocketCell<S> {}

impl<S: Send + Sync + 'static> SocketCell<S> {
    pub(crate) fn new(socket: S) -> Self {
        Self {
            present: AtomicBool::new(true),
            socket: UnsafeCell::new(ManuallyDrop::new(socket)),
        }
    }

    /// The socket, borrowed for as long as `guard` lives. No reference count,
    /// no write. `None` once detached.
    #[inline]
    pub(crate) fn get<'g>(&self, guard: &'g Guard) -> Option<&'g S> {
        let _ = guard;
        if !self.present.load(Ordering::Acquire) {
            return None;
        }
        // SAFETY: `present` was true while `guard` was pinned, so the value is
        // initialised (type invariant), and it is dropped only by a function
        // deferred after `present` is cleared, which the epoch runs after
        // every guard pinned before the clear, `guard` included. That function
        // holds the owner, so the cell's memory outlives `guard` as well. The
        // value is never written after `new`, so a shared borrow is sound.
        Some(unsafe { &**self.socket.get() })
    }

    /// Detaches the socket of the cell `cell` picks in `owner`: from now on
    /// [`get`](Self::get) gives `None` to every caller, and the value is
    /// dropped in place once no guard pinned before now remains. A second
    /// call does nothing. `retired` holds counts of `owner` that indexes
    /// gave up just before (or nothing): they are released by the same
    /// deferred function, which needs a count of `owner` anyway.
    ///
    /// # Panics
    ///
    /// If the cell does not lie inside `owner`'s value (a wrong `cell`).
    pub(crate) fn detach<O: Send + Sync + 'static>(
        owner: &Arc<O>,
        mut retired: Retired<O>,
        cell: fn(&O) -> &SocketCell<S>,
        guard: &Guard,
    ) {
        let base = Arc::as_ptr(owner) as usize;
        let this = cell(owner);
        let at = this as *const Self as usize;
        assert!(
            at >= base && at + size_of::<Self>() <= base + size_of::<O>(),
            "pcbhash: the socket cell is not a field of its owner"
        );
        if !this.present.swap(false, Ordering::AcqRel) {
            retired.defer(guard);
            return;
        }
        let offset = at - base;
        let owner = retired.take_of(owner).unwrap_or_else(|| Arc::clone(owner));
        retired.defer(guard);
        guard.defer(move || {
            let cell = (Arc::as_ptr(&owner) as *const u8).wrapping_add(offset) as *const Self;
            // SAFETY: `cell` lies inside the owner's value (checked above),
            // which `owner` keeps alive and in place. The swap took `present`
            // from true to false: the value is initialised, only we drop it,
            // and the epoch runs this after every guard that could read it.
            unsafe { ManuallyDrop::drop(&mut *(*cell).socket.get()) };
            drop(owner);
        });
    }
}

impl<S> Drop for SocketCell<S> {
    fn drop(&mut self) {
        if self.present.load(Ordering::Relaxed) {
            // SAFETY: `&mut self`, and `present` says the value is initialised
            // and was never detached: by the type's invariant no reader holds
            // a reference to it.
            unsafe { ManuallyDrop::drop(self.socket.get_mut()) };
        }
    }
}

impl<S> std::fmt::Debug for SocketCell<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketCell")
            .field("present", &self.present.load(Ordering::Acquire))
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(pcbhash_loom)))]
mod tests {
    use super::*;

    use std::sync::atomic::AtomicUsize;

    /// Counts its drops.
    struct Counted(Arc<AtomicUsize>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    struct Owner {
        _before: u64,
        socket: SocketCell<Counted>,
    }

    fn settle() {
        for _ in 0..256 {
            crossbeam_epoch::pin().flush();
        }
    }

    #[test]
    fn detach_hides_at_once_and_drops_after_the_guard() {
        let drops = Arc::new(AtomicUsize::new(0));
        let owner = Arc::new(Owner {
            _before: 0,
            socket: SocketCell::new(Counted(drops.clone())),
        });
        let reader = crossbeam_epoch::pin();
        let seen = owner.socket.get(&reader).expect("attached");
        {
            let guard = crossbeam_epoch::pin();
            SocketCell::detach(&owner, Retired::empty(), |o| &o.socket, &guard);
            assert!(owner.socket.get(&guard).is_none());
            SocketCell::detach(&owner, Retired::empty(), |o| &o.socket, &guard);
        }
        drop(owner);
        settle();
        // The reader's guard still holds the value and the owner's memory.
        assert_eq!(drops.load(Ordering::Relaxed), 0);
        assert_eq!(Arc::strong_count(&seen.0), 2);
        drop(reader);
        assert!(crate::raw::collect_until(
            || drops.load(Ordering::Relaxed) == 1
        ));
        assert_eq!(Arc::strong_count(&drops), 1, "dropped once, owner and all");
    }

    #[test]
    fn a_cell_never_detached_drops_its_socket() {
        let drops = Arc::new(AtomicUsize::new(0));
        drop(SocketCell::new(Counted(drops.clone())));
        assert_eq!(drops.load(Ordering::Relaxed), 1);
    }

    #[test]
    #[should_panic(expected = "not a field of its owner")]
    fn detach_refuses_a_cell_outside_the_owner() {
        static_cell_test();
    }

    fn static_cell_test() {
        static OUTSIDE: std::sync::OnceLock<SocketCell<u32>> = std::sync::OnceLock::new();
        fn outside(_: &u64) -> &SocketCell<u32> {
            OUTSIDE.get_or_init(|| SocketCell::new(7))
        }
        let owner = Arc::new(0u64);
        let guard = crossbeam_epoch::pin();
        SocketCell::detach(&owner, Retired::empty(), outside, &guard);
    }
}
