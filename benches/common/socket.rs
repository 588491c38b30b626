//! What a lookup reads after it found the connection: nothing, or a field
//! of a stack's socket, kept inside the PCB (pcbhash) or behind an `Arc`
//! (`HashbrownArc`).

use std::hint::black_box;
use std::sync::Arc;

use super::keys::hasher;
use super::keys::Key;
use super::peers::{Build, Peer};

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
