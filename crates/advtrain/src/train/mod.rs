//! Training: one epoch loop shared by every method; a method only says what the loss of a
//! batch is.
//!
//! Methods: [`Standard`] (baseline), [`PgdAt`] (Madry et al.), [`Mixed`] (clean + λ·adv),
//! [`FgsmRs`] (Wong et al.'s fast AT), [`Trades`] (Zhang et al.). The loop handles ε warm-up,
//! augmentation, the optimiser and learning-rate schedule, non-finite losses and per-epoch
//! validation (clean and PGD accuracy on a held-out split).

mod fgsm_rs;
mod mixed;
mod optim;
mod pgd_at;
mod standard;
mod trades;

use std::fmt;
use std::str::FromStr;
use std::time::Instant;

use burn::optim::GradientsParams;
use burn::prelude::{Device, Int, Tensor};
use serde::{Deserialize, Serialize};

pub use fgsm_rs::FgsmRs;
pub use mixed::Mixed;
pub use optim::{OptimizerConfig, Schedule};
pub use pgd_at::PgdAt;
pub use standard::Standard;
pub use trades::Trades;

use crate::attack::Pgd;
use crate::data::{Augment, Dataset};
use crate::eval::{self, Accuracy};
use crate::model::Classifier;
use crate::progress::Progress;
use crate::rng::{self, AdvRng};
use crate::threat::{Norm, ThreatModel};
use crate::{Error, Result};

/// The loss of one batch, as a training method defines it.
pub struct BatchLoss {
    /// Scalar loss, tracked by autodiff through the model's parameters.
    pub loss: Tensor<1>,
    /// Logits the training accuracy is measured on (adversarial ones for adversarial
    /// methods), without autodiff.
    pub logits: Tensor<2>,
}

/// A way of training: what loss a batch contributes.
pub trait TrainingMethod {
    /// The loss for batch `(x, y)` at the current threat model (ε may be warming up).
    fn batch_loss<M: Classifier>(
        &self,
        model: &M,
        x: Tensor<4>,
        y: Tensor<1, Int>,
        threat: ThreatModel,
        rng: &mut AdvRng,
    ) -> BatchLoss;
}

/// A training method and its settings, as written in `config.toml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum MethodConfig {
    Standard,
    PgdAt {
        steps: usize,
        step_size: Option<f32>,
    },
    Mixed {
        lambda: f32,
        steps: usize,
        step_size: Option<f32>,
    },
    FgsmRs {
        alpha_factor: f32,
    },
    Trades {
        beta: f32,
        steps: usize,
        step_size: Option<f32>,
    },
}

impl MethodConfig {
    /// Every method name, for help texts.
    pub const NAMES: [&'static str; 5] = ["standard", "pgd-at", "mixed", "fgsm-rs", "trades"];

    /// The method with its published default settings.
    pub fn default_for(name: &str) -> Result<Self> {
        Ok(match name {
            "standard" => MethodConfig::Standard,
            "pgd-at" => MethodConfig::PgdAt {
                steps: 10,
                step_size: None,
            },
            "mixed" => MethodConfig::Mixed {
                lambda: 1.0,
                steps: 10,
                step_size: None,
            },
            "fgsm-rs" => MethodConfig::FgsmRs { alpha_factor: 1.25 },
            "trades" => MethodConfig::Trades {
                beta: 6.0,
                steps: 10,
                step_size: None,
            },
            other => {
                return Err(Error::config(format!(
                    "unknown method '{other}': expected one of {}",
                    Self::NAMES.join(", ")
                )))
            }
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            MethodConfig::Standard => "standard",
            MethodConfig::PgdAt { .. } => "pgd-at",
            MethodConfig::Mixed { .. } => "mixed",
            MethodConfig::FgsmRs { .. } => "fgsm-rs",
            MethodConfig::Trades { .. } => "trades",
        }
    }

    /// Whether the method crafts adversarial examples (and so needs ε > 0).
    pub fn is_adversarial(&self) -> bool {
        !matches!(self, MethodConfig::Standard)
    }

    pub fn validate(&self) -> Result<()> {
        let positive = |what: &str, v: f32| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(Error::config(format!(
                    "{what} must be finite and >= 0, got {v}"
                )))
            }
        };
        match *self {
            MethodConfig::Standard => Ok(()),
            MethodConfig::PgdAt { steps, step_size }
            | MethodConfig::Mixed {
                steps, step_size, ..
            }
            | MethodConfig::Trades {
                steps, step_size, ..
            } => {
                if steps == 0 {
                    return Err(Error::config("attack steps must be >= 1"));
                }
                if let Some(a) = step_size {
                    positive("step size", a)?;
                }
                if let MethodConfig::Mixed { lambda, .. } = self {
                    positive("lambda", *lambda)?;
                }
                if let MethodConfig::Trades { beta, .. } = self {
                    positive("beta", *beta)?;
                }
                Ok(())
            }
            MethodConfig::FgsmRs { alpha_factor } => positive("alpha factor", alpha_factor),
        }
    }
}

impl fmt::Display for MethodConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for MethodConfig {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::default_for(s)
    }
}

/// Everything that determines a training run (with the data and the model's initial
/// weights).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub method: MethodConfig,
    pub norm: Norm,
    pub eps: f32,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub optimizer: OptimizerConfig,
    pub schedule: Schedule,
    /// ε grows linearly from 0 over this many epochs (0: full ε from the start).
    pub eps_warmup_epochs: f64,
    pub augment: Augment,
    /// Steps of the PGD used for validation each epoch.
    pub val_pgd_steps: usize,
    pub seed: u64,
}

impl TrainConfig {
    /// Defaults for `method` at radius `eps` (L∞): SGD 0.9 / 5e-4, lr 0.1 one-cycle for
    /// fgsm-rs (Wong et al.), lr 0.05 piecewise otherwise; batch 128.
    pub fn new(method: MethodConfig, eps: f32) -> Self {
        let fast = matches!(method, MethodConfig::FgsmRs { .. });
        Self {
            method,
            norm: Norm::Linf,
            eps,
            epochs: 5,
            batch_size: 128,
            lr: if fast { 0.1 } else { 0.05 },
            optimizer: OptimizerConfig::sgd(),
            schedule: if fast {
                Schedule::one_cycle()
            } else {
                Schedule::piecewise()
            },
            eps_warmup_epochs: 0.0,
            augment: Augment::none(),
            val_pgd_steps: 10,
            seed: 0,
        }
    }

    pub fn threat(&self) -> ThreatModel {
        ThreatModel {
            norm: self.norm,
            eps: self.eps,
        }
    }

    /// Rejects settings that cannot work, naming the setting.
    pub fn validate(&self) -> Result<()> {
        self.threat().validate()?;
        self.method.validate()?;
        self.optimizer.validate()?;
        self.schedule.validate()?;
        if self.method.is_adversarial() && self.eps == 0.0 {
            return Err(Error::config(format!(
                "method {} needs eps > 0 (use --method standard for no attack)",
                self.method
            )));
        }
        if self.norm == Norm::Linf && self.eps > 1.0 {
            return Err(Error::config(format!(
                "eps {} is larger than the whole [0,1] pixel range",
                self.eps
            )));
        }
        if self.epochs == 0 {
            return Err(Error::config("epochs must be >= 1"));
        }
        if self.batch_size == 0 {
            return Err(Error::config("batch size must be >= 1"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::config(format!(
                "learning rate must be > 0, got {}",
                self.lr
            )));
        }
        if !(self.eps_warmup_epochs.is_finite() && self.eps_warmup_epochs >= 0.0) {
            return Err(Error::config("eps warm-up epochs must be >= 0"));
        }
        Ok(())
    }

    /// ε after `progress_epochs` epochs of training (linear warm-up).
    pub fn eps_at(&self, progress_epochs: f64) -> f32 {
        if self.eps_warmup_epochs <= 0.0 {
            self.eps
        } else {
            (self.eps as f64 * (progress_epochs / self.eps_warmup_epochs).min(1.0)) as f32
        }
    }
}

/// What one epoch did: one line of `metrics.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based.
    pub epoch: usize,
    pub train_loss: f64,
    /// Accuracy on the examples the method trained on (adversarial ones when it attacks).
    pub train_accuracy: f64,
    pub lr: f64,
    /// ε at the end of the epoch.
    pub eps: f32,
    pub val_clean_accuracy: Option<f64>,
    pub val_robust_accuracy: Option<f64>,
    /// Which attack the validation robust accuracy used.
    pub val_attack: Option<String>,
    pub epoch_seconds: f64,
    pub train_images_per_second: f64,
}

/// Receives each finished epoch (to write metrics and checkpoints). An error stops training.
pub trait EpochObserver<M> {
    fn on_epoch(&mut self, metrics: &EpochMetrics, model: &M) -> Result<()>;
}

/// Ignores epochs.
pub struct NoObserver;

impl<M> EpochObserver<M> for NoObserver {
    fn on_epoch(&mut self, _: &EpochMetrics, _: &M) -> Result<()> {
        Ok(())
    }
}

/// A finished training run.
pub struct Trained<M> {
    pub model: M,
    pub history: Vec<EpochMetrics>,
    pub seconds: f64,
}

/// Trains `model` on `train` with `config`, validating on `val` (may be empty) after every
/// epoch. Tensors are created on `device` (without autodiff; the model's parameters carry
/// it).
pub fn train<M: Classifier>(
    model: M,
    train: &Dataset,
    val: &Dataset,
    config: &TrainConfig,
    device: &Device,
    progress: &dyn Progress,
    observer: &mut dyn EpochObserver<M>,
) -> Result<Trained<M>> {
    config.validate()?;
    if train.is_empty() {
        return Err(Error::config("the training set is empty"));
    }
    let device = device.clone().without_autodiff();
    let mut model = model.train();
    let mut optimizer = config.optimizer.build();
    let mut rng = rng::derived(config.seed, 1);
    let mut val_rng = rng::derived(config.seed, 2);
    let batches_per_epoch = train.len().div_ceil(config.batch_size);
    let total_iters = (batches_per_epoch * config.epochs) as f64;
    let mut history = Vec::with_capacity(config.epochs);
    let start = Instant::now();

    for epoch in 0..config.epochs {
        let epoch_start = Instant::now();
        let order = rng::permutation(&mut rng, train.len());
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        let mut lr = config.lr;
        let mut eps = config.eps;
        progress.begin(
            &format!("epoch {}/{} {}", epoch + 1, config.epochs, config.method),
            train.len() as u64,
        );
        for (i, chunk) in order.chunks(config.batch_size).enumerate() {
            let iter = (epoch * batches_per_epoch + i) as f64;
            lr = config.schedule.lr(config.lr, iter / total_iters);
            eps = config.eps_at(iter / batches_per_epoch as f64);
            let threat = ThreatModel {
                norm: config.norm,
                eps,
            };
            let (x, y) = if config.augment.is_active() {
                train.batch_augmented(chunk, &config.augment, &mut rng, &device)
            } else {
                train.batch(chunk, &device)
            };
            let out = batch_loss(&config.method, &model, x, y.clone(), threat, &mut rng);
            let loss_value: f64 = out.loss.clone().into_scalar::<f32>() as f64;
            if !loss_value.is_finite() {
                progress.end();
                return Err(Error::Diverged(format!(
                    "loss is {loss_value} at epoch {}, batch {} (lr {lr:.4}); lower --lr or check the data",
                    epoch + 1,
                    i + 1
                )));
            }
            let b = chunk.len();
            let pred = out.logits.argmax(1).reshape([b]);
            correct += pred.equal(y).int().sum().into_scalar::<i64>() as usize;
            loss_sum += loss_value * b as f64;
            seen += b;
            let grads = GradientsParams::from_grads(out.loss.backward(), &model);
            model = optimizer.step(lr, model, grads);
            progress.advance(
                b as u64,
                &format!(
                    "loss {:.4} acc {:.1}%",
                    loss_sum / seen as f64,
                    100.0 * correct as f64 / seen as f64
                ),
            );
        }
        progress.end();
        let train_seconds = epoch_start.elapsed().as_secs_f64();

        let (val_clean, val_robust, val_attack) = if val.is_empty() {
            (None, None, None)
        } else {
            let clean = eval::clean_accuracy(&model, val, config.batch_size.max(256), progress);
            let robust = if config.eps > 0.0 {
                let attack = Pgd::new(config.threat()).steps(config.val_pgd_steps.max(1));
                let r = eval::evaluate(
                    &model,
                    val,
                    &attack,
                    config.batch_size.max(256),
                    &mut val_rng,
                    progress,
                )?;
                Some((r.robust, r.attack))
            } else {
                None
            };
            (
                Some(clean),
                robust.as_ref().map(|(a, _): &(Accuracy, String)| a.value),
                robust.map(|(_, name)| name),
            )
        };
        let metrics = EpochMetrics {
            epoch: epoch + 1,
            train_loss: loss_sum / seen as f64,
            train_accuracy: correct as f64 / seen as f64,
            lr,
            eps,
            val_clean_accuracy: val_clean.map(|a| a.value),
            val_robust_accuracy: val_robust,
            val_attack,
            epoch_seconds: epoch_start.elapsed().as_secs_f64(),
            train_images_per_second: seen as f64 / train_seconds.max(1e-9),
        };
        observer.on_epoch(&metrics, &model)?;
        history.push(metrics);
    }
    Ok(Trained {
        model: model.valid(),
        history,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Dispatches a batch to the configured method.
pub fn batch_loss<M: Classifier>(
    method: &MethodConfig,
    model: &M,
    x: Tensor<4>,
    y: Tensor<1, Int>,
    threat: ThreatModel,
    rng: &mut AdvRng,
) -> BatchLoss {
    match *method {
        MethodConfig::Standard => Standard.batch_loss(model, x, y, threat, rng),
        MethodConfig::PgdAt { steps, step_size } => {
            PgdAt { steps, step_size }.batch_loss(model, x, y, threat, rng)
        }
        MethodConfig::Mixed {
            lambda,
            steps,
            step_size,
        } => Mixed {
            lambda,
            steps,
            step_size,
        }
        .batch_loss(model, x, y, threat, rng),
        MethodConfig::FgsmRs { alpha_factor } => {
            FgsmRs { alpha_factor }.batch_loss(model, x, y, threat, rng)
        }
        MethodConfig::Trades {
            beta,
            steps,
            step_size,
        } => Trades {
            beta,
            steps,
            step_size,
        }
        .batch_loss(model, x, y, threat, rng),
    }
}

/// Training accuracy bookkeeping helper for methods' tests.
pub fn accuracy_of(logits: Tensor<2>, y: Tensor<1, Int>) -> Accuracy {
    let b = logits.dims()[0];
    let correct = logits
        .argmax(1)
        .reshape([b])
        .equal(y)
        .int()
        .sum()
        .into_scalar::<i64>() as usize;
    Accuracy::new(correct, b)
}
