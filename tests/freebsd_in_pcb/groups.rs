//! Load-balance groups (SO_REUSEPORT_LB): when a PCB joins and leaves, the
//! cap on members, and which group a SYN goes to.

use super::common::{addr, freebsd, Sock};
use super::{owner, owners, sock};
use pcbhash::{Family, Pcb, Protocol};

/// `in_pcbinshash`: a PCB joins its load-balance group when it enters the
/// hash, if SO_REUSEPORT_LB is set then; `in_pcblisten` only moves a member
/// from pending to active.
///
/// ```c
/// if ((inp->inp_socket->so_options & SO_REUSEPORT_LB) != 0) {
///     int error = in_pcbinslbgrouphash(inp, M_NODOM);
/// ...
/// in_pcblisten(struct inpcb *inp)
///     if ((inp->inp_flags & INP_INLBGROUP) != 0) {
///         ...
///         grp = in_pcblbgroup_find(inp);
///         LIST_REMOVE(inp, inp_lbgroup_list);
///         grp->il_pendcnt--;
///         in_pcblbgroup_insert(grp, inp);
/// ```
#[test]
fn freebsd_in_pcbinshash_decides_group_membership_at_bind() {
    // (set the option before bind, after bind): who gets the SYNs
    let rows: [(bool, bool, &[u32]); 3] = [
        // A sets the option after bind: A joins nothing, B alone is the group.
        (false, true, &[2]),
        // Both before bind: one group of two.
        (true, true, &[1, 2]),
        // Neither before bind: no group; the newest bound PCB answers.
        (false, false, &[2]),
    ];
    for (a_before, b_before, expected) in rows {
        let table = freebsd(Protocol::Tcp);
        let mut pcbs = Vec::new();
        for (id, before) in [(1, a_before), (2, b_before)] {
            let pcb = sock(&table, Family::Inet, id);
            if before {
                pcb.set_reuse_port_lb(true).unwrap();
            }
            pcb.set_reuse_port(true).unwrap();
            pcb.bind(addr("127.0.0.1:7100")).unwrap();
            pcb.set_reuse_port_lb(true).unwrap();
            pcbs.push(pcb);
        }
        for pcb in &pcbs {
            pcb.listen().unwrap();
        }
        assert_eq!(
            owners(&table, "127.0.0.1:7100"),
            expected,
            "option before bind: A {a_before}, B {b_before}"
        );
        let members = [a_before, b_before].iter().filter(|on| **on).count();
        assert_eq!(table.stats().group_members, members);
    }
}

/// `sosetopt`: clearing SO_REUSEPORT_LB only flips `so_options`; a PCB
/// leaves its group in `in_pcbremhash_locked` and nowhere else.
///
/// ```c
/// case SO_REUSEPORT_LB:
///     ...
///     if (optval)
///         so->so_options |= sopt->sopt_name;
///     else
///         so->so_options &= ~sopt->sopt_name;
/// ...
/// in_pcbremhash_locked(struct inpcb *inp)
///     if ((inp->inp_flags & INP_INLBGROUP) != 0)
///         in_pcbremlbgrouphash(inp);
/// ```
#[test]
fn freebsd_sosetopt_clearing_the_option_keeps_the_member() {
    // (protocol, clear before listen): the member keeps its share
    let rows = [
        (Protocol::Tcp, false),
        (Protocol::Tcp, true),
        (Protocol::Udp, false),
    ];
    for (protocol, before_listen) in rows {
        let table = freebsd(protocol);
        let pcbs: Vec<Pcb<Sock>> = (1..=2)
            .map(|id| {
                let pcb = sock(&table, Family::Inet, id);
                pcb.set_reuse_port_lb(true).unwrap();
                pcb.bind(addr("127.0.0.1:7101")).unwrap();
                pcb
            })
            .collect();
        if before_listen {
            pcbs[0].set_reuse_port_lb(false).unwrap();
        }
        if protocol == Protocol::Tcp {
            for pcb in &pcbs {
                pcb.listen().unwrap();
            }
        }
        pcbs[0].set_reuse_port_lb(false).unwrap();
        assert!(!pcbs[0].flags().reuse_port_lb());
        assert!(pcbs[0].flags().in_group(), "{protocol:?} {before_listen}");
        assert_eq!(table.stats().group_members, 2);
        assert_eq!(owners(&table, "127.0.0.1:7101"), [1, 2]);
        // Closing takes it out.
        let mut pcbs = pcbs.into_iter();
        pcbs.next().unwrap().close();
        assert_eq!(owners(&table, "127.0.0.1:7101"), [2]);
    }
}

/// `in_pcbinslbgrouphash`: the 256-member cap counts pending members.
///
/// ```c
/// } else if (grp->il_inpcnt + grp->il_pendcnt == grp->il_inpsiz) {
///     if (grp->il_inpsiz >= INPCBLBGROUP_SIZMAX) {
///         ...
///         return (0);
/// ```
#[test]
fn freebsd_in_pcbinslbgrouphash_counts_pending_members_against_the_cap() {
    // Which of the 257 bound PCBs listens first: the last one to bind stays
    // out of the group whatever the order of the listens.
    for last_listens_first in [false, true] {
        let table = freebsd(Protocol::Tcp);
        let pcbs: Vec<Pcb<Sock>> = (0..257)
            .map(|id| {
                let pcb = sock(&table, Family::Inet, id);
                pcb.set_reuse_port_lb(true).unwrap();
                pcb.bind(addr("127.0.0.1:7102")).unwrap();
                pcb
            })
            .collect();
        assert_eq!(table.stats().group_members, 0, "all pending");
        if last_listens_first {
            pcbs[256].listen().unwrap();
        }
        for pcb in &pcbs {
            pcb.listen().unwrap();
        }
        assert_eq!(table.stats().group_members, 256, "{last_listens_first}");
        assert!(!pcbs[256].flags().in_group());
        assert!(pcbs[..256].iter().all(|pcb| pcb.flags().in_group()));
    }
}

/// `in_pcblookup_lbgroup`: two groups on one IPv4 address (an `Inet` one
/// and one of `Inet6` PCBs bound to the v4-mapped form, `il_vflag` apart).
/// New and resized groups go in at the head of the bucket, and the lookup
/// keeps the last group that matches, so the older group takes the SYNs.
///
/// ```c
/// grp = in_pcblbgroup_alloc(...);
/// in_pcblbgroup_insert(grp, inp);
/// CK_LIST_INSERT_HEAD(hdr, grp, il_list);
/// ...
/// in_pcblbgroup_resize(): CK_LIST_INSERT_HEAD(hdr, grp, il_list);
/// ...
/// } else if (local_exact == NULL ||
///     in_pcblookup_lb_match(grp, domain, fib)) {
///     local_exact = grp;
/// ```
#[test]
fn freebsd_in_pcblookup_lbgroup_prefers_the_older_group() {
    // (family of the first group, of the second, members of the first
    // joining after the second group exists): the group that takes the SYNs
    let rows = [
        (Family::Inet, Family::Inet6, 0, Family::Inet),
        (Family::Inet6, Family::Inet, 0, Family::Inet6),
        // An eighth member of the first group fills it; the ninth resizes it
        // and moves it to the head: the second group is the older one now.
        (Family::Inet, Family::Inet6, 8, Family::Inet6),
    ];
    for (first, second, late, expected) in rows {
        let table = freebsd(Protocol::Tcp);
        let local = |family: Family| match family {
            Family::Inet => addr("127.0.0.1:7103"),
            Family::Inet6 => addr("[::ffff:127.0.0.1]:7103"),
        };
        let mut pcbs = Vec::new();
        let mut join = |family: Family, id: u32| {
            let pcb = sock(&table, family, id);
            pcb.set_reuse_port_lb(true).unwrap();
            pcb.bind(local(family)).unwrap();
            pcb.listen().unwrap();
            pcbs.push(pcb);
        };
        join(first, 100);
        join(second, 200);
        for id in 0..late {
            join(first, 101 + id);
        }
        let guard = table.pin();
        let expected_ids: Vec<u32> = pcbs
            .iter()
            .filter(|pcb| pcb.family() == expected)
            .map(|pcb| pcb.socket(&guard).unwrap().0)
            .collect();
        let seen = owners(&table, "127.0.0.1:7103");
        assert!(
            !seen.is_empty() && seen.iter().all(|id| expected_ids.contains(id)),
            "{first:?} then {second:?}, {late} late: SYNs went to {seen:?}"
        );
    }
}

/// A UDP SO_REUSEPORT_LB member that connects, and disconnects.
///
/// `in_pcbconnect` of a hashed PCB moves it with `in_pcbrehash`, which does
/// not touch its group, so the kernel keeps it in the group; FreeBSD's own
/// `so_reuseport_lb_test` (`connect_udp`: "The kernel erroneously permits
/// calling connect() on a UDP socket with SO_REUSEPORT_LB set. Verify that
/// packets sent to the bound address are dropped unless they come from the
/// connected address") requires that it then receive only from its peer,
/// which the table gets by taking it out of the group while connected.
/// `in_pcbdisconnect` takes the PCB out of the hash and its group
/// (`in_pcbremhash_locked`) and zeroes its local address; it enters a group
/// again through `in_pcbinshash`, if SO_REUSEPORT_LB is set then.
///
/// ```c
/// if ((inp->inp_flags & INP_INHASHLIST) == 0) {
///     error = in_pcbinshash(inp);
///     MPASS(error == 0);
/// } else
///     in_pcbrehash(inp);
/// ...
/// in_pcbdisconnect(struct inpcb *inp)
///     in_pcbremhash_locked(inp);
/// ```
#[test]
fn freebsd_in_pcbdisconnect_and_a_udp_group_member() {
    // (option still set at disconnect): whether the PCB is back in a group
    for keep_option in [true, false] {
        let table = freebsd(Protocol::Udp);
        let member = sock(&table, Family::Inet, 1);
        member.set_reuse_port_lb(true).unwrap();
        member.bind(addr("0.0.0.0:7106")).unwrap();
        let mate = sock(&table, Family::Inet, 2);
        mate.set_reuse_port_lb(true).unwrap();
        mate.bind(addr("0.0.0.0:7106")).unwrap();
        member.connect(addr("127.0.0.1:53")).unwrap();
        assert!(!member.flags().in_group());
        // Only its peer reaches it; everyone else goes to the group.
        let local = member.local_addr().unwrap();
        assert_eq!(
            owner(&table, "127.0.0.1:7106", addr("127.0.0.1:53")),
            Some(1)
        );
        assert_eq!(owners(&table, "127.0.0.1:7106"), [2]);
        assert_eq!(local, addr("127.0.0.1:7106"));
        if !keep_option {
            member.set_reuse_port_lb(false).unwrap();
        }
        member.disconnect().unwrap();
        assert_eq!(member.local_addr(), Some(addr("0.0.0.0:7106")));
        assert_eq!(
            member.flags().in_group(),
            keep_option,
            "option kept: {keep_option}"
        );
        let expected: &[u32] = if keep_option { &[1, 2] } else { &[2] };
        assert_eq!(owners(&table, "127.0.0.1:7106"), expected);
    }
}
