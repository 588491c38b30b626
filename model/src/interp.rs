//! The lock-step interpreter: every operation runs on a real table and on
//! the model, and the two are compared after every step.

use std::fmt;
use std::net::SocketAddr;

use pcbhash::policy::TwReuse;
use pcbhash::{Error, Family, Pcb, PcbTable, Policy, Protocol};

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::addrs::{device, ephemeral_range, local_addr, port_range, remote_addr};
use crate::ops::{Op, Opt, PolicySel, ProtoSel, Scenario, TwReuseSel};
use crate::state::{Expect, MResult, Model, ModelError};

/// FreeBSD deliveries whose receivers came in the order of port entry
/// rather than of creation (see [`crate::Receivers::by_port_entry`]), over
/// the life of the process.
static TOLERATED_ORDERS: AtomicU64 = AtomicU64::new(0);

/// How many FreeBSD deliveries so far gave the receivers in the order of
/// port entry, the table's documented approximation, rather than the
/// kernel's order of creation.
pub fn tolerated_orders() -> u64 {
    TOLERATED_ORDERS.load(Ordering::Relaxed)
}

/// The scenarios that ended on a known difference, by its message.
static KNOWN_ENDINGS: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

/// How many scenarios so far ended on each known difference between the
/// table and the kernel (see [`ModelError::Known`]), over the life of the
/// process.
pub fn known_endings() -> BTreeMap<String, u64> {
    KNOWN_ENDINGS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// Most operations one scenario runs.
pub const MAX_OPS: usize = 96;
/// Most handles alive at once.
pub const MAX_HANDLES: usize = 10;

/// The first disagreement between the table and the model.
#[derive(Clone, Debug)]
pub struct Divergence {
    /// Index of the operation.
    pub step: usize,
    /// The operation.
    pub op: Option<Op>,
    /// What differed.
    pub what: String,
    /// The model's records at that point.
    pub state: String,
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "divergence at step {} ({:?}): {}\nmodel:\n{}",
            self.step, self.op, self.what, self.state
        )
    }
}

impl std::error::Error for Divergence {}

/// Decodes `data` as a [`Scenario`] and runs it. Inputs that do not decode
/// run nothing.
pub fn run_bytes(data: &[u8]) -> Result<(), Divergence> {
    match Scenario::decode(data, MAX_OPS) {
        Some(s) => run(&s),
        None => Ok(()),
    }
}

/// Decodes `data` as a [`crate::LookupCase`] and runs it.
pub fn run_lookup_bytes(data: &[u8]) -> Result<(), Divergence> {
    match crate::LookupCase::decode(data) {
        Some(c) => run(&c.scenario()),
        None => Ok(()),
    }
}

struct Handle {
    pcb: Pcb<u32>,
    id: usize,
}

struct Harness {
    table: PcbTable<u32>,
    model: Model,
    handles: Vec<Handle>,
}

/// Runs a scenario on a fresh table and model.
pub fn run(s: &Scenario) -> Result<(), Divergence> {
    let range = ephemeral_range();
    let table = PcbTable::<u32>::builder()
        .policy(match s.policy {
            PolicySel::FreeBsd => Policy::FreeBsd,
            PolicySel::Linux => Policy::Linux,
        })
        .protocol(match s.protocol {
            ProtoSel::Tcp => Protocol::Tcp,
            ProtoSel::Udp => Protocol::Udp,
        })
        .bind_all_fibs(!s.scoped_fibs)
        .tcp_tw_reuse(match s.tw_reuse {
            TwReuseSel::Off => TwReuse::Off,
            TwReuseSel::On => TwReuse::On,
            TwReuseSel::Loopback => TwReuse::Loopback,
        })
        .ephemeral_ports(range.clone())
        .seed(0x5EED)
        .capacity(2)
        .build();
    let mut h = Harness {
        table,
        model: Model::new(s.policy, s.protocol, (*range.start(), *range.end()))
            .with_scoped_fibs(s.scoped_fibs)
            .with_tw_reuse(s.tw_reuse),
        handles: Vec::new(),
    };
    for (step, op) in s.ops.iter().take(MAX_OPS).enumerate() {
        let fail = |what: String, h: &Harness| Divergence {
            step,
            op: Some(*op),
            what,
            state: format!("{:#?}", h.model.summary()),
        };
        match h.step(op) {
            Err(what) if what.starts_with(KNOWN) => {
                let mut seen = KNOWN_ENDINGS.lock().unwrap_or_else(|e| e.into_inner());
                *seen.entry(what[KNOWN.len()..].to_string()).or_default() += 1;
                return Ok(());
            }
            Err(what) => return Err(fail(what, &h)),
            Ok(()) => {}
        }
        if let Err(what) = h.check() {
            return Err(fail(what, &h));
        }
        // iter() walks every port: every few steps, and at the end.
        if step % 8 == 7 {
            if let Err(what) = h.check_iter() {
                return Err(fail(what, &h));
            }
        }
    }
    h.check_iter().map_err(|what| Divergence {
        step: s.ops.len().min(MAX_OPS),
        op: None,
        what,
        state: format!("{:#?}", h.model.summary()),
    })
}

/// The prefix of a step's error that ends the scenario without failing it.
const KNOWN: &str = "known: ";

fn compare<T: PartialEq + fmt::Debug>(
    what: &str,
    table: Result<T, Error>,
    model: MResult<T>,
) -> Result<(), String> {
    match (table, model) {
        (_, Err(ModelError::Known(k))) => Err(format!("{KNOWN}{k}")),
        (_, Err(ModelError::Diverged(d))) => Err(format!("{what}: {d}")),
        (Err(_), Err(ModelError::AnyError)) => Ok(()),
        (Ok(a), Ok(b)) if a == b => Ok(()),
        (Err(e), Err(ModelError::Errno(f))) if e == f => Ok(()),
        (t, m) => Err(format!("{what}: table {t:?}, model {m:?}")),
    }
}

fn port_of<T>(r: &Result<T, Error>, f: impl Fn(&T) -> u16) -> Option<u16> {
    r.as_ref().ok().map(f)
}

impl Harness {
    fn pick(&self, pcb: u8) -> Option<usize> {
        (!self.handles.is_empty()).then(|| usize::from(pcb) % self.handles.len())
    }

    fn step(&mut self, op: &Op) -> Result<(), String> {
        match *op {
            Op::Attach { v6, user } => {
                if self.handles.len() >= MAX_HANDLES {
                    return Ok(());
                }
                let family = if v6 { Family::Inet6 } else { Family::Inet };
                let id = self.model.attach(v6, user.cred());
                let pcb = self.table.attach(family, user.cred(), id as u32);
                self.handles.push(Handle { pcb, id });
            }
            Op::SetOpt { pcb, opt, on } => {
                let Some(i) = self.pick(pcb) else {
                    return Ok(());
                };
                let h = &self.handles[i];
                let t = match opt {
                    Opt::ReuseAddr => h.pcb.set_reuse_addr(on),
                    Opt::ReusePort => h.pcb.set_reuse_port(on),
                    Opt::ReusePortLb => h.pcb.set_reuse_port_lb(on),
                    Opt::V6Only => h.pcb.set_v6only(on),
                };
                let m = self.model.set_opt(h.id, opt, on);
                compare("setsockopt", t, m)?;
            }
            Op::SetBindNoPort { pcb, on } => {
                let Some(i) = self.pick(pcb) else {
                    return Ok(());
                };
                let h = &self.handles[i];
                let t = h.pcb.set_bind_address_no_port(on);
                let m = self.model.set_bind_no_port(h.id, on);
                compare("set_bind_address_no_port", t, m)?;
            }
            Op::SetPortRange {
                pcb,
                first,
                last,
                unset,
            } => {
                let Some(i) = self.pick(pcb) else {
                    return Ok(());
                };
                let h = &self.handles[i];
                let range = port_range(first, last, unset);
                let t = h.pcb.set_local_port_range(range.clone());
                let m = self
                    .model
                    .set_port_range(h.id, range.clone().map(|r| r.into_inner()));
                compare(&format!("set_local_port_range({range:?})"), t, m)?;
            }
            Op::AllowTwReuse { pcb } => {
                let Some(i) = self.pick(pcb) else {
                    return Ok(());
                };
                let h = &self.handles[i];
                compare(
                    "allow_tw_reuse",
                    h.pcb.allow_tw_reuse(),
                    self.model.allow_tw_reuse(h.id),
                )?;
            }
            Op::Bind { pcb, addr, port } => {
                let Some(i) = self.pick(pcb) else {
                    return Ok(());
                };
                let a = local_addr(addr, port);
                let h = &self.handles[i];
                let t = h.pcb.bind(a);
                let m = self.model.bind(h.id, a, port_of(&t, |s| s.port()));
                compare(&format!("bind({a})"), t, m)?;
            }
            Op::Listen { pcb } => {
                let Some(i) = self.pick(pcb) else {
                    return Ok(());
                };
                let h = &self.handles[i];
                let t = h.pcb.listen();
                // The table's port choice, also when a Linux listen() took a
                // port and then refused (a socket that has been connected).
                let pick = h.pcb.local_addr().map(|a| a.port()).filter(|&p| p != 0);
                let m = self.model.listen(h.id, pick);
                compare("listen", t, m)?;
            }
            Op::Connect { pcb, addr, port } => {
                let Some(i) = self.pick(pcb) else {
                    return Ok(());
                };
                let a = remote_addr(addr, port);
                let h = &self.handles[i];
                let t = h.pcb.connect(a);
                // The table's port choice, also when a Linux UDP connect()
                // bound a port and then failed (`inet_dgram_connect` binds
                // first).
                let picked = port_of(&t, |s| s.port())
                    .or_else(|| h.pcb.local_addr().map(|l| l.port()).filter(|&p| p != 0));
                let m = self.model.connect(h.id, a, picked);
                compare(&format!("connect({a})"), t, m)?;
            }
            Op::Accept {
                pcb,
                local,
                remote,
                rport,
            } => {
                let Some(i) = self.pick(pcb) else {
                    return Ok(());
                };
                if self.handles.len() >= MAX_HANDLES {
                    return Ok(());
                }
                let h = &self.handles[i];
                // The listener's own port, so that accepts mostly fit.
                let lport = h.pcb.local_addr().map_or(0, |a| a.port());
                let mut l = local_addr(local, 0);
                l.set_port(lport);
                let r = remote_addr(remote, rport);
                let next = self.model.recs_len() as u32;
                let t = h.pcb.try_accept(l, r, next);
                if let Err((_, back)) = &t {
                    if *back != next {
                        return Err("a failed accept lost its socket".into());
                    }
                }
                let t = t.map_err(|(error, _)| error);
                let m = self.model.accept(h.id, l, r);
                match (t, m) {
                    (Ok(pcb), Ok(id)) => self.handles.push(Handle { pcb, id }),
                    (t, m) => compare(&format!("accept({l}, {r})"), t.map(|_| ()), m.map(|_| ()))?,
                }
            }
            Op::Disconnect { pcb } => {
                let Some(i) = self.pick(pcb) else {
                    return Ok(());
                };
                let h = &self.handles[i];
                compare(
                    "disconnect",
                    h.pcb.disconnect(),
                    self.model.disconnect(h.id),
                )?;
            }
            Op::TimeWait { pcb } => {
                let Some(i) = self.pick(pcb) else {
                    return Ok(());
                };
                let h = &self.handles[i];
                compare("time_wait", h.pcb.time_wait(), self.model.time_wait(h.id))?;
                let guard = self.table.pin();
                if h.pcb.state() == pcbhash::State::TimeWait && h.pcb.socket(&guard).is_some() {
                    return Err("a TIME_WAIT PCB still hands out its socket".into());
                }
            }
            Op::Close { pcb } => {
                let Some(i) = self.pick(pcb) else {
                    return Ok(());
                };
                let h = self.handles.swap_remove(i);
                self.model.close(h.id);
                let guard = self.table.pin();
                let socket = h.pcb.socket(&guard);
                let before = socket.copied();
                h.pcb.close();
                // Detached at once, dropped only after the guard: what was
                // read under it is still there.
                if socket.copied() != before {
                    return Err("a closed PCB's socket changed under a guard".into());
                }
            }
            Op::Lookup {
                local,
                lport,
                remote,
                rport,
            } => {
                let (l, r) = self.packet(local, lport, remote, rport);
                let guard = self.table.pin();
                let got = self.table.lookup(l, r, &guard).map(|p| self.handle_of(&p));
                let got = got.transpose()?;
                let want = self.model.lookup(l, r);
                check_expect(&format!("lookup({l} <- {r})"), got, want)?;
            }
            Op::BindDevice { pcb, device: d } => {
                let Some(i) = self.pick(pcb) else {
                    return Ok(());
                };
                let h = &self.handles[i];
                let dev = device(d);
                let t = h.pcb.bind_device(dev);
                let m = self.model.bind_device(h.id, dev);
                compare(&format!("bind_device({dev:?})"), t, m)?;
            }
            Op::LookupOn {
                local,
                lport,
                remote,
                rport,
                device: d,
            } => {
                let (l, r) = self.packet(local, lport, remote, rport);
                let dev = device(d);
                let guard = self.table.pin();
                let got = match dev {
                    Some(dev) => self.table.lookup_on(dev, l, r, &guard),
                    None => self.table.lookup(l, r, &guard),
                };
                let got = got.map(|p| self.handle_of(&p)).transpose()?;
                let want = self.model.lookup_on(dev, l, r);
                if self.model.device_twins(dev, l, r) && !want.allows(got) {
                    return Err(format!("{KNOWN}{}", crate::model::KNOWN_DEVICE_TWINS));
                }
                check_expect(&format!("lookup_on({dev:?}, {l} <- {r})"), got, want)?;
            }
            Op::Deliver {
                local,
                lport,
                remote,
                rport,
                device: d,
            } => {
                let (l, r) = self.datagram(local, lport, remote, rport);
                let dev = device(d);
                let guard = self.table.pin();
                let got = self
                    .table
                    .deliver(dev, l, r, &guard)
                    .map(|p| self.handle_of(&p))
                    .collect::<Result<Vec<usize>, String>>()?;
                let want = self.model.deliver(dev, l, r);
                if got != want.kernel {
                    if want.by_port_entry.as_ref() == Some(&got) {
                        TOLERATED_ORDERS.fetch_add(1, Ordering::Relaxed);
                    } else if want.any_fib.contains(&got) {
                        return Err(format!("{KNOWN}{}", crate::model::KNOWN_DELIVERY_FIBS));
                    } else {
                        return Err(format!(
                            "deliver({dev:?}, {l} <- {r}): table {got:?}, model {want:?}"
                        ));
                    }
                }
            }
            Op::LookupLocal {
                addr,
                port: p,
                wildcard,
            } => {
                let mut a = local_addr(addr, p);
                if p % 2 == 1 {
                    if let Some(own) = self.live_port(usize::from(addr)) {
                        a.set_port(own);
                    }
                }
                let guard = self.table.pin();
                let got = self
                    .table
                    .lookup_local(a, wildcard, &guard)
                    .map(|p| self.handle_of(&p));
                let got = got.transpose()?;
                let want = self.model.lookup_local(a, wildcard);
                check_expect(&format!("lookup_local({a}, {wildcard})"), got, want)?;
            }
        }
        Ok(())
    }

    /// The port of a PCB in the table, if any.
    fn live_port(&self, k: usize) -> Option<u16> {
        let ports: Vec<u16> = self
            .handles
            .iter()
            .filter_map(|h| h.pcb.local_addr().map(|a| a.port()))
            .collect();
        (!ports.is_empty()).then(|| ports[k % ports.len()])
    }

    /// A multicast or broadcast datagram: half of them aimed as [`packet`]
    /// aims, the other half at a live PCB's port and address (a group or
    /// loopback address of its family for a wildcard), from a source of
    /// that family (the PCB's peer, when it has one, for an odd `rport`).
    ///
    /// [`packet`]: Self::packet
    fn datagram(&self, local: u8, lport: u8, remote: u8, rport: u8) -> (SocketAddr, SocketAddr) {
        let bound: Vec<(SocketAddr, Option<SocketAddr>)> = self
            .handles
            .iter()
            .filter_map(|h| Some((h.pcb.local_addr()?, h.pcb.peer_addr())))
            .collect();
        if local >= 128 || bound.is_empty() {
            return self.packet(local, lport, remote, rport);
        }
        let (mut l, peer) = bound[usize::from(lport) % bound.len()];
        l.set_ip(l.ip().to_canonical());
        if l.ip().is_unspecified() {
            let to: [&str; 2] = if l.is_ipv4() {
                ["224.0.0.1", "127.0.0.1"]
            } else {
                ["ff02::1", "::1"]
            };
            let ip: std::net::IpAddr = to[usize::from(local) % 2].parse().expect("an address");
            l.set_ip(ip);
        }
        if let Some(peer) = peer.filter(|_| rport % 2 == 1) {
            return (l, peer);
        }
        let from: [&str; 3] = if l.is_ipv4() {
            ["127.0.0.1", "127.0.0.2", "10.0.0.1"]
        } else {
            ["::1", "2001:db8::1", "::1"]
        };
        let ip: std::net::IpAddr = from[usize::from(remote) % 3].parse().expect("an address");
        (l, SocketAddr::new(ip, crate::addrs::port(rport)))
    }

    /// A packet: mostly aimed at live ports, sometimes at a live 4-tuple.
    fn packet(&self, local: u8, lport: u8, remote: u8, rport: u8) -> (SocketAddr, SocketAddr) {
        if local >= 192 {
            let conns: Vec<(SocketAddr, SocketAddr)> = self
                .handles
                .iter()
                .filter_map(|h| Some((h.pcb.local_addr()?, h.pcb.peer_addr()?)))
                .collect();
            if !conns.is_empty() {
                return conns[usize::from(remote) % conns.len()];
            }
        }
        let mut l = local_addr(local, lport);
        if lport % 2 == 1 {
            if let Some(p) = self.live_port(usize::from(rport)) {
                l.set_port(p);
            }
        }
        (l, remote_addr(remote, rport))
    }

    fn handle_of(&self, r: &pcbhash::PcbRef<'_, u32>) -> Result<usize, String> {
        self.handles
            .iter()
            .find(|h| r.is(&h.pcb))
            .map(|h| h.id)
            .ok_or_else(|| format!("a lookup returned a PCB with no live handle: {r:?}"))
    }

    /// After every step: len(), and every handle's state and addresses.
    fn check(&self) -> Result<(), String> {
        if self.table.len() != self.model.len() {
            return Err(format!(
                "len(): table {}, model {}",
                self.table.len(),
                self.model.len()
            ));
        }
        for h in &self.handles {
            let (ts, ms) = (h.pcb.state(), self.model.state(h.id));
            if ts != ms {
                return Err(format!("pcb {}: state: table {ts:?}, model {ms:?}", h.id));
            }
            let (tl, ml) = (h.pcb.local_addr(), self.model.local_addr(h.id));
            if tl != ml {
                return Err(format!(
                    "pcb {}: local_addr: table {tl:?}, model {ml:?}",
                    h.id
                ));
            }
            let (td, md) = (h.pcb.device(), self.model.device(h.id));
            if td != md {
                return Err(format!("pcb {}: device: table {td:?}, model {md:?}", h.id));
            }
            let (tp, mp) = (h.pcb.peer_addr(), self.model.peer_addr(h.id));
            if tp != mp {
                return Err(format!(
                    "pcb {}: peer_addr: table {tp:?}, model {mp:?}",
                    h.id
                ));
            }
        }
        Ok(())
    }
}

impl Harness {
    /// iter() visits exactly the PCBs the model has in the table.
    fn check_iter(&self) -> Result<(), String> {
        let guard = self.table.pin();
        let mut walked = 0;
        for r in self.table.iter(&guard) {
            let id = self.handle_of(&r)?;
            if !self.model.state(id).is_in_table() {
                return Err(format!(
                    "iter() visits pcb {id}, out of the table in the model"
                ));
            }
            walked += 1;
        }
        if walked != self.model.len() {
            return Err(format!(
                "iter() visits {walked}, model has {}",
                self.model.len()
            ));
        }
        Ok(())
    }
}

fn check_expect(what: &str, got: Option<usize>, want: Expect) -> Result<(), String> {
    if want.allows(got) {
        Ok(())
    } else {
        Err(format!(
            "{what}: table gave {got:?}, model expects {want:?}"
        ))
    }
}
