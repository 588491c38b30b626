//! The hot-path APIs: `lookup_batch` agrees with `lookup`, and `socket()`
//! reads the socket without a reference count.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::{addr, freebsd, listening, Sock};
use pcbhash::{Cred, Protocol};

#[test]
fn lookup_batch_answers_like_lookup() {
    let table = freebsd(Protocol::Tcp);
    let server = listening(&table, Cred::ROOT, "0.0.0.0:443", 0);
    let service = addr("127.0.0.1:443");
    let conns: Vec<_> = (1..=300u16)
        .map(|i| {
            let peer = SocketAddr::from(([127, 0, 1, (i % 200) as u8], 1000 + i));
            server.accept(service, peer, Sock(u32::from(i))).unwrap()
        })
        .collect();
    conns[7].time_wait().unwrap();
    // Hits, SYNs to the listener, misses on another port, and mixed families.
    let mut packets = Vec::new();
    for i in 1..=400u16 {
        let peer = SocketAddr::from(([127, 0, 1, (i % 200) as u8], 1000 + i));
        let local = if i % 50 == 0 {
            addr("127.0.0.1:444")
        } else {
            service
        };
        packets.push((local, peer));
    }
    packets.push((service, addr("[::1]:5000")));
    let guard = table.pin();
    for len in [0, 1, 15, 16, 17, packets.len()] {
        let mut out = vec![None; len];
        assert_eq!(table.lookup_batch(&packets[..len], &guard, &mut out), len);
        for (packet, got) in packets.iter().zip(&out) {
            let want = table.lookup(packet.0, packet.1, &guard);
            match (got, want) {
                (Some(got), Some(want)) => assert!(got.same_pcb(&want), "{packet:?}"),
                (None, None) => {}
                other => panic!("{packet:?}: batch and single disagree: {other:?}"),
            }
        }
    }
    let mut short = vec![None; 3];
    assert_eq!(
        table.lookup_batch(&packets, &guard, &mut short),
        3,
        "bounded by the output"
    );
}

/// `S = Arc<T>`, the shared ownership a stack opts into: reading the socket
/// takes no reference count, and time_wait() detaches it at once while a
/// reference read under a guard stays valid with the guard.
#[test]
fn socket_is_read_without_a_reference_count() {
    let table = pcbhash::PcbTable::<Arc<Sock>>::new();
    let server = table.attach(pcbhash::Family::Inet, Cred::ROOT, Arc::new(Sock(1)));
    server.bind(addr("127.0.0.1:80")).unwrap();
    server.listen().unwrap();
    let socket = Arc::new(Sock(42));
    let (local, peer) = (addr("127.0.0.1:80"), addr("127.0.0.2:9"));
    let conn = server.accept(local, peer, socket.clone()).unwrap();
    let guard = table.pin();
    let view = table.lookup(local, peer, &guard).unwrap();
    let before = Arc::strong_count(&socket);
    let borrowed = view.socket().expect("live socket");
    assert_eq!(borrowed.0, 42);
    assert!(Arc::ptr_eq(borrowed, &socket));
    assert_eq!(
        Arc::strong_count(&socket),
        before,
        "no reference count taken"
    );
    conn.time_wait().unwrap();
    assert!(view.socket().is_none(), "detached at TIME_WAIT");
    // The reference taken before stays valid while the guard lives.
    assert_eq!(borrowed.0, 42);
    drop(guard);
    drop(conn);
    // Dropped through the epoch: other tests' guards may delay it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while Arc::strong_count(&socket) > 1 && std::time::Instant::now() < deadline {
        table.flush();
        std::thread::yield_now();
    }
    assert_eq!(Arc::strong_count(&socket), 1, "the table let go of it");
}
