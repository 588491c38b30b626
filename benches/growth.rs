//! Growth from empty to 200k entries on one thread while another thread looks
//! up keys already inserted. Criterion reports the writer's fill time; the
//! reader's latencies (worst, p99.9) are printed, and `cargo bench --bench
//! report` measures them on a growth to 1M.

mod common;

use std::time::Duration;

use common::{growth, ConcurrentPeer, Dash, KeySet, Papaya, Pcbhash, Scc, StdRwLock};
use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};

const SIZE: usize = 200_000;

fn bench_peer<P: ConcurrentPeer>(group: &mut BenchmarkGroup<'_, WallTime>, keys: &[common::Key]) {
    let mut worst = 0;
    group.bench_function(BenchmarkId::new(P::NAME, SIZE), |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let (stats, peer, conns) = growth::<P>(keys);
                    assert_eq!(
                        stats.misses,
                        0,
                        "{}: a lookup missed during growth",
                        P::NAME
                    );
                    worst = worst.max(stats.max_ns);
                    drop(conns);
                    drop(peer);
                    stats.fill
                })
                .sum()
        })
    });
    println!(
        "{}: worst concurrent lookup {:.1} us",
        P::NAME,
        worst as f64 / 1e3
    );
}

fn grow(c: &mut Criterion) {
    let keys = KeySet::new(SIZE, 0, 0, 0).table;
    let mut group = c.benchmark_group("growth_with_reader");
    group.throughput(Throughput::Elements(SIZE as u64));
    bench_peer::<Pcbhash>(&mut group, &keys);
    bench_peer::<Papaya>(&mut group, &keys);
    bench_peer::<Scc>(&mut group, &keys);
    bench_peer::<Dash>(&mut group, &keys);
    bench_peer::<StdRwLock>(&mut group, &keys);
    group.finish();
}

fn config() -> Criterion {
    common::criterion_config(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = grow
}
criterion_main!(benches);
