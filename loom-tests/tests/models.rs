//! The loom models, each against a correct table. See the crate docs for what
//! each one asserts and how to run them. They turn no broken switch on, so
//! they also pass in a `--cfg pcbhash_broken` build.

#![cfg(pcbhash_loom)]

use pcbhash_loom_tests as models;

#[test]
fn lookup_vs_close() {
    models::check("lookup_vs_close", || models::lookup_vs_close(None));
}

#[test]
fn bind_vs_bind() {
    models::check("bind_vs_bind", || models::bind_vs_bind(None));
}

#[test]
fn connect_vs_connect() {
    models::check("connect_vs_connect", || models::connect_vs_connect(None));
}

#[test]
fn lookup_during_connect() {
    models::check("lookup_during_connect", || {
        models::lookup_during_connect(None)
    });
}

#[test]
fn bind_vs_time_wait() {
    models::check("bind_vs_time_wait", || models::bind_vs_time_wait(None));
}

#[test]
fn lb_group_vs_lookup() {
    models::check("lb_group_vs_lookup", || models::lb_group_vs_lookup(None));
}

#[test]
fn lookup_during_resize() {
    models::check("lookup_during_resize", || {
        models::lookup_during_resize(None)
    });
}

#[test]
fn lookup_during_connect_with_listener() {
    models::check("lookup_during_connect_with_listener", || {
        models::lookup_during_connect_with_listener(None)
    });
}

#[test]
fn lookup_during_disconnect() {
    models::check("lookup_during_disconnect", || {
        models::lookup_during_disconnect(None)
    });
}

#[test]
fn accept_over_time_wait_vs_lookup() {
    models::check("accept_over_time_wait_vs_lookup", || {
        models::accept_over_time_wait_vs_lookup(None)
    });
}

#[test]
fn lookup_during_incremental_resize() {
    models::check("lookup_during_incremental_resize", || {
        models::lookup_during_incremental_resize(None)
    });
}

#[test]
fn lookup_across_two_moves() {
    models::check("lookup_across_two_moves", || {
        models::lookup_across_two_moves(None)
    });
}

#[test]
fn lookup_while_move_parked() {
    for step in models::MOVE_STEPS {
        models::check(&format!("lookup_while_move_parked ({step})"), move || {
            models::lookup_while_move_parked(step, None)
        });
    }
}

#[test]
fn lookup_while_any_port_connect_parked() {
    for step in models::ANY_PORT_STEPS {
        models::check(
            &format!("lookup_while_any_port_connect_parked ({step})"),
            move || models::lookup_while_any_port_connect_parked(step),
        );
    }
}

#[test]
fn lookup_while_reconnect_parked() {
    for (step, old) in models::RECONNECT_STEPS {
        models::check(
            &format!("lookup_while_reconnect_parked ({step})"),
            move || models::lookup_while_reconnect_parked(step, old, None),
        );
    }
}

// `deliver` racing a join (both policies) and a close (FreeBSD's rules; the
// close under Linux's, 48,940 interleavings at three preemptions, takes too
// long for every run: call `deliver_vs_join_or_close(Policy::Linux,
// Race::Close)` by hand).
#[test]
fn deliver_vs_join_freebsd() {
    models::check("deliver_vs_join_freebsd", || {
        models::deliver_vs_join_or_close(pcbhash::Policy::FreeBsd, models::Race::Join)
    });
}

#[test]
fn deliver_vs_close_freebsd() {
    models::check("deliver_vs_close_freebsd", || {
        models::deliver_vs_join_or_close(pcbhash::Policy::FreeBsd, models::Race::Close)
    });
}

#[test]
fn deliver_vs_join_linux() {
    models::check("deliver_vs_join_linux", || {
        models::deliver_vs_join_or_close(pcbhash::Policy::Linux, models::Race::Join)
    });
}
