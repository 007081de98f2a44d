//! The streaming `stsa` renderer through the engine, with the deterministic test weights (the networks
//! run as with the real files, but draw noise): every frame of a face comes back rendered, the new
//! lower face stays inside the face, the audio reaches the networks, streams share the networks but not
//! their state, and a missing weights folder is an error naming the file.

mod common;

use std::sync::Arc;

use lipsync::render::{RendererKind, RendererOptions, Stsa, StsaConfig};
use lipsync::stsa::models::{ComputeDevice, WeightSource};
use lipsync::{Engine, EngineConfig, FrameStatus, Mode, OutputFrame};

const FRAME: u64 = 40_000_000;
const FRAMES: u64 = 3;

/// The renderer's settings here: test weights, references from the first frames, a short audio context.
fn config() -> StsaConfig {
    let mut config = StsaConfig::new(WeightSource::Detw);
    config.bank.enrolment = 0;
    config.history = 400_000_000;
    config.lookahead = 100_000_000;
    config
}

/// Renders `FRAMES` frames of the astronaut photo with `voice(t)` as the audio (t in seconds).
fn render(voice: impl Fn(f32) -> f32) -> (lipsync::VideoFrame, Vec<OutputFrame<u64>>) {
    let face = common::frame(&common::golden("astronaut"));
    let stsa = Stsa::new(config()).unwrap();
    let (mut engine, mut audio) =
        Engine::<u64>::new(Box::new(stsa), EngineConfig { mode: Mode::Offline, ..Default::default() }).unwrap();
    let seconds = (FRAMES * FRAME + engine.window().after) as f32 / 1e9 + 0.1;
    let samples: Vec<f32> = (0..(seconds * 16_000.0) as usize).map(|i| voice(i as f32 / 16_000.0)).collect();
    audio.push(Some(0), &samples).unwrap();
    engine.audio_eos();
    for k in 0..FRAMES {
        engine.push_video(face.with_pts(k * FRAME, None), k);
    }
    let out = engine.finish(None);
    assert!(engine.take_events().is_empty(), "no render failed");
    (face, out)
}

/// A voiced sound: a 140 Hz buzz with formants, loud.
fn vowel(t: f32) -> f32 {
    let tau = std::f32::consts::TAU;
    (1..12).map(|h| (tau * 140.0 * h as f32 * t).sin() / h as f32).sum::<f32>() * 0.2
}

#[test]
fn renders_every_frame_inside_the_face_and_follows_the_audio() {
    let (face, voiced) = render(vowel);
    assert_eq!(voiced.iter().map(|o| o.payload).collect::<Vec<_>>(), [0, 1, 2]);
    // The face's extent: MediaPipe's own landmarks (normalised) of this photo.
    let mesh = common::vec1(&common::golden("astronaut")["mp_mesh468"]);
    let (w, h, stride) = (face.width() as usize, face.height() as usize, face.layout().strides[0]);
    let xs = mesh.chunks(3).map(|p| p[0] * w as f32);
    let ys = mesh.chunks(3).map(|p| p[1] * h as f32);
    let bbox = [
        xs.clone().fold(f32::MAX, f32::min),
        ys.clone().fold(f32::MAX, f32::min),
        xs.fold(0.0, f32::max),
        ys.fold(0.0, f32::max),
    ];
    for o in &voiced {
        assert_eq!(o.status, FrameStatus::Rendered);
        let image = o.image.as_ref().expect("a rendered face");
        let mut changed_inside = 0;
        for (i, (a, b)) in image.iter().zip(face.data()).enumerate() {
            if a == b {
                continue;
            }
            let (x, y) = ((i % stride) / 3, i / stride);
            assert!(x < w, "padding untouched");
            // Changes only inside the face box (with the tracker's margin).
            let margin = 0.1 * (bbox[2] - bbox[0]);
            let inside = x as f32 >= bbox[0] - margin
                && x as f32 <= bbox[2] + margin
                && y as f32 >= bbox[1] - margin
                && y as f32 <= bbox[3] + margin;
            assert!(inside, "pixel ({x}, {y}) changed outside the face {bbox:?}");
            changed_inside += 1;
        }
        assert!(changed_inside > 1000, "the lower face is redrawn ({changed_inside} bytes changed)");
    }
    // The same frames with silence: the audio reaches the networks, so the face differs.
    let (_, silent) = render(|_| 0.0);
    let differs = voiced
        .iter()
        .zip(&silent)
        .map(|(a, b)| a.image.as_ref().unwrap().iter().zip(b.image.as_ref().unwrap()).filter(|(x, y)| x != y).count())
        .collect::<Vec<_>>();
    assert!(differs.iter().all(|&d| d > 100), "voice and silence give the same face: {differs:?}");
}

/// The rendered images of a stream's frames.
fn images(frames: &[OutputFrame<u64>]) -> Vec<&[u8]> {
    frames.iter().map(|o| o.image.as_deref().expect("rendered")).collect()
}

#[test]
fn streams_share_the_networks_and_keep_their_own_state() {
    let (a, b) = (Stsa::new(config()).unwrap(), Stsa::new(config()).unwrap());
    assert!(Arc::ptr_eq(a.models(), b.models()), "one copy of the networks for both");
    drop((a, b));
    let (_, alone) = render(vowel);
    // A silent stream at the same time, on the same networks, changes nothing of the voiced one.
    let silent = std::thread::spawn(|| render(|_| 0.0).1);
    let (_, together) = render(vowel);
    let silent = silent.join().unwrap();
    assert_eq!(images(&together), images(&alone), "a stream's frames do not depend on another stream");
    assert_ne!(images(&silent), images(&together));
}

#[test]
fn without_weights_the_renderer_says_which_file_is_missing() {
    let e = RendererKind::Stsa.create(&RendererOptions::default()).err().expect("no weights set");
    assert!(e.to_string().contains("needs its weights"), "{e}");
    let dir = std::env::temp_dir().join(format!("lipsync-stsa-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let options = RendererOptions { weights: Some(dir.clone()), ..Default::default() };
    let e = RendererKind::Stsa.create(&options).err().expect("empty folder");
    assert!(e.to_string().contains("heatmap_weight.pth") && e.to_string().contains("models/README.md"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
    let e = "tpu".parse::<ComputeDevice>().unwrap_err();
    assert!(e.to_string().contains("cpu, cuda or cuda:N"), "{e}");
    if !cfg!(feature = "cuda") {
        let options =
            RendererOptions { weights: Some("detw".into()), device: ComputeDevice::Cuda(0), ..Default::default() };
        let e = RendererKind::Stsa.create(&options).err().expect("no CUDA in this build");
        assert!(e.to_string().contains("--features cuda"), "{e}");
    }
}
