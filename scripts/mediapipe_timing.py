"""MediaPipe's own face tracking speed on a video's decoded frames: its Python package's FaceMesh solution (face
detection when needed, then the mesh on each frame, as in a live stream), one thread of Python feeding it.

    python mediapipe_timing.py FRAMES [PASSES]

FRAMES: the raw frames `examples/face_timing --write-frames=FRAMES VIDEO` wrote (the same pixels lipsync
tracks).

Prints one line: `mediapipe: N frames, X ms per frame, F with a face` over PASSES passes after a warm-up
pass. scripts/bench-face-tracking.sh runs it in the virtual environment it makes, beside lipsync's own.
"""

import sys
import time

import mediapipe as mp
import numpy as np


def frames(path):
    """The frames face_timing --write-frames= wrote: a line `WIDTH HEIGHT COUNT`, then raw RGB."""
    with open(path, "rb") as f:
        width, height, count = map(int, f.readline().split())
        data = np.frombuffer(f.read(), dtype=np.uint8)
    if data.size != width * height * 3 * count:
        sys.exit(f"{path}: {data.size} bytes for {count} frames of {width}x{height}")
    return list(data.reshape(count, height, width, 3))


def main():
    path = sys.argv[1]
    passes = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    images = frames(path)
    with mp.solutions.face_mesh.FaceMesh(
        static_image_mode=False, max_num_faces=1, refine_landmarks=False
    ) as mesh:
        for image in images:  # warm-up: the graph, its threads and caches
            mesh.process(image)
        found = 0
        start = time.perf_counter()
        for _ in range(passes):
            for image in images:
                found += mesh.process(image).multi_face_landmarks is not None
        elapsed = time.perf_counter() - start
    n = passes * len(images)
    print(f"mediapipe: {n} frames, {elapsed * 1e3 / n:.2f} ms per frame, {found} with a face")


main()
