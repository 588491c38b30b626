#!/usr/bin/env bash
# Loom models of the concurrency contract (loom-tests/), then the proof that they
# have teeth: the same models against deliberately broken tables must fail.
#
# Both runs need crossbeam's cfg as well as ours: without --cfg crossbeam_loom
# crossbeam-epoch keeps std atomics and loom explores one interleaving of it.
# Bounded by LOOM_MAX_PREEMPTIONS (default 3, about eight minutes of models on 2 cores) and by a wall-clock limit.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"
limit="${PCBHASH_LOOM_TIMEOUT:-900}"

echo "loom: LOOM_MAX_PREEMPTIONS=$LOOM_MAX_PREEMPTIONS, time limit ${limit}s per run"

# Separate target directories: the cfgs change every crate's build.
RUSTFLAGS="--cfg pcbhash_loom --cfg crossbeam_loom" \
CARGO_TARGET_DIR=target/loom \
    timeout "$limit" cargo test --release -p pcbhash-loom-tests --test models \
    -- --nocapture --test-threads 2

# The exact index's own models (src/raw/exact/: insert, removal,
# displacement and resize migration against a lookup).
RUSTFLAGS="--cfg pcbhash_loom --cfg crossbeam_loom" \
CARGO_TARGET_DIR=target/loom \
    timeout "$limit" cargo test --release -p pcbhash --features loom --lib loom_tests \
    -- --nocapture --test-threads 2

RUSTFLAGS="--cfg pcbhash_loom --cfg crossbeam_loom --cfg pcbhash_broken" \
CARGO_TARGET_DIR=target/loom-broken \
    timeout "$limit" cargo test --release -p pcbhash-loom-tests --test broken \
    -- --nocapture
