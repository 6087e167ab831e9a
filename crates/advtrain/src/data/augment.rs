//! Host-side data augmentation: random crop after zero padding, and horizontal flips.
//!
//! Both operations only move pixels or insert zeros, so an augmented image stays in `[0, 1]`
//! and attacks on it remain well defined.

use rand::Rng as _;

use crate::rng::AdvRng;

/// Which augmentations to apply to training images. The default applies none.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Augment {
    /// Zero padding added on each side before a random crop back to the original size;
    /// 0 disables cropping.
    pub crop_padding: usize,
    /// Mirror left-right with probability 1/2.
    pub horizontal_flip: bool,
}

impl Augment {
    /// No augmentation.
    pub fn none() -> Self {
        Augment::default()
    }

    /// The usual recipe for small-image classifiers: 4-pixel padding for 32-px images
    /// (CIFAR-10), a proportionally smaller 2 pixels below that (28-px MNIST-style), plus flips.
    pub fn standard(height: usize) -> Self {
        Augment {
            crop_padding: if height >= 32 { 4 } else { 2 },
            horizontal_flip: true,
        }
    }

    /// Whether [`Augment::apply`] can change an image; lets callers skip the copy.
    pub fn is_active(&self) -> bool {
        self.crop_padding > 0 || self.horizontal_flip
    }

    /// Augment one C×H×W image in place.
    ///
    /// The crop offset is drawn once and shared by all channels so colours stay aligned; the
    /// generator is only drawn from for enabled operations, so disabling one does not shift
    /// the random stream of the other. Panics if `image.len() != channels * height * width`.
    pub fn apply(
        &self,
        image: &mut [f32],
        channels: usize,
        height: usize,
        width: usize,
        rng: &mut AdvRng,
    ) {
        assert_eq!(
            image.len(),
            channels * height * width,
            "image length does not match its {channels}x{height}x{width} shape"
        );
        if self.crop_padding > 0 {
            let p = self.crop_padding;
            let oy = rng.random_range(0..=2 * p);
            let ox = rng.random_range(0..=2 * p);
            crop(
                image,
                channels,
                height,
                width,
                oy as isize - p as isize,
                ox as isize - p as isize,
            );
        }
        if self.horizontal_flip && rng.random_bool(0.5) {
            for row in image.chunks_exact_mut(width.max(1)) {
                row.reverse();
            }
        }
    }
}

/// Shift the image content by `(-dy, -dx)`: output pixel `(y, x)` takes input pixel
/// `(y + dy, x + dx)`, or zero where that falls outside, which is a crop of the zero-padded
/// image at offset `(dy + p, dx + p)`.
fn crop(image: &mut [f32], channels: usize, height: usize, width: usize, dy: isize, dx: isize) {
    if dy == 0 && dx == 0 {
        return;
    }
    let src = image.to_vec();
    let plane = height * width;
    for c in 0..channels {
        for y in 0..height {
            let sy = y as isize + dy;
            for x in 0..width {
                let sx = x as isize + dx;
                let inside =
                    (0..height as isize).contains(&sy) && (0..width as isize).contains(&sx);
                image[c * plane + y * width + x] = if inside {
                    src[c * plane + sy as usize * width + sx as usize]
                } else {
                    0.0
                };
            }
        }
    }
}
