//! Keyed hashing keeps probes short for adversarial tuple sets.
//!
//! Two sets an attacker (or just a busy client) produces, 2^20 tuples each:
//! one client address with sequential source ports (spread over 17 server
//! ports), and tuples that differ only in the peer address. For both, the
//! number of exact-index entries displaced past their home bucket (each
//! costs its lookups a second bucket line) must be no worse than 1.5x the
//! number for 2^20 uniformly random tuples in the same configuration, and
//! the longest probe no longer than the random set's plus two buckets.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use common::{unused, Sock};
use pcbhash::{Cred, Family, PcbTable};

const N: u32 = 1 << 20;
const SERVER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

/// Inserts `N` connections produced by `tuple(i) -> (server port, peer)` with
/// `accept` on one listener per server port, and returns the displaced
/// entries and the longest probe.
fn displacement(tuple: impl Fn(u32) -> (u16, SocketAddr)) -> (usize, usize) {
    let table = PcbTable::<Sock>::builder().seed(0xC0FFEE).build();
    let mut listeners = std::collections::HashMap::new();
    let mut conns = Vec::with_capacity(N as usize);
    for i in 0..N {
        let (port, peer) = tuple(i);
        let local = SocketAddr::new(IpAddr::V4(SERVER), port);
        let listener = listeners.entry(port).or_insert_with(|| {
            let pcb = table.attach(Family::Inet, Cred::ROOT, unused());
            pcb.bind(local).unwrap();
            pcb.listen().unwrap();
            pcb
        });
        conns.push(
            listener
                .accept(local, peer, unused())
                .expect("unique tuples"),
        );
    }
    let stats = table.stats();
    assert_eq!(stats.exact.entries, N as usize);
    (stats.exact.displaced, stats.exact.longest_chain)
}

fn random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn adversarial_tuples_displace_no_more_than_random() {
    let sequential_ports = displacement(|i| {
        let peer = SocketAddr::from(([10, 1, 2, 3], 1 + (i % 65535) as u16));
        (8000 + (i / 65535) as u16, peer)
    });
    let peer_addresses = displacement(|i| {
        let peer = SocketAddr::from((Ipv4Addr::from(0x0A00_0000 + i), 4242));
        (8000, peer)
    });
    let seen = std::cell::RefCell::new(std::collections::HashSet::new());
    let state = std::cell::Cell::new(0x9E37_79B9_7F4A_7C15u64);
    let uniform = displacement(|_| loop {
        let mut s = state.get();
        let r = random(&mut s);
        state.set(s);
        // Unicast peers only: 1.0.0.0 up to 223.255.255.255.
        let ip = Ipv4Addr::from(0x0100_0000 + (r >> 16) as u32 % 0xDF00_0000);
        let peer = SocketAddr::from((ip, (r as u16).max(1)));
        let port = 8000 + ((r >> 48) % 16) as u16;
        if seen.borrow_mut().insert((port, peer)) {
            break (port, peer);
        }
    });
    println!(
        "displaced, longest probe: sequential ports {sequential_ports:?}, \
         peer addresses {peer_addresses:?}, uniform {uniform:?}"
    );
    // Some entries are displaced at the index's load, or the test would
    // compare nothing.
    assert!(uniform.0 > 0, "{uniform:?}");
    let bound = uniform.0 as f64 * 1.5;
    for (name, (displaced, probe)) in [
        ("sequential ports", sequential_ports),
        ("peer addresses", peer_addresses),
    ] {
        assert!(
            displaced as f64 <= bound,
            "{name}: {displaced} displaced > 1.5 x {}",
            uniform.0
        );
        assert!(
            probe <= uniform.1 + 2,
            "{name}: a probe of {probe} buckets, {} for random tuples",
            uniform.1
        );
    }
}
