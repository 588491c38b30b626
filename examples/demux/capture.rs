//! Reading capture files: classic pcap and pcapng, through `pcap-file`.
//!
//! The reader hands out records (link type, timestamp, bytes) and never
//! panics on a bad file:
//!
//! - a file whose header is not pcap or pcapng is **unreadable**;
//! - a record that cannot be read (cut short, absurd length, bad block) ends
//!   the file: the reader cannot know where the next record would start. It
//!   counts as one unparseable packet, and the file as **cut short**.
//!
//! Records are read without the library's per-packet length checks (a
//! captured length above the snapshot length, which tcpdump accepts, is not
//! an error here), since `pcap-file` 2.0 returns the same error forever for
//! such a record instead of moving past it.

use std::borrow::Cow;
use std::io::{Cursor, Read};
use std::time::Duration;

use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::TsResolution;

/// The link-layer framing of a record (the pcap `LINKTYPE_` value).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Link {
    /// `LINKTYPE_ETHERNET` (1): Ethernet II, possibly VLAN-tagged.
    Ethernet,
    /// `LINKTYPE_RAW` (101; 12 and 14 on some BSDs), `LINKTYPE_IPV4` (228),
    /// `LINKTYPE_IPV6` (229): the IP header comes first.
    RawIp,
    /// `LINKTYPE_LINUX_SLL` (113): Linux "cooked" capture, 16-byte header.
    LinuxSll,
    /// `LINKTYPE_LINUX_SLL2` (276): Linux "cooked" capture v2, 20-byte header.
    LinuxSll2,
    /// `LINKTYPE_NULL` (0) and `LINKTYPE_LOOP` (108): BSD loopback, a 4-byte
    /// address family, then IP.
    Loopback,
    /// Anything else.
    Unsupported(u32),
}

impl Link {
    /// The link type for a pcap `LINKTYPE_` value.
    pub fn from_linktype(value: u32) -> Link {
        match value {
            1 => Link::Ethernet,
            12 | 14 | 101 | 228 | 229 => Link::RawIp,
            113 => Link::LinuxSll,
            276 => Link::LinuxSll2,
            0 | 108 => Link::Loopback,
            other => Link::Unsupported(other),
        }
    }

    /// A short name for the report.
    pub fn name(self) -> String {
        match self {
            Link::Ethernet => "Ethernet".into(),
            Link::RawIp => "raw IP".into(),
            Link::LinuxSll => "Linux cooked".into(),
            Link::LinuxSll2 => "Linux cooked v2".into(),
            Link::Loopback => "BSD loopback".into(),
            Link::Unsupported(n) => format!("LINKTYPE {n}"),
        }
    }
}

/// One captured packet.
#[derive(Clone, Debug)]
pub struct Record<'a> {
    /// The framing of `data`.
    pub link: Link,
    /// When it was captured (since the epoch, as the file says).
    pub timestamp: Duration,
    /// The captured bytes (perhaps fewer than were on the wire).
    pub data: Cow<'a, [u8]>,
}

/// The file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Classic libpcap.
    Pcap,
    /// pcapng.
    PcapNg,
}

/// Why a file could not be opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreadable(pub String);

/// A record that could not be read; the file ends there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadRecord(pub String);

type Source<R> = std::io::Chain<Cursor<[u8; 4]>, R>;

enum Inner<R: Read> {
    Pcap {
        reader: PcapReader<Source<R>>,
        link: Link,
        nanos: bool,
    },
    PcapNg {
        reader: PcapNgReader<Source<R>>,
        /// The link types of the current section's interfaces, by id.
        interfaces: Vec<Link>,
    },
}

/// A capture being read.
pub struct Capture<R: Read> {
    inner: Inner<R>,
    /// Set after a bad record: nothing more is read.
    done: bool,
}

const PCAPNG_MAGIC: [u8; 4] = [0x0A, 0x0D, 0x0D, 0x0A];

impl<R: Read> Capture<R> {
    /// Opens a capture, telling pcap from pcapng by the first bytes.
    pub fn open(mut reader: R) -> Result<Capture<R>, Unreadable> {
        let mut magic = [0u8; 4];
        reader
            .read_exact(&mut magic)
            .map_err(|e| Unreadable(format!("no capture header: {e}")))?;
        let source = Cursor::new(magic).chain(reader);
        let inner = if magic == PCAPNG_MAGIC {
            let reader = PcapNgReader::new(source)
                .map_err(|e| Unreadable(format!("bad pcapng section header: {e}")))?;
            Inner::PcapNg {
                reader,
                interfaces: Vec::new(),
            }
        } else {
            let reader = PcapReader::new(source)
                .map_err(|e| Unreadable(format!("not a pcap or pcapng file: {e}")))?;
            let header = reader.header();
            Inner::Pcap {
                link: Link::from_linktype(u32::from(header.datalink)),
                nanos: header.ts_resolution == TsResolution::NanoSecond,
                reader,
            }
        };
        Ok(Capture { inner, done: false })
    }

    /// The file's format.
    pub fn format(&self) -> Format {
        match self.inner {
            Inner::Pcap { .. } => Format::Pcap,
            Inner::PcapNg { .. } => Format::PcapNg,
        }
    }

    /// The link type of a classic pcap file (pcapng has one per interface).
    pub fn link(&self) -> Option<Link> {
        match self.inner {
            Inner::Pcap { link, .. } => Some(link),
            Inner::PcapNg { .. } => None,
        }
    }

    /// The next record; `None` at the end of the file and after a bad record.
    pub fn next_record(&mut self) -> Option<Result<Record<'_>, BadRecord>> {
        if self.done {
            return None;
        }
        let next = match &mut self.inner {
            Inner::Pcap {
                reader,
                link,
                nanos,
            } => next_pcap(reader, *link, *nanos),
            Inner::PcapNg { reader, interfaces } => next_pcapng(reader, interfaces),
        };
        if matches!(next, Some(Err(_))) {
            self.done = true;
        }
        next
    }
}

fn next_pcap<R: Read>(
    reader: &mut PcapReader<R>,
    link: Link,
    nanos: bool,
) -> Option<Result<Record<'_>, BadRecord>> {
    let packet = match reader.next_raw_packet()? {
        Ok(packet) => packet,
        Err(error) => return Some(Err(BadRecord(error.to_string()))),
    };
    let frac = u64::from(packet.ts_frac);
    let nanos = if nanos {
        frac
    } else {
        frac.saturating_mul(1000)
    };
    let timestamp =
        Duration::from_secs(u64::from(packet.ts_sec)).saturating_add(Duration::from_nanos(nanos));
    Some(Ok(Record {
        link,
        timestamp,
        data: packet.data,
    }))
}

/// The next packet block of a pcapng file, skipping the other blocks.
///
/// The packet's bytes are copied out of the reader's buffer, as a block
/// borrowed in one turn of the loop could not be returned from it.
fn next_pcapng<R: Read>(
    reader: &mut PcapNgReader<R>,
    interfaces: &mut Vec<Link>,
) -> Option<Result<Record<'static>, BadRecord>> {
    let link_of = |interfaces: &[Link], id: u64| {
        usize::try_from(id)
            .ok()
            .and_then(|id| interfaces.get(id).copied())
            .unwrap_or(Link::Unsupported(u32::MAX))
    };
    loop {
        let block = match reader.next_block()? {
            Ok(block) => block,
            Err(error) => return Some(Err(BadRecord(error.to_string()))),
        };
        let (link, timestamp, data) = match block {
            Block::SectionHeader(_) => {
                interfaces.clear();
                continue;
            }
            Block::InterfaceDescription(interface) => {
                interfaces.push(Link::from_linktype(u32::from(interface.linktype)));
                continue;
            }
            Block::EnhancedPacket(packet) => (
                link_of(interfaces, u64::from(packet.interface_id)),
                packet.timestamp,
                packet.data,
            ),
            Block::SimplePacket(packet) => (link_of(interfaces, 0), Duration::ZERO, packet.data),
            Block::Packet(packet) => (
                link_of(interfaces, u64::from(packet.interface_id)),
                Duration::from_micros(packet.timestamp),
                packet.data,
            ),
            _ => continue,
        };
        return Some(Ok(Record {
            link,
            timestamp,
            data: Cow::Owned(data.into_owned()),
        }));
    }
}
