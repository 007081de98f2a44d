//! wav2vec2-base (the facebook/wav2vec2-base-960h architecture) in candle: the audio features STSA's
//! heatmap generator reads. Module paths mirror the Hugging Face `Wav2Vec2Model` state_dict (the CTC
//! checkpoint's keys carry a `wav2vec2.` prefix: load with `vb.pp("wav2vec2")`).
//!
//! Differences from candle-transformers' wav2vec2 that matter for this checkpoint (SPEC.md 1.2): the
//! encoder LayerNorm comes *before* the layers (`do_stable_layer_norm = false`), the positional
//! convolution's weight norm is folded here from `weight_g`/`weight_v` (or transformers 5's
//! `parametrizations.weight.original0/1`), and GELU is the exact (erf) one.

use candle_core::{D, DType, Module, Tensor};
use candle_nn::{Conv1d, Conv1dConfig, GroupNorm, LayerNorm, Linear, VarBuilder};

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
    norm: Option<GroupNorm>,
}

impl Module for ConvLayer {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let x = self.conv.forward(x)?;
        let x = match &self.norm {
            Some(n) => n.forward(&x)?,
            None => x,
        };
        x.gelu_erf()
    }
}

struct FeatureProjection {
    layer_norm: LayerNorm,
    projection: Linear,
}

/// The positional convolution with its weight norm folded (dim 2: one norm per kernel tap).
struct PositionalConv {
    conv: Conv1d,
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
        let bias = vb.get(h, "bias")?;
        let config = Conv1dConfig { padding: k / 2, groups, ..Default::default() };
        Ok(PositionalConv { conv: Conv1d::new(weight, Some(bias), config) })
    }

    /// (B, L, H) -> (B, L, H): the convolution drops its last output step (even kernel), then GELU.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let l = x.dim(1)?;
        let y = self.conv.forward(&x.transpose(1, 2)?)?;
        Ok(y.narrow(2, 0, l)?.gelu_erf()?.transpose(1, 2)?)
    }
}

struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    heads: usize,
}

impl Attention {
    fn load(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        Ok(Attention {
            q_proj: candle_nn::linear(h, h, vb.pp("q_proj"))?,
            k_proj: candle_nn::linear(h, h, vb.pp("k_proj"))?,
            v_proj: candle_nn::linear(h, h, vb.pp("v_proj"))?,
            out_proj: candle_nn::linear(h, h, vb.pp("out_proj"))?,
            heads: cfg.num_attention_heads,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, l, h) = x.dims3()?;
        let d = h / self.heads;
        let split = |t: Tensor| -> candle_core::Result<Tensor> {
            t.reshape((b, l, self.heads, d))?.transpose(1, 2)?.contiguous()
        };
        let q = split((self.q_proj.forward(x)? * (d as f64).powf(-0.5))?)?;
        let k = split(self.k_proj.forward(x)?)?;
        let v = split(self.v_proj.forward(x)?)?;
        let w = candle_nn::ops::softmax_last_dim(&q.matmul(&k.t()?)?)?;
        let y = w.matmul(&v)?.transpose(1, 2)?.reshape((b, l, h))?;
        Ok(self.out_proj.forward(&y)?)
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
            let norm = (i == 0).then(|| candle_nn::group_norm(out, out, 1e-5, vb.pp("layer_norm"))).transpose()?;
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

    /// `input_values` (B, N) to `last_hidden_state` (B, L, hidden).
    pub fn forward(&self, input_values: &Tensor) -> Result<Tensor> {
        self.forward_traced(input_values, &mut |_, _| {})
    }

    /// [`Wav2Vec2::forward`], handing each intermediate to `trace` under the fixtures' names
    /// (`feature_extractor#call0`, `feature_projection#call0.0`, ..., `encoder.layers.{i}#call0`).
    pub fn forward_traced(&self, input_values: &Tensor, trace: &mut dyn FnMut(&str, &Tensor)) -> Result<Tensor> {
        let _span = tracing::debug_span!("wav2vec2", samples = input_values.dim(D::Minus1)?).entered();
        let mut x = input_values.unsqueeze(1)?;
        for layer in &self.conv_layers {
            x = layer.forward(&x)?;
        }
        trace("feature_extractor#call0", &x);
        let normed = self.feature_projection.layer_norm.forward(&x.transpose(1, 2)?)?;
        let mut h = self.feature_projection.projection.forward(&normed)?;
        trace("feature_projection#call0.0", &h);
        trace("feature_projection#call0.1", &normed);
        let pos = self.pos_conv.forward(&h)?;
        trace("encoder.pos_conv_embed#call0", &pos);
        h = self.encoder_layer_norm.forward(&(h + pos)?)?;
        trace("encoder.layer_norm#call0", &h);
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h)?;
            trace(&format!("encoder.layers.{i}#call0"), &h);
        }
        Ok(h)
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
        let mut picked = None;
        let out = model.forward_traced(&x, &mut |name, t| {
            if layer.is_some_and(|l| name == format!("encoder.layers.{l}#call0")) {
                picked = Some(t.clone());
            }
        })?;
        let available = out.dim(1)?;
        let take = (rows.end - first).min(available) - (rows.start - first);
        let cut = |t: Tensor| -> Result<Tensor> { Ok(t.narrow(1, rows.start - first, take)?.squeeze(0)?) };
        Ok((cut(out)?, picked.map(cut).transpose()?))
    }
}
