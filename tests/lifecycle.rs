//! The lifecycle's semantics and error cases, for both policies where they
//! agree, and with FreeBSD's answers where they differ.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{addr, bound, freebsd, listening, table, unused, Sock};
use pcbhash::{Cred, Error, Family, Flags, Pcb, PcbTable, Policy, Protocol, State};

const BOTH: [Policy; 2] = [Policy::FreeBsd, Policy::Linux];

#[test]
fn a_failed_bind_changes_nothing() {
    for policy in BOTH {
        let table = table(policy, Protocol::Tcp);
        let _holder = bound(&table, Cred::ROOT, "127.0.0.1:8080", 1);
        let pcb = table.attach(Family::Inet, Cred::ROOT, unused());
        assert_eq!(
            pcb.bind(addr("127.0.0.1:8080")),
            Err(Error::AddrInUse),
            "{policy:?}"
        );
        assert_eq!(pcb.state(), State::Closed);
        assert_eq!(pcb.local_addr(), None);
        assert_eq!(table.len(), 1);
        // The PCB is still usable.
        assert_eq!(pcb.bind(addr("127.0.0.1:8081")), Ok(addr("127.0.0.1:8081")));
        assert_eq!(table.len(), 2);
    }
}

#[test]
fn bad_input_gets_a_clear_error() {
    for policy in BOTH {
        let table = table(policy, Protocol::Tcp);
        let v4 = table.attach(Family::Inet, Cred::user(1000), unused());
        assert_eq!(
            v4.bind(addr("127.0.0.1:80")),
            Err(Error::PermissionDenied),
            "{policy:?}"
        );
        assert_eq!(
            v4.bind(addr("[::1]:8080")),
            Err(Error::FamilyNotSupported),
            "{policy:?}"
        );
        assert_eq!(v4.set_v6only(true), Err(Error::OptionNotAvailable));
        v4.bind(addr("127.0.0.1:8080")).unwrap();
        assert_eq!(
            v4.bind(addr("127.0.0.1:8081")),
            Err(Error::InvalidInput),
            "binding twice"
        );

        let v6 = table.attach(Family::Inet6, Cred::ROOT, unused());
        v6.set_v6only(true).unwrap();
        // FreeBSD `in6_pcbbind_avail` finds no interface with a v4-mapped
        // address; Linux `__inet6_bind` refuses it on a V6ONLY socket.
        let mapped_v6only = match policy {
            Policy::FreeBsd => Error::AddrNotAvailable,
            Policy::Linux => Error::InvalidInput,
            _ => unreachable!("no expectation for {policy:?}"),
        };
        assert_eq!(
            v6.bind(addr("[::ffff:127.0.0.1]:9000")),
            Err(mapped_v6only),
            "{policy:?}"
        );
        v6.bind(addr("[::1]:9000")).unwrap();
        assert_eq!(
            v6.set_v6only(false),
            Err(Error::InvalidInput),
            "V6ONLY after bind"
        );

        // Port 0: FreeBSD refuses it; Linux sends the SYN (the peer refuses).
        let port_zero = table.attach(Family::Inet, Cred::ROOT, unused());
        let answer = port_zero.connect(addr("127.0.0.1:0")).map(|_| ());
        let want = match policy {
            Policy::FreeBsd => Err(Error::AddrNotAvailable),
            Policy::Linux => Ok(()),
            _ => unreachable!("no expectation for {policy:?}"),
        };
        assert_eq!(answer, want, "{policy:?}");
        let client = table.attach(Family::Inet, Cred::ROOT, unused());
        if policy == Policy::FreeBsd {
            // `in_pcbconnect` under `net.inet.ip.connect_inaddr_wild=0`.
            assert_eq!(
                client.connect(addr("0.0.0.0:80")),
                Err(Error::NetworkUnreachable)
            );
        }
        assert!(
            client.connect(addr("224.0.0.1:80")).is_err(),
            "multicast TCP peer"
        );
        assert_eq!(
            client.connect(addr("10.0.0.1:80")),
            Err(Error::NetworkUnreachable),
            "no route"
        );
        assert_eq!(client.state(), State::Closed);
        assert_eq!(client.time_wait(), Err(Error::InvalidInput));
        // TCP connect(AF_UNSPEC): FreeBSD has none; Linux `tcp_disconnect`
        // leaves a fresh socket as it is.
        let want = match policy {
            Policy::FreeBsd => Err(Error::NotSupported),
            Policy::Linux => Ok(()),
            _ => unreachable!("no expectation for {policy:?}"),
        };
        assert_eq!(client.disconnect(), want, "{policy:?}");
        assert_eq!(client.state(), State::Closed);
        let connected_to_port_zero = usize::from(policy == Policy::Linux);
        assert_eq!(table.len(), 2 + connected_to_port_zero);
    }
}

#[test]
fn listen_rules() {
    let table = freebsd(Protocol::Udp);
    let udp = table.attach(Family::Inet, Cred::ROOT, unused());
    assert_eq!(udp.listen(), Err(Error::NotSupported));

    let table = freebsd(Protocol::Tcp);
    let autobound = table.attach(Family::Inet6, Cred::ROOT, unused());
    autobound.listen().expect("listen binds an ephemeral port");
    let local = autobound.local_addr().unwrap();
    assert!(local.ip().is_unspecified() && (10000..=65535).contains(&local.port()));
    let server = listening(&table, Cred::ROOT, "127.0.0.1:7000", 1);
    let client = table.attach(Family::Inet, Cred::ROOT, unused());
    client.connect(addr("127.0.0.1:7000")).unwrap();
    assert_eq!(
        client.listen(),
        Err(Error::InvalidInput),
        "listen on a connected PCB"
    );
    drop(server);
}

#[test]
fn connect_moves_a_bound_pcb_and_keeps_tuples_unique() {
    let table = freebsd(Protocol::Tcp);
    let server = listening(&table, Cred::ROOT, "127.0.0.1:7000", 1);
    let a = table.attach(Family::Inet, Cred::ROOT, unused());
    a.set_reuse_addr(true).unwrap();
    a.bind(addr("0.0.0.0:5000")).unwrap();
    assert_eq!(
        a.connect(addr("127.0.0.1:7000")),
        Ok(addr("127.0.0.1:5000"))
    );
    assert_eq!(a.state(), State::Connected);
    assert_eq!(a.peer_addr(), Some(addr("127.0.0.1:7000")));
    assert_eq!(
        a.connect(addr("127.0.0.1:7000")),
        Err(Error::AlreadyConnected)
    );

    // A second PCB on the same port may connect elsewhere, not to the same peer.
    let b = table.attach(Family::Inet, Cred::ROOT, unused());
    b.set_reuse_addr(true).unwrap();
    b.bind(addr("127.0.0.1:5000")).unwrap();
    assert_eq!(
        b.connect(addr("127.0.0.1:7000")),
        Err(Error::AddrInUse),
        "FreeBSD in_pcbconnect"
    );
    assert_eq!(b.state(), State::Bound, "nothing changed");
    assert_eq!(
        b.connect(addr("127.0.0.2:7000")),
        Ok(addr("127.0.0.1:5000"))
    );

    let guard = table.pin();
    let found = table
        .lookup(addr("127.0.0.1:5000"), addr("127.0.0.1:7000"), &guard)
        .unwrap();
    assert!(found.is(&a));
    assert_eq!(found.peer_addr(), Some(addr("127.0.0.1:7000")));
    drop(server);
}

#[test]
fn accept_replaces_only_a_time_wait_holder() {
    let table = freebsd(Protocol::Tcp);
    let server = listening(&table, Cred::ROOT, "0.0.0.0:80", 1);
    let (local, peer) = (addr("127.0.0.1:80"), addr("127.0.0.5:40000"));
    let first = server.accept(local, peer, Sock(2)).unwrap();
    assert_eq!(first.flags().state(), State::Connected);
    assert_eq!(
        server.accept(local, peer, unused()).err(),
        Some(Error::AddrInUse),
        "a live connection keeps its tuple"
    );
    first.time_wait().unwrap();
    assert_eq!(first.socket(&table.pin()), None);
    let second = server
        .accept(local, peer, Sock(3))
        .expect("replaces TIME_WAIT");
    assert_eq!(
        first.state(),
        State::Dropped,
        "the TIME_WAIT PCB was replaced"
    );
    assert_eq!(table.len(), 2);
    let guard = table.pin();
    assert!(table.lookup(local, peer, &guard).unwrap().is(&second));
    drop(guard);
    drop(first); // closing a replaced PCB removes nothing else
    assert_eq!(table.len(), 2);
    assert_eq!(second.socket(&table.pin()).unwrap().0, 3);

    let unbound_listener = table.attach(Family::Inet, Cred::ROOT, unused());
    assert_eq!(
        unbound_listener.accept(local, peer, unused()).err(),
        Some(Error::InvalidInput)
    );
    assert_eq!(
        server.accept(addr("127.0.0.1:81"), peer, unused()).err(),
        Some(Error::InvalidInput)
    );
}

#[test]
fn accepted_pcbs_inherit_family_and_cred_and_per_policy_reuse_bits() {
    for policy in BOTH {
        let table = table(policy, Protocol::Tcp);
        let server = table.attach(Family::Inet6, Cred::user(1000), unused());
        server.set_v6only(false).unwrap();
        server.set_reuse_port(true).unwrap();
        server.bind(addr("[::]:8443")).unwrap();
        server.listen().unwrap();
        let conn = server
            .accept(addr("127.0.0.1:8443"), addr("127.0.0.7:5555"), unused())
            .unwrap();
        assert_eq!(conn.family(), Family::Inet6);
        assert_eq!(conn.cred(), Cred::user(1000));
        // FreeBSD `solisten_clone` copies no reuse option; Linux
        // `sk_clone_lock` copies them all.
        assert_eq!(
            conn.flags().reuse_port(),
            policy == Policy::Linux,
            "{policy:?}"
        );
        assert_eq!(conn.local_addr(), Some(addr("[::ffff:127.0.0.1]:8443")));
        assert_eq!(conn.peer_addr(), Some(addr("[::ffff:127.0.0.7]:5555")));
    }
}

#[test]
fn udp_disconnect_goes_back_to_the_wildcard_index() {
    for policy in BOTH {
        let table = table(policy, Protocol::Udp);
        let pcb = bound(&table, Cred::ROOT, "127.0.0.1:5353", 1);
        pcb.connect(addr("127.0.0.9:53")).unwrap();
        let guard = table.pin();
        assert!(table
            .lookup(addr("127.0.0.1:5353"), addr("127.0.0.8:53"), &guard)
            .is_none());
        drop(guard);
        pcb.disconnect().unwrap();
        assert_eq!(pcb.state(), State::Bound);
        let guard = table.pin();
        let found = table
            .lookup(addr("127.0.0.1:5353"), addr("127.0.0.8:53"), &guard)
            .expect("wildcard again");
        assert!(found.is(&pcb));
        // FreeBSD's in_pcbdisconnect forgets the local address; Linux keeps an
        // explicitly bound one.
        let expected = match policy {
            Policy::FreeBsd => addr("0.0.0.0:5353"),
            Policy::Linux => addr("127.0.0.1:5353"),
            _ => unreachable!("no expectation for {policy:?}"),
        };
        assert_eq!(pcb.local_addr(), Some(expected), "{policy:?}");
    }
}

#[test]
fn dual_stack_lookup_prefers_inet_then_specific() {
    let table = freebsd(Protocol::Tcp);
    let dual = table.attach(Family::Inet6, Cred::ROOT, Sock(6));
    dual.set_v6only(false).unwrap();
    dual.set_reuse_port(true).unwrap();
    dual.bind(addr("[::]:443")).unwrap();
    dual.listen().unwrap();
    let guard = table.pin();
    let v4_packet = (addr("127.0.0.1:443"), addr("127.0.0.2:1000"));
    assert!(table
        .lookup(v4_packet.0, v4_packet.1, &guard)
        .unwrap()
        .is(&dual));
    drop(guard);

    // FreeBSD: a dual-stack `::` without options would block this bind.
    let blocked = table.attach(Family::Inet, Cred::ROOT, unused());
    assert_eq!(blocked.bind(addr("0.0.0.0:443")), Err(Error::AddrInUse));
    let plain = table.attach(Family::Inet, Cred::ROOT, Sock(4));
    plain.set_reuse_port(true).unwrap();
    plain.bind(addr("127.0.0.1:443")).unwrap();
    plain.listen().unwrap();
    let guard = table.pin();
    assert!(table
        .lookup(v4_packet.0, v4_packet.1, &guard)
        .unwrap()
        .is(&plain));
    let v6 = table
        .lookup(addr("[::1]:443"), addr("[::1]:1000"), &guard)
        .unwrap();
    assert!(v6.is(&dual), "IPv6 packets only reach the IPv6 PCB");
    assert!(table
        .lookup(addr("127.0.0.1:444"), v4_packet.1, &guard)
        .is_none());
}

#[test]
fn lookup_local_has_two_modes() {
    let table = freebsd(Protocol::Tcp);
    let wild = bound(&table, Cred::ROOT, "0.0.0.0:6000", 1);
    let guard = table.pin();
    let exact = table.lookup_local(addr("127.0.0.1:6000"), false, &guard);
    assert!(
        exact.is_none(),
        "exact mode: a wildcard matches only a wildcard"
    );
    assert!(table
        .lookup_local(addr("0.0.0.0:6000"), false, &guard)
        .unwrap()
        .is(&wild));
    assert!(table
        .lookup_local(addr("127.0.0.1:6000"), true, &guard)
        .unwrap()
        .is(&wild));
    assert!(table
        .lookup_local(addr("127.0.0.1:6001"), true, &guard)
        .is_none());
}

#[test]
fn close_hides_the_pcb_and_its_socket_at_once() {
    let table = freebsd(Protocol::Tcp);
    let server = listening(&table, Cred::ROOT, "127.0.0.1:9000", 1);
    let (local, peer) = (addr("127.0.0.1:9000"), addr("127.0.0.2:9999"));
    let conn = server.accept(local, peer, Sock(2)).unwrap();
    let guard = table.pin();
    let held = table.lookup(local, peer, &guard).unwrap();
    assert_eq!(held.socket().unwrap().0, 2);
    conn.close();
    assert!(
        held.socket().is_none(),
        "a view held across close sees no socket"
    );
    assert_eq!(held.state(), State::Dropped);
    let after = table.lookup(local, peer, &guard).unwrap();
    assert!(after.is(&server), "the flow falls back to the listener");
    assert_eq!(table.len(), 1);
}

#[test]
fn iter_and_stats_agree_with_the_table() {
    let table = freebsd(Protocol::Tcp);
    let server = listening(&table, Cred::ROOT, "0.0.0.0:80", 1);
    let _bound = bound(&table, Cred::ROOT, "127.0.0.1:81", 2);
    let conns: Vec<_> = (0..10u16)
        .map(|i| {
            server
                .accept(
                    addr("127.0.0.1:80"),
                    addr(&format!("127.0.0.3:{}", 2000 + i)),
                    unused(),
                )
                .unwrap()
        })
        .collect();
    conns[0].time_wait().unwrap();
    let _unbound = table.attach(Family::Inet, Cred::ROOT, unused());
    let guard = table.pin();
    assert_eq!(table.iter(&guard).count(), 12);
    let stats = table.stats();
    assert_eq!((stats.len, stats.attached), (12, 13));
    assert_eq!(
        (stats.listen, stats.bound, stats.connected, stats.time_wait),
        (1, 1, 9, 1)
    );
    assert_eq!((stats.ports_in_use, stats.most_on_one_port), (2, 11));
    assert_eq!(stats.exact.entries, 10);
    assert!(table
        .iter(&guard)
        .all(|pcb| pcb.flags().state().is_in_table()));
}

#[test]
fn options_are_cached_in_the_flags_word() {
    let table = freebsd(Protocol::Tcp);
    let pcb = table.attach(Family::Inet6, Cred::ROOT, unused());
    assert!(
        pcb.flags().v6only(),
        "FreeBSD's default net.inet6.ip6.v6only=1"
    );
    pcb.set_reuse_addr(true).unwrap();
    pcb.set_reuse_port_lb(true).unwrap();
    assert!(pcb.flags().contains(Flags::REUSEADDR | Flags::REUSEPORT_LB));
    pcb.set_reuse_addr(false).unwrap();
    assert!(!pcb.flags().reuse_addr());
    let linux = table_of_linux();
    let l = linux.attach(Family::Inet6, Cred::ROOT, unused());
    assert!(!l.flags().v6only(), "Linux's default net.ipv6.bindv6only=0");
    assert_eq!(l.set_reuse_port_lb(true), Err(Error::OptionNotAvailable));
}

fn table_of_linux() -> pcbhash::PcbTable<Sock> {
    table(Policy::Linux, Protocol::Tcp)
}

#[test]
fn errors_convert_to_io_errors_with_the_errno() {
    let table = freebsd(Protocol::Tcp);
    let _holder = bound(&table, Cred::ROOT, "127.0.0.1:8080", 1);
    let pcb = table.attach(Family::Inet, Cred::ROOT, unused());
    let error: std::io::Error = pcb.bind(addr("127.0.0.1:8080")).unwrap_err().into();
    assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse);
    assert_eq!(error.raw_os_error(), Some(libc::EADDRINUSE));
}

/// The (policy, protocol) pairs whose unbound `connect()` passes over a port
/// because its 4-tuple is taken, and (FreeBSD) with and without randomised
/// ports.
const CROWDED: [(Policy, Protocol, bool); 5] = [
    (Policy::FreeBsd, Protocol::Tcp, true),
    (Policy::FreeBsd, Protocol::Tcp, false),
    (Policy::FreeBsd, Protocol::Udp, true),
    (Policy::FreeBsd, Protocol::Udp, false),
    (Policy::Linux, Protocol::Tcp, true),
];

/// A table with `ports` ephemeral ports from 40000.
fn crowded_table(
    policy: Policy,
    protocol: Protocol,
    randomized: bool,
    ports: u16,
) -> pcbhash::PcbTable<Sock> {
    pcbhash::PcbTable::<Sock>::builder()
        .policy(policy)
        .protocol(protocol)
        .ephemeral_ports(40000..=40000 + ports - 1)
        .randomized_ports(randomized)
        .seed(0x5eed)
        .build()
}

/// Connects unbound PCBs to `peer` until the range is full; returns them
/// and checks that they hold every port of the range once.
fn fill_toward(table: &pcbhash::PcbTable<Sock>, peer: &str, ports: u16) -> Vec<pcbhash::Pcb<Sock>> {
    let mut conns = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..ports {
        let pcb = table.attach(Family::Inet, Cred::user(1000), unused());
        let local = pcb.connect(addr(peer)).expect("a free port is left");
        assert!(seen.insert(local.port()), "port {} twice", local.port());
        conns.push(pcb);
    }
    assert_eq!(seen, (40000..40000 + ports).collect());
    conns
}

#[test]
fn a_full_range_toward_one_peer_gives_back_exactly_the_ports_closed() {
    for (policy, protocol, randomized) in CROWDED {
        for ports in [64, 256] {
            let what = format!("{policy:?} {protocol:?} randomized={randomized} {ports} ports");
            let table = crowded_table(policy, protocol, randomized, ports);
            let mut conns = fill_toward(&table, "127.0.0.2:80", ports);
            let extra = table.attach(Family::Inet, Cred::user(1000), unused());
            assert_eq!(
                extra.connect(addr("127.0.0.2:80")),
                Err(Error::AddrNotAvailable),
                "{what}: the range is full"
            );
            // Free a few ports in the middle of the order and at its ends.
            for round in 0..3 {
                let mut freed = std::collections::BTreeSet::new();
                for index in [conns.len() - 1, conns.len() / 2 + round, 3 * round + 1] {
                    let pcb = conns.remove(index);
                    freed.insert(pcb.local_addr().unwrap().port());
                    pcb.close();
                }
                let mut found = std::collections::BTreeSet::new();
                for _ in 0..freed.len() {
                    let pcb = table.attach(Family::Inet, Cred::user(1000), unused());
                    let local = pcb.connect(addr("127.0.0.2:80"));
                    let local = local.unwrap_or_else(|e| panic!("{what}: {e} with ports free"));
                    found.insert(local.port());
                    conns.push(pcb);
                }
                assert_eq!(found, freed, "{what}: round {round}");
                let extra = table.attach(Family::Inet, Cred::user(1000), unused());
                assert_eq!(
                    extra.connect(addr("127.0.0.2:80")),
                    Err(Error::AddrNotAvailable),
                    "{what}: full again"
                );
            }
            // The ports are busy for that peer only.
            let other = table.attach(Family::Inet, Cred::user(1000), unused());
            assert!(
                other.connect(addr("127.0.0.2:81")).is_ok(),
                "{what}: another peer"
            );
        }
    }
}

#[test]
fn a_time_wait_holder_keeps_its_port_busy_until_it_goes() {
    for (policy, protocol, randomized) in CROWDED {
        if protocol != Protocol::Tcp {
            continue;
        }
        let what = format!("{policy:?} randomized={randomized}");
        let table = crowded_table(policy, protocol, randomized, 128);
        let mut conns = fill_toward(&table, "127.0.0.2:80", 128);
        let waiting: Vec<_> = [100, 64, 7].into_iter().map(|i| conns.remove(i)).collect();
        for pcb in &waiting {
            pcb.time_wait().unwrap();
        }
        let extra = table.attach(Family::Inet, Cred::user(1000), unused());
        assert_eq!(
            extra.connect(addr("127.0.0.2:80")),
            Err(Error::AddrNotAvailable),
            "{what}: TIME_WAIT twins hold their ports"
        );
        let freed: std::collections::BTreeSet<u16> = waiting
            .into_iter()
            .map(|pcb| {
                let port = pcb.local_addr().unwrap().port();
                pcb.close();
                port
            })
            .collect();
        let found: std::collections::BTreeSet<u16> = (0..freed.len())
            .map(|_| {
                let pcb = table.attach(Family::Inet, Cred::user(1000), unused());
                let port = pcb.connect(addr("127.0.0.2:80")).unwrap().port();
                conns.push(pcb);
                port
            })
            .collect();
        assert_eq!(found, freed, "{what}");
    }
}

#[test]
fn a_udp_disconnect_frees_the_4_tuple_of_a_crowded_peer() {
    // FreeBSD: the disconnected PCB keeps its port (bound to the wildcard),
    // which keeps the port from connect(); closing it frees the port.
    for randomized in [true, false] {
        let table = crowded_table(Policy::FreeBsd, Protocol::Udp, randomized, 64);
        let mut conns = fill_toward(&table, "127.0.0.2:53", 64);
        let gone = conns.remove(40);
        let port = gone.local_addr().unwrap().port();
        gone.disconnect().unwrap();
        let extra = table.attach(Family::Inet, Cred::user(1000), unused());
        assert_eq!(
            extra.connect(addr("127.0.0.2:53")),
            Err(Error::AddrNotAvailable),
            "the port is still bound"
        );
        gone.close();
        assert_eq!(
            extra
                .connect(addr("127.0.0.2:53"))
                .map(|local| local.port()),
            Ok(port)
        );
    }
}

/// A socket that counts its drops.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Runs the epoch's deferred functions until `done` holds (other tests'
/// guards can hold the epoch back for a while); false if it never does
/// within ten seconds.
fn settle_until(done: impl Fn() -> bool) -> bool {
    let table = freebsd(Protocol::Tcp);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done() {
        if std::time::Instant::now() > deadline {
            return false;
        }
        for _ in 0..64 {
            table.flush();
        }
        std::thread::yield_now();
    }
    true
}

/// A table of counted sockets with a listener on `local`, and the counter.
fn counted_listener(local: &str) -> (Arc<AtomicUsize>, PcbTable<Counted>, Pcb<Counted>) {
    let drops = Arc::new(AtomicUsize::new(0));
    let table = PcbTable::<Counted>::new();
    let server = table.attach(Family::Inet, Cred::ROOT, Counted(drops.clone()));
    server.bind(addr(local)).unwrap();
    server.listen().unwrap();
    (drops, table, server)
}

#[test]
fn a_socket_read_under_a_guard_outlives_time_wait_and_close() {
    let (drops, table, server) = counted_listener("127.0.0.1:9100");
    let (local, peer) = (addr("127.0.0.1:9100"), addr("127.0.0.2:1"));
    let conn = server.accept(local, peer, Counted(drops.clone())).unwrap();
    let guard = table.pin();
    let view = table.lookup(local, peer, &guard).unwrap();
    let socket = view.socket().expect("attached");
    conn.time_wait().unwrap();
    // Unreachable at once, for the handle and for views...
    assert!(conn.socket(&table.pin()).is_none());
    assert!(view.socket().is_none());
    conn.close();
    for _ in 0..256 {
        table.flush();
    }
    // ...but not dropped while a guard that read it lives.
    assert_eq!(drops.load(Ordering::SeqCst), 0);
    assert_eq!(Arc::strong_count(&socket.0), 3);
    drop(guard);
    assert!(settle_until(|| drops.load(Ordering::SeqCst) == 1));
    server.close();
    assert!(settle_until(|| drops.load(Ordering::SeqCst) == 2));
    assert_eq!(Arc::strong_count(&drops), 1, "each dropped once");
}

#[test]
fn a_failed_accept_drops_or_hands_back_its_socket() {
    let (drops, table, server) = counted_listener("127.0.0.1:9200");
    let (local, peer) = (addr("127.0.0.1:9200"), addr("127.0.0.2:1"));
    let conn = server.accept(local, peer, Counted(drops.clone())).unwrap();
    // `accept` drops the socket before it returns the error.
    let error = server.accept(local, peer, Counted(drops.clone())).err();
    assert_eq!(error, Some(Error::AddrInUse));
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    // `try_accept` hands it back, undropped, with the error.
    let (error, back) = server
        .try_accept(local, peer, Counted(drops.clone()))
        .map(drop)
        .unwrap_err();
    assert_eq!(error, Error::AddrInUse);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    assert_eq!(table.len(), 2, "the failures changed nothing");
    drop(back);
    assert_eq!(drops.load(Ordering::SeqCst), 2);
    drop((conn, server));
}
