//! STSA per frame, with deterministic weights (the speed does not depend on the values), on the CPU or
//! on `LIPSYNC_BENCH_DEVICE` (`cuda:0` with `--features cuda`):
//! - `wav2vec2/window`: wav2vec2-base over the `stsa` renderer's default audio window (1.565 s);
//! - `heatmap_generator/window`: one T=5 window as the renderer runs it (cached reference tokens, three
//!   frames decoded), and `heatmap_generator/full` as the original (everything recomputed, five decoded);
//! - `face_renderer/frame`: one face with the references' work cached (the minimal form, ~183 GFLOP),
//!   `face_renderer/references` the part done once per reference set;
//! - `stsa/frame`: the whole renderer on a tracked face in a 1280x720 frame (everything above plus
//!   heatmaps, crops and the paste-back; tracking runs on its own thread and is not counted).

use std::hint::black_box;

use candle_core::{DType, Device, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use lipsync::face::{FaceTracker, TrackerConfig, models::ModelSource};
use lipsync::render::{Neighbour, RenderJob, Renderer, Stsa, StsaConfig};
use lipsync::stsa::face_renderer::FaceRenderer;
use lipsync::stsa::heatmap_generator::{self, HeatmapGenerator};
use lipsync::stsa::models::{WeightSource, network_weights, parse_device};
use lipsync::stsa::wav2vec2::{Config, Wav2Vec2};
use lipsync::{PixelFormat, VideoFrame};

fn device_name() -> String {
    std::env::var("LIPSYNC_BENCH_DEVICE").unwrap_or_else(|_| "cpu".into())
}

fn to(dev: &Device, t: &Tensor) -> Tensor {
    t.to_device(dev).unwrap()
}

/// Waits for the device's queued work (timings on CUDA are otherwise only the launches).
fn sync(dev: &Device, t: &Tensor) {
    if !dev.is_cpu() {
        t.sum_all().unwrap().to_device(&Device::Cpu).unwrap();
    }
}

fn bench(c: &mut Criterion) {
    let name = device_name();
    let dev = parse_device(&name).unwrap();
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/stsa");

    let cfg = Config::base_960h();
    let vb = network_weights(None, None, |vb| Wav2Vec2::load(&cfg, vb).map(drop), DType::F32, &dev).unwrap();
    let w2v = Wav2Vec2::load(&cfg, vb).unwrap();
    let window = lipsync::render::stsa::DEFAULT_WINDOW;
    let samples = window.samples();
    let x: Vec<f32> = (0..samples).map(|i| ((i as f32) * 0.01).sin()).collect();
    let x = Tensor::from_vec(x, (1, samples), &dev).unwrap();
    let mut g = c.benchmark_group(format!("wav2vec2_{name}"));
    g.sample_size(10);
    g.bench_function("window", |b| b.iter(|| sync(&dev, &black_box(w2v.forward(&x).unwrap()))));
    g.finish();

    let hg_cfg = heatmap_generator::Config::default();
    let vb = network_weights(None, None, |vb| HeatmapGenerator::load(&hg_cfg, vb).map(drop), DType::F32, &dev).unwrap();
    let hg = HeatmapGenerator::load(&hg_cfg, vb).unwrap();
    let fx = candle_core::safetensors::load(fixtures.join("heatmap_generator_detw.safetensors"), &dev).unwrap();
    let (w2vs, pose, refs) = (&fx["T_w2vs"], &fx["T_pose_heatmap"], &fx["Nl_whole_heatmap"]);
    let tokens = hg.reference_tokens(refs).unwrap();
    let pose5 = pose.squeeze(0).unwrap();
    let pose_emb = hg.embed_pose(&pose5).unwrap();
    let mut g = c.benchmark_group(format!("heatmap_generator_{name}"));
    g.sample_size(10);
    g.bench_function("window", |b| {
        b.iter(|| {
            // Per frame: the new frame's pose embedding, the five audio chunks, the transformer, 3 decoded.
            let new_pose = hg.embed_pose(&pose5.narrow(0, 4, 1).unwrap()).unwrap();
            let audio = hg.embed_audio(&w2vs.squeeze(0).unwrap()).unwrap();
            let out = hg.heatmaps(&tokens, &audio, &pose_emb, &pose5.narrow(0, 2, 3).unwrap(), 2..5).unwrap();
            sync(&dev, &black_box((out.sum_all().unwrap() + new_pose.sum_all().unwrap()).unwrap()))
        })
    });
    g.bench_function("full", |b| {
        b.iter(|| sync(&dev, &black_box(hg.forward(w2vs, pose, refs).unwrap().content_heatmap)))
    });
    g.finish();

    let vb = network_weights(None, None, |vb| FaceRenderer::load(vb).map(drop), DType::F32, &dev).unwrap();
    let fr = FaceRenderer::load(vb).unwrap();
    let fx = candle_core::safetensors::load(fixtures.join("face_renderer_detw_io.safetensors"), &Device::Cpu).unwrap();
    let input = |k: &str| to(&dev, &fx[k]);
    let (frame, driving, audio) = (
        input("T_frame_img").squeeze(1).unwrap(),
        input("T_driving_heatmap").squeeze(1).unwrap(),
        input("T_audio_w2v").squeeze(1).unwrap(),
    );
    let (ref_imgs, ref_heatmaps) = (input("ref_N_frame_img"), input("ref_N_frame_heatmap"));
    let cached = fr.references(&ref_imgs, &ref_heatmaps).unwrap();
    let mut g = c.benchmark_group(format!("face_renderer_{name}"));
    g.sample_size(10);
    g.bench_function("frame", |b| {
        b.iter(|| sync(&dev, &black_box(fr.render(&cached, &frame, &driving, &audio).unwrap())))
    });
    g.bench_function("references", |b| {
        b.iter(|| {
            let r = black_box(fr.references(&ref_imgs, &ref_heatmaps).unwrap());
            drop(r);
            sync(&dev, &frame)
        })
    });
    g.finish();
    drop((w2v, hg, fr, cached));

    // The whole renderer on a tracked photo.
    let golden = candle_core::safetensors::load(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/face/astronaut.golden.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    // The 512x512 photo scaled to 720x720 (nearest) in the middle of a grey 1280x720 frame.
    let rgb = golden["image_rgb_u8"].flatten_all().unwrap().to_vec1::<u8>().unwrap();
    let (w, h, x0) = (1280usize, 720usize, 280usize);
    let mut canvas = vec![128u8; w * h * 3];
    for y in 0..h {
        for x in 0..h {
            let (sx, sy) = (x * 512 / h, y * 512 / h);
            let d = (y * w + x0 + x) * 3;
            canvas[d..d + 3].copy_from_slice(&rgb[(sy * 512 + sx) * 3..(sy * 512 + sx) * 3 + 3]);
        }
    }
    let photo = VideoFrame::from_vec(PixelFormat::Rgb, w as u32, h as u32, canvas, 0).unwrap();
    let mut tracker = FaceTracker::new(&ModelSource::default_location(), &Device::Cpu, TrackerConfig::default())
        .expect("face models: run scripts/setup.sh");
    let face = tracker.track(&photo).unwrap().expect("a face");
    let mut config = StsaConfig::new(WeightSource::Detw);
    config.device = name.parse().unwrap();
    config.bank.enrolment = 0;
    let mut stsa = Stsa::new(config).unwrap();
    let voice: Vec<f32> = (0..stsa.window().samples()).map(|i| ((i as f32) * 0.05).sin() * 0.3).collect();
    let mut g = c.benchmark_group(format!("stsa_{name}"));
    g.sample_size(10);
    let mut k = 0u64;
    g.bench_function("frame", |b| {
        b.iter(|| {
            // Each iteration is the next frame of a stream: one new window frame.
            k += 1;
            let at = |j: u64| photo.with_pts((k + j) * 40_000_000, None);
            let frame = at(2);
            let context: Vec<Option<Neighbour>> =
                (0..5).map(|j| Some(Neighbour { pts: at(j).pts, face: Some(face.clone()) })).collect();
            let job =
                RenderJob { frame: &frame, audio: &voice, audio_missing: 0, face: Some(&face), context: &context };
            black_box(stsa.render(&job).unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
