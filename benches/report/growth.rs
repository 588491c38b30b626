//! Growth from empty to the biggest size while another thread looks up.

use crate::alloc::settle_epoch;
use crate::common::{growth, ConcurrentPeer, Dash, Growth, Key, Papaya, Pcbhash, Scc, StdRwLock};
use crate::out::{human, md, row, us, Row};

/// pcbhash `runs` times, then each concurrent peer once.
pub fn measure(keys: &[Key], runs: usize) -> Vec<(&'static str, Growth)> {
    let mut growths = Vec::new();
    for _ in 0..runs {
        growths.push(("pcbhash", grown::<Pcbhash>(keys)));
    }
    growths.push(("papaya", grown::<Papaya>(keys)));
    growths.push(("scc HashIndex", grown::<Scc>(keys)));
    growths.push(("dashmap", grown::<Dash>(keys)));
    growths.push(("RwLock<HashMap>", grown::<StdRwLock>(keys)));
    growths
}

/// The worst-lookup row, over pcbhash's runs.
pub fn row_of(growths: &[(&str, Growth)], size: usize) -> Row {
    let ours: Vec<&Growth> = growths
        .iter()
        .filter(|(n, _)| *n == "pcbhash")
        .map(|(_, g)| g)
        .collect();
    let worst = ours.iter().map(|g| g.max_ns).max().unwrap_or(0);
    let quiet = ours.iter().map(|g| g.max_quiet_ns).max().unwrap_or(0);
    let p999 = ours.iter().map(|g| g.p999_ns).max().unwrap_or(0);
    let misses: u64 = ours.iter().map(|g| g.misses).sum();
    row(
        &format!("growth 0 → {} while another thread looks up", human(size)),
        "worst lookup ≤ 50 µs",
        format!(
            "worst {} ({} without preemption), p99.9 {}, {misses} misses, {} runs",
            us(worst),
            us(quiet),
            us(p999),
            ours.len()
        ),
        Some(worst <= 50_000),
    )
}

/// Every growth run as a Markdown table.
pub fn print(growths: &[(&str, Growth)], size: usize) {
    println!("\n## Growth to {} with a concurrent reader\n", human(size));
    println!("| table | p50 | p99 | p99.9 | worst | worst, not preempted | windows preempted | lookups | misses | fill |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (name, g) in growths {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} s |",
            md(name),
            us(g.p50_ns),
            us(g.p99_ns),
            us(g.p999_ns),
            us(g.max_ns),
            us(g.max_quiet_ns),
            g.preempted_windows,
            g.lookups,
            g.misses,
            g.fill.as_secs_f64()
        );
    }
}

/// Growth, then the table dropped outside the measurement.
fn grown<P: ConcurrentPeer>(keys: &[Key]) -> Growth {
    let (stats, peer, conns) = growth::<P>(keys);
    drop(conns);
    drop(peer);
    settle_epoch();
    stats
}
