//! Loom models for pcbhash live here (see the crate README); they compile only under `--cfg pcbhash_loom`.
