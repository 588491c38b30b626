//! Views for the decision-table tests: a PCB as a row writes it.

use std::net::SocketAddr;

use super::PcbView;
use crate::addr::{Endpoint, Family};
use crate::cred::Cred;
use crate::flags::{Flags, State};

/// No option.
pub(crate) const NONE: Flags = Flags::EMPTY;
/// SO_REUSEADDR.
pub(crate) const RA: Flags = Flags::REUSEADDR;
/// SO_REUSEPORT.
pub(crate) const RP: Flags = Flags::REUSEPORT;
/// SO_REUSEPORT_LB.
pub(crate) const LB: Flags = Flags::REUSEPORT_LB;
/// IPV6_V6ONLY.
pub(crate) const V6: Flags = Flags::V6ONLY;

/// A PCB of `family` bound to `local` with the options `flags`, owned by
/// `uid` (privileged for uid 0), at place `seq` among its port's PCBs.
pub(crate) fn view(family: Family, local: &str, flags: Flags, uid: u32, seq: u64) -> PcbView {
    let addr: SocketAddr = local.parse().unwrap();
    PcbView {
        family,
        cred: Cred {
            uid,
            privileged: uid == 0,
        },
        flags: flags.with_state(State::Bound),
        local: Endpoint::new(addr),
        remote: Endpoint::unspecified(family),
        seq,
        group_seq: 0,
        device: 0,
        fib: 0,
    }
}

/// `v` in the FIB `fib` (FreeBSD SO_SETFIB).
pub(crate) fn in_fib(mut v: PcbView, fib: u32) -> PcbView {
    v.fib = fib;
    v
}

/// `v` bound to the device with index `device` (SO_BINDTODEVICE).
pub(crate) fn on_device(mut v: PcbView, device: u32) -> PcbView {
    v.device = device;
    v
}

/// `v` in `state`.
pub(crate) fn in_state(mut v: PcbView, state: State) -> PcbView {
    v.flags = v.flags.with_state(state);
    v
}

/// `v` connected to `peer`.
pub(crate) fn connected(mut v: PcbView, peer: &str) -> PcbView {
    v.remote = Endpoint::new(peer.parse().unwrap());
    in_state(v, State::Connected)
}
