//! `PortTable`: who holds each local port, with per-port writer locks.
//!
//! Every one of the 65536 ports has a slot with two lists: the PCBs that are not
//! connected (bound or listening: the wildcard index) and the connected ones
//! (established or TIME_WAIT). Slots live in 256 pages of 256, allocated on
//! first use and never freed before the table, so a slot never moves and the
//! table never resizes.
//!
//! Lists are singly linked for readers, who take no lock. Writers also keep,
//! in each node, the address of the link that points to it (the slot's head or
//! the previous node's `next`), so that unlinking is O(1) even when a port has
//! a hundred thousand connections, and needs neither the port nor the list.
//!
//! The links are intrusive: a value carries one node of its own
//! ([`PortLink`]), which its first link uses, so linking a PCB that is new on
//! its port allocates nothing. A node, once unlinked, is never linked again:
//! a reader may still stand on it and go on through its `next`, which must
//! keep leading through the list it was in. So a value linked a second time
//! (a bound PCB that connects, a connected one that disconnects) gets a node
//! of its own allocation. All writers of one port hold that port's lock
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

use std::cell::{Cell, UnsafeCell};
use std::mem::MaybeUninit;

use crossbeam_epoch::{Atomic, Guard, Owned, Shared};
use crossbeam_utils::CachePadded;

use super::Retired;
use crate::counter::Counter;
use crate::sync::{
    fence, lock, unique_id, Arc, AtomicU64, AtomicUsize, Mutex, MutexGuard, Ordering,
};

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

/// A value that carries its own port-list node: what a [`PortTable`] lists.
pub(crate) trait Listed: Send + Sync + Sized + 'static {
    /// The value's link. Always the same field of the value.
    fn port_link(&self) -> &PortLink<Self>;

    /// The port the value is on: the one whose lock guards its link. The
    /// table checks it on every link and unlink.
    fn listed_port(&self) -> u16;
}

/// One node of a port list: the value and the links.
struct PortNode<T> {
    /// The value, one strong count of which the list holds while the node is
    /// linked. Written before the node is first published and never again;
    /// uninitialised in a value's own node until its first link.
    value: UnsafeCell<MaybeUninit<Arc<T>>>,
    next: Atomic<PortNode<T>>,
    /// The address of the link that points to this node: its slot's head or
    /// the previous node's `next`. Written and read only by writers holding
    /// the port's lock.
    pprev: AtomicUsize,
}

impl<T> PortNode<T> {
    fn empty() -> Self {
        Self {
            value: UnsafeCell::new(MaybeUninit::uninit()),
            next: Atomic::null(),
            pprev: AtomicUsize::new(0),
        }
    }

    /// The value. Sound for a node read from a list (or linked by the
    /// caller): its value was written before the node was published.
    ///
    /// # Safety
    ///
    /// The node has been linked, and its value not yet dropped: the list's
    /// count is released only through the epoch, after the unlink.
    unsafe fn value(&self) -> &Arc<T> {
        // SAFETY: by the caller's contract the value is initialised and not
        // dropped; it is never written after its node's publication.
        unsafe { (*self.value.get()).assume_init_ref() }
    }
}

/// The tag bits of [`PortLink::at`].
const LISTED_CONNECTED: usize = 1;
const OWN_NODE_SPENT: usize = 2;

/// The part of a value that a [`PortTable`] keeps: the node its first link
/// uses, and where it is linked now. 32 bytes, written only under the lock
/// of the port the value is linked on.
///
/// This type maintains the invariant that `own` is linked at most once in
/// the value's life: from the first link on, `at` carries the
/// `OWN_NODE_SPENT` tag.
pub(crate) struct PortLink<T> {
    own: PortNode<T>,
    /// The node that links the value now (null when it is not linked),
    /// tagged with the list (`LISTED_CONNECTED`) and `OWN_NODE_SPENT`.
    at: Atomic<PortNode<T>>,
}

// SAFETY: the only non-atomic field is the value cell, an `Arc<T>` written
// once before its node is published (release) and read after (acquire);
// `T: Send + Sync` makes sharing and dropping that `Arc` anywhere sound.
unsafe impl<T: Send + Sync> Sync for PortNode<T> {}
// SAFETY: as above; the list releases the count it holds through the epoch,
// on any thread.
unsafe impl<T: Send + Sync> Send for PortNode<T> {}

impl<T> PortLink<T> {
    pub(crate) fn new() -> Self {
        Self {
            own: PortNode::empty(),
            at: Atomic::null(),
        }
    }
}

#[cfg(not(pcbhash_loom))]
static_assertions::const_assert_eq!(std::mem::size_of::<PortLink<()>>(), 32);

impl<T> Default for PortLink<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> std::fmt::Debug for PortLink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortLink").finish_non_exhaustive()
    }
}

struct Slot<T> {
    heads: [Atomic<PortNode<T>>; 2],
}

struct Page<T> {
    slots: Box<[Slot<T>]>,
}

impl<T> Page<T> {
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
/// This type maintains the invariants that every node reachable from a slot
/// holds one strong count of its value and is that value's current node
/// (`PortLink::at`), and that an unlinked node and its count are released
/// only through the epoch (a boxed node is freed then as well).
pub(crate) struct PortTable<T: Listed> {
    id: u64,
    pages: Box<[Atomic<Page<T>>]>,
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

impl<T: Listed> PortTable<T> {
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

    fn check(&self, held: &PortLock<'_>, value: &T) {
        assert_eq!(held.table, self.id, "port lock of another table");
        assert_eq!(value.listed_port(), held.port, "value of another port");
    }

    fn slot<'g>(&self, port: u16, guard: &'g Guard) -> Option<&'g Slot<T>> {
        let page = self.pages[port as usize >> PAGE_BITS].load(Ordering::Acquire, guard);
        // SAFETY: pages are installed once and freed only when the table is
        // dropped, through the epoch; a page loaded under `guard` is valid for
        // as long as `guard` lives.
        unsafe { page.as_ref() }.map(|page| &page.slots[port as usize & (PAGE_LEN - 1)])
    }

    fn slot_or_alloc<'g>(&self, port: u16, guard: &'g Guard) -> &'g Slot<T> {
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

    /// Links `value` at the front of the held port's `list`. Its first
    /// link uses the value's own node; a later one allocates a node (and
    /// the port's page's first use, the page).
    ///
    /// # Panics
    ///
    /// If `value` is linked already, or is on another port than `held`'s.
    pub(crate) fn insert(&self, held: &PortLock<'_>, list: List, value: &Arc<T>, guard: &Guard) {
        self.check(held, value);
        let at = value.port_link().at.load(Ordering::Relaxed, guard);
        assert!(
            at.is_null(),
            "pcbhash: a value linked twice in the port table"
        );
        self.link(held, list, value, guard);
    }

    /// Unlinks `value` from its list, in O(1). Returns the list it was in
    /// and the list's count of it, which the caller releases through the
    /// epoch ([`Retired`]; empty when the node was not the value's own and
    /// its release, with the node's memory, is deferred here), or `None` if
    /// it was not linked.
    ///
    /// # Panics
    ///
    /// If `value` is on another port than `held`'s.
    pub(crate) fn remove(
        &self,
        held: &PortLock<'_>,
        value: &T,
        guard: &Guard,
    ) -> Option<(List, Retired<T>)> {
        self.check(held, value);
        let link = value.port_link();
        let at = link.at.load(Ordering::Relaxed, guard);
        if at.is_null() {
            return None;
        }
        link.at
            .store(Shared::null().with_tag(OWN_NODE_SPENT), Ordering::Relaxed);
        self.len.add(-1);
        // SAFETY: `at` was the value's current node: linked by this table
        // (type invariant) under the lock we hold.
        Some(unsafe { self.unlink(link, at, guard) })
    }

    /// Moves `value` to the front of the held port's `list` (it need not be
    /// linked): links it there first, then calls `between`, then unlinks
    /// its old node, so that a reader walking either list while the value
    /// stays on the port meets it. Returns the list it was in.
    ///
    /// # Panics
    ///
    /// If `value` is on another port than `held`'s.
    pub(crate) fn relist(
        &self,
        held: &PortLock<'_>,
        list: List,
        value: &Arc<T>,
        between: impl FnOnce(),
        guard: &Guard,
    ) -> Option<List> {
        self.check(held, value);
        let link = value.port_link();
        let old = link.at.load(Ordering::Relaxed, guard);
        if old.is_null() {
            self.link(held, list, value, guard);
            between();
            return None;
        }
        // Linked, so its own node is spent: `link` allocates a node.
        link.at
            .store(Shared::null().with_tag(OWN_NODE_SPENT), Ordering::Relaxed);
        self.len.add(-1);
        self.link(held, list, value, guard);
        between();
        // SAFETY: `old` was the value's current node until just now: linked
        // by this table (type invariant) under the lock we hold.
        let (was, retired) = unsafe { self.unlink(link, old, guard) };
        // The value stays listed: the new node holds a count of its own.
        retired.defer(guard);
        Some(was)
    }

    /// Links `value`, which is not linked, at the front of the held port's
    /// `list`, through its own node if that was never linked, and makes the
    /// node its current one.
    fn link(&self, held: &PortLock<'_>, list: List, value: &Arc<T>, guard: &Guard) {
        let link = value.port_link();
        let spent = link.at.load(Ordering::Relaxed, guard).tag() & OWN_NODE_SPENT != 0;
        let node = if spent {
            Owned::new(PortNode {
                value: UnsafeCell::new(MaybeUninit::new(Arc::clone(value))),
                ..PortNode::empty()
            })
            .into_shared(guard)
        } else {
            let own = &link.own;
            // SAFETY: the own node was never linked (no `OWN_NODE_SPENT`),
            // so no reader can reach it, and we hold the port's lock, which
            // every writer of the value's link holds: nobody else reads or
            // writes its value cell.
            unsafe { (*own.value.get()).write(Arc::clone(value)) };
            Shared::from(own as *const PortNode<T>)
        };
        let slot = self.slot_or_alloc(held.port, guard);
        let head_cell = &slot.heads[list as usize];
        let head = head_cell.load(Ordering::Relaxed, guard);
        // SAFETY: `node` is ours until the store to the head publishes it.
        let node_ref = unsafe { node.deref() };
        node_ref.next.store(head, Ordering::Relaxed);
        node_ref
            .pprev
            .store(head_cell as *const _ as usize, Ordering::Relaxed);
        // SAFETY: `head`, if non-null, is a linked node of this list; we hold the
        // port's lock, so no other writer touches it.
        if let Some(first) = unsafe { head.as_ref() } {
            first
                .pprev
                .store(&node_ref.next as *const _ as usize, Ordering::Relaxed);
        }
        head_cell.store(node, Ordering::Release);
        let connected = if list == List::Connected {
            LISTED_CONNECTED
        } else {
            0
        };
        link.at
            .store(node.with_tag(OWN_NODE_SPENT | connected), Ordering::Relaxed);
        self.len.add(1);
    }

    /// Unlinks `at` (tagged with its list), a node of `link`'s value.
    /// Returns its list and the list's count of the value: read out of the
    /// value's own node at once, or, for a node of its own allocation,
    /// released with the node through the epoch here (the count returned
    /// is then empty).
    ///
    /// # Safety
    ///
    /// `at` is linked, by this table, and the caller holds its port's lock.
    unsafe fn unlink(
        &self,
        link: &PortLink<T>,
        at: Shared<'_, PortNode<T>>,
        guard: &Guard,
    ) -> (List, Retired<T>) {
        // SAFETY: by the caller's contract the node is linked, so alive.
        let node = unsafe { at.deref() };
        let next = node.next.load(Ordering::Relaxed, guard);
        let pprev = node.pprev.load(Ordering::Relaxed) as *const Atomic<PortNode<T>>;
        // SAFETY: `pprev` is the link that points to this linked node: a
        // slot's head (slots are freed only with the table) or the `next` of
        // a linked node of the same list, alive and written only under the
        // lock we hold.
        unsafe { &*pprev }.store(next, Ordering::Release);
        // SAFETY: a linked node's successor is a linked node of its list,
        // alive and written only under the lock we hold.
        if let Some(after) = unsafe { next.as_ref() } {
            after.pprev.store(pprev as usize, Ordering::Relaxed);
        }
        // SAFETY: the node is unreachable from the list now; its `next`
        // stays intact for readers standing on it (it is never linked
        // again).
        let retired = unsafe { give_up(link, at.with_tag(0), guard) };
        let list = if at.tag() & LISTED_CONNECTED != 0 {
            List::Connected
        } else {
            List::Unconnected
        };
        (list, retired)
    }

    /// The values in `port`'s `list`, newest first. Lock-free.
    pub(crate) fn iter<'g>(&self, port: u16, list: List, guard: &'g Guard) -> ListIter<'g, T> {
        let cursor = match self.slot(port, guard) {
            Some(slot) => slot.heads[list as usize].load(Ordering::Acquire, guard),
            None => Shared::null(),
        };
        ListIter { cursor, guard }
    }

    /// Every value of every port, port by port. Lock-free and weakly
    /// consistent: a value present for the whole walk is visited exactly once.
    pub(crate) fn iter_all<'g>(
        &'g self,
        guard: &'g Guard,
    ) -> impl Iterator<Item = &'g Arc<T>> + 'g {
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

/// The list's count of the value of `node`, which was just unlinked: read
/// out of the value's own node, or, for a node of its own allocation,
/// released with the node through the epoch here (the count returned is
/// then empty).
///
/// # Safety
///
/// `node` is a node of `link`'s value, was linked by a `PortTable` with its
/// value initialised, and is unreachable for readers that start from now;
/// it is given up once.
unsafe fn give_up<T: Listed>(
    link: &PortLink<T>,
    node: Shared<'_, PortNode<T>>,
    guard: &Guard,
) -> Retired<T> {
    if std::ptr::eq(node.as_raw(), &link.own) {
        // SAFETY: the value was initialised before the node was first
        // published, and this is its only read: an own node is linked once.
        // The read copies the bits and leaves them in place, so a reader
        // standing on the node still finds the value there; the count read
        // out keeps the value (and the node inside it) alive until the
        // epoch releases it, after every such reader.
        Retired::new(unsafe { (*link.own.value.get()).assume_init_read() })
    } else {
        // SAFETY: the caller's contract; the deferral runs after every guard
        // that could hold the node or its value.
        unsafe { retire(node, guard) };
        Retired::empty()
    }
}

/// Releases the unlinked `node`, one of its own allocation, through the
/// epoch: the list's count of its value, and the node's memory.
///
/// # Safety
///
/// `node` was linked by a `PortTable`, with its value initialised, is not
/// its value's own node, and is unreachable for readers that start from now;
/// it is retired once.
unsafe fn retire<T: Listed>(node: Shared<'_, PortNode<T>>, guard: &Guard) {
    let node = node.as_raw() as usize;
    let release = move || {
        let node = node as *mut PortNode<T>;
        // SAFETY: the caller's contract keeps the node alive until now: it is
        // freed only here. Its value was initialised before it was
        // published, and this is its only release.
        let value = unsafe { (*(*node).value.get()).assume_init_read() };
        // SAFETY: a node that is not a value's own came from `Owned::new`
        // in `link`, and nothing reaches it any more.
        drop(unsafe { Owned::from_raw(node) });
        drop(value);
    };
    // SAFETY: `release` touches only the node and its value, which stay
    // valid until it runs (above); `T: Send + Sync` lets any thread run it.
    unsafe { guard.defer_unchecked(release) };
}

/// Iterator over one port list.
pub(crate) struct ListIter<'g, T> {
    cursor: Shared<'g, PortNode<T>>,
    guard: &'g Guard,
}

impl<'g, T> Iterator for ListIter<'g, T> {
    type Item = &'g Arc<T>;

    #[inline]
    fn next(&mut self) -> Option<&'g Arc<T>> {
        // SAFETY: epoch retirement (see `raw`): a node and its value are
        // released through the epoch after being unlinked, so a node loaded
        // under `guard` stays valid while it lives; an unlinked node is never
        // linked again and keeps its `next`, so the walk goes on through the
        // list it was in.
        let node = unsafe { self.cursor.as_ref() }?;
        self.cursor = node.next.load(Ordering::Acquire, self.guard);
        // SAFETY: as above; its value was written before it was published.
        Some(unsafe { node.value() })
    }
}

impl<T: Listed> Drop for PortTable<T> {
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
                        // SAFETY: a linked node's value is initialised.
                        let link = unsafe { node.value() }.port_link();
                        link.at
                            .store(Shared::null().with_tag(OWN_NODE_SPENT), Ordering::Relaxed);
                        // SAFETY: unreachable once the table is gone.
                        unsafe { give_up(link, cursor, &guard) }.defer(&guard);
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

impl<T: Listed> std::fmt::Debug for PortTable<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortTable")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(pcbhash_loom)))]
mod tests {
    use super::*;

    /// [`PortTable::remove`], with the list's count released through the
    /// epoch.
    fn unlist(
        table: &PortTable<Item>,
        held: &PortLock<'_>,
        value: &Item,
        guard: &Guard,
    ) -> Option<List> {
        let (list, retired) = table.remove(held, value, guard)?;
        retired.defer(guard);
        Some(list)
    }

    /// A listed value: a number and the port it is on.
    struct Item {
        n: u32,
        port: u16,
        link: PortLink<Item>,
    }

    impl Listed for Item {
        fn port_link(&self) -> &PortLink<Self> {
            &self.link
        }

        fn listed_port(&self) -> u16 {
            self.port
        }
    }

    fn item(n: u32, port: u16) -> Arc<Item> {
        Arc::new(Item {
            n,
            port,
            link: PortLink::new(),
        })
    }

    fn numbers(table: &PortTable<Item>, port: u16, list: List, guard: &Guard) -> Vec<u32> {
        table.iter(port, list, guard).map(|item| item.n).collect()
    }

    #[test]
    fn insert_iterate_remove_in_any_order() {
        let table = PortTable::<Item>::new();
        let guard = crossbeam_epoch::pin();
        let held = table.lock(443);
        let mut items: Vec<_> = (0..10).map(|n| item(n, 443)).collect();
        for value in &items {
            table.insert(&held, List::Connected, value, &guard);
        }
        let other = item(99, 443);
        table.insert(&held, List::Unconnected, &other, &guard);
        assert_eq!(table.iter(443, List::Connected, &guard).count(), 10);
        // Remove the middle (5), the head (9, now at index 8) and the tail (0).
        for index in [5, 8, 0] {
            let value = items.remove(index);
            assert_eq!(unlist(&table, &held, &value, &guard), Some(List::Connected));
            assert_eq!(unlist(&table, &held, &value, &guard), None);
        }
        assert_eq!(
            numbers(&table, 443, List::Connected, &guard),
            vec![8, 7, 6, 4, 3, 2, 1]
        );
        assert_eq!(numbers(&table, 443, List::Unconnected, &guard), vec![99]);
        assert_eq!(table.len(), 8);
        assert_eq!(
            unlist(&table, &held, &other, &guard),
            Some(List::Unconnected)
        );
        drop(held);
        assert_eq!(table.iter_all(&guard).count(), 7);
        assert_eq!(table.iter(444, List::Connected, &guard).count(), 0);
    }

    #[test]
    fn a_relinked_value_gets_a_new_node_and_the_old_one_keeps_its_next() {
        let table = PortTable::<Item>::new();
        let guard = crossbeam_epoch::pin();
        let held = table.lock(80);
        let (a, b, c) = (item(1, 80), item(2, 80), item(3, 80));
        for value in [&a, &b, &c] {
            table.insert(&held, List::Unconnected, value, &guard);
        }
        // A reader stands on `b`, which then moves to the other list.
        let mut walk = table.iter(80, List::Unconnected, &guard);
        assert_eq!(walk.next().map(|v| v.n), Some(3));
        assert_eq!(walk.next().map(|v| v.n), Some(2));
        table.insert(&held, List::Connected, &item(4, 80), &guard);
        assert_eq!(unlist(&table, &held, &b, &guard), Some(List::Unconnected));
        table.insert(&held, List::Connected, &b, &guard);
        assert!(!std::ptr::eq(
            b.link.at.load(Ordering::Relaxed, &guard).as_raw(),
            &b.link.own
        ));
        // The reader goes on through the list `b` was in.
        assert_eq!(walk.next().map(|v| v.n), Some(1));
        assert_eq!(walk.next().map(|v| v.n), None);
        assert_eq!(numbers(&table, 80, List::Unconnected, &guard), vec![3, 1]);
        assert_eq!(numbers(&table, 80, List::Connected, &guard), vec![2, 4]);
        assert_eq!(unlist(&table, &held, &b, &guard), Some(List::Connected));
        assert_eq!(numbers(&table, 80, List::Connected, &guard), vec![4]);
    }

    #[test]
    fn the_list_holds_one_count_and_releases_it_through_the_epoch() {
        let table = PortTable::<Item>::new();
        let value = item(7, 9);
        {
            let guard = crossbeam_epoch::pin();
            let held = table.lock(9);
            table.insert(&held, List::Connected, &value, &guard);
            assert_eq!(Arc::strong_count(&value), 2);
            unlist(&table, &held, &value, &guard);
            table.insert(&held, List::Connected, &value, &guard);
            unlist(&table, &held, &value, &guard);
        }
        // Both releases are deferred.
        assert!(crate::raw::collect_until(|| Arc::strong_count(&value) == 1));
        let guard = crossbeam_epoch::pin();
        let held = table.lock(9);
        table.insert(&held, List::Unconnected, &value, &guard);
        drop(held);
        drop(guard);
        drop(table);
        // The table's drop releases it.
        assert!(crate::raw::collect_until(|| Arc::strong_count(&value) == 1));
    }

    #[test]
    #[should_panic(expected = "value of another port")]
    fn a_value_cannot_be_removed_under_another_ports_lock() {
        let table = PortTable::<Item>::new();
        let guard = crossbeam_epoch::pin();
        let value = item(1, 1);
        {
            let held = table.lock(1);
            table.insert(&held, List::Connected, &value, &guard);
        }
        let held = table.lock(2);
        unlist(&table, &held, &value, &guard);
    }

    #[test]
    #[should_panic(expected = "linked twice")]
    fn a_value_cannot_be_linked_twice() {
        let table = PortTable::<Item>::new();
        let guard = crossbeam_epoch::pin();
        let value = item(1, 1);
        let held = table.lock(1);
        table.insert(&held, List::Connected, &value, &guard);
        table.insert(&held, List::Unconnected, &value, &guard);
    }
}
