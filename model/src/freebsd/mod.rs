//! FreeBSD 14/15 rules, read from `sys/netinet/in_pcb.c`,
//! `sys/netinet6/in6_pcb.c` and `tcp_usrreq.c`: `in_pcbbind_avail`,
//! `in6_pcbbind_avail`, `in_pcblookup_local`, `in_pcb_lport_dest`,
//! `in_pcbconnect`, `in_pcblookup_hash_locked`, `in_pcbinslbgrouphash`.
//!
//! The calls (`bind`, `connect`) sit above the rules they apply: the
//! load-balance groups (`groups`) and `in_pcblookup_local()` (`local`), which
//! breaks its ties by the wildcard chain's order (`lookup`). No file here
//! imports one above it.

mod bind;
mod connect;
mod deliver;
mod groups;
mod local;
mod lookup;

pub(crate) use bind::{bind, listen};
pub(crate) use connect::{connect, disconnect};
pub(crate) use deliver::deliver;
pub(crate) use groups::remove;
pub(crate) use local::{lookup_local, lookup_local_ties};
pub(crate) use lookup::lookup_wild;
