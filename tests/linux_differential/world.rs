//! One random sequence's two worlds: the kernel's sockets and the table's
//! PCBs side by side, the map between their ephemeral ports, and the socket
//! calls, each made in both worlds and compared.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use pcbhash::policy::TwReuse;
use pcbhash::{Cred, Device, Family, Pcb, PcbRef, PcbTable, Policy, Protocol};
use socket2::{SockAddr, Socket};

use super::linux_kernel::devices::Dev;
use super::linux_kernel::{self, errno, errno_name, table_errno, Netns};
use super::time_wait::TimeWait;

/// Ports UDP sockets connect to, besides ports handed out earlier.
pub(crate) const UDP_PEER_PORT: u16 = 30000;

/// SplitMix64: small, seedable, good enough to draw operations.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    pub(crate) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// One socket, in both worlds.
pub(crate) struct Entry {
    pub(crate) v6: bool,
    pub(crate) uid: u32,
    pub(crate) kernel: Socket,
    pub(crate) table: Pcb<()>,
    /// The other end of its connection, if any.
    pub(crate) peer: Option<usize>,
    pub(crate) listening: bool,
    pub(crate) reuse_addr: bool,
    /// The kernel made it with accept().
    pub(crate) accepted: bool,
    /// IP_BIND_ADDRESS_NO_PORT is on.
    pub(crate) no_port: bool,
    /// An IP_LOCAL_PORT_RANGE is set (see `client.rs`).
    pub(crate) own_range: bool,
}

impl Entry {
    /// The kernel's local port, 0 if unbound.
    pub(crate) fn kernel_port(&self) -> u16 {
        linux_kernel::local_addr(&self.kernel).map_or(0, |a| a.port())
    }
}

/// How an operation names a port.
#[derive(Clone, Copy, Debug)]
pub(crate) enum PortRef {
    Zero,
    Fixed(u16),
    /// A port the kernel handed out earlier (its table twin is looked up).
    Known(u16),
}

/// Which scan a randomly chosen port came from.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Scan {
    /// `bind(port 0)` or the autobind of `listen()`; SO_REUSEADDR or not.
    Bind { reuse_addr: bool },
    /// TCP `connect()`.
    Connect,
    /// TCP `connect()` of a socket with its own port range: every port in
    /// turn, no parity passes.
    ConnectOwnRange,
    /// Any UDP autobind.
    Udp,
}

/// One random sequence: the kernel side, the table and the port mapping.
pub(crate) struct World {
    pub(crate) protocol: Protocol,
    pub(crate) table: PcbTable<()>,
    pub(crate) low: u16,
    pub(crate) high: u16,
    pub(crate) entries: Vec<Option<Entry>>,
    /// Kernel port -> table port, for the ephemeral range (identity elsewhere).
    pub(crate) k2t: HashMap<u16, u16>,
    pub(crate) known: Vec<u16>,
    pub(crate) clock: Instant,
    pub(crate) time_waits: Vec<TimeWait>,
    pub(crate) log: String,
    pub(crate) ops: u64,
    pub(crate) connections: u64,
    pub(crate) errors: u64,
    pub(crate) peers: u64,
    pub(crate) entered_time_wait: u64,
    pub(crate) replays: u64,
    /// Packets whose receiver differed in the one documented way (see
    /// `life.rs`).
    pub(crate) known_gap: u64,
    /// Whether steps may come from `life.rs` (see [`LIFE_PERCENT`]).
    pub(crate) life: bool,
    /// Steps that came from `life.rs`.
    pub(crate) life_steps: u64,
    /// Real packets whose receivers were compared.
    pub(crate) packets: u64,
    /// `lo` and the second device, where the namespace has one (see
    /// `devices.rs`).
    pub(crate) devices: Option<(Dev, Dev)>,
    /// The device every packet of the test arrives on: `lo`.
    pub(crate) lo: Device,
    /// SO_BINDTODEVICE calls compared.
    pub(crate) device_calls: u64,
    /// The state of the generator of the device calls (see `step.rs`).
    pub(crate) device_rng: u64,
    /// Whether the client-side port calls run (see `client.rs`), and the
    /// state of their generator.
    pub(crate) client: bool,
    pub(crate) client_rng: u64,
    /// Client-side port calls made, and binds that recorded an address
    /// only (IP_BIND_ADDRESS_NO_PORT).
    pub(crate) client_calls: u64,
    pub(crate) address_only_binds: u64,
}

pub(crate) type Step = Result<(), String>;

impl World {
    pub(crate) fn new(
        ns: &Netns,
        seed: u64,
        protocol: Protocol,
        (low, high): (u16, u16),
        devices: Option<(Dev, Dev)>,
        tw_reuse: TwReuse,
    ) -> Self {
        let lo = linux_kernel::devices::index_of("lo")
            .expect("the namespace has lo")
            .device();
        ns.set_port_range(low, high).expect("pin the port range");
        let table = PcbTable::<()>::builder()
            .policy(Policy::Linux)
            .protocol(protocol)
            .ephemeral_ports(low..=high)
            .tcp_tw_reuse(tw_reuse)
            .seed(seed)
            .build();
        World {
            protocol,
            table,
            low,
            high,
            entries: Vec::new(),
            k2t: HashMap::new(),
            known: Vec::new(),
            clock: Instant::now(),
            time_waits: Vec::new(),
            log: String::new(),
            ops: 0,
            connections: 0,
            errors: 0,
            peers: 0,
            entered_time_wait: 0,
            replays: 0,
            known_gap: 0,
            life: true,
            life_steps: 0,
            packets: 0,
            devices,
            lo,
            device_calls: 0,
            device_rng: seed ^ 0x6465_7669_6365_7321,
            client: false,
            client_rng: seed ^ 0x636c_6965_6e74_7321,
            client_calls: 0,
            address_only_binds: 0,
        }
    }

    /// The table's lookup for a packet from `remote` to `local`, as it
    /// arrives in the kernel: on `lo`.
    pub(crate) fn lookup<'g>(
        &self,
        local: SocketAddr,
        remote: SocketAddr,
        guard: &'g pcbhash::Guard,
    ) -> Option<PcbRef<'g, ()>> {
        self.table.lookup_on(self.lo, local, remote, guard)
    }

    pub(crate) fn to_table_port(&self, port: u16) -> u16 {
        self.k2t.get(&port).copied().unwrap_or(port)
    }

    pub(crate) fn to_kernel_port(&self, port: u16) -> u16 {
        self.k2t
            .iter()
            .find(|(_, &t)| t == port)
            .map_or(port, |(&k, _)| k)
    }

    pub(crate) fn live(&self) -> Vec<usize> {
        (0..self.entries.len())
            .filter(|&i| self.entries[i].is_some())
            .collect()
    }

    pub(crate) fn entry(&self, i: usize) -> &Entry {
        self.entries[i].as_ref().expect("live entry")
    }

    /// Kernel ports held by an entry other than `except`, or by a
    /// TIME_WAIT socket.
    pub(crate) fn kernel_port_in_use(&self, port: u16, except: usize) -> bool {
        self.entries
            .iter()
            .enumerate()
            .any(|(i, e)| i != except && e.as_ref().is_some_and(|e| e.kernel_port() == port))
            || self.time_waits.iter().any(|tw| tw.local.port() == port)
    }

    pub(crate) fn note(&mut self, line: String) {
        let _ = writeln!(self.log, "  {line} [{:?}]", self.clock.elapsed());
    }

    pub(crate) fn compare(&mut self, what: &str, kernel: i32, table: i32) -> Step {
        self.ops += 1;
        if kernel != 0 {
            self.errors += 1;
        }
        self.note(format!(
            "{what}: kernel {}, table {}",
            errno_name(kernel),
            errno_name(table)
        ));
        if kernel != table {
            return Err(format!(
                "{what}: kernel says {}, table says {}",
                errno_name(kernel),
                errno_name(table)
            ));
        }
        Ok(())
    }

    /// Compares the peers (`getpeername` and `peer_addr`): the same address,
    /// and the ports `ports` (kernel, table), or none for both.
    pub(crate) fn check_peer(&mut self, i: usize, ports: Option<(u16, u16)>) -> Step {
        let entry = self.entry(i);
        let kernel = linux_kernel::peer_addr(&entry.kernel);
        let table = entry.table.peer_addr();
        self.peers += 1;
        let agree = match (kernel, table, ports) {
            (None, None, None) => true,
            (Some(k), Some(t), Some((kport, tport))) => {
                k.ip() == t.ip() && k.port() == kport && t.port() == tport
            }
            _ => false,
        };
        if !agree {
            return Err(format!(
                "#{i} peer address: kernel {kernel:?}, table {table:?}"
            ));
        }
        Ok(())
    }

    pub(crate) fn open(&mut self, v6: bool, uid: u32) -> Step {
        let kernel = linux_kernel::socket_as(uid, v6, self.protocol == Protocol::Udp)
            .map_err(|e| format!("socket(): {e}"))?;
        let family = if v6 { Family::Inet6 } else { Family::Inet };
        let table = self.table.attach(family, Cred::user(uid), ());
        self.note(format!(
            "#{} = socket({}, uid {uid})",
            self.entries.len(),
            if v6 { "AF_INET6" } else { "AF_INET" }
        ));
        self.entries.push(Some(Entry {
            v6,
            uid,
            kernel,
            table,
            peer: None,
            listening: false,
            reuse_addr: false,
            accepted: false,
            no_port: false,
            own_range: false,
        }));
        Ok(())
    }

    pub(crate) fn set_option(&mut self, i: usize, option: usize, on: bool) -> Step {
        let entry = self.entry(i);
        let (name, k, t) = match option {
            0 => (
                "SO_REUSEADDR",
                errno(&entry.kernel.set_reuse_address(on)),
                table_errno(&entry.table.set_reuse_addr(on)),
            ),
            1 => (
                "SO_REUSEPORT",
                errno(&entry.kernel.set_reuse_port(on)),
                table_errno(&entry.table.set_reuse_port(on)),
            ),
            _ => (
                "IPV6_V6ONLY",
                errno(&entry.kernel.set_only_v6(on)),
                table_errno(&entry.table.set_v6only(on)),
            ),
        };
        if option == 0 && k == 0 {
            self.entries[i].as_mut().expect("live").reuse_addr = on;
        }
        self.compare(&format!("#{i} setsockopt({name}, {on})"), k, t)
    }

    pub(crate) fn bind(&mut self, i: usize, address: &str, port: PortRef) -> Result<bool, String> {
        let ip: IpAddr = address.parse().expect("address");
        if self.address_not_on_device(i, ip) {
            return Ok(true);
        }
        let (kport, tport) = match port {
            PortRef::Zero => (0, 0),
            PortRef::Fixed(p) => (p, p),
            PortRef::Known(p) => (p, self.to_table_port(p)),
        };
        let entry = self.entry(i);
        let reuse_addr = entry.reuse_addr;
        let k = errno(
            &entry
                .kernel
                .bind(&SockAddr::from(SocketAddr::new(ip, kport))),
        );
        let t = table_errno(&entry.table.bind(SocketAddr::new(ip, tport)));
        self.compare(&format!("#{i} bind({address}, {kport}->{tport})"), k, t)?;
        if k != 0 {
            return Ok(true);
        }
        if kport == 0 && self.entry(i).no_port {
            return self.check_address_only(i, ip);
        }
        let scan = (kport == 0).then_some(self.bind_scan(reuse_addr));
        self.check_local(i, scan)
    }

    pub(crate) fn bind_scan(&self, reuse_addr: bool) -> Scan {
        match self.protocol {
            Protocol::Tcp => Scan::Bind { reuse_addr },
            Protocol::Udp => Scan::Udp,
        }
    }

    /// UDP connect(): any peer will do.
    pub(crate) fn connect_udp(
        &mut self,
        i: usize,
        destination: &str,
        port: PortRef,
    ) -> Result<bool, String> {
        if self.cannot_route(i) {
            return Ok(true);
        }
        let ip: IpAddr = destination.parse().expect("destination");
        let (kport, tport) = match port {
            PortRef::Zero => (UDP_PEER_PORT, UDP_PEER_PORT),
            PortRef::Fixed(p) => (p, p),
            PortRef::Known(p) => (p, self.to_table_port(p)),
        };
        let (kto, tto) = (SocketAddr::new(ip, kport), SocketAddr::new(ip, tport));
        let client = self.entry(i);
        let was_bound = client.table.local_addr().is_some();
        let k = errno(&client.kernel.connect(&SockAddr::from(kto)));
        let t = client.table.connect(tto);
        let bound_now = client.table.local_addr().is_some();
        self.compare(
            &format!("#{i} connect({kto} -> table {tto})"),
            k,
            table_errno(&t),
        )?;
        if !bound_now {
            return Ok(true);
        }
        // The early autobind stays, even when the connect then fails.
        let scan = (!was_bound).then_some(Scan::Udp);
        if !self.check_local(i, scan)? {
            return Ok(false);
        }
        if k == 0 {
            self.check_peer(i, Some((kport, tport)))?;
        }
        Ok(true)
    }

    /// `connect(AF_UNSPEC)`.
    pub(crate) fn disconnect(&mut self, i: usize) -> Result<bool, String> {
        let entry = self.entry(i);
        let k = errno(&linux_kernel::disconnect(&entry.kernel));
        let t = table_errno(&entry.table.disconnect());
        self.compare(&format!("#{i} connect(AF_UNSPEC)"), k, t)?;
        self.check_peer(i, None)?;
        self.check_device(i)?;
        if self.entry(i).table.local_addr().is_some() {
            return self.check_local(i, None);
        }
        Ok(true)
    }

    pub(crate) fn listen(&mut self, i: usize) -> Result<bool, String> {
        let entry = self.entry(i);
        let was_bound = entry.table.local_addr().is_some();
        let reuse_addr = entry.reuse_addr;
        let k = errno(&entry.kernel.listen(128));
        let t = table_errno(&entry.table.listen());
        self.compare(&format!("#{i} listen()"), k, t)?;
        if k != 0 {
            // Linux: a socket that has been connected is refused, but keeps
            // the port the call took.
            let took = !was_bound && self.entry(i).table.local_addr().is_some();
            let scan = took.then_some(self.bind_scan(reuse_addr));
            return if took {
                self.check_local(i, scan)
            } else {
                Ok(true)
            };
        }
        self.entries[i].as_mut().expect("live").listening = true;
        let scan = (!was_bound).then_some(self.bind_scan(reuse_addr));
        self.check_local(i, scan)
    }

    pub(crate) fn close(&mut self, i: usize) {
        if let Some(entry) = self.entries[i].take() {
            self.note(format!("#{i} close()"));
            linux_kernel::close_now(entry.kernel);
            drop(entry.table);
            if let Some(peer) = entry.peer {
                self.close(peer);
            }
        }
    }

    pub(crate) fn close_all(&mut self) {
        for i in 0..self.entries.len() {
            self.close(i);
        }
        self.time_waits.clear();
    }
}
