//! Lookups racing a PCB that moves between the wildcard and the exact index:
//! connect, connect with a listener behind it, disconnect, and a connect and
//! disconnect both inside one lookup.

use std::sync::atomic::{AtomicUsize as StdAtomicUsize, Ordering as StdOrdering};
use std::sync::Arc;

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;
use pcbhash::{Family, Protocol, State};

use crate::fixtures::{addr, builder, cred, Sock};

/// A UDP PCB bound to `127.0.0.1:1000` connects to a peer while another
/// thread looks that flow up. Before the move the PCB matches in the wildcard
/// index, after it in the exact index: the lookup must find it every time.
pub fn lookup_during_connect(broken: Option<&'static str>) {
    let drops = Arc::new(StdAtomicUsize::new(0));
    let table = Arc::new(builder(Protocol::Udp, broken).build::<Sock>());
    let (local, remote) = (addr("127.0.0.1:1000"), addr("127.0.0.2:2000"));
    let pcb = table.attach(Family::Inet, cred(1), Sock::new(&drops));
    pcb.bind(local).unwrap();

    let mover = thread::spawn(move || {
        pcb.connect(remote).unwrap();
        pcb
    });
    let guard = table.pin();
    let found = table.lookup(local, remote, &guard);
    let found = found.expect("false negative: the PCB was not found while it moved");
    assert_eq!(found.cred().uid, 1);
    drop(guard);
    let pcb = mover.join().unwrap();
    assert_eq!(pcb.state(), State::Connected);
}

/// TCP: a listener on `0.0.0.0:1000` and a PCB bound to `127.0.0.1:1000`
/// (both SO_REUSEPORT); the PCB connects while a lookup runs for its flow.
///
/// Before the move the bound PCB outranks the listener in the wildcard stage
/// (a specific address beats a wildcard), after it the connection matches
/// exactly: so the lookup must find the PCB every time, never fall back to
/// the listener, and find it connected once `connect()` returned before the
/// lookup started.
pub fn lookup_during_connect_with_listener(broken: Option<&'static str>) {
    let drops = Arc::new(StdAtomicUsize::new(0));
    let table = Arc::new(builder(Protocol::Tcp, broken).build::<Sock>());
    let (local, remote) = (addr("127.0.0.1:1000"), addr("127.0.0.2:2000"));
    let listener = table.attach(Family::Inet, cred(1), Sock::new(&drops));
    listener.set_reuse_port(true).unwrap();
    listener.bind(addr("0.0.0.0:1000")).unwrap();
    listener.listen().unwrap();
    let pcb = table.attach(Family::Inet, cred(2), Sock::new(&drops));
    pcb.set_reuse_port(true).unwrap();
    pcb.bind(local).unwrap();
    let connected = Arc::new(AtomicBool::new(false));

    let mover = {
        let connected = connected.clone();
        thread::spawn(move || {
            pcb.connect(remote).unwrap();
            connected.store(true, Ordering::SeqCst);
            pcb
        })
    };
    let guard = table.pin();
    let connected_before = connected.load(Ordering::SeqCst);
    let found = table
        .lookup(local, remote, &guard)
        .expect("false negative: neither the listener nor the connection was found");
    assert_eq!(
        found.cred().uid,
        2,
        "false negative: the lookup fell back to the listener while the PCB moved"
    );
    if connected_before {
        assert_eq!(found.state(), State::Connected);
    }
    drop(guard);
    let _pcb = mover.join().unwrap();
    drop(listener);
}

/// UDP `connect(AF_UNSPEC)`: a connected PCB on `127.0.0.1:1000` goes back to
/// the wildcard index (FreeBSD: bound to `0.0.0.0:1000`) while a lookup runs
/// for its old flow. It matches in both places, so the lookup must find it.
pub fn lookup_during_disconnect(broken: Option<&'static str>) {
    let drops = Arc::new(StdAtomicUsize::new(0));
    let table = Arc::new(builder(Protocol::Udp, broken).build::<Sock>());
    let (local, remote) = (addr("127.0.0.1:1000"), addr("127.0.0.2:2000"));
    let pcb = table.attach(Family::Inet, cred(1), Sock::new(&drops));
    pcb.bind(local).unwrap();
    pcb.connect(remote).unwrap();

    let mover = thread::spawn(move || {
        pcb.disconnect().unwrap();
        pcb
    });
    let guard = table.pin();
    let found = table
        .lookup(local, remote, &guard)
        .expect("false negative: the PCB was not found while it disconnected");
    assert_eq!(found.cred().uid, 1);
    drop(guard);
    let pcb = mover.join().unwrap();
    assert_eq!(pcb.state(), State::Bound);
    assert_eq!(pcb.local_addr(), Some(addr("0.0.0.0:1000")));
}

/// UDP: a PCB bound to `127.0.0.1:1000` connects to the looked-up flow and
/// disconnects again while one lookup runs. It matches the flow throughout
/// (bound, connected, then bound to `0.0.0.0:1000`), so the lookup must find
/// it, even when it reads the exact index before the connect, the wildcard
/// list after it, and the exact index after the disconnect: two moves, which
/// the three reads alone do not cover.
pub fn lookup_across_two_moves(broken: Option<&'static str>) {
    let drops = Arc::new(StdAtomicUsize::new(0));
    let connected = Arc::new(AtomicBool::new(false));
    let disconnected = Arc::new(AtomicBool::new(false));
    // The lookup's thread waits, once each, after its first probe for the
    // connect and after its walk for the disconnect: the two moves then
    // fall between its reads.
    let hook = {
        let (connected, disconnected) = (connected.clone(), disconnected.clone());
        let waited = [
            std::sync::atomic::AtomicBool::new(false),
            std::sync::atomic::AtomicBool::new(false),
        ];
        move |at: &'static str| {
            let (wait, until) = match at {
                "lookup: first probe missed" => (&waited[0], &connected),
                "lookup: walk done" => (&waited[1], &disconnected),
                _ => return,
            };
            if !wait.swap(true, StdOrdering::SeqCst) {
                while !until.load(Ordering::SeqCst) {
                    thread::yield_now();
                }
            }
        }
    };
    let table = Arc::new(
        builder(Protocol::Udp, broken)
            .on_move_step(hook)
            .build::<Sock>(),
    );
    let (local, remote) = (addr("127.0.0.1:1000"), addr("127.0.0.2:2000"));
    let pcb = table.attach(Family::Inet, cred(1), Sock::new(&drops));
    pcb.bind(local).unwrap();

    let mover = thread::spawn(move || {
        pcb.connect(remote).unwrap();
        connected.store(true, Ordering::SeqCst);
        pcb.disconnect().unwrap();
        disconnected.store(true, Ordering::SeqCst);
        pcb
    });
    let guard = table.pin();
    let found = table
        .lookup(local, remote, &guard)
        .expect("false negative: the PCB was not found across two moves");
    assert_eq!(found.cred().uid, 1);
    drop(guard);
    let pcb = mover.join().unwrap();
    assert_eq!(pcb.state(), State::Bound);
}
