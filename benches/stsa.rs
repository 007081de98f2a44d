//! STSA's networks on the CPU (issue 6; so far wav2vec2-base): the time to compute audio features over
//! the windows a streaming front end would re-run (1 s and 2.5 s of audio), with deterministic weights
//! (the speed does not depend on the values).

use std::hint::black_box;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use criterion::{Criterion, criterion_group, criterion_main};
use lipsync::stsa::detw;
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
}

criterion_group!(benches, bench);
criterion_main!(benches);
