//! Lookups against PCBs that the table is moving: the exact index growing and
//! shrinking, and PCBs going from the wildcard to the exact index and back.
//! Every lookup of these tests has a PCB to find, so a miss is a false
//! negative.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use pcbhash::{Cred, Family, Pcb, PcbTable, Protocol};

use crate::ctx::local_ip;
use crate::ledger::{Ledger, Sock};
use crate::{env_number, maybe_broken, serial};

/// Threads that look `keys` up until `deadline`, counting the misses.
struct Readers {
    threads: Vec<thread::JoinHandle<()>>,
    misses: Arc<AtomicUsize>,
    lookups: Arc<AtomicUsize>,
}

impl Readers {
    fn start(
        count: usize,
        table: &Arc<PcbTable<Sock>>,
        keys: Vec<(SocketAddr, SocketAddr)>,
        deadline: Instant,
    ) -> Readers {
        let keys = Arc::new(keys);
        let misses = Arc::new(AtomicUsize::new(0));
        let lookups = Arc::new(AtomicUsize::new(0));
        let threads = (0..count)
            .map(|_| {
                let (table, keys, misses, lookups) =
                    (table.clone(), keys.clone(), misses.clone(), lookups.clone());
                thread::spawn(move || {
                    while Instant::now() < deadline {
                        let guard = table.pin();
                        for (local, remote) in keys.iter() {
                            if table.lookup(*local, *remote, &guard).is_none() {
                                misses.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        lookups.fetch_add(keys.len(), Ordering::Relaxed);
                    }
                })
            })
            .collect();
        Readers {
            threads,
            misses,
            lookups,
        }
    }

    /// Waits for the readers; returns `(lookups, misses)`.
    fn join(self) -> (usize, usize) {
        for reader in self.threads {
            reader.join().expect("a reader panicked");
        }
        (
            self.lookups.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}

/// The run time and thread count of these tests: half a churn test's time,
/// and one writer plus at least one reader.
fn budget() -> (u64, usize) {
    let secs = env_number("PCBHASH_STRESS_SECS", 2).div_ceil(2);
    let threads = env_number("PCBHASH_STRESS_THREADS", 4).max(2) as usize;
    (secs, threads)
}

/// One writer connects hundreds of UDP PCBs, then closes them, over and over,
/// on a table whose exact index starts with one bucket, while the readers
/// look up 64 long-lived connections.
pub fn resize_vs_lookup() {
    let _serial = serial();
    let (secs, threads) = budget();
    let ledger = Ledger::new();
    let builder = PcbTable::<Sock>::builder()
        .protocol(Protocol::Udp)
        .ephemeral_ports(20000..=29999)
        .exact_buckets(1);
    let table = Arc::new(maybe_broken(builder).build::<Sock>());
    let stable: Vec<(Pcb<Sock>, SocketAddr, SocketAddr)> = (0..64u16)
        .map(|i| {
            let pcb = table.attach(Family::Inet, Cred::ROOT, ledger.socket(0));
            let remote = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1)), 1000 + i);
            let local = pcb.connect(remote).unwrap();
            (pcb, local, remote)
        })
        .collect();
    let keys = stable.iter().map(|(_, l, r)| (*l, *r)).collect();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let readers = Readers::start(threads - 1, &table, keys, deadline);
    let mut cycles = 0;
    // At least one cycle, however late this thread gets to run.
    while cycles == 0 || Instant::now() < deadline {
        let burst: Vec<Pcb<Sock>> = (0..600u16)
            .map(|i| {
                let pcb = table.attach(Family::Inet, Cred::ROOT, ledger.socket(0));
                let remote = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 2, 1)), 1000 + i % 8);
                pcb.connect(remote).unwrap();
                pcb
            })
            .collect();
        drop(burst);
        cycles += 1;
    }
    let (lookups, misses) = readers.join();
    let stats = table.stats();
    eprintln!(
        "stress resize: {threads} threads, {secs} s, {cycles} grow/shrink cycles, {} resizes, \
         {lookups} lookups, {misses} false negatives",
        stats.resizes,
    );
    assert_eq!(misses, 0, "false negatives during resizes");
    assert!(stats.resizes >= 4, "the index must resize");
    drop(stable);
    assert_eq!(table.len(), 0);
    drop(table);
    ledger.assert_all_dropped("stress resize");
}

/// 32 UDP PCBs connect, then disconnect, over and over, while the readers
/// look their flows up: a PCB matches its flow in the wildcard and in the
/// exact index alike.
pub fn move_vs_lookup() {
    let _serial = serial();
    let (secs, threads) = budget();
    let ledger = Ledger::new();
    let builder = PcbTable::<Sock>::builder().protocol(Protocol::Udp);
    let table = Arc::new(maybe_broken(builder).build::<Sock>());
    let flows: Vec<(SocketAddr, SocketAddr)> = (0..32u16)
        .map(|i| {
            (
                SocketAddr::new(local_ip(), 5000 + i),
                SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 3, 1)), 6000 + i),
            )
        })
        .collect();
    let pcbs: Vec<Pcb<Sock>> = flows
        .iter()
        .map(|(local, _)| {
            let pcb = table.attach(Family::Inet, Cred::ROOT, ledger.socket(0));
            pcb.bind(*local).unwrap();
            pcb
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let readers = Readers::start(threads - 1, &table, flows.clone(), deadline);
    let mut moves = 0u64;
    while Instant::now() < deadline {
        for (pcb, (local, remote)) in pcbs.iter().zip(flows.iter()) {
            assert_eq!(pcb.connect(*remote).unwrap(), *local);
            // FreeBSD: back to 0.0.0.0 on the same port, which still matches.
            pcb.disconnect().unwrap();
            moves += 2;
        }
    }
    let (lookups, misses) = readers.join();
    eprintln!(
        "stress move: {threads} threads, {secs} s, {moves} moves between indexes, \
         {lookups} lookups, {misses} false negatives"
    );
    assert_eq!(misses, 0, "false negatives during moves");
    drop(pcbs);
    assert_eq!(table.len(), 0);
    drop(table);
    ledger.assert_all_dropped("stress move");
}
