#!/usr/bin/env bash
# Fuzz smoke: builds the cargo-fuzz targets with nightly and runs each one for
# 60 seconds from its committed seed corpus. A crash or a divergence from the
# reference model fails the run (libFuzzer exits non-zero and saves the input
# under fuzz/artifacts/<target>/). Without a nightly toolchain it is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz smoke skipped: no nightly toolchain ('cargo +nightly --version' failed)"
    exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

cd fuzz
cargo +nightly fuzz build
for target in ops lookup concurrent; do
    # Work on a copy, so the committed seed corpus stays as it is.
    work=$(mktemp -d)
    cp -R "corpus/$target/." "$work/"
    echo "fuzz smoke: $target for ${PCBHASH_FUZZ_SECS:-60} s, seed ${PCBHASH_FUZZ_SEED:-1}"
    # A fixed seed makes the run a fixed trajectory: CI's minute explores a
    # prefix of what a longer local run with the same seed has explored.
    # PCBHASH_FUZZ_SEED picks another one; PCBHASH_FUZZ_SECS runs longer.
    cargo +nightly fuzz run "$target" "$work" -- \
        -seed="${PCBHASH_FUZZ_SEED:-1}" -max_total_time="${PCBHASH_FUZZ_SECS:-60}" -max_len=512
    rm -rf "$work"
done
