//! Writers racing writers: two binds of one address, two connects of one
//! 4-tuple, and a bind checking against a PCB that enters TIME_WAIT and
//! closes.

use std::sync::atomic::{AtomicUsize as StdAtomicUsize, Ordering as StdOrdering};
use std::sync::Arc;

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;
use pcbhash::{Error, Family, Protocol, State};

use crate::fixtures::{addr, builder, cred, libc_eaddrinuse, Sock};

/// Two binds of `127.0.0.1:1000`, neither with a reuse option: exactly one
/// wins; the other fails with `AddrInUse` (`EADDRINUSE`) and changes nothing.
pub fn bind_vs_bind(broken: Option<&'static str>) {
    let drops = Arc::new(StdAtomicUsize::new(0));
    let table = Arc::new(builder(Protocol::Tcp, broken).build::<Sock>());
    let local = addr("127.0.0.1:1000");
    let a = table.attach(Family::Inet, cred(1), Sock::new(&drops));
    let b = table.attach(Family::Inet, cred(2), Sock::new(&drops));

    let other = thread::spawn(move || {
        let result = b.bind(local);
        (result, b)
    });
    let mine = a.bind(local);
    let (theirs, b) = other.join().unwrap();
    let wins = [mine, theirs].iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "both or neither bind won: {mine:?} {theirs:?}");
    let loser = if mine.is_ok() { theirs } else { mine };
    assert_eq!(loser, Err(Error::AddrInUse));
    assert_eq!(loser.unwrap_err().errno(), libc_eaddrinuse());
    assert_eq!(table.len(), 1);
    let guard = table.pin();
    let holder = table
        .lookup_local(local, false, &guard)
        .expect("the winner");
    let winner = if mine.is_ok() { &a } else { &b };
    assert!(holder.is(winner));
    drop(guard);
    drop((a, b));
    assert_eq!(table.len(), 0);
}

/// Two PCBs sharing `127.0.0.1:1000` (SO_REUSEPORT) connect to the same peer:
/// exactly one gets the 4-tuple; the other fails (`EADDRINUSE`, FreeBSD) and
/// stays bound.
pub fn connect_vs_connect(broken: Option<&'static str>) {
    let drops = Arc::new(StdAtomicUsize::new(0));
    let table = Arc::new(builder(Protocol::Tcp, broken).build::<Sock>());
    let (local, remote) = (addr("127.0.0.1:1000"), addr("127.0.0.2:2000"));
    let a = table.attach(Family::Inet, cred(1), Sock::new(&drops));
    let b = table.attach(Family::Inet, cred(2), Sock::new(&drops));
    for pcb in [&a, &b] {
        pcb.set_reuse_port(true).unwrap();
        pcb.bind(local).unwrap();
    }

    let other = thread::spawn(move || {
        let result = b.connect(remote);
        (result, b)
    });
    let mine = a.connect(remote);
    let (theirs, b) = other.join().unwrap();
    let wins = [mine, theirs].iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "both or neither connect won: {mine:?} {theirs:?}");
    let (winner, loser, lost) = if mine.is_ok() {
        (&a, &b, theirs)
    } else {
        (&b, &a, mine)
    };
    assert_eq!(lost, Err(Error::AddrInUse));
    assert_eq!(loser.state(), State::Bound);
    assert_eq!(winner.state(), State::Connected);
    let guard = table.pin();
    assert!(table.lookup(local, remote, &guard).unwrap().is(winner));
    drop(guard);
    assert_eq!(table.len(), 2);
}

/// The seed's race (FreeBSD 9.0, `in_pcbbind_setup`): a bind checks its port
/// against a connected PCB that concurrently enters TIME_WAIT (its socket is
/// detached) and is then closed.
///
/// Neither PCB sets a reuse option, so the bind fails with `EADDRINUSE` while
/// the other PCB holds the address (connected or in TIME_WAIT) and succeeds
/// once its close returned. The check reads only cached fields: the socket is
/// dropped exactly once, by the TIME_WAIT, and the model's socket type would
/// report any other drop.
pub fn bind_vs_time_wait(broken: Option<&'static str>) {
    let drops = Arc::new(StdAtomicUsize::new(0));
    let table = Arc::new(builder(Protocol::Tcp, broken).build::<Sock>());
    let (local, remote) = (addr("127.0.0.1:1000"), addr("127.0.0.2:2000"));
    let old = table.attach(Family::Inet, cred(1), Sock::new(&drops));
    old.bind(local).unwrap();
    old.connect(remote).unwrap();
    let new = table.attach(Family::Inet, cred(2), Sock::new(&drops));
    let closed = Arc::new(AtomicBool::new(false));

    let ender = {
        let (closed, drops, table) = (closed.clone(), drops.clone(), table.clone());
        thread::spawn(move || {
            old.time_wait().unwrap();
            assert!(old.socket(&table.pin()).is_none());
            // The socket is released through the epoch, once no
            // guard can still see it; never twice.
            assert!(
                drops.load(StdOrdering::SeqCst) <= 1,
                "the socket is dropped at most once"
            );
            old.close();
            closed.store(true, Ordering::SeqCst);
        })
    };
    let closed_before = closed.load(Ordering::SeqCst);
    let result = new.bind(local);
    match result {
        Ok(bound) => assert_eq!(bound, local),
        Err(error) => {
            assert!(!closed_before, "bind failed after the holder was closed");
            assert_eq!(error, Error::AddrInUse);
            assert_eq!(error.errno(), libc_eaddrinuse());
        }
    }
    ender.join().unwrap();
    assert!(
        drops.load(StdOrdering::SeqCst) <= 1,
        "socket dropped at most once"
    );
    assert!(new.socket(&table.pin()).is_some());
    assert_eq!(table.len(), usize::from(result.is_ok()));
}
