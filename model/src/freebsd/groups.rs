//! Load-balance groups (SO_REUSEPORT_LB): `in_pcbinslbgrouphash()` and
//! `in_pcbremlbgrouphash()`.

use pcbhash::State;

use crate::state::{Group, Model};

/// `in_pcbinslbgrouphash()`.
pub(super) fn join_group(m: &mut Model, id: usize) {
    let r = m.recs[id].clone();
    if !r.lb || !r.in_table() || r.group.is_some() {
        return;
    }
    // A connected UDP PCB only receives from its peer (so_reuseport_lb_test
    // connect_udp).
    if !m.tcp() && r.connected() {
        return;
    }
    // "Don't allow IPv4 mapped INET6 wild socket."
    if r.inet6 && r.takes_v4() && r.v4_laddr().is_unspecified() {
        return;
    }
    let members = |m: &Model, gid: u64| {
        m.recs
            .iter()
            .filter(|x| x.group == Some(gid) && x.in_table())
            .count()
    };
    // `in_pcbinslbgrouphash`: groups are per FIB (`il_fibnum`) while FIBs
    // are scoped.
    let fib = m.fib_of(&r);
    let found = m.groups.iter().position(|g| {
        g.inet6 == r.inet6 && g.laddr == r.local.0 && g.lport == r.local.1 && g.fib == fib
    });
    let gid = match found {
        None => {
            let id_ = m.next_group;
            m.next_group += 1;
            let pos = -(m.tick() as i64);
            m.groups.push(Group {
                id: id_,
                inet6: r.inet6,
                laddr: r.local.0,
                lport: r.local.1,
                fib,
                pos,
                size: 8,
            });
            id_
        }
        Some(g) => {
            let gid = m.groups[g].id;
            if members(m, gid) == m.groups[g].size {
                if m.groups[g].size >= 256 {
                    return;
                }
                // in_pcblbgroup_resize(): the new group goes to the head.
                m.groups[g].size *= 2;
                m.groups[g].pos = -(m.tick() as i64);
            }
            gid
        }
    };
    let pending = m.tcp() && r.state != State::Listen;
    let x = &mut m.recs[id];
    x.group = Some(gid);
    x.pending = pending;
}

/// Takes a record out of the table, and out of its load-balance group
/// (`in_pcbremhash_locked`).
pub(crate) fn remove(m: &mut Model, id: usize, state: State) {
    leave_group(m, id);
    m.recs[id].state = state;
}

/// `in_pcbremlbgrouphash()`: the group is freed with its last member.
///
/// FreeBSD frees it only when the last *active* member leaves with nothing
/// pending; a pending member leaving last leaves an empty group behind in
/// the bucket for good (a leak that would also shadow a wildcard group). The
/// model does not ask the table to copy that.
pub(super) fn leave_group(m: &mut Model, id: usize) {
    let Some(gid) = m.recs[id].group.take() else {
        return;
    };
    m.recs[id].pending = false;
    if !m.recs.iter().any(|x| x.group == Some(gid)) {
        m.groups.retain(|g| g.id != gid);
    }
}
