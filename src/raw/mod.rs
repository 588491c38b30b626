//! The unsafe core: epoch-protected concurrent indexes.
//!
//! This is the only module of the crate that contains `unsafe` code. It knows
//! nothing about sockets or PCBs; it stores keys and values and hands out
//! references that live as long as an epoch [`Guard`].
//!
//! - [`EpochCell`]: a value that readers load without a lock and writers replace,
//!   retiring the old value through the epoch.
//! - [`ExactIndex`]: the exact (4-tuple) index, a hash multimap of `Arc`s:
//!   one-line buckets of seven one-word slots (a 12-bit signature beside the
//!   value's address), probed without data-dependent branches, with linear
//!   probing by lines and incremental resizing; keys live in the values.
//! - [`SpillList`]: a short list read lock-free, for the values the exact
//!   index hands back.
//! - [`PortTable`]: per-port owner lists with O(1) unlink, serialised by per-port
//!   lock stripes; intrusive, so a value's first link uses a node inside it
//!   ([`PortLink`]) and allocates nothing.
//! - [`Retired`]: a strong count an index gave up, released through the
//!   epoch; a writer that unlinks one value from several indexes joins their
//!   counts and releases them with one deferred function.
//! - [`SocketCell`]: the socket inside the PCB, readable without a reference
//!   count under a guard, dropped in place through the epoch.
//! - [`TupleLatch`](latch::TupleLatch): the tuple inside the PCB, two copies and a sequence
//!   counter, which readers copy without waiting for a writer.
//!
//! # The two retirement invariants
//!
//! Every `SAFETY` comment that dereferences something a reader loaded cites
//! one of these by name:
//!
//! - **Epoch retirement.** A node, value, page or bucket array is freed only
//!   through `Guard::defer_destroy` (or `defer_unchecked`), and only after it
//!   was made unreachable from every place a new reader starts. So anything
//!   loaded under a guard stays valid until that guard is dropped. (A table
//!   being dropped has no readers left to start, so its `Drop` retires
//!   what it still links.)
//! - **Links outlive the unlink.** An unlinked node keeps its `next` (and a
//!   port list never links a node twice, not even one inside a value), and a
//!   bucket array that a resize retired keeps its `next` array, which is
//!   retired only after it. So a reader standing on either can always go on
//!   from it.

mod cell;
mod exact;
mod latch;
mod ports;
mod retired;
mod socket;
mod spill;

pub(crate) use cell::{EpochCell, EpochOption};
pub(crate) use exact::{ExactEntry, ExactIndex, ExactStats, PastHome};
pub(crate) use latch::TupleCell;
pub(crate) use ports::{List, Listed, PortLink, PortLock, PortTable};
pub(crate) use retired::Retired;
pub(crate) use socket::SocketCell;
pub(crate) use spill::SpillList;

use crossbeam_epoch::{default_collector, Collector, Guard};

use crate::sync::Arc;

/// A new strong reference to the `Arc<T>` whose value `value` is: what an
/// index's `find_arc` hands out for an entry its `find` returned.
///
/// # Safety
///
/// `value` came from `Arc::into_raw` (an index holds each entry's count that
/// way), and that count is not dropped before this returns: an index drops
/// it only through the epoch, so a guard pinned before the entry was found
/// keeps it.
unsafe fn clone_arc<T>(value: *const T) -> Arc<T> {
    // SAFETY: by the caller's contract the strong count is at least one, and
    // the pointer is one `Arc::into_raw` gave.
    unsafe {
        Arc::increment_strong_count(value);
        Arc::from_raw(value)
    }
}

/// `Arc::new(make())`, with the value written straight into the
/// allocation: `Arc::new` of a large value builds it on the stack and
/// copies it over (a PCB: 176 bytes, a `memcpy` per accept).
#[inline(always)]
pub(crate) fn arc_in_place<T>(make: impl FnOnce() -> T) -> Arc<T> {
    let mut arc = Arc::<T>::new_uninit();
    Arc::get_mut(&mut arc)
        .expect("a new Arc is unique")
        .write(make());
    // SAFETY: the value was written just above.
    unsafe { arc.assume_init() }
}

/// A software prefetch of the cache line at `ptr` (a no-op off x86_64).
#[inline(always)]
pub(crate) fn prefetch_read<T>(ptr: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` is a hint: it never faults and reads nothing the
    // program can observe, whatever the address; SSE is part of x86_64.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(ptr.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}

/// Panics if `guard` was pinned on a collector other than `expected`, the
/// default one ([`default_guard_collector`]).
///
/// Every retirement in this crate goes through the default collector
/// (`crossbeam_epoch::pin()`), so only its guards protect what lookups return.
/// A guard from `crossbeam_epoch::unprotected()` carries no collector; obtaining
/// one is already `unsafe`, and its caller has promised that nothing is being
/// reclaimed concurrently. The table keeps `expected` from its build, so the
/// check costs a comparison and no call.
#[inline]
pub(crate) fn check_guard(guard: &Guard, expected: &Collector) {
    if let Some(collector) = guard.collector() {
        assert!(
            collector == expected,
            "pcbhash: the guard was pinned on a different crossbeam-epoch collector; use PcbTable::pin()"
        );
    }
}

/// Tests: collects the epoch's garbage until `done` holds, and says whether
/// it did within twenty seconds (other tests of the binary may keep the
/// epoch back while they are pinned).
#[cfg(all(test, not(pcbhash_loom)))]
pub(crate) fn collect_until(done: impl Fn() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !done() {
        if std::time::Instant::now() > deadline {
            return false;
        }
        crossbeam_epoch::pin().flush();
        std::thread::yield_now();
    }
    true
}

/// The collector every guard given to the table must come from.
pub(crate) fn default_guard_collector() -> &'static Collector {
    default_collector()
}
