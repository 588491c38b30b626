//! The PCB record: [`PcbInner`], one allocation holding the hash-safe fields
//! and the socket, and its methods. The public handles over it are in
//! `pcb.rs`.

use std::net::Ipv6Addr;

use crossbeam_epoch::Guard;

use crate::addr::{Family, FlowKey, Tuple};
use crate::cred::{Cred, Device};
use crate::flags::OwnerGuard;
use crate::flags::{AtomicFlags, Flags, State};
use crate::lbgroup::{Group, Member};
use crate::policy::PcbView;
use crate::raw::{EpochOption, Listed, PortLink, Retired, SocketCell, TupleCell};
use crate::sync::{Arc, AtomicU64, AtomicU8, Ordering};

/// The shared part of a PCB, and the socket. See the module docs for which
/// fields are hash-safe.
///
/// This type maintains the invariant that the policy layer cannot reach the
/// socket: a policy sees a PCB only as a [`PcbView`], plain data copied from
/// the hash-safe fields.
///
/// Aligned to 16 bytes: the exact index keeps the address of the value
/// shifted right by four bits.
///
/// `repr(C)`, the tuple first: an exact hit reads the tuple latch's first
/// 48 bytes (its counter, the ports, the device word beside them and the
/// first copy's addresses) and nothing else of the PCB, so they sit
/// together at the start. The socket follows inside the latch, before its
/// second copy ([`Near`]): a stack reads it next, and with a small `S` it
/// shares the tuple's line whenever the PCB's first 64 bytes do. Then the
/// flags and the words; with `S = ()` this leaves no padding.
#[repr(C, align(16))]
pub(crate) struct PcbInner<S: Send + Sync + 'static> {
    /// Read through [`PcbInner::tuple`]; written under the owner lock. Its
    /// spare word holds the device of SO_BINDTODEVICE (an interface
    /// index, 0 for none: [`PcbInner::device`]), hash-safe: read with a
    /// relaxed load like the flags, written under the owner lock and, while
    /// the PCB holds a port, its port's lock.
    tuple: TupleCell<Near<S>>,
    /// The `flags2` word, whose top bit is the owner lock
    /// ([`PcbInner::lock_owner`]).
    pub(super) flags: AtomicFlags,
    /// Insertion order into the table; written under the port lock.
    pub(super) seq: AtomicU64,
    /// The PCB's place in its port's list, fixed when it entered the port
    /// (`bind()` or its first link): its [`PcbView::seq`](crate::PcbView)
    /// then, decided by the options it had then. Linux UDP's port list
    /// (`hslot`), which neither a later `connect()` nor a later
    /// SO_REUSEPORT reorders; written under the port lock.
    pub(super) bound_seq: AtomicU64,
    /// When the PCB last connected (Linux UDP: who of several PCBs on one
    /// 4-tuple connected last); written under the port lock.
    pub(super) connect_seq: AtomicU64,
    /// The hash the PCB is filed under in the exact index: written before
    /// the insert, under the port's lock, and not changed while the PCB is
    /// in the index (a resize files it again under this hash).
    pub(super) exact_hash: AtomicU64,
    /// The group this PCB is an active (or pending) member of.
    pub(super) group: EpochOption<Arc<Group<PcbInner<S>>>>,
    /// What few PCBs need ([`Rare`]), out of line so that the others do not
    /// pay for it. Written under the owner lock, as a whole.
    rare: EpochOption<Rare>,
    /// The PCB's place in its port's lists, and the list node its first
    /// link uses (so that linking a PCB new on its port allocates nothing).
    /// Written only under the port's lock.
    port_link: PortLink<PcbInner<S>>,
}

/// What the PCB keeps between its tuple's two copies: the socket, which a
/// stack reads right after an exact hit, then the small fields, which with
/// `S = ()` fill what would be the padding before the second copy.
#[repr(C)]
struct Near<S> {
    socket: SocketCell<S>,
    family: Family,
    privileged: bool,
    /// The FIB of SO_SETFIB (FreeBSD), 0 for the default FIB; 8 bits, which
    /// keep the PCB in its size class. Hash-safe, written like the device.
    fib: AtomicU8,
    /// The credential, stored as its two fields (so that the small fields
    /// pack without padding): see [`PcbInner::cred`].
    uid: u32,
}

/// The fields few PCBs need.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Rare {
    /// The last peer a `connect()` named, v4-mapped if IPv4, kept after the
    /// connection ends (Linux UDP `Inet6`: `sk_v6_daddr`).
    last_peer: Option<Ipv6Addr>,
    /// The PCB's own ephemeral range (`IP_LOCAL_PORT_RANGE`).
    port_range: Option<(u16, u16)>,
}

impl<S: Send + Sync + 'static> PcbInner<S> {
    pub(crate) fn new(family: Family, cred: Cred, flags: Flags, socket: S) -> Self {
        Self::with_tuple(family, cred, flags, socket, Tuple::unbound(family))
    }

    /// A PCB that starts out with `tuple` (a passive open's connection),
    /// so that linking it does not have to replace the tuple.
    #[inline]
    pub(crate) fn with_tuple(
        family: Family,
        cred: Cred,
        flags: Flags,
        socket: S,
        tuple: Tuple,
    ) -> Self {
        let near = Near {
            socket: SocketCell::new(socket),
            family,
            privileged: cred.privileged,
            fib: AtomicU8::new(0),
            uid: cred.uid,
        };
        Self {
            flags: AtomicFlags::new(flags),
            seq: AtomicU64::new(0),
            bound_seq: AtomicU64::new(0),
            connect_seq: AtomicU64::new(0),
            tuple: TupleCell::new(tuple.to_words(), near),
            exact_hash: AtomicU64::new(0),
            group: EpochOption::none(),
            rare: EpochOption::none(),
            port_link: PortLink::new(),
        }
    }

    /// The PCB's own ephemeral range, `(first, last)`, if set.
    pub(super) fn port_range(&self, guard: &Guard) -> Option<(u16, u16)> {
        self.rare.load(guard).and_then(|rare| rare.port_range)
    }

    /// Sets (or, with `None`, clears) the PCB's own ephemeral range. Caller
    /// holds the owner lock.
    pub(super) fn set_port_range(&self, range: Option<(u16, u16)>, guard: &Guard) {
        self.update_rare(|rare| rare.port_range = range, guard);
    }

    /// The last peer a `connect()` named (see [`Rare::last_peer`]).
    pub(super) fn last_peer<'g>(&'g self, guard: &'g Guard) -> Option<&'g Ipv6Addr> {
        self.rare
            .load(guard)
            .and_then(|rare| rare.last_peer.as_ref())
    }

    /// Records the last peer, before [`Flags::LAST_PEER`] is set. Caller
    /// holds the owner lock.
    pub(super) fn set_last_peer(&self, peer: Ipv6Addr, guard: &Guard) {
        self.update_rare(|rare| rare.last_peer = Some(peer), guard);
    }

    /// Publishes a changed copy of the rare fields, if `change` changed
    /// them. Caller holds the owner lock (the only writers' lock).
    fn update_rare(&self, change: impl FnOnce(&mut Rare), guard: &Guard) {
        let old = self.rare.load(guard).copied().unwrap_or_default();
        let mut new = old;
        change(&mut new);
        if new != old {
            self.rare.replace(Some(new), guard);
        }
    }

    /// The tuple, copied out. Lock-free, and it never waits for a writer.
    /// (The guard is not needed by the inline store; it keeps callers
    /// independent of how the tuple is stored.)
    #[inline]
    pub(crate) fn tuple(&self, guard: &Guard) -> Tuple {
        let _ = guard;
        Tuple::from_words(self.tuple.load())
    }

    /// Replaces the tuple. Caller holds this PCB's owner lock (which
    /// serialises the writers).
    pub(crate) fn set_tuple(&self, tuple: Tuple) {
        self.tuple.store(tuple.to_words());
    }

    /// The socket, or `None` once detached. No reference count.
    #[inline]
    pub(crate) fn socket<'g>(&self, guard: &'g Guard) -> Option<&'g S> {
        self.near().socket.get(guard)
    }

    /// Detaches the socket (TIME_WAIT, close, a TIME_WAIT twin replaced):
    /// `None` to every later read; the value is dropped once no guard that
    /// could have read it remains. Detaching twice does nothing. `retired`:
    /// the indexes' counts of this PCB that an unlink just gave up, released
    /// with the socket by one deferred function.
    pub(crate) fn detach_socket(self: &Arc<Self>, retired: Retired<Self>, guard: &Guard) {
        SocketCell::detach(self, retired, |pcb| &pcb.near().socket, guard);
    }

    /// Takes the owner lock, which serialises the owner's calls on this
    /// PCB; lookups never take it. See [`AtomicFlags`].
    pub(crate) fn lock_owner(&self) -> OwnerGuard<'_> {
        self.flags.lock_owner()
    }

    /// The hash-safe view a policy may see.
    #[inline]
    pub(crate) fn view(&self, guard: &Guard) -> PcbView {
        let tuple = self.tuple(guard);
        let flags = self.flags.load();
        let group_seq = if flags.intersects(Flags::IN_GROUP | Flags::GROUP_PENDING) {
            self.group.load(guard).map_or(0, |group| group.seq())
        } else {
            0
        };
        PcbView {
            family: self.family(),
            cred: self.cred(),
            flags,
            local: tuple.local,
            remote: tuple.remote,
            seq: self.seq.load(Ordering::Relaxed),
            group_seq,
            device: self.tuple.word().load(Ordering::Relaxed),
            fib: u32::from(self.fib_index()),
        }
    }

    /// Whether the PCB's tuple is the 4-tuple `key`: the exact index's
    /// predicate, which compares the tuple the PCB exposes where it lies.
    #[inline(always)]
    pub(crate) fn is_flow(&self, key: &FlowKey, guard: &Guard) -> bool {
        let _ = guard;
        self.tuple.holds(&key.to_words())
    }

    /// Whether the PCB answers a packet that arrived on `device` (0: the
    /// device is unknown): it is bound to no device, or to that one (Linux
    /// `inet_match`'s `sk_bound_dev_if` test). Checked only after the tuple
    /// matched, so that it costs a miss nothing.
    #[inline(always)]
    pub(crate) fn answers(&self, device: u32) -> bool {
        let bound = self.tuple.word().load(Ordering::Relaxed);
        bound == 0 || bound == device
    }

    /// The FIB the PCB is in (FreeBSD SO_SETFIB), `None` for FIB 0.
    pub(crate) fn fib(&self) -> Option<Device> {
        match self.fib_index() {
            0 => None,
            fib => Some(Device(u32::from(fib))),
        }
    }

    /// The FIB's number, 0 for the default FIB.
    pub(super) fn fib_index(&self) -> u8 {
        self.near().fib.load(Ordering::Relaxed)
    }

    /// Puts the PCB in FIB `fib`. Caller holds the owner lock, and the
    /// port's lock while the PCB holds a port.
    pub(super) fn set_fib(&self, fib: u8) {
        self.near().fib.store(fib, Ordering::Relaxed);
    }

    /// The fields kept between the tuple's copies.
    #[inline(always)]
    fn near(&self) -> &Near<S> {
        self.tuple.middle()
    }

    /// Binds the PCB to `device` (`None`: to none). Caller holds the owner
    /// lock, and the port's lock while the PCB holds a port.
    pub(super) fn set_device(&self, device: Option<Device>) {
        let index = device.map_or(0, |device| device.0);
        self.tuple.word().store(index, Ordering::Relaxed);
    }

    /// The device the PCB is bound to.
    pub(crate) fn device(&self) -> Option<Device> {
        match self.tuple.word().load(Ordering::Relaxed) {
            0 => None,
            index => Some(Device(index)),
        }
    }

    pub(crate) fn state(&self) -> State {
        self.flags.load().state()
    }

    /// A snapshot of the flags. Lock-free.
    pub(crate) fn flags(&self) -> Flags {
        self.flags.load()
    }

    /// The address family the PCB was created with.
    pub(crate) fn family(&self) -> Family {
        self.near().family
    }

    /// The credential the PCB was created with.
    pub(crate) fn cred(&self) -> Cred {
        let near = self.near();
        Cred {
            uid: near.uid,
            privileged: near.privileged,
        }
    }
}

impl<S: Send + Sync + 'static> Listed for PcbInner<S> {
    fn port_link(&self) -> &PortLink<Self> {
        &self.port_link
    }

    fn listed_port(&self) -> u16 {
        (self.tuple.load().ports >> 16) as u16
    }
}

impl<S: Send + Sync + 'static> Member for PcbInner<S> {
    fn state(&self) -> State {
        PcbInner::state(self)
    }
}

#[cfg(not(pcbhash_loom))]
static_assertions::const_assert!(std::mem::size_of::<PcbInner<()>>() <= 176);
