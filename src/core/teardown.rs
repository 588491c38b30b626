//! The end of a connection: `connect(AF_UNSPEC)` (UDP's disconnect, and
//! TCP's abortive disconnect of Linux `tcp_disconnect`, whose rules of what
//! stays are the policy's: [`Rules::disconnect`](crate::policy::Rules::disconnect)),
//! TIME_WAIT, close, and giving back a port.

use crossbeam_epoch::Guard;

use super::pcb::PcbInner;
use super::shared::Shared;
use crate::addr::{Endpoint, Family, Tuple};
use crate::error::Error;
use crate::flags::{Flags, State};
use crate::policy::{canonical, Disconnect, PcbView, Protocol};
use crate::raw::{PortLock, Retired};
use crate::sync::Arc;

impl<S: Send + Sync + 'static> Shared<S> {
    /// `connect(AF_UNSPEC)` on UDP.
    pub(crate) fn disconnect(&self, inner: &Arc<PcbInner<S>>) -> Result<(), Error> {
        let _owner = inner.lock_owner();
        let guard = crossbeam_epoch::pin();
        self.disconnect_locked(inner, &inner.view(&guard), &guard)
    }

    /// [`disconnect`](Self::disconnect) of `me`, under the owner lock.
    pub(super) fn disconnect_locked(
        &self,
        inner: &Arc<PcbInner<S>>,
        me: &PcbView,
        guard: &Guard,
    ) -> Result<(), Error> {
        let me = *me;
        let keep = self.rules.disconnect(&me)?;
        if self.rules.disconnect_clears_device() && me.device != 0 {
            // Before the PCB moves: the lookups that see it on its new
            // address see it on no device.
            self.write_option(inner, || inner.set_device(None))?;
        }
        if self.rules.protocol == Protocol::Tcp {
            self.abort(inner, &me, keep, guard);
            return Ok(());
        }
        // Linux `__udp_disconnect` also runs on a bound, unconnected socket:
        // an address bind() did not name goes back to the wildcard, and a
        // port bind() did not name is released.
        let connected = me.state() == State::Connected;
        if !connected && me.state() != State::Bound {
            return Ok(());
        }
        if !connected && !keep.keep_port {
            let held = self.ports.lock(me.local.port);
            self.release_port(&held, inner, &me, keep.keep_addr, guard);
            return Ok(());
        }
        let local = if keep.keep_addr {
            me.local
        } else {
            self.disconnected_local(inner.family(), &me.local)
        };
        if !connected && local == me.local {
            if me.flags.in_group() && self.rules.wildcard_disconnect_leaves_group(&me) {
                let held = self.ports.lock(me.local.port);
                self.leave_group(&held, inner, guard);
            }
            return Ok(());
        }
        let held = self.ports.lock(me.local.port);
        if keep.keep_port {
            let mut flags = me
                .flags
                .without(Flags::CONNECT_BIND)
                .with_state(State::Bound);
            if !keep.keep_addr {
                flags = flags.without(Flags::SOURCE_BOUND);
            }
            if !connected {
                // The group is keyed by address: join again after the move.
                self.leave_group(&held, inner, guard);
            }
            if local != me.local {
                self.restamp_seq(&held, inner);
            }
            // Whether it holds the exact entry, read under the port's lock
            // (another PCB's connect may have shadowed it since `me`).
            let was = inner.flags.load();
            let fresh = connected && self.rules.disconnect_reinserts();
            if connected {
                let before = Tuple {
                    local: me.local,
                    remote: me.remote,
                };
                self.disconnect_move(&held, inner, &before, was, local, flags, fresh, guard);
            } else {
                // A bound PCB keeps its node in the wildcard list.
                self.readdress(&held, inner, local, flags, fresh);
            }
            if self.rules.rejoins_group_on_disconnect() {
                self.join_group_if_bound_member(&held, inner, guard);
            }
        } else {
            self.release_port(&held, inner, &me, keep.keep_addr, guard);
        }
        Ok(())
    }

    /// Takes `inner` out of the table, back to `Closed`; an address bound
    /// explicitly stays for a later `connect()` or `listen()` when
    /// `keep_addr` (Linux keeps it while SOCK_BINDADDR_LOCK is set). Caller
    /// holds the port's lock.
    pub(crate) fn release_port(
        &self,
        held: &PortLock<'_>,
        inner: &Arc<PcbInner<S>>,
        me: &PcbView,
        keep_addr: bool,
        guard: &Guard,
    ) {
        // The PCB stays; only its places go.
        self.unlink(held, inner, guard).defer(guard);
        let ip = if keep_addr {
            me.local.ip
        } else {
            Endpoint::unspecified(inner.family()).ip
        };
        inner.set_tuple(Tuple::bound(Endpoint { ip, port: 0 }));
        inner.flags.update(|flags| {
            let mut flags = flags
                .without(Flags::CONNECT_BIND | Flags::PORT_LOCKED)
                .with_state(State::Closed);
            if !keep_addr {
                flags = flags.without(Flags::ADDR_LOCKED | Flags::SOURCE_BOUND);
            }
            flags
        });
    }

    /// TIME_WAIT: detach the socket, keep the tuple.
    pub(crate) fn time_wait(&self, inner: &Arc<PcbInner<S>>) -> Result<(), Error> {
        let _owner = inner.lock_owner();
        if self.rules.protocol != Protocol::Tcp || inner.state() != State::Connected {
            return Err(Error::InvalidInput);
        }
        let guard = crossbeam_epoch::pin();
        let local = inner.tuple(&guard).local;
        let held = self.ports.lock(local.port);
        // The socket goes first: whoever sees the new state sees no socket.
        inner.detach_socket(Retired::empty(), &guard);
        inner.flags.set_state(State::TimeWait);
        // The full socket leaves its port; the TIME_WAIT one stays.
        self.left_bucket(&held, &local, None, &guard);
        self.left_port(&held, local.port, None, &guard);
        Ok(())
    }

    /// Marks a TIME_WAIT PCB's 4-tuple as one an unbound `connect()` may
    /// take over (see [`Flags::TW_REUSABLE`]). Under its port's lock: the
    /// busy-port hint of its destination forgets the port, since the twin
    /// may no longer make it busy.
    pub(crate) fn allow_tw_reuse(&self, inner: &Arc<PcbInner<S>>) -> Result<(), Error> {
        let _owner = inner.lock_owner();
        if inner.state() != State::TimeWait {
            return Err(Error::InvalidInput);
        }
        let guard = crossbeam_epoch::pin();
        let tuple = inner.tuple(&guard);
        let _held = self.ports.lock(tuple.local.port);
        inner.flags.update(|flags| flags | Flags::TW_REUSABLE);
        self.busy.unmark(
            || self.destination_hash(tuple.local.ip, &tuple.remote),
            tuple.local.ip,
            tuple.local.port,
            &tuple.remote,
        );
        Ok(())
    }

    /// Close (also the `Drop` of `Pcb`).
    pub(crate) fn close(&self, inner: &Arc<PcbInner<S>>) {
        let _owner = inner.lock_owner();
        self.attached.add(-1);
        let guard = crossbeam_epoch::pin();
        let mut retired = Retired::empty();
        if inner.state().is_in_table() {
            let held = self.ports.lock(inner.tuple(&guard).local.port);
            // Re-read under the lock: an accept may have replaced this PCB
            // (TIME_WAIT) in the meantime.
            if inner.state().is_in_table() {
                retired = self.unlink(&held, inner, &guard);
            }
        }
        // One deferred function releases the indexes' counts and drops the
        // socket.
        inner.detach_socket(retired, &guard);
        inner.flags.set_state(State::Dropped);
    }

    /// Aborts a connection or stops a listener; a PCB in any other state is
    /// left as it is. Caller holds the PCB's owner lock; `me` is its view.
    pub(crate) fn abort(
        &self,
        inner: &Arc<PcbInner<S>>,
        me: &PcbView,
        keep: Disconnect,
        guard: &Guard,
    ) {
        let connected = match me.state() {
            State::Connected => true,
            State::Listen => false,
            _ => return,
        };
        let held = self.ports.lock(me.local.port);
        if !keep.keep_port {
            self.release_port(&held, inner, me, keep.keep_addr, guard);
            return;
        }
        let local = if keep.keep_addr {
            me.local
        } else {
            self.disconnected_local(inner.family(), &me.local)
        };
        let flags = me
            .flags
            .without(Flags::CONNECT_BIND)
            .with_state(State::Bound);
        self.leave_group(&held, inner, guard);
        if connected || local != me.local {
            // A listener keeps its node in the wildcard list, only its tuple
            // changes; a connection links its wildcard place before its
            // exact one goes (see `Shared::lookup_slow`).
            if connected {
                let before = Tuple {
                    local: me.local,
                    remote: me.remote,
                };
                let was = inner.flags.load();
                self.disconnect_move(&held, inner, &before, was, local, flags, false, guard);
            } else {
                self.readdress(&held, inner, local, flags, false);
            }
            if local != me.local {
                self.join_bucket(&held, inner, &local, false, guard);
                self.left_bucket(&held, &me.local, None, guard);
            }
        } else {
            inner.flags.update(|_| flags);
        }
    }

    /// The wildcard, with its port, that a PCB of `family` on `local` falls
    /// back to when `disconnect()` does not keep its address.
    pub(crate) fn disconnected_local(&self, family: Family, local: &Endpoint) -> Endpoint {
        Endpoint::new(self.rules.disconnected_wildcard(family, canonical(*local)))
    }
}
