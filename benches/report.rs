//! The performance report: every target of the design's performance table,
//! measured in one run as a ratio against its baseline, printed as one
//! Markdown table with the target next to each measured value.
//!
//! ```sh
//! cargo bench --bench report                      # the report (about 3 minutes)
//! cargo bench --bench report -- --svg lookup.svg  # also plot lookup time against size
//! cargo bench --bench report -- --quick           # smaller tables, a smoke run
//! cargo bench --bench report -- --profile exact   # only a lookup loop, for callgrind
//! ```
//!
//! Timing: each contender runs in turn within a round, rounds repeat, and the
//! median of the rounds is kept, so that a noisy neighbour slows every
//! contender alike instead of one. Memory comes from a counting global
//! allocator (requested bytes, not the allocator's own overhead).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use common::{
    connect_storm, demux_mix, growth, lookups, probe_order, Build, ConcurrentPeer, Dash, Growth,
    Hashbrown, Key, KeySet, LinearScan, MixPlan, Papaya, Pcbhash, PcbhashSocket, Peer, Scc,
    StdRwLock, Storm, SEED, SERVICE,
};
use pcbhash::{Cred, Family, PcbTable, Policy};

// ---------------------------------------------------------------------------
// Counting allocator
// ---------------------------------------------------------------------------

struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to `System` unchanged; the counter is only
// arithmetic on the requested sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live_bytes() -> usize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

/// Lets crossbeam-epoch free what pcbhash retired (single-threaded here).
fn settle_epoch() {
    for _ in 0..256 {
        crossbeam_epoch::pin().flush();
    }
}

/// Bytes per entry that building `P` from `keys` leaves allocated, less
/// `extra` (memory the adapter holds that is not the table's).
fn bytes_per_entry<P: Build>(keys: &[Key], extra: impl Fn(&P) -> usize) -> (P, f64) {
    settle_epoch();
    let before = live_bytes();
    let peer = P::with_keys(keys);
    settle_epoch();
    let grown = live_bytes().saturating_sub(before + extra(&peer));
    (peer, grown as f64 / keys.len() as f64)
}

// ---------------------------------------------------------------------------
// Timing
// ---------------------------------------------------------------------------

/// One timed contender: `run` does `ops` operations and returns how many
/// succeeded, which must equal `expect`.
struct Contender<'a> {
    name: String,
    ops: usize,
    expect: usize,
    run: Box<dyn Fn() -> usize + 'a>,
}

impl<'a> Contender<'a> {
    fn lookups<P: Peer>(name: &str, peer: &'a P, probe: &'a [Key], expect: usize) -> Self {
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
fn race(contenders: &[Contender<'_>], rounds: usize) -> Vec<f64> {
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

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

// ---------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------

struct Options {
    quick: bool,
    svg: Option<String>,
    profile: Option<String>,
}

fn options() -> Options {
    let mut options = Options {
        quick: false,
        svg: None,
        profile: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--svg" => options.svg = args.next(),
            "--profile" => options.profile = args.next(),
            // `cargo bench` passes `--bench`; criterion's filters mean nothing here.
            _ => {}
        }
    }
    options
}

/// One row of the targets table.
struct Row {
    workload: String,
    target: String,
    measured: String,
    met: Option<bool>,
}

fn row(workload: &str, target: &str, measured: String, met: Option<bool>) -> Row {
    Row {
        workload: workload.to_string(),
        target: target.to_string(),
        measured,
        met,
    }
}

const PEERS_ORDER: [&str; 8] = [
    "hashbrown",
    "pcbhash",
    "pcbhash+socket",
    "papaya",
    "scc HashIndex",
    "dashmap",
    "RwLock<HashMap>",
    "linear scan",
];

fn main() {
    let options = options();
    if let Some(what) = &options.profile {
        profile(what);
        return;
    }
    let big = if options.quick { 100_000 } else { 1_000_000 };
    let rounds = if options.quick { 3 } else { 5 };
    let started = Instant::now();
    println!("{}", machine());

    // Exact hits at every size; the biggest size also runs SYN, batch, mix.
    let sizes: Vec<usize> = [1_000, 10_000, 100_000, 1_000_000]
        .into_iter()
        .filter(|&s| s <= big)
        .collect();
    let lookups_per_round = 1 << 20;
    let mix_ops = if options.quick { 100_000 } else { 1_000_000 };
    let set = KeySet::new(big, big, mix_ops / 100 + common::MIX_BACKLOG + 1, 2);
    let mut curve: Vec<(usize, Vec<(String, f64)>)> = Vec::new();
    let mut rows = Vec::new();
    let mut memory = String::new();
    let mut mix_line = String::new();
    for &size in &sizes {
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
        let by_name = |name: &str| {
            contenders
                .iter()
                .zip(&ns)
                .find(|(c, _)| c.name == name)
                .map(|(_, ns)| *ns)
                .expect("contender")
        };
        curve.push((
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

        // Exact hit.
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
        let with_socket = by_name("pcbhash+socket");
        rows.push(row(
            "  lookup + `socket_ref()`, against hashbrown",
            "(information)",
            format!("{:.2}× ({with_socket:.1} ns)", with_socket / hb),
            None,
        ));
        // SYN.
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
        // Batch.
        let batch = by_name("batch16");
        rows.push(row(
            &format!("batched lookup (16, prefetch), {} PCBs", human(size)),
            "≥ 2× single lookups' throughput",
            format!("{:.2}× ({batch:.1} ns per key)", me / batch),
            Some(me / batch >= 2.0),
        ));

        // Memory.
        let attach_only = pcb_object_bytes(size.min(100_000));
        memory = format!(
            "memory, {n} entries (requested bytes, counting allocator): pcbhash {pcb_bytes:.0} B per \
             connected PCB, of which the PCB object is {attach_only:.0} B and the indexes \
             {:.0} B | hashbrown {hb_bytes:.0} | papaya {pa_bytes:.0} | scc {scc_bytes:.0} | \
             dashmap {dash_bytes:.0} | RwLock<HashMap> {rw_bytes:.0} B per entry",
            pcb_bytes - attach_only,
            n = human(size),
        );
        rows.push(row(
            "memory: table overhead per PCB (S excluded)",
            "≤ 128 B",
            format!(
                "{pcb_bytes:.0} B in all ({:.0} B indexes + {attach_only:.0} B PCB object)",
                pcb_bytes - attach_only
            ),
            Some(pcb_bytes <= 128.0),
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
        mix_line = mix
            .iter()
            .map(|(name, mops)| format!("{name} {mops:.2}"))
            .collect::<Vec<_>>()
            .join(" | ");
        rows.push(row(
            "demux mix, 2 threads: 98% lookup, 1% accept, 1% close",
            "≥ 1.5× the best peer",
            format!(
                "{ratio:.2}× ({:.2} vs {best_name} {best:.2} Mops/s)",
                mix[0].1
            ),
            Some(ratio >= 1.5),
        ));
    }

    // Connect storms.
    let quick_range = options.quick.then_some(20_000..=29_999);
    // Both policies fill their whole default range (the quick run, a
    // smaller one).
    let linux_range = options.quick.then_some(20_000..=23_999);
    let storms: Vec<Storm> = [
        (Policy::FreeBsd, true),
        (Policy::Linux, true),
        (Policy::FreeBsd, false),
    ]
    .into_iter()
    .map(|(policy, randomized)| {
        let range = match policy {
            Policy::FreeBsd => quick_range.clone(),
            Policy::Linux => linux_range.clone(),
        };
        connect_storm(policy, range, randomized)
    })
    .collect();
    for storm in &storms {
        rows.push(row(
            &format!(
                "connect storm, {}: {} connects fill {}..={}",
                storm_name(storm),
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
        ));
    }

    // Growth.
    let grow_keys = &set.table[..big];
    let mut growths: Vec<(&str, Growth)> = Vec::new();
    let runs = if options.quick { 1 } else { 3 };
    for _ in 0..runs {
        growths.push(("pcbhash", grown::<Pcbhash>(grow_keys)));
    }
    growths.push(("papaya", grown::<Papaya>(grow_keys)));
    growths.push(("scc HashIndex", grown::<Scc>(grow_keys)));
    growths.push(("dashmap", grown::<Dash>(grow_keys)));
    growths.push(("RwLock<HashMap>", grown::<StdRwLock>(grow_keys)));
    let ours: Vec<&Growth> = growths
        .iter()
        .filter(|(n, _)| *n == "pcbhash")
        .map(|(_, g)| g)
        .collect();
    let worst = ours.iter().map(|g| g.max_ns).max().unwrap_or(0);
    let quiet = ours.iter().map(|g| g.max_quiet_ns).max().unwrap_or(0);
    let p999 = ours.iter().map(|g| g.p999_ns).max().unwrap_or(0);
    let misses: u64 = ours.iter().map(|g| g.misses).sum();
    rows.push(row(
        &format!("growth 0 → {} while another thread looks up", human(big)),
        "worst lookup ≤ 50 µs",
        format!(
            "worst {} ({} without preemption), p99.9 {}, {misses} misses, {runs} runs",
            us(worst),
            us(quiet),
            us(p999)
        ),
        Some(worst <= 50_000),
    ));

    // Output.
    println!("\n## Targets\n");
    println!("| workload | target | measured | met |");
    println!("|---|---|---|---|");
    for r in &rows {
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "",
        };
        println!(
            "| {} | {} | {} | {met} |",
            md(&r.workload),
            r.target,
            md(&r.measured)
        );
    }
    println!("\n{}", md(&memory));
    println!("\ndemux mix throughput, Mops/s: {}", md(&mix_line));

    println!("\n## Lookup time (ns per lookup, median of {rounds} rounds)\n");
    print!("| entries |");
    for name in PEERS_ORDER {
        print!(" {} |", md(name));
    }
    println!("\n|---|{}", "---|".repeat(PEERS_ORDER.len()));
    for (size, points) in &curve {
        print!("| {} |", human(*size));
        for name in PEERS_ORDER {
            match points.iter().find(|(n, _)| n == name) {
                Some((_, ns)) => print!(" {ns:.1} |"),
                None => print!(" – |"),
            }
        }
        println!();
    }

    println!("\n## Connect storms (mean ns per connect, by tenth of the run)\n");
    println!(
        "| policy | range | 1st | 2nd | 3rd | 4th | 5th | 6th | 7th | 8th | 9th | 10th | end |"
    );
    println!("|---|---|{}", "---|".repeat(11));
    for s in &storms {
        print!(
            "| {} | {}..={} |",
            storm_name(s),
            s.range.start(),
            s.range.end()
        );
        for d in s.decile_ns {
            print!(" {d:.0} |");
        }
        println!(" {:?} after {:.1} s |", s.end, s.total.as_secs_f64());
    }

    println!("\n## Growth to {} with a concurrent reader\n", human(big));
    println!("| table | p50 | p99 | p99.9 | worst | worst, not preempted | windows preempted | lookups | misses | fill |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (name, g) in &growths {
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
    println!("\nreport took {:.0} s", started.elapsed().as_secs_f64());

    if let Some(path) = &options.svg {
        std::fs::write(path, svg(&curve)).expect("write the SVG");
        println!("wrote {path}");
    }
}

/// Bytes per PCB of `attach` alone (the PCB object, in no index).
fn pcb_object_bytes(n: usize) -> f64 {
    let table: PcbTable<()> = PcbTable::<()>::builder().seed(SEED).build();
    let socket = Arc::new(());
    let mut pcbs = Vec::with_capacity(n);
    settle_epoch();
    let before = live_bytes();
    for _ in 0..n {
        pcbs.push(table.attach(Family::Inet, Cred::ROOT, socket.clone()));
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

/// Growth, then the table dropped outside the measurement.
fn grown<P: ConcurrentPeer>(keys: &[Key]) -> Growth {
    let (stats, peer, conns) = growth::<P>(keys);
    drop(conns);
    drop(peer);
    settle_epoch();
    stats
}

/// A name as Markdown: a type with generics in backticks, so that its `<...>`
/// is not taken for an HTML tag.
fn md(text: &str) -> String {
    text.replace("RwLock<HashMap>", "`RwLock<HashMap>`")
}

fn storm_name(storm: &Storm) -> String {
    match (storm.policy, storm.randomized) {
        (Policy::FreeBsd, false) => "FreeBSD, randomized_ports(false)".into(),
        (Policy::FreeBsd, true) => "FreeBSD".into(),
        (Policy::Linux, _) => "Linux".into(),
    }
}

fn human(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

fn us(ns: u64) -> String {
    if ns >= 1_000_000 {
        format!("{:.1} ms", ns as f64 / 1e6)
    } else {
        format!("{:.1} µs", ns as f64 / 1e3)
    }
}

/// What the machine is, as far as the report can tell.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or_else(String::new, |kb| {
            format!(", {:.0} GiB", kb / 1024.0 / 1024.0)
        });
    format!(
        "# pcbhash performance report\n\nmachine: {cpu}, {cores} cores{memory}; {} build; one run, ratios from the same run",
        if cfg!(debug_assertions) { "debug" } else { "release" }
    )
}

/// Lookup time against table size, one line per table, log-log axes.
fn svg(curve: &[(usize, Vec<(String, f64)>)]) -> String {
    const W: f64 = 720.0;
    const H: f64 = 440.0;
    const LEFT: f64 = 70.0;
    const RIGHT: f64 = 190.0;
    const TOP: f64 = 40.0;
    const BOTTOM: f64 = 50.0;
    const COLORS: [&str; 8] = [
        "#444444", "#d62728", "#ff7f0e", "#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2",
    ];
    let sizes: Vec<f64> = curve.iter().map(|(s, _)| (*s as f64).log10()).collect();
    let all: Vec<f64> = curve
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, ns)| ns.log10()))
        .collect();
    let (x0, x1) = (sizes[0], sizes[sizes.len() - 1].max(sizes[0] + 1.0));
    let y0 = all.iter().copied().fold(f64::MAX, f64::min).floor();
    let y1 = all
        .iter()
        .copied()
        .fold(f64::MIN, f64::max)
        .ceil()
        .max(y0 + 1.0);
    let x = |v: f64| LEFT + (v - x0) / (x1 - x0) * (W - LEFT - RIGHT);
    let y = |v: f64| H - BOTTOM - (v - y0) / (y1 - y0) * (H - TOP - BOTTOM);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="22" font-size="14">pcbhash: exact-hit lookup time against table size (1 thread, random order)</text>"#
    );
    for (size, log) in curve.iter().map(|(s, _)| *s).zip(&sizes) {
        let px = x(*log);
        let _ = writeln!(
            out,
            r##"<line x1="{px}" y1="{TOP}" x2="{px}" y2="{}" stroke="#ddd"/><text x="{px}" y="{}" text-anchor="middle">{}</text>"##,
            H - BOTTOM,
            H - BOTTOM + 18.0,
            human(size)
        );
    }
    let mut decade = y0;
    while decade <= y1 {
        let py = y(decade);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{py}" x2="{}" y2="{py}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{} ns</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            py + 4.0,
            10f64.powf(decade)
        );
        decade += 1.0;
    }
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">entries (log scale)</text>"#,
        (LEFT + W - RIGHT) / 2.0,
        H - 12.0
    );
    for (i, name) in PEERS_ORDER.iter().enumerate() {
        let points: Vec<String> = curve
            .iter()
            .zip(&sizes)
            .filter_map(|((_, p), sx)| {
                p.iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, ns)| format!("{:.1},{:.1}", x(*sx), y(ns.log10())))
            })
            .collect();
        if points.is_empty() {
            continue;
        }
        let color = COLORS[i % COLORS.len()];
        let _ = writeln!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
            points.join(" ")
        );
        let ly = TOP + 10.0 + i as f64 * 18.0;
        let _ = writeln!(
            out,
            r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
            W - RIGHT + 12.0,
            W - RIGHT + 32.0,
            W - RIGHT + 38.0,
            ly + 4.0,
            name.replace('<', "&lt;").replace('>', "&gt;")
        );
    }
    out.push_str("</svg>\n");
    out
}

/// Only a lookup loop, for `valgrind --tool=callgrind
/// --toggle-collect='*profile_loop*'`: `exact`, `syn`, `miss`, `batch`,
/// `socket`, `churn` (20k accepts and closes; pcbhash) or `hashbrown`, on
/// 100k entries.
fn profile(what: &str) {
    let set = KeySet::new(100_000, 100_000, 0, 0);
    let probe = probe_order(&set.table, 200_000, SEED ^ 0x1);
    let syn = probe_order(&set.syn, 200_000, SEED ^ 0x2);
    let miss: Vec<Key> = syn
        .iter()
        .map(|&(_, remote)| {
            let mut local = SERVICE;
            local.set_port(SERVICE.port() + 1);
            (local, remote)
        })
        .collect();
    let hits = match what {
        "hashbrown" => profile_loop(&Hashbrown::with_keys(&set.table), &probe),
        "exact" | "syn" | "miss" | "batch" | "socket" => {
            let table = Pcbhash::with_keys(&set.table);
            match what {
                "exact" => profile_loop(&table, &probe),
                "syn" => profile_loop(&table, &syn),
                "miss" => profile_loop(&table, &miss),
                "socket" => profile_loop(&PcbhashSocket(&table), &probe),
                _ => profile_batch(&table, &probe),
            }
        }
        "churn" => {
            let table = Pcbhash::with_keys(&set.table);
            profile_churn(&table, &set.syn[..20_000])
        }
        other => {
            panic!("--profile: exact, syn, miss, batch, socket, churn or hashbrown, not {other}")
        }
    };
    println!("{what}: {hits} hits of {}", probe.len());
}

#[inline(never)]
fn profile_loop<P: Peer>(peer: &P, keys: &[Key]) -> usize {
    lookups(peer, keys)
}

/// 20k accepts, then their closes, on a table of 100k connections.
#[inline(never)]
fn profile_churn(table: &Pcbhash, keys: &[Key]) -> usize {
    let conns: Vec<_> = keys.iter().map(|key| table.insert(key, 0)).collect();
    let accepted = conns.len();
    for (key, conn) in keys.iter().zip(conns) {
        table.remove(key, conn);
    }
    accepted
}

#[inline(never)]
fn profile_batch(table: &Pcbhash, keys: &[Key]) -> usize {
    table.lookup_batch(keys)
}
