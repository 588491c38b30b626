//! The packet path past the exact stage (`in_pcblookup_hash_locked`,
//! `in_pcblookup_lbgroup`, `in_pcblookup_hash_wild_smr`) and the order of
//! the wildcard hash chain it walks.

use std::net::IpAddr;

use crate::addrs::{Ep, V4_ANY, V6_ANY};
use crate::state::{Expect, Model, Rec};

/// The order of the wildcard hash chain (`_in_pcbinshash_wild` and
/// `_in6_pcbinshash_wild`, no jails): PCBs with a specific local address at
/// the head, newest first; then unbound PCBs, each inserted before the first
/// unbound entry (newest first); unbound IPv4-mapped PCBs of IPv6 sockets are
/// appended at the tail (oldest first).
fn chain_key(r: &Rec) -> (u8, i64) {
    let seq = r.seq as i64;
    if !r.is_wild() {
        (0, -seq)
    } else if r.inet6 && r.local.0.is_ipv4() {
        (2, seq)
    } else {
        (1, -seq)
    }
}

pub(super) fn first_in_chain<'a>(it: impl Iterator<Item = (usize, &'a Rec)>) -> Option<usize> {
    it.min_by_key(|(_, r)| chain_key(r)).map(|(i, _)| i)
}

/// What `in_pcblookup_hash_locked(..., INPLOOKUP_WILDCARD)` finds past the
/// exact stage, or any hit including it.
pub(super) fn lookup_hit(m: &Model, l: Ep, r: Ep) -> Option<()> {
    let exact = m
        .live()
        .any(|(_, p)| p.connected() && p.local == l && p.remote == Some(r));
    if exact || lookup_wild(m, l, r, None) != Expect::None {
        Some(())
    } else {
        None
    }
}

/// The stage past the exact one for a packet of FIB `fib` (`None`:
/// `RT_ALL_FIBS`, as while FIBs are not scoped): groups of that FIB only
/// (`in_pcblookup_lb_match`), and PCBs of that FIB only
/// (`in_pcblookup_wild_match`).
pub(crate) fn lookup_wild(m: &Model, l: Ep, _r: Ep, fib: Option<u32>) -> Expect {
    let v4 = l.0.is_ipv4();
    // in_pcblookup_lbgroup(): an exact group before a wildcard one; among
    // equals the last in the bucket (every group "lb_match"es without NUMA
    // domains and FIBs). An empty group ends the stage with nothing.
    let any = if v4 { V4_ANY } else { V6_ANY };
    let pick_group = |laddr: IpAddr| {
        m.groups
            .iter()
            .filter(|g| g.lport == l.1 && g.laddr == laddr && fib.is_none_or(|f| g.fib == f))
            .max_by_key(|g| g.pos)
    };
    if let Some(g) = pick_group(l.0).or_else(|| pick_group(any)) {
        let members: Vec<usize> = m
            .live()
            .filter(|(_, r)| r.group == Some(g.id) && !r.pending)
            .map(|(i, _)| i)
            .collect();
        if let Some(group) = Expect::of(members) {
            return group;
        }
    }
    // in_pcblookup_hash_wild_locked(): a specific address, then IPv4
    // wildcards, then IPv6 sockets' wildcards (for IPv4 packets). Among equals
    // the first in the chain, as the lock-free path returns it.
    let rank = |r: &Rec| -> Option<u8> {
        if !r.unconnected_in_table() || r.local.1 != l.1 || fib.is_some_and(|f| r.device != f) {
            return None;
        }
        if v4 {
            if !r.takes_v4() {
                return None;
            }
            // in_pcblookup_wild_match(): a wildcard PCB is a WILD match
            // before its address is compared (so also for a packet to
            // 0.0.0.0).
            // The packet path (in_pcblookup_hash_wild_smr) takes the first
            // match in the chain: a dual-stack :: ranks with 0.0.0.0 (it is
            // inserted by _in6_pcbinshash_wild before the first unbound
            // entry); only the v4-mapped wildcard sits at the tail.
            let own = r.v4_laddr();
            if own.is_unspecified() {
                Some(if r.inet6 && r.local.0.is_ipv4() { 1 } else { 2 })
            } else if own == l.0 {
                Some(3)
            } else {
                None
            }
        } else {
            if !r.takes_v6() {
                return None;
            }
            if r.local.0.is_unspecified() {
                Some(2)
            } else if r.local.0 == l.0 {
                Some(3)
            } else {
                None
            }
        }
    };
    let top = m.live().filter_map(|(_, r)| rank(r)).max();
    let Some(top) = top else {
        return Expect::None;
    };
    first_in_chain(m.live().filter(|(_, r)| rank(r) == Some(top))).map_or(Expect::None, Expect::One)
}
