//! `PortTable`: who holds each local port, with per-port writer locks.
//!
//! Every one of the 65536 ports has a slot with two lists: the PCBs that are not
//! connected (bound or listening: the wildcard index) and the connected ones
//! (established or TIME_WAIT). Slots live in 256 pages of 256, allocated on
//! first use and never freed before the table, so a slot never moves and the
//! table never resizes.
//!
//! Lists are singly linked for readers, who take no lock. Writers also keep a
//! back pointer in each node, so that unlinking is O(1) even when a port has a
//! hundred thousand connections. All writers of one port hold that port's lock
//! (a stripe of mutexes shared by ports that are equal modulo the stripe count),
//! which is also the lock that makes a bind-conflict check atomic with its
//! insert.
//!
//! A write section that *moves* a PCB (between a list and the exact index,
//! or to another tuple while it stays findable) says so with
//! [`PortLock::moving`]: the stripe's move count is odd from then until the
//! lock is released, and even otherwise. Lookups never wait on it. A lookup
//! already finds a PCB that makes one move while it runs, by its order of
//! reads (the exact index, a port list, the exact index again; see
//! `PcbTable::lookup`); it reads the count only after an exact miss, to
//! notice a PCB that moved *twice* while it ran, and then reads again.

use crossbeam_epoch::{Atomic, Guard, Owned, Shared};
use crossbeam_utils::CachePadded;

use crate::counter::Counter;
use std::cell::Cell;

use crate::sync::{fence, lock, unique_id, AtomicU64, Mutex, MutexGuard, Ordering};

const PAGE_BITS: u32 = 8;
const PAGE_LEN: usize = 1 << PAGE_BITS;
const PAGES: usize = (u16::MAX as usize + 1) / PAGE_LEN;

/// Port lock stripes. Few under loom, to keep models small.
#[cfg(not(pcbhash_loom))]
const STRIPES: usize = 256;
#[cfg(pcbhash_loom)]
const STRIPES: usize = 4;

/// Which list of a port slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum List {
    /// Bound or listening PCBs: the wildcard index.
    Unconnected = 0,
    /// Connected and TIME_WAIT PCBs.
    Connected = 1,
}

struct PortNode<V> {
    value: V,
    next: Atomic<PortNode<V>>,
    /// The previous node, or null for the first. Written and read only by
    /// writers holding the port's lock.
    prev: Atomic<PortNode<V>>,
}

struct Slot<V> {
    heads: [Atomic<PortNode<V>>; 2],
}

struct Page<V> {
    slots: Box<[Slot<V>]>,
}

impl<V> Page<V> {
    fn new() -> Self {
        Self {
            slots: (0..PAGE_LEN)
                .map(|_| Slot {
                    heads: [Atomic::null(), Atomic::null()],
                })
                .collect(),
        }
    }
}

struct Stripe {
    lock: Mutex<()>,
    /// The last insertion sequence number handed out on the stripe's ports.
    /// Written only under `lock`, so it shares the line the lock's holder
    /// owns anyway.
    seq: AtomicU64,
    /// Odd while a holder of `lock` is in the middle of a move, even
    /// otherwise; moves on by two per move. Written only under `lock`; read
    /// by lookups after an exact miss (see [`PortTable::moves`]). On a line
    /// of its own: the lock word and `seq` beside it are written by every
    /// write section of the stripe, moves or not, and a lookup reading the
    /// count should not lose its copy of the line to them.
    moves: CachePadded<AtomicU64>,
}

impl Drop for PortLock<'_> {
    fn drop(&mut self) {
        if self.moving.get() {
            // Still under the lock: its guard is a field, dropped after this.
            let moves = self.stripe.moves.load(Ordering::Relaxed);
            self.stripe.moves.store(moves + 1, Ordering::Release);
        }
    }
}

/// Per-port owner lists. See the module docs.
///
/// This type maintains the invariant that every node reachable from a slot is
/// owned by exactly one live [`PortEntry`] and is freed only through the epoch,
/// after being unlinked by `remove` or when the table is dropped.
pub(crate) struct PortTable<V: Send + 'static> {
    id: u64,
    pages: Box<[Atomic<Page<V>>]>,
    stripes: Box<[CachePadded<Stripe>]>,
    len: Counter,
    /// Deliberately broken synchronisation, for the loom models' own test.
    #[cfg(pcbhash_broken)]
    broken: crate::sync::Broken,
}

/// Proof that the caller holds the writer lock of `port`.
pub(crate) struct PortLock<'a> {
    /// `None` only in the deliberately broken `no_port_lock` variant.
    _held: Option<MutexGuard<'a, ()>>,
    stripe: &'a Stripe,
    table: u64,
    port: u16,
    /// Whether this section moves a PCB: the stripe's move count is odd
    /// until the lock is released.
    moving: Cell<bool>,
}

impl PortLock<'_> {
    /// Marks this write section as a move of a PCB that stays findable
    /// throughout (see the module docs): the stripe's move count turns odd
    /// now, before any step of the move, and even again when the lock is
    /// released. Calling it again in the same section does nothing.
    pub(crate) fn moving(&self) {
        if !self.moving.replace(true) {
            let moves = self.stripe.moves.load(Ordering::Relaxed);
            self.stripe.moves.store(moves + 1, Ordering::Relaxed);
            // Orders the odd count before every step of the move: a lookup
            // that sees a step, then fences, sees the count.
            fence(Ordering::Release);
        }
    }

    /// The port this lock serialises.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The next insertion sequence number of the port: greater than every
    /// one handed out on the port before. A plain load and store: the lock
    /// serialises them.
    pub(crate) fn next_seq(&self) -> u64 {
        let seq = self.stripe.seq.load(Ordering::Relaxed) + 1;
        self.stripe.seq.store(seq, Ordering::Relaxed);
        seq
    }
}

impl std::fmt::Debug for PortLock<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortLock")
            .field("port", &self.port)
            .finish()
    }
}

impl std::fmt::Debug for Stripe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stripe").finish_non_exhaustive()
    }
}

/// The place of one value in a port list; needed to unlink it in O(1).
///
/// Not `Clone`: `PortTable::remove` consumes it, so a node is unlinked once.
pub(crate) struct PortEntry<V> {
    node: *const PortNode<V>,
    table: u64,
    port: u16,
    list: List,
}

// SAFETY: the pointer is only dereferenced by `PortTable::remove`, under the
// port's lock, on the table that created it; the node's value is `Send`.
unsafe impl<V: Send> Send for PortEntry<V> {}
// SAFETY: a shared `&PortEntry` exposes only the port and the list, plain data.
unsafe impl<V: Send> Sync for PortEntry<V> {}

impl<V> PortEntry<V> {
    /// The list the value sits in.
    pub(crate) fn list(&self) -> List {
        self.list
    }
}

impl<V> std::fmt::Debug for PortEntry<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortEntry")
            .field("port", &self.port)
            .field("list", &self.list)
            .finish_non_exhaustive()
    }
}

impl<V: Send + 'static> PortTable<V> {
    pub(crate) fn new() -> Self {
        Self {
            // Distinguishes tables, so that an entry is never unlinked from the
            // wrong one.
            id: unique_id(),
            pages: (0..PAGES).map(|_| Atomic::null()).collect(),
            stripes: (0..STRIPES)
                .map(|_| {
                    CachePadded::new(Stripe {
                        lock: Mutex::new(()),
                        seq: AtomicU64::new(0),
                        moves: CachePadded::new(AtomicU64::new(0)),
                    })
                })
                .collect(),
            len: Counter::new(),
            #[cfg(pcbhash_broken)]
            broken: crate::sync::Broken::default(),
        }
    }

    /// Turns on deliberately broken synchronisation (see `sync::Broken`).
    #[cfg(pcbhash_broken)]
    pub(crate) fn set_broken(&mut self, broken: crate::sync::Broken) {
        self.broken = broken;
    }

    /// How many values the lists hold: the sum of a striped counter (see
    /// [`Counter`]), which inserts and removes change on their thread's own
    /// line.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len.get()
    }

    /// The move count of `port`'s stripe (see the module docs), read before
    /// the reads it is to vouch for. One load; no write, no wait.
    #[inline]
    pub(crate) fn moves(&self, port: u16) -> u64 {
        self.stripes[port as usize % STRIPES]
            .moves
            .load(Ordering::Acquire)
    }

    /// Whether a move on `port`'s stripe began or ended since
    /// [`moves`](Self::moves) gave `seen`, judged after the reads made in
    /// between.
    #[inline]
    pub(crate) fn moved_since(&self, port: u16, seen: u64) -> bool {
        // Orders the caller's reads before the re-read: one that saw any step
        // of a move sees that move's odd count.
        fence(Ordering::Acquire);
        self.stripes[port as usize % STRIPES]
            .moves
            .load(Ordering::Relaxed)
            != seen
    }

    /// Takes the writer lock of `port`. Blocks while another writer of a port in
    /// the same stripe holds it.
    pub(crate) fn lock(&self, port: u16) -> PortLock<'_> {
        let stripe = &self.stripes[port as usize % STRIPES];
        #[cfg(pcbhash_broken)]
        if self.broken.no_port_lock {
            return PortLock {
                _held: None,
                stripe,
                table: self.id,
                port,
                moving: Cell::new(false),
            };
        }
        PortLock {
            _held: Some(lock(&stripe.lock)),
            stripe,
            table: self.id,
            port,
            moving: Cell::new(false),
        }
    }

    fn check(&self, held: &PortLock<'_>) {
        assert_eq!(held.table, self.id, "port lock of another table");
    }

    fn slot<'g>(&self, port: u16, guard: &'g Guard) -> Option<&'g Slot<V>> {
        let page = self.pages[port as usize >> PAGE_BITS].load(Ordering::Acquire, guard);
        // SAFETY: pages are installed once and freed only when the table is
        // dropped, through the epoch; a page loaded under `guard` is valid for
        // as long as `guard` lives.
        unsafe { page.as_ref() }.map(|page| &page.slots[port as usize & (PAGE_LEN - 1)])
    }

    fn slot_or_alloc<'g>(&self, port: u16, guard: &'g Guard) -> &'g Slot<V> {
        let cell = &self.pages[port as usize >> PAGE_BITS];
        let mut page = cell.load(Ordering::Acquire, guard);
        if page.is_null() {
            page = match cell.compare_exchange(
                Shared::null(),
                Owned::new(Page::new()),
                Ordering::AcqRel,
                Ordering::Acquire,
                guard,
            ) {
                Ok(installed) => installed,
                Err(lost) => lost.current,
            };
        }
        // SAFETY: epoch retirement (see `raw`): non-null after the exchange,
        // and pages are retired only when the table is dropped.
        let page = unsafe { page.deref() };
        &page.slots[port as usize & (PAGE_LEN - 1)]
    }

    /// Links `value` at the front of `port`'s `list`. Allocates one node (and on
    /// the port's page's first use, the page).
    pub(crate) fn insert(
        &self,
        held: &PortLock<'_>,
        list: List,
        value: V,
        guard: &Guard,
    ) -> PortEntry<V> {
        self.check(held);
        let slot = self.slot_or_alloc(held.port, guard);
        let head_cell = &slot.heads[list as usize];
        let head = head_cell.load(Ordering::Relaxed, guard);
        let node = Owned::new(PortNode {
            value,
            next: Atomic::from(head),
            prev: Atomic::null(),
        })
        .into_shared(guard);
        // SAFETY: `head`, if non-null, is a linked node of this list; we hold the
        // port's lock, so no other writer touches it.
        if let Some(first) = unsafe { head.as_ref() } {
            first.prev.store(node, Ordering::Relaxed);
        }
        head_cell.store(node, Ordering::Release);
        self.len.add(1);
        PortEntry {
            node: node.as_raw(),
            table: self.id,
            port: held.port,
            list,
        }
    }

    /// Unlinks the value of `entry` and retires its node. O(1).
    pub(crate) fn remove(&self, held: &PortLock<'_>, entry: PortEntry<V>, guard: &Guard) {
        self.check(held);
        assert_eq!(entry.table, self.id, "entry of another port table");
        assert_eq!(entry.port, held.port, "entry of another port");
        let slot = self
            .slot(entry.port, guard)
            .expect("a linked entry's page exists");
        let node_ptr = Shared::from(entry.node);
        // SAFETY: the entry was created by `insert` on this table for this port
        // and has not been removed (it is consumed here); its node is linked and
        // therefore alive, and we hold the port's lock.
        let node = unsafe { node_ptr.deref() };
        let next = node.next.load(Ordering::Relaxed, guard);
        let prev = node.prev.load(Ordering::Relaxed, guard);
        // SAFETY: neighbours of a linked node are linked nodes of the same list,
        // alive and only written under the lock we hold.
        match unsafe { prev.as_ref() } {
            None => slot.heads[entry.list as usize].store(next, Ordering::Release),
            Some(before) => before.next.store(next, Ordering::Release),
        }
        // SAFETY: a linked node's neighbours are linked nodes of its list,
        // alive and written only under the lock we hold.
        if let Some(after) = unsafe { next.as_ref() } {
            after.prev.store(prev, Ordering::Relaxed);
        }
        self.len.add(-1);
        // SAFETY: the node is unreachable from the list now; its `next` stays
        // intact for readers standing on it, and the deferral protects them.
        unsafe { guard.defer_destroy(node_ptr) };
    }

    /// The values in `port`'s `list`, newest first. Lock-free.
    pub(crate) fn iter<'g>(&self, port: u16, list: List, guard: &'g Guard) -> ListIter<'g, V> {
        let cursor = match self.slot(port, guard) {
            Some(slot) => slot.heads[list as usize].load(Ordering::Acquire, guard),
            None => Shared::null(),
        };
        ListIter { cursor, guard }
    }

    /// Every value of every port, port by port. Lock-free and weakly
    /// consistent: a value present for the whole walk is visited exactly once.
    pub(crate) fn iter_all<'g>(&'g self, guard: &'g Guard) -> impl Iterator<Item = &'g V> + 'g {
        (0..=u16::MAX)
            .step_by(PAGE_LEN)
            .filter(move |&first| self.slot(first, guard).is_some())
            .flat_map(move |first| {
                (first..=first | (PAGE_LEN as u16 - 1)).flat_map(move |port| {
                    self.iter(port, List::Unconnected, guard).chain(self.iter(
                        port,
                        List::Connected,
                        guard,
                    ))
                })
            })
    }
}

/// Iterator over one port list.
pub(crate) struct ListIter<'g, V> {
    cursor: Shared<'g, PortNode<V>>,
    guard: &'g Guard,
}

impl<'g, V> Iterator for ListIter<'g, V> {
    type Item = &'g V;

    #[inline]
    fn next(&mut self) -> Option<&'g V> {
        // SAFETY: nodes are retired through the epoch after being unlinked, so a
        // node loaded under `guard` stays valid while it lives; an unlinked node
        // keeps its `next`, so the walk can continue from it.
        let node = unsafe { self.cursor.as_ref() }?;
        self.cursor = node.next.load(Ordering::Acquire, self.guard);
        Some(&node.value)
    }
}

impl<V: Send + 'static> Drop for PortTable<V> {
    fn drop(&mut self) {
        let guard = crossbeam_epoch::pin();
        for cell in self.pages.iter() {
            let page = cell.load(Ordering::Relaxed, &guard);
            // SAFETY: `&mut self`: no writer runs; readers that still hold
            // references loaded under their guards are protected by deferring.
            let Some(page_ref) = (unsafe { page.as_ref() }) else {
                continue;
            };
            for slot in page_ref.slots.iter() {
                for head in slot.heads.iter() {
                    let mut cursor = head.load(Ordering::Relaxed, &guard);
                    // SAFETY: `&mut self`: no writer runs, and each node is
                    // linked in exactly one list, so it is retired once.
                    while let Some(node) = unsafe { cursor.as_ref() } {
                        let next = node.next.load(Ordering::Relaxed, &guard);
                        // SAFETY: unreachable once the table is gone.
                        unsafe { guard.defer_destroy(cursor) };
                        cursor = next;
                    }
                }
            }
            // SAFETY: epoch retirement (see `raw`): no reader can start from a
            // table being dropped; one already walking is protected by the
            // deferral.
            unsafe { guard.defer_destroy(page) };
        }
    }
}

impl<V: Send + 'static> std::fmt::Debug for PortTable<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortTable")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(pcbhash_loom)))]
mod tests {
    use super::*;

    #[test]
    fn insert_iterate_remove_in_any_order() {
        let table = PortTable::<u32>::new();
        let guard = crossbeam_epoch::pin();
        let held = table.lock(443);
        let mut entries: Vec<_> = (0..10)
            .map(|v| table.insert(&held, List::Connected, v, &guard))
            .collect();
        let other = table.insert(&held, List::Unconnected, 99, &guard);
        assert_eq!(table.iter(443, List::Connected, &guard).count(), 10);
        // Remove the middle (5), the head (9, now at index 8) and the tail (0).
        for index in [5, 8, 0] {
            let entry = entries.remove(index);
            table.remove(&held, entry, &guard);
        }
        let left: Vec<u32> = table.iter(443, List::Connected, &guard).copied().collect();
        assert_eq!(left, vec![8, 7, 6, 4, 3, 2, 1]);
        assert_eq!(
            table
                .iter(443, List::Unconnected, &guard)
                .copied()
                .collect::<Vec<_>>(),
            vec![99]
        );
        assert_eq!(table.len(), 8);
        table.remove(&held, other, &guard);
        drop(held);
        let all: Vec<u32> = table.iter_all(&guard).copied().collect();
        assert_eq!(all.len(), 7);
        assert_eq!(table.iter(444, List::Connected, &guard).count(), 0);
    }

    #[test]
    #[should_panic(expected = "entry of another port")]
    fn an_entry_cannot_be_removed_under_another_ports_lock() {
        let table = PortTable::<u32>::new();
        let guard = crossbeam_epoch::pin();
        let entry = {
            let held = table.lock(1);
            table.insert(&held, List::Connected, 1, &guard)
        };
        let held = table.lock(2);
        table.remove(&held, entry, &guard);
    }
}
