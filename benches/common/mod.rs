//! Workloads and peer adapters shared by the criterion benches and by the
//! `report` bench.
//!
//! Every table, pcbhash and its peers alike, is driven with the same 4-tuples
//! (`Key`: local and remote socket address) and, where the peer takes a
//! hasher, with `ahash` seeded identically. What each `get` returns:
//!
//! - pcbhash: `Option<PcbRef>` (a guard-bound pointer to the PCB); the
//!   `pcbhash+socket` variant also follows `PcbRef::socket` to `&S` (inside
//!   the PCB) and reads [`BenchSocket::read`] from it (nothing for `()`, the
//!   id of a [`Socket`]);
//! - hashbrown+Arc: a [`Socket`] field read through the `Arc<Socket>` value;
//! - hashbrown, papaya, scc `HashIndex`: `Option<&u32>` (a reference to a small
//!   id stored in the table);
//! - dashmap: `Option<Ref<'_, Key, u32>>` (holds the shard's read lock);
//! - `RwLock<HashMap>`: a reference under the read guard, taken per lookup;
//! - the linear scan: a reference into a `Vec` (smoltcp's `SocketSet` walk).
//!
//! Apart from those two socket reads, which are compared only with each
//! other, the result is passed through `black_box` and never dereferenced,
//! so no peer pays for a load the others skip. Epoch-based tables pin once per
//! [`PIN_EVERY`] lookups, as a stack pins once per receive batch.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, RwLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use pcbhash::{Cred, Error, Family, Guard, Pcb, PcbTable, Policy};

/// A packet's 4-tuple: (local, remote).
pub type Key = (SocketAddr, SocketAddr);

/// One seed for every table, so runs are reproducible.
pub const SEED: u64 = 0x5eed_cafe_f00d_d00d;

/// Lookups per pin (one receive batch).
pub const PIN_EVERY: usize = 64;

/// The service every connection goes to: all PCBs share one local port, as
/// on a busy server.
pub const SERVICE: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 443));

/// The hasher every peer uses: ahash with fixed seeds.
/// The criterion settings every bench shares: short, small samples, sized
/// for a 2-core machine; `measurement` per benchmark.
pub fn criterion_config(measurement: Duration) -> criterion::Criterion {
    criterion::Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(measurement)
}

pub fn hasher() -> ahash::RandomState {
    ahash::RandomState::with_seeds(SEED, SEED ^ 1, SEED ^ 2, SEED ^ 3)
}

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

// ---------------------------------------------------------------------------
// Peers
// ---------------------------------------------------------------------------

/// A table that can be looked up.
pub trait Peer {
    const NAME: &'static str;
    /// What one batch of lookups holds: an epoch guard, or nothing.
    type Pin<'a>
    where
        Self: 'a;
    fn pin(&self) -> Self::Pin<'_>;
    /// Looks `key` up; the answer goes through `black_box`. Whether it hit.
    fn get(&self, pin: &Self::Pin<'_>, key: &Key) -> bool;
}

/// A table built from keys: key `i` maps to id `i`.
pub trait Build: Peer + Sized {
    fn with_keys(keys: &[Key]) -> Self;
}

/// A peer that several threads can look up and modify at once.
pub trait ConcurrentPeer: Build + Sync {
    /// What the inserting thread keeps to remove the entry later (a `Pcb`
    /// handle for pcbhash, nothing for the maps).
    type Conn: Send;
    fn insert(&self, key: &Key, id: u32) -> Self::Conn;
    fn remove(&self, key: &Key, conn: Self::Conn);
}

/// `hashbrown::HashMap::get`: unsynchronised, the limit.
pub struct Hashbrown(pub hashbrown::HashMap<Key, u32, ahash::RandomState>);

impl Peer for Hashbrown {
    const NAME: &'static str = "hashbrown";
    type Pin<'a> = ();
    fn pin(&self) {}
    #[inline]
    fn get(&self, _: &(), key: &Key) -> bool {
        black_box(self.0.get(key)).is_some()
    }
}

impl Build for Hashbrown {
    fn with_keys(keys: &[Key]) -> Self {
        let mut map = hashbrown::HashMap::with_capacity_and_hasher(keys.len(), hasher());
        map.extend(keys.iter().enumerate().map(|(i, k)| (*k, i as u32)));
        Self(map)
    }
}

/// smoltcp's `SocketSet`: every lookup walks every socket.
pub struct LinearScan(Vec<(Key, u32)>);

impl Peer for LinearScan {
    const NAME: &'static str = "linear scan";
    type Pin<'a> = ();
    fn pin(&self) {}
    #[inline]
    fn get(&self, _: &(), key: &Key) -> bool {
        black_box(self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)).is_some()
    }
}

impl Build for LinearScan {
    fn with_keys(keys: &[Key]) -> Self {
        Self(
            keys.iter()
                .enumerate()
                .map(|(i, k)| (*k, i as u32))
                .collect(),
        )
    }
}

/// `std::sync::RwLock<HashMap>`: the naive choice, one read lock per lookup.
pub struct StdRwLock(RwLock<std::collections::HashMap<Key, u32, ahash::RandomState>>);

impl Peer for StdRwLock {
    const NAME: &'static str = "RwLock<HashMap>";
    type Pin<'a> = ();
    fn pin(&self) {}
    #[inline]
    fn get(&self, _: &(), key: &Key) -> bool {
        let map = self.0.read().unwrap();
        black_box(map.get(key)).is_some()
    }
}

impl Build for StdRwLock {
    fn with_keys(keys: &[Key]) -> Self {
        let mut map = std::collections::HashMap::with_capacity_and_hasher(keys.len(), hasher());
        map.extend(keys.iter().enumerate().map(|(i, k)| (*k, i as u32)));
        Self(RwLock::new(map))
    }
}

impl ConcurrentPeer for StdRwLock {
    type Conn = ();
    fn insert(&self, key: &Key, id: u32) {
        self.0.write().unwrap().insert(*key, id);
    }
    fn remove(&self, key: &Key, _: ()) {
        self.0.write().unwrap().remove(key);
    }
}

/// dashmap: a `RwLock` per shard.
pub struct Dash(dashmap::DashMap<Key, u32, ahash::RandomState>);

impl Peer for Dash {
    const NAME: &'static str = "dashmap";
    type Pin<'a> = ();
    fn pin(&self) {}
    #[inline]
    fn get(&self, _: &(), key: &Key) -> bool {
        black_box(self.0.get(key)).is_some()
    }
}

impl Build for Dash {
    fn with_keys(keys: &[Key]) -> Self {
        let map = dashmap::DashMap::with_capacity_and_hasher(keys.len(), hasher());
        for (i, k) in keys.iter().enumerate() {
            map.insert(*k, i as u32);
        }
        Self(map)
    }
}

impl ConcurrentPeer for Dash {
    type Conn = ();
    fn insert(&self, key: &Key, id: u32) {
        self.0.insert(*key, id);
    }
    fn remove(&self, key: &Key, _: ()) {
        self.0.remove(key);
    }
}

/// papaya: lock-free reads, incremental resize (its default).
pub struct Papaya(papaya::HashMap<Key, u32, ahash::RandomState>);

impl Peer for Papaya {
    const NAME: &'static str = "papaya";
    type Pin<'a> = papaya::LocalGuard<'a>;
    fn pin(&self) -> papaya::LocalGuard<'_> {
        self.0.guard()
    }
    #[inline]
    fn get(&self, pin: &papaya::LocalGuard<'_>, key: &Key) -> bool {
        black_box(self.0.get(key, pin)).is_some()
    }
}

impl Build for Papaya {
    fn with_keys(keys: &[Key]) -> Self {
        let map = papaya::HashMap::with_capacity_and_hasher(keys.len(), hasher());
        {
            let pinned = map.pin();
            for (i, k) in keys.iter().enumerate() {
                pinned.insert(*k, i as u32);
            }
        }
        Self(map)
    }
}

impl ConcurrentPeer for Papaya {
    type Conn = ();
    fn insert(&self, key: &Key, id: u32) {
        self.0.pin().insert(*key, id);
    }
    fn remove(&self, key: &Key, _: ()) {
        self.0.pin().remove(key);
    }
}

/// scc `HashIndex`: lock-free `peek`, bucket locks for writers.
pub struct Scc(scc::HashIndex<Key, u32, ahash::RandomState>);

impl Peer for Scc {
    const NAME: &'static str = "scc HashIndex";
    type Pin<'a> = scc::ebr::Guard;
    fn pin(&self) -> scc::ebr::Guard {
        scc::ebr::Guard::new()
    }
    #[inline]
    fn get(&self, pin: &scc::ebr::Guard, key: &Key) -> bool {
        black_box(self.0.peek(key, pin)).is_some()
    }
}

impl Build for Scc {
    fn with_keys(keys: &[Key]) -> Self {
        let map = scc::HashIndex::with_capacity_and_hasher(keys.len(), hasher());
        for (i, k) in keys.iter().enumerate() {
            let _ = map.insert(*k, i as u32);
        }
        Self(map)
    }
}

impl ConcurrentPeer for Scc {
    type Conn = ();
    fn insert(&self, key: &Key, id: u32) {
        let _ = self.0.insert(*key, id);
    }
    fn remove(&self, key: &Key, _: ()) {
        self.0.remove(key);
    }
}

/// What a bench PCB's socket is: `()` (nothing to store or read) or a
/// [`Socket`] per connection, stored in the PCB.
pub trait BenchSocket: Send + Sync + 'static {
    /// A listener's socket.
    fn listeners_socket() -> Self;
    /// The socket of connection `id`.
    fn for_conn(id: u32) -> Self;
    /// What a stack reads first from the socket a packet belongs to.
    fn read(&self) -> u64;
}

impl BenchSocket for () {
    fn listeners_socket() {}
    fn for_conn(_: u32) {}
    #[inline]
    fn read(&self) -> u64 {
        0
    }
}

/// A connection's socket as a stack keeps it: one cache line, of which the
/// packet path reads a field right after the lookup (inside the PCB for
/// pcbhash, its own allocation behind an `Arc` for hashbrown+Arc).
#[derive(Debug)]
pub struct Socket {
    pub id: u64,
    pub state: [u64; 7],
}

impl Socket {
    pub fn new(id: u64) -> Self {
        Self { id, state: [0; 7] }
    }
}

impl BenchSocket for Socket {
    fn listeners_socket() -> Socket {
        Socket::new(u64::MAX)
    }
    fn for_conn(id: u32) -> Socket {
        Socket::new(u64::from(id))
    }
    #[inline]
    fn read(&self) -> u64 {
        self.id
    }
}

/// A stack's map of sockets: `hashbrown::HashMap<Key, Arc<Socket>>`; a
/// lookup is `get`, then a read of a field of the socket.
pub struct HashbrownArc(pub hashbrown::HashMap<Key, Arc<Socket>, ahash::RandomState>);

impl Peer for HashbrownArc {
    const NAME: &'static str = "hashbrown+Arc";
    type Pin<'a> = ();
    fn pin(&self) {}
    #[inline]
    fn get(&self, _: &(), key: &Key) -> bool {
        black_box(self.0.get(key).map(|socket| socket.id)).is_some()
    }
}

impl Build for HashbrownArc {
    fn with_keys(keys: &[Key]) -> Self {
        let mut map = hashbrown::HashMap::with_capacity_and_hasher(keys.len(), hasher());
        for (i, key) in keys.iter().enumerate() {
            map.insert(*key, Arc::new(Socket::new(i as u64)));
        }
        Self(map)
    }
}

/// pcbhash, FreeBSD policy, TCP: a listener on the wildcard address of each
/// local port of the keys (`0.0.0.0:443` for [`Shape::Service`]), and one
/// accepted (connected) PCB per key, with socket `S`.
pub struct PcbhashOf<S: BenchSocket> {
    // Dropped in declaration order: the connections, then the listeners.
    pub conns: Vec<Pcb<S>>,
    pub listeners: Vec<Pcb<S>>,
    /// Which listener accepts a flow, by the flow's wildcard local address.
    by_port: hashbrown::HashMap<SocketAddr, usize, ahash::RandomState>,
    pub table: PcbTable<S>,
}

/// pcbhash as most rows use it: nothing in the socket.
pub type Pcbhash = PcbhashOf<()>;

/// pcbhash, with the step a stack takes after the lookup: `socket()`, the
/// socket inside the PCB without a reference count, then a read of a field
/// of the socket.
pub struct PcbhashSocket<'a, S: BenchSocket = ()>(pub &'a PcbhashOf<S>);

impl<S: BenchSocket> Peer for PcbhashSocket<'_, S> {
    const NAME: &'static str = "pcbhash+socket";
    type Pin<'a>
        = Guard
    where
        Self: 'a;
    fn pin(&self) -> Guard {
        self.0.table.pin()
    }
    #[inline]
    fn get(&self, guard: &Guard, key: &Key) -> bool {
        let found = self.0.table.lookup(key.0, key.1, guard);
        black_box(found.and_then(|pcb| pcb.socket()).map(S::read)).is_some()
    }
}

/// The wildcard address a listener for `local` binds.
fn wildcard_of(local: &SocketAddr) -> SocketAddr {
    let ip = match local.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, local.port())
}

impl<S: BenchSocket> PcbhashOf<S> {
    /// A table sized for `capacity` connections, with a listener on the
    /// wildcard address of each of `locals`' ports.
    pub fn with_listeners(capacity: usize, locals: &[SocketAddr]) -> Self {
        let table: PcbTable<S> = PcbTable::<()>::builder()
            .policy(Policy::FreeBsd)
            .seed(SEED)
            .capacity(capacity)
            .build();
        let mut listeners = Vec::new();
        let mut by_port = hashbrown::HashMap::with_hasher(hasher());
        for local in locals {
            let wildcard = wildcard_of(local);
            if by_port.contains_key(&wildcard) {
                continue;
            }
            let family = match wildcard {
                SocketAddr::V4(_) => Family::Inet,
                SocketAddr::V6(_) => Family::Inet6,
            };
            let listener = table.attach(family, Cred::ROOT, S::listeners_socket());
            listener.bind(wildcard).expect("bind a listener");
            listener.listen().expect("listen");
            by_port.insert(wildcard, listeners.len());
            listeners.push(listener);
        }
        Self {
            conns: Vec::new(),
            listeners,
            by_port,
            table,
        }
    }

    /// A table sized for `capacity` connections (at least `keys.len()`)
    /// holding one accepted PCB per key, connection `i` with
    /// `S::for_conn(i)`.
    pub fn with_capacity(keys: &[Key], capacity: usize) -> Self {
        let locals: Vec<SocketAddr> = if keys.is_empty() {
            vec![SERVICE]
        } else {
            keys.iter().map(|key| key.0).collect()
        };
        let mut table = Self::with_listeners(capacity.max(keys.len()), &locals);
        table.conns = keys
            .iter()
            .enumerate()
            .map(|(i, key)| table.accept(key, S::for_conn(i as u32)))
            .collect();
        table
    }

    /// The passive open of `key` on its port's listener.
    #[inline]
    pub fn accept(&self, key: &Key, socket: S) -> Pcb<S> {
        let listener = match self.listeners.as_slice() {
            [only] => only,
            all => &all[self.by_port[&wildcard_of(&key.0)]],
        };
        listener
            .accept(key.0, key.1, socket)
            .expect("accept a fresh 4-tuple")
    }

    /// Batched lookups: `lookup_batch` over groups of 16, one pin per
    /// [`PIN_EVERY`] packets. Returns the hits.
    pub fn lookup_batch(&self, keys: &[Key]) -> usize {
        let mut hits = 0;
        for pinned in keys.chunks(PIN_EVERY) {
            let guard = self.table.pin();
            let mut out = [None; 16];
            for group in pinned.chunks(16) {
                let n = self.table.lookup_batch(group, &guard, &mut out);
                hits += black_box(&out[..n]).iter().filter(|o| o.is_some()).count();
            }
        }
        hits
    }
}

impl<S: BenchSocket> Peer for PcbhashOf<S> {
    const NAME: &'static str = "pcbhash";
    type Pin<'a> = Guard;
    fn pin(&self) -> Guard {
        self.table.pin()
    }
    #[inline]
    fn get(&self, guard: &Guard, key: &Key) -> bool {
        black_box(self.table.lookup(key.0, key.1, guard)).is_some()
    }
}

impl<S: BenchSocket> Build for PcbhashOf<S> {
    fn with_keys(keys: &[Key]) -> Self {
        // Sized like the maps: for the keys, growing past them incrementally.
        Self::with_capacity(keys, keys.len())
    }
}

impl<S: BenchSocket> ConcurrentPeer for PcbhashOf<S> {
    type Conn = Pcb<S>;
    /// The passive open: `accept` on the flow's listener inserts a connected
    /// PCB.
    fn insert(&self, key: &Key, id: u32) -> Pcb<S> {
        self.accept(key, S::for_conn(id))
    }
    /// Close: dropping the handle unlinks the PCB.
    fn remove(&self, _: &Key, conn: Pcb<S>) {
        conn.close();
    }
}

// ---------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------

/// Looks every key up once, pinning once per [`PIN_EVERY`]. Returns the hits.
#[inline(never)]
pub fn lookups<P: Peer>(peer: &P, keys: &[Key]) -> usize {
    let mut hits = 0;
    for pinned in keys.chunks(PIN_EVERY) {
        let pin = peer.pin();
        for key in pinned {
            hits += usize::from(peer.get(&pin, key));
        }
    }
    hits
}

/// One thread's part of the demux mix: operation `i` looks up `gets[i]`,
/// except that every 100 operations one inserts a fresh key and one removes
/// the oldest key this thread inserted (1% each).
#[derive(Debug)]
pub struct MixPlan {
    pub gets: Vec<Key>,
    pub fresh: Vec<Key>,
}

/// Keys this thread inserts before the clock starts, so that removes always
/// have something to remove; the count stays constant during the run.
pub const MIX_BACKLOG: usize = 256;

impl MixPlan {
    /// `ops` operations over `table` keys (random order, seeded by `thread`),
    /// with the fresh keys the inserts need.
    pub fn new(table: &[Key], fresh: &[Key], ops: usize, thread: u64) -> Self {
        let needed = ops / 100 + MIX_BACKLOG + 1;
        assert!(
            fresh.len() >= needed,
            "{} fresh keys, need {needed}",
            fresh.len()
        );
        Self {
            gets: probe_order(table, ops, SEED ^ (thread + 1)),
            fresh: fresh[..needed].to_vec(),
        }
    }
}

/// The demux mix on one thread per plan. Returns the wall time of the timed
/// part (all threads start together; the clock stops when the last ends) and
/// the lookups that missed (must be 0).
pub fn demux_mix<P: ConcurrentPeer>(peer: &P, plans: &[MixPlan]) -> (Duration, usize) {
    let barrier = Barrier::new(plans.len() + 1);
    let misses = AtomicUsize::new(0);
    let elapsed = std::thread::scope(|scope| {
        let workers: Vec<_> = plans
            .iter()
            .map(|plan| {
                let (barrier, misses) = (&barrier, &misses);
                scope.spawn(move || {
                    let mut fresh = plan.fresh.iter().enumerate();
                    let mut live = VecDeque::with_capacity(MIX_BACKLOG + 1);
                    for (id, key) in fresh.by_ref().take(MIX_BACKLOG) {
                        live.push_back((key, peer.insert(key, id as u32)));
                    }
                    barrier.wait();
                    let mut missed = 0;
                    for (i, pinned) in plan.gets.chunks(PIN_EVERY).enumerate() {
                        let pin = peer.pin();
                        for (j, key) in pinned.iter().enumerate() {
                            match (i * PIN_EVERY + j) % 100 {
                                49 => {
                                    let (id, key) = fresh.next().expect("fresh keys");
                                    live.push_back((key, peer.insert(key, id as u32)));
                                }
                                99 => {
                                    let (key, conn) = live.pop_front().expect("a live key");
                                    peer.remove(key, conn);
                                }
                                _ => missed += usize::from(!peer.get(&pin, key)),
                            }
                        }
                    }
                    barrier.wait();
                    // Untimed: back to the table the run started with.
                    for (key, conn) in live {
                        peer.remove(key, conn);
                    }
                    misses.fetch_add(missed, Ordering::Relaxed);
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        barrier.wait();
        let elapsed = start.elapsed();
        for worker in workers {
            worker.join().expect("mix thread");
        }
        elapsed
    });
    (elapsed, misses.into_inner())
}

/// What the growth workload measured on the reader thread.
#[derive(Clone, Debug)]
pub struct Growth {
    /// Lookups timed.
    pub lookups: u64,
    /// Lookups of a key inserted before the lookup started that found nothing
    /// (a false negative; must be 0).
    pub misses: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
    /// The worst lookup among windows of [`GROWTH_WINDOW`] lookups during which
    /// the reader thread was not preempted (Linux `getrusage`, involuntary
    /// context switches); equal to `max_ns` where that cannot be told.
    pub max_quiet_ns: u64,
    /// Windows in which the reader was preempted.
    pub preempted_windows: u64,
    /// The writer's time to insert every key.
    pub fill: Duration,
}

/// Lookups per context-switch check in [`growth`].
pub const GROWTH_WINDOW: usize = 256;

/// Involuntary context switches of the calling thread so far: preemptions by
/// the scheduler. Blocking on a lock is a voluntary switch and is not counted,
/// so a lookup that waits for a writer still counts as a stall.
fn context_switches() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: getrusage writes a `rusage` into the pointer it is given.
        let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) };
        if rc != 0 {
            return None;
        }
        // SAFETY: initialised by the successful call above.
        let usage = unsafe { usage.assume_init() };
        Some(usage.ru_nivcsw as u64)
    }
    #[cfg(not(target_os = "linux"))]
    None
}

/// Growth from empty to `keys.len()` entries on one thread while another
/// looks up random keys already inserted, timing each lookup on its own.
/// The writer keeps the handles, which are returned so the caller can drop
/// them untimed (closing a million PCBs takes a while).
pub fn growth<P: ConcurrentPeer>(keys: &[Key]) -> (Growth, P, Vec<P::Conn>) {
    let peer = P::with_keys(&[]);
    let inserted = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    let ready = Barrier::new(2);
    let (stats, conns) = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            ready.wait();
            let start = Instant::now();
            let mut conns = Vec::with_capacity(keys.len());
            for (i, key) in keys.iter().enumerate() {
                conns.push(peer.insert(key, i as u32));
                inserted.store(i + 1, Ordering::Release);
            }
            let fill = start.elapsed();
            done.store(true, Ordering::Release);
            (fill, conns)
        });
        let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
        let mut rng = Rng::new(SEED ^ 0x9);
        let (mut misses, mut max_quiet, mut preempted) = (0, 0, 0);
        let mut switches = context_switches();
        ready.wait();
        while inserted.load(Ordering::Acquire) == 0 {
            std::hint::spin_loop();
        }
        while !done.load(Ordering::Acquire) {
            let mut window_max = 0;
            for _ in 0..GROWTH_WINDOW / PIN_EVERY {
                let pin = peer.pin();
                for _ in 0..PIN_EVERY {
                    let key = &keys[rng.below(inserted.load(Ordering::Acquire))];
                    let start = Instant::now();
                    let hit = peer.get(&pin, key);
                    let ns = start.elapsed().as_nanos() as u64;
                    misses += u64::from(!hit);
                    window_max = window_max.max(ns);
                    hist.saturating_record(ns.max(1));
                }
            }
            let now = context_switches();
            if now.is_some() && now == switches {
                max_quiet = max_quiet.max(window_max);
            } else {
                preempted += 1;
            }
            switches = now;
        }
        let (fill, conns) = writer.join().expect("writer");
        let max_ns = hist.max();
        let stats = Growth {
            lookups: hist.len(),
            misses,
            p50_ns: hist.value_at_quantile(0.5),
            p99_ns: hist.value_at_quantile(0.99),
            p999_ns: hist.value_at_quantile(0.999),
            max_ns,
            max_quiet_ns: if switches.is_some() {
                max_quiet
            } else {
                max_ns
            },
            preempted_windows: preempted,
            fill,
        };
        (stats, conns)
    });
    (stats, peer, conns)
}

/// What a connect storm measured.
#[derive(Clone, Debug)]
pub struct Storm {
    pub policy: Policy,
    /// FreeBSD's `net.inet.ip.portrange.randomized`.
    pub randomized: bool,
    pub range: RangeInclusive<u16>,
    /// Successful connects (the range, when it ends in exhaustion).
    pub connects: usize,
    /// Mean cost of one connect in each tenth of the run, in nanoseconds.
    pub decile_ns: [f64; 10],
    /// The error that ended the storm.
    pub end: Option<Error>,
    pub total: Duration,
}

impl Storm {
    /// The last tenth's per-connect cost over the first tenth's.
    pub fn ratio(&self) -> f64 {
        self.decile_ns[9] / self.decile_ns[0]
    }
}

/// The peer every connect of a storm goes to.
pub const STORM_PEER: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 80));

/// Connects from unbound PCBs toward [`STORM_PEER`] (a listener on
/// `127.0.0.1:80` in the same table) until the ephemeral range is exhausted,
/// timing each connect (`attach` is outside the clock).
/// `randomized` is FreeBSD's `net.inet.ip.portrange.randomized` (the
/// default, on: each scan starts at a random port; off: after the last port
/// handed out).
pub fn connect_storm(
    policy: Policy,
    range: Option<RangeInclusive<u16>>,
    randomized: bool,
) -> Storm {
    let mut builder = PcbTable::<()>::builder()
        .policy(policy)
        .seed(SEED)
        .randomized_ports(randomized);
    if let Some(range) = range.clone() {
        builder = builder.ephemeral_ports(range);
    }
    let table: PcbTable<()> = builder.build();
    let listener = table.attach(Family::Inet, Cred::ROOT, ());
    listener.bind(STORM_PEER).expect("bind the peer's listener");
    listener.listen().expect("listen");
    let mut conns = Vec::new();
    let mut costs = Vec::new();
    let start = Instant::now();
    let end = loop {
        let pcb = table.attach(Family::Inet, Cred::user(1000), ());
        let t = Instant::now();
        let result = pcb.connect(STORM_PEER);
        let ns = t.elapsed().as_nanos() as f64;
        match result {
            Ok(_) => {
                costs.push(ns);
                conns.push(pcb);
            }
            Err(error) => break Some(error),
        }
    };
    let total = start.elapsed();
    let mut decile_ns = [0.0; 10];
    let tenth = costs.len() / 10;
    for (d, slot) in decile_ns.iter_mut().enumerate() {
        let part = &costs[d * tenth..if d == 9 { costs.len() } else { (d + 1) * tenth }];
        *slot = part.iter().sum::<f64>() / part.len().max(1) as f64;
    }
    let range = range.unwrap_or_else(|| {
        pcbhash::policy::builtin(policy, pcbhash::Protocol::Tcp).default_ephemeral()
    });
    Storm {
        policy,
        randomized,
        range,
        connects: costs.len(),
        decile_ns,
        end,
        total,
    }
}

/// Fills `range` with connects toward [`STORM_PEER`] on a fresh table and
/// returns the time spent in `connect` (for the criterion bench).
pub fn fill_range(policy: Policy, range: RangeInclusive<u16>) -> (Duration, usize) {
    let table: PcbTable<()> = PcbTable::<()>::builder()
        .policy(policy)
        .seed(SEED)
        .ephemeral_ports(range)
        .build();
    let mut conns = Vec::new();
    let mut spent = Duration::ZERO;
    loop {
        let pcb = table.attach(Family::Inet, Cred::user(1000), ());
        let t = Instant::now();
        let result = pcb.connect(STORM_PEER);
        spent += t.elapsed();
        match result {
            Ok(_) => conns.push(pcb),
            Err(_) => break,
        }
    }
    (spent, conns.len())
}
