//! The scenario of the 2011 freebsd-net report this crate comes from: a bind
//! checks for conflicts against PCBs whose sockets are being detached (TIME_WAIT)
//! and closed by other threads. The check must never need those sockets: it
//! reads only cached bits, gives the right errno every time, and nothing panics.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{addr, freebsd, Sock};
use pcbhash::{Cred, Error, Family, Protocol, State};

#[test]
fn bind_conflict_checks_race_time_wait_and_close() {
    let table = Arc::new(freebsd(Protocol::Tcp));
    let service = addr("127.0.0.1:7777");
    // The listener has SO_REUSEPORT; a binder with SO_REUSEPORT may share it,
    // one without may not, whatever the TIME_WAIT churn beside them.
    let listener = table.attach(Family::Inet, Cred::ROOT, Sock(0));
    listener.set_reuse_port(true).unwrap();
    listener.bind(service).unwrap();
    listener.listen().unwrap();
    let listener = Arc::new(listener);

    let stop = Arc::new(AtomicBool::new(false));
    let checks = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_millis(1500);
    thread::scope(|scope| {
        // Churn: passive opens that enter TIME_WAIT (socket detached) and close.
        for worker in 0..2u32 {
            let (listener, stop, table) = (listener.clone(), stop.clone(), table.clone());
            scope.spawn(move || {
                let mut parked = std::collections::VecDeque::new();
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    n = n.wrapping_add(1);
                    let peer = addr(&format!(
                        "127.1.{}.{}:{}",
                        worker,
                        n % 250 + 1,
                        1024 + n % 60000
                    ));
                    if let Ok(conn) = listener.accept(service, peer, Sock(n)) {
                        conn.time_wait().unwrap();
                        assert!(conn.socket(&table.pin()).is_none());
                        parked.push_back(conn);
                    }
                    if parked.len() > 64 {
                        parked.pop_front();
                    }
                }
            });
        }
        // Readers: lookups that land on TIME_WAIT PCBs see no socket.
        {
            let (table, stop) = (table.clone(), stop.clone());
            scope.spawn(move || {
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    n = n.wrapping_add(1);
                    let guard = table.pin();
                    let peer = addr(&format!(
                        "127.1.{}.{}:{}",
                        n % 2,
                        n % 250 + 1,
                        1024 + n % 60000
                    ));
                    if let Some(found) = table.lookup(service, peer, &guard) {
                        if found.state() == State::TimeWait {
                            assert!(found.socket().is_none());
                        }
                    }
                }
            });
        }
        // Binders: the conflict check, over and over.
        let (table, checks) = (table.clone(), checks.clone());
        scope.spawn(move || {
            while Instant::now() < deadline {
                let plain = table.attach(Family::Inet, Cred::ROOT, Sock(1));
                assert_eq!(plain.bind(service), Err(Error::AddrInUse));
                let addr_only = table.attach(Family::Inet, Cred::ROOT, Sock(2));
                addr_only.set_reuse_addr(true).unwrap();
                assert_eq!(addr_only.bind(service), Err(Error::AddrInUse));
                let sharing = table.attach(Family::Inet, Cred::ROOT, Sock(3));
                sharing.set_reuse_port(true).unwrap();
                assert_eq!(sharing.bind(service), Ok(service));
                drop(sharing);
                checks.fetch_add(3, Ordering::Relaxed);
            }
            stop.store(true, Ordering::Relaxed);
        });
    });
    assert!(checks.load(Ordering::Relaxed) > 0);
}

#[test]
fn only_time_wait_pcbs_left_still_block_a_plain_bind() {
    let table = freebsd(Protocol::Tcp);
    let service = addr("127.0.0.1:7778");
    let listener = table.attach(Family::Inet, Cred::ROOT, Sock(0));
    listener.bind(service).unwrap();
    listener.listen().unwrap();
    let conn = listener
        .accept(service, addr("127.0.0.9:5000"), Sock(1))
        .unwrap();
    conn.time_wait().unwrap();
    listener.close();
    assert!(conn.socket(&table.pin()).is_none());

    // FreeBSD `in_pcbbind_avail`, no options: any overlapping PCB blocks,
    // TIME_WAIT included; with SO_REUSEADDR, connected PCBs do not.
    let plain = table.attach(Family::Inet, Cred::ROOT, Sock(2));
    assert_eq!(plain.bind(service), Err(Error::AddrInUse));
    let unprivileged = table.attach(Family::Inet, Cred::user(1001), Sock(3));
    unprivileged.set_reuse_addr(true).unwrap();
    assert_eq!(
        unprivileged.bind(service),
        Ok(service),
        "a TIME_WAIT TCP PCB has its own 4-tuple"
    );
    let reuse = table.attach(Family::Inet, Cred::ROOT, Sock(4));
    reuse.set_reuse_addr(true).unwrap();
    assert_eq!(
        reuse.bind(service),
        Err(Error::AddrInUse),
        "but the new unconnected one blocks"
    );
}
