//! FreeBSD's FIBs (`SO_SETFIB`, `inp_inc.inc_fibnum`) and the
//! `net.inet.tcp.bind_all_fibs` / `net.inet.udp.bind_all_fibs` sysctls
//! (FreeBSD 15).
//!
//! With the sysctl on (the default), the protocol binds and looks up with
//! `RT_ALL_FIBS`: a PCB's FIB scopes nothing the table decides. With it
//! off, the protocol passes `INPBIND_FIB` to `in_pcbbind` /
//! `in6_pcbbind`, which then
//!
//! - checks the address with the PCB's own FIB:
//!   `fib = (flags & INPBIND_FIB) != 0 ? inp->inp_inc.inc_fibnum : RT_ALL_FIBS;`
//!   then `in6_pcbbind_avail(inp, sin6, fib, ...)`, whose reuse check is
//!   `in6_pcblookup_local(inp->inp_pcbinfo, laddr, lport, fib, lookupflags, cred)`,
//!   and `in6_pcblookup_local` skips `if (fib != RT_ALL_FIBS &&
//!   inp->inp_inc.inc_fibnum != fib)`. The other-owner check and the IPv4
//!   half of a dual-stack `::` pass `RT_ALL_FIBS`, and so does
//!   `in_pcb_lport_dest` when it picks an ephemeral port;
//! - marks the PCB `inp->inp_flags |= INP_BOUNDFIB;`, after which
//!   `SO_SETFIB` to another FIB fails with EISCONN
//!   (`fibs_multibind_test.c`, `no_setfib_after_bind`: "It's ok to set the
//!   FIB number to its current value");
//!
//! and packets are looked up with `INPLOOKUP_FIB`:
//! `fib = (lookupflags & INPLOOKUP_FIB) ? M_GETFIB(m) : RT_ALL_FIBS;`. The
//! exact stage takes no FIB (`in6_pcblookup_hash_exact(pcbinfo, faddr,
//! fport, laddr, lport)`); the wildcard stage drops PCBs of other FIBs
//! (`in6_pcblookup_wild_match`: `if (fib != RT_ALL_FIBS &&
//! inp->inp_inc.inc_fibnum != fib) return (INPLOOKUP_MATCH_NONE);`), and
//! load-balance groups are per FIB (`in6_pcblookup_lb_match`: `fib ==
//! RT_ALL_FIBS || fib == grp->il_fibnum`).
//!
//! Quoted from `sys/netinet6/in6_pcb.c`; `in_pcb.c` has the IPv4 twins,
//! and `tests/sys/netinet/fibs_multibind_test.c` runs every scenario for
//! both families.
//!
//! One corner is not followed: `in6_pcblookup_lbgroup` keeps the first
//! group on the packet's address (`local_exact == NULL ||
//! in6_pcblookup_lb_match(grp, domain, fib)`) even when its FIB is not the
//! packet's, and the locked lookup it falls back to returns that group's
//! member unchecked; so where no group of the packet's FIB is on that
//! address, the kernel can hand the packet to another FIB's group. Here a
//! group answers only its own FIB's packets, as the wildcard stage does
//! and as the test's `multibind_lbgroup` cases (a group in each FIB)
//! observe.

use super::PcbView;
use crate::cred::Device;
use crate::error::Error;
use crate::flags::State;

/// What a FIB scopes under one setting of `bind_all_fibs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fibs {
    /// `bind_all_fibs` is off: binds, groups and wildcard lookups are per
    /// FIB.
    pub(crate) scoped: bool,
}

impl Fibs {
    /// `RT_ALL_FIBS`: a search over every FIB.
    pub(crate) const ALL: Fibs = Fibs { scoped: false };

    /// Whether a search for `new`'s address sees `other`.
    pub(crate) fn shares(self, new: &PcbView, other: &PcbView) -> bool {
        !self.scoped || new.fib == other.fib
    }

    /// The group identity a PCB's FIB adds (`il_fibnum`): its FIB when
    /// groups are per FIB, 0 otherwise.
    pub(crate) fn group_of(self, view: &PcbView) -> u32 {
        if self.scoped {
            view.fib
        } else {
            0
        }
    }

    /// `SO_SETFIB` on `me`: the FIB `device` names (`None` and `Device(0)`
    /// are FIB 0). The table keeps FIBs 0 to 255: a larger number is
    /// EINVAL, as one past `net.fibs` is in the kernel (which FIBs below
    /// 256 exist is the stack's to check). A PCB bound while FIBs are scoped
    /// (`INP_BOUNDFIB`) keeps its FIB: another one is EISCONN. The table
    /// counts a PCB as bound once it holds a port, by `bind()`, `listen()`
    /// or `connect()`.
    pub(crate) fn set_fib(self, me: &PcbView, device: Option<Device>) -> Result<u8, Error> {
        let fib =
            u8::try_from(device.map_or(0, |device| device.0)).map_err(|_| Error::InvalidInput)?;
        if self.scoped && me.state() != State::Closed && u32::from(fib) != me.fib {
            return Err(Error::AlreadyConnected);
        }
        Ok(fib)
    }
}
