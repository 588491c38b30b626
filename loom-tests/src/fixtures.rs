//! What the models are built from: a socket that counts its drops, a table
//! builder with the models' settings (and a broken variant when asked),
//! addresses and credentials.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize as StdAtomicUsize, Ordering as StdOrdering};
use std::sync::Arc;

use pcbhash::{Builder, Cred, PcbTable, Policy, Protocol};

/// The socket type of the models: it counts its own drops.
#[derive(Debug)]
pub struct Sock {
    pub(crate) drops: Arc<StdAtomicUsize>,
}

impl Sock {
    /// A socket whose drop increments `drops`.
    pub fn new(drops: &Arc<StdAtomicUsize>) -> Sock {
        Sock {
            drops: drops.clone(),
        }
    }
}

impl Drop for Sock {
    fn drop(&mut self) {
        self.drops.fetch_add(1, StdOrdering::SeqCst);
    }
}

/// `"a.b.c.d:port"` as a socket address.
pub fn addr(text: &str) -> SocketAddr {
    text.parse().expect("a socket address")
}

/// A table builder for the models: fixed seed, FreeBSD rules unless told
/// otherwise, and, with `broken`, one piece of synchronisation removed.
pub fn builder(protocol: Protocol, broken: Option<&str>) -> Builder {
    let builder = PcbTable::<Sock>::builder()
        .policy(Policy::FreeBsd)
        .protocol(protocol)
        .seed(7)
        .ephemeral_ports(40000..=40001)
        // Few exact-index buckets: each is eight atomics for loom to track.
        .capacity(16);
    apply_broken(builder, broken)
}

#[cfg(pcbhash_broken)]
fn apply_broken(builder: Builder, broken: Option<&str>) -> Builder {
    match broken {
        Some(variant) => builder.broken(variant),
        None => builder,
    }
}

#[cfg(not(pcbhash_broken))]
fn apply_broken(builder: Builder, broken: Option<&str>) -> Builder {
    assert!(
        broken.is_none(),
        "broken variants need --cfg pcbhash_broken"
    );
    builder
}

/// A credential whose uid names the PCB, so that a lookup result can be
/// identified after its socket is gone. Privileged, so that the uid never
/// matters to a conflict check.
pub fn cred(uid: u32) -> Cred {
    Cred {
        uid,
        privileged: true,
    }
}

/// `EADDRINUSE` on this host.
pub(crate) fn libc_eaddrinuse() -> i32 {
    libc::EADDRINUSE
}
