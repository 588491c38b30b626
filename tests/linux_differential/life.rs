//! The calls the rest of the generator seldom makes, and the packets that
//! show who receives (see `life_step`): SO_REUSEPORT cleared and set after
//! `bind()` and `listen()`, `listen()` again, UDP `connect()` and
//! `disconnect()` of reuseport members, UDP `connect()` to port 0, TCP
//! `connect(AF_UNSPEC)`, link-local IPv6 addresses, and datagrams or SYNs
//! from many source ports, whose receivers are compared.
//!
//! **Who receives** is compared as membership: the table picks a group's
//! member with its own keyed hash, so for each destination the table is
//! asked for the packets of many source ports, which gives the set of its
//! sockets that take that destination (one socket, or every member of a
//! group); each real packet's receiver must be in that set, and a packet
//! the kernel drops must find no socket in the table either. TCP
//! `connect()` to port 0 is left out: the refusal is the peer's, which the
//! table does not see.
//!
//! One difference is known and counted with the known gaps: an AF_INET6
//! socket that connected from `::` (so without forced V6ONLY) to an IPv6
//! peer's port 0 carries the placeholder IPv4 address 127.0.0.6 and takes
//! IPv4 datagrams sent to it from any source; the table files no IPv4
//! view of such a socket.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use pcbhash::State;
use socket2::SockAddr;

use super::linux_kernel;
use super::step::{DESTINATIONS, FIXED_PORTS};
use super::world::{PortRef, Rng, Scan, World};
use linux_kernel::receive::{pin_cpu, same_cpu, tcp_receiver, udp_receiver};
use linux_kernel::{errno, table_errno};

/// `LOOPBACK4_IPV6`: the IPv4 address the kernel files an AF_INET6 socket
/// on a specific IPv6 address under.
const LOOPBACK4_IPV6: [u8; 4] = [127, 0, 0, 6];

/// Source ports of the probing packets: outside every range and peer port.
const PROBE_PORTS: std::ops::Range<u16> = 50000..50256;

/// Real packets sent per comparison of receivers.
const PROBES: u16 = 3;

/// Link-local IPv6 addresses (unicast, and multicast of link and
/// interface scope).
const LINK_LOCAL: [&str; 3] = ["fe80::1", "ff02::1", "ff01::1"];

impl World {
    /// One of the operations of this module, or `None` to let the rest of
    /// the generator draw. `Some(Ok(false))`: the sequence must stop.
    pub(super) fn life_step(&mut self, rng: &mut Rng) -> Option<Result<bool, String>> {
        let live = self.live();
        if live.is_empty() {
            return None;
        }
        let udp = self.protocol == pcbhash::Protocol::Udp;
        let i = rng.pick(&live);
        let state = self.entry(i).table.state();
        Some(match rng.below(8) {
            // SO_REUSEPORT on or off on a socket that already holds a port.
            0 | 1 if matches!(state, State::Bound | State::Listen | State::Connected) => {
                let on = rng.chance(50);
                self.set_option(i, 1, on).map(|()| true)
            }
            2 if !udp && state == State::Listen => self.listen(i),
            // Disconnect: UDP group members, TCP listeners and connections.
            3 => self.disconnect_life(i),
            4 if udp => {
                let destination = self.family_destination(rng, i);
                self.connect_port_zero(i, destination)
            }
            5 => self.link_local(rng, i),
            _ => self.receivers(rng).map(|()| true),
        })
    }

    /// A destination of the socket's family, mostly.
    fn family_destination(&self, rng: &mut Rng, i: usize) -> &'static str {
        let v6 = self.entry(i).v6;
        let mut destination = rng.pick(&DESTINATIONS);
        while rng.chance(90) && v6 != destination.contains(':') {
            destination = rng.pick(&DESTINATIONS);
        }
        destination
    }

    /// `connect(AF_UNSPEC)`; for TCP, the peer of an aborted connection got
    /// the reset and is gone in both worlds, and a listener stops.
    fn disconnect_life(&mut self, i: usize) -> Result<bool, String> {
        let result = self.disconnect(i)?;
        if self.protocol == pcbhash::Protocol::Tcp {
            let state = self.entry(i).table.state();
            let entry = self.entries[i].as_mut().expect("live");
            entry.listening = state == State::Listen;
            if state != State::Connected {
                if let Some(peer) = entry.peer.take() {
                    if let Some(other) = self.entries[peer].as_mut() {
                        other.peer = None;
                    }
                    self.close(peer);
                }
            }
        }
        Ok(result)
    }

    /// UDP `connect()` to port 0 of `destination`.
    fn connect_port_zero(&mut self, i: usize, destination: &str) -> Result<bool, String> {
        self.connect_to(
            i,
            SocketAddr::new(destination.parse().expect("destination"), 0),
        )
    }

    /// `bind()` or `connect()` with a link-local IPv6 address.
    fn link_local(&mut self, rng: &mut Rng, i: usize) -> Result<bool, String> {
        let address = rng.pick(&LINK_LOCAL);
        if self.address_not_on_device(i, address.parse().expect("address")) {
            return Ok(true);
        }
        if rng.chance(50) {
            return self.bind(i, address, PortRef::Fixed(FIXED_PORTS[0]));
        }
        self.connect_to(
            i,
            SocketAddr::new(address.parse().expect("address"), FIXED_PORTS[0]),
        )
    }

    /// `connect()` to `to` in both worlds (no listener is expected), then
    /// the local addresses: a UDP socket binds before it looks at the peer,
    /// even for a call that fails.
    fn connect_to(&mut self, i: usize, to: SocketAddr) -> Result<bool, String> {
        if self.cannot_route(i) {
            return Ok(true);
        }
        let client = self.entry(i);
        let was_bound = client.table.local_addr().is_some();
        let k = if self.protocol == pcbhash::Protocol::Udp {
            errno(&client.kernel.connect(&SockAddr::from(to)))
        } else {
            errno(&linux_kernel::connect(&client.kernel, to))
        };
        let t = table_errno(&client.table.connect(to));
        self.compare(&format!("#{i} connect({to})"), k, t)?;
        if self.entry(i).table.local_addr().is_none() {
            return Ok(true);
        }
        let scan = (!was_bound).then_some(Scan::Udp);
        self.check_local(i, scan)
    }

    /// Sends packets to the address and port of a random socket and
    /// compares who receives them (see the module docs).
    fn receivers(&mut self, rng: &mut Rng) -> Result<(), String> {
        let udp = self.protocol == pcbhash::Protocol::Udp;
        let holders: Vec<usize> = self
            .live()
            .into_iter()
            .filter(|&i| {
                let state = self.entry(i).table.state();
                if udp {
                    matches!(state, State::Bound | State::Connected)
                } else {
                    state == State::Listen
                }
            })
            .collect();
        if holders.is_empty() {
            return Ok(());
        }
        let target = rng.pick(&holders);
        let kport = self.entry(target).kernel_port();
        let tport = self.to_table_port(kport);
        let local = self.entry(target).table.local_addr().expect("holds a port");
        let ip = match local.ip().to_canonical() {
            ip if !ip.is_unspecified() => ip,
            IpAddr::V4(_) => "127.0.0.1".parse().expect("ip"),
            IpAddr::V6(_) if rng.chance(50) => "::1".parse().expect("ip"),
            IpAddr::V6(_) => "127.0.0.1".parse().expect("ip"),
        };
        let source: IpAddr = match ip {
            IpAddr::V4(_) if rng.chance(25) => "127.0.0.2".parse().expect("ip"),
            IpAddr::V4(_) => "127.0.0.1".parse().expect("ip"),
            IpAddr::V6(_) => "::1".parse().expect("ip"),
        };
        let live = self.live();
        // The table's receivers for this destination.
        let mut takers = BTreeSet::new();
        {
            let guard = self.table.pin();
            for port in PROBE_PORTS {
                let from = SocketAddr::new(source, port);
                let found = self.lookup(SocketAddr::new(ip, tport), from, &guard);
                takers.insert(found.and_then(|found| {
                    live.iter()
                        .copied()
                        .find(|&e| found.is(&self.entry(e).table))
                }));
            }
        }
        let sockets: Vec<_> = live.iter().map(|&e| &self.entry(e).kernel).collect();
        // The CPU point of `compute_score`, the same for every socket (see
        // `linux_kernel::receive`).
        let cpu = pin_cpu();
        for socket in &sockets {
            same_cpu(socket, cpu);
        }
        let listening: Vec<usize> = (0..live.len())
            .filter(|&n| self.entry(live[n]).listening)
            .collect();
        let to = SocketAddr::new(ip, kport);
        let mut packets = Vec::new();
        for _ in 0..PROBES {
            let port = PROBE_PORTS.start + rng.below(PROBE_PORTS.len()) as u16;
            let from = SocketAddr::new(source, port);
            let got = if udp {
                udp_receiver(&sockets, from, to).map(|n| live[n])
            } else {
                let listeners: Vec<_> = listening.iter().map(|&n| sockets[n]).collect();
                tcp_receiver(&listeners, from, to).map(|n| live[listening[n]])
            };
            packets.push((from, got));
        }
        for (n, (from, got)) in packets.into_iter().enumerate() {
            self.ops += 1;
            self.packets += 1;
            self.note(format!(
                "packet {n} {from} -> {to}: kernel #{got:?}, table any of {takers:?}"
            ));
            if got.is_some_and(|e| self.entry(e).v6)
                && to.ip() == IpAddr::from(LOOPBACK4_IPV6)
                && takers.contains(&None)
            {
                self.known_gap += 1;
                self.note(
                    "known gap: an AF_INET6 socket took an IPv4 datagram to 127.0.0.6".into(),
                );
                continue;
            }
            if got.is_none() && !udp && takers.iter().flatten().any(|&e| self.off_lo(e)) {
                // The kernel's reuseport pick (`reuseport_select_sock`) looks
                // at no device, so a SYN on `lo` can go to a group member
                // bound to the second device since it joined; that member's
                // SYN-ACK leaves through its device and the handshake never
                // ends, so which member took the SYN cannot be seen.
                self.known_gap += 1;
                self.note(
                    "known gap: the SYN went to a group member whose answer leaves through the second device".into(),
                );
                continue;
            }
            if !takers.contains(&got) {
                return Err(format!(
                    "a packet {from} -> {to} went to {got:?} in the kernel; the table gives it to one of {takers:?}"
                ));
            }
        }
        Ok(())
    }
}
