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
//! depthwise convolutions, max pooling and PReLU run in direct kernels (candle's grouped convolution runs
//! one convolution per channel, about 20x slower here). A residual block's ADD and a
//! convolution's PReLU are fused into the convolution when the graph is prepared.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Device, Layout, Shape, Tensor};

use super::kernels::{self, Activation, DwShape};
use super::model::{Const, OpKind, Padding, TfliteModel};
use crate::error::{Error, Result};

/// How long one operator of a run took ([`Graph::profile`]).
#[derive(Clone, Debug, PartialEq)]
pub struct StepTime {
    /// The operator: `conv` (a k x k convolution), `conv1x1`, `depthwise`, `max_pool`, `add`, `relu`,
    /// `prelu`, `pad`, `reshape` or `concat`; a convolution includes the add and activation fused into it.
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
        op: Conv,
    },
    /// A 1x1 convolution; with `residual`, the tensor added to its output (the add of a residual block,
    /// fused in, run where the add was).
    Pointwise {
        x: usize,
        y: usize,
        residual: Option<usize>,
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
        op: MaxPool,
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
        op: Activate,
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
                        Step::Pointwise { x, y, residual: None, op: Pointwise::new(w, b, *relu) }
                    } else {
                        // OHWI -> [O][C*kh*kw], rows in im2col order (channel, ky, kx).
                        let w = Tensor::from_vec(w, (o, kh, kw, i), device)?
                            .permute((0, 3, 1, 2))?
                            .contiguous()?
                            .reshape((o, i * kh * kw))?;
                        Step::Conv {
                            x,
                            y,
                            op: Conv {
                                unfold: Im2col { kh, kw, stride: stride.0, pads },
                                op: Pointwise::new(w.flatten_all()?.to_vec1()?, b, *relu),
                            },
                        }
                    }
                }
                OpKind::MaxPool2d { filter, stride, padding } => {
                    if same_or_valid(*padding, hw(&xs)?, *filter, *stride) != [0; 4] {
                        return Err(bad(format!("operator {index}: padded max pooling is not supported")));
                    }
                    Step::MaxPool { x, y, op: MaxPool { kernel: *filter, stride: *stride } }
                }
                OpKind::Add { relu } => Step::Add { a: x, b: op.inputs[1], y, relu: *relu },
                OpKind::Relu => Step::Relu { x, y },
                OpKind::Prelu => {
                    let alpha = Arc::new(f32_const(op.inputs[1], "PReLU slope")?);
                    Step::Prelu { x, y, op: Activate(Activation::Prelu(alpha)) }
                }
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
        let steps = fuse(steps, &model.outputs);
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
                Step::Conv { x, y, op } => (*y, get(&values, *x)?.apply_op1_no_bwd(op)?),
                Step::Pointwise { x, y, residual: None, op } => (*y, get(&values, *x)?.apply_op1_no_bwd(op)?),
                Step::Pointwise { x, y, residual: Some(r), op } => {
                    (*y, get(&values, *x)?.apply_op2_no_bwd(&get(&values, *r)?, op)?)
                }
                Step::Depthwise { x, y, op } => (*y, get(&values, *x)?.apply_op1_no_bwd(op)?),
                Step::MaxPool { x, y, op } => (*y, get(&values, *x)?.apply_op1_no_bwd(op)?),
                Step::Add { a, b, y, relu } => {
                    let v = get(&values, *a)?.add(&get(&values, *b)?)?;
                    (*y, if *relu { v.relu()? } else { v })
                }
                Step::Relu { x, y } => (*y, get(&values, *x)?.relu()?),
                Step::Prelu { x, y, op } => (*y, get(&values, *x)?.apply_op1_no_bwd(op)?),
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
            Step::Pointwise { x, residual: Some(r), .. } => vec![*x, *r],
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

/// Output height and width of a window operation over an `input` with zero padding `pads`.
fn output_size(input: (usize, usize), kernel: (usize, usize), stride: (usize, usize), pads: Pads) -> (usize, usize) {
    let [pt, pb, pl, pr] = pads;
    ((input.0 + pt + pb - kernel.0) / stride.0 + 1, (input.1 + pl + pr - kernel.1) / stride.1 + 1)
}

/// Fuses what follows a convolution into it, as XNNPACK does: an ADD of a 1x1 convolution's output (read by
/// nothing else) and another tensor becomes the convolution with that residual, run where the add was;
/// a PReLU of a convolution's output (read by nothing else) becomes its activation. Each saves a pass over
/// the tensor and its allocation.
fn fuse(steps: Vec<Step>, outputs: &[usize]) -> Vec<Step> {
    let readers = |steps: &[Option<Step>], t: usize| {
        steps.iter().flatten().filter(|s| s.inputs().contains(&t)).count() + outputs.contains(&t) as usize
    };
    // A plain 1x1 convolution (no residual or activation yet) whose output is `t`.
    let plain_pointwise = |s: &Option<Step>, t: usize| match s {
        Some(Step::Pointwise { y, residual: None, op, .. }) => *y == t && matches!(op.activation, Activation::None),
        _ => false,
    };
    let mut slots: Vec<Option<Step>> = steps.into_iter().map(Some).collect();
    for k in 0..slots.len() {
        let Some(Step::Add { a, b, y, relu }) = slots[k] else { continue };
        let producer = |t: usize| slots[..k].iter().position(|s| plain_pointwise(s, t));
        let Some((p, residual)) = [(a, b), (b, a)]
            .into_iter()
            .find_map(|(t, r)| producer(t).filter(|_| readers(&slots, t) == 1).map(|p| (p, r)))
        else {
            continue;
        };
        let Some(Step::Pointwise { x, mut op, .. }) = slots[p].take() else { unreachable!() };
        if relu {
            op.activation = Activation::Relu;
        }
        slots[k] = Some(Step::Pointwise { x, y, residual: Some(residual), op });
    }
    for k in 0..slots.len() {
        let Some(Step::Prelu { x, y, op: Activate(ref activation) }) = slots[k] else { continue };
        if readers(&slots, x) != 1 {
            continue;
        }
        let activation = activation.clone();
        let producer = slots[..k].iter_mut().flatten().find_map(|s| match s {
            Step::Pointwise { y: out, op, .. } | Step::Conv { y: out, op: Conv { op, .. }, .. }
                if *out == x && matches!(op.activation, Activation::None) =>
            {
                Some((out, op))
            }
            _ => None,
        });
        if let Some((out, op)) = producer {
            *out = y;
            op.activation = activation;
            slots[k] = None;
        }
    }
    slots.into_iter().flatten().collect()
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
        let [pt, _, pl, _] = self.pads;
        let (ho, wo) = output_size((h, w), (self.kh, self.kw), self.stride, self.pads);
        let shape = DwShape { h, w, ho, wo, kh: self.kh, kw: self.kw, stride: self.stride, pad_top: pt, pad_left: pl };
        let mut out = vec![0f32; c * ho * wo];
        kernels::depthwise(src, &mut out, &self.w, &self.b, &shape, self.relu);
        Ok((CpuStorage::F32(out), Shape::from((1, c, ho, wo))))
    }
}

/// A 1x1 convolution with stride 1 on an NCHW f32 tensor, bias, activation and (as a two-input op) a
/// residual included ([`kernels::pointwise`]); also a k x k convolution's, over its unfolded input.
struct Pointwise {
    /// [O][C]
    w: Arc<Vec<f32>>,
    b: Arc<Vec<f32>>,
    activation: Activation,
}

impl Pointwise {
    fn new(w: Vec<f32>, b: Vec<f32>, relu: bool) -> Self {
        Pointwise { w: Arc::new(w), b: Arc::new(b), activation: if relu { Activation::Relu } else { Activation::None } }
    }

    fn run(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
        residual: Option<&[f32]>,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let src = nchw_f32(storage, layout, "pointwise-conv2d")?;
        let (n, c, h, w) = layout.shape().dims4()?;
        let o = self.b.len();
        if n != 1 || c * o != self.w.len() {
            candle_core::bail!("pointwise-conv2d: input {:?} for {o} x {} weights", layout.shape(), self.w.len());
        }
        if let Activation::Prelu(alpha) = &self.activation
            && alpha.len() != o
        {
            candle_core::bail!("pointwise-conv2d: {o} channels for {} PReLU slopes", alpha.len());
        }
        if residual.is_some_and(|r| r.len() != o * h * w) {
            candle_core::bail!(
                "pointwise-conv2d: a residual of {} values for {o} x {h} x {w}",
                residual.map_or(0, <[f32]>::len)
            );
        }
        let out = kernels::pointwise(src, &self.w, &self.b, h * w, residual, &self.activation);
        Ok((CpuStorage::F32(out), Shape::from((1, o, h, w))))
    }
}

impl CustomOp1 for Pointwise {
    fn name(&self) -> &'static str {
        "pointwise-conv2d"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        self.run(storage, layout, None)
    }
}

impl CustomOp2 for Pointwise {
    fn name(&self) -> &'static str {
        "pointwise-conv2d-add"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
        residual: &CpuStorage,
        residual_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        self.run(storage, layout, Some(nchw_f32(residual, residual_layout, "pointwise-conv2d-add")?))
    }
}

/// An activation on its own, on an NCHW f32 tensor in one pass.
struct Activate(Activation);

impl CustomOp1 for Activate {
    fn name(&self) -> &'static str {
        "activation"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let src = nchw_f32(storage, layout, "activation")?;
        let (_, c, h, w) = layout.shape().dims4()?;
        if let Activation::Prelu(alpha) = &self.0
            && alpha.len() != c
        {
            candle_core::bail!("prelu: {c} channels for {} slopes", alpha.len());
        }
        let mut out = src.to_vec();
        self.0.apply(&mut out, h * w);
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// Max pooling without padding on an NCHW f32 tensor ([`kernels::max_pool`]).
struct MaxPool {
    kernel: (usize, usize),
    stride: (usize, usize),
}

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "max-pool2d"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let src = nchw_f32(storage, layout, "max-pool2d")?;
        let (n, c, h, w) = layout.shape().dims4()?;
        if n != 1 || h < self.kernel.0 || w < self.kernel.1 {
            candle_core::bail!("max-pool2d: input {:?} for a {:?} window", layout.shape(), self.kernel);
        }
        let (out, ho, wo) = kernels::max_pool(src, c, (h, w), self.kernel, self.stride);
        Ok((CpuStorage::F32(out), Shape::from((1, c, ho, wo))))
    }
}

/// A k x k convolution as a matrix product over its unfolded input (the few-channel first layers run
/// about 10x faster this way than through candle's convolution).
struct Conv {
    unfold: Im2col,
    op: Pointwise,
}

impl CustomOp1 for Conv {
    fn name(&self) -> &'static str {
        "conv2d"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let src = nchw_f32(storage, layout, "conv2d")?;
        let (n, c, h, w) = layout.shape().dims4()?;
        let o = self.op.b.len();
        if n != 1 || c * self.unfold.kh * self.unfold.kw * o != self.op.w.len() {
            candle_core::bail!("conv2d: input {:?} for {o} x {} weights", layout.shape(), self.op.w.len());
        }
        let (cols, (ho, wo)) = self.unfold.unfold(src, (c, h, w));
        let out = kernels::pointwise(&cols, &self.op.w, &self.op.b, ho * wo, None, &self.op.activation);
        Ok((CpuStorage::F32(out), Shape::from((1, o, ho, wo))))
    }
}

/// Unfolds NCHW f32 planes (batch 1) into the `[C*kh*kw][Ho*Wo]` matrix a convolution multiplies, with
/// TensorFlow's zero padding.
#[derive(Clone, Copy)]
struct Im2col {
    kh: usize,
    kw: usize,
    stride: usize,
    pads: Pads,
}

impl Im2col {
    /// The matrix of `c` planes of `h x w`, and the output's height and width.
    fn unfold(&self, src: &[f32], (c, h, w): (usize, usize, usize)) -> (Vec<f32>, (usize, usize)) {
        let [pt, _, pl, _] = self.pads;
        let s = self.stride;
        let (ho, wo) = output_size((h, w), (self.kh, self.kw), (s, s), self.pads);
        let mut cols = vec![0.0; c * self.kh * self.kw * ho * wo];
        let mut rows = cols.chunks_exact_mut(wo);
        for plane in src.chunks_exact(h * w).take(c) {
            for ky in 0..self.kh {
                for kx in 0..self.kw {
                    // Output columns whose input column ox * s + kx - pl lies inside the row (the others,
                    // and rows outside the plane, stay zero).
                    let first = pl.saturating_sub(kx).div_ceil(s).min(wo);
                    let last = ((w + pl).saturating_sub(kx + 1) / s + 1).clamp(first, wo);
                    for oy in 0..ho {
                        let dst = rows.next().expect("cols sized for every row");
                        let iy = (oy * s + ky) as isize - pt as isize;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        let src_row = &plane[iy as usize * w..(iy as usize + 1) * w];
                        if first < last {
                            let (dst, src) = (&mut dst[first..last], &src_row[first * s + kx - pl..]);
                            match s {
                                1 => dst.copy_from_slice(&src[..dst.len()]),
                                // Every other value: pairs, so the loop vectorises.
                                2 => {
                                    let pairs = src.chunks_exact(2);
                                    let n = pairs.len();
                                    dst.iter_mut().zip(pairs).for_each(|(d, p)| *d = p[0]);
                                    if let Some(d) = dst.get_mut(n) {
                                        *d = src[2 * n];
                                    }
                                }
                                _ => dst.iter_mut().zip(src.iter().step_by(s)).for_each(|(d, v)| *d = *v),
                            }
                        }
                    }
                }
            }
        }
        (cols, (ho, wo))
    }
}
