//! Linux behaviours that are easy to get wrong, one scenario each, checked
//! step by step on the running kernel and on a `PcbTable` with
//! `Policy::Linux`. The expected results are the ones the kernel (6.18)
//! gave; several contradict a plain reading of the kernel sources or the
//! project's reference notes, which is why each has a name here. Each test
//! runs in its own network namespace; without one, it is skipped.

mod linux_kernel;

use std::net::SocketAddr;

use linux_kernel::dual::{listener, Pair, Scene, OK};
use pcbhash::Protocol;

const EADDRINUSE: i32 = libc::EADDRINUSE;
const EADDRNOTAVAIL: i32 = libc::EADDRNOTAVAIL;
const ENETUNREACH: i32 = libc::ENETUNREACH;

fn at(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

/// `inet_csk_get_port`'s fast path: the bind bucket remembers the last
/// SO_REUSEPORT socket that did not match its record (FASTREUSEPORT_STRICT),
/// and a later SO_REUSEPORT socket of that owner on a covered address skips
/// the conflict scan, even where the scan would refuse it.
#[test]
fn linux_fast_reuseport_skips_the_conflict_scan() {
    let Some(scene) = Scene::new((40000, 40001)) else {
        return;
    };
    let shared = scene.socket_with(false, 0, true, false);
    shared.bind("SO_REUSEADDR on 127.0.0.1", "127.0.0.1", 20000, OK);
    let record = scene.socket_with(false, 0, true, true);
    record.bind(
        "SO_REUSEADDR + SO_REUSEPORT on 0.0.0.0",
        "0.0.0.0",
        20000,
        OK,
    );
    let fast = scene.socket_with(false, 0, false, true);
    fast.bind(
        "SO_REUSEPORT only on 127.0.0.1 (covered by the record)",
        "127.0.0.1",
        20000,
        OK,
    );
    let plain = scene.socket(false, 0);
    plain.bind("no option on 127.0.0.1", "127.0.0.1", 20000, EADDRINUSE);
}

/// The fast-path record outlives the options of the socket that set it:
/// clearing SO_REUSEPORT does not clear it. (It also shows that the
/// FASTREUSEPORT_ANY state is never reached in 6.18: the first socket's
/// record is STRICT, so a wildcard bind is not covered.)
#[test]
fn linux_fast_reuseport_record_outlives_the_option() {
    let Some(scene) = Scene::new((40000, 40001)) else {
        return;
    };
    let first = scene.socket_with(false, 0, false, true);
    first.bind("SO_REUSEPORT on 127.0.0.1", "127.0.0.1", 20000, OK);
    first.set_reuse_port(false);
    let wildcard = scene.socket_with(false, 0, false, true);
    wildcard.bind("SO_REUSEPORT on 0.0.0.0", "0.0.0.0", 20000, EADDRINUSE);
    let same = scene.socket_with(false, 0, false, true);
    same.bind("SO_REUSEPORT on 127.0.0.1 again", "127.0.0.1", 20000, OK);
}

/// `listen()` without `bind()` takes its port through the same `get_port`,
/// so its autobind sets the fast-path record too: a wildcard listener with
/// SO_REUSEADDR and SO_REUSEPORT that clears SO_REUSEPORT still lets a
/// SO_REUSEPORT socket of its owner bind a specific address on its port,
/// which the conflict scan alone would refuse (the listener no longer
/// shares by SO_REUSEPORT, and SO_REUSEADDR never shares with a listener).
/// Found by the fuzz model, which lacked the record.
#[test]
fn linux_fast_reuseport_record_of_a_listen_autobind() {
    let Some(scene) = Scene::new((40000, 40001)) else {
        return;
    };
    let listener = scene.socket_with(false, 0, true, true);
    listener.listen("listen() without bind(), both options on", OK);
    let port = listener.local("the listener's port").expect("bound").port();
    listener.set_reuse_port(false);
    let plain = scene.socket_with(false, 0, true, false);
    plain.bind(
        "SO_REUSEADDR only on 127.0.0.1",
        "127.0.0.1",
        port,
        EADDRINUSE,
    );
    let fast = scene.socket_with(false, 0, true, true);
    fast.bind(
        "both options on 127.0.0.1 (covered by the record)",
        "127.0.0.1",
        port,
        OK,
    );
}

/// `listen()` runs the conflict check again: two SO_REUSEADDR sockets share
/// an address, but only one of them may listen.
#[test]
fn linux_listen_rechecks_the_port() {
    let Some(scene) = Scene::new((40000, 40001)) else {
        return;
    };
    let a = scene.socket_with(false, 0, true, false);
    let b = scene.socket_with(false, 0, true, false);
    a.bind("first", "127.0.0.1", 20000, OK);
    b.bind("second, sharing by SO_REUSEADDR", "127.0.0.1", 20000, OK);
    a.listen("first listen", OK);
    b.listen("second listen", EADDRINUSE);
    // With SO_REUSEPORT too, and one owner, both may listen.
    let c = scene.socket_with(false, 0, true, true);
    let d = scene.socket_with(false, 0, true, true);
    c.bind("third", "127.0.0.2", 20000, OK);
    d.bind("fourth", "127.0.0.2", 20000, OK);
    c.listen("third listen", OK);
    d.listen("fourth listen", OK);
}

/// An AF_INET6 connection on `::1` without V6ONLY has the placeholder IPv4
/// address 127.0.0.6: the IPv4 wildcard overlaps it, the v4-mapped wildcard
/// and a specific IPv4 address do not.
#[test]
fn linux_ipv4_wildcard_meets_an_ipv6_connection() {
    let Some(scene) = Scene::new((40000, 40000)) else {
        return;
    };
    let (server, to) = listener(&scene, true, 0, ("::", 20000), (false, false));
    let client = scene.socket(true, 0);
    let from = client
        .connect("connect to ::1", at("[::1]:20000"), OK)
        .expect("connected");
    let _child = server.accept(to_v6(to), from);
    let port = from.port();
    for (address, want) in [
        ("0.0.0.0", EADDRINUSE),
        ("::ffff:0.0.0.0", OK),
        ("127.0.0.1", OK),
        ("127.0.0.6", OK),
        ("::", EADDRINUSE),
        ("::1", EADDRINUSE),
    ] {
        let probe = scene.socket(address.contains(':'), 0);
        probe.bind(
            &format!("{address} beside the connection"),
            address,
            port,
            want,
        );
    }
}

fn to_v6(to: SocketAddr) -> SocketAddr {
    SocketAddr::new("::1".parse().expect("ip"), to.port())
}

/// A TCP connect() that the 4-tuple check refuses gives back a port that
/// bind() chose (`tcp_set_state(TCP_CLOSE)` without SOCK_BINDPORT_LOCK); the
/// socket keeps its address, and listen() then picks a new port there.
#[test]
fn linux_failed_connect_gives_back_a_chosen_port() {
    let Some(scene) = Scene::new((40000, 40001)) else {
        return;
    };
    let (_server, to) = listener(&scene, false, 0, ("127.0.0.1", 20000), (false, false));
    let a = scene.socket_with(false, 0, true, false);
    a.bind("bind(127.0.0.2:0)", "127.0.0.2", 0, OK);
    let port = a.local("a").expect("bound").port();
    assert_eq!(port, 40001, "bind(0) takes the odd port first");
    let b = scene.socket_with(false, 0, true, false);
    b.bind("the same address and port", "127.0.0.2", port, OK);
    b.connect("b connects", to, OK);
    a.connect("a connects to the same peer", to, EADDRNOTAVAIL);
    assert_eq!(a.local("after the failure"), None, "the port went back");
    a.listen("listen autobinds again", OK);
    assert_eq!(
        a.local("after listen"),
        Some(at("127.0.0.2:40000")),
        "on the kept address"
    );
}

/// `::ffff:0.0.0.0` sets SOCK_BINDADDR_LOCK, yet connect() chooses a source
/// for it; when the 4-tuple check then fails, the source stays
/// (`inet_bhash2_reset_saddr` skips locked addresses).
#[test]
fn linux_failed_connect_from_the_mapped_wildcard_keeps_the_source() {
    let Some(scene) = Scene::new((40000, 40001)) else {
        return;
    };
    let (_server, _) = listener(&scene, false, 0, ("127.0.0.1", 20000), (false, false));
    let d = scene.socket_with(true, 0, true, false);
    d.bind("::ffff:0.0.0.0", "::ffff:0.0.0.0", 20001, OK);
    let e = scene.socket_with(false, 0, true, false);
    e.bind("127.0.0.1, the same port", "127.0.0.1", 20001, OK);
    e.connect("e connects", at("127.0.0.1:20000"), OK);
    d.connect(
        "d connects to the same peer",
        at("[::ffff:127.0.0.1]:20000"),
        EADDRNOTAVAIL,
    );
    assert_eq!(
        d.local("after the failure"),
        Some(at("[::ffff:127.0.0.1]:20001"))
    );
}

/// For IPv4 packets, an AF_INET6 `::` listener and an AF_INET6
/// `::ffff:0.0.0.0` listener score the same; the kernel takes the first in
/// its listening list, where SO_REUSEPORT AF_INET6 listeners join at the
/// tail: the one that listened first.
#[test]
fn linux_lookup_ties_go_by_listen_order() {
    for first_any in [true, false] {
        let Some(scene) = Scene::new((40000, 40001)) else {
            return;
        };
        let order = if first_any {
            ["::", "::ffff:0.0.0.0"]
        } else {
            ["::ffff:0.0.0.0", "::"]
        };
        let listeners: Vec<_> = order
            .iter()
            .map(|&ip| listener(&scene, true, 0, (ip, 20000), (false, true)).0)
            .collect();
        let client = scene.socket(false, 0);
        let to = at("127.0.0.1:20000");
        let from = client.connect("connect", to, OK).expect("connected");
        let guard = scene.table.pin();
        let chosen = scene.table.lookup(to, from, &guard).expect("a listener");
        assert!(chosen.is(&listeners[0].table), "the table: {order:?}");
        drop(guard);
        let kernel_first = linux_kernel::try_accept(&listeners[0].kernel, 0).is_some()
            || (0..500).any(|_| {
                std::thread::sleep(std::time::Duration::from_millis(1));
                linux_kernel::try_accept(&listeners[0].kernel, 0).is_some()
            });
        assert!(kernel_first, "the kernel: {order:?}");
    }
}

/// A UDP bind walks the port's list and the first overlapping socket
/// decides; an SO_REUSEPORT sharer decides only if it is the group the new
/// socket joins and neither sets SO_REUSEADDR. Other sharers are passed
/// over, so a plain socket behind them still refuses the bind.
#[test]
fn linux_udp_bind_walks_the_port_list() {
    let Some(scene) = Scene::with(Protocol::Udp, (40000, 40001)) else {
        return;
    };
    let plain = scene.socket(false, 0);
    plain.bind("plain 127.0.0.3", "127.0.0.3", 20000, OK);
    let tail = scene.socket_with(true, 0, false, true);
    tail.bind(
        "AF_INET6 SO_REUSEPORT ::ffff:127.0.0.2",
        "::ffff:127.0.0.2",
        20000,
        OK,
    );
    let wildcard = scene.socket_with(false, 0, false, true);
    wildcard.bind("SO_REUSEPORT 0.0.0.0", "0.0.0.0", 20000, EADDRINUSE);
    // An AF_INET SO_REUSEPORT socket goes to the head of the list: it is met
    // first, but it shares without being the wildcard's group, so the plain
    // socket behind it still refuses the wildcard.
    let head = scene.socket_with(false, 0, false, true);
    head.bind("AF_INET SO_REUSEPORT 127.0.0.4", "127.0.0.4", 20000, OK);
    let again = scene.socket_with(false, 0, false, true);
    again.bind("SO_REUSEPORT 0.0.0.0 again", "0.0.0.0", 20000, EADDRINUSE);
}

/// The group mate met first decides, unless SO_REUSEADDR differs between
/// the two; a plain socket met first decides as well. Each row: the order of
/// the two holders, the SO_REUSEADDR of the mate and of the new socket, and
/// the answer.
#[test]
fn linux_udp_bind_group_mate_decides_first() {
    let rows: [(&str, bool, bool, bool, i32); 5] = [
        ("mate newest, no SO_REUSEADDR", true, false, false, OK),
        (
            "mate newest, SO_REUSEADDR on the new socket",
            true,
            false,
            true,
            EADDRINUSE,
        ),
        (
            "mate newest, SO_REUSEADDR on the mate",
            true,
            true,
            false,
            EADDRINUSE,
        ),
        ("plain socket newest", false, false, false, EADDRINUSE),
        (
            "plain socket newest, SO_REUSEADDR on the new socket",
            false,
            false,
            true,
            EADDRINUSE,
        ),
    ];
    for (step, mate_newest, mate_ra, new_ra, want) in rows {
        let Some(scene) = Scene::with(Protocol::Udp, (40000, 40001)) else {
            return;
        };
        // Both holders bind with SO_REUSEADDR so that they coexist; then the
        // plain one drops it and the mate takes the row's value.
        let plain = scene.socket_with(false, 0, true, false);
        let mate = scene.socket_with(false, 0, true, true);
        if mate_newest {
            plain.bind(step, "0.0.0.0", 20000, OK);
            mate.bind(step, "127.0.0.2", 20000, OK);
        } else {
            mate.bind(step, "127.0.0.2", 20000, OK);
            plain.bind(step, "0.0.0.0", 20000, OK);
        }
        plain.set_reuse_addr(false);
        mate.set_reuse_addr(mate_ra);
        let new = scene.socket_with(false, 0, new_ra, true);
        new.bind(step, "127.0.0.2", 20000, want);
    }
}

/// UDP `connect()` binds a port before it looks at the peer, and keeps it
/// when the peer is then refused.
#[test]
fn linux_udp_connect_binds_first() {
    let Some(scene) = Scene::with(Protocol::Udp, (40000, 40000)) else {
        return;
    };
    let only = scene.socket(true, 0);
    only.set_v6only(true);
    only.connect(
        "a V6ONLY socket to a v4-mapped peer",
        at("[::ffff:127.0.0.1]:30000"),
        ENETUNREACH,
    );
    assert_eq!(only.local("after the failure"), Some(at("[::]:40000")));
}

/// A UDP socket whose port bind() chose gives it back on
/// `connect(AF_UNSPEC)` but keeps an explicit address; a bind() that then
/// finds its port taken resets that address to the wildcard.
#[test]
fn linux_udp_disconnect_and_failed_bind() {
    let Some(scene) = Scene::with(Protocol::Udp, (40000, 40000)) else {
        return;
    };
    let s = scene.socket(true, 0);
    s.bind("bind(::ffff:0.0.0.0:0)", "::ffff:0.0.0.0", 0, OK);
    s.disconnect("connect(AF_UNSPEC) on a bound socket", OK);
    assert_eq!(s.local("after the disconnect"), None, "the port went back");
    let holder = scene.socket(false, 0);
    holder.bind("127.0.0.1:20000", "127.0.0.1", 20000, OK);
    s.bind(
        "the kept address, a taken port",
        "::ffff:127.0.0.1",
        20000,
        EADDRINUSE,
    );
    // The address is `::` again: an IPv6 peer is reachable.
    s.connect("connect to ::1", at("[::1]:30000"), OK);
    assert_eq!(s.local("after connect"), Some(at("[::1]:40000")));
}

/// The classes of randomly chosen ports with the default range 32768-60999,
/// compared as set membership (the ports themselves are random): bind(0)
/// takes odd ports while there are any, SO_REUSEADDR sockets search the
/// lower half (below 32768 + 14116) first, connect() takes even ports.
#[test]
fn linux_ephemeral_port_classes() {
    let Some(scene) = Scene::new((32768, 60999)) else {
        return;
    };
    let lower_half = 32768..46884;
    let mut held = Vec::new();
    for i in 0..40 {
        let reuse_addr = i % 2 == 1;
        let s = scene.socket_with(false, 0, reuse_addr, false);
        s.bind("bind(127.0.0.1:0)", "127.0.0.1", 0, OK);
        let kernel = linux_kernel::local_addr(&s.kernel).expect("bound").port();
        let table = s.table.local_addr().expect("bound").port();
        for (world, port) in [("kernel", kernel), ("table", table)] {
            assert_eq!(port % 2, 1, "{world}: bind(0) gave the even port {port}");
            if reuse_addr {
                assert!(
                    lower_half.contains(&port),
                    "{world}: {port} is not in the lower half"
                );
            }
        }
        held.push(s);
    }
    let (server, to) = listener(&scene, false, 0, ("127.0.0.1", 20000), (false, false));
    for _ in 0..20 {
        let c = scene.socket(false, 0);
        let from = c.connect("connect", to, OK).expect("connected");
        let kernel = linux_kernel::local_addr(&c.kernel).expect("bound").port();
        for (world, port) in [("kernel", kernel), ("table", from.port())] {
            assert_eq!(port % 2, 0, "{world}: connect() gave the odd port {port}");
        }
        held.push(server.accept(to, from));
        held.push(c);
    }
}

/// `__udp_disconnect` gives back a port that bind() chose but keeps the
/// address bind() named (SOCK_BINDADDR_LOCK), and with it the V6ONLY that a
/// specific IPv6 address forced (`__inet6_bind` sets `sk_ipv6only`, nothing
/// clears it). The next connect() autobinds on that address
/// (`inet_dgram_connect` -> `inet_autobind`) and uses it as the source, even
/// when the peer is then refused.
#[test]
fn linux_udp_disconnect_keeps_the_named_address() {
    const EAFNOSUPPORT: i32 = libc::EAFNOSUPPORT;
    let Some(scene) = Scene::with(Protocol::Udp, (40000, 40000)) else {
        return;
    };
    // AF_INET: the kept address is the source, not the route's 127.0.0.1.
    let v4 = scene.socket(false, 0);
    v4.bind("bind(127.0.0.2:0)", "127.0.0.2", 0, OK);
    v4.disconnect("connect(AF_UNSPEC)", OK);
    assert_eq!(v4.local("after the disconnect"), None, "the port went back");
    v4.connect("connect(127.0.0.1)", at("127.0.0.1:30000"), OK);
    assert_eq!(v4.local("after connect"), Some(at("127.0.0.2:40000")));
    v4.disconnect("connect(AF_UNSPEC) again", OK);
    // A refused peer (a sockaddr_in6 on AF_INET) after the autobind.
    v4.connect(
        "connect(sockaddr_in6) on AF_INET",
        at("[::ffff:127.0.0.1]:30000"),
        EAFNOSUPPORT,
    );
    assert_eq!(v4.local("after the refusal"), Some(at("127.0.0.2:40000")));
    drop(v4);
    // AF_INET6 on ::1: still V6ONLY after the disconnect, so an IPv4 peer is
    // refused (`__ip6_datagram_connect`), from the kept address.
    let v6 = scene.socket(true, 0);
    v6.bind("bind([::1]:0)", "::1", 0, OK);
    v6.disconnect("connect(AF_UNSPEC)", OK);
    assert_eq!(v6.local("after the disconnect"), None, "the port went back");
    v6.connect(
        "connect(sockaddr_in 127.0.0.1) on a formerly ::1 socket",
        at("127.0.0.1:30000"),
        EAFNOSUPPORT,
    );
    assert_eq!(v6.local("after the refusal"), Some(at("[::1]:40000")));
    v6.disconnect("connect(AF_UNSPEC) again", OK);
    v6.connect("connect([::1])", at("[::1]:30000"), OK);
    assert_eq!(v6.local("after connect"), Some(at("[::1]:40000")));
}

/// The stage of the bucket-history tests: a service on `127.0.0.1:20000`,
/// and a listener holding 40001 by `bind()` (of the range 40000-40001), so
/// that an unbound `connect()` can only take 40000. The service stays open
/// as long as the stage.
struct TwoPorts {
    scene: Scene,
    service: SocketAddr,
    holder: Pair,
    _service: Pair,
}

impl TwoPorts {
    fn new() -> Option<Self> {
        let scene = Scene::new((40000, 40001))?;
        let (service_pair, service) =
            listener(&scene, false, 0, ("127.0.0.1", 20000), (false, false));
        let (holder, _) = listener(&scene, false, 0, ("0.0.0.0", 40001), (false, false));
        Some(Self {
            scene,
            service,
            holder,
            _service: service_pair,
        })
    }

    /// An SO_REUSEADDR socket connected to `to` (a port of the holder), and
    /// the holder's side of it.
    fn connected(&self, step: &str, to: &str) -> (Pair, Pair, SocketAddr) {
        let socket = self.scene.socket_with(false, 0, true, false);
        let from = socket.connect(step, at(to), OK).expect("connected");
        let peer = self.holder.accept(at(to), from);
        (socket, peer, from)
    }

    /// An unbound connect() to the service: `want`, and the port it took.
    fn connect_to_service(&self, step: &str, want: i32) -> Option<SocketAddr> {
        self.scene
            .socket(false, 0)
            .connect(step, self.service, want)
    }
}

/// An unbound connect() passes over a port that a bind() holds, and keeps
/// doing so after that socket has connected, until an owner leaves while
/// every socket on the port sits in a bucket (address and port) that an
/// unbound connect() made: here the bound socket connected into such a
/// bucket, so when the connection that made it closes, the port is a
/// connect-only port again (`inet_bind_bucket_destroy`).
#[test]
fn linux_connect_takes_a_port_whose_binder_joined_a_connect_bucket() {
    let Some(stage) = TwoPorts::new() else {
        return;
    };
    let (first, first_peer, from) = stage.connected("connect() takes 40000", "127.0.0.1:40001");
    assert_eq!(from, at("127.0.0.1:40000"));
    let bound = stage.scene.socket_with(false, 0, true, false);
    bound.bind("bind(0.0.0.0:40000) beside it", "0.0.0.0", 40000, OK);
    let moved = bound
        .connect("the bound socket connects", at("127.0.0.2:40001"), OK)
        .expect("connected");
    assert_eq!(moved, at("127.0.0.1:40000"), "into the connect() bucket");
    let _bound_peer = stage.holder.accept(at("127.0.0.2:40001"), moved);
    stage.connect_to_service(
        "while no owner has left, bind() still holds the port",
        EADDRNOTAVAIL,
    );
    let _time_wait = first.close_first();
    first_peer.close();
    stage.scene.await_time_wait(40000);
    let local = stage.connect_to_service("once an owner has left, the port is connect-only", OK);
    assert_eq!(local, Some(at("127.0.0.1:40000")));
}

/// The same, but the bound socket connects to an address of its own: its
/// new bucket is not a connect() one (`inet_bhash2_update_saddr`), and an
/// owner leaving changes nothing.
#[test]
fn linux_connect_skips_a_port_whose_binder_made_its_own_bucket() {
    let Some(stage) = TwoPorts::new() else {
        return;
    };
    let bound = stage.scene.socket_with(false, 0, true, false);
    bound.bind("bind(0.0.0.0:40000)", "0.0.0.0", 40000, OK);
    let moved = bound
        .connect("the bound socket connects", at("127.0.0.2:40001"), OK)
        .expect("connected");
    let _bound_peer = stage.holder.accept(at("127.0.0.2:40001"), moved);
    let passer = stage.scene.socket_with(false, 0, true, false);
    passer.bind("bind(127.0.0.5:40000)", "127.0.0.5", 40000, OK);
    passer.close();
    stage.connect_to_service("bind() still holds the port", EADDRNOTAVAIL);
}

/// A bind() into the bucket that an unbound connect() made holds the port
/// while the binder is there; when it leaves and only sockets whose port came
/// from connect() remain, the bucket and the port are connect-only again
/// (`inet_bind2_bucket_destroy`, then `inet_bind_bucket_destroy`).
#[test]
fn linux_connect_after_a_binder_left_a_connect_bucket() {
    let Some(stage) = TwoPorts::new() else {
        return;
    };
    let (_first, _first_peer, _) = stage.connected("connect() takes 40000", "127.0.0.1:40001");
    let binder = stage.scene.socket_with(false, 0, true, false);
    binder.bind(
        "bind(127.0.0.1:40000) into that bucket",
        "127.0.0.1",
        40000,
        OK,
    );
    stage.connect_to_service("the binder holds the port", EADDRNOTAVAIL);
    binder.close();
    let local = stage.connect_to_service("the binder left: connect-only again", OK);
    assert_eq!(local, Some(at("127.0.0.1:40000")));
}
