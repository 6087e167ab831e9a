//! Faster convolution and max pooling for the default CPU backend (burn-flex).
//!
//! Attack crafting and adversarial training spend most of their time in
//! convolution and pooling, forward and backward. burn-flex computes convolution
//! with a direct loop (forward) and a transposed convolution (input gradient), and
//! pools through a general windowed kernel with indices; this module swaps in
//! im2col + GEMM convolution ([`kernels`]) and a single-pass pool ([`pool`])
//! through burn's backend-extension mechanism, with hand-written backward passes
//! for `Autodiff<Flex>`.
//!
//! [`conv2d`], [`max_pool2d`] and [`linear`] are what models call instead of the
//! modules' `forward`. They take the fast path when the tensor lives on Flex, is `f32` and
//! the layer has the shape the kernels cover (ungrouped convolution; pooling with
//! kernel = stride and no padding), and otherwise (CUDA, other dtypes, other
//! shapes) call burn's own operation, so results never depend on which path ran
//! beyond float rounding. Set `ADVTRAIN_FAST_CONV=0`, or call
//! [`set_enabled`]`(false)`, to force burn's path everywhere.

// The one exception to the crate's `deny(unsafe_code)`: `kernels::matmul` calls the `gemm`
// crate's raw-pointer entry point, behind an always-on length assert and a SAFETY comment.
#[allow(unsafe_code)]
pub mod kernels;
pub mod linear;
pub mod pool;
// Run-time feature dispatch: `#[target_feature]` functions are called behind detection.
#[allow(unsafe_code)]
pub mod rows;
pub mod step;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, AutodiffBackend, Backend, Dispatch, Flex};
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::nn::Linear;
use burn::nn::PaddingConfig2d;
use burn::prelude::{Device, Tensor};
use burn::tensor::{DType, TensorData};

use kernels::ConvGeometry;

/// Convolution options the extension carries (plain data, so it can cross the dispatch boundary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvSpec {
    /// Stride along (height, width).
    pub stride: [usize; 2],
    /// Zero padding before each spatial dimension (top, left).
    pub padding_begin: [usize; 2],
    /// Zero padding after each spatial dimension (bottom, right); differs from
    /// `padding_begin` for asymmetric explicit padding, or "same" padding of odd total.
    pub padding_end: [usize; 2],
    /// Spacing between kernel taps along (height, width); 1 is a plain convolution.
    pub dilation: [usize; 2],
    /// Apply a ReLU to the output (fused into the same pass).
    pub relu: bool,
}

/// The custom operations: a convolution with bias and an optional fused ReLU, max
/// pooling with non-overlapping `kernel`-sized windows, and a fully connected layer
/// with bias and an optional fused ReLU.
#[backend_extension(Flex, Autodiff)]
pub trait FastConvBackend: Backend {
    /// Ungrouped 2-D convolution of `x` `[n, c_in, h, w]` with `weight`
    /// `[c_out, c_in, kh, kw]` plus `bias` `[c_out]`, ReLU'd when `spec.relu`; the caller
    /// has checked that the kernel fits the padded input.
    fn fast_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        spec: ConvSpec,
    ) -> FloatTensor<Self>;
    /// Max pooling of `x` `[n, c, h, w]` over non-overlapping `kernel` windows (stride =
    /// kernel, no padding, a ragged edge dropped); the gradient goes to the first maximum of
    /// each window.
    fn fast_max_pool2d(x: FloatTensor<Self>, kernel: [usize; 2]) -> FloatTensor<Self>;
    /// `x · W + bias` for `x` `[n, d_in]`, `W` `[d_in, d_out]`, optionally through a ReLU.
    fn fast_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        relu: bool,
    ) -> FloatTensor<Self>;
    /// One L∞ attack step, fused ([`step`]): `clip₀¹(x + clip_ε(x_adv + α·sign(grad) − x))`.
    /// Not differentiable: the result is untracked (attack iterates are constants;
    /// [`linf_step`] only calls it on tensors without autodiff).
    fn fast_linf_step(
        x_adv: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        x: FloatTensor<Self>,
        alpha: f32,
        eps: f32,
    ) -> FloatTensor<Self>;
}

fn geometry(x: &[usize], weight: &[usize], spec: ConvSpec) -> ConvGeometry {
    ConvGeometry {
        batch: x[0],
        channels_in: x[1],
        height: x[2],
        width: x[3],
        channels_out: weight[0],
        kernel: [weight[2], weight[3]],
        stride: spec.stride,
        padding_begin: spec.padding_begin,
        padding_end: spec.padding_end,
        dilation: spec.dilation,
    }
}

fn dims(t: &FlexTensor) -> Vec<usize> {
    t.layout().shape().to_vec()
}

fn contiguous_f32(t: &FlexTensor) -> FlexTensor {
    assert_eq!(t.dtype(), DType::F32, "fast convolution is f32-only");
    t.to_contiguous()
}

fn flex_tensor(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

fn flex_forward(
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: &FlexTensor,
    spec: ConvSpec,
) -> FlexTensor {
    let (x, weight, bias) = (
        contiguous_f32(x),
        contiguous_f32(weight),
        contiguous_f32(bias),
    );
    let g = geometry(&dims(&x), &dims(&weight), spec);
    let [oh, ow] = g.output_size().expect("checked by conv2d");
    let out = kernels::conv2d_forward(
        &g,
        x.storage::<f32>(),
        weight.storage::<f32>(),
        Some(bias.storage::<f32>()),
        spec.relu,
    );
    flex_tensor(out, vec![g.batch, g.channels_out, oh, ow])
}

fn flex_backward_input(
    x_shape: &[usize],
    weight: &FlexTensor,
    grad: &FlexTensor,
    spec: ConvSpec,
) -> FlexTensor {
    let (weight, grad) = (contiguous_f32(weight), contiguous_f32(grad));
    let g = geometry(x_shape, &dims(&weight), spec);
    let dx = kernels::conv2d_backward_input(&g, weight.storage::<f32>(), grad.storage::<f32>());
    flex_tensor(dx, x_shape.to_vec())
}

fn flex_backward_weight(
    x: &FlexTensor,
    weight_shape: &[usize],
    grad: &FlexTensor,
    spec: ConvSpec,
) -> FlexTensor {
    let (x, grad) = (contiguous_f32(x), contiguous_f32(grad));
    let g = geometry(&dims(&x), weight_shape, spec);
    let dw = kernels::conv2d_backward_weight(&g, x.storage::<f32>(), grad.storage::<f32>());
    flex_tensor(dw, weight_shape.to_vec())
}

fn flex_pool_forward(x: &FlexTensor, kernel: [usize; 2]) -> FlexTensor {
    let x = contiguous_f32(x);
    let [n, c, h, w] = <[usize; 4]>::try_from(dims(&x)).expect("4-D input");
    let [oh, ow] = pool::pooled(h, w, kernel);
    let out = pool::max_pool2d_forward(x.storage::<f32>(), n * c, h, w, kernel);
    flex_tensor(out, vec![n, c, oh, ow])
}

fn flex_pool_backward(x: &FlexTensor, grad: &FlexTensor, kernel: [usize; 2]) -> FlexTensor {
    let (x, grad) = (contiguous_f32(x), contiguous_f32(grad));
    let shape = dims(&x);
    let [n, c, h, w] = <[usize; 4]>::try_from(shape.clone()).expect("4-D input");
    let dx = pool::max_pool2d_backward(
        x.storage::<f32>(),
        grad.storage::<f32>(),
        n * c,
        h,
        w,
        kernel,
    );
    flex_tensor(dx, shape)
}

impl FastConvBackend for Flex {
    fn fast_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        spec: ConvSpec,
    ) -> FlexTensor {
        flex_forward(&x, &weight, &bias, spec)
    }

    fn fast_max_pool2d(x: FloatTensor<Self>, kernel: [usize; 2]) -> FlexTensor {
        flex_pool_forward(&x, kernel)
    }

    fn fast_linear(x: FlexTensor, weight: FlexTensor, bias: FlexTensor, relu: bool) -> FlexTensor {
        flex_linear_forward(&x, &weight, &bias, relu)
    }

    fn fast_linf_step(
        x_adv: FlexTensor,
        grad: FlexTensor,
        x: FlexTensor,
        alpha: f32,
        eps: f32,
    ) -> FlexTensor {
        flex_linf_step(x_adv, &grad, &x, alpha, eps)
    }
}

/// The fused step, in place when `x_adv`'s buffer is not shared (the previous iterate
/// is usually dropped by then), else into a copy.
fn flex_linf_step(
    x_adv: FlexTensor,
    grad: &FlexTensor,
    x: &FlexTensor,
    alpha: f32,
    eps: f32,
) -> FlexTensor {
    let (grad, x) = (contiguous_f32(grad), contiguous_f32(x));
    let mut out = contiguous_f32(&x_adv);
    drop(x_adv);
    let shape = dims(&out);
    if let Some(values) = out
        .try_storage_mut::<f32>()
        .filter(|v| v.len() == x.storage::<f32>().len())
    {
        step::linf_step_in_place(
            values,
            grad.storage::<f32>(),
            x.storage::<f32>(),
            alpha,
            eps,
        );
        return out;
    }
    let mut values = out.storage::<f32>().to_vec();
    step::linf_step_in_place(
        &mut values,
        grad.storage::<f32>(),
        x.storage::<f32>(),
        alpha,
        eps,
    );
    flex_tensor(values, shape)
}

/// `[d_in, d_out]` of a linear layer's weight.
fn linear_dims(weight: &FlexTensor) -> (usize, usize) {
    let d = dims(weight);
    (d[0], d[1])
}

fn flex_linear_forward(
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: &FlexTensor,
    relu: bool,
) -> FlexTensor {
    let (x, weight, bias) = (
        contiguous_f32(x),
        contiguous_f32(weight),
        contiguous_f32(bias),
    );
    let (d_in, d_out) = linear_dims(&weight);
    let n = dims(&x)[0];
    let out = linear::linear_forward(
        x.storage::<f32>(),
        weight.storage::<f32>(),
        Some(bias.storage::<f32>()),
        d_in,
        d_out,
        relu,
    );
    flex_tensor(out, vec![n, d_out])
}

/// The last weight [`transposed_weight`] transposed, and the weight tensor itself.
struct TransposedWeight {
    /// Holding this reference keeps the storage shared, so nothing can update it in place
    /// (burn-flex copies on write when storage is shared): same storage means same values.
    source: FlexTensor,
    transposed: Arc<Vec<f32>>,
}

static LAST_TRANSPOSED: Mutex<Option<TransposedWeight>> = Mutex::new(None);

/// `Wᵀ` for the input gradient, remembered for the last weight: every PGD step of an
/// attack, and the training step after it, multiply by the same weight, and the
/// transpose of `madry-cnn`'s 3136×1024 layer costs as much as half the product.
fn transposed_weight(weight: &FlexTensor) -> Arc<Vec<f32>> {
    let mut last = LAST_TRANSPOSED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(hit) = last.as_ref().filter(|c| {
        Arc::ptr_eq(&c.source.data_arc(), &weight.data_arc())
            && c.source.layout() == weight.layout()
            && c.source.dtype() == weight.dtype()
    }) {
        return hit.transposed.clone();
    }
    let (d_in, d_out) = linear_dims(weight);
    let contiguous = contiguous_f32(weight);
    let transposed = Arc::new(kernels::transpose(contiguous.storage::<f32>(), d_in, d_out));
    *last = Some(TransposedWeight {
        source: weight.clone(),
        transposed: transposed.clone(),
    });
    transposed
}

/// Backward step of the fast linear layer: input, weight and bias gradients, each only
/// when its parent is tracked; with a fused ReLU the saved output masks the gradient.
#[derive(Debug)]
struct FastLinearBackward;

impl Backward<Flex, 3> for FastLinearBackward {
    type State = (NodeId, NodeId, Option<FlexTensor>);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_weight, node_bias] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (x_state, weight_state, output) = ops.state;
        let x = checkpointer.retrieve_node_output::<FlexTensor>(x_state);
        let weight = checkpointer.retrieve_node_output::<FlexTensor>(weight_state);
        let grad = match output {
            Some(output) => relu_masked(grad, &contiguous_f32(&output)),
            None => contiguous_f32(&grad),
        };
        let (d_in, d_out) = linear_dims(&weight);
        let g = grad.storage::<f32>();
        if let Some(node) = node_x {
            let weight_t = transposed_weight(&weight);
            let dx = linear::linear_backward_input_transposed(&weight_t, g, d_in, d_out);
            grads.register::<Flex>(node.id, flex_tensor(dx, dims(&x)));
        }
        if let Some(node) = node_weight {
            let x = contiguous_f32(&x);
            let dw = linear::linear_backward_weight(x.storage::<f32>(), g, d_in, d_out);
            grads.register::<Flex>(node.id, flex_tensor(dw, vec![d_in, d_out]));
        }
        if let Some(node) = node_bias {
            let db = linear::linear_backward_bias(g, d_out);
            grads.register::<Flex>(node.id, flex_tensor(db, vec![d_out]));
        }
    }
}

/// Backward step of the fast max pool: recompute each window's argmax from the input.
#[derive(Debug)]
struct FastPoolBackward;

impl Backward<Flex, 1> for FastPoolBackward {
    type State = (NodeId, [usize; 2]);

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (x_state, kernel) = ops.state;
        let x = checkpointer.retrieve_node_output::<FlexTensor>(x_state);
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, flex_pool_backward(&x, &grad, kernel));
        }
    }
}

/// `grad` with the fused ReLU's derivative applied: masked in place when this node is
/// its only owner (the usual case: it was just produced by the layer above), else
/// into a new buffer in the same single pass.
fn relu_masked(mut grad: FlexTensor, output: &FlexTensor) -> FlexTensor {
    let output = output.storage::<f32>();
    let whole = grad.is_contiguous()
        && grad.layout().start_offset() == 0
        && grad.dtype() == DType::F32
        && grad.storage::<f32>().len() == output.len();
    if whole {
        if let Some(values) = grad.try_storage_mut::<f32>() {
            kernels::relu_backward_in_place(output, values);
            return grad;
        }
    }
    let grad = contiguous_f32(&grad);
    let shape = dims(&grad);
    flex_tensor(kernels::relu_backward(output, grad.storage::<f32>()), shape)
}

/// Backward step of the fast convolution: input, weight and bias gradients, each
/// only when its parent is tracked (attacks track only the input). With a fused
/// ReLU the saved output masks the incoming gradient first.
#[derive(Debug)]
struct FastConvBackward;

impl Backward<Flex, 3> for FastConvBackward {
    type State = (NodeId, NodeId, ConvSpec, Option<FlexTensor>);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_weight, node_bias] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (x_state, weight_state, spec, output) = ops.state;
        let x = checkpointer.retrieve_node_output::<FlexTensor>(x_state);
        let weight = checkpointer.retrieve_node_output::<FlexTensor>(weight_state);
        let grad = match output {
            Some(output) => relu_masked(grad, &contiguous_f32(&output)),
            None => grad,
        };
        if let Some(node) = node_x {
            let dx = flex_backward_input(&dims(&x), &weight, &grad, spec);
            grads.register::<Flex>(node.id, dx);
        }
        if let Some(node) = node_weight {
            let dw = flex_backward_weight(&x, &dims(&weight), &grad, spec);
            grads.register::<Flex>(node.id, dw);
        }
        if let Some(node) = node_bias {
            let grad = contiguous_f32(&grad);
            let g = geometry(&dims(&x), &dims(&weight), spec);
            let db = kernels::conv2d_backward_bias(&g, grad.storage::<f32>());
            grads.register::<Flex>(node.id, flex_tensor(db, vec![g.channels_out]));
        }
    }
}

impl<C: CheckpointStrategy> FastConvBackend for Autodiff<Flex, C> {
    fn fast_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        spec: ConvSpec,
    ) -> FloatTensor<Self> {
        match FastConvBackward
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let weight_state = prep.checkpoint(&weight);
                let out = flex_forward(x.primitive(), weight.primitive(), bias.primitive(), spec);
                let saved = spec.relu.then(|| out.clone());
                prep.finish((x_state, weight_state, spec, saved), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(flex_forward(
                x.primitive(),
                weight.primitive(),
                bias.primitive(),
                spec,
            )),
        }
    }

    fn fast_max_pool2d(x: FloatTensor<Self>, kernel: [usize; 2]) -> FloatTensor<Self> {
        match FastPoolBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let out = flex_pool_forward(x.primitive(), kernel);
                prep.finish((x_state, kernel), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(flex_pool_forward(x.primitive(), kernel)),
        }
    }

    fn fast_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        relu: bool,
    ) -> FloatTensor<Self> {
        match FastLinearBackward
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let weight_state = prep.checkpoint(&weight);
                let out =
                    flex_linear_forward(x.primitive(), weight.primitive(), bias.primitive(), relu);
                let saved = relu.then(|| out.clone());
                prep.finish((x_state, weight_state, saved), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(flex_linear_forward(
                x.primitive(),
                weight.primitive(),
                bias.primitive(),
                relu,
            )),
        }
    }

    fn fast_linf_step(
        x_adv: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        x: FloatTensor<Self>,
        alpha: f32,
        eps: f32,
    ) -> FloatTensor<Self> {
        Self::from_inner(flex_linf_step(
            x_adv.primitive().clone(),
            grad.primitive(),
            x.primitive(),
            alpha,
            eps,
        ))
    }
}

const UNSET: u8 = 0;
const ON: u8 = 1;
const OFF: u8 = 2;
static ENABLED: AtomicU8 = AtomicU8::new(UNSET);

thread_local! {
    /// This thread's override of the process-wide setting ([`with_enabled`]).
    static THREAD_OVERRIDE: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
}

/// Turn the fast path on or off for the whole process (`advtrain bench` compares both).
pub fn set_enabled(enabled: bool) {
    ENABLED.store(if enabled { ON } else { OFF }, Ordering::SeqCst);
}

/// Runs `f` with the fast path on or off on this thread only. The path is chosen when an
/// operation is recorded, on the calling thread, so this is exact; tests compare both
/// paths with it while other tests in the same process train with the fast path on.
pub fn with_enabled<T>(enabled: bool, f: impl FnOnce() -> T) -> T {
    /// Puts the previous override back even if `f` panics.
    struct Restore(Option<bool>);
    impl Drop for Restore {
        fn drop(&mut self) {
            THREAD_OVERRIDE.with(|o| o.set(self.0));
        }
    }
    let _restore = Restore(THREAD_OVERRIDE.with(|o| o.replace(Some(enabled))));
    f()
}

/// Whether the fast path is on: this thread's [`with_enabled`], else [`set_enabled`], else
/// `ADVTRAIN_FAST_CONV` (`0` turns it off).
pub fn enabled() -> bool {
    if let Some(on) = THREAD_OVERRIDE.with(|o| o.get()) {
        return on;
    }
    match ENABLED.load(Ordering::SeqCst) {
        ON => true,
        OFF => false,
        _ => {
            let on = std::env::var("ADVTRAIN_FAST_CONV").map_or(true, |v| v.trim() != "0");
            // A racing set_enabled wins; otherwise remember the environment's answer.
            let _ = ENABLED.compare_exchange(
                UNSET,
                if on { ON } else { OFF },
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
            on
        }
    }
}

/// Whether `device` runs on burn-flex (with or without autodiff).
fn is_flex(device: &Device) -> bool {
    device.clone().without_autodiff() == Device::flex()
}

/// (begin, end) padding of each spatial dimension, as `Conv2d::forward` computes it
/// (burn keeps its own helper private).
fn padding_pairs(
    padding: &PaddingConfig2d,
    size: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
) -> ((usize, usize), (usize, usize)) {
    let same = |d: usize| {
        let size_out = size[d].div_ceil(stride[d]);
        let total = if size_out > 0 {
            ((size_out - 1) * stride[d] + kernel[d]).saturating_sub(size[d])
        } else {
            0
        };
        (total / 2, total - total / 2)
    };
    match padding {
        PaddingConfig2d::Valid => ((0, 0), (0, 0)),
        PaddingConfig2d::Same => (same(0), same(1)),
        PaddingConfig2d::Explicit(top, left, bottom, right) => ((*top, *bottom), (*left, *right)),
    }
}

/// `out` through burn's ReLU when `relu`: the fallback for layers the fast path skips.
fn relu_if<const D: usize>(out: Tensor<D>, relu: bool) -> Tensor<D> {
    if relu {
        burn::tensor::activation::relu(out)
    } else {
        out
    }
}

/// The layer's bias, or an untracked zero bias (its gradient is never computed).
/// `Conv2d::forward`, on the fast path where it applies.
pub fn conv2d(module: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    conv2d_fused(module, x, false)
}

/// `relu(Conv2d::forward(x))`, fused into one pass on the fast path.
pub fn conv2d_relu(module: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    conv2d_fused(module, x, true)
}

fn conv2d_fused(module: &Conv2d, x: Tensor<4>, relu: bool) -> Tensor<4> {
    let [_, _, height, width] = x.dims();
    let ((top, bottom), (left, right)) = padding_pairs(
        &module.padding,
        [height, width],
        module.kernel_size,
        module.stride,
    );
    let spec = ConvSpec {
        stride: module.stride,
        padding_begin: [top, left],
        padding_end: [bottom, right],
        dilation: module.dilation,
        relu,
    };
    let bias = module.bias.as_ref().map(|b| b.val());
    conv2d_tensors(x, module.weight.val(), bias, spec, module.groups)
}

/// A 2-D convolution of `x` `[n, c_in, h, w]` with `weight` `[c_out, c_in / groups, kh, kw]`
/// and an optional `bias`, as `spec` says: the fast path where it applies (ungrouped, f32
/// on Flex), burn's `conv2d` otherwise. What imported (ONNX) models call; the zoo's layers
/// go through [`conv2d`].
pub fn conv2d_tensors(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    spec: ConvSpec,
    groups: usize,
) -> Tensor<4> {
    let [_, channels_in, _, _] = x.dims();
    let [channels_out, weight_in, _, _] = weight.dims();
    let fits = geometry(&x.dims(), &weight.dims(), spec)
        .output_size()
        .is_some();
    let usable = enabled()
        && groups == 1
        && weight_in == channels_in
        && fits
        && x.dtype() == DType::F32
        && weight.dtype() == DType::F32
        && is_flex(&x.device());
    if !usable {
        let padding = [
            (spec.padding_begin[0], spec.padding_end[0]),
            (spec.padding_begin[1], spec.padding_end[1]),
        ];
        let options = burn::tensor::ops::ConvOptions::new_with_padding(
            spec.stride,
            padding,
            spec.dilation,
            groups,
        );
        let out = burn::tensor::module::conv2d(x, weight, bias, options);
        return relu_if(out, spec.relu);
    }
    let bias = match bias {
        Some(b) => b,
        None => Tensor::zeros([channels_out], &x.device()),
    };
    Tensor::<4>::from_dispatch(<Dispatch as FastConvBackend>::fast_conv2d(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        spec,
    ))
}

/// `Linear::forward` for a `[batch, d_in]` input, on the fast path where it applies.
pub fn linear(module: &Linear, x: Tensor<2>) -> Tensor<2> {
    linear_fused(module, x, false)
}

/// `relu(Linear::forward(x))`, fused into one pass on the fast path.
pub fn linear_relu(module: &Linear, x: Tensor<2>) -> Tensor<2> {
    linear_fused(module, x, true)
}

fn linear_fused(module: &Linear, x: Tensor<2>, relu: bool) -> Tensor<2> {
    let weight = module.weight.val();
    let bias = module.bias.as_ref().map(|b| b.val());
    if !linear_usable(&x, &weight) {
        return relu_if(module.forward(x), relu);
    }
    linear_tensors(x, weight, bias, relu)
}

/// Whether the fast linear kernel takes `x` `[n, d_in]` and `weight` `[d_in, d_out]`.
fn linear_usable(x: &Tensor<2>, weight: &Tensor<2>) -> bool {
    enabled()
        && x.dims()[1] == weight.dims()[0]
        && x.dtype() == DType::F32
        && weight.dtype() == DType::F32
        && is_flex(&x.device())
}

/// `x · weight + bias` (optionally through a ReLU) for `x` `[n, d_in]` and `weight`
/// `[d_in, d_out]`: the fast path where it applies, burn's `matmul` otherwise. What
/// imported (ONNX) models' Gemm calls; the zoo's layers go through [`linear`].
pub fn linear_tensors(
    x: Tensor<2>,
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
    relu: bool,
) -> Tensor<2> {
    let d_out = weight.dims()[1];
    if !linear_usable(&x, &weight) {
        let y = x.matmul(weight);
        let y = match bias {
            Some(b) => y + b.unsqueeze_dim(0),
            None => y,
        };
        return relu_if(y, relu);
    }
    let bias = bias.unwrap_or_else(|| Tensor::zeros([d_out], &x.device()));
    Tensor::<2>::from_dispatch(<Dispatch as FastConvBackend>::fast_linear(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        relu,
    ))
}

/// One L∞ attack step, `clip₀¹(x + clip_ε(x_adv + α·sign(grad) − x))`, fused into one
/// pass on burn-flex tensors without autodiff (bit-identical to burn's ops); `None`
/// elsewhere, for the caller to use burn's operations.
pub fn linf_step(
    x_adv: &Tensor<4>,
    grad: &Tensor<4>,
    x: &Tensor<4>,
    alpha: f32,
    eps: f32,
) -> Option<Tensor<4>> {
    let device = x.device();
    let usable = enabled()
        && device == Device::flex()
        && x_adv.device() == device
        && grad.device() == device
        && x_adv.dims() == x.dims()
        && grad.dims() == x.dims()
        && [x_adv.dtype(), grad.dtype(), x.dtype()] == [DType::F32; 3];
    usable.then(|| {
        Tensor::<4>::from_dispatch(<Dispatch as FastConvBackend>::fast_linf_step(
            x_adv.clone().into_dispatch(),
            grad.clone().into_dispatch(),
            x.clone().into_dispatch(),
            alpha,
            eps,
        ))
    })
}

/// `MaxPool2d::forward`, on the fast path where it applies (kernel = stride,
/// no padding, no dilation).
pub fn max_pool2d(module: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    let [_, _, height, width] = x.dims();
    let kernel = module.kernel_size;
    let no_padding = matches!(
        module.padding,
        PaddingConfig2d::Valid | PaddingConfig2d::Explicit(0, 0, 0, 0)
    );
    let exact = !module.ceil_mode || (height % kernel[0] == 0 && width % kernel[1] == 0);
    let usable = enabled()
        && module.stride == kernel
        && module.dilation == [1, 1]
        && no_padding
        && exact
        && height >= kernel[0]
        && width >= kernel[1]
        && x.dtype() == DType::F32
        && is_flex(&x.device());
    if !usable {
        return module.forward(x);
    }
    Tensor::<4>::from_dispatch(<Dispatch as FastConvBackend>::fast_max_pool2d(
        x.into_dispatch(),
        kernel,
    ))
}
