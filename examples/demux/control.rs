//! The control thread: the stack's socket calls, while RX threads look up.
//!
//! Each step picks a random flow slot and moves it one phase on:
//!
//! - **empty**: a new flow. Inbound (80%): a client's SYN is now in flight
//!   (`SynSent`). Outbound: `connect()` from an unbound socket; the table
//!   picks the source address (the builder's selector) and an ephemeral port.
//! - **SYN in flight**: the handshake completes. The control thread looks the
//!   SYN up as the RX path would, finds the listener (or the group member the
//!   table picks), and calls `accept()` on it.
//! - **established**: one time in four, the flow ends: our side closes first
//!   (45%: `time_wait()`, and `close()` after 2MSL), the peer closes first
//!   (40%: `close()` once the last ACK is in), or a RST arrives (15%:
//!   `close()`).
//!
//! New flows are paced to `--churn` per second. Every `restart_every`, one
//! member of an HTTPS group is replaced by a new worker.
//!
//! Memory ordering with the RX threads: a phase that begins with a table
//! change (accept, connect, time_wait) is published after it, with a release
//! store; a phase that ends with one (close, time_wait) is unpublished before
//! it, by a store followed by a release fence. An RX thread reads the word
//! before its lookup (acquire) and again after it (behind an acquire fence):
//! if both reads agree, the table change of neither transition overlapped the
//! lookup.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{fence, Ordering};
use std::time::Instant;

use pcbhash::{Cred, Family, Pcb, PcbTable, State};

use crate::errors::{ErrorCounts, Op};
use crate::flows::{flow_spec, Direction, Phase, Word};
use crate::listeners::{self, ListenerSpec};
use crate::rng::Rng;
use crate::socket::Socket;
use crate::steering;
use crate::workload::{Config, Shared};

/// What happened to flows, as the control thread counts it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowCounts {
    /// Inbound SYNs that started a handshake.
    pub syns: u64,
    /// Inbound connections accepted.
    pub accepted: u64,
    /// Outbound connections made.
    pub connected: u64,
    /// Flows our side closed first: they went through TIME_WAIT.
    pub fin_active: u64,
    /// Flows the peer closed first: closed at once.
    pub fin_passive: u64,
    /// Flows reset.
    pub rst: u64,
    /// TIME_WAIT PCBs closed after 2MSL.
    pub time_wait_expired: u64,
    /// SYNs whose lookup found no listener (never expected).
    pub syn_without_listener: u64,
    /// Flows (and TIME_WAIT PCBs) still open at the end, closed by the teardown.
    pub closed_at_shutdown: u64,
    /// Group members replaced.
    pub listener_restarts: u64,
}

impl FlowCounts {
    /// Connections opened, both directions.
    pub fn opened(&self) -> u64 {
        self.accepted + self.connected
    }

    /// Flows started: inbound SYNs and outbound connects (those that
    /// succeeded). This is what `--churn` paces.
    pub fn started(&self) -> u64 {
        self.syns + self.connected
    }

    /// PCBs of flows that left the table during the run.
    pub fn closed(&self) -> u64 {
        self.fin_passive + self.rst + self.time_wait_expired
    }
}

/// The control thread's state: it owns every PCB handle.
pub struct Control<'a> {
    config: &'a Config,
    table: &'a PcbTable<Socket>,
    shared: &'a Shared,
    plan: &'a [ListenerSpec],
    rng: Rng,
    flows: Vec<Option<Pcb<Socket>>>,
    listeners: Vec<Option<Pcb<Socket>>>,
    time_waits: VecDeque<(Instant, u32)>,
    restart_order: Vec<usize>,
    counts: FlowCounts,
    errors: ErrorCounts,
}

impl<'a> Control<'a> {
    /// A control thread for `table`, before [`Control::setup`].
    pub fn new(
        config: &'a Config,
        table: &'a PcbTable<Socket>,
        shared: &'a Shared,
        plan: &'a [ListenerSpec],
    ) -> Self {
        Self {
            config,
            table,
            shared,
            plan,
            rng: Rng::new(config.seed, 0),
            flows: (0..config.flows).map(|_| None).collect(),
            listeners: Vec::new(),
            time_waits: VecDeque::new(),
            restart_order: listeners::group_ids(plan),
            counts: FlowCounts::default(),
            errors: ErrorCounts::default(),
        }
    }

    /// Opens the listeners, then about two thirds of the flows, so that the
    /// RX threads start on a populated table.
    pub fn setup(&mut self) -> Result<(), String> {
        for id in 0..self.plan.len() {
            let pcb = listeners::open(self.table, self.plan, id).map_err(|(op, e)| {
                format!(
                    "{op} {}: {e}",
                    listeners::describe(self.plan, id, self.table.policy())
                )
            })?;
            self.listeners.push(Some(pcb));
        }
        for slot in 0..self.config.flows {
            if self.rng.below(3) < 2 {
                self.open(slot);
                let word = self.word(slot);
                if word.phase() == Phase::SynSent {
                    self.accept(slot, word);
                }
            }
        }
        Ok(())
    }

    /// Steps until `deadline`, pacing new flows to the configured churn.
    pub fn run_until(&mut self, deadline: Instant) {
        let start = Instant::now();
        let base = self.counts.started();
        let mut next_restart = start + self.config.restart_every;
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            self.expire_time_waits(now);
            if now >= next_restart {
                self.restart_one();
                next_restart += self.config.restart_every;
            }
            let due = f64::from(self.config.churn) * (now - start).as_secs_f64();
            let mut budget = 4096;
            while ((self.counts.started() - base) as f64) < due && budget > 0 {
                self.step();
                budget -= 1;
            }
            if budget == 4096 {
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        }
    }

    /// Closes every PCB, and returns the counts.
    pub fn teardown(mut self) -> (FlowCounts, ErrorCounts) {
        for slot in 0..self.flows.len() {
            if let Some(pcb) = self.flows[slot].take() {
                self.publish(
                    slot as u32,
                    self.word(slot as u32).with_phase(Phase::Closing),
                );
                pcb.close();
                self.counts.closed_at_shutdown += 1;
            }
        }
        self.listeners.clear();
        (self.counts, self.errors)
    }

    fn word(&self, slot: u32) -> Word {
        Word(self.shared.words[slot as usize].load(Ordering::Relaxed))
    }

    /// Publishes a slot's new word; see the module docs for the ordering.
    fn publish(&self, slot: u32, word: Word) {
        self.shared.words[slot as usize].store(word.0, Ordering::Release);
        fence(Ordering::Release);
    }

    fn step(&mut self) {
        let slot = self.rng.below(u64::from(self.config.flows)) as u32;
        let word = self.word(slot);
        match word.phase() {
            Phase::Empty => self.open(slot),
            Phase::SynSent => self.accept(slot, word),
            Phase::Established if self.rng.below(4) == 0 => self.close(slot, word),
            _ => {}
        }
    }

    /// Starts the slot's next flow.
    fn open(&mut self, slot: u32) {
        let generation = self.word(slot).generation().wrapping_add(1).max(1);
        let syn = Word::new(generation, 0, Phase::SynSent);
        let spec = flow_spec(self.shared.seed, slot, syn);
        if let Direction::Inbound(_) = spec.direction {
            self.publish(slot, syn);
            self.counts.syns += 1;
            return;
        }
        let socket = Socket::Flow { slot, generation };
        let pcb = self
            .table
            .attach(family_of(spec.remote), Cred::user(1000), socket);
        let opener = self.shared.steering.opener(slot);
        match steering::opening_for(opener, || pcb.connect(spec.remote)) {
            Ok(local) => {
                self.flows[slot as usize] = Some(pcb);
                self.publish(
                    slot,
                    Word::new(generation, local.port(), Phase::Established),
                );
                self.counts.connected += 1;
                self.shared.opened.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                self.errors.count(Op::Connect, error);
                self.publish(slot, Word::new(generation, 0, Phase::Empty));
            }
        }
    }

    /// Completes an inbound handshake: the SYN's lookup names the listener,
    /// which accepts.
    fn accept(&mut self, slot: u32, word: Word) {
        self.publish(slot, word.with_phase(Phase::Accepting));
        let spec = flow_spec(self.shared.seed, slot, word);
        let listener = {
            let guard = self.table.pin();
            self.table
                .lookup(spec.local, spec.remote, &guard)
                .filter(|pcb| pcb.state() == State::Listen)
                .and_then(|pcb| pcb.socket())
                .and_then(|socket| match socket {
                    Socket::Listener(id) => self.listeners.get(*id)?.as_ref(),
                    _ => None,
                })
        };
        let Some(listener) = listener else {
            self.counts.syn_without_listener += 1;
            self.publish(slot, word.with_phase(Phase::Empty));
            return;
        };
        let socket = Socket::Flow {
            slot,
            generation: word.generation(),
        };
        match listener.accept(spec.local, spec.remote, socket) {
            Ok(pcb) => {
                self.flows[slot as usize] = Some(pcb);
                self.publish(slot, word.with_phase(Phase::Established));
                self.counts.accepted += 1;
                self.shared.opened.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                self.errors.count(Op::Accept, error);
                self.publish(slot, word.with_phase(Phase::Empty));
            }
        }
    }

    /// Ends an established flow: FIN from our side, FIN from the peer, or RST.
    fn close(&mut self, slot: u32, word: Word) {
        let Some(pcb) = self.flows[slot as usize].take() else {
            return;
        };
        self.publish(slot, word.with_phase(Phase::Closing));
        let roll = self.rng.below(100);
        if roll < 45 {
            match pcb.time_wait() {
                Ok(()) => {
                    self.flows[slot as usize] = Some(pcb);
                    self.publish(slot, word.with_phase(Phase::TimeWait));
                    let expiry = Instant::now() + self.config.time_wait;
                    self.time_waits.push_back((expiry, slot));
                    self.counts.fin_active += 1;
                    return;
                }
                Err(error) => self.errors.count(Op::TimeWait, error),
            }
        } else if roll < 85 {
            self.counts.fin_passive += 1;
        } else {
            self.counts.rst += 1;
        }
        pcb.close();
        self.publish(slot, word.with_phase(Phase::Empty));
        self.shared.closed.fetch_add(1, Ordering::Relaxed);
    }

    /// Closes the TIME_WAIT PCBs whose 2MSL is over.
    fn expire_time_waits(&mut self, now: Instant) {
        while let Some(&(expiry, slot)) = self.time_waits.front() {
            if expiry > now {
                break;
            }
            self.time_waits.pop_front();
            let word = self.word(slot);
            if let Some(pcb) = self.flows[slot as usize].take() {
                self.publish(slot, word.with_phase(Phase::Closing));
                pcb.close();
                self.publish(slot, word.with_phase(Phase::Empty));
                self.counts.time_wait_expired += 1;
                self.shared.closed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Replaces the next group member: the new worker joins before the old
    /// one leaves.
    fn restart_one(&mut self) {
        if self.restart_order.is_empty() {
            return;
        }
        let id =
            self.restart_order[self.counts.listener_restarts as usize % self.restart_order.len()];
        self.shared.listener_seq.fetch_add(1, Ordering::AcqRel);
        fence(Ordering::Release);
        match listeners::open(self.table, self.plan, id) {
            Ok(new) => {
                if let Some(old) = self.listeners[id].replace(new) {
                    old.close();
                }
            }
            Err((op, error)) => self.errors.count(op, error),
        }
        self.counts.listener_restarts += 1;
        self.shared.listener_seq.fetch_add(1, Ordering::Release);
    }
}

/// The socket family for talking to `peer`.
fn family_of(peer: SocketAddr) -> Family {
    match peer {
        SocketAddr::V4(_) => Family::Inet,
        SocketAddr::V6(_) => Family::Inet6,
    }
}
