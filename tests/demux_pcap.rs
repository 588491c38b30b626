//! The `demux` example's capture replay: hand-made captures with known
//! answers, bad files, and (when `../shared/data/pcap` is there) every real
//! capture in it, under both policies.

#![allow(dead_code)]

#[path = "../examples/demux/capture.rs"]
mod capture;
#[path = "../examples/demux/control.rs"]
mod control;
#[path = "../examples/demux/errors.rs"]
mod errors;
#[path = "../examples/demux/flows.rs"]
mod flows;
#[path = "../examples/demux/groupcast.rs"]
mod groupcast;
#[path = "../examples/demux/listeners.rs"]
mod listeners;
#[path = "../examples/demux/outcome.rs"]
mod outcome;
#[path = "../examples/demux/packet.rs"]
mod packet;
#[path = "../examples/demux/replay.rs"]
mod replay;
#[path = "../examples/demux/report.rs"]
mod report;
#[path = "../examples/demux/rng.rs"]
mod rng;
#[path = "../examples/demux/rx.rs"]
mod rx;
#[path = "../examples/demux/socket.rs"]
mod socket;
#[path = "../examples/demux/steering.rs"]
mod steering;
#[path = "../examples/demux/workload.rs"]
mod workload;

use std::borrow::Cow;
use std::fs::{self, File};
use std::io::BufReader;
use std::path::Path;
use std::time::Duration;

use etherparse::{PacketBuilder, VlanId};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::DataLink;
use pcbhash::Policy;

use outcome::Outcomes;
use replay::{Actions, Replayer};

const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 0xA];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 0xB];
const A: [u8; 4] = [192, 0, 2, 10];
const B: [u8; 4] = [198, 51, 100, 20];
const C: [u8; 4] = [203, 0, 113, 30];
const A6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xa];
const B6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xb];

/// An Ethernet frame with an IPv4 TCP segment; `flags` is a string of
/// S(YN), A(CK), F(IN), R(ST).
fn tcp4(src: ([u8; 4], u16), dst: ([u8; 4], u16), flags: &str) -> Vec<u8> {
    let mut step = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(src.0, dst.0, 64)
        .tcp(src.1, dst.1, 1000, 4096);
    for flag in flags.chars() {
        step = match flag {
            'S' => step.syn(),
            'A' => step.ack(1),
            'F' => step.fin(),
            'R' => step.rst(),
            _ => panic!("unknown flag {flag}"),
        };
    }
    let mut frame = Vec::new();
    step.write(&mut frame, b"payload").unwrap();
    frame
}

/// The same with IPv6, in a VLAN-tagged frame.
fn tcp6_vlan(src: ([u8; 16], u16), dst: ([u8; 16], u16), flags: &str) -> Vec<u8> {
    let mut step = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .single_vlan(VlanId::try_new(100).unwrap())
        .ipv6(src.0, dst.0, 64)
        .tcp(src.1, dst.1, 1000, 4096);
    for flag in flags.chars() {
        step = match flag {
            'S' => step.syn(),
            'A' => step.ack(1),
            _ => panic!("unknown flag {flag}"),
        };
    }
    let mut frame = Vec::new();
    step.write(&mut frame, &[]).unwrap();
    frame
}

fn udp4(src: ([u8; 4], u16), dst: ([u8; 4], u16)) -> Vec<u8> {
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(src.0, dst.0, 64)
        .udp(src.1, dst.1)
        .write(&mut frame, b"query")
        .unwrap();
    frame
}

/// A conversation with one known answer per packet. See the comments for
/// what each packet must find and do.
fn conversation() -> Vec<Vec<u8>> {
    let mut icmp = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(A, B, 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut icmp, &[])
        .unwrap();
    let mut bad_ihl = tcp4((A, 1), (B, 2), "A");
    bad_ihl[14] = 0x44; // IHL 4: shorter than an IPv4 header
    let short_tcp = tcp4((A, 1), (B, 2), "A")[..14 + 20 + 8].to_vec();
    let mut lldp = vec![0u8; 60];
    lldp[12..14].copy_from_slice(&[0x88, 0xCC]);
    vec![
        // 1: SYN. The client's PCB connects; the server has nothing: miss,
        // then a listener on 0.0.0.0:80 opens on demand and accepts.
        tcp4((A, 40000), (B, 80), "S"),
        // 2-4: SYN/ACK, ACK, data: exact hits on the two ends.
        tcp4((B, 80), (A, 40000), "SA"),
        tcp4((A, 40000), (B, 80), "A"),
        tcp4((A, 40000), (B, 80), "A"),
        // 5: the client closes first; 6: the server's FIN puts the client in
        // TIME_WAIT; 7: the last ACK closes the server's end.
        tcp4((A, 40000), (B, 80), "FA"),
        tcp4((B, 80), (A, 40000), "FA"),
        tcp4((A, 40000), (B, 80), "A"),
        // 8: a retransmitted FIN finds the TIME_WAIT PCB.
        tcp4((B, 80), (A, 40000), "FA"),
        // 9: another client's SYN finds the listener (wildcard) and is
        // accepted; 10: a RST closes both ends; 11: a late ACK finds the
        // listener again.
        tcp4((C, 50000), (B, 80), "S"),
        tcp4((B, 80), (C, 50000), "RA"),
        tcp4((C, 50000), (B, 80), "A"),
        // 12: an ACK to a port nobody has: miss, and no listener for it.
        tcp4((C, 50001), (B, 9999), "A"),
        // 13: a DNS query: the client socket connects, the server misses and
        // a UDP server binds 0.0.0.0:53; 14: the answer finds the client
        // (exact); 15: the next query finds the server (wildcard).
        udp4((A, 5353), (B, 53)),
        udp4((B, 53), (A, 5353)),
        udp4((A, 5353), (B, 53)),
        // 16-17: IPv6 in a VLAN tag: miss and a [::]:443 listener, then an
        // exact hit.
        tcp6_vlan((A6, 41000), (B6, 443), "S"),
        tcp6_vlan((B6, 443), (A6, 41000), "SA"),
        // 18-20: unparseable: a runt frame, a bad IPv4 header, a cut TCP header.
        vec![0u8; 10],
        bad_ihl,
        short_tcp,
        // 21: not IP; 22: not TCP or UDP.
        lldp,
        icmp,
    ]
}

fn pcap(datalink: DataLink, frames: &[Vec<u8>]) -> Vec<u8> {
    let header = PcapHeader {
        datalink,
        ..PcapHeader::default()
    };
    let mut writer = PcapWriter::with_header(Vec::new(), header).unwrap();
    for (i, frame) in frames.iter().enumerate() {
        let at = Duration::from_millis(1_700_000_000_000 + i as u64);
        writer
            .write_packet(&PcapPacket::new(at, frame.len() as u32, frame))
            .unwrap();
    }
    writer.into_writer()
}

fn pcapng(datalink: DataLink, frames: &[Vec<u8>]) -> Vec<u8> {
    let mut writer = PcapNgWriter::new(Vec::new()).unwrap();
    writer
        .write_pcapng_block(InterfaceDescriptionBlock {
            linktype: datalink,
            snaplen: 65535,
            options: vec![],
        })
        .unwrap();
    for (i, frame) in frames.iter().enumerate() {
        writer
            .write_pcapng_block(EnhancedPacketBlock {
                interface_id: 0,
                timestamp: Duration::from_millis(1_700_000_000_000 + i as u64),
                original_len: frame.len() as u32,
                data: Cow::Borrowed(frame),
                options: vec![],
            })
            .unwrap();
    }
    writer.into_inner()
}

fn check_conversation(replayer: &Replayer) {
    let report = replayer.report();
    let packets = report.packets;
    assert_eq!(packets.total, 22);
    assert_eq!((packets.parsed(), packets.unparseable()), (19, 3));
    assert_eq!((packets.tcp, packets.udp), (14, 3));
    assert_eq!((packets.non_ip, packets.other_ip), (1, 1));
    assert_eq!(
        (packets.bad_link, packets.bad_ip, packets.bad_transport),
        (1, 1, 1)
    );
    assert_eq!(
        report.outcomes,
        Outcomes {
            exact: 9,
            time_wait: 1,
            group: 0,
            wildcard: 3,
            miss: 4,
        }
    );
    assert_eq!(
        report.actions,
        Actions {
            listeners: 2,
            accepted: 3,
            connected: 3,
            time_wait: 1,
            fin_closed: 1,
            rst_closed: 2,
            time_wait_reused: 0,
            udp_servers: 1,
            udp_clients: 1,
            expired: 0,
        }
    );
    assert_eq!(report.errors.total(), 0, "{:?}", report.errors);
    assert_eq!(report.checks.violations, 0);
    assert_eq!(report.checks.checked, 17);
    assert_eq!(report.checks.clean_files, 1);
    assert!(report.passed());
}

#[test]
fn a_conversation_in_pcap_finds_the_known_answers() {
    for policy in [Policy::FreeBsd, Policy::Linux] {
        let mut replayer = Replayer::new(policy);
        let file = pcap(DataLink::ETHERNET, &conversation());
        let result = replayer.replay(&file[..]);
        assert_eq!(
            (result.packets, result.parsed, result.unparseable),
            (22, 19, 3)
        );
        check_conversation(&replayer);
        assert_eq!(replayer.report().files.pcap, 1);
        assert_eq!(replayer.report().link_types["Ethernet"], 1);
    }
}

#[test]
fn a_conversation_in_pcapng_finds_the_same_answers() {
    for policy in [Policy::FreeBsd, Policy::Linux] {
        let mut replayer = Replayer::new(policy);
        replayer.replay(&pcapng(DataLink::ETHERNET, &conversation())[..]);
        check_conversation(&replayer);
        assert_eq!(replayer.report().files.pcapng, 1);
    }
}

/// The IP packets of the first two frames, without their Ethernet header.
fn handshake_ip() -> [Vec<u8>; 2] {
    [
        tcp4((A, 40000), (B, 80), "S")[14..].to_vec(),
        tcp4((B, 80), (A, 40000), "SA")[14..].to_vec(),
    ]
}

#[test]
fn raw_ip_and_cooked_links_are_understood() {
    let [syn, syn_ack] = handshake_ip();
    let cooked = |ip: &[u8]| {
        // LINUX_SLL: packet type, ARPHRD_ETHER, address length, address, protocol.
        let mut frame = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 0xA, 0, 0, 0x08, 0x00];
        frame.extend_from_slice(ip);
        frame
    };
    let cooked2 = |ip: &[u8]| {
        // LINUX_SLL2: protocol, reserved, interface, ARPHRD, type, address.
        let mut frame = vec![0x08, 0x00, 0, 0, 0, 0, 0, 1, 0, 1, 0, 6];
        frame.extend_from_slice(&[2, 0, 0, 0, 0, 0xA, 0, 0]);
        frame.extend_from_slice(ip);
        frame
    };
    let files = [
        (DataLink::RAW, vec![syn.clone(), syn_ack.clone()], "raw IP"),
        (
            DataLink::LINUX_SLL,
            vec![cooked(&syn), cooked(&syn_ack)],
            "Linux cooked",
        ),
        (
            DataLink::LINUX_SLL2,
            vec![cooked2(&syn), cooked2(&syn_ack)],
            "Linux cooked v2",
        ),
    ];
    for (datalink, frames, name) in files {
        let mut replayer = Replayer::new(Policy::Linux);
        replayer.replay(&pcap(datalink, &frames)[..]);
        let report = replayer.report();
        assert_eq!(report.packets.tcp, 2, "{name}");
        assert_eq!(
            (report.outcomes.miss, report.outcomes.exact),
            (1, 1),
            "{name}"
        );
        assert_eq!(report.link_types[name], 1);
        assert!(report.passed(), "{name}");
    }
}

#[test]
fn unknown_link_types_and_bad_files_are_counted_not_fatal() {
    let mut replayer = Replayer::new(Policy::FreeBsd);
    // An unknown link type (802.11): its packets are unparseable.
    replayer.replay(&pcap(DataLink::IEEE802_11, &conversation()[..3])[..]);
    // Not a capture, and an empty file.
    replayer.replay(&b"hello, this is no capture file"[..]);
    replayer.replay(&b""[..]);
    // A capture cut in the middle of its last record.
    let whole = pcap(DataLink::ETHERNET, &conversation()[..4]);
    replayer.replay(&whole[..whole.len() - 20]);
    // A record header claiming 3 GB.
    let mut huge = pcap(DataLink::ETHERNET, &conversation()[..1]);
    huge.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0xC0, 0, 0, 0, 0xC0, 0, 0, 0]);
    replayer.replay(&huge[..]);

    let report = replayer.report();
    assert_eq!(report.files.total, 5);
    assert_eq!(report.files.unreadable, 2);
    assert_eq!(report.files.truncated, 2);
    assert_eq!(report.files.panicked, 0);
    assert_eq!(report.packets.unsupported_link, 3);
    assert_eq!(report.packets.bad_records, 2);
    // 3 + (3 whole records + the cut one) + (1 + the huge one)
    assert_eq!(report.packets.total, 3 + 4 + 2);
    assert_eq!(report.packets.tcp, 3 + 1);
    assert_eq!(
        report.packets.total,
        report.packets.parsed() + report.packets.unparseable()
    );
    assert!(report.passed());
}

/// Every real capture: none may panic, counts must add up, every file's
/// PCBs must all be closable. Skipped when the captures are not beside the
/// repository.
#[test]
fn every_shared_capture_replays() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/pcap");
    let Ok(entries) = fs::read_dir(&dir) else {
        eprintln!("skipped: {} is not there", dir.display());
        return;
    };
    let mut files: Vec<_> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.extension()
                .is_some_and(|e| e == "pcap" || e == "pcapng")
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no captures in {}", dir.display());
    for policy in [Policy::FreeBsd, Policy::Linux] {
        let mut replayer = Replayer::new(policy);
        for path in &files {
            let file = File::open(path).unwrap();
            let result = replayer.replay(BufReader::new(file));
            assert_eq!(
                result.packets,
                result.parsed + result.unparseable,
                "{}",
                path.display()
            );
        }
        let report = replayer.report();
        assert_eq!(report.files.total, files.len() as u64);
        assert_eq!(report.files.panicked, 0);
        assert_eq!(
            report.files.read() + report.files.unreadable,
            files.len() as u64
        );
        let packets = report.packets;
        assert_eq!(packets.total, packets.parsed() + packets.unparseable());
        // Multicast and broadcast datagrams go to `deliver`, not `lookup`.
        let group = report.groupcast;
        assert_eq!(
            report.outcomes.total() + group.datagrams(),
            packets.tcp + packets.udp
        );
        assert!(group.datagrams() > 0, "{group:?}");
        assert!(group.delivered <= group.datagrams(), "{group:?}");
        assert!(group.receivers >= group.delivered, "{group:?}");
        assert!(packets.tcp > 0 && packets.udp > 0, "{packets:?}");
        assert_eq!(report.checks.violations, 0, "{policy:?}");
        assert_eq!(report.checks.clean_files, report.files.read(), "{policy:?}");
        assert!(
            report.passed(),
            "{}",
            report::replay(report, policy, Duration::ZERO)
        );
    }
}

/// Damaged copies of good captures (bytes flipped, cut anywhere): the replay
/// counts what it can and never panics, in the readers or in the parsers.
#[test]
fn damaged_captures_never_panic() {
    let frames = conversation();
    let originals = [
        pcap(DataLink::ETHERNET, &frames),
        pcapng(DataLink::ETHERNET, &frames),
        pcap(DataLink::LINUX_SLL, &frames),
    ];
    let mut replayer = Replayer::new(Policy::Linux);
    let mut h = 0x1234_5678_9ABC_DEF0_u64;
    let mut next = || {
        h = rng::mix(h);
        h
    };
    for round in 0..600 {
        let mut file = originals[round % originals.len()].clone();
        for _ in 0..1 + next() % 8 {
            let at = (next() % file.len() as u64) as usize;
            file[at] ^= 1 << (next() % 8);
        }
        if round % 4 == 0 {
            file.truncate((next() % file.len() as u64) as usize);
        }
        let result = replayer.replay(&file[..]);
        assert_eq!(result.packets, result.parsed + result.unparseable);
    }
    let report = replayer.report();
    assert_eq!(report.files.panicked, 0);
    assert_eq!(report.files.total, 600);
    assert_eq!(report.checks.violations, 0);
    assert_eq!(report.checks.clean_files, report.files.read());
}
