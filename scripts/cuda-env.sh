# Sourced by scripts/check-cuda.sh and scripts/gpu-bundle.sh: the CUDA 13.0 toolchain for building the
# `cuda` feature on a machine without a GPU or a CUDA install.
#
# nvcc, the headers and the libraries candle links (cudart, cuBLAS, cuBLASLt, cuRAND, NVRTC) come from
# NVIDIA's PyPI wheels, installed once into a virtual environment under ~/.cache/lipsync (about 1.2 GB).
# CUDA 13.0 because the kernels are compiled to PTX, which a driver older than the nvcc that made it
# refuses at load time (CUDA_ERROR_UNSUPPORTED_PTX_VERSION): 13.0 is what driver 580 runs.
# The wheels have no unversioned `libX.so` names and no driver, so `link/` holds the names the linker
# looks for: links to the wheels' libraries and a link stub of the driver, libcuda.so (soname
# libcuda.so.1) whose every function returns CUDA_ERROR_STUB_LIBRARY. A program linked here finds the
# real libraries on the machine it runs on (gpu-bundle/run.sh points the loader at them).
#
# Sets CUDA_HOME, PATH, LIBRARY_PATH, CUDA_COMPUTE_CAP (90: the H100 and H200), CUDAFORGE_THREADS,
# LIPSYNC_CUDA_LINK (the folder of link names) and LIPSYNC_CUDA_RUNTIME (the folders a program linked here
# loads its libraries from on this machine). Needs python3-venv, gcc and cargo (scripts/setup.sh).

lipsync_cuda_cache="${XDG_CACHE_HOME:-$HOME/.cache}/lipsync/cuda-13.0"
lipsync_cuda_venv="$lipsync_cuda_cache/venv"
if [ ! -f "$lipsync_cuda_venv/installed" ]; then
    echo "cuda-env: installing CUDA 13.0 (nvcc, headers, cudart, cuBLAS, cuRAND, NVRTC) from PyPI into $lipsync_cuda_cache"
    rm -rf "$lipsync_cuda_venv"
    python3 -m venv "$lipsync_cuda_venv"
    "$lipsync_cuda_venv/bin/pip" install --quiet --disable-pip-version-check \
        "cuda-toolkit[nvcc,cccl,cudart,cublas,curand,nvrtc]==13.0.3.0"
    touch "$lipsync_cuda_venv/installed"
fi
CUDA_HOME="$("$lipsync_cuda_venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/nvidia/cu13"
export CUDA_HOME
export PATH="$CUDA_HOME/bin:$PATH"

LIPSYNC_CUDA_LINK="$lipsync_cuda_cache/link"
export LIPSYNC_CUDA_LINK
if [ ! -f "$LIPSYNC_CUDA_LINK/libcuda.so" ]; then
    mkdir -p "$LIPSYNC_CUDA_LINK"
    for lib in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libnvrtc.so.13; do
        ln -sfn "$CUDA_HOME/lib/$lib" "$LIPSYNC_CUDA_LINK/${lib%.so.*}.so"
    done
    # The driver's entry points are those cudarc binds (every `cu*` function of its driver module).
    cudarc_dir="$(cargo metadata --format-version 1 --features cuda 2>/dev/null | python3 -c '
import json, os, sys
pkgs = json.load(sys.stdin)["packages"]
print(next(os.path.dirname(p["manifest_path"]) for p in pkgs if p["name"] == "cudarc"))')"
    {
        echo "/* Link stub of the CUDA driver (made by scripts/cuda-env.sh): every entry point returns"
        echo "   CUDA_ERROR_STUB_LIBRARY (34). Programs linked against it load the real libcuda.so.1. */"
        grep -oE '^pub unsafe fn cu[A-Za-z0-9_]+\(' "$cudarc_dir/src/driver/sys/mod.rs" | sort -u |
            sed -E 's/^pub unsafe fn (cu[A-Za-z0-9_]+)\(/int \1(void) { return 34; }/'
    } >"$LIPSYNC_CUDA_LINK/libcuda-stub.c"
    gcc -shared -fPIC -O0 -Wl,-soname,libcuda.so.1 -o "$LIPSYNC_CUDA_LINK/libcuda.so.tmp" \
        "$LIPSYNC_CUDA_LINK/libcuda-stub.c"
    # The loader's name too, so that a program linked here starts here (on the CPU, or on tools/cuda-counter).
    ln -sfn libcuda.so "$LIPSYNC_CUDA_LINK/libcuda.so.1"
    mv "$LIPSYNC_CUDA_LINK/libcuda.so.tmp" "$LIPSYNC_CUDA_LINK/libcuda.so"
fi
# Where a program linked here finds its libraries on this machine: the stub driver and the wheels.
export LIPSYNC_CUDA_RUNTIME="$LIPSYNC_CUDA_LINK:$CUDA_HOME/lib"
export LIBRARY_PATH="$LIPSYNC_CUDA_LINK${LIBRARY_PATH:+:$LIBRARY_PATH}"
# No nvidia-smi here: build the kernels for the Hopper GPUs the device checks run on (sm_90).
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
export CUDAFORGE_THREADS="${CUDAFORGE_THREADS:-$(nproc)}"
