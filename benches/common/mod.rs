//! Workloads and peer adapters shared by the criterion benches and by the
//! `report` bench.
//!
//! Every table, pcbhash and its peers alike, is driven with the same 4-tuples
//! (`Key`: local and remote socket address) and, where the peer takes a
//! hasher, with `ahash` seeded identically. What each `get` returns:
//!
//! - pcbhash: `Option<PcbRef>` (a guard-bound pointer to the PCB); the
//!   `pcbhash+socket` variant also follows `PcbRef::socket` to `&S` (inside
//!   the PCB) and reads [`BenchSocket::read`] from it (nothing for `()`, the
//!   id of a [`Socket`]);
//! - hashbrown+Arc: a [`Socket`] field read through the `Arc<Socket>` value;
//! - hashbrown, papaya, scc `HashIndex`: `Option<&u32>` (a reference to a small
//!   id stored in the table);
//! - dashmap: `Option<Ref<'_, Key, u32>>` (holds the shard's read lock);
//! - `RwLock<HashMap>`: a reference under the read guard, taken per lookup;
//! - the linear scan: a reference into a `Vec` (smoltcp's `SocketSet` walk).
//!
//! Apart from those two socket reads, which are compared only with each
//! other, the result is passed through `black_box` and never dereferenced,
//! so no peer pays for a load the others skip. Epoch-based tables pin once per
//! [`PIN_EVERY`] lookups, as a stack pins once per receive batch.
//!
//! The modules: `keys` (the 4-tuples), `peers` (the compared tables and the
//! lookup loop), `socket` (what a lookup reads after it), `table` (pcbhash as
//! a peer), and the workloads `mix`, `growth` and `storm`.

#![allow(dead_code)]

use std::time::Duration;

mod growth;
mod keys;
mod mix;
mod peers;
mod socket;
mod storm;
mod table;

// Each bench uses a part of these.
#[allow(unused_imports)]
pub use growth::*;
#[allow(unused_imports)]
pub use keys::*;
#[allow(unused_imports)]
pub use mix::*;
#[allow(unused_imports)]
pub use peers::*;
#[allow(unused_imports)]
pub use socket::*;
#[allow(unused_imports)]
pub use storm::*;
#[allow(unused_imports)]
pub use table::*;

/// The criterion settings every bench shares: short, small samples, sized
/// for a 2-core machine; `measurement` per benchmark.
pub fn criterion_config(measurement: Duration) -> criterion::Criterion {
    criterion::Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(measurement)
}
