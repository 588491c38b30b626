//! Synchronisation primitives, switched between `std` and `loom`.
//!
//! Every atomic, mutex and spin hint that the crate uses comes from here, so that
//! building with `--cfg pcbhash_loom` (together with crossbeam's `--cfg crossbeam_loom`)
//! puts the whole table under loom's scheduler. No other module names
//! `std::sync::atomic` directly.

#[cfg(not(pcbhash_loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(pcbhash_loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};

#[cfg(pcbhash_loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
#[cfg(pcbhash_loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};

/// `Arc` stays the standard one under loom: loom's `Arc` lacks `ptr_eq` on trait
/// objects and the reference count is not where the table's races are.
pub(crate) use std::sync::Arc;

/// A hint inside a spin loop. Under loom it yields, so that the model can
/// schedule the thread that holds the lock.
#[inline]
pub(crate) fn spin_loop() {
    #[cfg(not(pcbhash_loom))]
    std::hint::spin_loop();
    #[cfg(pcbhash_loom)]
    loom::thread::yield_now();
}

/// Locks `mutex`, ignoring poisoning: every critical section in this crate leaves
/// its data consistent before it can panic, so a poisoned lock carries no broken
/// invariant.
#[inline]
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}
