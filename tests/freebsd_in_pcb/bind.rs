//! bind(): the checks on a v4-mapped address under V6ONLY and on the
//! sockaddr's family and length.

use super::common::{addr, freebsd, Sock};
use pcbhash::{Cred, Error, Family, Protocol, State};

/// `in6_pcbbind_avail`: a V6ONLY socket binding a v4-mapped address. The
/// mapped branch of `tcp6_usr_bind` runs only without V6ONLY; with it the
/// address is looked up among the interfaces' IPv6 addresses, before the
/// port's privilege check.
///
/// ```c
/// if ((inp->inp_flags & IN6P_IPV6_V6ONLY) == 0) {
///     ...
///     else if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
/// ...
/// } else if (!IN6_IS_ADDR_UNSPECIFIED(laddr)) {
///     ...
///     if ((ifa = ifa_ifwithaddr((const struct sockaddr *)&sin6)) ==
///         NULL && (inp->inp_flags & INP_BINDANY) == 0) {
///         NET_EPOCH_EXIT(et);
///         return (EADDRNOTAVAIL);
/// ```
#[test]
fn freebsd_in6_pcbbind_avail_refuses_a_mapped_address_under_v6only() {
    // (protocol, V6ONLY, credential, address): bind's answer
    let user = Cred::user(1000);
    let rows = [
        (
            Protocol::Tcp,
            true,
            Cred::ROOT,
            "[::ffff:127.0.0.1]:9000",
            Err(Error::AddrNotAvailable),
        ),
        (
            Protocol::Udp,
            true,
            Cred::ROOT,
            "[::ffff:127.0.0.1]:9000",
            Err(Error::AddrNotAvailable),
        ),
        (
            Protocol::Tcp,
            true,
            Cred::ROOT,
            "[::ffff:0.0.0.0]:9000",
            Err(Error::AddrNotAvailable),
        ),
        (
            Protocol::Tcp,
            true,
            Cred::ROOT,
            "[::ffff:224.0.0.1]:9000",
            Err(Error::AddrNotAvailable),
        ),
        (
            Protocol::Tcp,
            true,
            user,
            "[::ffff:127.0.0.1]:80",
            Err(Error::AddrNotAvailable),
        ),
        (
            Protocol::Tcp,
            false,
            Cred::ROOT,
            "[::ffff:127.0.0.1]:9000",
            Ok(()),
        ),
        (
            Protocol::Tcp,
            false,
            Cred::ROOT,
            "[::ffff:224.0.0.1]:9000",
            Err(Error::FamilyNotSupported),
        ),
        (
            Protocol::Tcp,
            false,
            user,
            "[::ffff:127.0.0.1]:80",
            Err(Error::PermissionDenied),
        ),
    ];
    for (protocol, v6only, cred, local, expected) in rows {
        let table = freebsd(protocol);
        let pcb = table.attach(Family::Inet6, cred, Sock(1));
        pcb.set_v6only(v6only).unwrap();
        assert_eq!(
            pcb.bind(addr(local)).map(|_| ()),
            expected,
            "{protocol:?} v6only {v6only} {cred:?} {local}"
        );
    }
}

/// `tcp6_usr_bind` / `tcp6_usr_connect` (and `tcp_usr_bind` /
/// `tcp_usr_connect`) check the sockaddr's family before its length.
///
/// ```c
/// if (nam->sa_family != AF_INET6) {
///     error = EAFNOSUPPORT;
///     goto out;
/// }
/// if (nam->sa_len != sizeof(*sin6)) {
///     error = EINVAL;
/// ```
///
/// UDP: `udp6_bind` and `udp6_connect` of the same kernels could not be
/// read; the table keeps the length-first answer (EINVAL) for them.
#[test]
fn freebsd_tcp6_usr_bind_checks_the_family_before_the_length() {
    // (protocol, socket family, address): bind's and connect's answer
    let rows = [
        (
            Protocol::Tcp,
            Family::Inet6,
            "127.0.0.1:9000",
            Error::FamilyNotSupported,
        ),
        (
            Protocol::Tcp,
            Family::Inet,
            "[::1]:9000",
            Error::FamilyNotSupported,
        ),
        (
            Protocol::Udp,
            Family::Inet6,
            "127.0.0.1:9000",
            Error::InvalidInput,
        ),
        (
            Protocol::Udp,
            Family::Inet,
            "[::1]:9000",
            Error::FamilyNotSupported,
        ),
    ];
    for (protocol, family, address, expected) in rows {
        let table = freebsd(protocol);
        let pcb = table.attach(family, Cred::ROOT, Sock(1));
        assert_eq!(
            pcb.bind(addr(address)),
            Err(expected),
            "bind {protocol:?} {family:?}"
        );
        assert_eq!(
            pcb.connect(addr(address)),
            Err(expected),
            "connect {protocol:?} {family:?}"
        );
        assert_eq!(pcb.state(), State::Closed);
    }
}
