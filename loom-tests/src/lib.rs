//! Loom models of `pcbhash`'s concurrency contract.
//!
//! The models compile only under `--cfg pcbhash_loom --cfg crossbeam_loom`:
//!
//! ```sh
//! RUSTFLAGS="--cfg pcbhash_loom --cfg crossbeam_loom" LOOM_MAX_PREEMPTIONS=2 \
//!     cargo test --release -p pcbhash-loom-tests -- --nocapture
//! ```
//!
//! `crossbeam_loom` matters: without it crossbeam-epoch keeps its `std` atomics,
//! loom cannot see the epoch machinery, and every model explores a single
//! interleaving of it. This crate turns on `pcbhash`'s `loom` feature (which
//! turns on crossbeam-epoch's) whenever `pcbhash_loom` is set.
//!
//! Each model is a public function of this crate, run by `tests/models.rs`
//! (the modules group them by race: `writers`, `leaving`, `moves`, `parked`,
//! `resize`, `delivery`; `harness` runs them and `fixtures` builds them); it asserts one
//! property of the contract in every interleaving loom explores and prints how
//! many interleavings that was. A model that cannot fail proves nothing, so
//! `tests/broken.rs` runs some of the same models against tables built with a
//! piece of synchronisation deliberately removed (`--cfg pcbhash_broken`, see
//! `Builder::broken`) and expects loom to find the failing interleaving:
//!
//! ```sh
//! RUSTFLAGS="--cfg pcbhash_loom --cfg crossbeam_loom --cfg pcbhash_broken" \
//!     LOOM_MAX_PREEMPTIONS=2 cargo test --release -p pcbhash-loom-tests --test broken
//! ```
//!
//! Loom cannot see a use-after-free by itself: `.ci/asan.sh` runs the same
//! models under AddressSanitizer, and proves that this catches one with a table
//! that frees what its exact index retires at once (`free-at-once`, the
//! `#[ignore]`d `free_at_once_is_caught_by_asan` in `tests/broken.rs`).
//!
//! | model | property |
//! |---|---|
//! | `lookup_vs_close` | a lookup started after close returned misses; `socket()` is `None` once close returned; nothing is freed under a guard |
//! | `bind_vs_bind` | two binds of one address without reuse options: exactly one wins, the other gets `EADDRINUSE` |
//! | `connect_vs_connect` | two connects to one 4-tuple: exactly one wins |
//! | `lookup_during_connect` | a lookup always finds the PCB while it moves from the wildcard to the exact index |
//! | `bind_vs_time_wait` | the seed's race: a bind checks against a PCB entering TIME_WAIT and closing; the errno is right in every order, and no socket is touched |
//! | `lb_group_vs_lookup` | a load-balance group gains and loses a member while a lookup runs: the lookup always finds a member, never one closed before it started |
//! | `lookup_during_connect_with_listener` | TCP: the connecting PCB is always found, never the listener behind it (no false negative that falls back to the listener) |
//! | `lookup_during_disconnect` | UDP disconnect moves the PCB back to the wildcard index: always found |
//! | `accept_over_time_wait_vs_lookup` | an accept replaces a TIME_WAIT PCB on its 4-tuple: the lookup finds one of them, never the listener |
//! | `lookup_while_move_parked` | a writer parks in the middle of a connect or a disconnect until the lookup returned: the lookup returns, with the moving PCB (one model per step of the move) |
//! | `lookup_while_reconnect_parked` | Linux UDP: a connected PCB connecting to another peer parks at each step of its way out of the exact index and back: the lookup of the peer it shows returns it |
//! | `lookup_during_incremental_resize` | the exact index grows from two buckets to four over two writes: both old connections are always found |
//! | `deliver_vs_join_or_close` | UDP `deliver` while a PCB joins the port, or leaves it (FreeBSD and Linux rules): a PCB bound throughout is yielded exactly once, none twice, none freed, none closed before the walk began; one bound for the whole walk is yielded |
//! | `lookup_during_resize` | the exact index grows from one bucket to two while a lookup runs: the lookup finds the connection |

#![cfg(pcbhash_loom)]
#![warn(missing_docs)]

// Without crossbeam's cfg the models still build and pass, exploring one
// interleaving or a handful (measured: 1 instead of 806 for
// `lookup_during_connect`). Refuse that silent failure.
#[cfg(not(crossbeam_loom))]
compile_error!(
    "the loom models need --cfg crossbeam_loom as well as --cfg pcbhash_loom \
     (RUSTFLAGS=\"--cfg pcbhash_loom --cfg crossbeam_loom\")"
);

mod delivery;
mod fixtures;
mod harness;
mod leaving;
mod moves;
mod parked;
mod resize;
mod writers;

pub use delivery::{deliver_vs_join_or_close, Race};
pub use fixtures::{addr, builder, cred, Sock};
pub use harness::{check, expect_caught, Explored};
pub use leaving::{accept_over_time_wait_vs_lookup, lb_group_vs_lookup, lookup_vs_close};
pub use moves::{
    lookup_across_two_moves, lookup_during_connect, lookup_during_connect_with_listener,
    lookup_during_disconnect,
};
pub use parked::{
    lookup_while_any_port_connect_parked, lookup_while_move_parked, lookup_while_reconnect_parked,
    ANY_PORT_STEPS, MOVE_STEPS, RECONNECT_STEPS,
};
pub use resize::{lookup_during_incremental_resize, lookup_during_resize};
pub use writers::{bind_vs_bind, bind_vs_time_wait, connect_vs_connect};
