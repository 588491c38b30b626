//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::net::SocketAddr;

use pcbhash::{Cred, Family, Pcb, PcbTable, Policy, Protocol};

/// A socket with a name, so a test can tell which one a lookup found.
#[derive(Debug, PartialEq, Eq)]
pub struct Sock(pub u32);

pub fn addr(text: &str) -> SocketAddr {
    text.parse()
        .unwrap_or_else(|_| panic!("bad address in test: {text}"))
}

pub fn table(policy: Policy, protocol: Protocol) -> PcbTable<Sock> {
    PcbTable::<Sock>::builder()
        .policy(policy)
        .protocol(protocol)
        .seed(0x5eed)
        .build()
}

pub fn freebsd(protocol: Protocol) -> PcbTable<Sock> {
    table(Policy::FreeBsd, protocol)
}

/// The family a socket address calls for.
pub fn family_of(address: SocketAddr) -> Family {
    if address.is_ipv4() {
        Family::Inet
    } else {
        Family::Inet6
    }
}

/// attach + bind, panicking on failure.
pub fn bound(table: &PcbTable<Sock>, cred: Cred, local: &str, id: u32) -> Pcb<Sock> {
    let local = addr(local);
    let pcb = table.attach(family_of(local), cred, Sock(id));
    pcb.bind(local)
        .unwrap_or_else(|e| panic!("bind {local}: {e}"));
    pcb
}

/// attach + bind + listen, panicking on failure.
pub fn listening(table: &PcbTable<Sock>, cred: Cred, local: &str, id: u32) -> Pcb<Sock> {
    let pcb = bound(table, cred, local, id);
    pcb.listen().expect("listen");
    pcb
}

/// Sets the reuse options of a `Reuse` value on `pcb`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reuse {
    None,
    Addr,
    Port,
    PortLb,
}

impl Reuse {
    pub const ALL: [Reuse; 4] = [Reuse::None, Reuse::Addr, Reuse::Port, Reuse::PortLb];

    pub fn apply(self, pcb: &Pcb<Sock>) {
        match self {
            Reuse::None => {}
            Reuse::Addr => pcb.set_reuse_addr(true).unwrap(),
            Reuse::Port => pcb.set_reuse_port(true).unwrap(),
            Reuse::PortLb => pcb.set_reuse_port_lb(true).unwrap(),
        }
    }
}

pub fn table_of(
    policy: Policy,
    protocol: Protocol,
    range: std::ops::RangeInclusive<u16>,
) -> PcbTable<Sock> {
    PcbTable::<Sock>::builder()
        .policy(policy)
        .protocol(protocol)
        .ephemeral_ports(range)
        .seed(0x5eed)
        .build()
}

pub fn unused() -> Sock {
    Sock(u32::MAX)
}
