#!/usr/bin/env bash
# AddressSanitizer (LeakSanitizer included) over the unit tests and the stress
# tests, then over the loom models: loom drives the interleavings and ASAN checks
# every memory access in them, so a PCB or node freed while a guard can still
# reach it is reported. Needs the nightly toolchain on x86_64 Linux; skips with
# the reason otherwise. Each run is time-bounded.
#
# `--target` keeps the sanitizer off build scripts and proc-macros; `--lib` leaves
# out doctests, which rustdoc would build without it.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
limit="${PCBHASH_ASAN_TIMEOUT:-900}"
target=x86_64-unknown-linux-gnu

if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
    echo "asan: skipped: AddressSanitizer runs here only on x86_64 Linux, not $(uname -s)-$(uname -m)"
    exit 0
fi
if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "asan: skipped: the nightly toolchain is missing (-Zsanitizer needs it: rustup toolchain install nightly)"
    exit 0
fi
echo "asan: $(cargo +nightly --version)"

# ASAN's quarantine keeps freed memory resident; the stress tests' own bound
# is for the plain build.
export PCBHASH_STRESS_MAX_RSS_MIB="${PCBHASH_STRESS_MAX_RSS_MIB:-1024}"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"

echo "asan: unit and stress tests"
RUSTFLAGS="-Zsanitizer=address" CARGO_TARGET_DIR=target/asan \
    timeout "$limit" cargo +nightly test --target "$target" --lib --test stress \
    -- --nocapture

# Loom with ASAN is slow per interleaving, hence one preemption by default. The
# build carries --cfg pcbhash_broken so that the same binary also proves that
# ASAN sees a use-after-free here: the free-at-once table must be reported.
preemptions="${PCBHASH_ASAN_LOOM_PREEMPTIONS:-1}"
echo "asan: loom models (LOOM_MAX_PREEMPTIONS=$preemptions)"
export LOOM_MAX_PREEMPTIONS="$preemptions"
loom_asan=(env RUSTFLAGS="-Zsanitizer=address --cfg pcbhash_loom --cfg crossbeam_loom --cfg pcbhash_broken"
    CARGO_TARGET_DIR=target/asan-loom
    timeout "$limit" cargo +nightly test --release --target "$target" -p pcbhash-loom-tests)
"${loom_asan[@]}" --test models -- --nocapture --test-threads 2
# The planted free is of a bucket array a resize replaced: the lookup must be
# preempted between loading the array and reading it, and the resize must then
# finish, which takes a second preemption.
echo "asan: a use-after-free planted in a loom model must be reported"
LOOM_MAX_PREEMPTIONS=2 "${loom_asan[@]}" --test broken -- --nocapture --ignored --exact free_at_once_is_caught_by_asan
