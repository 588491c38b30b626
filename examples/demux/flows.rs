//! The synthetic network: the host's addresses and services, the clients and
//! servers it talks to, and the flow slots the threads share.
//!
//! Every address comes from a range reserved for documentation or benchmarks
//! (RFC 5737, RFC 3849, RFC 2544); no packet leaves the process.
//!
//! - **The host** is `192.0.2.1` and `2001:db8::1`.
//! - **Clients** connect to its services. Each flow slot is one client host:
//!   `198.18.0.0/15` (IPv4, three slots in four) or `2001:db8:c::/64` (IPv6);
//!   its successive connections use successive ports from 32768 up, as a
//!   client's kernel hands them out. A slot's 4-tuples are therefore distinct
//!   from every other slot's and from its own earlier ones.
//! - **Servers** that the host connects to itself (outbound flows) are
//!   `203.0.113.1-16:443` and `[2001:db8:5::1-16]:443`; the table picks the
//!   local (ephemeral) port.
//!
//! A slot's state is one atomic word ([`Word`]): generation, phase and the
//! local port of an outbound flow. Everything else about the flow (direction,
//! service, addresses) is a pure function of `(seed, slot, generation)`
//! ([`flow_spec`]), so RX threads can build any flow's packets from the word
//! alone.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::rng::mix;

/// The host's IPv4 address.
pub const HOST_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The host's IPv6 address.
pub const HOST_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

/// Ports where nothing ever listens: stray packets to them must miss. All are
/// below every ephemeral range, so no outbound flow can take one.
pub const CLOSED_PORTS: [u16; 8] = [23, 25, 110, 3306, 5432, 6379, 8081, 9000];

/// The host's TCP services.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    /// SSH on port 22, bound to the host's specific addresses.
    Ssh,
    /// HTTP on port 80: one dual-stack `[::]` listener.
    Http,
    /// HTTPS on port 443: a group of IPv4 listeners and a group of IPv6 ones.
    Https,
    /// An admin console on port 8443, served only on the second device
    /// (`Policy::Linux`); not in [`Service::ALL`], which lists the services
    /// of every device.
    Admin,
}

impl Service {
    /// Every service.
    pub const ALL: [Service; 3] = [Service::Ssh, Service::Http, Service::Https];

    /// The service's port.
    pub fn port(self) -> u16 {
        match self {
            Service::Ssh => 22,
            Service::Http => 80,
            Service::Https => 443,
            Service::Admin => 8443,
        }
    }

    /// Picks a service for a new inbound flow: SSH 10%, HTTP 35%, HTTPS 55%.
    fn pick(h: u64) -> Service {
        match h % 100 {
            0..=9 => Service::Ssh,
            10..=44 => Service::Http,
            _ => Service::Https,
        }
    }
}

/// The phase of a flow slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// No flow; the slot's last flow (if any) is closed.
    Empty = 0,
    /// An inbound SYN is in flight: packets are SYNs for a listener.
    SynSent = 1,
    /// The control thread is accepting it (transient).
    Accepting = 2,
    /// Connected: every packet must find the flow's own PCB.
    Established = 3,
    /// The control thread is closing it or moving it to TIME_WAIT (transient).
    Closing = 4,
    /// In TIME_WAIT: packets find a PCB with no socket.
    TimeWait = 5,
}

impl Phase {
    fn from_bits(bits: u8) -> Phase {
        match bits {
            1 => Phase::SynSent,
            2 => Phase::Accepting,
            3 => Phase::Established,
            4 => Phase::Closing,
            5 => Phase::TimeWait,
            _ => Phase::Empty,
        }
    }
}

/// A slot's state: `generation << 32 | local port << 16 | phase`.
///
/// The generation counts the flows the slot has opened (0: none yet). The
/// port is the table-chosen local port of an outbound flow, 0 for inbound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Word(pub u64);

impl Word {
    /// The slot before its first flow.
    pub const INITIAL: Word = Word(0);

    /// A word from its parts.
    pub fn new(generation: u32, port: u16, phase: Phase) -> Word {
        Word(u64::from(generation) << 32 | u64::from(port) << 16 | phase as u64)
    }

    /// The flow's generation.
    pub fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The local port of an outbound flow (0 for inbound).
    pub fn port(self) -> u16 {
        (self.0 >> 16) as u16
    }

    /// The phase.
    pub fn phase(self) -> Phase {
        Phase::from_bits(self.0 as u8)
    }

    /// The same flow in another phase.
    pub fn with_phase(self, phase: Phase) -> Word {
        Word::new(self.generation(), self.port(), phase)
    }
}

/// Who opened a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// A client connected to one of the host's services (passive open).
    Inbound(Service),
    /// The host connected to a remote server (active open).
    Outbound,
}

/// Everything about a flow but its phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowSpec {
    /// Inbound or outbound.
    pub direction: Direction,
    /// The host's end. Port 0 for an outbound flow until the table picks one.
    pub local: SocketAddr,
    /// The other end.
    pub remote: SocketAddr,
}

/// The flow that `slot` opens as its `generation`-th, with the word's port
/// filled in for an outbound flow.
pub fn flow_spec(seed: u64, slot: u32, word: Word) -> FlowSpec {
    let generation = word.generation();
    let h = mix(seed ^ mix(u64::from(slot) << 32 | u64::from(generation)));
    let v6 = slot % 4 == 3 || slot >= 1 << 17;
    let host: IpAddr = if v6 { HOST_V6.into() } else { HOST_V4.into() };
    if h % 100 < OUTBOUND_PERCENT {
        let server = 1 + (h >> 8) % 16;
        let remote: IpAddr = if v6 {
            Ipv6Addr::new(0x2001, 0xdb8, 5, 0, 0, 0, 0, server as u16).into()
        } else {
            Ipv4Addr::new(203, 0, 113, server as u8).into()
        };
        return FlowSpec {
            direction: Direction::Outbound,
            local: SocketAddr::new(host, word.port()),
            remote: SocketAddr::new(remote, 443),
        };
    }
    let service = Service::pick(h >> 8);
    FlowSpec {
        direction: Direction::Inbound(service),
        local: SocketAddr::new(host, service.port()),
        remote: SocketAddr::new(client_addr(slot, v6), client_port(generation)),
    }
}

/// The share of flows the host opens itself.
const OUTBOUND_PERCENT: u64 = 20;

/// The client host of `slot`: distinct per slot.
fn client_addr(slot: u32, v6: bool) -> IpAddr {
    if v6 {
        Ipv6Addr::new(
            0x2001,
            0xdb8,
            0xc,
            0,
            0,
            0,
            (slot >> 16) as u16,
            slot as u16,
        )
        .into()
    } else {
        // slot < 2^17: 198.18.0.0/15.
        Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + slot).into()
    }
}

/// The client's port for its `generation`-th connection: Linux's default
/// ephemeral range, in order.
fn client_port(generation: u32) -> u16 {
    32768 + (generation % 28232) as u16
}

/// The source address the host uses toward `remote`: its address of the same
/// family. This is the stack's routing decision, given to the table with
/// `Builder::source_address`.
pub fn source_address(remote: IpAddr) -> Option<IpAddr> {
    Some(match remote.to_canonical() {
        IpAddr::V4(_) => HOST_V4.into(),
        IpAddr::V6(_) => HOST_V6.into(),
    })
}

/// A stray packet's source: somewhere in `100.64.0.0/10`, never a client of a
/// flow slot.
pub fn stray_source(h: u64) -> SocketAddr {
    let addr = Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 0)) | (h as u32 & 0x003F_FFFF));
    SocketAddr::new(addr.into(), 1024 + ((h >> 32) % 64512) as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn words_round_trip() {
        let word = Word::new(0xDEAD_BEEF, 40000, Phase::TimeWait);
        assert_eq!(word.generation(), 0xDEAD_BEEF);
        assert_eq!(word.port(), 40000);
        assert_eq!(word.phase(), Phase::TimeWait);
        assert_eq!(word.with_phase(Phase::Empty).port(), 40000);
    }

    #[test]
    fn inbound_tuples_are_distinct_across_slots_and_generations() {
        let mut seen = HashSet::new();
        for slot in (0..200_000).step_by(997) {
            for generation in 1..40 {
                let spec = flow_spec(9, slot, Word::new(generation, 0, Phase::SynSent));
                if let Direction::Inbound(_) = spec.direction {
                    assert!(seen.insert((spec.local, spec.remote)), "{spec:?}");
                }
            }
        }
        assert!(seen.len() > 1000);
    }
}
