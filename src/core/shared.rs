//! The state a table and its PCB handles share ([`Shared`]); the lookup's
//! stages past the exact index are in `lookup.rs`.

use std::net::IpAddr;

use crossbeam_epoch::{Collector, Guard};

use super::exact::ExactPcbs;
use super::memos::PortMemos;
use super::pcb::PcbInner;
use crate::addr::{FlowKey, Tuple};
use crate::busy::BusyHints;
use crate::counter::Counter;
use crate::hooks::Hooks;
use crate::policy::{PcbView, RuleSet};
use crate::ports::Ephemeral;
use crate::raw::{default_guard_collector, List, PortLock, PortTable, Retired};
use crate::sync::{Arc, AtomicUsize, Ordering};

/// The stack's source-address selector; see [`Builder::source_address`](crate::Builder::source_address).
pub(crate) type SourceAddress = dyn Fn(IpAddr) -> Option<IpAddr> + Send + Sync;

/// Everything a table and its PCB handles share.
pub(crate) struct Shared<S: Send + Sync + 'static> {
    pub(super) rules: RuleSet,
    /// The keyed hash of flows (read by the lookup's hot path).
    pub(crate) hasher: ahash::RandomState,
    /// The collector of the guards lookups take (crossbeam-epoch's default).
    pub(crate) collector: &'static Collector,
    pub(crate) exact: ExactPcbs<S>,
    pub(super) ports: PortTable<PcbInner<S>>,
    pub(super) ephemeral: Ephemeral,
    /// What the policy remembers about each port (see `buckets.rs`).
    pub(super) memos: PortMemos,
    /// Ports known to hold a connection to a crowded destination.
    pub(super) busy: BusyHints,
    pub(super) source_address: Box<SourceAddress>,
    /// The stack's port filter and group selector.
    pub(crate) hooks: Hooks,
    /// Live `Pcb` handles, counted on each thread's own line.
    pub(super) attached: Counter,
    /// How many PCBs the exact index holds for "this address, any port"
    /// (Linux UDP connected to port 0); while there are none, a lookup
    /// does not look for them.
    pub(super) any_port_peers: AtomicUsize,
    /// Deliberately broken synchronisation of the lookup, for the loom
    /// models' own test.
    #[cfg(pcbhash_broken)]
    pub(super) broken: crate::sync::Broken,
    /// Under loom: called at each named step in the middle of a move.
    #[cfg(pcbhash_loom)]
    pub(crate) move_step: Option<crate::sync::MoveStepHook>,
}

impl<S: Send + Sync + 'static> Shared<S> {
    /// The state of a new, empty table (the loom and broken-variant hooks
    /// off; the builder sets them).
    pub(crate) fn new(
        rules: RuleSet,
        hasher: ahash::RandomState,
        exact: ExactPcbs<S>,
        ephemeral: Ephemeral,
        busy: BusyHints,
        source_address: Box<SourceAddress>,
    ) -> Self {
        let memos = PortMemos::for_rules(&rules);
        Self {
            rules,
            hasher,
            collector: default_guard_collector(),
            exact,
            ports: PortTable::new(),
            ephemeral,
            memos,
            busy,
            source_address,
            hooks: Hooks::default(),
            attached: Counter::new(),
            any_port_peers: AtomicUsize::new(0),
            #[cfg(pcbhash_broken)]
            broken: crate::sync::Broken::default(),
            #[cfg(pcbhash_loom)]
            move_step: None,
        }
    }

    /// Turns on the deliberately broken variant `broken` of the lookup's
    /// synchronisation, in the lookup and in both indexes.
    #[cfg(pcbhash_broken)]
    pub(crate) fn set_broken(&mut self, broken: crate::sync::Broken) {
        self.broken = broken;
        self.exact.set_broken(broken);
        self.ports.set_broken(broken);
    }

    /// The table's policy, resolved at build.
    pub(crate) fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Both lists of every port (read-only: the lists change only through
    /// the core's moves).
    pub(crate) fn ports(&self) -> &PortTable<PcbInner<S>> {
        &self.ports
    }

    /// The ephemeral port range.
    pub(crate) fn ephemeral_range(&self) -> std::ops::RangeInclusive<u16> {
        self.ephemeral.range()
    }

    /// Counts one more live `Pcb` handle.
    pub(crate) fn count_attached(&self) {
        self.attached.add(1);
    }

    /// How many `Pcb` handles are live.
    pub(crate) fn attached(&self) -> usize {
        self.attached.get()
    }

    /// The busy-port hints (for tests).
    #[cfg(test)]
    pub(crate) fn busy(&self) -> &BusyHints {
        &self.busy
    }

    /// A step in the middle of a move between indexes, named for the loom
    /// models, which can park the writer there (nothing in other builds).
    #[inline(always)]
    pub(crate) fn move_step(&self, step: &'static str) {
        #[cfg(pcbhash_loom)]
        if let Some(hook) = &self.move_step {
            hook(step);
        }
        #[cfg(not(pcbhash_loom))]
        let _ = step;
    }

    /// The keyed hash of a 4-tuple: the exact index's hash and the hash that
    /// picks a group member.
    #[inline]
    pub(crate) fn tuple_hash(&self, tuple: &Tuple) -> u64 {
        self.flow(tuple).hash
    }

    /// The exact-index key of `tuple` and its hash: computed once per call
    /// of the lifecycle, and handed to every exact-index operation of it.
    #[inline]
    pub(crate) fn flow(&self, tuple: &Tuple) -> Flow {
        let key = FlowKey::of_tuple(tuple);
        Flow {
            tuple: *tuple,
            key,
            hash: key.hash(&self.hasher),
        }
    }

    /// Inserts `pcb`, whose tuple is `flow`'s, into the exact index, under
    /// its port's lock `held`. Takes one bucket lock.
    pub(crate) fn exact_insert(
        &self,
        held: &PortLock<'_>,
        flow: &Flow,
        pcb: &Arc<PcbInner<S>>,
        guard: &Guard,
    ) {
        debug_assert_eq!(held.port(), flow.tuple.local.port);
        debug_assert!(
            pcb.is_flow(&flow.key, guard),
            "a PCB is filed under its own tuple"
        );
        if self.rules.lookup.matches_any_port(&flow.tuple) {
            self.any_port_peers.fetch_add(1, Ordering::Relaxed);
        }
        self.exact.insert(held, flow.hash, pcb, guard);
    }

    /// Removes `pcb`'s entry for `flow` from the exact index. Takes one
    /// bucket lock. Returns the index's count of `pcb`, to release through
    /// the epoch, or `None` if there was no entry.
    pub(crate) fn exact_remove(
        &self,
        flow: &Flow,
        pcb: &Arc<PcbInner<S>>,
        guard: &Guard,
    ) -> Option<Retired<PcbInner<S>>> {
        let removed = self.exact.remove(flow.hash, pcb, guard);
        if removed.is_some() && self.rules.lookup.matches_any_port(&flow.tuple) {
            self.any_port_peers.fetch_sub(1, Ordering::Relaxed);
        }
        removed
    }

    /// Views of every PCB on `port` but `me`. Call under the port's lock for a
    /// stable answer.
    pub(crate) fn owners(&self, port: u16, me: &PcbInner<S>, guard: &Guard) -> Vec<PcbView> {
        self.ports
            .iter(port, List::Unconnected, guard)
            .chain(self.ports.iter(port, List::Connected, guard))
            .filter(|pcb| !std::ptr::eq(&***pcb, me))
            .map(|pcb| pcb.view(guard))
            .collect()
    }

    /// The PCB holding `flow` in the exact index, whatever its device, as
    /// a strong reference.
    pub(crate) fn exact_holder_arc(&self, flow: &Flow, guard: &Guard) -> Option<Arc<PcbInner<S>>> {
        self.exact.find_arc(flow.hash, &flow.key, guard)
    }

    /// The PCB holding `flow` for a PCB bound to `device` (0: none), as a
    /// strong reference: one bound to no device or to `device`. Linux
    /// `__inet_check_established` (and `inet_ehash_insert` for a passive
    /// open) compare `sk_bound_dev_if` in `inet_match`, so two connections
    /// on one 4-tuple may live on different devices.
    pub(crate) fn exact_holder_on(
        &self,
        flow: &Flow,
        device: u32,
        guard: &Guard,
    ) -> Option<Arc<PcbInner<S>>> {
        self.exact.find_arc_on(flow.hash, &flow.key, device, guard)
    }
}

/// A 4-tuple with its exact-index key and the key's hash.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Flow {
    pub(crate) tuple: Tuple,
    key: FlowKey,
    hash: u64,
}
