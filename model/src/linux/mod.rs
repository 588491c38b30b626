//! Linux 6.18 rules, read from `net/ipv4/af_inet.c`, `net/ipv6/af_inet6.c`,
//! `inet_connection_sock.c` (`inet_csk_get_port`, `inet_bind_conflict`,
//! `inet_rcv_saddr_equal`, `inet_csk_find_open_port`), `inet_hashtables.c`
//! (`__inet_hash_connect`, `__inet_lookup_listener`,
//! `inet_reuseport_add_sock`) and `udp.c` (`udp_lib_lport_inuse`,
//! `udp_lib_get_port`, `__udp_disconnect`, `udp4_lib_lookup2`).
//!
//! The calls (`bind`, `connect`) sit above the rules they apply: the
//! port conflicts (`get_port`), the lists a packet searches (`lists`) and
//! TCP's bind-bucket history (`buckets`), all over the address views of
//! `sock`. No file here imports one above it.

mod bind;
mod buckets;
mod connect;
mod device;
mod get_port;
mod lists;
mod sock;

pub(crate) use bind::{bind, listen};
pub(crate) use buckets::{bucket_joined, bucket_left, port_left, remove};
pub(crate) use connect::{connect, disconnect, disconnect_tcp};
pub(crate) use device::{bind_device, deliver};
pub(crate) use lists::lookup_wild;
