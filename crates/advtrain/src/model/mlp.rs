//! A fully connected baseline: no convolutional prior, useful to compare architectures.

use crate::fastpath::{linear, linear_relu};
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::{Device, Tensor};

use super::{normalize, Classifier, ModelShape, Normalization};

super::zoo_config!(
    MlpConfig,
    Mlp,
    "How to build a [`Mlp`]: the input/output shape and the normalisation it applies first."
);

/// Flatten → FC256 → FC256 → FC(classes), ReLU between.
#[derive(Module, Debug)]
pub struct Mlp {
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
    #[module(skip)]
    normalization: Option<Normalization>,
}

impl Mlp {
    /// A freshly initialised network for `shape`: shorthand for
    /// `MlpConfig::new(shape.clone()).init(device)`.
    pub fn new(shape: &ModelShape, device: &Device) -> Self {
        MlpConfig::new(shape.clone()).init(device)
    }

    /// The layers for `shape`, initialised in a fixed order (so a seeded device gives the
    /// same weights on every run).
    fn build(shape: &ModelShape, device: &Device) -> Self {
        Self {
            fc1: LinearConfig::new(shape.image_len(), 256).init(device),
            fc2: LinearConfig::new(256, 256).init(device),
            fc3: LinearConfig::new(256, shape.num_classes).init(device),
            normalization: None,
        }
    }

    /// Normalise inputs inside the model.
    pub fn with_normalization(mut self, normalization: Option<Normalization>) -> Self {
        self.normalization = normalization;
        self
    }
}

impl Classifier for Mlp {
    fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        let x = normalize(&self.normalization, images);
        let x: Tensor<2> = x.flatten(1, 3);
        let x = linear_relu(&self.fc1, x);
        let x = linear_relu(&self.fc2, x);
        linear(&self.fc3, x)
    }
}
