//! The applications behind the stack's sockets: what each one answers to
//! bytes and to the end of the peer's stream. They see neither packets nor
//! sequence numbers.

use std::net::SocketAddr;
use std::sync::mpsc::Sender;

/// The fixed page of the HTTP service.
pub const PAGE: &str = "<!doctype html>\n<title>pcbhash</title>\n\
<p>Served by a user-space TCP endpoint whose sockets live in a pcbhash table.</p>\n";

/// The whole HTTP/1.0 response the HTTP service sends for any request.
pub fn http_response() -> Vec<u8> {
    format!(
        "HTTP/1.0 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{PAGE}",
        PAGE.len()
    )
    .into_bytes()
}

/// A listening service: what each accepted connection runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// TCP echo (RFC 862): every byte back, close after the peer does.
    Echo,
    /// HTTP/1.0: one fixed page for any request, then close.
    Http,
}

/// What an application wants done after an event.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reply {
    /// Bytes to send.
    pub send: Vec<u8>,
    /// Close our side (FIN) after them.
    pub close: bool,
}

/// The result of an active open, reported to whoever asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The local address the table picked (its port is ephemeral).
    pub local: SocketAddr,
    /// What the server sent back.
    pub received: Vec<u8>,
}

/// The application of one connection.
#[derive(Debug)]
pub enum App {
    /// An accepted echo connection.
    Echo,
    /// An accepted HTTP connection, with the request read so far.
    Http {
        /// The request bytes so far.
        request: Vec<u8>,
        /// Whether the page went out.
        answered: bool,
    },
    /// The active open: send `message`, read the server's echo of it, close.
    Client {
        /// What to send.
        message: Vec<u8>,
        /// What came back.
        received: Vec<u8>,
        /// Where the result goes when the connection ends.
        report: Option<Sender<Result<Opened, String>>>,
    },
}

impl App {
    /// The application an accepted connection of `service` runs.
    pub fn accepted(service: Service) -> App {
        match service {
            Service::Echo => App::Echo,
            Service::Http => App::Http {
                request: Vec::new(),
                answered: false,
            },
        }
    }

    /// The active open completed.
    pub fn on_established(&mut self) -> Reply {
        match self {
            App::Client { message, .. } => Reply {
                send: message.clone(),
                close: false,
            },
            _ => Reply::default(),
        }
    }

    /// In-order bytes arrived.
    pub fn on_data(&mut self, data: &[u8]) -> Reply {
        match self {
            App::Echo => Reply {
                send: data.to_vec(),
                close: false,
            },
            App::Http { request, answered } => {
                request.extend_from_slice(data);
                if *answered || !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    return Reply::default();
                }
                *answered = true;
                Reply {
                    send: http_response(),
                    close: true,
                }
            }
            App::Client {
                message, received, ..
            } => {
                received.extend_from_slice(data);
                Reply {
                    send: Vec::new(),
                    close: received.len() >= message.len(),
                }
            }
        }
    }

    /// The peer closed its side: every service closes too.
    pub fn on_peer_fin(&mut self) -> Reply {
        Reply {
            send: Vec::new(),
            close: true,
        }
    }

    /// The connection ended (`reset` if by a RST): an active open reports.
    pub fn on_end(&mut self, local: SocketAddr, reset: bool) {
        if let App::Client {
            received, report, ..
        } = self
        {
            if let Some(report) = report.take() {
                let result = if reset {
                    Err(format!("the connection from {local} was reset"))
                } else {
                    Ok(Opened {
                        local,
                        received: std::mem::take(received),
                    })
                };
                let _ = report.send(result);
            }
        }
    }
}

/// The UDP services.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdpService {
    /// UDP echo: the datagram back to its sender.
    Echo,
    /// The datagram back, after a tag that names which socket answered
    /// (which shows which PCB the lookup chose).
    Tagged(&'static str),
}

impl UdpService {
    /// The answer to `payload`.
    pub fn answer(self, payload: &[u8]) -> Vec<u8> {
        match self {
            UdpService::Echo => payload.to_vec(),
            UdpService::Tagged(tag) => [tag.as_bytes(), b":", payload].concat(),
        }
    }
}
