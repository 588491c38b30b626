//! Client-side port control checked step by step on the running kernel and
//! on a `PcbTable` with `Policy::Linux`: `IP_BIND_ADDRESS_NO_PORT`, the
//! per-socket `IP_LOCAL_PORT_RANGE`, and `tcp_tw_reuse`. Every step must
//! give the same errno, and the same port where the kernel's choice is
//! determined (a range of one port, or a per-socket range of one). Each test
//! runs in its own network namespace; without one, it is skipped.

mod linux_kernel;

use std::net::SocketAddr;

use linux_kernel::dual::{expect, listener, Pair, Scene, OK};
use pcbhash::policy::TwReuse;
use pcbhash::{PcbTable, Policy, Protocol, State};

const EADDRINUSE: i32 = libc::EADDRINUSE;
const EADDRNOTAVAIL: i32 = libc::EADDRNOTAVAIL;

/// `IP_BIND_ADDRESS_NO_PORT` (`linux/in.h`).
const IP_BIND_ADDRESS_NO_PORT: libc::c_int = 24;

fn at(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

/// `IP_LOCAL_PORT_RANGE` (`linux/in.h`).
const IP_LOCAL_PORT_RANGE: libc::c_int = 51;

/// `setsockopt(IPPROTO_IP, name, value)` on a kernel socket: its errno.
fn ip_option(pair: &Pair, name: libc::c_int, value: u32) -> i32 {
    linux_kernel::errno(&linux_kernel::set_ip_option(&pair.kernel, name, value))
}

/// `IP_BIND_ADDRESS_NO_PORT` in both worlds.
fn no_port(pair: &Pair) {
    assert_eq!(ip_option(pair, IP_BIND_ADDRESS_NO_PORT, 1), OK);
    pair.table
        .set_bind_address_no_port(true)
        .expect("IP_BIND_ADDRESS_NO_PORT");
}

/// `bind()` with the option on: both worlds record `to` with port 0 and hold
/// no port.
fn bind_address(pair: &Pair, step: &str, to: &str) {
    let address = at(to);
    let kernel = pair.kernel.bind(&address.into());
    let table = pair.table.bind(address);
    assert!(kernel.is_ok(), "{step}: the kernel refused: {kernel:?}");
    assert_eq!(table, Ok(address), "{step}: the table");
    let name = linux_kernel::local_addr(&pair.kernel);
    assert_eq!(name, Some(address), "{step}: getsockname");
    assert_eq!(pair.table.local_addr(), None, "{step}: no port held");
}

/// `connect()` in both worlds, which must take `local`.
fn connects_from(pair: &Pair, step: &str, to: &str, local: &str) {
    let from = pair.connect(step, at(to), OK).expect("connected");
    assert_eq!(from, at(local), "{step}: the table's local address");
    assert_eq!(pair.local(step), Some(at(local)), "{step}");
}

/// The selftest `tcp_port_share.c`, `can_reuse_port_after_bind_and_close`:
/// a port that a connect() of a no-port socket took can be bound on another
/// address, the bucket is then bind-owned and refuses the next no-port
/// connect(), and once the binder closes the port serves connect() again.
#[test]
fn linux_no_port_connect_shares_a_port_until_a_bind_owns_it() {
    let Some(scene) = Scene::new((40000, 40000)) else {
        return;
    };
    let (_server, to) = listener(&scene, false, 0, ("127.0.0.1", 30000), (true, false));
    let first = scene.socket(false, 0);
    no_port(&first);
    bind_address(&first, "first: bind(127.1.1.1:0)", "127.1.1.1:0");
    connects_from(&first, "first: connect", &to.to_string(), "127.1.1.1:40000");

    let binder = scene.socket_with(false, 0, true, false);
    binder.bind(
        "bind 127.3.3.3:40000 over the connection",
        "127.3.3.3",
        40000,
        OK,
    );

    let second = scene.socket(false, 0);
    no_port(&second);
    bind_address(&second, "second: bind(127.2.2.2:0)", "127.2.2.2:0");
    second.connect("second: the bucket is bind-owned", to, EADDRNOTAVAIL);
    binder.close();
    connects_from(
        &second,
        "second: again, after the binder closed",
        &to.to_string(),
        "127.2.2.2:40000",
    );
}

/// Many no-port sockets on one source address share its only port toward
/// different peers; toward a peer it already reaches, the 4-tuple is taken.
#[test]
fn linux_no_port_sockets_share_one_port_toward_different_peers() {
    let Some(scene) = Scene::new((40000, 40000)) else {
        return;
    };
    let servers: Vec<_> = (0..3)
        .map(|i| listener(&scene, false, 0, ("127.0.0.1", 30000 + i), (false, false)))
        .collect();
    let mut clients = Vec::new();
    for (i, (_, to)) in servers.iter().enumerate() {
        let client = scene.socket(false, 1000);
        no_port(&client);
        bind_address(&client, &format!("client {i}: bind"), "127.0.0.2:0");
        connects_from(
            &client,
            &format!("client {i}: connect"),
            &to.to_string(),
            "127.0.0.2:40000",
        );
        clients.push(client);
    }
    let again = scene.socket(false, 1000);
    no_port(&again);
    bind_address(&again, "a fourth: bind", "127.0.0.2:0");
    again.connect(
        "a fourth, toward the first peer",
        servers[0].1,
        EADDRNOTAVAIL,
    );

    // Without the option, bind(127.0.0.2:0) needs a port of its own, and the
    // only one serves connections.
    let plain = scene.socket(false, 1000);
    plain.bind(
        "bind(127.0.0.2:0) without the option",
        "127.0.0.2",
        0,
        EADDRINUSE,
    );
}

/// While it holds no port, a no-port socket conflicts with nothing and may
/// bind again: to another address, or to a port.
#[test]
fn linux_no_port_binds_again_and_holds_nothing() {
    let Some(scene) = Scene::new((40000, 40001)) else {
        return;
    };
    let pair = scene.socket(false, 0);
    no_port(&pair);
    bind_address(&pair, "bind(127.0.0.1:0)", "127.0.0.1:0");
    bind_address(&pair, "again, to 127.0.0.2:0", "127.0.0.2:0");
    let other = scene.socket(false, 0);
    other.bind(
        "another socket takes 127.0.0.2:20000",
        "127.0.0.2",
        20000,
        OK,
    );
    pair.bind(
        "then the no-port socket: the port is taken",
        "127.0.0.2",
        20000,
        EADDRINUSE,
    );
    pair.bind("with a port of its own", "127.0.0.2", 20001, OK);
    assert_eq!(pair.local("bound"), Some(at("127.0.0.2:20001")));
    pair.bind("bound: no third bind", "127.0.0.2", 20002, libc::EINVAL);

    // A v6 socket takes the option too; the wildcard records nothing.
    let v6 = scene.socket(true, 0);
    no_port(&v6);
    bind_address(&v6, "AF_INET6: bind([::1]:0)", "[::1]:0");
    let wild = scene.socket(false, 0);
    no_port(&wild);
    bind_address(&wild, "bind(0.0.0.0:0)", "0.0.0.0:0");
}

/// `listen()` and a UDP `connect()` bind the port as `bind()` would have, on
/// the recorded address; the option set after `bind()` changes nothing.
#[test]
fn linux_no_port_listen_and_udp_connect_bind_on_the_recorded_address() {
    let Some(scene) = Scene::new((40000, 40001)) else {
        return;
    };
    let server = scene.socket(false, 0);
    no_port(&server);
    bind_address(&server, "bind(127.0.0.3:0)", "127.0.0.3:0");
    server.listen("listen", OK);
    // bind(0) starts from the odd port of the range.
    assert_eq!(server.local("listening"), Some(at("127.0.0.3:40001")));

    let late = scene.socket(false, 0);
    late.bind("bind(127.0.0.4:0) without the option", "127.0.0.4", 0, OK);
    no_port(&late);
    assert_eq!(
        late.local("the option after bind"),
        Some(at("127.0.0.4:40001"))
    );
    drop(scene);

    let Some(scene) = Scene::with(Protocol::Udp, (40000, 40000)) else {
        return;
    };
    let client = scene.socket(false, 0);
    no_port(&client);
    bind_address(&client, "UDP: bind(127.0.0.5:0)", "127.0.0.5:0");
    connects_from(&client, "UDP: connect", "127.0.0.1:7", "127.0.0.5:40000");
    let second = scene.socket(false, 0);
    no_port(&second);
    bind_address(&second, "UDP: a second bind(127.0.0.5:0)", "127.0.0.5:0");
    second.connect(
        "UDP: no port left for the autobind",
        at("127.0.0.1:8"),
        libc::EAGAIN,
    );
}

/// `IP_LOCAL_PORT_RANGE` in both worlds, `first..=last` (an end of 0: the
/// namespace's), which must give `want`.
fn port_range(pair: &Pair, step: &str, (first, last): (u16, u16), want: i32) {
    let kernel = ip_option(
        pair,
        IP_LOCAL_PORT_RANGE,
        u32::from(first) | u32::from(last) << 16,
    );
    let table = linux_kernel::table_errno(&pair.table.set_local_port_range(Some(first..=last)));
    expect(step, kernel, table, want);
}

/// `bind(127.0.0.1:0)` in both worlds, which must succeed; the two ports.
fn bind_any_port(pair: &Pair, step: &str) -> (u16, u16) {
    pair.bind(step, "127.0.0.1", 0, OK);
    let kernel = linux_kernel::local_addr(&pair.kernel)
        .expect("bound")
        .port();
    let table = pair.table.local_addr().expect("bound").port();
    (kernel, table)
}

/// The selftest `ip_local_port_range.c`: the option's checks, an end that
/// lies outside the namespace's range left to the namespace, an end of 0
/// meaning "the namespace's", and the ports a range of one gives.
#[test]
fn linux_port_range_narrows_the_namespace_range() {
    let Some(scene) = Scene::new((40000, 40009)) else {
        return;
    };
    let backwards = scene.socket(false, 0);
    port_range(&backwards, "backwards", (40222, 40111), libc::EINVAL);
    for (own, port) in [
        ((40005, 40005), 40005),
        ((0, 40000), 40000),
        ((40009, 0), 40009),
    ] {
        let pair = scene.socket(false, 0);
        port_range(&pair, &format!("{own:?}"), own, OK);
        let step = format!("bind(0) with {own:?}");
        assert_eq!(bind_any_port(&pair, &step), (port, port), "{step}");
    }
    // Both ends outside: the namespace's range, where bind(0) takes an odd
    // offset first in both worlds.
    let outside = scene.socket(false, 0);
    port_range(&outside, "below the range", (30000, 39999), OK);
    let (kernel, table) = bind_any_port(&outside, "bind(0) below the range");
    for port in [kernel, table] {
        assert!(
            (40000..=40009).contains(&port) && port % 2 == 1,
            "{kernel} / {table}"
        );
    }
    // Set after bind: accepted, and the port stays.
    port_range(&outside, "after bind", (40002, 40002), OK);
    let kept = (
        linux_kernel::local_addr(&outside.kernel).map(|a| a.port()),
        outside.table.local_addr().map(|a| a.port()),
    );
    assert_eq!(kept, (Some(kernel), Some(table)), "the option after bind");
}

/// `selftest exhaust_8_port_range`, on a range of two: bind(0) takes the odd
/// port, then the even one, then none is left; connect() with its own range
/// tries every port (no parity passes) and runs out with EADDRNOTAVAIL.
#[test]
fn linux_port_range_is_exhausted_port_by_port() {
    let Some(scene) = Scene::new((40000, 40009)) else {
        return;
    };
    let mut held = Vec::new();
    for port in [40003, 40002] {
        let pair = scene.socket(false, 0);
        port_range(&pair, "two ports", (40002, 40003), OK);
        assert_eq!(bind_any_port(&pair, "bind(0)"), (port, port));
        held.push(pair);
    }
    let third = scene.socket(false, 0);
    port_range(&third, "two ports, a third socket", (40002, 40003), OK);
    third.bind("no port left", "127.0.0.1", 0, EADDRINUSE);

    let (_server, to) = listener(&scene, false, 0, ("127.0.0.1", 30000), (false, false));
    let mut clients = Vec::new();
    let mut ports = (Vec::new(), Vec::new());
    for n in 0..2 {
        let client = scene.socket(false, 0);
        port_range(&client, "connect within two ports", (40004, 40005), OK);
        let from = client
            .connect(&format!("client {n}"), to, OK)
            .expect("connected");
        let kernel = linux_kernel::local_addr(&client.kernel).expect("local");
        ports.0.push(kernel.port());
        ports.1.push(from.port());
        clients.push(client);
    }
    ports.0.sort_unstable();
    ports.1.sort_unstable();
    let both = (ports.0.as_slice(), ports.1.as_slice());
    let want: &[u16] = &[40004, 40005];
    assert_eq!(
        both,
        (want, want),
        "both ports in both worlds, whatever their parity"
    );
    let last = scene.socket(false, 0);
    port_range(&last, "a third client", (40004, 40005), OK);
    last.connect("no port left for connect()", to, EADDRNOTAVAIL);
}

/// UDP takes the socket's range too.
#[test]
fn linux_port_range_for_udp() {
    let Some(scene) = Scene::with(Protocol::Udp, (40000, 40009)) else {
        return;
    };
    let first = scene.socket(false, 0);
    port_range(&first, "UDP, one port", (40006, 40006), OK);
    assert_eq!(bind_any_port(&first, "UDP bind(0)"), (40006, 40006));
    let second = scene.socket(false, 0);
    port_range(&second, "UDP, the same port", (40006, 40006), OK);
    second.bind("UDP: taken", "127.0.0.1", 0, EADDRINUSE);
}

/// `tcp_tw_reuse` (`tcp_twsk_unique`): an unbound connect() takes over the
/// 4-tuple of a TIME_WAIT twin once timestamps allow it and the delay
/// (`tcp_tw_reuse_delay`, here 1 ms) has passed, if the sysctl allows it;
/// with 0 the only port stays taken. All traffic here is loopback, so 2
/// acts as 1.
#[test]
fn linux_tw_reuse_takes_over_a_reusable_twin() {
    for (mode, sysctl) in [
        (TwReuse::Off, "0"),
        (TwReuse::On, "1"),
        (TwReuse::Loopback, "2"),
    ] {
        let Some(mut scene) = Scene::new((40000, 40000)) else {
            return;
        };
        scene.table = PcbTable::<()>::builder()
            .policy(Policy::Linux)
            .ephemeral_ports(40000..=40000)
            .tcp_tw_reuse(mode)
            .seed(11)
            .build();
        scene
            .ns
            .sysctl("net/ipv4/tcp_tw_reuse", sysctl)
            .expect("tcp_tw_reuse");
        scene
            .ns
            .sysctl("net/ipv4/tcp_tw_reuse_delay", "1")
            .expect("tcp_tw_reuse_delay");
        let (server, to) = listener(&scene, false, 0, ("127.0.0.1", 30000), (true, false));
        let client = scene.socket(false, 0);
        connects_from(
            &client,
            "first client",
            "127.0.0.1:30000",
            "127.0.0.1:40000",
        );
        let child = server.accept(at("127.0.0.1:30000"), at("127.0.0.1:40000"));
        let twin = client.close_first();
        child.close();
        scene.await_time_wait(40000);
        // Past the delay; the connection used timestamps (pinned on).
        std::thread::sleep(std::time::Duration::from_millis(20));
        twin.allow_tw_reuse().expect("in TIME_WAIT");

        let again = scene.socket(false, 0);
        let step = format!("{mode:?}: a new client toward the same server");
        if mode == TwReuse::Off {
            again.connect(&step, to, EADDRNOTAVAIL);
            assert_eq!(twin.state(), State::TimeWait, "{step}");
            assert_eq!(scene.ns.tcp_sockets_in_state("06", 40000), 1, "{step}");
        } else {
            connects_from(&again, &step, "127.0.0.1:30000", "127.0.0.1:40000");
            assert_eq!(twin.state(), State::Dropped, "{step}: the twin gave way");
            assert_eq!(scene.ns.tcp_sockets_in_state("06", 40000), 0, "{step}");
        }
    }
}

/// An accepted socket inherits IP_BIND_ADDRESS_NO_PORT from its listener
/// (`sk_clone_lock` copies the inet flags): once disconnected, its
/// `bind()` to port 0 records the address only.
#[test]
fn linux_no_port_is_inherited_by_accept() {
    let Some(scene) = Scene::new((40000, 40001)) else {
        return;
    };
    let server = scene.socket(false, 0);
    no_port(&server);
    server.bind("bind the listener", "127.0.0.1", 30000, OK);
    server.listen("listen", OK);
    let client = scene.socket(false, 0);
    connects_from(&client, "connect", "127.0.0.1:30000", "127.0.0.1:40000");
    let child = server.accept(at("127.0.0.1:30000"), at("127.0.0.1:40000"));
    child.disconnect("the child disconnects", OK);
    bind_address(&child, "the child binds port 0", "127.0.0.2:0");
}

/// An AF_INET6 socket may set IPV6_V6ONLY after an address-only bind (it
/// holds no port yet). Bound to a v4-mapped multicast address, it then
/// gets ENETUNREACH from a `connect()` to a v4-mapped peer: `tcp_v6_connect`
/// and `__ip6_datagram_connect` refuse the mapped peer to a V6ONLY socket
/// before the IPv4 connect, whose route lookup would refuse the multicast
/// source with EINVAL (what the same socket without V6ONLY gets). Found by
/// the fuzz model, whose order this is.
#[test]
fn linux_no_port_v6only_refuses_a_mapped_peer_before_the_source() {
    for protocol in [Protocol::Tcp, Protocol::Udp] {
        for (v6only, want) in [(true, libc::ENETUNREACH), (false, libc::EINVAL)] {
            let Some(scene) = Scene::with(protocol, (40000, 40001)) else {
                return;
            };
            let pcb = scene.socket(true, 0);
            no_port(&pcb);
            bind_address(&pcb, "bind ::ffff:224.0.0.1", "[::ffff:224.0.0.1]:0");
            if v6only {
                pcb.set_v6only(true);
            }
            let step = format!("{protocol:?}, V6ONLY {v6only}: connect to ::ffff:127.0.0.1");
            pcb.connect(&step, at("[::ffff:127.0.0.1]:9"), want);
        }
    }
}
