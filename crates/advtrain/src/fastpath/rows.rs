//! Sums of scaled rows, `out += Σ a · row_k`: the inner loop of scoring a few output
//! positions at a time (see `model::window`), where a GEMM's packing would cost more than
//! the arithmetic.
//!
//! The loop is compiled three times, for AVX-512, AVX2 + FMA and the baseline, and picked at
//! run time: the crate is built for the baseline x86-64, which has 4-float vectors and no
//! fused multiply-add.

/// `out += Σ a · rows[k·stride ..][..out.len()]` over the `(k, a)` of `taps`, in tap order
/// for each output float.
///
/// # Panics
/// If a tap's row does not fit in `rows` (the slices are bounds-checked; `out` may then be
/// partly updated).
pub fn add_scaled_rows(out: &mut [f32], taps: &[(usize, f32)], rows: &[f32], stride: usize) {
    dispatch(out, taps.iter().copied(), rows, stride);
}

/// [`add_scaled_rows`] with row `k` scaled by `scales[k]`, every row from 0 on.
pub fn add_rows_scaled_by(out: &mut [f32], scales: &[f32], rows: &[f32], stride: usize) {
    dispatch(out, scales.iter().copied().enumerate(), rows, stride);
}

#[inline(always)]
fn dispatch<T: Taps>(out: &mut [f32], taps: T, rows: &[f32], stride: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, the one feature this function is compiled for.
            return unsafe { add_avx512(out, taps, rows, stride) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA, the features this function is compiled for.
            return unsafe { add_avx2(out, taps, rows, stride) };
        }
    }
    add_blocks(out, taps, rows, stride, |s, a, w| s + a * w);
}

/// The (row, scale) pairs of a sum, walked once per block of outputs.
trait Taps: Iterator<Item = (usize, f32)> + Clone {}
impl<T: Iterator<Item = (usize, f32)> + Clone> Taps for T {}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn add_avx512<T: Taps>(out: &mut [f32], taps: T, rows: &[f32], stride: usize) {
    add_blocks(out, taps, rows, stride, |s, a, w| a.mul_add(w, s));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn add_avx2<T: Taps>(out: &mut [f32], taps: T, rows: &[f32], stride: usize) {
    add_blocks(out, taps, rows, stride, |s, a, w| a.mul_add(w, s));
}

/// `out` is cut into blocks of 32 (then 16, then single) floats so that each block's sums
/// stay in registers while every tap is added, instead of being stored and reloaded once
/// per tap.
#[inline(always)]
fn add_blocks<T: Taps>(
    out: &mut [f32],
    taps: T,
    rows: &[f32],
    stride: usize,
    madd: impl Fn(f32, f32, f32) -> f32 + Copy,
) {
    let mut offset = 0;
    while out.len() - offset >= 32 {
        add_block::<32, T>(
            &mut out[offset..offset + 32],
            taps.clone(),
            rows,
            stride,
            offset,
            madd,
        );
        offset += 32;
    }
    if out.len() - offset >= 16 {
        add_block::<16, T>(
            &mut out[offset..offset + 16],
            taps.clone(),
            rows,
            stride,
            offset,
            madd,
        );
        offset += 16;
    }
    for (o, acc) in out.iter_mut().enumerate().skip(offset) {
        let mut sum = *acc;
        for (k, a) in taps.clone() {
            sum = madd(sum, a, rows[k * stride + o]);
        }
        *acc = sum;
    }
}

#[inline(always)]
fn add_block<const B: usize, T: Taps>(
    out: &mut [f32],
    taps: T,
    rows: &[f32],
    stride: usize,
    offset: usize,
    madd: impl Fn(f32, f32, f32) -> f32,
) {
    let mut acc = [0.0f32; B];
    acc.copy_from_slice(out);
    for (k, a) in taps {
        let start = k * stride + offset;
        let row: &[f32; B] = rows[start..start + B].try_into().expect("B floats");
        for (s, &w) in acc.iter_mut().zip(row) {
            *s = madd(*s, a, w);
        }
    }
    out.copy_from_slice(&acc);
}

#[cfg(test)]
mod tests {
    use super::{add_rows_scaled_by, add_scaled_rows};

    #[test]
    fn scaled_rows_add_up_like_the_plain_loop_for_every_block_split() {
        // Widths cover the 32-, 16- and single-float paths and their mixtures.
        for width in [0, 1, 5, 16, 17, 32, 33, 49, 100] {
            let stride = width + 3;
            let rows: Vec<f32> = (0..7 * stride)
                .map(|i| ((i * 37 % 11) as f32 - 5.0) / 4.0)
                .collect();
            let taps = [(0, 0.5), (6, -1.25), (3, 2.0), (3, 0.125)];
            let mut out: Vec<f32> = (0..width).map(|o| o as f32 / 8.0).collect();
            let mut expected = out.clone();
            for (o, e) in expected.iter_mut().enumerate() {
                for &(k, a) in &taps {
                    *e += a * rows[k * stride + o];
                }
            }
            let mut dense = out.clone();
            add_scaled_rows(&mut out, &taps, &rows, stride);
            // Every product and sum here is exact in f32, so fused or not they agree.
            assert_eq!(out, expected, "width {width}");
            let scales = [0.5, 0.0, -2.0, 0.25];
            let mut expected_dense = dense.clone();
            for (o, e) in expected_dense.iter_mut().enumerate() {
                for (k, &a) in scales.iter().enumerate() {
                    *e += a * rows[k * stride + o];
                }
            }
            add_rows_scaled_by(&mut dense, &scales, &rows, stride);
            assert_eq!(dense, expected_dense, "width {width}, every row");
        }
    }

    #[test]
    #[should_panic]
    fn a_row_past_the_end_is_refused() {
        let mut out = vec![0.0; 4];
        add_scaled_rows(&mut out, &[(2, 1.0)], &[0.0; 10], 4);
    }
}
