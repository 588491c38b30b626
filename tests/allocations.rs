//! What the write paths allocate, counted by the allocator: an accept +
//! close pair allocates the PCB and nothing else (its first place in a
//! port list is a node inside it), and a bound PCB that connects, which
//! moves between its port's lists, allocates one list node more.
//! (Warm-ups and the epoch's bags of deferred functions, one per 64
//! deferrals, are why the bounds are not exact.)
//!
//! One test in this binary: the counts are process-wide.

mod common;

use std::net::SocketAddr;

use common::{addr, freebsd, listening, Sock};
use pcbhash::{Cred, Family, Protocol};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Allocations made while `run` runs.
fn allocations(run: impl FnOnce()) -> u64 {
    let before = dhat::HeapStats::get().total_blocks;
    run();
    dhat::HeapStats::get().total_blocks - before
}

fn peer(i: u32) -> SocketAddr {
    SocketAddr::from(([127, 1, (i >> 8) as u8, i as u8], 40_000))
}

#[test]
fn an_accept_and_close_pair_allocates_only_the_pcb() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let table = freebsd(Protocol::Tcp);
    let server = listening(&table, Cred::ROOT, "0.0.0.0:443", 0);
    let service = addr("127.0.0.1:443");
    // Warm up: the port's page, the exact index's first growth, the
    // epoch's bags.
    let warm: Vec<_> = (0..2_000)
        .map(|i| server.accept(service, peer(i), Sock(i)).unwrap())
        .collect();
    drop(warm);
    let pairs = 1_000u32;
    let mut conns = Vec::with_capacity(pairs as usize);
    let counted = allocations(|| {
        for i in 0..pairs {
            conns.push(server.accept(service, peer(i), Sock(i)).unwrap());
        }
        for conn in conns.drain(..) {
            conn.close();
        }
    });
    // One per pair, and the epoch's bags of deferred functions: one per 64
    // deferrals, and a close makes one deferral (the exact index's and the
    // port list's counts of the PCB go with its socket), so under 1.03 per
    // pair. Three deferrals per close, as before, made 1.05.
    assert!(
        counted >= u64::from(pairs) && counted * 100 < u64::from(pairs) * 103,
        "{counted} allocations for {pairs} accept + close pairs"
    );

    // A bound PCB's connect moves it from the wildcard list to the
    // connected one, through a node of its own allocation: one more than
    // the same PCB bound and closed.
    let connects = 200u16;
    let local = |i: u16| SocketAddr::from(([127, 0, 0, 1], 20_000 + i));
    let bind_close = allocations(|| {
        for i in 0..connects {
            let pcb = table.attach(Family::Inet, Cred::ROOT, Sock(u32::from(i)));
            pcb.bind(local(i)).unwrap();
            pcb.close();
        }
    });
    let bind_connect_close = allocations(|| {
        for i in 0..connects {
            let pcb = table.attach(Family::Inet, Cred::ROOT, Sock(u32::from(i)));
            pcb.bind(local(i)).unwrap();
            pcb.connect(peer(u32::from(i))).unwrap();
            pcb.close();
        }
    });
    let nodes = bind_connect_close - bind_close;
    assert!(
        nodes >= u64::from(connects) && nodes * 10 < u64::from(connects) * 11,
        "{nodes} allocations more for {connects} connects of bound PCBs \
         ({bind_close} bound and closed, {bind_connect_close} bound, connected and closed)"
    );
}
