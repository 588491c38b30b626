//! The plain data a policy answers with, and the port memo it decides from.

use std::net::{IpAddr, SocketAddr};

use super::linux::saddr::FastOwner;
use super::view::PcbView;
use crate::addr::{Endpoint, Family};
use crate::cred::Device;
use crate::flags::Flags;

/// What `connect()` from a bound port does about the PCB that already has
/// the 4-tuple.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TupleTaken {
    /// The holder stays; the new PCB is inserted beside it (Linux UDP).
    Share,
    /// The holder is a TIME_WAIT twin that the new connection replaces.
    Replace,
}

/// What a `connect()` that the 4-tuple check refused leaves of a bound PCB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterFailedConnect {
    /// Nothing changes.
    Unchanged,
    /// The PCB stays on its port, now at this address.
    Rebound(IpAddr),
    /// The PCB gives its port back; it keeps this address for a later
    /// `listen()` or `connect()` (a `bind()` replaces it).
    Released(IpAddr),
}

/// What `disconnect()` keeps of a PCB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Disconnect {
    /// The local address stays (otherwise it goes back to the wildcard the
    /// policy names).
    pub keep_addr: bool,
    /// The port stays (otherwise the PCB leaves the table).
    pub keep_port: bool,
}

/// The identity of a reuseport / load-balance group: PCBs with equal keys on a
/// port share one group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GroupKey {
    pub(crate) family: Family,
    pub(crate) v6only: bool,
    /// Linux groups are per owner uid; FreeBSD groups are not.
    pub(crate) uid: Option<u32>,
    pub(crate) local: Endpoint,
    /// The device the members are bound to, 0 for none (Linux groups are
    /// per device).
    pub(crate) device: u32,
}

impl GroupKey {
    /// The group of PCBs of `family` on `local` (canonicalised), with
    /// V6ONLY `v6only`, and of the owner `uid` where groups are per owner.
    pub fn new(family: Family, v6only: bool, uid: Option<u32>, local: SocketAddr) -> Self {
        Self {
            family,
            v6only,
            uid,
            local: Endpoint::new(local),
            device: 0,
        }
    }

    /// The same group, for PCBs bound to `device` (SO_BINDTODEVICE):
    /// where groups form per device, PCBs on different devices never
    /// share one.
    pub fn on_device(self, device: Option<Device>) -> Self {
        Self {
            device: device.map_or(0, |device| device.0),
            ..self
        }
    }
}

/// What a group does with one more member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupFit {
    /// The newcomer fits.
    Join,
    /// The group is rebuilt with this many slots first (and goes to the
    /// head of its port's groups: see [`PcbView::group_seq`]).
    Grow(usize),
    /// Full: the newcomer stays bound outside the group.
    Full,
}

/// An order of the ephemeral ports: which scan the table runs over its
/// range, and what it remembers after a port is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PortScan {
    /// Every port of the range once, sequentially with wraparound, from a
    /// random port (or, when [`Builder::randomized_ports`] is off, from the
    /// port after the last one taken): FreeBSD `in_pcb_lport_dest`.
    ///
    /// [`Builder::randomized_ports`]: crate::Builder::randomized_ports
    Rover,
    /// Random offsets of one parity first, then the other (with
    /// `lower_half_first`, the lower half of the range before the upper):
    /// Linux `inet_csk_find_open_port`.
    Parity {
        /// Search the lower half of the range before the upper.
        lower_half_first: bool,
    },
    /// RFC 6056 algorithm 4: a keyed hash of the destination picks a slot
    /// of a perturbation table where the scan starts, even offsets first,
    /// and the slot advances past the port taken: Linux
    /// `__inet_hash_connect`.
    Perturbed,
    /// A random first port, then the following ones with wraparound,
    /// remembering nothing: Linux `udp_lib_get_port(sk, 0)`.
    RandomStart,
}

/// Linux `net.ipv4.tcp_tw_reuse`: whether an unbound `connect()` may take
/// over the 4-tuple of a TIME_WAIT PCB that the stack marked reusable
/// ([`Pcb::allow_tw_reuse`](crate::Pcb::allow_tw_reuse)), as
/// `tcp_twsk_unique` lets `__inet_hash_connect` do. Ignored by
/// [`Policy::FreeBsd`](crate::Policy).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TwReuse {
    /// 0: never (a `connect()` from a bound port still takes over a
    /// TIME_WAIT twin, as the kernel does when timestamps were seen).
    #[default]
    Off,
    /// 1: any reusable TIME_WAIT PCB.
    On,
    /// 2, the kernel's default: only a TIME_WAIT PCB of loopback traffic
    /// (a loopback address at either end, v4-mapped too, or bound to
    /// device 1, which is `lo` in every Linux network namespace).
    Loopback,
}

/// The ports one PCB's scans take: the table's ephemeral range, or the
/// range its own option leaves (see [`Rules::port_range`](super::Rules::port_range)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    /// The first port, inclusive.
    pub first: u16,
    /// The last port, inclusive.
    pub last: u16,
    /// The PCB's own range is in force: Linux's `connect()` scan then tries
    /// every port in turn (`step = 1`), without its two parity passes.
    pub own: bool,
}

impl PortRange {
    /// The table's range, `first..=last`.
    pub fn table(first: u16, last: u16) -> PortRange {
        PortRange {
            first,
            last,
            own: false,
        }
    }
}

/// What [`Pcb::bind_device`](crate::Pcb::bind_device) sets (see
/// [`Rules::bind_device`](super::Rules::bind_device)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceBinding {
    /// The device of SO_BINDTODEVICE (Linux), `None` for no device.
    Interface(Option<Device>),
    /// The FIB number of SO_SETFIB (FreeBSD), 0 for the default FIB.
    Fib(u8),
}

/// How a PCB bound to a device fits a packet to a local address (canonical)
/// that arrived on a device (`None`: unknown): the points it adds to its
/// rank, or `None` if it does not answer (see [`Lookup::device`]).
pub type DeviceRank = fn(&PcbView, &SocketAddr, Option<Device>) -> Option<u32>;

/// What a lookup's wildcard stage needs from the policy, resolved once
/// when the table is built (see [`Rules::lookup`](super::Rules::lookup)).
#[derive(Clone, Copy, Debug)]
pub struct Lookup {
    /// How well an unconnected PCB fits a packet to `local` (canonical), if
    /// at all: the greatest key wins; ties go to the first PCB walked.
    pub rank: fn(&PcbView, &SocketAddr) -> Option<(u32, u64)>,
    /// Ranks at or above this come from the pass over the packet's own
    /// address (Linux looks there before the wildcard address); 0 when a
    /// lookup makes one pass.
    pub first_pass: u32,
    /// A PCB with any of these flag bits asks its group for the member that
    /// takes the flow...
    pub group_bits: Flags,
    /// ...and only while it has SO_REUSEPORT set, if this is on (Linux
    /// `inet_lookup_reuseport` tests `sk_reuseport`).
    pub group_needs_reuseport: bool,
    /// Whether a lookup's walk stops at the first PCB that outranks every
    /// one listed before it and asks a group with no connected member
    /// (Linux `udp4_lib_lookup2`, `inet_lhash2_lookup`), rather than taking
    /// the best-ranked PCB first.
    pub group_stops_walk: bool,
    /// Whether a PCB connected to port 0 answers packets from every port of
    /// its peer (Linux UDP: `compute_score` checks `inet_dport` only when
    /// set).
    pub any_port: bool,
    /// Which of `members` members (at least one) a flow with `hash` goes to.
    pub pick: fn(u64, usize) -> usize,
    /// Whether a group's pick passes over connected members.
    pub pick_skips_connected: bool,
    /// How a PCB bound to a device (SO_BINDTODEVICE) fits a packet to
    /// `local` (canonical) that arrived on a device (`None`: unknown): the
    /// points it adds to [`rank`](Self::rank), or `None` if it does not
    /// answer the packet. A PCB bound to no device is never asked; it adds
    /// nothing. `None` here: no PCB is bound to a device (FreeBSD, whose
    /// [`Pcb::bind_device`](crate::Pcb::bind_device) sets a FIB instead:
    /// see [`Rules::fib_scopes_lookups`](super::Rules::fib_scopes_lookups)).
    pub device: Option<DeviceRank>,
}

impl Lookup {
    /// Whether a PCB with `flags`, met by a lookup, asks its group.
    #[inline]
    pub(crate) fn consults_group(&self, flags: Flags) -> bool {
        flags.intersects(self.group_bits) && (!self.group_needs_reuseport || flags.reuse_port())
    }

    /// Whether a wildcard-stage `rank` comes from the pass over the
    /// packet's own address.
    #[inline]
    pub(crate) fn same_pass(&self, rank: u32) -> bool {
        rank >= self.first_pass
    }

    /// Whether a connected `tuple` answers packets from every port of its
    /// remote address.
    #[inline]
    pub(crate) fn matches_any_port(&self, tuple: &crate::addr::Tuple) -> bool {
        self.any_port && tuple.remote.port == 0
    }
}

/// What the table remembers about one port beyond the PCBs that hold it,
/// for the policy to decide from: the table stores it per port and hands
/// it to [`Rules::bind_conflict`](super::Rules::bind_conflict) and its
/// kin, and stores what [`Rules::bound`](super::Rules::bound) and
/// [`Rules::port_left`](super::Rules::port_left) return.
///
/// Opaque outside the crate: a policy of its own can only keep the memo
/// it is given, or return the empty one (`PortMemo::default()`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortMemo(pub(crate) Memo);

/// The contents of a [`PortMemo`].
///
/// Linux keeps a little history in `struct inet_bind_bucket`: after a
/// SO_REUSEPORT socket joins a port that it did not "fast-match", the bucket
/// records that socket's owner and address (`FASTREUSEPORT_STRICT`), and later
/// SO_REUSEPORT binds of the same owner on a covered address skip the conflict
/// scan. The record outlives the socket that set it, so it cannot be derived
/// from the PCBs on the port. Neither can whether the port is held by
/// `bind()`: the bucket stays so until an owner leaves while every bucket of
/// the port's addresses (`inet_bind2_bucket`) is one that an unbound
/// `connect()` made (then `inet_bind_bucket_destroy` resets it), even after
/// the socket that bound it has connected into such a bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Memo {
    /// Nothing remembered: no bucket, or one that only `connect()` holds.
    #[default]
    Empty,
    /// A `bind()` or `listen()` holds the bucket (Linux: `fastreuse` /
    /// `fastreuseport` not -1), with no fast-path record.
    Held,
    /// Linux `tb->fastreuseport == FASTREUSEPORT_STRICT` with the fast owner
    /// (the bucket is held by `bind()` too).
    Strict(FastOwner),
}

impl PortMemo {
    /// The memo of a port nobody holds.
    pub(crate) const EMPTY: PortMemo = PortMemo(Memo::Empty);

    /// Whether a `bind()` or `listen()` holds the port's bucket.
    pub(crate) fn held_by_bind(self) -> bool {
        self.0 != Memo::Empty
    }
}
