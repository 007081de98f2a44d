//! STSA's face renderer (SPEC.md section 3) in candle: from the masked source face, the driving heatmap,
//! five reference images with their heatmaps and the audio, the spatial path (AdaAT on the reference
//! features), the temporal path (flow-warped references), their fusion and the SPADE/AdaIN translation
//! network draw the 128x128 face. Module paths mirror the PyTorch state_dict; losses and modules unused at
//! inference (VGG, MINE, `align_layers`, `source_img_encoder`) are not built.

use candle_core::{DType, Module, Tensor};
use candle_nn::{Conv2dConfig, Linear, VarBuilder};

use super::conv::Conv2d;

use super::layers::{
    BatchNorm, ChannelAffine, R, Spec, Stack, block_diagonal_linear, conv2d_bn, shifted, stacked_conv2d, stacked_linear,
};
use super::ops::{Bilinear, ChannelSampler, GridSampler, InstanceNorm, Nearest, corner_aligned, pixel_shuffle};
use crate::error::Result;

fn conv(cin: usize, cout: usize, k: usize, stride: usize, padding: usize, vb: VarBuilder) -> Result<Conv2d> {
    Ok(candle_nn::conv2d(cin, cout, k, Conv2dConfig { stride, padding, ..Default::default() }, vb)?.into())
}

fn conv_no_bias(cin: usize, cout: usize, k: usize, stride: usize, padding: usize, vb: VarBuilder) -> Result<Conv2d> {
    Ok(candle_nn::conv2d_no_bias(cin, cout, k, Conv2dConfig { stride, padding, ..Default::default() }, vb)?.into())
}

/// `SameBlock2d` / `DownBlock2d`: conv, BatchNorm (folded into the conv), ReLU (keys `conv`, `norm`).
struct ConvBn(Conv2d);

impl ConvBn {
    fn load(cin: usize, cout: usize, k: usize, stride: usize, padding: usize, vb: VarBuilder) -> Result<Self> {
        let cfg = Conv2dConfig { stride, padding, ..Default::default() };
        Ok(ConvBn(conv2d_bn((cin, cout, k), cfg, true, vb.pp("conv"), vb.pp("norm"))?))
    }
}

impl Module for ConvBn {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.0.forward(x)?.relu()
    }
}

/// `ResBlock2d` (pre-activation): `x + conv2(relu(norm2(conv1(relu(norm1(x))))))`, `norm2` folded into
/// `conv1`.
struct ResBlock {
    norm1: ChannelAffine,
    conv1: Conv2d,
    conv2: Conv2d,
}

impl ResBlock {
    fn load(c: usize, vb: VarBuilder) -> Result<Self> {
        let same = Conv2dConfig { padding: 1, ..Default::default() };
        Ok(ResBlock {
            norm1: BatchNorm::load(c, vb.pp("norm1"))?.standalone(4, vb.dtype())?,
            conv1: conv2d_bn((c, c, 3), same, true, vb.pp("conv1"), vb.pp("norm2"))?,
            conv2: conv(c, c, 3, 1, 1, vb.pp("conv2"))?,
        })
    }
}

impl Module for ResBlock {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = self.conv1.forward(&self.norm1.forward(x)?.relu()?)?;
        x + self.conv2.forward(&y.relu()?)?
    }
}

/// An `nn.Sequential` of boxed modules.
struct Seq(Vec<Box<dyn Module + Send + Sync>>);

impl Module for Seq {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.0.iter().try_fold(x.clone(), |x, m| m.forward(&x))
    }
}

/// Residual blocks at positions `range` of a Sequential.
fn res_blocks(c: usize, range: std::ops::Range<usize>, vb: VarBuilder) -> Result<Vec<Box<dyn Module + Send + Sync>>> {
    range.map(|i| Ok(Box::new(ResBlock::load(c, vb.pp(i))?) as Box<dyn Module + Send + Sync>)).collect()
}

fn leaky(x: &Tensor, slope: f64) -> Result<Tensor> {
    Ok(x.maximum(&(x * slope)?)?)
}

/// The affine a modulated normalisation applies after instance norm: `IN(x)·scale + shift`. It depends
/// only on the modulating input, so it is computed once and applied to every reference.
struct Affine {
    scale: Tensor,
    shift: Tensor,
}

/// The SPADE layers of a block (`spade_layer_1`, `spade_layer_2`): γ and β convolved from the modulation
/// map after `conv1` (no activation between). Both layers' `conv1` run as one convolution; each layer's
/// γ and β as one, with the `1 +` of `IN(x)·(1+γ)+β` in γ's bias.
struct SpadePair {
    conv1: Conv2d,
    heads: [Conv2d; 2],
    c: usize,
}

impl SpadePair {
    fn load(c: usize, cm: usize, vb: &VarBuilder) -> Result<Self> {
        let (mut conv1, mut heads) = (Vec::new(), Vec::new());
        for i in 1..=2 {
            let vb = vb.pp(format!("spade_layer_{i}"));
            conv1.push(conv(cm, 256, 3, 1, 1, vb.pp("conv1"))?);
            let gamma_beta =
                stacked_conv2d(&[conv(256, c, 3, 1, 1, vb.pp("gamma"))?, conv(256, c, 3, 1, 1, vb.pp("beta"))?])?;
            let bias = shifted(gamma_beta.bias().expect("conv with bias"), 0..c, 1.0)?;
            heads.push(Conv2d::new(gamma_beta.weight().clone(), Some(bias), *gamma_beta.config()));
        }
        let heads: [Conv2d; 2] = heads.try_into().unwrap_or_else(|_| unreachable!("two layers"));
        Ok(SpadePair { conv1: stacked_conv2d(&conv1)?, heads, c })
    }

    /// Both layers' affines for the modulation map `m` (batch 1).
    fn affines(&self, m: &Tensor) -> Result<[Affine; 2]> {
        let h = self.conv1.forward(m)?;
        let c = self.c;
        let affine = |i: usize| -> Result<Affine> {
            let gb = self.heads[i].forward(&h.narrow(1, 256 * i, 256)?)?;
            Ok(Affine { scale: gb.narrow(1, 0, c)?, shift: gb.narrow(1, c, c)? })
        };
        Ok([affine(0)?, affine(1)?])
    }
}

/// The AdaIN blocks' modulations. All of them (two in the temporal path, three in the translation)
/// modulate by the same audio code, so their `mlp_shared` layers (ReLU after) run as one layer and all
/// their γ and β heads as one block-diagonal layer, with the `1 +` of each γ in its bias.
struct AudioModulation {
    shared: Linear,
    heads: Linear,
    /// Each block's channels, in order.
    channels: Vec<usize>,
}

impl AudioModulation {
    /// The blocks at `vb`s with their channels, each with `adain_layer_1` and `adain_layer_2`.
    fn load(blocks: &[(usize, VarBuilder)]) -> Result<Self> {
        let (mut shared, mut heads) = (Vec::new(), Vec::new());
        for (c, vb) in blocks {
            for i in 1..=2 {
                let vb = vb.pp(format!("adain_layer_{i}"));
                shared.push(candle_nn::linear(128, 128, vb.pp("mlp_shared.0"))?);
                let gamma = candle_nn::linear(128, *c, vb.pp("mlp_gamma"))?;
                let beta = candle_nn::linear(128, *c, vb.pp("mlp_beta"))?;
                let gamma_beta = stacked_linear(&[&gamma, &beta])?;
                let bias = shifted(gamma_beta.bias().expect("linear with bias"), 0..*c, 1.0)?;
                heads.push(Linear::new(gamma_beta.weight().clone(), Some(bias)));
            }
        }
        Ok(AudioModulation {
            shared: stacked_linear(&shared.iter().collect::<Vec<_>>())?,
            heads: block_diagonal_linear(&heads.iter().collect::<Vec<_>>())?,
            channels: blocks.iter().map(|(c, _)| *c).collect(),
        })
    }

    /// Every block's two affines for the audio code (1, 128), in order.
    fn affines(&self, audio: &Tensor) -> Result<Vec<[Affine; 2]>> {
        let y = self.heads.forward(&self.shared.forward(audio)?.relu()?)?;
        let mut at = 0;
        let mut next = |c: usize| -> Result<Tensor> {
            let part = y.narrow(1, at, c)?.reshape((1, c, 1, 1))?;
            at += c;
            Ok(part)
        };
        self.channels
            .iter()
            .map(|&c| {
                let first = Affine { scale: next(c)?, shift: next(c)? };
                Ok([first, Affine { scale: next(c)?, shift: next(c)? }])
            })
            .collect()
    }
}

/// The body of the `AdaIN` and `SPADE` blocks on planes of one size: modulated norm, LeakyReLU(0.2),
/// conv, modulated norm, LeakyReLU(0.2), conv. An instance norm removes any per-channel constant, so
/// `conv_1`'s bias (always followed by one) is left out, and so is `conv_2`'s where the next block starts
/// with one (`normalised_next`).
struct Modulated {
    norm: InstanceNorm,
    conv_1: Conv2d,
    conv_2: Conv2d,
}

impl Modulated {
    fn load(c: usize, size: usize, normalised_next: bool, vb: &VarBuilder) -> Result<Self> {
        let without_bias = |c: Conv2d| Conv2d::new(c.weight().clone(), None, *c.config());
        let conv_2 = conv(c, c, 3, 1, 1, vb.pp("conv_2"))?;
        Ok(Modulated {
            norm: InstanceNorm::new(size, size, 1e-5, vb.dtype(), vb.device())?,
            conv_1: without_bias(conv(c, c, 3, 1, 1, vb.pp("conv_1"))?),
            conv_2: if normalised_next { without_bias(conv_2) } else { conv_2 },
        })
    }

    fn forward(&self, x: &Tensor, [a1, a2]: &[Affine; 2]) -> Result<Tensor> {
        let x = self.conv_1.forward(&leaky(&self.norm.apply(x, &a1.scale, &a1.shift)?, 0.2)?)?;
        Ok(self.conv_2.forward(&leaky(&self.norm.apply(&x, &a2.scale, &a2.shift)?, 0.2)?)?)
    }
}

/// A `SPADE` block: [`Modulated`] by a map.
struct Spade {
    modulator: SpadePair,
    body: Modulated,
}

impl Spade {
    fn load(c: usize, cm: usize, size: usize, normalised_next: bool, vb: VarBuilder) -> Result<Self> {
        Ok(Spade { modulator: SpadePair::load(c, cm, &vb)?, body: Modulated::load(c, size, normalised_next, &vb)? })
    }

    fn forward(&self, x: &Tensor, m: &Tensor) -> Result<Tensor> {
        self.body.forward(x, &self.modulator.affines(m)?)
    }
}

/// An `AdaIN` block: [`Modulated`] by the audio, its affines from [`AudioModulation`].
type AdaIn = Modulated;

/// The original writes π as 3.14159 in AdaAT's rotation.
#[allow(clippy::approx_constant)]
const ORIGINAL_PI: f64 = 3.14159;

/// The three `AdaAT` blocks (`adaAT_128`, `adaAT_64`, `adaAT_32`): each predicts a per-channel scale,
/// rotation and translation from the same code and applies them by sampling. Their `commn_linear`
/// layers (ReLU after) run as one layer, their heads (scale, rotation, translation of each) as one
/// block-diagonal layer. In f32 whatever the model's dtype: they place the sampling positions, where half
/// precision's rounding moves whole features (and they are tiny).
struct AdaAt {
    commn: Linear,
    heads: Linear,
    channels: [usize; 3],
}

impl AdaAt {
    /// The blocks under `vb` (`adaAT_{size}`) with their channels per size.
    fn load(blocks: [(usize, usize); 3], vb: &VarBuilder) -> Result<Self> {
        let vb = vb.clone().set_dtype(DType::F32);
        let (mut commn, mut heads) = (Vec::new(), Vec::new());
        for (size, c) in blocks {
            let vb = vb.pp(format!("adaAT_{size}"));
            let scale = candle_nn::linear(256, c, vb.pp("scale.0"))?;
            let rotation = candle_nn::linear(256, c, vb.pp("rotation.0"))?;
            let translation = candle_nn::linear(256, 2 * c, vb.pp("translation.0"))?;
            commn.push(candle_nn::linear(256, 256, vb.pp("commn_linear.0"))?);
            heads.push(stacked_linear(&[&scale, &rotation, &translation])?);
        }
        Ok(AdaAt {
            commn: stacked_linear(&commn.iter().collect::<Vec<_>>())?,
            heads: block_diagonal_linear(&heads.iter().collect::<Vec<_>>())?,
            channels: blocks.map(|(_, c)| c),
        })
    }

    /// Each block's features sampled (f32) with its transform for `code` (1, 256).
    fn forward(&self, features: &[ChannelSampler; 3], code: &Tensor) -> Result<[Tensor; 3]> {
        let y = self.heads.forward(&self.commn.forward(&code.to_dtype(DType::F32)?)?.relu()?)?;
        let mut at = 0;
        let mut sample = |i: usize| -> Result<Tensor> {
            let c = self.channels[i];
            let scale = (candle_nn::ops::sigmoid(&y.narrow(1, at, c)?)? * 2.0)?;
            let angle = (y.narrow(1, at + c, c)?.tanh()? * ORIGINAL_PI)?;
            let t = y.narrow(1, at + 2 * c, 2 * c)?.tanh()?.reshape((1, c, 2))?;
            at += 4 * c;
            features[i].sample(&scale, &angle, &t)
        };
        Ok([sample(0)?, sample(1)?, sample(2)?])
    }
}

/// The temporal path: each reference warped towards the driving heatmap by a predicted flow.
struct Temporal {
    /// `conv1`..`conv3` with their BatchNorms.
    encoder: [ConvBn; 3],
    spade_1: Spade,
    adain_1: AdaIn,
    spade_2: Spade,
    adain_2: AdaIn,
    spade_4: Spade,
    /// `conv_4` (the flow, 2 channels) and `conv_5.0` (32), which read the same map, as one convolution.
    flow_and_weight: Conv2d,
    conv_5b: Conv2d,
    /// The resizes between 128, 64 and 32 pixels.
    to_64: Nearest,
    to_32: Nearest,
    deformation_64: Bilinear,
    deformation_32: Bilinear,
    /// `convert_flow_to_deformation`'s identity grid (1, 2, 128, 128), align_corners=True, and the
    /// pixels-to-grid factors 2/(W−1), 2/(H−1) as (1, 2, 1, 1).
    identity: Tensor,
    flow_to_grid: Tensor,
}

/// The three-conv encoder the temporal and translation networks start with: `conv1` 6→32 (7x7), `conv2`
/// 32→128 and `conv3` 128→`c3` (3x3, stride 2), each with its BatchNorm under a sibling key
/// (`conv1_bn`, ...) folded in, and ReLU.
fn sibling_encoder(c3: usize, bias: bool, vb: &VarBuilder) -> Result<[ConvBn; 3]> {
    let layer = |cin: usize, cout: usize, k: usize, stride: usize, padding: usize, name: &str| -> Result<ConvBn> {
        let cfg = Conv2dConfig { stride, padding, ..Default::default() };
        Ok(ConvBn(conv2d_bn((cin, cout, k), cfg, bias, vb.pp(name), vb.pp(format!("{name}_bn")))?))
    };
    Ok([layer(6, 32, 7, 1, 3, "conv1")?, layer(32, 128, 3, 2, 1, "conv2")?, layer(128, c3, 3, 2, 1, "conv3")?])
}

impl Temporal {
    fn load(vb: VarBuilder) -> Result<Self> {
        let dev = vb.device();
        let line = |n: usize| -> Vec<f32> { (0..n).map(|i| corner_aligned(i, n)).collect() };
        let (h, w) = (128, 128);
        let xs = Tensor::new(line(w).as_slice(), dev)?.reshape((1, 1, 1, w))?.broadcast_as((1, 1, h, w))?;
        let ys = Tensor::new(line(h).as_slice(), dev)?.reshape((1, 1, h, 1))?.broadcast_as((1, 1, h, w))?;
        let flow_to_grid = [2.0 / (w - 1) as f32, 2.0 / (h - 1) as f32];
        Ok(Temporal {
            encoder: sibling_encoder(256, true, &vb)?,
            spade_1: Spade::load(128, 3, 64, true, vb.pp("spade_layer_1"))?,
            adain_1: AdaIn::load(128, 64, true, &vb.pp("adain_1"))?,
            spade_2: Spade::load(128, 3, 64, true, vb.pp("spade_layer_2"))?,
            adain_2: AdaIn::load(128, 64, false, &vb.pp("adain_2"))?,
            spade_4: Spade::load(32, 3, 128, false, vb.pp("spade_layer_4"))?,
            flow_and_weight: stacked_conv2d(&[
                conv(32, 2, 7, 1, 3, vb.pp("conv_4"))?,
                conv(32, 32, 7, 1, 3, vb.pp("conv_5.0"))?,
            ])?,
            conv_5b: conv(32, 1, 7, 1, 3, vb.pp("conv_5.2"))?,
            to_64: Nearest::new((h, w), (64, 64), dev)?,
            to_32: Nearest::new((h, w), (32, 32), dev)?,
            deformation_64: Bilinear::new((h, w), (64, 64), dev)?,
            deformation_32: Bilinear::new((h, w), (32, 32), dev)?,
            identity: Tensor::cat(&[xs, ys], 1)?.contiguous()?,
            flow_to_grid: Tensor::new(flow_to_grid.as_slice(), dev)?.reshape((1, 2, 1, 1))?,
        })
    }

    /// The part that depends only on the references `imgs`, `heatmaps` (N, 3, 128, 128): their
    /// features at three scales, all references in one batch, laid out for sampling.
    fn references(&self, imgs: &Tensor, heatmaps: &Tensor) -> Result<TemporalRefs> {
        let [c1, c2, c3] = &self.encoder;
        let h128 = c1.forward(&Tensor::cat(&[imgs, heatmaps], 1)?)?;
        let h64 = c2.forward(&h128)?;
        let h32 = c3.forward(&h64)?;
        Ok(TemporalRefs {
            at_128: GridSampler::new(&Tensor::cat(&[&h128, imgs], 1)?)?,
            at_64: GridSampler::new(&h64)?,
            at_32: GridSampler::new(&h32)?,
            h64,
        })
    }

    /// Driving heatmap (1, 3, 128, 128) and the AdaIN blocks' audio modulations: each reference's flow
    /// towards the driving heatmap (N, 2, 128, 128, `conv_4`) and its weight (N, 1, 128, 128, `conv_5`).
    /// The modulations depend only on the driving heatmap and the audio, so they are computed once for all
    /// references (the original recomputes them per reference); the references go through as one batch.
    fn flow(&self, refs: &TemporalRefs, driving: &Tensor, audio: &[[Affine; 2]]) -> Result<(Tensor, Tensor)> {
        let d64 = self.to_64.apply(driving)?;
        let x = self.spade_1.forward(&refs.h64, &d64)?;
        let x = self.adain_1.forward(&x, &audio[0])?;
        let x = self.spade_2.forward(&x, &d64)?;
        let x = self.adain_2.forward(&x, &audio[1])?;
        let x = self.spade_4.forward(&pixel_shuffle(&x, 2)?, driving)?;
        let heads = self.flow_and_weight.forward(&x)?;
        let flow = heads.narrow(1, 0, 2)?;
        let w = candle_nn::ops::sigmoid(&self.conv_5b.forward(&heads.narrow(1, 2, 32)?.relu()?)?)?;
        Ok((flow, w))
    }

    /// The references warped by their flows at each scale and blended by their weights: at 128 (32
    /// channels), 64, 32, and the warped images.
    fn warp(&self, refs: &TemporalRefs, flow: &Tensor, w: &Tensor) -> Result<[Tensor; 4]> {
        // `convert_flow_to_deformation` (in f32: these are sampling positions), then `warping` at each
        // scale with the deformation resized to it.
        let deformation =
            flow.to_dtype(DType::F32)?.broadcast_mul(&self.flow_to_grid)?.broadcast_add(&self.identity)?;
        let dtype = w.dtype();
        let warped_128 = refs.at_128.sample(&deformation)?.to_dtype(dtype)?;
        let warped_64 = refs.at_64.sample(&self.deformation_64.apply(&deformation)?)?.to_dtype(dtype)?;
        let warped_32 = refs.at_32.sample(&self.deformation_32.apply(&deformation)?)?.to_dtype(dtype)?;
        let blend = |w: &Tensor, warped: &Tensor| -> Result<Tensor> { Ok(w.broadcast_mul(warped)?.sum_keepdim(0)?) };
        let den = (w.sum_keepdim(0)? + 1e-5)?;
        let a128 = blend(w, &warped_128)?.broadcast_div(&den)?;
        let a64 = blend(&self.to_64.apply(w)?, &warped_64)?.broadcast_div(&self.to_64.apply(&den)?)?;
        let a32 = blend(&self.to_32.apply(w)?, &warped_32)?.broadcast_div(&self.to_32.apply(&den)?)?;
        Ok([a128.narrow(1, 0, 32)?, a64, a32, a128.narrow(1, 32, 3)?])
    }
}

/// The temporal path's per-reference features: at 64 (the flow network's input), and at 128 (with
/// the images), 64 and 32 laid out for warping.
struct TemporalRefs {
    h64: Tensor,
    at_128: GridSampler,
    at_64: GridSampler,
    at_32: GridSampler,
}

/// The translation network: the masked face and driving heatmap, modulated by the fused features and audio.
struct Translation {
    /// `conv1`..`conv3` with their BatchNorms.
    encoder: [ConvBn; 3],
    spade_1: Spade,
    adain_1: AdaIn,
    spade_2: Spade,
    adain_2: AdaIn,
    spade_3: Spade,
    adain_3: AdaIn,
    conv_last: Conv2d,
}

impl Translation {
    fn load(vb: VarBuilder) -> Result<Self> {
        Ok(Translation {
            encoder: sibling_encoder(512, false, &vb)?,
            spade_1: Spade::load(512, 256, 32, true, vb.pp("spade_1"))?,
            adain_1: AdaIn::load(512, 32, false, &vb.pp("adain_1"))?,
            spade_2: Spade::load(128, 128, 64, true, vb.pp("spade_2"))?,
            adain_2: AdaIn::load(128, 64, false, &vb.pp("adain_2"))?,
            spade_3: Spade::load(32, 32, 128, true, vb.pp("spade_3"))?,
            adain_3: AdaIn::load(32, 128, false, &vb.pp("adain_3"))?,
            conv_last: conv_no_bias(32, 3, 7, 1, 3, vb.pp("conv_last"))?,
        })
    }

    /// The masked face and driving heatmap `x`, the fused features `g` at 128, 64 and 32, and the AdaIN
    /// blocks' audio modulations.
    fn forward(&self, x: &Tensor, g: &[Tensor; 3], audio: &[[Affine; 2]]) -> Result<Tensor> {
        let x = self.encoder.iter().try_fold(x.clone(), |x, c| c.forward(&x))?;
        let x = self.adain_1.forward(&self.spade_1.forward(&x, &g[2])?, &audio[0])?;
        let x = self.adain_2.forward(&self.spade_2.forward(&pixel_shuffle(&x, 2)?, &g[1])?, &audio[1])?;
        let x = self.adain_3.forward(&self.spade_3.forward(&pixel_shuffle(&x, 2)?, &g[0])?, &audio[2])?;
        Ok(candle_nn::ops::sigmoid(&self.conv_last.forward(&leaky(&x, 0.01)?)?)?)
    }
}

pub struct FaceRenderer {
    ref_conv1: Seq,
    ref_conv2: Seq,
    ref_conv3: Seq,
    heatmap_ref: Seq,
    heatmap_tar: Seq,
    audio: Stack,
    alignment: Seq,
    /// The spatial path per scale (128, 64, 32): the ResBlocks before and after AdaAT.
    appearance: [(Seq, Seq); 3],
    adaat: AdaAt,
    temporal: Temporal,
    fuse: [Seq; 3],
    translation: Translation,
    /// The temporal path's two AdaIN blocks' modulations, then the translation's three.
    audio_modulation: AudioModulation,
    /// 1 on the source face's upper half, 0 on its lower half (the original masks the mouth out).
    upper_half: Tensor,
}

/// `audio_encoder.w2v_encoder`: (1, 768, 10) -> (1, 128, 1).
const AUDIO: [Spec; 9] = [
    (768, 128, 3, 1, 1, false, R),
    (128, 128, 3, 2, 1, false, R),
    (128, 128, 3, 1, 1, true, R),
    (128, 128, 3, 1, 1, true, R),
    (128, 128, 3, 2, 1, false, R),
    (128, 128, 3, 1, 1, true, R),
    (128, 128, 3, 1, 1, true, R),
    (128, 128, 3, 1, 1, true, R),
    (128, 128, 3, 1, 0, false, R),
];

fn boxed<M: Module + Send + Sync + 'static>(m: M) -> Box<dyn Module + Send + Sync> {
    Box::new(m)
}

impl FaceRenderer {
    pub fn load(vb: VarBuilder) -> Result<Self> {
        let re = vb.pp("ref_imgs_encoder");
        let mut c1 = vec![boxed(ConvBn::load(15, 32, 3, 1, 1, re.pp("conv1.0"))?)];
        c1.extend(res_blocks(32, 1..3, re.pp("conv1"))?);
        let mut c2 = vec![
            boxed(ConvBn::load(32, 64, 3, 2, 1, re.pp("conv2.0"))?),
            boxed(ConvBn::load(64, 128, 3, 1, 1, re.pp("conv2.1"))?),
        ];
        c2.extend(res_blocks(128, 2..4, re.pp("conv2"))?);
        let mut c3 = vec![
            boxed(ConvBn::load(128, 256, 3, 2, 1, re.pp("conv3.0"))?),
            boxed(ConvBn::load(256, 256, 3, 1, 1, re.pp("conv3.1"))?),
        ];
        c3.extend(res_blocks(256, 2..4, re.pp("conv3"))?);
        let heatmap = |cin: usize, vb: VarBuilder| -> Result<Seq> {
            let vb = vb.pp("heatmap_down");
            Ok(Seq(vec![
                boxed(ConvBn::load(cin, 32, 7, 1, 3, vb.pp(0))?),
                boxed(ConvBn::load(32, 32, 3, 2, 1, vb.pp(1))?),
                boxed(ConvBn::load(32, 32, 3, 2, 1, vb.pp(2))?),
            ]))
        };
        let sm = vb.pp("spatial_module");
        let ae = sm.pp("alignment_encoder");
        // (cin, cout, kernel, stride, padding)
        let align = [
            (320, 128, 3, 1, 1),
            (128, 128, 11, 1, 5),
            (128, 128, 3, 3, 1),
            (128, 128, 7, 1, 3),
            (128, 128, 3, 2, 1),
            (128, 128, 3, 1, 1),
            (128, 128, 3, 2, 1),
            (128, 128, 3, 1, 1),
            (128, 128, 3, 2, 0),
        ];
        let alignment = Seq(align
            .iter()
            .enumerate()
            .map(|(i, &(a, b, k, s, p))| Ok(boxed(ConvBn::load(a, b, k, s, p, ae.pp(i))?)))
            .collect::<Result<_>>()?);
        let scale = |size: usize, c: usize| -> Result<(Seq, Seq)> {
            let ac = sm.pp(format!("appearance_conv_list_{size}"));
            Ok((Seq(res_blocks(c, 0..2, ac.pp(0))?), Seq(res_blocks(c, 0..2, ac.pp(1))?)))
        };
        let fuse = |size: usize, c: usize| -> Result<Seq> {
            let f = vb.pp(format!("fuse_{size}"));
            Ok(Seq(vec![
                boxed(ConvBn::load(2 * c, c, 3, 1, 1, f.pp(0))?),
                boxed(ConvBn::load(c, c, 3, 1, 1, f.pp(1))?),
            ]))
        };
        Ok(FaceRenderer {
            ref_conv1: Seq(c1),
            ref_conv2: Seq(c2),
            ref_conv3: Seq(c3),
            heatmap_ref: heatmap(15, vb.pp("heatmap_encoder_ref"))?,
            heatmap_tar: heatmap(3, vb.pp("heatmap_encoder_tar"))?,
            audio: Stack::load(&AUDIO, false, vb.pp("audio_encoder.w2v_encoder"))?,
            alignment,
            appearance: [scale(128, 32)?, scale(64, 128)?, scale(32, 256)?],
            adaat: AdaAt::load([(128, 32), (64, 128), (32, 256)], &sm)?,
            temporal: Temporal::load(vb.pp("temporal_module"))?,
            fuse: [fuse(128, 32)?, fuse(64, 128)?, fuse(32, 256)?],
            translation: Translation::load(vb.pp("translation"))?,
            audio_modulation: AudioModulation::load(&[
                (128, vb.pp("temporal_module.adain_1")),
                (128, vb.pp("temporal_module.adain_2")),
                (512, vb.pp("translation.adain_1")),
                (128, vb.pp("translation.adain_2")),
                (32, vb.pp("translation.adain_3")),
            ])?,
            upper_half: Tensor::cat(
                &[
                    Tensor::ones((1, 1, 64, 1), vb.dtype(), vb.device())?,
                    Tensor::zeros((1, 1, 64, 1), vb.dtype(), vb.device())?,
                ],
                2,
            )?,
        })
    }

    /// Everything that depends only on the references `ref_imgs`, `ref_heatmaps` (1, N, 3, 128, 128):
    /// computed once per reference set ([`FaceRenderer::render`] then skips about 31 GFLOP a frame).
    pub fn references(&self, ref_imgs: &Tensor, ref_heatmaps: &Tensor) -> Result<References> {
        let _span = tracing::debug_span!("face_renderer_references").entered();
        let n = ref_imgs.dim(1)?;
        let [f128, f64_, f32_] = self.encode_reference_images(ref_imgs)?;
        let heatmap = self.encode_reference_heatmaps(ref_heatmaps)?;
        let laid_out = |i: usize, f: &Tensor| ChannelSampler::new(&self.appearance[i].0.forward(f)?);
        let appearance = [laid_out(0, &f128)?, laid_out(1, &f64_)?, laid_out(2, &f32_)?];
        let temporal = self.temporal.references(&ref_imgs.squeeze(0)?, &ref_heatmaps.squeeze(0)?)?;
        Ok(References { f32: f32_, heatmap, appearance, temporal, count: n })
    }

    /// `ref_imgs_encoder`: the reference images (1, N, 3, 128, 128) encoded at 128, 64 and 32 pixels.
    pub fn encode_reference_images(&self, ref_imgs: &Tensor) -> Result<[Tensor; 3]> {
        // Reference images channel-major, reference heatmaps ref-major (SPEC quirk).
        let channel_major = Tensor::cat(
            &(0..3).map(|c| ref_imgs.narrow(2, c, 1)?.squeeze(2)).collect::<candle_core::Result<Vec<_>>>()?,
            1,
        )?;
        let f128 = self.ref_conv1.forward(&channel_major)?;
        let f64_ = self.ref_conv2.forward(&f128)?;
        let f32_ = self.ref_conv3.forward(&f64_)?;
        Ok([f128, f64_, f32_])
    }

    /// `heatmap_encoder_ref`: the reference heatmaps (1, N, 3, 128, 128) to (1, 32, 32, 32).
    pub fn encode_reference_heatmaps(&self, ref_heatmaps: &Tensor) -> Result<Tensor> {
        let n = ref_heatmaps.dim(1)?;
        Ok(self.heatmap_ref.forward(&ref_heatmaps.reshape((1, 3 * n, 128, 128))?)?)
    }

    /// One face: the source `frame` and `driving` heatmap (1, 3, 128, 128, values 0..1, BGR as the
    /// original), the frame's audio chunk `audio_w2v` (1, 768, 10) and the cached `refs`; returns the
    /// generated face (1, 3, 128, 128). Each stage is a method of its own.
    pub fn render(&self, refs: &References, frame: &Tensor, driving: &Tensor, audio_w2v: &Tensor) -> Result<Tensor> {
        let _span = tracing::debug_span!("face_renderer", refs = refs.count).entered();
        let audio = self.encode_audio(audio_w2v)?;
        let alignment = self.align(refs, &self.encode_driving(driving)?)?;
        let spatial = self.spatial(self.adaat(refs, &audio, &alignment)?)?;
        let (flow, weight) = self.temporal_flow(refs, driving, &audio)?;
        let temporal = self.temporal(refs, &flow, &weight)?;
        let fused = self.fuse(&spatial, &temporal)?;
        self.translate(frame, driving, &fused, &audio)
    }

    /// `heatmap_encoder_tar`: the driving heatmap (1, 3, 128, 128) to (1, 32, 32, 32).
    pub fn encode_driving(&self, driving: &Tensor) -> Result<Tensor> {
        Ok(self.heatmap_tar.forward(driving)?)
    }

    /// `audio_encoder`: the frame's audio chunk (1, 768, 10) to its code (1, 128, 1), with the AdaIN
    /// modulations it makes for the temporal and translation networks.
    pub fn encode_audio(&self, audio_w2v: &Tensor) -> Result<AudioCode> {
        let code = self.audio.forward(audio_w2v)?;
        let modulations = self.audio_modulation.affines(&code.flatten_from(1)?)?;
        Ok(AudioCode { code, modulations })
    }

    /// `spatial_module.alignment_encoder`: the references' and the driving heatmap's encodings aligned,
    /// (1, 128, 1, 1) for 32x32 inputs.
    pub fn align(&self, refs: &References, driving_code: &Tensor) -> Result<Tensor> {
        Ok(self.alignment.forward(&Tensor::cat(&[&refs.f32, &refs.heatmap, driving_code], 1)?)?)
    }

    /// `spatial_module.adaAT_128`, `_64`, `_32`: the references' appearance features transformed by the
    /// code of the audio and the alignment.
    pub fn adaat(&self, refs: &References, audio: &AudioCode, alignment: &Tensor) -> Result<[Tensor; 3]> {
        // The alignment code is the encoder's output averaged over space: its map is 1x1 for 32x32 inputs.
        let pooled = match alignment.dims4()? {
            (_, _, 1, 1) => alignment.flatten_from(1)?,
            _ => alignment.flatten_from(2)?.mean(2)?,
        };
        let code = Tensor::cat(&[&audio.code.flatten_from(1)?, &pooled], 1)?;
        let sampled = self.adaat.forward(&refs.appearance, &code)?;
        let mut out = Vec::with_capacity(3);
        for x in sampled {
            out.push(x.to_dtype(code.dtype())?);
        }
        Ok(out.try_into().unwrap_or_else(|_| unreachable!("three scales")))
    }

    /// The spatial path's outputs (`spatial_module`): AdaAT's through the residual blocks after it.
    pub fn spatial(&self, adaat: [Tensor; 3]) -> Result<[Tensor; 3]> {
        let [a, b, c] = adaat;
        let post = |i: usize, x: &Tensor| -> Result<Tensor> { Ok(self.appearance[i].1.forward(x)?) };
        Ok([post(0, &a)?, post(1, &b)?, post(2, &c)?])
    }

    /// `temporal_module.conv_4`, `conv_5`: each reference's flow towards the driving heatmap and its weight.
    pub fn temporal_flow(&self, refs: &References, driving: &Tensor, audio: &AudioCode) -> Result<(Tensor, Tensor)> {
        self.temporal.flow(&refs.temporal, driving, &audio.modulations[..2])
    }

    /// The temporal path's outputs (`temporal_module`): the references warped by their flows and blended,
    /// at 128, 64, 32, and the warped images.
    pub fn temporal(&self, refs: &References, flow: &Tensor, weight: &Tensor) -> Result<[Tensor; 4]> {
        self.temporal.warp(&refs.temporal, flow, weight)
    }

    /// `fuse_128`, `_64`, `_32`: the spatial and temporal paths fused at each scale.
    pub fn fuse(&self, spatial: &[Tensor; 3], temporal: &[Tensor; 4]) -> Result<[Tensor; 3]> {
        let fuse =
            |i: usize| -> Result<Tensor> { Ok(self.fuse[i].forward(&Tensor::cat(&[&spatial[i], &temporal[i]], 1)?)?) };
        Ok([fuse(0)?, fuse(1)?, fuse(2)?])
    }

    /// `translation`: the source with its lower half masked and the driving heatmap, modulated by the
    /// fused features and the audio, to the generated face (1, 3, 128, 128).
    pub fn translate(
        &self,
        frame: &Tensor,
        driving: &Tensor,
        fused: &[Tensor; 3],
        audio: &AudioCode,
    ) -> Result<Tensor> {
        let masked = frame.broadcast_mul(&self.upper_half)?;
        self.translation.forward(&Tensor::cat(&[&masked, driving], 1)?, fused, &audio.modulations[2..])
    }

    /// The whole model on the fixtures' inputs: `T_frame_img`, `T_driving_heatmap` (1, 1, 3, 128, 128),
    /// `ref_N_frame_img`, `ref_N_frame_heatmap` (1, N, 3, 128, 128), `T_audio_w2v` (1, 1, 768, 10); returns
    /// `generated_face` (1, 3, 1, 128, 128).
    pub fn forward(
        &self,
        frame: &Tensor,
        driving: &Tensor,
        ref_imgs: &Tensor,
        ref_heatmaps: &Tensor,
        audio_w2v: &Tensor,
    ) -> Result<Tensor> {
        let refs = self.references(ref_imgs, ref_heatmaps)?;
        let out = self.render(&refs, &frame.squeeze(1)?, &driving.squeeze(1)?, &audio_w2v.squeeze(1)?)?;
        Ok(out.unsqueeze(2)?)
    }
}

/// The frame's audio as the face renderer reads it ([`FaceRenderer::encode_audio`]).
pub struct AudioCode {
    /// `audio_encoder`'s output (1, 128, 1).
    pub code: Tensor,
    /// The AdaIN blocks' affines: the temporal network's two, then the translation's three.
    modulations: Vec<[Affine; 2]>,
}

/// What [`FaceRenderer::references`] caches for a reference set.
pub struct References {
    /// The reference images' encoding at 32x32, (1, 256, 32, 32).
    f32: Tensor,
    /// The reference heatmaps' encoding, (1, 32, 32, 32).
    heatmap: Tensor,
    /// The spatial path's appearance features before AdaAT, at 128, 64 and 32, laid out for sampling.
    appearance: [ChannelSampler; 3],
    temporal: TemporalRefs,
    count: usize,
}
