//! UDP input: a unicast datagram goes to the one socket `lookup_on` finds
//! (a connected socket before a bound one); a broadcast datagram to every
//! socket `deliver` hands out. Each socket answers the sender with its
//! service's reply.

use std::net::{IpAddr, SocketAddr};

use super::apps::UdpService;
use super::link::{self, BROADCAST_V4, STACK_V4};
use super::stack::Stack;
use super::wire::Datagram;

impl Stack {
    /// One UDP datagram from the device.
    pub(crate) fn udp_input(&mut self, d: &Datagram) {
        let broadcast = d.local.ip() == IpAddr::V4(BROADCAST_V4)
            || d.local.ip() == IpAddr::V4(std::net::Ipv4Addr::BROADCAST);
        if !broadcast && !link::is_local(d.local.ip()) {
            self.counters.ignored += 1;
            return;
        }
        let guard = self.udp.pin();
        let receivers: Vec<UdpService> = if broadcast {
            self.udp
                .deliver(Some(self.link.index), d.local, d.remote, &guard)
                .filter_map(|pcb| pcb.socket().map(|s| s.service))
                .collect()
        } else {
            self.udp
                .lookup_on(self.link.index, d.local, d.remote, &guard)
                .and_then(|pcb| pcb.socket().map(|s| s.service))
                .into_iter()
                .collect()
        };
        drop(guard);
        if broadcast {
            self.counters.udp.broadcast += 1;
            self.counters.udp.broadcast_receivers += receivers.len() as u64;
        } else if receivers.is_empty() {
            self.counters.udp.miss += 1;
        } else {
            self.counters.udp.unicast += 1;
        }
        // A broadcast is answered from the stack's own address.
        let from = if broadcast {
            SocketAddr::new(STACK_V4.into(), d.local.port())
        } else {
            d.local
        };
        for service in receivers {
            self.counters.udp_answered += 1;
            self.send_datagram(&Datagram {
                local: from,
                remote: d.remote,
                payload: service.answer(&d.payload),
            });
        }
    }
}
