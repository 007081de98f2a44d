//! The viseme classifier: a small multilayer perceptron from the features of the slices around one slice
//! ([`CONTEXT`]) to the probability of each [`Viseme`]. Its weights (`models/visemes.safetensors`,
//! made by `examples/train_visemes.rs`) are built into the library.

use std::sync::OnceLock;

use candle_core::{DType, Device};

use super::features::FEATURES;
use super::phonemes::Viseme;
use crate::error::{Error, Result};

/// The slices the classifier reads, relative to the one it classifies (10 ms steps). Its furthest
/// look-ahead is 50 ms past the slice's centre, plus half a slice.
pub const CONTEXT: [isize; 11] = [-12, -8, -5, -3, -2, -1, 0, 1, 2, 3, 5];
/// The classifier's input size.
pub const INPUTS: usize = CONTEXT.len() * FEATURES;
/// How far past a slice's centre the classifier hears (ns): its last context slice's end.
pub const LOOK_AHEAD_NS: u64 = 50_000_000 + 12_500_000;

/// The model built into the library.
static EMBEDDED: &[u8] = include_bytes!("../../models/visemes.safetensors");

struct Dense {
    inputs: usize,
    weight: Vec<f32>,
    bias: Vec<f32>,
}

/// Activations of [`VisemeModel::probabilities`], kept by the caller from one call to the next.
#[derive(Debug, Default)]
pub struct Scratch([Vec<f32>; 2]);

/// The classifier's weights.
pub struct VisemeModel {
    mean: Vec<f32>,
    scale: Vec<f32>,
    layers: Vec<Dense>,
}

impl VisemeModel {
    /// The model shipped with the library.
    pub fn embedded() -> &'static VisemeModel {
        static MODEL: OnceLock<VisemeModel> = OnceLock::new();
        MODEL.get_or_init(|| VisemeModel::from_safetensors(EMBEDDED).expect("the embedded viseme model loads"))
    }

    /// A model from safetensors bytes: `input.mean` and `input.scale` (standardisation of the inputs),
    /// `context` (must equal [`CONTEXT`]), then `layers.N.weight` (out x in) and `layers.N.bias`, ReLU
    /// between layers, the last one's outputs the [`Viseme`]s' logits.
    pub fn from_safetensors(bytes: &[u8]) -> Result<VisemeModel> {
        let tensors = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)?;
        let get = |name: &str| -> Result<Vec<f32>> {
            let t =
                tensors.get(name).ok_or_else(|| Error::InvalidArgument(format!("viseme model: no tensor {name}")))?;
            Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
        };
        let context: Vec<isize> = get("context")?.iter().map(|&c| c as isize).collect();
        if context != CONTEXT {
            return Err(Error::InvalidArgument(format!(
                "viseme model: context {context:?}, this build reads {CONTEXT:?}"
            )));
        }
        let (mean, scale) = (get("input.mean")?, get("input.scale")?);
        let mut layers = Vec::new();
        let mut inputs = INPUTS;
        while tensors.contains_key(&format!("layers.{}.weight", layers.len())) {
            let n = layers.len();
            let (weight, bias) = (get(&format!("layers.{n}.weight"))?, get(&format!("layers.{n}.bias"))?);
            if bias.is_empty() || weight.len() != bias.len() * inputs {
                return Err(Error::InvalidArgument(format!("viseme model: layer {n} does not take {inputs} inputs")));
            }
            layers.push(Dense { inputs, weight, bias });
            inputs = layers[n].bias.len();
        }
        if mean.len() != INPUTS || scale.len() != INPUTS || layers.is_empty() || inputs != Viseme::COUNT {
            return Err(Error::InvalidArgument(format!(
                "viseme model: expected {INPUTS} inputs and {} outputs",
                Viseme::COUNT
            )));
        }
        Ok(VisemeModel { mean, scale, layers })
    }

    /// The probability of each viseme given the classifier's input (the [`CONTEXT`] slices' features,
    /// in order). `scratch` holds the layers' activations between calls, so a stream allocates nothing.
    pub fn probabilities(&self, input: &[f32; INPUTS], scratch: &mut Scratch) -> [f32; Viseme::COUNT] {
        let [x, y] = &mut scratch.0;
        x.clear();
        x.extend(input.iter().zip(self.mean.iter().zip(&self.scale)).map(|(v, (m, s))| (v - m) * s));
        for (i, layer) in self.layers.iter().enumerate() {
            let last = i + 1 == self.layers.len();
            y.clear();
            y.extend(layer.weight.chunks_exact(layer.inputs).zip(&layer.bias).map(|(row, b)| {
                let v = row.iter().zip(x.iter()).map(|(w, v)| w * v).sum::<f32>() + b;
                if last { v } else { v.max(0.0) }
            }));
            std::mem::swap(x, y);
        }
        let max = x.iter().copied().fold(f32::MIN, f32::max);
        let mut p = [0.0f32; Viseme::COUNT];
        let mut sum = 0.0;
        for (p, l) in p.iter_mut().zip(x.iter()) {
            *p = (l - max).exp();
            sum += *p;
        }
        p.map(|v| v / sum)
    }
}
