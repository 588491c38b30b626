//! Connect storms: connects toward one peer until the ephemeral range is
//! full, the last tenth's cost against the first's.

use pcbhash::Policy;

use crate::common::{filtered_connect_storm, Storm};
use crate::out::{row, Row};

/// Both policies fill their whole default range (the quick run, a smaller
/// one), and FreeBSD also without randomized ports; then both policies
/// again through a port filter that accepts one port in 4, then in 16.
pub fn measure(quick: bool) -> Vec<Storm> {
    let freebsd_range = quick.then_some(20_000..=29_999);
    let linux_range = quick.then_some(20_000..=23_999);
    [
        (Policy::FreeBsd, true, None),
        (Policy::Linux, true, None),
        (Policy::FreeBsd, false, None),
        (Policy::FreeBsd, true, Some(4)),
        (Policy::Linux, true, Some(4)),
        (Policy::FreeBsd, true, Some(16)),
        (Policy::Linux, true, Some(16)),
    ]
    .into_iter()
    .map(|(policy, randomized, one_in)| {
        let range = match policy {
            Policy::Linux => linux_range.clone(),
            _ => freebsd_range.clone(),
        };
        filtered_connect_storm(policy, range, randomized, one_in)
    })
    .collect()
}

pub fn rows(storms: &[Storm]) -> Vec<Row> {
    storms
        .iter()
        .map(|storm| {
            row(
                &format!(
                    "connect storm, {}: {} connects fill {}..={}",
                    name(storm),
                    storm.connects,
                    storm.range.start(),
                    storm.range.end()
                ),
                "last 10% ≤ 3× first 10%",
                format!(
                    "{:.2}× ({:.0} ns → {:.0} ns per connect)",
                    storm.ratio(),
                    storm.decile_ns[0],
                    storm.decile_ns[9]
                ),
                Some(storm.ratio() <= 3.0),
            )
        })
        .collect()
}

/// The storms' per-tenth costs as a Markdown table.
pub fn print(storms: &[Storm]) {
    println!("\n## Connect storms (mean ns per connect, by tenth of the run)\n");
    println!(
        "| policy | range | 1st | 2nd | 3rd | 4th | 5th | 6th | 7th | 8th | 9th | 10th | end |"
    );
    println!("|---|---|{}", "---|".repeat(11));
    for s in storms {
        print!("| {} | {}..={} |", name(s), s.range.start(), s.range.end());
        for d in s.decile_ns {
            print!(" {d:.0} |");
        }
        println!(" {:?} after {:.1} s |", s.end, s.total.as_secs_f64());
    }
}

fn name(storm: &Storm) -> String {
    let policy = policy_name(storm);
    match storm.one_in {
        Some(n) => format!("{policy}, port filter accepting 1 in {n}"),
        None => policy,
    }
}

fn policy_name(storm: &Storm) -> String {
    match (storm.policy, storm.randomized) {
        (Policy::FreeBsd, false) => "FreeBSD, randomized_ports(false)".into(),
        (Policy::FreeBsd, true) => "FreeBSD".into(),
        (Policy::Linux, _) => "Linux".into(),
        (other, _) => format!("{other:?}"),
    }
}
