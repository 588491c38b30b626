//! The stack: two tables (TCP and UDP) holding every socket it has, the
//! owner handles of their PCBs, and the loop that reads the device, obeys
//! commands, expires TIME_WAIT entries and reports progress. The input paths
//! are `tcp_input` and `udp_input`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Mutex;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use pcbhash::{Cred, Family, Pcb, PcbTable, Policy, Protocol, State, Stats};

use super::apps::{App, Opened, Service, UdpService};
use super::counters::{Counters, Summary};
use super::link::{self, Link, STACK_V4};
use super::owners::Owners;
use super::sockets::{Conn, TcpSock, UdpSock};
use super::tcp::{Cookies, Tcb};
use super::wire::{self, Datagram, Packet, Segment};

/// The TCP services and their ports (dual-stack listeners on `::`).
pub const TCP_SERVICES: [(u16, Service); 2] = [(7, Service::Echo), (80, Service::Http)];
/// The UDP echo port (a dual-stack socket on `::`).
pub const UDP_ECHO: u16 = 7;
/// The port of the two tagged UDP sockets: one bound to `0.0.0.0`, one
/// connected to [`UDP_PEER`].
pub const UDP_TAGGED: u16 = 9000;
/// The peer of the connected UDP socket (a kernel-side address).
pub const UDP_PEER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(link::KERNEL_V4), 9001);
/// The ephemeral range of the TCP table (active opens).
pub const EPHEMERAL: std::ops::RangeInclusive<u16> = 49152..=65535;

/// How the stack runs.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// How long a TIME_WAIT entry stays (2MSL, shortened: a kernel waits
    /// 60 s).
    pub two_msl: Duration,
    /// How often to print a progress line (`None`: never).
    pub progress: Option<Duration>,
}

/// What the stack's owner can ask of it.
#[derive(Debug)]
pub enum Command {
    /// An active open to `remote`: send `message`, read it back, close.
    Connect {
        /// The server.
        remote: SocketAddr,
        /// What to send.
        message: Vec<u8>,
        /// Where the result goes.
        report: Sender<Result<Opened, String>>,
    },
    /// Close the services, let the connections finish, stop.
    Shutdown,
}

/// The running stack, seen from the thread that started it.
#[derive(Debug)]
pub struct Handle {
    commands: Sender<Command>,
    thread: JoinHandle<Option<Summary>>,
}

impl Handle {
    /// An active open from the stack to `remote`; waits for its end.
    pub fn connect(&self, remote: SocketAddr, message: Vec<u8>) -> Result<Opened, String> {
        let (report, result) = mpsc::channel();
        self.commands
            .send(Command::Connect {
                remote,
                message,
                report,
            })
            .map_err(|_| "the stack has stopped".to_string())?;
        result
            .recv_timeout(Duration::from_secs(20))
            .map_err(|e| format!("no result from the active open: {e}"))?
    }

    /// Stops the stack; gives its summary.
    pub fn shutdown(self) -> Summary {
        let _ = self.commands.send(Command::Shutdown);
        self.thread
            .join()
            .expect("the stack thread panicked")
            .expect("a started stack gives a summary")
    }
}

/// Starts the stack in a thread of its own, in the calling thread's network
/// namespace (a new thread inherits it); fails if the device cannot be made.
pub fn start(config: Config) -> Result<Handle, String> {
    let (commands, inbox) = mpsc::channel();
    let (ready, started) = mpsc::channel();
    let thread = thread::Builder::new()
        .name("tunstack".into())
        .spawn(move || match Stack::new(config) {
            Ok(stack) => {
                let _ = ready.send(Ok(()));
                Some(stack.run(inbox))
            }
            Err(e) => {
                let _ = ready.send(Err(e));
                None
            }
        })
        .map_err(|e| format!("cannot start the stack thread: {e}"))?;
    match started.recv() {
        Ok(Ok(())) => Ok(Handle { commands, thread }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => Err("the stack thread died while starting".into()),
    }
}

/// The stack's state; lives in its thread.
pub struct Stack {
    pub(crate) link: Link,
    pub(crate) tcp: PcbTable<TcpSock>,
    pub(crate) udp: PcbTable<UdpSock>,
    pub(crate) tcp_owners: Owners<Pcb<TcpSock>>,
    pub(crate) udp_owners: Owners<Pcb<UdpSock>>,
    pub(crate) cookies: Cookies,
    pub(crate) time_wait: VecDeque<(Instant, usize)>,
    pub(crate) counters: Counters,
    pub(crate) out: Vec<Segment>,
    config: Config,
    started: Instant,
    peak: Stats,
}

impl Stack {
    fn new(config: Config) -> Result<Stack, String> {
        let link = Link::open()?;
        let table = |protocol| {
            PcbTable::<()>::builder()
                .policy(Policy::Linux)
                .protocol(protocol)
                .ephemeral_ports(EPHEMERAL)
                .source_address(link::source_for)
        };
        let mut stack = Stack {
            link,
            tcp: table(Protocol::Tcp).build(),
            udp: table(Protocol::Udp).build(),
            tcp_owners: Owners::default(),
            udp_owners: Owners::default(),
            cookies: Cookies::default(),
            time_wait: VecDeque::new(),
            counters: Counters::default(),
            out: Vec::new(),
            config,
            started: Instant::now(),
            peak: Stats::default(),
        };
        stack
            .open_services()
            .map_err(|e| format!("cannot open the services: {e}"))?;
        Ok(stack)
    }

    /// The listeners and the UDP sockets.
    fn open_services(&mut self) -> Result<(), pcbhash::Error> {
        for (port, service) in TCP_SERVICES {
            let slot = self.tcp_owners.next_slot();
            let pcb = self.tcp.attach(
                Family::Inet6,
                Cred::ROOT,
                TcpSock::Listener { slot, service },
            );
            pcb.bind(SocketAddr::from(([0u16; 8], port)))?;
            pcb.listen()?;
            self.tcp_owners.insert(pcb);
        }
        let echo = self.udp_socket(Family::Inet6, UdpService::Echo);
        echo.bind(SocketAddr::from(([0u16; 8], UDP_ECHO)))?;
        self.udp_owners.insert(echo);
        let bound = self.udp_socket(Family::Inet, UdpService::Tagged("bound"));
        bound.set_reuse_addr(true)?;
        bound.bind(SocketAddr::from(([0, 0, 0, 0], UDP_TAGGED)))?;
        self.udp_owners.insert(bound);
        let connected = self.udp_socket(Family::Inet, UdpService::Tagged("connected"));
        connected.set_reuse_addr(true)?;
        connected.bind(SocketAddr::new(STACK_V4.into(), UDP_TAGGED))?;
        connected.connect(UDP_PEER)?;
        self.udp_owners.insert(connected);
        Ok(())
    }

    fn udp_socket(&self, family: Family, service: UdpService) -> Pcb<UdpSock> {
        self.udp.attach(family, Cred::ROOT, UdpSock { service })
    }

    fn run(mut self, inbox: Receiver<Command>) -> Summary {
        let mut buf = vec![0u8; 65_536];
        let mut closing: Option<Instant> = None;
        let mut next_progress = self.config.progress.map(|every| Instant::now() + every);
        loop {
            self.link.wait(Duration::from_millis(5));
            for _ in 0..1024 {
                match self.link.recv(&mut buf) {
                    Ok(Some(n)) => self.input(&buf[..n]),
                    Ok(None) => break,
                    Err(e) => {
                        eprintln!("tunstack: reading the device: {e}");
                        break;
                    }
                }
            }
            loop {
                match inbox.try_recv() {
                    Ok(Command::Connect {
                        remote,
                        message,
                        report,
                    }) => self.connect(remote, message, report),
                    Ok(Command::Shutdown) | Err(mpsc::TryRecvError::Disconnected) => {
                        if closing.is_none() {
                            closing = Some(Instant::now());
                            self.close_services();
                        }
                        break;
                    }
                    Err(mpsc::TryRecvError::Empty) => break,
                }
            }
            self.expire_time_wait(Instant::now());
            if self.tcp.len() > self.peak.len {
                self.peak = self.tcp.stats();
            }
            if let (Some(at), Some(every)) = (next_progress, self.config.progress) {
                if Instant::now() >= at {
                    println!("{}", self.progress_line());
                    next_progress = Some(at + every);
                }
            }
            if let Some(since) = closing {
                if self.tcp_owners.len() == 0 {
                    break;
                }
                if since.elapsed() > self.config.two_msl + Duration::from_secs(5) {
                    self.abort_all();
                    break;
                }
            }
        }
        self.finish()
    }

    /// The (shortened) 2MSL.
    pub(crate) fn two_msl(&self) -> Duration {
        self.config.two_msl
    }

    fn progress_line(&self) -> String {
        let seconds = self.started.elapsed().as_secs_f64();
        self.counters
            .progress(seconds, self.tcp.len(), self.udp.len())
    }

    /// One packet from the device.
    fn input(&mut self, bytes: &[u8]) {
        self.counters.packets_in += 1;
        match wire::parse(bytes) {
            Packet::Tcp(segment) => self.tcp_input(&segment),
            Packet::Udp(datagram) => self.udp_input(&datagram),
            Packet::Other => self.counters.ignored += 1,
            Packet::Malformed => self.counters.malformed += 1,
        }
        self.transmit();
    }

    /// Sends the TCP segments queued in `out`.
    pub(crate) fn transmit(&mut self) {
        for segment in std::mem::take(&mut self.out) {
            if segment.control.rst {
                self.counters.rsts_sent += 1;
            }
            if let Some(packet) = wire::build_tcp(&segment) {
                self.emit(&packet);
            }
        }
    }

    /// Sends one UDP datagram.
    pub(crate) fn send_datagram(&mut self, datagram: &Datagram) {
        if let Some(packet) = wire::build_udp(datagram) {
            self.emit(&packet);
        }
    }

    fn emit(&mut self, packet: &[u8]) {
        match self.link.send(packet) {
            Ok(()) => self.counters.packets_out += 1,
            Err(e) => eprintln!("tunstack: writing the device: {e}"),
        }
    }

    /// The active open: a PCB connected by the table, which picks the
    /// ephemeral port and (through the builder's source-address hook) the
    /// local address.
    fn connect(
        &mut self,
        remote: SocketAddr,
        message: Vec<u8>,
        report: Sender<Result<Opened, String>>,
    ) {
        let slot = self.tcp_owners.next_slot();
        let family = if remote.is_ipv4() {
            Family::Inet
        } else {
            Family::Inet6
        };
        let app = App::Client {
            message,
            received: Vec::new(),
            report: None,
        };
        let conn = Mutex::new(Conn {
            tcb: Tcb::new(),
            app,
        });
        let pcb = self
            .tcp
            .attach(family, Cred::ROOT, TcpSock::Conn { slot, conn });
        let local = match pcb.connect(remote) {
            Ok(local) => local,
            Err(e) => {
                self.counters.error(e);
                let _ = report.send(Err(format!("connect to {remote}: {e}")));
                return;
            }
        };
        let guard = self.tcp.pin();
        if let Some(TcpSock::Conn { conn, .. }) = pcb.socket(&guard) {
            let mut conn = conn.lock().expect("connection lock");
            let iss = self.cookies.iss(local, remote, self.counters.opened as u32);
            let syn = conn.tcb.open(local, remote, iss);
            if let App::Client { report: slot, .. } = &mut conn.app {
                *slot = Some(report);
            }
            self.out.push(syn);
        }
        self.tcp_owners.insert(pcb);
        self.counters.opened += 1;
        self.transmit();
    }

    /// Drops the TIME_WAIT entries whose 2MSL is over.
    fn expire_time_wait(&mut self, now: Instant) {
        while let Some(&(deadline, slot)) = self.time_wait.front() {
            if deadline > now {
                break;
            }
            self.time_wait.pop_front();
            if self.tcp_owners.remove(slot).is_some() {
                self.counters.time_wait_expired += 1;
                self.counters.closed += 1;
            }
        }
    }

    /// Shutdown, first step: the listeners (found in the table) and the UDP
    /// sockets close; connections go on to their end.
    fn close_services(&mut self) {
        let guard = self.tcp.pin();
        let listeners: Vec<usize> = self
            .tcp
            .iter(&guard)
            .filter(|pcb| pcb.state() == State::Listen)
            .filter_map(|pcb| pcb.socket().map(TcpSock::slot))
            .collect();
        drop(guard);
        for slot in listeners {
            self.tcp_owners.remove(slot);
        }
        self.udp_owners.drain();
    }

    /// Shutdown past its deadline: every connection left is reset.
    fn abort_all(&mut self) {
        let guard = self.tcp.pin();
        for pcb in self.tcp.iter(&guard) {
            if let Some(TcpSock::Conn { conn, .. }) = pcb.socket() {
                conn.lock()
                    .expect("connection lock")
                    .tcb
                    .abort(&mut self.out);
            }
        }
        drop(guard);
        self.transmit();
        self.tcp_owners.drain();
        self.time_wait.clear();
    }

    fn finish(mut self) -> Summary {
        self.tcp_owners.drain();
        self.udp_owners.drain();
        self.tcp.flush();
        self.udp.flush();
        if self.config.progress.is_some() {
            println!("{}", self.progress_line());
        }
        Summary {
            counters: std::mem::take(&mut self.counters),
            tcp_peak: self.peak,
            left: (self.tcp.len(), self.udp.len()),
            two_msl: self.config.two_msl,
        }
    }
}
