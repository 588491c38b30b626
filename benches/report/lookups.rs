//! Exact hits against every peer at each table size (the lookup-time curve),
//! and at the biggest size the SYN, batch, memory and demux-mix rows.

use crate::alloc::{bytes_per_entry, live_bytes, settle_epoch};
use crate::common::{
    demux_mix, probe_order, Build, ConcurrentPeer, Dash, Hashbrown, Key, KeySet, LinearScan,
    MixPlan, Papaya, Pcbhash, PcbhashSocket, Scc, StdRwLock, SEED,
};
use crate::out::{human, md, row, Row};
use crate::svg::Curve;
use crate::timing::{median, of, race, Contender};
use pcbhash::{Cred, Family, PcbTable};

/// The tables of the lookup-time curve, in the order they are shown.
pub const PEERS_ORDER: [&str; 8] = [
    "hashbrown",
    "pcbhash",
    "pcbhash+socket",
    "papaya",
    "scc HashIndex",
    "dashmap",
    "RwLock<HashMap>",
    "linear scan",
];

/// What the lookup part of the report measured.
#[derive(Default)]
pub struct Lookups {
    pub rows: Vec<Row>,
    pub curve: Vec<Curve>,
    pub memory: String,
    pub mix_line: String,
}

/// Sizes 1k, 10k, 100k and 1M up to `big`; `mix_ops` operations per mix
/// thread.
pub fn measure(set: &KeySet, big: usize, mix_ops: usize, rounds: usize) -> Lookups {
    let mut out = Lookups::default();
    let lookups_per_round = 1 << 20;
    for size in [1_000, 10_000, 100_000, 1_000_000] {
        if size > big {
            break;
        }
        let keys = &set.table[..size];
        let probe = probe_order(keys, lookups_per_round, SEED ^ 0x1);
        let scan_probe = &probe[..(lookups_per_round * 1000 / size / 8).min(probe.len())];
        let is_big = size == big;
        let syn_probe = probe_order(&set.syn, lookups_per_round, SEED ^ 0x2);
        let miss_probe: Vec<Key> = syn_probe
            .iter()
            .map(|&(local, remote)| {
                let mut other = local;
                other.set_port(local.port() + 1);
                (other, remote)
            })
            .collect();

        let (hashbrown, hb_bytes) = bytes_per_entry::<Hashbrown>(keys, |_| 0);
        let handles = |p: &Pcbhash| p.conns.capacity() * std::mem::size_of::<pcbhash::Pcb<()>>();
        let (pcb, pcb_bytes) = bytes_per_entry::<Pcbhash>(keys, handles);
        let (papaya, pa_bytes) = bytes_per_entry::<Papaya>(keys, |_| 0);
        let (scc, scc_bytes) = bytes_per_entry::<Scc>(keys, |_| 0);
        let (dash, dash_bytes) = bytes_per_entry::<Dash>(keys, |_| 0);
        let (rwlock, rw_bytes) = bytes_per_entry::<StdRwLock>(keys, |_| 0);
        let scan = (size <= 10_000).then(|| LinearScan::with_keys(keys));
        // The socket variant on the same table as `pcbhash`: same PCBs.
        let pcb_socket_view = PcbhashSocket(&pcb);

        let n = probe.len();
        let mut contenders = vec![
            Contender::lookups("hashbrown", &hashbrown, &probe, n),
            Contender::lookups("pcbhash", &pcb, &probe, n),
            Contender::lookups("pcbhash+socket", &pcb_socket_view, &probe, n),
            Contender::lookups("papaya", &papaya, &probe, n),
            Contender::lookups("scc HashIndex", &scc, &probe, n),
            Contender::lookups("dashmap", &dash, &probe, n),
            Contender::lookups("RwLock<HashMap>", &rwlock, &probe, n),
        ];
        if let Some(scan) = &scan {
            contenders.push(Contender::lookups(
                "linear scan",
                scan,
                scan_probe,
                scan_probe.len(),
            ));
        }
        if is_big {
            contenders.push(Contender::lookups("syn", &pcb, &syn_probe, n));
            contenders.push(Contender::lookups("miss", &pcb, &miss_probe, 0));
            contenders.push(Contender {
                name: "batch16".into(),
                ops: n,
                expect: n,
                run: Box::new(|| pcb.lookup_batch(&probe)),
            });
        }
        let ns = race(&contenders, rounds);
        let by_name = |name: &str| of(&contenders, &ns, name);
        out.curve.push((
            size,
            PEERS_ORDER
                .iter()
                .filter(|name| contenders.iter().any(|c| c.name == **name))
                .map(|name| (name.to_string(), by_name(name)))
                .collect(),
        ));
        if !is_big {
            continue;
        }
        peer_rows(&mut out.rows, size, &by_name);

        // Memory.
        let attach_only = pcb_object_bytes(size.min(100_000));
        out.memory = format!(
            "memory, {n} entries (requested bytes, counting allocator): pcbhash {pcb_bytes:.0} B per \
             connected PCB, of which the PCB object is {attach_only:.0} B and the indexes \
             {:.0} B | hashbrown {hb_bytes:.0} | papaya {pa_bytes:.0} | scc {scc_bytes:.0} | \
             dashmap {dash_bytes:.0} | RwLock<HashMap> {rw_bytes:.0} B per entry",
            pcb_bytes - attach_only,
            n = human(size),
        );
        out.rows.push(row(
            "memory: table overhead per PCB (S excluded)",
            "≤ 96 B",
            format!(
                "{pcb_bytes:.0} B in all ({:.0} B indexes + {attach_only:.0} B PCB object)",
                pcb_bytes - attach_only
            ),
            Some(pcb_bytes <= 96.0),
        ));

        // Demux mix, on the same tables.
        drop(contenders);
        drop(hashbrown);
        let plans: Vec<MixPlan> = (0..2)
            .map(|t| MixPlan::new(keys, &set.fresh[t], mix_ops, t as u64))
            .collect();
        let mix = mix_race(&pcb, &papaya, &scc, &dash, &rwlock, &plans, rounds);
        let (best_name, best) = mix[1..]
            .iter()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .cloned()
            .expect("peers");
        let ratio = mix[0].1 / best;
        out.mix_line = mix
            .iter()
            .map(|(name, mops)| format!("{name} {mops:.2}"))
            .collect::<Vec<_>>()
            .join(" | ");
        out.rows.push(row(
            "demux mix, 2 threads: 98% lookup, 1% accept, 1% close",
            "≥ 1.5× the best peer",
            format!(
                "{ratio:.2}× ({:.2} vs {best_name} {best:.2} Mops/s)",
                mix[0].1
            ),
            Some(ratio >= 1.5),
        ));
    }
    out
}

/// Prints the lookup-time curve: one row per table size, one column per
/// peer in [`PEERS_ORDER`], the median of `rounds` rounds.
pub fn print_curve(curve: &[Curve], rounds: usize) {
    println!("\n## Lookup time (ns per lookup, median of {rounds} rounds)\n");
    print!("| entries |");
    for name in PEERS_ORDER {
        print!(" {} |", md(name));
    }
    println!("\n|---|{}", "---|".repeat(PEERS_ORDER.len()));
    for (size, points) in curve {
        print!("| {} |", human(*size));
        for name in PEERS_ORDER {
            match points.iter().find(|(n, _)| n == name) {
                Some((_, ns)) => print!(" {ns:.1} |"),
                None => print!(" – |"),
            }
        }
        println!();
    }
}

/// The exact-hit, SYN and batch rows at the biggest size.
fn peer_rows(rows: &mut Vec<Row>, size: usize, by_name: &dyn Fn(&str) -> f64) {
    let me = by_name("pcbhash");
    let hb = by_name("hashbrown");
    rows.push(row(
        &format!("exact hit, 1 thread, {} PCBs, random order", human(size)),
        "≤ 1.2× hashbrown",
        format!("{:.2}× ({me:.1} ns vs {hb:.1} ns)", me / hb),
        Some(me / hb <= 1.2),
    ));
    for peer in ["papaya", "scc HashIndex", "dashmap", "RwLock<HashMap>"] {
        let them = by_name(peer);
        rows.push(row(
            &format!("  same, against {peer}"),
            "< 1× (faster)",
            format!("{:.2}× ({them:.1} ns)", me / them),
            Some(me < them),
        ));
    }
    let syn = by_name("syn");
    rows.push(row(
        "SYN: exact miss, then wildcard hit",
        "≤ 1.5× an exact hit",
        format!(
            "{:.2}× ({syn:.1} ns; exact miss alone {:.1} ns)",
            syn / me,
            by_name("miss")
        ),
        Some(syn / me <= 1.5),
    ));
    let batch = by_name("batch16");
    rows.push(row(
        &format!("batched lookup (16, prefetch), {} PCBs", human(size)),
        "≥ 2× single lookups' throughput",
        format!("{:.2}× ({batch:.1} ns per key)", me / batch),
        Some(me / batch >= 2.0),
    ));
}

/// Bytes per PCB of `attach` alone (the PCB object, in no index).
fn pcb_object_bytes(n: usize) -> f64 {
    let table: PcbTable<()> = PcbTable::<()>::builder().seed(SEED).build();
    let mut pcbs = Vec::with_capacity(n);
    settle_epoch();
    let before = live_bytes();
    for _ in 0..n {
        pcbs.push(table.attach(Family::Inet, Cred::ROOT, ()));
    }
    settle_epoch();
    let bytes = live_bytes() - before;
    drop(pcbs);
    bytes as f64 / n as f64
}

/// Mix throughput (Mops/s, median of `rounds` interleaved rounds) of each
/// concurrent peer; pcbhash first.
fn mix_race(
    pcb: &Pcbhash,
    papaya: &Papaya,
    scc: &Scc,
    dash: &Dash,
    rwlock: &StdRwLock,
    plans: &[MixPlan],
    rounds: usize,
) -> Vec<(String, f64)> {
    fn once<P: ConcurrentPeer>(peer: &P, plans: &[MixPlan]) -> f64 {
        let (spent, misses) = demux_mix(peer, plans);
        assert_eq!(misses, 0, "{}: a lookup missed in the mix", P::NAME);
        let ops: usize = plans.iter().map(|p| p.gets.len()).sum();
        ops as f64 / spent.as_secs_f64() / 1e6
    }
    let mut samples = vec![Vec::new(); 5];
    for _ in 0..rounds {
        samples[0].push(once(pcb, plans));
        samples[1].push(once(papaya, plans));
        samples[2].push(once(scc, plans));
        samples[3].push(once(dash, plans));
        samples[4].push(once(rwlock, plans));
    }
    [
        "pcbhash",
        "papaya",
        "scc HashIndex",
        "dashmap",
        "RwLock<HashMap>",
    ]
    .iter()
    .zip(&mut samples)
    .map(|(name, s)| (name.to_string(), median(s)))
    .collect()
}
