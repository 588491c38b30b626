//! The performance report: every target of the design's performance table,
//! measured in one run as a ratio against its baseline, then counted by a
//! cache and branch simulator, printed as Markdown tables with the target
//! next to each measured value.
//!
//! ```sh
//! cargo bench --bench report                      # wall time, then simulated counts
//! cargo bench --bench report -- --quick           # smaller tables, a smoke run
//! cargo bench --bench report -- --svg lookup.svg  # also plot lookup time against size
//! cargo bench --bench report -- --simulate        # only the simulated counts (valgrind)
//! cargo bench --bench report -- --no-simulate     # only the wall-time report
//! cargo bench --bench report -- --storms          # only the connect storms
//! ```
//!
//! Timing: each contender runs in turn within a round, rounds repeat, and the
//! median of the rounds is kept, so that a noisy neighbour slows every
//! contender alike instead of one. Memory and allocations come from a
//! counting global allocator (requested bytes, not the allocator's own
//! overhead). The simulated counts come from valgrind's callgrind, which the
//! report runs on its own binary (`--sim-child GROUP`, see `measured.rs`).

#[path = "../common/mod.rs"]
mod common;

mod alloc;
mod churn;
mod flows;
mod growth;
mod lookups;
mod measured;
mod out;
mod simulate;
mod storms;
mod svg;
mod timing;

use std::time::Instant;

use common::KeySet;
use out::{md, print_targets};

struct Options {
    quick: bool,
    svg: Option<String>,
    /// `Some(true)`: only the simulated counts; `Some(false)`: none.
    simulate: Option<bool>,
    /// Run one group of simulated loops (under valgrind, by the report).
    sim_child: Option<String>,
    /// Only the connect storms' rows (wall time).
    storms: bool,
}

fn options() -> Options {
    let mut options = Options {
        quick: false,
        svg: None,
        simulate: None,
        sim_child: None,
        storms: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--svg" => options.svg = args.next(),
            "--simulate" => options.simulate = Some(true),
            "--no-simulate" => options.simulate = Some(false),
            "--sim-child" => options.sim_child = args.next(),
            "--storms" => options.storms = true,
            // `cargo bench` passes `--bench`; criterion's filters mean nothing here.
            _ => {}
        }
    }
    options
}

fn main() {
    let options = options();
    if let Some(group) = &options.sim_child {
        measured::child(group, measured::Sizes::new(options.quick));
        return;
    }
    println!("{}", out::machine());
    if options.storms {
        let storms = storms::measure(options.quick);
        print_targets(&storms::rows(&storms));
        storms::print(&storms);
        return;
    }
    if options.simulate != Some(true) {
        wall_time(&options);
    }
    if options.simulate != Some(false) {
        simulate::report(options.quick);
    }
}

/// The wall-time report.
fn wall_time(options: &Options) {
    let big = if options.quick { 100_000 } else { 1_000_000 };
    let rounds = if options.quick { 3 } else { 5 };
    let started = Instant::now();
    let mix_ops = if options.quick { 100_000 } else { 1_000_000 };
    let set = KeySet::new(big, big, mix_ops / 100 + common::MIX_BACKLOG + 1, 2);

    let lookups = lookups::measure(&set, big, mix_ops, rounds);
    let mut rows = lookups.rows;
    rows.extend(flows::measure(&set.table, big, rounds));
    rows.push(churn::allocations_row(&set.table, &set.syn[..big / 50]));
    let storms = storms::measure(options.quick);
    rows.extend(storms::rows(&storms));
    let growths = growth::measure(&set.table[..big], if options.quick { 1 } else { 3 });
    rows.push(growth::row_of(&growths, big));

    println!("\n## Targets\n");
    print_targets(&rows);
    println!("\n{}", md(&lookups.memory));
    println!("\ndemux mix throughput, Mops/s: {}", md(&lookups.mix_line));

    lookups::print_curve(&lookups.curve, rounds);
    storms::print(&storms);
    growth::print(&growths, big);
    println!(
        "\nwall-time report took {:.0} s",
        started.elapsed().as_secs_f64()
    );

    if let Some(path) = &options.svg {
        std::fs::write(path, svg::svg(&lookups.curve, &lookups::PEERS_ORDER))
            .expect("write the SVG");
        println!("wrote {path}");
    }
}
