//! UDP datagrams to a multicast group or the broadcast address: one datagram,
//! every matching socket (`PcbTable::deliver`).
//!
//! The replay takes every address of a capture as the host's own and has no
//! record of group memberships, so it treats each of its sockets on the port
//! as a member: the stack would filter `deliver`'s iterator by its own
//! `IP_ADD_MEMBERSHIP` records, and for a broadcast take every PCB. Only the
//! limited broadcast address `255.255.255.255` is known to be one: a subnet's
//! broadcast address needs a netmask the capture does not carry, so such a
//! datagram is looked up like a unicast one.

use std::net::{IpAddr, SocketAddr};

use pcbhash::{PcbRef, PcbTable, State};

use crate::socket::Socket;

/// Whether a datagram to `dst` goes to a group (multicast or broadcast).
pub fn is_group(dst: IpAddr) -> bool {
    match dst {
        IpAddr::V4(v4) => v4.is_multicast() || v4.is_broadcast(),
        IpAddr::V6(v6) => v6.is_multicast(),
    }
}

/// Multicast and broadcast datagrams, counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupCounts {
    /// Datagrams to a multicast group.
    pub multicast: u64,
    /// Datagrams to `255.255.255.255`.
    pub broadcast: u64,
    /// Datagrams that reached at least one PCB.
    pub delivered: u64,
    /// PCBs reached, summed over the datagrams.
    pub receivers: u64,
    /// The most PCBs one datagram reached.
    pub most_receivers: u64,
}

impl GroupCounts {
    /// Datagrams handed to `deliver`.
    pub fn datagrams(&self) -> u64 {
        self.multicast + self.broadcast
    }
}

/// One datagram's delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// PCBs it reached.
    pub receivers: u64,
    /// Whether every receiver was a live PCB on the datagram's port and
    /// address (or a wildcard), and none came twice.
    pub sound: bool,
}

/// Hands the datagram `src` → `dst` to `table.deliver` (device unknown) and
/// counts it in `counts`.
pub fn deliver(
    table: &PcbTable<Socket>,
    dst: SocketAddr,
    src: SocketAddr,
    counts: &mut GroupCounts,
) -> Delivery {
    let guard = table.pin();
    let mut seen: Vec<Socket> = Vec::new();
    let mut sound = true;
    for pcb in table.deliver(None, dst, src, &guard) {
        sound &= receives(&pcb, dst);
        match pcb.socket() {
            Some(socket) if !seen.contains(socket) => seen.push(*socket),
            _ => sound = false,
        }
    }
    let receivers = seen.len() as u64;
    match dst.ip() {
        IpAddr::V4(v4) if v4.is_broadcast() => counts.broadcast += 1,
        _ => counts.multicast += 1,
    }
    counts.delivered += u64::from(receivers > 0);
    counts.receivers += receivers;
    counts.most_receivers = counts.most_receivers.max(receivers);
    Delivery { receivers, sound }
}

/// Whether `pcb` may receive a datagram to `dst`: live, on its port, bound to
/// its address or a wildcard.
fn receives(pcb: &PcbRef<'_, Socket>, dst: SocketAddr) -> bool {
    let local = pcb.local_addr();
    !matches!(pcb.state(), State::Closed | State::Dropped)
        && local.port() == dst.port()
        && (local.ip().is_unspecified() || local.ip().to_canonical() == dst.ip().to_canonical())
}
