//! STSA's face renderer (SPEC.md section 3) in candle: from the masked source face, the driving heatmap,
//! five reference images with their heatmaps and the audio, the spatial path (AdaAT on the reference
//! features), the temporal path (flow-warped references), their fusion and the SPADE/AdaIN translation
//! network draw the 128x128 face. Module paths mirror the PyTorch state_dict; losses and modules unused at
//! inference (VGG, MINE, `align_layers`, `source_img_encoder`) are not built.

use candle_core::{Module, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, Linear, VarBuilder};

use super::heatmap_generator::{BatchNorm, R, Spec, Stack};
use super::ops::{adaat_sample, bilinear, grid_sample, instance_norm, nearest, pixel_shuffle};
use crate::error::Result;

fn conv(cin: usize, cout: usize, k: usize, stride: usize, padding: usize, vb: VarBuilder) -> Result<Conv2d> {
    Ok(candle_nn::conv2d(cin, cout, k, Conv2dConfig { stride, padding, ..Default::default() }, vb)?)
}

fn conv_no_bias(cin: usize, cout: usize, k: usize, stride: usize, padding: usize, vb: VarBuilder) -> Result<Conv2d> {
    Ok(candle_nn::conv2d_no_bias(cin, cout, k, Conv2dConfig { stride, padding, ..Default::default() }, vb)?)
}

/// `SameBlock2d` / `DownBlock2d`: conv, BatchNorm, ReLU (keys `conv`, `norm`).
struct ConvBn {
    conv: Conv2d,
    norm: BatchNorm,
}

impl ConvBn {
    fn load(cin: usize, cout: usize, k: usize, stride: usize, padding: usize, vb: VarBuilder) -> Result<Self> {
        Ok(ConvBn {
            conv: conv(cin, cout, k, stride, padding, vb.pp("conv"))?,
            norm: BatchNorm::load(cout, vb.pp("norm"))?,
        })
    }
}

impl Module for ConvBn {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.norm.forward(&self.conv.forward(x)?)?.relu()
    }
}

/// `ResBlock2d` (pre-activation): `x + conv2(relu(norm2(conv1(relu(norm1(x))))))`.
struct ResBlock {
    norm1: BatchNorm,
    conv1: Conv2d,
    norm2: BatchNorm,
    conv2: Conv2d,
}

impl ResBlock {
    fn load(c: usize, vb: VarBuilder) -> Result<Self> {
        Ok(ResBlock {
            norm1: BatchNorm::load(c, vb.pp("norm1"))?,
            conv1: conv(c, c, 3, 1, 1, vb.pp("conv1"))?,
            norm2: BatchNorm::load(c, vb.pp("norm2"))?,
            conv2: conv(c, c, 3, 1, 1, vb.pp("conv2"))?,
        })
    }
}

impl Module for ResBlock {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = self.conv1.forward(&self.norm1.forward(x)?.relu()?)?;
        let y = self.conv2.forward(&self.norm2.forward(&y)?.relu()?)?;
        x + y
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

/// The per-channel affine a modulated normalisation applies after instance norm: `IN(x)·scale + shift`.
/// It depends only on the modulating input, so it is computed once and applied to every reference.
struct Affine {
    scale: Tensor,
    shift: Tensor,
}

impl Affine {
    /// `IN(x)·scale + shift`, broadcasting a batch-1 modulation over `x`'s batch.
    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        Ok(instance_norm(x, 1e-5)?.broadcast_mul(&self.scale)?.broadcast_add(&self.shift)?)
    }
}

/// A normalisation layer modulated by a second input (AdaIN's vector, SPADE's map).
trait Modulation: Sized {
    /// The layer's key prefix inside its block (`adain_layer` / `spade_layer`, then `_1`, `_2`).
    const NAME: &'static str;
    fn load(c: usize, m: usize, vb: VarBuilder) -> Result<Self>;
    /// The affine this modulation input gives.
    fn affine(&self, m: &Tensor) -> Result<Affine>;
}

/// `AdaINLayer`: `IN(x)·(1+γ)+β`, γ and β from the modulation vector.
struct AdaInLayer {
    shared: Linear,
    gamma: Linear,
    beta: Linear,
}

impl Modulation for AdaInLayer {
    const NAME: &'static str = "adain_layer";

    fn load(c: usize, m: usize, vb: VarBuilder) -> Result<Self> {
        Ok(AdaInLayer {
            shared: candle_nn::linear(m, 128, vb.pp("mlp_shared.0"))?,
            gamma: candle_nn::linear(128, c, vb.pp("mlp_gamma"))?,
            beta: candle_nn::linear(128, c, vb.pp("mlp_beta"))?,
        })
    }

    fn affine(&self, m: &Tensor) -> Result<Affine> {
        let a = self.shared.forward(m)?.relu()?;
        let gamma = self.gamma.forward(&a)?;
        let (b, c) = gamma.dims2()?;
        let beta = self.beta.forward(&a)?.reshape((b, c, 1, 1))?;
        Ok(Affine { scale: (gamma.reshape((b, c, 1, 1))? + 1.0)?, shift: beta })
    }
}

/// `SPADELayer`: `IN(x) + IN(x)·γ + β`, γ and β convolved from the modulation map (no activation between).
struct SpadeLayer {
    conv1: Conv2d,
    gamma: Conv2d,
    beta: Conv2d,
}

impl Modulation for SpadeLayer {
    const NAME: &'static str = "spade_layer";

    fn load(c: usize, cm: usize, vb: VarBuilder) -> Result<Self> {
        Ok(SpadeLayer {
            conv1: conv(cm, 256, 3, 1, 1, vb.pp("conv1"))?,
            gamma: conv(256, c, 3, 1, 1, vb.pp("gamma"))?,
            beta: conv(256, c, 3, 1, 1, vb.pp("beta"))?,
        })
    }

    fn affine(&self, m: &Tensor) -> Result<Affine> {
        let h = self.conv1.forward(m)?;
        Ok(Affine { scale: (self.gamma.forward(&h)? + 1.0)?, shift: self.beta.forward(&h)? })
    }
}

/// `AdaIN` and `SPADE`: modulated layer, LeakyReLU(0.2), conv, modulated layer, LeakyReLU(0.2), conv.
struct Modulated<L> {
    layer_1: L,
    conv_1: Conv2d,
    layer_2: L,
    conv_2: Conv2d,
}

type AdaIn = Modulated<AdaInLayer>;
type Spade = Modulated<SpadeLayer>;

impl<L: Modulation> Modulated<L> {
    fn load(c: usize, m: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Modulated {
            layer_1: L::load(c, m, vb.pp(format!("{}_1", L::NAME)))?,
            conv_1: conv(c, c, 3, 1, 1, vb.pp("conv_1"))?,
            layer_2: L::load(c, m, vb.pp(format!("{}_2", L::NAME)))?,
            conv_2: conv(c, c, 3, 1, 1, vb.pp("conv_2"))?,
        })
    }

    /// Both layers' affines for modulation input `m`.
    fn affines(&self, m: &Tensor) -> Result<[Affine; 2]> {
        Ok([self.layer_1.affine(m)?, self.layer_2.affine(m)?])
    }

    fn forward(&self, x: &Tensor, m: &Tensor) -> Result<Tensor> {
        self.forward_with(x, &self.affines(m)?)
    }

    fn forward_with(&self, x: &Tensor, [a1, a2]: &[Affine; 2]) -> Result<Tensor> {
        let x = self.conv_1.forward(&leaky(&a1.apply(x)?, 0.2)?)?;
        Ok(self.conv_2.forward(&leaky(&a2.apply(&x)?, 0.2)?)?)
    }
}

/// The original writes π as 3.14159 in AdaAT's rotation.
#[allow(clippy::approx_constant)]
const ORIGINAL_PI: f64 = 3.14159;

/// `AdaAT`: a per-channel scale, rotation and translation predicted from the code, applied by sampling.
struct AdaAt {
    commn: Linear,
    scale: Linear,
    rotation: Linear,
    translation: Linear,
}

impl AdaAt {
    /// The heads are kept in f32 whatever the model's dtype: they place the sampling positions, where
    /// half precision's rounding moves whole features (and they are tiny).
    fn load(c: usize, vb: VarBuilder) -> Result<Self> {
        let vb = vb.set_dtype(candle_core::DType::F32);
        Ok(AdaAt {
            commn: candle_nn::linear(256, 256, vb.pp("commn_linear.0"))?,
            scale: candle_nn::linear(256, c, vb.pp("scale.0"))?,
            rotation: candle_nn::linear(256, c, vb.pp("rotation.0"))?,
            translation: candle_nn::linear(256, 2 * c, vb.pp("translation.0"))?,
        })
    }

    fn forward(&self, x: &Tensor, code: &Tensor) -> Result<Tensor> {
        let q = self.commn.forward(&code.to_dtype(candle_core::DType::F32)?)?.relu()?;
        let scale = (candle_nn::ops::sigmoid(&self.scale.forward(&q)?)? * 2.0)?;
        let angle = (self.rotation.forward(&q)?.tanh()? * ORIGINAL_PI)?;
        let t = self.translation.forward(&q)?.tanh()?;
        let (b, c) = (x.dim(0)?, x.dim(1)?);
        adaat_sample(x, &scale, &angle, &t.reshape((b, c, 2))?)
    }
}

/// `convert_flow_to_deformation`: pixel flow (B, 2, H, W) to a sampling grid (B, H, W, 2).
fn flow_to_deformation(flow: &Tensor) -> Result<Tensor> {
    let (b, _, h, w) = flow.dims4()?;
    let dev = flow.device();
    let xs: Vec<f32> = (0..w).map(|j| 2.0 * (j as f32 / (w - 1) as f32) - 1.0).collect();
    let ys: Vec<f32> = (0..h).map(|i| 2.0 * (i as f32 / (h - 1) as f32) - 1.0).collect();
    let gx = Tensor::new(xs.as_slice(), dev)?.reshape((1, 1, w))?.broadcast_as((b, h, w))?;
    let gy = Tensor::new(ys.as_slice(), dev)?.reshape((1, h, 1))?.broadcast_as((b, h, w))?;
    // In f32 whatever the dtype: these are sampling positions.
    let flow = flow.to_dtype(candle_core::DType::F32)?;
    let fx = (flow.narrow(1, 0, 1)?.squeeze(1)? * (2.0 / (w - 1) as f64))?;
    let fy = (flow.narrow(1, 1, 1)?.squeeze(1)? * (2.0 / (h - 1) as f64))?;
    Ok(Tensor::stack(&[(gx + fx)?, (gy + fy)?], 3)?)
}

/// `warping`: the deformation resized (bilinear) to the source's size when they differ, then sampled.
fn warp(src: &Tensor, deformation: &Tensor) -> Result<Tensor> {
    let (_, dh, dw, _) = deformation.dims4()?;
    let (_, _, h, w) = src.dims4()?;
    let d = if (dh, dw) != (h, w) {
        bilinear(&deformation.permute((0, 3, 1, 2))?.contiguous()?, h, w)?.permute((0, 2, 3, 1))?
    } else {
        deformation.clone()
    };
    grid_sample(src, &d)
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
    conv_4: Conv2d,
    conv_5a: Conv2d,
    conv_5b: Conv2d,
}

/// The three-conv encoder the temporal and translation networks start with: `conv1` 6→32 (7x7), `conv2`
/// 32→128 and `conv3` 128→`c3` (3x3, stride 2), each with its BatchNorm under a sibling key
/// (`conv1_bn`, ...) and ReLU.
fn sibling_encoder(c3: usize, bias: bool, vb: &VarBuilder) -> Result<[ConvBn; 3]> {
    let layer = |cin: usize, cout: usize, k: usize, s: usize, p: usize, name: &str| -> Result<ConvBn> {
        let c =
            if bias { conv(cin, cout, k, s, p, vb.pp(name))? } else { conv_no_bias(cin, cout, k, s, p, vb.pp(name))? };
        Ok(ConvBn { conv: c, norm: BatchNorm::load(cout, vb.pp(format!("{name}_bn")))? })
    };
    Ok([layer(6, 32, 7, 1, 3, "conv1")?, layer(32, 128, 3, 2, 1, "conv2")?, layer(128, c3, 3, 2, 1, "conv3")?])
}

impl Temporal {
    fn load(vb: VarBuilder) -> Result<Self> {
        Ok(Temporal {
            encoder: sibling_encoder(256, true, &vb)?,
            spade_1: Spade::load(128, 3, vb.pp("spade_layer_1"))?,
            adain_1: AdaIn::load(128, 128, vb.pp("adain_1"))?,
            spade_2: Spade::load(128, 3, vb.pp("spade_layer_2"))?,
            adain_2: AdaIn::load(128, 128, vb.pp("adain_2"))?,
            spade_4: Spade::load(32, 3, vb.pp("spade_layer_4"))?,
            conv_4: conv(32, 2, 7, 1, 3, vb.pp("conv_4"))?,
            conv_5a: conv(32, 32, 7, 1, 3, vb.pp("conv_5.0"))?,
            conv_5b: conv(32, 1, 7, 1, 3, vb.pp("conv_5.2"))?,
        })
    }

    /// The part that depends only on the references `imgs`, `heatmaps` (N, 3, 128, 128): their
    /// features at three scales, all references in one batch.
    fn references(&self, imgs: &Tensor, heatmaps: &Tensor) -> Result<TemporalRefs> {
        let [c1, c2, c3] = &self.encoder;
        let h128 = c1.forward(&Tensor::cat(&[imgs, heatmaps], 1)?)?;
        let h64 = c2.forward(&h128)?;
        let h32 = c3.forward(&h64)?;
        Ok(TemporalRefs { imgs: imgs.clone(), h128, h64, h32 })
    }

    /// Driving heatmap (1, 3, 128, 128), audio code (1, 128): the references warped towards the driving
    /// heatmap and blended by their predicted weights. The modulations depend only on the driving
    /// heatmap and the audio, so they are computed once for all references (the original recomputes them
    /// per reference); the references go through as one batch.
    fn forward(
        &self,
        refs: &TemporalRefs,
        driving: &Tensor,
        audio: &Tensor,
        trace: &mut dyn FnMut(&str, &Tensor),
    ) -> Result<[Tensor; 4]> {
        let d64 = nearest(driving, 64, 64)?;
        let x = self.spade_1.forward_with(&refs.h64, &self.spade_1.affines(&d64)?)?;
        let x = self.adain_1.forward_with(&x, &self.adain_1.affines(audio)?)?;
        let x = self.spade_2.forward_with(&x, &self.spade_2.affines(&d64)?)?;
        let x = self.adain_2.forward_with(&x, &self.adain_2.affines(audio)?)?;
        let x = self.spade_4.forward_with(&pixel_shuffle(&x, 2)?, &self.spade_4.affines(driving)?)?;
        let flow = self.conv_4.forward(&x)?;
        let w = candle_nn::ops::sigmoid(&self.conv_5b.forward(&self.conv_5a.forward(&x)?.relu()?)?)?;
        for n in 0..flow.dim(0)? {
            trace(&format!("temporal_module.conv_4#call{n}"), &flow.narrow(0, n, 1)?);
            trace(&format!("temporal_module.conv_5#call{n}"), &w.narrow(0, n, 1)?);
        }
        let def = flow_to_deformation(&flow)?;
        let sum = |t: Tensor| -> Result<Tensor> { Ok(t.sum_keepdim(0)?) };
        let a128 = sum(w.broadcast_mul(&warp(&refs.h128, &def)?)?)?;
        let a64 = sum(nearest(&w, 64, 64)?.broadcast_mul(&warp(&refs.h64, &def)?)?)?;
        let a32 = sum(nearest(&w, 32, 32)?.broadcast_mul(&warp(&refs.h32, &def)?)?)?;
        let aimg = sum(w.broadcast_mul(&warp(&refs.imgs, &def)?)?)?;
        let den = (sum(w)? + 1e-5)?;
        Ok([
            a128.broadcast_div(&den)?,
            a64.broadcast_div(&nearest(&den, 64, 64)?)?,
            a32.broadcast_div(&nearest(&den, 32, 32)?)?,
            aimg.broadcast_div(&den)?,
        ])
    }
}

/// The temporal path's per-reference features, (N, C, H, W) at 128, 64 and 32, and the images.
struct TemporalRefs {
    imgs: Tensor,
    h128: Tensor,
    h64: Tensor,
    h32: Tensor,
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
            spade_1: Spade::load(512, 256, vb.pp("spade_1"))?,
            adain_1: AdaIn::load(512, 128, vb.pp("adain_1"))?,
            spade_2: Spade::load(128, 128, vb.pp("spade_2"))?,
            adain_2: AdaIn::load(128, 128, vb.pp("adain_2"))?,
            spade_3: Spade::load(32, 32, vb.pp("spade_3"))?,
            adain_3: AdaIn::load(32, 128, vb.pp("adain_3"))?,
            conv_last: conv_no_bias(32, 3, 7, 1, 3, vb.pp("conv_last"))?,
        })
    }

    fn forward(&self, x: &Tensor, g: &[Tensor; 3], audio: &Tensor) -> Result<Tensor> {
        let x = self.encoder.iter().try_fold(x.clone(), |x, c| c.forward(&x))?;
        let x = self.adain_1.forward(&self.spade_1.forward(&x, &g[2])?, audio)?;
        let x = self.adain_2.forward(&self.spade_2.forward(&pixel_shuffle(&x, 2)?, &g[1])?, audio)?;
        let x = self.adain_3.forward(&self.spade_3.forward(&pixel_shuffle(&x, 2)?, &g[0])?, audio)?;
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
    appearance: [(Seq, AdaAt, Seq); 3],
    temporal: Temporal,
    fuse: [Seq; 3],
    translation: Translation,
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
        let scale = |size: usize, c: usize| -> Result<(Seq, AdaAt, Seq)> {
            let ac = sm.pp(format!("appearance_conv_list_{size}"));
            Ok((
                Seq(res_blocks(c, 0..2, ac.pp(0))?),
                AdaAt::load(c, sm.pp(format!("adaAT_{size}")))?,
                Seq(res_blocks(c, 0..2, ac.pp(1))?),
            ))
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
            temporal: Temporal::load(vb.pp("temporal_module"))?,
            fuse: [fuse(128, 32)?, fuse(64, 128)?, fuse(32, 256)?],
            translation: Translation::load(vb.pp("translation"))?,
        })
    }

    /// Everything that depends only on the references `ref_imgs`, `ref_heatmaps` (1, N, 3, 128, 128):
    /// computed once per reference set ([`FaceRenderer::render`] then skips about 31 GFLOP a frame).
    pub fn references(&self, ref_imgs: &Tensor, ref_heatmaps: &Tensor) -> Result<References> {
        self.references_traced(ref_imgs, ref_heatmaps, &mut |_, _| {})
    }

    fn references_traced(
        &self,
        ref_imgs: &Tensor,
        ref_heatmaps: &Tensor,
        trace: &mut dyn FnMut(&str, &Tensor),
    ) -> Result<References> {
        let _span = tracing::debug_span!("face_renderer_references").entered();
        let n = ref_imgs.dim(1)?;
        // Reference images channel-major, reference heatmaps ref-major (SPEC quirk).
        let channel_major = Tensor::cat(
            &(0..3).map(|c| ref_imgs.narrow(2, c, 1)?.squeeze(2)).collect::<candle_core::Result<Vec<_>>>()?,
            1,
        )?;
        let f128 = self.ref_conv1.forward(&channel_major)?;
        let f64_ = self.ref_conv2.forward(&f128)?;
        let f32_ = self.ref_conv3.forward(&f64_)?;
        trace("ref_imgs_encoder#call0.0", &f128);
        trace("ref_imgs_encoder#call0.1", &f64_);
        trace("ref_imgs_encoder#call0.2", &f32_);
        let heatmap = self.heatmap_ref.forward(&ref_heatmaps.reshape((1, 3 * n, 128, 128))?)?;
        trace("heatmap_encoder_ref#call0", &heatmap);
        let mut appearance = Vec::with_capacity(3);
        for ((pre, _, _), f) in self.appearance.iter().zip([&f128, &f64_, &f32_]) {
            appearance.push(pre.forward(f)?);
        }
        let temporal = self.temporal.references(&ref_imgs.squeeze(0)?, &ref_heatmaps.squeeze(0)?)?;
        Ok(References {
            f32: f32_,
            heatmap,
            appearance: appearance.try_into().expect("three scales"),
            temporal,
            count: n,
        })
    }

    /// One face: the source `frame` and `driving` heatmap (1, 3, 128, 128, values 0..1, BGR as the
    /// original), the frame's audio chunk `audio_w2v` (1, 768, 10) and the cached `refs`; returns the
    /// generated face (1, 3, 128, 128).
    pub fn render(&self, refs: &References, frame: &Tensor, driving: &Tensor, audio_w2v: &Tensor) -> Result<Tensor> {
        self.render_traced(refs, frame, driving, audio_w2v, &mut |_, _| {})
    }

    fn render_traced(
        &self,
        refs: &References,
        frame: &Tensor,
        driving: &Tensor,
        audio_w2v: &Tensor,
        trace: &mut dyn FnMut(&str, &Tensor),
    ) -> Result<Tensor> {
        let _span = tracing::debug_span!("face_renderer", refs = refs.count).entered();
        // The source with its lower half masked.
        let masked = Tensor::cat(&[frame.narrow(2, 0, 64)?, frame.narrow(2, 64, 64)?.zeros_like()?], 2)?;
        let drv_hm = self.heatmap_tar.forward(driving)?;
        trace("heatmap_encoder_tar#call0", &drv_hm);
        let audio = self.audio.forward(audio_w2v)?;
        trace("audio_encoder#call0", &audio);
        let audio = audio.flatten_from(1)?;
        let align = self.alignment.forward(&Tensor::cat(&[&refs.f32, &refs.heatmap, &drv_hm], 1)?)?;
        trace("spatial_module.alignment_encoder#call0", &align);
        let code = Tensor::cat(&[&audio, &align.mean_keepdim(3)?.mean_keepdim(2)?.flatten_from(1)?], 1)?;
        let mut spatial = Vec::new();
        for ((_, adaat, post), (pre, size)) in self.appearance.iter().zip(refs.appearance.iter().zip([128, 64, 32])) {
            let x = adaat.forward(pre, &code)?;
            trace(&format!("spatial_module.adaAT_{size}#call0"), &x);
            spatial.push(post.forward(&x)?);
        }
        for (i, s) in spatial.iter().enumerate() {
            trace(&format!("spatial_module#call0.{i}"), s);
        }
        let [w128, w64, w32, wimg] = self.temporal.forward(&refs.temporal, driving, &audio, trace)?;
        trace("temporal_module#call0.0.0", &w128);
        trace("temporal_module#call0.0.1", &w64);
        trace("temporal_module#call0.0.2", &w32);
        trace("temporal_module#call0.1", &wimg);
        let mut fused = Vec::new();
        for ((f, (s, w)), size) in self.fuse.iter().zip(spatial.iter().zip([&w128, &w64, &w32])).zip([128, 64, 32]) {
            let g = f.forward(&Tensor::cat(&[s, w], 1)?)?;
            trace(&format!("fuse_{size}#call0"), &g);
            fused.push(g);
        }
        let fused: [Tensor; 3] = fused.try_into().expect("three scales");
        self.translation.forward(&Tensor::cat(&[&masked, driving], 1)?, &fused, &audio)
    }

    /// The fixtures' inputs: `T_frame_img`, `T_driving_heatmap` (1, 1, 3, 128, 128), `ref_N_frame_img`,
    /// `ref_N_frame_heatmap` (1, N, 3, 128, 128), `T_audio_w2v` (1, 1, 768, 10); returns `generated_face`
    /// (1, 3, 1, 128, 128). Intermediates go to `trace` under the fixtures' names.
    pub fn forward_traced(
        &self,
        frame: &Tensor,
        driving: &Tensor,
        ref_imgs: &Tensor,
        ref_heatmaps: &Tensor,
        audio_w2v: &Tensor,
        trace: &mut dyn FnMut(&str, &Tensor),
    ) -> Result<Tensor> {
        let refs = self.references_traced(ref_imgs, ref_heatmaps, trace)?;
        let out = self.render_traced(&refs, &frame.squeeze(1)?, &driving.squeeze(1)?, &audio_w2v.squeeze(1)?, trace)?;
        Ok(out.unsqueeze(2)?)
    }
}

/// What [`FaceRenderer::references`] caches for a reference set.
pub struct References {
    /// The reference images' encoding at 32x32, (1, 256, 32, 32).
    f32: Tensor,
    /// The reference heatmaps' encoding, (1, 32, 32, 32).
    heatmap: Tensor,
    /// The spatial path's appearance features before AdaAT, at 128, 64 and 32.
    appearance: [Tensor; 3],
    temporal: TemporalRefs,
    count: usize,
}
