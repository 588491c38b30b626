//! `Builder::port_filter`: which candidates the filter sees, that a refused
//! port is passed over as a busy one, the errors when it refuses them all,
//! and that ports named explicitly never meet it.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use pcbhash::{
    Builder, Cred, Error, Family, Pcb, PcbTable, Policy, PortCandidate, Protocol, State,
};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const PEER: &str = "127.0.0.1:80";

/// A filter that records every candidate it sees and accepts the ports
/// `accept` says yes to.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<PortCandidate>>>);

impl Recorder {
    fn filter(
        &self,
        accept: impl Fn(u16) -> bool + Send + Sync + 'static,
    ) -> impl Fn(&PortCandidate) -> bool + Send + Sync + 'static {
        let seen = self.0.clone();
        move |candidate| {
            seen.lock().unwrap().push(*candidate);
            accept(candidate.local.port())
        }
    }

    fn take(&self) -> Vec<PortCandidate> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn table(
    policy: Policy,
    protocol: Protocol,
    range: RangeInclusive<u16>,
    filter: impl Fn(&PortCandidate) -> bool + Send + Sync + 'static,
) -> PcbTable<()> {
    Builder::new()
        .policy(policy)
        .protocol(protocol)
        .ephemeral_ports(range)
        .seed(7)
        .randomized_ports(false)
        .port_filter(filter)
        .build()
}

/// FreeBSD without randomized ports scans from the port after the last one
/// handed out, one by one: the filter sees exactly that run, up to the
/// first port it accepts, which `connect()` takes.
#[test]
fn the_filter_sees_the_kernels_scan_in_order() {
    let recorder = Recorder::default();
    let t = table(
        Policy::FreeBsd,
        Protocol::Tcp,
        20000..=20063,
        recorder.filter(|port| port % 4 == 3),
    );
    let mut conns = Vec::new();
    let mut next = 20000;
    for _ in 0..16 {
        let pcb = t.attach(Family::Inet, Cred::ROOT, ());
        let local = pcb.connect(addr(PEER)).unwrap();
        let seen = recorder.take();
        let expected: Vec<PortCandidate> = (next..=next + 3)
            .map(|port| {
                let mut c = seen[0];
                c.local.set_port(port);
                c
            })
            .collect();
        assert_eq!(seen, expected);
        assert_eq!(seen[0].local.ip(), addr(PEER).ip());
        assert_eq!(seen[0].remote, Some(addr(PEER)));
        assert_eq!(seen[0].protocol, Protocol::Tcp);
        assert_eq!(local.port(), next + 3);
        next += 4;
        conns.push(pcb);
    }
    // Every accepted port taken: the next scan sees the whole range once,
    // and fails as on a full range.
    let pcb = t.attach(Family::Inet, Cred::ROOT, ());
    assert_eq!(pcb.connect(addr(PEER)), Err(Error::AddrNotAvailable));
    let seen: Vec<u16> = recorder.take().iter().map(|c| c.local.port()).collect();
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), seen.len(), "each candidate once");
    // The ports the filter accepts are busy and fail the full check, which
    // comes after the filter: it sees all 64.
    assert_eq!(sorted, (20000..=20063).collect::<Vec<_>>());
    assert_eq!(pcb.state(), State::Closed);
}

/// Both policies, both protocols: the range fills with exactly the ports
/// the filter accepts, each candidate the filter sees is in the range, the
/// port taken is the last candidate of its scan, and the storm ends with
/// the kernel's error for a full range.
#[test]
fn refused_ports_are_never_chosen() {
    for policy in [Policy::FreeBsd, Policy::Linux] {
        for protocol in [Protocol::Tcp, Protocol::Udp] {
            for one_in in [1u16, 4, 16] {
                let range = 30000..=30255;
                let recorder = Recorder::default();
                let t = Builder::new()
                    .policy(policy)
                    .protocol(protocol)
                    .ephemeral_ports(range.clone())
                    .seed(u64::from(one_in))
                    .port_filter(recorder.filter(move |port| port % one_in == 1 % one_in))
                    .build::<()>();
                let mut taken = HashSet::new();
                let mut conns: Vec<Pcb<()>> = Vec::new();
                let end = loop {
                    let pcb = t.attach(Family::Inet, Cred::ROOT, ());
                    match pcb.connect(addr(PEER)) {
                        Ok(local) => {
                            let seen = recorder.take();
                            assert!(seen.iter().all(|c| range.contains(&c.local.port())));
                            assert_eq!(seen.last().map(|c| c.local.port()), Some(local.port()));
                            assert_eq!(local.port() % one_in, 1 % one_in, "{policy:?}");
                            assert!(taken.insert(local.port()), "a port taken twice");
                            conns.push(pcb);
                        }
                        Err(error) => break error,
                    }
                };
                let accepted = range.clone().filter(|p| p % one_in == 1 % one_in).count();
                assert_eq!(taken.len(), accepted, "{policy:?} {protocol:?} 1/{one_in}");
                let full = full_range_error(policy, protocol, &range, |pcb| {
                    pcb.connect(addr(PEER)).map(drop)
                });
                assert_eq!(end, full, "{policy:?} {protocol:?} 1/{one_in}");
            }
        }
    }
}

/// The error of the call `call` on a fresh PCB of a table without a filter
/// whose every port of `range` is bound: the kernel's error for a full
/// range on that path.
fn full_range_error(
    policy: Policy,
    protocol: Protocol,
    range: &RangeInclusive<u16>,
    call: impl Fn(&Pcb<()>) -> Result<(), Error>,
) -> Error {
    let t = Builder::new()
        .policy(policy)
        .protocol(protocol)
        .ephemeral_ports(range.clone())
        .build::<()>();
    let holders: Vec<Pcb<()>> = range
        .clone()
        .map(|port| {
            let pcb = t.attach(Family::Inet, Cred::ROOT, ());
            pcb.bind(SocketAddr::new(addr(PEER).ip(), port)).unwrap();
            if protocol == Protocol::Tcp {
                pcb.connect(addr(PEER)).unwrap();
            }
            pcb
        })
        .collect();
    let pcb = t.attach(Family::Inet, Cred::ROOT, ());
    let error = call(&pcb).expect_err("the range is full");
    drop(holders);
    error
}

/// A filter that refuses everything: every path that picks a port fails
/// with the error of a full range, and leaves the PCB as it was.
#[test]
fn refusing_every_port_gives_the_exhaustion_error() {
    let range = 40000..=40031;
    for policy in [Policy::FreeBsd, Policy::Linux] {
        for protocol in [Protocol::Tcp, Protocol::Udp] {
            let t = table(policy, protocol, range.clone(), |_| false);
            type Call = fn(&Pcb<()>) -> Result<(), Error>;
            let mut calls: Vec<(&str, Call)> = vec![
                ("connect", |pcb| pcb.connect(addr(PEER)).map(drop)),
                ("bind", |pcb| pcb.bind(addr("127.0.0.1:0")).map(drop)),
            ];
            if protocol == Protocol::Tcp {
                calls.push(("listen", |pcb| pcb.listen()));
            }
            for (name, call) in calls {
                let pcb = t.attach(Family::Inet, Cred::ROOT, ());
                let got = call(&pcb).expect_err(name);
                let full = full_range_error(policy, protocol, &range, call);
                assert_eq!(got, full, "{policy:?} {protocol:?} {name}");
                assert_eq!(pcb.local_addr().map(|a| a.port()).unwrap_or(0), 0);
                assert!(matches!(pcb.state(), State::Closed), "{name}");
            }
            assert_eq!(t.len(), 0);
        }
    }
}

/// Ports named by the caller never meet the filter: an explicit bind, the
/// connect of a socket bound that way, and the passive open.
#[test]
fn explicit_ports_are_not_filtered() {
    for policy in [Policy::FreeBsd, Policy::Linux] {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let t = table(policy, Protocol::Tcp, 40000..=40031, move |_| {
            counted.fetch_add(1, Ordering::Relaxed);
            false
        });
        let listener = t.attach(Family::Inet, Cred::ROOT, ());
        assert_eq!(
            listener.bind(addr("127.0.0.1:8080")),
            Ok(addr("127.0.0.1:8080"))
        );
        listener.listen().unwrap();
        let client = t.attach(Family::Inet, Cred::ROOT, ());
        client.bind(addr("127.0.0.1:40005")).unwrap();
        assert_eq!(client.connect(addr(PEER)), Ok(addr("127.0.0.1:40005")));
        let conn = listener
            .accept(addr("127.0.0.1:8080"), addr("127.0.0.1:40005"), ())
            .unwrap();
        assert_eq!(conn.state(), State::Connected);
        assert_eq!(calls.load(Ordering::Relaxed), 0, "{policy:?}");
        // The filter is there: an ephemeral port fails.
        let other = t.attach(Family::Inet, Cred::ROOT, ());
        assert!(other.connect(addr(PEER)).is_err());
        assert!(calls.load(Ordering::Relaxed) > 0);
    }
}

/// What the implicit binds show the filter: no peer, the address being
/// bound; and the addresses of a dual-stack socket's IPv4 flow as on the
/// wire.
#[test]
fn candidates_of_implicit_binds_and_dual_stack_flows() {
    let recorder = Recorder::default();
    let t = table(
        Policy::Linux,
        Protocol::Tcp,
        40000..=40031,
        recorder.filter(|_| true),
    );
    let pcb = t.attach(Family::Inet6, Cred::ROOT, ());
    let bound = pcb.bind(addr("[::]:0")).unwrap();
    let seen = recorder.take();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].local, bound);
    assert_eq!(seen[0].remote, None);

    let listener = t.attach(Family::Inet, Cred::ROOT, ());
    listener.listen().unwrap();
    let seen = recorder.take();
    assert_eq!(seen.len(), 1);
    assert_eq!(Some(seen[0].local), listener.local_addr());
    assert_eq!(seen[0].remote, None);

    let dual = t.attach(Family::Inet6, Cred::ROOT, ());
    let local = dual.connect(addr("[::ffff:127.0.0.1]:80")).unwrap();
    let seen = recorder.take();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].local, addr(&format!("127.0.0.1:{}", local.port())));
    assert_eq!(seen[0].remote, Some(addr(PEER)));

    // Linux UDP binds before it connects: that candidate has no peer.
    let udp = table(
        Policy::Linux,
        Protocol::Udp,
        40000..=40031,
        recorder.filter(|_| true),
    );
    let pcb = udp.attach(Family::Inet, Cred::ROOT, ());
    pcb.connect(addr(PEER)).unwrap();
    let seen = recorder.take();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].remote, None);
    assert_eq!(seen[0].protocol, Protocol::Udp);
}

/// Toward one crowded peer, refusals are remembered with the busy ports:
/// filling the range calls the filter about once per port, not once per
/// port per connect.
#[test]
fn a_storm_calls_the_filter_about_once_per_port() {
    for policy in [Policy::FreeBsd, Policy::Linux] {
        for one_in in [4u32, 16] {
            let range = 20000..=24095;
            let calls = Arc::new(AtomicUsize::new(0));
            let counted = calls.clone();
            let t = Builder::new()
                .policy(policy)
                .ephemeral_ports(range.clone())
                .seed(3)
                .port_filter(move |c| {
                    counted.fetch_add(1, Ordering::Relaxed);
                    u32::from(c.local.port()) % one_in == 0
                })
                .build::<()>();
            let mut conns = Vec::new();
            loop {
                let pcb = t.attach(Family::Inet, Cred::ROOT, ());
                match pcb.connect(addr(PEER)) {
                    Ok(_) => conns.push(pcb),
                    Err(error) => {
                        assert_eq!(error, Error::AddrNotAvailable);
                        break;
                    }
                }
            }
            assert_eq!(conns.len(), 4096 / one_in as usize);
            let calls = calls.load(Ordering::Relaxed);
            // Without the marks, the last connects each see most of the
            // refused ports again: 56,035 calls for FreeBSD at 1/4 (about
            // 5,000 with them and the sweep ahead of the scans).
            assert!(
                calls <= 3 * 4096,
                "{policy:?} 1/{one_in}: {calls} calls of the filter"
            );
        }
    }
}

/// A filter that accepts everything changes nothing: the same ports, in the
/// same order, as a table without one (same seed).
#[test]
fn an_accepting_filter_changes_nothing() {
    for policy in [Policy::FreeBsd, Policy::Linux] {
        for protocol in [Protocol::Tcp, Protocol::Udp] {
            let recorder = Recorder::default();
            let build = |filtered: bool| {
                let builder = Builder::new()
                    .policy(policy)
                    .protocol(protocol)
                    .ephemeral_ports(30000..=30511)
                    .seed(11);
                if filtered {
                    builder.port_filter(recorder.filter(|_| true))
                } else {
                    builder
                }
                .build::<()>()
            };
            let (plain, filtered) = (build(false), build(true));
            let mut conns = Vec::new();
            for _ in 0..400 {
                let a = plain.attach(Family::Inet, Cred::ROOT, ());
                let b = filtered.attach(Family::Inet, Cred::ROOT, ());
                let (pa, pb) = (a.connect(addr(PEER)), b.connect(addr(PEER)));
                assert_eq!(pa, pb, "{policy:?} {protocol:?}");
                // The filter runs before the check of a port in use: the
                // scan's last candidate is the port taken.
                let seen = recorder.take();
                let last = seen.last().map(|c| c.local.port());
                assert_eq!(last, pb.ok().map(|l| l.port()));
                conns.push((a, b));
            }
        }
    }
}
