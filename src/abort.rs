//! `connect(AF_UNSPEC)` on TCP: the abortive disconnect of Linux
//! `tcp_disconnect`. The rules of what stays are the policy's
//! ([`Rules::disconnect`](crate::policy::Rules::disconnect)); this module
//! moves the PCB accordingly.

use crossbeam_epoch::Guard;

use crate::addr::{Endpoint, Family, Tuple};
use crate::flags::{Flags, State};
use crate::pcb::PcbInner;
use crate::policy::{canonical, Disconnect, PcbView};
use crate::sync::Arc;
use crate::table::Shared;

impl<S: Send + Sync + 'static> Shared<S> {
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
            self.disconnected_local(inner.family, &me.local)
        };
        let flags = me
            .flags
            .without(Flags::CONNECT_BIND)
            .with_state(State::Bound);
        self.leave_group(&held, inner, guard);
        if connected || local != me.local {
            // A listener keeps its node in the wildcard list, only its tuple
            // changes; a connection links its wildcard place before its
            // exact one goes (see `PcbTable::lookup_slow`).
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
                self.join_bucket(inner, &local, false, guard);
                self.left_bucket(&me.local, None, guard);
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
