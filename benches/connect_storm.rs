//! Connect storms: connects from unbound PCBs toward one peer until a small
//! ephemeral range (2048 ports) is full, per policy. Criterion reports the
//! mean cost of one connect over the whole fill; `cargo bench --bench report`
//! fills the policies' whole default ranges and compares the last tenth of
//! the connects with the first.
//!
//! `connect_storm_port_filter_2048_ports` fills the same range through a
//! port filter that accepts one port in 4 or 16 (a per-core stack's
//! receive-queue check, `common::one_queue_of`); its throughput counts the
//! connects that succeed, so the figure is the cost of one connect.

mod common;

use std::time::Duration;

use common::fill_range;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pcbhash::Policy;

const FIRST: u16 = 20_000;
const PORTS: u16 = 2048;

fn storm(c: &mut Criterion) {
    let mut group = c.benchmark_group("connect_storm_fill_2048_ports");
    group.throughput(Throughput::Elements(u64::from(PORTS)));
    for (name, policy) in [("freebsd", Policy::FreeBsd), ("linux", Policy::Linux)] {
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        let (spent, connects) = fill_range(policy, FIRST..=FIRST + PORTS - 1, None);
                        assert_eq!(connects, usize::from(PORTS), "{name}: the range fills");
                        spent
                    })
                    .sum()
            })
        });
    }
    group.finish();
}

fn filtered_storm(c: &mut Criterion) {
    let mut group = c.benchmark_group("connect_storm_port_filter_2048_ports");
    let range = FIRST..=FIRST + PORTS - 1;
    for (name, policy) in [("freebsd", Policy::FreeBsd), ("linux", Policy::Linux)] {
        for one_in in [4, 16] {
            let (_, connects) = fill_range(policy, range.clone(), Some(one_in));
            group.throughput(Throughput::Elements(connects as u64));
            let id = BenchmarkId::new(name, format!("1_in_{one_in}"));
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| {
                            let (spent, n) = fill_range(policy, range.clone(), Some(one_in));
                            assert_eq!(n, connects, "{name}: the same ports each time");
                            spent
                        })
                        .sum()
                })
            });
        }
    }
    group.finish();
}

fn config() -> Criterion {
    common::criterion_config(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = storm, filtered_storm
}
criterion_main!(benches);
