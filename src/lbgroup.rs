//! Load-balance groups: SO_REUSEPORT_LB (FreeBSD) and SO_REUSEPORT (Linux).
//!
//! A group is the set of PCBs that share one local address and port and agree
//! to split its flows. Its member array is immutable once published: a writer
//! (holding the port's lock) builds a new array and swaps it in, retiring the
//! old one through the epoch, so a lookup reads a consistent array with one
//! load and picks a member by a keyed hash of the packet's tuple. A flow keeps
//! its member for as long as the group is unchanged.
//!
//! Leaving is a swap-remove (the last member takes the leaver's slot), as in
//! both kernels; it changes the mapping of the flows of the moved member only.
//!
//! A group also counts its pending members (FreeBSD TCP PCBs that joined at
//! `bind()` and wait for `listen()`, `il_pendcnt`), which take slots but no
//! flows, and carries its place among the groups of its port (`seq`).

use crossbeam_epoch::Guard;

use crate::flags::State;
use crate::policy::{GroupKey, Lookup};
use crate::raw::{EpochCell, PortLock};
use crate::sync::{Arc, AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// What a group needs to know of a member: its state (Linux skips
/// connected members when it picks one).
pub(crate) trait Member: Send + Sync + 'static {
    /// The member's state, read lock-free.
    fn state(&self) -> State;
}

/// One group of members `M` (the table's PCBs). See the module docs.
///
/// This type maintains the invariant that `pending` and `slots` are written
/// only under the port's lock, and `members.len() + pending <= slots`.
pub(crate) struct Group<M: Member> {
    pub(crate) key: GroupKey,
    members: EpochCell<Vec<Arc<M>>>,
    pending: AtomicUsize,
    slots: AtomicUsize,
    seq: AtomicU64,
    /// Linux `has_conns`: a member has connected (and left) since the group
    /// was founded; never cleared.
    has_conns: AtomicBool,
}

impl<M: Member> Group<M> {
    /// A group with no members yet, `slots` slots, at place `seq`.
    pub(crate) fn new(key: GroupKey, slots: usize, seq: u64) -> Self {
        Self {
            key,
            members: EpochCell::new(Vec::new()),
            pending: AtomicUsize::new(0),
            slots: AtomicUsize::new(slots),
            seq: AtomicU64::new(seq),
            has_conns: AtomicBool::new(false),
        }
    }

    /// The group's place among its port's groups (larger: newer).
    pub(crate) fn seq(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }

    /// Active and pending members, and slots. `_held` is the port's lock.
    pub(crate) fn occupancy(&self, _held: &PortLock<'_>, guard: &Guard) -> (usize, usize) {
        (
            self.len(guard) + self.pending.load(Ordering::Relaxed),
            self.slots.load(Ordering::Relaxed),
        )
    }

    /// Rebuilds the group with `slots` slots at place `seq`. `_held` is the
    /// port's lock.
    pub(crate) fn grow(&self, _held: &PortLock<'_>, slots: usize, seq: u64) {
        self.slots.store(slots, Ordering::Relaxed);
        self.seq.store(seq, Ordering::Relaxed);
    }

    /// Counts one more (`up`) or one fewer pending member. `_held` is the
    /// port's lock.
    pub(crate) fn count_pending(&self, _held: &PortLock<'_>, up: bool) {
        if up {
            self.pending.fetch_add(1, Ordering::Relaxed);
        } else {
            self.pending.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Records that a member connected (`reuseport_has_conns_set`).
    pub(crate) fn set_has_conns(&self) {
        self.has_conns.store(true, Ordering::Relaxed);
    }

    /// Whether a member ever connected. Lock-free.
    pub(crate) fn has_conns(&self) -> bool {
        self.has_conns.load(Ordering::Relaxed)
    }

    /// The members that take flows, in the group's order. Lock-free.
    pub(crate) fn members<'g>(&'g self, guard: &'g Guard) -> &'g [Arc<M>] {
        self.members.load(guard)
    }

    /// The current member count. Lock-free.
    pub(crate) fn len(&self, guard: &Guard) -> usize {
        self.members.load(guard).len()
    }

    /// Publishes a new array with `pcb` appended. `_held` is the port's lock.
    pub(crate) fn join(&self, _held: &PortLock<'_>, pcb: Arc<M>, guard: &Guard) {
        let mut members = self.members.load(guard).clone();
        members.push(pcb);
        self.members.replace(members, guard);
    }

    /// Publishes a new array without `pcb` (swap-remove). `_held` is the
    /// port's lock. Returns how many members remain.
    pub(crate) fn leave(&self, _held: &PortLock<'_>, pcb: &M, guard: &Guard) -> usize {
        let mut members = self.members.load(guard).clone();
        if let Some(index) = members.iter().position(|m| std::ptr::eq(&**m, pcb)) {
            members.swap_remove(index);
        }
        let left = members.len();
        self.members.replace(members, guard);
        left
    }

    /// The member for a flow with `hash`, as `lookup` picks it. Lock-free:
    /// two loads, then, where the policy says so (Linux), a walk past
    /// connected members: `reuseport_select_sock_by_hash` takes the next
    /// member that is not connected, wrapping around, and `None` when every
    /// member is (the lookup then keeps the PCB it found).
    #[inline]
    pub(crate) fn pick<'g>(
        &'g self,
        lookup: &Lookup,
        hash: u64,
        guard: &'g Guard,
    ) -> Option<&'g M> {
        let members = self.members.load(guard);
        if members.is_empty() {
            return None;
        }
        let first = (lookup.pick)(hash, members.len());
        if !lookup.pick_skips_connected {
            return Some(&members[first]);
        }
        let (after, before) = members.split_at(first);
        before
            .iter()
            .chain(after)
            .find(|member| member.state() != State::Connected)
            .map(|member| &**member)
    }
}

impl<M: Member> std::fmt::Debug for Group<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let guard = crossbeam_epoch::pin();
        f.debug_struct("Group")
            .field("key", &self.key)
            .field("members", &self.len(&guard))
            .finish()
    }
}
