//! Where the stack's hooks (`crate::hooks`) meet the table's own choices:
//! the port filter in the ephemeral-port scans, the group selector in the
//! lookup's group stage.

use std::any::Any;
use std::net::IpAddr;

use crossbeam_epoch::Guard;

use super::pcb::PcbInner;
use super::shared::Shared;
use crate::addr::{Endpoint, FlowKey, Tuple};
use crate::busy::DestBitmap;
use crate::cred::Device;
use crate::hooks::{GroupPacket, GroupSelector, Members, PortCandidate};
use crate::lbgroup::Group;
use crate::sync::Arc;

impl<S: Send + Sync + 'static> Shared<S> {
    /// Whether the port filter refuses `tuple`'s local port for a
    /// `connect()`. A refusal is marked in the destination's busy-port
    /// hint, if it has one: the filter answers the same for the same
    /// candidate (its contract), so later scans toward the destination
    /// pass over the port a word at a time, as over a port in use.
    #[inline]
    pub(super) fn refuses_port(&self, tuple: &Tuple, hint: Option<&DestBitmap>) -> bool {
        let protocol = self.rules.protocol;
        let refused = self
            .hooks
            .refuses(|| PortCandidate::new(tuple.local, Some(tuple.remote), protocol));
        if refused {
            if let Some(hint) = hint {
                hint.mark(tuple.local.port);
            }
        }
        refused
    }

    /// The member of `group` that takes the packet `key` (arrived at
    /// `local` on `device`, 0 for unknown; `hash` is its keyed hash): the
    /// group selector's choice when it makes one in range, otherwise the
    /// group's own pick. Lock-free.
    #[inline(always)]
    pub(super) fn pick_member<'g>(
        &self,
        group: &'g Group<PcbInner<S>>,
        local: &Endpoint,
        key: &FlowKey,
        device: u32,
        hash: u64,
        guard: &'g Guard,
    ) -> Option<&'g PcbInner<S>> {
        if let Some(select) = &self.hooks.group_selector {
            if let Some(member) = selected(select, group, local, key, device, hash, guard) {
                return Some(member);
            }
        }
        group.pick(&self.rules.lookup, hash, guard)
    }
}

/// The selector's choice for a packet, if it makes one in range.
#[inline(never)]
fn selected<'g, S: Send + Sync + 'static>(
    select: &GroupSelector,
    group: &'g Group<PcbInner<S>>,
    local: &Endpoint,
    key: &FlowKey,
    device: u32,
    hash: u64,
    guard: &'g Guard,
) -> Option<&'g PcbInner<S>> {
    let members = group.members(guard);
    if members.is_empty() {
        return None;
    }
    let remote = Endpoint {
        ip: IpAddr::V6(key.remote_ip()).to_canonical(),
        port: key.remote_port(),
    };
    let view = GroupMembers { members, guard };
    let device = (device != 0).then_some(Device(device));
    let packet = GroupPacket::new(*local, remote, device, hash, &view);
    let index = select(&packet)?;
    members.get(index).map(|member| &**member)
}

/// A group's members as the selector reads them.
struct GroupMembers<'g, S: Send + Sync + 'static> {
    members: &'g [Arc<PcbInner<S>>],
    guard: &'g Guard,
}

impl<'a, 'g: 'a, S: Send + Sync + 'static> Members<'a> for GroupMembers<'g, S> {
    fn count(&self) -> usize {
        self.members.len()
    }

    fn socket(&self, index: usize) -> Option<&'a dyn Any> {
        let socket: &'g S = self.members.get(index)?.socket(self.guard)?;
        Some(socket)
    }
}
