//! The model alone against three Linux UDP delivery rules, with the answers
//! the running kernel gave (the table and the kernel are compared side by
//! side in the crate's `linux_reuseport_life.rs`):
//!
//! - of several sockets connected over one 4-tuple, the one that connected
//!   last receives (`udp_lib_hash4` adds at the head of the 4-tuple's list);
//! - an `Inet6` socket keeps its last peer after `disconnect()`
//!   (`sk_v6_daddr`): IPv6 datagrams from that address score it higher,
//!   from another address they miss it;
//! - the walk of a port's list stops at the first socket that outscores
//!   every one before it and asks a reuseport group, even if a better
//!   socket follows.

use std::net::SocketAddr;

use pcbhash::Cred;
use pcbhash_model::{Expect, Model, Opt, PolicySel, ProtoSel};

fn at(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

const RANGE: (u16, u16) = (40000, 40003);

fn udp() -> Model {
    Model::new(PolicySel::Linux, ProtoSel::Udp, RANGE)
}

/// (family, local, peer): two sockets with SO_REUSEADDR on one address and
/// port connect to one peer; the later one receives, and after it
/// disconnects the earlier one does again.
#[test]
fn linux_udp_last_connected_receives() {
    let rows = [
        (false, "127.0.0.1:20000", "127.0.0.2:30000"),
        (true, "[::1]:20000", "[::1]:30000"),
    ];
    for (v6, local, peer) in rows {
        let mut m = udp();
        let mut ids = Vec::new();
        for _ in 0..2 {
            let id = m.attach(v6, Cred::ROOT);
            m.set_opt(id, Opt::ReuseAddr, true).expect("SO_REUSEADDR");
            m.bind(id, at(local), None).expect("bind");
            m.connect(id, at(peer), None).expect("connect");
            ids.push(id);
        }
        assert_eq!(
            m.lookup(at(local), at(peer)),
            Expect::One(ids[1]),
            "{local}"
        );
        m.disconnect(ids[1]).expect("disconnect");
        assert_eq!(
            m.lookup(at(local), at(peer)),
            Expect::One(ids[0]),
            "{local}"
        );
    }
}

/// A on `::` connects to `[::1]:30000` and disconnects; B binds `::`
/// afterwards, so it is listed first. (last peer of A, source of the
/// datagram, receiver: 0 for A, 1 for B, `None` for nobody with A alone).
#[test]
fn linux_udp_last_ipv6_peer_filters_and_scores() {
    let rows: [(&str, &str, Option<usize>, Option<usize>); 3] = [
        ("[::1]:30000", "[::1]:50000", Some(0), Some(0)),
        ("[::ffff:127.0.0.1]:30000", "[::1]:50000", Some(1), None),
        ("[::1]:30000", "127.0.0.1:50000", Some(1), Some(0)),
    ];
    for (peer, from, with_b, alone) in rows {
        let to = if from.starts_with('[') {
            "[::1]:20000"
        } else {
            "127.0.0.1:20000"
        };
        let mut m = udp();
        let a = m.attach(true, Cred::ROOT);
        m.set_opt(a, Opt::ReuseAddr, true).expect("SO_REUSEADDR");
        m.bind(a, at("[::]:20000"), None).expect("bind");
        m.connect(a, at(peer), None).expect("connect");
        m.disconnect(a).expect("disconnect");
        let alone_got = m.lookup(at(to), at(from));
        let b = m.attach(true, Cred::ROOT);
        m.set_opt(b, Opt::ReuseAddr, true).expect("SO_REUSEADDR");
        m.bind(b, at("[::]:20000"), None).expect("bind");
        let ids = [a, b];
        let want = |n: Option<usize>| n.map_or(Expect::None, |n| Expect::One(ids[n]));
        assert_eq!(m.lookup(at(to), at(from)), want(with_b), "{peer} {from}");
        assert_eq!(alone_got, want(alone), "{peer} {from}, A alone");
    }
}

/// N (AF_INET, `0.0.0.0`) binds first; A (AF_INET6, `::`) binds without
/// SO_REUSEPORT, so it goes to the head of the list, then sets it; B binds
/// with it and founds a group with A. IPv4 datagrams go to the group,
/// though N scores higher.
#[test]
fn linux_udp_group_listed_first_takes_the_packet() {
    let mut m = udp();
    let n = m.attach(false, Cred::ROOT);
    m.set_opt(n, Opt::ReuseAddr, true).expect("SO_REUSEADDR");
    m.bind(n, at("0.0.0.0:20000"), None).expect("bind N");
    let a = m.attach(true, Cred::ROOT);
    m.set_opt(a, Opt::ReuseAddr, true).expect("SO_REUSEADDR");
    m.bind(a, at("[::]:20000"), None).expect("bind A");
    let (to, from) = (at("127.0.0.1:20000"), at("127.0.0.1:50000"));
    assert_eq!(m.lookup(to, from), Expect::One(n), "no group yet");
    m.set_opt(a, Opt::ReusePort, true).expect("SO_REUSEPORT");
    let b = m.attach(true, Cred::ROOT);
    m.set_opt(b, Opt::ReuseAddr, true).expect("SO_REUSEADDR");
    m.set_opt(b, Opt::ReusePort, true).expect("SO_REUSEPORT");
    m.bind(b, at("[::]:20000"), None).expect("bind B");
    assert_eq!(m.lookup(to, from), Expect::AnyOf(vec![a, b]));
}

/// A (last peer `::1`) binds `[::1]:20000` first; B binds it after A and
/// connects to `[::1]:0`. IPv6 gives both one point for `sk_v6_daddr`, so
/// the one listed first receives: A when B has SO_REUSEPORT (AF_INET6
/// sockets with it go to the tail), B otherwise. IPv4 gives a connected
/// socket four points: with `127.0.0.1` instead, B always receives.
#[test]
fn linux_udp_last_peer_ties_with_a_port_zero_peer() {
    let rows = [
        ("[::1]", true, 0),
        ("[::1]", false, 1),
        ("127.0.0.1", true, 1),
        ("127.0.0.1", false, 1),
    ];
    for (ip, b_reuse_port, want) in rows {
        let v6 = ip.starts_with('[');
        let mut m = udp();
        let a = m.attach(v6, Cred::ROOT);
        m.set_opt(a, Opt::ReuseAddr, true).expect("SO_REUSEADDR");
        m.bind(a, at(&format!("{ip}:20000")), None).expect("bind A");
        m.connect(a, at(&format!("{ip}:30000")), None)
            .expect("connect A");
        m.disconnect(a).expect("disconnect A");
        let b = m.attach(v6, Cred::ROOT);
        m.set_opt(b, Opt::ReuseAddr, true).expect("SO_REUSEADDR");
        m.set_opt(b, Opt::ReusePort, b_reuse_port)
            .expect("SO_REUSEPORT");
        m.bind(b, at(&format!("{ip}:20000")), None).expect("bind B");
        m.connect(b, at(&format!("{ip}:0")), None)
            .expect("connect B");
        let got = m.lookup(at(&format!("{ip}:20000")), at(&format!("{ip}:50000")));
        assert_eq!(
            got,
            Expect::One([a, b][want]),
            "{ip}, B with SO_REUSEPORT: {b_reuse_port}"
        );
    }
}

/// Of several sockets connected to port 0 of one address, the best-scoring
/// then the first listed receives, not the last connected: X (AF_INET)
/// before Y (AF_INET6 on `::ffff:127.0.0.1`) for IPv4; of two AF_INET6 on
/// `::1`, Y, which bound last and is listed first, though X connected last.
#[test]
fn linux_udp_port_zero_peers_rank_like_unconnected_ones() {
    let rows = [
        (
            (false, "127.0.0.1"),
            (true, "[::ffff:127.0.0.1]"),
            "127.0.0.1",
            0,
        ),
        ((true, "[::1]"), (true, "[::1]"), "[::1]", 1),
    ];
    for ((x6, x_ip), (y6, y_ip), peer, want) in rows {
        let mut m = udp();
        let x = m.attach(x6, Cred::ROOT);
        m.set_opt(x, Opt::ReuseAddr, true).expect("SO_REUSEADDR");
        m.bind(x, at(&format!("{x_ip}:20000")), None)
            .expect("bind X");
        let y = m.attach(y6, Cred::ROOT);
        m.set_opt(y, Opt::ReuseAddr, true).expect("SO_REUSEADDR");
        m.bind(y, at(&format!("{y_ip}:20000")), None)
            .expect("bind Y");
        let zero = at(&format!("{peer}:0"));
        let (first, last) = if x6 { (y, x) } else { (x, y) };
        m.connect(first, zero, None).expect("connect first");
        m.connect(last, zero, None).expect("connect last");
        let got = m.lookup(at(&format!("{peer}:20000")), at(&format!("{peer}:50000")));
        assert_eq!(got, Expect::One([x, y][want]), "{peer}");
    }
}
