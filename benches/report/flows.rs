//! Wall-time rows beyond one listener's IPv4 flows: the socket read a stack
//! does after the lookup, IPv6 flows, and flows spread over many local
//! ports; each against hashbrown on the same keys, in the same run.

use crate::common::{
    flows, probe_order, Build, Hashbrown, HashbrownArc, Key, Pcbhash, PcbhashOf, PcbhashSocket,
    Peer, Shape, Socket, SEED,
};
use crate::out::{human, row, Row};
use crate::timing::{race, Contender};

/// Local ports of the "many local ports" rows.
pub const LOCAL_PORTS: u16 = 10_000;

/// The rows, on tables of `size` entries (`table` holds the exact-hit rows'
/// keys).
pub fn measure(table: &[Key], size: usize, rounds: usize) -> Vec<Row> {
    let probe = |keys: &[Key]| probe_order(keys, 1 << 20, SEED ^ 0x1);
    let mut rows = Vec::new();

    let keys = &table[..size];
    let hashbrown = HashbrownArc::with_keys(keys);
    let pcb = PcbhashOf::<Socket>::with_keys(keys);
    let (me, them) = versus(&PcbhashSocket(&pcb), &hashbrown, &probe(keys), rounds);
    drop((hashbrown, pcb));
    rows.push(row(
        &format!(
            "packet to socket, {} PCBs: lookup, then read a field of the socket",
            human(size)
        ),
        "≤ 1.0× hashbrown get + deref of an Arc<S>",
        format!("{:.2}× ({me:.1} ns vs {them:.1} ns)", me / them),
        Some(me <= them),
    ));

    for (shape, what) in [
        (Shape::Ipv6, "IPv6 flows".to_string()),
        (
            Shape::LocalPorts(LOCAL_PORTS),
            format!("flows over {LOCAL_PORTS} local ports"),
        ),
    ] {
        let keys = flows(shape, size, SEED ^ 0x6);
        let hashbrown = Hashbrown::with_keys(&keys);
        let pcb = Pcbhash::with_keys(&keys);
        let (me, them) = versus(&pcb, &hashbrown, &probe(&keys), rounds);
        rows.push(row(
            &format!("exact hit, {what}, {} PCBs", human(size)),
            "≤ 1.2× hashbrown",
            format!("{:.2}× ({me:.1} ns vs {them:.1} ns)", me / them),
            Some(me / them <= 1.2),
        ));
    }
    rows
}

/// Median ns per lookup of `me` and of `them` over `probe`, raced.
fn versus(me: &impl Peer, them: &impl Peer, probe: &[Key], rounds: usize) -> (f64, f64) {
    let n = probe.len();
    let contenders = [
        Contender::lookups("them", them, probe, n),
        Contender::lookups("me", me, probe, n),
    ];
    let ns = race(&contenders, rounds);
    (ns[1], ns[0])
}
