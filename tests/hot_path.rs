//! The hot-path APIs agree with the plain ones: `lookup_batch` with `lookup`,
//! `socket_ref` with `socket`.

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
            server
                .accept(service, peer, Arc::new(Sock(u32::from(i))))
                .unwrap()
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

#[test]
fn socket_ref_follows_the_slot_without_a_reference_count() {
    let table = freebsd(Protocol::Tcp);
    let server = listening(&table, Cred::ROOT, "127.0.0.1:80", 0);
    let socket = Arc::new(Sock(42));
    let (local, peer) = (addr("127.0.0.1:80"), addr("127.0.0.2:9"));
    let conn = server.accept(local, peer, socket.clone()).unwrap();
    let guard = table.pin();
    let view = table.lookup(local, peer, &guard).unwrap();
    let before = Arc::strong_count(&socket);
    let borrowed = view.socket_ref().expect("live socket");
    assert_eq!(borrowed.0, 42);
    assert_eq!(
        Arc::strong_count(&socket),
        before,
        "no reference count taken"
    );
    conn.time_wait().unwrap();
    assert!(view.socket_ref().is_none(), "detached at TIME_WAIT");
    // The reference taken before stays valid while the guard lives.
    assert_eq!(borrowed.0, 42);
    drop(guard);
    drop(conn);
    table.flush();
}
