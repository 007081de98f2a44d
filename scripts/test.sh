#!/usr/bin/env bash
# Runs every test of the workspace after installing what a fresh Debian 12 machine lacks.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# A fresh registry per run: a stale plugin cache must not hide a broken plugin.
export GST_REGISTRY="${TMPDIR:-/tmp}/lipsync-gst-registry-$$.bin"
# The benchmarks and examples must keep compiling; the benchmarks run with `cargo bench`.
cargo test --workspace --benches --no-run --quiet
cargo build --workspace --examples --quiet
# The `cuda` feature must keep compiling (no GPU here: nvcc from PyPI, kernels to PTX, no linking).
scripts/check-cuda.sh --quiet
cargo test --workspace --lib --bins --tests "$@"
cargo test --workspace --doc "$@"
