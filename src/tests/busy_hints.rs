//! The busy-port hints change no answer: the same random calls on a table
//! that installs hints and on one that never does.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::policy::{Policy, Protocol};
use crate::{Cred, Family, PcbTable, PortCandidate};

/// Runs the same random operations on two tables built alike, one that
/// installs a hint at the first taken port and one that never does, and
/// checks that every call answers the same. Many peers share a small
/// range, so hints also replace each other in their slots; accepts, bound
/// connects and TIME_WAIT replacements add and remove exact-index entries
/// that no scan marked. With `filtered`, a port filter refuses one
/// candidate in three, so the hints also hold refusals and the sweep
/// (`DestBitmap::sweep`) checks ports ahead of the scans.
fn same_answers_with_and_without_hints(
    policy: Policy,
    protocol: Protocol,
    randomized: bool,
    filtered: bool,
) {
    let build = |after: usize| -> PcbTable<()> {
        let builder = PcbTable::<()>::builder();
        let builder = if filtered {
            builder.port_filter(|c: &PortCandidate| {
                let remote = c.remote.map_or(0, |r| r.port());
                (c.local.port() ^ remote) % 3 != 1
            })
        } else {
            builder
        };
        builder
            .policy(policy)
            .protocol(protocol)
            .ephemeral_ports(40000..=40047)
            .randomized_ports(randomized)
            .seed(0xB05E)
            .source_address(|peer| match peer {
                IpAddr::V4(v4) if v4.octets()[0] == 10 => {
                    Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)))
                }
                IpAddr::V4(_) => Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                IpAddr::V6(_) => None,
            })
            .busy_hints_after(after)
            .build()
    };
    let tables = [build(1), build(usize::MAX)];
    let listeners: Vec<_> = tables
        .iter()
        .map(|table| {
            let pcb = table.attach(Family::Inet, Cred::ROOT, ());
            pcb.bind("0.0.0.0:40010".parse().unwrap()).unwrap();
            (protocol == Protocol::Tcp).then(|| pcb.listen().unwrap());
            pcb
        })
        .collect();
    let mut conns: [Vec<crate::Pcb<()>>; 2] = [Vec::new(), Vec::new()];
    let mut draw = crate::test_rng::xorshift(0x9E37_79B9_7F4A_7C15);
    let mut random = move |n: usize| (draw() % n as u64) as usize;
    let peer_of = |n: usize| -> SocketAddr {
        let net = if n % 3 == 0 { 10 } else { 127 };
        SocketAddr::from(([net, 9, (n / 8) as u8, 2], 80 + (n % 8) as u16))
    };
    for step in 0..6000 {
        // Mostly toward a few crowded peers, sometimes toward many others.
        let peer = if random(4) == 0 {
            peer_of(random(100))
        } else {
            peer_of(random(3))
        };
        let op = random(16);
        let len = conns[0].len();
        let answers: Vec<String> = (0..2)
            .map(|t| {
                let table = &tables[t];
                let answer = match op {
                    0..=7 => {
                        let pcb = table.attach(Family::Inet, Cred::user(1), ());
                        let answer = pcb.connect(peer);
                        conns[t].push(pcb);
                        format!("{answer:?}")
                    }
                    8..=10 if len > 0 => {
                        let pcb = conns[t].swap_remove(random_index(step, len));
                        pcb.close();
                        String::new()
                    }
                    11 if len > 0 => {
                        let pcb = &conns[t][random_index(step, len)];
                        match protocol {
                            Protocol::Tcp => format!("{:?}", pcb.time_wait()),
                            Protocol::Udp => format!("{:?}", pcb.disconnect()),
                        }
                    }
                    12 if protocol == Protocol::Tcp => {
                        let local: SocketAddr = match peer.ip() {
                            IpAddr::V4(v4) if v4.octets()[0] == 10 => "10.0.0.1:40010",
                            _ => "127.0.0.1:40010",
                        }
                        .parse()
                        .unwrap();
                        match listeners[t].accept(local, peer, ()) {
                            Ok(child) => {
                                conns[t].push(child);
                                "accepted".into()
                            }
                            Err(error) => format!("{error:?}"),
                        }
                    }
                    13 => {
                        let pcb = table.attach(Family::Inet, Cred::ROOT, ());
                        let port = 40000 + (step % 48) as u16;
                        pcb.set_reuse_addr(true).unwrap();
                        let bound = pcb.bind(SocketAddr::from(([0, 0, 0, 0], port)));
                        let answer = pcb.connect(peer);
                        conns[t].push(pcb);
                        format!("{bound:?} {answer:?}")
                    }
                    _ => String::new(),
                };
                let guard = table.pin();
                format!(
                    "{answer} | {} in table, {}",
                    table.len(),
                    table.iter(&guard).count()
                )
            })
            .collect();
        assert_eq!(answers[0], answers[1], "step {step}, op {op}, peer {peer}");
    }
    let installed = tables[0].shared.busy().installed();
    if tables[0].shared.rules().connect_holder_busy() {
        assert!(installed > 1, "hints were used and replaced");
    } else {
        assert_eq!(installed, 0, "the policy ignores the 4-tuple's holder");
    }
    assert_eq!(tables[1].shared.busy().installed(), 0);
}

/// An index below `len` that both tables agree on.
fn random_index(step: usize, len: usize) -> usize {
    step.wrapping_mul(0x9E37_79B9) % len
}

#[test]
fn hints_change_no_answer_freebsd_tcp() {
    for filtered in [false, true] {
        same_answers_with_and_without_hints(Policy::FreeBsd, Protocol::Tcp, true, filtered);
        same_answers_with_and_without_hints(Policy::FreeBsd, Protocol::Tcp, false, filtered);
    }
}

#[test]
fn hints_change_no_answer_freebsd_udp() {
    same_answers_with_and_without_hints(Policy::FreeBsd, Protocol::Udp, true, false);
    same_answers_with_and_without_hints(Policy::FreeBsd, Protocol::Udp, true, true);
}

#[test]
fn hints_change_no_answer_linux() {
    for filtered in [false, true] {
        same_answers_with_and_without_hints(Policy::Linux, Protocol::Tcp, true, filtered);
        same_answers_with_and_without_hints(Policy::Linux, Protocol::Udp, true, filtered);
    }
}

/// A filter that refuses most candidates makes no destination crowded by
/// itself: one connect to each of many peers, through a filter accepting
/// one port in 32 (about 31 refusals a scan), installs a hint only when a
/// slot's scans have added up many refusals, not at every connect (each
/// install is an 8 KiB allocation).
#[test]
fn refusals_toward_many_idle_peers_install_few_hints() {
    let table: PcbTable<()> = PcbTable::<()>::builder()
        .policy(Policy::FreeBsd)
        .seed(7)
        .port_filter(|c: &PortCandidate| {
            let remote = c.remote.map_or(0, |r| r.port());
            (c.local.port() ^ remote) % 32 == 0
        })
        .build();
    let mut conns = Vec::new();
    for n in 0..100u8 {
        let pcb = table.attach(Family::Inet, Cred::ROOT, ());
        let peer = SocketAddr::from(([127, 1, 0, n], 80));
        pcb.connect(peer).expect("a port for every peer");
        conns.push(pcb);
    }
    // About 31 refusals a connect, spread over 64 slots: about 50 a slot,
    // where an install takes 256 (none is expected). One install per
    // connect would fill about 30 of the 64 slots.
    let installed = table.shared.busy().installed();
    assert!(installed <= 25, "{installed} hint slots for 100 idle peers");
}
