//! Max pooling with non-overlapping windows (kernel = stride, no padding), the
//! pooling every CNN here uses. burn-flex's general max pool with indices took a
//! fifth of `madry-cnn`'s attack time; this one is a single pass per plane, and
//! its backward recomputes the argmax from the saved input instead of storing indices.

use rayon::prelude::*;

use super::kernels::zeroed;

/// Pooled output size of one plane (floor mode: a ragged edge is dropped).
pub fn pooled(height: usize, width: usize, kernel: [usize; 2]) -> [usize; 2] {
    [height / kernel[0], width / kernel[1]]
}

/// Index (within the plane) of the window's largest value; the first one on ties.
#[inline]
fn argmax(plane: &[f32], width: usize, oy: usize, ox: usize, kernel: [usize; 2]) -> usize {
    let (y0, x0) = (oy * kernel[0], ox * kernel[1]);
    let mut best = y0 * width + x0;
    let mut best_v = plane[best];
    for i in 0..kernel[0] {
        let row = (y0 + i) * width;
        for j in 0..kernel[1] {
            let v = plane[row + x0 + j];
            if v > best_v {
                best_v = v;
                best = row + x0 + j;
            }
        }
    }
    best
}

/// Max pooling of `planes` planes of `height × width` → `planes × OH × OW`.
pub fn max_pool2d_forward(
    x: &[f32],
    planes: usize,
    height: usize,
    width: usize,
    kernel: [usize; 2],
) -> Vec<f32> {
    let [oh, ow] = pooled(height, width, kernel);
    let mut out = zeroed(planes * oh * ow);
    if out.is_empty() {
        return out;
    }
    out.par_chunks_mut(oh * ow)
        .zip(x.par_chunks(height * width))
        .for_each(|(out_p, plane)| {
            if kernel == [2, 2] {
                for (oy, out_row) in out_p.chunks_exact_mut(ow).enumerate() {
                    let (r0, r1) = rows_2x2(plane, width, oy);
                    for (ox, o) in out_row.iter_mut().enumerate() {
                        *o = window_2x2(r0, r1, ox).1;
                    }
                }
                return;
            }
            for oy in 0..oh {
                for ox in 0..ow {
                    out_p[oy * ow + ox] = plane[argmax(plane, width, oy, ox, kernel)];
                }
            }
        });
    out
}

/// The two input rows under output row `oy` of a 2×2 pool.
#[inline]
fn rows_2x2(plane: &[f32], width: usize, oy: usize) -> (&[f32], &[f32]) {
    let r0 = &plane[2 * oy * width..(2 * oy + 1) * width];
    let r1 = &plane[(2 * oy + 1) * width..(2 * oy + 2) * width];
    (r0, r1)
}

/// (position in scan order 0..4, value) of the largest entry of 2×2 window `ox`; the
/// first on ties, exactly as [`argmax`] picks it.
#[inline]
fn window_2x2(r0: &[f32], r1: &[f32], ox: usize) -> (usize, f32) {
    let v = [r0[2 * ox], r0[2 * ox + 1], r1[2 * ox], r1[2 * ox + 1]];
    let (mut best, mut best_v) = (0, v[0]);
    for (i, &vi) in v.iter().enumerate().skip(1) {
        if vi > best_v {
            best = i;
            best_v = vi;
        }
    }
    (best, best_v)
}

/// Gradient of max pooling: each output gradient goes to its window's argmax in `x`.
pub fn max_pool2d_backward(
    x: &[f32],
    grad: &[f32],
    planes: usize,
    height: usize,
    width: usize,
    kernel: [usize; 2],
) -> Vec<f32> {
    let [oh, ow] = pooled(height, width, kernel);
    let mut dx = zeroed(planes * height * width);
    if oh * ow == 0 || dx.is_empty() {
        return dx;
    }
    dx.par_chunks_mut(height * width)
        .zip(x.par_chunks(height * width))
        .zip(grad.par_chunks(oh * ow))
        .for_each(|((dx_p, plane), grad_p)| {
            if kernel == [2, 2] {
                // Every covered input gets written once (zero or the routed gradient).
                for (oy, grad_row) in grad_p.chunks_exact(ow).enumerate() {
                    let (r0, r1) = rows_2x2(plane, width, oy);
                    let (d0, d1) = dx_p[2 * oy * width..(2 * oy + 2) * width].split_at_mut(width);
                    for (ox, &g) in grad_row.iter().enumerate() {
                        let (best, _) = window_2x2(r0, r1, ox);
                        d0[2 * ox] = if best == 0 { g } else { 0.0 };
                        d0[2 * ox + 1] = if best == 1 { g } else { 0.0 };
                        d1[2 * ox] = if best == 2 { g } else { 0.0 };
                        d1[2 * ox + 1] = if best == 3 { g } else { 0.0 };
                    }
                }
                return;
            }
            for oy in 0..oh {
                for ox in 0..ow {
                    dx_p[argmax(plane, width, oy, ox, kernel)] += grad_p[oy * ow + ox];
                }
            }
        });
    dx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_and_routes_gradients_to_the_maximum() {
        // one 4×5 plane, 2×2 windows → 2×2 output (the fifth column is dropped)
        let x: Vec<f32> = vec![
            1., 5., 2., 0., 9., //
            3., 4., 8., 8., 9., //
            0., -1., 6., 7., 9., //
            -2., -3., 7., 1., 9.,
        ];
        let out = max_pool2d_forward(&x, 1, 4, 5, [2, 2]);
        assert_eq!(out, vec![5., 8., 0., 7.]);
        let dx = max_pool2d_backward(&x, &[1., 2., 3., 4.], 1, 4, 5, [2, 2]);
        let mut want = vec![0.0; 20];
        want[1] = 1.; // 5
        want[7] = 2.; // first of the tied 8s
        want[10] = 3.; // 0
        want[13] = 4.; // 7 (the first of the tied 7s in scan order)
        assert_eq!(dx, want);
    }

    /// Reference: each window's first largest entry in scan order, by brute force.
    fn naive(x: &[f32], grad: &[f32], h: usize, w: usize, k: [usize; 2]) -> (Vec<f32>, Vec<f32>) {
        let [oh, ow] = pooled(h, w, k);
        let planes = x.len() / (h * w);
        let (mut out, mut dx) = (vec![], vec![0.0; x.len()]);
        for p in 0..planes {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut best = None::<(usize, f32)>;
                    for i in 0..k[0] {
                        for j in 0..k[1] {
                            let at = p * h * w + (oy * k[0] + i) * w + ox * k[1] + j;
                            if best.is_none_or(|(_, v)| x[at] > v) {
                                best = Some((at, x[at]));
                            }
                        }
                    }
                    let (at, v) = best.unwrap();
                    out.push(v);
                    dx[at] += grad[(p * oh + oy) * ow + ox];
                }
            }
        }
        (out, dx)
    }

    #[test]
    fn two_by_two_windows_match_the_brute_force_reference_with_ties_and_ragged_edges() {
        for (h, w) in [(4, 4), (5, 7), (2, 3), (6, 2)] {
            let planes = 3;
            // Few distinct values, so windows often hold ties.
            let x: Vec<f32> = (0..planes * h * w)
                .map(|i| ((i * 7919) % 3) as f32)
                .collect();
            let [oh, ow] = pooled(h, w, [2, 2]);
            let grad: Vec<f32> = (0..planes * oh * ow).map(|i| i as f32 + 1.0).collect();
            let (want_out, want_dx) = naive(&x, &grad, h, w, [2, 2]);
            assert_eq!(
                max_pool2d_forward(&x, planes, h, w, [2, 2]),
                want_out,
                "{h}x{w}"
            );
            assert_eq!(
                max_pool2d_backward(&x, &grad, planes, h, w, [2, 2]),
                want_dx,
                "{h}x{w}"
            );
            // The general path on a 3×2 window, same reference.
            if h >= 3 {
                let [oh, ow] = pooled(h, w, [3, 2]);
                let grad: Vec<f32> = (0..planes * oh * ow).map(|i| i as f32 + 1.0).collect();
                let (want_out, want_dx) = naive(&x, &grad, h, w, [3, 2]);
                assert_eq!(max_pool2d_forward(&x, planes, h, w, [3, 2]), want_out);
                assert_eq!(
                    max_pool2d_backward(&x, &grad, planes, h, w, [3, 2]),
                    want_dx
                );
            }
        }
    }
}
