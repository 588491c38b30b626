//! Synchronisation primitives, switched between `std` and `loom`.
//!
//! Every atomic, mutex and spin hint that the crate uses comes from here, so that
//! building with `--cfg pcbhash_loom` (together with crossbeam's `--cfg crossbeam_loom`
//! and this crate's `loom` feature) puts the whole table under loom's scheduler. No
//! other module names `std::sync::atomic` directly.
//!
//! What changes under `cfg(pcbhash_loom)`:
//!
//! - atomics and mutexes are loom's, so loom sees and permutes every access;
//! - [`ArcSlot`], the busy-port hints' register, is a loom mutex around an `Option<Arc<T>>`
//!   instead of an `arc_swap::ArcSwapOption` (arc-swap has no loom support). Both
//!   are linearizable registers of an optional `Arc`: `load` returns the value of
//!   the latest `store`, and a `store` drops the previous value;
//! - [`unique_id`] keeps a `std` counter: loom atomics cannot live in a `static`,
//!   and the ids only tell tables apart, which no model races on.

#[cfg(not(pcbhash_loom))]
pub(crate) use std::sync::atomic::{
    fence, AtomicBool, AtomicIsize, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};
#[cfg(not(pcbhash_loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};

#[cfg(pcbhash_loom)]
pub(crate) use loom::sync::atomic::{
    fence, AtomicBool, AtomicIsize, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};
#[cfg(pcbhash_loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};

/// `Arc` stays the standard one under loom: the public API hands out
/// `std::sync::Arc<S>` sockets, and the reference count is not where the table's
/// races are (every shared `Arc` is published through an epoch pointer or a
/// lock, which loom does see).
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

/// One wait of a spin-then-yield loop: a spin hint for the first few
/// waits, then the rest of the time slice to the scheduler (a holder that was
/// preempted needs the processor to finish). `waited` counts the waits.
#[inline]
pub(crate) fn backoff(waited: &mut u32) {
    const SPINS: u32 = 64;
    if *waited < SPINS {
        *waited += 1;
        spin_loop();
    } else {
        #[cfg(not(pcbhash_loom))]
        std::thread::yield_now();
        #[cfg(pcbhash_loom)]
        loom::thread::yield_now();
    }
}

/// Under loom only: what the lifecycle calls at each named step in the middle
/// of a move between indexes, so that a model can park the writer there for
/// as long as it likes (`Builder::on_move_step`).
#[cfg(pcbhash_loom)]
pub(crate) type MoveStepHook = Arc<dyn Fn(&'static str) + Send + Sync>;

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

/// A process-wide unique, non-zero id (distinguishes tables). One relaxed
/// read-modify-write on a `std` atomic, also under loom: see the module docs.
pub(crate) fn unique_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A register holding an optional `Arc<T>`: readers take a clone of the
/// current value, writers replace it.
///
/// With `std` it is an `arc_swap::ArcSwapOption` (a read takes no lock); under
/// loom, a loom mutex with the same observable semantics: every `load`
/// returns the value of the last `swap` before it in the register's total
/// order, and `swap` hands the replaced `Arc` back to the caller.
pub(crate) struct ArcSlot<T> {
    #[cfg(not(pcbhash_loom))]
    inner: arc_swap::ArcSwapOption<T>,
    #[cfg(pcbhash_loom)]
    inner: Mutex<Option<Arc<T>>>,
}

impl<T> ArcSlot<T> {
    /// A slot holding `value`.
    pub(crate) fn new(value: Option<Arc<T>>) -> Self {
        Self {
            #[cfg(not(pcbhash_loom))]
            inner: arc_swap::ArcSwapOption::new(value),
            #[cfg(pcbhash_loom)]
            inner: Mutex::new(value),
        }
    }

    /// A clone of the current value.
    #[inline]
    pub(crate) fn load(&self) -> Option<Arc<T>> {
        #[cfg(not(pcbhash_loom))]
        return self.inner.load_full();
        #[cfg(pcbhash_loom)]
        return lock(&self.inner).clone();
    }

    /// Replaces the value and hands back the previous one.
    pub(crate) fn swap(&self, value: Option<Arc<T>>) -> Option<Arc<T>> {
        #[cfg(not(pcbhash_loom))]
        return self.inner.swap(value);
        #[cfg(pcbhash_loom)]
        return std::mem::replace(&mut *lock(&self.inner), value);
    }
}

/// Deliberately broken synchronisation, compiled only with `--cfg pcbhash_broken`
/// and chosen per table with the hidden `Builder::broken`. It exists so that the
/// loom models can prove they catch real bugs: each switch removes one piece of
/// synchronisation that a documented guarantee rests on.
#[cfg(pcbhash_broken)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Broken {
    /// The exact index marks a bucket `MOVED` before copying its entries
    /// (breaks "no false negatives during a resize").
    pub(crate) resize_moved_first: bool,
    /// A lookup that misses in the exact index and then walks the wildcard
    /// list does not probe the exact index again (breaks "no false negatives
    /// during connect": the walk can start after the PCB left the list).
    pub(crate) one_exact_probe: bool,
    /// The wildcard walk passes over a PCB whose tuple says connected, though
    /// it sits in the wildcard list because its connect has published the
    /// tuple and not yet reached the exact index (breaks "no false negatives"
    /// while that connect is preempted).
    pub(crate) skip_connecting: bool,
    /// A lookup trusts its three reads without the move count (breaks "no
    /// false negatives" for a PCB that moves twice while one lookup runs).
    pub(crate) ignore_moves: bool,
    /// Port locks lock nothing (breaks "conflict checks are atomic with their
    /// insert").
    pub(crate) no_port_lock: bool,
    /// The exact index frees what it retires (removed values, unlinked nodes,
    /// replaced bucket arrays) at once instead of through the epoch (breaks "memory stays valid while a guard could see it": a real
    /// use-after-free, for AddressSanitizer to catch).
    pub(crate) free_at_once: bool,
}

#[cfg(pcbhash_broken)]
impl Broken {
    /// The switch named `variant`: `"resize-moved-first"`,
    /// `"one-exact-probe"`, `"skip-connecting"`, `"ignore-moves"`,
    /// `"no-port-lock"` or `"free-at-once"`.
    ///
    /// # Panics
    ///
    /// On any other name.
    pub(crate) fn named(variant: &str) -> Self {
        let mut broken = Self::default();
        match variant {
            "resize-moved-first" => broken.resize_moved_first = true,
            "one-exact-probe" => broken.one_exact_probe = true,
            "skip-connecting" => broken.skip_connecting = true,
            "ignore-moves" => broken.ignore_moves = true,
            "no-port-lock" => broken.no_port_lock = true,
            "free-at-once" => broken.free_at_once = true,
            other => panic!("pcbhash: no broken variant named {other:?}"),
        }
        broken
    }
}
