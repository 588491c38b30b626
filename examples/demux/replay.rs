//! Replaying captures through two tables, one for TCP and one for UDP.
//!
//! ## The model
//!
//! Every address in a capture is taken to be the host's own, as if the
//! capture had been taken on a loopback interface: both ends of a connection
//! live in the tables, and each packet is delivered to its destination, i.e.
//! looked up as `lookup(local = destination, remote = source)`. Around that
//! lookup the replay acts as a stateful endpoint would:
//!
//! - **TCP SYN** (without ACK): the sender made the connection, so the replay
//!   opens its PCB first (`bind` to the captured source address and port,
//!   then `connect`). At the receiver, a SYN that finds a listener is
//!   accepted; one that finds nothing opens a listener for its destination
//!   port on demand (`[::]` with V6ONLY, or `0.0.0.0`), firewall-style, and is
//!   then accepted; one that finds a TIME_WAIT PCB is accepted too, which
//!   replaces it, as kernels do for a new SYN to a TIME_WAIT 4-tuple.
//! - **FIN**: the side that sends the first FIN closes actively. It enters
//!   TIME_WAIT (`time_wait()`) when the peer's FIN arrives; the peer, in
//!   LAST_ACK, closes at the next ACK it receives.
//! - **RST** to a live connection closes both of its ends. A RST to a
//!   TIME_WAIT PCB is ignored (RFC 1337), as is one to a listener.
//! - **UDP**: the first datagram of a pair gives its sender a connected client
//!   socket (unless a server socket already holds the sender's port), and a
//!   datagram that finds nothing binds a server socket on demand for its
//!   destination port. A datagram to a multicast group or to
//!   `255.255.255.255` goes to every matching PCB instead (`deliver`, see
//!   `groupcast.rs`); one that reaches none binds a server socket for its
//!   port, so the next ones are delivered.
//! - **Time**: TIME_WAIT lasts 60 s (2MSL) of capture time; a UDP client
//!   socket idle for 30 s of capture time is closed. At the end of each file
//!   every PCB is closed, and both tables must then be empty.
//!
//! Every socket sets SO_REUSEADDR, as servers and most stacks' tools do. The
//! conflicts the kernels still report are counted by errno (for example, on
//! Linux, a client bound to the port of a listener on the wildcard address).
//!
//! ## What is checked
//!
//! - a packet of a flow the replay tracks (its receiver's PCB is open) finds
//!   exactly that PCB;
//! - an exact hit has the packet's tuple; a wildcard or group hit is an
//!   unconnected PCB whose address covers the destination, on its port;
//! - after each file, closing everything leaves both tables empty.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use pcbhash::{Cred, Family, Pcb, PcbRef, PcbTable, Policy, Protocol, State};

use crate::capture::{Capture, Format};
use crate::errors::{ErrorCounts, Op};
use crate::groupcast::{self, GroupCounts};
use crate::outcome::{Outcome, Outcomes};
use crate::packet::{self, Parsed, Proto, Segment, TcpFlags, Unparseable};
use crate::socket::Socket;

/// 2MSL, as both kernels count it.
const TIME_WAIT: Duration = Duration::from_secs(60);
/// How long a UDP client socket may stay idle.
const UDP_IDLE: Duration = Duration::from_secs(30);
/// How often (in capture time) expired PCBs are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// What happened to the files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileCounts {
    /// Files given.
    pub total: u64,
    /// Classic pcap files.
    pub pcap: u64,
    /// pcapng files.
    pub pcapng: u64,
    /// Files that could not be opened or have no capture header.
    pub unreadable: u64,
    /// Files that ended on a record that could not be read.
    pub truncated: u64,
    /// Files whose replay panicked (never expected; a bug if not 0).
    pub panicked: u64,
}

impl FileCounts {
    /// Files whose header was read.
    pub fn read(&self) -> u64 {
        self.pcap + self.pcapng
    }
}

/// What happened to the packets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketCounts {
    /// Packets (records) read, including bad ones.
    pub total: u64,
    /// TCP segments looked up.
    pub tcp: u64,
    /// UDP datagrams looked up.
    pub udp: u64,
    /// Parsed, not IP.
    pub non_ip: u64,
    /// Parsed, IP but neither TCP nor UDP.
    pub other_ip: u64,
    /// Parsed, an IP fragment.
    pub fragments: u64,
    /// Parsed, with a port or address no endpoint may have.
    pub bad_endpoints: u64,
    /// Unparseable: records that could not be read at all.
    pub bad_records: u64,
    /// Unparseable: link header.
    pub bad_link: u64,
    /// Unparseable: IP header.
    pub bad_ip: u64,
    /// Unparseable: TCP or UDP header.
    pub bad_transport: u64,
    /// Unparseable: unknown link type.
    pub unsupported_link: u64,
}

impl PacketCounts {
    /// Packets that parsed.
    pub fn parsed(&self) -> u64 {
        self.tcp + self.udp + self.non_ip + self.other_ip + self.fragments + self.bad_endpoints
    }

    /// Packets that did not.
    pub fn unparseable(&self) -> u64 {
        self.bad_records + self.bad_link + self.bad_ip + self.bad_transport + self.unsupported_link
    }
}

/// The socket calls the replay made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Actions {
    /// TCP listeners opened on demand for SYNs.
    pub listeners: u64,
    /// Passive opens.
    pub accepted: u64,
    /// Active opens.
    pub connected: u64,
    /// PCBs moved to TIME_WAIT.
    pub time_wait: u64,
    /// PCBs closed after a FIN exchange (LAST_ACK).
    pub fin_closed: u64,
    /// PCBs closed by a RST.
    pub rst_closed: u64,
    /// TIME_WAIT PCBs replaced by a new connection on the same 4-tuple.
    pub time_wait_reused: u64,
    /// UDP server sockets bound on demand.
    pub udp_servers: u64,
    /// UDP client sockets.
    pub udp_clients: u64,
    /// PCBs closed by capture time (TIME_WAIT over, UDP idle).
    pub expired: u64,
}

/// The replay's invariant checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayChecks {
    /// Lookups checked.
    pub checked: u64,
    /// Lookups that broke an invariant.
    pub violations: u64,
    /// Files after which both tables were empty.
    pub clean_files: u64,
}

/// Everything a replay counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Files.
    pub files: FileCounts,
    /// Files by link type (a pcapng file counts once per link type in it).
    pub link_types: BTreeMap<String, u64>,
    /// Packets.
    pub packets: PacketCounts,
    /// Lookups by outcome.
    pub outcomes: Outcomes,
    /// Socket calls.
    pub actions: Actions,
    /// Failed socket calls.
    pub errors: ErrorCounts,
    /// Invariants.
    pub checks: ReplayChecks,
    /// Multicast and broadcast datagrams.
    pub groupcast: GroupCounts,
}

impl ReplayReport {
    /// Whether every invariant held.
    pub fn passed(&self) -> bool {
        self.checks.violations == 0
            && self.files.panicked == 0
            && self.checks.clean_files == self.files.read()
            && self.packets.total == self.packets.parsed() + self.packets.unparseable()
    }
}

/// What one file gave.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileResult {
    /// Packets read.
    pub packets: u64,
    /// Packets that parsed.
    pub parsed: u64,
    /// Packets that did not.
    pub unparseable: u64,
}

/// The replay: two tables and the counts.
pub struct Replayer {
    tcp: PcbTable<Socket>,
    udp: PcbTable<Socket>,
    report: ReplayReport,
    next_socket: u64,
}

impl Replayer {
    /// A replay under `policy`.
    pub fn new(policy: Policy) -> Self {
        let table = |protocol| {
            PcbTable::<Socket>::builder()
                .policy(policy)
                .protocol(protocol)
                .seed(0x5EED)
                .build()
        };
        Self {
            tcp: table(Protocol::Tcp),
            udp: table(Protocol::Udp),
            report: ReplayReport::default(),
            next_socket: 0,
        }
    }

    /// The counts so far.
    pub fn report(&self) -> &ReplayReport {
        &self.report
    }

    /// Counts a file that could not even be opened.
    pub fn unopenable(&mut self) {
        self.report.files.total += 1;
        self.report.files.unreadable += 1;
    }

    /// Replays one capture. Never panics on bad input: a panic inside
    /// (which would be a bug here or in a library) is caught, counted in
    /// [`FileCounts::panicked`] and the file abandoned.
    pub fn replay(&mut self, reader: impl Read) -> FileResult {
        let before = self.report.packets;
        self.report.files.total += 1;
        let outcome = catch_unwind(AssertUnwindSafe(|| self.replay_file(reader)));
        if outcome.is_err() {
            self.report.files.panicked += 1;
        }
        let after = self.report.packets;
        FileResult {
            packets: after.total - before.total,
            parsed: after.parsed() - before.parsed(),
            unparseable: after.unparseable() - before.unparseable(),
        }
    }

    fn replay_file(&mut self, reader: impl Read) {
        let mut capture = match Capture::open(reader) {
            Ok(capture) => capture,
            Err(_) => {
                self.report.files.unreadable += 1;
                return;
            }
        };
        match capture.format() {
            Format::Pcap => self.report.files.pcap += 1,
            Format::PcapNg => self.report.files.pcapng += 1,
        }
        let mut links = BTreeSet::new();
        links.extend(capture.link());
        let mut session = Session::default();
        while let Some(record) = capture.next_record() {
            self.report.packets.total += 1;
            let record = match record {
                Ok(record) => record,
                Err(_) => {
                    self.report.packets.bad_records += 1;
                    self.report.files.truncated += 1;
                    break;
                }
            };
            links.insert(record.link);
            session.advance(record.timestamp, self);
            match packet::parse(record.link, &record.data) {
                Ok(parsed) => self.parsed(&mut session, parsed),
                Err(why) => self.unparseable(why),
            }
        }
        for link in links {
            *self.report.link_types.entry(link.name()).or_default() += 1;
        }
        drop(session);
        let clean = [self.tcp.stats(), self.udp.stats()]
            .iter()
            .all(|stats| stats.len == 0 && stats.attached == 0);
        self.report.checks.clean_files += u64::from(clean);
    }

    fn unparseable(&mut self, why: Unparseable) {
        let packets = &mut self.report.packets;
        match why {
            Unparseable::Link => packets.bad_link += 1,
            Unparseable::Ip => packets.bad_ip += 1,
            Unparseable::Transport => packets.bad_transport += 1,
            Unparseable::UnsupportedLink => packets.unsupported_link += 1,
        }
    }

    fn parsed(&mut self, session: &mut Session, parsed: Parsed) {
        let packets = &mut self.report.packets;
        match parsed {
            Parsed::Segment(segment) if segment.proto == Proto::Tcp => {
                packets.tcp += 1;
                self.tcp_segment(session, segment);
            }
            Parsed::Segment(segment) => {
                packets.udp += 1;
                self.udp_datagram(session, segment);
            }
            Parsed::NonIp => packets.non_ip += 1,
            Parsed::OtherIp => packets.other_ip += 1,
            Parsed::Fragment => packets.fragments += 1,
            Parsed::BadEndpoint => packets.bad_endpoints += 1,
        }
    }

    fn socket(&mut self) -> Socket {
        self.next_socket += 1;
        Socket::Replay(self.next_socket)
    }

    /// Looks a packet up at its destination, counts and checks the answer,
    /// and says what it found.
    fn deliver(
        &mut self,
        proto: Proto,
        dst: SocketAddr,
        src: SocketAddr,
        own: Option<&Pcb<Socket>>,
    ) -> Found {
        let table = match proto {
            Proto::Tcp => &self.tcp,
            Proto::Udp => &self.udp,
        };
        let guard = table.pin();
        let found = table.lookup(dst, src, &guard);
        let outcome = Outcome::of(found.as_ref());
        self.report.outcomes.count(outcome);
        let ok = match (own, found) {
            (Some(own), found) => found.is_some_and(|pcb| pcb.is(own)),
            (None, Some(pcb)) => answer_fits(&pcb, outcome, dst, src),
            (None, None) => true,
        };
        self.report.checks.checked += 1;
        self.report.checks.violations += u64::from(!ok);
        Found {
            outcome,
            listener: found
                .filter(|pcb| pcb.state() == State::Listen)
                .map(|pcb| (pcb.family(), pcb.local_addr().port())),
        }
    }

    fn tcp_segment(&mut self, session: &mut Session, segment: Segment) {
        let Segment {
            src, dst, flags, ..
        } = segment;
        let TcpFlags { syn, ack, fin, rst } = flags;
        let opening = syn && !ack && !rst;
        if opening {
            self.active_open(session, src, dst);
        }
        let own = session.conns.get(&(dst, src)).map(|conn| &conn.pcb);
        let found = self.deliver(Proto::Tcp, dst, src, own);
        if rst {
            if found.outcome == Outcome::Exact {
                for key in [(dst, src), (src, dst)] {
                    if session.close_live(&key) {
                        self.report.actions.rst_closed += 1;
                    }
                }
            }
            return;
        }
        if opening {
            self.passive_open(session, dst, src, found);
        }
        self.close_states(session, src, dst, fin, ack);
    }

    /// The sender of a SYN: `bind(src)`, `connect(dst)`.
    fn active_open(&mut self, session: &mut Session, src: SocketAddr, dst: SocketAddr) {
        let key = (src, dst);
        if let Some(conn) = session.conns.get(&key) {
            if conn.pcb.state() != State::TimeWait {
                return; // a retransmitted SYN
            }
            session.conns.remove(&key);
            self.report.actions.time_wait_reused += 1;
        }
        let socket = self.socket();
        let pcb = self.tcp.attach(family(src), Cred::ROOT, socket);
        let errors = &mut self.report.errors;
        if errors
            .check(Op::SetOption, pcb.set_reuse_addr(true))
            .is_none()
            || errors.check(Op::Bind, pcb.bind(src)).is_none()
            || errors.check(Op::Connect, pcb.connect(dst)).is_none()
        {
            return;
        }
        self.report.actions.connected += 1;
        session.conns.insert(key, Conn::new(pcb));
    }

    /// The receiver of a SYN: accept on the listener, opening one if needed.
    fn passive_open(
        &mut self,
        session: &mut Session,
        dst: SocketAddr,
        src: SocketAddr,
        found: Found,
    ) {
        let key = match found.outcome {
            Outcome::Exact => return, // a retransmission, or a simultaneous open
            Outcome::TimeWait => (family(dst), dst.port()),
            Outcome::Group | Outcome::Wildcard | Outcome::Miss => {
                found.listener.unwrap_or((family(dst), dst.port()))
            }
        };
        let listener = match session.listeners.entry(key) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                let Some(listener) = self.open_server(Protocol::Tcp, key.0, key.1) else {
                    return;
                };
                self.report.actions.listeners += 1;
                entry.insert(listener)
            }
        };
        let socket = self.socket();
        let Some(pcb) = self
            .report
            .errors
            .check(Op::Accept, listener.accept(dst, src, socket))
        else {
            return;
        };
        self.report.actions.accepted += 1;
        if let Some(old) = session.conns.insert((dst, src), Conn::new(pcb)) {
            // The TIME_WAIT PCB the accept replaced: the table dropped it, and
            // its handle goes too.
            self.report.checks.checked += 1;
            self.report.checks.violations += u64::from(old.pcb.state() != State::Dropped);
            self.report.actions.time_wait_reused += 1;
        }
    }

    /// A wildcard server socket on `port`: `[::]` with V6ONLY or `0.0.0.0`.
    fn open_server(
        &mut self,
        protocol: Protocol,
        family: Family,
        port: u16,
    ) -> Option<Pcb<Socket>> {
        let socket = self.socket();
        let (table, any): (_, IpAddr) = match (protocol, family) {
            (Protocol::Tcp, Family::Inet) => (&self.tcp, Ipv4Addr::UNSPECIFIED.into()),
            (Protocol::Tcp, Family::Inet6) => (&self.tcp, Ipv6Addr::UNSPECIFIED.into()),
            (Protocol::Udp, Family::Inet) => (&self.udp, Ipv4Addr::UNSPECIFIED.into()),
            (Protocol::Udp, Family::Inet6) => (&self.udp, Ipv6Addr::UNSPECIFIED.into()),
        };
        let pcb = table.attach(family, Cred::ROOT, socket);
        let errors = &mut self.report.errors;
        errors.check(Op::SetOption, pcb.set_reuse_addr(true))?;
        if family == Family::Inet6 {
            errors.check(Op::SetOption, pcb.set_v6only(true))?;
        }
        errors.check(Op::Bind, pcb.bind(SocketAddr::new(any, port)))?;
        if protocol == Protocol::Tcp {
            errors.check(Op::Listen, pcb.listen())?;
        }
        Some(pcb)
    }

    /// FIN and the ACK that ends LAST_ACK, for the packet `src` → `dst`.
    fn close_states(
        &mut self,
        session: &mut Session,
        src: SocketAddr,
        dst: SocketAddr,
        fin: bool,
        ack: bool,
    ) {
        let receiver = (dst, src);
        if let Some(conn) = session.conns.get_mut(&receiver) {
            if conn.pcb.state() == State::Connected {
                if ack && conn.sent_fin && conn.rcvd_fin && !conn.active_close {
                    session.conns.remove(&receiver);
                    self.report.actions.fin_closed += 1;
                } else if fin && !conn.rcvd_fin {
                    conn.rcvd_fin = true;
                    // FIN_WAIT -> TIME_WAIT: this end closed first.
                    if conn.sent_fin
                        && self
                            .report
                            .errors
                            .check(Op::TimeWait, conn.pcb.time_wait())
                            .is_some()
                    {
                        conn.time_wait_until = Some(session.now + TIME_WAIT);
                        self.report.actions.time_wait += 1;
                    }
                }
            }
        }
        if fin {
            if let Some(conn) = session.conns.get_mut(&(src, dst)) {
                if conn.pcb.state() == State::Connected && !conn.sent_fin {
                    conn.sent_fin = true;
                    conn.active_close = !conn.rcvd_fin;
                }
            }
        }
    }

    fn udp_datagram(&mut self, session: &mut Session, segment: Segment) {
        let Segment { src, dst, .. } = segment;
        if groupcast::is_group(dst.ip()) {
            return self.group_datagram(session, src, dst);
        }
        let key = (src, dst);
        let sender_is_server = session.udp_servers.contains_key(&(family(src), src.port()));
        if !sender_is_server
            && unicast(src.ip())
            && unicast(dst.ip())
            && !session.udp_clients.contains_key(&key)
        {
            let socket = self.socket();
            let pcb = self.udp.attach(family(src), Cred::ROOT, socket);
            let errors = &mut self.report.errors;
            if errors
                .check(Op::SetOption, pcb.set_reuse_addr(true))
                .is_some()
                && errors.check(Op::Bind, pcb.bind(src)).is_some()
                && errors.check(Op::Connect, pcb.connect(dst)).is_some()
            {
                self.report.actions.udp_clients += 1;
                session.udp_clients.insert(key, (pcb, session.now));
            }
        }
        if let Some((_, last)) = session.udp_clients.get_mut(&key) {
            *last = session.now;
        }
        let own = session.udp_clients.get(&(dst, src)).map(|(pcb, _)| pcb);
        let found = self.deliver(Proto::Udp, dst, src, own);
        if found.outcome == Outcome::Miss {
            self.udp_server_for(session, dst);
        }
        if let Some((_, last)) = session.udp_clients.get_mut(&(dst, src)) {
            *last = session.now;
        }
    }
}

impl Replayer {
    /// A datagram to a multicast group or the broadcast address: delivered
    /// to every matching PCB, and, if none matched, a server socket is bound
    /// for its port.
    fn group_datagram(&mut self, session: &mut Session, src: SocketAddr, dst: SocketAddr) {
        let delivery = groupcast::deliver(&self.udp, dst, src, &mut self.report.groupcast);
        self.report.checks.checked += 1;
        self.report.checks.violations += u64::from(!delivery.sound);
        if delivery.receivers == 0 {
            self.udp_server_for(session, dst);
        }
    }

    /// Binds a UDP server socket for `dst`'s port, unless one holds it.
    fn udp_server_for(&mut self, session: &mut Session, dst: SocketAddr) {
        let server = (family(dst), dst.port());
        if let Entry::Vacant(entry) = session.udp_servers.entry(server) {
            if let Some(pcb) = self.open_server(Protocol::Udp, server.0, server.1) {
                self.report.actions.udp_servers += 1;
                entry.insert(pcb);
            }
        }
    }
}

/// What a lookup found, as far as the replay's actions care.
#[derive(Clone, Copy, Debug)]
struct Found {
    outcome: Outcome,
    /// The listener's family and port, if the answer was a listener.
    listener: Option<(Family, u16)>,
}

/// Whether an answer fits the packet: an exact hit has its tuple; any other
/// is an unconnected PCB on the destination port whose address covers the
/// destination.
fn answer_fits(
    pcb: &PcbRef<'_, Socket>,
    outcome: Outcome,
    dst: SocketAddr,
    src: SocketAddr,
) -> bool {
    let local = pcb.local_addr();
    let same = |a: SocketAddr, b: SocketAddr| {
        a.ip().to_canonical() == b.ip().to_canonical() && a.port() == b.port()
    };
    match outcome {
        Outcome::Exact | Outcome::TimeWait => {
            same(local, dst) && pcb.peer_addr().is_some_and(|peer| same(peer, src))
        }
        Outcome::Group | Outcome::Wildcard => {
            pcb.peer_addr().is_none()
                && local.port() == dst.port()
                && (local.ip().is_unspecified() || local.ip().to_canonical() == dst.ip())
        }
        Outcome::Miss => false,
    }
}

/// A TCP connection end the replay holds.
struct Conn {
    pcb: Pcb<Socket>,
    sent_fin: bool,
    rcvd_fin: bool,
    /// Sent its FIN before receiving one: it ends in TIME_WAIT.
    active_close: bool,
    time_wait_until: Option<Duration>,
}

impl Conn {
    fn new(pcb: Pcb<Socket>) -> Self {
        Self {
            pcb,
            sent_fin: false,
            rcvd_fin: false,
            active_close: false,
            time_wait_until: None,
        }
    }
}

/// The PCB handles of one file's replay. Dropping it closes them all.
#[derive(Default)]
struct Session {
    listeners: HashMap<(Family, u16), Pcb<Socket>>,
    conns: HashMap<(SocketAddr, SocketAddr), Conn>,
    udp_servers: HashMap<(Family, u16), Pcb<Socket>>,
    udp_clients: HashMap<(SocketAddr, SocketAddr), (Pcb<Socket>, Duration)>,
    /// The latest capture time seen.
    now: Duration,
    last_sweep: Duration,
}

impl Session {
    /// Moves the clock to `timestamp` (never backwards) and closes what
    /// expired.
    fn advance(&mut self, timestamp: Duration, replay: &mut Replayer) {
        if self.now == Duration::ZERO {
            self.last_sweep = timestamp;
        }
        self.now = self.now.max(timestamp);
        if self.now < self.last_sweep + SWEEP_EVERY {
            return;
        }
        self.last_sweep = self.now;
        let now = self.now;
        let before = self.conns.len() + self.udp_clients.len();
        self.conns
            .retain(|_, conn| conn.time_wait_until.is_none_or(|until| until > now));
        self.udp_clients
            .retain(|_, (_, last)| now.saturating_sub(*last) < UDP_IDLE);
        let after = self.conns.len() + self.udp_clients.len();
        replay.report.actions.expired += (before - after) as u64;
    }

    /// Closes the connection end `key` if it is live (not in TIME_WAIT).
    fn close_live(&mut self, key: &(SocketAddr, SocketAddr)) -> bool {
        let live = self
            .conns
            .get(key)
            .is_some_and(|conn| conn.pcb.state() == State::Connected);
        if live {
            self.conns.remove(key);
        }
        live
    }
}

fn family(addr: SocketAddr) -> Family {
    if addr.is_ipv4() {
        Family::Inet
    } else {
        Family::Inet6
    }
}

fn unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast()),
        IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast()),
    }
}
