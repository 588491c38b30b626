//! `Policy::Linux` against the running kernel, errno for errno.
//!
//! Random sequences of socket / setsockopt (SO_REUSEADDR, SO_REUSEPORT,
//! IPV6_V6ONLY) / bind / listen / connect / close run on real sockets in a
//! private network namespace and on a `PcbTable`, and every result is
//! compared, for TCP and for UDP (where connect() needs no listener, may be
//! repeated, and `connect(AF_UNSPEC)` dissolves it). A connection the kernel makes to one of its listeners is
//! mirrored on the table by `connect` on the client and `accept` on the
//! listener the kernel chose (the kernel's server side holds the port too),
//! and the table's `lookup` for the SYN must name a listener of the same
//! kind (family, address, V6ONLY) as the one the kernel chose.
//!
//! **Ports chosen at random** (bind(0), the autobind of listen() and
//! connect()) can be compared only as set membership: the kernel's port and
//! the table's must lie in the same scan class (TCP bind(0): the odd then the
//! even ports, each half of the range first with SO_REUSEADDR; TCP
//! connect(): the ports of the low end's parity first; UDP: any port of the
//! range), inside the part of the range the kernel scans. The harness then maps each kernel port to the table's port
//! (a permutation of the ephemeral range that keeps classes), so that later
//! operations naming that port mean the same port in both worlds. If the two
//! picks cannot be mapped onto each other because one of them was already
//! in use, the sequence stops early (counted as "unmappable"; it is not a
//! divergence). Ranges of one to four ports keep exhaustion frequent and
//! most choices deterministic.
//!
//! Connections are closed with SO_LINGER 0 on both ends, so no TIME_WAIT
//! state depends on timing here; `linux_time_wait.rs` covers TIME_WAIT.
//!
//! A fixed list of seeds runs first, then random seeds until the time budget
//! (`PCBHASH_DIFF_SECS` per protocol, default 15 seconds) is spent. A
//! divergence fails the test and prints its seed and the operations that led
//! to it; rerun one seed with `PCBHASH_DIFF_SEED=<seed>`.
//!
//! A quarter of the steps come from `linux_differential/life.rs`: calls on
//! sockets that already hold a port (SO_REUSEPORT cleared and set, listen
//! again, disconnect of TCP listeners and connections and of UDP group
//! members, UDP connect to port 0, link-local addresses), and real packets
//! whose receivers are compared with the table's lookup.
//!
//! One difference is known and tolerated, and counted in the summary: when
//! a UDP connect() finds no port for its early autobind, the kernel says
//! EAGAIN, which `pcbhash::Error` has no variant for yet; the table says
//! EADDRNOTAVAIL.

#[path = "linux_differential/life.rs"]
mod life;
mod linux_kernel;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use linux_kernel::{errno, errno_name, table_errno, Netns};
use pcbhash::{Cred, Family, Pcb, PcbTable, Policy, Protocol, State};
use socket2::{SockAddr, Socket};

/// Seeds that always run, so that CI is reproducible.
const FIXED_SEEDS: std::ops::Range<u64> = 1..301;

/// Ports outside every ephemeral range, for explicit binds.
const FIXED_PORTS: [u16; 2] = [20000, 20001];

/// The addresses of the issue (both families, wildcards, v4-mapped), and
/// `127.0.0.6`, the IPv4 address Linux files an AF_INET6 socket on a specific
/// IPv6 address under (`LOOPBACK4_IPV6`).
const ADDRESSES: [&str; 8] = [
    "0.0.0.0",
    "127.0.0.1",
    "127.0.0.2",
    "::",
    "::1",
    "::ffff:0.0.0.0",
    "::ffff:127.0.0.1",
    "127.0.0.6",
];

/// Where clients connect to (the listener's port is added).
const DESTINATIONS: [&str; 5] = [
    "127.0.0.1",
    "127.0.0.2",
    "::1",
    "::ffff:127.0.0.1",
    "::ffff:127.0.0.2",
];

/// Ephemeral ranges: one to four ports.
const RANGES: [(u16, u16); 4] = [
    (40000, 40000),
    (40000, 40001),
    (40000, 40002),
    (40000, 40003),
];

/// UDP ranges: UDP picks a port at random among all free ones, so small
/// ranges end most sequences at an unmappable pick; a wider one keeps going.
const UDP_RANGES: [(u16, u16); 3] = [(40000, 40000), (40000, 40001), (40000, 40063)];

/// Ports UDP sockets connect to, besides ports handed out earlier.
const UDP_PEER_PORT: u16 = 30000;

/// How often a step draws from the operations of `life.rs`.
const LIFE_PERCENT: u64 = 25;

/// Socket owners.
const UIDS: [u32; 2] = [0, 1000];

/// Open sockets a sequence keeps at most (accepted children come on top).
const MAX_OPEN: usize = 6;

/// SplitMix64: small, seedable, good enough to draw operations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// One socket, in both worlds.
struct Entry {
    v6: bool,
    uid: u32,
    kernel: Socket,
    table: Pcb<()>,
    /// The other end of its connection, if any.
    peer: Option<usize>,
    listening: bool,
    reuse_addr: bool,
}

impl Entry {
    /// The kernel's local port, 0 if unbound.
    fn kernel_port(&self) -> u16 {
        linux_kernel::local_addr(&self.kernel).map_or(0, |a| a.port())
    }
}

/// How an operation names a port.
#[derive(Clone, Copy, Debug)]
enum PortRef {
    Zero,
    Fixed(u16),
    /// A port the kernel handed out earlier (its table twin is looked up).
    Known(u16),
}

/// Which scan a randomly chosen port came from.
#[derive(Clone, Copy, Debug)]
enum Scan {
    /// `bind(port 0)` or the autobind of `listen()`; SO_REUSEADDR or not.
    Bind { reuse_addr: bool },
    /// TCP `connect()`.
    Connect,
    /// Any UDP autobind.
    Udp,
}

/// Why a sequence ended.
enum Outcome {
    Completed,
    Unmappable,
}

/// Counters for the summary line.
#[derive(Default)]
struct Totals {
    sequences: u64,
    ops: u64,
    unmappable: u64,
    connections: u64,
    errors_compared: u64,
    known_gap: u64,
}

/// One random sequence: the kernel side, the table and the port mapping.
struct World {
    protocol: Protocol,
    table: PcbTable<()>,
    low: u16,
    high: u16,
    entries: Vec<Option<Entry>>,
    /// Kernel port -> table port, for the ephemeral range (identity elsewhere).
    k2t: HashMap<u16, u16>,
    known: Vec<u16>,
    log: String,
    ops: u64,
    connections: u64,
    errors: u64,
    known_gap: u64,
}

type Step = Result<(), String>;

impl World {
    fn new(ns: &Netns, seed: u64, protocol: Protocol, (low, high): (u16, u16)) -> Self {
        ns.set_port_range(low, high).expect("pin the port range");
        let table = PcbTable::<()>::builder()
            .policy(Policy::Linux)
            .protocol(protocol)
            .ephemeral_ports(low..=high)
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
            log: String::new(),
            ops: 0,
            connections: 0,
            errors: 0,
            known_gap: 0,
        }
    }

    fn to_table_port(&self, port: u16) -> u16 {
        self.k2t.get(&port).copied().unwrap_or(port)
    }

    fn to_kernel_port(&self, port: u16) -> u16 {
        self.k2t
            .iter()
            .find(|(_, &t)| t == port)
            .map_or(port, |(&k, _)| k)
    }

    fn live(&self) -> Vec<usize> {
        (0..self.entries.len())
            .filter(|&i| self.entries[i].is_some())
            .collect()
    }

    fn entry(&self, i: usize) -> &Entry {
        self.entries[i].as_ref().expect("live entry")
    }

    /// Kernel ports held by an entry other than `except`.
    fn kernel_port_in_use(&self, port: u16, except: usize) -> bool {
        self.entries
            .iter()
            .enumerate()
            .any(|(i, e)| i != except && e.as_ref().is_some_and(|e| e.kernel_port() == port))
    }

    fn note(&mut self, line: String) {
        let _ = writeln!(self.log, "  {line}");
    }

    fn compare(&mut self, what: &str, kernel: i32, table: i32) -> Step {
        self.ops += 1;
        if self.protocol == Protocol::Udp
            && what.contains("connect")
            && kernel == libc::EAGAIN
            && table == libc::EADDRNOTAVAIL
        {
            // The known gap (see the module docs).
            self.known_gap += 1;
            self.note(format!(
                "{what}: kernel EAGAIN, table EADDRNOTAVAIL (known gap)"
            ));
            return Ok(());
        }
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

    /// The scan class of `port`, or `None` if the kernel's scan cannot reach
    /// it (the scans cover an even number of ports of each range or half).
    /// `halves`: tell the two halves of the range apart, as the SO_REUSEADDR
    /// bind scan does (for four ports or more).
    fn class(&self, port: u16, halves: bool) -> Option<(u16, u16)> {
        let (low, n) = (self.low, self.high - self.low + 1);
        if port < low || port > self.high {
            return None;
        }
        if self.protocol == Protocol::Udp {
            return Some((0, 0));
        }
        let (start, size, half) = if halves && n >= 4 {
            let split = (n >> 2) << 1;
            if port - low < split {
                (low, split, 0)
            } else {
                (low + split, n - split, 1)
            }
        } else {
            (low, n, 0)
        };
        let scanned = if size > 1 { size & !1 } else { size };
        let offset = port - start;
        (offset < scanned).then_some((half, offset % 2))
    }

    /// Checks a randomly chosen port pair and maps the kernel's port onto
    /// the table's. `Ok(false)`: the two cannot be mapped (stop the sequence).
    fn map_random_port(
        &mut self,
        me: usize,
        kernel: u16,
        table: u16,
        scan: Scan,
    ) -> Result<bool, String> {
        let halves = matches!(scan, Scan::Bind { reuse_addr: true });
        let (kc, tc) = (self.class(kernel, halves), self.class(table, halves));
        if kc.is_none() || kc != tc {
            return Err(format!(
                "{scan:?} picked port {kernel} (class {kc:?}) in the kernel but {table} (class {tc:?}) in the table"
            ));
        }
        let expected = self.to_table_port(kernel);
        if expected == table {
            return Ok(true);
        }
        // The mapping must keep every scan's classes: the finest is the half
        // and the parity.
        if self.class(expected, true) != self.class(table, true) {
            return Ok(false);
        }
        let other = self.to_kernel_port(table);
        if self.kernel_port_in_use(kernel, me) || self.kernel_port_in_use(other, me) {
            return Ok(false);
        }
        // Both were free in both worlds: swap the two ports' images.
        self.k2t.insert(kernel, table);
        self.k2t.insert(other, expected);
        Ok(true)
    }

    /// Compares the local addresses after a successful call; `scan` says the
    /// port was chosen at random.
    fn check_local(&mut self, i: usize, scan: Option<Scan>) -> Result<bool, String> {
        let entry = self.entry(i);
        let kernel = linux_kernel::local_addr(&entry.kernel).ok_or("no kernel local address")?;
        let table = entry.table.local_addr().ok_or("no table local address")?;
        if kernel.ip().to_canonical() != table.ip().to_canonical() {
            return Err(format!("local address: kernel {kernel}, table {table}"));
        }
        let mapped = match scan {
            Some(scan) => self.map_random_port(i, kernel.port(), table.port(), scan)?,
            None => {
                if self.to_table_port(kernel.port()) != table.port() {
                    return Err(format!("local port: kernel {kernel}, table {table}"));
                }
                true
            }
        };
        if !self.known.contains(&kernel.port()) {
            self.known.push(kernel.port());
        }
        Ok(mapped)
    }

    fn open(&mut self, v6: bool, uid: u32) -> Step {
        let kernel = linux_kernel::socket_as(uid, v6, self.protocol == Protocol::Udp)
            .map_err(|e| format!("socket(): {e}"))?;
        let family = if v6 { Family::Inet6 } else { Family::Inet };
        let table = self.table.attach(family, Cred::user(uid), Arc::new(()));
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
        }));
        Ok(())
    }

    fn set_option(&mut self, i: usize, option: usize, on: bool) -> Step {
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

    fn bind(&mut self, i: usize, address: &str, port: PortRef) -> Result<bool, String> {
        let ip: IpAddr = address.parse().expect("address");
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
        let scan = (kport == 0).then_some(self.bind_scan(reuse_addr));
        self.check_local(i, scan)
    }

    fn bind_scan(&self, reuse_addr: bool) -> Scan {
        match self.protocol {
            Protocol::Tcp => Scan::Bind { reuse_addr },
            Protocol::Udp => Scan::Udp,
        }
    }

    /// UDP connect(): any peer will do.
    fn connect_udp(&mut self, i: usize, destination: &str, port: PortRef) -> Result<bool, String> {
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
        self.check_local(i, scan)
    }

    /// `connect(AF_UNSPEC)`.
    fn disconnect(&mut self, i: usize) -> Result<bool, String> {
        let entry = self.entry(i);
        let k = errno(&linux_kernel::disconnect(&entry.kernel));
        let t = table_errno(&entry.table.disconnect());
        self.compare(&format!("#{i} connect(AF_UNSPEC)"), k, t)?;
        if self.entry(i).table.local_addr().is_some() {
            return self.check_local(i, None);
        }
        Ok(true)
    }

    fn listen(&mut self, i: usize) -> Result<bool, String> {
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

    /// Whether the table has a listener for `to` (in table ports).
    fn table_listener_for(&self, to: SocketAddr) -> bool {
        let probe: SocketAddr = if to.ip().to_canonical().is_ipv4() {
            "127.0.0.9:9".parse().expect("probe")
        } else {
            "[::9]:9".parse().expect("probe")
        };
        let probe = match (to, probe) {
            (SocketAddr::V6(_), SocketAddr::V4(v4)) => {
                SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
            }
            _ => probe,
        };
        let guard = self.table.pin();
        self.table
            .lookup(to, probe, &guard)
            .is_some_and(|r| r.state() == State::Listen)
    }

    fn connect(&mut self, i: usize, listener: usize, destination: &str) -> Result<bool, String> {
        let ip: IpAddr = destination.parse().expect("destination");
        let kport = self.entry(listener).kernel_port();
        let tport = self.to_table_port(kport);
        let (kto, tto) = (SocketAddr::new(ip, kport), SocketAddr::new(ip, tport));
        let client = self.entry(i);
        let was_bound = client.table.local_addr().is_some();
        let k = errno(&linux_kernel::connect(&client.kernel, kto));
        let t = client.table.connect(tto);
        self.compare(
            &format!("#{i} connect({kto} -> table {tto})"),
            k,
            table_errno(&t),
        )?;
        if k != 0 {
            return Ok(true);
        }
        let scan = (!was_bound).then_some(Scan::Connect);
        if !self.check_local(i, scan)? {
            return Ok(false);
        }
        let client_table = self.entry(i).table.local_addr().expect("connected");
        // The kernel's server side: find the listener that got the connection.
        let mut child = None;
        for _ in 0..200 {
            for l in self.live() {
                let e = self.entry(l);
                if e.listening {
                    if let Some((socket, _)) = linux_kernel::try_accept(&e.kernel, e.uid) {
                        child = Some((l, socket));
                        break;
                    }
                }
            }
            if child.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let (chosen, socket) =
            child.ok_or("the kernel connected, but no listener has the connection")?;
        // The table's lookup for the SYN must name the same kind of listener.
        {
            let guard = self.table.pin();
            let found = self
                .table
                .lookup(tto, client_table, &guard)
                .ok_or("the table finds no PCB for the SYN")?;
            let found_entry = self
                .live()
                .into_iter()
                .find(|&e| found.is(&self.entry(e).table))
                .ok_or("the table's lookup names no live socket")?;
            let kind = |e: &Entry| {
                let addr = linux_kernel::local_addr(&e.kernel).map(|a| a.ip().to_canonical());
                let v6only = e.v6 && e.kernel.only_v6().unwrap_or(false);
                (e.v6, addr, v6only)
            };
            let (kk, tk) = (kind(self.entry(chosen)), kind(self.entry(found_entry)));
            if kk != tk || found.state() != State::Listen {
                return Err(format!(
                    "the SYN for {kto} went to #{chosen} {kk:?} in the kernel, the table's lookup names #{found_entry} {tk:?} ({:?})",
                    found.state()
                ));
            }
        }
        let accepted = self
            .entry(chosen)
            .table
            .accept(tto, client_table, Arc::new(()))
            .map_err(|e| format!("table accept on #{chosen}: {e:?}"))?;
        let (v6, uid, reuse_addr) = {
            let l = self.entry(chosen);
            (l.v6, l.uid, l.reuse_addr)
        };
        let c = self.entries.len();
        self.note(format!("#{c} = accept(#{chosen}) for #{i}"));
        self.entries.push(Some(Entry {
            v6,
            uid,
            kernel: socket,
            table: accepted,
            peer: Some(i),
            listening: false,
            reuse_addr,
        }));
        self.entries[i].as_mut().expect("live").peer = Some(c);
        self.connections += 1;
        self.check_local(c, None)
    }

    fn close(&mut self, i: usize) {
        if let Some(entry) = self.entries[i].take() {
            self.note(format!("#{i} close()"));
            linux_kernel::close_now(entry.kernel);
            drop(entry.table);
            if let Some(peer) = entry.peer {
                self.close(peer);
            }
        }
    }

    fn close_all(&mut self) {
        for i in 0..self.entries.len() {
            self.close(i);
        }
    }

    /// One random operation. `Ok(false)`: the sequence must stop.
    ///
    /// The draw favours calls that meet other sockets on a few ports: options
    /// are mostly set before bind, binds mostly go to unbound sockets, and
    /// failing calls that only test the argument checks stay a minority.
    fn step(&mut self, rng: &mut Rng) -> Result<bool, String> {
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
        if rng.chance(LIFE_PERCENT) {
            if let Some(step) = self.life_step(rng) {
                return step;
            }
        }
        loop {
            match rng.below(20) {
                0..=2 if open < MAX_OPEN => {
                    let v6 = rng.chance(50);
                    let uid = if rng.chance(20) { UIDS[1] } else { UIDS[0] };
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
                    let to = SocketAddr::new(ip, self.to_table_port(listener_port));
                    // Only where the table expects a listener; the kernel must agree.
                    if v6 == destination.contains(':') && !self.table_listener_for(to) {
                        continue;
                    }
                    return self.connect(i, l, destination);
                }
                18..=19 if open > 0 => {
                    let i = rng.pick(&live);
                    self.close(i);
                    return Ok(true);
                }
                _ if open == 0 => {
                    self.open(rng.chance(50), 0)?;
                    return Ok(true);
                }
                _ => continue,
            }
        }
    }
}

/// Runs the sequence of `seed`.
fn run(ns: &Netns, protocol: Protocol, seed: u64, totals: &mut Totals) -> Result<(), String> {
    let mut rng = Rng(seed);
    let range = match protocol {
        Protocol::Tcp => rng.pick(&RANGES),
        Protocol::Udp => rng.pick(&UDP_RANGES),
    };
    let steps = 20 + rng.below(60);
    let mut world = World::new(ns, seed, protocol, range);
    let _ = writeln!(world.log, "  {protocol:?}, range {}-{}", range.0, range.1);
    let mut outcome = Outcome::Completed;
    let mut result = Ok(());
    for _ in 0..steps {
        match world.step(&mut rng) {
            Ok(true) => {}
            Ok(false) => {
                outcome = Outcome::Unmappable;
                break;
            }
            Err(divergence) => {
                let sockets = ns.tcp_table_dump();
                result = Err(format!(
                    "DIVERGENCE (seed {seed}): {divergence}\noperations:\n{}kernel sockets:\n{sockets}",
                    world.log
                ));
                break;
            }
        }
    }
    world.close_all();
    totals.sequences += 1;
    totals.ops += world.ops;
    totals.connections += world.connections;
    totals.errors_compared += world.errors;
    totals.known_gap += world.known_gap;
    if let Outcome::Unmappable = outcome {
        totals.unmappable += 1;
    }
    result
}

/// Runs the fixed seeds, then random ones until the budget is spent.
fn differential(protocol: Protocol) {
    let name = format!("linux_differential_{protocol:?}").to_lowercase();
    let ns = match Netns::enter() {
        Ok(ns) => ns,
        Err(reason) => {
            eprintln!("{name} skipped: {reason}");
            return;
        }
    };
    let started = Instant::now();
    let mut totals = Totals::default();
    if let Ok(seed) = std::env::var("PCBHASH_DIFF_SEED") {
        let seed: u64 = seed.parse().expect("PCBHASH_DIFF_SEED is a number");
        if let Err(divergence) = run(&ns, protocol, seed, &mut totals) {
            panic!("{divergence}");
        }
        return;
    }
    let budget = std::env::var("PCBHASH_DIFF_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let mut failures = Vec::new();
    for seed in FIXED_SEEDS {
        if let Err(divergence) = run(&ns, protocol, seed, &mut totals) {
            failures.push(divergence);
        }
    }
    let mut random = Rng(started.elapsed().as_nanos() as u64 ^ std::process::id() as u64);
    while started.elapsed() < Duration::from_secs(budget) && failures.len() < 5 {
        let seed = random.next();
        if let Err(divergence) = run(&ns, protocol, seed, &mut totals) {
            failures.push(divergence);
        }
    }
    eprintln!(
        "{name}: {} operations compared ({} failing calls, {} connections) in {} sequences \
         ({} stopped early at an unmappable random port, {} known-gap results), {:.1} s",
        totals.ops,
        totals.errors_compared,
        totals.connections,
        totals.sequences,
        totals.unmappable,
        totals.known_gap,
        started.elapsed().as_secs_f64()
    );
    if !failures.is_empty() {
        for failure in &failures {
            eprintln!("{failure}");
        }
        panic!("{} sequences diverged from the kernel", failures.len());
    }
}

#[test]
fn linux_differential_tcp() {
    differential(Protocol::Tcp);
}

#[test]
fn linux_differential_udp() {
    differential(Protocol::Udp);
}
