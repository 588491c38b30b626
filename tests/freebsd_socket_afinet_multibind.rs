//! FreeBSD tests/sys/netinet/socket_afinet.c, `socket_afinet_multibind`.
//!
//! Socket A binds to an address (loopback or wildcard) with port 0 and sets
//! option `i` *after* binding. Socket B, in a child process run once as root
//! and once as an unprivileged user, binds to the same address and port with
//! no option (which must fail with EADDRINUSE), then sets option `j` and binds
//! again. The kernel test's expectation: the privileged second bind succeeds
//! iff both options are equal and are SO_REUSEPORT or SO_REUSEPORT_LB; the
//! unprivileged one always fails ("multi-binding is only allowed when both
//! sockets have the same owner"). IPv4 and IPv6, TCP and UDP.

mod common;

use common::{addr, family_of, freebsd, unused, Reuse};
use pcbhash::{Cred, Error, Protocol};

/// `EXPECTED_PRIV[i][j]`: whether the privileged second bind succeeds, with
/// A's option `i` and B's option `j` (order: none, REUSEADDR, REUSEPORT,
/// REUSEPORT_LB). The unprivileged second bind never succeeds.
const EXPECTED_PRIV: [[bool; 4]; 4] = [
    [false, false, false, false],
    [false, false, false, false],
    [false, false, true, false],
    [false, false, false, true],
];

#[test]
fn freebsd_socket_afinet_multibind() {
    let addresses = ["127.0.0.1:0", "0.0.0.0:0", "[::1]:0", "[::]:0"];
    let children = [(Cred::ROOT, true), (Cred::user(1001), false)];
    let mut scenarios = 0;
    for protocol in [Protocol::Tcp, Protocol::Udp] {
        for address in addresses {
            for (i, first) in Reuse::ALL.into_iter().enumerate() {
                for (j, second) in Reuse::ALL.into_iter().enumerate() {
                    for (cred, privileged) in children {
                        let table = freebsd(protocol);
                        let local = addr(address);
                        let a = table.attach(family_of(local), Cred::ROOT, unused());
                        let bound = a.bind(local).expect("A binds an ephemeral port");
                        first.apply(&a);

                        let b = table.attach(family_of(local), cred, unused());
                        let context = format!(
                            "{protocol:?} {bound} A={first:?} B={second:?} priv={privileged}"
                        );
                        assert_eq!(
                            b.bind(bound),
                            Err(Error::AddrInUse),
                            "plain bind: {context}"
                        );
                        second.apply(&b);
                        let expected = privileged && EXPECTED_PRIV[i][j];
                        let result = b.bind(bound);
                        assert_eq!(
                            result.is_ok(),
                            expected,
                            "second bind: {context}: {result:?}"
                        );
                        if !expected {
                            assert_eq!(result, Err(Error::AddrInUse), "{context}");
                            assert_eq!(
                                table.len(),
                                1,
                                "a failed bind leaves the table as it was: {context}"
                            );
                        }
                        scenarios += 1;
                    }
                }
            }
        }
    }
    assert_eq!(scenarios, 2 * 4 * 4 * 4 * 2);
}
