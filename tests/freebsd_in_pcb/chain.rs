//! The order of the wildcard hash chain: which of several matching PCBs a
//! lookup finds first, and where a disconnected PCB goes back in.

use super::common::{addr, family_of, freebsd, Sock};
use super::{owner, sock};
use pcbhash::{Family, Pcb, Protocol};

/// `in_pcblookup_hash_wild_smr`, the packet path, returns the first match
/// in the wildcard chain. `in_pcbinshash` inserts a dual-stack `::` PCB
/// (`INP_IPV6` set) with the IPv6 rule, before the first unbound entry,
/// IPv4 ones included; only an unbound `INP_IPV6PROTO` PCB without
/// `INP_IPV6` (bound to the v4-mapped wildcard) goes to the tail.
///
/// ```c
/// if ((inp->inp_vflag & INP_IPV6) != 0)
///     _in6_pcbinshash_wild(pcbhash, inp);
/// else
///     _in_pcbinshash_wild(pcbhash, inp);
/// ...
/// _in_pcbinshash_wild():
/// if (!bound && (inp->inp_vflag & INP_IPV6PROTO) != 0) {
///     ... CK_LIST_INSERT_AFTER(last, inp, inp_hash_wild);   (the tail)
/// ...
/// _in6_pcbinshash_wild():
/// if (!bound) {
///     CK_LIST_FOREACH_FROM(last, pcbhash, inp_hash_wild) {
///         if (IN6_IS_ADDR_UNSPECIFIED(&last->in6p_laddr))
///             break;
/// ...
/// CK_LIST_INSERT_BEFORE(last, inp, inp_hash_wild);
/// ...
/// in_pcblookup_hash_wild_smr():
/// CK_LIST_FOREACH(inp, head, inp_hash_wild) {
///     match = in_pcblookup_wild_match(inp, laddr, lport, fib);
///     if (match == INPLOOKUP_MATCH_NONE)
///         continue;
///     if (__predict_true(inp_smr_lock(inp, lockflags))) {
///         ...
///             return (inp);
/// ```
///
/// The locked path (`in_pcblookup_hash_wild_locked`) would keep a dual-stack
/// PCB as `local_wild_mapped`, below `0.0.0.0`; a packet takes it only when
/// the lock-free path loses a race with a change of the matching PCB.
#[test]
fn freebsd_in_pcblookup_hash_wild_smr_takes_the_first_match_in_the_chain() {
    // (first bound, second bound): who gets an IPv4 SYN to 127.0.0.1
    let rows = [
        ("0.0.0.0:7105", "[::]:7105", 2),
        ("[::]:7105", "0.0.0.0:7105", 2),
        ("0.0.0.0:7105", "[::ffff:0.0.0.0]:7105", 1),
        ("[::ffff:0.0.0.0]:7105", "0.0.0.0:7105", 2),
        ("[::ffff:0.0.0.0]:7105", "[::]:7105", 2),
        ("[::]:7105", "127.0.0.1:7105", 2),
        ("127.0.0.1:7105", "[::]:7105", 1),
    ];
    for (first, second, expected) in rows {
        let table = freebsd(Protocol::Tcp);
        let pcbs: Vec<Pcb<Sock>> = [first, second]
            .into_iter()
            .zip(1..)
            .map(|(local, id)| {
                let pcb = sock(&table, family_of(addr(local)), id);
                pcb.set_reuse_port(true).unwrap();
                pcb.bind(addr(local))
                    .unwrap_or_else(|e| panic!("{local}: {e}"));
                pcb.listen().unwrap();
                pcb
            })
            .collect();
        assert_eq!(
            owner(&table, "127.0.0.1:7105", addr("127.0.0.9:4000")),
            Some(expected),
            "{first} then {second}"
        );
        drop(pcbs);
    }
}

/// `in_pcbdisconnect` takes the PCB out of the hash; it comes back through
/// `in_pcbinshash`, which puts it ahead of the wildcard PCBs already there
/// (`_in_pcbinshash_wild`: an unbound PCB goes before the first unbound
/// entry), so it is the first wildcard match again.
///
/// ```c
/// in_pcbremhash_locked(inp);
/// /* See the comment in in_pcbinshash(). */
/// inp->inp_smr = smr_advance(inp->inp_pcbinfo->ipi_smr);
/// ```
#[test]
fn freebsd_in_pcbdisconnect_reinserts_as_the_newest() {
    // (whether A connects and disconnects): who gets a datagram to the port
    for (reconnected, expected) in [(false, 2), (true, 1)] {
        let table = freebsd(Protocol::Udp);
        let pcbs: Vec<Pcb<Sock>> = (1..=2)
            .map(|id| {
                let pcb = sock(&table, Family::Inet, id);
                pcb.set_reuse_port(true).unwrap();
                pcb.bind(addr("0.0.0.0:7107")).unwrap();
                pcb
            })
            .collect();
        if reconnected {
            pcbs[0].connect(addr("127.0.0.1:53")).unwrap();
            pcbs[0].disconnect().unwrap();
        }
        assert_eq!(
            owner(&table, "127.0.0.1:7107", addr("127.0.0.9:4000")),
            Some(expected),
            "reconnected: {reconnected}"
        );
    }
}
