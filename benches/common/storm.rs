//! The connect storm: connects from unbound PCBs until the ephemeral range
//! is exhausted, timing each.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use pcbhash::{Builder, Cred, Error, Family, PcbTable, Policy, PortCandidate};

use super::keys::SEED;

/// What a connect storm measured.
#[derive(Clone, Debug)]
pub struct Storm {
    pub policy: Policy,
    /// FreeBSD's `net.inet.ip.portrange.randomized`.
    pub randomized: bool,
    /// The port filter accepted one candidate in this many (`None`: no
    /// filter).
    pub one_in: Option<u32>,
    pub range: RangeInclusive<u16>,
    /// Successful connects (the range, when it ends in exhaustion).
    pub connects: usize,
    /// Mean cost of one connect in each tenth of the run, in nanoseconds.
    pub decile_ns: [f64; 10],
    /// The error that ended the storm.
    pub end: Option<Error>,
    pub total: Duration,
}

impl Storm {
    /// The last tenth's per-connect cost over the first tenth's.
    pub fn ratio(&self) -> f64 {
        self.decile_ns[9] / self.decile_ns[0]
    }
}

/// The peer every connect of a storm goes to.
pub const STORM_PEER: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 80));

/// Connects from unbound PCBs toward [`STORM_PEER`] (a listener on
/// `127.0.0.1:80` in the same table) until the ephemeral range is exhausted,
/// timing each connect (`attach` is outside the clock).
/// `randomized` is FreeBSD's `net.inet.ip.portrange.randomized` (the
/// default, on: each scan starts at a random port; off: after the last port
/// handed out).
pub fn connect_storm(
    policy: Policy,
    range: Option<RangeInclusive<u16>>,
    randomized: bool,
) -> Storm {
    filtered_connect_storm(policy, range, randomized, None)
}

/// A per-core stack's port filter that accepts one candidate in `one_in`:
/// those whose 4-tuple a multiplicative hash (a stand-in for the NIC's RSS
/// hash) sends to queue 0 of `one_in` queues.
pub fn one_queue_of(one_in: u32) -> impl Fn(&PortCandidate) -> bool + Send + Sync + 'static {
    move |candidate| {
        let remote = candidate.remote.map_or(0, |r| u32::from(r.port()));
        let ports = u32::from(candidate.local.port()) << 16 | remote;
        (ports.wrapping_mul(0x9E37_79B1) >> 16) % one_in == 0
    }
}

/// A builder for `policy` with the benches' seed and, with `one_in`, the
/// port filter [`one_queue_of`].
fn storm_builder(policy: Policy, one_in: Option<u32>) -> Builder {
    let builder = PcbTable::<()>::builder().policy(policy).seed(SEED);
    match one_in {
        Some(n) => builder.port_filter(one_queue_of(n)),
        None => builder,
    }
}

/// [`connect_storm`] with the port filter [`one_queue_of`] (`one_in`), if
/// any: the storm ends when every accepted port is taken.
pub fn filtered_connect_storm(
    policy: Policy,
    range: Option<RangeInclusive<u16>>,
    randomized: bool,
    one_in: Option<u32>,
) -> Storm {
    let mut builder = storm_builder(policy, one_in).randomized_ports(randomized);
    if let Some(range) = range.clone() {
        builder = builder.ephemeral_ports(range);
    }
    let table: PcbTable<()> = builder.build();
    let listener = table.attach(Family::Inet, Cred::ROOT, ());
    listener.bind(STORM_PEER).expect("bind the peer's listener");
    listener.listen().expect("listen");
    let mut conns = Vec::new();
    let mut costs = Vec::new();
    let start = Instant::now();
    let end = loop {
        let pcb = table.attach(Family::Inet, Cred::user(1000), ());
        let t = Instant::now();
        let result = pcb.connect(STORM_PEER);
        let ns = t.elapsed().as_nanos() as f64;
        match result {
            Ok(_) => {
                costs.push(ns);
                conns.push(pcb);
            }
            Err(error) => break Some(error),
        }
    };
    let total = start.elapsed();
    let mut decile_ns = [0.0; 10];
    let tenth = costs.len() / 10;
    for (d, slot) in decile_ns.iter_mut().enumerate() {
        let part = &costs[d * tenth..if d == 9 { costs.len() } else { (d + 1) * tenth }];
        *slot = part.iter().sum::<f64>() / part.len().max(1) as f64;
    }
    let range = range.unwrap_or_else(|| {
        pcbhash::policy::builtin(policy, pcbhash::Protocol::Tcp).default_ephemeral()
    });
    Storm {
        policy,
        randomized,
        one_in,
        range,
        connects: costs.len(),
        decile_ns,
        end,
        total,
    }
}

/// Fills `range` with connects toward [`STORM_PEER`] on a fresh table (with
/// the port filter [`one_queue_of`] accepting one port in `one_in`, if
/// any) and returns the time spent in `connect` (for the criterion bench)
/// and the number of connects.
pub fn fill_range(
    policy: Policy,
    range: RangeInclusive<u16>,
    one_in: Option<u32>,
) -> (Duration, usize) {
    let table: PcbTable<()> = storm_builder(policy, one_in).ephemeral_ports(range).build();
    let mut conns = Vec::new();
    let mut spent = Duration::ZERO;
    loop {
        let pcb = table.attach(Family::Inet, Cred::user(1000), ());
        let t = Instant::now();
        let result = pcb.connect(STORM_PEER);
        spent += t.elapsed();
        match result {
            Ok(_) => conns.push(pcb),
            Err(_) => break,
        }
    }
    (spent, conns.len())
}
