//! A small deterministic random source for unit tests (xorshift64): the
//! same draws on every run, no dependency.

/// The draws of a xorshift64 generator started at `seed` (not zero).
pub(crate) fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}
