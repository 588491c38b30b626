//! A third policy, written outside the crate by implementing
//! `pcbhash::policy::Rules` alone: everything may share. No bind conflict,
//! no groups, no history; only a 4-tuple stays unique. The tests run a table
//! under it through the public API, beside the FreeBSD policy for contrast.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::Arc;

use pcbhash::policy::{
    check_privilege, AfterFailedConnect, Disconnect, GroupFit, GroupKey, Lookup, PcbView, PortMemo,
    PortScan, Rules, TupleTaken,
};
use pcbhash::{Builder, Cred, Error, Family, Flags, Pcb, PcbTable, Policy, Protocol, State};

/// Every PCB may share every port with any other, whatever its options and
/// owner.
#[derive(Debug)]
struct Share {
    protocol: Protocol,
}

/// `addr` canonical, as the seam passes addresses.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// The address family `addr` asks of a PCB of `family`.
fn check_family(family: Family, addr: SocketAddr) -> Result<(), Error> {
    match (family, addr) {
        (Family::Inet, SocketAddr::V6(_)) => Err(Error::FamilyNotSupported),
        (Family::Inet6, SocketAddr::V4(_)) => Err(Error::InvalidInput),
        _ => Ok(()),
    }
}

/// A packet to `local` finds unconnected PCBs on its port that take its
/// family, on its address or a wildcard: the address first, then the
/// newest.
fn rank(view: &PcbView, local: &SocketAddr) -> Option<(u32, u64)> {
    let mine = view.local();
    let family_ok = if local.is_ipv4() {
        view.takes_v4()
    } else {
        view.takes_v6()
    };
    if view.is_connected() || mine.port() != local.port() || !family_ok {
        return None;
    }
    let exact = mine.ip() == local.ip();
    if !exact && !mine.ip().is_unspecified() {
        return None;
    }
    Some((u32::from(exact), view.seq()))
}

/// The first of the members.
fn first_member(_hash: u64, _members: usize) -> usize {
    0
}

impl Rules for Share {
    fn default_ephemeral(&self) -> RangeInclusive<u16> {
        50000..=50009
    }

    fn default_v6only(&self) -> bool {
        true
    }

    fn has_option(&self, _bit: Flags) -> bool {
        true
    }

    fn check_bind(&self, me: &PcbView, local: SocketAddr) -> Result<SocketAddr, Error> {
        check_family(me.family(), local)?;
        if me.state() != State::Closed {
            return Err(Error::InvalidInput);
        }
        check_privilege(&me.cred(), local.port())?;
        Ok(canonical(local))
    }

    fn bind_sets(&self, _me: &PcbView, _local: SocketAddr) -> Flags {
        Flags::EMPTY
    }

    fn bind_conflict(
        &self,
        _new: &PcbView,
        _owners: &[PcbView],
        _memo: PortMemo,
    ) -> Result<(), Error> {
        Ok(())
    }

    fn bound(&self, _new: &PcbView, memo: PortMemo) -> PortMemo {
        memo
    }

    fn bind_port_busy(&self, _new: &PcbView, _owners: &[PcbView], _listening: bool) -> bool {
        false
    }

    fn bind_scan(&self, _me: &PcbView) -> PortScan {
        PortScan::Rover
    }

    fn bind_exhausted(&self) -> Error {
        Error::AddrNotAvailable
    }

    fn failed_bind_forgets_address(&self) -> bool {
        false
    }

    fn listen_check(
        &self,
        _me: &PcbView,
        _owners: &[PcbView],
        _memo: PortMemo,
    ) -> Result<(), Error> {
        Ok(())
    }

    fn listen_refused_after_connect(&self, _flags: Flags) -> bool {
        false
    }

    fn inserts_at_listen(&self) -> bool {
        false
    }

    fn remembers(&self, _state: State) -> Flags {
        Flags::EMPTY
    }

    fn check_connect(&self, me: &PcbView, remote: SocketAddr) -> Result<SocketAddr, Error> {
        match me.state() {
            State::Closed | State::Bound => {}
            State::Listen => return Err(Error::InvalidInput),
            _ => return Err(Error::AlreadyConnected),
        }
        check_family(me.family(), remote)?;
        let peer = canonical(remote);
        if peer.port() == 0 || peer.ip().is_unspecified() {
            return Err(Error::AddrNotAvailable);
        }
        Ok(peer)
    }

    fn disconnects_before_connect(&self, _me: &PcbView) -> bool {
        false
    }

    fn binds_before_connect(&self, _me: &PcbView) -> bool {
        false
    }

    fn connect_autobind_failed(&self) -> Error {
        Error::AddrNotAvailable
    }

    fn bound_source(&self, me: &PcbView, _peer: SocketAddr) -> Option<IpAddr> {
        Some(me.local().ip())
    }

    fn connect_refused(&self, _me: &PcbView) -> Option<Error> {
        None
    }

    fn connect_tuple_taken(&self, _holder: &PcbView) -> Result<TupleTaken, Error> {
        Err(Error::AddrInUse)
    }

    fn after_failed_connect(&self, _me: &PcbView, _source: IpAddr) -> AfterFailedConnect {
        AfterFailedConnect::Unchanged
    }

    fn connect_scan(&self) -> PortScan {
        PortScan::Rover
    }

    fn connect_port_busy(
        &self,
        _new: &PcbView,
        _owners: &[PcbView],
        holder: Option<&PcbView>,
        _memo: PortMemo,
    ) -> bool {
        holder.is_some()
    }

    fn connect_holder_busy(&self) -> bool {
        true
    }

    fn remembers_peer(&self, _family: Family) -> bool {
        false
    }

    fn newest_connection_first(&self) -> bool {
        false
    }

    fn disconnect(&self, me: &PcbView) -> Result<Disconnect, Error> {
        match (self.protocol, me.state()) {
            (Protocol::Tcp, _) => Err(Error::NotSupported),
            (Protocol::Udp, State::Connected) => Ok(Disconnect {
                keep_addr: false,
                keep_port: true,
            }),
            (Protocol::Udp, _) => Err(Error::NotConnected),
        }
    }

    fn disconnected_wildcard(&self, family: Family, local: SocketAddr) -> SocketAddr {
        let ip = match family {
            Family::Inet => IpAddr::from([0, 0, 0, 0]),
            Family::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        SocketAddr::new(ip, local.port())
    }

    fn disconnect_reinserts(&self) -> bool {
        true
    }

    fn rejoins_group_on_disconnect(&self) -> bool {
        false
    }

    fn wildcard_disconnect_leaves_group(&self, _me: &PcbView) -> bool {
        false
    }

    fn accept_inherits(&self) -> Flags {
        Flags::V6ONLY
    }

    fn insertion_seq(&self, _family: Family, _flags: Flags, counter: u64) -> u64 {
        counter
    }

    fn rehash_seq(&self, _counter: u64) -> Option<u64> {
        None
    }

    fn lookup(&self) -> Lookup {
        Lookup {
            rank,
            first_pass: 0,
            group_bits: Flags::EMPTY,
            group_needs_reuseport: false,
            group_stops_walk: false,
            any_port: false,
            pick: first_member,
            pick_skips_connected: false,
            device: None,
        }
    }

    fn any_port_peer_rank(&self, _local: SocketAddr, _family: Family) -> u32 {
        u32::MAX
    }

    fn last_peer_rank(&self, rank: u32, _last: &Ipv6Addr, _source: &Ipv6Addr) -> Option<u32> {
        Some(rank)
    }

    fn group_key(&self, _view: &PcbView) -> Option<GroupKey> {
        None
    }

    fn group_mate(&self, _me: &PcbView, _other: &PcbView) -> Option<bool> {
        None
    }

    fn group_decided_at_bind(&self) -> bool {
        false
    }

    fn joins_pending(&self, _view: &PcbView) -> bool {
        false
    }

    fn group_initial_slots(&self) -> usize {
        1
    }

    fn group_fit(&self, _members: usize, _slots: usize) -> GroupFit {
        GroupFit::Full
    }

    fn keeps_bucket_history(&self) -> bool {
        false
    }

    fn joins_connect_only_bucket(
        &self,
        _mate: Option<&PcbView>,
        _by_connect: bool,
        _memo: PortMemo,
    ) -> bool {
        false
    }

    fn left_bucket_connect_only(&self, _others: &mut dyn Iterator<Item = PcbView>) -> bool {
        false
    }

    fn port_left(&self, memo: PortMemo, _others: &mut dyn Iterator<Item = PcbView>) -> PortMemo {
        memo
    }

    /// Every PCB on the port and address (or a wildcard) of the datagram's
    /// family receives, whatever its peer.
    fn delivers_to(
        &self,
        view: &PcbView,
        _last_peer: Option<&Ipv6Addr>,
        local: SocketAddr,
        _remote: SocketAddr,
    ) -> bool {
        let mine = view.local();
        mine.port() == local.port()
            && mine.is_ipv4() == local.is_ipv4()
            && (mine.ip().is_unspecified() || mine.ip() == local.ip())
    }

    fn delivery_ends_after(&self, _view: &PcbView) -> bool {
        false
    }

    /// Newest first.
    fn delivery_order(
        &self,
        view: &PcbView,
        _bound_seq: u64,
        _local: SocketAddr,
        _port_len: usize,
    ) -> (u32, u64) {
        (0, view.seq())
    }
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn sharing(protocol: Protocol) -> PcbTable<u32> {
    Builder::new()
        .protocol(protocol)
        .custom_policy(Arc::new(Share { protocol }))
        .seed(7)
        .build()
}

fn freebsd(protocol: Protocol) -> PcbTable<u32> {
    Builder::new()
        .policy(Policy::FreeBsd)
        .protocol(protocol)
        .seed(7)
        .build()
}

/// Binds a PCB of `uid` (no options) to `local`.
fn bind(
    table: &PcbTable<u32>,
    uid: u32,
    local: &str,
    id: u32,
) -> (Pcb<u32>, Result<SocketAddr, Error>) {
    let pcb = table.attach(Family::Inet, Cred::user(uid), id);
    let bound = pcb.bind(addr(local));
    (pcb, bound)
}

#[test]
fn strangers_share_a_port_without_options() {
    for protocol in [Protocol::Tcp, Protocol::Udp] {
        let table = sharing(protocol);
        let (_a, first) = bind(&table, 1000, "127.0.0.1:8080", 1);
        let (_b, second) = bind(&table, 1001, "127.0.0.1:8080", 2);
        let (_c, wild) = bind(&table, 1002, "0.0.0.0:8080", 3);
        assert_eq!(first, Ok(addr("127.0.0.1:8080")), "{protocol:?}");
        assert_eq!(second, Ok(addr("127.0.0.1:8080")), "{protocol:?}");
        assert_eq!(wild, Ok(addr("0.0.0.0:8080")), "{protocol:?}");
        assert_eq!(table.len(), 3);

        // The same binds under FreeBSD: the second is refused.
        let strict = freebsd(protocol);
        let (_a, first) = bind(&strict, 1000, "127.0.0.1:8080", 1);
        let (_b, second) = bind(&strict, 1001, "127.0.0.1:8080", 2);
        assert_eq!(first, Ok(addr("127.0.0.1:8080")));
        assert_eq!(second, Err(Error::AddrInUse), "{protocol:?}");
    }
}

#[test]
fn the_shared_checks_still_apply() {
    let table = sharing(Protocol::Tcp);
    let (pcb, low) = bind(&table, 1000, "127.0.0.1:80", 1);
    assert_eq!(low, Err(Error::PermissionDenied));
    assert_eq!(pcb.state(), State::Closed);
    assert_eq!(pcb.bind(addr("127.0.0.1:8080")), Ok(addr("127.0.0.1:8080")));
    assert_eq!(pcb.bind(addr("127.0.0.1:8081")), Err(Error::InvalidInput));
    let v4 = table.attach(Family::Inet, Cred::ROOT, 2);
    assert_eq!(v4.bind(addr("[::1]:8080")), Err(Error::FamilyNotSupported));
}

#[test]
fn lookups_rank_as_the_policy_says() {
    let table = sharing(Protocol::Tcp);
    let (wild, _) = bind(&table, 1000, "0.0.0.0:8080", 1);
    let (older, _) = bind(&table, 1000, "127.0.0.1:8080", 2);
    let (newer, _) = bind(&table, 1001, "127.0.0.1:8080", 3);
    for pcb in [&wild, &older, &newer] {
        pcb.listen().unwrap();
    }
    let guard = table.pin();
    let syn = |to: &str| {
        table
            .lookup(addr(to), addr("127.0.0.9:5000"), &guard)
            .and_then(|found| found.socket().copied())
    };
    // The address before the wildcard, and the newest of equals.
    assert_eq!(syn("127.0.0.1:8080"), Some(3));
    assert_eq!(syn("127.0.0.2:8080"), Some(1));
    assert_eq!(syn("127.0.0.1:8081"), None);
    drop(guard);
    newer.close();
    let guard = table.pin();
    let found = table.lookup(addr("127.0.0.1:8080"), addr("127.0.0.9:5000"), &guard);
    assert_eq!(found.and_then(|pcb| pcb.socket().copied()), Some(2));
}

#[test]
fn only_the_four_tuple_stays_unique() {
    let table = sharing(Protocol::Tcp);
    let (a, _) = bind(&table, 1000, "127.0.0.1:8080", 1);
    let (b, _) = bind(&table, 1001, "127.0.0.1:8080", 2);
    assert_eq!(a.connect(addr("127.0.0.9:443")), Ok(addr("127.0.0.1:8080")));
    assert_eq!(b.connect(addr("127.0.0.9:443")), Err(Error::AddrInUse));
    assert_eq!(b.state(), State::Bound);
    assert_eq!(b.connect(addr("127.0.0.9:444")), Ok(addr("127.0.0.1:8080")));
    let guard = table.pin();
    let to_b = table.lookup(addr("127.0.0.1:8080"), addr("127.0.0.9:444"), &guard);
    assert!(to_b.is_some_and(|pcb| pcb.is(&b)));

    // Unbound connects to one peer get distinct ports of the policy's
    // range, until it runs out.
    let mut ports = Vec::new();
    for id in 0..10 {
        let pcb = table.attach(Family::Inet, Cred::ROOT, 10 + id);
        let local = pcb.connect(addr("127.0.0.9:80")).unwrap();
        assert!((50000..=50009).contains(&local.port()), "{local}");
        ports.push((local.port(), pcb));
    }
    let mut seen: Vec<u16> = ports.iter().map(|(port, _)| *port).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 10);
    let last = table.attach(Family::Inet, Cred::ROOT, 99);
    assert_eq!(
        last.connect(addr("127.0.0.9:80")),
        Err(Error::AddrNotAvailable)
    );
}

#[test]
fn udp_disconnects_to_the_wildcard() {
    let table = sharing(Protocol::Udp);
    let (a, _) = bind(&table, 1000, "127.0.0.1:5353", 1);
    let (_b, _) = bind(&table, 1001, "127.0.0.1:5353", 2);
    assert_eq!(a.connect(addr("127.0.0.9:53")), Ok(addr("127.0.0.1:5353")));
    assert_eq!(a.disconnect(), Ok(()));
    assert_eq!(a.local_addr(), Some(addr("0.0.0.0:5353")));
    assert_eq!(a.disconnect(), Err(Error::NotConnected));
    assert_eq!(table.len(), 2);
}
