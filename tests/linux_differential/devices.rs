//! SO_BINDTODEVICE in the random sequences: a second device beside `lo`
//! (no address on it), sockets bound to `lo`, to it, or to no device, in
//! both worlds and compared errno for errno.
//!
//! Every packet of the test stays on loopback addresses and arrives on
//! `lo`, so the table answers the compared lookups with
//! `lookup_on(lo)`: a socket bound to the second device must take none of
//! them, one bound to `lo` outranks an unbound one.
//!
//! One difference is known, left out and counted with the known gaps: a
//! socket bound to the second device cannot reach a loopback address (the
//! kernel's route lookup refuses an output device without the address),
//! which is routing and not the table's business; such a socket's
//! `connect()` is not made in either world. Nor are the calls with an IPv6
//! address that the kernel looks for on the socket's device: link-local
//! ones on any device, specific ones on the second device (see
//! `address_not_on_device`); which addresses a device has is the stack's.

use std::net::IpAddr;

use super::linux_kernel::devices::Dev;
use super::linux_kernel::{errno, table_errno};
use super::world::{Rng, World};

/// How often a step is a SO_BINDTODEVICE call, where devices exist.
pub(crate) const DEVICE_PERCENT: u64 = 12;

impl World {
    /// One SO_BINDTODEVICE call on a random socket: to `lo`, to the second
    /// device, or to none. `None` where the namespace has no second device
    /// or no socket is open.
    pub(crate) fn device_step(&mut self, rng: &mut Rng) -> Option<Result<(), String>> {
        let (lo, second) = self.devices?;
        let live = self.live();
        if live.is_empty() {
            return None;
        }
        let i = rng.pick(&live);
        let dev = match rng.below(5) {
            0 | 1 => Some(lo),
            2 | 3 => Some(second),
            _ => None,
        };
        Some(self.bind_device(i, dev))
    }

    /// SO_BINDTODEVICE on entry `i` in both worlds, then the device each
    /// world reports.
    pub(crate) fn bind_device(&mut self, i: usize, dev: Option<Dev>) -> Result<(), String> {
        self.device_calls += 1;
        let entry = self.entry(i);
        let k = errno(&entry.kernel.bind_device(dev.map(|d| d.name.as_bytes())));
        let t = table_errno(&entry.table.bind_device(dev.map(Dev::device)));
        let name = dev.map_or("none", |d| d.name);
        self.compare(&format!("#{i} SO_BINDTODEVICE({name})"), k, t)?;
        self.check_device(i)
    }

    /// The kernel's device of entry `i` (`SO_BINDTODEVICE` read back) and
    /// the table's must be the same.
    pub(crate) fn check_device(&self, i: usize) -> Result<(), String> {
        let entry = self.entry(i);
        let kernel = entry
            .kernel
            .device()
            .map_err(|e| format!("#{i} getsockopt(SO_BINDTODEVICE): {e}"))?;
        let kernel = kernel.map(|name| String::from_utf8_lossy(&name).into_owned());
        let table = entry.table.device().map(|d| {
            self.devices
                .map(|(lo, second)| {
                    if d == lo.device() {
                        lo.name.to_string()
                    } else if d == second.device() {
                        second.name.to_string()
                    } else {
                        format!("{d:?}")
                    }
                })
                .unwrap_or_else(|| format!("{d:?}"))
        });
        if kernel != table {
            return Err(format!("#{i} device: kernel {kernel:?}, table {table:?}"));
        }
        Ok(())
    }

    /// Whether entry `i` is bound to a device and `address` an IPv6 address
    /// the kernel looks for on that device: a link-local one (the device
    /// stands for the missing scope, and the address is on none), or, on
    /// the second device, any specific IPv6 address (they are all on `lo`).
    /// Which addresses a device has is the stack's; counted as a known gap.
    pub(crate) fn address_not_on_device(&mut self, i: usize, address: IpAddr) -> bool {
        let Some(device) = self.entry(i).table.device() else {
            return false;
        };
        let IpAddr::V6(v6) = address else {
            return false;
        };
        let link_local = v6.segments()[0] & 0xffc0 == 0xfe80 || v6.is_multicast();
        let elsewhere = device != self.lo && !v6.is_unspecified() && v6.to_ipv4_mapped().is_none();
        let gap = link_local || elsewhere;
        if gap {
            self.known_gap += 1;
            self.note(format!(
                "#{i} call with {address} left out: not an address of its device (known gap)"
            ));
        }
        gap
    }

    /// Whether entry `i` or its peer is bound to the second device: their
    /// packets to each other leave through it and are lost, so an orderly
    /// close would never finish; such a pair is closed abortively.
    pub(crate) fn pair_off_lo(&self, i: usize) -> bool {
        self.off_lo(i) || self.entry(i).peer.is_some_and(|peer| self.off_lo(peer))
    }

    /// Whether entry `e` is live and bound to the second device.
    pub(crate) fn off_lo(&self, e: usize) -> bool {
        let second = self.devices.map(|(_, second)| second.device());
        second.is_some()
            && self.entries[e]
                .as_ref()
                .is_some_and(|entry| entry.table.device() == second)
    }

    /// Whether entry `i` is bound to the second device, whose `connect()`
    /// to a loopback address only the kernel's routing refuses (see the
    /// module docs); counted as a known gap.
    pub(crate) fn cannot_route(&mut self, i: usize) -> bool {
        let second = self.devices.map(|(_, second)| second.device());
        let stuck = second.is_some() && self.entry(i).table.device() == second;
        if stuck {
            self.known_gap += 1;
            self.note(format!(
                "#{i} connect() left out: bound to the second device (known gap)"
            ));
        }
        stuck
    }
}
