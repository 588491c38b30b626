//! Accept + close pairs on a full table: a stack's connection churn.

use std::hash::BuildHasher;

use crate::alloc::{allocations, settle_epoch};
use crate::common::{BenchSocket, Key, Pcbhash, PcbhashOf};
use crate::out::{row, Row};
use pcbhash::Pcb;

/// Accepts a PCB for every key (with the socket of `S`, which for `()` costs
/// nothing), then closes them all, in the same order: the PCBs are still
/// in the table while the others are accepted, as on a server. `conns` is
/// empty and holds `keys.len()` handles without growing. Returns the pairs.
#[inline(never)]
pub fn pcbhash_pairs<S: BenchSocket>(
    table: &PcbhashOf<S>,
    keys: &[Key],
    conns: &mut Vec<Pcb<S>>,
) -> usize {
    for (i, key) in keys.iter().enumerate() {
        conns.push(table.accept(key, S::for_conn(i as u32)));
    }
    let pairs = conns.len();
    for conn in conns.drain(..) {
        conn.close();
    }
    pairs
}

/// hashbrown's insert of every key, then its remove, for scale.
#[inline(never)]
pub fn hashbrown_pairs<V: Default, H: BuildHasher>(
    map: &mut hashbrown::HashMap<Key, V, H>,
    keys: &[Key],
) -> usize {
    for key in keys {
        map.insert(*key, V::default());
    }
    keys.iter().filter(|key| map.remove(*key).is_some()).count()
}

/// A table of the `table` connections, with room for `fresh` more
/// without growing.
pub fn table_for(table: &[Key], fresh: &[Key]) -> Pcbhash {
    Pcbhash::with_capacity(table, table.len() + fresh.len())
}

/// Allocations per accept + close pair: `fresh` pairs on a table of
/// `table` connections (not timed; the allocator counts).
pub fn allocations_row(table: &[Key], fresh: &[Key]) -> Row {
    let pcb = table_for(table, fresh);
    let mut conns = Vec::with_capacity(fresh.len());
    settle_epoch();
    let before = allocations();
    let pairs = pcbhash_pairs(&pcb, fresh, &mut conns);
    let per_pair = (allocations() - before) as f64 / pairs as f64;
    row(
        "accept + close pair: allocations",
        "none beyond the PCB itself (1 per pair)",
        format!("{per_pair:.2} per pair ({pairs} pairs)"),
        Some(per_pair <= 1.0),
    )
}
