//! Building blocks of STSA's networks in eval mode, shaped for a GPU: a BatchNorm that follows a
//! convolution is folded into it (one convolution with a bias instead of a convolution and two more
//! operations), and layers that read the same input are merged into one matrix product. The folding
//! is done in f32 from the checkpoint's values, then the weights take the model's dtype.

use candle_core::{DType, Module, Tensor};
use candle_nn::{Conv1d, Conv1dConfig, Conv2dConfig, ConvTranspose2dConfig, Linear, VarBuilder};

use super::conv::{Conv2d, ConvTranspose2d};
use crate::error::Result;

/// BatchNorm in eval mode: a per-channel scale and shift (f32).
pub(crate) struct BatchNorm {
    scale: Tensor,
    shift: Tensor,
}

impl BatchNorm {
    pub(crate) fn load(c: usize, vb: VarBuilder) -> Result<Self> {
        let vb = vb.set_dtype(DType::F32);
        let (w, b) = (vb.get(c, "weight")?, vb.get(c, "bias")?);
        let (rm, rv) = (vb.get(c, "running_mean")?, vb.get(c, "running_var")?);
        let scale = w.broadcast_div(&(rv + 1e-5)?.sqrt()?)?;
        let shift = (b - rm.mul(&scale)?)?;
        Ok(BatchNorm { scale, shift })
    }

    /// `weight` (output channels on `out_dim`) and `bias` followed by this norm, as one: `weight·s`,
    /// `bias·s + t`, in `dtype`.
    fn fold(&self, weight: &Tensor, bias: Option<&Tensor>, out_dim: usize, dtype: DType) -> Result<(Tensor, Tensor)> {
        let mut shape = vec![1; weight.rank()];
        shape[out_dim] = self.scale.dim(0)?;
        let weight = weight.broadcast_mul(&self.scale.reshape(shape)?)?;
        let bias = match bias {
            Some(b) => ((b * &self.scale)? + &self.shift)?,
            None => self.shift.clone(),
        };
        Ok((weight.to_dtype(dtype)?, bias.to_dtype(dtype)?))
    }

    /// The norm on its own (before an activation), for (N, C, ...) in `dtype`.
    pub(crate) fn standalone(&self, rank: usize, dtype: DType) -> Result<ChannelAffine> {
        let mut shape = vec![1; rank];
        shape[1] = self.scale.dim(0)?;
        Ok(ChannelAffine {
            scale: self.scale.reshape(shape.as_slice())?.to_dtype(dtype)?,
            shift: self.shift.reshape(shape.as_slice())?.to_dtype(dtype)?,
        })
    }
}

/// `x·scale + shift` per channel (a BatchNorm that no convolution precedes).
pub(crate) struct ChannelAffine {
    scale: Tensor,
    shift: Tensor,
}

impl Module for ChannelAffine {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.broadcast_mul(&self.scale)?.broadcast_add(&self.shift)
    }
}

/// A 2-D convolution followed by the BatchNorm at `bn`, folded.
pub(crate) fn conv2d_bn(
    (cin, cout, k): (usize, usize, usize),
    config: Conv2dConfig,
    bias: bool,
    conv: VarBuilder,
    bn: VarBuilder,
) -> Result<Conv2d> {
    let dtype = conv.dtype();
    let c = if bias {
        candle_nn::conv2d(cin, cout, k, config, conv.set_dtype(DType::F32))?
    } else {
        candle_nn::conv2d_no_bias(cin, cout, k, config, conv.set_dtype(DType::F32))?
    };
    let (w, b) = BatchNorm::load(cout, bn)?.fold(c.weight(), c.bias(), 0, dtype)?;
    Ok(Conv2d::new(w, Some(b), config))
}

/// A 1-D convolution followed by the BatchNorm at `bn`, folded.
pub(crate) fn conv1d_bn(
    (cin, cout, k): (usize, usize, usize),
    config: Conv1dConfig,
    conv: VarBuilder,
    bn: VarBuilder,
) -> Result<Conv1d> {
    let dtype = conv.dtype();
    let c = candle_nn::conv1d(cin, cout, k, config, conv.set_dtype(DType::F32))?;
    let (w, b) = BatchNorm::load(cout, bn)?.fold(c.weight(), c.bias(), 0, dtype)?;
    Ok(Conv1d::new(w, Some(b), config))
}

/// A transposed 2-D convolution followed by the BatchNorm at `bn`, folded (its weight is (cin, cout, k, k)).
pub(crate) fn conv_t2d_bn(
    (cin, cout, k): (usize, usize, usize),
    config: ConvTranspose2dConfig,
    conv: VarBuilder,
    bn: VarBuilder,
) -> Result<ConvTranspose2d> {
    let dtype = conv.dtype();
    let c = candle_nn::conv_transpose2d(cin, cout, k, config, conv.set_dtype(DType::F32))?;
    let (w, b) = BatchNorm::load(cout, bn)?.fold(c.weight(), c.bias(), 1, dtype)?;
    Ok(ConvTranspose2d::new(w, Some(b), config)?)
}

/// How layers are merged into one: all reading the same input, or each its own slice of it.
#[derive(Clone, Copy, PartialEq)]
enum Inputs {
    Shared,
    /// `parts[i]` reads the i-th slice of the input, in order: the merged weight is block-diagonal.
    Split,
}

/// The weights (out, in, ...) and biases of layers merged into one layer whose outputs are theirs
/// concatenated; a bias missing beside others is zeros.
fn merged(parts: &[(&Tensor, Option<&Tensor>)], inputs: Inputs) -> Result<(Tensor, Option<Tensor>)> {
    let widths: Vec<usize> = parts.iter().map(|(w, _)| w.dim(1)).collect::<candle_core::Result<_>>()?;
    let total: usize = widths.iter().sum();
    let mut start = 0;
    let mut weights = Vec::with_capacity(parts.len());
    for ((w, _), &width) in parts.iter().zip(&widths) {
        weights.push(match inputs {
            Inputs::Shared => (*w).clone(),
            Inputs::Split => w.pad_with_zeros(1, start, total - start - width)?,
        });
        start += width;
    }
    let bias = if parts.iter().any(|(_, b)| b.is_some()) {
        let biases = parts
            .iter()
            .map(|(w, b)| match b {
                Some(b) => Ok((*b).clone()),
                None => Tensor::zeros(w.dim(0)?, w.dtype(), w.device()),
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Some(Tensor::cat(&biases, 0)?)
    } else {
        None
    };
    Ok((Tensor::cat(&weights, 0)?, bias))
}

fn merged_conv2d(parts: &[Conv2d], inputs: Inputs) -> Result<Conv2d> {
    let (weight, bias) = merged(&parts.iter().map(|c| (c.weight(), c.bias())).collect::<Vec<_>>(), inputs)?;
    Ok(Conv2d::new(weight, bias, *parts[0].config()))
}

fn merged_linear(parts: &[&Linear], inputs: Inputs) -> Result<Linear> {
    let (weight, bias) = merged(&parts.iter().map(|l| (l.weight(), l.bias())).collect::<Vec<_>>(), inputs)?;
    Ok(Linear::new(weight, bias))
}

/// Convolutions reading the same input, as one with their outputs stacked on the channel dimension
/// (same kernel size and configuration).
pub(crate) fn stacked_conv2d(parts: &[Conv2d]) -> Result<Conv2d> {
    merged_conv2d(parts, Inputs::Shared)
}

/// Convolutions each reading its own slice of the input channels (`parts[i]` the i-th, in order), as one
/// block-diagonal convolution with their outputs stacked (same kernel size and configuration).
pub(crate) fn block_diagonal_conv2d(parts: &[Conv2d]) -> Result<Conv2d> {
    merged_conv2d(parts, Inputs::Split)
}

/// Linear layers reading the same input, as one with their outputs concatenated.
pub(crate) fn stacked_linear(parts: &[&Linear]) -> Result<Linear> {
    merged_linear(parts, Inputs::Shared)
}

/// Linear layers each reading its own slice of the input (`parts[i]` the i-th, in order), as one
/// block-diagonal layer with their outputs concatenated.
pub(crate) fn block_diagonal_linear(parts: &[&Linear]) -> Result<Linear> {
    merged_linear(parts, Inputs::Split)
}

/// `t` with `f` applied to its rows `rows` (dimension 0).
fn map_rows(
    t: &Tensor,
    rows: std::ops::Range<usize>,
    f: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
) -> Result<Tensor> {
    let n = t.dim(0)?;
    let mut parts = Vec::with_capacity(3);
    if rows.start > 0 {
        parts.push(t.narrow(0, 0, rows.start)?);
    }
    parts.push(f(&t.narrow(0, rows.start, rows.len())?)?);
    if rows.end < n {
        parts.push(t.narrow(0, rows.end, n - rows.end)?);
    }
    Ok(Tensor::cat(&parts, 0)?)
}

/// A bias with `by` added to its entries `rows` (e.g. the `1 +` of a modulation's scale, folded into
/// the layer that makes it).
pub(crate) fn shifted(bias: &Tensor, rows: std::ops::Range<usize>, by: f64) -> Result<Tensor> {
    map_rows(bias, rows, |t| t + by)
}

enum Conv {
    D1(Conv1d),
    D2(Conv2d),
    T2(ConvTranspose2d),
}

#[derive(Clone, Copy)]
pub(crate) enum Act {
    Relu,
    Tanh,
}

pub(crate) const R: Act = Act::Relu;

/// STSA's `Conv1d` / `Conv2d` / `ConvT2d` block: convolution, BatchNorm (folded), optional residual,
/// activation.
pub(crate) struct Block {
    conv: Conv,
    residual: bool,
    act: Act,
}

/// (cin, cout, kernel, stride, padding, residual, activation)
pub(crate) type Spec = (usize, usize, usize, usize, usize, bool, Act);

impl Block {
    pub(crate) fn conv1d(s: Spec, vb: VarBuilder) -> Result<Self> {
        let (cin, cout, k, stride, padding, residual, act) = s;
        let cfg = Conv1dConfig { stride, padding, ..Default::default() };
        let conv = conv1d_bn((cin, cout, k), cfg, vb.pp("conv_block.0"), vb.pp("conv_block.1"))?;
        Ok(Block { conv: Conv::D1(conv), residual, act })
    }

    pub(crate) fn conv2d(s: Spec, vb: VarBuilder) -> Result<Self> {
        let (cin, cout, k, stride, padding, residual, act) = s;
        let cfg = Conv2dConfig { stride, padding, ..Default::default() };
        let conv = conv2d_bn((cin, cout, k), cfg, true, vb.pp("conv_block.0"), vb.pp("conv_block.1"))?;
        Ok(Block { conv: Conv::D2(conv), residual, act })
    }

    pub(crate) fn conv_t2d(cin: usize, cout: usize, stride: usize, padding: usize, vb: VarBuilder) -> Result<Self> {
        let cfg = ConvTranspose2dConfig { stride, padding, ..Default::default() };
        let conv = conv_t2d_bn((cin, cout, 4), cfg, vb.pp("convT_block.0"), vb.pp("convT_block.1"))?;
        Ok(Block { conv: Conv::T2(conv), residual: false, act: Act::Relu })
    }
}

impl Module for Block {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut y = match &self.conv {
            Conv::D1(c) => c.forward(x)?,
            Conv::D2(c) => c.forward(x)?,
            Conv::T2(c) => c.forward(x)?,
        };
        if self.residual {
            y = (y + x)?;
        }
        match self.act {
            Act::Relu => y.relu(),
            Act::Tanh => y.tanh(),
        }
    }
}

/// A sequence of blocks keyed `0`, `1`, ... as `nn.Sequential`.
pub(crate) struct Stack(Vec<Block>);

impl Stack {
    pub(crate) fn load(specs: &[Spec], two_d: bool, vb: VarBuilder) -> Result<Self> {
        let blocks = specs
            .iter()
            .enumerate()
            .map(|(i, &s)| if two_d { Block::conv2d(s, vb.pp(i)) } else { Block::conv1d(s, vb.pp(i)) })
            .collect::<Result<_>>()?;
        Ok(Stack(blocks))
    }
}

impl Module for Stack {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.0.iter().try_fold(x.clone(), |x, b| b.forward(&x))
    }
}

/// A linear layer whose outputs `rows` are multiplied by `factor` (a scale folded into the weights).
pub(crate) fn scaled_rows(linear: &Linear, rows: std::ops::Range<usize>, factor: f64) -> Result<Linear> {
    let scale = |t: &Tensor| map_rows(t, rows.clone(), |r| r * factor);
    Ok(Linear::new(scale(linear.weight())?, linear.bias().map(scale).transpose()?))
}

/// Multi-head self-attention from a packed projection `qkv` (B, L, 3·D: queries, keys, values), the
/// queries already scaled by 1/√(D/heads): `softmax(q·kᵀ)·v` with the heads merged back, (B, L, D).
pub(crate) fn packed_attention(qkv: &Tensor, heads: usize) -> Result<Tensor> {
    let (b, l, d3) = qkv.dims3()?;
    let (d, hd) = (d3 / 3, d3 / 3 / heads);
    let qkv = qkv.reshape((b, l, 3, heads, hd))?.permute((2, 0, 3, 1, 4))?.contiguous()?;
    let (q, k, v) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
    let w = candle_nn::ops::softmax_last_dim(&q.matmul(&k.t()?)?)?;
    Ok(w.matmul(&v)?.transpose(1, 2)?.reshape((b, l, d))?)
}
