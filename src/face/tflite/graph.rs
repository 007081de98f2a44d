//! Runs a parsed TFLite graph on candle tensors: a small interpreter for the operator subset of
//! MediaPipe's face models (CONV_2D, DEPTHWISE_CONV_2D, MAX_POOL_2D, ADD, PAD, RELU, PRELU, RESHAPE,
//! CONCATENATION; DEQUANTIZE is resolved at load time).
//!
//! Why an interpreter and not the two networks written out by hand: both models are plain sequences of
//! these nine operators, so one interpreter serves both, follows the file exactly (no hand-copied layer
//! list to get wrong) and names the operator when a file holds something else. Four-dimensional tensors
//! are kept NCHW inside (candle's convolution layout) and converted at RESHAPE/CONCATENATION and at the
//! outputs, so results keep TFLite's NHWC order. Padding is TensorFlow's: SAME puts the extra pixel at the
//! bottom/right. Convolutions run as matrix products (1x1 directly, others over an unfolded input);
//! depthwise convolutions and PReLU run in direct kernels (candle's grouped convolution runs one
//! convolution per channel, about 20x slower here).

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, Device, Layout, Shape, Tensor};

use super::kernels::{self, DwShape};
use super::model::{Const, OpKind, Padding, TfliteModel};
use crate::error::{Error, Result};

/// How long one operator of a run took ([`Graph::profile`]).
#[derive(Clone, Debug, PartialEq)]
pub struct StepTime {
    /// The operator: `conv` (a k x k convolution), `conv1x1`, `depthwise`, `max_pool`, `add`, `relu`,
    /// `prelu`, `pad`, `reshape` or `concat`.
    pub op: &'static str,
    /// Its output's shape (NCHW for 4-D tensors).
    pub output: Vec<usize>,
    pub nanos: u64,
}

/// Zero padding of a 2-D window operation: (top, bottom, left, right).
type Pads = [usize; 4];

fn same_or_valid(padding: Padding, input: (usize, usize), kernel: (usize, usize), stride: (usize, usize)) -> Pads {
    match padding {
        Padding::Valid => [0; 4],
        Padding::Same => {
            let axis = |i: usize, k: usize, s: usize| {
                let out = i.div_ceil(s);
                let total = ((out - 1) * s + k).saturating_sub(i);
                (total / 2, total - total / 2)
            };
            let (t, b) = axis(input.0, kernel.0, stride.0);
            let (l, r) = axis(input.1, kernel.1, stride.1);
            [t, b, l, r]
        }
    }
}

enum Step {
    /// A k x k convolution: the input unfolded, then a 1x1 convolution over the unfolded channels.
    Conv {
        x: usize,
        y: usize,
        im2col: Im2col,
        op: Pointwise,
    },
    Pointwise {
        x: usize,
        y: usize,
        op: Pointwise,
    },
    Depthwise {
        x: usize,
        y: usize,
        op: Depthwise,
    },
    MaxPool {
        x: usize,
        y: usize,
        kernel: (usize, usize),
        stride: (usize, usize),
    },
    Add {
        a: usize,
        b: usize,
        y: usize,
        relu: bool,
    },
    Relu {
        x: usize,
        y: usize,
    },
    Prelu {
        x: usize,
        y: usize,
        alpha: Prelu,
    },
    /// Zero padding per NCHW dim (before, after).
    Pad {
        x: usize,
        y: usize,
        pads: [(usize, usize); 4],
    },
    Reshape {
        x: usize,
        y: usize,
        shape: Vec<usize>,
    },
    Concat {
        xs: Vec<usize>,
        y: usize,
        axis: usize,
    },
}

/// A model ready to run.
pub struct Graph {
    steps: Vec<Step>,
    /// Rank of each tensor as TFLite declares it (4 = stored NCHW here).
    ranks: Vec<usize>,
    input: usize,
    input_shape: Vec<usize>,
    outputs: Vec<usize>,
    /// Per step, the tensors it reads for the last time (the run drops them then, so the allocator hands
    /// their memory, still in cache, to the next operators).
    last_reads: Vec<Vec<usize>>,
    device: Device,
}

fn nhwc_axis_to_nchw(axis: usize) -> usize {
    [0, 2, 3, 1][axis]
}

impl Graph {
    /// Prepares `model` to run on `device`; `file` names it in errors.
    pub fn new(model: &TfliteModel, device: &Device, file: &str) -> Result<Self> {
        let bad = |what: String| Error::Model(format!("{file}: {what}"));
        let shape = |t: usize| model.tensors[t].shape.clone();
        let f32_const = |t: usize, what: &str| -> Result<Vec<f32>> {
            match &model.consts[t] {
                Some(Const::F32(v)) => Ok(v.clone()),
                _ => Err(bad(format!("{what} `{}` is not a float constant", model.tensors[t].name))),
            }
        };
        let [input] = model.inputs.as_slice() else {
            return Err(bad(format!("{} inputs; one expected", model.inputs.len())));
        };
        let mut steps = Vec::with_capacity(model.ops.len());
        for (index, op) in model.ops.iter().enumerate() {
            let x = op.inputs[0];
            let y = *op.outputs.first().ok_or_else(|| bad(format!("operator {index} has no output")))?;
            let xs = shape(x);
            let hw = |s: &[usize]| -> Result<(usize, usize)> {
                match s {
                    [_, h, w, _] => Ok((*h, *w)),
                    _ => Err(bad(format!("operator {index}: input {s:?} is not NHWC"))),
                }
            };
            let step = match &op.kind {
                OpKind::Conv2d { stride, padding, relu } | OpKind::DepthwiseConv2d { stride, padding, relu } => {
                    let depthwise = matches!(op.kind, OpKind::DepthwiseConv2d { .. });
                    let (wt, bt) =
                        (op.inputs[1], *op.inputs.get(2).ok_or_else(|| bad(format!("operator {index}: no bias")))?);
                    let ws = shape(wt);
                    let [o, kh, kw, i] = ws[..] else { return Err(bad(format!("operator {index}: kernel {ws:?}"))) };
                    let w = f32_const(wt, "kernel")?;
                    let b = f32_const(bt, "bias")?;
                    let pads = same_or_valid(*padding, hw(&xs)?, (kh, kw), *stride);
                    if depthwise {
                        // [1, kh, kw, C] -> per channel [C][kh][kw].
                        let c = i;
                        let mut wc = vec![0.0; c * kh * kw];
                        for ky in 0..kh {
                            for kx in 0..kw {
                                for ch in 0..c {
                                    wc[(ch * kh + ky) * kw + kx] = w[(ky * kw + kx) * c + ch];
                                }
                            }
                        }
                        let _ = o;
                        Step::Depthwise {
                            x,
                            y,
                            op: Depthwise {
                                w: Arc::new(wc),
                                b: Arc::new(b),
                                kh,
                                kw,
                                stride: *stride,
                                pads,
                                relu: *relu,
                            },
                        }
                    } else if stride.0 != stride.1 {
                        return Err(bad(format!("operator {index}: unequal strides {stride:?}")));
                    } else if kh == 1 && kw == 1 && *stride == (1, 1) {
                        Step::Pointwise { x, y, op: Pointwise { w: Arc::new(w), b: Arc::new(b), relu: *relu } }
                    } else {
                        // OHWI -> [O][C*kh*kw], rows in im2col order (channel, ky, kx).
                        let w = Tensor::from_vec(w, (o, kh, kw, i), device)?
                            .permute((0, 3, 1, 2))?
                            .contiguous()?
                            .reshape((o, i * kh * kw))?;
                        Step::Conv {
                            x,
                            y,
                            im2col: Im2col { kh, kw, stride: stride.0, pads },
                            op: Pointwise { w: Arc::new(w.flatten_all()?.to_vec1()?), b: Arc::new(b), relu: *relu },
                        }
                    }
                }
                OpKind::MaxPool2d { filter, stride, padding } => {
                    if same_or_valid(*padding, hw(&xs)?, *filter, *stride) != [0; 4] {
                        return Err(bad(format!("operator {index}: padded max pooling is not supported")));
                    }
                    Step::MaxPool { x, y, kernel: *filter, stride: *stride }
                }
                OpKind::Add { relu } => Step::Add { a: x, b: op.inputs[1], y, relu: *relu },
                OpKind::Relu => Step::Relu { x, y },
                OpKind::Prelu => Step::Prelu { x, y, alpha: Prelu(Arc::new(f32_const(op.inputs[1], "PReLU slope")?)) },
                OpKind::Pad => {
                    let Some(Const::I32(p)) = &model.consts[op.inputs[1]] else {
                        return Err(bad(format!("operator {index}: PAD without constant paddings")));
                    };
                    if p.len() != 8 || p.iter().any(|&v| v < 0) {
                        return Err(bad(format!("operator {index}: paddings {p:?}")));
                    }
                    let mut pads = [(0, 0); 4];
                    for axis in 0..4 {
                        pads[nhwc_axis_to_nchw(axis)] = (p[2 * axis] as usize, p[2 * axis + 1] as usize);
                    }
                    Step::Pad { x, y, pads }
                }
                OpKind::Reshape { new_shape } => {
                    let total: usize = xs.iter().product();
                    let known: usize = new_shape.iter().filter(|&&d| d >= 0).map(|&d| d as usize).product();
                    let shape: Vec<usize> =
                        new_shape.iter().map(|&d| if d < 0 { total / known.max(1) } else { d as usize }).collect();
                    if shape.iter().product::<usize>() != total {
                        return Err(bad(format!("operator {index}: cannot reshape {xs:?} to {new_shape:?}")));
                    }
                    Step::Reshape { x, y, shape }
                }
                OpKind::Concatenation { axis } => {
                    let rank = xs.len() as i32;
                    let axis = if *axis < 0 { axis + rank } else { *axis } as usize;
                    let axis = if rank == 4 { nhwc_axis_to_nchw(axis) } else { axis };
                    Step::Concat { xs: op.inputs.clone(), y, axis }
                }
            };
            steps.push(step);
        }
        let mut last_read = vec![None; model.tensors.len()];
        for (k, step) in steps.iter().enumerate() {
            for t in step.inputs() {
                last_read[t] = Some(k);
            }
        }
        let mut last_reads = vec![Vec::new(); steps.len()];
        for (t, k) in last_read.into_iter().enumerate() {
            if let Some(k) = k.filter(|_| !model.outputs.contains(&t)) {
                last_reads[k].push(t);
            }
        }
        Ok(Graph {
            last_reads,
            steps,
            ranks: model.tensors.iter().map(|t| t.shape.len()).collect(),
            input: *input,
            input_shape: shape(*input),
            outputs: model.outputs.clone(),
            device: device.clone(),
        })
    }

    /// The input shape (NHWC).
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Runs the graph on an NHWC input; returns the outputs in the model's order and layout.
    pub fn run(&self, input: &Tensor) -> Result<Vec<Tensor>> {
        self.run_timed(input, None)
    }

    /// Runs the graph as [`Graph::run`] does and says how long each operator took, in order.
    pub fn profile(&self, input: &Tensor) -> Result<(Vec<Tensor>, Vec<StepTime>)> {
        let mut times = Vec::with_capacity(self.steps.len());
        let outputs = self.run_timed(input, Some(&mut times))?;
        Ok((outputs, times))
    }

    fn run_timed(&self, input: &Tensor, mut times: Option<&mut Vec<StepTime>>) -> Result<Vec<Tensor>> {
        if input.dims() != self.input_shape.as_slice() {
            return Err(Error::Model(format!(
                "input {:?} given; the model takes {:?}",
                input.dims(),
                self.input_shape
            )));
        }
        let mut values: Vec<Option<Tensor>> = vec![None; self.ranks.len()];
        values[self.input] = Some(input.permute((0, 3, 1, 2))?.contiguous()?);
        let get = |values: &[Option<Tensor>], t: usize| -> Result<Tensor> {
            values[t].clone().ok_or_else(|| Error::Model(format!("tensor {t} is used before it is computed")))
        };
        for (k, step) in self.steps.iter().enumerate() {
            let started = times.is_some().then(std::time::Instant::now);
            let (y, value) = match step {
                Step::Conv { x, y, im2col, op } => {
                    // A matrix product over the unfolded input: the few-channel first layers run ~10x
                    // faster this way than through candle's convolution.
                    let v = get(&values, *x)?;
                    let (ho, wo) = im2col.output_size(v.dim(2)?, v.dim(3)?);
                    let cols = v.apply_op1_no_bwd(im2col)?;
                    let k = cols.dim(0)?;
                    (*y, cols.reshape((1, k, ho, wo))?.apply_op1_no_bwd(op)?)
                }
                Step::Pointwise { x, y, op } => (*y, get(&values, *x)?.apply_op1_no_bwd(op)?),
                Step::Depthwise { x, y, op } => (*y, get(&values, *x)?.apply_op1_no_bwd(op)?),
                Step::MaxPool { x, y, kernel, stride } => {
                    (*y, get(&values, *x)?.max_pool2d_with_stride(*kernel, *stride)?)
                }
                Step::Add { a, b, y, relu } => {
                    let v = get(&values, *a)?.add(&get(&values, *b)?)?;
                    (*y, if *relu { v.relu()? } else { v })
                }
                Step::Relu { x, y } => (*y, get(&values, *x)?.relu()?),
                Step::Prelu { x, y, alpha } => (*y, get(&values, *x)?.apply_op1_no_bwd(alpha)?),
                Step::Pad { x, y, pads } => {
                    let mut v = get(&values, *x)?;
                    for (dim, &(before, after)) in pads.iter().enumerate() {
                        if before + after > 0 {
                            v = v.pad_with_zeros(dim, before, after)?;
                        }
                    }
                    (*y, v)
                }
                Step::Reshape { x, y, shape } => {
                    let mut v = get(&values, *x)?;
                    if self.ranks[*x] == 4 {
                        v = v.permute((0, 2, 3, 1))?.contiguous()?;
                    }
                    let mut v = v.reshape(shape.as_slice())?;
                    if shape.len() == 4 {
                        v = v.permute((0, 3, 1, 2))?.contiguous()?;
                    }
                    (*y, v)
                }
                Step::Concat { xs, y, axis } => {
                    let parts = xs.iter().map(|&t| get(&values, t)).collect::<Result<Vec<_>>>()?;
                    (*y, Tensor::cat(&parts, *axis)?)
                }
            };
            if let (Some(times), Some(started)) = (times.as_deref_mut(), started) {
                times.push(StepTime {
                    op: step.name(),
                    output: value.dims().to_vec(),
                    nanos: started.elapsed().as_nanos() as u64,
                });
            }
            values[y] = Some(value);
            for &t in &self.last_reads[k] {
                values[t] = None;
            }
        }
        self.outputs
            .iter()
            .map(|&t| {
                let v = get(&values, t)?;
                Ok(if self.ranks[t] == 4 { v.permute((0, 2, 3, 1))?.contiguous()? } else { v })
            })
            .collect()
    }
}

impl Step {
    /// The tensors the step reads.
    fn inputs(&self) -> Vec<usize> {
        match self {
            Step::Conv { x, .. }
            | Step::Pointwise { x, .. }
            | Step::Depthwise { x, .. }
            | Step::MaxPool { x, .. }
            | Step::Relu { x, .. }
            | Step::Prelu { x, .. }
            | Step::Pad { x, .. }
            | Step::Reshape { x, .. } => vec![*x],
            Step::Add { a, b, .. } => vec![*a, *b],
            Step::Concat { xs, .. } => xs.clone(),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Step::Conv { .. } => "conv",
            Step::Pointwise { .. } => "conv1x1",
            Step::Depthwise { .. } => "depthwise",
            Step::MaxPool { .. } => "max_pool",
            Step::Add { .. } => "add",
            Step::Relu { .. } => "relu",
            Step::Prelu { .. } => "prelu",
            Step::Pad { .. } => "pad",
            Step::Reshape { .. } => "reshape",
            Step::Concat { .. } => "concat",
        }
    }
}

/// The f32 data of a contiguous 4-D tensor given to a custom op.
fn nchw_f32<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else { candle_core::bail!("{op} needs f32") };
    let (start, end) =
        layout.contiguous_offsets().ok_or_else(|| candle_core::Error::Msg(format!("{op} needs a contiguous input")))?;
    Ok(&data[start..end])
}

/// Depthwise 3x3 (or any size) convolution with per-channel bias on an NCHW f32 tensor, as a candle
/// custom op: each output row accumulates contiguous input rows, which the compiler vectorises.
#[derive(Clone)]
struct Depthwise {
    /// [C][kh][kw]
    w: Arc<Vec<f32>>,
    b: Arc<Vec<f32>>,
    kh: usize,
    kw: usize,
    stride: (usize, usize),
    pads: Pads,
    relu: bool,
}

impl CustomOp1 for Depthwise {
    fn name(&self) -> &'static str {
        "depthwise-conv2d"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let src = nchw_f32(storage, layout, "depthwise-conv2d")?;
        let (n, c, h, w) = layout.shape().dims4()?;
        if n != 1 || c != self.b.len() {
            candle_core::bail!("depthwise-conv2d: input {:?} for {} channels", layout.shape(), self.b.len());
        }
        let [pt, pb, pl, pr] = self.pads;
        let (sh, sw) = self.stride;
        let ho = (h + pt + pb - self.kh) / sh + 1;
        let wo = (w + pl + pr - self.kw) / sw + 1;
        let shape = DwShape { h, w, ho, wo, kh: self.kh, kw: self.kw, stride: self.stride, pad_top: pt, pad_left: pl };
        let mut out = vec![0f32; c * ho * wo];
        kernels::depthwise(src, &mut out, &self.w, &self.b, &shape, self.relu);
        Ok((CpuStorage::F32(out), Shape::from((1, c, ho, wo))))
    }
}

/// A 1x1 convolution with stride 1 on an NCHW f32 tensor, bias and ReLU included ([`kernels::pointwise`]);
/// also a k x k convolution's, over its unfolded input.
struct Pointwise {
    /// [O][C]
    w: Arc<Vec<f32>>,
    b: Arc<Vec<f32>>,
    relu: bool,
}

impl CustomOp1 for Pointwise {
    fn name(&self) -> &'static str {
        "pointwise-conv2d"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let src = nchw_f32(storage, layout, "pointwise-conv2d")?;
        let (n, c, h, w) = layout.shape().dims4()?;
        let o = self.b.len();
        if n != 1 || c * o != self.w.len() {
            candle_core::bail!("pointwise-conv2d: input {:?} for {o} x {} weights", layout.shape(), self.w.len());
        }
        let out = kernels::pointwise(src, &self.w, &self.b, h * w, self.relu);
        Ok((CpuStorage::F32(out), Shape::from((1, o, h, w))))
    }
}

/// Per-channel PReLU on an NCHW f32 tensor in one pass: `x >= 0 ? x : alpha[c] * x`.
struct Prelu(Arc<Vec<f32>>);

impl CustomOp1 for Prelu {
    fn name(&self) -> &'static str {
        "prelu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let src = nchw_f32(storage, layout, "prelu")?;
        let (_, c, h, w) = layout.shape().dims4()?;
        if c != self.0.len() {
            candle_core::bail!("prelu: {c} channels for {} slopes", self.0.len());
        }
        let mut out = src.to_vec();
        for (plane, &a) in out.chunks_mut(h * w).zip(self.0.iter().cycle()) {
            plane.iter_mut().for_each(|v| *v = if *v >= 0.0 { *v } else { a * *v });
        }
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// Unfolds an NCHW f32 tensor (batch 1) into the `[C*kh*kw, Ho*Wo]` matrix a convolution multiplies,
/// with TensorFlow's zero padding.
#[derive(Clone, Copy)]
struct Im2col {
    kh: usize,
    kw: usize,
    stride: usize,
    pads: Pads,
}

impl Im2col {
    fn output_size(&self, h: usize, w: usize) -> (usize, usize) {
        let [pt, pb, pl, pr] = self.pads;
        ((h + pt + pb - self.kh) / self.stride + 1, (w + pl + pr - self.kw) / self.stride + 1)
    }
}

impl CustomOp1 for Im2col {
    fn name(&self) -> &'static str {
        "im2col"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let src = nchw_f32(storage, layout, "im2col")?;
        let (_, c, h, w) = layout.shape().dims4()?;
        let (ho, wo) = self.output_size(h, w);
        let [pt, _, pl, _] = self.pads;
        let s = self.stride;
        let mut cols = vec![0f32; c * self.kh * self.kw * ho * wo];
        for ch in 0..c {
            let plane = &src[ch * h * w..(ch + 1) * h * w];
            for ky in 0..self.kh {
                for kx in 0..self.kw {
                    let row = ((ch * self.kh + ky) * self.kw + kx) * ho * wo;
                    for oy in 0..ho {
                        let iy = (oy * s + ky) as isize - pt as isize;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        let src_row = &plane[iy as usize * w..(iy as usize + 1) * w];
                        let dst = &mut cols[row + oy * wo..row + (oy + 1) * wo];
                        for (ox, d) in dst.iter_mut().enumerate() {
                            let ix = (ox * s + kx) as isize - pl as isize;
                            if ix >= 0 && (ix as usize) < w {
                                *d = src_row[ix as usize];
                            }
                        }
                    }
                }
            }
        }
        Ok((CpuStorage::F32(cols), Shape::from((c * self.kh * self.kw, ho * wo))))
    }
}
