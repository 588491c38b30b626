//! FreeBSD `udp_multi_input` (`sys/netinet/udp_usrreq.c`) and the multicast
//! branch of `udp6_input` (`sys/netinet6/udp6_usrreq.c`): who receives a
//! broadcast or multicast datagram, in which order, and where the walk
//! stops. `PcbTable::deliver` under `Policy::FreeBsd` against rows written
//! from the source.
//!
//! The kernel walks every UDP PCB, newest first (`in_pcballoc` links each
//! new PCB at the head of the list the walk follows):
//!
//! ```text
//! CK_LIST_INSERT_HEAD(&pcbinfo->ipi_listhead, inp, inp_list);
//! ```
//!
//! and takes the PCBs that match the datagram (IPv4):
//!
//! ```text
//! if (inp->inp_lport != uh->uh_dport)
//!         continue;
//! if ((inp->inp_vflag & INP_IPV4) == 0)
//!         continue;
//! if (inp->inp_laddr.s_addr != INADDR_ANY &&
//!     inp->inp_laddr.s_addr != ip->ip_dst.s_addr)
//!         continue;
//! if (inp->inp_faddr.s_addr != INADDR_ANY &&
//!     inp->inp_faddr.s_addr != ip->ip_src.s_addr)
//!         continue;
//! if (inp->inp_fport != 0 &&
//!     inp->inp_fport != uh->uh_sport)
//!         continue;
//! ```
//!
//! (IPv6: `INP_IPV6` instead of `INP_IPV4`, `in6p_laddr` and `in6p_faddr`
//! likewise), then, after handing the datagram to a match:
//!
//! ```text
//! /*
//!  * Don't look for additional matches if this one does
//!  * not have either the SO_REUSEPORT or SO_REUSEADDR
//!  * socket options set.  This heuristic avoids
//!  * searching through all pcbs in the common case of a
//!  * non-shared port.  It assumes that an application
//!  * will never clear these options after setting them.
//!  */
//! if ((last->inp_socket->so_options &
//!     (SO_REUSEPORT|SO_REUSEPORT_LB|SO_REUSEADDR)) == 0)
//!         break;
//! ```
//!
//! In every row the PCBs are created and bound in the order listed, so the
//! kernel's list order (by creation) and the table's (by entry into the
//! port) agree. Group membership is the stack's and plays no part here.

mod common;

use std::net::{IpAddr, SocketAddr};

use common::{addr, family_of, table, unused, Reuse, Sock};
use pcbhash::{Cred, Pcb, PcbTable, Policy, Protocol};

/// The port of every row.
const PORT: u16 = 5000;
/// The sender of every datagram.
const SENDER_V4: &str = "127.0.0.1:40000";
const SENDER_V6: &str = "[::1]:40000";

/// One PCB of a row.
struct Member {
    /// The local address (the port is [`PORT`]).
    local: &'static str,
    reuse: Reuse,
    /// IPV6_V6ONLY for an `Inet6` PCB (FreeBSD's default is on).
    v6only: bool,
    /// The peer it connects to after binding.
    peer: Option<&'static str>,
    /// Clears its reuse option once bound (which the kernel's heuristic
    /// assumes no application does).
    clears: bool,
}

const fn plain(local: &'static str, reuse: Reuse) -> Member {
    Member {
        local,
        reuse,
        v6only: true,
        peer: None,
        clears: false,
    }
}

const fn dual(local: &'static str, reuse: Reuse) -> Member {
    Member {
        v6only: false,
        ..plain(local, reuse)
    }
}

const fn cleared(local: &'static str, reuse: Reuse) -> Member {
    Member {
        clears: true,
        ..plain(local, reuse)
    }
}

const fn connected(local: &'static str, reuse: Reuse, peer: &'static str) -> Member {
    Member {
        peer: Some(peer),
        ..plain(local, reuse)
    }
}

/// A scenario: PCBs, a datagram's destination address, and the receivers
/// in the kernel's order (indices into `members`).
struct Row {
    name: &'static str,
    members: &'static [Member],
    to: &'static str,
    receivers: &'static [usize],
}

const ROWS: &[Row] = &[
    Row {
        name: "one PCB without options",
        members: &[plain("0.0.0.0", Reuse::None)],
        to: "127.255.255.255",
        receivers: &[0],
    },
    Row {
        name: "SO_REUSEPORT on all: every one, newest first",
        members: &[
            plain("0.0.0.0", Reuse::Port),
            plain("0.0.0.0", Reuse::Port),
            plain("0.0.0.0", Reuse::Port),
        ],
        to: "127.255.255.255",
        receivers: &[2, 1, 0],
    },
    Row {
        name: "SO_REUSEPORT_LB counts as a reuse option",
        members: &[
            plain("0.0.0.0", Reuse::PortLb),
            plain("0.0.0.0", Reuse::PortLb),
        ],
        to: "127.255.255.255",
        receivers: &[1, 0],
    },
    Row {
        name: "a newer dual-stack PCB without options ends the walk",
        members: &[
            plain("0.0.0.0", Reuse::Port),
            plain("0.0.0.0", Reuse::Port),
            dual("::", Reuse::None),
        ],
        to: "127.255.255.255",
        receivers: &[2],
    },
    Row {
        name: "the same PCB with SO_REUSEADDR lets the walk go on",
        members: &[
            plain("0.0.0.0", Reuse::Port),
            plain("0.0.0.0", Reuse::Port),
            dual("::", Reuse::Addr),
        ],
        to: "127.255.255.255",
        receivers: &[2, 1, 0],
    },
    Row {
        name: "a V6ONLY PCB takes no IPv4 datagram, and does not stop the walk",
        members: &[plain("0.0.0.0", Reuse::Port), plain("::", Reuse::None)],
        to: "127.255.255.255",
        receivers: &[0],
    },
    Row {
        name: "a PCB on another address does not receive",
        members: &[
            plain("127.0.0.1", Reuse::None),
            plain("0.0.0.0", Reuse::Addr),
        ],
        to: "127.255.255.255",
        receivers: &[1],
    },
    Row {
        name: "a PCB on the broadcast address, older, without options",
        members: &[
            plain("127.255.255.255", Reuse::None),
            plain("0.0.0.0", Reuse::Addr),
        ],
        to: "127.255.255.255",
        receivers: &[1, 0],
    },
    Row {
        name: "SO_REUSEADDR on a multicast address shares it",
        members: &[
            plain("239.1.1.1", Reuse::Addr),
            plain("239.1.1.1", Reuse::Addr),
            plain("0.0.0.0", Reuse::Port),
        ],
        to: "239.1.1.1",
        receivers: &[2, 1, 0],
    },
    Row {
        name: "a connected PCB takes datagrams from its peer only",
        members: &[
            connected("127.255.255.255", Reuse::Port, SENDER_V4),
            connected("127.255.255.255", Reuse::Port, "127.0.0.1:40001"),
            connected("127.255.255.255", Reuse::Port, "127.0.0.2:40000"),
            plain("127.255.255.255", Reuse::Port),
        ],
        to: "127.255.255.255",
        receivers: &[3, 0],
    },
    Row {
        name: "IPv6 multicast: INP_IPV6 PCBs on the group or ::",
        members: &[
            plain("::", Reuse::Port),
            plain("0.0.0.0", Reuse::Port),
            plain("::1", Reuse::Port),
            plain("ff0e::1", Reuse::Port),
        ],
        to: "ff0e::1",
        receivers: &[3, 0],
    },
    Row {
        name: "IPv6 multicast: the walk stops at a PCB that cleared its option",
        members: &[plain("::", Reuse::Port), cleared("ff0e::1", Reuse::Addr)],
        to: "ff0e::1",
        receivers: &[1],
    },
    Row {
        name: "IPv6 multicast: one that kept it lets the walk go on",
        members: &[plain("::", Reuse::Port), plain("ff0e::1", Reuse::Addr)],
        to: "ff0e::1",
        receivers: &[1, 0],
    },
];

/// The row's PCBs, created and bound (and connected) in order.
fn open(table: &PcbTable<Sock>, row: &Row) -> Vec<Pcb<Sock>> {
    row.members
        .iter()
        .enumerate()
        .map(|(i, member)| {
            let local = SocketAddr::new(member.local.parse().expect("address"), PORT);
            let pcb = table.attach(family_of(local), Cred::ROOT, unused());
            member.reuse.apply(&pcb);
            if local.is_ipv6() {
                pcb.set_v6only(member.v6only).expect("IPV6_V6ONLY");
            }
            pcb.bind(local)
                .unwrap_or_else(|e| panic!("{}: PCB {i} binds {local}: {e:?}", row.name));
            if let Some(peer) = member.peer {
                pcb.connect(addr(peer))
                    .unwrap_or_else(|e| panic!("{}: PCB {i} connects to {peer}: {e:?}", row.name));
            }
            if member.clears {
                Reuse::ALL
                    .into_iter()
                    .for_each(|option| clear(&pcb, option));
            }
            pcb
        })
        .collect()
}

/// Turns `option` off on `pcb`.
fn clear(pcb: &Pcb<Sock>, option: Reuse) {
    let result = match option {
        Reuse::None => Ok(()),
        Reuse::Addr => pcb.set_reuse_addr(false),
        Reuse::Port => pcb.set_reuse_port(false),
        Reuse::PortLb => pcb.set_reuse_port_lb(false),
    };
    result.expect("clearing a reuse option");
}

#[test]
fn freebsd_udp_multi_input() {
    for row in ROWS {
        let table = table(Policy::FreeBsd, Protocol::Udp);
        let pcbs = open(&table, row);
        let to: IpAddr = row.to.parse().expect("destination");
        let sender = if to.is_ipv4() { SENDER_V4 } else { SENDER_V6 };
        let guard = table.pin();
        let got: Vec<usize> = table
            .deliver(None, SocketAddr::new(to, PORT), addr(sender), &guard)
            .map(|pcb| {
                pcbs.iter()
                    .position(|mine| pcb.is(mine))
                    .expect("a PCB of the row")
            })
            .collect();
        assert_eq!(got, row.receivers, "{}", row.name);
    }
}

/// TCP has no multicast or broadcast: a TCP table delivers nothing, where
/// a UDP table with the same PCB delivers to it.
#[test]
fn freebsd_tcp_delivers_nothing() {
    let to = addr("127.255.255.255:5000");
    for (protocol, receivers) in [(Protocol::Tcp, 0), (Protocol::Udp, 1)] {
        let table = table(Policy::FreeBsd, protocol);
        let pcb = table.attach(family_of(to), Cred::ROOT, unused());
        pcb.bind(addr("0.0.0.0:5000")).expect("bind");
        let guard = table.pin();
        let count = table.deliver(None, to, addr(SENDER_V4), &guard).count();
        assert_eq!(count, receivers, "{protocol:?}");
    }
}
