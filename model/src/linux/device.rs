//! Devices and delivery: `SO_BINDTODEVICE` (`sock_bindtoindex_locked`) and
//! the walk of `__udp4_lib_mcast_deliver` / `__udp6_lib_mcast_deliver`
//! over the port's list, with `__udp_is_mcast_sock` /
//! `__udp_v6_is_mcast_sock` deciding who takes the datagram.

use std::net::IpAddr;

use super::sock::{v4_view, v6only};
use crate::addrs::{Ep, V6_ANY};
use crate::state::{Model, Rec};

/// `sock_bindtoindex_locked`: the device is set, then `sk_prot->rehash`
/// runs for UDP, and `udp_lib_rehash` detaches a hashed reuseport member
/// from its group even though its lists stay. TCP has no rehash here.
pub(crate) fn bind_device(m: &mut Model, id: usize, device: u32) {
    let udp = !m.tcp();
    let r = &mut m.recs[id];
    r.device = device;
    if udp && r.in_table() {
        r.lgroup = None;
    }
}

/// The receivers of a UDP datagram from `remote` to `local` that arrived
/// on `device` (0: unknown), in the walk's order: the port's list (`hslot`,
/// as long as it holds at most ten sockets, which the harness never
/// passes), head first. Group membership and source filters
/// (`ip_mc_sf_allow`, `inet6_mc_check`) are the stack's; reuseport groups
/// play no part.
pub(crate) fn deliver(m: &Model, local: Ep, remote: Ep, device: u32) -> Vec<usize> {
    let mut on_port: Vec<usize> = m
        .live()
        .filter(|(_, r)| r.local.1 == local.1)
        .map(|(i, _)| i)
        .collect();
    on_port.sort_by_key(|&i| m.recs[i].ppos);
    on_port
        .into_iter()
        .filter(|&i| {
            let r = &m.recs[i];
            r.answers(device)
                && if local.0.is_ipv4() {
                    takes_v4(r, local, remote)
                } else {
                    takes_v6(r, local, remote)
                }
        })
        .collect()
}

/// `__udp_is_mcast_sock`, on the IPv4 fields of the socket: the bound
/// address (`inet_rcv_saddr`, `LOOPBACK4_IPV6` for a specific IPv6 one)
/// is the destination or 0, the peer (`inet_daddr`, `inet_dport`) is the
/// source or unset, and the socket is not IPv6-only.
fn takes_v4(r: &Rec, local: Ep, remote: Ep) -> bool {
    let bound = v4_view(r);
    if !bound.is_unspecified() && IpAddr::V4(bound) != local.0 {
        return false;
    }
    if v6only(r) {
        return false;
    }
    match r.remote.filter(|_| r.connected()) {
        None => true,
        // A peer over IPv6 leaves `inet_daddr` at LOOPBACK4_IPV6, no
        // source of the harness.
        Some(peer) => peer.0 == remote.0 && (peer.1 == 0 || peer.1 == remote.1),
    }
}

/// `__udp_v6_is_mcast_sock`: an AF_INET6 socket whose bound address
/// (`sk_v6_rcv_saddr`; v4-mapped for an IPv4 one) is the destination or
/// `::`, and whose peer address (`sk_v6_daddr`, which `disconnect()`
/// leaves) is the source or `::`, its port the source's or 0.
fn takes_v6(r: &Rec, local: Ep, remote: Ep) -> bool {
    if !r.inet6 || (r.local.0 != V6_ANY && r.local.0 != local.0) {
        return false;
    }
    if r.connected() {
        let Some(peer) = r.remote else {
            return false;
        };
        return peer.0 == remote.0 && (peer.1 == 0 || peer.1 == remote.1);
    }
    r.last_peer.is_none_or(|last| last == remote.0)
}
