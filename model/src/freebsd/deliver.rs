//! `udp_multi_input` (`sys/netinet/udp_usrreq.c`) and the multicast walk of
//! `udp6_input` (`sys/netinet6/udp6_usrreq.c`): every UDP PCB, newest
//! created first (`in_pcballoc` links each new PCB at the head of
//! `ipi_listhead`), until a receiver with none of SO_REUSEADDR,
//! SO_REUSEPORT and SO_REUSEPORT_LB.

use crate::addrs::Ep;
use crate::state::{Model, Rec};

/// The receivers of a UDP datagram from `remote` to `local` of FIB `fib`,
/// in the walk's order. `fib` is `None` where FIBs take no part
/// (`bind_all_fibs` on); with it off, udp(4) says that every UDP socket
/// receives only datagrams of its own FIB. Group membership and source
/// filters are the stack's. `order` ranks the PCBs, highest first: the
/// kernel's is the record's id, the order of creation.
pub(crate) fn deliver(
    m: &Model,
    local: Ep,
    remote: Ep,
    fib: Option<u32>,
    order: impl Fn(&Rec, usize) -> u64,
) -> Vec<usize> {
    let mut all: Vec<usize> = m.live().map(|(i, _)| i).collect();
    all.sort_by_key(|&i| std::cmp::Reverse(order(&m.recs[i], i)));
    let mut out = Vec::new();
    for i in all {
        let r = &m.recs[i];
        if !takes(r, local, remote) || fib.is_some_and(|f| r.device != f) {
            continue;
        }
        out.push(i);
        if !(r.ra || r.rp || r.lb) {
            break;
        }
    }
    out
}

/// `udp_multi_match` / its IPv6 twin: the port, the family flag
/// (`INP_IPV4` / `INP_IPV6`), the local address (the destination or a
/// wildcard), and the peer if there is one (address, and port unless 0).
fn takes(r: &Rec, local: Ep, remote: Ep) -> bool {
    if r.local.1 != local.1 {
        return false;
    }
    let laddr = if local.0.is_ipv4() {
        if !r.takes_v4() {
            return false;
        }
        r.v4_laddr()
    } else {
        if !r.takes_v6() {
            return false;
        }
        r.local.0
    };
    if !laddr.is_unspecified() && laddr != local.0 {
        return false;
    }
    match r.remote.filter(|_| r.connected()) {
        None => true,
        Some(peer) => peer.0 == remote.0 && (peer.1 == 0 || peer.1 == remote.1),
    }
}
