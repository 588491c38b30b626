//! Endpoints and tuples: IPv4/IPv6 normalisation, v4-mapped addresses, wildcards.
//!
//! Inside the table every address is *canonical*: an IPv4-mapped IPv6 address
//! (`::ffff:a.b.c.d`) is stored as the IPv4 address `a.b.c.d`, so that an
//! `Inet6` PCB bound to a mapped address and an IPv4 packet meet on the same
//! key. The PCB's [`Family`] remembers how to show the address back to its
//! owner (`getsockname` on an `AF_INET6` socket shows the mapped form).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// The address family of a PCB, fixed at attach like `socket(2)`'s domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// `AF_INET`: IPv4 only.
    Inet,
    /// `AF_INET6`: IPv6, and IPv4 through v4-mapped addresses unless V6ONLY.
    Inet6,
}

/// An address and port in canonical form (v4-mapped addresses as IPv4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Endpoint {
    pub(crate) ip: IpAddr,
    pub(crate) port: u16,
}

impl Endpoint {
    /// The canonical form of `addr`: flow label and scope dropped, v4-mapped
    /// addresses turned into IPv4.
    #[inline]
    pub(crate) fn new(addr: SocketAddr) -> Self {
        Self {
            ip: addr.ip().to_canonical(),
            port: addr.port(),
        }
    }

    /// The unspecified endpoint of `family`: `0.0.0.0:0` or `[::]:0`.
    pub(crate) fn unspecified(family: Family) -> Self {
        let ip = match family {
            Family::Inet => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Family::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        Self { ip, port: 0 }
    }

    /// Whether the address is the wildcard (`0.0.0.0`, `::` or `::ffff:0.0.0.0`).
    #[inline]
    pub(crate) fn is_wildcard(&self) -> bool {
        self.ip.is_unspecified()
    }

    /// Whether the address is IPv4 (after canonicalisation).
    #[inline]
    pub(crate) fn is_v4(&self) -> bool {
        self.ip.is_ipv4()
    }

    /// The same endpoint with another port.
    pub(crate) fn with_port(self, port: u16) -> Self {
        Self { port, ..self }
    }

    /// The address as its owner sees it: IPv4 for an `Inet` PCB, IPv6 (mapped
    /// for IPv4) for an `Inet6` PCB.
    pub(crate) fn to_socket(self, family: Family) -> SocketAddr {
        match (family, self.ip) {
            (Family::Inet6, IpAddr::V4(v4)) => {
                SocketAddr::V6(SocketAddrV6::new(v4.to_ipv6_mapped(), self.port, 0, 0))
            }
            (Family::Inet6, IpAddr::V6(v6)) => {
                SocketAddr::V6(SocketAddrV6::new(v6, self.port, 0, 0))
            }
            (Family::Inet, IpAddr::V4(v4)) => SocketAddr::V4(SocketAddrV4::new(v4, self.port)),
            // An `Inet` PCB never holds an IPv6 address; show it as is.
            (Family::Inet, IpAddr::V6(v6)) => {
                SocketAddr::V6(SocketAddrV6::new(v6, self.port, 0, 0))
            }
        }
    }
}

/// A PCB's local and remote endpoints. `remote` is unspecified with port 0
/// while the PCB is not connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tuple {
    pub(crate) local: Endpoint,
    pub(crate) remote: Endpoint,
}

/// A tuple as a PCB stores it, in plain words (the PCB's tuple latch keeps
/// two copies of them): four address words (local, then remote, 128 bits
/// each, IPv4 in its v4-mapped form) and the two ports in one word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TupleWords {
    pub(crate) addrs: [u64; 4],
    pub(crate) ports: u32,
}

/// The exact index's key: a 4-tuple as plain integers.
///
/// Addresses are 128-bit, an IPv4 address in its v4-mapped form
/// (`::ffff:a.b.c.d`). Mapped addresses are exactly the ones
/// [`Endpoint::new`] turns into IPv4, so an IPv4 packet and a mapped one give
/// the same key, and building a key from a packet's addresses needs neither
/// canonicalisation nor a branch per field.
///
/// This type maintains the invariant that two keys are equal exactly when
/// the canonical tuples they were built from are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FlowKey {
    local: [u64; 2],
    remote: [u64; 2],
    /// The local port in the high half, the remote port in the low half.
    ports: u32,
}

/// The high 96 bits of a v4-mapped address.
const MAPPED: u128 = 0xffff << 32;

/// The low word's share of [`MAPPED`].
const MAPPED_LOW: u64 = 0xffff << 32;

/// The hash of an IPv4 flow: its ports and its two 32-bit addresses.
#[inline(always)]
fn hash_v4(hasher: &ahash::RandomState, ports: u32, local: u64, remote: u64) -> u64 {
    hasher.hash_one((ports, local << 32 | remote))
}

/// The hash of any other flow: its ports and its two 128-bit addresses,
/// each one round of the hasher (an array of words would cost a length and
/// a byte-slice round each).
#[inline(always)]
fn hash_v6(hasher: &ahash::RandomState, ports: u32, local: u128, remote: u128) -> u64 {
    hasher.hash_one((ports, local, remote))
}

/// What a lookup builds a packet's [`FlowKey`] from: the key itself, or
/// the two words of an IPv4 flow, which travel in registers where a key
/// would have to be stored for a call.
pub(crate) trait PacketFlow: Copy {
    /// The flow's key.
    fn key(self) -> FlowKey;
}

impl PacketFlow for &FlowKey {
    #[inline(always)]
    fn key(self) -> FlowKey {
        *self
    }
}

/// A packet of two IPv4 addresses: its addresses (local in the high half)
/// and its ports (local in the high half), the words its key and its hash
/// are made of.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ipv4Flow {
    addrs: u64,
    ports: u32,
}

impl Ipv4Flow {
    /// The flow of a packet from `remote` to `local`, if both are IPv4
    /// (not v4-mapped IPv6: those take [`FlowKey::of_other_packet_hashed`]).
    #[inline(always)]
    pub(crate) fn of_packet(local: &SocketAddr, remote: &SocketAddr) -> Option<Self> {
        let (SocketAddr::V4(l), SocketAddr::V4(r)) = (local, remote) else {
            return None;
        };
        Some(Self {
            addrs: u64::from(l.ip().to_bits()) << 32 | u64::from(r.ip().to_bits()),
            ports: u32::from(l.port()) << 16 | u32::from(r.port()),
        })
    }

    /// The hash of its key ([`FlowKey::hash`]).
    #[inline(always)]
    pub(crate) fn hash(self, hasher: &ahash::RandomState) -> u64 {
        hash_v4(
            hasher,
            self.ports,
            self.addrs >> 32,
            self.addrs & 0xffff_ffff,
        )
    }
}

impl PacketFlow for Ipv4Flow {
    #[inline(always)]
    fn key(self) -> FlowKey {
        FlowKey {
            local: [0, MAPPED_LOW | self.addrs >> 32],
            remote: [0, MAPPED_LOW | self.addrs & 0xffff_ffff],
            ports: self.ports,
        }
    }
}

impl FlowKey {
    /// The key of a packet from `remote` to `local` and its hash
    /// ([`FlowKey::hash`]), or `None` when the two addresses are of
    /// different families after canonicalisation (no PCB can own such a
    /// packet). A packet of two IPv4 addresses, the common case, skips the
    /// family tests: its key is mapped by construction.
    #[inline(always)]
    pub(crate) fn of_packet_hashed(
        local: &SocketAddr,
        remote: &SocketAddr,
        hasher: &ahash::RandomState,
    ) -> Option<(Self, u64)> {
        if let Some(flow) = Ipv4Flow::of_packet(local, remote) {
            return Some((flow.key(), flow.hash(hasher)));
        }
        Self::of_other_packet_hashed(local, remote, hasher)
    }

    /// [`of_packet_hashed`](Self::of_packet_hashed) of a packet that is not
    /// IPv4 on both sides: whether its addresses are v4-mapped is tested
    /// once, for the key and for the hash.
    ///
    /// Always inline: returned through memory, the key's words are stored
    /// eight bytes at a time, and a caller that reloads them sixteen at a
    /// time waits for the stores to retire (see [`ipv6_bits`]).
    #[inline(always)]
    pub(crate) fn of_other_packet_hashed(
        local: &SocketAddr,
        remote: &SocketAddr,
        hasher: &ahash::RandomState,
    ) -> Option<(Self, u64)> {
        let (l, r) = (socket_bits(local), socket_bits(remote));
        let mapped = is_mapped(l);
        if mapped != is_mapped(r) {
            return None;
        }
        let key = Self::from_bits(l, r, local.port(), remote.port());
        let hash = if mapped {
            hash_v4(hasher, key.ports, l as u32 as u64, r as u32 as u64)
        } else {
            hash_v6(hasher, key.ports, l, r)
        };
        Some((key, hash))
    }

    /// The local endpoint, canonical (an IPv4 address as IPv4).
    #[inline]
    pub(crate) fn local(&self) -> Endpoint {
        let bits = u128::from(self.local[0]) << 64 | u128::from(self.local[1]);
        let ip = if is_mapped(bits) {
            IpAddr::V4(Ipv4Addr::from_bits(bits as u32))
        } else {
            IpAddr::V6(Ipv6Addr::from_bits(bits))
        };
        Endpoint {
            ip,
            port: self.local_port(),
        }
    }

    /// The local port.
    #[inline]
    pub(crate) fn local_port(&self) -> u16 {
        (self.ports >> 16) as u16
    }

    /// The key of a canonical tuple.
    #[inline]
    pub(crate) fn of_tuple(tuple: &Tuple) -> Self {
        Self::from_bits(
            ip_bits(tuple.local.ip),
            ip_bits(tuple.remote.ip),
            tuple.local.port,
            tuple.remote.port,
        )
    }

    /// The key as a PCB stores a tuple: the same words, no conversion.
    #[inline(always)]
    pub(crate) fn to_words(self) -> TupleWords {
        TupleWords {
            addrs: [self.local[0], self.local[1], self.remote[0], self.remote[1]],
            ports: self.ports,
        }
    }

    /// The same key with the remote port 0: what a PCB connected to the
    /// remote address with any port is filed under.
    #[inline]
    pub(crate) fn any_remote_port(&self) -> Self {
        Self {
            ports: self.ports & 0xffff_0000,
            ..*self
        }
    }

    /// The remote address, an IPv4 one v4-mapped.
    #[inline]
    pub(crate) fn remote_ip(&self) -> Ipv6Addr {
        Ipv6Addr::from_bits(u128::from(self.remote[0]) << 64 | u128::from(self.remote[1]))
    }

    /// The remote port.
    #[inline]
    pub(crate) fn remote_port(&self) -> u16 {
        self.ports as u16
    }

    #[inline(always)]
    fn from_bits(local: u128, remote: u128, local_port: u16, remote_port: u16) -> Self {
        let split = |bits: u128| [(bits >> 64) as u64, bits as u64];
        Self {
            local: split(local),
            remote: split(remote),
            ports: u32::from(local_port) << 16 | u32::from(remote_port),
        }
    }

    /// The key's hash under `hasher`: two rounds for an IPv4 tuple (the ports,
    /// then both addresses in one word), three for IPv6.
    #[inline(always)]
    pub(crate) fn hash(&self, hasher: &ahash::RandomState) -> u64 {
        if self.local[0] == 0
            && self.remote[0] == 0
            && self.local[1] >> 32 == 0xffff
            && self.remote[1] >> 32 == 0xffff
        {
            hash_v4(
                hasher,
                self.ports,
                self.local[1] & 0xffff_ffff,
                self.remote[1] & 0xffff_ffff,
            )
        } else {
            let join = |[high, low]: [u64; 2]| u128::from(high) << 64 | u128::from(low);
            hash_v6(hasher, self.ports, join(self.local), join(self.remote))
        }
    }
}

/// An address as 128 bits, IPv4 in v4-mapped form.
#[inline]
fn ip_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => MAPPED | u128::from(v4.to_bits()),
        IpAddr::V6(v6) => v6.to_bits(),
    }
}

/// A socket address's address as 128 bits, IPv4 in v4-mapped form.
#[inline(always)]
fn socket_bits(addr: &SocketAddr) -> u128 {
    match addr {
        SocketAddr::V4(v4) => MAPPED | u128::from(v4.ip().to_bits()),
        SocketAddr::V6(v6) => ipv6_bits(v6.ip()),
    }
}

/// An IPv6 address as 128 bits, read four bytes at a time.
///
/// A caller that passes a `SocketAddr` by value often has its compiler copy
/// it to the stack in 16-byte pieces first. An IPv6 address does not start
/// on such a piece, so a load of eight of its bytes may span two of those
/// stores, and a load that spans two stores cannot take its bytes from
/// them: it waits until they, and every instruction before them, retire.
/// A lookup that waits so cannot start before the previous lookup's cache
/// misses are over, and a run of IPv6 lookups then costs the sum of their
/// misses where IPv4 ones overlap (measured: 475 ns per lookup in a table
/// of 1M flows, against 225 ns with the reads below). Each four-byte piece
/// lies within one aligned store of any such copy; the [`black_box`]es keep
/// the compiler from merging them back into wider loads (reading the first
/// eight bytes as one word, which looks as if it lay within the first
/// piece, took the report's IPv6 row from 1.94× hashbrown to 3.94×). Only
/// the speed depends on it.
///
/// [`black_box`]: std::hint::black_box
#[inline(always)]
fn ipv6_bits(ip: &Ipv6Addr) -> u128 {
    let octets = ip.octets();
    let word = |i: usize| {
        std::hint::black_box(u32::from_be_bytes([
            octets[i],
            octets[i + 1],
            octets[i + 2],
            octets[i + 3],
        ]))
    };
    u128::from(word(0)) << 96
        | u128::from(word(4)) << 64
        | u128::from(word(8)) << 32
        | u128::from(word(12))
}

/// Whether 128 address bits are a v4-mapped address.
#[inline]
fn is_mapped(bits: u128) -> bool {
    bits >> 32 == 0xffff
}

impl Tuple {
    /// The tuple of a PCB that is not bound yet.
    pub(crate) fn unbound(family: Family) -> Self {
        Self {
            local: Endpoint::unspecified(family),
            remote: Endpoint::unspecified(family),
        }
    }

    /// A bound, unconnected tuple.
    pub(crate) fn bound(local: Endpoint) -> Self {
        let family = if local.is_v4() {
            Family::Inet
        } else {
            Family::Inet6
        };
        Self {
            local,
            remote: Endpoint::unspecified(family),
        }
    }

    /// Whether the tuple names a peer.
    #[inline]
    pub(crate) fn is_connected(&self) -> bool {
        self.remote.port != 0 || !self.remote.is_wildcard()
    }

    /// The tuple as the PCB stores it: both addresses as 128 bits (IPv4 in
    /// v4-mapped form, which canonical tuples never use for IPv6), the local
    /// port in the high half of the ports word.
    #[inline]
    pub(crate) fn to_words(self) -> TupleWords {
        let split = |bits: u128| [(bits >> 64) as u64, bits as u64];
        let (local, remote) = (
            split(ip_bits(self.local.ip)),
            split(ip_bits(self.remote.ip)),
        );
        TupleWords {
            addrs: [local[0], local[1], remote[0], remote[1]],
            ports: u32::from(self.local.port) << 16 | u32::from(self.remote.port),
        }
    }

    /// The tuple [`to_words`](Self::to_words) stored.
    #[inline]
    pub(crate) fn from_words(words: TupleWords) -> Self {
        let ip = |high: u64, low: u64| {
            let bits = u128::from(high) << 64 | u128::from(low);
            if is_mapped(bits) {
                IpAddr::V4(Ipv4Addr::from_bits(bits as u32))
            } else {
                IpAddr::V6(Ipv6Addr::from_bits(bits))
            }
        };
        let [lh, ll, rh, rl] = words.addrs;
        Self {
            local: Endpoint {
                ip: ip(lh, ll),
                port: (words.ports >> 16) as u16,
            },
            remote: Endpoint {
                ip: ip(rh, rl),
                port: words.ports as u16,
            },
        }
    }
}

/// The default source-address selection: loopback only, as Linux picks it.
///
/// `127.0.0.0/8` gives `127.0.0.1`, `::1` gives `::1`, `::ffff:127.x.y.z` gives
/// `::ffff:127.0.0.1`; anything else gives `None`.
pub(crate) fn loopback_source(peer: IpAddr) -> Option<IpAddr> {
    match peer {
        IpAddr::V4(v4) if v4.is_loopback() => Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        IpAddr::V6(v6) if v6.is_loopback() => Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) if v4.is_loopback() => Some(IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped())),
            _ => None,
        },
        IpAddr::V4(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_addresses_read_in_pieces_keep_their_bits() {
        let mut next = crate::test_rng::xorshift(0x9E37_79B9_7F4A_7C15);
        let fixed = [0, u128::MAX, 1, 1 << 127, MAPPED | 0x7f00_0001];
        let random = (0..1000).map(|_| u128::from(next()) << 64 | u128::from(next()));
        for bits in fixed.into_iter().chain(random) {
            let ip = Ipv6Addr::from_bits(bits);
            assert_eq!(ipv6_bits(&ip), bits, "{ip}");
            let addr = SocketAddr::V6(SocketAddrV6::new(ip, 443, 0, 0));
            assert_eq!(socket_bits(&addr), bits);
        }
    }

    #[test]
    fn tuples_survive_their_stored_words() {
        let tuple = |local: &str, remote: &str| Tuple {
            local: Endpoint::new(local.parse().unwrap()),
            remote: Endpoint::new(remote.parse().unwrap()),
        };
        for t in [
            Tuple::unbound(Family::Inet),
            Tuple::unbound(Family::Inet6),
            tuple("127.0.0.1:80", "127.0.0.2:40000"),
            tuple("[::ffff:127.0.0.1]:65535", "[::ffff:0.0.0.0]:0"),
            tuple("[::1]:443", "[fe80::1]:1"),
            tuple("[::]:7", "[::ffff:1.2.3.4]:8"),
        ] {
            assert_eq!(Tuple::from_words(t.to_words()), t, "{t:?}");
        }
        let v4 = tuple("10.0.0.1:1", "10.0.0.2:2").to_words();
        let v6 = tuple("[::a00:1]:1", "[::a00:2]:2").to_words();
        assert_ne!(v4, v6, "IPv4 and IPv4-compatible IPv6 differ");
    }

    #[test]
    fn mapped_addresses_are_canonical_ipv4() {
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:80".parse().unwrap();
        let plain: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert_eq!(Endpoint::new(mapped), Endpoint::new(plain));
        assert_eq!(Endpoint::new(mapped).to_socket(Family::Inet6), mapped);
        assert_eq!(Endpoint::new(plain).to_socket(Family::Inet), plain);
        let any_mapped: SocketAddr = "[::ffff:0.0.0.0]:1".parse().unwrap();
        assert!(Endpoint::new(any_mapped).is_wildcard());
        assert!(Endpoint::new(any_mapped).is_v4());
    }

    #[test]
    fn flow_keys_agree_with_canonical_tuples() {
        let hasher = ahash::RandomState::with_seeds(1, 2, 3, 4);
        let sock = |s: &str| s.parse::<SocketAddr>().unwrap();
        let tuple = |l: &str, r: &str| Tuple {
            local: Endpoint::new(sock(l)),
            remote: Endpoint::new(sock(r)),
        };
        let packets = [
            ("127.0.0.1:80", "127.0.0.2:5000"),
            ("[::ffff:127.0.0.1]:80", "[::ffff:127.0.0.2]:5000"),
            ("[::ffff:127.0.0.1]:80", "127.0.0.2:5000"),
            ("[::1]:80", "[::2]:5000"),
            ("[::1]:80", "[::1]:5000"),
            ("127.0.0.1:5000", "127.0.0.2:80"),
            ("[::ffff:0.0.0.0]:80", "0.0.0.0:5000"),
        ];
        let keys: Vec<FlowKey> = packets
            .iter()
            .map(|(l, r)| {
                let (key, hash) =
                    FlowKey::of_packet_hashed(&sock(l), &sock(r), &hasher).expect("same family");
                assert_eq!(key, FlowKey::of_tuple(&tuple(l, r)), "{l} {r}");
                // Each path of a packet (IPv4, mapped, IPv6) hashes its key
                // as the key itself does, as a PCB's tuple is filed.
                assert_eq!(hash, key.hash(&hasher), "{l} {r}");
                key
            })
            .collect();
        // The three spellings of one IPv4 flow are one key with one hash.
        assert_eq!(keys[0], keys[1]);
        assert_eq!(keys[0], keys[2]);
        assert_eq!(keys[0].hash(&hasher), keys[2].hash(&hasher));
        assert_eq!(keys[0].hash(&hasher), keys[1].hash(&hasher));
        assert_ne!(keys[0].hash(&hasher), keys[5].hash(&hasher));
        // Everything else differs: addresses, families, port order.
        for (i, a) in keys.iter().enumerate().skip(2) {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // IPv4 against IPv6 (not mapped) is no flow at all.
        for (l, r) in [
            ("127.0.0.1:80", "[::1]:80"),
            ("[::ffff:1.2.3.4]:80", "[::1]:80"),
            ("[::1]:80", "[::ffff:1.2.3.4]:80"),
        ] {
            assert_eq!(
                FlowKey::of_packet_hashed(&sock(l), &sock(r), &hasher),
                None,
                "{l} {r}"
            );
        }
    }

    #[test]
    fn default_source_address_knows_only_loopback() {
        let cases = [
            ("127.3.4.5", Some("127.0.0.1")),
            ("::1", Some("::1")),
            ("::ffff:127.9.9.9", Some("::ffff:127.0.0.1")),
            ("10.0.0.1", None),
            ("2001:db8::1", None),
            ("::ffff:10.0.0.1", None),
        ];
        for (peer, source) in cases {
            let got = loopback_source(peer.parse().unwrap());
            assert_eq!(got, source.map(|s| s.parse().unwrap()), "{peer}");
        }
    }
}
