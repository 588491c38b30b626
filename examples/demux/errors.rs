//! Failed table operations, counted by operation and errno.

use std::collections::BTreeMap;
use std::fmt;

use pcbhash::Error;

/// The symbolic name of the errno an [`Error`] stands for.
pub fn errno_name(error: Error) -> &'static str {
    match error {
        Error::AddrInUse => "EADDRINUSE",
        Error::AddrNotAvailable => "EADDRNOTAVAIL",
        Error::InvalidInput => "EINVAL",
        Error::PermissionDenied => "EACCES",
        Error::AlreadyConnected => "EISCONN",
        Error::NotConnected => "ENOTCONN",
        Error::NotSupported => "EOPNOTSUPP",
        Error::FamilyNotSupported => "EAFNOSUPPORT",
        Error::NetworkUnreachable => "ENETUNREACH",
        Error::OptionNotAvailable => "ENOPROTOOPT",
        Error::WouldBlock => "EAGAIN",
        _ => "E?",
    }
}

/// The socket call that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    /// `setsockopt` (reuse options, V6ONLY).
    SetOption,
    /// `bind`.
    Bind,
    /// `listen`.
    Listen,
    /// `connect`.
    Connect,
    /// `accept` (the passive open).
    Accept,
    /// `time_wait`.
    TimeWait,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::SetOption => "setsockopt",
            Op::Bind => "bind",
            Op::Listen => "listen",
            Op::Connect => "connect",
            Op::Accept => "accept",
            Op::TimeWait => "time_wait",
        })
    }
}

/// Counts of failed operations by (errno, operation).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorCounts {
    by_errno: BTreeMap<(i32, Op), (Error, u64)>,
}

impl ErrorCounts {
    /// Counts one failure.
    pub fn count(&mut self, op: Op, error: Error) {
        self.by_errno
            .entry((error.errno(), op))
            .or_insert((error, 0))
            .1 += 1;
    }

    /// Runs `result`'s error through [`ErrorCounts::count`] and passes the
    /// success on.
    pub fn check<T>(&mut self, op: Op, result: Result<T, Error>) -> Option<T> {
        result.map_err(|error| self.count(op, error)).ok()
    }

    /// Every failure counted.
    pub fn total(&self) -> u64 {
        self.by_errno.values().map(|(_, n)| n).sum()
    }

    /// `(errno name, errno, operation, count)`, by errno then operation.
    pub fn rows(&self) -> impl Iterator<Item = (&'static str, i32, Op, u64)> + '_ {
        self.by_errno
            .iter()
            .map(|((errno, op), (error, n))| (errno_name(*error), *errno, *op, *n))
    }
}
