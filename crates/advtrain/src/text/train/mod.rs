//! Training text classifiers: standard, adversarial (on attacked copies of training texts,
//! mixed with clean ones), and embedding-space adversarial training.
//!
//! Character attacks are discrete and query-hungry, so adversarial examples are not crafted
//! per batch as on the image side: at the start of each adversarial epoch the current model
//! attacks a random `fraction` of the training set, and every clean batch of that epoch is
//! paired with a batch of those adversarial texts: `L = L(clean) + λ·L(adversarial)`.
//!
//! The methods are [`TrainStep`](crate::train::TrainStep)s run by the shared loop as a
//! [`TextTask`], so text runs have the image runs' checkpoints, bit-identical resume,
//! schedules, best checkpoint and monitor.

mod steps;
mod task;

use burn::prelude::{Device, Int, Tensor};
use serde::{Deserialize, Serialize};

pub use super::attack::{TextAttackConfig, LOOKALIKE_KINDS};
use super::canon::Canonicalizer;
use super::model::{TextModelConfig, TextNet};
use super::TextDataset;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::train::monitor::{CollapsePolicy, MonitorConfig, MonitorEvent};
use crate::train::{fit, BestRecord, CheckpointOptions, EpochMetrics, EpochObserver, Schedule};
pub use steps::{embedding_perturbation, EmbeddingAtStep, TextBatch, TextCrossEntropy};
pub use task::TextTask;

/// How the model is trained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TextMethod {
    /// Clean cross-entropy.
    Standard,
    /// `L(clean) + λ·L(attacked)`, attacked copies refreshed every epoch from `warmup_epochs`
    /// on, against a random `fraction` of the training set.
    Adversarial {
        /// The attack that crafts the attacked copies (validated with the method).
        attack: TextAttackConfig,
        /// Weight λ of the attacked batch's loss (the CLI's default 1); finite and `>= 0`.
        lambda: f64,
        /// Fraction of the training texts attacked each epoch, in `(0, 1]` (the CLI's
        /// default 0.5); at least one text is attacked.
        fraction: f64,
        /// Clean-only epochs before the first attacked one (the CLI uses 1): a model that
        /// has not learnt anything yet gives the attack nothing to find.
        warmup_epochs: usize,
    },
    /// `L(clean) + λ·L(head(embed(x) + δ))`, δ found by `steps` normalised-gradient ascent
    /// steps inside `‖δ‖₂ ≤ eps·‖embed(x)‖₂` per text (Miyato et al. 2017; FreeLB, Zhu et al.
    /// 2020). The radius is relative because embedding scales differ between models.
    EmbeddingAt {
        /// Radius relative to each text's embedding norm (the CLI's default 0.5); `> 0`.
        eps: f64,
        /// Ascent steps for δ (the CLI's default 3); at least 1.
        steps: usize,
        /// Weight λ of the perturbed loss (the CLI's default 1); finite and `>= 0`.
        lambda: f64,
    },
}

impl TextMethod {
    /// The method's name in records: `standard`, `adversarial` or `embedding-at`.
    pub fn name(&self) -> &'static str {
        match self {
            TextMethod::Standard => "standard",
            TextMethod::Adversarial { .. } => "adversarial",
            TextMethod::EmbeddingAt { .. } => "embedding-at",
        }
    }

    /// Checks the ranges given on each variant's fields (and the attack's settings).
    pub fn validate(&self) -> Result<()> {
        match self {
            TextMethod::Standard => Ok(()),
            TextMethod::Adversarial {
                attack,
                lambda,
                fraction,
                ..
            } => {
                attack.validate()?;
                if !(lambda.is_finite() && *lambda >= 0.0) {
                    return Err(Error::config(format!("lambda must be >= 0, got {lambda}")));
                }
                if !(*fraction > 0.0 && *fraction <= 1.0) {
                    return Err(Error::config(format!(
                        "the attacked fraction must be in (0, 1], got {fraction}"
                    )));
                }
                Ok(())
            }
            TextMethod::EmbeddingAt { eps, steps, lambda } => {
                if !(eps.is_finite() && *eps > 0.0) {
                    return Err(Error::config(format!("eps must be > 0, got {eps}")));
                }
                if *steps == 0 {
                    return Err(Error::config("embedding-at needs at least 1 step"));
                }
                if !(lambda.is_finite() && *lambda >= 0.0) {
                    return Err(Error::config(format!("lambda must be >= 0, got {lambda}")));
                }
                Ok(())
            }
        }
    }
}

/// A text training run's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TextTrainConfig {
    /// The architecture to build and train from scratch.
    pub model: TextModelConfig,
    /// How the model is trained.
    pub method: TextMethod,
    /// Input canonicalisation in front of the model (also during training).
    pub canonicalizer: Canonicalizer,
    /// Passes over the training texts; at least 1.
    pub epochs: usize,
    /// Clean texts per batch (an adversarial batch of attacked texts is paired with each);
    /// at least 1.
    pub batch_size: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Seeds the initial weights, shuffling and the attacks that craft training texts.
    pub seed: u64,
    /// The learning-rate schedule (constant unless set).
    #[serde(default = "constant")]
    pub schedule: Schedule,
    /// The health monitor: validation accuracy under the run's attack on the first
    /// `max_examples` validation texts (adversarial training), alarms and their policy
    /// (`ignore` by default: text filters have no known collapse mode to roll back from).
    #[serde(default = "text_monitor")]
    pub monitor: MonitorConfig,
    /// Two-class filters: the false-positive rate they are operated at. The monitor watches
    /// the validation detection rate under attack at this rate, and the end of training
    /// measures evasion at it; the threshold is always chosen on benign validation texts.
    #[serde(default = "default_fpr")]
    pub fpr: f64,
}

fn default_fpr() -> f64 {
    crate::text::evasion::DEFAULT_FPR
}

fn constant() -> Schedule {
    Schedule::Constant
}

/// The text monitor's defaults: 100 validation texts under attack, alarms recorded only.
pub fn text_monitor() -> MonitorConfig {
    MonitorConfig {
        on_collapse: CollapsePolicy::Ignore,
        max_examples: Some(100),
        ..MonitorConfig::default()
    }
}

impl TextTrainConfig {
    /// Rejects settings that cannot work: the model's, the method's, the schedule's and
    /// the monitor's checks, plus epochs, batch size and a positive learning rate.
    pub fn validate(&self) -> Result<()> {
        self.model.validate()?;
        self.method.validate()?;
        if self.epochs == 0 {
            return Err(Error::config("epochs must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(Error::config("batch size must be at least 1"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::config(format!("lr must be > 0, got {}", self.lr)));
        }
        if !(0.0..1.0).contains(&self.fpr) {
            return Err(Error::config(format!(
                "the false-positive rate must be in [0, 1), got {}",
                self.fpr
            )));
        }
        self.schedule.validate()?;
        self.monitor.validate()
    }
}

/// One epoch of text training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TextEpochRecord {
    /// 1-based.
    pub epoch: usize,
    /// Mean training loss (the full objective).
    pub loss: f64,
    /// Clean training accuracy over the epoch's batches (as the model was while training).
    pub train_accuracy: f64,
    /// Clean accuracy on the validation texts at the end of the epoch.
    pub val_accuracy: Option<f64>,
    /// Training texts attacked this epoch (adversarial training).
    pub attacked: usize,
    /// Of those the model classified correctly, the share the attack flipped: watching it
    /// fall is watching the model learn the attack.
    pub attack_success_rate: Option<f64>,
    /// Seconds spent crafting adversarial texts this epoch.
    pub attack_seconds: f64,
    /// Seconds for the whole epoch.
    pub seconds: f64,
    /// Validation accuracy under the run's attack (adversarial training's monitor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_attacked_accuracy: Option<f64>,
    /// The attack that accuracy was measured under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_attack: Option<String>,
    /// The epoch of the best checkpoint so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_epoch: Option<usize>,
    /// The monitor's alarms and actions during the epoch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<MonitorEvent>,
}

/// A trained text model and its history.
pub struct TrainedText {
    /// The final network, in evaluation mode.
    pub net: TextNet,
    /// One record per finished epoch, those before a resume included.
    pub history: Vec<TextEpochRecord>,
    /// Wall-clock seconds of training, summed over resumed processes.
    pub train_seconds: f64,
    /// Which epoch's checkpoint was best, and by what.
    pub best: Option<BestRecord>,
}

/// Trains a text model from scratch. `on_epoch` sees each finished epoch (to write metrics as
/// they arrive). No checkpoints; see [`train_text_with`].
pub fn train_text(
    config: &TextTrainConfig,
    train: &TextDataset,
    val: Option<&TextDataset>,
    device: &Device,
    progress: &dyn Progress,
    on_epoch: &mut dyn FnMut(&TextEpochRecord, &TextNet) -> Result<()>,
) -> Result<TrainedText> {
    train_text_with(
        config,
        train,
        val,
        CheckpointOptions::default(),
        device,
        progress,
        on_epoch,
    )
}

/// [`train_text`] with checkpoints and resume ([`CheckpointOptions`]), through the shared loop.
pub fn train_text_with(
    config: &TextTrainConfig,
    train: &TextDataset,
    val: Option<&TextDataset>,
    options: CheckpointOptions<'_>,
    device: &Device,
    progress: &dyn Progress,
    on_epoch: &mut dyn FnMut(&TextEpochRecord, &TextNet) -> Result<()>,
) -> Result<TrainedText> {
    config.validate()?;
    if train.is_empty() {
        return Err(Error::config("the training set is empty"));
    }
    if train.num_classes() != config.model.num_classes {
        return Err(Error::config(format!(
            "the data has {} classes but the model {}",
            train.num_classes(),
            config.model.num_classes
        )));
    }
    let device = device.clone().without_autodiff();
    let net = init_net(&config.model, config.seed, &device)?;
    let mut task = TextTask::new(config, train, val, &device);
    let mut observer = TextObserver(on_epoch);
    let trained = fit(&mut task, net, options, &device, progress, &mut observer)?;
    Ok(TrainedText {
        net: trained.model,
        history: trained.history.iter().map(TextEpochRecord::from).collect(),
        train_seconds: trained.seconds,
        best: trained.best,
    })
}

/// Hands each epoch to the caller as a [`TextEpochRecord`].
struct TextObserver<'a>(&'a mut dyn FnMut(&TextEpochRecord, &TextNet) -> Result<()>);

impl EpochObserver<TextNet> for TextObserver<'_> {
    fn on_epoch(&mut self, metrics: &EpochMetrics, net: &TextNet) -> Result<()> {
        (self.0)(&TextEpochRecord::from(metrics), net)
    }
}

impl From<&EpochMetrics> for TextEpochRecord {
    fn from(m: &EpochMetrics) -> Self {
        let extra = |key: &str| m.extra.get(key).and_then(serde_json::Value::as_f64);
        TextEpochRecord {
            epoch: m.epoch,
            loss: m.train_loss,
            train_accuracy: m.train_accuracy,
            val_accuracy: m.val_clean_accuracy,
            attacked: extra("attacked").unwrap_or(0.0) as usize,
            attack_success_rate: extra("attack_success_rate"),
            attack_seconds: extra("attack_seconds").unwrap_or(0.0),
            seconds: m.epoch_seconds,
            val_attacked_accuracy: m.val_robust_accuracy,
            val_attack: m.val_attack.clone(),
            best_epoch: m.best_epoch,
            events: m.events.clone(),
        }
    }
}

/// A text network with weights fixed by `seed`, built and touched under
/// [`crate::model::init_seeded`]'s lock, so runs in parallel threads stay reproducible.
pub fn init_net(config: &TextModelConfig, seed: u64, device: &Device) -> Result<TextNet> {
    crate::model::init_seeded(device, seed, || {
        let net = config.init(device)?;
        let ids = Tensor::<2, Int>::zeros([1, 1], device);
        let mask = Tensor::<2>::ones([1, 1], device);
        let _ = net.logits(ids, mask).into_data();
        Ok(net)
    })
}
