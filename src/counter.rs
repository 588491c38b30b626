//! `Counter`: a count that many threads change and few read, spread over
//! cache-padded stripes so that two threads changing it rarely write the same
//! cache line.
//!
//! Each thread adds to the stripe of its own index (handed out round-robin
//! the first time the thread counts anything), so on a machine with no more
//! threads than stripes, writers never share a line. Reading sums every
//! stripe: exact when no write runs concurrently, otherwise some value the
//! count passed through or will pass through soon, like any relaxed counter.

use crossbeam_utils::CachePadded;

use crate::sync::{AtomicIsize, Ordering};

/// Stripes per counter. Few under loom, to keep models small.
#[cfg(not(pcbhash_loom))]
const STRIPES: usize = 16;
#[cfg(pcbhash_loom)]
const STRIPES: usize = 2;

/// The stripe of the calling thread.
#[inline]
fn my_stripe() -> usize {
    // A `std` counter also under loom: the index only spreads writes, and
    // any value is correct.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % STRIPES;
    }
    STRIPE.with(|stripe| *stripe)
}

/// See the module docs.
pub(crate) struct Counter {
    stripes: Box<[CachePadded<AtomicIsize>]>,
}

impl Counter {
    /// A count of zero.
    pub(crate) fn new() -> Self {
        Self {
            stripes: (0..STRIPES)
                .map(|_| CachePadded::new(AtomicIsize::new(0)))
                .collect(),
        }
    }

    /// Adds `delta` on the calling thread's stripe. One relaxed
    /// read-modify-write of a line that other threads rarely write.
    #[inline]
    pub(crate) fn add(&self, delta: isize) {
        self.stripes[my_stripe()].fetch_add(delta, Ordering::Relaxed);
    }

    /// The count: the sum of the stripes (never below zero).
    pub(crate) fn get(&self) -> usize {
        let sum: isize = self
            .stripes
            .iter()
            .map(|stripe| stripe.load(Ordering::Relaxed))
            .sum();
        sum.max(0) as usize
    }
}

impl std::fmt::Debug for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Counter").field(&self.get()).finish()
    }
}

#[cfg(all(test, not(pcbhash_loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn threads_count_on_their_stripes_and_the_sum_is_exact() {
        let counter = Arc::new(Counter::new());
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let counter = counter.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        counter.add(2);
                    }
                    for _ in 0..i {
                        counter.add(-1);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(counter.get(), 4 * 2000 - (1 + 2 + 3));
        counter.add(-8000);
        assert_eq!(counter.get(), 0, "a sum below zero reads as zero");
    }
}
