//! FreeBSD tests/sys/netinet/tcp6_v4mapped_bind_test.c (`v4mapped`).
//!
//! With the ephemeral range pinned to four ports (10000–10003), an IPv4
//! listener takes one of them. Then, up to ten times, a dual-stack IPv6 socket
//! binds `[::]:0` and connects to the listener through its v4-mapped address,
//! keeping every connection open. At least one connection must succeed, port
//! exhaustion must show up at bind time as EADDRNOTAVAIL, and connect must never
//! fail with EADDRINUSE (the old bug handed out a port twice).

mod common;

use common::{addr, table_of, unused};
use pcbhash::{Cred, Error, Family, Policy, Protocol};

#[test]
fn freebsd_tcp6_v4mapped_bind_test() {
    let table = table_of(Policy::FreeBsd, Protocol::Tcp, 10000..=10003);
    let listener = table.attach(Family::Inet, Cred::ROOT, unused());
    let service = listener.bind(addr("0.0.0.0:0")).unwrap();
    listener.listen().unwrap();
    let mapped = addr(&format!("[::ffff:127.0.0.1]:{}", service.port()));

    let mut kept = Vec::new();
    let mut exhausted = false;
    for _ in 0..10 {
        let client = table.attach(Family::Inet6, Cred::ROOT, unused());
        client.set_v6only(false).unwrap();
        match client.bind(addr("[::]:0")) {
            Ok(_) => {}
            Err(error) => {
                assert_eq!(error, Error::AddrNotAvailable);
                exhausted = true;
                break;
            }
        }
        let local = client
            .connect(mapped)
            .expect("connect never fails once bound");
        assert_eq!(local.ip().to_string(), "::ffff:127.0.0.1");
        let server_side = addr(&format!("127.0.0.1:{}", service.port()));
        let peer = addr(&format!("127.0.0.1:{}", local.port()));
        kept.push(
            listener
                .accept(server_side, peer, unused())
                .expect("accept"),
        );
        kept.push(client);
    }
    assert!(!kept.is_empty(), "at least one connection");
    assert!(exhausted, "binding must run out of ports");
    assert_eq!(
        kept.len(),
        2 * 3,
        "three ports left for clients after the listener's"
    );
}
