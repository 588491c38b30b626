//! The summaries printed at the end of a run, as plain text.

use std::fmt::Write;
use std::time::Duration;

use pcbhash::{Policy, Stats};

use crate::errors::ErrorCounts;
use crate::listeners::describe;
use crate::outcome::Outcomes;
use crate::replay::ReplayReport;
use crate::workload::Summary;

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate such as `12.3 M/s`.
pub fn rate(n: u64, elapsed: Duration) -> String {
    let per_second = n as f64 / elapsed.as_secs_f64().max(1e-9);
    if per_second >= 1e6 {
        format!("{:.2} M/s", per_second / 1e6)
    } else if per_second >= 1e3 {
        format!("{:.1} k/s", per_second / 1e3)
    } else {
        format!("{per_second:.0}/s")
    }
}

/// The policy as the command line names it.
pub fn policy_name(policy: Policy) -> &'static str {
    match policy {
        Policy::FreeBsd => "freebsd",
        Policy::Linux => "linux",
        _ => "other",
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

fn outcomes(out: &mut String, outcomes: &Outcomes) {
    let total = outcomes.total();
    let rows = [
        (
            "exact",
            outcomes.exact,
            "connected PCB, from the 4-tuple index",
        ),
        (
            "  in TIME_WAIT",
            outcomes.time_wait,
            "same index, socket already detached",
        ),
        (
            "group",
            outcomes.group,
            "listener picked from a reuseport/LB group by hash",
        ),
        (
            "wildcard",
            outcomes.wildcard,
            "listener or bound PCB, from the port's wildcard list",
        ),
        (
            "miss",
            outcomes.miss,
            "no PCB: the stack would answer with RST / ICMP",
        ),
    ];
    for (i, (name, n, what)) in rows.into_iter().enumerate() {
        let head = if i == 0 { "lookups" } else { "" };
        let _ = writeln!(
            out,
            "{head:<12}{name:<15}{:>15} {:>6.2}%  {what}",
            thousands(n),
            percent(n, total)
        );
    }
}

/// The width summaries wrap at.
const WIDTH: usize = 100;

/// Writes `items` after a 12-column `head`, separated by ", ", wrapping
/// before [`WIDTH`].
fn wrapped(out: &mut String, head: &str, items: &[String]) {
    let mut line = format!("{head:<12}");
    let mut first = true;
    for item in items {
        if !first && line.len() + 2 + item.len() > WIDTH {
            let _ = writeln!(out, "{line},");
            line = format!("{:<12}", "");
            first = true;
        }
        if !first {
            line.push_str(", ");
        }
        line.push_str(item);
        first = false;
    }
    let _ = writeln!(out, "{line}");
}

fn errors(out: &mut String, errors: &ErrorCounts) {
    if errors.total() == 0 {
        let _ = writeln!(out, "{:<12}none", "errors");
        return;
    }
    let rows: Vec<String> = errors
        .rows()
        .map(|(name, errno, op, n)| format!("{} x {name} ({errno}) from {op}", thousands(n)))
        .collect();
    wrapped(out, "errors", &rows);
}

fn table(out: &mut String, stats: &Stats) {
    let _ = writeln!(
        out,
        "{:<12}{} PCBs: {} listening, {} connected, {} in TIME_WAIT, {} bound; {} in groups",
        "table",
        thousands(stats.len as u64),
        thousands(stats.listen as u64),
        thousands(stats.connected as u64),
        thousands(stats.time_wait as u64),
        thousands(stats.bound as u64),
        stats.group_members,
    );
    let _ = writeln!(
        out,
        "{:<12}exact index: {} entries, {} buckets, {} displaced, longest probe {} buckets, {} resizes",
        "",
        thousands(stats.exact.entries as u64),
        thousands(stats.exact.buckets as u64),
        thousands(stats.exact.displaced as u64),
        stats.exact.longest_chain,
        stats.resizes,
    );
    let _ = writeln!(
        out,
        "{:<12}{} local ports in use, at most {} PCBs on one port",
        "",
        thousands(stats.ports_in_use as u64),
        thousands(stats.most_on_one_port as u64),
    );
}

/// The summary of a synthetic run.
pub fn workload(summary: &Summary) -> String {
    let mut out = String::new();
    let config = &summary.config;
    let packets = summary.packets();
    let _ = writeln!(
        out,
        "pcbhash demux: synthetic workload, policy {}, seed {}",
        policy_name(config.policy),
        config.seed,
    );
    let _ = writeln!(
        out,
        "{:<12}{} RX thread{}, {} flow slots, {} new connections/s, TIME_WAIT {:?}",
        "setup",
        config.threads,
        if config.threads == 1 { "" } else { "s" },
        thousands(u64::from(config.flows)),
        thousands(u64::from(config.churn)),
        config.time_wait,
    );
    let mut listeners: Vec<(usize, String)> = Vec::new();
    for id in 0..summary.listeners.len() {
        let text = describe(&summary.listeners, id, config.policy);
        match listeners.last_mut() {
            Some((n, last)) if *last == text => *n += 1,
            _ => listeners.push((1, text)),
        }
    }
    let listeners: Vec<String> = listeners
        .into_iter()
        .map(|(n, text)| {
            if n == 1 {
                text
            } else {
                format!("{n} x {text}")
            }
        })
        .collect();
    wrapped(&mut out, "listeners", &listeners);
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<12}{} in {:.2} s: {} ({} per RX thread)",
        "packets",
        thousands(packets),
        summary.elapsed.as_secs_f64(),
        rate(packets, summary.elapsed),
        rate(packets / config.threads.max(1) as u64, summary.elapsed),
    );
    let steered: u64 = summary.rx.iter().map(|rx| rx.steered_away).sum();
    let _ = writeln!(
        out,
        "{:<12}{} packets of outbound flows steered to another RX thread's queue (its to look up)",
        "steering",
        thousands(steered),
    );
    devices(&mut out, summary);
    outcomes(&mut out, &summary.outcomes());
    let hits = summary.listener_hits();
    for family in [pcbhash::Family::Inet, pcbhash::Family::Inet6] {
        let members: Vec<usize> = (0..summary.listeners.len())
            .filter(|&id| summary.listeners[id].group && summary.listeners[id].family == family)
            .collect();
        let total: u64 = members.iter().map(|&id| hits[id]).sum();
        if members.is_empty() || total == 0 {
            continue;
        }
        let shares: Vec<String> = members
            .iter()
            .map(|&id| format!("{:.1}%", percent(hits[id], total)))
            .collect();
        let _ = writeln!(
            out,
            "{:<12}{}: {} of {} lookups, by member",
            "group",
            summary.listeners[members[0]].addr,
            shares.join(" / "),
            thousands(total),
        );
    }
    let flows = &summary.flows;
    let _ = writeln!(
        out,
        "{:<12}opened {}: {} accepted, {} connected (outbound)",
        "flows",
        thousands(flows.opened()),
        thousands(flows.accepted),
        thousands(flows.connected),
    );
    let _ = writeln!(
        out,
        "{:<12}closed {}: {} after the peer's FIN, {} by RST, {} at the end of TIME_WAIT",
        "",
        thousands(flows.closed()),
        thousands(flows.fin_passive),
        thousands(flows.rst),
        thousands(flows.time_wait_expired),
    );
    let _ = writeln!(
        out,
        "{:<12}{} entered TIME_WAIT; {} HTTPS workers restarted; {} flows open at the end",
        "",
        thousands(flows.fin_active),
        flows.listener_restarts,
        thousands(flows.closed_at_shutdown),
    );
    errors(&mut out, &summary.errors);
    table(&mut out, &summary.stats);
    let checks = summary.checks();
    let _ = writeln!(
        out,
        "{:<12}{}: {} lookups checked, {} violations, {} unchecked (flow changed phase)",
        "invariants",
        if summary.passed() { "PASSED" } else { "FAILED" },
        thousands(checks.checked()),
        thousands(checks.violations()),
        thousands(checks.unchecked),
    );
    for (name, check) in checks.shown(config.policy) {
        let _ = writeln!(
            out,
            "{:<12}{:<48}{:>15} / {}",
            "",
            name,
            thousands(check.checked - check.violations),
            thousands(check.checked),
        );
    }
    let after = &summary.after_teardown;
    let _ = writeln!(
        out,
        "{:<12}{:<48}{:>15}",
        "",
        "PCBs left after closing every handle",
        format!("{} ({} handles)", after.len, after.attached),
    );
    out
}

/// Lookups per device the packets arrived on.
fn devices(out: &mut String, summary: &Summary) {
    let by_device = summary.by_device();
    let packets = summary.packets();
    if by_device.unknown == packets {
        let _ = writeln!(
            out,
            "{:<12}{} lookups with lookup(), no device: under FreeBSD a device is a FIB,\n\
             {:<12}which this workload does not use (the second device runs with --policy linux)",
            "devices",
            thousands(by_device.unknown),
            "",
        );
        return;
    }
    let share = |n| format!("{} ({:.1}%)", thousands(n), percent(n, packets));
    let _ = writeln!(
        out,
        "{:<12}lookup_on device 1: {}, device 2: {}; lookup (no device): {}",
        "devices",
        share(by_device.device_1),
        share(by_device.device_2),
        thousands(by_device.unknown),
    );
}

/// The summary of a capture replay.
pub fn replay(report: &ReplayReport, policy: Policy, elapsed: Duration) -> String {
    let mut out = String::new();
    let files = &report.files;
    let packets = &report.packets;
    let _ = writeln!(
        out,
        "pcbhash demux: replay of {} capture file{}, policy {}",
        thousands(files.total),
        if files.total == 1 { "" } else { "s" },
        policy_name(policy),
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<12}{} read ({} pcap, {} pcapng), {} unreadable, {} ending in a bad record",
        "files",
        thousands(files.read()),
        thousands(files.pcap),
        thousands(files.pcapng),
        thousands(files.unreadable),
        thousands(files.truncated),
    );
    let links: Vec<String> = report
        .link_types
        .iter()
        .map(|(name, n)| format!("{name} {}", thousands(*n)))
        .collect();
    if !links.is_empty() {
        wrapped(&mut out, "link types", &links);
    }
    let _ = writeln!(
        out,
        "{:<12}{} in {:.3} s ({}) = {} parsed + {} unparseable",
        "packets",
        thousands(packets.total),
        elapsed.as_secs_f64(),
        rate(packets.total, elapsed),
        thousands(packets.parsed()),
        thousands(packets.unparseable()),
    );
    wrapped(
        &mut out,
        "  parsed",
        &[
            format!("TCP {}", thousands(packets.tcp)),
            format!("UDP {}", thousands(packets.udp)),
            format!("non-IP {}", thousands(packets.non_ip)),
            format!("other IP protocols {}", thousands(packets.other_ip)),
            format!("IP fragments {}", thousands(packets.fragments)),
            format!(
                "bad ports or addresses {}",
                thousands(packets.bad_endpoints)
            ),
        ],
    );
    wrapped(
        &mut out,
        "  unparsed",
        &[
            format!("unreadable record {}", thousands(packets.bad_records)),
            format!("link header {}", thousands(packets.bad_link)),
            format!("IP header {}", thousands(packets.bad_ip)),
            format!("TCP/UDP header {}", thousands(packets.bad_transport)),
            format!("unknown link type {}", thousands(packets.unsupported_link)),
        ],
    );
    outcomes(&mut out, &report.outcomes);
    let actions = &report.actions;
    wrapped(
        &mut out,
        "TCP",
        &[
            format!("{} listeners opened for SYNs", thousands(actions.listeners)),
            format!("{} accepted", thousands(actions.accepted)),
            format!("{} connected", thousands(actions.connected)),
            format!("{} into TIME_WAIT", thousands(actions.time_wait)),
            format!("{} closed after FIN", thousands(actions.fin_closed)),
            format!("{} by RST", thousands(actions.rst_closed)),
            format!("{} TIME_WAIT reused", thousands(actions.time_wait_reused)),
        ],
    );
    wrapped(
        &mut out,
        "UDP",
        &[
            format!(
                "{} servers bound for datagrams",
                thousands(actions.udp_servers)
            ),
            format!(
                "{} client sockets connected",
                thousands(actions.udp_clients)
            ),
            format!(
                "{} PCBs expired by capture time",
                thousands(actions.expired)
            ),
        ],
    );
    let group = &report.groupcast;
    wrapped(
        &mut out,
        "  to groups",
        &[
            format!(
                "{} datagrams handed to deliver() ({} multicast, {} broadcast)",
                thousands(group.datagrams()),
                thousands(group.multicast),
                thousands(group.broadcast),
            ),
            format!(
                "{} delivered, to {} PCBs in all (at most {} at once)",
                thousands(group.delivered),
                thousands(group.receivers),
                thousands(group.most_receivers),
            ),
        ],
    );
    errors(&mut out, &report.errors);
    let checks = &report.checks;
    let _ = writeln!(
        out,
        "{:<12}{}: {} lookups checked, {} violations, {} reader panics",
        "invariants",
        if report.passed() { "PASSED" } else { "FAILED" },
        thousands(checks.checked),
        thousands(checks.violations),
        files.panicked,
    );
    let _ = writeln!(
        out,
        "{:<12}{} of {} files left both tables empty once every handle was closed",
        "",
        thousands(checks.clean_files),
        thousands(files.read()),
    );
    out
}
