//! The history a policy keeps of each port and of its address buckets
//! (Linux `inet_bind_bucket` / `inet_bind2_bucket`): stored here, decided by
//! the policy ([`Rules::keeps_bucket_history`](crate::policy::Rules) and
//! the methods after it).
//!
//! Two things are stored: each port's [`PortMemo`](crate::policy::PortMemo), in the table's
//! [`PortMemos`](super::memos::PortMemos), and
//! for each PCB whether its address bucket is connect-only, in its
//! [`Flags::CONNECT_BUCKET`] bit. Both are read and written only by writers
//! that hold the port's lock; lookups never read them.

use crossbeam_epoch::Guard;

use super::pcb::PcbInner;
use super::shared::Shared;
use crate::addr::Endpoint;
use crate::flags::Flags;
use crate::raw::{List, PortLock};
use crate::sync::Arc;

impl<S: Send + Sync + 'static> Shared<S> {
    /// The PCBs on `port` at the address of `local`: one address bucket.
    fn bucket_mates<'g>(
        &'g self,
        local: &'g Endpoint,
        guard: &'g Guard,
    ) -> impl Iterator<Item = &'g Arc<PcbInner<S>>> + 'g {
        self.ports
            .iter(local.port, List::Unconnected, guard)
            .chain(self.ports.iter(local.port, List::Connected, guard))
            .filter(move |pcb| pcb.tuple(guard).local == *local)
    }

    /// `inner` arrived at `local` without `bind()` (by `connect()` when
    /// `by_connect`): it joins the bucket of the PCBs already there, or
    /// starts one, connect-only or not as the policy decides. Caller holds
    /// the port's lock.
    #[inline]
    pub(crate) fn join_bucket(
        &self,
        held: &PortLock<'_>,
        inner: &PcbInner<S>,
        local: &Endpoint,
        by_connect: bool,
        guard: &Guard,
    ) {
        debug_assert_eq!(held.port(), local.port);
        if !self.rules.bucket_history {
            return;
        }
        let mate = self
            .bucket_mates(local, guard)
            .find(|pcb| !std::ptr::eq(&***pcb, inner))
            .map(|mate| mate.view(guard));
        let memo = self.memos.get(held, local.port);
        let connect_only = self
            .rules
            .joins_connect_only_bucket(mate.as_ref(), by_connect, memo);
        inner
            .flags
            .update(|flags| flags.set(Flags::CONNECT_BUCKET, connect_only));
    }

    /// A `bind()` (or the autobind of `listen()`) took `local`: its bucket is
    /// held by `bind()` now, for every PCB in it. Caller holds the port's lock.
    #[inline]
    pub(crate) fn bind_bucket(&self, held: &PortLock<'_>, local: &Endpoint, guard: &Guard) {
        debug_assert_eq!(held.port(), local.port);
        if !self.rules.bucket_history {
            return;
        }
        for pcb in self.bucket_mates(local, guard) {
            pcb.flags
                .update(|flags| flags.without(Flags::CONNECT_BUCKET));
        }
    }

    /// A PCB left the bucket of `local` (it closed, went to TIME_WAIT or
    /// moved to another address): the PCBs still in it but `except` become
    /// connect-only if the policy says so. Caller holds the port's lock.
    #[inline]
    pub(crate) fn left_bucket(
        &self,
        held: &PortLock<'_>,
        local: &Endpoint,
        except: Option<&PcbInner<S>>,
        guard: &Guard,
    ) {
        debug_assert_eq!(held.port(), local.port);
        if !self.rules.bucket_history {
            return;
        }
        let others = || {
            self.bucket_mates(local, guard)
                .filter(|pcb| except.is_none_or(|except| !std::ptr::eq(&***pcb, except)))
        };
        let mut views = others().map(|pcb| pcb.view(guard));
        if self.rules.left_bucket_connect_only(&mut views) {
            for pcb in others() {
                pcb.flags.update(|flags| flags | Flags::CONNECT_BUCKET);
            }
        }
    }

    /// An owner of `port` left it, or its full socket gave way to a
    /// TIME_WAIT one: the port's memo becomes what the policy says, given the
    /// PCBs still on it but `except` (one that the kernel has not put there
    /// yet). Caller holds the port's lock.
    #[inline]
    pub(crate) fn left_port(
        &self,
        held: &PortLock<'_>,
        port: u16,
        except: Option<&PcbInner<S>>,
        guard: &Guard,
    ) {
        debug_assert_eq!(held.port(), port);
        if !self.rules.bucket_history {
            return;
        }
        let memo = self.memos.get(held, port);
        let mut others = self
            .ports
            .iter(port, List::Unconnected, guard)
            .chain(self.ports.iter(port, List::Connected, guard))
            .filter(|pcb| except.is_none_or(|except| !std::ptr::eq(&***pcb, except)))
            .map(|pcb| pcb.view(guard));
        let left = self.rules.port_left(memo, &mut others);
        if left != memo {
            self.memos.set(held, port, left);
        }
    }
}
