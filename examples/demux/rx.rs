//! An RX thread: makes packets and demultiplexes every one of them.
//!
//! Of 64 packets, one is a segment to a closed port, one a SYN from an unknown
//! host to a service, and the rest belong to a random flow slot, shaped by its
//! phase. Each lookup is checked against what the slot's phase allows, when
//! the phase (and, for SYNs, the listener set) was the same before and after
//! the lookup; a packet whose flow changed phase meanwhile is counted as
//! unchecked, since either answer is then correct.
//!
//! | packet | the lookup must find |
//! |---|---|
//! | data of an established flow | the flow's own PCB, from the exact index |
//! | last ACK of a flow in TIME_WAIT | its TIME_WAIT PCB, whose socket is gone |
//! | SYN (of a flow, or stray) | a listener of the service; for HTTPS a group member |
//! | late segment of a closed flow | anything but the flow's old PCB |
//! | segment to a closed port | nothing |
//! | SYN to port 8443 on device 2 | device 2's listener (Linux) |
//! | SYN to port 8443 on device 1 | nothing: that listener is device 2's (Linux) |
//! | reply of an outbound flow | (as its phase says, and) on the RX thread that opened it |
//!
//! Packets are steered as a NIC steers them (`steering.rs`): a thread looks
//! up an outbound flow's packet only when the steering hash sends it to its
//! own queue, and passes over the others, which are another thread's. The
//! table's port filter gave each outbound connection a port whose replies
//! come back to the queue of the thread that opened it, so every such
//! reply a thread looks up is of a flow it opened.
//!
//! Under `Policy::Linux` every packet arrives on a device and is looked up
//! with `lookup_on`: the flows' packets on device 1, and one packet in 64 on
//! device 2 or device 1 toward a random service, including the admin port
//! only device 2 serves. Under `Policy::FreeBsd` the table has no devices
//! yet: every packet is looked up with `lookup`, and that packet is a flow's
//! like the others.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{fence, Ordering};

use pcbhash::{Device, Guard, PcbRef, PcbTable, State};

use crate::flows::{
    flow_spec, stray_source, Direction, Phase, Service, Word, CLOSED_PORTS, HOST_V4, HOST_V6,
};
use crate::listeners::{has_second_device, ListenerSpec, DEVICE_1, DEVICE_2};
use crate::outcome::{Outcome, Outcomes};
use crate::rng::Rng;
use crate::socket::Socket;
use crate::workload::Shared;

/// Packets per epoch guard. Re-pinning now and then lets memory retired by the
/// control thread be reclaimed.
const BATCH: usize = 256;

/// One invariant: how often it was checked, and how often it failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Check {
    /// Lookups checked.
    pub checked: u64,
    /// Lookups that broke the invariant.
    pub violations: u64,
}

impl Check {
    fn record(&mut self, ok: bool) {
        self.checked += 1;
        self.violations += u64::from(!ok);
    }

    fn merge(&mut self, other: &Check) {
        self.checked += other.checked;
        self.violations += other.violations;
    }
}

/// The invariants the RX threads check; see the module docs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checks {
    /// Data of an established flow found the flow's own PCB.
    pub own_pcb: Check,
    /// The last ACK of a TIME_WAIT flow found its PCB, without a socket.
    pub time_wait: Check,
    /// A SYN found a listener of its service (a group member for HTTPS).
    pub syn_listener: Check,
    /// A late segment of a closed flow did not find its old PCB.
    pub closed_gone: Check,
    /// A segment to a closed port found nothing.
    pub closed_port: Check,
    /// A SYN on device 2 to its admin port found device 2's listener.
    pub device_listener: Check,
    /// A SYN on device 1 to device 2's admin port found nothing.
    pub other_device: Check,
    /// A reply of an outbound flow was looked up by the RX thread that
    /// opened the flow (first in [`Checks::named`]).
    pub opener_rx: Check,
    /// Packets whose flow changed phase during the lookup.
    pub unchecked: u64,
}

impl Checks {
    /// The invariants with their names, for the report.
    pub fn named(&self) -> [(&'static str, Check); 8] {
        [
            (
                "replies looked up by the flow's opening thread",
                self.opener_rx,
            ),
            ("data of live flows found their own PCB", self.own_pcb),
            (
                "ACKs in TIME_WAIT found a PCB with no socket",
                self.time_wait,
            ),
            (
                "SYNs found a listener (HTTPS: a group member)",
                self.syn_listener,
            ),
            ("late segments never found a closed PCB", self.closed_gone),
            ("segments to closed ports missed", self.closed_port),
            (
                "SYNs on device 2 found its own listener",
                self.device_listener,
            ),
            (
                "SYNs on device 1 missed device 2's listener",
                self.other_device,
            ),
        ]
    }

    /// The invariants a run under `policy` checks: the two device rows (the
    /// last two) only with a second device.
    pub fn shown(&self, policy: pcbhash::Policy) -> Vec<(&'static str, Check)> {
        let rows = self.named();
        let shown = if has_second_device(policy) {
            rows.len()
        } else {
            rows.len() - 2
        };
        rows[..shown].to_vec()
    }

    /// Lookups checked. (The first row checks the RX thread of lookups
    /// the other rows check as well: not counted twice.)
    pub fn checked(&self) -> u64 {
        self.named()[1..].iter().map(|(_, c)| c.checked).sum()
    }

    /// Lookups that broke an invariant.
    pub fn violations(&self) -> u64 {
        self.named().iter().map(|(_, c)| c.violations).sum()
    }

    /// Adds another thread's checks.
    pub fn merge(&mut self, other: &Checks) {
        self.own_pcb.merge(&other.own_pcb);
        self.time_wait.merge(&other.time_wait);
        self.syn_listener.merge(&other.syn_listener);
        self.closed_gone.merge(&other.closed_gone);
        self.closed_port.merge(&other.closed_port);
        self.device_listener.merge(&other.device_listener);
        self.other_device.merge(&other.other_device);
        self.opener_rx.merge(&other.opener_rx);
        self.unchecked += other.unchecked;
    }
}

/// What one RX thread counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RxCounts {
    /// Packets looked up.
    pub packets: u64,
    /// Lookups by outcome.
    pub outcomes: Outcomes,
    /// Invariant checks.
    pub checks: Checks,
    /// Lookups that landed on each listener, by listener id.
    pub listener_hits: Vec<u64>,
    /// Lookups by the device the packet arrived on: `lookup` (no device),
    /// then `lookup_on` device 1 and device 2.
    pub by_device: ByDevice,
    /// Packets of outbound flows steered to another RX thread's queue, and
    /// so not looked up here.
    pub steered_away: u64,
}

/// Lookups counted by the device the packet arrived on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ByDevice {
    /// `lookup`: the device is unknown (every lookup under FreeBSD).
    pub unknown: u64,
    /// `lookup_on(Device(1), ..)`.
    pub device_1: u64,
    /// `lookup_on(Device(2), ..)`.
    pub device_2: u64,
}

impl ByDevice {
    fn count(&mut self, device: Option<Device>) {
        match device {
            None => self.unknown += 1,
            Some(DEVICE_2) => self.device_2 += 1,
            Some(_) => self.device_1 += 1,
        }
    }

    /// Adds another thread's counts.
    pub fn merge(&mut self, other: &ByDevice) {
        self.unknown += other.unknown;
        self.device_1 += other.device_1;
        self.device_2 += other.device_2;
    }
}

/// The RX loop of thread `index`: batches of lookups until `shared.stop` is
/// set.
pub fn run(
    table: &PcbTable<Socket>,
    shared: &Shared,
    plan: &[ListenerSpec],
    index: usize,
) -> RxCounts {
    let mut rx = Rx {
        table,
        shared,
        devices: has_second_device(table.policy()),
        index,
        rng: Rng::new(shared.seed, 1 + index as u64),
        counts: RxCounts {
            listener_hits: vec![0; plan.len()],
            ..RxCounts::default()
        },
    };
    // At least one batch, however short the run.
    loop {
        let guard = table.pin();
        for _ in 0..BATCH {
            rx.packet(&guard);
        }
        drop(guard);
        shared.rx_packets[index].store(rx.counts.packets, Ordering::Relaxed);
        if shared.stop.load(Ordering::Relaxed) {
            return rx.counts;
        }
    }
}

struct Rx<'a> {
    table: &'a PcbTable<Socket>,
    shared: &'a Shared,
    /// Whether packets arrive on devices (`lookup_on`) and device 2 exists.
    devices: bool,
    /// The RX queue this thread serves.
    index: usize,
    rng: Rng,
    counts: RxCounts,
}

impl Rx<'_> {
    fn packet(&mut self, guard: &Guard) {
        self.counts.packets += 1;
        match self.rng.below(64) {
            0 => self.closed_port_packet(guard),
            1 => self.stray_syn(guard),
            2 if self.devices => self.on_either_device(guard),
            _ => self.of_a_flow(guard),
        }
    }

    /// The device of the flows' packets: device 1, or none (FreeBSD).
    fn device_1(&self) -> Option<Device> {
        self.devices.then_some(DEVICE_1)
    }

    /// Looks a packet up as arriving on `device` (`None`: unknown).
    fn lookup<'g>(
        &mut self,
        device: Option<Device>,
        local: SocketAddr,
        remote: SocketAddr,
        guard: &'g Guard,
    ) -> (Option<PcbRef<'g, Socket>>, Outcome) {
        let found = match device {
            Some(device) => self.table.lookup_on(device, local, remote, guard),
            None => self.table.lookup(local, remote, guard),
        };
        self.counts.by_device.count(device);
        let outcome = Outcome::of(found.as_ref());
        self.counts.outcomes.count(outcome);
        if matches!(outcome, Outcome::Group | Outcome::Wildcard) {
            if let Some(Socket::Listener(id)) = found.and_then(|pcb| pcb.socket()) {
                if let Some(hits) = self.counts.listener_hits.get_mut(*id) {
                    *hits += 1;
                }
            }
        }
        (found, outcome)
    }

    fn closed_port_packet(&mut self, guard: &Guard) {
        let h = self.rng.next_u64();
        let port = CLOSED_PORTS[(h % CLOSED_PORTS.len() as u64) as usize];
        let (local, remote) = stray_tuple(h, port);
        let (found, _) = self.lookup(self.device_1(), local, remote, guard);
        self.counts.checks.closed_port.record(found.is_none());
    }

    fn stray_syn(&mut self, guard: &Guard) {
        let h = self.rng.next_u64();
        let service = Service::ALL[(h % 3) as usize];
        self.stray_syn_to(self.device_1(), service, h, guard);
    }

    /// A stray SYN arriving on device 2 or device 1, to one of the services
    /// or to device 2's admin port (`Policy::Linux`).
    fn on_either_device(&mut self, guard: &Guard) {
        let h = self.rng.next_u64();
        let device = if h & (1 << 40) == 0 {
            DEVICE_2
        } else {
            DEVICE_1
        };
        let Some(&service) = Service::ALL.get((h % 4) as usize) else {
            let (local, remote) = stray_tuple(h, Service::Admin.port());
            let (found, outcome) = self.lookup(Some(device), local, remote, guard);
            let checks = &mut self.counts.checks;
            if device == DEVICE_2 {
                let ok = outcome == Outcome::Wildcard
                    && found.is_some_and(|pcb| {
                        pcb.device() == Some(DEVICE_2)
                            && pcb.state() == State::Listen
                            && pcb.local_addr().port() == Service::Admin.port()
                    });
                checks.device_listener.record(ok);
            } else {
                checks.other_device.record(found.is_none());
            }
            return;
        };
        self.stray_syn_to(Some(device), service, h, guard);
    }

    /// A SYN from a stray host to `service`, arriving on `device`: the
    /// service's listeners are bound to no device, so they answer it.
    fn stray_syn_to(&mut self, device: Option<Device>, service: Service, h: u64, guard: &Guard) {
        let (local, remote) = stray_tuple(h, service.port());
        let before = self.shared.listener_seq.load(Ordering::Acquire);
        let (found, outcome) = self.lookup(device, local, remote, guard);
        let ok = syn_found_listener(found.as_ref(), outcome, service);
        fence(Ordering::Acquire);
        let after = self.shared.listener_seq.load(Ordering::Relaxed);
        if before == after && before % 2 == 0 {
            self.counts.checks.syn_listener.record(ok);
        } else {
            self.counts.checks.unchecked += 1;
        }
    }

    /// A packet of the flow in a random slot, shaped by the slot's phase.
    ///
    /// The verdict is reached from what the lookup returned *before* the slot
    /// is read again: a PCB read afterwards may have moved on (TIME_WAIT,
    /// closed) in between, and the second read would not show it.
    fn of_a_flow(&mut self, guard: &Guard) {
        let slot = self.rng.below(self.shared.words.len() as u64) as u32;
        let word = &self.shared.words[slot as usize];
        let before = Word(word.load(Ordering::Acquire));
        if before == Word::INITIAL {
            return self.closed_port_packet(guard);
        }
        let listeners_before = self.shared.listener_seq.load(Ordering::Acquire);
        let spec = flow_spec(self.shared.seed, slot, before);
        let steering = &self.shared.steering;
        let outbound = spec.direction == Direction::Outbound && spec.local.port() != 0;
        if outbound {
            if steering.queue(spec.local, spec.remote) != self.index {
                // Another queue's packet: not one of this thread's.
                self.counts.packets -= 1;
                self.counts.steered_away += 1;
                return;
            }
            let opened_here = steering.opener(slot) == self.index;
            self.counts.checks.opener_rx.record(opened_here);
        }
        let (found, outcome) = self.lookup(self.device_1(), spec.local, spec.remote, guard);
        let own = Socket::Flow {
            slot,
            generation: before.generation(),
        };
        let socket = found.and_then(|pcb| pcb.socket());
        let verdict = match before.phase() {
            Phase::Established => Some((
                Invariant::OwnPcb,
                outcome == Outcome::Exact && socket == Some(&own),
            )),
            Phase::TimeWait => {
                // A dual-stack PCB shows an IPv4 peer in the v4-mapped form.
                let peer = found
                    .and_then(|pcb| pcb.peer_addr())
                    .map(|p| SocketAddr::new(p.ip().to_canonical(), p.port()));
                let ok =
                    outcome == Outcome::TimeWait && socket.is_none() && peer == Some(spec.remote);
                Some((Invariant::TimeWait, ok))
            }
            Phase::SynSent => match spec.direction {
                Direction::Inbound(service) => Some((
                    Invariant::SynListener,
                    syn_found_listener(found.as_ref(), outcome, service),
                )),
                Direction::Outbound => None,
            },
            Phase::Empty => {
                // An inbound flow's tuple is its own (flows.rs), so a closed
                // connected PCB found for it would be the flow's. (An outbound
                // tuple may have been reused by a flow that is closing now; a
                // listener may be closing under a group restart.)
                let inbound = matches!(spec.direction, Direction::Inbound(_));
                let closed = inbound
                    && found.is_some_and(|pcb| {
                        pcb.peer_addr().is_some() && pcb.state() == State::Dropped
                    });
                let ok = !closed && socket != Some(&own);
                Some((Invariant::ClosedGone, ok))
            }
            Phase::Accepting | Phase::Closing => None,
        };
        fence(Ordering::Acquire);
        let after = Word(word.load(Ordering::Relaxed));
        let listeners_after = self.shared.listener_seq.load(Ordering::Relaxed);
        let listeners_stable = listeners_before == listeners_after && listeners_before % 2 == 0;
        let checks = &mut self.counts.checks;
        match verdict {
            Some((invariant, ok)) if before == after => match invariant {
                Invariant::OwnPcb => checks.own_pcb.record(ok),
                Invariant::TimeWait => checks.time_wait.record(ok),
                Invariant::SynListener if listeners_stable => checks.syn_listener.record(ok),
                Invariant::ClosedGone => checks.closed_gone.record(ok),
                Invariant::SynListener => checks.unchecked += 1,
            },
            _ => checks.unchecked += 1,
        }
    }
}

/// The invariants a flow's packet can be checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Invariant {
    OwnPcb,
    TimeWait,
    SynListener,
    ClosedGone,
}

/// Whether a SYN for `service` found what it must: a listener on the
/// service's port, a group member exactly for HTTPS.
fn syn_found_listener(
    found: Option<&PcbRef<'_, Socket>>,
    outcome: Outcome,
    service: Service,
) -> bool {
    let grouped = outcome == Outcome::Group;
    found.is_some_and(|pcb| {
        pcb.state() == State::Listen && pcb.local_addr().port() == service.port()
    }) && grouped == (service == Service::Https)
}

/// A stray packet's tuple toward `port` on the host, IPv4 or IPv6.
fn stray_tuple(h: u64, port: u16) -> (SocketAddr, SocketAddr) {
    let source = stray_source(h);
    if h & (1 << 20) == 0 {
        (SocketAddr::new(HOST_V4.into(), port), source)
    } else {
        let v6 = match source.ip() {
            IpAddr::V4(v4) => v4.to_ipv6_compatible(),
            IpAddr::V6(v6) => v6,
        };
        // 2001:db8:100::/48 + the IPv4 stray's bits: distinct from every client.
        let segments = v6.segments();
        let addr = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, segments[6], segments[7]);
        (
            SocketAddr::new(HOST_V6.into(), port),
            SocketAddr::new(addr.into(), source.port()),
        )
    }
}
