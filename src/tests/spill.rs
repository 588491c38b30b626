//! The exact index's spill list gives the same answers as the index.

use std::net::SocketAddr;

use crate::{Cred, Family, PcbTable, Policy, Protocol, State};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A table whose exact index refuses every insert: the spill must give
/// the same answers, through connect, TIME_WAIT, accept over the twin,
/// disconnect and close.
#[test]
fn spilled_pcbs_are_found_and_removed_like_indexed_ones() {
    for spill in [false, true] {
        let mut table: PcbTable<u32> = PcbTable::<u32>::builder()
            .policy(Policy::Linux)
            .protocol(Protocol::Tcp)
            .seed(7)
            .build();
        if spill {
            std::sync::Arc::get_mut(&mut table.shared)
                .unwrap()
                .exact
                .spill_all();
        }
        let listener = table.attach(Family::Inet, Cred::ROOT, 0);
        listener.bind(addr("127.0.0.1:80")).unwrap();
        listener.listen().unwrap();
        let (local, peer) = (addr("127.0.0.1:80"), addr("127.0.0.2:4000"));
        let conn = listener.accept(local, peer, 1).unwrap();
        let guard = table.pin();
        let found = table.lookup(local, peer, &guard).unwrap();
        assert!(found.is(&conn), "spill {spill}: the connection");
        assert_eq!(table.stats().exact.entries, 1, "spill {spill}");
        conn.time_wait().unwrap();
        assert!(table.lookup(local, peer, &guard).unwrap().is(&conn));
        let next = listener.accept(local, peer, 2).unwrap();
        assert_eq!(conn.state(), State::Dropped, "spill {spill}");
        assert!(table.lookup(local, peer, &guard).unwrap().is(&next));
        assert_eq!(table.stats().exact.entries, 1, "spill {spill}");
        next.disconnect().unwrap();
        assert!(table.lookup(local, peer, &guard).unwrap().is(&listener));
        assert_eq!(table.stats().exact.entries, 0, "spill {spill}");
    }
}
