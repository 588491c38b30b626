//! A harness for valgrind's callgrind: one million 40-byte keys, looked up
//! in a shuffled order in this index and in `hashbrown::HashMap`,
//! with one hasher, each in a function of its own. Build the test binary with
//! `cargo test --release --lib --no-run`, then run it as
//!
//! ```text
//! valgrind --tool=callgrind --cache-sim=yes --branch-sim=yes \
//!     --I1=32768,8,64 --D1=32768,8,64 --LL=33554432,16,64 \
//!     --collect-atstart=no --toggle-collect='*measure_*' \
//!     <binary> raw::exact::measure --ignored --test-threads 1
//! ```
//!
//! and read each `measure_*` function's inclusive counts with
//! `callgrind_annotate --inclusive=yes`, divided by the number of keys
//! (`EXACT_MEASURE_N`, one million by default).

use std::hint::black_box;

use super::*;

#[derive(Clone, Copy, Debug, Eq)]
struct Key([u64; 5]);

/// As derived: the words.
impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

/// Word by word without branches, as a table compares flow keys (the
/// derived equality calls `bcmp`). Both maps use it.
impl PartialEq for Key {
    #[inline(always)]
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (&self.0, &other.0);
        (a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) | (a[4] ^ b[4]) == 0
    }
}

/// A PCB stand-in: the key inline, one line.
#[repr(align(64))]
struct Pcb {
    key: Key,
    hash: u64,
}

impl ExactEntry for Pcb {
    fn exact_hash(&self) -> u64 {
        self.hash
    }
}

type Hashbrown = hashbrown::HashMap<Key, Arc<Pcb>, ahash::RandomState>;

// The measured loops are written out one by one: sharing them through
// closures costs the pcbhash rows about ten instructions per lookup that
// hashbrown's row does not pay, which would skew the comparison.

#[inline(never)]
fn measure_exact(
    index: &ExactIndex<Pcb>,
    keys: &[Key],
    state: &ahash::RandomState,
    guard: &Guard,
) -> usize {
    let mut hits = 0;
    for key in keys {
        let hash = state.hash_one(key);
        hits += usize::from(black_box(index.find(hash, guard, |pcb| pcb.key == *key)).is_some());
    }
    hits
}

#[inline(never)]
fn measure_exact_read(
    index: &ExactIndex<Pcb>,
    keys: &[Key],
    state: &ahash::RandomState,
    guard: &Guard,
) -> u64 {
    let mut sum = 0;
    for key in keys {
        let hash = state.hash_one(key);
        if let Some(pcb) = index.find(hash, guard, |pcb| pcb.key == *key) {
            sum += black_box(pcb).hash;
        }
    }
    sum
}

#[inline(never)]
fn measure_hashbrown(map: &Hashbrown, keys: &[Key]) -> usize {
    keys.iter()
        .map(|key| usize::from(black_box(map.get(key)).is_some()))
        .sum()
}

#[inline(never)]
fn measure_hashbrown_read(map: &Hashbrown, keys: &[Key]) -> u64 {
    keys.iter()
        .filter_map(|key| map.get(key))
        .map(|pcb| black_box(pcb).hash)
        .sum()
}

#[test]
#[ignore = "a callgrind harness, slow in a debug build"]
fn callgrind_exact_hit() {
    let n: usize = std::env::var("EXACT_MEASURE_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut keys: Vec<Key> = (0..n)
        .map(|_| Key(std::array::from_fn(|_| next())))
        .collect();
    let state = ahash::RandomState::with_seeds(1, 2, 3, 4);
    let index = ExactIndex::<Pcb>::with_capacity(n);
    let mut brown = Hashbrown::with_capacity_and_hasher(n, state.clone());
    let guard = crossbeam_epoch::pin();
    for key in &keys {
        let hash = state.hash_one(key);
        let pcb = Arc::new(Pcb { key: *key, hash });
        assert!(index.insert(hash, pcb.clone(), &guard).is_ok());
        brown.insert(*key, pcb);
    }
    for i in (1..n).rev() {
        keys.swap(i, next() as usize % (i + 1));
    }
    assert_eq!(measure_exact(&index, &keys, &state, &guard), n);
    assert_ne!(measure_exact_read(&index, &keys, &state, &guard), 0);
    assert_eq!(measure_hashbrown(&brown, &keys), n);
    assert_ne!(measure_hashbrown_read(&brown, &keys), 0);
    println!("{:?} resizes {}", index.stats(&guard), index.resizes());
}
