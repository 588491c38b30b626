//! The operations the fuzz targets and the replay test generate.

use arbitrary::{Arbitrary, Unstructured};

/// Which kernel's rules the table follows.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicySel {
    /// `Policy::FreeBsd`.
    FreeBsd,
    /// `Policy::Linux`.
    Linux,
}

/// Linux `net.ipv4.tcp_tw_reuse`, the table's `Builder::tcp_tw_reuse`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TwReuseSel {
    /// `TwReuse::Off`.
    #[default]
    Off,
    /// `TwReuse::On`.
    On,
    /// `TwReuse::Loopback`.
    Loopback,
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
/// addresses and ports index [`crate::ADDRS`] and [`crate::PORTS`], devices
/// [`crate::DEVICES`].
///
/// The byte format is `arbitrary`'s for an enum (a `u32` scaled to the
/// number of kinds, then the fields in order), written out by hand so that
/// inputs of the format before devices (eleven kinds, see [`LEGACY`]) still
/// decode to the operations they always meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    /// `SO_BINDTODEVICE` (Linux) / `SO_SETFIB` (FreeBSD).
    BindDevice {
        /// Which handle.
        pcb: u8,
        /// Device index.
        device: u8,
    },
    /// Packet demultiplexing of a packet that arrived on a device
    /// (`lookup_on`; `lookup` where the device is unknown), aimed as
    /// [`Op::Lookup`] aims.
    LookupOn {
        /// Local address index.
        local: u8,
        /// Local port index.
        lport: u8,
        /// Remote address index.
        remote: u8,
        /// Remote port index.
        rport: u8,
        /// Device index.
        device: u8,
    },
    /// Multicast / broadcast delivery (`deliver`) of a UDP datagram, aimed
    /// as [`Op::Lookup`] aims; the receivers in order.
    Deliver {
        /// Local (group or broadcast) address index.
        local: u8,
        /// Local port index.
        lport: u8,
        /// Remote address index.
        remote: u8,
        /// Remote port index.
        rport: u8,
        /// Device index.
        device: u8,
    },
    /// `IP_BIND_ADDRESS_NO_PORT` (Linux; FreeBSD refuses it).
    SetBindNoPort {
        /// Which handle.
        pcb: u8,
        /// On or off.
        on: bool,
    },
    /// `IP_LOCAL_PORT_RANGE` (Linux) / `IP_PORTRANGE` (FreeBSD).
    SetPortRange {
        /// Which handle.
        pcb: u8,
        /// First port, an index of [`crate::RANGE_ENDS`].
        first: u8,
        /// Last port, an index of [`crate::RANGE_ENDS`].
        last: u8,
        /// Unset the option (`None`) rather than set the range.
        unset: bool,
    },
    /// The stack marks a TIME_WAIT PCB reusable (`allow_tw_reuse`).
    AllowTwReuse {
        /// Which handle.
        pcb: u8,
    },
}

/// The prefix that marks an input of the format before devices and
/// delivery: eleven operation kinds, and packets of the `lookup` target
/// without a device byte. Committed inputs of that time carry it.
pub const LEGACY: &[u8] = b"pcbhash-fuzz-v0:";

/// The prefix that marks an input of the format before the client port
/// options: fourteen operation kinds, and a policy tag of three choices.
/// Committed inputs of that time carry it.
pub const BEFORE_PORT_OPTIONS: &[u8] = b"pcbhash-fuzz-v1:";

/// Which byte format an input is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Legacy,
    Devices,
    Current,
}

/// The table's configuration an input picks.
struct Config {
    policy: PolicySel,
    scoped_fibs: bool,
    tw_reuse: TwReuseSel,
}

impl Format {
    /// The format of `data`, and the bytes after its marker.
    fn of(data: &[u8]) -> (Format, &[u8]) {
        if let Some(rest) = data.strip_prefix(LEGACY) {
            return (Format::Legacy, rest);
        }
        match data.strip_prefix(BEFORE_PORT_OPTIONS) {
            Some(rest) => (Format::Devices, rest),
            None => (Format::Current, data),
        }
    }

    /// The table's configuration: a tag scaled to five choices (FreeBSD,
    /// Linux, FreeBSD with `bind_all_fibs` off, Linux with `tcp_tw_reuse`
    /// on, Linux with it on loopback), to the first three before the port
    /// options, or to the two policies in the legacy format.
    fn config(self, u: &mut Unstructured<'_>) -> arbitrary::Result<Config> {
        let (policy, scoped_fibs, tw_reuse) = match self {
            Format::Legacy => (PolicySel::arbitrary(u)?, false, TwReuseSel::Off),
            _ => match (u64::from(u32::arbitrary(u)?) * self.configs()) >> 32 {
                0 => (PolicySel::FreeBsd, false, TwReuseSel::Off),
                1 => (PolicySel::Linux, false, TwReuseSel::Off),
                2 => (PolicySel::FreeBsd, true, TwReuseSel::Off),
                3 => (PolicySel::Linux, false, TwReuseSel::On),
                _ => (PolicySel::Linux, false, TwReuseSel::Loopback),
            },
        };
        Ok(Config {
            policy,
            scoped_fibs,
            tw_reuse,
        })
    }

    fn configs(self) -> u64 {
        match self {
            Format::Current => 5,
            _ => 3,
        }
    }

    /// How many operation kinds the format has.
    fn kinds(self) -> u64 {
        match self {
            Format::Legacy => 11,
            Format::Devices => 14,
            Format::Current => 17,
        }
    }
}

impl Op {
    fn decode(u: &mut Unstructured<'_>, format: Format) -> arbitrary::Result<Op> {
        let kind = (u64::from(u32::arbitrary(u)?) * format.kinds()) >> 32;
        Ok(match kind {
            0 => Op::Attach {
                v6: bool::arbitrary(u)?,
                user: User::arbitrary(u)?,
            },
            1 => Op::SetOpt {
                pcb: u8::arbitrary(u)?,
                opt: Opt::arbitrary(u)?,
                on: bool::arbitrary(u)?,
            },
            2 => Op::Bind {
                pcb: u8::arbitrary(u)?,
                addr: u8::arbitrary(u)?,
                port: u8::arbitrary(u)?,
            },
            3 => Op::Listen {
                pcb: u8::arbitrary(u)?,
            },
            4 => Op::Connect {
                pcb: u8::arbitrary(u)?,
                addr: u8::arbitrary(u)?,
                port: u8::arbitrary(u)?,
            },
            5 => Op::Accept {
                pcb: u8::arbitrary(u)?,
                local: u8::arbitrary(u)?,
                remote: u8::arbitrary(u)?,
                rport: u8::arbitrary(u)?,
            },
            6 => Op::Disconnect {
                pcb: u8::arbitrary(u)?,
            },
            7 => Op::TimeWait {
                pcb: u8::arbitrary(u)?,
            },
            8 => Op::Close {
                pcb: u8::arbitrary(u)?,
            },
            9 => Op::Lookup {
                local: u8::arbitrary(u)?,
                lport: u8::arbitrary(u)?,
                remote: u8::arbitrary(u)?,
                rport: u8::arbitrary(u)?,
            },
            10 => Op::LookupLocal {
                addr: u8::arbitrary(u)?,
                port: u8::arbitrary(u)?,
                wildcard: bool::arbitrary(u)?,
            },
            11 => Op::BindDevice {
                pcb: u8::arbitrary(u)?,
                device: u8::arbitrary(u)?,
            },
            12 => Op::LookupOn {
                local: u8::arbitrary(u)?,
                lport: u8::arbitrary(u)?,
                remote: u8::arbitrary(u)?,
                rport: u8::arbitrary(u)?,
                device: u8::arbitrary(u)?,
            },
            13 => Op::Deliver {
                local: u8::arbitrary(u)?,
                lport: u8::arbitrary(u)?,
                remote: u8::arbitrary(u)?,
                rport: u8::arbitrary(u)?,
                device: u8::arbitrary(u)?,
            },
            14 => Op::SetBindNoPort {
                pcb: u8::arbitrary(u)?,
                on: bool::arbitrary(u)?,
            },
            15 => Op::SetPortRange {
                pcb: u8::arbitrary(u)?,
                first: u8::arbitrary(u)?,
                last: u8::arbitrary(u)?,
                unset: bool::arbitrary(u)?,
            },
            _ => Op::AllowTwReuse {
                pcb: u8::arbitrary(u)?,
            },
        })
    }
}

impl<'a> Arbitrary<'a> for Op {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Op::decode(u, Format::Current)
    }
}

/// A whole test case: the table's configuration and the operations.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// The policy.
    pub policy: PolicySel,
    /// FreeBSD: `bind_all_fibs` off, so FIBs scope binds and lookups.
    #[arbitrary(default)]
    pub scoped_fibs: bool,
    /// Linux: `tcp_tw_reuse`.
    #[arbitrary(default)]
    pub tw_reuse: TwReuseSel,
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
    /// The device the packet arrived on (an index of [`crate::DEVICES`]);
    /// a byte of its own after the fields above, absent in [`LEGACY`]
    /// inputs.
    #[arbitrary(default)]
    pub device: u8,
    /// Hand the datagram to `deliver` rather than looking it up; from the
    /// same byte as `device`.
    #[arbitrary(default)]
    pub deliver: bool,
}

impl Packet {
    fn decode(u: &mut Unstructured<'_>, format: Format) -> arbitrary::Result<Packet> {
        let mut p = Packet::arbitrary(u)?;
        if format != Format::Legacy {
            let extra = u8::arbitrary(u)?;
            p.device = extra >> 1;
            p.deliver = extra & 1 == 1;
        }
        Ok(p)
    }
}

/// The `lookup` target's input: a table built through the API, then packets.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct LookupCase {
    /// The policy.
    pub policy: PolicySel,
    /// FreeBSD: `bind_all_fibs` off.
    #[arbitrary(default)]
    pub scoped_fibs: bool,
    /// Linux: `tcp_tw_reuse`.
    #[arbitrary(default)]
    pub tw_reuse: TwReuseSel,
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
                Op::Lookup { .. }
                    | Op::LookupLocal { .. }
                    | Op::LookupOn { .. }
                    | Op::Deliver { .. }
                    | Op::Close { .. }
            )
        });
        let packets = self.packets.iter().map(|p| match p.local_query {
            Some(wildcard) => Op::LookupLocal {
                addr: p.local,
                port: p.lport,
                wildcard,
            },
            None if p.deliver => Op::Deliver {
                local: p.local,
                lport: p.lport,
                remote: p.remote,
                rport: p.rport,
                device: p.device,
            },
            None if p.device == 0 => Op::Lookup {
                local: p.local,
                lport: p.lport,
                remote: p.remote,
                rport: p.rport,
            },
            None => Op::LookupOn {
                local: p.local,
                lport: p.lport,
                remote: p.remote,
                rport: p.rport,
                device: p.device,
            },
        });
        Scenario {
            policy: self.policy,
            scoped_fibs: self.scoped_fibs,
            tw_reuse: self.tw_reuse,
            protocol: self.protocol,
            ops: build.take(48).chain(packets.take(48)).collect(),
        }
    }
}

impl Scenario {
    /// Decodes a scenario from fuzzer bytes: the policy, the protocol, then
    /// operations until the bytes run out (at most `max`). Bytes that start
    /// with [`LEGACY`] decode in the format before devices, those that start
    /// with [`BEFORE_PORT_OPTIONS`] in the format before the port options.
    pub fn decode(data: &[u8], max: usize) -> Option<Scenario> {
        let (format, data) = Format::of(data);
        let mut u = arbitrary::Unstructured::new(data);
        let Config {
            policy,
            scoped_fibs,
            tw_reuse,
        } = format.config(&mut u).ok()?;
        let protocol = ProtoSel::arbitrary(&mut u).ok()?;
        let mut ops = Vec::new();
        while !u.is_empty() && ops.len() < max {
            match Op::decode(&mut u, format) {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        Some(Scenario {
            policy,
            scoped_fibs,
            tw_reuse,
            protocol,
            ops,
        })
    }
}

impl LookupCase {
    /// Decodes a case: policy, protocol, a count of build operations, the
    /// operations, then packets until the bytes run out. Bytes that start
    /// with [`LEGACY`] decode in the format before devices, those that start
    /// with [`BEFORE_PORT_OPTIONS`] in the format before the port options.
    pub fn decode(data: &[u8]) -> Option<LookupCase> {
        let (format, data) = Format::of(data);
        let mut u = arbitrary::Unstructured::new(data);
        let Config {
            policy,
            scoped_fibs,
            tw_reuse,
        } = format.config(&mut u).ok()?;
        let protocol = ProtoSel::arbitrary(&mut u).ok()?;
        let count = u8::arbitrary(&mut u).ok()? % 48;
        let mut build = Vec::new();
        while build.len() < usize::from(count) && !u.is_empty() {
            build.push(Op::decode(&mut u, format).ok()?);
        }
        let mut packets = Vec::new();
        while !u.is_empty() && packets.len() < 48 {
            match Packet::decode(&mut u, format) {
                Ok(p) => packets.push(p),
                Err(_) => break,
            }
        }
        Some(LookupCase {
            policy,
            scoped_fibs,
            tw_reuse,
            protocol,
            build,
            packets,
        })
    }
}
