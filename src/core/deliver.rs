//! Multicast and broadcast delivery: the walk of a port's PCBs that finds
//! every receiver of one datagram, in the order the policy gives
//! ([`Rules::delivery_order`](crate::policy::Rules::delivery_order)),
//! stopping where the policy says
//! ([`Rules::delivery_ends_after`](crate::policy::Rules::delivery_ends_after)).
//!
//! The port's lists are linked in the order PCBs entered each list, not in
//! the kernel's order, and a PCB that moves between them changes list
//! without changing place. So each step walks both lists of the port and
//! takes the receiver with the highest place below the last one handed
//! out: no allocation, no lock, and one walk of the port per receiver (one
//! more at the start, to count the port's PCBs, which Linux's order
//! depends on). Weakly consistent, as [`PcbTable::iter`](crate::PcbTable::iter):
//! a PCB that keeps its place on the port for the whole walk is handed out
//! exactly once, if it matches.

use std::net::SocketAddr;

use crossbeam_epoch::Guard;

use super::pcb::PcbInner;
use super::shared::Shared;
use crate::addr::Endpoint;
use crate::cred::Device;
use crate::flags::Flags;
use crate::policy::{canonical, Protocol};
use crate::raw::List;
use crate::sync::Ordering;

/// A receiver's place in the walk: the policy's order, then the PCB's
/// address, so that no two PCBs share one. Larger comes first.
type Place = (u32, u64, usize);

/// The receivers of one multicast or broadcast datagram, found one walk of
/// the port at a time (see the module docs).
pub(crate) struct Deliveries<'g, S: Send + Sync + 'static> {
    shared: &'g Shared<S>,
    guard: &'g Guard,
    device: Option<Device>,
    /// The datagram's destination and source, canonical.
    local: SocketAddr,
    remote: SocketAddr,
    /// How many PCBs hold the port, counted at the first step.
    port_len: Option<usize>,
    /// The place of the last receiver handed out.
    last: Option<Place>,
    /// Whether the walk is over (no receiver left, or the policy ended it).
    done: bool,
}

impl<'g, S: Send + Sync + 'static> Deliveries<'g, S> {
    /// The receivers of a datagram from `remote` to `local` that arrived on
    /// `device`. A TCP table, port 0 or a datagram whose two addresses are
    /// of different families has none.
    pub(crate) fn new(
        shared: &'g Shared<S>,
        device: Option<Device>,
        local: SocketAddr,
        remote: SocketAddr,
        guard: &'g Guard,
    ) -> Self {
        let local = canonical(Endpoint::new(local));
        let remote = canonical(Endpoint::new(remote));
        let done = shared.rules.protocol != Protocol::Udp
            || local.port() == 0
            || local.is_ipv4() != remote.is_ipv4();
        Self {
            shared,
            guard,
            device,
            local,
            remote,
            port_len: None,
            last: None,
            done,
        }
    }

    /// Every PCB on the datagram's port, unconnected ones first.
    fn port_pcbs(&self) -> impl Iterator<Item = &'g PcbInner<S>> + 'g {
        let ports = self.shared.ports();
        let (port, guard) = (self.local.port(), self.guard);
        ports
            .iter(port, List::Unconnected, guard)
            .chain(ports.iter(port, List::Connected, guard))
            .map(|pcb| &**pcb)
    }

    /// The place of `pcb` if it takes the datagram, `None` otherwise.
    fn place(&self, pcb: &'g PcbInner<S>, port_len: usize) -> Option<(Place, bool)> {
        if !takes_device(pcb, self.device) {
            return None;
        }
        let rules = &self.shared.rules;
        let view = pcb.view(self.guard);
        let last_peer = if view.flags().contains(Flags::LAST_PEER) {
            pcb.last_peer(self.guard)
        } else {
            None
        };
        if !rules.delivers_to(&view, last_peer, self.local, self.remote) {
            return None;
        }
        let bound_seq = pcb.bound_seq.load(Ordering::Relaxed);
        let (order, seq) = rules.delivery_order(&view, bound_seq, self.local, port_len);
        let place = (order, seq, pcb as *const PcbInner<S> as usize);
        Some((place, rules.delivery_ends_after(&view)))
    }
}

/// Whether `pcb` takes a datagram that arrived on `device` (`None`: the
/// device is unknown). This is the one place where delivery looks at
/// devices: a PCB bound to no device takes datagrams whatever device they
/// arrived on, and a device-bound one only those of its device (Linux
/// `__udp_is_mcast_sock`: `sk_bound_dev_if` is 0, `dif` or `sdif`; checked
/// on the running kernel with a broadcast on `lo`: the PCB bound to `lo`
/// and the unbound one receive it, one bound to another device does not).
/// Under FreeBSD no PCB has a device.
#[inline]
fn takes_device<S: Send + Sync + 'static>(pcb: &PcbInner<S>, device: Option<Device>) -> bool {
    // The same test as a lookup's (`inet_match`), on the device's index
    // (0: unknown, which only PCBs bound to no device answer).
    pcb.answers(device.map_or(0, |device| device.0))
}

impl<'g, S: Send + Sync + 'static> Iterator for Deliveries<'g, S> {
    type Item = &'g PcbInner<S>;

    fn next(&mut self) -> Option<&'g PcbInner<S>> {
        if self.done {
            return None;
        }
        let port_len = match self.port_len {
            Some(len) => len,
            None => *self.port_len.insert(self.port_pcbs().count()),
        };
        let mut best: Option<(Place, bool, &'g PcbInner<S>)> = None;
        for pcb in self.port_pcbs() {
            let Some((place, ends)) = self.place(pcb, port_len) else {
                continue;
            };
            let after_last = self.last.is_none_or(|last| place < last);
            if after_last && best.is_none_or(|(b, _, _)| place > b) {
                best = Some((place, ends, pcb));
            }
        }
        let Some((place, ends, pcb)) = best else {
            self.done = true;
            return None;
        };
        self.last = Some(place);
        self.done = ends;
        Some(pcb)
    }
}
