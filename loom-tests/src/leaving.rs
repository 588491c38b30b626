//! Lookups racing a PCB that leaves: a close, a load-balance group member
//! that goes, and an accept that replaces a TIME_WAIT PCB.

use std::sync::atomic::{AtomicUsize as StdAtomicUsize, Ordering as StdOrdering};
use std::sync::Arc;

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;
use pcbhash::{Family, Protocol, State};

use crate::fixtures::{addr, builder, cred, Sock};

/// Lookup vs close of a connected PCB.
///
/// Thread A closes the PCB, then raises `closed`. Thread B looks its tuple up
/// and, if it finds it, reads its fields and its socket while a concurrent
/// close retires it. Asserts: a lookup that started after `closed` was raised
/// misses; `socket()` read after `closed` was raised is `None`; every field
/// read under the guard is the PCB's own (a freed PCB would not be); the
/// socket is dropped exactly once.
pub fn lookup_vs_close(broken: Option<&'static str>) {
    let drops = Arc::new(StdAtomicUsize::new(0));
    let table = Arc::new(builder(Protocol::Udp, broken).build::<Sock>());
    let (local, remote) = (addr("127.0.0.1:1000"), addr("127.0.0.2:2000"));
    let pcb = table.attach(Family::Inet, cred(1), Sock::new(&drops));
    pcb.bind(local).unwrap();
    pcb.connect(remote).unwrap();
    let closed = Arc::new(AtomicBool::new(false));

    let closer = {
        let (table, closed) = (table.clone(), closed.clone());
        thread::spawn(move || {
            pcb.close();
            closed.store(true, Ordering::SeqCst);
            table.flush();
        })
    };
    let guard = table.pin();
    let closed_before = closed.load(Ordering::SeqCst);
    let found = table.lookup(local, remote, &guard);
    if closed_before {
        assert!(
            found.is_none(),
            "a lookup after close returned found the PCB"
        );
    }
    if let Some(found) = found {
        assert_eq!(found.cred().uid, 1);
        assert_eq!(found.local_addr(), local);
        assert!(matches!(found.state(), State::Connected | State::Dropped));
        let closed_now = closed.load(Ordering::SeqCst);
        let socket = found.socket();
        if closed_now {
            assert!(socket.is_none(), "socket() after close returned");
        }
        table.flush();
        // A socket read before the close is still there: it is dropped
        // through the epoch, after this guard.
        if let Some(socket) = socket {
            assert!(
                socket.drops.load(StdOrdering::SeqCst) == 0,
                "dropped under a guard"
            );
        }
        // Still readable: the guard keeps the PCB alive through the close.
        assert_eq!(found.peer_addr(), Some(remote));
    }
    drop(guard);
    closer.join().unwrap();
    assert!(table.lookup(local, remote, &table.pin()).is_none());
    assert_eq!(table.len(), 0);
    // The socket's release waits in the epoch; loom does not promise when a
    // finished thread's deferred work runs, so this model checks "never twice"
    // (the stress test and the `concurrent` fuzz target check "exactly once").
    assert!(
        drops.load(StdOrdering::SeqCst) <= 1,
        "socket dropped at most once"
    );
}

/// Passive open over a TIME_WAIT PCB: a listener accepts a new connection on
/// the 4-tuple that an older, TIME_WAIT connection still holds, replacing it,
/// while a lookup runs for that tuple. The lookup finds the old or the new
/// connection, never the listener (the tuple is held throughout), and the new
/// one once `accept()` returned before it started. The old PCB never has a
/// socket again.
pub fn accept_over_time_wait_vs_lookup(broken: Option<&'static str>) {
    let drops = Arc::new(StdAtomicUsize::new(0));
    let table = Arc::new(builder(Protocol::Tcp, broken).build::<Sock>());
    let (local, remote) = (addr("127.0.0.1:1000"), addr("127.0.0.2:2000"));
    let listener = table.attach(Family::Inet, cred(1), Sock::new(&drops));
    listener.bind(addr("0.0.0.0:1000")).unwrap();
    listener.listen().unwrap();
    let old = listener.accept(local, remote, Sock::new(&drops)).unwrap();
    old.time_wait().unwrap();
    let accepted = Arc::new(AtomicBool::new(false));

    let acceptor = {
        let (accepted, drops) = (accepted.clone(), drops.clone());
        thread::spawn(move || {
            let new = listener.accept(local, remote, Sock::new(&drops)).unwrap();
            accepted.store(true, Ordering::SeqCst);
            (listener, new)
        })
    };
    let guard = table.pin();
    let accepted_before = accepted.load(Ordering::SeqCst);
    let found = table
        .lookup(local, remote, &guard)
        .expect("false negative: nothing found for a held 4-tuple");
    match found.state() {
        State::Connected => assert!(found.socket().is_some()),
        State::TimeWait | State::Dropped => {
            assert!(
                !accepted_before,
                "the replaced PCB was found after accept() returned"
            );
            assert!(found.socket().is_none(), "a TIME_WAIT PCB has no socket");
        }
        other => panic!("the lookup found a {other:?} PCB instead of the connection"),
    }
    drop(guard);
    let (_listener, new) = acceptor.join().unwrap();
    assert_eq!(old.state(), State::Dropped);
    let guard = table.pin();
    assert!(table.lookup(local, remote, &guard).unwrap().is(&new));
}

/// FreeBSD SO_REUSEPORT_LB: listener 1 founded the group on `0.0.0.0:1000`;
/// thread A makes listener 2 join (listen) and then closes listener 1, while
/// thread B looks a SYN up. The group always has a member, so the lookup
/// always finds a listener, and never listener 1 if its close returned before
/// the lookup started.
pub fn lb_group_vs_lookup(broken: Option<&'static str>) {
    let drops = Arc::new(StdAtomicUsize::new(0));
    let table = Arc::new(builder(Protocol::Tcp, broken).build::<Sock>());
    let any = addr("0.0.0.0:1000");
    let first = table.attach(Family::Inet, cred(1), Sock::new(&drops));
    let second = table.attach(Family::Inet, cred(2), Sock::new(&drops));
    for pcb in [&first, &second] {
        pcb.set_reuse_port_lb(true).unwrap();
        pcb.bind(any).unwrap();
    }
    first.listen().unwrap();
    let closed = Arc::new(AtomicBool::new(false));

    let churn = {
        let closed = closed.clone();
        thread::spawn(move || {
            second.listen().unwrap();
            first.close();
            closed.store(true, Ordering::SeqCst);
            second
        })
    };
    let guard = table.pin();
    let closed_before = closed.load(Ordering::SeqCst);
    let found = table
        .lookup(addr("127.0.0.1:1000"), addr("127.0.0.2:2000"), &guard)
        .expect("false negative: no listener found while the group changed");
    let uid = found.cred().uid;
    assert!(uid == 1 || uid == 2);
    if closed_before {
        assert_eq!(uid, 2, "the closed listener was found");
    }
    if uid == 2 {
        assert_eq!(found.state(), State::Listen);
    }
    drop(guard);
    let second = churn.join().unwrap();
    let guard = table.pin();
    let after = table.lookup(addr("127.0.0.1:1000"), addr("127.0.0.2:2000"), &guard);
    assert!(after.unwrap().is(&second));
    assert_eq!(table.stats().group_members, 1);
}
