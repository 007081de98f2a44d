//! Loading the three STSA networks for the `stsa` renderer: from a weights folder (the user's
//! `heatmap_weight.pth`, `face_weight.pth` and wav2vec2-base-960h checkpoint, or safetensors conversions)
//! or from the deterministic test weights, onto the chosen device. Every file is checked against what
//! its network reads before anything is built, so a missing or wrong file is an error naming it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

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

/// Where STSA's networks run: `cpu`, `cuda` (the first GPU) or `cuda:N`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ComputeDevice {
    #[default]
    Cpu,
    Cuda(usize),
}

impl std::str::FromStr for ComputeDevice {
    type Err = Error;
    fn from_str(name: &str) -> Result<Self> {
        match name {
            "cpu" => Ok(ComputeDevice::Cpu),
            "cuda" => Ok(ComputeDevice::Cuda(0)),
            _ => name
                .strip_prefix("cuda:")
                .and_then(|n| n.parse::<usize>().ok())
                .map(ComputeDevice::Cuda)
                .ok_or_else(|| Error::InvalidArgument(format!("unknown device `{name}`: use cpu, cuda or cuda:N"))),
        }
    }
}

impl std::fmt::Display for ComputeDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ComputeDevice::Cpu => f.write_str("cpu"),
            ComputeDevice::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl ComputeDevice {
    /// Opens the device: a CUDA one needs lipsync built with the `cuda` feature, a driver and the GPU.
    pub fn open(self) -> Result<Device> {
        let ComputeDevice::Cuda(ordinal) = self else { return Ok(Device::Cpu) };
        if !cfg!(feature = "cuda") {
            return Err(Error::InvalidArgument(format!(
                "device `{self}` needs lipsync built with CUDA (cargo build --release --features cuda); use cpu"
            )));
        }
        let device = Device::new_cuda(ordinal).map_err(|e| Error::InvalidArgument(format!("device `{self}`: {e}")))?;
        without_blas_workspace(&device)?;
        Ok(device)
    }
}

/// Takes the workspace from the device's cuBLAS handle. Every thread rendering on the device (each on
/// its own CUDA stream) runs its matrix products through that one handle, and the handle's default
/// workspace is one buffer: two streams' split-K products would write their partial sums into it at
/// once. On an H200, four concurrent f32 streams rendered faces that differed from a lone stream's
/// (`stsa-check`). Without a workspace cuBLAS picks products that need none.
fn without_blas_workspace(device: &Device) -> Result<()> {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(d) = device {
        use candle_core::cuda_backend::cudarc::cublas::sys;
        let blas = d.cublas_handle();
        // SAFETY: the handle is alive (held by `blas`); a null workspace of 0 bytes is allowed.
        let status = unsafe { sys::cublasSetWorkspace_v2(*blas.handle(), std::ptr::null_mut(), 0) };
        if status != sys::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
            return Err(Error::InvalidArgument(format!("cuda: cuBLAS refused to drop its workspace ({status:?})")));
        }
    }
    let _ = device;
    Ok(())
}

/// Parses and opens a device: `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(name: &str) -> Result<Device> {
    name.parse::<ComputeDevice>()?.open()
}

/// The networks' precision: `f32` (exact, the default), `f16` or `bf16` (half the memory; on a GPU,
/// faster). Samplers, norm statistics and AdaAT's heads run in f32 whatever it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    #[default]
    F32,
    F16,
    Bf16,
}

impl Precision {
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::F16, Precision::Bf16];

    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::F16 => DType::F16,
            Precision::Bf16 => DType::BF16,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = Error;
    fn from_str(name: &str) -> Result<Self> {
        Precision::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| Error::InvalidArgument(format!("unknown precision `{name}`: use f32, f16 or bf16")))
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
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

/// What a set of loaded networks was loaded from and onto.
#[derive(Clone, PartialEq, Eq)]
struct Loaded {
    source: WeightSource,
    device: ComputeDevice,
    precision: Precision,
}

/// The networks loaded in this process and still in use, so that several streams (several elements
/// in a pipeline, one program serving several) share one copy per device.
static LOADED: parking_lot::Mutex<Vec<(Loaded, Weak<Models>)>> = parking_lot::Mutex::new(Vec::new());

impl Models {
    /// The networks from `source` on `device` in `precision`, loaded once per process: a stream that
    /// asks for networks another stream already holds shares them (they are read-only; every stream
    /// keeps its own state). They are freed when the last stream lets go.
    pub fn shared(source: &WeightSource, device: ComputeDevice, precision: Precision) -> Result<Arc<Models>> {
        let key = Loaded { source: source.clone(), device, precision };
        // Held while loading: a second stream asking for the same networks waits for them.
        let mut loaded = LOADED.lock();
        loaded.retain(|(_, m)| m.strong_count() > 0);
        if let Some(models) = loaded.iter().find(|(k, _)| *k == key).and_then(|(_, m)| m.upgrade()) {
            return Ok(models);
        }
        let models = Arc::new(Models::load(source, &device.open()?, precision.dtype())?);
        loaded.push((key, Arc::downgrade(&models)));
        Ok(models)
    }

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
        // The weights went up on this thread's stream; other threads' streams must find them there.
        device.synchronize()?;
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
        assert_eq!("cuda".parse::<ComputeDevice>().unwrap(), ComputeDevice::Cuda(0));
        assert_eq!("cuda:3".parse::<ComputeDevice>().unwrap().to_string(), "cuda:3");
        assert!(parse_device("gpu").unwrap_err().to_string().contains("cpu, cuda or cuda:N"));
        assert_eq!("bf16".parse::<Precision>().unwrap().dtype(), DType::BF16);
        assert!("f8".parse::<Precision>().unwrap_err().to_string().contains("f32, f16 or bf16"));
        if !cfg!(feature = "cuda") {
            assert!(parse_device("cuda:0").unwrap_err().to_string().contains("--features cuda"));
        }
    }

    #[test]
    fn streams_share_the_networks_while_any_holds_them() {
        // Half precisions: no other test of this process loads them, so nothing else holds these.
        let load = |p| Models::shared(&WeightSource::Detw, ComputeDevice::Cpu, p).unwrap();
        let (a, b) = (load(Precision::F16), load(Precision::F16));
        assert!(Arc::ptr_eq(&a, &b), "the second stream gets the first one's networks");
        let other = load(Precision::Bf16);
        assert!(!Arc::ptr_eq(&a, &other), "another precision is another copy");
        let weak = Arc::downgrade(&a);
        drop((a, b));
        assert!(weak.upgrade().is_none(), "freed with the last stream");
        assert!(Arc::ptr_eq(&other, &load(Precision::Bf16)), "the other copy is still shared");
    }
}
