//! STSA's networks on the CPU, with deterministic weights (the speed does not depend on the values):
//! wav2vec2-base over the windows a streaming front end would re-run (1 s and 2.5 s of audio), the
//! heatmap generator on one T=5 window, and the face renderer on one frame with five references.

use std::hint::black_box;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use criterion::{Criterion, criterion_group, criterion_main};
use lipsync::stsa::detw;
use lipsync::stsa::face_renderer::FaceRenderer;
use lipsync::stsa::heatmap_generator::{self, HeatmapGenerator};
use lipsync::stsa::wav2vec2::{Config, Wav2Vec2};

fn bench(c: &mut Criterion) {
    let cfg = Config::base_960h();
    let weights = detw::generate(&cfg.state_dict_shapes(), &Device::Cpu).unwrap();
    let model = Wav2Vec2::load(&cfg, VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu)).unwrap();
    let mut g = c.benchmark_group("wav2vec2_cpu");
    g.sample_size(10);
    for samples in [16_000usize, 40_000] {
        let x: Vec<f32> = (0..samples).map(|i| ((i as f32) * 0.01).sin()).collect();
        let x = Tensor::from_vec(x, (1, samples), &Device::Cpu).unwrap();
        g.bench_function(format!("{}ms", samples / 16), |b| b.iter(|| black_box(model.forward(&x).unwrap())));
    }
    g.finish();

    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/stsa");
    let mut g = c.benchmark_group("stsa_cpu");
    g.sample_size(10);
    let cfg = heatmap_generator::Config::default();
    let load = |vb: VarBuilder| HeatmapGenerator::load(&cfg, vb).map(|_| ());
    let w = detw::generate(&detw::keys_read_by(load).unwrap(), &Device::Cpu).unwrap();
    let hg = HeatmapGenerator::load(&cfg, VarBuilder::from_tensors(w, DType::F32, &Device::Cpu)).unwrap();
    let fx = candle_core::safetensors::load(fixtures.join("heatmap_generator_detw.safetensors"), &Device::Cpu).unwrap();
    g.bench_function("heatmap_generator_window", |b| {
        b.iter(|| black_box(hg.forward(&fx["T_w2vs"], &fx["T_pose_heatmap"], &fx["Nl_whole_heatmap"]).unwrap()))
    });
    let w =
        detw::generate(&detw::keys_read_by(|vb| FaceRenderer::load(vb).map(|_| ())).unwrap(), &Device::Cpu).unwrap();
    let fr = FaceRenderer::load(VarBuilder::from_tensors(w, DType::F32, &Device::Cpu)).unwrap();
    let fx = candle_core::safetensors::load(fixtures.join("face_renderer_detw.safetensors"), &Device::Cpu).unwrap();
    g.bench_function("face_renderer_frame", |b| {
        b.iter(|| {
            black_box(
                fr.forward_traced(
                    &fx["T_frame_img"],
                    &fx["T_driving_heatmap"],
                    &fx["ref_N_frame_img"],
                    &fx["ref_N_frame_heatmap"],
                    &fx["T_audio_w2v"],
                    &mut |_, _| {},
                )
                .unwrap(),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
