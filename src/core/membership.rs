//! Reuseport / load-balance group membership: joining (or founding) a
//! group, FreeBSD's pending members and their activation at `listen()`, and
//! leaving. The groups themselves are in `lbgroup.rs`; which group a PCB
//! belongs in, and whether it fits, the policy decides.

use crossbeam_epoch::Guard;

use super::pcb::PcbInner;
use super::shared::Shared;
use crate::flags::Flags;
use crate::lbgroup::Group;
use crate::policy::{GroupFit, PcbView, Protocol};
use crate::raw::{List, PortLock};
use crate::sync::{Arc, Ordering};

impl<S: Send + Sync + 'static> Shared<S> {
    /// Joins (or founds) the group `inner`'s options and address call for.
    pub(crate) fn join_group(&self, held: &PortLock<'_>, inner: &Arc<PcbInner<S>>, guard: &Guard) {
        let view = inner.view(guard);
        let Some(key) = self.rules.group_key(&view) else {
            return;
        };
        let existing = match self.group_mate(held, inner, &view, guard) {
            Some(Some(mate)) => Some(match mate.group.load(guard).cloned() {
                Some(group) => group,
                None => {
                    // The mate set SO_REUSEPORT after it was hashed: a group
                    // is founded for it on the spot (`reuseport_add_sock`).
                    let group = Arc::new(Group::new(
                        key,
                        self.rules.group_initial_slots(),
                        held.next_seq(),
                    ));
                    group.join(held, mate.clone(), guard);
                    mate.group.replace(Some(group.clone()), guard);
                    mate.flags.update(|flags| flags | Flags::IN_GROUP);
                    group
                }
            }),
            Some(None) => None,
            None => self
                .ports
                .iter(held.port(), List::Unconnected, guard)
                .filter(|pcb| {
                    !Arc::ptr_eq(pcb, inner)
                        && pcb
                            .flags
                            .load()
                            .intersects(Flags::IN_GROUP | Flags::GROUP_PENDING)
                })
                .filter_map(|pcb| pcb.group.load(guard).cloned())
                .find(|group| group.key == key),
        };
        let group = match existing {
            Some(group) => {
                let (members, slots) = group.occupancy(held, guard);
                match self.rules.group_fit(members, slots) {
                    GroupFit::Join => {}
                    GroupFit::Grow(slots) => group.grow(held, slots, held.next_seq()),
                    GroupFit::Full => {
                        // The PCB stays bound outside the group.
                        inner
                            .flags
                            .update(|flags| flags.without(Flags::GROUP_PENDING));
                        return;
                    }
                }
                group
            }
            None => Arc::new(Group::new(
                key,
                self.rules.group_initial_slots(),
                held.next_seq(),
            )),
        };
        if self.rules.joins_pending(&view) {
            group.count_pending(held, true);
            inner.group.replace(Some(group), guard);
            inner.flags.update(|flags| flags | Flags::GROUP_PENDING);
            return;
        }
        group.join(held, inner.clone(), guard);
        inner.group.replace(Some(group), guard);
        inner
            .flags
            .update(|flags| flags.without(Flags::GROUP_PENDING) | Flags::IN_GROUP);
    }

    /// Linux: the PCB whose group a new member `me` joins, met first in the
    /// port's list (UDP: the place each PCB took when it entered the port,
    /// newest first but an AF_INET6 PCB that had SO_REUSEPORT then at the
    /// tail, as `udp_reuseport_add_sock` walks `hslot`; TCP: the listening
    /// list); `Some(None)` when there is none, `None` when the
    /// policy finds groups by their key instead.
    fn group_mate(
        &self,
        held: &PortLock<'_>,
        inner: &Arc<PcbInner<S>>,
        me: &PcbView,
        guard: &Guard,
    ) -> Option<Option<Arc<PcbInner<S>>>> {
        let mut best: Option<(u64, &Arc<PcbInner<S>>)> = None;
        let udp = self.rules.protocol == Protocol::Udp;
        for pcb in self
            .ports
            .iter(held.port(), List::Unconnected, guard)
            .chain(self.ports.iter(held.port(), List::Connected, guard))
        {
            if Arc::ptr_eq(pcb, inner) {
                continue;
            }
            let view = pcb.view(guard);
            if !self.rules.group_mate(me, &view)? {
                continue;
            }
            let order = if udp {
                pcb.bound_seq.load(Ordering::Relaxed)
            } else {
                view.seq
            };
            if best.is_none_or(|(o, _)| order > o) {
                best = Some((order, pcb));
            }
        }
        Some(best.map(|(_, pcb)| pcb.clone()))
    }

    /// FreeBSD `in_pcblisten`: a pending member becomes active. Caller holds
    /// the port's lock.
    pub(crate) fn activate_member(
        &self,
        held: &PortLock<'_>,
        inner: &Arc<PcbInner<S>>,
        guard: &Guard,
    ) {
        debug_assert_eq!(held.port(), inner.tuple(guard).local.port);
        if !inner.flags.load().contains(Flags::GROUP_PENDING) {
            return;
        }
        if let Some(group) = inner.group.load(guard) {
            group.count_pending(held, false);
            group.join(held, inner.clone(), guard);
        }
        inner
            .flags
            .update(|flags| flags.without(Flags::GROUP_PENDING) | Flags::IN_GROUP);
    }

    /// Leaves the group, if any. Caller holds the port's lock.
    pub(crate) fn leave_group(&self, held: &PortLock<'_>, inner: &Arc<PcbInner<S>>, guard: &Guard) {
        let before = inner.flags.load();
        inner
            .flags
            .update(|flags| flags.without(Flags::IN_GROUP | Flags::GROUP_PENDING));
        if let Some(group) = inner.group.load(guard) {
            if before.contains(Flags::GROUP_PENDING) {
                group.count_pending(held, false);
            } else {
                group.leave(held, inner, guard);
            }
            inner.group.replace(None, guard);
        }
    }

    /// Joins the group at `bind()`, where the rules join there (UDP).
    pub(crate) fn join_group_if_bound_member(
        &self,
        held: &PortLock<'_>,
        inner: &Arc<PcbInner<S>>,
        guard: &Guard,
    ) {
        if !self.group_joins_at_listen() {
            self.join_group(held, inner, guard);
        }
    }

    /// Whether members join at `listen()` (TCP) rather than at `bind()`
    /// (UDP), under both kernels. A policy that decides membership at
    /// `bind()` ([`Rules::group_decided_at_bind`](crate::policy::Rules))
    /// makes a TCP member wait there, pending, for `listen()`.
    pub(crate) fn group_joins_at_listen(&self) -> bool {
        self.rules.protocol == Protocol::Tcp
    }
}
