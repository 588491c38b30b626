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

fn errors(out: &mut String, errors: &ErrorCounts) {
    if errors.total() == 0 {
        let _ = writeln!(out, "{:<12}none", "errors");
        return;
    }
    for (i, (name, errno, op, n)) in errors.rows().enumerate() {
        let head = if i == 0 { "errors" } else { "" };
        let _ = writeln!(
            out,
            "{head:<12}{:<27}{:>15}",
            format!("{name} ({errno}) on {op}"),
            thousands(n)
        );
    }
}

fn table(out: &mut String, head: &str, stats: &Stats) {
    let _ = writeln!(
        out,
        "{head:<12}{} PCBs: {} listening, {} connected, {} in TIME_WAIT, {} bound; {} group members",
        thousands(stats.len as u64),
        thousands(stats.listen as u64),
        thousands(stats.connected as u64),
        thousands(stats.time_wait as u64),
        thousands(stats.bound as u64),
        stats.group_members,
    );
    let _ = writeln!(
        out,
        "{:<12}exact index {} entries in {} buckets, longest chain {}, {} resizes; {} ports in use, at most {} PCBs on one",
        "",
        thousands(stats.exact.entries as u64),
        thousands(stats.exact.buckets as u64),
        stats.exact.longest_chain,
        stats.resizes,
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
        "pcbhash demux: synthetic workload, policy {}, seed {}, {} RX thread{}, {} flow slots, churn {}/s",
        policy_name(config.policy),
        config.seed,
        config.threads,
        if config.threads == 1 { "" } else { "s" },
        thousands(u64::from(config.flows)),
        thousands(u64::from(config.churn)),
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
    let _ = writeln!(out, "{:<12}{}", "listeners", listeners.join(", "));
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
    outcomes(&mut out, &summary.outcomes());
    let hits = summary.listener_hits();
    let group: Vec<usize> = (0..summary.listeners.len())
        .filter(|&id| summary.listeners[id].group)
        .collect();
    for family in [pcbhash::Family::Inet, pcbhash::Family::Inet6] {
        let members: Vec<usize> = group
            .iter()
            .copied()
            .filter(|&id| summary.listeners[id].family == family)
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
            "{:<12}{} members of {}: {} of {} lookups",
            "group",
            members.len(),
            summary.listeners[members[0]].addr,
            shares.join(" / "),
            thousands(total),
        );
    }
    let flows = &summary.flows;
    let _ = writeln!(
        out,
        "{:<12}opened {} (accepted {}, connected {}); closed {} (peer FIN {}, RST {}, TIME_WAIT expired {}); {} entered TIME_WAIT",
        "flows",
        thousands(flows.opened()),
        thousands(flows.accepted),
        thousands(flows.connected),
        thousands(flows.closed()),
        thousands(flows.fin_passive),
        thousands(flows.rst),
        thousands(flows.time_wait_expired),
        thousands(flows.fin_active),
    );
    let _ = writeln!(
        out,
        "{:<12}{} HTTPS workers restarted while traffic flowed; {} flows still open at the end",
        "",
        flows.listener_restarts,
        thousands(flows.closed_at_shutdown),
    );
    errors(&mut out, &summary.errors);
    table(&mut out, "table", &summary.stats);
    let checks = summary.checks();
    let _ = writeln!(
        out,
        "{:<12}{}: {} lookups checked, {} violations ({} unchecked: their flow changed phase mid-lookup)",
        "invariants",
        if summary.passed() { "PASSED" } else { "FAILED" },
        thousands(checks.checked()),
        thousands(checks.violations()),
        thousands(checks.unchecked),
    );
    for (name, check) in checks.named() {
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
        "after closing everything, PCBs left in the table",
        format!("{} (handles {})", after.len, after.attached),
    );
    out
}

/// The summary of a capture replay.
pub fn replay(report: &ReplayReport, policy: Policy, elapsed: Duration) -> String {
    let mut out = String::new();
    let files = &report.files;
    let packets = &report.packets;
    let _ = writeln!(
        out,
        "pcbhash demux: replay of {} capture{}, policy {}",
        thousands(files.total),
        if files.total == 1 { "" } else { "s" },
        policy_name(policy),
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<12}{} read ({} pcap, {} pcapng), {} unreadable, {} cut short by a bad record",
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
        let _ = writeln!(out, "{:<12}{} (files)", "link types", links.join(", "));
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
    let _ = writeln!(
        out,
        "{:<12}TCP {}, UDP {}; not for a socket: {} non-IP, {} other IP protocols, {} IP fragments, {} bad ports or addresses",
        "  parsed",
        thousands(packets.tcp),
        thousands(packets.udp),
        thousands(packets.non_ip),
        thousands(packets.other_ip),
        thousands(packets.fragments),
        thousands(packets.bad_endpoints),
    );
    let _ = writeln!(
        out,
        "{:<12}link header {}, IP header {}, TCP/UDP header {}, unsupported link type {}",
        "  unparse.",
        thousands(packets.bad_link),
        thousands(packets.bad_ip),
        thousands(packets.bad_transport),
        thousands(packets.unsupported_link),
    );
    outcomes(&mut out, &report.outcomes);
    let actions = &report.actions;
    let _ = writeln!(
        out,
        "{:<12}TCP: {} listeners opened for SYNs, {} accepted, {} connected; {} FIN -> TIME_WAIT, {} closed by FIN, {} by RST, {} TIME_WAIT reused by a SYN",
        "actions",
        thousands(actions.listeners),
        thousands(actions.accepted),
        thousands(actions.connected),
        thousands(actions.time_wait),
        thousands(actions.fin_closed),
        thousands(actions.rst_closed),
        thousands(actions.time_wait_reused),
    );
    let _ = writeln!(
        out,
        "{:<12}UDP: {} servers bound for datagrams, {} client sockets connected; {} PCBs expired by capture time",
        "",
        thousands(actions.udp_servers),
        thousands(actions.udp_clients),
        thousands(actions.expired),
    );
    errors(&mut out, &report.errors);
    let checks = &report.checks;
    let _ = writeln!(
        out,
        "{:<12}{}: {} lookups checked, {} violations; {} of {} files left both tables empty once closed",
        "invariants",
        if report.passed() { "PASSED" } else { "FAILED" },
        thousands(checks.checked),
        thousands(checks.violations),
        thousands(checks.clean_files),
        thousands(files.read()),
    );
    out
}
