//! Fully connected layer kernels on contiguous row-major `f32` slices (`x` `[n, d_in]`,
//! weight `[d_in, d_out]` as burn's `Linear` stores it).
//!
//! burn-flex computes the input gradient `grad · Wᵀ` by handing GEMM a transposed view
//! of the weight; the `gemm` crate packs a large operand read against its stored
//! orientation slowly (about 88 GFLOP/s on `madry-cnn`'s 3136×1024 layer against 185–195
//! for the forward product, `examples/kernel_bench.rs`). Multiplying by a transposed copy
//! of the weight runs at the forward product's speed; the copy (1.5–2 ms there) is kept
//! for reuse by the caller (`fastpath::transposed_weight`).

use gemm::Parallelism;
use rayon::prelude::*;

use super::kernels::{matmul, relu_value, transpose, zeroed};

/// Multiply-adds above which GEMM splits one product across threads (burn-flex's cut-off).
const PARALLEL_MACS: usize = 192 * 192 * 192;

fn parallelism(m: usize, n: usize, k: usize) -> Parallelism {
    if m.saturating_mul(n).saturating_mul(k) >= PARALLEL_MACS {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    }
}

/// `x · W + bias`, through a ReLU when `relu`.
pub fn linear_forward(
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    d_in: usize,
    d_out: usize,
    relu: bool,
) -> Vec<f32> {
    let n = x.len().checked_div(d_in).unwrap_or(0);
    let mut out = zeroed(n * d_out);
    if out.is_empty() {
        return out;
    }
    matmul(
        n,
        d_out,
        d_in,
        &mut out,
        x,
        false,
        weight,
        false,
        false,
        parallelism(n, d_out, d_in),
    );
    if bias.is_some() || relu {
        out.par_chunks_mut(d_out)
            .for_each(|row| match (bias, relu) {
                (Some(bias), true) => row
                    .iter_mut()
                    .zip(bias)
                    .for_each(|(v, b)| *v = relu_value(*v + *b)),
                (Some(bias), false) => row.iter_mut().zip(bias).for_each(|(v, b)| *v += *b),
                (None, true) => row.iter_mut().for_each(|v| *v = relu_value(*v)),
                (None, false) => {}
            });
    }
    out
}

/// Gradient with respect to the input: `grad · Wᵀ`, `[n, d_in]`.
pub fn linear_backward_input(weight: &[f32], grad: &[f32], d_in: usize, d_out: usize) -> Vec<f32> {
    linear_backward_input_transposed(&transpose(weight, d_in, d_out), grad, d_in, d_out)
}

/// [`linear_backward_input`] given `Wᵀ` `[d_out, d_in]` already (see [`transpose`](super::kernels::transpose)).
pub fn linear_backward_input_transposed(
    weight_t: &[f32],
    grad: &[f32],
    d_in: usize,
    d_out: usize,
) -> Vec<f32> {
    let n = grad.len().checked_div(d_out).unwrap_or(0);
    let mut dx = zeroed(n * d_in);
    if dx.is_empty() || d_out == 0 {
        return dx;
    }
    matmul(
        n,
        d_in,
        d_out,
        &mut dx,
        grad,
        false,
        weight_t,
        false,
        false,
        parallelism(n, d_in, d_out),
    );
    dx
}

/// Gradient with respect to the weight: `xᵀ · grad`, `[d_in, d_out]`.
pub fn linear_backward_weight(x: &[f32], grad: &[f32], d_in: usize, d_out: usize) -> Vec<f32> {
    let n = x.len().checked_div(d_in).unwrap_or(0);
    let mut dw = vec![0.0f32; d_in * d_out];
    if dw.is_empty() || n == 0 {
        return dw;
    }
    matmul(
        d_in,
        d_out,
        n,
        &mut dw,
        x,
        true,
        grad,
        false,
        false,
        parallelism(d_in, d_out, n),
    );
    dw
}

/// Gradient with respect to the bias: the column sums of `grad`.
pub fn linear_backward_bias(grad: &[f32], d_out: usize) -> Vec<f32> {
    let mut db = vec![0.0f32; d_out];
    for row in grad.chunks_exact(d_out.max(1)) {
        db.iter_mut().zip(row).for_each(|(d, g)| *d += *g);
    }
    db
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    fn naive(x: &[f32], w: &[f32], n: usize, d_in: usize, d_out: usize) -> Vec<f32> {
        let mut out = vec![0.0; n * d_out];
        for i in 0..n {
            for o in 0..d_out {
                out[i * d_out + o] = (0..d_in).map(|k| x[i * d_in + k] * w[k * d_out + o]).sum();
            }
        }
        out
    }

    /// Forward against the naive product; the gradients as adjoints of the forward:
    /// ⟨x·W, g⟩ = ⟨x, ∇ₓ⟩ = ⟨W, ∇_W⟩, and the bias gradient sums g.
    #[test]
    fn forward_and_gradients_are_consistent() {
        for (n, d_in, d_out) in [(3, 5, 4), (17, 70, 33), (128, 200, 100)] {
            let x = values(n * d_in, 2);
            let w = values(d_in * d_out, 3);
            let b = values(d_out, 4);
            let g = values(n * d_out, 5);
            let out = linear_forward(&x, &w, Some(&b), d_in, d_out, false);
            let want = naive(&x, &w, n, d_in, d_out);
            for (i, (o, v)) in out.iter().zip(&want).enumerate() {
                assert!((o - v - b[i % d_out]).abs() < 1e-3, "{o} vs {v}");
            }
            let relu = linear_forward(&x, &w, Some(&b), d_in, d_out, true);
            assert!(relu.iter().zip(&out).all(|(r, o)| *r == o.max(0.0)));
            let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
            let lhs = dot(&want, &g);
            let tol = 1e-3 * lhs.abs().max(1.0);
            assert!((lhs - dot(&x, &linear_backward_input(&w, &g, d_in, d_out))).abs() < tol);
            assert!((lhs - dot(&w, &linear_backward_weight(&x, &g, d_in, d_out))).abs() < tol);
            let db = linear_backward_bias(&g, d_out);
            assert!((db.iter().sum::<f32>() - g.iter().sum::<f32>()).abs() < 1e-3);
        }
    }
}
