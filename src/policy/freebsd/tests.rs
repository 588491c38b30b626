//! Rows of the `in_pcbbind_avail` decision table, run on views alone.

use super::*;
use crate::policy::rows::{connected, view, LB, NONE, RA, RP, V6};
use Family::{Inet, Inet6};

#[test]
fn decision_table_rows() {
    let tcp = Protocol::Tcp;
    let udp = Protocol::Udp;
    // (protocol, existing, new, expected)
    let rows: Vec<(Protocol, PcbView, PcbView, Result<(), Error>)> = vec![
        // 4a: no options, any overlap blocks.
        (
            tcp,
            view(Inet, "0.0.0.0:80", NONE, 0, 1),
            view(Inet, "127.0.0.1:80", NONE, 0, 2),
            Err(Error::AddrInUse),
        ),
        (
            tcp,
            view(Inet, "127.0.0.1:80", NONE, 0, 1),
            view(Inet, "127.0.0.2:80", NONE, 0, 2),
            Ok(()),
        ),
        (
            tcp,
            connected(view(Inet, "127.0.0.1:80", NONE, 0, 1), "127.0.0.9:5"),
            view(Inet, "127.0.0.1:80", NONE, 0, 2),
            Err(Error::AddrInUse),
        ),
        // SO_REUSEADDR only: connected PCBs and wildcard/specific pairs no longer block...
        (
            tcp,
            connected(view(Inet, "127.0.0.1:80", NONE, 0, 1), "127.0.0.9:5"),
            view(Inet, "127.0.0.1:80", RA, 0, 2),
            Ok(()),
        ),
        (
            tcp,
            view(Inet, "0.0.0.0:80", NONE, 0, 1),
            view(Inet, "127.0.0.1:80", RA, 0, 2),
            Ok(()),
        ),
        // ...but an unconnected PCB on the same address does, whatever its options.
        (
            tcp,
            view(Inet, "127.0.0.1:80", RA, 0, 1),
            view(Inet, "127.0.0.1:80", RA, 0, 2),
            Err(Error::AddrInUse),
        ),
        // SO_REUSEPORT and SO_REUSEPORT_LB each need the same option on the other side.
        (
            tcp,
            view(Inet, "127.0.0.1:80", RP, 0, 1),
            view(Inet, "127.0.0.1:80", RP, 0, 2),
            Ok(()),
        ),
        (
            tcp,
            view(Inet, "127.0.0.1:80", LB, 0, 1),
            view(Inet, "127.0.0.1:80", RP, 0, 2),
            Err(Error::AddrInUse),
        ),
        (
            tcp,
            view(Inet, "127.0.0.1:80", LB, 0, 1),
            view(Inet, "127.0.0.1:80", LB, 0, 2),
            Ok(()),
        ),
        // 3: another uid, unprivileged binder: refused whatever the options.
        (
            tcp,
            view(Inet, "127.0.0.1:80", RP, 1000, 1),
            view(Inet, "127.0.0.1:80", RP, 1001, 2),
            Err(Error::AddrInUse),
        ),
        (
            tcp,
            view(Inet, "127.0.0.1:80", RP, 1000, 1),
            view(Inet, "127.0.0.1:80", RP, 1000, 2),
            Ok(()),
        ),
        // ...except a connected TCP PCB, which has its own 4-tuple.
        (
            tcp,
            connected(view(Inet, "127.0.0.1:80", NONE, 1000, 1), "127.0.0.9:5"),
            view(Inet, "127.0.0.1:80", RA, 1001, 2),
            Ok(()),
        ),
        (
            udp,
            connected(view(Inet, "127.0.0.1:80", NONE, 1000, 1), "127.0.0.9:5"),
            view(Inet, "127.0.0.1:80", RA, 1001, 2),
            Err(Error::AddrInUse),
        ),
        // Dual stack: plain 0.0.0.0 does not block a dual-stack ::, the reverse does.
        (
            tcp,
            view(Inet, "0.0.0.0:80", NONE, 0, 1),
            view(Inet6, "[::]:80", NONE, 0, 2),
            Ok(()),
        ),
        (
            tcp,
            view(Inet6, "[::]:80", NONE, 0, 1),
            view(Inet, "0.0.0.0:80", NONE, 0, 2),
            Err(Error::AddrInUse),
        ),
        (
            tcp,
            view(Inet6, "[::]:80", V6, 0, 1),
            view(Inet, "0.0.0.0:80", NONE, 0, 2),
            Ok(()),
        ),
        (
            tcp,
            view(Inet6, "[::]:80", V6, 0, 1),
            view(Inet6, "[::]:80", V6, 0, 2),
            Err(Error::AddrInUse),
        ),
        (
            tcp,
            view(Inet6, "[::1]:80", NONE, 0, 1),
            view(Inet, "127.0.0.1:80", NONE, 0, 2),
            Ok(()),
        ),
        // Multicast: SO_REUSEADDR shares with any reuse option.
        (
            udp,
            view(Inet, "224.0.0.1:80", RP, 0, 1),
            view(Inet, "224.0.0.1:80", RA, 0, 2),
            Ok(()),
        ),
        (
            udp,
            view(Inet, "224.0.0.1:80", NONE, 0, 1),
            view(Inet, "224.0.0.1:80", RA, 0, 2),
            Err(Error::AddrInUse),
        ),
    ];
    for (index, (protocol, existing, new, expected)) in rows.into_iter().enumerate() {
        assert_eq!(
            bind_conflict(protocol, Fibs::ALL, &new, &[existing]),
            expected,
            "row {index}: {existing:?} then {new:?}"
        );
    }
}

#[test]
fn lookup_rank_follows_the_lock_free_wildcard_chain() {
    let local = Endpoint::new("127.0.0.1:80".parse().unwrap());
    let grouped = |mut v: PcbView, group_seq: u64| {
        v.flags = v.flags | Flags::IN_GROUP;
        v.group_seq = group_seq;
        v
    };
    // From the best down: the older of two groups on the packet's
    // address, the newer one, a wildcard group, a bound PCB, the newer
    // then the older wildcard PCB (an `Inet` `0.0.0.0` and a dual-stack
    // `::` alike), then the v4-mapped wildcards, oldest first.
    let order = [
        grouped(view(Inet, "127.0.0.1:80", LB, 0, 1), 5),
        grouped(view(Inet6, "[::ffff:127.0.0.1]:80", LB, 0, 2), 9),
        grouped(view(Inet, "0.0.0.0:80", LB, 0, 3), 4),
        view(Inet, "127.0.0.1:80", NONE, 0, 4),
        view(Inet6, "[::]:80", NONE, 0, 6),
        view(Inet, "0.0.0.0:80", NONE, 0, 5),
        view(Inet6, "[::ffff:0.0.0.0]:80", NONE, 0, 7),
        view(Inet6, "[::ffff:0.0.0.0]:80", NONE, 0, 8),
    ];
    let keys: Vec<(u32, u64)> = order
        .iter()
        .map(|v| wildcard_rank(v, &local).expect("a match"))
        .collect();
    assert!(
        keys.windows(2).all(|w| w[0] > w[1]),
        "keys must fall in this order: {keys:?}"
    );
    let other = view(Inet, "127.0.0.2:80", NONE, 0, 9);
    assert_eq!(wildcard_rank(&other, &local), None);
}

/// `in6_pcbbind_avail` with `bind_all_fibs` off (`scoped`) and on: the
/// reuse check sees only the binder's FIB (`in6_pcblookup_local(..., fib,
/// lookupflags, cred)`), the other-owner check and the IPv4 half of a
/// dual-stack `::` every FIB (`RT_ALL_FIBS`).
#[test]
fn fib_decision_rows() {
    use crate::policy::rows::in_fib;
    let tcp = Protocol::Tcp;
    let udp = Protocol::Udp;
    let scoped = Fibs { scoped: true };
    let all = Fibs::ALL;
    // (protocol, fibs, existing, new, expected)
    type Row = (Protocol, Fibs, PcbView, PcbView, Result<(), Error>);
    let rows: Vec<Row> = vec![
        // fibs_multibind_test.c, multibind_different_user: the same user
        // binds the same address and port in another FIB...
        (
            tcp,
            scoped,
            view(Inet, "0.0.0.0:8000", NONE, 0, 1),
            in_fib(view(Inet, "0.0.0.0:8000", NONE, 0, 2), 1),
            Ok(()),
        ),
        (
            udp,
            scoped,
            view(Inet6, "[::]:8000", V6, 0, 1),
            in_fib(view(Inet6, "[::]:8000", V6, 0, 2), 1),
            Ok(()),
        ),
        // ...another user does not (the owner check is over all FIBs).
        (
            tcp,
            scoped,
            view(Inet, "0.0.0.0:8000", NONE, 0, 1),
            in_fib(view(Inet, "0.0.0.0:8000", NONE, 1001, 2), 1),
            Err(Error::AddrInUse),
        ),
        (
            udp,
            scoped,
            view(Inet6, "[::]:8000", V6, 0, 1),
            in_fib(view(Inet6, "[::]:8000", V6, 1001, 2), 1),
            Err(Error::AddrInUse),
        ),
        // The same FIB still conflicts.
        (
            tcp,
            scoped,
            in_fib(view(Inet, "127.0.0.1:8000", NONE, 0, 1), 1),
            in_fib(view(Inet, "0.0.0.0:8000", NONE, 0, 2), 1),
            Err(Error::AddrInUse),
        ),
        // bind_all_fibs on: the FIB scopes nothing.
        (
            tcp,
            all,
            view(Inet, "0.0.0.0:8000", NONE, 0, 1),
            in_fib(view(Inet, "0.0.0.0:8000", NONE, 0, 2), 1),
            Err(Error::AddrInUse),
        ),
        (
            udp,
            all,
            in_fib(view(Inet6, "[::1]:8000", V6, 0, 1), 2),
            in_fib(view(Inet6, "[::1]:8000", V6, 0, 2), 1),
            Err(Error::AddrInUse),
        ),
        // A dual-stack `::`: its IPv4 half looks at every FIB, so another
        // dual-stack `::` of another FIB blocks it...
        (
            tcp,
            scoped,
            view(Inet6, "[::]:8000", NONE, 0, 1),
            in_fib(view(Inet6, "[::]:8000", NONE, 0, 2), 1),
            Err(Error::AddrInUse),
        ),
        // ...and a plain `0.0.0.0` does not, in any FIB.
        (
            tcp,
            scoped,
            view(Inet, "0.0.0.0:8000", NONE, 0, 1),
            in_fib(view(Inet6, "[::]:8000", NONE, 0, 2), 1),
            Ok(()),
        ),
    ];
    for (index, (protocol, fibs, existing, new, expected)) in rows.into_iter().enumerate() {
        assert_eq!(
            bind_conflict(protocol, fibs, &new, &[existing]),
            expected,
            "row {index}: {existing:?} then {new:?}"
        );
    }
}

/// `SO_SETFIB` after `bind()` (`no_setfib_after_bind`), ephemeral ports over
/// every FIB, and groups per FIB.
#[test]
fn fib_option_ports_and_groups() {
    use crate::cred::Device;
    use crate::policy::rows::{in_fib, in_state};
    let scoped = Fibs { scoped: true };
    let closed = in_state(view(Inet, "0.0.0.0:0", NONE, 0, 1), State::Closed);
    let bound = view(Inet, "0.0.0.0:8000", NONE, 0, 1);
    // (fibs, me, requested, expected)
    let rows = [
        (scoped, closed, Some(Device(1)), Ok(1)),
        (scoped, closed, Some(Device(256)), Err(Error::InvalidInput)),
        (scoped, bound, Some(Device(1)), Err(Error::AlreadyConnected)),
        (scoped, bound, None, Ok(0)),
        (scoped, bound, Some(Device(0)), Ok(0)),
        (scoped, in_fib(bound, 1), Some(Device(1)), Ok(1)),
        (Fibs::ALL, bound, Some(Device(1)), Ok(1)),
    ];
    for (index, (fibs, me, requested, expected)) in rows.into_iter().enumerate() {
        assert_eq!(fibs.set_fib(&me, requested), expected, "row {index}");
    }

    // `in_pcb_lport_dest` looks at every FIB: a port held in FIB 0 is
    // taken for a binder in FIB 1.
    let new = in_fib(view(Inet, "0.0.0.0:8000", NONE, 0, 2), 1);
    assert!(bind_port_busy(&new, &[bound]));

    // Groups: per FIB when scoped, one group otherwise.
    let member = |fib| in_fib(view(Inet, "0.0.0.0:8000", LB, 0, 1), fib);
    assert_ne!(group_key(&member(0), scoped), group_key(&member(1), scoped));
    assert_eq!(
        group_key(&member(0), Fibs::ALL),
        group_key(&member(1), Fibs::ALL)
    );
}
