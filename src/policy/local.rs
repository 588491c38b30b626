//! Rules that do not depend on the policy: `in_pcblookup_local` (which
//! [`PcbTable::lookup_local`](crate::PcbTable::lookup_local) answers with
//! under any policy, and FreeBSD's bind check uses) and the checks of
//! `accept()`.

use std::net::SocketAddr;

use super::view::{wild_match, Af, PcbView};
use crate::addr::Endpoint;
use crate::error::Error;
use crate::flags::State;
use crate::policy::Protocol;

/// FreeBSD `in_pcblookup_local(..., INPLOOKUP_WILDCARD)`: the best-fitting PCB
/// on `local`'s port, connected or not, where either side may be a wildcard.
///
/// Lower cost wins: +3 for a dual-stack `Inet6` PCB seen from IPv4
/// (`INP_LOOKUP_MAPPED_PCB_COST`), +1 if connected, +1 if exactly one side of
/// the address pair is a wildcard. Ties go to the newest PCB.
pub(crate) fn best_fit<T: Copy>(
    candidates: impl Iterator<Item = (PcbView, T)>,
    af: Af,
    local: &Endpoint,
) -> Option<(PcbView, T)> {
    let mut best: Option<(PcbView, T)> = None;
    let mut best_cost = match af {
        Af::V4 => 6,
        Af::V6 => 3,
    };
    for (view, item) in candidates {
        if view.local.port != local.port || !af.takes(&view) {
            continue;
        }
        let mut cost = 0;
        if af == Af::V4 && view.takes_v6() {
            cost += 3;
        }
        if view.is_connected() {
            cost += 1;
        }
        let theirs = af.local_of(&view);
        if !theirs.is_wildcard() {
            if local.is_wildcard() {
                cost += 1;
            } else if theirs.ip != local.ip {
                continue;
            }
        } else if !local.is_wildcard() {
            cost += 1;
        }
        let newer = best.is_some_and(|(b, _)| view.seq > b.seq);
        if cost < best_cost || (cost == best_cost && newer) {
            best = Some((view, item));
            best_cost = cost;
        }
    }
    best
}

/// FreeBSD `in_pcblookup_local(..., 0)`: the newest unconnected PCB bound to
/// exactly `local` (a wildcard matches only a wildcard).
pub(crate) fn exact_unconnected<T: Copy>(
    candidates: impl Iterator<Item = (PcbView, T)>,
    af: Af,
    local: &Endpoint,
) -> Option<(PcbView, T)> {
    candidates
        .filter(|(view, _)| {
            !view.is_connected()
                && view.local.port == local.port
                && af.takes(view)
                && af.local_of(view).ip == local.ip
        })
        .max_by_key(|(view, _)| view.seq)
}

/// Checks for `accept()`: the passive open on `listener` for a packet
/// `local` ← `remote`, the same under both kernels.
pub(crate) fn check_accept(
    protocol: Protocol,
    listener: &PcbView,
    local: SocketAddr,
    remote: SocketAddr,
) -> Result<(Endpoint, Endpoint), Error> {
    if protocol != Protocol::Tcp {
        return Err(Error::NotSupported);
    }
    if listener.state() != State::Listen {
        return Err(Error::InvalidInput);
    }
    let (local, remote) = (Endpoint::new(local), Endpoint::new(remote));
    if local.is_v4() != remote.is_v4()
        || remote.port == 0
        || remote.is_wildcard()
        || remote.ip.is_multicast()
        || local.is_wildcard()
        // Both kernels drop a SYN to a multicast destination (FreeBSD
        // `tcp_input`, Linux `tcp_v4_rcv`: not PACKET_HOST).
        || local.ip.is_multicast()
        || local.port != listener.local.port
        || !wild_match(listener, &local)
    {
        return Err(Error::InvalidInput);
    }
    Ok((local, remote))
}
