#!/usr/bin/env bash
# A live translation demo: `lipsync live` lip-syncs a face video to translated speech that arrives line by
# line over RTP, as a translation service would send it; eSpeak NG stands in for the service's TTS
# (examples/speak_srt.rs). Writes the dubbed video with the translated speech.
#
#   scripts/translate-demo.sh [FACE] [SUBTITLES.srt] [VOICE] [OUT]
#
# FACE: a face video (played in a loop) or a photo; default ../shared/media/speakerine.mp4.
# SUBTITLES: the translation, timed (SRT); default examples/translate/sample.fr.srt (also .de.srt).
# VOICE: an eSpeak NG voice (`espeak-ng --voices`); default the language in the SRT's name (sample.fr.srt: fr).
# OUT: default translate-demo.mkv.
set -euo pipefail
cd "$(dirname "$0")/.."
face="${1:-../shared/media/speakerine.mp4}"
srt="${2:-examples/translate/sample.fr.srt}"
lang="$(basename "$srt" .srt)"
voice="${3:-${lang##*.}}"
out="${4:-translate-demo.mkv}"
port="${LIPSYNC_DEMO_PORT:-5004}"
profile="${LIPSYNC_PROFILE:-release}" # the cargo profile to build with (scripts/test.sh: dev)
bin="target/$([ "$profile" = dev ] && echo debug || echo "$profile")"
command -v espeak-ng >/dev/null || { echo "espeak-ng is needed: apt-get install espeak-ng" >&2; exit 1; }
cargo build --profile "$profile" --quiet --bin lipsync --example speak_srt
"$bin/lipsync" live --face "$face" --loop --audio-gaps silence \
  --audio "rtp://127.0.0.1:$port?codec=l16&rate=22050&burst=1" --out "$out" &
live=$!
trap 'kill -INT $live 2>/dev/null || true' EXIT
sleep 2 # the face models load, the receiver listens
"$bin/examples/speak_srt" --srt "$srt" --voice "$voice" --to "127.0.0.1:$port"
sleep 1 # the last frames leave, a latency after their speech
kill -INT "$live"
wait "$live"
trap - EXIT
