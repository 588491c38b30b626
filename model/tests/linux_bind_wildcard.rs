//! The model alone against rows of Linux's `tools/testing/selftests/net/
//! bind_wildcard.c` (as transcribed in the project's Linux notes): eight TCP
//! sockets bound to one port in order, the first two with the variant's
//! addresses (and optionally V6ONLY, SO_REUSEADDR or SO_REUSEPORT), then
//! 0.0.0.0, 127.0.0.1, ::, ::1, ::ffff:0.0.0.0, ::ffff:127.0.0.1 with no
//! options. `0` is success, `E` is EADDRINUSE.

use std::net::SocketAddr;

use pcbhash::{Cred, Error};
use pcbhash_model::{Model, ModelError, Opt, PolicySel, ProtoSel};

#[derive(Clone, Copy)]
enum Reuse {
    Plain,
    Addr,
    Port,
}

fn row(first: (&str, bool), second: (&str, bool), reuse: Reuse) -> String {
    const PORT: u16 = 7000;
    let mut model = Model::new(PolicySel::Linux, ProtoSel::Tcp, (40000, 40003));
    let rest = [
        "0.0.0.0",
        "127.0.0.1",
        "::",
        "::1",
        "::ffff:0.0.0.0",
        "::ffff:127.0.0.1",
    ];
    let mut socks: Vec<(&str, bool, bool)> =
        vec![(first.0, first.1, true), (second.0, second.1, true)];
    socks.extend(rest.iter().map(|a| (*a, false, false)));
    let mut out = String::new();
    for (addr, v6only, options) in socks {
        let ip: std::net::IpAddr = addr.parse().expect("an address");
        let id = model.attach(ip.is_ipv6(), Cred::ROOT);
        if v6only {
            model
                .set_opt(id, Opt::V6Only, true)
                .expect("V6ONLY before bind");
        }
        if options {
            match reuse {
                Reuse::Plain => {}
                Reuse::Addr => model
                    .set_opt(id, Opt::ReuseAddr, true)
                    .expect("SO_REUSEADDR"),
                Reuse::Port => model
                    .set_opt(id, Opt::ReusePort, true)
                    .expect("SO_REUSEPORT"),
            }
        }
        let result = model.bind(id, SocketAddr::new(ip, PORT), None);
        out.push(match result {
            Ok(_) => '0',
            Err(ModelError::Errno(Error::AddrInUse)) => 'E',
            Err(e) => panic!("{addr}: unexpected {e:?}"),
        });
    }
    out
}

#[test]
fn linux_bind_wildcard() {
    // (sock0, sock1, plain, reuseaddr / reuseport)
    let rows = [
        (
            ("0.0.0.0", false),
            ("127.0.0.1", false),
            "0EEEE0EE",
            "00EEE0EE",
        ),
        (("0.0.0.0", false), ("::", false), "0EEEE0EE", "00EEEEEE"),
        (("0.0.0.0", false), ("::", true), "00EEEEEE", "00EEEEEE"),
        (("0.0.0.0", false), ("::1", false), "00EEEEEE", "00EEEEEE"),
        (
            ("127.0.0.1", false),
            ("::ffff:127.0.0.1", false),
            "0EEEE0EE",
            "00EEE0EE",
        ),
        (("::", false), ("0.0.0.0", false), "0EEEEEEE", "00EEEEEE"),
        (("::", true), ("0.0.0.0", false), "00EEEEEE", "00EEEEEE"),
        (("::", true), ("::", false), "0E0EEEEE", "00EEEEEE"),
        (("::", true), ("::", true), "0E0EEEEE", "000EEEEE"),
        (("::", true), ("::1", false), "0E0EEEEE", "000EEEEE"),
        (("::1", false), ("::", true), "0E0EEEEE", "000EEEEE"),
        (
            ("::ffff:0.0.0.0", false),
            ("::", false),
            "0EEEE0EE",
            "00EEEEEE",
        ),
        (
            ("::ffff:127.0.0.1", false),
            ("::ffff:0.0.0.0", false),
            "0EEEE0EE",
            "00EEE0EE",
        ),
    ];
    for (first, second, plain, shared) in rows {
        assert_eq!(
            row(first, second, Reuse::Plain),
            plain,
            "plain {first:?} {second:?}"
        );
        assert_eq!(
            row(first, second, Reuse::Addr),
            shared,
            "reuseaddr {first:?} {second:?}"
        );
        assert_eq!(
            row(first, second, Reuse::Port),
            shared,
            "reuseport {first:?} {second:?}"
        );
    }
}
