//! `Policy::Linux` against the running kernel, errno for errno.
//!
//! Random sequences of socket / setsockopt (SO_REUSEADDR, SO_REUSEPORT,
//! IPV6_V6ONLY) / bind / listen / connect / close run on real sockets and on
//! a `PcbTable`, and every result is compared, for TCP and for UDP (where
//! connect() needs no listener, may be repeated, and `connect(AF_UNSPEC)`
//! dissolves it). Each sequence runs in a network namespace of its own, so
//! nothing it leaves (TIME_WAIT sockets above all) outlives it.
//!
//! - **Sockets** get an owner each (root, uid 1000, or a uid of their own),
//!   and the kernel's accept() runs under the listener's uid (`sock_graft`
//!   gives the accepted socket the accepting process's uid).
//! - **Peers** come from the whole address set, the unspecified ones
//!   included (the kernel connects those to the local host). After every
//!   successful connect() the kernel's peer (`getpeername`) and the table's
//!   must agree.
//! - **Connections.** A connection the kernel makes to one of its listeners
//!   is mirrored on the table by `connect` on the client and `accept` on the
//!   listener the kernel chose, and the table's `lookup` for the SYN must
//!   name a listener of the same kind (family, address, V6ONLY) as the one
//!   the kernel chose.
//! - **Closes.** An abortive close (SO_LINGER 0) resets the other end, which
//!   gives its port back at once: both ends close together in both worlds.
//!   An orderly close (one end, then the other) leaves the first in
//!   TIME_WAIT: the harness waits for the state in `/proc/net/tcp*` and
//!   mirrors it with `time_wait()`. While a sequence holds TIME_WAIT
//!   sockets, each step checks that the kernel and the table still agree on
//!   which exist, and new sockets replay old clients (same address and port
//!   toward the same server), so that a SYN meets a TIME_WAIT twin on the
//!   server side, or a bound connect() one on the client side.
//!
//! **Ports chosen at random** (bind(0), the autobind of listen() and
//! connect()) can be compared only as set membership: the kernel's port and
//! the table's must lie in the same scan class (TCP bind(0): the odd then the
//! even ports, each half of the range first with SO_REUSEADDR; TCP
//! connect(): the ports of the low end's parity first; UDP: any port of the
//! range), inside the part of the range the kernel scans. The harness then
//! maps each kernel port to the table's port (a permutation of the ephemeral
//! range that keeps classes), so that later operations naming that port mean
//! the same port in both worlds. If the two picks cannot be mapped onto each
//! other because one of them was already in use, the sequence stops early
//! (counted as "unmappable"; it is not a divergence). Ranges of one and four
//! ports are drawn most, so that exhaustion is common for both protocols.
//!
//! A fixed list of seeds runs first, then random seeds until the time budget
//! (`PCBHASH_DIFF_SECS` per protocol, default 15 seconds) is spent. A
//! divergence fails the test and prints its seed and the operations that led
//! to it; rerun one seed with `PCBHASH_DIFF_SEED=<seed>`.

mod linux_kernel;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use linux_kernel::tcp_states::{self, tcp_state, TIME_WAIT};
use linux_kernel::{errno, errno_name, table_errno, Netns};
use pcbhash::{Cred, Family, Pcb, PcbTable, Policy, Protocol, State};
use socket2::{SockAddr, Socket};

/// Seeds that always run, so that CI is reproducible.
const FIXED_SEEDS: std::ops::Range<u64> = 1..301;

/// Seeds that once found a divergence, with what they found; they run
/// first.
const FOUND_SEEDS: &[(Protocol, u64, &str)] = &[
    (Protocol::Udp, 2, "EAGAIN from the autobind of connect()"),
    (Protocol::Udp, 18, "EAGAIN from the autobind of connect() to ::"),
    (Protocol::Udp, 1, "connect() to 0.0.0.0"),
    (Protocol::Udp, 3, "connect() to ::ffff:0.0.0.0"),
    (
        Protocol::Udp,
        16333992528571897276,
        "0.0.0.0 from an IPv6 source that connect() chose: 127.0.0.1",
    ),
    (Protocol::Tcp, 6, "connect() to 0.0.0.0"),
    (Protocol::Tcp, 11, "connect() to ::ffff:0.0.0.0"),
    (Protocol::Tcp, 57, "connect() to ::"),
    (Protocol::Tcp, 125, "connect() to :: from a v4-mapped address"),
    (
        Protocol::Tcp,
        54,
        "an accepted TIME_WAIT keeps a listen()-made port from connect()",
    ),
    (Protocol::Tcp, 107, "a SYN that meets a TIME_WAIT twin"),
    (
        Protocol::Tcp,
        4873748946238144389,
        "a TIME_WAIT twin after an unmappable port",
    ),
];

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

/// Where clients connect to (the listener's port is added): every address
/// above, the unspecified ones included, and `::ffff:127.0.0.2`.
const DESTINATIONS: [&str; 9] = [
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

/// Ephemeral ranges: one to four ports, one and four most often.
const RANGES: [(u16, u16); 6] = [
    (40000, 40000),
    (40000, 40000),
    (40000, 40001),
    (40000, 40002),
    (40000, 40003),
    (40000, 40003),
];

/// UDP ranges: UDP picks a port at random among all free ones, so small
/// ranges end many sequences at an unmappable pick; a wider one keeps going.
const UDP_RANGES: [(u16, u16); 5] = [
    (40000, 40000),
    (40000, 40000),
    (40000, 40003),
    (40000, 40003),
    (40000, 40063),
];

/// Ports UDP sockets connect to, besides ports handed out earlier.
const UDP_PEER_PORT: u16 = 30000;

/// Socket owners besides a uid of the socket's own.
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
    /// The kernel made it with accept().
    accepted: bool,
}

/// A connection's end in TIME_WAIT, in both worlds.
struct TimeWait {
    table: Pcb<()>,
    /// The kernel socket's addresses, as it showed them.
    local: SocketAddr,
    remote: SocketAddr,
    /// The connection's client end and its family, to replay it.
    client: SocketAddr,
    server: SocketAddr,
    client_v6: bool,
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
    peers_compared: u64,
    time_waits: u64,
    replays: u64,
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
    clock: Instant,
    time_waits: Vec<TimeWait>,
    log: String,
    ops: u64,
    connections: u64,
    errors: u64,
    peers: u64,
    entered_time_wait: u64,
    replays: u64,
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
            clock: Instant::now(),
            time_waits: Vec::new(),
            log: String::new(),
            ops: 0,
            connections: 0,
            errors: 0,
            peers: 0,
            entered_time_wait: 0,
            replays: 0,
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

    /// Kernel ports held by an entry other than `except`, or by a
    /// TIME_WAIT socket.
    fn kernel_port_in_use(&self, port: u16, except: usize) -> bool {
        self.entries
            .iter()
            .enumerate()
            .any(|(i, e)| i != except && e.as_ref().is_some_and(|e| e.kernel_port() == port))
            || self.time_waits.iter().any(|tw| tw.local.port() == port)
    }

    fn note(&mut self, line: String) {
        let _ = writeln!(self.log, "  {line} [{:?}]", self.clock.elapsed());
    }

    fn compare(&mut self, what: &str, kernel: i32, table: i32) -> Step {
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

    /// Compares the peers (`getpeername` and `peer_addr`): the same address,
    /// and the ports `ports` (kernel, table), or none for both.
    fn check_peer(&mut self, i: usize, ports: Option<(u16, u16)>) -> Step {
        let entry = self.entry(i);
        let kernel = entry.kernel.peer_addr().ok().and_then(|a| a.as_socket());
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
            accepted: false,
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
        if !self.check_local(i, scan)? {
            return Ok(false);
        }
        if k == 0 {
            self.check_peer(i, Some((kport, tport)))?;
        }
        Ok(true)
    }

    /// `connect(AF_UNSPEC)`.
    fn disconnect(&mut self, i: usize) -> Result<bool, String> {
        let entry = self.entry(i);
        let k = errno(&linux_kernel::disconnect(&entry.kernel));
        let t = table_errno(&entry.table.disconnect());
        self.compare(&format!("#{i} connect(AF_UNSPEC)"), k, t)?;
        self.check_peer(i, None)?;
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
            return Ok(true);
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

    /// Where the kernel sends a TCP connect() from entry `i` to `to`: an
    /// unspecified address is the local host (the socket's own IPv4
    /// address, or 127.0.0.1; `::` is `::1`, or `::ffff:127.0.0.1` from a
    /// v4-mapped address). Used only to tell whether a listener waits there.
    fn kernel_destination(&self, i: usize, to: SocketAddr) -> SocketAddr {
        if !to.ip().is_unspecified() && to.ip().to_canonical() != IpAddr::from([0, 0, 0, 0]) {
            return to;
        }
        let local = linux_kernel::local_addr(&self.entry(i).kernel)
            .map(|a| a.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let local_v4 = match local {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(v6) => v6.to_ipv4_mapped(),
        };
        let ip = match (to.ip(), local_v4) {
            (IpAddr::V6(v6), Some(_)) if v6.is_unspecified() => {
                IpAddr::V6(std::net::Ipv4Addr::LOCALHOST.to_ipv6_mapped())
            }
            (IpAddr::V6(v6), None) if v6.is_unspecified() => {
                IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
            }
            (_, Some(v4)) if !v4.is_unspecified() => IpAddr::V4(v4),
            _ => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        };
        let ip = match (to, ip) {
            (SocketAddr::V6(_), IpAddr::V4(v4)) => IpAddr::V6(v4.to_ipv6_mapped()),
            _ => ip,
        };
        SocketAddr::new(ip, to.port())
    }

    /// TCP connect() of entry `i` to `kto` (kernel ports), where a listener
    /// waits; the kernel's server side is accepted in both worlds.
    fn connect(&mut self, i: usize, kto: SocketAddr) -> Result<bool, String> {
        let tto = SocketAddr::new(kto.ip(), self.to_table_port(kto.port()));
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
        self.check_peer(i, Some((kto.port(), tto.port())))?;
        let client_table = self.entry(i).table.local_addr().expect("connected");
        let tto = self.entry(i).table.peer_addr().expect("connected");
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
        // A SYN that meets a TIME_WAIT twin, and that the kernel accepted:
        // a stack drops the twin and asks again (Linux `tcp_v4_rcv` on
        // TCP_TW_SYN).
        let twin = {
            let guard = self.table.pin();
            self.table
                .lookup(tto, client_table, &guard)
                .filter(|found| found.state() == State::TimeWait)
                .map(|found| self.time_waits.iter().position(|tw| found.is(&tw.table)))
        };
        if let Some(twin) = twin {
            let n = twin.ok_or("the SYN meets a TIME_WAIT PCB the harness does not know")?;
            let tw = self.time_waits.remove(n);
            self.note(format!(
                "the SYN meets TIME_WAIT {} -> {}: closed",
                tw.local, tw.remote
            ));
        }
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
            accepted: true,
        }));
        self.entries[i].as_mut().expect("live").peer = Some(c);
        self.connections += 1;
        if !self.check_local(c, None)? {
            return Ok(false);
        }
        self.check_peer(c, Some((self.entry(i).kernel_port(), client_table.port())))?;
        Ok(true)
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

    /// The orderly close of a connection: `first` closes, then its peer, so
    /// `first` ends in TIME_WAIT (in the kernel once `/proc` shows it) and
    /// the peer closes for good.
    fn close_orderly(&mut self, first: usize) -> Step {
        let one = self.entries[first].take().expect("live");
        let other = one.peer.expect("connected");
        let two = self.entries[other].take().expect("the peer is live");
        self.note(format!(
            "#{first} close(), then #{other} close(): TIME_WAIT"
        ));
        let local = linux_kernel::local_addr(&one.kernel).ok_or("no local address")?;
        let remote = one
            .kernel
            .peer_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .ok_or("no peer address")?;
        // The client end as it saw the connection, to replay it.
        let client_end = if one.accepted { &two } else { &one };
        let client_v6 = client_end.v6;
        let client = linux_kernel::local_addr(&client_end.kernel).ok_or("no client address")?;
        let server = client_end
            .kernel
            .peer_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .ok_or("no server address")?;
        drop(one.kernel);
        drop(two.kernel);
        let deadline = Instant::now() + Duration::from_secs(5);
        while tcp_state(local, remote) != Some(TIME_WAIT) || tcp_state(remote, local).is_some() {
            if Instant::now() > deadline {
                return Err(format!(
                    "{local} -> {remote} did not reach TIME_WAIT in the kernel: {:?}",
                    tcp_states::tcp_sockets()
                ));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        one.table
            .time_wait()
            .map_err(|e| format!("table time_wait(): {e:?}"))?;
        drop(two.table);
        self.entered_time_wait += 1;
        self.time_waits.push(TimeWait {
            table: one.table,
            local,
            remote,
            client,
            server,
            client_v6,
        });
        Ok(())
    }

    /// The kernel and the table must agree on which TIME_WAIT sockets are
    /// left: a twin that gave way is gone from both.
    fn check_time_waits(&mut self) -> Step {
        if self.time_waits.is_empty() {
            return Ok(());
        }
        let kernel = tcp_states::tcp_sockets();
        let mut gone = Vec::new();
        for (n, tw) in self.time_waits.iter().enumerate() {
            let (local, remote) = (
                tcp_states::canonical(tw.local),
                tcp_states::canonical(tw.remote),
            );
            let in_kernel = kernel
                .iter()
                .any(|s| s.local == local && s.remote == remote && s.state == TIME_WAIT);
            let in_table = tw.table.state() == State::TimeWait;
            if in_kernel != in_table {
                return Err(format!(
                    "TIME_WAIT {} -> {}: the kernel {}, the table {:?}",
                    tw.local,
                    tw.remote,
                    if in_kernel { "has it" } else { "has none" },
                    tw.table.state()
                ));
            }
            if !in_table {
                gone.push(n);
            }
        }
        for n in gone.into_iter().rev() {
            let tw = self.time_waits.remove(n);
            self.note(format!("TIME_WAIT {} -> {} gave way", tw.local, tw.remote));
        }
        Ok(())
    }

    /// A new socket replays the client of a connection that left a TIME_WAIT
    /// socket: the same address and port, toward the same server, where a
    /// listener still waits. The SYN meets the server side's twin, or the
    /// bound connect() the client side's.
    fn replay(&mut self, rng: &mut Rng) -> Result<bool, String> {
        let tw = &self.time_waits[rng.below(self.time_waits.len())];
        let (client, server, v6) = (tw.client, tw.server, tw.client_v6);
        let tserver = SocketAddr::new(server.ip(), self.to_table_port(server.port()));
        if !self.table_listener_for(tserver) {
            return Ok(true);
        }
        self.replays += 1;
        let uid = self.draw_uid(rng);
        self.open(v6, uid)?;
        let i = self.entries.len() - 1;
        if rng.chance(70) {
            self.set_option(i, 0, true)?;
        }
        if rng.chance(20) {
            self.set_option(i, 1, true)?;
        }
        let address = client.ip().to_string();
        if !self.bind(i, &address, PortRef::Known(client.port()))? {
            return Ok(false);
        }
        if self.entry(i).table.state() != State::Bound {
            return Ok(true);
        }
        self.connect(i, server)
    }

    /// A socket owner: root, uid 1000, or a uid of the socket's own.
    fn draw_uid(&self, rng: &mut Rng) -> u32 {
        match rng.below(10) {
            0..=3 => UIDS[0],
            4..=6 => UIDS[1],
            _ => 2000 + self.entries.len() as u32,
        }
    }

    fn close_all(&mut self) {
        for i in 0..self.entries.len() {
            self.close(i);
        }
        self.time_waits.clear();
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
                    {
                        self.close_orderly(i)?;
                    } else {
                        self.close(i);
                    }
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

/// A fresh network namespace for one sequence. The namespaces made from it
/// get a small TCP hash table of their own, which `/proc/net/tcp*` walks
/// quickly (by default they share the host's, a walk of milliseconds).
fn namespace() -> Result<Netns, String> {
    let ns = Netns::enter()?;
    ns.sysctl("net/ipv4/tcp_child_ehash_entries", "128")
        .map_err(|e| format!("cannot pin tcp_child_ehash_entries: {e}"))?;
    Ok(ns)
}

/// Runs the sequence of `seed`, in a network namespace of its own.
fn run(protocol: Protocol, seed: u64, totals: &mut Totals) -> Result<(), String> {
    let ns = namespace().map_err(|reason| format!("seed {seed}: {reason}"))?;
    let mut rng = Rng(seed);
    let range = match protocol {
        Protocol::Tcp => rng.pick(&RANGES),
        Protocol::Udp => rng.pick(&UDP_RANGES),
    };
    let steps = 20 + rng.below(60);
    let mut world = World::new(&ns, seed, protocol, range);
    let _ = writeln!(world.log, "  {protocol:?}, range {}-{}", range.0, range.1);
    let mut outcome = Outcome::Completed;
    let mut result = Ok(());
    for _ in 0..steps {
        // A sequence that stops early leaves the two worlds apart.
        match world.step(&mut rng).and_then(|go_on| {
            if go_on {
                world.check_time_waits()?;
            }
            Ok(go_on)
        }) {
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
    totals.peers_compared += world.peers;
    totals.time_waits += world.entered_time_wait;
    totals.replays += world.replays;
    if let Outcome::Unmappable = outcome {
        totals.unmappable += 1;
    }
    result
}

/// Runs the seeds that found divergences and the fixed seeds, then random
/// ones until the budget is spent.
fn differential(protocol: Protocol) {
    let name = format!("linux_differential_{protocol:?}").to_lowercase();
    if let Err(reason) = namespace() {
        eprintln!("{name} skipped: {reason}");
        return;
    }
    let started = Instant::now();
    let mut totals = Totals::default();
    if let Ok(seed) = std::env::var("PCBHASH_DIFF_SEED") {
        let seed: u64 = seed.parse().expect("PCBHASH_DIFF_SEED is a number");
        if let Err(divergence) = run(protocol, seed, &mut totals) {
            panic!("{divergence}");
        }
        return;
    }
    let budget = std::env::var("PCBHASH_DIFF_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let mut failures = Vec::new();
    let found: Vec<u64> = FOUND_SEEDS
        .iter()
        .filter(|(p, _, _)| *p == protocol)
        .map(|(_, seed, _)| *seed)
        .collect();
    let fixed = FIXED_SEEDS.filter(|seed| !found.contains(seed));
    for seed in found.iter().copied().chain(fixed) {
        if let Err(divergence) = run(protocol, seed, &mut totals) {
            failures.push(divergence);
        }
    }
    let mut random = Rng(started.elapsed().as_nanos() as u64 ^ std::process::id() as u64);
    while started.elapsed() < Duration::from_secs(budget) && failures.len() < 5 {
        let seed = random.next();
        if let Err(divergence) = run(protocol, seed, &mut totals) {
            failures.push(divergence);
        }
    }
    eprintln!(
        "{name}: {} operations compared ({} failing calls, {} peers, {} connections, \
         {} TIME_WAIT sockets, {} replayed clients) in {} sequences ({} stopped early at an \
         unmappable random port), {:.1} s",
        totals.ops,
        totals.errors_compared,
        totals.peers_compared,
        totals.connections,
        totals.time_waits,
        totals.replays,
        totals.sequences,
        totals.unmappable,
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
