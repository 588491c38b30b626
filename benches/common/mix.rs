//! The demux mix: lookups with 1% inserts and 1% removes, on several
//! threads at once.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use super::keys::{probe_order, Key, SEED};
use super::peers::{ConcurrentPeer, PIN_EVERY};

/// One thread's part of the demux mix: operation `i` looks up `gets[i]`,
/// except that every 100 operations one inserts a fresh key and one removes
/// the oldest key this thread inserted (1% each).
#[derive(Debug)]
pub struct MixPlan {
    pub gets: Vec<Key>,
    pub fresh: Vec<Key>,
}

/// Keys this thread inserts before the clock starts, so that removes always
/// have something to remove; the count stays constant during the run.
pub const MIX_BACKLOG: usize = 256;

impl MixPlan {
    /// `ops` operations over `table` keys (random order, seeded by `thread`),
    /// with the fresh keys the inserts need.
    pub fn new(table: &[Key], fresh: &[Key], ops: usize, thread: u64) -> Self {
        let needed = ops / 100 + MIX_BACKLOG + 1;
        assert!(
            fresh.len() >= needed,
            "{} fresh keys, need {needed}",
            fresh.len()
        );
        Self {
            gets: probe_order(table, ops, SEED ^ (thread + 1)),
            fresh: fresh[..needed].to_vec(),
        }
    }
}

/// The demux mix on one thread per plan. Returns the wall time of the timed
/// part (all threads start together; the clock stops when the last ends) and
/// the lookups that missed (must be 0).
pub fn demux_mix<P: ConcurrentPeer>(peer: &P, plans: &[MixPlan]) -> (Duration, usize) {
    let barrier = Barrier::new(plans.len() + 1);
    let misses = AtomicUsize::new(0);
    let elapsed = std::thread::scope(|scope| {
        let workers: Vec<_> = plans
            .iter()
            .map(|plan| {
                let (barrier, misses) = (&barrier, &misses);
                scope.spawn(move || {
                    let mut fresh = plan.fresh.iter().enumerate();
                    let mut live = VecDeque::with_capacity(MIX_BACKLOG + 1);
                    for (id, key) in fresh.by_ref().take(MIX_BACKLOG) {
                        live.push_back((key, peer.insert(key, id as u32)));
                    }
                    barrier.wait();
                    let mut missed = 0;
                    for (i, pinned) in plan.gets.chunks(PIN_EVERY).enumerate() {
                        let pin = peer.pin();
                        for (j, key) in pinned.iter().enumerate() {
                            match (i * PIN_EVERY + j) % 100 {
                                49 => {
                                    let (id, key) = fresh.next().expect("fresh keys");
                                    live.push_back((key, peer.insert(key, id as u32)));
                                }
                                99 => {
                                    let (key, conn) = live.pop_front().expect("a live key");
                                    peer.remove(key, conn);
                                }
                                _ => missed += usize::from(!peer.get(&pin, key)),
                            }
                        }
                    }
                    barrier.wait();
                    // Untimed: back to the table the run started with.
                    for (key, conn) in live {
                        peer.remove(key, conn);
                    }
                    misses.fetch_add(missed, Ordering::Relaxed);
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        barrier.wait();
        let elapsed = start.elapsed();
        for worker in workers {
            worker.join().expect("mix thread");
        }
        elapsed
    });
    (elapsed, misses.into_inner())
}
