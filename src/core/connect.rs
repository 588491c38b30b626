//! `connect(2)`: the active open, the implicit bind, and what a failed
//! connect leaves (as the policy says).

use std::net::{IpAddr, SocketAddr};

use crossbeam_epoch::Guard;

use super::pcb::PcbInner;
use super::shared::{Flow, Shared};
use crate::addr::{Endpoint, Tuple};
use crate::error::Error;
use crate::flags::{Flags, State};
use crate::policy::{canonical, AfterFailedConnect, PcbView, TupleTaken};
use crate::raw::PortLock;
use crate::sync::Arc;

impl<S: Send + Sync + 'static> Shared<S> {
    /// `connect(2)`.
    pub(crate) fn connect(
        &self,
        inner: &Arc<PcbInner<S>>,
        remote: SocketAddr,
    ) -> Result<SocketAddr, Error> {
        let _owner = inner.lock_owner();
        let guard = crossbeam_epoch::pin();
        let mut me = inner.view(&guard);
        if self.rules.binds_before_connect(&me) {
            // Linux `inet_dgram_connect`: the port comes first, even if the
            // checks below then fail.
            let local = me.local.with_port(0);
            match self.bind_locked(inner, &me, local, Flags::EMPTY, State::Bound, &guard) {
                Ok((_, held)) => self.join_group_if_bound_member(&held, inner, &guard),
                Err(_) => return Err(self.rules.connect_autobind_failed()),
            }
            me = inner.view(&guard);
        }
        if self.rules.disconnects_before_connect(&me) {
            // FreeBSD `soconnectat`: disconnected first, whatever the peer.
            self.disconnect_locked(inner, &me, &guard)?;
            me = inner.view(&guard);
        }
        let peer = Endpoint::new(self.rules.check_connect(&me, remote)?);
        if me.state() == State::Connected {
            // Connecting again (Linux UDP): same local address and port.
            return Ok(self.reconnect(inner, &me, peer, &guard));
        }
        let bound = if me.local.is_wildcard() {
            None
        } else {
            self.rules.bound_source(&me, canonical(peer))
        };
        let source = match bound {
            Some(source) => source,
            None => (self.source_address)(peer.to_socket(inner.family()).ip())
                .map(|ip| ip.to_canonical())
                .filter(|ip| ip.is_ipv4() == peer.is_v4())
                .ok_or(Error::NetworkUnreachable)?,
        };
        if let Some(error) = self.rules.connect_refused(&me) {
            self.refuse_connect(inner, &me, source, &guard);
            return Err(error);
        }
        if me.state() == State::Bound {
            let tuple = Tuple {
                local: Endpoint {
                    ip: source,
                    port: me.local.port,
                },
                remote: peer,
            };
            let held = self.ports.lock(me.local.port);
            let flow = self.flow(&tuple);
            let holder = self.exact_holder_on(&flow, me.device, &guard);
            let replace = match &holder {
                Some(pcb) => match self.rules.connect_tuple_taken(&pcb.view(&guard)) {
                    Ok(replace) => replace,
                    Err(error) => {
                        self.connect_failed(&held, inner, &me, source, &guard);
                        return Err(error);
                    }
                },
                None => TupleTaken::Share,
            };
            if let Some(group) = inner.group.load(&guard) {
                group.set_has_conns();
            }
            self.leave_group(&held, inner, &guard);
            let flags = inner.flags.load();
            self.link_connected(&held, inner, &flow, flags, false, &guard);
            if tuple.local != me.local {
                self.restamp_seq(&held, inner);
                self.join_bucket(&held, inner, &tuple.local, false, &guard);
                self.left_bucket(&held, &me.local, None, &guard);
            }
            if let (TupleTaken::Replace, Some(old)) = (replace, holder) {
                // A TIME_WAIT twin gives way to the new connection.
                let retired = self.unlink(&held, &old, &guard);
                old.detach_socket(retired, &guard);
                old.flags.set_state(State::Dropped);
            }
            return Ok(tuple.local.to_socket(inner.family()));
        }
        self.connect_ephemeral(inner, &me, source, peer, &guard)
    }

    /// The unbound `connect()` of `inner` (view `me`) from `source` to
    /// `peer`: the scan for an ephemeral port whose 4-tuple is free, in the
    /// policy's order. Caller holds the owner lock.
    fn connect_ephemeral(
        &self,
        inner: &Arc<PcbInner<S>>,
        me: &PcbView,
        source: IpAddr,
        peer: Endpoint,
        guard: &Guard,
    ) -> Result<SocketAddr, Error> {
        let flow = self.destination_hash(source, &peer);
        let scan = self.rules.connect_scan();
        let range = self.scan_range(inner, me, guard)?;
        let mut candidates = self.ephemeral.scan(scan, range, flow);
        let flags = me.flags | Flags::CONNECT_BIND;
        let tuple_at = |port| Tuple {
            local: Endpoint { ip: source, port },
            remote: peer,
        };
        // Ports whose 4-tuple the destination already holds (see `busy`):
        // the scan passes over them without the full check, which would
        // reject them anyway.
        let hinted = self.rules.connect_holder_busy();
        let mut hint = if hinted {
            self.busy.get(flow, source, &peer)
        } else {
            None
        };
        if let Some(hint) = hint.as_deref().filter(|_| self.hooks.port_filter.is_some()) {
            // Ahead of the scan, a few more ports checked as it would check
            // them, so that the ports its order reaches last are not all
            // first met by the last connects (see `DestBitmap::sweep`).
            let (first, last) = (range.first.min(range.last), range.first.max(range.last));
            hint.sweep(first, last, |port| {
                let tuple = tuple_at(port);
                if self.refuses_port(&tuple, Some(hint)) {
                    return false;
                }
                let held = self.ports.lock(port);
                match self.check_connect_port(&held, inner, me, flags, &self.flow(&tuple), guard) {
                    PortCheck::Busy { for_all } => {
                        if for_all {
                            hint.mark(port);
                        }
                        false
                    }
                    PortCheck::Free { .. } => true,
                }
            });
        }
        // Ports this scan met that the destination cannot have, for every
        // connecting PCB: 4-tuples taken, and those plus the candidates the
        // filter refused. Many taken in one scan, or many unavailable over
        // the scans toward a hint slot, and the destination gets a hint. A
        // refusal alone says nothing of one scan's destination (a filter
        // refuses as often toward an idle one), so only the sum counts it.
        let (mut taken, mut unavailable) = (0, 0);
        loop {
            if let Some(hint) = &hint {
                candidates.skip_marked(&**hint);
            }
            let Some((attempt, port)) = candidates.next() else {
                break;
            };
            let tuple = tuple_at(port);
            if self.refuses_port(&tuple, hint.as_deref()) {
                unavailable += 1;
                continue;
            }
            let held = self.ports.lock(port);
            let exact = self.flow(&tuple);
            let twin = match self.check_connect_port(&held, inner, me, flags, &exact, guard) {
                PortCheck::Busy { for_all } => {
                    if hinted && for_all {
                        taken += 1;
                        unavailable += 1;
                        if hint.is_none() && taken >= self.busy.install_after() {
                            hint = Some(self.busy.install(flow, source, &peer));
                        }
                        if let Some(hint) = &hint {
                            hint.mark(port);
                        }
                    }
                    continue;
                }
                PortCheck::Free { twin } => twin,
            };
            if let Some(twin) = twin {
                // The policy let a reusable TIME_WAIT twin give way
                // (`tcp_twsk_unique`); its hint bit went when it was marked
                // reusable.
                let retired = self.unlink(&held, &twin, guard);
                twin.detach_socket(retired, guard);
                twin.flags.set_state(State::Dropped);
            }
            self.ephemeral.found(scan, range, flow, port, attempt);
            self.link_connected(&held, inner, &exact, flags, true, guard);
            self.join_bucket(&held, inner, &tuple.local, true, guard);
            if hinted && hint.is_none() && unavailable > 0 && self.busy.met(flow, unavailable) {
                hint = Some(self.busy.install(flow, source, &peer));
            }
            if let Some(hint) = &hint {
                // `inner` now holds the 4-tuple, under the port's lock.
                hint.mark(port);
            }
            return Ok(tuple.local.to_socket(inner.family()));
        }
        // No port: the same failure path as a refused 4-tuple.
        self.refuse_connect(inner, me, source, guard);
        Err(Error::AddrNotAvailable)
    }

    /// The policy's check of the 4-tuple `exact` for an unbound `connect()`
    /// of `inner` (view `me`, taking `flags`), under the lock `held` of its
    /// local port.
    fn check_connect_port(
        &self,
        held: &PortLock<'_>,
        inner: &PcbInner<S>,
        me: &PcbView,
        flags: Flags,
        exact: &Flow,
        guard: &Guard,
    ) -> PortCheck<S> {
        let port = exact.tuple.local.port;
        let new = PcbView {
            local: exact.tuple.local,
            remote: exact.tuple.remote,
            flags: flags.with_state(State::Connected),
            ..*me
        };
        let owners = self.owners(port, inner, guard);
        let holder_pcb = self.exact_holder_on(exact, me.device, guard);
        let holder = holder_pcb.as_ref().map(|pcb| pcb.view(guard));
        let memo = self.memos.get(held, port);
        if self
            .rules
            .connect_port_busy(&new, &owners, holder.as_ref(), memo)
        {
            // A hint stands for every connecting PCB: only a holder bound
            // to no device holds the 4-tuple for all devices.
            return PortCheck::Busy {
                for_all: holder.is_some_and(|h| h.device == 0),
            };
        }
        PortCheck::Free {
            twin: holder_pcb.filter(|pcb| pcb.state() == State::TimeWait),
        }
    }

    /// The keyed hash of a destination (source address, peer): the RFC 6056
    /// flow hash of Linux `connect()`, and the busy-port hints' key.
    pub(super) fn destination_hash(&self, source: IpAddr, peer: &Endpoint) -> u64 {
        self.tuple_hash(&Tuple {
            local: Endpoint {
                ip: source,
                port: 0,
            },
            remote: *peer,
        })
    }

    /// A connected PCB connects to another peer (Linux UDP): the exact index
    /// gets the new 4-tuple before it loses the old one.
    pub(super) fn reconnect(
        &self,
        inner: &Arc<PcbInner<S>>,
        me: &PcbView,
        peer: Endpoint,
        guard: &Guard,
    ) -> SocketAddr {
        let tuple = Tuple {
            local: me.local,
            remote: peer,
        };
        if let Some(group) = inner.group.load(guard) {
            // `__ip4_datagram_connect` marks the group of every socket that
            // connects (`reuseport_has_conns_set`), one connected already
            // too. A connected PCB is in a group when a later bind() founded
            // the group with it (`udp_reuseport_add_sock` takes any mate on
            // the address, connected or not).
            group.set_has_conns();
        }
        if peer != me.remote {
            let held = self.ports.lock(me.local.port);
            held.moving();
            // Whether `inner` held the old 4-tuple's entry, read under the
            // port's lock; the bits start afresh for the new one.
            let was = inner.flags.load();
            let before = Tuple {
                local: me.local,
                remote: me.remote,
            };
            // The exact index files a PCB under one tuple at a time, the one
            // it shows: the PCB waits out the change in the wildcard list,
            // where a lookup's walk takes it for the tuple it shows (see
            // `Shared::lookup_slow`), as a connect from bound does.
            self.relist_unconnected(&held, inner, guard);
            self.unlink_exact_was(&held, inner, &before, was, guard)
                .defer(guard);
            self.move_step("reconnect: old exact unlinked");
            let flags = inner.flags.load();
            self.link_connected(&held, inner, &self.flow(&tuple), flags, false, guard);
        }
        tuple.local.to_socket(inner.family())
    }

    /// What a `connect()` refused by the 4-tuple check leaves of the bound
    /// PCB `me` (Linux: it may move to the source address, or lose its port).
    /// Caller holds the port's lock.
    pub(super) fn connect_failed(
        &self,
        held: &PortLock<'_>,
        inner: &Arc<PcbInner<S>>,
        me: &PcbView,
        source: IpAddr,
        guard: &Guard,
    ) {
        match self.rules.after_failed_connect(me, source) {
            AfterFailedConnect::Unchanged => {}
            AfterFailedConnect::Rebound(ip) => {
                let local = Endpoint { ip, ..me.local };
                // The PCB keeps its node in the wildcard list.
                self.readdress(held, inner, local, me.flags, false);
                self.join_bucket(held, inner, &local, false, guard);
                self.left_bucket(held, &me.local, None, guard);
            }
            AfterFailedConnect::Released(ip) => {
                let kept = PcbView {
                    local: Endpoint { ip, ..me.local },
                    ..*me
                };
                let keep_addr = me.flags.contains(Flags::ADDR_LOCKED);
                self.release_port(held, inner, &kept, keep_addr, guard);
            }
        }
    }

    /// The traces of a `connect()` the policy refuses after choosing
    /// `source` (see [`connect_failed`](Self::connect_failed)); a PCB out of
    /// the table may keep the source as its address.
    pub(super) fn refuse_connect(
        &self,
        inner: &Arc<PcbInner<S>>,
        me: &PcbView,
        source: IpAddr,
        guard: &Guard,
    ) {
        if me.state() == State::Bound {
            let held = self.ports.lock(me.local.port);
            self.connect_failed(&held, inner, me, source, guard);
            return;
        }
        if let AfterFailedConnect::Released(ip) = self.rules.after_failed_connect(me, source) {
            if ip != me.local.ip {
                // Not in the table: nothing else sees it.
                inner.set_tuple(Tuple::bound(Endpoint { ip, port: 0 }));
            }
        }
    }
}

/// What the 4-tuple check found at a candidate port of a `connect()` scan.
enum PortCheck<S: Send + Sync + 'static> {
    /// The port is busy; `for_all` when a holder bound to no device has
    /// the 4-tuple, which makes it busy for every connecting PCB (what a
    /// busy-port hint may record).
    Busy { for_all: bool },
    /// The port is free; a TIME_WAIT twin that gives way, if any.
    Free { twin: Option<Arc<PcbInner<S>>> },
}
