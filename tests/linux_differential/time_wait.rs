//! Orderly closes that leave TIME_WAIT sockets, and clients replayed over
//! them.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::linux_kernel;
use super::linux_kernel::tcp_states::{self, TIME_WAIT};
use super::world::{PortRef, Rng, Step, World};
use pcbhash::{Pcb, State};

/// A connection's end in TIME_WAIT, in both worlds.
pub(super) struct TimeWait {
    pub(super) table: Pcb<()>,
    /// The kernel socket's addresses, as it showed them.
    pub(super) local: SocketAddr,
    pub(super) remote: SocketAddr,
    /// The connection's client end and its family, to replay it.
    pub(super) client: SocketAddr,
    pub(super) server: SocketAddr,
    pub(super) client_v6: bool,
}

impl World {
    /// The orderly close of a connection: `first` closes, then its peer, so
    /// `first` ends in TIME_WAIT (in the kernel once `/proc` shows it) and
    /// the peer closes for good. `Ok(false)`: the sequence must stop.
    pub(super) fn close_orderly(&mut self, first: usize) -> Result<bool, String> {
        let one = self.entries[first].take().expect("live");
        let other = one.peer.expect("connected");
        let two = self.entries[other].take().expect("the peer is live");
        self.note(format!(
            "#{first} close(), then #{other} close(): TIME_WAIT"
        ));
        let local = linux_kernel::local_addr(&one.kernel).ok_or("no local address")?;
        let remote = linux_kernel::peer_addr(&one.kernel).ok_or("no peer address")?;
        // The client end as it saw the connection, to replay it.
        let client_end = if one.accepted { &two } else { &one };
        let client_v6 = client_end.v6;
        let client = linux_kernel::local_addr(&client_end.kernel).ok_or("no client address")?;
        let server = linux_kernel::peer_addr(&client_end.kernel).ok_or("no server address")?;
        drop(one.kernel);
        drop(two.kernel);
        // Older TIME_WAIT sockets of the same 4-tuple, either way round, can
        // still be there (their owners were bound to devices): the new one
        // comes on top of them, and the peer's end leaves only them.
        let known = |from: SocketAddr, to: SocketAddr| {
            let (from, to) = (tcp_states::canonical(from), tcp_states::canonical(to));
            let same = |tw: &&TimeWait| {
                tcp_states::canonical(tw.local) == from && tcp_states::canonical(tw.remote) == to
            };
            self.time_waits.iter().filter(same).count()
        };
        let (here, there) = (known(local, remote) + 1, known(remote, local));
        // Live connections on the same 4-tuple, either way round, stay as
        // they are: twins the kernel allowed because one end of each is
        // bound to another device (`inet_match`).
        let live = |from: SocketAddr, to: SocketAddr| {
            let (from, to) = (tcp_states::canonical(from), tcp_states::canonical(to));
            let on = |e: &usize| {
                let kernel = &self.entry(*e).kernel;
                linux_kernel::local_addr(kernel).map(tcp_states::canonical) == Some(from)
                    && linux_kernel::peer_addr(kernel).map(tcp_states::canonical) == Some(to)
            };
            self.live().into_iter().filter(on).count()
        };
        let (here_live, there_live) = (live(local, remote), live(remote, local));
        let settled = || {
            let (local, remote) = (tcp_states::canonical(local), tcp_states::canonical(remote));
            let sockets = tcp_states::tcp_sockets();
            let count = |from, to, time_wait: bool| {
                let matches = |s: &&tcp_states::TcpSocket| {
                    s.local == from && s.remote == to && (s.state == TIME_WAIT) == time_wait
                };
                sockets.iter().filter(matches).count()
            };
            count(local, remote, true) == here
                && count(local, remote, false) == here_live
                && count(remote, local, true) == there
                && count(remote, local, false) == there_live
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !settled() {
            if Instant::now() > deadline {
                if here > 1 || there > 0 || here_live > 0 || there_live > 0 {
                    // A twin on the 4-tuple (a TIME_WAIT socket, or a live
                    // end bound to another device) took a segment of this
                    // close, and the kernel's ends wait for an answer that
                    // went to it. TCP's state machine is not the table's.
                    self.known_gap += 1;
                    self.note(format!(
                        "{local} -> {remote}: the close met a twin on its 4-tuple and \
                         did not finish in the kernel (known gap)"
                    ));
                    return Ok(false);
                }
                return Err(format!(
                    "{local} -> {remote} did not reach TIME_WAIT in the kernel: {:?}",
                    tcp_states::tcp_sockets()
                ));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        one.table
            .time_wait()
            .map_err(|e| format!("table time_wait(): {e:?}"))?;
        if self.client {
            // Past `tcp_tw_reuse_delay` (1 ms), the twin may give way to an
            // unbound connect() where `tcp_tw_reuse` allows it.
            std::thread::sleep(Duration::from_millis(3));
            one.table
                .allow_tw_reuse()
                .map_err(|e| format!("table allow_tw_reuse(): {e:?}"))?;
        }
        drop(two.table);
        self.entered_time_wait += 1;
        self.time_waits.push(TimeWait {
            table: one.table,
            local,
            remote,
            client,
            server,
            client_v6,
        });
        Ok(true)
    }

    /// The kernel and the table must agree on which TIME_WAIT sockets are
    /// left: a twin that gave way is gone from both.
    pub(super) fn check_time_waits(&mut self) -> Step {
        if self.time_waits.is_empty() {
            return Ok(());
        }
        let kernel = tcp_states::tcp_sockets();
        let mut gone = Vec::new();
        for (n, tw) in self.time_waits.iter().enumerate() {
            let (local, remote) = (
                tcp_states::canonical(tw.local),
                tcp_states::canonical(tw.remote),
            );
            let in_kernel = kernel
                .iter()
                .any(|s| s.local == local && s.remote == remote && s.state == TIME_WAIT);
            let in_table = tw.table.state() == State::TimeWait;
            if in_kernel != in_table {
                return Err(format!(
                    "TIME_WAIT {} -> {}: the kernel {}, the table {:?}",
                    tw.local,
                    tw.remote,
                    if in_kernel { "has it" } else { "has none" },
                    tw.table.state()
                ));
            }
            if !in_table {
                gone.push(n);
            }
        }
        for n in gone.into_iter().rev() {
            let tw = self.time_waits.remove(n);
            self.note(format!("TIME_WAIT {} -> {} gave way", tw.local, tw.remote));
        }
        Ok(())
    }

    /// A new socket replays the client of a connection that left a TIME_WAIT
    /// socket: the same address and port, toward the same server, where a
    /// listener still waits. The SYN meets the server side's twin, or the
    /// bound connect() the client side's.
    pub(super) fn replay(&mut self, rng: &mut Rng) -> Result<bool, String> {
        let tw = &self.time_waits[rng.below(self.time_waits.len())];
        let (client, server, v6) = (tw.client, tw.server, tw.client_v6);
        let tserver = SocketAddr::new(server.ip(), self.to_table_port(server.port()));
        if !self.table_listener_for(tserver) {
            return Ok(true);
        }
        self.replays += 1;
        let uid = self.draw_uid(rng);
        self.open(v6, uid)?;
        let i = self.entries.len() - 1;
        if rng.chance(70) {
            self.set_option(i, 0, true)?;
        }
        if rng.chance(20) {
            self.set_option(i, 1, true)?;
        }
        let address = client.ip().to_string();
        if !self.bind(i, &address, PortRef::Known(client.port()))? {
            return Ok(false);
        }
        if self.entry(i).table.state() != State::Bound {
            return Ok(true);
        }
        self.connect(i, server)
    }
}
