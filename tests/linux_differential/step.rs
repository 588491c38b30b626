//! The random draw of a sequence: the addresses, ports and owners it draws
//! from, and one step (which call, on which socket, with which arguments).

use std::net::{IpAddr, SocketAddr};

use pcbhash::{Protocol, State};

use super::client::CLIENT_PERCENT;
use super::devices::DEVICE_PERCENT;
use super::world::{PortRef, Rng, World};

/// Ports outside every ephemeral range, for explicit binds.
pub(crate) const FIXED_PORTS: [u16; 2] = [20000, 20001];

/// The addresses of the issue (both families, wildcards, v4-mapped), and
/// `127.0.0.6`, the IPv4 address Linux files an AF_INET6 socket on a specific
/// IPv6 address under (`LOOPBACK4_IPV6`).
pub(crate) const ADDRESSES: [&str; 8] = [
    "0.0.0.0",
    "127.0.0.1",
    "127.0.0.2",
    "::",
    "::1",
    "::ffff:0.0.0.0",
    "::ffff:127.0.0.1",
    "127.0.0.6",
];

/// Where clients connect to (the listener's port is added): every address
/// above, the unspecified ones included, and `::ffff:127.0.0.2`.
pub(crate) const DESTINATIONS: [&str; 9] = [
    "127.0.0.1",
    "127.0.0.2",
    "::1",
    "::ffff:127.0.0.1",
    "::ffff:127.0.0.2",
    "0.0.0.0",
    "::",
    "::ffff:0.0.0.0",
    "127.0.0.6",
];

/// How often a step draws from the operations of `life.rs`.
pub(crate) const LIFE_PERCENT: u64 = 25;

/// Socket owners besides a uid of the socket's own.
pub(crate) const UIDS: [u32; 2] = [0, 1000];

/// Open sockets a sequence keeps at most (accepted children come on top).
pub(crate) const MAX_OPEN: usize = 6;

impl World {
    /// A socket owner: root, uid 1000, or a uid of the socket's own.
    pub(crate) fn draw_uid(&self, rng: &mut Rng) -> u32 {
        match rng.below(10) {
            0..=3 => UIDS[0],
            4..=6 => UIDS[1],
            _ => 2000 + self.entries.len() as u32,
        }
    }

    /// One random operation. `Ok(false)`: the sequence must stop.
    ///
    /// The draw favours calls that meet other sockets on a few ports: options
    /// are mostly set before bind, binds mostly go to unbound sockets, and
    /// failing calls that only test the argument checks stay a minority.
    pub(crate) fn step(&mut self, rng: &mut Rng) -> Result<bool, String> {
        let live = self.live();
        let open = live.len();
        let unbound: Vec<usize> = live
            .iter()
            .copied()
            .filter(|&i| self.entry(i).table.local_addr().is_none())
            .collect();
        let bound_idle: Vec<usize> = live
            .iter()
            .copied()
            .filter(|&i| {
                let e = self.entry(i);
                e.table.state() == State::Bound
            })
            .collect();
        // Any socket now and then, so that the state checks run too.
        let pick = |rng: &mut Rng, preferred: &[usize]| {
            if preferred.is_empty() || rng.chance(10) {
                rng.pick(&live)
            } else {
                rng.pick(preferred)
            }
        };
        // Device calls come from a generator of their own and come on top
        // of the step, so that a seed draws the same other calls with
        // devices as without.
        let mut device_rng = Rng(self.device_rng);
        if device_rng.chance(DEVICE_PERCENT) {
            if let Some(Err(divergence)) = self.device_step(&mut device_rng) {
                self.device_rng = device_rng.0;
                return Err(divergence);
            }
        }
        self.device_rng = device_rng.0;
        // So do the client-side port calls, from theirs.
        let mut client_rng = Rng(self.client_rng);
        if self.client && client_rng.chance(CLIENT_PERCENT) {
            if let Some(Err(divergence)) = self.client_step(&mut client_rng) {
                self.client_rng = client_rng.0;
                return Err(divergence);
            }
        }
        self.client_rng = client_rng.0;
        if self.life && rng.chance(LIFE_PERCENT) {
            if let Some(step) = self.life_step(rng) {
                self.life_steps += 1;
                return step;
            }
        }
        loop {
            match rng.below(20) {
                0..=2 if open < MAX_OPEN => {
                    if !self.time_waits.is_empty() && rng.chance(35) {
                        return self.replay(rng);
                    }
                    let v6 = rng.chance(50);
                    let uid = self.draw_uid(rng);
                    self.open(v6, uid)?;
                    return Ok(true);
                }
                3..=6 if open > 0 => {
                    let i = pick(rng, &unbound);
                    let option = rng.below(3);
                    let on = rng.chance(75);
                    self.set_option(i, option, on)?;
                    return Ok(true);
                }
                7..=11 if open > 0 => {
                    let i = pick(rng, &unbound);
                    let v6 = self.entry(i).v6;
                    let mut address = rng.pick(&ADDRESSES);
                    // Mostly addresses of the socket's family.
                    while rng.chance(90) && v6 != address.contains(':') {
                        address = rng.pick(&ADDRESSES);
                    }
                    let port = match rng.below(10) {
                        0..=1 => PortRef::Zero,
                        2..=4 => PortRef::Fixed(if rng.chance(80) {
                            FIXED_PORTS[0]
                        } else {
                            FIXED_PORTS[1]
                        }),
                        _ if !self.known.is_empty() => PortRef::Known(rng.pick(&self.known)),
                        _ => PortRef::Fixed(FIXED_PORTS[0]),
                    };
                    return self.bind(i, address, port);
                }
                12..=17 if open > 0 && self.protocol == Protocol::Udp => {
                    let i = rng.pick(&live);
                    if rng.chance(3) {
                        return self.listen(i);
                    }
                    if rng.chance(25) {
                        return self.disconnect(i);
                    }
                    let v6 = self.entry(i).v6;
                    let mut destination = rng.pick(&DESTINATIONS);
                    while rng.chance(90) && v6 != destination.contains(':') {
                        destination = rng.pick(&DESTINATIONS);
                    }
                    let port = if !self.known.is_empty() && rng.chance(40) {
                        PortRef::Known(rng.pick(&self.known))
                    } else {
                        PortRef::Zero
                    };
                    return self.connect_udp(i, destination, port);
                }
                12..=14 if open > 0 => {
                    let i = pick(rng, &bound_idle);
                    return self.listen(i);
                }
                15..=17 if open > 0 => {
                    let listeners: Vec<usize> = live
                        .iter()
                        .copied()
                        .filter(|&l| self.entry(l).listening)
                        .collect();
                    if listeners.is_empty() {
                        continue;
                    }
                    let i = rng.pick(&live);
                    let l = rng.pick(&listeners);
                    let client = self.entry(i);
                    let listener_port = self.entry(l).kernel_port();
                    if client.kernel_port() == listener_port
                        || client.peer.is_some() && rng.chance(70)
                    {
                        continue;
                    }
                    let v6 = client.v6;
                    let mut destination = rng.pick(&DESTINATIONS);
                    while rng.chance(90) && v6 != destination.contains(':') {
                        destination = rng.pick(&DESTINATIONS);
                    }
                    let ip: IpAddr = destination.parse().expect("destination");
                    let kto = SocketAddr::new(ip, listener_port);
                    let there = self.kernel_destination(i, kto);
                    let to = SocketAddr::new(there.ip(), self.to_table_port(there.port()));
                    // Only where the table expects a listener; the kernel must agree.
                    if v6 == destination.contains(':') && !self.table_listener_for(to) {
                        continue;
                    }
                    return self.connect(i, kto);
                }
                18..=19 if open > 0 => {
                    let i = rng.pick(&live);
                    if self.protocol == Protocol::Tcp
                        && self.entry(i).peer.is_some()
                        && rng.chance(50)
                        && !self.pair_off_lo(i)
                    {
                        return self.close_orderly(i);
                    }
                    self.close(i);
                    return Ok(true);
                }
                _ if open == 0 => {
                    let uid = self.draw_uid(rng);
                    self.open(rng.chance(50), uid)?;
                    return Ok(true);
                }
                _ => continue,
            }
        }
    }
}
