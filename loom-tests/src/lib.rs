//! Loom models of `pcbhash`'s concurrency contract.
//!
//! The models compile only under `--cfg pcbhash_loom --cfg crossbeam_loom`:
//!
//! ```sh
//! RUSTFLAGS="--cfg pcbhash_loom --cfg crossbeam_loom" LOOM_MAX_PREEMPTIONS=2 \
//!     cargo test --release -p pcbhash-loom-tests -- --nocapture
//! ```
//!
//! `crossbeam_loom` matters: without it crossbeam-epoch keeps its `std` atomics,
//! loom cannot see the epoch machinery, and every model explores a single
//! interleaving of it. This crate turns on `pcbhash`'s `loom` feature (which
//! turns on crossbeam-epoch's) whenever `pcbhash_loom` is set.
//!
//! Each model is a function here, run by `tests/models.rs`; it asserts one
//! property of the contract in every interleaving loom explores and prints how
//! many interleavings that was. A model that cannot fail proves nothing, so
//! `tests/broken.rs` runs some of the same models against tables built with a
//! piece of synchronisation deliberately removed (`--cfg pcbhash_broken`, see
//! `Builder::broken`) and expects loom to find the failing interleaving:
//!
//! ```sh
//! RUSTFLAGS="--cfg pcbhash_loom --cfg crossbeam_loom --cfg pcbhash_broken" \
//!     LOOM_MAX_PREEMPTIONS=2 cargo test --release -p pcbhash-loom-tests --test broken
//! ```
//!
//! Loom cannot see a use-after-free by itself: `.ci/asan.sh` runs the same
//! models under AddressSanitizer, and proves that this catches one with a table
//! that frees what its exact index retires at once (`free-at-once`, the
//! `#[ignore]`d `free_at_once_is_caught_by_asan` in `tests/broken.rs`).
//!
//! | model | property |
//! |---|---|
//! | `lookup_vs_close` | a lookup started after close returned misses; `socket()` is `None` once close returned; nothing is freed under a guard |
//! | `bind_vs_bind` | two binds of one address without reuse options: exactly one wins, the other gets `EADDRINUSE` |
//! | `connect_vs_connect` | two connects to one 4-tuple: exactly one wins |
//! | `lookup_during_connect` | a lookup always finds the PCB while it moves from the wildcard to the exact index |
//! | `bind_vs_time_wait` | the seed's race: a bind checks against a PCB entering TIME_WAIT and closing; the errno is right in every order, and no socket is touched |
//! | `lb_group_vs_lookup` | a load-balance group gains and loses a member while a lookup runs: the lookup always finds a member, never one closed before it started |
//! | `lookup_during_connect_with_listener` | TCP: the connecting PCB is always found, never the listener behind it (no false negative that falls back to the listener) |
//! | `lookup_during_disconnect` | UDP disconnect moves the PCB back to the wildcard index: always found |
//! | `accept_over_time_wait_vs_lookup` | an accept replaces a TIME_WAIT PCB on its 4-tuple: the lookup finds one of them, never the listener |
//! | `lookup_while_move_parked` | a writer parks in the middle of a connect or a disconnect until the lookup returned: the lookup returns, with the moving PCB (one model per step of the move) |
//! | `lookup_while_reconnect_parked` | Linux UDP: a connected PCB connecting to another peer parks at each step of its way out of the exact index and back: the lookup of the peer it shows returns it |
//! | `lookup_during_incremental_resize` | the exact index grows from two buckets to four over two writes: both old connections are always found |
//! | `lookup_during_resize` | the exact index grows from one bucket to two while a lookup runs: the lookup finds the connection |

#![cfg(pcbhash_loom)]
#![warn(missing_docs)]

// Without crossbeam's cfg the models still build and pass, exploring one
// interleaving or a handful (measured: 1 instead of 806 for
// `lookup_during_connect`). Refuse that silent failure.
#[cfg(not(crossbeam_loom))]
compile_error!(
    "the loom models need --cfg crossbeam_loom as well as --cfg pcbhash_loom \
     (RUSTFLAGS=\"--cfg pcbhash_loom --cfg crossbeam_loom\")"
);

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize as StdAtomicUsize, Ordering as StdOrdering};
use std::sync::Arc;
use std::time::Instant;

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;
use pcbhash::{Builder, Cred, Error, Family, PcbTable, Policy, Protocol, State};

/// The socket type of the models: it counts its own drops.
#[derive(Debug)]
pub struct Sock {
    drops: Arc<StdAtomicUsize>,
}

impl Sock {
    /// A socket whose drop increments `drops`.
    pub fn new(drops: &Arc<StdAtomicUsize>) -> Sock {
        Sock {
            drops: drops.clone(),
        }
    }
}

impl Drop for Sock {
    fn drop(&mut self) {
        self.drops.fetch_add(1, StdOrdering::SeqCst);
    }
}

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

/// `"a.b.c.d:port"` as a socket address.
pub fn addr(text: &str) -> SocketAddr {
    text.parse().expect("a socket address")
}

/// A table builder for the models: fixed seed, FreeBSD rules unless told
/// otherwise, and, with `broken`, one piece of synchronisation removed.
pub fn builder(protocol: Protocol, broken: Option<&str>) -> Builder {
    let builder = PcbTable::<Sock>::builder()
        .policy(Policy::FreeBsd)
        .protocol(protocol)
        .seed(7)
        .ephemeral_ports(40000..=40001)
        // Few exact-index buckets: each is eight atomics for loom to track.
        .capacity(16);
    apply_broken(builder, broken)
}

#[cfg(pcbhash_broken)]
fn apply_broken(builder: Builder, broken: Option<&str>) -> Builder {
    match broken {
        Some(variant) => builder.broken(variant),
        None => builder,
    }
}

#[cfg(not(pcbhash_broken))]
fn apply_broken(builder: Builder, broken: Option<&str>) -> Builder {
    assert!(
        broken.is_none(),
        "broken variants need --cfg pcbhash_broken"
    );
    builder
}

/// A credential whose uid names the PCB, so that a lookup result can be
/// identified after its socket is gone. Privileged, so that the uid never
/// matters to a conflict check.
pub fn cred(uid: u32) -> Cred {
    Cred {
        uid,
        privileged: true,
    }
}

/// Lookup vs close of a connected PCB.
///
/// Thread A closes the PCB, then raises `closed`. Thread B looks its tuple up
/// and, if it finds it, reads its fields and its socket while a concurrent
/// close retires it. Asserts: a lookup that started after `closed` was raised
/// misses; `socket()` read after `closed` was raised is `None`; every field
/// read under the guard is the PCB's own (a freed PCB would not be); the
/// socket is dropped exactly once.
pub fn lookup_vs_close(broken: Option<&'static str>) {
    let drops = Arc::new(StdAtomicUsize::new(0));
    let table = Arc::new(builder(Protocol::Udp, broken).build::<Sock>());
    let (local, remote) = (addr("127.0.0.1:1000"), addr("127.0.0.2:2000"));
    let pcb = table.attach(Family::Inet, cred(1), Sock::new(&drops));
    pcb.bind(local).unwrap();
    pcb.connect(remote).unwrap();
    let closed = Arc::new(AtomicBool::new(false));

    let closer = {
        let (table, closed) = (table.clone(), closed.clone());
        thread::spawn(move || {
            pcb.close();
            closed.store(true, Ordering::SeqCst);
            table.flush();
        })
    };
    let guard = table.pin();
    let closed_before = closed.load(Ordering::SeqCst);
    let found = table.lookup(local, remote, &guard);
    if closed_before {
        assert!(
            found.is_none(),
            "a lookup after close returned found the PCB"
        );
    }
    if let Some(found) = found {
        assert_eq!(found.cred().uid, 1);
        assert_eq!(found.local_addr(), local);
        assert!(matches!(found.state(), State::Connected | State::Dropped));
        let closed_now = closed.load(Ordering::SeqCst);
        let socket = found.socket();
        if closed_now {
            assert!(socket.is_none(), "socket() after close returned");
        }
        table.flush();
        // A socket read before the close is still there: it is dropped
        // through the epoch, after this guard.
        if let Some(socket) = socket {
            assert!(
                socket.drops.load(StdOrdering::SeqCst) == 0,
                "dropped under a guard"
            );
        }
        // Still readable: the guard keeps the PCB alive through the close.
        assert_eq!(found.peer_addr(), Some(remote));
    }
    drop(guard);
    closer.join().unwrap();
    assert!(table.lookup(local, remote, &table.pin()).is_none());
    assert_eq!(table.len(), 0);
    // The socket's release waits in the epoch; loom does not promise when a
    // finished thread's deferred work runs, so this model checks "never twice"
    // (the stress test and the `concurrent` fuzz target check "exactly once").
    assert!(
        drops.load(StdOrdering::SeqCst) <= 1,
        "socket dropped at most once"
    );
}

/// Two binds of `127.0.0.1:1000`, neither with a reuse option: exactly one
/// wins; the other fails with `AddrInUse` (`EADDRINUSE`) and changes nothing.
pub fn bind_vs_bind(broken: Option<&'static str>) {
    let drops = Arc::new(StdAtomicUsize::new(0));
    let table = Arc::new(builder(Protocol::Tcp, broken).build::<Sock>());
    let local = addr("127.0.0.1:1000");
    let a = table.attach(Family::Inet, cred(1), Sock::new(&drops));
    let b = table.attach(Family::Inet, cred(2), Sock::new(&drops));

    let other = thread::spawn(move || {
        let result = b.bind(local);
        (result, b)
    });
    let mine = a.bind(local);
    let (theirs, b) = other.join().unwrap();
    let wins = [mine, theirs].iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "both or neither bind won: {mine:?} {theirs:?}");
    let loser = if mine.is_ok() { theirs } else { mine };
    assert_eq!(loser, Err(Error::AddrInUse));
    assert_eq!(loser.unwrap_err().errno(), libc_eaddrinuse());
    assert_eq!(table.len(), 1);
    let guard = table.pin();
    let holder = table
        .lookup_local(local, false, &guard)
        .expect("the winner");
    let winner = if mine.is_ok() { &a } else { &b };
    assert!(holder.is(winner));
    drop(guard);
    drop((a, b));
    assert_eq!(table.len(), 0);
}

/// Two PCBs sharing `127.0.0.1:1000` (SO_REUSEPORT) connect to the same peer:
/// exactly one gets the 4-tuple; the other fails (`EADDRINUSE`, FreeBSD) and
/// stays bound.
pub fn connect_vs_connect(broken: Option<&'static str>) {
    let drops = Arc::new(StdAtomicUsize::new(0));
    let table = Arc::new(builder(Protocol::Tcp, broken).build::<Sock>());
    let (local, remote) = (addr("127.0.0.1:1000"), addr("127.0.0.2:2000"));
    let a = table.attach(Family::Inet, cred(1), Sock::new(&drops));
    let b = table.attach(Family::Inet, cred(2), Sock::new(&drops));
    for pcb in [&a, &b] {
        pcb.set_reuse_port(true).unwrap();
        pcb.bind(local).unwrap();
    }

    let other = thread::spawn(move || {
        let result = b.connect(remote);
        (result, b)
    });
    let mine = a.connect(remote);
    let (theirs, b) = other.join().unwrap();
    let wins = [mine, theirs].iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "both or neither connect won: {mine:?} {theirs:?}");
    let (winner, loser, lost) = if mine.is_ok() {
        (&a, &b, theirs)
    } else {
        (&b, &a, mine)
    };
    assert_eq!(lost, Err(Error::AddrInUse));
    assert_eq!(loser.state(), State::Bound);
    assert_eq!(winner.state(), State::Connected);
    let guard = table.pin();
    assert!(table.lookup(local, remote, &guard).unwrap().is(winner));
    drop(guard);
    assert_eq!(table.len(), 2);
}

/// A UDP PCB bound to `127.0.0.1:1000` connects to a peer while another
/// thread looks that flow up. Before the move the PCB matches in the wildcard
/// index, after it in the exact index: the lookup must find it every time.
pub fn lookup_during_connect(broken: Option<&'static str>) {
    let drops = Arc::new(StdAtomicUsize::new(0));
    let table = Arc::new(builder(Protocol::Udp, broken).build::<Sock>());
    let (local, remote) = (addr("127.0.0.1:1000"), addr("127.0.0.2:2000"));
    let pcb = table.attach(Family::Inet, cred(1), Sock::new(&drops));
    pcb.bind(local).unwrap();

    let mover = thread::spawn(move || {
        pcb.connect(remote).unwrap();
        pcb
    });
    let guard = table.pin();
    let found = table.lookup(local, remote, &guard);
    let found = found.expect("false negative: the PCB was not found while it moved");
    assert_eq!(found.cred().uid, 1);
    drop(guard);
    let pcb = mover.join().unwrap();
    assert_eq!(pcb.state(), State::Connected);
}

/// TCP: a listener on `0.0.0.0:1000` and a PCB bound to `127.0.0.1:1000`
/// (both SO_REUSEPORT); the PCB connects while a lookup runs for its flow.
///
/// Before the move the bound PCB outranks the listener in the wildcard stage
/// (a specific address beats a wildcard), after it the connection matches
/// exactly: so the lookup must find the PCB every time, never fall back to
/// the listener, and find it connected once `connect()` returned before the
/// lookup started.
pub fn lookup_during_connect_with_listener(broken: Option<&'static str>) {
    let drops = Arc::new(StdAtomicUsize::new(0));
    let table = Arc::new(builder(Protocol::Tcp, broken).build::<Sock>());
    let (local, remote) = (addr("127.0.0.1:1000"), addr("127.0.0.2:2000"));
    let listener = table.attach(Family::Inet, cred(1), Sock::new(&drops));
    listener.set_reuse_port(true).unwrap();
    listener.bind(addr("0.0.0.0:1000")).unwrap();
    listener.listen().unwrap();
    let pcb = table.attach(Family::Inet, cred(2), Sock::new(&drops));
    pcb.set_reuse_port(true).unwrap();
    pcb.bind(local).unwrap();
    let connected = Arc::new(AtomicBool::new(false));

    let mover = {
        let connected = connected.clone();
        thread::spawn(move || {
            pcb.connect(remote).unwrap();
            connected.store(true, Ordering::SeqCst);
            pcb
        })
    };
    let guard = table.pin();
    let connected_before = connected.load(Ordering::SeqCst);
    let found = table
        .lookup(local, remote, &guard)
        .expect("false negative: neither the listener nor the connection was found");
    assert_eq!(
        found.cred().uid,
        2,
        "false negative: the lookup fell back to the listener while the PCB moved"
    );
    if connected_before {
        assert_eq!(found.state(), State::Connected);
    }
    drop(guard);
    let _pcb = mover.join().unwrap();
    drop(listener);
}

/// UDP `connect(AF_UNSPEC)`: a connected PCB on `127.0.0.1:1000` goes back to
/// the wildcard index (FreeBSD: bound to `0.0.0.0:1000`) while a lookup runs
/// for its old flow. It matches in both places, so the lookup must find it.
pub fn lookup_during_disconnect(broken: Option<&'static str>) {
    let drops = Arc::new(StdAtomicUsize::new(0));
    let table = Arc::new(builder(Protocol::Udp, broken).build::<Sock>());
    let (local, remote) = (addr("127.0.0.1:1000"), addr("127.0.0.2:2000"));
    let pcb = table.attach(Family::Inet, cred(1), Sock::new(&drops));
    pcb.bind(local).unwrap();
    pcb.connect(remote).unwrap();

    let mover = thread::spawn(move || {
        pcb.disconnect().unwrap();
        pcb
    });
    let guard = table.pin();
    let found = table
        .lookup(local, remote, &guard)
        .expect("false negative: the PCB was not found while it disconnected");
    assert_eq!(found.cred().uid, 1);
    drop(guard);
    let pcb = mover.join().unwrap();
    assert_eq!(pcb.state(), State::Bound);
    assert_eq!(pcb.local_addr(), Some(addr("0.0.0.0:1000")));
}

/// A writer parked at one named step of a move: the table's move-step hook
/// blocks there, once armed, on a gate the model's thread holds.
struct Parking {
    gate: Arc<loom::sync::Mutex<()>>,
    parked: Arc<AtomicBool>,
    armed: Arc<std::sync::atomic::AtomicBool>,
}

impl Parking {
    /// The parking for `step`, and the hook to build the table with.
    fn at(step: &'static str) -> (Self, impl Fn(&'static str) + Send + Sync + 'static) {
        let parking = Parking {
            gate: Arc::new(loom::sync::Mutex::new(())),
            parked: Arc::new(AtomicBool::new(false)),
            armed: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        };
        let (gate, parked, armed) = (
            parking.gate.clone(),
            parking.parked.clone(),
            parking.armed.clone(),
        );
        let hook = move |at: &'static str| {
            if at == step && armed.load(StdOrdering::SeqCst) {
                parked.store(true, Ordering::SeqCst);
                drop(gate.lock().unwrap());
            }
        };
        (parking, hook)
    }

    /// Closes the gate and arms the hook: the next time the writer reaches
    /// the step, it parks until the returned guard is dropped.
    fn arm(&self) -> loom::sync::MutexGuard<'_, ()> {
        let hold = self.gate.lock().unwrap();
        self.armed.store(true, StdOrdering::SeqCst);
        hold
    }

    /// Waits until the writer has parked.
    fn wait_parked(&self) {
        while !self.parked.load(Ordering::SeqCst) {
            thread::yield_now();
        }
    }
}

/// UDP: a PCB bound to `127.0.0.1:1000` connects to the looked-up flow and
/// disconnects again while one lookup runs. It matches the flow throughout
/// (bound, connected, then bound to `0.0.0.0:1000`), so the lookup must find
/// it, even when it reads the exact index before the connect, the wildcard
/// list after it, and the exact index after the disconnect: two moves, which
/// the three reads alone do not cover.
pub fn lookup_across_two_moves(broken: Option<&'static str>) {
    let drops = Arc::new(StdAtomicUsize::new(0));
    let connected = Arc::new(AtomicBool::new(false));
    let disconnected = Arc::new(AtomicBool::new(false));
    // The lookup's thread waits, once each, after its first probe for the
    // connect and after its walk for the disconnect: the two moves then
    // fall between its reads.
    let hook = {
        let (connected, disconnected) = (connected.clone(), disconnected.clone());
        let waited = [
            std::sync::atomic::AtomicBool::new(false),
            std::sync::atomic::AtomicBool::new(false),
        ];
        move |at: &'static str| {
            let (wait, until) = match at {
                "lookup: first probe missed" => (&waited[0], &connected),
                "lookup: walk done" => (&waited[1], &disconnected),
                _ => return,
            };
            if !wait.swap(true, StdOrdering::SeqCst) {
                while !until.load(Ordering::SeqCst) {
                    thread::yield_now();
                }
            }
        }
    };
    let table = Arc::new(
        builder(Protocol::Udp, broken)
            .on_move_step(hook)
            .build::<Sock>(),
    );
    let (local, remote) = (addr("127.0.0.1:1000"), addr("127.0.0.2:2000"));
    let pcb = table.attach(Family::Inet, cred(1), Sock::new(&drops));
    pcb.bind(local).unwrap();

    let mover = thread::spawn(move || {
        pcb.connect(remote).unwrap();
        connected.store(true, Ordering::SeqCst);
        pcb.disconnect().unwrap();
        disconnected.store(true, Ordering::SeqCst);
        pcb
    });
    let guard = table.pin();
    let found = table
        .lookup(local, remote, &guard)
        .expect("false negative: the PCB was not found across two moves");
    assert_eq!(found.cred().uid, 1);
    drop(guard);
    let pcb = mover.join().unwrap();
    assert_eq!(pcb.state(), State::Bound);
}

/// The steps in the middle of a move at which [`lookup_while_move_parked`]
/// parks the writer (see `Builder::on_move_step`).
pub const MOVE_STEPS: [&str; 4] = [
    "connect: tuple published",
    "connect: exact linked",
    "disconnect: tuple published",
    "disconnect: wildcard linked",
];

/// Readers never wait: a writer parks in the middle of a move, at `step` (one
/// of [`MOVE_STEPS`]), and stays there until the lookup has returned.
///
/// TCP for the connect steps: a listener on `0.0.0.0:1000` and a PCB bound to
/// `127.0.0.1:1000`, which connects to the looked-up flow; UDP for the
/// disconnect steps: a PCB connected on that flow, which disconnects. The
/// move never finishes while the lookup runs (the writer blocks on a lock
/// the lookup's thread holds), so a lookup that waited for it would never
/// return. The lookup must return, and with the moving PCB, never the
/// listener behind it.
pub fn lookup_while_move_parked(step: &'static str, broken: Option<&'static str>) {
    let connecting = step.starts_with("connect");
    let drops = Arc::new(StdAtomicUsize::new(0));
    let (parking, hook) = Parking::at(step);
    let protocol = if connecting {
        Protocol::Tcp
    } else {
        Protocol::Udp
    };
    let table = Arc::new(builder(protocol, broken).on_move_step(hook).build::<Sock>());
    let (local, remote) = (addr("127.0.0.1:1000"), addr("127.0.0.2:2000"));
    let listener = table.attach(Family::Inet, cred(1), Sock::new(&drops));
    let pcb = table.attach(Family::Inet, cred(2), Sock::new(&drops));
    if connecting {
        listener.set_reuse_port(true).unwrap();
        listener.bind(addr("0.0.0.0:1000")).unwrap();
        listener.listen().unwrap();
        pcb.set_reuse_port(true).unwrap();
        pcb.bind(local).unwrap();
    } else {
        pcb.bind(local).unwrap();
        pcb.connect(remote).unwrap();
    }

    let hold = parking.arm();
    let mover = thread::spawn(move || {
        if connecting {
            pcb.connect(remote).unwrap();
        } else {
            pcb.disconnect().unwrap();
        }
        pcb
    });
    parking.wait_parked();
    let guard = table.pin();
    let found = table.lookup(local, remote, &guard);
    let uid = found.map(|pcb| pcb.cred().uid);
    drop(guard);
    drop(hold);
    let pcb = mover.join().unwrap();
    assert_eq!(
        uid,
        Some(2),
        "false negative: the lookup missed the PCB parked at {step:?}"
    );
    let expected = if connecting {
        State::Connected
    } else {
        State::Bound
    };
    assert_eq!(pcb.state(), expected);
    drop(listener);
}

/// The steps of a connect at which [`lookup_while_any_port_connect_parked`]
/// parks the writer.
pub const ANY_PORT_STEPS: [&str; 2] = ["connect: tuple published", "connect: exact linked"];

/// Readers never wait, for a PCB connected to an address with any port
/// (Linux UDP, `connect()` to port 0), which the exact index files under
/// the remote port 0: a PCB bound to `127.0.0.1:1000` connects to
/// `127.0.0.2:0` and parks at `step` (one of [`ANY_PORT_STEPS`]) until the
/// lookup of a packet from `127.0.0.2:2000` has returned. The lookup must
/// return the moving PCB, never the PCB bound to `0.0.0.0:1000` behind it.
pub fn lookup_while_any_port_connect_parked(step: &'static str) {
    let drops = Arc::new(StdAtomicUsize::new(0));
    let (parking, hook) = Parking::at(step);
    let table = Arc::new(
        builder(Protocol::Udp, None)
            .policy(Policy::Linux)
            .on_move_step(hook)
            .build::<Sock>(),
    );
    let local = addr("127.0.0.1:1000");
    let wildcard = table.attach(Family::Inet, cred(1), Sock::new(&drops));
    let pcb = table.attach(Family::Inet, cred(2), Sock::new(&drops));
    wildcard.set_reuse_addr(true).unwrap();
    wildcard.bind(addr("0.0.0.0:1000")).unwrap();
    pcb.set_reuse_addr(true).unwrap();
    pcb.bind(local).unwrap();

    let hold = parking.arm();
    let mover = thread::spawn(move || {
        pcb.connect(addr("127.0.0.2:0")).unwrap();
        pcb
    });
    parking.wait_parked();
    let guard = table.pin();
    let found = table.lookup(local, addr("127.0.0.2:2000"), &guard);
    let uid = found.map(|pcb| pcb.cred().uid);
    drop(guard);
    drop(hold);
    let pcb = mover.join().unwrap();
    assert_eq!(
        uid,
        Some(2),
        "false negative: the lookup missed the PCB parked at {step:?}"
    );
    assert_eq!(pcb.state(), State::Connected);
    drop(wildcard);
}

/// The steps of a Linux UDP reconnect at which
/// [`lookup_while_reconnect_parked`] parks the writer, each with whether the
/// PCB shows its old peer there (true) or its new one.
pub const RECONNECT_STEPS: [(&str, bool); 4] = [
    ("disconnect: wildcard linked", true),
    ("reconnect: old exact unlinked", true),
    ("connect: tuple published", false),
    ("connect: exact linked", false),
];

/// Readers never wait, and find a PCB that connects again to another peer
/// (Linux UDP): the exact index files a PCB under one tuple at a time, so
/// the PCB leaves it for the wildcard list and comes back under its new
/// tuple. A PCB on `127.0.0.1:1000` connected to `127.0.0.2:2000` connects
/// to `127.0.0.3:3000` and parks at `step` (one of [`RECONNECT_STEPS`])
/// until the lookup of the peer it shows there (`old`: the first) has
/// returned. The lookup must return the moving PCB, never the PCB bound to
/// `0.0.0.0:1000` behind it.
pub fn lookup_while_reconnect_parked(step: &'static str, old: bool, broken: Option<&'static str>) {
    let drops = Arc::new(StdAtomicUsize::new(0));
    let (parking, hook) = Parking::at(step);
    let table = Arc::new(
        builder(Protocol::Udp, broken)
            .policy(Policy::Linux)
            .on_move_step(hook)
            .build::<Sock>(),
    );
    let local = addr("127.0.0.1:1000");
    let (first, second) = (addr("127.0.0.2:2000"), addr("127.0.0.3:3000"));
    let wildcard = table.attach(Family::Inet, cred(1), Sock::new(&drops));
    let pcb = table.attach(Family::Inet, cred(2), Sock::new(&drops));
    wildcard.set_reuse_addr(true).unwrap();
    wildcard.bind(addr("0.0.0.0:1000")).unwrap();
    pcb.set_reuse_addr(true).unwrap();
    pcb.bind(local).unwrap();
    pcb.connect(first).unwrap();

    let hold = parking.arm();
    let mover = thread::spawn(move || {
        pcb.connect(second).unwrap();
        pcb
    });
    parking.wait_parked();
    let guard = table.pin();
    let peer = if old { first } else { second };
    let uid = table.lookup(local, peer, &guard).map(|pcb| pcb.cred().uid);
    drop(guard);
    drop(hold);
    let pcb = mover.join().unwrap();
    assert_eq!(
        uid,
        Some(2),
        "false negative: the lookup missed the PCB parked at {step:?}"
    );
    assert_eq!(pcb.peer_addr(), Some(second));
    let guard = table.pin();
    let after = table.lookup(local, first, &guard);
    assert_eq!(
        after.map(|pcb| pcb.cred().uid),
        Some(1),
        "the old peer's packets go to the wildcard PCB"
    );
    drop(guard);
    drop(wildcard);
}

/// Passive open over a TIME_WAIT PCB: a listener accepts a new connection on
/// the 4-tuple that an older, TIME_WAIT connection still holds, replacing it,
/// while a lookup runs for that tuple. The lookup finds the old or the new
/// connection, never the listener (the tuple is held throughout), and the new
/// one once `accept()` returned before it started. The old PCB never has a
/// socket again.
pub fn accept_over_time_wait_vs_lookup(broken: Option<&'static str>) {
    let drops = Arc::new(StdAtomicUsize::new(0));
    let table = Arc::new(builder(Protocol::Tcp, broken).build::<Sock>());
    let (local, remote) = (addr("127.0.0.1:1000"), addr("127.0.0.2:2000"));
    let listener = table.attach(Family::Inet, cred(1), Sock::new(&drops));
    listener.bind(addr("0.0.0.0:1000")).unwrap();
    listener.listen().unwrap();
    let old = listener.accept(local, remote, Sock::new(&drops)).unwrap();
    old.time_wait().unwrap();
    let accepted = Arc::new(AtomicBool::new(false));

    let acceptor = {
        let (accepted, drops) = (accepted.clone(), drops.clone());
        thread::spawn(move || {
            let new = listener.accept(local, remote, Sock::new(&drops)).unwrap();
            accepted.store(true, Ordering::SeqCst);
            (listener, new)
        })
    };
    let guard = table.pin();
    let accepted_before = accepted.load(Ordering::SeqCst);
    let found = table
        .lookup(local, remote, &guard)
        .expect("false negative: nothing found for a held 4-tuple");
    match found.state() {
        State::Connected => assert!(found.socket().is_some()),
        State::TimeWait | State::Dropped => {
            assert!(
                !accepted_before,
                "the replaced PCB was found after accept() returned"
            );
            assert!(found.socket().is_none(), "a TIME_WAIT PCB has no socket");
        }
        other => panic!("the lookup found a {other:?} PCB instead of the connection"),
    }
    drop(guard);
    let (_listener, new) = acceptor.join().unwrap();
    assert_eq!(old.state(), State::Dropped);
    let guard = table.pin();
    assert!(table.lookup(local, remote, &guard).unwrap().is(&new));
}

/// The seed's race (FreeBSD 9.0, `in_pcbbind_setup`): a bind checks its port
/// against a connected PCB that concurrently enters TIME_WAIT (its socket is
/// detached) and is then closed.
///
/// Neither PCB sets a reuse option, so the bind fails with `EADDRINUSE` while
/// the other PCB holds the address (connected or in TIME_WAIT) and succeeds
/// once its close returned. The check reads only cached fields: the socket is
/// dropped exactly once, by the TIME_WAIT, and the model's socket type would
/// report any other drop.
pub fn bind_vs_time_wait(broken: Option<&'static str>) {
    let drops = Arc::new(StdAtomicUsize::new(0));
    let table = Arc::new(builder(Protocol::Tcp, broken).build::<Sock>());
    let (local, remote) = (addr("127.0.0.1:1000"), addr("127.0.0.2:2000"));
    let old = table.attach(Family::Inet, cred(1), Sock::new(&drops));
    old.bind(local).unwrap();
    old.connect(remote).unwrap();
    let new = table.attach(Family::Inet, cred(2), Sock::new(&drops));
    let closed = Arc::new(AtomicBool::new(false));

    let ender = {
        let (closed, drops, table) = (closed.clone(), drops.clone(), table.clone());
        thread::spawn(move || {
            old.time_wait().unwrap();
            assert!(old.socket(&table.pin()).is_none());
            // The socket is released through the epoch, once no
            // guard can still see it; never twice.
            assert!(
                drops.load(StdOrdering::SeqCst) <= 1,
                "the socket is dropped at most once"
            );
            old.close();
            closed.store(true, Ordering::SeqCst);
        })
    };
    let closed_before = closed.load(Ordering::SeqCst);
    let result = new.bind(local);
    match result {
        Ok(bound) => assert_eq!(bound, local),
        Err(error) => {
            assert!(!closed_before, "bind failed after the holder was closed");
            assert_eq!(error, Error::AddrInUse);
            assert_eq!(error.errno(), libc_eaddrinuse());
        }
    }
    ender.join().unwrap();
    assert!(
        drops.load(StdOrdering::SeqCst) <= 1,
        "socket dropped at most once"
    );
    assert!(new.socket(&table.pin()).is_some());
    assert_eq!(table.len(), usize::from(result.is_ok()));
}

/// FreeBSD SO_REUSEPORT_LB: listener 1 founded the group on `0.0.0.0:1000`;
/// thread A makes listener 2 join (listen) and then closes listener 1, while
/// thread B looks a SYN up. The group always has a member, so the lookup
/// always finds a listener, and never listener 1 if its close returned before
/// the lookup started.
pub fn lb_group_vs_lookup(broken: Option<&'static str>) {
    let drops = Arc::new(StdAtomicUsize::new(0));
    let table = Arc::new(builder(Protocol::Tcp, broken).build::<Sock>());
    let any = addr("0.0.0.0:1000");
    let first = table.attach(Family::Inet, cred(1), Sock::new(&drops));
    let second = table.attach(Family::Inet, cred(2), Sock::new(&drops));
    for pcb in [&first, &second] {
        pcb.set_reuse_port_lb(true).unwrap();
        pcb.bind(any).unwrap();
    }
    first.listen().unwrap();
    let closed = Arc::new(AtomicBool::new(false));

    let churn = {
        let closed = closed.clone();
        thread::spawn(move || {
            second.listen().unwrap();
            first.close();
            closed.store(true, Ordering::SeqCst);
            second
        })
    };
    let guard = table.pin();
    let closed_before = closed.load(Ordering::SeqCst);
    let found = table
        .lookup(addr("127.0.0.1:1000"), addr("127.0.0.2:2000"), &guard)
        .expect("false negative: no listener found while the group changed");
    let uid = found.cred().uid;
    assert!(uid == 1 || uid == 2);
    if closed_before {
        assert_eq!(uid, 2, "the closed listener was found");
    }
    if uid == 2 {
        assert_eq!(found.state(), State::Listen);
    }
    drop(guard);
    let second = churn.join().unwrap();
    let guard = table.pin();
    let after = table.lookup(addr("127.0.0.1:1000"), addr("127.0.0.2:2000"), &guard);
    assert!(after.unwrap().is(&second));
    assert_eq!(table.stats().group_members, 1);
}

/// The exact index has one bucket; one connection is in it. Thread A connects
/// a second PCB (on a port of another lock stripe), which makes the index
/// grow to two buckets and migrate; thread B looks the first connection up.
/// It must be found in every interleaving, and the model asserts that the
/// resize did happen.
pub fn lookup_during_resize(broken: Option<&'static str>) {
    let drops = Arc::new(StdAtomicUsize::new(0));
    let table = Arc::new(
        builder(Protocol::Udp, broken)
            .exact_buckets(1)
            .build::<Sock>(),
    );
    let remote = addr("127.0.0.2:2000");
    let (first_local, second_local) = (addr("127.0.0.1:1000"), addr("127.0.0.1:1001"));
    let first = table.attach(Family::Inet, cred(1), Sock::new(&drops));
    first.bind(first_local).unwrap();
    first.connect(remote).unwrap();
    let second = table.attach(Family::Inet, cred(2), Sock::new(&drops));
    second.bind(second_local).unwrap();
    assert_eq!(table.stats().exact.buckets, 1);

    let grower = thread::spawn(move || {
        second.connect(remote).unwrap();
        second
    });
    let guard = table.pin();
    let found = table
        .lookup(first_local, remote, &guard)
        .expect("false negative: a connection was not found during a resize");
    assert_eq!(found.cred().uid, 1);
    drop(guard);
    let _second = grower.join().unwrap();
    let stats = table.stats();
    assert_eq!(stats.resizes, 1, "the model must resize");
    assert_eq!(stats.exact.buckets, 2);
    drop(first);
}

/// Incremental resize: the exact index has two buckets and two connections.
/// Thread A connects a third PCB, which installs a four-bucket array and
/// migrates one bucket (one per write under loom), then closes it, which
/// migrates the other bucket and completes the resize. Thread B looks both
/// old connections up meanwhile: each is found in every interleaving, wherever
/// its bucket is in the migration.
pub fn lookup_during_incremental_resize(broken: Option<&'static str>) {
    let drops = Arc::new(StdAtomicUsize::new(0));
    let table = Arc::new(
        builder(Protocol::Udp, broken)
            .exact_buckets(2)
            .build::<Sock>(),
    );
    let remote = addr("127.0.0.2:2000");
    let locals = [
        addr("127.0.0.1:1000"),
        addr("127.0.0.1:1001"),
        addr("127.0.0.1:1002"),
    ];
    let pcbs: Vec<_> = (0..3)
        .map(|i| {
            let pcb = table.attach(Family::Inet, cred(i + 1), Sock::new(&drops));
            pcb.bind(locals[i as usize]).unwrap();
            pcb
        })
        .collect();
    let mut pcbs = pcbs.into_iter();
    let (first, second, third) = (
        pcbs.next().unwrap(),
        pcbs.next().unwrap(),
        pcbs.next().unwrap(),
    );
    first.connect(remote).unwrap();
    second.connect(remote).unwrap();
    assert_eq!(table.stats().exact.buckets, 2);

    let churn = thread::spawn(move || {
        third.connect(remote).unwrap();
        third.close();
    });
    let guard = table.pin();
    for (uid, local) in [(1, locals[0]), (2, locals[1])] {
        let found = table
            .lookup(local, remote, &guard)
            .expect("false negative: a connection was not found during a resize");
        assert_eq!(found.cred().uid, uid);
    }
    drop(guard);
    churn.join().unwrap();
    let stats = table.stats();
    assert_eq!(stats.resizes, 1, "the model must complete a resize");
    assert_eq!(stats.exact.buckets, 4);
    drop((first, second));
}

/// `EADDRINUSE` on this host.
fn libc_eaddrinuse() -> i32 {
    libc::EADDRINUSE
}
