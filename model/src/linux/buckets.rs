//! Linux TCP's bind-bucket history: whether a port's bucket is held by a
//! bind() or listen() (`fastreuse` not -1), and whether each address's bind2
//! bucket was made by an unbound connect() and never joined by a bind().
//! `__inet_hash_connect` may only take a port whose buckets all came from
//! connect().

use pcbhash::State;

use crate::addrs::Ep;
use crate::state::Model;

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
