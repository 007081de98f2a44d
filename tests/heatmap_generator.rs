//! STSA's heatmap generator in candle against the original (`../shared/fixtures/stsa/
//! heatmap_generator_detw.safetensors`, deterministic weights from `../shared/stsa/DETW.md`): every
//! stored intermediate and both outputs within 1e-4.

mod common;

use common::{max_diff, shared};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use lipsync::stsa::detw;
use lipsync::stsa::heatmap_generator::{Config, HeatmapGenerator, positional_table};

fn keys() -> Vec<(String, Vec<usize>)> {
    common::stsa_keys("Heatmap_generator")
}

#[test]
fn matches_the_original_on_every_intermediate() {
    let fx = candle_core::safetensors::load(
        shared("fixtures/stsa/heatmap_generator_detw.safetensors"),
        &common::test_device(),
    )
    .unwrap();
    let keys = keys();
    assert_eq!(keys.len(), 686);
    let weights = detw::generate(&keys, &Device::Cpu).unwrap();
    assert!(max_diff(&positional_table(16, 512, &Device::Cpu).unwrap(), &fx["pe_first16"]) < 1e-6);
    let model = HeatmapGenerator::load(
        &Config::default(),
        VarBuilder::from_tensors(weights, DType::F32, &common::test_device()),
    )
    .unwrap();
    // Stage by stage, each against the original's intermediate of the same name, then the whole forward.
    let mut worst: Vec<(String, f32)> = Vec::new();
    let mut check = |name: &str, t: &Tensor| {
        let want = fx.get(name).unwrap_or_else(|| panic!("no fixture for {name}"));
        worst.push((name.to_string(), max_diff(t, want)));
    };
    let (b, t, c, w) = fx["T_w2vs"].dims4().unwrap();
    let (nl, d) = (fx["Nl_whole_heatmap"].dim(1).unwrap(), 512);
    let pose = fx["T_pose_heatmap"].reshape((b * t, 1, 128, 128)).unwrap();
    let mel = model.encode_audio(&fx["T_w2vs"].reshape((b * t, c, w)).unwrap()).unwrap();
    check("mel_encoder#call0", &mel);
    let pose_code = model.encode_pose(&pose).unwrap();
    check("pose_encoder#call0", &pose_code);
    let ref_code = model.encode_references(&fx["Nl_whole_heatmap"]).unwrap();
    check("ref_encoder#call0", &ref_code);
    let normed: Vec<Tensor> = [&mel, &pose_code, &ref_code].iter().map(|e| model.normalise(e).unwrap()).collect();
    for (i, n) in normed.iter().enumerate() {
        check(&format!("Norm#call{i}"), n);
    }
    let x =
        model.transformer(&model.reference_tokens(&fx["Nl_whole_heatmap"]).unwrap(), &normed[0], &normed[1]).unwrap();
    check("fusion_transformer#call0", &x);
    let lip_emb = x.narrow(1, nl, t).unwrap().reshape((b * t, d, 1, 1)).unwrap();
    let jaw_emb = x.narrow(1, nl + t, t).unwrap().reshape((b * t, d, 1, 1)).unwrap();
    let (lip, jaw) = model.decode(&lip_emb, &jaw_emb, &pose).unwrap();
    check("heatmap_decoder#call0.0", &lip);
    check("heatmap_decoder#call0.1", &jaw);
    let (lip_code, jaw_code) = model.landmark_codes(&lip, &jaw).unwrap();
    check("lip_encoder#call0", &lip_code);
    check("jaw_encoder#call0", &jaw_code);
    let out = model.forward(&fx["T_w2vs"], &fx["T_pose_heatmap"], &fx["Nl_whole_heatmap"]).unwrap();
    worst.push((
        "out.predict_content_heatmap".into(),
        max_diff(&out.content_heatmap, &fx["out.predict_content_heatmap"]),
    ));
    worst.push((
        "out.predict_content_landmark".into(),
        max_diff(&out.content_landmark, &fx["out.predict_content_landmark"]),
    ));
    eprintln!("{worst:?}");
    assert_eq!(worst.len(), 13, "11 intermediates and 2 outputs");
    for (name, d) in &worst {
        assert!(*d <= 1e-4, "{name}: max |diff| {d}");
    }
}

/// The streaming form (reference tokens cached, per-frame embeddings, only some frames decoded, no
/// landmark heads) gives the same heatmaps as the whole forward.
#[test]
fn the_minimal_form_decodes_the_same_heatmaps() {
    let fx = candle_core::safetensors::load(
        shared("fixtures/stsa/heatmap_generator_detw.safetensors"),
        &common::test_device(),
    )
    .unwrap();
    let weights = detw::generate(&keys(), &Device::Cpu).unwrap();
    let model = HeatmapGenerator::load(
        &Config::default(),
        VarBuilder::from_tensors(weights, DType::F32, &common::test_device()),
    )
    .unwrap();
    let refs = model.reference_tokens(&fx["Nl_whole_heatmap"]).unwrap();
    let pose = fx["T_pose_heatmap"].squeeze(0).unwrap();
    let w2v = fx["T_w2vs"].squeeze(0).unwrap();
    // Embeddings one frame at a time, as a sliding window computes them.
    let one = |f: &dyn Fn(&Tensor) -> lipsync::Result<Tensor>, x: &Tensor| {
        let rows: Vec<Tensor> = (0..5).map(|i| f(&x.narrow(0, i, 1).unwrap()).unwrap()).collect();
        Tensor::cat(&rows, 0).unwrap()
    };
    let audio = one(&|x| model.embed_audio(x), &w2v);
    let pose_emb = one(&|x| model.embed_pose(x), &pose);
    let want = &fx["out.predict_content_heatmap"];
    for decode in [2..3, 2..5, 0..5] {
        let maps = pose.narrow(0, decode.start, decode.len()).unwrap();
        let got = model.heatmaps(&refs, &audio, &pose_emb, &maps, decode.clone()).unwrap();
        let d = max_diff(&got, &want.narrow(0, decode.start, decode.len()).unwrap());
        assert!(d <= 1e-4, "frames {decode:?}: max |diff| {d}");
    }
}

#[test]
fn the_keys_the_model_reads_are_the_checkpoints_with_the_same_detw_rules() {
    let all = keys();
    let read = detw::keys_read_by(|vb| HeatmapGenerator::load(&Config::default(), vb).map(|_| ())).unwrap();
    let (full, mine) = (detw::Rules::new(&all), detw::Rules::new(&read));
    let shapes: std::collections::HashMap<_, _> = all.iter().cloned().collect();
    for (k, s) in &read {
        assert_eq!(shapes.get(k), Some(s), "{k}: not in the checkpoint with this shape");
        assert_eq!(mine.rule(k), full.rule(k), "{k}");
    }
    // Everything but the unused message_j2l branch, the pe buffers and BatchNorm's batch counters.
    let unread: Vec<&String> = all
        .iter()
        .map(|(k, _)| k)
        .filter(|k| !read.iter().any(|(r, _)| r == *k))
        .filter(|k| !k.contains("message_j2l") && !k.ends_with(".pe") && !k.ends_with("num_batches_tracked"))
        .collect();
    assert!(unread.is_empty(), "{unread:?}");
}
