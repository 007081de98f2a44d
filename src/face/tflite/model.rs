//! The TFLite schema subset MediaPipe's face models use, read from a `.tflite` file: tensors, constant
//! data (float16 weights behind DEQUANTIZE ops become f32), and the operators with their options, in run
//! order. Field numbers follow `tensorflow/lite/schema/schema.fbs`; absent fields take the schema's
//! defaults (the writer omits every field equal to its default).

use super::flatbuffer::{Buf, FbError};
use crate::error::{Error, Result};

/// TFLite `Padding`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    Same,
    Valid,
}

/// A tensor's declaration.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<usize>,
    /// TFLite `TensorType` (0 = FLOAT32, 1 = FLOAT16, 2 = INT32).
    pub dtype: i8,
}

/// Constant data of a tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum Const {
    F32(Vec<f32>),
    I32(Vec<i32>),
}

#[derive(Clone, Debug, PartialEq)]
pub enum OpKind {
    Conv2d { stride: (usize, usize), padding: Padding, relu: bool },
    DepthwiseConv2d { stride: (usize, usize), padding: Padding, relu: bool },
    MaxPool2d { filter: (usize, usize), stride: (usize, usize), padding: Padding },
    Add { relu: bool },
    Concatenation { axis: i32 },
    Reshape { new_shape: Vec<i32> },
    Pad,
    Relu,
    Prelu,
}

/// One operator: what it does, its input and output tensor ids.
#[derive(Clone, Debug, PartialEq)]
pub struct Op {
    pub kind: OpKind,
    pub inputs: Vec<usize>,
    pub outputs: Vec<usize>,
}

/// A parsed model: one subgraph.
#[derive(Clone, Debug)]
pub struct TfliteModel {
    pub tensors: Vec<TensorInfo>,
    /// Constant data by tensor id (weights already dequantized to f32).
    pub consts: Vec<Option<Const>>,
    pub inputs: Vec<usize>,
    pub outputs: Vec<usize>,
    /// Compute operators in run order (DEQUANTIZE ops are resolved at load time).
    pub ops: Vec<Op>,
}

const ADD: i32 = 0;
const CONCATENATION: i32 = 2;
const CONV_2D: i32 = 3;
const DEPTHWISE_CONV_2D: i32 = 4;
const DEQUANTIZE: i32 = 6;
const MAX_POOL_2D: i32 = 17;
const RELU: i32 = 19;
const RESHAPE: i32 = 22;
const PAD: i32 = 34;
const PRELU: i32 = 54;

const FLOAT32: i8 = 0;
const FLOAT16: i8 = 1;
const INT32: i8 = 2;

/// Builtin operator names, for error messages.
fn op_name(code: i32) -> String {
    let known = [
        (0, "ADD"),
        (1, "AVERAGE_POOL_2D"),
        (2, "CONCATENATION"),
        (3, "CONV_2D"),
        (4, "DEPTHWISE_CONV_2D"),
        (6, "DEQUANTIZE"),
        (9, "FULLY_CONNECTED"),
        (14, "LOGISTIC"),
        (17, "MAX_POOL_2D"),
        (18, "MUL"),
        (19, "RELU"),
        (21, "RELU6"),
        (22, "RESHAPE"),
        (25, "SOFTMAX"),
        (32, "CUSTOM"),
        (34, "PAD"),
        (54, "PRELU"),
    ];
    known.iter().find(|(c, _)| *c == code).map_or_else(|| format!("builtin operator {code}"), |(_, n)| n.to_string())
}

fn padding(p: i8) -> Padding {
    if p == 1 { Padding::Valid } else { Padding::Same }
}

/// Activation fused into an op: only NONE and RELU occur in these models.
fn fused(act: i8, what: &str) -> std::result::Result<bool, String> {
    match act {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(format!("{what} with fused activation {other} is not supported")),
    }
}

impl TfliteModel {
    /// Parses a `.tflite` file's bytes; `file` names it in errors.
    pub fn parse(bytes: &[u8], file: &str) -> Result<Self> {
        let fb = |e: FbError| Error::Model(format!("{file}: {}", e.0));
        let bad = |what: String| Error::Model(format!("{file}: {what}"));
        if bytes.len() < 8 || &bytes[4..8] != b"TFL3" {
            return Err(bad("not a TFLite model (no TFL3 identifier)".into()));
        }
        let root = Buf(bytes).root().map_err(fb)?;
        let codes: Vec<i32> = root
            .tables(1)
            .map_err(fb)?
            .iter()
            .map(|c| Ok(c.i32_or(3, 0)?.max(c.i8_or(0, 0)? as i32)))
            .collect::<std::result::Result<_, FbError>>()
            .map_err(fb)?;
        let buffers = root.tables(4).map_err(fb)?;
        let subgraphs = root.tables(2).map_err(fb)?;
        let [graph] = subgraphs.as_slice() else {
            return Err(bad(format!("{} subgraphs; one expected", subgraphs.len())));
        };

        let tensor_tables = graph.tables(0).map_err(fb)?;
        let mut tensors = Vec::with_capacity(tensor_tables.len());
        let mut consts: Vec<Option<Const>> = Vec::with_capacity(tensor_tables.len());
        for t in &tensor_tables {
            let shape = t.i32s(0).map_err(fb)?.iter().map(|&d| d.max(0) as usize).collect::<Vec<_>>();
            let dtype = t.i8_or(1, FLOAT32).map_err(fb)?;
            let name = t.string(3).map_err(fb)?;
            let buffer = t.u32_or(2, 0).map_err(fb)? as usize;
            let data = match buffers.get(buffer) {
                Some(b) if buffer != 0 => b.bytes(0).map_err(fb)?,
                Some(_) => &[][..],
                None => return Err(bad(format!("tensor `{name}` uses buffer {buffer}, which does not exist"))),
            };
            let count = shape
                .iter()
                .try_fold(1usize, |n, &d| n.checked_mul(d))
                .ok_or_else(|| bad(format!("tensor `{name}` has an impossible shape {shape:?}")))?;
            let konst = if data.is_empty() {
                None
            } else {
                let (size, c) = match dtype {
                    FLOAT32 => (
                        4,
                        Const::F32(
                            data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
                        ),
                    ),
                    FLOAT16 => (
                        2,
                        Const::F32(
                            data.chunks_exact(2)
                                .map(|b| half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32())
                                .collect(),
                        ),
                    ),
                    INT32 => (
                        4,
                        Const::I32(
                            data.chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
                        ),
                    ),
                    other => return Err(bad(format!("tensor `{name}` has unsupported type {other}"))),
                };
                if count.checked_mul(size) != Some(data.len()) {
                    return Err(bad(format!("tensor `{name}` {shape:?} has {} bytes of data", data.len())));
                }
                Some(c)
            };
            tensors.push(TensorInfo { name, shape, dtype });
            consts.push(konst);
        }
        let ids = |v: Vec<i32>, what: &str| -> Result<Vec<usize>> {
            v.into_iter()
                .map(|i| {
                    usize::try_from(i)
                        .ok()
                        .filter(|&i| i < tensors.len())
                        .ok_or_else(|| bad(format!("{what} refers to tensor {i}, which does not exist")))
                })
                .collect()
        };
        let inputs = ids(graph.i32s(1).map_err(fb)?, "the graph input")?;
        let outputs = ids(graph.i32s(2).map_err(fb)?, "the graph output")?;

        let mut ops = Vec::new();
        for (index, op) in graph.tables(3).map_err(fb)?.iter().enumerate() {
            let code_index = op.u32_or(0, 0).map_err(fb)? as usize;
            let code =
                *codes.get(code_index).ok_or_else(|| bad(format!("operator {index} has no opcode {code_index}")))?;
            let name = op_name(code);
            let op_inputs = ids(op.i32s(1).map_err(fb)?, &format!("operator {index} ({name})"))?;
            let op_outputs = ids(op.i32s(2).map_err(fb)?, &format!("operator {index} ({name})"))?;
            let options = op.table(4).map_err(fb)?;
            let opt_i32 = |id: usize, d: i32| -> Result<i32> { options.map_or(Ok(d), |o| o.i32_or(id, d)).map_err(fb) };
            let opt_i8 = |id: usize, d: i8| -> Result<i8> { options.map_or(Ok(d), |o| o.i8_or(id, d)).map_err(fb) };
            let unsupported = |what: String| bad(format!("operator {index} ({name}): {what}"));
            let stride = |w: usize, h: usize| -> Result<(usize, usize)> {
                Ok((opt_i32(h, 1)?.max(1) as usize, opt_i32(w, 1)?.max(1) as usize))
            };
            let kind = match code {
                DEQUANTIZE => {
                    // Weights: float16 constant in, float32 constant out.
                    let (&[i], &[o]) = (op_inputs.as_slice(), op_outputs.as_slice()) else {
                        return Err(unsupported("expected one input and one output".into()));
                    };
                    let c = consts[i].clone().ok_or_else(|| unsupported("dequantizes a non-constant tensor".into()))?;
                    consts[o] = Some(c);
                    continue;
                }
                CONV_2D => {
                    if opt_i32(4, 1)? != 1 || opt_i32(5, 1)? != 1 {
                        return Err(unsupported("dilation is not supported".into()));
                    }
                    OpKind::Conv2d {
                        stride: stride(1, 2)?,
                        padding: padding(opt_i8(0, 0)?),
                        relu: fused(opt_i8(3, 0)?, &name).map_err(unsupported)?,
                    }
                }
                DEPTHWISE_CONV_2D => {
                    if opt_i32(3, 1)? > 1 {
                        return Err(unsupported("depth multiplier > 1 is not supported".into()));
                    }
                    if opt_i32(5, 1)? != 1 || opt_i32(6, 1)? != 1 {
                        return Err(unsupported("dilation is not supported".into()));
                    }
                    OpKind::DepthwiseConv2d {
                        stride: stride(1, 2)?,
                        padding: padding(opt_i8(0, 0)?),
                        relu: fused(opt_i8(4, 0)?, &name).map_err(unsupported)?,
                    }
                }
                MAX_POOL_2D => {
                    if opt_i8(5, 0)? != 0 {
                        return Err(unsupported("fused activation is not supported".into()));
                    }
                    OpKind::MaxPool2d {
                        filter: (opt_i32(4, 1)?.max(1) as usize, opt_i32(3, 1)?.max(1) as usize),
                        stride: stride(1, 2)?,
                        padding: padding(opt_i8(0, 0)?),
                    }
                }
                ADD => OpKind::Add { relu: fused(opt_i8(0, 0)?, &name).map_err(unsupported)? },
                CONCATENATION => {
                    if opt_i8(1, 0)? != 0 {
                        return Err(unsupported("fused activation is not supported".into()));
                    }
                    OpKind::Concatenation { axis: opt_i32(0, 0)? }
                }
                RESHAPE => {
                    let new_shape = match options {
                        Some(o) => o.i32s(0).map_err(fb)?,
                        None => Vec::new(),
                    };
                    if new_shape.is_empty() {
                        return Err(unsupported("a shape given as a tensor is not supported".into()));
                    }
                    OpKind::Reshape { new_shape }
                }
                PAD => OpKind::Pad,
                RELU => OpKind::Relu,
                PRELU => OpKind::Prelu,
                _ => return Err(unsupported("this operator is not supported by the reader".into())),
            };
            ops.push(Op { kind, inputs: op_inputs, outputs: op_outputs });
        }
        Ok(TfliteModel { tensors, consts, inputs, outputs, ops })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::face::models::{FaceModel, ModelSource};

    #[test]
    fn an_unknown_operator_is_named() {
        let mut bytes = ModelSource::default_location().read(FaceModel::Detector).expect("run scripts/setup.sh");
        // Turn the RELU opcode into SOFTMAX (25), which the reader does not run.
        let root = Buf(&bytes).root().unwrap();
        let codes = root.tables(1).unwrap();
        let relu = codes.iter().find(|c| c.i8_or(0, 0).unwrap() == RELU as i8).expect("the detector uses RELU");
        let at = relu.field(0).unwrap().unwrap();
        bytes[at] = 25;
        let err = TfliteModel::parse(&bytes, "face_detection_short_range.tflite").unwrap_err().to_string();
        assert!(err.contains("face_detection_short_range.tflite") && err.contains("(SOFTMAX)"), "{err}");
    }

    #[test]
    fn reads_both_models() {
        let det = TfliteModel::parse(&ModelSource::default_location().read(FaceModel::Detector).unwrap(), "d").unwrap();
        assert_eq!(det.ops.len(), 90);
        assert_eq!(det.tensors[det.inputs[0]].shape, [1, 128, 128, 3]);
        assert_eq!(det.tensors[det.outputs[0]].name, "regressors");
        let mesh =
            TfliteModel::parse(&ModelSource::default_location().read(FaceModel::Landmarks).unwrap(), "m").unwrap();
        assert_eq!(mesh.ops.len(), 97);
        assert_eq!(mesh.tensors[mesh.outputs[1]].shape, [1, 1, 1, 1]);
    }
}
