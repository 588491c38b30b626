//! Stress tests: several threads churn one table for a bounded time while
//! invariants are checked throughout and at quiescence.
//!
//! Each worker owns the PCBs it creates and knows exactly what it did to them,
//! so every lookup of a tuple it holds has one right answer. Cross-thread
//! invariants go through small registries that are updated *before* a PCB
//! gives something up and *after* it gained it, so a registry entry never
//! outlives what the table grants:
//!
//! - no 4-tuple is held twice (connect, accept);
//! - no two PCBs hold an exclusive port (binds without reuse options);
//! - no lookup returns a PCB whose `close()` returned before the lookup
//!   started (a logical clock stamps each close);
//! - a PCB the worker holds connected is always found by its own tuple, and
//!   a tuple another worker held throughout a lookup is found too;
//! - a socket handed out by `socket()` belongs to the PCB it came from;
//! - at quiescence, `len()`, `iter()` and `stats()` agree with what the
//!   workers hold, connected tuples are unique, two unconnected PCBs on one
//!   address carry SO_REUSEPORT (FreeBSD), and after every PCB is closed the
//!   table is empty and every socket was dropped exactly once;
//! - memory stays bounded under sustained churn: the peak resident set is
//!   sampled during the run and must stay under a generous bound.
//!
//! Two more tests aim at the windows where a lookup could miss: the exact
//! index growing and shrinking under lookups of long-lived connections, and
//! PCBs moving between the wildcard and the exact index (connect, disconnect)
//! under lookups of their flows.
//!
//! Run time: `PCBHASH_STRESS_SECS` seconds for each churn test (default 2; two
//! tables) and half that for each of the other two, about 6 s in all.
//! `PCBHASH_STRESS_THREADS` sets the worker count (default 4).
//! `PCBHASH_STRESS_MAX_RSS_MIB` overrides the memory bound (default 128 MiB;
//! a sanitizer's quarantine needs more). Built with `--cfg pcbhash_broken`,
//! `PCBHASH_STRESS_BROKEN=<variant>` runs against a deliberately broken table
//! (see the loom tests), to see the invariants fail.
//!
//! Each test counts its own sockets (see `ledger`) and waits for the epoch to
//! drop them all before it returns, so no test's deferred garbage lands in
//! another's count, whatever order the tests run in.

mod churn;
mod ctx;
mod index_moves;
mod ledger;
mod probes;
mod worker;

use std::sync::{Mutex, MutexGuard};

use pcbhash::{Builder, Policy, Protocol};

/// Serialises the tests of this file: they share the process's resident set
/// and, being bounded by time, should not share the CPU.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Self-test of the invariants: with `--cfg pcbhash_broken`,
/// `PCBHASH_STRESS_BROKEN=<variant>` runs against a broken table.
fn maybe_broken(builder: Builder) -> Builder {
    #[cfg(pcbhash_broken)]
    if let Ok(variant) = std::env::var("PCBHASH_STRESS_BROKEN") {
        return builder.broken(&variant);
    }
    builder
}

/// The exact index grows and shrinks over and over (one worker connects
/// hundreds of PCBs, then closes them) while the other threads look up a set
/// of long-lived connections: every lookup must find its connection, whatever
/// the migration is doing.
#[test]
fn stress_resize_vs_lookup() {
    index_moves::resize_vs_lookup();
}

/// UDP PCBs move between the wildcard and the exact index over and over
/// (connect, then disconnect) while other threads look their flows up: a PCB
/// matches the flow in both places, so every lookup must find it.
#[test]
fn stress_move_vs_lookup() {
    index_moves::move_vs_lookup();
}

#[test]
fn stress_freebsd_tcp() {
    churn::churn(Policy::FreeBsd, Protocol::Tcp);
}

#[test]
fn stress_linux_udp() {
    churn::churn(Policy::Linux, Protocol::Udp);
}
