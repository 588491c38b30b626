//! The peers: what a table must do to be compared (`Peer`, `Build`,
//! `ConcurrentPeer`), the hash maps and the linear scan pcbhash is compared
//! with, and the lookup loop every peer runs.

use std::hint::black_box;
use std::sync::RwLock;

use super::keys::{hasher, Key};

/// Lookups per pin (one receive batch).
pub const PIN_EVERY: usize = 64;

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
