//! FreeBSD 14/15 behaviours read from the kernel source rather than from its
//! test suite: `sys/netinet/in_pcb.c`, `sys/netinet6/in6_pcb.c`,
//! `sys/netinet/tcp_usrreq.c` and `sys/kern/uipc_socket.c`. Each test is
//! named after the kernel function that decides the behaviour and quotes the
//! lines it encodes. The tests are grouped by what they cover: `bind`,
//! `connections` (connect and accept), `groups` (SO_REUSEPORT_LB) and
//! `chain` (the order of the wildcard hash chain).

mod common;

#[path = "freebsd_in_pcb/bind.rs"]
mod bind;
#[path = "freebsd_in_pcb/chain.rs"]
mod chain;
#[path = "freebsd_in_pcb/connections.rs"]
mod connections;
#[path = "freebsd_in_pcb/groups.rs"]
mod groups;

use std::net::SocketAddr;

use common::{addr, Sock};
use pcbhash::{Cred, Family, Pcb, PcbTable};

fn sock(table: &PcbTable<Sock>, family: Family, id: u32) -> Pcb<Sock> {
    let pcb = table.attach(family, Cred::ROOT, Sock(id));
    if family == Family::Inet6 {
        pcb.set_v6only(false).unwrap();
    }
    pcb
}

/// The owner of a SYN from `peer` to `local`.
fn owner(table: &PcbTable<Sock>, local: &str, peer: SocketAddr) -> Option<u32> {
    let guard = table.pin();
    table
        .lookup(addr(local), peer, &guard)
        .map(|pcb| pcb.socket().expect("a live socket").0)
}

/// Who gets the SYNs of 64 peers to `local`.
fn owners(table: &PcbTable<Sock>, local: &str) -> Vec<u32> {
    let mut seen: Vec<u32> = (1..=64u16)
        .filter_map(|port| {
            owner(
                table,
                local,
                SocketAddr::from(([127, 0, 0, 9], 2000 + port)),
            )
        })
        .collect();
    seen.sort_unstable();
    seen.dedup();
    seen
}
