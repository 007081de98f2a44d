#!/usr/bin/env bash
# Lints the `cuda` feature (candle's CUDA backend, the device check, the device-operation counts) on a
# machine without a GPU or a CUDA install: the CUDA 13.0 toolchain comes from PyPI (scripts/cuda-env.sh);
# candle's kernels are compiled to PTX, nothing runs. In the release profile, so that it shares the
# kernels' build with scripts/gpu-bundle.sh and scripts/count-device-ops.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/cuda-env.sh
source scripts/cuda-env.sh
nvcc --version | tail -1
cargo clippy --release --workspace --features cuda --all-targets "$@" -- -D warnings
