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
//! - a refusal is marked without the port's lock, by the scan that met it:
//!   a removal that clears the bit at the same time only costs the next
//!   scan one more call of the filter;
//! - every removal of an exact-index entry clears the bit of its port, under
//!   the same lock and before the entry goes, so that a set bit never
//!   outlives its holder in the hint the destination's slot holds.
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
//! that met [`INSTALL_AFTER`] ports taken by the destination, so an ordinary
//! server never pays its 8 KiB; at most one hint per slot ever lives.

use std::net::IpAddr;

use crate::addr::Endpoint;
use crate::ports::PortBits;
use crate::sync::{Arc, ArcSlot, AtomicU64, AtomicUsize, Ordering};

/// Hint slots per table. Under loom, fewer: each slot is a loom mutex there.
const SLOTS: usize = if cfg!(pcbhash_loom) { 2 } else { 64 };

/// Ports taken by the destination that one scan must meet before it
/// installs a hint.
pub(crate) const INSTALL_AFTER: usize = 16;

/// Words of a bitmap over the 65536 ports.
const WORDS: usize = 65536 / 64;

/// The busy-port bitmap of one destination: bit `p` set means the exact
/// index holds (`source`:`p`, `peer`). 8 KiB.
pub(crate) struct DestBitmap {
    source: IpAddr,
    peer: Endpoint,
    words: Box<[AtomicU64]>,
}

impl DestBitmap {
    fn new(source: IpAddr, peer: Endpoint) -> Self {
        Self {
            source,
            peer,
            words: (0..WORDS).map(|_| AtomicU64::new(0)).collect(),
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
        }
    }

    /// How many ports taken by the destination a scan meets before it
    /// installs a hint.
    pub(crate) fn install_after(&self) -> usize {
        self.install_after
    }

    /// The slot of the destination whose hash is `hash`.
    fn slot(&self, hash: u64) -> &ArcSlot<DestBitmap> {
        &self.slots[(hash >> 40) as usize % SLOTS]
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
