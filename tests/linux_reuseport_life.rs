//! Linux reuseport groups over their whole life, and the calls around them
//! that are easy to get wrong: each scenario runs on the running kernel and
//! on a `PcbTable` with `Policy::Linux`, side by side, with the kernel's
//! answers (6.18) written as data. "Who receives" is measured by sending
//! real datagrams or SYNs from many source ports and asking the table the
//! same packets; a group shows as the set of its members that receive.
//! Each test runs in its own network namespace; without one, it is skipped.

mod linux_kernel;

use std::collections::BTreeSet;
use std::net::SocketAddr;

use linux_kernel::dual::{Pair, Scene, OK};
use linux_kernel::receive::{pin_cpu, same_cpu, table_receiver, tcp_receiver, udp_receiver};
use pcbhash::Protocol;

const EADDRINUSE: i32 = libc::EADDRINUSE;
const EINVAL: i32 = libc::EINVAL;
const ENETUNREACH: i32 = libc::ENETUNREACH;

/// Flows sent per measurement.
const FLOWS: u16 = 24;
const PORT: u16 = 20000;

fn at(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

/// A scene and the CPU its packets are received on.
struct Life {
    scene: Scene,
    cpu: usize,
}

impl Life {
    fn new(protocol: Protocol) -> Option<Life> {
        Life::with_range(protocol, (40000, 40001))
    }

    /// With the ephemeral range `range` (one port: the pick of an
    /// autobind is the same in both worlds).
    fn with_range(protocol: Protocol, range: (u16, u16)) -> Option<Life> {
        let scene = Scene::with(protocol, range)?;
        Some(Life {
            scene,
            cpu: pin_cpu(),
        })
    }

    fn udp(&self) -> bool {
        self.scene.table.protocol() == Protocol::Udp
    }

    /// A socket in both worlds with SO_REUSEADDR / SO_REUSEPORT as asked.
    fn socket(&self, v6: bool, reuse_addr: bool, reuse_port: bool) -> Pair {
        let pair = self.scene.socket_with(v6, 0, reuse_addr, reuse_port);
        same_cpu(&pair.kernel, self.cpu);
        pair
    }

    /// Binds (and for TCP listens) in both worlds.
    fn serve(&self, pair: &Pair, step: &str, ip: &str, want: i32) {
        pair.bind(step, ip, PORT, want);
        if want == OK && !self.udp() {
            pair.listen(step, OK);
        }
    }

    /// Which of `pairs` receive the flows from `from_ip` to `to`, in the
    /// kernel and in the table; both must be `want`.
    fn receivers(&self, step: &str, pairs: &[&Pair], to: &str, from_ip: &str, want: &[usize]) {
        let to = at(to);
        let kernels: Vec<_> = pairs.iter().map(|p| &p.kernel).collect();
        let pcbs: Vec<_> = pairs.iter().map(|p| &p.table).collect();
        let (mut kernel, mut table) = (BTreeSet::new(), BTreeSet::new());
        for flow in 0..FLOWS {
            let from = SocketAddr::new(from_ip.parse().expect("ip"), 50000 + flow);
            let got = if self.udp() {
                udp_receiver(&kernels, from, to)
            } else {
                tcp_receiver(&kernels, from, to)
            };
            kernel.extend(got);
            table.extend(table_receiver(&self.scene.table, &pcbs, from, to));
        }
        let want: BTreeSet<usize> = want.iter().copied().collect();
        assert!(
            kernel == want && table == want,
            "{step}: expected receivers {want:?}, the kernel gave {kernel:?}, the table {table:?}"
        );
    }
}

/// Clearing SO_REUSEPORT does not leave the group (`sk_setsockopt` only
/// sets `sk_reuseport`; `reuseport_select_sock` picks from `socks[]`): the
/// member keeps its share, and a later member joins all of them. Only a
/// socket met first in the list, with the option cleared, keeps every
/// packet itself (`inet_lookup_reuseport` tests the option).
#[test]
fn linux_clearing_so_reuseport_keeps_the_group() {
    for protocol in [Protocol::Udp, Protocol::Tcp] {
        for head_clears in [false, true] {
            let Some(life) = Life::new(protocol) else {
                return;
            };
            let case = format!("{protocol:?}, the newer member clears: {head_clears}");
            let a = life.socket(false, false, true);
            let b = life.socket(false, false, true);
            life.serve(&a, "A", "127.0.0.1", OK);
            life.serve(&b, "B", "127.0.0.1", OK);
            let (clearer, shares) = if head_clears {
                (&b, vec![1])
            } else {
                (&a, vec![0, 1])
            };
            clearer.set_reuse_port(false);
            life.receivers(
                &format!("{case}: after the clear"),
                &[&a, &b],
                "127.0.0.1:20000",
                "127.0.0.1",
                &shares,
            );
            let c = life.socket(false, false, true);
            // UDP: the newest socket decides C's bind, and B no longer
            // shares; TCP: the port's fast-path record lets C through.
            let refused = head_clears && protocol == Protocol::Udp;
            life.serve(&c, "C", "127.0.0.1", if refused { EADDRINUSE } else { OK });
            let all = if refused { shares } else { vec![0, 1, 2] };
            life.receivers(
                &format!("{case}: with C"),
                &[&a, &b, &c],
                "127.0.0.1:20000",
                "127.0.0.1",
                &all,
            );
        }
    }
}

/// A socket that sets SO_REUSEPORT after `bind()` (TCP: after `listen()`,
/// then listens again, which changes nothing) is in no group, but the next
/// member that binds (listens) finds it first and founds a group with it on
/// the spot (`reuseport_add_sock`).
#[test]
fn linux_so_reuseport_set_after_bind_is_pulled_into_a_group() {
    for protocol in [Protocol::Udp, Protocol::Tcp] {
        for (v6, ip, to) in [
            (false, "127.0.0.1", "127.0.0.1:20000"),
            (true, "::1", "[::1]:20000"),
        ] {
            let Some(life) = Life::new(protocol) else {
                return;
            };
            let a = life.socket(v6, false, false);
            life.serve(&a, "A without the option", ip, OK);
            a.set_reuse_port(true);
            if protocol == Protocol::Tcp {
                a.listen("A listens again", OK);
            }
            life.receivers("A alone", &[&a], to, ip, &[0]);
            let b = life.socket(v6, false, true);
            life.serve(&b, "B with the option", ip, OK);
            life.receivers(&format!("{protocol:?} {ip}"), &[&a, &b], to, ip, &[0, 1]);
        }
    }
}

/// A UDP member that connects leaves its group for good (`udp_lib_hash4`
/// or `udp_lib_rehash` → `reuseport_detach_sock`), and its `disconnect()`
/// does not bring it back. What follows surprises: the detached socket
/// scores like the group's members, so where it is listed first (it bound
/// last, or its disconnect moved it to the head of the wildcard list) it
/// takes every datagram; and the next member to bind founds a new group
/// with whichever socket it meets first in the port's list, the detached
/// one included.
#[test]
fn linux_udp_member_that_connects_leaves_for_good() {
    // (B binds first, address, receivers after B's disconnect, with C)
    let rows = [
        (false, "127.0.0.1", vec![1], vec![1, 2]),
        (false, "0.0.0.0", vec![1], vec![1, 2]),
        (true, "127.0.0.1", vec![0], vec![0, 2]),
        (true, "0.0.0.0", vec![1], vec![0, 2]),
    ];
    for (b_first, ip, after, with_c) in rows {
        let Some(life) = Life::new(Protocol::Udp) else {
            return;
        };
        let case = format!("B binds first: {b_first}, on {ip}");
        let a = life.socket(false, false, true);
        let b = life.socket(false, false, true);
        if b_first {
            life.serve(&b, "B", ip, OK);
            life.serve(&a, "A", ip, OK);
        } else {
            life.serve(&a, "A", ip, OK);
            life.serve(&b, "B", ip, OK);
        }
        let to = "127.0.0.1:20000";
        life.receivers(
            &format!("{case}: the group"),
            &[&a, &b],
            to,
            "127.0.0.1",
            &[0, 1],
        );
        b.connect("B connects", at("127.0.0.1:30000"), OK);
        life.receivers(
            &format!("{case}: B connected"),
            &[&a, &b],
            to,
            "127.0.0.1",
            &[0],
        );
        b.disconnect("B disconnects", OK);
        life.receivers(
            &format!("{case}: B disconnected"),
            &[&a, &b],
            to,
            "127.0.0.1",
            &after,
        );
        let c = life.socket(false, false, true);
        life.serve(&c, "C", ip, OK);
        life.receivers(
            &format!("{case}: with C"),
            &[&a, &b, &c],
            to,
            "127.0.0.1",
            &with_c,
        );
    }
}

/// `reuseport_has_conns_set` marks a UDP group for the rest of its life,
/// and the member that connects leaves it. B and A (listed first) form a
/// group; B connects to port 0 of 127.0.0.2. A's group is now A alone, but
/// marked, so `udp4_lib_lookup2` no longer stops at it: B, connected to
/// the source's address, scores higher and takes that source's datagrams.
/// Other sources still go to A.
#[test]
fn linux_udp_group_stays_marked_after_its_member_connected() {
    let Some(life) = Life::new(Protocol::Udp) else {
        return;
    };
    let b = life.socket(false, false, true);
    let a = life.socket(false, false, true);
    life.serve(&b, "B", "127.0.0.1", OK);
    life.serve(&a, "A", "127.0.0.1", OK);
    let to = "127.0.0.1:20000";
    life.receivers("the group", &[&a, &b], to, "127.0.0.2", &[0, 1]);
    b.connect("B connects to 127.0.0.2:0", at("127.0.0.2:0"), OK);
    life.receivers("from B's peer", &[&a, &b], to, "127.0.0.2", &[1]);
    life.receivers("from another source", &[&a, &b], to, "127.0.0.1", &[0]);
}

/// AF_INET6 UDP sockets that have SO_REUSEPORT when they bind go to the
/// tail of the port's list (`hslot`), so a new member meets the oldest of
/// them first when `udp_reuseport_add_sock` walks the list for a group to
/// join. A and B bind in that order and form a group; B connects and
/// disconnects, which leaves it outside (and listed first, so it takes
/// every datagram); C then joins A's group, not B. Once B is closed, A and
/// C share the datagrams. AF_INET sockets go to the head: there C founds a
/// group with B, and after B is closed C alone receives.
#[test]
fn linux_udp_ipv6_member_joins_the_oldest_mate() {
    let rows = [
        (true, "::1", "[::1]:20000", "[::1]:30000", vec![0, 1]),
        (true, "::", "[::1]:20000", "[::1]:30000", vec![0, 1]),
        (
            false,
            "127.0.0.1",
            "127.0.0.1:20000",
            "127.0.0.1:30000",
            vec![1],
        ),
    ];
    for (v6, ip, to, peer, after_close) in rows {
        let Some(life) = Life::new(Protocol::Udp) else {
            return;
        };
        let source = if v6 { "::1" } else { "127.0.0.1" };
        let a = life.socket(v6, false, true);
        let b = life.socket(v6, false, true);
        life.serve(&a, &format!("A on {ip}"), ip, OK);
        life.serve(&b, &format!("B on {ip}"), ip, OK);
        life.receivers(&format!("{ip}: the group"), &[&a, &b], to, source, &[0, 1]);
        b.connect("B connects", at(peer), OK);
        b.disconnect("B disconnects", OK);
        life.receivers(&format!("{ip}: B left"), &[&a, &b], to, source, &[1]);
        let c = life.socket(v6, false, true);
        life.serve(&c, &format!("C on {ip}"), ip, OK);
        let with_c: &[usize] = if v6 { &[1] } else { &[1, 2] };
        life.receivers(&format!("{ip}: with C"), &[&a, &b, &c], to, source, with_c);
        b.close();
        life.receivers(
            &format!("{ip}: B closed"),
            &[&a, &c],
            to,
            source,
            &after_close,
        );
    }
}

/// A member bound to a wildcard address that calls `connect(AF_UNSPEC)`
/// without ever connecting leaves its group too (`udp_lib_rehash` detaches
/// it although its list does not change), and keeps its place in the list.
#[test]
fn linux_udp_wildcard_member_disconnect_leaves() {
    for (b_first, after, with_c) in [(false, vec![1], vec![1, 2]), (true, vec![0], vec![0, 2])] {
        let Some(life) = Life::new(Protocol::Udp) else {
            return;
        };
        let a = life.socket(false, false, true);
        let b = life.socket(false, false, true);
        if b_first {
            life.serve(&b, "B", "0.0.0.0", OK);
            life.serve(&a, "A", "0.0.0.0", OK);
        } else {
            life.serve(&a, "A", "0.0.0.0", OK);
            life.serve(&b, "B", "0.0.0.0", OK);
        }
        let to = "127.0.0.1:20000";
        b.disconnect("B disconnects", OK);
        life.receivers("B disconnected", &[&a, &b], to, "127.0.0.1", &after);
        let c = life.socket(false, false, true);
        life.serve(&c, "C", "0.0.0.0", OK);
        life.receivers("with C", &[&a, &b, &c], to, "127.0.0.1", &with_c);
    }
}

/// A connected member that a new member pulls into a group is passed over
/// by the group's pick (`reuseport_select_sock_by_hash` skips established
/// sockets): the new member takes everything, and the old group none.
#[test]
fn linux_udp_group_pick_skips_connected_members() {
    let Some(life) = Life::new(Protocol::Udp) else {
        return;
    };
    let a = life.socket(false, false, true);
    let b = life.socket(false, false, true);
    life.serve(&a, "A", "127.0.0.1", OK);
    life.serve(&b, "B", "127.0.0.1", OK);
    b.connect("B connects", at("127.0.0.1:30000"), OK);
    let c = life.socket(false, false, true);
    life.serve(&c, "C", "127.0.0.1", OK);
    life.receivers(
        "with C",
        &[&a, &b, &c],
        "127.0.0.1:20000",
        "127.0.0.1",
        &[2],
    );
}

/// Two UDP sockets connected to one peer over one 4-tuple (SO_REUSEADDR):
/// the one that connected last receives (`udp_lib_hash4` adds at the head
/// of the 4-tuple's list), and connecting again to the same peer changes
/// nothing.
#[test]
fn linux_udp_last_connected_receives() {
    for (ip, peer) in [("127.0.0.1", "127.0.0.1:30000"), ("::1", "[::1]:30000")] {
        for reconnect_first in [false, true] {
            let Some(life) = Life::new(Protocol::Udp) else {
                return;
            };
            let v6 = ip.contains(':');
            let a = life.socket(v6, true, false);
            let b = life.socket(v6, true, false);
            a.bind("A", ip, PORT, OK);
            b.bind("B", ip, PORT, OK);
            a.connect("A connects", at(peer), OK);
            b.connect("B connects", at(peer), OK);
            if reconnect_first {
                a.connect("A connects again", at(peer), OK);
            }
            let to = SocketAddr::new(ip.parse().expect("ip"), PORT);
            let kernel = udp_receiver(&[&a.kernel, &b.kernel], at(peer), to);
            let table = table_receiver(&life.scene.table, &[&a.table, &b.table], at(peer), to);
            assert!(
                kernel == Some(1) && table == Some(1),
                "{ip}: the kernel gave {kernel:?}, the table {table:?}"
            );
            a.disconnect("the receiver's mate disconnects", OK);
            b.disconnect("the receiver disconnects", OK);
        }
    }
}

/// UDP `connect()` to port 0 connects to the address with any port: the
/// socket then takes the datagrams from every port of that address, ahead
/// of an unconnected socket on its own address, and none from another
/// address. (The peer is not shown: `getpeername` is ENOTCONN.)
#[test]
fn linux_udp_connect_to_port_zero() {
    for (ip, any, peer, other) in [
        ("127.0.0.1", "0.0.0.0", "127.0.0.1:0", "127.0.0.2"),
        ("::1", "::", "[::1]:0", "::1"),
    ] {
        let Some(life) = Life::new(Protocol::Udp) else {
            return;
        };
        let v6 = ip.contains(':');
        let to = SocketAddr::new(ip.parse().expect("ip"), PORT).to_string();
        let wildcard = life.socket(v6, true, false);
        wildcard.bind("wildcard", any, PORT, OK);
        let client = life.socket(v6, true, false);
        client.bind("client", any, PORT, OK);
        client.connect("connect to port 0", at(peer), OK);
        life.receivers("any port", &[&wildcard, &client], &to, ip, &[1]);
        let specific = life.socket(v6, true, false);
        specific.bind("specific", ip, PORT, OK);
        let all = [&wildcard, &client, &specific];
        life.receivers("beside a specific socket", &all, &to, ip, &[1]);
        if other != ip {
            life.receivers("from another address", &all, &to, other, &[2]);
        }
    }
}

/// TCP `connect()` to port 0 is the peer's to refuse: the kernel's SYN is
/// answered by a reset (ECONNREFUSED); the table, which sees only the local
/// side, connects.
#[test]
fn linux_tcp_connect_to_port_zero_leaves_it_to_the_peer() {
    let Some(life) = Life::new(Protocol::Tcp) else {
        return;
    };
    let client = life.socket(false, false, false);
    let kernel = linux_kernel::errno(&linux_kernel::connect(&client.kernel, at("127.0.0.1:0")));
    assert_eq!(kernel, libc::ECONNREFUSED, "the kernel");
    let table = client.table.connect(at("127.0.0.1:0"));
    assert!(table.is_ok(), "the table: {table:?}");
}

/// What a TCP PCB is before `connect(AF_UNSPEC)`.
#[derive(Clone, Copy, Debug)]
enum Before {
    Fresh,
    Bound,
    BoundPortZero,
    ListenExplicit,
    ListenPortZero,
    ListenAuto,
    ConnectChosePort,
    ConnectExplicit,
    ConnectBoundPortZero,
    ConnectWildcardPort,
    Accepted,
}

/// What is tried after it.
#[derive(Clone, Copy, Debug)]
enum After {
    /// Another socket binds the port the PCB had.
    BindOther,
    Listen,
    Connect,
    Bind,
}

/// TCP `connect(AF_UNSPEC)` (`tcp_disconnect`) in each state, and what the
/// kernel allows afterwards. It always succeeds. A listener stops
/// listening, a connection is aborted; either keeps a port `bind()` named
/// and gives back any other (an accepted socket's too: `sk_clone_lock`
/// drops SOCK_BINDPORT_LOCK). Then the surprises of 6.18: a socket that has
/// listened is refused `connect()` for good (EINVAL) and one that has been
/// connected is refused `listen()` (EINVAL, after `get_port` took a port
/// that it keeps).
#[test]
fn linux_tcp_disconnect_in_each_state() {
    use After::*;
    use Before::*;
    let rows: [(Before, [i32; 4]); 11] = [
        (Fresh, [OK, OK, OK, OK]),
        (Bound, [EADDRINUSE, OK, OK, EINVAL]),
        (BoundPortZero, [EADDRINUSE, OK, OK, EINVAL]),
        (ListenExplicit, [EADDRINUSE, OK, EINVAL, EINVAL]),
        (ListenPortZero, [OK, OK, EINVAL, OK]),
        (ListenAuto, [OK, OK, EINVAL, OK]),
        (ConnectChosePort, [OK, EINVAL, OK, OK]),
        (ConnectExplicit, [EADDRINUSE, EINVAL, OK, EINVAL]),
        (ConnectBoundPortZero, [OK, EINVAL, OK, OK]),
        (ConnectWildcardPort, [EADDRINUSE, EINVAL, OK, EINVAL]),
        (Accepted, [EADDRINUSE, EINVAL, OK, OK]),
    ];
    for (before, wants) in rows {
        for (after, want) in [BindOther, Listen, Connect, Bind].into_iter().zip(wants) {
            let Some(life) = Life::new(Protocol::Tcp) else {
                return;
            };
            let case = format!("{before:?} then {after:?}");
            let server = life.socket(false, false, false);
            life.serve(&server, "server", "127.0.0.1", OK);
            let to = at("127.0.0.1:20000");
            let me = life.socket(false, false, false);
            let mut peer = None;
            match before {
                Fresh => {}
                Bound => me.bind("bind", "127.0.0.1", 21000, OK),
                BoundPortZero | ListenPortZero | ConnectBoundPortZero => {
                    me.bind("bind", "127.0.0.1", 0, OK)
                }
                ListenExplicit => me.bind("bind", "127.0.0.1", 21000, OK),
                ConnectExplicit => me.bind("bind", "127.0.0.1", 21000, OK),
                ConnectWildcardPort => me.bind("bind", "0.0.0.0", 21000, OK),
                ListenAuto | ConnectChosePort | Accepted => {}
            }
            if matches!(before, ListenExplicit | ListenPortZero | ListenAuto) {
                me.listen("listen", OK);
            }
            let me = if let Accepted = before {
                let client = life.socket(false, false, false);
                let from = client.connect("client", to, OK).expect("connected");
                let child = server.accept(to, from);
                peer = Some(client);
                child
            } else {
                me
            };
            if matches!(
                before,
                ConnectChosePort | ConnectExplicit | ConnectBoundPortZero | ConnectWildcardPort
            ) {
                let from = me.connect("connect", to, OK).expect("connected");
                peer = Some(server.accept(to, from));
            }
            let port = me.local(&case).map_or(0, |at| at.port());
            me.disconnect(&format!("{case}: disconnect"), OK);
            // The peer got the reset: it is gone in both worlds.
            drop(peer);
            match after {
                BindOther => {
                    let other = life.socket(false, false, false);
                    other.bind(&case, "127.0.0.1", port, want);
                }
                Listen => me.listen(&case, want),
                Connect => {
                    if let Some(from) = me.connect(&case, to, want) {
                        let _child = server.accept(to, from);
                    }
                }
                Bind => me.bind(&case, "127.0.0.1", 22000, want),
            }
        }
    }
}

/// Link-local IPv6 addresses (`fe80::/10`, and multicast of link or
/// interface scope) mean nothing without a device: `bind()` and `connect()`
/// to them are EINVAL (`__inet6_bind`, `tcp_v6_connect`,
/// `ip6_datagram_connect`), except that TCP refuses any multicast peer
/// first (ENETUNREACH).
#[test]
fn linux_link_local_needs_a_device() {
    for protocol in [Protocol::Tcp, Protocol::Udp] {
        let tcp = protocol == Protocol::Tcp;
        // (address, bind, connect from an unbound socket)
        let rows = [
            ("fe80::1", EINVAL, EINVAL),
            ("fe80::", EINVAL, EINVAL),
            ("febf::1", EINVAL, EINVAL),
            ("ff02::1", EINVAL, if tcp { ENETUNREACH } else { EINVAL }),
            ("ff01::1", EINVAL, if tcp { ENETUNREACH } else { EINVAL }),
            ("fec0::1", libc::EADDRNOTAVAIL, ENETUNREACH),
        ];
        let Some(life) = Life::new(protocol) else {
            return;
        };
        for (ip, bind, connect) in rows {
            let peer = SocketAddr::new(ip.parse().expect("ip"), PORT);
            if bind == EINVAL {
                // (The table does not know the host's addresses: an address
                // that is not local is the stack's EADDRNOTAVAIL.)
                let me = life.socket(true, false, false);
                me.bind(&format!("{protocol:?} bind {ip}"), ip, PORT, bind);
            }
            let me = life.socket(true, false, false);
            me.connect(&format!("{protocol:?} connect {ip}"), peer, connect);
            let bound = life.socket(true, false, false);
            bound.bind("bind ::", "::", 0, OK);
            bound.connect(&format!("{protocol:?} bound, connect {ip}"), peer, connect);
        }
    }
}

/// An AF_INET6 UDP socket on `::` that connects to a v4-mapped peer and
/// disconnects takes IPv4 datagrams again but no IPv6 ones:
/// `__udp_disconnect` resets `inet_daddr` but not `sk_v6_daddr`, which
/// `compute_score` still compares with an IPv6 datagram's source. That
/// holds after a disconnect that gave the port back and a new autobind too.
/// Connected to an IPv6 peer instead, it takes both.
#[test]
fn linux_udp_disconnect_from_a_mapped_peer_misses_ipv6() {
    for (peer, ipv6_too) in [("[::ffff:127.0.0.1]:30000", false), ("[::1]:30000", true)] {
        let Some(life) = Life::with_range(Protocol::Udp, (40000, 40000)) else {
            return;
        };
        let me = life.socket(true, false, false);
        me.bind("bind ::", "::", PORT, OK);
        me.connect("connect", at(peer), OK);
        me.disconnect("disconnect", OK);
        life.receivers(peer, &[&me], "127.0.0.1:20000", "127.0.0.1", &[0]);
        let want: &[usize] = if ipv6_too { &[0] } else { &[] };
        life.receivers(peer, &[&me], "[::1]:20000", "::1", want);
        // Unbound: the disconnect gives the port back, an autobind takes one.
        let again = life.socket(true, false, false);
        again.connect("connect", at(peer), OK);
        again.disconnect("disconnect", OK);
        again.connect("autobind", at("[fe80::1]:30000"), EINVAL);
        let to = again.local("autobound").expect("a port");
        let want: &[usize] = if ipv6_too { &[0] } else { &[] };
        let step = format!("{peer}, autobound again");
        life.receivers(
            &step,
            &[&again],
            &format!("[::1]:{}", to.port()),
            "::1",
            want,
        );
    }
}

/// After `disconnect()` an `Inet6` UDP socket keeps its last IPv6 peer
/// (`__udp_disconnect` resets `inet_daddr` and `inet_dport`, not
/// `sk_v6_daddr`), and IPv6 `compute_score` still reads it: a datagram
/// from that address scores a point more than one for a socket that never
/// connected, so the socket takes it even where it is listed after the
/// other (both on `::`, B bound last and so listed first). A v4-mapped
/// peer leaves no IPv6 datagram to the socket.
#[test]
fn linux_udp_disconnect_keeps_the_last_ipv6_peer() {
    let Some(life) = Life::new(Protocol::Udp) else {
        return;
    };
    let a = life.socket(true, true, false);
    a.bind("A binds ::", "::", PORT, OK);
    a.connect("A connects to ::1", at("[::1]:30000"), OK);
    a.disconnect("A disconnects", OK);
    // B binds last, so it is listed first.
    let b = life.socket(true, true, false);
    b.bind("B binds ::", "::", PORT, OK);
    life.receivers("A remembers ::1", &[&a, &b], "[::1]:20000", "::1", &[0]);
    // IPv4 datagrams: `inet_daddr` is reset, so B, listed first, wins.
    life.receivers("IPv4", &[&a, &b], "127.0.0.1:20000", "127.0.0.1", &[1]);
    // A v4-mapped peer replaces it: no IPv6 datagram matches A any more.
    a.connect(
        "A connects to 127.0.0.1",
        at("[::ffff:127.0.0.1]:30000"),
        OK,
    );
    a.disconnect("A disconnects again", OK);
    life.receivers(
        "A remembers 127.0.0.1",
        &[&a, &b],
        "[::1]:20000",
        "::1",
        &[1],
    );
    b.close();
    life.receivers("A alone", &[&a], "[::1]:20000", "::1", &[]);
}

/// A TCP `Inet6` socket that `bind()` put on `::1` and that connects to a
/// v4-mapped peer (after a `disconnect()` gave its port back and V6ONLY was
/// cleared) is on `::ffff:127.0.0.6` from then on, whether the connect
/// succeeds or fails: `tcp_v4_connect` sets the receive address from
/// `inet_saddr`, which `__inet6_bind` set to `LOOPBACK4_IPV6`, and a
/// failure keeps a locked address (`inet_bhash2_reset_saddr`).
#[test]
fn linux_tcp_v4_mapped_connect_from_a_bound_ipv6_address() {
    for listened in [false, true] {
        let Some(life) = Life::new(Protocol::Tcp) else {
            return;
        };
        let server = life.socket(false, false, false);
        life.serve(&server, "IPv4 server", "127.0.0.1", OK);
        let server6 = life.socket(true, false, false);
        life.serve(&server6, "IPv6 server", "::1", OK);
        let me = life.socket(true, false, false);
        me.bind("bind ::1", "::1", 0, OK);
        if listened {
            me.listen("listen", OK);
        } else {
            me.connect("connect to ::1", at("[::1]:20000"), OK);
        }
        me.disconnect("disconnect", OK);
        me.set_v6only(false);
        let want = if listened { EINVAL } else { OK };
        me.connect(
            "connect to a v4-mapped peer",
            at("[::ffff:127.0.0.1]:20000"),
            want,
        );
        if listened {
            // No port is held; the address shows in the next listen().
            me.listen("listen again", OK);
        }
        let local = me.local("after connect").expect("a port");
        assert_eq!(
            local.ip(),
            at("[::ffff:127.0.0.6]:0").ip(),
            "listened before: {listened}"
        );
    }
}

/// UDP `udp4_lib_lookup2` stops at the first socket that scores above all
/// before it and asks a reuseport group that never had a connected member,
/// even if a better-scoring socket follows: here A (AF_INET6 on `::`) is
/// listed first because it bound without SO_REUSEPORT (sockets with the
/// option and of AF_INET6 go to the tail), set it later, and was pulled into
/// a group by B; N (AF_INET on `0.0.0.0`, a point more for an IPv4 datagram)
/// was bound before A. IPv4 datagrams go to the group, not to N.
#[test]
fn linux_udp_group_listed_first_takes_the_packet() {
    let Some(life) = Life::new(Protocol::Udp) else {
        return;
    };
    let n = life.socket(false, true, false);
    n.bind("N binds 0.0.0.0", "0.0.0.0", PORT, OK);
    let a = life.socket(true, true, false);
    a.bind("A binds ::", "::", PORT, OK);
    life.receivers(
        "A listed first, no group",
        &[&n, &a],
        "127.0.0.1:20000",
        "127.0.0.1",
        &[0],
    );
    a.set_reuse_port(true);
    let b = life.socket(true, true, true);
    b.bind("B binds ::", "::", PORT, OK);
    life.receivers(
        "A's group",
        &[&n, &a, &b],
        "127.0.0.1:20000",
        "127.0.0.1",
        &[1, 2],
    );
    // IPv6 datagrams: N does not match, the group takes them.
    life.receivers("IPv6", &[&n, &a, &b], "[::1]:20000", "::1", &[1, 2]);
}

/// IPv6 `compute_score` gives a socket connected to port 0 of the
/// packet's source one point for `sk_v6_daddr`, and an unconnected socket
/// whose last peer is that source one point too: they tie, and the one
/// listed first takes the datagram. A (last peer `::1`) binds first; B
/// binds `::1` after it and connects to `[::1]:0`. With SO_REUSEPORT, B is
/// listed after A (AF_INET6 sockets with the option go to the tail), so A
/// wins; without, B goes to the head and wins. IPv4 gives a set
/// `inet_daddr` four points, and keeps no last peer: B always wins.
#[test]
fn linux_udp_last_peer_ties_with_a_port_zero_peer() {
    let rows = [
        (true, "::1", "[::1]", true, 0),
        (true, "::1", "[::1]", false, 1),
        (false, "127.0.0.1", "127.0.0.1", true, 1),
        (false, "127.0.0.1", "127.0.0.1", false, 1),
    ];
    for (v6, ip, host, b_reuse_port, want) in rows {
        let Some(life) = Life::new(Protocol::Udp) else {
            return;
        };
        let a = life.socket(v6, true, false);
        a.bind("A binds", ip, PORT, OK);
        a.connect("A connects", at(&format!("{host}:30000")), OK);
        a.disconnect("A disconnects", OK);
        let b = life.socket(v6, true, b_reuse_port);
        b.bind("B binds", ip, PORT, OK);
        b.connect("B connects to port 0", at(&format!("{host}:0")), OK);
        let step = format!("{ip}, B with SO_REUSEPORT: {b_reuse_port}");
        let to = format!("{host}:20000");
        life.receivers(&step, &[&a, &b], &to, ip, &[want]);
    }
}

/// Of several UDP sockets connected to port 0 of one address, the kernel
/// takes the best-scoring, then the first listed (`udp4_lib_lookup2`
/// ranks them like the unconnected ones; the 4-tuple's own list, where
/// the last connected comes first, has no entry for port 0). IPv4 gives
/// AF_INET a point more: X (AF_INET) takes the datagrams though Y
/// (AF_INET6, `::ffff:127.0.0.1`) connected after it. Among AF_INET6 ones
/// on `::1`, Y bound last, so it is listed first and takes them though X
/// connected after it.
#[test]
fn linux_udp_port_zero_peers_rank_like_unconnected_ones() {
    // (X's family and address, Y's, the peer, receiver)
    let rows = [
        (
            (false, "127.0.0.1"),
            (true, "::ffff:127.0.0.1"),
            "127.0.0.1",
            0,
        ),
        ((true, "::1"), (true, "::1"), "[::1]", 1),
    ];
    for ((x6, x_ip), (y6, y_ip), peer, want) in rows {
        let Some(life) = Life::new(Protocol::Udp) else {
            return;
        };
        let x = life.socket(x6, true, false);
        x.bind("X binds", x_ip, PORT, OK);
        let y = life.socket(y6, true, false);
        y.bind("Y binds", y_ip, PORT, OK);
        let zero = at(&format!("{peer}:0"));
        let (first, last) = if x6 { (&y, &x) } else { (&x, &y) };
        first.connect("connects first", zero, OK);
        last.connect("connects last", zero, OK);
        let to = format!("{peer}:20000");
        let from = peer.trim_matches(|c| c == '[' || c == ']');
        life.receivers(peer, &[&x, &y], &to, from, &[want]);
    }
}
