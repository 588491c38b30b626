//! `connect()` answers that the live differential test once missed, checked
//! step by step on the running kernel and on a `PcbTable` with
//! `Policy::Linux`: the EAGAIN of a UDP autobind that finds no port, a
//! connect() to an unspecified address, which reaches the local host, and
//! the EINVAL of an AF_INET6 socket bound to a v4-mapped multicast or
//! broadcast address. Every
//! expected value is the one the kernel (6.18) gave when this was written.
//! Each test runs in its own network namespace; without one, it is skipped.
//! FreeBSD's answer to the first case sits beside them, with the kernel
//! source lines it follows.

mod linux_kernel;

use std::net::SocketAddr;

use linux_kernel::dual::{listener, Pair, Scene, OK};
use pcbhash::{Cred, Error, Family, PcbTable, Policy, Protocol, State};

const EADDRNOTAVAIL: i32 = libc::EADDRNOTAVAIL;
const EAGAIN: i32 = libc::EAGAIN;
const EINVAL: i32 = libc::EINVAL;
const ENETUNREACH: i32 = libc::ENETUNREACH;

fn at(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

/// The kernel's and the table's peer of `pair`, which must be `want`.
fn expect_peer(step: &str, pair: &Pair, want: &str) {
    let kernel = linux_kernel::peer_addr(&pair.kernel);
    let table = pair.table.peer_addr();
    assert!(
        kernel == Some(at(want)) && table == Some(at(want)),
        "{step}: expected the peer {want}, the kernel has {kernel:?}, the table {table:?}"
    );
}

/// `connect()` in both worlds, which must succeed from `local` to `peer`.
fn connects(pair: &Pair, step: &str, to: &str, local: &str, peer: &str) {
    let from = pair.connect(step, at(to), OK).expect("connected");
    assert_eq!(from, at(local), "{step}: the table's local address");
    assert_eq!(pair.local(step), Some(at(local)), "{step}");
    expect_peer(step, pair, peer);
}

/// `inet_autobind()` (the early bind of a UDP connect() from an unbound
/// socket) answers EAGAIN when no port is free, before it looks at the peer;
/// TCP's `__inet_hash_connect` answers EADDRNOTAVAIL.
#[test]
fn linux_udp_autobind_without_a_port_is_eagain() {
    let Some(scene) = Scene::with(Protocol::Udp, (40000, 40000)) else {
        return;
    };
    let first = scene.socket(false, 0);
    connects(
        &first,
        "the only port",
        "127.0.0.1:30000",
        "127.0.0.1:40000",
        "127.0.0.1:30000",
    );
    let v4 = scene.socket(false, 0);
    v4.connect("no port left (AF_INET)", at("127.0.0.1:30001"), EAGAIN);
    assert_eq!(v4.local("nothing bound"), None);
    let v6 = scene.socket(true, 0);
    v6.connect(
        "no port left, toward ::ffff:0.0.0.0",
        at("[::ffff:0.0.0.0]:30000"),
        EAGAIN,
    );
    v6.connect("no port left (AF_INET6)", at("[::1]:30000"), EAGAIN);
    assert_eq!(v6.table.state(), State::Closed);
    // The port comes back with its owner, and the same call now succeeds.
    first.close();
    connects(
        &v6,
        "the port is free again",
        "[::ffff:0.0.0.0]:30000",
        "[::ffff:127.0.0.1]:40000",
        "[::ffff:127.0.0.1]:30000",
    );

    let Some(scene) = Scene::new((40000, 40000)) else {
        return;
    };
    let (_server, to) = listener(&scene, false, 0, ("127.0.0.1", 20000), (false, false));
    let first = scene.socket(false, 0);
    first.connect("TCP: the only port", to, OK);
    let second = scene.socket(false, 0);
    second.connect("TCP: no port left", to, EADDRNOTAVAIL);
}

/// FreeBSD has no early bind: `in_pcbconnect_setup` asks
/// `in_pcb_lport_dest` for a port, and that answers EADDRNOTAVAIL once the
/// range is used up (sys/netinet/in_pcb.c):
///
/// ```text
///     do {
///         if (count-- < 0)    /* completely used? */
///             return (EADDRNOTAVAIL);
/// ```
///
/// `udp_connect` returns that error as it is.
#[test]
fn freebsd_udp_connect_without_a_port_is_eaddrnotavail() {
    let table = PcbTable::<()>::builder()
        .policy(Policy::FreeBsd)
        .protocol(Protocol::Udp)
        .ephemeral_ports(40000..=40000)
        .build();
    let first = table.attach(Family::Inet, Cred::ROOT, ());
    first.connect(at("127.0.0.1:30000")).expect("the only port");
    let second = table.attach(Family::Inet, Cred::ROOT, ());
    assert_eq!(
        second.connect(at("127.0.0.1:30000")),
        Err(Error::AddrNotAvailable)
    );
    assert_eq!(second.state(), State::Closed);
    // `in_pcb_lport_dest` looks for the 4-tuple: toward another peer the
    // port is free.
    assert_eq!(
        second.connect(at("127.0.0.2:30000")),
        Ok(at("127.0.0.1:40000"))
    );
}

/// TCP `connect()` to an unspecified address: `ip_route_connect` turns
/// `0.0.0.0` (also `::ffff:0.0.0.0`) into the socket's source address, or
/// 127.0.0.1; `tcp_v6_connect` turns `::` into `::1`, or into
/// `::ffff:127.0.0.1` on a socket bound to a v4-mapped address. The peer is
/// that address, and the table's lookups find the connection under it.
#[test]
fn linux_tcp_connect_to_an_unspecified_address() {
    let Some(scene) = Scene::new((40000, 40000)) else {
        return;
    };
    let (server, _) = listener(&scene, true, 0, ("::", 30001), (false, false));
    let (server6, _) = listener(&scene, true, 0, ("::", 30002), (false, false));

    let bound = scene.socket(false, 0);
    bound.bind("bind 127.0.0.2", "127.0.0.2", 30000, OK);
    connects(
        &bound,
        "from 127.0.0.2 to 0.0.0.0",
        "0.0.0.0:30001",
        "127.0.0.2:30000",
        "127.0.0.2:30001",
    );
    let child = server.accept(at("127.0.0.2:30001"), at("127.0.0.2:30000"));
    expect_peer("the accepted side", &child, "[::ffff:127.0.0.2]:30000");
    {
        let guard = scene.table.pin();
        let found = scene
            .table
            .lookup(at("127.0.0.2:30000"), at("127.0.0.2:30001"), &guard)
            .expect("the client's 4-tuple");
        assert!(found.is(&bound.table), "the lookup finds the client");
        let found = scene
            .table
            .lookup(at("127.0.0.2:30001"), at("127.0.0.2:30000"), &guard)
            .expect("the server side's 4-tuple");
        assert!(found.is(&child.table), "the lookup finds the accepted PCB");
    }

    let unbound = scene.socket(false, 0);
    connects(
        &unbound,
        "unbound, to 0.0.0.0",
        "0.0.0.0:30001",
        "127.0.0.1:40000",
        "127.0.0.1:30001",
    );
    let _child = server.accept(at("127.0.0.1:30001"), at("127.0.0.1:40000"));

    let mapped = scene.socket(true, 0);
    connects(
        &mapped,
        "unbound AF_INET6, to ::ffff:0.0.0.0",
        "[::ffff:0.0.0.0]:30002",
        "[::ffff:127.0.0.1]:40000",
        "[::ffff:127.0.0.1]:30002",
    );
    let _child = server6.accept(at("127.0.0.1:30002"), at("127.0.0.1:40000"));

    let six = scene.socket(true, 0);
    connects(
        &six,
        "unbound AF_INET6, to ::",
        "[::]:30002",
        "[::1]:40000",
        "[::1]:30002",
    );
    let _child = server6.accept(at("[::1]:30002"), at("[::1]:40000"));

    let on_mapped = scene.socket(true, 0);
    on_mapped.bind("bind ::ffff:127.0.0.2", "::ffff:127.0.0.2", 30003, OK);
    connects(
        &on_mapped,
        "from ::ffff:127.0.0.2 to ::",
        "[::]:30002",
        "[::ffff:127.0.0.2]:30003",
        "[::ffff:127.0.0.1]:30002",
    );
    let _child = server6.accept(at("127.0.0.1:30002"), at("127.0.0.2:30003"));

    let on_mapped = scene.socket(true, 0);
    on_mapped.bind("bind ::ffff:127.0.0.2", "::ffff:127.0.0.2", 30004, OK);
    connects(
        &on_mapped,
        "from ::ffff:127.0.0.2 to ::ffff:0.0.0.0",
        "[::ffff:0.0.0.0]:30002",
        "[::ffff:127.0.0.2]:30004",
        "[::ffff:127.0.0.2]:30002",
    );
    let _child = server6.accept(at("127.0.0.2:30002"), at("127.0.0.2:30004"));

    let on_any_mapped = scene.socket(true, 0);
    on_any_mapped.bind("bind ::ffff:0.0.0.0", "::ffff:0.0.0.0", 30005, OK);
    connects(
        &on_any_mapped,
        "from ::ffff:0.0.0.0 to ::",
        "[::]:30002",
        "[::ffff:127.0.0.1]:30005",
        "[::ffff:127.0.0.1]:30002",
    );
    let _child = server6.accept(at("127.0.0.1:30002"), at("127.0.0.1:30005"));

    let on_loopback6 = scene.socket(true, 0);
    on_loopback6.bind("bind ::1", "::1", 30006, OK);
    on_loopback6.connect(
        "from ::1 (V6ONLY) to ::ffff:0.0.0.0",
        at("[::ffff:0.0.0.0]:30002"),
        ENETUNREACH,
    );
    connects(
        &on_loopback6,
        "from ::1 to ::",
        "[::]:30002",
        "[::1]:30006",
        "[::1]:30002",
    );
}

/// UDP `connect()` to an unspecified address, also when connecting again:
/// the peer is the IPv4 source address the socket has (`inet_saddr`), which
/// for an AF_INET6 socket that `bind()` put on `::1` is `LOOPBACK4_IPV6`
/// (127.0.0.6), and without one 127.0.0.1.
#[test]
fn linux_udp_connect_to_an_unspecified_address() {
    let Some(scene) = Scene::with(Protocol::Udp, (40000, 40000)) else {
        return;
    };
    let mapped = scene.socket(true, 0);
    connects(
        &mapped,
        "unbound AF_INET6, to ::ffff:0.0.0.0",
        "[::ffff:0.0.0.0]:30000",
        "[::ffff:127.0.0.1]:40000",
        "[::ffff:127.0.0.1]:30000",
    );
    connects(
        &mapped,
        "again, to ::",
        "[::]:30001",
        "[::ffff:127.0.0.1]:40000",
        "[::ffff:127.0.0.1]:30001",
    );

    let bound = scene.socket(false, 0);
    bound.bind("bind 127.0.0.2", "127.0.0.2", 30000, OK);
    connects(
        &bound,
        "from 127.0.0.2 to 0.0.0.0",
        "0.0.0.0:30000",
        "127.0.0.2:30000",
        "127.0.0.2:30000",
    );

    let six = scene.socket(true, 0);
    six.bind("bind :: (a port of its own)", "::", 30001, OK);
    connects(&six, "to ::", "[::]:30000", "[::1]:30001", "[::1]:30000");
    connects(
        &six,
        "again, from ::1 (source from connect) to ::ffff:0.0.0.0",
        "[::ffff:0.0.0.0]:30000",
        "[::1]:30001",
        "[::ffff:127.0.0.1]:30000",
    );

    // bind() to ::1 with port 0, then a disconnect gives the port back but
    // keeps the address (and its IPv4 view); V6ONLY may then be cleared.
    let Some(scene) = Scene::with(Protocol::Udp, (40000, 40000)) else {
        return;
    };
    let named = scene.socket(true, 0);
    named.bind("bind ::1, port 0", "::1", 0, OK);
    named.disconnect("give the port back, keep ::1", OK);
    assert_eq!(named.local("no port"), None);
    named.set_v6only(false);
    connects(
        &named,
        "from ::1 (bound) to ::ffff:0.0.0.0",
        "[::ffff:0.0.0.0]:30000",
        "[::1]:40000",
        "[::ffff:127.0.0.6]:30000",
    );
}

/// An accepted TCP child of a listener on `::ffff:0.0.0.0` inherits the
/// listener's address lock (`SOCK_BINDADDR_LOCK`) but not its port lock, so
/// a `disconnect()` keeps an address that a later `connect()` chose and
/// gives the port back (`tcp_disconnect`, `inet_reset_saddr` skipped). That
/// address did not come from `bind()`, so the socket has no IPv4 source
/// (`inet_saddr`) and is not V6ONLY: connecting it to a v4-mapped peer,
/// `tcp_v4_connect` chooses the source by routing, `::ffff:127.0.0.1`
/// here, rather than `LOOPBACK4_IPV6` as after a `bind()` to `::1`.
#[test]
fn linux_tcp_mapped_connect_from_a_kept_connect_chosen_address() {
    let Some(scene) = Scene::new((40000, 40000)) else {
        return;
    };
    let (server, _) = listener(&scene, true, 0, ("::ffff:0.0.0.0", 30010), (false, false));
    let (_six, _) = listener(&scene, true, 0, ("::1", 30012), (false, false));
    let (_four, _) = listener(&scene, false, 0, ("127.0.0.2", 30013), (false, false));
    let client = scene.socket(false, 0);
    client.bind("client bind", "127.0.0.1", 30011, OK);
    connects(
        &client,
        "client to the listener",
        "127.0.0.2:30010",
        "127.0.0.1:30011",
        "127.0.0.2:30010",
    );
    let child = server.accept(at("127.0.0.2:30010"), at("127.0.0.1:30011"));
    child.disconnect("the child disconnects", OK);
    // A failed bind resets the address (`inet_reset_saddr`): the child is on
    // `::`, port 0.
    child.bind(
        "bind to a taken [::1]:30012",
        "::1",
        30012,
        libc::EADDRINUSE,
    );
    connects(
        &child,
        "the child connects to ::1",
        "[::1]:30012",
        "[::1]:40000",
        "[::1]:30012",
    );
    child.disconnect("the child disconnects again", OK);
    connects(
        &child,
        "the child, on a kept ::1, connects to a v4-mapped peer",
        "[::ffff:127.0.0.2]:30013",
        "[::ffff:127.0.0.1]:40000",
        "[::ffff:127.0.0.2]:30013",
    );
}

/// An AF_INET6 socket bound to a v4-mapped multicast or limited-broadcast
/// address has it as its IPv4 source too (`__inet6_bind`; `__inet_bind`
/// leaves such a source out), and the route lookup refuses that source:
/// `connect()` to an IPv4 peer is EINVAL, for TCP and UDP, and the socket
/// keeps its address and port. An AF_INET socket on the same address
/// connects. (The broadcast address of `lo` fails as well, with
/// ENETUNREACH, because it is no local address; the table leaves that to
/// the stack.)
#[test]
fn linux_mapped_multicast_or_broadcast_source_cannot_connect() {
    for protocol in [Protocol::Udp, Protocol::Tcp] {
        for address in [
            "::ffff:239.1.1.1",
            "::ffff:224.0.0.1",
            "::ffff:255.255.255.255",
        ] {
            let Some(scene) = Scene::with(protocol, (40000, 40000)) else {
                return;
            };
            let step = |what: &str| format!("{protocol:?} on {address}: {what}");
            let pair = scene.socket(true, 0);
            pair.bind(&step("bind"), address, 0, OK);
            let bound = pair.local(&step("bound")).expect("a port");
            pair.connect(&step("connect"), at("[::ffff:127.0.0.1]:7"), EINVAL);
            assert_eq!(
                pair.local(&step("after connect")),
                Some(bound),
                "{}",
                step("address kept")
            );
            assert_eq!(pair.table.state(), State::Bound, "{}", step("state"));
        }
    }
    // UDP, where the table and the kernel can both say it: an AF_INET socket
    // on the same address connects from it.
    let Some(scene) = Scene::with(Protocol::Udp, (40000, 40001)) else {
        return;
    };
    let inet = scene.socket(false, 0);
    inet.bind("AF_INET on 239.1.1.1", "239.1.1.1", 0, OK);
    inet.connect("AF_INET from 239.1.1.1", at("127.0.0.1:7"), OK);
}
