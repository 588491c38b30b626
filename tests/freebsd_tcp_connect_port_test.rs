//! FreeBSD tests/sys/netinet/tcp_connect_port_test.c (`basic_ipv4`,
//! `basic_ipv6`).
//!
//! With port randomisation off, a listener binds an ephemeral port; then 65536
//! times an unbound client connects to it, the connection is accepted, and
//! both are closed. More connects than the range has ports, so the sequential
//! scan wraps past the listener's port: a client must never be given it (the
//! wildcard lookup in `in_pcb_lport_dest` sees the listener).

mod common;

use common::{addr, family_of, unused, Sock};
use pcbhash::{Cred, PcbTable, Protocol, State};

fn run(listen_on: &str) -> usize {
    let table = PcbTable::<Sock>::builder()
        .protocol(Protocol::Tcp)
        .randomized_ports(false)
        .seed(1)
        .build();
    let local = addr(listen_on);
    let listener = table.attach(family_of(local), Cred::user(1001), unused());
    let service = listener.bind(local).unwrap();
    listener.listen().unwrap();
    let mut wrapped = 0;
    let mut last = 0;
    for round in 0..65536 {
        let client = table.attach(family_of(local), Cred::user(1001), unused());
        let client_local = client
            .connect(service)
            .unwrap_or_else(|e| panic!("connect {round}: {e}"));
        assert_ne!(
            client_local.port(),
            service.port(),
            "round {round} got the listener's port"
        );
        assert_eq!(client_local.ip(), service.ip());
        if client_local.port() < last {
            wrapped += 1;
        }
        last = client_local.port();
        let accepted = listener
            .accept(service, client_local, unused())
            .expect("accept");
        assert_eq!(accepted.state(), State::Connected);
        drop((client, accepted));
    }
    assert_eq!(table.len(), 1, "only the listener is left");
    wrapped
}

#[test]
fn freebsd_tcp_connect_port_test_basic_ipv4() {
    assert!(
        run("127.0.0.1:0") >= 1,
        "the scan must wrap past the listener's port"
    );
}

#[test]
fn freebsd_tcp_connect_port_test_basic_ipv6() {
    assert!(
        run("[::1]:0") >= 1,
        "the scan must wrap past the listener's port"
    );
}
