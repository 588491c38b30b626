//! The value type of the exact index's unit tests and loom models.

use super::ExactEntry;

/// A test value: its key, and the hash it is filed under.
#[repr(align(16))]
#[derive(Debug)]
pub(super) struct Item {
    pub(super) key: u64,
    pub(super) hash: u64,
}

impl ExactEntry for Item {
    fn exact_hash(&self) -> u64 {
        self.hash
    }
}
