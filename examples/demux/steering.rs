//! Receive-side steering, as a multi-queue NIC does it: a keyed hash of a
//! packet's 4-tuple picks its RX queue, and each RX thread serves one queue.
//!
//! An outbound connection belongs to the RX thread of its flow slot (its
//! opener, `slot % threads`), as a per-core stack opens each connection on
//! the core that will serve it. The control thread connects on the opener's
//! behalf, naming it in a thread-local ([`opening_for`]) for the table's
//! port filter ([`port_filter`], given to `Builder::port_filter`): the
//! filter refuses every candidate port whose replies the hash would steer
//! to another queue, so the table only hands out ports that bring the
//! flow's replies back to its opener.

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::Arc;

use pcbhash::PortCandidate;

/// The NIC's steering: `queues` RX queues and the hash's key.
#[derive(Debug)]
pub struct Steering {
    hasher: ahash::RandomState,
    queues: usize,
}

thread_local! {
    /// The RX queue the connect in progress on this thread is for.
    static OPENING_FOR: Cell<Option<usize>> = const { Cell::new(None) };
}

impl Steering {
    /// Steering over `queues` queues (at least one) with a key from `seed`.
    pub fn new(seed: u64, queues: usize) -> Self {
        Self {
            hasher: ahash::RandomState::with_seeds(seed, !seed, seed ^ 0x5EED, 0x0DD5),
            queues: queues.max(1),
        }
    }

    /// The RX queue a packet from `remote` to `local` arrives on.
    /// Addresses are taken as on the wire (v4-mapped ones as IPv4).
    pub fn queue(&self, local: SocketAddr, remote: SocketAddr) -> usize {
        let wire = |a: SocketAddr| (a.ip().to_canonical(), a.port());
        (self.hasher.hash_one((wire(local), wire(remote))) % self.queues as u64) as usize
    }

    /// The RX thread that opens flow slot `slot`'s outbound connections.
    pub fn opener(&self, slot: u32) -> usize {
        slot as usize % self.queues
    }
}

/// Runs `connect` as a connect for RX queue `queue`: the port filter keeps
/// only ports whose replies arrive there.
pub fn opening_for<R>(queue: usize, connect: impl FnOnce() -> R) -> R {
    OPENING_FOR.with(|q| q.set(Some(queue)));
    let result = connect();
    OPENING_FOR.with(|q| q.set(None));
    result
}

/// The table's port filter: a candidate for a connect made through
/// [`opening_for`] passes when its reply is steered to that queue; every
/// other candidate (a bind, a connect for no queue) passes.
pub fn port_filter(steering: Arc<Steering>) -> impl Fn(&PortCandidate) -> bool + Send + Sync {
    move |candidate| {
        let Some(remote) = candidate.remote else {
            return true;
        };
        OPENING_FOR
            .with(Cell::get)
            .is_none_or(|queue| steering.queue(candidate.local, remote) == queue)
    }
}
