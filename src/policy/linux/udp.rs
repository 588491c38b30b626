//! Linux UDP port sharing: `udp_lib_get_port`, `udp_lib_lport_inuse` and
//! `udp_lib_lport_inuse2` (`net/ipv4/udp.c`).
//!
//! UDP has no LISTEN state, so two sockets that both set SO_REUSEADDR share
//! an overlapping address and port completely. Otherwise two overlapping
//! sockets may share only if both set SO_REUSEPORT and have the same owner.
//!
//! **An explicit bind** walks the port's list in the kernel's order (newest
//! first, an AF_INET6 SO_REUSEPORT socket at the tail) and the first socket
//! that overlaps decides:
//! - one that would not share refuses the bind;
//! - one whose reuseport group the new socket would join (same family,
//!   V6ONLY, owner and exact address), neither with SO_REUSEADDR, lets it
//!   through without looking further;
//! - any other SO_REUSEPORT sharer is passed over.
//!
//! A plain wildcard socket further down the list therefore still refuses the
//! bind when the sharer met first is no group mate: it differs in
//! SO_REUSEADDR, address or family. This is how the 6.18 kernels answer,
//! worked out on live sockets; `udp_lib_lport_inuse` as published stops at
//! any sharer.
//!
//! **The autobind's bitmap scan** has no early exit: every overlapping socket
//! that would not share marks the port busy.

use super::saddr::{inet_rcv_saddr_equal, Sk};
use crate::policy::PcbView;

/// How `new` (whose address view is `sk`) stands with `owner`: `None` when
/// they cannot conflict (SO_REUSEADDR on both, or addresses that do not
/// overlap); otherwise whether they share through SO_REUSEPORT on both with
/// the same owner uid.
fn shares(new: &PcbView, sk: &Sk, owner: &PcbView) -> Option<bool> {
    if !super::devices_overlap(new, owner) {
        return None;
    }
    if new.flags.reuse_addr() && owner.flags.reuse_addr() {
        return None;
    }
    if !inet_rcv_saddr_equal(sk, &Sk::of(owner), true) {
        return None;
    }
    Some(new.flags.reuse_port() && owner.flags.reuse_port() && new.cred.uid == owner.cred.uid)
}

/// `udp_lib_get_port(sk, snum != 0)`: whether the explicit bind of `new`
/// conflicts with `owners` (see the module docs for the walk).
pub(crate) fn bind_conflict(new: &PcbView, owners: &[PcbView]) -> bool {
    let sk = Sk::of(new);
    let group = super::group_key(new);
    let mut list: Vec<&PcbView> = owners.iter().collect();
    // Larger `seq` is earlier in the kernel's list.
    list.sort_unstable_by_key(|o| std::cmp::Reverse(o.seq));
    for owner in list {
        match shares(new, &sk, owner) {
            None => {}
            Some(false) => return true,
            Some(true) => {
                let mate = group.is_some() && super::group_key(owner) == group;
                if mate && !new.flags.reuse_addr() && !owner.flags.reuse_addr() {
                    return false;
                }
            }
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
