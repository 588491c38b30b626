//! Who may have a port: the bind conflicts of `inet_csk_get_port()` and
//! `udp_lib_get_port()`, and the order in which an autobind tries the ports
//! of the ephemeral range (`inet_csk_find_open_port()`).

use pcbhash::{Error, State};

use super::sock::{contends, owners, v6only};
use crate::state::{choose, MResult, Model, Rec};

/// `inet_bind_conflict()` with relax and reuseport_ok (explicit bind and the
/// re-check at listen()).
fn tcp_pair_conflict(n: &Rec, e: &Rec) -> bool {
    if n.ra && e.ra && e.state != State::Listen {
        return false;
    }
    !(n.rp && e.rp && (e.state == State::TimeWait || n.cred.uid == e.cred.uid))
}

pub(super) fn tcp_explicit_conflict(m: &Model, id: usize, n: &Rec, port: u16) -> bool {
    owners(m, id, port).into_iter().any(|e| {
        let e = &m.recs[e];
        contends(n, e) && tcp_pair_conflict(n, e)
    })
}

/// `udp_lib_get_port()` with a port (explicit bind), as the running kernel
/// decides it: the port's list is walked in order, and the first socket that
/// overlaps (and does not share by SO_REUSEADDR on both) decides. One that
/// would not share refuses the bind; the socket whose reuseport group the new
/// one would join (neither with SO_REUSEADDR) lets it through; any other
/// SO_REUSEPORT sharer is passed over.
pub(super) fn udp_explicit_conflict(m: &Model, id: usize, n: &Rec, port: u16) -> bool {
    let mut list = owners(m, id, port);
    list.sort_by_key(|&i| m.recs[i].lpos);
    for e in list {
        let e = &m.recs[e];
        if (e.ra && n.ra) || !contends(n, e) {
            continue;
        }
        if !(e.rp && n.rp && e.cred.uid == n.cred.uid) {
            return true;
        }
        let mate = e.inet6 == n.inet6 && v6only(e) == v6only(n) && e.local.0 == n.local.0;
        if mate && !e.ra && !n.ra {
            return false;
        }
    }
    false
}

/// `udp_lib_lport_inuse()` with a bitmap (autobind): every eligible owner but a
/// SO_REUSEPORT pair of one uid marks the port.
fn udp_autobind_busy(m: &Model, id: usize, n: &Rec, port: u16) -> bool {
    owners(m, id, port).into_iter().any(|e| {
        let e = &m.recs[e];
        let shares_port = e.rp && n.rp && e.cred.uid == n.cred.uid;
        let both_reuse = e.ra && n.ra;
        !both_reuse && contends(n, e) && !shares_port
    })
}

/// `inet_csk_find_open_port()`: the classes of ports in the order they are
/// tried. Without SO_REUSEADDR: the ports at an odd offset from the range
/// start, then the even ones. With it: the lower half first, then the upper.
/// A pass takes `remaining` ports, the range's size rounded down to even
/// (`remaining &= ~1U`), so the last port of a range of three (a PCB's own
/// range) is never tried; larger odd ranges, where the random offset
/// decides whether the last port is reached, do not occur here.
fn bind_classes(m: &Model, n: &Rec) -> MResult<Vec<Vec<u16>>> {
    let (low, high, _) = m.scan_range(n)?;
    let (low, high) = (u32::from(low), u32::from(high) + 1);
    let parity = |lo: u32, hi: u32| -> Vec<Vec<u16>> {
        let size = hi - lo;
        let hi = lo + if size > 1 { size & !1 } else { size };
        let odd = (lo..hi)
            .filter(|p| (p - lo) % 2 == 1)
            .map(|p| p as u16)
            .collect();
        let even = (lo..hi)
            .filter(|p| (p - lo) % 2 == 0)
            .map(|p| p as u16)
            .collect();
        vec![odd, even]
    };
    Ok(if n.ra && high - low >= 4 {
        let half = low + (((high - low) >> 2) << 1);
        let mut v = parity(low, half);
        v.extend(parity(half, high));
        v
    } else {
        parity(low, high)
    })
}

/// The first class with a free port.
pub(super) fn pick_from_classes(
    classes: Vec<Vec<u16>>,
    free: impl Fn(u16) -> bool,
    pick: Option<u16>,
    what: &str,
    exhausted: Error,
) -> MResult<u16> {
    for class in classes {
        let ok: Vec<u16> = class.into_iter().filter(|&p| free(p)).collect();
        if !ok.is_empty() {
            return choose(&ok, pick, what);
        }
    }
    Err(exhausted.into())
}

pub(super) fn tcp_autobind(m: &Model, id: usize, n: &Rec, pick: Option<u16>) -> MResult<u16> {
    pick_from_classes(
        bind_classes(m, n)?,
        |p| {
            owners(m, id, p)
                .into_iter()
                .all(|e| !contends(n, &m.recs[e]))
        },
        pick,
        "Linux inet_csk_find_open_port",
        Error::AddrInUse,
    )
}

pub(super) fn udp_autobind(
    m: &Model,
    id: usize,
    n: &Rec,
    pick: Option<u16>,
    exhausted: Error,
) -> MResult<u16> {
    let free: Vec<u16> = m
        .range_ports(n)?
        .filter(|&p| !udp_autobind_busy(m, id, n, p))
        .collect();
    if free.is_empty() {
        return Err(exhausted.into());
    }
    choose(&free, pick, "Linux udp_lib_get_port")
}
