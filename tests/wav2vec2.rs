//! wav2vec2-base in candle against transformers' `Wav2Vec2Model` with the same deterministic weights
//! (`../shared/fixtures/wav2vec2/wav2vec2_base_detw.safetensors`, see `../shared/stsa/DETW.md`): every
//! stored intermediate and the output within 1e-4.

mod common;

use common::max_diff;

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use lipsync::stsa::detw::{self, Rule};
use lipsync::stsa::wav2vec2::{Config, Wav2Vec2, normalise};

fn fixture() -> (HashMap<String, Tensor>, String) {
    let path: PathBuf =
        [env!("CARGO_MANIFEST_DIR"), "../shared/fixtures/wav2vec2/wav2vec2_base_detw.safetensors"].iter().collect();
    let bytes = std::fs::read(&path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let keys = meta.metadata().as_ref().unwrap()["state_dict_keys"].clone();
    (candle_core::safetensors::load(&path, &Device::Cpu).unwrap(), keys)
}

#[test]
fn keys_shapes_and_rules_are_the_fixtures() {
    let (_, listed) = fixture();
    let ours = Config::base_960h().state_dict_shapes();
    let rules = detw::Rules::new(&ours);
    // The metadata is a JSON list of [key, shape, [base, amp]]; compared as text, entry by entry.
    let listed: Vec<&str> = listed.trim_matches(|c| c == '[' || c == ']').split("], [\"").collect();
    assert_eq!(listed.len(), ours.len(), "211 keys");
    for ((key, shape), entry) in ours.iter().zip(&listed) {
        assert!(entry.trim_start_matches('"').starts_with(&format!("{key}\"")), "{key} vs {entry}");
        let dims = shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ");
        assert!(entry.contains(&format!("[{dims}]")), "{key}: shape {dims} vs {entry}");
        let Rule::Uniform { base, amp } = rules.rule(key) else { panic!("{key} is generated") };
        assert!(entry.contains(&format!("[{base:?}, {amp:?}")), "{key}: rule ({base}, {amp}) vs {entry}");
    }
}

#[test]
fn matches_transformers_on_one_and_two_and_a_half_seconds() {
    let (fx, _) = fixture();
    let cfg = Config::base_960h();
    let weights = detw::generate(&cfg.state_dict_shapes(), &Device::Cpu).unwrap();
    // The weight norm's parts, as the fixture checks them.
    let g = &weights["encoder.pos_conv_embed.conv.weight_g"];
    assert_eq!(max_diff(g, &fx["check.pos_conv.weight_g"]), 0.0);
    let v = &weights["encoder.pos_conv_embed.conv.weight_v"];
    let v = v.to_dtype(DType::F64).unwrap();
    let norm = v.sqr().unwrap().sum_keepdim(0).unwrap().sum_keepdim(1).unwrap().sqrt().unwrap();
    let norm = norm.flatten_all().unwrap().to_dtype(DType::F32).unwrap();
    let d = max_diff(&norm, &fx["check.pos_conv.v_norm_per_k"]);
    // torch sums the 36864 squares in f32: about 5e-6 relative off the exact norm (~2.45) we compute.
    assert!(d < 3e-5, "norm per tap: {d}");
    let dev = common::test_device();
    let model = Wav2Vec2::load(&cfg, VarBuilder::from_tensors(weights, DType::F32, &dev)).unwrap();
    for clip in ["n16000", "n40000"] {
        let raw = fx[&format!("{clip}.input_raw")].to_vec1::<f32>().unwrap();
        let input = Tensor::from_vec(normalise(&raw), (1, raw.len()), &dev).unwrap();
        assert!(max_diff(&input, &fx[&format!("{clip}.input_values")]) < 1e-5, "{clip}: normalisation");
        // Stage by stage, each against the original's intermediate of the same name.
        let mut worst: Vec<(String, f32)> = Vec::new();
        let mut check = |name: &str, t: &Tensor| {
            if let Some(want) = fx.get(&format!("{clip}.{name}")) {
                worst.push((name.to_string(), max_diff(t, want)));
            }
        };
        let features = model.extract_features(&input).unwrap();
        check("feature_extractor#call0", &features);
        let (projected, normed) = model.project(&features).unwrap();
        check("feature_projection#call0.0", &projected);
        check("feature_projection#call0.1", &normed);
        check("encoder.pos_conv_embed#call0", &model.positions(&projected).unwrap());
        let mut h = model.encoder_input(&projected).unwrap();
        check("encoder.layer_norm#call0", &h);
        for i in 0..model.layer_count() {
            h = model.encoder_layer(i, &h).unwrap();
            check(&format!("encoder.layers.{i}#call0"), &h);
        }
        let out = model.forward(&input).unwrap();
        worst.push(("last_hidden_state".into(), max_diff(&out, &fx[&format!("{clip}.last_hidden_state")])));
        eprintln!("{clip}: {worst:?}");
        assert!(worst.len() >= 7, "{clip}: intermediates compared");
        for (name, d) in &worst {
            assert!(*d <= 1e-4, "{clip} {name}: max |diff| {d}");
        }
    }
}

/// Streaming features against whole-clip ones on real speech (`speech_16k.wav`, 6.2 s), with the
/// deterministic weights: the error relative to the features' own variation over time, after the first
/// layer and at the output, for three window sizes. Prints the figures (`-- --nocapture`). With random
/// weights the output barely varies over time (DETW.md section 8), so only the layer-0 figure says much;
/// the real weights' drift can only be measured with them.
#[test]
fn streaming_features_approach_the_whole_clip_ones_as_the_window_grows() {
    use lipsync::stsa::wav2vec2::Streaming;
    let cfg = Config::base_960h();
    let weights = detw::generate(&cfg.state_dict_shapes(), &Device::Cpu).unwrap();
    let model = Wav2Vec2::load(&cfg, VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu)).unwrap();
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "../shared/media/speech_16k.wav"].iter().collect();
    let audio = lipsync::io::decode_audio(&path).unwrap();
    let x = Tensor::from_vec(normalise(&audio), (1, audio.len()), &Device::Cpu).unwrap();
    let whole = model.forward(&x).unwrap().squeeze(0).unwrap();
    let layer0 = model.forward_to(&x, 1).unwrap().squeeze(0).unwrap();
    let rows = whole.dim(0).unwrap();
    // Relative error: |stream - whole| over the spread of whole's rows around their mean.
    let relative = |stream: &Tensor, whole: &Tensor| -> f32 {
        let spread = whole.broadcast_sub(&whole.mean_keepdim(0).unwrap()).unwrap().sqr().unwrap().mean_all().unwrap();
        let err = (stream - whole).unwrap().sqr().unwrap().mean_all().unwrap();
        (err.to_scalar::<f32>().unwrap() / spread.to_scalar::<f32>().unwrap()).sqrt()
    };
    let mut errors = Vec::new();
    // The middle one is the `stsa` renderer's default.
    for (history_ms, lookahead_ms) in [(500, 200), (1000, 200), (2000, 500)] {
        let s = Streaming { history: history_ms * 16, lookahead: lookahead_ms * 16 };
        let (mut out0, mut out) = (Vec::new(), Vec::new());
        // Blocks of 10 rows (5 video frames), as a live front end would re-run the network.
        for r0 in (0..rows).step_by(10) {
            let r = r0..(r0 + 10).min(rows);
            let (o, l0) = s.rows(&model, &audio, r, Some(0)).unwrap();
            out.push(o);
            out0.push(l0.unwrap());
        }
        let (s0, s) = (Tensor::cat(&out0, 0).unwrap(), Tensor::cat(&out, 0).unwrap());
        let (e0, e) = (relative(&s0, &layer0), relative(&s, &whole));
        eprintln!(
            "history {history_ms} ms, look-ahead {lookahead_ms} ms: relative error after layer 0 {e0:.3}, output {e:.3}"
        );
        errors.push(e0);
    }
    assert!(errors[2] < errors[1] && errors[1] < errors[0], "a longer window is closer: {errors:?}");
}
