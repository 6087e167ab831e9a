//! # advtrain
//!
//! Adversarial attacks, adversarial training and honest robustness evaluation for image
//! classifiers written with [burn](https://burn.dev).
//!
//! The modules form layers, and a module uses only its own layer and those below it
//! (`scripts/check_layers.sh` checks this in CI):
//! `rng`, `io`, `error` → `threat`, `loss` → `data`, `model` → `attack` → `eval` → `train`
//! → `run` → `report`. `text` puts its own data, models, attacks, evaluation, training and
//! runs on the same layers; `fastpath` is a leaf (the only `unsafe` code).
//!
//! A model is anything implementing [`model::Classifier`]: a burn `Module` that maps images
//! with values in `[0, 1]` (shape `[batch, channels, height, width]`) to logits. Any input
//! normalisation lives inside the model, never in the attack, so threat models are always
//! expressed in pixel space.
//!
//! ```no_run
//! use advtrain::prelude::*;
//!
//! let device = Device::flex();
//! let model = SmallCnnConfig::new(ModelShape::fashion_mnist()).init(&device);
//! let x = Tensor::<4>::zeros([8, 1, 28, 28], &device);
//! let y = Tensor::<1, Int>::zeros([8], &device);
//! let pgd = Pgd::new(ThreatModel::linf(0.1)).steps(20);
//! let mut rng = advtrain::rng::seeded(0);
//! let x_adv = pgd.perturb(&model, x, y, &mut rng);
//! ```

// Every public item is documented; `unsafe` is refused everywhere except the one GEMM call
// of the fast path (`fastpath::kernels`, allowed there with its SAFETY argument).
#![warn(missing_docs)]
#![deny(unsafe_code)]

pub mod attack;
pub mod bench;
pub mod data;
pub mod device_check;
pub mod error;
pub mod eval;
pub mod fastpath;
pub mod io;
pub mod loss;
pub mod model;
pub mod progress;
pub mod report;
pub mod rng;
pub mod run;
pub mod text;
pub mod threat;
pub mod train;

pub use error::{Error, Result};

/// The types most programs need.
pub mod prelude {
    pub use crate::attack::{Attack, AttackLoss, Fgsm, Pgd, TargetMode};
    pub use crate::model::{
        Classifier, MadryCnn, MadryCnnConfig, Mlp, MlpConfig, ModelKind, ModelShape, SmallCnn,
        SmallCnnConfig, ZooModel, ZooModelConfig,
    };
    pub use crate::threat::{Norm, ThreatModel};
    pub use burn::prelude::{Device, Int, Module, Tensor, TensorData};
}

/// advtrain's version, written into every run directory.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The README's code examples, compiled and run as doc tests so they cannot go stale.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
