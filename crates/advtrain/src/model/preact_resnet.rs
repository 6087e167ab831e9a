//! Pre-activation ResNet-18 (He et al. 2016), the standard CIFAR-10 model of the
//! adversarial-training literature (Rice et al. 2020, Wong et al. 2020). Too slow for CPU
//! training; it is here for GPU users.

use crate::fastpath::conv2d;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::{Device, Tensor};
use burn::tensor::activation::relu;

use super::{normalize, Classifier, ModelShape, Normalization};

super::zoo_config!(
    PreActResNet18Config,
    PreActResNet18,
    "How to build a [`PreActResNet18`]: the input/output shape and the normalisation it applies first."
);

fn conv3x3(cin: usize, cout: usize, stride: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([cin, cout], [3, 3])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(false)
        .init(device)
}

/// BN → ReLU → conv3×3 → BN → ReLU → conv3×3, plus a (projected) shortcut.
#[derive(Module, Debug)]
pub struct PreActBlock {
    bn1: BatchNorm,
    conv1: Conv2d,
    bn2: BatchNorm,
    conv2: Conv2d,
    shortcut: Option<Conv2d>,
}

impl PreActBlock {
    fn new(cin: usize, cout: usize, stride: usize, device: &Device) -> Self {
        let shortcut = (stride != 1 || cin != cout).then(|| {
            Conv2dConfig::new([cin, cout], [1, 1])
                .with_stride([stride, stride])
                .with_bias(false)
                .init(device)
        });
        Self {
            bn1: BatchNormConfig::new(cin).init(device),
            conv1: conv3x3(cin, cout, stride, device),
            bn2: BatchNormConfig::new(cout).init(device),
            conv2: conv3x3(cout, cout, 1, device),
            shortcut,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let out = relu(self.bn1.forward(x.clone()));
        let shortcut = match &self.shortcut {
            Some(conv) => conv2d(conv, out.clone()),
            None => x,
        };
        let out = conv2d(&self.conv1, out);
        let out = conv2d(&self.conv2, relu(self.bn2.forward(out)));
        out + shortcut
    }
}

/// Stem conv → 4 stages of 2 pre-activation blocks (64, 128, 256, 512) → BN → ReLU →
/// global average pool → FC(classes).
#[derive(Module, Debug)]
pub struct PreActResNet18 {
    stem: Conv2d,
    blocks: Vec<PreActBlock>,
    bn: BatchNorm,
    pool: AdaptiveAvgPool2d,
    fc: Linear,
    #[module(skip)]
    normalization: Option<Normalization>,
}

impl PreActResNet18 {
    /// A freshly initialised network for `shape`: shorthand for
    /// `PreActResNet18Config::new(shape.clone()).init(device)`.
    pub fn new(shape: &ModelShape, device: &Device) -> Self {
        PreActResNet18Config::new(shape.clone()).init(device)
    }

    /// The layers for `shape`, initialised in a fixed order (so a seeded device gives the
    /// same weights on every run).
    fn build(shape: &ModelShape, device: &Device) -> Self {
        let mut blocks = Vec::new();
        let mut cin = 64;
        for (i, &cout) in [64, 128, 256, 512].iter().enumerate() {
            let stride = if i == 0 { 1 } else { 2 };
            blocks.push(PreActBlock::new(cin, cout, stride, device));
            blocks.push(PreActBlock::new(cout, cout, 1, device));
            cin = cout;
        }
        Self {
            stem: conv3x3(shape.channels, 64, 1, device),
            blocks,
            bn: BatchNormConfig::new(512).init(device),
            pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            fc: LinearConfig::new(512, shape.num_classes).init(device),
            normalization: None,
        }
    }

    /// Normalise inputs inside the model.
    pub fn with_normalization(mut self, normalization: Option<Normalization>) -> Self {
        self.normalization = normalization;
        self
    }
}

impl Classifier for PreActResNet18 {
    fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = conv2d(&self.stem, normalize(&self.normalization, images));
        for block in &self.blocks {
            x = block.forward(x);
        }
        let x = self.pool.forward(relu(self.bn.forward(x)));
        let x: Tensor<2> = x.flatten(1, 3);
        self.fc.forward(x)
    }
}
