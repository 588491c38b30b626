//! The passive open: a connected child of a listener, which replaces a
//! TIME_WAIT PCB on the same 4-tuple.

use std::net::SocketAddr;

use super::pcb::PcbInner;
use super::shared::Shared;
use crate::addr::Tuple;
use crate::cred::Device;
use crate::error::Error;
use crate::flags::State;
use crate::policy::check_accept;
use crate::raw::{arc_in_place, Retired};
use crate::sync::Arc;

impl<S: Send + Sync + 'static> Shared<S> {
    /// The passive open on `parent`, a listener: the child PCB, for the
    /// caller to hand out. A failure hands `socket` back.
    pub(crate) fn accept(
        &self,
        parent: &Arc<PcbInner<S>>,
        local: SocketAddr,
        remote: SocketAddr,
        socket: S,
    ) -> Result<Arc<PcbInner<S>>, (Error, S)> {
        let _owner = parent.lock_owner();
        let guard = crossbeam_epoch::pin();
        let view = parent.view(&guard);
        let (local, remote) = match check_accept(self.rules.protocol, &view, local, remote) {
            Ok(checked) => checked,
            Err(error) => return Err((error, socket)),
        };
        let tuple = Tuple { local, remote };
        let held = self.ports.lock(local.port);
        let flow = self.flow(&tuple);
        let holder = self.exact_holder_on(&flow, view.device, &guard);
        if holder
            .as_ref()
            .is_some_and(|pcb| pcb.state() != State::TimeWait)
        {
            return Err((Error::AddrInUse, socket));
        }
        let inherited = view.flags & self.rules.accept_inherits();
        let child =
            arc_in_place(|| PcbInner::with_tuple(view.family, view.cred, inherited, socket, tuple));
        // FreeBSD: an accepted socket takes its listener's FIB (tcp(4), "FIB
        // support"). Not yet linked: nothing else sees the child.
        child.set_fib(parent.fib_index());
        // The child is on its listener's device: Linux `sk_clone_lock`
        // copies `sk_bound_dev_if` (IPv4), and `tcp_v6_syn_recv_sock` sets
        // it from the request's `ir_iif`, the listener's device
        // (`inet_request_bound_dev_if`). Set before the child is visible.
        child.set_device((view.device != 0).then_some(Device(view.device)));
        // The listener's own port range goes with it, as Linux's
        // `sk_clone_lock` copies `inet_sock` (it matters only to a child
        // that binds again after a disconnect, which FreeBSD's cannot).
        child.set_port_range(parent.port_range(&guard), &guard);
        self.link_connected(&held, &child, &flow, inherited, true, &guard);
        if let Some(old) = holder {
            // The kernel kills the TIME_WAIT twin when the SYN arrives, before
            // the child exists.
            let retired = self.detach(&held, &old, &guard);
            self.left_bucket(&held, &local, Some(&child), &guard);
            self.left_port(&held, local.port, Some(&child), &guard);
            old.detach_socket(retired.unwrap_or_else(Retired::empty), &guard);
            old.flags.set_state(State::Dropped);
        }
        self.join_bucket(&held, &child, &tuple.local, false, &guard);
        self.attached.add(1);
        Ok(child)
    }
}
