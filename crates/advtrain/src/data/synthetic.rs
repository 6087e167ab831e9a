//! Small generated data sets for tests and examples, learnable in seconds on a CPU.

use rand::Rng as _;

use super::Dataset;
use crate::rng::{self};

/// A two-class data set that separates standard from adversarial training, after
/// Tsipras et al. (2019, "Robustness may be at odds with accuracy").
///
/// Images are 1×8×8. The top two rows (16 pixels) carry a *robust* feature: ±0.35 around
/// mid-grey, agreeing with the label 90% of the time. The other 48 pixels carry
/// *non-robust* features: ±0.08 around mid-grey with noise σ = 0.1, individually weak but
/// together almost perfectly predictive. A standard model leans on the non-robust pixels
/// (near 100% clean accuracy) and an L∞ attack with ε ≥ 0.1 flips them all; an
/// adversarially trained model must use the robust rows and keeps about 90% under attack.
pub fn robust_vs_nonrobust(n: usize, seed: u64) -> Dataset {
    let mut rng = rng::seeded(seed);
    let (h, w) = (8, 8);
    let mut images = Vec::with_capacity(n * h * w);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let y: u8 = rng.random_range(0..2);
        let s = if y == 1 { 1.0f32 } else { -1.0 };
        let s_robust = if rng.random::<f32>() < 0.9 { s } else { -s };
        let noise = rng::normal_vec(&mut rng, h * w);
        for (p, z) in noise.into_iter().enumerate() {
            let v = if p < 16 {
                0.5 + 0.35 * s_robust + 0.05 * z
            } else {
                0.5 + 0.08 * s + 0.1 * z
            };
            images.push(v.clamp(0.0, 1.0));
        }
        labels.push(y);
    }
    Dataset::new(
        images,
        labels,
        1,
        h,
        w,
        2,
        vec!["minus".into(), "plus".into()],
    )
    .expect("generated data is valid")
}

/// `classes` classes of `channels×size×size` images: each class a fixed random template,
/// each example its template plus Gaussian noise (σ = `noise`), clipped to [0, 1]. Easy to
/// learn, and an undefended model trained on it is easy to attack.
pub fn templates(
    n: usize,
    classes: usize,
    channels: usize,
    size: usize,
    noise: f32,
    seed: u64,
) -> Dataset {
    let mut rng = rng::seeded(seed);
    let len = channels * size * size;
    let templates: Vec<Vec<f32>> = (0..classes)
        .map(|_| rng::uniform_vec(&mut rng, len, 0.1, 0.9))
        .collect();
    let mut images = Vec::with_capacity(n * len);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let y = rng.random_range(0..classes);
        let z = rng::normal_vec(&mut rng, len);
        images.extend(
            templates[y]
                .iter()
                .zip(z)
                .map(|(t, z)| (t + noise * z).clamp(0.0, 1.0)),
        );
        labels.push(y as u8);
    }
    let names = (0..classes).map(|c| format!("class{c}")).collect();
    Dataset::new(images, labels, channels, size, size, classes, names)
        .expect("generated data is valid")
}
