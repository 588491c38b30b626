//! The PCB lifecycle: options, bind, listen, connect, accept, disconnect,
//! TIME_WAIT and close.
//!
//! Lock order: the PCB's owner lock, then one port lock, then (leaf locks)
//! the PCB's port-entry cell and exact-index buckets. Every check that can fail
//! runs before the first change, so a failing call changes nothing.
//!
//! Every change to which index holds a PCB happens under its port's lock; so
//! does every state change that another PCB's conflict check reads.

use std::net::SocketAddr;

use crossbeam_epoch::Guard;

use crate::addr::{Endpoint, Family, Tuple};
use crate::error::Error;
use crate::flags::{Flags, State};
use crate::lbgroup::Group;
use crate::pcb::{Pcb, PcbInner};
use crate::policy::{self, PcbView, Policy, Protocol};
use crate::raw::{List, PortLock};
use crate::sync::{lock, Arc, Ordering};
use crate::table::Shared;

impl<S: Send + Sync + 'static> Shared<S> {
    /// `setsockopt` of one of the cached bits.
    pub(crate) fn set_option(
        &self,
        inner: &Arc<PcbInner<S>>,
        bit: Flags,
        on: bool,
    ) -> Result<(), Error> {
        let _owner = lock(&inner.owner);
        if !policy::has_option(self.rules.policy, bit) {
            return Err(Error::OptionNotAvailable);
        }
        let state = inner.state();
        if bit == Flags::V6ONLY {
            if inner.family != Family::Inet6 {
                return Err(Error::OptionNotAvailable);
            }
            if state != State::Closed {
                return Err(Error::InvalidInput);
            }
        }
        if matches!(state, State::TimeWait | State::Dropped) {
            return Err(Error::InvalidInput);
        }
        if !state.is_in_table() {
            inner.flags.update(|flags| flags.set(bit, on));
            return Ok(());
        }
        let guard = crossbeam_epoch::pin();
        let held = self.ports.lock(inner.tuple.load(&guard).local.port);
        let flags = inner.flags.update(|flags| flags.set(bit, on));
        let lb_off = bit == Flags::REUSEPORT_LB && !on;
        let rp_off = bit == Flags::REUSEPORT && !on && self.rules.policy == Policy::Linux;
        if (lb_off || rp_off) && flags.intersects(Flags::IN_GROUP | Flags::GROUP_PENDING) {
            self.leave_group(&held, inner, &guard);
        }
        Ok(())
    }

    /// `bind(2)`.
    pub(crate) fn bind(
        &self,
        inner: &Arc<PcbInner<S>>,
        local: SocketAddr,
    ) -> Result<SocketAddr, Error> {
        let _owner = lock(&inner.owner);
        let guard = crossbeam_epoch::pin();
        let me = inner.view(&guard);
        let local = policy::check_bind(self.rules, &me, local)?;
        let mut pinned = Flags::EMPTY;
        if !local.is_wildcard() {
            pinned = pinned | Flags::ADDR_LOCKED;
        }
        if local.port != 0 {
            pinned = pinned | Flags::PORT_LOCKED;
        }
        let (bound, held) = self.bind_locked(inner, &me, local, pinned, State::Bound, &guard)?;
        if !policy::group_joins_at_listen(self.rules) {
            self.join_group(&held, inner, &guard);
        } else if policy::group_key(self.rules, &inner.view(&guard)).is_some() {
            inner.flags.update(|flags| flags | Flags::GROUP_PENDING);
        }
        Ok(bound.to_socket(inner.family))
    }

    /// Binds `inner` to `local` (port 0: an ephemeral port) in `state`, and
    /// returns the bound endpoint with its port's lock still held.
    fn bind_locked(
        &self,
        inner: &Arc<PcbInner<S>>,
        me: &PcbView,
        local: Endpoint,
        pinned: Flags,
        state: State,
        guard: &Guard,
    ) -> Result<(Endpoint, PortLock<'_>), Error> {
        let mut new = PcbView {
            local,
            flags: (me.flags | pinned).with_state(state),
            ..*me
        };
        if local.port != 0 {
            let held = self.ports.lock(local.port);
            let owners = self.owners(local.port, inner, guard);
            policy::bind_conflict(self.rules, &new, &owners)?;
            self.link_unconnected(&held, inner, local, new.flags, true, guard);
            return Ok((local, held));
        }
        let listening = state == State::Listen;
        let mut candidates: Box<dyn Iterator<Item = (u32, u16)>> = match self.rules.policy {
            Policy::FreeBsd => Box::new(self.ephemeral.freebsd()),
            Policy::Linux => Box::new(self.ephemeral.linux_bind(me.flags.reuse_addr())),
        };
        for (_, port) in &mut candidates {
            new.local = local.with_port(port);
            let held = self.ports.lock(port);
            let owners = self.owners(port, inner, guard);
            if policy::bind_port_busy(self.rules, &new, &owners, listening) {
                continue;
            }
            if self.rules.policy == Policy::FreeBsd {
                self.ephemeral.freebsd_found(port);
            }
            self.link_unconnected(&held, inner, new.local, new.flags, true, guard);
            return Ok((new.local, held));
        }
        Err(policy::bind_exhausted(self.rules))
    }

    /// Publishes `inner` as unconnected on `local`: tuple, flags, then the
    /// wildcard list (whose release store makes the first two visible).
    fn link_unconnected(
        &self,
        held: &PortLock<'_>,
        inner: &Arc<PcbInner<S>>,
        local: Endpoint,
        flags: Flags,
        fresh: bool,
        guard: &Guard,
    ) {
        inner.tuple.replace(Tuple::bound(local), guard);
        if fresh {
            inner.seq.store(
                self.next_seq.fetch_add(1, Ordering::Relaxed),
                Ordering::Relaxed,
            );
        }
        inner.flags.update(|_| flags);
        let entry = self
            .ports
            .insert(held, List::Unconnected, inner.clone(), guard);
        *lock(&inner.port_entry) = Some(entry);
    }

    /// Publishes `inner` as connected on `tuple`: tuple, flags, the exact
    /// index, then the port's connected list.
    fn link_connected(
        &self,
        held: &PortLock<'_>,
        inner: &Arc<PcbInner<S>>,
        tuple: Tuple,
        flags: Flags,
        fresh: bool,
        guard: &Guard,
    ) {
        inner.tuple.replace(tuple, guard);
        if fresh {
            inner.seq.store(
                self.next_seq.fetch_add(1, Ordering::Relaxed),
                Ordering::Relaxed,
            );
        }
        inner.flags.update(|_| flags.with_state(State::Connected));
        self.exact
            .insert(self.tuple_hash(&tuple), tuple, inner.clone(), guard);
        let entry = self
            .ports
            .insert(held, List::Connected, inner.clone(), guard);
        let old = lock(&inner.port_entry).replace(entry);
        if let Some(old) = old {
            // A move from the wildcard list: the new place is linked first.
            self.ports.remove(held, old, guard);
        }
    }

    /// Removes `inner` from every index and its group. Caller holds the
    /// port's lock.
    fn unlink(&self, held: &PortLock<'_>, inner: &Arc<PcbInner<S>>, guard: &Guard) {
        self.leave_group(held, inner, guard);
        let entry = lock(&inner.port_entry).take();
        if let Some(entry) = entry {
            let list = entry.list();
            self.ports.remove(held, entry, guard);
            if list == List::Connected {
                self.unlink_exact(inner, inner.tuple.load(guard), guard);
            }
        }
    }

    /// Removes `inner`'s entry for `tuple` from the exact index.
    fn unlink_exact(&self, inner: &Arc<PcbInner<S>>, tuple: &Tuple, guard: &Guard) {
        let tuple = *tuple;
        let removed = self
            .exact
            .remove(self.tuple_hash(&tuple), guard, |key, pcb| {
                *key == tuple && Arc::ptr_eq(pcb, inner)
            });
        debug_assert!(removed, "a connected PCB is in the exact index");
    }

    /// Joins (or founds) the group `inner`'s options and address call for.
    fn join_group(&self, held: &PortLock<'_>, inner: &Arc<PcbInner<S>>, guard: &Guard) {
        let view = inner.view(guard);
        let Some(key) = policy::group_key(self.rules, &view) else {
            return;
        };
        let capacity = policy::group_capacity(self.rules.policy);
        let existing = self
            .ports
            .iter(held.port(), List::Unconnected, guard)
            .filter(|pcb| !Arc::ptr_eq(pcb, inner) && pcb.flags.load().in_group())
            .filter_map(|pcb| pcb.group.load(guard).cloned())
            .find(|group| group.key == key);
        let group = match existing {
            Some(group) if group.len(guard) >= capacity => {
                // Full: the PCB stays bound outside the group, as FreeBSD does.
                inner
                    .flags
                    .update(|flags| flags.without(Flags::GROUP_PENDING));
                return;
            }
            Some(group) => group,
            None => Arc::new(Group::new(key)),
        };
        group.join(inner.clone(), guard);
        inner.group.replace(Some(group), guard);
        inner
            .flags
            .update(|flags| flags.without(Flags::GROUP_PENDING) | Flags::IN_GROUP);
    }

    /// Leaves the group, if any. Caller holds the port's lock.
    fn leave_group(&self, _held: &PortLock<'_>, inner: &Arc<PcbInner<S>>, guard: &Guard) {
        inner
            .flags
            .update(|flags| flags.without(Flags::IN_GROUP | Flags::GROUP_PENDING));
        if let Some(group) = inner.group.load(guard) {
            group.leave(inner, guard);
            inner.group.replace(None, guard);
        }
    }

    /// `listen(2)`.
    pub(crate) fn listen(&self, inner: &Arc<PcbInner<S>>) -> Result<(), Error> {
        let _owner = lock(&inner.owner);
        if self.rules.protocol != Protocol::Tcp {
            return Err(Error::NotSupported);
        }
        let guard = crossbeam_epoch::pin();
        let me = inner.view(&guard);
        let held = match me.state() {
            State::Listen => return Ok(()),
            State::Connected | State::TimeWait | State::Dropped => return Err(Error::InvalidInput),
            State::Closed => {
                let any = Endpoint::unspecified(inner.family);
                self.bind_locked(inner, &me, any, Flags::EMPTY, State::Listen, &guard)?
                    .1
            }
            State::Bound => {
                let held = self.ports.lock(me.local.port);
                let owners = self.owners(me.local.port, inner, &guard);
                policy::listen_check(self.rules, &me, &owners)?;
                held
            }
        };
        inner.flags.set_state(State::Listen);
        self.join_group(&held, inner, &guard);
        Ok(())
    }

    /// `connect(2)`.
    pub(crate) fn connect(
        &self,
        inner: &Arc<PcbInner<S>>,
        remote: SocketAddr,
    ) -> Result<SocketAddr, Error> {
        let _owner = lock(&inner.owner);
        let guard = crossbeam_epoch::pin();
        let me = inner.view(&guard);
        let peer = policy::check_connect(self.rules, &me, remote)?;
        let source = if me.state() == State::Bound && !me.local.is_wildcard() {
            me.local.ip
        } else {
            (self.source_address)(remote.ip())
                .map(|ip| ip.to_canonical())
                .filter(|ip| ip.is_ipv4() == peer.is_v4())
                .ok_or(Error::NetworkUnreachable)?
        };
        if me.state() == State::Bound {
            let tuple = Tuple {
                local: Endpoint {
                    ip: source,
                    port: me.local.port,
                },
                remote: peer,
            };
            let held = self.ports.lock(me.local.port);
            if self.exact_holder(&tuple, &guard).is_some() {
                return Err(policy::connect_tuple_taken(self.rules));
            }
            self.ports.begin_move(&held);
            self.leave_group(&held, inner, &guard);
            self.link_connected(&held, inner, tuple, inner.flags.load(), false, &guard);
            self.ports.end_move(&held);
            return Ok(tuple.local.to_socket(inner.family));
        }
        let flow = self.tuple_hash(&Tuple {
            local: Endpoint {
                ip: source,
                port: 0,
            },
            remote: peer,
        });
        let mut candidates: Box<dyn Iterator<Item = (u32, u16)>> = match self.rules.policy {
            Policy::FreeBsd => Box::new(self.ephemeral.freebsd()),
            Policy::Linux => Box::new(self.ephemeral.linux_connect(flow)),
        };
        let flags = me.flags | Flags::CONNECT_BIND;
        for (attempt, port) in &mut candidates {
            let tuple = Tuple {
                local: Endpoint { ip: source, port },
                remote: peer,
            };
            let new = PcbView {
                local: tuple.local,
                remote: peer,
                flags: flags.with_state(State::Connected),
                ..me
            };
            let held = self.ports.lock(port);
            let owners = self.owners(port, inner, &guard);
            let holder = self
                .exact_holder(&tuple, &guard)
                .map(|pcb| pcb.view(&guard));
            if policy::connect_port_busy(self.rules, &new, &owners, holder.as_ref()) {
                continue;
            }
            match self.rules.policy {
                Policy::FreeBsd => self.ephemeral.freebsd_found(port),
                Policy::Linux => self.ephemeral.linux_connect_found(flow, attempt),
            }
            self.link_connected(&held, inner, tuple, flags, true, &guard);
            return Ok(tuple.local.to_socket(inner.family));
        }
        Err(Error::AddrNotAvailable)
    }

    /// The passive open on `listener`.
    pub(crate) fn accept(
        self: &Arc<Self>,
        listener: &Pcb<S>,
        local: SocketAddr,
        remote: SocketAddr,
        socket: Arc<S>,
    ) -> Result<Pcb<S>, Error> {
        let parent = &listener.inner;
        let _owner = lock(&parent.owner);
        let guard = crossbeam_epoch::pin();
        let view = parent.view(&guard);
        let (local, remote) = policy::check_accept(self.rules, &view, local, remote)?;
        let tuple = Tuple { local, remote };
        let held = self.ports.lock(local.port);
        let holder = self.exact_holder(&tuple, &guard).cloned();
        if holder
            .as_ref()
            .is_some_and(|pcb| pcb.state() != State::TimeWait)
        {
            return Err(Error::AddrInUse);
        }
        let inherited = view.flags
            & (Flags::REUSE_ANY | Flags::V6ONLY | Flags::ADDR_LOCKED | Flags::PORT_LOCKED);
        let child = Arc::new(PcbInner::new(view.family, view.cred, inherited, socket));
        self.link_connected(&held, &child, tuple, inherited, true, &guard);
        if let Some(old) = holder {
            self.unlink(&held, &old, &guard);
            old.socket.clear(&guard);
            old.flags.set_state(State::Dropped);
        }
        self.attached.fetch_add(1, Ordering::Relaxed);
        Ok(Pcb {
            table: self.clone(),
            inner: child,
        })
    }

    /// `connect(AF_UNSPEC)` on UDP.
    pub(crate) fn disconnect(&self, inner: &Arc<PcbInner<S>>) -> Result<(), Error> {
        let _owner = lock(&inner.owner);
        let guard = crossbeam_epoch::pin();
        let me = inner.view(&guard);
        let keep = policy::disconnect(self.rules, &me)?;
        // Linux `__udp_disconnect` also runs on a bound, unconnected socket:
        // an address bind() did not name goes back to the wildcard, and a
        // port bind() did not name is released.
        let connected = me.state() == State::Connected;
        if !connected && me.state() != State::Bound {
            return Ok(());
        }
        let local = if keep.keep_addr {
            me.local
        } else {
            policy::disconnected_wildcard(self.rules, inner.family, &me.local)
        };
        if !connected && keep.keep_port && local == me.local {
            return Ok(());
        }
        let held = self.ports.lock(me.local.port);
        self.ports.begin_move(&held);
        if keep.keep_port {
            let flags = me
                .flags
                .without(Flags::CONNECT_BIND)
                .with_state(State::Bound);
            if !connected {
                // The group is keyed by address: join again after the move.
                self.leave_group(&held, inner, &guard);
            }
            // The wildcard place is linked before the exact one is unlinked.
            let old = lock(&inner.port_entry).take();
            self.link_unconnected(&held, inner, local, flags, false, &guard);
            if let Some(old) = old {
                self.ports.remove(&held, old, &guard);
            }
            if connected {
                let before = Tuple {
                    local: me.local,
                    remote: me.remote,
                };
                self.unlink_exact(inner, &before, &guard);
            }
            self.join_group_if_bound_member(&held, inner, &guard);
        } else {
            self.unlink(&held, inner, &guard);
            inner.tuple.replace(Tuple::unbound(inner.family), &guard);
            inner.flags.update(|flags| {
                flags
                    .without(Flags::CONNECT_BIND | Flags::ADDR_LOCKED | Flags::PORT_LOCKED)
                    .with_state(State::Closed)
            });
        }
        self.ports.end_move(&held);
        Ok(())
    }

    fn join_group_if_bound_member(
        &self,
        held: &PortLock<'_>,
        inner: &Arc<PcbInner<S>>,
        guard: &Guard,
    ) {
        if !policy::group_joins_at_listen(self.rules) {
            self.join_group(held, inner, guard);
        }
    }

    /// TIME_WAIT: detach the socket, keep the tuple.
    pub(crate) fn time_wait(&self, inner: &Arc<PcbInner<S>>) -> Result<(), Error> {
        let _owner = lock(&inner.owner);
        if self.rules.protocol != Protocol::Tcp || inner.state() != State::Connected {
            return Err(Error::InvalidInput);
        }
        let guard = crossbeam_epoch::pin();
        let _held = self.ports.lock(inner.tuple.load(&guard).local.port);
        // The socket goes first: whoever sees the new state sees no socket.
        inner.socket.clear(&guard);
        inner.flags.set_state(State::TimeWait);
        Ok(())
    }

    /// Close (also the `Drop` of `Pcb`).
    pub(crate) fn close(&self, inner: &Arc<PcbInner<S>>) {
        let _owner = lock(&inner.owner);
        self.attached.fetch_sub(1, Ordering::Relaxed);
        let guard = crossbeam_epoch::pin();
        if inner.state().is_in_table() {
            let held = self.ports.lock(inner.tuple.load(&guard).local.port);
            // Re-read under the lock: an accept may have replaced this PCB
            // (TIME_WAIT) in the meantime.
            if inner.state().is_in_table() {
                self.unlink(&held, inner, &guard);
            }
        }
        inner.socket.clear(&guard);
        inner.flags.set_state(State::Dropped);
    }
}
