//! `Policy::Linux` against the running kernel, errno for errno.
//!
//! Random sequences of socket / setsockopt (SO_REUSEADDR, SO_REUSEPORT,
//! IPV6_V6ONLY) / bind / listen / connect / close run on real sockets and on
//! a `PcbTable`, and every result is compared, for TCP and for UDP (where
//! connect() needs no listener, may be repeated, and `connect(AF_UNSPEC)`
//! dissolves it). Each sequence runs in a network namespace of its own, so
//! nothing it leaves (TIME_WAIT sockets above all) outlives it.
//!
//! - **Sockets** get an owner each (root, uid 1000, or a uid of their own),
//!   and the kernel's accept() runs under the listener's uid (`sock_graft`
//!   gives the accepted socket the accepting process's uid).
//! - **Peers** come from the whole address set, the unspecified ones
//!   included (the kernel connects those to the local host). After every
//!   successful connect() the kernel's peer (`getpeername`) and the table's
//!   must agree.
//! - **Connections.** A connection the kernel makes to one of its listeners
//!   is mirrored on the table by `connect` on the client and `accept` on the
//!   listener the kernel chose, and the table's `lookup` for the SYN must
//!   name a listener of the same kind (family, address, V6ONLY) as the one
//!   the kernel chose.
//! - **Closes.** An abortive close (SO_LINGER 0) resets the other end, which
//!   gives its port back at once: both ends close together in both worlds.
//!   An orderly close (one end, then the other) leaves the first in
//!   TIME_WAIT: the harness waits for the state in `/proc/net/tcp*` and
//!   mirrors it with `time_wait()`. While a sequence holds TIME_WAIT
//!   sockets, each step checks that the kernel and the table still agree on
//!   which exist, and new sockets replay old clients (same address and port
//!   toward the same server), so that a SYN meets a TIME_WAIT twin on the
//!   server side, or a bound connect() one on the client side.
//!
//! **Ports chosen at random** (bind(0), the autobind of listen() and
//! connect()) can be compared only as set membership: the kernel's port and
//! the table's must lie in the same scan class (TCP bind(0): the odd then the
//! even ports, each half of the range first with SO_REUSEADDR; TCP
//! connect(): the ports of the low end's parity first; UDP: any port of the
//! range), inside the part of the range the kernel scans. The harness then
//! maps each kernel port to the table's port (a permutation of the ephemeral
//! range that keeps classes), so that later operations naming that port mean
//! the same port in both worlds. If the two picks cannot be mapped onto each
//! other because one of them was already in use, the sequence stops early
//! (counted as "unmappable"; it is not a divergence). Ranges of one and four
//! ports are drawn most, so that exhaustion is common for both protocols.
//!
//! A fixed list of seeds runs first, then random seeds until the time budget
//! (`PCBHASH_DIFF_SECS` per protocol, default 15 seconds) is spent. A
//! divergence fails the test and prints its seed and the operations that led
//! to it; rerun one seed with `PCBHASH_DIFF_SEED=<seed>`.
//!
//! A quarter of the steps come from `linux_differential/life.rs`: calls on
//! sockets that already hold a port (SO_REUSEPORT cleared and set, listen
//! again, disconnect of TCP listeners and connections and of UDP group
//! members, UDP connect to port 0, link-local addresses), and real packets
//! whose receivers are compared with the table's lookup.
//!
//! Those calls run in every seed; `PCBHASH_DIFF_LIFE=0` leaves them out of
//! the random seeds and of a `PCBHASH_DIFF_SEED` replay (the fixed and
//! found seeds keep them). The summary line counts the later-life calls
//! and the packets whose receivers were compared.
//!
//! **Devices** (`linux_differential/devices.rs`): each namespace gets a
//! second device beside `lo` where it can, and SO_BINDTODEVICE calls (to
//! `lo`, to the second device, to none) come on top of the other steps,
//! from a generator of their own. Every packet arrives on `lo`, so the
//! table answers the compared lookups with `lookup_on(lo)`. The device
//! calls run in every seed; `PCBHASH_DIFF_DEVICES=0` leaves them out of the
//! fixed and random seeds and of a `PCBHASH_DIFF_SEED` replay (the found
//! seeds keep them).
//!
//! **Client-side port control** (`linux_differential/client.rs`):
//! IP_BIND_ADDRESS_NO_PORT and IP_LOCAL_PORT_RANGE calls on random sockets
//! come on top of the steps from a generator of their own, and each
//! sequence draws its `tcp_tw_reuse` (0, 1 or 2) and marks every TIME_WAIT
//! socket reusable in the table once `tcp_tw_reuse_delay` has passed. They
//! run in the fixed and random seeds; `PCBHASH_DIFF_CLIENT=0` leaves them
//! out (the found seeds run without them, as they were found).
//!
//! The second device is made over rtnetlink, never by running a program:
//! the two protocols' tests run in parallel threads, and a child process
//! holds a copy of every socket of the process until it execs, so a socket
//! the other thread had just closed would still hold its port.
//!
//! Known differences, tolerated and counted in the summary as known gaps:
//! in the kernel an AF_INET6 socket connected to port 0 of an IPv6 peer also
//! takes IPv4 datagrams sent to `127.0.0.6`, which the table does not
//! reproduce; and the calls whose answer depends on the addresses and
//! routes of a device (`connect()` from the second device, IPv6 addresses
//! looked for on a socket's device) are left out in both worlds. A TCP
//! `connect()` whose handshake does not finish in the kernel (its SYN met a
//! connection on the same 4-tuple whose end is bound to another device,
//! which both worlds allow as `inet_match` does, or a group member bound to
//! another device answered it there) has its port compared, then stops the
//! sequence as a known gap; so does an orderly close that does not settle
//! in the kernel beside a twin on its 4-tuple (a TIME_WAIT socket, or a
//! live end bound to another device), which takes some of its segments.

#[path = "linux_differential/client.rs"]
mod client;
#[path = "linux_differential/connect.rs"]
mod connect;
#[path = "linux_differential/devices.rs"]
mod devices;
#[path = "linux_differential/life.rs"]
mod life;
mod linux_kernel;
#[path = "linux_differential/ports.rs"]
mod ports;
#[path = "linux_differential/step.rs"]
mod step;
#[path = "linux_differential/time_wait.rs"]
mod time_wait;
#[path = "linux_differential/world.rs"]
mod world;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use linux_kernel::Netns;
use pcbhash::policy::TwReuse;
use pcbhash::Protocol;
use world::{Rng, World};

/// Seeds that always run, so that CI is reproducible.
const FIXED_SEEDS: std::ops::Range<u64> = 1..301;

/// Seeds that found a divergence with the client-side port calls on, with
/// what they found; they run first, with those calls.
const FOUND_CLIENT_SEEDS: &[(Protocol, u64, &str)] = &[
    (
        Protocol::Udp,
        10303693074238225255,
        "a connected member that a later bind() pulled into a group connects again: the group has \
         connections from then on (`reuseport_has_conns_set`), also after that member left it",
    ),
    (
        Protocol::Tcp,
        6598077311035145706,
        "a connection closed beside its live twin on another device: the harness expected no twin",
    ),
    (
        Protocol::Tcp,
        988962954487659513,
        "the same, the other end of the twin closing first",
    ),
    (
        Protocol::Tcp,
        4695484570044741646,
        "a connect() onto the 4-tuple of a connection bound to another device: the old connection's resets \
         break the kernel's handshake, or (timing-dependent) the connection the listener accepted",
    ),
    (
        Protocol::Tcp,
        4243358614796940032,
        "a close beside a TIME_WAIT twin, which takes the peer's FIN: the kernel's close does not finish",
    ),
    (
        Protocol::Tcp,
        4678275017622680914,
        "a SYN to a group member that SO_BINDTODEVICE moved to the second device: the kernel's handshake fails",
    ),
];

/// Seeds that once found a divergence, with what they found; they run
/// first.
const FOUND_SEEDS: &[(Protocol, u64, &str)] = &[
    (Protocol::Udp, 2, "EAGAIN from the autobind of connect()"),
    (
        Protocol::Udp,
        18,
        "EAGAIN from the autobind of connect() to ::",
    ),
    (Protocol::Udp, 1, "connect() to 0.0.0.0"),
    (Protocol::Udp, 3, "connect() to ::ffff:0.0.0.0"),
    (
        Protocol::Udp,
        16333992528571897276,
        "0.0.0.0 from an IPv6 source that connect() chose: 127.0.0.1",
    ),
    (
        Protocol::Udp,
        18371253013979265292,
        "a last IPv6 peer ties with a peer connected to port 0",
    ),
    (
        Protocol::Udp,
        90748937302557754,
        "two peers connected to port 0: AF_INET before AF_INET6",
    ),
    (
        Protocol::Udp,
        10,
        "connect(AF_UNSPEC) unbinds the device (`__udp_disconnect`)",
    ),
    (
        Protocol::Tcp,
        30,
        "an accepted connection is on its listener's device",
    ),
    (
        Protocol::Tcp,
        5285448149422443101,
        "connect() on the 4-tuple of a connection on another device (`__inet_check_established`)",
    ),
    (
        Protocol::Udp,
        4734366727461340184,
        "SO_BINDTODEVICE takes a member out of its group (`udp_lib_rehash`)",
    ),
    (Protocol::Tcp, 6, "connect() to 0.0.0.0"),
    (Protocol::Tcp, 11, "connect() to ::ffff:0.0.0.0"),
    (Protocol::Tcp, 57, "connect() to ::"),
    (
        Protocol::Tcp,
        125,
        "connect() to :: from a v4-mapped address",
    ),
    (
        Protocol::Tcp,
        54,
        "an accepted TIME_WAIT keeps a listen()-made port from connect()",
    ),
    (Protocol::Tcp, 107, "a SYN that meets a TIME_WAIT twin"),
    (
        Protocol::Tcp,
        4873748946238144389,
        "a TIME_WAIT twin after an unmappable port",
    ),
    (
        Protocol::Tcp,
        10974735456094544026,
        "a v4-mapped connect() from ::1 leaves ::ffff:127.0.0.6",
    ),
    (
        Protocol::Tcp,
        62897138174383327,
        "an unbound connect() with no port keeps the source of a locked address",
    ),
    (
        Protocol::Udp,
        9893092348006047630,
        "a socket connected to a port-0 peer ties with one on the packet's device",
    ),
    (
        Protocol::Udp,
        13193304590407147334,
        "an AF_INET socket on the packet's device outranks an AF_INET6 one connected to a port-0 peer, listed after it",
    ),
    (
        Protocol::Tcp,
        2598624695371336849,
        "a TIME_WAIT over an older twin of the other end, bound to a device",
    ),
];

/// Ephemeral ranges: one to four ports, one and four most often.
const RANGES: [(u16, u16); 6] = [
    (40000, 40000),
    (40000, 40000),
    (40000, 40001),
    (40000, 40002),
    (40000, 40003),
    (40000, 40003),
];

/// UDP ranges: UDP picks a port at random among all free ones, so small
/// ranges end many sequences at an unmappable pick; a wider one keeps going.
const UDP_RANGES: [(u16, u16); 5] = [
    (40000, 40000),
    (40000, 40000),
    (40000, 40003),
    (40000, 40003),
    (40000, 40063),
];

/// Why a sequence ended.
enum Outcome {
    Completed,
    Unmappable,
}

/// Counters for the summary line.
#[derive(Default)]
struct Totals {
    sequences: u64,
    ops: u64,
    unmappable: u64,
    connections: u64,
    errors_compared: u64,
    peers_compared: u64,
    time_waits: u64,
    replays: u64,
    known_gap: u64,
    life_steps: u64,
    packets: u64,
    device_calls: u64,
    client_calls: u64,
    address_only_binds: u64,
}

/// A fresh network namespace for one sequence. The namespaces made from it
/// get a small TCP hash table of their own, which `/proc/net/tcp*` walks
/// quickly (by default they share the host's, a walk of milliseconds).
fn namespace() -> Result<Netns, String> {
    let ns = Netns::enter()?;
    ns.sysctl("net/ipv4/tcp_child_ehash_entries", "128")
        .map_err(|e| format!("cannot pin tcp_child_ehash_entries: {e}"))?;
    Ok(ns)
}

/// Which of the optional calls a sequence makes.
#[derive(Clone, Copy, Debug)]
struct Calls {
    /// The later-life calls (`linux_differential/life.rs`).
    life: bool,
    /// SO_BINDTODEVICE (`linux_differential/devices.rs`).
    devices: bool,
    /// Client-side port control (`linux_differential/client.rs`).
    client: bool,
}

/// Runs the sequence of `seed`, in a network namespace of its own.
fn run(
    protocol: Protocol,
    seed: u64,
    Calls {
        life,
        devices,
        client,
    }: Calls,
    totals: &mut Totals,
) -> Result<(), String> {
    let ns = namespace().map_err(|reason| format!("seed {seed}: {reason}"))?;
    let mut rng = Rng(seed);
    let range = match protocol {
        Protocol::Tcp => rng.pick(&RANGES),
        Protocol::Udp => rng.pick(&UDP_RANGES),
    };
    let steps = 20 + rng.below(60);
    let devices = match devices.then(linux_kernel::devices::add_second) {
        None => None,
        Some(Ok(devices)) => Some(devices),
        Some(Err(reason)) => {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| eprintln!("no second device, SO_BINDTODEVICE left out: {reason}"));
            None
        }
    };
    let tw_reuse = if client {
        client::tw_reuse(&ns, seed).map_err(|reason| format!("seed {seed}: {reason}"))?
    } else {
        TwReuse::Off
    };
    let mut world = World::new(&ns, seed, protocol, range, devices, tw_reuse);
    world.life = life;
    world.client = client;
    let _ = writeln!(world.log, "  {protocol:?}, range {}-{}", range.0, range.1);
    let mut outcome = Outcome::Completed;
    let mut result = Ok(());
    for _ in 0..steps {
        // A sequence that stops early leaves the two worlds apart.
        match world.step(&mut rng).and_then(|go_on| {
            if go_on {
                world.check_time_waits()?;
            }
            Ok(go_on)
        }) {
            Ok(true) => {}
            Ok(false) => {
                outcome = Outcome::Unmappable;
                break;
            }
            Err(divergence) => {
                let sockets = ns.tcp_table_dump();
                result = Err(format!(
                    "DIVERGENCE (seed {seed}, later-life calls {}): {divergence}\noperations:\n{}kernel sockets:\n{sockets}",
                    if life { "on" } else { "off" },
                    world.log
                ));
                break;
            }
        }
    }
    world.close_all();
    totals.sequences += 1;
    totals.ops += world.ops;
    totals.connections += world.connections;
    totals.errors_compared += world.errors;
    totals.peers_compared += world.peers;
    totals.time_waits += world.entered_time_wait;
    totals.replays += world.replays;
    totals.known_gap += world.known_gap;
    totals.life_steps += world.life_steps;
    totals.packets += world.packets;
    totals.device_calls += world.device_calls;
    totals.client_calls += world.client_calls;
    totals.address_only_binds += world.address_only_binds;
    if let Outcome::Unmappable = outcome {
        totals.unmappable += 1;
    }
    result
}

/// Runs the seeds that found divergences and the fixed seeds, then random
/// ones until the budget is spent.
fn differential(protocol: Protocol) {
    let name = format!("linux_differential_{protocol:?}").to_lowercase();
    // Each sequence makes a namespace of its own; this first one only tells
    // whether namespaces can be made here (and skips or fails as the
    // environment asks when they cannot).
    let ci = std::env::var(linux_kernel::skip::CI_VAR).ok();
    if linux_kernel::skip::settle(namespace(), ci.as_deref()).is_none() {
        return;
    }
    let started = Instant::now();
    let mut totals = Totals::default();
    // The later-life calls run in every seed unless `PCBHASH_DIFF_LIFE=0`
    // turns them off in the random ones and in a replay.
    let life_env = std::env::var("PCBHASH_DIFF_LIFE").map_or(true, |v| v.trim() != "0");
    // The device calls run in every seed unless `PCBHASH_DIFF_DEVICES=0`
    // turns them off in the fixed and random ones and in a replay.
    let devices_env = std::env::var("PCBHASH_DIFF_DEVICES").map_or(true, |v| v.trim() != "0");
    // So do the client-side port calls, with `PCBHASH_DIFF_CLIENT=0`; the
    // found seeds run without them, as they were found.
    let client_env = std::env::var("PCBHASH_DIFF_CLIENT").map_or(true, |v| v.trim() != "0");
    if let Ok(seed) = std::env::var("PCBHASH_DIFF_SEED") {
        let seed: u64 = seed.parse().expect("PCBHASH_DIFF_SEED is a number");
        let calls = Calls {
            life: life_env,
            devices: devices_env,
            client: client_env,
        };
        if let Err(divergence) = run(protocol, seed, calls, &mut totals) {
            panic!("{divergence}");
        }
        return;
    }
    let budget = std::env::var("PCBHASH_DIFF_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let mut failures = Vec::new();
    let found: Vec<u64> = FOUND_SEEDS
        .iter()
        .filter(|(p, _, _)| *p == protocol)
        .map(|(_, seed, _)| *seed)
        .collect();
    let found_client = FOUND_CLIENT_SEEDS
        .iter()
        .filter(|(p, _, _)| *p == protocol)
        .map(|&(_, seed, _)| (seed, true, true));
    let fixed = FIXED_SEEDS.filter(|seed| !found.contains(seed));
    for (seed, devices, client) in found
        .iter()
        .map(|&seed| (seed, true, false))
        .chain(found_client)
        .chain(fixed.map(|seed| (seed, devices_env, client_env)))
    {
        let calls = Calls {
            life: true,
            devices,
            client,
        };
        if let Err(divergence) = run(protocol, seed, calls, &mut totals) {
            failures.push(divergence);
        }
    }
    // The random seeds are the outputs of this generator, from `origin`.
    let origin = started.elapsed().as_nanos() as u64 ^ std::process::id() as u64;
    let mut random = Rng(origin);
    while started.elapsed() < Duration::from_secs(budget) && failures.len() < 5 {
        let seed = random.next();
        let calls = Calls {
            life: life_env,
            devices: devices_env,
            client: client_env,
        };
        if let Err(divergence) = run(protocol, seed, calls, &mut totals) {
            failures.push(divergence);
        }
    }
    eprintln!(
        "{name}: {} operations compared ({} failing calls, {} peers, {} connections, \
         {} TIME_WAIT sockets, {} replayed clients, {} later-life calls, {} packets' \
         receivers, {} SO_BINDTODEVICE calls, {} client-side port calls, {} no-port binds) in {} sequences \
         ({} stopped early at an unmappable random port; {} known gaps: packets to \
         127.0.0.6 and connect() calls left out on the second device), {:.1} s; random \
         seeds from Rng({origin:#x})",
        totals.ops,
        totals.errors_compared,
        totals.peers_compared,
        totals.connections,
        totals.time_waits,
        totals.replays,
        totals.life_steps,
        totals.packets,
        totals.device_calls,
        totals.client_calls,
        totals.address_only_binds,
        totals.sequences,
        totals.unmappable,
        totals.known_gap,
        started.elapsed().as_secs_f64()
    );
    if !failures.is_empty() {
        for failure in &failures {
            eprintln!("{failure}");
        }
        panic!("{} sequences diverged from the kernel", failures.len());
    }
}

#[test]
fn linux_differential_tcp() {
    differential(Protocol::Tcp);
}

#[test]
fn linux_differential_udp() {
    differential(Protocol::Udp);
}
