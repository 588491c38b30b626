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
