//! Linux TCP's bind-bucket history: whether a port's bucket is held by a
//! bind() or listen() (`fastreuse` not -1), and whether each address's bind2
//! bucket was made by an unbound connect() and never joined by a bind().
//! `__inet_hash_connect` may only take a port whose buckets all came from
//! connect(). And the bucket's fast path: the SO_REUSEPORT socket recorded
//! by `inet_csk_update_fastreuse` (`FASTREUSEPORT_STRICT`), which lets a
//! later socket of the same owner skip the conflict scan.

use pcbhash::State;

use super::sock::rcv_saddr_equal;
use crate::addrs::Ep;
use crate::state::{Model, Rec};

/// The live records at `local`: one Linux bind2 bucket.
fn bucket_mates(m: &Model, local: Ep) -> Vec<usize> {
    m.live()
        .filter(|(_, r)| r.local == local)
        .map(|(i, _)| i)
        .collect()
}

/// A TCP bind() or listen() put `id` on its address and port: that bucket is
/// held by bind() now, for every record in it, and so is the port.
pub(super) fn bucket_bound(m: &mut Model, id: usize) {
    let local = m.recs[id].local;
    for i in bucket_mates(m, local) {
        m.recs[i].connect_bucket = false;
    }
    m.bind_held.insert(local.1);
}

/// `id` arrived at its address and port without bind(): it shares the
/// bucket already there, or starts one: connect-only when an unbound
/// connect() made it (`__inet_hash_connect`), otherwise as the port's bucket
/// is (`inet_bhash2_update_saddr`, `__inet_inherit_port`).
pub(crate) fn bucket_joined(m: &mut Model, id: usize, by_connect: bool) {
    let local = m.recs[id].local;
    let new_bucket = by_connect || !m.bind_held.contains(&local.1);
    let mate = bucket_mates(m, local).into_iter().find(|&i| i != id);
    m.recs[id].connect_bucket = mate.map_or(new_bucket, |i| m.recs[i].connect_bucket);
}

/// A TCP record left the bucket at `local` (closed, TIME_WAIT, or moved):
/// when every record still in it got its port from connect(), the bucket is
/// connect-only again (`inet_bind2_bucket_destroy`). A TIME_WAIT record is
/// still an owner, as the socket it was (`tw_connect_bind`).
pub(crate) fn bucket_left(m: &mut Model, local: Ep) {
    let mates = bucket_mates(m, local);
    if mates.iter().all(|&i| m.recs[i].connect_bind) {
        for i in mates {
            m.recs[i].connect_bucket = true;
        }
    }
}

/// A TCP record left `port`, or went to TIME_WAIT (`inet_put_port`): when
/// every record still on the port sits in a connect-only bucket, the port's
/// bucket forgets that bind() held it (`inet_bind_bucket_destroy`).
pub(crate) fn port_left(m: &mut Model, port: u16) {
    if m.live()
        .filter(|(_, r)| r.local.1 == port)
        .all(|(_, r)| r.connect_bucket)
    {
        m.bind_held.remove(&port);
        m.fast.remove(&port);
    }
}

/// `sk_reuseport_match()`: the port's fast-path record (a snapshot of the
/// socket that set it) lets `n` through without the conflict scan: `n` has
/// SO_REUSEPORT, is in no reuseport group, has the record's owner, and the
/// record's address covers `n`'s (`ipv4_rcv_saddr_equal` /
/// `ipv6_rcv_saddr_equal` with only the record's wildcard matching).
/// `FASTREUSEPORT_ANY` is never set in 6.18: the port's bucket already
/// holds the new socket's bind2 bucket when `inet_csk_update_fastreuse`
/// tests it for emptiness.
pub(super) fn fast_match(m: &Model, n: &Rec, port: u16) -> bool {
    m.fast.get(&port).is_some_and(|fast| {
        n.rp && n.lgroup.is_none() && fast.cred.uid == n.cred.uid && rcv_saddr_equal(fast, n, false)
    })
}

/// `inet_csk_update_fastreuse()` after `get_port()` gave `id` its port (by
/// bind() or listen()): a SO_REUSEPORT socket the record does not cover
/// becomes the record (`FASTREUSEPORT_STRICT`); a socket without
/// SO_REUSEPORT clears it.
pub(super) fn fast_update(m: &mut Model, id: usize) {
    let n = &m.recs[id];
    let port = n.local.1;
    if !n.rp {
        m.fast.remove(&port);
    } else if !fast_match(m, n, port) {
        let record = n.clone();
        m.fast.insert(port, record);
    }
}

/// Takes a record out of the table: out of its reuseport group and, for
/// TCP, out of its bind buckets (`inet_put_port`).
pub(crate) fn remove(m: &mut Model, id: usize, state: State) {
    m.recs[id].lgroup = None;
    let was_in_table = m.recs[id].in_table();
    let r = &mut m.recs[id];
    r.state = state;
    let local = r.local;
    if was_in_table && m.tcp() {
        bucket_left(m, local);
        port_left(m, local.1);
    }
}
