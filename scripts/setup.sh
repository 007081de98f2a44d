#!/usr/bin/env bash
# Installs what lipsync needs on Debian 12 and is quiet when everything is already there.
#   scripts/setup.sh          system packages (GStreamer, ALSA, PulseAudio, encoders, espeak-ng, festival, flite and voices)
#   scripts/setup.sh --media  also the demo media: the astronaut photo (scikit-image wheel) and speech
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  pkg-config build-essential python3-pip python3-venv
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libasound2-dev
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly
  gstreamer1.0-libav gstreamer1.0-alsa gstreamer1.0-pulseaudio pulseaudio
  espeak-ng
  festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts flite
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found: install Rust 1.95 or newer (https://rustup.rs), then run this again" >&2
  exit 1
fi
# The test script formats and lints.
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  if command -v rustup >/dev/null; then
    echo "setup: installing rustfmt and clippy"
    rustup component add rustfmt clippy
  else
    echo "setup: cargo fmt and cargo clippy are missing: install the rustfmt and clippy components" >&2
    exit 1
  fi
fi

# MediaPipe's face models ship in the mediapipe 0.10.21 wheel (later wheels carry no .tflite); the Rust
# code reads them straight out of it (src/face/models.rs).
wheel_dir="${XDG_CACHE_HOME:-$HOME/.cache}/lipsync"
wheel="$wheel_dir/mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl"
wheel_sha=05dc4a9e593655a79558d05d6227d31018c2537a4bd3362b51e230cf22aecfe3
if ! echo "$wheel_sha  $wheel" | sha256sum -c --status 2>/dev/null; then
  echo "setup: fetching the mediapipe 0.10.21 wheel (face models) into $wheel_dir"
  mkdir -p "$wheel_dir"
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
    --platform manylinux_2_28_x86_64 mediapipe==0.10.21 -d "$wheel_dir"
  echo "$wheel_sha  $wheel" | sha256sum -c --status || { echo "setup: $wheel checksum mismatch" >&2; exit 1; }
fi

if [ "${1:-}" = "--media" ]; then
  cache=.cache/media
  mkdir -p "$cache"
  # The photo: NASA's astronaut portrait (public domain), as shipped in the scikit-image wheel.
  photo="$cache/astronaut.png"
  photo_sha=88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5
  if ! echo "$photo_sha  $photo" | sha256sum -c --status 2>/dev/null; then
    echo "setup: fetching the scikit-image wheel for its astronaut photo"
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
      --platform manylinux_2_17_x86_64 scikit-image==0.24.0 -d .cache/wheels
    python3 - "$photo" <<'PY'
import glob, sys, zipfile
wheel = sorted(glob.glob(".cache/wheels/scikit_image-0.24.0-*.whl"))[-1]
with zipfile.ZipFile(wheel) as z, open(sys.argv[1], "wb") as f:
    f.write(z.read("skimage/data/astronaut.png"))
PY
    echo "$photo_sha  $photo" | sha256sum -c --status || { echo "setup: astronaut.png checksum mismatch" >&2; exit 1; }
  fi
  # The speech: synthesised with espeak-ng.
  speech="$cache/speech.wav"
  if [ ! -s "$speech" ]; then
    espeak-ng -v en-us -s 150 -w "$speech" \
      "Hello! I am a photograph, and today I am talking to you in real time. \
       Every frame of this video was made from one still picture and this voice."
  fi
fi
