//! The values an ONNX graph passes between its nodes at run time.
//!
//! burn tensors carry their rank in the type (`Tensor<4>`); an ONNX graph decides ranks at
//! run time. [`Ft`] holds a float tensor of rank 1 to 6 and [`by_rank!`] turns a run-time
//! rank into a compile-time one for the body it runs, so each operation is written once,
//! generically, on burn's typed API (and autodiff follows every one of them).

use burn::prelude::{Device, Tensor, TensorData};

use super::host::HostTensor;

/// A float tensor on the model's device, of rank 1 to 6.
#[derive(Clone, Debug)]
pub(crate) enum Ft {
    R1(Tensor<1>),
    R2(Tensor<2>),
    R3(Tensor<3>),
    R4(Tensor<4>),
    R5(Tensor<5>),
    R6(Tensor<6>),
}

/// The highest rank a float tensor may have.
pub(crate) const MAX_RANK: usize = 6;

/// Runs `$body` with `$D` a `const usize` equal to the run-time rank `$rank`; the body
/// evaluates to `Result<_, String>`, and a rank outside 1..=6 is an error.
macro_rules! by_rank {
    ($rank:expr, $D:ident => $body:expr) => {
        match $rank {
            1 => {
                const $D: usize = 1;
                $body
            }
            2 => {
                const $D: usize = 2;
                $body
            }
            3 => {
                const $D: usize = 3;
                $body
            }
            4 => {
                const $D: usize = 4;
                $body
            }
            5 => {
                const $D: usize = 5;
                $body
            }
            6 => {
                const $D: usize = 6;
                $body
            }
            r => Err(format!(
                "a float tensor of rank {r} (advtrain handles ranks 1 to {})",
                $crate::model::onnx::value::MAX_RANK
            )),
        }
    };
}
pub(crate) use by_rank;

/// Applies a rank-preserving expression to whichever tensor an [`Ft`] holds.
macro_rules! map_ft {
    ($ft:expr, $t:ident => $body:expr) => {
        match $ft {
            Ft::R1($t) => Ft::R1($body),
            Ft::R2($t) => Ft::R2($body),
            Ft::R3($t) => Ft::R3($body),
            Ft::R4($t) => Ft::R4($body),
            Ft::R5($t) => Ft::R5($body),
            Ft::R6($t) => Ft::R6($body),
        }
    };
}
pub(crate) use map_ft;

/// Wraps a typed tensor into an [`Ft`].
pub(crate) trait IntoFt {
    /// The tensor as an [`Ft`] of its rank.
    fn ft(self) -> Ft;
}

macro_rules! into_ft {
    ($($d:literal => $v:ident),*) => {$(
        impl IntoFt for Tensor<$d> {
            fn ft(self) -> Ft {
                Ft::$v(self)
            }
        }
    )*};
}
into_ft!(1 => R1, 2 => R2, 3 => R3, 4 => R4, 5 => R5, 6 => R6);

impl Ft {
    /// The tensor's shape.
    pub fn dims(&self) -> Vec<usize> {
        match self {
            Ft::R1(t) => t.dims().to_vec(),
            Ft::R2(t) => t.dims().to_vec(),
            Ft::R3(t) => t.dims().to_vec(),
            Ft::R4(t) => t.dims().to_vec(),
            Ft::R5(t) => t.dims().to_vec(),
            Ft::R6(t) => t.dims().to_vec(),
        }
    }

    /// The tensor's rank.
    pub fn rank(&self) -> usize {
        match self {
            Ft::R1(_) => 1,
            Ft::R2(_) => 2,
            Ft::R3(_) => 3,
            Ft::R4(_) => 4,
            Ft::R5(_) => 5,
            Ft::R6(_) => 6,
        }
    }

    /// The same elements as a rank-`D` tensor of `shape` (same element count).
    pub fn typed<const D: usize>(self, shape: [usize; D]) -> Tensor<D> {
        match self {
            Ft::R1(t) => t.reshape(shape),
            Ft::R2(t) => t.reshape(shape),
            Ft::R3(t) => t.reshape(shape),
            Ft::R4(t) => t.reshape(shape),
            Ft::R5(t) => t.reshape(shape),
            Ft::R6(t) => t.reshape(shape),
        }
    }

    /// The tensor at rank `D ≥ rank`, with leading dimensions of 1 (numpy broadcasting's
    /// alignment).
    pub fn lift<const D: usize>(self) -> Result<Tensor<D>, String> {
        let dims = self.dims();
        if dims.len() > D {
            return Err(format!(
                "cannot view a rank-{} tensor at rank {D}",
                dims.len()
            ));
        }
        let mut shape = [1; D];
        shape[D - dims.len()..].copy_from_slice(&dims);
        Ok(self.typed(shape))
    }

    /// The same elements under `shape` (any rank from 1 to 6, equal element count; an
    /// empty `shape`, a scalar, is held as `[1]`).
    pub fn reshape(self, shape: &[usize]) -> Result<Ft, String> {
        let have: usize = self.dims().iter().product();
        let want: usize = shape.iter().product();
        if have != want {
            return Err(format!(
                "cannot reshape {:?} ({have} elements) to {shape:?}",
                self.dims()
            ));
        }
        if shape.is_empty() {
            return self.reshape(&[1]);
        }
        by_rank!(shape.len(), D => {
            let arr: [usize; D] = shape.try_into().expect("length checked by by_rank");
            Ok(self.typed(arr).ft())
        })
    }

    /// A host tensor's values on `device` (integers and booleans become floats; a scalar
    /// becomes `[1]`).
    pub fn from_host(host: &HostTensor, device: &Device) -> Result<Ft, String> {
        let shape = if host.shape.is_empty() {
            vec![1]
        } else {
            host.shape.clone()
        };
        let flat = Tensor::<1>::from_data(TensorData::new(host.to_f32s(), [host.len()]), device);
        Ft::R1(flat).reshape(&shape)
    }

    /// The device the tensor lives on.
    pub fn device(&self) -> Device {
        match self {
            Ft::R1(t) => t.device(),
            Ft::R2(t) => t.device(),
            Ft::R3(t) => t.device(),
            Ft::R4(t) => t.device(),
            Ft::R5(t) => t.device(),
            Ft::R6(t) => t.device(),
        }
    }
}

/// A value flowing between nodes: a float tensor on the device, or a host tensor
/// (constants, shapes, indices).
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // values live in one Vec per forward pass; boxing buys nothing
pub(crate) enum Value {
    /// A float tensor on the model's device (tracked by autodiff when the device is).
    Float(Ft),
    /// A small tensor on the host.
    Host(HostTensor),
}

impl Value {
    /// The value's shape.
    pub fn dims(&self) -> Vec<usize> {
        match self {
            Value::Float(t) => t.dims(),
            Value::Host(h) => h.shape.clone(),
        }
    }

    /// The value as a float tensor on `device` (host values are copied there).
    pub fn to_float(&self, device: &Device) -> Result<Ft, String> {
        match self {
            Value::Float(t) => Ok(t.clone()),
            Value::Host(h) => Ft::from_host(h, device),
        }
    }

    /// The value as a host tensor; a float tensor on the device is refused (shape and
    /// index inputs must not depend on the image).
    pub fn host(&self, what: &str) -> Result<&HostTensor, String> {
        match self {
            Value::Host(h) => Ok(h),
            Value::Float(_) => Err(format!(
                "{what} is computed from the image at run time; advtrain needs it to be a \
                 constant or a shape"
            )),
        }
    }
}
