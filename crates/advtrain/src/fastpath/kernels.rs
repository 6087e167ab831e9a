//! im2col + GEMM convolution kernels on contiguous NCHW `f32` slices.
//!
//! burn-flex's own convolution is a direct loop and its backward passes go through
//! the generic transposed-convolution path; on the small CNNs used here both are
//! several times slower than a GEMM. These kernels unfold one image at a time into
//! a `[C_in·kh·kw, OH·OW]` column matrix (kept in a per-thread buffer) and hand the
//! work to the `gemm` crate, parallelising over the batch.

use gemm::{gemm, Parallelism};
use rayon::prelude::*;

/// Shape and options of one 2-D convolution (groups = 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Images in the batch (N).
    pub batch: usize,
    /// Input channels (C_in).
    pub channels_in: usize,
    /// Input height before padding.
    pub height: usize,
    /// Input width before padding.
    pub width: usize,
    /// Output channels (C_out), the number of filters.
    pub channels_out: usize,
    /// Kernel height and width (kh, kw).
    pub kernel: [usize; 2],
    /// Stride along (height, width); 0 makes [`ConvGeometry::output_size`] `None`.
    pub stride: [usize; 2],
    /// Padding before each spatial dimension (top, left).
    pub padding_begin: [usize; 2],
    /// Padding after each spatial dimension (bottom, right).
    pub padding_end: [usize; 2],
    /// Spacing between kernel taps along (height, width); 1 is a plain convolution.
    pub dilation: [usize; 2],
}

impl ConvGeometry {
    /// Output height and width, or `None` when the kernel does not fit the padded input.
    pub fn output_size(&self) -> Option<[usize; 2]> {
        let dims = [self.height, self.width];
        let mut out = [0; 2];
        for d in 0..2 {
            let span = self.dilation[d] * (self.kernel[d] - 1) + 1;
            let padded = dims[d] + self.padding_begin[d] + self.padding_end[d];
            if self.stride[d] == 0 || span > padded {
                return None;
            }
            out[d] = (padded - span) / self.stride[d] + 1;
        }
        Some(out)
    }

    fn out(&self) -> [usize; 2] {
        self.output_size()
            .expect("convolution geometry checked by the caller")
    }

    /// Rows of the column matrix: `C_in · kh · kw`.
    fn rows(&self) -> usize {
        self.channels_in * self.kernel[0] * self.kernel[1]
    }

    /// Columns of the column matrix: `OH · OW`.
    fn cols(&self) -> usize {
        let [oh, ow] = self.out();
        oh * ow
    }

    fn image_len(&self) -> usize {
        self.channels_in * self.height * self.width
    }
}

/// Every layer unfolds through a zero-padded copy of the image stored by *width phase*:
/// padded row `y` is split into `s` (the width stride) runs of `wq = ⌈Wp / s⌉` floats,
/// run `r` holding the columns `x ≡ r (mod s)` in order. Then the taps of one kernel
/// position `(c, i, j)` along one output row are `OW` consecutive floats for every
/// stride, so im2col and col2im move contiguous rows (copied in SIMD-sized blocks)
/// with no bounds arithmetic for the padding. With stride 1 the layout is the plain
/// padded image. The strided layers (`small-cnn`'s) used to gather through an offset
/// table one float at a time, a third of a forward pass's time; splitting the phases
/// touches each input float once per image instead of once per tap.
struct PaddedTaps {
    /// Padded height.
    hp: usize,
    /// Width stride: how many phases a padded row is split into.
    phases: usize,
    /// Length of one phase's run.
    wq: usize,
    /// Output width.
    ow: usize,
    /// Per phase, the image columns it holds: `(first, at, count)` are the first image
    /// column, where it goes in the padded row, and how many (every `phases`-th
    /// column). Computed once: per row, the divisions cost more than the copying.
    runs: Vec<(usize, usize, usize)>,
    /// Where kernel position `(i, j)` (index `i·kw + j`) of output position 0 lies
    /// within a channel's plane; computed once for the same reason.
    taps: Vec<usize>,
}

impl PaddedTaps {
    fn new(g: &ConvGeometry) -> Self {
        let [_, ow] = g.out();
        let hp = g.height + g.padding_begin[0] + g.padding_end[0];
        let wp = g.width + g.padding_begin[1] + g.padding_end[1];
        let (phases, left) = (g.stride[1], g.padding_begin[1]);
        let wq = wp.div_ceil(phases);
        let runs = (0..phases)
            .map(|phase| {
                let first = (phase + phases - left % phases) % phases;
                let count = g.width.saturating_sub(first).div_ceil(phases);
                (first, phase * wq + (first + left) / phases, count)
            })
            .collect();
        let [kh, kw] = g.kernel;
        let taps = (0..kh * kw)
            .map(|t| {
                let (i, x) = (t / kw * g.dilation[0], t % kw * g.dilation[1]);
                i * phases * wq + (x % phases) * wq + x / phases
            })
            .collect();
        Self {
            hp,
            phases,
            wq,
            ow,
            runs,
            taps,
        }
    }

    /// Floats per padded row (all its phases).
    fn row_len(&self) -> usize {
        self.phases * self.wq
    }

    /// Floats per padded channel.
    fn plane(&self) -> usize {
        self.hp * self.row_len()
    }

    /// Every tap `(c, i, j)` with its column-matrix row and where its output
    /// position 0 lies in the phase layout, in row order.
    fn rows(&self, g: &ConvGeometry) -> impl Iterator<Item = (usize, usize)> + '_ {
        let plane = self.plane();
        (0..g.channels_in).flat_map(move |c| {
            let first = c * self.taps.len();
            let taps = self.taps.iter().enumerate();
            taps.map(move |(t, &at)| (first + t, c * plane + at))
        })
    }

    /// Distance in the phase layout between the taps of consecutive output rows.
    fn row_step(&self, g: &ConvGeometry) -> usize {
        g.stride[0] * self.row_len()
    }

    /// Image row `y` of channel `c`: where its padded row starts in the layout.
    fn row_at(&self, g: &ConvGeometry, c: usize, y: usize) -> usize {
        c * self.plane() + (y + g.padding_begin[0]) * self.row_len()
    }

    /// Copy `image` `[C_in, H, W]` into the phase layout `padded` (zero border).
    fn pad(&self, g: &ConvGeometry, image: &[f32], padded: &mut Vec<f32>) {
        padded.clear();
        padded.resize(g.channels_in * self.plane(), 0.0);
        let (h, w) = (g.height, g.width);
        for c in 0..g.channels_in {
            for y in 0..h {
                let src = &image[(c * h + y) * w..(c * h + y + 1) * w];
                let row = &mut padded[self.row_at(g, c, y)..][..self.row_len()];
                match self.phases {
                    1 => copy_row(&mut row[g.padding_begin[1]..][..w], src),
                    2 => self.split_two_phases(row, src),
                    _ => {
                        for &(first, at, count) in &self.runs {
                            for (k, d) in row[at..at + count].iter_mut().enumerate() {
                                *d = src[first + k * self.phases];
                            }
                        }
                    }
                }
            }
        }
    }

    /// For width stride 2: where in a padded row the even image columns start and
    /// where the odd ones do (each a run of consecutive floats).
    fn two_phase_starts(&self) -> (usize, usize) {
        let [(first_0, at_0, _), (_, at_1, _)] = [self.runs[0], self.runs[1]];
        if first_0 == 0 {
            (at_0, at_1)
        } else {
            (at_1, at_0)
        }
    }

    /// One image row into its padded row for width stride 2: the even and the odd
    /// columns as two runs, four pairs at a time (a block the compiler turns into
    /// shuffles, where the general path moves one float at a time).
    fn split_two_phases(&self, row: &mut [f32], src: &[f32]) {
        let (even_at, odd_at) = self.two_phase_starts();
        let pairs = src.len() / 2;
        if src.len() % 2 == 1 {
            row[even_at + pairs] = src[2 * pairs];
        }
        let (even, odd) = disjoint_runs(row, even_at, odd_at, pairs);
        if pairs < 4 {
            for (k, pair) in src.chunks_exact(2).enumerate() {
                even[k] = pair[0];
                odd[k] = pair[1];
            }
            return;
        }
        let mut block = |k: usize| {
            let b: [f32; 8] = src[2 * k..2 * k + 8].try_into().expect("8 floats");
            even[k..k + 4].copy_from_slice(&[b[0], b[2], b[4], b[6]]);
            odd[k..k + 4].copy_from_slice(&[b[1], b[3], b[5], b[7]]);
        };
        for_overlapping_blocks(pairs, 4, |k, _| block(k));
    }

    /// The inverse of [`Self::split_two_phases`]: a padded row's two runs back into
    /// one image row, interleaved four pairs at a time.
    fn merge_two_phases(&self, row: &[f32], dst: &mut [f32]) {
        let (even_at, odd_at) = self.two_phase_starts();
        let pairs = dst.len() / 2;
        if dst.len() % 2 == 1 {
            dst[2 * pairs] = row[even_at + pairs];
        }
        let (even, odd) = (&row[even_at..even_at + pairs], &row[odd_at..odd_at + pairs]);
        if pairs < 4 {
            for (k, pair) in dst.chunks_exact_mut(2).enumerate() {
                pair.copy_from_slice(&[even[k], odd[k]]);
            }
            return;
        }
        let mut block = |k: usize| {
            let (e, o): ([f32; 4], [f32; 4]) = (
                even[k..k + 4].try_into().expect("4 floats"),
                odd[k..k + 4].try_into().expect("4 floats"),
            );
            let b = [e[0], o[0], e[1], o[1], e[2], o[2], e[3], o[3]];
            dst[2 * k..2 * k + 8].copy_from_slice(&b);
        };
        for_overlapping_blocks(pairs, 4, |k, _| block(k));
    }

    fn im2col(&self, g: &ConvGeometry, padded: &[f32], col: &mut [f32], ld: usize, offset: usize) {
        let (ow, step, p) = (self.ow, self.row_step(g), g.cols());
        for (row, at) in self.rows(g) {
            let src = &padded[at..];
            let dst = &mut col[row * ld + offset..row * ld + offset + p];
            for (oy, out_row) in dst.chunks_exact_mut(ow).enumerate() {
                copy_row(out_row, &src[oy * step..oy * step + ow]);
            }
        }
    }

    /// Add columns `offset..offset + P` of `col` into the phase layout `padded`.
    fn col2im(&self, g: &ConvGeometry, col: &[f32], ld: usize, offset: usize, padded: &mut [f32]) {
        let (ow, step, p) = (self.ow, self.row_step(g), g.cols());
        for (row, at) in self.rows(g) {
            let dst = &mut padded[at..];
            let src = &col[row * ld + offset..row * ld + offset + p];
            for (oy, in_row) in src.chunks_exact(ow).enumerate() {
                add_row(&mut dst[oy * step..oy * step + ow], in_row);
            }
        }
    }

    /// The interior of the phase layout `padded` into `image`.
    fn unpad(&self, g: &ConvGeometry, padded: &[f32], image: &mut [f32]) {
        let (h, w) = (g.height, g.width);
        for c in 0..g.channels_in {
            for y in 0..h {
                let dst = &mut image[(c * h + y) * w..(c * h + y + 1) * w];
                let row = &padded[self.row_at(g, c, y)..][..self.row_len()];
                match self.phases {
                    1 => copy_row(dst, &row[g.padding_begin[1]..][..w]),
                    2 => self.merge_two_phases(row, dst),
                    _ => {
                        for &(first, at, count) in &self.runs {
                            for (k, v) in row[at..at + count].iter().enumerate() {
                                dst[first + k * self.phases] = *v;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The two runs `row[a..a + len]` and `row[b..b + len]`, which do not overlap, borrowed
/// mutably at once.
fn disjoint_runs(row: &mut [f32], a: usize, b: usize, len: usize) -> (&mut [f32], &mut [f32]) {
    if a < b {
        let (head, tail) = row.split_at_mut(b);
        (&mut head[a..a + len], &mut tail[..len])
    } else {
        let (head, tail) = row.split_at_mut(a);
        (&mut tail[..len], &mut head[b..b + len])
    }
}

/// Calls `block(at, done)` for blocks of `b` items covering `0..n` (`n >= b`), the
/// last block overlapping the one before (7 items in blocks of 4 are two blocks), so
/// nothing is left to a scalar tail. `done` is where the blocks before this one ended
/// (0 for all but the last): a block that writes what it read can ignore the overlap,
/// one that accumulates must leave the items below `done` alone.
fn for_overlapping_blocks(n: usize, b: usize, mut block: impl FnMut(usize, usize)) {
    let mut at = 0;
    while at + b < n {
        block(at, 0);
        at += b;
    }
    block(n - b, at);
}

/// `dst.copy_from_slice(src)` for the short rows (a feature map's width) that im2col
/// moves: 8- or 4-float blocks the compiler keeps in registers, the last one
/// overlapping the one before (`14 = 8 + 8 − 2`, `7 = 4 + 4 − 1`), instead of one
/// `memcpy` call per row, whose call overhead dominated a 7- or 14-float copy.
#[inline]
fn copy_row(dst: &mut [f32], src: &[f32]) {
    assert_eq!(dst.len(), src.len());
    if dst.len() >= 8 {
        copy_blocks::<8>(dst, src);
    } else if dst.len() >= 4 {
        copy_blocks::<4>(dst, src);
    } else {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = *s;
        }
    }
}

/// `copy_row` in `B`-float blocks; `dst.len() >= B`.
#[inline]
fn copy_blocks<const B: usize>(dst: &mut [f32], src: &[f32]) {
    for_overlapping_blocks(dst.len(), B, |at, _| {
        let b: [f32; B] = src[at..at + B].try_into().expect("B floats");
        dst[at..at + B].copy_from_slice(&b);
    });
}

/// `dst[i] += src[i]` for the short rows col2im adds, in 8- or 4-float blocks like
/// [`copy_row`]. The last block overlaps the one before, so its lanes already added
/// take `-0.0` instead of `src`'s value: `-0.0` is the exact additive identity (also
/// for a `-0.0` or NaN in `dst`), so every float gets exactly one addition of its own
/// and the result is bit for bit the scalar loop's. The scalar loop (the compiler
/// kept one `addss` per float for 7-float rows) was 15% of an APGD-T profile.
#[inline]
fn add_row(dst: &mut [f32], src: &[f32]) {
    assert_eq!(dst.len(), src.len());
    if dst.len() >= 8 {
        add_blocks::<8>(dst, src);
    } else if dst.len() >= 4 {
        add_blocks::<4>(dst, src);
    } else {
        dst.iter_mut().zip(src).for_each(|(d, s)| *d += *s);
    }
}

/// `add_row` in `B`-float blocks; `dst.len() >= B`.
#[inline]
fn add_blocks<const B: usize>(dst: &mut [f32], src: &[f32]) {
    for_overlapping_blocks(dst.len(), B, |at, done| {
        let s: [f32; B] = src[at..at + B].try_into().expect("B floats");
        let d: &mut [f32; B] = (&mut dst[at..at + B]).try_into().expect("B floats");
        for lane in 0..B {
            // Lanes below `done` were added by the block before.
            let add = if at + lane < done { -0.0 } else { s[lane] };
            d[lane] += add;
        }
    });
}

/// Unfolds images for one layer through [`PaddedTaps`].
struct Unfolder<'a> {
    g: &'a ConvGeometry,
    taps: PaddedTaps,
}

impl<'a> Unfolder<'a> {
    fn new(g: &'a ConvGeometry) -> Self {
        Self {
            g,
            taps: PaddedTaps::new(g),
        }
    }

    /// im2col of one image into columns `offset..` of `col` (`scratch`: padding buffer).
    fn im2col(
        &self,
        image: &[f32],
        col: &mut [f32],
        ld: usize,
        offset: usize,
        scratch: &mut Vec<f32>,
    ) {
        self.taps.pad(self.g, image, scratch);
        self.taps.im2col(self.g, scratch, col, ld, offset);
    }

    /// col2im of columns `offset..` of `col` into `image` (every entry is overwritten).
    fn col2im(
        &self,
        col: &[f32],
        ld: usize,
        offset: usize,
        image: &mut [f32],
        scratch: &mut Vec<f32>,
    ) {
        let t = &self.taps;
        scratch.clear();
        scratch.resize(self.g.channels_in * t.plane(), 0.0);
        t.col2im(self.g, col, ld, offset, scratch);
        t.unpad(self.g, scratch, image);
    }
}

/// `dst[m×n] = a[m×k] · b[k×n]` (or `+=` when `accumulate`), all row-major with
/// the given row strides; `a_t`/`b_t` read the operand transposed.
#[allow(clippy::too_many_arguments)]
pub(super) fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    a: &[f32],
    a_transposed: bool,
    b: &[f32],
    b_transposed: bool,
    accumulate: bool,
    parallelism: Parallelism,
) {
    // Checked in every build: the unsafe call below relies on it, and it costs three
    // comparisons per product.
    assert!(dst.len() == m * n && a.len() == m * k && b.len() == k * n);
    // (column stride, row stride) of each operand as stored.
    let (a_cs, a_rs) = if a_transposed { (m, 1) } else { (1, k) };
    let (b_cs, b_rs) = if b_transposed { (k, 1) } else { (1, n) };
    // SAFETY: the slices have exactly the lengths the strides describe (asserted
    // above), and
    // `dst` does not alias `a` or `b` (distinct borrows).
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `src` `[rows, cols]` → `[cols, rows]`, through 16×16 tiles (one cache line per tile
/// row on both sides), bands of output rows split across threads.
pub fn transpose(src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    const T: usize = 16;
    assert_eq!(src.len(), rows * cols);
    let mut dst = zeroed(rows * cols);
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

/// Split the batch across threads when it is large enough; otherwise let GEMM use them.
fn batch_parallel(batch: usize) -> bool {
    batch >= rayon::current_num_threads()
}

/// GEMM columns worth gathering into one call: a small layer (`small-cnn`'s second has
/// 7×7 outputs) multiplied image by image spends more time entering GEMM and packing
/// than multiplying, so several images' columns are placed side by side.
const TARGET_COLUMNS: usize = 384;

/// Per-thread scratch: column matrix, GEMM product or gathered gradient, padded image.
type Buffers = (Vec<f32>, Vec<f32>, Vec<f32>);

/// A zero-filled output buffer, filled by the pool's threads when it is large. The
/// fast path allocates its outputs on the thread that then waits for the workers, so
/// `vec![0.0; len]` (a `memset` of reused memory, and the page faults of fresh memory)
/// ran alone on one core: 3–4% of an attack's samples, all of it serial.
pub(super) fn zeroed(len: usize) -> Vec<f32> {
    const PARALLEL_FROM: usize = 1 << 16;
    if len < PARALLEL_FROM {
        return vec![0.0; len];
    }
    let mut buf = Vec::with_capacity(len);
    buf.par_extend(rayon::iter::repeat_n(0.0f32, len));
    buf
}

/// The first `len` floats of `buf`, which grows (zero-filled) only when it is too short:
/// callers overwrite all of what they use, so nothing left from an earlier image shows.
fn grow(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    &mut buf[..len]
}

/// Images per GEMM call for this layer, at most `batch`, and few enough that every
/// thread still gets work.
fn images_per_gemm(g: &ConvGeometry) -> usize {
    let per_thread = g.batch.div_ceil(rayon::current_num_threads()).max(1);
    (TARGET_COLUMNS / g.cols().max(1)).clamp(1, per_thread)
}

/// Forward convolution: `x` `[N, C_in, H, W]`, `weight` `[C_out, C_in, kh, kw]`,
/// optional `bias` `[C_out]`; returns `[N, C_out, OH, OW]`, passed through a ReLU
/// when `relu` (fused: the output is touched once while still in cache).
pub fn conv2d_forward(
    g: &ConvGeometry,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
) -> Vec<f32> {
    let (k, p, co) = (g.rows(), g.cols(), g.channels_out);
    let mut out = zeroed(g.batch * co * p);
    if out.is_empty() {
        return out;
    }
    let per = images_per_gemm(g);
    let unfold = Unfolder::new(g);
    let finish = |row: &mut [f32], src: &[f32], c: usize| {
        let b = bias.map_or(0.0, |bias| bias[c]);
        if relu {
            row.iter_mut()
                .zip(src)
                .for_each(|(v, s)| *v = relu_value(*s + b));
        } else {
            row.iter_mut().zip(src).for_each(|(v, s)| *v = *s + b);
        }
    };
    // `group` holds `out_group.len() / (co·p)` consecutive images starting at `first`.
    let one = |bufs: &mut Buffers, first: usize, out_group: &mut [f32], par| {
        let images = out_group.len() / (co * p);
        let ld = images * p;
        let (col, prod, scratch) = bufs;
        let (col, prod) = (grow(col, k * ld), grow(prod, co * ld));
        for j in 0..images {
            let n = first + j;
            let image = &x[n * g.image_len()..(n + 1) * g.image_len()];
            unfold.im2col(image, col, ld, j * p, scratch);
        }
        matmul(co, ld, k, prod, weight, false, col, false, false, par);
        for (j, out_n) in out_group.chunks_exact_mut(co * p).enumerate() {
            for (c, row) in out_n.chunks_exact_mut(p).enumerate() {
                finish(row, &prod[c * ld + j * p..c * ld + (j + 1) * p], c);
            }
        }
    };
    if batch_parallel(g.batch) {
        out.par_chunks_mut(per * co * p)
            .enumerate()
            .for_each_init(Buffers::default, |bufs, (t, group)| {
                one(bufs, t * per, group, Parallelism::None)
            });
    } else {
        let mut bufs = Buffers::default();
        for (t, group) in out.chunks_mut(per * co * p).enumerate() {
            one(&mut bufs, t * per, group, Parallelism::Rayon(0));
        }
    }
    out
}

/// Images `first..first + images` of `grad` (`[N, C_out, P]`) side by side as one
/// `[C_out, images·P]` matrix: the slice of `grad` itself for one image (no copy),
/// otherwise gathered into `dst`.
fn gather_columns<'a>(
    grad: &'a [f32],
    co: usize,
    p: usize,
    first: usize,
    images: usize,
    dst: &'a mut Vec<f32>,
) -> &'a [f32] {
    if images == 1 {
        return &grad[first * co * p..(first + 1) * co * p];
    }
    let ld = images * p;
    let dst = grow(dst, co * ld);
    for j in 0..images {
        let grad_n = &grad[(first + j) * co * p..(first + j + 1) * co * p];
        for (c, row) in grad_n.chunks_exact(p).enumerate() {
            dst[c * ld + j * p..c * ld + (j + 1) * p].copy_from_slice(row);
        }
    }
    dst
}

/// Gradient with respect to the input: `grad` `[N, C_out, OH, OW]` → `[N, C_in, H, W]`.
pub fn conv2d_backward_input(g: &ConvGeometry, weight: &[f32], grad: &[f32]) -> Vec<f32> {
    let (k, p, co) = (g.rows(), g.cols(), g.channels_out);
    let mut dx = zeroed(g.batch * g.image_len());
    if dx.is_empty() || p == 0 {
        return dx;
    }
    let per = images_per_gemm(g);
    let unfold = Unfolder::new(g);
    // col = Wᵀ · grad. GEMM reads W `[C_out × K]` against its stored orientation slowly
    // (see `linear`), and Wᵀ is small next to the product, so transpose it once.
    let weight_t = transpose(weight, co, k);
    let one = |bufs: &mut Buffers, first: usize, dx_group: &mut [f32], par| {
        let images = dx_group.len() / g.image_len();
        let ld = images * p;
        let (col, gathered, scratch) = bufs;
        let gathered = gather_columns(grad, co, p, first, images, gathered);
        let col = grow(col, k * ld);
        matmul(
            k, ld, co, col, &weight_t, false, gathered, false, false, par,
        );
        for (j, dx_n) in dx_group.chunks_exact_mut(g.image_len()).enumerate() {
            unfold.col2im(col, ld, j * p, dx_n, scratch);
        }
    };
    if batch_parallel(g.batch) {
        dx.par_chunks_mut(per * g.image_len())
            .enumerate()
            .for_each_init(Buffers::default, |bufs, (t, group)| {
                one(bufs, t * per, group, Parallelism::None)
            });
    } else {
        let mut bufs = Buffers::default();
        for (t, group) in dx.chunks_mut(per * g.image_len()).enumerate() {
            one(&mut bufs, t * per, group, Parallelism::Rayon(0));
        }
    }
    dx
}

/// Gradient with respect to the weight: `Σ_n grad_n · colₙᵀ`, `[C_out, C_in, kh, kw]`.
///
/// Accumulated transposed, `dWᵀ += colₙ · grad_nᵀ` (`[C_in·kh·kw, C_out]`), and
/// transposed once at the end: GEMM reads both operands in their stored orientation
/// that way, which measured about a fifth faster per image than `grad_n · colₙᵀ`.
pub fn conv2d_backward_weight(g: &ConvGeometry, x: &[f32], grad: &[f32]) -> Vec<f32> {
    let (k, p, co) = (g.rows(), g.cols(), g.channels_out);
    let per = images_per_gemm(g);
    let unfold = Unfolder::new(g);
    let accumulate_range = |range: std::ops::Range<usize>, par: Parallelism| {
        let mut dwt = vec![0.0f32; k * co];
        let (col_buf, gathered_buf, scratch) = &mut Buffers::default();
        let mut first = range.start;
        while first < range.end {
            let images = per.min(range.end - first);
            let ld = images * p;
            let col = grow(col_buf, k * ld);
            for j in 0..images {
                let n = first + j;
                let image = &x[n * g.image_len()..(n + 1) * g.image_len()];
                unfold.im2col(image, col, ld, j * p, scratch);
            }
            let gathered = gather_columns(grad, co, p, first, images, gathered_buf);
            let accumulate = first > range.start;
            matmul(
                k, co, ld, &mut dwt, col, false, gathered, true, accumulate, par,
            );
            first += images;
        }
        dwt
    };
    if g.batch == 0 || p == 0 {
        return vec![0.0f32; co * k];
    }
    let dwt = if batch_parallel(g.batch) {
        let parts = rayon::current_num_threads().min(g.batch);
        let per_part = g.batch.div_ceil(parts);
        (0..parts)
            .into_par_iter()
            .map(|t| {
                let range = t * per_part..((t + 1) * per_part).min(g.batch);
                accumulate_range(range, Parallelism::None)
            })
            .reduce_with(|mut a, b| {
                a.iter_mut().zip(&b).for_each(|(x, y)| *x += *y);
                a
            })
            .unwrap_or_else(|| vec![0.0f32; co * k])
    } else {
        accumulate_range(0..g.batch, Parallelism::Rayon(0))
    };
    transpose(&dwt, k, co)
}

/// `max(v, 0)` written as a select, which the compiler vectorises (`f32::max`'s NaN
/// rule kept such loops scalar); NaN maps to 0, as `f32::max(NaN, 0.0)` does.
#[inline(always)]
pub(super) fn relu_value(v: f32) -> f32 {
    if v > 0.0 {
        v
    } else {
        0.0
    }
}

/// Zero the gradient where a fused ReLU's output was not positive (its derivative is 0 there).
pub fn relu_backward_in_place(output: &[f32], grad: &mut [f32]) {
    debug_assert_eq!(output.len(), grad.len());
    grad.par_chunks_mut(1 << 14)
        .zip(output.par_chunks(1 << 14))
        .for_each(|(g, o)| {
            // Branch-free select, so the loop vectorises.
            g.iter_mut()
                .zip(o)
                .for_each(|(g, o)| *g = if *o > 0.0 { *g } else { 0.0 })
        });
}

/// `grad` masked by a fused ReLU's `output`, as a new buffer (one pass, no copy first).
pub fn relu_backward(output: &[f32], grad: &[f32]) -> Vec<f32> {
    debug_assert_eq!(output.len(), grad.len());
    let mut masked = zeroed(grad.len());
    masked
        .par_chunks_mut(1 << 14)
        .zip(grad.par_chunks(1 << 14).zip(output.par_chunks(1 << 14)))
        .for_each(|(m, (g, o))| {
            for ((m, g), o) in m.iter_mut().zip(g).zip(o) {
                *m = if *o > 0.0 { *g } else { 0.0 };
            }
        });
    masked
}

/// Gradient with respect to the bias: the sum of `grad` over batch and positions.
///
/// Each image's plane sums are taken in parallel, 16 independent lanes per plane (a plain
/// `iter().sum()` is one serial chain of dependent float adds, which took 2.4 ms on
/// `madry-cnn`'s first layer), then added in image order, so the result does not depend
/// on how the threads split the work: training stays reproducible for a seed.
pub fn conv2d_backward_bias(g: &ConvGeometry, grad: &[f32]) -> Vec<f32> {
    let (p, co) = (g.cols(), g.channels_out);
    if p == 0 || co == 0 {
        return vec![0.0f32; co];
    }
    let per_image: Vec<f32> = grad.par_chunks(p).map(lane_sum).collect();
    let mut db = vec![0.0f32; co];
    for sums in per_image.chunks_exact(co) {
        db.iter_mut().zip(sums).for_each(|(d, s)| *d += *s);
    }
    db
}

/// Sum of `values` in 16 interleaved partial sums (vectorisable), then combined.
fn lane_sum(values: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 16];
    let mut chunks = values.chunks_exact(16);
    for chunk in &mut chunks {
        for (l, v) in lanes.iter_mut().zip(chunk) {
            *l += *v;
        }
    }
    lanes.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_row_copies_every_length_exactly() {
        // below, at and above one 8-float block, and with an overlapping last block
        for n in 0..41 {
            let src: Vec<f32> = (0..n).map(|i| i as f32 + 0.5).collect();
            let mut dst = vec![-1.0f32; n];
            copy_row(&mut dst, &src);
            assert_eq!(dst, src, "length {n}");
        }
    }

    #[test]
    fn add_row_adds_once_per_float_bit_for_bit() {
        // every block split, with the special values whose sums a wrong identity changes
        let specials = [-0.0f32, 0.0, f32::NAN, f32::INFINITY, -1.5, 1e-40];
        for n in 0..41 {
            let src: Vec<f32> = (0..n).map(|i| specials[i % 6] * (i as f32 + 1.0)).collect();
            let start: Vec<f32> = (0..n).map(|i| specials[(i + 3) % 6] - i as f32).collect();
            let mut dst = start.clone();
            add_row(&mut dst, &src);
            for i in 0..n {
                let want = start[i] + src[i];
                assert_eq!(dst[i].to_bits(), want.to_bits(), "length {n}, float {i}");
            }
        }
    }

    #[test]
    fn phase_layout_round_trips_every_width_stride_and_padding() {
        for (width, stride, left) in
            (1..40).flat_map(|w| (1..4).flat_map(move |s| (0..3).map(move |l| (w, s, l))))
        {
            let g = ConvGeometry {
                batch: 1,
                channels_in: 2,
                height: 3,
                width,
                channels_out: 1,
                kernel: [1, 1],
                stride: [1, stride],
                padding_begin: [1, left],
                padding_end: [0, 1],
                dilation: [1, 1],
            };
            let taps = PaddedTaps::new(&g);
            let image = values(g.image_len(), 7);
            let mut padded = Vec::new();
            taps.pad(&g, &image, &mut padded);
            // The image's values and zeros elsewhere: the same nonzero values.
            let nonzero = |v: &[f32]| {
                let mut v: Vec<f32> = v.iter().copied().filter(|x| *x != 0.0).collect();
                v.sort_by(f32::total_cmp);
                v
            };
            assert_eq!(nonzero(&padded), nonzero(&image), "{width} {stride} {left}");
            let mut back = vec![f32::NAN; image.len()];
            taps.unpad(&g, &padded, &mut back);
            assert_eq!(
                back, image,
                "width {width}, stride {stride}, left padding {left}"
            );
        }
    }

    /// Plain seven-loop convolution, the reference for the kernels.
    fn naive_forward(g: &ConvGeometry, x: &[f32], w: &[f32]) -> Vec<f32> {
        let [oh, ow] = g.out();
        let mut out = vec![0.0; g.batch * g.channels_out * oh * ow];
        for n in 0..g.batch {
            for co in 0..g.channels_out {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = 0.0;
                        for c in 0..g.channels_in {
                            for i in 0..g.kernel[0] {
                                for j in 0..g.kernel[1] {
                                    let iy = (oy * g.stride[0] + i * g.dilation[0]) as isize
                                        - g.padding_begin[0] as isize;
                                    let ix = (ox * g.stride[1] + j * g.dilation[1]) as isize
                                        - g.padding_begin[1] as isize;
                                    if iy < 0
                                        || ix < 0
                                        || iy >= g.height as isize
                                        || ix >= g.width as isize
                                    {
                                        continue;
                                    }
                                    let xi = ((n * g.channels_in + c) * g.height + iy as usize)
                                        * g.width
                                        + ix as usize;
                                    let wi = ((co * g.channels_in + c) * g.kernel[0] + i)
                                        * g.kernel[1]
                                        + j;
                                    acc += x[xi] * w[wi];
                                }
                            }
                        }
                        out[((n * g.channels_out + co) * oh + oy) * ow + ox] = acc;
                    }
                }
            }
        }
        out
    }

    /// A kernel wider than the input with padding only on the right: some kernel
    /// columns see nothing but padding (an empty valid range past the image).
    fn padding_only_columns() -> ConvGeometry {
        ConvGeometry {
            batch: 2,
            channels_in: 2,
            height: 3,
            width: 2,
            channels_out: 3,
            kernel: [2, 4],
            stride: [1, 1],
            padding_begin: [0, 0],
            padding_end: [1, 2],
            dilation: [1, 1],
        }
    }

    fn geometries() -> [ConvGeometry; 7] {
        let mut strided = padding_only_columns();
        strided.stride = [1, 2];
        // Width stride 3 with dilation 2.
        let mut stride_3 = geometry();
        stride_3.stride = [2, 3];
        stride_3.dilation = [2, 2];
        // small-cnn's layers: 4×4, stride 2, padding 1, on an odd-sized image.
        let small_cnn = ConvGeometry {
            batch: 2,
            channels_in: 3,
            height: 9,
            width: 9,
            channels_out: 5,
            kernel: [4, 4],
            stride: [2, 2],
            padding_begin: [1, 1],
            padding_end: [1, 1],
            dilation: [1, 1],
        };
        // small-cnn's first layer at its size: rows of 14 pairs, several blocks of four.
        let small_cnn_28 = ConvGeometry {
            batch: 1,
            channels_in: 1,
            height: 28,
            width: 28,
            channels_out: 2,
            ..small_cnn
        };
        // No left padding (the even columns land in the first phase) and an odd width
        // of 7 pairs plus one (two overlapping blocks and a lone last column).
        let unpadded_left = ConvGeometry {
            batch: 2,
            channels_in: 2,
            height: 15,
            width: 15,
            channels_out: 3,
            kernel: [3, 3],
            stride: [2, 2],
            padding_begin: [0, 0],
            padding_end: [1, 1],
            dilation: [1, 1],
        };
        [
            geometry(),
            padding_only_columns(),
            strided,
            stride_3,
            small_cnn,
            small_cnn_28,
            unpadded_left,
        ]
    }

    fn geometry() -> ConvGeometry {
        ConvGeometry {
            batch: 3,
            channels_in: 2,
            height: 7,
            width: 6,
            channels_out: 4,
            kernel: [3, 2],
            stride: [2, 1],
            padding_begin: [1, 2],
            padding_end: [0, 1],
            dilation: [1, 2],
        }
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    #[test]
    fn forward_matches_the_naive_loop() {
        for g in geometries() {
            forward_matches(&g);
        }
    }

    fn forward_matches(g: &ConvGeometry) {
        let g = *g;
        let x = values(g.batch * g.image_len(), 1);
        let w = values(g.channels_out * g.rows(), 2);
        let fast = conv2d_forward(&g, &x, &w, None, false);
        let slow = naive_forward(&g, &x, &w);
        assert_eq!(fast.len(), slow.len());
        for (a, b) in fast.iter().zip(&slow) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }

    /// ⟨conv(x), g⟩ is bilinear, so its gradients are the adjoints: check
    /// ⟨conv(dx), g⟩ = ⟨dx, ∇ₓ⟩ and ⟨conv_w(dw), g⟩ = ⟨dw, ∇_w⟩ exactly.
    #[test]
    fn backward_passes_are_the_adjoints_of_forward() {
        for g in geometries() {
            adjoints(&g);
        }
    }

    fn adjoints(g: &ConvGeometry) {
        let g = *g;
        let x = values(g.batch * g.image_len(), 3);
        let w = values(g.channels_out * g.rows(), 4);
        let up = values(g.batch * g.channels_out * g.cols(), 5);
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        let gx = conv2d_backward_input(&g, &w, &up);
        let gw = conv2d_backward_weight(&g, &x, &up);
        let lhs_x = dot(&conv2d_forward(&g, &x, &w, None, false), &up);
        assert!((lhs_x - dot(&x, &gx)).abs() < 1e-3 * lhs_x.abs().max(1.0));
        assert!((lhs_x - dot(&w, &gw)).abs() < 1e-3 * lhs_x.abs().max(1.0));
        let gb = conv2d_backward_bias(&g, &up);
        let total: f32 = up.iter().sum();
        assert!((gb.iter().sum::<f32>() - total).abs() < 1e-3);
    }

    #[test]
    fn relu_masks_agree_in_place_and_copied() {
        let output: Vec<f32> = (0..40_000).map(|i| ((i % 7) as f32) - 3.0).collect();
        let grad = values(output.len(), 9);
        let copied = relu_backward(&output, &grad);
        let mut in_place = grad.clone();
        relu_backward_in_place(&output, &mut in_place);
        assert_eq!(copied, in_place);
        for ((m, g), o) in copied.iter().zip(&grad).zip(&output) {
            assert_eq!(*m, if *o > 0.0 { *g } else { 0.0 });
        }
    }

    /// The bias gradient is a sum over images whose order must not depend on thread
    /// scheduling: bit-identical to an image-by-image reference on every call.
    #[test]
    fn bias_gradient_is_reproducible_bit_for_bit() {
        let mut g = geometry();
        g.batch = 64;
        let grad = values(g.batch * g.channels_out * g.cols(), 11);
        let p = g.cols();
        let mut want = vec![0.0f32; g.channels_out];
        for grad_n in grad.chunks_exact(g.channels_out * p) {
            for (d, plane) in want.iter_mut().zip(grad_n.chunks_exact(p)) {
                *d += lane_sum(plane);
            }
        }
        for _ in 0..20 {
            assert_eq!(conv2d_backward_bias(&g, &grad), want);
        }
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
}
