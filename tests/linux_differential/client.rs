//! Client-side port control in the random sequences: IP_BIND_ADDRESS_NO_PORT
//! and IP_LOCAL_PORT_RANGE set on random sockets, and each sequence's
//! `tcp_tw_reuse`, in both worlds.
//!
//! The per-socket ranges the sequences set are the ones whose meaning the
//! port mapping cannot change: unset, both ends outside the namespace's
//! range, the whole range, an end of 0, and backwards ends (EINVAL). None of
//! them narrows the range, but all but the first put the socket's own range
//! in force, so its `connect()` takes every port in turn instead of its even
//! ports first, which the port classes follow (see `ports.rs`).
//!
//! `tcp_tw_reuse` is drawn per sequence (0, 1 or 2, with
//! `tcp_tw_reuse_delay` at its 1 ms minimum). Every TIME_WAIT socket the
//! sequence makes is marked reusable in the table once the delay has
//! passed, as a stack would (loopback connections use timestamps).

use pcbhash::policy::TwReuse;

use super::linux_kernel::{errno, set_ip_option, table_errno, Netns};
use super::world::{Rng, Step, World};

/// How often a step is one of these calls, where they are on.
pub(crate) const CLIENT_PERCENT: u64 = 8;

/// `IP_BIND_ADDRESS_NO_PORT`, `IP_LOCAL_PORT_RANGE` (`linux/in.h`).
const IP_BIND_ADDRESS_NO_PORT: libc::c_int = 24;
const IP_LOCAL_PORT_RANGE: libc::c_int = 51;

/// The `tcp_tw_reuse` of the sequence of `seed`, set in the namespace; the
/// table's mode to match.
pub(crate) fn tw_reuse(ns: &Netns, seed: u64) -> Result<TwReuse, String> {
    let (mode, value) = match Rng(seed ^ 0x7477_5f72_6575_7365).below(3) {
        0 => (TwReuse::Off, "0"),
        1 => (TwReuse::On, "1"),
        _ => (TwReuse::Loopback, "2"),
    };
    ns.sysctl("net/ipv4/tcp_tw_reuse", value)
        .and_then(|()| ns.sysctl("net/ipv4/tcp_tw_reuse_delay", "1"))
        .map_err(|e| format!("cannot set tcp_tw_reuse: {e}"))?;
    Ok(mode)
}

impl World {
    /// One call on a random socket: IP_BIND_ADDRESS_NO_PORT on or off, or
    /// an IP_LOCAL_PORT_RANGE. `None` when no socket is open.
    pub(crate) fn client_step(&mut self, rng: &mut Rng) -> Option<Step> {
        let live = self.live();
        if live.is_empty() {
            return None;
        }
        let i = rng.pick(&live);
        self.client_calls += 1;
        if rng.chance(50) {
            return Some(self.set_no_port(i, rng.chance(75)));
        }
        let (low, high) = (self.low, self.high);
        let range = match rng.below(5) {
            0 => (0, 0),
            1 => (1024, low - 1),
            2 => (low, high),
            3 => (0, high),
            _ if high > low => (high, low),
            _ => (high + 1, 65535),
        };
        Some(self.set_port_range(i, range))
    }

    /// IP_BIND_ADDRESS_NO_PORT in both worlds.
    fn set_no_port(&mut self, i: usize, on: bool) -> Step {
        let entry = self.entry(i);
        let k = ip_option(entry, IP_BIND_ADDRESS_NO_PORT, u32::from(on));
        let t = table_errno(&entry.table.set_bind_address_no_port(on));
        self.compare(
            &format!("#{i} setsockopt(IP_BIND_ADDRESS_NO_PORT, {on})"),
            k,
            t,
        )?;
        if k == 0 {
            self.entries[i].as_mut().expect("live").no_port = on;
        }
        Ok(())
    }

    /// IP_LOCAL_PORT_RANGE `(first, last)` in both worlds; `(0, 0)` unsets.
    fn set_port_range(&mut self, i: usize, (first, last): (u16, u16)) -> Step {
        let entry = self.entry(i);
        let packed = u32::from(first) | u32::from(last) << 16;
        let k = ip_option(entry, IP_LOCAL_PORT_RANGE, packed);
        let t = table_errno(&entry.table.set_local_port_range(Some(first..=last)));
        self.compare(
            &format!("#{i} setsockopt(IP_LOCAL_PORT_RANGE, {first}-{last})"),
            k,
            t,
        )?;
        if k == 0 {
            self.entries[i].as_mut().expect("live").own_range = (first, last) != (0, 0);
        }
        Ok(())
    }
}

/// `setsockopt(IPPROTO_IP, name, value)` on entry's kernel socket: its
/// errno.
fn ip_option(entry: &super::world::Entry, name: libc::c_int, value: u32) -> i32 {
    errno(&set_ip_option(&entry.kernel, name, value))
}
