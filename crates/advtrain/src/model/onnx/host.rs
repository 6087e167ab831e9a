//! Small tensors held on the host: constants, shapes and indices.
//!
//! ONNX graphs exported from PyTorch and TensorFlow compute shapes with tensors
//! (`Shape → Gather → Unsqueeze → Concat → Reshape`). Those values are a handful of
//! integers, need no gradient, and must be known exactly to build the float operations,
//! so they live here, in plain vectors, and never on the model's device. Constant
//! sub-graphs are folded with these operations once at load; shape arithmetic that depends
//! on the batch size runs here at every forward pass, at the cost of a few integer
//! operations.
//!
//! Every structural operation is written once as "which input element does each output
//! element take" ([`HostTensor::take`]), so transposes, slices, gathers, concatenations and
//! broadcasts share one indexing routine.

/// The elements of a host tensor.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum HostData {
    /// Floating point (ONNX float, double and float16 are all held as `f32`).
    F32(Vec<f32>),
    /// Integers (ONNX int8 … int64 and uint8 … uint32 are all held as `i64`).
    I64(Vec<i64>),
    /// Booleans.
    Bool(Vec<bool>),
}

/// A host tensor: row-major elements and a shape (empty for a scalar).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct HostTensor {
    /// Size of each dimension; `[]` is a scalar with one element.
    pub shape: Vec<usize>,
    /// `shape.iter().product()` elements, row-major.
    pub data: HostData,
}

/// Most elements a host tensor computed while loading (constant folding, shape arithmetic)
/// may have: 16 Mi, far above any shape computation and below what would exhaust memory.
pub(crate) const MAX_HOST_ELEMENTS: usize = 1 << 24;

/// Number of elements of a shape (1 for a scalar).
pub(crate) fn numel(shape: &[usize]) -> usize {
    // Saturating: shapes come from the file, and a product past usize::MAX must compare
    // unequal to every real length (an error), not overflow (a panic).
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .unwrap_or(usize::MAX)
}

/// Row-major strides of a shape.
fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1];
    }
    s
}

/// Resolves a possibly negative axis against `rank` (`-1` is the last).
pub(crate) fn axis(a: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    let v = if a < 0 { a + r } else { a };
    if (0..r.max(1)).contains(&v) {
        Ok(v as usize)
    } else {
        Err(format!("axis {a} is out of range for rank {rank}"))
    }
}

/// The shape two shapes broadcast to (numpy rules), or why they do not.
pub(crate) fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let rank = a.len().max(b.len());
    let pad = |s: &[usize]| -> Vec<usize> {
        let mut v = vec![1; rank - s.len()];
        v.extend_from_slice(s);
        v
    };
    let (a2, b2) = (pad(a), pad(b));
    a2.iter()
        .zip(&b2)
        .map(|(&x, &y)| match (x, y) {
            _ if x == y => Ok(x),
            (1, y) => Ok(y),
            (x, 1) => Ok(x),
            _ => Err(format!("shapes {a:?} and {b:?} do not broadcast")),
        })
        .collect()
}

impl HostData {
    fn len(&self) -> usize {
        match self {
            HostData::F32(v) => v.len(),
            HostData::I64(v) => v.len(),
            HostData::Bool(v) => v.len(),
        }
    }

    /// The elements at flat positions `idx`, in that order.
    fn pick(&self, idx: &[usize]) -> HostData {
        match self {
            HostData::F32(v) => HostData::F32(idx.iter().map(|&i| v[i]).collect()),
            HostData::I64(v) => HostData::I64(idx.iter().map(|&i| v[i]).collect()),
            HostData::Bool(v) => HostData::Bool(idx.iter().map(|&i| v[i]).collect()),
        }
    }
}

impl HostTensor {
    /// A tensor of `shape` holding `data`, checking the element count.
    pub fn new(shape: Vec<usize>, data: HostData) -> Result<Self, String> {
        if numel(&shape) != data.len() {
            return Err(format!(
                "shape {shape:?} needs {} elements, the data has {}",
                numel(&shape),
                data.len()
            ));
        }
        Ok(Self { shape, data })
    }

    /// A 1-D integer tensor.
    pub fn ints(values: Vec<i64>) -> Self {
        Self {
            shape: vec![values.len()],
            data: HostData::I64(values),
        }
    }

    /// A scalar float.
    pub fn scalar_f32(v: f32) -> Self {
        Self {
            shape: vec![],
            data: HostData::F32(vec![v]),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        numel(&self.shape)
    }

    /// The elements as integers (floats are truncated, booleans are 0/1).
    pub fn to_i64s(&self) -> Vec<i64> {
        match &self.data {
            HostData::F32(v) => v.iter().map(|&x| x as i64).collect(),
            HostData::I64(v) => v.clone(),
            HostData::Bool(v) => v.iter().map(|&b| b as i64).collect(),
        }
    }

    /// The elements as floats.
    pub fn to_f32s(&self) -> Vec<f32> {
        match &self.data {
            HostData::F32(v) => v.clone(),
            HostData::I64(v) => v.iter().map(|&x| x as f32).collect(),
            HostData::Bool(v) => v.iter().map(|&b| b as u8 as f32).collect(),
        }
    }

    /// The elements as floats, without a copy when they already are.
    pub fn into_f32s(self) -> Vec<f32> {
        match self.data {
            HostData::F32(v) => v,
            _ => self.to_f32s(),
        }
    }

    /// The elements as booleans (non-zero is true).
    pub fn to_bools(&self) -> Vec<bool> {
        match &self.data {
            HostData::F32(v) => v.iter().map(|&x| x != 0.0).collect(),
            HostData::I64(v) => v.iter().map(|&x| x != 0).collect(),
            HostData::Bool(v) => v.clone(),
        }
    }

    /// Converts the element type (`to` is an ONNX `TensorProto.DataType` code).
    pub fn cast(&self, to: i32) -> Result<Self, String> {
        let data = match to {
            1 | 10 | 11 | 16 => HostData::F32(self.to_f32s()),
            2..=7 | 12 | 13 => HostData::I64(self.to_i64s()),
            9 => HostData::Bool(self.to_bools()),
            _ => return Err(format!("Cast to ONNX data type {to} is not supported")),
        };
        Ok(Self {
            shape: self.shape.clone(),
            data,
        })
    }

    /// The tensor with output element `i` taken from input element `source[i]`.
    fn take(&self, shape: Vec<usize>, source: &[usize]) -> Self {
        Self {
            shape,
            data: self.data.pick(source),
        }
    }

    /// Flat input positions for an output of `out_shape`, where `map` turns an output
    /// multi-index into an input multi-index.
    fn mapped_positions(&self, out_shape: &[usize], map: impl Fn(&mut [usize])) -> Vec<usize> {
        let in_strides = strides(&self.shape);
        let mut index = vec![0; out_shape.len()];
        let mut mapped = vec![0; out_shape.len()];
        let mut out = Vec::with_capacity(numel(out_shape));
        for _ in 0..numel(out_shape) {
            mapped.copy_from_slice(&index);
            map(&mut mapped);
            out.push(mapped.iter().zip(&in_strides).map(|(i, s)| i * s).sum());
            // Row-major increment of the output index.
            for d in (0..out_shape.len()).rev() {
                index[d] += 1;
                if index[d] < out_shape[d] {
                    break;
                }
                index[d] = 0;
            }
        }
        out
    }

    /// The same elements under a new shape of equal size.
    pub fn reshaped(&self, shape: Vec<usize>) -> Result<Self, String> {
        HostTensor::new(shape, self.data.clone())
    }

    /// Broadcasts to `shape` (numpy rules; `shape` must be the broadcast result).
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Self, String> {
        let target = broadcast_shape(&self.shape, shape)?;
        if target != shape {
            return Err(format!("cannot broadcast {:?} to {shape:?}", self.shape));
        }
        // The one host operation whose output can outgrow its input (transposes, slices and
        // gathers cannot): bounded, as a few bytes of a file can ask for 2^60 elements.
        if numel(shape) > MAX_HOST_ELEMENTS {
            return Err(format!(
                "broadcasting {:?} to {shape:?} makes more than {MAX_HOST_ELEMENTS} elements: a \
                 constant that large is not a shape computation",
                self.shape
            ));
        }
        let offset = shape.len() - self.shape.len();
        let mut padded = vec![1; offset];
        padded.extend_from_slice(&self.shape);
        let src = HostTensor {
            shape: padded.clone(),
            data: self.data.clone(),
        };
        let pos = src.mapped_positions(shape, |idx| {
            for (i, &n) in idx.iter_mut().zip(&padded) {
                if n == 1 {
                    *i = 0;
                }
            }
        });
        Ok(src.take(shape.to_vec(), &pos))
    }

    /// Permutes the dimensions (`perm[i]` is the input dimension of output dimension `i`).
    pub fn transpose(&self, perm: &[usize]) -> Self {
        let out_shape: Vec<usize> = perm.iter().map(|&p| self.shape[p]).collect();
        let pos = self.mapped_positions(&out_shape, |idx| {
            let o = idx.to_vec();
            for (d, &p) in perm.iter().enumerate() {
                idx[p] = o[d];
            }
        });
        self.take(out_shape, &pos)
    }

    /// Elements `starts[k]..ends[k]` by `steps[k]` along `axes[k]` (already resolved
    /// and clamped, as [`slice_ranges`] returns them).
    pub fn slice(&self, ranges: &[SliceRange]) -> Self {
        let mut out_shape = self.shape.clone();
        for r in ranges {
            out_shape[r.axis] = r.len;
        }
        let pos = self.mapped_positions(&out_shape, |idx| {
            for r in ranges {
                idx[r.axis] = (r.start + idx[r.axis] as i64 * r.step) as usize;
            }
        });
        self.take(out_shape, &pos)
    }

    /// `np.take(self, indices, axis)`: negative indices count from the end.
    pub fn gather(&self, axis: usize, indices: &HostTensor) -> Result<Self, String> {
        let n = self.shape[axis] as i64;
        let idx: Vec<usize> = indices
            .to_i64s()
            .into_iter()
            .map(|i| {
                let j = if i < 0 { i + n } else { i };
                if (0..n).contains(&j) {
                    Ok(j as usize)
                } else {
                    Err(format!("Gather index {i} is out of range for size {n}"))
                }
            })
            .collect::<Result<_, _>>()?;
        let mut out_shape = self.shape[..axis].to_vec();
        out_shape.extend_from_slice(&indices.shape);
        out_shape.extend_from_slice(&self.shape[axis + 1..]);
        let pos = take_positions(&self.shape, &out_shape, axis, indices.shape.len(), &idx);
        Ok(self.take(out_shape, &pos))
    }

    /// Joins tensors of equal rank along `axis`.
    pub fn concat(parts: &[HostTensor], axis: usize) -> Result<Self, String> {
        let first = parts.first().ok_or("Concat of no tensors")?;
        let mut out_shape = first.shape.clone();
        out_shape[axis] = 0;
        for p in parts {
            let same = p.shape.len() == first.shape.len()
                && p.shape
                    .iter()
                    .zip(&first.shape)
                    .enumerate()
                    .all(|(d, (a, b))| d == axis || a == b);
            if !same {
                return Err(format!(
                    "Concat of shapes {:?} and {:?} along axis {axis}",
                    first.shape, p.shape
                ));
            }
            out_shape[axis] += p.shape[axis];
        }
        let outer: usize = out_shape[..axis].iter().product();
        let block = |p: &HostTensor| p.shape[axis..].iter().product::<usize>();
        let data = if parts.iter().any(|p| matches!(p.data, HostData::F32(_))) {
            HostData::F32(interleave(parts, outer, block, HostTensor::to_f32s))
        } else if parts.iter().any(|p| matches!(p.data, HostData::I64(_))) {
            HostData::I64(interleave(parts, outer, block, HostTensor::to_i64s))
        } else {
            HostData::Bool(interleave(parts, outer, block, HostTensor::to_bools))
        };
        HostTensor::new(out_shape, data)
    }

    /// Elementwise `f` of two broadcast tensors, as floats when either is a float, else as
    /// integers.
    pub fn binary(
        &self,
        other: &HostTensor,
        f: fn(f64, f64) -> f64,
        int: fn(i64, i64) -> Option<i64>,
    ) -> Result<Self, String> {
        let shape = broadcast_shape(&self.shape, &other.shape)?;
        let (a, b) = (self.broadcast_to(&shape)?, other.broadcast_to(&shape)?);
        let data = match (&a.data, &b.data) {
            (HostData::I64(x), HostData::I64(y)) => HostData::I64(
                x.iter()
                    .zip(y)
                    .map(|(&p, &q)| int(p, q).ok_or("integer division by zero"))
                    .collect::<Result<_, _>>()?,
            ),
            _ => HostData::F32(
                a.to_f32s()
                    .iter()
                    .zip(b.to_f32s())
                    .map(|(&p, q)| f(p as f64, q as f64) as f32)
                    .collect(),
            ),
        };
        Ok(HostTensor { shape, data })
    }

    /// Elementwise comparison of two broadcast tensors.
    pub fn compare(&self, other: &HostTensor, f: fn(f64, f64) -> bool) -> Result<Self, String> {
        let shape = broadcast_shape(&self.shape, &other.shape)?;
        let (a, b) = (self.broadcast_to(&shape)?, other.broadcast_to(&shape)?);
        let data = match (&a.data, &b.data) {
            (HostData::I64(x), HostData::I64(y)) => x
                .iter()
                .zip(y)
                .map(|(&p, &q)| f(p as f64, q as f64))
                .collect(),
            _ => a
                .to_f32s()
                .iter()
                .zip(b.to_f32s())
                .map(|(&p, q)| f(p as f64, q as f64))
                .collect(),
        };
        Ok(HostTensor {
            shape,
            data: HostData::Bool(data),
        })
    }

    /// `cond ? a : b`, all three broadcast.
    pub fn select(cond: &HostTensor, a: &HostTensor, b: &HostTensor) -> Result<Self, String> {
        let shape = broadcast_shape(&broadcast_shape(&cond.shape, &a.shape)?, &b.shape)?;
        let c = cond.broadcast_to(&shape)?.to_bools();
        let (a, b) = (a.broadcast_to(&shape)?, b.broadcast_to(&shape)?);
        let data = match (&a.data, &b.data) {
            (HostData::I64(x), HostData::I64(y)) => HostData::I64(
                c.iter()
                    .zip(x.iter().zip(y))
                    .map(|(&c, (&p, &q))| if c { p } else { q })
                    .collect(),
            ),
            _ => HostData::F32(
                c.iter()
                    .zip(a.to_f32s().iter().zip(b.to_f32s()))
                    .map(|(&c, (&p, q))| if c { p } else { q })
                    .collect(),
            ),
        };
        Ok(HostTensor { shape, data })
    }

    /// Elementwise `f` on the elements as floats.
    pub fn map_f32(&self, f: impl Fn(f32) -> f32) -> Self {
        HostTensor {
            shape: self.shape.clone(),
            data: HostData::F32(self.to_f32s().into_iter().map(f).collect()),
        }
    }
}

/// Concatenation's element order: for each of `outer` rows, each part's block in turn.
fn interleave<T: Clone>(
    parts: &[HostTensor],
    outer: usize,
    block: impl Fn(&HostTensor) -> usize,
    values: impl Fn(&HostTensor) -> Vec<T>,
) -> Vec<T> {
    let parts: Vec<(Vec<T>, usize)> = parts.iter().map(|p| (values(p), block(p))).collect();
    let mut out = Vec::new();
    for o in 0..outer {
        for (v, b) in &parts {
            out.extend_from_slice(&v[o * b..(o + 1) * b]);
        }
    }
    out
}

/// Flat input positions of `np.take` along `axis` with `k`-dimensional indices `idx`
/// (already resolved to non-negative positions), for an output of `out_shape`.
fn take_positions(
    in_shape: &[usize],
    out_shape: &[usize],
    axis: usize,
    k: usize,
    idx: &[usize],
) -> Vec<usize> {
    let in_strides = strides(in_shape);
    let out_strides = strides(out_shape);
    let idx_shape: Vec<usize> = out_shape[axis..axis + k].to_vec();
    let idx_strides = strides(&idx_shape);
    (0..numel(out_shape))
        .map(|flat| {
            let o: Vec<usize> = out_strides
                .iter()
                .zip(out_shape)
                .map(|(s, n)| (flat / s) % n)
                .collect();
            let j: usize = (0..k).map(|d| o[axis + d] * idx_strides[d]).sum();
            let mut pos = 0;
            for d in 0..axis {
                pos += o[d] * in_strides[d];
            }
            pos += idx[j] * in_strides[axis];
            for d in axis + 1..in_shape.len() {
                pos += o[d - 1 + k] * in_strides[d];
            }
            pos
        })
        .collect()
}

/// One resolved range of a `Slice`: `len` elements from `start` by `step` along `axis`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct SliceRange {
    /// The dimension sliced.
    pub axis: usize,
    /// First element taken.
    pub start: i64,
    /// Distance between taken elements (negative walks backwards).
    pub step: i64,
    /// Number of elements taken.
    pub len: usize,
}

/// Resolves ONNX `Slice` inputs against `shape` with the operator's clamping rules
/// (negative positions count from the end; `INT64_MAX` means "to the end").
pub(crate) fn slice_ranges(
    shape: &[usize],
    starts: &[i64],
    ends: &[i64],
    axes: Option<&[i64]>,
    steps: Option<&[i64]>,
) -> Result<Vec<SliceRange>, String> {
    if starts.len() != ends.len() {
        return Err(format!(
            "Slice has {} starts and {} ends",
            starts.len(),
            ends.len()
        ));
    }
    let default_axes: Vec<i64> = (0..starts.len() as i64).collect();
    let axes = axes.unwrap_or(&default_axes);
    let ones = vec![1; starts.len()];
    let steps = steps.unwrap_or(&ones);
    if axes.len() != starts.len() || steps.len() != starts.len() {
        return Err("Slice: starts, ends, axes and steps differ in length".into());
    }
    let mut out = Vec::new();
    for k in 0..starts.len() {
        let ax = axis(axes[k], shape.len())?;
        let dim = shape[ax] as i64;
        let step = steps[k];
        if step == 0 {
            return Err("Slice step of 0".into());
        }
        let resolve = |v: i64| if v < 0 { v + dim } else { v };
        let (start, end) = if step > 0 {
            (
                resolve(starts[k]).clamp(0, dim),
                resolve(ends[k]).clamp(0, dim),
            )
        } else {
            (
                resolve(starts[k]).clamp(0, dim - 1),
                resolve(ends[k]).clamp(-1, dim - 1),
            )
        };
        let len = if step > 0 {
            ((end - start).max(0) + step - 1) / step
        } else {
            ((start - end).max(0) + (-step) - 1) / (-step)
        };
        out.push(SliceRange {
            axis: ax,
            start,
            step,
            len: len as usize,
        });
    }
    Ok(out)
}

/// The output shape of `Reshape`: `0` copies the input's dimension (unless `allow_zero`),
/// one `-1` takes what is left.
pub(crate) fn reshape_target(
    input: &[usize],
    spec: &[i64],
    allow_zero: bool,
) -> Result<Vec<usize>, String> {
    let mut out = Vec::with_capacity(spec.len());
    let mut infer = None;
    for (d, &s) in spec.iter().enumerate() {
        match s {
            -1 if infer.is_none() => {
                infer = Some(d);
                out.push(1);
            }
            0 if !allow_zero => out.push(*input.get(d).ok_or_else(|| {
                format!(
                    "Reshape: 0 at position {d} but the input has rank {}",
                    input.len()
                )
            })?),
            s if s >= 0 => out.push(s as usize),
            s => return Err(format!("Reshape: invalid dimension {s} in {spec:?}")),
        }
    }
    let total = numel(input);
    if let Some(d) = infer {
        // out[d] is still the 1 pushed for it; numel saturates on sizes that overflow.
        let known = numel(&out);
        if known == 0 || known == usize::MAX || !total.is_multiple_of(known) {
            return Err(format!(
                "Reshape of {input:?} to {spec:?}: sizes do not divide"
            ));
        }
        out[d] = total / known;
    }
    if numel(&out) != total {
        return Err(format!(
            "Reshape of {input:?} ({total} elements) to {spec:?}"
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize], v: &[i64]) -> HostTensor {
        HostTensor::new(shape.to_vec(), HostData::I64(v.to_vec())).unwrap()
    }

    #[test]
    fn transpose_swaps_rows_and_columns() {
        let x = t(&[2, 3], &[0, 1, 2, 3, 4, 5]);
        assert_eq!(x.transpose(&[1, 0]), t(&[3, 2], &[0, 3, 1, 4, 2, 5]));
    }

    #[test]
    fn gather_takes_rows_and_scalars_drop_the_axis() {
        let x = t(&[3, 2], &[0, 1, 2, 3, 4, 5]);
        assert_eq!(
            x.gather(0, &HostTensor::ints(vec![2, 0])).unwrap(),
            t(&[2, 2], &[4, 5, 0, 1])
        );
        let shape = t(&[4], &[8, 1, 28, 28]);
        let i = HostTensor::new(vec![], HostData::I64(vec![-4])).unwrap();
        assert_eq!(shape.gather(0, &i).unwrap(), t(&[], &[8]));
        let idx = t(&[2, 2], &[1, 0, 0, 1]);
        assert_eq!(
            x.gather(1, &idx).unwrap(),
            t(&[3, 2, 2], &[1, 0, 0, 1, 3, 2, 2, 3, 5, 4, 4, 5])
        );
    }

    #[test]
    fn concat_and_slice_follow_onnx() {
        let a = t(&[1, 2], &[1, 2]);
        let b = t(&[2, 2], &[3, 4, 5, 6]);
        let c = HostTensor::concat(&[a, b], 0).unwrap();
        assert_eq!(c, t(&[3, 2], &[1, 2, 3, 4, 5, 6]));
        let r = slice_ranges(&c.shape, &[1], &[i64::MAX], Some(&[0]), None).unwrap();
        assert_eq!(c.slice(&r), t(&[2, 2], &[3, 4, 5, 6]));
        let r = slice_ranges(&c.shape, &[-1], &[i64::MIN], Some(&[0]), Some(&[-1])).unwrap();
        assert_eq!(c.slice(&r), t(&[3, 2], &[5, 6, 3, 4, 1, 2]));
    }

    #[test]
    fn broadcast_binary_and_reshape() {
        let a = t(&[2, 1], &[1, 2]);
        let b = t(&[3], &[10, 20, 30]);
        let s = a.binary(&b, |x, y| x + y, |x, y| Some(x + y)).unwrap();
        assert_eq!(s, t(&[2, 3], &[11, 21, 31, 12, 22, 32]));
        assert_eq!(
            reshape_target(&[8, 32, 5, 5], &[0, -1], false).unwrap(),
            vec![8, 800]
        );
        assert!(reshape_target(&[8, 3], &[5, -1], false).is_err());
    }
}
