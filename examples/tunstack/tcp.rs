//! The TCP state machine of one connection, the minimum that real clients
//! accept on a lossless link: the handshake (SYN cookies on the passive
//! side, so a listener keeps no half-open state), in-order data, FIN in both
//! directions and TIME_WAIT. There is no retransmission and no reordering
//! queue: a segment that is not the next one expected is dropped, with a
//! duplicate ACK, and the peer sends it again. Pure: it reads segments and
//! writes segments, and knows nothing of the table or the device.

use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;

use super::wire::{Control, Segment};

/// The most payload the stack puts in one segment (it advertises no MSS,
/// and sends at most what the smallest IPv6 MTU carries).
pub const MSS: usize = 1_200;

/// RFC 793's states, less LISTEN and SYN-RECEIVED: a listener is a PCB of
/// its own, and the SYN cookie stands in for SYN-RECEIVED.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpState {
    /// Our SYN is out (active open).
    SynSent,
    /// Both SYNs acknowledged.
    Established,
    /// The peer's FIN arrived; ours is not sent yet.
    CloseWait,
    /// Both FINs sent, ours not yet acknowledged, after CLOSE-WAIT.
    LastAck,
    /// Our FIN is out, not acknowledged.
    FinWait1,
    /// Our FIN is acknowledged; the peer's has not come.
    FinWait2,
    /// Both FINs sent at once, ours not yet acknowledged.
    Closing,
    /// Both FINs acknowledged, we closed first: the tuple waits out 2MSL.
    TimeWait,
    /// Finished (or reset).
    Closed,
}

/// What a segment meant for the application and the socket's owner.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// The active open completed.
    Established,
    /// In-order bytes for the application.
    Data(Vec<u8>),
    /// The peer will send no more.
    PeerFin,
    /// The connection entered TIME_WAIT.
    TimeWait,
    /// The connection is over; the PCB can go.
    Closed,
    /// The peer reset the connection.
    Reset,
}

/// The transmission control block.
#[derive(Debug)]
pub struct Tcb {
    /// The state.
    pub state: TcpState,
    local: SocketAddr,
    remote: SocketAddr,
    snd_una: u32,
    snd_nxt: u32,
    rcv_nxt: u32,
    ack_owed: bool,
}

/// `a < b` in sequence space.
fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// The SYN cookies of a listener: the initial sequence number of a passive
/// open is a keyed hash of the 4-tuple and the peer's ISN, so the final ACK
/// of the handshake proves the SYN-ACK was ours without any stored state.
#[derive(Debug, Default)]
pub struct Cookies {
    key: RandomState,
}

impl Cookies {
    /// The ISN for a SYN with sequence number `irs` from `remote` to `local`.
    pub fn iss(&self, local: SocketAddr, remote: SocketAddr, irs: u32) -> u32 {
        self.key.hash_one((local, remote, irs)) as u32
    }

    /// The SYN-ACK that answers `syn`.
    pub fn syn_ack(&self, syn: &Segment) -> Segment {
        let iss = self.iss(syn.local, syn.remote, syn.seq);
        reply(syn, iss, syn.seq.wrapping_add(1), SYN_ACK)
    }

    /// For the final ACK of a handshake (no SYN, no RST): the connection it
    /// completes, if the acknowledgment is the cookie's.
    pub fn complete(&self, ack: &Segment) -> Option<Tcb> {
        let irs = ack.seq.wrapping_sub(1);
        let iss = self.iss(ack.local, ack.remote, irs);
        (ack.control.ack && !ack.control.syn && !ack.control.rst && ack.ack == iss.wrapping_add(1))
            .then_some(Tcb {
                state: TcpState::Established,
                local: ack.local,
                remote: ack.remote,
                snd_una: ack.ack,
                snd_nxt: ack.ack,
                rcv_nxt: ack.seq,
                ack_owed: false,
            })
    }
}

const SYN_ACK: Control = Control {
    syn: true,
    ack: true,
    fin: false,
    rst: false,
};
const ACK: Control = Control {
    syn: false,
    ack: true,
    fin: false,
    rst: false,
};

/// A segment back to the sender of `to`, with no payload.
fn reply(to: &Segment, seq: u32, ack: u32, control: Control) -> Segment {
    Segment {
        local: to.local,
        remote: to.remote,
        seq,
        ack,
        control,
        payload: Vec::new(),
    }
}

/// The RST that answers `segment`, which found no connection (RFC 793,
/// "If the connection does not exist"); `None` for a RST, which is never
/// answered.
pub fn reset_for(segment: &Segment) -> Option<Segment> {
    let c = segment.control;
    if c.rst {
        return None;
    }
    Some(if c.ack {
        reply(
            segment,
            segment.ack,
            0,
            Control {
                rst: true,
                ..Control::default()
            },
        )
    } else {
        let ack = segment.seq.wrapping_add(segment.len());
        reply(
            segment,
            0,
            ack,
            Control {
                rst: true,
                ack: true,
                ..Control::default()
            },
        )
    })
}

/// The ACK a TIME_WAIT tuple gives a retransmitted FIN, from the segment
/// alone: the table keeps no socket for a TIME_WAIT PCB.
pub fn time_wait_ack(segment: &Segment) -> Option<Segment> {
    (segment.control.fin && !segment.control.rst).then(|| {
        reply(
            segment,
            segment.ack,
            segment.seq.wrapping_add(segment.len()),
            ACK,
        )
    })
}

impl Tcb {
    /// A control block with no connection yet (the socket of an active
    /// open, before the table picks its local address).
    pub fn new() -> Tcb {
        let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
        Tcb {
            state: TcpState::Closed,
            local: unspecified,
            remote: unspecified,
            snd_una: 0,
            snd_nxt: 0,
            rcv_nxt: 0,
            ack_owed: false,
        }
    }

    /// The active open from `local` to `remote` with initial sequence
    /// number `iss`: gives the SYN to send.
    pub fn open(&mut self, local: SocketAddr, remote: SocketAddr, iss: u32) -> Segment {
        *self = Tcb {
            state: TcpState::SynSent,
            local,
            remote,
            snd_una: iss,
            snd_nxt: iss.wrapping_add(1),
            rcv_nxt: 0,
            ack_owed: false,
        };
        self.segment(
            iss,
            Control {
                syn: true,
                ..Control::default()
            },
            Vec::new(),
        )
    }

    fn segment(&self, seq: u32, control: Control, payload: Vec<u8>) -> Segment {
        Segment {
            local: self.local,
            remote: self.remote,
            seq,
            ack: self.rcv_nxt,
            control,
            payload,
        }
    }

    /// Takes one segment of this connection; appends what must be sent to
    /// `out` and gives what happened.
    pub fn receive(&mut self, seg: &Segment, out: &mut Vec<Segment>) -> Vec<Event> {
        let mut events = Vec::new();
        if matches!(self.state, TcpState::Closed | TcpState::TimeWait) {
            return events;
        }
        if self.state == TcpState::SynSent {
            let acceptable = seg.control.ack && seg.ack == self.snd_nxt;
            if seg.control.rst {
                if acceptable {
                    self.state = TcpState::Closed;
                    events.push(Event::Reset);
                }
            } else if acceptable && seg.control.syn {
                self.snd_una = seg.ack;
                self.rcv_nxt = seg.seq.wrapping_add(1);
                self.state = TcpState::Established;
                self.ack_owed = true;
                events.push(Event::Established);
            } else if seg.control.ack {
                out.extend(reset_for(seg));
            }
            return events;
        }
        if seg.control.rst {
            if seg.seq == self.rcv_nxt {
                self.state = TcpState::Closed;
                events.push(Event::Reset);
            }
            return events;
        }
        if seg.control.syn || seg.seq != self.rcv_nxt {
            // A retransmitted SYN, a duplicate or a segment beyond a gap:
            // drop it and say where we are.
            if seg.len() > 0 {
                out.push(self.segment(self.snd_nxt, ACK, Vec::new()));
            }
            return events;
        }
        if seg.control.ack && before(self.snd_una, seg.ack) && !before(self.snd_nxt, seg.ack) {
            self.snd_una = seg.ack;
        }
        let fin_acked = self.snd_una == self.snd_nxt;
        match self.state {
            TcpState::FinWait1 if fin_acked => self.state = TcpState::FinWait2,
            TcpState::Closing if fin_acked => self.enter_time_wait(&mut events),
            TcpState::LastAck if fin_acked => {
                self.state = TcpState::Closed;
                events.push(Event::Closed);
            }
            _ => {}
        }
        let open = matches!(
            self.state,
            TcpState::Established | TcpState::FinWait1 | TcpState::FinWait2
        );
        if open && !seg.payload.is_empty() {
            self.rcv_nxt = self.rcv_nxt.wrapping_add(seg.payload.len() as u32);
            self.ack_owed = true;
            events.push(Event::Data(seg.payload.clone()));
        }
        if open && seg.control.fin {
            self.rcv_nxt = self.rcv_nxt.wrapping_add(1);
            self.ack_owed = true;
            match self.state {
                TcpState::Established => {
                    self.state = TcpState::CloseWait;
                    events.push(Event::PeerFin);
                }
                TcpState::FinWait1 => self.state = TcpState::Closing,
                _ => self.enter_time_wait(&mut events),
            }
        }
        events
    }

    fn enter_time_wait(&mut self, events: &mut Vec<Event>) {
        self.state = TcpState::TimeWait;
        events.push(Event::TimeWait);
    }

    /// Sends `data`, in segments of at most [`MSS`] bytes (the peer's window
    /// is not consulted: the applications send little, and the link loses
    /// nothing).
    pub fn send(&mut self, data: &[u8], out: &mut Vec<Segment>) {
        if !matches!(self.state, TcpState::Established | TcpState::CloseWait) {
            return;
        }
        for chunk in data.chunks(MSS) {
            out.push(self.segment(self.snd_nxt, ACK, chunk.to_vec()));
            self.snd_nxt = self.snd_nxt.wrapping_add(chunk.len() as u32);
            self.ack_owed = false;
        }
    }

    /// The application closes its side: FIN.
    pub fn close(&mut self, out: &mut Vec<Segment>) {
        let next = match self.state {
            TcpState::Established => TcpState::FinWait1,
            TcpState::CloseWait => TcpState::LastAck,
            _ => return,
        };
        out.push(self.segment(self.snd_nxt, Control { fin: true, ..ACK }, Vec::new()));
        self.snd_nxt = self.snd_nxt.wrapping_add(1);
        self.ack_owed = false;
        self.state = next;
    }

    /// A pure ACK, if something received is not acknowledged yet.
    pub fn flush_ack(&mut self, out: &mut Vec<Segment>) {
        if std::mem::take(&mut self.ack_owed) {
            out.push(self.segment(self.snd_nxt, ACK, Vec::new()));
        }
    }

    /// The RST that aborts the connection (at shutdown).
    pub fn abort(&mut self, out: &mut Vec<Segment>) {
        if !matches!(self.state, TcpState::Closed | TcpState::TimeWait) {
            out.push(self.segment(
                self.snd_nxt,
                Control {
                    rst: true,
                    ..Control::default()
                },
                Vec::new(),
            ));
        }
        self.state = TcpState::Closed;
    }
}
