//! Sockets that count their own drops, one ledger per test.
//!
//! The table drops a detached socket through the epoch, so the drop runs
//! whenever some thread next collects garbage: possibly during the next
//! test. A counter shared by every test would then see drops it never
//! created. Each test therefore makes its own [`Ledger`]; its sockets carry
//! it and count their drops there, whoever runs them and whenever.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// How long [`Ledger::drain`] waits for deferred drops.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// The sockets one test created and how many of them were dropped.
#[derive(Debug, Default)]
pub struct Ledger {
    created: AtomicUsize,
    dropped: AtomicUsize,
}

/// The stress tests' socket: it knows the uid of the PCB it was given to and
/// counts its drop in its test's ledger.
#[derive(Debug)]
pub struct Sock {
    pub uid: u32,
    ledger: Arc<Ledger>,
}

impl Drop for Sock {
    fn drop(&mut self) {
        self.ledger.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

impl Ledger {
    pub fn new() -> Arc<Ledger> {
        Arc::new(Ledger::default())
    }

    /// A new socket for a PCB of `uid`, counted in this ledger.
    pub fn socket(self: &Arc<Self>, uid: u32) -> Sock {
        self.created.fetch_add(1, Ordering::SeqCst);
        Sock {
            uid,
            ledger: self.clone(),
        }
    }

    pub fn created(&self) -> usize {
        self.created.load(Ordering::SeqCst)
    }

    pub fn dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }

    /// Drives reclamation until every socket of this ledger has been dropped
    /// or [`DRAIN_LIMIT`] has passed, and returns `(created, dropped)`. Call
    /// it once the test's PCBs are all closed and its threads have ended, so
    /// that no garbage of this test outlives it.
    pub fn drain(&self) -> (usize, usize) {
        let deadline = Instant::now() + DRAIN_LIMIT;
        while self.dropped() < self.created() && Instant::now() < deadline {
            crossbeam_epoch::pin().flush();
            thread::yield_now();
        }
        (self.created(), self.dropped())
    }

    /// Drains, then asserts that every socket was dropped exactly once.
    pub fn assert_all_dropped(&self, test: &str) {
        let (created, dropped) = self.drain();
        assert_eq!(
            created, dropped,
            "{test}: every socket is dropped exactly once"
        );
    }
}
