//! `demux`: the PCB table as the socket layer of a stack under load.
//!
//! ```text
//! cargo run --release --example demux                      # built-in workload, ~20 s
//! cargo run --release --example demux -- --policy linux --threads 4 --seconds 10
//! cargo run --release --example demux -- --pcap capture.pcap more/*.pcapng
//! ```
//!
//! Without `--pcap` it runs a synthetic workload (`workload.rs`): RX threads
//! demultiplex packets while a control thread accepts, connects, closes and
//! restarts listeners. With `--pcap` it replays captures through a TCP and a
//! UDP table, acting on SYN, FIN and RST like a stateful endpoint
//! (`replay.rs`). Both print a summary and an invariant check, and exit with
//! status 1 if the check fails.
//!
//! Modules, one idea each: `rng` (deterministic randomness), `flows` (the
//! synthetic network), `listeners`, `control` and `rx` (the two kinds of
//! thread), `workload` (running them), `capture` (pcap / pcapng records),
//! `packet` (headers to tuples), `replay` (the stateful replay), `groupcast`
//! (multicast and broadcast datagrams), `steering` (RX queues, and the port
//! filter that keeps an outbound flow's replies on its opener's queue),
//! `outcome` and
//! `errors` (what gets counted), `report` (the summaries).

mod capture;
mod control;
mod errors;
mod flows;
mod groupcast;
mod listeners;
mod outcome;
mod packet;
mod replay;
mod report;
mod rng;
mod rx;
mod socket;
mod steering;
mod workload;

use std::fs::{self, File};
use std::io::{BufReader, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use pcbhash::Policy;

use crate::report::thousands;

/// The kernel whose rules the table follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum PolicyArg {
    /// FreeBSD 14/15: SO_REUSEPORT_LB groups, ports 10000-65535, V6ONLY on.
    Freebsd,
    /// Linux 6.18: SO_REUSEPORT groups, ports 32768-60999, dual stack.
    Linux,
}

impl From<PolicyArg> for Policy {
    fn from(arg: PolicyArg) -> Policy {
        match arg {
            PolicyArg::Freebsd => Policy::FreeBsd,
            PolicyArg::Linux => Policy::Linux,
        }
    }
}

/// Demultiplex packets through a pcbhash table while connections come and go.
///
/// Without --pcap, runs a built-in synthetic workload: RX threads look up
/// every packet (lock-free) while a control thread accepts, connects, moves
/// flows to TIME_WAIT, closes them and restarts listeners. With --pcap,
/// replays real captures instead. Either way it ends with a summary and an
/// invariant check; the exit status is 1 if the check fails.
#[derive(Debug, Parser)]
#[command(name = "demux", version, after_help = EXAMPLES)]
struct Args {
    /// Whose bind-conflict and lookup rules the table follows.
    #[arg(long, value_enum, default_value_t = PolicyArg::Freebsd)]
    policy: PolicyArg,

    /// RX threads looking packets up (the synthetic workload).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=512))]
    threads: u16,

    /// Flow slots: at most this many connections at once, about two thirds
    /// of them open at any time.
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    flows: u32,

    /// How long the RX threads run, in seconds (fractions allowed).
    #[arg(long, default_value_t = 20.0, value_parser = parse_seconds)]
    seconds: f64,

    /// Seed of every random choice: the same seed gives the same workload.
    #[arg(long, default_value_t = 1)]
    seed: u64,

    /// New connections per second the control thread opens.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(0..=10_000_000))]
    churn: u32,

    /// Replay these captures (pcap or pcapng; Ethernet, raw IP or Linux
    /// cooked) instead of the synthetic workload. A directory stands for the
    /// .pcap, .pcapng and .cap files in it.
    #[arg(long, num_args = 1.., value_name = "FILE")]
    pcap: Vec<PathBuf>,
}

const EXAMPLES: &str = "\
Examples:
  cargo run --release --example demux
  cargo run --release --example demux -- --policy linux --threads 4 --seconds 10
  cargo run --release --example demux -- --pcap capture.pcap other.pcapng
  cargo run --release --example demux -- --pcap captures/   # every .pcap/.pcapng in it";

fn parse_seconds(text: &str) -> Result<f64, String> {
    let seconds: f64 = text.parse().map_err(|e| format!("{e}"))?;
    if seconds > 0.0 && seconds <= 86_400.0 {
        Ok(seconds)
    } else {
        Err("must be more than 0 and at most 86400".into())
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.pcap.is_empty() {
        synthetic(&args)
    } else {
        replay(&args)
    }
}

/// Progress for people (a bar on a terminal) and for logs (a plain line every
/// few seconds when stderr is not a terminal).
struct Progress {
    bar: ProgressBar,
    plain: bool,
    last_line: Instant,
}

impl Progress {
    fn new(len: u64, template: &str) -> Self {
        let bar = ProgressBar::new(len);
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        Self {
            bar,
            plain: !std::io::stderr().is_terminal(),
            last_line: Instant::now(),
        }
    }

    fn update(&mut self, position: u64, message: String) {
        self.bar.set_position(position);
        if self.plain && self.last_line.elapsed() >= Duration::from_secs(2) {
            self.last_line = Instant::now();
            eprintln!("progress: {message}");
        }
        self.bar.set_message(message);
    }
}

/// Runs the synthetic workload; fails if an invariant does.
fn synthetic(args: &Args) -> ExitCode {
    let config = workload::Config {
        policy: args.policy.into(),
        threads: usize::from(args.threads),
        flows: args.flows,
        duration: Duration::from_secs_f64(args.seconds),
        seed: args.seed,
        churn: args.churn,
        ..workload::Config::default()
    };
    eprintln!(
        "demux: {} s of synthetic traffic, policy {}, {} RX threads, {} flow slots (--help for options)",
        args.seconds,
        report::policy_name(config.policy),
        config.threads,
        thousands(u64::from(config.flows)),
    );
    let mut progress = Progress::new(
        config.duration.as_millis() as u64,
        "[{elapsed_precise}] [{bar:30}] {msg}",
    );
    let result = workload::run(&config, &mut |p| {
        let message = format!(
            "{:.1}/{:.0} s, {} packets ({}), flows opened {}, closed {}",
            p.elapsed.as_secs_f64().min(p.duration.as_secs_f64()),
            p.duration.as_secs_f64(),
            thousands(p.packets),
            report::rate(p.packets, p.elapsed),
            thousands(p.opened),
            thousands(p.closed),
        );
        progress.update(p.elapsed.as_millis() as u64, message);
    });
    progress.bar.finish_and_clear();
    match result {
        Ok(summary) => {
            print!("{}", report::workload(&summary));
            exit_code(summary.passed())
        }
        Err(error) => {
            eprintln!("demux: {error}");
            ExitCode::from(2)
        }
    }
}

fn exit_code(passed: bool) -> ExitCode {
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The files `paths` stand for: files as given, directories by their
/// capture-looking entries, sorted.
fn capture_files(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = fs::read_dir(path)
                .into_iter()
                .flatten()
                .flatten()
                .map(|entry| entry.path())
                .filter(|p| is_capture_name(p))
                .collect();
            entries.sort();
            files.extend(entries);
        } else {
            files.push(path.clone());
        }
    }
    files
}

fn is_capture_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "pcap" | "pcapng" | "cap"))
}

/// Replays the captures; fails if an invariant does, and with status 2 if a
/// file could not be opened at all (a malformed file is not a failure).
fn replay(args: &Args) -> ExitCode {
    let policy: Policy = args.policy.into();
    let files = capture_files(&args.pcap);
    eprintln!(
        "demux: replaying {} capture files, policy {}",
        files.len(),
        report::policy_name(policy)
    );
    let mut progress = Progress::new(
        files.len() as u64,
        "[{elapsed_precise}] [{bar:30}] {pos}/{len} {msg}",
    );
    let mut replayer = replay::Replayer::new(policy);
    let start = Instant::now();
    let mut unopened = 0;
    for (i, path) in files.iter().enumerate() {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match File::open(path) {
            Ok(file) => {
                replayer.replay(BufReader::new(file));
            }
            Err(error) => {
                progress
                    .bar
                    .suspend(|| eprintln!("demux: {}: {error}", path.display()));
                replayer.unopenable();
                unopened += 1;
            }
        }
        let packets = replayer.report().packets.total;
        progress.update(
            i as u64 + 1,
            format!(
                "{}/{} files, {} packets, {name}",
                i + 1,
                files.len(),
                thousands(packets)
            ),
        );
    }
    let elapsed = start.elapsed();
    progress.bar.finish_and_clear();
    let report = replayer.report();
    print!("{}", report::replay(report, policy, elapsed));
    if files.is_empty() || unopened > 0 {
        eprintln!(
            "demux: {unopened} of {} capture files could not be opened",
            files.len()
        );
        return ExitCode::from(2);
    }
    exit_code(report.passed())
}
