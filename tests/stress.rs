//! Stress tests: several threads churn one table for a bounded time while
//! invariants are checked throughout and at quiescence.
//!
//! Each worker owns the PCBs it creates and knows exactly what it did to them,
//! so every lookup of a tuple it holds has one right answer. Cross-thread
//! invariants go through small registries that are updated *before* a PCB
//! gives something up and *after* it gained it, so a registry entry never
//! outlives what the table grants:
//!
//! - no 4-tuple is held twice (connect, accept);
//! - no two PCBs hold an exclusive port (binds without reuse options);
//! - no lookup returns a PCB whose `close()` returned before the lookup
//!   started (a logical clock stamps each close);
//! - a PCB the worker holds connected is always found by its own tuple, and
//!   a tuple another worker held throughout a lookup is found too;
//! - a socket handed out by `socket()` belongs to the PCB it came from;
//! - at quiescence, `len()`, `iter()` and `stats()` agree with what the
//!   workers hold, connected tuples are unique, two unconnected PCBs on one
//!   address carry SO_REUSEPORT (FreeBSD), and after every PCB is closed the
//!   table is empty and every socket was dropped exactly once;
//! - memory stays bounded under sustained churn: the peak resident set is
//!   sampled during the run and must stay under a generous bound.
//!
//! Two more tests aim at the windows where a lookup could miss: the exact
//! index growing and shrinking under lookups of long-lived connections, and
//! PCBs moving between the wildcard and the exact index (connect, disconnect)
//! under lookups of their flows.
//!
//! Run time: `PCBHASH_STRESS_SECS` seconds for each churn test (default 2; two
//! tables) and half that for each of the other two, about 6 s in all.
//! `PCBHASH_STRESS_THREADS` sets the worker count (default 4).
//! `PCBHASH_STRESS_MAX_RSS_MIB` overrides the memory bound (default 128 MiB;
//! a sanitizer's quarantine needs more). Built with `--cfg pcbhash_broken`,
//! `PCBHASH_STRESS_BROKEN=<variant>` runs against a deliberately broken table
//! (see the loom tests), to see the invariants fail.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use pcbhash::{Cred, Error, Family, Flags, Pcb, PcbRef, PcbTable, Policy, Protocol, State};

/// Serialises the tests of this file: they share the drop counters and the
/// process's resident set.
static SERIAL: Mutex<()> = Mutex::new(());

static SOCKETS_CREATED: AtomicUsize = AtomicUsize::new(0);
static SOCKETS_DROPPED: AtomicUsize = AtomicUsize::new(0);

/// The stress tests' socket: it knows the uid of the PCB it was given to and
/// counts its drops.
#[derive(Debug)]
struct Sock {
    uid: u32,
}

impl Sock {
    fn new(uid: u32) -> Arc<Sock> {
        SOCKETS_CREATED.fetch_add(1, Ordering::SeqCst);
        Arc::new(Sock { uid })
    }
}

impl Drop for Sock {
    fn drop(&mut self) {
        SOCKETS_DROPPED.fetch_add(1, Ordering::SeqCst);
    }
}

/// Ports bound without reuse options, on 127.0.0.1: one holder at most.
const EXCLUSIVE: std::ops::RangeInclusive<u16> = 1000..=1007;
/// Ports bound with random reuse options, on 127.0.0.1 or 0.0.0.0.
const SHARED: std::ops::RangeInclusive<u16> = 2000..=2007;
/// The ephemeral range of the tables under test.
const EPHEMERAL: std::ops::RangeInclusive<u16> = 20000..=20511;
/// Peers that connect() targets: 127.0.0.2:3000..=3007.
const PEERS: u16 = 8;
/// The most PCBs a worker holds at once.
const HOLD: usize = 48;
/// Slots of the close-stamp table.
const STAMPS: usize = 1 << 16;

fn local_ip() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

fn peer(index: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), 3000 + index)
}

/// The peer address space of worker `worker`'s accepted connections: nobody
/// else ever uses it, so the worker alone decides who holds those tuples.
fn accept_peer(worker: usize, port: u16) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(127, 0, 10 + worker as u8, 1)),
        port,
    )
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// A small deterministic generator (xorshift64*), one per worker.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// State shared by the workers of one run.
struct Ctx {
    table: PcbTable<Sock>,
    protocol: Protocol,
    policy: Policy,
    deadline: Instant,
    next_uid: AtomicU32,
    /// Holder uid of each exclusive port (0: none).
    exclusive: Vec<AtomicU32>,
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
    clock: AtomicU64,
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
    fn uid(&self) -> u32 {
        self.next_uid.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether two PCBs may hold one 4-tuple (Linux UDP).
    fn shares_tuples(&self) -> bool {
        self.policy == Policy::Linux && self.protocol == Protocol::Udp
    }

    fn claim_tuple(&self, tuple: (SocketAddr, SocketAddr), uid: u32) {
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

    fn release_tuple(&self, tuple: (SocketAddr, SocketAddr), uid: u32) {
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
    fn claim(&self, tuple: &(SocketAddr, SocketAddr)) -> Option<(u32, u64)> {
        self.tuples
            .lock()
            .unwrap()
            .get(tuple)
            .map(|claim| (claim.uid, claim.generation))
    }

    fn stamp_close(&self, uid: u32, listener: bool) {
        let stamp = (self.clock.fetch_add(1, Ordering::SeqCst) + 1) & 0x7FFF_FFFF;
        let entry = u64::from(uid) << 32 | u64::from(listener) << 31 | stamp;
        self.closed[uid as usize % STAMPS].store(entry, Ordering::SeqCst);
    }

    /// Checks a lookup result against the close stamps: `start` is the clock
    /// read before the lookup began.
    fn check_result(&self, found: &PcbRef<'_, Sock>, start: u64, what: &str) {
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

    fn violation(&self, message: String) {
        if self.violations.fetch_add(1, Ordering::SeqCst) < 20 {
            eprintln!("violation: {message}");
        }
    }
}

/// What a worker knows about a PCB it holds.
struct Held {
    pcb: Pcb<Sock>,
    uid: u32,
    /// Bound on an exclusive port.
    exclusive: Option<u16>,
    /// Connected (or TIME_WAIT) on this tuple.
    tuple: Option<(SocketAddr, SocketAddr)>,
    listener: bool,
    accepted: bool,
}

#[derive(Default, Debug, Clone, Copy)]
struct Counts {
    ops: u64,
    binds: u64,
    connects: u64,
    accepts: u64,
    time_waits: u64,
    disconnects: u64,
    closes: u64,
    lookups: u64,
    hits: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, other: Counts) {
        self.ops += other.ops;
        self.binds += other.binds;
        self.connects += other.connects;
        self.accepts += other.accepts;
        self.time_waits += other.time_waits;
        self.disconnects += other.disconnects;
        self.closes += other.closes;
        self.lookups += other.lookups;
        self.hits += other.hits;
    }
}

struct Worker<'a> {
    ctx: &'a Ctx,
    index: usize,
    rng: Rng,
    held: Vec<Held>,
    counts: Counts,
}

impl Worker<'_> {
    fn attach(&mut self, uid: u32) -> Pcb<Sock> {
        let cred = Cred {
            uid,
            privileged: true,
        };
        self.ctx.table.attach(Family::Inet, cred, Sock::new(uid))
    }

    fn run(mut self) -> (Vec<Held>, Counts) {
        while Instant::now() < self.ctx.deadline {
            for _ in 0..32 {
                self.step();
                self.counts.ops += 1;
            }
        }
        (self.held, self.counts)
    }

    fn step(&mut self) {
        if self.held.len() >= HOLD {
            self.close_one();
            return;
        }
        match self.rng.below(100) {
            0..=9 => self.bind_exclusive(),
            10..=21 => self.bind_shared(),
            22..=33 => self.connect_unbound(),
            34..=39 => self.connect_bound(),
            40..=49 => self.accept(),
            50..=55 => self.time_wait_or_disconnect(),
            56..=69 => self.close_one(),
            _ => self.lookups(),
        }
    }

    fn bind_exclusive(&mut self) {
        let port = *EXCLUSIVE.start() + self.rng.below(EXCLUSIVE.len() as u64) as u16;
        let uid = self.ctx.uid();
        let pcb = self.attach(uid);
        let local = SocketAddr::new(local_ip(), port);
        self.counts.binds += 1;
        match pcb.bind(local) {
            Ok(bound) => {
                assert_eq!(bound, local);
                let slot = &self.ctx.exclusive[(port - EXCLUSIVE.start()) as usize];
                if let Err(holder) =
                    slot.compare_exchange(0, uid, Ordering::SeqCst, Ordering::SeqCst)
                {
                    self.ctx.violation(format!(
                        "conflicting binds coexist: {local} held by {holder} and {uid}"
                    ));
                }
                self.held.push(Held {
                    pcb,
                    uid,
                    exclusive: Some(port),
                    tuple: None,
                    listener: false,
                    accepted: false,
                });
            }
            Err(Error::AddrInUse) => {}
            Err(other) => self.ctx.violation(format!("bind {local}: {other:?}")),
        }
    }

    fn bind_shared(&mut self) {
        let uid = self.ctx.uid();
        let pcb = self.attach(uid);
        let reuse_addr = self.rng.chance(50);
        let reuse_port = self.rng.chance(60);
        pcb.set_reuse_addr(reuse_addr).unwrap();
        pcb.set_reuse_port(reuse_port).unwrap();
        let port = if self.rng.chance(10) {
            0
        } else {
            *SHARED.start() + self.rng.below(SHARED.len() as u64) as u16
        };
        let ip = if self.rng.chance(50) {
            local_ip()
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        };
        self.counts.binds += 1;
        match pcb.bind(SocketAddr::new(ip, port)) {
            Ok(_) => {
                let listener = self.ctx.protocol == Protocol::Tcp
                    && self.rng.chance(50)
                    && pcb.listen().is_ok();
                self.held.push(Held {
                    pcb,
                    uid,
                    exclusive: None,
                    tuple: None,
                    listener,
                    accepted: false,
                });
            }
            Err(Error::AddrInUse | Error::AddrNotAvailable) => {}
            Err(other) => self.ctx.violation(format!("bind {ip}:{port}: {other:?}")),
        }
    }

    fn connect_unbound(&mut self) {
        let uid = self.ctx.uid();
        let pcb = self.attach(uid);
        let remote = peer(self.rng.below(u64::from(PEERS)) as u16);
        self.counts.connects += 1;
        match pcb.connect(remote) {
            Ok(local) => {
                assert!(EPHEMERAL.contains(&local.port()), "{local}");
                self.ctx.claim_tuple((local, remote), uid);
                self.held.push(Held {
                    pcb,
                    uid,
                    exclusive: None,
                    tuple: Some((local, remote)),
                    listener: false,
                    accepted: false,
                });
            }
            Err(Error::AddrNotAvailable | Error::AddrInUse) => {}
            Err(other) => self.ctx.violation(format!("connect {remote}: {other:?}")),
        }
    }

    fn connect_bound(&mut self) {
        let candidates: Vec<usize> = (0..self.held.len())
            .filter(|&i| self.held[i].pcb.state() == State::Bound)
            .collect();
        if candidates.is_empty() {
            return;
        }
        let index = candidates[self.rng.below(candidates.len() as u64) as usize];
        let remote = peer(self.rng.below(u64::from(PEERS)) as u16);
        self.counts.connects += 1;
        let held = &mut self.held[index];
        match held.pcb.connect(remote) {
            Ok(local) => {
                self.ctx.claim_tuple((local, remote), held.uid);
                held.tuple = Some((local, remote));
            }
            Err(Error::AddrInUse | Error::AddrNotAvailable) => {
                assert_eq!(
                    held.pcb.state(),
                    State::Bound,
                    "a failed connect changed the PCB"
                );
            }
            Err(other) => self.ctx.violation(format!("connect {remote}: {other:?}")),
        }
    }

    fn accept(&mut self) {
        let listeners: Vec<usize> = (0..self.held.len())
            .filter(|&i| self.held[i].listener)
            .collect();
        if listeners.is_empty() {
            return;
        }
        let index = listeners[self.rng.below(listeners.len() as u64) as usize];
        let listener = &self.held[index];
        let local = SocketAddr::new(local_ip(), listener.pcb.local_addr().unwrap().port());
        let remote = accept_peer(self.index, 1 + self.rng.below(16) as u16);
        let tuple = (local, remote);
        let holder = self.held.iter().position(|h| h.tuple == Some(tuple));
        let holder_state = holder.map(|h| self.held[h].pcb.state());
        let uid = listener.uid;
        self.counts.accepts += 1;
        let result = self.held[index].pcb.accept(local, remote, Sock::new(uid));
        match (result, holder_state) {
            (Ok(child), None) => {
                self.ctx.claim_tuple(tuple, uid);
                self.push_child(child, uid, tuple);
            }
            (Ok(child), Some(State::TimeWait)) => {
                let old = self.held.swap_remove(holder.unwrap());
                assert_eq!(
                    old.pcb.state(),
                    State::Dropped,
                    "the TIME_WAIT PCB was replaced"
                );
                assert!(old.pcb.socket().is_none());
                self.ctx.release_tuple(tuple, old.uid);
                self.ctx.claim_tuple(tuple, uid);
                drop(old);
                self.push_child(child, uid, tuple);
                let guard = self.ctx.table.pin();
                let found = self.ctx.table.lookup(local, remote, &guard);
                let found = found.expect("the new connection");
                assert_eq!(found.state(), State::Connected);
            }
            (Err(Error::AddrInUse), Some(State::Connected)) => {}
            (result, state) => self.ctx.violation(format!(
                "accept {local} <- {remote} over {state:?}: {:?}",
                result.map(|_| ())
            )),
        }
    }

    fn push_child(&mut self, child: Pcb<Sock>, uid: u32, tuple: (SocketAddr, SocketAddr)) {
        self.held.push(Held {
            pcb: child,
            uid,
            exclusive: None,
            tuple: Some(tuple),
            listener: false,
            accepted: true,
        });
    }

    fn time_wait_or_disconnect(&mut self) {
        let connected: Vec<usize> = (0..self.held.len())
            .filter(|&i| self.held[i].pcb.state() == State::Connected)
            .collect();
        if connected.is_empty() {
            return;
        }
        let index = connected[self.rng.below(connected.len() as u64) as usize];
        let held = &mut self.held[index];
        let tuple = held.tuple.expect("a connected PCB has a tuple");
        if self.ctx.protocol == Protocol::Tcp {
            self.counts.time_waits += 1;
            held.pcb.time_wait().unwrap();
            assert!(held.pcb.socket().is_none());
            let guard = self.ctx.table.pin();
            let found = self.ctx.table.lookup(tuple.0, tuple.1, &guard);
            let found = found.expect("a TIME_WAIT PCB keeps its tuple");
            assert!(found.is(&held.pcb));
            assert!(found.socket().is_none(), "socket() after time_wait()");
        } else {
            self.counts.disconnects += 1;
            // Give the tuple up before the table does.
            self.ctx.release_tuple(tuple, held.uid);
            held.tuple = None;
            held.pcb.disconnect().unwrap();
            assert!(matches!(held.pcb.state(), State::Bound | State::Closed));
        }
    }

    fn close_one(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let index = self.rng.below(self.held.len() as u64) as usize;
        let held = self.held.swap_remove(index);
        self.close(held);
    }

    fn close(&mut self, held: Held) {
        let Held {
            pcb,
            uid,
            exclusive,
            tuple,
            listener,
            accepted,
        } = held;
        // Give everything up in the registries before the table does.
        if let Some(tuple) = tuple {
            self.ctx.release_tuple(tuple, uid);
        }
        if let Some(port) = exclusive {
            let slot = &self.ctx.exclusive[(port - EXCLUSIVE.start()) as usize];
            assert_eq!(slot.swap(0, Ordering::SeqCst), uid);
        }
        let local = pcb.local_addr();
        // A view taken before the close, read after it.
        let guard = self.ctx.table.pin();
        let before = tuple.and_then(|(l, r)| self.ctx.table.lookup(l, r, &guard));
        let before = before.filter(|_| !self.ctx.shares_tuples());
        if let Some(before) = before {
            assert!(before.is(&pcb), "a held tuple resolves to its holder");
        }
        pcb.close();
        self.counts.closes += 1;
        if let Some(before) = before {
            assert!(
                before.socket().is_none(),
                "socket() on a view after close()"
            );
            assert_eq!(before.state(), State::Dropped);
        }
        drop(guard);
        if !accepted {
            self.ctx.stamp_close(uid, listener);
        }
        // Lookups started now must not find it.
        let guard = self.ctx.table.pin();
        if let Some((l, r)) = tuple {
            if let Some(found) = self.ctx.table.lookup(l, r, &guard) {
                // An accepted tuple is this worker's alone; a connected one may
                // be taken by another worker as soon as the close returned.
                let ours = if accepted {
                    found.state().is_connected()
                } else {
                    found.cred().uid == uid
                };
                if ours {
                    self.ctx
                        .violation(format!("closed {l} <- {r} (uid {uid}) still found"));
                }
            }
        } else if let Some(local) = local {
            let probe = SocketAddr::new(local_ip(), local.port());
            if let Some(found) = self.ctx.table.lookup(probe, peer(0), &guard) {
                if found.cred().uid == uid && !found.state().is_connected() {
                    self.ctx
                        .violation(format!("closed {local} (uid {uid}) still found"));
                }
            }
        }
    }

    fn lookups(&mut self) {
        let guard = self.ctx.table.pin();
        for _ in 0..8 {
            self.counts.lookups += 1;
            let start = self.ctx.clock.load(Ordering::SeqCst);
            match self.rng.below(4) {
                // A tuple this worker holds: exactly its holder.
                0 if !self.held.is_empty() => {
                    let held = &self.held[self.rng.below(self.held.len() as u64) as usize];
                    if let Some((local, remote)) = held.tuple {
                        let claim = self.ctx.claim(&(local, remote));
                        let found = self.ctx.table.lookup(local, remote, &guard);
                        // Linux UDP: while the tuple is shared (or its claims
                        // change around the lookup), another holder is a right
                        // answer. Its fields are live and may have moved on
                        // by now, so this is judged from the claims.
                        let shared = self.ctx.shares_tuples()
                            && (claim.is_some_and(|(uid, _)| uid == 0)
                                || self.ctx.claim(&(local, remote)) != claim);
                        match found {
                            Some(found) if found.is(&held.pcb) => self.counts.hits += 1,
                            Some(_) if shared => self.counts.hits += 1,
                            // A holder whose claim is not registered yet
                            // (claims follow the table call).
                            Some(found)
                                if self.ctx.shares_tuples()
                                    && found.peer_addr() == Some(remote) =>
                            {
                                self.counts.hits += 1
                            }
                            other => self.ctx.violation(format!(
                                "held {local} <- {remote} (holder now {:?} {:?} -> {:?}) \
                                 resolved to {other:?}",
                                held.pcb.state(),
                                held.pcb.local_addr(),
                                held.pcb.peer_addr(),
                            )),
                        }
                    }
                }
                // A SYN to a listener this worker holds: something listens.
                1 => {
                    let Some(held) = self.held.iter().find(|h| h.listener) else {
                        continue;
                    };
                    let port = held.pcb.local_addr().unwrap().port();
                    let local = SocketAddr::new(local_ip(), port);
                    let remote = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9)), 9);
                    match self.ctx.table.lookup(local, remote, &guard) {
                        Some(found) => {
                            self.counts.hits += 1;
                            // TCP PCBs never change port once bound.
                            assert_eq!(found.local_addr().port(), port);
                            self.ctx.check_result(&found, start, "syn");
                        }
                        None => self
                            .ctx
                            .violation(format!("no PCB for {local} while a listener holds it")),
                    }
                }
                // Anything: checked against the close stamps.
                2 => {
                    let port = match self.rng.below(3) {
                        0 => *EXCLUSIVE.start() + self.rng.below(EXCLUSIVE.len() as u64) as u16,
                        1 => *SHARED.start() + self.rng.below(SHARED.len() as u64) as u16,
                        _ => *EPHEMERAL.start() + self.rng.below(EPHEMERAL.len() as u64) as u16,
                    };
                    let local = SocketAddr::new(local_ip(), port);
                    let remote = peer(self.rng.below(u64::from(PEERS)) as u16);
                    let claim = self.ctx.claim(&(local, remote));
                    let found = self.ctx.table.lookup(local, remote, &guard);
                    // Held by one claim throughout: another worker's
                    // connection, which must be found whatever that worker
                    // and the index are doing meanwhile.
                    if let Some((uid, _)) = claim
                        .filter(|_| self.ctx.claim(&(local, remote)) == claim)
                        .filter(|&(uid, _)| uid != 0)
                    {
                        match found {
                            Some(found) if found.cred().uid == uid => {}
                            // Linux UDP: a second holder whose claim is not
                            // registered yet (claims follow the table call).
                            Some(found)
                                if self.ctx.shares_tuples()
                                    && found.peer_addr() == Some(remote) => {}
                            other => self.ctx.violation(format!(
                                "false negative: {local} <- {remote} held by uid {uid} \
                                 throughout, lookup gave {:?}",
                                other.map(|found| (
                                    found.cred().uid,
                                    found.state(),
                                    found.peer_addr()
                                ))
                            )),
                        }
                    }
                    if let Some(found) = found {
                        self.counts.hits += 1;
                        // The view reads live fields: a UDP PCB may have
                        // disconnected (and given its port up) since.
                        if self.ctx.protocol == Protocol::Tcp {
                            assert_eq!(found.local_addr().port(), port);
                        }
                        self.ctx.check_result(&found, start, "lookup");
                    }
                }
                _ => {
                    let port = *SHARED.start() + self.rng.below(SHARED.len() as u64) as u16;
                    let local = SocketAddr::new(local_ip(), port);
                    if let Some(found) = self.ctx.table.lookup_local(local, true, &guard) {
                        self.counts.hits += 1;
                        if self.ctx.protocol == Protocol::Tcp {
                            assert_eq!(found.local_addr().port(), port);
                        }
                        self.ctx.check_result(&found, start, "lookup_local");
                    }
                }
            }
        }
    }
}

/// Resident set size and its peak, in KiB, from `/proc/self/status`.
fn rss_kib() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|line| line.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Checks at quiescence: the table agrees with what the workers hold.
fn check_quiescent(ctx: &Ctx, held: &[Held]) {
    let table = &ctx.table;
    let in_table = held.iter().filter(|h| h.pcb.state().is_in_table()).count();
    assert_eq!(table.len(), in_table, "len() at quiescence");
    let guard = table.pin();
    assert_eq!(table.iter(&guard).count(), in_table, "iter() at quiescence");
    let stats = table.stats();
    assert_eq!(stats.len, in_table);
    assert_eq!(stats.attached, held.len(), "live handles");
    let connected = held.iter().filter(|h| h.pcb.state().is_connected()).count();
    assert_eq!(stats.connected + stats.time_wait, connected);
    // Linux UDP: of several PCBs connected over one 4-tuple, only the one
    // that connected last is in the exact index.
    let shadowed = held
        .iter()
        .filter(|h| h.pcb.flags().contains(Flags::SHADOWED))
        .count();
    assert_eq!(
        stats.exact.entries,
        connected - shadowed,
        "exact index entries"
    );

    let mut tuples = HashSet::new();
    let mut by_local: HashMap<SocketAddr, Vec<PcbRef<'_, Sock>>> = HashMap::new();
    for pcb in table.iter(&guard) {
        if pcb.state().is_connected() {
            let tuple = (pcb.local_addr(), pcb.peer_addr().unwrap());
            let first = tuples.insert(tuple);
            assert!(
                first || ctx.shares_tuples(),
                "duplicate 4-tuple {tuple:?} at quiescence"
            );
            let found = table.lookup(tuple.0, tuple.1, &guard).unwrap();
            assert!(
                found.same_pcb(&pcb) || ctx.shares_tuples(),
                "a connected PCB is what its tuple resolves to"
            );
        } else {
            by_local.entry(pcb.local_addr()).or_default().push(pcb);
        }
    }
    for (local, owners) in &by_local {
        if EXCLUSIVE.contains(&local.port()) {
            assert_eq!(owners.len(), 1, "conflicting binds on {local}");
        }
        if ctx.policy == Policy::FreeBsd && owners.len() > 1 {
            assert!(
                owners.iter().all(|pcb| pcb.flags().reuse_port()),
                "PCBs share {local} without SO_REUSEPORT"
            );
        }
    }
    for h in held {
        if let Some((local, remote)) = h.tuple {
            let found = table.lookup(local, remote, &guard).unwrap();
            // Linux UDP: any holder of the shared tuple is a right answer.
            let shared = ctx.shares_tuples() && found.peer_addr() == Some(remote);
            assert!(found.is(&h.pcb) || shared, "{local} <- {remote}: {found:?}");
        }
    }
}

/// One run: `threads` workers churn a table of `protocol` under `policy`.
fn churn(policy: Policy, protocol: Protocol) {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let secs = env_number("PCBHASH_STRESS_SECS", 2);
    let threads = env_number("PCBHASH_STRESS_THREADS", 4) as usize;
    let max_rss_mib = env_number("PCBHASH_STRESS_MAX_RSS_MIB", 128);
    let created_before = SOCKETS_CREATED.load(Ordering::SeqCst);
    let dropped_before = SOCKETS_DROPPED.load(Ordering::SeqCst);

    let builder = PcbTable::<Sock>::builder()
        .policy(policy)
        .protocol(protocol)
        .ephemeral_ports(EPHEMERAL)
        // Small, so that the exact index resizes (both ways) during the run.
        .exact_buckets(4);
    // Self-test of the invariants: with `--cfg pcbhash_broken`,
    // `PCBHASH_STRESS_BROKEN=<variant>` runs against a broken table.
    #[cfg(pcbhash_broken)]
    let builder = match std::env::var("PCBHASH_STRESS_BROKEN") {
        Ok(variant) => builder.broken(&variant),
        Err(_) => builder,
    };
    let table = builder.build();
    let ctx = Arc::new(Ctx {
        table,
        protocol,
        policy,
        deadline: Instant::now() + Duration::from_secs(secs),
        next_uid: AtomicU32::new(1),
        exclusive: EXCLUSIVE.map(|_| AtomicU32::new(0)).collect(),
        tuples: Mutex::new(HashMap::new()),
        generation: AtomicU64::new(1),
        clock: AtomicU64::new(0),
        closed: (0..STAMPS).map(|_| AtomicU64::new(0)).collect(),
        violations: AtomicUsize::new(0),
    });

    // Sample the resident set while the workers run.
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        thread::spawn(move || {
            let mut peak = 0;
            while !done.load(Ordering::Relaxed) {
                if let Some((rss, _)) = rss_kib() {
                    peak = peak.max(rss);
                }
                thread::sleep(Duration::from_millis(20));
            }
            peak
        })
    };
    let start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|index| {
            let ctx = ctx.clone();
            thread::spawn(move || {
                let worker = Worker {
                    ctx: &ctx,
                    index,
                    rng: Rng(0x9E37_79B9_7F4A_7C15 ^ ((index as u64 + 1) * 0x1234_5678_9ABC)),
                    held: Vec::new(),
                    counts: Counts::default(),
                };
                let (held, counts) = worker.run();
                // An idle thread hands its garbage over.
                ctx.table.flush();
                (held, counts)
            })
        })
        .collect();
    let mut held = Vec::new();
    let mut counts = Counts::default();
    for worker in workers {
        let (mine, theirs) = worker.join().expect("a worker panicked");
        held.extend(mine);
        counts += theirs;
    }
    let elapsed = start.elapsed();
    done.store(true, Ordering::Relaxed);
    let peak_rss_kib = sampler.join().unwrap();

    check_quiescent(&ctx, &held);
    let stats = ctx.table.stats();
    let in_table = ctx.table.len();

    // Close everything; the table must be empty and every socket dropped.
    let mut closer = Worker {
        ctx: &ctx,
        index: threads,
        rng: Rng(1),
        held: Vec::new(),
        counts: Counts::default(),
    };
    for h in held {
        closer.close(h);
    }
    assert_eq!(ctx.table.len(), 0);
    assert_eq!(ctx.table.stats().attached, 0);
    assert!(ctx.tuples.lock().unwrap().is_empty());
    let violations = ctx.violations.load(Ordering::SeqCst);
    let resizes = stats.resizes;
    ctx.table.flush();
    drop(ctx);
    let created = SOCKETS_CREATED.load(Ordering::SeqCst) - created_before;
    // Detached sockets are released through the epoch: drive reclamation
    // (bounded) until every deferred drop has run.
    for _ in 0..10_000 {
        if SOCKETS_DROPPED.load(Ordering::SeqCst) - dropped_before == created {
            break;
        }
        crossbeam_epoch::pin().flush();
        std::thread::yield_now();
    }
    let dropped = SOCKETS_DROPPED.load(Ordering::SeqCst) - dropped_before;

    eprintln!(
        "stress {policy:?}/{protocol:?}: {threads} threads, {:.1} s, {} ops ({:.0}/s): \
         {} binds, {} connects, {} accepts, {} time_waits, {} disconnects, {} closes, \
         {} lookups ({} hits); {in_table} PCBs at quiescence, {resizes} resizes; \
         {created} sockets; peak RSS {} KiB (bound {} MiB); {violations} violations",
        elapsed.as_secs_f64(),
        counts.ops,
        counts.ops as f64 / elapsed.as_secs_f64(),
        counts.binds,
        counts.connects,
        counts.accepts,
        counts.time_waits,
        counts.disconnects,
        counts.closes,
        counts.lookups,
        counts.hits,
        peak_rss_kib,
        max_rss_mib,
    );
    assert_eq!(violations, 0, "invariant violations (see above)");
    assert_eq!(created, dropped, "every socket is dropped exactly once");
    assert!(counts.connects > 0 && counts.closes > 0 && counts.hits > 0);
    assert!(
        peak_rss_kib <= max_rss_mib * 1024,
        "peak RSS {peak_rss_kib} KiB over {max_rss_mib} MiB"
    );
}

/// The exact index grows and shrinks over and over (one worker connects
/// hundreds of PCBs, then closes them) while the other threads look up a set
/// of long-lived connections: every lookup must find its connection, whatever
/// the migration is doing.
#[test]
fn stress_resize_vs_lookup() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let secs = env_number("PCBHASH_STRESS_SECS", 2).div_ceil(2);
    let threads = env_number("PCBHASH_STRESS_THREADS", 4).max(2) as usize;
    let builder = PcbTable::<Sock>::builder()
        .protocol(Protocol::Udp)
        .ephemeral_ports(20000..=29999)
        .exact_buckets(1);
    #[cfg(pcbhash_broken)]
    let builder = match std::env::var("PCBHASH_STRESS_BROKEN") {
        Ok(variant) => builder.broken(&variant),
        Err(_) => builder,
    };
    let table = Arc::new(builder.build::<Sock>());
    let stable: Vec<(Pcb<Sock>, SocketAddr, SocketAddr)> = (0..64u16)
        .map(|i| {
            let pcb = table.attach(Family::Inet, Cred::ROOT, Sock::new(0));
            let remote = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1)), 1000 + i);
            let local = pcb.connect(remote).unwrap();
            (pcb, local, remote)
        })
        .collect();
    let keys: Arc<Vec<(SocketAddr, SocketAddr)>> =
        Arc::new(stable.iter().map(|(_, l, r)| (*l, *r)).collect());
    let deadline = Instant::now() + Duration::from_secs(secs);
    let misses = Arc::new(AtomicUsize::new(0));
    let lookups = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (1..threads)
        .map(|_| {
            let (table, keys, misses, lookups) =
                (table.clone(), keys.clone(), misses.clone(), lookups.clone());
            thread::spawn(move || {
                while Instant::now() < deadline {
                    let guard = table.pin();
                    for (local, remote) in keys.iter() {
                        if table.lookup(*local, *remote, &guard).is_none() {
                            misses.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    lookups.fetch_add(keys.len(), Ordering::Relaxed);
                }
            })
        })
        .collect();
    let mut cycles = 0;
    // At least one cycle, however late this thread gets to run.
    while cycles == 0 || Instant::now() < deadline {
        let burst: Vec<Pcb<Sock>> = (0..600u16)
            .map(|i| {
                let pcb = table.attach(Family::Inet, Cred::ROOT, Sock::new(0));
                let remote = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 2, 1)), 1000 + i % 8);
                pcb.connect(remote).unwrap();
                pcb
            })
            .collect();
        drop(burst);
        cycles += 1;
    }
    for reader in readers {
        reader.join().unwrap();
    }
    let stats = table.stats();
    eprintln!(
        "stress resize: {threads} threads, {secs} s, {cycles} grow/shrink cycles, {} resizes, \
         {} lookups, {} false negatives",
        stats.resizes,
        lookups.load(Ordering::Relaxed),
        misses.load(Ordering::Relaxed)
    );
    assert_eq!(
        misses.load(Ordering::Relaxed),
        0,
        "false negatives during resizes"
    );
    assert!(stats.resizes >= 4, "the index must resize");
    drop(stable);
    assert_eq!(table.len(), 0);
}

/// UDP PCBs move between the wildcard and the exact index over and over
/// (connect, then disconnect) while other threads look their flows up: a PCB
/// matches the flow in both places, so every lookup must find it.
#[test]
fn stress_move_vs_lookup() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let secs = env_number("PCBHASH_STRESS_SECS", 2).div_ceil(2);
    let threads = env_number("PCBHASH_STRESS_THREADS", 4).max(2) as usize;
    let builder = PcbTable::<Sock>::builder().protocol(Protocol::Udp);
    #[cfg(pcbhash_broken)]
    let builder = match std::env::var("PCBHASH_STRESS_BROKEN") {
        Ok(variant) => builder.broken(&variant),
        Err(_) => builder,
    };
    let table = Arc::new(builder.build::<Sock>());
    let flows: Vec<(SocketAddr, SocketAddr)> = (0..32u16)
        .map(|i| {
            (
                SocketAddr::new(local_ip(), 5000 + i),
                SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 3, 1)), 6000 + i),
            )
        })
        .collect();
    let pcbs: Vec<Pcb<Sock>> = flows
        .iter()
        .map(|(local, _)| {
            let pcb = table.attach(Family::Inet, Cred::ROOT, Sock::new(0));
            pcb.bind(*local).unwrap();
            pcb
        })
        .collect();
    let flows = Arc::new(flows);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let misses = Arc::new(AtomicUsize::new(0));
    let lookups = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (1..threads)
        .map(|_| {
            let (table, flows, misses, lookups) = (
                table.clone(),
                flows.clone(),
                misses.clone(),
                lookups.clone(),
            );
            thread::spawn(move || {
                while Instant::now() < deadline {
                    let guard = table.pin();
                    for (local, remote) in flows.iter() {
                        if table.lookup(*local, *remote, &guard).is_none() {
                            misses.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    lookups.fetch_add(flows.len(), Ordering::Relaxed);
                }
            })
        })
        .collect();
    let mut moves = 0u64;
    while Instant::now() < deadline {
        for (pcb, (local, remote)) in pcbs.iter().zip(flows.iter()) {
            assert_eq!(pcb.connect(*remote).unwrap(), *local);
            // FreeBSD: back to 0.0.0.0 on the same port, which still matches.
            pcb.disconnect().unwrap();
            moves += 2;
        }
    }
    for reader in readers {
        reader.join().unwrap();
    }
    eprintln!(
        "stress move: {threads} threads, {secs} s, {moves} moves between indexes, \
         {} lookups, {} false negatives",
        lookups.load(Ordering::Relaxed),
        misses.load(Ordering::Relaxed)
    );
    assert_eq!(
        misses.load(Ordering::Relaxed),
        0,
        "false negatives during moves"
    );
    drop(pcbs);
    assert_eq!(table.len(), 0);
}

#[test]
fn stress_freebsd_tcp() {
    churn(Policy::FreeBsd, Protocol::Tcp);
}

#[test]
fn stress_linux_udp() {
    churn(Policy::Linux, Protocol::Udp);
}
