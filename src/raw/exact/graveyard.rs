//! Retired bucket arrays, freed by the index's writers.
//!
//! When a resize has moved every home, the old array is retired through the
//! epoch, and the epoch runs a retired object's destructor on whichever
//! thread collects garbage next: often a thread that only looks packets up.
//! Freeing the array of a large index gives tens of megabytes back to the
//! system, hundreds of microseconds that a lookup must not wait. So the
//! deferred function only moves the array here, under a lock no reader ever
//! takes, and the index's next write (an insert or a removal) frees it. An
//! index that is never written again keeps its last retired array until it
//! is dropped.

use super::bucket::Buckets;
use crate::sync::{lock, AtomicBool, Mutex, Ordering};

/// Arrays whose readers are gone, waiting for a writer to free them.
pub(super) struct Graveyard {
    /// Whether `arrays` may hold one: a writer's one relaxed load.
    waiting: AtomicBool,
    arrays: Mutex<Vec<Buckets>>,
}

impl Graveyard {
    pub(super) fn new() -> Self {
        Self {
            waiting: AtomicBool::new(false),
            arrays: Mutex::new(Vec::new()),
        }
    }

    /// Keeps `array`, which no reader can reach any more, for a writer to
    /// free. Runs on the thread that collects the epoch's garbage.
    pub(super) fn bury(&self, array: Buckets) {
        lock(&self.arrays).push(array);
        self.waiting.store(true, Ordering::Release);
    }

    /// Frees the arrays kept, if any. Called by writers.
    #[inline]
    pub(super) fn free(&self) {
        if self.waiting.load(Ordering::Relaxed) {
            self.free_kept();
        }
    }

    #[cold]
    #[inline(never)]
    fn free_kept(&self) {
        let arrays = {
            let mut kept = lock(&self.arrays);
            self.waiting.store(false, Ordering::Relaxed);
            std::mem::take(&mut *kept)
        };
        // Freed here, outside the lock.
        drop(arrays);
    }

    /// How many arrays wait (for tests).
    #[cfg(all(test, not(pcbhash_loom)))]
    pub(super) fn kept(&self) -> usize {
        lock(&self.arrays).len()
    }
}
