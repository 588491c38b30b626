//! The kernel side: clients and a server made of the kernel's own sockets
//! (`std::net`) and of `curl`, in the stack's namespace. Each one checks
//! every byte it gets back and says how many it checked.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long any one exchange may take before it counts as failed.
const TIMEOUT: Duration = Duration::from_secs(10);

/// What a client checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checked {
    /// Connections (or exchanges) made.
    pub exchanges: u64,
    /// Bytes sent and compared on their way back.
    pub bytes: u64,
}

impl std::ops::Add for Checked {
    type Output = Checked;
    fn add(self, other: Checked) -> Checked {
        Checked {
            exchanges: self.exchanges + other.exchanges,
            bytes: self.bytes + other.bytes,
        }
    }
}

/// The message of exchange `i`: 1 to 4,000 bytes, a pattern of `i`.
pub fn message(i: u64) -> Vec<u8> {
    let len = 1 + (i * 7_919) % 4_000;
    (0..len).map(|k| ((k * 31 + i) % 251) as u8).collect()
}

/// `connections` TCP echo connections to `server`, `parallel` at a time:
/// each sends its message, reads it back, half-closes and expects the
/// stack's FIN with nothing more. Gives the connections and bytes checked.
pub fn tcp_echo(server: SocketAddr, connections: u64, parallel: u64) -> Result<Checked, String> {
    let workers: Vec<JoinHandle<Result<Checked, String>>> = (0..parallel)
        .map(|worker| {
            thread::spawn(move || {
                let mut checked = Checked::default();
                for i in (worker..connections).step_by(parallel as usize) {
                    let bytes = echo_once(server, i).map_err(|e| format!("connection {i}: {e}"))?;
                    checked = checked
                        + Checked {
                            exchanges: 1,
                            bytes,
                        };
                }
                Ok(checked)
            })
        })
        .collect();
    let mut total = Checked::default();
    for worker in workers {
        total = total + worker.join().map_err(|_| "a client thread panicked")??;
    }
    Ok(total)
}

fn echo_once(server: SocketAddr, i: u64) -> io::Result<u64> {
    let sent = message(i);
    let mut stream = TcpStream::connect_timeout(&server, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_nodelay(true)?;
    stream.write_all(&sent)?;
    let mut back = vec![0; sent.len()];
    stream.read_exact(&mut back)?;
    if back != sent {
        return Err(io::Error::other("the echo differs from what was sent"));
    }
    stream.shutdown(Shutdown::Write)?;
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest)?;
    if !rest.is_empty() {
        return Err(io::Error::other(format!(
            "{} bytes after the echo",
            rest.len()
        )));
    }
    Ok(sent.len() as u64)
}

/// The body `curl` fetches from `url`; `Ok(None)` if there is no `curl`.
pub fn curl(url: &str) -> Result<Option<Vec<u8>>, String> {
    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--globoff", "--noproxy", "*"])
        .args(["--max-time", "10", "--http1.0", url])
        .output();
    match output {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot run curl: {e}")),
        Ok(out) if out.status.success() => Ok(Some(out.stdout)),
        Ok(out) => Err(format!(
            "curl {url}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

/// A UDP socket of the kernel side, bound to `local`, with the timeout.
fn udp_socket(local: SocketAddr) -> Result<UdpSocket, String> {
    let socket = UdpSocket::bind(local).map_err(|e| format!("bind {local}: {e}"))?;
    socket
        .set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    Ok(socket)
}

/// Sends `payload` to `to` from `socket`; expects `want` back from
/// `from`.
fn udp_exchange(
    socket: &UdpSocket,
    to: SocketAddr,
    payload: &[u8],
    from: SocketAddr,
    want: &[u8],
) -> Result<Checked, String> {
    socket
        .send_to(payload, to)
        .map_err(|e| format!("send to {to}: {e}"))?;
    let mut buf = [0u8; 2048];
    let (n, source) = socket
        .recv_from(&mut buf)
        .map_err(|e| format!("no answer to a datagram for {to}: {e}"))?;
    if source != from || &buf[..n] != want {
        return Err(format!(
            "for {to}: {:?} from {source}, expected {:?} from {from}",
            String::from_utf8_lossy(&buf[..n]),
            String::from_utf8_lossy(want)
        ));
    }
    Ok(Checked {
        exchanges: 1,
        bytes: payload.len() as u64,
    })
}

/// `count` datagrams from `local_ip` to the echo service at `server`.
pub fn udp_echo(server: SocketAddr, local_ip: IpAddr, count: u64) -> Result<Checked, String> {
    let socket = udp_socket(SocketAddr::new(local_ip, 0))?;
    let mut total = Checked::default();
    for i in 0..count {
        let payload = message(i * 13 + 5);
        let payload = &payload[..payload.len().min(1_200)];
        total = total + udp_exchange(&socket, server, payload, server, payload)?;
    }
    Ok(total)
}

/// One datagram to `server` from `from` (a socket bound there): the answer
/// must be tagged `tag`.
pub fn udp_tagged(server: SocketAddr, from: SocketAddr, tag: &str) -> Result<Checked, String> {
    let socket = udp_socket(from)?;
    let payload = format!("hello from {from}");
    let want = format!("{tag}:{payload}");
    udp_exchange(&socket, server, payload.as_bytes(), server, want.as_bytes())
}

/// One broadcast datagram to `broadcast` from `local_ip`: the echo must
/// come back from `responder`.
pub fn udp_broadcast(
    broadcast: SocketAddr,
    local_ip: IpAddr,
    responder: SocketAddr,
) -> Result<Checked, String> {
    let socket = udp_socket(SocketAddr::new(local_ip, 0))?;
    socket.set_broadcast(true).map_err(|e| e.to_string())?;
    let payload = b"broadcast hello";
    udp_exchange(&socket, broadcast, payload, responder, payload)
}

/// A TCP connect to `server`, where nothing listens: it must be refused
/// (the stack's RST).
pub fn refused(server: SocketAddr) -> Result<(), String> {
    match TcpStream::connect_timeout(&server, TIMEOUT) {
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(()),
        Err(e) => Err(format!("connect to {server}: {e}, not refused")),
        Ok(_) => Err(format!("connect to {server} succeeded")),
    }
}

/// The end of a server's one connection: the peer's address and the bytes
/// echoed.
pub type Served = JoinHandle<Result<(SocketAddr, u64), String>>;

/// A kernel-side TCP echo server for one connection on `local`, for the
/// stack's active open: gives its address and, when the connection has
/// ended, the peer's address and the bytes it echoed.
pub fn echo_server(local: SocketAddr) -> Result<(SocketAddr, Served), String> {
    let listener = TcpListener::bind(local).map_err(|e| format!("bind {local}: {e}"))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let server = thread::spawn(move || {
        let deadline = Instant::now() + TIMEOUT * 2;
        let (mut stream, peer) = loop {
            match listener.accept() {
                Ok(accepted) => break accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(5))
                }
                Err(e) => return Err(format!("accept on {address}: {e}")),
            }
        };
        stream.set_nonblocking(false).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(TIMEOUT))
            .map_err(|e| e.to_string())?;
        let mut echoed = 0u64;
        let mut buf = [0u8; 4096];
        loop {
            let n = stream
                .read(&mut buf)
                .map_err(|e| format!("read from {peer}: {e}"))?;
            if n == 0 {
                break;
            }
            stream
                .write_all(&buf[..n])
                .map_err(|e| format!("write to {peer}: {e}"))?;
            echoed += n as u64;
        }
        Ok((peer, echoed))
    });
    Ok((address, server))
}
