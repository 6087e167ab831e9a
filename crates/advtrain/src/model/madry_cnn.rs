//! The CNN of Madry et al. (2018) used for their MNIST challenge.

use crate::fastpath::{conv2d_relu, linear, linear_relu, max_pool2d};
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::{Device, Tensor};

use super::{normalize, Classifier, ModelShape, Normalization};

super::zoo_config!(
    MadryCnnConfig,
    MadryCnn,
    "How to build a [`MadryCnn`]: the input/output shape and the normalisation it applies first."
);

/// Conv32 5×5 (same) → maxpool 2 → Conv64 5×5 (same) → maxpool 2 → FC1024 → FC(classes).
#[derive(Module, Debug)]
pub struct MadryCnn {
    conv1: Conv2d,
    conv2: Conv2d,
    pool: MaxPool2d,
    fc1: Linear,
    fc2: Linear,
    #[module(skip)]
    normalization: Option<Normalization>,
}

impl MadryCnn {
    /// A freshly initialised network for `shape`: shorthand for
    /// `MadryCnnConfig::new(shape.clone()).init(device)`.
    pub fn new(shape: &ModelShape, device: &Device) -> Self {
        MadryCnnConfig::new(shape.clone()).init(device)
    }

    /// The layers for `shape`, initialised in a fixed order (so a seeded device gives the
    /// same weights on every run).
    fn build(shape: &ModelShape, device: &Device) -> Self {
        let conv = |cin, cout| {
            Conv2dConfig::new([cin, cout], [5, 5])
                .with_padding(PaddingConfig2d::Explicit(2, 2, 2, 2))
                .init(device)
        };
        let (h, w) = (shape.height / 4, shape.width / 4);
        Self {
            conv1: conv(shape.channels, 32),
            conv2: conv(32, 64),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            fc1: LinearConfig::new(64 * h * w, 1024).init(device),
            fc2: LinearConfig::new(1024, shape.num_classes).init(device),
            normalization: None,
        }
    }

    /// Normalise inputs inside the model.
    pub fn with_normalization(mut self, normalization: Option<Normalization>) -> Self {
        self.normalization = normalization;
        self
    }
}

impl Classifier for MadryCnn {
    fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        let x = normalize(&self.normalization, images);
        let x = max_pool2d(&self.pool, conv2d_relu(&self.conv1, x));
        let x = max_pool2d(&self.pool, conv2d_relu(&self.conv2, x));
        let x: Tensor<2> = x.flatten(1, 3);
        let x = linear_relu(&self.fc1, x);
        linear(&self.fc2, x)
    }
}
