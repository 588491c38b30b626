//! The model alone against the client port options, with the answers the
//! table's own tests checked on the running kernel (`linux_client_ports.rs`,
//! `freebsd_port_range.rs`, `tw_reuse.rs`).

use std::net::SocketAddr;

use pcbhash::{Cred, Error, State};
use pcbhash_model::{Model, ModelError, PolicySel, ProtoSel, TwReuseSel};

fn at(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

/// A connection in TIME_WAIT on the one-port range, and a second socket.
fn twin(mode: TwReuseSel) -> (Model, usize, usize) {
    let mut m = Model::new(PolicySel::Linux, ProtoSel::Tcp, (40000, 40000)).with_tw_reuse(mode);
    let old = m.attach(false, Cred::user(1000));
    m.connect(old, at("127.0.0.1:80"), Some(40000))
        .expect("the only port");
    m.time_wait(old).expect("connected");
    let new = m.attach(false, Cred::user(1000));
    (m, old, new)
}

#[test]
fn a_marked_twin_gives_its_four_tuple_to_connect() {
    let (mut m, old, new) = twin(TwReuseSel::On);
    assert_eq!(
        m.connect(new, at("127.0.0.1:80"), None),
        Err(ModelError::Errno(Error::AddrNotAvailable))
    );
    assert_eq!(
        m.allow_tw_reuse(new),
        Err(ModelError::Errno(Error::InvalidInput))
    );
    m.allow_tw_reuse(old).expect("in TIME_WAIT");
    assert_eq!(
        m.connect(new, at("127.0.0.1:80"), Some(40000)),
        Ok(at("127.0.0.1:40000"))
    );
    assert_eq!(m.state(old), State::Dropped);
    assert_eq!(m.state(new), State::Connected);
}

#[test]
fn without_tw_reuse_a_marked_twin_holds_its_four_tuple() {
    let (mut m, old, new) = twin(TwReuseSel::Off);
    m.allow_tw_reuse(old).expect("in TIME_WAIT");
    assert_eq!(
        m.connect(new, at("127.0.0.1:80"), Some(40000)),
        Err(ModelError::Errno(Error::AddrNotAvailable))
    );
    assert_eq!(m.state(old), State::TimeWait);
}

#[test]
fn linux_own_range_connect_takes_every_port_in_turn() {
    let mut m = Model::new(PolicySel::Linux, ProtoSel::Tcp, (40000, 40003));
    let pcb = m.attach(false, Cred::user(1000));
    m.set_port_range(pcb, Some((40001, 40003)))
        .expect("a range");
    // Without the option, the even offsets come first: 40001 is refused.
    let mut plain = m.clone();
    let other = plain.attach(false, Cred::user(1000));
    assert!(matches!(
        plain.connect(other, at("127.0.0.1:80"), Some(40001)),
        Err(ModelError::Diverged(_))
    ));
    assert_eq!(
        m.connect(pcb, at("127.0.0.1:80"), Some(40001)),
        Ok(at("127.0.0.1:40001"))
    );
    assert_eq!(
        m.set_port_range(pcb, Some((40003, 40001))),
        Err(ModelError::Errno(Error::InvalidInput))
    );
}

#[test]
fn linux_range_ends_outside_the_table_range_are_left_to_it() {
    let mut m = Model::new(PolicySel::Linux, ProtoSel::Tcp, (40000, 40003));
    let pcb = m.attach(false, Cred::user(1000));
    m.set_port_range(pcb, Some((30000, 40000)))
        .expect("a range");
    assert!(matches!(
        m.clone().bind(pcb, at("127.0.0.1:0"), Some(40001)),
        Err(ModelError::Diverged(_))
    ));
    assert_eq!(
        m.bind(pcb, at("127.0.0.1:0"), Some(40000)),
        Ok(at("127.0.0.1:40000"))
    );
}

#[test]
fn freebsd_low_range_needs_privilege() {
    for (cred, want) in [
        (
            Cred::user(1000),
            Err(ModelError::Errno(Error::NotPermitted)),
        ),
        (Cred::ROOT, Ok(at("127.0.0.1:600"))),
    ] {
        let mut m = Model::new(PolicySel::FreeBsd, ProtoSel::Tcp, (40000, 40003));
        let pcb = m.attach(false, cred);
        m.set_port_range(pcb, Some((1023, 600))).expect("a range");
        assert_eq!(m.connect(pcb, at("127.0.0.1:80"), Some(600)), want);
    }
    let mut m = Model::new(PolicySel::FreeBsd, ProtoSel::Tcp, (40000, 40003));
    let pcb = m.attach(false, Cred::ROOT);
    assert_eq!(
        m.set_port_range(pcb, Some((0, 600))),
        Err(ModelError::Errno(Error::InvalidInput))
    );
    assert_eq!(
        m.set_bind_no_port(pcb, true),
        Err(ModelError::Errno(Error::OptionNotAvailable))
    );
}

#[test]
fn a_port_less_bind_records_the_source_for_connect() {
    let mut m = Model::new(PolicySel::Linux, ProtoSel::Tcp, (40000, 40003));
    let pcb = m.attach(false, Cred::user(1000));
    m.set_bind_no_port(pcb, true).expect("Linux");
    assert_eq!(m.bind(pcb, at("127.0.0.2:0"), None), Ok(at("127.0.0.2:0")));
    assert_eq!((m.state(pcb), m.local_addr(pcb)), (State::Closed, None));
    assert_eq!(
        m.connect(pcb, at("127.0.0.1:80"), Some(40000)),
        Ok(at("127.0.0.2:40000"))
    );
}

/// `inet_csk_find_open_port` rounds a pass down to an even number of
/// ports: of an own range of three, the last is never tried.
#[test]
fn linux_bind_scan_of_three_ports_skips_the_last() {
    let mut m = Model::new(PolicySel::Linux, ProtoSel::Tcp, (40000, 40003));
    let pcb = m.attach(false, Cred::user(1000));
    m.set_port_range(pcb, Some((7000, 40002))).expect("a range");
    assert!(matches!(
        m.clone().bind(pcb, at("127.0.0.1:0"), Some(40002)),
        Err(ModelError::Diverged(_))
    ));
    assert_eq!(
        m.bind(pcb, at("127.0.0.1:0"), Some(40001)),
        Ok(at("127.0.0.1:40001"))
    );
}
