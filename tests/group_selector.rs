//! `Builder::group_selector`: the selector's choice of a reuseport / LB
//! group member stands, `None` and an out-of-range index fall back to the
//! keyed hash, and what the selector is shown of the packet.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use pcbhash::{Builder, Cred, Device, Family, GroupPacket, Pcb, PcbTable, Policy, Protocol};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const SERVICE: &str = "127.0.0.1:8080";
const MEMBERS: u32 = 4;

/// A group of four members on [`SERVICE`], sockets 0 to 3 in join order:
/// SO_REUSEPORT listeners (Linux), SO_REUSEPORT_LB listeners (FreeBSD), or
/// bound UDP sockets.
fn group(t: &PcbTable<u32>, policy: Policy, protocol: Protocol) -> Vec<Pcb<u32>> {
    (0..MEMBERS)
        .map(|id| {
            let pcb = t.attach(Family::Inet, Cred::ROOT, id);
            match policy {
                Policy::Linux => pcb.set_reuse_port(true).unwrap(),
                _ => pcb.set_reuse_port_lb(true).unwrap(),
            }
            pcb.bind(addr(SERVICE)).unwrap();
            if protocol == Protocol::Tcp {
                pcb.listen().unwrap();
            }
            pcb
        })
        .collect()
}

fn build(
    policy: Policy,
    protocol: Protocol,
    select: Option<fn(&GroupPacket<'_>) -> Option<usize>>,
) -> PcbTable<u32> {
    let builder = Builder::new().policy(policy).protocol(protocol).seed(99);
    match select {
        Some(select) => builder.group_selector(select),
        None => builder,
    }
    .build()
}

const CASES: [(Policy, Protocol); 3] = [
    (Policy::Linux, Protocol::Tcp),
    (Policy::Linux, Protocol::Udp),
    (Policy::FreeBsd, Protocol::Tcp),
];

fn remote(i: u16) -> SocketAddr {
    SocketAddr::new(addr("127.0.0.2:0").ip(), 30000 + i)
}

/// The socket that looking up `remote` → [`SERVICE`] finds.
fn found(t: &PcbTable<u32>, remote: SocketAddr) -> Option<u32> {
    let guard = t.pin();
    t.lookup(addr(SERVICE), remote, &guard)
        .and_then(|pcb| pcb.socket().copied())
}

/// A selector that sends each flow to the member whose socket is the
/// remote port modulo 4, found through `GroupPacket::socket`: every lookup
/// lands there, though members leave and join (which renumbers them).
#[test]
fn the_selectors_choice_stands() {
    fn by_port(packet: &GroupPacket<'_>) -> Option<usize> {
        let want = u32::from(packet.remote.port()) % MEMBERS;
        (0..packet.members()).find(|&i| packet.socket::<u32>(i) == Some(&want))
    }
    for (policy, protocol) in CASES {
        let t = build(policy, protocol, Some(by_port));
        let mut members = group(&t, policy, protocol);
        for i in 0..256 {
            let r = remote(i);
            assert_eq!(
                found(&t, r),
                Some(u32::from(r.port()) % MEMBERS),
                "{policy:?} {protocol:?}"
            );
        }
        // Member 0 leaves: the last takes its number; flows of socket 0 now
        // fall back to the keyed hash, the others keep their member.
        drop(members.remove(0));
        for i in 0..256 {
            let r = remote(i);
            let want = u32::from(r.port()) % MEMBERS;
            let got = found(&t, r).expect("a member");
            if want != 0 {
                assert_eq!(got, want, "{policy:?} {protocol:?}");
            } else {
                assert_ne!(got, 0);
            }
        }
    }
}

/// A fixed index picks the member of that number: the join order.
#[test]
fn an_index_is_the_members_number_in_join_order() {
    for (policy, protocol) in CASES {
        for index in 0..MEMBERS as usize {
            let t = Builder::new()
                .policy(policy)
                .protocol(protocol)
                .group_selector(move |_| Some(index))
                .build::<u32>();
            let _members = group(&t, policy, protocol);
            for i in 0..32 {
                assert_eq!(found(&t, remote(i)), Some(index as u32));
            }
        }
    }
}

/// `None`, an index equal to the member count, and `usize::MAX` all give
/// what a table without a selector gives (same seed, same members): the
/// keyed hash's member. The selector is asked each time.
#[test]
fn declining_or_out_of_range_falls_back_to_the_keyed_hash() {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let selectors: [fn(&GroupPacket<'_>) -> Option<usize>; 3] = [
        |_| {
            CALLS.fetch_add(1, Ordering::Relaxed);
            None
        },
        |packet| {
            CALLS.fetch_add(1, Ordering::Relaxed);
            Some(packet.members())
        },
        |_| {
            CALLS.fetch_add(1, Ordering::Relaxed);
            Some(usize::MAX)
        },
    ];
    for (policy, protocol) in CASES {
        let plain = build(policy, protocol, None);
        let _plain_members = group(&plain, policy, protocol);
        let expected: Vec<Option<u32>> = (0..256).map(|i| found(&plain, remote(i))).collect();
        let spread: std::collections::HashSet<_> = expected.iter().collect();
        assert!(spread.len() > 1, "the keyed hash spreads flows");
        for select in selectors {
            let t = build(policy, protocol, Some(select));
            let _members = group(&t, policy, protocol);
            let before = CALLS.load(Ordering::Relaxed);
            let got: Vec<Option<u32>> = (0..256).map(|i| found(&t, remote(i))).collect();
            assert_eq!(got, expected, "{policy:?} {protocol:?}");
            assert!(CALLS.load(Ordering::Relaxed) >= before + 256);
        }
    }
}

/// A packet as a selector saw it: addresses, device, members, hash.
type Seen = (SocketAddr, SocketAddr, Option<Device>, usize, u64);

/// What the selector sees: the packet's addresses as on the wire, the
/// device it arrived on, the member count and the keyed hash (the same for
/// the same flow); exact hits never ask it.
#[test]
fn the_selector_sees_the_packet() {
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let record = seen.clone();
    let t = Builder::new()
        .policy(Policy::Linux)
        .group_selector(move |p| {
            let row = (p.local, p.remote, p.device, p.members(), p.hash);
            record.lock().unwrap().push(row);
            None
        })
        .build::<u32>();
    let members = group(&t, Policy::Linux, Protocol::Tcp);
    let guard = t.pin();
    let (local, from) = (addr(SERVICE), remote(1));
    t.lookup(local, from, &guard).unwrap();
    t.lookup_on(Device(3), local, from, &guard).unwrap();
    // A dual-stack peer's IPv4 packet, v4-mapped by the caller.
    t.lookup(
        addr("[::ffff:127.0.0.1]:8080"),
        addr("[::ffff:127.0.0.2]:30001"),
        &guard,
    )
    .unwrap();
    let rows = std::mem::take(&mut *seen.lock().unwrap());
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].0, local);
    assert_eq!(rows[0].1, from);
    assert_eq!(rows[0].2, None);
    assert_eq!(rows[1].2, Some(Device(3)));
    assert!(rows.iter().all(|r| r.3 == MEMBERS as usize));
    assert_eq!(rows[0].4, rows[1].4);
    assert_eq!(rows[2], rows[0]);

    // The passive open: the connection answers its flow; no selector.
    let conn = members[2].accept(local, from, 77).unwrap();
    let found = t
        .lookup(local, from, &guard)
        .and_then(|p| p.socket().copied());
    assert_eq!(found, Some(77));
    assert!(seen.lock().unwrap().is_empty());
    drop(conn);
}
