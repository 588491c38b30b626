//! Lookups racing a resize of the exact index, at once and incremental.

use std::sync::atomic::AtomicUsize as StdAtomicUsize;
use std::sync::Arc;

use loom::thread;
use pcbhash::{Family, Protocol};

use crate::fixtures::{addr, builder, cred, Sock};

/// The exact index has one bucket; one connection is in it. Thread A connects
/// a second PCB (on a port of another lock stripe), which makes the index
/// grow to two buckets and migrate; thread B looks the first connection up.
/// It must be found in every interleaving, and the model asserts that the
/// resize did happen.
pub fn lookup_during_resize(broken: Option<&'static str>) {
    let drops = Arc::new(StdAtomicUsize::new(0));
    let table = Arc::new(
        builder(Protocol::Udp, broken)
            .exact_buckets(1)
            .build::<Sock>(),
    );
    let remote = addr("127.0.0.2:2000");
    let (first_local, second_local) = (addr("127.0.0.1:1000"), addr("127.0.0.1:1001"));
    let first = table.attach(Family::Inet, cred(1), Sock::new(&drops));
    first.bind(first_local).unwrap();
    first.connect(remote).unwrap();
    let second = table.attach(Family::Inet, cred(2), Sock::new(&drops));
    second.bind(second_local).unwrap();
    assert_eq!(table.stats().exact.buckets, 1);

    let grower = thread::spawn(move || {
        second.connect(remote).unwrap();
        second
    });
    let guard = table.pin();
    let found = table
        .lookup(first_local, remote, &guard)
        .expect("false negative: a connection was not found during a resize");
    assert_eq!(found.cred().uid, 1);
    drop(guard);
    let _second = grower.join().unwrap();
    let stats = table.stats();
    assert_eq!(stats.resizes, 1, "the model must resize");
    assert_eq!(stats.exact.buckets, 2);
    drop(first);
}

/// Incremental resize: the exact index has two buckets and two connections.
/// Thread A connects a third PCB, which installs a four-bucket array and
/// migrates one bucket (one per write under loom), then closes it, which
/// migrates the other bucket and completes the resize. Thread B looks both
/// old connections up meanwhile: each is found in every interleaving, wherever
/// its bucket is in the migration.
pub fn lookup_during_incremental_resize(broken: Option<&'static str>) {
    let drops = Arc::new(StdAtomicUsize::new(0));
    let table = Arc::new(
        builder(Protocol::Udp, broken)
            .exact_buckets(2)
            .build::<Sock>(),
    );
    let remote = addr("127.0.0.2:2000");
    let locals = [
        addr("127.0.0.1:1000"),
        addr("127.0.0.1:1001"),
        addr("127.0.0.1:1002"),
    ];
    let pcbs: Vec<_> = (0..3)
        .map(|i| {
            let pcb = table.attach(Family::Inet, cred(i + 1), Sock::new(&drops));
            pcb.bind(locals[i as usize]).unwrap();
            pcb
        })
        .collect();
    let mut pcbs = pcbs.into_iter();
    let (first, second, third) = (
        pcbs.next().unwrap(),
        pcbs.next().unwrap(),
        pcbs.next().unwrap(),
    );
    first.connect(remote).unwrap();
    second.connect(remote).unwrap();
    assert_eq!(table.stats().exact.buckets, 2);

    let churn = thread::spawn(move || {
        third.connect(remote).unwrap();
        third.close();
    });
    let guard = table.pin();
    for (uid, local) in [(1, locals[0]), (2, locals[1])] {
        let found = table
            .lookup(local, remote, &guard)
            .expect("false negative: a connection was not found during a resize");
        assert_eq!(found.cred().uid, uid);
    }
    drop(guard);
    churn.join().unwrap();
    let stats = table.stats();
    assert_eq!(stats.resizes, 1, "the model must complete a resize");
    assert_eq!(stats.exact.buckets, 4);
    drop((first, second));
}
