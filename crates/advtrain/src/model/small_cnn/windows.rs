//! [`SmallCnn`]'s [`WindowScorer`]: a window of pixels reaches only a few positions of each
//! 4×4, stride-2 convolution, and the first dense layer takes the change of those as a
//! rank-few update.
//!
//! For a 28×28 image and a 3×3 window that is about 100 k multiply-adds instead of the
//! full pass's 610 k. Square's windows are that small for most of its queries (the side
//! halves on a fixed schedule), which is where its time goes.

use std::ops::Range;

use burn::nn::conv::Conv2d;
use burn::nn::{Linear, PaddingConfig2d};
use burn::prelude::{Device, Tensor};
use rayon::prelude::*;

use super::{down, SmallCnn};
use crate::fastpath::rows::{add_rows_scaled_by, add_scaled_rows};
use crate::model::window::{Window, WindowScorer};

/// Kernel side, stride and padding of both convolutions.
const KERNEL: usize = 4;

/// One 4×4, stride-2, padding-1 convolution, weights laid out `[c_in·16][c_out]` so that
/// one output position is a sum of scaled weight rows.
struct Conv {
    c_in: usize,
    c_out: usize,
    /// Input plane height and width.
    h_in: usize,
    w_in: usize,
    /// Output plane height and width.
    h_out: usize,
    w_out: usize,
    weight_rows: Vec<f32>,
    bias: Vec<f32>,
}

/// A dense layer, weights `[rows][width]`: burn's `[d_in][d_out]` layout with each row
/// padded by zeros to a multiple of 16 floats, and zero rows past `d_in`, so that the sums
/// run in whole vector blocks and a padded output can feed the next layer as it is.
struct Dense {
    d_out: usize,
    width: usize,
    weight_rows: Vec<f32>,
    bias: Vec<f32>,
}

/// What is kept of one tracked image: both convolutions' ReLU outputs and the first dense
/// layer's input to its ReLU.
#[derive(Default)]
struct Tracked {
    conv1: Vec<f32>,
    conv2: Vec<f32>,
    dense1: Vec<f32>,
}

/// The network's weights on the host, and the tracked images.
pub(super) struct SmallCnnWindows {
    channels: usize,
    height: usize,
    width: usize,
    /// Per-channel mean and 1/std, applied as the model's `normalize` does.
    normalization: Option<(Vec<f32>, Vec<f32>)>,
    conv1: Conv,
    conv2: Conv,
    dense1: Dense,
    dense2: Dense,
    tracked: Vec<Tracked>,
}

fn host(t: Tensor<1>) -> Option<Vec<f32>> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().ok()
}

/// The outputs (along one axis) whose 4-wide, stride-2 receptive field meets `inputs`.
/// Output `i` reads inputs `2i − 1 ..= 2i + 2`.
fn reached(inputs: Range<usize>, outputs: usize) -> Range<usize> {
    if inputs.is_empty() {
        return 0..0;
    }
    let first = inputs.start.saturating_sub(1) / 2;
    let end = (inputs.end / 2 + 1).min(outputs);
    first.min(end)..end
}

impl Conv {
    /// `None` unless `module` is a 4×4, stride-2, padding-1, undilated, ungrouped
    /// convolution with `c_in` input channels (what [`SmallCnn`] builds), on planes of at
    /// least 2×2 (smaller ones leave the padded kernel no position to run).
    fn new(module: &Conv2d, c_in: usize, h_in: usize, w_in: usize) -> Option<Self> {
        if h_in < 2 || w_in < 2 {
            return None;
        }
        let padded_by_one = matches!(module.padding, PaddingConfig2d::Explicit(1, 1, 1, 1));
        let shape_ok = module.kernel_size == [KERNEL; 2]
            && module.stride == [2, 2]
            && module.dilation == [1, 1]
            && module.groups == 1;
        let [c_out, weight_c_in, _, _] = module.weight.dims();
        if !padded_by_one || !shape_ok || weight_c_in != c_in {
            return None;
        }
        let taps = c_in * KERNEL * KERNEL;
        let weight = host(module.weight.val().flatten(0, 3))?;
        let mut weight_rows = vec![0.0; taps * c_out];
        for (o, filter) in weight.chunks_exact(taps).enumerate() {
            for (k, &v) in filter.iter().enumerate() {
                weight_rows[k * c_out + o] = v;
            }
        }
        let bias = match &module.bias {
            Some(b) => host(b.val())?,
            None => vec![0.0; c_out],
        };
        Some(Self {
            c_in,
            c_out,
            h_in,
            w_in,
            h_out: down(h_in),
            w_out: down(w_in),
            weight_rows,
            bias,
        })
    }

    fn out_len(&self) -> usize {
        self.c_out * self.h_out * self.w_out
    }

    /// ReLU of output position (`i`, `j`), all channels, into `out` (`c_out` floats).
    /// `input` is `[c_in, h_in, w_in]`; `prepare(channel, value)` maps each input value
    /// read (normalisation for the first layer); the zero padding is not mapped. `patch`
    /// (`c_in·16` floats) is scratch space.
    fn relu_at(
        &self,
        input: &[f32],
        prepare: impl Fn(usize, f32) -> f32,
        (i, j): (usize, usize),
        patch: &mut [f32],
        out: &mut [f32],
    ) {
        let plane = self.h_in * self.w_in;
        let taps = patch.chunks_exact_mut(KERNEL * KERNEL);
        for (ci, taps) in taps.enumerate() {
            for (kh, taps) in taps.chunks_exact_mut(KERNEL).enumerate() {
                let r = (2 * i + kh).checked_sub(1).filter(|&r| r < self.h_in);
                for (kw, tap) in taps.iter_mut().enumerate() {
                    let c = (2 * j + kw).checked_sub(1).filter(|&c| c < self.w_in);
                    *tap = match (r, c) {
                        (Some(r), Some(c)) => prepare(ci, input[ci * plane + r * self.w_in + c]),
                        _ => 0.0,
                    };
                }
            }
        }
        out.copy_from_slice(&self.bias);
        add_rows_scaled_by(out, patch, &self.weight_rows, self.c_out);
        out.iter_mut().for_each(|v| *v = v.max(0.0));
    }

    /// Computes the outputs at `rows × cols` of `input`, passing each to `visit(index,
    /// value)` with its index in `[c_out, h_out, w_out]`.
    fn visit(
        &self,
        input: &[f32],
        prepare: impl Fn(usize, f32) -> f32 + Copy,
        (rows, cols): (Range<usize>, Range<usize>),
        mut visit: impl FnMut(usize, f32),
    ) {
        let plane = self.h_out * self.w_out;
        let mut at = vec![0.0f32; self.c_out];
        let mut patch = vec![0.0f32; self.c_in * KERNEL * KERNEL];
        for i in rows {
            for j in cols.clone() {
                self.relu_at(input, prepare, (i, j), &mut patch, &mut at);
                for (o, &v) in at.iter().enumerate() {
                    visit(o * plane + i * self.w_out + j, v);
                }
            }
        }
    }

    /// Recomputes the outputs at `region` of `input` into `output`.
    fn update(
        &self,
        input: &[f32],
        prepare: impl Fn(usize, f32) -> f32 + Copy,
        region: (Range<usize>, Range<usize>),
        output: &mut [f32],
    ) {
        self.visit(input, prepare, region, |index, v| output[index] = v);
    }

    /// Every output of `input`.
    fn all(&self, input: &[f32], prepare: impl Fn(usize, f32) -> f32 + Copy) -> Vec<f32> {
        let mut output = vec![0.0; self.out_len()];
        let everywhere = (0..self.h_out, 0..self.w_out);
        self.update(input, prepare, everywhere, &mut output);
        output
    }

    /// The outputs reached by a change of the inputs at `rows × cols`.
    fn reached(&self, (rows, cols): (Range<usize>, Range<usize>)) -> (Range<usize>, Range<usize>) {
        (reached(rows, self.h_out), reached(cols, self.w_out))
    }
}

impl Dense {
    /// `module` taking `d_in` inputs, given as `rows ≥ d_in` floats (a padded output).
    fn new(module: &Linear, d_in: usize, rows: usize) -> Option<Self> {
        let [weight_d_in, d_out] = module.weight.dims();
        if weight_d_in != d_in || rows < d_in {
            return None;
        }
        let width = d_out.next_multiple_of(16);
        let weight = host(module.weight.val().flatten(0, 1))?;
        let mut weight_rows = vec![0.0; rows * width];
        for (padded, row) in weight_rows
            .chunks_exact_mut(width)
            .zip(weight.chunks_exact(d_out))
        {
            padded[..d_out].copy_from_slice(row);
        }
        let mut bias = match &module.bias {
            Some(b) => host(b.val())?,
            None => vec![0.0; d_out],
        };
        bias.resize(width, 0.0);
        Some(Self {
            d_out,
            width,
            weight_rows,
            bias,
        })
    }

    /// `bias + input · W` (`width` floats, the padding zero), before any activation.
    fn apply(&self, input: &[f32]) -> Vec<f32> {
        let mut out = self.bias.clone();
        add_rows_scaled_by(&mut out, input, &self.weight_rows, self.width);
        out
    }
}

fn relu(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| x.max(0.0)).collect()
}

impl SmallCnnWindows {
    /// The scorer for `model`'s current weights and `[channels, height, width]` images;
    /// `None` if its layers are not the shape [`SmallCnn`] builds for such images, or the
    /// model lives on another device than the CPU backend (the scorer computes on the host,
    /// and on a GPU a batched full pass is the faster way). Callers then use full passes.
    pub(super) fn new(model: &SmallCnn, [channels, height, width]: [usize; 3]) -> Option<Self> {
        let on_cpu = model.conv1.weight.val().device().without_autodiff() == Device::flex();
        if !on_cpu || channels == 0 || height == 0 || width == 0 {
            return None;
        }
        let conv1 = Conv::new(&model.conv1, channels, height, width)?;
        let conv2 = Conv::new(&model.conv2, conv1.c_out, conv1.h_out, conv1.w_out)?;
        let dense1 = Dense::new(&model.fc1, conv2.out_len(), conv2.out_len())?;
        let dense2 = Dense::new(&model.fc2, dense1.d_out, dense1.width)?;
        let normalization = model.normalization.as_ref().map(|n| {
            let inv_std = n.std.iter().map(|s| 1.0 / s).collect();
            (n.mean.clone(), inv_std)
        });
        Some(Self {
            channels,
            height,
            width,
            normalization,
            conv1,
            conv2,
            dense1,
            dense2,
            tracked: Vec::new(),
        })
    }

    fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The first layer's input map: the model's normalisation, `(x − mean) · (1/std)`.
    fn normalize(&self) -> impl Fn(usize, f32) -> f32 + Copy + '_ {
        move |channel, x| match &self.normalization {
            Some((mean, inv_std)) => (x - mean[channel]) * inv_std[channel],
            None => x,
        }
    }

    fn full_pass(&self, image: &[f32]) -> (Tracked, Vec<f32>) {
        let conv1 = self.conv1.all(image, self.normalize());
        let conv2 = self.conv2.all(&conv1, |_, v| v);
        let dense1 = self.dense1.apply(&conv2);
        let mut logits = self.dense2.apply(&relu(&dense1));
        logits.truncate(self.dense2.d_out);
        let tracked = Tracked {
            conv1,
            conv2,
            dense1,
        };
        (tracked, logits)
    }

    /// The first convolution's positions reached by `window`, clipped to the image.
    fn conv1_region(&self, window: Window) -> (Range<usize>, Range<usize>) {
        let clip = |start: usize, len: usize, end: usize| {
            start.min(end)..start.saturating_add(len).min(end)
        };
        let rows = clip(window.top, window.height, self.height);
        let cols = clip(window.left, window.width, self.width);
        self.conv1.reached((rows, cols))
    }
}

impl WindowScorer for SmallCnnWindows {
    fn classes(&self) -> usize {
        self.dense2.d_out
    }

    fn track(&mut self, images: &[f32]) -> Vec<f32> {
        let passes: Vec<(Tracked, Vec<f32>)> = images
            .par_chunks_exact(self.image_len())
            .map(|image| self.full_pass(image))
            .collect();
        let mut logits = Vec::with_capacity(passes.len() * self.classes());
        self.tracked = passes
            .into_iter()
            .map(|(tracked, z)| {
                logits.extend(z);
                tracked
            })
            .collect();
        logits
    }

    fn logits_with_window(&self, k: usize, candidate: &[f32], window: Window, logits: &mut [f32]) {
        let base = &self.tracked[k];
        let region1 = self.conv1_region(window);
        let region2 = self.conv2.reached(region1.clone());
        let mut conv1 = base.conv1.clone();
        self.conv1
            .update(candidate, self.normalize(), region1, &mut conv1);
        let reached = region2.0.len() * region2.1.len() * self.conv2.c_out;
        let mut moved = Vec::with_capacity(reached);
        self.conv2.visit(
            &conv1,
            |_, v| v,
            region2,
            |index, new| {
                let old = base.conv2[index];
                if new != old {
                    moved.push((index, new - old));
                }
            },
        );
        let mut dense1 = base.dense1.clone();
        let width = self.dense1.width;
        add_scaled_rows(&mut dense1, &moved, &self.dense1.weight_rows, width);
        let z = self.dense2.apply(&relu(&dense1));
        logits.copy_from_slice(&z[..self.dense2.d_out]);
    }

    fn replace(&mut self, k: usize, candidate: &[f32], window: Window) {
        let region1 = self.conv1_region(window);
        let region2 = self.conv2.reached(region1.clone());
        // Taken out while `self` lends the weights.
        let mut tracked = std::mem::take(&mut self.tracked[k]);
        let conv1 = &mut tracked.conv1;
        self.conv1
            .update(candidate, self.normalize(), region1, conv1);
        let conv2 = &mut tracked.conv2;
        self.conv2.update(&tracked.conv1, |_, v| v, region2, conv2);
        // Summed afresh rather than updated, so rounding does not build up over replacements.
        tracked.dense1 = self.dense1.apply(&tracked.conv2);
        self.tracked[k] = tracked;
    }
}
