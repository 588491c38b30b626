//! Random operation sequences (attach, options, SO_BINDTODEVICE / SO_SETFIB,
//! bind, listen, connect, accept, disconnect, TIME_WAIT, close, lookups with
//! and without a device, multicast and broadcast delivery) over a small
//! address, port and device space, for both policies and both protocols,
//! compared with the reference model after every step.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(divergence) = pcbhash_model::run_bytes(data) {
        panic!("{divergence}");
    }
});
