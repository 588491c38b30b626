//! The growth workload: one thread inserts from empty while another looks
//! up, timing every lookup on its own to find the stalls.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::keys::{Key, Rng, SEED};
use super::peers::{ConcurrentPeer, PIN_EVERY};

/// What the growth workload measured on the reader thread.
#[derive(Clone, Debug)]
pub struct Growth {
    /// Lookups timed.
    pub lookups: u64,
    /// Lookups of a key inserted before the lookup started that found nothing
    /// (a false negative; must be 0).
    pub misses: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
    /// The worst lookup among windows of [`GROWTH_WINDOW`] lookups during which
    /// the reader thread was not preempted (Linux `getrusage`, involuntary
    /// context switches); equal to `max_ns` where that cannot be told.
    pub max_quiet_ns: u64,
    /// Windows in which the reader was preempted.
    pub preempted_windows: u64,
    /// The writer's time to insert every key.
    pub fill: Duration,
}

/// Lookups per context-switch check in [`growth`].
pub const GROWTH_WINDOW: usize = 256;

/// Involuntary context switches of the calling thread so far: preemptions by
/// the scheduler. Blocking on a lock is a voluntary switch and is not counted,
/// so a lookup that waits for a writer still counts as a stall.
fn context_switches() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: getrusage writes a `rusage` into the pointer it is given.
        let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) };
        if rc != 0 {
            return None;
        }
        // SAFETY: initialised by the successful call above.
        let usage = unsafe { usage.assume_init() };
        Some(usage.ru_nivcsw as u64)
    }
    #[cfg(not(target_os = "linux"))]
    None
}

/// Growth from empty to `keys.len()` entries on one thread while another
/// looks up random keys already inserted, timing each lookup on its own.
/// The writer keeps the handles, which are returned so the caller can drop
/// them untimed (closing a million PCBs takes a while).
pub fn growth<P: ConcurrentPeer>(keys: &[Key]) -> (Growth, P, Vec<P::Conn>) {
    let peer = P::with_keys(&[]);
    let inserted = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    let ready = Barrier::new(2);
    let (stats, conns) = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            ready.wait();
            let start = Instant::now();
            let mut conns = Vec::with_capacity(keys.len());
            for (i, key) in keys.iter().enumerate() {
                conns.push(peer.insert(key, i as u32));
                inserted.store(i + 1, Ordering::Release);
            }
            let fill = start.elapsed();
            done.store(true, Ordering::Release);
            (fill, conns)
        });
        let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
        let mut rng = Rng::new(SEED ^ 0x9);
        let (mut misses, mut max_quiet, mut preempted) = (0, 0, 0);
        let mut switches = context_switches();
        ready.wait();
        while inserted.load(Ordering::Acquire) == 0 {
            std::hint::spin_loop();
        }
        while !done.load(Ordering::Acquire) {
            let mut window_max = 0;
            for _ in 0..GROWTH_WINDOW / PIN_EVERY {
                let pin = peer.pin();
                for _ in 0..PIN_EVERY {
                    let key = &keys[rng.below(inserted.load(Ordering::Acquire))];
                    let start = Instant::now();
                    let hit = peer.get(&pin, key);
                    let ns = start.elapsed().as_nanos() as u64;
                    misses += u64::from(!hit);
                    window_max = window_max.max(ns);
                    hist.saturating_record(ns.max(1));
                }
            }
            let now = context_switches();
            if now.is_some() && now == switches {
                max_quiet = max_quiet.max(window_max);
            } else {
                preempted += 1;
            }
            switches = now;
        }
        let (fill, conns) = writer.join().expect("writer");
        let max_ns = hist.max();
        let stats = Growth {
            lookups: hist.len(),
            misses,
            p50_ns: hist.value_at_quantile(0.5),
            p99_ns: hist.value_at_quantile(0.99),
            p999_ns: hist.value_at_quantile(0.999),
            max_ns,
            max_quiet_ns: if switches.is_some() {
                max_quiet
            } else {
                max_ns
            },
            preempted_windows: preempted,
            fill,
        };
        (stats, conns)
    });
    (stats, peer, conns)
}
