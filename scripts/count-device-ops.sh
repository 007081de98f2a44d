#!/usr/bin/env bash
# Counts what the stsa renderer asks of a CUDA device per frame, on a machine without a GPU: builds the
# `cuda` feature against CUDA 13.0 (scripts/cuda-env.sh) and runs tests/device_ops.rs on
# tools/cuda-counter, a device of host memory that counts kernel launches, cuBLAS calls, copies and
# synchronisations instead of running them. `cargo bench --bench stsa` prints the same counts when run so:
#   scripts/count-device-ops.sh                 the test (per-frame counts; fails over 1,500 operations)
#   scripts/count-device-ops.sh bench           the benchmark: the counts, and the host time of a frame
#                                               whose device does no work (what driving the GPU costs)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/cuda-env.sh
source scripts/cuda-env.sh
counter="$(tools/cuda-counter/build.sh)"
# Only the programs cargo runs get the counter (a runner), not cargo and rustc.
export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="env LD_PRELOAD=$counter LD_LIBRARY_PATH=$LIPSYNC_CUDA_RUNTIME"
export LIPSYNC_BENCH_DEVICE=cuda:0
if [ "${1:-}" = bench ]; then
    shift
    cargo bench --no-default-features --features cuda --bench stsa -- 'stsa_cuda:0/frame' "$@"
else
    cargo test --release --no-default-features --features cuda --test device_ops -- --ignored --nocapture "$@"
fi
