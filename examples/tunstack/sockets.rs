//! The stack's sockets: the `S` of its two tables. Each one records the
//! slot of its owner handle ([`super::owners`]); a connection's mutable
//! state sits behind a mutex, since the table hands out shared references.

use std::sync::Mutex;

use super::apps::{App, Service, UdpService};
use super::tcp::Tcb;

/// A TCP socket.
#[derive(Debug)]
pub enum TcpSock {
    /// A listener and the service its connections run.
    Listener {
        /// Its owner handle's slot.
        slot: usize,
        /// The service.
        service: Service,
    },
    /// A connection.
    Conn {
        /// Its owner handle's slot.
        slot: usize,
        /// Its control block and application.
        conn: Mutex<Conn>,
    },
}

impl TcpSock {
    /// The slot of the owner handle.
    pub fn slot(&self) -> usize {
        match self {
            TcpSock::Listener { slot, .. } | TcpSock::Conn { slot, .. } => *slot,
        }
    }
}

/// A connection: the TCP state and the application on top.
#[derive(Debug)]
pub struct Conn {
    /// The control block.
    pub tcb: Tcb,
    /// The application.
    pub app: App,
}

/// A UDP socket. (The stack acts on its UDP PCBs only at shutdown, all at
/// once, so it records no slot.)
#[derive(Debug)]
pub struct UdpSock {
    /// What it answers.
    pub service: UdpService,
}
