//! Linux UDP port sharing: `udp_lib_get_port`, `udp_lib_lport_inuse` and
//! `udp_lib_lport_inuse2` (`net/ipv4/udp.c`).
//!
//! UDP has no LISTEN state, so two sockets that both set SO_REUSEADDR share
//! an overlapping address and port completely. Otherwise two overlapping
//! sockets may share only if both set SO_REUSEPORT and have the same owner.
//!
//! An explicit bind and the autobind's bitmap scan apply one rule: every
//! overlapping socket on the port that would not share makes it busy. (Older
//! kernels let an explicit bind stop at the first overlapping socket in list
//! order, so that an SO_REUSEPORT pair met early hid a plain socket further
//! on; the 6.18 kernels this policy follows refuse such a bind, with one
//! socket on the port or more than ten.)

use super::saddr::{inet_rcv_saddr_equal, Sk};
use crate::policy::PcbView;

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
/// conflicts with `owners`: the same rule as [`port_busy`].
pub(crate) fn bind_conflict(new: &PcbView, owners: &[PcbView]) -> bool {
    port_busy(new, owners)
}

/// `udp_lib_get_port(sk, 0)`: whether a candidate port is taken for `new`
/// (the bitmap scan: every overlapping socket that would not share marks it).
pub(crate) fn port_busy(new: &PcbView, owners: &[PcbView]) -> bool {
    let sk = Sk::of(new);
    owners
        .iter()
        .any(|o| shares(new, &sk, o).is_some_and(|share| !share))
}
