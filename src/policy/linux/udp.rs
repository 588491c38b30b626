//! Linux UDP port sharing: `udp_lib_get_port`, `udp_lib_lport_inuse` and
//! `udp_lib_lport_inuse2` (`net/ipv4/udp.c`).
//!
//! UDP has no LISTEN state, so two sockets that both set SO_REUSEADDR share
//! an overlapping address and port completely. Otherwise two overlapping
//! sockets may share only if both set SO_REUSEPORT and have the same owner.
//!
//! An explicit bind scans the port's sockets in the kernel's list order and
//! stops at the first overlapping one that is not an SO_REUSEADDR pair: an
//! SO_REUSEPORT pair of the same owner there lets the bind through without
//! looking further. The list has the newest socket first, except that
//! AF_INET6 SO_REUSEPORT sockets join at its tail (`seq` encodes that order). With more than ten sockets on the
//! port, a specific-address bind scans only its own address's sockets, then
//! the wildcard ones (`udp_lib_lport_inuse2`).

use std::cmp::Reverse;

use super::saddr::{inet_rcv_saddr_equal, Sk};
use crate::policy::PcbView;

/// Above this many sockets on the port, `udp_lib_get_port` switches a
/// specific-address bind to the per-address (hash2) scan.
const PRIMARY_SCAN_MAX: usize = 10;

/// Whether `sk` and `sk2` would share: SO_REUSEADDR on both, or SO_REUSEPORT
/// on both with the same owner. `None` when they do not overlap at all.
fn shares(new: &PcbView, sk: &Sk, owner: &PcbView) -> Option<bool> {
    if new.flags.reuse_addr() && owner.flags.reuse_addr() {
        return None;
    }
    if !inet_rcv_saddr_equal(sk, &Sk::of(owner), true) {
        return None;
    }
    Some(new.flags.reuse_port() && owner.flags.reuse_port() && new.cred.uid == owner.cred.uid)
}

/// `udp_lib_get_port(sk, snum != 0)`: whether the explicit bind of `new`
/// conflicts with `owners`.
pub(crate) fn bind_conflict(new: &PcbView, owners: &[PcbView]) -> bool {
    let sk = Sk::of(new);
    if sk.is_specific() && owners.len() > PRIMARY_SCAN_MAX {
        return hash2_conflict(new, &sk, owners);
    }
    // The port's list, in the order `seq` encodes.
    let mut in_list_order: Vec<&PcbView> = owners.iter().collect();
    in_list_order.sort_by_key(|o| Reverse(o.seq));
    in_list_order
        .into_iter()
        .find_map(|o| shares(new, &sk, o))
        .is_some_and(|share| !share)
}

/// `udp_lib_lport_inuse2` on the bind's own address, then on the wildcard
/// address.
fn hash2_conflict(new: &PcbView, sk: &Sk, owners: &[PcbView]) -> bool {
    let in_list = |o: &&PcbView, wildcard: bool| {
        let theirs = Sk::of(o);
        if wildcard {
            !theirs.is_specific()
        } else {
            sk.same_bucket(&theirs)
        }
    };
    for wildcard in [false, true] {
        // The per-address list, in the order `seq` encodes.
        let mut list: Vec<&PcbView> = owners.iter().filter(|o| in_list(o, wildcard)).collect();
        list.sort_by_key(|o| Reverse(o.seq));
        if let Some(share) = list.into_iter().find_map(|o| shares(new, sk, o)) {
            return !share;
        }
    }
    false
}

/// `udp_lib_get_port(sk, 0)`: whether a candidate port is taken for `new`
/// (the bitmap scan: every overlapping socket that would not share marks it).
pub(crate) fn port_busy(new: &PcbView, owners: &[PcbView]) -> bool {
    let sk = Sk::of(new);
    owners
        .iter()
        .any(|o| shares(new, &sk, o).is_some_and(|share| !share))
}
