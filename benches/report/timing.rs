//! Wall-time races: each contender runs in turn within a round, rounds
//! repeat, and the median of the rounds is kept, so that a noisy neighbour
//! slows every contender alike instead of one.

use std::hint::black_box;
use std::time::Instant;

use crate::common::{lookups, Key, Peer};

/// One timed contender: `run` does `ops` operations and returns how many
/// succeeded, which must equal `expect`.
pub struct Contender<'a> {
    pub name: String,
    pub ops: usize,
    pub expect: usize,
    pub run: Box<dyn Fn() -> usize + 'a>,
}

impl<'a> Contender<'a> {
    pub fn lookups<P: Peer>(name: &str, peer: &'a P, probe: &'a [Key], expect: usize) -> Self {
        Self {
            name: name.to_string(),
            ops: probe.len(),
            expect,
            run: Box::new(move || lookups(peer, probe)),
        }
    }
}

/// Median nanoseconds per operation of each contender over `rounds`
/// interleaved rounds.
pub fn race(contenders: &[Contender<'_>], rounds: usize) -> Vec<f64> {
    let mut samples = vec![Vec::with_capacity(rounds); contenders.len()];
    for _ in 0..rounds {
        for (contender, samples) in contenders.iter().zip(&mut samples) {
            let start = Instant::now();
            let done = black_box((contender.run)());
            let ns = start.elapsed().as_nanos() as f64 / contender.ops as f64;
            assert_eq!(done, contender.expect, "{}: wrong answers", contender.name);
            samples.push(ns);
        }
    }
    samples.iter_mut().map(|s| median(s)).collect()
}

/// The nanoseconds of the contender called `name`.
pub fn of(contenders: &[Contender<'_>], ns: &[f64], name: &str) -> f64 {
    contenders
        .iter()
        .zip(ns)
        .find(|(c, _)| c.name == name)
        .map(|(_, ns)| *ns)
        .expect("contender")
}

pub fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}
