//! `in_pcblookup_local()` and `in6_pcblookup_local()`: who holds a local
//! address and port, exactly or by the best fit.

use std::net::IpAddr;

use super::lookup::first_in_chain;
use crate::addrs::Ep;
use crate::state::{Expect, Model, Rec};

/// The cost `in_pcblookup_local(..., INPLOOKUP_WILDCARD)` gives `r` for
/// `laddr`, seen from IPv4 when `v4`, or `None` if it does not fit: +3 for a
/// dual-stack PCB seen from IPv4 (`INP_LOOKUP_MAPPED_PCB_COST`), +1 if
/// connected, +1 if exactly one side is a wildcard.
fn fit_cost(r: &Rec, laddr: IpAddr, v4: bool) -> Option<u32> {
    let mut cost = 0;
    if v4 && r.takes_v6() {
        cost += 3;
    }
    if r.connected() {
        cost += 1;
    }
    let own = if v4 { r.v4_laddr() } else { r.local.0 };
    if !own.is_unspecified() {
        if laddr.is_unspecified() {
            cost += 1;
        } else if own != laddr {
            return None;
        }
    } else if !laddr.is_unspecified() {
        cost += 1;
    }
    Some(cost)
}

/// The PCBs on `lport` that `laddr`'s family can see (`INP_IPV4` or
/// `INP_IPV6`), of FIB `fib` (`None`: `RT_ALL_FIBS`, every FIB).
fn on_port(
    m: &Model,
    laddr: IpAddr,
    lport: u16,
    fib: Option<u32>,
) -> impl Iterator<Item = (usize, &Rec)> {
    let v4 = laddr.is_ipv4();
    let freebsd = m.freebsd();
    m.live().filter(move |(_, r)| {
        r.local.1 == lport
            && fib.is_none_or(|f| r.device == f)
            && if v4 {
                r.takes_v4_for(freebsd)
            } else {
                r.takes_v6()
            }
    })
}

/// Every candidate `in_pcblookup_local()` could return, before ties are
/// broken: the unconnected PCBs on exactly `laddr`, or the best-fitting ones.
fn local_candidates(
    m: &Model,
    laddr: IpAddr,
    lport: u16,
    wildcard: bool,
    fib: Option<u32>,
) -> Vec<(u32, &Rec, usize)> {
    let v4 = laddr.is_ipv4();
    let fits = on_port(m, laddr, lport, fib).filter_map(|(i, r)| {
        if wildcard {
            fit_cost(r, laddr, v4).map(|cost| (cost, r, i))
        } else {
            let own = if v4 { r.v4_laddr() } else { r.local.0 };
            (r.unconnected_in_table() && own == laddr).then_some((0, r, i))
        }
    });
    let all: Vec<_> = fits.collect();
    let best = all.iter().map(|(cost, _, _)| *cost).min();
    all.into_iter()
        .filter(|(cost, _, _)| Some(*cost) == best)
        .collect()
}

/// `in_pcblookup_local()` (IPv4 when `laddr` is): ties go to the wild chain's
/// order (exact mode) or to the newest PCB (best fit). `fib` as in
/// [`on_port`].
pub(super) fn local_v4(
    m: &Model,
    laddr: IpAddr,
    lport: u16,
    wildcard: bool,
    fib: Option<u32>,
) -> Option<usize> {
    local_pick(m, laddr, lport, wildcard, fib)
}

/// `in6_pcblookup_local()`: the same over PCBs with `INP_IPV6`, without the
/// mapped cost.
pub(super) fn local_v6(
    m: &Model,
    laddr: IpAddr,
    lport: u16,
    wildcard: bool,
    fib: Option<u32>,
) -> Option<usize> {
    local_pick(m, laddr, lport, wildcard, fib)
}

fn local_pick(
    m: &Model,
    laddr: IpAddr,
    lport: u16,
    wildcard: bool,
    fib: Option<u32>,
) -> Option<usize> {
    let ties = local_candidates(m, laddr, lport, wildcard, fib);
    if wildcard {
        ties.into_iter()
            .max_by_key(|(_, r, _)| r.seq)
            .map(|(_, _, i)| i)
    } else {
        first_in_chain(ties.into_iter().map(|(_, r, i)| (i, r)))
    }
}

/// Every PCB tied for `lookup_local`'s answer, for rule sets that do not fix
/// the order of ties.
pub(crate) fn lookup_local_ties(m: &Model, local: Ep, wildcard: bool) -> Vec<usize> {
    local_candidates(m, local.0, local.1, wildcard, None)
        .into_iter()
        .map(|(_, _, i)| i)
        .collect()
}

pub(crate) fn lookup_local(m: &Model, local: Ep, wildcard: bool) -> Expect {
    let found = if local.0.is_ipv4() {
        local_v4(m, local.0, local.1, wildcard, None)
    } else {
        local_v6(m, local.0, local.1, wildcard, None)
    };
    found.map_or(Expect::None, Expect::One)
}
