//! The model's state, shared by both policies' rules: the PCB records, the
//! FreeBSD load-balance groups, the Linux listener-list positions and bind
//! buckets, and the small helpers every rule uses (entering the table, the
//! ephemeral range, the address-family check, the default source address).
//! It knows no policy's rules: `freebsd/` and `linux/` read and update it,
//! and `model.rs` dispatches each call to one of them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use pcbhash::{Cred, Error, State};

use crate::addrs::{canonical, shown, Ep, V4_ANY, V6_ANY};
use crate::ops::{PolicySel, ProtoSel, TwReuseSel};

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
    /// Whether a lookup that found `got` answered as expected.
    pub fn allows(&self, got: Option<usize>) -> bool {
        match (self, got) {
            (Expect::None, None) => true,
            (Expect::One(w), Some(g)) => *w == g,
            (Expect::AnyOf(ws), Some(g)) => ws.contains(&g),
            _ => false,
        }
    }

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
    /// Linux: the device of SO_BINDTODEVICE (`sk_bound_dev_if`, 0 for
    /// none); FreeBSD: the FIB of SO_SETFIB (`inc_fibnum`).
    pub(crate) device: u32,
    /// Linux UDP: position in the port's list (`hslot`), set when the
    /// record takes its port and kept until it leaves it.
    pub(crate) ppos: i64,
    /// Linux `IP_BIND_ADDRESS_NO_PORT`.
    pub(crate) no_port: bool,
    /// `IP_LOCAL_PORT_RANGE` (Linux) / `IP_PORTRANGE` (FreeBSD) as given.
    pub(crate) own_range: Option<(u16, u16)>,
    /// Linux: in TIME_WAIT, marked reusable by the stack.
    pub(crate) tw_reusable: bool,
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

    /// Linux `inet_bound_dev_eq` (no VRF): whether the record answers a
    /// packet that arrived on `device` (0: unknown). A record bound to no
    /// device answers every packet; one bound to a device only that
    /// device's.
    pub(crate) fn answers(&self, device: u32) -> bool {
        self.device == 0 || self.device == device
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
    /// `il_fibnum`: the members' FIB while FIBs are scoped, 0 otherwise.
    pub(crate) fib: u32,
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
    /// FreeBSD: `bind_all_fibs` off, so FIBs scope binds, groups and the
    /// wildcard stage of lookups.
    pub(crate) fibs_scoped: bool,
    /// Linux TCP: the ports whose bind bucket a bind() or listen() holds
    /// (`fastreuse`/`fastreuseport` not -1).
    pub(crate) bind_held: std::collections::BTreeSet<u16>,
    /// Linux TCP: each bind-held port's fast-path record, a snapshot of the
    /// SO_REUSEPORT socket `inet_csk_update_fastreuse` recorded
    /// (`FASTREUSEPORT_STRICT`); it goes with `bind_held`.
    pub(crate) fast: std::collections::BTreeMap<u16, Rec>,
    /// Linux `tcp_tw_reuse`.
    pub(crate) tw_reuse: TwReuseSel,
    /// Linux UDP: the reuseport groups (`lgroup` ids, never reused) that a
    /// member connected from: `reuseport_has_conns_set` marks a group for
    /// the rest of its life, and the member that connected leaves it.
    pub(crate) group_conns: std::collections::BTreeSet<u64>,
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
            fast: Default::default(),
            fibs_scoped: false,
            tw_reuse: TwReuseSel::Off,
            group_conns: Default::default(),
        }
    }

    /// The same model with Linux `tcp_tw_reuse` in `mode`.
    pub fn with_tw_reuse(mut self, mode: TwReuseSel) -> Self {
        self.tw_reuse = mode;
        self
    }

    /// The same model with FreeBSD's `bind_all_fibs` off (`scoped`) or on.
    pub fn with_scoped_fibs(mut self, scoped: bool) -> Self {
        self.fibs_scoped = scoped;
        self
    }

    /// The FIB a FreeBSD record's group and wildcard matches go by: its own
    /// while FIBs are scoped, 0 (every FIB alike) otherwise.
    pub(crate) fn fib_of(&self, r: &Rec) -> u32 {
        if self.fibs_scoped {
            r.device
        } else {
            0
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

    pub(crate) fn live(&self) -> impl Iterator<Item = (usize, &Rec)> {
        self.recs.iter().enumerate().filter(|(_, r)| r.in_table())
    }

    /// The ephemeral range the scans of `r` take, and whether its own
    /// option is in force. Linux (`inet_sk_get_local_port_range`): each end
    /// of the option replaces the table's if it lies within the table's
    /// range (the low end first). FreeBSD (`in_pcb_lport_dest`): the option
    /// replaces the table's range, and one reaching below 1024 needs
    /// privilege (EPERM).
    pub(crate) fn scan_range(&self, r: &Rec) -> MResult<(u16, u16, bool)> {
        let Some((first, last)) = r.own_range else {
            return Ok((self.range.0, self.range.1, false));
        };
        if self.freebsd() {
            let (low, high) = (first.min(last), first.max(last));
            if low < 1024 && !r.cred.privileged {
                return Err(Error::NotPermitted.into());
            }
            return Ok((low, high, true));
        }
        let (mut low, mut high) = self.range;
        if (low..=high).contains(&first) {
            low = first;
        }
        if (low..=high).contains(&last) {
            high = last;
        }
        Ok((low, high, true))
    }

    /// Ports of the ephemeral range the scans of `r` take.
    pub(crate) fn range_ports(&self, r: &Rec) -> MResult<std::ops::RangeInclusive<u16>> {
        let (low, high, _) = self.scan_range(r)?;
        Ok(low..=high)
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
                    "#{i} {}{} uid{} {:?} {:?} -> {:?} ra{} rp{} lb{} v6only{} seq{} grp{:?}{} lgrp{:?} lpos{} dev{}",
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
                    r.lpos,
                    r.device
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

/// The default source-address selector: loopback only.
pub(crate) fn source_for(peer: IpAddr) -> Option<IpAddr> {
    match peer {
        IpAddr::V4(v4) if v4.is_loopback() => Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        IpAddr::V6(v6) if v6.is_loopback() => Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        _ => None,
    }
}
