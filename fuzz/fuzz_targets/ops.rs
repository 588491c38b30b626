//! Random operation sequences (attach, options, bind, listen, connect,
//! accept, disconnect, TIME_WAIT, close, lookups) over a small address and
//! port space, for both policies and both protocols, compared with the
//! reference model after every step.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(divergence) = pcbhash_model::run_bytes(data) {
        panic!("{divergence}");
    }
});
