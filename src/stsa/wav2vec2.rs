//! wav2vec2-base (the facebook/wav2vec2-base-960h architecture) in candle: the audio features STSA's
//! heatmap generator reads. Module paths mirror the Hugging Face `Wav2Vec2Model` state_dict (the CTC
//! checkpoint's keys carry a `wav2vec2.` prefix: load with `vb.pp("wav2vec2")`).
//!
//! Differences from candle-transformers' wav2vec2 that matter for this checkpoint (SPEC.md 1.2): the
//! encoder LayerNorm comes *before* the layers (`do_stable_layer_norm = false`), the positional
//! convolution's weight norm is folded here from `weight_g`/`weight_v` (or transformers 5's
//! `parametrizations.weight.original0/1`), and GELU is the exact (erf) one.

use candle_core::{D, DType, Module, Tensor};
use candle_nn::{Conv1d, Conv1dConfig, LayerNorm, Linear, VarBuilder};

use super::layers::{packed_attention, scaled_rows, stacked_linear};
use super::ops::RowNorm;
use crate::error::Result;

/// The architecture's sizes.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub conv_dim: Vec<usize>,
    pub conv_kernel: Vec<usize>,
    pub conv_stride: Vec<usize>,
    pub num_conv_pos_embeddings: usize,
    pub num_conv_pos_embedding_groups: usize,
    pub layer_norm_eps: f64,
}

impl Config {
    /// facebook/wav2vec2-base-960h.
    pub fn base_960h() -> Self {
        Config {
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            conv_dim: vec![512; 7],
            conv_kernel: vec![10, 3, 3, 3, 3, 2, 2],
            conv_stride: vec![5, 2, 2, 2, 2, 2, 2],
            num_conv_pos_embeddings: 128,
            num_conv_pos_embedding_groups: 16,
            layer_norm_eps: 1e-5,
        }
    }

    /// Every state_dict key of `Wav2Vec2Model` with its shape (the positional convolution's weight norm
    /// under the HF checkpoint names `weight_g` / `weight_v`), in state_dict order.
    pub fn state_dict_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let (h, c) = (self.hidden_size, &self.conv_dim);
        let mut v: Vec<(String, Vec<usize>)> = vec![("masked_spec_embed".into(), vec![h])];
        for (i, (&k, &out)) in self.conv_kernel.iter().zip(c).enumerate() {
            let cin = if i == 0 { 1 } else { c[i - 1] };
            v.push((format!("feature_extractor.conv_layers.{i}.conv.weight"), vec![out, cin, k]));
            if i == 0 {
                v.push(("feature_extractor.conv_layers.0.layer_norm.weight".into(), vec![out]));
                v.push(("feature_extractor.conv_layers.0.layer_norm.bias".into(), vec![out]));
            }
        }
        let last = *c.last().expect("conv layers");
        v.push(("feature_projection.layer_norm.weight".into(), vec![last]));
        v.push(("feature_projection.layer_norm.bias".into(), vec![last]));
        v.push(("feature_projection.projection.weight".into(), vec![h, last]));
        v.push(("feature_projection.projection.bias".into(), vec![h]));
        let k = self.num_conv_pos_embeddings;
        v.push(("encoder.pos_conv_embed.conv.bias".into(), vec![h]));
        v.push(("encoder.pos_conv_embed.conv.weight_g".into(), vec![1, 1, k]));
        v.push(("encoder.pos_conv_embed.conv.weight_v".into(), vec![h, h / self.num_conv_pos_embedding_groups, k]));
        v.push(("encoder.layer_norm.weight".into(), vec![h]));
        v.push(("encoder.layer_norm.bias".into(), vec![h]));
        for l in 0..self.num_hidden_layers {
            let p = format!("encoder.layers.{l}");
            for proj in ["k_proj", "v_proj", "q_proj", "out_proj"] {
                v.push((format!("{p}.attention.{proj}.weight"), vec![h, h]));
                v.push((format!("{p}.attention.{proj}.bias"), vec![h]));
            }
            v.push((format!("{p}.layer_norm.weight"), vec![h]));
            v.push((format!("{p}.layer_norm.bias"), vec![h]));
            v.push((format!("{p}.feed_forward.intermediate_dense.weight"), vec![self.intermediate_size, h]));
            v.push((format!("{p}.feed_forward.intermediate_dense.bias"), vec![self.intermediate_size]));
            v.push((format!("{p}.feed_forward.output_dense.weight"), vec![h, self.intermediate_size]));
            v.push((format!("{p}.feed_forward.output_dense.bias"), vec![h]));
            v.push((format!("{p}.final_layer_norm.weight"), vec![h]));
            v.push((format!("{p}.final_layer_norm.bias"), vec![h]));
        }
        v
    }
}

/// The processor's normalisation: zero mean, unit variance over the given samples
/// (`(x - mean) / sqrt(var + 1e-7)`, biased variance).
pub fn normalise(samples: &[f32]) -> Vec<f32> {
    let n = samples.len().max(1) as f64;
    let mean = samples.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = samples.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    let inv = 1.0 / (var + 1e-7).sqrt();
    samples.iter().map(|&x| ((x as f64 - mean) * inv) as f32).collect()
}

/// One conv layer of the feature encoder: Conv1d (no bias), GroupNorm on layer 0, exact GELU.
struct ConvLayer {
    conv: Conv1d,
    norm: Option<ChannelNorm>,
}

impl ConvLayer {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.conv.forward(x)?;
        let x = match &self.norm {
            Some(n) => n.forward(&x)?,
            None => x,
        };
        Ok(x.gelu_erf()?)
    }
}

/// A value made for one sequence length, kept until another length comes (a stream's windows all have
/// one length). Shared by the streams that share the network.
struct ForLength<T>(parking_lot::Mutex<Option<(usize, T)>>);

impl<T: Clone> ForLength<T> {
    fn new() -> Self {
        ForLength(parking_lot::Mutex::new(None))
    }

    fn get(&self, len: usize, make: impl FnOnce() -> Result<T>) -> Result<T> {
        let mut kept = self.0.lock();
        match kept.as_ref() {
            Some((n, value)) if *n == len => Ok(value.clone()),
            _ => Ok(kept.insert((len, make()?)).1.clone()),
        }
    }
}

/// Layer 0's GroupNorm, which has one group per channel: each channel normalised over time (a
/// [`RowNorm`] of the sequence's length), then its affine.
struct ChannelNorm {
    /// (1, C, 1) each.
    weight: Tensor,
    bias: Tensor,
    norm: ForLength<RowNorm>,
}

impl ChannelNorm {
    fn load(c: usize, vb: VarBuilder) -> Result<Self> {
        let (weight, bias) = (vb.get(c, "weight")?.reshape((1, c, 1))?, vb.get(c, "bias")?.reshape((1, c, 1))?);
        Ok(ChannelNorm { weight, bias, norm: ForLength::new() })
    }

    /// (B, C, L) -> (B, C, L).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, len) = x.dims3()?;
        let norm = self.norm.get(len, || RowNorm::new(len, 1e-5, x.dtype(), x.device()))?;
        let normed = norm.apply(&x.reshape((b * c, len))?)?.reshape((b, c, len))?;
        Ok(normed.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)?)
    }
}

struct FeatureProjection {
    layer_norm: LayerNorm,
    projection: Linear,
}

/// The positional convolution with its weight norm folded (dim 2: one norm per kernel tap). It is
/// grouped (16 groups of 48 channels, kernel 128), which candle would run group by group; here each
/// group's windows are unfolded with one gather and all groups go through one batched matrix product.
struct PositionalConv {
    /// Per group, the kernel as a matrix: (groups, 48·K, 48).
    weight: Tensor,
    bias: Tensor,
    groups: usize,
    kernel: usize,
    /// The unfolding's time indices (L·K,) for the sequence length ([`PositionalConv::windows`]).
    windows: ForLength<Tensor>,
}

impl PositionalConv {
    fn load(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let (h, k, groups) = (cfg.hidden_size, cfg.num_conv_pos_embeddings, cfg.num_conv_pos_embedding_groups);
        let vb = vb.pp("conv");
        let shape = (h, h / groups, k);
        let weight = if vb.contains_tensor("weight_g") || vb.contains_tensor("parametrizations.weight.original0") {
            let (g, v) = if vb.contains_tensor("weight_g") {
                (vb.get((1, 1, k), "weight_g")?, vb.get(shape, "weight_v")?)
            } else {
                (
                    vb.get((1, 1, k), "parametrizations.weight.original0")?,
                    vb.get(shape, "parametrizations.weight.original1")?,
                )
            };
            // Folded in f64: the norm sums 6144 squares per tap.
            let v64 = v.to_dtype(DType::F64)?;
            let norm = v64.sqr()?.sum_keepdim(0)?.sum_keepdim(1)?.sqrt()?;
            v64.broadcast_mul(&g.to_dtype(DType::F64)?.broadcast_div(&norm)?)?.to_dtype(v.dtype())?
        } else {
            vb.get(shape, "weight")?
        };
        let cg = h / groups;
        // (H, cg, K) = (groups, cg_out, cg_in·K), as (groups, cg_in·K, cg_out) for `windows · weight`.
        let weight = weight.reshape((groups, cg, cg * k))?.transpose(1, 2)?.contiguous()?;
        Ok(PositionalConv { weight, bias: vb.get(h, "bias")?, groups, kernel: k, windows: ForLength::new() })
    }

    /// For a sequence of `l` steps padded with one zero step at its end: the time index each of the `l`
    /// outputs reads at each of the K kernel taps (padding K/2 on both sides; taps outside the sequence
    /// read the zero step).
    fn windows(&self, l: usize, device: &candle_core::Device) -> Result<Tensor> {
        self.windows.get(l, || {
            let half = self.kernel / 2;
            let index: Vec<u32> = (0..l)
                .flat_map(|t| {
                    (0..self.kernel).map(move |j| (t + j).checked_sub(half).filter(|&s| s < l).unwrap_or(l) as u32)
                })
                .collect();
            Ok(Tensor::new(index.as_slice(), device)?)
        })
    }

    /// (B, L, H) -> (B, L, H): the convolution without its last output step (even kernel), then GELU.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, l, h) = x.dims3()?;
        let (g, k) = (self.groups, self.kernel);
        let cg = h / g;
        let padded = x.transpose(1, 2)?.contiguous()?.pad_with_zeros(2, 0, 1)?;
        let windows = padded
            .index_select(&self.windows(l, x.device())?, 2)?
            .reshape((b, g, cg, l, k))?
            .permute((0, 1, 3, 2, 4))?
            .reshape((b, g, l, cg * k))?;
        let y = windows.broadcast_matmul(&self.weight)?.permute((0, 2, 1, 3))?.reshape((b, l, h))?;
        Ok(y.broadcast_add(&self.bias)?.gelu_erf()?)
    }
}

/// Self-attention with the query, key and value projections packed into one (queries scaled by
/// 1/√head_dim at load, as `q_proj(x)·scaling` does).
struct Attention {
    qkv: Linear,
    out_proj: Linear,
    heads: usize,
}

impl Attention {
    fn load(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        let (q, k, v) = (
            candle_nn::linear(h, h, vb.pp("q_proj"))?,
            candle_nn::linear(h, h, vb.pp("k_proj"))?,
            candle_nn::linear(h, h, vb.pp("v_proj"))?,
        );
        let head = (h / cfg.num_attention_heads) as f64;
        Ok(Attention {
            qkv: scaled_rows(&stacked_linear(&[&q, &k, &v])?, 0..h, head.powf(-0.5))?,
            out_proj: candle_nn::linear(h, h, vb.pp("out_proj"))?,
            heads: cfg.num_attention_heads,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.out_proj.forward(&packed_attention(&self.qkv.forward(x)?, self.heads)?)?)
    }
}

struct EncoderLayer {
    attention: Attention,
    layer_norm: LayerNorm,
    intermediate_dense: Linear,
    output_dense: Linear,
    final_layer_norm: LayerNorm,
}

impl EncoderLayer {
    fn load(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let (h, i, eps) = (cfg.hidden_size, cfg.intermediate_size, cfg.layer_norm_eps);
        Ok(EncoderLayer {
            attention: Attention::load(cfg, vb.pp("attention"))?,
            layer_norm: candle_nn::layer_norm(h, eps, vb.pp("layer_norm"))?,
            intermediate_dense: candle_nn::linear(h, i, vb.pp("feed_forward.intermediate_dense"))?,
            output_dense: candle_nn::linear(i, h, vb.pp("feed_forward.output_dense"))?,
            final_layer_norm: candle_nn::layer_norm(h, eps, vb.pp("final_layer_norm"))?,
        })
    }

    /// Post-norm: attention, add, norm; feed-forward, add, norm.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.layer_norm.forward(&(x + self.attention.forward(x)?)?)?;
        let ff = self.output_dense.forward(&self.intermediate_dense.forward(&x)?.gelu_erf()?)?;
        Ok(self.final_layer_norm.forward(&(x + ff)?)?)
    }
}

/// `Wav2Vec2Model`: waveform (already normalised, see [`normalise`]) to `last_hidden_state`.
pub struct Wav2Vec2 {
    conv_layers: Vec<ConvLayer>,
    feature_projection: FeatureProjection,
    pos_conv: PositionalConv,
    encoder_layer_norm: LayerNorm,
    layers: Vec<EncoderLayer>,
}

impl Wav2Vec2 {
    pub fn load(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let fe = vb.pp("feature_extractor.conv_layers");
        let mut conv_layers = Vec::new();
        for (i, (&k, &out)) in cfg.conv_kernel.iter().zip(&cfg.conv_dim).enumerate() {
            let cin = if i == 0 { 1 } else { cfg.conv_dim[i - 1] };
            let config = Conv1dConfig { stride: cfg.conv_stride[i], ..Default::default() };
            let vb = fe.pp(i);
            let conv = candle_nn::conv1d_no_bias(cin, out, k, config, vb.pp("conv"))?;
            let norm = (i == 0).then(|| ChannelNorm::load(out, vb.pp("layer_norm"))).transpose()?;
            conv_layers.push(ConvLayer { conv, norm });
        }
        let last = *cfg.conv_dim.last().expect("conv layers");
        let fp = vb.pp("feature_projection");
        let feature_projection = FeatureProjection {
            layer_norm: candle_nn::layer_norm(last, cfg.layer_norm_eps, fp.pp("layer_norm"))?,
            projection: candle_nn::linear(last, cfg.hidden_size, fp.pp("projection"))?,
        };
        let enc = vb.pp("encoder");
        Ok(Wav2Vec2 {
            conv_layers,
            feature_projection,
            pos_conv: PositionalConv::load(cfg, enc.pp("pos_conv_embed"))?,
            encoder_layer_norm: candle_nn::layer_norm(cfg.hidden_size, cfg.layer_norm_eps, enc.pp("layer_norm"))?,
            layers: (0..cfg.num_hidden_layers)
                .map(|l| EncoderLayer::load(cfg, enc.pp(format!("layers.{l}"))))
                .collect::<Result<_>>()?,
        })
    }

    /// `input_values` (B, N) to `last_hidden_state` (B, L, hidden): [`Wav2Vec2::encoder_input`], then
    /// every encoder layer.
    pub fn forward(&self, input_values: &Tensor) -> Result<Tensor> {
        self.forward_to(input_values, self.layers.len())
    }

    /// The hidden state after the first `layers` encoder layers (all of them: [`Wav2Vec2::forward`]).
    pub fn forward_to(&self, input_values: &Tensor, layers: usize) -> Result<Tensor> {
        let _span = tracing::debug_span!("wav2vec2", samples = input_values.dim(D::Minus1)?).entered();
        let (projected, _) = self.project(&self.extract_features(input_values)?)?;
        let mut h = self.encoder_input(&projected)?;
        for layer in self.layers.iter().take(layers) {
            h = layer.forward(&h)?;
        }
        Ok(h)
    }

    /// The convolutional feature encoder: (B, N) samples to (B, 512, L) (`feature_extractor`).
    pub fn extract_features(&self, input_values: &Tensor) -> Result<Tensor> {
        let mut x = input_values.unsqueeze(1)?;
        for layer in &self.conv_layers {
            x = layer.forward(&x)?;
        }
        Ok(x)
    }

    /// `feature_projection`: the features (B, 512, L) normalised and projected, (B, L, hidden); and the
    /// normalised features before the projection (B, L, 512).
    pub fn project(&self, features: &Tensor) -> Result<(Tensor, Tensor)> {
        let normed = self.feature_projection.layer_norm.forward(&features.transpose(1, 2)?)?;
        Ok((self.feature_projection.projection.forward(&normed)?, normed))
    }

    /// The convolutional positional embedding of the projected features (`encoder.pos_conv_embed`).
    pub fn positions(&self, projected: &Tensor) -> Result<Tensor> {
        self.pos_conv.forward(projected)
    }

    /// The first encoder layer's input: the projected features plus their positions, normalised
    /// (`encoder.layer_norm`).
    pub fn encoder_input(&self, projected: &Tensor) -> Result<Tensor> {
        Ok(self.encoder_layer_norm.forward(&(projected + self.positions(projected)?)?)?)
    }

    /// Encoder layer `i` (`encoder.layers.{i}`) on the hidden state (B, L, hidden).
    pub fn encoder_layer(&self, i: usize, h: &Tensor) -> Result<Tensor> {
        let layer = self.layers.get(i).ok_or_else(|| {
            crate::Error::InvalidArgument(format!("wav2vec2 has {} layers, not {}", self.layers.len(), i + 1))
        })?;
        layer.forward(h)
    }

    pub fn layer_count(&self) -> usize {
        self.layers.len()
    }
}

/// Samples per feature row (the feature encoder's total stride) and the receptive field of one row.
pub const ROW_STRIDE: usize = 320;
pub const ROW_SPAN: usize = 400;

/// wav2vec2 features for a live stream: the original computes them over the whole clip in one pass (global
/// normalisation, attention over everything); live, each block of rows is computed from a window of
/// `history` samples before it and `lookahead` after, normalised with the mean and variance of all the
/// audio received so far.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Streaming {
    pub history: usize,
    pub lookahead: usize,
}

impl Streaming {
    /// Rows `rows` (50 per second) of the features of `audio`, which holds the stream from its start up to
    /// at least the window's end (raw samples; normalised here with their running statistics): the
    /// output, and the same rows after encoder layer `layer` when asked.
    pub fn rows(
        &self,
        model: &Wav2Vec2,
        audio: &[f32],
        rows: std::ops::Range<usize>,
        layer: Option<usize>,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let first = rows.start.saturating_sub(self.history.div_ceil(ROW_STRIDE));
        let start = first * ROW_STRIDE;
        let end = ((rows.end - 1) * ROW_STRIDE + ROW_SPAN + self.lookahead).min(audio.len());
        // Running normalisation: the statistics of everything received up to the window's end.
        let seen = &audio[..end];
        let n = seen.len().max(1) as f64;
        let mean = seen.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = seen.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        let inv = 1.0 / (var + 1e-7).sqrt();
        let window: Vec<f32> = audio[start..end].iter().map(|&x| ((x as f64 - mean) * inv) as f32).collect();
        let len = window.len();
        let x = Tensor::from_vec(window, (1, len), &candle_core::Device::Cpu)?;
        // Up to layer `layer` once, then on from there.
        let (out, picked) = match layer {
            Some(l) => {
                let picked = model.forward_to(&x, l + 1)?;
                let mut h = picked.clone();
                for i in l + 1..model.layer_count() {
                    h = model.encoder_layer(i, &h)?;
                }
                (h, Some(picked))
            }
            None => (model.forward(&x)?, None),
        };
        let available = out.dim(1)?;
        let take = (rows.end - first).min(available) - (rows.start - first);
        let cut = |t: Tensor| -> Result<Tensor> { Ok(t.narrow(1, rows.start - first, take)?.squeeze(0)?) };
        Ok((cut(out)?, picked.map(cut).transpose()?))
    }
}
