#!/usr/bin/env bash
# Builds the GPU bundle: gpu-bundle/ (git-ignored, at most 48 MiB), all that a machine with an NVIDIA GPU
# needs to check STSA there with one command, gpu-bundle/run.sh, and nothing it has already (its driver
# and CUDA libraries stay there). Inside: stsa-check built with the `cuda` feature against CUDA 13.0
# (scripts/cuda-env.sh; kernels as PTX for sm_90, which driver 580 and newer load), stripped and
# gzipped; the fixtures it checks the networks against and its test scene (from ../shared/fixtures);
# run.sh (scripts/gpu-run.sh) and kernel-summary.py (for run.sh --kernels); bundle.txt (what was built, from which commit).
#   scripts/gpu-bundle.sh            build it
#   gpu-bundle/run.sh --device cpu   try it here (a few minutes: CPU parity figures, a few frames)
set -euo pipefail
cd "$(dirname "$0")/.."
shared="${LIPSYNC_SHARED:-../shared}"
scripts/setup.sh
# shellcheck source=scripts/cuda-env.sh
source scripts/cuda-env.sh
cargo build --release --quiet --no-default-features --features cuda --bin stsa-check

bundle=gpu-bundle
rm -rf "$bundle"
mkdir -p "$bundle/fixtures"
strip -o "$bundle/stsa-check" target/release/stsa-check
gzip -9 "$bundle/stsa-check"
for f in stsa/heatmap_generator_detw.safetensors stsa/face_renderer_detw_io.safetensors \
    wav2vec2/wav2vec2_base_detw.safetensors face/astronaut.golden.safetensors; do
    [ -f "$shared/fixtures/$f" ] || { echo "gpu-bundle: $shared/fixtures/$f is missing (set LIPSYNC_SHARED)" >&2; exit 1; }
    cp "$shared/fixtures/$f" "$bundle/fixtures/"
done
cp scripts/gpu-run.sh "$bundle/run.sh"
cp scripts/kernel-summary.py "$bundle/"
chmod +x "$bundle/run.sh"
{
    echo "lipsync $(git describe --always --dirty 2>/dev/null || echo unknown), built $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "$(nvcc --version | tail -1), compute capability $CUDA_COMPUTE_CAP, $(rustc --version)"
} >"$bundle/bundle.txt"

size=$(du -sb "$bundle" | cut -f1)
limit=$((48 * 1024 * 1024))
echo "gpu-bundle: $bundle/ is $((size / 1024)) KiB ($(cat "$bundle/bundle.txt" | head -1))"
if [ "$size" -gt "$limit" ]; then
    echo "gpu-bundle: over 48 MiB, the most a device run carries beside the repository" >&2
    exit 1
fi
