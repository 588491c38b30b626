//! The listener list (TCP) and the hash2 list (UDP): where a socket goes in
//! (`inet_reuseport_add_sock`, `udp_lib_rehash`), the reuseport groups it
//! joins, and which socket a packet past the exact stage finds there
//! (`__inet_lookup_listener`, `udp4_lib_lookup2`).

use std::net::IpAddr;

use pcbhash::State;

use super::sock::{v4_view, v6only};
use crate::addrs::{Ep, V4_ANY, V6_ANY};
use crate::state::{Expect, Model, Rec};

/// Inserts into the listener (TCP) or hash2 (UDP) list: SO_REUSEPORT IPv6
/// sockets at the tail, the rest at the head; and joins a reuseport group.
pub(super) fn hash_in(m: &mut Model, id: usize) {
    let r = m.recs[id].clone();
    if r.rp && r.inet6 {
        m.ltail += 1;
        m.recs[id].lpos = m.ltail;
    } else {
        m.lhead -= 1;
        m.recs[id].lpos = m.lhead;
    }
    // The port's list (`hslot`) takes the same end, once: a later rehash
    // moves the record in the address lists only.
    m.recs[id].ppos = m.recs[id].lpos;
    if !r.rp {
        return;
    }
    let tcp = m.tcp();
    let mut peers: Vec<usize> = m
        .live()
        .filter(|&(i, e)| {
            i != id
                && (!tcp || e.state == State::Listen)
                && e.inet6 == r.inet6
                && v6only(e) == v6only(&r)
                && e.rp
                && e.cred.uid == r.cred.uid
                && e.device == r.device
                && e.local == r.local
        })
        .map(|(i, _)| i)
        .collect();
    // TCP: the listening list; UDP: the port's list (`hslot`, which
    // `udp_reuseport_add_sock` walks from its head).
    if tcp {
        peers.sort_by_key(|&i| m.recs[i].lpos);
    } else {
        peers.sort_by_key(|&i| m.recs[i].ppos);
    }
    let gid = match peers.first() {
        Some(&p) => match m.recs[p].lgroup {
            Some(g) => g,
            None => {
                let g = m.tick();
                m.recs[p].lgroup = Some(g);
                g
            }
        },
        None => m.tick(),
    };
    m.recs[id].lgroup = Some(gid);
}

/// `udp_lib_rehash`: the socket moved to another address of its port and
/// went to the head of the new list.
pub(super) fn rehashed(m: &mut Model, id: usize) {
    m.lhead -= 1;
    m.recs[id].lpos = m.lhead;
}

/// The listener (TCP) / unconnected socket (UDP) stage: the specific
/// address's list, then the wildcard's; in each, the first socket (in list
/// order) with the highest score, or its reuseport group. A UDP socket
/// connected to the source's address with port 0 is in the specific
/// address's list: for IPv4 it outscores every unconnected socket, for
/// IPv6 it ties with one whose last peer is the source. A socket bound to
/// another device than the packet's (`device`, 0 when unknown) does not
/// match; one bound to the packet's device scores more (`compute_score`:
/// 4 points for IPv4 UDP, 1 otherwise).
pub(crate) fn lookup_wild(m: &Model, l: Ep, r: Ep, device: u32) -> Expect {
    let tcp = m.tcp();
    let v4 = l.0.is_ipv4();
    let source = r.0;
    let mut cands: Vec<usize> = m
        .live()
        .filter(|(_, r)| {
            r.local.1 == l.1
                && if tcp {
                    r.state == State::Listen
                } else {
                    r.state == State::Bound || (r.connected() && r.remote == Some((source, 0)))
                }
        })
        .map(|(i, _)| i)
        .collect();
    cands.sort_by_key(|&i| m.recs[i].lpos);
    let device_points = if !tcp && v4 { 4 } else { 1 };
    let address_score = |r: &Rec, pass_addr: IpAddr| -> i32 {
        if v4 {
            let IpAddr::V4(want) = pass_addr else {
                return -1;
            };
            if v6only(r) || v4_view(r) != want {
                return -1;
            }
            if r.connected() {
                // `inet_daddr`: four points more, and AF_INET one more.
                if r.inet6 {
                    5
                } else {
                    6
                }
            } else if r.inet6 {
                1
            } else {
                2
            }
        } else if r.inet6 && r.local.0 == pass_addr {
            // IPv6 `compute_score`: a last peer filters and scores.
            match r.last_peer {
                None => 1,
                Some(peer) if peer == source => 2,
                Some(_) => -1,
            }
        } else {
            -1
        }
    };
    let score = |r: &Rec, pass_addr: IpAddr| -> i32 {
        let points = address_score(r, pass_addr);
        if points < 0 || !r.answers(device) {
            return -1;
        }
        points + if r.device != 0 { device_points } else { 0 }
    };
    let any = if v4 { V4_ANY } else { V6_ANY };
    for pass in [l.0, any] {
        let mut best = 0;
        let mut result: Option<Expect> = None;
        for &i in &cands {
            let r = &m.recs[i];
            let s = score(r, pass);
            if s <= best {
                continue;
            }
            best = s;
            if r.rp {
                if let Some(g) = r.lgroup {
                    let members: Vec<usize> = m
                        .live()
                        .filter(|(_, x)| x.lgroup == Some(g))
                        .map(|(j, _)| j)
                        .collect();
                    let unconnected: Vec<usize> = members
                        .iter()
                        .copied()
                        .filter(|&j| !m.recs[j].connected())
                        .collect();
                    if !unconnected.is_empty() {
                        let e = if unconnected.len() == 1 {
                            Expect::One(unconnected[0])
                        } else {
                            Expect::AnyOf(unconnected.clone())
                        };
                        // `udp4_lib_lookup2`: a group no member ever connected
                        // from takes the packet; otherwise scoring goes on.
                        if tcp || !m.group_conns.contains(&g) {
                            return e;
                        }
                        result = Some(e);
                        continue;
                    }
                }
            }
            result = Some(Expect::One(i));
        }
        if let Some(e) = result {
            return e;
        }
        if l.0 == any {
            break;
        }
    }
    Expect::None
}
