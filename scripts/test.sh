#!/usr/bin/env bash
# Runs every check of the workspace after installing what a fresh Debian 12 machine lacks: formatting and
# lints, every test, the benchmarks and examples compiling, the viseme training tool's determinism, and the `cuda` feature without a GPU (its
# lints, the device operations a frame makes on tools/cuda-counter, the GPU bundle built and run on the CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# A fresh registry per run: a stale plugin cache must not hide a broken plugin.
export GST_REGISTRY="${TMPDIR:-/tmp}/lipsync-gst-registry-$$.bin"
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
# The benchmarks and examples must keep compiling; the benchmarks run with `cargo bench`.
cargo test --workspace --benches --no-run --quiet
cargo build --workspace --examples --quiet
cargo test --example speak_srt --quiet
# The viseme classifier's training tool runs and is deterministic (a tenth of the data, twice).
visemes_dir="$(mktemp -d)"
for run in a b; do
  cargo run --quiet --example train_visemes -- --quick --out "$visemes_dir/$run.safetensors" >"$visemes_dir/$run.log"
done
cmp "$visemes_dir/a.safetensors" "$visemes_dir/b.safetensors" || { echo "train_visemes is not deterministic" >&2; exit 1; }
rm -rf "$visemes_dir"
# The `cuda` feature: CUDA 13.0 from PyPI, kernels to PTX, no GPU (scripts/cuda-env.sh).
scripts/check-cuda.sh --quiet
scripts/count-device-ops.sh
scripts/gpu-bundle.sh
# The live translation demo: eSpeak NG's lines over RTP into `lipsync live`; the mouth must follow them.
demo_dir="$(mktemp -d)"
LIPSYNC_PROFILE=dev LIPSYNC_DEMO_PORT=$((20000 + $$ % 20000)) scripts/translate-demo.sh \
  ../shared/media/speakerine.mp4 examples/translate/sample.de.srt de "$demo_dir/demo.mkv" >"$demo_dir/log" 2>&1 \
  || { cat "$demo_dir/log"; exit 1; }
target/debug/lipsync measure --json "$demo_dir/demo.mkv" | python3 -c '
import json, sys
r = json.load(sys.stdin)
ok = r["faces"] == r["frames"] > 200 and abs(r["offset_frames"]) <= 1 and r["correlation"] >= 0.4
sys.exit(0 if ok else f"translate-demo: the mouth does not follow the speech: {r}")'
rm -rf "$demo_dir"
cargo test --workspace --lib --bins --tests "$@"
# The bundle on this machine: run.sh --device cpu, and --device cuda without a driver.
cargo test --test gpu_bundle "$@" -- --ignored
cargo test --workspace --doc "$@"
