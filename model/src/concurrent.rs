//! The `concurrent` target: one operation list split over two threads that
//! share a table, then the table's invariants checked at the end:
//!
//! - `len()`, `iter()` and the handles agree on how many PCBs hold a port;
//! - no two connected PCBs share a 4-tuple (except Linux UDP, where
//!   `SO_REUSEADDR` sockets may connect the same one);
//! - no two unconnected PCBs of one family hold the same address and port
//!   unless both set a reuse option (options change only before bind, and
//!   PCBs that went back to their wildcard through disconnect(), or through
//!   a FreeBSD UDP reconnect, are left out, since the kernels move them
//!   without a conflict check);
//! - every socket handed to the table is dropped exactly once, after its PCB
//!   is closed.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arbitrary::Arbitrary;
use pcbhash::{Family, Pcb, PcbTable, Policy, Protocol, State};

use crate::addrs::{device, ephemeral_range, local_addr, port_range, remote_addr};
use crate::ops::{Op, Opt, PolicySel, ProtoSel, Scenario};

/// A socket that counts its drops.
#[derive(Debug)]
pub struct Tracked {
    id: usize,
    drops: Arc<Vec<AtomicUsize>>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.drops[self.id].fetch_add(1, Ordering::SeqCst);
    }
}

const MAX_SOCKETS: usize = 64;

struct Ctx {
    table: Arc<PcbTable<Tracked>>,
    drops: Arc<Vec<AtomicUsize>>,
    next: Arc<AtomicUsize>,
}

impl Ctx {
    fn socket(&self) -> Option<Tracked> {
        let id = self.next.fetch_add(1, Ordering::SeqCst);
        (id < MAX_SOCKETS).then(|| Tracked {
            id,
            drops: self.drops.clone(),
        })
    }
}

/// A worker's handles, and the sockets of the PCBs it disconnected.
type Outcome = (Vec<Pcb<Tracked>>, HashSet<usize>);

fn worker(ctx: &Ctx, ops: &[Op]) -> Outcome {
    let mut handles: Vec<Pcb<Tracked>> = Vec::new();
    let mut moved = HashSet::new();
    let pick = |n: usize, k: u8| (n > 0).then(|| usize::from(k) % n);
    for op in ops {
        match *op {
            Op::Attach { v6, user } => {
                if let Some(s) = ctx.socket() {
                    let family = if v6 { Family::Inet6 } else { Family::Inet };
                    handles.push(ctx.table.attach(family, user.cred(), s));
                }
            }
            Op::SetOpt { pcb, opt, on } => {
                let Some(i) = pick(handles.len(), pcb) else {
                    continue;
                };
                let h = &handles[i];
                // Options change only before bind, so the final state can be
                // judged without the history.
                if h.state() == State::Closed {
                    let _ = match opt {
                        Opt::ReuseAddr => h.set_reuse_addr(on),
                        Opt::ReusePort => h.set_reuse_port(on),
                        Opt::ReusePortLb => h.set_reuse_port_lb(on),
                        Opt::V6Only => h.set_v6only(on),
                    };
                }
            }
            Op::Bind { pcb, addr, port } => {
                if let Some(i) = pick(handles.len(), pcb) {
                    let _ = handles[i].bind(local_addr(addr, port));
                }
            }
            Op::Listen { pcb } => {
                if let Some(i) = pick(handles.len(), pcb) {
                    let _ = handles[i].listen();
                }
            }
            Op::Connect { pcb, addr, port } => {
                if let Some(i) = pick(handles.len(), pcb) {
                    // FreeBSD `soconnectat` disconnects a connected UDP PCB
                    // before it connects again, whatever the outcome.
                    let disconnects = ctx.table.policy() == Policy::FreeBsd
                        && ctx.table.protocol() == Protocol::Udp
                        && handles[i].state() == State::Connected;
                    if disconnects {
                        if let Some(socket) = handles[i].socket(&ctx.table.pin()) {
                            moved.insert(socket.id);
                        }
                    }
                    let _ = handles[i].connect(remote_addr(addr, port));
                }
            }
            Op::Accept {
                pcb,
                local,
                remote,
                rport,
            } => {
                let Some(i) = pick(handles.len(), pcb) else {
                    continue;
                };
                let Some(lport) = handles[i].local_addr().map(|a| a.port()) else {
                    continue;
                };
                let Some(s) = ctx.socket() else { continue };
                let mut l = local_addr(local, 0);
                l.set_port(lport);
                if let Ok(child) = handles[i].accept(l, remote_addr(remote, rport), s) {
                    handles.push(child);
                }
            }
            Op::Disconnect { pcb } => {
                if let Some(i) = pick(handles.len(), pcb) {
                    if handles[i].disconnect().is_ok() {
                        if let Some(socket) = handles[i].socket(&ctx.table.pin()) {
                            moved.insert(socket.id);
                        }
                    }
                }
            }
            Op::TimeWait { pcb } => {
                if let Some(i) = pick(handles.len(), pcb) {
                    let _ = handles[i].time_wait();
                }
            }
            Op::Close { pcb } => {
                if let Some(i) = pick(handles.len(), pcb) {
                    handles.swap_remove(i).close();
                }
            }
            Op::Lookup {
                local,
                lport,
                remote,
                rport,
            } => {
                let guard = ctx.table.pin();
                if let Some(p) =
                    ctx.table
                        .lookup(local_addr(local, lport), remote_addr(remote, rport), &guard)
                {
                    // Reading a view must be safe whatever happens to the PCB.
                    let _ = (
                        p.local_addr(),
                        p.peer_addr(),
                        p.state(),
                        p.socket().map(|s| s.id),
                    );
                }
            }
            Op::LookupLocal {
                addr,
                port,
                wildcard,
            } => {
                let guard = ctx.table.pin();
                let _ = ctx
                    .table
                    .lookup_local(local_addr(addr, port), wildcard, &guard);
            }
            Op::BindDevice { pcb, device: d } => {
                let Some(i) = pick(handles.len(), pcb) else {
                    continue;
                };
                // Like the options: only before bind, so the final state
                // can be judged without the history.
                if handles[i].state() == State::Closed {
                    let _ = handles[i].bind_device(device(d));
                }
            }
            Op::LookupOn {
                local,
                lport,
                remote,
                rport,
                device: d,
            } => {
                let guard = ctx.table.pin();
                let (l, r) = (local_addr(local, lport), remote_addr(remote, rport));
                let found = match device(d) {
                    Some(dev) => ctx.table.lookup_on(dev, l, r, &guard),
                    None => ctx.table.lookup(l, r, &guard),
                };
                if let Some(p) = found {
                    let _ = (p.local_addr(), p.device(), p.socket().map(|s| s.id));
                }
            }
            Op::SetPortRange {
                pcb,
                first,
                last,
                unset,
            } => {
                if let Some(i) = pick(handles.len(), pcb) {
                    let _ = handles[i].set_local_port_range(port_range(first, last, unset));
                }
            }
            // A PCB that binds no port, and TIME_WAIT reuse (off in these
            // tables), are the interpreter's to check.
            Op::SetBindNoPort { .. } | Op::AllowTwReuse { .. } => {}
            Op::Deliver {
                local,
                lport,
                remote,
                rport,
                device: d,
            } => {
                let guard = ctx.table.pin();
                let (l, r) = (local_addr(local, lport), remote_addr(remote, rport));
                // Walking the receivers must be safe whatever the other
                // thread does to them.
                for p in ctx.table.deliver(device(d), l, r, &guard) {
                    let _ = (p.local_addr(), p.peer_addr(), p.socket().map(|s| s.id));
                }
            }
        }
    }
    (handles, moved)
}

/// Decodes `data` as a [`Scenario`], runs it over two threads and checks the
/// invariants. Inputs that do not decode run nothing.
pub fn run_bytes(data: &[u8]) -> Result<(), String> {
    let Some(s) = Scenario::decode(data, 192) else {
        return Ok(());
    };
    run(&s)
}

/// Runs a scenario over two threads; see the module docs.
pub fn run(s: &Scenario) -> Result<(), String> {
    let drops: Arc<Vec<AtomicUsize>> =
        Arc::new((0..MAX_SOCKETS).map(|_| AtomicUsize::new(0)).collect());
    let range = ephemeral_range();
    let table = PcbTable::<Tracked>::builder()
        .policy(match s.policy {
            PolicySel::FreeBsd => Policy::FreeBsd,
            PolicySel::Linux => Policy::Linux,
        })
        .protocol(match s.protocol {
            ProtoSel::Tcp => Protocol::Tcp,
            ProtoSel::Udp => Protocol::Udp,
        })
        .bind_all_fibs(!s.scoped_fibs)
        .ephemeral_ports(range)
        .capacity(2)
        .build();
    let ctx = Ctx {
        table: Arc::new(table),
        drops: drops.clone(),
        next: Arc::new(AtomicUsize::new(0)),
    };
    let ops: Vec<Op> = s.ops.iter().take(192).copied().collect();
    let even: Vec<Op> = ops.iter().step_by(2).copied().collect();
    let odd: Vec<Op> = ops.iter().skip(1).step_by(2).copied().collect();
    let (a, b) = std::thread::scope(|scope| {
        let t = scope.spawn(|| worker(&ctx, &odd));
        let a = worker(&ctx, &even);
        (a, t.join().expect("the second worker panicked"))
    });
    let moved: HashSet<usize> = a.1.into_iter().chain(b.1).collect();
    let handles: Vec<Pcb<Tracked>> = a.0.into_iter().chain(b.0).collect();
    check(&ctx.table, &handles, &moved, s)?;
    drop(handles);
    let sockets = ctx.next.load(Ordering::SeqCst).min(MAX_SOCKETS);
    drop(ctx);
    // Detached sockets are released through the epoch: drive reclamation,
    // boundedly, until every socket has been dropped.
    for _ in 0..10_000 {
        if drops
            .iter()
            .take(sockets)
            .all(|d| d.load(Ordering::SeqCst) >= 1)
        {
            break;
        }
        crossbeam_flush();
        std::thread::yield_now();
    }
    for (id, d) in drops.iter().enumerate().take(sockets) {
        let n = d.load(Ordering::SeqCst);
        if n != 1 {
            return Err(format!("socket {id} was dropped {n} times"));
        }
    }
    Ok(())
}

fn crossbeam_flush() {
    let t: PcbTable<()> = PcbTable::new();
    t.flush();
}

fn check(
    table: &PcbTable<Tracked>,
    handles: &[Pcb<Tracked>],
    moved: &HashSet<usize>,
    s: &Scenario,
) -> Result<(), String> {
    let in_table = handles.iter().filter(|h| h.state().is_in_table()).count();
    let guard = table.pin();
    let walked = table.iter(&guard).count();
    if table.len() != in_table || walked != in_table {
        return Err(format!(
            "len() {} / iter() {walked} / handles in the table {in_table}",
            table.len()
        ));
    }
    let canon = |a: SocketAddr| (a.ip().to_canonical(), a.port());
    let linux = s.policy == PolicySel::Linux;
    let linux_udp = linux && s.protocol == ProtoSel::Udp;
    // Linux: PCBs bound to two different devices never contend for a port;
    // FreeBSD with `bind_all_fibs` off: PCBs of two FIBs (FIB 0 shows as
    // no device).
    let apart = |x: &Pcb<Tracked>, y: &Pcb<Tracked>| {
        let two = x.device() != y.device();
        (linux && x.device().is_some() && y.device().is_some() && two) || (s.scoped_fibs && two)
    };
    let connected: Vec<&Pcb<Tracked>> = handles
        .iter()
        .filter(|h| h.state().is_connected())
        .collect();
    for (i, x) in connected.iter().enumerate() {
        let (Some(l), Some(p)) = (x.local_addr(), x.peer_addr()) else {
            return Err(format!("a connected PCB without addresses: {x:?}"));
        };
        let twin = connected[i + 1..].iter().find(|y| {
            y.local_addr().map(canon) == Some(canon(l))
                && y.peer_addr().map(canon) == Some(canon(p))
        });
        if let Some(y) = twin {
            // A connection bound to a device leaves the 4-tuple free for
            // one bound to none (`inet_match` on the newcomer's device).
            let on_two_devices = linux && x.device() != y.device();
            if !linux_udp && !on_two_devices {
                return Err(format!("two connected PCBs share {l} <-> {p}"));
            }
        }
    }
    let bound: Vec<&Pcb<Tracked>> = handles
        .iter()
        .filter(|h| matches!(h.state(), State::Bound | State::Listen))
        // disconnect() moves a PCB back to its wildcard without a conflict
        // check, in both kernels: those PCBs are not judged here.
        .filter(|h| h.socket(&guard).is_none_or(|s| !moved.contains(&s.id)))
        .collect();
    for (i, x) in bound.iter().enumerate() {
        for y in &bound[i + 1..] {
            let same =
                x.family() == y.family() && x.local_addr().map(canon) == y.local_addr().map(canon);
            let shares = |p: &Pcb<Tracked>| {
                let f = p.flags();
                f.reuse_addr() || f.reuse_port() || f.reuse_port_lb()
            };
            if same && !(shares(x) && shares(y)) && !apart(x, y) {
                return Err(format!("conflicting binds both succeeded: {x:?} and {y:?}"));
            }
        }
    }
    Ok(())
}

/// Lets the two threads' inputs be built by hand in tests.
pub fn scenario(policy: PolicySel, protocol: ProtoSel, ops: Vec<Op>) -> Scenario {
    Scenario {
        policy,
        scoped_fibs: false,
        tw_reuse: Default::default(),
        protocol,
        ops,
    }
}

#[allow(dead_code)]
fn _assert_arbitrary() {
    fn is<T: for<'a> Arbitrary<'a>>() {}
    is::<Scenario>();
}
