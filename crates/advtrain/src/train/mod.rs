//! Training: one epoch loop shared by every method; a method only says what the loss of a
//! batch is.
//!
//! Methods: [`Standard`] (baseline), [`PgdAt`] (Madry et al.), [`Mixed`] (clean + λ·adv),
//! [`FgsmRs`] (Wong et al.'s fast AT), [`Trades`] (Zhang et al.), [`Mart`] (Wang et al.) and
//! free adversarial training ([`free`], Shafahi et al.). The loop handles ε warm-up,
//! augmentation, the optimiser and learning-rate schedule, non-finite losses, the health
//! monitor ([`monitor`]: validation clean / FGSM / PGD accuracy and gradient alignment,
//! collapse alarms and rollback), the best checkpoint, and crash-safe checkpoints that
//! [`TrainOptions::resume`] continues from ([`checkpoint`]).

pub mod checkpoint;
mod fgsm_rs;
pub mod free;
mod mart;
mod mixed;
pub mod monitor;
mod optim;
mod pgd_at;
mod standard;
mod trades;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Instant;

use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::{Device, Int, Tensor};
use burn::tensor::Bytes;
use serde::{Deserialize, Serialize};

pub use checkpoint::{BestRecord, Checkpoint, TrainState};
pub use fgsm_rs::FgsmRs;
pub use mart::{mart_loss, Mart};
pub use mixed::Mixed;
pub use monitor::{CollapsePolicy, HealthCheck, MonitorConfig, MonitorEvent};
pub use optim::{OptimizerConfig, Schedule};
pub use pgd_at::PgdAt;
pub use standard::Standard;
pub use trades::Trades;

use crate::data::{Augment, Dataset};
use crate::eval::{self, Accuracy};
use crate::model::{self, Classifier};
use crate::progress::Progress;
use crate::rng::{self, AdvRng, RngState};
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
        /// Start from a uniform random point of the ball (default; `false` gives plain FGSM
        /// training, the textbook case of catastrophic overfitting).
        #[serde(default = "yes")]
        random_start: bool,
    },
    Trades {
        beta: f32,
        steps: usize,
        step_size: Option<f32>,
    },
    /// Free adversarial training: each batch replayed `replays` times, the perturbation
    /// moved by `step_size` (default ε) with each replay's input gradient.
    Free {
        replays: usize,
        step_size: Option<f32>,
    },
    Mart {
        beta: f32,
        steps: usize,
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

    /// The method with its attack step size multiplied by `scale` (the monitor's rollback
    /// shrinks the step); `eps` is the current radius, for steps given by default.
    pub fn with_step_scale(&self, scale: f32, eps: f32) -> MethodConfig {
        if scale == 1.0 {
            return self.clone();
        }
        let scaled = |steps: usize, step: Option<f32>| {
            Some(step.unwrap_or(2.5 * eps / steps.max(1) as f32) * scale)
        };
        let mut m = self.clone();
        match &mut m {
            MethodConfig::Standard => {}
            MethodConfig::PgdAt { steps, step_size }
            | MethodConfig::Mixed {
                steps, step_size, ..
            }
            | MethodConfig::Trades {
                steps, step_size, ..
            }
            | MethodConfig::Mart {
                steps, step_size, ..
            } => *step_size = scaled(*steps, *step_size),
            MethodConfig::FgsmRs { alpha_factor, .. } => *alpha_factor *= scale,
            MethodConfig::Free { step_size, .. } => {
                *step_size = Some(step_size.unwrap_or(eps) * scale)
            }
        }
        m
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
    /// Steps of the PGD used for validation each epoch (the monitor's PGD-k).
    pub val_pgd_steps: usize,
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
    pub train_loss: f64,
    /// Accuracy on the examples the method trained on (adversarial ones when it attacks).
    pub train_accuracy: f64,
    pub lr: f64,
    /// ε at the end of the epoch.
    pub eps: f32,
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
    pub epoch_seconds: f64,
    pub train_images_per_second: f64,
}

fn one() -> f32 {
    1.0
}

fn yes() -> bool {
    true
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

/// Where and how often to checkpoint, and what to resume from. Nothing here changes the
/// trained weights: a run checkpointed often ends exactly like one never checkpointed.
#[derive(Default)]
pub struct TrainOptions<'a> {
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
    pub history: Vec<EpochMetrics>,
    pub seconds: f64,
    /// Which epoch's checkpoint was best, and by what.
    pub best: Option<BestRecord>,
    /// The best checkpoint's weights.
    pub best_model: Option<M>,
    /// Why the monitor stopped training early, if it did.
    pub stopped: Option<String>,
    pub rollbacks: usize,
}

/// Weights and optimiser state, as bytes (the best checkpoint, kept for rollbacks).
#[derive(Clone)]
struct Snapshot {
    model: Vec<u8>,
    optimizer: Vec<u8>,
}

fn snapshot<M: Classifier>(model: &M, optimizer: &ModuleOptimizer) -> Result<Snapshot> {
    Ok(Snapshot {
        model: model::safetensors_bytes(model).map_err(Error::config)?,
        optimizer: optimizer
            .into_bytes()
            .map_err(|e| Error::config(format!("cannot save optimiser state: {e}")))?
            .to_vec(),
    })
}

fn restore_model<M: Classifier>(model: M, bytes: &[u8]) -> Result<M> {
    let model = model::load_safetensors_bytes(model, bytes.to_vec())
        .map_err(|e| Error::config(format!("cannot restore weights: {e}")))?;
    Ok(model.train())
}

fn restore_optimizer(config: &TrainConfig, bytes: &[u8]) -> Result<ModuleOptimizer> {
    config
        .optimizer
        .build()
        .from_bytes(Bytes::from_bytes_vec(bytes.to_vec()))
        .map_err(|e| Error::config(format!("cannot restore optimiser state: {e}")))
}

fn restore_rng(state: &RngState, what: &str) -> Result<AdvRng> {
    state
        .restore()
        .ok_or_else(|| Error::config(format!("malformed {what} generator state")))
}

/// Trains `model` on `train` with `config`, validating on `val` (may be empty) after every
/// epoch. Tensors are created on `device` (without autodiff; the model's parameters carry
/// it). No checkpoints; see [`train_with`].
pub fn train<M: Classifier>(
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
        TrainOptions::default(),
        device,
        progress,
        observer,
    )
}

/// The mutable parts of a run the monitor's actions touch.
struct Live<'a, M> {
    model: M,
    optimizer: ModuleOptimizer,
    st: TrainState,
    best: Option<Snapshot>,
    free_delta: Option<Tensor<4>>,
    config: &'a TrainConfig,
    progress: &'a dyn Progress,
}

impl<M: Classifier> Live<'_, M> {
    fn event(&mut self, batch: Option<usize>, kind: &str, message: String) {
        self.progress.note(&format!(
            "[monitor] epoch {}{}: {kind}: {message}",
            self.st.epoch + 1,
            batch.map_or(String::new(), |b| format!(", batch {b}"))
        ));
        self.st.pending_events.push(MonitorEvent {
            epoch: self.st.epoch + 1,
            batch,
            kind: kind.to_string(),
            message,
        });
    }

    /// Restores the best checkpoint, if there is one; says which.
    fn restore_best(&mut self) -> Result<String> {
        match (&self.best, &self.st.best) {
            (Some(snap), Some(rec)) => {
                let snap = snap.clone();
                self.model = restore_model(self.model.clone(), &snap.model)?;
                self.optimizer = restore_optimizer(self.config, &snap.optimizer)?;
                self.free_delta = None;
                Ok(format!(
                    "restored the best checkpoint (epoch {}, {} {:.2}%)",
                    rec.epoch,
                    rec.criterion,
                    100.0 * rec.value
                ))
            }
            _ => Ok("no checkpoint to restore yet (kept the current weights)".to_string()),
        }
    }

    fn on_alarm(&mut self, batch: Option<usize>, reason: String) -> Result<()> {
        self.event(batch, "alarm", reason.clone());
        match self.config.monitor.on_collapse {
            CollapsePolicy::Ignore => self.event(
                batch,
                "ignore",
                "policy is 'ignore': training goes on".into(),
            ),
            CollapsePolicy::Rollback => {
                let restored = self.restore_best()?;
                let factor = self.config.monitor.rollback_step_factor;
                self.st.step_scale *= factor;
                self.st.rollbacks += 1;
                let msg = format!(
                    "{restored}; attack step size now {:.3}x its setting (rollback {})",
                    self.st.step_scale, self.st.rollbacks
                );
                self.event(batch, "rollback", msg);
            }
            CollapsePolicy::Stop => {
                let restored = self.restore_best()?;
                self.event(batch, "stop", format!("training stopped; {restored}"));
                self.st.stopped = Some(reason);
            }
        }
        Ok(())
    }

    fn checkpoint(&mut self, dir: &Path, rng: &AdvRng, val_rng: &AdvRng) -> Result<()> {
        self.st.rng = RngState::of(rng);
        self.st.val_rng = RngState::of(val_rng);
        let mut blobs = BTreeMap::new();
        let now = snapshot(&self.model, &self.optimizer)?;
        blobs.insert("model".to_string(), now.model);
        blobs.insert("optimizer".to_string(), now.optimizer);
        if let Some(b) = &self.best {
            blobs.insert("best_model".to_string(), b.model.clone());
            blobs.insert("best_optimizer".to_string(), b.optimizer.clone());
        }
        self.st.free_delta_dims = None;
        if let Some(d) = &self.free_delta {
            self.st.free_delta_dims = Some(d.dims());
            let values = crate::attack::float_vec(d);
            blobs.insert(
                "free_delta".to_string(),
                values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            );
        }
        checkpoint::write(
            dir,
            &Checkpoint {
                state: self.st.clone(),
                blobs,
            },
        )
    }
}

/// [`train`] with checkpoints and resume ([`TrainOptions`]).
#[allow(clippy::too_many_arguments)]
pub fn train_with<M: Classifier>(
    model: M,
    train: &Dataset,
    val: &Dataset,
    config: &TrainConfig,
    options: TrainOptions<'_>,
    device: &Device,
    progress: &dyn Progress,
    observer: &mut dyn EpochObserver<M>,
) -> Result<Trained<M>> {
    config.validate()?;
    if train.is_empty() {
        return Err(Error::config("the training set is empty"));
    }
    if options.checkpoint_batches == Some(0) {
        return Err(Error::config("checkpoint interval must be >= 1 batch"));
    }
    let device = device.clone().without_autodiff();
    let model = model.train();
    let mut rng = rng::derived(config.seed, 1);
    let mut val_rng = rng::derived(config.seed, 2);
    let fresh_state = TrainState {
        format_version: checkpoint::FORMAT_VERSION,
        config: config.clone(),
        epoch: 0,
        batch: 0,
        rng_epoch_start: RngState::of(&rng),
        rng: RngState::of(&rng),
        val_rng: RngState::of(&val_rng),
        loss_sum: 0.0,
        correct: 0,
        seen: 0,
        epoch_seconds: 0.0,
        train_seconds: 0.0,
        total_seconds: 0.0,
        step_scale: 1.0,
        rollbacks: 0,
        history: Vec::new(),
        pending_events: Vec::new(),
        pending_checks: Vec::new(),
        best: None,
        best_alignment: None,
        param_ids: checkpoint::param_ids(&model),
        free_delta_dims: None,
        stopped: None,
    };
    let mut live = Live {
        model,
        optimizer: config.optimizer.build(),
        st: fresh_state,
        best: None,
        free_delta: None,
        config,
        progress,
    };
    if let Some(ckpt) = options.resume {
        if ckpt.state.config != *config {
            return Err(Error::config(
                "the checkpoint was written with a different training configuration",
            ));
        }
        let blob = |name: &str| ckpt.blobs.get(name).map(Vec::as_slice);
        let m = checkpoint::assign_param_ids(live.model.clone(), &ckpt.state.param_ids)?;
        live.model = restore_model(m, blob("model").unwrap_or_default())?;
        live.optimizer = restore_optimizer(config, blob("optimizer").unwrap_or_default())?;
        if let (Some(m), Some(o)) = (blob("best_model"), blob("best_optimizer")) {
            live.best = Some(Snapshot {
                model: m.to_vec(),
                optimizer: o.to_vec(),
            });
        }
        if let (Some(dims), Some(bytes)) = (ckpt.state.free_delta_dims, blob("free_delta")) {
            let values: Vec<f32> = bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect();
            if values.len() != dims.iter().product::<usize>() {
                return Err(Error::config("free-AT perturbation has the wrong size"));
            }
            live.free_delta = Some(Tensor::from_data(
                burn::prelude::TensorData::new(values, dims),
                &device,
            ));
        }
        rng = restore_rng(&ckpt.state.rng, "training")?;
        val_rng = restore_rng(&ckpt.state.val_rng, "validation")?;
        live.st = ckpt.state;
    }

    let batches_per_epoch = train.len().div_ceil(config.batch_size);
    let total_iters = (batches_per_epoch * config.epochs) as f64;
    let eval_batch = config.batch_size.max(256);
    let adversarial = config.method.is_adversarial();
    let total_base = live.st.total_seconds;
    let clock = Instant::now();
    let mut last_checkpoint = Instant::now();
    let mut last_good: Option<(usize, usize)> = None;

    while live.st.epoch < config.epochs && live.st.stopped.is_none() {
        let epoch = live.st.epoch;
        let epoch_clock = Instant::now();
        let epoch_base = live.st.epoch_seconds;
        let train_base = live.st.train_seconds;
        let order = if live.st.batch == 0 {
            live.st.rng_epoch_start = RngState::of(&rng);
            rng::permutation(&mut rng, train.len())
        } else {
            let mut r = restore_rng(&live.st.rng_epoch_start, "epoch-start")?;
            rng::permutation(&mut r, train.len())
        };
        let chunks: Vec<&[usize]> = order.chunks(config.batch_size).collect();
        let mut lr = config.schedule.lr(
            config.lr,
            (epoch * batches_per_epoch + live.st.batch) as f64 / total_iters,
        );
        let mut eps =
            config.eps_at((live.st.batch as f64) / batches_per_epoch as f64 + epoch as f64);
        progress.begin(
            &format!("epoch {}/{} {}", epoch + 1, config.epochs, config.method),
            train.len() as u64,
        );
        if live.st.seen > 0 {
            progress.advance(live.st.seen as u64, "resumed");
        }
        for (i, chunk) in chunks.iter().enumerate().skip(live.st.batch) {
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
            let method = config.method.with_step_scale(live.st.step_scale, eps);
            let b = chunk.len();
            let diverged = |value: f64, last_good: Option<(usize, usize)>| {
                let kept = match (options.checkpoint_dir, last_good) {
                    (Some(dir), Some((e, bt))) => format!(
                        "; the last good checkpoint (after epoch {e}{}) is kept in {}",
                        if bt > 0 {
                            format!(", batch {bt} of the next")
                        } else {
                            String::new()
                        },
                        dir.display()
                    ),
                    _ => String::new(),
                };
                Error::Diverged(format!(
                    "loss is {value} at epoch {}, batch {} (lr {lr:.4}); lower --lr or check the data{kept}",
                    epoch + 1,
                    i + 1
                ))
            };
            let (loss_value, batch_correct) =
                if let MethodConfig::Free { replays, step_size } = method {
                    let step = step_size.unwrap_or(eps);
                    let mut delta = match live.free_delta.take() {
                        Some(d) if d.dims() == x.dims() => d,
                        _ => Tensor::zeros(x.dims(), &device),
                    };
                    let (mut loss_sum, mut correct) = (0.0f64, 0usize);
                    for _ in 0..replays {
                        let out = free::replay(&live.model, &x, y.clone(), &delta);
                        let value = out.loss.clone().into_scalar::<f32>() as f64;
                        if !value.is_finite() {
                            progress.end();
                            return Err(diverged(value, last_good));
                        }
                        loss_sum += value;
                        correct = count_correct(out.logits.clone().without_autodiff(), y.clone());
                        let grads = out.loss.backward();
                        let gx = out
                            .input
                            .grad(&grads)
                            .expect("the input requires a gradient, so backward must produce one");
                        let gp = GradientsParams::from_grads(grads, &live.model);
                        live.model = live.optimizer.step(lr, live.model.clone(), gp);
                        delta = free::next_delta(threat, &x, delta, gx, step);
                    }
                    live.free_delta = Some(delta);
                    (loss_sum / replays as f64, correct)
                } else {
                    let out = batch_loss(&method, &live.model, x, y.clone(), threat, &mut rng);
                    let value = out.loss.clone().into_scalar::<f32>() as f64;
                    if !value.is_finite() {
                        progress.end();
                        return Err(diverged(value, last_good));
                    }
                    let correct = count_correct(out.logits, y);
                    let grads = GradientsParams::from_grads(out.loss.backward(), &live.model);
                    live.model = live.optimizer.step(lr, live.model.clone(), grads);
                    (value, correct)
                };
            live.st.correct += batch_correct;
            live.st.loss_sum += loss_value * b as f64;
            live.st.seen += b;
            live.st.batch = i + 1;
            progress.advance(
                b as u64,
                &format!(
                    "loss {:.4} acc {:.1}%",
                    live.st.loss_sum / live.st.seen as f64,
                    100.0 * live.st.correct as f64 / live.st.seen as f64
                ),
            );
            let inside = i + 1 < chunks.len();
            if inside && adversarial && config.eps > 0.0 && !val.is_empty() {
                if let Some(k) = config.monitor.every_batches {
                    if (i + 1) % k == 0 {
                        let mut check = monitor::check(
                            &live.model,
                            val,
                            config.threat(),
                            config.val_pgd_steps,
                            config.monitor.max_examples,
                            eval_batch,
                            &mut val_rng,
                            &crate::progress::Silent,
                        )?;
                        check.batch = Some(i + 1);
                        live.st.pending_checks.push(check.clone());
                        let best = live.st.best.as_ref().and_then(|b| b.val_pgd_accuracy);
                        if let Some(reason) = monitor::alarm_reason(
                            &check,
                            best,
                            live.st.best_alignment,
                            &config.monitor,
                        ) {
                            live.on_alarm(Some(i + 1), reason)?;
                            if live.st.stopped.is_some() {
                                break;
                            }
                        }
                    }
                }
            }
            if let Some(dir) = options.checkpoint_dir {
                let due = options
                    .checkpoint_minutes
                    .is_some_and(|m| last_checkpoint.elapsed().as_secs_f64() >= m * 60.0)
                    || options.checkpoint_batches.is_some_and(|k| (i + 1) % k == 0);
                if inside && due {
                    live.st.epoch_seconds = epoch_base + epoch_clock.elapsed().as_secs_f64();
                    live.st.train_seconds = train_base + epoch_clock.elapsed().as_secs_f64();
                    live.st.total_seconds = total_base + clock.elapsed().as_secs_f64();
                    live.checkpoint(dir, &rng, &val_rng)?;
                    last_checkpoint = Instant::now();
                    last_good = Some((epoch, i + 1));
                }
            }
        }
        progress.end();
        let train_seconds = train_base + epoch_clock.elapsed().as_secs_f64();

        // End of epoch: validation and the monitor.
        let mut check = None;
        let mut val_clean = None;
        if !val.is_empty() {
            if config.eps > 0.0 {
                let c = monitor::check(
                    &live.model,
                    val,
                    config.threat(),
                    config.val_pgd_steps,
                    config.monitor.max_examples,
                    eval_batch,
                    &mut val_rng,
                    progress,
                )?;
                val_clean = Some(c.clean_accuracy);
                check = Some(c);
            } else {
                val_clean =
                    Some(eval::clean_accuracy(&live.model, val, eval_batch, progress).value);
            }
        }
        let mut alarmed = false;
        if let (Some(c), true, None) = (&check, adversarial, &live.st.stopped) {
            let best = live.st.best.as_ref().and_then(|b| b.val_pgd_accuracy);
            if let Some(reason) =
                monitor::alarm_reason(c, best, live.st.best_alignment, &config.monitor)
            {
                alarmed = config.monitor.on_collapse != CollapsePolicy::Ignore;
                live.on_alarm(None, reason)?;
            }
        }
        if let Some(a) = check.as_ref().and_then(|c| c.grad_alignment) {
            if !alarmed && live.st.best_alignment.is_none_or(|b| a > b) {
                live.st.best_alignment = Some(a);
            }
        }
        if !alarmed && live.st.stopped.is_none() {
            let candidate = match (&check, adversarial) {
                (Some(c), true) => Some((
                    format!("validation PGD-{} accuracy", c.pgd_steps),
                    c.pgd_accuracy,
                )),
                _ => val_clean.map(|v| ("validation clean accuracy".to_string(), v)),
            };
            if let Some((criterion, value)) = candidate {
                if live.st.best.as_ref().is_none_or(|b| value > b.value) {
                    live.best = Some(snapshot(&live.model, &live.optimizer)?);
                    live.st.best = Some(BestRecord {
                        epoch: epoch + 1,
                        criterion,
                        value,
                        val_clean_accuracy: val_clean,
                        val_pgd_accuracy: check.as_ref().map(|c| c.pgd_accuracy),
                    });
                    if let Some(dir) = options.checkpoint_dir {
                        model::save_safetensors(&live.model, &dir.join(BEST_MODEL))?;
                    }
                }
            }
        }
        let metrics = EpochMetrics {
            epoch: epoch + 1,
            train_loss: live.st.loss_sum / live.st.seen.max(1) as f64,
            train_accuracy: live.st.correct as f64 / live.st.seen.max(1) as f64,
            lr,
            eps,
            val_clean_accuracy: val_clean,
            val_robust_accuracy: check.as_ref().map(|c| c.pgd_accuracy),
            val_attack: check.as_ref().map(|c| c.pgd_attack.clone()),
            val_fgsm_accuracy: check.as_ref().map(|c| c.fgsm_accuracy),
            val_fgsm_pgd_gap: check.as_ref().map(|c| c.fgsm_pgd_gap),
            val_grad_alignment: check.as_ref().and_then(|c| c.grad_alignment),
            step_scale: live.st.step_scale,
            checks: std::mem::take(&mut live.st.pending_checks),
            events: std::mem::take(&mut live.st.pending_events),
            best_epoch: live.st.best.as_ref().map(|b| b.epoch),
            epoch_seconds: epoch_base + epoch_clock.elapsed().as_secs_f64(),
            train_images_per_second: live.st.seen as f64 / train_seconds.max(1e-9),
        };
        observer.on_epoch(&metrics, &live.model)?;
        live.st.history.push(metrics);
        live.st.epoch += 1;
        live.st.batch = 0;
        live.st.loss_sum = 0.0;
        live.st.correct = 0;
        live.st.seen = 0;
        live.st.epoch_seconds = 0.0;
        live.st.train_seconds = 0.0;
        live.st.total_seconds = total_base + clock.elapsed().as_secs_f64();
        if let Some(dir) = options.checkpoint_dir {
            live.checkpoint(dir, &rng, &val_rng)?;
            last_checkpoint = Instant::now();
            last_good = Some((epoch + 1, 0));
        }
    }
    let best_model = match &live.best {
        Some(snap) => Some(restore_model(live.model.clone(), &snap.model)?.valid()),
        None => None,
    };
    Ok(Trained {
        model: live.model.valid(),
        history: live.st.history,
        seconds: total_base + clock.elapsed().as_secs_f64(),
        best: live.st.best,
        best_model,
        stopped: live.st.stopped,
        rollbacks: live.st.rollbacks,
    })
}

fn count_correct(logits: Tensor<2>, y: Tensor<1, Int>) -> usize {
    let b = logits.dims()[0];
    logits
        .argmax(1)
        .reshape([b])
        .equal(y)
        .int()
        .sum()
        .into_scalar::<i64>() as usize
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
        MethodConfig::FgsmRs {
            alpha_factor,
            random_start,
        } => FgsmRs {
            alpha_factor,
            random_start,
        }
        .batch_loss(model, x, y, threat, rng),
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
        MethodConfig::Mart {
            beta,
            steps,
            step_size,
        } => Mart {
            beta,
            steps,
            step_size,
        }
        .batch_loss(model, x, y, threat, rng),
        MethodConfig::Free { .. } => {
            unreachable!("free training replays batches in the training loop itself")
        }
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
