//! STSA's face renderer in candle against the original (`../shared/fixtures/stsa/
//! face_renderer_detw.safetensors`, deterministic weights from `../shared/stsa/DETW.md`): the generated
//! face and every stored intermediate within 1e-3. (The AdaAT outputs differ most, about 5e-4: a
//! sampling position's f32 rounding, times the feature gradient; the face ends within 3e-5.)

mod common;

use common::{max_diff, shared};

use candle_core::{DType, Device, Tensor};
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
    // Stage by stage, each against the original's intermediate of the same name, then the whole forward.
    let mut worst: Vec<(String, f32)> = Vec::new();
    let mut check = |name: &str, t: &Tensor| {
        let want = fx.get(name).unwrap_or_else(|| panic!("no fixture for {name}"));
        worst.push((name.to_string(), max_diff(t, want)));
    };
    let (ref_imgs, ref_heatmaps) = (&fx["ref_N_frame_img"], &fx["ref_N_frame_heatmap"]);
    for (i, f) in model.encode_reference_images(ref_imgs).unwrap().iter().enumerate() {
        check(&format!("ref_imgs_encoder#call0.{i}"), f);
    }
    check("heatmap_encoder_ref#call0", &model.encode_reference_heatmaps(ref_heatmaps).unwrap());
    let refs = model.references(ref_imgs, ref_heatmaps).unwrap();
    let driving = fx["T_driving_heatmap"].squeeze(1).unwrap();
    let driving_code = model.encode_driving(&driving).unwrap();
    check("heatmap_encoder_tar#call0", &driving_code);
    let audio = model.encode_audio(&fx["T_audio_w2v"].squeeze(1).unwrap()).unwrap();
    check("audio_encoder#call0", &audio.code);
    let alignment = model.align(&refs, &driving_code).unwrap();
    check("spatial_module.alignment_encoder#call0", &alignment);
    let adaat = model.adaat(&refs, &audio, &alignment).unwrap();
    for (x, size) in adaat.iter().zip([128, 64, 32]) {
        check(&format!("spatial_module.adaAT_{size}#call0"), x);
    }
    let spatial = model.spatial(adaat).unwrap();
    for (i, x) in spatial.iter().enumerate() {
        check(&format!("spatial_module#call0.{i}"), x);
    }
    let (flow, weight) = model.temporal_flow(&refs, &driving, &audio).unwrap();
    for n in 0..flow.dim(0).unwrap() {
        check(&format!("temporal_module.conv_4#call{n}"), &flow.narrow(0, n, 1).unwrap());
        check(&format!("temporal_module.conv_5#call{n}"), &weight.narrow(0, n, 1).unwrap());
    }
    let temporal = model.temporal(&refs, &flow, &weight).unwrap();
    for (x, name) in temporal.iter().zip(["0.0.0", "0.0.1", "0.0.2", "0.1"]) {
        check(&format!("temporal_module#call{name}"), x);
    }
    for (x, size) in model.fuse(&spatial, &temporal).unwrap().iter().zip([128, 64, 32]) {
        check(&format!("fuse_{size}#call0"), x);
    }
    let out = model
        .forward(&fx["T_frame_img"], &fx["T_driving_heatmap"], ref_imgs, ref_heatmaps, &fx["T_audio_w2v"])
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
