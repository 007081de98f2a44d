#!/usr/bin/env bash
# Compiles the `cuda` feature (candle's CUDA backend and its kernels) without a GPU or a CUDA install:
# nvcc and the CUDA headers come from NVIDIA's PyPI wheels (CUDA 13.4; the CUDA 12 nvcc wheels ship no
# nvcc binary), installed once into a virtual environment under ~/.cache/lipsync. `cargo check` runs the
# kernel build (nvcc to PTX) and type-checks everything against cudarc; nothing is linked, so no driver
# or CUDA libraries are needed. Running on a GPU needs a real CUDA toolkit (README, "STSA: precision and
# streaming"). Needs python3-venv, which scripts/setup.sh installs.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${XDG_CACHE_HOME:-$HOME/.cache}/lipsync"
venv="$cache/cuda-13.4-venv"
if [ ! -f "$venv/bin/nvcc-ok" ]; then
    echo "check-cuda: installing nvcc and the CUDA headers from PyPI (cuda-toolkit 13.4.3, about 130 MB)"
    python3 -m venv "$venv"
    # cudarc 0.19 (candle 0.11) accepts CUDA 11.4 to 13.4: pinned.
    "$venv/bin/pip" install --quiet --disable-pip-version-check "cuda-toolkit[nvcc,cccl]==13.4.3"
    touch "$venv/bin/nvcc-ok"
fi
CUDA_HOME="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/nvidia/cu13"
export CUDA_HOME
export PATH="$CUDA_HOME/bin:$PATH"
# No nvidia-smi here: build the kernels for the H100 (sm_90a) the device tool lends.
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
export CUDAFORGE_THREADS="${CUDAFORGE_THREADS:-$(nproc)}"
nvcc --version | tail -2
cargo check --workspace --features cuda --all-targets "$@"
