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
            bind_conflict(protocol, &new, &[existing]),
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
