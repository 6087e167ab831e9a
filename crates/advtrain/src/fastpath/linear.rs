//! Fully connected layer kernels on contiguous row-major `f32` slices (`x` `[n, d_in]`,
//! weight `[d_in, d_out]` as burn's `Linear` stores it).
//!
//! burn-flex computes the input gradient `grad · Wᵀ` by handing GEMM a transposed view
//! of the weight; the `gemm` crate packs a large operand read against its stored
//! orientation slowly (85 GFLOP/s on `madry-cnn`'s 3136×1024 layer against 190 for the
//! forward product). Transposing the weight once into a scratch buffer and multiplying
//! row-major operands is about twice as fast, transpose included.

use gemm::{gemm, Parallelism};
use rayon::prelude::*;

/// Multiply-adds above which GEMM splits one product across threads (burn-flex's cut-off).
const PARALLEL_MACS: usize = 192 * 192 * 192;

fn parallelism(m: usize, n: usize, k: usize) -> Parallelism {
    if m.saturating_mul(n).saturating_mul(k) >= PARALLEL_MACS {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    }
}

/// `dst[m×n] = a[m×k] · b[k×n]`, all contiguous row-major, except that `a_transposed`
/// reads `a` from a row-major `[k×m]` buffer.
fn product(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    a: &[f32],
    a_transposed: bool,
    b: &[f32],
) {
    assert!(dst.len() == m * n && a.len() == m * k && b.len() == k * n);
    let (a_cs, a_rs) = if a_transposed { (m, 1) } else { (1, k) };
    // SAFETY: the asserted lengths are exactly what the strides address, and `dst`
    // does not alias `a` or `b` (distinct borrows).
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            1,
            n as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism(m, n, k),
        );
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
    let mut out = vec![0.0f32; n * d_out];
    if out.is_empty() {
        return out;
    }
    product(n, d_out, d_in, &mut out, x, false, weight);
    if bias.is_some() || relu {
        out.par_chunks_mut(d_out).for_each(|row| {
            if let Some(bias) = bias {
                row.iter_mut().zip(bias).for_each(|(v, b)| *v += *b);
            }
            if relu {
                row.iter_mut().for_each(|v| *v = v.max(0.0));
            }
        });
    }
    out
}

/// `src` `[rows, cols]` → `[cols, rows]`, through 16×16 tiles (one cache line per tile
/// row on both sides), bands of output rows split across threads.
pub fn transpose(src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    const T: usize = 16;
    assert_eq!(src.len(), rows * cols);
    let mut dst = vec![0.0f32; rows * cols];
    if dst.is_empty() {
        return dst;
    }
    // Each task owns T output rows, i.e. T source columns c0..c0+width.
    dst.par_chunks_mut(T * rows)
        .enumerate()
        .for_each(|(t, band)| {
            let c0 = t * T;
            let width = band.len() / rows;
            let mut tile = [[0.0f32; T]; T];
            for r0 in (0..rows).step_by(T) {
                let height = T.min(rows - r0);
                for (i, tile_row) in tile.iter_mut().enumerate().take(height) {
                    let at = (r0 + i) * cols + c0;
                    if width == T {
                        // A fixed-size copy stays in registers (no memcpy call).
                        *tile_row = src[at..at + T].try_into().expect("T floats");
                    } else {
                        tile_row[..width].copy_from_slice(&src[at..at + width]);
                    }
                }
                for j in 0..width {
                    let out = &mut band[j * rows + r0..j * rows + r0 + height];
                    for (i, o) in out.iter_mut().enumerate() {
                        *o = tile[i][j];
                    }
                }
            }
        });
    dst
}

/// Gradient with respect to the input: `grad · Wᵀ`, `[n, d_in]`.
pub fn linear_backward_input(weight: &[f32], grad: &[f32], d_in: usize, d_out: usize) -> Vec<f32> {
    linear_backward_input_transposed(&transpose(weight, d_in, d_out), grad, d_in, d_out)
}

/// [`linear_backward_input`] given `Wᵀ` `[d_out, d_in]` already (see [`transpose`]).
pub fn linear_backward_input_transposed(
    weight_t: &[f32],
    grad: &[f32],
    d_in: usize,
    d_out: usize,
) -> Vec<f32> {
    let n = grad.len().checked_div(d_out).unwrap_or(0);
    let mut dx = vec![0.0f32; n * d_in];
    if dx.is_empty() || d_out == 0 {
        return dx;
    }
    product(n, d_in, d_out, &mut dx, grad, false, weight_t);
    dx
}

/// Gradient with respect to the weight: `xᵀ · grad`, `[d_in, d_out]`.
pub fn linear_backward_weight(x: &[f32], grad: &[f32], d_in: usize, d_out: usize) -> Vec<f32> {
    let n = x.len().checked_div(d_in).unwrap_or(0);
    let mut dw = vec![0.0f32; d_in * d_out];
    if dw.is_empty() || n == 0 {
        return dw;
    }
    product(d_in, d_out, n, &mut dw, x, true, grad);
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

    #[test]
    fn transpose_round_trips_on_ragged_tiles() {
        for (r, c) in [(1, 1), (3, 70), (65, 33), (100, 7)] {
            let a = values(r * c, 1);
            let t = transpose(&a, r, c);
            for i in 0..r {
                for j in 0..c {
                    assert_eq!(t[j * r + i], a[i * c + j]);
                }
            }
            assert_eq!(transpose(&t, c, r), a);
        }
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
