//! The stack of `examples/tunstack` against the Linux kernel's own clients.
//!
//! In a private network namespace (the host's network is never touched),
//! the stack runs on a TUN device and the test drives it from the kernel
//! side: 1,000 TCP echo connections from `std::net::TcpStream`, several at
//! once, over IPv4 and IPv6; `curl` fetching the HTTP page over both
//! families (skipped, with a line saying so, if `curl` is not installed);
//! UDP echo, a connected and a bound UDP socket, a broadcast handed out by
//! `deliver`; connects to a closed port, refused by the stack's RST; and
//! active opens from the stack to a kernel-side server. Every byte is
//! compared, and the tables are empty after shutdown.
//!
//! Without a namespace or a TUN device it prints one line saying what was
//! skipped and why; with `CI=true` that is a failure.

#![cfg(target_os = "linux")]

mod linux_kernel;

#[path = "../examples/tunstack/endpoint.rs"]
#[allow(dead_code)] // the namespace is the harness's (`Netns`)
mod endpoint;

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use endpoint::peers::Checked;
use endpoint::{apps, drive, peers, stack, tcp, wire};
use linux_kernel::skip::{ci_requires_kernel, current_test, CI_VAR};
use linux_kernel::Netns;

/// TCP echo connections, and how many run at once.
const CONNECTIONS: u64 = 1_000;
const PARALLEL: u64 = 8;

/// Skips with one line on stderr, or fails under `CI=true`.
fn skip_or_fail(reason: &str) {
    let test = current_test();
    let ci = std::env::var(CI_VAR).ok();
    if ci_requires_kernel(ci.as_deref()) {
        panic!("{test}: {CI_VAR}=true forbids skipping: {reason}");
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: nothing was checked: {reason} (with {CI_VAR}=true this fails)"
    );
}

/// Whether `curl` can be run here.
fn have_curl() -> bool {
    Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
}

/// The bytes `drive` sends over TCP echo: the messages `0..n` of each
/// family's share.
fn echo_bytes(connections: u64) -> u64 {
    let half = connections / 2;
    let sum = |n: u64| (0..n).map(|i| peers::message(i).len() as u64).sum::<u64>();
    sum(connections - half) + sum(half)
}

#[test]
fn tunstack_serves_the_kernels_clients() {
    let Some(_ns) = Netns::enter_or_skip() else {
        return;
    };
    let config = stack::Config {
        two_msl: Duration::from_millis(500),
        progress: None,
    };
    let handle = match stack::start(config) {
        Ok(handle) => handle,
        Err(reason) => return skip_or_fail(&reason),
    };
    let report = drive::drive(&handle, CONNECTIONS, PARALLEL);
    let summary = handle.shutdown();
    let _ = writeln!(
        std::io::stderr(),
        "tunstack: {} TCP echo connections, {} bytes checked, in {:.2?}; {summary}",
        report.echo.exchanges,
        report.echo.bytes,
        report.echo_time
    );

    assert_eq!(report.failures, Vec::<String>::new(), "{summary}");
    assert_eq!(
        report.echo,
        Checked {
            exchanges: CONNECTIONS,
            bytes: echo_bytes(CONNECTIONS),
        }
    );
    let pages = if have_curl() {
        let page = apps::PAGE.len() as u64;
        assert_eq!(
            report.pages,
            Some(Checked {
                exchanges: 2,
                bytes: 2 * page,
            })
        );
        2
    } else {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED the curl part of {}: curl is not installed",
            current_test()
        );
        assert_eq!(report.pages, None);
        0
    };
    // 50 echoes per family, the connected and the bound socket, the broadcast.
    assert_eq!(report.udp.exchanges, 50 + 50 + 1 + 1 + 1);
    assert_eq!(report.refused, 2);
    assert_eq!(report.active.exchanges, 2);

    let c = &summary.counters;
    assert_eq!(c.accepted, CONNECTIONS + pages, "{summary}");
    assert_eq!(c.opened, 2, "{summary}");
    assert_eq!(c.closed, c.accepted + c.opened, "{summary}");
    assert_eq!(c.reset_by_peer, 0, "{summary}");
    assert!(c.rsts_sent >= 2 && c.tcp.miss >= 2, "{summary}");
    // The stack closes first on HTTP and on its active opens.
    assert_eq!(c.time_wait_entered, pages + 2, "{summary}");
    assert_eq!(c.time_wait_expired, c.time_wait_entered, "{summary}");
    assert_eq!(c.udp.broadcast_receivers, 1, "{summary}");
    assert!(c.errors.is_empty(), "{summary}");
    assert_eq!(summary.left, (0, 0), "the tables are empty after shutdown");
}

/// A segment from the kernel side to the stack's echo port.
fn segment(seq: u32, ack: Option<u32>, syn: bool, payload: &[u8]) -> wire::Segment {
    wire::Segment {
        local: "192.0.2.1:7".parse().unwrap(),
        remote: "192.0.2.2:40000".parse().unwrap(),
        seq,
        ack: ack.unwrap_or(0),
        control: wire::Control {
            syn,
            ack: ack.is_some(),
            ..wire::Control::default()
        },
        payload: payload.to_vec(),
    }
}

/// The connection a cookie handshake from peer ISN `irs` opens.
fn handshake(cookies: &tcp::Cookies, irs: u32) -> tcp::Tcb {
    let syn_ack = cookies.syn_ack(&segment(irs, None, true, b""));
    assert!(syn_ack.control.syn && syn_ack.control.ack);
    assert_eq!(syn_ack.ack, irs.wrapping_add(1));
    let ack = segment(
        irs.wrapping_add(1),
        Some(syn_ack.seq.wrapping_add(1)),
        false,
        b"",
    );
    cookies
        .complete(&ack)
        .expect("the cookie's own ACK completes")
}

#[test]
fn a_segment_beyond_a_gap_is_dropped_and_acknowledged_again() {
    let cookies = tcp::Cookies::default();
    let irs = u32::MAX - 2; // the sequence numbers wrap on the way
    let mut tcb = handshake(&cookies, irs);
    let next = irs.wrapping_add(1);
    let mut out = Vec::new();
    let events = tcb.receive(
        &segment(next.wrapping_add(5), Some(0), false, b"later"),
        &mut out,
    );
    assert_eq!(events, []);
    assert_eq!(out.len(), 1, "one duplicate ACK");
    assert_eq!((out[0].ack, out[0].payload.len()), (next, 0));
    out.clear();
    let events = tcb.receive(&segment(next, Some(0), false, b"first"), &mut out);
    assert_eq!(events, [tcp::Event::Data(b"first".to_vec())]);
    tcb.flush_ack(&mut out);
    assert_eq!(out.last().map(|s| s.ack), Some(next.wrapping_add(5)));
}

#[test]
fn a_handshake_ack_without_the_cookie_opens_nothing() {
    let cookies = tcp::Cookies::default();
    let syn_ack = cookies.syn_ack(&segment(1_000, None, true, b""));
    for wrong in [syn_ack.seq, syn_ack.seq.wrapping_add(2), 0] {
        assert!(cookies
            .complete(&segment(1_001, Some(wrong), false, b""))
            .is_none());
    }
    // Nor does the right ACK number for another peer ISN.
    let other = segment(2_001, Some(syn_ack.seq.wrapping_add(1)), false, b"");
    assert!(cookies.complete(&other).is_none());
}

#[test]
fn a_segment_that_finds_no_connection_is_reset() {
    let with_ack = tcp::reset_for(&segment(7, Some(99), false, b"data")).unwrap();
    assert!(with_ack.control.rst && !with_ack.control.ack);
    assert_eq!(with_ack.seq, 99);
    let syn = tcp::reset_for(&segment(7, None, true, b"")).unwrap();
    assert!(syn.control.rst && syn.control.ack);
    assert_eq!((syn.seq, syn.ack), (0, 8));
    let mut rst = segment(7, None, false, b"");
    rst.control.rst = true;
    assert_eq!(tcp::reset_for(&rst), None, "a RST is never answered");
}
