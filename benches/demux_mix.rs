//! The demux mix on 2 threads over 1M entries: 98% lookups, 1% inserts (for
//! pcbhash: `accept`, the passive open) and 1% removes (pcbhash: close).
//!
//! `cargo bench --bench demux_mix`; `cargo bench --bench report` prints the
//! ratio against the best peer.

mod common;

use std::time::Duration;

use common::{demux_mix, ConcurrentPeer, Dash, KeySet, MixPlan, Papaya, Pcbhash, Scc, StdRwLock};
use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};

const SIZE: usize = 1_000_000;
const THREADS: usize = 2;
/// Operations per thread and criterion iteration.
const OPS: usize = 20_000;

fn bench_peer<P: ConcurrentPeer>(group: &mut BenchmarkGroup<'_, WallTime>, set: &KeySet) {
    let peer = P::with_keys(&set.table);
    let plans: Vec<MixPlan> = (0..THREADS)
        .map(|t| MixPlan::new(&set.table, &set.fresh[t], OPS, t as u64))
        .collect();
    group.bench_function(BenchmarkId::new(P::NAME, SIZE), |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let (spent, misses) = demux_mix(&peer, &plans);
                    assert_eq!(misses, 0, "{}: a lookup missed", P::NAME);
                    spent
                })
                .sum()
        })
    });
}

fn mix(c: &mut Criterion) {
    let set = KeySet::new(SIZE, 0, OPS / 100 + common::MIX_BACKLOG + 1, THREADS);
    let mut group = c.benchmark_group("demux_mix_2_threads");
    group.throughput(Throughput::Elements((OPS * THREADS) as u64));
    bench_peer::<Pcbhash>(&mut group, &set);
    bench_peer::<Papaya>(&mut group, &set);
    bench_peer::<Scc>(&mut group, &set);
    bench_peer::<Dash>(&mut group, &set);
    bench_peer::<StdRwLock>(&mut group, &set);
    group.finish();
}

fn config() -> Criterion {
    common::criterion_config(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = mix
}
criterion_main!(benches);
