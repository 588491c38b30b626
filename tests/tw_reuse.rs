//! `tcp_tw_reuse` in the table alone: a reusable TIME_WAIT twin gives its
//! 4-tuple to an unbound `connect()` even after the busy-port hint of the
//! destination has marked every port, and only the twins the stack marked.

use pcbhash::policy::TwReuse;
use pcbhash::{Cred, Error, Family, PcbTable, Policy, State};

#[test]
fn a_marked_twin_is_found_past_the_busy_port_hint() {
    // The selector routes the peer, which is not a loopback one.
    let table = PcbTable::<()>::builder()
        .policy(Policy::Linux)
        .ephemeral_ports(40000..=40127)
        .tcp_tw_reuse(TwReuse::On)
        .source_address(|_| Some("10.0.0.2".parse().unwrap()))
        .seed(3)
        .build();
    let server = "10.0.0.1:443".parse().unwrap();
    let mut twins = Vec::new();
    for _ in 0..128 {
        let pcb = table.attach(Family::Inet, Cred::user(1000), ());
        pcb.connect(server).expect("a free port");
        pcb.time_wait().unwrap();
        twins.push(pcb);
    }
    // Every port's 4-tuple is in TIME_WAIT; several failures install the
    // destination's hint.
    for _ in 0..3 {
        let late = table.attach(Family::Inet, Cred::user(1000), ());
        assert_eq!(late.connect(server), Err(Error::AddrNotAvailable));
    }
    let marked = &twins[77];
    let port = marked.local_addr().unwrap().port();
    marked.allow_tw_reuse().unwrap();
    let next = table.attach(Family::Inet, Cred::user(1000), ());
    assert_eq!(next.connect(server).unwrap().port(), port);
    assert_eq!(marked.state(), State::Dropped);
    // The others stay, and nothing else is free.
    let last = table.attach(Family::Inet, Cred::user(1000), ());
    assert_eq!(last.connect(server), Err(Error::AddrNotAvailable));
    let waiting = twins
        .iter()
        .filter(|t| t.state() == State::TimeWait)
        .count();
    assert_eq!(waiting, 127);
}

#[test]
fn loopback_mode_takes_only_loopback_twins() {
    let table = PcbTable::<()>::builder()
        .policy(Policy::Linux)
        .ephemeral_ports(40000..=40000)
        .tcp_tw_reuse(TwReuse::Loopback)
        .source_address(|peer| {
            Some(
                if peer.is_loopback() {
                    "127.0.0.1"
                } else {
                    "10.0.0.2"
                }
                .parse()
                .unwrap(),
            )
        })
        .build();
    for (server, reused) in [("10.0.0.1:443", false), ("127.0.0.1:443", true)] {
        let server = server.parse().unwrap();
        let first = table.attach(Family::Inet, Cred::user(1000), ());
        first.connect(server).unwrap();
        first.time_wait().unwrap();
        first.allow_tw_reuse().unwrap();
        let second = table.attach(Family::Inet, Cred::user(1000), ());
        assert_eq!(second.connect(server).is_ok(), reused, "{server}");
        assert_eq!(first.state() == State::Dropped, reused, "{server}");
        drop(second);
        drop(first);
    }
    // Only a TIME_WAIT PCB can be marked.
    let fresh = table.attach(Family::Inet, Cred::user(1000), ());
    assert_eq!(fresh.allow_tw_reuse(), Err(Error::InvalidInput));
}
