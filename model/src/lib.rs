//! # pcbhash-model
//!
//! A deliberately simple reference model of the PCB table, and the operation
//! interpreter that drives a real [`pcbhash::PcbTable`] and the model in
//! lock-step, comparing them after every step.
//!
//! The model is a `Vec` of PCB records searched with linear scans. It was
//! written from the kernels' rules (FreeBSD `in_pcb.c` / `in6_pcb.c`, Linux
//! `inet_connection_sock.c` / `inet_hashtables.c` / `udp.c`), not from the
//! table's code, so that the two are independent readings of the same rules.
//!
//! - [`Op`] and [`Scenario`]: the operations, with `arbitrary` derives, over a
//!   small address and port space where collisions are common.
//! - [`run`]: the lock-step interpreter; it returns the first [`Divergence`].
//! - [`concurrent`]: the same operations split over two threads, with the
//!   table's invariants checked at the end.
//! - [`seeded`]: a tiny deterministic PRNG that makes byte strings for the
//!   stable replay of the interpreter under `cargo test`.

#![forbid(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations)]

mod addrs;
pub mod concurrent;
mod freebsd;
mod interp;
mod linux;
mod model;
mod ops;
pub mod seeded;
mod state;

pub use addrs::{
    device, ephemeral_range, local_addr, port, port_range, remote_addr, ADDRS, DEVICES, PORTS,
    RANGE_ENDS,
};
pub use interp::{known_endings, run, run_bytes, run_lookup_bytes, tolerated_orders, Divergence};
pub use model::{Receivers, KNOWN_DELIVERY_FIBS, KNOWN_DEVICE_TWINS};
pub use ops::{
    LookupCase, Op, Opt, Packet, PolicySel, ProtoSel, Scenario, TwReuseSel, User,
    BEFORE_PORT_OPTIONS, LEGACY,
};
pub use state::{Expect, Model, ModelError};
