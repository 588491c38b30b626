//! The operations the fuzz targets and the replay test generate.

use arbitrary::Arbitrary;

/// Which kernel's rules the table follows.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicySel {
    /// `Policy::FreeBsd`.
    FreeBsd,
    /// `Policy::Linux`.
    Linux,
}

/// Which protocol the table holds.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtoSel {
    /// `Protocol::Tcp`.
    Tcp,
    /// `Protocol::Udp`.
    Udp,
}

/// The owner of a new PCB.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum User {
    /// uid 0, privileged.
    Root,
    /// uid 1000, unprivileged.
    Alice,
    /// uid 1001, unprivileged.
    Bob,
}

impl User {
    /// The credential.
    pub fn cred(self) -> pcbhash::Cred {
        match self {
            User::Root => pcbhash::Cred::ROOT,
            User::Alice => pcbhash::Cred::user(1000),
            User::Bob => pcbhash::Cred::user(1001),
        }
    }
}

/// A socket option.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opt {
    /// `SO_REUSEADDR`.
    ReuseAddr,
    /// `SO_REUSEPORT`.
    ReusePort,
    /// `SO_REUSEPORT_LB`.
    ReusePortLb,
    /// `IPV6_V6ONLY`.
    V6Only,
}

/// One step. `pcb` picks one of the live handles (modulo their number);
/// addresses and ports index [`crate::ADDRS`] and [`crate::PORTS`].
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `socket(2)`: a new PCB.
    Attach {
        /// `Family::Inet6` rather than `Family::Inet`.
        v6: bool,
        /// The owner.
        user: User,
    },
    /// `setsockopt(2)`.
    SetOpt {
        /// Which handle.
        pcb: u8,
        /// Which option.
        opt: Opt,
        /// On or off.
        on: bool,
    },
    /// `bind(2)`.
    Bind {
        /// Which handle.
        pcb: u8,
        /// Address index.
        addr: u8,
        /// Port index.
        port: u8,
    },
    /// `listen(2)`.
    Listen {
        /// Which handle.
        pcb: u8,
    },
    /// `connect(2)`.
    Connect {
        /// Which handle.
        pcb: u8,
        /// Peer address index.
        addr: u8,
        /// Peer port index.
        port: u8,
    },
    /// A completed handshake on a listener.
    Accept {
        /// Which handle (the listener).
        pcb: u8,
        /// Local address index (the packet's destination).
        local: u8,
        /// Remote address index.
        remote: u8,
        /// Remote port index.
        rport: u8,
    },
    /// `connect(AF_UNSPEC)`.
    Disconnect {
        /// Which handle.
        pcb: u8,
    },
    /// Enter TIME_WAIT.
    TimeWait {
        /// Which handle.
        pcb: u8,
    },
    /// `close(2)`: drops the handle.
    Close {
        /// Which handle.
        pcb: u8,
    },
    /// Packet demultiplexing. The local port is the port of a live PCB when
    /// `lport` is odd and there is one, so that lookups hit often.
    Lookup {
        /// Local address index.
        local: u8,
        /// Local port index.
        lport: u8,
        /// Remote address index.
        remote: u8,
        /// Remote port index.
        rport: u8,
    },
    /// `in_pcblookup_local()`.
    LookupLocal {
        /// Address index.
        addr: u8,
        /// Port index.
        port: u8,
        /// Best fit over wildcards rather than an exact unconnected match.
        wildcard: bool,
    },
}

/// A whole test case: the table's configuration and the operations.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// The policy.
    pub policy: PolicySel,
    /// The protocol.
    pub protocol: ProtoSel,
    /// The operations, in order.
    pub ops: Vec<Op>,
}

/// A packet (or a local-address query) of the `lookup` target.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Local address index (the packet's destination).
    pub local: u8,
    /// Local port index.
    pub lport: u8,
    /// Remote address index.
    pub remote: u8,
    /// Remote port index.
    pub rport: u8,
    /// Ask `lookup_local` instead, with this wildcard flag.
    pub local_query: Option<bool>,
}

/// The `lookup` target's input: a table built through the API, then packets.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct LookupCase {
    /// The policy.
    pub policy: PolicySel,
    /// The protocol.
    pub protocol: ProtoSel,
    /// Operations that build the table (lookups and closes among them are
    /// dropped).
    pub build: Vec<Op>,
    /// The packets.
    pub packets: Vec<Packet>,
}

impl LookupCase {
    /// The equivalent operation list.
    pub fn scenario(&self) -> Scenario {
        let build = self.build.iter().copied().filter(|op| {
            !matches!(
                op,
                Op::Lookup { .. } | Op::LookupLocal { .. } | Op::Close { .. }
            )
        });
        let packets = self.packets.iter().map(|p| match p.local_query {
            Some(wildcard) => Op::LookupLocal {
                addr: p.local,
                port: p.lport,
                wildcard,
            },
            None => Op::Lookup {
                local: p.local,
                lport: p.lport,
                remote: p.remote,
                rport: p.rport,
            },
        });
        Scenario {
            policy: self.policy,
            protocol: self.protocol,
            ops: build.take(48).chain(packets.take(48)).collect(),
        }
    }
}

impl Scenario {
    /// Decodes a scenario from fuzzer bytes: the policy, the protocol, then
    /// operations until the bytes run out (at most `max`).
    pub fn decode(data: &[u8], max: usize) -> Option<Scenario> {
        let mut u = arbitrary::Unstructured::new(data);
        let policy = PolicySel::arbitrary(&mut u).ok()?;
        let protocol = ProtoSel::arbitrary(&mut u).ok()?;
        let mut ops = Vec::new();
        while !u.is_empty() && ops.len() < max {
            match Op::arbitrary(&mut u) {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        Some(Scenario {
            policy,
            protocol,
            ops,
        })
    }
}

impl LookupCase {
    /// Decodes a case: policy, protocol, a count of build operations, the
    /// operations, then packets until the bytes run out.
    pub fn decode(data: &[u8]) -> Option<LookupCase> {
        let mut u = arbitrary::Unstructured::new(data);
        let policy = PolicySel::arbitrary(&mut u).ok()?;
        let protocol = ProtoSel::arbitrary(&mut u).ok()?;
        let count = u8::arbitrary(&mut u).ok()? % 48;
        let mut build = Vec::new();
        while build.len() < usize::from(count) && !u.is_empty() {
            build.push(Op::arbitrary(&mut u).ok()?);
        }
        let mut packets = Vec::new();
        while !u.is_empty() && packets.len() < 48 {
            match Packet::arbitrary(&mut u) {
                Ok(p) => packets.push(p),
                Err(_) => break,
            }
        }
        Some(LookupCase {
            policy,
            protocol,
            build,
            packets,
        })
    }
}
