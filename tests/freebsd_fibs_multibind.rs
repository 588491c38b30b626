//! FreeBSD tests/sys/netinet/fibs_multibind_test.c, with
//! `net.inet.tcp.bind_all_fibs` / `net.inet.udp.bind_all_fibs` at 0
//! (`require_fibs_multibind` skips every case otherwise): `Device(n)` is
//! FIB `n` under `Policy::FreeBsd`, and a packet "from FIB n" is a lookup
//! on `Device(n)`.
//!
//! Each case runs for both families (`MAKETEST_TCP` / `MAKETEST_UDP` make a
//! `PF_INET` and a `PF_INET6` variant). The kernel test binds the first
//! socket to the wildcard with port 0 and reuses that address (`ss`, after
//! `getsockname`) for the others; it sends to `ss` (IPv6: with
//! `in6addr_loopback` put in), here `127.0.0.1` or `::1`.
//!
//! - `multibind_different_user`: "This should succeed if done as the same
//!   user as the first socket, and should fail otherwise"
//!   (`ATF_REQUIRE_ERRNO(EADDRINUSE, error == -1)` after `seteuid`).
//! - `per_fib_listening_socket`: a listener takes connections from its FIB
//!   only ("... but not from a different FIB": ECONNREFUSED); a second
//!   listener on the same address in FIB 1 binds without any reuse option;
//!   "if we close one of the listening sockets, we're back to only being
//!   able to connect from the same FIB".
//! - `per_fib_dgram_socket`: "If we send a byte from cs2, it should not be
//!   received by ss1" (EWOULDBLOCK), then ss2 binds the same address in
//!   FIB 1 and each socket gets its FIB's datagrams.
//! - `multibind_lbgroup_stream` / `_dgram`: two SO_REUSEPORT_LB sockets in
//!   FIB 0 and one in FIB 1 on one address: 100 flows from FIB 0 go to s[0]
//!   or s[1], 100 from FIB 1 to s[2].
//! - `no_setfib_after_bind`: `SO_SETFIB` to another FIB after `bind()` is
//!   EISCONN; "It's ok to set the FIB number to its current value".
//! - `per_fib_raw_socket` is not here: the table holds TCP or UDP PCBs, no
//!   raw ones.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use common::Sock;
use pcbhash::{Builder, Cred, Device, Error, Family, Pcb, PcbTable, Protocol};

/// The unprivileged user of `multibind_different_user`.
const USER: Cred = Cred {
    uid: 1001,
    privileged: false,
};

/// One step of a case, with the kernel's expected result.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// `mksock(domain, type, fib)`, as `cred`, with SO_REUSEPORT_LB if `lb`.
    Socket {
        id: u32,
        fib: u32,
        cred: Cred,
        lb: bool,
    },
    /// `bind()`: the first one to the wildcard with port 0, the later ones
    /// to the address the first one got.
    Bind { id: u32, expect: Result<(), Error> },
    /// `listen()`.
    Listen(u32),
    /// `close()`.
    Close(u32),
    /// `setsockopt(SO_SETFIB)`.
    SetFib {
        id: u32,
        fib: u32,
        expect: Result<(), Error>,
    },
    /// `count` flows (a `connect()` and its `accept()`, or a datagram) from
    /// FIB `fib`, each from a port of its own: every one is taken by one of
    /// `to`; with `to` empty, by nobody (ECONNREFUSED, or EWOULDBLOCK on
    /// the receiver).
    Send {
        fib: u32,
        count: u16,
        to: &'static [u32],
    },
}

use Step::{Bind, Close, Listen, Send, SetFib, Socket};

fn socket(id: u32, fib: u32) -> Step {
    Socket {
        id,
        fib,
        cred: Cred::ROOT,
        lb: false,
    }
}

fn lb_socket(id: u32, fib: u32) -> Step {
    Socket {
        id,
        fib,
        cred: Cred::ROOT,
        lb: true,
    }
}

fn bind(id: u32) -> Step {
    Bind { id, expect: Ok(()) }
}

/// `multibind_different_user`.
const DIFFERENT_USER: &[Step] = &[
    Socket {
        id: 0,
        fib: 0,
        cred: Cred::ROOT,
        lb: false,
    },
    Bind {
        id: 0,
        expect: Ok(()),
    },
    Socket {
        id: 1,
        fib: 1,
        cred: Cred::ROOT,
        lb: false,
    },
    Bind {
        id: 1,
        expect: Ok(()),
    },
    Close(1),
    Socket {
        id: 2,
        fib: 1,
        cred: USER,
        lb: false,
    },
    Bind {
        id: 2,
        expect: Err(Error::AddrInUse),
    },
    Close(2),
];

fn per_fib_listening_socket() -> Vec<Step> {
    vec![
        socket(1, 0),
        socket(2, 1),
        bind(1),
        Listen(1),
        Send {
            fib: 0,
            count: 1,
            to: &[1],
        },
        Send {
            fib: 1,
            count: 1,
            to: &[],
        },
        bind(2),
        Listen(2),
        Send {
            fib: 0,
            count: 10,
            to: &[1],
        },
        Send {
            fib: 1,
            count: 10,
            to: &[2],
        },
        Close(1),
        Send {
            fib: 0,
            count: 1,
            to: &[],
        },
        Send {
            fib: 1,
            count: 1,
            to: &[2],
        },
        Close(2),
    ]
}

fn per_fib_dgram_socket() -> Vec<Step> {
    vec![
        socket(1, 0),
        socket(2, 1),
        bind(1),
        Send {
            fib: 0,
            count: 1,
            to: &[1],
        },
        Send {
            fib: 1,
            count: 1,
            to: &[],
        },
        bind(2),
        Send {
            fib: 0,
            count: 1,
            to: &[1],
        },
        Send {
            fib: 1,
            count: 1,
            to: &[2],
        },
        Close(1),
        Close(2),
    ]
}

fn multibind_lbgroup(listen: bool) -> Vec<Step> {
    let mut steps = vec![lb_socket(0, 0), lb_socket(1, 0), lb_socket(2, 1)];
    for id in 0..3 {
        steps.push(bind(id));
        if listen {
            steps.push(Listen(id));
        }
    }
    steps.extend([
        Send {
            fib: 0,
            count: 100,
            to: &[0, 1],
        },
        Send {
            fib: 1,
            count: 100,
            to: &[2],
        },
    ]);
    steps
}

fn no_setfib_after_bind() -> Vec<Step> {
    vec![
        socket(0, 0),
        bind(0),
        SetFib {
            id: 0,
            fib: 1,
            expect: Err(Error::AlreadyConnected),
        },
        SetFib {
            id: 0,
            fib: 0,
            expect: Ok(()),
        },
        Close(0),
    ]
}

/// A table with `bind_all_fibs` as given.
fn table(protocol: Protocol, bind_all_fibs: bool) -> PcbTable<Sock> {
    Builder::default()
        .protocol(protocol)
        .bind_all_fibs(bind_all_fibs)
        .seed(0xf1b5)
        .build()
}

/// Runs `steps` for `family`; returns how many flows each socket took.
fn run(
    name: &str,
    protocol: Protocol,
    family: Family,
    bind_all_fibs: bool,
    steps: &[Step],
) -> Vec<(u32, usize)> {
    let table = table(protocol, bind_all_fibs);
    let (wildcard, loopback): (IpAddr, IpAddr) = match family {
        Family::Inet => (Ipv4Addr::UNSPECIFIED.into(), Ipv4Addr::LOCALHOST.into()),
        Family::Inet6 => (Ipv6Addr::UNSPECIFIED.into(), Ipv6Addr::LOCALHOST.into()),
    };
    let mut sockets: Vec<(u32, Pcb<Sock>)> = Vec::new();
    let mut service: Option<SocketAddr> = None;
    let mut taken: Vec<(u32, usize)> = Vec::new();
    let mut next_port = 20000u16;
    for (index, step) in steps.iter().enumerate() {
        let at = format!("{name} {family:?} {protocol:?}, step {index} {step:?}");
        let pcb = |id: u32| {
            &sockets
                .iter()
                .find(|(mine, _)| *mine == id)
                .unwrap_or_else(|| panic!("{at}: no socket {id}"))
                .1
        };
        match *step {
            Socket { id, fib, cred, lb } => {
                let pcb = table.attach(family, cred, Sock(id));
                pcb.bind_device(Some(Device(fib))).expect(&at);
                pcb.set_reuse_port_lb(lb).expect(&at);
                sockets.push((id, pcb));
            }
            Bind { id, expect } => {
                let local = service.unwrap_or(SocketAddr::new(wildcard, 0));
                let got = pcb(id).bind(local);
                assert_eq!(got.map(|_| ()), expect, "{at}");
                service = service.or(got.ok());
            }
            Listen(id) => pcb(id).listen().expect(&at),
            Close(id) => {
                let place = sockets.iter().position(|(mine, _)| *mine == id).unwrap();
                sockets.remove(place).1.close();
            }
            SetFib { id, fib, expect } => {
                assert_eq!(pcb(id).bind_device(Some(Device(fib))), expect, "{at}");
            }
            Send { fib, count, to } => {
                let local = SocketAddr::new(loopback, service.expect("bound").port());
                for _ in 0..count {
                    let peer = SocketAddr::new(loopback, next_port);
                    next_port += 1;
                    let guard = table.pin();
                    let receiver = table
                        .lookup_on(Device(fib), local, peer, &guard)
                        .and_then(|found| found.socket().map(|sock| sock.0));
                    match receiver {
                        None => assert!(to.is_empty(), "{at}: nobody took {peer}"),
                        Some(id) => {
                            assert!(to.contains(&id), "{at}: socket {id} took {peer}");
                            match taken.iter_mut().find(|(mine, _)| *mine == id) {
                                Some((_, count)) => *count += 1,
                                None => taken.push((id, 1)),
                            }
                            if protocol == Protocol::Tcp {
                                // accept(), then close() of both ends.
                                let conn = pcb(id).accept(local, peer, Sock(100)).expect(&at);
                                assert_eq!(conn.device(), pcb(id).device(), "{at}: FIB");
                                conn.close();
                            }
                        }
                    }
                }
            }
        }
    }
    taken
}

/// Every case for both families, as `MAKETEST_TCP` / `MAKETEST_UDP` make
/// them; returns the flows taken, per case and family.
fn run_both(name: &str, protocol: Protocol, steps: &[Step]) -> Vec<Vec<(u32, usize)>> {
    [Family::Inet, Family::Inet6]
        .into_iter()
        .map(|family| run(name, protocol, family, false, steps))
        .collect()
}

#[test]
fn freebsd_fibs_multibind_different_user() {
    for protocol in [Protocol::Tcp, Protocol::Udp] {
        run_both("multibind_different_user", protocol, DIFFERENT_USER);
    }
}

#[test]
fn freebsd_fibs_per_fib_listening_socket() {
    run_both(
        "per_fib_listening_socket",
        Protocol::Tcp,
        &per_fib_listening_socket(),
    );
}

#[test]
fn freebsd_fibs_per_fib_dgram_socket() {
    run_both(
        "per_fib_dgram_socket",
        Protocol::Udp,
        &per_fib_dgram_socket(),
    );
}

#[test]
fn freebsd_fibs_multibind_lbgroup() {
    for (protocol, listen) in [(Protocol::Tcp, true), (Protocol::Udp, false)] {
        for taken in run_both("multibind_lbgroup", protocol, &multibind_lbgroup(listen)) {
            // The kernel test only asks that FIB 0's flows reach s[0] or
            // s[1]; that both of them take some shows the group holds both.
            let of = |id| taken.iter().find(|(mine, _)| *mine == id).map(|t| t.1);
            assert!(
                of(0).is_some() && of(1).is_some(),
                "{protocol:?}: {taken:?}"
            );
            assert_eq!(of(2), Some(100), "{protocol:?}: {taken:?}");
        }
    }
}

#[test]
fn freebsd_fibs_no_setfib_after_bind() {
    for protocol in [Protocol::Tcp, Protocol::Udp] {
        run_both("no_setfib_after_bind", protocol, &no_setfib_after_bind());
    }
}

/// The same steps with `bind_all_fibs` at 1, FreeBSD 15's default, where
/// the kernel test skips: binds and lookups pass `RT_ALL_FIBS`, so the
/// second socket of another FIB conflicts, a listener takes every FIB's
/// connections, and the FIB may change after `bind()` (no `INP_BOUNDFIB`).
#[test]
fn freebsd_fibs_all_fibs_by_default() {
    let steps = [
        socket(0, 0),
        bind(0),
        socket(1, 1),
        Bind {
            id: 1,
            expect: Err(Error::AddrInUse),
        },
        Close(1),
        Listen(0),
        Send {
            fib: 1,
            count: 1,
            to: &[0],
        },
        SetFib {
            id: 0,
            fib: 1,
            expect: Ok(()),
        },
        Send {
            fib: 0,
            count: 1,
            to: &[0],
        },
    ];
    for family in [Family::Inet, Family::Inet6] {
        run("all_fibs", Protocol::Tcp, family, true, &steps);
    }
    let default = PcbTable::<Sock>::builder().build();
    let pcb = default.attach(Family::Inet, Cred::ROOT, Sock(0));
    pcb.bind_device(Some(Device(1))).unwrap();
    pcb.bind("0.0.0.0:0".parse().unwrap()).unwrap();
    assert_eq!(
        pcb.bind_device(Some(Device(2))),
        Ok(()),
        "bind_all_fibs is on by default"
    );
}
