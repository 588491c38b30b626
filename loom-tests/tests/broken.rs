//! The models have teeth: each test runs a model against a table with one
//! piece of synchronisation deliberately removed (`Builder::broken`, compiled
//! only with `--cfg pcbhash_broken`) and expects loom to find an interleaving
//! that breaks the model's assertion.
//!
//! A model that fails under loom cannot unwind cleanly (loom objects dropped
//! after the execution ended abort the process), so each `*_is_caught` test
//! runs its model in a child process (the `#[ignore]`d `model_*` test of this
//! binary) and checks that the child failed with the model's message.

#![cfg(all(pcbhash_loom, pcbhash_broken))]

use pcbhash_loom_tests as models;

/// Freeing what the exact index retires (here: the bucket array a resize
/// replaced) at once, instead of through the epoch, is a use-after-free for a
/// lookup that still stood on it: AddressSanitizer reports it in one of the
/// interleavings of `lookup_during_resize`. Meaningful only in an ASAN build,
/// so it is `#[ignore]`d; the ASAN script runs it by name.
#[test]
#[ignore = "needs -Zsanitizer=address; run by the ASAN script"]
fn free_at_once_is_caught_by_asan() {
    models::expect_caught(
        "model_free_at_once",
        "AddressSanitizer: heap-use-after-free",
    );
}

/// Marking a bucket MOVED before copying it hides connections from lookups.
#[test]
fn resize_moved_first_is_caught() {
    models::expect_caught(
        "model_resize_moved_first",
        "false negative: a connection was not found during a resize",
    );
}

/// The same bug, caught in a migration spread over two writes.
#[test]
fn resize_moved_first_is_caught_incrementally() {
    models::expect_caught(
        "model_resize_moved_first_incremental",
        "false negative: a connection was not found during a resize",
    );
}

/// TCP: without the second exact probe, a lookup whose walk starts after
/// the connecting PCB left the wildcard list hands its flow to the listener.
#[test]
fn one_exact_probe_is_caught_with_listener() {
    models::expect_caught(
        "model_one_exact_probe_with_listener",
        "false negative: the lookup fell back to the listener while the PCB moved",
    );
}

/// Without the second exact probe a lookup can miss a PCB between its two
/// places.
#[test]
fn one_exact_probe_is_caught() {
    models::expect_caught(
        "model_one_exact_probe",
        "false negative: the PCB was not found while it moved",
    );
}

/// Without the move count, a lookup can miss a PCB that moves twice while
/// it runs.
#[test]
fn ignore_moves_is_caught() {
    models::expect_caught(
        "model_ignore_moves",
        "false negative: the PCB was not found across two moves",
    );
}

/// A walk that passes over a PCB whose connect has published its tuple but
/// not reached the exact index misses it while that connect is parked.
#[test]
fn skip_connecting_is_caught_while_parked() {
    models::expect_caught(
        "model_skip_connecting_parked",
        "false negative: the lookup missed the PCB parked at",
    );
}

/// The same, for a Linux UDP reconnect parked after its old exact entry
/// went: the PCB waits in the wildcard list with its old tuple.
#[test]
fn skip_connecting_is_caught_while_reconnect_parked() {
    models::expect_caught(
        "model_skip_connecting_reconnect_parked",
        "false negative: the lookup missed the PCB parked at",
    );
}

/// Without the port lock the conflict check is not atomic with the insert.
#[test]
fn no_port_lock_is_caught() {
    models::expect_caught("model_no_port_lock", "both or neither bind won");
}

#[test]
#[ignore = "run in a child process by resize_moved_first_is_caught"]
fn model_resize_moved_first() {
    models::check("lookup_during_resize (broken: resize-moved-first)", || {
        models::lookup_during_resize(Some("resize-moved-first"))
    });
}

#[test]
#[ignore = "run in a child process by one_exact_probe_is_caught"]
fn model_one_exact_probe() {
    models::check("lookup_during_connect (broken: one-exact-probe)", || {
        models::lookup_during_connect(Some("one-exact-probe"))
    });
}

#[test]
#[ignore = "run in a child process by ignore_moves_is_caught"]
fn model_ignore_moves() {
    models::check("lookup_across_two_moves (broken: ignore-moves)", || {
        models::lookup_across_two_moves(Some("ignore-moves"))
    });
}

#[test]
#[ignore = "run in a child process by skip_connecting_is_caught_while_parked"]
fn model_skip_connecting_parked() {
    models::check("lookup_while_move_parked (broken: skip-connecting)", || {
        models::lookup_while_move_parked("connect: tuple published", Some("skip-connecting"))
    });
}

#[test]
#[ignore = "run in a child process by no_port_lock_is_caught"]
fn model_no_port_lock() {
    models::check("bind_vs_bind (broken: no-port-lock)", || {
        models::bind_vs_bind(Some("no-port-lock"))
    });
}

#[test]
#[ignore = "run in a child process by resize_moved_first_is_caught_incrementally"]
fn model_resize_moved_first_incremental() {
    models::check(
        "lookup_during_incremental_resize (broken: resize-moved-first)",
        || models::lookup_during_incremental_resize(Some("resize-moved-first")),
    );
}

#[test]
#[ignore = "run in a child process by one_exact_probe_is_caught_with_listener"]
fn model_one_exact_probe_with_listener() {
    models::check(
        "lookup_during_connect_with_listener (broken: one-exact-probe)",
        || models::lookup_during_connect_with_listener(Some("one-exact-probe")),
    );
}

#[test]
#[ignore = "run in a child process by free_at_once_is_caught_by_asan"]
fn model_free_at_once() {
    models::check("lookup_during_resize (broken: free-at-once)", || {
        models::lookup_during_resize(Some("free-at-once"))
    });
}

#[test]
#[ignore = "run in a child process by skip_connecting_is_caught_while_reconnect_parked"]
fn model_skip_connecting_reconnect_parked() {
    models::check(
        "lookup_while_reconnect_parked (broken: skip-connecting)",
        || {
            models::lookup_while_reconnect_parked(
                "reconnect: old exact unlinked",
                true,
                Some("skip-connecting"),
            )
        },
    );
}
