//! The policy seam: what differs between kernels, as one trait.
//!
//! A table follows one policy: a value implementing [`Rules`], chosen once
//! when the table is built ([`Builder::policy`](crate::Builder::policy) for
//! the built-in kernels, [`Builder::custom_policy`](crate::Builder::custom_policy)
//! for your own). The table's core asks the policy at every point where two
//! kernels decide differently (bind conflicts, the re-check at `listen()`,
//! lookup ranking, the order of the ephemeral-port scan, load-balance group
//! rules, `connect()` and `disconnect()`, and the history a port keeps), and
//! applies and stores the answers itself. A policy holds no lock and no state
//! of the table: every method is a pure decision over its arguments.
//!
//! A policy never sees a PCB, only a [`PcbView`]: a copy of the fields that
//! are safe to read under an epoch guard (tuple, flags word, credential). It
//! has no way to reach a socket, so the bug FreeBSD's PCB cache was invented
//! to fix (following another PCB's socket pointer during a bind check) cannot
//! be written in a policy.
//!
//! # Stability
//!
//! This module is the seam for writing a policy outside the crate, for
//! experiments and tests. Until 1.0 the [`Rules`] trait may gain methods (a
//! new decision the core learns to ask), and the plain-data types it uses may
//! gain fields or variants, in a minor release. The built-in policies,
//! [`Policy::FreeBsd`] and [`Policy::Linux`], are the supported ones.
//!
//! # Writing a policy
//!
//! Implement every method of [`Rules`]: the compiler lists each decision a
//! new policy owes. The few methods with a default are rules both kernels
//! share. `tests/custom_policy.rs` in the crate's repository has a complete
//! example, a policy under which every PCB may share every port.
//!
//! Addresses cross the seam as [`SocketAddr`] in canonical form: an IPv4
//! address (v4-mapped ones included) is a `SocketAddr::V4`, without flow
//! label or scope.

mod decisions;
pub(crate) mod freebsd;
pub(crate) mod linux;
mod local;
mod resolved;
#[cfg(test)]
mod rows;
mod view;

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;

pub use decisions::{
    AfterFailedConnect, DeviceBinding, DeviceRank, Disconnect, GroupFit, GroupKey, Lookup,
    PortMemo, PortRange, PortScan, TupleTaken, TwReuse,
};
pub use view::PcbView;

pub(crate) use freebsd::ConnectWild;
pub(crate) use local::{best_fit, check_accept, exact_unconnected};
pub(crate) use resolved::{Options as KernelOptions, RuleSet};
pub(crate) use view::{canonical, canonical_endpoint, delivery_match, wild_match, Af};

use crate::addr::Family;
use crate::cred::Device;
use crate::error::Error;
use crate::flags::{Flags, State};

/// Which kernel's rules the table follows.
///
/// More kernels may be added: match on it with a `_` arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Policy {
    /// FreeBSD 14/15: `in_pcbbind_avail`, `in_pcb_lport_dest`,
    /// `in_pcblookup_hash`, SO_REUSEPORT_LB groups.
    #[default]
    FreeBsd,
    /// Linux 6.18: `inet_csk_get_port`, `inet_bind_conflict`,
    /// `__inet_hash_connect`, `__inet_lookup_listener`, reuseport groups.
    Linux,
}

/// The transport protocol of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Protocol {
    /// TCP: listen, accept, TIME_WAIT.
    #[default]
    Tcp,
    /// UDP: no listen; disconnect with `connect(AF_UNSPEC)`.
    Udp,
}

/// The decisions of one policy, for one protocol.
///
/// One value serves one table (its protocol is fixed when it is made, see
/// [`Builder::custom_policy`](crate::Builder::custom_policy)); the table
/// calls it from many threads at once, so it is `Send + Sync`. Every method
/// is a pure function of its arguments and `self`'s settings: the table
/// stores whatever must be remembered (a port's [`PortMemo`], the flag bits
/// a method returns) and hands it back on the next call.
///
/// `owners` arguments are views of every other PCB on the port, in no
/// particular order (each view's [`seq`](PcbView::seq) gives the kernel's
/// list order).
///
/// The trait may gain methods before 1.0 (see the [module docs](self)).
///
/// ```
/// use pcbhash::policy::{self, Rules};
/// use pcbhash::{Flags, Policy, Protocol};
///
/// // The built-in kernels are `Rules` objects too; ask them directly.
/// let freebsd = policy::builtin(Policy::FreeBsd, Protocol::Tcp);
/// let linux = policy::builtin(Policy::Linux, Protocol::Tcp);
/// assert!(freebsd.has_option(Flags::REUSEPORT_LB));
/// assert!(!linux.has_option(Flags::REUSEPORT_LB), "Linux has no SO_REUSEPORT_LB");
/// assert_eq!(freebsd.default_ephemeral(), 10000..=65535);
/// ```
pub trait Rules: Send + Sync + std::fmt::Debug + 'static {
    // Table-wide defaults.

    /// The ephemeral port range a table uses unless
    /// [`Builder::ephemeral_ports`](crate::Builder::ephemeral_ports) names one.
    fn default_ephemeral(&self) -> RangeInclusive<u16>;

    /// Whether a new `Inet6` PCB starts with V6ONLY.
    fn default_v6only(&self) -> bool;

    /// Whether the socket option of the reuse bit `bit` exists
    /// (`setsockopt` fails with `OptionNotAvailable` otherwise).
    fn has_option(&self, bit: Flags) -> bool;

    // bind()

    /// Checks made before any table work on `bind()` (state, family,
    /// privilege); returns the local address to bind, canonical.
    fn check_bind(&self, me: &PcbView, local: SocketAddr) -> Result<SocketAddr, Error>;

    /// Flag bits a successful `bind()` to `local` sets besides
    /// [`Flags::ADDR_LOCKED`] and [`Flags::PORT_LOCKED`].
    fn bind_sets(&self, me: &PcbView, local: SocketAddr) -> Flags;

    /// The conflict decision for a `bind()` to an explicit port: `new`
    /// (carrying its local address and flags) against the port's `owners`,
    /// given the port's `memo`.
    fn bind_conflict(&self, new: &PcbView, owners: &[PcbView], memo: PortMemo)
        -> Result<(), Error>;

    /// The port's memo once `new` holds it after a successful `bind()` or
    /// `listen()`; `memo` is the memo before.
    fn bound(&self, new: &PcbView, memo: PortMemo) -> PortMemo;

    /// Whether an ephemeral-port candidate is taken for `bind(port 0)` (or
    /// the autobind of `listen()`, when `listening`).
    fn bind_port_busy(&self, new: &PcbView, owners: &[PcbView], listening: bool) -> bool;

    /// The order in which `bind(port 0)` tries the ephemeral ports.
    fn bind_scan(&self, me: &PcbView) -> PortScan;

    /// Checks the range of [`Pcb::set_local_port_range`](crate::Pcb::set_local_port_range)
    /// and returns the option's value, `(first, last)`.
    ///
    /// The default is Linux `IP_LOCAL_PORT_RANGE` (`do_ip_setsockopt`): an
    /// end of 0 leaves that end to the table's range, and two non-zero ends
    /// backwards are `InvalidInput`.
    fn check_port_range(&self, range: RangeInclusive<u16>) -> Result<(u16, u16), Error> {
        let (first, last) = range.into_inner();
        if first != 0 && last != 0 && first > last {
            return Err(Error::InvalidInput);
        }
        Ok((first, last))
    }

    /// The ports the scans of `me` take, from the table's `table` range and
    /// the PCB's option `own` (`None` when unset).
    ///
    /// The default is Linux `inet_sk_get_local_port_range`: each end of the
    /// option replaces the table's only if it lies within the table's range
    /// (after the low end moved), and the option counts as in force
    /// whenever it is set, even if both ends were left out.
    fn port_range(
        &self,
        _me: &PcbView,
        table: PortRange,
        own: Option<(u16, u16)>,
    ) -> Result<PortRange, Error> {
        let Some((first, last)) = own else {
            return Ok(table);
        };
        let mut range = PortRange { own: true, ..table };
        if (range.first..=range.last).contains(&first) {
            range.first = first;
        }
        if (range.first..=range.last).contains(&last) {
            range.last = last;
        }
        Ok(range)
    }

    /// The error of `bind(port 0)` when no port is left.
    fn bind_exhausted(&self) -> Error;

    /// Whether a `bind()` that found its port taken leaves the PCB without
    /// an address it kept from an earlier call.
    fn failed_bind_forgets_address(&self) -> bool;

    // listen()

    /// The check at `listen()` on a bound PCB.
    fn listen_check(&self, me: &PcbView, owners: &[PcbView], memo: PortMemo) -> Result<(), Error>;

    /// Whether `listen()` is refused (after the port check) for a PCB with
    /// `flags`.
    fn listen_refused_after_connect(&self, flags: Flags) -> bool;

    /// Whether `listen()` gives the PCB a new place among its port's PCBs
    /// (see [`insertion_seq`](Self::insertion_seq)).
    fn inserts_at_listen(&self) -> bool;

    /// Flag bits a PCB gains on entering `state` (by `listen()` or
    /// `connect()`) that outlive the state.
    fn remembers(&self, state: State) -> Flags;

    // connect()

    /// Checks made before any table work on `connect()`; returns the peer,
    /// canonical (an unspecified peer may stand for a local address).
    fn check_connect(&self, me: &PcbView, remote: SocketAddr) -> Result<SocketAddr, Error>;

    /// Whether `connect()` first disconnects a connected `me`, whatever the
    /// new peer.
    fn disconnects_before_connect(&self, me: &PcbView) -> bool;

    /// Whether `connect()` binds a port before it looks at the peer.
    fn binds_before_connect(&self, me: &PcbView) -> bool;

    /// The error of `connect()` when that early bind finds no port.
    fn connect_autobind_failed(&self) -> Error;

    /// The source address of a `connect()` to `peer` from a PCB that has a
    /// specific address, or `None` when that address does not fix the
    /// source and the stack's source-address selector picks it, as for a
    /// wildcard PCB.
    fn bound_source(&self, me: &PcbView, peer: SocketAddr) -> Option<IpAddr>;

    /// An error `connect()` gives once the source address is chosen, through
    /// the failure path ([`after_failed_connect`](Self::after_failed_connect)).
    fn connect_refused(&self, me: &PcbView) -> Option<Error>;

    /// `connect()` from a bound port whose 4-tuple `holder` already has.
    fn connect_tuple_taken(&self, holder: &PcbView) -> Result<TupleTaken, Error>;

    /// What a bound PCB keeps after its `connect()` from `source` failed the
    /// 4-tuple check (or was refused).
    fn after_failed_connect(&self, me: &PcbView, source: IpAddr) -> AfterFailedConnect;

    /// The order in which an unbound `connect()` tries the ephemeral ports.
    fn connect_scan(&self) -> PortScan;

    /// Whether an unbound `connect()` passes over a candidate port: `new`
    /// is the connected view on it, `holder` the PCB that already has the
    /// 4-tuple.
    fn connect_port_busy(
        &self,
        new: &PcbView,
        owners: &[PcbView],
        holder: Option<&PcbView>,
        memo: PortMemo,
    ) -> bool;

    /// Whether a PCB holding the 4-tuple alone makes an unbound `connect()`
    /// pass over a port, whatever the other owners (the table then keeps
    /// hints of such ports per destination).
    fn connect_holder_busy(&self) -> bool;

    /// Whether a `connect()` by a PCB of `family` leaves it a last peer that
    /// outlives the connection (see [`Flags::LAST_PEER`]).
    fn remembers_peer(&self, family: Family) -> bool;

    /// Whether, of several PCBs connected over one 4-tuple, the one that
    /// connected last receives (otherwise a second one is refused or
    /// replaces a TIME_WAIT twin).
    fn newest_connection_first(&self) -> bool;

    // disconnect() (`connect(AF_UNSPEC)`)

    /// What `disconnect()` keeps of `me`, or why it is refused.
    fn disconnect(&self, me: &PcbView) -> Result<Disconnect, Error>;

    /// The wildcard a disconnected PCB of `family` on `local` falls back to,
    /// with its port.
    fn disconnected_wildcard(&self, family: Family, local: SocketAddr) -> SocketAddr;

    /// Whether a disconnected UDP PCB takes a new place among its port's
    /// PCBs, as the newest, rather than keeping its place among equals.
    fn disconnect_reinserts(&self) -> bool;

    /// Whether a UDP PCB that `disconnect()` left bound goes back into its
    /// group.
    fn rejoins_group_on_disconnect(&self) -> bool;

    /// Whether SO_BINDTODEVICE takes a reuseport group member out of its
    /// group. No by default.
    fn bind_device_leaves_group(&self) -> bool {
        false
    }

    /// Whether `disconnect()` also unbinds the PCB from its device
    /// (SO_BINDTODEVICE). No by default.
    fn disconnect_clears_device(&self) -> bool {
        false
    }

    /// Whether `disconnect()` of the unconnected group member `me` on a
    /// wildcard address takes it out of its group.
    fn wildcard_disconnect_leaves_group(&self, me: &PcbView) -> bool;

    // accept()

    /// The flag bits an accepted PCB takes from its listener.
    fn accept_inherits(&self) -> Flags;

    // Order among a port's PCBs.

    /// The [`PcbView::seq`] of a PCB of `family` that enters its port's
    /// lists with `flags`, given a counter that grows with each insertion on
    /// the port.
    fn insertion_seq(&self, family: Family, flags: Flags, counter: u64) -> u64;

    /// The [`PcbView::seq`] of a PCB that moves to another local address
    /// without leaving its port; `None` keeps its place.
    fn rehash_seq(&self, counter: u64) -> Option<u64>;

    // Lookups.

    /// What a lookup's wildcard stage needs, asked once when the table is
    /// built (the per-PCB ranking is a plain function pointer there, so a
    /// lookup makes no dynamic call per PCB it walks).
    fn lookup(&self) -> Lookup;

    /// The wildcard-stage rank of a PCB of `family` connected to a packet's
    /// remote address with any port (see [`Lookup::any_port`]).
    fn any_port_peer_rank(&self, local: SocketAddr, family: Family) -> u32;

    /// The wildcard-stage rank of an unconnected PCB with the last peer
    /// `last` (see [`remembers_peer`](Self::remembers_peer)) for an IPv6
    /// packet from `source`, given its `rank`; `None` if the peer filters it
    /// out.
    fn last_peer_rank(&self, rank: u32, last: &Ipv6Addr, source: &Ipv6Addr) -> Option<u32>;

    // Load-balance (reuseport) groups.

    /// The group `view` belongs in, if its options ask for one.
    fn group_key(&self, view: &PcbView) -> Option<GroupKey>;

    /// Whether a new member `me` joins the group of `other` met first on its
    /// port (or founds one with it); `None` where groups go by key alone.
    fn group_mate(&self, me: &PcbView, other: &PcbView) -> Option<bool>;

    /// Whether a PCB's membership is decided when it enters the table, from
    /// the options set then (a TCP member then waits, pending, for
    /// `listen()`).
    fn group_decided_at_bind(&self) -> bool;

    /// Whether `view` joins its group as a pending member.
    fn joins_pending(&self, view: &PcbView) -> bool;

    /// The slots of a new group.
    fn group_initial_slots(&self) -> usize;

    /// What a group with `members` members (active and pending) and `slots`
    /// slots does with one more.
    fn group_fit(&self, members: usize, slots: usize) -> GroupFit;

    // The history of a port's address buckets (Linux `inet_bind2_bucket`).
    // The table stores it: the port's `PortMemo`, and the
    // [`Flags::CONNECT_BUCKET`] bit of each PCB.

    /// Whether the policy keeps that history; without, the table never asks
    /// the three methods below. Asked once, when the table is built.
    fn keeps_bucket_history(&self) -> bool;

    /// Whether a PCB that arrived at an address without `bind()` (by
    /// `connect()`, when `by_connect`, or by `accept()` or a move) sits in a
    /// bucket that only unbound `connect()`s made; `mate` is another PCB
    /// already at that address.
    fn joins_connect_only_bucket(
        &self,
        mate: Option<&PcbView>,
        by_connect: bool,
        memo: PortMemo,
    ) -> bool;

    /// Whether the bucket that a PCB left becomes connect-only, for the
    /// PCBs still in it (`others`).
    fn left_bucket_connect_only(&self, others: &mut dyn Iterator<Item = PcbView>) -> bool;

    /// The port's memo after an owner left it; `others` are the PCBs still
    /// on the port.
    fn port_left(&self, memo: PortMemo, others: &mut dyn Iterator<Item = PcbView>) -> PortMemo;

    // Devices and FIBs.

    /// What [`Pcb::bind_device`](crate::Pcb::bind_device) with `device`
    /// sets on `me`, or why it is refused. The default: the policy has no
    /// such option (`NotSupported`).
    fn bind_device(&self, me: &PcbView, device: Option<Device>) -> Result<DeviceBinding, Error> {
        let _ = (me, device);
        Err(Error::NotSupported)
    }

    /// Whether a lookup's wildcard stage (and so its load-balance groups)
    /// answers a packet only with PCBs of the packet's FIB
    /// ([`PcbView::fib`]; a packet of [`PcbTable::lookup`](crate::PcbTable::lookup)
    /// is of FIB 0). The default: FIBs scope nothing.
    fn fib_scopes_lookups(&self) -> bool {
        false
    }

    // Multicast and broadcast delivery (UDP).

    /// Whether the UDP PCB seen as `view` takes a multicast or broadcast
    /// datagram from `remote` to `local` (the group or broadcast address and
    /// the port; both canonical). `last_peer` is the peer a PCB remembers
    /// after its connection ended ([`Flags::LAST_PEER`]), v4-mapped if IPv4,
    /// when it has one. The arrival device is the table's to check, and
    /// group membership and source filters are the stack's.
    fn delivers_to(
        &self,
        view: &PcbView,
        last_peer: Option<&Ipv6Addr>,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> bool;

    /// Whether delivery ends with `view`, once it has taken the datagram:
    /// PCBs after it in the walk get nothing.
    fn delivery_ends_after(&self, view: &PcbView) -> bool;

    /// Where the receiver `view` stands in the delivery walk for a datagram
    /// to `local`: the table hands receivers out in decreasing order (equal
    /// places are taken in an unspecified order). `bound_seq` is the place
    /// the PCB took in its port's list when it entered the port (what
    /// [`insertion_seq`](Self::insertion_seq) gave then, with the options
    /// of then; moves within the port leave it as it is); `port_len` is how
    /// many PCBs hold the port.
    fn delivery_order(
        &self,
        view: &PcbView,
        bound_seq: u64,
        local: SocketAddr,
        port_len: usize,
    ) -> (u32, u64);
}

/// The rules of a built-in kernel for `protocol`, with the kernel's default
/// settings: for a policy of your own that keeps most of a kernel's
/// decisions and forwards them to this object.
///
/// ```
/// use pcbhash::policy::{self, Rules};
/// use pcbhash::{Policy, Protocol};
///
/// let linux = policy::builtin(Policy::Linux, Protocol::Tcp);
/// assert_eq!(linux.default_ephemeral(), 32768..=60999);
/// assert!(!linux.default_v6only());
/// ```
pub fn builtin(policy: Policy, protocol: Protocol) -> std::sync::Arc<dyn Rules> {
    resolved::kernel(policy, protocol, resolved::Options::default())
}

/// The PCB's credential checked against a port below 1024: the rule both
/// kernels share (`PermissionDenied` for an unprivileged owner).
pub fn check_privilege(cred: &crate::cred::Cred, port: u16) -> Result<(), Error> {
    if port != 0 && port < 1024 && !cred.privileged {
        Err(Error::PermissionDenied)
    } else {
        Ok(())
    }
}
