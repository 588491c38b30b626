//! The whole run from the kernel side: every check of `peers` against the
//! running stack, each reported in one line, and what they add up to.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::apps::PAGE;
use super::link::{BROADCAST_V4, KERNEL_V4, KERNEL_V6, STACK_V4, STACK_V6};
use super::peers::{self, Checked};
use super::stack::{Handle, EPHEMERAL, TCP_SERVICES, UDP_ECHO, UDP_PEER, UDP_TAGGED};

/// A port where the stack has no listener.
pub const CLOSED_PORT: u16 = 9;

/// What the kernel side checked.
#[derive(Debug, Default)]
pub struct Report {
    /// The TCP echo connections.
    pub echo: Checked,
    /// How long they took.
    pub echo_time: Duration,
    /// Pages fetched by `curl` (`None`: no `curl` on this machine).
    pub pages: Option<Checked>,
    /// UDP exchanges: echo over both families, the tagged sockets, the
    /// broadcast.
    pub udp: Checked,
    /// Connects refused by the stack's RST.
    pub refused: u64,
    /// The stack's active opens (one per family) and the bytes they moved.
    pub active: Checked,
    /// What went wrong, one line each.
    pub failures: Vec<String>,
}

impl Report {
    fn check<T>(&mut self, what: &str, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(e) => {
                println!("  FAILED {what}: {e}");
                self.failures.push(format!("{what}: {e}"));
                None
            }
        }
    }
}

/// Port of a TCP service.
fn service_port(wanted: super::apps::Service) -> u16 {
    TCP_SERVICES
        .iter()
        .find(|(_, service)| *service == wanted)
        .map(|(port, _)| *port)
        .expect("every service has a port")
}

/// Runs every check against the stack behind `handle`: `connections` TCP
/// echo connections, `parallel` at a time, and the rest once or twice.
pub fn drive(handle: &Handle, connections: u64, parallel: u64) -> Report {
    let mut report = Report::default();
    let v4 = IpAddr::V4(STACK_V4);
    let v6 = IpAddr::V6(STACK_V6);
    let echo_port = service_port(super::apps::Service::Echo);
    let http_port = service_port(super::apps::Service::Http);

    // TCP echo, alternating the families by halves.
    let started = Instant::now();
    let half = connections / 2;
    for (ip, count) in [(v4, connections - half), (v6, half)] {
        let server = SocketAddr::new(ip, echo_port);
        if let Some(checked) = report.check("TCP echo", peers::tcp_echo(server, count, parallel)) {
            report.echo = report.echo + checked;
        }
    }
    report.echo_time = started.elapsed();
    println!(
        "kernel side: {} TCP echo connections ({} bytes checked) in {:.2?}, {parallel} at a time",
        report.echo.exchanges, report.echo.bytes, report.echo_time
    );

    // HTTP/1.0 through curl, both families.
    for url in [
        format!("http://{STACK_V4}:{http_port}/"),
        format!("http://[{STACK_V6}]:{http_port}/"),
    ] {
        match report.check("curl", peers::curl(&url)) {
            Some(Some(body)) if body == PAGE.as_bytes() => {
                println!("kernel side: curl {url}: the page, {} bytes", body.len());
                let pages = report.pages.get_or_insert_with(Checked::default);
                *pages = *pages
                    + Checked {
                        exchanges: 1,
                        bytes: body.len() as u64,
                    };
            }
            Some(Some(body)) => {
                let got = String::from_utf8_lossy(&body).into_owned();
                report.check::<()>("curl", Err(format!("{url}: not the page: {got:?}")));
            }
            Some(None) => {
                println!("kernel side: no curl on this machine, the HTTP check is skipped")
            }
            None => {}
        }
    }

    // UDP: echo, the connected and the bound socket, the broadcast.
    let udp_steps: [(&str, Result<Checked, String>); 5] = [
        (
            "UDP echo over IPv4",
            peers::udp_echo(SocketAddr::new(v4, UDP_ECHO), KERNEL_V4.into(), 50),
        ),
        (
            "UDP echo over IPv6",
            peers::udp_echo(SocketAddr::new(v6, UDP_ECHO), KERNEL_V6.into(), 50),
        ),
        (
            "connected UDP",
            peers::udp_tagged(SocketAddr::new(v4, UDP_TAGGED), UDP_PEER, "connected"),
        ),
        (
            "bound UDP",
            peers::udp_tagged(
                SocketAddr::new(v4, UDP_TAGGED),
                SocketAddr::new(KERNEL_V4.into(), UDP_PEER.port() + 1),
                "bound",
            ),
        ),
        (
            "UDP broadcast",
            peers::udp_broadcast(
                SocketAddr::new(BROADCAST_V4.into(), UDP_ECHO),
                KERNEL_V4.into(),
                SocketAddr::new(v4, UDP_ECHO),
            ),
        ),
    ];
    for (what, result) in udp_steps {
        if let Some(checked) = report.check(what, result) {
            println!(
                "kernel side: {what}: {} datagrams, {} bytes checked",
                checked.exchanges, checked.bytes
            );
            report.udp = report.udp + checked;
        }
    }

    // Closed ports: refused by RST.
    for ip in [v4, v6] {
        let server = SocketAddr::new(ip, CLOSED_PORT);
        if report
            .check("closed port", peers::refused(server))
            .is_some()
        {
            println!("kernel side: connect to {server}: refused");
            report.refused += 1;
        }
    }

    // The stack's active opens, to a kernel-side echo server.
    for (i, kernel) in [IpAddr::V4(KERNEL_V4), IpAddr::V6(KERNEL_V6)]
        .into_iter()
        .enumerate()
    {
        let message = peers::message(4_242 + i as u64);
        let checked = active_open(handle, SocketAddr::new(kernel, 7_000), &message);
        if let Some(checked) = report.check("active open", checked) {
            report.active = report.active + checked;
        }
    }
    report
}

/// The stack connects to a kernel-side echo server on `server`, sends
/// `message`, reads it back and closes.
fn active_open(handle: &Handle, server: SocketAddr, message: &[u8]) -> Result<Checked, String> {
    let (address, server) = peers::echo_server(server)?;
    let opened = handle.connect(address, message.to_vec())?;
    let (peer, echoed) = server.join().map_err(|_| "the server thread panicked")??;
    if opened.received != message {
        return Err(format!(
            "the stack read {} bytes back, not the {} it sent",
            opened.received.len(),
            message.len()
        ));
    }
    if peer != opened.local || echoed != message.len() as u64 {
        return Err(format!(
            "the server saw {peer} and echoed {echoed} bytes; the stack was {}",
            opened.local
        ));
    }
    if !EPHEMERAL.contains(&opened.local.port()) {
        return Err(format!("{} is not in the ephemeral range", opened.local));
    }
    println!(
        "kernel side: the stack connected from {} (port picked by the table) to {address}: \
         {} bytes echoed and checked",
        opened.local,
        message.len()
    );
    Ok(Checked {
        exchanges: 1,
        bytes: message.len() as u64,
    })
}
