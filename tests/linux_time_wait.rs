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

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use linux_kernel::{errno, errno_name, table_errno, Netns};
use pcbhash::{Cred, Family, Pcb, PcbTable, Policy, Protocol, State};
use socket2::Socket;

const OK: i32 = 0;
const EADDRINUSE: i32 = libc::EADDRINUSE;
const EADDRNOTAVAIL: i32 = libc::EADDRNOTAVAIL;

/// A socket in both worlds.
struct Pair {
    kernel: Socket,
    table: Pcb<()>,
    uid: u32,
}

/// One scenario's namespace and table.
struct Scene {
    ns: Netns,
    table: PcbTable<()>,
}

impl Scene {
    fn new(range: (u16, u16)) -> Option<Scene> {
        let ns = match Netns::enter() {
            Ok(ns) => ns,
            Err(reason) => {
                eprintln!("skipped: {reason}");
                return None;
            }
        };
        ns.set_port_range(range.0, range.1).expect("port range");
        let table = PcbTable::<()>::builder()
            .policy(Policy::Linux)
            .protocol(Protocol::Tcp)
            .ephemeral_ports(range.0..=range.1)
            .seed(11)
            .build();
        Some(Scene { ns, table })
    }

    fn socket(&self, v6: bool, uid: u32) -> Pair {
        let family = if v6 { Family::Inet6 } else { Family::Inet };
        Pair {
            kernel: linux_kernel::socket_as(uid, v6, false).expect("socket"),
            table: self.table.attach(family, Cred::user(uid), Arc::new(())),
            uid,
        }
    }

    /// A socket with SO_REUSEADDR / SO_REUSEPORT as asked.
    fn socket_with(&self, v6: bool, uid: u32, reuse_addr: bool, reuse_port: bool) -> Pair {
        let pair = self.socket(v6, uid);
        pair.kernel
            .set_reuse_address(reuse_addr)
            .expect("SO_REUSEADDR");
        pair.kernel
            .set_reuse_port(reuse_port)
            .expect("SO_REUSEPORT");
        pair.table.set_reuse_addr(reuse_addr).expect("SO_REUSEADDR");
        pair.table.set_reuse_port(reuse_port).expect("SO_REUSEPORT");
        pair
    }

    /// Waits until the kernel has a TIME_WAIT socket on `port`.
    fn await_time_wait(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.ns.tcp_sockets_in_state("06", port) == 0 {
            assert!(
                Instant::now() < deadline,
                "no TIME_WAIT socket appeared on port {port}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Checks that the kernel and the table both gave `want`.
fn expect(step: &str, kernel: i32, table: i32, want: i32) {
    assert!(
        kernel == want && table == want,
        "{step}: expected {}, the kernel gave {}, the table {}",
        errno_name(want),
        errno_name(kernel),
        errno_name(table)
    );
}

impl Pair {
    fn bind(&self, step: &str, to: &str, port: u16, want: i32) {
        let at = SocketAddr::new(to.parse().expect("address"), port);
        let k = errno(&self.kernel.bind(&at.into()));
        let t = table_errno(&self.table.bind(at));
        expect(step, k, t, want);
    }

    fn listen(&self, step: &str, want: i32) {
        let k = errno(&self.kernel.listen(16));
        let t = table_errno(&self.table.listen());
        expect(step, k, t, want);
    }

    fn connect(&self, step: &str, to: SocketAddr, want: i32) -> Option<SocketAddr> {
        let k = errno(&linux_kernel::connect(&self.kernel, to));
        let t = self.table.connect(to);
        expect(step, k, table_errno(&t), want);
        t.ok()
    }

    /// The server side of the connection from `client` (at `from`) to `to`.
    fn accept(&self, to: SocketAddr, from: SocketAddr) -> Pair {
        let mut kernel = None;
        for _ in 0..500 {
            if let Some((socket, _)) = linux_kernel::try_accept(&self.kernel, self.uid) {
                kernel = Some(socket);
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let table = self
            .table
            .accept(to, from, Arc::new(()))
            .expect("table accept");
        Pair {
            kernel: kernel.expect("the kernel has the connection"),
            table,
            uid: self.uid,
        }
    }

    /// Closes first (the active close): this side ends in TIME_WAIT once the
    /// other side closes too.
    fn close_first(self) -> Pcb<()> {
        drop(self.kernel);
        self.table.time_wait().expect("TIME_WAIT");
        self.table
    }

    /// Closes second (the passive close).
    fn close(self) {
        drop(self.kernel);
        drop(self.table);
    }
}

/// A listener bound to `ip` and `port` with the given options; returns it
/// and the address to connect to. (Servers use fixed ports, and the
/// ephemeral range has one or two ports, so that every port the kernel
/// picks is determined: connect() takes the even one first, bind(0) the odd
/// one.)
fn listener(
    scene: &Scene,
    v6: bool,
    uid: u32,
    (ip, port): (&str, u16),
    reuse: (bool, bool),
) -> (Pair, SocketAddr) {
    let server = scene.socket_with(v6, uid, reuse.0, reuse.1);
    server.bind("server bind", ip, port, OK);
    server.listen("server listen", OK);
    let to_ip = if ip == "0.0.0.0" { "127.0.0.1" } else { ip };
    (server, SocketAddr::new(to_ip.parse().expect("ip"), port))
}

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
