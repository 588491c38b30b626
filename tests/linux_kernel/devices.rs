//! Devices in the private namespace: a second device beside `lo`, and
//! SO_BINDTODEVICE in both worlds.
//!
//! The second device carries no address and no traffic: every packet of a
//! test stays on loopback addresses and arrives on `lo`; the device exists
//! so that sockets can be bound to something other than `lo`. It is a
//! `dummy` device where the kernel has that driver, otherwise an empty
//! bridge (which is just as inert).

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd};

use pcbhash::Device;

use super::dual::{expect, Pair};
use super::{errno, table_errno};

/// The name of the second device.
pub const SECOND: &str = "dummy0";

/// A device of the namespace: its name and its index.
#[derive(Clone, Copy, Debug)]
pub struct Dev {
    pub name: &'static str,
    pub index: u32,
}

impl Dev {
    /// The table's value for this device.
    pub fn device(self) -> Device {
        Device(self.index)
    }
}

/// The index of the device `name` of the calling thread's namespace.
pub fn index_of(name: &'static str) -> Result<Dev, String> {
    let c_name = CString::new(name).expect("device name");
    // SAFETY: `c_name` is a valid NUL-terminated string that outlives the
    // call.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    if index == 0 {
        return Err(format!("no device {name}"));
    }
    Ok(Dev { name, index })
}

/// Creates [`SECOND`] in the calling thread's namespace and brings it up;
/// gives `lo` and it. `Err` says why it could not.
///
/// The device is made over rtnetlink from this thread, not by running
/// `ip`: a child process starts with a copy of the whole process's file
/// table, so a socket that another test thread closes meanwhile stays open
/// (and its port bound) until the child has exec'd, and that thread's
/// kernel would answer EADDRINUSE where nothing holds the port any more.
pub fn add_second() -> Result<(Dev, Dev), String> {
    let made = new_link(SECOND, "dummy").or_else(|dummy| {
        new_link(SECOND, "bridge").map_err(|bridge| {
            format!("cannot create {SECOND}: as a dummy: {dummy}; as a bridge: {bridge}")
        })
    });
    made?;
    super::link_up(SECOND).map_err(|e| format!("cannot bring {SECOND} up: {e}"))?;
    Ok((index_of("lo")?, index_of(SECOND)?))
}

/// rtnetlink's numbers (`linux/netlink.h`, `linux/rtnetlink.h`,
/// `linux/if_link.h`).
mod rtnl {
    pub const NETLINK_ROUTE: libc::c_int = 0;
    pub const RTM_NEWLINK: u16 = 16;
    pub const NLMSG_ERROR: u16 = 2;
    pub const NLM_F_REQUEST: u16 = 0x1;
    pub const NLM_F_ACK: u16 = 0x4;
    pub const NLM_F_EXCL: u16 = 0x200;
    pub const NLM_F_CREATE: u16 = 0x400;
    pub const IFLA_IFNAME: u16 = 3;
    pub const IFLA_LINKINFO: u16 = 18;
    pub const IFLA_INFO_KIND: u16 = 1;
    /// `struct nlmsghdr`, then `struct ifinfomsg`.
    pub const HEADER_LEN: usize = 16;
    pub const IFINFO_LEN: usize = 16;
}

/// Appends one netlink attribute (`struct rtattr` and its payload, padded
/// to four bytes).
fn attribute(message: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    message.extend_from_slice(&(len as u16).to_ne_bytes());
    message.extend_from_slice(&kind.to_ne_bytes());
    message.extend_from_slice(payload);
    message.resize(message.len().next_multiple_of(4), 0);
}

/// `RTM_NEWLINK` for a device `name` of link kind `kind`, and the kernel's
/// acknowledgement.
fn new_link(name: &str, kind: &str) -> Result<(), String> {
    let mut linkinfo = Vec::new();
    attribute(&mut linkinfo, rtnl::IFLA_INFO_KIND, kind.as_bytes());
    let mut message = vec![0u8; rtnl::HEADER_LEN + rtnl::IFINFO_LEN];
    message[rtnl::HEADER_LEN] = libc::AF_UNSPEC as u8;
    let mut c_name = name.as_bytes().to_vec();
    c_name.push(0);
    attribute(&mut message, rtnl::IFLA_IFNAME, &c_name);
    attribute(&mut message, rtnl::IFLA_LINKINFO, &linkinfo);
    let flags = rtnl::NLM_F_REQUEST | rtnl::NLM_F_ACK | rtnl::NLM_F_CREATE | rtnl::NLM_F_EXCL;
    let len = message.len() as u32;
    message[0..4].copy_from_slice(&len.to_ne_bytes());
    message[4..6].copy_from_slice(&rtnl::RTM_NEWLINK.to_ne_bytes());
    message[6..8].copy_from_slice(&flags.to_ne_bytes());
    message[8..12].copy_from_slice(&1u32.to_ne_bytes());

    // SAFETY: `socket` takes no pointers.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            rtnl::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(format!(
            "netlink socket: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    let socket = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let fd = socket.as_raw_fd();
    // SAFETY: `message` is a live buffer of the length passed. With no
    // address, the message goes to the kernel (netlink port 0).
    let sent = unsafe { libc::send(fd, message.as_ptr().cast(), message.len(), 0) };
    if sent != message.len() as isize {
        return Err(format!("netlink send: {}", std::io::Error::last_os_error()));
    }
    let mut answer = [0u8; 1024];
    // SAFETY: `answer` is a live buffer of the length passed.
    let got = unsafe { libc::recv(fd, answer.as_mut_ptr().cast(), answer.len(), 0) };
    if got < (rtnl::HEADER_LEN + 4) as isize {
        return Err(format!(
            "netlink answer: {}",
            std::io::Error::last_os_error()
        ));
    }
    let kind_of = u16::from_ne_bytes([answer[4], answer[5]]);
    let error = i32::from_ne_bytes(answer[16..20].try_into().expect("four bytes"));
    match (kind_of, error) {
        (rtnl::NLMSG_ERROR, 0) => Ok(()),
        (rtnl::NLMSG_ERROR, e) => Err(std::io::Error::from_raw_os_error(-e).to_string()),
        (other, _) => Err(format!("netlink answered message type {other}")),
    }
}

impl Pair {
    /// SO_BINDTODEVICE in both worlds (`None`: to no device).
    pub fn bind_device(&self, step: &str, dev: Option<Dev>, want: i32) {
        let k = errno(&self.kernel.bind_device(dev.map(|d| d.name.as_bytes())));
        let t = table_errno(&self.table.bind_device(dev.map(Dev::device)));
        expect(step, k, t, want);
        if want == 0 {
            assert_eq!(
                self.table.device(),
                dev.map(Dev::device),
                "{step}: the device"
            );
        }
    }
}
