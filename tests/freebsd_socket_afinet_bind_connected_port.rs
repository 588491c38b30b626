//! FreeBSD tests/sys/netinet/socket_afinet.c, `socket_afinet_bind_connected_port`.
//!
//! A connection is established on port P (a listener on the wildcard address,
//! a client that connects to it, and the accepted socket on the loopback
//! address), then the listener is closed. A plain bind to P (no options), as
//! root and as an unprivileged user, must still fail with EADDRINUSE: the
//! accepted connection holds the port.

mod common;

use std::net::SocketAddr;

use common::{addr, family_of, freebsd, unused};
use pcbhash::{Cred, Error, Protocol, State};

#[test]
fn freebsd_socket_afinet_bind_connected_port() {
    // (listener address, loopback address used by the connection)
    let cases = [("0.0.0.0:0", "127.0.0.1"), ("[::]:0", "::1")];
    let mut scenarios = 0;
    for (wildcard, loopback) in cases {
        let table = freebsd(Protocol::Tcp);
        let listen_on = addr(wildcard);
        let listener = table.attach(family_of(listen_on), Cred::ROOT, unused());
        let port = listener.bind(listen_on).unwrap().port();
        listener.listen().unwrap();

        let server_side = SocketAddr::new(loopback.parse().unwrap(), port);
        let client = table.attach(family_of(listen_on), Cred::ROOT, unused());
        let client_local = client.connect(server_side).expect("client connects");
        let accepted = listener
            .accept(server_side, client_local, unused())
            .expect("accept");
        assert_eq!(accepted.state(), State::Connected);
        listener.close();

        for child in [Cred::ROOT, Cred::user(1001)] {
            for target in [server_side, SocketAddr::new(listen_on.ip(), port)] {
                let probe = table.attach(family_of(target), child, unused());
                assert_eq!(
                    probe.bind(target),
                    Err(Error::AddrInUse),
                    "bind {target} as {child:?}"
                );
                scenarios += 1;
            }
        }
        assert_eq!(
            table.len(),
            2,
            "the client and the accepted connection remain"
        );
    }
    assert_eq!(scenarios, 8);
}
