//! Helpers for tests against the running Linux kernel.
//!
//! Each test that talks to the kernel moves its own thread into a fresh
//! network namespace ([`Netns::enter`]): only that thread's sockets and
//! sysctl writes live there, the host's network is never touched, and tests
//! running in parallel threads do not see each other. Inside, only the
//! loopback interface exists; it is brought up and the sysctls that decide
//! bind, connect and TIME_WAIT behaviour are pinned (the kernel's defaults,
//! except `tcp_tw_reuse=0`, since the table has no clock).
//!
//! If the namespace cannot be created (no privilege, no Linux), a test that
//! enters it with [`Netns::enter_or_skip`] prints one line saying what it
//! skipped and why, and returns; with `CI=true` in the environment it fails
//! instead ([`skip`]).

#![allow(dead_code)] // each test file uses a different part

pub mod devices;
pub mod dual;
pub mod receive;
pub mod skip;
pub mod tcp_states;

use std::fs;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, SockAddr, Socket, Type};

/// The sysctls pinned in every namespace, with their values. The ephemeral
/// range is set separately ([`Netns::set_port_range`]).
const PINNED: &[(&str, &str)] = &[
    ("net/ipv4/ip_local_reserved_ports", ""),
    ("net/ipv4/ip_autobind_reuse", "0"),
    ("net/ipv4/tcp_tw_reuse", "0"),
    ("net/ipv4/tcp_tw_reuse_delay", "1000"),
    ("net/ipv4/tcp_timestamps", "1"),
    ("net/ipv4/ip_nonlocal_bind", "0"),
    ("net/ipv4/ip_unprivileged_port_start", "1024"),
    ("net/ipv6/bindv6only", "0"),
];

/// A private network namespace that the current thread has entered.
///
/// Not `Send`: the namespace belongs to the thread that entered it.
#[derive(Debug)]
pub struct Netns {
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Netns {
    /// Moves the current thread into a new network namespace, brings `lo` up
    /// and pins the sysctls. `Err` says why it could not.
    pub fn enter() -> Result<Netns, String> {
        if !cfg!(target_os = "linux") {
            return Err("not Linux".into());
        }
        // SAFETY: `unshare` takes no pointers; CLONE_NEWNET only changes the
        // network namespace of the calling thread.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        if rc != 0 {
            return Err(format!(
                "cannot create a network namespace (unshare(CLONE_NEWNET)): {}",
                io::Error::last_os_error()
            ));
        }
        loopback_up().map_err(|e| format!("cannot bring lo up: {e}"))?;
        let ns = Netns {
            _not_send: std::marker::PhantomData,
        };
        for (name, value) in PINNED {
            ns.sysctl(name, value)
                .map_err(|e| format!("cannot pin {name}: {e}"))?;
        }
        ns.set_port_range(32768, 60999)
            .map_err(|e| format!("cannot pin the port range: {e}"))?;
        Ok(ns)
    }

    /// Writes a sysctl of this namespace (`name` relative to the sysctl
    /// tree, e.g. `net/ipv4/ip_local_port_range`).
    pub fn sysctl(&self, name: &str, value: &str) -> io::Result<()> {
        fs::write(format!("/proc/sys/{name}"), format!("{value}\n"))?;
        let back = self.read_sysctl(name)?;
        let want: Vec<&str> = value.split_whitespace().collect();
        let got: Vec<&str> = back.split_whitespace().collect();
        if want != got {
            return Err(io::Error::other(format!(
                "{name} reads back {back:?}, not {value:?}"
            )));
        }
        Ok(())
    }

    /// Reads a sysctl of this namespace.
    pub fn read_sysctl(&self, name: &str) -> io::Result<String> {
        fs::read_to_string(format!("/proc/sys/{name}"))
    }

    /// Pins `ip_local_port_range` to `[low, high]`.
    pub fn set_port_range(&self, low: u16, high: u16) -> io::Result<()> {
        // The kernel refuses a new range whose low end is not below the
        // current high end, so widen first.
        self.sysctl("net/ipv4/ip_local_port_range", "1024 65535")?;
        self.sysctl("net/ipv4/ip_local_port_range", &format!("{low} {high}"))
    }

    /// The kernel's TCP socket tables of this namespace, for messages.
    pub fn tcp_table_dump(&self) -> String {
        ["/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"]
            .iter()
            .filter_map(|t| fs::read_to_string(t).ok())
            .flat_map(|text| {
                text.lines()
                    .skip(1)
                    .map(|l| {
                        let f: Vec<&str> = l.split_whitespace().collect();
                        format!("  {} -> {} state {}\n", f[1], f[2], f[3])
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The TCP sockets of this namespace in `state` (hex, as in
    /// `/proc/net/tcp*`, e.g. `06` for TIME_WAIT) on local port `port`.
    pub fn tcp_sockets_in_state(&self, state: &str, port: u16) -> usize {
        let mut count = 0;
        for table in ["/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"] {
            let Ok(text) = fs::read_to_string(table) else {
                continue;
            };
            for line in text.lines().skip(1) {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let local_port = fields
                    .get(1)
                    .and_then(|l| l.rsplit(':').next())
                    .and_then(|p| u16::from_str_radix(p, 16).ok());
                if local_port == Some(port) && fields.get(3) == Some(&state) {
                    count += 1;
                }
            }
        }
        count
    }
}

/// Brings `lo` up.
fn loopback_up() -> io::Result<()> {
    link_up("lo")
}

/// Brings the device `name` of the calling thread's namespace up
/// (`ip link set <name> up`), by SIOCGIFFLAGS / SIOCSIFFLAGS.
fn link_up(name: &str) -> io::Result<()> {
    let probe = Socket::new(Domain::IPV4, Type::DGRAM, None)?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&probe);
    // SAFETY: `ifreq` is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    // The name and a NUL (`ifr_name` has room for 15 bytes and the NUL).
    assert!(name.len() < req.ifr_name.len(), "device name too long");
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: `fd` is an open socket and `req` a valid, NUL-terminated
    // `ifreq` that outlives the call.
    if unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS filled the `ifru_flags` member of the union.
    unsafe {
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
    }
    // SAFETY: as for SIOCGIFFLAGS above.
    if unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A TCP or UDP socket created with the owner `uid` (the kernel's `sk_uid`
/// is the creating thread's fsuid).
pub fn socket_as(uid: u32, v6: bool, udp: bool) -> io::Result<Socket> {
    let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
    let kind = if udp { Type::DGRAM } else { Type::STREAM };
    if uid == 0 {
        return Socket::new(domain, kind, None);
    }
    set_fsuid(uid);
    let socket = Socket::new(domain, kind, None);
    set_fsuid(0);
    socket
}

/// Sets the fsuid of the calling thread only (the raw system call, which,
/// unlike `seteuid`, is not broadcast to the other threads).
fn set_fsuid(uid: u32) {
    // SAFETY: `setfsuid` takes an integer and changes only the calling
    // thread's filesystem uid.
    unsafe {
        libc::syscall(libc::SYS_setfsuid, uid as libc::c_long);
    }
}

/// The errno of a result, 0 for success.
pub fn errno<T>(result: &io::Result<T>) -> i32 {
    match result {
        Ok(_) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    }
}

/// The errno of a table result, 0 for success.
pub fn table_errno<T>(result: &Result<T, pcbhash::Error>) -> i32 {
    match result {
        Ok(_) => 0,
        Err(e) => e.errno(),
    }
}

/// A readable errno name for messages.
pub fn errno_name(errno: i32) -> String {
    let name = match errno {
        0 => "ok",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::EINVAL => "EINVAL",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EISCONN => "EISCONN",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::ENOPROTOOPT => "ENOPROTOOPT",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::EACCES => "EACCES",
        libc::EAGAIN => "EAGAIN",
        libc::ETIMEDOUT => "ETIMEDOUT",
        _ => return format!("errno {errno}"),
    };
    name.to_string()
}

/// The local address of a socket.
pub fn local_addr(socket: &Socket) -> Option<SocketAddr> {
    socket.local_addr().ok().and_then(|a| a.as_socket())
}

/// The peer address of a socket (`getpeername`), if it is connected.
pub fn peer_addr(socket: &Socket) -> Option<SocketAddr> {
    socket.peer_addr().ok().and_then(|a| a.as_socket())
}

/// `setsockopt(IPPROTO_IP, name, value)` with a 32-bit value, for the
/// options socket2 has no call for (`IP_BIND_ADDRESS_NO_PORT`,
/// `IP_LOCAL_PORT_RANGE`).
pub fn set_ip_option(socket: &Socket, name: libc::c_int, value: u32) -> io::Result<()> {
    // SAFETY: the socket is open, and `value` is a live `u32` of the length
    // passed.
    let rc = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(socket),
            libc::IPPROTO_IP,
            name,
            (&value as *const u32).cast(),
            std::mem::size_of::<u32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Closes with SO_LINGER 0: a connected socket resets instead of entering
/// TIME_WAIT.
pub fn close_now(socket: Socket) {
    let _ = socket.set_linger(Some(Duration::ZERO));
    drop(socket);
}

/// A blocking `connect()`, with a bound on the wait (loopback answers at
/// once; the bound only keeps a divergence from hanging the test).
pub fn connect(socket: &Socket, to: SocketAddr) -> io::Result<()> {
    let to = SockAddr::from(to);
    socket.connect_timeout(&to, Duration::from_secs(2))?;
    // The timed connect is non-blocking underneath and leaves the socket in
    // SS_CONNECTING; the second call moves it to SS_CONNECTED (and returns
    // 0), as a blocking connect() would have, so that a later connect()
    // gives EISCONN.
    match socket.connect(&to) {
        Err(e) if e.raw_os_error() == Some(libc::EISCONN) => Ok(()),
        other => other,
    }
}

/// `connect(AF_UNSPEC)`: dissolves a UDP association.
pub fn disconnect(socket: &Socket) -> io::Result<()> {
    let fd = std::os::fd::AsRawFd::as_raw_fd(socket);
    // SAFETY: `sockaddr` is plain data; all-zero is AF_UNSPEC.
    let unspec: libc::sockaddr = unsafe { std::mem::zeroed() };
    let len = std::mem::size_of::<libc::sockaddr>() as libc::socklen_t;
    // SAFETY: `fd` is an open socket and `unspec` a valid `sockaddr` of
    // `len` bytes that outlives the call.
    if unsafe { libc::connect(fd, &unspec, len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Accepts one pending connection on `listener` without blocking, as `uid`.
///
/// `accept(2)` gives the connection a new `struct socket` and `sock_graft`
/// sets its `sk_uid` to the accepting thread's fsuid; accepting as the
/// listener's owner keeps the owner the connection had since the handshake,
/// which is what the table's `accept` models.
pub fn try_accept(listener: &Socket, uid: u32) -> Option<(Socket, SocketAddr)> {
    listener.set_nonblocking(true).ok()?;
    set_fsuid(uid);
    let accepted = listener.accept();
    set_fsuid(0);
    let _ = listener.set_nonblocking(false);
    let (socket, peer) = accepted.ok()?;
    Some((socket, peer.as_socket()?))
}
