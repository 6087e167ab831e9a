//! `TensorProto` ⇄ [`HostTensor`]: initializers and constants in, updated weights out.

use super::host::{HostData, HostTensor};
use super::proto::TensorProto;

/// ONNX `TensorProto.DataType` codes advtrain reads.
pub(crate) mod dtype {
    pub const FLOAT: i32 = 1;
    pub const UINT8: i32 = 2;
    pub const INT8: i32 = 3;
    pub const UINT16: i32 = 4;
    pub const INT16: i32 = 5;
    pub const INT32: i32 = 6;
    pub const INT64: i32 = 7;
    pub const BOOL: i32 = 9;
    pub const FLOAT16: i32 = 10;
    pub const DOUBLE: i32 = 11;
    pub const UINT32: i32 = 12;
    pub const UINT64: i32 = 13;
    pub const BFLOAT16: i32 = 16;
}

/// An IEEE half-precision value as `f32`.
fn f16_to_f32(bits: u16) -> f32 {
    let sign = ((bits >> 15) as u32) << 31;
    let exp = ((bits >> 10) & 0x1f) as u32;
    let frac = (bits & 0x3ff) as u32;
    let value = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // Subnormal: normalise the fraction.
            let shift = f.leading_zeros() - 21;
            let f = (f << shift) & 0x3ff;
            sign | ((113 - shift) << 23) | (f << 13)
        }
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 112) << 23) | (f << 13),
    };
    f32::from_bits(value)
}

/// Reads `raw` as little-endian elements of `N` bytes.
fn chunks<const N: usize, T>(raw: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
    raw.chunks_exact(N)
        .map(|c| f(c.try_into().expect("chunks_exact gives N bytes")))
        .collect()
}

/// The elements of a tensor stored in `raw_data`.
fn from_raw(raw: &[u8], dtype: i32) -> Result<HostData, String> {
    use dtype::*;
    Ok(match dtype {
        FLOAT => HostData::F32(chunks(raw, f32::from_le_bytes)),
        DOUBLE => HostData::F32(chunks(raw, |b| f64::from_le_bytes(b) as f32)),
        FLOAT16 => HostData::F32(chunks(raw, |b| f16_to_f32(u16::from_le_bytes(b)))),
        BFLOAT16 => HostData::F32(chunks(raw, |b: [u8; 2]| {
            f32::from_bits((u16::from_le_bytes(b) as u32) << 16)
        })),
        INT64 => HostData::I64(chunks(raw, i64::from_le_bytes)),
        INT32 => HostData::I64(chunks(raw, |b| i32::from_le_bytes(b) as i64)),
        INT16 => HostData::I64(chunks(raw, |b| i16::from_le_bytes(b) as i64)),
        UINT16 => HostData::I64(chunks(raw, |b| u16::from_le_bytes(b) as i64)),
        UINT32 => HostData::I64(chunks(raw, |b| u32::from_le_bytes(b) as i64)),
        UINT64 => HostData::I64(chunks(raw, |b| u64::from_le_bytes(b) as i64)),
        INT8 => HostData::I64(raw.iter().map(|&b| b as i8 as i64).collect()),
        UINT8 => HostData::I64(raw.iter().map(|&b| b as i64).collect()),
        BOOL => HostData::Bool(raw.iter().map(|&b| b != 0).collect()),
        other => {
            return Err(format!(
                "tensors of ONNX data type {other} are not supported"
            ))
        }
    })
}

/// The elements of a tensor stored in the typed fields (`float_data`, `int64_data`, …).
fn from_typed(t: &TensorProto, dtype: i32) -> Result<HostData, String> {
    use dtype::*;
    Ok(match dtype {
        FLOAT => HostData::F32(t.float_data.clone()),
        DOUBLE => HostData::F32(t.double_data.iter().map(|&v| v as f32).collect()),
        // float16/bfloat16 keep their bits in int32_data.
        FLOAT16 => HostData::F32(t.int32_data.iter().map(|&v| f16_to_f32(v as u16)).collect()),
        BFLOAT16 => HostData::F32(
            t.int32_data
                .iter()
                .map(|&v| f32::from_bits((v as u32) << 16))
                .collect(),
        ),
        INT64 => HostData::I64(t.int64_data.clone()),
        INT32 | INT16 | INT8 | UINT16 | UINT8 => {
            HostData::I64(t.int32_data.iter().map(|&v| v as i64).collect())
        }
        UINT32 | UINT64 => HostData::I64(t.uint64_data.iter().map(|&v| v as i64).collect()),
        BOOL => HostData::Bool(t.int32_data.iter().map(|&v| v != 0).collect()),
        other => {
            return Err(format!(
                "tensors of ONNX data type {other} are not supported"
            ))
        }
    })
}

/// A `TensorProto`'s shape and elements, checked against each other.
pub(crate) fn from_proto(t: &TensorProto) -> Result<HostTensor, String> {
    let name = t.name.as_deref().unwrap_or("");
    if t.data_location == Some(1) || !t.external_data.is_empty() {
        return Err(format!(
            "tensor '{name}' keeps its data in an external file, which advtrain does not read; \
             re-export with the weights inside the .onnx file"
        ));
    }
    let shape = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("tensor '{name}' has dimension {d}")))
        .collect::<Result<Vec<_>, _>>()?;
    let dtype = t.data_type.unwrap_or(0);
    let data = match &t.raw_data {
        Some(raw) => from_raw(raw, dtype),
        None => from_typed(t, dtype),
    }
    .map_err(|e| format!("tensor '{name}': {e}"))?;
    HostTensor::new(shape, data).map_err(|e| format!("tensor '{name}': {e} (truncated or corrupt)"))
}

/// A float tensor as a `TensorProto` named `name` (little-endian `raw_data`), for writing
/// updated weights back into a model.
pub(crate) fn f32_proto(name: &str, shape: &[usize], values: &[f32]) -> TensorProto {
    TensorProto {
        name: Some(name.to_string()),
        dims: shape.iter().map(|&d| d as i64).collect(),
        data_type: Some(dtype::FLOAT),
        raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_values_convert_exactly() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert!(f16_to_f32(0x7e00).is_nan());
    }

    #[test]
    fn raw_and_typed_storage_read_the_same() {
        let raw = f32_proto("w", &[2], &[1.5, -2.0]);
        let typed = TensorProto {
            dims: vec![2],
            data_type: Some(dtype::FLOAT),
            float_data: vec![1.5, -2.0],
            ..Default::default()
        };
        assert_eq!(from_proto(&raw).unwrap(), from_proto(&typed).unwrap());
        let short = TensorProto {
            dims: vec![3],
            ..raw
        };
        assert!(from_proto(&short).unwrap_err().contains("truncated"));
    }
}
