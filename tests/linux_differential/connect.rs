//! TCP connect() in both worlds, and the server side the kernel accepts.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::linux_kernel::{self, errno, table_errno};
use super::world::{Entry, Scan, World};
use pcbhash::State;

impl World {
    /// Whether the table has a listener for `to` (in table ports).
    pub(super) fn table_listener_for(&self, to: SocketAddr) -> bool {
        let probe: SocketAddr = if to.ip().to_canonical().is_ipv4() {
            "127.0.0.9:9".parse().expect("probe")
        } else {
            "[::9]:9".parse().expect("probe")
        };
        let probe = match (to, probe) {
            (SocketAddr::V6(_), SocketAddr::V4(v4)) => {
                SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
            }
            _ => probe,
        };
        let guard = self.table.pin();
        self.lookup(to, probe, &guard)
            .is_some_and(|r| r.state() == State::Listen)
    }

    /// Where the kernel sends a TCP connect() from entry `i` to `to`: an
    /// unspecified address is the local host (the socket's own IPv4
    /// address, or 127.0.0.1; `::` is `::1`, or `::ffff:127.0.0.1` from a
    /// v4-mapped address). Used only to tell whether a listener waits there.
    pub(super) fn kernel_destination(&self, i: usize, to: SocketAddr) -> SocketAddr {
        if !to.ip().is_unspecified() && to.ip().to_canonical() != IpAddr::from([0, 0, 0, 0]) {
            return to;
        }
        let local = linux_kernel::local_addr(&self.entry(i).kernel)
            .map(|a| a.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let local_v4 = match local {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(v6) => v6.to_ipv4_mapped(),
        };
        let ip = match (to.ip(), local_v4) {
            (IpAddr::V6(v6), Some(_)) if v6.is_unspecified() => {
                IpAddr::V6(std::net::Ipv4Addr::LOCALHOST.to_ipv6_mapped())
            }
            (IpAddr::V6(v6), None) if v6.is_unspecified() => {
                IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
            }
            (_, Some(v4)) if !v4.is_unspecified() => IpAddr::V4(v4),
            _ => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        };
        let ip = match (to, ip) {
            (SocketAddr::V6(_), IpAddr::V4(v4)) => IpAddr::V6(v4.to_ipv6_mapped()),
            _ => ip,
        };
        SocketAddr::new(ip, to.port())
    }

    /// TCP connect() of entry `i` to `kto` (kernel ports), where a listener
    /// waits; the kernel's server side is accepted in both worlds.
    pub(super) fn connect(&mut self, i: usize, kto: SocketAddr) -> Result<bool, String> {
        if self.cannot_route(i) {
            return Ok(true);
        }
        let tto = SocketAddr::new(kto.ip(), self.to_table_port(kto.port()));
        let client = self.entry(i);
        let was_bound = client.table.local_addr().is_some();
        let k = errno(&linux_kernel::connect(&client.kernel, kto));
        let t = client.table.connect(tto);
        let scan = (!was_bound).then_some(if self.entry(i).own_range {
            Scan::ConnectOwnRange
        } else {
            Scan::Connect
        });
        if k == -1 && t.is_ok() {
            // The kernel took the call (its SYN is out, from the port it
            // chose) but the handshake did not finish in time: the SYN met
            // a connection on the same 4-tuple whose end is bound to another
            // device (`inet_match` lets both worlds share it), or a group
            // member bound to another device answered it there. TCP's state
            // machine is not the table's; the choice of port still is, and
            // is compared before the sequence stops as a known gap.
            if self.check_local(i, scan)? {
                self.known_gap += 1;
                self.note(format!(
                    "#{i} connect: the kernel's handshake did not finish (known gap)"
                ));
            }
            return Ok(false);
        }
        self.compare(
            &format!("#{i} connect({kto} -> table {tto})"),
            k,
            table_errno(&t),
        )?;
        if k != 0 {
            return Ok(true);
        }
        if !self.check_local(i, scan)? {
            return Ok(false);
        }
        self.check_peer(i, Some((kto.port(), tto.port())))?;
        let client_table = self.entry(i).table.local_addr().expect("connected");
        let tto = self.entry(i).table.peer_addr().expect("connected");
        // The kernel's server side: find the listener that got the connection.
        let mut child = None;
        for _ in 0..200 {
            for l in self.live() {
                let e = self.entry(l);
                if e.listening {
                    if let Some((socket, _)) = linux_kernel::try_accept(&e.kernel, e.uid) {
                        child = Some((l, socket));
                        break;
                    }
                }
            }
            if child.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let (chosen, socket) =
            child.ok_or("the kernel connected, but no listener has the connection")?;
        // A SYN that meets a TIME_WAIT twin, and that the kernel accepted:
        // a stack drops the twin and asks again (Linux `tcp_v4_rcv` on
        // TCP_TW_SYN).
        let twin = {
            let guard = self.table.pin();
            self.lookup(tto, client_table, &guard)
                .filter(|found| found.state() == State::TimeWait)
                .map(|found| self.time_waits.iter().position(|tw| found.is(&tw.table)))
        };
        if let Some(twin) = twin {
            let n = twin.ok_or("the SYN meets a TIME_WAIT PCB the harness does not know")?;
            let tw = self.time_waits.remove(n);
            self.note(format!(
                "the SYN meets TIME_WAIT {} -> {}: closed",
                tw.local, tw.remote
            ));
        }
        // A SYN that meets a connection on the same 4-tuple, which the
        // kernel allowed because the connecting socket is on another device
        // than the connection's other end (`inet_match`): the old connection
        // answers the SYN with a challenge ACK, the new client resets it,
        // and the SYN goes to the listener. TCP's state machine is not the
        // table's: both ends of the old connection are closed, a known gap.
        let established = {
            let guard = self.table.pin();
            self.lookup(tto, client_table, &guard)
                .filter(|found| found.state() == State::Connected)
                .and_then(|found| {
                    self.live()
                        .into_iter()
                        .find(|&e| e != i && found.is(&self.entry(e).table))
                })
        };
        let met_old_connection = established.is_some();
        if let Some(old) = established {
            self.known_gap += 1;
            self.note(format!(
                "the SYN meets the connection of #{old}: both ends closed (known gap)"
            ));
            self.close(old);
        }
        // The table's lookup for the SYN must name the same kind of listener.
        {
            let guard = self.table.pin();
            let found = self
                .lookup(tto, client_table, &guard)
                .ok_or("the table finds no PCB for the SYN")?;
            let found_entry = self
                .live()
                .into_iter()
                .find(|&e| found.is(&self.entry(e).table))
                .ok_or("the table's lookup names no live socket")?;
            let kind = |e: &Entry| {
                let addr = linux_kernel::local_addr(&e.kernel).map(|a| a.ip().to_canonical());
                let v6only = e.v6 && e.kernel.only_v6().unwrap_or(false);
                (e.v6, addr, v6only)
            };
            let (kk, tk) = (kind(self.entry(chosen)), kind(self.entry(found_entry)));
            if kk != tk || found.state() != State::Listen {
                return Err(format!(
                    "the SYN for {kto} went to #{chosen} {kk:?} in the kernel, the table's lookup names #{found_entry} {tk:?} ({:?})",
                    found.state()
                ));
            }
        }
        let accepted = self
            .entry(chosen)
            .table
            .accept(tto, client_table, ())
            .map_err(|e| format!("table accept on #{chosen}: {e:?}"))?;
        let (listener_no_port, listener_own_range) = {
            let l = self.entry(chosen);
            (l.no_port, l.own_range)
        };
        let (v6, uid, reuse_addr) = {
            let l = self.entry(chosen);
            (l.v6, l.uid, l.reuse_addr)
        };
        let c = self.entries.len();
        self.note(format!("#{c} = accept(#{chosen}) for #{i}"));
        self.entries.push(Some(Entry {
            v6,
            uid,
            kernel: socket,
            table: accepted,
            peer: Some(i),
            listening: false,
            reuse_addr,
            accepted: true,
            no_port: listener_no_port,
            own_range: listener_own_range,
        }));
        self.entries[i].as_mut().expect("live").peer = Some(c);
        self.connections += 1;
        if !self.check_local(c, None)? {
            return Ok(false);
        }
        if met_old_connection && linux_kernel::peer_addr(&self.entry(c).kernel).is_none() {
            // Part of the same gap, and timing-dependent: the resets
            // between the old connection and the new client can reach the
            // connection the listener made as well, after the handshake.
            self.note(format!(
                "#{c}: the kernel's accepted connection was reset too (the same known gap)"
            ));
            return Ok(false);
        }
        self.check_peer(c, Some((self.entry(i).kernel_port(), client_table.port())))?;
        self.check_device(c)?;
        Ok(true)
    }
}
