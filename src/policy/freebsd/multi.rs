//! FreeBSD multicast and broadcast delivery: `udp_multi_input`
//! (`sys/netinet/udp_usrreq.c`) and the multicast branch of `udp6_input`
//! (`sys/netinet6/udp6_usrreq.c`).
//!
//! **Who receives.** The kernel walks every UDP PCB (`ipi_listhead`) and
//! takes one whose local port is the datagram's, that takes its family
//! (`INP_IPV4` / `INP_IPV6` in `inp_vflag`), whose local address is the
//! destination or a wildcard, and whose peer, if it has one, is the source:
//! address, and port unless 0. (IPv6 asks the peer's port to match outright
//! once the peer's address is set; a FreeBSD `connect()` never names port 0,
//! so the two rules agree.)
//!
//! **When it stops.** After each receiver:
//!
//! ```text
//! if ((last->inp_socket->so_options &
//!     (SO_REUSEPORT|SO_REUSEPORT_LB|SO_REUSEADDR)) == 0)
//!         break;
//! ```
//!
//! so a receiver with none of the three options is the last one.
//!
//! **In which order.** `ipi_listhead`, where `in_pcballoc` links each new
//! PCB at the head: newest first. The table orders PCBs by when they
//! entered their port ([`PcbView::seq`]), which is the kernel's order
//! whenever sockets are bound in the order they were created.

use std::net::SocketAddr;

use crate::addr::Endpoint;
use crate::flags::Flags;
use crate::policy::{delivery_match, PcbView};

/// `udp_multi_input`'s match (see the module docs).
pub(crate) fn delivers_to(view: &PcbView, local: SocketAddr, remote: SocketAddr) -> bool {
    delivery_match(view, &Endpoint::new(local), &Endpoint::new(remote))
}

/// The walk stops after a receiver with no reuse option.
pub(crate) fn delivery_ends_after(view: &PcbView) -> bool {
    !view.flags.intersects(Flags::REUSE_ANY)
}
