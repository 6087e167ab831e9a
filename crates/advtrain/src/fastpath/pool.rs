//! Max pooling with non-overlapping windows (kernel = stride, no padding), the
//! pooling every CNN here uses. burn-flex's general max pool with indices took a
//! fifth of `madry-cnn`'s attack time; this one is a single pass per plane, and
//! its backward recomputes the argmax from the saved input instead of storing indices.

use rayon::prelude::*;

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
    let mut out = vec![0.0f32; planes * oh * ow];
    if out.is_empty() {
        return out;
    }
    out.par_chunks_mut(oh * ow)
        .zip(x.par_chunks(height * width))
        .for_each(|(out_p, plane)| {
            for oy in 0..oh {
                for ox in 0..ow {
                    out_p[oy * ow + ox] = plane[argmax(plane, width, oy, ox, kernel)];
                }
            }
        });
    out
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
    let mut dx = vec![0.0f32; planes * height * width];
    if oh * ow == 0 || dx.is_empty() {
        return dx;
    }
    dx.par_chunks_mut(height * width)
        .zip(x.par_chunks(height * width))
        .zip(grad.par_chunks(oh * ow))
        .for_each(|((dx_p, plane), grad_p)| {
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
}
