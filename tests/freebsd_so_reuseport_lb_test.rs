//! FreeBSD tests/sys/netinet/so_reuseport_lb_test.c.
//!
//! - `basic_ipv4` / `basic_ipv6`: 16 SO_REUSEPORT_LB listeners share one port;
//!   each must get more than 1/8 of its fair share of 16384 flows.
//! - `double_listen_ipv4` / `_ipv6`: listening twice on an LB socket works.
//! - `bind_without_listen`: 100 LB sockets bound to one address and port
//!   beside another that never listens; listen on the 100; all succeed.
//! - `connect_not_bound` / `connect_bound`: connect on a TCP LB socket gives
//!   EOPNOTSUPP.
//! - `connect_udp` / `connect_udp6`: a connected UDP LB socket receives only
//!   from its peer.

mod common;

use std::net::{IpAddr, SocketAddr};

use common::{addr, family_of, freebsd, unused, Sock};
use pcbhash::{Cred, Error, Pcb, PcbTable, Protocol, State};

fn lb_listener(table: &PcbTable<Sock>, local: SocketAddr, id: u32) -> Pcb<Sock> {
    let pcb = table.attach(family_of(local), Cred::ROOT, Sock(id));
    pcb.set_reuse_port_lb(true).unwrap();
    pcb.bind(local).unwrap();
    pcb.listen().unwrap();
    pcb
}

fn basic(loopback: &str) {
    const SOCKETS: usize = 16;
    const FLOWS: usize = 16384;
    let table = freebsd(Protocol::Tcp);
    let first = lb_listener(&table, SocketAddr::new(loopback.parse().unwrap(), 0), 0);
    let service = first.local_addr().unwrap();
    let mut listeners = vec![first];
    for id in 1..SOCKETS as u32 {
        listeners.push(lb_listener(&table, service, id));
    }
    assert_eq!(table.stats().group_members, SOCKETS);

    let mut counts = [0usize; SOCKETS];
    let guard = table.pin();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..FLOWS {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let peer_ip: IpAddr = match service.ip() {
            IpAddr::V4(_) => IpAddr::from([127, 0, (state >> 8) as u8, state as u8]),
            IpAddr::V6(_) => IpAddr::from([0, 0, 0, 0, 0, 0, (state >> 16) as u16, 1]),
        };
        let peer = SocketAddr::new(peer_ip, 1024 + (state >> 24) as u16 % 60000);
        let owner = table.lookup(service, peer, &guard).expect("a listener");
        counts[owner.socket().unwrap().0 as usize] += 1;
        // The same flow keeps its listener while the group is unchanged.
        let again = table.lookup(service, peer, &guard).unwrap();
        assert!(again.same_pcb(&owner));
    }
    let minimum = FLOWS / SOCKETS / 8;
    for (id, count) in counts.iter().enumerate() {
        assert!(
            *count > minimum,
            "uneven balancing: listener {id} got {count} of {FLOWS} (counts {counts:?})"
        );
    }
}

#[test]
fn freebsd_so_reuseport_lb_basic_ipv4() {
    basic("127.0.0.1");
}

#[test]
fn freebsd_so_reuseport_lb_basic_ipv6() {
    basic("::1");
}

#[test]
fn freebsd_so_reuseport_lb_double_listen() {
    for local in ["127.0.0.1:0", "[::1]:0"] {
        let table = freebsd(Protocol::Tcp);
        let pcb = lb_listener(&table, addr(local), 0);
        pcb.listen().expect("second listen");
        assert_eq!(pcb.state(), State::Listen);
        assert_eq!(
            table.stats().group_members,
            1,
            "listening twice does not join twice"
        );
        pcb.close();
        assert!(table.is_empty());
    }
}

#[test]
fn freebsd_so_reuseport_lb_bind_without_listen() {
    let table = freebsd(Protocol::Tcp);
    let idle = table.attach(pcbhash::Family::Inet, Cred::ROOT, unused());
    idle.set_reuse_port_lb(true).unwrap();
    let local = idle.bind(addr("127.0.0.1:0")).unwrap();
    let mut others = Vec::new();
    for _ in 0..100 {
        let pcb = table.attach(pcbhash::Family::Inet, Cred::ROOT, unused());
        pcb.set_reuse_port_lb(true).unwrap();
        pcb.bind(local).expect("bind beside an LB socket");
        others.push(pcb);
    }
    assert_eq!(
        table.stats().group_members,
        0,
        "TCP members wait for listen()"
    );
    for pcb in &others {
        pcb.listen().expect("listen");
    }
    assert_eq!(table.stats().group_members, 100);
    assert_eq!(table.len(), 101);
    drop(others);
    drop(idle);
    assert!(table.is_empty());
    assert_eq!(table.stats().attached, 0);
}

#[test]
fn freebsd_so_reuseport_lb_connect_gives_eopnotsupp() {
    for bind_first in [false, true] {
        let table = freebsd(Protocol::Tcp);
        let server = lb_listener(&table, addr("127.0.0.1:0"), 0);
        let target = server.local_addr().unwrap();
        let client = table.attach(pcbhash::Family::Inet, Cred::ROOT, unused());
        client.set_reuse_port_lb(true).unwrap();
        if bind_first {
            client.bind(addr("127.0.0.1:0")).unwrap();
        }
        let before = table.len();
        assert_eq!(
            client.connect(target),
            Err(Error::NotSupported),
            "bound first: {bind_first}"
        );
        assert_eq!(table.len(), before, "nothing changed");
        assert_eq!(
            client.state(),
            if bind_first {
                State::Bound
            } else {
                State::Closed
            }
        );
    }
}

#[test]
fn freebsd_so_reuseport_lb_connect_udp() {
    for loopback in ["127.0.0.1:0", "[::1]:0"] {
        let table = freebsd(Protocol::Udp);
        let local = addr(loopback);
        let s1 = table.attach(family_of(local), Cred::ROOT, Sock(1));
        s1.set_reuse_port_lb(true).unwrap();
        let s1_addr = s1.bind(local).unwrap();
        assert_eq!(table.stats().group_members, 1, "a UDP member joins at bind");
        let s2 = common::bound(&table, Cred::ROOT, loopback, 2);
        let s3 = common::bound(&table, Cred::ROOT, loopback, 3);
        s1.connect(s3.local_addr().unwrap())
            .expect("UDP connect on an LB socket");
        let guard = table.pin();
        let from_s2 = table.lookup(s1_addr, s2.local_addr().unwrap(), &guard);
        assert!(
            from_s2.is_none(),
            "s2's datagram is not delivered to s1: {from_s2:?}"
        );
        let from_s3 = table
            .lookup(s1_addr, s3.local_addr().unwrap(), &guard)
            .expect("s3 reaches s1");
        assert!(from_s3.is(&s1));
    }
}
