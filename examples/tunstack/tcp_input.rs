//! TCP input: each segment is demultiplexed by the table's `lookup_on`
//! (exact 4-tuple, then the listener) and handed to what it found, a
//! connection, a listener or a TIME_WAIT tuple; a segment that finds
//! nothing is answered with a RST.

use std::sync::Mutex;

use pcbhash::State;

use super::apps::{App, Reply};
use super::link;
use super::sockets::{Conn, TcpSock};
use super::stack::Stack;
use super::tcp::{self, Event};
use super::wire::Segment;

/// How a connection's segment ended it, if it did.
enum End {
    TimeWait,
    Closed { reset: bool },
}

impl Stack {
    /// One TCP segment from the device.
    pub(crate) fn tcp_input(&mut self, seg: &Segment) {
        if !link::is_local(seg.local.ip()) {
            self.counters.ignored += 1;
            return;
        }
        let guard = self.tcp.pin();
        let found = self
            .tcp
            .lookup_on(self.link.index, seg.local, seg.remote, &guard);
        let Some(pcb) = found else {
            self.counters.tcp.miss += 1;
            self.out.extend(tcp::reset_for(seg));
            return;
        };
        if pcb.state() == State::TimeWait {
            self.counters.tcp.time_wait += 1;
            if seg.control.syn {
                self.counters.syn_to_time_wait += 1;
            }
            self.out.extend(tcp::time_wait_ack(seg));
            return;
        }
        match pcb.socket() {
            Some(TcpSock::Listener { slot, service }) => {
                self.counters.tcp.listener += 1;
                self.listener_input(*slot, App::accepted(*service), seg);
            }
            Some(TcpSock::Conn { slot, conn }) => {
                self.counters.tcp.connection += 1;
                self.conn_input(*slot, conn, seg);
            }
            None => {
                // Closed between the lookup and now: as if not found.
                self.counters.tcp.miss += 1;
                self.out.extend(tcp::reset_for(seg));
            }
        }
    }

    /// A segment for a listener: a SYN gets a SYN-ACK with a cookie; the
    /// handshake's last ACK, if its cookie checks out, is accepted (a new
    /// connected PCB on the listener's port) and then taken as the
    /// connection's first segment.
    fn listener_input(&mut self, slot: usize, app: App, seg: &Segment) {
        let c = seg.control;
        if c.rst {
            return;
        }
        if c.syn {
            if !c.ack {
                self.counters.syn_acks += 1;
                self.out.push(self.cookies.syn_ack(seg));
            } else {
                self.out.extend(tcp::reset_for(seg));
            }
            return;
        }
        let Some(tcb) = self.cookies.complete(seg) else {
            self.counters.bad_cookies += 1;
            self.out.extend(tcp::reset_for(seg));
            return;
        };
        let Some(listener) = self.tcp_owners.get(slot) else {
            return;
        };
        let child = self.tcp_owners.next_slot();
        let socket = TcpSock::Conn {
            slot: child,
            conn: Mutex::new(Conn { tcb, app }),
        };
        match listener.accept(seg.local, seg.remote, socket) {
            Ok(pcb) => {
                self.counters.accepted += 1;
                let guard = self.tcp.pin();
                let conn = match pcb.socket(&guard) {
                    Some(TcpSock::Conn { conn, .. }) => Some(conn),
                    _ => None,
                };
                self.tcp_owners.insert(pcb);
                if let Some(conn) = conn {
                    self.conn_input(child, conn, seg);
                }
            }
            Err(e) => {
                self.counters.error(e);
                self.out.extend(tcp::reset_for(seg));
            }
        }
    }

    /// A segment for a connection: the TCP state machine, then the
    /// application, then what ends the PCB (TIME_WAIT or close).
    fn conn_input(&mut self, slot: usize, conn: &Mutex<Conn>, seg: &Segment) {
        let mut end = None;
        {
            let mut conn = conn.lock().expect("connection lock");
            let Conn { tcb, app } = &mut *conn;
            for event in tcb.receive(seg, &mut self.out) {
                let reply = match event {
                    Event::Established => app.on_established(),
                    Event::Data(data) => {
                        self.counters.tcp_bytes.0 += data.len() as u64;
                        app.on_data(&data)
                    }
                    Event::PeerFin => app.on_peer_fin(),
                    Event::TimeWait => {
                        end = Some(End::TimeWait);
                        Reply::default()
                    }
                    Event::Closed => {
                        end = Some(End::Closed { reset: false });
                        Reply::default()
                    }
                    Event::Reset => {
                        self.counters.reset_by_peer += 1;
                        end = Some(End::Closed { reset: true });
                        Reply::default()
                    }
                };
                self.counters.tcp_bytes.1 += reply.send.len() as u64;
                tcb.send(&reply.send, &mut self.out);
                if reply.close {
                    tcb.close(&mut self.out);
                }
            }
            tcb.flush_ack(&mut self.out);
            match end {
                Some(End::TimeWait) => app.on_end(seg.local, false),
                Some(End::Closed { reset }) => app.on_end(seg.local, reset),
                None => {}
            }
        }
        match end {
            Some(End::TimeWait) => self.enter_time_wait(slot),
            Some(End::Closed { .. }) => {
                self.tcp_owners.remove(slot);
                self.counters.closed += 1;
            }
            None => {}
        }
    }

    /// The table keeps the tuple; the socket goes; the handle waits out
    /// the (shortened) 2MSL.
    fn enter_time_wait(&mut self, slot: usize) {
        let Some(pcb) = self.tcp_owners.get(slot) else {
            return;
        };
        match pcb.time_wait() {
            Ok(()) => {
                self.counters.time_wait_entered += 1;
                let deadline = std::time::Instant::now() + self.two_msl();
                self.time_wait.push_back((deadline, slot));
            }
            Err(e) => {
                self.counters.error(e);
                self.tcp_owners.remove(slot);
                self.counters.closed += 1;
            }
        }
    }
}
