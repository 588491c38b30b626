//! A random table built through the API (devices among it), then random
//! packets (including unspecified, multicast, v4-mapped and port-0
//! addresses) looked up, or delivered, on a random device in the table and
//! in the reference model.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(divergence) = pcbhash_model::run_lookup_bytes(data) {
        panic!("{divergence}");
    }
});
