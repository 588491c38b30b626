//! Which socket receives: real datagrams and SYNs over loopback, and the
//! table's lookup for the same packets.
//!
//! The kernel's lookups add one point to a socket whose last packet arrived
//! on the CPU now receiving (`sk_incoming_cpu` in `compute_score`). To keep
//! that from breaking ties by chance, the sending thread is pinned to one
//! CPU (loopback delivers on the sender's CPU) and every kernel socket of a
//! scenario is told that CPU up front (`SO_INCOMING_CPU`), so the point is
//! the same for all of them.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use pcbhash::{Pcb, PcbTable};
use socket2::{Domain, Socket, Type};

use super::close_now;

/// Pins the calling thread to the CPU it runs on; returns that CPU.
pub fn pin_cpu() -> usize {
    // SAFETY: `sched_getcpu` takes no arguments.
    let cpu = unsafe { libc::sched_getcpu() }.max(0) as usize;
    // SAFETY: `cpu_set_t` is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is below CPU_SETSIZE (it is a CPU this thread ran on).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid `cpu_set_t` of the size passed; pid 0 is the
    // calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    assert_eq!(rc, 0, "sched_setaffinity");
    cpu
}

/// `SO_INCOMING_CPU` = `cpu` on a kernel socket (see the module docs).
pub fn same_cpu(socket: &Socket, cpu: usize) {
    let value = cpu as libc::c_int;
    // SAFETY: `socket` is open and `value` a valid `c_int` of the length
    // passed, alive for the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_INCOMING_CPU,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_INCOMING_CPU");
}

/// Sends one datagram from `from` to `to` and returns the index of the
/// socket of `sockets` that got it (each is drained).
pub fn udp_receiver(sockets: &[&Socket], from: SocketAddr, to: SocketAddr) -> Option<usize> {
    let sender = bound_at(from, Type::DGRAM);
    sender.send_to(b"x", &to.into()).expect("send");
    for socket in sockets {
        socket.set_nonblocking(true).expect("non-blocking");
    }
    // Loopback delivers before send_to returns; the bound only keeps a
    // lost datagram from hanging the test.
    let deadline = Instant::now() + Duration::from_millis(2);
    loop {
        let mut buf = [std::mem::MaybeUninit::new(0u8); 16];
        for (i, socket) in sockets.iter().enumerate() {
            if socket.recv(&mut buf).is_ok() {
                return Some(i);
            }
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Connects from `from` to `to` and returns the index of the listener of
/// `listeners` that has the connection (it is accepted and reset).
pub fn tcp_receiver(listeners: &[&Socket], from: SocketAddr, to: SocketAddr) -> Option<usize> {
    let client = bound_at(from, Type::STREAM);
    let connected = client.connect_timeout(&to.into(), Duration::from_secs(2));
    let mut found = None;
    if connected.is_ok() {
        let deadline = Instant::now() + Duration::from_millis(500);
        'wait: while Instant::now() < deadline {
            for (i, listener) in listeners.iter().enumerate() {
                listener.set_nonblocking(true).expect("non-blocking");
                if let Ok((child, _)) = listener.accept() {
                    close_now(child);
                    found = Some(i);
                    break 'wait;
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    close_now(client);
    found
}

/// A socket of `kind` bound to `from` (with SO_REUSEADDR), to send from.
fn bound_at(from: SocketAddr, kind: Type) -> Socket {
    let domain = if from.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let socket = Socket::new(domain, kind, None).expect("socket");
    socket.set_reuse_address(true).expect("SO_REUSEADDR");
    socket.bind(&from.into()).expect("bind the source");
    socket
}

/// The index of the PCB of `pcbs` that the table's lookup gives a packet
/// from `from` to `to`.
pub fn table_receiver(
    table: &PcbTable<()>,
    pcbs: &[&Pcb<()>],
    from: SocketAddr,
    to: SocketAddr,
) -> Option<usize> {
    let guard = table.pin();
    let found = table.lookup(to, from, &guard)?;
    pcbs.iter().position(|pcb| found.is(pcb))
}

/// Sends one datagram from `from` to `to` (a broadcast or multicast
/// address too: the sender has SO_BROADCAST and sends multicast on `lo`)
/// and returns the indices of `sockets` that got it.
pub fn kernel_receivers(sockets: &[&Socket], from: SocketAddr, to: SocketAddr) -> BTreeSet<usize> {
    let sender = Socket::new(Domain::IPV4, Type::DGRAM, None).expect("socket");
    sender.set_reuse_address(true).expect("SO_REUSEADDR");
    sender.set_broadcast(true).expect("SO_BROADCAST");
    sender
        .set_multicast_if_v4(&Ipv4Addr::LOCALHOST)
        .expect("IP_MULTICAST_IF");
    sender.bind(&from.into()).expect("bind the sender");
    sender.send_to(b"x", &to.into()).expect("send");
    for socket in sockets {
        socket.set_nonblocking(true).expect("non-blocking");
    }
    // Loopback queues every copy before send_to returns; the wait only
    // keeps a late copy from being missed.
    let mut got = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_millis(5);
    loop {
        let mut buf = [std::mem::MaybeUninit::new(0u8); 16];
        for (i, socket) in sockets.iter().enumerate() {
            while socket.recv(&mut buf).is_ok() {
                got.insert(i);
            }
        }
        if Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
