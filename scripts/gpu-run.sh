#!/usr/bin/env bash
# The GPU bundle's one command (scripts/gpu-bundle.sh copies this file there as run.sh): finds the NVIDIA
# driver and the CUDA libraries on this machine, prints the GPU, driver and library versions, then runs
# stsa-check: the parity of STSA's three networks on the device (f32, f16, bf16) and the stsa renderer's
# throughput for 1, 2 and 4 streams of 1280x720. Results are printed as they come; report.json (and
# run.log, machine.txt) go to $OUT, or to out/ beside this script.
#
#   run.sh [--device cuda:0|cuda:N|cpu] [stsa-check options, e.g. --quick or --precisions f32]
#   run.sh --kernels [--precisions f32]   the same under Nsight Compute (ncu), which times each kernel
#                                         of the stage-profiled frames (3 by default; one stream, short
#                                         throughput runs): kernels.csv, and kernels.txt, their sum by
#                                         kernel (kernel-summary.py)
#
# The CUDA libraries are searched in $LIPSYNC_CUDA_LIBS (folders, colon-separated), in the nvidia/*/lib
# folders of python3's environment (PyTorch's wheels), in a CUDA toolkit under /usr/local/cuda and in the
# loader's cache. --device cpu needs the libraries too (the program is linked against them), or the link
# names scripts/cuda-env.sh made on the machine that built the bundle.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
device=cuda:0
kernels=""
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device="${2:-}"; shift 2 ;;
        --device=*) device="${1#*=}"; shift ;;
        --kernels) kernels=1; shift ;;
        *) args+=("$1"); shift ;;
    esac
done
out="${OUT:-$here/out}"
mkdir -p "$out"
say() { echo "run.sh: $*"; }
fail() { echo "run.sh: $*" >&2; exit 2; }

libs=(libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10)

# The NVIDIA driver's libcuda.so.1.
driver=""
if [ "$device" != cpu ]; then
    candidates=$(ldconfig -p 2>/dev/null | awk '/libcuda\.so\.1 /{print $NF}' | xargs -r -n1 dirname)
    for d in $candidates /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu /usr/lib64 \
        /usr/local/cuda/compat /usr/lib/wsl/lib; do
        if [ -e "$d/libcuda.so.1" ]; then driver="$d"; break; fi
    done
    [ -n "$driver" ] || fail "no NVIDIA driver here: libcuda.so.1 is neither in the loader's cache nor in \
/usr/local/nvidia/lib64, /usr/lib/x86_64-linux-gnu, /usr/lib64 or /usr/local/cuda/compat. Run this on a machine \
with an NVIDIA GPU and its driver (580 or newer: the kernels are CUDA 13.0 PTX), or pass --device cpu."
fi

# The CUDA libraries.
search=()
IFS=: read -r -a from_env <<<"${LIPSYNC_CUDA_LIBS:-}"
search+=("${from_env[@]}")
if command -v python3 >/dev/null; then
    while IFS= read -r site; do
        for d in "$site"/nvidia/*/lib; do [ -d "$d" ] && search+=("$d"); done
    done < <(python3 -c 'import site, sys; print("\n".join(site.getsitepackages() + [site.getusersitepackages()]))' 2>/dev/null)
fi
for d in /opt/*/.venv/lib/python3*/site-packages/nvidia/*/lib; do [ -d "$d" ] && search+=("$d"); done
search+=(/usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib)
while IFS= read -r d; do search+=("$d"); done < <(ldconfig -p 2>/dev/null | awk '/lib(cublas|cudart|curand)/{print $NF}' | xargs -r -n1 dirname | sort -u)
if [ "$device" = cpu ]; then
    # Without a driver the program still needs a libcuda.so.1 to start: the link stub of the machine
    # that built the bundle, where this is that machine.
    link="${XDG_CACHE_HOME:-$HOME/.cache}/lipsync/cuda-13.0/link"
    cuda_home=$(ls -d "${XDG_CACHE_HOME:-$HOME/.cache}"/lipsync/cuda-13.0/venv/lib/python3*/site-packages/nvidia/cu13/lib 2>/dev/null | head -1)
    for d in "$link" "$cuda_home"; do [ -n "$d" ] && [ -d "$d" ] && search+=("$d"); done
    libs+=(libcuda.so.1)
fi
dirs=()
[ -n "$driver" ] && dirs+=("$driver")
missing=()
for lib in "${libs[@]}"; do
    found=""
    for d in "${search[@]}"; do
        [ -n "$d" ] && [ -e "$d/$lib" ] && { found="$d"; break; }
    done
    if [ -z "$found" ]; then missing+=("$lib"); continue; fi
    say "$lib: $(readlink -f "$found/$lib")"
    case " ${dirs[*]} " in *" $found "*) ;; *) dirs+=("$found") ;; esac
done
if [ ${#missing[@]} -gt 0 ]; then
    fail "missing ${missing[*]} (CUDA 13: PyTorch's nvidia-* wheels, a CUDA 13 toolkit, or set LIPSYNC_CUDA_LIBS \
to the folders holding them); searched: ${search[*]:-nothing}"
fi

# What this machine is.
{
    echo "bundle: $(tr '\n' ' ' <"$here/bundle.txt" 2>/dev/null)"
    echo "host: $(uname -srm), $(nproc) cores"
    [ -n "$driver" ] && echo "driver: $(readlink -f "$driver/libcuda.so.1")"
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>&1 | sed 's/^/gpu: /'
    fi
    for lib in "${libs[@]}"; do
        for d in "${dirs[@]}"; do [ -e "$d/$lib" ] && { echo "library: $(readlink -f "$d/$lib")"; break; }; done
    done
} | tee "$out/machine.txt"

# The program, unpacked.
bin="${TMPDIR:-/tmp}/lipsync-stsa-check-$$"
if [ -f "$here/stsa-check.gz" ]; then
    if command -v gzip >/dev/null; then gzip -dc "$here/stsa-check.gz" >"$bin"
    else python3 -c 'import gzip, shutil, sys; shutil.copyfileobj(gzip.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$here/stsa-check.gz" "$bin"
    fi
else
    cp "$here/stsa-check" "$bin"
fi
chmod +x "$bin"
trap 'rm -f "$bin"' EXIT

# Under Nsight Compute: only the kernels of the stage-profiled frames (the program brackets them with
# cuProfilerStart/Stop), each timed alone.
profiler=()
if [ -n "$kernels" ]; then
    [ "$device" != cpu ] || fail "--kernels needs a GPU"
    ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | tail -1)
    [ -n "$ncu" ] || fail "--kernels needs Nsight Compute (ncu): not on the PATH, in /opt/nvidia/nsight-compute or /usr/local/cuda/bin"
    say "kernels timed by $ncu ($("$ncu" --version | tail -1))"
    profiler=("$ncu" --profile-from-start off --clock-control none --metrics gpu__time_duration.sum --csv \
        --print-units base --print-kernel-base function --log-file "$out/kernels.csv")
    args=(--streams 1 --frames 10 --seconds 2 --profile-frames 3 "${args[@]}")
fi

say "stsa-check --device $device ${args[*]}"
LD_LIBRARY_PATH="$(IFS=:; echo "${dirs[*]}")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    "${profiler[@]}" "$bin" --fixtures "$here/fixtures" --device "$device" --out "$out/report.json" "${args[@]}" 2>&1 \
    | tee "$out/run.log"
status="${PIPESTATUS[0]}"
if [ -n "$kernels" ]; then
    frames=3
    for ((i = 0; i < ${#args[@]} - 1; i++)); do
        [ "${args[$i]}" = --profile-frames ] && frames="${args[$((i + 1))]}"
    done
    python3 "$here/kernel-summary.py" "$out/kernels.csv" "$frames" | tee "$out/kernels.txt"
fi
exit "$status"
