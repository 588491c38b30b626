//! The host's listening sockets, and their rolling restart.
//!
//! | id | socket | address | why |
//! |---|---|---|---|
//! | 0 | `AF_INET` | `192.0.2.1:22` | a service bound to one address |
//! | 1 | `AF_INET6` | `[2001:db8::1]:22` | the same, IPv6 |
//! | 2 | `AF_INET6`, V6ONLY off | `[::]:80` | one dual-stack listener for both families |
//! | 3-6 | `AF_INET`, group | `0.0.0.0:443` | four workers sharing the port |
//! | 7-8 | `AF_INET6`, V6ONLY, group | `[::]:443` | two workers for IPv6 |
//! | 9 | `AF_INET`, device 2 | `0.0.0.0:8443` | a service of the second device only (Linux) |
//! | 10 | `AF_INET6`, V6ONLY, device 2 | `[::]:8443` | the same, IPv6 (Linux) |
//!
//! Listeners 9 and 10 are bound to the second device (`SO_BINDTODEVICE`)
//! before `bind()`; they exist only under `Policy::Linux`, since the table
//! does not model FreeBSD's counterpart (FIBs) yet.
//! "Group" is SO_REUSEPORT_LB under FreeBSD and SO_REUSEPORT under Linux: the
//! table spreads new connections over the members by a hash of the 4-tuple.
//! Every listener sets SO_REUSEADDR, as server daemons do.
//!
//! A rolling restart replaces one group member at a time: the new worker binds
//! and listens (joining the group) before the old one closes, so the port
//! never stops accepting.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use pcbhash::{Cred, Device, Error, Family, Pcb, PcbTable, Policy};

use crate::errors::Op;
use crate::flows::{Service, HOST_V4, HOST_V6};
use crate::socket::Socket;

/// One listening socket of the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerSpec {
    /// The service it serves.
    pub service: Service,
    /// The socket's family.
    pub family: Family,
    /// The address it binds.
    pub addr: SocketAddr,
    /// IPV6_V6ONLY for an `AF_INET6` socket.
    pub v6only: bool,
    /// Whether it is a member of a reuseport / load-balance group.
    pub group: bool,
    /// The device it is bound to (`SO_BINDTODEVICE`), if any.
    pub device: Option<Device>,
}

/// The host's first device, which every packet but the second device's
/// arrives on.
pub const DEVICE_1: Device = Device(1);

/// The second device, with its own listeners (`Policy::Linux` only).
pub const DEVICE_2: Device = Device(2);

const ANY6: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);

/// Whether `policy` gets the second device and its listeners.
pub fn has_second_device(policy: Policy) -> bool {
    policy == Policy::Linux
}

/// The listener plan under `policy`, by id.
pub fn plan(policy: Policy) -> Vec<ListenerSpec> {
    let one = |service: Service, family, ip: IpAddr, v6only, group| ListenerSpec {
        service,
        family,
        addr: SocketAddr::new(ip, service.port()),
        v6only,
        group,
        device: None,
    };
    let mut plan = vec![
        one(Service::Ssh, Family::Inet, HOST_V4.into(), false, false),
        one(Service::Ssh, Family::Inet6, HOST_V6.into(), true, false),
        one(Service::Http, Family::Inet6, ANY6, false, false),
    ];
    let any4 = IpAddr::from([0, 0, 0, 0]);
    plan.extend((0..4).map(|_| one(Service::Https, Family::Inet, any4, false, true)));
    plan.extend((0..2).map(|_| one(Service::Https, Family::Inet6, ANY6, true, true)));
    if has_second_device(policy) {
        let on_device_2 = |spec: ListenerSpec| ListenerSpec {
            device: Some(DEVICE_2),
            ..spec
        };
        plan.push(on_device_2(one(
            Service::Admin,
            Family::Inet,
            any4,
            false,
            false,
        )));
        plan.push(on_device_2(one(
            Service::Admin,
            Family::Inet6,
            ANY6,
            true,
            false,
        )));
    }
    plan
}

/// The ids of the group members, in restart order.
pub fn group_ids(plan: &[ListenerSpec]) -> Vec<usize> {
    (0..plan.len()).filter(|&id| plan[id].group).collect()
}

/// Opens listener `id` of `plan`: socket, options, bind, listen. On failure,
/// says which call failed.
pub fn open(
    table: &PcbTable<Socket>,
    plan: &[ListenerSpec],
    id: usize,
) -> Result<Pcb<Socket>, (Op, Error)> {
    let spec = plan[id];
    let pcb = table.attach(spec.family, Cred::ROOT, Socket::Listener(id));
    let option = |e| (Op::SetOption, e);
    pcb.set_reuse_addr(true).map_err(option)?;
    if spec.family == Family::Inet6 {
        pcb.set_v6only(spec.v6only).map_err(option)?;
    }
    if spec.device.is_some() {
        pcb.bind_device(spec.device).map_err(option)?;
    }
    if spec.group {
        match table.policy() {
            Policy::FreeBsd => pcb.set_reuse_port_lb(true).map_err(option)?,
            Policy::Linux => pcb.set_reuse_port(true).map_err(option)?,
            _ => pcb.set_reuse_port(true).map_err(option)?,
        }
    }
    pcb.bind(spec.addr).map_err(|e| (Op::Bind, e))?;
    pcb.listen().map_err(|e| (Op::Listen, e))?;
    Ok(pcb)
}

/// A one-line description of listener `id`, for the summary.
pub fn describe(plan: &[ListenerSpec], id: usize, policy: Policy) -> String {
    let spec = plan[id];
    let mut text = spec.addr.to_string();
    if spec.family == Family::Inet6 && spec.addr.ip().is_unspecified() && !spec.v6only {
        text.push_str(" (dual stack)");
    }
    if spec.group {
        text.push_str(match policy {
            Policy::FreeBsd => " (SO_REUSEPORT_LB group)",
            Policy::Linux => " (SO_REUSEPORT group)",
            _ => " (group)",
        });
    }
    if let Some(Device(index)) = spec.device {
        text.push_str(&format!(" (device {index} only)"));
    }
    text
}
