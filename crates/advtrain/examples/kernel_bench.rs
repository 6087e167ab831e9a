//! Times the fast path's kernels one by one on the layer shapes of `small-cnn` and
//! `madry-cnn` (batch 128), to see where a training step's time goes.
//!
//! `cargo run --release -p advtrain --example kernel_bench [reps] [layer]`
//! (`layer`: only the layers whose name contains it, e.g. `"small conv2"`)
//!
//! Prints the best (least disturbed) milliseconds per call of `reps` and GFLOP/s (2 × multiply-adds) for each
//! convolution pass, and ms for pooling and the ReLU mask.

use std::time::Instant;

use advtrain::fastpath::kernels::{self, ConvGeometry};
use advtrain::fastpath::pool;

/// The allocator the CLI uses, so allocation costs match `advtrain bench`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn best_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[0]
}

fn values(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
        .collect()
}

fn conv(name: &str, g: ConvGeometry, reps: usize) {
    let [oh, ow] = g.output_size().expect("valid geometry");
    let k = g.channels_in * g.kernel[0] * g.kernel[1];
    let macs = (g.batch * g.channels_out * oh * ow * k) as f64;
    let x = values(g.batch * g.channels_in * g.height * g.width, 1);
    let w = values(g.channels_out * k, 2);
    let b = values(g.channels_out, 3);
    let up = values(g.batch * g.channels_out * oh * ow, 4);
    let report = |what: &str, ms: f64| {
        println!(
            "{name:<14} {what:<10} {ms:>8.2} ms {:>8.1} GFLOP/s",
            2.0 * macs / ms / 1e6
        )
    };
    report(
        "forward",
        best_ms(reps, || {
            std::hint::black_box(kernels::conv2d_forward(&g, &x, &w, Some(&b), true));
        }),
    );
    report(
        "bwd-input",
        best_ms(reps, || {
            std::hint::black_box(kernels::conv2d_backward_input(&g, &w, &up));
        }),
    );
    report(
        "bwd-weight",
        best_ms(reps, || {
            std::hint::black_box(kernels::conv2d_backward_weight(&g, &x, &up));
        }),
    );
    println!(
        "{name:<14} {:<10} {:>8.2} ms",
        "bwd-bias",
        best_ms(reps, || {
            std::hint::black_box(kernels::conv2d_backward_bias(&g, &up));
        })
    );
    let out = kernels::conv2d_forward(&g, &x, &w, Some(&b), true);
    println!(
        "{name:<14} {:<10} {:>8.2} ms",
        "relu-mask",
        best_ms(reps, || {
            let mut grad = up.clone();
            kernels::relu_backward_in_place(&out, &mut grad);
            std::hint::black_box(grad);
        })
    );
}

fn pooling(name: &str, planes: usize, h: usize, w: usize, reps: usize) {
    let x = values(planes * h * w, 5);
    let up = values(planes * (h / 2) * (w / 2), 6);
    println!(
        "{name:<14} {:<10} {:>8.2} ms",
        "pool-fwd",
        best_ms(reps, || {
            std::hint::black_box(pool::max_pool2d_forward(&x, planes, h, w, [2, 2]));
        })
    );
    println!(
        "{name:<14} {:<10} {:>8.2} ms",
        "pool-bwd",
        best_ms(reps, || {
            std::hint::black_box(pool::max_pool2d_backward(&x, &up, planes, h, w, [2, 2]));
        })
    );
}

fn main() {
    let reps: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(21);
    let only = std::env::args().nth(2).unwrap_or_default();
    let wanted = |name: &str| name.contains(only.as_str());
    let n = 128;
    let g = |cin, hw, cout, k, s, p| ConvGeometry {
        batch: n,
        channels_in: cin,
        height: hw,
        width: hw,
        channels_out: cout,
        kernel: [k, k],
        stride: [s, s],
        padding_begin: [p, p],
        padding_end: [p, p],
        dilation: [1, 1],
    };
    if wanted("small conv1") {
        conv("small conv1", g(1, 28, 16, 4, 2, 1), reps);
    }
    if wanted("small conv2") {
        conv("small conv2", g(16, 14, 32, 4, 2, 1), reps);
    }
    if wanted("madry conv1") {
        conv("madry conv1", g(1, 28, 32, 5, 1, 2), reps);
    }
    if wanted("madry pool1") {
        pooling("madry pool1", n * 32, 28, 28, reps);
    }
    if wanted("madry conv2") {
        conv("madry conv2", g(32, 14, 64, 5, 1, 2), reps);
    }
    if wanted("madry pool2") {
        pooling("madry pool2", n * 64, 14, 14, reps);
    }
    if wanted("small fc1") {
        linear("small fc1", n, 32 * 7 * 7, 100, reps);
    }
    if wanted("madry fc1") {
        linear("madry fc1", n, 64 * 7 * 7, 1024, reps);
    }
    if wanted("madry fc2") {
        linear("madry fc2", n, 1024, 10, reps);
    }
}

/// A linear layer's three products through burn-flex's matmul, as autodiff runs them
/// (`[batch, d_in]·[d_in, d_out]`, then `grad·Wᵀ` and `xᵀ·grad` on transposed views).
fn linear(name: &str, batch: usize, d_in: usize, d_out: usize, reps: usize) {
    use burn::prelude::{Device, Tensor};
    let device = Device::flex();
    let x = Tensor::<2>::from_floats(
        burn::tensor::TensorData::new(values(batch * d_in, 7), [batch, d_in]),
        &device,
    );
    let w = Tensor::<2>::from_floats(
        burn::tensor::TensorData::new(values(d_in * d_out, 8), [d_in, d_out]),
        &device,
    );
    let g = Tensor::<2>::from_floats(
        burn::tensor::TensorData::new(values(batch * d_out, 9), [batch, d_out]),
        &device,
    );
    let gflops = |ms: f64| 2.0 * (batch * d_in * d_out) as f64 / ms / 1e6;
    let run = |what: &str, f: &dyn Fn() -> Tensor<2>| {
        let ms = best_ms(reps, || {
            std::hint::black_box(f().into_data());
        });
        println!(
            "{name:<14} {what:<10} {ms:>8.2} ms {:>8.1} GFLOP/s",
            gflops(ms)
        );
    };
    run("forward", &|| x.clone().matmul(w.clone()));
    let (xs, ws, gs) = (
        values(batch * d_in, 7),
        values(d_in * d_out, 8),
        values(batch * d_out, 9),
    );
    let fast = |what: &str, f: &dyn Fn() -> Vec<f32>| {
        let ms = best_ms(reps, || {
            std::hint::black_box(f());
        });
        println!(
            "{name:<14} {what:<10} {ms:>8.2} ms {:>8.1} GFLOP/s (fastpath)",
            gflops(ms)
        );
    };
    use advtrain::fastpath::linear as fl;
    fast("forward", &|| {
        fl::linear_forward(&xs, &ws, None, d_in, d_out, false)
    });
    fast("bwd-input", &|| {
        fl::linear_backward_input(&ws, &gs, d_in, d_out)
    });
    fast("bwd-weight", &|| {
        fl::linear_backward_weight(&xs, &gs, d_in, d_out)
    });
    fast("transpose", &|| {
        advtrain::fastpath::kernels::transpose(&ws, d_in, d_out)
    });
    // The input gradient when the transposed weight is reused (every PGD step after the first).
    let ws_t = advtrain::fastpath::kernels::transpose(&ws, d_in, d_out);
    fast("bwd-in Wᵀ", &|| {
        fl::linear_backward_input_transposed(&ws_t, &gs, d_in, d_out)
    });
    run("bwd-input", &|| g.clone().matmul(w.clone().transpose()));
    run("bwd-weight", &|| x.clone().transpose().matmul(g.clone()));
}
