//! Linux multicast and broadcast delivery: `__udp4_lib_mcast_deliver` with
//! `__udp_is_mcast_sock` (`net/ipv4/udp.c`), and the IPv6 twins
//! `__udp6_lib_mcast_deliver` with `__udp_v6_is_mcast_sock`
//! (`net/ipv6/udp.c`).
//!
//! **Who receives.** Every socket on the port whose bound address is the
//! datagram's destination or a wildcard, and whose peer (if connected) is
//! the datagram's source, address and, unless 0, port. An IPv4 datagram
//! skips `ipv6_only_sock` sockets and sockets on a specific IPv6 address
//! (their `inet_rcv_saddr` is `LOOPBACK4_IPV6`); an IPv6 datagram skips
//! AF_INET sockets and sockets on a v4-mapped address. An IPv6 socket also
//! compares `sk_v6_daddr`, which outlives `disconnect()`: after its
//! connection ended, an IPv6 datagram from another source passes it by.
//! Reuseport groups play no part: every member receives. Nothing ends the
//! walk early.
//!
//! **In which order.** While the port's slot holds at most 10 sockets
//! (`use_hash2 = hslot->count > 10`), the kernel walks the port's list
//! (`hslot`): `bind()` order, newest first, an AF_INET6 socket that had
//! SO_REUSEPORT when it bound at the tail, and neither a later `connect()`
//! nor a later SO_REUSEPORT reorders it. Beyond that it
//! walks the list of the destination address (`hslot2` of `daddr`), then
//! the wildcard's, each in its own order, where a `connect()` that changed
//! the address moved the socket to the head. The table counts the PCBs on
//! the port; the kernel's slot may also hold sockets of other ports and
//! other namespaces that share it, and two address lists may be one
//! (`hash2 == hash2_any`), which the table cannot know. The first socket the walk
//! meets is queued last (it gets the original `skb`, the others clones);
//! the order here is the walk's.

use std::net::{Ipv6Addr, SocketAddr};

use super::saddr::ipv6_only_sock;
use crate::addr::Endpoint;
use crate::policy::{delivery_match, PcbView};

/// How many sockets the port's slot may hold before the kernel walks the
/// address lists instead of the port's list.
const PORT_LIST_LIMIT: usize = 10;

/// `__udp_is_mcast_sock` / `__udp_v6_is_mcast_sock` (see the module docs).
pub(crate) fn delivers_to(
    view: &PcbView,
    last_peer: Option<&Ipv6Addr>,
    local: SocketAddr,
    remote: SocketAddr,
) -> bool {
    let (local, remote) = (Endpoint::new(local), Endpoint::new(remote));
    // `ipv6_only_sock` on its own, not only through the bound address: an
    // AF_INET6 socket can be V6ONLY on a v4-mapped address (a disconnect
    // that kept the address gave the port back, V6ONLY was set then, and
    // an autobind took a port again), and it takes no IPv4 datagram.
    if local.is_v4() && ipv6_only_sock(view) {
        return false;
    }
    if !delivery_match(view, &local, &remote) {
        return false;
    }
    match (remote.ip, last_peer) {
        (std::net::IpAddr::V6(source), Some(last)) if !view.is_connected() => *last == source,
        _ => true,
    }
}

/// The walk's order (see the module docs): the port's list while the port
/// holds few sockets, otherwise the destination's list before the
/// wildcard's.
pub(crate) fn delivery_order(
    view: &PcbView,
    bound_seq: u64,
    local: SocketAddr,
    port_len: usize,
) -> (u32, u64) {
    if port_len <= PORT_LIST_LIMIT {
        return (0, bound_seq);
    }
    let own_list = view.local.ip == Endpoint::new(local).ip && !view.local.is_wildcard();
    (u32::from(own_list), view.seq)
}
