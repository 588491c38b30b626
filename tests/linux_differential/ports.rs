//! Ports chosen at random: the scan classes, and the mapping of the
//! kernel's ports onto the table's.

use super::linux_kernel;
use super::world::{Scan, World};
use pcbhash::Protocol;

/// Whether a scan tries one parity of the range before the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Parity {
    /// The kernel's parity passes (every scan but the next).
    Passes,
    /// Every port in turn: `connect()` of a socket with its own range.
    Any,
}

impl World {
    /// The scan class of `port`, or `None` if the kernel's scan cannot reach
    /// it (the scans cover an even number of ports of each range or half).
    /// `halves`: tell the two halves of the range apart, as the SO_REUSEADDR
    /// bind scan does (for four ports or more).
    pub(super) fn class(&self, port: u16, halves: bool, parity: Parity) -> Option<(u16, u16)> {
        let (low, n) = (self.low, self.high - self.low + 1);
        if port < low || port > self.high {
            return None;
        }
        if self.protocol == Protocol::Udp || !halves && parity == Parity::Any {
            return Some((0, 0));
        }
        let (start, size, half) = if halves && n >= 4 {
            let split = (n >> 2) << 1;
            if port - low < split {
                (low, split, 0)
            } else {
                (low + split, n - split, 1)
            }
        } else {
            (low, n, 0)
        };
        let scanned = if size > 1 { size & !1 } else { size };
        let offset = port - start;
        (offset < scanned).then_some((half, offset % 2))
    }

    /// Checks a randomly chosen port pair and maps the kernel's port onto
    /// the table's. `Ok(false)`: the two cannot be mapped (stop the sequence).
    pub(super) fn map_random_port(
        &mut self,
        me: usize,
        kernel: u16,
        table: u16,
        scan: Scan,
    ) -> Result<bool, String> {
        let halves = matches!(scan, Scan::Bind { reuse_addr: true });
        let parity = match scan {
            Scan::ConnectOwnRange => Parity::Any,
            _ => Parity::Passes,
        };
        let (kc, tc) = (
            self.class(kernel, halves, parity),
            self.class(table, halves, parity),
        );
        if kc.is_none() || kc != tc {
            return Err(format!(
                "{scan:?} picked port {kernel} (class {kc:?}) in the kernel but {table} (class {tc:?}) in the table"
            ));
        }
        let expected = self.to_table_port(kernel);
        if expected == table {
            return Ok(true);
        }
        // The mapping must keep every scan's classes: the finest is the half
        // and the parity.
        let finest = |port| self.class(port, true, Parity::Passes);
        if finest(expected) != finest(table) {
            return Ok(false);
        }
        let other = self.to_kernel_port(table);
        if self.kernel_port_in_use(kernel, me) || self.kernel_port_in_use(other, me) {
            return Ok(false);
        }
        // Both were free in both worlds: swap the two ports' images.
        self.k2t.insert(kernel, table);
        self.k2t.insert(other, expected);
        Ok(true)
    }

    /// Compares the address a no-port `bind()` recorded: the kernel shows it
    /// with port 0, the table holds no port.
    pub(super) fn check_address_only(
        &mut self,
        i: usize,
        ip: std::net::IpAddr,
    ) -> Result<bool, String> {
        self.address_only_binds += 1;
        let entry = self.entry(i);
        let kernel = linux_kernel::local_addr(&entry.kernel).ok_or("no kernel local address")?;
        let table = entry.table.local_addr();
        if kernel.ip().to_canonical() != ip.to_canonical() || kernel.port() != 0 || table.is_some()
        {
            return Err(format!(
                "no-port bind({ip}): kernel {kernel}, table {table:?} (expected no port)"
            ));
        }
        Ok(true)
    }

    /// Compares the local addresses after a successful call; `scan` says the
    /// port was chosen at random.
    pub(super) fn check_local(&mut self, i: usize, scan: Option<Scan>) -> Result<bool, String> {
        let entry = self.entry(i);
        let kernel = linux_kernel::local_addr(&entry.kernel).ok_or("no kernel local address")?;
        let table = entry.table.local_addr().ok_or("no table local address")?;
        if kernel.ip().to_canonical() != table.ip().to_canonical() {
            return Err(format!("local address: kernel {kernel}, table {table}"));
        }
        let mapped = match scan {
            Some(scan) => self.map_random_port(i, kernel.port(), table.port(), scan)?,
            None => {
                if self.to_table_port(kernel.port()) != table.port() {
                    return Err(format!("local port: kernel {kernel}, table {table}"));
                }
                true
            }
        };
        if !self.known.contains(&kernel.port()) {
            self.known.push(kernel.port());
        }
        Ok(mapped)
    }
}
