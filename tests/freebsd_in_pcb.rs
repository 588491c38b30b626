//! FreeBSD 14/15 behaviours read from the kernel source rather than from its
//! test suite: `sys/netinet/in_pcb.c`, `sys/netinet6/in6_pcb.c`,
//! `sys/netinet/tcp_usrreq.c` and `sys/kern/uipc_socket.c`. Each test is
//! named after the kernel function that decides the behaviour and quotes the
//! lines it encodes.

mod common;

use std::net::SocketAddr;

use common::{addr, family_of, freebsd, Sock};
use pcbhash::{Cred, Error, Family, Pcb, PcbTable, Policy, Protocol, State};

fn sock(table: &PcbTable<Sock>, family: Family, id: u32) -> Pcb<Sock> {
    let pcb = table.attach(family, Cred::ROOT, Sock(id));
    if family == Family::Inet6 {
        pcb.set_v6only(false).unwrap();
    }
    pcb
}

/// The owner of a SYN from `peer` to `local`.
fn owner(table: &PcbTable<Sock>, local: &str, peer: SocketAddr) -> Option<u32> {
    let guard = table.pin();
    table
        .lookup(addr(local), peer, &guard)
        .map(|pcb| pcb.socket().expect("a live socket").0)
}

/// Who gets the SYNs of 64 peers to `local`.
fn owners(table: &PcbTable<Sock>, local: &str) -> Vec<u32> {
    let mut seen: Vec<u32> = (1..=64u16)
        .filter_map(|port| {
            owner(
                table,
                local,
                SocketAddr::from(([127, 0, 0, 9], 2000 + port)),
            )
        })
        .collect();
    seen.sort_unstable();
    seen.dedup();
    seen
}

/// `in_pcbinshash`: a PCB joins its load-balance group when it enters the
/// hash, if SO_REUSEPORT_LB is set then; `in_pcblisten` only moves a member
/// from pending to active.
///
/// ```c
/// if ((inp->inp_socket->so_options & SO_REUSEPORT_LB) != 0) {
///     int error = in_pcbinslbgrouphash(inp, M_NODOM);
/// ...
/// in_pcblisten(struct inpcb *inp)
///     if ((inp->inp_flags & INP_INLBGROUP) != 0) {
///         ...
///         grp = in_pcblbgroup_find(inp);
///         LIST_REMOVE(inp, inp_lbgroup_list);
///         grp->il_pendcnt--;
///         in_pcblbgroup_insert(grp, inp);
/// ```
#[test]
fn freebsd_in_pcbinshash_decides_group_membership_at_bind() {
    // (set the option before bind, after bind): who gets the SYNs
    let rows: [(bool, bool, &[u32]); 3] = [
        // A sets the option after bind: A joins nothing, B alone is the group.
        (false, true, &[2]),
        // Both before bind: one group of two.
        (true, true, &[1, 2]),
        // Neither before bind: no group; the newest bound PCB answers.
        (false, false, &[2]),
    ];
    for (a_before, b_before, expected) in rows {
        let table = freebsd(Protocol::Tcp);
        let mut pcbs = Vec::new();
        for (id, before) in [(1, a_before), (2, b_before)] {
            let pcb = sock(&table, Family::Inet, id);
            if before {
                pcb.set_reuse_port_lb(true).unwrap();
            }
            pcb.set_reuse_port(true).unwrap();
            pcb.bind(addr("127.0.0.1:7100")).unwrap();
            pcb.set_reuse_port_lb(true).unwrap();
            pcbs.push(pcb);
        }
        for pcb in &pcbs {
            pcb.listen().unwrap();
        }
        assert_eq!(
            owners(&table, "127.0.0.1:7100"),
            expected,
            "option before bind: A {a_before}, B {b_before}"
        );
        let members = [a_before, b_before].iter().filter(|on| **on).count();
        assert_eq!(table.stats().group_members, members);
    }
}

/// `sosetopt`: clearing SO_REUSEPORT_LB only flips `so_options`; a PCB
/// leaves its group in `in_pcbremhash_locked` and nowhere else.
///
/// ```c
/// case SO_REUSEPORT_LB:
///     ...
///     if (optval)
///         so->so_options |= sopt->sopt_name;
///     else
///         so->so_options &= ~sopt->sopt_name;
/// ...
/// in_pcbremhash_locked(struct inpcb *inp)
///     if ((inp->inp_flags & INP_INLBGROUP) != 0)
///         in_pcbremlbgrouphash(inp);
/// ```
#[test]
fn freebsd_sosetopt_clearing_the_option_keeps_the_member() {
    // (protocol, clear before listen): the member keeps its share
    let rows = [
        (Protocol::Tcp, false),
        (Protocol::Tcp, true),
        (Protocol::Udp, false),
    ];
    for (protocol, before_listen) in rows {
        let table = freebsd(protocol);
        let pcbs: Vec<Pcb<Sock>> = (1..=2)
            .map(|id| {
                let pcb = sock(&table, Family::Inet, id);
                pcb.set_reuse_port_lb(true).unwrap();
                pcb.bind(addr("127.0.0.1:7101")).unwrap();
                pcb
            })
            .collect();
        if before_listen {
            pcbs[0].set_reuse_port_lb(false).unwrap();
        }
        if protocol == Protocol::Tcp {
            for pcb in &pcbs {
                pcb.listen().unwrap();
            }
        }
        pcbs[0].set_reuse_port_lb(false).unwrap();
        assert!(!pcbs[0].flags().reuse_port_lb());
        assert!(pcbs[0].flags().in_group(), "{protocol:?} {before_listen}");
        assert_eq!(table.stats().group_members, 2);
        assert_eq!(owners(&table, "127.0.0.1:7101"), [1, 2]);
        // Closing takes it out.
        let mut pcbs = pcbs.into_iter();
        pcbs.next().unwrap().close();
        assert_eq!(owners(&table, "127.0.0.1:7101"), [2]);
    }
}

/// `in_pcbinslbgrouphash`: the 256-member cap counts pending members.
///
/// ```c
/// } else if (grp->il_inpcnt + grp->il_pendcnt == grp->il_inpsiz) {
///     if (grp->il_inpsiz >= INPCBLBGROUP_SIZMAX) {
///         ...
///         return (0);
/// ```
#[test]
fn freebsd_in_pcbinslbgrouphash_counts_pending_members_against_the_cap() {
    // Which of the 257 bound PCBs listens first: the last one to bind stays
    // out of the group whatever the order of the listens.
    for last_listens_first in [false, true] {
        let table = freebsd(Protocol::Tcp);
        let pcbs: Vec<Pcb<Sock>> = (0..257)
            .map(|id| {
                let pcb = sock(&table, Family::Inet, id);
                pcb.set_reuse_port_lb(true).unwrap();
                pcb.bind(addr("127.0.0.1:7102")).unwrap();
                pcb
            })
            .collect();
        assert_eq!(table.stats().group_members, 0, "all pending");
        if last_listens_first {
            pcbs[256].listen().unwrap();
        }
        for pcb in &pcbs {
            pcb.listen().unwrap();
        }
        assert_eq!(table.stats().group_members, 256, "{last_listens_first}");
        assert!(!pcbs[256].flags().in_group());
        assert!(pcbs[..256].iter().all(|pcb| pcb.flags().in_group()));
    }
}

/// `in_pcblookup_lbgroup`: two groups on one IPv4 address (an `Inet` one
/// and one of `Inet6` PCBs bound to the v4-mapped form, `il_vflag` apart).
/// New and resized groups go in at the head of the bucket, and the lookup
/// keeps the last group that matches, so the older group takes the SYNs.
///
/// ```c
/// grp = in_pcblbgroup_alloc(...);
/// in_pcblbgroup_insert(grp, inp);
/// CK_LIST_INSERT_HEAD(hdr, grp, il_list);
/// ...
/// in_pcblbgroup_resize(): CK_LIST_INSERT_HEAD(hdr, grp, il_list);
/// ...
/// } else if (local_exact == NULL ||
///     in_pcblookup_lb_match(grp, domain, fib)) {
///     local_exact = grp;
/// ```
#[test]
fn freebsd_in_pcblookup_lbgroup_prefers_the_older_group() {
    // (family of the first group, of the second, members of the first
    // joining after the second group exists): the group that takes the SYNs
    let rows = [
        (Family::Inet, Family::Inet6, 0, Family::Inet),
        (Family::Inet6, Family::Inet, 0, Family::Inet6),
        // An eighth member of the first group fills it; the ninth resizes it
        // and moves it to the head: the second group is the older one now.
        (Family::Inet, Family::Inet6, 8, Family::Inet6),
    ];
    for (first, second, late, expected) in rows {
        let table = freebsd(Protocol::Tcp);
        let local = |family: Family| match family {
            Family::Inet => addr("127.0.0.1:7103"),
            Family::Inet6 => addr("[::ffff:127.0.0.1]:7103"),
        };
        let mut pcbs = Vec::new();
        let mut join = |family: Family, id: u32| {
            let pcb = sock(&table, family, id);
            pcb.set_reuse_port_lb(true).unwrap();
            pcb.bind(local(family)).unwrap();
            pcb.listen().unwrap();
            pcbs.push(pcb);
        };
        join(first, 100);
        join(second, 200);
        for id in 0..late {
            join(first, 101 + id);
        }
        let guard = table.pin();
        let expected_ids: Vec<u32> = pcbs
            .iter()
            .filter(|pcb| pcb.family() == expected)
            .map(|pcb| pcb.socket(&guard).unwrap().0)
            .collect();
        let seen = owners(&table, "127.0.0.1:7103");
        assert!(
            !seen.is_empty() && seen.iter().all(|id| expected_ids.contains(id)),
            "{first:?} then {second:?}, {late} late: SYNs went to {seen:?}"
        );
    }
}

/// `soconnectat`: a connected datagram socket is disconnected before it
/// connects again, whatever the new peer; `in_pcbdisconnect` zeroes the
/// local address and keeps the port.
///
/// ```c
/// if (so->so_state & (SS_ISCONNECTED|SS_ISCONNECTING) &&
///     ((so->so_proto->pr_flags & PR_CONNREQUIRED) ||
///     (error = sodisconnect(so)))) {
///     error = EISCONN;
/// ...
/// in_pcbdisconnect(struct inpcb *inp)
///     in_pcbremhash_locked(inp);
///     ...
///     inp->inp_laddr.s_addr = INADDR_ANY;
///     inp->inp_faddr.s_addr = INADDR_ANY;
///     inp->inp_fport = 0;
/// ```
#[test]
fn freebsd_soconnectat_disconnects_a_connected_datagram_socket_first() {
    // (protocol, second peer): the second connect's answer, then the
    // PCB's local address and peer
    type Row = (
        Protocol,
        &'static str,
        Result<&'static str, Error>,
        &'static str,
        Option<&'static str>,
    );
    let rows: [Row; 4] = [
        (
            Protocol::Udp,
            "127.0.0.1:54",
            Ok("127.0.0.1:7001"),
            "127.0.0.1:7001",
            Some("127.0.0.1:54"),
        ),
        (
            Protocol::Udp,
            "127.0.0.1:53",
            Ok("127.0.0.1:7001"),
            "127.0.0.1:7001",
            Some("127.0.0.1:53"),
        ),
        // The disconnect stands when the new peer is refused.
        (
            Protocol::Udp,
            "127.0.0.1:0",
            Err(Error::AddrNotAvailable),
            "0.0.0.0:7001",
            None,
        ),
        // TCP (PR_CONNREQUIRED): EISCONN, nothing changes.
        (
            Protocol::Tcp,
            "127.0.0.1:54",
            Err(Error::AlreadyConnected),
            "127.0.0.1:7001",
            Some("127.0.0.1:53"),
        ),
    ];
    for (protocol, second, answer, local, peer) in rows {
        let table = freebsd(protocol);
        let _server = (protocol == Protocol::Tcp).then(|| {
            let server = sock(&table, Family::Inet, 9);
            server.bind(addr("127.0.0.1:53")).unwrap();
            server.listen().unwrap();
            server
        });
        let pcb = sock(&table, Family::Inet, 1);
        pcb.bind(addr("127.0.0.1:7001")).unwrap();
        pcb.connect(addr("127.0.0.1:53")).unwrap();
        assert_eq!(
            pcb.connect(addr(second)),
            answer.map(addr),
            "{protocol:?} {second}"
        );
        assert_eq!(pcb.local_addr(), Some(addr(local)), "{protocol:?} {second}");
        assert_eq!(pcb.peer_addr(), peer.map(addr), "{protocol:?} {second}");
    }
}

/// `in_pcbconnect` and `in6_pcbladdr` (FreeBSD 15), and `tcp_usr_connect`:
/// an unspecified or broadcast peer.
///
/// ```c
/// VNET_DEFINE_STATIC(int, connect_inaddr_wild) = 0;
/// ...
/// if (sin->sin_port == 0)
///     return (EADDRNOTAVAIL);
/// ...
/// if (__predict_false(in_broadcast(sin->sin_addr))) {
///     if (!V_connect_inaddr_wild || CK_STAILQ_EMPTY(&V_in_ifaddrhead))
///         return (ENETUNREACH);
///     ...
///     if (in_nullhost(sin->sin_addr)) {
///         faddr = IA_SIN(CK_STAILQ_FIRST(&V_in_ifaddrhead))->sin_addr;
/// ...
/// VNET_DEFINE_STATIC(int, connect_in6addr_wild) = 1;
/// ...
/// if (V_connect_in6addr_wild && !CK_STAILQ_EMPTY(&V_in6_ifaddrhead)) {
///     if (IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr))
///         sin6->sin6_addr = in6addr_loopback;
/// } else if (IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr)) {
///     return (ENETUNREACH);
/// ...
/// tcp_usr_connect():
/// if (ntohl(sinp->sin_addr.s_addr) == INADDR_BROADCAST) {
///     error = EACCES;
/// ```
#[test]
fn freebsd_in_pcbconnect_unspecified_and_broadcast_peers() {
    // (protocol, connect_inaddr_wild, connect_in6addr_wild, peer): the peer
    // connected to, or the error
    type Row = (
        Protocol,
        bool,
        bool,
        &'static str,
        Result<&'static str, Error>,
    );
    let rows: [Row; 12] = [
        (
            Protocol::Tcp,
            false,
            true,
            "0.0.0.0:80",
            Err(Error::NetworkUnreachable),
        ),
        (
            Protocol::Udp,
            false,
            true,
            "0.0.0.0:80",
            Err(Error::NetworkUnreachable),
        ),
        (
            Protocol::Udp,
            false,
            true,
            "255.255.255.255:80",
            Err(Error::NetworkUnreachable),
        ),
        (
            Protocol::Tcp,
            false,
            true,
            "255.255.255.255:80",
            Err(Error::PermissionDenied),
        ),
        (
            Protocol::Tcp,
            true,
            true,
            "255.255.255.255:80",
            Err(Error::PermissionDenied),
        ),
        (
            Protocol::Tcp,
            false,
            true,
            "0.0.0.0:0",
            Err(Error::AddrNotAvailable),
        ),
        // 14.x: the host's first address, loopback here.
        (Protocol::Tcp, true, true, "0.0.0.0:80", Ok("127.0.0.1:80")),
        (Protocol::Udp, true, true, "0.0.0.0:80", Ok("127.0.0.1:80")),
        (Protocol::Tcp, false, true, "[::]:80", Ok("[::1]:80")),
        (Protocol::Udp, false, true, "[::]:80", Ok("[::1]:80")),
        (
            Protocol::Tcp,
            false,
            false,
            "[::]:80",
            Err(Error::NetworkUnreachable),
        ),
        (
            Protocol::Tcp,
            false,
            true,
            "[::ffff:255.255.255.255]:80",
            Err(Error::PermissionDenied),
        ),
    ];
    for (protocol, inaddr, in6addr, peer, expected) in rows {
        let table = PcbTable::<Sock>::builder()
            .protocol(protocol)
            .connect_inaddr_wild(inaddr)
            .connect_in6addr_wild(in6addr)
            .seed(1)
            .build();
        let pcb = sock(&table, family_of(addr(peer)), 1);
        let what = format!("{protocol:?} inaddr {inaddr} in6addr {in6addr} {peer}");
        match expected {
            Ok(connected) => {
                pcb.connect(addr(peer))
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(pcb.peer_addr(), Some(addr(connected)), "{what}");
            }
            Err(error) => {
                assert_eq!(pcb.connect(addr(peer)), Err(error), "{what}");
                assert_eq!(pcb.state(), State::Closed, "{what}");
                assert!(table.is_empty(), "{what}");
            }
        }
    }
    // The Linux rules do not read the FreeBSD sysctls.
    let linux = PcbTable::<Sock>::builder()
        .policy(Policy::Linux)
        .connect_in6addr_wild(false)
        .build();
    let pcb = linux.attach(Family::Inet6, Cred::ROOT, Sock(1));
    assert_ne!(pcb.connect(addr("[::]:80")), Err(Error::NetworkUnreachable));
}

/// `in6_pcbbind_avail`: a V6ONLY socket binding a v4-mapped address. The
/// mapped branch of `tcp6_usr_bind` runs only without V6ONLY; with it the
/// address is looked up among the interfaces' IPv6 addresses, before the
/// port's privilege check.
///
/// ```c
/// if ((inp->inp_flags & IN6P_IPV6_V6ONLY) == 0) {
///     ...
///     else if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
/// ...
/// } else if (!IN6_IS_ADDR_UNSPECIFIED(laddr)) {
///     ...
///     if ((ifa = ifa_ifwithaddr((const struct sockaddr *)&sin6)) ==
///         NULL && (inp->inp_flags & INP_BINDANY) == 0) {
///         NET_EPOCH_EXIT(et);
///         return (EADDRNOTAVAIL);
/// ```
#[test]
fn freebsd_in6_pcbbind_avail_refuses_a_mapped_address_under_v6only() {
    // (protocol, V6ONLY, credential, address): bind's answer
    let user = Cred::user(1000);
    let rows = [
        (
            Protocol::Tcp,
            true,
            Cred::ROOT,
            "[::ffff:127.0.0.1]:9000",
            Err(Error::AddrNotAvailable),
        ),
        (
            Protocol::Udp,
            true,
            Cred::ROOT,
            "[::ffff:127.0.0.1]:9000",
            Err(Error::AddrNotAvailable),
        ),
        (
            Protocol::Tcp,
            true,
            Cred::ROOT,
            "[::ffff:0.0.0.0]:9000",
            Err(Error::AddrNotAvailable),
        ),
        (
            Protocol::Tcp,
            true,
            Cred::ROOT,
            "[::ffff:224.0.0.1]:9000",
            Err(Error::AddrNotAvailable),
        ),
        (
            Protocol::Tcp,
            true,
            user,
            "[::ffff:127.0.0.1]:80",
            Err(Error::AddrNotAvailable),
        ),
        (
            Protocol::Tcp,
            false,
            Cred::ROOT,
            "[::ffff:127.0.0.1]:9000",
            Ok(()),
        ),
        (
            Protocol::Tcp,
            false,
            Cred::ROOT,
            "[::ffff:224.0.0.1]:9000",
            Err(Error::FamilyNotSupported),
        ),
        (
            Protocol::Tcp,
            false,
            user,
            "[::ffff:127.0.0.1]:80",
            Err(Error::PermissionDenied),
        ),
    ];
    for (protocol, v6only, cred, local, expected) in rows {
        let table = freebsd(protocol);
        let pcb = table.attach(Family::Inet6, cred, Sock(1));
        pcb.set_v6only(v6only).unwrap();
        assert_eq!(
            pcb.bind(addr(local)).map(|_| ()),
            expected,
            "{protocol:?} v6only {v6only} {cred:?} {local}"
        );
    }
}

/// `tcp6_usr_bind` / `tcp6_usr_connect` (and `tcp_usr_bind` /
/// `tcp_usr_connect`) check the sockaddr's family before its length.
///
/// ```c
/// if (nam->sa_family != AF_INET6) {
///     error = EAFNOSUPPORT;
///     goto out;
/// }
/// if (nam->sa_len != sizeof(*sin6)) {
///     error = EINVAL;
/// ```
///
/// UDP: `udp6_bind` and `udp6_connect` of the same kernels could not be
/// read; the table keeps the length-first answer (EINVAL) for them.
#[test]
fn freebsd_tcp6_usr_bind_checks_the_family_before_the_length() {
    // (protocol, socket family, address): bind's and connect's answer
    let rows = [
        (
            Protocol::Tcp,
            Family::Inet6,
            "127.0.0.1:9000",
            Error::FamilyNotSupported,
        ),
        (
            Protocol::Tcp,
            Family::Inet,
            "[::1]:9000",
            Error::FamilyNotSupported,
        ),
        (
            Protocol::Udp,
            Family::Inet6,
            "127.0.0.1:9000",
            Error::InvalidInput,
        ),
        (
            Protocol::Udp,
            Family::Inet,
            "[::1]:9000",
            Error::FamilyNotSupported,
        ),
    ];
    for (protocol, family, address, expected) in rows {
        let table = freebsd(protocol);
        let pcb = table.attach(family, Cred::ROOT, Sock(1));
        assert_eq!(
            pcb.bind(addr(address)),
            Err(expected),
            "bind {protocol:?} {family:?}"
        );
        assert_eq!(
            pcb.connect(addr(address)),
            Err(expected),
            "connect {protocol:?} {family:?}"
        );
        assert_eq!(pcb.state(), State::Closed);
    }
}

/// `in_pcb_lport_dest` without randomisation: `ipi_lastport` starts at 0
/// and the scan steps it before looking, so the first port is the range's
/// first.
///
/// ```c
/// if (V_ipport_randomized)
///     *lastport = first + (arc4random() % (last - first));
/// ...
/// ++*lastport;
/// if (*lastport < first || *lastport > last)
///     *lastport = first;
/// ```
#[test]
fn freebsd_in_pcb_lport_dest_starts_at_the_first_port() {
    // (protocol, how the port is taken): the ports of three PCBs in turn
    for (protocol, by_connect) in [(Protocol::Tcp, false), (Protocol::Udp, true)] {
        let table = PcbTable::<Sock>::builder()
            .protocol(protocol)
            .ephemeral_ports(20000..=20009)
            .randomized_ports(false)
            .seed(1)
            .build();
        let ports: Vec<u16> = (0..3)
            .map(|id| {
                let pcb = sock(&table, Family::Inet, id);
                let local = if by_connect {
                    pcb.connect(addr("127.0.0.1:53")).unwrap()
                } else {
                    pcb.bind(addr("127.0.0.1:0")).unwrap()
                };
                std::mem::forget(pcb);
                local.port()
            })
            .collect();
        assert_eq!(ports, [20000, 20001, 20002], "{protocol:?}");
    }
}

/// `solisten_clone`: an accepted socket inherits none of the reuse options.
/// (Linux `sk_clone_lock` copies them; see `tests/lifecycle.rs`.)
///
/// ```c
/// so->so_options = head->so_options & (SO_KEEPALIVE | SO_DONTROUTE |
///     SO_LINGER | SO_OOBINLINE | SO_NOSIGPIPE);
/// ```
#[test]
fn freebsd_solisten_clone_inherits_no_reuse_option() {
    for reuse in common::Reuse::ALL {
        let table = freebsd(Protocol::Tcp);
        let server = sock(&table, Family::Inet, 1);
        reuse.apply(&server);
        server.bind(addr("127.0.0.1:7104")).unwrap();
        server.listen().unwrap();
        let child = server
            .accept(addr("127.0.0.1:7104"), addr("127.0.0.9:4000"), Sock(2))
            .unwrap();
        let flags = child.flags();
        assert!(
            !flags.reuse_addr() && !flags.reuse_port() && !flags.reuse_port_lb(),
            "{reuse:?}: {flags:?}"
        );
        assert!(!flags.in_group());
    }
}

/// `in_pcblookup_hash_wild_smr`, the packet path, returns the first match
/// in the wildcard chain. `in_pcbinshash` inserts a dual-stack `::` PCB
/// (`INP_IPV6` set) with the IPv6 rule, before the first unbound entry,
/// IPv4 ones included; only an unbound `INP_IPV6PROTO` PCB without
/// `INP_IPV6` (bound to the v4-mapped wildcard) goes to the tail.
///
/// ```c
/// if ((inp->inp_vflag & INP_IPV6) != 0)
///     _in6_pcbinshash_wild(pcbhash, inp);
/// else
///     _in_pcbinshash_wild(pcbhash, inp);
/// ...
/// _in_pcbinshash_wild():
/// if (!bound && (inp->inp_vflag & INP_IPV6PROTO) != 0) {
///     ... CK_LIST_INSERT_AFTER(last, inp, inp_hash_wild);   (the tail)
/// ...
/// _in6_pcbinshash_wild():
/// if (!bound) {
///     CK_LIST_FOREACH_FROM(last, pcbhash, inp_hash_wild) {
///         if (IN6_IS_ADDR_UNSPECIFIED(&last->in6p_laddr))
///             break;
/// ...
/// CK_LIST_INSERT_BEFORE(last, inp, inp_hash_wild);
/// ...
/// in_pcblookup_hash_wild_smr():
/// CK_LIST_FOREACH(inp, head, inp_hash_wild) {
///     match = in_pcblookup_wild_match(inp, laddr, lport, fib);
///     if (match == INPLOOKUP_MATCH_NONE)
///         continue;
///     if (__predict_true(inp_smr_lock(inp, lockflags))) {
///         ...
///             return (inp);
/// ```
///
/// The locked path (`in_pcblookup_hash_wild_locked`) would keep a dual-stack
/// PCB as `local_wild_mapped`, below `0.0.0.0`; a packet takes it only when
/// the lock-free path loses a race with a change of the matching PCB.
#[test]
fn freebsd_in_pcblookup_hash_wild_smr_takes_the_first_match_in_the_chain() {
    // (first bound, second bound): who gets an IPv4 SYN to 127.0.0.1
    let rows = [
        ("0.0.0.0:7105", "[::]:7105", 2),
        ("[::]:7105", "0.0.0.0:7105", 2),
        ("0.0.0.0:7105", "[::ffff:0.0.0.0]:7105", 1),
        ("[::ffff:0.0.0.0]:7105", "0.0.0.0:7105", 2),
        ("[::ffff:0.0.0.0]:7105", "[::]:7105", 2),
        ("[::]:7105", "127.0.0.1:7105", 2),
        ("127.0.0.1:7105", "[::]:7105", 1),
    ];
    for (first, second, expected) in rows {
        let table = freebsd(Protocol::Tcp);
        let pcbs: Vec<Pcb<Sock>> = [first, second]
            .into_iter()
            .zip(1..)
            .map(|(local, id)| {
                let pcb = sock(&table, family_of(addr(local)), id);
                pcb.set_reuse_port(true).unwrap();
                pcb.bind(addr(local))
                    .unwrap_or_else(|e| panic!("{local}: {e}"));
                pcb.listen().unwrap();
                pcb
            })
            .collect();
        assert_eq!(
            owner(&table, "127.0.0.1:7105", addr("127.0.0.9:4000")),
            Some(expected),
            "{first} then {second}"
        );
        drop(pcbs);
    }
}

/// A UDP SO_REUSEPORT_LB member that connects, and disconnects.
///
/// `in_pcbconnect` of a hashed PCB moves it with `in_pcbrehash`, which does
/// not touch its group, so the kernel keeps it in the group; FreeBSD's own
/// `so_reuseport_lb_test` (`connect_udp`: "The kernel erroneously permits
/// calling connect() on a UDP socket with SO_REUSEPORT_LB set. Verify that
/// packets sent to the bound address are dropped unless they come from the
/// connected address") requires that it then receive only from its peer,
/// which the table gets by taking it out of the group while connected.
/// `in_pcbdisconnect` takes the PCB out of the hash and its group
/// (`in_pcbremhash_locked`) and zeroes its local address; it enters a group
/// again through `in_pcbinshash`, if SO_REUSEPORT_LB is set then.
///
/// ```c
/// if ((inp->inp_flags & INP_INHASHLIST) == 0) {
///     error = in_pcbinshash(inp);
///     MPASS(error == 0);
/// } else
///     in_pcbrehash(inp);
/// ...
/// in_pcbdisconnect(struct inpcb *inp)
///     in_pcbremhash_locked(inp);
/// ```
#[test]
fn freebsd_in_pcbdisconnect_and_a_udp_group_member() {
    // (option still set at disconnect): whether the PCB is back in a group
    for keep_option in [true, false] {
        let table = freebsd(Protocol::Udp);
        let member = sock(&table, Family::Inet, 1);
        member.set_reuse_port_lb(true).unwrap();
        member.bind(addr("0.0.0.0:7106")).unwrap();
        let mate = sock(&table, Family::Inet, 2);
        mate.set_reuse_port_lb(true).unwrap();
        mate.bind(addr("0.0.0.0:7106")).unwrap();
        member.connect(addr("127.0.0.1:53")).unwrap();
        assert!(!member.flags().in_group());
        // Only its peer reaches it; everyone else goes to the group.
        let local = member.local_addr().unwrap();
        assert_eq!(
            owner(&table, "127.0.0.1:7106", addr("127.0.0.1:53")),
            Some(1)
        );
        assert_eq!(owners(&table, "127.0.0.1:7106"), [2]);
        assert_eq!(local, addr("127.0.0.1:7106"));
        if !keep_option {
            member.set_reuse_port_lb(false).unwrap();
        }
        member.disconnect().unwrap();
        assert_eq!(member.local_addr(), Some(addr("0.0.0.0:7106")));
        assert_eq!(
            member.flags().in_group(),
            keep_option,
            "option kept: {keep_option}"
        );
        let expected: &[u32] = if keep_option { &[1, 2] } else { &[2] };
        assert_eq!(owners(&table, "127.0.0.1:7106"), expected);
    }
}

/// `in_pcbdisconnect` takes the PCB out of the hash; it comes back through
/// `in_pcbinshash`, which puts it ahead of the wildcard PCBs already there
/// (`_in_pcbinshash_wild`: an unbound PCB goes before the first unbound
/// entry), so it is the first wildcard match again.
///
/// ```c
/// in_pcbremhash_locked(inp);
/// /* See the comment in in_pcbinshash(). */
/// inp->inp_smr = smr_advance(inp->inp_pcbinfo->ipi_smr);
/// ```
#[test]
fn freebsd_in_pcbdisconnect_reinserts_as_the_newest() {
    // (whether A connects and disconnects): who gets a datagram to the port
    for (reconnected, expected) in [(false, 2), (true, 1)] {
        let table = freebsd(Protocol::Udp);
        let pcbs: Vec<Pcb<Sock>> = (1..=2)
            .map(|id| {
                let pcb = sock(&table, Family::Inet, id);
                pcb.set_reuse_port(true).unwrap();
                pcb.bind(addr("0.0.0.0:7107")).unwrap();
                pcb
            })
            .collect();
        if reconnected {
            pcbs[0].connect(addr("127.0.0.1:53")).unwrap();
            pcbs[0].disconnect().unwrap();
        }
        assert_eq!(
            owner(&table, "127.0.0.1:7107", addr("127.0.0.9:4000")),
            Some(expected),
            "reconnected: {reconnected}"
        );
    }
}
