//! Running a model: under loom with the crate's bounds, counting the
//! interleavings ([`check`]), and, for a broken variant, in a child process
//! whose failure is the expected result ([`expect_caught`]).

use std::sync::atomic::{AtomicUsize as StdAtomicUsize, Ordering as StdOrdering};
use std::sync::Arc;
use std::time::Instant;

/// What one model run explored.
#[derive(Clone, Copy, Debug)]
pub struct Explored {
    /// Interleavings (loom executions) explored.
    pub interleavings: usize,
    /// The preemption bound in force.
    pub preemptions: Option<usize>,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Runs `model` under loom, counts the interleavings and prints a summary line
/// (`loom model NAME: N interleavings, ...`).
///
/// The preemption bound comes from `LOOM_MAX_PREEMPTIONS` and defaults to 2
/// (the models are exhaustive without a bound too, but slow); the branch limit
/// from `LOOM_MAX_BRANCHES`, default 100 000 (the epoch machinery makes
/// executions long).
pub fn check<F>(name: &str, model: F) -> Explored
where
    F: Fn() + Sync + Send + 'static,
{
    let runs = Arc::new(StdAtomicUsize::new(0));
    let counter = runs.clone();
    let mut builder = loom::model::Builder::new();
    if std::env::var_os("LOOM_MAX_PREEMPTIONS").is_none() {
        builder.preemption_bound = Some(2);
    }
    if std::env::var_os("LOOM_MAX_BRANCHES").is_none() {
        builder.max_branches = 100_000;
    }
    if std::env::var_os(CHILD).is_some() {
        // A broken variant's child process: say which interleaving failed.
        let (name, runs) = (name.to_owned(), runs.clone());
        let reported = std::sync::atomic::AtomicBool::new(false);
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !reported.swap(true, StdOrdering::Relaxed) {
                eprintln!(
                    "loom model {name}: failed in interleaving {}",
                    runs.load(StdOrdering::Relaxed)
                );
            }
            previous(info);
        }));
    }
    let start = Instant::now();
    builder.check(move || {
        counter.fetch_add(1, StdOrdering::Relaxed);
        model();
    });
    let explored = Explored {
        interleavings: runs.load(StdOrdering::Relaxed),
        preemptions: builder.preemption_bound,
        seconds: start.elapsed().as_secs_f64(),
    };
    eprintln!(
        "loom model {name}: {} interleavings, preemption bound {:?}, {:.1} s",
        explored.interleavings, explored.preemptions, explored.seconds
    );
    explored
}

/// Set in the environment of a child process run by [`expect_caught`].
const CHILD: &str = "PCBHASH_LOOM_CHILD";

/// Runs the `#[ignore]`d test `test` of the current test binary in a child
/// process and asserts that it failed with a panic message containing
/// `message`. Echoes the child's `loom model` lines.
///
/// A failing loom model cannot be caught in-process (`#[should_panic]`):
/// loom objects that unwinding drops after the execution ended abort the
/// process.
pub fn expect_caught(test: &str, message: &str) {
    let exe = std::env::current_exe().expect("the test binary");
    let output = std::process::Command::new(exe)
        .args([
            test,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD, "1")
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run the child test");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for line in stderr.lines().filter(|line| line.starts_with("loom model")) {
        eprintln!("{line}");
    }
    assert!(
        !output.status.success(),
        "loom did not catch the broken variant ({test}):\n{stderr}"
    );
    assert!(
        stderr.contains(message),
        "{test} failed, but not with {message:?}:\n{stderr}"
    );
}
