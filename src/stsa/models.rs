//! Loading the three STSA networks for the `stsa` renderer: from a weights folder (the user's
//! `heatmap_weight.pth`, `face_weight.pth` and wav2vec2-base-960h checkpoint, or safetensors conversions)
//! or from the deterministic test weights, onto the chosen device. Every file is checked against what
//! its network reads before anything is built, so a missing or wrong file is an error naming it.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use super::detw;
use super::face_renderer::FaceRenderer;
use super::heatmap_generator::{self, HeatmapGenerator};
use super::wav2vec2::{self, Wav2Vec2};
use super::weights;
use crate::error::{Error, Result};

/// Where the weights come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WeightSource {
    /// A folder holding the three checkpoints (see [`WEIGHT_FILES`]).
    Folder(PathBuf),
    /// The deterministic test weights of `../shared/stsa/DETW.md`: the networks run, but draw noise.
    /// For tests and for timing without the real files.
    Detw,
}

/// The names looked for in a weights folder, per network, in order of preference.
pub const WEIGHT_FILES: [(&str, &[&str]); 3] = [
    ("heatmap generator", &["heatmap_weight.safetensors", "heatmap_weight.pth"]),
    ("face renderer", &["face_weight.safetensors", "face_weight.pth"]),
    (
        "wav2vec2-base-960h",
        &[
            "wav2vec2-base-960h.safetensors",
            "wav2vec2-base-960h/model.safetensors",
            "wav2vec2-base-960h/pytorch_model.bin",
            "model.safetensors",
            "pytorch_model.bin",
        ],
    ),
];

const WHERE: [&str; 3] = [
    "the STSA project's checkpoint link (github.com/SCAILab-USTC/STSA)",
    "the STSA project's checkpoint link (github.com/SCAILab-USTC/STSA)",
    "Hugging Face, facebook/wav2vec2-base-960h",
];

/// The file of network `i` of [`WEIGHT_FILES`] in `folder`, or an error saying what to put there.
fn find(folder: &Path, i: usize) -> Result<PathBuf> {
    let (what, names) = WEIGHT_FILES[i];
    if !folder.is_dir() {
        return Err(Error::Model(format!(
            "the STSA weights folder {} does not exist: create it and put heatmap_weight.pth, face_weight.pth \
             and wav2vec2-base-960h's pytorch_model.bin in it (models/README.md)",
            folder.display()
        )));
    }
    names.iter().map(|n| folder.join(n)).find(|p| p.is_file()).ok_or_else(|| {
        Error::Model(format!(
            "no {what} weights in {}: expected {} (from {}; see models/README.md)",
            folder.display(),
            names.join(" or "),
            WHERE[i]
        ))
    })
}

/// Parses a device name: `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(name: &str) -> Result<Device> {
    let ordinal = match name {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => 0,
        _ => name
            .strip_prefix("cuda:")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| Error::InvalidArgument(format!("unknown device `{name}`: use cpu, cuda or cuda:N")))?,
    };
    if !cfg!(feature = "cuda") {
        return Err(Error::InvalidArgument(format!(
            "device `{name}` needs lipsync built with CUDA (cargo build --release --features cuda); use cpu"
        )));
    }
    Device::new_cuda(ordinal).map_err(|e| Error::InvalidArgument(format!("device `{name}`: {e}")))
}

/// Parses a precision: `f32` (exact, the default), `f16` or `bf16` (half the memory; on a GPU, faster).
pub fn parse_dtype(name: &str) -> Result<DType> {
    match name {
        "f32" => Ok(DType::F32),
        "f16" => Ok(DType::F16),
        "bf16" => Ok(DType::BF16),
        _ => Err(Error::InvalidArgument(format!("unknown precision `{name}`: use f32, f16 or bf16"))),
    }
}

/// The weights one network reads, checked, on `device`: generated (`path` = `None`) or from a
/// checkpoint (with the tensors under `prefix.` when given).
pub fn network_weights(
    path: Option<&Path>,
    prefix: Option<&str>,
    load: impl Fn(VarBuilder) -> Result<()>,
    dtype: DType,
    device: &Device,
) -> Result<VarBuilder<'static>> {
    let expected = detw::keys_read_by(&load)?;
    let tensors = match path {
        None => detw::generate(&expected, &Device::Cpu)?,
        Some(path) => {
            let mut t = weights::load_checkpoint(path)?;
            if let Some(p) = prefix {
                t = weights::under_prefix(t, p);
            }
            weights::check(&t, &expected).into_result(&path.display().to_string())?;
            t
        }
    };
    Ok(VarBuilder::from_tensors(tensors, dtype, device))
}

/// The three networks, loaded on one device.
pub struct Models {
    pub wav2vec2: Wav2Vec2,
    pub generator: HeatmapGenerator,
    pub renderer: FaceRenderer,
    pub device: Device,
    /// The networks' weights and activations (samplers and norm statistics run in f32 whatever this is).
    pub dtype: DType,
}

impl Models {
    /// Loads the networks from `source` onto `device` in `dtype`. With a folder, every file is located
    /// first, so a missing one is reported before anything heavy is read.
    pub fn load(source: &WeightSource, device: &Device, dtype: DType) -> Result<Self> {
        let _span = tracing::info_span!("stsa_load").entered();
        let paths: [Option<PathBuf>; 3] = match source {
            WeightSource::Detw => [None, None, None],
            WeightSource::Folder(folder) => [Some(find(folder, 0)?), Some(find(folder, 1)?), Some(find(folder, 2)?)],
        };
        let hg = heatmap_generator::Config::default();
        let w2v = wav2vec2::Config::base_960h();
        let vb =
            network_weights(paths[0].as_deref(), None, |vb| HeatmapGenerator::load(&hg, vb).map(drop), dtype, device)?;
        let generator = HeatmapGenerator::load(&hg, vb)?;
        let vb = network_weights(paths[1].as_deref(), None, |vb| FaceRenderer::load(vb).map(drop), dtype, device)?;
        let renderer = FaceRenderer::load(vb)?;
        let vb = network_weights(
            paths[2].as_deref(),
            Some("wav2vec2"),
            |vb| Wav2Vec2::load(&w2v, vb).map(drop),
            dtype,
            device,
        )?;
        let wav2vec2 = Wav2Vec2::load(&w2v, vb)?;
        Ok(Models { wav2vec2, generator, renderer, device: device.clone(), dtype })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_named_with_where_to_get_it() {
        let dir = std::env::temp_dir().join(format!("lipsync-weights-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = Models::load(&WeightSource::Folder(dir.clone()), &Device::Cpu, DType::F32).err().expect("empty folder");
        let msg = e.to_string();
        assert!(msg.contains("heatmap_weight.pth") && msg.contains("SCAILab-USTC/STSA"), "{msg}");
        let e = Models::load(&WeightSource::Folder(dir.join("nope")), &Device::Cpu, DType::F32).err().unwrap();
        assert!(e.to_string().contains("does not exist"), "{e}");
        // A file that is not a checkpoint is refused by name.
        std::fs::write(dir.join("heatmap_weight.pth"), b"not a checkpoint").unwrap();
        let e = Models::load(&WeightSource::Folder(dir.clone()), &Device::Cpu, DType::F32).err().unwrap();
        assert!(e.to_string().contains("face_weight.pth"), "the face renderer's file is looked for first: {e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn devices_parse_and_cuda_needs_the_feature() {
        assert!(matches!(parse_device("cpu"), Ok(Device::Cpu)));
        assert!(parse_device("gpu").unwrap_err().to_string().contains("cpu, cuda or cuda:N"));
        assert_eq!(parse_dtype("bf16").unwrap(), DType::BF16);
        assert!(parse_dtype("f8").unwrap_err().to_string().contains("f32, f16 or bf16"));
        if !cfg!(feature = "cuda") {
            assert!(parse_device("cuda:0").unwrap_err().to_string().contains("--features cuda"));
        }
    }
}
