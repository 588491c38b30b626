//! `Flags`: the PCB's `flags2` word. Its state bits, the cached reuse bits
//! and V6ONLY.
//!
//! FreeBSD once panicked because a bind-conflict check followed another PCB's
//! socket pointer to read its `SO_REUSEPORT` option after the socket was gone.
//! The fix was to cache the option bits in the PCB (`inp_flags2`). Here they
//! live in one atomic word per PCB that anyone holding an epoch guard may read,
//! so conflict checks and lookups never need the socket.

use std::fmt;

use crate::sync::{backoff, AtomicU32, Ordering};

/// The lifecycle state of a PCB.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Attached, not bound: holds no address, is in no index.
    Closed,
    /// Bound to a local address and port, not connected: in the wildcard index.
    Bound,
    /// Listening (TCP): in the wildcard index.
    Listen,
    /// Connected to a peer: in the exact index.
    Connected,
    /// TIME_WAIT: still in the exact index, holding its tuple and reuse bits,
    /// with the socket detached.
    TimeWait,
    /// Closed and removed from every index (or replaced by a new connection).
    Dropped,
}

impl State {
    const ALL: [State; 6] = [
        State::Closed,
        State::Bound,
        State::Listen,
        State::Connected,
        State::TimeWait,
        State::Dropped,
    ];

    fn from_bits(bits: u32) -> State {
        Self::ALL[((bits & STATE_MASK) >> STATE_SHIFT) as usize % Self::ALL.len()]
    }

    fn bits(self) -> u32 {
        (self as u32) << STATE_SHIFT
    }

    /// Whether the PCB holds a local port (and so sits in the table).
    pub fn is_in_table(self) -> bool {
        matches!(
            self,
            State::Bound | State::Listen | State::Connected | State::TimeWait
        )
    }

    /// Whether the PCB has a peer.
    pub fn is_connected(self) -> bool {
        matches!(self, State::Connected | State::TimeWait)
    }
}

const STATE_SHIFT: u32 = 16;
const STATE_MASK: u32 = 0b111 << STATE_SHIFT;

/// A snapshot of a PCB's `flags2` word: reuse options, V6ONLY, state and
/// table-internal markers. `Copy`; reading it never touches the socket.
///
/// ```
/// use pcbhash::{Flags, State};
/// let flags = Flags::REUSEADDR | Flags::V6ONLY;
/// assert!(flags.reuse_addr() && flags.v6only() && !flags.reuse_port());
/// assert_eq!(flags.state(), State::Closed);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u32);

impl Flags {
    /// No bits set.
    pub const EMPTY: Flags = Flags(0);
    /// `SO_REUSEADDR`.
    pub const REUSEADDR: Flags = Flags(1 << 0);
    /// `SO_REUSEPORT`.
    pub const REUSEPORT: Flags = Flags(1 << 1);
    /// `SO_REUSEPORT_LB` (FreeBSD).
    pub const REUSEPORT_LB: Flags = Flags(1 << 2);
    /// `IPV6_V6ONLY`.
    pub const V6ONLY: Flags = Flags(1 << 3);
    /// The PCB is an active member of a reuseport or load-balance group.
    pub const IN_GROUP: Flags = Flags(1 << 4);
    /// The PCB waits to join its load-balance group at `listen()`.
    pub const GROUP_PENDING: Flags = Flags(1 << 5);
    /// The local port was chosen by `connect()` (Linux `SOCK_CONNECT_BIND`).
    pub const CONNECT_BIND: Flags = Flags(1 << 6);
    /// The local address was given explicitly to `bind()`
    /// (Linux `SOCK_BINDADDR_LOCK`).
    pub const ADDR_LOCKED: Flags = Flags(1 << 7);
    /// The local port was given explicitly to `bind()`
    /// (Linux `SOCK_BINDPORT_LOCK`).
    pub const PORT_LOCKED: Flags = Flags(1 << 8);
    /// Linux TCP: the PCB sits in a bind bucket of its address and port
    /// (`inet_bind2_bucket`) that an unbound `connect()` created and no
    /// `bind()` has joined since.
    pub const CONNECT_BUCKET: Flags = Flags(1 << 9);
    /// Linux: `bind()` gave the PCB the local address it holds now, so its
    /// IPv4 source address (`inet_saddr`) is set; for an `Inet6` PCB on a
    /// specific IPv6 address that is `LOOPBACK4_IPV6` (`__inet6_bind`).
    pub const SOURCE_BOUND: Flags = Flags(1 << 10);
    /// Linux TCP: the PCB has listened; `connect()` is refused from then on,
    /// even after `disconnect()` stopped it listening.
    pub const LISTENED: Flags = Flags(1 << 11);
    /// Linux TCP: the PCB has been connected (by `connect()` or `accept()`);
    /// `listen()` is refused from then on, even after `disconnect()`.
    pub const CONNECTED_ONCE: Flags = Flags(1 << 12);
    /// Linux UDP: connected, but a PCB that connected later over the same
    /// 4-tuple holds the exact index's entry for it.
    pub const SHADOWED: Flags = Flags(1 << 13);
    /// Linux UDP: holds the exact index's entry for a 4-tuple over which
    /// [`SHADOWED`](Self::SHADOWED) PCBs wait.
    pub(crate) const SHADOWING: Flags = Flags(1 << 14);
    /// Linux UDP: an `Inet6` PCB that connected at least once. The kernel
    /// keeps its last peer in `sk_v6_daddr` after `disconnect()`, and an
    /// IPv6 datagram from another address (any, for a v4-mapped peer) does
    /// not match the PCB, while one from that address ranks it higher.
    pub const LAST_PEER: Flags = Flags(1 << 15);
    /// Linux `IP_BIND_ADDRESS_NO_PORT`: `bind()` to port 0 records the
    /// address and takes no port; `connect()` picks the port for the whole
    /// 4-tuple (above the state's bits).
    pub const BIND_NO_PORT: Flags = Flags(1 << 19);
    /// A TIME_WAIT PCB whose 4-tuple an unbound `connect()` may take over
    /// ([`Pcb::allow_tw_reuse`](crate::Pcb::allow_tw_reuse): timestamps
    /// were seen and the reuse delay has passed).
    pub const TW_REUSABLE: Flags = Flags(1 << 20);

    /// The three reuse options.
    pub const REUSE_ANY: Flags =
        Flags(Self::REUSEADDR.0 | Self::REUSEPORT.0 | Self::REUSEPORT_LB.0);

    /// The raw bits.
    pub fn bits(self) -> u32 {
        self.0
    }

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any bit of `other` is set.
    pub fn intersects(self, other: Flags) -> bool {
        self.0 & other.0 != 0
    }

    /// `SO_REUSEADDR` is set.
    pub fn reuse_addr(self) -> bool {
        self.contains(Self::REUSEADDR)
    }

    /// `SO_REUSEPORT` is set.
    pub fn reuse_port(self) -> bool {
        self.contains(Self::REUSEPORT)
    }

    /// `SO_REUSEPORT_LB` is set.
    pub fn reuse_port_lb(self) -> bool {
        self.contains(Self::REUSEPORT_LB)
    }

    /// `IPV6_V6ONLY` is set.
    pub fn v6only(self) -> bool {
        self.contains(Self::V6ONLY)
    }

    /// The PCB is an active member of a reuseport or load-balance group.
    pub fn in_group(self) -> bool {
        self.contains(Self::IN_GROUP)
    }

    /// The state stored in the word.
    pub fn state(self) -> State {
        State::from_bits(self.0)
    }

    /// The same flags with another state.
    pub(crate) fn with_state(self, state: State) -> Flags {
        Flags((self.0 & !STATE_MASK) | state.bits())
    }

    /// The flags without `bits`.
    pub(crate) fn without(self, bits: Flags) -> Flags {
        Flags(self.0 & !bits.0)
    }

    /// The flags, with `bits` set or cleared.
    pub(crate) fn set(self, bits: Flags, on: bool) -> Flags {
        if on {
            self | bits
        } else {
            self.without(bits)
        }
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl std::ops::BitAnd for Flags {
    type Output = Flags;
    fn bitand(self, rhs: Flags) -> Flags {
        Flags(self.0 & rhs.0)
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (Self::REUSEADDR, "REUSEADDR"),
            (Self::REUSEPORT, "REUSEPORT"),
            (Self::REUSEPORT_LB, "REUSEPORT_LB"),
            (Self::V6ONLY, "V6ONLY"),
            (Self::IN_GROUP, "IN_GROUP"),
            (Self::GROUP_PENDING, "GROUP_PENDING"),
            (Self::CONNECT_BIND, "CONNECT_BIND"),
            (Self::ADDR_LOCKED, "ADDR_LOCKED"),
            (Self::PORT_LOCKED, "PORT_LOCKED"),
            (Self::CONNECT_BUCKET, "CONNECT_BUCKET"),
            (Self::SOURCE_BOUND, "SOURCE_BOUND"),
            (Self::LISTENED, "LISTENED"),
            (Self::CONNECTED_ONCE, "CONNECTED_ONCE"),
            (Self::SHADOWED, "SHADOWED"),
            (Self::SHADOWING, "SHADOWING"),
            (Self::LAST_PEER, "LAST_PEER"),
            (Self::BIND_NO_PORT, "BIND_NO_PORT"),
            (Self::TW_REUSABLE, "TW_REUSABLE"),
        ];
        write!(f, "Flags({:?}", self.state())?;
        for (bit, name) in names {
            if self.contains(bit) {
                write!(f, " | {name}")?;
            }
        }
        f.write_str(")")
    }
}

/// The owner lock: the top bit of the word, outside every flag and the
/// state. [`AtomicFlags::load`] never shows it.
const OWNER_LOCK: u32 = 1 << 31;

/// The atomic `flags2` word of a PCB, which also holds the PCB's owner lock.
///
/// Readers load it with one acquire load. Writers change it with a
/// compare-exchange loop, under the PCB's owner lock (and the port lock when
/// the change matters to other PCBs' conflict checks).
///
/// The owner lock serialises the owner's calls on one PCB (`bind`,
/// `connect`, `close`, …); lookups never take it. It is one bit of this
/// word rather than a mutex of its own: taking it is one atomic
/// read-modify-write on a line the call writes anyway. A caller that finds
/// it held spins briefly (the owner's calls are short), then yields its time
/// slice between attempts, so that a holder that was preempted can run. It
/// is not fair, which is fine for one owner's calls on one socket.
pub(crate) struct AtomicFlags(AtomicU32);

impl AtomicFlags {
    pub(crate) fn new(flags: Flags) -> Self {
        Self(AtomicU32::new(flags.0 & !OWNER_LOCK))
    }

    #[inline]
    pub(crate) fn load(&self) -> Flags {
        Flags(self.0.load(Ordering::Acquire) & !OWNER_LOCK)
    }

    /// Applies `f` atomically and returns the new flags. The owner lock's
    /// bit is neither shown to `f` nor changed.
    pub(crate) fn update(&self, mut f: impl FnMut(Flags) -> Flags) -> Flags {
        let mut current = self.0.load(Ordering::Relaxed);
        loop {
            let new = f(Flags(current & !OWNER_LOCK)).0 & !OWNER_LOCK;
            match self.0.compare_exchange_weak(
                current,
                new | (current & OWNER_LOCK),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Flags(new),
                Err(actual) => current = actual,
            }
        }
    }

    pub(crate) fn set_state(&self, state: State) -> Flags {
        self.update(|flags| flags.with_state(state))
    }

    /// Takes the owner lock (see the type), spinning briefly and then
    /// yielding while another call holds it. Released when the returned
    /// guard is dropped.
    pub(crate) fn lock_owner(&self) -> OwnerGuard<'_> {
        let mut waited = 0;
        loop {
            if self.0.fetch_or(OWNER_LOCK, Ordering::Acquire) & OWNER_LOCK == 0 {
                return OwnerGuard(self);
            }
            while self.0.load(Ordering::Relaxed) & OWNER_LOCK != 0 {
                backoff(&mut waited);
            }
        }
    }
}

/// The owner lock of one PCB, held until dropped.
#[derive(Debug)]
pub(crate) struct OwnerGuard<'a>(&'a AtomicFlags);

impl Drop for OwnerGuard<'_> {
    fn drop(&mut self) {
        self.0 .0.fetch_and(!OWNER_LOCK, Ordering::Release);
    }
}

impl fmt::Debug for AtomicFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.load().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_and_bits_are_independent() {
        let word = AtomicFlags::new(Flags::REUSEPORT);
        for state in State::ALL {
            let flags = word.set_state(state);
            assert_eq!(flags.state(), state);
            assert!(flags.reuse_port() && !flags.reuse_addr());
        }
        let flags = word.update(|f| f.set(Flags::REUSEADDR, true).set(Flags::REUSEPORT, false));
        assert!(flags.reuse_addr() && !flags.reuse_port());
        assert_eq!(flags.state(), State::Dropped);
    }

    #[test]
    fn the_owner_lock_is_invisible_to_flags() {
        let word = AtomicFlags::new(Flags::REUSEADDR);
        let held = word.lock_owner();
        assert_eq!(word.load(), Flags::REUSEADDR);
        let flags = word.update(|f| f.set(Flags::V6ONLY, true));
        assert_eq!(flags, Flags::REUSEADDR | Flags::V6ONLY);
        assert_eq!(word.load(), flags);
        drop(held);
        // Released: taking it again does not wait, and updates kept nothing
        // of it.
        drop(word.lock_owner());
        assert_eq!(word.load(), Flags::REUSEADDR | Flags::V6ONLY);
    }

    #[test]
    fn the_owner_lock_serialises_its_holders() {
        let word = std::sync::Arc::new(AtomicFlags::new(Flags::EMPTY));
        let inside = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (word, inside) = (word.clone(), inside.clone());
                std::thread::spawn(move || {
                    for _ in 0..2_000 {
                        let _held = word.lock_owner();
                        assert_eq!(inside.fetch_add(1, Ordering::Relaxed), 0, "two holders");
                        word.update(|f| f.set(Flags::REUSEPORT, !f.reuse_port()));
                        inside.fetch_sub(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        // 8,000 toggles: back where it started, with the lock free.
        assert_eq!(word.load(), Flags::EMPTY);
        assert_eq!(word.0.load(Ordering::Relaxed), 0);
    }
}
