//! Common corruptions at five severities, for measuring what adversarial training does to
//! robustness outside its threat model (the "side effects" audit).
//!
//! The corruptions and their constants come from the two reference suites:
//!
//! - **CIFAR-10-C** (Hendrycks & Dietterich 2019, `ImageNet-C/create_c/make_cifar_c.py` in
//!   `hendrycks/robustness`): the noises, the blurs, contrast, brightness, JPEG and pixelate,
//!   and the elastic transform, whose constants the reference writes as multiples of the
//!   image size (`IMSIZE * 0.08`, ...): here `IMSIZE` is the shorter image side, 28 for the
//!   MNISTs, so the 32-pixel constants scale to 28 pixels exactly as the reference intends.
//! - **MNIST-C** (Mu & Gilmer 2019, `corruptions.py` in `google-research/mnist-c`): rotate,
//!   shear, scale and translate, which CIFAR-10-C lacks. Its five-level lists are written for
//!   28×28 images; angles and scale factors are size-free, translations (pixels) are scaled by
//!   `min(height, width) / 28` for other sizes.
//!
//! MNIST-C also lists (stronger, MNIST-tuned) five-level constants for the photometric
//! corruptions; this module uses CIFAR-10-C's for those so one scale serves both data sets,
//! and notes MNIST-C's next to each constant for a reader who wants them.
//!
//! The references work on 8-bit H×W×C images; here an image is C×H×W `f32` in `[0, 1]`.
//! Per-pixel randomness is drawn per value (as numpy draws per array element), geometric
//! parameters once per image and shared by its channels, and every output is clamped to
//! `[0, 1]`. Grey images go through brightness exactly as MNIST-C does (grey → RGB → HSV →
//! grey), which for a grey pixel is `clip(x + c)`.
//!
//! [`corrupt_dataset`] is deterministic per (seed, corruption, severity, example index): each
//! example draws from its own [`crate::rng::derived`] stream, so the result does not depend on
//! the number of threads or on which other examples are corrupted.

use std::fmt;
use std::io::Cursor;
use std::str::FromStr;

use rand::Rng as _;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::rng::{self, AdvRng};

/// A common corruption, as defined by CIFAR-10-C or MNIST-C (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Corruption {
    /// Additive Gaussian noise (CIFAR-10-C `gaussian_noise`).
    GaussianNoise,
    /// Poisson photon noise, `Poisson(x * c) / c` (CIFAR-10-C `shot_noise`).
    ShotNoise,
    /// Salt-and-pepper noise on a fraction of the values (CIFAR-10-C `impulse_noise`).
    ImpulseNoise,
    /// Gaussian blur (CIFAR-10-C `gaussian_blur`).
    GaussianBlur,
    /// Blur with an anti-aliased disk, an out-of-focus lens (CIFAR-10-C `defocus_blur`).
    DefocusBlur,
    /// Contrast reduced towards each channel's mean (CIFAR-10-C `contrast`).
    Contrast,
    /// Brightness raised in HSV value (CIFAR-10-C `brightness`).
    Brightness,
    /// JPEG compression at a low quality (CIFAR-10-C `jpeg_compression`).
    Jpeg,
    /// Box downsampling and upsampling (CIFAR-10-C `pixelate`).
    Pixelate,
    /// Rotation about the centre, random direction (MNIST-C `rotate`).
    Rotate,
    /// Translation in a random diagonal direction (MNIST-C `translate`).
    Translate,
    /// Shear about the centre, random direction (MNIST-C `shear`).
    Shear,
    /// Shrinking about the centre (MNIST-C `scale`).
    Scale,
    /// A random affine jitter followed by a smooth random displacement field (CIFAR-10-C
    /// `elastic_transform`, sizes relative to the image).
    Elastic,
}

impl Corruption {
    /// Every corruption, in the order an audit reports them (noise, blur, photometric,
    /// digital, geometric).
    pub const ALL: [Corruption; 14] = [
        Corruption::GaussianNoise,
        Corruption::ShotNoise,
        Corruption::ImpulseNoise,
        Corruption::GaussianBlur,
        Corruption::DefocusBlur,
        Corruption::Contrast,
        Corruption::Brightness,
        Corruption::Jpeg,
        Corruption::Pixelate,
        Corruption::Rotate,
        Corruption::Translate,
        Corruption::Shear,
        Corruption::Scale,
        Corruption::Elastic,
    ];

    /// The name used on the command line and in records (kebab-case, e.g. `gaussian-noise`).
    pub fn name(&self) -> &'static str {
        match self {
            Corruption::GaussianNoise => "gaussian-noise",
            Corruption::ShotNoise => "shot-noise",
            Corruption::ImpulseNoise => "impulse-noise",
            Corruption::GaussianBlur => "gaussian-blur",
            Corruption::DefocusBlur => "defocus-blur",
            Corruption::Contrast => "contrast",
            Corruption::Brightness => "brightness",
            Corruption::Jpeg => "jpeg",
            Corruption::Pixelate => "pixelate",
            Corruption::Rotate => "rotate",
            Corruption::Translate => "translate",
            Corruption::Shear => "shear",
            Corruption::Scale => "scale",
            Corruption::Elastic => "elastic",
        }
    }

    /// Position in [`Corruption::ALL`]: part of each example's random stream number.
    fn index(&self) -> u64 {
        Corruption::ALL
            .iter()
            .position(|c| c == self)
            .expect("every corruption is in ALL") as u64
    }
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Corruption {
    type Err = Error;

    /// Accepts [`Corruption::name`], with `_` for `-` and in any case, and the reference
    /// suites' own names (`jpeg_compression`, `elastic_transform`).
    fn from_str(s: &str) -> Result<Self> {
        let key = s.trim().to_ascii_lowercase().replace('_', "-");
        let alias = match key.as_str() {
            "jpeg-compression" => "jpeg",
            "elastic-transform" => "elastic",
            "rotation" => "rotate",
            "translation" => "translate",
            other => other,
        };
        Corruption::ALL
            .into_iter()
            .find(|c| c.name() == alias)
            .ok_or_else(|| {
                let valid: Vec<&str> = Corruption::ALL.iter().map(|c| c.name()).collect();
                Error::config(format!(
                    "unknown corruption '{s}' (valid: {})",
                    valid.join(", ")
                ))
            })
    }
}

// ---------------------------------------------------------------------------------------
// Reference constants, one entry per severity 1..=5.
// ---------------------------------------------------------------------------------------

/// Standard deviation of the added noise: CIFAR-10-C `gaussian_noise`, used as is (pixel
/// scale `[0, 1]` in both). MNIST-C: `[.08, .12, .18, .26, .38]`.
const GAUSSIAN_NOISE_STD: [f32; 5] = [0.04, 0.06, 0.08, 0.09, 0.10];
/// Photon count at full intensity, `Poisson(x * c) / c`: CIFAR-10-C `shot_noise`, as is.
/// MNIST-C: `[60, 25, 12, 5, 3]`.
const SHOT_NOISE_RATE: [f32; 5] = [500.0, 250.0, 100.0, 75.0, 50.0];
/// Fraction of values set to 0 or 1 (half each): CIFAR-10-C `impulse_noise`
/// (skimage `random_noise(mode='s&p', amount=c)`), as is. MNIST-C: `[.03, .06, .09, .17, .27]`.
const IMPULSE_NOISE_AMOUNT: [f32; 5] = [0.01, 0.02, 0.03, 0.05, 0.07];
/// Gaussian standard deviation in pixels: CIFAR-10-C `gaussian_blur` (skimage `gaussian`,
/// `truncate=4`, `mode='nearest'`), as is on the smaller image. MNIST-C: `[1, 2, 3, 4, 6]`.
const GAUSSIAN_BLUR_SIGMA: [f32; 5] = [0.4, 0.6, 0.7, 0.8, 1.0];
/// (disk radius, anti-alias Gaussian sigma) in pixels: CIFAR-10-C `defocus_blur`, as is.
/// MNIST-C: `[(3, .1), (4, .5), (6, .5), (8, .5), (10, .5)]`.
const DEFOCUS_BLUR: [(f32, f32); 5] = [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1.0, 0.2), (1.5, 0.1)];
/// Factor on the distance to the channel mean: CIFAR-10-C `contrast`, as is (the mean is
/// per channel over the image, as the reference's `axis=(0, 1)`). MNIST-C:
/// `[.4, .3, .2, .1, .05]`.
const CONTRAST_FACTOR: [f32; 5] = [0.75, 0.5, 0.4, 0.3, 0.15];
/// Added to the HSV value: CIFAR-10-C `brightness`, as is. MNIST-C: `[.1, .2, .3, .4, .5]`.
const BRIGHTNESS_SHIFT: [f32; 5] = [0.05, 0.1, 0.15, 0.2, 0.3];
/// JPEG quality: CIFAR-10-C `jpeg_compression`, as is (the reference encodes with PIL/libjpeg;
/// here the `image` crate's encoder at the same quality). MNIST-C: `[25, 18, 15, 10, 7]`.
const JPEG_QUALITY: [u8; 5] = [80, 65, 58, 50, 40];
/// Side of the downsampled image as a fraction of the original, `int(side * c)`: CIFAR-10-C
/// `pixelate` (PIL `BOX` down and up); for 28 px that is 26, 25, 23, 21 and 18 px.
/// MNIST-C: `[.6, .5, .4, .3, .25]`.
const PIXELATE_FACTOR: [f32; 5] = [0.95, 0.9, 0.85, 0.75, 0.65];
/// Rotation in radians (11.5° to 57.3°), sign drawn at random: MNIST-C `rotate`, as is.
const ROTATE_RADIANS: [f32; 5] = [0.2, 0.4, 0.6, 0.8, 1.0];
/// Shear angle in radians, sign drawn at random: MNIST-C `shear` (skimage's
/// `AffineTransform(shear=c)` of 2019, linear part `[[1, -sin c], [0, cos c]]`), as is.
const SHEAR_RADIANS: [f32; 5] = [0.2, 0.4, 0.6, 0.8, 1.0];
/// Size of the content after scaling about the centre: MNIST-C `scale` (its inverse map
/// scales by `1 / c`), as is.
const SCALE_FACTOR: [f32; 5] = [0.9, 0.8, 0.7, 0.6, 0.5];
/// Shift in pixels along x and along y, each sign drawn at random: MNIST-C `translate`,
/// written for 28 px and scaled by `min(height, width) / 28` for other sizes.
const TRANSLATE_PIXELS: [f32; 5] = [1.0, 2.0, 3.0, 4.0, 5.0];
/// The side MNIST-C's pixel constants are written for.
const MNIST_C_SIDE: f32 = 28.0;
/// (alpha: displacement scale, sigma: smoothing of the displacement field, affine jitter of
/// three control points), each times `IMSIZE`: CIFAR-10-C `elastic_transform`, with
/// `IMSIZE = min(height, width)` (28 for the MNISTs, 32 for CIFAR-10 as in the reference).
/// MNIST-C's own list (`[(56, 19.6, 2.8), (56, 2.24, 5.6), ...]`) is not ordered by strength
/// and was dropped from its final suite, so CIFAR-10-C's relative one is used.
const ELASTIC_RELATIVE: [(f32, f32, f32); 5] = [
    (0.0, 0.0, 0.08),
    (0.05, 0.2, 0.07),
    (0.08, 0.06, 0.06),
    (0.1, 0.04, 0.05),
    (0.1, 0.03, 0.03),
];

/// Top bits of each example's stream number, so corruption streams cannot coincide with the
/// small named streams used elsewhere with the same seed (e.g. the validation split).
const CORRUPT_STREAM_TAG: u64 = 0xC << 60;

/// The position of `severity` in the constant tables; an error naming it if it is not
/// `1..=5`.
fn level(severity: u8) -> Result<usize> {
    if (1..=5).contains(&severity) {
        Ok(usize::from(severity - 1))
    } else {
        Err(Error::config(format!(
            "corruption severity {severity} is out of range (valid: 1 to 5)"
        )))
    }
}

/// One C×H×W image in `[0, 1]`, corrupted by `corruption` at `severity` (1 mildest, 5
/// strongest), drawing any randomness from `rng`. The result has the same shape and lies in
/// `[0, 1]`. Errors on a severity outside `1..=5`, a zero dimension, or an image whose length
/// is not `channels * height * width`.
pub fn corrupt(
    image: &[f32],
    channels: usize,
    height: usize,
    width: usize,
    corruption: Corruption,
    severity: u8,
    rng: &mut AdvRng,
) -> Result<Vec<f32>> {
    let s = level(severity)?;
    if channels == 0 || height == 0 || width == 0 {
        return Err(Error::config(format!(
            "cannot corrupt an image of shape {channels}x{height}x{width}: a dimension is zero"
        )));
    }
    if image.len() != channels * height * width {
        return Err(Error::config(format!(
            "image has {} values, not the {channels}x{height}x{width} = {} its shape needs",
            image.len(),
            channels * height * width
        )));
    }
    let shape = Shape {
        c: channels,
        h: height,
        w: width,
    };
    let mut out = match corruption {
        Corruption::GaussianNoise => {
            let std = GAUSSIAN_NOISE_STD[s];
            let noise = rng::normal_vec(rng, image.len());
            image.iter().zip(noise).map(|(x, n)| x + std * n).collect()
        }
        Corruption::ShotNoise => {
            let c = SHOT_NOISE_RATE[s];
            image
                .iter()
                .map(|&x| poisson(rng, f64::from(x.max(0.0) * c)) as f32 / c)
                .collect()
        }
        Corruption::ImpulseNoise => {
            let amount = IMPULSE_NOISE_AMOUNT[s];
            image
                .iter()
                .map(|&x| {
                    if rng.random::<f32>() < amount {
                        if rng.random_bool(0.5) {
                            1.0
                        } else {
                            0.0
                        }
                    } else {
                        x
                    }
                })
                .collect()
        }
        Corruption::GaussianBlur => {
            let kernel = gaussian_kernel(GAUSSIAN_BLUR_SIGMA[s], 4.0);
            per_plane(image, shape, |p| {
                separable(p, shape.h, shape.w, &kernel, Border::Nearest)
            })
        }
        Corruption::DefocusBlur => {
            let (radius, alias) = DEFOCUS_BLUR[s];
            let (kernel, side) = disk_kernel(radius, alias);
            per_plane(image, shape, |p| {
                correlate(p, shape.h, shape.w, &kernel, side, Border::Reflect101)
            })
        }
        Corruption::Contrast => {
            let c = CONTRAST_FACTOR[s];
            per_plane(image, shape, |p| {
                let mean = p.iter().sum::<f32>() / p.len() as f32;
                p.iter().map(|x| (x - mean) * c + mean).collect()
            })
        }
        Corruption::Brightness => brightness(image, shape, BRIGHTNESS_SHIFT[s]),
        Corruption::Jpeg => jpeg_round_trip(image, shape, JPEG_QUALITY[s])?,
        Corruption::Pixelate => {
            let c = PIXELATE_FACTOR[s];
            let (sh, sw) = (
                ((shape.h as f32 * c) as usize).max(1),
                ((shape.w as f32 * c) as usize).max(1),
            );
            per_plane(image, shape, |p| {
                let small = resize_box(p, shape.h, shape.w, sh, sw);
                resize_box(&small, sh, sw, shape.h, shape.w)
            })
        }
        Corruption::Rotate | Corruption::Shear | Corruption::Scale | Corruption::Translate => {
            let sign = [random_sign(rng), random_sign(rng)];
            let map = mnist_c_affine(corruption, s, sign, shape.h, shape.w);
            warp_affine(image, shape, &map, Border::Zero)
        }
        Corruption::Elastic => elastic(image, shape, ELASTIC_RELATIVE[s], rng),
    };
    for v in &mut out {
        *v = v.clamp(0.0, 1.0);
    }
    Ok(out)
}

/// Every image of `data` corrupted by `corruption` at `severity`, labels and classes kept.
///
/// Example `i` draws from `rng::derived(seed, stream)` with a stream number made of the
/// corruption, the severity and `i`, so the output is a pure function of
/// (seed, corruption, severity, data) and each image of it depends on its own index only:
/// the examples are corrupted in parallel (rayon) without changing the result.
pub fn corrupt_dataset(
    data: &Dataset,
    corruption: Corruption,
    severity: u8,
    seed: u64,
) -> Result<Dataset> {
    level(severity)?;
    let n = data.image_len();
    let (c, h, w) = (data.channels, data.height, data.width);
    let base = CORRUPT_STREAM_TAG | (corruption.index() << 52) | (u64::from(severity) << 48);
    let images = data
        .images
        .par_chunks(n)
        .enumerate()
        .map(|(i, image)| {
            let mut rng = rng::derived(seed, base | i as u64);
            corrupt(image, c, h, w, corruption, severity, &mut rng)
        })
        .collect::<Result<Vec<Vec<f32>>>>()?
        .concat();
    Ok(data.with_examples(images, data.labels.clone()))
}

/// One C×H×W image in `[0, 1]` rotated by `angle_deg` degrees about its centre and then
/// shifted by `(dx, dy)` pixels, sampled bilinearly with zeros outside the image: the
/// transform of the spatial attack (Engstrom et al. 2019). A positive angle turns the content
/// counter-clockwise as displayed (as `scipy.ndimage.rotate` and PIL do); a positive `dx`
/// moves it right and a positive `dy` down. An angle of 0 with integer shifts moves pixels
/// exactly (no interpolation error). Panics if `image.len() != channels * height * width`.
pub fn rotate_translate(
    image: &[f32],
    channels: usize,
    height: usize,
    width: usize,
    angle_deg: f32,
    dx: f32,
    dy: f32,
) -> Vec<f32> {
    assert_eq!(
        image.len(),
        channels * height * width,
        "image length does not match its {channels}x{height}x{width} shape"
    );
    let shape = Shape {
        c: channels,
        h: height,
        w: width,
    };
    let (sin, cos) = angle_deg.to_radians().sin_cos();
    // Output pixel p samples q = R(-θ)(p - centre - t) + centre, where R(θ) turns
    // counter-clockwise on screen (y points down): R(-θ) = [[cos, -sin], [sin, cos]].
    let linear = [[cos, -sin], [sin, cos]];
    let (cx, cy) = centre(height, width);
    let (px, py) = (cx + dx, cy + dy);
    let map = InverseAffine {
        m: [
            [
                linear[0][0],
                linear[0][1],
                cx - linear[0][0] * px - linear[0][1] * py,
            ],
            [
                linear[1][0],
                linear[1][1],
                cy - linear[1][0] * px - linear[1][1] * py,
            ],
        ],
    };
    let mut out = warp_affine(image, shape, &map, Border::Zero);
    for v in &mut out {
        *v = v.clamp(0.0, 1.0);
    }
    out
}

// ---------------------------------------------------------------------------------------
// Building blocks.
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
struct Shape {
    c: usize,
    h: usize,
    w: usize,
}

/// What a filter or a resampler reads outside the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Border {
    /// The nearest edge pixel (scipy/skimage `nearest`).
    Nearest,
    /// Mirrored including the edge pixel, `d c b a | a b c d` (scipy `reflect`).
    Reflect,
    /// Mirrored about the edge pixel, `d c b | a b c d` (OpenCV's default `BORDER_REFLECT_101`).
    Reflect101,
    /// Zero (black).
    Zero,
}

/// The in-image index that `i` reads under `border`; `None` for a zero.
fn border_index(i: isize, n: usize, border: Border) -> Option<usize> {
    let n_i = n as isize;
    if (0..n_i).contains(&i) {
        return Some(i as usize);
    }
    match border {
        Border::Zero => None,
        Border::Nearest => Some(i.clamp(0, n_i - 1) as usize),
        Border::Reflect => {
            let m = i.rem_euclid(2 * n_i);
            Some(if m < n_i { m } else { 2 * n_i - 1 - m } as usize)
        }
        Border::Reflect101 => {
            if n == 1 {
                return Some(0);
            }
            let period = 2 * n_i - 2;
            let m = i.rem_euclid(period);
            Some(if m < n_i { m } else { period - m } as usize)
        }
    }
}

/// The image centre in pixel coordinates, `((W - 1) / 2, (H - 1) / 2)`: 13.5 for 28 px, the
/// point MNIST-C keeps fixed.
fn centre(height: usize, width: usize) -> (f32, f32) {
    ((width as f32 - 1.0) / 2.0, (height as f32 - 1.0) / 2.0)
}

/// `f` applied to each H×W channel plane, the results concatenated.
fn per_plane(image: &[f32], shape: Shape, f: impl Fn(&[f32]) -> Vec<f32>) -> Vec<f32> {
    image.chunks_exact(shape.h * shape.w).flat_map(f).collect()
}

fn random_sign(rng: &mut AdvRng) -> f32 {
    if rng.random_bool(0.5) {
        1.0
    } else {
        -1.0
    }
}

/// A Poisson sample: Knuth's product of uniforms for small means, Hörmann's transformed
/// rejection (PTRS, the algorithm numpy's `poisson` uses) from a mean of 10 up, so a mean of
/// 500 costs a handful of draws.
fn poisson(rng: &mut AdvRng, lambda: f64) -> u64 {
    if lambda <= 0.0 {
        return 0;
    }
    if lambda < 10.0 {
        let limit = (-lambda).exp();
        let mut k = 0;
        let mut p: f64 = rng.random();
        while p > limit {
            k += 1;
            p *= rng.random::<f64>();
        }
        return k;
    }
    let slam = lambda.sqrt();
    let loglam = lambda.ln();
    let b = 0.931 + 2.53 * slam;
    let a = -0.059 + 0.02483 * b;
    let inv_alpha = 1.1239 + 1.1328 / (b - 3.4);
    let vr = 0.9277 - 3.6224 / (b - 2.0);
    loop {
        let u = rng.random::<f64>() - 0.5;
        let v: f64 = rng.random();
        let us = 0.5 - u.abs();
        let k = ((2.0 * a / us + b) * u + lambda + 0.43).floor();
        if us >= 0.07 && v <= vr {
            return k as u64;
        }
        if k < 0.0 || (us < 0.013 && v > us) {
            continue;
        }
        if v.ln() + inv_alpha.ln() - (a / (us * us) + b).ln()
            <= -lambda + k * loglam - ln_factorial(k)
        {
            return k as u64;
        }
    }
}

/// `ln(k!)`: exact sums below 20, Stirling's series (error below 1e-12) above.
fn ln_factorial(k: f64) -> f64 {
    if k < 20.0 {
        return (2..=k as u64).map(|i| (i as f64).ln()).sum();
    }
    let n = k;
    n * n.ln() - n + 0.5 * (2.0 * std::f64::consts::PI * n).ln() + 1.0 / (12.0 * n)
        - 1.0 / (360.0 * n.powi(3))
        + 1.0 / (1260.0 * n.powi(5))
}

/// A normalised 1-D Gaussian of standard deviation `sigma`, `int(truncate * sigma + 0.5)`
/// taps each side (scipy's `gaussian_filter`); `[1]` for `sigma <= 0` (no blur).
fn gaussian_kernel(sigma: f32, truncate: f32) -> Vec<f32> {
    if sigma <= 0.0 {
        return vec![1.0];
    }
    let radius = (truncate * sigma + 0.5) as isize;
    let weights: Vec<f32> = (-radius..=radius)
        .map(|i| (-0.5 * (i as f32 / sigma).powi(2)).exp())
        .collect();
    let total: f32 = weights.iter().sum();
    weights.iter().map(|w| w / total).collect()
}

/// One H×W plane filtered by the symmetric 1-D `kernel` along rows, then along columns.
fn separable(plane: &[f32], h: usize, w: usize, kernel: &[f32], border: Border) -> Vec<f32> {
    let r = (kernel.len() / 2) as isize;
    let mut rows = vec![0.0; h * w];
    for y in 0..h {
        let line = &plane[y * w..(y + 1) * w];
        for x in 0..w {
            rows[y * w + x] = kernel
                .iter()
                .enumerate()
                .filter_map(|(k, wk)| {
                    border_index(x as isize + k as isize - r, w, border).map(|i| wk * line[i])
                })
                .sum();
        }
    }
    let mut out = vec![0.0; h * w];
    for y in 0..h {
        for x in 0..w {
            out[y * w + x] = kernel
                .iter()
                .enumerate()
                .filter_map(|(k, wk)| {
                    border_index(y as isize + k as isize - r, h, border)
                        .map(|i| wk * rows[i * w + x])
                })
                .sum();
        }
    }
    out
}

/// One H×W plane correlated with a `side`×`side` kernel centred on each pixel (OpenCV's
/// `filter2D`).
fn correlate(
    plane: &[f32],
    h: usize,
    w: usize,
    kernel: &[f32],
    side: usize,
    border: Border,
) -> Vec<f32> {
    let r = (side / 2) as isize;
    let mut out = vec![0.0; h * w];
    for y in 0..h {
        for x in 0..w {
            let mut acc = 0.0;
            for ky in 0..side {
                let Some(iy) = border_index(y as isize + ky as isize - r, h, border) else {
                    continue;
                };
                for kx in 0..side {
                    if let Some(ix) = border_index(x as isize + kx as isize - r, w, border) {
                        acc += kernel[ky * side + kx] * plane[iy * w + ix];
                    }
                }
            }
            out[y * w + x] = acc;
        }
    }
    out
}

/// CIFAR-10-C's `disk(radius, alias_blur)`: the pixels of a 17×17 grid within `radius` of its
/// centre, normalised, then smoothed by a 3×3 Gaussian of sigma `alias_blur`
/// (`cv2.GaussianBlur`, reflect-101 borders). Returned trimmed to its non-zero square (5×5 at
/// most for the severities here) with its side, which keeps the filter cheap.
fn disk_kernel(radius: f32, alias_blur: f32) -> (Vec<f32>, usize) {
    const HALF: isize = 8;
    const SIDE: usize = 2 * HALF as usize + 1;
    let mut disk: Vec<f32> = (0..SIDE * SIDE)
        .map(|i| {
            let (y, x) = ((i / SIDE) as isize - HALF, (i % SIDE) as isize - HALF);
            f32::from(u8::from(((x * x + y * y) as f32) <= radius * radius))
        })
        .collect();
    let total: f32 = disk.iter().sum();
    for v in &mut disk {
        *v /= total;
    }
    let e = (-1.0 / (2.0 * alias_blur * alias_blur)).exp();
    let g = [
        e / (1.0 + 2.0 * e),
        1.0 / (1.0 + 2.0 * e),
        e / (1.0 + 2.0 * e),
    ];
    let blurred = separable(&disk, SIDE, SIDE, &g, Border::Reflect101);
    // The smallest centred square holding every non-zero weight.
    let half = (0..SIDE * SIDE)
        .filter(|&i| blurred[i] != 0.0)
        .map(|i| {
            let (y, x) = ((i / SIDE) as isize - HALF, (i % SIDE) as isize - HALF);
            y.abs().max(x.abs())
        })
        .max()
        .unwrap_or(0);
    let side = 2 * half as usize + 1;
    let lo = (HALF - half) as usize;
    let kernel = (0..side * side)
        .map(|i| blurred[(lo + i / side) * SIDE + lo + i % side])
        .collect();
    (kernel, side)
}

/// Brightness: the HSV value raised by `shift` (clipped at 1) with hue and saturation kept,
/// as CIFAR-10-C does through skimage; for a colour pixel that scales its RGB by
/// `V' / V` (a black one becomes grey `V'`). Images with other than 3 channels are treated as
/// grey (MNIST-C's grey → RGB → HSV → grey), where it is `x + shift`.
fn brightness(image: &[f32], shape: Shape, shift: f32) -> Vec<f32> {
    if shape.c != 3 {
        return image.iter().map(|x| x + shift).collect();
    }
    let plane = shape.h * shape.w;
    let mut out = image.to_vec();
    for i in 0..plane {
        let rgb = [image[i], image[plane + i], image[2 * plane + i]];
        let v = rgb[0].max(rgb[1]).max(rgb[2]);
        let v_new = (v + shift).min(1.0);
        for (ch, value) in rgb.iter().enumerate() {
            out[ch * plane + i] = if v > 0.0 { value * v_new / v } else { v_new };
        }
    }
    out
}

/// The image quantised to 8 bits (the references work on 8-bit images), JPEG-encoded at
/// `quality` and decoded: grey for one channel, RGB for three, each channel as its own grey
/// image otherwise.
fn jpeg_round_trip(image: &[f32], shape: Shape, quality: u8) -> Result<Vec<f32>> {
    let plane = shape.h * shape.w;
    let to_u8 = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    if shape.c == 3 {
        let mut hwc = Vec::with_capacity(3 * plane);
        for i in 0..plane {
            for ch in 0..3 {
                hwc.push(to_u8(image[ch * plane + i]));
            }
        }
        let decoded = jpeg_bytes(&hwc, shape, image::ExtendedColorType::Rgb8, quality)?;
        let rgb = decoded.to_rgb8().into_raw();
        let mut out = vec![0.0; 3 * plane];
        for i in 0..plane {
            for ch in 0..3 {
                out[ch * plane + i] = f32::from(rgb[3 * i + ch]) / 255.0;
            }
        }
        return Ok(out);
    }
    let mut out = Vec::with_capacity(image.len());
    for p in image.chunks_exact(plane) {
        let grey: Vec<u8> = p.iter().map(|&v| to_u8(v)).collect();
        let decoded = jpeg_bytes(&grey, shape, image::ExtendedColorType::L8, quality)?;
        out.extend(
            decoded
                .to_luma8()
                .into_raw()
                .into_iter()
                .map(|b| f32::from(b) / 255.0),
        );
    }
    Ok(out)
}

/// Encode `pixels` (interleaved, `colour` layout) as a JPEG at `quality` and decode it.
fn jpeg_bytes(
    pixels: &[u8],
    shape: Shape,
    colour: image::ExtendedColorType,
    quality: u8,
) -> Result<image::DynamicImage> {
    let failed = |e: image::ImageError| {
        Error::config(format!(
            "a {}x{} image cannot be JPEG-compressed: {e}",
            shape.h, shape.w
        ))
    };
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality)
        .encode(pixels, shape.w as u32, shape.h as u32, colour)
        .map_err(failed)?;
    image::load(Cursor::new(bytes), image::ImageFormat::Jpeg).map_err(failed)
}

/// PIL's `BOX` resampling weights from `n_in` to `n_out` samples: output `i` averages the
/// inputs whose centres fall in its footprint `[i * s, (i + 1) * s)` (`s = n_in / n_out`),
/// or the one input under its centre when enlarging. The `image` crate has no box filter, and
/// its `Triangle` would blur where the reference makes blocks.
fn box_weights(n_in: usize, n_out: usize) -> Vec<Vec<(usize, f32)>> {
    let scale = n_in as f64 / n_out as f64;
    let filter_scale = scale.max(1.0);
    let support = 0.5 * filter_scale;
    (0..n_out)
        .map(|i| {
            let centre = (i as f64 + 0.5) * scale;
            let lo = ((centre - support + 0.5) as isize).max(0) as usize;
            let hi = ((centre + support + 0.5) as usize).min(n_in);
            let taps: Vec<usize> = (lo..hi)
                .filter(|&x| {
                    let t = (x as f64 - centre + 0.5) / filter_scale;
                    t > -0.5 && t <= 0.5
                })
                .collect();
            let weight = 1.0 / taps.len().max(1) as f32;
            taps.into_iter().map(|x| (x, weight)).collect()
        })
        .collect()
}

/// One H×W plane resized to `out_h`×`out_w` with [`box_weights`], rows then columns.
fn resize_box(plane: &[f32], h: usize, w: usize, out_h: usize, out_w: usize) -> Vec<f32> {
    let wx = box_weights(w, out_w);
    let wy = box_weights(h, out_h);
    let mut rows = vec![0.0; h * out_w];
    for y in 0..h {
        for (x, taps) in wx.iter().enumerate() {
            rows[y * out_w + x] = taps.iter().map(|&(i, k)| k * plane[y * w + i]).sum();
        }
    }
    let mut out = vec![0.0; out_h * out_w];
    for (y, taps) in wy.iter().enumerate() {
        for x in 0..out_w {
            out[y * out_w + x] = taps.iter().map(|&(i, k)| k * rows[i * out_w + x]).sum();
        }
    }
    out
}

/// An affine map from output pixel coordinates `(x, y)` (x to the right, y down) to the
/// input coordinates sampled there, `(m[0]·(x, y, 1), m[1]·(x, y, 1))`: the `inverse_map` of
/// skimage's `warp`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct InverseAffine {
    m: [[f32; 3]; 2],
}

impl InverseAffine {
    /// The map with linear part `linear` that keeps the image centre fixed, as MNIST-C builds
    /// it (`translation = 13.5 * (1 - a1 - a2)`, ...).
    fn about_centre(linear: [[f32; 2]; 2], h: usize, w: usize) -> Self {
        let (cx, cy) = centre(h, w);
        Self {
            m: [
                [
                    linear[0][0],
                    linear[0][1],
                    cx - linear[0][0] * cx - linear[0][1] * cy,
                ],
                [
                    linear[1][0],
                    linear[1][1],
                    cy - linear[1][0] * cx - linear[1][1] * cy,
                ],
            ],
        }
    }

    fn apply(&self, x: f32, y: f32) -> (f32, f32) {
        let m = &self.m;
        (
            m[0][0] * x + m[0][1] * y + m[0][2],
            m[1][0] * x + m[1][1] * y + m[1][2],
        )
    }
}

/// The inverse map of an MNIST-C affine corruption at level `s` (0-based) with the given
/// random signs (`sign[0]` for the rotation and shear direction and the x shift, `sign[1]` for
/// the y shift).
fn mnist_c_affine(
    corruption: Corruption,
    s: usize,
    sign: [f32; 2],
    h: usize,
    w: usize,
) -> InverseAffine {
    match corruption {
        Corruption::Rotate => {
            let (sin, cos) = (sign[0] * ROTATE_RADIANS[s]).sin_cos();
            InverseAffine::about_centre([[cos, -sin], [sin, cos]], h, w)
        }
        Corruption::Shear => {
            let (sin, cos) = (sign[0] * SHEAR_RADIANS[s]).sin_cos();
            InverseAffine::about_centre([[1.0, -sin], [0.0, cos]], h, w)
        }
        Corruption::Scale => {
            let k = 1.0 / SCALE_FACTOR[s];
            InverseAffine::about_centre([[k, 0.0], [0.0, k]], h, w)
        }
        Corruption::Translate => {
            let d = TRANSLATE_PIXELS[s] * h.min(w) as f32 / MNIST_C_SIDE;
            InverseAffine {
                m: [[1.0, 0.0, sign[0] * d], [0.0, 1.0, sign[1] * d]],
            }
        }
        other => unreachable!("{other} is not an MNIST-C affine corruption"),
    }
}

/// Bilinear sample of one H×W plane at `(x, y)`, reading outside the image per `border`.
fn bilinear(plane: &[f32], h: usize, w: usize, x: f32, y: f32, border: Border) -> f32 {
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let (x0, y0) = (x0 as isize, y0 as isize);
    let at = |xi: isize, yi: isize| match (border_index(xi, w, border), border_index(yi, h, border))
    {
        (Some(i), Some(j)) => plane[j * w + i],
        _ => 0.0,
    };
    let top = at(x0, y0) * (1.0 - fx) + at(x0 + 1, y0) * fx;
    let bottom = at(x0, y0 + 1) * (1.0 - fx) + at(x0 + 1, y0 + 1) * fx;
    top * (1.0 - fy) + bottom * fy
}

/// Every channel of `image` resampled through `map`, bilinearly.
fn warp_affine(image: &[f32], shape: Shape, map: &InverseAffine, border: Border) -> Vec<f32> {
    let (h, w) = (shape.h, shape.w);
    per_plane(image, shape, |p| {
        let mut out = Vec::with_capacity(h * w);
        for y in 0..h {
            for x in 0..w {
                let (sx, sy) = map.apply(x as f32, y as f32);
                out.push(bilinear(p, h, w, sx, sy, border));
            }
        }
        out
    })
}

/// The affine map sending the three points `from` to `to` (OpenCV's `getAffineTransform`),
/// `None` if `from` is degenerate.
fn affine_from_points(from: [[f32; 2]; 3], to: [[f32; 2]; 3]) -> Option<InverseAffine> {
    // Solve [x y 1] · (a, b, c) = x' (and likewise for y') by Cramer's rule.
    let det3 = |m: [[f32; 3]; 3]| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let a = [
        [from[0][0], from[0][1], 1.0],
        [from[1][0], from[1][1], 1.0],
        [from[2][0], from[2][1], 1.0],
    ];
    let d = det3(a);
    if d.abs() < 1e-9 {
        return None;
    }
    let mut m = [[0.0; 3]; 2];
    for (row, m_row) in m.iter_mut().enumerate() {
        for (col, entry) in m_row.iter_mut().enumerate() {
            let mut a_col = a;
            for k in 0..3 {
                a_col[k][col] = to[k][row];
            }
            *entry = det3(a_col) / d;
        }
    }
    Some(InverseAffine { m })
}

/// The inverse of an affine map, `None` if it is singular.
fn invert(map: &InverseAffine) -> Option<InverseAffine> {
    let m = &map.m;
    let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
    if det.abs() < 1e-9 {
        return None;
    }
    let (a, b, c, d) = (m[1][1] / det, -m[0][1] / det, -m[1][0] / det, m[0][0] / det);
    Some(InverseAffine {
        m: [
            [a, b, -(a * m[0][2] + b * m[1][2])],
            [c, d, -(c * m[0][2] + d * m[1][2])],
        ],
    })
}

/// CIFAR-10-C's `elastic_transform` with its constants times `IMSIZE = min(h, w)`: three
/// control points around the centre are jittered by up to `jitter` pixels and the image is
/// warped by the affine map that moves them there (reflect-101 borders, as `cv2.warpAffine`
/// is called), then displaced by two uniform random fields smoothed by a Gaussian of `sigma`
/// (truncated at 3 sigma, reflect borders) and scaled by `alpha`, sampled bilinearly with
/// reflect borders (`map_coordinates(order=1, mode='reflect')`).
fn elastic(image: &[f32], shape: Shape, relative: (f32, f32, f32), rng: &mut AdvRng) -> Vec<f32> {
    let (h, w) = (shape.h, shape.w);
    let size = h.min(w) as f32;
    let (alpha, sigma, jitter) = (relative.0 * size, relative.1 * size, relative.2 * size);
    // The reference's `center_square = float32(shape) // 2` and `square_size = min // 3`,
    // as (x, y) points for OpenCV.
    let (cx, cy) = ((w / 2) as f32, (h / 2) as f32);
    let half = (h.min(w) / 3) as f32;
    let from = [
        [cx + half, cy + half],
        [cx + half, cy - half],
        [cx - half, cy - half],
    ];
    let mut to = from;
    for point in &mut to {
        for v in point.iter_mut() {
            *v += rng.random_range(-jitter..=jitter);
        }
    }
    let affine = affine_from_points(from, to)
        .and_then(|forward| invert(&forward))
        .unwrap_or(InverseAffine {
            m: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
        });
    let warped = warp_affine(image, shape, &affine, Border::Reflect101);
    let kernel = gaussian_kernel(sigma, 3.0);
    let mut field = || {
        let noise = rng::uniform_vec(rng, h * w, -1.0, 1.0);
        let smooth = separable(&noise, h, w, &kernel, Border::Reflect);
        smooth.into_iter().map(|v| v * alpha).collect::<Vec<f32>>()
    };
    let (dx, dy) = (field(), field());
    per_plane(&warped, shape, |p| {
        (0..h * w)
            .map(|i| {
                let (y, x) = ((i / w) as f32, (i % w) as f32);
                bilinear(p, h, w, x + dx[i], y + dy[i], Border::Reflect)
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A deterministic textured C×H×W image in `[0, 1]` (a smooth blob plus fine texture).
    fn texture(c: usize, h: usize, w: usize, seed: u64) -> Vec<f32> {
        let mut r = rng::seeded(seed);
        (0..c * h * w)
            .map(|i| {
                let (y, x) = (((i / w) % h) as f32, (i % w) as f32);
                let blob = (-((x - w as f32 / 2.0).powi(2) + (y - h as f32 / 2.0).powi(2))
                    / (h as f32 * 2.0))
                    .exp();
                (0.6 * blob + 0.4 * r.random::<f32>()).clamp(0.0, 1.0)
            })
            .collect()
    }

    fn run(image: &[f32], c: usize, h: usize, w: usize, k: Corruption, s: u8) -> Vec<f32> {
        corrupt(image, c, h, w, k, s, &mut rng::seeded(u64::from(s) + 100)).unwrap()
    }

    fn mean(v: &[f32]) -> f64 {
        v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64
    }

    fn variance(v: &[f32]) -> f64 {
        let m = mean(v);
        v.iter().map(|&x| (f64::from(x) - m).powi(2)).sum::<f64>() / v.len() as f64
    }

    /// Sum of squared differences between horizontal and vertical neighbours: what a blur
    /// removes.
    fn high_frequency_energy(v: &[f32], h: usize, w: usize) -> f64 {
        let mut e = 0.0;
        for plane in v.chunks_exact(h * w) {
            for y in 0..h {
                for x in 0..w {
                    let p = f64::from(plane[y * w + x]);
                    if x + 1 < w {
                        e += (p - f64::from(plane[y * w + x + 1])).powi(2);
                    }
                    if y + 1 < h {
                        e += (p - f64::from(plane[(y + 1) * w + x])).powi(2);
                    }
                }
            }
        }
        e
    }

    fn by_severity(f: impl Fn(u8) -> f64) -> Vec<f64> {
        (1..=5).map(f).collect()
    }

    fn assert_increasing(what: &str, v: &[f64]) {
        assert!(
            v.windows(2).all(|p| p[0] < p[1]),
            "{what} should grow with severity: {v:?}"
        );
    }

    fn tiny_dataset(n: usize) -> Dataset {
        let images: Vec<f32> = (0..n).flat_map(|i| texture(1, 12, 12, i as u64)).collect();
        let labels = (0..n).map(|i| (i % 3) as u8).collect();
        Dataset::new(images, labels, 1, 12, 12, 3, Vec::new()).unwrap()
    }

    #[test]
    fn a_dataset_is_corrupted_the_same_way_for_a_seed_and_per_example() {
        let data = tiny_dataset(6);
        for k in Corruption::ALL {
            let a = corrupt_dataset(&data, k, 3, 7).unwrap();
            let b = corrupt_dataset(&data, k, 3, 7).unwrap();
            assert_eq!(a.images, b.images, "{k} is not deterministic");
            assert_eq!(a.labels, data.labels);
            // Example i depends on its index only: the first two of a subset agree.
            let first = corrupt_dataset(&data.take(2), k, 3, 7).unwrap();
            assert_eq!(first.images, a.images[..2 * data.image_len()], "{k}");
        }
        let a = corrupt_dataset(&data, Corruption::GaussianNoise, 3, 7).unwrap();
        let c = corrupt_dataset(&data, Corruption::GaussianNoise, 3, 8).unwrap();
        assert_ne!(a.images, c.images, "another seed gives other noise");
        let d = corrupt_dataset(&data, Corruption::GaussianNoise, 4, 7).unwrap();
        assert_ne!(a.images, d.images, "another severity draws another stream");
    }

    #[test]
    fn noise_variance_grows_with_severity() {
        let (c, h, w) = (3, 64, 64);
        let grey = vec![0.5; c * h * w];
        for k in [
            Corruption::GaussianNoise,
            Corruption::ShotNoise,
            Corruption::ImpulseNoise,
        ] {
            let v = by_severity(|s| {
                let out = run(&grey, c, h, w, k, s);
                let diff: Vec<f32> = out.iter().zip(&grey).map(|(a, b)| a - b).collect();
                variance(&diff)
            });
            assert_increasing(&format!("{k} noise variance"), &v);
        }
        // The gaussian noise has the reference's standard deviation (no clipping at 0.5).
        let out = run(&grey, c, h, w, Corruption::GaussianNoise, 5);
        let diff: Vec<f32> = out.iter().zip(&grey).map(|(a, b)| a - b).collect();
        assert!((variance(&diff).sqrt() - 0.10).abs() < 0.003);
    }

    #[test]
    fn blurs_remove_more_high_frequency_energy_with_severity() {
        let (c, h, w) = (1, 28, 28);
        let img = texture(c, h, w, 3);
        let clean = high_frequency_energy(&img, h, w);
        for k in [
            Corruption::GaussianBlur,
            Corruption::DefocusBlur,
            Corruption::Pixelate,
        ] {
            let e = by_severity(|s| -high_frequency_energy(&run(&img, c, h, w, k, s), h, w));
            assert_increasing(&format!("{k}: lost high-frequency energy"), &e);
            assert!(-e[0] < clean, "{k} at severity 1 already blurs");
        }
    }

    #[test]
    fn jpeg_error_grows_as_quality_falls() {
        let (c, h, w) = (3, 32, 32);
        let img = texture(c, h, w, 4);
        let e = by_severity(|s| {
            let out = run(&img, c, h, w, Corruption::Jpeg, s);
            out.iter()
                .zip(&img)
                .map(|(a, b)| f64::from(a - b).powi(2))
                .sum()
        });
        assert_increasing("JPEG squared error", &e);
    }

    #[test]
    fn disk_kernels_sum_to_one_and_widen_with_severity() {
        let sides: Vec<usize> = DEFOCUS_BLUR
            .iter()
            .map(|&(r, a)| {
                let (k, side) = disk_kernel(r, a);
                assert!((k.iter().sum::<f32>() - 1.0).abs() < 1e-5);
                side
            })
            .collect();
        assert_eq!(sides, [3, 3, 3, 5, 5]);
    }

    #[test]
    fn contrast_shrinks_the_spread_and_brightness_raises_the_mean() {
        for c in [1, 3] {
            let (h, w) = (28, 28);
            let img = texture(c, h, w, 5);
            let std = by_severity(|s| -variance(&run(&img, c, h, w, Corruption::Contrast, s)));
            assert_increasing("contrast: lost spread", &std);
            let m = by_severity(|s| mean(&run(&img, c, h, w, Corruption::Brightness, s)));
            assert_increasing("brightness: mean", &m);
        }
        // A grey pixel gains exactly the shift (MNIST-C's grey route).
        let out = run(&[0.2], 1, 1, 1, Corruption::Brightness, 5);
        assert!((out[0] - 0.5).abs() < 1e-6);
        // A colour pixel keeps its hue: RGB scales by V'/V.
        let out = run(&[0.4, 0.2, 0.0], 3, 1, 1, Corruption::Brightness, 5);
        assert!((out[0] - 0.7).abs() < 1e-6 && (out[1] - 0.35).abs() < 1e-6);
    }

    /// Mean distance between an output pixel and the input point it samples.
    fn mean_displacement(map: &InverseAffine, h: usize, w: usize) -> f64 {
        let mut total = 0.0;
        for y in 0..h {
            for x in 0..w {
                let (sx, sy) = map.apply(x as f32, y as f32);
                total += f64::from((sx - x as f32).hypot(sy - y as f32));
            }
        }
        total / (h * w) as f64
    }

    #[test]
    fn affine_displacement_grows_with_severity() {
        for k in [
            Corruption::Rotate,
            Corruption::Shear,
            Corruption::Scale,
            Corruption::Translate,
        ] {
            for sign in [[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0]] {
                let d = by_severity(|s| {
                    mean_displacement(&mnist_c_affine(k, usize::from(s - 1), sign, 28, 28), 28, 28)
                });
                assert_increasing(&format!("{k} displacement"), &d);
            }
        }
        // Translation moves the content by whole pixels at 28 px: a dot moves 5 px at level 5.
        let mut dot = vec![0.0; 28 * 28];
        dot[14 * 28 + 14] = 1.0;
        let out = run(&dot, 1, 28, 28, Corruption::Translate, 5);
        let at = out.iter().position(|&v| v == 1.0).unwrap();
        let (y, x) = (at / 28, at % 28);
        assert_eq!((y.abs_diff(14), x.abs_diff(14)), (5, 5));
        assert_eq!(out.iter().sum::<f32>(), 1.0);
    }

    #[test]
    fn rotation_keeps_the_centre_fixed_and_elastic_changes_every_level() {
        let img = texture(1, 28, 28, 6);
        for s in 1..=5 {
            let out = run(&img, 1, 28, 28, Corruption::Elastic, s);
            assert_ne!(out, img, "elastic level {s} changes the image");
        }
        let map = mnist_c_affine(Corruption::Rotate, 4, [1.0, 1.0], 28, 28);
        let (x, y) = map.apply(13.5, 13.5);
        assert!((x - 13.5).abs() < 1e-5 && (y - 13.5).abs() < 1e-5);
    }

    #[test]
    fn no_rotation_and_no_shift_is_the_identity_and_shifts_are_exact() {
        let img = texture(3, 9, 11, 7);
        assert_eq!(rotate_translate(&img, 3, 9, 11, 0.0, 0.0, 0.0), img);
        let shifted = rotate_translate(&img, 3, 9, 11, 0.0, 2.0, -1.0);
        for ch in 0..3 {
            for y in 0..9 {
                for x in 0..11 {
                    let expected = if x >= 2 && y + 1 < 9 {
                        img[ch * 99 + (y + 1) * 11 + (x - 2)]
                    } else {
                        0.0
                    };
                    assert_eq!(shifted[ch * 99 + y * 11 + x], expected, "({ch}, {y}, {x})");
                }
            }
        }
        // 90° counter-clockwise on screen: the pixel right of the centre goes above it.
        let mut dot = vec![0.0; 25];
        dot[2 * 5 + 4] = 1.0;
        let turned = rotate_translate(&dot, 1, 5, 5, 90.0, 0.0, 0.0);
        assert!((turned[2] - 1.0).abs() < 1e-5, "{turned:?}");
    }

    #[test]
    fn poisson_samples_have_the_right_mean_and_variance() {
        let mut r = rng::seeded(9);
        for lambda in [0.5, 3.0, 25.0, 500.0] {
            let xs: Vec<f32> = (0..20_000)
                .map(|_| poisson(&mut r, lambda) as f32)
                .collect();
            let (m, v) = (mean(&xs), variance(&xs));
            assert!(
                (m - lambda).abs() < 0.05 * lambda + 0.02,
                "mean {m} for {lambda}"
            );
            assert!(
                (v - lambda).abs() < 0.08 * lambda + 0.05,
                "variance {v} for {lambda}"
            );
        }
        assert!(
            (ln_factorial(25.0) - (1..=25).map(|i| f64::from(i).ln()).sum::<f64>()).abs() < 1e-9
        );
    }

    #[test]
    fn severities_outside_1_to_5_are_errors_naming_them() {
        let img = vec![0.5; 4];
        for s in [0, 6] {
            let err = corrupt(&img, 1, 2, 2, Corruption::Contrast, s, &mut rng::seeded(0))
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("severity {s}")), "{err}");
            let data = tiny_dataset(1);
            assert!(corrupt_dataset(&data, Corruption::Jpeg, s, 0).is_err());
        }
        let err = corrupt(&img, 1, 3, 2, Corruption::Contrast, 1, &mut rng::seeded(0));
        assert!(err.unwrap_err().to_string().contains("1x3x2"));
    }

    #[test]
    fn names_round_trip_and_unknown_ones_list_the_valid() {
        for k in Corruption::ALL {
            assert_eq!(k.name().parse::<Corruption>().unwrap(), k);
            assert_eq!(
                k.name()
                    .replace('-', "_")
                    .to_uppercase()
                    .parse::<Corruption>()
                    .unwrap(),
                k
            );
        }
        assert_eq!(
            "jpeg_compression".parse::<Corruption>().unwrap(),
            Corruption::Jpeg
        );
        assert_eq!(
            "elastic_transform".parse::<Corruption>().unwrap(),
            Corruption::Elastic
        );
        let err = "fog".parse::<Corruption>().unwrap_err().to_string();
        assert!(
            err.contains("'fog'") && err.contains("gaussian-noise"),
            "{err}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn every_corruption_keeps_the_shape_and_the_unit_interval(
            three in any::<bool>(),
            h in 1usize..10,
            w in 1usize..10,
            seed in any::<u64>(),
        ) {
            let c = if three { 3 } else { 1 };
            let mut r = rng::seeded(seed);
            let img: Vec<f32> = (0..c * h * w).map(|_| r.random::<f32>()).collect();
            for k in Corruption::ALL {
                for s in 1..=5 {
                    let out = corrupt(&img, c, h, w, k, s, &mut r).unwrap();
                    prop_assert_eq!(out.len(), img.len());
                    prop_assert!(out.iter().all(|v| (0.0..=1.0).contains(v)), "{} {}", k, s);
                }
            }
        }
    }

    /// The audit's cost: every corruption at severity 5 on the 10,000 Fashion-MNIST test
    /// images. Run with `cargo test --lib corrupt_dataset_timing -- --ignored --nocapture`.
    #[test]
    #[ignore = "timing on the installed Fashion-MNIST; slow in debug builds"]
    fn corrupt_dataset_timing_on_fashion_mnist() {
        let dir = std::path::Path::new("/usr/share/datasets/fashion-mnist");
        let data = crate::data::load(
            crate::data::DatasetName::FashionMnist,
            dir,
            crate::data::Split::Test,
        )
        .unwrap();
        let mut total = 0.0;
        for k in Corruption::ALL {
            let start = std::time::Instant::now();
            let out = corrupt_dataset(&data, k, 5, 0).unwrap();
            let secs = start.elapsed().as_secs_f64();
            total += secs;
            assert_eq!(out.len(), data.len());
            println!("{:<16} {:>7.3} s for {} images", k.name(), secs, data.len());
        }
        println!(
            "all 14 at severity 5: {total:.2} s (x5 severities: ~{:.1} s)",
            5.0 * total
        );
    }
}
