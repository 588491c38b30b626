//! Single-threaded lookups: exact hits at 1k, 100k and 1M entries against
//! every peer; on 1M PCBs, SYNs (exact miss, wildcard hit) against exact hits,
//! and batched against single lookups.
//!
//! `cargo bench --bench lookup`; `cargo bench --bench report` prints the
//! ratios of the same workloads in one table.

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::{
    lookups, probe_order, Build, Dash, Hashbrown, Key, KeySet, LinearScan, Papaya, Pcbhash,
    PcbhashSocket, Peer, Scc, StdRwLock, SEED,
};
use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};

/// Lookups per criterion iteration.
const CHUNK: usize = 1024;

/// Times `pass` over consecutive `CHUNK`s of `probe`, wrapping around.
fn bench_chunks(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: BenchmarkId,
    probe: &[Key],
    mut pass: impl FnMut(&[Key]) -> usize,
) {
    let mut cursor = 0;
    group.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(pass(&probe[cursor..cursor + CHUNK]));
                cursor = (cursor + CHUNK) % probe.len();
            }
            start.elapsed()
        })
    });
}

fn bench_peer<P: Build>(group: &mut BenchmarkGroup<'_, WallTime>, keys: &[Key], probe: &[Key]) {
    bench_built(group, &P::with_keys(keys), keys.len(), probe);
}

fn bench_built<P: Peer>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    peer: &P,
    size: usize,
    probe: &[Key],
) {
    assert_eq!(
        lookups(peer, &probe[..CHUNK]),
        CHUNK,
        "{}: every key hits",
        P::NAME
    );
    bench_chunks(group, BenchmarkId::new(P::NAME, size), probe, |chunk| {
        lookups(peer, chunk)
    });
}

/// A probe sequence: the keys in random order, a whole number of `CHUNK`s.
fn probe(keys: &[Key]) -> Vec<Key> {
    probe_order(keys, keys.len().div_ceil(CHUNK) * CHUNK, SEED ^ 0x1)
}

fn exact_hit(c: &mut Criterion) {
    for size in [1_000, 100_000, 1_000_000] {
        let keys = KeySet::new(size, 0, 0, 0).table;
        let probe = probe(&keys);
        let mut group = c.benchmark_group("exact_hit");
        group.throughput(Throughput::Elements(CHUNK as u64));
        bench_peer::<Hashbrown>(&mut group, &keys, &probe);
        let pcbhash = Pcbhash::with_keys(&keys);
        bench_built(&mut group, &pcbhash, size, &probe);
        bench_built(&mut group, &PcbhashSocket(&pcbhash), size, &probe);
        drop(pcbhash);
        bench_peer::<Papaya>(&mut group, &keys, &probe);
        bench_peer::<Scc>(&mut group, &keys, &probe);
        bench_peer::<Dash>(&mut group, &keys, &probe);
        bench_peer::<StdRwLock>(&mut group, &keys, &probe);
        if size <= 1_000 {
            bench_peer::<LinearScan>(&mut group, &keys, &probe);
        }
        group.finish();
    }
}

/// On one table of 1M PCBs: SYN against exact hit, batch against single.
fn pcbhash_1m(c: &mut Criterion) {
    let set = KeySet::new(1_000_000, 100_000, 0, 0);
    let table = Pcbhash::with_keys(&set.table);
    let hits = probe(&set.table);
    let syns = probe(&set.syn);
    assert_eq!(
        lookups(&table, &syns[..CHUNK]),
        CHUNK,
        "every SYN finds the listener"
    );

    let mut group = c.benchmark_group("syn_vs_exact_1M");
    group.throughput(Throughput::Elements(CHUNK as u64));
    bench_chunks(
        &mut group,
        BenchmarkId::from_parameter("exact_hit"),
        &hits,
        |chunk| lookups(&table, chunk),
    );
    bench_chunks(
        &mut group,
        BenchmarkId::from_parameter("syn"),
        &syns,
        |chunk| lookups(&table, chunk),
    );
    group.finish();

    let mut group = c.benchmark_group("batch_vs_single_1M");
    group.throughput(Throughput::Elements(CHUNK as u64));
    bench_chunks(
        &mut group,
        BenchmarkId::from_parameter("single"),
        &hits,
        |chunk| lookups(&table, chunk),
    );
    bench_chunks(
        &mut group,
        BenchmarkId::from_parameter("batch16"),
        &hits,
        |chunk| table.lookup_batch(chunk),
    );
    group.finish();
}

fn config() -> Criterion {
    common::criterion_config(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = exact_hit, pcbhash_1m
}
criterion_main!(benches);
