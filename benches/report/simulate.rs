//! The simulated report: counts from valgrind's cache and branch simulator
//! (callgrind), which do not move with the machine's load.
//!
//! Each group of loops (see `measured`) runs in a process of its own under
//! `valgrind --tool=callgrind --cache-sim=yes --branch-sim=yes` with a fixed
//! cache geometry ([`GEOMETRY`]), collecting only the measured loops. The
//! counts are exact for a given binary and input: the same build gives the
//! same figures on any machine.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Instant;

use crate::measured::{Sizes, GROUPS};
use crate::out::{human, row, Row};

/// First-level instruction and data caches of 32 KiB (8-way), a last level
/// of 32 MiB (16-way), 64-byte lines: a server core of these years.
pub const GEOMETRY: [&str; 3] = ["--I1=32768,8,64", "--D1=32768,8,64", "--LL=33554432,16,64"];

/// What one measured loop cost, in all.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    pub ops: u64,
    pub instructions: u64,
    /// Conditional and indirect branches mispredicted.
    pub mispredicts: u64,
    /// Last-level misses: instruction reads, data reads and data writes.
    pub ll_misses: u64,
    /// Allocations made by the loop (counting allocator).
    pub allocations: u64,
}

/// Per-operation figures.
#[derive(Clone, Copy, Debug)]
pub struct PerOp {
    pub instructions: f64,
    pub mispredicts: f64,
    pub ll_misses: f64,
    pub allocations: f64,
}

impl Counts {
    pub fn per_op(&self) -> PerOp {
        let ops = self.ops.max(1) as f64;
        PerOp {
            instructions: self.instructions as f64 / ops,
            mispredicts: self.mispredicts as f64 / ops,
            ll_misses: self.ll_misses as f64 / ops,
            allocations: self.allocations as f64 / ops,
        }
    }
}

impl PerOp {
    /// These figures less `base`'s (the key stream).
    pub fn minus(self, base: PerOp) -> PerOp {
        PerOp {
            instructions: self.instructions - base.instructions,
            mispredicts: self.mispredicts - base.mispredicts,
            ll_misses: self.ll_misses - base.ll_misses,
            allocations: self.allocations - base.allocations,
        }
    }
}

/// Whether valgrind can be run; if not, says so in one line.
fn valgrind_found() -> bool {
    let found = Command::new("valgrind")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        println!(
            "\nsimulated counts skipped: valgrind is not installed (Debian, Ubuntu: `apt-get install valgrind`)"
        );
    }
    found
}

/// Runs every group under callgrind (two at a time) and prints the simulated
/// tables. Prints one line and returns if valgrind is missing.
pub fn report(quick: bool) {
    if !valgrind_found() {
        return;
    }
    let sizes = Sizes::new(quick);
    let started = Instant::now();
    let dir = std::env::temp_dir().join(format!("pcbhash-simulate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let exe = std::env::current_exe().expect("the report's own binary");
    let results = Mutex::new(Vec::new());
    let next = Mutex::new(GROUPS.iter());
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get().min(2));
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let Some(group) = next.lock().unwrap().next() else {
                    break;
                };
                let counts = run_group(&exe, &dir, group, quick);
                results.lock().unwrap().push((*group, counts));
            });
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
    let results = results.into_inner().unwrap();
    let get = |group: &str, name: &str| -> Counts {
        results
            .iter()
            .find(|(g, _)| *g == group)
            .and_then(|(_, loops)| loops.iter().find(|(n, _)| n == name))
            .map(|(_, counts)| *counts)
            .unwrap_or_else(|| panic!("no {name} loop in group {group}"))
    };
    print(&get, sizes, started.elapsed().as_secs_f64());
}

/// One group under callgrind: its loops' names and counts, in order.
fn run_group(exe: &Path, dir: &Path, group: &str, quick: bool) -> Vec<(String, Counts)> {
    let out = dir.join(format!("{group}.out"));
    let mut command = Command::new("valgrind");
    command
        .args([
            "--tool=callgrind",
            "--cache-sim=yes",
            "--branch-sim=yes",
            "--collect-atstart=no",
            "--toggle-collect=*sim_measured_*",
            // A pattern string of its own: callgrind ignores a second option
            // given the same pattern as `--toggle-collect`.
            "--dump-after=*::sim_measured_*",
        ])
        .args(GEOMETRY)
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(exe)
        .args(["--sim-child", group]);
    if quick {
        command.arg("--quick");
    }
    let output = command.output().expect("run valgrind");
    if !output.status.success() {
        panic!(
            "valgrind on group {group} failed: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let loops: Vec<(String, u64, u64)> = stdout
        .lines()
        .filter_map(|line| {
            let mut words = line.strip_prefix("sim ")?.split_whitespace();
            let name = words.next()?.to_string();
            let ops = words.next()?.parse().ok()?;
            let allocations = words.next()?.parse().ok()?;
            Some((name, ops, allocations))
        })
        .collect();
    loops
        .into_iter()
        .enumerate()
        .map(|(i, (name, ops, allocations))| {
            let dump = PathBuf::from(format!("{}.{}", out.display(), i + 1));
            let text = std::fs::read_to_string(&dump)
                .unwrap_or_else(|e| panic!("read {}: {e}", dump.display()));
            let mut counts = parse(&text)
                .unwrap_or_else(|| panic!("no events and totals in {}", dump.display()));
            counts.ops = ops;
            counts.allocations = allocations;
            (name, counts)
        })
        .collect()
}

/// The instructions, mispredicts and last-level misses of one callgrind
/// dump (its `events:` and `totals:` lines).
fn parse(text: &str) -> Option<Counts> {
    let events: Vec<&str> = text
        .lines()
        .find_map(|l| l.strip_prefix("events:"))?
        .split_whitespace()
        .collect();
    let totals: Vec<u64> = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })?
        .split_whitespace()
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    let sum = |names: &[&str]| -> u64 {
        names
            .iter()
            .filter_map(|name| events.iter().position(|e| e == name))
            .map(|i| totals.get(i).copied().unwrap_or(0))
            .sum()
    };
    Some(Counts {
        ops: 0,
        instructions: sum(&["Ir"]),
        mispredicts: sum(&["Bcm", "Bim"]),
        ll_misses: sum(&["ILmr", "DLmr", "DLmw"]),
        allocations: 0,
    })
}

/// The per-operation table and the targets table.
fn print(get: &dyn Fn(&str, &str) -> Counts, sizes: Sizes, seconds: f64) {
    let stream = get("hashbrown", "keys").per_op();
    let net = |group: &str, name: &str| get(group, name).per_op().minus(stream);
    let n = human(sizes.table);
    println!(
        "\n## Simulated counts (callgrind: {}; {n}-entry tables, {} lookups per row, shuffled keys)\n",
        GEOMETRY.join(" "),
        human(sizes.lookups)
    );
    println!(
        "Per operation, less the key stream's own cost ({:.1} instructions, {:.3} mispredicted \
         branches, {:.2} last-level misses per key: a loop that reads the same key array and \
         looks nothing up). Mispredicts: conditional and indirect; last-level misses: \
         instruction and data, read and write.\n",
        stream.instructions, stream.mispredicts, stream.ll_misses
    );
    println!("| per operation | instructions | mispredicted branches | last-level misses | allocations |");
    println!("|---|---|---|---|---|");
    let lines: [(&str, PerOp); 12] = [
        ("exact hit: pcbhash `lookup`", net("pcbhash", "lookup")),
        ("exact hit: hashbrown `get`", net("hashbrown", "lookup")),
        (
            "lookup, then read a field of the socket: pcbhash `lookup` + `socket`",
            net("pcbhash-socket", "socket"),
        ),
        (
            "same: hashbrown `get` + deref of an `Arc<S>`",
            net("hashbrown-arc", "socket"),
        ),
        (
            "IPv6 flows: pcbhash `lookup`",
            net("pcbhash-ipv6", "lookup"),
        ),
        (
            "IPv6 flows: hashbrown `get`",
            net("hashbrown-ipv6", "lookup"),
        ),
        (
            "many local ports: pcbhash `lookup`",
            net("pcbhash-ports", "lookup"),
        ),
        (
            "many local ports: hashbrown `get`",
            net("hashbrown-ports", "lookup"),
        ),
        (
            "SYN (exact miss, then wildcard hit): pcbhash `lookup`",
            net("pcbhash", "syn"),
        ),
        (
            "SYN to a reuseport group of 4 (exact miss, then the group's pick): pcbhash `lookup`",
            net("pcbhash", "group"),
        ),
        (
            "accept + close pair: pcbhash (key reads included)",
            get("pcbhash", "pairs").per_op(),
        ),
        (
            "insert + remove pair: hashbrown (key reads included)",
            get("hashbrown", "pairs").per_op(),
        ),
    ];
    for (what, p) in &lines {
        println!(
            "| {what} | {:.1} | {:.3} | {:.2} | {:.2} |",
            p.instructions, p.mispredicts, p.ll_misses, p.allocations
        );
    }

    let mut rows = Vec::new();
    for (what, group) in [
        ("exact hit", ""),
        ("IPv6 flows", "-ipv6"),
        ("many local ports", "-ports"),
    ] {
        let me = net(&format!("pcbhash{group}"), "lookup");
        let them = net(&format!("hashbrown{group}"), "lookup");
        rows.extend(lookup_rows(what, me, them));
    }
    let socket = net("pcbhash-socket", "socket");
    rows.push(row(
        "lookup, then read a field of the socket",
        "≤ 2 last-level misses",
        format!(
            "{:.2} (hashbrown get + deref of an Arc<S>: {:.2})",
            socket.ll_misses,
            net("hashbrown-arc", "socket").ll_misses
        ),
        Some(at_most(socket.ll_misses, 2.0)),
    ));
    let pair = get("pcbhash", "pairs").per_op();
    rows.push(row(
        "accept + close pair",
        "≤ 1,500 instructions",
        format!("{:.0}", pair.instructions),
        Some(pair.instructions <= 1500.0),
    ));
    rows.push(row(
        "accept + close pair",
        "no allocation beyond the PCB (1 per pair)",
        format!("{:.2} allocations per pair", pair.allocations),
        Some(pair.allocations <= 1.0),
    ));
    println!("\n### Simulated targets\n");
    crate::out::print_targets(&rows);
    println!("\nsimulation took {seconds:.0} s");
}

/// The three simulated targets of an exact-hit workload.
fn lookup_rows(what: &str, me: PerOp, them: PerOp) -> Vec<Row> {
    vec![
        row(
            &format!("{what}: instructions per lookup"),
            "≤ hashbrown's",
            format!("{:.1} vs {:.1}", me.instructions, them.instructions),
            Some(at_most(me.instructions, them.instructions)),
        ),
        row(
            &format!("{what}: mispredicted branches per lookup"),
            "≤ 0.05",
            format!("{:.3} (hashbrown {:.3})", me.mispredicts, them.mispredicts),
            Some(me.mispredicts <= 0.05),
        ),
        row(
            &format!("{what}: last-level misses per lookup"),
            "≤ hashbrown's",
            format!("{:.2} vs {:.2}", me.ll_misses, them.ll_misses),
            Some(at_most(me.ll_misses, them.ll_misses)),
        ),
    ]
}

/// `a ≤ b` to the precision the tables print (two decimals).
fn at_most(a: f64, b: f64) -> bool {
    a <= b + 0.005
}
