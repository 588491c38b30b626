//! The endpoint's modules, one idea each: `link` (namespace and TUN
//! device), `wire` (packets, through etherparse), `tcp` (the TCP state
//! machine, SYN cookies), `apps` (echo, HTTP, the active open's client),
//! `sockets` (the tables' socket types), `owners` (the PCB handles), `stack`
//! (tables, loop, commands), `tcp_input` and `udp_input` (demultiplexing
//! through the table), `counters` (progress and summary), `peers` and
//! `drive` (the kernel side). Loaded with `#[path]`, so that the example
//! and `tests/tunstack.rs` share them: the files sit beside this one.

pub mod apps;
pub mod counters;
pub mod drive;
pub mod link;
pub mod owners;
pub mod peers;
pub mod sockets;
pub mod stack;
pub mod tcp;
pub mod tcp_input;
pub mod udp_input;
pub mod wire;
