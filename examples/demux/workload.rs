//! The built-in synthetic workload: a host's socket layer under load.
//!
//! One **control thread** plays the stack's socket calls: it opens the
//! listeners, accepts inbound connections (after demultiplexing their SYN, as
//! the stack's RX path would), connects outbound ones, moves flows to
//! TIME_WAIT or closes them (FIN, RST), expires TIME_WAIT after a simulated
//! 2MSL, and restarts the members of the HTTPS group one by one.
//!
//! **RX threads** (`--threads`, 2 by default) play the NIC queues: each makes
//! packets and looks every one up, lock-free, while the control thread changes
//! the table under them. A packet belongs to a random flow slot and fits its
//! phase (a SYN while the handshake is in flight, data while established, the
//! last ACK in TIME_WAIT, a late segment after close), or it is a stray: a SYN
//! from an unknown host to a service, or a segment to a closed port.
//!
//! The run is deterministic from `--seed` in what each thread does; how the
//! threads interleave, and so the exact counts, depends on the machine.
//!
//! Each lookup is checked against what the slot's state allows (see `rx.rs`),
//! and after the run every PCB is closed and the table must be empty.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use pcbhash::{PcbTable, Policy, Stats};

use crate::control::{Control, FlowCounts};
use crate::errors::ErrorCounts;
use crate::flows::{source_address, Word};
use crate::listeners::{self, ListenerSpec};
use crate::outcome::Outcomes;
use crate::rx::{self, ByDevice, Checks, RxCounts};
use crate::socket::Socket;
use crate::steering::{self, Steering};

/// What to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Whose rules the table follows.
    pub policy: Policy,
    /// RX threads.
    pub threads: usize,
    /// Flow slots: the most connections open at once (about two thirds are).
    pub flows: u32,
    /// How long the RX threads run.
    pub duration: Duration,
    /// The seed of every random choice.
    pub seed: u64,
    /// New connections per second the control thread aims for.
    pub churn: u32,
    /// How long a flow stays in TIME_WAIT (2MSL, shortened).
    pub time_wait: Duration,
    /// How often one HTTPS group member is restarted.
    pub restart_every: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            policy: Policy::FreeBsd,
            threads: 2,
            flows: 50_000,
            duration: Duration::from_secs(20),
            seed: 1,
            churn: 20_000,
            time_wait: Duration::from_secs(1),
            restart_every: Duration::from_secs(2),
        }
    }
}

impl Config {
    /// The configuration's problems, if any.
    pub fn validate(&self) -> Result<(), String> {
        if self.threads == 0 {
            return Err("at least one RX thread is needed".into());
        }
        if self.flows == 0 {
            return Err("at least one flow slot is needed".into());
        }
        Ok(())
    }
}

/// What the threads share besides the table.
pub struct Shared {
    /// The seed, for [`crate::flows::flow_spec`].
    pub seed: u64,
    /// One [`Word`] per flow slot.
    pub words: Vec<AtomicU64>,
    /// Odd while the control thread is changing a listener; bumped on each
    /// change, so an RX thread can tell whether one happened during a lookup.
    pub listener_seq: AtomicU64,
    /// Set when the RX threads should stop.
    pub stop: AtomicBool,
    /// Packets looked up so far, per RX thread.
    pub rx_packets: Vec<CachePadded<AtomicU64>>,
    /// The NIC's steering of packets to RX threads.
    pub steering: Arc<Steering>,
    /// Flows opened and closed so far (for the progress line).
    pub opened: AtomicU64,
    /// See `opened`.
    pub closed: AtomicU64,
}

impl Shared {
    fn new(config: &Config) -> Self {
        Self {
            seed: config.seed,
            words: (0..config.flows)
                .map(|_| AtomicU64::new(Word::INITIAL.0))
                .collect(),
            listener_seq: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            rx_packets: (0..config.threads)
                .map(|_| CachePadded::new(AtomicU64::new(0)))
                .collect(),
            steering: Arc::new(Steering::new(config.seed, config.threads)),
            opened: AtomicU64::new(0),
            closed: AtomicU64::new(0),
        }
    }

    /// Packets looked up so far by all RX threads.
    pub fn packets(&self) -> u64 {
        self.rx_packets
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .sum()
    }
}

/// A progress report, a few times a second.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Time since the RX threads started.
    pub elapsed: Duration,
    /// The planned duration.
    pub duration: Duration,
    /// Packets looked up so far.
    pub packets: u64,
    /// Flows opened so far.
    pub opened: u64,
    /// Flows closed so far.
    pub closed: u64,
}

/// The result of a run.
#[derive(Debug)]
pub struct Summary {
    /// What was run.
    pub config: Config,
    /// The listener plan.
    pub listeners: Vec<ListenerSpec>,
    /// How long the RX threads ran.
    pub elapsed: Duration,
    /// What the RX threads counted, per thread.
    pub rx: Vec<RxCounts>,
    /// The control thread's flow counts.
    pub flows: FlowCounts,
    /// Failed socket calls.
    pub errors: ErrorCounts,
    /// The table at the end of the run, before teardown.
    pub stats: Stats,
    /// The table after every PCB was closed.
    pub after_teardown: Stats,
}

impl Summary {
    /// Every packet looked up.
    pub fn packets(&self) -> u64 {
        self.rx.iter().map(|rx| rx.packets).sum()
    }

    /// Lookups by outcome, all threads.
    pub fn outcomes(&self) -> Outcomes {
        let mut total = Outcomes::default();
        for rx in &self.rx {
            total += rx.outcomes;
        }
        total
    }

    /// Invariant checks, all threads.
    pub fn checks(&self) -> Checks {
        let mut total = Checks::default();
        for rx in &self.rx {
            total.merge(&rx.checks);
        }
        total
    }

    /// Lookups by the device the packet arrived on, all threads.
    pub fn by_device(&self) -> ByDevice {
        let mut total = ByDevice::default();
        for rx in &self.rx {
            total.merge(&rx.by_device);
        }
        total
    }

    /// Hits per listener id, all threads.
    pub fn listener_hits(&self) -> Vec<u64> {
        let mut hits = vec![0; self.listeners.len()];
        for rx in &self.rx {
            for (total, n) in hits.iter_mut().zip(&rx.listener_hits) {
                *total += n;
            }
        }
        hits
    }

    /// Whether the teardown left the table empty.
    pub fn teardown_clean(&self) -> bool {
        self.after_teardown.len == 0 && self.after_teardown.attached == 0
    }

    /// Whether every invariant held.
    pub fn passed(&self) -> bool {
        self.checks().violations() == 0 && self.teardown_clean()
    }
}

/// A failure to set the workload up.
#[derive(Debug)]
pub struct SetupError(pub String);

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SetupError {}

/// How often [`run`] reports progress.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(50);

/// Runs the workload. `progress` is called from the calling thread every
/// [`PROGRESS_EVERY`] while the RX threads run.
pub fn run(config: &Config, progress: &mut dyn FnMut(&Progress)) -> Result<Summary, SetupError> {
    config.validate().map_err(SetupError)?;
    let shared = Shared::new(config);
    let table: PcbTable<Socket> = PcbTable::<Socket>::builder()
        .policy(config.policy)
        .seed(config.seed)
        .capacity(config.flows as usize)
        .source_address(source_address)
        .port_filter(steering::port_filter(shared.steering.clone()))
        .build();
    let plan = listeners::plan(config.policy);
    let mut control = Control::new(config, &table, &shared, &plan);
    control
        .setup()
        .map_err(|e| SetupError(format!("opening the listeners: {e}")))?;

    let start = Instant::now();
    let (control, rx, elapsed) = thread::scope(|s| {
        let rx_threads: Vec<_> = (0..config.threads)
            .map(|index| {
                let (table, shared, plan) = (&table, &shared, &plan);
                thread::Builder::new()
                    .name(format!("rx{index}"))
                    .spawn_scoped(s, move || rx::run(table, shared, plan, index))
                    .expect("spawning an RX thread")
            })
            .collect();
        let deadline = start + config.duration;
        let control_thread = thread::Builder::new()
            .name("control".into())
            .spawn_scoped(s, move || {
                control.run_until(deadline);
                control
            })
            .expect("spawning the control thread");
        // At least one report, however short the run.
        loop {
            thread::sleep(PROGRESS_EVERY);
            progress(&Progress {
                elapsed: start.elapsed(),
                duration: config.duration,
                packets: shared.packets(),
                opened: shared.opened.load(Ordering::Relaxed),
                closed: shared.closed.load(Ordering::Relaxed),
            });
            if control_thread.is_finished() {
                break;
            }
        }
        let control = control_thread.join().expect("the control thread panicked");
        shared.stop.store(true, Ordering::Relaxed);
        let rx: Vec<RxCounts> = rx_threads
            .into_iter()
            .map(|t| t.join().expect("an RX thread panicked"))
            .collect();
        (control, rx, start.elapsed())
    });

    let stats = table.stats();
    let (flows, errors) = control.teardown();
    table.flush();
    let after_teardown = table.stats();
    Ok(Summary {
        config: config.clone(),
        listeners: plan,
        elapsed,
        rx,
        flows,
        errors,
        stats,
        after_teardown,
    })
}
