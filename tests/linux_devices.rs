//! Devices (SO_BINDTODEVICE) under `Policy::Linux`, checked on the running
//! kernel: in a fresh network namespace with a second device beside `lo`
//! (no address on it; every packet stays on loopback addresses and arrives
//! on `lo`), each call runs on a real socket and on the table, errno for
//! errno, and lookups are compared by where the kernel delivers. Without a
//! namespace the tests print why and return.

mod linux_kernel;

use std::net::SocketAddr;

use linux_kernel::devices::{add_second, Dev};
use linux_kernel::dual::{Pair, Scene, OK};
use linux_kernel::receive::{self, pin_cpu, same_cpu, tcp_receiver, udp_receiver};
use linux_kernel::skip::{current_test, decide, Missing, CI_VAR};
use pcbhash::{Builder, Cred, Device, Error, Family, Policy, Protocol};

const EADDRINUSE: i32 = libc::EADDRINUSE;

fn at(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

/// A scene for `protocol` with its two devices, `lo` and the second one;
/// `None` (after saying why) where the namespace or the device cannot be
/// had.
fn scene(protocol: Protocol) -> Option<(Scene, Dev, Dev)> {
    let scene = Scene::with(protocol, (40000, 40001))?;
    match add_second() {
        Ok((lo, second)) => Some((scene, lo, second)),
        Err(reason) => match decide(
            &current_test(),
            &reason,
            std::env::var(CI_VAR).ok().as_deref(),
        ) {
            Missing::Skip(line) => {
                use std::io::Write;
                let _ = writeln!(std::io::stderr(), "{line}");
                None
            }
            Missing::Fail(message) => panic!("{message}"),
        },
    }
}

/// A socket with the options asked and bound to `dev` before anything
/// else.
fn on(scene: &Scene, dev: Option<Dev>, reuse: (bool, bool)) -> Pair {
    let pair = scene.socket_with(false, 0, reuse.0, reuse.1);
    pair.bind_device("SO_BINDTODEVICE", dev, OK);
    pair
}

/// `inet_bind_conflict` / `udp_lib_lport_inuse`: two sockets on one port,
/// each bound to a device or not, the second one's bind as the kernel
/// answers it.
#[test]
fn linux_devices_bind_conflicts() {
    for protocol in [Protocol::Tcp, Protocol::Udp] {
        let Some((scene, lo, second)) = scene(protocol) else {
            return;
        };
        let rows = [
            (Some(lo), "127.0.0.1", Some(second), "127.0.0.1", OK),
            (Some(lo), "127.0.0.1", None, "127.0.0.1", EADDRINUSE),
            (None, "127.0.0.1", Some(lo), "127.0.0.1", EADDRINUSE),
            (Some(lo), "127.0.0.1", Some(lo), "127.0.0.1", EADDRINUSE),
            (Some(second), "0.0.0.0", Some(lo), "127.0.0.1", OK),
            (None, "0.0.0.0", Some(second), "127.0.0.1", EADDRINUSE),
            (Some(lo), "0.0.0.0", None, "0.0.0.0", EADDRINUSE),
            (Some(second), "0.0.0.0", Some(lo), "0.0.0.0", OK),
        ];
        for (row, (first_dev, first_ip, then_dev, then_ip, want)) in rows.into_iter().enumerate() {
            let port = 20000 + row as u16;
            let step = format!(
                "{protocol:?} row {row}: {first_dev:?} {first_ip} then {then_dev:?} {then_ip}"
            );
            let first = on(&scene, first_dev, (false, false));
            first.bind(&step, first_ip, port, OK);
            let then = on(&scene, then_dev, (false, false));
            then.bind(&step, then_ip, port, want);
        }
    }
}

/// `sock_bindtoindex`: the kernel refuses no state (bound, listening,
/// connected); the device changes without a conflict check, and the next
/// bind and `listen()` check against the new device.
#[test]
fn linux_devices_bind_device_in_any_state() {
    let Some((scene, lo, second)) = scene(Protocol::Tcp) else {
        return;
    };
    let a = on(&scene, Some(lo), (false, false));
    a.bind("a on lo", "127.0.0.1", 20100, OK);
    let b = on(&scene, Some(second), (false, false));
    b.bind("b on the second device", "127.0.0.1", 20100, OK);
    b.bind_device("b moves to lo after bind, beside a", Some(lo), OK);
    let c = on(&scene, None, (false, false));
    c.bind("c on no device", "127.0.0.1", 20100, EADDRINUSE);
    a.bind_device("a leaves its device", None, OK);
    let d = on(&scene, Some(second), (false, false));
    d.bind(
        "d on the second device, a now on none",
        "127.0.0.1",
        20100,
        EADDRINUSE,
    );
    b.listen("b listens: a, on no device, overlaps it", EADDRINUSE);

    let server = on(&scene, Some(lo), (false, false));
    server.bind("server", "127.0.0.1", 20101, OK);
    server.listen("server listens", OK);
    server.bind_device("listener to the second device", Some(second), OK);
    server.bind_device("listener back to lo", Some(lo), OK);
    let client = on(&scene, None, (false, false));
    let to = at("127.0.0.1:20101");
    let from = client.connect("client connects", to, OK).expect("local");
    let accepted = server.accept(to, from);
    client.bind_device("connected client to lo", Some(lo), OK);
    accepted.bind_device("accepted to the second device", Some(second), OK);
    client.bind_device("connected client to none", None, OK);

    let Some((scene, lo, second)) = scene_udp() else {
        return;
    };
    let u = on(&scene, Some(lo), (false, false));
    u.bind("udp on lo", "127.0.0.1", 20102, OK);
    u.connect("udp connects", at("127.0.0.1:9"), OK);
    u.bind_device("connected udp to the second device", Some(second), OK);
    let v = on(&scene, Some(lo), (false, false));
    v.bind(
        "udp on lo beside one now on the second device",
        "127.0.0.1",
        20102,
        OK,
    );
}

fn scene_udp() -> Option<(Scene, Dev, Dev)> {
    // A second namespace for the same thread: `Scene` enters a fresh one.
    scene(Protocol::Udp)
}

/// The index of the PCB of `pairs` that `lookup_on(device)` gives a packet
/// from `from` to `to`.
fn table_receiver_on(
    scene: &Scene,
    pairs: &[&Pair],
    device: Device,
    from: SocketAddr,
    to: SocketAddr,
) -> Option<usize> {
    let guard = scene.table.pin();
    let found = scene.table.lookup_on(device, to, from, &guard)?;
    pairs.iter().position(|pair| found.is(&pair.table))
}

/// Which of `pairs` the table's `lookup` (device unknown) gives.
fn table_receiver(
    scene: &Scene,
    pairs: &[&Pair],
    from: SocketAddr,
    to: SocketAddr,
) -> Option<usize> {
    let guard = scene.table.pin();
    let found = scene.table.lookup(to, from, &guard)?;
    pairs.iter().position(|pair| found.is(&pair.table))
}

/// One UDP datagram on `lo`: the kernel's receiver, the table's for
/// `lookup_on(lo)`, and the one expected, all the same.
fn udp_lands(
    step: &str,
    scene: &Scene,
    lo: Dev,
    pairs: &[&Pair],
    from: &str,
    to: &str,
    want: Option<usize>,
) {
    let (from, to) = (at(from), at(to));
    let sockets: Vec<_> = pairs.iter().map(|pair| &pair.kernel).collect();
    let kernel = udp_receiver(&sockets, from, to);
    let table = table_receiver_on(scene, pairs, lo.device(), from, to);
    assert!(
        kernel == want && table == want,
        "{step}: expected {want:?}, the kernel gave {kernel:?}, the table {table:?}"
    );
}

/// `compute_score` / `inet_match` for UDP: a socket bound to the packet's
/// device outranks an unbound one, one bound to another device never
/// answers, a specific address still comes before a wildcard one, a
/// connected socket on another device gives way to an unbound one, and
/// reuseport groups form per device.
#[test]
fn linux_devices_udp_receivers() {
    let Some((scene, lo, second)) = scene(Protocol::Udp) else {
        return;
    };
    let cpu = pin_cpu();
    let shared = (true, false);
    // The lo-bound socket first: among equal scores the kernel takes the
    // newest, so only its device points put it ahead of the later one.
    let on_lo = on(&scene, Some(lo), shared);
    on_lo.bind("lo on 0.0.0.0", "0.0.0.0", 20200, OK);
    let unbound = on(&scene, None, shared);
    unbound.bind("unbound on 0.0.0.0", "0.0.0.0", 20200, OK);
    let on_second = on(&scene, Some(second), shared);
    on_second.bind("second on 0.0.0.0", "0.0.0.0", 20200, OK);
    for pair in [&unbound, &on_lo, &on_second] {
        same_cpu(&pair.kernel, cpu);
    }
    let all = [&unbound, &on_lo, &on_second];
    udp_lands(
        "lo-bound first",
        &scene,
        lo,
        &all,
        "127.0.0.1:30000",
        "127.0.0.1:20200",
        Some(1),
    );
    let guard = scene.table.pin();
    let unknown = table_receiver(&scene, &all, at("127.0.0.1:30000"), at("127.0.0.1:20200"));
    assert_eq!(unknown, Some(0), "device unknown: only the unbound socket");
    drop(guard);
    on_lo.bind_device("lo-bound leaves its device", None, OK);
    udp_lands(
        "two unbound: the newer",
        &scene,
        lo,
        &all,
        "127.0.0.1:30000",
        "127.0.0.1:20200",
        Some(0),
    );
    on_lo.bind_device("and goes to the second device", Some(second), OK);
    udp_lands(
        "only the unbound one answers lo",
        &scene,
        lo,
        &all,
        "127.0.0.1:30000",
        "127.0.0.1:20200",
        Some(0),
    );

    // A specific address before a wildcard one, whatever the devices.
    let wild_lo = on(&scene, Some(lo), shared);
    wild_lo.bind("lo on 0.0.0.0", "0.0.0.0", 20201, OK);
    let specific = on(&scene, None, shared);
    specific.bind("unbound on 127.0.0.1", "127.0.0.1", 20201, OK);
    for pair in [&specific, &wild_lo] {
        same_cpu(&pair.kernel, cpu);
    }
    udp_lands(
        "specific first",
        &scene,
        lo,
        &[&specific, &wild_lo],
        "127.0.0.1:30001",
        "127.0.0.1:20201",
        Some(0),
    );

    // Bound to another device only: nobody receives.
    let elsewhere = on(&scene, Some(second), (false, false));
    elsewhere.bind("second device only", "127.0.0.1", 20202, OK);
    same_cpu(&elsewhere.kernel, cpu);
    udp_lands(
        "no receiver",
        &scene,
        lo,
        &[&elsewhere],
        "127.0.0.1:30002",
        "127.0.0.1:20202",
        None,
    );

    // A connected socket (the exact 4-tuple) on another device gives way.
    // (The kernel routes a device-bound socket's connect() through its
    // device: on the second device, which has no route, it fails with
    // EINVAL. Routes are the stack's; the socket connects on lo and moves.)
    let fallback = on(&scene, None, shared);
    fallback.bind("unbound on 0.0.0.0", "0.0.0.0", 20203, OK);
    let connected = on(&scene, Some(lo), shared);
    connected.bind("connected-to-be on lo", "127.0.0.1", 20203, OK);
    connected.connect("connects", at("127.0.0.1:30003"), OK);
    connected.bind_device(
        "the connected socket moves to the second device",
        Some(second),
        OK,
    );
    for pair in [&connected, &fallback] {
        same_cpu(&pair.kernel, cpu);
    }
    let both = [&connected, &fallback];
    udp_lands(
        "connected elsewhere",
        &scene,
        lo,
        &both,
        "127.0.0.1:30003",
        "127.0.0.1:20203",
        Some(1),
    );
    connected.bind_device("the connected socket moves to lo", Some(lo), OK);
    udp_lands(
        "connected on lo",
        &scene,
        lo,
        &both,
        "127.0.0.1:30003",
        "127.0.0.1:20203",
        Some(0),
    );
    let unknown = table_receiver(&scene, &both, at("127.0.0.1:30003"), at("127.0.0.1:20203"));
    assert_eq!(
        unknown,
        Some(1),
        "device unknown: the connected lo-bound socket does not answer"
    );
    connected.bind_device("and to no device", None, OK);
    udp_lands(
        "connected, no device",
        &scene,
        lo,
        &both,
        "127.0.0.1:30003",
        "127.0.0.1:20203",
        Some(0),
    );

    // Reuseport groups per device: the lo member takes every flow on lo.
    let group = (false, true);
    let member_lo = on(&scene, Some(lo), group);
    member_lo.bind("member on lo", "0.0.0.0", 20204, OK);
    let member_second = on(&scene, Some(second), group);
    member_second.bind("member on the second device", "0.0.0.0", 20204, OK);
    for pair in [&member_second, &member_lo] {
        same_cpu(&pair.kernel, cpu);
    }
    for source in 30010..30026 {
        let from = format!("127.0.0.1:{source}");
        udp_lands(
            "group per device",
            &scene,
            lo,
            &[&member_second, &member_lo],
            &from,
            "127.0.0.1:20204",
            Some(1),
        );
    }
}

/// The device points against the family points: IPv4 UDP gives a bound
/// device 4 points and `AF_INET` 1 more than `AF_INET6`, so a dual-stack
/// socket on `lo` beats an older `AF_INET` one with no device; IPv6 UDP
/// gives the device 1 point, which still puts an older `lo` socket ahead.
/// (With 1 point for IPv4 too, the first case would tie, and the newer
/// socket would win.)
#[test]
fn linux_devices_udp_families() {
    let Some((scene, lo, _)) = scene(Protocol::Udp) else {
        return;
    };
    let cpu = pin_cpu();
    let socket = |v6: bool, dev: Option<Dev>| {
        let pair = scene.socket_with(v6, 0, true, false);
        pair.bind_device("SO_BINDTODEVICE", dev, OK);
        same_cpu(&pair.kernel, cpu);
        pair
    };
    // The lo socket first, so that a tie would go to the other one.
    let dual_lo = socket(true, Some(lo));
    dual_lo.bind("dual-stack [::] on lo", "::", 20400, OK);
    let inet = socket(false, None);
    inet.bind("AF_INET on 0.0.0.0, no device, newer", "0.0.0.0", 20400, OK);
    let pairs = [&inet, &dual_lo];
    udp_lands(
        "IPv4: the dual-stack lo socket",
        &scene,
        lo,
        &pairs,
        "127.0.0.1:30400",
        "127.0.0.1:20400",
        Some(1),
    );
    dual_lo.bind_device("the dual-stack socket leaves lo", None, OK);
    udp_lands(
        "IPv4: AF_INET first without devices",
        &scene,
        lo,
        &pairs,
        "127.0.0.1:30400",
        "127.0.0.1:20400",
        Some(0),
    );

    let v6_lo = socket(true, Some(lo));
    v6_lo.bind("[::] on lo", "::", 20401, OK);
    let v6 = socket(true, None);
    v6.bind("[::] on no device, newer", "::", 20401, OK);
    let pairs = [&v6_lo, &v6];
    udp_lands(
        "IPv6: the older lo socket",
        &scene,
        lo,
        &pairs,
        "[::1]:30401",
        "[::1]:20401",
        Some(0),
    );
    v6_lo.bind_device("it leaves lo", None, OK);
    udp_lands(
        "IPv6: the newer without devices",
        &scene,
        lo,
        &pairs,
        "[::1]:30401",
        "[::1]:20401",
        Some(1),
    );
}

/// `compute_score` for listeners: one bound to the packet's device
/// outranks an unbound one (they share the port through SO_REUSEPORT, in
/// groups of their own, one per device); one bound to another device never
/// answers.
#[test]
fn linux_devices_tcp_receivers() {
    let Some((scene, lo, second)) = scene(Protocol::Tcp) else {
        return;
    };
    let cpu = pin_cpu();
    let group = (false, true);
    // The lo listener first: among equal scores the newest listener wins,
    // so only its device point puts it ahead of the later one.
    let on_lo = on(&scene, Some(lo), group);
    on_lo.bind("lo", "0.0.0.0", 20300, OK);
    on_lo.listen("lo listens", OK);
    let unbound = on(&scene, None, group);
    unbound.bind("unbound", "0.0.0.0", 20300, OK);
    unbound.listen("unbound listens", OK);
    let on_second = on(&scene, Some(second), group);
    on_second.bind("second", "0.0.0.0", 20300, OK);
    on_second.listen("second listens", OK);
    // A listener whose group the walk asks ends the walk there
    // (`inet_lhash2_lookup`); without SO_REUSEPORT now, the unbound one's
    // group is not asked, and the scores decide.
    unbound.set_reuse_port(false);
    let listeners = [&unbound, &on_lo, &on_second];
    for pair in listeners {
        same_cpu(&pair.kernel, cpu);
    }
    let tcp_lands = |step: &str, source: &str, want: Option<usize>| {
        let (from, to) = (at(source), at("127.0.0.1:20300"));
        let table = table_receiver_on(&scene, &listeners, lo.device(), from, to);
        let sockets: Vec<_> = listeners.iter().map(|pair| &pair.kernel).collect();
        let kernel = tcp_receiver(&sockets, from, to);
        assert!(
            kernel == want && table == want,
            "{step}: expected {want:?}, the kernel gave {kernel:?}, the table {table:?}"
        );
    };
    tcp_lands("the lo listener", "127.0.0.1:30100", Some(1));
    on_lo.bind_device("lo listener to the second device", Some(second), OK);
    tcp_lands(
        "only the unbound one answers lo",
        "127.0.0.1:30101",
        Some(0),
    );
}

/// What the table refuses that has no kernel counterpart to compare:
/// `Device(0)` (the kernel's "no device" is `None` here), a PCB in
/// TIME_WAIT, and under FreeBSD a FIB number past 255.
#[test]
fn bind_device_errors() {
    let linux = Builder::default().policy(Policy::Linux).build::<()>();
    let pcb = linux.attach(Family::Inet, Cred::ROOT, ());
    assert_eq!(pcb.bind_device(Some(Device(0))), Err(Error::InvalidInput));
    assert_eq!(pcb.device(), None);
    let freebsd = Builder::default().policy(Policy::FreeBsd).build::<()>();
    let pcb = freebsd.attach(Family::Inet, Cred::ROOT, ());
    // Under FreeBSD the device is the FIB (SO_SETFIB), 0 to 255.
    assert_eq!(pcb.bind_device(Some(Device(256))), Err(Error::InvalidInput));
    assert_eq!(pcb.device(), None);
    assert_eq!(pcb.bind_device(Some(Device(1))), Ok(()));
    assert_eq!(pcb.device(), Some(Device(1)));
}

/// `__udp_is_mcast_sock`: a broadcast on `lo` reaches every socket of the
/// port bound to no device or to `lo`, and none bound to another device;
/// `deliver(Some(lo))` names the same set, and `deliver(None)` (device
/// unknown) only the ones bound to no device.
#[test]
fn linux_devices_broadcast_receivers() {
    let Some((scene, lo, second)) = scene_udp() else {
        return;
    };
    let devices = [None, Some(lo), Some(second), None, Some(lo)];
    let pairs: Vec<Pair> = devices
        .iter()
        .map(|dev| {
            let pair = on(&scene, *dev, (true, false));
            pair.bind("bind 0.0.0.0:30020", "0.0.0.0", 30020, OK);
            pair
        })
        .collect();
    let (from, to) = (at("127.0.0.1:30021"), at("127.255.255.255:30020"));
    let sockets: Vec<_> = pairs.iter().map(|pair| &pair.kernel).collect();
    let kernel: Vec<usize> = receive::kernel_receivers(&sockets, from, to)
        .into_iter()
        .collect();
    let delivered = |device: Option<Device>| -> Vec<usize> {
        let guard = scene.table.pin();
        let mut got: Vec<usize> = scene
            .table
            .deliver(device, to, from, &guard)
            .map(|pcb| {
                pairs
                    .iter()
                    .position(|pair| pcb.is(&pair.table))
                    .expect("a PCB of the test")
            })
            .collect();
        got.sort_unstable();
        got
    };
    assert_eq!(kernel, vec![0, 1, 3, 4], "the kernel's receivers on lo");
    assert_eq!(delivered(Some(lo.device())), kernel, "deliver on lo");
    assert_eq!(delivered(None), vec![0, 3], "deliver, device unknown");
    assert_eq!(
        delivered(Some(second.device())),
        vec![0, 2, 3],
        "deliver on the second device"
    );
}
