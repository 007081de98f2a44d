//! Runs one of STSA's networks on inputs from a safetensors file and writes its outputs under the
//! fixtures' names, with deterministic test weights (`detw`) or a checkpoint.
//!
//! `cargo run --release --example stsa_forward -- --network wav2vec2 --weights detw|PATH \
//!     --inputs IN.safetensors --output OUT.safetensors`
//!
//! wav2vec2 reads `input_values` (1, N) and writes `last_hidden_state`. The heatmap generator and the face
//! renderer are not ported yet (issue 6): asking for them is an error that says so.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use lipsync::stsa::wav2vec2::{Config, Wav2Vec2};
use lipsync::stsa::{detw, weights};
use lipsync::{Error, Result};

fn arg(args: &[String], name: &str) -> Result<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .ok_or_else(|| Error::InvalidArgument(format!("missing {name} (see the usage at the top of stsa_forward.rs)")))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (network, source) = (arg(&args, "--network")?, arg(&args, "--weights")?);
    let (inputs, output) = (PathBuf::from(arg(&args, "--inputs")?), PathBuf::from(arg(&args, "--output")?));
    let device = Device::Cpu;
    let inputs = candle_core::safetensors::load(&inputs, &device)?;
    let outputs: HashMap<String, Tensor> = match network.as_str() {
        "wav2vec2" => {
            let cfg = Config::base_960h();
            let expected = cfg.state_dict_shapes();
            let tensors = if source == "detw" {
                detw::generate(&expected, &device)?
            } else {
                let t = weights::under_prefix(weights::load_checkpoint(std::path::Path::new(&source))?, "wav2vec2");
                weights::check(&t, &expected).into_result(&source)?;
                t
            };
            let model = Wav2Vec2::load(&cfg, VarBuilder::from_tensors(tensors, DType::F32, &device))?;
            let x = inputs
                .get("input_values")
                .ok_or_else(|| Error::InvalidArgument("the inputs hold no `input_values` (1, N)".into()))?;
            HashMap::from([("last_hidden_state".to_string(), model.forward(x)?)])
        }
        "heatmap-generator" | "face-renderer" => {
            return Err(Error::InvalidArgument(format!(
                "{network}: not ported to candle yet (issue 6); only wav2vec2 runs"
            )));
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
