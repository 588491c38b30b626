//! The Linux kernel's own selftests (`tools/testing/selftests/net/`), with
//! their expected results written as data, run on a `PcbTable` with
//! `Policy::Linux`.
//!
//! - `bind_wildcard.c`: 44 address pairs x {plain, SO_REUSEADDR,
//!   SO_REUSEPORT}, eight binds each: 132 rows, 1056 expected results. The
//!   rows also run against the live kernel when a network namespace can be
//!   created, which checks the transcription.
//! - `reuseaddr_conflict.c`, `bind_timewait.c`, `reuseport_addr_any.c`,
//!   `reuseport_dualstack.c` and `tcp_port_share.c` (the 6.18 fix: a port is
//!   usable by connect() again once the explicit bind that blocked it is
//!   closed).

mod linux_kernel;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use pcbhash::{Cred, Error, Family, Pcb, PcbTable, Policy, Protocol, State};

fn table(protocol: Protocol) -> PcbTable<()> {
    PcbTable::<()>::builder()
        .policy(Policy::Linux)
        .protocol(protocol)
        .seed(7)
        .build()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

fn family_of(ip: &str) -> Family {
    if ip.contains(':') {
        Family::Inet6
    } else {
        Family::Inet
    }
}

// ---------------------------------------------------------------------------
// bind_wildcard.c

/// One side of a variant: the address and whether IPV6_V6ONLY is set.
#[derive(Clone, Copy, Debug)]
struct Side {
    ip: &'static str,
    v6only: bool,
}

const fn s(ip: &'static str) -> Side {
    Side { ip, v6only: false }
}

const fn only(ip: &'static str) -> Side {
    Side { ip, v6only: true }
}

/// A variant: sockets 0 and 1, then the expected result of each of the eight
/// binds, `0` for success and `E` for EADDRINUSE, without options and with
/// SO_REUSEADDR or SO_REUSEPORT on sockets 0 and 1 (the kernel expects the
/// same for both options).
struct Variant {
    name: &'static str,
    sockets: [Side; 2],
    plain: &'static str,
    reuse: &'static str,
}

/// Sockets 2 to 7 of every variant, without options.
const FOLLOWERS: [&str; 6] = [
    "0.0.0.0",
    "127.0.0.1",
    "::",
    "::1",
    "::ffff:0.0.0.0",
    "::ffff:127.0.0.1",
];

const ANY4: &str = "0.0.0.0";
const LO4: &str = "127.0.0.1";
const ANY6: &str = "::";
const LO6: &str = "::1";
const MAPPED_ANY: &str = "::ffff:0.0.0.0";
const MAPPED_LO: &str = "::ffff:127.0.0.1";

#[rustfmt::skip]
const BIND_WILDCARD: [Variant; 44] = [
    // (IPv4, IPv4)
    Variant { name: "v4_any_v4_local", sockets: [s(ANY4), s(LO4)], plain: "0EEEE0EE", reuse: "00EEE0EE" },
    Variant { name: "v4_local_v4_any", sockets: [s(LO4), s(ANY4)], plain: "0EEEE0EE", reuse: "00EEE0EE" },
    // (IPv4, IPv6)
    Variant { name: "v4_any_v6_any", sockets: [s(ANY4), s(ANY6)], plain: "0EEEE0EE", reuse: "00EEEEEE" },
    Variant { name: "v4_any_v6_any_only", sockets: [s(ANY4), only(ANY6)], plain: "00EEEEEE", reuse: "00EEEEEE" },
    Variant { name: "v4_any_v6_local", sockets: [s(ANY4), s(LO6)], plain: "00EEEEEE", reuse: "00EEEEEE" },
    Variant { name: "v4_any_v6_v4mapped_any", sockets: [s(ANY4), s(MAPPED_ANY)], plain: "0EEEE0EE", reuse: "00EEE0EE" },
    Variant { name: "v4_any_v6_v4mapped_local", sockets: [s(ANY4), s(MAPPED_LO)], plain: "0EEEE0EE", reuse: "00EEE0EE" },
    Variant { name: "v4_local_v6_any", sockets: [s(LO4), s(ANY6)], plain: "0EEEE0EE", reuse: "00EEEEEE" },
    Variant { name: "v4_local_v6_any_only", sockets: [s(LO4), only(ANY6)], plain: "00EEEEEE", reuse: "00EEEEEE" },
    Variant { name: "v4_local_v6_local", sockets: [s(LO4), s(LO6)], plain: "00EEEEEE", reuse: "00EEEEEE" },
    Variant { name: "v4_local_v6_v4mapped_any", sockets: [s(LO4), s(MAPPED_ANY)], plain: "0EEEE0EE", reuse: "00EEE0EE" },
    Variant { name: "v4_local_v6_v4mapped_local", sockets: [s(LO4), s(MAPPED_LO)], plain: "0EEEE0EE", reuse: "00EEE0EE" },
    // (IPv6, IPv4)
    Variant { name: "v6_any_v4_any", sockets: [s(ANY6), s(ANY4)], plain: "0EEEEEEE", reuse: "00EEEEEE" },
    Variant { name: "v6_any_only_v4_any", sockets: [only(ANY6), s(ANY4)], plain: "00EEEEEE", reuse: "00EEEEEE" },
    Variant { name: "v6_any_v4_local", sockets: [s(ANY6), s(LO4)], plain: "0EEEEEEE", reuse: "00EEEEEE" },
    Variant { name: "v6_any_only_v4_local", sockets: [only(ANY6), s(LO4)], plain: "00EEEEEE", reuse: "00EEEEEE" },
    Variant { name: "v6_local_v4_any", sockets: [s(LO6), s(ANY4)], plain: "00EEEEEE", reuse: "00EEEEEE" },
    Variant { name: "v6_local_v4_local", sockets: [s(LO6), s(LO4)], plain: "00EEEEEE", reuse: "00EEEEEE" },
    Variant { name: "v6_v4mapped_any_v4_any", sockets: [s(MAPPED_ANY), s(ANY4)], plain: "0EEEE0EE", reuse: "00EEE0EE" },
    Variant { name: "v6_v4mapped_any_v4_local", sockets: [s(MAPPED_ANY), s(LO4)], plain: "0EEEE0EE", reuse: "00EEE0EE" },
    Variant { name: "v6_v4mapped_local_v4_any", sockets: [s(MAPPED_LO), s(ANY4)], plain: "0EEEE0EE", reuse: "00EEE0EE" },
    Variant { name: "v6_v4mapped_local_v4_local", sockets: [s(MAPPED_LO), s(LO4)], plain: "0EEEE0EE", reuse: "00EEE0EE" },
    // (IPv6, IPv6)
    Variant { name: "v6_any_v6_any", sockets: [s(ANY6), s(ANY6)], plain: "0EEEEEEE", reuse: "00EEEEEE" },
    Variant { name: "v6_any_only_v6_any", sockets: [only(ANY6), s(ANY6)], plain: "0E0EEEEE", reuse: "00EEEEEE" },
    Variant { name: "v6_any_v6_any_only", sockets: [s(ANY6), only(ANY6)], plain: "0EEEEEEE", reuse: "00EEEEEE" },
    Variant { name: "v6_any_only_v6_any_only", sockets: [only(ANY6), only(ANY6)], plain: "0E0EEEEE", reuse: "000EEEEE" },
    Variant { name: "v6_any_v6_local", sockets: [s(ANY6), s(LO6)], plain: "0EEEEEEE", reuse: "00EEEEEE" },
    Variant { name: "v6_any_only_v6_local", sockets: [only(ANY6), s(LO6)], plain: "0E0EEEEE", reuse: "000EEEEE" },
    Variant { name: "v6_any_v6_v4mapped_any", sockets: [s(ANY6), s(MAPPED_ANY)], plain: "0EEEEEEE", reuse: "00EEEEEE" },
    Variant { name: "v6_any_only_v6_v4mapped_any", sockets: [only(ANY6), s(MAPPED_ANY)], plain: "00EEEEEE", reuse: "00EEEEEE" },
    Variant { name: "v6_any_v6_v4mapped_local", sockets: [s(ANY6), s(MAPPED_LO)], plain: "0EEEEEEE", reuse: "00EEEEEE" },
    Variant { name: "v6_any_only_v6_v4mapped_local", sockets: [only(ANY6), s(MAPPED_LO)], plain: "00EEEEEE", reuse: "00EEEEEE" },
    Variant { name: "v6_local_v6_any", sockets: [s(LO6), s(ANY6)], plain: "0E0EEEEE", reuse: "00EEEEEE" },
    Variant { name: "v6_local_v6_any_only", sockets: [s(LO6), only(ANY6)], plain: "0E0EEEEE", reuse: "000EEEEE" },
    Variant { name: "v6_local_v6_v4mapped_any", sockets: [s(LO6), s(MAPPED_ANY)], plain: "00EEEEEE", reuse: "00EEEEEE" },
    Variant { name: "v6_local_v6_v4mapped_local", sockets: [s(LO6), s(MAPPED_LO)], plain: "00EEEEEE", reuse: "00EEEEEE" },
    Variant { name: "v6_v4mapped_any_v6_any", sockets: [s(MAPPED_ANY), s(ANY6)], plain: "0EEEE0EE", reuse: "00EEEEEE" },
    Variant { name: "v6_v4mapped_any_v6_any_only", sockets: [s(MAPPED_ANY), only(ANY6)], plain: "00EEEEEE", reuse: "00EEEEEE" },
    Variant { name: "v6_v4mapped_any_v6_local", sockets: [s(MAPPED_ANY), s(LO6)], plain: "00EEEEEE", reuse: "00EEEEEE" },
    Variant { name: "v6_v4mapped_any_v6_v4mapped_local", sockets: [s(MAPPED_ANY), s(MAPPED_LO)], plain: "0EEEE0EE", reuse: "00EEE0EE" },
    Variant { name: "v6_v4mapped_loopback_v6_any", sockets: [s(MAPPED_LO), s(ANY6)], plain: "0EEEE0EE", reuse: "00EEEEEE" },
    Variant { name: "v6_v4mapped_loopback_v6_any_only", sockets: [s(MAPPED_LO), only(ANY6)], plain: "00EEEEEE", reuse: "00EEEEEE" },
    Variant { name: "v6_v4mapped_loopback_v6_local", sockets: [s(MAPPED_LO), s(LO6)], plain: "00EEEEEE", reuse: "00EEEEEE" },
    Variant { name: "v6_v4mapped_loopback_v6_v4mapped_any", sockets: [s(MAPPED_LO), s(MAPPED_ANY)], plain: "0EEEE0EE", reuse: "00EEE0EE" },
];

/// The options of a `bind_wildcard` test, set on sockets 0 and 1 only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reuse {
    Plain,
    Addr,
    Port,
}

/// The eight sockets of a row, in bind order.
fn row_sockets(variant: &Variant) -> Vec<Side> {
    let mut sockets = variant.sockets.to_vec();
    sockets.extend(FOLLOWERS.iter().map(|&ip| s(ip)));
    sockets
}

fn expected(variant: &Variant, reuse: Reuse) -> Vec<i32> {
    let codes = if reuse == Reuse::Plain {
        variant.plain
    } else {
        variant.reuse
    };
    codes
        .chars()
        .map(|c| if c == 'E' { libc::EADDRINUSE } else { 0 })
        .collect()
}

/// Runs one row on the table: socket 0 binds port 0, the others its port.
fn bind_wildcard_row_on_table(variant: &Variant, reuse: Reuse) -> Vec<i32> {
    let table = table(Protocol::Tcp);
    let mut port = 0;
    let mut held: Vec<Pcb<()>> = Vec::new();
    let mut got = Vec::new();
    for (i, side) in row_sockets(variant).into_iter().enumerate() {
        let pcb = table.attach(family_of(side.ip), Cred::ROOT, ());
        if i < 2 {
            if side.v6only {
                pcb.set_v6only(true).expect("IPV6_V6ONLY");
            }
            match reuse {
                Reuse::Plain => {}
                Reuse::Addr => pcb.set_reuse_addr(true).expect("SO_REUSEADDR"),
                Reuse::Port => pcb.set_reuse_port(true).expect("SO_REUSEPORT"),
            }
        }
        let ip: IpAddr = side.ip.parse().expect("address");
        let result = pcb.bind(SocketAddr::new(ip, port));
        if i == 0 {
            port = result.expect("socket 0 binds").port();
        }
        got.push(result.map_or_else(|e| e.errno(), |_| 0));
        held.push(pcb);
    }
    got
}

/// Runs one row on the kernel.
fn bind_wildcard_row_on_kernel(variant: &Variant, reuse: Reuse) -> Vec<i32> {
    let mut port = 0;
    let mut held = Vec::new();
    let mut got = Vec::new();
    for (i, side) in row_sockets(variant).into_iter().enumerate() {
        let socket = linux_kernel::socket_as(0, side.ip.contains(':'), false).expect("socket");
        if i < 2 {
            if side.v6only {
                socket.set_only_v6(true).expect("IPV6_V6ONLY");
            }
            match reuse {
                Reuse::Plain => {}
                Reuse::Addr => socket.set_reuse_address(true).expect("SO_REUSEADDR"),
                Reuse::Port => socket.set_reuse_port(true).expect("SO_REUSEPORT"),
            }
        }
        let ip: IpAddr = side.ip.parse().expect("address");
        let result = socket.bind(&SocketAddr::new(ip, port).into());
        if i == 0 {
            result.as_ref().expect("socket 0 binds");
            port = linux_kernel::local_addr(&socket).expect("bound").port();
        }
        got.push(linux_kernel::errno(&result));
        held.push(socket);
    }
    got
}

#[test]
fn linux_bind_wildcard() {
    let mut rows = 0;
    let mut failures = Vec::new();
    for variant in &BIND_WILDCARD {
        for reuse in [Reuse::Plain, Reuse::Addr, Reuse::Port] {
            rows += 1;
            let want = expected(variant, reuse);
            let got = bind_wildcard_row_on_table(variant, reuse);
            if got != want {
                failures.push(format!(
                    "{} {reuse:?}: expected {want:?}, table gave {got:?}",
                    variant.name
                ));
            }
        }
    }
    assert_eq!(rows, 132);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The transcription above, checked against the running kernel.
#[test]
fn linux_bind_wildcard_expectations_match_the_kernel() {
    let Some(_ns) = linux_kernel::Netns::enter_or_skip() else {
        return;
    };
    let mut failures = Vec::new();
    for variant in &BIND_WILDCARD {
        for reuse in [Reuse::Plain, Reuse::Addr, Reuse::Port] {
            let want = expected(variant, reuse);
            let got = bind_wildcard_row_on_kernel(variant, reuse);
            if got != want {
                failures.push(format!(
                    "{} {reuse:?}: expected {want:?}, the kernel gave {got:?}",
                    variant.name
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------
// reuseaddr_conflict.c

/// Every socket sets SO_REUSEADDR, IPv6 ones IPV6_V6ONLY; port 9999.
fn reuseaddr_socket(table: &PcbTable<()>, ip: &str) -> (Pcb<()>, Result<SocketAddr, Error>) {
    let pcb = table.attach(family_of(ip), Cred::ROOT, ());
    if ip.contains(':') {
        pcb.set_v6only(true).expect("IPV6_V6ONLY");
    }
    pcb.set_reuse_addr(true).expect("SO_REUSEADDR");
    let ip: IpAddr = ip.parse().expect("address");
    let bound = pcb.bind(SocketAddr::new(ip, 9999));
    (pcb, bound)
}

#[test]
fn linux_reuseaddr_conflict() {
    let table = table(Protocol::Tcp);
    // 127.0.0.1:9999 binds and listens.
    let (listener, bound) = reuseaddr_socket(&table, "127.0.0.1");
    bound.expect("127.0.0.1:9999");
    listener.listen().expect("listen");
    // 0.0.0.0:9999 overlaps a listener: refused, SO_REUSEADDR or not.
    let (_a, bound) = reuseaddr_socket(&table, "0.0.0.0");
    assert_eq!(bound, Err(Error::AddrInUse));
    // [::]:9999 V6ONLY does not overlap it.
    let (v6, bound) = reuseaddr_socket(&table, "::");
    bound.expect("[::]:9999 V6ONLY");
    let (_b, bound) = reuseaddr_socket(&table, "0.0.0.0");
    assert_eq!(bound, Err(Error::AddrInUse));
    // The IPv6 socket going away does not make the port any freer.
    drop(v6);
    let (_c, bound) = reuseaddr_socket(&table, "0.0.0.0");
    assert_eq!(bound, Err(Error::AddrInUse));
}

// ---------------------------------------------------------------------------
// bind_timewait.c

#[test]
fn linux_bind_timewait() {
    for server_ip in ["127.0.0.1", "0.0.0.0"] {
        let table = table(Protocol::Tcp);
        let server = table.attach(Family::Inet, Cred::ROOT, ());
        let local = server
            .bind(SocketAddr::new(server_ip.parse().expect("ip"), 0))
            .expect("server bind");
        server.listen().expect("listen");
        // The selftest connects to the server's own address; the kernel
        // takes 0.0.0.0 as the loopback address there.
        let to = SocketAddr::new("127.0.0.1".parse().expect("ip"), local.port());
        let client = table.attach(Family::Inet, Cred::ROOT, ());
        let from = client.connect(to).expect("connect");
        let child = server.accept(to, from, ()).expect("accept");
        // The child closes first: it is the one left in TIME_WAIT.
        child.time_wait().expect("TIME_WAIT");
        drop(client);
        drop(server);
        let fresh = table.attach(Family::Inet, Cred::ROOT, ());
        assert_eq!(fresh.bind(local), Err(Error::AddrInUse), "{server_ip}");
        assert_eq!(child.state(), State::TimeWait);
    }
}

// ---------------------------------------------------------------------------
// reuseport_addr_any.c

/// `build_rcv_fd`: `count` SO_REUSEPORT receivers on `ip` (wildcard if
/// `None`), port 8888, listening for TCP.
fn receivers(table: &PcbTable<()>, family: Family, ip: Option<&str>, count: usize) -> Vec<Pcb<()>> {
    let any = if family == Family::Inet {
        "0.0.0.0"
    } else {
        "::"
    };
    let ip: IpAddr = ip.unwrap_or(any).parse().expect("address");
    (0..count)
        .map(|_| {
            let pcb = table.attach(family, Cred::ROOT, ());
            pcb.set_reuse_port(true).expect("SO_REUSEPORT");
            pcb.bind(SocketAddr::new(ip, 8888)).expect("receiver bind");
            if table.protocol() == Protocol::Tcp {
                pcb.listen().expect("receiver listen");
            }
            pcb
        })
        .collect()
}

#[test]
fn linux_reuseport_addr_any() {
    // (protocol, family of the specific receiver, its address, the packet's
    // destination and source)
    let cases = [
        (
            Protocol::Udp,
            Family::Inet,
            "127.0.0.1",
            "127.0.0.1:8888",
            "127.0.0.1:40000",
        ),
        (
            Protocol::Udp,
            Family::Inet6,
            "::1",
            "[::1]:8888",
            "[::1]:40000",
        ),
        (
            Protocol::Udp,
            Family::Inet6,
            "::ffff:127.0.0.1",
            "127.0.0.1:8888",
            "127.0.0.1:40000",
        ),
        (
            Protocol::Tcp,
            Family::Inet,
            "127.0.0.1",
            "127.0.0.1:8888",
            "127.0.0.1:40000",
        ),
        (
            Protocol::Tcp,
            Family::Inet6,
            "::1",
            "[::1]:8888",
            "[::1]:40000",
        ),
        (
            Protocol::Tcp,
            Family::Inet6,
            "::ffff:127.0.0.1",
            "127.0.0.1:8888",
            "127.0.0.1:40000",
        ),
    ];
    for (protocol, family, specific, to, from) in cases {
        let table = table(protocol);
        let mut all = receivers(&table, Family::Inet, None, 2);
        all.extend(receivers(&table, Family::Inet6, None, 2));
        let chosen = receivers(&table, family, Some(specific), 1);
        all.extend(receivers(&table, Family::Inet, None, 2));
        all.extend(receivers(&table, Family::Inet6, None, 2));
        // Several flows: every one lands on the specific receiver.
        for sport in 0..16 {
            let from = SocketAddr::new(addr(from).ip(), addr(from).port() + sport);
            let guard = table.pin();
            let got = table.lookup(addr(to), from, &guard).expect("a receiver");
            assert!(
                got.is(&chosen[0]),
                "{protocol:?} {specific}: went to {got:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// reuseport_dualstack.c

#[test]
fn linux_reuseport_dualstack() {
    for protocol in [Protocol::Udp, Protocol::Tcp] {
        let count = if protocol == Protocol::Udp { 16 } else { 5 };
        for inet_first in [true, false] {
            let table = table(protocol);
            let (v4, v6) = if inet_first {
                let v4 = receivers(&table, Family::Inet, None, count);
                (v4, receivers(&table, Family::Inet6, None, count))
            } else {
                let v6 = receivers(&table, Family::Inet6, None, count);
                (receivers(&table, Family::Inet, None, count), v6)
            };
            for sport in 0..64 {
                let from = SocketAddr::new("127.0.0.1".parse().expect("ip"), 40000 + sport);
                let guard = table.pin();
                let got = table
                    .lookup(addr("127.0.0.1:8888"), from, &guard)
                    .expect("a receiver");
                assert!(
                    v4.iter().any(|p| got.is(p)) && !v6.iter().any(|p| got.is(p)),
                    "{protocol:?}, AF_INET first: {inet_first}: an IPv4 packet went to {got:?}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// tcp_port_share.c (ip_local_port_range = 40000 40000)

/// The stack's source-address choice, set before each connect: the selftest
/// binds each client to its source address with IP_BIND_ADDRESS_NO_PORT,
/// which leaves the port to connect().
struct Route(Arc<Mutex<IpAddr>>);

impl Route {
    fn table() -> (Route, PcbTable<()>) {
        let next: Arc<Mutex<IpAddr>> = Arc::new(Mutex::new("127.0.0.1".parse().expect("ip")));
        let choice = next.clone();
        let table = PcbTable::<()>::builder()
            .policy(Policy::Linux)
            .protocol(Protocol::Tcp)
            .ephemeral_ports(40000..=40000)
            .source_address(move |_| Some(*choice.lock().expect("route")))
            .seed(3)
            .build();
        (Route(next), table)
    }

    fn from(&self, ip: &str) {
        *self.0.lock().expect("route") = ip.parse().expect("ip");
    }
}

/// (family, dst_ip, src1_ip, src2_ip, bind_ip) of the two variants.
const PORT_SHARE: [(Family, &str, &str, &str, &str); 2] = [
    (
        Family::Inet,
        "127.0.0.1",
        "127.1.1.1",
        "127.2.2.2",
        "127.3.3.3",
    ),
    (
        Family::Inet6,
        "::1",
        "2001:db8::1",
        "2001:db8::2",
        "2001:db8::3",
    ),
];

#[test]
fn linux_tcp_port_share_can_reuse_port_after_bind_and_close() {
    for (family, dst, src1, src2, bind_ip) in PORT_SHARE {
        let (route, table) = Route::table();
        let to = SocketAddr::new(dst.parse().expect("ip"), 30000);
        let listener = table.attach(family, Cred::ROOT, ());
        listener.set_reuse_addr(true).expect("SO_REUSEADDR");
        listener.bind(to).expect("listener bind");
        listener.listen().expect("listen");

        route.from(src1);
        let c1 = table.attach(family, Cred::ROOT, ());
        assert_eq!(c1.connect(to).expect("c1 connect").port(), 40000);

        // An explicit bind on another address blocks the port for connect().
        let blocker = table.attach(family, Cred::ROOT, ());
        blocker.set_reuse_addr(true).expect("SO_REUSEADDR");
        blocker
            .bind(SocketAddr::new(bind_ip.parse().expect("ip"), 40000))
            .expect("bind_ip:40000");

        route.from(src2);
        let c2 = table.attach(family, Cred::ROOT, ());
        assert_eq!(c2.connect(to), Err(Error::AddrNotAvailable), "{family:?}");

        // Linux 6.18: closing the blocker makes the port usable again.
        drop(blocker);
        assert_eq!(
            c2.connect(to).expect("c2 connect").port(),
            40000,
            "{family:?}"
        );
    }
}

#[test]
fn linux_tcp_port_share_port_block_after_disconnect() {
    for (family, dst, src1, src2, bind_ip) in PORT_SHARE {
        let (route, table) = Route::table();
        let to = SocketAddr::new(dst.parse().expect("ip"), 30000);
        let listener = table.attach(family, Cred::ROOT, ());
        listener.set_reuse_addr(true).expect("SO_REUSEADDR");
        listener.bind(to).expect("listener bind");
        listener.listen().expect("listen");

        route.from(src1);
        let c1 = table.attach(family, Cred::ROOT, ());
        assert_eq!(c1.connect(to).expect("c1 connect").port(), 40000);
        // The selftest disconnects c1 (connect(AF_UNSPEC)) and binds it to
        // bind_ip:40000. The table has no TCP disconnect, so a new socket
        // takes c1's place: the port ends up held by an explicit bind,
        // which is what the test is about.
        drop(c1);
        let rebound = table.attach(family, Cred::ROOT, ());
        rebound.set_reuse_addr(true).expect("SO_REUSEADDR");
        let bound_at = SocketAddr::new(bind_ip.parse().expect("ip"), 40000);
        rebound.bind(bound_at).expect("bind_ip:40000");
        // Another bind and close on the same address updates the bucket.
        let other = table.attach(family, Cred::ROOT, ());
        other.set_reuse_addr(true).expect("SO_REUSEADDR");
        other.bind(bound_at).expect("second bind_ip:40000");
        drop(other);

        route.from(src2);
        let c2 = table.attach(family, Cred::ROOT, ());
        assert_eq!(c2.connect(to), Err(Error::AddrNotAvailable), "{family:?}");
    }
}
