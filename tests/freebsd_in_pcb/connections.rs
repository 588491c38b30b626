//! Connections: connect() on datagram and stream sockets, the peers it
//! refuses, the first ephemeral port it tries, and what an accepted child
//! inherits.

use super::common::{addr, family_of, freebsd, Reuse, Sock};
use super::sock;
use pcbhash::{Cred, Error, Family, PcbTable, Policy, Protocol, State};

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
    for reuse in Reuse::ALL {
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
