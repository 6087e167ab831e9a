//! Run-time ONNX import: a user's own image classifier as a [`Classifier`], with autodiff.
//!
//! burn's own ONNX support generates Rust at build time, which a command-line user cannot
//! use. This module reads an `.onnx` file when the program runs (protobuf types generated
//! from `onnx.proto` by prost, [`proto`]) and interprets its graph node by node on burn's
//! tensor operations. Because every operation is a burn operation, attacks get input
//! gradients, training gets parameter gradients, and the fast convolution path serves
//! imported convolutions as it serves the zoo's.
//!
//! - **Weights.** Float initializers that are an operator's weight (convolution kernels,
//!   matrices, normalisation scales and shifts, and operands of elementwise operators that
//!   run after a weight: biases, position embeddings, class tokens) become trainable
//!   parameters; the mean and std of an input normalisation written into the graph stay
//!   constants. Batch-norm running statistics are buffers, updated in training mode as
//!   PyTorch updates them.
//! - **Constants.** Shape arithmetic (`Shape → Gather → Concat → Reshape`) and other
//!   constant sub-graphs run on small host tensors ([`host`]); what does not depend on the
//!   batch is folded once at load.
//! - **Inputs.** The module takes `[0, 1]` images `[N, C, H, W]` like every advtrain model
//!   and applies the range scaling, normalisation and layout the graph expects
//!   ([`OnnxOptions`]), so ε keeps its meaning.
//! - **Errors.** An unsupported operator, a value no node produces, a truncated file or a
//!   graph that fails on a probe batch is an [`Error::Onnx`](crate::Error::Onnx) naming the
//!   file, the node, the operator and the opset.
//! - **Dropout** is the identity, in training too (exported graphs carry it in inference
//!   form).

mod attrs;
mod export;
mod graph;
mod host;
mod model;
mod nn;
mod ops;
pub mod proto;
mod tensor;
mod value;

pub use model::{InputRange, OnnxModel, OnnxOptions};

/// The operators advtrain runs, for help texts and error messages.
pub fn supported_operators() -> &'static [&'static str] {
    ops::SUPPORTED
}
