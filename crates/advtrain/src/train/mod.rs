//! Training: one loop ([`trainer::fit`]) shared by every method and every modality; a
//! method is a [`TrainStep`] (one batch), and most only say what the loss of a batch is
//! ([`TrainingMethod`]). Images plug into the loop as [`ImageTask`], text as
//! `text::train::TextTask`; a method of your own is a `TrainStep` passed to
//! [`ImageTask::with_step`] (see `examples/custom_method.rs`).
//!
//! Methods: [`Standard`] (baseline), [`PgdAt`] (Madry et al.), [`Mixed`] (clean + λ·adv),
//! [`FgsmRs`] (Wong et al.'s fast AT), [`Trades`] (Zhang et al.), [`Mart`] (Wang et al.) and
//! free adversarial training ([`free`], Shafahi et al.). The loop handles ε warm-up,
//! augmentation, the optimiser and learning-rate schedule, non-finite losses, the health
//! monitor ([`monitor`]: validation clean / FGSM / PGD accuracy and gradient alignment,
//! collapse alarms and rollback), the best checkpoint, and crash-safe checkpoints that
//! [`CheckpointOptions::resume`] continues from ([`checkpoint`]).

pub mod checkpoint;
pub mod data_parallel;
mod fgsm_rs;
pub mod free;
pub mod image;
mod mart;
mod mixed;
pub mod monitor;
mod optim;
mod pgd_at;
mod standard;
pub mod step;
mod trades;
pub mod trainer;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use burn::prelude::{Device, Int, Tensor};
use serde::{Deserialize, Serialize};

pub use checkpoint::{BestRecord, Checkpoint, TrainState};
pub use data_parallel::DataParallel;
pub use fgsm_rs::FgsmRs;
pub use free::FreeAt;
pub use image::ImageTask;
pub use mart::{mart_loss, Mart};
pub use mixed::Mixed;
pub use monitor::{CollapsePolicy, HealthCheck, MonitorConfig, MonitorEvent};
pub use optim::{OptimizerConfig, Schedule};
pub use pgd_at::PgdAt;
pub use standard::Standard;
pub use step::{
    count_correct, BatchLoss, ImageBatch, StepContext, StepOutput, TrainStep, TrainingMethod,
};
pub use trades::Trades;
pub use trainer::{fit, LoopSettings, TrainTask, Validation};

use crate::data::{Augment, Dataset};
use crate::error::{Error, Result};
use crate::eval::Accuracy;
use crate::model::Classifier;
use crate::progress::Progress;
use crate::threat::{Norm, ThreatModel};

/// Expands to a `match` over a [`MethodConfig`] that binds each one-update method to
/// `$method` and evaluates `$wrap`, and hands free AT's settings to `$free`: the one place
/// that turns settings into method values, for every way of running them.
macro_rules! with_method {
    ($config:expr, $method:ident => $wrap:expr, free($replays:ident, $step_size:ident) => $free:expr) => {
        match *$config {
            MethodConfig::Standard => {
                let $method = Standard;
                $wrap
            }
            MethodConfig::PgdAt { steps, step_size } => {
                let $method = PgdAt { steps, step_size };
                $wrap
            }
            MethodConfig::Mixed {
                lambda,
                steps,
                step_size,
            } => {
                let $method = Mixed {
                    lambda,
                    steps,
                    step_size,
                };
                $wrap
            }
            MethodConfig::FgsmRs {
                alpha_factor,
                random_start,
            } => {
                let $method = FgsmRs {
                    alpha_factor,
                    random_start,
                };
                $wrap
            }
            MethodConfig::Trades {
                beta,
                steps,
                step_size,
            } => {
                let $method = Trades {
                    beta,
                    steps,
                    step_size,
                };
                $wrap
            }
            MethodConfig::Mart {
                beta,
                steps,
                step_size,
            } => {
                let $method = Mart {
                    beta,
                    steps,
                    step_size,
                };
                $wrap
            }
            MethodConfig::Free {
                replays: $replays,
                step_size: $step_size,
            } => $free,
        }
    };
}

/// A training method and its settings, as written in `config.toml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum MethodConfig {
    /// Plain training on clean inputs: the non-robust baseline (needs no ε).
    Standard,
    /// PGD adversarial training (Madry et al. 2018) on the adversarial examples only.
    PgdAt {
        /// Steps of the inner PGD attack (default 10); must be at least 1.
        steps: usize,
        /// Inner step size in pixel units; `None`: 2.5·ε/steps at the current ε.
        step_size: Option<f32>,
    },
    /// Clean loss plus λ times the PGD adversarial loss (Goodfellow et al. 2015's mix).
    Mixed {
        /// Weight of the adversarial loss (default 1); finite and `>= 0`.
        lambda: f32,
        /// Steps of the inner PGD attack (default 10); must be at least 1.
        steps: usize,
        /// Inner step size in pixel units; `None`: 2.5·ε/steps at the current ε.
        step_size: Option<f32>,
    },
    /// Fast adversarial training (Wong et al. 2020): FGSM from a random start.
    FgsmRs {
        /// FGSM step as a multiple of ε (default 1.25, Wong et al.'s value).
        alpha_factor: f32,
        /// Start from a uniform random point of the ball (default; `false` gives plain FGSM
        /// training, the textbook case of catastrophic overfitting).
        #[serde(default = "yes")]
        random_start: bool,
    },
    /// TRADES (Zhang et al. 2019): clean cross-entropy plus β·KL to the adversarial
    /// prediction.
    Trades {
        /// Weight of the KL term (default 6, the paper's CIFAR-10 value).
        beta: f32,
        /// Ascent steps of the inner KL maximisation (default 10); must be at least 1.
        steps: usize,
        /// Inner step size in pixel units; `None`: 2.5·ε/steps at the current ε.
        step_size: Option<f32>,
    },
    /// Free adversarial training: each batch replayed `replays` times, the perturbation
    /// moved by `step_size` (default ε) with each replay's input gradient.
    Free {
        /// Replays per batch, the paper's `m` (default 8); must be at least 1.
        replays: usize,
        /// Perturbation step in pixel units; `None`: ε.
        step_size: Option<f32>,
    },
    /// MART (Wang et al. 2020): boosted adversarial cross-entropy plus a KL term weighted
    /// towards misclassified examples.
    Mart {
        /// Weight of the KL term (default 6).
        beta: f32,
        /// Steps of the inner PGD attack (default 10); must be at least 1.
        steps: usize,
        /// Inner step size in pixel units; `None`: 2.5·ε/steps at the current ε.
        step_size: Option<f32>,
    },
}

impl MethodConfig {
    /// Every method name, for help texts.
    pub const NAMES: [&'static str; 7] = [
        "standard", "pgd-at", "mixed", "fgsm-rs", "trades", "free", "mart",
    ];

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
            "fgsm-rs" => MethodConfig::FgsmRs {
                alpha_factor: 1.25,
                random_start: true,
            },
            "trades" => MethodConfig::Trades {
                beta: 6.0,
                steps: 10,
                step_size: None,
            },
            "free" => MethodConfig::Free {
                replays: 8,
                step_size: None,
            },
            "mart" => MethodConfig::Mart {
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

    /// The method's name in `config.toml`, on the command line and in records (one of
    /// [`MethodConfig::NAMES`]).
    pub fn name(&self) -> &'static str {
        match self {
            MethodConfig::Standard => "standard",
            MethodConfig::PgdAt { .. } => "pgd-at",
            MethodConfig::Mixed { .. } => "mixed",
            MethodConfig::FgsmRs { .. } => "fgsm-rs",
            MethodConfig::Trades { .. } => "trades",
            MethodConfig::Free { .. } => "free",
            MethodConfig::Mart { .. } => "mart",
        }
    }

    /// Whether the method crafts adversarial examples (and so needs ε > 0).
    pub fn is_adversarial(&self) -> bool {
        !matches!(self, MethodConfig::Standard)
    }

    /// The method as a training step for image classifiers of type `M`.
    pub fn image_step<M: Classifier + 'static>(&self) -> Box<dyn TrainStep<M, ImageBatch>> {
        with_method!(self, method => Box::new(method), free(replays, step_size) => {
            Box::new(FreeAt::new(replays, step_size))
        })
    }

    /// The method run data-parallel over `devices` ([`DataParallel`]; the model lives on
    /// the first). Free AT updates several times per batch on one device's perturbation and
    /// is refused.
    pub fn data_parallel_step<M: Classifier + 'static>(
        &self,
        devices: Vec<Device>,
    ) -> Result<Box<dyn TrainStep<M, ImageBatch>>> {
        with_method!(self, method => Ok(Box::new(DataParallel::new(method, devices)?)),
        free(_replays, _step_size) => Err(Error::config(
            "free adversarial training replays each batch on one device; it cannot run \
             data-parallel (use fgsm-rs or pgd-at with --devices)",
        )))
    }

    /// Rejects settings no method can train with: zero steps or replays, and negative or
    /// non-finite step sizes, λ, β or α factors.
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
            }
            | MethodConfig::Mart {
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
                if let MethodConfig::Trades { beta, .. } | MethodConfig::Mart { beta, .. } = self {
                    positive("beta", *beta)?;
                }
                Ok(())
            }
            MethodConfig::FgsmRs { alpha_factor, .. } => positive("alpha factor", alpha_factor),
            MethodConfig::Free { replays, step_size } => {
                if replays == 0 {
                    return Err(Error::config("free training needs >= 1 replay"));
                }
                if let Some(a) = step_size {
                    positive("step size", a)?;
                }
                Ok(())
            }
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
    /// The training method and its settings.
    pub method: MethodConfig,
    /// Norm of the threat model trained against (default L∞).
    pub norm: Norm,
    /// Training radius ε in pixel units of `[0, 1]` images; must be `> 0` for adversarial
    /// methods and at most 1 in L∞.
    pub eps: f32,
    /// Passes over the training set (default 5); at least 1.
    pub epochs: usize,
    /// Examples per batch (default 128); at least 1.
    pub batch_size: usize,
    /// Base (peak) learning rate; the schedule scales it. Default 0.1 for fgsm-rs, 0.05
    /// otherwise.
    pub lr: f64,
    /// The optimiser (default SGD, momentum 0.9, weight decay 5e-4).
    pub optimizer: OptimizerConfig,
    /// Learning-rate schedule (default one-cycle for fgsm-rs, piecewise otherwise).
    pub schedule: Schedule,
    /// ε grows linearly from 0 over this many epochs (0: full ε from the start).
    pub eps_warmup_epochs: f64,
    /// Host-side augmentation of training batches (default none).
    pub augment: Augment,
    /// Steps of the PGD used for validation each epoch (the monitor's PGD-k).
    pub val_pgd_steps: usize,
    /// Seeds the training generator (shuffling, augmentation, attack starts) and the
    /// validation one (monitor attacks).
    pub seed: u64,
    /// The health monitor's alarms and what to do on them.
    #[serde(default)]
    pub monitor: MonitorConfig,
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
            monitor: MonitorConfig::default(),
        }
    }

    /// The threat model at full ε (`norm`, `eps`).
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
        self.monitor.validate()?;
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
    /// Mean training loss per example over the epoch (the method's loss: adversarial,
    /// mixed or TRADES/MART as it defines it).
    pub train_loss: f64,
    /// Accuracy on the examples the method trained on (adversarial ones when it attacks).
    pub train_accuracy: f64,
    /// Learning rate of the epoch's last batch, after the schedule.
    pub lr: f64,
    /// ε at the end of the epoch.
    pub eps: f32,
    /// Validation clean accuracy, a fraction (`None` without a validation split).
    pub val_clean_accuracy: Option<f64>,
    /// Validation PGD-k accuracy (the monitor's; `None` without ε or validation split).
    pub val_robust_accuracy: Option<f64>,
    /// Which attack the validation robust accuracy used.
    pub val_attack: Option<String>,
    /// Validation FGSM accuracy (no random start, step ε).
    #[serde(default)]
    pub val_fgsm_accuracy: Option<f64>,
    /// FGSM minus PGD validation accuracy: jumps at catastrophic overfitting.
    #[serde(default)]
    pub val_fgsm_pgd_gap: Option<f64>,
    /// Gradient alignment on the validation split (cosine; collapses with catastrophic
    /// overfitting).
    #[serde(default)]
    pub val_grad_alignment: Option<f64>,
    /// The multiplier on the method's attack step size during this epoch's end (1 unless a
    /// rollback reduced it).
    #[serde(default = "one")]
    pub step_scale: f32,
    /// Health checks taken inside the epoch (`monitor.every_batches`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<HealthCheck>,
    /// The monitor's alarms and actions during the epoch.
    #[serde(default)]
    pub events: Vec<MonitorEvent>,
    /// The epoch of the best checkpoint so far.
    #[serde(default)]
    pub best_epoch: Option<usize>,
    /// Wall-clock seconds of the epoch, validation included (summed over resumes).
    pub epoch_seconds: f64,
    /// Training examples per second in the batch loop (validation excluded).
    pub train_images_per_second: f64,
    /// A modality's own figures for the epoch (text adversarial training: how many texts
    /// were attacked, the attack's success rate, its seconds), written beside the others.
    #[serde(flatten, default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, serde_json::Value>,
}

fn one() -> f32 {
    1.0
}

fn yes() -> bool {
    true
}

/// Receives each finished epoch (to write metrics and checkpoints). An error stops training.
pub trait EpochObserver<M> {
    /// Called once per finished epoch, after validation and the monitor, with the epoch's
    /// metrics and the model as it stands (before the epoch's checkpoint is written).
    fn on_epoch(&mut self, metrics: &EpochMetrics, model: &M) -> Result<()>;
}

/// Ignores epochs.
pub struct NoObserver;

impl<M> EpochObserver<M> for NoObserver {
    fn on_epoch(&mut self, _: &EpochMetrics, _: &M) -> Result<()> {
        Ok(())
    }
}

/// Where and how often to checkpoint, and what to resume from: how a run is kept, as
/// opposed to how it trains ([`TrainConfig`]; a CLI run records both data and model in
/// `run::RunConfig`). Nothing here changes the trained weights: a run checkpointed often
/// ends exactly like one never checkpointed.
#[derive(Default)]
pub struct CheckpointOptions<'a> {
    /// Run directory for `checkpoint.ckpt` (after every epoch) and `model-best.safetensors`
    /// (`None`: no files).
    pub checkpoint_dir: Option<&'a Path>,
    /// Also checkpoint inside an epoch once this many minutes have passed since the last.
    pub checkpoint_minutes: Option<f64>,
    /// Also checkpoint inside an epoch every this many batches.
    pub checkpoint_batches: Option<usize>,
    /// Continue from this checkpoint (it must come from the same configuration).
    pub resume: Option<Checkpoint>,
}

/// File name of the best checkpoint's weights in a run directory.
pub const BEST_MODEL: &str = "model-best.safetensors";

/// A finished training run.
pub struct Trained<M> {
    /// The final weights (the best checkpoint's if the monitor stopped the run).
    pub model: M,
    /// One entry per finished epoch, those before a resume included.
    pub history: Vec<EpochMetrics>,
    /// Wall-clock seconds of training, summed over resumed processes.
    pub seconds: f64,
    /// Which epoch's checkpoint was best, and by what.
    pub best: Option<BestRecord>,
    /// The best checkpoint's weights.
    pub best_model: Option<M>,
    /// Why the monitor stopped training early, if it did.
    pub stopped: Option<String>,
    /// How many times the monitor rolled back to the best checkpoint.
    pub rollbacks: usize,
}

/// Trains `model` on `train` with `config`, validating on `val` (may be empty) after every
/// epoch. Tensors are created on `device` (without autodiff; the model's parameters carry
/// it). No checkpoints; see [`train_with`].
pub fn train<M: Classifier + 'static>(
    model: M,
    train: &Dataset,
    val: &Dataset,
    config: &TrainConfig,
    device: &Device,
    progress: &dyn Progress,
    observer: &mut dyn EpochObserver<M>,
) -> Result<Trained<M>> {
    train_with(
        model,
        train,
        val,
        config,
        CheckpointOptions::default(),
        device,
        progress,
        observer,
    )
}

/// [`train`] with checkpoints and resume ([`CheckpointOptions`]).
#[allow(clippy::too_many_arguments)]
pub fn train_with<M: Classifier + 'static>(
    model: M,
    train: &Dataset,
    val: &Dataset,
    config: &TrainConfig,
    options: CheckpointOptions<'_>,
    device: &Device,
    progress: &dyn Progress,
    observer: &mut dyn EpochObserver<M>,
) -> Result<Trained<M>> {
    config.validate()?;
    let mut task = ImageTask::new(train, val, config);
    fit(&mut task, model, options, device, progress, observer)
}

/// [`train_with`] data-parallel over `devices` (at least two; `device`, where `model` lives
/// and batches are made, is the first): every batch is split among them, each runs the
/// method on its share, and the averaged gradients update the model once
/// ([`DataParallel`]). Checkpoints, resume and the monitor are those of any run.
#[allow(clippy::too_many_arguments)]
pub fn train_data_parallel<M: Classifier + 'static>(
    model: M,
    train: &Dataset,
    val: &Dataset,
    config: &TrainConfig,
    options: CheckpointOptions<'_>,
    devices: &[Device],
    progress: &dyn Progress,
    observer: &mut dyn EpochObserver<M>,
) -> Result<Trained<M>> {
    config.validate()?;
    let Some(device) = devices.first() else {
        return Err(Error::config(
            "data-parallel training needs at least 2 devices, got 0",
        ));
    };
    let step = config.method.data_parallel_step(devices.to_vec())?;
    let name = format!("{} on {} devices", config.method.name(), devices.len());
    let mut task = ImageTask::with_step(train, val, config, step, &name);
    fit(&mut task, model, options, device, progress, observer)
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
