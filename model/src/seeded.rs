//! Deterministic pseudo-random inputs for the stable replay: a splitmix64
//! stream turned into byte strings that `arbitrary` decodes as scenarios.

/// splitmix64: small, fast and good enough to spread test inputs.
#[derive(Clone, Debug)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// The input of test case `case` of a seeded run: between 16 and 400 bytes.
pub fn input(seed: u64, case: u64) -> Vec<u8> {
    let mut rng = SplitMix::new(seed ^ case.wrapping_mul(0xA24B_AED4_963E_E407));
    let len = 16 + (rng.next_u64() % 385) as usize;
    rng.bytes(len)
}
