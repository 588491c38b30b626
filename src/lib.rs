//! # pcbhash
//!
//! The protocol-control-block (PCB) table of a network stack: it maps IPv4 and
//! IPv6 endpoints to the stack's sockets, for TCP or UDP, with the bind /
//! listen / connect / TIME_WAIT / close rules of the FreeBSD or the Linux
//! kernel, and answers "which socket owns this packet?" without taking a lock.
//!
//! It is for user-space TCP/IP stacks, proxies, load balancers and packet
//! processors whose socket layer has outgrown a linear scan.
//!
//! ## Quick start
//!
//! ```
//! use pcbhash::{Cred, Family, PcbTable, State};
//!
//! struct Socket(&'static str);
//!
//! let table: PcbTable<Socket> = PcbTable::new(); // FreeBSD rules, TCP
//!
//! // socket(); bind(); listen()
//! let listener = table.attach(Family::Inet, Cred::ROOT, Socket("http"));
//! listener.bind("0.0.0.0:80".parse()?)?;
//! listener.listen()?;
//!
//! // A SYN arrives: demultiplex it, then create the connection on accept.
//! let (local, peer) = ("127.0.0.1:80".parse()?, "127.0.0.1:40000".parse()?);
//! let guard = table.pin();
//! let owner = table.lookup(local, peer, &guard).expect("the listener");
//! assert_eq!(owner.state(), State::Listen);
//! let conn = listener.accept(local, peer, Socket("conn"))?;
//!
//! // Later segments of the flow find the connection itself.
//! let hit = table.lookup(local, peer, &guard).unwrap();
//! assert!(hit.is(&conn));
//! assert_eq!(hit.socket().unwrap().0, "conn");
//!
//! // FIN exchange: TIME_WAIT keeps the tuple but detaches the socket.
//! conn.time_wait()?;
//! assert!(table.lookup(local, peer, &guard).unwrap().socket().is_none());
//! drop(guard);
//! conn.close(); // 2MSL later
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Why the design looks like this
//!
//! In 2011 a FreeBSD kernel panicked because `in_pcbbind_setup()` followed the
//! socket pointer of another PCB, found by a hash lookup, to read its
//! `SO_REUSEPORT` option, without holding that PCB's lock, after the socket was
//! gone. The fix cached the reuse bits in the PCB. This crate makes that rule a
//! type:
//!
//! - **Hash-safe fields** (the tuple, the [`Flags`] word with the cached
//!   SO_REUSEADDR / SO_REUSEPORT / SO_REUSEPORT_LB bits and V6ONLY, and the
//!   [`Cred`]) are readable by anyone holding an epoch guard, with no lock.
//!   Conflict checks and lookup decisions read only these.
//! - **The socket** lives inside the PCB's own allocation (one allocation per
//!   PCB, as Linux's `struct sock` is its PCB) and is reached only through
//!   [`PcbRef::socket`] / [`Pcb::socket`]: a `&S` valid while the guard
//!   lives, with no reference count, and `None` once the PCB is in TIME_WAIT
//!   or closed. The socket is dropped through the epoch, after every guard
//!   that could have read it. Use `S = Arc<T>` for shared ownership.
//! - The conflict rules receive a plain copy of the hash-safe fields: they have
//!   no way to reach a socket.
//!
//! ## Concurrency contract
//!
//! - **Lookups** ([`PcbTable::lookup`], [`PcbTable::lookup_local`],
//!   [`PcbTable::iter`]) take no lock, allocate nothing and do no atomic
//!   read-modify-write. One [`PcbTable::pin`] serves any number of them.
//! - **Writers** ([`Pcb::bind`], [`Pcb::connect`], [`Pcb::accept`], ...) take
//!   the PCB's own lock and the lock of the port concerned, never a global one.
//!   A bind's conflict check and its insert happen under the same port lock,
//!   so two conflicting binds never both succeed.
//! - **Linearizability.** bind, connect, accept, disconnect, listen, time_wait
//!   and close are linearizable with each other and with lookups. A lookup for
//!   a tuple that has a matching PCB throughout finds it, also while that PCB
//!   moves between the wildcard and the exact index (connect, disconnect) and
//!   while the exact index resizes.
//! - **Readers never wait.** A lookup finishes in a bounded number of steps
//!   whatever writers do: it never spins or retries on a writer, so a writer
//!   preempted in the middle of a move or a resize holds no reader up.
//! - **After close.** Once [`Pcb::close`] (or drop) returns, no lookup started
//!   afterwards returns that PCB, and `socket()` on a [`PcbRef`] still held
//!   gives `None`. Memory is reclaimed through crossbeam-epoch once no guard
//!   can see it; [`PcbTable::flush`] helps idle threads let go of theirs.
//! - **Resizing** of the exact index is incremental: writers migrate a few
//!   buckets each, readers never wait, and a lookup visits at most the old and
//!   the new bucket. The next bucket array is allocated zeroed, outside every
//!   lock, and migration allocates nothing.
//!
//! ## Costs
//!
//! | operation | cost |
//! |---|---|
//! | `lookup` | lock-free, never waits on a writer; one hash and one exact probe (an exact hit: the home bucket's line and the tuple of the PCB it points at, which is the key; about 2% of hits also the next bucket; most misses: the home bucket alone), then, on a miss, one walk of the port's unconnected PCBs and a second exact probe |
//! | `lookup_local` | lock-free; one walk of the port's PCBs |
//! | `bind` (explicit port) | port lock; scans the port's PCBs; the PCB is linked through its own list node, without allocating |
//! | `bind` (port 0) | one port lock per candidate port |
//! | `connect` (unbound) | one port lock per candidate port; toward a peer that already holds many of the source's ports, those ports are passed over without a lock, 64 per word read of a busy-port bitmap (8 KiB per such peer, at most 64 per table) |
//! | `connect` (bound), `accept`, `close`, `time_wait` | port lock and one exact bucket lock; O(1) list updates. A PCB's first place in a port list is a node inside the PCB, so `accept` and an unbound `connect` allocate the PCB and nothing else; a PCB that moves between a port's lists (a bound `connect`, a disconnect) allocates a list node |
//! | `len` | sums a few cache-padded counter stripes |
//! | `stats`, `iter` | O(n), lock-free |
//!
//! ## Policies
//!
//! [`Policy::FreeBsd`] follows FreeBSD 14/15 (`in_pcbbind_avail`,
//! `in_pcb_lport_dest`, `in_pcblookup_hash`, SO_REUSEPORT_LB groups);
//! [`Policy::Linux`] follows Linux 6.18 (`inet_csk_get_port`,
//! `inet_bind_conflict`, `__inet_hash_connect`, reuseport groups). The table
//! knows nothing of interfaces and routes: it accepts any local address, and
//! asks [`Builder::source_address`] which one `connect()` should use.
//!
//! Each policy is a type implementing [`policy::Rules`], resolved once when
//! the table is built: the table asks it every decision that differs between
//! kernels and stores the answers, and the policy sees PCBs only as
//! plain-data [`policy::PcbView`]s. [`Builder::custom_policy`] takes a policy
//! of your own (see the [`policy`] module for what that seam promises).

#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn, missing_docs, missing_debug_implementations)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod addr;
mod builder;
mod busy;
mod core;
mod counter;
mod cred;
mod error;
mod flags;
mod hooks;
mod lbgroup;
mod pcb;
pub mod policy;
mod ports;
#[allow(unsafe_code)]
mod raw;
mod sync;
mod table;
#[cfg(test)]
mod test_rng;
#[cfg(all(test, not(pcbhash_loom)))]
mod tests;

pub use addr::Family;
pub use builder::Builder;
pub use cred::{Cred, Device};
pub use crossbeam_epoch::Guard;
pub use error::Error;
pub use flags::{Flags, State};
pub use hooks::{GroupPacket, PortCandidate};
pub use pcb::{Pcb, PcbRef};
pub use policy::{Policy, Protocol, TwReuse};
pub use table::{IndexStats, PcbTable, Stats};

/// The socket type the static checks below use: any `Send + Sync` type works.
#[cfg(not(pcbhash_loom))]
mod static_checks {
    use super::*;
    use static_assertions::{assert_impl_all, assert_not_impl_any};

    struct Socket;

    assert_impl_all!(PcbTable<Socket>: Send, Sync);
    assert_impl_all!(Pcb<Socket>: Send, Sync);
    assert_impl_all!(PcbRef<'static, Socket>: Copy);
    // A view is bound to its thread's epoch guard.
    assert_not_impl_any!(PcbRef<'static, Socket>: Send, Sync);
    assert_impl_all!(Error: Copy, Send, Sync, std::error::Error);
    assert_not_impl_any!(Pcb<Socket>: Clone);
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
