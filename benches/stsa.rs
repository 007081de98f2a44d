//! STSA per frame, with deterministic weights (the speed does not depend on the values), on the CPU or
//! on `LIPSYNC_BENCH_DEVICE` (`cuda:0` with `--features cuda`):
//! - `wav2vec2/window`: wav2vec2-base over the `stsa` renderer's default audio window (1.565 s);
//! - `heatmap_generator/window`: one T=5 window as the renderer runs it (cached reference tokens, three
//!   frames decoded), and `heatmap_generator/full` as the original (everything recomputed, five decoded);
//! - `face_renderer/frame`: one face with the references' work cached (the minimal form, ~183 GFLOP),
//!   `face_renderer/references` the part done once per reference set;
//! - `stsa/frame`: the whole renderer on a tracked face in a 1280x720 frame (everything above plus
//!   heatmaps, crops and the paste-back; tracking runs on its own thread and is not counted).
//!
//! It also prints the memory of the networks and of one and four streams beside them (they share the
//! networks), and, run on tools/cuda-counter (`scripts/count-device-ops.sh bench`), the device
//! operations, copies and waits of a frame.

use std::hint::black_box;

use candle_core::{DType, Device, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use lipsync::stsa::check::{Scene, SceneStream};
use lipsync::stsa::face_renderer::FaceRenderer;
use lipsync::stsa::heatmap_generator::{self, HeatmapGenerator};
use lipsync::stsa::models::{ComputeDevice, Models, Precision, WeightSource, network_weights, parse_device};
use lipsync::stsa::profile::{DeviceOps, memory_in_use};
use lipsync::stsa::wav2vec2::{Config, Wav2Vec2};

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
    let scene = Scene::load(&fixtures.join("../face/astronaut.golden.safetensors")).unwrap();
    // First, while nothing else is loaded: on the CPU the resident memory grows by what is loaded.
    memory(&scene, name.parse().unwrap());

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

    // The whole renderer on the 1280x720 scene (the astronaut photo with MediaPipe's landmarks).
    let device: ComputeDevice = name.parse().unwrap();
    device_operations(&scene, device);
    let mut stream = SceneStream::new(&scene, device, Precision::F32).unwrap();
    let mut g = c.benchmark_group(format!("stsa_{name}"));
    g.sample_size(10);
    // Each iteration is the next frame of a stream: one new window frame.
    g.bench_function("frame", |b| b.iter(|| black_box(stream.render_next().unwrap())));
    g.finish();
}

/// The memory the networks take, and one and four streams' state beside them (the streams share the
/// networks): resident memory on the CPU, the device's memory in use on a GPU. Each stream renders two
/// frames (the references encoded).
fn memory(scene: &Scene, device: ComputeDevice) {
    let dev = device.open().unwrap();
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let before = memory_in_use(&dev).unwrap();
    let models = Models::shared(&WeightSource::Detw, device, Precision::F32).unwrap();
    let with_models = memory_in_use(&dev).unwrap();
    let mut streams = Vec::new();
    let mut line = format!("stsa memory ({device}, f32): networks {:.0} MiB", mib(with_models - before));
    for n in [1, 4] {
        while streams.len() < n {
            let mut s = SceneStream::new(scene, device, Precision::F32).unwrap();
            s.render_next().unwrap();
            s.render_next().unwrap();
            streams.push(s);
        }
        let used = memory_in_use(&dev).unwrap().saturating_sub(with_models);
        line += &format!(", {n} stream{} +{:.0} MiB", if n > 1 { "s" } else { "" }, mib(used));
    }
    println!("{line}");
    drop((streams, models));
}

/// Device operations per frame (kernel launches, cuBLAS calls, copies, waits), when the bench runs on
/// tools/cuda-counter (`scripts/count-device-ops.sh bench`); a steady frame, after the bank's enrolment.
fn device_operations(scene: &Scene, device: ComputeDevice) {
    if DeviceOps::read().is_none() {
        println!("stsa device operations: not counted here (scripts/count-device-ops.sh bench counts them)");
        return;
    }
    for precision in [Precision::F32, Precision::F16, Precision::Bf16] {
        let mut stream = SceneStream::new(scene, device, precision).unwrap();
        for _ in 0..6 {
            stream.render_next().unwrap();
        }
        let before = DeviceOps::read().unwrap();
        stream.render_next().unwrap();
        let ops = DeviceOps::read().unwrap().since(&before);
        println!("stsa per frame ({precision}): {ops} (most uploads are candle's kernel parameters)");
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
