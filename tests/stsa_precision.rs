//! STSA's networks in f16 against the original's f32 outputs (the fixtures, DETW weights): the error
//! half precision costs, printed (`cargo test --release --test stsa_precision -- --nocapture`), and
//! bounded so a precision that breaks a network (an overflow, a dtype mix-up) fails. Samplers, norm
//! statistics and AdaAT's heads run in f32 whatever the precision. bf16 runs only with
//! `LIPSYNC_TEST_DEVICE=cuda:0`: candle's CPU backend has no bf16 matmul.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Tensor};
use lipsync::stsa::face_renderer::FaceRenderer;
use lipsync::stsa::heatmap_generator::{self, HeatmapGenerator};
use lipsync::stsa::models::network_weights;
use lipsync::stsa::wav2vec2::{self, Wav2Vec2};

fn fixture(path: &str) -> HashMap<String, Tensor> {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "../shared/fixtures", path].iter().collect();
    candle_core::safetensors::load(path, &common::test_device()).unwrap()
}

/// Max |diff| after converting `got` to f32, and the reference's largest magnitude.
fn error(got: &Tensor, want: &Tensor) -> (f32, f32) {
    let got = got.to_dtype(DType::F32).unwrap().to_device(want.device()).unwrap();
    let max = |t: &Tensor| t.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
    (max(&(got - want).unwrap()), max(want))
}

fn half(t: &Tensor, dtype: DType) -> Tensor {
    t.to_dtype(dtype).unwrap()
}

/// f16 everywhere; bf16 where the device has a bf16 matmul (not candle's CPU backend).
fn precisions() -> Vec<DType> {
    if common::test_device().is_cpu() { vec![DType::F16] } else { vec![DType::F16, DType::BF16] }
}

#[test]
fn heatmap_generator_in_half_precision() {
    let fx = fixture("stsa/heatmap_generator_detw.safetensors");
    let cfg = heatmap_generator::Config::default();
    for dtype in precisions() {
        let vb =
            network_weights(None, None, |vb| HeatmapGenerator::load(&cfg, vb).map(drop), dtype, &common::test_device())
                .unwrap();
        let model = HeatmapGenerator::load(&cfg, vb).unwrap();
        let out = model
            .forward(
                &half(&fx["T_w2vs"], dtype),
                &half(&fx["T_pose_heatmap"], dtype),
                &half(&fx["Nl_whole_heatmap"], dtype),
            )
            .unwrap();
        let (e, scale) = error(&out.content_heatmap, &fx["out.predict_content_heatmap"]);
        eprintln!("heatmap generator {dtype:?}: heatmaps max |diff| {e:.3e} (values up to {scale:.2})");
        assert!(e < 0.1 * scale.max(1.0), "{dtype:?}: {e}");
    }
}

#[test]
fn wav2vec2_in_half_precision() {
    let fx = fixture("wav2vec2/wav2vec2_base_detw.safetensors");
    let cfg = wav2vec2::Config::base_960h();
    for dtype in precisions() {
        let vb = network_weights(None, None, |vb| Wav2Vec2::load(&cfg, vb).map(drop), dtype, &common::test_device())
            .unwrap();
        let model = Wav2Vec2::load(&cfg, vb).unwrap();
        let out = model.forward(&half(&fx["n16000.input_values"], dtype)).unwrap();
        let (e, scale) = error(&out, &fx["n16000.last_hidden_state"]);
        eprintln!("wav2vec2 {dtype:?}: last_hidden_state max |diff| {e:.3e} (values up to {scale:.2})");
        assert!(e < 0.1 * scale.max(1.0), "{dtype:?}: {e}");
    }
}

#[test]
fn face_renderer_in_half_precision() {
    let fx = fixture("stsa/face_renderer_detw_io.safetensors");
    for dtype in precisions() {
        let vb =
            network_weights(None, None, |vb| FaceRenderer::load(vb).map(drop), dtype, &common::test_device()).unwrap();
        let model = FaceRenderer::load(vb).unwrap();
        let input = |k: &str| half(&fx[k], dtype);
        let refs = model.references(&input("ref_N_frame_img"), &input("ref_N_frame_heatmap")).unwrap();
        let face = model
            .render(
                &refs,
                &input("T_frame_img").squeeze(1).unwrap(),
                &input("T_driving_heatmap").squeeze(1).unwrap(),
                &input("T_audio_w2v").squeeze(1).unwrap(),
            )
            .unwrap();
        let face = face.unsqueeze(2).unwrap();
        let (e, _) = error(&face, &fx["out.generated_face"]);
        let face32 = face.to_dtype(DType::F32).unwrap();
        let mean = (face32 - &fx["out.generated_face"]).unwrap().abs().unwrap();
        let mean = mean.mean_all().unwrap().to_scalar::<f32>().unwrap();
        eprintln!(
            "face renderer {dtype:?}: generated face max |diff| {e:.3e} ({:.1} of 255), mean {mean:.1e}",
            e * 255.0
        );
        assert!(e < 0.1, "{dtype:?}: {e}");
    }
}
