//! The layers: matrix products, convolution, normalisation and pooling, on burn's
//! operations (and advtrain's fast convolution where it applies).

use burn::nn::pool::MaxPool2dConfig;
use burn::prelude::{Device, Tensor};
use burn::tensor::ops::{AvgPoolOptions, MaxPoolOptions};

use super::graph::Node;
use super::host::{axis, broadcast_shape};
use super::ops::{float_binary, BinOp, Ctx};
use super::value::{by_rank, map_ft, Ft, IntoFt, Value};
use crate::fastpath::{self, ConvSpec};

/// `MatMul` with numpy semantics: 1-D operands gain (and lose) a dimension, batch
/// dimensions broadcast. A rank-2 right operand (a linear layer on a sequence) is one 2-D
/// product over the flattened leading dimensions.
pub(crate) fn matmul(a: Ft, b: Ft) -> Result<Ft, String> {
    let (da, db) = (a.dims(), b.dims());
    let a = if da.len() == 1 {
        a.reshape(&[1, da[0]])?
    } else {
        a
    };
    let b = if db.len() == 1 {
        b.reshape(&[db[0], 1])?
    } else {
        b
    };
    let (sa, sb) = (a.dims(), b.dims());
    let (m, k) = (sa[sa.len() - 2], sa[sa.len() - 1]);
    let (k2, n) = (sb[sb.len() - 2], sb[sb.len() - 1]);
    if k != k2 {
        return Err(format!(
            "MatMul of {da:?} and {db:?}: inner sizes {k} and {k2} differ"
        ));
    }
    let batch = broadcast_shape(&sa[..sa.len() - 2], &sb[..sb.len() - 2])?;
    let mut out_shape = batch.clone();
    if da.len() > 1 {
        out_shape.push(m);
    }
    if db.len() > 1 {
        out_shape.push(n);
    }
    if sb.len() == 2 {
        let rows: usize = sa[..sa.len() - 1].iter().product();
        let y = a.typed([rows, k]).matmul(b.typed([k, n]));
        return Ft::R2(y).reshape(&out_shape);
    }
    let rank = batch.len() + 2;
    let y = by_rank!(rank, D => {
        let ta: [usize; D] = [batch.clone(), vec![m, k]].concat().try_into().expect("rank");
        let tb: [usize; D] = [batch.clone(), vec![k, n]].concat().try_into().expect("rank");
        Ok(a.lift::<D>()?.expand(ta).matmul(b.lift::<D>()?.expand(tb)).ft())
    })?;
    y.reshape(&out_shape)
}

/// `Gemm`: `alpha · A' B' + beta · C`, with `'` the optional transposes.
pub(crate) fn gemm(node: &Node, a: Ft, b: Ft, c: Option<Ft>) -> Result<Ft, String> {
    let two = |t: Ft, what: &str| -> Result<Tensor<2>, String> {
        match t.dims().as_slice() {
            [r, c] => Ok(t.typed([*r, *c])),
            d => Err(format!(
                "Gemm's {what} has shape {d:?}; it must be a matrix"
            )),
        }
    };
    let (mut a, mut b) = (two(a, "A")?, two(b, "B")?);
    if node.int("transA", 0)? != 0 {
        a = a.transpose();
    }
    if node.int("transB", 0)? != 0 {
        b = b.transpose();
    }
    if a.dims()[1] != b.dims()[0] {
        return Err(format!("Gemm of {:?} and {:?}", a.dims(), b.dims()));
    }
    let (alpha, beta) = (node.float("alpha", 1.0)?, node.float("beta", 1.0)?);
    // The common case (a linear layer: alpha = beta = 1, a bias vector or none) runs on
    // the fast linear kernel, as the zoo's layers do.
    let n = b.dims()[1];
    let bias = match &c {
        None => Some(None),
        Some(Ft::R1(v)) if v.dims() == [n] => Some(Some(v.clone())),
        _ => None,
    };
    if let (true, Some(bias)) = (alpha == 1.0 && beta == 1.0, bias) {
        return Ok(Ft::R2(crate::fastpath::linear_tensors(a, b, bias, false)));
    }
    let mut y = a.matmul(b);
    if alpha != 1.0 {
        y = y.mul_scalar(alpha);
    }
    let y = Ft::R2(y);
    match c {
        None => Ok(y),
        Some(c) => {
            let c = if beta != 1.0 {
                map_ft!(c, t => t.mul_scalar(beta))
            } else {
                c
            };
            float_binary(BinOp::Add, y, c)
        }
    }
}

/// Spatial attributes of Conv and the pools: `(kernel, strides, dilations, pads)` with the
/// pads as (begin, end) per spatial dimension, `auto_pad` resolved against `size`.
/// Strides, dilations and (begin, end) pads of a 2-D window operator.
type Spatial = ([usize; 2], [usize; 2], [(usize, usize); 2]);

fn spatial(node: &Node, kernel: [usize; 2], size: [usize; 2]) -> Result<Spatial, String> {
    let pair = |name: &str, default: usize| -> Result<[usize; 2], String> {
        match node.ints(name)?.as_deref() {
            None => Ok([default; 2]),
            Some([a, b]) if *a > 0 && *b > 0 => Ok([*a as usize, *b as usize]),
            Some(v) => Err(format!(
                "{name} {v:?}: advtrain runs 2-D {} with positive {name}",
                node.op
            )),
        }
    };
    let (strides, dilations) = (pair("strides", 1)?, pair("dilations", 1)?);
    let pads = match node.string("auto_pad", "NOTSET")?.as_str() {
        "NOTSET" => match node.ints("pads")?.as_deref() {
            None => [(0, 0); 2],
            Some([t, l, b, r]) if [t, l, b, r].iter().all(|&&p| p >= 0) => {
                [(*t as usize, *b as usize), (*l as usize, *r as usize)]
            }
            Some(p) => return Err(format!("pads {p:?}: expected four non-negative values")),
        },
        "VALID" => [(0, 0); 2],
        mode @ ("SAME_UPPER" | "SAME_LOWER") => {
            let one = |d: usize| {
                let out = size[d].div_ceil(strides[d]);
                let span = (kernel[d] - 1) * dilations[d] + 1;
                let total = ((out - 1) * strides[d] + span).saturating_sub(size[d]);
                let small = total / 2;
                if mode == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                }
            };
            [one(0), one(1)]
        }
        m => return Err(format!("auto_pad '{m}' is not an ONNX mode")),
    };
    Ok((strides, dilations, pads))
}

/// The tensor as `[n, c, h, w]`, or why it is not one.
fn image(t: Ft, op: &str) -> Result<Tensor<4>, String> {
    match t.dims().as_slice() {
        [n, c, h, w] => Ok(t.typed([*n, *c, *h, *w])),
        d => Err(format!(
            "{op} of a tensor of shape {d:?}: advtrain runs 2-D {op} on [N, C, H, W]"
        )),
    }
}

/// `Conv` (2-D; a 1-D convolution is run as 2-D with a height of one).
pub(crate) fn conv(node: &Node, x: Ft, w: Ft, b: Option<Ft>) -> Result<Ft, String> {
    if x.rank() == 3 {
        return conv1d(node, x, w, b);
    }
    let x = image(x, "Conv")?;
    let w = image(w, "Conv's weight")?;
    let [_, c, h, wd] = x.dims();
    let [o, ci, kh, kw] = w.dims();
    let groups = node.int("group", 1)?.max(1) as usize;
    if ci * groups != c || o % groups != 0 {
        return Err(format!(
            "Conv of {c} channels with a weight of shape {:?} in {groups} groups",
            w.dims()
        ));
    }
    let (stride, dilation, pads) = spatial(node, [kh, kw], [h, wd])?;
    let bias = match b {
        Some(b) if b.dims() == [o] => Some(b.typed([o])),
        Some(b) => return Err(format!("Conv bias of shape {:?} for {o} outputs", b.dims())),
        None => None,
    };
    let spec = ConvSpec {
        stride,
        padding_begin: [pads[0].0, pads[1].0],
        padding_end: [pads[0].1, pads[1].1],
        dilation,
        relu: false,
    };
    let span =
        |d: usize, k: usize, size: usize| size + pads[d].0 + pads[d].1 > (k - 1) * dilation[d];
    if !span(0, kh, h) || !span(1, kw, wd) {
        return Err(format!(
            "Conv kernel {kh}×{kw} is larger than the padded {h}×{wd} input"
        ));
    }
    Ok(Ft::R4(fastpath::conv2d_tensors(x, w, bias, spec, groups)))
}

/// A 1-D convolution as a 2-D one of height 1.
fn conv1d(node: &Node, x: Ft, w: Ft, b: Option<Ft>) -> Result<Ft, String> {
    let widen = |v: Option<Vec<i64>>, one: i64| v.map(|v| [vec![one], v.clone()].concat());
    let mut node2 = node.clone();
    for (name, one) in [("strides", 1), ("dilations", 1), ("kernel_shape", 1)] {
        if let Some(v) = widen(node.ints(name)?, one) {
            node2.attrs.insert(name.into(), super::graph::Attr::Ints(v));
        }
    }
    if let Some(p) = node.ints("pads")? {
        if let [b, e] = p.as_slice() {
            node2
                .attrs
                .insert("pads".into(), super::graph::Attr::Ints(vec![0, *b, 0, *e]));
        }
    }
    let (dx, dw) = (x.dims(), w.dims());
    if dw.len() != 3 {
        return Err(format!("Conv weight of shape {dw:?} for a 1-D input"));
    }
    let x = x.reshape(&[dx[0], dx[1], 1, dx[2]])?;
    let w = w.reshape(&[dw[0], dw[1], 1, dw[2]])?;
    let y = conv(&node2, x, w, b)?;
    let d = y.dims();
    y.reshape(&[d[0], d[1], d[3]])
}

/// Per-channel `[c]` values as a tensor that broadcasts over `[n, c, …]` of `rank`.
fn per_channel(t: &Ft, c: usize, rank: usize, what: &str) -> Result<Ft, String> {
    if t.dims() != [c] {
        return Err(format!(
            "BatchNormalization {what} of shape {:?} for {c} channels",
            t.dims()
        ));
    }
    let mut shape = vec![1; rank];
    shape[1] = c;
    t.clone().reshape(&shape)
}

/// `BatchNormalization`: running statistics in evaluation; in training, batch statistics,
/// with the running ones updated as PyTorch does (unbiased variance; ONNX's `momentum` is
/// the weight of the old value).
pub(crate) fn batch_norm(node: &Node, inputs: &[Option<&Value>], ctx: &Ctx) -> Result<Ft, String> {
    let device = &ctx.device;
    let get = |i: usize| -> Result<Ft, String> {
        inputs
            .get(i)
            .copied()
            .flatten()
            .ok_or_else(|| format!("BatchNormalization input {i} is missing"))?
            .to_float(device)
    };
    let x = get(0)?;
    let dims = x.dims();
    if dims.len() < 2 {
        return Err(format!("BatchNormalization of shape {dims:?}"));
    }
    let (rank, c) = (dims.len(), dims[1]);
    let eps = node.float("epsilon", 1e-5)?;
    let momentum = node.float("momentum", 0.9)?;
    let (scale, shift) = (
        per_channel(&get(1)?, c, rank, "scale")?,
        per_channel(&get(2)?, c, rank, "bias")?,
    );
    let (mean, var) = if ctx.training && x.device().is_autodiff() {
        let stats = batch_statistics(x.clone(), c)?;
        update_running(
            node,
            ctx,
            &stats,
            momentum,
            dims.iter().product::<usize>() / c,
        )?;
        (
            Ft::R1(stats.0).reshape(&shape_c(c, rank))?,
            Ft::R1(stats.1).reshape(&shape_c(c, rank))?,
        )
    } else {
        (
            per_channel(&get(3)?, c, rank, "mean")?,
            per_channel(&get(4)?, c, rank, "variance")?,
        )
    };
    let inv_std = map_ft!(var, v => v.add_scalar(eps).sqrt().recip());
    let y = float_binary(BinOp::Sub, x, mean)?;
    let y = float_binary(BinOp::Mul, y, float_binary(BinOp::Mul, inv_std, scale)?)?;
    float_binary(BinOp::Add, y, shift)
}

fn shape_c(c: usize, rank: usize) -> Vec<usize> {
    let mut s = vec![1; rank];
    s[1] = c;
    s
}

/// Per-channel mean and biased variance of `x` `[n, c, …]`, as `[c]` tensors.
fn batch_statistics(x: Ft, c: usize) -> Result<(Tensor<1>, Tensor<1>), String> {
    let n: usize = x.dims().iter().product::<usize>() / c;
    let rank = x.rank();
    let flat: Tensor<2> = by_rank!(rank, D => {
        Ok(x.clone().lift::<D>()?.swap_dims(0, 1).reshape([c, n]))
    })?;
    let mean = flat.clone().mean_dim(1);
    let centred = flat - mean.clone();
    let var = (centred.clone() * centred).mean_dim(1);
    Ok((mean.reshape([c]), var.reshape([c])))
}

/// Writes the new running statistics of a batch-norm node into its buffers.
fn update_running(
    node: &Node,
    ctx: &Ctx,
    (mean, var): &(Tensor<1>, Tensor<1>),
    momentum: f32,
    n: usize,
) -> Result<(), String> {
    let buffer = |i: usize| -> Result<usize, String> {
        node.inputs
            .get(i)
            .copied()
            .flatten()
            .and_then(|s| ctx.buffer_of_slot.get(&s).copied())
            .ok_or_else(|| format!("BatchNormalization input {i} is not a running statistic"))
    };
    let unbiased = if n > 1 {
        n as f32 / (n as f32 - 1.0)
    } else {
        1.0
    };
    for (i, batch) in [(3, mean.clone()), (4, var.clone().mul_scalar(unbiased))] {
        let state = &ctx.buffers[buffer(i)?];
        let old = state.value_sync().to_device(&batch.device());
        let new = old.mul_scalar(momentum) + batch.detach().mul_scalar(1.0 - momentum);
        state.update(new.detach());
    }
    Ok(())
}

/// `LayerNormalization` over the dimensions from `axis` on.
pub(crate) fn layer_norm(
    node: &Node,
    x: Ft,
    inputs: &[Option<&Value>],
    device: &Device,
) -> Result<Ft, String> {
    let dims = x.dims();
    let a = axis(node.int("axis", -1)?, dims.len())?;
    let eps = node.float("epsilon", 1e-5)?;
    let (outer, inner) = (
        dims[..a].iter().product::<usize>(),
        dims[a..].iter().product::<usize>(),
    );
    let t = x.typed([outer, inner]);
    let mean = t.clone().mean_dim(1);
    let centred = t - mean;
    let var = (centred.clone() * centred.clone()).mean_dim(1);
    let y = centred * var.add_scalar(eps).sqrt().recip();
    let mut y = Ft::R2(y).reshape(&dims)?;
    if let Some(scale) = inputs.get(1).copied().flatten() {
        y = float_binary(BinOp::Mul, y, scale.to_float(device)?)?;
    }
    if let Some(bias) = inputs.get(2).copied().flatten() {
        y = float_binary(BinOp::Add, y, bias.to_float(device)?)?;
    }
    Ok(y)
}

/// `MaxPool` and `AveragePool` (2-D).
pub(crate) fn pool(node: &Node, x: Ft) -> Result<Ft, String> {
    if node.outputs.iter().skip(1).any(Option::is_some) {
        return Err("MaxPool's Indices output is not supported".into());
    }
    let x = image(x, &node.op)?;
    let [_, _, h, w] = x.dims();
    let kernel = match node.ints("kernel_shape")?.as_deref() {
        Some([a, b]) if *a > 0 && *b > 0 => [*a as usize, *b as usize],
        k => return Err(format!("kernel_shape {k:?}: advtrain runs 2-D pooling")),
    };
    let (stride, dilation, pads) = spatial(node, kernel, [h, w])?;
    let ceil = node.int("ceil_mode", 0)? != 0;
    let out = if node.op == "MaxPool" {
        let plain = pads == [(0, 0); 2] && dilation == [1, 1] && stride == kernel && !ceil;
        if plain {
            let module = MaxPool2dConfig::new(kernel).with_strides(stride).init();
            fastpath::max_pool2d(&module, x)
        } else {
            let options = MaxPoolOptions::new(kernel)
                .with_stride(stride)
                .with_padding_pairs(pads)
                .with_dilation(dilation)
                .with_ceil_mode(ceil);
            burn::tensor::module::max_pool2d(x, options)
        }
    } else {
        if dilation != [1, 1] {
            return Err("AveragePool with dilations is not supported".into());
        }
        let options = AvgPoolOptions::new(kernel)
            .with_stride(stride)
            .with_padding_pairs(pads)
            .with_count_include_pad(node.int("count_include_pad", 0)? != 0)
            .with_ceil_mode(ceil);
        burn::tensor::module::avg_pool2d(x, options)
    };
    Ok(Ft::R4(out))
}

/// `GlobalAveragePool` / `GlobalMaxPool`: over every dimension after the channels.
pub(crate) fn global_pool(x: Ft, max: bool) -> Result<Ft, String> {
    let rank = x.rank();
    if rank < 3 {
        return Err(format!("global pooling of shape {:?}", x.dims()));
    }
    let mut out = x;
    for d in 2..rank {
        out = if max {
            map_ft!(out, t => t.max_dim(d))
        } else {
            map_ft!(out, t => t.mean_dim(d))
        };
    }
    Ok(out)
}
