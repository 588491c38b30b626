//! The keys every table is driven with: 4-tuples of a few shapes, made
//! by a seeded generator, and the order in which they are looked up.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// A packet's 4-tuple: (local, remote).
pub type Key = (SocketAddr, SocketAddr);

/// One seed for every table, so runs are reproducible.
pub const SEED: u64 = 0x5eed_cafe_f00d_d00d;

/// The hasher every peer uses: ahash with fixed seeds.
pub fn hasher() -> ahash::RandomState {
    ahash::RandomState::with_seeds(SEED, SEED ^ 1, SEED ^ 2, SEED ^ 3)
}

/// The service every connection goes to: all PCBs share one local port, as
/// on a busy server.
pub const SERVICE: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 443));

/// splitmix64: a small, fast, deterministic generator.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// Where the flows of a key set go, and from where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// A busy IPv4 server: every flow to [`SERVICE`], from random unicast
    /// IPv4 peers.
    Service,
    /// The same over IPv6: to [`SERVICE6`], from random global unicast IPv6
    /// peers.
    Ipv6,
    /// Flows spread over this many local ports of `192.0.2.1` (from 20000
    /// up, each flow's port drawn at random), from random IPv4 peers: many
    /// services, or a client host's outbound connections, rather than one
    /// listener's port.
    LocalPorts(u16),
}

/// The first local port of [`Shape::LocalPorts`].
pub const FIRST_LOCAL_PORT: u16 = 20_000;

/// [`SERVICE`] over IPv6 (`[2001:db8::1]:443`).
pub const SERVICE6: SocketAddr = SocketAddr::V6(SocketAddrV6::new(
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
    443,
    0,
    0,
));

/// `n` distinct 4-tuples of the given shape.
pub fn flows(shape: Shape, n: usize, seed: u64) -> Vec<Key> {
    let mut rng = Rng::new(seed);
    let mut seen = hashbrown::HashSet::with_capacity_and_hasher(n, hasher());
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let bits = rng.next_u64();
        let port = 1024 + (bits as u16 % (65535 - 1024));
        let key = match shape {
            Shape::Service | Shape::LocalPorts(_) => {
                // First octet 1..=223: unicast, never 0.0.0.0 or multicast.
                let ip = Ipv4Addr::from(((bits >> 32) as u32 % (223 << 24)) + (1 << 24));
                let local = match shape {
                    Shape::LocalPorts(ports) => SocketAddr::V4(SocketAddrV4::new(
                        Ipv4Addr::new(192, 0, 2, 1),
                        FIRST_LOCAL_PORT + rng.below(usize::from(ports.max(1))) as u16,
                    )),
                    _ => SERVICE,
                };
                (local, SocketAddr::V4(SocketAddrV4::new(ip, port)))
            }
            Shape::Ipv6 => {
                // 2000::/3, global unicast.
                let high = (rng.next_u64() >> 3) | (1 << 61);
                let ip = Ipv6Addr::from((u128::from(high) << 64) | u128::from(rng.next_u64()));
                (SERVICE6, SocketAddr::V6(SocketAddrV6::new(ip, port, 0, 0)))
            }
        };
        if seen.insert(key) {
            out.push(key);
        }
    }
    out
}

/// `n` distinct 4-tuples toward [`SERVICE`] from random unicast IPv4 peers.
pub fn keys(n: usize, seed: u64) -> Vec<Key> {
    flows(Shape::Service, n, seed)
}

/// The key sets of one run: the table's keys, SYN keys (not in the table) and
/// fresh keys for the inserting threads of the mix and growth workloads.
#[derive(Debug)]
pub struct KeySet {
    pub table: Vec<Key>,
    pub syn: Vec<Key>,
    pub fresh: Vec<Vec<Key>>,
}

impl KeySet {
    pub fn new(n: usize, syn: usize, fresh_per_thread: usize, threads: usize) -> Self {
        let all = keys(n + syn + fresh_per_thread * threads, SEED);
        let mut rest = all.into_iter();
        let table = rest.by_ref().take(n).collect();
        let syn = rest.by_ref().take(syn).collect();
        let fresh = (0..threads)
            .map(|_| rest.by_ref().take(fresh_per_thread).collect())
            .collect();
        Self { table, syn, fresh }
    }
}

/// `keys` in a random order, `len` of them (cycling if `len > keys.len()`).
pub fn probe_order(keys: &[Key], len: usize, seed: u64) -> Vec<Key> {
    let mut rng = Rng::new(seed);
    let mut order: Vec<Key> = keys.to_vec();
    rng.shuffle(&mut order);
    order.iter().copied().cycle().take(len).collect()
}
