//! The loops the simulated report measures, one group of them per process:
//! `report --sim-child GROUP` builds one table and runs its loops, each in
//! a `sim_measured_*` function that valgrind's callgrind collects alone
//! (`--collect-atstart=no --toggle-collect='*sim_measured_*'`) and dumps
//! after (`--dump-after='*::sim_measured_*'`). Before each loop's dump the
//! child prints `sim NAME OPS ALLOCATIONS` on a line of its own, NAME being
//! the row.

use std::hint::black_box;

use crate::alloc::{allocations, settle_epoch};
use crate::churn::{hashbrown_pairs, pcbhash_pairs, table_for};
use crate::common::{
    flows, lookups, probe_order, Build, Hashbrown, HashbrownArc, Key, PcbhashOf, PcbhashSocket,
    Peer, Shape, Socket, PIN_EVERY, SEED,
};
use crate::flows::LOCAL_PORTS;

/// What one run measures: table and lookup counts.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    /// Connections in each table.
    pub table: usize,
    /// Lookups per lookup loop.
    pub lookups: usize,
    /// Accept + close pairs.
    pub pairs: usize,
}

impl Sizes {
    pub fn new(quick: bool) -> Self {
        if quick {
            Self {
                table: 50_000,
                lookups: 50_000,
                pairs: 5_000,
            }
        } else {
            Self {
                table: 1_000_000,
                lookups: 1_000_000,
                pairs: 20_000,
            }
        }
    }
}

/// The groups, each a process of its own (so each is measured on its own
/// table from a fresh start); pcbhash's first, as they take longest.
pub const GROUPS: [&str; 8] = [
    "pcbhash",
    "pcbhash-socket",
    "pcbhash-ipv6",
    "pcbhash-ports",
    "hashbrown",
    "hashbrown-arc",
    "hashbrown-ipv6",
    "hashbrown-ports",
];

/// Runs group `group`'s loops.
pub fn child(group: &str, sizes: Sizes) {
    let shape = match group {
        g if g.ends_with("-ipv6") => Shape::Ipv6,
        g if g.ends_with("-ports") => Shape::LocalPorts(LOCAL_PORTS),
        _ => Shape::Service,
    };
    // The same keys for every group of a shape: the table's, then fresh ones
    // (not in the table) for SYNs and for the accept + close pairs.
    let all = flows(
        shape,
        sizes.table + sizes.pairs + sizes.lookups.min(sizes.table),
        SEED,
    );
    let (table, rest) = all.split_at(sizes.table);
    let (fresh, syn) = rest.split_at(sizes.pairs);
    let probe = || probe_order(table, sizes.lookups, SEED ^ 0x1);
    match group {
        "pcbhash" => {
            let pcb = table_for(table, fresh);
            let probe = probe();
            measure("lookup", probe.len(), || sim_measured_lookups(&pcb, &probe));
            drop(probe);
            // Fresh remotes toward the listener's port: exact miss, then
            // the wildcard hit.
            let syn = probe_order(syn, sizes.lookups, SEED ^ 0x2);
            measure("syn", syn.len(), || sim_measured_lookups(&pcb, &syn));
            drop(syn);
            let mut conns = Vec::with_capacity(fresh.len());
            measure("pairs", fresh.len(), || {
                sim_measured_pairs(&pcb, fresh, &mut conns)
            });
            drop(conns);
            drop(pcb);
            let (group, members) = reuseport_group();
            let syn = probe_order(&rest[sizes.pairs..], sizes.lookups, SEED ^ 0x3);
            let packets: Vec<Key> = syn.iter().map(|key| (GROUP_SERVICE, key.1)).collect();
            measure("group", packets.len(), || {
                sim_measured_group(&group, &packets)
            });
            drop(members);
        }
        "pcbhash-socket" => {
            let pcb = PcbhashOf::<Socket>::with_keys(table);
            let probe = probe();
            let view = PcbhashSocket(&pcb);
            measure("socket", probe.len(), || {
                sim_measured_lookups(&view, &probe)
            });
        }
        "pcbhash-ipv6" | "pcbhash-ports" => {
            let pcb = PcbhashOf::<()>::with_keys(table);
            let probe = probe();
            measure("lookup", probe.len(), || sim_measured_lookups(&pcb, &probe));
        }
        "hashbrown" => {
            let mut map = Hashbrown::with_keys(table);
            let probe = probe();
            measure("keys", probe.len(), || sim_measured_keys(&probe));
            measure("lookup", probe.len(), || sim_measured_lookups(&map, &probe));
            drop(probe);
            map.0.reserve(fresh.len());
            measure("pairs", fresh.len(), || {
                sim_measured_map_pairs(&mut map.0, fresh)
            });
        }
        "hashbrown-arc" => {
            let map = HashbrownArc::with_keys(table);
            let probe = probe();
            measure("socket", probe.len(), || sim_measured_lookups(&map, &probe));
        }
        "hashbrown-ipv6" | "hashbrown-ports" => {
            let map = Hashbrown::with_keys(table);
            let probe = probe();
            measure("lookup", probe.len(), || sim_measured_lookups(&map, &probe));
        }
        other => panic!("--sim-child: one of {GROUPS:?}, not {other}"),
    }
}

/// The address of [`reuseport_group`]'s listeners.
const GROUP_SERVICE: std::net::SocketAddr = std::net::SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::new(10, 0, 0, 1),
    443,
));

/// A Linux table with four SO_REUSEPORT listeners on [`GROUP_SERVICE`],
/// and their handles.
fn reuseport_group() -> (pcbhash::PcbTable<()>, Vec<pcbhash::Pcb<()>>) {
    use pcbhash::{Cred, Family, PcbTable, Policy};
    let table: PcbTable<()> = PcbTable::<()>::builder()
        .policy(Policy::Linux)
        .seed(SEED)
        .build();
    let members = (0..4)
        .map(|_| {
            let pcb = table.attach(Family::Inet, Cred::ROOT, ());
            pcb.set_reuse_port(true).expect("SO_REUSEPORT");
            pcb.bind(GROUP_SERVICE).expect("bind");
            pcb.listen().expect("listen");
            pcb
        })
        .collect();
    (table, members)
}

/// SYNs to a reuseport group: exact miss, then the group's pick. One pin
/// per [`PIN_EVERY`] lookups, as the other loops.
#[inline(never)]
fn sim_measured_group(table: &pcbhash::PcbTable<()>, packets: &[Key]) -> usize {
    let mut found = 0;
    for chunk in packets.chunks(PIN_EVERY) {
        let guard = table.pin();
        for &(local, remote) in chunk {
            found += usize::from(black_box(table.lookup(local, remote, &guard)).is_some());
        }
    }
    found
}

/// Runs `run` (one `sim_measured_*` call), then prints its line.
fn measure(name: &str, ops: usize, run: impl FnOnce() -> usize) {
    settle_epoch();
    let before = allocations();
    let done = black_box(run());
    let allocated = allocations() - before;
    assert!(done > 0 || name == "keys", "{name}: nothing done");
    println!("sim {name} {ops} {allocated}");
}

#[inline(never)]
fn sim_measured_lookups<P: Peer>(peer: &P, keys: &[Key]) -> usize {
    lookups(peer, keys)
}

/// The key stream alone: every key read, nothing looked up.
#[inline(never)]
fn sim_measured_keys(keys: &[Key]) -> usize {
    for key in keys {
        black_box(*key);
    }
    0
}

#[inline(never)]
fn sim_measured_pairs(
    table: &PcbhashOf<()>,
    keys: &[Key],
    conns: &mut Vec<pcbhash::Pcb<()>>,
) -> usize {
    pcbhash_pairs(table, keys, conns)
}

#[inline(never)]
fn sim_measured_map_pairs(
    map: &mut hashbrown::HashMap<Key, u32, ahash::RandomState>,
    keys: &[Key],
) -> usize {
    hashbrown_pairs(map, keys)
}
