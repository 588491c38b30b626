//! What the stack counts while it runs, and the summary it prints: the
//! progress line and the report at exit.

use std::collections::BTreeMap;
use std::fmt;
use std::io;

use pcbhash::Stats;

/// What the TCP table's lookup answered for a segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpLookups {
    /// A connection (exact 4-tuple).
    pub connection: u64,
    /// A listener (wildcard stage).
    pub listener: u64,
    /// A TIME_WAIT tuple (no socket behind it).
    pub time_wait: u64,
    /// Nothing: the segment is answered with a RST.
    pub miss: u64,
}

/// What the UDP table answered for a datagram.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpLookups {
    /// A socket, by `lookup_on` (unicast).
    pub unicast: u64,
    /// Broadcast datagrams, handed out by `deliver`.
    pub broadcast: u64,
    /// Receivers `deliver` gave for them.
    pub broadcast_receivers: u64,
    /// No socket: dropped.
    pub miss: u64,
}

/// The stack's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Packets read from the device.
    pub packets_in: u64,
    /// Packets written to it.
    pub packets_out: u64,
    /// Packets that were not IP, TCP or UDP the stack takes (ICMPv6, ...).
    pub ignored: u64,
    /// Malformed packets.
    pub malformed: u64,
    /// Connections accepted (passive opens).
    pub accepted: u64,
    /// Connections opened (active opens).
    pub opened: u64,
    /// Connections that ended (closed, reset or out of TIME_WAIT).
    pub closed: u64,
    /// Connections the peer reset.
    pub reset_by_peer: u64,
    /// TCP lookups by outcome.
    pub tcp: TcpLookups,
    /// UDP lookups by outcome.
    pub udp: UdpLookups,
    /// SYN-ACKs sent (each with a SYN cookie).
    pub syn_acks: u64,
    /// Handshake ACKs whose cookie did not check out.
    pub bad_cookies: u64,
    /// RSTs sent.
    pub rsts_sent: u64,
    /// Connections that entered TIME_WAIT.
    pub time_wait_entered: u64,
    /// TIME_WAIT entries whose 2MSL ran out.
    pub time_wait_expired: u64,
    /// SYNs that found a TIME_WAIT tuple (dropped; the peer sends again).
    pub syn_to_time_wait: u64,
    /// Stream bytes received and sent.
    pub tcp_bytes: (u64, u64),
    /// UDP datagrams answered.
    pub udp_answered: u64,
    /// Table errors by errno.
    pub errors: BTreeMap<i32, u64>,
}

impl Counters {
    /// Counts a table error.
    pub fn error(&mut self, error: pcbhash::Error) {
        *self.errors.entry(error.errno()).or_default() += 1;
    }

    /// The one-line progress report.
    pub fn progress(&self, seconds: f64, tcp_len: usize, udp_len: usize) -> String {
        format!(
            "tunstack {seconds:6.1}s: packets in {} out {}, accepted {}, opened {}, closed {}, \
             RSTs {}, TIME_WAIT {}, TCP table {tcp_len}, UDP table {udp_len}",
            self.packets_in,
            self.packets_out,
            self.accepted,
            self.opened,
            self.closed,
            self.rsts_sent,
            self.time_wait_entered - self.time_wait_expired,
        )
    }
}

/// What the stack reports when it stops.
#[derive(Clone, Debug)]
pub struct Summary {
    /// The counters.
    pub counters: Counters,
    /// The TCP table's figures at the busiest moment seen by the progress
    /// reports (the most PCBs).
    pub tcp_peak: Stats,
    /// The tables' sizes after shutdown (PCBs holding a port), TCP and UDP.
    pub left: (usize, usize),
    /// The 2MSL the stack used.
    pub two_msl: std::time::Duration,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counters;
        writeln!(f, "tunstack summary")?;
        writeln!(
            f,
            "  packets        in {}, out {}, ignored {}, malformed {}",
            c.packets_in, c.packets_out, c.ignored, c.malformed
        )?;
        writeln!(
            f,
            "  connections    accepted {}, opened {}, closed {}, reset by peer {}",
            c.accepted, c.opened, c.closed, c.reset_by_peer
        )?;
        writeln!(
            f,
            "  TCP lookups    connection {}, listener {}, TIME_WAIT {}, miss {}",
            c.tcp.connection, c.tcp.listener, c.tcp.time_wait, c.tcp.miss
        )?;
        writeln!(
            f,
            "  UDP lookups    unicast {}, broadcast {} (to {} receivers), miss {}; answered {}",
            c.udp.unicast, c.udp.broadcast, c.udp.broadcast_receivers, c.udp.miss, c.udp_answered
        )?;
        writeln!(
            f,
            "  handshakes     SYN-ACKs {}, bad cookies {}, SYNs to TIME_WAIT {}",
            c.syn_acks, c.bad_cookies, c.syn_to_time_wait
        )?;
        writeln!(f, "  RSTs sent      {}", c.rsts_sent)?;
        writeln!(
            f,
            "  TIME_WAIT      entered {}, expired {} (2MSL shortened to {:?}; a kernel waits 60 s)",
            c.time_wait_entered, c.time_wait_expired, self.two_msl
        )?;
        writeln!(
            f,
            "  stream bytes   in {}, out {}",
            c.tcp_bytes.0, c.tcp_bytes.1
        )?;
        let p = &self.tcp_peak;
        writeln!(
            f,
            "  TCP table peak {} PCBs: {} listening, {} connected, {} TIME_WAIT; exact index {} \
             entries in {} buckets, longest probe {}",
            p.len,
            p.listen,
            p.connected,
            p.time_wait,
            p.exact.entries,
            p.exact.buckets,
            p.exact.longest_chain
        )?;
        writeln!(
            f,
            "  after shutdown TCP table {} PCBs, UDP table {}",
            self.left.0, self.left.1
        )?;
        if c.errors.is_empty() {
            writeln!(f, "  table errors   none")?;
        }
        for (errno, count) in &c.errors {
            let name = io::Error::from_raw_os_error(*errno);
            writeln!(f, "  table errors   errno {errno} ({name}): {count}")?;
        }
        Ok(())
    }
}
