//! A random operation list split across two threads sharing one table
//! (lookups on devices and deliveries walking while the other thread
//! binds, connects and closes), with the invariants checked at the end: no
//! duplicate 4-tuples, no conflicting binds, a consistent `len()`, and every
//! socket freed exactly once.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = pcbhash_model::concurrent::run_bytes(data) {
        panic!("{violation}");
    }
});
