//! What a frame of the `stsa` renderer asks of a CUDA device, counted by `tools/cuda-counter` (a device of
//! host memory that counts kernel launches, copies and synchronisations instead of running them):
//! `scripts/count-device-ops.sh` runs it. Once the references are fixed, a 1280x720 frame makes at most
//! 1,500 device operations, reads back only the face and never waits for the device otherwise, in every
//! precision; and every kernel it launches exists in candle's PTX for its dtype.

use lipsync::stsa::check::{Scene, SceneStream};
use lipsync::stsa::models::{ComputeDevice, Precision};
use lipsync::stsa::profile::DeviceOps;

mod common;

/// Frames 0 to `frames - 1` of a stream of the test scene, each frame's counts.
fn count(precision: Precision, frames: usize) -> Vec<DeviceOps> {
    let scene = Scene::load(&common::shared("fixtures/face/astronaut.golden.safetensors")).unwrap();
    let mut stream = SceneStream::new(&scene, ComputeDevice::Cuda(0), precision).unwrap();
    (0..frames)
        .map(|_| {
            let before = DeviceOps::read().unwrap();
            stream.render_next().unwrap();
            DeviceOps::read().unwrap().since(&before)
        })
        .collect()
}

#[test]
#[ignore = "needs tools/cuda-counter preloaded: scripts/count-device-ops.sh"]
fn a_frame_on_a_gpu() {
    assert!(DeviceOps::read().is_some(), "tools/cuda-counter is not preloaded: run scripts/count-device-ops.sh");
    for precision in Precision::ALL {
        let before = DeviceOps::kernels();
        let frames = count(precision, 8);
        for (k, ops) in frames.iter().enumerate() {
            eprintln!("{precision} frame {k}: {ops}");
        }
        // The bank enrols over the first five frames (re-encoding the references at frames 0, 1, 3 and 4).
        for ops in &frames[5..] {
            assert_eq!((ops.dtoh, ops.syncs), (1, 0), "{precision}: one read-back (the face), no sync");
            assert_eq!(ops.dtoh_bytes, 3 * 128 * 128, "{precision}: the face's bytes");
            assert!(ops.operations() <= 1500, "{precision}: {} device operations", ops.operations());
        }
        let mut per_kernel: Vec<(String, u64)> = DeviceOps::kernels()
            .into_iter()
            .map(|(name, n)| {
                let earlier = before.iter().find(|(b, _)| *b == name).map_or(0, |(_, m)| *m);
                (name, n - earlier)
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        per_kernel.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        let listed: Vec<String> = per_kernel.iter().take(12).map(|(k, n)| format!("{k} {n}")).collect();
        eprintln!("{precision} kernels over the 8 frames: {}", listed.join(", "));
    }
}
