//! `bind(2)` and `listen(2)`, and the `setsockopt` of the cached option bits.

use std::net::SocketAddr;
use std::ops::RangeInclusive;

use crossbeam_epoch::Guard;

use super::pcb::PcbInner;
use super::shared::Shared;
use crate::addr::{Endpoint, Family, Tuple};
use crate::cred::Device;
use crate::error::Error;
use crate::flags::{Flags, State};
use crate::hooks::PortCandidate;
use crate::policy::{canonical, DeviceBinding, PcbView, PortRange, Protocol};
use crate::raw::PortLock;
use crate::sync::Arc;

impl<S: Send + Sync + 'static> Shared<S> {
    /// `setsockopt` of one of the cached bits.
    pub(crate) fn set_option(
        &self,
        inner: &Arc<PcbInner<S>>,
        bit: Flags,
        on: bool,
    ) -> Result<(), Error> {
        let _owner = inner.lock_owner();
        if !self.rules.has_option(bit) {
            return Err(Error::OptionNotAvailable);
        }
        let state = inner.state();
        if bit == Flags::V6ONLY {
            if inner.family() != Family::Inet6 {
                return Err(Error::OptionNotAvailable);
            }
            if state != State::Closed {
                return Err(Error::InvalidInput);
            }
        }
        // Neither kernel takes a PCB out of its group when the option is
        // cleared: FreeBSD only in `in_pcbremhash_locked`, and Linux's
        // `sk_setsockopt` only sets `sk_reuseport`.
        self.write_option(inner, || {
            inner.flags.update(|flags| flags.set(bit, on));
        })
    }

    /// `SO_BINDTODEVICE` (Linux `sock_bindtoindex`) or `SO_SETFIB`
    /// (FreeBSD): the PCB's device or FIB, as the policy decides, in any
    /// state but TIME_WAIT and closed. Neither kernel moves a bound PCB:
    /// it keeps its port and its group, and the next bind, lookup and
    /// conflict check see the new value.
    pub(crate) fn bind_device(
        &self,
        inner: &Arc<PcbInner<S>>,
        device: Option<Device>,
    ) -> Result<(), Error> {
        let _owner = inner.lock_owner();
        let guard = crossbeam_epoch::pin();
        let binding = self.rules.bind_device(&inner.view(&guard), device)?;
        drop(guard);
        match binding {
            DeviceBinding::Interface(device) => {
                if self.rules.bind_device_leaves_group() && inner.flags.load().in_group() {
                    // A member leaves its reuseport group, whatever the device.
                    let state = inner.state();
                    if matches!(state, State::TimeWait | State::Dropped) {
                        return Err(Error::InvalidInput);
                    }
                    let guard = crossbeam_epoch::pin();
                    let held = self.ports.lock(inner.tuple(&guard).local.port);
                    inner.set_device(device);
                    self.leave_group(&held, inner, &guard);
                    return Ok(());
                }
                self.write_option(inner, || inner.set_device(device))
            }
            DeviceBinding::Fib(fib) => self.write_option(inner, || inner.set_fib(fib)),
        }
    }

    /// `IP_LOCAL_PORT_RANGE` (Linux) or `IP_PORTRANGE` as a range
    /// (FreeBSD): the PCB's own ephemeral range, `None` for the table's.
    /// Only the PCB's own scans read it, so no port lock is taken.
    pub(crate) fn set_local_port_range(
        &self,
        inner: &PcbInner<S>,
        range: Option<RangeInclusive<u16>>,
    ) -> Result<(), Error> {
        let _owner = inner.lock_owner();
        if matches!(inner.state(), State::TimeWait | State::Dropped) {
            return Err(Error::InvalidInput);
        }
        // Both ends 0 unset the option, as `(0, 0)` does in Linux.
        let own = range
            .map(|range| self.rules.check_port_range(range))
            .transpose()?
            .filter(|&own| own != (0, 0));
        inner.set_port_range(own, &crossbeam_epoch::pin());
        Ok(())
    }

    /// The ports the ephemeral scans of `me` take. Caller holds the owner
    /// lock.
    pub(super) fn scan_range(
        &self,
        inner: &PcbInner<S>,
        me: &PcbView,
        guard: &Guard,
    ) -> Result<PortRange, Error> {
        self.rules
            .port_range(me, self.ephemeral.table_range(), inner.port_range(guard))
    }

    /// Writes a socket option the other PCBs' checks read, with `write`:
    /// under the port's lock while the PCB holds a port (the conflict
    /// checks of the port's writers read it there). Caller holds the owner
    /// lock. `InvalidInput` after `time_wait()` or a drop.
    pub(super) fn write_option(
        &self,
        inner: &PcbInner<S>,
        write: impl FnOnce(),
    ) -> Result<(), Error> {
        let state = inner.state();
        if matches!(state, State::TimeWait | State::Dropped) {
            return Err(Error::InvalidInput);
        }
        if !state.is_in_table() {
            write();
            return Ok(());
        }
        let guard = crossbeam_epoch::pin();
        let _held = self.ports.lock(inner.tuple(&guard).local.port);
        write();
        Ok(())
    }

    /// `bind(2)`.
    pub(crate) fn bind(
        &self,
        inner: &Arc<PcbInner<S>>,
        local: SocketAddr,
    ) -> Result<SocketAddr, Error> {
        let _owner = inner.lock_owner();
        let guard = crossbeam_epoch::pin();
        let me = inner.view(&guard);
        let local = Endpoint::new(self.rules.check_bind(&me, local)?);
        // The address bound now replaces any source address an earlier
        // bind() left.
        let me = PcbView {
            flags: me.flags.without(Flags::SOURCE_BOUND),
            ..me
        };
        let mut pinned = Flags::EMPTY;
        if !local.is_wildcard() {
            pinned = pinned | Flags::ADDR_LOCKED;
        }
        if local.port != 0 {
            pinned = pinned | Flags::PORT_LOCKED;
        }
        pinned = pinned | self.rules.bind_sets(&me, canonical(local));
        if local.port == 0 && me.flags.contains(Flags::BIND_NO_PORT) {
            // The address only: the PCB stays out of the table, and a later
            // bind() may still replace it (Linux binds again while
            // `inet_num` is 0).
            inner.set_tuple(Tuple {
                local,
                ..Tuple::unbound(inner.family())
            });
            inner
                .flags
                .update(|flags| flags.without(Flags::SOURCE_BOUND) | pinned);
            return Ok(local.to_socket(inner.family()));
        }
        let (bound, held) = match self.bind_locked(inner, &me, local, pinned, State::Bound, &guard)
        {
            Ok(bound) => bound,
            Err(error) => {
                let unbound = Tuple::unbound(inner.family());
                if self.rules.failed_bind_forgets_address() && me.local != unbound.local {
                    // The PCB is not in the table: nothing else sees it.
                    inner.set_tuple(unbound);
                    inner
                        .flags
                        .update(|flags| flags.without(Flags::SOURCE_BOUND));
                }
                return Err(error);
            }
        };
        if !self.group_joins_at_listen() || self.rules.group_decided_at_bind() {
            self.join_group(&held, inner, &guard);
        } else if self.rules.group_key(&inner.view(&guard)).is_some() {
            inner.flags.update(|flags| flags | Flags::GROUP_PENDING);
        }
        Ok(bound.to_socket(inner.family()))
    }

    /// Binds `inner` to `local` (port 0: an ephemeral port) in `state`, and
    /// returns the bound endpoint with its port's lock still held.
    pub(super) fn bind_locked(
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
            let memo = self.memos.get(&held, local.port);
            self.rules.bind_conflict(&new, &owners, memo)?;
            self.link_unconnected(&held, inner, local, new.flags, guard);
            self.bind_bucket(&held, &local, guard);
            self.memos
                .set(&held, local.port, self.rules.bound(&new, memo));
            return Ok((local, held));
        }
        let listening = state == State::Listen;
        let scan = self.rules.bind_scan(me);
        let range = self.scan_range(inner, me, guard)?;
        for (_, port) in self.ephemeral.scan(scan, range, 0) {
            new.local = local.with_port(port);
            let candidate = || PortCandidate::new(new.local, None, self.rules.protocol);
            if self.hooks.refuses(candidate) {
                continue;
            }
            let held = self.ports.lock(port);
            let owners = self.owners(port, inner, guard);
            if self.rules.bind_port_busy(&new, &owners, listening) {
                continue;
            }
            self.ephemeral.found(scan, range, 0, port, 0);
            self.link_unconnected(&held, inner, new.local, new.flags, guard);
            self.bind_bucket(&held, &new.local, guard);
            let memo = self.memos.get(&held, port);
            self.memos.set(&held, port, self.rules.bound(&new, memo));
            return Ok((new.local, held));
        }
        Err(self.rules.bind_exhausted())
    }

    /// `listen(2)`.
    pub(crate) fn listen(&self, inner: &Arc<PcbInner<S>>) -> Result<(), Error> {
        let _owner = inner.lock_owner();
        if self.rules.protocol != Protocol::Tcp {
            return Err(Error::NotSupported);
        }
        let guard = crossbeam_epoch::pin();
        let me = inner.view(&guard);
        let held = match me.state() {
            State::Listen => return Ok(()),
            State::Connected | State::TimeWait | State::Dropped => return Err(Error::InvalidInput),
            State::Closed => {
                // The address a failed connect() left (Linux), or the wildcard.
                let any = me.local.with_port(0);
                self.bind_locked(inner, &me, any, Flags::EMPTY, State::Listen, &guard)?
                    .1
            }
            State::Bound => {
                let held = self.ports.lock(me.local.port);
                let owners = self.owners(me.local.port, inner, &guard);
                let memo = self.memos.get(&held, me.local.port);
                self.rules.listen_check(&me, &owners, memo)?;
                let listening = PcbView {
                    flags: me.flags.with_state(State::Listen),
                    ..me
                };
                self.memos
                    .set(&held, me.local.port, self.rules.bound(&listening, memo));
                held
            }
        };
        if self.rules.listen_refused_after_connect(me.flags) {
            // `get_port` ran and a port it took stays, but the socket does
            // not listen.
            inner.flags.set_state(State::Bound);
            return Err(Error::InvalidInput);
        }
        let remembered = self.rules.remembers(State::Listen);
        let flags = inner
            .flags
            .update(|flags| flags.with_state(State::Listen) | remembered);
        if self.rules.inserts_at_listen() {
            self.stamp_seq(&held, inner, flags);
        }
        if self.rules.group_decided_at_bind() && me.state() == State::Bound {
            self.activate_member(&held, inner, &guard);
        } else {
            self.join_group(&held, inner, &guard);
        }
        Ok(())
    }
}
