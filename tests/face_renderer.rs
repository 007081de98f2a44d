//! STSA's face renderer in candle against the original (`../shared/fixtures/stsa/
//! face_renderer_detw.safetensors`, deterministic weights from `../shared/stsa/DETW.md`): the generated
//! face and every stored intermediate within 1e-3. (The AdaAT outputs differ most, about 5e-4: a
//! sampling position's f32 rounding, times the feature gradient; the face ends within 3e-5.)

mod common;

use common::{max_diff, shared};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use lipsync::stsa::detw;
use lipsync::stsa::face_renderer::FaceRenderer;

/// The renderer's keys without the VGG of the perceptual loss and the alias names (`adaAT.N`,
/// `appearance_conv_list.N`), which the renderer does not read.
fn keys() -> Vec<(String, Vec<usize>)> {
    let skip = |k: &str| k.starts_with("perceptual.") || k.contains(".adaAT.") || k.contains(".appearance_conv_list.");
    common::stsa_keys("Face_renderer").into_iter().filter(|(k, _)| !skip(k)).collect()
}

#[test]
fn matches_the_original_on_every_intermediate() {
    let fx =
        candle_core::safetensors::load(shared("fixtures/stsa/face_renderer_detw.safetensors"), &common::test_device())
            .unwrap();
    let keys = keys();
    assert!(keys.len() > 500, "{} keys", keys.len());
    let weights = detw::generate(&keys, &Device::Cpu).unwrap();
    let model = FaceRenderer::load(VarBuilder::from_tensors(weights, DType::F32, &common::test_device())).unwrap();
    let mut worst: Vec<(String, f32)> = Vec::new();
    let out = model
        .forward_traced(
            &fx["T_frame_img"],
            &fx["T_driving_heatmap"],
            &fx["ref_N_frame_img"],
            &fx["ref_N_frame_heatmap"],
            &fx["T_audio_w2v"],
            &mut |name, t| {
                let want = fx.get(name).unwrap_or_else(|| panic!("no fixture for {name}"));
                worst.push((name.to_string(), max_diff(t, want)));
            },
        )
        .unwrap();
    let face = max_diff(&out, &fx["out.generated_face"]);
    for (name, d) in &worst {
        eprintln!("{name}: {d:.3e}");
    }
    eprintln!("out.generated_face: {face:.3e}");
    assert_eq!(worst.len(), 30, "every stored intermediate compared");
    for (name, d) in &worst {
        assert!(*d <= 1e-3, "{name}: max |diff| {d}");
    }
    assert!(face <= 1e-3, "generated face: max |diff| {face}");
}
