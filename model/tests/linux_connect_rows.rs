//! The model alone against three Linux `connect()` behaviours, with the
//! answers the running kernel gave (the table and the kernel are compared
//! side by side in the crate's `linux_connect.rs` and `linux_time_wait.rs`):
//!
//! - a UDP connect() whose early autobind finds no port is EAGAIN;
//! - a connect() to an unspecified address reaches the local host;
//! - a TIME_WAIT socket keeps a port that bind() or listen() took from an
//!   unbound TCP connect(), when the socket it was did not get its port from
//!   connect().

use std::net::SocketAddr;

use pcbhash::{Cred, Error};
use pcbhash_model::{Model, ModelError, PolicySel, ProtoSel};

fn at(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

const RANGE: (u16, u16) = (40000, 40000);

/// Every AF_INET / AF_INET6 socket after the first that connects on the
/// one-port range: (family, peer, kernel's answer).
#[test]
fn linux_udp_autobind_without_a_port() {
    let rows: [(bool, &str, Result<(), Error>); 4] = [
        (false, "127.0.0.1:30001", Err(Error::WouldBlock)),
        (true, "[::1]:30000", Err(Error::WouldBlock)),
        (true, "[::ffff:0.0.0.0]:30000", Err(Error::WouldBlock)),
        (true, "[::]:0", Err(Error::WouldBlock)),
    ];
    for (v6, peer, want) in rows {
        let mut model = Model::new(PolicySel::Linux, ProtoSel::Udp, RANGE);
        let first = model.attach(false, Cred::ROOT);
        model
            .connect(first, at("127.0.0.1:30000"), Some(40000))
            .expect("the only port");
        let next = model.attach(v6, Cred::ROOT);
        let got = model.connect(next, at(peer), None).map(|_| ());
        assert_eq!(got, want.map_err(ModelError::Errno), "{peer}");
        assert_eq!(model.local_addr(next), None, "{peer}: nothing bound");
    }
    // TCP: the connect() scan's own error.
    let mut model = Model::new(PolicySel::Linux, ProtoSel::Tcp, RANGE);
    let first = model.attach(false, Cred::ROOT);
    model
        .connect(first, at("127.0.0.1:20000"), Some(40000))
        .expect("the only port");
    let next = model.attach(false, Cred::ROOT);
    assert_eq!(
        model.connect(next, at("127.0.0.1:20000"), None),
        Err(ModelError::Errno(Error::AddrNotAvailable))
    );
}

/// (protocol, family, bind first, peer, local, the peer the kernel shows).
#[test]
fn linux_connect_to_an_unspecified_address() {
    type Row = (
        ProtoSel,
        bool,
        Option<&'static str>,
        &'static str,
        &'static str,
        &'static str,
    );
    let rows: [Row; 9] = [
        (
            ProtoSel::Tcp,
            false,
            Some("127.0.0.2:30000"),
            "0.0.0.0:30001",
            "127.0.0.2:30000",
            "127.0.0.2:30001",
        ),
        (
            ProtoSel::Tcp,
            false,
            None,
            "0.0.0.0:30001",
            "127.0.0.1:40000",
            "127.0.0.1:30001",
        ),
        (
            ProtoSel::Tcp,
            true,
            None,
            "[::ffff:0.0.0.0]:30002",
            "[::ffff:127.0.0.1]:40000",
            "[::ffff:127.0.0.1]:30002",
        ),
        (
            ProtoSel::Tcp,
            true,
            None,
            "[::]:30002",
            "[::1]:40000",
            "[::1]:30002",
        ),
        (
            ProtoSel::Tcp,
            true,
            Some("[::ffff:127.0.0.2]:30003"),
            "[::]:30002",
            "[::ffff:127.0.0.2]:30003",
            "[::ffff:127.0.0.1]:30002",
        ),
        (
            ProtoSel::Tcp,
            true,
            Some("[::ffff:127.0.0.2]:30004"),
            "[::ffff:0.0.0.0]:30002",
            "[::ffff:127.0.0.2]:30004",
            "[::ffff:127.0.0.2]:30002",
        ),
        (
            ProtoSel::Tcp,
            true,
            Some("[::ffff:0.0.0.0]:30005"),
            "[::]:30002",
            "[::ffff:127.0.0.1]:30005",
            "[::ffff:127.0.0.1]:30002",
        ),
        (
            ProtoSel::Udp,
            true,
            None,
            "[::ffff:0.0.0.0]:30000",
            "[::ffff:127.0.0.1]:40000",
            "[::ffff:127.0.0.1]:30000",
        ),
        (
            ProtoSel::Udp,
            false,
            Some("127.0.0.2:30000"),
            "0.0.0.0:30000",
            "127.0.0.2:30000",
            "127.0.0.2:30000",
        ),
    ];
    for (protocol, v6, bind, peer, local, shown) in rows {
        let mut model = Model::new(PolicySel::Linux, protocol, RANGE);
        let id = model.attach(v6, Cred::ROOT);
        if let Some(bind) = bind {
            model.bind(id, at(bind), None).expect("bind");
        }
        let got = model.connect(id, at(peer), Some(40000));
        assert_eq!(got, Ok(at(local)), "{protocol:?} {bind:?} -> {peer}");
        assert_eq!(
            model.peer_addr(id),
            Some(at(shown)),
            "{protocol:?} {bind:?} -> {peer}"
        );
    }
    // A V6ONLY socket (bound to ::1) cannot reach the IPv4 local host.
    let mut model = Model::new(PolicySel::Linux, ProtoSel::Tcp, RANGE);
    let id = model.attach(true, Cred::ROOT);
    model.bind(id, at("[::1]:30006"), None).expect("bind");
    assert_eq!(
        model.connect(id, at("[::ffff:0.0.0.0]:30002"), None),
        Err(ModelError::Errno(Error::NetworkUnreachable))
    );
}

/// A listener on the one-port range (autobound by listen(), or bound by
/// bind()) accepts a connection whose server side ends in TIME_WAIT (or is
/// closed at once), then closes: (how the listener got its port, TIME_WAIT,
/// the kernel's answer to an unbound connect() to another peer).
#[test]
fn linux_time_wait_keeps_a_bind_made_port() {
    let rows = [
        ("listen", true, Err(Error::AddrNotAvailable)),
        ("bind", true, Err(Error::AddrNotAvailable)),
        ("listen", false, Ok(at("127.0.0.1:40000"))),
        ("bind", false, Ok(at("127.0.0.1:40000"))),
    ];
    for (how, time_wait, want) in rows {
        let mut model = Model::new(PolicySel::Linux, ProtoSel::Tcp, RANGE);
        let server = model.attach(false, Cred::ROOT);
        if how == "bind" {
            model
                .bind(server, at("127.0.0.1:40000"), None)
                .expect("bind");
        }
        model.listen(server, Some(40000)).expect("listen");
        let client = model.attach(false, Cred::ROOT);
        model
            .bind(client, at("127.0.0.1:20000"), None)
            .expect("bind");
        model
            .connect(client, at("127.0.0.1:40000"), None)
            .expect("connect");
        let child = model
            .accept(server, at("127.0.0.1:40000"), at("127.0.0.1:20000"))
            .expect("accept");
        if time_wait {
            model.time_wait(child).expect("TIME_WAIT");
        } else {
            model.close(child);
        }
        model.close(client);
        model.close(server);
        let late = model.attach(false, Cred::ROOT);
        let pick = want.is_ok().then_some(40000);
        let got = model.connect(late, at("127.0.0.2:20001"), pick);
        assert_eq!(
            got,
            want.map_err(ModelError::Errno),
            "{how}, TIME_WAIT {time_wait}"
        );
    }
}
