//! Rows of Linux's bind-conflict decision table, run on views alone: TCP
//! from `inet_csk_get_port` → `inet_csk_bind_conflict` →
//! `inet_bind_conflict` (`net/ipv4/inet_connection_sock.c`), UDP from
//! `udp_lib_get_port` → `udp_lib_lport_inuse` (`net/ipv4/udp.c`). Each row
//! was also run on live sockets of a 6.18 kernel, with the same answers.

use super::*;
use crate::policy::rows::{connected, in_state, on_device, view, NONE, RA, RP, V6};
use Family::{Inet, Inet6};

fn listening(v: PcbView) -> PcbView {
    in_state(v, State::Listen)
}

fn time_wait(v: PcbView, peer: &str) -> PcbView {
    in_state(connected(v, peer), State::TimeWait)
}

/// (protocol, existing, new, expected) for an explicit `bind()` with no
/// fast-path record on the port.
fn rows() -> Vec<(Protocol, PcbView, PcbView, Result<(), Error>)> {
    let tcp = Protocol::Tcp;
    let udp = Protocol::Udp;
    let in_use = Err(Error::AddrInUse);
    vec![
        // TCP. Overlapping addresses without options conflict; a wildcard
        // overlaps every address of its family.
        (
            tcp,
            view(Inet, "0.0.0.0:8080", NONE, 1000, 1),
            view(Inet, "127.0.0.1:8080", NONE, 1000, 2),
            in_use,
        ),
        (
            tcp,
            view(Inet, "127.0.0.1:8080", NONE, 1000, 1),
            view(Inet, "127.0.0.2:8080", NONE, 1000, 2),
            Ok(()),
        ),
        // `inet_bind_conflict`: SO_REUSEADDR on both sides shares, unless
        // the other side listens...
        (
            tcp,
            view(Inet, "127.0.0.1:8080", RA, 1000, 1),
            view(Inet, "127.0.0.1:8080", RA, 1001, 2),
            Ok(()),
        ),
        (
            tcp,
            listening(view(Inet, "127.0.0.1:8080", RA, 1000, 1)),
            view(Inet, "127.0.0.1:8080", RA, 1000, 2),
            in_use,
        ),
        // ...and on one side only it does not.
        (
            tcp,
            view(Inet, "127.0.0.1:8080", NONE, 1000, 1),
            view(Inet, "127.0.0.1:8080", RA, 1000, 2),
            in_use,
        ),
        // A connected socket still owns its address on the port (unlike
        // FreeBSD, where only an unconnected PCB on the address blocks).
        (
            tcp,
            connected(
                view(Inet, "127.0.0.1:8080", NONE, 1000, 1),
                "127.0.0.9:5000",
            ),
            view(Inet, "127.0.0.1:8080", RA, 1000, 2),
            in_use,
        ),
        (
            tcp,
            connected(view(Inet, "127.0.0.1:8080", RA, 1000, 1), "127.0.0.9:5000"),
            view(Inet, "127.0.0.1:8080", RA, 1000, 2),
            Ok(()),
        ),
        // SO_REUSEPORT on both sides shares between equal owners, a listener
        // included; not between owners that differ.
        (
            tcp,
            listening(view(Inet, "127.0.0.1:8080", RP, 1000, 1)),
            view(Inet, "127.0.0.1:8080", RP, 1000, 2),
            Ok(()),
        ),
        (
            tcp,
            listening(view(Inet, "127.0.0.1:8080", RP, 1000, 1)),
            view(Inet, "127.0.0.1:8080", RP, 1001, 2),
            in_use,
        ),
        // ...but a TIME_WAIT socket counts as any owner.
        (
            tcp,
            time_wait(view(Inet, "127.0.0.1:8080", RP, 1000, 1), "127.0.0.9:5000"),
            view(Inet, "127.0.0.1:8080", RP, 1001, 2),
            Ok(()),
        ),
        // Dual stack: `::` without V6ONLY overlaps 0.0.0.0 both ways (FreeBSD
        // lets a dual-stack `::` follow a plain 0.0.0.0); with V6ONLY it
        // overlaps neither.
        (
            tcp,
            view(Inet6, "[::]:8080", NONE, 1000, 1),
            view(Inet, "0.0.0.0:8080", NONE, 1000, 2),
            in_use,
        ),
        (
            tcp,
            view(Inet, "0.0.0.0:8080", NONE, 1000, 1),
            view(Inet6, "[::]:8080", NONE, 1000, 2),
            in_use,
        ),
        (
            tcp,
            view(Inet, "0.0.0.0:8080", NONE, 1000, 1),
            view(Inet6, "[::]:8080", V6, 1000, 2),
            Ok(()),
        ),
        (
            tcp,
            view(Inet6, "[::]:8080", V6, 1000, 1),
            view(Inet6, "[::1]:8080", V6, 1000, 2),
            in_use,
        ),
        // A specific IPv6 address is V6ONLY (`__inet6_bind`), and
        // `127.0.0.1` and `::ffff:127.0.0.1` share one bind2 bucket.
        (
            tcp,
            view(Inet6, "[::1]:8080", V6, 1000, 1),
            view(Inet, "127.0.0.1:8080", NONE, 1000, 2),
            Ok(()),
        ),
        (
            tcp,
            view(Inet, "127.0.0.1:8080", NONE, 1000, 1),
            view(Inet6, "[::ffff:127.0.0.1]:8080", NONE, 1000, 2),
            in_use,
        ),
        // UDP (`udp_lib_lport_inuse`): no LISTEN state, so SO_REUSEADDR on
        // both sides always shares, whatever the owners.
        (
            udp,
            view(Inet, "0.0.0.0:8080", NONE, 1000, 1),
            view(Inet, "127.0.0.1:8080", NONE, 1000, 2),
            in_use,
        ),
        (
            udp,
            view(Inet, "127.0.0.1:8080", RA, 1000, 1),
            view(Inet, "127.0.0.1:8080", RA, 1001, 2),
            Ok(()),
        ),
        (
            udp,
            view(Inet, "127.0.0.1:8080", NONE, 1000, 1),
            view(Inet, "127.0.0.1:8080", RA, 1000, 2),
            in_use,
        ),
        (
            udp,
            view(Inet, "127.0.0.1:8080", RP, 1000, 1),
            view(Inet, "127.0.0.1:8080", RP, 1000, 2),
            Ok(()),
        ),
        (
            udp,
            view(Inet, "127.0.0.1:8080", RP, 1000, 1),
            view(Inet, "127.0.0.1:8080", RP, 1001, 2),
            in_use,
        ),
        (
            udp,
            view(Inet6, "[::]:8080", V6, 1000, 1),
            view(Inet, "0.0.0.0:8080", NONE, 1000, 2),
            Ok(()),
        ),
        (
            udp,
            view(Inet6, "[::]:8080", NONE, 1000, 1),
            view(Inet, "0.0.0.0:8080", NONE, 1000, 2),
            in_use,
        ),
        // Devices (`inet_bind_conflict`, `udp_lib_lport_inuse`): PCBs bound
        // to different devices never conflict; a device-bound PCB and an
        // unbound one do, either way round; the same device conflicts as
        // without devices, and shares as without them.
        (
            tcp,
            on_device(view(Inet, "127.0.0.1:8080", NONE, 1000, 1), 1),
            on_device(view(Inet, "127.0.0.1:8080", NONE, 1000, 2), 2),
            Ok(()),
        ),
        (
            tcp,
            on_device(view(Inet, "0.0.0.0:8080", NONE, 1000, 1), 1),
            view(Inet, "127.0.0.1:8080", NONE, 1000, 2),
            in_use,
        ),
        (
            tcp,
            view(Inet, "127.0.0.1:8080", NONE, 1000, 1),
            on_device(view(Inet, "127.0.0.1:8080", NONE, 1000, 2), 2),
            in_use,
        ),
        (
            tcp,
            on_device(view(Inet, "127.0.0.1:8080", NONE, 1000, 1), 2),
            on_device(view(Inet, "127.0.0.1:8080", NONE, 1000, 2), 2),
            in_use,
        ),
        (
            tcp,
            listening(on_device(view(Inet, "127.0.0.1:8080", RP, 1000, 1), 2)),
            on_device(view(Inet, "127.0.0.1:8080", RP, 1000, 2), 2),
            Ok(()),
        ),
        (
            udp,
            on_device(view(Inet, "127.0.0.1:53", NONE, 1000, 1), 1),
            on_device(view(Inet, "127.0.0.1:53", NONE, 1000, 2), 2),
            Ok(()),
        ),
        (
            udp,
            on_device(view(Inet, "127.0.0.1:53", NONE, 1000, 1), 1),
            view(Inet, "0.0.0.0:53", NONE, 1000, 2),
            in_use,
        ),
        (
            udp,
            view(Inet6, "[::]:53", NONE, 1000, 1),
            on_device(view(Inet, "127.0.0.1:53", NONE, 1000, 2), 2),
            in_use,
        ),
        (
            udp,
            on_device(view(Inet, "127.0.0.1:53", NONE, 1000, 1), 1),
            on_device(view(Inet, "127.0.0.1:53", NONE, 1000, 2), 1),
            in_use,
        ),
        (
            udp,
            on_device(view(Inet, "127.0.0.1:53", RA, 1000, 1), 1),
            view(Inet, "127.0.0.1:53", RA, 1000, 2),
            Ok(()),
        ),
    ]
}

#[test]
fn decision_table_rows() {
    for (index, (protocol, existing, new, expected)) in rows().into_iter().enumerate() {
        assert_eq!(
            bind_conflict(protocol, &new, &[existing], PortMemo::EMPTY),
            expected,
            "row {index}: {protocol:?} {existing:?} then {new:?}"
        );
    }
}

#[test]
fn autobind_takes_only_ports_nobody_overlaps() {
    // `inet_csk_find_open_port` runs the scan with `relax` and
    // `reuseport_ok` off: two SO_REUSEADDR or SO_REUSEPORT sockets that an
    // explicit bind lets share a port do not share an ephemeral one.
    let existing = view(Inet, "127.0.0.1:40000", RA | RP, 1000, 1);
    let new = view(Inet, "127.0.0.1:40000", RA | RP, 1000, 2);
    assert_eq!(
        bind_conflict(Protocol::Tcp, &new, &[existing], PortMemo::EMPTY),
        Ok(())
    );
    assert!(bind_port_busy(Protocol::Tcp, &new, &[existing]));
    let elsewhere = view(Inet, "127.0.0.2:40000", NONE, 1000, 2);
    assert!(!bind_port_busy(Protocol::Tcp, &elsewhere, &[existing]));
}

#[test]
fn listen_rechecks_the_port_in_listen_state() {
    // `inet_csk_listen_start` runs `get_port` again with the socket in
    // LISTEN: of two SO_REUSEADDR sockets bound to one address, the first
    // to listen does, the other is then refused.
    let first = view(Inet, "127.0.0.1:8080", RA, 1000, 1);
    let second = view(Inet, "127.0.0.1:8080", RA, 1000, 2);
    assert_eq!(
        listen_check(Protocol::Tcp, &second, &[first], PortMemo::EMPTY),
        in_use_if(false)
    );
    let listening_second = listening(second);
    assert_eq!(
        listen_check(Protocol::Tcp, &first, &[listening_second], PortMemo::EMPTY),
        in_use_if(true)
    );
    // A listener on another address does not overlap.
    let elsewhere = listening(view(Inet, "127.0.0.2:8080", RA, 1000, 1));
    assert_eq!(
        listen_check(Protocol::Tcp, &second, &[elsewhere], PortMemo::EMPTY),
        in_use_if(false)
    );
}

#[test]
fn the_fast_path_record_skips_the_scan() {
    // `sk_reuseport_match`: once a SO_REUSEPORT socket of uid 1000 on
    // 127.0.0.1 set the bucket's record, another one of that owner on that
    // address skips `inet_csk_bind_conflict`, even past a socket that has
    // cleared SO_REUSEPORT since. Another owner gets no such pass.
    let founder = listening(view(Inet, "127.0.0.1:8080", RP, 1000, 1));
    let memo = bound(Protocol::Tcp, &founder, PortMemo::EMPTY);
    assert!(memo.held_by_bind());
    let cleared = listening(view(Inet, "127.0.0.1:8080", NONE, 1000, 1));
    let new = view(Inet, "127.0.0.1:8080", RP, 1000, 2);
    assert_eq!(
        bind_conflict(Protocol::Tcp, &new, &[cleared], PortMemo::EMPTY),
        in_use_if(true)
    );
    assert_eq!(
        bind_conflict(Protocol::Tcp, &new, &[cleared], memo),
        in_use_if(false)
    );
    let stranger = view(Inet, "127.0.0.1:8080", RP, 1001, 2);
    assert_eq!(
        bind_conflict(Protocol::Tcp, &stranger, &[cleared], memo),
        in_use_if(true)
    );
    // A socket without SO_REUSEPORT that joins clears the record.
    let plain = view(Inet, "127.0.0.2:8080", NONE, 1000, 3);
    let after = bound(Protocol::Tcp, &plain, memo);
    assert!(after.held_by_bind());
    assert_eq!(
        bind_conflict(Protocol::Tcp, &new, &[cleared], after),
        in_use_if(true)
    );
}

fn in_use_if(conflict: bool) -> Result<(), Error> {
    if conflict {
        Err(Error::AddrInUse)
    } else {
        Ok(())
    }
}

/// `compute_score`'s device part: a PCB bound to another device, or asked
/// about a packet whose device is unknown, does not match; one bound to the
/// packet's device scores 4 more for IPv4 UDP, 1 more for TCP and IPv6 UDP;
/// an unbound PCB scores nothing more and matches every device.
#[test]
fn device_points_of_compute_score() {
    let v4: SocketAddr = "127.0.0.1:53".parse().unwrap();
    let v6: SocketAddr = "[::1]:53".parse().unwrap();
    let bound = on_device(view(Inet6, "[::]:53", NONE, 0, 1), 7);
    let unbound = view(Inet6, "[::]:53", NONE, 0, 1);
    let rows = [
        (Protocol::Udp, &bound, v4, Some(Device(7)), Some(4)),
        (Protocol::Udp, &bound, v6, Some(Device(7)), Some(1)),
        (Protocol::Tcp, &bound, v4, Some(Device(7)), Some(1)),
        (Protocol::Tcp, &bound, v6, Some(Device(7)), Some(1)),
        (Protocol::Udp, &bound, v4, Some(Device(8)), None),
        (Protocol::Tcp, &bound, v4, None, None),
        (Protocol::Udp, &unbound, v4, Some(Device(7)), Some(0)),
        (Protocol::Tcp, &unbound, v6, None, Some(0)),
    ];
    for (protocol, candidate, local, device, points) in rows {
        assert_eq!(
            device_rank(protocol, candidate, &local, device),
            points,
            "{protocol:?} {candidate:?} {local} {device:?}"
        );
    }
}

/// Reuseport groups form per device: the same options and address on two
/// devices are two groups.
#[test]
fn groups_form_per_device() {
    let one = on_device(view(Inet, "127.0.0.1:53", RP, 0, 1), 1);
    let two = on_device(view(Inet, "127.0.0.1:53", RP, 0, 2), 2);
    let also_one = on_device(view(Inet, "127.0.0.1:53", RP, 0, 3), 1);
    assert_ne!(group_key(&one), group_key(&two));
    assert_eq!(group_key(&one), group_key(&also_one));
    assert!(!group_mate(Protocol::Udp, &two, &one));
    assert!(group_mate(Protocol::Udp, &also_one, &one));
}
