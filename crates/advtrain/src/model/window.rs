//! Scoring images that differ from known ones in one window, without a full forward pass.
//!
//! A score-based search such as Square asks the model about thousands of candidates per
//! image, each equal to the current best point except inside one small square. A model that
//! knows its own structure can keep the activations of the best points and recompute only
//! what the window reaches: in a convolutional network that is a few output positions per
//! layer. The logits are the same function of the same pixels; only the rounding differs
//! from a full pass, by what summing in another order gives.

/// A rectangle of pixel rows and columns, in every channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// First row inside the window.
    pub top: usize,
    /// First column inside the window.
    pub left: usize,
    /// Rows in the window.
    pub height: usize,
    /// Columns in the window.
    pub width: usize,
}

impl Window {
    /// A `side × side` window with its top-left corner at (`top`, `left`).
    pub fn square(top: usize, left: usize, side: usize) -> Self {
        Self {
            top,
            left,
            height: side,
            width: side,
        }
    }
}

/// Tracks a batch of images and scores variants of them that differ in one window each.
///
/// Made by [`Classifier::window_scorer`](super::Classifier::window_scorer) from a model's
/// current weights; it does not follow later changes to them. Images are row-major host
/// floats `[channels, height, width]` in `[0, 1]`, as the model's `logits` takes them.
pub trait WindowScorer: Send + Sync {
    /// Logits per image.
    fn classes(&self) -> usize;

    /// Starts tracking `images` (`[m, channels, height, width]`, row-major) as images
    /// `0..m`, and returns their logits `[m, classes]`.
    fn track(&mut self, images: &[f32]) -> Vec<f32>;

    /// Writes to `logits` (`classes` floats) the logits of `candidate`, an image equal to
    /// tracked image `k` outside `window`.
    fn logits_with_window(&self, k: usize, candidate: &[f32], window: Window, logits: &mut [f32]);

    /// Makes `candidate` (equal to tracked image `k` outside `window`) the tracked image `k`.
    fn replace(&mut self, k: usize, candidate: &[f32], window: Window);
}
