//! A churn worker: it opens, binds, connects, accepts, moves to TIME_WAIT,
//! disconnects and closes PCBs at random, and checks each result against what
//! it knows and what the registries say.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::Instant;

use pcbhash::{Cred, Error, Family, Pcb, Protocol, State};

use crate::ctx::{accept_peer, local_ip, peer, Ctx, EPHEMERAL, EXCLUSIVE, PEERS, SHARED};
use crate::ledger::Sock;

/// The most PCBs a worker holds at once.
const HOLD: usize = 48;

/// A small deterministic generator (xorshift64*), one per worker.
pub struct Rng(u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// What a worker knows about a PCB it holds.
pub struct Held {
    pub pcb: Pcb<Sock>,
    uid: u32,
    /// Bound on an exclusive port.
    exclusive: Option<u16>,
    /// Connected (or TIME_WAIT) on this tuple.
    pub tuple: Option<(SocketAddr, SocketAddr)>,
    pub listener: bool,
    accepted: bool,
}

#[derive(Default, Debug, Clone, Copy)]
pub struct Counts {
    pub ops: u64,
    pub binds: u64,
    pub connects: u64,
    pub accepts: u64,
    pub time_waits: u64,
    pub disconnects: u64,
    pub closes: u64,
    pub lookups: u64,
    pub hits: u64,
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

pub struct Worker<'a> {
    pub(crate) ctx: &'a Ctx,
    index: usize,
    pub(crate) rng: Rng,
    pub(crate) held: Vec<Held>,
    pub(crate) counts: Counts,
}

impl<'a> Worker<'a> {
    /// Worker number `index` of a run, with its own random sequence.
    pub fn new(ctx: &'a Ctx, index: usize) -> Self {
        Worker {
            ctx,
            index,
            rng: Rng(0x9E37_79B9_7F4A_7C15 ^ ((index as u64 + 1) * 0x1234_5678_9ABC)),
            held: Vec::new(),
            counts: Counts::default(),
        }
    }

    fn attach(&mut self, uid: u32) -> Pcb<Sock> {
        let cred = Cred {
            uid,
            privileged: true,
        };
        self.ctx
            .table
            .attach(Family::Inet, cred, self.ctx.ledger.socket(uid))
    }

    pub fn run(mut self) -> (Vec<Held>, Counts) {
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
        let result = self.held[index]
            .pcb
            .accept(local, remote, self.ctx.ledger.socket(uid));
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
                assert!(old.pcb.socket(&self.ctx.table.pin()).is_none());
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
            assert!(held.pcb.socket(&self.ctx.table.pin()).is_none());
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

    pub fn close(&mut self, held: Held) {
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
                // be taken by another worker as soon as the close returned. A
                // PCB found while it was bound on the port may have connected
                // elsewhere since: only one connected on this tuple counts.
                let ours = if accepted {
                    found.state().is_connected() && found.peer_addr() == Some(r)
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
}
