//! The small CNN of Wong et al. (2020, "Fast is better than free") for MNIST-sized inputs.

use crate::fastpath::{conv2d_relu, linear, linear_relu};
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::{Device, Tensor};

use super::window::WindowScorer;
use super::{normalize, Classifier, ModelShape, Normalization};

mod windows;

super::zoo_config!(
    SmallCnnConfig,
    SmallCnn,
    "How to build a [`SmallCnn`]: the input/output shape and the normalisation it applies first."
);

/// Conv16 4×4 stride 2 → Conv32 4×4 stride 2 → FC100 → FC(classes), ReLU between.
#[derive(Module, Debug)]
pub struct SmallCnn {
    conv1: Conv2d,
    conv2: Conv2d,
    fc1: Linear,
    fc2: Linear,
    #[module(skip)]
    normalization: Option<Normalization>,
}

/// Output size of a 4×4, stride-2, padding-1 convolution.
fn down(n: usize) -> usize {
    (n + 2 - 4) / 2 + 1
}

impl SmallCnn {
    /// A freshly initialised network for `shape`: shorthand for
    /// `SmallCnnConfig::new(shape.clone()).init(device)`.
    pub fn new(shape: &ModelShape, device: &Device) -> Self {
        SmallCnnConfig::new(shape.clone()).init(device)
    }

    /// The layers for `shape`, initialised in a fixed order (so a seeded device gives the
    /// same weights on every run).
    fn build(shape: &ModelShape, device: &Device) -> Self {
        let conv = |cin, cout| {
            Conv2dConfig::new([cin, cout], [4, 4])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        let (h, w) = (down(down(shape.height)), down(down(shape.width)));
        Self {
            conv1: conv(shape.channels, 16),
            conv2: conv(16, 32),
            fc1: LinearConfig::new(32 * h * w, 100).init(device),
            fc2: LinearConfig::new(100, shape.num_classes).init(device),
            normalization: None,
        }
    }

    /// Normalise inputs inside the model.
    pub fn with_normalization(mut self, normalization: Option<Normalization>) -> Self {
        self.normalization = normalization;
        self
    }
}

impl Classifier for SmallCnn {
    fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        let x = normalize(&self.normalization, images);
        let x = conv2d_relu(&self.conv1, x);
        let x = conv2d_relu(&self.conv2, x);
        let x: Tensor<2> = x.flatten(1, 3);
        let x = linear_relu(&self.fc1, x);
        linear(&self.fc2, x)
    }

    fn window_scorer(&self, image: [usize; 3]) -> Option<Box<dyn WindowScorer>> {
        let scorer = windows::SmallCnnWindows::new(self, image)?;
        Some(Box::new(scorer))
    }
}
