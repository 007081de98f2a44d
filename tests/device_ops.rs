//! What one frame of the `stsa` renderer asks of a CUDA device, counted by `tools/cuda-counter`
//! (host memory, kernels counted instead of run): run by `scripts/count-device-ops.sh`.

use lipsync::render::{Neighbour, RenderJob, Renderer, Stsa, StsaConfig};
use lipsync::stsa::models::WeightSource;
use lipsync::stsa::profile::DeviceOps;

mod common;

#[test]
#[ignore = "needs tools/cuda-counter preloaded: scripts/count-device-ops.sh"]
fn one_frame_on_a_gpu() {
    assert!(DeviceOps::read().is_some(), "tools/cuda-counter is not preloaded: run scripts/count-device-ops.sh");
    let (frame, face) = common::photo_720p();
    let mut config = StsaConfig::new(WeightSource::Detw);
    config.device = lipsync::stsa::models::ComputeDevice::Cuda(0);
    config.bank.enrolment = 0;
    let mut stsa = Stsa::new(config).unwrap();
    let voice: Vec<f32> = (0..stsa.window().samples()).map(|i| ((i as f32) * 0.05).sin() * 0.3).collect();
    let mut per_frame = Vec::new();
    for k in 0..4u64 {
        let at = |j: u64| frame.with_pts((k + j) * 40_000_000, None);
        let centre = at(2);
        let context: Vec<Option<Neighbour>> =
            (0..5).map(|j| Some(Neighbour { pts: at(j).pts, face: Some(face.clone()) })).collect();
        let job = RenderJob { frame: &centre, audio: &voice, audio_missing: 0, face: Some(&face), context: &context };
        let before = DeviceOps::read().unwrap();
        stsa.render(&job).unwrap();
        per_frame.push(DeviceOps::read().unwrap().since(&before));
    }
    for (k, ops) in per_frame.iter().enumerate() {
        eprintln!("frame {k}: {} device operations, {} waits: {ops:?}", ops.operations(), ops.waits());
    }
    for (name, n) in DeviceOps::kernels().iter().take(25) {
        eprintln!("{n:6} {name}");
    }
}
