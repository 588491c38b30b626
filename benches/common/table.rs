//! pcbhash as a peer: a table of accepted connections under wildcard
//! listeners, looked up with or without reading the socket.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use pcbhash::{Cred, Family, Guard, Pcb, PcbTable, Policy};

use super::keys::{hasher, Key, SEED, SERVICE};
use super::peers::{Build, ConcurrentPeer, Peer, PIN_EVERY};
use super::socket::BenchSocket;

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
