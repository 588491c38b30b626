//! [`PcbView`]: what a policy may see of a PCB.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::addr::{Endpoint, Family};
use crate::cred::{Cred, Device};
use crate::flags::{Flags, State};

/// What a policy may see of a PCB: copies of its hash-safe fields.
///
/// This type maintains the invariant that it holds no reference into the table
/// or to a socket: it is plain data, taken under an epoch guard. A policy
/// sees PCBs only through it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PcbView {
    pub(crate) family: Family,
    pub(crate) cred: Cred,
    pub(crate) flags: Flags,
    pub(crate) local: Endpoint,
    /// Unspecified with port 0 unless connected.
    pub(crate) remote: Endpoint,
    /// See [`seq`](Self::seq).
    pub(crate) seq: u64,
    /// See [`group_seq`](Self::group_seq).
    pub(crate) group_seq: u64,
    /// The device of SO_BINDTODEVICE, 0 for none (see
    /// [`device`](Self::device)).
    pub(crate) device: u32,
    /// The FIB of SO_SETFIB (FreeBSD), 0 for the default FIB (see
    /// [`fib`](Self::fib)).
    pub(crate) fib: u32,
}

impl PcbView {
    /// The PCB's address family.
    pub fn family(&self) -> Family {
        self.family
    }

    /// The credential the PCB was created with.
    pub fn cred(&self) -> Cred {
        self.cred
    }

    /// The PCB's flags word: options, state and the table's bookkeeping
    /// bits.
    pub fn flags(&self) -> Flags {
        self.flags
    }

    /// The device the PCB is bound to (SO_BINDTODEVICE), if any.
    pub fn device(&self) -> Option<Device> {
        (self.device != 0).then_some(Device(self.device))
    }

    /// The FIB the PCB is in (FreeBSD `SO_SETFIB`, `inp_inc.inc_fibnum`):
    /// 0, the default FIB, unless [`Pcb::bind_device`](crate::Pcb::bind_device)
    /// named another under `Policy::FreeBsd`.
    pub fn fib(&self) -> u32 {
        self.fib
    }

    /// The PCB's state.
    pub fn state(&self) -> State {
        self.flags.state()
    }

    /// The local address and port, canonical (an IPv4 address, v4-mapped
    /// ones included, is a `SocketAddr::V4`); the wildcard with port 0 when
    /// unbound.
    pub fn local(&self) -> SocketAddr {
        SocketAddr::new(self.local.ip, self.local.port)
    }

    /// The peer, canonical; the wildcard with port 0 unless connected.
    pub fn remote(&self) -> SocketAddr {
        SocketAddr::new(self.remote.ip, self.remote.port)
    }

    /// The PCB's place among those a lookup ranks equally: larger is
    /// preferred. Built-in policies: FreeBSD, insertion order (newer first);
    /// Linux, the order of the kernel's lists. A policy sets it through
    /// [`Rules::insertion_seq`](super::Rules::insertion_seq).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The place of the PCB's load-balance group among the groups of its
    /// port (a group goes to the head of its bucket when created or resized;
    /// larger is newer). 0 outside a group.
    pub fn group_seq(&self) -> u64 {
        self.group_seq
    }

    /// Whether the PCB has a peer (a connected or TIME_WAIT tuple).
    pub fn is_connected(&self) -> bool {
        self.remote.port != 0 || !self.remote.is_wildcard()
    }

    /// Whether the PCB takes IPv4 traffic: `Inet`, an `Inet6` PCB bound to a
    /// v4-mapped address, or an `Inet6` PCB on `::` without V6ONLY (FreeBSD
    /// `INP_IPV4`; Linux `!ipv6_only_sock`).
    pub fn takes_v4(&self) -> bool {
        match self.family {
            Family::Inet => true,
            Family::Inet6 => {
                self.local.is_v4() || (self.local.is_wildcard() && !self.flags.v6only())
            }
        }
    }

    /// Whether the PCB takes IPv6 traffic: an `Inet6` PCB bound to an IPv6
    /// address, `::` included (FreeBSD `INP_IPV6`).
    pub fn takes_v6(&self) -> bool {
        self.family == Family::Inet6 && !self.local.is_v4()
    }

    /// The PCB's local address as IPv4 traffic sees it: a dual-stack `::` is
    /// `0.0.0.0`. Only meaningful when [`takes_v4`](Self::takes_v4).
    pub(crate) fn local_v4(&self) -> Endpoint {
        if self.local.is_v4() {
            self.local
        } else {
            Endpoint {
                ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                port: self.local.port,
            }
        }
    }
}

/// Which address family a search is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Af {
    V4,
    V6,
}

impl Af {
    pub(crate) fn of(endpoint: &Endpoint) -> Af {
        if endpoint.is_v4() {
            Af::V4
        } else {
            Af::V6
        }
    }

    pub(crate) fn takes(self, view: &PcbView) -> bool {
        match self {
            Af::V4 => view.takes_v4(),
            Af::V6 => view.takes_v6(),
        }
    }

    pub(crate) fn local_of(self, view: &PcbView) -> Endpoint {
        match self {
            Af::V4 => view.local_v4(),
            Af::V6 => view.local,
        }
    }
}

/// Whether `view` would match `local` in the wildcard stage at all (any
/// rank): unconnected, on the port, taking the packet's family, on its
/// address or a wildcard. Both kernels start their ranking from it.
pub(crate) fn wild_match(view: &PcbView, local: &Endpoint) -> bool {
    let af = Af::of(local);
    if view.is_connected() || view.local.port != local.port || !af.takes(view) {
        return false;
    }
    let theirs = af.local_of(view);
    theirs.is_wildcard() || theirs.ip == local.ip
}

/// Whether `view` takes a datagram from `remote` to `local` (both
/// canonical) on the rules both kernels' multicast and broadcast delivery
/// start from: on the port, taking the datagram's family, bound to its
/// address or a wildcard, and if it has a peer, that peer's address and
/// (unless 0) port are the datagram's source (Linux `__udp_is_mcast_sock`,
/// FreeBSD `udp_multi_input`).
pub(crate) fn delivery_match(view: &PcbView, local: &Endpoint, remote: &Endpoint) -> bool {
    let af = Af::of(local);
    if view.local.port != local.port || !af.takes(view) {
        return false;
    }
    let mine = af.local_of(view);
    let peer = view.remote;
    (mine.is_wildcard() || mine.ip == local.ip)
        && (peer.is_wildcard() || peer.ip == remote.ip)
        && (peer.port == 0 || peer.port == remote.port)
}

/// `endpoint` as the seam passes addresses: a canonical [`SocketAddr`].
#[inline]
pub(crate) fn canonical(endpoint: Endpoint) -> SocketAddr {
    SocketAddr::new(endpoint.ip, endpoint.port)
}

/// The [`Endpoint`] of `addr`, already canonical (as the table hands
/// packets to [`Lookup::rank`](super::Lookup::rank)): no conversion.
#[inline]
pub(crate) fn canonical_endpoint(addr: &SocketAddr) -> Endpoint {
    Endpoint {
        ip: addr.ip(),
        port: addr.port(),
    }
}
