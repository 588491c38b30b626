//! Unit tests of the whole table that reach into its internals (a forced
//! spill, the busy-port hints): above every module, so that no lower module
//! imports the table for its tests.

mod busy_hints;
mod spill;
