//! The model alone against FreeBSD's `tests/sys/netinet/socket_afinet.c`
//! `socket_afinet_multibind` (as transcribed in the project's FreeBSD
//! notes): socket A binds, then sets option i; socket B first binds the
//! same address and port with no option (EADDRINUSE), then sets option j
//! and binds again. The second bind succeeds iff i == j and the option is
//! SO_REUSEPORT or SO_REUSEPORT_LB, and only for the same owner.

use std::net::SocketAddr;

use pcbhash::{Cred, Error};
use pcbhash_model::{Model, ModelError, Opt, PolicySel, ProtoSel};

fn second_bind(
    proto: ProtoSel,
    addr: &str,
    first: Option<Opt>,
    second: Option<Opt>,
    child: Cred,
) -> Result<(), Error> {
    let ip: std::net::IpAddr = addr.parse().expect("an address");
    let at = SocketAddr::new(ip, 7000);
    let mut model = Model::new(PolicySel::FreeBsd, proto, (40000, 40003));
    let a = model.attach(ip.is_ipv6(), Cred::ROOT);
    model.bind(a, at, None).expect("the first bind");
    if let Some(opt) = first {
        model.set_opt(a, opt, true).expect("an option after bind");
    }
    let b = model.attach(ip.is_ipv6(), child);
    assert_eq!(
        model.bind(b, at, None),
        Err(ModelError::Errno(Error::AddrInUse)),
        "B without options"
    );
    if let Some(opt) = second {
        model.set_opt(b, opt, true).expect("an option before bind");
    }
    model.bind(b, at, None).map(|_| ()).map_err(|e| match e {
        ModelError::Errno(e) => e,
        other => panic!("{other:?}"),
    })
}

#[test]
fn freebsd_socket_afinet_multibind() {
    let opts = [
        None,
        Some(Opt::ReuseAddr),
        Some(Opt::ReusePort),
        Some(Opt::ReusePortLb),
    ];
    for proto in [ProtoSel::Tcp, ProtoSel::Udp] {
        for addr in ["127.0.0.1", "0.0.0.0", "::1", "::"] {
            for i in opts {
                for j in opts {
                    let shares =
                        i == j && matches!(i, Some(Opt::ReusePort) | Some(Opt::ReusePortLb));
                    let root = second_bind(proto, addr, i, j, Cred::ROOT);
                    assert_eq!(
                        root.is_ok(),
                        shares,
                        "{proto:?} {addr} {i:?} {j:?} privileged: {root:?}"
                    );
                    let user = second_bind(proto, addr, i, j, Cred::user(1000));
                    assert_eq!(
                        user,
                        Err(Error::AddrInUse),
                        "{proto:?} {addr} {i:?} {j:?} unprivileged"
                    );
                }
            }
        }
    }
}
