#!/usr/bin/env bash
# Hostile-input tests at length: 100,000 random and mutated inputs for each parser (face models, checkpoints,
# WAV headers, RTP URLs), and 2,000 for the paths through GStreamer (WAV decoding, RTP packets). Each input
# must get an answer within 5 s, without a panic and within its memory bound (tests/hostile_input.rs).
#   scripts/fuzz.sh [CASES]    default 100000; about 5 minutes on 2 cores
set -euo pipefail
cd "$(dirname "$0")/.."
export PROPTEST_CASES="${1:-100000}"
cargo test --release --lib hostile
cargo test --release --test hostile_input
