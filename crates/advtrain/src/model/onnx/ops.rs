//! The operators: which ones advtrain runs, on the host (constants and shapes) and on the
//! device (everything that depends on the image, through burn and so through autodiff).

use std::collections::HashMap;

use burn::module::RunningState;
use burn::prelude::{Bool, Device, Int, Tensor, TensorData};
use burn::tensor::activation;
use burn::tensor::ops::PadMode;

use super::graph::Node;
use super::host::{
    self, axis, broadcast_shape, reshape_target, slice_ranges, HostData, HostTensor,
};
use super::nn;
use super::value::{by_rank, map_ft, Ft, IntoFt, Value};

/// Every operator advtrain runs.
pub(crate) const SUPPORTED: &[&str] = &[
    "Abs",
    "Add",
    "AveragePool",
    "BatchNormalization",
    "Cast",
    "Ceil",
    "Clip",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Conv",
    "Div",
    "Dropout",
    "Equal",
    "Erf",
    "Exp",
    "Expand",
    "Flatten",
    "Floor",
    "Gather",
    "Gelu",
    "Gemm",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "Greater",
    "GreaterOrEqual",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "LayerNormalization",
    "LeakyRelu",
    "Less",
    "LessOrEqual",
    "Log",
    "LogSoftmax",
    "MatMul",
    "MaxPool",
    "Mul",
    "Neg",
    "Not",
    "Pad",
    "Pow",
    "Range",
    "Reciprocal",
    "ReduceMax",
    "ReduceMean",
    "ReduceSum",
    "Relu",
    "Reshape",
    "Shape",
    "Sigmoid",
    "Size",
    "Slice",
    "Softmax",
    "Split",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Tanh",
    "Transpose",
    "Unsqueeze",
    "Where",
];

/// Operators [`eval_host`] computes when all their inputs are host tensors.
pub(crate) fn host_evaluable(op: &str) -> bool {
    matches!(
        op,
        "Abs"
            | "Add"
            | "Cast"
            | "Ceil"
            | "Concat"
            | "Constant"
            | "ConstantOfShape"
            | "Div"
            | "Dropout"
            | "Equal"
            | "Exp"
            | "Expand"
            | "Flatten"
            | "Floor"
            | "Gather"
            | "Greater"
            | "GreaterOrEqual"
            | "Identity"
            | "Less"
            | "LessOrEqual"
            | "Log"
            | "Mul"
            | "Neg"
            | "Not"
            | "Pow"
            | "Range"
            | "Reciprocal"
            | "Relu"
            | "Reshape"
            | "Shape"
            | "Size"
            | "Slice"
            | "Sqrt"
            | "Squeeze"
            | "Sub"
            | "Transpose"
            | "Unsqueeze"
            | "Where"
    )
}

/// What a node needs at run time besides its inputs.
pub(crate) struct Ctx<'a> {
    /// The device the model runs on.
    pub device: Device,
    /// The default-domain opset of the file.
    pub opset: i64,
    /// The module is in training mode: batch norm on a tracked (autodiff) tensor uses batch
    /// statistics and updates its running ones.
    pub training: bool,
    /// The batch-norm running statistics.
    pub buffers: &'a [RunningState<Tensor<1>>],
    /// Which buffer a slot holds.
    pub buffer_of_slot: &'a HashMap<usize, usize>,
}

/// Input `i`, which the operator requires.
fn arg<T>(inputs: &[Option<T>], i: usize) -> Result<&T, String> {
    inputs
        .get(i)
        .and_then(|v| v.as_ref())
        .ok_or_else(|| format!("required input {i} is missing"))
}

/// Input `i` if given.
fn opt<T>(inputs: &[Option<T>], i: usize) -> Option<&T> {
    inputs.get(i).and_then(|v| v.as_ref())
}

/// The axes of Squeeze/Unsqueeze/Reduce*: an input from `input_from` on, an attribute before.
fn axes_of(
    node: &Node,
    input: Option<&HostTensor>,
    opset: i64,
    input_from: i64,
) -> Result<Option<Vec<i64>>, String> {
    if opset >= input_from {
        Ok(input.map(|t| t.to_i64s()))
    } else {
        node.ints("axes")
    }
}

/// `Unsqueeze`'s output shape.
fn unsqueeze_shape(shape: &[usize], axes: &[i64]) -> Result<Vec<usize>, String> {
    let rank = shape.len() + axes.len();
    let mut resolved: Vec<usize> = axes
        .iter()
        .map(|&a| axis(a, rank))
        .collect::<Result<_, _>>()?;
    resolved.sort_unstable();
    let mut out = shape.to_vec();
    for a in resolved {
        out.insert(a, 1);
    }
    Ok(out)
}

/// `Squeeze`'s output shape (no axes: every dimension of size 1).
fn squeeze_shape(shape: &[usize], axes: Option<&[i64]>) -> Result<Vec<usize>, String> {
    let drop: Vec<usize> = match axes {
        Some(a) => a
            .iter()
            .map(|&a| axis(a, shape.len()))
            .collect::<Result<_, _>>()?,
        None => (0..shape.len()).filter(|&d| shape[d] == 1).collect(),
    };
    if let Some(&d) = drop.iter().find(|&&d| shape[d] != 1) {
        return Err(format!("Squeeze of axis {d} of size {}", shape[d]));
    }
    Ok(shape
        .iter()
        .enumerate()
        .filter(|(d, _)| !drop.contains(d))
        .map(|(_, &n)| n)
        .collect())
}

/// `Flatten`'s output shape.
fn flatten_shape(shape: &[usize], node: &Node) -> Result<Vec<usize>, String> {
    let a = node.int("axis", 1)?;
    let a = if a < 0 { a + shape.len() as i64 } else { a };
    if !(0..=shape.len() as i64).contains(&a) {
        return Err(format!("Flatten axis {a} for rank {}", shape.len()));
    }
    let a = a as usize;
    Ok(vec![
        shape[..a].iter().product(),
        shape[a..].iter().product(),
    ])
}

/// `Shape`'s output: the dimensions from `start` to `end`.
fn shape_of(shape: &[usize], node: &Node) -> Result<HostTensor, String> {
    let r = shape.len() as i64;
    let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let (s, e) = (clamp(node.int("start", 0)?), clamp(node.int("end", r)?));
    let dims = shape[s..e.max(s)].iter().map(|&d| d as i64).collect();
    Ok(HostTensor::ints(dims))
}

/// `Transpose`'s permutation (reversed dimensions by default).
fn perm_of(node: &Node, rank: usize) -> Result<Vec<usize>, String> {
    let perm: Vec<usize> = match node.ints("perm")? {
        Some(p) => p.iter().map(|&a| axis(a, rank)).collect::<Result<_, _>>()?,
        None => (0..rank).rev().collect(),
    };
    let mut seen = perm.clone();
    seen.sort_unstable();
    if seen != (0..rank).collect::<Vec<_>>() {
        return Err(format!("Transpose perm {perm:?} for rank {rank}"));
    }
    Ok(perm)
}

/// The `Reshape` target for `input`.
fn reshape_of(node: &Node, input: &[usize], spec: &HostTensor) -> Result<Vec<usize>, String> {
    reshape_target(input, &spec.to_i64s(), node.int("allowzero", 0)? != 0)
}

/// `Slice`'s ranges: inputs from opset 10, attributes before.
fn slice_of(
    node: &Node,
    shape: &[usize],
    hosts: &[Option<&HostTensor>],
    opset: i64,
) -> Result<Vec<host::SliceRange>, String> {
    if opset < 10 {
        let starts = node.ints("starts")?.unwrap_or_default();
        let ends = node.ints("ends")?.unwrap_or_default();
        let axes = node.ints("axes")?;
        return slice_ranges(shape, &starts, &ends, axes.as_deref(), None);
    }
    let get = |i: usize| hosts.get(i).copied().flatten().map(|t| t.to_i64s());
    let starts = get(1).ok_or("Slice without starts")?;
    let ends = get(2).ok_or("Slice without ends")?;
    slice_ranges(shape, &starts, &ends, get(3).as_deref(), get(4).as_deref())
}

/// Integer division as ONNX runtimes do it (truncating towards zero); `None` for 0.
fn int_div(a: i64, b: i64) -> Option<i64> {
    a.checked_div(b)
}

/// Evaluates a node whose inputs are all host tensors.
pub(crate) fn eval_host(
    node: &Node,
    inputs: &[Option<&HostTensor>],
    opset: i64,
) -> Result<Vec<HostTensor>, String> {
    let x = || arg(inputs, 0).copied();
    let one = |t: HostTensor| Ok(vec![t]);
    match node.op.as_str() {
        "Constant" => one(node.constant_value()?),
        "Identity" | "Dropout" => one(x()?.clone()),
        "Shape" => one(shape_of(&x()?.shape, node)?),
        "Size" => one(HostTensor::new(
            vec![],
            HostData::I64(vec![x()?.len() as i64]),
        )?),
        "Cast" => one(x()?.cast(node.int("to", 1)? as i32)?),
        "Reshape" => {
            let t = x()?;
            one(t.reshaped(reshape_of(node, &t.shape, arg(inputs, 1)?)?)?)
        }
        "Flatten" => {
            let t = x()?;
            one(t.reshaped(flatten_shape(&t.shape, node)?)?)
        }
        "Transpose" => {
            let t = x()?;
            one(t.transpose(&perm_of(node, t.shape.len())?))
        }
        "Unsqueeze" => {
            let t = x()?;
            let axes = axes_of(node, opt(inputs, 1).copied(), opset, 13)?
                .ok_or("Unsqueeze without axes")?;
            one(t.reshaped(unsqueeze_shape(&t.shape, &axes)?)?)
        }
        "Squeeze" => {
            let t = x()?;
            let axes = axes_of(node, opt(inputs, 1).copied(), opset, 13)?;
            one(t.reshaped(squeeze_shape(&t.shape, axes.as_deref())?)?)
        }
        "Concat" => {
            let parts: Vec<HostTensor> = inputs.iter().flatten().map(|t| (*t).clone()).collect();
            let rank = parts.first().map_or(1, |p| p.shape.len());
            one(HostTensor::concat(
                &parts,
                axis(node.int("axis", 0)?, rank)?,
            )?)
        }
        "Gather" => {
            let t = x()?;
            one(t.gather(axis(node.int("axis", 0)?, t.shape.len())?, arg(inputs, 1)?)?)
        }
        "Slice" => {
            let t = x()?;
            one(t.slice(&slice_of(node, &t.shape, inputs, opset)?))
        }
        "Expand" => {
            let t = x()?;
            let spec: Vec<usize> = arg(inputs, 1)?
                .to_i64s()
                .iter()
                .map(|&v| v as usize)
                .collect();
            one(t.broadcast_to(&broadcast_shape(&t.shape, &spec)?)?)
        }
        "ConstantOfShape" => {
            let shape: Vec<usize> = x()?.to_i64s().iter().map(|&v| v.max(0) as usize).collect();
            let fill = node
                .tensor("value")
                .cloned()
                .unwrap_or(HostTensor::scalar_f32(0.0));
            one(fill.broadcast_to(&shape)?)
        }
        "Range" => {
            let (s, l, d) = (x()?, arg(inputs, 1)?, arg(inputs, 2)?);
            one(range(s, l, d)?)
        }
        "Where" => one(HostTensor::select(x()?, arg(inputs, 1)?, arg(inputs, 2)?)?),
        "Equal" => one(x()?.compare(arg(inputs, 1)?, |a, b| a == b)?),
        "Less" => one(x()?.compare(arg(inputs, 1)?, |a, b| a < b)?),
        "Greater" => one(x()?.compare(arg(inputs, 1)?, |a, b| a > b)?),
        "LessOrEqual" => one(x()?.compare(arg(inputs, 1)?, |a, b| a <= b)?),
        "GreaterOrEqual" => one(x()?.compare(arg(inputs, 1)?, |a, b| a >= b)?),
        "Not" => {
            let t = x()?;
            one(HostTensor::new(
                t.shape.clone(),
                HostData::Bool(t.to_bools().iter().map(|b| !b).collect()),
            )?)
        }
        "Add" => one(x()?.binary(arg(inputs, 1)?, |a, b| a + b, |a, b| a.checked_add(b))?),
        "Sub" => one(x()?.binary(arg(inputs, 1)?, |a, b| a - b, |a, b| a.checked_sub(b))?),
        "Mul" => one(x()?.binary(arg(inputs, 1)?, |a, b| a * b, |a, b| a.checked_mul(b))?),
        "Div" => one(x()?.binary(arg(inputs, 1)?, |a, b| a / b, int_div)?),
        "Pow" => one(x()?.binary(arg(inputs, 1)?, f64::powf, |a, b| {
            u32::try_from(b).ok().and_then(|b| a.checked_pow(b))
        })?),
        "Neg" => one(match &x()?.data {
            HostData::I64(v) => HostTensor::new(
                x()?.shape.clone(),
                HostData::I64(v.iter().map(|a| -a).collect()),
            )?,
            _ => x()?.map_f32(|a| -a),
        }),
        "Abs" => one(match &x()?.data {
            HostData::I64(v) => HostTensor::new(
                x()?.shape.clone(),
                HostData::I64(v.iter().map(|a| a.abs()).collect()),
            )?,
            _ => x()?.map_f32(f32::abs),
        }),
        "Sqrt" => one(x()?.map_f32(f32::sqrt)),
        "Exp" => one(x()?.map_f32(f32::exp)),
        "Log" => one(x()?.map_f32(f32::ln)),
        "Floor" => one(x()?.map_f32(f32::floor)),
        "Ceil" => one(x()?.map_f32(f32::ceil)),
        "Reciprocal" => one(x()?.map_f32(|a| 1.0 / a)),
        "Relu" => one(x()?.map_f32(|a| a.max(0.0))),
        op => Err(format!("operator {op} has no host implementation")),
    }
}

/// `Range(start, limit, delta)`.
fn range(s: &HostTensor, l: &HostTensor, d: &HostTensor) -> Result<HostTensor, String> {
    let ints = [s, l, d].iter().all(|t| matches!(t.data, HostData::I64(_)));
    let (a, b, c) = (
        s.to_f32s()[0] as f64,
        l.to_f32s()[0] as f64,
        d.to_f32s()[0] as f64,
    );
    if c == 0.0 {
        return Err("Range with delta 0".into());
    }
    let n = (((b - a) / c).ceil()).max(0.0) as usize;
    if ints {
        let (a, c) = (s.to_i64s()[0], d.to_i64s()[0]);
        Ok(HostTensor::ints((0..n as i64).map(|i| a + i * c).collect()))
    } else {
        HostTensor::new(
            vec![n],
            HostData::F32((0..n).map(|i| (a + i as f64 * c) as f32).collect()),
        )
    }
}

/// Elementwise binary operators on the device.
#[derive(Clone, Copy, Debug)]
pub(crate) enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
}

/// `a ∘ b` with numpy broadcasting, on the device. A one-element host operand (a scale, an
/// exponent, an epsilon) uses burn's scalar operations instead of a broadcast tensor.
pub(crate) fn binary(op: BinOp, a: &Value, b: &Value, device: &Device) -> Result<Ft, String> {
    if let (Value::Float(t), Value::Host(h)) = (a, b) {
        if h.len() == 1 && h.shape.len() <= t.rank() {
            let s = h.to_f32s()[0];
            return Ok(match op {
                BinOp::Add => map_ft!(t.clone(), x => x.add_scalar(s)),
                BinOp::Sub => map_ft!(t.clone(), x => x.sub_scalar(s)),
                BinOp::Mul => map_ft!(t.clone(), x => x.mul_scalar(s)),
                BinOp::Div => map_ft!(t.clone(), x => x.div_scalar(s)),
                BinOp::Pow if s == 2.0 => map_ft!(t.clone(), x => x.clone() * x),
                BinOp::Pow => map_ft!(t.clone(), x => x.powf_scalar(s)),
            });
        }
    }
    if let (Value::Host(h), Value::Float(t)) = (a, b) {
        if h.len() == 1 && h.shape.len() <= t.rank() {
            let s = h.to_f32s()[0];
            match op {
                BinOp::Add => return Ok(map_ft!(t.clone(), x => x.add_scalar(s))),
                BinOp::Mul => return Ok(map_ft!(t.clone(), x => x.mul_scalar(s))),
                BinOp::Sub => return Ok(map_ft!(t.clone(), x => x.neg().add_scalar(s))),
                _ => {}
            }
        }
    }
    float_binary(op, a.to_float(device)?, b.to_float(device)?)
}

/// `a ∘ b` for two device tensors, broadcast.
pub(crate) fn float_binary(op: BinOp, a: Ft, b: Ft) -> Result<Ft, String> {
    let shape = broadcast_shape(&a.dims(), &b.dims())?;
    by_rank!(shape.len(), D => {
        let (x, y) = (a.lift::<D>()?, b.lift::<D>()?);
        Ok(match op {
            BinOp::Add => x + y,
            BinOp::Sub => x - y,
            BinOp::Mul => x * y,
            BinOp::Div => x / y,
            BinOp::Pow => x.powf(y),
        }
        .ft())
    })
}

/// Elementwise unary operators on the device.
fn unary(node: &Node, t: Ft) -> Result<Ft, String> {
    Ok(match node.op.as_str() {
        "Relu" => map_ft!(t, x => activation::relu(x)),
        "Sigmoid" => map_ft!(t, x => activation::sigmoid(x)),
        "Tanh" => map_ft!(t, x => activation::tanh(x)),
        "Exp" => map_ft!(t, x => x.exp()),
        "Log" => map_ft!(t, x => x.log()),
        "Sqrt" => map_ft!(t, x => x.sqrt()),
        "Neg" => map_ft!(t, x => x.neg()),
        "Abs" => map_ft!(t, x => x.abs()),
        "Erf" => map_ft!(t, x => x.erf()),
        "Reciprocal" => map_ft!(t, x => x.recip()),
        "Floor" => map_ft!(t, x => x.floor()),
        "Ceil" => map_ft!(t, x => x.ceil()),
        "LeakyRelu" => {
            let a = node.float("alpha", 0.01)? as f64;
            map_ft!(t, x => activation::leaky_relu(x, a))
        }
        "Gelu" => match node.string("approximate", "none")?.as_str() {
            "tanh" => map_ft!(t, x => activation::gelu_approximate(x)),
            _ => map_ft!(t, x => activation::gelu(x)),
        },
        "HardSigmoid" => {
            let (a, b) = (
                node.float("alpha", 0.2)? as f64,
                node.float("beta", 0.5)? as f64,
            );
            map_ft!(t, x => activation::hard_sigmoid(x, a, b))
        }
        "HardSwish" => map_ft!(t, x => x.clone() * activation::hard_sigmoid(x, 1.0 / 6.0, 0.5)),
        op => return Err(format!("operator {op} is not elementwise")),
    })
}

/// `Clip` between the optional `min` and `max` (inputs from opset 11, attributes before).
fn clip(node: &Node, t: Ft, inputs: &[Option<&Value>], opset: i64) -> Result<Ft, String> {
    let bound = |i: usize, name: &str| -> Result<Option<f32>, String> {
        if opset < 11 {
            return node
                .attrs
                .get(name)
                .map(|_| node.float(name, 0.0))
                .transpose();
        }
        match opt(inputs, i) {
            None => Ok(None),
            Some(v) => Ok(Some(v.host("Clip's bound")?.to_f32s()[0])),
        }
    };
    Ok(match (bound(1, "min")?, bound(2, "max")?) {
        (Some(lo), Some(hi)) => map_ft!(t, x => x.clamp(lo, hi)),
        (Some(lo), None) => map_ft!(t, x => x.clamp_min(lo)),
        (None, Some(hi)) => map_ft!(t, x => x.clamp_max(hi)),
        (None, None) => t,
    })
}

/// `Softmax` / `LogSoftmax`: along one axis from opset 13; before, over the dimensions from
/// `axis` on, the input viewed as a matrix.
fn softmax(node: &Node, t: Ft, opset: i64, log: bool) -> Result<Ft, String> {
    let dims = t.dims();
    let f = |x: Ft, d: usize| -> Result<Ft, String> {
        by_rank!(x.rank(), D => {
            let x = x.lift::<D>()?;
            Ok(if log { activation::log_softmax(x, d) } else { activation::softmax(x, d) }.ft())
        })
    };
    if opset >= 13 {
        let a = axis(node.int("axis", -1)?, dims.len())?;
        return f(t, a);
    }
    let a = axis(node.int("axis", 1)?, dims.len())?;
    let matrix = [dims[..a].iter().product(), dims[a..].iter().product()];
    f(t.reshape(&matrix)?, 1)?.reshape(&dims)
}

/// `ReduceMean` / `ReduceSum` / `ReduceMax` over `axes` (all when none), keeping the reduced
/// dimensions as 1 when `keepdims`.
fn reduce(node: &Node, t: Ft, inputs: &[Option<&Value>], opset: i64) -> Result<Ft, String> {
    let dims = t.dims();
    let from = if node.op == "ReduceSum" { 13 } else { 18 };
    let axes_input = match opt(inputs, 1) {
        Some(v) => Some(v.host("the reduction axes")?),
        None => None,
    };
    let axes = axes_of(node, axes_input, opset, from)?;
    let axes: Vec<usize> = match axes {
        Some(a) if !a.is_empty() => a
            .iter()
            .map(|&a| axis(a, dims.len()))
            .collect::<Result<_, _>>()?,
        _ if node.int("noop_with_empty_axes", 0)? != 0 => return Ok(t),
        _ => (0..dims.len()).collect(),
    };
    let mut out = t;
    for &a in &axes {
        out = match node.op.as_str() {
            "ReduceMean" => map_ft!(out, x => x.mean_dim(a)),
            "ReduceSum" => map_ft!(out, x => x.sum_dim(a)),
            _ => map_ft!(out, x => x.max_dim(a)),
        };
    }
    if node.int("keepdims", 1)? == 0 {
        let kept: Vec<usize> = (0..dims.len())
            .filter(|d| !axes.contains(d))
            .map(|d| dims[d])
            .collect();
        out = out.reshape(&kept)?;
    }
    Ok(out)
}

/// A 1-D index tensor on `device`.
fn index_tensor(idx: &[i64], device: &Device) -> Tensor<1, Int> {
    Tensor::<1, Int>::from_data(TensorData::new(idx.to_vec(), [idx.len()]), device)
}

/// `Slice` of a device tensor: `narrow` for unit steps, `select` otherwise.
fn slice_float(t: Ft, ranges: &[host::SliceRange], device: &Device) -> Result<Ft, String> {
    let mut out = t;
    for r in ranges {
        let (a, start, len) = (r.axis, r.start as usize, r.len);
        check_slice_range(r, out.dims().get(a).copied())?;
        out = if r.step == 1 {
            map_ft!(out, x => x.narrow(a, start, len))
        } else {
            let idx: Vec<i64> = (0..len as i64).map(|i| r.start + i * r.step).collect();
            let idx = index_tensor(&idx, device);
            map_ft!(out, x => x.select(a, idx.clone()))
        };
    }
    Ok(out)
}

/// An error unless `r` picks at least one element, all inside an axis of `size` (`None`:
/// the axis does not exist). burn's `narrow` and `select` panic otherwise, and a Slice
/// whose range is empty or out of bounds (ONNX allows an empty result) is a few bytes of
/// a file away; advtrain's runtime needs every tensor non-empty, so it is refused.
fn check_slice_range(r: &host::SliceRange, size: Option<usize>) -> Result<(), String> {
    let Some(size) = size else {
        return Err(format!(
            "Slice on axis {}, which the tensor does not have",
            r.axis
        ));
    };
    if r.len == 0 {
        return Err(format!(
            "Slice gives an empty tensor along axis {} (size {size}): not supported",
            r.axis
        ));
    }
    let last = r
        .start
        .saturating_add((r.len as i64 - 1).saturating_mul(r.step));
    if [r.start, last].iter().any(|&i| i < 0 || i >= size as i64) {
        return Err(format!(
            "Slice reads outside axis {} (size {size}): start {}, step {}, {} elements",
            r.axis, r.start, r.step, r.len
        ));
    }
    Ok(())
}

/// `Gather` of a device tensor with host indices.
fn gather_float(node: &Node, t: Ft, indices: &HostTensor, device: &Device) -> Result<Ft, String> {
    let dims = t.dims();
    let a = axis(node.int("axis", 0)?, dims.len())?;
    let n = dims[a] as i64;
    let idx: Vec<i64> = indices
        .to_i64s()
        .into_iter()
        .map(|i| if i < 0 { i + n } else { i })
        .collect();
    if let Some(bad) = idx.iter().find(|&&i| !(0..n).contains(&i)) {
        return Err(format!("Gather index {bad} is out of range for size {n}"));
    }
    let tensor = index_tensor(&idx, device);
    let picked = map_ft!(t, x => x.select(a, tensor.clone()));
    let mut shape = dims[..a].to_vec();
    shape.extend_from_slice(&indices.shape);
    shape.extend_from_slice(&dims[a + 1..]);
    picked.reshape(&shape)
}

/// `Concat` of device tensors (host parts are copied to the device).
fn concat(node: &Node, inputs: &[Option<&Value>], device: &Device) -> Result<Ft, String> {
    let parts: Vec<Ft> = inputs
        .iter()
        .flatten()
        .map(|v| v.to_float(device))
        .collect::<Result<_, _>>()?;
    let rank = parts.first().map_or(1, Ft::rank);
    let a = axis(node.int("axis", 0)?, rank)?;
    check_concat_shapes(&parts, a)?;
    by_rank!(rank, D => {
        let typed: Vec<Tensor<D>> = parts.into_iter().map(|p| p.lift::<D>()).collect::<Result<_, _>>()?;
        Ok(Tensor::cat(typed, a).ft())
    })
}

/// An error unless `parts` are at least one tensor, all of one rank and of one size on
/// every axis but `a`: burn's `cat` panics otherwise, and a graph's shapes are whatever its
/// file says (the fuzzer's first ONNX crash in CI was a Concat of [2,1,28,28] with [1,1,1,1]).
fn check_concat_shapes(parts: &[Ft], a: usize) -> Result<(), String> {
    let Some(first) = parts.first().map(Ft::dims) else {
        return Err("Concat of no tensors".into());
    };
    for p in &parts[1..] {
        let dims = p.dims();
        let same = dims.len() == first.len()
            && dims
                .iter()
                .zip(&first)
                .enumerate()
                .all(|(i, (x, y))| i == a || x == y);
        if !same {
            return Err(format!(
                "Concat of tensors of shapes {first:?} and {dims:?} along axis {a}: they must \
                 agree on every other axis"
            ));
        }
    }
    Ok(())
}

/// `Split` into the node's outputs.
fn split(node: &Node, t: Ft, inputs: &[Option<&Value>], opset: i64) -> Result<Vec<Value>, String> {
    let dims = t.dims();
    let a = axis(node.int("axis", 0)?, dims.len())?;
    let n_out = node.outputs.len();
    let sizes: Vec<usize> = match (opset >= 13, opt(inputs, 1), node.ints("split")?) {
        (true, Some(v), _) => v
            .host("Split's sizes")?
            .to_i64s()
            .iter()
            .map(|&s| s as usize)
            .collect(),
        (false, _, Some(s)) => s.iter().map(|&s| s as usize).collect(),
        _ => {
            let chunk = dims[a].div_ceil(n_out.max(1));
            (0..n_out)
                .map(|i| chunk.min(dims[a].saturating_sub(i * chunk)))
                .collect()
        }
    };
    if sizes.iter().sum::<usize>() != dims[a] {
        return Err(format!(
            "Split sizes {sizes:?} do not add up to {}",
            dims[a]
        ));
    }
    let mut start = 0;
    let mut out = Vec::new();
    for s in sizes {
        out.push(Value::Float(map_ft!(t.clone(), x => x.narrow(a, start, s))));
        start += s;
    }
    Ok(out)
}

/// `Where(cond, x, y)` with a host condition.
fn where_float(cond: &HostTensor, x: &Value, y: &Value, device: &Device) -> Result<Ft, String> {
    let (x, y) = (x.to_float(device)?, y.to_float(device)?);
    let shape = broadcast_shape(&broadcast_shape(&cond.shape, &x.dims())?, &y.dims())?;
    let c = cond.broadcast_to(&shape)?.to_bools();
    by_rank!(shape.len(), D => {
        let s: [usize; D] = shape.clone().try_into().expect("rank checked");
        let mask = Tensor::<D, Bool>::from_data(TensorData::new(c.clone(), s), device);
        let (x, y) = (x.lift::<D>()?.expand(s), y.lift::<D>()?.expand(s));
        Ok(y.mask_where(mask, x).ft())
    })
}

/// `Expand` to a shape broadcast with the input's.
fn expand(t: Ft, spec: &HostTensor) -> Result<Ft, String> {
    let spec: Vec<usize> = spec.to_i64s().iter().map(|&v| v.max(0) as usize).collect();
    let shape = broadcast_shape(&t.dims(), &spec)?;
    by_rank!(shape.len(), D => {
        let s: [usize; D] = shape.clone().try_into().expect("rank checked");
        Ok(t.lift::<D>()?.expand(s).ft())
    })
}

/// `Pad` with a constant, by reflection or by repeating the edge.
fn pad(node: &Node, t: Ft, inputs: &[Option<&Value>], opset: i64) -> Result<Ft, String> {
    let rank = t.rank();
    let pads: Vec<i64> = if opset < 11 {
        node.ints("pads")?.unwrap_or_default()
    } else {
        arg(inputs, 1)?.host("Pad's pads")?.to_i64s()
    };
    let value = match (opset < 11, opt(inputs, 2)) {
        (true, _) => node.float("value", 0.0)?,
        (false, Some(v)) => v
            .host("Pad's value")?
            .to_f32s()
            .first()
            .copied()
            .unwrap_or(0.0),
        (false, None) => 0.0,
    };
    let axes: Vec<usize> = match opt(inputs, 3) {
        Some(v) => v
            .host("Pad's axes")?
            .to_i64s()
            .iter()
            .map(|&a| axis(a, rank))
            .collect::<Result<_, _>>()?,
        None => (0..rank).collect(),
    };
    if pads.len() != 2 * axes.len() || pads.iter().any(|&p| p < 0) {
        return Err(format!(
            "Pad with pads {pads:?} for {} axes (negative pads are not supported)",
            axes.len()
        ));
    }
    let mut pairs = vec![(0usize, 0usize); rank];
    for (k, &a) in axes.iter().enumerate() {
        pairs[a] = (pads[k] as usize, pads[k + axes.len()] as usize);
    }
    let mode = match node.string("mode", "constant")?.as_str() {
        "constant" => PadMode::Constant(value),
        "reflect" => PadMode::Reflect,
        "edge" => PadMode::Edge,
        m => return Err(format!("Pad mode '{m}' is not supported")),
    };
    Ok(map_ft!(t, x => x.pad(pairs.clone(), mode)))
}

/// Evaluates a node at run time.
pub(crate) fn eval(
    node: &Node,
    inputs: &[Option<&Value>],
    ctx: &Ctx,
) -> Result<Vec<Value>, String> {
    let all_host = inputs
        .iter()
        .all(|v| matches!(v, None | Some(Value::Host(_))));
    if all_host && host_evaluable(&node.op) {
        let hosts: Vec<Option<&HostTensor>> = inputs
            .iter()
            .map(|v| v.map(|v| v.host("").expect("checked host")))
            .collect();
        return Ok(eval_host(node, &hosts, ctx.opset)?
            .into_iter()
            .map(Value::Host)
            .collect());
    }
    let device = &ctx.device;
    let x = || arg(inputs, 0).and_then(|v| v.to_float(device));
    let host_in =
        |i: usize, what: &str| -> Result<&HostTensor, String> { arg(inputs, i)?.host(what) };
    let one = |t: Ft| Ok(vec![Value::Float(t)]);
    let op = node.op.as_str();
    match op {
        "Shape" => Ok(vec![Value::Host(shape_of(&arg(inputs, 0)?.dims(), node)?)]),
        "Size" => Ok(vec![Value::Host(HostTensor::new(
            vec![],
            HostData::I64(vec![arg(inputs, 0)?.dims().iter().product::<usize>() as i64]),
        )?)]),
        "Identity" | "Dropout" => one(x()?),
        "Cast" => match node.int("to", 1)? {
            1 | 10 | 11 | 16 => one(x()?),
            to => Err(format!("Cast of an image-dependent tensor to ONNX type {to} (advtrain keeps such tensors in float)")),
        },
        "Reshape" => {
            let t = x()?;
            let shape = reshape_of(node, &t.dims(), host_in(1, "Reshape's shape")?)?;
            one(t.reshape(&shape)?)
        }
        "Flatten" => {
            let t = x()?;
            let shape = flatten_shape(&t.dims(), node)?;
            one(t.reshape(&shape)?)
        }
        "Unsqueeze" | "Squeeze" => {
            let t = x()?;
            let axes_in = match opt(inputs, 1) {
                Some(v) => Some(v.host("the axes")?),
                None => None,
            };
            let axes = axes_of(node, axes_in, ctx.opset, 13)?;
            let shape = if op == "Unsqueeze" {
                unsqueeze_shape(&t.dims(), axes.as_deref().ok_or("Unsqueeze without axes")?)?
            } else {
                squeeze_shape(&t.dims(), axes.as_deref())?
            };
            one(t.reshape(&shape)?)
        }
        "Transpose" => {
            let t = x()?;
            let perm = perm_of(node, t.rank())?;
            by_rank!(t.rank(), D => {
                let p: [usize; D] = perm.clone().try_into().expect("rank checked");
                one(t.lift::<D>()?.permute(p).ft())
            })
        }
        "Concat" => one(concat(node, inputs, device)?),
        "Split" => split(node, x()?, inputs, ctx.opset),
        "Slice" => {
            let t = x()?;
            let hosts: Vec<Option<&HostTensor>> = inputs
                .iter()
                .enumerate()
                .map(|(i, v)| if i == 0 { Ok(None) } else { v.map(|v| v.host("Slice's bounds")).transpose() })
                .collect::<Result<_, _>>()?;
            let ranges = slice_of(node, &t.dims(), &hosts, ctx.opset)?;
            one(slice_float(t, &ranges, device)?)
        }
        "Gather" => one(gather_float(node, x()?, host_in(1, "Gather's indices")?, device)?),
        "Expand" => one(expand(x()?, host_in(1, "Expand's shape")?)?),
        "Where" => one(where_float(
            host_in(0, "Where's condition")?,
            arg(inputs, 1)?,
            arg(inputs, 2)?,
            device,
        )?),
        "Pad" => one(pad(node, x()?, inputs, ctx.opset)?),
        "Add" | "Sub" | "Mul" | "Div" | "Pow" => {
            let bin = match op {
                "Add" => BinOp::Add,
                "Sub" => BinOp::Sub,
                "Mul" => BinOp::Mul,
                "Div" => BinOp::Div,
                _ => BinOp::Pow,
            };
            one(binary(bin, arg(inputs, 0)?, arg(inputs, 1)?, device)?)
        }
        "Relu" | "Sigmoid" | "Tanh" | "Exp" | "Log" | "Sqrt" | "Neg" | "Abs" | "Erf"
        | "Reciprocal" | "Floor" | "Ceil" | "LeakyRelu" | "Gelu" | "HardSigmoid" | "HardSwish" => {
            one(unary(node, x()?)?)
        }
        "Clip" => one(clip(node, x()?, inputs, ctx.opset)?),
        "Softmax" | "LogSoftmax" => one(softmax(node, x()?, ctx.opset, op == "LogSoftmax")?),
        "ReduceMean" | "ReduceSum" | "ReduceMax" => one(reduce(node, x()?, inputs, ctx.opset)?),
        "MatMul" => one(nn::matmul(x()?, arg(inputs, 1)?.to_float(device)?)?),
        "Gemm" => one(nn::gemm(node, x()?, arg(inputs, 1)?.to_float(device)?, opt(inputs, 2).map(|v| v.to_float(device)).transpose()?)?),
        "Conv" => one(nn::conv(node, x()?, arg(inputs, 1)?.to_float(device)?, opt(inputs, 2).map(|v| v.to_float(device)).transpose()?)?),
        "BatchNormalization" => one(nn::batch_norm(node, inputs, ctx)?),
        "LayerNormalization" => one(nn::layer_norm(node, x()?, inputs, device)?),
        "MaxPool" | "AveragePool" => one(nn::pool(node, x()?)?),
        "GlobalAveragePool" | "GlobalMaxPool" => one(nn::global_pool(x()?, op == "GlobalMaxPool")?),
        "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "Not" | "Range"
        | "ConstantOfShape" | "Constant" => Err(format!(
            "{op} of an image-dependent tensor (advtrain runs {op} only on constants and shapes)"
        )),
        _ => Err(format!("operator {op} is not supported")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_helpers_follow_the_operator_definitions() {
        assert_eq!(
            unsqueeze_shape(&[3, 4], &[0, -1]).unwrap(),
            vec![1, 3, 4, 1]
        );
        assert_eq!(squeeze_shape(&[1, 3, 1], None).unwrap(), vec![3]);
        assert!(squeeze_shape(&[2, 3], Some(&[0])).is_err());
        assert_eq!(int_div(-7, 2), Some(-3));
        assert_eq!(int_div(7, 0), None);
    }
}
