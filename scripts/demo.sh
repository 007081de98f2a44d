#!/usr/bin/env bash
# The main job: installs what is missing, builds, and makes demo.mp4 (H.264 + AAC) from a real photo and
# synthesised speech with `lipsync dub`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --media
cargo build --release --quiet --bin lipsync
./target/release/lipsync dub --face .cache/media/astronaut.png --audio .cache/media/speech.wav -o demo.mp4
