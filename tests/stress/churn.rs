//! The churn test: workers drive whole PCB lifecycles on one table for a
//! bounded time, then the table is checked at quiescence and emptied.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use pcbhash::{Flags, PcbRef, PcbTable, Policy, Protocol};

use crate::ctx::{Ctx, EPHEMERAL, EXCLUSIVE};
use crate::ledger::Sock;
use crate::worker::{Counts, Held, Worker};
use crate::{env_number, maybe_broken, serial};

/// Resident set size and its peak, in KiB, from `/proc/self/status`.
fn rss_kib() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|line| line.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Checks at quiescence: the table agrees with what the workers hold.
fn check_quiescent(ctx: &Ctx, held: &[Held]) {
    let table = &ctx.table;
    let in_table = held.iter().filter(|h| h.pcb.state().is_in_table()).count();
    assert_eq!(table.len(), in_table, "len() at quiescence");
    let guard = table.pin();
    assert_eq!(table.iter(&guard).count(), in_table, "iter() at quiescence");
    let stats = table.stats();
    assert_eq!(stats.len, in_table);
    assert_eq!(stats.attached, held.len(), "live handles");
    let connected = held.iter().filter(|h| h.pcb.state().is_connected()).count();
    assert_eq!(stats.connected + stats.time_wait, connected);
    // Linux UDP: of several PCBs connected over one 4-tuple, only the one
    // that connected last is in the exact index.
    let shadowed = held
        .iter()
        .filter(|h| h.pcb.flags().contains(Flags::SHADOWED))
        .count();
    assert_eq!(
        stats.exact.entries,
        connected - shadowed,
        "exact index entries"
    );

    let mut tuples = HashSet::new();
    let mut by_local: HashMap<SocketAddr, Vec<PcbRef<'_, Sock>>> = HashMap::new();
    for pcb in table.iter(&guard) {
        if pcb.state().is_connected() {
            let tuple = (pcb.local_addr(), pcb.peer_addr().unwrap());
            let first = tuples.insert(tuple);
            assert!(
                first || ctx.shares_tuples(),
                "duplicate 4-tuple {tuple:?} at quiescence"
            );
            let found = table.lookup(tuple.0, tuple.1, &guard).unwrap();
            assert!(
                found.same_pcb(&pcb) || ctx.shares_tuples(),
                "a connected PCB is what its tuple resolves to"
            );
        } else {
            by_local.entry(pcb.local_addr()).or_default().push(pcb);
        }
    }
    for (local, owners) in &by_local {
        if EXCLUSIVE.contains(&local.port()) {
            assert_eq!(owners.len(), 1, "conflicting binds on {local}");
        }
        if ctx.policy == Policy::FreeBsd && owners.len() > 1 {
            assert!(
                owners.iter().all(|pcb| pcb.flags().reuse_port()),
                "PCBs share {local} without SO_REUSEPORT"
            );
        }
    }
    for h in held {
        if let Some((local, remote)) = h.tuple {
            let found = table.lookup(local, remote, &guard).unwrap();
            // Linux UDP: any holder of the shared tuple is a right answer.
            let shared = ctx.shares_tuples() && found.peer_addr() == Some(remote);
            assert!(found.is(&h.pcb) || shared, "{local} <- {remote}: {found:?}");
        }
    }
}

/// Samples the resident set every 20 ms until told to stop; the thread's
/// result is the peak seen, in KiB.
struct RssSampler {
    done: Arc<AtomicBool>,
    thread: thread::JoinHandle<u64>,
}

impl RssSampler {
    fn start() -> RssSampler {
        let done = Arc::new(AtomicBool::new(false));
        let thread = {
            let done = done.clone();
            thread::spawn(move || {
                let mut peak = 0;
                while !done.load(Ordering::Relaxed) {
                    if let Some((rss, _)) = rss_kib() {
                        peak = peak.max(rss);
                    }
                    thread::sleep(Duration::from_millis(20));
                }
                peak
            })
        };
        RssSampler { done, thread }
    }

    fn peak_kib(self) -> u64 {
        self.done.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// One run: `threads` workers churn a table of `protocol` under `policy`.
pub fn churn(policy: Policy, protocol: Protocol) {
    let _serial = serial();
    let secs = env_number("PCBHASH_STRESS_SECS", 2);
    let threads = env_number("PCBHASH_STRESS_THREADS", 4) as usize;
    let max_rss_mib = env_number("PCBHASH_STRESS_MAX_RSS_MIB", 128);

    let builder = PcbTable::<Sock>::builder()
        .policy(policy)
        .protocol(protocol)
        .ephemeral_ports(EPHEMERAL)
        // Small, so that the exact index resizes (both ways) during the run.
        .exact_buckets(4);
    let table = maybe_broken(builder).build();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let ctx = Arc::new(Ctx::new(table, protocol, policy, deadline));
    let ledger = ctx.ledger.clone();

    let sampler = RssSampler::start();
    let start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|index| {
            let ctx = ctx.clone();
            thread::spawn(move || {
                let (held, counts) = Worker::new(&ctx, index).run();
                // An idle thread hands its garbage over.
                ctx.table.flush();
                (held, counts)
            })
        })
        .collect();
    let mut held = Vec::new();
    let mut counts = Counts::default();
    for worker in workers {
        let (mine, theirs) = worker.join().expect("a worker panicked");
        held.extend(mine);
        counts += theirs;
    }
    let elapsed = start.elapsed();
    let peak_rss_kib = sampler.peak_kib();

    check_quiescent(&ctx, &held);
    let stats = ctx.table.stats();
    let in_table = ctx.table.len();

    // Close everything; the table must be empty and every socket dropped.
    let mut closer = Worker::new(&ctx, threads);
    for h in held {
        closer.close(h);
    }
    assert_eq!(ctx.table.len(), 0);
    assert_eq!(ctx.table.stats().attached, 0);
    assert!(ctx.no_tuples_held());
    let violations = ctx.violations();
    let resizes = stats.resizes;
    ctx.table.flush();
    drop(ctx);
    // Detached sockets are released through the epoch: drive reclamation
    // until every deferred drop of this run has run.
    let (created, dropped) = ledger.drain();

    eprintln!(
        "stress {policy:?}/{protocol:?}: {threads} threads, {:.1} s, {} ops ({:.0}/s): \
         {} binds, {} connects, {} accepts, {} time_waits, {} disconnects, {} closes, \
         {} lookups ({} hits); {in_table} PCBs at quiescence, {resizes} resizes; \
         {created} sockets, {dropped} dropped; peak RSS {} KiB (bound {} MiB); \
         {violations} violations",
        elapsed.as_secs_f64(),
        counts.ops,
        counts.ops as f64 / elapsed.as_secs_f64(),
        counts.binds,
        counts.connects,
        counts.accepts,
        counts.time_waits,
        counts.disconnects,
        counts.closes,
        counts.lookups,
        counts.hits,
        peak_rss_kib,
        max_rss_mib,
    );
    assert_eq!(violations, 0, "invariant violations (see above)");
    assert_eq!(created, dropped, "every socket is dropped exactly once");
    assert!(counts.connects > 0 && counts.closes > 0 && counts.hits > 0);
    assert!(
        peak_rss_kib <= max_rss_mib * 1024,
        "peak RSS {peak_rss_kib} KiB over {max_rss_mib} MiB"
    );
}
