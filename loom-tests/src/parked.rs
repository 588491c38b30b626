//! Lookups while a writer is parked at one named step of a move (connect,
//! disconnect, a connect to any port, a reconnect): the lookup returns, with
//! the moving PCB.

use std::sync::atomic::{AtomicUsize as StdAtomicUsize, Ordering as StdOrdering};
use std::sync::Arc;

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;
use pcbhash::{Family, Policy, Protocol, State};

use crate::fixtures::{addr, builder, cred, Sock};

/// A writer parked at one named step of a move: the table's move-step hook
/// blocks there, once armed, on a gate the model's thread holds.
struct Parking {
    gate: Arc<loom::sync::Mutex<()>>,
    parked: Arc<AtomicBool>,
    armed: Arc<std::sync::atomic::AtomicBool>,
}

impl Parking {
    /// The parking for `step`, and the hook to build the table with.
    fn at(step: &'static str) -> (Self, impl Fn(&'static str) + Send + Sync + 'static) {
        let parking = Parking {
            gate: Arc::new(loom::sync::Mutex::new(())),
            parked: Arc::new(AtomicBool::new(false)),
            armed: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        };
        let (gate, parked, armed) = (
            parking.gate.clone(),
            parking.parked.clone(),
            parking.armed.clone(),
        );
        let hook = move |at: &'static str| {
            if at == step && armed.load(StdOrdering::SeqCst) {
                parked.store(true, Ordering::SeqCst);
                drop(gate.lock().unwrap());
            }
        };
        (parking, hook)
    }

    /// Closes the gate and arms the hook: the next time the writer reaches
    /// the step, it parks until the returned guard is dropped.
    fn arm(&self) -> loom::sync::MutexGuard<'_, ()> {
        let hold = self.gate.lock().unwrap();
        self.armed.store(true, StdOrdering::SeqCst);
        hold
    }

    /// Waits until the writer has parked.
    fn wait_parked(&self) {
        while !self.parked.load(Ordering::SeqCst) {
            thread::yield_now();
        }
    }
}

/// The steps in the middle of a move at which [`lookup_while_move_parked`]
/// parks the writer (see `Builder::on_move_step`).
pub const MOVE_STEPS: [&str; 4] = [
    "connect: tuple published",
    "connect: exact linked",
    "disconnect: tuple published",
    "disconnect: wildcard linked",
];

/// Readers never wait: a writer parks in the middle of a move, at `step` (one
/// of [`MOVE_STEPS`]), and stays there until the lookup has returned.
///
/// TCP for the connect steps: a listener on `0.0.0.0:1000` and a PCB bound to
/// `127.0.0.1:1000`, which connects to the looked-up flow; UDP for the
/// disconnect steps: a PCB connected on that flow, which disconnects. The
/// move never finishes while the lookup runs (the writer blocks on a lock
/// the lookup's thread holds), so a lookup that waited for it would never
/// return. The lookup must return, and with the moving PCB, never the
/// listener behind it.
pub fn lookup_while_move_parked(step: &'static str, broken: Option<&'static str>) {
    let connecting = step.starts_with("connect");
    let drops = Arc::new(StdAtomicUsize::new(0));
    let (parking, hook) = Parking::at(step);
    let protocol = if connecting {
        Protocol::Tcp
    } else {
        Protocol::Udp
    };
    let table = Arc::new(builder(protocol, broken).on_move_step(hook).build::<Sock>());
    let (local, remote) = (addr("127.0.0.1:1000"), addr("127.0.0.2:2000"));
    let listener = table.attach(Family::Inet, cred(1), Sock::new(&drops));
    let pcb = table.attach(Family::Inet, cred(2), Sock::new(&drops));
    if connecting {
        listener.set_reuse_port(true).unwrap();
        listener.bind(addr("0.0.0.0:1000")).unwrap();
        listener.listen().unwrap();
        pcb.set_reuse_port(true).unwrap();
        pcb.bind(local).unwrap();
    } else {
        pcb.bind(local).unwrap();
        pcb.connect(remote).unwrap();
    }

    let hold = parking.arm();
    let mover = thread::spawn(move || {
        if connecting {
            pcb.connect(remote).unwrap();
        } else {
            pcb.disconnect().unwrap();
        }
        pcb
    });
    parking.wait_parked();
    let guard = table.pin();
    let found = table.lookup(local, remote, &guard);
    let uid = found.map(|pcb| pcb.cred().uid);
    drop(guard);
    drop(hold);
    let pcb = mover.join().unwrap();
    assert_eq!(
        uid,
        Some(2),
        "false negative: the lookup missed the PCB parked at {step:?}"
    );
    let expected = if connecting {
        State::Connected
    } else {
        State::Bound
    };
    assert_eq!(pcb.state(), expected);
    drop(listener);
}

/// The steps of a connect at which [`lookup_while_any_port_connect_parked`]
/// parks the writer.
pub const ANY_PORT_STEPS: [&str; 2] = ["connect: tuple published", "connect: exact linked"];

/// Readers never wait, for a PCB connected to an address with any port
/// (Linux UDP, `connect()` to port 0), which the exact index files under
/// the remote port 0: a PCB bound to `127.0.0.1:1000` connects to
/// `127.0.0.2:0` and parks at `step` (one of [`ANY_PORT_STEPS`]) until the
/// lookup of a packet from `127.0.0.2:2000` has returned. The lookup must
/// return the moving PCB, never the PCB bound to `0.0.0.0:1000` behind it.
pub fn lookup_while_any_port_connect_parked(step: &'static str) {
    let drops = Arc::new(StdAtomicUsize::new(0));
    let (parking, hook) = Parking::at(step);
    let table = Arc::new(
        builder(Protocol::Udp, None)
            .policy(Policy::Linux)
            .on_move_step(hook)
            .build::<Sock>(),
    );
    let local = addr("127.0.0.1:1000");
    let wildcard = table.attach(Family::Inet, cred(1), Sock::new(&drops));
    let pcb = table.attach(Family::Inet, cred(2), Sock::new(&drops));
    wildcard.set_reuse_addr(true).unwrap();
    wildcard.bind(addr("0.0.0.0:1000")).unwrap();
    pcb.set_reuse_addr(true).unwrap();
    pcb.bind(local).unwrap();

    let hold = parking.arm();
    let mover = thread::spawn(move || {
        pcb.connect(addr("127.0.0.2:0")).unwrap();
        pcb
    });
    parking.wait_parked();
    let guard = table.pin();
    let found = table.lookup(local, addr("127.0.0.2:2000"), &guard);
    let uid = found.map(|pcb| pcb.cred().uid);
    drop(guard);
    drop(hold);
    let pcb = mover.join().unwrap();
    assert_eq!(
        uid,
        Some(2),
        "false negative: the lookup missed the PCB parked at {step:?}"
    );
    assert_eq!(pcb.state(), State::Connected);
    drop(wildcard);
}

/// The steps of a Linux UDP reconnect at which
/// [`lookup_while_reconnect_parked`] parks the writer, each with whether the
/// PCB shows its old peer there (true) or its new one.
pub const RECONNECT_STEPS: [(&str, bool); 4] = [
    ("disconnect: wildcard linked", true),
    ("reconnect: old exact unlinked", true),
    ("connect: tuple published", false),
    ("connect: exact linked", false),
];

/// Readers never wait, and find a PCB that connects again to another peer
/// (Linux UDP): the exact index files a PCB under one tuple at a time, so
/// the PCB leaves it for the wildcard list and comes back under its new
/// tuple. A PCB on `127.0.0.1:1000` connected to `127.0.0.2:2000` connects
/// to `127.0.0.3:3000` and parks at `step` (one of [`RECONNECT_STEPS`])
/// until the lookup of the peer it shows there (`old`: the first) has
/// returned. The lookup must return the moving PCB, never the PCB bound to
/// `0.0.0.0:1000` behind it.
pub fn lookup_while_reconnect_parked(step: &'static str, old: bool, broken: Option<&'static str>) {
    let drops = Arc::new(StdAtomicUsize::new(0));
    let (parking, hook) = Parking::at(step);
    let table = Arc::new(
        builder(Protocol::Udp, broken)
            .policy(Policy::Linux)
            .on_move_step(hook)
            .build::<Sock>(),
    );
    let local = addr("127.0.0.1:1000");
    let (first, second) = (addr("127.0.0.2:2000"), addr("127.0.0.3:3000"));
    let wildcard = table.attach(Family::Inet, cred(1), Sock::new(&drops));
    let pcb = table.attach(Family::Inet, cred(2), Sock::new(&drops));
    wildcard.set_reuse_addr(true).unwrap();
    wildcard.bind(addr("0.0.0.0:1000")).unwrap();
    pcb.set_reuse_addr(true).unwrap();
    pcb.bind(local).unwrap();
    pcb.connect(first).unwrap();

    let hold = parking.arm();
    let mover = thread::spawn(move || {
        pcb.connect(second).unwrap();
        pcb
    });
    parking.wait_parked();
    let guard = table.pin();
    let peer = if old { first } else { second };
    let uid = table.lookup(local, peer, &guard).map(|pcb| pcb.cred().uid);
    drop(guard);
    drop(hold);
    let pcb = mover.join().unwrap();
    assert_eq!(
        uid,
        Some(2),
        "false negative: the lookup missed the PCB parked at {step:?}"
    );
    assert_eq!(pcb.peer_addr(), Some(second));
    let guard = table.pin();
    let after = table.lookup(local, first, &guard);
    assert_eq!(
        after.map(|pcb| pcb.cred().uid),
        Some(1),
        "the old peer's packets go to the wildcard PCB"
    );
    drop(guard);
    drop(wildcard);
}
