//! The model's state: a `Vec` of PCB records, searched with linear scans, and
//! the lifecycle operations shared by both policies. The conflict rules, port
//! choice and lookup preferences live in `freebsd.rs` and `linux.rs`.

use std::net::{IpAddr, SocketAddr};

use pcbhash::{Cred, Error, State};

use crate::addrs::{canonical, shown, Ep, V4_ANY, V6_ANY};
use crate::ops::{Opt, PolicySel, ProtoSel};

/// Why the model could not give one answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelError {
    /// The operation fails with this error, as the table's should.
    Errno(Error),
    /// The operation fails and changes nothing, with an error the model does
    /// not pin down (cases the kernels fail deep in routing).
    AnyError,
    /// A known difference between the kernel and the table, reported and
    /// left to another change: the interpreter stops the scenario here.
    Known(&'static str),
    /// The table's choice (an ephemeral port) is not one the rules allow.
    Diverged(String),
}

impl From<Error> for ModelError {
    fn from(e: Error) -> Self {
        ModelError::Errno(e)
    }
}

pub(crate) type MResult<T> = Result<T, ModelError>;

/// What a lookup may return.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Nothing.
    None,
    /// Exactly this record.
    One(usize),
    /// Any of these records: a reuseport / load-balance group, whose member
    /// the table picks with a keyed hash the model cannot reproduce, or PCBs
    /// that the kernel itself orders differently on its lock-free and its
    /// locked lookup paths.
    AnyOf(Vec<usize>),
}

impl Expect {
    /// One of `ids`, `None` if there are none.
    pub(crate) fn of(ids: Vec<usize>) -> Option<Expect> {
        match ids.len() {
            0 => None,
            1 => Some(Expect::One(ids[0])),
            _ => Some(Expect::AnyOf(ids)),
        }
    }
}

/// One PCB.
#[derive(Clone, Debug)]
pub struct Rec {
    pub(crate) inet6: bool,
    pub(crate) cred: Cred,
    pub(crate) ra: bool,
    pub(crate) rp: bool,
    pub(crate) lb: bool,
    pub(crate) v6only: bool,
    pub(crate) state: State,
    /// Canonical local endpoint; `(wildcard, 0)` while unbound.
    pub(crate) local: Ep,
    /// Canonical peer while connected or in TIME_WAIT.
    pub(crate) remote: Option<Ep>,
    /// When the PCB entered the table (the port list is newest first).
    pub(crate) seq: u64,
    /// Linux: position in the listener list (head insertions count down,
    /// tail insertions count up).
    pub(crate) lpos: i64,
    /// Linux: the port came from connect() (`SOCK_CONNECT_BIND`).
    pub(crate) connect_bind: bool,
    /// Linux TCP: the record's bind2 bucket (its address and port) was made
    /// by an unbound connect() and no bind() has joined it since.
    pub(crate) connect_bucket: bool,
    /// Linux: bind() named the address / the port (`SOCK_BINDADDR_LOCK`,
    /// `SOCK_BINDPORT_LOCK`).
    pub(crate) addr_locked: bool,
    pub(crate) port_locked: bool,
    /// Linux: bind() gave the record its current local address, so the
    /// IPv4 source (`inet_saddr`) is set (`LOOPBACK4_IPV6` for a specific
    /// IPv6 address).
    pub(crate) source_bound: bool,
    /// Linux: forced V6ONLY by a bind to a specific IPv6 address.
    pub(crate) forced_v6only: bool,
    /// FreeBSD: the load-balance group, and whether the PCB waits for listen().
    pub(crate) group: Option<u64>,
    pub(crate) pending: bool,
    /// Linux: the reuseport group.
    pub(crate) lgroup: Option<u64>,
    /// Linux TCP: the record has listened (connect() is EINVAL from then
    /// on) / has been connected (listen() is EINVAL from then on).
    pub(crate) listened: bool,
    pub(crate) connected_once: bool,
    /// Linux UDP: an AF_INET6 socket keeps its last peer in `sk_v6_daddr`
    /// after `disconnect()`: unconnected, it matches only IPv6 datagrams
    /// from that address (none, for an IPv4 peer), and those score higher.
    pub(crate) last_peer: Option<IpAddr>,
    /// When the record last connected: of several connected over one
    /// 4-tuple, Linux UDP delivers to the last (`udp_lib_hash4` adds at the
    /// head).
    pub(crate) connected_at: u64,
}

impl Rec {
    pub(crate) fn in_table(&self) -> bool {
        self.state.is_in_table()
    }

    pub(crate) fn connected(&self) -> bool {
        self.state.is_connected()
    }

    pub(crate) fn unconnected_in_table(&self) -> bool {
        matches!(self.state, State::Bound | State::Listen)
    }

    pub(crate) fn is_wild(&self) -> bool {
        self.local.0.is_unspecified()
    }

    /// FreeBSD `INP_IPV4`: takes IPv4 traffic.
    pub(crate) fn takes_v4(&self) -> bool {
        self.local.0.is_ipv4()
            || (self.inet6 && self.local.0 == V6_ANY && !self.v6only && !self.connected())
    }

    /// FreeBSD `INP_IPV6`: takes IPv6 traffic.
    pub(crate) fn takes_v6(&self) -> bool {
        self.inet6 && self.local.0.is_ipv6()
    }

    /// The IPv4 view of the local address (`inp_laddr`): a dual-stack `::`
    /// PCB shows `0.0.0.0`.
    pub(crate) fn v4_laddr(&self) -> IpAddr {
        if self.local.0.is_ipv4() {
            self.local.0
        } else {
            V4_ANY
        }
    }
}

/// A FreeBSD load-balance group (`struct inpcblbgroup`).
#[derive(Clone, Debug)]
pub(crate) struct Group {
    pub(crate) id: u64,
    pub(crate) inet6: bool,
    pub(crate) laddr: IpAddr,
    pub(crate) lport: u16,
    /// Position in the group bucket: new and resized groups go to the head.
    pub(crate) pos: i64,
    pub(crate) size: usize,
}

/// The reference model.
#[derive(Clone, Debug)]
pub struct Model {
    pub(crate) policy: PolicySel,
    pub(crate) protocol: ProtoSel,
    pub(crate) recs: Vec<Rec>,
    pub(crate) clock: u64,
    pub(crate) lhead: i64,
    pub(crate) ltail: i64,
    pub(crate) groups: Vec<Group>,
    pub(crate) next_group: u64,
    pub(crate) range: (u16, u16),
    /// Linux TCP: the ports whose bind bucket a bind() or listen() holds
    /// (`fastreuse`/`fastreuseport` not -1).
    pub(crate) bind_held: std::collections::BTreeSet<u16>,
}

impl Model {
    /// An empty model of a table with this policy, protocol and ephemeral
    /// range.
    pub fn new(policy: PolicySel, protocol: ProtoSel, range: (u16, u16)) -> Self {
        Self {
            policy,
            protocol,
            recs: Vec::new(),
            clock: 0,
            lhead: 0,
            ltail: 0,
            groups: Vec::new(),
            next_group: 1,
            range,
            bind_held: Default::default(),
        }
    }

    pub(crate) fn tcp(&self) -> bool {
        self.protocol == ProtoSel::Tcp
    }

    pub(crate) fn freebsd(&self) -> bool {
        self.policy == PolicySel::FreeBsd
    }

    pub(crate) fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// PCBs holding a port.
    pub fn len(&self) -> usize {
        self.recs.iter().filter(|r| r.in_table()).count()
    }

    /// Whether no PCB holds a port.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

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
        });
        self.recs.len() - 1
    }

    /// The record's state.
    pub fn state(&self, id: usize) -> State {
        self.recs[id].state
    }

    /// What `Pcb::local_addr` should show.
    pub fn local_addr(&self, id: usize) -> Option<SocketAddr> {
        let r = &self.recs[id];
        r.in_table().then(|| shown(r.local, r.inet6))
    }

    /// What `Pcb::peer_addr` should show.
    pub fn peer_addr(&self, id: usize) -> Option<SocketAddr> {
        let r = &self.recs[id];
        if r.connected() {
            r.remote.map(|ep| shown(ep, r.inet6))
        } else {
            None
        }
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

    /// Validates the family of a local address given to bind.
    pub(crate) fn check_family(&self, id: usize, addr: SocketAddr) -> MResult<Ep> {
        family_check(self.recs[id].inet6, addr)?;
        Ok(canonical(addr))
    }

    /// Puts a record into the table: Bound with `local`.
    pub(crate) fn enter(&mut self, id: usize, local: Ep, state: State) {
        let seq = self.tick();
        let r = &mut self.recs[id];
        r.local = local;
        r.state = state;
        r.seq = seq;
    }

    /// `bind(2)`.
    pub fn bind(&mut self, id: usize, addr: SocketAddr, pick: Option<u16>) -> MResult<SocketAddr> {
        if self.freebsd() {
            crate::freebsd::bind(self, id, addr, pick)
        } else {
            crate::linux::bind(self, id, addr, pick)
        }
    }

    /// `listen(2)`.
    pub fn listen(&mut self, id: usize, pick: Option<u16>) -> MResult<()> {
        if !self.tcp() {
            return Err(Error::NotSupported.into());
        }
        if self.freebsd() {
            crate::freebsd::listen(self, id, pick)
        } else {
            crate::linux::listen(self, id, pick)
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
            crate::freebsd::connect(self, id, peer, pick)
        } else {
            crate::linux::connect(self, id, peer, pick)
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
        let holder = self
            .recs
            .iter()
            .position(|r| r.connected() && r.local == lep && r.remote == Some(rep));
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
        }
        // A connected child joins no group (FreeBSD's child has no
        // SO_REUSEPORT_LB to join with).
        self.enter(child, lep, State::Connected);
        if linux_tcp {
            crate::linux::bucket_joined(self, child, false);
        }
        Ok(child)
    }

    /// `connect(AF_UNSPEC)`.
    pub fn disconnect(&mut self, id: usize) -> MResult<()> {
        if self.tcp() && self.freebsd() {
            return Err(Error::NotSupported.into());
        }
        if self.tcp() {
            return crate::linux::disconnect_tcp(self, id);
        }
        if self.freebsd() {
            crate::freebsd::disconnect(self, id)
        } else {
            crate::linux::disconnect(self, id)
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
            crate::linux::bucket_left(self, local);
            crate::linux::port_left(self, local.1);
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
            crate::freebsd::leave_group(self, id);
        } else {
            self.recs[id].lgroup = None;
        }
        let was_in_table = self.recs[id].in_table();
        let r = &mut self.recs[id];
        r.state = state;
        let local = r.local;
        if was_in_table && !self.freebsd() && self.tcp() {
            crate::linux::bucket_left(self, local);
            crate::linux::port_left(self, local.1);
        }
    }

    /// Packet demultiplexing.
    pub fn lookup(&self, local: SocketAddr, remote: SocketAddr) -> Expect {
        let (l, r) = (canonical(local), canonical(remote));
        if l.0.is_ipv4() != r.0.is_ipv4() {
            return Expect::None;
        }
        // Several connected over one 4-tuple (Linux UDP): the one that
        // connected last.
        let connected_to = |peer: Ep| {
            let on = |p: &Rec| p.connected() && p.local == l && p.remote == Some(peer);
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
            crate::freebsd::lookup_wild(self, l, r)
        } else {
            crate::linux::lookup_wild(self, l, r)
        }
    }

    /// `in_pcblookup_local()`.
    pub fn lookup_local(&self, local: SocketAddr, wildcard: bool) -> Expect {
        if self.freebsd() {
            return crate::freebsd::lookup_local(self, canonical(local), wildcard);
        }
        // `in_pcblookup_local()` is FreeBSD's; Linux has no such call, so no
        // kernel orders its ties. The table breaks them by the kernel's
        // listening-list order, which the model does not track: any tied
        // candidate is a right answer.
        let ties = crate::freebsd::lookup_local_ties(self, canonical(local), wildcard);
        match ties.as_slice() {
            [] => Expect::None,
            [one] => Expect::One(*one),
            _ => Expect::AnyOf(ties),
        }
    }

    pub(crate) fn live(&self) -> impl Iterator<Item = (usize, &Rec)> {
        self.recs.iter().enumerate().filter(|(_, r)| r.in_table())
    }

    /// Ports of the ephemeral range.
    pub(crate) fn range_ports(&self) -> impl Iterator<Item = u16> {
        self.range.0..=self.range.1
    }
}

impl Rec {
    pub(crate) fn takes_v4_for(&self, freebsd: bool) -> bool {
        if freebsd {
            self.takes_v4()
        } else {
            // `sk_ipv6only` is one flag in Linux: set by IPV6_V6ONLY or forced
            // by a specific IPv6 bind.
            self.local.0.is_ipv4()
                || (self.inet6 && self.local.0 == V6_ANY && !self.v6only && !self.forced_v6only)
        }
    }
}

/// Picks the table's port if the rules allow it.
pub(crate) fn choose(candidates: &[u16], pick: Option<u16>, what: &str) -> MResult<u16> {
    match pick {
        Some(p) if candidates.contains(&p) => Ok(p),
        Some(p) => Err(ModelError::Diverged(format!(
            "{what}: the table chose port {p}, the rules allow {candidates:?}"
        ))),
        None => Err(ModelError::Diverged(format!(
            "{what}: the table failed, the rules allow {candidates:?}"
        ))),
    }
}

impl Model {
    /// How many records exist (the next record's id).
    pub fn recs_len(&self) -> usize {
        self.recs.len()
    }

    /// A one-line-per-PCB summary for divergence reports.
    pub fn summary(&self) -> Vec<String> {
        self.recs
            .iter()
            .enumerate()
            .map(|(i, r)| {
                format!(
                    "#{i} {}{} uid{} {:?} {:?} -> {:?} ra{} rp{} lb{} v6only{} seq{} grp{:?}{} lgrp{:?} lpos{}",
                    if r.inet6 { "inet6" } else { "inet" },
                    if r.connect_bind { " cbind" } else { "" },
                    r.cred.uid,
                    r.state,
                    r.local,
                    r.remote,
                    u8::from(r.ra),
                    u8::from(r.rp),
                    u8::from(r.lb),
                    u8::from(r.v6only),
                    r.seq,
                    r.group,
                    if r.pending { " pending" } else { "" },
                    r.lgroup,
                    r.lpos
                )
            })
            .collect()
    }
}

/// The address-family check of bind() and connect(): an IPv6 socket given a
/// `sockaddr_in` fails the length check first (EINVAL in both kernels); an
/// IPv4 socket given a `sockaddr_in6` fails the family check (EAFNOSUPPORT).
pub(crate) fn family_check(inet6: bool, addr: SocketAddr) -> MResult<()> {
    match (inet6, addr.is_ipv6()) {
        (true, false) => Err(Error::InvalidInput.into()),
        (false, true) => Err(Error::FamilyNotSupported.into()),
        _ => Ok(()),
    }
}
