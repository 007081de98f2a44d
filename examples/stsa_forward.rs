//! Runs one of STSA's networks on inputs from a safetensors file and writes its outputs under the
//! fixtures' names, with deterministic test weights (`detw`, ../shared/stsa/DETW.md) or a checkpoint.
//!
//! `cargo run --release --example stsa_forward -- --network heatmap-generator|face-renderer|wav2vec2 \
//!     --weights detw|PATH --inputs IN.safetensors --output OUT.safetensors`
//!
//! Inputs (extra tensors are ignored): heatmap generator `T_w2vs`, `T_pose_heatmap`, `Nl_whole_heatmap`;
//! face renderer `T_frame_img`, `T_driving_heatmap`, `ref_N_frame_img`, `ref_N_frame_heatmap`,
//! `T_audio_w2v`; wav2vec2 `input_values` (1, N). Outputs: `out.predict_content_heatmap`,
//! `out.predict_content_landmark`; `out.generated_face`; `last_hidden_state`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use lipsync::stsa::face_renderer::FaceRenderer;
use lipsync::stsa::heatmap_generator::{self, HeatmapGenerator};
use lipsync::stsa::models;
use lipsync::stsa::wav2vec2::{self, Wav2Vec2};
use lipsync::{Error, Result};

fn arg(args: &[String], name: &str) -> Result<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .ok_or_else(|| Error::InvalidArgument(format!("missing {name} (see the usage at the top of stsa_forward.rs)")))
}

/// The weights a network reads: generated (`detw`), or from a checkpoint checked against what the
/// network reads.
fn weights_for(
    source: &str,
    prefix: Option<&str>,
    load: impl Fn(VarBuilder) -> Result<()>,
) -> Result<VarBuilder<'static>> {
    let path = (source != "detw").then(|| Path::new(source));
    models::network_weights(path, prefix, load, DType::F32, &Device::Cpu)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (network, source) = (arg(&args, "--network")?, arg(&args, "--weights")?);
    let (inputs, output) = (PathBuf::from(arg(&args, "--inputs")?), PathBuf::from(arg(&args, "--output")?));
    let inputs = candle_core::safetensors::load(&inputs, &Device::Cpu)?;
    let input = |name: &str| -> Result<&Tensor> {
        inputs.get(name).ok_or_else(|| Error::InvalidArgument(format!("the inputs hold no `{name}`")))
    };
    let outputs: HashMap<String, Tensor> = match network.as_str() {
        "wav2vec2" => {
            let cfg = wav2vec2::Config::base_960h();
            let vb = weights_for(&source, Some("wav2vec2"), |vb| Wav2Vec2::load(&cfg, vb).map(|_| ()))?;
            let model = Wav2Vec2::load(&cfg, vb)?;
            HashMap::from([("last_hidden_state".to_string(), model.forward(input("input_values")?)?)])
        }
        "heatmap-generator" => {
            let cfg = heatmap_generator::Config::default();
            let vb = weights_for(&source, None, |vb| HeatmapGenerator::load(&cfg, vb).map(|_| ()))?;
            let model = HeatmapGenerator::load(&cfg, vb)?;
            let p = model.forward(input("T_w2vs")?, input("T_pose_heatmap")?, input("Nl_whole_heatmap")?)?;
            HashMap::from([
                ("out.predict_content_heatmap".to_string(), p.content_heatmap),
                ("out.predict_content_landmark".to_string(), p.content_landmark),
            ])
        }
        "face-renderer" => {
            let vb = weights_for(&source, None, |vb| FaceRenderer::load(vb).map(|_| ()))?;
            let model = FaceRenderer::load(vb)?;
            let face = model.forward(
                input("T_frame_img")?,
                input("T_driving_heatmap")?,
                input("ref_N_frame_img")?,
                input("ref_N_frame_heatmap")?,
                input("T_audio_w2v")?,
            )?;
            HashMap::from([("out.generated_face".to_string(), face)])
        }
        other => {
            return Err(Error::InvalidArgument(format!(
                "unknown network `{other}`: heatmap-generator, face-renderer or wav2vec2"
            )));
        }
    };
    candle_core::safetensors::save(&outputs, &output)?;
    eprintln!("wrote {} tensor(s) to {}", outputs.len(), output.display());
    Ok(())
}
