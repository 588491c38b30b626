//! TIME_WAIT, step by step, against the running kernel.
//!
//! Each test builds a connection on real sockets and on a `PcbTable` with
//! `Policy::Linux`, closes it so that one side enters TIME_WAIT (the kernel
//! side is awaited in `/proc/net/tcp*`; the table side calls `time_wait()`),
//! then checks the calls that meet the TIME_WAIT socket. Every result is
//! compared with the value the kernel gave when this test was written, in
//! both worlds. Each test runs in its own network namespace (TIME_WAIT sockets
//! live there for a minute); without one, the test is skipped.

mod linux_kernel;

use linux_kernel::dual::{listener, Scene, OK};
use pcbhash::State;

const EADDRINUSE: i32 = libc::EADDRINUSE;
const EADDRNOTAVAIL: i32 = libc::EADDRNOTAVAIL;

/// `bind_timewait.c`, and SO_REUSEADDR on both sides lifting it.
#[test]
fn linux_time_wait_blocks_bind_unless_both_reuse_addr() {
    let Some(scene) = Scene::new((40000, 40001)) else {
        return;
    };
    let cases = [
        ("127.0.0.1", false),
        ("0.0.0.0", false),
        ("127.0.0.1", true),
    ];
    for (port, (ip, reuse_addr)) in (20000..).zip(cases) {
        let (server, to) = listener(&scene, false, 0, (ip, port), (reuse_addr, false));
        let client = scene.socket(false, 0);
        let from = client.connect("client connect", to, OK).expect("connected");
        let child = server.accept(to, from);
        let tw = child.close_first();
        client.close();
        scene.await_time_wait(to.port());
        server.close();
        assert_eq!(tw.state(), State::TimeWait);
        let plain = scene.socket(false, 0);
        plain.bind("a plain bind over TIME_WAIT", ip, to.port(), EADDRINUSE);
        let reusing = scene.socket_with(false, 0, true, false);
        let want = if reuse_addr { OK } else { EADDRINUSE };
        reusing.bind("an SO_REUSEADDR bind over TIME_WAIT", ip, to.port(), want);
    }
}

/// SO_REUSEPORT shares with a TIME_WAIT socket of another owner: the owner
/// test of `inet_bind_conflict` skips TIME_WAIT sockets.
#[test]
fn linux_time_wait_reuseport_ignores_the_owner() {
    let Some(scene) = Scene::new((40000, 40001)) else {
        return;
    };
    let (server, to) = listener(&scene, false, 1000, ("127.0.0.1", 20000), (false, true));
    let client = scene.socket(false, 0);
    let from = client.connect("client connect", to, OK).expect("connected");
    let child = server.accept(to, from);
    server.close();
    // While the connection (owner 1000) is established, owner 0 may not share.
    let early = scene.socket_with(false, 0, false, true);
    early.bind(
        "SO_REUSEPORT beside an established socket of another owner",
        "127.0.0.1",
        to.port(),
        EADDRINUSE,
    );
    let _tw = child.close_first();
    client.close();
    scene.await_time_wait(to.port());
    let late = scene.socket_with(false, 0, false, true);
    late.bind(
        "SO_REUSEPORT over a TIME_WAIT socket of another owner",
        "127.0.0.1",
        to.port(),
        OK,
    );
}

/// An IPv6 TIME_WAIT socket keeps IPV6_V6ONLY (`tcp_time_wait` copies it):
/// a V6ONLY one (bound to `::1`) leaves the IPv4 wildcard free, one without
/// V6ONLY (an unbound client) still blocks it.
#[test]
fn linux_time_wait_keeps_v6only() {
    let Some(scene) = Scene::new((40000, 40001)) else {
        return;
    };
    let (server, to) = listener(&scene, true, 0, ("::1", 20000), (false, false));
    let client = scene.socket(true, 0);
    let from = client.connect("client connect", to, OK).expect("connected");
    let child = server.accept(to, from);
    // The server side (V6ONLY, bound to ::1) goes to TIME_WAIT.
    let _tw = child.close_first();
    client.close();
    scene.await_time_wait(to.port());
    server.close();
    let v4 = scene.socket(false, 0);
    v4.bind(
        "0.0.0.0 beside a V6ONLY TIME_WAIT socket",
        "0.0.0.0",
        to.port(),
        OK,
    );

    // Now the client side (no V6ONLY) closes first.
    let (server, to) = listener(&scene, true, 0, ("::1", 20001), (false, false));
    let client = scene.socket(true, 0);
    let from = client.connect("client connect", to, OK).expect("connected");
    let child = server.accept(to, from);
    let _tw = client.close_first();
    child.close();
    scene.await_time_wait(from.port());
    let v4 = scene.socket(false, 0);
    v4.bind(
        "0.0.0.0 beside a TIME_WAIT socket without V6ONLY",
        "0.0.0.0",
        from.port(),
        EADDRINUSE,
    );
    let mapped = scene.socket(true, 0);
    mapped.bind(
        "::ffff:0.0.0.0 beside it",
        "::ffff:0.0.0.0",
        from.port(),
        OK,
    );
}

/// A connect() from an explicitly bound port takes over the TIME_WAIT twin
/// of its 4-tuple (`tcp_twsk_unique` with timestamps); the port was shared
/// with the TIME_WAIT socket through SO_REUSEADDR.
#[test]
fn linux_time_wait_twin_gives_way_to_a_bound_connect() {
    let Some(scene) = Scene::new((40000, 40001)) else {
        return;
    };
    let (server, to) = listener(&scene, false, 0, ("127.0.0.1", 20000), (false, false));
    let client = scene.socket_with(false, 0, true, false);
    client.bind("client bind", "127.0.0.1", 0, OK);
    let from = client.connect("client connect", to, OK).expect("connected");
    let child = server.accept(to, from);
    let tw = client.close_first();
    child.close();
    scene.await_time_wait(from.port());

    let plain = scene.socket(false, 0);
    plain.bind(
        "a plain bind over the client's TIME_WAIT",
        "127.0.0.1",
        from.port(),
        EADDRINUSE,
    );
    let again = scene.socket_with(false, 0, true, false);
    again.bind(
        "the same address and port, SO_REUSEADDR",
        "127.0.0.1",
        from.port(),
        OK,
    );
    again.connect("the same 4-tuple again", to, OK);
    assert_eq!(
        tw.state(),
        State::Dropped,
        "the table's TIME_WAIT twin is replaced"
    );
    let _child = server.accept(to, from);
}

/// An unbound connect() never takes over a TIME_WAIT twin (tcp_tw_reuse=0),
/// but the port stays usable toward other peers: a TIME_WAIT socket of a
/// connect()-bound port keeps the port's connect-only state.
#[test]
fn linux_time_wait_twin_blocks_an_unbound_connect() {
    let Some(scene) = Scene::new((40000, 40000)) else {
        return;
    };
    let (server, to) = listener(&scene, false, 0, ("127.0.0.1", 20000), (false, false));
    let (other, to_other) = listener(&scene, false, 0, ("127.0.0.2", 20000), (false, false));
    let client = scene.socket(false, 0);
    let from = client.connect("client connect", to, OK).expect("connected");
    assert_eq!(from.port(), 40000);
    let child = server.accept(to, from);
    let _tw = client.close_first();
    child.close();
    scene.await_time_wait(40000);

    let second = scene.socket(false, 0);
    second.connect("the only port, toward the same peer", to, EADDRNOTAVAIL);
    let third = scene.socket(false, 0);
    let at = third
        .connect("the only port, toward another peer", to_other, OK)
        .expect("connected");
    assert_eq!(at.port(), 40000);
    let _child = other.accept(to_other, at);
}

/// A connection on a port that `listen()` or `bind()` took, closed so that
/// the server side ends in TIME_WAIT (or, with `abort`, reset), and then the
/// listener closed: what an unbound connect() finds on the one-port range.
fn after_server_side_time_wait(scene: &Scene, listening: &str, abort: bool) -> i32 {
    let server = scene.socket(false, 0);
    if listening == "bind" {
        server.bind("server bind", "127.0.0.1", 40000, OK);
    }
    server.listen("server listen", OK);
    let to = server.local("server").expect("bound");
    assert_eq!(to.port(), 40000);
    let to = std::net::SocketAddr::new("127.0.0.1".parse().expect("ip"), to.port());
    let client = scene.socket(false, 0);
    client.bind("client bind", "127.0.0.1", 20000, OK);
    let from = client.connect("client connect", to, OK).expect("connected");
    let child = server.accept(to, from);
    let _tw = if abort {
        linux_kernel::close_now(child.kernel);
        drop(child.table);
        linux_kernel::close_now(client.kernel);
        drop(client.table);
        None
    } else {
        let tw = child.close_first();
        client.close();
        scene.await_time_wait(40000);
        Some(tw)
    };
    server.close();
    let (_other, to_other) = listener(scene, false, 0, ("127.0.0.2", 20001), (false, false));
    let late = scene.socket(false, 0);
    let k = linux_kernel::errno(&linux_kernel::connect(&late.kernel, to_other));
    let t = linux_kernel::table_errno(&late.table.connect(to_other));
    assert_eq!(
        k, t,
        "{listening}, abort {abort}: the kernel and the table differ"
    );
    k
}

/// A TIME_WAIT socket stays an owner of its port's bind bucket as the
/// socket it was (`tw_connect_bind`): an accepted connection's TIME_WAIT
/// keeps a port that `listen()` autobound, or `bind()` named, held by
/// bind(), so `__inet_hash_connect` passes over it even after the listener
/// closed. Reset instead of TIME_WAIT, the port is free again.
#[test]
fn linux_time_wait_keeps_a_bind_made_port_from_connect() {
    for listening in ["autobind", "bind"] {
        for abort in [false, true] {
            let Some(scene) = Scene::new((40000, 40000)) else {
                return;
            };
            let got = after_server_side_time_wait(&scene, listening, abort);
            let want = if abort { OK } else { EADDRNOTAVAIL };
            assert_eq!(got, want, "{listening}, abort {abort}");
        }
    }
}

/// The client side: a TIME_WAIT of a connection whose port `bind()` chose
/// keeps the port from an unbound connect() toward any peer, as the server
/// side's does; `bind()` to port 0 finds no port either (EADDRINUSE, the
/// Linux bind exhaustion error), and an explicit bind with SO_REUSEADDR on
/// both sides then connects to a new peer from that port. UDP has no
/// TIME_WAIT: a UDP port comes back at close.
#[test]
fn linux_time_wait_of_a_bound_client() {
    let Some(scene) = Scene::new((40000, 40000)) else {
        return;
    };
    let (server, to) = listener(&scene, false, 0, ("127.0.0.1", 20000), (false, false));
    let (other, to_other) = listener(&scene, false, 0, ("127.0.0.2", 20001), (false, false));
    let client = scene.socket_with(false, 0, true, false);
    client.bind("client bind(0)", "127.0.0.1", 0, OK);
    let from = client.connect("client connect", to, OK).expect("connected");
    assert_eq!(from.port(), 40000);
    let child = server.accept(to, from);
    let _tw = client.close_first();
    child.close();
    scene.await_time_wait(40000);

    let unbound = scene.socket(false, 0);
    unbound.connect("an unbound connect() elsewhere", to_other, EADDRNOTAVAIL);
    let any = scene.socket(false, 0);
    any.bind("bind(0)", "127.0.0.1", 0, libc::EADDRINUSE);
    let again = scene.socket_with(false, 0, true, false);
    again.bind("SO_REUSEADDR beside it", "127.0.0.1", 40000, OK);
    let at = again
        .connect("a bound connect() elsewhere", to_other, OK)
        .expect("connected");
    assert_eq!(at, from);
    let _child = other.accept(to_other, at);

    let Some(scene) = Scene::with(pcbhash::Protocol::Udp, (40000, 40000)) else {
        return;
    };
    let udp = scene.socket(false, 0);
    udp.bind("UDP bind(0)", "127.0.0.1", 0, OK);
    udp.connect("UDP connect", to, OK);
    udp.close();
    let next = scene.socket(false, 0);
    next.connect("UDP: the port is back at close", to_other, OK);
}
