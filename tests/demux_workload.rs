//! The `demux` example's synthetic workload, run small and fast through its
//! own modules: RX threads look up while a control thread accepts, connects,
//! closes and restarts listeners, under both policies.

#![allow(dead_code)]

#[path = "../examples/demux/capture.rs"]
mod capture;
#[path = "../examples/demux/control.rs"]
mod control;
#[path = "../examples/demux/errors.rs"]
mod errors;
#[path = "../examples/demux/flows.rs"]
mod flows;
#[path = "../examples/demux/groupcast.rs"]
mod groupcast;
#[path = "../examples/demux/listeners.rs"]
mod listeners;
#[path = "../examples/demux/outcome.rs"]
mod outcome;
#[path = "../examples/demux/packet.rs"]
mod packet;
#[path = "../examples/demux/replay.rs"]
mod replay;
#[path = "../examples/demux/report.rs"]
mod report;
#[path = "../examples/demux/rng.rs"]
mod rng;
#[path = "../examples/demux/rx.rs"]
mod rx;
#[path = "../examples/demux/socket.rs"]
mod socket;
#[path = "../examples/demux/steering.rs"]
mod steering;
#[path = "../examples/demux/workload.rs"]
mod workload;

use std::time::Duration;

use pcbhash::Policy;
use workload::{Config, Summary};

/// A run of a few hundred milliseconds, with TIME_WAIT and listener restarts
/// scaled down to fit.
fn small(policy: Policy, seed: u64) -> Config {
    Config {
        policy,
        threads: 2,
        flows: 2_000,
        duration: Duration::from_millis(300),
        seed,
        churn: 20_000,
        time_wait: Duration::from_millis(20),
        restart_every: Duration::from_millis(40),
    }
}

fn run(config: &Config) -> Summary {
    let mut reports = 0;
    let summary = workload::run(config, &mut |_| reports += 1).expect("the workload sets up");
    assert!(reports > 0, "progress was reported");
    summary
}

fn default_workload_keeps_its_invariants(policy: Policy) {
    let summary = run(&small(policy, 7));
    let checks = summary.checks();
    for (name, check) in checks.named() {
        assert_eq!(check.violations, 0, "{policy:?}: {name}: {check:?}");
    }
    assert!(summary.passed(), "{}", report::workload(&summary));

    // Every packet was looked up once, and each kind of answer occurred:
    // the RX threads' first batch alone has established flows (set up before
    // they start), stray SYNs to the HTTPS group and segments to closed ports.
    let outcomes = summary.outcomes();
    assert_eq!(outcomes.total(), summary.packets());
    assert!(summary.packets() >= 2 * 256);
    assert!(outcomes.exact > 0, "{outcomes:?}");
    assert!(outcomes.group > 0, "{outcomes:?}");
    assert!(outcomes.wildcard > 0, "{outcomes:?}");
    assert!(outcomes.miss > 0, "{outcomes:?}");
    assert!(checks.own_pcb.checked > 0);
    assert!(checks.syn_listener.checked > 0);
    assert!(checks.closed_port.checked > 0);
    // Outbound replies reached their opener's RX thread (every one: the
    // loop above found no violation).
    assert!(checks.opener_rx.checked > 0);

    // The group spread the SYNs it took over its members.
    let hits = summary.listener_hits();
    let group = listeners::group_ids(&summary.listeners);
    assert!(
        group.iter().filter(|&&id| hits[id] > 0).count() >= 2,
        "{hits:?}"
    );

    // The table held what the control thread says it opened.
    let stats = summary.stats;
    assert_eq!(stats.listen, summary.listeners.len(), "{stats:?}");
    assert_eq!(stats.group_members, group.len(), "{stats:?}");
    assert_eq!(stats.connected + stats.time_wait, stats.exact.entries);
    let flows = summary.flows;
    assert!(flows.opened() > 0);
    assert_eq!(
        flows.opened(),
        flows.closed() + flows.closed_at_shutdown,
        "every flow opened was closed once: {flows:?}"
    );
    assert_eq!(flows.syn_without_listener, 0);
    assert_eq!(summary.errors.total(), 0, "{:?}", summary.errors);

    // Closing every handle emptied the table.
    assert_eq!(summary.after_teardown.len, 0);
    assert_eq!(summary.after_teardown.attached, 0);

    let text = report::workload(&summary);
    assert!(text.contains("invariants  PASSED"), "{text}");
}

#[test]
fn default_workload_keeps_its_invariants_freebsd() {
    default_workload_keeps_its_invariants(Policy::FreeBsd);
}

#[test]
fn default_workload_keeps_its_invariants_linux() {
    default_workload_keeps_its_invariants(Policy::Linux);
}

/// Without churn, the run is the set-up plus lookups: the same seed gives the
/// same flows, another seed other ones.
#[test]
fn same_seed_same_workload() {
    let still = |seed| Config {
        churn: 0,
        duration: Duration::from_millis(20),
        ..small(Policy::Linux, seed)
    };
    let (a, b, c) = (run(&still(3)), run(&still(3)), run(&still(4)));
    assert_eq!(a.flows, b.flows);
    assert_eq!(a.stats.connected, b.stats.connected);
    assert_ne!(
        (a.flows.accepted, a.flows.connected),
        (c.flows.accepted, c.flows.connected)
    );
}

#[test]
fn bad_configurations_are_refused() {
    let none = Config {
        threads: 0,
        ..small(Policy::FreeBsd, 1)
    };
    assert!(workload::run(&none, &mut |_| {}).is_err());
    let empty = Config {
        flows: 0,
        ..small(Policy::FreeBsd, 1)
    };
    assert!(workload::run(&empty, &mut |_| {}).is_err());
}
