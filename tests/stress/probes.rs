//! The worker's lookups: each is judged by what the worker holds, by the
//! tuple registry and by the close stamps.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;

use pcbhash::Protocol;

use crate::ctx::{local_ip, peer, EPHEMERAL, EXCLUSIVE, PEERS, SHARED};
use crate::worker::Worker;

impl Worker<'_> {
    pub(crate) fn lookups(&mut self) {
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
