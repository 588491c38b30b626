//! Busy-port hints: for a crowded destination, which local ports already
//! hold a connection to it.
//!
//! An unbound `connect()` tries ephemeral ports in the kernel's order, each
//! under its port's lock, until one passes the policy's check. Toward one
//! peer, once most of the range is connected, most candidates fail because
//! the 4-tuple (source:port, peer) is taken, and each failure costs a lock, a
//! walk of the port's owners and an exact-index lookup. A hint is a bitmap
//! over the 65536 local ports for one destination (source address, peer
//! endpoint), which lets the scan jump over such ports a word of 64 at a time
//! ([`Candidates::skip_marked`](crate::ports::Candidates::skip_marked)).
//!
//! # The invariant
//!
//! A set bit for port `p` means: the exact index holds (source:`p`, peer),
//! or the table's port filter ([`Builder::port_filter`](crate::Builder::port_filter))
//! refused (source:`p`, peer), which it does every time, by its contract.
//! The scan only skips ports whose bit is set, so a hint never changes which
//! port a `connect()` chooses, only how fast it gets there:
//!
//! - a bit is set only under `p`'s lock, by a `connect()` that has just seen
//!   the 4-tuple's holder in the exact index, or has just inserted itself
//!   there, and only where that holder alone makes the port busy for every
//!   unbound `connect()` (both policies' TCP and FreeBSD UDP, see
//!   [`Rules::connect_holder_busy`](crate::policy::Rules::connect_holder_busy);
//!   Linux UDP chooses the port as `bind()` would and ignores the holder, so
//!   it never sets a bit);
//! - a refusal is marked without the port's lock, by the scan that met it
//!   or the sweep ahead of it: a removal that clears the bit at the same
//!   time only costs the next scan one more call of the filter;
//! - every removal of an exact-index entry clears the bit of its port, under
//!   the same lock and before the entry goes, so that a set bit never
//!   outlives its holder in the hint the destination's slot holds.
//!
//! With a port filter, each `connect()` that finds a hint first sweeps a
//! few ports ahead of its scan ([`DestBitmap::sweep`]), with the scan's
//! own check, so that a hint learns the whole range at the pace the
//! connects fill it, not only the ports the scans happen to reach.
//!
//! A wrongly clear bit costs only the full check; a wrongly set one would
//! skip a free port. Replacing or dropping a hint is always safe: the new
//! one starts clear.
//!
//! Under concurrency the scan reads bits without the port lock, as of some
//! instant during its call: a port freed while the scan runs may be passed
//! over, as the locked check would have if it had run a little earlier. A
//! scan that took a hint before another destination's replaced it in the
//! slot keeps using it for the rest of that call.
//!
//! # Storage
//!
//! A fixed array of slots, each holding at most one hint, indexed by the
//! destination's hash; a hint for another destination in the slot means no
//! hint. No global lock: slots are swapped atomically, bits are atomic. A
//! count of installed hints lets the removal path, in a table that never
//! had one, pay a single relaxed load. A hint is installed only by a scan
//! that met [`INSTALL_AFTER`] ports taken by the destination, or whose
//! slot's scans met 16 times that many unavailable ports, taken or refused,
//! since the slot's last install ([`BusyHints::met`]), so an ordinary
//! server never pays its 8 KiB; at most one hint per slot ever lives.

use std::net::IpAddr;

use crate::addr::Endpoint;
use crate::ports::PortBits;
use crate::sync::{Arc, ArcSlot, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Hint slots per table. Under loom, fewer: each slot is a loom mutex there.
const SLOTS: usize = if cfg!(pcbhash_loom) { 2 } else { 64 };

/// Ports taken by the destination that one scan must meet before it
/// installs a hint.
pub(crate) const INSTALL_AFTER: usize = 16;

/// Over many scans: a scan also installs its destination's hint when the
/// scans toward its slot's destinations have met this many times
/// `install_after` unavailable ports since the slot's last install.
const INSTALL_AFTER_SCANS: usize = 16;

/// Words of a bitmap over the 65536 ports.
const WORDS: usize = 65536 / 64;

/// Ports one call of the sweep checks, at most.
pub(crate) const SWEEP_MAX: u32 = 64;

/// Free ports after which one call of the sweep stops.
pub(crate) const SWEEP_FREE: u32 = 1;

/// The busy-port bitmap of one destination: bit `p` set means the exact
/// index holds (`source`:`p`, `peer`). 8 KiB.
pub(crate) struct DestBitmap {
    source: IpAddr,
    peer: Endpoint,
    words: Box<[AtomicU64]>,
    /// The next port the sweep checks (see [`Self::sweep`]);
    /// past the range's last port when the sweep is done.
    swept: AtomicU32,
}

impl DestBitmap {
    fn new(source: IpAddr, peer: Endpoint) -> Self {
        Self {
            source,
            peer,
            words: (0..WORDS).map(|_| AtomicU64::new(0)).collect(),
            swept: AtomicU32::new(0),
        }
    }

    /// Whether this is the hint of (`source`, `peer`).
    fn is_for(&self, source: IpAddr, peer: &Endpoint) -> bool {
        self.source == source && self.peer == *peer
    }

    /// Marks `port` busy. Caller holds the port's lock and has seen the
    /// 4-tuple's holder, or the port filter refused the 4-tuple (see the
    /// module docs). One atomic OR.
    pub(crate) fn mark(&self, port: u16) {
        self.words[usize::from(port) / 64].fetch_or(1 << (port % 64), Ordering::Relaxed);
    }

    /// Clears `port`'s bit. Caller holds the port's lock. One atomic AND.
    fn unmark(&self, port: u16) {
        self.words[usize::from(port) / 64].fetch_and(!(1 << (port % 64)), Ordering::Relaxed);
    }

    /// The sweep: checks the unmarked ports of `first..=last` with
    /// `free`, in port order from where the last call stopped, until
    /// [`SWEEP_FREE`] of them were free or [`SWEEP_MAX`] were checked.
    /// Returns how many it checked. `free` is the scan's own check of a
    /// candidate: it marks the port when the invariant allows (a refusal of
    /// the port filter; a holder seen under the port's lock) and says
    /// whether the connect could take it.
    ///
    /// A scan checks a port the first time it reaches it, and a hint only
    /// learns what scans met after it was installed. Where the scan's order
    /// reaches some ports late (Linux's second parity pass; a hint
    /// installed once most of the first pass is connected; the gaps random
    /// starts leave), those first checks gather in the last connects
    /// toward the destination. The sweep spreads them over every connect.
    /// Stopping at the first free port paces it: a connect takes one free
    /// port, so the sweep reaches the range's end about when the connects
    /// fill the range, at a cost per connect of about one port filter
    /// call per port it refuses, and one locked check.
    ///
    /// Two concurrent sweeps may check the same ports; that only costs
    /// time. A cursor outside `first..=last` (a call with another range)
    /// starts at `first` if below it, and is done if past `last`.
    pub(crate) fn sweep(&self, first: u16, last: u16, mut free: impl FnMut(u16) -> bool) -> u32 {
        let from = self.swept.load(Ordering::Relaxed).max(u32::from(first));
        let mut port = from;
        let (mut checked, mut found) = (0, 0);
        while port <= u32::from(last) && checked < SWEEP_MAX && found < SWEEP_FREE {
            // Every value here is at most `last`, a port.
            let p = port as u16;
            port += 1;
            if self.word(usize::from(p) / 64) & (1 << (p % 64)) != 0 {
                continue;
            }
            checked += 1;
            if free(p) {
                found += 1;
            }
        }
        if port != from {
            self.swept.fetch_max(port, Ordering::Relaxed);
        }
        checked
    }

    /// Whether `port` is marked.
    #[cfg(test)]
    pub(crate) fn is_marked(&self, port: u16) -> bool {
        self.word(usize::from(port) / 64) & (1 << (port % 64)) != 0
    }
}

impl PortBits for DestBitmap {
    #[inline]
    fn word(&self, index: usize) -> u64 {
        self.words[index].load(Ordering::Relaxed)
    }
}

/// The hints of one table.
pub(crate) struct BusyHints {
    slots: Box<[ArcSlot<DestBitmap>]>,
    /// Slots that hold a hint (they never empty again).
    installed: AtomicUsize,
    install_after: usize,
    /// Per slot, the unavailable ports that scans toward its destinations
    /// met without a hint, since its last install (see [`Self::met`]).
    met: Box<[AtomicUsize]>,
}

impl BusyHints {
    /// How many hints were ever installed (for tests).
    #[cfg(test)]
    pub(crate) fn installed(&self) -> usize {
        self.installed.load(Ordering::Relaxed)
    }

    /// No hints; a scan installs one after meeting `install_after` ports
    /// taken by its destination.
    pub(crate) fn new(install_after: usize) -> Self {
        Self {
            slots: (0..SLOTS).map(|_| ArcSlot::new(None)).collect(),
            installed: AtomicUsize::new(0),
            install_after,
            met: (0..SLOTS).map(|_| AtomicUsize::new(0)).collect(),
        }
    }

    /// A scan toward the destination whose hash is `hash` met `ports`
    /// unavailable ports (4-tuples taken, candidates refused) and had no
    /// hint. Whether the scans toward the slot's destinations have now met
    /// enough of them, since the slot's last install, for this scan to
    /// install its hint (the count then starts again).
    ///
    /// One scan seldom meets many: Linux's scan starts past the port the
    /// last connect took, and a filter accepting one port in four refuses
    /// about one candidate per scan. Summed, they show a crowded
    /// destination long before a single scan would, and the hint then
    /// learns its ports while they are taken, not all at once near the end.
    /// One relaxed read-modify-write per such scan; none once the
    /// destination has its hint.
    pub(crate) fn met(&self, hash: u64, ports: usize) -> bool {
        let count = &self.met[Self::index(hash)];
        let sum = count
            .fetch_add(ports, Ordering::Relaxed)
            .saturating_add(ports);
        let enough = sum >= self.install_after.saturating_mul(INSTALL_AFTER_SCANS);
        if enough {
            count.store(0, Ordering::Relaxed);
        }
        enough
    }

    /// How many ports taken by the destination a scan meets before it
    /// installs a hint.
    pub(crate) fn install_after(&self) -> usize {
        self.install_after
    }

    /// The slot of the destination whose hash is `hash`.
    fn slot(&self, hash: u64) -> &ArcSlot<DestBitmap> {
        &self.slots[Self::index(hash)]
    }

    /// The slot index of the destination whose hash is `hash`.
    fn index(hash: u64) -> usize {
        (hash >> 40) as usize % SLOTS
    }

    /// The hint of (`source`, `peer`), whose hash is `hash`, if any. One
    /// relaxed load when the table has none; otherwise one slot load.
    pub(crate) fn get(
        &self,
        hash: u64,
        source: IpAddr,
        peer: &Endpoint,
    ) -> Option<Arc<DestBitmap>> {
        if self.installed.load(Ordering::Relaxed) == 0 {
            return None;
        }
        self.slot(hash)
            .load()
            .filter(|hint| hint.is_for(source, peer))
    }

    /// The hint of (`source`, `peer`): the one in its slot, or a new, clear
    /// one that replaces whatever the slot held. Allocates 8 KiB.
    pub(crate) fn install(&self, hash: u64, source: IpAddr, peer: &Endpoint) -> Arc<DestBitmap> {
        let slot = self.slot(hash);
        if let Some(hint) = slot.load().filter(|hint| hint.is_for(source, peer)) {
            return hint;
        }
        let hint = Arc::new(DestBitmap::new(source, *peer));
        if slot.swap(Some(hint.clone())).is_none() {
            self.installed.fetch_add(1, Ordering::Relaxed);
        }
        hint
    }

    /// The exact-index entry (`source`:`port`, `peer`) is going: clears
    /// `port`'s bit in the destination's hint. `hash` gives the
    /// destination's hash; it is computed only if the table has a hint.
    /// Caller holds `port`'s lock. One relaxed load when the table has no
    /// hint.
    pub(crate) fn unmark(
        &self,
        hash: impl FnOnce() -> u64,
        source: IpAddr,
        port: u16,
        peer: &Endpoint,
    ) {
        if self.installed.load(Ordering::Relaxed) == 0 {
            return;
        }
        if let Some(hint) = self.get(hash(), source, peer) {
            hint.unmark(port);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn dest(port: u16) -> (IpAddr, Endpoint) {
        (
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            Endpoint {
                ip: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
                port,
            },
        )
    }

    #[test]
    fn a_hint_answers_only_for_its_destination() {
        let hints = BusyHints::new(INSTALL_AFTER);
        let (source, peer) = dest(80);
        assert!(hints.get(7, source, &peer).is_none());
        let hint = hints.install(7, source, &peer);
        hint.mark(40000);
        let again = hints.get(7, source, &peer).expect("installed");
        assert!(again.is_marked(40000));
        assert!(!again.is_marked(40001));
        // Another peer in the same slot: no hint, and installing its own
        // replaces this one with a clear bitmap.
        let (_, other) = dest(81);
        assert!(hints.get(7, source, &other).is_none());
        let theirs = hints.install(7, source, &other);
        assert!(!theirs.is_marked(40000));
        assert!(hints.get(7, source, &peer).is_none());
        assert_eq!(hints.installed.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn the_sweep_goes_on_where_it_stopped_and_paces_itself() {
        let hints = BusyHints::new(INSTALL_AFTER);
        let (source, peer) = dest(80);
        let hint = hints.install(1, source, &peer);
        assert_eq!(SWEEP_FREE, 1, "the expected runs below stop at one");
        // One port in four is free; the others are refused, and marked by
        // the check as the scan's would. 40000 and 40001 are already
        // marked (taken).
        let check = |p: u16, seen: &mut Vec<u16>| {
            seen.push(p);
            if p % 4 != 0 {
                hint.mark(p);
            }
            p % 4 == 0
        };
        hint.mark(40000);
        hint.mark(40001);
        let mut seen = Vec::new();
        let n = hint.sweep(40000, 40999, |p| check(p, &mut seen));
        // The marked ports are not checked; the call stops at the free
        // 40004.
        assert_eq!(seen, [40002, 40003, 40004]);
        assert_eq!(n, 3);
        let mut next = Vec::new();
        hint.sweep(40000, 40999, |p| check(p, &mut next));
        assert_eq!(next, [40005, 40006, 40007, 40008]);
        // Nothing free: at most SWEEP_MAX checks per call, and never past
        // the range's end.
        let mut calls = 0;
        while hint.sweep(40000, 40999, |_| false) > 0 {
            calls += 1;
            assert!(calls <= 1000 / SWEEP_MAX as usize + 1);
        }
        assert!(calls >= (1000 - 9) / SWEEP_MAX as usize);
        // Done: no more checks in this range, nor in a narrower one.
        assert_eq!(hint.sweep(40500, 40999, |_| unreachable!()), 0);
        // A range that starts past the cursor is swept from its start.
        let other = hints.install(2, source, &dest(81).1);
        other.sweep(40000, 40003, |_| true);
        let mut later = Vec::new();
        other.sweep(50000, 50010, |p| {
            later.push(p);
            true
        });
        assert_eq!(later, [50000]);
    }

    #[test]
    fn scans_met_ports_add_up_per_slot_to_an_install() {
        let hints = BusyHints::new(2);
        let threshold = 2 * INSTALL_AFTER_SCANS;
        let (a, b) = (5u64 << 40, 6u64 << 40);
        assert!(!hints.met(a, threshold - 1));
        // Another slot counts apart.
        assert!(!hints.met(b, threshold - 1));
        assert!(hints.met(a, 1));
        // The count starts again after the install it allowed.
        assert!(!hints.met(a, threshold - 1));
        assert!(hints.met(b, 1));
        // A table that never installs hints never gets there.
        let never = BusyHints::new(usize::MAX);
        assert!(!never.met(a, usize::MAX / 2));
    }

    #[test]
    fn removal_clears_the_bit() {
        let hints = BusyHints::new(INSTALL_AFTER);
        let (source, peer) = dest(80);
        hints.unmark(|| unreachable!("no hint: no hash"), source, 40000, &peer);
        let hint = hints.install(3, source, &peer);
        hint.mark(40000);
        hint.mark(65535);
        hints.unmark(|| 3, source, 40000, &peer);
        assert!(!hint.is_marked(40000));
        assert!(hint.is_marked(65535));
        assert_eq!(hint.word(1023), 1 << 63);
    }
}
