#!/usr/bin/env bash
# Face tracking speed against MediaPipe's own Python package, on the same frames of one video, on this
# machine, in one run: rounds of MediaPipe then lipsync (examples/face_timing), the ratio of their medians,
# and where lipsync's time goes in the mesh, layer by layer.
#   scripts/bench-face-tracking.sh [VIDEO] [ROUNDS]     (default: ../shared/media/speakerine.mp4, 3)
# MediaPipe comes from the same wheel scripts/setup.sh fetches, installed in a virtual environment made
# here once (under ~/.cache/lipsync), with the few packages its FaceMesh solution imports.
set -euo pipefail
cd "$(dirname "$0")/.."
video="${1:-../shared/media/speakerine.mp4}"
rounds="${2:-3}"
[ -f "$video" ] || { echo "bench-face-tracking: no video at $video" >&2; exit 1; }

scripts/setup.sh
cache="${XDG_CACHE_HOME:-$HOME/.cache}/lipsync"
wheel="$cache/mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl"
venv="$cache/mediapipe-venv"
if ! "$venv/bin/python" -c "import mediapipe" 2>/dev/null; then
  echo "bench-face-tracking: making $venv (mediapipe 0.10.21 and what its FaceMesh imports)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --no-deps "$wheel"
  # mediapipe 0.10.21 wants numpy < 2 and protobuf 4; its drawing utilities, imported by the package,
  # want cv2 and matplotlib. jax, sentencepiece and sounddevice are not needed for FaceMesh.
  "$venv/bin/pip" install -q "numpy<2" "protobuf>=4.25.3,<5" absl-py attrs "flatbuffers>=2.0" \
    "opencv-python-headless<4.12" matplotlib
fi

cargo build --release --quiet --example face_timing
log="$(mktemp)"
frames="$(mktemp)"
target/release/examples/face_timing "$video" --write-frames="$frames"
for round in $(seq "$rounds"); do
  # MediaPipe's log lines (XNNPACK, absl) go to stderr.
  "$venv/bin/python" scripts/mediapipe_timing.py "$frames" 2>/dev/null | tee -a "$log"
  target/release/examples/face_timing "$video" | tee -a "$log"
done
rm -f "$frames"
python3 - "$log" <<'PY'
import re, statistics, sys
times = {"mediapipe": [], "lipsync": []}
for line in open(sys.argv[1]):
    m = re.match(r"(mediapipe|lipsync): \d+ frames, ([\d.]+) ms per frame", line)
    if m:
        times[m.group(1)].append(float(m.group(2)))
mp, ls = statistics.median(times["mediapipe"]), statistics.median(times["lipsync"])
print(f"median per frame: mediapipe {mp:.2f} ms, lipsync {ls:.2f} ms: lipsync takes {ls / mp:.2f}x MediaPipe's time")
PY
rm -f "$log"
target/release/examples/face_timing "$video" --layers
