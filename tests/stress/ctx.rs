//! The state the workers of one churn run share: the table, and the
//! registries that say what the table may and may not answer.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use pcbhash::{PcbRef, PcbTable, Policy, Protocol};

use crate::ledger::{Ledger, Sock};

/// Ports bound without reuse options, on 127.0.0.1: one holder at most.
pub const EXCLUSIVE: std::ops::RangeInclusive<u16> = 1000..=1007;
/// Ports bound with random reuse options, on 127.0.0.1 or 0.0.0.0.
pub const SHARED: std::ops::RangeInclusive<u16> = 2000..=2007;
/// The ephemeral range of the tables under test.
pub const EPHEMERAL: std::ops::RangeInclusive<u16> = 20000..=20511;
/// Peers that connect() targets: 127.0.0.2:3000..=3007.
pub const PEERS: u16 = 8;
/// Slots of the close-stamp table.
const STAMPS: usize = 1 << 16;

pub fn local_ip() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

pub fn peer(index: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), 3000 + index)
}

/// The peer address space of worker `worker`'s accepted connections: nobody
/// else ever uses it, so the worker alone decides who holds those tuples.
pub fn accept_peer(worker: usize, port: u16) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(127, 0, 10 + worker as u8, 1)),
        port,
    )
}

/// State shared by the workers of one run.
pub struct Ctx {
    pub table: PcbTable<Sock>,
    pub protocol: Protocol,
    pub policy: Policy,
    pub deadline: Instant,
    /// This run's sockets.
    pub ledger: Arc<Ledger>,
    next_uid: AtomicU32,
    /// Holder uid of each exclusive port (0: none).
    pub exclusive: Vec<AtomicU32>,
    /// Holder uid of each 4-tuple, and a generation that changes with every
    /// claim, so that "held by the same claim before and after" means "held
    /// throughout".
    ///
    /// Linux UDP `connect()` does not make 4-tuples unique (the kernel checks
    /// nothing), so there a tuple may have several holders: `holders` counts
    /// them, and a shared tuple has no single expected owner (uid 0).
    tuples: Mutex<HashMap<(SocketAddr, SocketAddr), TupleClaim>>,
    generation: AtomicU64,
    /// Logical clock for close stamps.
    pub clock: AtomicU64,
    /// Per uid slot: `uid << 32 | listener bit << 31 | stamp`.
    closed: Vec<AtomicU64>,
    violations: AtomicUsize,
}

/// Who holds a 4-tuple: `uid` (0 while shared), the claim's generation, and
/// how many PCBs hold it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TupleClaim {
    uid: u32,
    generation: u64,
    holders: u32,
}

impl Ctx {
    /// A run of `table` that ends at `deadline`, with empty registries.
    pub fn new(
        table: PcbTable<Sock>,
        protocol: Protocol,
        policy: Policy,
        deadline: Instant,
    ) -> Ctx {
        Ctx {
            table,
            protocol,
            policy,
            deadline,
            ledger: Ledger::new(),
            next_uid: AtomicU32::new(1),
            exclusive: EXCLUSIVE.map(|_| AtomicU32::new(0)).collect(),
            tuples: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(1),
            clock: AtomicU64::new(0),
            closed: (0..STAMPS).map(|_| AtomicU64::new(0)).collect(),
            violations: AtomicUsize::new(0),
        }
    }

    /// The invariant violations reported so far.
    pub fn violations(&self) -> usize {
        self.violations.load(Ordering::SeqCst)
    }

    /// Whether no 4-tuple is registered.
    pub fn no_tuples_held(&self) -> bool {
        self.tuples.lock().unwrap().is_empty()
    }

    pub fn uid(&self) -> u32 {
        self.next_uid.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether two PCBs may hold one 4-tuple (Linux UDP).
    pub fn shares_tuples(&self) -> bool {
        self.policy == Policy::Linux && self.protocol == Protocol::Udp
    }

    pub fn claim_tuple(&self, tuple: (SocketAddr, SocketAddr), uid: u32) {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        let mut tuples = self.tuples.lock().unwrap();
        match tuples.get_mut(&tuple) {
            None => {
                let holders = 1;
                tuples.insert(
                    tuple,
                    TupleClaim {
                        uid,
                        generation,
                        holders,
                    },
                );
            }
            Some(previous) if self.shares_tuples() => {
                let holders = previous.holders + 1;
                *previous = TupleClaim {
                    uid: 0,
                    generation,
                    holders,
                };
            }
            Some(previous) => {
                let previous = *previous;
                drop(tuples);
                self.violation(format!(
                    "duplicate 4-tuple {tuple:?}: held by {previous:?}, granted to {uid}"
                ));
            }
        }
    }

    pub fn release_tuple(&self, tuple: (SocketAddr, SocketAddr), uid: u32) {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        let mut tuples = self.tuples.lock().unwrap();
        let Some(&TupleClaim {
            uid: holder,
            holders,
            ..
        }) = tuples.get(&tuple)
        else {
            panic!("tuple registry out of step: {tuple:?} released by {uid}, held by nobody");
        };
        assert!(holder == uid || holder == 0, "tuple registry out of step");
        if holders == 1 {
            tuples.remove(&tuple);
        } else {
            let holders = holders - 1;
            tuples.insert(
                tuple,
                TupleClaim {
                    uid: 0,
                    generation,
                    holders,
                },
            );
        }
    }

    /// The claim on `tuple`, if any: its single holder (0 while shared) and
    /// the claim's generation.
    pub fn claim(&self, tuple: &(SocketAddr, SocketAddr)) -> Option<(u32, u64)> {
        self.tuples
            .lock()
            .unwrap()
            .get(tuple)
            .map(|claim| (claim.uid, claim.generation))
    }

    pub fn stamp_close(&self, uid: u32, listener: bool) {
        let stamp = (self.clock.fetch_add(1, Ordering::SeqCst) + 1) & 0x7FFF_FFFF;
        let entry = u64::from(uid) << 32 | u64::from(listener) << 31 | stamp;
        self.closed[uid as usize % STAMPS].store(entry, Ordering::SeqCst);
    }

    /// Checks a lookup result against the close stamps: `start` is the clock
    /// read before the lookup began.
    pub fn check_result(&self, found: &PcbRef<'_, Sock>, start: u64, what: &str) {
        let uid = found.cred().uid;
        let entry = self.closed[uid as usize % STAMPS].load(Ordering::SeqCst);
        let (owner, listener, stamp) = (
            (entry >> 32) as u32,
            entry >> 31 & 1 == 1,
            entry & 0x7FFF_FFFF,
        );
        // Accepted connections inherit their listener's uid; a listener's
        // stamp says nothing about its children, which are the PCBs of that
        // uid with a peer (a closed PCB keeps its tuple).
        let child = listener && found.peer_addr().is_some();
        if entry != 0 && owner == uid && !child && stamp <= start & 0x7FFF_FFFF {
            self.violation(format!(
                "{what}: found uid {uid} ({:?}) closed at {stamp}, lookup started at {start}",
                found.state()
            ));
        }
        if let Some(socket) = found.socket() {
            if socket.uid != uid {
                self.violation(format!(
                    "{what}: socket of uid {} on a PCB of uid {uid}",
                    socket.uid
                ));
            }
        }
    }

    pub fn violation(&self, message: String) {
        if self.violations.fetch_add(1, Ordering::SeqCst) < 20 {
            eprintln!("violation: {message}");
        }
    }
}
