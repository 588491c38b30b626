//! Errors, with the errno each kernel returns for them.

use std::fmt;
use std::io;

/// Why a table operation failed.
///
/// Every variant maps to one errno ([`Error::errno`]) with the value of the host
/// the crate is built for, and converts into an [`io::Error`] carrying it. A
/// failing operation never changes the table: what it checked and what it would
/// have inserted are discarded together.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Error {
    /// `EADDRINUSE`: the address and port conflict with another PCB's.
    AddrInUse,
    /// `EADDRNOTAVAIL`: no ephemeral port is left, or the 4-tuple is taken.
    AddrNotAvailable,
    /// `EINVAL`: the call does not fit the PCB's state (binding twice, V6ONLY
    /// after bind, a v4-mapped address on a V6ONLY PCB, ...).
    InvalidInput,
    /// `EACCES`: a port below 1024 without [`Cred::privileged`](crate::Cred),
    /// or (FreeBSD) a TCP `connect()` to `255.255.255.255`.
    PermissionDenied,
    /// `EISCONN`: the PCB is already connected.
    AlreadyConnected,
    /// `ENOTCONN`: the PCB is not connected.
    NotConnected,
    /// `EOPNOTSUPP`: the operation does not exist for this protocol or option
    /// (listen on UDP, connect on a TCP SO_REUSEPORT_LB socket).
    NotSupported,
    /// `EAFNOSUPPORT`: the address family does not fit the PCB's.
    FamilyNotSupported,
    /// `ENETUNREACH`: no source address for the peer (see
    /// [`Builder::source_address`](crate::Builder::source_address)).
    NetworkUnreachable,
    /// `ENOPROTOOPT`: the option does not exist for this policy or family
    /// (SO_REUSEPORT_LB on Linux, IPV6_V6ONLY on an `Inet` PCB).
    OptionNotAvailable,
    /// `EAGAIN`: no ephemeral port was free for the automatic bind of a
    /// Linux UDP `connect()` (`inet_autobind`). The TCP `connect()` of both
    /// kernels, and FreeBSD's UDP `connect()`, say
    /// [`AddrNotAvailable`](Error::AddrNotAvailable) instead.
    ///
    /// ```
    /// use std::io;
    /// let error: io::Error = pcbhash::Error::WouldBlock.into();
    /// assert_eq!(error.kind(), io::ErrorKind::WouldBlock);
    /// ```
    WouldBlock,
    /// `EPERM`: the credential lacks a privilege a port scan needs
    /// (FreeBSD `priv_check` in `in_pcb_lport_dest`, for a per-PCB range
    /// that reaches below 1024: `IP_PORTRANGE_LOW`).
    NotPermitted,
}

impl Error {
    /// The errno of the host this crate was built for.
    ///
    /// ```
    /// assert_eq!(pcbhash::Error::AddrInUse.errno(), libc::EADDRINUSE);
    /// ```
    pub fn errno(&self) -> i32 {
        match self {
            Error::AddrInUse => libc::EADDRINUSE,
            Error::AddrNotAvailable => libc::EADDRNOTAVAIL,
            Error::InvalidInput => libc::EINVAL,
            Error::PermissionDenied => libc::EACCES,
            Error::AlreadyConnected => libc::EISCONN,
            Error::NotConnected => libc::ENOTCONN,
            Error::NotSupported => libc::EOPNOTSUPP,
            Error::FamilyNotSupported => libc::EAFNOSUPPORT,
            Error::NetworkUnreachable => libc::ENETUNREACH,
            Error::OptionNotAvailable => libc::ENOPROTOOPT,
            Error::WouldBlock => libc::EAGAIN,
            Error::NotPermitted => libc::EPERM,
        }
    }

    /// The error for an errno, if it is one of ours.
    pub fn from_errno(errno: i32) -> Option<Error> {
        const ALL: [Error; 12] = [
            Error::AddrInUse,
            Error::AddrNotAvailable,
            Error::InvalidInput,
            Error::PermissionDenied,
            Error::AlreadyConnected,
            Error::NotConnected,
            Error::NotSupported,
            Error::FamilyNotSupported,
            Error::NetworkUnreachable,
            Error::OptionNotAvailable,
            Error::WouldBlock,
            Error::NotPermitted,
        ];
        ALL.into_iter().find(|e| e.errno() == errno)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Error::AddrInUse => "address already in use",
            Error::AddrNotAvailable => "address not available",
            Error::InvalidInput => "invalid argument for the PCB's state",
            Error::PermissionDenied => "permission denied",
            Error::AlreadyConnected => "already connected",
            Error::NotConnected => "not connected",
            Error::NotSupported => "operation not supported",
            Error::FamilyNotSupported => "address family not supported",
            Error::NetworkUnreachable => "network unreachable (no source address)",
            Error::OptionNotAvailable => "option not available",
            Error::WouldBlock => "no ephemeral port free, try again",
            Error::NotPermitted => "operation not permitted",
        };
        f.write_str(text)
    }
}

impl std::error::Error for Error {}

impl From<Error> for io::Error {
    /// An OS error with the same errno, so `kind()` is what the host's socket
    /// call would have given (`AddrInUse`, `AddrNotAvailable`, ...).
    fn from(error: Error) -> io::Error {
        io::Error::from_raw_os_error(error.errno())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_carry_the_errno_and_kind() {
        let cases = [
            (Error::AddrInUse, io::ErrorKind::AddrInUse),
            (Error::AddrNotAvailable, io::ErrorKind::AddrNotAvailable),
            (Error::InvalidInput, io::ErrorKind::InvalidInput),
            (Error::PermissionDenied, io::ErrorKind::PermissionDenied),
            (Error::NetworkUnreachable, io::ErrorKind::NetworkUnreachable),
            (Error::WouldBlock, io::ErrorKind::WouldBlock),
            (Error::NotPermitted, io::ErrorKind::PermissionDenied),
        ];
        for (error, kind) in cases {
            let io: io::Error = error.into();
            assert_eq!(io.raw_os_error(), Some(error.errno()));
            assert_eq!(io.kind(), kind, "{error:?}");
            assert_eq!(Error::from_errno(error.errno()), Some(error));
        }
    }
}
