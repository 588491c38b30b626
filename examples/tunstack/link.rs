//! The link: a private network namespace and, in it, a TUN device whose
//! kernel side has TEST-NET addresses (RFC 5737, RFC 3849). The stack owns
//! the other addresses of those nets and reads and writes raw IP packets on
//! the device; the kernel routes everything for the nets into it.
//!
//! ```text
//!   kernel sockets (std::net, curl)        the stack (this example)
//!   192.0.2.2/24, 2001:db8::2/64  <-TUN->  192.0.2.1, 2001:db8::1
//! ```
//!
//! The host's network is never touched: the device lives only in the
//! namespace of the thread that created it.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use pcbhash::Device;
use tun::AbstractDevice;

/// The stack's IPv4 address.
pub const STACK_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The kernel side's IPv4 address, on the TUN device.
pub const KERNEL_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// The IPv4 net's broadcast address.
pub const BROADCAST_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 255);
/// The stack's IPv6 address.
pub const STACK_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// The kernel side's IPv6 address, on the TUN device.
pub const KERNEL_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

/// The device's name inside the namespace.
const NAME: &str = "tunstack0";

/// The stack's source address toward `peer` (its routing decision, which
/// the table asks for when a connect() starts from a wildcard): its own
/// address on the peer's net, or none.
pub fn source_for(peer: IpAddr) -> Option<IpAddr> {
    match peer {
        IpAddr::V4(v4) if v4.octets()[..3] == STACK_V4.octets()[..3] => Some(STACK_V4.into()),
        IpAddr::V6(v6) if v6.segments()[..4] == STACK_V6.segments()[..4] => Some(STACK_V6.into()),
        _ => None,
    }
}

/// Whether `ip` is one of the stack's own addresses.
pub fn is_local(ip: IpAddr) -> bool {
    ip == IpAddr::V4(STACK_V4) || ip == IpAddr::V6(STACK_V6)
}

/// Moves the calling thread into a new network namespace of its own (the
/// threads it spawns afterwards, and the processes they start, share it).
pub fn enter_private_namespace() -> Result<(), String> {
    // SAFETY: `unshare` takes no pointers; CLONE_NEWNET changes only the
    // network namespace of the calling thread.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(format!(
            "cannot create a private network namespace (unshare(CLONE_NEWNET), needs root): {}",
            io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// The TUN device, up, with the kernel side's addresses.
pub struct Link {
    device: tun::Device,
    /// The device's interface index: the packets' arrival device.
    pub index: Device,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("index", &self.index).finish()
    }
}

impl Link {
    /// Creates the device in the calling thread's namespace.
    pub fn open() -> Result<Link, String> {
        if !Path::new("/dev/net/tun").exists() {
            return Err("no /dev/net/tun: this kernel offers no TUN devices here".into());
        }
        let mut config = tun::Configuration::default();
        config
            .tun_name(NAME)
            .address(KERNEL_V4)
            .netmask(Ipv4Addr::new(255, 255, 255, 0))
            .mtu(1500)
            .up();
        let device = tun::create(&config)
            .map_err(|e| format!("cannot create the TUN device {NAME} (needs root): {e}"))?;
        let index = device
            .tun_index()
            .map_err(|e| format!("no index for {NAME}: {e}"))?;
        add_v6_address(index, KERNEL_V6, 64)
            .map_err(|e| format!("cannot give {NAME} the address {KERNEL_V6}/64: {e}"))?;
        device
            .set_nonblock()
            .map_err(|e| format!("cannot make {NAME} non-blocking: {e}"))?;
        Ok(Link {
            device,
            index: Device(index as u32),
        })
    }

    /// Waits at most `timeout` for a packet to read.
    pub fn wait(&self, timeout: Duration) {
        let mut poll = libc::pollfd {
            fd: self.device.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `poll` reads and writes exactly the one `pollfd` it is
        // given, which lives across the call.
        unsafe { libc::poll(&mut poll, 1, timeout.as_millis() as libc::c_int) };
    }

    /// One packet, if one is waiting.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self.device.recv(buf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends one packet to the kernel.
    pub fn send(&self, packet: &[u8]) -> io::Result<()> {
        self.device.send(packet).map(drop)
    }
}

/// `ip -6 addr add <address>/<prefix> dev <index>`, by SIOCSIFADDR on an
/// IPv6 socket (the TUN crate sets IPv4 addresses only).
fn add_v6_address(index: i32, address: Ipv6Addr, prefix: u32) -> io::Result<()> {
    let probe = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::DGRAM, None)?;
    // SAFETY: `in6_ifreq` is plain data; all-zero is a valid value.
    let mut req: libc::in6_ifreq = unsafe { std::mem::zeroed() };
    req.ifr6_addr.s6_addr = address.octets();
    req.ifr6_prefixlen = prefix;
    req.ifr6_ifindex = index;
    // SAFETY: the socket is open and `req` is a valid `in6_ifreq` that
    // outlives the call, which only reads it.
    if unsafe { libc::ioctl(probe.as_raw_fd(), libc::SIOCSIFADDR, &req) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
