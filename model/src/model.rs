//! The calls of the model: `socket`, `setsockopt`, `bind`, `listen`,
//! `connect`, the passive open, `disconnect`, TIME_WAIT, `close` and the
//! lookups. The steps both kernels share are written here; each call hands
//! the conflict rules, port choice and lookup preferences to `freebsd/` or
//! `linux/`, which work on the state in `state.rs`.

use std::net::SocketAddr;

use pcbhash::{Cred, Device, Error, State};

use crate::addrs::{canonical, Ep, V4_ANY, V6_ANY};
use crate::ops::{Opt, ProtoSel};
use crate::state::{Expect, MResult, Model, Rec};

/// The receivers `deliver` should hand out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Receivers {
    /// The kernel's: every receiver, in the kernel's order.
    pub kernel: Vec<usize>,
    /// FreeBSD: the receivers when the walk goes by when each PCB entered
    /// its port, newest first, rather than by when it was created. The
    /// table documents that order as its approximation of `ipi_listhead`
    /// (the two agree while sockets are bound in the order they were
    /// created); an answer that matches it and not the kernel's is counted
    /// apart, not failed.
    pub by_port_entry: Option<Vec<usize>>,
    /// FreeBSD with `bind_all_fibs` off: the receivers if the walk looked
    /// at no FIB, in either order. The table's walk does not; an answer
    /// that matches one of these and neither of the above is a known
    /// difference (see [`KNOWN_DELIVERY_FIBS`]).
    pub any_fib: Vec<Vec<usize>>,
}

/// The known difference of [`Model::device_twins`].
pub const KNOWN_DEVICE_TWINS: &str =
    "Linux: connected twins on one 4-tuple, made by devices: the kernel answers with the newest twin that takes the packet's device, the table may answer with another twin or with none";

/// The known difference of FreeBSD delivery with `bind_all_fibs` off.
pub const KNOWN_DELIVERY_FIBS: &str =
    "FreeBSD delivery with bind_all_fibs off: the table hands datagrams to PCBs of every FIB";
use crate::{freebsd, linux};

impl Model {
    /// `socket(2)`: returns the record's id.
    pub fn attach(&mut self, inet6: bool, cred: Cred) -> usize {
        // FreeBSD: V6ONLY defaults on (net.inet6.ip6.v6only=1); Linux: off
        // (net.ipv6.bindv6only=0).
        let v6only = inet6 && self.freebsd();
        self.recs.push(Rec {
            inet6,
            cred,
            ra: false,
            rp: false,
            lb: false,
            v6only,
            state: State::Closed,
            local: (if inet6 { V6_ANY } else { V4_ANY }, 0),
            remote: None,
            seq: 0,
            lpos: 0,
            connect_bind: false,
            connect_bucket: false,
            addr_locked: false,
            port_locked: false,
            source_bound: false,
            forced_v6only: false,
            group: None,
            pending: false,
            lgroup: None,
            listened: false,
            connected_once: false,
            last_peer: None,
            connected_at: 0,
            device: 0,
            ppos: 0,
            no_port: false,
            own_range: None,
            tw_reusable: false,
        });
        self.recs.len() - 1
    }

    /// `setsockopt(2)`.
    pub fn set_opt(&mut self, id: usize, opt: Opt, on: bool) -> MResult<()> {
        let linux = !self.freebsd();
        let r = &mut self.recs[id];
        match opt {
            Opt::ReusePortLb if linux => return Err(Error::OptionNotAvailable.into()),
            Opt::V6Only if !r.inet6 => return Err(Error::OptionNotAvailable.into()),
            _ => {}
        }
        if matches!(r.state, State::TimeWait | State::Dropped) {
            return Err(Error::InvalidInput.into());
        }
        match opt {
            Opt::ReuseAddr => r.ra = on,
            Opt::ReusePort => r.rp = on,
            Opt::ReusePortLb => r.lb = on,
            Opt::V6Only => {
                // Both kernels: EINVAL once the socket has a port.
                if r.state != State::Closed {
                    return Err(Error::InvalidInput.into());
                }
                r.v6only = on;
                // Linux: one flag (`sk_ipv6only`) for the option and for the
                // V6ONLY a bind to a specific IPv6 address forced.
                r.forced_v6only = false;
            }
        }
        // Neither kernel takes a PCB out of its group when the option is
        // cleared: FreeBSD decides membership in `in_pcbinshash` and drops it
        // only in `in_pcbremhash_locked`; Linux's `sk_setsockopt` only sets
        // `sk_reuseport`, and the group keeps the socket in `socks[]`.
        Ok(())
    }

    /// `IP_BIND_ADDRESS_NO_PORT`: Linux only.
    pub fn set_bind_no_port(&mut self, id: usize, on: bool) -> MResult<()> {
        if self.freebsd() {
            return Err(Error::OptionNotAvailable.into());
        }
        let r = &mut self.recs[id];
        if matches!(r.state, State::TimeWait | State::Dropped) {
            return Err(Error::InvalidInput.into());
        }
        r.no_port = on;
        Ok(())
    }

    /// `IP_LOCAL_PORT_RANGE` (Linux: two non-zero ends backwards are
    /// EINVAL, `(0, 0)` unsets) or `IP_PORTRANGE` as a range (FreeBSD: an
    /// end of 0 is no real port). A PCB holding a port keeps it.
    pub fn set_port_range(&mut self, id: usize, range: Option<(u16, u16)>) -> MResult<()> {
        let freebsd = self.freebsd();
        let r = &mut self.recs[id];
        if matches!(r.state, State::TimeWait | State::Dropped) {
            return Err(Error::InvalidInput.into());
        }
        if let Some((first, last)) = range {
            let refused = if freebsd {
                first == 0 || last == 0
            } else {
                first != 0 && last != 0 && first > last
            };
            if refused {
                return Err(Error::InvalidInput.into());
            }
        }
        r.own_range = range.filter(|&own| own != (0, 0));
        Ok(())
    }

    /// The stack marks a TIME_WAIT PCB reusable.
    pub fn allow_tw_reuse(&mut self, id: usize) -> MResult<()> {
        let r = &mut self.recs[id];
        if r.state != State::TimeWait {
            return Err(Error::InvalidInput.into());
        }
        r.tw_reusable = true;
        Ok(())
    }

    /// `SO_BINDTODEVICE` (Linux) or `SO_SETFIB` (FreeBSD, which keeps FIBs
    /// 0 to 255; what they scope depends on `bind_all_fibs`).
    pub fn bind_device(&mut self, id: usize, device: Option<Device>) -> MResult<()> {
        let index = device.map_or(0, |d| d.0);
        if self.freebsd() && index > 255 {
            return Err(Error::InvalidInput.into());
        }
        if !self.freebsd() && device == Some(Device(0)) {
            // `sock_bindtoindex`: index 0 is "no device" only as an unbind,
            // which this API spells `None`.
            return Err(Error::InvalidInput.into());
        }
        // `INP_BOUNDFIB`: bound while FIBs are scoped, the PCB keeps its FIB
        // (`fibs_multibind_test.c`, `no_setfib_after_bind`), in TIME_WAIT
        // too: the flag stays on the inpcb until it is freed.
        let r = &self.recs[id];
        if self.freebsd() && self.fibs_scoped && r.state != State::Closed && r.device != index {
            return Err(Error::AlreadyConnected.into());
        }
        if matches!(r.state, State::TimeWait | State::Dropped) {
            return Err(Error::InvalidInput.into());
        }
        if self.freebsd() {
            self.recs[id].device = index;
            return Ok(());
        }
        linux::bind_device(self, id, index);
        Ok(())
    }

    /// What `Pcb::device` should show: the Linux device, or the FreeBSD
    /// FIB other than 0.
    pub fn device(&self, id: usize) -> Option<Device> {
        let d = self.recs[id].device;
        (d != 0).then_some(Device(d))
    }

    /// `bind(2)`.
    pub fn bind(&mut self, id: usize, addr: SocketAddr, pick: Option<u16>) -> MResult<SocketAddr> {
        if self.freebsd() {
            freebsd::bind(self, id, addr, pick)
        } else {
            linux::bind(self, id, addr, pick)
        }
    }

    /// `listen(2)`.
    pub fn listen(&mut self, id: usize, pick: Option<u16>) -> MResult<()> {
        if !self.tcp() {
            return Err(Error::NotSupported.into());
        }
        if self.freebsd() {
            freebsd::listen(self, id, pick)
        } else {
            linux::listen(self, id, pick)
        }
    }

    /// `connect(2)`.
    pub fn connect(
        &mut self,
        id: usize,
        peer: SocketAddr,
        pick: Option<u16>,
    ) -> MResult<SocketAddr> {
        if self.freebsd() {
            freebsd::connect(self, id, peer, pick)
        } else {
            linux::connect(self, id, peer, pick)
        }
    }

    /// The passive open on listener `id`; returns the new record's id.
    pub fn accept(&mut self, id: usize, local: SocketAddr, remote: SocketAddr) -> MResult<usize> {
        if !self.tcp() {
            return Err(Error::NotSupported.into());
        }
        let l = self.recs[id].clone();
        if l.state != State::Listen {
            return Err(Error::InvalidInput.into());
        }
        let (lep, rep) = (canonical(local), canonical(remote));
        let fits_local = lep.1 == l.local.1
            && !lep.0.is_unspecified()
            && !lep.0.is_multicast()
            && if l.is_wild() {
                if lep.0.is_ipv4() {
                    l.takes_v4_for(self.freebsd())
                } else {
                    l.inet6 && l.local.0.is_ipv6()
                }
            } else {
                lep.0 == l.local.0
            };
        // The addresses come from a packet: only their canonical form counts.
        let fits_remote = rep.1 != 0
            && !rep.0.is_unspecified()
            && !rep.0.is_multicast()
            && rep.0.is_ipv4() == lep.0.is_ipv4();
        if !fits_local || !fits_remote {
            return Err(Error::InvalidInput.into());
        }
        // Linux `inet_ehash_insert` compares with `inet_match` on the
        // child's device (the listener's): a twin bound to no device, or to
        // that device, holds the 4-tuple. FreeBSD's FIBs scope nothing here.
        let freebsd = self.freebsd();
        let holder = self.recs.iter().position(|r| {
            r.connected()
                && r.local == lep
                && r.remote == Some(rep)
                && (freebsd || r.answers(l.device))
        });
        if let Some(h) = holder {
            if self.recs[h].state != State::TimeWait {
                return Err(Error::AddrInUse.into());
            }
            self.remove(h, State::Dropped);
        }
        let child = self.attach(l.inet6, l.cred);
        let linux_tcp = !self.freebsd();
        {
            // FreeBSD `solisten_clone` copies no reuse option; Linux
            // `sk_clone_lock` copies the socket whole.
            let c = &mut self.recs[child];
            c.ra = l.ra && linux_tcp;
            c.rp = l.rp && linux_tcp;
            c.lb = l.lb && linux_tcp;
            c.v6only = l.v6only;
            c.forced_v6only = l.forced_v6only;
            c.remote = Some(rep);
            c.connected_once = linux_tcp;
            // `sk_clone_lock` keeps SOCK_BINDADDR_LOCK, not SOCK_BINDPORT_LOCK.
            c.addr_locked = l.addr_locked;
            // The SYN came in on the listener's device (Linux
            // `inet_request_bound_dev_if`), or in its FIB.
            c.device = l.device;
            // The port options are copied with the socket.
            c.no_port = l.no_port;
            c.own_range = l.own_range;
        }
        // A connected child joins no group (FreeBSD's child has no
        // SO_REUSEPORT_LB to join with).
        self.enter(child, lep, State::Connected);
        if linux_tcp {
            linux::bucket_joined(self, child, false);
        }
        Ok(child)
    }

    /// `connect(AF_UNSPEC)`.
    pub fn disconnect(&mut self, id: usize) -> MResult<()> {
        if self.tcp() && self.freebsd() {
            return Err(Error::NotSupported.into());
        }
        if self.tcp() {
            return linux::disconnect_tcp(self, id);
        }
        if self.freebsd() {
            freebsd::disconnect(self, id)
        } else {
            linux::disconnect(self, id)
        }
    }

    /// TIME_WAIT.
    pub fn time_wait(&mut self, id: usize) -> MResult<()> {
        let r = &mut self.recs[id];
        if !self.protocol.eq(&ProtoSel::Tcp) || r.state != State::Connected {
            return Err(Error::InvalidInput.into());
        }
        r.state = State::TimeWait;
        let local = r.local;
        if !self.freebsd() {
            linux::bucket_left(self, local);
            linux::port_left(self, local.1);
        }
        Ok(())
    }

    /// `close(2)`.
    pub fn close(&mut self, id: usize) {
        if self.recs[id].in_table() {
            self.remove(id, State::Dropped);
        } else {
            self.recs[id].state = State::Dropped;
        }
    }

    /// Takes a record out of the table (and out of its groups).
    pub(crate) fn remove(&mut self, id: usize, state: State) {
        if self.freebsd() {
            freebsd::remove(self, id, state);
        } else {
            linux::remove(self, id, state);
        }
    }

    /// Packet demultiplexing, of a packet whose device is unknown.
    pub fn lookup(&self, local: SocketAddr, remote: SocketAddr) -> Expect {
        self.lookup_on(None, local, remote)
    }

    /// Linux: whether several connected records share the packet's exact
    /// 4-tuple, one of them at least answering the packet, and devices
    /// made them twins: one of them at least is bound to a device (the
    /// older one bound to the packet's device when the newer one connected
    /// unbound or on another device, or both after a later
    /// SO_BINDTODEVICE), or they are TCP. TCP twins exist only because
    /// `__inet_check_established` passed over a holder on another device,
    /// and a later SO_BINDTODEVICE may unbind them both; UDP twins are the
    /// table's shadowed holders, which it answers as the kernel does. The
    /// kernel's established lookup returns the first of them in its hash
    /// chain (`inet_ehash_insert` adds at the head: the newest); the table
    /// answers with another (see [`KNOWN_DEVICE_TWINS`]).
    pub fn device_twins(
        &self,
        device: Option<Device>,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> bool {
        if self.freebsd() {
            return false;
        }
        let dev = device.map_or(0, |d| d.0);
        let (l, r) = (canonical(local), canonical(remote));
        let twins: Vec<(u32, bool)> = self
            .live()
            .filter(|(_, p)| p.connected() && p.local == l && p.remote == Some(r))
            .map(|(_, p)| (p.device, p.answers(dev)))
            .collect();
        twins.len() > 1
            && (self.protocol == ProtoSel::Tcp || twins.iter().any(|&(d, _)| d != 0))
            && twins.iter().any(|&(_, answers)| answers)
    }

    /// Packet demultiplexing of a packet that arrived on `device` (`None`:
    /// unknown). Under FreeBSD `device` is the packet's FIB (`None`: 0),
    /// which takes part only while FIBs are scoped.
    pub fn lookup_on(
        &self,
        device: Option<Device>,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Expect {
        let dev = if self.freebsd() {
            0
        } else {
            device.map_or(0, |d| d.0)
        };
        let freebsd = self.freebsd();
        let (l, r) = (canonical(local), canonical(remote));
        if l.0.is_ipv4() != r.0.is_ipv4() {
            return Expect::None;
        }
        // Several connected over one 4-tuple (Linux UDP): the one that
        // connected last.
        let connected_to = |peer: Ep| {
            let on = |p: &Rec| {
                p.connected()
                    && p.local == l
                    && p.remote == Some(peer)
                    && (freebsd || p.answers(dev))
            };
            let last = self
                .live()
                .filter(|(_, p)| on(p))
                .map(|(_, p)| p.connected_at)
                .max()?;
            Expect::of(
                self.live()
                    .filter(|(_, p)| on(p) && p.connected_at == last)
                    .map(|(i, _)| i)
                    .collect(),
            )
        };
        if let Some(exact) = connected_to(r) {
            return exact;
        }
        // Linux UDP: a record connected to the address with port 0 takes any
        // port of it, ranked among the unconnected ones (`lookup_wild`).
        if self.freebsd() {
            // With FIBs scoped, `lookup` is a packet of FIB 0.
            let fib = self.fibs_scoped.then(|| device.map_or(0, |d| d.0));
            freebsd::lookup_wild(self, l, r, fib)
        } else {
            linux::lookup_wild(self, l, r, dev)
        }
    }

    /// Multicast and broadcast delivery of a UDP datagram from `remote` to
    /// `local` that arrived on `device`: the receivers, in the kernel's
    /// order.
    pub fn deliver(
        &self,
        device: Option<Device>,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Receivers {
        let (l, r) = (canonical(local), canonical(remote));
        if self.tcp() || l.1 == 0 || l.0.is_ipv4() != r.0.is_ipv4() {
            return Receivers::default();
        }
        if !self.freebsd() {
            let kernel = linux::deliver(self, l, r, device.map_or(0, |d| d.0));
            return Receivers {
                kernel,
                ..Receivers::default()
            };
        }
        let fib = self.fibs_scoped.then(|| device.map_or(0, |d| d.0));
        let kernel = freebsd::deliver(self, l, r, fib, |_, id| id as u64);
        let by_port_entry = Some(freebsd::deliver(self, l, r, fib, |rec, _| rec.seq));
        let any_fib = match fib {
            Some(_) => vec![
                freebsd::deliver(self, l, r, None, |_, id| id as u64),
                freebsd::deliver(self, l, r, None, |rec, _| rec.seq),
            ],
            None => Vec::new(),
        };
        Receivers {
            kernel,
            by_port_entry,
            any_fib,
        }
    }

    /// `in_pcblookup_local()`.
    pub fn lookup_local(&self, local: SocketAddr, wildcard: bool) -> Expect {
        if self.freebsd() {
            return freebsd::lookup_local(self, canonical(local), wildcard);
        }
        // `in_pcblookup_local()` is FreeBSD's; Linux has no such call, so no
        // kernel orders its ties. The table breaks them by the kernel's
        // listening-list order, which the model does not track: any tied
        // candidate is a right answer.
        let ties = freebsd::lookup_local_ties(self, canonical(local), wildcard);
        match ties.as_slice() {
            [] => Expect::None,
            [one] => Expect::One(*one),
            _ => Expect::AnyOf(ties),
        }
    }
}
