//! The kernel's TCP sockets of the current network namespace, as
//! `/proc/net/tcp` and `/proc/net/tcp6` list them, with canonical addresses
//! (a v4-mapped address as IPv4), so that a socket of either family is found
//! by the addresses a table PCB shows.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// `TCP_TIME_WAIT` in the `st` column.
pub const TIME_WAIT: u8 = 0x06;

/// One line of the tables: local address, remote address, state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSocket {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub state: u8,
}

/// Every TCP socket of the namespace, listeners included.
pub fn tcp_sockets() -> Vec<TcpSocket> {
    let mut all = Vec::new();
    for table in ["/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(remote), Some(state)) = (
                fields.get(1).and_then(|f| endpoint(f)),
                fields.get(2).and_then(|f| endpoint(f)),
                fields.get(3).and_then(|f| u8::from_str_radix(f, 16).ok()),
            ) else {
                continue;
            };
            all.push(TcpSocket {
                local,
                remote,
                state,
            });
        }
    }
    all
}

/// The state of the socket with this 4-tuple (compared in canonical form),
/// if the kernel has one.
pub fn tcp_state(local: SocketAddr, remote: SocketAddr) -> Option<u8> {
    let (local, remote) = (canonical(local), canonical(remote));
    tcp_sockets()
        .into_iter()
        .find(|s| s.local == local && s.remote == remote)
        .map(|s| s.state)
}

/// A v4-mapped address as IPv4; anything else as it is.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// `0100007F:9C40` (IPv4) or 32 hex digits and a port (IPv6): each 32-bit
/// word is printed as the host reads it from memory.
fn endpoint(field: &str) -> Option<SocketAddr> {
    let (addr, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |hex: &str| u32::from_str_radix(hex, 16).ok().map(u32::to_ne_bytes);
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(addr)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                chunk.copy_from_slice(&word(&addr[i * 8..i * 8 + 8])?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes)).to_canonical()
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}
