//! The fast convolution, pooling and linear layer (src/fastpath) against burn's own operations:
//! forward outputs and every gradient, on random shapes, strides, paddings and
//! dilations; then attacks and training with and without the fast path.

use crate::common;

use advtrain::attack::{Attack, Pgd};
use advtrain::data::synthetic;
use advtrain::fastpath;
use advtrain::model::{Classifier, ModelKind};
use advtrain::threat::ThreatModel;
use advtrain::train::MethodConfig;
use burn::module::Param;
use burn::nn::conv::Conv2dConfig;
use burn::nn::pool::MaxPool2dConfig;
use burn::nn::{LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::TensorData;
use proptest::prelude::*;
use rand::Rng;

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// Values from a local generator: burn's device seed is process-wide, and the property
/// tests run in parallel, so drawing from it would give the two paths different data.
fn random<const D: usize>(shape: [usize; D], rng: &mut impl Rng, device: &Device) -> Tensor<D> {
    let values: Vec<f32> = (0..shape.iter().product::<usize>())
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

fn assert_close(what: &str, fast: &[f32], slow: &[f32]) {
    assert_eq!(fast.len(), slow.len(), "{what}: lengths");
    let scale = slow.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    for (i, (a, b)) in fast.iter().zip(slow).enumerate() {
        assert!(
            (a - b).abs() <= 1e-4 * scale,
            "{what}[{i}]: fast {a} vs burn {b} (scale {scale})"
        );
    }
}

#[derive(Debug, Clone)]
struct Case {
    batch: usize,
    channels_in: usize,
    channels_out: usize,
    size: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 4],
    dilation: [usize; 2],
    bias: bool,
    relu: bool,
}

fn cases() -> impl Strategy<Value = Case> {
    (
        (1usize..4, 1usize..5, 1usize..6),
        ([3usize..10, 3usize..10], [1usize..5, 1usize..5]),
        (
            [1usize..4, 1usize..4],
            [0usize..3, 0usize..3, 0usize..3, 0usize..3],
        ),
        ([1usize..3, 1usize..3], any::<bool>(), any::<bool>()),
    )
        .prop_map(
            |((batch, channels_in, channels_out), (size, kernel), (stride, padding), rest)| Case {
                batch,
                channels_in,
                channels_out,
                size,
                kernel,
                stride,
                padding,
                dilation: rest.0,
                bias: rest.1,
                relu: rest.2,
            },
        )
        .prop_filter("the kernel must fit the padded input", |c| {
            (0..2).all(|d| {
                let span = c.dilation[d] * (c.kernel[d] - 1) + 1;
                span <= c.size[d] + c.padding[d] + c.padding[d + 2]
            })
        })
}

/// Output and the gradients of ⟨output, r⟩ for x, weight and bias, on one path.
fn conv_run(case: &Case, fast: bool, seed: u64) -> [Vec<f32>; 4] {
    let device = Device::flex().autodiff();
    let mut rng = advtrain::rng::seeded(seed);
    let [top, left, bottom, right] = case.padding;
    let mut module = Conv2dConfig::new([case.channels_in, case.channels_out], case.kernel)
        .with_stride(case.stride)
        .with_dilation(case.dilation)
        .with_padding(PaddingConfig2d::Explicit(top, left, bottom, right))
        .with_bias(case.bias)
        .init(&device);
    let shape = [
        case.channels_out,
        case.channels_in,
        case.kernel[0],
        case.kernel[1],
    ];
    module.weight = Param::from_tensor(random(shape, &mut rng, &device));
    if case.bias {
        module.bias = Some(Param::from_tensor(random(
            [case.channels_out],
            &mut rng,
            &device,
        )));
    }
    let x = random(
        [case.batch, case.channels_in, case.size[0], case.size[1]],
        &mut rng,
        &device,
    )
    .require_grad();
    let out = if fast {
        if case.relu {
            fastpath::conv2d_relu(&module, x.clone())
        } else {
            fastpath::conv2d(&module, x.clone())
        }
    } else {
        let out = module.forward(x.clone());
        if case.relu {
            relu(out)
        } else {
            out
        }
    };
    let r = random(out.dims(), &mut rng, &device);
    let grads = (out.clone() * r).sum().backward();
    let gx = x.grad(&grads).expect("x is tracked");
    let gw = module.weight.val().grad(&grads).expect("weight is tracked");
    let gb = module
        .bias
        .as_ref()
        .map(|b| host(b.val().grad(&grads).expect("bias is tracked")))
        .unwrap_or_default();
    [
        host(out.flatten::<1>(0, 3)),
        host(gx.flatten::<1>(0, 3)),
        host(gw.flatten::<1>(0, 3)),
        gb,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn fast_convolution_equals_burns(case in cases(), seed in 0u64..1000) {
        let fast = conv_run(&case, true, seed);
        let slow = conv_run(&case, false, seed);
        for (what, (f, s)) in ["output", "grad x", "grad weight", "grad bias"]
            .iter()
            .zip(fast.iter().zip(&slow))
        {
            assert_close(&format!("{what} {case:?}"), f, s);
        }
    }

    #[test]
    fn fast_max_pool_equals_burns(
        batch in 1usize..4,
        channels in 1usize..4,
        size in [2usize..11, 2usize..11],
        kernel in [1usize..4, 1usize..4],
        seed in 0u64..1000,
    ) {
        prop_assume!(kernel[0] <= size[0] && kernel[1] <= size[1]);
        let run = |fast: bool| {
            let device = Device::flex().autodiff();
            let mut rng = advtrain::rng::seeded(seed);
            let pool = MaxPool2dConfig::new(kernel).with_strides(kernel).init();
            // Continuous values, so ties (where the argmax is a convention) do not occur.
            let x = random([batch, channels, size[0], size[1]], &mut rng, &device).require_grad();
            let out = if fast { fastpath::max_pool2d(&pool, x.clone()) } else { pool.forward(x.clone()) };
            let r = random(out.dims(), &mut rng, &device);
            let grads = (out.clone() * r).sum().backward();
            let gx = x.grad(&grads).expect("x is tracked");
            (host(out.flatten::<1>(0, 3)), host(gx.flatten::<1>(0, 3)))
        };
        let (fast_out, fast_grad) = run(true);
        let (slow_out, slow_grad) = run(false);
        assert_close("pool output", &fast_out, &slow_out);
        assert_close("pool grad", &fast_grad, &slow_grad);
    }
}

/// Output and every gradient of one linear layer (optionally with a ReLU), fast or burn's.
fn linear_run(
    shape: [usize; 3],
    bias: bool,
    with_relu: bool,
    fast: bool,
    seed: u64,
) -> [Vec<f32>; 4] {
    let [batch, d_in, d_out] = shape;
    let device = Device::flex().autodiff();
    let mut rng = advtrain::rng::seeded(seed);
    let mut module = LinearConfig::new(d_in, d_out).with_bias(bias).init(&device);
    module.weight = Param::from_tensor(random([d_in, d_out], &mut rng, &device));
    if bias {
        module.bias = Some(Param::from_tensor(random([d_out], &mut rng, &device)));
    }
    let x = random([batch, d_in], &mut rng, &device).require_grad();
    let out = match (fast, with_relu) {
        (true, true) => fastpath::linear_relu(&module, x.clone()),
        (true, false) => fastpath::linear(&module, x.clone()),
        (false, true) => relu(module.forward(x.clone())),
        (false, false) => module.forward(x.clone()),
    };
    let r = random(out.dims(), &mut rng, &device);
    let grads = (out.clone() * r).sum().backward();
    let gx = x.grad(&grads).expect("x is tracked");
    let gw = module.weight.val().grad(&grads).expect("weight is tracked");
    let gb = module
        .bias
        .as_ref()
        .map(|b| host(b.val().grad(&grads).expect("bias is tracked")))
        .unwrap_or_default();
    [
        host(out.flatten::<1>(0, 1)),
        host(gx.flatten::<1>(0, 1)),
        host(gw.flatten::<1>(0, 1)),
        gb,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn fast_linear_equals_burns(
        shape in [1usize..40, 1usize..300, 1usize..80],
        bias in any::<bool>(),
        with_relu in any::<bool>(),
        seed in 0u64..1000,
    ) {
        let fast = linear_run(shape, bias, with_relu, true, seed);
        let slow = linear_run(shape, bias, with_relu, false, seed);
        for (what, (f, s)) in ["output", "grad x", "grad weight", "grad bias"]
            .iter()
            .zip(fast.iter().zip(&slow))
        {
            assert_close(&format!("{what} {shape:?} bias {bias} relu {with_relu}"), f, s);
        }
    }
}

/// Runs `f` with the fast path on or off on this thread only: other tests of the suite
/// train in parallel threads, and must keep the process-wide setting.
fn with_fast_path<T>(on: bool, f: impl FnOnce() -> T) -> T {
    fastpath::with_enabled(on, f)
}

#[test]
fn the_fast_path_switch_is_per_thread_and_scoped() {
    let process_wide = || std::thread::spawn(fastpath::enabled).join().unwrap();
    let global = process_wide();
    for on in [false, true] {
        with_fast_path(on, || {
            assert_eq!(fastpath::enabled(), on);
            assert_eq!(
                process_wide(),
                global,
                "another thread keeps the process setting"
            );
            with_fast_path(!on, || assert_eq!(fastpath::enabled(), !on));
            assert_eq!(fastpath::enabled(), on, "the inner switch is undone");
        });
        assert_eq!(fastpath::enabled(), global);
    }
}

#[test]
fn attacks_agree_with_and_without_the_fast_path() {
    let data = synthetic::templates(96, 4, 1, 12, 0.3, 7);
    let idx: Vec<usize> = (0..96).collect();
    for kind in [ModelKind::SmallCnn, ModelKind::MadryCnn] {
        let model = common::fresh(kind, &data, 3);
        let (x, y) = data.batch(&idx, &common::device());
        let pgd = Pgd::new(ThreatModel::linf(0.1)).steps(10);
        let run = |on: bool| {
            with_fast_path(on, || {
                let mut rng = advtrain::rng::seeded(5);
                let adv = pgd.perturb(&model, x.clone(), y.clone(), &mut rng);
                let logits = host(model.logits(adv.clone()).flatten::<1>(0, 1));
                (host(adv.flatten::<1>(0, 3)), logits)
            })
        };
        let (fast_adv, fast_logits) = run(true);
        let (slow_adv, slow_logits) = run(false);
        // PGD takes signs of gradients, so a component within rounding of zero may
        // step the other way; allow a few such pixels, and require the rest to agree.
        let differing = fast_adv
            .iter()
            .zip(&slow_adv)
            .filter(|(a, b)| (*a - *b).abs() > 1e-5)
            .count();
        assert!(
            differing * 200 <= fast_adv.len(),
            "{kind:?}: {differing} of {} pixels differ",
            fast_adv.len()
        );
        let max_logit_gap = fast_logits
            .iter()
            .zip(&slow_logits)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            max_logit_gap < 0.05,
            "{kind:?}: logits differ by {max_logit_gap}"
        );
    }
}

#[test]
fn training_agrees_with_and_without_the_fast_path() {
    let data = synthetic::templates(128, 4, 1, 12, 0.3, 11);
    let idx: Vec<usize> = (0..128).collect();
    for kind in [ModelKind::SmallCnn, ModelKind::MadryCnn] {
        let run = |on: bool| {
            with_fast_path(on, || {
                let method = MethodConfig::default_for("fgsm-rs").unwrap();
                let model = common::quick_train(kind, &data, method, 0.1, 1, 9);
                let (x, _) = data.batch(&idx, &common::device());
                host(model.logits(x).flatten::<1>(0, 1))
            })
        };
        let fast = run(true);
        let slow = run(false);
        let gap = fast
            .iter()
            .zip(&slow)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        let scale = slow.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        assert!(
            gap <= 0.02 * scale,
            "{kind:?}: trained logits differ by {gap} (scale {scale})"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// The fused L∞ step is the same function as burn's seven operations, bit for bit,
    /// including zero and exactly-representable gradients, points on the ball's edge and
    /// outside the box; also when the iterate shares its buffer with the clean input.
    #[test]
    fn fused_linf_step_equals_burns_ops_bit_for_bit(
        n in 1usize..200,
        eps in 0.0f32..0.5,
        alpha in 0.0f32..0.5,
        seed in 0u64..1000,
        same_start in any::<bool>(),
    ) {
        let mut rng = advtrain::rng::seeded(seed);
        let device = Device::flex();
        let mut draw = |choices: &[f32]| -> Tensor<4> {
            let v: Vec<f32> = (0..n * 3)
                .map(|_| {
                    if rng.random_bool(0.3) {
                        choices[rng.random_range(0..choices.len())]
                    } else {
                        rng.random_range(-0.5f32..1.5)
                    }
                })
                .collect();
            Tensor::<4>::from_data(TensorData::new(v, [n, 3, 1, 1]), &device)
        };
        let x = draw(&[0.0, 1.0, 0.5]);
        let grad = draw(&[0.0, -0.0, 1.0, -1e-30]);
        let x_adv = if same_start { x.clone() } else { draw(&[0.0, 1.0]) };
        let threat = ThreatModel::linf(eps);
        let x_before = host(x.clone().flatten::<1>(0, 3));
        let fast = fastpath::linf_step(&x_adv, &grad, &x, alpha, eps);
        prop_assert!(fast.is_some(), "the fused step applies to f32 tensors on flex");
        let fast = host(fast.unwrap().flatten::<1>(0, 3));
        let slow = host(threat.project(threat.ascent_step(x_adv, grad, alpha), &x).flatten::<1>(0, 3));
        let fast_bits: Vec<u32> = fast.iter().map(|v| v.to_bits()).collect();
        let slow_bits: Vec<u32> = slow.iter().map(|v| v.to_bits()).collect();
        prop_assert_eq!(fast_bits, slow_bits);
        // The clean input is untouched (the step may write into the iterate's buffer).
        let x_after = host(x.flatten::<1>(0, 3));
        prop_assert_eq!(x_before, x_after);
    }
}
