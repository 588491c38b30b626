//! `IP_PORTRANGE` under `Policy::FreeBsd`, given as a range: the PCB's
//! range replaces the table's in `in_pcb_lport_dest`, and the low range
//! needs a privilege there:
//!
//! ```text
//! } else if (inp->inp_flags & INP_LOWPORT) {
//!         error = priv_check_cred(cred, PRIV_NETINET_RESERVEDPORT);
//!         if (error)
//!                 return (error);
//!         first = V_ipport_lowfirstauto;  /* 1023 */
//!         last  = V_ipport_lowlastauto;   /* 600 */
//! ```
//!
//! `priv_check_cred` answers EPERM. FreeBSD has no
//! `IP_BIND_ADDRESS_NO_PORT` (`ip_ctloutput`: ENOPROTOOPT).

use pcbhash::{Cred, Error, Family, PcbTable, Policy, Protocol, State};

/// `IP_PORTRANGE_HIGH`: `net.inet.ip.portrange.hifirst` .. `hilast`.
const HIGH: std::ops::RangeInclusive<u16> = 49152..=65535;
/// `IP_PORTRANGE_LOW`: `net.inet.ip.portrange.lowlast` ..
/// `lowfirst` (FreeBSD scans it downwards; the ports are the same).
const LOW: std::ops::RangeInclusive<u16> = 600..=1023;

fn table(protocol: Protocol) -> PcbTable<()> {
    PcbTable::<()>::builder()
        .policy(Policy::FreeBsd)
        .protocol(protocol)
        .ephemeral_ports(10000..=10009)
        .seed(5)
        .build()
}

#[test]
fn freebsd_high_range_replaces_the_table_range() {
    for protocol in [Protocol::Tcp, Protocol::Udp] {
        let table = table(protocol);
        let mut held = Vec::new();
        for n in 0..20 {
            let pcb = table.attach(Family::Inet, Cred::user(1000), ());
            pcb.set_local_port_range(Some(HIGH))
                .expect("IP_PORTRANGE_HIGH");
            let port = if n % 2 == 0 {
                pcb.bind("127.0.0.1:0".parse().unwrap()).unwrap().port()
            } else {
                pcb.connect("127.0.0.1:80".parse().unwrap()).unwrap().port()
            };
            assert!(HIGH.contains(&port), "{protocol:?}: port {port}");
            held.push(pcb);
        }
        // `None` gives the PCB the table's range back.
        let pcb = table.attach(Family::Inet, Cred::user(1000), ());
        pcb.set_local_port_range(Some(HIGH)).unwrap();
        pcb.set_local_port_range(None).unwrap();
        let port = pcb.bind("127.0.0.1:0".parse().unwrap()).unwrap().port();
        assert!((10000..=10009).contains(&port), "{protocol:?}: port {port}");
    }
}

#[test]
fn freebsd_low_range_needs_the_privilege() {
    let table = table(Protocol::Tcp);
    let user = table.attach(Family::Inet, Cred::user(1000), ());
    user.set_local_port_range(Some(LOW))
        .expect("the option itself is free");
    assert_eq!(
        user.bind("127.0.0.1:0".parse().unwrap()),
        Err(Error::NotPermitted)
    );
    assert_eq!(
        user.connect("127.0.0.1:80".parse().unwrap()),
        Err(Error::NotPermitted)
    );
    assert_eq!(user.state(), State::Closed, "nothing changed");
    assert_eq!(user.local_addr(), None);
    assert_eq!(Error::NotPermitted.errno(), libc::EPERM);

    let root = table.attach(Family::Inet, Cred::ROOT, ());
    root.set_local_port_range(Some(LOW)).unwrap();
    let port = root
        .connect("127.0.0.1:80".parse().unwrap())
        .unwrap()
        .port();
    assert!((600..=1023).contains(&port), "port {port}");
}

#[test]
fn freebsd_refuses_port_zero_ends_and_the_no_port_option() {
    let table = table(Protocol::Tcp);
    let pcb = table.attach(Family::Inet, Cred::user(1000), ());
    assert_eq!(
        pcb.set_local_port_range(Some(0..=5000)),
        Err(Error::InvalidInput)
    );
    assert_eq!(
        pcb.set_bind_address_no_port(true),
        Err(Error::OptionNotAvailable)
    );
    let port = pcb.bind("127.0.0.1:0".parse().unwrap()).unwrap().port();
    assert!((10000..=10009).contains(&port), "unchanged: port {port}");
}
