//! The device a packet arrived on, as a type: the lookup's stages are
//! generic over it, so that a lookup with no device compiles to code that
//! tests none.

/// The device a packet arrived on, as the lookup's stages take it: a
/// device index, or [`Unknown`], for which the stages are compiled apart
/// so that [`PcbTable::lookup`](crate::PcbTable::lookup) carries no device.
pub(crate) trait Arrival: Copy {
    /// The device's index, 0 for unknown.
    fn index(self) -> u32;
}

/// A packet whose device is unknown.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Unknown;

impl Arrival for Unknown {
    #[inline(always)]
    fn index(self) -> u32 {
        0
    }
}

impl Arrival for u32 {
    #[inline(always)]
    fn index(self) -> u32 {
        self
    }
}
