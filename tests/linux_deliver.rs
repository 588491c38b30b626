//! `PcbTable::deliver` against the running Linux kernel: one datagram to a
//! broadcast or multicast address, the set of sockets the kernel hands it
//! to, and the set the table names.
//!
//! Each scenario opens UDP sockets on one port in a fresh network namespace
//! (only `lo`), each paired with a PCB of a Linux-policy table: bound to
//! `0.0.0.0`, `127.0.0.1`, `127.255.255.255`, `::`, `::ffff:0.0.0.0` or
//! `::ffff:127.0.0.1`, V6ONLY on or off, SO_REUSEADDR / SO_REUSEPORT,
//! connected to the sender, to another port of it, to another address, or
//! not at all. A sender on `127.0.0.1` then sends one datagram to
//! `127.255.255.255` (SO_BROADCAST) or to the group `239.1.1.1` on `lo`,
//! and every socket is drained.
//!
//! IPv6 multicast is not compared: in a namespace with only `lo`, the kernel
//! delivered no IPv6 multicast datagram to any socket (with a route for
//! `ff00::/8` on `lo` and the group joined there, sending succeeds and no
//! one receives), so the IPv6 rules are rows from the source below.
//!
//! The kernel's order of delivery is not observable from user space (every
//! copy is queued before `sendto` returns), so the sets are compared; the
//! order is the source's (`__udp4_lib_mcast_deliver`), as `deliver`
//! documents it.
//!
//! Group membership is the stack's, not the table's: for the multicast
//! scenarios the table's answer is filtered by what the test knows of each
//! socket, as a stack would: nothing is received unless some socket joined
//! the group on `lo` (the host's membership, `ip_check_mc_rcu`); then a
//! socket that joined receives, and one that did not receives too unless it
//! turned `IP_MULTICAST_ALL` off (`ip_mc_sf_allow`: the option is on by
//! default).

mod linux_kernel;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;

use linux_kernel::dual::{Pair, Scene};
use linux_kernel::{errno, receive, table_errno};
use pcbhash::Protocol;
use socket2::Socket;

/// The sender's address; connected sockets name it (or a neighbour) as
/// their peer.
const SENDER: &str = "127.0.0.1:40000";
const BROADCAST: Ipv4Addr = Ipv4Addr::new(127, 255, 255, 255);
const GROUP: Ipv4Addr = Ipv4Addr::new(239, 1, 1, 1);

/// Where a socket is bound.
const BINDS: &[(bool, &str)] = &[
    (false, "0.0.0.0"),
    (false, "127.0.0.1"),
    (false, "127.255.255.255"),
    (false, "239.1.1.1"),
    (true, "::"),
    (true, "::ffff:0.0.0.0"),
    (true, "::ffff:127.0.0.1"),
    (true, "::1"),
];

/// The peers a socket may connect to (`None`: stays unconnected).
const PEERS: &[Option<&str>] = &[
    None,
    None,
    Some(SENDER),
    Some("127.0.0.1:40001"),
    Some("127.0.0.2:40000"),
];

/// One socket of a scenario.
#[derive(Clone, Copy, Debug)]
struct Spec {
    bind: usize,
    v6only: bool,
    reuse_addr: bool,
    reuse_port: bool,
    peer: usize,
    /// Joins the group (multicast scenarios).
    joins: bool,
    /// Leaves `IP_MULTICAST_ALL` on (the default).
    mc_all: bool,
}

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }
}

impl Spec {
    fn random(rng: &mut Rng) -> Spec {
        Spec {
            bind: rng.below(BINDS.len()),
            v6only: rng.below(4) == 0,
            reuse_addr: rng.below(4) != 0,
            reuse_port: rng.coin(),
            peer: rng.below(PEERS.len()),
            joins: rng.coin(),
            mc_all: rng.below(3) != 0,
        }
    }
}

/// `setsockopt(level, name, value)` with an `int` value.
fn set_int(socket: &Socket, level: i32, name: i32, value: i32) {
    // SAFETY: `socket` is open; `value` is a valid `c_int` of the length
    // passed, alive for the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt({level}, {name})");
}

/// Opens `spec`'s socket in both worlds on `port`; `None` if the kernel
/// (and, checked, the table) refused the bind or the connect.
fn open(scene: &Scene, spec: &Spec, port: u16, step: &str) -> Option<Pair> {
    let (v6, ip) = BINDS[spec.bind];
    let pair = scene.socket_with(v6, 0, spec.reuse_addr, spec.reuse_port);
    if v6 {
        pair.set_v6only(spec.v6only);
    }
    if spec.joins {
        let join = pair.kernel.join_multicast_v4(&GROUP, &Ipv4Addr::LOCALHOST);
        assert!(join.is_ok(), "{step}: IP_ADD_MEMBERSHIP: {join:?}");
    }
    set_int(
        &pair.kernel,
        libc::IPPROTO_IP,
        libc::IP_MULTICAST_ALL,
        i32::from(spec.mc_all),
    );
    let at = SocketAddr::new(ip.parse().expect("address"), port);
    let kernel = errno(&pair.kernel.bind(&at.into()));
    let table = table_errno(&pair.table.bind(at));
    assert_eq!(kernel, table, "{step}: bind {at} ({spec:?})");
    if kernel != 0 {
        return None;
    }
    if let Some(peer) = PEERS[spec.peer] {
        let peer: SocketAddr = peer.parse().expect("peer");
        let peer = match peer.ip() {
            IpAddr::V4(v4) if v6 => SocketAddr::new(v4.to_ipv6_mapped().into(), peer.port()),
            _ => peer,
        };
        let kernel = errno(&pair.kernel.connect(&peer.into()));
        let table = table_errno(&pair.table.connect(peer));
        assert_eq!(kernel, table, "{step}: connect to {peer} ({spec:?})");
        if kernel != 0 {
            return None;
        }
    }
    Some(pair)
}

/// [`receive::kernel_receivers`] from [`SENDER`].
fn kernel_receivers(sockets: &[&Socket], to: SocketAddr) -> BTreeSet<usize> {
    receive::kernel_receivers(sockets, SENDER.parse().expect("sender"), to)
}

/// The indices of `pairs` the table's `deliver` names for a datagram from
/// [`SENDER`] to `to`, in its order.
fn table_receivers(scene: &Scene, pairs: &[&Pair], to: SocketAddr) -> Vec<usize> {
    let guard = scene.table.pin();
    let from: SocketAddr = SENDER.parse().expect("sender");
    scene
        .table
        .deliver(None, to, from, &guard)
        .map(|pcb| {
            pairs
                .iter()
                .position(|pair| pcb.is(&pair.table))
                .expect("a PCB of the scenario")
        })
        .collect()
}

/// One scenario: `specs` on `port`, one datagram to `to`. Returns the
/// kernel's receivers (indices into `specs`).
fn scenario(scene: &Scene, specs: &[Spec], port: u16, to: Ipv4Addr, step: &str) -> Vec<usize> {
    let opened: Vec<(usize, Pair)> = specs
        .iter()
        .enumerate()
        .filter_map(|(i, spec)| open(scene, spec, port, step).map(|pair| (i, pair)))
        .collect();
    let pairs: Vec<&Pair> = opened.iter().map(|(_, pair)| pair).collect();
    let kernels: Vec<&Socket> = pairs.iter().map(|pair| &pair.kernel).collect();
    let to = SocketAddr::new(to.into(), port);
    let kernel = kernel_receivers(&kernels, to);
    let order = table_receivers(scene, &pairs, to);
    let unique: BTreeSet<usize> = order.iter().copied().collect();
    assert_eq!(unique.len(), order.len(), "{step}: a PCB named twice");
    // The host takes the group on `lo` while one of its sockets is a member
    // (`ip_check_mc_rcu`); then each socket's own filter decides.
    let host_joined = opened.iter().any(|(i, _)| specs[*i].joins);
    let member = |i: &usize| {
        let spec = &specs[opened[*i].0];
        !to.ip().is_multicast() || (host_joined && (spec.joins || spec.mc_all))
    };
    let table: BTreeSet<usize> = unique.into_iter().filter(member).collect();
    let describe = |set: &BTreeSet<usize>| -> Vec<String> {
        set.iter()
            .map(|&i| format!("#{} {:?}", opened[i].0, specs[opened[i].0]))
            .collect()
    };
    assert_eq!(
        kernel,
        table,
        "{step}: to {to}: the kernel delivered to {:?}, the table names {:?}",
        describe(&kernel),
        describe(&table)
    );
    kernel.into_iter().map(|i| opened[i].0).collect()
}

/// Hand-picked broadcast scenarios, printed with the kernel's receivers.
#[test]
fn linux_broadcast_hand_picked() {
    let Some(scene) = Scene::with(Protocol::Udp, (32768, 60999)) else {
        return;
    };
    let plain = |bind, peer| Spec {
        bind,
        v6only: false,
        reuse_addr: true,
        reuse_port: false,
        peer,
        joins: false,
        mc_all: true,
    };
    let cases: &[(&str, Vec<Spec>)] = &[
        (
            "wildcards and addresses",
            vec![
                plain(0, 0),
                plain(1, 0),
                plain(2, 0),
                plain(4, 0),
                plain(5, 0),
            ],
        ),
        (
            "V6ONLY and specific IPv6",
            vec![
                Spec {
                    v6only: true,
                    ..plain(4, 0)
                },
                plain(7, 0),
                plain(6, 0),
                plain(0, 0),
            ],
        ),
        (
            "connected peers",
            vec![
                plain(0, 2),
                plain(0, 3),
                plain(0, 4),
                plain(4, 2),
                plain(0, 0),
            ],
        ),
        (
            "connected from the broadcast address",
            vec![plain(2, 2), plain(2, 3), plain(2, 4), plain(2, 0)],
        ),
        (
            "a reuseport group",
            vec![
                Spec {
                    reuse_addr: false,
                    reuse_port: true,
                    ..plain(0, 0)
                };
                4
            ],
        ),
    ];
    for (i, (name, specs)) in cases.iter().enumerate() {
        let port = 20000 + i as u16;
        let got = scenario(&scene, specs, port, BROADCAST, name);
        println!("broadcast, {name}: the kernel delivered to sockets {got:?}");
        assert!(!got.is_empty(), "{name}: somebody receives");
    }
}

/// A reuseport group under multicast: every member receives.
#[test]
fn linux_multicast_reuseport_group() {
    let Some(scene) = Scene::with(Protocol::Udp, (32768, 60999)) else {
        return;
    };
    let member = Spec {
        bind: 0,
        v6only: false,
        reuse_addr: false,
        reuse_port: true,
        peer: 0,
        joins: true,
        mc_all: false,
    };
    let got = scenario(&scene, &[member; 3], 21000, GROUP, "reuseport group");
    println!("multicast, reuseport group: the kernel delivered to sockets {got:?}");
    assert_eq!(got, [0, 1, 2]);
}

/// Random sets of sockets, broadcast and multicast, compared receiver set
/// for receiver set.
#[test]
fn linux_deliver_random() {
    let Some(scene) = Scene::with(Protocol::Udp, (32768, 60999)) else {
        return;
    };
    let seed = 0x5EED_DE11;
    let mut rng = Rng(seed);
    let rounds = 1000;
    let (mut delivered, mut connected) = (0, 0);
    for round in 0..rounds {
        let count = 1 + rng.below(12);
        let specs: Vec<Spec> = (0..count).map(|_| Spec::random(&mut rng)).collect();
        let to = if rng.coin() { BROADCAST } else { GROUP };
        let port = 22000 + round as u16;
        let step = format!("seed {seed:#x}, round {round}");
        let got = scenario(&scene, &specs, port, to, &step);
        delivered += got.len();
        connected += got
            .iter()
            .filter(|&&i| PEERS[specs[i].peer].is_some())
            .count();
    }
    println!(
        "{rounds} scenarios (seed {seed:#x}): {delivered} deliveries ({connected} to connected \
         sockets), all as the kernel"
    );
    assert!(
        connected > 0,
        "the scenarios deliver to connected sockets too"
    );
}

/// The order `deliver` gives, from `__udp4_lib_mcast_deliver` (not
/// observable from user space, so written from the source): while the
/// port's slot holds at most 10 sockets, the port's list in `bind()` order,
/// newest first, an AF_INET6 SO_REUSEPORT socket at the tail; beyond 10,
/// the list of the destination address, then the wildcard's.
#[test]
fn linux_deliver_order() {
    let table = pcbhash::PcbTable::<usize>::builder()
        .policy(pcbhash::Policy::Linux)
        .protocol(Protocol::Udp)
        .build();
    let open = |id: usize, local: &str, reuse_port: bool| {
        let local: SocketAddr = local.parse().expect("address");
        let family = if local.is_ipv4() {
            pcbhash::Family::Inet
        } else {
            pcbhash::Family::Inet6
        };
        let pcb = table.attach(family, pcbhash::Cred::ROOT, id);
        pcb.set_reuse_addr(true).expect("SO_REUSEADDR");
        pcb.set_reuse_port(reuse_port).expect("SO_REUSEPORT");
        pcb.bind(local).expect("bind");
        pcb
    };
    let order = |port: u16| -> Vec<usize> {
        let guard = table.pin();
        let to = SocketAddr::new(BROADCAST.into(), port);
        table
            .deliver(None, to, SENDER.parse().expect("sender"), &guard)
            .map(|pcb| *pcb.socket().expect("open"))
            .collect()
    };
    let few = [
        open(0, "0.0.0.0:7000", false),
        open(1, "127.255.255.255:7000", false),
        open(2, "[::]:7000", true),
        open(3, "0.0.0.0:7000", false),
    ];
    assert_eq!(order(7000), [3, 1, 0, 2], "the port's list");
    let mut many: Vec<_> = (0..8).map(|id| open(id, "0.0.0.0:7001", false)).collect();
    many.push(open(8, "127.255.255.255:7001", false));
    many.push(open(9, "0.0.0.0:7001", false));
    many.push(open(10, "127.255.255.255:7001", false));
    assert_eq!(
        order(7001),
        [10, 8, 9, 7, 6, 5, 4, 3, 2, 1, 0],
        "the address's list, then the wildcard's"
    );
    drop((few, many));
}

/// An IPv6 socket keeps its last peer after `disconnect()`
/// (`sk_v6_daddr`): IPv6 datagrams from other sources pass it by, from any
/// port of that peer they reach it (`__udp_v6_is_mcast_sock`).
#[test]
fn linux_deliver_last_peer() {
    let table = pcbhash::PcbTable::<()>::builder()
        .policy(pcbhash::Policy::Linux)
        .protocol(Protocol::Udp)
        .build();
    let pcb = table.attach(pcbhash::Family::Inet6, pcbhash::Cred::ROOT, ());
    pcb.bind("[::]:7002".parse().expect("address"))
        .expect("bind");
    pcb.connect("[::1]:40000".parse().expect("peer"))
        .expect("connect");
    pcb.disconnect().expect("disconnect");
    let guard = table.pin();
    let group: SocketAddr = "[ff0e::1]:7002".parse().expect("group");
    let from = |source: &str| {
        table
            .deliver(None, group, source.parse().expect("source"), &guard)
            .count()
    };
    assert_eq!(from("[::1]:40001"), 1, "the last peer, another port");
    assert_eq!(from("[::2]:40000"), 0, "another source");
    let to_v4 = SocketAddr::new(BROADCAST.into(), 7002);
    let v4 = table.deliver(None, to_v4, SENDER.parse().expect("sender"), &guard);
    assert_eq!(v4.count(), 1, "IPv4 ignores the IPv6 peer");
}

/// An AF_INET6 socket on `::ffff:127.255.255.255` whose port a disconnect
/// gave back (it was bound to port 0, so only the address was locked), set
/// V6ONLY then (allowed: it holds no port), and given a port again by the
/// autobind of a failing `connect()`: V6ONLY on a v4-mapped address. The
/// kernel hands it no broadcast (`__udp_is_mcast_sock` tests
/// `ipv6_only_sock` on its own). Without V6ONLY, bound again the same way,
/// it receives. Found by the fuzzer against the reference model.
#[test]
fn linux_broadcast_skips_v6only_on_a_mapped_address() {
    let Some(scene) = Scene::with(Protocol::Udp, (32768, 60999)) else {
        return;
    };
    let broadcast = SocketAddr::new(BROADCAST.to_ipv6_mapped().into(), 0);
    for v6only in [false, true] {
        let step = format!("V6ONLY {v6only}");
        let pair = scene.socket_with(true, 0, false, false);
        let bind = |what: &str| {
            let kernel = errno(&pair.kernel.bind(&broadcast.into()));
            let table = table_errno(&pair.table.bind(broadcast));
            assert_eq!((kernel, table), (0, 0), "{step}: {what} {broadcast}");
        };
        bind("bind");
        // Not connected: the disconnect gives the port back all the same.
        pair.disconnect(&step, 0);
        assert!(pair.table.local_addr().is_none(), "{step}: the port went");
        pair.set_v6only(v6only);
        if v6only {
            // `connect()` to `::` autobinds, then fails: the destination
            // becomes `::ffff:127.0.0.1`, the bound address being v4-mapped.
            let any = SocketAddr::new(std::net::Ipv6Addr::UNSPECIFIED.into(), 9);
            pair.connect(&format!("{step}, connect to {any}"), any, libc::ENETUNREACH);
        } else {
            bind("bind again");
        }
        let kernel_port = linux_kernel::local_addr(&pair.kernel)
            .expect("kernel local address")
            .port();
        let table_port = pair.table.local_addr().expect("a port again").port();
        assert_ne!(kernel_port, 0, "{step}: the kernel took a port");
        let to = |port| SocketAddr::new(BROADCAST.into(), port);
        let kernel = kernel_receivers(&[&pair.kernel], to(kernel_port));
        let table: BTreeSet<usize> = table_receivers(&scene, &[&pair], to(table_port))
            .into_iter()
            .collect();
        assert_eq!(kernel, table, "{step}: kernel and table receivers");
        assert_eq!(kernel.is_empty(), v6only, "{step}: who receives");
    }
}
