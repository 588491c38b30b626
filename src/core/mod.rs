//! The table's machinery, in one room: the PCB record (`pcb.rs`), the state
//! a table and its handles share with the lookup's walks (`shared.rs`), the
//! exact index over PCBs (`exact.rs`), and the lifecycle split by call:
//! `bind.rs` (options, bind, listen), `connect.rs`, `accept.rs`,
//! `teardown.rs` (disconnect, abort, TIME_WAIT, close), with the moves
//! between indexes they share in `moves.rs`, and the per-port bookkeeping in
//! `buckets.rs` (Linux's bind buckets), `membership.rs` (load-balance
//! groups) and `shadow.rs` (several PCBs over one 4-tuple).
//!
//! The core asks the policy (`crate::policy`) and applies its answers; the
//! public handles (`table.rs`, `pcb.rs`) are thin over it.
//!
//! Lock order: the PCB's owner lock, then one port lock, then (leaf locks)
//! the PCB's port-entry cell and exact-index buckets. Every check that can fail
//! runs before the first change, so a failing call changes nothing, except
//! where the Linux kernel itself leaves traces of a failed call, which
//! the Linux policy reproduces: a UDP `connect()` keeps the port it bound
//! before checking the peer (`inet_dgram_connect`), a TCP `connect()` refused
//! by the 4-tuple check gives back a port that `bind()` chose or keeps its
//! source address (`tcp_v4_connect`'s failure path), and a `bind()` that
//! finds its port taken forgets an address kept from an earlier bind
//! (`__inet_bind`). The FreeBSD policy has one such trace: a UDP `connect()`
//! on a connected PCB disconnects it first (`soconnectat`), and the
//! disconnect stands when the new peer is refused.
//!
//! Every change to which index holds a PCB happens under its port's lock; so
//! does every state change that another PCB's conflict check reads.

mod accept;
mod arrival;
mod bind;
mod buckets;
mod connect;
mod deliver;
mod exact;
mod lookup;
mod membership;
mod memos;
mod moves;
mod pcb;
mod select;
mod shadow;
mod shared;
mod teardown;

pub(crate) use arrival::Unknown;
pub(crate) use deliver::Deliveries;
pub(crate) use exact::ExactPcbs;
pub(crate) use pcb::PcbInner;
pub(crate) use shared::{Shared, SourceAddress};
